//! Turning an [`AppendBatch`] into one `TransactWriteItems` request, and its refusal into
//! the engine's `Conflict`.
//!
//! # Actions
//!
//! | action | condition |
//! |---|---|
//! | Put the tip (its `idx`: how far the ad index is known complete) | `seq = expected_last` (absent for an empty journal) |
//! | Put each page (its blocks' frames and the Merkle nodes they complete) | the page does not exist |
//!
//! That is all: ad heads, revision refs and idempotency records are the derived ad index,
//! written after the transaction (`index.rs`), and each head's and idempotency key's
//! expectation is checked by the writer before it sends the transaction (`journal.rs`).
//! The checks read the index as of `expected_last`; the transaction commits only if the
//! tip is still `expected_last`, so nobody can have moved a head in between.
//!
//! A page holds up to [`keys::PAGE_TARGET_BYTES`] of frames, so the limit of one append is
//! its size ([`MAX_BYTES_PER_APPEND`]), not its number of blocks: at the bench's ~1 KB
//! blocks, a transaction of 6 actions carries 300 blocks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use adledger_engine::ports::{AppendBatch, HeadUpdate, MerkleNode, RevisionRef};
use adledger_engine::{AdKey, VersionExpectation};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use sha2::{Digest, Sha256};

use super::keys::{self, PK, SK};
use super::pages;
use crate::attributes::{Item, get_opt_u64, item_size, n, s};
use crate::error::AwsError;

/// DynamoDB's limit of actions in one transaction.
pub(crate) const MAX_ACTIONS: usize = 100;
/// DynamoDB's limit of the aggregate size of one transaction.
pub(crate) const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
/// DynamoDB's limit of one item's size.
pub(crate) const MAX_ITEM_BYTES: usize = 400 * 1024;
/// The most blocks the engine may put in one append (the committer's cap on a group
/// commit; what bounds a transaction is its size, [`MAX_BYTES_PER_APPEND`]).
pub const MAX_BLOCKS_PER_APPEND: usize = 1000;
/// The most frame bytes the engine may put in one append. With pages of at most
/// `keys::PAGE_TARGET_BYTES` (each but the last more than half full, bar partition
/// cuts) and one oversized block on top (import adds blocks while under the limit), this
/// stays within 4 MB and 100 actions.
pub const MAX_BYTES_PER_APPEND: usize = 2 * 1024 * 1024;

/// What an action in the transaction is for, to explain a cancellation.
#[derive(Debug, Clone)]
pub(super) enum Role {
    Tip { expected: Option<u64> },
    Page { first: u64 },
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

/// Checks the batch and builds its transaction; `indexed` is how far the ad index is
/// known to be complete (recorded in the tip for other processes).
pub(super) fn plan(
    table: &str,
    batch: &AppendBatch,
    indexed: Option<u64>,
) -> Result<Transaction, AwsError> {
    check_blocks(batch)?;
    refs_by_ad(batch)?;
    check_idempotency(batch)?;
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
            let mut item: Item = HashMap::from([
                (PK.to_string(), s(keys::TIP_PK)),
                (SK.to_string(), n(0)),
                (keys::TIP_SEQ.to_string(), n(last.sequence)),
                (keys::TIP_FORMAT.to_string(), n(keys::FORMAT_VERSION)),
            ]);
            if let Some(indexed) = indexed {
                item.insert(keys::TIP_INDEXED.to_string(), n(indexed));
            }
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

    // Pages, each with the Merkle nodes its blocks complete.
    let first = batch.blocks.first().map_or(0, |b| b.sequence);
    let spans = pages::cut(&batch.blocks, keys::PAGE_TARGET_BYTES);
    let mut nodes: Vec<Vec<&MerkleNode>> = vec![Vec::new(); spans.len()];
    let mut seen = HashSet::new();
    for node in &batch.merkle_nodes {
        let page = keys::merkle_block(node.level, node.index)
            .and_then(|owner| owner.checked_sub(first))
            .and_then(|offset| usize::try_from(offset).ok())
            .and_then(|offset| spans.iter().position(|span| span.contains(&offset)))
            .ok_or_else(|| {
                AwsError::BadBatch(format!(
                    "Merkle node (level {}, index {}) is not completed by a block of this batch",
                    node.level, node.index
                ))
            })?;
        if !seen.insert((node.level, node.index)) {
            return Err(AwsError::BadBatch(format!(
                "Merkle node (level {}, index {}) is given twice",
                node.level, node.index
            )));
        }
        nodes[page].push(node);
    }
    for (span, nodes) in spans.into_iter().zip(nodes) {
        let blocks = &batch.blocks[span];
        let page_first = blocks.first().map_or(0, |b| b.sequence);
        let item = pages::item(blocks, &nodes);
        budget.add(
            || match blocks {
                [one] => format!("block {}", one.sequence),
                _ => format!("the page of blocks {page_first}.."),
            },
            item_size(&item),
        )?;
        items.push(
            TransactWriteItem::builder()
                .put(put_new(table, item)?)
                .build(),
        );
        roles.push(Role::Page { first: page_first });
    }

    if items.len() > MAX_ACTIONS {
        return Err(AwsError::TooLarge(format!(
            "this append of {} blocks needs {} DynamoDB actions; one transaction holds at most \
             {MAX_ACTIONS}",
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

/// At most one idempotency record per key.
fn check_idempotency(batch: &AppendBatch) -> Result<(), AwsError> {
    let mut seen = HashSet::new();
    for record in &batch.idempotency {
        if !seen.insert((&record.publisher_id, &record.key)) {
            return Err(AwsError::BadBatch(format!(
                "two idempotency records for key {:?} of publisher {}",
                record.key, record.publisher_id
            )));
        }
    }
    Ok(())
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

/// Explains a refused transaction: a failed condition on the tip (or a concurrent
/// transaction on the same item) is a lost race,
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
            Role::Page { .. } => VersionExpectation::Absent,
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
        // The tip matched (its condition is checked too), yet the block exists: the table
        // was altered behind the journal's back.
        Role::Page { first } => AwsError::Corrupt(format!(
            "a page starting at block {first} is already stored although the tip says it is \
             not; the journal never overwrites a block"
        )),
    }
}
