//! Where a subscription delivers: a webhook or an EventBridge bus, their retry schedule,
//! and a webhook secret being rotated.
//!
//! Stored records and request bodies written before sinks had a `type` are webhooks: a
//! sink without `type` reads as one, so existing records and clients keep working.
//! (Decoding goes through one flat record with every field optional rather than serde's
//! tagged or untagged enums: those buffer the input, and the workspace's
//! `arbitrary_precision` JSON numbers do not survive the buffer.)

use serde::{Deserialize, Deserializer, Serialize, de::Error as _};

/// Events sent in one webhook request unless the subscription says otherwise.
pub const DEFAULT_BATCH_SIZE: u32 = 1;
/// How long one webhook request may take unless the subscription says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Attempts per delivery (the first one included) unless the subscription says otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 8;
/// EventBridge's limit on one `PutEvents` entry (256 KB), the default `maxEntryBytes`.
pub const DEFAULT_MAX_ENTRY_BYTES: u32 = 256 * 1024;

/// Where a subscription's events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Sink {
    /// A Standard Webhooks endpoint.
    Webhook(WebhookSink),
    /// An Amazon EventBridge event bus (`PutEvents`).
    EventBridge(EventBridgeSink),
}

impl Sink {
    /// The webhook, if this sink is one.
    pub fn webhook(&self) -> Option<&WebhookSink> {
        match self {
            Sink::Webhook(hook) => Some(hook),
            Sink::EventBridge(_) => None,
        }
    }

    /// The webhook, if this sink is one, to change.
    pub fn webhook_mut(&mut self) -> Option<&mut WebhookSink> {
        match self {
            Sink::Webhook(hook) => Some(hook),
            Sink::EventBridge(_) => None,
        }
    }

    /// The sink's `type` as the API spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Sink::Webhook(_) => "webhook",
            Sink::EventBridge(_) => "eventBridge",
        }
    }

    /// The retry schedule of failed deliveries.
    pub fn retry(&self) -> &RetrySchedule {
        match self {
            Sink::Webhook(hook) => &hook.retry,
            Sink::EventBridge(bus) => &bus.retry,
        }
    }
}

impl From<WebhookSink> for Sink {
    fn from(hook: WebhookSink) -> Sink {
        Sink::Webhook(hook)
    }
}

/// A Standard Webhooks endpoint.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSink {
    /// `http://` or `https://` URL events are POSTed to.
    pub url: String,
    /// `whsec_` followed by the base64 key; signs every request.
    pub secret: String,
    /// Events per request: 1 sends one CloudEvent (`application/cloudevents+json`), more
    /// send a batch (`application/cloudevents-batch+json`).
    pub batch_size: u32,
    /// Request timeout in milliseconds.
    pub timeout_ms: u64,
    /// Retries of a failed request.
    pub retry: RetrySchedule,
    /// The secret the last rotation replaced, signing too until its grace period ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url)
            .field("batch_size", &self.batch_size)
            .field("timeout_ms", &self.timeout_ms)
            .field("retry", &self.retry)
            .field("previous_secret", &self.previous_secret)
            .finish_non_exhaustive()
    }
}

/// Exponential backoff with jitter: attempt `n` (from 1) waits a random time in
/// `[d/2, d]` with `d = min(initial * 2^(n-1), max)` before the next one, or the sink's
/// `Retry-After` if that is longer (capped at `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetrySchedule {
    /// Attempts in all, the first one included (at least 1).
    pub attempts: u32,
    /// The first backoff, in milliseconds.
    pub initial_backoff_ms: u64,
    /// The longest backoff, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            attempts: DEFAULT_ATTEMPTS,
            initial_backoff_ms: 500,
            max_backoff_ms: 300_000,
        }
    }
}

/// The secret a rotation replaced: requests carry its signature too until `until_ms`, so
/// receivers can switch to the new secret at their own pace without a gap.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSecret {
    /// The replaced `whsec_` secret.
    pub secret: String,
    /// End of the grace period, in Unix milliseconds.
    pub until_ms: i64,
}

impl std::fmt::Debug for PreviousSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviousSecret")
            .field("until_ms", &self.until_ms)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// The secrets that sign a request sent at `now_ms` (Unix milliseconds): the current
    /// one, then the previous one while its grace period lasts.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some(previous) = &self.previous_secret
            && now_ms < previous.until_ms
        {
            secrets.push(previous.secret.as_str());
        }
        secrets
    }
}

/// An Amazon EventBridge event bus: each event is one `PutEvents` entry whose `Detail`
/// is the CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventBridgeSink {
    /// The bus's name or ARN.
    pub event_bus_name: String,
    /// The entries' `Source`; `None`: the ledger's source (`urn:adledger:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The entries' `DetailType`; `None`: the event's type (`adledger.ad.created`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_type: Option<String>,
    /// Largest entry sent, in bytes as EventBridge counts them (`Time`, `Source`,
    /// `DetailType` and `Detail`); a larger one fails without being sent.
    pub max_entry_bytes: u32,
    /// The region; `None`: the standard AWS chain's (`AWS_REGION`, profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Retries of entries EventBridge failed with `InternalFailure` or
    /// `ThrottlingException`, and of failed calls.
    pub retry: RetrySchedule,
}

/// Every field any sink has, all optional: what a stored sink decodes through.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SinkRecord {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    secret: Option<String>,
    batch_size: Option<u32>,
    timeout_ms: Option<u64>,
    retry: Option<RetrySchedule>,
    previous_secret: Option<PreviousSecret>,
    event_bus_name: Option<String>,
    source: Option<String>,
    detail_type: Option<String>,
    max_entry_bytes: Option<u32>,
    region: Option<String>,
}

impl<'de> Deserialize<'de> for Sink {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sink, D::Error> {
        let record = SinkRecord::deserialize(d)?;
        match record.kind.as_deref() {
            None | Some("webhook") => Ok(Sink::Webhook(WebhookSink {
                url: record.url.ok_or_else(|| D::Error::missing_field("url"))?,
                secret: record
                    .secret
                    .ok_or_else(|| D::Error::missing_field("secret"))?,
                batch_size: record
                    .batch_size
                    .ok_or_else(|| D::Error::missing_field("batchSize"))?,
                timeout_ms: record
                    .timeout_ms
                    .ok_or_else(|| D::Error::missing_field("timeoutMs"))?,
                retry: record
                    .retry
                    .ok_or_else(|| D::Error::missing_field("retry"))?,
                previous_secret: record.previous_secret,
            })),
            Some("eventBridge") => Ok(Sink::EventBridge(EventBridgeSink {
                event_bus_name: record
                    .event_bus_name
                    .ok_or_else(|| D::Error::missing_field("eventBusName"))?,
                source: record.source,
                detail_type: record.detail_type,
                max_entry_bytes: record.max_entry_bytes.unwrap_or(DEFAULT_MAX_ENTRY_BYTES),
                region: record.region,
                retry: record.retry.unwrap_or_default(),
            })),
            Some(other) => Err(D::Error::unknown_variant(
                other,
                &["webhook", "eventBridge"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn hook() -> WebhookSink {
        WebhookSink {
            url: "http://127.0.0.1:9/hook".into(),
            secret: SECRET.into(),
            batch_size: 1,
            timeout_ms: 1000,
            retry: RetrySchedule::default(),
            previous_secret: None,
        }
    }

    #[test]
    fn a_sink_stored_without_type_is_a_webhook() {
        // A record as stored before sinks had a type or a previous secret.
        let stored = r#"{"url":"http://127.0.0.1:9/hook","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","batchSize":1,"timeoutMs":1000,"retry":{"attempts":8,"initialBackoffMs":500,"maxBackoffMs":300000}}"#;
        let sink: Sink = serde_json::from_str(stored).expect("an old record loads");
        assert_eq!(sink, Sink::Webhook(hook()));
    }

    #[test]
    fn sinks_round_trip_with_their_type() {
        let mut rotating = hook();
        rotating.previous_secret = Some(PreviousSecret {
            secret: "whsec_old".into(),
            until_ms: 42,
        });
        let bus = Sink::EventBridge(EventBridgeSink {
            event_bus_name: "ads".into(),
            source: Some("adledger.test".into()),
            detail_type: None,
            max_entry_bytes: 1000,
            region: Some("eu-west-1".into()),
            retry: RetrySchedule::default(),
        });
        for sink in [Sink::Webhook(rotating), bus] {
            let text = serde_json::to_string(&sink).expect("encode");
            assert!(
                text.contains(&format!(r#""type":"{}""#, sink.kind())),
                "{text}"
            );
            let back: Sink = serde_json::from_str(&text).expect("decode");
            assert_eq!(back, sink);
        }
    }

    #[test]
    fn an_event_bridge_sink_takes_defaults_and_an_unknown_type_is_refused() {
        let sink: Sink =
            serde_json::from_str(r#"{"type":"eventBridge","eventBusName":"ads"}"#).expect("decode");
        let Sink::EventBridge(bus) = sink else {
            panic!("not an EventBridge sink: {sink:?}");
        };
        assert_eq!(bus.max_entry_bytes, DEFAULT_MAX_ENTRY_BYTES);
        assert_eq!(bus.retry, RetrySchedule::default());
        assert!(serde_json::from_str::<Sink>(r#"{"type":"kinesis"}"#).is_err());
        assert!(serde_json::from_str::<Sink>(r#"{"type":"eventBridge"}"#).is_err());
    }

    #[test]
    fn the_previous_secret_signs_only_during_its_grace_period() {
        let mut sink = hook();
        assert_eq!(sink.signing_secrets(0), vec![SECRET]);
        sink.previous_secret = Some(PreviousSecret {
            secret: "whsec_old".into(),
            until_ms: 1000,
        });
        assert_eq!(sink.signing_secrets(999), vec![SECRET, "whsec_old"]);
        assert_eq!(sink.signing_secrets(1000), vec![SECRET]);
        assert!(!format!("{sink:?}").contains("whsec_old"), "never in logs");
    }
}
