//! Catch-up projections: read the journal from a read model's checkpoint, in sequence
//! order, and apply the revisions in batches.
//!
//! Blocks this process has just committed are taken from the committer's in-memory
//! hand-over (`recent.rs`) instead of being read back and decoded; the search projection
//! is paced under continuous writes unless a search waits ([`Projector::with_pace`]).
//!
//! The checkpoint is stored by the read model together with (or, for search, after) the
//! writes it covers, and applying is idempotent by version, so a crash at any point
//! converges: the next run resumes from the stored checkpoint and re-applies at most one
//! batch.
//!
//! # Several processes
//!
//! When several server processes share a read model (the AWS backend's DynamoDB state
//! store), only the holder of its [`ProjectionLease`] projects into it; the others stand
//! by, serve reads, and wait for the holder's checkpoint (see `Ledger::wait_for_state`).
//! A read model that is each process's own (a local tantivy index, even on the AWS
//! backend) has no lease: every process projects into its own copy. Because the holder's
//! writes are idempotent by version, the rare overlap of two holders (a lease that lapsed
//! while its holder was paused) costs duplicate work, never a wrong read model; at worst
//! the checkpoint steps back and the next step re-applies a batch.
//!
//! A caught-up holder reads the journal again only when the journal moves (a commit of
//! this process, or a tip learned by a read or the tip poll), when it takes the lease,
//! and every `RECHECK_CAUGHT_UP`; a lease renewal alone reads nothing, so an idle holder
//! costs its renewals and the tip poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::block;
use crate::error::Result;
use crate::ports::{Journal, LeaseGrant, ProjectionLease, SearchIndex, StateStore};
use crate::recent::Recent;
use crate::revision::Revision;

/// A read model fed by a projector.
#[derive(Debug, Clone)]
pub enum ReadModel {
    /// The state store.
    State(Arc<dyn StateStore>),
    /// The search index.
    Search(Arc<dyn SearchIndex>),
}

impl ReadModel {
    /// `state` or `search`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ReadModel::State(_) => "state",
            ReadModel::Search(_) => "search",
        }
    }

    /// The next sequence the model has not applied.
    pub async fn checkpoint(&self) -> Result<u64> {
        match self {
            ReadModel::State(s) => s.checkpoint().await,
            ReadModel::Search(s) => s.checkpoint().await,
        }
    }

    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()> {
        match self {
            ReadModel::State(s) => s.apply(revisions, checkpoint).await,
            ReadModel::Search(s) => s.apply(revisions, checkpoint).await,
        }
    }
}

/// Feeds one read model from the journal.
#[derive(Debug, Clone)]
pub struct Projector {
    journal: Arc<dyn Journal>,
    model: ReadModel,
    batch_blocks: usize,
    /// Least time between the starts of two steps that applied something (see
    /// [`with_pace`](Projector::with_pace)); zero: step as soon as the journal moves.
    pace: Duration,
    /// The furthest point a reader waits for this model to reach: a pacing projector
    /// steps at once when it is past the model's progress.
    demand: Option<watch::Receiver<u64>>,
    /// The revisions the committer of this process handed over, read before the journal.
    recent: Option<Arc<Recent>>,
}

impl Projector {
    /// A projector applying up to `batch_blocks` blocks per write.
    pub fn new(journal: Arc<dyn Journal>, model: ReadModel, batch_blocks: usize) -> Self {
        Projector {
            journal,
            model,
            batch_blocks: batch_blocks.max(1),
            pace: Duration::ZERO,
            demand: None,
            recent: None,
        }
    }

    /// Takes blocks this process committed from `recent` when it holds them, instead of
    /// reading them back from the journal and decoding them again (see [`Recent`]).
    pub(crate) fn with_recent(mut self, recent: Arc<Recent>) -> Self {
        self.recent = Some(recent);
        self
    }

    /// Paces the projector's run loop while nobody waits for the model: after a step that
    /// applied blocks, the next one starts `pace` after it at the earliest, so under
    /// continuous writes each write to the read model carries everything committed in
    /// that time instead of whatever arrived since the previous write finished. As soon
    /// as `demand` (the furthest point a reader waits for, see `Ledger::wait_for_search`)
    /// is past the model's progress, the projector steps at once: a reader waits for one
    /// step at most, as without pacing.
    ///
    /// Why: a tantivy commit costs about the same whether it carries ten documents or a
    /// thousand (a new segment: its files, term dictionaries and fast-field writers,
    /// fsyncs, merges, a reader reload). Under 64 writing clients the index committed
    /// about ten times a second and tantivy took 28 % of the server's CPU samples; paced
    /// at 500 ms, 14 % (bench/README.md, "The write path, attributed").
    pub fn with_pace(mut self, pace: Duration, demand: watch::Receiver<u64>) -> Self {
        self.pace = pace;
        self.demand = Some(demand);
        self
    }

    /// Whether a reader waits for a point past `progress`.
    fn demanded(&mut self, progress: u64) -> bool {
        self.demand
            .as_mut()
            .is_some_and(|demand| *demand.borrow_and_update() > progress)
    }

    /// Until `demand` changes, forever without one.
    async fn demand_changed(demand: Option<&mut watch::Receiver<u64>>) {
        if let Some(demand) = demand
            && demand.changed().await.is_ok()
        {
            return;
        }
        std::future::pending().await
    }

    /// Applies the next batch after the model's checkpoint; returns the new checkpoint and
    /// how many blocks were applied (0 when the model is caught up).
    pub async fn step(&self) -> Result<(u64, usize)> {
        self.step_from(None).await
    }

    /// [`step`](Projector::step) from `from` if given (the checkpoint this process last
    /// wrote or read, while nobody else could move it), else from the model's checkpoint
    /// as read now.
    async fn step_from(&self, from: Option<u64>) -> Result<(u64, usize)> {
        let from = match from {
            Some(from) => from,
            None => self.model.checkpoint().await?,
        };
        if let Some((revisions, blocks)) = self
            .recent
            .as_ref()
            .and_then(|recent| recent.take(from, self.batch_blocks))
        {
            let next = from + blocks as u64;
            self.model.apply(&revisions, next).await?;
            return Ok((next, blocks));
        }
        let stored = self.journal.read_blocks(from, self.batch_blocks).await?;
        if stored.is_empty() {
            return Ok((from, 0));
        }
        let mut revisions = Vec::with_capacity(stored.len());
        for encoded in &stored {
            revisions.extend(block::open(encoded)?.revisions);
        }
        let next = from + stored.len() as u64;
        self.model.apply(&revisions, next).await?;
        Ok((next, stored.len()))
    }

    /// Applies batches until the model has every block; returns the final checkpoint.
    pub async fn catch_up(&self) -> Result<u64> {
        loop {
            let (next, applied) = self.step().await?;
            if applied == 0 {
                return Ok(next);
            }
        }
    }

    /// Runs until `shutdown` turns true: catches up whenever the journal moves (a commit
    /// of this process, or a tip learned from the journal), publishing progress. Storage
    /// errors are logged and retried with backoff; they never end the loop, because a
    /// projection that silently stops is worse than a noisy one.
    ///
    /// With a `lease` (a read model shared by several processes) it projects only while
    /// it holds the lease: it renews at a third of the lease's length, stops writing a
    /// quarter of the length before an unrenewed lease lapses (a margin for clocks that
    /// disagree), retries to take the lease soon after another holder's lapses, and
    /// releases it on shutdown so a standby process can take over at once.
    pub(crate) async fn run(
        mut self,
        lease: Option<Arc<dyn ProjectionLease>>,
        mut wake: Wake,
        progress: watch::Sender<u64>,
        role: watch::Sender<ProjectorRole>,
    ) {
        let model = self.model.name();
        let mut tenure = Tenure::default();
        let mut backoff = Duration::from_millis(10);
        // The checkpoint at which this process last found the model caught up with the
        // journal while holding the lease throughout, and when; `None` when it must look
        // again. A lease renewal alone does not move the journal, so it costs no journal
        // read, except every `RECHECK_CAUGHT_UP` (see there).
        let mut caught_up_at: Option<(u64, Instant)> = None;
        // The checkpoint this process last wrote or read while holding the lease
        // throughout, and when it last read it: the next step starts there without
        // reading it again, except every `RECHECK_CAUGHT_UP` (a lapsed holder's late write
        // may have stepped it back; the guarded writes make re-applying harmless).
        let mut resume: Option<(u64, Instant)> = None;
        // When the last step that applied blocks started (only while pacing).
        let mut last_applied: Option<Instant> = None;
        loop {
            if *wake.shutdown.borrow() {
                break;
            }
            if let Some(lease) = &lease {
                let held = tenure.holding();
                tenure.maintain(lease.as_ref(), model, &role).await;
                if !tenure.holding() {
                    caught_up_at = None;
                    resume = None;
                    tokio::select! {
                        _ = tokio::time::sleep_until(tenure.next_attempt) => {}
                        _ = wake.shutdown.changed() => {}
                    }
                    continue;
                }
                if !held {
                    // Just taken: another holder may have moved the checkpoint.
                    caught_up_at = None;
                    resume = None;
                }
            }
            if let Some((at, when)) = caught_up_at
                && when.elapsed() < RECHECK_CAUGHT_UP
                && wake.known() <= at
            {
                if !wake
                    .wait(lease.is_some().then_some(tenure.next_attempt))
                    .await
                {
                    break;
                }
                continue;
            }
            if let Some(due) = last_applied.map(|at| at + self.pace)
                && Instant::now() < due
                && !self.demanded(*progress.borrow())
            {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = Self::demand_changed(self.demand.as_mut()) => {}
                    _ = wake.shutdown.changed() => {}
                }
                // The lease may need renewing, or the ledger may be shutting down.
                continue;
            }
            let resume_from = resume.filter(|(_, read)| read.elapsed() < RECHECK_CAUGHT_UP);
            let started = Instant::now();
            match self.step_from(resume_from.map(|(at, _)| at)).await {
                Ok((next, applied)) => {
                    if applied > 0 && !self.pace.is_zero() {
                        last_applied = Some(started);
                    }
                    backoff = Duration::from_millis(10);
                    resume = Some((
                        next,
                        resume_from.map_or_else(Instant::now, |(_, read)| read),
                    ));
                    progress.send_replace(next);
                    // A short batch applied and nothing newer known (this process's
                    // commits, tips it read): caught up as far as another step could tell
                    // before the journal moves again, so wait instead of reading the
                    // checkpoint and the tip once more. Another process's appends wake it
                    // as they wake a caught-up projector (a read or the tip poll observes
                    // them).
                    if applied > 0 && (applied >= self.batch_blocks || wake.known() > next) {
                        caught_up_at = None;
                        continue;
                    }
                    caught_up_at = Some((next, Instant::now()));
                    // Caught up: wait for the journal to move, a lease renewal, or shutdown.
                    if wake.known() > next {
                        continue;
                    }
                    if !wake
                        .wait(lease.is_some().then_some(tenure.next_attempt))
                        .await
                    {
                        break;
                    }
                }
                Err(error) => {
                    caught_up_at = None;
                    resume = None;
                    tracing::error!(model, %error, "projection failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = wake.shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Some(lease) = &lease
            && tenure.held_until.is_some()
        {
            match lease.release().await {
                Ok(()) => tracing::info!(
                    model,
                    owner = lease.owner(),
                    "projector lease released on shutdown"
                ),
                Err(error) => tracing::warn!(
                    model,
                    %error,
                    "could not release the projector lease; another process takes over \
                     once it lapses"
                ),
            }
            role.send_replace(ProjectorRole::Standby {
                owner: lease.owner().to_string(),
                holder: None,
            });
        }
    }
}

/// What wakes a caught-up projector.
#[derive(Debug)]
pub(crate) struct Wake {
    /// The next sequence this process's committer has not committed.
    pub committed: watch::Receiver<u64>,
    /// The next sequence known to be in the journal, learned by reading the journal's tip
    /// (reads, and the tip poller when other processes append).
    pub observed: watch::Receiver<u64>,
    /// Whether `observed` still has a sender.
    pub observing: bool,
    /// Turns true when the ledger shuts down.
    pub shutdown: watch::Receiver<bool>,
}

impl Wake {
    /// The furthest the journal is known to reach; marks both values seen.
    fn known(&mut self) -> u64 {
        let committed = *self.committed.borrow_and_update();
        let observed = *self.observed.borrow_and_update();
        committed.max(observed)
    }

    /// Waits for the journal to move (a commit of this process, or a tip learned from
    /// the journal), for `until` (the next lease renewal), or for shutdown; `false` when
    /// the ledger is gone and the projector should stop.
    async fn wait(&mut self, until: Option<Instant>) -> bool {
        tokio::select! {
            changed = self.committed.changed() => return changed.is_ok(),
            changed = self.observed.changed(), if self.observing => {
                // The ledger is gone: only its own commits wake us now.
                self.observing = changed.is_ok();
            }
            _ = tokio::time::sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => {}
            _ = self.shutdown.changed() => {}
        }
        true
    }
}

/// Who projects into a read model, as this process last learned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectorRole {
    /// No other process writes this read model, so this process projects without a lease
    /// (the local backend; a tantivy index on the AWS backend).
    Exclusive,
    /// This process holds the read model's lease and projects.
    Holder {
        /// This process's owner id.
        owner: String,
    },
    /// This process does not hold the lease: it serves reads and waits for the holder's
    /// checkpoint.
    Standby {
        /// This process's owner id.
        owner: String,
        /// The holder's owner id, if known (not known before the first attempt, or after
        /// the lease store failed to answer).
        holder: Option<String>,
    },
}

impl ProjectorRole {
    /// Whether this process applies the journal to the read model itself.
    pub fn projects(&self) -> bool {
        !matches!(self, ProjectorRole::Standby { .. })
    }
}

/// How long a lease holder that found its read model caught up trusts that, while the
/// journal does not move, before it reads the model's checkpoint and the journal again.
/// Nothing else moves a shared model's checkpoint, except a holder whose lease lapsed
/// while it was paused, whose late write may step the checkpoint back (see the module
/// docs): this bounds how long that goes unrepaired, at two requests per period.
const RECHECK_CAUGHT_UP: Duration = Duration::from_secs(30);

/// The shortest wait before trying to take a lease another process holds.
const STANDBY_RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest: a standby process re-checks at least this often, so it notices a
/// released lease (a holder's graceful shutdown) within this; a holder that crashed is
/// replaced when its lease lapses. Each check is one request to the lease store, so this
/// is most of an idle standby's cost (on AWS: half a request a second).
const STANDBY_RETRY_MAX: Duration = Duration::from_secs(2);
/// The wait after the lease store failed to answer.
const LEASE_ERROR_RETRY: Duration = Duration::from_millis(500);

/// One projector's hold on its lease.
#[derive(Debug)]
struct Tenure {
    /// While `Some`, this process may write: the lease's last grant, less the margin.
    held_until: Option<Instant>,
    /// When to renew (holder) or try again (standby).
    next_attempt: Instant,
}

impl Default for Tenure {
    fn default() -> Self {
        Tenure {
            held_until: None,
            next_attempt: Instant::now(),
        }
    }
}

impl Tenure {
    fn holding(&self) -> bool {
        self.held_until.is_some_and(|until| Instant::now() < until)
    }

    /// Renews or takes the lease when it is time, and publishes the outcome.
    async fn maintain(
        &mut self,
        lease: &dyn ProjectionLease,
        model: &'static str,
        role: &watch::Sender<ProjectorRole>,
    ) {
        let owner = lease.owner();
        let now = Instant::now();
        if now >= self.next_attempt {
            match lease.acquire().await {
                Ok(LeaseGrant::Held { valid_for }) => {
                    // Stop writing a quarter of the lease before it lapses unrenewed.
                    let far = Duration::from_secs(86_400);
                    self.held_until = Some(now + (valid_for - valid_for / 4).min(far));
                    self.next_attempt = now + (valid_for / 3).min(far);
                    if !matches!(*role.borrow(), ProjectorRole::Holder { .. }) {
                        tracing::info!(
                            model,
                            owner,
                            "projector lease acquired: this process projects"
                        );
                    }
                    role.send_replace(ProjectorRole::Holder {
                        owner: owner.to_string(),
                    });
                }
                Ok(LeaseGrant::HeldElsewhere {
                    owner: holder,
                    expires_in,
                }) => {
                    if self.held_until.take().is_some() {
                        tracing::warn!(model, owner, %holder, "projector lease lost to another process; standing by");
                    } else if !matches!(&*role.borrow(), ProjectorRole::Standby { holder: Some(h), .. } if *h == holder)
                    {
                        tracing::info!(model, owner, %holder, "another process holds the projector lease; standing by");
                    }
                    self.next_attempt =
                        now + expires_in.clamp(STANDBY_RETRY_MIN, STANDBY_RETRY_MAX);
                    role.send_replace(ProjectorRole::Standby {
                        owner: owner.to_string(),
                        holder: Some(holder),
                    });
                }
                Err(error) => {
                    tracing::error!(model, owner, %error, "cannot take or renew the projector lease; retrying");
                    self.next_attempt = now + LEASE_ERROR_RETRY;
                }
            }
        }
        if self.held_until.is_some() && !self.holding() {
            tracing::warn!(
                model,
                owner,
                "projector lease lapsed before it could be renewed; stopping projection"
            );
            self.held_until = None;
            self.next_attempt = Instant::now();
            role.send_replace(ProjectorRole::Standby {
                owner: owner.to_string(),
                holder: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::command::Command;
    use crate::ledger::{Ledger, LedgerOptions};
    use crate::memory::MemoryBackend;
    use crate::ports::{AdState, SearchPage, SearchQuery, Sharing};
    use crate::testkit::{CountingJournal, draft};

    /// A lease this process always holds, for `valid_for` at a time, counting renewals.
    #[derive(Debug)]
    struct AlwaysHeld {
        valid_for: Duration,
        acquires: AtomicUsize,
    }

    #[async_trait]
    impl ProjectionLease for AlwaysHeld {
        fn owner(&self) -> &str {
            "test"
        }
        async fn acquire(&self) -> Result<LeaseGrant> {
            self.acquires.fetch_add(1, Ordering::Relaxed);
            Ok(LeaseGrant::Held {
                valid_for: self.valid_for,
            })
        }
        async fn release(&self) -> Result<()> {
            Ok(())
        }
    }

    async fn create_and_read(ledger: &Ledger, title: &str) {
        let outcome = ledger
            .execute(Command::CreateAd {
                publisher_id: "acme".into(),
                draft: draft(title, Some("10"), "misc", &[]),
                idempotency_key: None,
            })
            .await
            .expect("create");
        let key = outcome.ad.expect("created ad").key();
        let read = ledger.get(&key).await.expect("read after write");
        assert_eq!(read.version, 0);
    }

    /// A search index that counts its writes.
    #[derive(Debug)]
    struct CountingSearch {
        inner: Arc<dyn SearchIndex>,
        applies: AtomicUsize,
    }

    #[async_trait]
    impl SearchIndex for CountingSearch {
        async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()> {
            self.applies.fetch_add(1, Ordering::Relaxed);
            self.inner.apply(revisions, checkpoint).await
        }
        async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
            self.inner.search(query).await
        }
        async fn checkpoint(&self) -> Result<u64> {
            self.inner.checkpoint().await
        }
        async fn clear(&self) -> Result<()> {
            self.inner.clear().await
        }
        async fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<()> {
            self.inner.put(states, checkpoint).await
        }
    }

    /// Under writes nobody searches for, the paced search projection writes the index
    /// once per interval, not once per write; a search that needs the latest writes
    /// makes it write at once instead of waiting out the interval.
    #[tokio::test]
    async fn a_paced_search_projection_batches_writes_until_a_search_needs_them() {
        let backend = MemoryBackend::new();
        let search = Arc::new(CountingSearch {
            inner: backend.search.clone(),
            applies: AtomicUsize::new(0),
        });
        let mut ports = backend.ports();
        ports.search = search.clone();
        let options = LedgerOptions {
            search_commit_interval: Duration::from_secs(60),
            ..LedgerOptions::default()
        };
        let ledger = Ledger::open(ports, options).await.expect("open");
        let create = |title: &'static str| {
            ledger.execute(Command::CreateAd {
                publisher_id: "acme".into(),
                draft: draft(title, Some("10"), "misc", &[]),
                idempotency_key: None,
            })
        };
        create("first").await.expect("create");
        // After an idle spell the first write is indexed at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        while ledger.projected().1 < ledger.committed() {
            assert!(Instant::now() < deadline, "the first write was not indexed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(search.applies.load(Ordering::Relaxed), 1);
        for _ in 0..20 {
            create("middle").await.expect("create");
        }
        create("zebra").await.expect("create");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            search.applies.load(Ordering::Relaxed),
            1,
            "the index was written within the interval though nobody searched"
        );
        assert!(ledger.projected().1 < ledger.committed());

        let started = Instant::now();
        let page = ledger
            .search(&SearchQuery {
                text: "zebra".into(),
                limit: 10,
                ..SearchQuery::default()
            })
            .await
            .expect("search");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the search waited out the interval"
        );
        assert_eq!(page.total, 1, "read-your-writes: the last create is found");
        assert_eq!(
            search.applies.load(Ordering::Relaxed),
            2,
            "the 21 writes went in one index write"
        );
        ledger.shutdown().await;
    }

    /// A lease holder whose journal does not move renews its lease without reading the
    /// journal each time (on AWS each read is a DynamoDB request), and still projects a
    /// new write at once.
    #[tokio::test]
    async fn an_idle_holder_renews_without_reading_the_journal() {
        let backend = MemoryBackend::new();
        let journal = Arc::new(CountingJournal::new(backend.journal.clone()));
        let lease = Arc::new(AlwaysHeld {
            // Renewed every 100 ms.
            valid_for: Duration::from_millis(300),
            acquires: AtomicUsize::new(0),
        });
        let mut ports = backend.ports();
        ports.journal = journal.clone();
        ports.sharing = Sharing {
            journal: true,
            state: Some(lease.clone()),
            search: None,
        };
        let options = LedgerOptions {
            journal_poll: Duration::from_secs(60),
            ..LedgerOptions::default()
        };
        let ledger = Ledger::open(ports, options).await.expect("open");
        create_and_read(&ledger, "first").await;

        let (reads, acquires) = (journal.reads(), lease.acquires.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let renewals = lease.acquires.load(Ordering::Relaxed) - acquires;
        assert!(renewals >= 5, "only {renewals} renewals in 1 s");
        assert_eq!(
            journal.reads(),
            reads,
            "an idle holder read the journal during {renewals} renewals"
        );

        // Projected at once (the state store has it: `create_and_read` reads it back),
        // from the committer's hand-over rather than the journal.
        create_and_read(&ledger, "second").await;
        assert!(ledger.projected().0 >= ledger.committed());
        ledger.shutdown().await;
    }
}
