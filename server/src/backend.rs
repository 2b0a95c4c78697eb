//! Backend selection: the one `match` on the configured backend, turning a [`Config`]
//! into the engine's [`Ports`].
//!
//! A backend that is not compiled into this build is a clear startup error, never a
//! panic or a silent fallback to another store.

use std::path::PathBuf;
use std::sync::Arc;

use adledger_engine::clock::{LogicalClock, SystemClock};
use adledger_engine::ids::UlidGenerator;
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
            let path = dir.join(LOCAL_JOURNAL_DIR);
            if !path.is_dir() {
                return Err(BackendError::NoJournal { dir: dir.clone() });
            }
            let journal = SledJournal::open(&path).map_err(open_error)?;
            Ok(Opened::Journal(Arc::new(journal)))
        }
        BackendKind::Local => {
            let (clock, ids) = clock_and_ids(config.deterministic);
            let local = LocalBackend::open(dir).map_err(open_error)?;
            Ok(Opened::Ports(Ports {
                journal: local.journal,
                state: local.state,
                search: local.search,
                clock,
                ids,
            }))
        }
        BackendKind::Aws => Err(BackendError::NotCompiled(BackendKind::Aws.as_str())),
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

/// Where [`open_read_models`] keeps the read models named `name` (local backend), so a
/// tool can delete them once they are no longer needed.
pub fn read_models_dir(config: &Config, name: &str) -> Result<PathBuf, BackendError> {
    match config.backend {
        BackendKind::Local => Ok(config.data_dir.join(format!("shadow-{name}"))),
        BackendKind::Aws => Err(BackendError::NotCompiled(BackendKind::Aws.as_str())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn deterministic_clock_starts_at_the_documented_origin() {
        let (clock, _) = clock_and_ids(Some(1));
        assert_eq!(
            adledger_engine::time::format_rfc3339_millis(&clock.now()),
            "2020-01-01T00:00:00.000Z"
        );
    }
}
