//! Backend selection: the one `match` on the configured backend, turning a [`Config`]
//! into the engine's [`Ports`].
//!
//! A backend that is not compiled into this build is a clear startup error, never a
//! panic or a silent fallback to another store.

use std::path::PathBuf;
use std::sync::Arc;

use adledger_engine::Ports;
use adledger_engine::clock::{LogicalClock, SystemClock};
use adledger_engine::ids::UlidGenerator;
use adledger_engine::ports::{Clock, IdGenerator};
use adledger_local::LocalBackend;

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
}

/// Opens the configured backend and adds the clock and id generator.
pub fn open(config: &Config) -> Result<Ports, BackendError> {
    let (clock, ids) = clock_and_ids(config.deterministic);
    match config.backend {
        BackendKind::Local => {
            let local =
                LocalBackend::open(&config.data_dir).map_err(|source| BackendError::Open {
                    dir: config.data_dir.clone(),
                    source,
                })?;
            Ok(Ports {
                journal: local.journal,
                state: local.state,
                search: local.search,
                clock,
                ids,
            })
        }
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
