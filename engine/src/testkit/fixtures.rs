//! Building blocks for the suite: sample ads, hand-built batches, read-model snapshots.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;

use crate::ad::{Ad, AdDraft, AdKey};
use crate::block::{self, Block, EncodedBlock};
use crate::error::Result;
use crate::hash::Hash;
use crate::merkle::Frontier;
use crate::ports::{AdHead, AdState, AppendBatch, HeadUpdate, Journal, RevisionRef, StateStore};
use crate::revision::{EventKind, Revision, RevisionBody, RevisionMetadata};

/// A valid draft with the given title, price and tags.
pub fn draft(title: &str, price: Option<&str>, category: &str, tags: &[&str]) -> AdDraft {
    AdDraft {
        ad_title: title.to_string(),
        ad_description: format!("{title} described"),
        price: price.map(|p| p.parse::<Decimal>().unwrap_or_default()),
        currency: if price.is_some() {
            "EUR".into()
        } else {
            String::new()
        },
        category: category.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// Builds valid, chained batches by hand, for testing the ports without the engine's
/// committer.
#[derive(Debug, Default)]
pub struct ChainBuilder {
    tip: Option<(u64, Hash)>,
    frontier: Frontier,
    heads: BTreeMap<AdKey, u64>,
    millis: i64,
}

impl ChainBuilder {
    /// A builder for an empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_time(&mut self) -> DateTime<Utc> {
        self.millis += 1;
        Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            + Duration::milliseconds(self.millis)
    }

    /// A batch with one block per `(ad, data)` pair: `data = None` deletes. Versions
    /// follow the builder's own record of each ad's head.
    pub fn batch(
        &mut self,
        changes: Vec<(AdKey, Option<Ad>)>,
    ) -> Result<(AppendBatch, Vec<Block>)> {
        let mut batch = AppendBatch {
            expected_last: self.tip.map(|t| t.0),
            ..AppendBatch::default()
        };
        let mut blocks = Vec::new();
        for (key, data) in changes {
            let before = self.heads.get(&key).copied();
            let version = before.map_or(0, |v| v + 1);
            let sequence = self.tip.map_or(0, |t| t.0 + 1);
            let tx_time = self.next_time();
            let event = match (&data, before) {
                (None, _) => EventKind::AdDeleted,
                (Some(_), None) => EventKind::AdCreated,
                (Some(_), Some(_)) => EventKind::AdUpdated,
            };
            let body = RevisionBody {
                data: data.clone(),
                metadata: RevisionMetadata {
                    id: key.ad_id.clone(),
                    publisher_id: key.publisher_id.clone(),
                    version,
                    tx_id: format!("tx{sequence}"),
                    tx_time,
                    actor: None,
                },
                event,
            };
            let previous = self.tip.map_or(Hash::ZERO, |t| t.1);
            let (block, encoded) = block::seal(
                sequence,
                &format!("tx{sequence}"),
                tx_time,
                previous,
                vec![body],
            )?;
            batch.merkle_nodes.extend(self.frontier.push(&block.hash));
            batch.blocks.push(encoded);
            batch.revisions.push(RevisionRef {
                key: key.clone(),
                version,
                sequence,
            });
            let new_head = AdHead {
                version,
                sequence,
                deleted: data.is_none(),
            };
            match batch.heads.iter_mut().find(|h| h.key == key) {
                Some(h) => h.new_head = new_head,
                None => batch.heads.push(HeadUpdate {
                    key: key.clone(),
                    expected_version: before,
                    new_head,
                }),
            }
            self.heads.insert(key, version);
            self.tip = Some((sequence, block.hash));
            blocks.push(block);
        }
        Ok((batch, blocks))
    }

    /// The Merkle root so far.
    pub fn root(&self) -> Option<Hash> {
        self.frontier.root()
    }
}

/// An ad with a given key, built from [`draft`].
pub fn sample_ad(key: &AdKey, title: &str) -> Ad {
    draft(title, Some("10"), "cars", &["red"]).into_ad(&key.publisher_id, &key.ad_id)
}

/// Ads `1..=count` of `publisher` as stored states: every `live_every`-th is live
/// (version 0), the others are tombstones (version 1). A publisher whose deleted ads
/// outnumber its live ones, for the tests of lists that must skip tombstones.
pub fn mostly_deleted_ads(publisher: &str, count: u32, live_every: u32) -> Vec<AdState> {
    (1..=count)
        .map(|n| {
            let key = AdKey::new(publisher, ad_id(n));
            let live = n % live_every == 0;
            AdState {
                ad: live.then(|| sample_ad(&key, &format!("ad {n}"))),
                version: u64::from(!live),
                sequence: u64::from(n),
                updated_at: DateTime::UNIX_EPOCH,
                key,
            }
        })
        .collect()
}

/// A ULID-shaped ad id numbered `n`, for hand-built batches.
pub fn ad_id(n: u32) -> String {
    ulid::Ulid::from_parts(1_600_000_000_000 + u64::from(n), u128::from(n)).to_string()
}

/// Every stored block, in order, by paging through `read_blocks`.
pub async fn all_blocks(journal: &dyn Journal) -> Result<Vec<EncodedBlock>> {
    let mut out = Vec::new();
    loop {
        let page = journal.read_blocks(out.len() as u64, 97).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// Every revision in the journal, in order.
pub async fn all_revisions(journal: &dyn Journal) -> Result<Vec<Revision>> {
    let mut out = Vec::new();
    for stored in all_blocks(journal).await? {
        out.extend(block::open(&stored)?.revisions);
    }
    Ok(out)
}

/// Every live ad of the listed publishers, via the state store's paging.
pub async fn live_ads(state: &dyn StateStore, publishers: &[&str]) -> Result<BTreeMap<AdKey, Ad>> {
    let mut out = BTreeMap::new();
    for publisher in publishers {
        let mut after: Option<String> = None;
        loop {
            let page = state.list(publisher, after.as_deref(), 3).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.ad_id.clone());
            for s in page {
                if let Some(ad) = s.ad {
                    out.insert(s.key, ad);
                }
            }
        }
    }
    Ok(out)
}

/// A journal that counts `append` and `read_blocks` calls and forwards everything to the
/// real one: lets the suite observe group commit on a real backend, and tests see when a
/// projector reads.
#[derive(Debug)]
pub struct CountingJournal {
    inner: std::sync::Arc<dyn Journal>,
    appends: std::sync::atomic::AtomicUsize,
    reads: std::sync::atomic::AtomicUsize,
}

impl CountingJournal {
    /// Wraps a journal.
    pub fn new(inner: std::sync::Arc<dyn Journal>) -> Self {
        CountingJournal {
            inner,
            appends: std::sync::atomic::AtomicUsize::new(0),
            reads: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// How many `read_blocks` calls were made.
    pub fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many appends were attempted.
    pub fn appends(&self) -> usize {
        self.appends.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Journal for CountingJournal {
    async fn append(&self, batch: crate::ports::AppendBatch) -> Result<()> {
        self.appends
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A durable append takes time (an fsync, a round trip); an instant one lets a busy
        // scheduler run each of many concurrent writers alone, and then nothing shows
        // whether the committer would batch them (the memory conformance run's group
        // commit test failed once that way on a loaded machine).
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        self.inner.append(batch).await
    }
    async fn last_sequence(&self) -> Result<Option<u64>> {
        self.inner.last_sequence().await
    }
    async fn read_blocks(&self, from: u64, max: usize) -> Result<Vec<EncodedBlock>> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_blocks(from, max).await
    }
    async fn ad_head(&self, key: &AdKey) -> Result<Option<AdHead>> {
        self.inner.ad_head(key).await
    }
    async fn ad_revisions(&self, key: &AdKey) -> Result<Vec<RevisionRef>> {
        self.inner.ad_revisions(key).await
    }
    async fn idempotency(
        &self,
        publisher_id: &str,
        key: &str,
    ) -> Result<Option<crate::ports::IdempotencyRecord>> {
        self.inner.idempotency(publisher_id, key).await
    }
    async fn merkle_nodes(&self, ids: &[(u8, u64)]) -> Result<Vec<Option<Hash>>> {
        self.inner.merkle_nodes(ids).await
    }
    fn max_blocks_per_append(&self) -> usize {
        self.inner.max_blocks_per_append()
    }
    fn max_bytes_per_append(&self) -> usize {
        self.inner.max_bytes_per_append()
    }
}
