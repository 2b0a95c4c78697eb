//! Comparing two state stores: which ads one has that the other lacks, and which differ,
//! field by field. A shadow rebuild prints this before it is swapped in.
//!
//! Both stores are read with `scan`, whose contract orders entries by key, so the
//! comparison is one merge pass holding two pages in memory, however large the stores.

use std::cmp::Ordering;

use serde::Serialize;
use serde_json::Value;

use crate::ad::AdKey;
use crate::error::{Error, Result};
use crate::ports::{AdState, StateStore};

/// Entries read per `scan` call.
const PAGE: usize = 4096;

/// One ad present in both stores with different content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// The ad.
    pub publisher_id: String,
    /// The ad.
    pub ad_id: String,
    /// The fields that differ (`version`, `sequence`, `updatedAt`, `deleted`, or an ad
    /// field such as `adTitle`), in a stable order.
    pub fields: Vec<FieldDifference>,
}

/// One field's two values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDifference {
    /// The field's JSON name.
    pub field: String,
    /// Its value in the first (`left`, e.g. live) store.
    pub left: Value,
    /// Its value in the second (`right`, e.g. rebuilt) store.
    pub right: Value,
}

/// The differences between two stores, up to a limit per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDiff {
    /// Entries compared equal.
    pub equal: u64,
    /// How many ads only the right store has (the left lacks them).
    pub missing_count: u64,
    /// How many ads only the left store has.
    pub extra_count: u64,
    /// How many ads differ.
    pub different_count: u64,
    /// Ads only the right store has (first `limit`).
    pub missing: Vec<AdKey>,
    /// Ads only the left store has (first `limit`).
    pub extra: Vec<AdKey>,
    /// Ads that differ (first `limit`).
    pub different: Vec<Difference>,
}

impl StateDiff {
    /// Whether the stores hold the same entries.
    pub fn is_empty(&self) -> bool {
        self.missing_count == 0 && self.extra_count == 0 && self.different_count == 0
    }
}

/// Compares every entry of `left` with `right`, tombstones included; keeps the first
/// `limit` examples of each kind (the counts are complete).
pub async fn diff_states(
    left: &dyn StateStore,
    right: &dyn StateStore,
    limit: usize,
) -> Result<StateDiff> {
    let mut diff = StateDiff::default();
    let mut l = Pager::new(left);
    let mut r = Pager::new(right);
    loop {
        let (a, b) = (l.peek().await?.cloned(), r.peek().await?.cloned());
        match (a, b) {
            (None, None) => return Ok(diff),
            (Some(a), None) => {
                diff.extra_count += 1;
                push(&mut diff.extra, a.key, limit);
                l.advance();
            }
            (None, Some(b)) => {
                diff.missing_count += 1;
                push(&mut diff.missing, b.key, limit);
                r.advance();
            }
            (Some(a), Some(b)) => match a.key.cmp(&b.key) {
                Ordering::Less => {
                    diff.extra_count += 1;
                    push(&mut diff.extra, a.key, limit);
                    l.advance();
                }
                Ordering::Greater => {
                    diff.missing_count += 1;
                    push(&mut diff.missing, b.key, limit);
                    r.advance();
                }
                Ordering::Equal => {
                    let fields = field_differences(&a, &b)?;
                    if fields.is_empty() {
                        diff.equal += 1;
                    } else {
                        diff.different_count += 1;
                        if diff.different.len() < limit {
                            diff.different.push(Difference {
                                publisher_id: a.key.publisher_id.clone(),
                                ad_id: a.key.ad_id.clone(),
                                fields,
                            });
                        }
                    }
                    l.advance();
                    r.advance();
                }
            },
        }
    }
}

fn push<T>(list: &mut Vec<T>, item: T, limit: usize) {
    if list.len() < limit {
        list.push(item);
    }
}

/// The fields in which two states of one ad differ.
pub(crate) fn field_differences(a: &AdState, b: &AdState) -> Result<Vec<FieldDifference>> {
    let mut out = Vec::new();
    let mut check = |field: &str, left: Value, right: Value| {
        if left != right {
            out.push(FieldDifference {
                field: field.to_string(),
                left,
                right,
            });
        }
    };
    check("version", a.version.into(), b.version.into());
    check("sequence", a.sequence.into(), b.sequence.into());
    check(
        "updatedAt",
        crate::time::format_rfc3339_millis(&a.updated_at).into(),
        crate::time::format_rfc3339_millis(&b.updated_at).into(),
    );
    check("deleted", a.ad.is_none().into(), b.ad.is_none().into());
    let json = |state: &AdState| -> Result<serde_json::Map<String, Value>> {
        match &state.ad {
            None => Ok(serde_json::Map::new()),
            Some(ad) => match serde_json::to_value(ad) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Ok(serde_json::Map::new()),
                Err(e) => Err(Error::Corrupt(format!("ad {} as JSON: {e}", ad.ad_id))),
            },
        }
    };
    let (left, right) = (json(a)?, json(b)?);
    let mut names: Vec<&String> = left.keys().chain(right.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let l = left.get(name).cloned().unwrap_or(Value::Null);
        let r = right.get(name).cloned().unwrap_or(Value::Null);
        check(name, l, r);
    }
    Ok(out)
}

/// Pages through one store's `scan`.
struct Pager<'a> {
    store: &'a dyn StateStore,
    page: Vec<AdState>,
    at: usize,
    after: Option<AdKey>,
    done: bool,
}

impl<'a> Pager<'a> {
    fn new(store: &'a dyn StateStore) -> Self {
        Pager {
            store,
            page: Vec::new(),
            at: 0,
            after: None,
            done: false,
        }
    }

    async fn peek(&mut self) -> Result<Option<&AdState>> {
        if self.at >= self.page.len() && !self.done {
            self.page = self.store.scan(self.after.as_ref(), PAGE).await?;
            self.at = 0;
            match self.page.last() {
                Some(last) => self.after = Some(last.key.clone()),
                None => self.done = true,
            }
        }
        Ok(self.page.get(self.at))
    }

    fn advance(&mut self) {
        self.at += 1;
    }
}
