//! Scheduled snapshots: `adledger serve` takes snapshots of its read models by itself
//! and keeps the last N.
//!
//! Configured by `[snapshots] schedule = "…"` and `keep = N` in the TOML file,
//! `ADLEDGER_SNAPSHOT_SCHEDULE` / `ADLEDGER_SNAPSHOT_KEEP`, or `--snapshot-schedule` /
//! `--snapshot-keep` (flags > environment > file, as every setting). Schedules:
//!
//! | schedule | due |
//! |---|---|
//! | `hourly` | at the start of every hour (UTC) |
//! | `daily` | at 00:00 UTC every day |
//! | `weekly` | at 00:00 UTC every Monday |
//! | `monthly` | at 00:00 UTC on the 1st of every month (the seed's schedule) |
//! | `every 30s`, `every 15m`, `every 6h`, `every 2d` | that long after the previous snapshot (at least 1 s) |
//! | `off` | never (the default) |
//!
//! # When a snapshot is due ([`next_due`])
//!
//! The next snapshot is due at the first schedule boundary strictly after the newest
//! snapshot in the snapshot directory (manual ones count too, so `POST /admin/snapshots`
//! or `adledger snapshot create` also reset an interval). Consequences, chosen on
//! purpose:
//!
//! - **Missed while down**: a boundary that passed while the server was stopped makes a
//!   snapshot due at once when it starts — one snapshot, not one per missed boundary.
//! - **No snapshot yet**: the first one is due at the first boundary after start, not at
//!   start (a fresh server has nothing worth keeping yet).
//! - A newest snapshot dated in the future (the clock was set back) counts as taken now.
//! - Calendar arithmetic is chrono's on UTC dates: `monthly` after 31 January is
//!   1 February, after 15 February of a leap year is 1 March; no month-length guessing.
//!
//! Nothing new to keep: if the state store has applied no block since the newest
//! snapshot, the tick is skipped (logged) and the next boundary is awaited, so an idle
//! ledger does not push out its older snapshots with copies.
//!
//! # Time
//!
//! The schedule runs on the wall clock, also with `--deterministic`: the deterministic
//! clock is a logical clock that advances on every read and stamps transactions, so a
//! background task reading it at wall-clock-driven moments would change the transaction
//! times of later writes and break the byte-identical journals that mode promises.
//!
//! # Failures and shutdown
//!
//! A failed snapshot is logged (warning) and retried after [`Schedule::retry_delay`];
//! the task never stops on an error. Pruning deletes the oldest snapshots of the
//! directory (all of them count, manual ones included) so that `keep` remain, logging
//! each deletion. On graceful shutdown the task stops at its next wait; a snapshot in
//! progress is finished first (it writes to a side file and renames, so even a kill
//! leaves no half snapshot under a snapshot name).

use std::str::FromStr;
use std::time::Duration;

use adledger_engine::{Error, Ports};
use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc};
use serde::Deserialize;
use tokio::sync::watch;

use crate::snapshot_store::{SnapshotStore, SnapshotStoreError};

/// The shortest interval `every …` accepts: shorter would only churn the disk.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest interval `every …` accepts.
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);
/// How many snapshots are kept when the configuration does not say.
pub const DEFAULT_KEEP: usize = 7;

/// When scheduled snapshots are due; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// At the start of every hour (UTC).
    Hourly,
    /// At 00:00 UTC every day.
    Daily,
    /// At 00:00 UTC every Monday.
    Weekly,
    /// At 00:00 UTC on the 1st of every month.
    Monthly,
    /// A fixed interval after the previous snapshot.
    Every(Duration),
}

impl Schedule {
    /// The first boundary strictly after `t`.
    pub fn next_after(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc();
        match self {
            Schedule::Every(interval) => {
                // Within MAX_INTERVAL, so the conversion and the addition cannot fail;
                // the fallbacks only keep this total.
                let step = TimeDelta::from_std(interval).unwrap_or(TimeDelta::MAX);
                t.checked_add_signed(step)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
            Schedule::Hourly => {
                let hour = t
                    .date_naive()
                    .and_hms_opt(t.hour(), 0, 0)
                    .map(|h| h.and_utc())
                    .unwrap_or(t);
                hour + TimeDelta::hours(1)
            }
            Schedule::Daily => t
                .date_naive()
                .succ_opt()
                .map_or(DateTime::<Utc>::MAX_UTC, midnight),
            Schedule::Weekly => {
                let ahead = 7 - u64::from(t.weekday().num_days_from_monday());
                t.date_naive()
                    .checked_add_days(Days::new(ahead))
                    .map_or(DateTime::<Utc>::MAX_UTC, midnight)
            }
            Schedule::Monthly => {
                let (year, month) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                NaiveDate::from_ymd_opt(year, month, 1).map_or(DateTime::<Utc>::MAX_UTC, midnight)
            }
        }
    }

    /// How long to wait before trying again after a failed snapshot: the interval for
    /// short schedules, a minute otherwise.
    pub fn retry_delay(self) -> Duration {
        match self {
            Schedule::Every(interval) => interval.min(Duration::from_secs(60)),
            _ => Duration::from_secs(60),
        }
    }
}

/// When the next snapshot is due, given the newest snapshot's time (`None`: there is
/// none) and the current time; a result at or before `now` means "take one now". See
/// the module docs for the rules; this function is all of them.
pub fn next_due(
    schedule: Schedule,
    newest: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    match newest {
        Some(taken) if taken <= now => schedule.next_after(taken),
        // None yet, or one from the future (the clock went back): count from now.
        _ => schedule.next_after(now),
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Hourly => f.write_str("hourly"),
            Schedule::Daily => f.write_str("daily"),
            Schedule::Weekly => f.write_str("weekly"),
            Schedule::Monthly => f.write_str("monthly"),
            Schedule::Every(d) => write!(f, "every {}s", d.as_secs()),
        }
    }
}

/// Why a schedule text was refused; the text says what is accepted.
const SCHEDULE_HELP: &str = "must be `off`, `hourly`, `daily`, `weekly`, `monthly` or `every N` \
     with a unit s, m, h or d (such as `every 6h`), between 1 s and 366 days";

/// A configured schedule: `None` is `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduleSetting(pub Option<Schedule>);

impl FromStr for ScheduleSetting {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim().to_ascii_lowercase();
        let schedule = match text.as_str() {
            "off" | "none" | "never" => return Ok(ScheduleSetting(None)),
            "hourly" => Schedule::Hourly,
            "daily" => Schedule::Daily,
            "weekly" => Schedule::Weekly,
            "monthly" => Schedule::Monthly,
            other => {
                let spec = other
                    .strip_prefix("every")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or(SCHEDULE_HELP)?;
                let split = spec
                    .find(|c: char| !c.is_ascii_digit())
                    .ok_or(SCHEDULE_HELP)?;
                let (count, unit) = spec.split_at(split);
                let count: u64 = count.parse().map_err(|_| SCHEDULE_HELP)?;
                let unit_secs = match unit.trim() {
                    "s" | "sec" | "second" | "seconds" => 1,
                    "m" | "min" | "minute" | "minutes" => 60,
                    "h" | "hour" | "hours" => 3600,
                    "d" | "day" | "days" => 86_400,
                    _ => return Err(SCHEDULE_HELP),
                };
                let interval =
                    Duration::from_secs(count.checked_mul(unit_secs).ok_or(SCHEDULE_HELP)?);
                if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
                    return Err(SCHEDULE_HELP);
                }
                Schedule::Every(interval)
            }
        };
        Ok(ScheduleSetting(Some(schedule)))
    }
}

impl<'de> Deserialize<'de> for ScheduleSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|reason| serde::de::Error::custom(format!("schedule {text:?} {reason}")))
    }
}

/// The `[snapshots]` table of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotConfig {
    /// When to take snapshots; `off` by default.
    pub schedule: ScheduleSetting,
    /// How many snapshots to keep (at least 1).
    #[serde(deserialize_with = "deserialize_keep")]
    pub keep: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            schedule: ScheduleSetting(None),
            keep: DEFAULT_KEEP,
        }
    }
}

/// Why a `keep` value was refused.
pub const KEEP_HELP: &str = "must be a whole number of snapshots, at least 1";

/// Parses `keep`: 0 would delete the snapshot just taken.
pub fn parse_keep(text: &str) -> Result<usize, &'static str> {
    match text.trim().parse::<usize>() {
        Ok(0) | Err(_) => Err(KEEP_HELP),
        Ok(n) => Ok(n),
    }
}

fn deserialize_keep<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = u64::deserialize(d)?;
    match usize::try_from(n) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(serde::de::Error::custom(format!("keep = {n} {KEEP_HELP}"))),
    }
}

/// What one tick did.
#[derive(Debug)]
enum Tick {
    Taken,
    /// Nothing new since the newest snapshot (or nothing applied at all yet).
    Skipped,
}

/// The scheduler of one server: started by [`spawn`], stopped through its sender.
#[derive(Debug)]
pub struct ScheduleTask {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl ScheduleTask {
    /// Asks the task to stop and waits for it (a snapshot in progress finishes first).
    pub async fn stop(self) {
        // The receiver lives as long as the task; a send error means it already ended.
        let _ = self.stop.send(true);
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "the snapshot scheduler task failed");
        }
    }
}

/// Starts taking snapshots of `ports` into `store` on `schedule`, keeping `keep`.
pub fn spawn(ports: Ports, store: SnapshotStore, schedule: Schedule, keep: usize) -> ScheduleTask {
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(run(ports, store, schedule, keep.max(1), stopped));
    ScheduleTask { stop, handle }
}

/// Waits `delay`; `false` if a stop was asked meanwhile.
async fn wait(delay: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    if *stopped.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        // A closed channel (the sender dropped) also means stop.
        _ = stopped.changed() => false,
    }
}

async fn run(
    ports: Ports,
    store: SnapshotStore,
    schedule: Schedule,
    keep: usize,
    mut stopped: watch::Receiver<bool>,
) {
    tracing::info!(%schedule, keep, dir = %store.dir().display(), "snapshot schedule started");
    // When a tick last ended without a new file (skipped): counts as the newest
    // snapshot's time, so an idle ledger waits for the next boundary.
    let mut skipped_at: Option<DateTime<Utc>> = None;
    loop {
        let newest = match newest_snapshot(&store) {
            Ok(newest) => newest,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the snapshots; retrying");
                if !wait(schedule.retry_delay(), &mut stopped).await {
                    break;
                }
                continue;
            }
        };
        let anchor = match (newest.map(|n| n.0), skipped_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let now = Utc::now();
        let due = next_due(schedule, anchor, now);
        let delay = (due - now).to_std().unwrap_or(Duration::ZERO);
        tracing::debug!(due = %due, "next scheduled snapshot");
        if !wait(delay, &mut stopped).await {
            break;
        }
        match tick(&ports, &store, newest.map(|n| n.1), keep).await {
            Ok(Tick::Taken) => skipped_at = None,
            Ok(Tick::Skipped) => skipped_at = Some(Utc::now()),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?schedule.retry_delay(),
                    "scheduled snapshot failed; retrying");
                if !wait(schedule.retry_delay(), &mut stopped).await {
                    break;
                }
            }
        }
    }
    tracing::info!("snapshot schedule stopped");
}

/// The newest snapshot's creation time and sequence, if any.
fn newest_snapshot(
    store: &SnapshotStore,
) -> Result<Option<(DateTime<Utc>, u64)>, SnapshotStoreError> {
    Ok(store
        .list()?
        .into_iter()
        .map(|(_, h)| (h.created_at, h.sequence))
        .max())
}

/// Takes one snapshot unless nothing changed since `newest_sequence`, then prunes.
async fn tick(
    ports: &Ports,
    store: &SnapshotStore,
    newest_sequence: Option<u64>,
    keep: usize,
) -> Result<Tick, SnapshotStoreError> {
    let checkpoint = ports.state.checkpoint().await?;
    let Some(sequence) = checkpoint.checked_sub(1) else {
        tracing::info!("scheduled snapshot skipped: the ledger holds nothing yet");
        return Ok(Tick::Skipped);
    };
    if newest_sequence == Some(sequence) {
        tracing::info!(
            sequence,
            "scheduled snapshot skipped: nothing changed since the newest snapshot"
        );
        return Ok(Tick::Skipped);
    }
    let (id, header) = match store.create(ports).await {
        Ok(created) => created,
        Err(SnapshotStoreError::Engine(Error::NotFound { .. })) => return Ok(Tick::Skipped),
        Err(e) => return Err(e),
    };
    tracing::info!(
        id,
        sequence = header.sequence,
        ads = header.count,
        root = %header.root,
        "scheduled snapshot taken"
    );
    for (id, header) in store.prune(keep)? {
        tracing::info!(id, sequence = header.sequence, keep, "old snapshot deleted");
    }
    Ok(Tick::Taken)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid test time")
    }

    fn parse(text: &str) -> Option<Schedule> {
        text.parse::<ScheduleSetting>().expect(text).0
    }

    #[test]
    fn schedules_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!(parse("daily"), Some(Schedule::Daily));
        assert_eq!(parse(" Monthly "), Some(Schedule::Monthly));
        assert_eq!(parse("off"), None);
        assert_eq!(
            parse("every 6h"),
            Some(Schedule::Every(Duration::from_secs(6 * 3600)))
        );
        assert_eq!(
            parse("every 1s"),
            Some(Schedule::Every(Duration::from_secs(1)))
        );
        assert_eq!(
            parse("every 90 minutes"),
            Some(Schedule::Every(Duration::from_secs(5400)))
        );
        for bad in [
            "",
            "every",
            "every 0s",
            "every 6",
            "every h",
            "every 6w",
            "yearly",
            "every 400d",
            "every 99999999999999999999d",
        ] {
            let err = bad.parse::<ScheduleSetting>().expect_err(bad);
            assert!(err.contains("every 6h"), "{bad}: {err}");
        }
        assert_eq!(parse_keep("3"), Ok(3));
        assert!(parse_keep("0").is_err());
        assert!(parse_keep("-1").is_err());
    }

    #[test]
    fn monthly_is_the_first_of_the_next_month_across_year_and_leap_days() {
        let m = Schedule::Monthly;
        assert_eq!(
            m.next_after(at(2024, 1, 31, 12, 0, 0)),
            at(2024, 2, 1, 0, 0, 0)
        );
        assert_eq!(
            m.next_after(at(2024, 2, 29, 23, 59, 59)),
            at(2024, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            m.next_after(at(2023, 2, 28, 0, 0, 0)),
            at(2023, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            m.next_after(at(2024, 12, 31, 23, 0, 0)),
            at(2025, 1, 1, 0, 0, 0)
        );
        // Strictly after: a snapshot taken exactly at the boundary waits a whole month.
        assert_eq!(
            m.next_after(at(2024, 3, 1, 0, 0, 0)),
            at(2024, 4, 1, 0, 0, 0)
        );
    }

    #[test]
    fn daily_weekly_hourly_and_intervals() {
        assert_eq!(
            Schedule::Daily.next_after(at(2024, 2, 28, 23, 59, 59)),
            at(2024, 2, 29, 0, 0, 0),
            "leap day exists in 2024"
        );
        assert_eq!(
            Schedule::Daily.next_after(at(2023, 2, 28, 10, 0, 0)),
            at(2023, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            Schedule::Daily.next_after(at(2024, 12, 31, 0, 0, 0)),
            at(2025, 1, 1, 0, 0, 0)
        );
        // 2024-03-04 is a Monday.
        assert_eq!(
            Schedule::Weekly.next_after(at(2024, 3, 4, 0, 0, 0)),
            at(2024, 3, 11, 0, 0, 0)
        );
        assert_eq!(
            Schedule::Weekly.next_after(at(2024, 3, 10, 23, 0, 0)),
            at(2024, 3, 11, 0, 0, 0)
        );
        assert_eq!(
            Schedule::Hourly.next_after(at(2024, 12, 31, 23, 30, 5)),
            at(2025, 1, 1, 0, 0, 0)
        );
        let six = Schedule::Every(Duration::from_secs(6 * 3600));
        assert_eq!(
            six.next_after(at(2024, 2, 28, 20, 0, 0)),
            at(2024, 2, 29, 2, 0, 0)
        );
    }

    #[test]
    fn next_due_catches_up_once_after_downtime_and_waits_when_fresh() {
        let now = at(2024, 3, 15, 9, 0, 0);
        // Newest snapshot from January: February's and March's boundaries were missed
        // while down, so one is due now (the result is in the past), not two.
        let due = next_due(Schedule::Monthly, Some(at(2024, 1, 1, 0, 0, 3)), now);
        assert_eq!(due, at(2024, 2, 1, 0, 0, 0));
        assert!(due <= now);
        // After taking it, the next one is April 1st.
        assert_eq!(
            next_due(Schedule::Monthly, Some(now), now),
            at(2024, 4, 1, 0, 0, 0)
        );
        // No snapshot yet: wait for the first boundary, do not take one at start.
        assert_eq!(
            next_due(Schedule::Monthly, None, now),
            at(2024, 4, 1, 0, 0, 0)
        );
        assert_eq!(
            next_due(Schedule::Daily, None, now),
            at(2024, 3, 16, 0, 0, 0)
        );
        // A snapshot dated in the future counts as taken now.
        assert_eq!(
            next_due(Schedule::Daily, Some(at(2030, 1, 1, 0, 0, 0)), now),
            at(2024, 3, 16, 0, 0, 0)
        );
        let second = Schedule::Every(Duration::from_secs(1));
        assert_eq!(
            next_due(second, Some(at(2024, 3, 15, 8, 59, 59)), now),
            now,
            "due exactly now"
        );
    }

    #[test]
    fn snapshot_tables_parse_with_defaults_and_refuse_bad_values() {
        let c: SnapshotConfig = toml::from_str("schedule = \"every 6h\"\nkeep = 3\n").expect("ok");
        assert_eq!(
            c.schedule.0,
            Some(Schedule::Every(Duration::from_secs(21_600)))
        );
        assert_eq!(c.keep, 3);
        let c: SnapshotConfig = toml::from_str("schedule = \"monthly\"\n").expect("ok");
        assert_eq!(c.keep, DEFAULT_KEEP);
        assert!(toml::from_str::<SnapshotConfig>("keep = 0\n").is_err());
        assert!(toml::from_str::<SnapshotConfig>("schedule = \"sometimes\"\n").is_err());
        assert!(toml::from_str::<SnapshotConfig>("kept = 2\n").is_err());
    }
}
