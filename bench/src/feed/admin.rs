//! The admin calls the feed phase makes: subscriptions (created and deleted with the
//! break-glass admin token the phase's server is started with) and the journal's size.

use reqwest::Client;
use serde_json::{Value, json};

/// The admin token of the servers the feed phase starts.
pub const TOKEN: &str = "adledger-bench-feed-admin-token";
/// A valid Standard Webhooks secret (the specification's example key); the receiver
/// checks no signature, but the server signs every request with it.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Creates subscription `name` delivering to `hook` from `start` (`beginning`/`end`) in
/// batches of `batch` events, with a short retry schedule (the receiver never fails).
pub async fn subscribe(
    client: &Client,
    base: &str,
    name: &str,
    hook: &str,
    start: &str,
    batch: u32,
) -> Result<(), String> {
    let body = json!({
        "name": name,
        "start": start,
        "sink": {
            "type": "webhook",
            "url": hook,
            "secret": SECRET,
            "batchSize": batch,
            "retry": {"attempts": 3, "initialBackoffMs": 100, "maxBackoffMs": 1000},
        },
    });
    let response = client
        .post(format!("{base}/ledger/subscriptions"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("creating subscription {name}: {}", crate::phase::chain(&e)))?;
    let status = response.status();
    if status.as_u16() != 201 {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("creating subscription {name}: {status}: {text}"));
    }
    Ok(())
}

/// Deletes subscription `name` (its delivery task stops).
pub async fn unsubscribe(client: &Client, base: &str, name: &str) -> Result<(), String> {
    let response = client
        .delete(format!("{base}/ledger/subscriptions/{name}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .map_err(|e| format!("deleting subscription {name}: {}", crate::phase::chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("deleting subscription {name}: {status}: {text}"));
    }
    Ok(())
}

/// `/healthz`'s `journal.blocks` and the two projections' progress.
pub async fn progress(client: &Client, base: &str) -> Result<(u64, u64, u64), String> {
    let health: Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map_err(|e| format!("/healthz: {}", crate::phase::chain(&e)))?
        .json()
        .await
        .map_err(|e| format!("/healthz is not JSON: {}", crate::phase::chain(&e)))?;
    let number = |pointer: &str| {
        health
            .pointer(pointer)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("/healthz has no number at {pointer}: {health}"))
    };
    Ok((
        number("/journal/blocks")?,
        number("/projections/state")?,
        number("/projections/search")?,
    ))
}
