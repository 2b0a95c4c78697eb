//! The maintenance commands end to end, like an operator: run the real server, write
//! through HTTP, stop it, run `adledger rebuild | replay | snapshot | export | import`
//! on the stopped data directory, start it again and read through HTTP. Also the admin
//! routes' access rules and jobs on a running server.
//!
//! Local backend only: the tests open the stopped data directory's sled journal, state
//! store and tantivy index directly (to write a long journal, to compare read models,
//! to damage a snapshot) and kill a rebuild mid-way on those files.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Backend, Server, local_only, run_cli};
use adledger_engine::AdKey;
use adledger_engine::diff::diff_states;
use adledger_engine::ports::{Journal, SearchIndex, SearchQuery, StateStore};
use adledger_engine::testkit::{ChainBuilder, ad_id, draft};
use adledger_local::{LocalBackend, SledStateStore, TantivySearchIndex};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const PUBLISHERS: [&str; 2] = ["acme", "globex"];

fn body(title: &str) -> Value {
    json!({
        "adTitle": title,
        "adDescription": format!("{title}, described"),
        "price": "12.50",
        "currency": "EUR",
        "category": "tools",
        "tags": ["maintenance"]
    })
}

/// Ten ads, some updated, one deleted; returns `(publisher, adId)` pairs.
async fn populate(server: &Server) -> Vec<(String, String)> {
    let mut ads = Vec::new();
    for i in 0..10 {
        let publisher = PUBLISHERS[i % 2];
        let ad = server
            .create_ad(publisher, &body(&format!("Hammer {i}")))
            .await;
        let id = ad["adId"].as_str().expect("adId").to_string();
        ads.push((publisher.to_string(), id));
    }
    for (publisher, id) in ads.iter().step_by(3) {
        server
            .patch_json(
                &format!("/publisher/{publisher}/ad/{id}"),
                &json!({"adTitle": "Hammer, renamed"}),
            )
            .await
            .expect_status(StatusCode::OK);
    }
    let (publisher, id) = &ads[4];
    server
        .delete(&format!("/publisher/{publisher}/ad/{id}"))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    ads
}

/// What a user sees: every publisher's list and a few searches.
async fn view(server: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    for publisher in PUBLISHERS {
        out.push(Value::Array(server.list(publisher).await));
    }
    for q in ["hammer", "renamed", "tools"] {
        let resp = server.get(&format!("/search?q={q}&limit=50")).await;
        resp.expect_status(StatusCode::OK);
        let mut found = resp.json();
        if let Some(items) = found.get_mut("items").and_then(Value::as_array_mut) {
            items.sort_by_key(|a| a["adId"].as_str().unwrap_or_default().to_string());
        }
        out.push(found);
    }
    out
}

pub(crate) fn dir_arg(dir: &Path) -> String {
    dir.display().to_string()
}

pub(crate) async fn cli_ok(args: &[&str]) -> String {
    let out = run_cli(args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "`adledger {}` failed: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        args.join(" "),
        out.status
    );
    stdout
}

pub(crate) async fn cli_fails(args: &[&str]) -> String {
    let out = run_cli(args).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "`adledger {}` should fail with exit code 1; stdout: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn lost_read_models_come_back_with_one_command() {
    let mut server = Server::start_deterministic(Backend::Local, 7).await;
    populate(&server).await;
    let before = view(&server).await;
    server.stop().await;
    let data = server.data_dir.clone();
    let d = dir_arg(&data);

    // Total loss of both read models.
    std::fs::remove_dir_all(data.join("state")).expect("remove state");
    std::fs::remove_dir_all(data.join("search")).expect("remove search");
    let out = cli_ok(&["rebuild", "--data-dir", &d]).await;
    assert!(out.contains("rebuilt") && out.contains("verified"), "{out}");
    assert!(!data.join("rebuild.in-progress").exists());

    // A shadow rebuild now finds no difference, and changes nothing without --swap.
    let out = cli_ok(&["rebuild", "--shadow", "--data-dir", &d]).await;
    assert!(out.contains("no difference"), "{out}");
    let out = cli_ok(&["rebuild", "--shadow", "--swap", "--json", "--data-dir", &d]).await;
    let report: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(report["swapped"], true, "{report}");

    server.restart().await;
    assert_eq!(view(&server).await, before);
    server.stop().await;
}

async fn an_interrupted_rebuild_resumes_instead_of_starting_over() {
    let mut server = Server::start_deterministic(Backend::Local, 8).await;
    populate(&server).await;
    let before = view(&server).await;
    server.stop().await;
    let d = dir_arg(&server.data_dir);
    // A rebuild that was killed leaves its marker behind (the read models hold whatever
    // batches were checkpointed): the next run resumes and says so.
    std::fs::write(server.data_dir.join("rebuild.in-progress"), b"").expect("marker");
    let out = cli_ok(&["rebuild", "--data-dir", &d, "--batch", "3"]).await;
    assert!(out.contains("resumed"), "{out}");
    server.restart().await;
    assert_eq!(view(&server).await, before);
    server.stop().await;
}

async fn replay_puts_one_ad_back_as_it_was_at_a_time() {
    let mut server = Server::start_deterministic(Backend::Local, 9).await;
    let ad = server.create_ad("acme", &body("Saw")).await;
    let id = ad["adId"].as_str().expect("adId").to_string();
    let path = format!("/publisher/acme/ad/{id}");
    for title in ["Saw, sharp", "Saw, sharper"] {
        server
            .patch_json(&path, &json!({"adTitle": title}))
            .await
            .expect_status(StatusCode::OK);
    }
    let versions = server.get(&format!("{path}?versions=true")).await.json();
    let times: Vec<String> = versions
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            v["metadata"]["txTime"]
                .as_str()
                .or(v["txTime"].as_str())
                .expect("txTime")
                .to_string()
        })
        .collect();
    server.stop().await;
    let d = dir_arg(&server.data_dir);

    let out = cli_ok(&["replay", "--data-dir", &d, "--ad", &id, "--to", &times[1]]).await;
    assert!(out.contains("version 1"), "{out}");
    server.restart().await;
    let resp = server.get(&path).await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json()["adTitle"], "Saw, sharp");
    server.stop().await;

    let out = cli_ok(&["replay", "--data-dir", &d, "--ad", &id, "--from", &times[0]]).await;
    assert!(out.contains("version 2"), "{out}");
    let err = cli_fails(&[
        "replay",
        "--data-dir",
        &d,
        "--ad",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
    ])
    .await;
    assert!(err.contains("no ad"), "{err}");
    server.restart().await;
    assert_eq!(server.get(&path).await.json()["adTitle"], "Saw, sharper");
    server.stop().await;
}

async fn snapshots_are_created_listed_restored_refused_when_tampered_and_deleted() {
    let mut server = Server::start_deterministic(Backend::Local, 10).await;
    populate(&server).await;
    server.stop().await;
    let d = dir_arg(&server.data_dir);
    let out = cli_ok(&["snapshot", "create", "--json", "--data-dir", &d]).await;
    let created: Value = serde_json::from_str(out.trim()).expect("json");
    let id = created["snapshot"]["id"].as_str().expect("id").to_string();

    server.restart().await;
    server
        .create_ad("acme", &body("Chisel, after the snapshot"))
        .await;
    let before = view(&server).await;
    server.stop().await;

    let list = cli_ok(&["snapshot", "list", "--data-dir", &d]).await;
    assert!(list.contains(&id), "{list}");
    let out = cli_ok(&["snapshot", "restore", &id, "--data-dir", &d]).await;
    assert!(
        out.contains("restored") && out.contains("digest checked"),
        "{out}"
    );
    server.restart().await;
    assert_eq!(
        view(&server).await,
        before,
        "restore + tail equals the live state"
    );
    server.stop().await;

    // A tampered copy is refused and leaves the read models alone.
    let original = server
        .data_dir
        .join("snapshots")
        .join(format!("{id}.jsonl"));
    let tampered = server.data_dir.join("snapshots").join("tampered.jsonl");
    let text = std::fs::read_to_string(&original).expect("read");
    std::fs::write(&tampered, text.replacen("Hammer 1", "Hammer 9", 1)).expect("write");
    let err = cli_fails(&["snapshot", "restore", "tampered", "--data-dir", &d]).await;
    assert!(err.contains("altered"), "{err}");

    cli_ok(&["snapshot", "delete", &id, "--data-dir", &d]).await;
    let list = cli_ok(&["snapshot", "list", "--data-dir", &d]).await;
    assert!(!list.contains(&id), "{list}");
    server.restart().await;
    assert_eq!(view(&server).await, before);
    server.stop().await;
}

async fn an_export_moves_the_ledger_with_its_digest_and_damage_is_refused() {
    let mut server = Server::start_deterministic(Backend::Local, 11).await;
    populate(&server).await;
    let digest = server.get("/ledger/digest").await;
    digest.expect_status(StatusCode::OK);
    let digest = digest.json();
    let before = view(&server).await;
    server.stop().await;
    let d = dir_arg(&server.data_dir);
    let work = tempfile::tempdir().expect("tempdir");

    for format in ["ion", "jsonl"] {
        let file = work.path().join(format!("ledger.{format}"));
        let f = dir_arg(&file);
        let out = cli_ok(&["export", "--data-dir", &d, "--out", &f, "--format", format]).await;
        let root = digest["root"].as_str().expect("root");
        assert!(out.contains(root), "{out}");

        let target = work.path().join(format!("moved-{format}"));
        let t = dir_arg(&target);
        let out = cli_ok(&["import", &f, "--data-dir", &t]).await;
        assert!(out.contains(root), "{out}");
        let mut moved = Server::start_with(Some(target.clone()), &[]).await;
        assert_eq!(moved.get("/ledger/digest").await.json(), digest);
        assert_eq!(view(&moved).await, before);
        moved.stop().await;

        // Importing into a journal that is not empty is refused.
        let err = cli_fails(&["import", &f, "--data-dir", &t]).await;
        assert!(err.contains("empty journal"), "{err}");

        // A file cut short is refused, naming the sequence, and writes nothing.
        let bytes = std::fs::read(&file).expect("read");
        let cut = work.path().join(format!("cut.{format}"));
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write");
        let empty = work.path().join(format!("empty-{format}"));
        let err = cli_fails(&["import", &dir_arg(&cut), "--data-dir", &dir_arg(&empty)]).await;
        assert!(err.contains("at sequence"), "{err}");
    }
    // An existing output file is never overwritten.
    let f = dir_arg(&work.path().join("ledger.ion"));
    let err = cli_fails(&["export", "--data-dir", &d, "--out", &f]).await;
    assert!(err.contains("exists"), "{err}");
}

async fn admin_routes_need_the_token_and_run_jobs_while_serving() {
    // Disabled without a token.
    let mut plain = Server::start(Backend::Local).await;
    plain
        .post_json("/admin/snapshots", &json!({}))
        .await
        .expect_problem(StatusCode::NOT_FOUND);
    plain.stop().await;

    let token = "s3cret-admin-token".to_string();
    let mut server = Server::start_with(None, &["--admin-token".to_string(), token.clone()]).await;
    let ads = populate(&server).await;
    let post = |path: &str, auth: Option<&str>, body: Value| {
        let mut rb = crate::support::json_body(server.request(Method::POST, path), &body);
        if let Some(auth) = auth {
            rb = rb.header("authorization", auth);
        }
        server.send(rb)
    };
    let bearer = format!("Bearer {token}");

    let missing = post("/admin/snapshots", None, json!({})).await;
    missing.expect_problem(StatusCode::UNAUTHORIZED);
    assert!(missing.header("www-authenticate").is_some());
    post("/admin/snapshots", Some("Bearer wrong"), json!({}))
        .await
        .expect_problem(StatusCode::FORBIDDEN);

    let created = post("/admin/snapshots", Some(&bearer), json!({})).await;
    created.expect_status(StatusCode::CREATED);
    let id = created.json()["id"].as_str().expect("id").to_string();
    let list = server
        .send(
            server
                .request(Method::GET, "/admin/snapshots")
                .header("authorization", &bearer),
        )
        .await;
    list.expect_status(StatusCode::OK);
    assert!(list.text.contains(&id), "{}", list.text);

    let (publisher, ad_id) = &ads[0];
    let replayed = post(
        "/admin/replay",
        Some(&bearer),
        json!({"adId": ad_id, "publisherId": publisher}),
    )
    .await;
    replayed.expect_status(StatusCode::OK);
    assert_eq!(replayed.json()["replayed"], 1);
    post(
        "/admin/replay",
        Some(&bearer),
        json!({"adId": ad_id, "to": "yesterday"}),
    )
    .await
    .expect_invalid_field("to");
    post("/admin/replay", Some(&bearer), json!({"adld": ad_id}))
        .await
        .expect_invalid_field("adld");

    let rebuilt = post("/admin/rebuild", Some(&bearer), json!({})).await;
    rebuilt.expect_status(StatusCode::OK);
    let report = rebuilt.json();
    assert_eq!(report["diff"]["missingCount"], 0, "{report}");
    assert_eq!(report["diff"]["extraCount"], 0, "{report}");
    assert_eq!(report["diff"]["differentCount"], 0, "{report}");
    post("/admin/rebuild", Some(&bearer), json!({"shadow": false}))
        .await
        .expect_problem(StatusCode::CONFLICT);
    // Serving went on throughout.
    server
        .create_ad("acme", &body("After the admin jobs"))
        .await;
    server.stop().await;
}

/// Writes a journal of `revisions` revisions (one per block; a quarter of them creates,
/// the rest updates) straight into `dir`, as the benchmark does: enough blocks for a
/// rebuild to take seconds, without minutes of HTTP. The read models stay empty.
pub(crate) async fn write_journal(dir: &Path, revisions: u64) {
    let backend = LocalBackend::open(dir).expect("open a fresh data directory");
    let journal = backend.journal.clone();
    let ads = (revisions / 4).max(1);
    let mut chain = ChainBuilder::new();
    let mut written = 0u64;
    while written < revisions {
        let n = (revisions - written).min(2_000);
        let changes = (written..written + n)
            .map(|i| {
                let ad = i % ads;
                let key = AdKey::new(format!("pub{}", ad % 50), ad_id(ad as u32));
                let title = format!("Bicycle {ad} for sale, revision {}", i / ads);
                let tag = if ad.is_multiple_of(3) { "red" } else { "blue" };
                let ad = draft(&title, Some("120.50"), "bikes", &[tag, "sport"])
                    .into_ad(&key.publisher_id, &key.ad_id);
                (key, Some(ad))
            })
            .collect();
        let (batch, _) = chain.batch(changes).expect("seal a batch");
        journal.append(batch).await.expect("append a batch");
        written += n;
    }
}

/// Copies a directory tree (a stopped sled journal is plain files).
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// The number after `prefix` in `line` (`"… checkpoint 3000 of 24000 …"`).
fn number_after(line: &str, prefix: &str) -> Option<u64> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

async fn a_rebuild_killed_with_sigkill_resumes_from_its_checkpoint() {
    const REVISIONS: u64 = 24_000;
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    write_journal(&data, REVISIONS).await;
    // A copy of the journal, for a clean rebuild to compare with.
    let clean = home.path().join("clean");
    copy_dir(&data.join("journal"), &clean.join("journal"));
    let d = dir_arg(&data);

    // Small batches: many checkpoints, so the kill lands between two of them.
    let mut child = tokio::process::Command::new(crate::support::binary())
        .args(["rebuild", "--data-dir", &d, "--batch", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn adledger rebuild");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    let killed_at = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            seen.push(line.clone());
            if let Some(checkpoint) = number_after(&line, "rebuild: checkpoint ")
                && checkpoint >= 3_000
            {
                return Some(checkpoint);
            }
        }
        None
    })
    .await
    .expect("no checkpoint of 3000 blocks within 60 s");
    let Some(killed_at) = killed_at else {
        panic!("the rebuild ended before its third checkpoint: {seen:#?}");
    };
    child.start_kill().expect("SIGKILL the rebuild");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the rebuild did not die within 30 s of SIGKILL")
        .expect("wait");
    assert!(!status.success(), "killed, so not a success: {status:?}");
    assert!(
        killed_at < REVISIONS,
        "killed mid-way, not after the end: {killed_at}"
    );
    assert!(
        data.join("rebuild.in-progress").exists(),
        "the marker tells the next run to resume"
    );

    // The rerun resumes from at least the checkpoint seen before the kill.
    let out = run_cli(&["rebuild", "--data-dir", &d]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rerun failed: {stdout}\n{stderr}");
    let resumed_from = stderr
        .lines()
        .find_map(|l| number_after(l, "rebuild: resuming from sequence "))
        .unwrap_or_else(|| panic!("the rerun did not say it resumed: {stderr}"));
    assert!(
        resumed_from >= killed_at && resumed_from < REVISIONS,
        "resumed from {resumed_from}, the kill came after checkpoint {killed_at}"
    );
    assert!(
        stdout.contains("resumed an interrupted rebuild"),
        "{stdout}"
    );
    assert_eq!(
        number_after(&stdout, "from sequence "),
        Some(resumed_from),
        "the report counts from the resume point: {stdout}"
    );
    assert!(!data.join("rebuild.in-progress").exists());

    // A clean rebuild of the same journal gives the same read models.
    cli_ok(&["rebuild", "--data-dir", &dir_arg(&clean)]).await;
    let resumed = (
        SledStateStore::open(&data.join("state")).expect("state"),
        TantivySearchIndex::open(&data.join("search")).expect("search"),
    );
    let fresh = (
        SledStateStore::open(&clean.join("state")).expect("state"),
        TantivySearchIndex::open(&clean.join("search")).expect("search"),
    );
    let diff = diff_states(&resumed.0, &fresh.0, 5).await.expect("diff");
    assert!(diff.is_empty(), "the resumed rebuild differs: {diff:?}");
    assert_eq!(diff.equal, REVISIONS / 4, "every ad is there");
    for pair in [&resumed, &fresh] {
        assert_eq!(pair.0.checkpoint().await.expect("checkpoint"), REVISIONS);
        assert_eq!(pair.1.checkpoint().await.expect("checkpoint"), REVISIONS);
    }
    // Every hit of each query fits in one page, so whole result sets are compared
    // (the order of equal scores depends on segment layout, which may differ).
    for (text, publisher, tag) in [
        ("bicycle", "pub7", None),
        ("sale", "pub3", Some("red")),
        ("revision", "pub12", Some("blue")),
    ] {
        let query = SearchQuery {
            text: text.into(),
            publisher_id: Some(publisher.into()),
            tag: tag.map(str::to_string),
            limit: 1000,
            ..SearchQuery::default()
        };
        let a = resumed.1.search(&query).await.expect("search");
        let b = fresh.1.search(&query).await.expect("search");
        assert_eq!(a.total, b.total, "{text} {tag:?}");
        assert!(a.total > 0, "{text} {tag:?} finds ads");
        assert_eq!(a.total, a.ads.len() as u64, "one page holds every hit");
        let ids = |p: &adledger_engine::SearchPage| {
            p.ads
                .iter()
                .map(|ad| ad.ad_id.clone())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(ids(&a), ids(&b), "{text} {tag:?}");
    }
}

async fn the_server_takes_snapshots_on_schedule_and_keeps_the_last_n() {
    const KEEP: usize = 2;
    let token = "schedule-admin-token";
    let args: Vec<String> = [
        "--admin-token",
        token,
        "--snapshot-schedule",
        "every 1s",
        "--snapshot-keep",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut server = Server::start_with(None, &args).await;
    let bearer = format!("Bearer {token}");

    // Write between ticks (a tick with nothing new is skipped), and watch the list.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut i = 0;
    while seen.len() < KEEP + 3 && Instant::now() < deadline {
        server
            .create_ad(PUBLISHERS[i % 2], &body(&format!("Drill {i}")))
            .await;
        i += 1;
        let rb = server
            .request(Method::GET, "/admin/snapshots")
            .header("authorization", bearer.clone());
        let resp = server.send(rb).await;
        resp.expect_status(StatusCode::OK);
        let ids: Vec<String> = resp.json()["snapshots"]
            .as_array()
            .expect("snapshots array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect();
        // Between taking a snapshot and pruning, one more than `keep` may be listed.
        assert!(ids.len() <= KEEP + 1, "{ids:?}");
        seen.extend(ids);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        seen.len() >= KEEP + 3,
        "the schedule took only {} snapshots in 45 s: {seen:?}\n{}",
        seen.len(),
        server.stderr_tail()
    );
    server.stop().await;
    let logs = server.stderr_tail();
    assert!(logs.contains("scheduled snapshot taken"), "{logs}");
    assert!(logs.contains("old snapshot deleted"), "{logs}");
    assert!(logs.contains("snapshot schedule stopped"), "{logs}");

    // After a graceful stop exactly `keep` remain, and they are the newest.
    let mut left: Vec<String> = std::fs::read_dir(server.data_dir.join("snapshots"))
        .expect("snapshot dir")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            name.strip_suffix(".jsonl").map(str::to_string)
        })
        .collect();
    left.sort();
    seen.extend(left.iter().cloned());
    let newest: Vec<String> = seen.iter().rev().take(KEEP).rev().cloned().collect();
    assert_eq!(left, newest, "the newest {KEEP} are kept");
    // They are real snapshots the CLI can read.
    let out = cli_ok(&[
        "snapshot",
        "list",
        "--json",
        "--data-dir",
        &dir_arg(&server.data_dir),
    ])
    .await;
    let listed: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        listed["snapshots"].as_array().map(Vec::len),
        Some(KEEP),
        "{listed}"
    );
}

local_only!(
    lost_read_models_come_back_with_one_command,
    an_interrupted_rebuild_resumes_instead_of_starting_over,
    replay_puts_one_ad_back_as_it_was_at_a_time,
    snapshots_are_created_listed_restored_refused_when_tampered_and_deleted,
    an_export_moves_the_ledger_with_its_digest_and_damage_is_refused,
    admin_routes_need_the_token_and_run_jobs_while_serving,
    a_rebuild_killed_with_sigkill_resumes_from_its_checkpoint,
    the_server_takes_snapshots_on_schedule_and_keeps_the_last_n,
);
