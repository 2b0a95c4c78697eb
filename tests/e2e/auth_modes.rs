//! The identity modes with the real binary: the offline default stays open (the seed's
//! curls need no token), `reads = "authenticated"`, `dev-token`'s checks, and the start-up
//! rule that a production configuration cannot run open by accident. About the server's
//! start-up and HTTP layer, not storage: local backend only.

use std::process::Stdio;
use std::time::Duration;

use crate::support::identity::{dev_token, hs256_server, send};
use crate::support::{Backend, Server, local_only, run_cli, seed_create_body};
use reqwest::{Method, StatusCode};

/// The default offline run needs no token: the seed's curls work, nothing is recorded.
async fn the_offline_default_is_open_and_records_no_actor() {
    let server = Server::start(Backend::Local).await;
    let created = server.create_ad("acme", &seed_create_body()).await;
    let ad_id = created["adId"].as_str().expect("adId");
    let versions = server
        .get(&format!("/publisher/acme/ad/{ad_id}?versions=true"))
        .await;
    versions.expect_status(StatusCode::OK);
    assert!(
        versions.json()[0]["metadata"].get("actor").is_none(),
        "{}",
        versions.text
    );
}

/// `reads = "authenticated"`: reads need any valid token; probes and the API description
/// stay public and reveal nothing.
async fn authenticated_reads() {
    let (server, _dir, file) =
        hs256_server(Backend::Local, &["--auth-reads", "authenticated"]).await;
    let reader = dev_token(&file, "reader", &[]).await;
    for path in [
        "/search?q=x",
        "/publisher/acme/ad",
        "/ledger/digest",
        "/?q=x",
    ] {
        let resp = send(&server, Method::GET, path, None, None).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{path}");
        let resp = send(&server, Method::GET, path, Some(&reader), None).await;
        assert_ne!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{path} with a token: {}",
            resp.text
        );
    }
    for path in ["/healthz", "/openapi.json"] {
        let resp = send(&server, Method::GET, path, None, None).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}");
        assert!(
            !resp.text.contains("reader"),
            "{path} reveals nothing about callers"
        );
    }
}

/// `dev-token` refuses a short secret and a missing one, naming the fix.
async fn dev_token_needs_a_usable_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let short = dir.path().join("short");
    std::fs::write(&short, "tiny").expect("write");
    let out = run_cli(&[
        "dev-token",
        "--sub",
        "a",
        "--jwt-secret-file",
        &short.to_string_lossy(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("32"),
        "names the minimum length"
    );
    let out = run_cli(&["dev-token", "--sub", "a"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ADLEDGER_JWT_SECRET"));
}

/// Runs `adledger serve ARGS` in a private network namespace (so nothing it might bind is
/// reachable from outside, even if the refusal under test were broken) and returns
/// whether it announced itself, and its stderr. A server that starts is stopped at once.
async fn serve_in_private_netns(args: &[&str]) -> (bool, String) {
    let home = tempfile::tempdir().expect("dir");
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.arg("--net")
        .arg(crate::support::binary())
        .arg("serve")
        .args(["--data-dir", &home.path().join("data").to_string_lossy()])
        .args(args)
        .current_dir(home.path())
        .env_remove("ADLEDGER_AUTH")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .expect("run `unshare --net` (needs root, as scripts/test.sh has)");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut line = Vec::new();
    let started = tokio::time::timeout(Duration::from_secs(30), async {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).await.unwrap_or(0) == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
    })
    .await
    .is_ok()
        && String::from_utf8_lossy(&line).contains("listening on");
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let mut err = Vec::new();
    {
        use tokio::io::AsyncReadExt;
        let _ = tokio::time::timeout(Duration::from_secs(5), stderr.read_to_end(&mut err)).await;
    }
    (started, String::from_utf8_lossy(&err).into_owned())
}

/// A production configuration cannot start open by accident: the AWS backend or a
/// non-loopback address without `--auth` is refused (naming the flag) before anything
/// is opened; an explicit `--auth none` starts, with a warning.
async fn exposed_configurations_must_choose_an_auth_mode() {
    let (started, stderr) = serve_in_private_netns(&["--listen", "0.0.0.0:0"]).await;
    assert!(!started, "started open on 0.0.0.0");
    assert!(stderr.contains("--auth"), "{stderr}");
    let (started, stderr) = serve_in_private_netns(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "aws",
        "--dynamodb-endpoint",
        "http://127.0.0.1:9",
    ])
    .await;
    assert!(!started, "started open on the AWS backend");
    assert!(
        stderr.contains("--auth") && stderr.contains("AWS"),
        "{stderr}"
    );

    let (started, stderr) =
        serve_in_private_netns(&["--listen", "0.0.0.0:0", "--auth", "none"]).await;
    assert!(started, "an explicit --auth none starts: {stderr}");
    assert!(stderr.contains("--auth none"), "and warns: {stderr}");
}

local_only!(
    the_offline_default_is_open_and_records_no_actor,
    authenticated_reads,
    dev_token_needs_a_usable_secret,
    exposed_configurations_must_choose_an_auth_mode,
);
