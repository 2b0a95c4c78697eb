//! The HTTP edge against the real binary over real TCP (loopback only): slow and greedy
//! clients, the header-read and body-read timeouts, the request timeout, load shedding,
//! graceful shutdown with a deadline, and the `X-Request-Id` rule of docs/HTTP.md.
//!
//! Timeouts are configured short (seconds) so the tests run quickly; assertions on time
//! are generous bounds (a connection is not closed *before* its timeout, an answer
//! arrives well within a bound), never tight ones. The edge is the same whatever stores
//! the data, so the suite runs on the local backend only.

use std::time::{Duration, Instant};

use crate::support::{Backend, Server, json_body, local_only, seed_create_body};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw exchange may take before the test fails instead of hanging.
const RAW_TIMEOUT: Duration = Duration::from_secs(30);

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `127.0.0.1:PORT` of a server.
fn addr(server: &Server) -> String {
    server
        .base_url
        .strip_prefix("http://")
        .expect("an http:// base URL")
        .to_string()
}

/// A response read off a raw socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Header lines, names lowercased.
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Reads one HTTP/1.1 response (head, then `Content-Length` bytes of body) from `stream`.
/// `None` if the server closed the connection before a complete head.
async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Whether the peer has closed `stream` (EOF or reset) — reads and discards anything else.
async fn wait_closed(stream: &mut TcpStream) {
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Sends `head` one byte every `pause` (a head never finished) until the server closes
/// the connection; fails if it answers instead, or has not closed within [`RAW_TIMEOUT`].
async fn trickle_until_closed(stream: &mut TcpStream, head: &[u8], pause: Duration) {
    let (mut read, mut write) = stream.split();
    let trickle = async {
        for byte in head {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        std::future::pending::<()>().await;
    };
    let mut chunk = [0u8; 256];
    // Any read result ends the wait: EOF or a reset is the close; bytes would be an
    // answer to a head that was never finished, which must not happen.
    let closed = async {
        if let Ok(n @ 1..) = read.read(&mut chunk).await {
            panic!(
                "a trickled head got an answer: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            );
        }
    };
    tokio::time::timeout(RAW_TIMEOUT, async {
        tokio::select! {
            () = trickle => {},
            () = closed => {},
        }
    })
    .await
    .expect("a trickled head was not closed within 30 s");
}

/// Opens a connection and sends the head of a POST that announces a 100-byte JSON body,
/// plus the first bytes of that body; the rest never comes.
async fn stalled_post(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(addr(server)).await.expect("connect");
    let head = "POST /publisher/stall/ad HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"adTitle\":";
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream
}

/// The soft limit on open files of this process (the server inherits it), from
/// /proc/self/limits (reading it needs no `unsafe`).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Percentile `p` (0..=100) of sorted `samples`.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let index = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

/// 1,000 connections that trickle a request head one byte a second are closed at the
/// header-read timeout, never before; meanwhile a normal client (a new connection for
/// every request) is served normally. Prints the normal client's latencies.
async fn slowloris_connections_are_closed_at_the_header_timeout_and_others_are_served() {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
    // 1,000 as the issue asks, fewer only if the open-files limit (shared by this process
    // and, inherited, by the server) cannot hold them with room to spare.
    let limit = open_files_limit().unwrap_or(1024);
    let slow_clients = 1000usize.min(usize::try_from(limit.saturating_sub(200)).unwrap_or(0));
    assert!(
        slow_clients >= 200,
        "open-files limit {limit} is too low for this test; raise `ulimit -n`"
    );
    println!("slow clients: {slow_clients} (open-files limit {limit})");
    let server = Server::start_with(None, &args(&["--header-read-timeout", "3s"])).await;
    let target = addr(&server);

    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..slow_clients {
        let target = target.clone();
        slow.spawn(async move {
            let mut stream = TcpStream::connect(&target).await.expect("connect");
            let opened = Instant::now();
            // A head that is never finished: at one byte a second it would take minutes.
            let head = format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
                "a".repeat(200)
            );
            trickle_until_closed(&mut stream, head.as_bytes(), Duration::from_secs(1)).await;
            opened.elapsed()
        });
    }

    // The normal client, while every slow connection is open and trickling.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::new();
    let started = Instant::now();
    while latencies.len() < 2000 && started.elapsed() < Duration::from_millis(2000) {
        let sent = Instant::now();
        let resp = client
            .get(server.url("/healthz"))
            .send()
            .await
            .expect("the normal client is answered during the slowloris");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.bytes().await.expect("body");
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    println!(
        "normal client during slowloris: {} GET /healthz (new connection each): p50 {:?}, \
         p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies.last().copied().unwrap_or_default(),
    );
    assert!(latencies.len() >= 10, "the normal client was starved");
    assert!(
        percentile(&latencies, 99) < Duration::from_secs(2),
        "the normal client waited seconds"
    );

    let mut closed_after = Vec::new();
    while let Some(result) = slow.join_next().await {
        closed_after.push(result.expect("slow client task"));
    }
    closed_after.sort();
    println!(
        "slow connections closed after {:?} (first) to {:?} (last)",
        closed_after[0],
        closed_after[closed_after.len() - 1]
    );
    assert!(
        closed_after[0] >= HEADER_TIMEOUT - Duration::from_millis(500),
        "a slow connection was closed at {:?}, before the header timeout",
        closed_after[0]
    );
    server.get("/healthz").await.expect_status(StatusCode::OK);
}

/// `GET /healthz` on a raw keep-alive connection; the answer must be 200.
async fn raw_healthz(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send a request");
    let resp = tokio::time::timeout(RAW_TIMEOUT, read_response(stream))
        .await
        .expect("no answer within 30 s")
        .expect("the connection was closed instead of answered");
    assert_eq!(resp.status, 200, "{resp:?}");
}

/// How long after `since` the server closed `stream` (bounded by [`RAW_TIMEOUT`]).
async fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    tokio::time::timeout(RAW_TIMEOUT, wait_closed(stream))
        .await
        .expect("the connection was not closed within 30 s");
    since.elapsed()
}

/// The idle keep-alive timeout is its own setting, longer than the header-read timeout (a
/// load balancer that reuses idle connections for 60 s must not race a 10 s close), while
/// request heads stay bounded by the header-read timeout: on a fresh connection from its
/// accept, on a reused one from the request's first byte. A slow body is the body
/// timeout's business, not the head's.
async fn idle_connections_live_until_the_keep_alive_timeout_and_heads_stay_bounded() {
    const HEAD: Duration = Duration::from_secs(1);
    const KEEP_ALIVE: Duration = Duration::from_secs(4);
    let server = Server::start_with(
        None,
        &args(&["--header-read-timeout", "1s", "--keep-alive-timeout", "4s"]),
    )
    .await;
    let target = addr(&server);

    // Idle well past the head timeout, then reuse the connection: served.
    let mut reused = TcpStream::connect(&target).await.expect("connect");
    raw_healthz(&mut reused).await;
    tokio::time::sleep(HEAD * 2 + Duration::from_millis(500)).await;
    raw_healthz(&mut reused).await;
    // Then idle until it is closed: at the keep-alive timeout, not before.
    let idle_from = Instant::now();
    let idle = closed_after(&mut reused, idle_from).await;
    assert!(
        idle >= KEEP_ALIVE - Duration::from_millis(300) && idle < KEEP_ALIVE * 3,
        "an idle connection was closed after {idle:?}; the keep-alive timeout is {KEEP_ALIVE:?}"
    );

    // A fresh connection that sends nothing is closed at the head timeout.
    let opened = Instant::now();
    let mut silent = TcpStream::connect(&target).await.expect("connect");
    let silent_for = closed_after(&mut silent, opened).await;
    assert!(
        silent_for >= HEAD - Duration::from_millis(300) && silent_for < KEEP_ALIVE,
        "a silent connection was closed after {silent_for:?}"
    );

    // A reused connection that trickles its next head is closed a head timeout after
    // the head's first byte, although the keep-alive timeout is further away.
    let mut trickling = TcpStream::connect(&target).await.expect("connect");
    raw_healthz(&mut trickling).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_byte = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    trickle_until_closed(&mut trickling, head, Duration::from_millis(200)).await;
    let head_for = first_byte.elapsed();
    assert!(
        head_for >= HEAD - Duration::from_millis(300) && head_for < KEEP_ALIVE,
        "a trickled head was closed after {head_for:?}; the header-read timeout is {HEAD:?}"
    );

    // A body trickled over twice the head timeout is read whole (the body timeout is 30 s).
    let mut slow_body = TcpStream::connect(&target).await.expect("connect");
    let body = serde_json::to_vec(&seed_create_body()).expect("json");
    let head = format!(
        "POST /publisher/slowbody/ad HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    slow_body.write_all(head.as_bytes()).await.expect("head");
    let pause = (HEAD * 2) / u32::try_from(body.len()).expect("small body");
    for byte in &body {
        slow_body.write_all(&[*byte]).await.expect("body byte");
        tokio::time::sleep(pause).await;
    }
    let resp = tokio::time::timeout(RAW_TIMEOUT, read_response(&mut slow_body))
        .await
        .expect("no answer within 30 s")
        .expect("the slow body's connection was closed");
    assert_eq!(resp.status, 201, "{resp:?}");
    // And the same connection still serves the next request.
    raw_healthz(&mut slow_body).await;
}

/// A body that stalls is answered 408 (problem JSON, connection closed) at the body-read
/// timeout; the client's request id is in the problem.
async fn a_stalled_body_is_408() {
    let server = Server::start_with(None, &args(&["--body-read-timeout", "1s"])).await;
    let mut stream = stalled_post(&server).await;
    let started = Instant::now();
    let resp = tokio::time::timeout(RAW_TIMEOUT, read_response(&mut stream))
        .await
        .expect("no answer within 30 s")
        .expect("an answer, not a closed connection");
    assert_eq!(resp.status, 408, "{resp:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "too early");
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(resp.header("connection"), Some("close"));
    let problem = resp.json();
    assert_eq!(problem["type"], "/problems/body-timeout", "{problem}");
    assert_eq!(problem["status"], 408);
    assert_eq!(
        problem["requestId"].as_str(),
        resp.header("x-request-id"),
        "{problem}"
    );
    tokio::time::timeout(RAW_TIMEOUT, wait_closed(&mut stream))
        .await
        .expect("the connection is closed after the 408");
    server.get("/healthz").await.expect_status(StatusCode::OK);
}

/// A request not answered within the request timeout is 503 with `Retry-After` (here a
/// stalled body, with the body timeout set longer than the request timeout).
async fn a_request_over_the_request_timeout_is_503_with_retry_after() {
    let server = Server::start_with(
        None,
        &args(&["--request-timeout", "1s", "--body-read-timeout", "60s"]),
    )
    .await;
    let mut stream = stalled_post(&server).await;
    let resp = tokio::time::timeout(RAW_TIMEOUT, read_response(&mut stream))
        .await
        .expect("no answer within 30 s")
        .expect("an answer, not a closed connection");
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.header("retry-after"), Some("1"));
    let problem = resp.json();
    assert_eq!(problem["type"], "/problems/request-timeout", "{problem}");
    assert!(problem["requestId"].is_string(), "{problem}");
}

/// With one request allowed in flight and a slow one holding it, every other request is
/// answered 503 with `Retry-After` at once, not queued; the server's memory stays flat
/// while it sheds; once the slow request ends, requests are served again.
async fn over_the_in_flight_limit_requests_are_shed_at_once() {
    let mut server = Server::start_with(
        None,
        &args(&["--max-in-flight", "1", "--body-read-timeout", "60s"]),
    )
    .await;
    let stalled = stalled_post(&server).await;
    // The stalled request must hold the one slot before the others arrive.
    let mut shed_first = None;
    for _ in 0..100 {
        let resp = server.get("/healthz").await;
        if resp.status == StatusCode::SERVICE_UNAVAILABLE {
            shed_first = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = shed_first.unwrap_or_else(|| {
        panic!(
            "no request beside the slow one was shed in 100 tries; server log:\n{}",
            server.stderr_tail()
        )
    });
    let problem = resp.expect_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["type"], "/problems/overloaded", "{problem}");
    assert_eq!(resp.header("retry-after").as_deref(), Some("1"));
    assert!(problem["requestId"].is_string(), "{problem}");

    let rss_before = rss_kib(server.pid());
    let started = Instant::now();
    let mut shed = 0usize;
    for _round in 0..20 {
        let burst: Vec<_> = (0..100)
            .map(|_| {
                let rb = server.request(Method::GET, "/healthz");
                async move { crate::support::fetch(rb).await }
            })
            .collect();
        for resp in futures::future::join_all(burst).await {
            let resp = resp.expect("an answer");
            assert_eq!(
                resp.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                resp.text
            );
            shed += 1;
        }
    }
    let elapsed = started.elapsed();
    let rss_after = rss_kib(server.pid());
    println!(
        "{shed} requests shed in {elapsed:?}; server RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "shedding is not immediate: {elapsed:?}"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew while shedding: {rss_before} -> {rss_after} KiB"
    );

    drop(stalled);
    let mut served = false;
    for _ in 0..100 {
        if server.get("/healthz").await.status == StatusCode::OK {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "requests were not served after the slow one ended");
    server.stop().await;
}

/// The resident set of process `pid`, in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// SIGTERM while bodies are stalled: the server stops accepting, waits out the grace
/// period for them, closes them, and exits 0 — and a write it had acknowledged before is
/// there after a restart.
async fn sigterm_with_stalled_bodies_exits_zero_within_the_grace_period() {
    const GRACE: Duration = Duration::from_secs(2);
    let mut server = Server::start_with(
        None,
        &args(&["--shutdown-grace", "2s", "--body-read-timeout", "60s"]),
    )
    .await;
    let ad = server.create_ad("acme", &seed_create_body()).await;
    let ad_id = ad["adId"].as_str().expect("adId").to_string();

    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stalled_post(&server).await);
    }
    // Let the server read the heads, so these are requests in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-s", "TERM", &server.pid().to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success());
    let exit = tokio::time::timeout(GRACE + Duration::from_secs(15), server.child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no exit within the grace period and 15 s\n{}",
                server.stderr_tail()
            )
        })
        .expect("wait for the server");
    let took = signalled.elapsed();
    println!("exited {exit:?} {took:?} after SIGTERM (grace {GRACE:?})");
    assert!(exit.success(), "{exit:?}\n{}", server.stderr_tail());
    assert!(
        took >= GRACE - Duration::from_millis(300),
        "exited after {took:?}: it did not wait for the requests in flight"
    );
    for mut stream in stalled {
        tokio::time::timeout(RAW_TIMEOUT, wait_closed(&mut stream))
            .await
            .expect("a stalled connection is closed at the deadline");
    }

    server.restart().await;
    server
        .get(&format!("/publisher/acme/ad/{ad_id}"))
        .await
        .expect_status(StatusCode::OK);
}

/// A client's `X-Request-Id` is echoed (and put in problem documents) only if it is
/// 1–128 visible ASCII characters; otherwise the server makes a new one.
async fn request_ids_are_kept_only_when_short_and_visible() {
    let server = Server::start(Backend::Local).await;
    let with_id = |id: reqwest::header::HeaderValue| {
        server
            .request(Method::GET, "/no/such/route")
            .header("x-request-id", id)
    };
    let good = "req-01HV_abc.~!#".to_string() + &"x".repeat(112);
    assert_eq!(good.len(), 128);
    let resp = server.send(with_id(good.parse().expect("header"))).await;
    let problem = resp.expect_problem(StatusCode::NOT_FOUND);
    assert_eq!(resp.request_id(), good);
    assert_eq!(problem["requestId"].as_str(), Some(good.as_str()));

    let too_long = "y".repeat(129);
    let bad: Vec<reqwest::header::HeaderValue> = vec![
        too_long.parse().expect("header"),
        "has space".parse().expect("header"),
        reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").expect("header"),
        "tab\there".parse().expect("header"),
    ];
    for value in bad {
        let resp = server.send(with_id(value.clone())).await;
        let problem = resp.expect_problem(StatusCode::NOT_FOUND);
        let id = resp.request_id();
        assert_ne!(id.as_bytes(), value.as_bytes(), "{value:?} was kept");
        assert!(id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(problem["requestId"].as_str(), Some(id.as_str()));
    }

    // Two ids: neither is trusted.
    let resp = server
        .send(
            server
                .request(Method::GET, "/healthz")
                .header("x-request-id", "one")
                .header("x-request-id", "two"),
        )
        .await;
    resp.expect_status(StatusCode::OK);
    let id = resp.request_id();
    assert!(id != "one" && id != "two", "{id}");

    // A write keeps a good id too.
    let resp = server
        .send(
            json_body(
                server.request(Method::POST, "/publisher/acme/ad"),
                &seed_create_body(),
            )
            .header("x-request-id", "client-chosen-1"),
        )
        .await;
    resp.expect_status(StatusCode::CREATED);
    assert_eq!(resp.request_id(), "client-chosen-1");
}

local_only!(
    slowloris_connections_are_closed_at_the_header_timeout_and_others_are_served,
    idle_connections_live_until_the_keep_alive_timeout_and_heads_stay_bounded,
    a_stalled_body_is_408,
    a_request_over_the_request_timeout_is_503_with_retry_after,
    over_the_in_flight_limit_requests_are_shed_at_once,
    sigterm_with_stalled_bodies_exits_zero_within_the_grace_period,
    request_ids_are_kept_only_when_short_and_visible,
);
