//! The engine's search conformance tests against an in-memory model of OpenSearch.
//!
//! No OpenSearch server can be installed here, and the contract tests
//! (`opensearch_contract.rs`) check requests one by one. This file checks the adapter's
//! logic as a whole — external versions, tombstones, `put` lowering a version by delete
//! and rewrite, the checkpoint document, paging — by running the conformance functions
//! that involve search against a loopback server that models the parts of OpenSearch the
//! adapter uses, with OpenSearch's rules:
//!
//! - `version_type=external` refuses a write unless its version is greater than the
//!   current one; `external_gte` unless greater or equal; an unversioned write takes
//!   the current version plus one;
//! - a delete's version is remembered for a while ([`GC_DELETES`], standing in for
//!   OpenSearch's cached clock with `index.gc_deletes: 0`) and refuses external writes
//!   that are not newer until then;
//! - `bool` queries with `term` and `range` filters and a `multi_match` over analysed
//!   text (words, lower-cased, accents folded), `sort`, `from`/`size`.
//!
//! The journal and the state store are the engine's in-memory backend (see
//! `opensearch_harness`), so these tests need no outside service at all.
//!
//! It is a model, not OpenSearch: ranking is a count of matching words. The real thing
//! runs the same functions in `opensearch_live.rs` when `OPENSEARCH_URL` is set.

mod opensearch_harness;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adledger_aws::OpenSearchAuth;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use opensearch_harness::OpenSearchHarness;
use serde_json::{Value, json};

/// How long a deleted document's version is remembered.
const GC_DELETES: Duration = Duration::from_millis(300);

/// A document, or the memory of a deleted one.
#[derive(Debug, Clone)]
struct Stored {
    version: u64,
    /// `None` for a deleted document, remembered until `deleted_at + GC_DELETES`.
    source: Option<Value>,
    deleted_at: Option<Instant>,
}

#[derive(Default)]
struct Cluster {
    indexes: BTreeMap<String, BTreeMap<String, Stored>>,
}

type Shared = Arc<Mutex<Cluster>>;

fn reply(status: StatusCode, body: Value) -> (StatusCode, String) {
    (status, body.to_string())
}

fn error(status: StatusCode, kind: &str, reason: String) -> (StatusCode, String) {
    reply(
        status,
        json!({ "error": { "type": kind, "reason": reason }, "status": status.as_u16() }),
    )
}

/// The version a document has for versioning purposes (a remembered delete counts).
fn current(docs: &BTreeMap<String, Stored>, id: &str) -> Option<u64> {
    let stored = docs.get(id)?;
    match stored.deleted_at {
        Some(at) if at.elapsed() > GC_DELETES => None,
        _ => Some(stored.version),
    }
}

/// One write under OpenSearch's versioning rules: the status and the item body.
fn write(
    docs: &mut BTreeMap<String, Stored>,
    id: &str,
    version: Option<u64>,
    version_type: Option<&str>,
    source: Option<Value>,
) -> (u16, Value) {
    let current = current(docs, id);
    let conflict = match (version_type, version, current) {
        (_, _, None) | (None | Some("internal"), _, _) => false,
        (Some("external"), Some(v), Some(c)) => c >= v,
        (Some("external_gte"), Some(v), Some(c)) => c > v,
        other => panic!("the model does not know this versioning: {other:?}"),
    };
    if conflict {
        let reason = format!(
            "[{id}]: version conflict, current version [{}] is higher or equal to the one \
             provided [{}]",
            current.unwrap_or(0),
            version.unwrap_or(0)
        );
        return (
            409,
            json!({ "_id": id, "status": 409,
                    "error": { "type": "version_conflict_engine_exception", "reason": reason } }),
        );
    }
    let new_version = match (version_type, version) {
        (Some("external" | "external_gte"), Some(v)) => v,
        _ => current.map_or(1, |c| c + 1),
    };
    let live_before = docs.get(id).is_some_and(|s| s.source.is_some());
    match source {
        Some(source) => {
            docs.insert(
                id.to_string(),
                Stored {
                    version: new_version,
                    source: Some(source),
                    deleted_at: None,
                },
            );
            let status = if live_before { 200 } else { 201 };
            let result = if live_before { "updated" } else { "created" };
            (
                status,
                json!({ "_id": id, "_version": new_version, "result": result, "status": status }),
            )
        }
        None => {
            docs.insert(
                id.to_string(),
                Stored {
                    version: new_version,
                    source: None,
                    deleted_at: Some(Instant::now()),
                },
            );
            let (status, result) = if live_before {
                (200, "deleted")
            } else {
                (404, "not_found")
            };
            (
                status,
                json!({ "_id": id, "_version": new_version, "result": result, "status": status }),
            )
        }
    }
}

/// Words of a text, as the index's analyzer makes them.
fn words(text: &str) -> Vec<String> {
    let folded: String = text
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            other => other,
        })
        .collect();
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.chars().count() <= 40)
        .map(str::to_string)
        .collect()
}

/// The values of a field (a string, a number, or an array of them).
fn values(source: &Value, field: &str) -> Vec<Value> {
    match &source[field] {
        Value::Null => Vec::new(),
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| value.to_string().parse().ok())
}

/// Whether a document passes a filter clause.
fn passes(source: &Value, clause: &Value) -> bool {
    if let Some(term) = clause["term"].as_object() {
        return term
            .iter()
            .all(|(field, wanted)| values(source, field).contains(wanted));
    }
    if let Some(range) = clause["range"].as_object() {
        return range.iter().all(|(field, bounds)| {
            let Some(value) = values(source, field).first().and_then(number) else {
                return false;
            };
            let gte = bounds
                .get("gte")
                .and_then(number)
                .is_none_or(|b| value >= b);
            let lte = bounds
                .get("lte")
                .and_then(number)
                .is_none_or(|b| value <= b);
            gte && lte
        });
    }
    panic!("the model does not know this filter: {clause}");
}

/// The score of a `multi_match`: how many of its words the fields hold (0: no match).
fn score(source: &Value, multi_match: &Value) -> usize {
    let wanted = words(multi_match["query"].as_str().unwrap_or_default());
    let mut text = Vec::new();
    for field in multi_match["fields"].as_array().into_iter().flatten() {
        for value in values(source, field.as_str().unwrap_or_default()) {
            text.extend(words(value.as_str().unwrap_or_default()));
        }
    }
    wanted.iter().filter(|w| text.contains(w)).count()
}

fn search(docs: &BTreeMap<String, Stored>, body: &Value) -> Value {
    let query = &body["query"]["bool"];
    let filters = query["filter"].as_array().cloned().unwrap_or_default();
    let must = query["must"].as_array().cloned().unwrap_or_default();
    let mut hits: Vec<(usize, &String, &Value)> = docs
        .iter()
        .filter_map(|(id, stored)| stored.source.as_ref().map(|s| (id, s)))
        .filter(|(_, source)| filters.iter().all(|f| passes(source, f)))
        .filter_map(|(id, source)| {
            let mut total = 0;
            for clause in &must {
                let s = score(source, &clause["multi_match"]);
                if s == 0 {
                    return None;
                }
                total += s;
            }
            Some((total, id, source))
        })
        .collect();
    let sort = body["sort"].as_array().cloned().unwrap_or_default();
    hits.sort_by(|a, b| {
        for key in &sort {
            let (field, order) = key
                .as_object()
                .and_then(|o| o.iter().next())
                .expect("sort key");
            let ordering = if field == "_score" {
                a.0.cmp(&b.0)
            } else {
                let (x, y) = (&a.2[field], &b.2[field]);
                match (x.as_u64(), y.as_u64()) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    _ => x.as_str().cmp(&y.as_str()),
                }
            };
            let ordering = if order == "desc" {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    });
    let total = hits.len();
    let from = body["from"].as_u64().unwrap_or(0) as usize;
    let size = body["size"].as_u64().unwrap_or(10) as usize;
    let page: Vec<Value> = hits
        .into_iter()
        .skip(from)
        .take(size)
        .map(|(score, id, source)| json!({ "_id": id, "_score": score, "_source": source }))
        .collect();
    json!({ "took": 1, "timed_out": false,
            "hits": { "total": { "value": total, "relation": "eq" }, "hits": page } })
}

fn bulk(docs: &mut BTreeMap<String, Stored>, body: &str) -> Value {
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("bulk lines are JSON"))
        .collect();
    let mut items = Vec::new();
    let mut errors = false;
    let mut i = 0;
    while i < lines.len() {
        let (action, meta) = lines[i]
            .as_object()
            .and_then(|o| o.iter().next())
            .expect("an action line");
        let id = meta["_id"].as_str().expect("an _id");
        let version = meta["version"].as_u64();
        let version_type = meta["version_type"].as_str();
        let (status, item) = match action.as_str() {
            "index" => {
                i += 1;
                write(docs, id, version, version_type, Some(lines[i].clone()))
            }
            "delete" => write(docs, id, version, version_type, None),
            other => panic!("the model does not know bulk action {other}"),
        };
        errors |= status == 409;
        items.push(json!({ action: item }));
        i += 1;
    }
    json!({ "took": 1, "errors": errors, "items": items })
}

async fn answer(
    State(cluster): State<Shared>,
    Query(params): Query<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, String) {
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut cluster = cluster.lock().unwrap_or_else(|p| p.into_inner());
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    match (&method, parts.as_slice()) {
        (&Method::PUT, [index]) => {
            if cluster.indexes.contains_key(*index) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "resource_already_exists_exception",
                    format!("index [{index}] already exists"),
                );
            }
            cluster.indexes.insert(index.to_string(), BTreeMap::new());
            reply(
                StatusCode::OK,
                json!({ "acknowledged": true, "index": index }),
            )
        }
        (&Method::HEAD, [index]) if cluster.indexes.contains_key(*index) => {
            (StatusCode::OK, String::new())
        }
        (&Method::HEAD, [_]) => (StatusCode::NOT_FOUND, String::new()),
        (_, [index, ..]) if !cluster.indexes.contains_key(*index) => error(
            StatusCode::NOT_FOUND,
            "index_not_found_exception",
            format!("no such index [{index}]"),
        ),
        (&Method::DELETE, [index]) => {
            cluster.indexes.remove(*index);
            reply(StatusCode::OK, json!({ "acknowledged": true }))
        }
        (&Method::POST, [index, "_bulk"]) => {
            let docs = cluster.indexes.entry(index.to_string()).or_default();
            reply(StatusCode::OK, bulk(docs, &body))
        }
        (&Method::POST | &Method::PUT, [index, "_doc", id]) => {
            let docs = cluster.indexes.entry(index.to_string()).or_default();
            let source = serde_json::from_str(&body).expect("a JSON document");
            let version = params.get("version").and_then(|v| v.parse().ok());
            let version_type = params.get("version_type").map(String::as_str);
            let (status, item) = write(docs, id, version, version_type, Some(source));
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            reply(status, item)
        }
        (&Method::GET, [index, "_doc", id]) => {
            match cluster.indexes[*index]
                .get(*id)
                .and_then(|s| s.source.clone())
            {
                Some(source) => reply(
                    StatusCode::OK,
                    json!({ "_id": id, "found": true, "_source": source }),
                ),
                None => reply(StatusCode::NOT_FOUND, json!({ "_id": id, "found": false })),
            }
        }
        (&Method::POST, [index, "_search"]) => {
            let query: Value = serde_json::from_str(&body).expect("a JSON search");
            reply(StatusCode::OK, search(&cluster.indexes[*index], &query))
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_request",
            format!("the model does not know {method} {uri}"),
        ),
    }
}

/// The model on loopback, and its URL.
struct Model {
    url: String,
}

impl Model {
    async fn start() -> Model {
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Model {
            url: format!("http://{address}"),
        }
    }

    /// The conformance harness on this model: one index, `ads`, per model.
    fn harness(&self) -> OpenSearchHarness {
        OpenSearchHarness {
            url: self.url.clone(),
            auth: OpenSearchAuth::None,
            index: Some("ads"),
        }
    }
}

/// One test per conformance behaviour that involves search; each gets its own model.
macro_rules! model_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let model = Model::start().await;
                tokio::time::timeout(
                    Duration::from_secs(120),
                    adledger_engine::testkit::$name(&model.harness()),
                )
                .await
                .expect("the conformance test finished in time");
            }
        )*
    };
}

model_tests!(
    search_finds_by_text_and_filters,
    search_ties_break_by_ad_id,
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
