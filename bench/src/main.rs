//! `adledger-bench`: a load generator that starts the real `adledger` server (or drives
//! one already running on this machine) and measures each phase of a fixed workload.
//!
//! # Layout
//!
//! - [`cli`]: the flags, and the long `--help` that documents the behaviour.
//! - [`target`]: which addresses may be driven (loopback only) and the server's
//!   announcement line.
//! - [`server`]: starting `adledger serve` as a child process, stopping it with SIGTERM.
//! - [`workload`] and [`rng`]: the generated ads and searches, reproducible from a seed.
//! - [`operations`]: the request of each phase and how its answer is checked.
//! - [`phase`]: running a phase with concurrent clients, bounded in count and time.
//! - [`report`]: the table and the JSON object.
//!
//! The run: baseline (`/healthz`), creates, gets, optional preload, searches. Every loop
//! is bounded by a request count and a per-phase time limit, so the bench always stops
//! by itself. It is meant to be cheap: one runtime thread by default, since the server
//! runs on the same (small) machine.

mod cli;
mod operations;
mod phase;
mod report;
mod rng;
mod server;
mod target;
mod workload;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::cli::Cli;
use crate::operations::{Create, Get, Healthz, Search};
use crate::phase::{Operation, PhaseStats, Plan};
use crate::report::Report;
use crate::rng::Rng;
use crate::server::ServerProcess;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.client_threads as usize)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("adledger-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(report) => {
            let mut stdout = std::io::stdout().lock();
            let printed = if cli.json {
                writeln!(stdout, "{}", report.json())
            } else {
                write!(stdout, "{}", report.table())
            };
            if printed.and_then(|()| stdout.flush()).is_err() || !report.ok() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("adledger-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Finds or starts the server, runs the phases, stops the server it started.
async fn run(cli: &Cli) -> Result<Report, String> {
    match &cli.url {
        Some(raw) => {
            let addr = target::resolve(&target::parse(raw)?).await?;
            let url = target::base_url(addr);
            drive(cli, &url, "external server".into()).await
        }
        None => {
            let binary = match &cli.server_bin {
                Some(path) => path.clone(),
                None => server::default_binary()?,
            };
            let started = ServerProcess::start(
                &binary,
                cli.data_dir.as_deref(),
                Duration::from_secs(cli.startup_timeout),
            )
            .await?;
            let url = target::base_url(started.addr());
            let description = format!(
                "started {}, data dir {}",
                binary.display(),
                started.data_dir().display()
            );
            progress(&format!("server started: {url}"));
            match drive(cli, &url, description).await {
                Ok(mut report) => {
                    progress("stopping the server (SIGTERM)");
                    let timeout = Duration::from_secs(cli.shutdown_timeout);
                    if let Err(e) = started.stop(timeout).await {
                        report.failures.push(e);
                    }
                    Ok(report)
                }
                Err(e) => {
                    let message = format!("{e}\n{}", started.log_tail());
                    started.abort().await;
                    Err(message)
                }
            }
        }
    }
}

/// Checks the server answers and warms up the connections, then runs the phases
/// against `url`.
async fn drive(cli: &Cli, url: &str, server: String) -> Result<Report, String> {
    let client = phase::client(cli.clients as usize)?;
    preflight(&client, url).await?;
    let plan = |requests| Plan {
        client: client.clone(),
        clients: cli.clients as usize,
        requests,
        time_limit: Duration::from_secs(cli.duration_limit),
    };
    warm_up(url, &plan(cli.clients * 4)).await?;
    let mut report = Report {
        url: url.to_string(),
        server,
        clients: cli.clients,
        client_threads: cli.client_threads,
        phases: Vec::new(),
        notes: Vec::new(),
        failures: Vec::new(),
    };

    if cli.healthz_requests() > 0 {
        let healthz = Arc::new(Healthz::new(url));
        measure(
            &mut report,
            "healthz",
            healthz,
            &plan(cli.healthz_requests()),
        )
        .await;
    }

    let mut created = Vec::new();
    if cli.creates > 0 {
        let create = Arc::new(Create::measured(url, cli.seed));
        created = measure(&mut report, "creates", create, &plan(cli.creates)).await;
    }

    if cli.gets > 0 && cli.settle {
        let waited = settle(&client, url, Duration::from_secs(cli.duration_limit)).await?;
        report.notes.push(format!(
            "settle: the state projection caught up {:.2} s after the creates phase",
            waited.as_secs_f64()
        ));
    }

    if cli.gets > 0 {
        Rng::new(cli.seed).shuffle(&mut created);
        match Get::new(url, &created) {
            Some(get) => {
                measure(&mut report, "gets", Arc::new(get), &plan(cli.gets)).await;
            }
            None => report
                .notes
                .push("gets skipped: no ads were created to get".into()),
        }
    }
    drop(created);

    if cli.preload > 0 {
        let preload = Arc::new(Create::preload(url, cli.seed));
        measure(&mut report, "preload", preload, &plan(cli.preload)).await;
    }

    if cli.searches > 0 {
        let search = Arc::new(Search::new(url, cli.seed)?);
        measure(&mut report, "searches", search, &plan(cli.searches)).await;
    }
    Ok(report)
}

/// Runs one phase, reports its progress and problems on stderr, adds it to `report`,
/// and returns the outputs of its successful requests.
async fn measure<O: Operation>(
    report: &mut Report,
    name: &'static str,
    operation: Arc<O>,
    plan: &Plan,
) -> Vec<O::Output> {
    progress(&format!(
        "{name}: {} requests, {} clients",
        plan.requests, plan.clients
    ));
    let (stats, outputs) = phase::run(name, operation, plan).await;
    progress(&format!(
        "{name}: {} answered in {:.2}s ({:.1} req/s), {} errors",
        stats.requests,
        stats.elapsed.as_secs_f64(),
        stats.throughput(),
        stats.errors
    ));
    for failure in phase_failures(&stats) {
        eprintln!("adledger-bench: ERROR: {failure}");
        report.failures.push(failure);
    }
    for sample in &stats.error_samples {
        eprintln!("adledger-bench:   e.g. {sample}");
    }
    report.phases.push(stats);
    outputs
}

/// What went wrong in a phase, one line per problem.
fn phase_failures(stats: &PhaseStats) -> Vec<String> {
    let mut failures = Vec::new();
    if stats.errors > 0 {
        let kinds: Vec<String> = stats
            .error_kinds
            .iter()
            .map(|(kind, count)| format!("{count} x {kind}"))
            .collect();
        failures.push(format!(
            "{}: {} of {} requests failed ({})",
            stats.name,
            stats.errors,
            stats.requests,
            kinds.join(", ")
        ));
    }
    if stats.cut_short {
        failures.push(format!(
            "{}: stopped by --duration-limit after {:.0}s with {} of {} requests answered",
            stats.name,
            stats.elapsed.as_secs_f64(),
            stats.requests,
            stats.planned
        ));
    }
    failures
}

/// One `GET /healthz` before measuring, so a wrong address fails with a clear message
/// instead of thousands of errors.
async fn preflight(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .map_err(|e| format!("no adledger server answers at {url}: {}", phase::chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(format!("{url}/healthz answered {status}: {body}"))
    }
}

/// Polls `/healthz` until the state projection has applied every committed block (at
/// most `limit`); returns how long that took.
async fn settle(client: &reqwest::Client, url: &str, limit: Duration) -> Result<Duration, String> {
    let started = std::time::Instant::now();
    loop {
        let health: serde_json::Value = client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .map_err(|e| format!("settle: {}", phase::chain(&e)))?
            .json()
            .await
            .map_err(|e| format!("settle: /healthz is not JSON: {}", phase::chain(&e)))?;
        let blocks = health["journal"]["blocks"].as_u64();
        let state = health["projections"]["state"].as_u64();
        if let (Some(blocks), Some(state)) = (blocks, state)
            && state >= blocks
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= limit {
            return Err(format!(
                "settle: the state projection did not catch up within {limit:?}: {health}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens the pool's connections with a few unmeasured `/healthz` requests, so the
/// baseline does not pay for connection setup the later phases get for free.
async fn warm_up(url: &str, plan: &Plan) -> Result<(), String> {
    let (stats, _) = phase::run("warm-up", Arc::new(Healthz::new(url)), plan).await;
    match phase_failures(&stats).first() {
        None => Ok(()),
        Some(failure) => Err(format!(
            "{failure}; e.g. {}",
            stats.error_samples.first().map_or("", String::as_str)
        )),
    }
}

/// A progress line on stderr (stdout carries only the results).
fn progress(message: &str) {
    eprintln!("adledger-bench: {message}");
}
