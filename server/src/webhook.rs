//! Delivering feed events to a Standard Webhooks endpoint: signing, one request, and the
//! retry schedule around it.
//!
//! Each request carries `webhook-id` (the event id; for a batch, the first and last
//! ids joined by `_`), `webhook-timestamp` (Unix seconds) and `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64 bytes
//! after the secret's `whsec_` prefix (<https://www.standardwebhooks.com/>). While a
//! rotated secret's grace period lasts, the header carries two signatures, `v1,<new>
//! v1,<previous>`, so receivers holding either secret verify.

use std::time::Duration;

use adledger_engine::feed::CloudEvent;
use adledger_engine::subscription::{RetrySchedule, WebhookSink};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use rand_core::RngCore;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// The secret's prefix.
pub const SECRET_PREFIX: &str = "whsec_";

/// The key bytes of a `whsec_` secret, or why it is not one.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("a webhook secret starts with `{SECRET_PREFIX}`"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| "the part after `whsec_` must be standard base64".to_string())?;
    if !(24..=64).contains(&key.len()) {
        return Err("the key after `whsec_` must be 24 to 64 bytes".into());
    }
    Ok(key)
}

/// The `webhook-signature` value (`v1,…`) of `body` sent as message `id` at `timestamp`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` value of a request sent at `now_ms`: one `v1,…` signature per
/// secret signing then (the current one, and the previous one during a rotation's grace
/// period), separated by spaces as the specification allows.
pub fn signatures(
    sink: &WebhookSink,
    now_ms: i64,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    sink.signing_secrets(now_ms)
        .into_iter()
        .filter_map(|secret| secret_key(secret).ok())
        .map(|key| sign(&key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A 2xx answer: the events are acknowledged.
    Acknowledged,
    /// 410 Gone: the endpoint asks never to be called again.
    Gone,
    /// Every attempt failed; the last failure, in words.
    Failed(String),
    /// The deliverer was asked to stop between two attempts: nothing is known of the
    /// events, which are delivered again by whoever delivers next.
    Interrupted,
}

/// One attempt's failure.
struct AttemptFailure {
    detail: String,
    retry_after: Option<Duration>,
}

/// The HTTP client webhooks go through (http and https, no redirects: a signed request
/// goes where it was configured to go).
pub fn client() -> Result<reqwest_tls::Client, String> {
    // Fails only when a provider is already installed, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest_tls::Client::builder()
        .redirect(reqwest_tls::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// One request's events, encoded once for all its attempts.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `webhook-id`: the event id, or the first and last ids joined by `_`.
    pub id: String,
    /// One CloudEvent, or a JSON array of them.
    pub body: Bytes,
    /// `application/cloudevents+json` or `application/cloudevents-batch+json`.
    pub content_type: &'static str,
}

impl Outgoing {
    /// `events` as one request; `None` for no event.
    pub fn encode(events: &[CloudEvent]) -> Option<Result<Outgoing, String>> {
        let (first, last) = (events.first()?, events.last()?);
        let jsons = events.iter().map(serde_json::to_vec);
        let encoded: Result<Vec<Vec<u8>>, _> = jsons.collect();
        Some(
            encoded
                .map(|jsons| Outgoing::join(&first.id, &last.id, &jsons))
                .map_err(|e| format!("cannot encode the events: {e}")),
        )
    }

    /// Events already serialized (each a CloudEvent's compact JSON, in order), from
    /// the event with id `first` to the one with id `last`: a batch's body is exactly
    /// what serializing them as one array gives.
    pub fn join<J: AsRef<[u8]>>(first: &str, last: &str, jsons: &[J]) -> Outgoing {
        if let [one] = jsons {
            return Outgoing {
                id: first.to_string(),
                body: Bytes::copy_from_slice(one.as_ref()),
                content_type: "application/cloudevents+json",
            };
        }
        let mut body = Vec::with_capacity(crate::json_array::len(jsons));
        crate::json_array::push(&mut body, jsons);
        Outgoing {
            id: format!("{first}_{last}"),
            body: Bytes::from(body),
            content_type: "application/cloudevents-batch+json",
        }
    }
}

/// Delivers `events` (in order, one request) with the sink's retry schedule.
pub async fn deliver(
    client: &reqwest_tls::Client,
    sink: &WebhookSink,
    events: &[CloudEvent],
) -> Delivery {
    deliver_until(client, sink, events, &CancellationToken::new()).await
}

/// Like [`deliver`], giving up between attempts once `stop` is cancelled (see
/// [`send_until`]).
pub async fn deliver_until(
    client: &reqwest_tls::Client,
    sink: &WebhookSink,
    events: &[CloudEvent],
    stop: &CancellationToken,
) -> Delivery {
    match Outgoing::encode(events) {
        None => Delivery::Acknowledged,
        Some(Ok(outgoing)) => send_until(client, sink, &outgoing, stop).await,
        Some(Err(e)) => Delivery::Failed(e),
    }
}

/// Sends `outgoing` with the sink's retry schedule.
pub async fn send(
    client: &reqwest_tls::Client,
    sink: &WebhookSink,
    outgoing: &Outgoing,
) -> Delivery {
    send_until(client, sink, outgoing, &CancellationToken::new()).await
}

/// Like [`send`], giving up between attempts once `stop` is cancelled
/// ([`Delivery::Interrupted`]): an operator's pause takes effect at once, not after a
/// failing endpoint's retries ran out. An attempt in flight is not cut short, so its
/// answer still counts.
pub async fn send_until(
    client: &reqwest_tls::Client,
    sink: &WebhookSink,
    outgoing: &Outgoing,
    stop: &CancellationToken,
) -> Delivery {
    if let Err(e) = secret_key(&sink.secret) {
        return Delivery::Failed(format!("the sink's secret is unusable: {e}"));
    }
    let id = &outgoing.id;
    let attempts = sink.retry.attempts.max(1);
    let mut last_failure = String::new();
    for attempt in 1..=attempts {
        match attempt_once(client, sink, outgoing).await {
            Ok(delivery) => {
                metrics::counter!("adledger_webhook_requests_total", "outcome" => "ok")
                    .increment(1);
                return delivery;
            }
            Err(failure) => {
                metrics::counter!("adledger_webhook_requests_total", "outcome" => "failed")
                    .increment(1);
                tracing::warn!(url = %sink.url, %id, attempt, detail = %failure.detail, "webhook delivery failed");
                last_failure = failure.detail;
                if attempt < attempts {
                    let wait = backoff(&sink.retry, attempt, failure.retry_after);
                    if stop
                        .run_until_cancelled(tokio::time::sleep(wait))
                        .await
                        .is_none()
                    {
                        return Delivery::Interrupted;
                    }
                }
            }
        }
    }
    Delivery::Failed(format!(
        "{attempts} attempts failed; the last: {last_failure}"
    ))
}

async fn attempt_once(
    client: &reqwest_tls::Client,
    sink: &WebhookSink,
    outgoing: &Outgoing,
) -> Result<Delivery, AttemptFailure> {
    let now = chrono::Utc::now();
    let timestamp = now.timestamp();
    let id = outgoing.id.as_str();
    let signature = signatures(sink, now.timestamp_millis(), id, timestamp, &outgoing.body);
    let response = client
        .post(&sink.url)
        .timeout(Duration::from_millis(sink.timeout_ms.max(1)))
        .header("content-type", outgoing.content_type)
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(outgoing.body.clone())
        .send()
        .await
        .map_err(|e| AttemptFailure {
            detail: if e.is_timeout() {
                format!("no answer within {} ms", sink.timeout_ms)
            } else {
                format!("request failed: {e}")
            },
            retry_after: None,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(Delivery::Acknowledged);
    }
    if status.as_u16() == 410 {
        return Ok(Delivery::Gone);
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, std::time::SystemTime::now()));
    Err(AttemptFailure {
        detail: format!("the endpoint answered {status}"),
        retry_after,
    })
}

/// The wait a `Retry-After` value asks for at `now`: delay-seconds, or an HTTP-date in
/// any of the three forms RFC 9110 §10.2.3 and §5.6.7 require recipients to accept (a
/// date already past asks for no wait); `None` for anything else, which leaves the
/// backoff alone.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait after failed attempt `attempt` (from 1): exponential with jitter in
/// `[d/2, d]`, or `Retry-After` when the sink asked for longer; never over the maximum.
pub fn backoff(schedule: &RetrySchedule, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let max = schedule.max_backoff_ms;
    let exponential = schedule
        .initial_backoff_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(32))
        .min(max);
    let half = exponential / 2;
    let jitter = if half == 0 {
        0
    } else {
        rand_core::OsRng.next_u64() % (half + 1)
    };
    let mut wait = half + jitter;
    if let Some(asked) = retry_after {
        let asked = u64::try_from(asked.as_millis()).unwrap_or(u64::MAX);
        wait = wait.max(asked).min(max);
    }
    Duration::from_millis(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_rotation_signs_with_both_secrets_during_its_grace_period_only() {
        use adledger_engine::subscription::PreviousSecret;
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let mut sink = WebhookSink {
            url: "http://127.0.0.1:9/".into(),
            secret: new.into(),
            batch_size: 1,
            timeout_ms: 1000,
            retry: RetrySchedule::default(),
            previous_secret: Some(PreviousSecret {
                secret: old.into(),
                until_ms: 5000,
            }),
        };
        let signed = |key: &str| sign(&secret_key(key).unwrap(), "id", 7, b"{}");
        assert_eq!(
            signatures(&sink, 4999, "id", 7, b"{}"),
            format!("{} {}", signed(new), signed(old))
        );
        assert_eq!(signatures(&sink, 5000, "id", 7, b"{}"), signed(new));
        sink.previous_secret = None;
        assert_eq!(signatures(&sink, 0, "id", 7, b"{}"), signed(new));
    }

    #[test]
    fn secrets_without_prefix_or_base64_are_refused() {
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(secret_key("whsec_not base64!").is_err());
        assert!(secret_key("whsec_AAAA").is_err(), "too short");
    }

    #[test]
    fn backoff_grows_stays_under_the_maximum_and_honours_retry_after() {
        let schedule = RetrySchedule {
            attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        for attempt in 1..=10 {
            let d = backoff(&schedule, attempt, None).as_millis() as u64;
            let full = (100u64 << (attempt - 1)).min(1000);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d}");
        }
        assert_eq!(
            backoff(&schedule, 1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            backoff(&schedule, 1, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
    }
}
