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
//! - [`postgres`]: the PostgreSQL peer of the creates (pgbench on a private cluster).
//! - [`bulk`] and [`child`]: the `adledger` maintenance commands, timed with their peak
//!   memory; [`sha_alone`] and [`tantivy_alone`]: the baselines of verify and rebuild.
//! - [`rss`] and [`soak`]: the server's memory, and its curve over a long mixed run.
//! - [`limits`]: the rows of issue 13 (each measurement, its baseline, ratio and target).
//! - [`feed`]: the feed phase (`--feed`), the rows of issue 12 on servers of its own.
//!
//! The run: baseline (`/healthz`), creates, the PostgreSQL peer, gets, optional preload,
//! searches (filtered, `?q=WORD`, the seed's `/?q=`), the one-client phases, an optional
//! soak; then, with the server stopped, the bulk commands and their baselines. Every loop
//! is bounded by a request count and a per-phase time limit, so the bench always stops
//! by itself. It is meant to be cheap: one runtime thread by default, since the server
//! runs on the same (small) machine.

// The doc comments of clap arguments are also the command line's `--help` text, written
// for a terminal: `[::1]:8080` is meant literally there.
#![allow(rustdoc::broken_intra_doc_links)]

mod bulk;
mod child;
mod cli;
mod feed;
mod limits;
mod operations;
mod phase;
mod postgres;
mod report;
mod rng;
mod rss;

mod server;
mod sha_alone;
mod soak;
mod tantivy_alone;
mod target;
mod workload;

use std::io::Write as _;
use std::path::Path;
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

/// Finds or starts the server, runs the phases, stops the server it started, then runs
/// the bulk commands on its ledger and fills in the rows of issue 13.
async fn run(cli: &Cli) -> Result<Report, String> {
    if cli.feed_only {
        return feed_only(cli).await;
    }
    match &cli.url {
        Some(raw) => {
            let addr = target::resolve(&target::parse(raw)?).await?;
            let url = target::base_url(addr);
            let (mut report, measured) = drive(cli, &url, "external server".into(), None).await?;
            let external = "the bench did not start the server (--url)";
            fill_limits(
                &mut report,
                measured,
                Err(external.into()),
                Err(external.into()),
                Err(external.into()),
            );
            Ok(report)
        }
        None => {
            let binary = server_binary(cli)?;
            let scratch = scratch_dir("adledger-bench-run-")?;
            let data_dir = match &cli.data_dir {
                Some(dir) => dir.clone(),
                None => scratch.path().join("data"),
            };
            if cli.imported_ads() > 0 {
                import_ads(cli, &binary, &data_dir, scratch.path())?;
            }
            let started = ServerProcess::start(
                &binary,
                Some(&data_dir),
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
            // An imported ledger, or an existing one whose index an upgrade rebuilds.
            if cli.imported_ads() > 0 || cli.data_dir.is_some() {
                let limit = Duration::from_secs(cli.duration_limit.max(3_600));
                if let Err(e) = caught_up(&url, limit).await {
                    started.abort().await;
                    return Err(e);
                }
            }
            match drive(cli, &url, description, Some(started.pid())).await {
                Ok((mut report, measured)) => {
                    progress("stopping the server (SIGTERM)");
                    let timeout = Duration::from_secs(cli.shutdown_timeout);
                    if let Err(e) = started.stop(timeout).await {
                        report.failures.push(e);
                    }
                    let (bulk, sha, tantivy) = if cli.no_bulk {
                        let skipped = "skipped (--no-bulk)";
                        (
                            Err(skipped.into()),
                            Err(skipped.into()),
                            Err(skipped.into()),
                        )
                    } else {
                        bulk_rows(cli, &binary, &data_dir, scratch.path()).await
                    };
                    if let Err(e) = &bulk
                        && !cli.no_bulk
                    {
                        report.failures.push(format!("bulk: {e}"));
                    }
                    fill_limits(&mut report, measured, bulk, sha, tantivy);
                    if cli.feed {
                        feed::run(cli, &mut report, &binary, scratch.path()).await;
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

/// `--feed-only`: the feed phase alone, on the servers it starts.
async fn feed_only(cli: &Cli) -> Result<Report, String> {
    if cli.url.is_some() {
        return Err("--feed-only starts its own servers; it cannot drive --url".into());
    }
    let binary = server_binary(cli)?;
    let scratch = scratch_dir("adledger-bench-feed-")?;
    let server = format!("started {}", binary.display());
    let mut report = empty_report(cli, "(servers of the feed phase)", server);
    feed::run(cli, &mut report, &binary, scratch.path()).await;
    Ok(report)
}

/// The `adledger` binary to start: `--server-bin`, or the one beside the bench.
fn server_binary(cli: &Cli) -> Result<std::path::PathBuf, String> {
    match &cli.server_bin {
        Some(path) => Ok(path.clone()),
        None => server::default_binary(),
    }
}

/// A scratch directory, removed when dropped.
fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory: {e}"))
}

/// A report of nothing yet.
fn empty_report(cli: &Cli, url: &str, server: String) -> Report {
    Report {
        url: url.to_string(),
        server,
        clients: cli.clients,
        client_threads: cli.client_threads,
        phases: Vec::new(),
        notes: Vec::new(),
        failures: Vec::new(),
        limits: Vec::new(),
        soak: None,
        feed: Vec::new(),
    }
}

/// What the HTTP part of the run measured besides its phases.
struct HttpMeasured {
    postgres: limits::Measured<postgres::Appends>,
    server_rss: limits::Measured<rss::Rss>,
    ads: u64,
}

/// The bulk commands on the stopped ledger, then their baselines.
async fn bulk_rows(
    cli: &Cli,
    binary: &std::path::Path,
    data_dir: &std::path::Path,
    scratch: &std::path::Path,
) -> (
    limits::Measured<bulk::Bulk>,
    limits::Measured<sha_alone::Hashed>,
    limits::Measured<tantivy_alone::Indexed>,
) {
    let (binary, data_dir, scratch) = (
        binary.to_path_buf(),
        data_dir.to_path_buf(),
        scratch.to_path_buf(),
    );
    let ads = tantivy_alone::Ads {
        seed: cli.seed,
        streams: [
            (operations::CREATED_STREAMS[0], cli.creates),
            (operations::CREATED_STREAMS[1], cli.preload_requests()),
            (feed::fill::FILL_STREAM, cli.imported_ads()),
        ],
    };
    let joined = tokio::task::spawn_blocking(move || {
        let bulk = bulk::run(&binary, &data_dir, &scratch);
        let sha = match &bulk {
            Ok(b) => {
                progress("bulk: read + SHA-256 of the export (verify's baseline)");
                let piece = usize::try_from(b.block_bytes / b.blocks.max(1)).unwrap_or(1024);
                sha_alone::read_and_hash(&b.export_path, piece)
            }
            Err(_) => Err("no export to hash".to_string()),
        };
        progress("bulk: tantivy alone indexing the same ads (rebuild's baseline)");
        let tantivy = tantivy_alone::index(ads);
        (bulk, sha, tantivy)
    })
    .await;
    match joined {
        Ok(results) => results,
        Err(e) => {
            let failed = format!("the bulk task failed: {e}");
            (Err(failed.clone()), Err(failed.clone()), Err(failed))
        }
    }
}

/// Builds the rows of issue 13 into `report`.
fn fill_limits(
    report: &mut Report,
    measured: HttpMeasured,
    bulk: limits::Measured<bulk::Bulk>,
    sha: limits::Measured<sha_alone::Hashed>,
    tantivy: limits::Measured<tantivy_alone::Indexed>,
) {
    let rows = limits::rows(&limits::Measurements {
        phases: &report.phases,
        postgres: measured.postgres,
        bulk,
        sha,
        tantivy,
        server_rss: measured.server_rss,
        soak: report.soak.as_ref(),
        ads: measured.ads,
    });
    report.limits = rows;
}

/// Checks the server answers and warms up the connections, then runs the phases
/// against `url` (process `pid` when the bench started it).
async fn drive(
    cli: &Cli,
    url: &str,
    server: String,
    pid: Option<u32>,
) -> Result<(Report, HttpMeasured), String> {
    let client = phase::client(cli.clients as usize)?;
    preflight(&client, url).await?;
    let plan = |requests| Plan {
        client: client.clone(),
        clients: cli.clients as usize,
        requests,
        time_limit: Duration::from_secs(cli.duration_limit),
    };
    let single = |requests| Plan {
        clients: 1,
        ..plan(requests)
    };
    warm_up(url, &plan(cli.clients * 4)).await?;
    let mut report = empty_report(cli, url, server);

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

    let postgres = if cli.no_postgres {
        Err("skipped (--no-postgres)".to_string())
    } else {
        progress(&format!(
            "postgres: {} durable appends by {} pgbench clients on a private cluster",
            cli.creates.max(1),
            cli.clients
        ));
        let (bin, clients, transactions) = (cli.pg_bin.clone(), cli.clients, cli.creates.max(1));
        let ad = workload::postgres_ad_json(cli.seed);
        let result = tokio::task::spawn_blocking(move || {
            postgres::appends(bin.as_deref(), clients, transactions, &ad)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the pgbench task failed: {e}")));
        match &result {
            Ok(a) => progress(&format!("postgres: {:.1} appends/s", a.tps)),
            Err(e) => progress(&format!("postgres: not measured: {e}")),
        }
        result
    };

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

    let preload = cli.preload_requests();
    if preload > 0 {
        let preload_op = Arc::new(Create::preload(url, cli.seed));
        measure(&mut report, "preload", preload_op, &plan(preload)).await;
    }

    if cli.searches > 0 {
        let search = Arc::new(Search::new(url, cli.seed)?);
        measure(&mut report, "searches", search, &plan(cli.searches)).await;
    }
    if cli.word_searches > 0 {
        let search = Arc::new(Search::word(url, cli.seed)?);
        measure(&mut report, "search", search, &plan(cli.word_searches)).await;
        let root = Arc::new(Search::root(url, cli.seed)?);
        measure(&mut report, "root-q", root, &plan(cli.word_searches)).await;
    }
    if cli.single_client > 0 {
        let n = cli.single_client;
        measure(
            &mut report,
            "healthz-1",
            Arc::new(Healthz::new(url)),
            &single(n),
        )
        .await;
        let search = Arc::new(Search::word(url, cli.seed)?);
        measure(&mut report, "search-1", search, &single(n)).await;
        let root = Arc::new(Search::root(url, cli.seed)?);
        measure(&mut report, "root-q-1", root, &single(n)).await;
    }

    if cli.soak > 0 {
        match pid {
            Some(pid) => {
                let curve = soak::run(
                    url,
                    pid,
                    cli.seed,
                    &created,
                    Duration::from_secs(cli.soak),
                    &plan(0),
                )
                .await?;
                let errors: u64 = curve.samples.iter().map(|s| s.errors).sum();
                if errors > 0 {
                    report
                        .failures
                        .push(format!("soak: {errors} requests failed"));
                }
                report.soak = Some(curve);
            }
            None => report
                .notes
                .push("soak skipped: it needs a server the bench started (not --url)".into()),
        }
    }
    // After the soak, so the peak covers it.
    let server_rss = match pid {
        Some(pid) => rss::of(pid).ok_or_else(|| "the server's /proc status is gone".to_string()),
        None => Err("the bench did not start the server (--url)".to_string()),
    };
    let measured = HttpMeasured {
        postgres,
        server_rss,
        ads: cli.creates + preload + cli.imported_ads(),
    };
    Ok((report, measured))
}

/// `--ads-by-import`: writes an export of the ads beyond the creates and imports it into
/// `data_dir` (which must hold no ledger yet), unmeasured.
fn import_ads(cli: &Cli, binary: &Path, data_dir: &Path, scratch: &Path) -> Result<(), String> {
    let blocks = cli.imported_ads();
    let export = scratch.join("ads-fill.jsonl");
    progress(&format!(
        "ads by import: generating an export of {blocks} ads"
    ));
    feed::fill::write_export(&export, blocks, cli.seed)?;
    progress("ads by import: adledger import");
    let imported = bulk::command(binary, &["import"], &[export.as_os_str()], data_dir);
    let _ = std::fs::remove_file(&export);
    let (cost, _) = imported?;
    progress(&format!(
        "ads by import: imported in {:.1} s",
        cost.wall.as_secs_f64()
    ));
    Ok(())
}

/// Waits (at most `limit`) until the server's state store and search index have applied
/// every block, so that the phases do not share the cores with the catch-up.
async fn caught_up(url: &str, limit: Duration) -> Result<(), String> {
    let client = phase::client(1)?;
    let started = std::time::Instant::now();
    loop {
        let (blocks, state, search) = feed::admin::progress(&client, url).await?;
        if state >= blocks && search >= blocks {
            progress(&format!(
                "projections caught up in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "the projections did not catch up within {limit:?} (state {state}, search {search} of {blocks})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
pub(crate) fn progress(message: &str) {
    eprintln!("adledger-bench: {message}");
}
