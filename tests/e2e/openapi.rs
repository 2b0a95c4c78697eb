//! `GET /openapi.json` and the Swagger UI at `/docs`, on the real binary: the document
//! describes the routes of docs/HTTP.md, every operation it describes is served (none is
//! answered by the router's "no such route" fallback or with 405), and the UI's page and
//! files come from the server itself. Local backend only: the description does not
//! depend on the storage.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Backend, Server, local_only};

/// The routes of docs/HTTP.md's table, with the document's parameter names.
const DOCUMENTED_IN_HTTP_MD: &[(&str, &str)] = &[
    ("post", "/publisher/{publisherId}/ad"),
    ("get", "/publisher/{publisherId}/ad"),
    ("get", "/publisher/{publisherId}/ad/{adId}"),
    ("patch", "/publisher/{publisherId}/ad/{adId}"),
    ("delete", "/publisher/{publisherId}/ad/{adId}"),
    ("get", "/publisher/{publisherId}/ad/{adId}/proof"),
    ("get", "/"),
    ("get", "/search"),
    ("get", "/healthz"),
    ("get", "/ledger/digest"),
    ("get", "/ledger/consistency"),
    ("get", "/ledger/events"),
    ("get", "/ledger/events/stream"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
];

async fn the_document_describes_every_route_and_the_server_serves_each() {
    let server = Server::start(Backend::Local).await;
    let created = server
        .create_ad("acme", &json!({"adTitle": "described"}))
        .await;
    let ad_id = created["adId"].as_str().expect("adId").to_string();

    let response = server.get("/openapi.json").await;
    response.expect_status(StatusCode::OK);
    response.assert_json_content_type();
    let doc = response.json();
    assert_eq!(doc["openapi"], "3.1.0", "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in DOCUMENTED_IN_HTTP_MD {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is in docs/HTTP.md but not in /openapi.json"
        );
    }

    // Every described operation exists: the router answers it, not its fallbacks.
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path
                .replace("{publisherId}", "acme")
                .replace("{adId}", &ad_id)
                .replace("{asset}", "swagger-ui.css");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            if concrete == "/ledger/events/stream" {
                // An event stream never ends: look at its head, not its body.
                let head = server
                    .request(method, &concrete)
                    .send()
                    .await
                    .expect("the stream answers");
                assert_eq!(head.status(), StatusCode::OK, "{concrete}");
                continue;
            }
            let answer = server.send(server.request(method.clone(), &concrete)).await;
            assert_ne!(
                answer.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {concrete} is described but not served: {}",
                answer.text
            );
            assert!(
                !answer.text.contains("no resource at"),
                "{method} {concrete} is described but the router has no such route: {}",
                answer.text
            );
        }
    }

    // Problem responses are RFC 9457 documents.
    let create = &doc["paths"]["/publisher/{publisherId}/ad"]["post"]["responses"];
    let problem_ref = &create["422"]["content"]["application/problem+json"]["schema"]["$ref"];
    assert_eq!(
        problem_ref,
        &json!("#/components/schemas/Problem"),
        "{create}"
    );
    let problem: &Value = &doc["components"]["schemas"]["Problem"];
    for member in ["type", "title", "status", "detail", "instance", "requestId"] {
        assert!(
            problem["properties"].get(member).is_some(),
            "Problem lacks `{member}`: {problem}"
        );
    }
}

async fn the_swagger_ui_is_served_from_the_binary() {
    let server = Server::start(Backend::Local).await;
    let page = server.get("/docs").await;
    page.expect_status(StatusCode::OK);
    assert!(
        page.must_header("content-type").starts_with("text/html"),
        "{:?}",
        page.headers
    );
    // Every script and style the page loads is one of the server's own paths.
    for reference in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        assert!(
            page.text.contains(reference),
            "the page does not load {reference}"
        );
        let asset = server.get(reference).await;
        asset.expect_status(StatusCode::OK);
        assert!(asset.text.len() > 100, "{reference} is nearly empty");
    }
    assert!(
        !page.text.contains("http://") && !page.text.contains("https://"),
        "{}",
        page.text
    );
    let initializer = server.get("/docs/swagger-initializer.js").await;
    assert!(
        initializer.text.contains("\"/openapi.json\""),
        "{}",
        initializer.text
    );
    server
        .get("/docs/nothing.js")
        .await
        .expect_status(StatusCode::NOT_FOUND);
}

local_only!(
    the_document_describes_every_route_and_the_server_serves_each,
    the_swagger_ui_is_served_from_the_binary,
);
