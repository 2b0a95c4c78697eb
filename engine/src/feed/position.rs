//! Event ids and reader positions.
//!
//! Each block yields its events in a fixed order: one per revision (index `0..n`), then,
//! on a digest block, the digest event (index `n`). An event's id is
//! `{block sequence, 20 digits}-{index, 4 digits}`, so ids are unique, never change, and
//! sort as strings in journal order.
//!
//! A [`Position`] is where a reader stands: the next event it has not seen. As text
//! (`after=` on the pull route, `Last-Event-ID` on the stream) it is either an event id,
//! meaning "after this event", or a bare block sequence `S`, meaning "after all of block
//! `S`" — what a page returns when it ends on blocks a filter skipped.

use std::fmt;

/// The id of one event: its block and its position among the block's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    /// The block's sequence number.
    pub sequence: u64,
    /// The event's index within the block.
    pub index: u32,
}

/// The largest event index an id can carry (4 digits); blocks hold one revision per
/// command, far fewer.
pub const MAX_EVENT_INDEX: u32 = 9999;

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}-{:04}", self.sequence, self.index)
    }
}

impl EventId {
    /// Parses `SEQUENCE-INDEX` (any number of digits on each side, so hand-typed ids work
    /// too); `None` for anything else.
    pub fn parse(text: &str) -> Option<EventId> {
        let (sequence, index) = text.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(sequence) || !digits(index) {
            return None;
        }
        let index: u32 = index.parse().ok()?;
        (index <= MAX_EVENT_INDEX).then_some(EventId {
            sequence: sequence.parse().ok()?,
            index,
        })
    }
}

/// The next event a reader has not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// The block holding that event.
    pub block: u64,
    /// Its index within the block (0: the block's first event).
    pub index: u32,
}

impl Position {
    /// Before the first event of the journal.
    pub const START: Position = Position { block: 0, index: 0 };

    /// Right after the event `id`.
    pub fn after_event(id: EventId) -> Position {
        Position {
            block: id.sequence,
            index: id.index + 1,
        }
    }

    /// Right after every event of block `sequence`.
    pub fn after_block(sequence: u64) -> Position {
        Position {
            block: sequence.saturating_add(1),
            index: 0,
        }
    }

    /// Parses the text form: an event id or a bare block sequence (see the module docs).
    pub fn parse(text: &str) -> Option<Position> {
        if let Some(id) = EventId::parse(text) {
            return Some(Position::after_event(id));
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse::<u64>().ok().map(Position::after_block)
    }

    /// The text form, `None` at [`Position::START`] (nothing to resume after). A position
    /// at a block boundary prints as the bare sequence of the block before it.
    pub fn token(&self) -> Option<String> {
        match (self.block, self.index) {
            (0, 0) => None,
            (block, 0) => Some((block - 1).to_string()),
            (block, index) => Some(
                EventId {
                    sequence: block,
                    index: index - 1,
                }
                .to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_strings_in_journal_order() {
        let ids = [(0, 0), (0, 1), (9, 0), (10, 0), (10, 1), (123_456_789, 3)];
        let texts: Vec<String> = ids
            .iter()
            .map(|&(sequence, index)| EventId { sequence, index }.to_string())
            .collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
        assert_eq!(texts[3], "00000000000000000010-0000");
    }

    #[test]
    fn positions_round_trip_through_their_text() {
        for position in [
            Position { block: 1, index: 0 },
            Position { block: 7, index: 2 },
            Position {
                block: 1 << 40,
                index: 1,
            },
        ] {
            let token = position.token().expect("not the start");
            assert_eq!(Position::parse(&token), Some(position), "{token}");
        }
        assert_eq!(Position::START.token(), None);
        assert_eq!(Position::parse("4"), Some(Position { block: 5, index: 0 }));
        assert_eq!(
            Position::parse("4-0"),
            Some(Position { block: 4, index: 1 })
        );
    }

    #[test]
    fn malformed_positions_are_refused() {
        for bad in [
            "", "-", "x", "4-", "-4", "4-x", "1-2-3", "+4", "4-10000", " 4",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }
}
