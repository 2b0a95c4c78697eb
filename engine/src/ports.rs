//! The ports: what the engine needs from storage, and nothing more.
//!
//! Each backend implements [`Journal`], [`StateStore`] and [`SearchIndex`]; the engine
//! holds them as `Arc<dyn …>`. A backend whose storage several server processes share
//! also supplies a [`ProjectionLease`] and says what is shared in [`Sharing`]. Logic that is the same for every backend (hashing, the
//! chain, Merkle trees, batching, projection) lives in the engine, so these traits are
//! small and each method has a contract the conformance suite checks.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::ad::{Ad, AdKey};
use crate::block::EncodedBlock;
use crate::error::Result;
use crate::hash::Hash;
use crate::revision::Revision;

/// The current head of one ad in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdHead {
    /// The version of the ad's latest revision.
    pub version: u64,
    /// The sequence number of the block holding that revision.
    pub sequence: u64,
    /// Whether the latest revision is a delete.
    pub deleted: bool,
}

/// A change of one ad's head, conditioned on its previous value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadUpdate {
    /// The ad.
    pub key: AdKey,
    /// The head version the ad must have now; `None` means the ad must not exist.
    pub expected_version: Option<u64>,
    /// The head after the append.
    pub new_head: AdHead,
}

/// Where one revision of an ad is: lets history be read without a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRef {
    /// The ad.
    pub key: AdKey,
    /// The revision's version.
    pub version: u64,
    /// The block holding it.
    pub sequence: u64,
}

/// The durable outcome of a create that carried an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The publisher the key is scoped to.
    pub publisher_id: String,
    /// The client's key.
    pub key: String,
    /// Fingerprint of the request body, so a reused key with a different body is refused.
    pub request_hash: Hash,
    /// The ad the create produced.
    pub ad_id: String,
    /// The block holding the create.
    pub sequence: u64,
}

/// One stored node of the Merkle tree over block hashes: the root of the perfect subtree
/// covering leaves `index * 2^level .. (index + 1) * 2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerkleNode {
    /// Height above the leaves (leaves are level 0).
    pub level: u8,
    /// Position among the nodes of that level.
    pub index: u64,
    /// The node's hash.
    pub hash: Hash,
}

/// Everything one group commit writes, as one atomic unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendBatch {
    /// The journal's last sequence number before this batch (`None`: the journal is empty).
    pub expected_last: Option<u64>,
    /// New blocks, contiguous, starting right after `expected_last`.
    pub blocks: Vec<EncodedBlock>,
    /// At most one update per ad.
    pub heads: Vec<HeadUpdate>,
    /// One entry per new revision.
    pub revisions: Vec<RevisionRef>,
    /// Idempotency records for creates that carried a key.
    pub idempotency: Vec<IdempotencyRecord>,
    /// Merkle nodes completed by the new blocks.
    pub merkle_nodes: Vec<MerkleNode>,
}

/// The append-only, hash-chained journal.
#[async_trait]
pub trait Journal: Send + Sync + Debug + 'static {
    /// Appends a batch.
    ///
    /// # Contract
    ///
    /// - **Atomic**: every item of the batch is written, or none is.
    /// - **Conditional**: fails with [`Error::Conflict`](crate::Error::Conflict) and writes
    ///   nothing if the journal's last sequence is not `batch.expected_last`, or if any
    ///   head's current version differs from its `expected_version`.
    /// - **Durable**: returns `Ok` only once the batch survives a process crash and a power
    ///   loss.
    /// - Never overwrites an existing block, idempotency record or Merkle node.
    async fn append(&self, batch: AppendBatch) -> Result<()>;

    /// The last sequence number, or `None` for an empty journal.
    async fn last_sequence(&self) -> Result<Option<u64>>;

    /// Up to `max` blocks in ascending sequence order starting at `from`, contiguous; fewer
    /// (possibly none) at the end of the journal.
    ///
    /// A journal shared by several processes may end a non-empty answer at the last
    /// sequence this handle knows committed (its own append, or a
    /// [`last_sequence`](Journal::last_sequence) it answered) rather than read the tip
    /// again; none is answered only at the end as read now. A reader that must see
    /// another process's latest blocks calls `last_sequence` first, then reads up to it.
    async fn read_blocks(&self, from: u64, max: usize) -> Result<Vec<EncodedBlock>>;

    /// The blocks with the sequence numbers `sequences` (ascending), in that order; a
    /// sequence with no block is left out (callers that expect it report a broken chain).
    ///
    /// One ad's history lives in scattered blocks: a page of it is read with one call
    /// instead of one round trip per block. The default reads each run of consecutive
    /// sequences with one [`read_blocks`](Journal::read_blocks); a backend that can fetch
    /// scattered keys in one request overrides it.
    async fn read_blocks_at(&self, sequences: &[u64]) -> Result<Vec<EncodedBlock>> {
        let mut blocks = Vec::with_capacity(sequences.len());
        let mut i = 0;
        while i < sequences.len() {
            let start = sequences[i];
            let mut run = 1;
            while i + run < sequences.len() && sequences[i + run] == start + run as u64 {
                run += 1;
            }
            blocks.extend(
                self.read_blocks(start, run)
                    .await?
                    .into_iter()
                    .filter(|b| b.sequence >= start && b.sequence < start + run as u64),
            );
            i += run;
        }
        Ok(blocks)
    }

    /// The ad's head, or `None` if it was never created.
    async fn ad_head(&self, key: &AdKey) -> Result<Option<AdHead>>;

    /// Every revision of the ad, by ascending version (empty if it was never created).
    async fn ad_revisions(&self, key: &AdKey) -> Result<Vec<RevisionRef>>;

    /// The record stored for `(publisher_id, key)`, if any.
    async fn idempotency(&self, publisher_id: &str, key: &str)
    -> Result<Option<IdempotencyRecord>>;

    /// The stored Merkle nodes at `(level, index)`, in the order asked; `None` where a
    /// node is not stored.
    async fn merkle_nodes(&self, ids: &[(u8, u64)]) -> Result<Vec<Option<Hash>>>;

    /// The most blocks one [`append`](Journal::append) can take atomically (DynamoDB
    /// transactions hold at most 100 items; sled has no such limit). The committer never
    /// puts more commands into one group commit, so a batch never has to be split, which
    /// would make part of it durable while its callers were told it failed.
    fn max_blocks_per_append(&self) -> usize;

    /// The most bytes of block frames one [`append`](Journal::append) can take atomically
    /// (a DynamoDB transaction holds at most 4 MB). The committer splits a group commit
    /// whose blocks would pass it, so a batch of large ads is committed in several appends
    /// instead of being refused whole. A batch of one block is never split: a block too
    /// large for the backend is refused by `append` itself.
    ///
    /// The default has no limit (sled, memory).
    fn max_bytes_per_append(&self) -> usize {
        usize::MAX
    }
}

/// An ad as the state store holds it: its latest known revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdState {
    /// The ad.
    pub key: AdKey,
    /// Latest version.
    pub version: u64,
    /// Sequence of the block holding that version.
    pub sequence: u64,
    /// When that version was committed.
    pub updated_at: DateTime<Utc>,
    /// The ad's fields; `None` once deleted (a tombstone, so reads can answer 410).
    pub ad: Option<Ad>,
}

impl AdState {
    /// The state after `revision`.
    pub fn from_revision(revision: &Revision) -> AdState {
        AdState {
            key: revision.key(),
            version: revision.version(),
            sequence: revision.sequence(),
            updated_at: revision.body.metadata.tx_time,
            ad: revision.body.data.clone(),
        }
    }
}

/// The read model of current ads.
#[async_trait]
pub trait StateStore: Send + Sync + Debug + 'static {
    /// Applies revisions (in journal order) and records `checkpoint`.
    ///
    /// # Contract
    ///
    /// - A revision whose version is not newer than the stored one for its ad is ignored,
    ///   so re-applying after a crash or replay is harmless.
    /// - The revisions and the checkpoint become visible together, or (after a crash)
    ///   neither does. Durability is not required: projections are rebuilt from the
    ///   journal.
    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()>;

    /// The ad's latest state (a tombstone if deleted), or `None` if never seen.
    async fn get(&self, key: &AdKey) -> Result<Option<AdState>>;

    /// What [`get`](StateStore::get) answers for each key, in one call: a search page's
    /// hits are read together (on AWS one `BatchGetItem` per 100 keys instead of one
    /// `GetItem` each).
    ///
    /// # Contract
    ///
    /// - One answer per key, in the order of `keys`; a key given twice is answered twice.
    /// - Each answer is what `get` would return for that key (tombstones included, `None`
    ///   if never seen), as of some moment during the call.
    async fn get_many(&self, keys: &[AdKey]) -> Result<Vec<Option<AdState>>>;

    /// Live (not deleted) ads of a publisher ordered by ad id (ascending, compared as
    /// bytes), strictly after `after`. The order is a function of the ads alone, so the
    /// same journal lists the same pages whatever the store's history (a rebuild, an
    /// import).
    async fn list(
        &self,
        publisher_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AdState>>;

    /// The next journal sequence this store has not applied (0 when empty).
    async fn checkpoint(&self) -> Result<u64>;

    /// Removes every ad and resets the checkpoint to 0.
    async fn clear(&self) -> Result<()>;

    /// Every stored entry, tombstones included, in ascending key order, strictly after
    /// `after`; at most `limit` (fewer, possibly none, at the end). Snapshots and diffs
    /// page through the whole store with it.
    ///
    /// # Contract
    ///
    /// - **Order**: by [`AdKey`]'s `Ord`: publisher id, then ad id, each compared as
    ///   bytes. Two stores holding the same ads return them in the same order, so a diff
    ///   can merge two scans; a backend whose native order differs sorts before answering.
    /// - **Cursor**: `after` is the key of the last entry of the previous page and need not
    ///   exist any more; `None` starts at the first entry. `limit == 0` returns nothing.
    /// - **Tombstones**: a deleted ad is returned with `ad: None`, exactly as `get`
    ///   returns it; nothing else is filtered.
    /// - **Consistency**: each call sees entries as of some moment during the call; a scan
    ///   over several calls is consistent only while no one writes (the store is not
    ///   being projected into, as during a snapshot of a stopped ledger, or a rebuild).
    async fn scan(&self, after: Option<&AdKey>, limit: usize) -> Result<Vec<AdState>>;

    /// Stores `states` as given, replacing whatever is stored for their keys, and, if
    /// `checkpoint` is `Some`, sets the checkpoint. Restoring a snapshot, replaying one ad
    /// and rebuilding write with it.
    ///
    /// # Contract
    ///
    /// - **Unconditional**: unlike `apply`, versions are not compared: a state older than
    ///   the stored one replaces it (that is how a replay to an earlier time works), and a
    ///   tombstone (`ad: None`) replaces a live ad and is kept as a tombstone (`get`
    ///   returns it, `list` skips it).
    /// - Within one call, a key given twice ends with its last state.
    /// - **Atomic**: the states and the checkpoint become visible together, or (after a
    ///   crash) neither does; with `checkpoint: None` the stored checkpoint is unchanged.
    ///   A backend that cannot write everything in one atomic unit writes the states
    ///   first and the checkpoint last, so a crash never leaves a checkpoint ahead of the
    ///   states it covers (a rebuild then resumes from the older checkpoint and writes
    ///   the same states again).
    /// - Durability is not required (read models are rebuilt from the journal).
    async fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<()>;
}

/// A full-text search over live ads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Free text over title, description, category and tags; empty matches everything.
    pub text: String,
    /// Only this publisher's ads.
    pub publisher_id: Option<String>,
    /// Only ads in exactly this category.
    pub category: Option<String>,
    /// Only ads carrying exactly this tag.
    pub tag: Option<String>,
    /// Only ads priced at least this much (ads without a price never match a price bound).
    pub min_price: Option<Decimal>,
    /// Only ads priced at most this much.
    pub max_price: Option<Decimal>,
    /// Page size.
    pub limit: usize,
    /// Hits to skip (the page cursor).
    pub offset: usize,
}

/// One page of search hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// How many ads match in all.
    pub total: u64,
    /// This page's ads, best match first (newest first when there is no text). Ties break
    /// by ad id: ascending after an equal score, descending after an equal creation time
    /// (so still newest first for ULIDs), so the same ads give the same pages whatever
    /// the index's history.
    pub ads: Vec<Ad>,
    /// The version and commit time each hit was indexed at, one per ad in `ads`, when the
    /// index stores them (tantivy, memory): a page is then served from the index alone,
    /// a consistent snapshot, instead of one state-store read per hit, which took about a
    /// fifth of a search's CPU at a million ads. `None` from an index that does not
    /// (OpenSearch): the caller reads them from the state store.
    pub versions: Option<Vec<IndexedVersion>>,
}

/// One page of search hits, each already in the bytes the API answers for that ad.
///
/// Reading a hit's stored ad, parsing it into an [`Ad`] and serializing the response
/// took about a quarter of a search's CPU at a million ads; an index that stores each
/// ad's [`AdView`](crate::ad_view::AdView) JSON lets the server splice those bytes into
/// the response instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchJsonPage {
    /// How many ads match in all.
    pub total: u64,
    /// This page's hits in [`SearchPage::ads`]' order, each the JSON of the `AdView` of
    /// the indexed revision: the same bytes a GET of that revision answers.
    pub hits: Vec<String>,
}

/// Which revision of an ad a search hit shows: what every other ad in the API carries
/// besides its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedVersion {
    /// The version of the indexed revision.
    pub version: u64,
    /// When that revision was committed (its `txTime`).
    pub updated_at: DateTime<Utc>,
}

/// The full-text read model.
#[async_trait]
pub trait SearchIndex: Send + Sync + Debug + 'static {
    /// Indexes revisions (in journal order) and records `checkpoint`.
    ///
    /// # Contract
    ///
    /// - Idempotent by version: re-applying revisions converges to the same index.
    /// - A delete revision removes the ad from results.
    /// - On return, searches see the revisions, and the checkpoint is stored with them
    ///   (a crash never leaves a checkpoint ahead of the indexed data).
    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()>;

    /// Runs a query.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage>;

    /// Runs a query, answering each hit as the API's JSON of the ad, when the index
    /// stores it (tantivy); `None` (the default) when it does not, and the caller uses
    /// [`search`](SearchIndex::search). Same hits, order and total as `search`.
    async fn search_json(&self, query: &SearchQuery) -> Result<Option<SearchJsonPage>> {
        let _ = query;
        Ok(None)
    }

    /// The next journal sequence this index has not applied (0 when empty).
    async fn checkpoint(&self) -> Result<u64>;

    /// Removes every document and resets the checkpoint to 0.
    async fn clear(&self) -> Result<()>;

    /// Indexes `states` as given and, if `checkpoint` is `Some`, stores the checkpoint
    /// with them. Restoring a snapshot, replaying one ad and rebuilding write with it.
    ///
    /// # Contract
    ///
    /// - **Unconditional**: versions are not compared. A live state (`ad: Some`) replaces
    ///   whatever the index holds for that ad id, even a newer version or a tombstone, so
    ///   searches return exactly this ad. A tombstone (`ad: None`) removes the ad from
    ///   every result, even if a newer live version was indexed.
    /// - After `put`, the index must behave for later `apply` calls as if the put state
    ///   had been applied: an `apply` of a revision not newer than the put version is
    ///   ignored, a newer one wins. So the index remembers the put version even for a
    ///   tombstone (the local backend keeps a tombstone document carrying it), and a
    ///   backend with its own version checks (OpenSearch external versioning) must not
    ///   refuse a put whose version is lower than the indexed one.
    /// - Within one call, an ad given twice ends with its last state.
    /// - On return, searches see the states, and the checkpoint (when given) is stored
    ///   with them: a crash never leaves a checkpoint ahead of the indexed data. With
    ///   `checkpoint: None` the stored checkpoint is unchanged.
    async fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<()>;
}

/// The source of transaction times.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The source of ad and transaction ids.
pub trait IdGenerator: Send + Sync + Debug + 'static {
    /// A new, unique, time-ordered id for something happening at `at`.
    fn next_id(&self, at: DateTime<Utc>) -> String;
}

/// The answer of [`ProjectionLease::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseGrant {
    /// This process holds the lease for `valid_for`, counted from when the `acquire` call
    /// started.
    Held {
        /// How long the lease lasts unless renewed.
        valid_for: Duration,
    },
    /// Another process holds an unexpired lease.
    HeldElsewhere {
        /// The holder's owner id.
        owner: String,
        /// How long until the holder's lease lapses, by this process's clock (zero if it
        /// has just lapsed).
        expires_in: Duration,
    },
}

/// The right to project into a read model that several processes share (the AWS
/// backend's DynamoDB state store). Only the holder writes; the others serve reads and
/// wait for the holder's checkpoint. Storage that only one process can open (sled,
/// a local tantivy directory) needs no lease: see [`Sharing`].
#[async_trait]
pub trait ProjectionLease: Send + Sync + Debug + 'static {
    /// This process's owner id: unique per process, shown in logs and `/healthz`.
    fn owner(&self) -> &str;

    /// Takes the lease if it is free or has lapsed; renews it if this process holds it.
    ///
    /// # Contract
    ///
    /// - **Conditional and atomic**: of any number of processes calling at once, at most
    ///   one gets [`LeaseGrant::Held`] while an unexpired lease exists. Expiry is judged
    ///   by the wall clock of the process taking over, so clocks that disagree by more
    ///   than the engine's safety margin can make two holders overlap briefly; projection
    ///   writes are idempotent by version, so an overlap wastes work but corrupts nothing.
    /// - A holder that renews before its lease lapses keeps it; a lapsed lease may be taken
    ///   by anyone.
    /// - An error leaves the lease as it was or as if the call succeeded; the caller must
    ///   treat the lease as lost once its last grant lapses.
    async fn acquire(&self) -> Result<LeaseGrant>;

    /// Gives the lease up if this process holds it, so another process can take over at
    /// once (graceful shutdown); does nothing if another process holds it.
    async fn release(&self) -> Result<()>;
}

/// Whether, and how, other processes share this ledger's storage.
///
/// The default is one process owning everything (the local backend: sled and tantivy lock
/// their directories). On AWS several server processes append to one DynamoDB journal and
/// share the DynamoDB state store, while a tantivy search index is each process's own.
#[derive(Debug, Clone, Default)]
pub struct Sharing {
    /// Other processes may append to the journal: the engine then learns the tip from the
    /// journal (reads, and a periodic poll), not only from its own committer.
    pub journal: bool,
    /// `Some`: the state store is shared, and only the holder of this lease projects into
    /// it. `None`: this process is its only writer.
    pub state: Option<Arc<dyn ProjectionLease>>,
    /// `Some`: the search index is shared (OpenSearch) and only the holder projects into
    /// it (it may be the same lease as `state`). `None`: the index is this process's own
    /// (tantivy), and this process projects into it whatever other processes do.
    pub search: Option<Arc<dyn ProjectionLease>>,
}

/// The storage a ledger runs on, as chosen by configuration.
#[derive(Debug, Clone)]
pub struct Ports {
    /// The journal.
    pub journal: Arc<dyn Journal>,
    /// The state read model.
    pub state: Arc<dyn StateStore>,
    /// The search read model.
    pub search: Arc<dyn SearchIndex>,
    /// Transaction times.
    pub clock: Arc<dyn Clock>,
    /// Ids.
    pub ids: Arc<dyn IdGenerator>,
    /// Which of the above other processes share (none, for the local backend).
    pub sharing: Sharing,
}
