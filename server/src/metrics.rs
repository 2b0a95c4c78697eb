//! The server's metrics, rendered in the Prometheus text format by `GET /metrics`
//! ([`crate::routes::metrics`]).
//!
//! Recorded through the `metrics` facade (the engine and the local backend record their
//! own: commit latency and batch size, journal sync latency) and rendered by
//! `metrics-exporter-prometheus`, with explicit histogram buckets. The recorder is
//! installed once per process ([`install`]); until then every recording is a no-op.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds` | histogram | `method`, `route` (the route template, never the raw path; `unmatched` for 404s), `status` |
//! | `http_server_requests_shed_total` | counter | requests answered 503 at once because too many were in flight |
//! | `http_server_request_timeouts_total` | counter | requests answered 503 by the request timeout |
//! | `adledger_commit_duration_seconds` | histogram | one durable journal append (group commit) |
//! | `adledger_commit_batch_blocks` | histogram | blocks per group commit |
//! | `adledger_commit_races_total` | counter | appends lost to another writer and re-planned (shared journals) |
//! | `adledger_journal_sync_seconds` | histogram | local backend: flush + fdatasync of one append |
//! | `adledger_journal_block_reads_total` | counter | blocks the engine read to answer history pages, `asOf`, write answers and head lookups (not projection or verification scans) |
//! | `adledger_journal_blocks` | gauge | blocks committed, as this process knows |
//! | `adledger_projection_lag_blocks` | gauge | `model` = `state` or `search`: blocks committed but not yet projected by this process |
//! | `adledger_dynamodb_requests_total` | counter | `operation` (`GetItem`, `TransactWriteItems`, …): AWS backend requests, retries included |
//! | `adledger_dynamodb_throttles_total` | counter | AWS backend answers that were throttled (and retried by the SDK) |
//! | `adledger_opensearch_bulk_items_failed_total` | counter | `operation`: bulk items OpenSearch refused (the batch is retried) |
//!
//! `/metrics` needs no token whatever `[auth]` says, and carries no caller identity.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The request-duration histogram.
pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
/// Requests shed by the in-flight limit.
pub const SHED: &str = "http_server_requests_shed_total";
/// Requests answered by the request timeout.
pub const TIMED_OUT: &str = "http_server_request_timeouts_total";

/// Buckets of every `*_seconds` histogram: 100 µs to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
/// Buckets of the commit batch size.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// How often histograms are drained so the recorder's memory stays bounded.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle). `None`
/// when another recorder was installed first (an embedding program's), which is logged.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("adledger_commit_batch_blocks".into()),
                        BATCH_BUCKETS,
                    )
                })
                .and_then(|b| b.install_recorder());
            match built {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed; /metrics answers 503");
                    None
                }
            }
        })
        .as_ref()
}

/// Drains the histograms every `UPKEEP_INTERVAL` (the exporter needs it without its
/// own HTTP listener). Runs until the runtime stops.
pub fn spawn_upkeep() {
    if let Some(handle) = install() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
}

/// Middleware (inside the router, so the route template is known): times every request.
pub async fn track(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    metrics::histogram!(
        HTTP_DURATION,
        "method" => method,
        "route" => route,
        "status" => response.status().as_str().to_owned(),
    )
    .record(started.elapsed());
    response
}
