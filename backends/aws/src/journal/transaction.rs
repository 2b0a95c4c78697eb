//! Turning an [`AppendBatch`] into one `TransactWriteItems` request, and its refusal into
//! the engine's `Conflict`.
//!
//! # Actions
//!
//! | action | condition |
//! |---|---|
//! | Put the tip | `seq = expected_last` (absent for an empty journal) |
//! | Put each block (with the Merkle nodes it completes) | the block does not exist |
//! | Update the ad's current chunk, per ad (head + refs) | `ver = expected version` (the ad does not exist, for a create) |
//! | Put each further chunk the refs spill into | the chunk does not exist |
//! | Put each idempotency record | the record does not exist |
//!
//! One block (one command, as the engine seals them) costs at most three actions: the
//! block, its ad's chunk (a second chunk only when an update crosses a 1024-version
//! boundary, and updates carry no idempotency record), and an idempotency record (creates
//! only). With the tip that is `1 + 3·33 = 100` for 33 blocks: see
//! [`MAX_BLOCKS_PER_APPEND`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use adledger_engine::ports::{AppendBatch, HeadUpdate, RevisionRef};
use adledger_engine::{AdKey, VersionExpectation};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use sha2::{Digest, Sha256};

use super::keys::{self, PK, SK};
use crate::attributes::{Item, b, get_opt_u64, item_size, n, s};
use crate::error::AwsError;

/// DynamoDB's limit of actions in one transaction.
pub(crate) const MAX_ACTIONS: usize = 100;
/// DynamoDB's limit of the aggregate size of one transaction.
pub(crate) const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
/// DynamoDB's limit of one item's size.
pub(crate) const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Most actions one block can cost (see the module docs).
const ACTIONS_PER_BLOCK: usize = 3;
/// The most blocks the engine may put in one append: every batch of this many
/// one-revision blocks fits in one transaction.
pub const MAX_BLOCKS_PER_APPEND: usize = (MAX_ACTIONS - 1) / ACTIONS_PER_BLOCK;
/// The largest a chunk item can grow: 1024 refs of at most 22 bytes, plus the head.
const MAX_CHUNK_BYTES: usize = (keys::VERSIONS_PER_CHUNK as usize) * 22 + 512;

/// What an action in the transaction is for, to explain a cancellation.
#[derive(Debug, Clone)]
pub(super) enum Role {
    Tip { expected: Option<u64> },
    Block { sequence: u64 },
    Head { expected: Option<u64> },
    Idempotency,
}

/// A batch ready to send.
#[derive(Debug)]
pub(super) struct Transaction {
    pub items: Vec<TransactWriteItem>,
    pub roles: Vec<Role>,
    /// `ClientRequestToken`, unique to this call (see `token`).
    pub token: String,
}

fn expectation(version: Option<u64>) -> VersionExpectation {
    version.map_or(VersionExpectation::Absent, VersionExpectation::Version)
}

fn build_error(e: impl std::fmt::Display) -> AwsError {
    AwsError::BadBatch(format!("cannot build a DynamoDB request: {e}"))
}

fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A Put that must not overwrite anything.
fn put_new(table: &str, item: Item) -> Result<Put, AwsError> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#pk)")
        .set_expression_attribute_names(Some(names(&[("#pk", PK)])))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(build_error)
}

/// Sizes of what the transaction writes, checked against DynamoDB's limits.
#[derive(Default)]
struct Budget {
    total: usize,
}

impl Budget {
    fn add(&mut self, what: impl FnOnce() -> String, size: usize) -> Result<(), AwsError> {
        if size > MAX_ITEM_BYTES {
            return Err(AwsError::TooLarge(format!(
                "{} would be {size} bytes; a DynamoDB item holds at most {MAX_ITEM_BYTES}",
                what()
            )));
        }
        self.total += size;
        Ok(())
    }
}

/// Checks the batch and builds its transaction.
pub(super) fn plan(table: &str, batch: &AppendBatch) -> Result<Transaction, AwsError> {
    check_blocks(batch)?;
    let refs = refs_by_ad(batch)?;
    let mut items = Vec::new();
    let mut roles = Vec::new();
    let mut budget = Budget::default();

    // The tip.
    let tip_condition = match batch.expected_last {
        None => ("attribute_not_exists(#pk)", names(&[("#pk", PK)]), None),
        Some(last) => (
            "#seq = :expected",
            names(&[("#seq", keys::TIP_SEQ)]),
            Some(n(last)),
        ),
    };
    let (condition, tip_names, tip_value) = tip_condition;
    let action = match batch.blocks.last() {
        Some(last) => {
            let item: Item = HashMap::from([
                (PK.to_string(), s(keys::TIP_PK)),
                (SK.to_string(), n(0)),
                (keys::TIP_SEQ.to_string(), n(last.sequence)),
                (keys::TIP_FORMAT.to_string(), n(keys::FORMAT_VERSION)),
            ]);
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(tip_names))
                .set_expression_attribute_values(
                    tip_value.map(|v| HashMap::from([(":expected".to_string(), v)])),
                )
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_error)?;
            TransactWriteItem::builder().put(put).build()
        }
        None => {
            let check = ConditionCheck::builder()
                .table_name(table)
                .key(PK, s(keys::TIP_PK))
                .key(SK, n(0))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(tip_names))
                .set_expression_attribute_values(
                    tip_value.map(|v| HashMap::from([(":expected".to_string(), v)])),
                )
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_error)?;
            TransactWriteItem::builder().condition_check(check).build()
        }
    };
    items.push(action);
    roles.push(Role::Tip {
        expected: batch.expected_last,
    });

    // Blocks, each with the Merkle nodes it completes.
    let mut block_items: BTreeMap<u64, Item> = BTreeMap::new();
    for block in &batch.blocks {
        block_items.insert(
            block.sequence,
            HashMap::from([
                (PK.to_string(), s(keys::block_pk(block.sequence))),
                (SK.to_string(), n(block.sequence)),
                (keys::BLOCK_BYTES.to_string(), b(block.bytes.clone())),
            ]),
        );
    }
    for node in &batch.merkle_nodes {
        let owner = keys::merkle_block(node.level, node.index);
        let item = owner
            .and_then(|seq| block_items.get_mut(&seq))
            .ok_or_else(|| {
                AwsError::BadBatch(format!(
                    "Merkle node (level {}, index {}) is not completed by a block of this batch",
                    node.level, node.index
                ))
            })?;
        let attribute = keys::merkle_attribute(node.level);
        if item.contains_key(&attribute) {
            return Err(AwsError::BadBatch(format!(
                "two Merkle nodes at level {} for one block",
                node.level
            )));
        }
        item.insert(attribute, b(node.hash.as_bytes().to_vec()));
    }
    for (sequence, item) in block_items {
        budget.add(|| format!("block {sequence}"), item_size(&item))?;
        items.push(
            TransactWriteItem::builder()
                .put(put_new(table, item)?)
                .build(),
        );
        roles.push(Role::Block { sequence });
    }

    // Ad heads and revision refs.
    for update in &batch.heads {
        let versions = refs.get(&update.key).map(Vec::as_slice).unwrap_or_default();
        for (item, size) in head_actions(table, update, versions)? {
            budget.add(
                || format!("the chunk item of ad {}", update.key.ad_id),
                size,
            )?;
            items.push(item);
            roles.push(Role::Head {
                expected: update.expected_version,
            });
        }
    }

    // Idempotency records.
    let mut seen = HashSet::new();
    for record in &batch.idempotency {
        if !seen.insert((&record.publisher_id, &record.key)) {
            return Err(AwsError::BadBatch(format!(
                "two idempotency records for key {:?} of publisher {}",
                record.key, record.publisher_id
            )));
        }
        let item: Item = HashMap::from([
            (
                PK.to_string(),
                s(keys::idempotency_pk(&record.publisher_id, &record.key)),
            ),
            (SK.to_string(), n(0)),
            (keys::IDEM_PUBLISHER.to_string(), s(&record.publisher_id)),
            (keys::IDEM_KEY.to_string(), s(&record.key)),
            (
                keys::IDEM_HASH.to_string(),
                b(record.request_hash.as_bytes().to_vec()),
            ),
            (keys::IDEM_AD.to_string(), s(&record.ad_id)),
            (keys::IDEM_SEQUENCE.to_string(), n(record.sequence)),
        ]);
        budget.add(
            || format!("the idempotency record {:?}", record.key),
            item_size(&item),
        )?;
        items.push(
            TransactWriteItem::builder()
                .put(put_new(table, item)?)
                .build(),
        );
        roles.push(Role::Idempotency);
    }

    if items.len() > MAX_ACTIONS {
        return Err(AwsError::TooLarge(format!(
            "this append of {} blocks needs {} DynamoDB actions; one transaction holds at most \
             {MAX_ACTIONS} (at most {MAX_BLOCKS_PER_APPEND} one-revision blocks per append)",
            batch.blocks.len(),
            items.len()
        )));
    }
    if budget.total > MAX_TRANSACTION_BYTES {
        return Err(AwsError::TooLarge(format!(
            "this append of {} blocks would write about {} bytes; one DynamoDB transaction \
             holds at most {MAX_TRANSACTION_BYTES}",
            batch.blocks.len(),
            budget.total
        )));
    }
    Ok(Transaction {
        items,
        roles,
        token: token(table, batch),
    })
}

/// Blocks must follow `expected_last` without gaps.
fn check_blocks(batch: &AppendBatch) -> Result<(), AwsError> {
    let mut next = batch
        .expected_last
        .map_or(Some(0), |last| last.checked_add(1));
    for block in &batch.blocks {
        if Some(block.sequence) != next {
            return Err(AwsError::BadBatch(format!(
                "block {} does not follow {:?}; blocks must be contiguous after expected_last",
                block.sequence, batch.expected_last
            )));
        }
        next = block.sequence.checked_add(1);
    }
    Ok(())
}

/// Each ad's new revisions as `(version, sequence)`, checked to continue its head without
/// gaps and to end at its new head.
fn refs_by_ad(batch: &AppendBatch) -> Result<HashMap<AdKey, Vec<(u64, u64)>>, AwsError> {
    let mut heads: HashMap<&AdKey, &HeadUpdate> = HashMap::new();
    for update in &batch.heads {
        if heads.insert(&update.key, update).is_some() {
            return Err(AwsError::BadBatch(format!(
                "two head updates for ad {} of publisher {}",
                update.key.ad_id, update.key.publisher_id
            )));
        }
    }
    let mut by_ad: HashMap<AdKey, Vec<(u64, u64)>> = HashMap::new();
    for RevisionRef {
        key,
        version,
        sequence,
    } in &batch.revisions
    {
        by_ad
            .entry(key.clone())
            .or_default()
            .push((*version, *sequence));
    }
    for (key, versions) in &mut by_ad {
        versions.sort_unstable();
        let update = heads.get(key).ok_or_else(|| {
            AwsError::BadBatch(format!(
                "revision of ad {} without a head update",
                key.ad_id
            ))
        })?;
        let first = update.expected_version.map_or(0, |v| v + 1);
        let contiguous = versions
            .iter()
            .enumerate()
            .all(|(i, (v, _))| *v == first + i as u64);
        if !contiguous || versions.last().map(|(v, _)| *v) != Some(update.new_head.version) {
            return Err(AwsError::BadBatch(format!(
                "revisions of ad {} do not run from version {first} to its new head {}",
                key.ad_id, update.new_head.version
            )));
        }
    }
    for update in &batch.heads {
        if !by_ad.contains_key(&update.key) {
            return Err(AwsError::BadBatch(format!(
                "head update of ad {} without a revision",
                update.key.ad_id
            )));
        }
    }
    Ok(by_ad)
}

/// The actions for one ad: the condition on its current head and its new refs, chunk by
/// chunk. Returns each action with the size it may give its item.
fn head_actions(
    table: &str,
    update: &HeadUpdate,
    versions: &[(u64, u64)],
) -> Result<Vec<(TransactWriteItem, usize)>, AwsError> {
    let pk = keys::ad_pk(&update.key);
    let head = &update.new_head;
    let mut by_chunk: BTreeMap<u64, Vec<AttributeValue>> = BTreeMap::new();
    for (version, sequence) in versions {
        by_chunk
            .entry(keys::chunk_of(*version))
            .or_default()
            .push(n(*sequence));
    }
    let mut actions = Vec::new();
    if let Some(expected) = update.expected_version {
        // The ad exists: its head is in the chunk of `expected`; update it there, adding
        // refs if they belong to that chunk.
        let chunk = keys::chunk_of(expected);
        let refs = by_chunk.remove(&chunk);
        let mut names = names(&[
            ("#v", keys::HEAD_VERSION),
            ("#s", keys::HEAD_SEQUENCE),
            ("#d", keys::HEAD_DELETED),
        ]);
        let mut values = HashMap::from([
            (":expected".to_string(), n(expected)),
            (":v".to_string(), n(head.version)),
            (":s".to_string(), n(head.sequence)),
            (":d".to_string(), AttributeValue::Bool(head.deleted)),
        ]);
        let mut expression = "SET #v = :v, #s = :s, #d = :d".to_string();
        if let Some(refs) = refs {
            names.insert("#r".into(), keys::REFS.into());
            values.insert(":r".into(), AttributeValue::L(refs));
            expression.push_str(", #r = list_append(#r, :r)");
        }
        let update_item = Update::builder()
            .table_name(table)
            .key(PK, s(&pk))
            .key(SK, n(chunk))
            .update_expression(expression)
            .condition_expression("#v = :expected")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        actions.push((
            TransactWriteItem::builder().update(update_item).build(),
            MAX_CHUNK_BYTES,
        ));
    }
    // Chunks that do not exist yet (for a create: all of them, from chunk 0).
    for (chunk, refs) in by_chunk {
        let item: Item = HashMap::from([
            (PK.to_string(), s(&pk)),
            (SK.to_string(), n(chunk)),
            (keys::HEAD_VERSION.to_string(), n(head.version)),
            (keys::HEAD_SEQUENCE.to_string(), n(head.sequence)),
            (
                keys::HEAD_DELETED.to_string(),
                AttributeValue::Bool(head.deleted),
            ),
            (keys::REFS.to_string(), AttributeValue::L(refs)),
        ]);
        let size = item_size(&item);
        actions.push((
            TransactWriteItem::builder()
                .put(put_new(table, item)?)
                .build(),
            size,
        ));
    }
    Ok(actions)
}

/// A token naming this one `append` call: the SDK's retries of the request reuse it, so a
/// retry of a transaction that did commit (its response lost) succeeds instead of failing
/// on the moved tip, which would make the engine commit the same commands twice. A new
/// call gets a new token, so resending a batch is refused like any stale batch.
fn token(table: &str, batch: &AppendBatch) -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = Sha256::new();
    hasher.update(table.as_bytes());
    hasher.update([0]);
    hasher.update(std::process::id().to_be_bytes());
    hasher.update(nanos.to_be_bytes());
    hasher.update(CALLS.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    for block in &batch.blocks {
        hasher.update(block.sequence.to_be_bytes());
        hasher.update(&block.bytes);
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

/// Explains a refused transaction: a failed condition on the tip, an ad head or an
/// idempotency record (or a concurrent transaction on the same item) is a lost race,
/// `Conflict`; anything else keeps DynamoDB's reasons.
pub(super) fn refusal(
    table: &str,
    roles: &[Role],
    error: aws_sdk_dynamodb::error::SdkError<
        TransactWriteItemsError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
) -> AwsError {
    let reasons: Vec<CancellationReason> = match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
            e.cancellation_reasons().to_vec()
        }
        _ => return crate::error::request("TransactWriteItems", table, error),
    };
    let failed = |code: &str| {
        reasons
            .iter()
            .zip(roles)
            .find(|(reason, _)| reason.code() == Some(code))
    };
    if let Some((reason, role)) = failed("ConditionalCheckFailed") {
        return condition_failed(role, reason.item());
    }
    if let Some((_, role)) = failed("TransactionConflict") {
        // Another transaction was writing the same item: a race in progress.
        let expected = match role {
            Role::Tip { expected } => expectation(*expected),
            Role::Head { expected } => expectation(*expected),
            _ => VersionExpectation::Absent,
        };
        return AwsError::Conflict {
            expected,
            actual: expected,
        };
    }
    let sized = reasons.iter().find(|r| {
        r.code() == Some("ValidationError") && r.message().is_some_and(|m| m.contains("size"))
    });
    if let Some(reason) = sized {
        return AwsError::TooLarge(format!(
            "DynamoDB refused the append: {}",
            reason.message().unwrap_or("item too large")
        ));
    }
    crate::error::request("TransactWriteItems", table, error)
}

fn condition_failed(role: &Role, old: Option<&Item>) -> AwsError {
    let stored = |name: &str| {
        old.and_then(|item| get_opt_u64(item, name, &|| "conflicting item".into()).ok())
            .flatten()
    };
    match role {
        Role::Tip { expected } => AwsError::Conflict {
            expected: expectation(*expected),
            actual: expectation(stored(keys::TIP_SEQ)),
        },
        Role::Head { expected } => AwsError::Conflict {
            expected: expectation(*expected),
            actual: expectation(stored(keys::HEAD_VERSION)),
        },
        // The key was used by a create this writer did not know about: re-planning finds
        // the earlier outcome. The earlier ad exists, at version 0 at least.
        Role::Idempotency => AwsError::Conflict {
            expected: VersionExpectation::Absent,
            actual: VersionExpectation::Version(0),
        },
        // The tip matched (its condition is checked too), yet the block exists: the table
        // was altered behind the journal's back.
        Role::Block { sequence } => AwsError::Corrupt(format!(
            "block {sequence} is already stored although the tip says it is not; the journal \
             never overwrites a block"
        )),
    }
}
