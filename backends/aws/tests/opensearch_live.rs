//! The engine's conformance tests that involve search, against a real OpenSearch
//! cluster named by `OPENSEARCH_URL` (for example `http://127.0.0.1:9200` from
//! `docker run -p 9200:9200 -e discovery.type=single-node -e
//! DISABLE_SECURITY_PLUGIN=true opensearchproject/opensearch:2`).
//!
//! Every test is `#[ignore = "needs OPENSEARCH_URL …"]`d, so the runner reports them as not run: no OpenSearch can
//! be installed on the CI machine, where `opensearch_contract.rs` checks the adapter
//! against a loopback server instead. Run them with the variable set and `--ignored`:
//! `OPENSEARCH_URL=http://127.0.0.1:9200 cargo test -p adledger-aws --test
//! opensearch_live -- --ignored`. Run with `--ignored` but without the variable, they
//! fail, saying so.
//!
//! The journal and the state store are the local backend's (sled in a temporary
//! directory), so only OpenSearch is needed; each place gets its own index,
//! `adledger-test-<pid>-<nanos>-<n>-ads`, created with `create_index` as `adledger aws
//! init` does. Optional: `OPENSEARCH_USERNAME` and `OPENSEARCH_PASSWORD` for basic
//! authentication. Test indexes are left on the cluster (they are small); delete them
//! with `DELETE /adledger-test-*`.
//!
//! The tamper tests are not run here: they alter the journal, which is sled, and run on
//! the local backend's own suite.

mod opensearch_harness;

use adledger_aws::OpenSearchAuth;
use opensearch_harness::OpenSearchHarness;

/// The variable naming the cluster.
const URL_VAR: &str = "OPENSEARCH_URL";

/// The cluster from the environment. Panics, saying what to set, without it: these
/// tests only run when asked for with `--ignored`.
fn from_env() -> OpenSearchHarness {
    let Some(url) = std::env::var(URL_VAR).ok().filter(|v| !v.is_empty()) else {
        panic!(
            "{URL_VAR} is not set: the OpenSearch live tests need a cluster, e.g. \
             `{URL_VAR}=http://127.0.0.1:9200` (see this file's doc for a docker command)"
        );
    };
    let auth = match (
        std::env::var("OPENSEARCH_USERNAME").ok(),
        std::env::var("OPENSEARCH_PASSWORD").ok(),
    ) {
        (Some(username), Some(password)) => OpenSearchAuth::Basic { username, password },
        _ => OpenSearchAuth::None,
    };
    OpenSearchHarness {
        url,
        auth,
        index: None,
    }
}

/// One test per conformance behaviour that reads or writes the search index, each ignored
/// unless asked for (`--ignored`) since it needs a live cluster.
macro_rules! live_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs OPENSEARCH_URL (a live OpenSearch cluster)"]
            async fn $name() {
                let harness = from_env();
                adledger_engine::testkit::$name(&harness).await;
            }
        )*
    };
}

live_tests!(
    search_finds_by_text_and_filters,
    search_pages_and_forgets_deleted_ads,
    search_checkpoint_survives_reopen,
    search_ties_break_by_ad_id,
    search_put_overrides_versions_and_tombstones,
    state_clear_resets_everything,
    ledger_lifecycle_create_update_delete,
    ledger_reads_see_own_writes,
    ledger_reopen_continues_the_chain,
    ledger_rebuild_equals_live_read_models,
    maintenance_replay_one_ad_over_a_range_equals_live_state_at_to,
    maintenance_rebuild_after_loss_equals_the_originals,
    maintenance_interrupted_rebuild_resumes_from_its_checkpoint,
    maintenance_snapshot_restore_plus_tail_equals_rebuild,
);
