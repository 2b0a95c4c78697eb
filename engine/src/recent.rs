//! The revisions of the blocks this process committed last, handed from the committer to
//! the projectors in memory.
//!
//! Without it each projector read every block back from the journal right after the
//! committer wrote it, and decoded and re-hashed it: per create, two journal reads, two
//! Ion decodes and two SHA-256 passes of bytes the process had just encoded from these
//! very revisions.
//!
//! # Why it cannot show an undurable write
//!
//! The committer adds a batch's blocks only after the journal's append returned: every
//! entry is durable before any projector can see it. An entry is the block stored at its
//! sequence for good (the journal never overwrites a block), so it stays true whatever
//! other processes append later. A projector takes only a run of consecutive blocks that
//! starts exactly at its checkpoint; anything else (a block of another process, one
//! already pushed out) it reads from the journal as before.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use crate::ad::Ad;
use crate::revision::Revision;

/// Bytes of revisions kept, whatever the ads' sizes: a projector further behind than
/// this reads the journal (at a thousand creates a second and a 100 ms search pace, a
/// few hundred kilobytes are in use).
const RECENT_BYTES: usize = 16 * 1024 * 1024;

/// The last committed blocks' revisions, oldest first, with consecutive sequences.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    inner: Mutex<Blocks>,
}

#[derive(Debug, Default)]
struct Blocks {
    /// `(sequence, the block's revisions, their weight)`, consecutive sequences.
    blocks: VecDeque<(u64, Vec<Revision>, usize)>,
    bytes: usize,
}

impl Recent {
    /// Adds a committed block; call only once the journal's append has returned.
    ///
    /// A block that does not follow the last one held (another process appended in
    /// between) starts the run afresh: only consecutive blocks are ever handed out.
    pub(crate) fn push(&self, sequence: u64, revisions: Vec<Revision>) {
        let weight = revisions.iter().map(weigh).sum::<usize>();
        let mut held = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if held
            .blocks
            .back()
            .is_some_and(|(last, _, _)| last.checked_add(1) != Some(sequence))
        {
            held.blocks.clear();
            held.bytes = 0;
        }
        held.blocks.push_back((sequence, revisions, weight));
        held.bytes += weight;
        while held.bytes > RECENT_BYTES && held.blocks.len() > 1 {
            if let Some((_, _, dropped)) = held.blocks.pop_front() {
                held.bytes -= dropped;
            }
        }
    }

    /// The revisions of up to `max` blocks from `from` on, and how many blocks they are;
    /// `None` unless block `from` is held.
    pub(crate) fn take(&self, from: u64, max: usize) -> Option<(Vec<Revision>, usize)> {
        let held = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let first = held.blocks.front()?.0;
        let skip = usize::try_from(from.checked_sub(first)?).ok()?;
        if skip >= held.blocks.len() || max == 0 {
            return None;
        }
        let mut revisions = Vec::new();
        let mut blocks = 0;
        for (_, block, _) in held.blocks.range(skip..).take(max) {
            revisions.extend(block.iter().cloned());
            blocks += 1;
        }
        Some((revisions, blocks))
    }
}

/// A revision's heap bytes, roughly (its strings).
fn weigh(revision: &Revision) -> usize {
    let metadata = &revision.body.metadata;
    std::mem::size_of::<Revision>()
        + metadata.id.len()
        + metadata.publisher_id.len()
        + metadata.tx_id.len()
        + revision.body.data.as_ref().map_or(0, Ad::heap_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;
    use crate::revision::{BlockAddress, EventKind, RevisionBody, RevisionMetadata, STRAND_ID};

    fn revision(sequence: u64) -> Revision {
        Revision {
            block_address: BlockAddress {
                strand_id: STRAND_ID.to_string(),
                sequence_no: sequence,
            },
            hash: Hash::ZERO,
            body: RevisionBody {
                data: None,
                metadata: RevisionMetadata {
                    id: format!("ad{sequence}"),
                    publisher_id: "acme".into(),
                    version: 1,
                    tx_id: "tx".into(),
                    tx_time: chrono::DateTime::UNIX_EPOCH,
                    actor: None,
                },
                event: EventKind::AdDeleted,
            },
        }
    }

    fn ids(taken: Option<(Vec<Revision>, usize)>) -> Option<(Vec<u64>, usize)> {
        taken.map(|(revisions, n)| (revisions.iter().map(Revision::sequence).collect(), n))
    }

    #[test]
    fn hands_out_only_runs_that_start_at_the_checkpoint() {
        let recent = Recent::default();
        assert_eq!(ids(recent.take(0, 10)), None, "empty");
        for s in 5..9 {
            recent.push(s, vec![revision(s)]);
        }
        assert_eq!(ids(recent.take(4, 10)), None, "before the first held");
        assert_eq!(ids(recent.take(6, 2)), Some((vec![6, 7], 2)));
        assert_eq!(ids(recent.take(6, 10)), Some((vec![6, 7, 8], 3)));
        assert_eq!(ids(recent.take(9, 10)), None, "past the last held");
        // Another process appended 9..12: the run restarts, nothing before it is held.
        recent.push(12, vec![revision(12)]);
        assert_eq!(ids(recent.take(8, 10)), None);
        assert_eq!(ids(recent.take(12, 10)), Some((vec![12], 1)));
    }

    #[test]
    fn keeps_a_bounded_number_of_bytes() {
        let recent = Recent::default();
        let per = weigh(&revision(0));
        let fits = RECENT_BYTES / per;
        for s in 0..(fits as u64 + 100) {
            recent.push(s, vec![revision(s)]);
        }
        let last = fits as u64 + 99;
        assert_eq!(ids(recent.take(0, 1)), None, "the oldest were dropped");
        assert_eq!(ids(recent.take(last, 10)), Some((vec![last], 1)));
        let first = (0..=last)
            .find(|&s| recent.take(s, 1).is_some())
            .expect("some are held");
        let held = last + 1 - first;
        assert!(held <= fits as u64, "{held} blocks held, {fits} fit");
        assert!(held * 2 > fits as u64, "only {held} of {fits} held");
    }
}
