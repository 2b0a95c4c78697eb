//! The engine's conformance tests that involve search, against a real OpenSearch
//! cluster named by `OPENSEARCH_URL` (for example `http://127.0.0.1:9200` from
//! `docker run -p 9200:9200 -e discovery.type=single-node -e
//! DISABLE_SECURITY_PLUGIN=true opensearchproject/opensearch:2`).
//!
//! Without the variable every test passes after printing `skipped: OPENSEARCH_URL not
//! set` to the real stderr (so it shows even though cargo captures test output): no
//! OpenSearch can be installed on the CI machine, where `opensearch_contract.rs` checks
//! the adapter against a loopback server instead.
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

use std::io::Write;
use std::sync::Once;

use adledger_aws::OpenSearchAuth;
use opensearch_harness::OpenSearchHarness;

/// The variable naming the cluster.
const URL_VAR: &str = "OPENSEARCH_URL";

/// The cluster from the environment, or `None` after saying the tests are skipped.
fn from_env() -> Option<OpenSearchHarness> {
    let Some(url) = std::env::var(URL_VAR).ok().filter(|v| !v.is_empty()) else {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {URL_VAR} not set (the OpenSearch live tests need a cluster; \
                     the adapter's contract tests ran against a loopback server)"
            );
        });
        return None;
    };
    let auth = match (
        std::env::var("OPENSEARCH_USERNAME").ok(),
        std::env::var("OPENSEARCH_PASSWORD").ok(),
    ) {
        (Some(username), Some(password)) => OpenSearchAuth::Basic { username, password },
        _ => OpenSearchAuth::None,
    };
    Some(OpenSearchHarness {
        url,
        auth,
        index: None,
    })
}

/// One test per conformance behaviour that reads or writes the search index; each
/// passes after the `skipped:` line when no cluster is configured.
macro_rules! live_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(harness) = from_env() else {
                    return;
                };
                adledger_engine::testkit::$name(&harness).await;
            }
        )*
    };
}

live_tests!(
    search_finds_by_text_and_filters,
    search_pages_and_forgets_deleted_ads,
    search_checkpoint_survives_reopen,
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
