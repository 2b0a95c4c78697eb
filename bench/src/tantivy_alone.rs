//! The rebuild's peer: tantivy alone bulk-indexing the same ads.
//!
//! The documents are the ones `backends/tantivy` writes (the same fields, options and
//! analyzer: see its `schema.rs`), built from the same generated ads the bench created
//! (the workload is reproducible from the seed), indexed on disk by one writer thread with
//! the same 50 MB budget, then committed once. What it leaves out is everything adledger
//! adds around tantivy: reading and verifying the journal, decoding blocks, the state
//! store, checkpoints.

use std::time::{Duration, Instant};

use serde_json::Value;
use tantivy::schema::{
    FAST, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{Index, TantivyDocument};

use crate::rng::Rng;
use crate::workload;

/// `backends/tantivy`'s writer budget and thread count.
const WRITER_MEMORY_BYTES: usize = 50_000_000;
const ANALYZER: &str = "adledger_text";

/// Which generated ads to index: `(stream, count)` pairs of the bench's create phases.
#[derive(Debug, Clone, Copy)]
pub struct Ads {
    /// The workload's seed.
    pub seed: u64,
    /// Request streams and how many ads each created: the creates, the preload and the
    /// ads an `--ads-by-import` ledger was filled with (they are in the rebuilt ledger
    /// too, so the baseline indexes them as well).
    pub streams: [(u64, u64); 3],
}

/// Documents indexed and how long indexing and the commit took.
#[derive(Debug, Clone, Copy)]
pub struct Indexed {
    /// Documents added.
    pub documents: u64,
    /// From the first document to the end of the commit.
    pub elapsed: Duration,
}

impl Indexed {
    /// Documents per second.
    pub fn rate(&self) -> f64 {
        self.documents as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Indexes `ads` into a fresh on-disk index in a temporary directory.
pub fn index(ads: Ads) -> Result<Indexed, String> {
    let dir = tempfile::Builder::new()
        .prefix("adledger-bench-tantivy-")
        .tempdir()
        .map_err(|e| format!("tantivy baseline: cannot create a scratch directory: {e}"))?;
    let fields = Fields::new();
    let index = Index::create_in_dir(dir.path(), fields.schema.clone())
        .map_err(|e| format!("tantivy baseline: cannot create the index: {e}"))?;
    let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build();
    index.tokenizers().register(ANALYZER, analyzer);
    let mut writer = index
        .writer_with_num_threads::<TantivyDocument>(1, WRITER_MEMORY_BYTES)
        .map_err(|e| format!("tantivy baseline: cannot open a writer: {e}"))?;
    let started = Instant::now();
    let mut documents = 0u64;
    for (stream, count) in ads.streams {
        for index in 0..count {
            let doc = fields.document(ads.seed, stream, index);
            writer
                .add_document(doc)
                .map_err(|e| format!("tantivy baseline: cannot add a document: {e}"))?;
            documents += 1;
        }
    }
    writer
        .commit()
        .map_err(|e| format!("tantivy baseline: commit failed: {e}"))?;
    let elapsed = started.elapsed();
    writer
        .wait_merging_threads()
        .map_err(|e| format!("tantivy baseline: merge failed: {e}"))?;
    Ok(Indexed { documents, elapsed })
}

/// The fields of `backends/tantivy`'s schema.
struct Fields {
    schema: Schema,
    ad_id: tantivy::schema::Field,
    publisher_id: tantivy::schema::Field,
    title: tantivy::schema::Field,
    description: tantivy::schema::Field,
    category: tantivy::schema::Field,
    tags: tantivy::schema::Field,
    category_exact: tantivy::schema::Field,
    tag_exact: tantivy::schema::Field,
    price: tantivy::schema::Field,
    created_ms: tantivy::schema::Field,
    version: tantivy::schema::Field,
    status: tantivy::schema::Field,
    ad: tantivy::schema::Field,
}

impl Fields {
    fn new() -> Fields {
        let mut builder = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        Fields {
            ad_id: builder.add_text_field("adId", STRING | STORED | FAST),
            publisher_id: builder.add_text_field("publisherId", STRING),
            title: builder.add_text_field("title", text.clone()),
            description: builder.add_text_field("description", text.clone()),
            category: builder.add_text_field("category", text.clone()),
            tags: builder.add_text_field("tags", text),
            category_exact: builder.add_text_field("categoryExact", STRING),
            tag_exact: builder.add_text_field("tagExact", STRING),
            price: builder.add_f64_field("price", FAST | INDEXED),
            created_ms: builder.add_u64_field("createdMs", FAST),
            version: builder.add_u64_field("version", FAST),
            status: builder.add_text_field("status", STRING),
            ad: builder.add_text_field("ad", STORED),
            schema: builder.build(),
        }
    }

    /// The document of the ad created by request `index` of `stream`.
    fn document(&self, seed: u64, stream: u64, index: u64) -> TantivyDocument {
        let mut ad = workload::ad_body(&mut Rng::for_request(seed, stream, index));
        let ad_id = format!("{:026}", stream * 1_000_000_000_000 + index);
        let publisher = workload::publisher_of(index);
        let text = |key: &str| {
            ad.get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let mut doc = TantivyDocument::new();
        doc.add_text(self.ad_id, &ad_id);
        doc.add_text(self.publisher_id, publisher);
        doc.add_text(self.title, text("adTitle"));
        doc.add_text(self.description, text("adDescription"));
        let category = text("category");
        doc.add_text(self.category, &category);
        if !category.is_empty() {
            doc.add_text(self.category_exact, &category);
        }
        let tags: Vec<String> = ad
            .get("tags")
            .and_then(Value::as_array)
            .map(|tags| {
                tags.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for tag in &tags {
            doc.add_text(self.tags, tag);
            doc.add_text(self.tag_exact, tag);
        }
        if let Some(price) = ad
            .get("price")
            .and_then(|p| p.to_string().parse::<f64>().ok())
        {
            doc.add_f64(self.price, price);
        }
        doc.add_u64(self.created_ms, 1_700_000_000_000 + index);
        doc.add_u64(self.version, 0);
        doc.add_text(self.status, "live");
        if let Some(object) = ad.as_object_mut() {
            object.insert("adId".into(), Value::String(ad_id));
            object.insert("publisherId".into(), Value::String(publisher.into()));
        }
        doc.add_text(self.ad, ad.to_string());
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_every_generated_ad() {
        let indexed = index(Ads {
            seed: 1,
            streams: [(1, 150), (2, 50), (11, 25)],
        })
        .expect("indexed");
        assert_eq!(indexed.documents, 225);
        assert!(indexed.rate() > 0.0);
    }
}
