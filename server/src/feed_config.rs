//! The `[feed]` settings: how the ledger feed is cut and how long its readers may wait.
//!
//! `digest_every` changes the feed itself (where digest events fall), so every server of
//! one ledger must use the same value for their feeds to be identical; the rest only
//! bound what one reader may cost.

use std::num::NonZeroU64;

use adledger_engine::feed::{DEFAULT_DIGEST_EVERY, FeedOptions};
use serde::Deserialize;

use crate::edge::DurationSetting;

/// `[feed]` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedConfig {
    /// A digest event follows every block `s` with `(s + 1) % digest_every == 0`
    /// (`--feed-digest-every`, `ADLEDGER_FEED_DIGEST_EVERY`).
    pub digest_every: NonZeroU64,
    /// The longest `wait` a pull request may ask for; below the request timeout.
    pub max_wait: DurationSetting,
    /// Events buffered for one stream client.
    pub stream_buffer: usize,
    /// A stream client whose buffer stays full this long is told it is too slow and
    /// closed; it resumes by pull.
    pub slow_client_timeout: DurationSetting,
    /// How often an idle stream sends a keep-alive comment.
    pub keep_alive: DurationSetting,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            digest_every: NonZeroU64::new(DEFAULT_DIGEST_EVERY).unwrap_or(NonZeroU64::MIN),
            max_wait: DurationSetting::from_secs(30),
            stream_buffer: 1024,
            slow_client_timeout: DurationSetting::from_secs(10),
            keep_alive: DurationSetting::from_secs(15),
        }
    }
}

impl FeedConfig {
    /// The engine's options for these settings.
    pub fn options(&self) -> FeedOptions {
        FeedOptions {
            digest_every: self.digest_every.get(),
            ..FeedOptions::default()
        }
    }
}
