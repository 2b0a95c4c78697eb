//! The projector lease: which of several server processes projects the journal into the
//! shared DynamoDB state store.
//!
//! One item in the journal table (the table every process of a ledger already shares,
//! and the one no maintenance command clears):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | lease | `lease#<name>` | 0 | `owner` (S), `expires` (N, Unix ms), `renewed` (N, Unix ms) |
//!
//! Taking and renewing are the same conditional `UpdateItem`: write this process as the
//! owner with a new expiry if the item has no owner, is already ours, or has expired by
//! this process's clock. DynamoDB evaluates the condition and the write atomically, so of
//! processes racing for a free or lapsed lease exactly one wins. A refused condition is
//! not an error: it returns who holds the lease and when it lapses. Releasing is a
//! `DeleteItem` conditioned on still being the owner.
//!
//! Expiry is judged by wall clocks: the taker compares the stored expiry with its own
//! clock, and the engine stops a holder from writing a quarter of the lease before its
//! expiry (by its own monotonic clock). Clocks that disagree by more than that margin can
//! make two holders overlap; the state store's writes are conditional on the ad version,
//! so an overlap duplicates work but never stores an older revision over a newer one.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adledger_engine::Result;
use adledger_engine::ports::{LeaseGrant, ProjectionLease};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Utc};

use crate::attributes::{Item, get_str, get_u64, n, s};
use crate::error::{AwsError, request};

const PK: &str = "pk";
const SK: &str = "sk";
const OWNER: &str = "owner";
const EXPIRES: &str = "expires";
const RENEWED: &str = "renewed";

/// A lease in a ledger's journal table, held by one process at a time.
///
/// Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct DynamoLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
    pk: String,
    owner: String,
    duration: Duration,
}

impl std::fmt::Debug for DynamoLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoLease")
            .field("table", &self.table)
            .field("pk", &self.pk)
            .field("owner", &self.owner)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

/// Who holds a lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's owner id.
    pub owner: String,
    /// When the lease lapses unless renewed.
    pub expires: DateTime<Utc>,
}

impl DynamoLease {
    /// How long a grant lasts by default. The holder renews every third of it; a crashed
    /// holder's lease is taken over by another process at most this long after its last
    /// renewal.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

    /// The lease named `name` in `journal_table`, taken on behalf of `owner` (unique per
    /// process: see [`DynamoLease::process_owner`]).
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        journal_table: &str,
        name: &str,
        owner: impl Into<String>,
    ) -> DynamoLease {
        DynamoLease {
            client,
            table: journal_table.to_string(),
            pk: format!("lease#{name}"),
            owner: owner.into(),
            duration: DynamoLease::DEFAULT_DURATION,
        }
    }

    /// The same lease with grants of `duration` (at least 1 ms).
    pub fn with_duration(mut self, duration: Duration) -> DynamoLease {
        self.duration = duration.max(Duration::from_millis(1));
        self
    }

    /// How long each grant lasts.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// An owner id no other process uses: the process id plus a random ULID, so two
    /// processes on different hosts with the same pid, or a restarted process, differ.
    pub fn process_owner() -> String {
        use adledger_engine::ports::IdGenerator;
        let id = adledger_engine::ids::UlidGenerator::random().next_id(Utc::now());
        format!("pid{}-{id}", std::process::id())
    }

    /// The stored holder, if any (expired or not).
    pub async fn holder(&self) -> Result<Option<LeaseHolder>> {
        self.holder_inner().await.map_err(Into::into)
    }

    async fn holder_inner(&self) -> Result<Option<LeaseHolder>, AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(&self.pk))
            .key(SK, n(0))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| request("GetItem", &self.table, e))?;
        output.item.as_ref().map(|i| self.decode(i)).transpose()
    }

    fn decode(&self, item: &Item) -> Result<LeaseHolder, AwsError> {
        let what = || format!("lease item {}", self.pk);
        let owner = get_str(item, OWNER, &what)?.to_string();
        let millis = get_u64(item, EXPIRES, &what)?;
        let expires = i64::try_from(millis)
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .ok_or_else(|| AwsError::Corrupt(format!("{}: expiry {millis} ms", what())))?;
        Ok(LeaseHolder { owner, expires })
    }

    async fn acquire_inner(&self) -> Result<LeaseGrant, AwsError> {
        let now = unix_millis();
        let duration = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(&self.pk))
            .key(SK, n(0))
            .update_expression("SET #o = :me, #e = :expires, #r = :now")
            .condition_expression("attribute_not_exists(#o) OR #o = :me OR #e < :now")
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#e", EXPIRES)
            .expression_attribute_names("#r", RENEWED)
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":expires", n(now.saturating_add(duration)))
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let stored = match result {
            Ok(_) => {
                tracing::debug!(lease = %self.pk, owner = %self.owner, "lease granted");
                return Ok(LeaseGrant::Held {
                    valid_for: self.duration,
                });
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    refused.item().cloned()
                }
                _ => return Err(request("UpdateItem", &self.table, e)),
            },
        };
        // Not every DynamoDB implementation returns the refusing item; read it then.
        let holder = match stored {
            Some(item) => Some(self.decode(&item)?),
            None => self.holder_inner().await?,
        };
        Ok(match holder {
            Some(holder) => {
                let expires = u64::try_from(holder.expires.timestamp_millis()).unwrap_or(0);
                LeaseGrant::HeldElsewhere {
                    owner: holder.owner,
                    expires_in: Duration::from_millis(expires.saturating_sub(now)),
                }
            }
            // Released between our write and our read: free now, try again at once.
            None => LeaseGrant::HeldElsewhere {
                owner: String::new(),
                expires_in: Duration::ZERO,
            },
        })
    }

    async fn release_inner(&self) -> Result<(), AwsError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(&self.pk))
            .key(SK, n(0))
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else's (or nobody's) lease: nothing of ours to release.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(request("DeleteItem", &self.table, e)),
        }
    }
}

#[async_trait]
impl ProjectionLease for DynamoLease {
    fn owner(&self) -> &str {
        &self.owner
    }

    async fn acquire(&self) -> Result<LeaseGrant> {
        self.acquire_inner().await.map_err(Into::into)
    }

    async fn release(&self) -> Result<()> {
        self.release_inner().await.map_err(Into::into)
    }
}

/// Milliseconds since the Unix epoch by this machine's clock (0 if it reads before 1970).
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The key of a lease item, for tests that inspect the table.
pub fn lease_item_key(name: &str) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    HashMap::from([
        (PK.to_string(), s(format!("lease#{name}"))),
        (SK.to_string(), n(0)),
    ])
}
