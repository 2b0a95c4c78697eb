//! The index's settings and mapping, and how an ad becomes an OpenSearch document.
//!
//! The layout mirrors the tantivy schema of the local backend field for field, so both
//! indexes answer the same queries the same way:
//!
//! | field | type | why |
//! |---|---|---|
//! | `adId`, `publisherId` | keyword | identity; exact publisher filter |
//! | `title`, `description`, `category`, `tags` | text ([`ANALYZER`]) | the `multi_match` |
//! | `categoryExact`, `tagExact` | keyword | exact filters (absent for an empty category) |
//! | `price` | double | range filter; absent when the ad has no price |
//! | `createdMs` | long | "newest first" when there is no text |
//! | `version` | long | the ad version, also the document's external `_version` |
//! | `status` | keyword | `live`, `deleted` (a tombstone) or `checkpoint` |
//! | `checkpoint` | long | only in the projection checkpoint document |
//! | `ad` | object, not indexed | the whole ad as the API returns it |
//!
//! A deleted ad is a tombstone document, indexed with the delete revision's version like
//! any other revision, not an OpenSearch delete: OpenSearch forgets a deleted document's
//! version after `index.gc_deletes`, and an older revision delivered after that would
//! bring the ad back. Searches require `status: live`.
//!
//! The mapping is `dynamic: strict`, so a document that does not fit is refused by
//! OpenSearch (a `strict_dynamic_mapping_exception`) instead of silently growing the
//! mapping.

use adledger_engine::Ad;
use adledger_engine::ports::AdState;
use adledger_engine::revision::Revision;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Number, Value, json};

use super::error::OpenSearchError;

/// The analyzer of the text fields: words, lower-cased, accents folded ("Café" finds
/// "cafe"), tokens over 40 characters dropped — as the tantivy index does.
pub(crate) const ANALYZER: &str = "adledger_text";
/// `status` of a searchable ad.
pub(crate) const LIVE: &str = "live";
/// `status` of a tombstone.
pub(crate) const DELETED: &str = "deleted";
/// `status` of the checkpoint document.
pub(crate) const CHECKPOINT: &str = "checkpoint";
/// The `_id` of the projection checkpoint document. Ad ids are ULIDs (upper-case
/// Crockford base 32), so a lower-case id with a dot never collides with one.
pub(crate) const CHECKPOINT_ID: &str = "adledger.checkpoint";

/// The body of `PUT /<index>`: settings and the explicit mapping.
///
/// `index.gc_deletes` is 0 because the index never deletes documents on the projection
/// path (deletes are tombstones), and the only real delete — `put` lowering a version,
/// see `bulk.rs` — must not be refused afterwards by the forgotten document's version.
pub fn index_definition() -> Value {
    let text = json!({ "type": "text", "analyzer": ANALYZER });
    json!({
        "settings": {
            "index": { "gc_deletes": "0ms" },
            "analysis": {
                "filter": {
                    "adledger_long_tokens": { "type": "length", "max": 40 }
                },
                "analyzer": {
                    ANALYZER: {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": ["adledger_long_tokens", "lowercase", "asciifolding"]
                    }
                }
            }
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "adId": { "type": "keyword" },
                "publisherId": { "type": "keyword" },
                "title": text,
                "description": text,
                "category": text,
                "tags": text,
                "categoryExact": { "type": "keyword" },
                "tagExact": { "type": "keyword" },
                "price": { "type": "double" },
                "createdMs": { "type": "long" },
                "version": { "type": "long" },
                "status": { "type": "keyword" },
                "checkpoint": { "type": "long" },
                "ad": { "type": "object", "enabled": false }
            }
        }
    })
}

/// One document to write: its `_id`, the ad version (its external `_version`) and its
/// source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AdDocument {
    pub(crate) id: String,
    pub(crate) version: u64,
    pub(crate) source: Value,
}

impl AdDocument {
    /// The document after `revision`: the live ad, or a tombstone for a delete.
    pub(crate) fn of_revision(revision: &Revision) -> Result<AdDocument, OpenSearchError> {
        let metadata = &revision.body.metadata;
        document(
            &metadata.id,
            &metadata.publisher_id,
            metadata.version,
            metadata.tx_time,
            revision.body.data.as_ref(),
        )
    }

    /// The document of a stored state (a restore, a replay, a rebuild).
    pub(crate) fn of_state(state: &AdState) -> Result<AdDocument, OpenSearchError> {
        document(
            &state.key.ad_id,
            &state.key.publisher_id,
            state.version,
            state.updated_at,
            state.ad.as_ref(),
        )
    }
}

fn document(
    ad_id: &str,
    publisher_id: &str,
    version: u64,
    time: DateTime<Utc>,
    ad: Option<&Ad>,
) -> Result<AdDocument, OpenSearchError> {
    let mut source = Map::new();
    source.insert("adId".into(), ad_id.into());
    source.insert("publisherId".into(), publisher_id.into());
    source.insert("version".into(), version.into());
    match ad {
        None => {
            source.insert("status".into(), DELETED.into());
        }
        Some(ad) => {
            source.insert("status".into(), LIVE.into());
            source.insert("title".into(), ad.ad_title.as_str().into());
            source.insert("description".into(), ad.ad_description.as_str().into());
            source.insert("category".into(), ad.category.as_str().into());
            if !ad.category.is_empty() {
                source.insert("categoryExact".into(), ad.category.as_str().into());
            }
            source.insert("tags".into(), ad.tags.clone().into());
            source.insert("tagExact".into(), ad.tags.clone().into());
            if let Some(price) = ad.price {
                source.insert("price".into(), Value::Number(price_number(price)?));
            }
            source.insert("createdMs".into(), created_ms(ad_id, time).into());
            let whole = serde_json::to_value(ad).map_err(|e| OpenSearchError::Encode {
                what: format!("ad {ad_id}"),
                reason: e.to_string(),
            })?;
            source.insert("ad".into(), whole);
        }
    }
    Ok(AdDocument {
        id: ad_id.to_string(),
        version,
        source: Value::Object(source),
    })
}

/// The checkpoint document's source.
pub(crate) fn checkpoint_document(checkpoint: u64) -> Value {
    json!({ "status": CHECKPOINT, "checkpoint": checkpoint })
}

/// A price as a JSON number with exactly its decimal digits (serde_json keeps numbers as
/// text here). OpenSearch parses it into a double with correct rounding, which is
/// monotonic, so a range bound never drops an ad inside the decimal range — the same
/// caveat as the tantivy index's f64 field.
pub(crate) fn price_number(price: Decimal) -> Result<Number, OpenSearchError> {
    let text = price.normalize().to_string();
    text.parse::<Number>().map_err(|e| OpenSearchError::Encode {
        what: format!("price {text}"),
        reason: e.to_string(),
    })
}

/// Milliseconds of the ad's creation: the ULID's timestamp (stable across updates, as on
/// the local backend); for an id that is not a ULID, the given time.
fn created_ms(ad_id: &str, time: DateTime<Utc>) -> u64 {
    ulid::Ulid::from_string(ad_id)
        .map(|id| id.timestamp_ms())
        .unwrap_or_else(|_| u64::try_from(time.timestamp_millis()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn prices_keep_their_digits_and_drop_trailing_zeros() {
        let n = price_number(Decimal::from_str("120.50").expect("decimal")).expect("number");
        assert_eq!(n.to_string(), "120.5");
        let n = price_number(Decimal::from_str("0").expect("decimal")).expect("number");
        assert_eq!(n.to_string(), "0");
        let n = price_number(Decimal::from_str("19.990000000000000000000000001").expect("d"))
            .expect("number");
        assert_eq!(n.to_string(), "19.990000000000000000000000001");
    }

    #[test]
    fn the_mapping_is_strict_and_names_every_document_field() {
        let definition = index_definition();
        let properties = definition["mappings"]["properties"]
            .as_object()
            .expect("properties");
        assert_eq!(definition["mappings"]["dynamic"], "strict");
        for field in [
            "adId",
            "publisherId",
            "title",
            "description",
            "category",
            "tags",
            "categoryExact",
            "tagExact",
            "price",
            "createdMs",
            "version",
            "status",
            "checkpoint",
            "ad",
        ] {
            assert!(properties.contains_key(field), "{field} is mapped");
        }
    }
}
