//! The EventBridge client of the `aws` build: one per region, made on first use from the
//! standard AWS chain (environment, shared config and credentials files, web identity,
//! container and instance metadata), so `AWS_ENDPOINT_URL_EVENTBRIDGE` (or
//! `AWS_ENDPOINT_URL`) points it at an emulator such as moto.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use adledger_engine::subscription::EventBridgeSink;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_eventbridge::config::Region;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use tokio::sync::Mutex;

use super::{Answer, Entry, PutEvents};

/// How long one `PutEvents` attempt may take (the SDK's own retries included: the
/// whole operation).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// EventBridge clients by region (`None`: the chain's region), shared by every delivery.
#[derive(Debug, Clone, Default)]
pub struct Clients {
    by_region: Arc<Mutex<HashMap<Option<String>, aws_sdk_eventbridge::Client>>>,
}

impl Clients {
    /// The client for `sink`'s region, made on first use.
    pub async fn connect(&self, sink: &EventBridgeSink) -> Result<SdkPutEvents, String> {
        let mut clients = self.by_region.lock().await;
        if let Some(client) = clients.get(&sink.region) {
            return Ok(SdkPutEvents(client.clone()));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(adledger_aws::client::http_client())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(region) = &sink.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let client = aws_sdk_eventbridge::Client::new(&shared);
        clients.insert(sink.region.clone(), client.clone());
        Ok(SdkPutEvents(client))
    }
}

/// `PutEvents` through the SDK.
#[derive(Debug, Clone)]
pub struct SdkPutEvents(aws_sdk_eventbridge::Client);

impl PutEvents for SdkPutEvents {
    async fn put_events(&self, entries: &[Entry]) -> Result<Vec<Answer>, String> {
        let entries: Vec<PutEventsRequestEntry> = entries.iter().map(request_entry).collect();
        let output = self
            .0
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "PutEvents failed: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(output
            .entries()
            .iter()
            .map(|entry| match entry.error_code() {
                Some(code) if !code.is_empty() => Answer::Failed {
                    code: code.to_string(),
                    message: entry.error_message().unwrap_or_default().to_string(),
                },
                _ => Answer::Accepted,
            })
            .collect())
    }
}

fn request_entry(entry: &Entry) -> PutEventsRequestEntry {
    let mut request = PutEventsRequestEntry::builder()
        .event_bus_name(&entry.event_bus_name)
        .source(&entry.source)
        .detail_type(&entry.detail_type)
        .detail(&entry.detail);
    if let Some(time) = entry.time {
        request = request.time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
            time.timestamp_millis(),
        ));
    }
    request.build()
}
