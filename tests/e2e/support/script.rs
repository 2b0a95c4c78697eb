//! The fixture command script `fixtures/script.jsonl` over HTTP, and the golden journal
//! tip it must produce (`fixtures/golden.json`), used by `deterministic.rs` on each
//! backend: the same requests must give the same journal on both.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, fixtures_dir};

/// The seed every script run uses (`--deterministic 42`), as pinned in the golden file.
pub const SEED: u64 = 42;
/// Response headers that must be identical between runs (`x-request-id` need not be).
pub const COMPARED_HEADERS: [&str; 6] = [
    "etag",
    "location",
    "x-ledger-sequence",
    "link",
    "idempotency-replayed",
    "content-type",
];

/// One line of the script.
#[derive(Debug, Clone)]
pub struct Step {
    pub line: usize,
    pub method: Method,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
    pub expect: u16,
}

pub fn script_path() -> PathBuf {
    fixtures_dir().join("script.jsonl")
}

pub fn golden_path() -> PathBuf {
    fixtures_dir().join("golden.json")
}

pub fn load_script() -> Vec<Step> {
    let path = script_path();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut steps = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("script.jsonl line {line} is not JSON: {e}"));
        let method = v["method"]
            .as_str()
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or_else(|| panic!("script.jsonl line {line}: bad `method`"));
        let path = v["path"]
            .as_str()
            .unwrap_or_else(|| panic!("script.jsonl line {line}: no `path`"))
            .to_string();
        let headers = v["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("header value").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let expect = v["expect"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("script.jsonl line {line}: no `expect` status"));
        steps.push(Step {
            line,
            method,
            path,
            headers,
            body: v.get("body").cloned(),
            expect,
        });
    }
    assert!(
        steps.len() >= 15,
        "the script is the fixture: {} steps",
        steps.len()
    );
    steps
}

/// Replaces every `{{ad:N}}` with the N-th distinct adId the script created.
pub fn substitute(text: &str, created: &[String], line: usize) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{ad:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 5..];
        let end = after
            .find("}}")
            .unwrap_or_else(|| panic!("script line {line}: unclosed placeholder"));
        let n: usize = after[..end]
            .parse()
            .unwrap_or_else(|_| panic!("script line {line}: bad placeholder index"));
        let id = created.get(n).unwrap_or_else(|| {
            panic!(
                "script line {line}: {{{{ad:{n}}}}} used before {} ads were created",
                n + 1
            )
        });
        out.push_str(id);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// What one run of the script observed.
#[derive(Debug, PartialEq)]
pub struct Observed {
    pub line: usize,
    pub request: String,
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// How the journal tip was compared.
#[derive(Debug, PartialEq)]
pub enum Tip {
    /// `GET /ledger/digest`.
    Digest(Value),
    /// The route answered 404: every ad's full `?versions=true`, in creation order.
    Versions(Vec<(String, String)>),
}

pub struct Run {
    pub observed: Vec<Observed>,
    pub created: Vec<(String, String)>,
    pub tip: Tip,
    pub revisions: Vec<Value>,
}

/// The publisher of a `/publisher/{p}/ad...` path.
pub fn publisher_of(path: &str) -> String {
    path.trim_start_matches("/publisher/")
        .split('/')
        .next()
        .expect("publisher segment")
        .to_string()
}

/// Runs the script against `server` (started with `--deterministic 42`), then reads every
/// created ad's revisions and the digest.
pub async fn run_script(server: &Server, steps: &[Step]) -> Run {
    let mut created_ids: Vec<String> = Vec::new();
    let mut created: Vec<(String, String)> = Vec::new();
    let mut observed = Vec::new();
    let mut last_write: Option<(u64, String)> = None;
    for step in steps {
        let path = substitute(&step.path, &created_ids, step.line);
        let mut rb = server.request(step.method.clone(), &path);
        for (k, v) in &step.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some(body) = &step.body {
            let body = substitute(&body.to_string(), &created_ids, step.line);
            rb = rb
                .header("content-type", "application/json")
                .body(body.into_bytes());
        }
        let resp = server.send(rb).await;
        assert_eq!(
            resp.status.as_u16(),
            step.expect,
            "script line {}: {} {path} gave {}: {}",
            step.line,
            step.method,
            resp.status,
            resp.text
        );
        if step.method == Method::POST && resp.status == StatusCode::CREATED {
            let id = resp.json()["adId"].as_str().expect("adId").to_string();
            if !created_ids.contains(&id) {
                created_ids.push(id.clone());
                created.push((publisher_of(&path), id));
            }
        }
        // The logical clock: writes are stamped on 2020-01-01, and a write that appended
        // a block (a new, higher X-Ledger-Sequence) is stamped later than the previous one.
        if matches!(resp.status, StatusCode::CREATED | StatusCode::OK) && step.method != Method::GET
        {
            let t = resp.json()["updatedAt"]
                .as_str()
                .expect("updatedAt")
                .to_string();
            assert!(
                t.starts_with("2020-01-01T00:00:0"),
                "script line {}: --deterministic time starts at 2020-01-01T00:00:00Z, got {t}",
                step.line
            );
            let seq = resp
                .header("x-ledger-sequence")
                .and_then(|s| s.trim().parse::<u64>().ok());
            if let Some(seq) = seq.filter(|seq| last_write.as_ref().is_none_or(|(s, _)| seq > s)) {
                if let Some((_, prev)) = &last_write {
                    assert!(
                        t.as_str() > prev.as_str(),
                        "script line {}: a new block must get a later time: {prev} then {t}",
                        step.line
                    );
                }
                last_write = Some((seq, t));
            }
        }
        let mut headers = BTreeMap::new();
        for name in COMPARED_HEADERS {
            if let Some(v) = resp.header(name) {
                headers.insert(name.to_string(), v);
            }
        }
        observed.push(Observed {
            line: step.line,
            request: format!("{} {path}", step.method),
            status: resp.status.as_u16(),
            headers,
            body: resp.text.clone(),
        });
    }

    // Every revision of every ad (hashes included), in creation order.
    let mut all_versions = Vec::new();
    let mut revisions = Vec::new();
    for (publisher, id) in &created {
        let resp = server
            .get(&format!("/publisher/{publisher}/ad/{id}?versions=true"))
            .await;
        resp.expect_status(StatusCode::OK);
        for rev in resp.json().as_array().expect("revisions") {
            revisions.push(json!({
                "adId": id,
                "version": rev["version"],
                "event": rev["event"],
                "hash": rev["hash"],
            }));
        }
        all_versions.push((id.clone(), resp.text));
    }

    let digest = server.get("/ledger/digest").await;
    let tip = if digest.status == StatusCode::NOT_FOUND {
        Tip::Versions(all_versions)
    } else {
        digest.expect_status(StatusCode::OK);
        let d = digest.json();
        for key in ["root", "tipHash"] {
            assert!(
                d[key]
                    .as_str()
                    .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())),
                "digest `{key}` is 64 hex digits: {d}"
            );
        }
        assert!(d["sequence"].is_u64(), "digest `sequence`: {d}");
        Tip::Digest(json!({"sequence": d["sequence"], "root": d["root"], "tipHash": d["tipHash"]}))
    };
    Run {
        observed,
        created,
        tip,
        revisions,
    }
}

/// Compares with `fixtures/golden.json`, or writes it (and fails) when it is missing.
pub fn check_golden(run: &Run) {
    let digest = match &run.tip {
        Tip::Digest(d) => d.clone(),
        Tip::Versions(_) => Value::Null,
    };
    let observed = json!({
        "about": "Journal tip after replaying fixtures/script.jsonl against `adledger serve \
                  --deterministic 42`. Pinned by tests/e2e/deterministic.rs; see \
                  fixtures/README.md before changing it.",
        "seed": SEED,
        "digest": digest,
        "revisions": run.revisions,
    });
    let path = golden_path();
    if !path.exists() {
        let text = serde_json::to_string_pretty(&observed).expect("serialize golden") + "\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        panic!(
            "{} did not exist, so this run wrote it. Review it and commit it \
             (git add fixtures/golden.json); the next run compares against it. \
             The test fails now so a golden file is never created or re-blessed silently.",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let golden: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let explain = "The journal produced by the same script, seed and logical clock no longer \
                   matches the committed golden file. Either the canonical encoding / hashing \
                   of revisions and blocks changed (a format change: bump the encoding version \
                   and keep old journals verifying), or the id generator, the clock, or \
                   fixtures/script.jsonl changed. If the change is intended, regenerate the \
                   golden file deliberately as fixtures/README.md describes.";
    match (&golden["digest"], &observed["digest"]) {
        (Value::Null, Value::Null) => {
            println!("golden digest not compared: GET /ledger/digest is not served (404)");
        }
        (Value::Null, now) => panic!(
            "{} has no digest but the server now serves GET /ledger/digest ({now}). \
             Regenerate the golden file deliberately (fixtures/README.md) so the digest is pinned.",
            path.display()
        ),
        (want, Value::Null) => panic!(
            "{} pins a digest ({want}) but GET /ledger/digest answered 404: the route disappeared",
            path.display()
        ),
        (want, now) => assert_eq!(
            want,
            now,
            "journal digest differs from {}.\n{explain}",
            path.display()
        ),
    }
    assert_eq!(
        golden["revisions"],
        observed["revisions"],
        "revision hashes differ from {}.\n{explain}",
        path.display()
    );
}
