//! Journal import: an export (see [`crate::export`]) into an empty journal, verified in
//! full before the first block is written.
//!
//! # Two passes
//!
//! 1. **Verify** ([`verify_export`]): every block is checked as the journal's own
//!    verifier would — sequence numbers contiguous from 0, the frame parses, the header's
//!    `sequenceNo` is the block's, `previousHash` links to the block before, each
//!    revision's bytes hash to the hash the header lists — the Merkle tree is recomputed,
//!    and the trailer's digest must equal it. A file cut short has no trailer. The first
//!    failure is refused with [`Error::ChainBroken`] naming the sequence, and nothing has
//!    been written.
//! 2. **Append**: the file is read again; each block is opened, its revisions must
//!    continue their ad's versions (0 for a create, +1 after, nothing after a delete),
//!    and heads, revision refs, idempotency records (from the header's idempotency tag)
//!    and Merkle nodes are re-derived with the committer's own batch building
//!    (the `batch` module); batches go to [`Journal::append`], conditional on the tip, so a
//!    concurrent writer is refused rather than interleaved. At the end the journal's own
//!    digest must equal the file's.
//!
//! Import reads a file twice rather than buffering it, and keeps a bounded number of ad
//! heads (module `heads`: the journal being written answers for the others), so its
//! memory does not grow with the journal.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ion_rs::Element;
use serde::Serialize;

use crate::batch;
use crate::block::EncodedBlock;
use crate::chain::{self, Chain};
use crate::digest::{Digest, digest_at};
use crate::error::{Error, Result};
use crate::export::{EXPORT_FORMAT, EXPORT_FORMAT_VERSION, ExportFormat};
use crate::hash::Hash;
use crate::high_water::HighWater;
use crate::merkle::Frontier;
use crate::ports::{AppendBatch, Journal};
use crate::revision::EventKind;

mod heads;

pub use heads::DEFAULT_HEADS_KEPT;
use heads::{Head, Heads, Unchecked};

/// How an import writes.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Most blocks per `append`; never more than the journal's
    /// [`max_blocks_per_append`](Journal::max_blocks_per_append), whatever is asked
    /// (DynamoDB takes 33 per transaction, sled thousands).
    ///
    /// Bigger is not faster on sled: each key of a batch copies a leaf node, and a huge
    /// batch also holds every copy until it is applied. Measured with sled alone (same
    /// keys and values, one `apply_batch` + flush + fdatasync per batch, 200,000 blocks):
    /// 16,384 blocks per batch 5.0 MB/s and 3.4× the block bytes on disk, 1,024 blocks
    /// 8.2 MB/s and 2.5×, 256 blocks 9.5 MB/s and 2.0×.
    pub batch_blocks: usize,
    /// Most frame bytes per `append` (the AWS backend bounds one transaction's size).
    pub batch_bytes: usize,
    /// Durable records of how far the ledger's journal once reached (its read models'
    /// checkpoints, [`crate::high_water::read_model_marks`]): an export holding fewer
    /// blocks is refused before anything is written, since importing it would leave a
    /// journal behind its own read models.
    pub must_reach: Vec<HighWater>,
    /// About how many ad heads pass 2 keeps in memory to check that each revision
    /// continues its ad; an ad not among them costs a read of the journal being written
    /// (see [`DEFAULT_HEADS_KEPT`]).
    pub heads_kept: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_blocks: 256,
            batch_bytes: 4 << 20,
            must_reach: Vec::new(),
            heads_kept: DEFAULT_HEADS_KEPT,
        }
    }
}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    /// The file's format.
    #[serde(skip)]
    pub format: ExportFormat,
    /// Blocks in the file.
    pub blocks: u64,
    /// Revisions in the file.
    pub revisions: u64,
    /// Frame bytes in the file.
    pub frame_bytes: u64,
    /// The digest the file ends with (`None` for an export of no block).
    #[serde(skip)]
    pub digest: Option<Digest>,
}

/// Where an import is: `verifying` then `appending`, with blocks and bytes done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportProgress {
    /// `false` in the verify pass, `true` in the append pass.
    pub appending: bool,
    /// Blocks done in this pass.
    pub blocks: u64,
    /// Frame bytes done in this pass.
    pub bytes: u64,
}

/// One record of an export file.
enum Record {
    Header { first: Option<u64> },
    Block(EncodedBlock),
    Trailer { blocks: u64, digest: Option<Digest> },
}

fn broken(sequence: u64, detail: impl Into<String>) -> Error {
    Error::ChainBroken {
        sequence,
        detail: format!("the export file does not verify: {}", detail.into()),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::backend("file", format!("cannot read {}: {e}", path.display()))
}

/// Reads the records of an export file in either format.
struct RecordReader {
    inner: Inner,
}

enum Inner {
    Ion(Box<dyn Iterator<Item = ion_rs::IonResult<Element>>>),
    Jsonl(BufReader<File>, Vec<u8>),
}

impl RecordReader {
    fn open(path: &Path) -> Result<(RecordReader, ExportFormat)> {
        let mut file = File::open(path).map_err(|e| io_error(path, e))?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(|e| io_error(path, e))?;
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        if n == 4 && magic == [0xE0, 0x01, 0x00, 0xEA] {
            let reader = BufReader::with_capacity(1 << 20, file);
            let elements = std::panic::catch_unwind(AssertUnwindSafe(|| Element::iter(reader)))
                .map_err(|_| broken(0, "the Ion decoder rejected the file"))?
                .map_err(|e| broken(0, format!("not an Ion stream: {e}")))?;
            Ok((
                RecordReader {
                    inner: Inner::Ion(Box::new(elements)),
                },
                ExportFormat::Ion,
            ))
        } else {
            Ok((
                RecordReader {
                    inner: Inner::Jsonl(BufReader::with_capacity(1 << 20, file), Vec::new()),
                },
                ExportFormat::Jsonl,
            ))
        }
    }

    /// The next record, or `None` at the end of the file. `at` is the sequence expected
    /// next, for error messages.
    fn next(&mut self, at: u64) -> Result<Option<Record>> {
        match &mut self.inner {
            Inner::Ion(elements) => {
                let next = std::panic::catch_unwind(AssertUnwindSafe(|| elements.next()))
                    .map_err(|_| broken(at, "the Ion decoder rejected the bytes here"))?;
                match next {
                    None => Ok(None),
                    Some(Err(e)) => Err(broken(at, format!("undecodable Ion ({e})"))),
                    Some(Ok(element)) => ion_record(&element, at).map(Some),
                }
            }
            Inner::Jsonl(reader, line) => {
                line.clear();
                let n = reader
                    .read_until(b'\n', line)
                    .map_err(|e| broken(at, format!("unreadable ({e})")))?;
                if n == 0 {
                    return Ok(None);
                }
                json_record(line, at).map(Some)
            }
        }
    }
}

fn ion_record(element: &Element, at: u64) -> Result<Record> {
    let bad = |what: &str| broken(at, format!("an Ion record is not {what}"));
    let s = element.as_struct().ok_or_else(|| bad("a struct"))?;
    let uint = |name: &str| -> Result<Option<u64>> {
        match s.get(name) {
            None => Err(bad(&format!("complete (no `{name}`)"))),
            Some(e) if e.is_null() => Ok(None),
            Some(e) => e
                .as_i64()
                .and_then(|v| u64::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| bad(&format!("valid (`{name}` is not a count)"))),
        }
    };
    let hash = |e: Option<&Element>, name: &str| -> Result<Hash> {
        e.and_then(|e| e.as_blob())
            .and_then(Hash::from_slice)
            .ok_or_else(|| bad(&format!("valid (`{name}` is not a 32-byte blob)")))
    };
    if let Some(format) = s.get("format") {
        check_format(
            format.as_text(),
            s.get("formatVersion").and_then(|v| v.as_i64()),
            at,
        )?;
        return Ok(Record::Header {
            first: uint("firstSequence")?,
        });
    }
    if let Some(frame) = s.get("frame") {
        let sequence = uint("sequenceNo")?.ok_or_else(|| bad("valid (null `sequenceNo`)"))?;
        let bytes = frame
            .as_blob()
            .ok_or_else(|| bad("valid (`frame` is not a blob)"))?;
        return Ok(Record::Block(EncodedBlock {
            sequence,
            bytes: bytes.to_vec(),
        }));
    }
    let blocks = uint("blocks")?.ok_or_else(|| bad("valid (null `blocks`)"))?;
    let digest = match s.get("digest") {
        None => return Err(bad("complete (no `digest`)")),
        Some(d) if d.is_null() => None,
        Some(d) => {
            let d = d.as_struct().ok_or_else(|| bad("valid (`digest`)"))?;
            Some(Digest {
                sequence: d
                    .get("sequenceNo")
                    .and_then(|v| v.as_i64())
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| bad("valid (`digest.sequenceNo`)"))?,
                root: hash(d.get("root"), "root")?,
                tip_hash: hash(d.get("tipHash"), "tipHash")?,
            })
        }
    };
    Ok(Record::Trailer { blocks, digest })
}

fn check_format(format: Option<&str>, version: Option<i64>, at: u64) -> Result<()> {
    if format != Some(EXPORT_FORMAT) || version != Some(EXPORT_FORMAT_VERSION) {
        return Err(broken(
            at,
            format!(
                "its header says format {format:?} version {version:?}; this build reads \
                 {EXPORT_FORMAT:?} version {EXPORT_FORMAT_VERSION}"
            ),
        ));
    }
    Ok(())
}

fn json_record(line: &[u8], at: u64) -> Result<Record> {
    use serde_json::Value;
    let bad = |what: &str| broken(at, format!("a JSON line is not {what}"));
    let value: Value = serde_json::from_slice(line).map_err(|_| bad("valid JSON"))?;
    let o = value.as_object().ok_or_else(|| bad("an object"))?;
    let uint = |name: &str| -> Result<Option<u64>> {
        match o.get(name) {
            None => Err(bad(&format!("complete (no `{name}`)"))),
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(&format!("valid (`{name}` is not a count)"))),
        }
    };
    let bytes = |v: Option<&Value>, name: &str| -> Result<Vec<u8>> {
        v.and_then(Value::as_str)
            .and_then(|t| BASE64.decode(t).ok())
            .ok_or_else(|| bad(&format!("valid (`{name}` is not base64)")))
    };
    if let Some(format) = o.get("format") {
        check_format(
            format.as_str(),
            o.get("formatVersion").and_then(Value::as_i64),
            at,
        )?;
        return Ok(Record::Header {
            first: uint("firstSequence")?,
        });
    }
    if o.contains_key("frame") {
        let sequence = uint("sequenceNo")?.ok_or_else(|| bad("valid (null `sequenceNo`)"))?;
        return Ok(Record::Block(EncodedBlock {
            sequence,
            bytes: bytes(o.get("frame"), "frame")?,
        }));
    }
    let blocks = uint("blocks")?.ok_or_else(|| bad("valid (null `blocks`)"))?;
    let digest = match o.get("digest") {
        None => return Err(bad("complete (no `digest`)")),
        Some(Value::Null) => None,
        Some(d) => {
            let hash = |name: &str| {
                Hash::from_slice(&bytes(d.get(name), name)?)
                    .ok_or_else(|| bad(&format!("valid (`{name}` is not 32 bytes)")))
            };
            Some(Digest {
                sequence: d
                    .get("sequenceNo")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| bad("valid (`digest.sequenceNo`)"))?,
                root: hash("root")?,
                tip_hash: hash("tipHash")?,
            })
        }
    };
    Ok(Record::Trailer { blocks, digest })
}

/// Reads the header and then calls `each` for every block, in order, checking that the
/// file is complete (a trailer, then nothing) and that the trailer's count matches.
/// Returns the trailer's digest and the block count.
fn for_each_block(
    path: &Path,
    each: &mut dyn FnMut(EncodedBlock) -> Result<()>,
) -> Result<(ExportFormat, u64, Option<Digest>)> {
    let (mut reader, format) = RecordReader::open(path)?;
    match reader.next(0)? {
        Some(Record::Header { first }) => {
            if first.is_some_and(|f| f != 0) {
                return Err(broken(
                    first.unwrap_or_default(),
                    "it starts after the first block; only an export of the whole journal \
                     from sequence 0 can be imported",
                ));
            }
        }
        _ => {
            return Err(broken(
                0,
                "it does not start with an adledger export header",
            ));
        }
    }
    let mut next = 0u64;
    loop {
        match reader.next(next)? {
            None => {
                return Err(broken(
                    next,
                    format!(
                        "it ends after {next} blocks without its closing digest: the file is \
                         truncated"
                    ),
                ));
            }
            Some(Record::Header { .. }) => return Err(broken(next, "a second header")),
            Some(Record::Block(block)) => {
                if block.sequence != next {
                    return Err(broken(
                        next,
                        format!(
                            "block {next} is expected here, the file has block {}",
                            block.sequence
                        ),
                    ));
                }
                each(block)?;
                next += 1;
            }
            Some(Record::Trailer { blocks, digest }) => {
                if blocks != next {
                    return Err(broken(
                        next,
                        format!("the closing record counts {blocks} blocks, the file holds {next}"),
                    ));
                }
                if reader.next(next)?.is_some() {
                    return Err(broken(next, "records follow the closing digest"));
                }
                return Ok((format, next, digest));
            }
        }
    }
}

/// Blocks checked at a time in pass 1; the next batch is read while one is checked.
const CHECK_BATCH: usize = 4096;

/// Pass 1's checking: batches of blocks go through [`chain`] on threads of their own
/// while the file's next batch is read.
struct Pass1<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    /// The batch being checked; it hands the chain back.
    running: Option<std::thread::ScopedJoinHandle<'scope, Result<Chain>>>,
    /// The chain, when no batch is being checked.
    chain: Option<Chain>,
    /// The first sequence of the next batch.
    next: u64,
}

impl<'scope> Pass1<'scope, '_> {
    /// Waits for the batch being checked (its failure, if any, is the import's) and
    /// returns the chain as it left it.
    fn wait(&mut self) -> Result<&mut Chain> {
        if let Some(running) = self.running.take() {
            let chain = running
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            self.chain = Some(chain);
        }
        self.chain
            .as_mut()
            .ok_or_else(|| Error::Unavailable("the export check lost its chain".into()))
    }

    /// Starts checking `blocks`, the batch after the last one started, once the one
    /// before it has passed; returns the blocks and bytes checked before it.
    fn start(&mut self, blocks: Vec<EncodedBlock>) -> Result<(u64, u64)> {
        let done = (self.next, self.wait()?.bytes());
        let Some(mut chain) = self.chain.take() else {
            return Err(Error::Unavailable("the export check lost its chain".into()));
        };
        let first = self.next;
        self.next += blocks.len() as u64;
        self.running = Some(self.scope.spawn(move || {
            let threads = chain::available_threads();
            let alone = chain::par_map(first, &blocks, threads, chain::standalone);
            for ((sequence, block), alone) in (first..).zip(&blocks).zip(alone) {
                alone
                    .and_then(|alone| chain.link(sequence, block, alone, None))
                    .map_err(|f| broken(f.sequence, f.detail))?;
            }
            Ok(chain)
        }));
        Ok(done)
    }
}

/// Verifies an export file on its own (pass 1 of an import; see the module docs).
pub fn verify_export(
    path: &Path,
    progress: &mut dyn FnMut(&ImportProgress),
) -> Result<ExportSummary> {
    let (format, count, digest, chain) = std::thread::scope(|scope| {
        let mut pass = Pass1 {
            scope,
            running: None,
            chain: Some(Chain::new()),
            next: 0,
        };
        let mut batch = Vec::with_capacity(CHECK_BATCH);
        let read = for_each_block(path, &mut |stored| {
            batch.push(stored);
            if batch.len() == CHECK_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(CHECK_BATCH));
                let (blocks, bytes) = pass.start(full)?;
                if blocks > 0 {
                    progress(&ImportProgress {
                        appending: false,
                        blocks,
                        bytes,
                    });
                }
            }
            Ok(())
        });
        // Whatever was read is checked before a reader's failure is reported: a block
        // that does not verify comes before the record after it that does not parse.
        pass.start(batch)?;
        pass.wait()?;
        let (format, count, digest) = read?;
        let chain = pass
            .chain
            .take()
            .ok_or_else(|| Error::Unavailable("the export check lost its chain".into()))?;
        Ok::<_, Error>((format, count, digest, chain))
    })?;
    let previous = chain.previous_hash();
    match (count.checked_sub(1), digest) {
        (None, None) => {}
        (Some(last), Some(d)) => {
            let root = chain
                .frontier()
                .and_then(Frontier::root)
                .unwrap_or_default();
            if d.sequence != last || d.root != root || d.tip_hash != previous {
                return Err(broken(
                    last,
                    format!(
                        "its closing digest (sequence {}, root {}, tip hash {}) is not the one \
                         its blocks give (sequence {last}, root {root}, tip hash {previous})",
                        d.sequence, d.root, d.tip_hash
                    ),
                ));
            }
        }
        (last, _) => {
            return Err(broken(
                last.unwrap_or_default(),
                "its closing digest does not match its number of blocks",
            ));
        }
    }
    progress(&ImportProgress {
        appending: false,
        blocks: count,
        bytes: chain.bytes(),
    });
    Ok(ExportSummary {
        format,
        blocks: count,
        revisions: chain.revisions(),
        frame_bytes: chain.bytes(),
        digest,
    })
}

/// Builds append batches from verified blocks.
struct Appender {
    heads: Heads,
    /// The revisions of this batch whose ad's head `heads` had dropped.
    unchecked: Vec<Unchecked>,
    frontier: Frontier,
    batch: AppendBatch,
    index: batch::HeadIndex,
    batch_bytes: usize,
}

impl Appender {
    fn add(&mut self, stored: EncodedBlock) -> Result<()> {
        let sequence = stored.sequence;
        let block = crate::block::open(&stored)?;
        for revision in &block.revisions {
            let key = revision.key();
            let version = revision.version();
            let event = revision.body.event;
            let deleted = revision.body.data.is_none();
            // The head before this revision; one `heads` dropped is checked against the
            // journal before this batch is appended, and assumed continued meanwhile.
            let (prior, problem) = match self.heads.get(&key) {
                Some(head) => (head.map(|h| h.version), heads::problem(&key, head, version)),
                None => {
                    self.unchecked.push(Unchecked {
                        key: key.clone(),
                        version,
                        sequence,
                    });
                    (version.checked_sub(1), None)
                }
            };
            let problem = problem.or_else(|| {
                ((version == 0) != (event == EventKind::AdCreated)
                    || deleted != (event == EventKind::AdDeleted))
                    .then(|| {
                        format!(
                            "ad {} version {version} is an {} that does not fit its data",
                            key.ad_id,
                            event.as_str()
                        )
                    })
            });
            if let Some(problem) = problem {
                return Err(broken(sequence, problem));
            }
            // `prior` is the version before the batch whenever the batch touches this ad
            // for the first time, the only case that uses it.
            batch::add_revision(
                &mut self.batch,
                &mut self.index,
                key.clone(),
                version,
                sequence,
                deleted,
                prior,
            );
            self.heads.set(key, Head { version, deleted }, sequence);
        }
        if let Some(record) = batch::idempotency_record(&block) {
            self.batch.idempotency.push(record);
        }
        self.batch_bytes += stored.bytes.len();
        batch::add_block(&mut self.batch, &mut self.frontier, &block.hash, stored);
        Ok(())
    }

    /// The batch built so far, and its revisions to check against the journal.
    fn take(&mut self) -> (AppendBatch, Vec<Unchecked>) {
        self.batch_bytes = 0;
        self.index = batch::HeadIndex::default();
        let expected_last = self
            .batch
            .blocks
            .last()
            .map(|b| b.sequence)
            .or(self.batch.expected_last);
        let batch = std::mem::replace(
            &mut self.batch,
            AppendBatch {
                expected_last,
                ..AppendBatch::default()
            },
        );
        (batch, std::mem::take(&mut self.unchecked))
    }
}

/// What pass 2's reader sends: a batch to append, or where it had to stop.
enum Built {
    Batch {
        batch: AppendBatch,
        /// Its frame bytes.
        bytes: u64,
        unchecked: Vec<Unchecked>,
    },
    /// The error, and the revisions read before it whose heads are not checked yet (a
    /// failure among them comes first).
    Failed {
        error: Error,
        unchecked: Vec<Unchecked>,
    },
}

/// Pass 2's reader: sends one batch at a time; stops at the first error (sent too) or
/// when the receiver is gone. `appended` counts the blocks the journal holds.
fn read_batches(
    path: &Path,
    blocks: u64,
    options: &ImportOptions,
    appended: Arc<AtomicU64>,
    out: &tokio::sync::mpsc::Sender<Built>,
) {
    let mut appender = Appender {
        heads: Heads::new(options.heads_kept, appended),
        unchecked: Vec::new(),
        frontier: Frontier::new(),
        batch: AppendBatch::default(),
        index: batch::HeadIndex::default(),
        batch_bytes: 0,
    };
    let result = (|| -> Result<()> {
        let (mut reader, _) = RecordReader::open(path)?;
        reader.next(0)?; // the header, checked in pass 1
        let mut next = 0u64;
        while next < blocks {
            while next < blocks
                && appender.batch.blocks.len() < options.batch_blocks.max(1)
                && appender.batch_bytes < options.batch_bytes.max(1)
            {
                match reader.next(next)? {
                    Some(Record::Block(block)) if block.sequence == next => {
                        appender.add(block)?;
                        next += 1;
                    }
                    _ => {
                        return Err(broken(
                            next,
                            "the file changed between verifying and importing",
                        ));
                    }
                }
            }
            let bytes = appender.batch_bytes as u64;
            let (batch, unchecked) = appender.take();
            let built = Built::Batch {
                batch,
                bytes,
                unchecked,
            };
            if out.blocking_send(built).is_err() {
                return Ok(());
            }
        }
        Ok(())
    })();
    if let Err(error) = result {
        let unchecked = std::mem::take(&mut appender.unchecked);
        let _ = out.blocking_send(Built::Failed { error, unchecked });
    }
}

/// Appends one batch of pass 2, after checking its revisions whose heads the reader had
/// dropped against the journal (which holds every batch before it); a create the
/// journal refuses (its ad exists) is named.
async fn append_checked(
    journal: &dyn Journal,
    batch: AppendBatch,
    unchecked: &[Unchecked],
) -> Result<()> {
    // Updates first: the append's condition compares versions, not deletes.
    if let Some((at, problem)) = heads::first_problem(journal, unchecked, false, u64::MAX).await? {
        // A create before it that the journal would refuse is the first failure.
        let (at, problem) = heads::first_problem(journal, unchecked, true, at)
            .await?
            .unwrap_or((at, problem));
        return Err(broken(at, problem));
    }
    match journal.append(batch).await {
        Err(conflict @ Error::Conflict { .. }) if unchecked.iter().any(|r| r.version == 0) => {
            match heads::first_problem(journal, unchecked, true, u64::MAX).await? {
                Some((at, problem)) => Err(broken(at, problem)),
                None => Err(conflict),
            }
        }
        other => other,
    }
}

/// Imports an export file into an empty journal; see the module docs. Returns what the
/// file held; the journal's digest then equals the file's.
pub async fn import(
    journal: &dyn Journal,
    path: &Path,
    options: &ImportOptions,
    progress: &mut (dyn FnMut(&ImportProgress) + Send),
) -> Result<ExportSummary> {
    if let Some(last) = journal.last_sequence().await? {
        return Err(Error::invalid(
            "journal",
            format!(
                "an import needs an empty journal, and this one holds {} blocks; import into \
                 a new data directory (or a new table prefix)",
                last + 1
            ),
        ));
    }
    let summary = verify_export(path, progress)?;
    if let Some(mark) = options
        .must_reach
        .iter()
        .filter(|mark| mark.blocks > summary.blocks)
        .max_by_key(|mark| mark.blocks)
    {
        return Err(Error::invalid(
            "file",
            format!(
                "this export holds {} blocks but {} has seen {}: importing it would leave \
                 a journal without acknowledged blocks {} to {}. Import a newer export or \
                 restore a backup that holds them; only if no copy does and the loss is \
                 accepted, run `adledger rebuild` first (it resets the read models to the \
                 empty journal) and import again",
                summary.blocks,
                mark.record,
                mark.blocks,
                summary.blocks,
                mark.blocks - 1
            ),
        ));
    }
    let options = &ImportOptions {
        batch_blocks: options
            .batch_blocks
            .min(journal.max_blocks_per_append())
            .max(1),
        batch_bytes: options.batch_bytes.min(journal.max_bytes_per_append()),
        ..options.clone()
    };

    // Pass 2 reads, opens and batches blocks on a thread of its own (the Ion reader is
    // not `Send`, and opening blocks is the CPU-heavy part), while this task appends the
    // previous batch: the two overlap.
    let (batches, mut received) = tokio::sync::mpsc::channel::<Built>(2);
    let appended_blocks = Arc::new(AtomicU64::new(0));
    let reading = {
        let path = path.to_path_buf();
        let options = options.clone();
        let blocks = summary.blocks;
        let appended = appended_blocks.clone();
        std::thread::Builder::new()
            .name("adledger-import".into())
            .spawn(move || read_batches(&path, blocks, &options, appended, &batches))
            .map_err(|e| Error::Unavailable(format!("cannot start the import reader: {e}")))?
    };
    let mut bytes = 0u64;
    let mut appended = Ok(());
    while let Some(next) = received.recv().await {
        let (batch, batch_bytes, unchecked) = match next {
            Built::Batch {
                batch,
                bytes,
                unchecked,
            } => (batch, bytes, unchecked),
            Built::Failed { error, unchecked } => {
                // The revisions read before the error are checked first: one of them
                // may fail at an earlier block.
                appended = match heads::first_problem(journal, &unchecked, true, u64::MAX).await {
                    Ok(Some((at, problem))) => Err(broken(at, problem)),
                    Ok(None) => Err(error),
                    Err(e) => Err(e),
                };
                break;
            }
        };
        let blocks = batch.blocks.last().map_or(0, |b| b.sequence + 1);
        if let Err(e) = append_checked(journal, batch, &unchecked).await {
            appended = Err(e);
            break;
        }
        appended_blocks.store(blocks, Ordering::Release);
        bytes += batch_bytes;
        progress(&ImportProgress {
            appending: true,
            blocks,
            bytes,
        });
    }
    // Dropping the receiver stops the reader at its next batch.
    drop(received);
    let _ = reading.join();
    appended?;
    if let Some(expected) = summary.digest {
        let stored = digest_at(journal, expected.sequence).await?;
        if stored != expected {
            return Err(Error::ChainBroken {
                sequence: expected.sequence,
                detail: format!(
                    "after the import the journal's digest is root {} tip {}, the file's is \
                     root {} tip {}",
                    stored.root, stored.tip_hash, expected.root, expected.tip_hash
                ),
            });
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
