//! Determinism over real HTTP: the fixed command script `fixtures/script.jsonl`, run
//! twice against two fresh `--deterministic 42` servers, gives byte-identical responses
//! (ids, times) and an identical journal tip; the tip is pinned by `fixtures/golden.json`.
//!
//! The golden file is never re-blessed silently: when it is missing, the test writes it
//! and fails, asking for it to be reviewed and committed (see `fixtures/README.md`).

mod e2e_common;
mod support;

use support::script::{Run, SEED, Step, Tip, check_golden, load_script, run_script};

use e2e_common::Server;

/// One run on a fresh `--deterministic 42` server of the local backend.
async fn run_once(steps: &[Step]) -> Run {
    let server = Server::start_deterministic(SEED).await;
    run_script(&server, steps).await
}

#[tokio::test]
async fn script_twice_gives_identical_responses_and_journal_tip() {
    let steps = load_script();
    let first = run_once(&steps).await;
    let second = run_once(&steps).await;

    assert_eq!(first.observed.len(), second.observed.len());
    for (a, b) in first.observed.iter().zip(&second.observed) {
        assert_eq!(
            a, b,
            "script line {}: the two --deterministic {SEED} runs answered differently",
            a.line
        );
    }
    assert_eq!(first.created, second.created, "same ids in both runs");
    assert_eq!(first.revisions, second.revisions, "same revision hashes");
    match (&first.tip, &second.tip) {
        (Tip::Digest(a), Tip::Digest(b)) => {
            println!("journal tip compared with GET /ledger/digest: {a}");
            assert_eq!(a, b, "identical journal digest in both runs");
        }
        (Tip::Versions(a), Tip::Versions(b)) => {
            println!(
                "GET /ledger/digest answered 404: journal compared with the full \
                 ?versions=true output of all {} ads (hashes included)",
                a.len()
            );
            assert_eq!(a, b, "identical ?versions=true output in both runs");
        }
        (a, b) => panic!("the digest route answered in one run only: {a:?} vs {b:?}"),
    }

    check_golden(&first);
}
