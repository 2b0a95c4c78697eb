//! `/publisher/{publisherId}/ad[/{adId}]`: create, list, read (current, history,
//! as-of), update and delete one publisher's ads.
//!
//! Handlers only translate HTTP to engine calls and back; validation of ad fields lives
//! in the engine (`AdDraft::from_json`, `AdPatch::from_json`) so every way into the
//! ledger enforces the same rules.

use adledger_engine::ad::{is_well_formed_ad_id, validate_publisher_id};
use adledger_engine::{Actor, AdDraft, AdKey, AdPatch, Command, Ledger, Outcome, TimeRange};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::access::Writer;
use crate::body::read_json;
use crate::error::ApiError;
use crate::headers::{
    IDEMPOTENCY_REPLAYED, IfMatch, X_LEDGER_SEQUENCE, etag, idempotency_key, if_none_match_hits,
};
use crate::params::{QueryParams, RawPairs};
use crate::state::AppState;
use crate::views::{AdView, RevisionView};

/// Default page size of a publisher's list.
const DEFAULT_LIST_LIMIT: usize = 100;
/// Largest page size of a publisher's list.
const MAX_LIST_LIMIT: usize = 1000;

/// `POST /publisher/{publisherId}/ad`: 201 with the new ad, `Location` and `ETag`.
#[utoipa::path(
    post, path = "/publisher/{publisherId}/ad", tag = "ads",
    security((), ("bearer" = [])),
    params(
        ("publisherId" = String, Path, description = "1–128 characters of letters, digits, `_`, `.` or `-`", pattern = "^[A-Za-z0-9_.-]{1,128}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–255 visible ASCII characters: a retry with the same key and body returns the same ad (201, `Idempotency-Replayed: true`)", min_length = 1, max_length = 255),
    ),
    request_body(content = crate::wire_schema::NewAd, content_type = "application/json"),
    responses(
        (status = 201, description = "Created (or replayed with the same idempotency key)", body = crate::wire_schema::Ad, headers(
            ("Location" = String, description = "/publisher/{p}/ad/{adId}"),
            ("ETag" = String, description = "`\"0\"`: the version"),
            ("X-Ledger-Sequence" = u64, description = "The journal block of the change"),
            ("Idempotency-Replayed" = String, description = "`true` when answered from an earlier request with the same key"),
        )),
        (status = 400, description = "Malformed JSON or a malformed `Idempotency-Key` header", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received in time", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The journal stayed contended after retries; retry", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not declared as JSON", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid field (`field` names it), an invalid publisher id, or an idempotency key reused with another body", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    Writer(actor): Writer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let publisher_id = match path {
        Ok(Path(p)) => p,
        Err(_) => {
            return Err(ApiError::invalid_field(
                "publisherId",
                "invalid `publisherId`: the path segment is not valid UTF-8 text".into(),
            ));
        }
    };
    validate_publisher_id(&publisher_id).map_err(|e| ApiError::from_engine(e, false))?;
    let idempotency_key = idempotency_key(&headers)?;
    let json = read_json(&headers, body).await?;
    let draft = AdDraft::from_json(&json).map_err(|e| ApiError::from_engine(e, false))?;
    let outcome = execute(
        &state.ledger,
        Command::CreateAd {
            publisher_id,
            draft,
            idempotency_key,
        },
        actor,
        IfMatch::Absent,
    )
    .await?;
    let (version, sequence, replayed) = (outcome.version, outcome.sequence, outcome.replayed);
    let location = outcome
        .ad
        .as_ref()
        .map(|ad| format!("/publisher/{}/ad/{}", ad.publisher_id, ad.ad_id))
        .and_then(|l| HeaderValue::try_from(l).ok())
        .ok_or_else(|| {
            tracing::error!("a create returned no ad, or an id unfit for a header");
            ApiError::internal()
        })?;
    let view = written_view(&state.ledger, outcome).await?;
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::ETAG, etag(version));
    headers.insert(X_LEDGER_SEQUENCE, HeaderValue::from(sequence));
    if replayed {
        headers.insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /publisher/{publisherId}/ad`: a page of live ads ordered by id, with a
/// `Link: <…>; rel="next"` header when more follow.
#[utoipa::path(
    get, path = "/publisher/{publisherId}/ad", tag = "ads",
    params(
        ("publisherId" = String, Path, description = "1–128 characters of letters, digits, `_`, `.` or `-`", pattern = "^[A-Za-z0-9_.-]{1,128}$"),
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "The `cursor` of the previous page's `Link` header (an adId); empty: absent", pattern = "^([0-7][0-9A-HJKMNP-TV-Z]{25})?$"),
    ),
    responses(
        (status = 200, description = "Live ads ordered by adId", body = [crate::wire_schema::Ad], headers(
            ("Link" = String, description = "`</publisher/{p}/ad?limit=N&cursor=C>; rel=\"next\"` when more ads follow"),
        )),
        (status = 400, description = "a malformed, unknown or repeated query parameter", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The publisher id cannot exist", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: RawPairs,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query, &["limit", "cursor"])?;
    let limit = params.integer("limit", 1, MAX_LIST_LIMIT, DEFAULT_LIST_LIMIT)?;
    let cursor = params.get("cursor");
    if let Some(cursor) = cursor
        && !is_well_formed_ad_id(cursor)
    {
        return Err(ApiError::invalid_parameter(
            "cursor",
            format!(
                "`cursor` must be the adId from the previous page's Link header (a \
                 26-character ULID), got {cursor:?}"
            ),
        ));
    }
    let publisher_id = readable_publisher(path)?;
    // One extra row says whether another page follows, without a count query.
    let mut states = state
        .ledger
        .list(&publisher_id, cursor, limit + 1)
        .await
        .map_err(|e| ApiError::from_engine(e, false))?;
    let more = states.len() > limit;
    states.truncate(limit);
    let next_cursor = states.last().map(|s| s.key.ad_id.clone());
    let views: Vec<AdView> = states.into_iter().filter_map(AdView::from_state).collect();
    let mut response = Json(views).into_response();
    if let (true, Some(next)) = (more, next_cursor) {
        let link =
            format!("</publisher/{publisher_id}/ad?limit={limit}&cursor={next}>; rel=\"next\"");
        let link = HeaderValue::try_from(link).map_err(|_| ApiError::internal())?;
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// `GET /publisher/{publisherId}/ad/{adId}`: the current ad (with `ETag`, 304 on a
/// matching `If-None-Match`), every revision (`?versions=true`, optionally `from`/`to`),
/// or the ad as it was at a time (`?asOf=`).
#[utoipa::path(
    get, path = "/publisher/{publisherId}/ad/{adId}", tag = "ads",
    params(
        ("publisherId" = String, Path, description = "1–128 characters of letters, digits, `_`, `.` or `-`", pattern = "^[A-Za-z0-9_.-]{1,128}$"),
        ("adId" = String, Path, description = "The ad's id (a 26-character ULID)", pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
        ("versions" = Option<bool>, Query, description = "`true`: the revisions, oldest first, the delete included, a page at a time (`limit`, `cursor`, `Link`)"),
        ("from" = Option<String>, Query, pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$", description = "With `versions=true`: revisions committed at or after this RFC 3339 time"),
        ("to" = Option<String>, Query, pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$", description = "With `versions=true`: revisions committed at or before this RFC 3339 time"),
        ("limit" = Option<u32>, Query, description = "With `versions=true`: revisions per page, 1–1000 (default 100)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "With `versions=true`: the `cursor` of the previous page's `Link` header (opaque); empty: absent", pattern = "^[0-9]{0,20}$"),
        ("asOf" = Option<String>, Query, pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$", description = "The ad as it was at this RFC 3339 time"),
        ("If-None-Match" = Option<String>, Header, description = "`\"V\"`: 304 if the ad is still at version V"),
    ),
    responses(
        (status = 200, description = "The ad (current or `asOf`), or with `versions=true` an array of revisions", content(
            (crate::wire_schema::AdOrRevisions = "application/json"),
        ), headers(
            ("ETag" = String, description = "`\"V\"`: the current version (not with `versions` or `asOf`)"),
            ("Link" = String, description = "With `versions=true`: `</publisher/{p}/ad/{adId}?versions=true&limit=N&cursor=C>; rel=\"next\"` (with `from`/`to` when given) when more revisions follow"),
        )),
        (status = 304, description = "Not modified: the ad is at the version of `If-None-Match`", headers(("ETag" = String))),
        (status = 400, description = "a malformed, unknown or repeated query parameter (`from`/`to`/`limit`/`cursor` without `versions=true`, `asOf` with it, a time that is not RFC 3339)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown ad, another publisher's ad, or `asOf` before the ad existed", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 410, description = "The ad was deleted (by `asOf`)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: RawPairs,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(
        query,
        &["versions", "asOf", "from", "to", "limit", "cursor"],
    )?;
    let versions = params.flag("versions")?;
    if !versions
        && let Some(name) = ["limit", "cursor"]
            .into_iter()
            .find(|n| params.get(n).is_some())
    {
        return Err(ApiError::invalid_parameter(
            name,
            format!("`{name}` pages a history; use it with versions=true"),
        ));
    }
    let limit = params.integer("limit", 1, MAX_LIST_LIMIT, DEFAULT_LIST_LIMIT)?;
    let cursor = version_cursor(params.get("cursor"))?;
    let as_of = params.time("asOf")?;
    let range = TimeRange {
        from: params.time("from")?,
        to: params.time("to")?,
    };
    if !versions && range != TimeRange::default() {
        let name = if range.from.is_some() { "from" } else { "to" };
        return Err(ApiError::invalid_parameter(
            name,
            format!("`{name}` restricts a history; use it with versions=true"),
        ));
    }
    if versions && as_of.is_some() {
        return Err(ApiError::invalid_parameter(
            "asOf",
            "`asOf` reads one past state and `versions=true` lists every revision; use one".into(),
        ));
    }
    let key = readable_key(path)?;
    let engine = |e| ApiError::from_engine(e, false);

    if versions {
        let page = state
            .ledger
            .history_page(&key, range, cursor, limit)
            .await
            .map_err(engine)?;
        let next = page.revisions.last().map(|r| r.version());
        let views: Vec<RevisionView> = page.revisions.into_iter().map(RevisionView::from).collect();
        let mut response = Json(views).into_response();
        if let (true, Some(next)) = (page.more, next) {
            let link = HeaderValue::try_from(versions_link(&key, range, limit, next))
                .map_err(|_| ApiError::internal())?;
            response.headers_mut().insert(header::LINK, link);
        }
        return Ok(response);
    }
    if let Some(at) = as_of {
        let revision = state.ledger.as_of(&key, at).await.map_err(engine)?;
        let view = AdView::from_revision(revision).ok_or_else(|| {
            tracing::error!("as_of returned a delete revision");
            ApiError::internal()
        })?;
        return Ok(Json(view).into_response());
    }

    let current = state.ledger.get(&key).await.map_err(engine)?;
    let version = current.version;
    if if_none_match_hits(&headers, version) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(header::ETAG, etag(version));
        return Ok(response);
    }
    let view = AdView::from_state(current).ok_or_else(|| {
        tracing::error!("get returned a tombstone");
        ApiError::internal()
    })?;
    let mut response = Json(view).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    Ok(response)
}

/// `PATCH /publisher/{publisherId}/ad/{adId}`: partial update, `If-Match` honoured.
#[utoipa::path(
    patch, path = "/publisher/{publisherId}/ad/{adId}", tag = "ads",
    security((), ("bearer" = [])),
    params(
        ("publisherId" = String, Path, description = "1–128 characters of letters, digits, `_`, `.` or `-`", pattern = "^[A-Za-z0-9_.-]{1,128}$"),
        ("adId" = String, Path, description = "The ad's id (a 26-character ULID)", pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,19}\"|[0-9]{1,19})$", description = "`\"V\"`: update only if the ad is at version V (else 412)"),
    ),
    request_body(content = crate::wire_schema::AdChanges, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated ad (unchanged, and nothing appended, when the patch changes nothing)", body = crate::wire_schema::Ad, headers(
            ("ETag" = String, description = "`\"V\"`: the new version"),
            ("X-Ledger-Sequence" = u64, description = "The journal block of the change"),
        )),
        (status = 400, description = "Malformed JSON or a malformed `If-Match` header", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown ad or another publisher's", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received in time", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The journal stayed contended after retries; retry", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 410, description = "The ad was deleted", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names a version the ad is no longer at", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not declared as JSON", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid field (`field` names it)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    Writer(actor): Writer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = readable_key(path)?;
    let if_match = IfMatch::from_headers(&headers)?;
    let json = read_json(&headers, body).await?;
    let patch = AdPatch::from_json(&json).map_err(|e| ApiError::from_engine(e, false))?;
    let outcome = execute(
        &state.ledger,
        Command::UpdateAd {
            key,
            patch,
            expected_version: if_match.expected_version(),
        },
        actor,
        if_match,
    )
    .await?;
    let version = outcome.version;
    let sequence = outcome.sequence;
    let view = written_view(&state.ledger, outcome).await?;
    let mut response = Json(view).into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(version));
    headers.insert(X_LEDGER_SEQUENCE, HeaderValue::from(sequence));
    Ok(response)
}

/// `DELETE /publisher/{publisherId}/ad/{adId}`: 204; the history stays readable.
#[utoipa::path(
    delete, path = "/publisher/{publisherId}/ad/{adId}", tag = "ads",
    security((), ("bearer" = [])),
    params(
        ("publisherId" = String, Path, description = "1–128 characters of letters, digits, `_`, `.` or `-`", pattern = "^[A-Za-z0-9_.-]{1,128}$"),
        ("adId" = String, Path, description = "The ad's id (a 26-character ULID)", pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,19}\"|[0-9]{1,19})$", description = "`\"V\"`: delete only if the ad is at version V (else 412)"),
    ),
    responses(
        (status = 204, description = "Deleted; the history stays readable", headers(
            ("X-Ledger-Sequence" = u64, description = "The journal block of the change"),
        )),
        (status = 400, description = "A malformed `If-Match` header", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown ad or another publisher's", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The journal stayed contended after retries; retry", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 410, description = "The ad was already deleted", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names a version the ad is no longer at", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    Writer(actor): Writer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = readable_key(path)?;
    let if_match = IfMatch::from_headers(&headers)?;
    let outcome = execute(
        &state.ledger,
        Command::DeleteAd {
            key,
            expected_version: if_match.expected_version(),
        },
        actor,
        if_match,
    )
    .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(X_LEDGER_SEQUENCE, HeaderValue::from(outcome.sequence));
    Ok(response)
}

/// Commits a command for its caller, mapping a version conflict to 412 when `If-Match`
/// caused it.
async fn execute(
    ledger: &Ledger,
    command: Command,
    actor: Option<Actor>,
    if_match: IfMatch,
) -> Result<Outcome, ApiError> {
    ledger
        .execute_as(command, actor)
        .await
        .map_err(|e| ApiError::from_engine(e, if_match.given()))
}

/// The `cursor` of a history page: the last version of the previous page.
fn version_cursor(cursor: Option<&str>) -> Result<Option<u64>, ApiError> {
    cursor
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::invalid_parameter(
                    "cursor",
                    format!(
                        "`cursor` must be the value from the previous page's Link header, got {c:?}"
                    ),
                )
            })
        })
        .transpose()
}

/// The `Link` target of the next history page: the same query, after version `last`.
/// Times are written in UTC with every digit they have, so the range is exactly the same.
fn versions_link(key: &AdKey, range: TimeRange, limit: usize, last: u64) -> String {
    let mut target = format!(
        "/publisher/{}/ad/{}?versions=true&limit={limit}&cursor={last}",
        key.publisher_id, key.ad_id
    );
    for (name, time) in [("from", range.from), ("to", range.to)] {
        if let Some(t) = time {
            let text = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            target.push_str(&format!("&{name}={text}"));
        }
    }
    format!("<{target}>; rel=\"next\"")
}

/// The ad a write left behind, with the commit time of its version.
///
/// A write that appended a revision carries its time. A create answered from its
/// idempotency record, or an update that changed nothing, appended nothing: the
/// revision it answers with is read from its block (one block read, whatever the
/// ad's history).
async fn written_view(ledger: &Ledger, outcome: Outcome) -> Result<AdView, ApiError> {
    let Some(ad) = outcome.ad else {
        tracing::error!("a write that keeps the ad returned no ad");
        return Err(ApiError::internal());
    };
    let updated_at = match outcome.revision {
        Some(revision) => revision.body.metadata.tx_time,
        None => {
            ledger
                .revision(&ad.key(), outcome.version, outcome.sequence)
                .await
                .map_err(|e| ApiError::from_engine(e, false))?
                .body
                .metadata
                .tx_time
        }
    };
    Ok(AdView::new(ad, outcome.version, &updated_at))
}

/// The publisher of a read: a path that cannot name a publisher names no resource (404).
fn readable_publisher(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match path {
        Ok(Path(publisher_id)) if validate_publisher_id(&publisher_id).is_ok() => Ok(publisher_id),
        Ok(Path(publisher_id)) => Err(ApiError::not_found(format!(
            "publisher {publisher_id:?} cannot exist: publisher ids are 1 to 128 characters of \
             letters, digits, '_', '.' or '-'"
        ))),
        Err(_) => Err(ApiError::not_found(
            "the publisher id in the path is not valid UTF-8 text".into(),
        )),
    }
}

/// The ad named by a path; 404 when either segment cannot name an ad, without asking
/// the storage.
fn readable_key(path: Result<Path<(String, String)>, PathRejection>) -> Result<AdKey, ApiError> {
    let Ok(Path((publisher_id, ad_id))) = path else {
        return Err(ApiError::not_found(
            "the ad path is not valid UTF-8 text".into(),
        ));
    };
    let publisher_id = readable_publisher(Ok(Path(publisher_id)))?;
    if !is_well_formed_ad_id(&ad_id) {
        return Err(ApiError::not_found(format!(
            "ad {ad_id:?} not found: ad ids are 26-character ULIDs assigned by the server"
        )));
    }
    Ok(AdKey::new(publisher_id, ad_id))
}
