//! The conformance suite: one behaviour per function, run by every backend.
//!
//! A backend's test crate implements [`Harness`] and invokes
//! [`conformance_tests!`](crate::conformance_tests), which expands to one test per
//! behaviour below, so a behaviour tested on one backend is tested on all and no backend
//! can forget one.

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::LogicalClock;
use crate::error::Result;
use crate::ids::UlidGenerator;
use crate::ledger::{Ledger, LedgerOptions};
use crate::ports::{Journal, Ports, SearchIndex, StateStore};

mod engine;
mod fixtures;
mod high_water;
mod maintenance;
mod ports;
mod property;
pub mod subscriptions;
mod tamper;

pub use engine::*;

use crate::actor::Actor;
use crate::command::{Command, Outcome};

/// The caller the conformance suite commits as, so every behaviour is checked with an
/// actor in the block headers (as a server with identity writes them).
pub fn tester() -> Actor {
    Actor {
        sub: "conformance-suite".into(),
        iss: "https://issuer.example/adledger-testkit".into(),
    }
}

/// Commits as [`tester`].
pub(crate) trait RunAsTester {
    /// `execute_as(command, Some(tester()))`.
    fn run(&self, command: Command) -> impl Future<Output = crate::Result<Outcome>> + Send;
}

impl RunAsTester for Ledger {
    fn run(&self, command: Command) -> impl Future<Output = crate::Result<Outcome>> + Send {
        self.execute_as(command, Some(tester()))
    }
}
pub use fixtures::*;
pub use high_water::*;
pub use maintenance::*;
pub use ports::*;
pub use property::*;
pub use tamper::*;

/// One backend's storage for one ledger.
#[derive(Debug, Clone)]
pub struct Stores {
    /// The journal.
    pub journal: Arc<dyn Journal>,
    /// The state store.
    pub state: Arc<dyn StateStore>,
    /// The search index.
    pub search: Arc<dyn SearchIndex>,
}

impl Stores {
    /// Ports over these stores with a deterministic clock and ids.
    pub fn deterministic_ports(&self, seed: u64) -> Ports {
        Ports {
            journal: self.journal.clone(),
            state: self.state.clone(),
            search: self.search.clone(),
            clock: Arc::new(LogicalClock::new()),
            ids: Arc::new(UlidGenerator::seeded(seed)),
            sharing: Default::default(),
        }
    }

    /// A running ledger over these stores with a deterministic clock and ids.
    pub async fn ledger(&self, seed: u64) -> Result<Ledger> {
        Ledger::open(self.deterministic_ports(seed), LedgerOptions::default()).await
    }
}

/// How the suite creates and reopens a backend's storage.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// A place one ledger's data lives in (a temporary directory, a table prefix).
    /// Dropping it may delete the data.
    type Place: Send + Sync;

    /// A new, empty place.
    async fn place(&self) -> Result<Self::Place>;

    /// Opens the stores at `place`. The suite drops every store it opened at a place
    /// before opening that place again, so this also serves as "restart".
    async fn open(&self, place: &Self::Place) -> Result<Stores>;

    /// Opens an extra, empty pair of read models at `place` under `name`, next to the
    /// live ones: a rebuild target.
    async fn open_read_models(
        &self,
        place: &Self::Place,
        name: &str,
    ) -> Result<(Arc<dyn StateStore>, Arc<dyn SearchIndex>)>;

    /// Alters the stored journal at `place` as a malicious operator with direct database
    /// access would, bypassing the `Journal` port (which can neither rewrite nor remove a
    /// block). The suite has dropped every store it opened at `place`, as when the server
    /// is stopped.
    ///
    /// Every backend must implement it. The provided body only exists so that a harness
    /// written before the tamper tests still compiles: it fails each of them with a
    /// message saying what is missing — loudly, never a silent skip.
    async fn tamper(&self, place: &Self::Place, action: Tamper) -> Result<()> {
        let _ = place;
        Err(crate::error::Error::Unavailable(format!(
            "this backend's test harness does not implement `Harness::tamper`, so the \
             tamper tests cannot alter its storage (asked for {action:?}); implement it in \
             the backend's conformance test module"
        )))
    }
}

/// Expands to one `#[tokio::test]` per conformance behaviour, each calling the suite
/// function with the harness built by `$harness`.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@async $harness;
            journal_starts_empty,
            journal_append_then_read_back,
            journal_refuses_stale_tip_and_writes_nothing,
            journal_refuses_stale_head_and_writes_nothing,
            journal_survives_reopen,
            journal_stores_idempotency_and_merkle_nodes,
            state_apply_is_idempotent_by_version,
            state_list_pages_and_skips_tombstones,
            state_list_skips_a_hundred_thousand_tombstones,
            state_get_many_answers_each_key_in_order,
            state_clear_resets_everything,
            search_finds_by_text_and_filters,
            search_pages_and_forgets_deleted_ads,
            search_checkpoint_survives_reopen,
            search_ties_break_by_ad_id,
            ledger_lifecycle_create_update_delete,
            ledger_concurrent_updates_exactly_one_wins,
            ledger_idempotent_create_is_forever,
            ledger_update_that_changes_nothing_appends_nothing,
            ledger_reads_see_own_writes,
            ledger_reopen_continues_the_chain,
            ledger_deterministic_runs_are_byte_identical,
            ledger_history_and_as_of,
            ledger_digest_matches_reference_tree,
            ledger_revision_evidence_proves_every_version,
            ledger_actors_are_recorded_in_headers,
            ledger_rebuild_equals_live_read_models,
            ledger_group_commit_batches_concurrent_creates,
            ledger_refuses_a_journal_behind_its_read_models,
            state_scan_orders_by_key_and_keeps_tombstones,
            state_put_overwrites_and_sets_checkpoint,
            search_put_overrides_versions_and_tombstones,
            search_hits_carry_their_indexed_version,
            maintenance_replay_one_ad_over_a_range_equals_live_state_at_to,
            maintenance_rebuild_after_loss_equals_the_originals,
            maintenance_interrupted_rebuild_resumes_from_its_checkpoint,
            maintenance_snapshot_restore_plus_tail_equals_rebuild,
            maintenance_tampered_snapshot_is_refused,
            maintenance_export_import_round_trip_keeps_the_digest,
            maintenance_truncated_or_altered_export_is_refused,
            tamper_rewritten_price_is_located,
            tamper_deleted_block_is_located,
            tamper_swapped_blocks_are_located,
            tamper_invalidates_earlier_proofs,
        );
        $crate::conformance_tests!(@sync $harness;
            property_random_commands_match_model_and_rebuild,
        );
    };
    (@async $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::testkit::$name(&harness).await;
            }
        )*
    };
    (@sync $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let harness = $harness;
                $crate::testkit::$name(&harness);
            }
        )*
    };
}
