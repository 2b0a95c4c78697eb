//! One measured phase: a fixed number of requests shared out among concurrent client
//! tasks, bounded in time, every response checked.
//!
//! The client tasks share one `reqwest::Client` (keep-alive, a connection pool sized to
//! the number of clients) and take request numbers from a shared counter until the
//! phase's count is reached or its time limit passes. A request's latency runs from
//! before it is sent until its whole body has been read. Any non-2xx status, transport
//! error or unusable success body is an error: counted by kind, with a few samples kept
//! to print.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Client, RequestBuilder};
use tokio::time::Instant;

/// How long a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Error samples kept per phase.
const MAX_SAMPLES: usize = 5;
/// Characters of an error body kept in a sample.
const SAMPLE_BODY_CHARS: usize = 300;

/// The HTTP client every phase uses: keep-alive, `clients` pooled connections, no proxy
/// (an `HTTP_PROXY` variable must not send the load elsewhere), no redirects.
pub fn client(clients: usize) -> Result<Client, String> {
    Client::builder()
        .pool_max_idle_per_host(clients)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))
}

/// The requests of a phase.
pub trait Operation: Send + Sync + 'static {
    /// What a successful request yields (the created ad's id, or nothing).
    type Output: Send + 'static;

    /// Request number `index` of the phase.
    fn request(&self, client: &Client, index: u64) -> RequestBuilder;

    /// Reads the body of a 2xx answer to request `index`; `Err` says why it is unusable.
    fn accept(&self, index: u64, body: &[u8]) -> Result<Self::Output, String>;
}

/// How much of a phase to run, and with what.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The shared client.
    pub client: Client,
    /// Concurrent client tasks.
    pub clients: usize,
    /// Requests to make.
    pub requests: u64,
    /// The phase stops making requests after this long, and abandons those in flight.
    pub time_limit: Duration,
}

/// What a phase measured.
#[derive(Debug, Clone)]
pub struct PhaseStats {
    /// The phase's name.
    pub name: &'static str,
    /// Requests planned.
    pub planned: u64,
    /// Requests answered (successes and errors).
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Failures by kind (`HTTP 422`, `transport`, …).
    pub error_kinds: BTreeMap<String, u64>,
    /// A few failures, described.
    pub error_samples: Vec<String>,
    /// Wall-clock time of the phase.
    pub elapsed: Duration,
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
    /// The time limit stopped the phase before all its requests were made.
    pub cut_short: bool,
}

impl PhaseStats {
    /// Answered requests per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency at `percent` (nearest rank) of the successful requests.
    pub fn percentile(&self, percent: f64) -> Option<Duration> {
        percentile(&self.latencies, percent)
    }

    /// The slowest successful request.
    pub fn max(&self) -> Option<Duration> {
        self.latencies.last().copied()
    }
}

/// The nearest-rank percentile of sorted `latencies`.
pub fn percentile(latencies: &[Duration], percent: f64) -> Option<Duration> {
    if latencies.is_empty() {
        return None;
    }
    let rank = (percent / 100.0 * latencies.len() as f64).ceil() as usize;
    latencies.get(rank.clamp(1, latencies.len()) - 1).copied()
}

/// Runs `plan.requests` requests of `operation` with `plan.clients` concurrent tasks,
/// returning the statistics and the outputs of the successful requests.
pub async fn run<O: Operation>(
    name: &'static str,
    operation: Arc<O>,
    plan: &Plan,
) -> (PhaseStats, Vec<O::Output>) {
    let started = Instant::now();
    let deadline = started + plan.time_limit;
    let next = Arc::new(AtomicU64::new(0));
    let per_task = plan.requests / plan.clients.max(1) as u64 + 1;
    let tasks: Vec<_> = (0..plan.clients.max(1))
        .map(|_| {
            let operation = operation.clone();
            let client = plan.client.clone();
            let next = next.clone();
            let total = plan.requests;
            tokio::spawn(async move {
                client_task(&*operation, &client, &next, total, deadline, per_task).await
            })
        })
        .collect();

    let mut tally = Tally::with_capacity(plan.requests as usize);
    for task in tasks {
        match task.await {
            Ok(task_tally) => tally.merge(task_tally),
            Err(e) => tally.fail(
                "client task failed".into(),
                format!("a client task ended abnormally: {e}"),
            ),
        }
    }
    let elapsed = started.elapsed();
    tally.latencies.sort_unstable();
    let stats = PhaseStats {
        name,
        planned: plan.requests,
        requests: tally.latencies.len() as u64 + tally.errors,
        errors: tally.errors,
        error_kinds: tally.error_kinds,
        error_samples: tally.error_samples,
        elapsed,
        latencies: tally.latencies,
        cut_short: tally.cut_short,
    };
    (stats, tally.outputs)
}

/// What one client task (or, merged, the phase) saw.
struct Tally<T> {
    latencies: Vec<Duration>,
    outputs: Vec<T>,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    cut_short: bool,
}

impl<T> Tally<T> {
    fn with_capacity(requests: usize) -> Tally<T> {
        Tally {
            latencies: Vec::with_capacity(requests),
            outputs: Vec::with_capacity(requests),
            errors: 0,
            error_kinds: BTreeMap::new(),
            error_samples: Vec::new(),
            cut_short: false,
        }
    }

    fn fail(&mut self, kind: String, sample: String) {
        self.errors += 1;
        *self.error_kinds.entry(kind).or_insert(0) += 1;
        if self.error_samples.len() < MAX_SAMPLES {
            self.error_samples.push(sample);
        }
    }

    fn merge(&mut self, other: Tally<T>) {
        self.latencies.extend(other.latencies);
        self.outputs.extend(other.outputs);
        self.errors += other.errors;
        for (kind, count) in other.error_kinds {
            *self.error_kinds.entry(kind).or_insert(0) += count;
        }
        let room = MAX_SAMPLES.saturating_sub(self.error_samples.len());
        self.error_samples
            .extend(other.error_samples.into_iter().take(room));
        self.cut_short |= other.cut_short;
    }
}

/// One client: takes request numbers until none are left or the deadline passes.
async fn client_task<O: Operation>(
    operation: &O,
    client: &Client,
    next: &AtomicU64,
    total: u64,
    deadline: Instant,
    capacity: u64,
) -> Tally<O::Output> {
    let mut tally = Tally::with_capacity(capacity as usize);
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= total {
            break;
        }
        if Instant::now() >= deadline {
            tally.cut_short = true;
            break;
        }
        let sent = Instant::now();
        match tokio::time::timeout_at(deadline, attempt(operation, client, index)).await {
            Err(_) => {
                tally.cut_short = true;
                break;
            }
            Ok(Ok(output)) => {
                tally.latencies.push(sent.elapsed());
                tally.outputs.push(output);
            }
            Ok(Err(failure)) => tally.fail(failure.kind, failure.sample),
        }
    }
    tally
}

/// Why a request failed.
struct Failure {
    kind: String,
    sample: String,
}

/// Sends request `index`, reads the whole body, checks the status and the body.
async fn attempt<O: Operation>(
    operation: &O,
    client: &Client,
    index: u64,
) -> Result<O::Output, Failure> {
    let request = operation
        .request(client, index)
        .build()
        .map_err(|e| Failure {
            kind: "bad request".into(),
            sample: format!("request #{index} could not be built: {}", chain(&e)),
        })?;
    let label = format!("{} {}", request.method(), path_and_query(request.url()));
    let transport = |e: reqwest::Error| Failure {
        kind: if e.is_timeout() {
            "timeout".into()
        } else {
            "transport".into()
        },
        sample: format!("{label}: {}", chain(&e)),
    };
    let response = client.execute(request).await.map_err(transport)?;
    let status = response.status();
    let body = response.bytes().await.map_err(transport)?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let snippet: String = text.chars().take(SAMPLE_BODY_CHARS).collect();
        return Err(Failure {
            kind: format!("HTTP {}", status.as_u16()),
            sample: format!("{label} -> {status}: {snippet}"),
        });
    }
    operation.accept(index, &body).map_err(|reason| Failure {
        kind: "unusable body".into(),
        sample: format!("{label} -> {status}: {reason}"),
    })
}

fn path_and_query(url: &reqwest::Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// An error and its sources, `: `-separated (reqwest's own message is terse).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(ms(50)));
        assert_eq!(percentile(&sorted, 99.0), Some(ms(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(ms(100)));
        assert_eq!(percentile(&sorted, 0.0), Some(ms(1)));
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn tallies_merge() {
        let mut a: Tally<u8> = Tally::with_capacity(4);
        a.latencies.push(ms(1));
        a.outputs.push(1);
        for _ in 0..4 {
            a.fail("HTTP 500".into(), "x".into());
        }
        let mut b: Tally<u8> = Tally::with_capacity(4);
        b.fail("HTTP 500".into(), "y".into());
        b.fail("transport".into(), "z".into());
        b.cut_short = true;
        a.merge(b);
        assert_eq!(a.errors, 6);
        assert_eq!(a.error_kinds["HTTP 500"], 5);
        assert_eq!(a.error_kinds["transport"], 1);
        assert_eq!(a.error_samples.len(), MAX_SAMPLES);
        assert!(a.cut_short);
        assert_eq!(a.outputs, vec![1]);
    }
}
