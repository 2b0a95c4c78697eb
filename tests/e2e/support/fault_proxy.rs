//! A loopback HTTP proxy in front of DynamoDB that injects, at random and reproducibly
//! (seeded), the faults a network and a busy service produce: a connection dropped
//! before the request reaches DynamoDB, a connection dropped *after* DynamoDB applied the
//! request (the client never learns the outcome: the case that makes retries dangerous),
//! delays, `500 InternalServerError` and throttling (`ThrottlingException`,
//! `ProvisionedThroughputExceededException`), and the partial success of a batch that
//! DynamoDB's throttling produces: a `BatchWriteItem` or `BatchGetItem` of which only the
//! first half reaches DynamoDB, answered `200` with the rest as `UnprocessedItems` /
//! `UnprocessedKeys`, as DynamoDB answers a batch it could only partly serve.
//!
//! It speaks just enough HTTP/1.1 for the AWS SDK's DynamoDB requests (a request line,
//! headers, a `Content-Length` body; keep-alive) and forwards each request with its own
//! headers, so SigV4 signatures and `x-amz-target` pass through untouched.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::Rng;

/// The fault rates, each in requests per thousand; what is left is forwarded untouched.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Close the connection before forwarding: the request is not applied.
    pub drop_before: u64,
    /// Forward, then close without answering: the request is applied, its answer lost.
    pub drop_after: u64,
    /// Answer `500 InternalServerError` without forwarding.
    pub server_error: u64,
    /// Answer `400` throttling without forwarding.
    pub throttle: u64,
    /// Forward after a delay of up to `max_delay`.
    pub delay: u64,
    pub max_delay: Duration,
    /// Of a `BatchWriteItem` or `BatchGetItem`, forward only the first half of each
    /// table's items and answer the rest as unprocessed (other requests: forwarded).
    pub unprocessed: u64,
}

/// How many requests met each fate.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub forwarded: AtomicUsize,
    pub dropped_before: AtomicUsize,
    pub dropped_after: AtomicUsize,
    pub server_errors: AtomicUsize,
    pub throttled: AtomicUsize,
    pub delayed: AtomicUsize,
    /// Batches answered with items left unprocessed.
    pub partial_batches: AtomicUsize,
}

impl FaultCounts {
    /// Faults injected, of every kind.
    pub fn injected(&self) -> usize {
        [
            &self.dropped_before,
            &self.dropped_after,
            &self.server_errors,
            &self.throttled,
            &self.delayed,
            &self.partial_batches,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    pub fn summary(&self) -> String {
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        format!(
            "{} requests forwarded; faults injected: {} dropped before DynamoDB, {} dropped \
             after DynamoDB applied them, {} answered 500, {} throttled, {} delayed, {} \
             batches partly left unprocessed",
            get(&self.forwarded),
            get(&self.dropped_before),
            get(&self.dropped_after),
            get(&self.server_errors),
            get(&self.throttled),
            get(&self.delayed),
            get(&self.partial_batches)
        )
    }
}

enum Fate {
    DropBefore,
    DropAfter,
    ServerError,
    Throttle(&'static str),
    Delay(Duration),
    Unprocessed,
    Forward,
}

struct Shared {
    upstream: String,
    faults: Faults,
    rng: Mutex<Rng>,
    enabled: AtomicBool,
    counts: FaultCounts,
    http: reqwest::Client,
}

impl Shared {
    fn fate(&self) -> Fate {
        if !self.enabled.load(Ordering::SeqCst) {
            return Fate::Forward;
        }
        let mut rng = self.rng.lock().expect("fault rng");
        let f = &self.faults;
        let mut roll = rng.below(1000) as u64;
        for (rate, fate) in [
            (f.drop_before, 0),
            (f.drop_after, 1),
            (f.server_error, 2),
            (f.throttle, 3),
            (f.delay, 4),
            (f.unprocessed, 5),
        ] {
            if roll < rate {
                return match fate {
                    0 => Fate::DropBefore,
                    1 => Fate::DropAfter,
                    2 => Fate::ServerError,
                    3 if rng.below(2) == 0 => Fate::Throttle("ThrottlingException"),
                    3 => Fate::Throttle("ProvisionedThroughputExceededException"),
                    5 => Fate::Unprocessed,
                    _ => {
                        let max = u64::try_from(f.max_delay.as_millis()).unwrap_or(u64::MAX);
                        Fate::Delay(Duration::from_millis(rng.below(max.max(1) as usize) as u64))
                    }
                };
            }
            roll -= rate;
        }
        Fate::Forward
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    endpoint: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a fresh loopback port, forwarding to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, faults: Faults, seed: u64) -> FaultProxy {
        let total = faults.drop_before
            + faults.drop_after
            + faults.server_error
            + faults.throttle
            + faults.delay
            + faults.unprocessed;
        assert!(total <= 1000, "fault rates add up to more than 1000‰");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy on loopback");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            faults,
            rng: Mutex::new(Rng::new(seed)),
            enabled: AtomicBool::new(true),
            counts: FaultCounts::default(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("proxy's upstream client"),
        });
        let accepting = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, Arc::clone(&accepting)));
            }
        });
        FaultProxy {
            endpoint,
            shared,
            task,
        }
    }

    /// The proxy's URL, to give the server as its DynamoDB endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Turns fault injection on or off (off: a plain forwarder).
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::SeqCst);
    }

    pub fn counts(&self) -> &FaultCounts {
        &self.shared.counts
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request read off a client connection.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one request; `None` at the end of the connection or on anything unexpected
/// (the connection is then closed, which the client treats as a network error).
async fn read_request(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The SDK sends DynamoDB's JSON with a length; anything else is not expected.
            return None;
        }
        headers.push((name, value));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn write_response(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(body).await?;
    writer.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// A DynamoDB error document, as the service sends it.
fn dynamodb_error(kind: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = format!(
        "{{\"__type\":\"com.amazonaws.dynamodb.v20120810#{kind}\",\"message\":\"injected by \
         the test's fault proxy\"}}"
    );
    (
        vec![(
            "content-type".to_string(),
            "application/x-amz-json-1.0".to_string(),
        )],
        body.into_bytes(),
    )
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Some(request) = read_request(&mut reader).await {
        let fate = shared.fate();
        let counts = &shared.counts;
        match fate {
            Fate::DropBefore => {
                counts.dropped_before.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Fate::ServerError => {
                counts.server_errors.fetch_add(1, Ordering::Relaxed);
                let (headers, body) = dynamodb_error("InternalServerError");
                if write_response(&mut write, 500, &headers, &body)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Fate::Throttle(kind) => {
                counts.throttled.fetch_add(1, Ordering::Relaxed);
                let (headers, body) = dynamodb_error(kind);
                if write_response(&mut write, 400, &headers, &body)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Fate::Delay(delay) => {
                counts.delayed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
            }
            Fate::DropAfter | Fate::Forward | Fate::Unprocessed => {}
        }
        let split = match fate {
            Fate::Unprocessed => split_batch(&request),
            _ => None,
        };
        let answer = match split {
            Some(split) => {
                counts.partial_batches.fetch_add(1, Ordering::Relaxed);
                forward_part(&shared, request, split).await
            }
            None => forward(&shared, request).await,
        };
        let Some((status, headers, body)) = answer else {
            return;
        };
        if matches!(fate, Fate::DropAfter) {
            counts.dropped_after.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counts.forwarded.fetch_add(1, Ordering::Relaxed);
        if write_response(&mut write, status, &headers, &body)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Sends `request` to DynamoDB; its answer (status, headers to pass on, body).
async fn forward(
    shared: &Shared,
    request: Request,
) -> Option<(u16, Vec<(String, String)>, Vec<u8>)> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).ok()?;
    let mut rb = shared
        .http
        .request(method, format!("{}{}", shared.upstream, request.target));
    for (name, value) in &request.headers {
        let skip = ["host", "connection", "content-length"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if !skip {
            rb = rb.header(name.as_str(), value.as_str());
        }
    }
    let resp = rb.body(request.body).send().await.ok()?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(name, _)| {
            !["connection", "content-length", "transfer-encoding"]
                .iter()
                .any(|h| name.as_str().eq_ignore_ascii_case(h))
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let body = resp.bytes().await.ok()?.to_vec();
    Some((status, headers, body))
}

/// A batch cut in two: what is forwarded, and what is answered as unprocessed.
struct SplitBatch {
    /// The request with each table's first half (`None`: nothing left to forward).
    forwarded: Option<Vec<u8>>,
    /// `UnprocessedItems` or `UnprocessedKeys`, and its value.
    field: &'static str,
    left: serde_json::Map<String, serde_json::Value>,
}

/// Cuts a `BatchWriteItem` or `BatchGetItem` in two; `None` for any other request.
fn split_batch(request: &Request) -> Option<SplitBatch> {
    let target = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-target"))?
        .1
        .rsplit('.')
        .next()?
        .to_string();
    let mut body: serde_json::Value = serde_json::from_slice(&request.body).ok()?;
    let tables = body.get_mut("RequestItems")?.as_object_mut()?;
    let mut left = serde_json::Map::new();
    let field = match target.as_str() {
        "BatchWriteItem" => {
            for (table, writes) in tables.iter_mut() {
                let writes = writes.as_array_mut()?;
                let rest = writes.split_off(writes.len() / 2);
                left.insert(table.clone(), serde_json::Value::Array(rest));
            }
            tables.retain(|_, writes| writes.as_array().is_some_and(|w| !w.is_empty()));
            "UnprocessedItems"
        }
        "BatchGetItem" => {
            for (table, request) in tables.iter_mut() {
                let keys = request.get_mut("Keys")?.as_array_mut()?;
                let rest = keys.split_off(keys.len() / 2);
                let mut unprocessed = request.clone();
                unprocessed["Keys"] = serde_json::Value::Array(rest);
                left.insert(table.clone(), unprocessed);
            }
            tables.retain(|_, request| request["Keys"].as_array().is_some_and(|k| !k.is_empty()));
            "UnprocessedKeys"
        }
        _ => return None,
    };
    let forwarded = (!tables.is_empty()).then(|| body.to_string().into_bytes());
    Some(SplitBatch {
        forwarded,
        field,
        left,
    })
}

/// Forwards the first half of a batch and answers the rest as unprocessed, merged with
/// whatever DynamoDB itself left unprocessed.
async fn forward_part(
    shared: &Shared,
    mut request: Request,
    split: SplitBatch,
) -> Option<(u16, Vec<(String, String)>, Vec<u8>)> {
    let (status, mut headers, body) = match split.forwarded {
        Some(forwarded) => {
            request.body = forwarded;
            forward(shared, request).await?
        }
        None => (
            200,
            vec![(
                "content-type".to_string(),
                "application/x-amz-json-1.0".to_string(),
            )],
            b"{}".to_vec(),
        ),
    };
    if status != 200 {
        return Some((status, headers, body));
    }
    let mut answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let unprocessed = answer
        .as_object_mut()?
        .entry(split.field)
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()?;
    for (table, rest) in split.left {
        match (unprocessed.get_mut(&table), rest) {
            (Some(serde_json::Value::Array(mine)), serde_json::Value::Array(rest)) => {
                mine.extend(rest)
            }
            (Some(theirs), serde_json::Value::Object(rest)) => {
                let keys = theirs.get_mut("Keys")?.as_array_mut()?;
                keys.extend(rest.get("Keys")?.as_array()?.iter().cloned());
            }
            (_, rest) => {
                unprocessed.insert(table, rest);
            }
        }
    }
    unprocessed.retain(|_, v| match v {
        serde_json::Value::Array(items) => !items.is_empty(),
        v => v["Keys"].as_array().is_some_and(|k| !k.is_empty()),
    });
    // The body changed: DynamoDB's checksum of it (`x-amz-crc32`) no longer holds.
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("x-amz-crc32"));
    Some((status, headers, answer.to_string().into_bytes()))
}
