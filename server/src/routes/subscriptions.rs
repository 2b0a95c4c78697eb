//! `/ledger/subscriptions`: durable named subscriptions to the feed and their sinks
//! (webhooks and EventBridge buses: [`super::subscription_sinks`]), admin-authorized like `/admin/*` (the break-glass admin token, or a token with
//! admin rights under `--auth hs256|jwks`).
//!
//! | route | body | does |
//! |---|---|---|
//! | `POST /ledger/subscriptions` | the subscription | creates it (201) |
//! | `GET /ledger/subscriptions` | | lists them, with lag |
//! | `GET /ledger/subscriptions/{name}` | | one, with lag |
//! | `DELETE /ledger/subscriptions/{name}` | | deletes it (204) |
//! | `POST /ledger/subscriptions/{name}/pause` | | stops delivery |
//! | `POST /ledger/subscriptions/{name}/resume` | | delivers again (also after blocked/disabled) |
//! | `POST /ledger/subscriptions/{name}/seek` | `{position}` | moves the checkpoint (`beginning`, `end` or a feed position) |
//! | `POST /ledger/subscriptions/{name}/rotate-secret` | `{secret, graceSeconds?}` | a webhook's new secret; the old one signs too during the grace period |
//! | `GET /ledger/subscriptions/{name}/dead-letters` | | the dead-lettered event ids |
//! | `POST /ledger/subscriptions/{name}/dead-letters/redeliver` | | delivers them again, once each |
//!
//! Secrets are never answered back: views show the current one's first characters only.

// Helpers answer the finished error `Response`: it is built once, on the rare error path.
#![allow(clippy::result_large_err)]

use adledger_engine::feed::{EVENT_TYPES, Position};
use adledger_engine::subscription::{
    FailurePolicy, Sink, Subscription, SubscriptionState, valid_name,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::read_json;
use crate::delivery::{Subscriptions, lag, read_event};
use crate::error::ApiError;
use crate::routes::admin::authorize;
use crate::routes::subscription_sinks;
use crate::state::AppState;
use crate::webhook::{self, Delivery};

/// The subscription routes, to be merged into the application.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ledger/subscriptions", post(create).get(list))
        .route("/ledger/subscriptions/{name}", get(show).delete(remove))
        .route("/ledger/subscriptions/{name}/pause", post(pause))
        .route("/ledger/subscriptions/{name}/resume", post(resume))
        .route("/ledger/subscriptions/{name}/seek", post(seek))
        .route(
            "/ledger/subscriptions/{name}/rotate-secret",
            post(rotate_secret),
        )
        .route(
            "/ledger/subscriptions/{name}/dead-letters",
            get(dead_letters),
        )
        .route(
            "/ledger/subscriptions/{name}/dead-letters/redeliver",
            post(redeliver),
        )
}

/// Authorizes the request and answers the running subscriptions, or the answer to give.
async fn open<'a>(state: &'a AppState, headers: &HeaderMap) -> Result<&'a Subscriptions, Response> {
    authorize(state, headers).await.map_err(|early| *early)?;
    state.subscriptions.as_ref().ok_or_else(|| {
        // Every backend has a store; only an application assembled without one (a
        // router test) gets here.
        ApiError::not_implemented(
            "durable subscriptions are not enabled in this server; use the pull feed \
             `GET /ledger/events`"
                .into(),
        )
        .into_response()
    })
}

fn engine(e: adledger_engine::Error) -> Response {
    ApiError::from_engine(e, false).into_response()
}

fn not_found(name: &str) -> Response {
    ApiError::not_found(format!("no subscription named {name:?}")).into_response()
}

/// The body of `POST /ledger/subscriptions`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRequest {
    name: String,
    #[serde(default)]
    types: Vec<String>,
    publisher_id: Option<String>,
    start: Option<String>,
    sink: Value,
    on_failure: Option<FailurePolicy>,
}

fn parse<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Response> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::malformed_json(e.to_string()).into_response())
}

fn invalid(field: &str, detail: impl Into<String>) -> Response {
    ApiError::invalid_field(field, detail.into()).into_response()
}

/// A start or seek target: `beginning`, `end`, or a feed position (event id or block).
async fn position(subs: &Subscriptions, field: &str, text: &str) -> Result<Position, Response> {
    match text {
        "beginning" => Ok(Position::START),
        "end" => {
            let tip = subs.ledger().read_point().await.map_err(engine)?;
            Ok(Position {
                block: tip,
                index: 0,
            })
        }
        other => Position::parse(other).ok_or_else(|| {
            invalid(
                field,
                "`beginning`, `end`, an event id (`SEQUENCE-INDEX`) or a block sequence",
            )
        }),
    }
}

/// The answer for one subscription: the record without its secret, and its lag.
async fn view(subs: &Subscriptions, sub: &Subscription) -> Result<Value, Response> {
    let (lag_blocks, lag_seconds) = lag(subs, sub).await.map_err(engine)?;
    Ok(json!({
        "name": sub.name,
        "types": sub.types,
        "publisherId": sub.publisher_id,
        "sink": subscription_sinks::view(&sub.sink, chrono::Utc::now().timestamp_millis()),
        "onFailure": sub.on_failure,
        "state": sub.state,
        "checkpoint": sub.checkpoint.token(),
        "lag": {"blocks": lag_blocks, "seconds": lag_seconds},
        "deadLetters": sub.dead_letters.len(),
        "lastError": sub.last_error,
    }))
}

fn respond(status: StatusCode, value: Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// Creates a subscription.
#[utoipa::path(
    post, path = "/ledger/subscriptions", tag = "feed",
    params(("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    request_body(content = Object, content_type = "application/json", description = "`{name, types?, publisherId?, start?: beginning|end|POSITION, sink: {type?: webhook, url, secret: whsec_…, batchSize?, timeoutMs?, retry?: {attempts, initialBackoffMs, maxBackoffMs}} | {type: eventBridge, eventBusName, source?, detailType?, maxEntryBytes?, region?, retry?}, onFailure?: deadLetter|block}` (a sink without `type` is a webhook; `eventBridge` needs a build with the `aws` feature)"),
    responses(
        (status = 201, description = "The subscription, with its lag", body = Object),
        (status = 400, description = "Malformed JSON or an unknown field", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule (named in `field`)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let subs = match open(&state, &headers).await {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    match create_inner(subs, &headers, body).await {
        Ok(response) | Err(response) => response,
    }
}

async fn create_inner(
    subs: &Subscriptions,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let value = read_json(headers, body)
        .await
        .map_err(IntoResponse::into_response)?;
    let request: CreateRequest = parse(value)?;
    if !valid_name(&request.name) {
        return Err(invalid("name", "1 to 64 characters of A-Z a-z 0-9 _ . -"));
    }
    if let Some(unknown) = request
        .types
        .iter()
        .find(|t| !EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(invalid(
            "types",
            format!("unknown event type {unknown:?}; one of {EVENT_TYPES:?}"),
        ));
    }
    let checkpoint = match &request.start {
        Some(text) => position(subs, "start", text).await?,
        None => Position::START,
    };
    let sub = Subscription {
        name: request.name,
        types: request.types,
        publisher_id: request.publisher_id,
        sink: subscription_sinks::sink(request.sink)?,
        state: SubscriptionState::Active,
        on_failure: request.on_failure.unwrap_or_default(),
        checkpoint,
        epoch: 0,
        revision: 0,
        dead_letters: Vec::new(),
        last_error: None,
    };
    if !subs.store.create(&sub).await.map_err(engine)? {
        return Err(ApiError::already_exists(
            "name",
            format!(
                "a subscription named {:?} exists; choose another name, or delete it first",
                sub.name
            ),
        )
        .into_response());
    }
    subs.restart(&sub.name);
    Ok(respond(StatusCode::CREATED, view(subs, &sub).await?))
}

/// Lists the subscriptions.
#[utoipa::path(
    get, path = "/ledger/subscriptions", tag = "feed",
    params(("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    responses(
        (status = 200, description = "`{subscriptions: [...]}`, by name, each with its lag", body = Object),
        (status = 404, description = "The admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let subs = match open(&state, &headers).await {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    let all = match subs.store.list().await {
        Ok(all) => all,
        Err(e) => return engine(e),
    };
    let mut views = Vec::with_capacity(all.len());
    for sub in &all {
        match view(subs, sub).await {
            Ok(v) => views.push(v),
            Err(response) => return response,
        }
    }
    respond(StatusCode::OK, json!({ "subscriptions": views }))
}

/// The subscription `name`, or the answer to give.
async fn find(subs: &Subscriptions, name: &str) -> Result<Subscription, Response> {
    match subs.store.get(name).await {
        Ok(Some(sub)) => Ok(sub),
        Ok(None) => Err(not_found(name)),
        Err(e) => Err(engine(e)),
    }
}

/// Reads, changes and conditionally writes `name`, retrying when a delivery task wrote
/// in between; then restarts its delivery.
async fn change(
    subs: &Subscriptions,
    name: &str,
    edit: impl Fn(&mut Subscription),
) -> Result<Subscription, Response> {
    for _ in 0..20 {
        let mut sub = find(subs, name).await?;
        edit(&mut sub);
        match subs.store.replace(&sub).await {
            Ok(stored) => {
                subs.restart(name);
                return Ok(stored);
            }
            Err(adledger_engine::Error::Conflict { .. }) => continue,
            Err(e) => return Err(engine(e)),
        }
    }
    Err(ApiError::internal().into_response())
}

async fn answer_change(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    edit: impl Fn(&mut Subscription),
) -> Response {
    let subs = match open(state, headers).await {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    let result = async {
        let sub = change(subs, name, edit).await?;
        Ok::<_, Response>(respond(StatusCode::OK, view(subs, &sub).await?))
    }
    .await;
    match result {
        Ok(response) | Err(response) => response,
    }
}

/// One subscription.
#[utoipa::path(
    get, path = "/ledger/subscriptions/{name}", tag = "feed",
    params(("name" = String, Path, description = "The subscription"), ("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    responses(
        (status = 200, description = "The subscription, with its lag", body = Object),
        (status = 404, description = "No such subscription, or the admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let subs = match open(&state, &headers).await {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    let result = async {
        let sub = find(subs, &name).await?;
        Ok::<_, Response>(respond(StatusCode::OK, view(subs, &sub).await?))
    }
    .await;
    match result {
        Ok(response) | Err(response) => response,
    }
}

/// Deletes a subscription (its delivery stops).
#[utoipa::path(
    delete, path = "/ledger/subscriptions/{name}", tag = "feed",
    params(("name" = String, Path, description = "The subscription"), ("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such subscription, or the admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let subs = match open(&state, &headers).await {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    match subs.store.delete(&name).await {
        Ok(true) => {
            subs.restart(&name);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => not_found(&name),
        Err(e) => engine(e),
    }
}

/// Stops delivery.
#[utoipa::path(
    post, path = "/ledger/subscriptions/{name}/pause", tag = "feed",
    params(("name" = String, Path, description = "The subscription"), ("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    responses(
        (status = 200, description = "The subscription, now paused", body = Object),
        (status = 404, description = "No such subscription, or the admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    answer_change(&state, &headers, &name, |sub| {
        sub.state = SubscriptionState::Paused
    })
    .await
}

/// Delivers again: after a pause, a block (the failed event is retried) or a 410.
#[utoipa::path(
    post, path = "/ledger/subscriptions/{name}/resume", tag = "feed",
    params(("name" = String, Path, description = "The subscription"), ("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    responses(
        (status = 200, description = "The subscription, now active", body = Object),
        (status = 404, description = "No such subscription, or the admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    answer_change(&state, &headers, &name, |sub| {
        sub.state = SubscriptionState::Active;
        sub.last_error = None;
    })
    .await
}

/// Moves the checkpoint, backwards (replay) or forwards (skip).
#[utoipa::path(
    post, path = "/ledger/subscriptions/{name}/seek", tag = "feed",
    params(("name" = String, Path, description = "The subscription"), ("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    request_body(content = Object, content_type = "application/json", description = "`{position: beginning|end|EVENT_ID|BLOCK}`: delivery continues after it"),
    responses(
        (status = 200, description = "The subscription at its new checkpoint", body = Object),
        (status = 400, description = "Malformed JSON", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription, or the admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a position", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn seek(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SeekRequest {
        position: String,
    }
    let subs = match open(&state, &headers).await {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    let result = async {
        let value = read_json(&headers, body)
            .await
            .map_err(IntoResponse::into_response)?;
        let request: SeekRequest = parse(value)?;
        let target = position(subs, "position", &request.position).await?;
        let sub = change(subs, &name, |sub| {
            sub.epoch += 1;
            sub.checkpoint = target;
        })
        .await?;
        Ok::<_, Response>(respond(StatusCode::OK, view(subs, &sub).await?))
    }
    .await;
    match result {
        Ok(response) | Err(response) => response,
    }
}

/// The dead-lettered event ids.
#[utoipa::path(
    get, path = "/ledger/subscriptions/{name}/dead-letters", tag = "feed",
    params(("name" = String, Path, description = "The subscription"), ("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    responses(
        (status = 200, description = "`{ids: [...]}`, oldest first (read the events with `GET /ledger/events?after=`)", body = Object),
        (status = 404, description = "No such subscription, or the admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let subs = match open(&state, &headers).await {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    match find(subs, &name).await {
        Ok(sub) => respond(StatusCode::OK, json!({ "ids": sub.dead_letters })),
        Err(response) => response,
    }
}

/// Delivers each dead-lettered event again (with the sink's retries); the delivered ones
/// leave the list.
#[utoipa::path(
    post, path = "/ledger/subscriptions/{name}/dead-letters/redeliver", tag = "feed",
    params(("name" = String, Path, description = "The subscription"), ("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    responses(
        (status = 200, description = "`{redelivered: [ids], failed: [ids]}`", body = Object),
        (status = 404, description = "No such subscription, or the admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn redeliver(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let subs = match open(&state, &headers).await {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    let result = async {
        let sub = find(subs, &name).await?;
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        for id in &sub.dead_letters {
            let event = read_event(subs, id).await.map_err(engine)?;
            let outcome = match (&event, &sub.sink) {
                (Some(event), Sink::Webhook(hook)) => {
                    webhook::deliver(subs.client(), hook, std::slice::from_ref(event)).await
                }
                (Some(event), Sink::EventBridge(bus)) => {
                    crate::eventbridge::redeliver(subs.event_bridge(), bus, event).await
                }
                (None, _) => Delivery::Failed("not in the journal".into()),
            };
            if outcome == Delivery::Acknowledged {
                delivered.push(id.clone());
            } else {
                failed.push(id.clone());
            }
        }
        change(subs, &name, |sub| {
            sub.dead_letters.retain(|id| !delivered.contains(id))
        })
        .await?;
        Ok::<_, Response>(respond(
            StatusCode::OK,
            json!({ "redelivered": delivered, "failed": failed }),
        ))
    }
    .await;
    match result {
        Ok(response) | Err(response) => response,
    }
}

/// Gives a webhook sink a new secret; the current one keeps signing beside it (two
/// signatures per request) until the grace period ends.
#[utoipa::path(
    post, path = "/ledger/subscriptions/{name}/rotate-secret", tag = "feed",
    params(("name" = String, Path, description = "The subscription"), ("Authorization" = Option<String>, Header, description = "`Bearer <admin token>` or a token with admin rights")),
    request_body(content = Object, content_type = "application/json", description = "`{secret: whsec_…, graceSeconds?: 0..604800}` (default 86400): until then requests carry `v1,<new> v1,<previous>`, after it only the new signature"),
    responses(
        (status = 200, description = "The subscription, with `sink.previousSecretUntil` while both secrets sign (no secret is answered)", body = Object),
        (status = 400, description = "Malformed JSON or an unknown field", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription, or the admin routes are disabled", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a `whsec_` secret, the current secret again, a grace period out of bounds, or a sink without a secret (named in `field`)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let subs = match open(&state, &headers).await {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    let result = async {
        let value = read_json(&headers, body)
            .await
            .map_err(IntoResponse::into_response)?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let rotation = subscription_sinks::rotation(value, now_ms)?;
        rotation.check(&find(subs, &name).await?.sink)?;
        let sub = change(subs, &name, |sub| rotation.apply(&mut sub.sink, now_ms)).await?;
        tracing::info!(subscription = %name, "webhook secret rotated");
        Ok::<_, Response>(respond(StatusCode::OK, view(subs, &sub).await?))
    }
    .await;
    match result {
        Ok(response) | Err(response) => response,
    }
}
