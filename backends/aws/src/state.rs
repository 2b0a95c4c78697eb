//! The state read model in DynamoDB: each ad's latest revision, and the projection
//! checkpoint.
//!
//! | item | `publisherId` | `adId` | attributes |
//! |---|---|---|---|
//! | ad | publisher | ad id | `version`, `sequence`, `updatedAt` (RFC 3339, ns), `ad` (the ad as JSON) or `deleted = true` (a tombstone) |
//! | checkpoint | `#checkpoint` | `#checkpoint` | `checkpoint` |
//!
//! | publisher registry | `#publishers` | publisher | — |
//!
//! Publisher ids never contain `#`, so neither the checkpoint nor the registry is in any
//! publisher's list.
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
//! Each ad is one conditional Put, `attribute_not_exists(version) OR version < :v`: a
//! revision that is not newer fails the condition and is ignored, so replays, duplicates
//! and two projectors racing all converge. The checkpoint is written after the ads it
//! covers (DynamoDB cannot make a conditional-per-item batch atomic, and one refused
//! condition would cancel a whole transaction): after a crash the checkpoint is at most
//! behind its ads, and re-applying is harmless.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use adledger_engine::ports::{AdState, StateStore};
use adledger_engine::{Ad, AdKey, Result, Revision};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;

use crate::attributes::{Item, get_bool, get_str, get_u64, n, s};
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

/// Conditional Puts in flight at once during `apply`.
const APPLY_CONCURRENCY: usize = 16;
/// Items per BatchWriteItem (DynamoDB's limit).
const BATCH_WRITE_ITEMS: usize = 25;
/// Rounds of retrying items DynamoDB left unprocessed before giving up.
const UNPROCESSED_RETRIES: u32 = 10;

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

impl DynamoStateStore {
    /// Opens the state store in `table`, which must exist (see [`tables::create`]).
    pub async fn open(client: aws_sdk_dynamodb::Client, table: &str) -> Result<DynamoStateStore> {
        tables::require(&client, &TableSpec::state(table)).await?;
        Ok(DynamoStateStore {
            client,
            table: table.to_string(),
            registered: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes one ad unless the stored version is as new or newer.
    async fn put_if_newer(&self, item: Item, version: u64) -> Result<(), AwsError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#v) OR #v < :v")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":v", n(version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(request("PutItem", &self.table, e)),
        }
    }

    async fn apply_inner(&self, revisions: &[Revision], checkpoint: u64) -> Result<(), AwsError> {
        // Only the newest revision of each ad in the batch needs writing.
        let mut newest: HashMap<AdKey, &Revision> = HashMap::new();
        for revision in revisions {
            let entry = newest.entry(revision.key()).or_insert(revision);
            if revision.version() > entry.version() {
                *entry = revision;
            }
        }
        let writes = newest
            .into_values()
            .map(|revision| {
                Ok((
                    encode(&AdState::from_revision(revision))?,
                    revision.version(),
                ))
            })
            .collect::<Result<Vec<_>, AwsError>>()?;
        self.register(writes.iter().map(|(item, _)| item)).await?;
        let mut results = futures::stream::iter(writes)
            .map(|(item, version)| self.put_if_newer(item, version))
            .buffer_unordered(APPLY_CONCURRENCY);
        while let Some(result) = results.next().await {
            result?;
        }
        self.set_checkpoint(checkpoint).await
    }

    async fn set_checkpoint(&self, checkpoint: u64) -> Result<(), AwsError> {
        let mut item = checkpoint_key();
        item.insert(CHECKPOINT.to_string(), n(checkpoint));
        self.put_plain(item).await
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
        let mut results = futures::stream::iter(registry)
            .map(|item| self.put_plain(item))
            .buffer_unordered(APPLY_CONCURRENCY);
        while let Some(result) = results.next().await {
            result?;
        }
        drop(results);
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
        let items = last
            .into_values()
            .map(encode)
            .collect::<Result<Vec<_>, AwsError>>()?;
        self.register(items.iter()).await?;
        let mut results = futures::stream::iter(items)
            .map(|item| self.put_plain(item))
            .buffer_unordered(APPLY_CONCURRENCY);
        while let Some(result) = results.next().await {
            result?;
        }
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
        if limit == 0 {
            return Ok(ads);
        }
        // The cursor is the last ad id seen: DynamoDB's LastEvaluatedKey for this table.
        let mut start = after.map(|ad_id| {
            HashMap::from([
                (PUBLISHER.to_string(), s(publisher_id)),
                (AD_ID.to_string(), s(ad_id)),
            ])
        });
        // Tombstones are filtered after the page limit applies, so a page may come back
        // short; the loop ends when the page is full or DynamoDB has no more.
        loop {
            let wanted = limit - ads.len();
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#p = :p")
                .filter_expression("attribute_not_exists(#d)")
                .expression_attribute_names("#p", PUBLISHER)
                .expression_attribute_names("#d", DELETED)
                .expression_attribute_values(":p", s(publisher_id))
                .consistent_read(true)
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| request("Query", &self.table, e))?;
            for item in page.items() {
                ads.push(decode(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() && ads.len() < limit => start = Some(key),
                _ => {
                    ads.truncate(limit);
                    return Ok(ads);
                }
            }
        }
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
        match output.item {
            None => Ok(0),
            Some(item) => get_u64(&item, CHECKPOINT, &|| "state checkpoint".into()),
        }
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
                _ => return Ok(()),
            }
        }
    }

    async fn delete_all(&self, keys: &[Item]) -> Result<(), AwsError> {
        let mut requests = keys
            .iter()
            .map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(key.clone()))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(|e| AwsError::BadBatch(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut round = 0;
        while !requests.is_empty() {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| request("BatchWriteItem", &self.table, e))?;
            requests = output
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if !requests.is_empty() {
                round += 1;
                if round > UNPROCESSED_RETRIES {
                    return Err(AwsError::Request {
                        operation: "BatchWriteItem",
                        table: self.table.clone(),
                        message: "items still unprocessed after retries (throttled)".into(),
                        source: "unprocessed items".into(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(20 << round.min(6))).await;
            }
        }
        Ok(())
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
