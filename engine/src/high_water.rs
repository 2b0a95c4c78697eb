//! High-water marks: durable records, kept outside the journal, of how far the journal
//! once reached — and the startup check that the journal still reaches them.
//!
//! A journal that holds fewer blocks than its own read models have applied has lost
//! acknowledged history: its file was cut short, a damaged log was recovered to an older
//! prefix, or an older copy was restored. Serving it would show read models the journal
//! cannot back, and the next write would reuse the lost sequence numbers with other
//! content, so two different blocks would exist under one number. Every process that
//! appends (the server through [`Ledger::open`](crate::Ledger::open), `import`) and
//! `verify` runs this check first; it only reads the ports, so every backend gets it.
//!
//! The marks are the read models' projection checkpoints: each counts the blocks the
//! model has applied, and a projector only applies blocks it read from the journal, so a
//! checkpoint never exceeds the journal's length unless blocks were lost.
//!
//! # Order of reads
//!
//! The marks are read before the journal's tip. Journals only grow, so with another
//! process appending (and projecting) concurrently, a mark read earlier can never be
//! ahead of a tip read later — the check has no false alarm under concurrency.

use crate::error::{Error, Result};
use crate::ports::{Journal, Ports, SearchIndex, StateStore};

/// One durable record of how many blocks the journal held when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HighWater {
    /// What keeps the record, in words an operator recognises ("the state read model's
    /// checkpoint").
    pub record: String,
    /// The number of blocks the record has seen (blocks `0..blocks`).
    pub blocks: u64,
}

/// The read models' checkpoints, as high-water marks.
pub async fn read_model_marks(
    state: &dyn StateStore,
    search: &dyn SearchIndex,
) -> Result<Vec<HighWater>> {
    Ok(vec![
        HighWater {
            record: "the state read model's checkpoint".into(),
            blocks: state.checkpoint().await?,
        },
        HighWater {
            record: "the search index's checkpoint".into(),
            blocks: search.checkpoint().await?,
        },
    ])
}

/// Reads the journal's length (after `marks` were read, see the module docs) and fails
/// with [`Error::JournalBehind`] naming the highest mark the journal does not reach.
/// Returns the journal's length (its next sequence number).
pub async fn check_journal_reaches(journal: &dyn Journal, marks: &[HighWater]) -> Result<u64> {
    let blocks = journal.last_sequence().await?.map_or(0, |last| last + 1);
    // The first of the highest marks, so equal marks name the state read model.
    let highest = marks
        .iter()
        .fold(None::<&HighWater>, |best, mark| match best {
            Some(best) if best.blocks >= mark.blocks => Some(best),
            _ => Some(mark),
        });
    match highest {
        Some(mark) if mark.blocks > blocks => Err(Error::JournalBehind {
            blocks,
            seen: mark.blocks,
            record: mark.record.clone(),
        }),
        _ => Ok(blocks),
    }
}

/// [`read_model_marks`] then [`check_journal_reaches`]: the check every process that
/// appends runs before its first write.
pub async fn check_ports(ports: &Ports) -> Result<u64> {
    let marks = read_model_marks(ports.state.as_ref(), ports.search.as_ref()).await?;
    check_journal_reaches(ports.journal.as_ref(), &marks).await
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;

    fn ports(memory: MemoryBackend) -> Ports {
        Ports {
            journal: memory.journal,
            state: memory.state,
            search: memory.search,
            clock: std::sync::Arc::new(crate::clock::LogicalClock::new()),
            ids: std::sync::Arc::new(crate::ids::UlidGenerator::seeded(1)),
            sharing: Default::default(),
        }
    }

    #[tokio::test]
    async fn an_empty_ledger_passes_and_a_checkpoint_past_the_tip_is_refused() {
        let ports = ports(MemoryBackend::new());
        assert_eq!(check_ports(&ports).await.expect("empty ledger"), 0);
        ports
            .state
            .put(&[], Some(30))
            .await
            .expect("set checkpoint");
        let err = check_ports(&ports).await.expect_err("journal behind");
        assert!(
            matches!(
                err,
                Error::JournalBehind { blocks: 0, seen: 30, ref record } if record.contains("state")
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("backup") && text.contains("import"), "{text}");
    }
}
