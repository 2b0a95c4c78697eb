//! The `sink` of a subscription over HTTP: reading and checking a webhook or an EventBridge
//! sink from a request, a webhook secret rotation, and the sink as answered (never a
//! secret: the current one's first characters only, the previous one not at all).
//!
//! A `sink` without `type` is a webhook, as before sinks had types.

// Helpers answer the finished error `Response`: it is built once, on the rare error path.
#![allow(clippy::result_large_err)]

use adledger_engine::subscription::{
    DEFAULT_BATCH_SIZE, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_TIMEOUT_MS, EventBridgeSink,
    PreviousSecret, RetrySchedule, Sink, WebhookSink,
};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::webhook;

/// Grace period of a rotated secret unless the request says otherwise: a day, as
/// receivers commonly need to roll out a new secret.
pub const DEFAULT_GRACE_SECONDS: u64 = 86_400;
/// Longest grace period: a week.
pub const MAX_GRACE_SECONDS: u64 = 604_800;
/// Largest `maxEntryBytes`: 1 MiB (EventBridge's own limit is 256 KB, the default).
pub const MAX_ENTRY_BYTES_LIMIT: u32 = 1024 * 1024;

fn invalid(field: &str, detail: impl Into<String>) -> Response {
    ApiError::invalid_field(field, detail.into()).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(field: &str, value: Value) -> Result<T, Response> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::malformed_json(format!("{field}: {e}")).into_response())
}

/// A webhook sink as a request gives it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookRequest {
    #[serde(rename = "type")]
    _kind: Option<String>,
    url: String,
    secret: String,
    batch_size: Option<u32>,
    timeout_ms: Option<u64>,
    retry: Option<RetrySchedule>,
}

/// An EventBridge sink as a request gives it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventBridgeRequest {
    #[serde(rename = "type")]
    _kind: Option<String>,
    event_bus_name: String,
    source: Option<String>,
    detail_type: Option<String>,
    max_entry_bytes: Option<u32>,
    region: Option<String>,
    retry: Option<RetrySchedule>,
}

/// The sink of a create request: `type` `webhook` (or none) or `eventBridge`.
pub fn sink(value: Value) -> Result<Sink, Response> {
    let kind = match value.get("type") {
        None | Some(Value::Null) => "webhook".to_string(),
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => return Err(invalid("sink.type", "`webhook` or `eventBridge`")),
    };
    match kind.as_str() {
        "webhook" => webhook_sink(parse("sink", value)?).map(Sink::Webhook),
        "eventBridge" => event_bridge_sink(parse("sink", value)?).map(Sink::EventBridge),
        other => Err(invalid(
            "sink.type",
            format!("unknown sink type {other:?}: `webhook` or `eventBridge`"),
        )),
    }
}

fn retry(request: Option<RetrySchedule>) -> Result<RetrySchedule, Response> {
    let retry = request.unwrap_or_default();
    if !(1..=100).contains(&retry.attempts) {
        return Err(invalid("sink.retry.attempts", "1 to 100"));
    }
    if retry.initial_backoff_ms > retry.max_backoff_ms || retry.max_backoff_ms > 86_400_000 {
        return Err(invalid(
            "sink.retry",
            "initialBackoffMs ≤ maxBackoffMs ≤ 86400000",
        ));
    }
    Ok(retry)
}

fn webhook_sink(request: WebhookRequest) -> Result<WebhookSink, Response> {
    let url = reqwest_tls::Url::parse(&request.url)
        .map_err(|e| invalid("sink.url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            "sink.url",
            "an http:// or https:// URL with a host",
        ));
    }
    webhook::secret_key(&request.secret).map_err(|e| invalid("sink.secret", e))?;
    let batch_size = request.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    if !(1..=1000).contains(&batch_size) {
        return Err(invalid("sink.batchSize", "1 to 1000"));
    }
    let timeout_ms = request.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=300_000).contains(&timeout_ms) {
        return Err(invalid("sink.timeoutMs", "1 to 300000 milliseconds"));
    }
    Ok(WebhookSink {
        url: request.url,
        secret: request.secret,
        batch_size,
        timeout_ms,
        retry: retry(request.retry)?,
        previous_secret: None,
    })
}

/// Whether `text` is 1 to `max` characters, all of them printable ASCII.
fn printable(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

fn event_bridge_sink(request: EventBridgeRequest) -> Result<EventBridgeSink, Response> {
    if !crate::eventbridge::SUPPORTED {
        return Err(invalid("sink.type", crate::eventbridge::NOT_BUILT));
    }
    let bus = &request.event_bus_name;
    if !(1..=1600).contains(&bus.len())
        || !bus
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b':'))
    {
        return Err(invalid(
            "sink.eventBusName",
            "a bus name or ARN: 1 to 1600 characters of A-Z a-z 0-9 / . - _ :",
        ));
    }
    if let Some(source) = &request.source
        && (!printable(source, 256) || source.starts_with("aws."))
    {
        return Err(invalid(
            "sink.source",
            "1 to 256 printable characters, not starting with `aws.` (reserved by AWS)",
        ));
    }
    if let Some(detail_type) = &request.detail_type
        && !printable(detail_type, 128)
    {
        return Err(invalid("sink.detailType", "1 to 128 printable characters"));
    }
    let max_entry_bytes = request.max_entry_bytes.unwrap_or(DEFAULT_MAX_ENTRY_BYTES);
    if !(1..=MAX_ENTRY_BYTES_LIMIT).contains(&max_entry_bytes) {
        return Err(invalid(
            "sink.maxEntryBytes",
            format!(
                "1 to {MAX_ENTRY_BYTES_LIMIT} bytes (EventBridge's limit: {DEFAULT_MAX_ENTRY_BYTES})"
            ),
        ));
    }
    if let Some(region) = &request.region
        && !((1..=50).contains(&region.len())
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        return Err(invalid("sink.region", "an AWS region such as `eu-west-1`"));
    }
    Ok(EventBridgeSink {
        event_bus_name: request.event_bus_name,
        source: request.source,
        detail_type: request.detail_type,
        max_entry_bytes,
        region: request.region,
        retry: retry(request.retry)?,
    })
}

/// The body of `POST /ledger/subscriptions/{name}/rotate-secret`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateRequest {
    secret: String,
    grace_seconds: Option<u64>,
}

/// A checked rotation: the new secret, and until when the current one keeps signing.
#[derive(Clone)]
pub struct Rotation {
    secret: String,
    until_ms: i64,
}

/// Checks a rotation request made at `now_ms` (Unix milliseconds).
pub fn rotation(value: Value, now_ms: i64) -> Result<Rotation, Response> {
    let request: RotateRequest = parse("body", value)?;
    webhook::secret_key(&request.secret).map_err(|e| invalid("secret", e))?;
    let grace = request.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if grace > MAX_GRACE_SECONDS {
        return Err(invalid(
            "graceSeconds",
            format!("0 to {MAX_GRACE_SECONDS} seconds (a week)"),
        ));
    }
    let grace_ms = i64::try_from(grace).unwrap_or(0).saturating_mul(1000);
    Ok(Rotation {
        secret: request.secret,
        until_ms: now_ms.saturating_add(grace_ms),
    })
}

impl Rotation {
    /// Whether `sink` can take this rotation, or the answer to give.
    pub fn check(&self, sink: &Sink) -> Result<(), Response> {
        match sink {
            Sink::Webhook(hook) if hook.secret == self.secret => Err(invalid(
                "secret",
                "the new secret is the current one: generate a new one",
            )),
            Sink::Webhook(_) => Ok(()),
            Sink::EventBridge(_) => Err(invalid(
                "secret",
                "this subscription's sink is an EventBridge bus, which has no secret",
            )),
        }
    }

    /// Applies the rotation: the new secret signs from now on, the current one too
    /// until the grace period ends (a grace of 0 drops it at once, as does a later
    /// rotation: only the last replaced secret keeps signing).
    pub fn apply(&self, sink: &mut Sink, now_ms: i64) {
        if let Sink::Webhook(hook) = sink {
            let current = std::mem::replace(&mut hook.secret, self.secret.clone());
            hook.previous_secret = (self.until_ms > now_ms).then_some(PreviousSecret {
                secret: current,
                until_ms: self.until_ms,
            });
        }
    }
}

/// The sink as answered: no secret, the current one's first characters only.
pub fn view(sink: &Sink, now_ms: i64) -> Value {
    match sink {
        Sink::Webhook(hook) => {
            let secret_hint: String = hook.secret.chars().take(10).collect();
            let previous_until = hook
                .previous_secret
                .as_ref()
                .filter(|p| p.until_ms > now_ms)
                .and_then(|p| chrono::DateTime::from_timestamp_millis(p.until_ms))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            json!({
                "type": "webhook",
                "url": hook.url,
                "secret": format!("{secret_hint}…"),
                "previousSecretUntil": previous_until,
                "batchSize": hook.batch_size,
                "timeoutMs": hook.timeout_ms,
                "retry": hook.retry,
            })
        }
        Sink::EventBridge(bus) => json!({
            "type": "eventBridge",
            "eventBusName": bus.event_bus_name,
            "source": bus.source,
            "detailType": bus.detail_type,
            "maxEntryBytes": bus.max_entry_bytes,
            "region": bus.region,
            "retry": bus.retry,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_c2VjcmV0LXJvdGF0aW9uLW5ldy1rZXktMDEyMzQ1";
    const NEWER: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    /// The status and the `field` of an error answer.
    fn field(response: Response) -> (u16, String) {
        let field = response
            .extensions()
            .get::<crate::error::Problem>()
            .and_then(|p| p.field.clone())
            .unwrap_or_default();
        (response.status().as_u16(), field)
    }

    #[test]
    fn an_event_bridge_sink_needs_the_aws_build() {
        let result = sink(json!({"type": "eventBridge", "eventBusName": "ads"}));
        if crate::eventbridge::SUPPORTED {
            let Ok(Sink::EventBridge(bus)) = result else {
                panic!("an EventBridge sink");
            };
            assert_eq!(bus.max_entry_bytes, DEFAULT_MAX_ENTRY_BYTES);
        } else {
            let Err(response) = result else {
                panic!("refused without the aws feature");
            };
            assert_eq!(field(response), (422, "sink.type".to_string()));
        }
    }

    #[test]
    fn a_sink_without_type_is_a_webhook() {
        let Ok(Sink::Webhook(hook)) = sink(json!({"url": "http://127.0.0.1:9/", "secret": OLD}))
        else {
            panic!("a webhook");
        };
        assert_eq!(hook.batch_size, DEFAULT_BATCH_SIZE);
        assert!(sink(json!({"type": 3})).is_err());
    }

    #[test]
    fn rotations_keep_only_the_last_replaced_secret_for_the_grace_period() {
        let mut sink = sink(json!({"url": "http://127.0.0.1:9/", "secret": OLD})).expect("sink");
        let rotation = rotation(json!({"secret": NEW, "graceSeconds": 10}), 1_000).expect("ok");
        rotation
            .check(&sink)
            .expect("a webhook with another secret");
        rotation.apply(&mut sink, 1_000);
        let hook = sink.webhook().expect("a webhook");
        assert_eq!(hook.secret, NEW);
        assert_eq!(hook.signing_secrets(10_999), vec![NEW, OLD]);
        assert_eq!(hook.signing_secrets(11_000), vec![NEW]);
        assert!(view(&sink, 5_000)["previousSecretUntil"].is_string());
        assert!(view(&sink, 11_000)["previousSecretUntil"].is_null());
        assert!(!view(&sink, 5_000).to_string().contains(&OLD[6..]));

        // Again within the grace period: the oldest secret stops signing at once.
        let again = rotation_at(NEWER, 0, 2_000);
        again.apply(&mut sink, 2_000);
        let hook = sink.webhook().expect("a webhook");
        assert_eq!(hook.signing_secrets(2_000), vec![NEWER]);
        assert_eq!(hook.previous_secret, None, "a grace of 0 keeps nothing");
        assert!(
            rotation_at(NEWER, 5, 3_000).check(&sink).is_err(),
            "the current one again"
        );
    }

    fn rotation_at(secret: &str, grace: u64, now_ms: i64) -> Rotation {
        rotation(json!({"secret": secret, "graceSeconds": grace}), now_ms).expect("a rotation")
    }

    #[test]
    fn bad_rotations_name_their_field() {
        let refused = |body: Value| match rotation(body, 0) {
            Err(response) => field(response),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(refused(json!({"secret": "nope"})), (422, "secret".into()));
        assert_eq!(
            refused(json!({"secret": NEW, "graceSeconds": 604_801})),
            (422, "graceSeconds".into())
        );
        assert_eq!(refused(json!({"secret": NEW, "extra": 1})).0, 400);
    }
}
