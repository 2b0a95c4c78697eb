//! [`DynamoSubscriptionStore`], the `SubscriptionStore` port on DynamoDB: one item per
//! subscription in the ledger's `<prefix>subscriptions` table, which every server process
//! of the ledger shares.
//!
//! | `pk` (S) | `name` (S) | attributes |
//! |---|---|---|
//! | `subscription` | the name | `revision` (N), `record` (S: the subscription as JSON, dead letters aside), `deadLetters` (B: the dead-letter ids, packed) |
//!
//! # Why a table of its own
//!
//! The journal table's sort key is a number, and a subscription's name (up to 64
//! characters) is not: in the journal table the records would need one partition each
//! (`subscription#<name>`), and listing them a Scan of the whole journal. The state table
//! is a read model that a rebuild clears. So `adledger aws init` creates a third table
//! whose records all share one partition key, sorted by name: [`list`] is one Query of
//! that partition (strongly consistent, in name order, as the port asks), never a Scan.
//! A server started on tables made before this table existed fails at startup naming
//! `adledger aws init`, which creates only what is missing.
//!
//! # Writes
//!
//! [`replace`] reads the record (strongly consistent), checks the engine's
//! [`check_replace`] rules on it (same revision; the checkpoint does not move backwards
//! within an epoch), then writes with one `PutItem` conditioned on the stored `revision`
//! being the one it read. DynamoDB evaluates the condition and the write atomically, so
//! of two processes replacing the same revision exactly one wins; the other gets
//! `Conflict` and nothing is written. Since every accepted write passed `check_replace`
//! against the revision it replaced, the checkpoint never moves backwards within an
//! epoch whoever writes. [`create`] is a `PutItem` conditioned on the name being free.
//! DynamoDB acknowledges a write once it is durable, so an acknowledged write survives a
//! crash of the process.
//!
//! # Size
//!
//! A DynamoDB item holds at most 400 KB. A record may carry up to
//! [`MAX_DEAD_LETTERS`](adledger_engine::subscription::MAX_DEAD_LETTERS) dead-letter
//! ids; as JSON strings those are about 280 KB, so they are stored packed instead: 10
//! bytes per id (block sequence, event index), 100 KB for a full list, leaving room for
//! the rest of the record (a test measures a full one). An id that is not in the feed's
//! canonical form (never written by delivery) keeps the whole list in the JSON instead.
//! A record that still does not fit is refused with `TooLarge` before anything is sent:
//! nothing is truncated. Every write rewrites the whole item, so a checkpoint write of a
//! record with a full dead-letter list costs about 100 write units.
//!
//! [`list`]: SubscriptionStore::list
//! [`replace`]: SubscriptionStore::replace
//! [`create`]: SubscriptionStore::create

use adledger_engine::feed::EventId;
use adledger_engine::subscription::{Subscription, SubscriptionStore, check_replace};
use adledger_engine::{Error, Result, VersionExpectation};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use crate::attributes::{Item, b, get_bytes, get_str, get_u64, item_size, n, s};
use crate::error::{AwsError, corrupt, request};
use crate::tables::{self, TableSpec};

const PK: &str = "pk";
const NAME: &str = "name";
const REVISION: &str = "revision";
const RECORD: &str = "record";
const DEAD_LETTERS: &str = "deadLetters";
/// The partition every record is in.
const PARTITION: &str = "subscription";
/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Bytes per packed dead-letter id: the block sequence (8) and the event index (2).
const PACKED_ID: usize = 10;

/// Subscriptions in a DynamoDB table shared by every process of the ledger.
///
/// Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct DynamoSubscriptionStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl std::fmt::Debug for DynamoSubscriptionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoSubscriptionStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoSubscriptionStore {
    /// Opens the store in `table`, which must exist (`adledger aws init` creates it): a
    /// missing table is reported now, not at the first request.
    pub async fn open(
        client: aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Result<DynamoSubscriptionStore> {
        tables::require(&client, &TableSpec::subscriptions(table)).await?;
        Ok(DynamoSubscriptionStore {
            client,
            table: table.to_string(),
        })
    }

    /// The stored item of `name`, if any (strongly consistent).
    async fn read(&self, name: &str) -> Result<Option<Item>, AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(PARTITION))
            .key(NAME, s(name))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| request("GetItem", &self.table, e))?;
        Ok(output.item)
    }

    async fn replace_inner(&self, new: &Subscription) -> Result<Subscription> {
        let Some(item) = self.read(&new.name).await? else {
            return Err(not_found(&new.name));
        };
        let stored = decode(&item)?;
        check_replace(&stored, new)?;
        let mut next = new.clone();
        next.revision = new.revision.saturating_add(1);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&next)?))
            .condition_expression("#r = :read")
            .expression_attribute_names("#r", REVISION)
            .expression_attribute_values(":read", n(stored.revision))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(next),
            Err(e) => match e.as_service_error() {
                // Written (or deleted) between our read and our write.
                Some(PutItemError::ConditionalCheckFailedException(refused)) => {
                    match refused.item() {
                        None => Err(not_found(&new.name)),
                        Some(now) => Err(AwsError::Conflict {
                            expected: VersionExpectation::Version(new.revision),
                            actual: VersionExpectation::Version(get_u64(now, REVISION, &|| {
                                what(&new.name)
                            })?),
                        }
                        .into()),
                    }
                }
                _ => Err(request("PutItem", &self.table, e).into()),
            },
        }
    }
}

#[async_trait]
impl SubscriptionStore for DynamoSubscriptionStore {
    async fn create(&self, subscription: &Subscription) -> Result<bool> {
        let mut stored = subscription.clone();
        stored.revision = 0;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&stored)?))
            .condition_expression("attribute_not_exists(#n)")
            .expression_attribute_names("#n", NAME)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(request("PutItem", &self.table, e).into()),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Subscription>> {
        match self.read(name).await? {
            Some(item) => Ok(Some(decode(&item)?)),
            None => Ok(None),
        }
    }

    async fn list(&self) -> Result<Vec<Subscription>> {
        let mut all = Vec::new();
        let mut start: Option<Item> = None;
        // Each page is at most 1 MB; `LastEvaluatedKey` says whether more follow.
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#p = :p")
                .expression_attribute_names("#p", PK)
                .expression_attribute_values(":p", s(PARTITION))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| request("Query", &self.table, e))?;
            for item in page.items() {
                all.push(decode(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(all)
    }

    async fn replace(&self, new: &Subscription) -> Result<Subscription> {
        self.replace_inner(new).await
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(PARTITION))
            .key(NAME, s(name))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| request("DeleteItem", &self.table, e))?;
        Ok(output.attributes.is_some_and(|old| !old.is_empty()))
    }
}

fn not_found(name: &str) -> Error {
    Error::NotFound {
        what: format!("subscription {name:?}"),
    }
}

fn what(name: &str) -> String {
    format!("subscription item {name:?}")
}

/// The item storing `subscription`; `TooLarge` if it cannot fit in one item.
fn encode(subscription: &Subscription) -> Result<Item, AwsError> {
    let packed = pack(&subscription.dead_letters);
    let mut record = subscription.clone();
    if packed.is_some() {
        record.dead_letters = Vec::new();
    }
    let json = serde_json::to_string(&record)
        .map_err(|e| corrupt(format!("encoding subscription {:?}: {e}", record.name)))?;
    let mut item = Item::from([
        (PK.to_string(), s(PARTITION)),
        (NAME.to_string(), s(&subscription.name)),
        (REVISION.to_string(), n(subscription.revision)),
        (RECORD.to_string(), s(json)),
    ]);
    if let Some(bytes) = packed.filter(|bytes| !bytes.is_empty()) {
        item.insert(DEAD_LETTERS.to_string(), b(bytes));
    }
    let size = item_size(&item);
    if size > MAX_ITEM_BYTES {
        return Err(AwsError::TooLarge(format!(
            "subscription {:?} would take {size} bytes, more than a DynamoDB item holds \
             ({MAX_ITEM_BYTES}); shorten its sink URL or filter",
            subscription.name
        )));
    }
    Ok(item)
}

/// The subscription an item stores.
fn decode(item: &Item) -> Result<Subscription, AwsError> {
    let name = get_str(item, NAME, &|| "a subscription item".to_string())?;
    let what = || what(name);
    let json = get_str(item, RECORD, &what)?;
    let mut subscription: Subscription =
        serde_json::from_str(json).map_err(|e| corrupt(format!("{}: {e}", what())))?;
    subscription.revision = get_u64(item, REVISION, &what)?;
    if item.contains_key(DEAD_LETTERS) {
        subscription.dead_letters = unpack(get_bytes(item, DEAD_LETTERS, &what)?)
            .ok_or_else(|| corrupt(format!("{}: {DEAD_LETTERS} is not packed ids", what())))?;
    }
    Ok(subscription)
}

/// The dead-letter ids packed, or `None` if one of them is not a canonical event id
/// (then the list stays in the JSON record).
fn pack(ids: &[String]) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(ids.len() * PACKED_ID);
    for id in ids {
        let event = EventId::parse(id).filter(|event| event.to_string() == *id)?;
        let index = u16::try_from(event.index).ok()?;
        bytes.extend_from_slice(&event.sequence.to_be_bytes());
        bytes.extend_from_slice(&index.to_be_bytes());
    }
    Some(bytes)
}

/// The ids [`pack`] packed; `None` if the bytes are not a whole number of ids.
fn unpack(bytes: &[u8]) -> Option<Vec<String>> {
    if !bytes.len().is_multiple_of(PACKED_ID) {
        return None;
    }
    bytes
        .chunks_exact(PACKED_ID)
        .map(|chunk| {
            let (sequence, index) = chunk.split_at(8);
            Some(
                EventId {
                    sequence: u64::from_be_bytes(sequence.try_into().ok()?),
                    index: u32::from(u16::from_be_bytes(index.try_into().ok()?)),
                }
                .to_string(),
            )
        })
        .collect()
}

/// The size DynamoDB would count for `subscription`'s item (an upper bound), for tests
/// and operators sizing records.
pub fn stored_size(subscription: &Subscription) -> Result<usize> {
    Ok(item_size(&encode(subscription)?))
}

#[cfg(test)]
mod tests {
    use adledger_engine::subscription::MAX_DEAD_LETTERS;
    use adledger_engine::testkit::subscriptions::sample_subscription;

    use super::*;

    #[test]
    fn dead_letters_round_trip_packed() {
        let ids = vec![
            "00000000000000000001-0000".to_string(),
            format!("{}-9999", u64::MAX),
        ];
        let packed = pack(&ids).expect("canonical ids pack");
        assert_eq!(packed.len(), 2 * PACKED_ID);
        assert_eq!(unpack(&packed), Some(ids));
        assert_eq!(unpack(&packed[..15]), None, "a torn list is refused");
    }

    #[test]
    fn non_canonical_ids_stay_in_the_record() {
        let mut sub = sample_subscription("s");
        sub.dead_letters = vec!["1-0".to_string(), "00000000000000000002-0000".to_string()];
        let item = encode(&sub).expect("fits");
        assert!(!item.contains_key(DEAD_LETTERS));
        assert_eq!(decode(&item).expect("decodes"), sub, "nothing is lost");
    }

    /// Gives the sample subscription's webhook a URL (a large part of a record).
    fn set_url(sub: &mut Subscription, url: String) {
        sub.sink.webhook_mut().expect("a webhook sink").url = url;
    }

    #[test]
    fn a_full_dead_letter_list_fits_in_one_item() {
        let mut sub = sample_subscription("s");
        set_url(
            &mut sub,
            format!("https://hooks.example.com/{}", "p".repeat(2000)),
        );
        sub.last_error = Some("e".repeat(4000));
        sub.dead_letter(
            (0..MAX_DEAD_LETTERS as u64).map(|i| format!("{:020}-{:04}", u64::MAX - i, 9999)),
        );
        let size = stored_size(&sub).expect("fits");
        assert!(size < 110_000, "{size} bytes");
        let item = encode(&sub).expect("fits");
        assert_eq!(decode(&item).expect("decodes"), sub);
    }

    #[test]
    fn a_record_too_large_is_refused_whole() {
        let mut sub = sample_subscription("s");
        set_url(
            &mut sub,
            format!("https://hooks.example.com/{}", "p".repeat(MAX_ITEM_BYTES)),
        );
        assert!(matches!(stored_size(&sub), Err(Error::TooLarge(_))));
    }
}
