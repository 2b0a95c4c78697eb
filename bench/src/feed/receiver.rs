//! The loopback webhook receiver the sink rows deliver to: a minimal axum server that
//! answers every `POST /hook` with 200 and counts the CloudEvents it carried (one for
//! `application/cloudevents+json`, the array's length for a batch). It checks no
//! signature: the point is the sender's rate, and the e2e suite checks signatures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;

/// A running receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    events: AtomicU64,
    requests: AtomicU64,
}

impl Receiver {
    /// Binds `127.0.0.1:0` and serves on a thread and runtime of its own, so receiving
    /// never delays the bench's clients (its CPU is still this machine's, as the
    /// server's is).
    pub async fn start() -> Result<Receiver, String> {
        let counts = Arc::new(Counts::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(counts.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot bind the webhook receiver: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("the webhook receiver's socket: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("the webhook receiver's address: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("the webhook receiver's runtime: {e}"))?;
        std::thread::Builder::new()
            .name("webhook-receiver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => axum::serve(listener, app).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = served {
                        crate::progress(&format!("the webhook receiver stopped: {e}"));
                    }
                });
            })
            .map_err(|e| format!("the webhook receiver's thread: {e}"))?;
        Ok(Receiver {
            url: format!("http://{addr}/hook"),
            counts,
        })
    }

    /// Events received so far.
    pub fn events(&self) -> u64 {
        self.counts.events.load(Ordering::Relaxed)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }
}

async fn receive(State(counts): State<Arc<Counts>>, body: Bytes) -> StatusCode {
    counts
        .events
        .fetch_add(count_events(&body), Ordering::Relaxed);
    counts.requests.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// CloudEvents in a body: every event starts with its `specversion` attribute, which
/// no revision's data holds.
pub fn count_events(body: &[u8]) -> u64 {
    memchr::memmem::find_iter(body, b"\"specversion\":").count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted() {
        assert_eq!(count_events(br#"{"specversion":"1.0","id":"a"}"#), 1);
        assert_eq!(
            count_events(br#"[{"specversion":"1.0"},{"specversion":"1.0"}]"#),
            2
        );
        assert_eq!(count_events(b"[]"), 0);
    }

    #[tokio::test]
    async fn the_receiver_counts_what_it_is_sent() {
        let receiver = Receiver::start().await.expect("receiver");
        let client = crate::phase::client(1).expect("client");
        let status = client
            .post(&receiver.url)
            .body(r#"[{"specversion":"1.0"},{"specversion":"1.0"}]"#)
            .send()
            .await
            .expect("sent")
            .status();
        assert_eq!(status, 200);
        assert_eq!(receiver.events(), 2);
        assert_eq!(receiver.requests(), 1);
    }
}
