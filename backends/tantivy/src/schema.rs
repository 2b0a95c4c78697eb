//! How an ad maps to a tantivy document, and back.
//!
//! | field | options | why |
//! |---|---|---|
//! | `adId` | STRING, STORED, FAST | the term an upsert or delete replaces; breaks ranking ties (`order.rs`) |
//! | `publisherId` | STRING | exact filter |
//! | `text` (multi-valued) | TEXT ([`ANALYZER`]), with frequencies and positions | full-text search: title, description, category and tags as one field, so a word is one posting list to rank and to count (`query.rs`) |
//! | `categoryExact`, `tagExact` (multi-valued) | STRING | exact filters |
//! | `price` | f64 FAST, INDEXED | range filter; [`NO_PRICE`] when the ad has none (and in tombstones) |
//! | `createdMs` | u64 FAST | "newest first": the ULID's millisecond timestamp |
//! | `version` | u64 FAST, STORED | makes `apply` idempotent by version; a hit's version |
//! | `updatedAt` | STORED | the revision's commit time (RFC 3339, nanoseconds): a hit's `updatedAt` |
//! | `status` | STRING | `live`, or `deleted` for a tombstone |
//! | `view` | STORED | the ad's [`AdView`] JSON: the exact bytes the API answers for it (a GET's), which a search splices into its response |
//!
//! A hit is served from its stored fields alone, without a read of the state store per
//! hit, and (`search_json`) without parsing the ad or serializing it again. The parsed
//! path (`search`) reads the ad's fields from the same JSON, and the exact version and
//! commit time from their own fields (`view` shows the time to the millisecond).
//!
//! A deleted ad stays as a tombstone document (id, publisher, version, `status:deleted`)
//! so that re-applying an older revision after the delete cannot bring the ad back.
//! Searches without text require `status:live`; text never matches a tombstone, which
//! has no text fields.

use adledger_engine::Ad;
use adledger_engine::ad_view::AdView;
use adledger_engine::ports::IndexedVersion;
use adledger_engine::revision::RevisionMetadata;
use chrono::{DateTime, SecondsFormat};
use rust_decimal::Decimal;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value as _,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{Index, TantivyDocument};

use crate::error::{IndexError, corrupt};

/// The analyzer of the text fields: words, lower-cased, accents folded ("Café" finds
/// "cafe"); tokens over 40 bytes (base64 blobs, URLs) are dropped as they only bloat the
/// index.
pub(crate) const ANALYZER: &str = "adledger_text";
pub(crate) const AD_ID: &str = "adId";
pub(crate) const CREATED_MS: &str = "createdMs";
pub(crate) const VERSION: &str = "version";
pub(crate) const LIVE: &str = "live";
const DELETED: &str = "deleted";

/// The schema and its fields.
#[derive(Debug, Clone)]
pub(crate) struct AdSchema {
    pub(crate) schema: Schema,
    pub(crate) ad_id: Field,
    pub(crate) publisher_id: Field,
    pub(crate) text: Field,
    pub(crate) category_exact: Field,
    pub(crate) tag_exact: Field,
    pub(crate) price: Field,
    pub(crate) created_ms: Field,
    pub(crate) version: Field,
    pub(crate) status: Field,
    pub(crate) updated_at: Field,
    pub(crate) view: Field,
}

impl AdSchema {
    pub(crate) fn new() -> AdSchema {
        let mut builder = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let ad_id = builder.add_text_field(AD_ID, STRING | STORED | FAST);
        let publisher_id = builder.add_text_field("publisherId", STRING);
        let text = builder.add_text_field("text", text);
        let category_exact = builder.add_text_field("categoryExact", STRING);
        let tag_exact = builder.add_text_field("tagExact", STRING);
        let price = builder.add_f64_field("price", FAST | INDEXED);
        let created_ms = builder.add_u64_field(CREATED_MS, FAST);
        let version = builder.add_u64_field(VERSION, FAST | STORED);
        let status = builder.add_text_field("status", STRING);
        let updated_at = builder.add_text_field("updatedAt", STORED);
        let view = builder.add_text_field("view", STORED);
        AdSchema {
            schema: builder.build(),
            ad_id,
            publisher_id,
            text,
            category_exact,
            tag_exact,
            price,
            created_ms,
            version,
            status,
            updated_at,
            view,
        }
    }

    /// Registers [`ANALYZER`]; tantivy does not persist analyzers, so every open must.
    pub(crate) fn register_analyzer(index: &Index) {
        index.tokenizers().register(ANALYZER, Self::analyzer());
    }

    /// [`ANALYZER`]: how the text fields are split into terms, at indexing and in queries.
    pub(crate) fn analyzer() -> TextAnalyzer {
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .build()
    }

    /// The document of a live ad at `version`.
    pub(crate) fn live(
        &self,
        ad: &Ad,
        metadata: &RevisionMetadata,
    ) -> Result<TantivyDocument, IndexError> {
        let view = AdView::new(ad.clone(), metadata.version, &metadata.tx_time);
        let json = serde_json::to_string(&view)
            .map_err(|e| corrupt(format!("cannot encode ad {}: {e}", ad.ad_id)))?;
        let mut doc = TantivyDocument::new();
        doc.add_text(self.ad_id, &ad.ad_id);
        doc.add_text(self.publisher_id, &ad.publisher_id);
        if !ad.category.is_empty() {
            doc.add_text(self.category_exact, &ad.category);
        }
        for tag in &ad.tags {
            doc.add_text(self.tag_exact, tag);
        }
        // One value each: tantivy leaves a position between values, so a phrase never
        // matches across two of them (the end of the title and the start of the
        // description).
        for text in [&ad.ad_title, &ad.ad_description, &ad.category]
            .into_iter()
            .chain(&ad.tags)
        {
            doc.add_text(self.text, text);
        }
        doc.add_f64(self.price, ad.price.map_or(NO_PRICE, price_to_f64));
        doc.add_u64(self.created_ms, created_ms(metadata));
        doc.add_u64(self.version, metadata.version);
        doc.add_text(self.status, LIVE);
        doc.add_text(
            self.updated_at,
            metadata
                .tx_time
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        );
        doc.add_text(self.view, json);
        Ok(doc)
    }

    /// The tombstone of a deleted ad.
    pub(crate) fn tombstone(&self, metadata: &RevisionMetadata) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_text(self.ad_id, &metadata.id);
        doc.add_text(self.publisher_id, &metadata.publisher_id);
        doc.add_u64(self.version, metadata.version);
        doc.add_f64(self.price, NO_PRICE);
        doc.add_text(self.status, DELETED);
        doc
    }

    /// The API's JSON of the ad stored in a live document.
    pub(crate) fn view_of(&self, doc: &TantivyDocument) -> Result<String, IndexError> {
        doc.get_first(self.view)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| corrupt("search document without its stored ad"))
    }

    /// The ad stored in a live document (its view's fields; `version` and `updatedAt`
    /// are not fields of an [`Ad`] and are ignored).
    pub(crate) fn ad_of(&self, doc: &TantivyDocument) -> Result<Ad, IndexError> {
        let json = doc
            .get_first(self.view)
            .and_then(|v| v.as_str())
            .ok_or_else(|| corrupt("search document without its stored ad"))?;
        serde_json::from_str(json).map_err(|e| corrupt(format!("search document's ad: {e}")))
    }

    /// The version and commit time stored in a live document.
    pub(crate) fn version_of(&self, doc: &TantivyDocument) -> Result<IndexedVersion, IndexError> {
        let version = doc
            .get_first(self.version)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt("search document without its stored version"))?;
        let at = doc
            .get_first(self.updated_at)
            .and_then(|v| v.as_str())
            .ok_or_else(|| corrupt("search document without its commit time"))?;
        let updated_at = DateTime::parse_from_rfc3339(at)
            .map_err(|e| corrupt(format!("search document's commit time {at:?}: {e}")))?
            .to_utc();
        Ok(IndexedVersion {
            version,
            updated_at,
        })
    }
}

/// The `price` of a document without one: below every bound a query sets (see
/// `query.rs`), so it never matches a price filter.
///
/// Every document has a price value so that the column is dense: a range filter over an
/// optional column maps each matching row back to its document with a rank/select
/// structure, which took a third of a search's CPU when a quarter of the searches had a
/// `minPrice`.
pub(crate) const NO_PRICE: f64 = f64::NEG_INFINITY;

/// The price as the f64 the fast field holds.
///
/// Goes through the decimal's text because Rust's float parsing rounds correctly, which
/// makes the conversion monotonic: `a <= b` implies `f64(a) <= f64(b)`, so a range
/// filter never drops an ad that is inside the decimal range. The caveat: two decimals
/// that differ beyond f64's ~15–17 significant digits map to the same f64, so a bound can
/// admit a price that exceeds it by less than that (such as 0.10000000000000000001 for
/// `maxPrice=0.1`). The stored ad, and so the price a client sees, stays exact.
pub(crate) fn price_to_f64(price: Decimal) -> f64 {
    // `Decimal` displays plain digits (no exponent, at most 29 of them), which always
    // parse as a finite f64: the fallback is unreachable.
    price.to_string().parse().unwrap_or(0.0)
}

/// Milliseconds of the ad's creation: the ULID's timestamp (the id is assigned at
/// creation, so this is stable across updates); for an id that is not a ULID, the
/// revision's time.
fn created_ms(metadata: &RevisionMetadata) -> u64 {
    ulid::Ulid::from_string(&metadata.id)
        .map(|id| id.timestamp_ms())
        .unwrap_or_else(|_| u64::try_from(metadata.tx_time.timestamp_millis()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn price_conversion_is_monotonic_at_the_edges() {
        let a = Decimal::from_str("19.99").unwrap();
        let b = Decimal::from_str("19.990000000000000000000000001").unwrap();
        assert!(price_to_f64(a) <= price_to_f64(b));
        assert_eq!(price_to_f64(Decimal::from_str("0").unwrap()), 0.0);
        assert_eq!(price_to_f64(Decimal::MAX), 7.922_816_251_426_434e28);
    }
}
