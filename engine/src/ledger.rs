//! The ledger: the engine's front door. Commands go through the committer; reads go to
//! the read models after they have caught up with the caller's writes; history goes to the
//! journal.
//!
//! # Read-your-writes with several processes
//!
//! A read sees every write committed before it started. With one process, the committer
//! knows the journal's tip. When other processes append to the same journal
//! ([`Sharing::journal`](crate::ports::Sharing)), a read first reads the journal's tip
//! (one strongly consistent request) so a write acknowledged by another process is
//! included too. It then waits for the read model to reach that point: through this
//! process's own projector when it projects (it holds the lease, or the model is its own),
//! or, on a standby process, by polling the model's stored checkpoint with a bounded
//! backoff until the lease holder's projection gets there. A background task also polls
//! the journal's tip every [`LedgerOptions::journal_poll`], so this process's projectors
//! notice other processes' commits even when nobody reads here.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::actor::Actor;
use crate::ad::{AdKey, is_well_formed_ad_id};
use crate::command::{Command, Outcome};
use crate::committer::{Committer, Request};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::history::HistoryPage;
use crate::ports::ProjectionLease;
use crate::ports::{AdState, Ports, RevisionRef, SearchJsonPage, SearchPage, SearchQuery};
use crate::projection::{Projector, ProjectorRole, ReadModel, Wake};
use crate::revision::Revision;
use crate::time::TimeRange;

/// Revisions read per batch when a whole history is asked for.
const HISTORY_BATCH: usize = 256;

/// Tuning knobs; the defaults suit both backends.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Most commands in one group commit.
    pub max_batch: usize,
    /// Most blocks a projector applies in one write.
    pub projection_batch: usize,
    /// How long a read waits for the read models to catch up with earlier writes.
    pub read_timeout: Duration,
    /// When other processes append to the journal: how often this process reads the
    /// journal's tip so its projectors notice their commits. It bounds how long a
    /// projecting process takes to notice another process's write when nobody reads on
    /// it; each poll is one small read.
    pub journal_poll: Duration,
    /// Least time between two commits of the search projection while writes keep coming
    /// and no search waits for them ([`Projector::with_pace`]): each commit then carries
    /// everything written in that time. A search that needs writes the index lacks makes
    /// it commit at once, so read-your-writes costs a search one commit at most, as
    /// without it. Zero: commit as soon as the previous commit is done.
    pub search_commit_interval: Duration,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            max_batch: 256,
            projection_batch: 2048,
            read_timeout: Duration::from_secs(10),
            journal_poll: Duration::from_millis(50),
            search_commit_interval: Duration::from_millis(500),
        }
    }
}

/// A running ledger over a set of ports.
#[derive(Debug)]
pub struct Ledger {
    ports: Ports,
    options: LedgerOptions,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    committed: watch::Receiver<u64>,
    /// The next sequence known to be in the journal, from reading its tip (only moves when
    /// other processes share the journal).
    observed: watch::Sender<u64>,
    state: Projection,
    search: Projection,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A search page as the index can give it: see [`Ledger::search_for_api`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchAnswer {
    /// Each hit already in the API's JSON, to be spliced into the response.
    Json(SearchJsonPage),
    /// Parsed ads, with their versions when the index stores them.
    Parsed(SearchPage),
}

impl Ledger {
    /// Opens the ledger: loads the journal tip and starts the committer and the two
    /// projectors on the current Tokio runtime (and, when other processes share the
    /// journal, the task that polls its tip).
    ///
    /// Fails with [`Error::JournalBehind`] before anything starts if the journal holds fewer
    /// blocks than its read models have seen ([`crate::high_water`]).
    pub async fn open(ports: Ports, options: LedgerOptions) -> Result<Ledger> {
        crate::high_water::check_ports(&ports).await?;
        let committer = Committer::load(
            ports.journal.clone(),
            ports.clock.clone(),
            ports.ids.clone(),
            options.max_batch,
        )
        .await?;
        let committed = committer.watch_committed();
        let recent = committer.recent();
        let (shutdown, _) = watch::channel(false);
        let (requests, receiver) = mpsc::channel(options.max_batch * 16);
        let mut tasks = vec![tokio::spawn(committer.run(receiver))];

        let (observed, _) = watch::channel(*committed.borrow());
        if ports.sharing.journal {
            tasks.push(tokio::spawn(poll_tip(
                ports.journal.clone(),
                observed.clone(),
                options.journal_poll,
                shutdown.subscribe(),
            )));
        }
        let mut projections = Vec::with_capacity(2);
        for (model, lease, pace) in [
            (
                ReadModel::State(ports.state.clone()),
                ports.sharing.state.clone(),
                Duration::ZERO,
            ),
            (
                ReadModel::Search(ports.search.clone()),
                ports.sharing.search.clone(),
                options.search_commit_interval,
            ),
        ] {
            let start = model.checkpoint().await?;
            let (progress, progress_rx) = watch::channel(start);
            let (role, role_rx) = watch::channel(initial_role(lease.as_deref()));
            let (demand, demand_rx) = watch::channel(0);
            let projector = Projector::new(
                ports.journal.clone(),
                model.clone(),
                options.projection_batch,
            )
            .with_pace(pace, demand_rx)
            .with_recent(recent.clone());
            let wake = Wake {
                committed: committed.clone(),
                observed: observed.subscribe(),
                observing: true,
                shutdown: shutdown.subscribe(),
            };
            tasks.push(tokio::spawn(projector.run(lease, wake, progress, role)));
            projections.push(Projection {
                model,
                demand,
                progress: progress_rx,
                role: role_rx,
            });
        }
        let search = projections
            .pop()
            .ok_or_else(|| Error::Unavailable("no projector".into()))?;
        let state = projections
            .pop()
            .ok_or_else(|| Error::Unavailable("no projector".into()))?;
        Ok(Ledger {
            ports,
            options,
            requests: Mutex::new(Some(requests)),
            committed,
            observed,
            state,
            search,
            shutdown,
            tasks: Mutex::new(tasks),
        })
    }

    /// The ports this ledger runs on.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Commits a command with no recorded caller; returns once it is durable.
    pub async fn execute(&self, command: Command) -> Result<Outcome> {
        self.execute_as(command, None).await
    }

    /// Commits a command for `actor`, who is recorded in the hashed header of the block it
    /// appends (and shown as each revision's `metadata.actor`); returns once it is durable.
    ///
    /// Authorization is the caller's business: the engine records who, it does not judge.
    pub async fn execute_as(&self, command: Command, actor: Option<Actor>) -> Result<Outcome> {
        let sender = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Error::Unavailable("the ledger is shutting down".into()))?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Request {
                command,
                actor,
                reply,
            })
            .await
            .map_err(|_| Error::Unavailable("the ledger is shutting down".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the ledger stopped before answering".into()))?
    }

    /// The number of blocks this process has committed or seen committed (the next
    /// sequence number). With other processes appending, the journal may be further
    /// ahead: [`read_point`](Ledger::read_point) asks it.
    pub fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    /// The point a read must see: the next sequence after every block committed before
    /// the call, by this process or, when the journal is shared, by any process (then this
    /// reads the journal's tip). It also wakes this process's projectors if the journal
    /// is further ahead than they knew.
    pub async fn read_point(&self) -> Result<u64> {
        let own = self.committed();
        if !self.ports.sharing.journal {
            return Ok(own);
        }
        let tip = self
            .ports
            .journal
            .last_sequence()
            .await?
            .map_or(0, |last| last + 1);
        raise(&self.observed, tip);
        Ok(own.max(tip))
    }

    /// The next block the state store and the search index lack, as this process's
    /// projectors last reported (or their start point before they report): the lag a
    /// monitor shows is [`committed`](Ledger::committed) minus these.
    pub fn projected(&self) -> (u64, u64) {
        (
            *self.state.progress.borrow(),
            *self.search.progress.borrow(),
        )
    }

    /// Waits until the journal holds a block at `next` or later (its next sequence is past
    /// `next`), or until `deadline`; returns the journal's next sequence then, as
    /// [`read_point`](Ledger::read_point) sees it. Feed readers long-poll with it: this
    /// process's commits wake it at once, other processes' as soon as the tip poll sees
    /// them.
    pub async fn wait_for_block(&self, next: u64, deadline: tokio::time::Instant) -> Result<u64> {
        let mut committed = self.committed.clone();
        let mut observed = self.observed.subscribe();
        loop {
            committed.borrow_and_update();
            observed.borrow_and_update();
            let tip = self.read_point().await?;
            if tip > next || tokio::time::Instant::now() >= deadline {
                return Ok(tip);
            }
            tokio::select! {
                changed = committed.changed() => if changed.is_err() {
                    return Err(Error::Unavailable("the ledger is shutting down".into()));
                },
                _ = observed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Who projects into the state store, as this process last learned it.
    pub fn state_projector(&self) -> ProjectorRole {
        self.state.role.borrow().clone()
    }

    /// Who projects into the search index, as this process last learned it.
    pub fn search_projector(&self) -> ProjectorRole {
        self.search.role.borrow().clone()
    }

    /// Waits until the state store has applied every block before `next`.
    pub async fn wait_for_state(&self, next: u64) -> Result<()> {
        self.wait(&self.state, next, "state store").await
    }

    /// Waits until the search index has applied every block before `next`.
    pub async fn wait_for_search(&self, next: u64) -> Result<()> {
        self.wait(&self.search, next, "search index").await
    }

    /// Waits for `projection` to reach `next`: on this process's projector's progress
    /// while it projects, else by polling the model's stored checkpoint (written by the
    /// lease holder in another process) with a backoff from 2 ms up to 50 ms; at most
    /// `read_timeout` in all.
    async fn wait(&self, projection: &Projection, next: u64, what: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.options.read_timeout;
        if *projection.progress.borrow() < next {
            raise(&projection.demand, next);
        }
        let mut progress = projection.progress.clone();
        let mut role = projection.role.clone();
        let mut nap = STANDBY_POLL_FIRST;
        loop {
            if *progress.borrow_and_update() >= next {
                return Ok(());
            }
            let standby = !role.borrow_and_update().projects();
            if standby && projection.model.checkpoint().await? >= next {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::Unavailable(format!(
                    "the {what} has not caught up with the journal within {:?}; retry shortly",
                    self.options.read_timeout
                )));
            }
            let until = if standby {
                (now + nap).min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                changed = progress.changed() => if changed.is_err() {
                    return Err(Error::Unavailable(format!("the {what} projection stopped")));
                },
                _ = role.changed() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
            nap = (nap * 2).min(STANDBY_POLL_MAX);
        }
    }

    /// The current state of an ad, including every write committed before the call.
    /// `NotFound` if it never existed (for this publisher), `Gone` if deleted.
    pub async fn get(&self, key: &AdKey) -> Result<AdState> {
        if !is_well_formed_ad_id(&key.ad_id) {
            return Err(not_found(key));
        }
        self.wait_for_state(self.read_point().await?).await?;
        let state = self
            .ports
            .state
            .get(key)
            .await?
            .ok_or_else(|| not_found(key))?;
        if state.ad.is_none() {
            return Err(Error::Gone {
                ad_id: key.ad_id.clone(),
                version: state.version,
            });
        }
        Ok(state)
    }

    /// A page of a publisher's live ads, ordered by id, after the cursor `after`.
    pub async fn list(
        &self,
        publisher_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AdState>> {
        self.wait_for_state(self.read_point().await?).await?;
        self.ports.state.list(publisher_id, after, limit).await
    }

    /// Runs a search that sees every write committed before the call.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        self.wait_for_search(self.read_point().await?).await?;
        self.ports.search.search(query).await
    }

    /// Runs a search that sees every write committed before the call, with the hits as
    /// the API's JSON when the index stores it (see [`SearchIndex::search_json`](crate::ports::SearchIndex::search_json)), else
    /// parsed.
    pub async fn search_for_api(&self, query: &SearchQuery) -> Result<SearchAnswer> {
        self.wait_for_search(self.read_point().await?).await?;
        match self.ports.search.search_json(query).await? {
            Some(page) => Ok(SearchAnswer::Json(page)),
            None => Ok(SearchAnswer::Parsed(self.ports.search.search(query).await?)),
        }
    }

    /// Every revision of an ad, oldest first, optionally restricted to a time range.
    /// `NotFound` if the ad never existed. Reads the whole history (in batches of blocks):
    /// for callers that want it all; HTTP reads pages with [`history_page`](Ledger::history_page).
    pub async fn history(&self, key: &AdKey, range: TimeRange) -> Result<Vec<Revision>> {
        let mut revisions = Vec::new();
        let mut after = None;
        loop {
            let page = self.history_page(key, range, after, HISTORY_BATCH).await?;
            after = page.revisions.last().map(Revision::version);
            revisions.extend(page.revisions);
            if !page.more {
                return Ok(revisions);
            }
        }
    }

    /// Up to `limit` revisions of an ad, oldest first, with version above `after` and
    /// `txTime` in `range`; `more` says whether others follow. `NotFound` if the ad never
    /// existed. Reads the page's blocks (and one more) in one call, plus O(log n) blocks
    /// to find `range.from`: the cost does not grow with the ad's history.
    pub async fn history_page(
        &self,
        key: &AdKey,
        range: TimeRange,
        after: Option<u64>,
        limit: usize,
    ) -> Result<HistoryPage> {
        let refs = self.revision_refs(key).await?;
        crate::history::page(self.ports.journal.as_ref(), key, &refs, range, after, limit).await
    }

    /// The ad's revision in force at `at`: `NotFound` before it existed, `Gone` if it had
    /// been deleted by then. A binary search over the ad's revisions by commit time:
    /// O(log n) block reads.
    pub async fn as_of(&self, key: &AdKey, at: DateTime<Utc>) -> Result<Revision> {
        let refs = self.revision_refs(key).await?;
        let revision = crate::history::in_force_at(self.ports.journal.as_ref(), key, &refs, at)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!(
                    "ad {} at {}",
                    key.ad_id,
                    crate::time::format_rfc3339_millis(&at)
                ),
            })?;
        if revision.body.data.is_none() {
            return Err(Error::Gone {
                ad_id: key.ad_id.clone(),
                version: revision.version(),
            });
        }
        Ok(revision)
    }

    /// Revision `version` of an ad, which block `sequence` holds (as a write's
    /// [`Outcome`] names it): one block read, checked against its hashes.
    pub async fn revision(&self, key: &AdKey, version: u64, sequence: u64) -> Result<Revision> {
        crate::lookup::revision_at(self.ports.journal.as_ref(), key, version, sequence).await
    }

    /// The ad's revision index; `NotFound` if it never existed.
    async fn revision_refs(&self, key: &AdKey) -> Result<Vec<RevisionRef>> {
        if !is_well_formed_ad_id(&key.ad_id) {
            return Err(not_found(key));
        }
        let refs = self.ports.journal.ad_revisions(key).await?;
        if refs.is_empty() {
            return Err(not_found(key));
        }
        Ok(refs)
    }

    /// The digest of everything committed so far (`None` for an empty journal).
    pub async fn digest(&self) -> Result<Option<Digest>> {
        let Some(sequence) = self.ports.journal.last_sequence().await? else {
            return Ok(None);
        };
        self.digest_at(sequence).await.map(Some)
    }

    /// The digest at `sequence`, from O(log n) stored subtree roots.
    pub async fn digest_at(&self, sequence: u64) -> Result<Digest> {
        crate::digest::digest_at(self.ports.journal.as_ref(), sequence).await
    }

    /// Stops accepting commands, commits what is queued, and stops the projectors (which
    /// release their leases).
    pub async fn shutdown(&self) {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let mut tasks = tasks.into_iter();
        if let Some(committer) = tasks.next() {
            // The committer ends once the queue is drained and every sender is gone;
            // in-flight `execute` calls hold clones until they are answered.
            let _ = committer.await;
        }
        self.shutdown.send_replace(true);
        for task in tasks {
            let _ = task.await;
        }
    }
}

fn not_found(key: &AdKey) -> Error {
    Error::NotFound {
        what: format!("ad {} of publisher {}", key.ad_id, key.publisher_id),
    }
}

/// A read model, its projector's progress, and who projects into it.
#[derive(Debug)]
struct Projection {
    model: ReadModel,
    /// The furthest point a reader waits for: a pacing projector steps at once past it.
    demand: watch::Sender<u64>,
    progress: watch::Receiver<u64>,
    role: watch::Receiver<ProjectorRole>,
}

/// A standby process's first wait before re-reading a read model's checkpoint.
const STANDBY_POLL_FIRST: Duration = Duration::from_millis(2);
/// Its longest wait between two reads of the checkpoint.
const STANDBY_POLL_MAX: Duration = Duration::from_millis(50);

/// The role a projector starts in: exclusive without a lease; standby until the lease is
/// first granted.
fn initial_role(lease: Option<&dyn ProjectionLease>) -> ProjectorRole {
    match lease {
        None => ProjectorRole::Exclusive,
        Some(lease) => ProjectorRole::Standby {
            owner: lease.owner().to_string(),
            holder: None,
        },
    }
}

/// Moves `observed` up to `next` (never down).
fn raise(observed: &watch::Sender<u64>, next: u64) {
    observed.send_if_modified(|known| {
        if next > *known {
            *known = next;
            true
        } else {
            false
        }
    });
}

/// Reads the journal's tip every `every` until shutdown, raising `observed`, so this
/// process's projectors notice blocks other processes append. A failing read is logged
/// once per run of failures, not once per poll.
async fn poll_tip(
    journal: std::sync::Arc<dyn crate::ports::Journal>,
    observed: watch::Sender<u64>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match journal.last_sequence().await {
            Ok(last) => {
                if failing {
                    tracing::info!("reading the journal tip works again");
                    failing = false;
                }
                raise(&observed, last.map_or(0, |l| l + 1));
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot read the journal tip; other processes' writes are noticed late until it works again");
                    failing = true;
                }
            }
        }
    }
}
