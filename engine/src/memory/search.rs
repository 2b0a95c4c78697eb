//! The search read model in memory: one document per ad id, matched word by word.
//!
//! What a search returns follows the local backend's tantivy index, so tests written
//! against this one hold there:
//!
//! - **Words**: title, description, category and tags are split into runs of
//!   alphanumeric characters; runs of 40 bytes or more are dropped; the rest are
//!   lower-cased and their accents folded ("Café" is found by "cafe").
//! - **Text**: the query is split the same way and an ad matches if it holds any of its
//!   words (tantivy's default `OR`); the operator words `AND`, `OR`, `NOT` are ignored.
//!   Query syntax (phrases, `+`/`-`, `field:`) is not interpreted: its punctuation only
//!   separates words, so no input fails a search. Empty text matches every live ad.
//! - **Filters**: publisher, category and tag match exactly; price bounds are inclusive,
//!   compared as exact decimals, and an ad without a price never matches one.
//! - **Order**: with text, the ads holding more of the query's distinct words first;
//!   without, the newest (by the id's ULID time) first; ties by ad id ascending, so the
//!   same documents give the same pages whatever order they were indexed in.
//! - **Versions**: a deleted ad stays as a tombstone carrying its version, so an older
//!   revision applied later cannot bring it back.

use std::collections::{BTreeSet, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::ad::Ad;
use crate::error::Result;
use crate::ports::{AdState, IndexedVersion, SearchIndex, SearchPage, SearchQuery};
use crate::revision::Revision;

/// Words this long (in bytes, before folding) or longer are not indexed: base64 blobs
/// and URLs only bloat an index (tantivy's `RemoveLongFilter::limit(40)`).
const LONGEST_WORD_BYTES: usize = 40;

/// One ad's document: live, or the tombstone of a deleted ad.
#[derive(Debug, Clone)]
struct Document {
    version: u64,
    /// When that version was committed: search hits carry it.
    updated_at: DateTime<Utc>,
    /// "Newest first" order: the creation time in the ad id.
    created_ms: u64,
    live: Option<Live>,
}

#[derive(Debug, Clone)]
struct Live {
    ad: Ad,
    words: BTreeSet<String>,
}

impl Document {
    fn new(ad_id: &str, version: u64, at: DateTime<Utc>, ad: Option<&Ad>) -> Document {
        Document {
            version,
            updated_at: at,
            created_ms: created_ms(ad_id, at),
            live: ad.map(|ad| Live {
                words: ad_words(ad),
                ad: ad.clone(),
            }),
        }
    }
}

#[derive(Debug, Default)]
struct Records {
    /// By ad id, as the local index keys its documents.
    documents: HashMap<String, Document>,
    checkpoint: u64,
}

/// The search read model, in memory. Each call runs under one lock, so its documents and
/// checkpoint become visible together.
#[derive(Debug, Default)]
pub struct MemorySearchIndex {
    records: RwLock<Records>,
}

impl MemorySearchIndex {
    /// A new, empty index.
    pub fn new() -> MemorySearchIndex {
        MemorySearchIndex::default()
    }

    // Writes do not fail half-way (map inserts only), so a poisoned lock is still sound.
    fn read(&self) -> RwLockReadGuard<'_, Records> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Records> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The indexed words of `text`: see the module docs.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty() && word.len() < LONGEST_WORD_BYTES)
        .map(fold)
}

/// Lower case without accents: the canonical decomposition without its combining marks.
fn fold(word: &str) -> String {
    word.nfd()
        .filter(|&c| !is_combining_mark(c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn ad_words(ad: &Ad) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = words(&ad.ad_title).collect();
    all.extend(words(&ad.ad_description));
    all.extend(words(&ad.category));
    for tag in &ad.tags {
        all.extend(words(tag));
    }
    all
}

/// The distinct words of a query's text, without tantivy's operator words.
fn query_words(text: &str) -> BTreeSet<String> {
    text.split_whitespace()
        .filter(|word| !matches!(*word, "AND" | "OR" | "NOT"))
        .flat_map(words)
        .collect()
}

/// Milliseconds of the ad's creation: the ULID's timestamp (stable across updates); for
/// an id that is not a ULID, the revision's time.
fn created_ms(ad_id: &str, at: DateTime<Utc>) -> u64 {
    ulid::Ulid::from_string(ad_id)
        .map(|id| id.timestamp_ms())
        .unwrap_or_else(|_| u64::try_from(at.timestamp_millis()).unwrap_or(0))
}

/// Whether the ad passes the query's filters (everything but the text).
fn passes_filters(ad: &Ad, query: &SearchQuery) -> bool {
    if query
        .publisher_id
        .as_ref()
        .is_some_and(|p| *p != ad.publisher_id)
    {
        return false;
    }
    if query
        .category
        .as_ref()
        .is_some_and(|c| ad.category.is_empty() || *c != ad.category)
    {
        return false;
    }
    if query.tag.as_ref().is_some_and(|t| !ad.tags.contains(t)) {
        return false;
    }
    if query.min_price.is_some() || query.max_price.is_some() {
        let Some(price) = ad.price else {
            return false;
        };
        if query.min_price.is_some_and(|min| price < min)
            || query.max_price.is_some_and(|max| price > max)
        {
            return false;
        }
    }
    true
}

fn search(records: &Records, query: &SearchQuery) -> SearchPage {
    let wanted = query_words(&query.text);
    let has_text = !query.text.trim().is_empty();
    // (score, created_ms, ad, version): ranked by score with text, by age without.
    let mut hits: Vec<(usize, u64, &Ad, IndexedVersion)> = records
        .documents
        .values()
        .filter_map(|document| {
            let live = document.live.as_ref()?;
            if !passes_filters(&live.ad, query) {
                return None;
            }
            let score = wanted.intersection(&live.words).count();
            if has_text && score == 0 {
                return None;
            }
            let version = IndexedVersion {
                version: document.version,
                updated_at: document.updated_at,
            };
            Some((score, document.created_ms, &live.ad, version))
        })
        .collect();
    // The order every backend gives (see `SearchPage::ads`): by score, ties by ascending
    // ad id; without text, newest first, ties by descending ad id (ULIDs made in one
    // millisecond by one generator ascend, so that is still newest first).
    hits.sort_by(|a, b| {
        if has_text {
            b.0.cmp(&a.0).then_with(|| a.2.ad_id.cmp(&b.2.ad_id))
        } else {
            b.1.cmp(&a.1).then_with(|| b.2.ad_id.cmp(&a.2.ad_id))
        }
    });
    let total = hits.len() as u64;
    let (ads, versions) = hits
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|(_, _, ad, version)| (ad.clone(), version))
        .unzip();
    SearchPage {
        total,
        ads,
        versions: Some(versions),
    }
}

#[async_trait]
impl SearchIndex for MemorySearchIndex {
    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()> {
        let mut records = self.write();
        for revision in revisions {
            let metadata = &revision.body.metadata;
            let indexed = records.documents.get(&metadata.id).map(|d| d.version);
            if indexed.is_some_and(|version| version >= metadata.version) {
                continue;
            }
            let document = Document::new(
                &metadata.id,
                metadata.version,
                metadata.tx_time,
                revision.body.data.as_ref(),
            );
            records.documents.insert(metadata.id.clone(), document);
        }
        records.checkpoint = checkpoint;
        Ok(())
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        Ok(search(&self.read(), query))
    }

    async fn checkpoint(&self) -> Result<u64> {
        Ok(self.read().checkpoint)
    }

    async fn clear(&self) -> Result<()> {
        *self.write() = Records::default();
        Ok(())
    }

    async fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<()> {
        let mut records = self.write();
        for state in states {
            let document = Document::new(
                &state.key.ad_id,
                state.version,
                state.updated_at,
                state.ad.as_ref(),
            );
            records.documents.insert(state.key.ad_id.clone(), document);
        }
        if let Some(checkpoint) = checkpoint {
            records.checkpoint = checkpoint;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_split_lower_cased_and_folded() {
        let got: Vec<String> = words("Café-Crème, 2x11 ÉTÉ").collect();
        assert_eq!(got, vec!["cafe", "creme", "2x11", "ete"]);
        let long = "a".repeat(LONGEST_WORD_BYTES);
        assert_eq!(words(&format!("{long} ok")).collect::<Vec<_>>(), vec!["ok"]);
    }

    #[test]
    fn operator_words_and_syntax_are_not_searched_for() {
        let got: Vec<String> = query_words("\"red AND (bike OR and\" -lamp")
            .into_iter()
            .collect();
        assert_eq!(got, vec!["and", "bike", "lamp", "red"]);
    }
}
