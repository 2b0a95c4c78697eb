//! The state read model in DynamoDB: each ad's latest revision, and the projection
//! checkpoint.
//!
//! | item | `publisherId` | `adId` | attributes |
//! |---|---|---|---|
//! | ad | publisher | ad id | `version`, `sequence`, `updatedAt` (RFC 3339, ns), `ad` (the ad as JSON) or `deleted = true` (a tombstone) |
//! | checkpoint | `#checkpoint` | `#checkpoint` | `checkpoint` |
//!
//! | publisher registry | `#publishers` | publisher | — |
//! | live index | `#live#<publisher>` | ad id | — |
//! | layout | `#layout` | `live-index` | — (present once the live index is complete) |
//!
//! Publisher ids never contain `#`, so neither the checkpoint, the registry, the live
//! index nor the layout item is in any publisher's list.
//!
//! # Lists skip tombstones
//!
//! A deleted ad stays in its publisher's partition as a tombstone (the version guard
//! below needs it). A list that queried that partition with a filter would read every
//! tombstone (DynamoDB filters after reading, and bills what it read), so a publisher
//! with 100,000 deleted ads and 10 live ones would cost dozens of requests per page. So
//! each live ad also has a key-only item in the publisher's live-index partition, and a
//! list is one Query of that partition plus one `BatchGetItem` per 100 ads (strongly
//! consistent, so read-your-writes holds; a sparse GSI would not give that).
//!
//! The live-index item is added in the same `TransactWriteItems` as the ad's creation
//! and removed in the same one as its deletion, both behind the ad item's version guard:
//! DynamoDB cancels the whole transaction when the guard fails, so the index changes
//! exactly when the ad item does, even with an overlapping stale writer. Updates, the
//! common write, leave the index alone and cost nothing more. `put` (unconditional, used
//! by rebuilds) writes the index changes before the ads: a crash between the two leaves
//! an index entry whose ad is missing or a tombstone, which a list skips when it reads
//! the ads (and the replay that follows the crash writes both again). A store written
//! before the live index existed gets it at open (the layout item records that it is
//! complete).
//!
//! # Scan
//!
//! `scan` must return every entry in (publisher, ad id) byte order, and a table Scan has
//! no order. So every publisher written is also recorded in the registry partition
//! (before its ads), and `scan` walks the registry in order (a Query) and each
//! publisher's partition in order (a Query each): DynamoDB sorts string sort keys by their
//! UTF-8 bytes, which is the contract's order. Each store remembers the publishers it
//! has registered, so the registry costs one write per publisher per process, not per ad.
//!
//! # Apply
//!
//! The contract (`StateStore::apply`) asks that re-applying is harmless ("idempotent by
//! version") and that after a crash the checkpoint is never ahead of the ads it covers.
//! Two writers can overlap: the projector lease is judged by wall clocks, so a holder
//! whose lease lapsed may still be finishing a write when the next holder starts (see
//! `lease.rs`). So every ad write keeps its version guard,
//! `attribute_not_exists(version) OR version < :v`, and `BatchWriteItem` (which takes no
//! conditions) is not used for `apply`: an overlapping stale holder could otherwise store
//! an older revision over a newer one for good, and nothing would ever repair it.
//!
//! Instead the guarded Puts travel up to [`TRANSACT_ITEMS`] at a time in one
//! `TransactWriteItems`, several transactions in flight ([`WRITE_CONCURRENCY`]). The
//! transaction is used for its per-item conditions, not its atomicity: when DynamoDB
//! cancels one because some items failed their guard, the cancellation reasons name
//! them; those are exactly the revisions the guard would have ignored, so they are
//! dropped and the rest is sent again. Conflicts with a concurrent writer and throttling
//! are retried with exponential backoff and jitter. Only the newest revision of each ad
//! in a call is written (a transaction may not touch an item twice). The checkpoint is
//! written once every transaction of the call has succeeded, so after a crash it is at
//! most behind its ads and a replay re-applies them harmlessly (the guard refuses what
//! is already there). A transactional write costs twice the write capacity of a plain
//! one; in exchange a burst of creates needs one request per 100 ads instead of one each.
//!
//! # Put, registry, clear
//!
//! `put` is unconditional by contract, so it (and the publisher registry, and `clear`'s
//! deletes) uses `BatchWriteItem`: 25 items a request, several requests in flight, items
//! DynamoDB leaves unprocessed (throttling) sent again with exponential backoff and
//! jitter; the checkpoint is written last, after every batch is durable.
//!
//! # Many gets
//!
//! `get_many` reads up to 100 ads per `BatchGetItem` (strongly consistent), retrying
//! unprocessed keys: a page of search hits is hydrated with one request, not one per hit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use adledger_engine::ports::{AdState, StateStore};
use adledger_engine::{Ad, AdKey, EventKind, Result, Revision};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, KeysAndAttributes, Put, PutRequest, TransactWriteItem,
    WriteRequest,
};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;

use crate::attributes::{Item, get_bool, get_str, get_u64, n, s};
use crate::batch_write::{self, BATCH_WRITE_ITEMS, UNPROCESSED_RETRIES, backoff, exhausted};
use crate::error::{AwsError, corrupt, request};
use crate::tables::{self, TableSpec};

const PUBLISHER: &str = "publisherId";
const AD_ID: &str = "adId";
const VERSION: &str = "version";
const SEQUENCE: &str = "sequence";
const UPDATED_AT: &str = "updatedAt";
const AD: &str = "ad";
const DELETED: &str = "deleted";
const CHECKPOINT_KEY: &str = "#checkpoint";
const CHECKPOINT: &str = "checkpoint";
const REGISTRY_KEY: &str = "#publishers";
/// Partition-key prefix of a publisher's live index.
const LIVE_PREFIX: &str = "#live#";
const LAYOUT_KEY: &str = "#layout";
/// The layout item's sort key: the live index is complete.
const LIVE_INDEX_LAYOUT: &str = "live-index";

/// Write requests (transactions or batches) in flight at once.
const WRITE_CONCURRENCY: usize = 8;
/// Keys per BatchGetItem (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;
/// Actions per TransactWriteItems (DynamoDB's limit).
const TRANSACT_ITEMS: usize = 100;
/// Bytes of items per TransactWriteItems, below DynamoDB's 4 MB so attribute names and
/// the request's framing fit too.
const TRANSACT_BYTES: usize = 3 << 20;

/// A rough size of an item as DynamoDB counts it (names plus values), to keep a
/// transaction under its size limit.
fn approximate_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) => text.len(),
                    _ => 16,
                }
        })
        .sum()
}

/// The state read model in a DynamoDB table.
///
/// Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct DynamoStateStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Publishers this store has put in the registry (see the module docs).
    registered: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for DynamoStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStateStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn encode(state: &AdState) -> Result<Item, AwsError> {
    let key = &state.key;
    let mut item: Item = HashMap::from([
        (PUBLISHER.to_string(), s(&key.publisher_id)),
        (AD_ID.to_string(), s(&key.ad_id)),
        (VERSION.to_string(), n(state.version)),
        (SEQUENCE.to_string(), n(state.sequence)),
        (
            UPDATED_AT.to_string(),
            s(state.updated_at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        ),
    ]);
    match &state.ad {
        Some(ad) => {
            let json = serde_json::to_string(ad)
                .map_err(|e| corrupt(format!("cannot encode ad {}: {e}", key.ad_id)))?;
            item.insert(AD.to_string(), s(json));
        }
        None => {
            item.insert(DELETED.to_string(), AttributeValue::Bool(true));
        }
    }
    Ok(item)
}

fn decode(item: &Item) -> Result<AdState, AwsError> {
    let what = || format!("state item {:?}/{:?}", item.get(PUBLISHER), item.get(AD_ID));
    let key = AdKey::new(
        get_str(item, PUBLISHER, &what)?,
        get_str(item, AD_ID, &what)?,
    );
    let updated_at = DateTime::parse_from_rfc3339(get_str(item, UPDATED_AT, &what)?)
        .map_err(|e| corrupt(format!("{}: updatedAt: {e}", what())))?
        .with_timezone(&Utc);
    let ad = if item.contains_key(DELETED) && get_bool(item, DELETED, &what)? {
        None
    } else {
        let json = get_str(item, AD, &what)?;
        Some(
            serde_json::from_str::<Ad>(json)
                .map_err(|e| corrupt(format!("{}: ad: {e}", what())))?,
        )
    };
    Ok(AdState {
        key,
        version: get_u64(item, VERSION, &what)?,
        sequence: get_u64(item, SEQUENCE, &what)?,
        updated_at,
        ad,
    })
}

fn checkpoint_key() -> Item {
    HashMap::from([
        (PUBLISHER.to_string(), s(CHECKPOINT_KEY)),
        (AD_ID.to_string(), s(CHECKPOINT_KEY)),
    ])
}

/// The key of an ad's entry in its publisher's live index.
fn live_key(key: &AdKey) -> Item {
    HashMap::from([
        (
            PUBLISHER.to_string(),
            s(format!("{LIVE_PREFIX}{}", key.publisher_id)),
        ),
        (AD_ID.to_string(), s(&key.ad_id)),
    ])
}

fn layout_key() -> Item {
    HashMap::from([
        (PUBLISHER.to_string(), s(LAYOUT_KEY)),
        (AD_ID.to_string(), s(LIVE_INDEX_LAYOUT)),
    ])
}

/// What a state write does to the live index.
#[derive(Debug, Clone)]
enum LiveChange {
    /// The ad is live: its entry exists.
    Add(Item),
    /// The ad is deleted: its entry is gone.
    Remove(Item),
}

impl LiveChange {
    /// The change that makes the index agree with `state`.
    fn for_state(state: &AdState) -> LiveChange {
        let key = live_key(&state.key);
        if state.ad.is_some() {
            LiveChange::Add(key)
        } else {
            LiveChange::Remove(key)
        }
    }

    /// The change as one action of a transaction (unconditional: the ad item's guard in
    /// the same transaction decides for both).
    fn transact_item(&self, table: &str) -> Result<TransactWriteItem, AwsError> {
        let built = match self {
            LiveChange::Add(item) => Put::builder()
                .table_name(table)
                .set_item(Some(item.clone()))
                .build()
                .map(|put| TransactWriteItem::builder().put(put).build()),
            LiveChange::Remove(key) => Delete::builder()
                .table_name(table)
                .set_key(Some(key.clone()))
                .build()
                .map(|delete| TransactWriteItem::builder().delete(delete).build()),
        };
        built.map_err(|e| AwsError::BadBatch(e.to_string()))
    }

    /// The change as one request of a `BatchWriteItem`.
    fn write_request(&self) -> Result<WriteRequest, AwsError> {
        match self {
            LiveChange::Add(item) => PutRequest::builder()
                .set_item(Some(item.clone()))
                .build()
                .map(|p| WriteRequest::builder().put_request(p).build()),
            LiveChange::Remove(key) => DeleteRequest::builder()
                .set_key(Some(key.clone()))
                .build()
                .map(|d| WriteRequest::builder().delete_request(d).build()),
        }
        .map_err(|e| AwsError::BadBatch(e.to_string()))
    }
}

/// An ad item to write unless a revision at least as new is stored, and the live-index
/// change that must commit with it.
#[derive(Debug, Clone)]
struct GuardedWrite {
    item: Item,
    version: u64,
    live: Option<LiveChange>,
}

impl GuardedWrite {
    /// Actions this write takes in a transaction.
    fn actions(&self) -> usize {
        1 + usize::from(self.live.is_some())
    }
}

impl DynamoStateStore {
    /// Opens the state store in `table`, which must exist (see [`tables::create`]).
    pub async fn open(client: aws_sdk_dynamodb::Client, table: &str) -> Result<DynamoStateStore> {
        tables::require(&client, &TableSpec::state(table)).await?;
        let store = DynamoStateStore {
            client,
            table: table.to_string(),
            registered: Arc::new(Mutex::new(HashSet::new())),
        };
        store.ensure_live_index().await?;
        Ok(store)
    }

    /// Builds the live index of a store written before it existed (see the module
    /// docs), once: every live ad gets its entry, then the layout item says so. Two
    /// processes doing this at once write the same entries; an entry for an ad deleted
    /// meanwhile is skipped by lists.
    async fn ensure_live_index(&self) -> Result<(), AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(layout_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| request("GetItem", &self.table, e))?;
        if output.item.is_some() {
            return Ok(());
        }
        let mut after: Option<AdKey> = None;
        let mut indexed = 0usize;
        loop {
            let states = self.scan_inner(after.as_ref(), 1000).await?;
            let Some(last) = states.last() else { break };
            after = Some(last.key.clone());
            let adds = states
                .iter()
                .filter(|state| state.ad.is_some())
                .map(|state| LiveChange::for_state(state).write_request())
                .collect::<Result<Vec<_>, _>>()?;
            indexed += adds.len();
            self.batch_write_all(adds).await?;
        }
        if indexed > 0 {
            tracing::info!(table = %self.table, live_ads = indexed, "built the state table's live index");
        }
        self.put_plain(layout_key()).await
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes each ad unless its stored version is as new or newer (see the module docs):
    /// guarded Puts in transactions of up to [`TRANSACT_ITEMS`].
    async fn put_all_if_newer(&self, writes: Vec<GuardedWrite>) -> Result<(), AwsError> {
        let mut chunks: Vec<Vec<GuardedWrite>> = Vec::new();
        let (mut actions, mut bytes) = (0, 0);
        for write in writes {
            let size = approximate_size(&write.item);
            match chunks.last_mut() {
                Some(chunk)
                    if actions + write.actions() <= TRANSACT_ITEMS
                        && bytes + size <= TRANSACT_BYTES =>
                {
                    actions += write.actions();
                    bytes += size;
                    chunk.push(write);
                }
                _ => {
                    actions = write.actions();
                    bytes = size;
                    chunks.push(vec![write]);
                }
            }
        }
        let mut results = futures::stream::iter(chunks)
            .map(|chunk| self.transact_if_newer(chunk))
            .buffer_unordered(WRITE_CONCURRENCY);
        while let Some(result) = results.next().await {
            result?;
        }
        Ok(())
    }

    /// One chunk of guarded Puts, until every item is written or refused by its guard.
    async fn transact_if_newer(&self, mut writes: Vec<GuardedWrite>) -> Result<(), AwsError> {
        let mut round = 0;
        while !writes.is_empty() {
            let mut actions = Vec::with_capacity(TRANSACT_ITEMS);
            for write in &writes {
                let guarded = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(write.item.clone()))
                    .condition_expression("attribute_not_exists(#v) OR #v < :v")
                    .expression_attribute_names("#v", VERSION)
                    .expression_attribute_values(":v", n(write.version))
                    .build()
                    .map(|put| TransactWriteItem::builder().put(put).build())
                    .map_err(|e| AwsError::BadBatch(e.to_string()))?;
                actions.push(guarded);
                if let Some(live) = &write.live {
                    actions.push(live.transact_item(&self.table)?);
                }
            }
            let action_count = actions.len();
            let error = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            let reasons = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                    e.cancellation_reasons().to_vec()
                }
                _ => return Err(request("TransactWriteItems", &self.table, error)),
            };
            if reasons.len() != action_count {
                return Err(request("TransactWriteItems", &self.table, error));
            }
            // Items refused by their guard hold a revision at least as new: drop them
            // with their live-index change (exactly what a refused conditional Put
            // means). Anything else (a conflict with another writer, throttling) is sent
            // again after a pause. Each write's guarded Put is its first action.
            let mut retry_others = false;
            let mut first_action = 0;
            let mut kept = Vec::with_capacity(writes.len());
            for write in writes {
                let own = &reasons[first_action..first_action + write.actions()];
                first_action += write.actions();
                if own[0].code() == Some("ConditionalCheckFailed") {
                    continue;
                }
                if own
                    .iter()
                    .any(|reason| !matches!(reason.code(), None | Some("None")))
                {
                    retry_others = true;
                }
                kept.push(write);
            }
            writes = kept;
            if retry_others {
                round += 1;
                if round > UNPROCESSED_RETRIES {
                    return Err(request("TransactWriteItems", &self.table, error));
                }
                tokio::time::sleep(backoff(round)).await;
            }
        }
        Ok(())
    }

    async fn apply_inner(&self, revisions: &[Revision], checkpoint: u64) -> Result<(), AwsError> {
        // Only the newest revision of each ad in the batch needs writing; the live
        // index changes with the ad's creation (in this batch) and its deletion.
        let mut newest: HashMap<AdKey, &Revision> = HashMap::new();
        let mut created: HashSet<AdKey> = HashSet::new();
        for revision in revisions {
            if revision.body.event == EventKind::AdCreated {
                created.insert(revision.key());
            }
            let entry = newest.entry(revision.key()).or_insert(revision);
            if revision.version() > entry.version() {
                *entry = revision;
            }
        }
        let writes = newest
            .into_values()
            .map(|revision| {
                let state = AdState::from_revision(revision);
                let live = (state.ad.is_none() || created.contains(&state.key))
                    .then(|| LiveChange::for_state(&state));
                Ok(GuardedWrite {
                    item: encode(&state)?,
                    version: revision.version(),
                    live,
                })
            })
            .collect::<Result<Vec<_>, AwsError>>()?;
        self.register(writes.iter().map(|write| &write.item))
            .await?;
        self.put_all_if_newer(writes).await?;
        self.set_checkpoint(checkpoint).await
    }

    async fn set_checkpoint(&self, checkpoint: u64) -> Result<(), AwsError> {
        let mut item = checkpoint_key();
        item.insert(CHECKPOINT.to_string(), n(checkpoint));
        self.put_plain(item).await?;
        crate::metrics::observe_state_checkpoint(checkpoint);
        Ok(())
    }

    /// An unconditional Put.
    async fn put_plain(&self, item: Item) -> Result<(), AwsError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| request("PutItem", &self.table, e))?;
        Ok(())
    }

    /// Records the publishers of `items` in the registry, unless this store already did.
    async fn register(&self, items: impl Iterator<Item = &Item>) -> Result<(), AwsError> {
        let mut new: Vec<String> = {
            let known = self
                .registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            items
                .filter_map(|item| match item.get(PUBLISHER) {
                    Some(AttributeValue::S(p)) if !known.contains(p) => Some(p.clone()),
                    _ => None,
                })
                .collect()
        };
        new.sort();
        new.dedup();
        let registry: Vec<Item> = new
            .iter()
            .map(|publisher| {
                HashMap::from([
                    (PUBLISHER.to_string(), s(REGISTRY_KEY)),
                    (AD_ID.to_string(), s(publisher.clone())),
                ])
            })
            .collect();
        self.put_batches(registry).await?;
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(new);
        Ok(())
    }

    async fn put_inner(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<(), AwsError> {
        // The last state given for a key wins.
        let mut last: HashMap<&AdKey, &AdState> = HashMap::new();
        for state in states {
            last.insert(&state.key, state);
        }
        let live = last
            .values()
            .map(|state| LiveChange::for_state(state).write_request())
            .collect::<Result<Vec<_>, AwsError>>()?;
        let items = last
            .into_values()
            .map(encode)
            .collect::<Result<Vec<_>, AwsError>>()?;
        self.register(items.iter()).await?;
        // The index first: a crash before the ads leaves entries a list skips.
        self.batch_write_all(live).await?;
        self.put_batches(items).await?;
        match checkpoint {
            Some(checkpoint) => self.set_checkpoint(checkpoint).await,
            None => Ok(()),
        }
    }

    /// One page of a partition in sort-key order, strictly after `after`.
    async fn query_page(
        &self,
        partition: &str,
        after: Option<&str>,
        limit: usize,
        projection: Option<&str>,
    ) -> Result<(Vec<Item>, bool), AwsError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#p", PUBLISHER)
            .expression_attribute_values(":p", s(partition))
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        query = match after {
            Some(after) => query
                .key_condition_expression("#p = :p AND #a > :a")
                .expression_attribute_names("#a", AD_ID)
                .expression_attribute_values(":a", s(after)),
            None => query.key_condition_expression("#p = :p"),
        };
        if let Some(projection) = projection {
            query = query.projection_expression(projection);
        }
        let page = query
            .send()
            .await
            .map_err(|e| request("Query", &self.table, e))?;
        let more = page.last_evaluated_key.is_some_and(|k| !k.is_empty());
        Ok((page.items.unwrap_or_default(), more))
    }

    async fn scan_inner(
        &self,
        after: Option<&AdKey>,
        limit: usize,
    ) -> Result<Vec<AdState>, AwsError> {
        let mut states = Vec::with_capacity(limit.min(1024));
        if limit == 0 {
            return Ok(states);
        }
        // Resume inside the cursor's publisher, then walk later publishers in order.
        let mut publisher: Option<String> = None;
        let mut ad_cursor: Option<String> = None;
        if let Some(after) = after {
            publisher = Some(after.publisher_id.clone());
            ad_cursor = Some(after.ad_id.clone());
        }
        let mut first = true;
        loop {
            let current = if first && publisher.is_some() {
                publisher.clone()
            } else {
                // The next registered publisher after the last one walked.
                let (items, _) = self
                    .query_page(REGISTRY_KEY, publisher.as_deref(), 1, None)
                    .await?;
                ad_cursor = None;
                match items.first() {
                    Some(item) => {
                        Some(get_str(item, AD_ID, &|| "publisher registry".into())?.to_string())
                    }
                    None => None,
                }
            };
            first = false;
            let Some(current) = current else {
                return Ok(states);
            };
            // Page through this publisher's ads (tombstones included).
            loop {
                let wanted = limit - states.len();
                let (items, more) = self
                    .query_page(&current, ad_cursor.as_deref(), wanted, None)
                    .await?;
                for item in &items {
                    states.push(decode(item)?);
                }
                if states.len() >= limit {
                    states.truncate(limit);
                    return Ok(states);
                }
                if !more {
                    break;
                }
                ad_cursor = states.last().map(|st| st.key.ad_id.clone());
            }
            publisher = Some(current);
        }
    }

    async fn get_inner(&self, key: &AdKey) -> Result<Option<AdState>, AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PUBLISHER, s(&key.publisher_id))
            .key(AD_ID, s(&key.ad_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| request("GetItem", &self.table, e))?;
        output.item.as_ref().map(decode).transpose()
    }

    async fn list_inner(
        &self,
        publisher_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AdState>, AwsError> {
        let mut ads = Vec::with_capacity(limit.min(1024));
        let live_partition = format!("{LIVE_PREFIX}{publisher_id}");
        let mut cursor = after.map(str::to_string);
        // The live index names the live ads in ad-id order; their items are read with
        // `BatchGetItem`. An entry whose ad is a tombstone or missing (left by a `put`
        // cut short, or a concurrent delete) is skipped, so a page may need another
        // round; each round reads only index entries, never tombstones.
        while ads.len() < limit {
            let wanted = limit - ads.len();
            let (entries, more) = self
                .query_page(&live_partition, cursor.as_deref(), wanted, Some(AD_ID))
                .await?;
            let keys = entries
                .iter()
                .map(|entry| {
                    get_str(entry, AD_ID, &|| "live index entry".into())
                        .map(|ad_id| AdKey::new(publisher_id, ad_id))
                })
                .collect::<Result<Vec<_>, _>>()?;
            cursor = keys.last().map(|key| key.ad_id.clone());
            for state in self.get_many_inner(&keys).await?.into_iter().flatten() {
                if state.ad.is_some() {
                    ads.push(state);
                }
            }
            if !more {
                break;
            }
        }
        Ok(ads)
    }

    async fn checkpoint_inner(&self) -> Result<u64, AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(checkpoint_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| request("GetItem", &self.table, e))?;
        let checkpoint = match output.item {
            None => 0,
            Some(item) => get_u64(&item, CHECKPOINT, &|| "state checkpoint".into())?,
        };
        crate::metrics::observe_state_checkpoint(checkpoint);
        Ok(checkpoint)
    }

    async fn clear_inner(&self) -> Result<(), AwsError> {
        // Checkpoint first: a crash half-way must leave a store that replays from 0.
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(checkpoint_key()))
            .send()
            .await
            .map_err(|e| request("DeleteItem", &self.table, e))?;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("#p, #a")
                .expression_attribute_names("#p", PUBLISHER)
                .expression_attribute_names("#a", AD_ID)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| request("Scan", &self.table, e))?;
            for group in page.items().chunks(BATCH_WRITE_ITEMS) {
                self.delete_all(group).await?;
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                // An empty table's live index is complete.
                _ => return self.put_plain(layout_key()).await,
            }
        }
    }

    async fn delete_all(&self, keys: &[Item]) -> Result<(), AwsError> {
        let requests = keys
            .iter()
            .map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(key.clone()))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(|e| AwsError::BadBatch(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    /// Unconditional Puts of `items` (distinct keys), [`BATCH_WRITE_ITEMS`] per
    /// `BatchWriteItem`, [`WRITE_CONCURRENCY`] requests in flight; returns once all are
    /// durable.
    async fn put_batches(&self, items: Vec<Item>) -> Result<(), AwsError> {
        batch_write::put_all(&self.client, &self.table, items, WRITE_CONCURRENCY).await
    }

    /// Write requests (distinct keys), [`BATCH_WRITE_ITEMS`] per `BatchWriteItem`,
    /// [`WRITE_CONCURRENCY`] requests in flight; returns once all are durable.
    async fn batch_write_all(&self, requests: Vec<WriteRequest>) -> Result<(), AwsError> {
        batch_write::write_all(&self.client, &self.table, requests, WRITE_CONCURRENCY).await
    }

    /// One `BatchWriteItem` (at most [`BATCH_WRITE_ITEMS`] requests), retrying what is
    /// left unprocessed.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), AwsError> {
        batch_write::write(&self.client, &self.table, requests).await
    }

    /// The stored state of each key (in the order given; `None` where never seen), read
    /// strongly consistently, up to [`BATCH_GET_KEYS`] keys per `BatchGetItem`, keys left
    /// unprocessed (throttling) asked again with backoff. A search page's hits are
    /// hydrated with one request instead of one per hit.
    async fn get_many_inner(&self, keys: &[AdKey]) -> Result<Vec<Option<AdState>>, AwsError> {
        let mut distinct: Vec<&AdKey> = keys.iter().collect();
        distinct.sort();
        distinct.dedup();
        let mut found: HashMap<AdKey, AdState> = HashMap::with_capacity(distinct.len());
        for chunk in distinct.chunks(BATCH_GET_KEYS) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|key| {
                    HashMap::from([
                        (PUBLISHER.to_string(), s(&key.publisher_id)),
                        (AD_ID.to_string(), s(&key.ad_id)),
                    ])
                })
                .collect();
            let mut round = 0;
            while !pending.is_empty() {
                let wanted = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| AwsError::BadBatch(e.to_string()))?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, wanted)
                    .send()
                    .await
                    .map_err(|e| request("BatchGetItem", &self.table, e))?;
                for item in output
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let state = decode(&item)?;
                    found.insert(state.key.clone(), state);
                }
                pending = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    if round > UNPROCESSED_RETRIES {
                        return Err(exhausted("BatchGetItem", &self.table));
                    }
                    tokio::time::sleep(backoff(round)).await;
                }
            }
        }
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }
}

#[async_trait]
impl StateStore for DynamoStateStore {
    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()> {
        self.apply_inner(revisions, checkpoint)
            .await
            .map_err(Into::into)
    }

    async fn get(&self, key: &AdKey) -> Result<Option<AdState>> {
        self.get_inner(key).await.map_err(Into::into)
    }

    async fn get_many(&self, keys: &[AdKey]) -> Result<Vec<Option<AdState>>> {
        self.get_many_inner(keys).await.map_err(Into::into)
    }

    async fn list(
        &self,
        publisher_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AdState>> {
        self.list_inner(publisher_id, after, limit)
            .await
            .map_err(Into::into)
    }

    async fn checkpoint(&self) -> Result<u64> {
        self.checkpoint_inner().await.map_err(Into::into)
    }

    async fn clear(&self) -> Result<()> {
        self.clear_inner().await.map_err(Into::into)
    }

    async fn scan(&self, after: Option<&AdKey>, limit: usize) -> Result<Vec<AdState>> {
        self.scan_inner(after, limit).await.map_err(Into::into)
    }

    async fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<()> {
        self.put_inner(states, checkpoint).await.map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    //! The batched paths against a loopback fake of DynamoDB's JSON protocol that leaves
    //! every write batch unprocessed the first time it sees it, and every other key of a
    //! read batch (DynamoDB Local never throttles, so the retry loops would otherwise go
    //! untested).

    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use serde_json::{Value, json};

    use super::*;

    /// What the fake saw: each request's operation, in order, and the ad ids written.
    #[derive(Default)]
    struct Seen {
        operations: Vec<String>,
        batches: HashSet<Vec<String>>,
        /// Ad ids a `BatchGetItem` asked for, each time.
        asked: Vec<String>,
        /// Ad ids a `TransactWriteItems` carried.
        transacted: HashSet<String>,
        written: Vec<String>,
        /// How many ad items were written when the checkpoint Put arrived.
        written_at_checkpoint: Option<usize>,
    }

    /// What a write touches, by the ad id: `ad7` for the ad item, `live:ad7` for a live
    /// index entry put, `unlive:ad7` for one deleted.
    fn written_name(item: &Value, deleted: bool) -> String {
        let ad_id = item["adId"]["S"].as_str().expect("adId");
        let live = item["publisherId"]["S"]
            .as_str()
            .expect("publisherId")
            .starts_with(LIVE_PREFIX);
        match (live, deleted) {
            (false, _) => ad_id.to_string(),
            (true, false) => format!("live:{ad_id}"),
            (true, true) => format!("unlive:{ad_id}"),
        }
    }

    async fn fake(
        seen: Arc<Mutex<Seen>>,
        headers: HeaderMap,
        body: String,
    ) -> (StatusCode, String) {
        let operation = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("")
            .to_string();
        let request: Value = serde_json::from_str(&body).expect("the SDK sends JSON");
        let mut seen = seen.lock().expect("lock");
        seen.operations.push(operation.clone());
        if operation == "TransactWriteItems" {
            return transact(&mut seen, &request);
        }
        let answer = match operation.as_str() {
            "BatchWriteItem" => {
                let items = &request["RequestItems"]["state"];
                let ids: Vec<String> = items
                    .as_array()
                    .expect("a list of requests")
                    .iter()
                    .map(|r| match r.get("DeleteRequest") {
                        Some(delete) => written_name(&delete["Key"], true),
                        None => written_name(&r["PutRequest"]["Item"], false),
                    })
                    .collect();
                if seen.batches.insert(ids.clone()) {
                    // First sight: leave the whole batch unprocessed.
                    return (
                        StatusCode::OK,
                        json!({"UnprocessedItems": {"state": items}}).to_string(),
                    );
                }
                seen.written.extend(ids);
                json!({"UnprocessedItems": {}}).to_string()
            }
            "PutItem" => {
                seen.written_at_checkpoint = Some(seen.written.len());
                "{}".to_string()
            }
            "BatchGetItem" => {
                // Keys asked for the first time are left unprocessed every other one;
                // ads named `missing…` do not exist; the others are tombstones.
                let keys = request["RequestItems"]["state"]["Keys"]
                    .as_array()
                    .expect("a list of keys")
                    .clone();
                let (mut found, mut unprocessed) = (Vec::new(), Vec::new());
                for (i, key) in keys.into_iter().enumerate() {
                    let id = key["adId"]["S"].as_str().expect("adId").to_string();
                    let first = !seen.asked.contains(&id);
                    seen.asked.push(id.clone());
                    if first && i % 2 == 0 {
                        unprocessed.push(key);
                    } else if !id.starts_with("missing") {
                        found.push(json!({
                            "publisherId": key["publisherId"],
                            "adId": {"S": id},
                            "version": {"N": "2"},
                            "sequence": {"N": "1"},
                            "updatedAt": {"S": "1970-01-01T00:00:00Z"},
                            "deleted": {"BOOL": true},
                        }));
                    }
                }
                let unprocessed = if unprocessed.is_empty() {
                    json!({})
                } else {
                    json!({"state": {"Keys": unprocessed, "ConsistentRead": true}})
                };
                json!({"Responses": {"state": found}, "UnprocessedKeys": unprocessed}).to_string()
            }
            other => panic!("unexpected operation {other}"),
        };
        (StatusCode::OK, answer)
    }

    /// A transaction whose ad ids are all new is cancelled: its first item fails its
    /// guard, its second is throttled, the others are not the cause; a transaction
    /// carrying ids seen before (the retry) is written.
    fn transact(seen: &mut Seen, request: &Value) -> (StatusCode, String) {
        let ids: Vec<String> = request["TransactItems"]
            .as_array()
            .expect("a list of actions")
            .iter()
            .map(|a| match a.get("Delete") {
                Some(delete) => written_name(&delete["Key"], true),
                None => written_name(&a["Put"]["Item"], false),
            })
            .collect();
        let first = ids.iter().all(|id| !seen.transacted.contains(id));
        seen.transacted.extend(ids.iter().cloned());
        if first {
            let reasons: Vec<Value> = (0..ids.len())
                .map(|i| match i {
                    0 => json!({"Code": "ConditionalCheckFailed", "Message": "guard"}),
                    1 => json!({"Code": "ThrottlingError", "Message": "slow down"}),
                    _ => json!({"Code": "None"}),
                })
                .collect();
            let body = json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": "Transaction cancelled",
                "CancellationReasons": reasons,
            });
            return (StatusCode::BAD_REQUEST, body.to_string());
        }
        seen.written.extend(ids);
        (StatusCode::OK, "{}".to_string())
    }

    fn tombstone(publisher: &str, ad_id: String) -> AdState {
        AdState {
            key: AdKey::new(publisher, ad_id),
            version: 2,
            sequence: 1,
            updated_at: DateTime::UNIX_EPOCH,
            ad: None,
        }
    }

    /// A state store whose requests go to the fake; what the fake saw.
    async fn faked() -> (DynamoStateStore, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let app = Router::new().route(
            "/",
            post(move |headers: HeaderMap, body: String| fake(shared.clone(), headers, body)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let store = DynamoStateStore {
            client: crate::client::connect_static(&format!("http://{address}"), "us-east-1"),
            table: "state".into(),
            registered: Arc::new(Mutex::new(HashSet::new())),
        };
        (store, seen)
    }

    /// Keys DynamoDB leaves unprocessed (throttling) are asked again until answered;
    /// the answers come back in the order asked, `None` for an absent ad.
    #[tokio::test]
    async fn get_many_retries_unprocessed_keys_and_keeps_the_order() {
        let (store, seen) = faked().await;
        let keys: Vec<AdKey> = (0..150)
            .map(|i| {
                let id = if i % 10 == 3 {
                    format!("missing{i:03}")
                } else {
                    format!("ad{i:03}")
                };
                AdKey::new("p1", id)
            })
            .rev()
            .collect();

        let got = store.get_many(&keys).await.expect("get_many");

        assert_eq!(got.len(), keys.len());
        for (key, state) in keys.iter().zip(&got) {
            match state {
                Some(state) => assert_eq!(state.key, *key),
                None => assert!(key.ad_id.starts_with("missing"), "{key:?}"),
            }
        }
        let seen = seen.lock().expect("lock");
        // 150 distinct keys: two requests of up to 100, each followed by one retry of
        // the half left unprocessed.
        let gets = seen
            .operations
            .iter()
            .filter(|o| *o == "BatchGetItem")
            .count();
        assert_eq!(gets, 4, "{:?}", seen.operations);
        assert_eq!(seen.asked.len(), 150 + 75);
    }

    /// Guarded writes of `count` tombstones (with their live-index change if `live`)
    /// through the fake: how many transactions were sent, and what was written (sorted).
    async fn transact_tombstones(count: usize, live: bool) -> (usize, Vec<String>) {
        let (store, seen) = faked().await;
        let writes: Vec<GuardedWrite> = (0..count)
            .map(|i| {
                let state = tombstone("p1", format!("ad{i:03}"));
                GuardedWrite {
                    item: encode(&state).expect("encode"),
                    version: state.version,
                    live: live.then(|| LiveChange::for_state(&state)),
                }
            })
            .collect();
        store.put_all_if_newer(writes).await.expect("written");
        let seen = seen.lock().expect("lock");
        let transactions = seen
            .operations
            .iter()
            .filter(|o| *o == "TransactWriteItems")
            .count();
        let mut written = seen.written.clone();
        written.sort();
        (transactions, written)
    }

    /// A cancelled transaction of the projector: the item refused by its guard is
    /// dropped (a revision at least as new is stored), the throttled one and the rest are
    /// sent again, and every chunk of 100 ends written.
    #[tokio::test]
    async fn apply_writes_drop_guarded_items_and_retry_throttled_ones() {
        let (transactions, written) = transact_tombstones(150, false).await;
        // Two chunks (100 + 50), each cancelled once and then written.
        assert_eq!(transactions, 4);
        // Each chunk's first item failed its guard: not written, not retried.
        let expected: Vec<String> = (0..150)
            .filter(|i| *i != 0 && *i != 100)
            .map(|i| format!("ad{i:03}"))
            .collect();
        assert_eq!(written, expected);
    }

    /// A live-index change travels in its ad's transaction and shares its fate: dropped
    /// with an ad refused by its guard, written with one that is written; a write with
    /// its change counts two of the transaction's 100 actions.
    #[tokio::test]
    async fn live_index_changes_commit_or_drop_with_their_ad() {
        let (transactions, written) = transact_tombstones(60, true).await;
        // Two chunks (50 + 10 writes, 100 + 20 actions), each cancelled once, then written.
        assert_eq!(transactions, 4);
        // Each chunk's first ad failed its guard: neither it nor its index change is
        // written; every other ad is written with its change.
        let mut expected: Vec<String> = (0..60)
            .filter(|i| *i != 0 && *i != 50)
            .flat_map(|i| [format!("ad{i:03}"), format!("unlive:ad{i:03}")])
            .collect();
        expected.sort();
        assert_eq!(written, expected);
    }

    #[tokio::test]
    async fn put_retries_unprocessed_items_and_writes_the_checkpoint_last() {
        let (store, seen) = faked().await;
        let states: Vec<AdState> = (0..30)
            .map(|i| tombstone("p1", format!("ad{i:02}")))
            .collect();

        store.put(&states, Some(7)).await.expect("put");

        let seen = seen.lock().expect("lock");
        // The registry (1 item), the live index (25 + 5) and the ads (25 + 5): five
        // batches, each sent twice.
        let batch_writes = seen
            .operations
            .iter()
            .filter(|o| *o == "BatchWriteItem")
            .count();
        assert_eq!(batch_writes, 10, "{:?}", seen.operations);
        // The index changes are durable before any ad item.
        let first_ad = seen
            .written
            .iter()
            .position(|name| name.starts_with("ad"))
            .expect("ads written");
        assert!(
            seen.written[first_ad..]
                .iter()
                .all(|name| name.starts_with("ad")),
            "{:?}",
            seen.written
        );
        let mut written = seen.written.clone();
        written.sort();
        let mut expected: Vec<String> = (0..30)
            .flat_map(|i| [format!("ad{i:02}"), format!("unlive:ad{i:02}")])
            .collect();
        expected.push("p1".into());
        expected.sort();
        assert_eq!(written, expected);
        assert_eq!(
            seen.written_at_checkpoint,
            Some(61),
            "the checkpoint must follow every item"
        );
    }
}
