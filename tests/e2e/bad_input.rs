//! Every error status of `docs/HTTP.md`, over real HTTP on each backend: RFC 9457 problem JSON with the
//! right `status`, a non-empty `detail`, `field` for 422; and a bounded loop of garbage
//! inputs that must never produce a 5xx.

use crate::support::{Backend, Resp, Rng, Server, json_body, media_type, per_backend};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const UNKNOWN_ULID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

fn ad_id(ad: &Value) -> String {
    ad["adId"].as_str().expect("adId").to_string()
}

async fn post_raw(server: &Server, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Resp {
    let mut rb = server.request(Method::POST, path).body(body);
    if let Some(ct) = content_type {
        rb = rb.header("content-type", ct);
    }
    server.send(rb).await
}

/// 422 with `field` for every invalid field; the valid boundaries are accepted.
async fn invalid_fields_are_422_naming_the_field(backend: Backend) {
    let server = Server::start(backend).await;
    let fifty_one: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    let fifty: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "adTitle"),
        (json!({"adDescription": "no title"}), "adTitle"),
        (json!({"adTitle": ""}), "adTitle"),
        (json!({"adTitle": "   "}), "adTitle"),
        (json!({"adTitle": null}), "adTitle"),
        (json!({"adTitle": "x".repeat(201)}), "adTitle"),
        (json!({"adTitle": "bell\u{7}char"}), "adTitle"),
        (json!({"adTitle": 42}), "adTitle"),
        (json!({"adTitle": "t", "price": -1}), "price"),
        (json!({"adTitle": "t", "price": -0.01}), "price"),
        (json!({"adTitle": "t", "price": "abc"}), "price"),
        (json!({"adTitle": "t", "currency": "eur"}), "currency"),
        (json!({"adTitle": "t", "currency": "EURO"}), "currency"),
        (json!({"adTitle": "t", "tags": fifty_one}), "tags"),
        (
            json!({"adTitle": "t", "tags": ["a", "b", "c", ""]}),
            "tags[3]",
        ),
        (json!({"adTitle": "t", "tags": ["x".repeat(51)]}), "tags[0]"),
        (json!({"adTitle": "t", "tags": "not-an-array"}), "tags"),
        (
            json!({"adTitle": "t", "adDescription": "d".repeat(10_001)}),
            "adDescription",
        ),
        (
            json!({"adTitle": "t", "category": "c".repeat(101)}),
            "category",
        ),
        (json!({"adTitle": "t", "colour": "red"}), "colour"),
        (json!({"adTitle": "t", "adId": UNKNOWN_ULID}), "adId"),
    ];
    for (body, field) in &cases {
        let resp = server.post_json("/publisher/acme/ad", body).await;
        let problem = resp.expect_invalid_field(field);
        assert_eq!(
            problem["instance"].as_str().unwrap_or("/publisher/acme/ad"),
            "/publisher/acme/ad",
            "instance is the request path: {problem}"
        );
    }
    assert!(
        server.list("acme").await.is_empty(),
        "no invalid create may leave an ad behind"
    );

    // The valid boundaries are accepted, so the 422s above are about the limits.
    let ok_cases = vec![
        json!({"adTitle": "x".repeat(200)}),
        json!({"adTitle": "  padded  "}),
        json!({"adTitle": "t", "tags": fifty}),
        json!({"adTitle": "t", "adDescription": "d".repeat(10_000)}),
        json!({"adTitle": "t", "category": "c".repeat(100), "currency": "EUR", "price": 0}),
        json!({"adTitle": "t", "tags": ["a", "b", "a"]}),
    ];
    for body in &ok_cases {
        server.create_ad("acme", body).await;
    }
    let ads = server.list("acme").await;
    assert_eq!(ads.len(), ok_cases.len());
    assert!(
        ads.iter().any(|ad| ad["adTitle"] == json!("padded")),
        "adTitle is trimmed: {ads:?}"
    );
    assert!(
        ads.iter().any(|ad| ad["tags"] == json!(["a", "b"])),
        "duplicate tags are dropped, order kept: {ads:?}"
    );

    // Bad publisherId in the path.
    for publisher in ["bad%20id", "bad!id", &"p".repeat(129)] {
        let resp = server
            .post_json(
                &format!("/publisher/{publisher}/ad"),
                &json!({"adTitle": "t"}),
            )
            .await;
        resp.expect_invalid_field("publisherId");
    }

    // PATCH validates too.
    let id = ad_id(&ads[0]);
    let path = format!("/publisher/acme/ad/{id}");
    for (body, field) in [
        (json!({"adTitle": null}), "adTitle"),
        (json!({"adTitle": ""}), "adTitle"),
        (json!({"price": -5}), "price"),
        (json!({"currency": "usd"}), "currency"),
        (json!({"tags": ["ok", ""]}), "tags[1]"),
        (json!({"adId": UNKNOWN_ULID}), "adId"),
        (json!({"colour": "red"}), "colour"),
    ] {
        server
            .patch_json(&path, &body)
            .await
            .expect_invalid_field(field);
    }
    let after = server.get(&path).await;
    after.expect_status(StatusCode::OK);
    assert_eq!(
        after.json()["version"],
        json!(0),
        "no invalid PATCH appended anything"
    );
}

/// 400 malformed JSON, 413 over 64 KiB, 415 not JSON.
async fn malformed_oversized_and_non_json_bodies(backend: Backend) {
    let server = Server::start(backend).await;
    let json_ct = Some("application/json");
    for body in [
        &br#"{"adTitle": "#[..],
        b"not json at all",
        br#"{"adTitle": "t",}"#,
        b"",
    ] {
        let resp = post_raw(&server, "/publisher/acme/ad", json_ct, body.to_vec()).await;
        resp.expect_problem(StatusCode::BAD_REQUEST);
    }
    let created = server.create_ad("acme", &json!({"adTitle": "t"})).await;
    let path = format!("/publisher/acme/ad/{}", ad_id(&created));
    let resp = server
        .send(
            server
                .request(Method::PATCH, &path)
                .header("content-type", "application/json")
                .body(r#"{"price": "#),
        )
        .await;
    resp.expect_problem(StatusCode::BAD_REQUEST);

    // 65 KiB of otherwise valid JSON → 413; 60 KiB → not 413 (422: description too long).
    let big = |size: usize| {
        let head = r#"{"adTitle": "t", "adDescription": ""#;
        let tail = r#""}"#;
        let mut s = String::from(head);
        s.push_str(&"d".repeat(size - head.len() - tail.len()));
        s.push_str(tail);
        assert_eq!(s.len(), size);
        s.into_bytes()
    };
    let resp = post_raw(&server, "/publisher/acme/ad", json_ct, big(65 * 1024)).await;
    resp.expect_problem(StatusCode::PAYLOAD_TOO_LARGE);
    let resp = server
        .send(
            server
                .request(Method::PATCH, &path)
                .header("content-type", "application/json")
                .body(big(65 * 1024)),
        )
        .await;
    resp.expect_problem(StatusCode::PAYLOAD_TOO_LARGE);
    let resp = post_raw(&server, "/publisher/acme/ad", json_ct, big(60 * 1024)).await;
    resp.expect_invalid_field("adDescription");

    // 415: valid JSON with a non-JSON Content-Type, or none at all.
    let valid = br#"{"adTitle": "t"}"#.to_vec();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let resp = post_raw(&server, "/publisher/acme/ad", ct, valid.clone()).await;
        resp.expect_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let resp = server
        .send(
            server
                .request(Method::PATCH, &path)
                .header("content-type", "text/plain")
                .body(r#"{"adTitle": "u"}"#),
        )
        .await;
    resp.expect_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // JSON with a charset parameter is JSON.
    let resp = post_raw(
        &server,
        "/publisher/acme/ad",
        Some("application/json; charset=utf-8"),
        valid,
    )
    .await;
    resp.expect_status(StatusCode::CREATED);
    assert_eq!(
        server.list("acme").await.len(),
        2,
        "only the two valid creates exist"
    );
}

/// 404: unknown ad, another publisher's ad, unknown routes.
async fn not_found_unknown_ad_foreign_ad_unknown_route(backend: Backend) {
    let server = Server::start(backend).await;
    let ad = server.create_ad("acme", &json!({"adTitle": "mine"})).await;
    let id = ad_id(&ad);

    for (method, path, body) in [
        (
            Method::GET,
            format!("/publisher/acme/ad/{UNKNOWN_ULID}"),
            None,
        ),
        (
            Method::GET,
            format!("/publisher/acme/ad/{UNKNOWN_ULID}?versions=true"),
            None,
        ),
        (
            Method::GET,
            format!("/publisher/acme/ad/{UNKNOWN_ULID}?asOf=2030-01-01T00:00:00Z"),
            None,
        ),
        (
            Method::PATCH,
            format!("/publisher/acme/ad/{UNKNOWN_ULID}"),
            Some(json!({"adTitle": "x"})),
        ),
        (
            Method::DELETE,
            format!("/publisher/acme/ad/{UNKNOWN_ULID}"),
            None,
        ),
        (
            Method::GET,
            "/publisher/acme/ad/not-a-ulid".to_string(),
            None,
        ),
        // Another publisher's ad.
        (Method::GET, format!("/publisher/globex/ad/{id}"), None),
        (
            Method::GET,
            format!("/publisher/globex/ad/{id}?versions=true"),
            None,
        ),
        (
            Method::PATCH,
            format!("/publisher/globex/ad/{id}"),
            Some(json!({"adTitle": "stolen"})),
        ),
        (Method::DELETE, format!("/publisher/globex/ad/{id}"), None),
        // Unknown routes.
        (Method::GET, "/nope".to_string(), None),
        (Method::GET, "/publisher".to_string(), None),
        (Method::GET, "/publisher/acme".to_string(), None),
        (
            Method::GET,
            format!("/publisher/acme/ad/{id}/extra/segments"),
            None,
        ),
        (Method::POST, "/nope".to_string(), Some(json!({}))),
    ] {
        let mut rb = server.request(method.clone(), &path);
        if let Some(body) = &body {
            rb = json_body(rb, body);
        }
        let resp = server.send(rb).await;
        let problem = resp.expect_problem(StatusCode::NOT_FOUND);
        assert!(
            !problem.to_string().contains("panic"),
            "{method} {path}: {problem}"
        );
    }
    // The other publisher's attempts changed nothing.
    let resp = server.get(&format!("/publisher/acme/ad/{id}")).await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json(), ad);
}

/// 405 on a known route with the wrong method, as problem JSON with `Allow`.
async fn method_not_allowed(backend: Backend) {
    let server = Server::start(backend).await;
    let ad = server.create_ad("acme", &json!({"adTitle": "t"})).await;
    let id = ad_id(&ad);
    for (method, path) in [
        (Method::PUT, "/publisher/acme/ad".to_string()),
        (Method::DELETE, "/publisher/acme/ad".to_string()),
        (Method::PATCH, "/publisher/acme/ad".to_string()),
        (Method::PUT, format!("/publisher/acme/ad/{id}")),
        (Method::POST, format!("/publisher/acme/ad/{id}")),
        (Method::POST, "/healthz".to_string()),
        (Method::DELETE, "/search".to_string()),
    ] {
        let resp = server
            .send(json_body(server.request(method.clone(), &path), &json!({})))
            .await;
        resp.expect_problem(StatusCode::METHOD_NOT_ALLOWED);
        let allow = resp.header("allow").unwrap_or_default();
        assert!(
            allow.contains("GET"),
            "{method} {path}: a 405 lists the allowed methods in Allow, got {allow:?}"
        );
    }
}

/// 412 for a stale `If-Match`, 400 for a malformed one, 410 after a delete.
async fn if_match_preconditions_and_gone(backend: Backend) {
    let server = Server::start(backend).await;
    let ad = server.create_ad("acme", &json!({"adTitle": "t"})).await;
    let path = format!("/publisher/acme/ad/{}", ad_id(&ad));
    let patch = |if_match: &str, title: &str| {
        json_body(
            server
                .request(Method::PATCH, &path)
                .header("if-match", if_match.to_string()),
            &json!({"adTitle": title}),
        )
    };
    let resp = server.send(patch("\"0\"", "v1")).await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json()["version"], json!(1));

    server
        .send(patch("\"0\"", "stale"))
        .await
        .expect_problem(StatusCode::PRECONDITION_FAILED);
    server
        .send(patch("\"7\"", "future"))
        .await
        .expect_problem(StatusCode::PRECONDITION_FAILED);
    server
        .send(
            server
                .request(Method::DELETE, &path)
                .header("if-match", "\"0\""),
        )
        .await
        .expect_problem(StatusCode::PRECONDITION_FAILED);
    for malformed in ["abc", "\"abc\""] {
        server
            .send(patch(malformed, "malformed"))
            .await
            .expect_problem(StatusCode::BAD_REQUEST);
    }
    let resp = server.get(&path).await;
    assert_eq!(
        resp.json()["version"],
        json!(1),
        "no failed precondition wrote"
    );
    assert_eq!(resp.json()["adTitle"], json!("v1"));

    // The right version deletes.
    server
        .send(
            server
                .request(Method::DELETE, &path)
                .header("if-match", "\"1\""),
        )
        .await
        .expect_status(StatusCode::NO_CONTENT);
    // Gone for reads and writes; history stays.
    server.get(&path).await.expect_problem(StatusCode::GONE);
    server
        .patch_json(&path, &json!({"adTitle": "zombie"}))
        .await
        .expect_problem(StatusCode::GONE);
    server.delete(&path).await.expect_problem(StatusCode::GONE);
    let history = server.get(&format!("{path}?versions=true")).await;
    history.expect_status(StatusCode::OK);
    assert_eq!(history.json().as_array().map(Vec::len), Some(3));
}

/// 400 for bad query parameters and malformed headers.
async fn bad_query_parameters_and_headers_are_400(backend: Backend) {
    let server = Server::start(backend).await;
    let ad = server.create_ad("acme", &json!({"adTitle": "t"})).await;
    let ad_path = format!("/publisher/acme/ad/{}", ad_id(&ad));
    let mut cases: Vec<String> = [
        "/publisher/acme/ad?limit=0",
        "/publisher/acme/ad?limit=abc",
        "/publisher/acme/ad?limit=-1",
        "/publisher/acme/ad?limit=1001",
        "/publisher/acme/ad?limit=1e400",
        "/publisher/acme/ad?cursor=garbage",
        "/search?limit=0",
        "/search?limit=abc",
        "/search?limit=101",
        "/search?minPrice=abc",
        "/search?maxPrice=abc",
        "/search?minPrice=1e400x",
        "/search?cursor=garbage",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for q in [
        "asOf=yesterday",
        "asOf=2020-13-45T00:00:00Z",
        "versions=true&from=notatime",
        "versions=true&to=2020-01-01",
    ] {
        cases.push(format!("{ad_path}?{q}"));
    }
    for path in &cases {
        let resp = server.get(path).await;
        let problem = resp.expect_problem(StatusCode::BAD_REQUEST);
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.len() > 5),
            "GET {path}: a helpful detail: {problem}"
        );
    }

    // Malformed Idempotency-Key headers.
    for key in ["".to_string(), "k".repeat(256)] {
        let resp = server
            .send(json_body(
                server
                    .request(Method::POST, "/publisher/acme/ad")
                    .header("idempotency-key", key.clone()),
                &json!({"adTitle": "t"}),
            ))
            .await;
        resp.expect_problem(StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        server.list("acme").await.len(),
        1,
        "no rejected request created an ad"
    );
}

/// A bounded loop of garbage: random bytes, deep nesting, huge numbers, NULs, invalid
/// UTF-8, odd paths and query strings. Never a 5xx; every 4xx is problem JSON.
async fn garbage_never_produces_a_5xx(backend: Backend) {
    let server = Server::start(backend).await;
    let ad = server
        .create_ad("acme", &json!({"adTitle": "target"}))
        .await;
    let ad_path = format!("/publisher/acme/ad/{}", ad_id(&ad));
    let mut rng = Rng::new(0x5eed_0bad_1dea);

    let mut bodies: Vec<Vec<u8>> = vec![
        "[".repeat(20_000).into_bytes(),
        "{\"a\":".repeat(5_000).into_bytes(),
        format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        br#"{"adTitle": "t", "price": 1e400}"#.to_vec(),
        br#"{"adTitle": "t", "price": -1e400}"#.to_vec(),
        br#"{"adTitle": "t", "price": 1e-400}"#.to_vec(),
        br#"{"adTitle": "t", "price": 123456789012345678901234567890123456789}"#.to_vec(),
        br#"{"adTitle": "t", "price": 0.0000000000000000000000000000001}"#.to_vec(),
        br#"{"adTitle": "t", "price": "1e400"}"#.to_vec(),
        br#"{"adTitle": "t", "price": "NaN"}"#.to_vec(),
        br#"{"adTitle": "t", "price": "Infinity"}"#.to_vec(),
        br#"{"adTitle": "t\u0000nul"}"#.to_vec(),
        br#"{"adTitle": "t", "tags": ["a\u0000b"]}"#.to_vec(),
        br#"{"adTitle": "t", "category": "\u0000", "adDescription": "\u0000"}"#.to_vec(),
        br#"{"adTitle": "\ud800"}"#.to_vec(),
        b"{\"adTitle\": \"\xff\xfe\"}".to_vec(),
        b"\xef\xbb\xbf{\"adTitle\": \"bom\"}".to_vec(),
        br#"{"adTitle": "t", "adTitle": "dup"}"#.to_vec(),
        br#"{"adTitle": {"nested": true}}"#.to_vec(),
        br#"{"adTitle": "t", "tags": [1, 2, 3]}"#.to_vec(),
        br#"{"adTitle": "t", "tags": [[["deep"]]]}"#.to_vec(),
        br#"[]"#.to_vec(),
        br#"null"#.to_vec(),
        br#"12"#.to_vec(),
        br#""just a string""#.to_vec(),
        br#"{"adTitle": "t"} trailing"#.to_vec(),
    ];
    for _ in 0..60 {
        let len = rng.below(2048);
        bodies.push(rng.bytes(len));
    }
    for _ in 0..20 {
        // Valid JSON shape with random field names and values.
        let key: String = (0..rng.below(12) + 1)
            .map(|_| char::from(b'a' + rng.below(26) as u8))
            .collect();
        let val = rng.next_u64();
        bodies.push(format!(r#"{{"adTitle": "t", "{key}": {val}}}"#).into_bytes());
    }

    let mut paths: Vec<String> = vec![
        "/publisher/acme/ad".to_string(),
        ad_path.clone(),
        "/publisher/%00/ad".to_string(),
        "/publisher/%ff%fe/ad".to_string(),
        "/publisher/acme/ad/%00".to_string(),
        "/publisher/acme/ad/%zz".to_string(),
        format!("/publisher/{}/ad", "a".repeat(4000)),
        format!("/publisher/acme/ad/{}", "Z".repeat(4000)),
        "/publisher/acme/ad?limit=1e400".to_string(),
        "/publisher/acme/ad?limit=99999999999999999999999".to_string(),
        "/publisher/acme/ad?cursor=%00%ff".to_string(),
        "/search?minPrice=1e400&maxPrice=-1e400".to_string(),
        "/search?minPrice=NaN".to_string(),
        "/search?q=%00%00".to_string(),
        "/search?q=\"unbalanced".to_string(),
        "/search?q=title:(a%20OR".to_string(),
        "/search?q=*&limit=100".to_string(),
        "/?q=AND%20OR%20NOT".to_string(),
        "/?q=%ff".to_string(),
        format!("/?q={}", "x".repeat(4000)),
        format!("{ad_path}?asOf=99999-01-01T00:00:00Z"),
        format!("{ad_path}?asOf=%00"),
        format!("{ad_path}?versions=maybe"),
        format!("{ad_path}?versions=true&from=2020-01-01T00:00:00Z&to=1999-01-01T00:00:00Z"),
        "/ledger/digest".to_string(),
        "/healthz?x=%00".to_string(),
    ];
    for _ in 0..20 {
        let len = rng.below(64) + 1;
        let junk: String = rng.bytes(len).iter().map(|b| format!("%{b:02x}")).collect();
        paths.push(format!("/publisher/acme/ad?cursor={junk}"));
        paths.push(format!("/search?cursor={junk}&q={junk}"));
    }

    let methods = [Method::GET, Method::POST, Method::PATCH, Method::DELETE];
    let content_types = [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        None,
    ];
    let mut exchanges = Vec::new();
    // Every body against the create and update routes as JSON.
    for body in &bodies {
        exchanges.push((
            Method::POST,
            "/publisher/acme/ad".to_string(),
            Some("application/json"),
            body.clone(),
            None,
        ));
        exchanges.push((
            Method::PATCH,
            ad_path.clone(),
            Some("application/json"),
            body.clone(),
            None,
        ));
    }
    // Every odd path with a few methods.
    for path in &paths {
        exchanges.push((Method::GET, path.clone(), None, Vec::new(), None));
        let m = methods[rng.below(methods.len())].clone();
        exchanges.push((
            m,
            path.clone(),
            Some("application/json"),
            br#"{"adTitle":"t"}"#.to_vec(),
            None,
        ));
    }
    // Random combinations, including garbage If-Match / Idempotency-Key headers.
    for _ in 0..150 {
        let m = methods[rng.below(methods.len())].clone();
        let path = paths[rng.below(paths.len())].clone();
        let ct = content_types[rng.below(content_types.len())];
        let body = bodies[rng.below(bodies.len())].clone();
        let header = match rng.below(4) {
            0 => Some(("if-match", format!("\"{}\"", rng.next_u64()))),
            1 => Some(("if-match", "W/\"0\", \"1\"".to_string())),
            2 => Some(("idempotency-key", format!("k-{}", rng.next_u64()))),
            _ => None,
        };
        exchanges.push((m, path, ct, body, header));
    }
    // An extension method on a known route.
    let ext = Method::from_bytes(b"FROB").expect("method");
    exchanges.push((
        ext,
        "/publisher/acme/ad".to_string(),
        None,
        Vec::new(),
        None,
    ));

    let total = exchanges.len();
    assert!(total < 1000, "bounded: {total} exchanges");
    for (i, (method, path, ct, body, header)) in exchanges.into_iter().enumerate() {
        let mut rb = server.request(method.clone(), &path);
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        if let Some((name, value)) = header {
            rb = rb.header(name, value);
        }
        if !body.is_empty() {
            rb = rb.body(body.clone());
        }
        let resp = server.send(rb).await;
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        assert!(
            !resp.status.is_server_error(),
            "#{i}: {method} {path} (content-type {ct:?}, body {shown:?}) gave {}: {}",
            resp.status,
            resp.text
        );
        if resp.status.is_client_error() {
            let ct = resp.header("content-type").unwrap_or_default();
            assert_eq!(
                media_type(&ct),
                "application/problem+json",
                "#{i}: {method} {path} gave {} without problem JSON: {:?}",
                resp.status,
                resp.text
            );
        }
    }
    let health = server.get("/healthz").await;
    health.expect_status(StatusCode::OK);
    assert_eq!(health.json()["status"], json!("ok"));
}

per_backend!(
    invalid_fields_are_422_naming_the_field,
    malformed_oversized_and_non_json_bodies,
    not_found_unknown_ad_foreign_ad_unknown_route,
    method_not_allowed,
    if_match_preconditions_and_gone,
    bad_query_parameters_and_headers_are_400,
    garbage_never_produces_a_5xx,
);
