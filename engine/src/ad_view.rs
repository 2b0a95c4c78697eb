//! The JSON shape of an ad as the HTTP API answers it: its fields, its version and the
//! commit time of that version.
//!
//! It lives in the engine, not the server, so a search index can store each ad in
//! exactly these bytes and a search can answer them without parsing and re-serializing
//! (`SearchIndex::search_json`): a GET and a search hit serialize this one type. Prices
//! go through [`price_json`], which writes the decimal's own digits as a JSON number.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::ad::{Ad, price_json};
use crate::ports::AdState;
use crate::revision::Revision;
use crate::time::format_rfc3339_millis;

/// An ad with its version and the commit time of that version.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdView {
    ad_id: String,
    publisher_id: String,
    ad_title: String,
    ad_description: String,
    #[serde(serialize_with = "price_json::serialize")]
    price: Option<Decimal>,
    currency: String,
    category: String,
    tags: Vec<String>,
    version: u64,
    updated_at: String,
}

impl AdView {
    /// The ad at `version`, committed at `updated_at`.
    pub fn new(ad: Ad, version: u64, updated_at: &DateTime<Utc>) -> AdView {
        AdView {
            ad_id: ad.ad_id,
            publisher_id: ad.publisher_id,
            ad_title: ad.ad_title,
            ad_description: ad.ad_description,
            price: ad.price,
            currency: ad.currency,
            category: ad.category,
            tags: ad.tags,
            version,
            updated_at: format_rfc3339_millis(updated_at),
        }
    }

    /// The view of a live ad in the state store; `None` for a tombstone.
    pub fn from_state(state: AdState) -> Option<AdView> {
        let ad = state.ad?;
        Some(AdView::new(ad, state.version, &state.updated_at))
    }

    /// The ad as a revision left it; `None` for a delete.
    pub fn from_revision(revision: Revision) -> Option<AdView> {
        let version = revision.version();
        let at = revision.body.metadata.tx_time;
        revision.body.data.map(|ad| AdView::new(ad, version, &at))
    }
}
