//! Reading and writing DynamoDB attribute values, with errors that name what is wrong.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::{AwsError, corrupt};

/// One DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn b(value: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

/// A number attribute as `u64`; `what` names the item in the error.
pub(crate) fn get_u64(item: &Item, name: &str, what: &dyn Fn() -> String) -> Result<u64, AwsError> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text.parse().map_err(|_| {
            corrupt(format!(
                "{}: attribute {name} = {text:?} is not a u64",
                what()
            ))
        }),
        Some(_) => Err(corrupt(format!(
            "{}: attribute {name} is not a number",
            what()
        ))),
        None => Err(corrupt(format!("{}: attribute {name} is missing", what()))),
    }
}

/// A number attribute as `u64`, or `None` if absent.
pub(crate) fn get_opt_u64(
    item: &Item,
    name: &str,
    what: &dyn Fn() -> String,
) -> Result<Option<u64>, AwsError> {
    if item.contains_key(name) {
        get_u64(item, name, what).map(Some)
    } else {
        Ok(None)
    }
}

pub(crate) fn get_str<'a>(
    item: &'a Item,
    name: &str,
    what: &dyn Fn() -> String,
) -> Result<&'a str, AwsError> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text),
        Some(_) => Err(corrupt(format!(
            "{}: attribute {name} is not a string",
            what()
        ))),
        None => Err(corrupt(format!("{}: attribute {name} is missing", what()))),
    }
}

pub(crate) fn get_bytes<'a>(
    item: &'a Item,
    name: &str,
    what: &dyn Fn() -> String,
) -> Result<&'a [u8], AwsError> {
    match item.get(name) {
        Some(AttributeValue::B(blob)) => Ok(blob.as_ref()),
        Some(_) => Err(corrupt(format!(
            "{}: attribute {name} is not binary",
            what()
        ))),
        None => Err(corrupt(format!("{}: attribute {name} is missing", what()))),
    }
}

pub(crate) fn get_bool(
    item: &Item,
    name: &str,
    what: &dyn Fn() -> String,
) -> Result<bool, AwsError> {
    match item.get(name) {
        Some(AttributeValue::Bool(value)) => Ok(*value),
        Some(_) => Err(corrupt(format!(
            "{}: attribute {name} is not a boolean",
            what()
        ))),
        None => Err(corrupt(format!("{}: attribute {name} is missing", what()))),
    }
}

/// An upper bound of an item's size as DynamoDB counts it (names plus values), for
/// refusing writes that cannot fit before sending them.
pub(crate) fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        // DynamoDB stores numbers in at most 21 bytes.
        AttributeValue::N(_) => 21,
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        // Sets and future variants: count generously.
        AttributeValue::Ss(values) => values.iter().map(|v| v.len() + 1).sum(),
        AttributeValue::Ns(values) => values.len() * 22,
        AttributeValue::Bs(values) => values.iter().map(|v| v.as_ref().len() + 1).sum(),
        _ => 1024,
    }
}
