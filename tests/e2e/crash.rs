//! Durability over real HTTP, on each backend: every create acknowledged with 201 before
//! a `kill -9` is readable after a restart on the same ledger (the same data directory,
//! and on AWS the same tables); then `adledger verify` checks the whole stopped journal
//! (chain and Merkle tree) against the digest served after the restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{Backend, Server, fetch, json_body, per_durable_backend, run_cli};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::Mutex;

const CLIENTS: usize = 32;
/// Kill once this many creates were acknowledged...
const KILL_AFTER_ACKS: usize = 300;
/// ...or after this long, whichever comes first.
const KILL_DEADLINE: Duration = Duration::from_secs(40);
/// Per-client bound on iterations, so no loop is unbounded.
const MAX_PER_CLIENT: usize = 2_000;

/// Whether `adledger --help` lists a `verify` subcommand.
async fn has_verify_subcommand() -> bool {
    let out = run_cli(&["--help"]).await;
    let help =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    help.lines().any(|line| {
        let line = line.trim_start();
        line == "verify" || line.starts_with("verify ")
    })
}

async fn acknowledged_creates_survive_kill_9(backend: Backend) {
    let mut server = Server::start(backend).await;
    let base = server.base_url.clone();
    let client = server.client.clone();

    let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let ack_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let killing = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (base, client) = (base.clone(), client.clone());
        let (acked, ack_count) = (acked.clone(), ack_count.clone());
        let (stop, killing) = (stop.clone(), killing.clone());
        clients.push(tokio::spawn(async move {
            let publisher = format!("crash{}", c % 4);
            let mut errors = 0usize;
            for i in 0..MAX_PER_CLIENT {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let title = format!("client {c} ad {i}");
                let rb = json_body(
                    client.request(Method::POST, format!("{base}/publisher/{publisher}/ad")),
                    &json!({"adTitle": title, "price": "12.34", "tags": [format!("c{c}")]}),
                );
                match fetch(rb).await {
                    Ok(resp) if resp.status == StatusCode::CREATED => {
                        let id = resp.json()["adId"].as_str().expect("adId").to_string();
                        acked.lock().await.push((publisher.clone(), id, title));
                        ack_count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => panic!(
                        "client {c}: create gave {} before the crash: {}",
                        resp.status, resp.text
                    ),
                    // The server is gone (killed): stop this client.
                    Err(e) => {
                        assert!(
                            killing.load(Ordering::SeqCst),
                            "client {c}: request failed before the kill: {e}"
                        );
                        errors += 1;
                        break;
                    }
                }
            }
            errors
        }));
    }

    // Wait (bounded polling) for enough acknowledgements, then kill -9 mid-stream.
    let started = tokio::time::Instant::now();
    while ack_count.load(Ordering::Relaxed) < KILL_AFTER_ACKS && started.elapsed() < KILL_DEADLINE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acks_at_kill = ack_count.load(Ordering::Relaxed);
    killing.store(true, Ordering::SeqCst);
    server.kill_9().await;
    stop.store(true, Ordering::Relaxed);
    let mut clients_cut_off = 0;
    for task in clients {
        let errors = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a client did not stop within 60 s of the kill")
            .expect("client task");
        clients_cut_off += errors;
    }
    let acked = Arc::try_unwrap(acked).expect("clients done").into_inner();
    println!(
        "killed after {acks_at_kill} acks ({} total acked, {clients_cut_off} clients saw the \
         connection die mid-request)",
        acked.len()
    );
    assert!(
        acked.len() >= CLIENTS,
        "too few creates were acknowledged before the kill ({}) for the test to mean \
         anything\n--- stderr ---\n{}",
        acked.len(),
        server.stderr_tail()
    );

    // Restart on the same data directory: every acknowledged ad is there.
    server.restart().await;
    let health = server.get("/healthz").await;
    health.expect_status(StatusCode::OK);
    let health = health.json();
    assert_eq!(health["status"], json!("ok"), "{health}");
    let blocks = health["journal"]["blocks"]
        .as_u64()
        .expect("journal.blocks");
    assert!(blocks >= 1, "{health}");

    let server_ref = &server;
    let missing: Vec<String> = futures::stream::iter(acked.iter())
        .map(|(publisher, id, title)| async move {
            let resp = server_ref
                .get(&format!("/publisher/{publisher}/ad/{id}"))
                .await;
            if resp.status != StatusCode::OK {
                return Some(format!("{publisher}/{id}: {} {}", resp.status, resp.text));
            }
            let ad = resp.json();
            if ad["adTitle"] != json!(title) || resp.raw_member("price").as_deref() != Some("12.34")
            {
                return Some(format!("{publisher}/{id}: wrong content {}", resp.text));
            }
            None
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged ads are missing or wrong after kill -9 + restart, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );

    // The lists hold every acknowledged ad, and at most one more per client: the create
    // it had in flight at the kill, which may or may not have been committed.
    let acked_ids: std::collections::BTreeSet<&str> =
        acked.iter().map(|(_, id, _)| id.as_str()).collect();
    let mut listed = 0;
    let mut listed_acked = 0;
    for p in 0..4 {
        for ad in server.list(&format!("crash{p}")).await {
            listed += 1;
            listed_acked +=
                usize::from(ad["adId"].as_str().is_some_and(|id| acked_ids.contains(id)));
        }
    }
    assert_eq!(listed_acked, acked.len(), "every acknowledged ad is listed");
    assert!(
        listed <= acked.len() + CLIENTS,
        "listed {listed} ads, but only {} were acknowledged and {CLIENTS} were in flight",
        acked.len()
    );

    // The restarted server accepts writes.
    server
        .create_ad("crash0", &json!({"adTitle": "after restart"}))
        .await;

    // The digest after the restart, saved as an auditor would.
    let digest = server.get("/ledger/digest").await;
    digest.expect_status(StatusCode::OK);
    let digest = digest.json();
    let saved = format!(
        "{}:{}",
        digest["sequence"],
        digest["root"].as_str().expect("digest root")
    );

    // Graceful stop, then full verification of the stopped data directory: the chain
    // and the Merkle tree survived the kill, and still give the digest served after it.
    server.stop().await;
    assert!(
        has_verify_subcommand().await,
        "`adledger --help` must list the verify subcommand"
    );
    let dir = server.data_dir.to_string_lossy().into_owned();
    let mut args = vec!["verify", "--data-dir", &dir];
    args.extend(server.ledger_args.iter().map(String::as_str));
    args.extend(["--expect-digest", &saved, "--json"]);
    let out = run_cli(&args).await;
    println!(
        "adledger verify: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`adledger verify` must accept the journal after kill -9 + restart"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("verify --json prints one JSON object");
    assert_eq!(report["ok"], json!(true), "{report}");
    assert_eq!(report["blocks"], json!(blocks + 1), "{report}");
    assert_eq!(report["root"], digest["root"], "{report}");
}

per_durable_backend!(acknowledged_creates_survive_kill_9,);
