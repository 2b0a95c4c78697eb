//! `GET /search` (filters and paging) and `GET /?q=` (the seed's search: a bare array
//! of at most 25 ads).
//!
//! Search results have the same shape as every other ad in the API: fields, version and
//! commit time. An index that stores each hit's version and commit time (tantivy, memory)
//! serves the page alone, a consistent snapshot as of the writes the search waited for.
//! For one that does not (OpenSearch), they come from the state store, read after it has
//! caught up with the same writes; a hit deleted between the two reads is then dropped
//! from the page.
//!
//! An index that stores each ad's API JSON (tantivy) answers it per hit, and the page is
//! written around those bytes (`spliced.rs`) without parsing or re-serializing the ads.

use adledger_engine::ad::validate_publisher_id;
use adledger_engine::{Ad, Ledger, SearchAnswer, SearchPage, SearchQuery};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::params::{QueryParams, RawPairs};
use crate::routes::spliced;
use crate::state::AppState;
use crate::views::{AdView, SearchResultsView};

/// Default page size of `/search`.
const DEFAULT_LIMIT: usize = 20;
/// Largest page size of `/search`.
const MAX_LIMIT: usize = 100;
/// Deepest offset a cursor may reach: deep paging costs the index more than it is worth.
const MAX_OFFSET: usize = 10_000;
/// Page size of the seed's `GET /?q=`.
const SEED_LIMIT: usize = 25;
/// Longest free-text query, in characters.
const MAX_QUERY_CHARS: usize = 1_000;
/// Most words in a free-text query: every word is a clause per searched field, and a
/// search cluster refuses queries past its clause limit (OpenSearch: 1,024 by default).
const MAX_QUERY_WORDS: usize = 64;

/// `GET /search?q=&publisherId=&category=&tag=&minPrice=&maxPrice=&limit=&cursor=`.
#[utoipa::path(
    get, path = "/search", tag = "search",
    params(
        ("q" = Option<String>, Query, description = "Free text, at most 1,000 characters", max_length = 1000),
        ("publisherId" = Option<String>, Query, description = "Only this publisher's ads; empty: absent", pattern = "^([A-Za-z0-9_.-]{1,128})?$"),
        ("category" = Option<String>, Query, description = "Exact category"),
        ("tag" = Option<String>, Query, description = "Exact tag"),
        ("minPrice" = Option<String>, Query, description = "Lowest price, inclusive (a decimal number)", pattern = "^(-?[0-9]{1,15}(\\.[0-9]{1,10})?)?$"),
        ("maxPrice" = Option<String>, Query, description = "Highest price, inclusive (a decimal number)", pattern = "^(-?[0-9]{1,15}(\\.[0-9]{1,10})?)?$"),
        ("limit" = Option<u32>, Query, description = "Page size, 1–100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page", pattern = "^([0-9]{1,5})?$"),
    ),
    responses(
        (status = 200, description = "A page of matching ads", body = crate::wire_schema::SearchResults),
        (status = 400, description = "a malformed, unknown or repeated query parameter (`minPrice` above `maxPrice`, a `cursor` past 10,000)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 422, description = "OpenSearch only: a cursor past the first 10,000 hits, or a query over the clause limit", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn search(State(state): State<AppState>, query: RawPairs) -> Result<Response, ApiError> {
    let params = QueryParams::parse(
        query,
        &[
            "q",
            "publisherId",
            "category",
            "tag",
            "minPrice",
            "maxPrice",
            "limit",
            "cursor",
        ],
    )?;
    let text = query_text(&params)?;
    let publisher_id = params.get("publisherId").map(str::to_string);
    if let Some(p) = &publisher_id
        && validate_publisher_id(p).is_err()
    {
        return Err(ApiError::invalid_parameter(
            "publisherId",
            format!(
                "`publisherId` must be 1 to 128 characters of letters, digits, '_', '.' or \
                 '-', got {p:?}"
            ),
        ));
    }
    let min_price = params.decimal("minPrice")?;
    let max_price = params.decimal("maxPrice")?;
    if let (Some(min), Some(max)) = (min_price, max_price)
        && min > max
    {
        return Err(ApiError::invalid_parameter(
            "minPrice",
            format!("`minPrice` ({min}) is above `maxPrice` ({max}); nothing could match"),
        ));
    }
    let limit = params.integer("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)?;
    let offset = cursor_offset(&params)?;
    let query = SearchQuery {
        text,
        publisher_id,
        category: params.get("category").map(str::to_string),
        tag: params.get("tag").map(str::to_string),
        min_price,
        max_price,
        limit,
        offset,
    };
    let answer = state
        .ledger
        .search_for_api(&query)
        .await
        .map_err(|e| ApiError::from_engine(e, false))?;
    let next_cursor = |returned: usize, total: u64| {
        let next = offset + returned;
        (returned > 0 && (next as u64) < total && next <= MAX_OFFSET).then(|| next.to_string())
    };
    match answer {
        SearchAnswer::Json(page) => {
            let next_cursor = next_cursor(page.hits.len(), page.total);
            Ok(spliced::results(
                page.total,
                &page.hits,
                next_cursor.as_deref(),
            ))
        }
        SearchAnswer::Parsed(page) => {
            let returned = page.ads.len();
            let total = page.total;
            let items = with_versions(&state.ledger, page).await?;
            Ok(Json(SearchResultsView {
                total,
                items,
                next_cursor: next_cursor(returned, total),
            })
            .into_response())
        }
    }
}

/// `GET /?q=QUERY`: the seed's search, newest ads first when `q` is empty.
#[utoipa::path(
    get, path = "/", tag = "search",
    params(("q" = Option<String>, Query, description = "Free text (empty: the newest ads)", max_length = 1000)),
    responses(
        (status = 200, description = "At most 25 ads", body = [crate::wire_schema::Ad]),
        (status = 400, description = "a malformed, unknown or repeated query parameter", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn seed_search(
    State(state): State<AppState>,
    query: RawPairs,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query, &["q"])?;
    let query = SearchQuery {
        text: query_text(&params)?,
        limit: SEED_LIMIT,
        ..SearchQuery::default()
    };
    let answer = state
        .ledger
        .search_for_api(&query)
        .await
        .map_err(|e| ApiError::from_engine(e, false))?;
    match answer {
        SearchAnswer::Json(page) => Ok(spliced::array(&page.hits)),
        SearchAnswer::Parsed(page) => {
            let items = with_versions(&state.ledger, page).await?;
            Ok(Json(items).into_response())
        }
    }
}

/// The free text of `q` (empty when absent).
fn query_text(params: &QueryParams) -> Result<String, ApiError> {
    let text = params.get("q").unwrap_or_default();
    let chars = text.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(ApiError::invalid_parameter(
            "q",
            format!("`q` is {chars} characters long; the limit is {MAX_QUERY_CHARS}"),
        ));
    }
    let words = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .count();
    if words > MAX_QUERY_WORDS {
        return Err(ApiError::invalid_parameter(
            "q",
            format!("`q` has {words} words; the limit is {MAX_QUERY_WORDS}"),
        ));
    }
    Ok(text.to_string())
}

/// The offset a `cursor` stands for: the decimal `nextCursor` of the previous page.
fn cursor_offset(params: &QueryParams) -> Result<usize, ApiError> {
    let Some(cursor) = params.get("cursor") else {
        return Ok(0);
    };
    let offset = cursor
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| cursor.parse::<usize>().ok())
        .flatten()
        .filter(|o| *o <= MAX_OFFSET);
    offset.ok_or_else(|| {
        ApiError::invalid_parameter(
            "cursor",
            format!(
                "`cursor` must be the `nextCursor` of the previous page (a number up to \
                 {MAX_OFFSET}), got {cursor:?}; narrow the search to see deeper results"
            ),
        )
    })
}

/// Each hit with its version and commit time: from the index when it stores them, else
/// the current ones from the state store.
async fn with_versions(ledger: &Ledger, page: SearchPage) -> Result<Vec<AdView>, ApiError> {
    let ads = page.ads;
    if let Some(versions) = page.versions
        && versions.len() == ads.len()
    {
        return Ok(ads
            .into_iter()
            .zip(versions)
            .map(|(ad, v)| AdView::new(ad, v.version, &v.updated_at))
            .collect());
    }
    let engine = |e| ApiError::from_engine(e, false);
    // The state store must be as far as the search index was (with several processes,
    // this process's own commits are not the whole journal).
    let point = ledger.read_point().await.map_err(engine)?;
    ledger.wait_for_state(point).await.map_err(engine)?;
    let state = &ledger.ports().state;
    let keys: Vec<_> = ads.iter().map(Ad::key).collect();
    let states = state.get_many(&keys).await.map_err(engine)?;
    Ok(states
        .into_iter()
        .flatten()
        .filter_map(AdView::from_state)
        .collect())
}
