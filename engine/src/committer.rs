//! The single writer: turns commands into blocks and group-commits them.
//!
//! Every command goes through one task. It drains whatever commands are waiting, checks
//! each against the current ad heads (optimistic concurrency, idempotency keys), seals one
//! block per changing command, chains the blocks, extends the Merkle tree, and hands the
//! whole batch to [`Journal::append`] as one atomic, durable write. Commands arriving
//! while a write is in flight form the next batch, so throughput grows with concurrency
//! while each write still costs one durable flush.
//!
//! Several processes may share one journal (the AWS backend): a batch that loses the race
//! gets [`Error::Conflict`] from the journal, and the committer reloads the tip and heads
//! and re-plans the same commands, with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};

use crate::actor::Actor;
use crate::ad::{Ad, AdKey, AdPatch};
use crate::batch;
use crate::block::{self, EncodedBlock};
use crate::codec::IdempotencyTag;
use crate::command::{Command, Outcome};
use crate::error::{Error, Result, VersionExpectation};
use crate::hash::Hash;
use crate::head_cache::{HeadCache, Weigh};
use crate::lookup::revision_at;
use crate::merkle::Frontier;
use crate::ports::{AdHead, AppendBatch, Clock, IdGenerator, IdempotencyRecord, Journal};
use crate::recent::Recent;
use crate::revision::{EventKind, RevisionBody, RevisionMetadata};

/// How many times a batch is re-planned after losing a race to another writer.
const MAX_RACE_RETRIES: u32 = 8;
/// Heads kept in memory; past this the cache is dropped and refilled from the journal.
const HEAD_CACHE_LIMIT: usize = 200_000;
/// Bytes of heads (their ads' data) kept in memory, whatever the ads' sizes.
const HEAD_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A command and where to send its result.
#[derive(Debug)]
pub(crate) struct Request {
    pub command: Command,
    /// The authenticated caller, recorded in the block's header.
    pub actor: Option<Actor>,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

/// The journal's last block.
#[derive(Debug, Clone, Copy)]
struct Tip {
    sequence: u64,
    hash: Hash,
    tx_time: DateTime<Utc>,
}

/// An ad's head plus its current data, so an update can be applied without a read.
#[derive(Debug, Clone)]
struct Head {
    head: AdHead,
    data: Option<Ad>,
}

impl Weigh for Head {
    fn heap_bytes(&self) -> usize {
        self.data.as_ref().map_or(0, Ad::heap_bytes)
    }
}

/// The ad heads touched by the batch being planned.
#[derive(Debug)]
struct Touched {
    /// Version before the batch (`None`: the ad did not exist).
    before: Option<u64>,
    now: Head,
}

/// State of the journal as the committer believes it to be.
#[derive(Debug)]
pub(crate) struct Committer {
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    max_batch: usize,
    /// Most frame bytes per append (the journal's limit).
    max_bytes: usize,
    tip: Option<Tip>,
    frontier: Frontier,
    heads: HeadCache<Head>,
    /// Next sequence number not yet committed; projections and readers watch it.
    committed: watch::Sender<u64>,
    /// Set when a write failed in a way that leaves the journal's state unknown.
    stale: bool,
    /// Where committed blocks' revisions go for this process's projectors.
    recent: Arc<Recent>,
}

/// Everything one planning pass produced.
struct Plan {
    batch: AppendBatch,
    results: Vec<Result<Outcome>>,
    tip: Option<Tip>,
    frontier: Frontier,
    touched: HashMap<AdKey, Touched>,
    /// Where each ad's head update is in `batch.heads`.
    heads: batch::HeadIndex,
    /// The caller of the command being planned: its blocks' actor.
    actor: Option<Actor>,
}

impl Committer {
    /// Loads the tip and the Merkle frontier from the journal.
    pub(crate) async fn load(
        journal: Arc<dyn Journal>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        max_batch: usize,
    ) -> Result<Committer> {
        let (committed, _) = watch::channel(0);
        let mut committer = Committer {
            journal: journal.clone(),
            clock,
            ids,
            max_batch: max_batch.min(journal.max_blocks_per_append()).max(1),
            max_bytes: journal.max_bytes_per_append(),
            tip: None,
            frontier: Frontier::new(),
            heads: HeadCache::new(HEAD_CACHE_LIMIT, HEAD_CACHE_BYTES),
            committed,
            stale: true,
            recent: Arc::default(),
        };
        committer.reload().await?;
        Ok(committer)
    }

    /// A receiver of the next uncommitted sequence number.
    pub(crate) fn watch_committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// The revisions of the blocks this committer appended last, for the projectors.
    pub(crate) fn recent(&self) -> Arc<Recent> {
        self.recent.clone()
    }

    /// Re-reads the tip and frontier; drops cached heads.
    async fn reload(&mut self) -> Result<()> {
        self.heads.clear();
        let last = self.journal.last_sequence().await?;
        self.tip = match last {
            None => None,
            Some(sequence) => {
                let stored = self
                    .journal
                    .read_blocks(sequence, 1)
                    .await?
                    .pop()
                    .ok_or_else(|| Error::ChainBroken {
                        sequence,
                        detail: "the journal's last block is missing".into(),
                    })?;
                let block = block::open(&stored)?;
                Some(Tip {
                    sequence,
                    hash: block.hash,
                    tx_time: block.header.tx_time,
                })
            }
        };
        let size = last.map_or(0, |s| s + 1);
        self.frontier = crate::digest::stored_frontier(self.journal.as_ref(), size)
            .await?
            .1;
        self.committed.send_replace(size);
        self.stale = false;
        Ok(())
    }

    /// Runs until every sender is dropped; commits whatever is queued before returning.
    pub(crate) async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut pending = Vec::with_capacity(self.max_batch);
        while requests.recv_many(&mut pending, self.max_batch).await > 0 {
            let mut batch = std::mem::take(&mut pending);
            // A group whose blocks pass the journal's byte limit is committed in parts.
            while !batch.is_empty() {
                batch = self.commit(batch).await;
            }
        }
    }

    /// Commits `requests`, or the first of them if their blocks would pass the journal's
    /// byte limit; returns the requests left for the next append.
    async fn commit(&mut self, mut requests: Vec<Request>) -> Vec<Request> {
        let mut rest = Vec::new();
        let mut attempt = 0;
        let outcome = loop {
            if self.stale
                && let Err(e) = self.reload().await
            {
                break Err(e);
            }
            let commands: Vec<(&Command, Option<&Actor>)> = requests
                .iter()
                .map(|r| (&r.command, r.actor.as_ref()))
                .collect();
            let mut plan = match self.plan(&commands).await {
                Ok(plan) => plan,
                Err(e) => break Err(e),
            };
            if plan.batch.blocks.is_empty() {
                break Ok(plan);
            }
            let bytes: usize = plan.batch.blocks.iter().map(|b| b.bytes.len()).sum();
            if bytes > self.max_bytes && requests.len() > 1 {
                // Nothing was written: plan the first half alone, the rest after it.
                let mut tail = requests.split_off(requests.len() / 2);
                tail.append(&mut rest);
                rest = tail;
                continue;
            }
            let started = std::time::Instant::now();
            let blocks = plan.batch.blocks.len();
            // Moved, not cloned: a lost race re-plans from scratch.
            let appended = self.journal.append(std::mem::take(&mut plan.batch)).await;
            metrics::histogram!("adledger_commit_duration_seconds").record(started.elapsed());
            metrics::histogram!("adledger_commit_batch_blocks").record(blocks as f64);
            tracing::debug!(
                commands = requests.len(),
                blocks,
                append_ms = started.elapsed().as_secs_f64() * 1e3,
                "group commit"
            );
            match appended {
                Ok(()) => break Ok(plan),
                Err(Error::Conflict { .. }) if attempt < MAX_RACE_RETRIES => {
                    attempt += 1;
                    metrics::counter!("adledger_commit_races_total").increment(1);
                    tracing::debug!(attempt, "journal append lost a race; re-planning");
                    self.stale = true;
                    tokio::time::sleep(Duration::from_millis(1 << attempt.min(6))).await;
                }
                Err(e) => {
                    self.stale = true;
                    break Err(e);
                }
            }
        };
        match outcome {
            Ok(plan) => {
                let next = plan.tip.map_or(0, |t| t.sequence + 1);
                self.tip = plan.tip;
                self.frontier = plan.frontier;
                for (key, touched) in plan.touched {
                    self.heads.insert(key, touched.now);
                }
                // Durable now: the append returned. Handed over before the watermark
                // moves, so a projector woken by it finds them.
                for result in &plan.results {
                    if let Ok(Outcome {
                        revision: Some(revision),
                        ..
                    }) = result
                    {
                        self.recent
                            .push(revision.sequence(), vec![revision.clone()]);
                    }
                }
                self.committed.send_replace(next);
                for (request, result) in requests.into_iter().zip(plan.results) {
                    // A client that went away no longer wants its answer.
                    let _ = request.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, commands = requests.len(), "journal write failed");
                let conflict = matches!(error, Error::Conflict { .. });
                let full = matches!(error, Error::StorageFull(_));
                for request in requests {
                    let err = if conflict {
                        Error::Unavailable(
                            "the journal is under heavy concurrent writing; retry the request"
                                .into(),
                        )
                    } else if full {
                        // The backend's text names paths: it is logged above, not sent.
                        Error::StorageFull(
                            "the disk holding the journal is full, so this write was not \
                             acknowledged; the server continues on its own once the operator \
                             frees space"
                                .into(),
                        )
                    } else {
                        Error::Unavailable("the journal could not be written; retry later".into())
                    };
                    let _ = request.reply.send(Err(err));
                }
            }
        }
        rest
    }

    /// Reads an ad's head (and data) from the journal, caching it.
    async fn load_head(&mut self, key: &AdKey) -> Result<Option<Head>> {
        if let Some(head) = self.heads.get(key) {
            return Ok(Some(head.clone()));
        }
        let Some(head) = self.journal.ad_head(key).await? else {
            return Ok(None);
        };
        let data = revision_at(self.journal.as_ref(), key, head.version, head.sequence)
            .await?
            .body
            .data;
        let head = Head { head, data };
        self.heads.insert(key.clone(), head.clone());
        Ok(Some(head))
    }

    async fn plan(&mut self, commands: &[(&Command, Option<&Actor>)]) -> Result<Plan> {
        let mut plan = Plan {
            batch: AppendBatch {
                expected_last: self.tip.map(|t| t.sequence),
                ..AppendBatch::default()
            },
            results: Vec::with_capacity(commands.len()),
            tip: self.tip,
            frontier: self.frontier.clone(),
            touched: HashMap::new(),
            heads: batch::HeadIndex::default(),
            actor: None,
        };
        let mut keys_in_batch: HashMap<(String, String), (Hash, Outcome)> = HashMap::new();
        for &(command, actor) in commands {
            plan.actor = actor.cloned();
            let result = match command {
                Command::CreateAd {
                    publisher_id,
                    draft,
                    idempotency_key,
                } => {
                    // Only a create with a key is ever compared with another: without
                    // one, the fingerprint (a JSON encoding and a hash) is not made.
                    let fingerprint = if idempotency_key.is_some() {
                        Command::create_fingerprint(publisher_id, draft)
                    } else {
                        Hash::ZERO
                    };
                    let earlier = match idempotency_key {
                        Some(key) => {
                            self.find_idempotent(&keys_in_batch, publisher_id, key, fingerprint)
                                .await?
                        }
                        None => None,
                    };
                    match earlier {
                        Some(answer) => answer,
                        None => {
                            let tx_time = self.next_time(&plan);
                            let ad_id = self.ids.next_id(tx_time);
                            let ad = draft.clone().into_ad(publisher_id, &ad_id);
                            let tag = idempotency_key.as_ref().map(|key| IdempotencyTag {
                                key: key.clone(),
                                request_hash: fingerprint,
                            });
                            let outcome = self.append_revision(
                                &mut plan,
                                tx_time,
                                None,
                                0,
                                Some(ad),
                                EventKind::AdCreated,
                                AdKey::new(publisher_id, &ad_id),
                                tag,
                            )?;
                            if let Some(key) = idempotency_key {
                                plan.batch.idempotency.push(IdempotencyRecord {
                                    publisher_id: publisher_id.clone(),
                                    key: key.clone(),
                                    request_hash: fingerprint,
                                    ad_id: ad_id.clone(),
                                    sequence: outcome.sequence,
                                });
                                let replay = Outcome {
                                    revision: None,
                                    replayed: true,
                                    ..outcome.clone()
                                };
                                keys_in_batch.insert(
                                    (publisher_id.clone(), key.clone()),
                                    (fingerprint, replay),
                                );
                            }
                            Ok(outcome)
                        }
                    }
                }
                Command::UpdateAd {
                    key,
                    patch,
                    expected_version,
                } => match self
                    .checked_head(&plan, key, *expected_version, Some(patch))
                    .await?
                {
                    Err(e) => Err(e),
                    Ok((before, head, current)) => {
                        let next = patch.apply_to(&current);
                        if next == current {
                            Ok(Outcome {
                                ad: Some(current),
                                version: head.version,
                                revision: None,
                                sequence: head.sequence,
                                replayed: false,
                            })
                        } else {
                            let tx_time = self.next_time(&plan);
                            self.append_revision(
                                &mut plan,
                                tx_time,
                                before,
                                head.version + 1,
                                Some(next),
                                EventKind::AdUpdated,
                                key.clone(),
                                None,
                            )
                        }
                    }
                },
                Command::DeleteAd {
                    key,
                    expected_version,
                } => match self
                    .checked_head(&plan, key, *expected_version, None)
                    .await?
                {
                    Err(e) => Err(e),
                    Ok((before, head, _)) => {
                        let tx_time = self.next_time(&plan);
                        self.append_revision(
                            &mut plan,
                            tx_time,
                            before,
                            head.version + 1,
                            None,
                            EventKind::AdDeleted,
                            key.clone(),
                            None,
                        )
                    }
                },
            };
            plan.results.push(result);
        }
        Ok(plan)
    }

    /// Answers a create from an idempotency record made earlier (in this batch or in the
    /// journal); `Ok(None)` if the key is new.
    async fn find_idempotent(
        &mut self,
        in_batch: &HashMap<(String, String), (Hash, Outcome)>,
        publisher_id: &str,
        key: &str,
        fingerprint: Hash,
    ) -> Result<Option<Result<Outcome>>> {
        let reused = || {
            Err(Error::invalid(
                "Idempotency-Key",
                format!(
                    "{key:?} was already used for a create with a different body; use a new key for a new ad"
                ),
            ))
        };
        if let Some((hash, outcome)) = in_batch.get(&(publisher_id.to_string(), key.to_string())) {
            return Ok(Some(if *hash == fingerprint {
                Ok(outcome.clone())
            } else {
                reused()
            }));
        }
        let Some(record) = self.journal.idempotency(publisher_id, key).await? else {
            return Ok(None);
        };
        if record.request_hash != fingerprint {
            return Ok(Some(reused()));
        }
        let created_key = AdKey {
            publisher_id: publisher_id.to_string(),
            ad_id: record.ad_id.clone(),
        };
        let created = revision_at(self.journal.as_ref(), &created_key, 0, record.sequence).await?;
        Ok(Some(Ok(Outcome {
            ad: created.body.data,
            version: 0,
            revision: None,
            sequence: record.sequence,
            replayed: true,
        })))
    }

    /// [`live_head`](Committer::live_head), re-read from the journal when a head this
    /// process cached would decide the answer without the append's condition checking it:
    /// a version conflict, or an update that changes nothing. Another process sharing the
    /// journal may have written the ad since it was cached (a client that read version 2
    /// through it must not get a 412 here because this cache still says 1). Every other
    /// answer goes through the journal's condition on the head, and a stale head there
    /// makes the append fail and the batch re-plan.
    async fn checked_head(
        &mut self,
        plan: &Plan,
        key: &AdKey,
        expected: Option<u64>,
        patch: Option<&AdPatch>,
    ) -> Result<Result<(Option<u64>, AdHead, Ad)>> {
        let cached = !plan.touched.contains_key(key) && self.heads.contains_key(key);
        let found = self.live_head(plan, key, expected).await?;
        let decided_by_cache = match &found {
            Err(Error::Conflict { .. }) => true,
            Ok((_, _, current)) => patch.is_some_and(|p| p.apply_to(current) == *current),
            Err(_) => false,
        };
        if cached && decided_by_cache {
            self.heads.remove(key);
            return self.live_head(plan, key, expected).await;
        }
        Ok(found)
    }

    /// The current head of an ad that must exist and not be deleted, checked against the
    /// expected version. The outer `Result` is a storage failure, the inner one the
    /// command's own failure.
    async fn live_head(
        &mut self,
        plan: &Plan,
        key: &AdKey,
        expected: Option<u64>,
    ) -> Result<Result<(Option<u64>, AdHead, Ad)>> {
        let (before, head) = match plan.touched.get(key) {
            Some(t) => (t.before, Some(t.now.clone())),
            None => {
                let head = self.load_head(key).await?;
                (head.as_ref().map(|h| h.head.version), head)
            }
        };
        let Some(head) = head else {
            return Ok(Err(Error::NotFound {
                what: format!("ad {} of publisher {}", key.ad_id, key.publisher_id),
            }));
        };
        if head.head.deleted {
            return Ok(Err(Error::Gone {
                ad_id: key.ad_id.clone(),
                version: head.head.version,
            }));
        }
        if let Some(expected) = expected
            && expected != head.head.version
        {
            return Ok(Err(Error::Conflict {
                expected: VersionExpectation::Version(expected),
                actual: VersionExpectation::Version(head.head.version),
            }));
        }
        let Some(ad) = head.data else {
            return Err(Error::Corrupt(format!(
                "ad {} version {} is live but its revision has no data",
                key.ad_id, head.head.version
            )));
        };
        Ok(Ok((before, head.head, ad)))
    }

    /// The time of the next transaction: never earlier than the previous one, even if the
    /// wall clock steps back. At the journal's millisecond precision whatever the clock
    /// gives, so the revisions handed to the projectors ([`Recent`]) equal what the
    /// journal stores.
    fn next_time(&self, plan: &Plan) -> DateTime<Utc> {
        let now = crate::time::to_millis_precision(self.clock.now());
        match plan.tip {
            Some(tip) if tip.tx_time > now => tip.tx_time,
            _ => now,
        }
    }

    /// Seals one block holding one revision and adds it to the plan.
    #[allow(clippy::too_many_arguments)]
    fn append_revision(
        &self,
        plan: &mut Plan,
        tx_time: DateTime<Utc>,
        before: Option<u64>,
        version: u64,
        data: Option<Ad>,
        event: EventKind,
        key: AdKey,
        idempotency: Option<IdempotencyTag>,
    ) -> Result<Outcome> {
        let sequence = plan.tip.map_or(0, |t| t.sequence + 1);
        let previous_hash = plan.tip.map_or(Hash::ZERO, |t| t.hash);
        let tx_id = self.ids.next_id(tx_time);
        let body = RevisionBody {
            data: data.clone(),
            metadata: RevisionMetadata {
                id: key.ad_id.clone(),
                publisher_id: key.publisher_id.clone(),
                version,
                tx_id: tx_id.clone(),
                tx_time,
                actor: None,
            },
            event,
        };
        let (block, encoded): (_, EncodedBlock) = block::seal_with(
            sequence,
            &tx_id,
            tx_time,
            previous_hash,
            vec![body],
            idempotency,
            plan.actor.clone(),
        )?;
        batch::add_block(&mut plan.batch, &mut plan.frontier, &block.hash, encoded);
        plan.tip = Some(Tip {
            sequence,
            hash: block.hash,
            tx_time,
        });
        let head = Head {
            head: AdHead {
                version,
                sequence,
                deleted: data.is_none(),
            },
            data: data.clone(),
        };
        let before = plan.touched.get(&key).map_or(before, |t| t.before);
        plan.touched
            .insert(key.clone(), Touched { before, now: head });
        batch::add_revision(
            &mut plan.batch,
            &mut plan.heads,
            key,
            version,
            sequence,
            data.is_none(),
            before,
        );
        Ok(Outcome {
            ad: data,
            version,
            revision: block.revisions.into_iter().next(),
            sequence,
            replayed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::ledger::{Ledger, LedgerOptions};
    use crate::memory::MemoryBackend;
    use crate::ports::{AdHead, IdempotencyRecord, RevisionRef};
    use crate::testkit::draft;

    /// A journal that takes at most `max_bytes` of frames per append (as DynamoDB's
    /// transaction size limits the AWS backend), recording each append's frame bytes.
    #[derive(Debug)]
    struct Limited {
        inner: Arc<dyn Journal>,
        max_bytes: usize,
        appends: Mutex<Vec<(usize, usize)>>,
    }

    #[async_trait]
    impl Journal for Limited {
        async fn append(&self, batch: AppendBatch) -> Result<()> {
            let bytes = batch.blocks.iter().map(|b| b.bytes.len()).sum();
            if batch.blocks.len() > 1 && bytes > self.max_bytes {
                return Err(Error::TooLarge(format!("{bytes} bytes")));
            }
            self.appends
                .lock()
                .expect("lock")
                .push((batch.blocks.len(), bytes));
            // A round trip, so concurrent commands pile up into one group.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.inner.append(batch).await
        }
        async fn last_sequence(&self) -> Result<Option<u64>> {
            self.inner.last_sequence().await
        }
        async fn read_blocks(&self, from: u64, max: usize) -> Result<Vec<EncodedBlock>> {
            self.inner.read_blocks(from, max).await
        }
        async fn ad_head(&self, key: &AdKey) -> Result<Option<AdHead>> {
            self.inner.ad_head(key).await
        }
        async fn ad_revisions(&self, key: &AdKey) -> Result<Vec<RevisionRef>> {
            self.inner.ad_revisions(key).await
        }
        async fn idempotency(&self, p: &str, k: &str) -> Result<Option<IdempotencyRecord>> {
            self.inner.idempotency(p, k).await
        }
        async fn merkle_nodes(&self, ids: &[(u8, u64)]) -> Result<Vec<Option<Hash>>> {
            self.inner.merkle_nodes(ids).await
        }
        fn max_blocks_per_append(&self) -> usize {
            1000
        }
        fn max_bytes_per_append(&self) -> usize {
            self.max_bytes
        }
    }

    /// A clock finer than the journal's milliseconds, 1 ms later each time it is read.
    #[derive(Debug)]
    struct FineClock(Mutex<DateTime<Utc>>);

    impl Clock for FineClock {
        fn now(&self) -> DateTime<Utc> {
            let mut next = self.0.lock().expect("lock");
            let now = *next;
            *next = now + chrono::Duration::microseconds(1_001);
            now
        }
    }

    /// What the committer hands to the projectors is exactly what a projector reading
    /// the journal decodes (creates, an update, a delete, an actor, an idempotency key,
    /// a clock finer than the journal's milliseconds), and only once it is appended.
    #[tokio::test]
    async fn handed_over_revisions_equal_the_stored_ones() {
        let backend = MemoryBackend::new();
        let journal = backend.journal.clone();
        let fine = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("time");
        let committer = Committer::load(
            journal.clone(),
            Arc::new(FineClock(Mutex::new(fine))),
            backend.ports().ids,
            16,
        )
        .await
        .expect("load");
        let recent = committer.recent();
        let (sender, receiver) = mpsc::channel(16);
        let task = tokio::spawn(committer.run(receiver));
        let actor = Actor::new("alice", "https://issuer.example").expect("actor");
        let send = |command: Command| {
            let sender = sender.clone();
            let actor = actor.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                sender
                    .send(Request {
                        command,
                        actor: Some(actor),
                        reply,
                    })
                    .await
                    .expect("send");
                answer.await.expect("answer").expect("committed")
            }
        };
        let created = send(Command::CreateAd {
            publisher_id: "acme".into(),
            draft: draft("first", Some("19.90"), "misc", &["a", "b"]),
            idempotency_key: Some("k1".into()),
        })
        .await;
        assert!(
            recent.take(0, 10).is_some_and(|(_, n)| n == 1),
            "the create is handed over once appended"
        );
        let key = created.ad.expect("ad").key();
        send(Command::CreateAd {
            publisher_id: "acme".into(),
            draft: draft("second", None, "misc", &[]),
            idempotency_key: None,
        })
        .await;
        send(Command::UpdateAd {
            key: key.clone(),
            patch: AdPatch {
                ad_title: Some("first, renamed".into()),
                ..AdPatch::default()
            },
            expected_version: Some(0),
        })
        .await;
        send(Command::DeleteAd {
            key,
            expected_version: Some(1),
        })
        .await;
        drop(sender);
        task.await.expect("committer");

        let stored = journal.read_blocks(0, 100).await.expect("read");
        assert_eq!(stored.len(), 4);
        let decoded: Vec<_> = stored
            .iter()
            .flat_map(|b| block::open(b).expect("open").revisions)
            .collect();
        let (handed, blocks) = recent.take(0, 100).expect("held");
        assert_eq!(blocks, 4);
        assert_eq!(handed, decoded);
    }

    /// A group of large creates that would pass the journal's byte limit is committed in
    /// several appends, each within the limit, and every create succeeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_over_the_byte_limit_is_split() {
        let backend = MemoryBackend::new();
        let journal = Arc::new(Limited {
            inner: backend.journal.clone(),
            max_bytes: 20_000,
            appends: Mutex::new(Vec::new()),
        });
        let mut ports = backend.ports();
        ports.journal = journal.clone();
        let ledger = Arc::new(
            Ledger::open(ports, LedgerOptions::default())
                .await
                .expect("open"),
        );
        let description = "x".repeat(3_000);
        let creates = (0..40).map(|i| {
            let ledger = ledger.clone();
            let mut ad = draft(&format!("ad {i}"), Some("1"), "misc", &[]);
            ad.ad_description = description.clone();
            async move {
                ledger
                    .execute(Command::CreateAd {
                        publisher_id: "acme".into(),
                        draft: ad,
                        idempotency_key: None,
                    })
                    .await
            }
        });
        for outcome in futures::future::join_all(creates).await {
            outcome.expect("every create commits");
        }
        let appends = journal.appends.lock().expect("lock").clone();
        assert_eq!(appends.iter().map(|(n, _)| n).sum::<usize>(), 40);
        assert!(
            appends.iter().all(|(_, bytes)| *bytes <= 20_000),
            "{appends:?}"
        );
        assert!(
            appends.iter().any(|(n, _)| *n > 1),
            "still grouped: {appends:?}"
        );
        ledger.shutdown().await;
    }
}
