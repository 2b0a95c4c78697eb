//! What this process's DynamoDB requests cost in capacity units, as DynamoDB itself
//! reports it (`ReturnConsumedCapacity: TOTAL`), so an operator can price a workload from
//! a run instead of from a spreadsheet guess.
//!
//! One SDK interceptor, [`ConsumedCapacity`], on every client this backend builds: before
//! serialization it asks for the total consumed capacity on every operation that can
//! report it (the call sites stay as they are), and after deserialization it adds what
//! the answer reports to per-operation totals — read and write capacity units, which are
//! what DynamoDB bills on demand as read and write request units. An answer that is an
//! error reports nothing, although DynamoDB bills a write refused by its condition (a lost
//! lease race, a lost append race): the totals are a floor of the bill, exact when writes
//! do not race.
//!
//! The totals are per process ([`consumed`], shown by `/healthz` as `dynamodbCapacity`) and
//! exported as `adledger_dynamodb_consumed_read_units` / `_write_units` gauges by
//! operation (units are fractional: an eventually consistent read of 4 KB is 0.5).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::{
    batch_get_item::{BatchGetItemInput, BatchGetItemOutput},
    batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput},
    delete_item::{DeleteItemInput, DeleteItemOutput},
    get_item::{GetItemInput, GetItemOutput},
    put_item::{PutItemInput, PutItemOutput},
    query::{QueryInput, QueryOutput},
    scan::{ScanInput, ScanOutput},
    transact_get_items::{TransactGetItemsInput, TransactGetItemsOutput},
    transact_write_items::{TransactWriteItemsInput, TransactWriteItemsOutput},
    update_item::{UpdateItemInput, UpdateItemOutput},
};
use aws_sdk_dynamodb::types::{self, ReturnConsumedCapacity};
use serde::Serialize;

/// Capacity units consumed by one kind of operation, as DynamoDB reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Units {
    /// Read capacity units (on demand: read request units).
    pub read: f64,
    /// Write capacity units (on demand: write request units).
    pub write: f64,
}

static TOTALS: Mutex<BTreeMap<&'static str, Units>> = Mutex::new(BTreeMap::new());

/// The capacity this process's DynamoDB requests consumed so far, by operation.
pub fn consumed() -> BTreeMap<&'static str, Units> {
    TOTALS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn record(operation: &'static str, reported: &[types::ConsumedCapacity]) {
    let mut units = Units::default();
    for c in reported {
        // A table's total, when given, already includes its indexes'.
        units.read += c.read_capacity_units.unwrap_or(0.0);
        units.write += c.write_capacity_units.unwrap_or(0.0);
        if c.read_capacity_units.is_none() && c.write_capacity_units.is_none() {
            // DynamoDB Local and some answers give only the total: a read operation's
            // units are reads, a write operation's are writes.
            let total = c.capacity_units.unwrap_or(0.0);
            if is_write(operation) {
                units.write += total;
            } else {
                units.read += total;
            }
        }
    }
    if units == Units::default() {
        return;
    }
    metrics::gauge!("adledger_dynamodb_consumed_read_units", "operation" => operation)
        .increment(units.read);
    metrics::gauge!("adledger_dynamodb_consumed_write_units", "operation" => operation)
        .increment(units.write);
    let mut totals = TOTALS.lock().unwrap_or_else(PoisonError::into_inner);
    let entry = totals.entry(operation).or_default();
    entry.read += units.read;
    entry.write += units.write;
}

fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
    )
}

/// The SDK interceptor that asks for and adds up consumed capacity.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsumedCapacity;

impl Intercept for ConsumedCapacity {
    fn name(&self) -> &'static str {
        "adledger::ConsumedCapacity"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        let total = Some(ReturnConsumedCapacity::Total);
        macro_rules! ask {
            ($($input:ty),+) => {
                $(if let Some(i) = input.downcast_mut::<$input>() {
                    i.return_consumed_capacity = total;
                    return Ok(());
                })+
            };
        }
        ask!(
            GetItemInput,
            PutItemInput,
            UpdateItemInput,
            DeleteItemInput,
            QueryInput,
            ScanInput,
            BatchGetItemInput,
            BatchWriteItemInput,
            TransactGetItemsInput,
            TransactWriteItemsInput
        );
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        macro_rules! one {
            ($($output:ty => $name:literal),+) => {
                $(if let Some(o) = output.downcast_ref::<$output>() {
                    if let Some(c) = &o.consumed_capacity {
                        record($name, std::slice::from_ref(c));
                    }
                    return Ok(());
                })+
            };
        }
        macro_rules! many {
            ($($output:ty => $name:literal),+) => {
                $(if let Some(o) = output.downcast_ref::<$output>() {
                    record($name, o.consumed_capacity.as_deref().unwrap_or_default());
                    return Ok(());
                })+
            };
        }
        one!(
            GetItemOutput => "GetItem",
            PutItemOutput => "PutItem",
            UpdateItemOutput => "UpdateItem",
            DeleteItemOutput => "DeleteItem",
            QueryOutput => "Query",
            ScanOutput => "Scan"
        );
        many!(
            BatchGetItemOutput => "BatchGetItem",
            BatchWriteItemOutput => "BatchWriteItem",
            TransactGetItemsOutput => "TransactGetItems",
            TransactWriteItemsOutput => "TransactWriteItems"
        );
        Ok(())
    }
}
