//! A full disk, as an operator meets it: the data directory is a small tmpfs, a filler
//! file takes the last free byte while the server runs, then the operator deletes it.
//!
//! While the disk is full every write is refused with 507 (or 503) and a problem
//! document, nothing acknowledged is lost and nothing refused shows up; once the filler
//! is deleted, writes succeed again without a restart, the read models catch up, and
//! `adledger verify` passes.
//!
//! Local backend only (the data directory is the local backend's). Needs root to mount
//! the tmpfs; without it the test fails, saying so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, json_body, local_only, require_root, run_cli};

/// Size of the tmpfs: room for the stores as created and a few hundred small ads.
const TMPFS_SIZE: &str = "24m";

/// A tmpfs mounted for the test, unmounted when dropped (also when the test panics).
struct Tmpfs {
    mount_point: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        require_root("the full-disk test mounts a tmpfs");
        let parent = tempfile::tempdir().expect("a directory for the mount point");
        let mount_point = parent.path().join("mnt");
        std::fs::create_dir(&mount_point).expect("create the mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount_point)
            .status()
            .expect("run mount(8)");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} ({status}): the full-disk test needs root and \
             permission to mount",
            mount_point.display()
        );
        Tmpfs {
            mount_point,
            _parent: parent,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.mount_point)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a server being killed): detach it now, freed when released.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
    }
}

/// Writes zeros to `path` until the file system refuses (no space left); returns the size.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk failed otherwise: {e}"),
        }
    }
    // Smaller pieces: the last pages too.
    let byte = [0u8; 512];
    while let Ok(n) = file.write(&byte) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

/// POSTs a create with an idempotency key; returns the status and the body.
async fn create(server: &Server, key: &str, title: &str, description: &str) -> (StatusCode, Value) {
    let rb = json_body(
        server.request(Method::POST, "/publisher/acme/ad"),
        &json!({"adTitle": title, "adDescription": description}),
    )
    .header("Idempotency-Key", key);
    let resp = server.send(rb).await;
    let body = serde_json::from_str(&resp.text).unwrap_or(Value::Null);
    (resp.status, body)
}

async fn writes_resume_once_space_is_freed() {
    let tmpfs = Tmpfs::mount(TMPFS_SIZE);
    let data_dir = tmpfs.mount_point.join("data");
    let mut server = Server::start_with(Some(data_dir.clone()), &[]).await;

    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for i in 0..20 {
        let title = format!("before {i}");
        let (status, body) = create(&server, &format!("before-{i}"), &title, "").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        acknowledged.push((body["adId"].as_str().expect("adId").to_string(), title));
    }

    let filler = tmpfs.mount_point.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0, "the filler took no space");

    // sled may still have room in pages it holds: write until the disk says no, keeping
    // whatever is acknowledged meanwhile.
    let description = "y".repeat(5_000);
    let mut refused: Vec<(String, Value)> = Vec::new();
    for i in 0..400 {
        let title = format!("while full {i}");
        let (status, body) = create(&server, &format!("full-{i}"), &title, &description).await;
        match status {
            StatusCode::CREATED => {
                acknowledged.push((body["adId"].as_str().expect("adId").to_string(), title))
            }
            StatusCode::INSUFFICIENT_STORAGE | StatusCode::SERVICE_UNAVAILABLE => {
                refused.push((title, body));
                if refused.len() == 5 {
                    break;
                }
            }
            other => panic!(
                "a write on a full disk answered {other}: {body}\n--- stderr ---\n{}",
                server.stderr_tail()
            ),
        }
    }
    assert_eq!(
        refused.len(),
        5,
        "the disk never filled up: {} writes acknowledged after the filler",
        acknowledged.len() - 20
    );
    for (_, problem) in &refused {
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            problem["status"] == 507 || problem["status"] == 503,
            "a problem document: {problem}"
        );
        assert!(!detail.is_empty(), "{problem}");
    }
    assert!(
        refused.iter().any(|(_, p)| p["status"] == 507
            && p["detail"].as_str().unwrap_or_default().contains("full")),
        "at least one refusal says the disk is full (507): {refused:?}"
    );

    std::fs::remove_file(&filler).expect("the operator deletes the filler");

    // Without a restart: a new write goes through within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let title = format!("after {attempt}");
        let (status, body) = create(&server, &format!("after-{attempt}"), &title, "").await;
        if status == StatusCode::CREATED {
            acknowledged.push((body["adId"].as_str().expect("adId").to_string(), title));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes still refused 30 s after space was freed: {status} {body}\n--- stderr \
             ---\n{}",
            server.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..5 {
        let title = format!("after more {i}");
        let (status, body) = create(&server, &format!("after-more-{i}"), &title, "").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        acknowledged.push((body["adId"].as_str().expect("adId").to_string(), title));
    }

    // Every acknowledged write is there; a refused one is wholly there or absent.
    let listed = server.list("acme").await;
    for (ad_id, title) in &acknowledged {
        let resp = server.get(&format!("/publisher/acme/ad/{ad_id}")).await;
        resp.expect_status(StatusCode::OK);
        assert_eq!(resp.json()["adTitle"], *title);
    }
    for ad in &listed {
        let title = ad["adTitle"].as_str().unwrap_or_default();
        let known = acknowledged.iter().any(|(_, t)| t == title);
        let refused_whole = refused.iter().any(|(t, _)| t == title)
            && ad["adDescription"].as_str().map(str::len) == Some(description.len());
        assert!(
            known || refused_whole,
            "a listed ad nobody acknowledged: {ad}"
        );
    }
    // The journal was closed and reopened from disk, not restarted.
    let metrics = server.get("/metrics").await.text;
    assert!(
        metrics.contains("adledger_storage_closed_total{store=\"journal\"}"),
        "the journal's reopen is counted:\n{metrics}"
    );
    // The search index caught up too.
    let found = server.get("/search?q=after&limit=100").await.json();
    assert!(
        found["total"].as_u64().unwrap_or(0) >= 6,
        "the search index did not catch up: {found}"
    );

    server.stop().await;
    let out = run_cli(&["verify", "--data-dir", &data_dir.to_string_lossy()]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.restart().await;
    assert_eq!(server.list("acme").await.len(), listed.len());
    server.stop().await;
    drop(server);
    drop(tmpfs);
}

local_only!(writes_resume_once_space_is_freed);
