//! The EventBridge sink against moto's server: a bus, a rule routing adledger's ad events
//! to an SQS queue, a subscription delivering to the bus, and what arrives in the queue.
//!
//! Every delivered `detail` must be the CloudEvent of the pull feed, in journal order; an
//! entry over `maxEntryBytes` and an entry moto refuses (`MalformedDetail`) are
//! dead-lettered, in journal order, and delivery goes on.
//!
//! The server reaches moto through a loopback proxy of this test (its
//! `AWS_ENDPOINT_URL_EVENTBRIDGE`): the proxy counts the `PutEvents` calls and entries,
//! and turns the `Detail` of entries carrying [`MALFORMED`] into text that is not JSON,
//! as a buggy or hostile path between the server and the bus could. moto's events
//! backend refuses such an entry alone (`MalformedDetail`, the rest of the call is
//! accepted), which is the per-entry refusal under test; the server itself never sends
//! malformed JSON. moto does not check signatures, so the rewritten request is accepted.
//!
//! moto is named by `ADLEDGER_TEST_MOTO_ENDPOINT` (`scripts/moto-server.sh` installs
//! and starts it); without it the tests fail, saying how to run them. They run as
//! `eventbridge::moto::<test>`, outside the `::local::` filter.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_eventbridge::config::{Credentials, Region};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as AxumMethod, StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, json_body};

const TOKEN: &str = "eventbridge-admin-token";
/// The variable naming moto's endpoint.
const ENDPOINT_VAR: &str = "ADLEDGER_TEST_MOTO_ENDPOINT";
/// Ads whose title carries this get a malformed `Detail` on the way to moto.
const MALFORMED: &str = "MALFORMED-ON-THE-WAY";
/// Ads whose title carries this are answered `ThrottlingException` by the proxy the
/// first time (without reaching moto), as EventBridge does under load.
const THROTTLED: &str = "THROTTLED-ONCE";
/// The sink's `maxEntryBytes`: small ads fit, an ad with a 10,000-character description
/// does not.
const MAX_ENTRY_BYTES: u32 = 16_384;

/// moto's endpoint. Panics with instructions when it is not set.
fn moto_endpoint() -> String {
    let Some(endpoint) = std::env::var(ENDPOINT_VAR).ok().filter(|v| !v.is_empty()) else {
        panic!(
            "{ENDPOINT_VAR} is not set: this test delivers to EventBridge and needs moto's \
             server. Run it with `scripts/moto-server.sh cargo test -p adledger-tests -- \
             eventbridge` (it installs and starts moto on loopback; inside \
             scripts/dynamodb-local.sh run `scripts/moto-server.sh --install` first), or \
             point {ENDPOINT_VAR} at a loopback moto server"
        );
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "{ENDPOINT_VAR} must be a loopback http:// URL, got {endpoint:?}"
    );
    endpoint
}

/// SDK configuration for moto: fixed credentials and region, no lookup of any kind.
async fn moto_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "e2e"))
        .endpoint_url(endpoint)
        .http_client(adledger_aws::client::http_client())
        .load()
        .await
}

/// A name no other test (in this run or an earlier one on the same moto) uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// What the proxy saw: the entries of each `PutEvents` call, as the server sent them.
#[derive(Clone, Default)]
struct Proxy {
    upstream: String,
    client: reqwest::Client,
    put_events: Arc<Mutex<Vec<Vec<Value>>>>,
    throttled: Arc<Mutex<bool>>,
}

impl Proxy {
    async fn start(upstream: &str) -> (Proxy, String) {
        let proxy = Proxy {
            upstream: upstream.to_string(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("build the proxy's client"),
            put_events: Arc::default(),
            throttled: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let url = crate::support::serve_loopback(app).await;
        (proxy, url)
    }

    fn calls(&self) -> Vec<Vec<Value>> {
        self.put_events.lock().expect("proxy lock").clone()
    }
}

async fn forward(
    State(proxy): State<Proxy>,
    method: AxumMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut body = body.to_vec();
    // The entry answered `ThrottlingException` here instead of by moto.
    let mut throttle: Option<usize> = None;
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target == "AWSEvents.PutEvents" {
        let mut request: Value = serde_json::from_slice(&body).expect("PutEvents is JSON");
        let entries = request["Entries"].as_array().cloned().unwrap_or_default();
        let first_time = !*proxy.throttled.lock().expect("proxy lock");
        throttle = entries
            .iter()
            .position(|e| carries(e, THROTTLED))
            .filter(|_| first_time);
        proxy.put_events.lock().expect("proxy lock").push(entries);
        if let Some(entries) = request["Entries"].as_array_mut() {
            if let Some(at) = throttle {
                entries.remove(at);
                *proxy.throttled.lock().expect("proxy lock") = true;
            }
            for entry in entries {
                if carries(entry, MALFORMED) {
                    entry["Detail"] = json!("{this is not JSON");
                }
            }
        }
        body = serde_json::to_vec(&request).expect("encode PutEvents");
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = proxy.client.request(
        Method::from_bytes(method.as_str().as_bytes()).expect("a method"),
        format!("{}{path}", proxy.upstream),
    );
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "content-length") {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = match upstream.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => return (AxumStatus::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = AxumStatus::from_u16(answer.status().as_u16()).expect("a status");
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-amz-json-1.1")
        .to_string();
    let mut bytes = answer.bytes().await.unwrap_or_default().to_vec();
    if let Some(at) = throttle {
        let mut result: Value = serde_json::from_slice(&bytes).expect("PutEvents answer is JSON");
        if let Some(entries) = result["Entries"].as_array_mut() {
            entries.insert(
                at,
                json!({"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}),
            );
        }
        let failed = result["FailedEntryCount"].as_u64().unwrap_or(0) + 1;
        result["FailedEntryCount"] = json!(failed);
        bytes = serde_json::to_vec(&result).expect("encode the answer");
    }
    (status, [("content-type", content_type)], bytes).into_response()
}

/// Whether a `PutEvents` entry's `Detail` carries `marker`.
fn carries(entry: &Value, marker: &str) -> bool {
    entry["Detail"].as_str().is_some_and(|d| d.contains(marker))
}

/// The CloudEvent a `PutEvents` entry carries.
fn detail(entry: &Value) -> Value {
    serde_json::from_str(entry["Detail"].as_str().expect("a Detail")).expect("Detail is JSON")
}

/// `value` with every number as a float, for comparing JSON that went through a parser
/// that rewrites numbers (`2.50` → `2.5`).
fn numbers_by_value(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().expect("a finite number")),
        Value::Array(items) => Value::Array(items.iter().map(numbers_by_value).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), numbers_by_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn admin(server: &Server, method: Method, path: &str) -> reqwest::RequestBuilder {
    server.request(method, path).bearer_auth(TOKEN)
}

/// Every event of the journal, in order, from the pull feed.
async fn feed(server: &Server) -> Vec<Value> {
    let resp = server.get("/ledger/events?limit=1000").await;
    resp.expect_status(StatusCode::OK);
    let page = resp.json();
    page.as_array()
        .cloned()
        .or_else(|| page["events"].as_array().cloned())
        .expect("a batch of events")
}

async fn create_ad(server: &Server, title: &str, description: &str) {
    server
        .create_ad(
            "bus",
            &json!({"adTitle": title, "adDescription": description, "price": "2.50"}),
        )
        .await;
}

/// A bus, a queue, and a rule on the bus routing adledger's ad events to the queue.
struct Routing {
    bus: String,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

async fn route_ad_events_to_a_queue(config: &aws_config::SdkConfig) -> Routing {
    let events = aws_sdk_eventbridge::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let bus = unique("ads");
    events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("create the bus");
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("ad-events"))
        .send()
        .await
        .expect("create the queue")
        .queue_url
        .expect("a queue URL");
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("the queue's attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("the queue's ARN");
    // The rule of the README: adledger's ad events (not its digest events).
    let pattern = json!({
        "source": [{"prefix": "urn:adledger:"}],
        "detail-type": ["adledger.ad.created", "adledger.ad.updated", "adledger.ad.deleted"],
    });
    events
        .put_rule()
        .name("adledger-ad-events")
        .event_bus_name(&bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .expect("create the rule");
    events
        .put_targets()
        .rule("adledger-ad-events")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .expect("a target"),
        )
        .send()
        .await
        .expect("target the queue");
    Routing {
        bus,
        queue_url,
        sqs,
    }
}

impl Routing {
    /// Receives (and deletes) messages until `count` arrived; panics after `within`.
    async fn receive(&self, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut received = Vec::new();
        while received.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} events arrived in the queue within {within:?}: {received:#?}",
                received.len()
            );
            let batch = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive from the queue");
            for message in batch.messages() {
                let body: Value =
                    serde_json::from_str(message.body().expect("a body")).expect("JSON body");
                received.push(body);
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle().expect("a receipt handle"))
                    .send()
                    .await
                    .expect("delete the message");
            }
        }
        received
    }
}

async fn delivers_cloud_events_in_order_and_dead_letters_what_it_cannot() {
    let endpoint = moto_endpoint();
    let config = moto_config(&endpoint).await;
    let routing = route_ad_events_to_a_queue(&config).await;
    let (proxy, proxy_url) = Proxy::start(&endpoint).await;
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL_EVENTBRIDGE", proxy_url.as_str()),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let server = Server::start_with_env(
        None,
        &["--admin-token".to_string(), TOKEN.to_string()],
        &env,
    )
    .await;

    // Twelve ads before the subscription (more than one PutEvents call of 10), one of
    // them too large for the sink and one that arrives malformed.
    for i in 0..12 {
        match i {
            4 => create_ad(&server, "a large ad", &"x".repeat(10_000)).await,
            2 => create_ad(&server, &format!("ad {i} {THROTTLED}"), "").await,
            7 => create_ad(&server, &format!("ad {i} {MALFORMED}"), "").await,
            _ => create_ad(&server, &format!("ad {i}"), "").await,
        }
    }
    let resp = server
        .send(json_body(
            admin(&server, Method::POST, "/ledger/subscriptions"),
            &json!({"name": "bus", "start": "beginning", "onFailure": "deadLetter",
                    "sink": {"type": "eventBridge", "eventBusName": routing.bus,
                             "maxEntryBytes": MAX_ENTRY_BYTES,
                             "retry": {"attempts": 3, "initialBackoffMs": 20, "maxBackoffMs": 200}}}),
        ))
        .await;
    resp.expect_status(StatusCode::CREATED);
    let created = resp.json();
    assert_eq!(created["sink"]["type"], "eventBridge", "{created}");
    assert_eq!(
        created["sink"]["maxEntryBytes"], MAX_ENTRY_BYTES,
        "{created}"
    );
    // And five more while it delivers.
    for i in 12..17 {
        create_ad(&server, &format!("ad {i}"), "").await;
    }

    let events = feed(&server).await;
    assert_eq!(events.len(), 17, "17 ad events, no digest yet");
    let large = events[4]["id"].as_str().expect("an id").to_string();
    let malformed = events[7]["id"].as_str().expect("an id").to_string();
    let expected: Vec<&Value> = events
        .iter()
        .filter(|e| e["id"] != json!(large) && e["id"] != json!(malformed))
        .collect();
    let received = routing
        .receive(expected.len(), Duration::from_secs(60))
        .await;
    // moto re-encodes `detail` through Python's JSON (`2.50` arrives as `2.5`): compare
    // numbers by value here; what the server sent is compared exactly below.
    let details: Vec<Value> = received
        .iter()
        .map(|m| numbers_by_value(&m["detail"]))
        .collect();
    // Journal order, except the throttled event: EventBridge accepted the rest of its
    // call first, and a retry sends only what failed (no duplicates), so it arrives
    // after them — right after event 9, the last of that call.
    let throttled = events[2]["id"].clone();
    let mut accepted_order: Vec<&Value> = expected
        .iter()
        .copied()
        .filter(|e| e["id"] != throttled)
        .collect();
    accepted_order.insert(7, &events[2]);
    let expected_by_value: Vec<Value> =
        accepted_order.iter().map(|e| numbers_by_value(e)).collect();
    assert_eq!(
        details, expected_by_value,
        "every delivered detail is the feed's CloudEvent, in the order EventBridge accepted them"
    );
    for message in &received {
        assert_eq!(message["detail-type"], message["detail"]["type"]);
        assert_eq!(message["source"], message["detail"]["source"]);
    }

    // Both failures dead-lettered, in journal order; delivery went on past them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let sub = loop {
        let resp = server
            .send(admin(&server, Method::GET, "/ledger/subscriptions/bus"))
            .await;
        resp.expect_status(StatusCode::OK);
        let sub = resp.json();
        if sub["lag"]["blocks"] == 0 {
            break sub;
        }
        assert!(Instant::now() < deadline, "lag never reached 0: {sub}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sub["state"], "active", "{sub}");
    let resp = server
        .send(admin(
            &server,
            Method::GET,
            "/ledger/subscriptions/bus/dead-letters",
        ))
        .await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json()["ids"], json!([large, malformed]));

    // What the server sent: at most 10 entries a call; each event once, the throttled
    // one twice (alone the second time: accepted entries are not sent again), the large
    // one never; the malformed one once, then refused.
    let calls = proxy.calls();
    assert!(
        calls.iter().all(|c| !c.is_empty() && c.len() <= 10),
        "{calls:?}"
    );
    assert!(
        calls.len() >= 2,
        "12 events at once take two calls: {calls:?}"
    );
    let retries = calls
        .iter()
        .filter(|c| c.len() == 1 && carries(&c[0], THROTTLED))
        .count();
    assert_eq!(
        retries, 1,
        "the throttled entry is sent again, alone: {calls:?}"
    );
    let sent: Vec<Value> = calls
        .iter()
        .flatten()
        .map(|entry| detail(entry)["id"].clone())
        .collect();
    let mut sent_once = sent.clone();
    let retry_at = sent_once
        .iter()
        .rposition(|id| *id == throttled)
        .expect("the throttled entry was sent");
    sent_once.remove(retry_at);
    let all_but_large: Vec<Value> = events
        .iter()
        .map(|e| e["id"].clone())
        .filter(|id| *id != json!(large))
        .collect();
    assert_eq!(
        sent_once, all_but_large,
        "each event once, in order, and the retry"
    );
    // Exactly the feed's CloudEvent (numbers keep their text: `arbitrary_precision`).
    let details: Vec<Value> = calls
        .iter()
        .flatten()
        .filter(|entry| !carries(entry, MALFORMED))
        .map(detail)
        .collect();
    let mut expected_sent: Vec<&Value> = expected.clone();
    expected_sent.insert(8, &events[2]); // the retry, after the rest of the first call
    assert_eq!(
        details.iter().collect::<Vec<_>>(),
        expected_sent,
        "Detail = the CloudEvent"
    );
    for entry in calls.iter().flatten() {
        assert_eq!(entry["EventBusName"], json!(routing.bus));
        assert_eq!(entry["DetailType"], detail(entry)["type"]);
        assert_eq!(entry["Source"], detail(entry)["source"]);
    }

    // Redelivery of the dead letters fails again (they are still too large or malformed)
    // and keeps them listed.
    let resp = server
        .send(admin(
            &server,
            Method::POST,
            "/ledger/subscriptions/bus/dead-letters/redeliver",
        ))
        .await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json()["failed"], json!([large, malformed]));
}

/// Bad EventBridge sinks: 422 naming the field; a sink without `type` is a webhook.
async fn bad_sinks_are_refused_naming_the_field() {
    let server = Server::start_with(None, &["--admin-token".to_string(), TOKEN.to_string()]).await;
    let cases = [
        (
            json!({"type": "eventBridge", "eventBusName": ""}),
            "sink.eventBusName",
        ),
        (
            json!({"type": "eventBridge", "eventBusName": "a bus"}),
            "sink.eventBusName",
        ),
        (
            json!({"type": "eventBridge", "eventBusName": "ads", "maxEntryBytes": 0}),
            "sink.maxEntryBytes",
        ),
        (
            json!({"type": "eventBridge", "eventBusName": "ads", "source": "aws.events"}),
            "sink.source",
        ),
        (
            json!({"type": "eventBridge", "eventBusName": "ads", "detailType": ""}),
            "sink.detailType",
        ),
        (
            json!({"type": "eventBridge", "eventBusName": "ads", "region": "Not A Region"}),
            "sink.region",
        ),
        (
            json!({"type": "eventBridge", "eventBusName": "ads", "retry": {"attempts": 0}}),
            "sink.retry.attempts",
        ),
        (json!({"type": "kinesis", "streamName": "ads"}), "sink.type"),
    ];
    for (sink, field) in cases {
        let resp = server
            .send(json_body(
                admin(&server, Method::POST, "/ledger/subscriptions"),
                &json!({"name": "bad", "sink": sink}),
            ))
            .await;
        resp.expect_invalid_field(field);
    }
    // An unknown field of an EventBridge sink is malformed JSON (400).
    let resp = server
        .send(json_body(
            admin(&server, Method::POST, "/ledger/subscriptions"),
            &json!({"name": "bad", "sink": {"type": "eventBridge", "eventBusName": "ads", "url": "http://x"}}),
        ))
        .await;
    resp.expect_problem(StatusCode::BAD_REQUEST);
    // No type: a webhook, as before sinks had types.
    let resp = server
        .send(json_body(
            admin(&server, Method::POST, "/ledger/subscriptions"),
            &json!({"name": "hook", "start": "end",
                    "sink": {"url": "http://127.0.0.1:9/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}),
        ))
        .await;
    resp.expect_status(StatusCode::CREATED);
    assert_eq!(resp.json()["sink"]["type"], "webhook");
}

/// Needs moto (`ADLEDGER_TEST_MOTO_ENDPOINT`): fails, saying how to run it, without.
mod moto {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivers_cloud_events_in_order_and_dead_letters_what_it_cannot() {
        super::delivers_cloud_events_in_order_and_dead_letters_what_it_cannot().await
    }
}

crate::support::local_only!(bad_sinks_are_refused_naming_the_field);
