//! Id generators: ULIDs from the OS's randomness, or from a seeded generator.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rand_chacha::ChaCha8Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use ulid::Ulid;

use crate::ports::IdGenerator;

/// ULIDs: 48 bits of milliseconds then 80 random bits, so ids sort by creation time and
/// never collide in practice. Within one millisecond the random part is incremented
/// (monotonic ULIDs), so ids made in one process are strictly increasing.
#[derive(Debug)]
pub struct UlidGenerator {
    state: Mutex<UlidState>,
}

#[derive(Debug)]
struct UlidState {
    rng: Rng,
    last: Ulid,
}

#[derive(Debug)]
enum Rng {
    Os,
    Seeded(Box<ChaCha8Rng>),
}

impl Rng {
    fn next_u128(&mut self) -> u128 {
        let mut bytes = [0u8; 16];
        match self {
            Rng::Os => OsRng.fill_bytes(&mut bytes),
            Rng::Seeded(rng) => rng.fill_bytes(&mut bytes),
        }
        u128::from_be_bytes(bytes)
    }
}

impl UlidGenerator {
    /// Random ids from the operating system.
    pub fn random() -> Self {
        Self::with(Rng::Os)
    }

    /// Reproducible ids: the same seed and the same times give the same ids.
    pub fn seeded(seed: u64) -> Self {
        Self::with(Rng::Seeded(Box::new(ChaCha8Rng::seed_from_u64(seed))))
    }

    fn with(rng: Rng) -> Self {
        UlidGenerator {
            state: Mutex::new(UlidState {
                rng,
                last: Ulid::nil(),
            }),
        }
    }
}

impl IdGenerator for UlidGenerator {
    fn next_id(&self, at: DateTime<Utc>) -> String {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let candidate = Ulid::from_parts(ms, state.rng.next_u128());
        let id = if candidate > state.last {
            candidate
        } else {
            // Same (or earlier) millisecond: keep ids strictly increasing.
            state.last.increment().unwrap_or(candidate)
        };
        state.last = id;
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn seeded_ids_repeat_and_increase() {
        let t = Utc
            .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let a = UlidGenerator::seeded(7);
        let b = UlidGenerator::seeded(7);
        let xs: Vec<String> = (0..5).map(|_| a.next_id(t)).collect();
        let ys: Vec<String> = (0..5).map(|_| b.next_id(t)).collect();
        assert_eq!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
        assert_ne!(UlidGenerator::seeded(8).next_id(t), xs[0]);
    }
}
