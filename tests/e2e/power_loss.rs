//! Power loss, simulated: the server runs with its data directory on `adledger-powerfs`
//! (a FUSE file system that forgets, at a "power cut", everything not fsynced — file
//! bytes and directory entries alike). Many cuts at random moments under concurrent
//! creates, updates and deletes (some with an `Idempotency-Key`); after each, the test
//! "reboots" on what survived, runs `adledger verify`, starts the server and checks that
//! every acknowledged write is there at its acknowledged version, that an unacknowledged
//! write is either wholly there or absent, that the lists and the search index (read
//! models) equal the journal (`?versions=true`), and that retried keyed creates are
//! answered from the journal. The server takes a snapshot every second, so cuts also land
//! in snapshots and tantivy commits; every third reboot restores the newest snapshot that
//! survived (`adledger snapshot restore` checks it against the journal) before starting.
//!
//! The second test proves the first can fail: with the journal's fsync switched off
//! (`ADLEDGER_UNSAFE_SKIP_FDATASYNC=1`), lost acknowledged writes must be detected.
//!
//! Local backend only (the DynamoDB backend's durability is DynamoDB's). Needs root and
//! `/dev/fuse`; without them the tests fail, saying so. `ADLEDGER_POWER_CUTS` (default 12)
//! sets the number of cuts, `ADLEDGER_POWER_SEED` the seed (printed either way).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Resp, Rng, binary, client, fetch, json_body, run_cli};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const CLIENTS: usize = 6;
const PUBLISHERS: usize = 3;
/// Ops per client per round at most (a bound, not a target: the cut comes first).
const MAX_OPS: usize = 400;

#[derive(Debug, Clone, PartialEq)]
enum AdState {
    Present { version: u64, title: String },
    Deleted,
}

#[derive(Debug, Clone)]
enum Pending {
    Update(String),
    Delete,
}

#[derive(Debug, Clone)]
struct Ad {
    publisher: String,
    state: AdState,
    /// The write in flight at the cut (unacknowledged: it may or may not have committed).
    pending: Option<Pending>,
    /// The client that owns it (only its owner writes it, so at most one write is in flight).
    owner: usize,
}

#[derive(Debug, Clone)]
struct PendingCreate {
    publisher: String,
    title: String,
    key: Option<String>,
    owner: usize,
}

#[derive(Default)]
struct Model {
    ads: BTreeMap<String, Ad>,
    pending_creates: Vec<PendingCreate>,
    /// Acknowledged keyed creates: (publisher, key, title, adId).
    keyed: Vec<(String, String, String, String)>,
    acked_writes: usize,
}

#[derive(Debug, Default)]
struct Totals {
    cuts: usize,
    acked_writes: usize,
    ads_checked: usize,
    keyed_retries: usize,
    unacked_found_whole: usize,
    snapshots_restored: usize,
    unacked_absent: usize,
    fs_files_reverted: usize,
    fs_entries_reverted: usize,
    fs_unsynced_writes: usize,
}

fn create_body(title: &str) -> Value {
    json!({"adTitle": title, "price": "1.50", "tags": ["power"]})
}

/// A running server on the mount, with its stderr in a file.
struct Proc {
    child: Child,
    base: String,
    log: PathBuf,
}

async fn start_server(data_dir: &Path, log: &Path, unsafe_skip: bool) -> Result<Proc, String> {
    let mut cmd = Command::new(binary());
    // Snapshots every second, so some cuts land in the middle of one.
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--snapshot-schedule",
        "every 1s",
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(log).map_err(|e| e.to_string())?)
    .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ADLEDGER_") {
            cmd.env_remove(&key);
        }
    }
    if unsafe_skip {
        cmd.env("ADLEDGER_UNSAFE_SKIP_FDATASYNC", "1");
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn adledger: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let base = match line {
        Ok(Ok(Some(line))) => match line.strip_prefix("adledger listening on ") {
            Some(url) => url.trim().to_string(),
            None => return Err(format!("unexpected stdout {line:?}\n{}", log_text())),
        },
        _ => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!(
                "the server did not start on what survived the cut:\n{}",
                log_text()
            ));
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Proc {
        child,
        base,
        log: log.to_path_buf(),
    })
}

impl Proc {
    async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// A client's loop ends at the first failed request once the power is cut (the server then
/// answers 503, or not at all); before the cut every request must succeed.
fn end_of_round(cut: &AtomicBool, what: &str, resp: &Resp) {
    assert!(
        cut.load(Ordering::SeqCst),
        "{what} answered {} before the cut: {}",
        resp.status,
        resp.text
    );
}

/// One client's writes until the cut, on its own ads.
async fn client_loop(
    c: usize,
    base: String,
    model: Arc<Mutex<Model>>,
    cut: Arc<AtomicBool>,
    seed: u64,
    round: usize,
) {
    let http = client();
    let mut rng = Rng::new(seed ^ ((c as u64 + 1) << 32));
    for i in 0..MAX_OPS {
        let mine: Vec<(String, String, u64)> = {
            let m = model.lock().expect("model");
            m.ads
                .iter()
                .filter_map(|(id, ad)| match (&ad.state, ad.owner == c) {
                    (AdState::Present { version, .. }, true) => {
                        Some((id.clone(), ad.publisher.clone(), *version))
                    }
                    _ => None,
                })
                .collect()
        };
        let roll = rng.below(100);
        if mine.is_empty() || roll < 45 {
            let publisher = format!("pl{}", rng.below(PUBLISHERS));
            let title = format!("r{round} c{c} create {i}");
            let key = (rng.below(2) == 0).then(|| format!("k-{round}-{c}-{i}-{seed}"));
            model
                .lock()
                .expect("model")
                .pending_creates
                .push(PendingCreate {
                    publisher: publisher.clone(),
                    title: title.clone(),
                    key: key.clone(),
                    owner: c,
                });
            let mut rb = json_body(
                http.request(Method::POST, format!("{base}/publisher/{publisher}/ad")),
                &create_body(&title),
            );
            if let Some(key) = &key {
                rb = rb.header("Idempotency-Key", key);
            }
            match fetch(rb).await {
                Ok(resp) if resp.status == StatusCode::CREATED => {
                    let ad = resp.json();
                    let id = ad["adId"].as_str().expect("adId").to_string();
                    let mut m = model.lock().expect("model");
                    m.pending_creates.retain(|p| p.title != title);
                    m.acked_writes += 1;
                    if let Some(key) = key {
                        m.keyed
                            .push((publisher.clone(), key, title.clone(), id.clone()));
                    }
                    m.ads.insert(
                        id,
                        Ad {
                            publisher,
                            state: AdState::Present { version: 0, title },
                            pending: None,
                            owner: c,
                        },
                    );
                }
                Ok(resp) => {
                    end_of_round(&cut, "create", &resp);
                    return;
                }
                Err(_) => return,
            }
        } else {
            let (id, publisher, version) = mine[rng.below(mine.len())].clone();
            let url = format!("{base}/publisher/{publisher}/ad/{id}");
            if roll < 80 {
                let title = format!("r{round} c{c} update {i}");
                model
                    .lock()
                    .expect("model")
                    .ads
                    .get_mut(&id)
                    .expect("ad")
                    .pending = Some(Pending::Update(title.clone()));
                let rb = json_body(
                    http.request(Method::PATCH, &url),
                    &json!({"adTitle": title}),
                )
                .header("If-Match", format!("\"{version}\""));
                match fetch(rb).await {
                    Ok(resp) if resp.status == StatusCode::OK => {
                        let v = resp.json()["version"].as_u64().expect("version");
                        assert_eq!(v, version + 1, "update of {id}: {}", resp.text);
                        let mut m = model.lock().expect("model");
                        m.acked_writes += 1;
                        let ad = m.ads.get_mut(&id).expect("ad");
                        ad.state = AdState::Present { version: v, title };
                        ad.pending = None;
                    }
                    Ok(resp) => {
                        end_of_round(&cut, "update", &resp);
                        return;
                    }
                    Err(_) => return,
                }
            } else {
                model
                    .lock()
                    .expect("model")
                    .ads
                    .get_mut(&id)
                    .expect("ad")
                    .pending = Some(Pending::Delete);
                match fetch(http.request(Method::DELETE, &url)).await {
                    Ok(resp) if resp.status == StatusCode::NO_CONTENT => {
                        let mut m = model.lock().expect("model");
                        m.acked_writes += 1;
                        let ad = m.ads.get_mut(&id).expect("ad");
                        ad.state = AdState::Deleted;
                        ad.pending = None;
                    }
                    Ok(resp) => {
                        end_of_round(&cut, "delete", &resp);
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    }
}

/// A GET's status and body, or why no answer came.
type Fetched = Result<(StatusCode, Value), String>;

/// After a reboot: compares the server with the model, resolves what was in flight, and
/// returns every violation found (empty: all is well).
async fn check_after_cut(
    base: &str,
    model: &mut Model,
    rng: &mut Rng,
    totals: &mut Totals,
) -> Vec<String> {
    let http = client();
    let mut problems = Vec::new();
    // 1. Every ad the model knows: its acknowledged state, or its in-flight write, wholly.
    let ads: Vec<(String, Ad)> = model
        .ads
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let results: Vec<(String, Fetched)> = futures::stream::iter(ads.iter().map(|(id, ad)| {
        let http = http.clone();
        let url = format!("{base}/publisher/{}/ad/{id}", ad.publisher);
        async move {
            let r = match fetch(http.get(url)).await {
                Ok(resp) => Ok((
                    resp.status,
                    serde_json::from_str(&resp.text).unwrap_or(Value::Null),
                )),
                Err(e) => Err(e.to_string()),
            };
            (id.clone(), r)
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    for (id, result) in results {
        totals.ads_checked += 1;
        let ad = model.ads.get_mut(&id).expect("ad");
        let (status, body) = match result {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{id}: no answer: {e}"));
                continue;
            }
        };
        let seen = match status {
            StatusCode::OK => Some(AdState::Present {
                version: body["version"].as_u64().unwrap_or(u64::MAX),
                title: body["adTitle"].as_str().unwrap_or("").to_string(),
            }),
            StatusCode::GONE => Some(AdState::Deleted),
            _ => None,
        };
        let acked_ok = seen.as_ref() == Some(&ad.state);
        let pending_ok = match (&ad.pending, &ad.state, &seen) {
            (
                Some(Pending::Update(t)),
                AdState::Present { version, .. },
                Some(AdState::Present { version: v, title }),
            ) => *v == version + 1 && title == t,
            (Some(Pending::Delete), _, Some(AdState::Deleted)) => true,
            _ => false,
        };
        if acked_ok {
            if ad.pending.is_some() {
                totals.unacked_absent += 1;
            }
        } else if pending_ok {
            totals.unacked_found_whole += 1;
            ad.state = seen.clone().expect("seen");
        } else {
            problems.push(format!(
                "LOST/WRONG acknowledged write: {}/{id}: acknowledged {:?} (in flight {:?}), \
                 after the cut the server says {status} {body}",
                ad.publisher, ad.state, ad.pending
            ));
            if let Some(seen) = seen {
                ad.state = seen;
            }
        }
        ad.pending = None;
    }
    // 2. Keyed creates in flight: the retry resolves them (the journal answers if it
    // committed; otherwise it creates now).
    let pending = std::mem::take(&mut model.pending_creates);
    let mut unkeyed = Vec::new();
    for p in pending {
        let Some(key) = p.key.clone() else {
            unkeyed.push(p);
            continue;
        };
        let rb = json_body(
            http.request(Method::POST, format!("{base}/publisher/{}/ad", p.publisher)),
            &create_body(&p.title),
        )
        .header("Idempotency-Key", &key);
        match fetch(rb).await {
            Ok(resp) if resp.status == StatusCode::CREATED => {
                let ad = resp.json();
                let id = ad["adId"].as_str().unwrap_or("").to_string();
                if resp.headers.get("idempotency-replayed").is_some() {
                    totals.unacked_found_whole += 1;
                } else {
                    totals.unacked_absent += 1;
                }
                model.acked_writes += 1;
                model
                    .keyed
                    .push((p.publisher.clone(), key, p.title.clone(), id.clone()));
                model.ads.insert(
                    id,
                    Ad {
                        publisher: p.publisher,
                        state: AdState::Present {
                            version: 0,
                            title: p.title,
                        },
                        pending: None,
                        owner: p.owner,
                    },
                );
            }
            Ok(resp) => problems.push(format!(
                "retry of in-flight keyed create {key}: {} {}",
                resp.status, resp.text
            )),
            Err(e) => problems.push(format!("retry of in-flight keyed create {key}: {e}")),
        }
    }
    // 3. Acknowledged keyed creates: a retry is answered from the journal, same adId.
    let mut sample: Vec<usize> = (0..model.keyed.len()).collect();
    for i in (1..sample.len()).rev() {
        sample.swap(i, rng.below(i + 1));
    }
    for &i in sample.iter().take(5) {
        let (publisher, key, title, id) = model.keyed[i].clone();
        let rb = json_body(
            http.request(Method::POST, format!("{base}/publisher/{publisher}/ad")),
            &create_body(&title),
        )
        .header("Idempotency-Key", &key);
        totals.keyed_retries += 1;
        match fetch(rb).await {
            Ok(resp)
                if resp.status == StatusCode::CREATED
                    && resp.json()["adId"] == json!(id)
                    && resp.headers.get("idempotency-replayed").is_some() => {}
            Ok(resp) => problems.push(format!(
                "retry of acknowledged keyed create {key} (adId {id}): {} {:?} {}",
                resp.status,
                resp.headers.get("idempotency-replayed"),
                resp.text
            )),
            Err(e) => problems.push(format!("retry of keyed create {key}: {e}")),
        }
    }
    // 4. The lists (read model) hold exactly the model's present ads, plus unkeyed creates
    // that committed without an acknowledgement — whole (their title and version 0).
    for p in 0..PUBLISHERS {
        let publisher = format!("pl{p}");
        // Every page: a list answers at most 1,000 ads, and a publisher here passes that
        // after a few dozen rounds (the first version of this check read one page and
        // reported the newest ads "missing").
        let listed = match list_all(&http, base, &publisher).await {
            Ok(listed) => listed,
            Err(e) => {
                problems.push(format!("list {publisher}: {e}"));
                continue;
            }
        };
        let mut listed_ids = BTreeSet::new();
        for item in &listed {
            let id = item["adId"].as_str().unwrap_or("").to_string();
            let version = item["version"].as_u64().unwrap_or(u64::MAX);
            let title = item["adTitle"].as_str().unwrap_or("").to_string();
            listed_ids.insert(id.clone());
            match model.ads.get(&id) {
                Some(ad) => {
                    if ad.state
                        != (AdState::Present {
                            version,
                            title: title.clone(),
                        })
                    {
                        problems.push(format!(
                            "list {publisher}: {id} listed at v{version} {title:?}, the ad is {:?}",
                            ad.state
                        ));
                    }
                }
                None => match unkeyed
                    .iter()
                    .position(|u| u.publisher == publisher && u.title == title)
                {
                    Some(pos) if version == 0 => {
                        let u = unkeyed.remove(pos);
                        totals.unacked_found_whole += 1;
                        model.ads.insert(
                            id,
                            Ad {
                                publisher: publisher.clone(),
                                state: AdState::Present { version: 0, title },
                                pending: None,
                                owner: u.owner,
                            },
                        );
                    }
                    _ => problems.push(format!(
                        "list {publisher}: {id} ({title:?} v{version}) was never written, or half"
                    )),
                },
            }
        }
        for (id, ad) in &model.ads {
            if ad.publisher == publisher
                && matches!(ad.state, AdState::Present { .. })
                && !listed_ids.contains(id)
            {
                problems.push(format!(
                    "list {publisher}: {id} ({:?}) missing from the list",
                    ad.state
                ));
            }
        }
    }
    totals.unacked_absent += unkeyed.len();
    // 5. The journal agrees with the read model: each ad's last revision is its state.
    let ads: Vec<(String, Ad)> = model
        .ads
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let journal: Vec<Option<String>> = futures::stream::iter(ads.into_iter().map(|(id, ad)| {
        let http = http.clone();
        let url = format!("{base}/publisher/{}/ad/{id}?versions=true", ad.publisher);
        async move {
            let resp = match fetch(http.get(url)).await {
                Ok(resp) => resp,
                Err(e) => return Some(format!("{id} versions: {e}")),
            };
            let revisions = serde_json::from_str::<Value>(&resp.text).unwrap_or(Value::Null);
            let last = revisions.as_array().and_then(|r| r.last()).cloned();
            let from_journal = last.map(|r| {
                if r["data"].is_null() {
                    AdState::Deleted
                } else {
                    AdState::Present {
                        version: r["version"].as_u64().unwrap_or(u64::MAX),
                        title: r["data"]["adTitle"].as_str().unwrap_or("").to_string(),
                    }
                }
            });
            (from_journal.as_ref() != Some(&ad.state)).then(|| {
                format!("{id}: the journal's last revision is {from_journal:?}, the read model says {:?}", ad.state)
            })
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    problems.extend(journal.into_iter().flatten());
    // 6. The search index agrees too: each publisher's hits are exactly its present ads,
    // at their versions (a tantivy commit cut short must not leave it behind or ahead).
    for p in 0..PUBLISHERS {
        let publisher = format!("pl{p}");
        match search_all(&http, base, &publisher).await {
            Ok(found) => {
                let want: BTreeMap<String, u64> = model
                    .ads
                    .iter()
                    .filter(|(_, ad)| ad.publisher == publisher)
                    .filter_map(|(id, ad)| match &ad.state {
                        AdState::Present { version, .. } => Some((id.clone(), *version)),
                        AdState::Deleted => None,
                    })
                    .collect();
                if found != want {
                    let extra: Vec<_> = found.iter().filter(|e| !want.contains_key(e.0)).collect();
                    let missing: Vec<_> = want
                        .iter()
                        .filter(|e| found.get(e.0) != Some(e.1))
                        .collect();
                    problems.push(format!(
                        "search {publisher}: the index differs from the journal: not as in the \
                         journal {missing:?}, not in the journal {extra:?}"
                    ));
                }
            }
            Err(e) => problems.push(format!("search {publisher}: {e}")),
        }
    }
    problems
}

/// Every ad of `GET /publisher/{p}/ad`, following the `Link` header page by page.
async fn list_all(
    http: &reqwest::Client,
    base: &str,
    publisher: &str,
) -> Result<Vec<Value>, String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut url = format!("{base}/publisher/{publisher}/ad?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let resp = fetch(http.get(url)).await.map_err(|e| e.to_string())?;
        if resp.status != StatusCode::OK {
            return Err(format!("{} {}", resp.status, resp.text));
        }
        let page = resp.json().as_array().cloned().unwrap_or_default();
        let more = resp.headers.contains_key("link");
        cursor = page
            .last()
            .and_then(|a| a["adId"].as_str())
            .map(str::to_string);
        all.extend(page);
        if !more || cursor.is_none() {
            return Ok(all);
        }
    }
    Err("more than 1,000 pages".to_string())
}

/// Every hit of `GET /search?publisherId=…`, page by page: adId → version.
async fn search_all(
    http: &reqwest::Client,
    base: &str,
    publisher: &str,
) -> Result<BTreeMap<String, u64>, String> {
    let mut found = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut url = format!("{base}/search?publisherId={publisher}&limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let resp = fetch(http.get(url)).await.map_err(|e| e.to_string())?;
        if resp.status != StatusCode::OK {
            return Err(format!("{} {}", resp.status, resp.text));
        }
        let page = resp.json();
        for item in page["items"].as_array().cloned().unwrap_or_default() {
            let id = item["adId"].as_str().unwrap_or("").to_string();
            found.insert(id, item["version"].as_u64().unwrap_or(u64::MAX));
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(found),
        }
    }
    Err("more than 100 pages of hits".to_string())
}

/// `adledger snapshot restore` of the newest snapshot in `data_dir`, if there is one: a
/// snapshot that a cut interrupted must be absent or whole, never listed and broken.
async fn restore_newest_snapshot(data_dir: &Path, totals: &mut Totals) -> Result<(), String> {
    let dir = data_dir.to_string_lossy().into_owned();
    let listed = run_cli(&["snapshot", "list", "--json", "--data-dir", &dir]).await;
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    if !listed.status.success() {
        return Err(format!(
            "snapshot list after the cut: {text}{}",
            String::from_utf8_lossy(&listed.stderr)
        ));
    }
    let listing: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let Some(newest) = listing["snapshots"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["id"].as_str())
    else {
        return Ok(());
    };
    let restored = run_cli(&["snapshot", "restore", newest, "--data-dir", &dir]).await;
    if !restored.status.success() {
        return Err(format!(
            "snapshot restore {newest} after the cut: {}{}",
            String::from_utf8_lossy(&restored.stdout),
            String::from_utf8_lossy(&restored.stderr)
        ));
    }
    totals.snapshots_restored += 1;
    Ok(())
}

async fn verify_offline(data_dir: &Path) -> Result<(), String> {
    if !data_dir.join("journal").exists() {
        let listing = |p: &Path| {
            std::fs::read_dir(p)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|e| e.to_string())
        };
        // Not an error by itself (a cut before the first start finished), but say so: the
        // checks that follow then find every acknowledged write missing.
        println!(
            "no journal after the cut; data dir: [{}], its parent: [{}]",
            listing(data_dir),
            listing(data_dir.parent().unwrap_or(data_dir))
        );
        return Ok(());
    }
    let dir = data_dir.to_string_lossy().into_owned();
    let out = crate::support::run_cli(&["verify", "--data-dir", &dir, "--json"]).await;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "adledger verify failed after the cut: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn require_fuse() {
    crate::support::require_root("the power-loss tests mount a FUSE file system");
    assert!(
        Path::new("/dev/fuse").exists(),
        "the power-loss tests need /dev/fuse (the fuse kernel module), which is absent"
    );
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// Runs `cuts` power cuts; returns the totals, or the first round's violations.
async fn run_cuts(
    cuts: usize,
    seed: u64,
    unsafe_skip: bool,
) -> Result<Totals, (usize, Vec<String>)> {
    require_fuse();
    let tmp = tempfile::Builder::new()
        .prefix("adledger-power-")
        .tempdir()
        .expect("tempdir");
    let backing = tmp.path().join("backing");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&backing).expect("mkdir backing");
    std::fs::create_dir_all(&mnt).expect("mkdir mnt");
    let data_dir = mnt.join("data");
    let log = tmp.path().join("server.log");
    let mut rng = Rng::new(seed);
    let model = Arc::new(Mutex::new(Model::default()));
    let mut totals = Totals::default();
    for round in 0..=cuts {
        let cut = Arc::new(AtomicBool::new(false));
        let fs = adledger_powerfs::mount(&backing, &mnt).unwrap_or_else(|e| panic!("{e}"));
        if round > 0
            && let Err(e) = verify_offline(&data_dir).await
        {
            return Err((round, vec![e]));
        }
        // Every third reboot, the operator restores the newest snapshot that survived
        // (each snapshot is checked against the journal by `restore`).
        if round > 0
            && round % 3 == 0
            && let Err(e) = restore_newest_snapshot(&data_dir, &mut totals).await
        {
            return Err((round, vec![e]));
        }
        let mut server = match start_server(&data_dir, &log, unsafe_skip).await {
            Ok(server) => server,
            Err(e) => return Err((round, vec![e])),
        };
        if round > 0 {
            // No client runs between rounds: the model is taken out so no lock is held
            // across the checks' awaits, and put back after.
            let mut m = std::mem::take(&mut *model.lock().expect("model"));
            let problems = check_after_cut(&server.base, &mut m, &mut rng, &mut totals).await;
            totals.acked_writes = m.acked_writes;
            *model.lock().expect("model") = m;
            if !problems.is_empty() {
                server.kill().await;
                let mut problems = problems;
                let log = std::fs::read_to_string(&server.log).unwrap_or_default();
                let tail = log.len().saturating_sub(2000);
                problems.push(format!("--- server stderr (tail) ---\n{}", &log[tail..]));
                drop(fs);
                if let Some(dest) = keep_evidence(&backing, seed) {
                    problems.push(format!("what survived the cut is kept in {dest}"));
                }
                return Err((round, problems));
            }
        }
        if round == cuts {
            server.kill().await;
            drop(fs);
            break;
        }
        // Writes, then the power cut at a random moment (sometimes right at start-up).
        // One round in five runs past the first scheduled snapshot (1 s after start), so
        // some cuts land in a snapshot.
        let delay = match rng.below(5) {
            0 => rng.below(60),
            1 => 1_000 + rng.below(1_500),
            _ => 100 + rng.below(900),
        };
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(client_loop(
                    c,
                    server.base.clone(),
                    Arc::clone(&model),
                    Arc::clone(&cut),
                    seed.wrapping_add(round as u64),
                    round,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        cut.store(true, Ordering::SeqCst);
        fs.cut();
        server.kill().await;
        for task in clients {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("a client did not stop within 60 s of the cut")
                .expect("client task");
        }
        let report = fs.restore().expect("restore what survived the cut");
        totals.cuts += 1;
        totals.fs_files_reverted += report.files_reverted;
        totals.fs_entries_reverted += report.entries_reverted;
        totals.fs_unsynced_writes += report.unsynced_writes;
    }
    Ok(totals)
}

/// Keeps a copy of the data directory a failed check ran on, for a post-mortem, when
/// `ADLEDGER_POWER_KEEP` names a directory to put it in.
fn keep_evidence(backing: &Path, seed: u64) -> Option<String> {
    let dir = std::env::var_os("ADLEDGER_POWER_KEEP")?;
    let dest = Path::new(&dir).join(format!("power-{seed}"));
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(backing)
        .arg(&dest)
        .status()
        .ok()?;
    copied.success().then(|| dest.display().to_string())
}

fn seed() -> u64 {
    crate::support::seed_from_env("ADLEDGER_POWER_SEED", "power-loss")
}

async fn acknowledged_writes_survive_power_cuts() {
    let cuts = env_number("ADLEDGER_POWER_CUTS", 12) as usize;
    let seed = seed();
    let started = Instant::now();
    match run_cuts(cuts, seed, false).await {
        Ok(t) => {
            println!(
                "power loss: {} cuts survived in {:.1} s; {} acknowledged writes, {} ad checks \
                 ({} keyed retries answered from the journal), unacknowledged writes: {} \
                 found whole, {} absent; {} snapshots restored after a cut; the file system \
                 discarded {} unsynced writes, reverted {} files and {} directory entries; \
                 acknowledged bytes lost: 0",
                t.cuts,
                started.elapsed().as_secs_f64(),
                t.acked_writes,
                t.ads_checked,
                t.keyed_retries,
                t.unacked_found_whole,
                t.unacked_absent,
                t.snapshots_restored,
                t.fs_unsynced_writes,
                t.fs_files_reverted,
                t.fs_entries_reverted
            );
            assert!(
                t.acked_writes > cuts,
                "too few writes for the test to mean anything: {t:?}"
            );
            assert!(
                t.fs_unsynced_writes > 0,
                "the file system never discarded anything: {t:?}"
            );
        }
        Err((round, problems)) => panic!(
            "after power cut {round} (seed {seed}), {} problems:\n{}",
            problems.len(),
            problems
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

async fn missing_fdatasync_is_caught() {
    let seed = seed();
    let max_cuts = 30;
    match run_cuts(max_cuts, seed, true).await {
        Ok(t) => panic!(
            "with the journal's fsync disabled, {max_cuts} power cuts lost no acknowledged \
             write: the power-loss file system no longer simulates loss ({t:?})"
        ),
        Err((round, problems)) => println!(
            "without fdatasync, power cut {round} lost acknowledged writes, as it must ({} \
             problems), e.g.:\n{}",
            problems.len(),
            problems
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// The suite, on the local backend (a FUSE filesystem under sled and tantivy).
mod local {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_writes_survive_power_cuts() {
        super::acknowledged_writes_survive_power_cuts().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_fdatasync_is_caught() {
        super::missing_fdatasync_is_caught().await
    }
}
