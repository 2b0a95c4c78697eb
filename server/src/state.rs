//! What every handler shares ([`AppState`]): the running ledger and, when an admin token
//! is configured, the `/admin/*` settings ([`Admin`]).
//!
//! Its own module so the router ([`crate::app`](mod@crate::app)) and the routes ([`crate::routes`]) both
//! depend on it rather than on each other.

use std::sync::Arc;

use adledger_engine::{Hash, Ledger};

use crate::auth::Auth;
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
    /// Caller identity (mode `none` unless set with [`AppState::with_auth`]).
    pub auth: Auth,
    /// `GET /metrics` is served on its own address (`--metrics-listen`), not this router's.
    pub metrics_elsewhere: bool,
    /// The last `/readyz` check (see [`crate::routes::health`]).
    pub readiness: crate::readiness::ReadinessCache,
    /// The ledger feed's settings.
    pub feed: FeedConfig,
    /// Becomes `true` when the server starts shutting down, so long-lived responses (the
    /// event stream) end instead of holding the shutdown for its whole grace period.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// The feed's `source`, read from block 0 once the journal has it.
    pub feed_source: Arc<std::sync::OnceLock<String>>,
    /// The shared live tail of the event streams, started by the first one.
    pub feed_tail: Arc<std::sync::OnceLock<crate::feed_tail::FeedTail>>,
    /// Durable subscriptions and their delivery; `None` where the backend has no
    /// subscription store (an application assembled without one: the routes answer 501).
    pub subscriptions: Option<crate::delivery::Subscriptions>,
}

impl AppState {
    /// The shared live tail of the feed, started by the first event stream.
    pub fn feed_tail(&self) -> crate::feed_tail::FeedTail {
        self.feed_tail
            .get_or_init(|| {
                crate::feed_tail::FeedTail::start(
                    self.ledger.clone(),
                    self.feed_source.clone(),
                    self.feed.options(),
                    self.closing.clone(),
                )
            })
            .clone()
    }

    /// Wraps a running ledger (admin routes disabled).
    pub fn new(ledger: Arc<Ledger>) -> AppState {
        AppState {
            ledger,
            admin: None,
            auth: Auth::open(),
            metrics_elsewhere: false,
            readiness: Default::default(),
            feed: FeedConfig::default(),
            closing: tokio::sync::watch::channel(false).1,
            feed_source: Arc::default(),
            feed_tail: Arc::default(),
            subscriptions: None,
        }
    }

    /// Requires caller identity as `auth` says.
    pub fn with_auth(mut self, auth: Auth) -> AppState {
        self.auth = auth;
        self
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

    /// Serves `/ledger/subscriptions` with these running subscriptions.
    pub fn with_subscriptions(
        mut self,
        subscriptions: Option<crate::delivery::Subscriptions>,
    ) -> AppState {
        self.subscriptions = subscriptions;
        self
    }

    /// Enables the admin routes with these settings (`None` leaves them disabled).
    pub fn with_admin(mut self, admin: Option<Admin>) -> AppState {
        self.admin = admin;
        self
    }
}

impl axum::extract::FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Auth {
        state.auth.clone()
    }
}

/// The admin routes' settings, present only when an admin can exist (see
/// [`Admin::from_config`]).
#[derive(Clone)]
pub struct Admin {
    /// SHA-256 of the break-glass admin token, if one is configured: what requests are
    /// compared against (see [`crate::routes::admin`]).
    pub(crate) token_hash: Option<Hash>,
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
    /// The admin settings of `config`, or `None` when nobody could be an admin: no admin
    /// token, and no token-based auth mode (whose admin scope or group also opens them).
    pub fn from_config(config: &Config) -> Option<Admin> {
        let tokens = matches!(
            config.auth.mode,
            Some(crate::auth::AuthMode::Hs256 | crate::auth::AuthMode::Jwks)
        );
        if config.admin_token.is_none() && !tokens {
            return None;
        }
        Some(Admin {
            token_hash: config
                .admin_token
                .as_ref()
                .map(|token| Hash::of(token.expose().as_bytes())),
            config: config.clone(),
            snapshots: SnapshotStore::in_data_dir(&config.data_dir),
            jobs: Arc::new(tokio::sync::Mutex::new(())),
        })
    }
}
