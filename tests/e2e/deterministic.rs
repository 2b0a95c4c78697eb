//! Determinism over real HTTP, on each backend: the fixed command script
//! `fixtures/script.jsonl`, run twice against two fresh `--deterministic 42` ledgers,
//! gives byte-identical responses (ids, times) and an identical journal tip, and that tip
//! — the digest (sequence, Merkle root, tip hash) and every revision hash — is the one
//! pinned in `fixtures/golden.json`. So the AWS backend gives the journal the local
//! backend gives (the same check at the engine level, without the server, is
//! `backends/aws/tests/backend.rs`).
//!
//! The golden file is never re-blessed silently: when it is missing, the local variant
//! writes it and fails, asking for it to be reviewed and committed (see
//! `fixtures/README.md`); the AWS variant never writes it.

use reqwest::StatusCode;

use crate::support::script::{
    Run, SEED, Step, Tip, check_golden, golden_path, load_script, run_script,
};
use crate::support::{Backend, Server, per_backend};

/// One run on a fresh `--deterministic 42` ledger of `backend`.
async fn run_once(backend: Backend, steps: &[Step]) -> Run {
    let server = Server::start_deterministic(backend, SEED).await;
    if backend == Backend::Aws {
        let health = server.get("/healthz").await;
        health.expect_status(StatusCode::OK);
        assert!(
            health.json()["dynamodbRequests"].is_object(),
            "the server must run on the AWS backend: {}",
            health.text
        );
    }
    run_script(&server, steps).await
}

async fn script_twice_gives_identical_responses_and_the_golden_journal(backend: Backend) {
    if backend != Backend::Local {
        // Never write a golden file from another backend: it must already pin the local one.
        assert!(
            golden_path().exists(),
            "{} is missing; the local variant of this test writes it",
            golden_path().display()
        );
    }
    let steps = load_script();
    let first = run_once(backend, &steps).await;
    let second = run_once(backend, &steps).await;

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
            assert_eq!(
                backend,
                Backend::Local,
                "GET /ledger/digest must be served on the AWS backend"
            );
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

per_backend!(script_twice_gives_identical_responses_and_the_golden_journal);
