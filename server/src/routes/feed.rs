//! `GET /ledger/events`: the ledger feed, pulled a page at a time, with long-polling.
//!
//! # The response
//!
//! The body is a CloudEvents batch (`application/cloudevents-batch+json`: a JSON array of
//! structured events, possibly empty). Two headers say where the reader stands:
//!
//! - `Feed-Position`: the `after` to send next. It moves past blocks the filter dropped,
//!   so a sparse filter never makes a reader scan the same blocks again. Absent only
//!   while the journal is empty and no `after` was given.
//! - `Feed-At-Tip`: `true` when the page reached the end of the journal as it was when
//!   read; `false` means more is there already, ask again at once.
//!
//! Headers rather than an envelope, so the body stays a plain CloudEvents batch any
//! CloudEvents library reads.

use std::time::Duration;

use adledger_engine::Result as EngineResult;
use adledger_engine::ad::validate_publisher_id;
use adledger_engine::feed::{EVENT_TYPES, FeedFilter, FeedOptions, FeedPage, Position};
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::params::{QueryParams, RawPairs};
use crate::state::AppState;

/// The media type of a page.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// The header naming the `after` of the next page.
pub const POSITION_HEADER: HeaderName = HeaderName::from_static("feed-position");
/// The header saying whether the page reached the journal's end.
pub const AT_TIP_HEADER: HeaderName = HeaderName::from_static("feed-at-tip");
/// Default page size.
const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
const MAX_LIMIT: usize = 1000;

/// Where to read from and what to keep: the parameters both feed routes share.
#[derive(Debug, Clone)]
pub struct FeedRequest {
    /// The position to read after.
    pub after: Position,
    /// Which events to keep.
    pub filter: FeedFilter,
}

impl FeedRequest {
    /// `after`, `type` (comma-separated) and `publisherId`, each refused with a 400
    /// naming it when malformed.
    pub fn parse(params: &QueryParams) -> Result<FeedRequest, ApiError> {
        let after = match params.get("after") {
            None => Position::START,
            Some(text) => parse_position("after", text)?,
        };
        let mut types = Vec::new();
        if let Some(list) = params.get("type") {
            for name in list.split(',') {
                if !EVENT_TYPES.contains(&name) {
                    return Err(ApiError::invalid_parameter(
                        "type",
                        format!(
                            "unknown event type {name:?}; the feed's types are {}",
                            EVENT_TYPES.join(", ")
                        ),
                    ));
                }
                types.push(name.to_string());
            }
        }
        let publisher_id = match params.get("publisherId") {
            None => None,
            Some(p) => {
                validate_publisher_id(p).map_err(|_| {
                    ApiError::invalid_parameter(
                        "publisherId",
                        "`publisherId` must be 1–128 characters of letters, digits, `_`, `.` \
                         or `-`"
                            .into(),
                    )
                })?;
                Some(p.to_string())
            }
        };
        Ok(FeedRequest {
            after,
            filter: FeedFilter {
                types,
                publisher_id,
            },
        })
    }
}

/// A position from its text form, or a 400 naming `name`.
pub fn parse_position(name: &str, text: &str) -> Result<Position, ApiError> {
    Position::parse(text).ok_or_else(|| {
        ApiError::invalid_parameter(
            name,
            format!(
                "`{name}` must be an event id such as 00000000000000000041-0000 (resume after \
                 that event) or a block sequence such as 41 (resume after that block), got \
                 {text:?}"
            ),
        )
    })
}

/// `GET /ledger/events?after=POSITION&limit=N[&wait=MS][&type=T,…][&publisherId=P]`.
#[utoipa::path(
    get, path = "/ledger/events", tag = "feed",
    params(
        ("after" = Option<String>, Query, description = "Resume after this position: an event id (`00000000000000000041-0000`) or a block sequence (`41`); absent: from the first event"),
        ("limit" = Option<usize>, Query, description = "Most events in the page, 1–1000 (default 100); a page never splits a block, so it may hold a block's few remaining events more", minimum = 1, maximum = 1000),
        ("wait" = Option<u64>, Query, description = "Milliseconds to wait for a new event when there is none yet (long-poll); 0 (default) answers at once; at most `feed.max_wait`"),
        ("type" = Option<String>, Query, description = "Only these event types, comma-separated: adledger.ad.created, adledger.ad.updated, adledger.ad.deleted, adledger.ledger.digest"),
        ("publisherId" = Option<String>, Query, description = "Only this publisher's ad events (digest events are dropped)"),
    ),
    responses(
        (status = 200, description = "A CloudEvents batch (JSON array of events, possibly empty)", body = Vec<crate::wire_schema::FeedEvent>, content_type = "application/cloudevents-batch+json",
            headers(
                ("Feed-Position" = String, description = "The `after` of the next page (moves past filtered-out blocks too)"),
                ("Feed-At-Tip" = bool, description = "Whether the page reached the end of the journal"),
            )),
        (status = 400, description = "A malformed, unknown or repeated parameter, or an `after` past the end of the journal", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn events(State(state): State<AppState>, query: RawPairs) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query, &["after", "limit", "wait", "type", "publisherId"])?;
    let request = FeedRequest::parse(&params)?;
    let limit = params.integer("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)?;
    let max_wait = state.feed.max_wait.get();
    let max_ms = usize::try_from(max_wait.as_millis()).unwrap_or(usize::MAX);
    let wait = params.integer("wait", 0, max_ms, 0)?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait as u64);
    let options = state.feed.options();
    let engine = |e| ApiError::from_engine(e, false);
    let mut after = request.after;
    let page = loop {
        let tip = state.ledger.read_point().await.map_err(engine)?;
        if after.block > tip {
            return Err(past_the_end("after", tip));
        }
        let page = read(&state, &options, &request.filter, after, limit, tip)
            .await
            .map_err(engine)?;
        if !page.events.is_empty() || !page.at_tip() || tokio::time::Instant::now() >= deadline {
            break page;
        }
        after = page.next;
        state
            .ledger
            .wait_for_block(tip, deadline)
            .await
            .map_err(engine)?;
    };
    batch_response(&page)
}

/// One page, or an empty one at the tip of an empty journal.
pub async fn read(
    state: &AppState,
    options: &FeedOptions,
    filter: &FeedFilter,
    after: Position,
    limit: usize,
    tip: u64,
) -> EngineResult<FeedPage> {
    crate::feed_pages::read(
        &state.ledger,
        &state.feed_source,
        options,
        filter,
        after,
        limit,
        tip,
    )
    .await
}

/// A 400 for a position the journal has not reached.
pub fn past_the_end(name: &str, tip: u64) -> ApiError {
    let holds = match tip {
        0 => "is empty".to_string(),
        n => format!("holds blocks 0 to {}", n - 1),
    };
    ApiError::invalid_parameter(
        name,
        format!(
            "`{name}` is past the end of the journal, which {holds}; resume from a position \
             this ledger gave you"
        ),
    )
}

fn batch_response(page: &FeedPage) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(&page.events).map_err(|error| {
        tracing::error!(%error, "cannot serialize a feed page");
        ApiError::internal()
    })?;
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(BATCH_CONTENT_TYPE),
        )],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(token) = page.next.token()
        && let Ok(value) = HeaderValue::from_str(&token)
    {
        headers.insert(POSITION_HEADER, value);
    }
    headers.insert(
        AT_TIP_HEADER,
        HeaderValue::from_static(if page.at_tip() { "true" } else { "false" }),
    );
    Ok(response)
}
