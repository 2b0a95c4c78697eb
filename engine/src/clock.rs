//! Clocks: the wall clock for production, a logical clock for reproducible runs.

use std::sync::Mutex;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::ports::Clock;

/// The operating system's clock, at the journal's millisecond precision.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        crate::time::to_millis_precision(Utc::now())
    }
}

/// A clock that starts at a fixed instant and advances 1 ms each time it is read, so the
/// same sequence of commands always gets the same transaction times.
#[derive(Debug)]
pub struct LogicalClock {
    next: Mutex<DateTime<Utc>>,
}

impl LogicalClock {
    /// Starts at 2020-01-01T00:00:00Z, the documented origin of `--deterministic` runs.
    pub fn new() -> Self {
        Self::starting_at(
            Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
        )
    }

    /// Starts at `start`.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        LogicalClock {
            next: Mutex::new(start),
        }
    }
}

impl Default for LogicalClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for LogicalClock {
    fn now(&self) -> DateTime<Utc> {
        // A poisoned lock only means another thread panicked mid-read of a plain value.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let now = *next;
        *next = now + Duration::milliseconds(1);
        now
    }
}
