//! [`TantivySearchIndex`]: the search read model in a tantivy index.
//!
//! The document layout is in `schema.rs`, query building in `query.rs`, the ranking in
//! `order.rs`.
//!
//! # Commits
//!
//! A tantivy commit costs about 16 fsyncs, so there is exactly one per `apply` (the engine
//! already batches revisions) and never one per revision. The projection checkpoint goes
//! into the commit's payload (`meta.json`), so it is stored atomically with the documents
//! it covers. After the commit the reader is reloaded by hand (`ReloadPolicy::Manual`):
//! when `apply` returns, searches see its writes.
//!
//! # Searches
//!
//! A search costs what its page needs, not what the index holds: the total comes from
//! the count query of `query.rs` (one posting list per word; a term's document frequency
//! when its segment has no deleted documents), and the page from the ranking collector
//! of `order.rs`, which lets block-max WAND skip the documents that cannot make the
//! page. A filtered text search ranks the text with the same pruning and tests its
//! documents against cached filter bitsets (`filter.rs`); a filtered search without text
//! (ranked by age, which visits every match) counts its total in the ranking's pass.
//! Hits are read from the stored fields of their documents, so a page needs nothing but
//! the index; `search_json` answers each hit's stored API JSON as is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use adledger_engine::ports::{AdState, SearchIndex, SearchJsonPage, SearchPage, SearchQuery};
use adledger_engine::revision::RevisionMetadata;
use adledger_engine::{Result, Revision};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::directory::error::LockError;
use tantivy::query::{Query as _, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    DocAddress, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Searcher,
    TantivyDocument, TantivyError, Term,
};

use crate::blocking;
use crate::error::{IndexError, corrupt};
use crate::filter::FilterCache;
use crate::merge::InIdOrder;
use crate::order::{Ranked, Ranking, SegmentCache};
use crate::query;
use crate::schema::{AdSchema, VERSION};

/// Indexing memory: ads are small, and this is the single writer thread's whole arena.
const WRITER_MEMORY_BYTES: usize = 50_000_000;

/// Bytes of stored documents compressed together. Each hit decompresses its whole block,
/// and a page's hits are scattered over the index: with tantivy's default 16 KiB this
/// was a tenth of a search's CPU; 4 KiB holds about eight ads.
const DOCSTORE_BLOCK_BYTES: usize = 4_096;

/// Decompressed store blocks each segment keeps (tantivy's default is 100): at 4 KiB,
/// 4 MB a segment, so the pages of the common words stay decompressed.
const DOCSTORE_CACHE_BLOCKS: usize = 1_000;

/// How new indexes store documents (the settings of an existing index are its own).
fn settings() -> IndexSettings {
    IndexSettings {
        docstore_blocksize: DOCSTORE_BLOCK_BYTES,
        ..IndexSettings::default()
    }
}

/// The search read model, in a tantivy index directory.
///
/// Cloning is cheap and shares the index.
#[derive(Clone)]
pub struct TantivySearchIndex {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    index: Index,
    reader: IndexReader,
    schema: AdSchema,
    /// The text fields' analyzer, cloned by each search to split its words into terms.
    analyzer: TextAnalyzer,
    /// tantivy allows one writer per index; the lock also serialises `apply` and `clear`.
    writer: Mutex<IndexWriter>,
    /// Per segment, the columns the ranking reads (see `order.rs`).
    segments: Arc<SegmentCache>,
    /// Per segment, the bitsets of recent searches' filters (see `filter.rs`).
    filters: Arc<FilterCache>,
}

impl std::fmt::Debug for TantivySearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivySearchIndex")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// The commit payload.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    checkpoint: u64,
}

impl TantivySearchIndex {
    /// Opens (creating if missing) a search index in `path`.
    ///
    /// Fails with a backend error naming `path` if another process (or another open
    /// index in this process) is writing it. An index built with another schema (by an
    /// earlier adledger) is started empty, with a warning: the projection rebuilds it from
    /// the journal.
    pub fn open(path: &Path) -> Result<TantivySearchIndex> {
        Self::open_index(path).map_err(Into::into)
    }

    fn open_index(path: &Path) -> Result<TantivySearchIndex, IndexError> {
        let open_error = |e: Box<dyn std::error::Error + Send + Sync>| IndexError::Open {
            path: path.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(path).map_err(|e| open_error(Box::new(e)))?;
        let directory = MmapDirectory::open(path).map_err(|e| open_error(Box::new(e)))?;
        let schema = AdSchema::new();
        let index = match Index::builder()
            .schema(schema.schema.clone())
            .settings(settings())
            .open_or_create(directory)
        {
            Ok(index) => index,
            // Built by an adledger with another document layout (an upgrade). The index is
            // a projection: start it empty and the projector refills it from the journal,
            // instead of refusing to start and asking the operator to delete it by hand.
            Err(TantivyError::SchemaError(reason)) => {
                tracing::warn!(
                    path = %path.display(),
                    %reason,
                    "search index built with another schema (an earlier adledger): \
                     starting it empty; it is rebuilt from the journal"
                );
                std::fs::remove_dir_all(path).map_err(|e| open_error(Box::new(e)))?;
                std::fs::create_dir_all(path).map_err(|e| open_error(Box::new(e)))?;
                let directory = MmapDirectory::open(path).map_err(|e| open_error(Box::new(e)))?;
                Index::create(directory, schema.schema.clone(), settings())
                    .map_err(|e| open_error(Box::new(e)))?
            }
            Err(other) => return Err(open_error(Box::new(other))),
        };
        AdSchema::register_analyzer(&index);
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(|e| match e {
                TantivyError::LockFailure(LockError::LockBusy, _) => IndexError::InUse {
                    path: path.to_path_buf(),
                    source: Box::new(e),
                },
                other => open_error(Box::new(other)),
            })?;
        writer.set_merge_policy(Box::new(InIdOrder::new(index.clone())));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .doc_store_cache_num_blocks(DOCSTORE_CACHE_BLOCKS)
            .try_into()?;
        Ok(TantivySearchIndex {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                index,
                reader,
                schema,
                analyzer: AdSchema::analyzer(),
                writer: Mutex::new(writer),
                segments: Arc::default(),
                filters: Arc::default(),
            }),
        })
    }

    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, IndexError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking::run(move || work(&inner)).await
    }
}

impl Inner {
    /// The writer, after dropping whatever a panic left queued on it.
    fn lock_writer(&self) -> Result<MutexGuard<'_, IndexWriter>, IndexError> {
        match self.writer.lock() {
            Ok(writer) => Ok(writer),
            Err(poisoned) => {
                let mut writer = poisoned.into_inner();
                writer.rollback()?;
                self.writer.clear_poison();
                Ok(writer)
            }
        }
    }

    /// Runs `change` on the writer, then commits with `checkpoint` and reloads the reader.
    /// On failure the writer is rolled back, so a half-done change is never committed
    /// later under another call's checkpoint.
    fn commit_with<F>(
        &self,
        mut writer: MutexGuard<'_, IndexWriter>,
        checkpoint: u64,
        change: F,
    ) -> Result<(), IndexError>
    where
        F: FnOnce(&mut IndexWriter) -> Result<(), IndexError>,
    {
        let payload = serde_json::to_string(&Payload { checkpoint })
            .map_err(|e| corrupt(format!("cannot encode the search checkpoint: {e}")))?;
        let committed = change(&mut writer).and_then(|()| {
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
            Ok(())
        });
        if let Err(error) = committed {
            if let Err(rollback) = writer.rollback() {
                tracing::error!(%rollback, "search index rollback failed after: {error}");
            }
            return Err(error);
        }
        // Reloaded before the lock is released, so the next `apply` decides on a reader
        // that includes this commit.
        self.reader.reload()?;
        Ok(())
    }

    /// The version of the ad's document (live or tombstone) as last committed.
    fn indexed_version(&self, searcher: &Searcher, ad_id: &str) -> Result<Option<u64>, IndexError> {
        let query = TermQuery::new(
            Term::from_field_text(self.schema.ad_id, ad_id),
            IndexRecordOption::Basic,
        );
        let hits = searcher.search(&query, &TopDocs::with_limit(1))?;
        let Some((_, address)) = hits.first() else {
            return Ok(None);
        };
        let versions = searcher
            .segment_reader(address.segment_ord)
            .fast_fields()
            .u64(VERSION)?;
        Ok(versions.first(address.doc_id))
    }

    fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<(), IndexError> {
        let writer = self.lock_writer()?;
        // Under the writer lock the reader holds every commit (see `commit_with`), so
        // versions read here are current. Every decision and document is made before the
        // writer is touched: the fallible work happens while there is nothing to undo.
        let searcher = self.reader.searcher();
        let mut decided: HashMap<&str, u64> = HashMap::new();
        let mut changes = Vec::with_capacity(revisions.len());
        for revision in revisions {
            let metadata = &revision.body.metadata;
            let current = match decided.get(metadata.id.as_str()) {
                Some(&version) => Some(version),
                None => self.indexed_version(&searcher, &metadata.id)?,
            };
            if current.is_some_and(|v| v >= metadata.version) {
                continue;
            }
            let doc: TantivyDocument = match &revision.body.data {
                Some(ad) => self.schema.live(ad, metadata)?,
                None => self.schema.tombstone(metadata),
            };
            changes.push((Term::from_field_text(self.schema.ad_id, &metadata.id), doc));
            decided.insert(&metadata.id, metadata.version);
        }
        self.commit_with(writer, checkpoint, move |writer| {
            for (term, doc) in changes {
                writer.delete_term(term);
                writer.add_document(doc)?;
            }
            Ok(())
        })
    }

    /// Replaces each ad's document with the given state, whatever is indexed.
    ///
    /// A tombstone state becomes a tombstone document carrying its version, not a bare
    /// delete: `apply` decides by the indexed version, and without it an older revision
    /// applied later would bring the ad back.
    fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<(), IndexError> {
        let writer = self.lock_writer()?;
        // A later state of the same ad replaces an earlier one: only the last is indexed.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(states.len());
        for (i, state) in states.iter().enumerate() {
            last.insert(state.key.ad_id.as_str(), i);
        }
        let checkpoint = match checkpoint {
            Some(checkpoint) => checkpoint,
            None => self.checkpoint()?,
        };
        // Documents are built while the writer's indexing thread indexes the previous
        // ones (a bulk put of a rebuild batch is hundreds of thousands of them); a
        // failure half-way is rolled back by `commit_with`, so nothing half-done is ever
        // committed. They are added in ad-id order (a rebuild lists states by publisher
        // first): segments in id order let the score ranking stop at ties (`order.rs`).
        let mut order: Vec<usize> = last.values().copied().collect();
        order.sort_unstable_by(|&a, &b| states[a].key.ad_id.cmp(&states[b].key.ad_id));
        self.commit_with(writer, checkpoint, move |writer| {
            for state in order.into_iter().map(|i| &states[i]) {
                let metadata = RevisionMetadata {
                    id: state.key.ad_id.clone(),
                    publisher_id: state.key.publisher_id.clone(),
                    version: state.version,
                    tx_id: String::new(),
                    tx_time: state.updated_at,
                    actor: None,
                };
                let doc: TantivyDocument = match &state.ad {
                    Some(ad) => self.schema.live(ad, &metadata)?,
                    None => self.schema.tombstone(&metadata),
                };
                writer.delete_term(Term::from_field_text(self.schema.ad_id, &state.key.ad_id));
                writer.add_document(doc)?;
            }
            Ok(())
        })
    }

    fn search(&self, search: &SearchQuery) -> Result<SearchPage, IndexError> {
        let (searcher, total, addresses) = self.hits(search)?;
        let mut ads = Vec::with_capacity(addresses.len());
        let mut versions = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            ads.push(self.schema.ad_of(&doc)?);
            versions.push(self.schema.version_of(&doc)?);
        }
        Ok(SearchPage {
            total,
            ads,
            versions: Some(versions),
        })
    }

    /// The page as the stored JSON of each hit: no parse, no second serialization.
    fn search_json(&self, search: &SearchQuery) -> Result<SearchJsonPage, IndexError> {
        let (searcher, total, addresses) = self.hits(search)?;
        let hits = addresses
            .into_iter()
            .map(|address| {
                let doc: TantivyDocument = searcher.doc(address)?;
                self.schema.view_of(&doc)
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        Ok(SearchJsonPage { total, hits })
    }

    /// The searcher the page was ranked on, the total and the page's documents.
    fn hits(&self, search: &SearchQuery) -> Result<(Searcher, u64, Vec<DocAddress>), IndexError> {
        let searcher = self.reader.searcher();
        let mut analyzer = self.analyzer.clone();
        self.filters.retain(&searcher);
        let built = query::build(&self.schema, &mut analyzer, search, &self.filters);
        let ranking = if built.has_text {
            Ranking::Score
        } else {
            Ranking::Newest
        };
        let (total, addresses) = if built.filtered {
            // Filtered, by age: the ranking visits every match, so count them on the way
            // (each segment keeps at most `offset + limit` hits, and no more than match).
            self.segments.retain(&searcher);
            let ranked = Ranked::new(ranking, search.offset, search.limit, self.segments.clone());
            searcher.search(&built.query, &(Count, ranked))?
        } else {
            // Counted without scores; a single term in a segment without deleted
            // documents is counted from its document frequency alone.
            let total = built.count.count(&searcher)?;
            // Checked against the total first: the collector keeps up to `offset +
            // limit` hits per segment, and both come from the client.
            let remaining = total.saturating_sub(search.offset);
            let limit = search.limit.min(remaining);
            let addresses: Vec<DocAddress> = if limit == 0 {
                Vec::new()
            } else {
                self.segments.retain(&searcher);
                let ranked = Ranked::new(ranking, search.offset, limit, self.segments.clone());
                searcher.search(&built.query, &ranked)?
            };
            (total, addresses)
        };
        Ok((searcher, total as u64, addresses))
    }

    fn checkpoint(&self) -> Result<u64, IndexError> {
        match self.index.load_metas()?.payload {
            None => Ok(0),
            Some(payload) => serde_json::from_str::<Payload>(&payload)
                .map(|p| p.checkpoint)
                .map_err(|e| corrupt(format!("search index checkpoint {payload:?}: {e}"))),
        }
    }
}

#[async_trait]
impl SearchIndex for TantivySearchIndex {
    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()> {
        let revisions = revisions.to_vec();
        self.run(move |inner| inner.apply(&revisions, checkpoint))
            .await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let query = query.clone();
        self.run(move |inner| inner.search(&query)).await
    }

    async fn search_json(&self, query: &SearchQuery) -> Result<Option<SearchJsonPage>> {
        let query = query.clone();
        self.run(move |inner| inner.search_json(&query).map(Some))
            .await
    }

    async fn checkpoint(&self) -> Result<u64> {
        self.run(Inner::checkpoint).await
    }

    async fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<()> {
        let states = states.to_vec();
        self.run(move |inner| inner.put(&states, checkpoint)).await
    }

    async fn clear(&self) -> Result<()> {
        self.run(|inner| {
            let writer = inner.lock_writer()?;
            inner.commit_with(writer, 0, |writer| {
                writer.delete_all_documents()?;
                Ok(())
            })
        })
        .await
    }
}
