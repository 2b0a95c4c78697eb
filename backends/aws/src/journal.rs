//! The journal in DynamoDB: one table, appended to by one conditional
//! `TransactWriteItems` per batch that carries the tip and a few page items holding
//! hundreds of blocks.
//!
//! The item layout is in [`keys`]; how a batch becomes a transaction, and a refused
//! transaction becomes `Conflict`, is in [`transaction`]; pages in [`pages`]; the derived
//! ad index (heads, histories, idempotency records) in [`index`].
//!
//! # Concurrency
//!
//! Several processes may append to one journal. Every append is conditioned on the tip
//! item, so of two appends planned against the same tip exactly one commits and the other
//! gets `Conflict`, writes nothing, and the engine's committer re-plans it against the
//! new tip. The per-ad expectations (each head's version, each idempotency key's absence)
//! are checked by the appender before it sends the transaction, against the ad index
//! completed through `expected_last`: a transaction conditioned on that tip cannot commit
//! if anyone moved the tip (hence any head) after the check. Every read is strongly
//! consistent, so a reader never sees the tip ahead of its pages: a transaction becomes
//! visible whole.
//!
//! # Durability
//!
//! DynamoDB acknowledges a transaction once it is stored durably across several
//! availability zones, which covers the port's crash and power-loss requirement. The ad
//! index is written after the transaction; what a crash leaves unwritten is completed
//! from the pages by the next reader or writer (see [`index`]).

mod index;
mod keys;
mod pages;
mod transaction;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use adledger_engine::block::EncodedBlock;
use adledger_engine::ports::{AdHead, AppendBatch, IdempotencyRecord, Journal, RevisionRef};
use adledger_engine::{AdKey, Hash, Result, VersionExpectation};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use futures::StreamExt;

use self::keys::{PK, SK};
use self::pages::StoredPage;
pub use self::transaction::{MAX_BLOCKS_PER_APPEND, MAX_BYTES_PER_APPEND};
use crate::attributes::{Item, get_bool, get_bytes, get_opt_u64, get_str, get_u64, n, s};
use crate::error::{AwsError, corrupt, request};
use crate::tables::{self, TableSpec};

/// Keys per BatchGetItem request (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;
/// Rounds of retrying keys DynamoDB left unprocessed (throttling) before giving up.
const UNPROCESSED_RETRIES: u32 = 10;
/// Blocks read per step while completing the ad index from the pages.
const INDEX_READ_BLOCKS: usize = 1024;
/// Page lookups (Merkle nodes) in flight at once.
const PAGE_READS: usize = 16;
/// How long after its index is written an append waits before marking the tip's `idx`
/// with an `UpdateItem`: an append of this handle within it carries the mark in its own
/// tip Put, so a stream of appends pays no `UpdateItem` each. Meanwhile another process
/// that needs the index completes it from the pages (as during the index write).
pub const TIP_MARK_LINGER: Duration = Duration::from_millis(250);

/// The attribute of a page item holding its blocks' frames (a list, block `first + i` at
/// index `i`), for tools that work on the table directly (the layout is in
/// `journal/keys.rs`).
pub const PAGE_BLOCKS_ATTRIBUTE: &str = keys::PAGE_BLOCKS;

/// Where block `sequence` is stored: the key of its page item and its index in the page's
/// [`PAGE_BLOCKS_ATTRIBUTE`] list, or `None` if no page holds it. For tools that work on
/// the table directly (and the tamper tests).
pub async fn locate_block(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    sequence: u64,
) -> Result<Option<(HashMap<String, AttributeValue>, usize)>> {
    let journal = DynamoJournal::unchecked(client.clone(), table);
    let Some(page) = journal.page_holding(sequence).await? else {
        return Ok(None);
    };
    let index = usize::try_from(sequence - page.first).map_err(|_| corrupt("page too long"))?;
    let key = HashMap::from([
        (PK.to_string(), s(keys::page_pk(page.first))),
        (SK.to_string(), n(page.first)),
    ]);
    Ok(Some((key, index)))
}

/// The hash-chained journal in a DynamoDB table.
///
/// Cloning is cheap and shares the client and what is known of the ad index.
#[derive(Clone)]
pub struct DynamoJournal {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// One past the highest sequence through which the ad index is known complete (0:
    /// nothing known). Only grows.
    indexed: Arc<AtomicU64>,
    /// One past the highest sequence this handle knows committed: its own appends and the
    /// tips it read (0: nothing known). Only grows. Blocks below it are read without
    /// reading the tip first (see [`Journal::read_blocks`]'s contract for shared journals).
    known: Arc<AtomicU64>,
    /// The index write of the last append, still running: the append was acknowledged
    /// once its transaction committed, and whoever needs the index next waits for it.
    pending: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for DynamoJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoJournal")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// What the tip item says.
struct TipState {
    last: u64,
    indexed: Option<u64>,
}

impl DynamoJournal {
    /// Opens the journal in `table`, which must exist (see [`tables::create`]).
    ///
    /// Fails with an error naming the table if it does not exist, has other keys, or
    /// holds a journal in a format this build does not read (format 1, one item per
    /// block, written before the page layout: move it by exporting it with the build that
    /// wrote it and importing the file into a new table).
    pub async fn open(client: aws_sdk_dynamodb::Client, table: &str) -> Result<DynamoJournal> {
        tables::require(&client, &TableSpec::journal(table)).await?;
        let journal = DynamoJournal::unchecked(client, table);
        if let Some(tip) = journal.tip_item().await? {
            let format = get_opt_u64(&tip, keys::TIP_FORMAT, &|| "journal tip".into())?;
            if format != Some(keys::FORMAT_VERSION) {
                return Err(corrupt(format!(
                    "journal table {table} is in format {}; this build reads format {} (blocks \
                     in pages). Move the journal: run `adledger export` with the adledger build \
                     that wrote it, then `adledger import` the file with this build into a new \
                     table (another table prefix)",
                    format.map_or_else(|| "unknown".to_string(), |f| f.to_string()),
                    keys::FORMAT_VERSION
                ))
                .into());
            }
        }
        Ok(journal)
    }

    fn unchecked(client: aws_sdk_dynamodb::Client, table: &str) -> DynamoJournal {
        DynamoJournal {
            client,
            table: table.to_string(),
            indexed: Arc::new(AtomicU64::new(0)),
            known: Arc::new(AtomicU64::new(0)),
            pending: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn request_error<E>(
        &self,
        operation: &'static str,
    ) -> impl FnOnce(
        aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> AwsError
    + '_
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        move |e| request(operation, &self.table, e)
    }

    async fn get_item(&self, pk: String, sk: u64) -> Result<Option<Item>, AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, n(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(self.request_error("GetItem"))?;
        Ok(output.item)
    }

    async fn tip_item(&self) -> Result<Option<Item>, AwsError> {
        self.get_item(keys::TIP_PK.to_string(), 0).await
    }

    async fn tip(&self) -> Result<Option<TipState>, AwsError> {
        let Some(item) = self.tip_item().await? else {
            return Ok(None);
        };
        let what = || "journal tip".to_string();
        let tip = TipState {
            last: get_u64(&item, keys::TIP_SEQ, &what)?,
            indexed: get_opt_u64(&item, keys::TIP_INDEXED, &what)?,
        };
        if let Some(indexed) = tip.indexed {
            self.note_indexed(indexed);
        }
        self.note_known(tip.last);
        Ok(Some(tip))
    }

    async fn last(&self) -> Result<Option<u64>, AwsError> {
        Ok(self.tip().await?.map(|t| t.last))
    }

    /// Records that the ad index is complete through `sequence`.
    fn note_indexed(&self, sequence: u64) {
        self.indexed
            .fetch_max(sequence.saturating_add(1), Ordering::AcqRel);
    }

    /// Records that block `sequence` is committed (this handle appended it or read a tip
    /// at or past it).
    fn note_known(&self, sequence: u64) {
        self.known
            .fetch_max(sequence.saturating_add(1), Ordering::AcqRel);
    }

    /// The highest sequence this handle knows committed.
    fn known_last(&self) -> Option<u64> {
        self.known.load(Ordering::Acquire).checked_sub(1)
    }

    /// The highest sequence through which the ad index is known complete.
    fn indexed_through(&self) -> Option<u64> {
        self.indexed.load(Ordering::Acquire).checked_sub(1)
    }

    fn index_covers(&self, sequence: u64) -> bool {
        self.indexed.load(Ordering::Acquire) > sequence
    }

    /// Makes the ad index complete through `through` (an appender: its `expected_last`),
    /// or through the tip as read now (`None`: a reader). Returns whether anything had
    /// to be written.
    async fn complete_index(&self, through: Option<u64>) -> Result<bool, AwsError> {
        self.await_pending_index().await;
        if through.is_some_and(|t| self.index_covers(t)) {
            return Ok(false);
        }
        let Some(tip) = self.tip().await? else {
            return Ok(false);
        };
        if self.index_covers(tip.last) {
            return Ok(false);
        }
        let mut next = self.indexed_through().map_or(0, |i| i + 1);
        tracing::info!(
            table = %self.table,
            from = next,
            through = tip.last,
            "completing the journal's ad index from its pages"
        );
        while next <= tip.last {
            let blocks = self
                .read_blocks_through(next, INDEX_READ_BLOCKS, tip.last)
                .await?;
            let Some(end) = blocks.last().map(|b| b.sequence) else {
                return Err(AwsError::MissingBlock { sequence: next });
            };
            index::write(&self.client, &self.table, index::from_blocks(&blocks)?).await?;
            self.note_indexed(end);
            next = end + 1;
        }
        self.publish_indexed(tip.last).await;
        Ok(true)
    }

    /// Records in the tip that the index is complete through `last`, if the tip is still
    /// there, so other processes need not complete it again. Best effort: a failure (the
    /// tip moved, a race with an append) only leaves them that work.
    async fn publish_indexed(&self, last: u64) {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(keys::TIP_PK))
            .key(SK, n(0))
            .update_expression("SET #idx = :last")
            .condition_expression("#seq = :last")
            .expression_attribute_names("#idx", keys::TIP_INDEXED)
            .expression_attribute_names("#seq", keys::TIP_SEQ)
            .expression_attribute_values(":last", n(last))
            .send()
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %request("UpdateItem", &self.table, e), "tip's index mark not moved");
        }
    }

    async fn append_inner(&self, batch: &AppendBatch) -> Result<(), AwsError> {
        let planned = match transaction::plan(&self.table, batch, self.indexed_through()) {
            Ok(planned) => planned,
            Err(AwsError::BadBatch(detail)) => {
                // A batch planned against another tip (or another head) may also look
                // malformed relative to the state it assumed; its writer gets the
                // `Conflict` the contract promises, and re-plans.
                self.stale_expectation(batch).await?;
                return Err(AwsError::BadBatch(detail));
            }
            Err(e) => return Err(e),
        };
        if batch.blocks.is_empty() {
            // Nothing to write: only the expectations are checked.
            self.stale_expectation(batch).await?;
            return Ok(());
        }
        let indexed = self.indexed_through();
        self.check_expectations(batch).await?;
        // The checks waited for the previous append's index: the tip can say so.
        let planned = if self.indexed_through() == indexed {
            planned
        } else {
            transaction::plan(&self.table, batch, self.indexed_through())?
        };
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(planned.items))
            .client_request_token(planned.token)
            .send()
            .await;
        if let Err(e) = result {
            return Err(transaction::refusal(&self.table, &planned.roles, e));
        }
        // Committed: the append is acknowledged now. The index follows in the background
        // (whoever needs it next waits for it); if writing it fails, the next reader or
        // writer completes it from the pages.
        let Some(last) = batch.blocks.last().map(|b| b.sequence) else {
            return Ok(());
        };
        self.note_known(last);
        let items = index::from_batch(batch);
        let journal = self.clone();
        let task = tokio::spawn(async move {
            match index::write(&journal.client, &journal.table, items).await {
                Ok(()) => {
                    journal.note_indexed(last);
                    // Not awaited by the next append: that one carries the mark itself.
                    tokio::spawn(async move {
                        tokio::time::sleep(TIP_MARK_LINGER).await;
                        // Past `last`, the tip moved: by an append of this handle, whose
                        // tip carries the mark, or by another's, where the condition would fail.
                        if journal.known_last() == Some(last) {
                            journal.publish_indexed(last).await;
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, last, "ad index not written after a commit; it will be completed from the pages");
                }
            }
        });
        *self.pending.lock().await = Some(task);
        Ok(())
    }

    /// Waits for the index write of the last append, if it is still running.
    async fn await_pending_index(&self) {
        let mut pending = self.pending.lock().await;
        if let Some(task) = pending.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "the ad index write of the last append did not finish");
        }
    }

    /// `Conflict` unless every head update's expected version, and the absence of every
    /// idempotency key, hold in the journal as of `batch.expected_last`.
    ///
    /// The index is completed through `expected_last` first, then read (an ad's expected
    /// version must exist and the next must not; a create's version 0 must not exist). An
    /// index entry beyond `expected_last` means the tip moved: `Conflict` too, which the
    /// transaction would have given anyway.
    async fn check_expectations(&self, batch: &AppendBatch) -> Result<(), AwsError> {
        self.complete_index(batch.expected_last).await?;
        let mut wanted: Vec<(String, u64)> = Vec::new();
        for update in &batch.heads {
            let pk = keys::ad_pk(&update.key);
            match update.expected_version {
                None => wanted.push((pk, 0)),
                Some(v) => {
                    wanted.push((pk.clone(), v));
                    wanted.push((pk, v + 1));
                }
            }
        }
        for record in &batch.idempotency {
            wanted.push((keys::idempotency_pk(&record.publisher_id, &record.key), 0));
        }
        let found: HashSet<(String, u64)> = self.existing(&wanted).await?;
        for update in &batch.heads {
            let pk = keys::ad_pk(&update.key);
            let holds = match update.expected_version {
                None => !found.contains(&(pk, 0)),
                Some(v) => found.contains(&(pk.clone(), v)) && !found.contains(&(pk, v + 1)),
            };
            if !holds {
                let actual = self.index_head(&update.key).await?.map(|h| h.version);
                return Err(AwsError::Conflict {
                    expected: expectation(update.expected_version),
                    actual: expectation(actual),
                });
            }
        }
        if batch
            .idempotency
            .iter()
            .any(|r| found.contains(&(keys::idempotency_pk(&r.publisher_id, &r.key), 0)))
        {
            // The key was used by a create this writer did not know about: re-planning
            // finds the earlier outcome.
            return Err(AwsError::Conflict {
                expected: VersionExpectation::Absent,
                actual: VersionExpectation::Version(0),
            });
        }
        Ok(())
    }

    /// Which of `keys` (partition, sort) exist, read strongly consistently.
    async fn existing(&self, keys: &[(String, u64)]) -> Result<HashSet<(String, u64)>, AwsError> {
        let mut distinct: Vec<&(String, u64)> = keys.iter().collect();
        distinct.sort();
        distinct.dedup();
        let groups: Vec<Vec<Item>> = distinct
            .chunks(BATCH_GET_KEYS)
            .map(|group| {
                group
                    .iter()
                    .map(|(pk, sk)| {
                        HashMap::from([(PK.to_string(), s(pk.clone())), (SK.to_string(), n(*sk))])
                    })
                    .collect()
            })
            .collect();
        let mut reads = futures::stream::iter(groups)
            .map(|group| self.batch_get(group, "#pk, #sk"))
            .buffer_unordered(4);
        let mut found = HashSet::new();
        while let Some(items) = reads.next().await {
            for item in items? {
                let what = || "ad index item".to_string();
                let pk = get_str(&item, PK, &what)?.to_string();
                found.insert((pk, get_u64(&item, SK, &what)?));
            }
        }
        Ok(found)
    }

    /// `Conflict` if the journal's tip or an ad's head is not what `batch` expects.
    async fn stale_expectation(&self, batch: &AppendBatch) -> Result<(), AwsError> {
        let last = self.last().await?;
        if last != batch.expected_last {
            return Err(AwsError::Conflict {
                expected: expectation(batch.expected_last),
                actual: expectation(last),
            });
        }
        self.complete_index(last).await?;
        for update in &batch.heads {
            let actual = self.index_head(&update.key).await?.map(|h| h.version);
            if actual != update.expected_version {
                return Err(AwsError::Conflict {
                    expected: expectation(update.expected_version),
                    actual: expectation(actual),
                });
            }
        }
        Ok(())
    }

    /// The page holding block `sequence`: in its partition, the page with the greatest
    /// first sequence not after it.
    async fn page_holding(&self, sequence: u64) -> Result<Option<StoredPage>, AwsError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #sk <= :seq")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(keys::page_pk(sequence)))
            .expression_attribute_values(":seq", n(sequence))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(self.request_error("Query"))?;
        match output.items.unwrap_or_default().pop() {
            Some(item) => {
                let page = StoredPage::parse(item)?;
                Ok(page.covers(sequence).then_some(page))
            }
            None => Ok(None),
        }
    }

    /// Pages of one partition whose first sequences lie in `from..=to`, in order, at most
    /// `limit` of them.
    async fn pages_from(
        &self,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<StoredPage>, AwsError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(keys::page_pk(from)))
            .expression_attribute_values(":from", n(from))
            .expression_attribute_values(":to", n(to))
            .limit(i32::try_from(limit.clamp(1, 100)).unwrap_or(100))
            .consistent_read(true)
            .send()
            .await
            .map_err(self.request_error("Query"))?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(StoredPage::parse)
            .collect()
    }

    async fn read_blocks_inner(
        &self,
        from: u64,
        max: usize,
    ) -> Result<Vec<EncodedBlock>, AwsError> {
        // Below a tip this handle knows (its own append, or a tip it read), the blocks are
        // there: no need to read the tip again. At or past it, the tip says where the
        // journal ends now.
        let last = match self.known_last() {
            Some(known) if from <= known => known,
            _ => match self.last().await? {
                Some(last) => last,
                None => return Ok(Vec::new()),
            },
        };
        self.read_blocks_through(from, max, last).await
    }

    /// Up to `max` blocks from `from`, none after `last` (the tip as read by the caller).
    async fn read_blocks_through(
        &self,
        from: u64,
        max: usize,
        last: u64,
    ) -> Result<Vec<EncodedBlock>, AwsError> {
        if from > last || max == 0 {
            return Ok(Vec::new());
        }
        // Every sequence up to `last` must be there: a gap is a lost block, not the end.
        let wanted = u64::try_from(max).unwrap_or(u64::MAX).min(last - from + 1);
        let end = from + (wanted - 1);
        let mut blocks = Vec::with_capacity(usize::try_from(wanted).unwrap_or(0).min(4096));
        let mut next = from;
        let mut take = |page: &StoredPage, next: &mut u64| -> Result<(), AwsError> {
            while *next <= end && page.covers(*next) {
                let bytes = page
                    .frame(*next)
                    .ok_or(AwsError::MissingBlock { sequence: *next })?;
                blocks.push(EncodedBlock {
                    sequence: *next,
                    bytes: bytes.to_vec(),
                });
                *next += 1;
            }
            Ok(())
        };
        // The page holding `from` may start before it.
        let first = self
            .page_holding(from)
            .await?
            .ok_or(AwsError::MissingBlock { sequence: from })?;
        take(&first, &mut next)?;
        // The following pages start exactly where the previous one ended.
        while next <= end {
            let partition_end = (next / keys::BLOCKS_PER_PARTITION + 1)
                .saturating_mul(keys::BLOCKS_PER_PARTITION)
                .saturating_sub(1)
                .min(end);
            let remaining = usize::try_from(partition_end - next + 1).unwrap_or(usize::MAX);
            let pages = self.pages_from(next, partition_end, remaining).await?;
            if pages.is_empty() {
                return Err(AwsError::MissingBlock { sequence: next });
            }
            for page in &pages {
                if page.first != next {
                    return Err(AwsError::MissingBlock { sequence: next });
                }
                take(page, &mut next)?;
                if next <= page.last && next <= end {
                    return Err(AwsError::MissingBlock { sequence: next });
                }
            }
        }
        Ok(blocks)
    }

    /// The newest revision item of an ad, from the index as it stands.
    async fn index_head(&self, key: &AdKey) -> Result<Option<AdHead>, AwsError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(keys::ad_pk(key)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(self.request_error("Query"))?;
        let Some(item) = output.items.unwrap_or_default().pop() else {
            return Ok(None);
        };
        let what = || format!("head of ad {} of publisher {}", key.ad_id, key.publisher_id);
        Ok(Some(AdHead {
            version: get_u64(&item, SK, &what)?,
            sequence: get_u64(&item, keys::REVISION_SEQUENCE, &what)?,
            deleted: get_bool(&item, keys::REVISION_DELETED, &what)?,
        }))
    }

    async fn ad_head_inner(&self, key: &AdKey) -> Result<Option<AdHead>, AwsError> {
        self.complete_index(None).await?;
        self.index_head(key).await
    }

    async fn ad_revisions_inner(&self, key: &AdKey) -> Result<Vec<RevisionRef>, AwsError> {
        self.complete_index(None).await?;
        let what = || {
            format!(
                "revisions of ad {} of publisher {}",
                key.ad_id, key.publisher_id
            )
        };
        let mut refs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(keys::ad_pk(key)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(self.request_error("Query"))?;
            for item in page.items.unwrap_or_default() {
                let version = get_u64(&item, SK, &what)?;
                if version != refs.len() as u64 {
                    return Err(corrupt(format!(
                        "{}: version {version} follows {} versions",
                        what(),
                        refs.len()
                    )));
                }
                refs.push(RevisionRef {
                    key: key.clone(),
                    version,
                    sequence: get_u64(&item, keys::REVISION_SEQUENCE, &what)?,
                });
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(refs),
            }
        }
    }

    async fn idempotency_item(
        &self,
        publisher_id: &str,
        key: &str,
    ) -> Result<Option<Item>, AwsError> {
        self.get_item(keys::idempotency_pk(publisher_id, key), 0)
            .await
    }

    async fn idempotency_inner(
        &self,
        publisher_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, AwsError> {
        // A stored record never changes, so one found needs no completion; a missing one
        // may only be missing from an incomplete index (this process's last append's
        // index write may still be running: wait for it first).
        self.await_pending_index().await;
        let mut item = self.idempotency_item(publisher_id, key).await?;
        if item.is_none() && self.complete_index(None).await? {
            item = self.idempotency_item(publisher_id, key).await?;
        }
        let Some(item) = item else {
            return Ok(None);
        };
        let what = || format!("idempotency record ({publisher_id:?}, {key:?})");
        if get_str(&item, keys::IDEM_PUBLISHER, &what)? != publisher_id
            || get_str(&item, keys::IDEM_KEY, &what)? != key
        {
            return Err(corrupt(format!(
                "{}: the stored record is for another key",
                what()
            )));
        }
        let hash = get_bytes(&item, keys::IDEM_HASH, &what)?;
        Ok(Some(IdempotencyRecord {
            publisher_id: publisher_id.to_string(),
            key: key.to_string(),
            request_hash: Hash::from_slice(hash)
                .ok_or_else(|| corrupt(format!("{}: the request hash is not 32 bytes", what())))?,
            ad_id: get_str(&item, keys::IDEM_AD, &what)?.to_string(),
            sequence: get_u64(&item, keys::IDEM_SEQUENCE, &what)?,
        }))
    }

    async fn merkle_nodes_inner(&self, ids: &[(u8, u64)]) -> Result<Vec<Option<Hash>>, AwsError> {
        // The blocks whose pages hold the nodes; one page read may answer several.
        let owners: Vec<u64> = ids
            .iter()
            .filter_map(|&(level, index)| keys::merkle_block(level, index))
            .collect::<std::collections::BTreeSet<u64>>()
            .into_iter()
            .collect();
        let mut found: HashMap<(u8, u64), Hash> = HashMap::new();
        let mut read: Vec<(u64, u64)> = Vec::new();
        let mut pending = owners.as_slice();
        while !pending.is_empty() {
            // Read the pages of a round of owners not covered by a page already read.
            let round: Vec<u64> = pending
                .iter()
                .copied()
                .filter(|o| !read.iter().any(|(f, l)| (f..=l).contains(&o)))
                .take(PAGE_READS)
                .collect();
            pending = &pending[pending.len().min(
                pending
                    .iter()
                    .position(|o| round.last().is_some_and(|r| o > r))
                    .unwrap_or(pending.len()),
            )..];
            if round.is_empty() {
                continue;
            }
            let pages =
                futures::future::join_all(round.iter().map(|&o| self.page_holding(o))).await;
            for page in pages {
                let Some(page) = page? else { continue };
                for (id, hash) in page.merkle_nodes()? {
                    found.insert(id, hash);
                }
                read.push((page.first, page.last));
            }
        }
        Ok(ids.iter().map(|id| found.get(id).copied()).collect())
    }

    /// Reads the given keys with `projection` (strongly consistent), retrying keys left
    /// unprocessed.
    async fn batch_get(&self, keys: Vec<Item>, projection: &str) -> Result<Vec<Item>, AwsError> {
        let names = HashMap::from([
            ("#pk".to_string(), PK.to_string()),
            ("#sk".to_string(), SK.to_string()),
        ]);
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .projection_expression(projection)
                .set_expression_attribute_names(Some(names))
                .build()
                .map_err(|e| AwsError::BadBatch(e.to_string()))?,
        );
        let mut items = Vec::new();
        let mut round = 0;
        while let Some(keys_and_attributes) = request.take() {
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys_and_attributes)
                .send()
                .await
                .map_err(self.request_error("BatchGetItem"))?;
            if let Some(mut responses) = output.responses {
                items.extend(responses.remove(&self.table).unwrap_or_default());
            }
            request = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys().is_empty());
            if request.is_some() {
                round += 1;
                if round > UNPROCESSED_RETRIES {
                    return Err(AwsError::Transient {
                        operation: "BatchGetItem",
                        table: self.table.clone(),
                        message: "keys still unprocessed after retries (throttled)".into(),
                        source: "unprocessed keys".into(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20 << round.min(6))).await;
            }
        }
        Ok(items)
    }
}

fn expectation(version: Option<u64>) -> VersionExpectation {
    version.map_or(VersionExpectation::Absent, VersionExpectation::Version)
}

#[async_trait]
impl Journal for DynamoJournal {
    async fn append(&self, batch: AppendBatch) -> Result<()> {
        self.append_inner(&batch).await?;
        if let Some(last) = batch.blocks.last() {
            crate::metrics::observe_journal_tip(last.sequence + 1);
        }
        Ok(())
    }

    async fn last_sequence(&self) -> Result<Option<u64>> {
        let last = self.last().await?;
        crate::metrics::observe_journal_tip(last.map_or(0, |l| l + 1));
        Ok(last)
    }

    async fn read_blocks(&self, from: u64, max: usize) -> Result<Vec<EncodedBlock>> {
        self.read_blocks_inner(from, max).await.map_err(Into::into)
    }

    async fn ad_head(&self, key: &AdKey) -> Result<Option<AdHead>> {
        self.ad_head_inner(key).await.map_err(Into::into)
    }

    async fn ad_revisions(&self, key: &AdKey) -> Result<Vec<RevisionRef>> {
        self.ad_revisions_inner(key).await.map_err(Into::into)
    }

    async fn idempotency(
        &self,
        publisher_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        self.idempotency_inner(publisher_id, key)
            .await
            .map_err(Into::into)
    }

    async fn merkle_nodes(&self, ids: &[(u8, u64)]) -> Result<Vec<Option<Hash>>> {
        self.merkle_nodes_inner(ids).await.map_err(Into::into)
    }

    fn max_blocks_per_append(&self) -> usize {
        MAX_BLOCKS_PER_APPEND
    }

    fn max_bytes_per_append(&self) -> usize {
        MAX_BYTES_PER_APPEND
    }
}
