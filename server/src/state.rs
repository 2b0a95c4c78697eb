//! What every handler shares ([`AppState`]): the running ledger and, when an admin token
//! is configured, the `/admin/*` settings ([`Admin`]).
//!
//! Its own module so the router ([`crate::app`]) and the routes ([`crate::routes`]) both
//! depend on it rather than on each other.

use std::sync::Arc;

use adledger_engine::{Hash, Ledger};

use crate::config::Config;
use crate::feed_config::FeedConfig;
use crate::snapshot_store::SnapshotStore;

/// What every handler shares: the running ledger.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine's front door.
    pub ledger: Arc<Ledger>,
    /// The `/admin/*` settings; `None` disables those routes.
    pub admin: Option<Admin>,
    /// The ledger feed's settings.
    pub feed: FeedConfig,
    /// Becomes `true` when the server starts shutting down, so long-lived responses (the
    /// event stream) end instead of holding the shutdown for its whole grace period.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// The feed's `source`, read from block 0 once the journal has it.
    pub feed_source: Arc<std::sync::OnceLock<String>>,
}

impl AppState {
    /// Wraps a running ledger (admin routes disabled).
    pub fn new(ledger: Arc<Ledger>) -> AppState {
        AppState {
            ledger,
            admin: None,
            feed: FeedConfig::default(),
            closing: tokio::sync::watch::channel(false).1,
            feed_source: Arc::default(),
        }
    }

    /// Uses these feed settings, and ends event streams when `closing` becomes `true`.
    pub fn with_feed(
        mut self,
        feed: FeedConfig,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> AppState {
        self.feed = feed;
        self.closing = closing;
        self
    }

    /// Enables the admin routes with these settings (`None` leaves them disabled).
    pub fn with_admin(mut self, admin: Option<Admin>) -> AppState {
        self.admin = admin;
        self
    }
}

/// The admin routes' settings, present only when a token is configured.
#[derive(Clone)]
pub struct Admin {
    /// SHA-256 of the token: what requests are compared against (see
    /// [`crate::routes::admin`]).
    pub(crate) token_hash: Hash,
    /// Where shadow read models go.
    pub(crate) config: Config,
    /// Where snapshots go.
    pub(crate) snapshots: SnapshotStore,
    /// One admin job at a time.
    pub(crate) jobs: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// The admin settings of `config`, or `None` when it has no admin token.
    pub fn from_config(config: &Config) -> Option<Admin> {
        let token = config.admin_token.as_ref()?;
        Some(Admin {
            token_hash: Hash::of(token.expose().as_bytes()),
            config: config.clone(),
            snapshots: SnapshotStore::in_data_dir(&config.data_dir),
            jobs: Arc::new(tokio::sync::Mutex::new(())),
        })
    }
}
