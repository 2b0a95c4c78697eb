//! `adledger serve`: open the storage, bind, announce, serve until SIGINT or SIGTERM,
//! then drain.
//!
//! Startup order matters to the tools that run the binary: the storage is opened and
//! the listener bound *before* the one line `adledger listening on http://ADDR` is
//! printed to stdout, so a reader of that line can connect at once (and with
//! `--listen 127.0.0.1:0` learns the port). Logs go to stderr, never stdout.
//!
//! Shutdown order: stop accepting, let in-flight requests finish for up to the shutdown
//! grace period and then close the connections still open (see [`crate::edge::serve`]),
//! stop the snapshot schedule (finishing a snapshot in progress), then `Ledger::shutdown`
//! commits the queued writes, then exit 0. Nothing acknowledged is lost: an answer to a
//! write is only sent once the write is committed, and a write whose connection was
//! closed by the deadline is still committed by `Ledger::shutdown` if it was queued.
//! Any startup failure is returned as a one-line error for `main` to print (exit 1),
//! never a panic.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use adledger_engine::{Ledger, LedgerOptions};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::app::app_with_limits;
use crate::auth::{Auth, AuthSetupError};
use crate::backend::{self, BackendError};
use crate::config::{Config, ConfigError, ServeArgs};
use crate::snapshot_store::SnapshotStore;
use crate::state::{Admin, AppState};

/// Why `adledger serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The identity settings are unusable, or missing where they are required.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    /// The storage could not be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The ledger could not start on the opened storage.
    #[error("cannot start the ledger: {0}")]
    Ledger(adledger_engine::Error),
    /// The async runtime could not be created.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(std::io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The webhook client for subscriptions could not be built.
    #[error("cannot start subscription delivery: {0}")]
    Subscriptions(String),
    /// The listening line could not be written to stdout.
    #[error("cannot write the listening address to stdout: {0}")]
    Announce(std::io::Error),
}

/// Runs `adledger serve` with its flags: logging, configuration, runtime, server.
pub fn serve_command(args: &ServeArgs) -> Result<(), ServeError> {
    init_logging();
    let config = args.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(run(config))
}

/// The log filter when `RUST_LOG` is unset or invalid: `info`, except tantivy's
/// per-commit housekeeping lines, which would otherwise follow every write.
const DEFAULT_LOG_FILTER: &str = "info,tantivy=warn";

/// Logs to stderr, filtered by `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]); colours only
/// when stderr is a terminal, so captured logs stay plain text.
fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // A second initialisation (tests) keeps the first subscriber; nothing to report.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Most commands in one group commit on the AWS backend (the journal still caps it at
/// its own limits).
const AWS_MAX_BATCH: usize = 1024;

/// Serves `config` until a shutdown signal, then drains and stops the ledger.
pub async fn run(config: Config) -> Result<(), ServeError> {
    // Before the storage is opened: a configuration that must not start touches nothing.
    let auth = Auth::from_settings(
        &config.auth,
        config.backend == crate::config::BackendKind::Aws,
        &config.listen,
    )?;
    crate::metrics::spawn_upkeep();
    let ports = backend::open(&config)?;
    let options = LedgerOptions {
        // Only a journal shared with other processes (AWS) is polled.
        journal_poll: std::time::Duration::from_millis(config.journal_poll_ms),
        // DynamoDB's page journal takes up to 1,000 blocks (2 MB) per transaction: a
        // larger group commit pays one round trip for more creates. The local backend
        // keeps the default.
        max_batch: match config.backend {
            crate::config::BackendKind::Aws => AWS_MAX_BATCH,
            crate::config::BackendKind::Local | crate::config::BackendKind::Memory => {
                LedgerOptions::default().max_batch
            }
        },
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open(ports, options)
        .await
        .map_err(ServeError::Ledger)?;
    let ledger = Arc::new(ledger);
    let started = start(&config, &ledger).await;
    let (listener, signals) = match started {
        Ok(started) => started,
        Err(error) => {
            ledger.shutdown().await;
            return Err(error);
        }
    };
    let metrics_listener = match bind_metrics(&config).await {
        Ok(listener) => listener,
        Err(error) => {
            ledger.shutdown().await;
            return Err(error);
        }
    };
    let schedule = config.snapshots.schedule.0.map(|schedule| {
        crate::snapshot_schedule::spawn(
            ledger.ports().clone(),
            SnapshotStore::in_data_dir(&config.data_dir),
            schedule,
            config.snapshots.keep,
        )
    });
    let subscriptions = match start_subscriptions(&config, &ledger) {
        Ok(subscriptions) => subscriptions,
        Err(error) => {
            ledger.shutdown().await;
            return Err(error);
        }
    };
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let mut state = AppState::new(ledger.clone())
        .with_subscriptions(subscriptions.clone())
        .with_admin(Admin::from_config(&config))
        .with_auth(auth)
        .with_feed(config.feed, closing_rx.clone());
    state.metrics_elsewhere = metrics_listener.is_some();
    if let Some(subscriptions) = &subscriptions {
        // Without the subscriptions: the state the starter keeps holds no cycle.
        let mut tail_state = state.clone();
        tail_state.subscriptions = None;
        subscriptions.use_tail(Arc::new(move || tail_state.feed_tail()));
    }
    if let Some(listener) = metrics_listener {
        let metrics_app = crate::routes::metrics::metrics_only(state.clone());
        let limits = config.http;
        let mut closing = closing_rx;
        tokio::spawn(async move {
            let stop = async move {
                let _ = closing.wait_for(|c| *c).await;
            };
            crate::edge::serve(listener, metrics_app, &limits, stop).await;
        });
    }
    let app = app_with_limits(state, &config.http);
    let shutdown = async move {
        signals.received().await;
        closing.send_replace(true);
    };
    crate::edge::serve(listener, app, &config.http, shutdown).await;
    if let Some(schedule) = schedule {
        // Before the ledger stops: a snapshot in progress reads through its ports.
        schedule.stop().await;
    }
    if let Some(subscriptions) = &subscriptions {
        subscriptions.stop().await;
        subscriptions.gate().release().await;
    }
    tracing::info!("HTTP server stopped; committing queued writes");
    ledger.shutdown().await;
    tracing::info!("ledger stopped");
    Ok(())
}

/// Binds `--metrics-listen`, if set, and logs where `/metrics` is.
async fn bind_metrics(config: &Config) -> Result<Option<TcpListener>, ServeError> {
    let Some(addr) = &config.metrics_listen else {
        return Ok(None);
    };
    let bind_error = |source| ServeError::Bind {
        addr: addr.clone(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    tracing::info!("metrics listening on http://{local}/metrics");
    Ok(Some(listener))
}

/// Opens the subscription store and starts delivery (`None` where the backend has no
/// subscription store).
fn start_subscriptions(
    config: &Config,
    ledger: &Arc<Ledger>,
) -> Result<Option<crate::delivery::Subscriptions>, ServeError> {
    let Some(store) = backend::open_subscriptions(config)? else {
        return Ok(None);
    };
    // Where processes share the state store (AWS), the holder of its projector lease
    // delivers (see `delivery_lease`).
    let gate = if ledger.ports().sharing.state.is_some() {
        let ledger = ledger.clone();
        crate::delivery_lease::DeliveryGate::following(move || {
            matches!(
                ledger.state_projector(),
                adledger_engine::projection::ProjectorRole::Holder { .. }
            )
        })
    } else {
        crate::delivery_lease::DeliveryGate::always_open()
    };
    crate::delivery::Subscriptions::start_gated(store, ledger.clone(), config.feed.options(), gate)
        .map(Some)
        .map_err(ServeError::Subscriptions)
}

/// Installs the signal handlers, binds, and announces the bound address.
///
/// The handlers are installed before the announcement, so a signal sent as soon as the
/// line is read shuts down gracefully instead of killing the process.
async fn start(config: &Config, ledger: &Ledger) -> Result<(TcpListener, Signals), ServeError> {
    let signals = Signals::install().map_err(ServeError::Signals)?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen.clone(),
        source,
    })?;
    announce(addr).map_err(ServeError::Announce)?;
    tracing::info!(
        %addr,
        backend = config.backend.as_str(),
        data_dir = %config.data_dir.display(),
        deterministic = ?config.deterministic,
        blocks = ledger.committed(),
        http = ?config.http,
        "adledger serving"
    );
    Ok((listener, signals))
}

/// Prints the one stdout line tools wait for, and flushes it.
fn announce(addr: SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "adledger listening on http://{addr}")?;
    out.flush()
}

/// SIGINT and SIGTERM, registered up front.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {})
    }

    /// Completes when the first shutdown signal arrives.
    #[cfg(unix)]
    async fn received(mut self) {
        let name = tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down: finishing in-flight requests");
    }

    /// Completes on Ctrl-C.
    #[cfg(not(unix))]
    async fn received(self) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
