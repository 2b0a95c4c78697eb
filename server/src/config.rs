//! Configuration: the storage flags every subcommand shares ([`StorageArgs`]),
//! `serve`'s own settings ([`ServeArgs`]), and the one [`Config`] they resolve into.
//!
//! Precedence, lowest to highest: built-in defaults, a TOML file (`--config` or
//! `ADLEDGER_CONFIG`), `ADLEDGER_*` environment variables, command-line flags. clap puts
//! each flag over its variable (`#[arg(env = …)]`); [`Config::load`] puts that over the
//! file and the defaults. The TOML keys are `listen`, `data_dir`, `backend`,
//! `deterministic` and `admin_token`, for the AWS backend `dynamodb_endpoint`,
//! `table_prefix` and `search`, and with `search = "opensearch"` `opensearch_url`,
//! `opensearch_auth` and `opensearch_username`, and `journal_poll_ms` and `lease_ms`
//! (how often an AWS process reads the journal's tip, how long a projector lease lasts),
//! and `rebuild_damaged_read_models` (rebuild an unreadable read model from the journal
//! at startup instead of refusing to start);
//! any other key is an error that names it,
//! so a typo never silently falls back to a default. The OpenSearch username and
//! password have no flag (`ADLEDGER_OPENSEARCH_USERNAME`, `ADLEDGER_OPENSEARCH_PASSWORD`);
//! the password is never read from the file, and neither it nor the admin token appears
//! in `Debug` output, logs or `--help`.
//!
//! The AWS backend takes its region and credentials from the standard AWS chain
//! (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, shared config files, …).
//! DynamoDB Local accepts any static credentials: `AWS_ACCESS_KEY_ID=local
//! AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1`.
//!
//! Scheduled snapshots are the `[snapshots]` table (`schedule`, `keep`),
//! `ADLEDGER_SNAPSHOT_SCHEDULE` / `ADLEDGER_SNAPSHOT_KEEP`, `--snapshot-schedule` /
//! `--snapshot-keep`; see [`crate::snapshot_schedule`].
//!
//! Caller identity is the `[auth]` table (`mode`, `issuer`, `jwks_url`, `audience`,
//! `reads`, `jwt_secret_file`; the HS256 secret itself only from `ADLEDGER_JWT_SECRET`);
//! see [`crate::auth::settings`].
//!
//! The connection and request limits are the `[http]` table (`header_read_timeout`,
//! `keep_alive_timeout`, `body_read_timeout`, `request_timeout`, `max_connections`,
//! `max_in_flight`, `shutdown_grace`), with a flag and an `ADLEDGER_*` variable each
//! (`--header-read-timeout` / `ADLEDGER_HEADER_READ_TIMEOUT`, …); see [`crate::edge`].

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::auth::settings::{AuthArgs, AuthOverrides, AuthSettings};
use crate::edge::{DurationSetting, HttpLimits};
pub use crate::secret::Secret;
use crate::snapshot_schedule::{ScheduleSetting, SnapshotConfig, parse_keep};

/// Where the server listens when nothing says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Where the local backend keeps its data when nothing says otherwise.
pub const DEFAULT_DATA_DIR: &str = "./adledger-data";

/// The storage a ledger runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// sled journal and state store, tantivy search, in `data_dir`.
    #[default]
    Local,
    /// DynamoDB and OpenSearch.
    Aws,
    /// Everything in this process's memory: nothing touches the disk and nothing
    /// survives the process — for demos and for other programs' test suites.
    Memory,
}

impl BackendKind {
    /// The name used in flags, variables and files.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Aws => "aws",
            BackendKind::Memory => "memory",
        }
    }
}

/// The search index of the AWS backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    /// A tantivy index in `<data_dir>/search`, local to each server process.
    #[default]
    Tantivy,
    /// An OpenSearch index shared by every server process (`opensearch_url`).
    Opensearch,
}

/// How the AWS backend authenticates to OpenSearch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OpenSearchAuthKind {
    /// No credentials.
    None,
    /// HTTP basic: `ADLEDGER_OPENSEARCH_USERNAME` and `ADLEDGER_OPENSEARCH_PASSWORD`.
    Basic,
    /// AWS SigV4 for Amazon OpenSearch Service (service `es`), with the standard AWS
    /// credential chain and region.
    Sigv4,
    /// AWS SigV4 for Amazon OpenSearch Serverless (service `aoss`).
    Sigv4Serverless,
}

impl SearchKind {
    /// The name used in flags, variables and files.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchKind::Tantivy => "tantivy",
            SearchKind::Opensearch => "opensearch",
        }
    }
}

/// The prefix of the AWS backend's table names when none is configured.
pub const DEFAULT_TABLE_PREFIX: &str = "adledger-";

/// How often an AWS process reads the journal's tip by default, in milliseconds. Each
/// read is one `GetItem`. An idle projecting process also renews its lease every third
/// of [`DEFAULT_LEASE_MS`] (one `UpdateItem`; its projector reads the journal only when
/// the journal moves, and every 30 s), a standby process tries the lease every 2 s, so
/// either sends under one request a second (measured: `aws_health` in `tests/e2e`).
/// Reads and writes on a process read the tip themselves, so this only
/// bounds how late the projecting process notices a write made on another process when
/// nobody reads on it — and so how long a read on that other process may wait for it.
pub const DEFAULT_JOURNAL_POLL_MS: u64 = 4_000;
/// The allowed range of `journal_poll_ms`.
pub const JOURNAL_POLL_MS: std::ops::RangeInclusive<u64> = 10..=60_000;
/// How long a projector lease lasts by default, in milliseconds (renewed every third;
/// a crashed holder is replaced at most this long after its last renewal). Keep it at
/// most the engine's read timeout (10 s): after a projector crashes, reads wait for the
/// next holder, and a longer lease makes them time out (`crash` in `tests/e2e`).
pub const DEFAULT_LEASE_MS: u64 = 10_000;
/// The allowed range of `lease_ms`.
pub const LEASE_MS: std::ops::RangeInclusive<u64> = 1_000..=600_000;

/// A `clap` value parser for a number of milliseconds in `range`.
fn millis_in(
    range: std::ops::RangeInclusive<u64>,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        let value: u64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number of milliseconds"))?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "{value} is outside {}..={} milliseconds",
                range.start(),
                range.end()
            ))
        }
    }
}

/// Reads `journal_poll_ms` from the file, refusing values outside [`JOURNAL_POLL_MS`].
fn file_poll_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = u64::deserialize(d)?;
    millis_in(JOURNAL_POLL_MS)(&value.to_string()).map_err(serde::de::Error::custom)
}

/// Reads `lease_ms` from the file, refusing values outside [`LEASE_MS`].
fn file_lease_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = u64::deserialize(d)?;
    millis_in(LEASE_MS)(&value.to_string()).map_err(serde::de::Error::custom)
}

/// Everything `adledger serve` needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The address to listen on (`host:port`; port 0 picks a free one).
    pub listen: String,
    /// The local backend's data directory (relative paths are relative to the working
    /// directory, not to the config file).
    pub data_dir: PathBuf,
    /// Which backend to run on.
    pub backend: BackendKind,
    /// A seed for reproducible runs: a logical clock from 2020-01-01T00:00:00Z and ids
    /// from this seed, so the same requests give byte-identical journals.
    pub deterministic: Option<u64>,
    /// The bearer token of the `/admin/*` routes; `None` disables them.
    pub admin_token: Option<AdminToken>,
    /// Scheduled snapshots (`[snapshots]`): off unless a schedule is set.
    pub snapshots: SnapshotConfig,
    /// Connection and request limits (`[http]`).
    pub http: HttpLimits,
    /// Caller identity (`[auth]`).
    pub auth: AuthSettings,
    /// Serve `GET /metrics` on this address instead of `listen` (`None`: on `listen`).
    pub metrics_listen: Option<String>,
    /// The ledger feed (`[feed]`).
    pub feed: crate::feed_config::FeedConfig,
    /// AWS backend: a DynamoDB endpoint URL overriding AWS's (DynamoDB Local:
    /// `http://127.0.0.1:8000`).
    pub dynamodb_endpoint: Option<String>,
    /// AWS backend: the tables are `<table_prefix>journal` and `<table_prefix>state`.
    pub table_prefix: String,
    /// AWS backend: the search index.
    pub search: SearchKind,
    /// `search = "opensearch"`: the cluster's URL (the index is `<table_prefix>ads`).
    pub opensearch_url: Option<String>,
    /// `search = "opensearch"`: how to authenticate; unset means basic when a username
    /// is set, else none.
    pub opensearch_auth: Option<OpenSearchAuthKind>,
    /// `search = "opensearch"`, basic auth: the user.
    pub opensearch_username: Option<String>,
    /// `search = "opensearch"`, basic auth: the password, from
    /// `ADLEDGER_OPENSEARCH_PASSWORD` only (never from the file).
    #[serde(skip)]
    pub opensearch_password: Option<Secret>,
    /// AWS backend: how often this process reads the journal's tip, in milliseconds
    /// (see [`DEFAULT_JOURNAL_POLL_MS`]).
    #[serde(deserialize_with = "file_poll_ms")]
    pub journal_poll_ms: u64,
    /// AWS backend: how long a projector lease lasts, in milliseconds.
    #[serde(deserialize_with = "file_lease_ms")]
    pub lease_ms: u64,
    /// Local backend: when a read model's files cannot be opened at startup (damaged),
    /// delete them and rebuild it from the journal, with a warning in the log, instead of
    /// refusing to start. Never applies to the journal, nor to a journal shorter than its
    /// read models (that is lost history, not a damaged read model).
    pub rebuild_damaged_read_models: bool,
}

/// The admin routes' bearer token. A secret: `Debug` never shows it, and an empty or
/// blank token is refused (it would be a door left open).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AdminToken(String);

impl AdminToken {
    /// The token itself, for the one comparison that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<hidden>)")
    }
}

impl TryFrom<String> for AdminToken {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.trim().is_empty() {
            return Err("the admin token must not be empty or blank");
        }
        Ok(AdminToken(text))
    }
}

impl std::str::FromStr for AdminToken {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        AdminToken::try_from(text.to_string())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_string(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            backend: BackendKind::Local,
            deterministic: None,
            admin_token: None,
            snapshots: SnapshotConfig::default(),
            http: HttpLimits::default(),
            auth: AuthSettings::default(),
            metrics_listen: None,
            feed: crate::feed_config::FeedConfig::default(),
            dynamodb_endpoint: None,
            table_prefix: DEFAULT_TABLE_PREFIX.to_string(),
            search: SearchKind::Tantivy,
            opensearch_url: None,
            opensearch_auth: None,
            opensearch_username: None,
            opensearch_password: None,
            journal_poll_ms: DEFAULT_JOURNAL_POLL_MS,
            lease_ms: DEFAULT_LEASE_MS,
            rebuild_damaged_read_models: false,
        }
    }
}

/// The storage and backend flags every subcommand takes (`#[command(flatten)]`): where the
/// ledger is and which backend holds it.
///
/// clap reads each from its `ADLEDGER_*` variable when the flag is not given (an empty
/// variable counts as unset, see [`crate::cli`]), so `None` means neither said anything
/// and [`Config::load`] falls back to the config file, then to the defaults. Global, so a
/// command with actions (`adledger snapshot`) takes them before or after the action.
#[derive(Debug, Clone, Default, Args)]
pub struct StorageArgs {
    /// Data directory: the local backend's storage, the snapshots, and with
    /// `--search tantivy` the AWS backend's index [default: ./adledger-data]
    #[arg(long, value_name = "DIR", env = "ADLEDGER_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// TOML config file, below flags and environment variables
    #[arg(long, value_name = "FILE", env = "ADLEDGER_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Storage backend [default: local]
    #[arg(
        long,
        value_enum,
        value_name = "BACKEND",
        env = "ADLEDGER_BACKEND",
        global = true
    )]
    pub backend: Option<BackendKind>,

    /// AWS backend: DynamoDB endpoint URL, e.g. http://127.0.0.1:8000 for DynamoDB Local
    /// [default: AWS's endpoint for the region]
    #[arg(
        long,
        value_name = "URL",
        env = "ADLEDGER_DYNAMODB_ENDPOINT",
        global = true
    )]
    pub dynamodb_endpoint: Option<String>,

    /// AWS backend: prefix of the table names (<prefix>journal, <prefix>state)
    /// [default: adledger-]
    #[arg(
        long,
        value_name = "PREFIX",
        env = "ADLEDGER_TABLE_PREFIX",
        global = true
    )]
    pub table_prefix: Option<String>,

    /// AWS backend: search index [default: tantivy]
    #[arg(
        long,
        value_enum,
        value_name = "SEARCH",
        env = "ADLEDGER_SEARCH",
        global = true
    )]
    pub search: Option<SearchKind>,

    /// With --search opensearch: the cluster's URL; the index is <prefix>ads
    #[arg(
        long,
        value_name = "URL",
        env = "ADLEDGER_OPENSEARCH_URL",
        global = true
    )]
    pub opensearch_url: Option<String>,

    /// With --search opensearch: authentication; basic reads ADLEDGER_OPENSEARCH_USERNAME
    /// and ADLEDGER_OPENSEARCH_PASSWORD [default: basic if a username is set, else none]
    #[arg(
        long,
        value_enum,
        value_name = "AUTH",
        env = "ADLEDGER_OPENSEARCH_AUTH",
        global = true
    )]
    pub opensearch_auth: Option<OpenSearchAuthKind>,
}

impl StorageArgs {
    /// The settings these flags (or their variables) name, as the top configuration layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            config: self.config.clone(),
            backend: self.backend,
            dynamodb_endpoint: self.dynamodb_endpoint.clone(),
            table_prefix: self.table_prefix.clone(),
            search: self.search,
            opensearch_url: self.opensearch_url.clone(),
            opensearch_auth: self.opensearch_auth,
            ..Overrides::default()
        }
    }

    /// The configuration these flags, the environment and the config file give.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.overrides())
    }
}

/// Flags of `adledger serve`: the storage flags and the settings only a server has.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", env = "ADLEDGER_LISTEN")]
    pub listen: Option<String>,

    /// Where the ledger is.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Reproducible run: logical clock from 2020-01-01T00:00:00Z and ids from SEED
    #[arg(long, value_name = "SEED", env = "ADLEDGER_DETERMINISTIC")]
    pub deterministic: Option<u64>,

    /// Caller identity.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Serve GET /metrics on this address (host:port) instead of the API's, so it can stay
    /// on a private network [default: the API's address]
    #[arg(long, value_name = "ADDR", env = "ADLEDGER_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Enables the /admin/* routes, which then require `Authorization: Bearer TOKEN`
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ADLEDGER_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<AdminToken>,

    /// Take snapshots by schedule: off, hourly, daily, weekly, monthly or `every N`
    /// with s/m/h/d, such as `every 6h` [default: off]
    #[arg(long, value_name = "SCHEDULE", env = "ADLEDGER_SNAPSHOT_SCHEDULE")]
    pub snapshot_schedule: Option<ScheduleSetting>,

    /// How many snapshots the schedule keeps, deleting older ones [default: 7]
    #[arg(
        long,
        value_name = "N",
        env = "ADLEDGER_SNAPSHOT_KEEP",
        value_parser = parse_keep
    )]
    pub snapshot_keep: Option<usize>,

    /// Close a connection that has not sent a complete request head within this (from
    /// its accept, or from the first byte of a later request) [default: 10s]
    #[arg(long, value_name = "DURATION", env = "ADLEDGER_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<DurationSetting>,

    /// Close a connection with no request in progress after this (at least the
    /// header-read timeout); keep it above a load balancer's idle timeout [default: 75s]
    #[arg(long, value_name = "DURATION", env = "ADLEDGER_KEEP_ALIVE_TIMEOUT")]
    pub keep_alive_timeout: Option<DurationSetting>,

    /// Answer 408 to a request whose body is not complete within this of its head
    /// [default: 30s]
    #[arg(long, value_name = "DURATION", env = "ADLEDGER_BODY_READ_TIMEOUT")]
    pub body_read_timeout: Option<DurationSetting>,

    /// Answer 503 (with Retry-After) to a request not answered within this [default: 60s]
    #[arg(long, value_name = "DURATION", env = "ADLEDGER_REQUEST_TIMEOUT")]
    pub request_timeout: Option<DurationSetting>,

    /// Open connections at most; beyond, new ones wait in the kernel's listen backlog
    /// [default: 4096]
    #[arg(long, value_name = "N", env = "ADLEDGER_MAX_CONNECTIONS")]
    pub max_connections: Option<NonZeroUsize>,

    /// Requests in flight at most; beyond, new ones get 503 with Retry-After at once
    /// [default: 1024]
    #[arg(long, value_name = "N", env = "ADLEDGER_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<NonZeroUsize>,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before their
    /// connections are closed [default: 20s]
    #[arg(long, value_name = "DURATION", env = "ADLEDGER_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<DurationSetting>,

    /// AWS backend: how often to read the journal's tip, in ms (10..=60000) [default: 4000]
    #[arg(long, value_name = "MS", env = "ADLEDGER_JOURNAL_POLL_MS", value_parser = millis_in(JOURNAL_POLL_MS))]
    pub journal_poll_ms: Option<u64>,

    /// AWS backend: how long a projector lease lasts, in ms (1000..=600000) [default: 10000]
    #[arg(long, value_name = "MS", env = "ADLEDGER_LEASE_MS", value_parser = millis_in(LEASE_MS))]
    pub lease_ms: Option<u64>,

    /// Local backend: rebuild a read model (state store, search index) from the journal
    /// at startup when its files are damaged, instead of refusing to start [default: false]
    #[arg(
        long,
        value_name = "BOOL",
        env = "ADLEDGER_REBUILD_DAMAGED_READ_MODELS",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub rebuild_damaged_read_models: Option<bool>,
    /// The ledger feed carries a digest event every N blocks; every server of one ledger
    /// must use the same N [default: 100]
    #[arg(long, value_name = "N", env = "ADLEDGER_FEED_DIGEST_EVERY")]
    pub feed_digest_every: Option<std::num::NonZeroU64>,
}

impl ServeArgs {
    /// The settings these flags (or their variables) name, as the top configuration layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            deterministic: self.deterministic,
            admin_token: self.admin_token.clone(),
            snapshot_schedule: self.snapshot_schedule,
            snapshot_keep: self.snapshot_keep,
            header_read_timeout: self.header_read_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
            body_read_timeout: self.body_read_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections,
            max_in_flight: self.max_in_flight,
            shutdown_grace: self.shutdown_grace,
            auth: self.auth.overrides(),
            metrics_listen: self.metrics_listen.clone(),
            journal_poll_ms: self.journal_poll_ms,
            lease_ms: self.lease_ms,
            rebuild_damaged_read_models: self.rebuild_damaged_read_models,
            feed_digest_every: self.feed_digest_every,
            ..self.storage.overrides()
        }
    }

    /// The configuration these flags, the environment and the config file give.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.overrides())
    }
}

/// The settings above the file: flags and `ADLEDGER_*` variables (clap has already let
/// a flag win over its variable), and the variables that have no flag. `None` where
/// nothing says anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen` / `ADLEDGER_LISTEN`.
    pub listen: Option<String>,
    /// `--data-dir` / `ADLEDGER_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--config` / `ADLEDGER_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--backend` / `ADLEDGER_BACKEND`.
    pub backend: Option<BackendKind>,
    /// `--deterministic` / `ADLEDGER_DETERMINISTIC`.
    pub deterministic: Option<u64>,
    /// `--admin-token` / `ADLEDGER_ADMIN_TOKEN`.
    pub admin_token: Option<AdminToken>,
    /// `--snapshot-schedule` / `ADLEDGER_SNAPSHOT_SCHEDULE`.
    pub snapshot_schedule: Option<ScheduleSetting>,
    /// `--snapshot-keep` / `ADLEDGER_SNAPSHOT_KEEP`.
    pub snapshot_keep: Option<usize>,
    /// `--header-read-timeout` / `ADLEDGER_HEADER_READ_TIMEOUT`.
    pub header_read_timeout: Option<DurationSetting>,
    /// `--keep-alive-timeout` / `ADLEDGER_KEEP_ALIVE_TIMEOUT`.
    pub keep_alive_timeout: Option<DurationSetting>,
    /// `--body-read-timeout` / `ADLEDGER_BODY_READ_TIMEOUT`.
    pub body_read_timeout: Option<DurationSetting>,
    /// `--request-timeout` / `ADLEDGER_REQUEST_TIMEOUT`.
    pub request_timeout: Option<DurationSetting>,
    /// `--max-connections` / `ADLEDGER_MAX_CONNECTIONS`.
    pub max_connections: Option<NonZeroUsize>,
    /// `--max-in-flight` / `ADLEDGER_MAX_IN_FLIGHT`.
    pub max_in_flight: Option<NonZeroUsize>,
    /// `--shutdown-grace` / `ADLEDGER_SHUTDOWN_GRACE`.
    pub shutdown_grace: Option<DurationSetting>,
    /// `--journal-poll-ms` / `ADLEDGER_JOURNAL_POLL_MS`.
    pub journal_poll_ms: Option<u64>,
    /// `--lease-ms` / `ADLEDGER_LEASE_MS`.
    pub lease_ms: Option<u64>,
    /// `--rebuild-damaged-read-models` / `ADLEDGER_REBUILD_DAMAGED_READ_MODELS`.
    pub rebuild_damaged_read_models: Option<bool>,
    /// `--feed-digest-every` / `ADLEDGER_FEED_DIGEST_EVERY`.
    pub feed_digest_every: Option<std::num::NonZeroU64>,
    /// `--dynamodb-endpoint` / `ADLEDGER_DYNAMODB_ENDPOINT`.
    pub dynamodb_endpoint: Option<String>,
    /// `--table-prefix` / `ADLEDGER_TABLE_PREFIX`.
    pub table_prefix: Option<String>,
    /// `--search` / `ADLEDGER_SEARCH`.
    pub search: Option<SearchKind>,
    /// `--opensearch-url` / `ADLEDGER_OPENSEARCH_URL`.
    pub opensearch_url: Option<String>,
    /// `--opensearch-auth` / `ADLEDGER_OPENSEARCH_AUTH`.
    pub opensearch_auth: Option<OpenSearchAuthKind>,
    /// `ADLEDGER_OPENSEARCH_USERNAME` (no flag).
    pub opensearch_username: Option<String>,
    /// `ADLEDGER_OPENSEARCH_PASSWORD` (no flag: a password on a command line shows in
    /// `ps`; never in the file either).
    pub opensearch_password: Option<Secret>,
    /// The `--auth`, `--jwt-*` flags and `ADLEDGER_JWT_SECRET`.
    pub auth: AuthOverrides,
    /// `--metrics-listen` / `ADLEDGER_METRICS_LISTEN`.
    pub metrics_listen: Option<String>,
}

/// A configuration that cannot be used; the message names the source and the key.
///
/// A bad flag or `ADLEDGER_*` value never gets here: clap refuses it, naming the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a bad value.
    #[error("invalid config file {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names an unknown key).
        message: String,
    },
}

impl Overrides {
    /// Adds the settings that only variables carry (the OpenSearch username and
    /// password), read through `lookup`; an empty value counts as unset.
    pub fn with_env_only(mut self, lookup: impl Fn(&str) -> Option<String>) -> Overrides {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        self.opensearch_username = get("ADLEDGER_OPENSEARCH_USERNAME");
        self.opensearch_password = get("ADLEDGER_OPENSEARCH_PASSWORD").map(Secret::new);
        self.auth.jwt_secret = get("ADLEDGER_JWT_SECRET").map(Secret::new);
        self
    }

    /// Replaces each setting of `config` this layer names.
    fn apply_to(&self, config: &mut Config) {
        if let Some(listen) = &self.listen {
            config.listen.clone_from(listen);
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir.clone_from(dir);
        }
        if let Some(backend) = self.backend {
            config.backend = backend;
        }
        if let Some(seed) = self.deterministic {
            config.deterministic = Some(seed);
        }
        if let Some(token) = &self.admin_token {
            config.admin_token = Some(token.clone());
        }
        if let Some(schedule) = self.snapshot_schedule {
            config.snapshots.schedule = schedule;
        }
        if let Some(keep) = self.snapshot_keep {
            config.snapshots.keep = keep;
        }
        if let Some(every) = self.feed_digest_every {
            config.feed.digest_every = every;
        }
        let http = &mut config.http;
        if let Some(timeout) = self.header_read_timeout {
            http.header_read_timeout = timeout;
        }
        if let Some(timeout) = self.keep_alive_timeout {
            http.keep_alive_timeout = timeout;
        }
        if let Some(timeout) = self.body_read_timeout {
            http.body_read_timeout = timeout;
        }
        if let Some(timeout) = self.request_timeout {
            http.request_timeout = timeout;
        }
        if let Some(max) = self.max_connections {
            http.max_connections = max;
        }
        if let Some(max) = self.max_in_flight {
            http.max_in_flight = max;
        }
        if let Some(grace) = self.shutdown_grace {
            http.shutdown_grace = grace;
        }
        if let Some(ms) = self.journal_poll_ms {
            config.journal_poll_ms = ms;
        }
        if let Some(ms) = self.lease_ms {
            config.lease_ms = ms;
        }
        if let Some(rebuild) = self.rebuild_damaged_read_models {
            config.rebuild_damaged_read_models = rebuild;
        }
        if let Some(endpoint) = &self.dynamodb_endpoint {
            config.dynamodb_endpoint = Some(endpoint.clone());
        }
        if let Some(prefix) = &self.table_prefix {
            config.table_prefix.clone_from(prefix);
        }
        if let Some(search) = self.search {
            config.search = search;
        }
        if let Some(url) = &self.opensearch_url {
            config.opensearch_url = Some(url.clone());
        }
        if let Some(auth) = self.opensearch_auth {
            config.opensearch_auth = Some(auth);
        }
        if let Some(username) = &self.opensearch_username {
            config.opensearch_username = Some(username.clone());
        }
        if let Some(password) = &self.opensearch_password {
            config.opensearch_password = Some(password.clone());
        }
        self.auth.apply_to(&mut config.auth);
        if let Some(addr) = &self.metrics_listen {
            config.metrics_listen = Some(addr.clone());
        }
    }
}

/// A process environment variable, lossily decoded (as the flags' variables are).
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

impl Config {
    /// Parses a TOML config file's text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = match e.span() {
                Some(span) => {
                    let before = &text.as_bytes()[..span.start.min(text.len())];
                    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                    format!("line {line}: {}", e.message())
                }
                None => e.message().to_string(),
            };
            ConfigError::File {
                path: path.to_path_buf(),
                message,
            }
        })
    }

    /// Layers defaults, the file, and the flags and environment (highest wins).
    pub fn resolve(file: Option<Config>, layer: &Overrides) -> Config {
        let mut config = file.unwrap_or_default();
        layer.apply_to(&mut config);
        config
    }

    /// Resolves the configuration: `layer` (flags and their variables) and the
    /// variables without a flag over the config file `layer` names (a named file that
    /// does not exist is an error) over the defaults.
    pub fn load(layer: &Overrides) -> Result<Config, ConfigError> {
        let layer = layer.clone().with_env_only(process_env);
        let file = match &layer.config {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(Config::from_toml(&text, path)?)
            }
        };
        Ok(Config::resolve(file, &layer))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::snapshot_schedule::{DEFAULT_KEEP, Schedule};

    fn file(text: &str) -> Config {
        Config::from_toml(text, Path::new("adledger.toml")).expect("valid file")
    }

    /// `adledger serve`'s flags alone, as clap parses them.
    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn flags(argv: &[&str]) -> Result<Overrides, clap::Error> {
        let argv = std::iter::once("serve").chain(argv.iter().copied());
        Ok(Serve::try_parse_from(argv)?.args.overrides())
    }

    fn env_only(vars: &[(&str, &str)]) -> Overrides {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Overrides::default().with_env_only(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_without_any_layer() {
        let config = Config::resolve(None, &Overrides::default());
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./adledger-data"));
        assert_eq!(config.backend, BackendKind::Local);
        assert_eq!(config.deterministic, None);
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let config = Config::resolve(
            Some(file("listen = \"0.0.0.0:9000\"\ndeterministic = 7\n")),
            &Overrides::default(),
        );
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.deterministic, Some(7));
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn flags_override_the_file_and_absent_flags_keep_it() {
        let from_file = file(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/file\"\nbackend = \"aws\"\ndeterministic = 1\n",
        );
        let layer = flags(&["--listen", "127.0.0.1:3", "--data-dir", "/flag"]).expect("valid");
        let config = Config::resolve(Some(from_file), &layer);
        assert_eq!(config.listen, "127.0.0.1:3", "flag beats file");
        assert_eq!(config.data_dir, PathBuf::from("/flag"), "flag beats file");
        assert_eq!(config.deterministic, Some(1), "file beats default");
        assert_eq!(config.backend, BackendKind::Aws, "file beats default");
    }

    #[test]
    fn aws_settings_layer_like_the_rest() {
        let from_file = file(
            "backend = \"aws\"\ndynamodb_endpoint = \"http://127.0.0.1:1\"\ntable_prefix = \"f-\"\n",
        );
        assert_eq!(from_file.search, SearchKind::Tantivy, "default search");
        let layer = flags(&[
            "--table-prefix",
            "e-",
            "--search",
            "opensearch",
            "--dynamodb-endpoint",
            "http://127.0.0.1:3",
        ])
        .expect("valid flags");
        let config = Config::resolve(Some(from_file), &layer);
        assert_eq!(
            config.dynamodb_endpoint.as_deref(),
            Some("http://127.0.0.1:3")
        );
        assert_eq!(config.table_prefix, "e-");
        assert_eq!(config.search, SearchKind::Opensearch);
        assert_eq!(Config::default().table_prefix, "adledger-");
        let err = flags(&["--search", "solr"]).expect_err("bad search");
        assert!(err.to_string().contains("--search"), "{err}");
    }

    #[test]
    fn opensearch_settings_layer_and_the_password_stays_out_of_files_and_logs() {
        let from_file = file(
            "search = \"opensearch\"\nopensearch_url = \"http://127.0.0.1:1\"\n\
             opensearch_auth = \"sigv4\"\nopensearch_username = \"file-user\"\n",
        );
        assert_eq!(from_file.opensearch_auth, Some(OpenSearchAuthKind::Sigv4));
        let layer = Overrides {
            opensearch_url: Some("https://search.example:443".into()),
            opensearch_auth: Some(OpenSearchAuthKind::Basic),
            ..env_only(&[("ADLEDGER_OPENSEARCH_PASSWORD", "hunter2")])
        };
        let config = Config::resolve(Some(from_file), &layer);
        assert_eq!(
            config.opensearch_url.as_deref(),
            Some("https://search.example:443")
        );
        assert_eq!(config.opensearch_auth, Some(OpenSearchAuthKind::Basic));
        assert_eq!(config.opensearch_username.as_deref(), Some("file-user"));
        assert_eq!(
            config.opensearch_password.as_ref().map(Secret::expose),
            Some("hunter2")
        );
        assert!(!format!("{config:?}").contains("hunter2"), "Debug hides it");
        let user = env_only(&[("ADLEDGER_OPENSEARCH_USERNAME", "env-user")]);
        let config = Config::resolve(Some(file("opensearch_username = \"f\"\n")), &user);
        assert_eq!(config.opensearch_username.as_deref(), Some("env-user"));
        assert_eq!(
            env_only(&[("ADLEDGER_OPENSEARCH_USERNAME", "")]).opensearch_username,
            None,
            "empty is unset"
        );
        let err = Config::from_toml("opensearch_password = \"x\"\n", Path::new("a.toml"))
            .expect_err("no passwords in files");
        assert!(err.to_string().contains("opensearch_password"), "{err}");
        let err = flags(&["--opensearch-auth", "kerberos"]).expect_err("bad auth");
        assert!(err.to_string().contains("--opensearch-auth"), "{err}");
        assert!(
            flags(&["--opensearch-password", "x"]).is_err(),
            "no password flag"
        );
    }

    #[test]
    fn auth_settings_layer_like_the_rest() {
        use crate::auth::{AuthMode, ReadAccess};
        let from_file = file(
            "[auth]\nmode = \"jwks\"\nissuer = \"https://idp.example/pool\"\n\
             audience = [\"app\", \"cli\"]\nreads = \"authenticated\"\n",
        );
        assert_eq!(from_file.auth.mode, Some(AuthMode::Jwks));
        assert_eq!(from_file.auth.audience, ["app", "cli"]);
        assert_eq!(from_file.auth.reads, ReadAccess::Authenticated);
        let layer = flags(&[
            "--auth",
            "hs256",
            "--jwt-audience",
            "web",
            "--jwt-audience",
            "mobile",
        ])
        .expect("valid")
        .with_env_only(|k| (k == "ADLEDGER_JWT_SECRET").then(|| "x".repeat(40)));
        let config = Config::resolve(Some(from_file), &layer);
        assert_eq!(config.auth.mode, Some(AuthMode::Hs256), "flag beats file");
        assert_eq!(config.auth.audience, ["web", "mobile"]);
        assert_eq!(
            config.auth.issuer.as_deref(),
            Some("https://idp.example/pool")
        );
        assert_eq!(
            config.auth.jwt_secret.as_ref().map(|s| s.expose().len()),
            Some(40)
        );
        assert!(
            !format!("{config:?}").contains(&"x".repeat(40)),
            "secret hidden"
        );
        let err = Config::from_toml("[auth]\nsecret = \"s\"\n", Path::new("a.toml"))
            .expect_err("the secret is never read from the file");
        assert!(err.to_string().contains("secret"), "{err}");
        assert!(flags(&["--jwt-secret", "x"]).is_err(), "no secret flag");
    }

    #[test]
    fn unknown_file_keys_are_named() {
        let err = Config::from_toml("listen = \"x\"\ndatadir = \"/d\"\n", Path::new("a.toml"))
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("datadir"), "{text}");
        assert!(text.contains("a.toml"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn bad_values_are_errors_naming_their_source() {
        assert!(Config::from_toml("backend = \"s3\"\n", Path::new("a.toml")).is_err());
        let err = flags(&["--backend", "s3"]).expect_err("bad backend");
        assert!(err.to_string().contains("--backend"), "{err}");
        let err = flags(&["--deterministic", "seven"]).expect_err("bad seed");
        assert!(err.to_string().contains("--deterministic"), "{err}");
        let err = flags(&["--admin-token", "  "]).expect_err("blank token");
        assert!(err.to_string().contains("must not be empty"), "{err}");
    }

    #[test]
    fn aws_timing_settings_layer_and_refuse_values_out_of_range() {
        let defaults = Config::default();
        assert_eq!(defaults.journal_poll_ms, DEFAULT_JOURNAL_POLL_MS);
        assert_eq!(defaults.lease_ms, DEFAULT_LEASE_MS);
        let from_file = file("journal_poll_ms = 1000\nlease_ms = 20000\n");
        let layer = flags(&["--lease-ms", "5000"]).expect("valid flags");
        let config = Config::resolve(Some(from_file), &layer);
        assert_eq!(config.journal_poll_ms, 1000, "file beats default");
        assert_eq!(config.lease_ms, 5000, "flag beats file");
        let err = flags(&["--journal-poll-ms", "5"]).expect_err("below the range");
        assert!(err.to_string().contains("--journal-poll-ms"), "{err}");
        let err = flags(&["--lease-ms", "ten"]).expect_err("not a number");
        assert!(err.to_string().contains("--lease-ms"), "{err}");
        let err = Config::from_toml("lease_ms = 999\n", Path::new("a.toml"))
            .expect_err("below the range in the file");
        assert!(err.to_string().contains("999"), "{err}");
    }

    #[test]
    fn rebuilding_damaged_read_models_is_off_unless_asked() {
        assert!(!Config::default().rebuild_damaged_read_models);
        let from_file = file("rebuild_damaged_read_models = true\n");
        let config = Config::resolve(Some(from_file.clone()), &Overrides::default());
        assert!(config.rebuild_damaged_read_models, "the file says so");
        let layer = flags(&["--rebuild-damaged-read-models", "false"]).expect("valid flags");
        let config = Config::resolve(Some(from_file), &layer);
        assert!(!config.rebuild_damaged_read_models, "flag beats file");
        let layer = flags(&["--rebuild-damaged-read-models"]).expect("a bare flag");
        assert!(Config::resolve(None, &layer).rebuild_damaged_read_models);
    }

    #[test]
    fn the_admin_token_stays_out_of_debug_output() {
        let layer = flags(&["--admin-token", "s3cret-token"]).expect("valid");
        assert_eq!(
            layer.admin_token.as_ref().map(AdminToken::expose),
            Some("s3cret-token")
        );
        assert!(!format!("{layer:?}").contains("s3cret-token"));
    }

    #[test]
    fn snapshot_settings_layer_like_the_rest() {
        let from_file = file("[snapshots]\nschedule = \"monthly\"\nkeep = 12\n");
        assert_eq!(from_file.snapshots.schedule.0, Some(Schedule::Monthly));
        assert_eq!(
            Config::default().snapshots.schedule.0,
            None,
            "off by default"
        );
        assert_eq!(Config::default().snapshots.keep, DEFAULT_KEEP);
        let layer = flags(&["--snapshot-keep", "2"]).expect("valid flags");
        let config = Config::resolve(Some(from_file), &layer);
        assert_eq!(
            config.snapshots.schedule.0,
            Some(Schedule::Monthly),
            "file beats default"
        );
        assert_eq!(config.snapshots.keep, 2, "flag beats file");
        let layer = flags(&["--snapshot-schedule", "daily"]).expect("valid flags");
        assert_eq!(
            Config::resolve(None, &layer).snapshots.schedule.0,
            Some(Schedule::Daily)
        );
        let err = flags(&["--snapshot-schedule", "often"]).expect_err("bad schedule");
        assert!(err.to_string().contains("--snapshot-schedule"), "{err}");
        let err = flags(&["--snapshot-keep", "0"]).expect_err("bad keep");
        assert!(err.to_string().contains("--snapshot-keep"), "{err}");
        let err = Config::from_toml(
            "[snapshots]\nschedule = \"every 0s\"\n",
            Path::new("a.toml"),
        )
        .expect_err("bad file value");
        assert!(err.to_string().contains("schedule"), "{err}");
    }

    #[test]
    fn http_limits_layer_like_the_rest() {
        let from_file = file(
            "[http]\nheader_read_timeout = \"3s\"\nmax_in_flight = 5\nshutdown_grace = \"1m\"\n",
        );
        assert_eq!(
            from_file.http.header_read_timeout.get(),
            Duration::from_secs(3)
        );
        assert_eq!(Config::default().http, HttpLimits::default());
        let layer = flags(&[
            "--max-in-flight",
            "2",
            "--body-read-timeout",
            "1500ms",
            "--max-connections",
            "9",
            "--request-timeout",
            "7s",
        ])
        .expect("valid flags");
        let config = Config::resolve(Some(from_file), &layer);
        let http = config.http;
        assert_eq!(http.max_in_flight.get(), 2, "flag beats file");
        assert_eq!(
            http.header_read_timeout.get(),
            Duration::from_secs(3),
            "file"
        );
        assert_eq!(http.shutdown_grace.get(), Duration::from_secs(60), "file");
        assert_eq!(http.body_read_timeout.get(), Duration::from_millis(1500));
        assert_eq!(http.max_connections.get(), 9);
        assert_eq!(http.request_timeout.get(), Duration::from_secs(7));
        assert_eq!(
            http.keep_alive_timeout,
            crate::edge::DEFAULT_KEEP_ALIVE_TIMEOUT
        );
        let layer = flags(&[
            "--shutdown-grace",
            "2s",
            "--header-read-timeout",
            "1s",
            "--keep-alive-timeout",
            "2m",
        ])
        .expect("valid flags");
        let http = Config::resolve(None, &layer).http;
        assert_eq!(http.shutdown_grace.get(), Duration::from_secs(2));
        assert_eq!(http.header_read_timeout.get(), Duration::from_secs(1));
        assert_eq!(http.keep_alive_timeout.get(), Duration::from_secs(120));
        let err = flags(&["--max-in-flight", "0"]).expect_err("zero");
        assert!(err.to_string().contains("--max-in-flight"), "{err}");
        let err = flags(&["--shutdown-grace", "soon"]).expect_err("not a duration");
        assert!(err.to_string().contains("--shutdown-grace"), "{err}");
        let err = Config::from_toml("[http]\nmax_conections = 3\n", Path::new("a.toml"))
            .expect_err("typo");
        assert!(err.to_string().contains("max_conections"), "{err}");
    }

    #[test]
    fn the_config_file_named_by_the_layer_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let named = dir.path().join("named.toml");
        std::fs::write(&named, "listen = \"127.0.0.1:11\"\n").expect("write");
        let layer = Overrides {
            config: Some(named),
            ..Overrides::default()
        };
        let config = Config::load(&layer).expect("loads");
        assert_eq!(config.listen, "127.0.0.1:11");
        let missing = Overrides {
            config: Some(dir.path().join("missing.toml")),
            ..Overrides::default()
        };
        assert!(Config::load(&missing).is_err());
    }
}
