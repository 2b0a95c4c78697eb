//! Configuration of `adledger serve`: one [`Config`] resolved from four layers.
//!
//! Precedence, lowest to highest: built-in defaults, a TOML file (`--config` or
//! `ADLEDGER_CONFIG`), `ADLEDGER_*` environment variables, command-line flags. The TOML
//! keys are `listen`, `data_dir`, `backend`, `deterministic` and `admin_token`, for
//! the AWS backend `dynamodb_endpoint`, `table_prefix` and `search`, and with `search =
//! "opensearch"` `opensearch_url`, `opensearch_auth` and `opensearch_username`; any other
//! key is an error that names it, so a typo never silently falls back to a default. The
//! OpenSearch password is read from `ADLEDGER_OPENSEARCH_PASSWORD` only, never from the
//! file, and never appears in `Debug` output or logs.
//!
//! The AWS backend takes its region and credentials from the standard AWS chain
//! (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, shared config files, …).
//! DynamoDB Local accepts any static credentials: `AWS_ACCESS_KEY_ID=local
//! AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1`.
//!
//! The environment is passed in as a lookup function rather than read here, so the
//! precedence rules are unit-tested without touching the process environment.
//!
//! Scheduled snapshots are the `[snapshots]` table (`schedule`, `keep`),
//! `ADLEDGER_SNAPSHOT_SCHEDULE` / `ADLEDGER_SNAPSHOT_KEEP`, `--snapshot-schedule` /
//! `--snapshot-keep`; see [`crate::snapshot_schedule`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

impl BackendKind {
    /// The name used in flags, variables and files.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Aws => "aws",
        }
    }

    fn parse(text: &str) -> Option<BackendKind> {
        match text {
            "local" => Some(BackendKind::Local),
            "aws" => Some(BackendKind::Aws),
            _ => None,
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

impl OpenSearchAuthKind {
    fn parse(text: &str) -> Option<OpenSearchAuthKind> {
        match text {
            "none" => Some(OpenSearchAuthKind::None),
            "basic" => Some(OpenSearchAuthKind::Basic),
            "sigv4" => Some(OpenSearchAuthKind::Sigv4),
            "sigv4-serverless" => Some(OpenSearchAuthKind::Sigv4Serverless),
            _ => None,
        }
    }
}

/// A secret setting (the OpenSearch password): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

impl SearchKind {
    /// The name used in flags, variables and files.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchKind::Tantivy => "tantivy",
            SearchKind::Opensearch => "opensearch",
        }
    }

    fn parse(text: &str) -> Option<SearchKind> {
        match text {
            "tantivy" => Some(SearchKind::Tantivy),
            "opensearch" => Some(SearchKind::Opensearch),
            _ => None,
        }
    }
}

/// The prefix of the AWS backend's table names when none is configured.
pub const DEFAULT_TABLE_PREFIX: &str = "adledger-";

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
    pub snapshots: crate::snapshot_schedule::SnapshotConfig,
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
            snapshots: crate::snapshot_schedule::SnapshotConfig::default(),
            dynamodb_endpoint: None,
            table_prefix: DEFAULT_TABLE_PREFIX.to_string(),
            search: SearchKind::Tantivy,
            opensearch_url: None,
            opensearch_auth: None,
            opensearch_username: None,
            opensearch_password: None,
        }
    }
}

/// Settings from one layer above the file (the environment or the flags); `None` where
/// the layer says nothing.
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
    pub snapshot_schedule: Option<crate::snapshot_schedule::ScheduleSetting>,
    /// `--snapshot-keep` / `ADLEDGER_SNAPSHOT_KEEP`.
    pub snapshot_keep: Option<usize>,
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
    /// `ADLEDGER_OPENSEARCH_USERNAME`.
    pub opensearch_username: Option<String>,
    /// `ADLEDGER_OPENSEARCH_PASSWORD`.
    pub opensearch_password: Option<Secret>,
}

/// A configuration that cannot be used; the message names the source and the key.
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
    /// An environment variable has a value that cannot be used.
    #[error("invalid environment variable {name}={value:?}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What would be valid.
        reason: &'static str,
    },
}

impl Overrides {
    /// Reads the `ADLEDGER_*` variables through `lookup` (an empty value counts as unset).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Overrides, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let backend = match get("ADLEDGER_BACKEND") {
            None => None,
            Some(value) => Some(BackendKind::parse(&value).ok_or(ConfigError::Env {
                name: "ADLEDGER_BACKEND",
                value,
                reason: "must be `local` or `aws`",
            })?),
        };
        let deterministic = match get("ADLEDGER_DETERMINISTIC") {
            None => None,
            Some(value) => Some(value.parse::<u64>().map_err(|_| ConfigError::Env {
                name: "ADLEDGER_DETERMINISTIC",
                value,
                reason: "must be a whole-number seed from 0 to 18446744073709551615",
            })?),
        };
        let admin_token = match get("ADLEDGER_ADMIN_TOKEN") {
            None => None,
            Some(value) => {
                Some(
                    AdminToken::try_from(value).map_err(|reason| ConfigError::Env {
                        name: "ADLEDGER_ADMIN_TOKEN",
                        value: "<hidden>".into(),
                        reason,
                    })?,
                )
            }
        };
        let snapshot_schedule = match get("ADLEDGER_SNAPSHOT_SCHEDULE") {
            None => None,
            Some(value) => Some(value.parse().map_err(|reason| ConfigError::Env {
                name: "ADLEDGER_SNAPSHOT_SCHEDULE",
                value,
                reason,
            })?),
        };
        let snapshot_keep = match get("ADLEDGER_SNAPSHOT_KEEP") {
            None => None,
            Some(value) => Some(crate::snapshot_schedule::parse_keep(&value).map_err(
                |reason| ConfigError::Env {
                    name: "ADLEDGER_SNAPSHOT_KEEP",
                    value,
                    reason,
                },
            )?),
        };
        let search = match get("ADLEDGER_SEARCH") {
            None => None,
            Some(value) => Some(SearchKind::parse(&value).ok_or(ConfigError::Env {
                name: "ADLEDGER_SEARCH",
                value,
                reason: "must be `tantivy` or `opensearch`",
            })?),
        };
        let opensearch_auth = match get("ADLEDGER_OPENSEARCH_AUTH") {
            None => None,
            Some(value) => Some(OpenSearchAuthKind::parse(&value).ok_or(ConfigError::Env {
                name: "ADLEDGER_OPENSEARCH_AUTH",
                value,
                reason: "must be `none`, `basic`, `sigv4` or `sigv4-serverless`",
            })?),
        };
        Ok(Overrides {
            opensearch_url: get("ADLEDGER_OPENSEARCH_URL"),
            opensearch_auth,
            opensearch_username: get("ADLEDGER_OPENSEARCH_USERNAME"),
            opensearch_password: get("ADLEDGER_OPENSEARCH_PASSWORD").map(Secret),
            dynamodb_endpoint: get("ADLEDGER_DYNAMODB_ENDPOINT"),
            table_prefix: get("ADLEDGER_TABLE_PREFIX"),
            search,
            admin_token,
            listen: get("ADLEDGER_LISTEN"),
            data_dir: get("ADLEDGER_DATA_DIR").map(PathBuf::from),
            config: get("ADLEDGER_CONFIG").map(PathBuf::from),
            backend,
            deterministic,
            snapshot_schedule,
            snapshot_keep,
        })
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
    }
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

    /// Layers defaults, the file, the environment and the flags (highest wins).
    pub fn resolve(file: Option<Config>, env: &Overrides, flags: &Overrides) -> Config {
        let mut config = file.unwrap_or_default();
        env.apply_to(&mut config);
        flags.apply_to(&mut config);
        config
    }

    /// Resolves the configuration, reading the config file named by the flags or the
    /// environment (a named file that does not exist is an error).
    pub fn load(env: &Overrides, flags: &Overrides) -> Result<Config, ConfigError> {
        let file = match flags.config.as_ref().or(env.config.as_ref()) {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(Config::from_toml(&text, path)?)
            }
        };
        Ok(Config::resolve(file, env, flags))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Overrides, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Overrides::from_env(|k| map.get(k).cloned())
    }

    fn file(text: &str) -> Config {
        Config::from_toml(text, Path::new("adledger.toml")).expect("valid file")
    }

    #[test]
    fn defaults_without_any_layer() {
        let config = Config::resolve(None, &Overrides::default(), &Overrides::default());
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
            &Overrides::default(),
        );
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.deterministic, Some(7));
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let from_file = file(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/file\"\nbackend = \"aws\"\ndeterministic = 1\n",
        );
        let env = env(&[
            ("ADLEDGER_LISTEN", "127.0.0.1:2"),
            ("ADLEDGER_DATA_DIR", "/env"),
            ("ADLEDGER_DETERMINISTIC", "2"),
        ])
        .expect("valid env");
        let flags = Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        };
        let config = Config::resolve(Some(from_file), &env, &flags);
        assert_eq!(config.listen, "127.0.0.1:3", "flag beats env and file");
        assert_eq!(config.data_dir, PathBuf::from("/env"), "env beats file");
        assert_eq!(config.deterministic, Some(2), "env beats file");
        assert_eq!(config.backend, BackendKind::Aws, "file beats default");
    }

    #[test]
    fn aws_settings_layer_like_the_rest() {
        let from_file = file(
            "backend = \"aws\"\ndynamodb_endpoint = \"http://127.0.0.1:1\"\ntable_prefix = \"f-\"\n",
        );
        assert_eq!(from_file.search, SearchKind::Tantivy, "default search");
        let layer = env(&[
            ("ADLEDGER_TABLE_PREFIX", "e-"),
            ("ADLEDGER_SEARCH", "opensearch"),
        ])
        .expect("valid env");
        let flags = Overrides {
            dynamodb_endpoint: Some("http://127.0.0.1:3".into()),
            ..Overrides::default()
        };
        let config = Config::resolve(Some(from_file), &layer, &flags);
        assert_eq!(
            config.dynamodb_endpoint.as_deref(),
            Some("http://127.0.0.1:3")
        );
        assert_eq!(config.table_prefix, "e-");
        assert_eq!(config.search, SearchKind::Opensearch);
        assert_eq!(Config::default().table_prefix, "adledger-");
        let err = env(&[("ADLEDGER_SEARCH", "solr")]).expect_err("bad search");
        assert!(err.to_string().contains("ADLEDGER_SEARCH"));
    }

    #[test]
    fn opensearch_settings_layer_and_the_password_stays_out_of_files_and_logs() {
        let from_file = file(
            "search = \"opensearch\"\nopensearch_url = \"http://127.0.0.1:1\"\n\
             opensearch_auth = \"sigv4\"\nopensearch_username = \"file-user\"\n",
        );
        assert_eq!(from_file.opensearch_auth, Some(OpenSearchAuthKind::Sigv4));
        let layer = env(&[
            ("ADLEDGER_OPENSEARCH_URL", "https://search.example:443"),
            ("ADLEDGER_OPENSEARCH_AUTH", "basic"),
            ("ADLEDGER_OPENSEARCH_PASSWORD", "hunter2"),
        ])
        .expect("valid env");
        let config = Config::resolve(Some(from_file), &layer, &Overrides::default());
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
        let err = Config::from_toml("opensearch_password = \"x\"\n", Path::new("a.toml"))
            .expect_err("no passwords in files");
        assert!(err.to_string().contains("opensearch_password"), "{err}");
        let err = env(&[("ADLEDGER_OPENSEARCH_AUTH", "kerberos")]).expect_err("bad auth");
        assert!(err.to_string().contains("ADLEDGER_OPENSEARCH_AUTH"));
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
        let err = env(&[("ADLEDGER_BACKEND", "s3")]).expect_err("bad backend");
        assert!(err.to_string().contains("ADLEDGER_BACKEND"));
        let err = env(&[("ADLEDGER_DETERMINISTIC", "-1")]).expect_err("bad seed");
        assert!(err.to_string().contains("ADLEDGER_DETERMINISTIC"));
        let empty = env(&[("ADLEDGER_BACKEND", "")]).expect("empty is unset");
        assert_eq!(empty.backend, None);
    }

    #[test]
    fn snapshot_settings_layer_like_the_rest() {
        use crate::snapshot_schedule::{DEFAULT_KEEP, Schedule};
        let from_file = file("[snapshots]\nschedule = \"monthly\"\nkeep = 12\n");
        assert_eq!(from_file.snapshots.schedule.0, Some(Schedule::Monthly));
        assert_eq!(
            Config::default().snapshots.schedule.0,
            None,
            "off by default"
        );
        assert_eq!(Config::default().snapshots.keep, DEFAULT_KEEP);
        let layer = env(&[("ADLEDGER_SNAPSHOT_SCHEDULE", "daily")]).expect("valid env");
        let flags = Overrides {
            snapshot_keep: Some(2),
            ..Overrides::default()
        };
        let config = Config::resolve(Some(from_file), &layer, &flags);
        assert_eq!(
            config.snapshots.schedule.0,
            Some(Schedule::Daily),
            "env beats file"
        );
        assert_eq!(config.snapshots.keep, 2, "flag beats file");
        let err = env(&[("ADLEDGER_SNAPSHOT_SCHEDULE", "often")]).expect_err("bad schedule");
        assert!(
            err.to_string().contains("ADLEDGER_SNAPSHOT_SCHEDULE"),
            "{err}"
        );
        let err = env(&[("ADLEDGER_SNAPSHOT_KEEP", "0")]).expect_err("bad keep");
        assert!(err.to_string().contains("ADLEDGER_SNAPSHOT_KEEP"), "{err}");
        let err = Config::from_toml(
            "[snapshots]\nschedule = \"every 0s\"\n",
            Path::new("a.toml"),
        )
        .expect_err("bad file value");
        assert!(err.to_string().contains("schedule"), "{err}");
    }

    #[test]
    fn config_file_comes_from_flag_before_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag_file = dir.path().join("flag.toml");
        let env_file = dir.path().join("env.toml");
        std::fs::write(&flag_file, "listen = \"127.0.0.1:11\"\n").expect("write");
        std::fs::write(&env_file, "listen = \"127.0.0.1:22\"\n").expect("write");
        let env = Overrides {
            config: Some(env_file),
            ..Overrides::default()
        };
        let flags = Overrides {
            config: Some(flag_file),
            ..Overrides::default()
        };
        let config = Config::load(&env, &flags).expect("loads");
        assert_eq!(config.listen, "127.0.0.1:11");
        let missing = Overrides {
            config: Some(dir.path().join("missing.toml")),
            ..Overrides::default()
        };
        assert!(Config::load(&Overrides::default(), &missing).is_err());
    }
}
