//! The ledger: the engine's front door. Commands go through the committer; reads go to
//! the read models after they have caught up with the caller's writes; history goes to the
//! journal.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::ad::{AdKey, is_well_formed_ad_id};
use crate::block;
use crate::command::{Command, Outcome};
use crate::committer::{Committer, Request};
use crate::error::{Error, Result};
use crate::merkle;
use crate::ports::{AdState, Ports, SearchPage, SearchQuery};
use crate::projection::{Projector, ReadModel};
use crate::revision::Revision;

/// Tuning knobs; the defaults suit both backends.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Most commands in one group commit.
    pub max_batch: usize,
    /// Most blocks a projector applies in one write.
    pub projection_batch: usize,
    /// How long a read waits for the read models to catch up with earlier writes.
    pub read_timeout: Duration,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            max_batch: 256,
            projection_batch: 2048,
            read_timeout: Duration::from_secs(10),
        }
    }
}

/// A time range, both ends inclusive and optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Earliest `txTime`.
    pub from: Option<DateTime<Utc>>,
    /// Latest `txTime`.
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// Whether `t` lies in the range.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t <= to)
    }
}

/// The digest of the journal at a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// The last block covered.
    pub sequence: u64,
    /// The Merkle tree head over blocks `0..=sequence`.
    pub root: crate::Hash,
    /// The hash of block `sequence`.
    pub tip_hash: crate::Hash,
}

/// A running ledger over a set of ports.
#[derive(Debug)]
pub struct Ledger {
    ports: Ports,
    options: LedgerOptions,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    committed: watch::Receiver<u64>,
    state_progress: watch::Receiver<u64>,
    search_progress: watch::Receiver<u64>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Ledger {
    /// Opens the ledger: loads the journal tip and starts the committer and the two
    /// projectors on the current Tokio runtime.
    pub async fn open(ports: Ports, options: LedgerOptions) -> Result<Ledger> {
        let committer = Committer::load(
            ports.journal.clone(),
            ports.clock.clone(),
            ports.ids.clone(),
            options.max_batch,
        )
        .await?;
        let committed = committer.watch_committed();
        let (shutdown, _) = watch::channel(false);
        let (requests, receiver) = mpsc::channel(options.max_batch * 16);
        let mut tasks = vec![tokio::spawn(committer.run(receiver))];

        let mut progress = Vec::new();
        for model in [
            ReadModel::State(ports.state.clone()),
            ReadModel::Search(ports.search.clone()),
        ] {
            let start = model.checkpoint().await?;
            let (tx, rx) = watch::channel(start);
            let projector = Projector::new(ports.journal.clone(), model, options.projection_batch);
            tasks.push(tokio::spawn(projector.run(
                committed.clone(),
                tx,
                shutdown.subscribe(),
            )));
            progress.push(rx);
        }
        let search_progress = progress
            .pop()
            .ok_or_else(|| Error::Unavailable("no projector".into()))?;
        let state_progress = progress
            .pop()
            .ok_or_else(|| Error::Unavailable("no projector".into()))?;
        Ok(Ledger {
            ports,
            options,
            requests: Mutex::new(Some(requests)),
            committed,
            state_progress,
            search_progress,
            shutdown,
            tasks: Mutex::new(tasks),
        })
    }

    /// The ports this ledger runs on.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Commits a command; returns once it is durable.
    pub async fn execute(&self, command: Command) -> Result<Outcome> {
        let sender = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Error::Unavailable("the ledger is shutting down".into()))?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Request { command, reply })
            .await
            .map_err(|_| Error::Unavailable("the ledger is shutting down".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the ledger stopped before answering".into()))?
    }

    /// The number of committed blocks (the next sequence number).
    pub fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Waits until the state store has applied every block before `next`.
    pub async fn wait_for_state(&self, next: u64) -> Result<()> {
        self.wait(self.state_progress.clone(), next, "state store")
            .await
    }

    /// Waits until the search index has applied every block before `next`.
    pub async fn wait_for_search(&self, next: u64) -> Result<()> {
        self.wait(self.search_progress.clone(), next, "search index")
            .await
    }

    async fn wait(&self, mut progress: watch::Receiver<u64>, next: u64, what: &str) -> Result<()> {
        let reached =
            tokio::time::timeout(self.options.read_timeout, progress.wait_for(|p| *p >= next));
        match reached.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Unavailable(format!("the {what} projection stopped"))),
            Err(_) => Err(Error::Unavailable(format!(
                "the {what} has not caught up with the journal within {:?}; retry shortly",
                self.options.read_timeout
            ))),
        }
    }

    /// The current state of an ad, including every write committed before the call.
    /// `NotFound` if it never existed (for this publisher), `Gone` if deleted.
    pub async fn get(&self, key: &AdKey) -> Result<AdState> {
        if !is_well_formed_ad_id(&key.ad_id) {
            return Err(not_found(key));
        }
        self.wait_for_state(self.committed()).await?;
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
        self.wait_for_state(self.committed()).await?;
        self.ports.state.list(publisher_id, after, limit).await
    }

    /// Runs a search that sees every write committed before the call.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        self.wait_for_search(self.committed()).await?;
        self.ports.search.search(query).await
    }

    /// Every revision of an ad, oldest first, optionally restricted to a time range.
    /// `NotFound` if the ad never existed.
    pub async fn history(&self, key: &AdKey, range: TimeRange) -> Result<Vec<Revision>> {
        if !is_well_formed_ad_id(&key.ad_id) {
            return Err(not_found(key));
        }
        let refs = self.ports.journal.ad_revisions(key).await?;
        if refs.is_empty() {
            return Err(not_found(key));
        }
        let mut revisions = Vec::with_capacity(refs.len());
        for r in refs {
            let stored = self
                .ports
                .journal
                .read_blocks(r.sequence, 1)
                .await?
                .pop()
                .ok_or_else(|| Error::ChainBroken {
                    sequence: r.sequence,
                    detail: format!("block of ad {} version {} is missing", key.ad_id, r.version),
                })?;
            let revision = block::open(&stored)?
                .revisions
                .into_iter()
                .find(|rev| rev.key() == *key && rev.version() == r.version)
                .ok_or_else(|| Error::ChainBroken {
                    sequence: r.sequence,
                    detail: format!("block lacks ad {} version {}", key.ad_id, r.version),
                })?;
            if range.contains(revision.body.metadata.tx_time) {
                revisions.push(revision);
            }
        }
        Ok(revisions)
    }

    /// The ad's revision in force at `at`: `NotFound` before it existed, `Gone` if it had
    /// been deleted by then.
    pub async fn as_of(&self, key: &AdKey, at: DateTime<Utc>) -> Result<Revision> {
        let upto = TimeRange {
            from: None,
            to: Some(at),
        };
        let revision = self
            .history(key, upto)
            .await?
            .pop()
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

    /// The digest of everything committed so far (`None` for an empty journal).
    pub async fn digest(&self) -> Result<Option<Digest>> {
        let Some(sequence) = self.ports.journal.last_sequence().await? else {
            return Ok(None);
        };
        self.digest_at(sequence).await.map(Some)
    }

    /// The digest at `sequence`, from O(log n) stored subtree roots.
    pub async fn digest_at(&self, sequence: u64) -> Result<Digest> {
        let ids = merkle::frontier_ids(sequence + 1);
        let nodes = self.ports.journal.merkle_nodes(&ids).await?;
        let hashes = nodes
            .into_iter()
            .zip(&ids)
            .map(|(h, (level, index))| {
                h.ok_or_else(|| Error::NotFound {
                    what: format!(
                        "Merkle node (level {level}, index {index}) for sequence {sequence}"
                    ),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let root = merkle::Frontier::from_nodes(sequence + 1, &hashes)
            .and_then(|f| f.root())
            .ok_or_else(|| Error::Corrupt("Merkle frontier mismatch".into()))?;
        let stored = self
            .ports
            .journal
            .read_blocks(sequence, 1)
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound {
                what: format!("block {sequence}"),
            })?;
        let tip_hash = block::Frame::parse(&stored.bytes)?.block_hash();
        Ok(Digest {
            sequence,
            root,
            tip_hash,
        })
    }

    /// Stops accepting commands, commits what is queued, and stops the projectors.
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
