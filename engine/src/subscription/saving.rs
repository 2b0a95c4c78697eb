//! When a deliverer saves its checkpoint ([`CheckpointSaves`]): after every acknowledged
//! request, except that requests in quick succession share one save.
//!
//! A save is a durable conditional write (locally a flushed sled write, on AWS a
//! DynamoDB `PutItem`). Made after every request, it cost more than the request itself
//! when a fast endpoint took one event per request: the profile of unbatched delivery
//! showed the checkpoint writes (and sled's flushes behind them) at over half of the
//! server's CPU. A lost save only means duplicates after a crash, never a gap, so saves
//! are coalesced while requests follow each other closely, with a bound on what a crash
//! can repeat: a save is due after an acknowledged request that took [`SLOW_REQUEST`] or
//! more (so a slow endpoint still gets a save after every request, as before), or once
//! [`SAVE_INTERVAL`] has passed since the previous save, or once [`MAX_UNSAVED_EVENTS`]
//! events are acknowledged and unsaved; a deliverer that catches up saves within
//! [`SAVE_INTERVAL`]. (Measured on the request, not on the time between saves: three
//! sinks at the tip send a request every 20 ms or so, each of a few milliseconds, and a
//! save after each was a quarter of what they cost.

use std::time::Duration;

use tokio::time::Instant;

/// The longest a deliverer holds an acknowledgement unsaved while requests are quick.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(100);

/// A request that took this long (retries included) is saved at once: the save costs
/// little beside it.
pub const SLOW_REQUEST: Duration = Duration::from_millis(10);

/// The most acknowledged events a deliverer holds unsaved: after a crash at most this
/// many events, plus the request in flight, are delivered again.
pub const MAX_UNSAVED_EVENTS: u64 = 256;

/// One deliverer's record of what it has not saved yet.
#[derive(Debug, Clone)]
pub struct CheckpointSaves {
    /// When the last save started (or the deliverer did).
    last: Instant,
    /// Events acknowledged (or dead-lettered) since then.
    unsaved_events: u64,
    /// Whether the checkpoint moved since then (events, or blocks a filter skipped).
    dirty: bool,
    /// Whether an unsaved acknowledgement came from a slow request.
    slow: bool,
}

impl CheckpointSaves {
    /// A deliverer that starts at `now` from a saved checkpoint.
    pub fn new(now: Instant) -> CheckpointSaves {
        CheckpointSaves {
            last: now,
            unsaved_events: 0,
            dirty: false,
            slow: false,
        }
    }

    /// `events` more were acknowledged by a request that `took` this long: the
    /// checkpoint moved past them.
    pub fn acknowledged(&mut self, events: u64, took: Duration) {
        self.unsaved_events = self.unsaved_events.saturating_add(events);
        self.dirty = true;
        self.slow |= took >= SLOW_REQUEST;
    }

    /// The checkpoint moved without an event (over blocks the filter skips).
    pub fn advanced(&mut self) {
        self.dirty = true;
    }

    /// Whether something is unsaved.
    pub fn pending(&self) -> bool {
        self.dirty
    }

    /// Whether a save is due at `now`, right after an acknowledged request.
    pub fn due(&self, now: Instant) -> bool {
        self.dirty
            && (self.slow
                || self.unsaved_events >= MAX_UNSAVED_EVENTS
                || now.saturating_duration_since(self.last) >= SAVE_INTERVAL)
    }

    /// When an idle deliverer with something unsaved saves it.
    pub fn deadline(&self) -> Instant {
        self.last + SAVE_INTERVAL
    }

    /// A save started at `now` (it holds everything acknowledged so far).
    pub fn saving(&mut self, now: Instant) {
        self.last = now;
        self.unsaved_events = 0;
        self.dirty = false;
        self.slow = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_due_until_something_moved() {
        let start = Instant::now();
        let saves = CheckpointSaves::new(start);
        assert!(!saves.pending());
        assert!(!saves.due(start + Duration::from_secs(60)));
    }

    #[test]
    fn quick_requests_share_a_save_until_the_interval_or_the_event_bound() {
        let start = Instant::now();
        let mut saves = CheckpointSaves::new(start);
        saves.acknowledged(1, Duration::ZERO);
        assert!(saves.pending());
        assert!(!saves.due(start + SAVE_INTERVAL / 2));
        assert!(saves.due(start + SAVE_INTERVAL));
        saves.saving(start + SAVE_INTERVAL);
        assert!(!saves.pending());
        let now = start + SAVE_INTERVAL + Duration::from_millis(1);
        saves.acknowledged(MAX_UNSAVED_EVENTS - 1, Duration::ZERO);
        assert!(!saves.due(now));
        saves.acknowledged(1, Duration::ZERO);
        assert!(saves.due(now), "the event bound holds within the interval");
        assert_eq!(saves.deadline(), start + 2 * SAVE_INTERVAL);
    }

    #[test]
    fn a_slow_request_is_saved_at_once() {
        let start = Instant::now();
        let mut saves = CheckpointSaves::new(start);
        saves.acknowledged(1, SLOW_REQUEST);
        assert!(saves.due(start), "slow: its own save");
        saves.saving(start);
        saves.acknowledged(1, SLOW_REQUEST / 2);
        assert!(!saves.due(start), "quick: shares the next save");
        saves.saving(start);
        saves.advanced();
        assert!(
            saves.due(start + SAVE_INTERVAL),
            "a skip is saved like an event"
        );
    }
}
