//! Backend selection: the one `match` on the configured backend, turning a [`Config`]
//! into the engine's [`Ports`].
//!
//! A backend that is not compiled into this build is a clear startup error, never a
//! panic or a silent fallback to another store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use adledger_engine::clock::{LogicalClock, SystemClock};
use adledger_engine::ids::UlidGenerator;
use adledger_engine::memory::MemoryBackend;
use adledger_engine::ports::{Clock, IdGenerator};
use adledger_engine::{Journal, Ports};
use adledger_engine::{SearchIndex, StateStore};
use adledger_local::{LocalBackend, SledJournal, SledStateStore, TantivySearchIndex};

use crate::config::{BackendKind, Config};

/// Why the storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend exists but is not part of this build.
    #[error("backend `{0}` is not compiled into this build")]
    NotCompiled(&'static str),
    /// The local data directory could not be opened (missing permissions, corrupt, or
    /// locked by another running adledger).
    #[error("cannot open data directory {}: {source}", dir.display())]
    Open {
        /// The directory.
        dir: PathBuf,
        /// The backend's error.
        source: adledger_engine::Error,
    },
    /// A tool that reads an existing journal (`adledger verify`) was pointed at a
    /// directory that holds none; opening would have created an empty one.
    #[error(
        "no journal in data directory {} (looked for {}): give the --data-dir the \
         server ran with",
        dir.display(),
        dir.join(LOCAL_JOURNAL_DIR).display()
    )]
    NoJournal {
        /// The directory.
        dir: PathBuf,
    },
    /// The AWS backend could not be opened: its tables are missing (run `adledger aws
    /// init`), no region or credentials were found, or DynamoDB is unreachable.
    #[error("cannot open the AWS backend (table prefix {prefix:?}): {source}")]
    Aws {
        /// The configured table prefix.
        prefix: String,
        /// The backend's error.
        source: adledger_engine::Error,
    },
    /// The local journal's files cannot be read (not: another process holds them).
    #[error(
        "cannot open the journal at {}: {source}. The journal is the ledger's history and \
         is never rebuilt: run `adledger verify --data-dir {}` to see what it finds, and if \
         its files are damaged, restore the journal directory from a backup, or move it \
         away and `adledger import` an export into an empty one",
        path.display(),
        dir.display()
    )]
    DamagedJournal {
        /// The journal's directory.
        path: PathBuf,
        /// The data directory.
        dir: PathBuf,
        /// The backend's error.
        source: adledger_engine::Error,
    },
    /// A local read model's files cannot be read (not: another process holds them).
    #[error(
        "cannot open the {what} at {}: {source}. It is a read model, rebuilt from the \
         journal: run `adledger rebuild --data-dir {}`, or start the server with \
         `--rebuild-damaged-read-models` (ADLEDGER_REBUILD_DAMAGED_READ_MODELS=true) to \
         rebuild it at startup",
        path.display(),
        dir.display()
    )]
    DamagedReadModel {
        /// "state read model" or "search index".
        what: &'static str,
        /// The read model's directory.
        path: PathBuf,
        /// The data directory.
        dir: PathBuf,
        /// The backend's error.
        source: adledger_engine::Error,
    },
    /// The data directory holds files, none of them adledger's: probably a wrong path.
    /// Nothing is created in it.
    #[error(
        "{} is not an adledger data directory: it holds {} but no journal, state or \
         search directory. Give --data-dir an empty or new directory to start a new \
         ledger, or the directory an adledger server ran with",
        dir.display(),
        found.join(", ")
    )]
    Foreign {
        /// The directory.
        dir: PathBuf,
        /// A few of the names found in it.
        found: Vec<String>,
    },
    /// AWS backend with a tantivy index: the index in the data directory was built for
    /// another ledger (other tables), so serving from it would mix two ledgers' ads.
    #[error(
        "the search index in {} was built for the DynamoDB ledger {built_for}, and this \
         server uses {used_for}: give each ledger a --data-dir of its own, or delete {} \
         (the index is rebuilt from the journal)",
        dir.display(),
        dir.display()
    )]
    IndexOfAnotherLedger {
        /// The index directory.
        dir: PathBuf,
        /// The ledger the index says it belongs to.
        built_for: String,
        /// The ledger this server was configured with.
        used_for: String,
    },
    /// The configured backend cannot do what was asked (yet).
    #[error("{0}")]
    Unsupported(String),
    /// An offline tool was pointed at the in-memory backend, which keeps nothing once
    /// its process ends, so there is no ledger for the tool to read.
    #[error(
        "the `memory` backend keeps nothing after its process ends, so there is no \
         journal to read: run this command on the data of a `local` or `aws` ledger"
    )]
    NothingStored,
}

/// The local backend keeps its journal in this subdirectory of the data directory (see
/// `adledger_local`'s layout).
const LOCAL_JOURNAL_DIR: &str = "journal";

/// What to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The journal and the read models, created if missing: a running ledger.
    Everything,
    /// Only the journal, which must exist: offline tools that read it, so they neither
    /// create an empty journal by mistake nor lock and touch the read models.
    ExistingJournal,
}

/// The opened storage, as much as the [`Scope`] asked for.
enum Opened {
    Ports(Ports),
    Journal(Arc<dyn Journal>),
}

/// Opens the configured backend and adds the clock and id generator.
pub fn open(config: &Config) -> Result<Ports, BackendError> {
    match open_scope(config, Scope::Everything)? {
        Opened::Ports(ports) => Ok(ports),
        Opened::Journal(_) => unreachable_scope(),
    }
}

/// Opens only the configured backend's existing journal, for offline tools such as
/// `adledger verify`: [`BackendError::NoJournal`] rather than creating an empty one.
pub fn open_journal(config: &Config) -> Result<Arc<dyn Journal>, BackendError> {
    match open_scope(config, Scope::ExistingJournal)? {
        Opened::Journal(journal) => Ok(journal),
        Opened::Ports(ports) => Ok(ports.journal),
    }
}

/// Opens the storage of an existing ledger for an offline tool: like [`open`], but a
/// local data directory without a journal is [`BackendError::NoJournal`] rather than a
/// new, empty ledger created by mistake.
pub fn open_existing(config: &Config) -> Result<Ports, BackendError> {
    if config.backend == BackendKind::Memory {
        return Err(BackendError::NothingStored);
    }
    if config.backend == BackendKind::Local {
        adledger_local::finish_pending(&config.data_dir).map_err(|source| BackendError::Open {
            dir: config.data_dir.clone(),
            source,
        })?;
    }
    if config.backend == BackendKind::Local && !config.data_dir.join(LOCAL_JOURNAL_DIR).is_dir() {
        return Err(BackendError::NoJournal {
            dir: config.data_dir.clone(),
        });
    }
    open(config)
}

/// `open` never gets a bare journal back; a panic-free answer if that ever changed.
fn unreachable_scope() -> Result<Ports, BackendError> {
    Err(BackendError::NotCompiled("(internal: wrong scope)"))
}

/// The one `match` on the configured backend.
fn open_scope(config: &Config, scope: Scope) -> Result<Opened, BackendError> {
    let dir = &config.data_dir;
    let open_error = |source| BackendError::Open {
        dir: dir.clone(),
        source,
    };
    match config.backend {
        BackendKind::Local if scope == Scope::ExistingJournal => {
            // A promotion (import) that a crash interrupted after its commit point is
            // finished first, so a tool never reads the journal it replaces.
            adledger_local::finish_pending(dir).map_err(open_error)?;
            let path = dir.join(LOCAL_JOURNAL_DIR);
            if !path.is_dir() {
                return Err(BackendError::NoJournal { dir: dir.clone() });
            }
            let journal = SledJournal::open(&path).map_err(|source| {
                if adledger_local::is_in_use(&source) {
                    open_error(source)
                } else {
                    BackendError::DamagedJournal {
                        path: path.clone(),
                        dir: dir.clone(),
                        source,
                    }
                }
            })?;
            Ok(Opened::Journal(Arc::new(journal)))
        }
        BackendKind::Local => {
            let (clock, ids) = clock_and_ids(config.deterministic);
            let local = open_local(config)?;
            Ok(Opened::Ports(Ports {
                journal: local.journal,
                state: local.state,
                search: local.search,
                clock,
                ids,
                // sled and tantivy lock the directory: this process is the only one.
                sharing: Default::default(),
            }))
        }
        BackendKind::Memory if scope == Scope::ExistingJournal => Err(BackendError::NothingStored),
        BackendKind::Memory => {
            let (clock, ids) = clock_and_ids(config.deterministic);
            let memory = MemoryBackend::new();
            Ok(Opened::Ports(Ports {
                journal: memory.journal,
                state: memory.state,
                search: memory.search,
                clock,
                ids,
                // Nothing is shared: the stores live and die with this process.
                sharing: Default::default(),
            }))
        }
        #[cfg(feature = "aws")]
        BackendKind::Aws => aws::open(config, scope),
        #[cfg(not(feature = "aws"))]
        BackendKind::Aws => Err(BackendError::NotCompiled(BackendKind::Aws.as_str())),
    }
}

/// What a local data directory holds (besides dot files and `lost+found`): a
/// directory with none of these and something else is someone else's.
const LOCAL_ENTRIES: [&str; 6] = [
    LOCAL_JOURNAL_DIR,
    "state",
    "search",
    "subscriptions",
    "snapshots",
    "rebuild.in-progress",
];

/// Refuses a non-empty directory that holds nothing of adledger's (a wrong
/// `--data-dir`), before anything is created in it.
fn check_data_dir(dir: &Path) -> Result<(), BackendError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Missing: created. Unreadable: the open that follows names the error.
        Err(_) => return Ok(()),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if LOCAL_ENTRIES.contains(&name.as_str()) || name.starts_with("shadow-") {
            return Ok(());
        }
        if !name.starts_with('.') && name != "lost+found" {
            found.push(name);
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    if found.len() > 3 {
        let more = found.len() - 3;
        found.truncate(3);
        found.push(format!("{more} more"));
    }
    Err(BackendError::Foreign {
        dir: dir.to_path_buf(),
        found,
    })
}

/// Opens the local stores one by one, so a failure names the store, its directory and
/// the command that repairs it; with `rebuild_damaged_read_models`, an unreadable read
/// model is deleted and rebuilt from the journal instead.
fn open_local(config: &Config) -> Result<LocalBackend, BackendError> {
    let dir = &config.data_dir;
    check_data_dir(dir)?;
    let journal_path = dir.join(LOCAL_JOURNAL_DIR);
    let journal = SledJournal::open(&journal_path).map_err(|source| {
        if adledger_local::is_in_use(&source) {
            BackendError::Open {
                dir: dir.clone(),
                source,
            }
        } else {
            BackendError::DamagedJournal {
                path: journal_path.clone(),
                dir: dir.clone(),
                source,
            }
        }
    })?;
    let state = open_read_model(config, "state", "state read model", |path| {
        SledStateStore::open(path)
    })?;
    let search = open_read_model(config, "search", "search index", |path| {
        TantivySearchIndex::open(path)
    })?;
    Ok(LocalBackend {
        journal: Arc::new(journal),
        state: Arc::new(state),
        search: Arc::new(search),
    })
}

/// Opens the read model in `<data_dir>/<name>` with `open`; see [`open_local`].
fn open_read_model<T>(
    config: &Config,
    name: &str,
    what: &'static str,
    open: impl Fn(&Path) -> adledger_engine::Result<T>,
) -> Result<T, BackendError> {
    let dir = &config.data_dir;
    let path = dir.join(name);
    let open_error = |source| BackendError::Open {
        dir: dir.clone(),
        source,
    };
    match open(&path) {
        Ok(store) => Ok(store),
        Err(source) if adledger_local::is_in_use(&source) => Err(open_error(source)),
        Err(source) if config.rebuild_damaged_read_models => {
            tracing::warn!(
                path = %path.display(),
                error = %source,
                "the {what} cannot be opened; rebuild_damaged_read_models is set: deleting \
                 it and rebuilding it from the journal"
            );
            std::fs::remove_dir_all(&path)
                .map_err(|e| open_error(adledger_engine::Error::backend("filesystem", e)))?;
            open(&path).map_err(open_error)
        }
        Err(source) => Err(BackendError::DamagedReadModel {
            what,
            path,
            dir: dir.clone(),
            source,
        }),
    }
}

/// Opens the configured backend's subscription store (beside the journal), or `None`
/// where there is none (an `aws` backend not compiled in: the routes answer 501).
pub fn open_subscriptions(
    config: &Config,
) -> Result<Option<Arc<dyn adledger_engine::subscription::SubscriptionStore>>, BackendError> {
    match config.backend {
        BackendKind::Local => {
            let store =
                adledger_local::SledSubscriptionStore::open(&config.data_dir.join("subscriptions"))
                    .map_err(|source| BackendError::Open {
                        dir: config.data_dir.clone(),
                        source,
                    })?;
            Ok(Some(Arc::new(store)))
        }
        BackendKind::Memory => Ok(Some(Arc::new(
            adledger_engine::subscription::MemorySubscriptionStore::default(),
        ))),
        #[cfg(feature = "aws")]
        BackendKind::Aws => aws::open_subscriptions(config).map(Some),
        #[cfg(not(feature = "aws"))]
        BackendKind::Aws => Ok(None),
    }
}

/// A state store and a search index, opened together.
pub type ReadModels = (Arc<dyn StateStore>, Arc<dyn SearchIndex>);

/// Opens an extra pair of read models named `name` next to the live ones — a shadow
/// rebuild's target — creating them empty if missing. Local backend:
/// `<data_dir>/shadow-<name>/{state,search}`.
pub fn open_read_models(config: &Config, name: &str) -> Result<ReadModels, BackendError> {
    let dir = read_models_dir(config, name)?;
    let open_error = |source| BackendError::Open {
        dir: dir.clone(),
        source,
    };
    let state = SledStateStore::open(&dir.join("state")).map_err(open_error)?;
    let search = TantivySearchIndex::open(&dir.join("search")).map_err(open_error)?;
    Ok((Arc::new(state), Arc::new(search)))
}

/// Opens the live read models of an existing ledger for an offline tool that compares
/// them with the journal (`adledger verify`); `None` where there are none to compare
/// (a local data directory without them, the memory backend). Call after opening the
/// journal, so a directory in use by a server is refused by the journal's lock first.
pub fn open_live_read_models(config: &Config) -> Result<Option<ReadModels>, BackendError> {
    match config.backend {
        BackendKind::Local => {
            let dir = &config.data_dir;
            let (state_dir, search_dir) = (dir.join("state"), dir.join("search"));
            // Never create them: an offline tool leaves a directory as it found it.
            if !state_dir.is_dir() || !search_dir.join("meta.json").is_file() {
                return Ok(None);
            }
            let open_error = |source| BackendError::Open {
                dir: dir.clone(),
                source,
            };
            let state = SledStateStore::open(&state_dir).map_err(open_error)?;
            let search = TantivySearchIndex::open(&search_dir).map_err(open_error)?;
            Ok(Some((Arc::new(state), Arc::new(search))))
        }
        BackendKind::Memory => Ok(None),
        #[cfg(feature = "aws")]
        BackendKind::Aws => aws::open_live_read_models(config).map(Some),
        #[cfg(not(feature = "aws"))]
        BackendKind::Aws => Err(BackendError::NotCompiled(BackendKind::Aws.as_str())),
    }
}

/// Where [`open_read_models`] keeps the read models named `name` (local backend), so a
/// tool can delete them once they are no longer needed.
pub fn read_models_dir(config: &Config, name: &str) -> Result<PathBuf, BackendError> {
    match config.backend {
        BackendKind::Local => Ok(config.data_dir.join(format!("shadow-{name}"))),
        BackendKind::Aws => Err(BackendError::Unsupported(
            "extra read models (a shadow rebuild) are not supported on the AWS backend yet; \
             rebuild in place instead"
                .into(),
        )),
        BackendKind::Memory => Err(BackendError::NothingStored),
    }
}

/// The DynamoDB connection settings `config` names (region and credentials come from
/// the standard AWS chain).
#[cfg(feature = "aws")]
pub fn dynamo_settings(config: &Config) -> adledger_aws::DynamoSettings {
    adledger_aws::DynamoSettings {
        endpoint: config.dynamodb_endpoint.clone(),
        region: None,
    }
}

/// The OpenSearch settings `config` names: the URL (required), the index
/// `<table_prefix>ads`, and the authentication (basic needs a username and a password).
#[cfg(feature = "aws")]
pub fn opensearch_settings(config: &Config) -> Result<adledger_aws::OpenSearchSettings, String> {
    use adledger_aws::{OpenSearchAuth, OpenSearchSettings};

    use crate::config::OpenSearchAuthKind;

    let url = config.opensearch_url.clone().ok_or_else(|| {
        "search `opensearch` needs the cluster's URL: --opensearch-url URL, \
         ADLEDGER_OPENSEARCH_URL or `opensearch_url` in the config file"
            .to_string()
    })?;
    let index =
        adledger_aws::opensearch::index_name(&config.table_prefix).map_err(|e| e.to_string())?;
    let kind = config
        .opensearch_auth
        .unwrap_or(if config.opensearch_username.is_some() {
            OpenSearchAuthKind::Basic
        } else {
            OpenSearchAuthKind::None
        });
    let auth = match kind {
        OpenSearchAuthKind::None => OpenSearchAuth::None,
        OpenSearchAuthKind::Basic => {
            let (Some(username), Some(password)) =
                (&config.opensearch_username, &config.opensearch_password)
            else {
                return Err("OpenSearch basic authentication needs \
                            ADLEDGER_OPENSEARCH_USERNAME (or `opensearch_username`) and \
                            ADLEDGER_OPENSEARCH_PASSWORD"
                    .to_string());
            };
            OpenSearchAuth::Basic {
                username: username.clone(),
                password: password.expose().to_string(),
            }
        }
        OpenSearchAuthKind::Sigv4 | OpenSearchAuthKind::Sigv4Serverless => OpenSearchAuth::SigV4 {
            service: if kind == OpenSearchAuthKind::Sigv4 {
                "es"
            } else {
                "aoss"
            }
            .to_string(),
            region: None,
        },
    };
    Ok(OpenSearchSettings { url, index, auth })
}

/// The wall clock and random ids, or with a seed, a logical clock and seeded ids so the
/// same requests give the same journal.
fn clock_and_ids(seed: Option<u64>) -> (Arc<dyn Clock>, Arc<dyn IdGenerator>) {
    match seed {
        Some(seed) => (
            Arc::new(LogicalClock::new()),
            Arc::new(UlidGenerator::seeded(seed)),
        ),
        None => (Arc::new(SystemClock), Arc::new(UlidGenerator::random())),
    }
}

/// The AWS arm of the one `match`: DynamoDB tables named by the prefix, search in
/// tantivy under the data directory or in OpenSearch (`<prefix>ads`).
#[cfg(feature = "aws")]
mod aws {
    use std::future::Future;
    use std::sync::Arc;

    use adledger_aws::{AwsBackend, DynamoJournal, DynamoLease, SearchSettings, TableNames};
    use adledger_engine::ports::{ProjectionLease, Sharing};
    use adledger_engine::{Error, Ports};

    use super::{BackendError, Opened, Scope, clock_and_ids};
    use crate::config::{Config, SearchKind};

    /// The file in a tantivy index directory that names the ledger the index belongs to.
    const INDEX_OWNER: &str = "adledger-ledger.txt";

    /// The ledger a configuration names: its DynamoDB endpoint (or the account's) and
    /// table prefix.
    fn ledger_name(config: &Config) -> String {
        let endpoint = config
            .dynamodb_endpoint
            .clone()
            .unwrap_or_else(|| "the AWS account's DynamoDB".to_string());
        format!("{endpoint}, table prefix {:?}", config.table_prefix)
    }

    /// Binds a tantivy index directory to the ledger that fills it: a fresh (or older,
    /// unnamed) index is named now; an index named for another ledger is refused, or, with
    /// `rebuild_damaged_read_models`, deleted so it is rebuilt for this one. Without it, a
    /// `--data-dir` reused across ledgers (the default `./adledger-data`, say) serves
    /// one ledger's ads from another's index — or, when the other was longer, is refused
    /// as a journal that lost blocks, which it did not.
    fn bind_index(config: &Config, dir: &std::path::Path) -> Result<(), BackendError> {
        let owner = dir.join(INDEX_OWNER);
        let used_for = ledger_name(config);
        match std::fs::read_to_string(&owner) {
            Ok(built_for) if built_for.trim() == used_for => return Ok(()),
            Ok(built_for) if !config.rebuild_damaged_read_models => {
                return Err(BackendError::IndexOfAnotherLedger {
                    dir: dir.to_path_buf(),
                    built_for: built_for.trim().to_string(),
                    used_for,
                });
            }
            Ok(built_for) => {
                tracing::warn!(
                    dir = %dir.display(),
                    built_for = built_for.trim(),
                    used_for,
                    "the search index belongs to another ledger; rebuild_damaged_read_models \
                     is set: deleting it, it is rebuilt from the journal"
                );
                std::fs::remove_dir_all(dir).map_err(|e| {
                    BackendError::Unsupported(format!(
                        "cannot delete the search index {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            Err(_) => {}
        }
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&owner, format!("{used_for}\n")))
            .map_err(|e| {
                BackendError::Unsupported(format!(
                    "cannot write {} (which ledger the search index belongs to): {e}",
                    owner.display()
                ))
            })
    }

    pub(super) fn open(config: &Config, scope: Scope) -> Result<Opened, BackendError> {
        let tables = TableNames::with_prefix(&config.table_prefix);
        if scope == Scope::Everything && config.search == SearchKind::Tantivy {
            bind_index(config, &config.data_dir.join("search"))?;
        }
        let settings = super::dynamo_settings(config);
        let search = match config.search {
            SearchKind::Tantivy => SearchSettings::Tantivy {
                dir: config.data_dir.join("search"),
            },
            SearchKind::Opensearch => SearchSettings::OpenSearch(
                super::opensearch_settings(config).map_err(BackendError::Unsupported)?,
            ),
        };
        let deterministic = config.deterministic;
        let lease_ms = config.lease_ms;
        let shared_search = config.search == SearchKind::Opensearch;
        let opened = run(async move {
            let client = adledger_aws::connect(&settings).await;
            match scope {
                Scope::ExistingJournal => {
                    let journal = DynamoJournal::open(client, &tables.journal).await?;
                    Ok(Opened::Journal(Arc::new(journal)))
                }
                Scope::Everything => {
                    let backend = AwsBackend::open(client.clone(), &tables, &search).await?;
                    let (clock, ids) = clock_and_ids(deterministic);
                    // Several processes may serve one ledger: they share the journal and
                    // the state store (one projects, by lease), and OpenSearch if chosen;
                    // a tantivy index is each process's own, so each projects into it.
                    let lease: Arc<dyn ProjectionLease> = Arc::new(
                        DynamoLease::new(
                            client,
                            &tables.journal,
                            &tables.state,
                            DynamoLease::process_owner(),
                        )
                        .with_duration(std::time::Duration::from_millis(lease_ms)),
                    );
                    let sharing = Sharing {
                        journal: true,
                        state: Some(lease.clone()),
                        search: shared_search.then_some(lease),
                    };
                    Ok(Opened::Ports(Ports {
                        journal: backend.journal,
                        state: backend.state,
                        search: backend.search,
                        clock,
                        ids,
                        sharing,
                    }))
                }
            }
        });
        opened.map_err(|source| BackendError::Aws {
            prefix: config.table_prefix.clone(),
            source,
        })
    }

    /// Runs `open` with a client of the configured DynamoDB and the ledger's table names.
    fn with_client<T: Send, F: Future<Output = Result<T, Error>> + Send>(
        config: &Config,
        open: impl FnOnce(adledger_aws::aws_sdk_dynamodb::Client, TableNames) -> F + Send,
    ) -> Result<T, BackendError> {
        let tables = TableNames::with_prefix(&config.table_prefix);
        let settings = super::dynamo_settings(config);
        run(async move { open(adledger_aws::connect(&settings).await, tables).await }).map_err(
            |source| BackendError::Aws {
                prefix: config.table_prefix.clone(),
                source,
            },
        )
    }

    /// The subscription store, in `<prefix>subscriptions` (which `adledger aws init`
    /// creates).
    pub(super) fn open_subscriptions(
        config: &Config,
    ) -> Result<Arc<dyn adledger_engine::subscription::SubscriptionStore>, BackendError> {
        let store = with_client(config, |client, tables| async move {
            adledger_aws::DynamoSubscriptionStore::open(client, &tables.subscriptions).await
        })?;
        Ok(Arc::new(store))
    }

    /// The live read models for `verify`: the state table, and the search index — but a
    /// tantivy index only if this machine has one, named for this ledger. `verify` runs wherever the operator
    /// is, and must not leave an empty index behind in a working directory (one that a
    /// later `serve` there would take for this ledger's); a machine without an index has
    /// no search mark to compare, which an empty stand-in (checkpoint 0) says.
    pub(super) fn open_live_read_models(
        config: &Config,
    ) -> Result<super::ReadModels, BackendError> {
        let local_index = config.data_dir.join("search");
        // Only an index named for this ledger is compared (and nothing is written here).
        let ours = std::fs::read_to_string(local_index.join(INDEX_OWNER))
            .is_ok_and(|owner| owner.trim() == ledger_name(config));
        if config.search == SearchKind::Tantivy
            && !(ours && local_index.join("meta.json").is_file())
        {
            let tables = TableNames::with_prefix(&config.table_prefix);
            let settings = super::dynamo_settings(config);
            let state = run(async move {
                let client = adledger_aws::connect(&settings).await;
                adledger_aws::DynamoStateStore::open(client, &tables.state).await
            })
            .map_err(|source| BackendError::Aws {
                prefix: config.table_prefix.clone(),
                source,
            })?;
            let none = adledger_engine::memory::MemoryBackend::new();
            return Ok((Arc::new(state), none.search));
        }
        let ports = super::open(config)?;
        Ok((ports.state, ports.search))
    }

    /// Runs the async opening from this synchronous function: on the caller's runtime if
    /// it is a multi-threaded one (`serve`), else on a short-lived runtime of its own in
    /// another thread (the offline tools open their storage before their runtime starts).
    fn run<T: Send>(future: impl Future<Output = Result<T, Error>> + Send) -> Result<T, Error> {
        use tokio::runtime::{Builder, Handle, RuntimeFlavor};
        if let Ok(handle) = Handle::try_current()
            && handle.runtime_flavor() == RuntimeFlavor::MultiThread
        {
            return tokio::task::block_in_place(|| handle.block_on(future));
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| Error::backend("tokio", e))?
                        .block_on(future)
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::Unavailable(
                        "opening the AWS backend panicked".into(),
                    ))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "aws"))]
    #[test]
    fn aws_is_a_clear_error() {
        let config = Config {
            backend: BackendKind::Aws,
            ..Config::default()
        };
        let err = open(&config).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("backend `aws` is not compiled into this build")
        );
    }

    #[cfg(feature = "aws")]
    #[test]
    fn aws_refuses_what_it_cannot_do_before_any_request() {
        let config = Config {
            backend: BackendKind::Aws,
            search: crate::config::SearchKind::Opensearch,
            dynamodb_endpoint: Some("http://127.0.0.1:9".into()),
            ..Config::default()
        };
        let err = open(&config).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("opensearch") && e.contains("--opensearch-url")),
            "{err:?}"
        );
        let err = read_models_dir(&config, "x").err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("AWS backend")),
            "{err:?}"
        );
    }

    #[cfg(feature = "aws")]
    #[test]
    fn opensearch_needs_a_url_and_basic_auth_needs_both_secrets() {
        let config = Config {
            search: crate::config::SearchKind::Opensearch,
            ..Config::default()
        };
        let err = opensearch_settings(&config).expect_err("no url");
        assert!(err.contains("--opensearch-url"), "{err}");
        let config = Config {
            opensearch_url: Some("http://127.0.0.1:9200".into()),
            opensearch_username: Some("admin".into()),
            ..config
        };
        let err = opensearch_settings(&config).expect_err("no password");
        assert!(err.contains("ADLEDGER_OPENSEARCH_PASSWORD"), "{err}");
        let config = Config {
            opensearch_password: Some(crate::config::Secret::new("pw")),
            ..config
        };
        let settings = opensearch_settings(&config).expect("basic");
        assert_eq!(settings.index, "adledger-ads");
        assert!(matches!(
            settings.auth,
            adledger_aws::OpenSearchAuth::Basic { ref username, .. } if username == "admin"
        ));
    }

    #[test]
    fn deterministic_clock_starts_at_the_documented_origin() {
        let (clock, _) = clock_and_ids(Some(1));
        assert_eq!(
            adledger_engine::time::format_rfc3339_millis(&clock.now()),
            "2020-01-01T00:00:00.000Z"
        );
    }
}
