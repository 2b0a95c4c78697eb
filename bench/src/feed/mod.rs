//! The `feed` phase: the benchmark rows of issue 12 (the ledger feed), each next to a
//! baseline measured in the same run.
//!
//! It starts its own servers (the same release binary as the other phases):
//!
//! 1. **live** — a fresh ledger with an admin token: creates/s with no subscription,
//!    with three active webhook sinks, and with none again ([`sinks::cost`]); one sink's
//!    delivery of the resulting backlog, unbatched and batched ([`sinks::backlog`]) next
//!    to the bench POSTing the same bodies itself ([`sinks::sequential_posts`]); then
//!    100 SSE clients at the tip while ads are committed at 300/s ([`latency`]).
//! 2. **catch-up** — a journal of `--feed-events` blocks written as an export by
//!    [`fill`] and loaded with `adledger import`; `adledger export` of it is the baseline
//!    (reading the raw blocks), then, once the server's projections have caught up, one
//!    client reads the whole feed by pull and by SSE ([`catchup`]).
//!
//! Errors of one part are reported as failures and leave its rows out; the other part
//! still runs.

pub(crate) mod admin;
mod catchup;
pub(crate) mod fill;
mod latency;
mod receiver;
mod sinks;
mod sse;

use std::path::Path;
use std::time::Duration;

use crate::cli::Cli;
use crate::limits::{Check, Row, q};
use crate::phase::{Plan, percentile};
use crate::report::Report;
use crate::server::ServerProcess;
use crate::{progress, target};

/// Runs both parts and adds their rows (and phases, failures) to `report`.
pub async fn run(cli: &Cli, report: &mut Report, binary: &Path, scratch: &Path) {
    let mut rows = Vec::new();
    if cli.feed_part != "catch-up" {
        match live(cli, report, binary, scratch).await {
            Ok(mut live_rows) => rows.append(&mut live_rows),
            Err(e) => report.failures.push(format!("feed (live part): {e}")),
        }
    }
    if cli.feed_part != "live" {
        match catch_up(cli, binary, scratch).await {
            Ok(mut read_rows) => rows.append(&mut read_rows),
            Err(e) => report.failures.push(format!("feed (catch-up part): {e}")),
        }
    }
    report.feed = rows;
}

async fn start(
    cli: &Cli,
    binary: &Path,
    dir: &Path,
    args: &[&str],
) -> Result<ServerProcess, String> {
    let server = ServerProcess::start_with(
        binary,
        Some(dir),
        Duration::from_secs(cli.startup_timeout),
        args,
    )
    .await?;
    progress(&format!(
        "feed: server pid {} at {}",
        server.pid(),
        target::base_url(server.addr())
    ));
    Ok(server)
}

/// Stops `server`, keeping the first error.
async fn stop(
    cli: &Cli,
    server: ServerProcess,
    result: Result<Vec<Row>, String>,
) -> Result<Vec<Row>, String> {
    let stopped = server.stop(Duration::from_secs(cli.shutdown_timeout)).await;
    let rows = result?;
    stopped.map(|()| rows)
}

async fn live(
    cli: &Cli,
    report: &mut Report,
    binary: &Path,
    scratch: &Path,
) -> Result<Vec<Row>, String> {
    let server = start(
        cli,
        binary,
        &scratch.join("feed-live"),
        &["--admin-token", admin::TOKEN],
    )
    .await?;
    let base = target::base_url(server.addr());
    let result = live_rows(cli, report, &base).await;
    if result.is_err() {
        eprintln!("{}", server.log_tail());
    }
    stop(cli, server, result).await
}

async fn live_rows(cli: &Cli, report: &mut Report, base: &str) -> Result<Vec<Row>, String> {
    let limit = Duration::from_secs(cli.duration_limit);
    let client = crate::phase::client(cli.clients as usize)?;
    let plan = Plan {
        client: client.clone(),
        clients: cli.clients as usize,
        requests: cli.feed_creates,
        time_limit: limit,
    };
    crate::warm_up(
        base,
        &Plan {
            requests: cli.clients * 4,
            ..plan.clone()
        },
    )
    .await?;
    let hook = receiver::Receiver::start().await?;
    let mut rows = Vec::new();

    let cost = sinks::cost(report, base, &plan, cli.seed, &hook, cli.feed_sinks_batch).await?;
    let baseline = (cost.without[0] + cost.without[1]) / 2.0;
    rows.push(Row {
        what: "creates/s with 3 active webhook sinks".into(),
        value: Some(q(cost.with_three, "req/s")),
        baseline: Some(("creates/s with none (mean of before/after)".into(), Some(q(baseline, "req/s")))),
        target: ">= 0.95x (cost <= 5%)".into(),
        check: Check::RatioAtLeast(0.95),
        note: Some(format!(
            "{} creates per run, {} clients; without: {:.0} and {:.0} req/s; the sinks (batchSize {}) received {} of {} events in {} requests during the run",
            cost.creates, cli.clients, cost.without[0], cost.without[1], cli.feed_sinks_batch,
            cost.delivered_during, 3 * cost.creates, cost.requests_during
        )),
    });

    // The journal now holds 3 × creates ad events (and digest events).
    let backlog = cli.feed_webhook_events.min(3 * cli.feed_creates);
    for (batch, target, label) in [
        (1u32, 3_000.0, "unbatched"),
        (100, 25_000.0, "batched (100)"),
    ] {
        progress(&format!(
            "feed: one webhook sink, {label}, {backlog} events"
        ));
        let delivered = sinks::backlog(&client, base, &hook, batch, backlog, limit).await?;
        let requests = if batch == 1 { 2_000 } else { 200 };
        let ceiling = sinks::sequential_posts(base, &hook, batch, requests).await?;
        rows.push(Row {
            what: format!("one webhook sink, {label}"),
            value: Some(q(delivered.rate(), "events/s")),
            baseline: Some((
                "the bench POSTing the same bodies, 1 client".into(),
                Some(q(ceiling.rate(), "events/s")),
            )),
            target: format!(">= {target:.0} events/s"),
            check: Check::AtLeast(target),
            note: Some(format!(
                "{} events in {:.2} s, {} requests; baseline {} requests in {:.2} s",
                delivered.events,
                delivered.elapsed.as_secs_f64(),
                delivered.requests,
                ceiling.requests,
                ceiling.elapsed.as_secs_f64()
            )),
        });
    }

    let measured = latency::measure(
        &client,
        base,
        latency::Load {
            clients: cli.feed_sse_clients as usize,
            rate: cli.feed_rate,
            duration: Duration::from_secs(cli.feed_secs),
            seed: cli.seed,
        },
    )
    .await?;
    let ms = |d: Option<Duration>| d.map(|d| q(d.as_secs_f64() * 1e3, "ms"));
    let label = format!(
        "commit ack -> SSE receipt, {} clients, {}/s",
        cli.feed_sse_clients, cli.feed_rate
    );
    for (percent, target) in [(50.0, 5.0), (99.0, 25.0)] {
        rows.push(Row {
            what: format!("{label}, p{percent:.0}"),
            value: ms(percentile(&measured.receipts, percent)),
            baseline: Some((
                format!("/healthz p{percent:.0}, 1 client, same load"),
                ms(percentile(&measured.healthz, percent)),
            )),
            target: format!("<= {target:.0} ms"),
            check: Check::AtMost(target),
            note: (percent == 50.0).then(|| {
                format!(
                    "{} commits at {:.0}/s ({} failed), {} receipts, {} missing, {} before the ack (counted 0); commit latency p50 {:.2} ms p99 {:.2} ms; max receipt {:.1} ms",
                    measured.commits,
                    measured.commit_rate,
                    measured.errors,
                    measured.receipts.len(),
                    measured.missing,
                    measured.early,
                    percentile(&measured.commit_latencies, 50.0).map_or(0.0, |d| d.as_secs_f64() * 1e3),
                    percentile(&measured.commit_latencies, 99.0).map_or(0.0, |d| d.as_secs_f64() * 1e3),
                    measured.receipts.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
                )
            }),
        });
    }
    if measured.missing > 0 || measured.errors > 0 {
        report.failures.push(format!(
            "feed latency: {} receipts missing, {} creates failed",
            measured.missing, measured.errors
        ));
    }
    Ok(rows)
}

async fn catch_up(cli: &Cli, binary: &Path, scratch: &Path) -> Result<Vec<Row>, String> {
    let blocks = cli.feed_events;
    let export = scratch.join("feed-fill.jsonl");
    progress(&format!("feed: generating an export of {blocks} blocks"));
    let started = std::time::Instant::now();
    let (path, seed) = (export.clone(), cli.seed);
    let filled = tokio::task::spawn_blocking(move || fill::write_export(&path, blocks, seed))
        .await
        .map_err(|e| format!("the fill task: {e}"))??;
    let generated = started.elapsed();
    let dir = scratch.join("feed-catchup");
    progress("feed: adledger import of it");
    let (import, _) = crate::bulk::command(binary, &["import"], &[export.as_os_str()], &dir)?;
    let _ = std::fs::remove_file(&export);
    progress("feed: adledger export of the imported journal (the baseline)");
    let raw = scratch.join("feed-export.ion");
    let (exported, _) = crate::bulk::command(
        binary,
        &["export"],
        &[std::ffi::OsStr::new("--out"), raw.as_os_str()],
        &dir,
    )?;
    let _ = std::fs::remove_file(&raw);
    // Digest events follow every 100th block (the server's default `digest_every`).
    let events = blocks + blocks / adledger_engine::feed::DEFAULT_DIGEST_EVERY;
    let export_rate = events as f64 / exported.wall.as_secs_f64().max(1e-9);

    let server = start(cli, binary, &dir, &[]).await?;
    let base = target::base_url(server.addr());
    let result = read_rows(cli, &base, events, export_rate).await.map(|mut rows| {
        if let Some(note) = rows.first_mut().and_then(|r| r.note.as_mut()) {
            note.push_str(&format!(
                "; journal: {} blocks generated in {:.1} s ({:.0} MB JSON lines), imported in {:.1} s, exported in {:.2} s",
                filled.blocks,
                generated.as_secs_f64(),
                filled.bytes as f64 / 1e6,
                import.wall.as_secs_f64(),
                exported.wall.as_secs_f64()
            ));
        }
        rows
    });
    if result.is_err() {
        eprintln!("{}", server.log_tail());
    }
    stop(cli, server, result).await
}

async fn read_rows(
    cli: &Cli,
    base: &str,
    events: u64,
    export_rate: f64,
) -> Result<Vec<Row>, String> {
    let limit = Duration::from_secs(cli.duration_limit);
    let client = crate::phase::client(1)?;
    // The server projects the imported journal when it starts; read after that, so the
    // readers do not share the cores with a rebuild.
    let started = tokio::time::Instant::now();
    loop {
        let (blocks, state, search) = admin::progress(&client, base).await?;
        if state >= blocks && search >= blocks {
            break;
        }
        if started.elapsed() > limit {
            return Err(format!(
                "the projections did not catch up within {limit:?} (state {state}, search {search} of {blocks})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled = started.elapsed();
    progress(&format!(
        "feed: projections caught up in {:.1} s; catch-up by pull",
        settled.as_secs_f64()
    ));
    let pulled = catchup::pull(&client, base, limit).await?;
    if pulled.events != events {
        return Err(format!(
            "the pull read {} events, the journal holds {events}",
            pulled.events
        ));
    }
    progress("feed: catch-up by SSE");
    let streamed = catchup::stream(&client, base, events, limit).await?;
    let baseline = Some((
        "adledger export, same journal (raw blocks)".to_string(),
        Some(q(export_rate, "events/s")),
    ));
    Ok(vec![
        Row {
            what: format!("catch-up of {events} events by pull, 1 client"),
            value: Some(q(pulled.rate(), "events/s")),
            baseline: baseline.clone(),
            target: ">= 40000 events/s".into(),
            check: Check::AtLeast(40_000.0),
            note: Some(format!(
                "{} pages of {} in {:.1} s, {:.0} MB; projections caught up {:.1} s after start",
                pulled.requests,
                1000,
                pulled.elapsed.as_secs_f64(),
                pulled.bytes as f64 / 1e6,
                settled.as_secs_f64()
            )),
        },
        Row {
            what: format!("catch-up of {events} events by SSE, 1 client"),
            value: Some(q(streamed.rate(), "events/s")),
            baseline,
            target: ">= 40000 events/s".into(),
            check: Check::AtLeast(40_000.0),
            note: Some(format!(
                "{:.1} s, {:.0} MB of event data",
                streamed.elapsed.as_secs_f64(),
                streamed.bytes as f64 / 1e6
            )),
        },
    ])
}
