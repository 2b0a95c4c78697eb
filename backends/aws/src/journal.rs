//! The journal in DynamoDB: one table, appended to by one conditional
//! `TransactWriteItems` per batch.
//!
//! The item layout is in [`keys`]; how a batch becomes a transaction, and a refused
//! transaction becomes `Conflict`, is in [`transaction`].
//!
//! # Concurrency
//!
//! Several processes may append to one journal. Every append is conditioned on the tip
//! item (and on each ad's head), so of two appends planned against the same tip exactly
//! one commits and the other gets `Conflict`, writes nothing, and the engine's committer
//! re-plans it against the new tip. Every read is strongly consistent, so a reader never
//! sees the tip ahead of its blocks: a transaction becomes visible whole.
//!
//! # Durability
//!
//! DynamoDB acknowledges a transaction once it is stored durably across several
//! availability zones, which covers the port's crash and power-loss requirement.

mod keys;
mod transaction;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use adledger_engine::block::EncodedBlock;
use adledger_engine::ports::{AdHead, AppendBatch, IdempotencyRecord, Journal, RevisionRef};
use adledger_engine::{AdKey, Hash, Result, VersionExpectation};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::KeysAndAttributes;

use self::keys::{PK, SK};
pub use self::transaction::MAX_BLOCKS_PER_APPEND;
use crate::attributes::{
    Item, get_bool, get_bytes, get_opt_u64, get_str, get_u64, get_u64_list, n, s,
};
use crate::error::{AwsError, corrupt, request};
use crate::tables::{self, TableSpec};

/// Keys per BatchGetItem request (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;
/// Rounds of retrying keys DynamoDB left unprocessed (throttling) before giving up.
const UNPROCESSED_RETRIES: u32 = 10;

/// The key of the item that stores block `sequence` in a journal table, for tools that
/// work on the table directly (the layout is in `journal/keys.rs`); the block's bytes are
/// its [`BLOCK_BYTES_ATTRIBUTE`].
pub fn block_item_key(sequence: u64) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    HashMap::from([
        (PK.to_string(), s(keys::block_pk(sequence))),
        (SK.to_string(), n(sequence)),
    ])
}

/// The attribute of a block item holding the block's stored bytes (its frame).
pub const BLOCK_BYTES_ATTRIBUTE: &str = keys::BLOCK_BYTES;

/// The hash-chained journal in a DynamoDB table.
///
/// Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct DynamoJournal {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl std::fmt::Debug for DynamoJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoJournal")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoJournal {
    /// Opens the journal in `table`, which must exist (see [`tables::create`]).
    ///
    /// Fails with an error naming the table if it does not exist, has other keys, or
    /// holds a journal in a format this build does not read.
    pub async fn open(client: aws_sdk_dynamodb::Client, table: &str) -> Result<DynamoJournal> {
        tables::require(&client, &TableSpec::journal(table)).await?;
        let journal = DynamoJournal {
            client,
            table: table.to_string(),
        };
        if let Some(tip) = journal.tip_item().await? {
            let format = get_opt_u64(&tip, keys::TIP_FORMAT, &|| "journal tip".into())?;
            if format != Some(keys::FORMAT_VERSION) {
                return Err(corrupt(format!(
                    "journal table {table} is in format {format:?}; this build reads format {}",
                    keys::FORMAT_VERSION
                ))
                .into());
            }
        }
        Ok(journal)
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn request_error<E, R>(
        &self,
        operation: &'static str,
    ) -> impl FnOnce(aws_sdk_dynamodb::error::SdkError<E, R>) -> AwsError + '_
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
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

    async fn last(&self) -> Result<Option<u64>, AwsError> {
        match self.tip_item().await? {
            None => Ok(None),
            Some(item) => get_u64(&item, keys::TIP_SEQ, &|| "journal tip".into()).map(Some),
        }
    }

    async fn append_inner(&self, batch: &AppendBatch) -> Result<(), AwsError> {
        let planned = match transaction::plan(&self.table, batch) {
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
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(planned.items))
            .client_request_token(planned.token)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(transaction::refusal(&self.table, &planned.roles, e)),
        }
    }

    /// `Conflict` if the journal's tip or an ad's head is not what `batch` expects.
    async fn stale_expectation(&self, batch: &AppendBatch) -> Result<(), AwsError> {
        let expectation =
            |v: Option<u64>| v.map_or(VersionExpectation::Absent, VersionExpectation::Version);
        let last = self.last().await?;
        if last != batch.expected_last {
            return Err(AwsError::Conflict {
                expected: expectation(batch.expected_last),
                actual: expectation(last),
            });
        }
        for update in &batch.heads {
            let actual = self.ad_head_inner(&update.key).await?.map(|h| h.version);
            if actual != update.expected_version {
                return Err(AwsError::Conflict {
                    expected: expectation(update.expected_version),
                    actual: expectation(actual),
                });
            }
        }
        Ok(())
    }

    /// The block items of one partition with sequences in `from..=to`, in order.
    async fn query_blocks(&self, pk: String, from: u64, to: u64) -> Result<Vec<Item>, AwsError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        // Each page is at most 1 MB; the loop ends when DynamoDB says there is no more.
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                .projection_expression("#sk, #blk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#blk", keys::BLOCK_BYTES)
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":from", n(from))
                .expression_attribute_values(":to", n(to))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(self.request_error("Query"))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    async fn read_blocks_inner(
        &self,
        from: u64,
        max: usize,
    ) -> Result<Vec<EncodedBlock>, AwsError> {
        let Some(last) = self.last().await? else {
            return Ok(Vec::new());
        };
        if from > last || max == 0 {
            return Ok(Vec::new());
        }
        // Every sequence up to `last` must be there: a gap is a lost block, not the end.
        let wanted = u64::try_from(max).unwrap_or(u64::MAX).min(last - from + 1);
        let end = from + (wanted - 1);
        let mut blocks = Vec::with_capacity(usize::try_from(wanted).unwrap_or(0).min(4096));
        let mut next = from;
        while next <= end {
            let partition_end = (next / keys::BLOCKS_PER_PARTITION + 1)
                .saturating_mul(keys::BLOCKS_PER_PARTITION)
                .saturating_sub(1)
                .min(end);
            let items = self
                .query_blocks(keys::block_pk(next), next, partition_end)
                .await?;
            for item in items {
                let what = || format!("block item {next}");
                let sequence = get_u64(&item, SK, &what)?;
                if sequence != next {
                    return Err(AwsError::MissingBlock { sequence: next });
                }
                let bytes = get_bytes(&item, keys::BLOCK_BYTES, &what)?;
                blocks.push(EncodedBlock {
                    sequence,
                    bytes: bytes.to_vec(),
                });
                next += 1;
            }
            if next <= partition_end {
                return Err(AwsError::MissingBlock { sequence: next });
            }
        }
        Ok(blocks)
    }

    /// Every chunk item of an ad, oldest first; `newest_only` reads just the last.
    async fn ad_chunks(&self, key: &AdKey, newest_only: bool) -> Result<Vec<Item>, AwsError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(keys::ad_pk(key)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if newest_only {
                query = query.scan_index_forward(false).limit(1);
            }
            let page = query.send().await.map_err(self.request_error("Query"))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() && !newest_only => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    async fn ad_head_inner(&self, key: &AdKey) -> Result<Option<AdHead>, AwsError> {
        let Some(item) = self.ad_chunks(key, true).await?.pop() else {
            return Ok(None);
        };
        let what = || format!("head of ad {} of publisher {}", key.ad_id, key.publisher_id);
        Ok(Some(AdHead {
            version: get_u64(&item, keys::HEAD_VERSION, &what)?,
            sequence: get_u64(&item, keys::HEAD_SEQUENCE, &what)?,
            deleted: get_bool(&item, keys::HEAD_DELETED, &what)?,
        }))
    }

    async fn ad_revisions_inner(&self, key: &AdKey) -> Result<Vec<RevisionRef>, AwsError> {
        let mut refs = Vec::new();
        for item in self.ad_chunks(key, false).await? {
            let what = || {
                format!(
                    "revisions of ad {} of publisher {}",
                    key.ad_id, key.publisher_id
                )
            };
            let chunk = get_u64(&item, SK, &what)?;
            let first = chunk.saturating_mul(keys::VERSIONS_PER_CHUNK);
            if first != refs.len() as u64 {
                return Err(corrupt(format!(
                    "{}: chunk {chunk} follows {} versions",
                    what(),
                    refs.len()
                )));
            }
            for (offset, sequence) in get_u64_list(&item, keys::REFS, &what)?
                .into_iter()
                .enumerate()
            {
                refs.push(RevisionRef {
                    key: key.clone(),
                    version: first + offset as u64,
                    sequence,
                });
            }
        }
        Ok(refs)
    }

    async fn idempotency_inner(
        &self,
        publisher_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, AwsError> {
        let Some(item) = self
            .get_item(keys::idempotency_pk(publisher_id, key), 0)
            .await?
        else {
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
        // Which attributes of which block items to read.
        let mut wanted: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for &(level, index) in ids {
            if let Some(block) = keys::merkle_block(level, index) {
                wanted.entry(block).or_default().push(level);
            }
        }
        let mut found: HashMap<(u8, u64), Hash> = HashMap::new();
        let blocks: Vec<(u64, Vec<u8>)> = wanted.into_iter().collect();
        for group in blocks.chunks(BATCH_GET_KEYS) {
            let mut levels: Vec<u8> = group.iter().flat_map(|(_, l)| l.iter().copied()).collect();
            levels.sort_unstable();
            levels.dedup();
            for item in self.batch_get_blocks(group, &levels).await? {
                let what = || "Merkle node item".to_string();
                let sequence = get_u64(&item, SK, &what)?;
                for &level in &levels {
                    let attribute = keys::merkle_attribute(level);
                    if !item.contains_key(&attribute) {
                        continue;
                    }
                    let bytes = get_bytes(&item, &attribute, &what)?;
                    let hash = Hash::from_slice(bytes).ok_or_else(|| {
                        corrupt(format!(
                            "Merkle node at level {level} of block {sequence}: not 32 bytes"
                        ))
                    })?;
                    let leaves = 1u64 << level;
                    found.insert((level, (sequence + 1) / leaves - 1), hash);
                }
            }
        }
        Ok(ids.iter().map(|id| found.get(id).copied()).collect())
    }

    /// Reads the given block items (sort key and the Merkle attributes of `levels`).
    async fn batch_get_blocks(
        &self,
        blocks: &[(u64, Vec<u8>)],
        levels: &[u8],
    ) -> Result<Vec<Item>, AwsError> {
        let mut names = HashMap::from([("#sk".to_string(), SK.to_string())]);
        let mut projection = vec!["#sk".to_string()];
        for level in levels {
            let placeholder = format!("#m{level}");
            names.insert(placeholder.clone(), keys::merkle_attribute(*level));
            projection.push(placeholder);
        }
        let keys: Vec<Item> = blocks
            .iter()
            .map(|(sequence, _)| {
                HashMap::from([
                    (PK.to_string(), s(keys::block_pk(*sequence))),
                    (SK.to_string(), n(*sequence)),
                ])
            })
            .collect();
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .projection_expression(projection.join(", "))
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
                    return Err(AwsError::Request {
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
}
