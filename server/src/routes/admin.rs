//! `/admin/*`: replay, rebuild and snapshots on a running server.
//!
//! Disabled (404) unless an admin token is configured (`--admin-token` /
//! `ADLEDGER_ADMIN_TOKEN` / `admin_token`); then every request needs `Authorization:
//! Bearer <token>`: 401 without one (with `WWW-Authenticate: Bearer`), 403 with a wrong
//! one. The comparison is constant-time: both sides are hashed with SHA-256 and the
//! digests compared without an early exit, so neither the content nor the length of the
//! token leaks through timing.
//!
//! | route | body | does |
//! |---|---|---|
//! | `POST /admin/replay` | `{adId?, publisherId?, from?, to?}` | replays one ad, or every ad with a revision in the range |
//! | `POST /admin/rebuild` | `{shadow?: true}` | rebuilds into shadow read models and answers the diff against the live ones |
//! | `POST /admin/snapshots` | none | takes a snapshot (consistent even while writes go on) |
//! | `GET /admin/snapshots` | | lists the snapshots |
//!
//! Swapping read models and rebuilding in place need exclusive use of the read models,
//! which a serving process does not have: those are refused with 409 and a pointer to
//! `adledger rebuild`. Admin jobs run one at a time.

use adledger_engine::diff::diff_states;
use adledger_engine::rebuild::{RebuildOptions, rebuild};
use adledger_engine::replay::{find_ad, replay_ad, replay_range};
use adledger_engine::{AdKey, Hash, TimeRange};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::backend;
use crate::body::read_json;
use crate::error::{ApiError, PROBLEM_JSON, Problem};
use crate::snapshot_store::SnapshotStoreError;
use crate::state::{Admin, AppState};

/// The admin routes, to be merged into the application.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/replay", post(replay))
        .route("/admin/rebuild", post(rebuild_shadow))
        .route("/admin/snapshots", post(snapshot_create).get(snapshot_list))
}

/// An answer given before a handler's work: boxed, as a `Response` is large.
pub(crate) type Early = Box<Response>;

/// A problem document with a status `ApiError` has no constructor for.
fn problem(
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
) -> Response {
    let problem = Problem {
        kind,
        title,
        status: status.as_u16(),
        detail,
        instance: None,
        request_id: None,
        field: None,
    };
    let mut response = Response::new(Body::from(problem.to_body()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response.extensions_mut().insert(problem);
    response
}

/// Equal digests, compared without an early exit.
fn same(a: &Hash, b: &Hash) -> bool {
    a.as_bytes()
        .iter()
        .zip(b.as_bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The admin settings, if the request may use them; else the answer to give.
///
/// The bearer token is compared with the break-glass admin token first (constant time);
/// otherwise, when caller identity is configured, it must be a valid token with admin
/// rights (scope `adledger/admin` or group `adledger-admins`).
pub(crate) async fn authorize<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<&'a Admin, Early> {
    let Some(admin) = state.admin.as_ref() else {
        return Err(ApiError::not_found(
            "the admin routes are disabled; start the server with --admin-token (or \
             ADLEDGER_ADMIN_TOKEN), or with --auth hs256/jwks and use an admin token, to \
             enable them"
                .into(),
        )
        .into_response()
        .into());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        let mut response = problem(
            StatusCode::UNAUTHORIZED,
            "/problems/unauthorized",
            "Unauthorized",
            "the admin routes need `Authorization: Bearer <admin token>`".into(),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"adledger-admin\""),
        );
        return Err(Box::new(response));
    };
    if admin
        .token_hash
        .as_ref()
        .is_some_and(|hash| same(&Hash::of(presented.as_bytes()), hash))
    {
        return Ok(admin);
    }
    if state.auth.verifier.is_some() {
        let principal = crate::auth::access::required(&state.auth, headers)
            .await
            .map_err(|e| Box::new(e.into_response()))?;
        if principal.admin {
            return Ok(admin);
        }
        return Err(Box::new(
            ApiError::forbidden(format!(
                "the token of {:?} has no admin rights: it needs the scope \
                 `adledger/admin` or the group `adledger-admins`",
                principal.actor.sub
            ))
            .into_response(),
        ));
    }
    Err(Box::new(problem(
        StatusCode::FORBIDDEN,
        "/problems/forbidden",
        "Forbidden",
        "the bearer token is not the admin token; check the token the server was \
         started with"
            .into(),
    )))
}

fn engine(e: adledger_engine::Error) -> Response {
    ApiError::from_engine(e, false).into_response()
}

/// A snapshot-directory failure: the engine's errors map as everywhere; a file that
/// cannot be written is the server's fault (500, logged).
fn snapshots(e: SnapshotStoreError) -> Response {
    match e {
        SnapshotStoreError::Engine(e) => engine(e),
        other => internal(&other),
    }
}

/// 500, with the cause logged (not sent).
fn internal(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "admin job failed");
    ApiError::internal().into_response()
}

/// The fields of a JSON object body, refusing unknown ones; an empty body is `{}`.
async fn object(
    headers: &HeaderMap,
    body: Body,
    allowed: &[&str],
) -> Result<serde_json::Map<String, Value>, Early> {
    let empty = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0")
        || (headers.get(header::CONTENT_TYPE).is_none()
            && headers.get(header::CONTENT_LENGTH).is_none());
    if empty {
        return Ok(serde_json::Map::new());
    }
    let value = read_json(headers, body)
        .await
        .map_err(IntoResponse::into_response)?;
    let Value::Object(map) = value else {
        return Err(Box::new(
            ApiError::invalid_field("body", "send a JSON object".into()).into_response(),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid_field(
            unknown.clone(),
            format!(
                "unknown field `{unknown}`; this route takes {}",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into_response()
        .into());
    }
    Ok(map)
}

fn text_field(map: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, Early> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid_field(
            name,
            format!("`{name}` must be a non-empty string"),
        )
        .into_response()
        .into()),
    }
}

fn time_field(
    map: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Early> {
    match text_field(map, name)? {
        None => Ok(None),
        Some(text) => adledger_engine::time::parse_rfc3339(&text)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    name,
                    format!("`{name}` must be an RFC 3339 time such as 2024-05-01T12:00:00Z"),
                )
                .into_response()
                .into()
            }),
    }
}

/// `POST /admin/replay`.
#[utoipa::path(
    post, path = "/admin/replay", tag = "operations",
    params(("Authorization" = Option<String>, Header, description = "`Bearer <admin token>`")),
    request_body(content = Option<crate::wire_schema::ReplayRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "`{replayed, ads}`: what was replayed (at most 100 ads shown)", body = Object),
        (status = 401, description = "No `Authorization: Bearer` header", body = crate::wire_schema::Problem, content_type = "application/problem+json", headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not the admin token", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The admin routes are disabled (no admin token configured), or an unknown ad", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 400, description = "Malformed JSON", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received in time", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not declared as JSON", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid or unknown field", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn replay(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let admin = match authorize(&state, &headers).await {
        Ok(admin) => admin,
        Err(response) => return *response,
    };
    let parsed = async {
        let map = object(&headers, body, &["adId", "publisherId", "from", "to"]).await?;
        let range = TimeRange {
            from: time_field(&map, "from")?,
            to: time_field(&map, "to")?,
        };
        if let (Some(from), Some(to)) = (range.from, range.to)
            && from > to
        {
            return Err(Box::new(
                ApiError::invalid_field("from", "`from` is after `to`".into()).into_response(),
            ));
        }
        Ok((
            text_field(&map, "adId")?,
            text_field(&map, "publisherId")?,
            range,
        ))
    };
    let (ad_id, publisher_id, range) = match parsed.await {
        Ok(parsed) => parsed,
        Err(response) => return *response,
    };
    let _job = admin.jobs.lock().await;
    let ports = state.ledger.ports();
    let (journal, store, search) = (
        ports.journal.as_ref(),
        ports.state.as_ref(),
        ports.search.as_ref(),
    );
    let Some(ad_id) = ad_id else {
        return match replay_range(journal, store, search, range).await {
            Ok(reports) => {
                let shown: Vec<_> = reports.iter().take(100).collect();
                (
                    StatusCode::OK,
                    axum::Json(json!({"replayed": reports.len(), "ads": shown})),
                )
                    .into_response()
            }
            Err(e) => engine(e),
        };
    };
    let key = match publisher_id {
        Some(p) => AdKey::new(p, ad_id),
        None => match find_ad(journal, store, &ad_id).await {
            Ok(Some(key)) => key,
            Ok(None) => {
                return ApiError::not_found(format!("ad {ad_id} is not in the journal"))
                    .into_response();
            }
            Err(e) => return engine(e),
        },
    };
    match replay_ad(journal, store, search, &key, range).await {
        Ok(report) => (
            StatusCode::OK,
            axum::Json(json!({"replayed": 1, "ads": [report]})),
        )
            .into_response(),
        Err(e) => engine(e),
    }
}

/// `POST /admin/rebuild`: a shadow rebuild, answered with its diff.
#[utoipa::path(
    post, path = "/admin/rebuild", tag = "operations",
    params(("Authorization" = Option<String>, Header, description = "`Bearer <admin token>`")),
    request_body(content = Option<crate::wire_schema::RebuildRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "`{report, diff, swapped: false}`: the shadow rebuild and its differences from the live read models", body = Object),
        (status = 401, description = "No `Authorization: Bearer` header", body = crate::wire_schema::Problem, content_type = "application/problem+json", headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not the admin token", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The admin routes are disabled (no admin token configured)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 400, description = "Malformed JSON", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received in time", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not declared as JSON", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid or unknown field", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 409, description = "In-place or swapping rebuilds need a stopped server (`adledger rebuild`)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn rebuild_shadow(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let admin = match authorize(&state, &headers).await {
        Ok(admin) => admin,
        Err(response) => return *response,
    };
    let map = match object(&headers, body, &["shadow", "swap"]).await {
        Ok(map) => map,
        Err(response) => return *response,
    };
    let flag = |name: &str, default: bool| match map.get(name) {
        None | Some(Value::Null) => Ok::<bool, Early>(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(
            ApiError::invalid_field(name, format!("`{name}` must be true or false"))
                .into_response()
                .into(),
        ),
    };
    let (shadow, swap) = match (flag("shadow", true), flag("swap", false)) {
        (Ok(shadow), Ok(swap)) => (shadow, swap),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    if !shadow || swap {
        return problem(
            StatusCode::CONFLICT,
            "/problems/needs-stopped-server",
            "Needs a stopped server",
            "rebuilding in place and swapping read models need exclusive use of them, which \
             a serving process does not have: stop the server and run `adledger rebuild` (or \
             `adledger rebuild --shadow --swap`); a shadow rebuild (`{\"shadow\": true}`) runs \
             while serving"
                .into(),
        );
    }
    let _job = admin.jobs.lock().await;
    let ports = state.ledger.ports();
    let opened = backend::open_read_models(&admin.config, "admin-rebuild");
    let (shadow_state, shadow_search) = match opened {
        Ok(models) => models,
        Err(e) => return internal(&e),
    };
    let report = rebuild(
        ports.journal.as_ref(),
        shadow_state.as_ref(),
        shadow_search.as_ref(),
        &RebuildOptions::default(),
        &mut |_| {},
    )
    .await;
    let report = match report {
        Ok(report) => report,
        Err(e) => return engine(e),
    };
    // Let the live state store reach the shadow's checkpoint, so the diff compares like
    // with like (writes after it may still show up as differences).
    if let Err(e) = state.ledger.wait_for_state(report.next).await {
        return engine(e);
    }
    match diff_states(ports.state.as_ref(), shadow_state.as_ref(), 50).await {
        Ok(diff) => (
            StatusCode::OK,
            axum::Json(json!({"report": report, "diff": diff, "swapped": false})),
        )
            .into_response(),
        Err(e) => engine(e),
    }
}

/// `POST /admin/snapshots`.
#[utoipa::path(
    post, path = "/admin/snapshots", tag = "operations",
    params(("Authorization" = Option<String>, Header, description = "`Bearer <admin token>`")),
    responses(
        (status = 201, description = "`{id, header}`: the snapshot taken", body = Object),
        (status = 401, description = "No `Authorization: Bearer` header", body = crate::wire_schema::Problem, content_type = "application/problem+json", headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not the admin token", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The admin routes are disabled (no admin token configured)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn snapshot_create(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let admin = match authorize(&state, &headers).await {
        Ok(admin) => admin,
        Err(response) => return *response,
    };
    let _job = admin.jobs.lock().await;
    match admin.snapshots.create(state.ledger.ports()).await {
        Ok((id, header)) => (
            StatusCode::CREATED,
            axum::Json(json!({"id": id, "header": header})),
        )
            .into_response(),
        Err(e) => snapshots(e),
    }
}

/// `GET /admin/snapshots`.
#[utoipa::path(
    get, path = "/admin/snapshots", tag = "operations",
    params(("Authorization" = Option<String>, Header, description = "`Bearer <admin token>`")),
    responses(
        (status = 200, description = "`{snapshots: [{id, header}]}`", body = Object),
        (status = 401, description = "No `Authorization: Bearer` header", body = crate::wire_schema::Problem, content_type = "application/problem+json", headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not the admin token", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The admin routes are disabled (no admin token configured)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn snapshot_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let admin = match authorize(&state, &headers).await {
        Ok(admin) => admin,
        Err(response) => return *response,
    };
    match admin.snapshots.list() {
        Ok(all) => {
            let items: Vec<_> = all
                .iter()
                .map(|(id, h)| json!({"id": id, "header": h}))
                .collect();
            (StatusCode::OK, axum::Json(json!({"snapshots": items}))).into_response()
        }
        Err(e) => snapshots(e),
    }
}
