//! The HTTP edge: the limits that keep slow, greedy or hostile clients from exhausting the
//! server, and the accept loop that applies the connection-level ones.
//!
//! `axum::serve` sets no hyper timer, so it has no header-read timeout, no cap on open
//! connections and no deadline on graceful shutdown. [`serve`] is our own loop in the
//! pattern of axum's `serve-with-hyper` example (hyper's HTTP/1 connection builder,
//! hyper-util's `TokioIo`, `TowerToHyperService` and `GracefulShutdown`), which adds:
//!
//! - a header-read timeout ([`crate::head_deadline`]): a connection that has not sent a
//!   complete request head within it (from its accept, or from the first byte of a later
//!   request) is closed without an answer;
//! - an idle keep-alive timeout (hyper's header-read timer, driven by `TokioTimer`, which
//!   runs from the end of a response to the end of the next head): longer than a load
//!   balancer's own idle timeout, so the balancer never reuses a connection the server
//!   is closing;
//! - a cap on open connections: at the cap the loop stops calling `accept`, so new
//!   connections wait in the kernel's listen backlog (and, once that is full, the kernel
//!   refuses or drops them) until a connection closes — none is accepted only to be shut;
//! - a graceful shutdown with a deadline: on the signal the listener is closed, idle
//!   connections are closed, in-flight requests get up to the grace period to finish,
//!   and whatever is left after it is dropped.
//!
//! The request-level limits are middleware in [`crate::app`](mod@crate::app): the body-read deadline
//! ([`body_deadline`], 408), the whole-request timeout and load shedding
//! ([`overload_response`], 503 with `Retry-After`).

use std::fmt;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::BoxError;

use crate::error::ApiError;
use crate::head_deadline::{ConnectionActivity, HeadDeadlineIo, track_requests};

/// A duration setting: `10s`, `500ms`, `1m 30s` (humantime syntax); never zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting(Duration);

impl DurationSetting {
    /// A setting of `secs` seconds (for defaults and tests).
    pub const fn from_secs(secs: u64) -> DurationSetting {
        DurationSetting(Duration::from_secs(secs))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for DurationSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let duration = humantime::parse_duration(text.trim())
            .map_err(|e| format!("{e}; write a duration such as 10s, 500ms or 1m 30s"))?;
        if duration.is_zero() {
            return Err("must be more than zero".to_string());
        }
        Ok(DurationSetting(duration))
    }
}

impl fmt::Display for DurationSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl fmt::Debug for DurationSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Default of [`HttpLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: DurationSetting = DurationSetting::from_secs(10);
/// Default of [`HttpLimits::keep_alive_timeout`]: above the 60 s an AWS load balancer
/// keeps idle backend connections by default (nginx's default is the same 75 s).
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: DurationSetting = DurationSetting::from_secs(75);
/// Default of [`HttpLimits::body_read_timeout`].
pub const DEFAULT_BODY_READ_TIMEOUT: DurationSetting = DurationSetting::from_secs(30);
/// Default of [`HttpLimits::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: DurationSetting = DurationSetting::from_secs(60);
/// Default of [`HttpLimits::shutdown_grace`]: below the 30 s after which Kubernetes and
/// systemd follow SIGTERM with SIGKILL, so the drain ends on our terms.
pub const DEFAULT_SHUTDOWN_GRACE: DurationSetting = DurationSetting::from_secs(20);
/// Default of [`HttpLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");
/// Default of [`HttpLimits::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: NonZeroUsize = NonZeroUsize::new(1024).expect("non-zero");

/// The connection and request limits (`[http]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// A connection must send a complete request head within this (from its accept, or
    /// from the first byte of a later request), or it is closed.
    pub header_read_timeout: DurationSetting,
    /// How long a connection with no request in progress stays open (at least
    /// `header_read_timeout`); keep it above the idle timeout of a load balancer in front.
    pub keep_alive_timeout: DurationSetting,
    /// A request body must arrive completely within this after its head (408).
    pub body_read_timeout: DurationSetting,
    /// A request must be answered within this after its head (503 with `Retry-After`).
    pub request_timeout: DurationSetting,
    /// Open connections at most; beyond, new ones wait in the kernel's backlog.
    pub max_connections: NonZeroUsize,
    /// Requests in flight at most; beyond, new ones get 503 with `Retry-After` at once.
    pub max_in_flight: NonZeroUsize,
    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace: DurationSetting,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// How long the loop waits after an accept error that is not about one connection (such
/// as `EMFILE`, out of file descriptors) before accepting again; retrying at once would
/// spin on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then drains.
///
/// Returns once every connection has closed or the grace period is over, whichever is
/// first; connections still open then are dropped (their clients see the connection
/// close without an answer, and a write they had sent was never acknowledged).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let header_read_timeout = limits.header_read_timeout.get();
    let mut builder = http1::Builder::new();
    // hyper's header-read timer runs from the end of a response to the end of the next
    // request head: with the keep-alive timeout it bounds idle connections, and
    // `HeadDeadlineIo` bounds the heads themselves.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.keep_alive_timeout.get().max(header_read_timeout));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let max_connections = limits.max_connections.get();
    let mut at_cap = false;
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        if connections.len() >= max_connections {
            if !at_cap {
                tracing::warn!(
                    max_connections,
                    "open connections at the limit; new ones wait in the listen backlog"
                );
                at_cap = true;
            }
            tokio::select! {
                _ = connections.join_next() => continue,
                () = &mut shutdown => break,
            }
        }
        at_cap = false;
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                tracing::error!(%error, "cannot accept connections; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        // Answers are small and written whole: Nagle would only delay them.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let activity = Arc::new(ConnectionActivity::default());
        let io = HeadDeadlineIo::new(stream, header_read_timeout, activity.clone());
        let service = track_requests(app.clone(), activity);
        let connection =
            builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            // Header timeouts and clients that hang up land here: routine, not warnings.
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    drain(graceful, connections, limits.shutdown_grace.get()).await;
}

/// Closes idle connections, lets in-flight requests finish within `grace`, then drops
/// what is left.
async fn drain(graceful: GracefulShutdown, mut connections: JoinSet<()>, grace: Duration) {
    while connections.try_join_next().is_some() {}
    tracing::info!(
        open = connections.len(),
        grace = %humantime::format_duration(grace),
        "stopped accepting connections; waiting for in-flight requests"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        while connections.try_join_next().is_some() {}
        tracing::warn!(
            closing = connections.len(),
            "shutdown grace period over; closing the connections still open"
        );
    }
    connections.shutdown().await;
}

/// Accept errors about one connection (it was reset before we took it): skip it.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Maps the errors of the load-shedding and timeout layers to their 503 problem.
///
/// `request_timeout` is the configured limit, named in the detail.
pub fn overload_response(error: &BoxError, request_timeout: Duration) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!(crate::metrics::SHED).increment(1);
        ApiError::overloaded().into_response()
    } else if error.is::<tower::timeout::error::Elapsed>() {
        metrics::counter!(crate::metrics::TIMED_OUT).increment(1);
        ApiError::timed_out(request_timeout).into_response()
    } else {
        // The layers between the handler and here produce no other error.
        tracing::error!(%error, "unexpected error from the request limit layers");
        ApiError::internal().into_response()
    }
}

/// Middleware: the whole request body must arrive within `limit` of the request head,
/// else the answer is 408 and the connection is closed (its body was left unread).
///
/// Handlers read bodies through [`crate::body`], which answers a body read error with
/// 400; the flag set by `DeadlineBody` tells this middleware that the error was the
/// deadline, whatever the handler made of it.
pub async fn body_deadline(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: tokio::time::sleep(limit),
            expired: expired.clone(),
        })
    });
    let response = next.run(request).await;
    if expired.load(Ordering::Acquire) {
        return ApiError::body_timeout(limit).into_response();
    }
    response
}

/// Why a body read failed when its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive before its deadline")]
pub struct BodyDeadlineExpired;

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyDeadlineExpired`] once `deadline` passes
    /// before its end, and records that in `expired`.
    struct DeadlineBody {
        #[pin]
        inner: Body,
        #[pin]
        deadline: Sleep,
        expired: Arc<AtomicBool>,
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadlineExpired))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_human_units_and_zero_is_refused() {
        let parse = |text: &str| text.parse::<DurationSetting>().map(DurationSetting::get);
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse(" 1m 30s "), Ok(Duration::from_secs(90)));
        assert!(parse("0s").expect_err("zero").contains("more than zero"));
        assert!(parse("10").expect_err("no unit").contains("such as 10s"));
        assert_eq!(DurationSetting::from_secs(90).to_string(), "1m 30s");
    }

    #[test]
    fn limits_deserialize_with_defaults_and_refuse_unknown_keys_and_zeros() {
        let limits: HttpLimits =
            toml::from_str("request_timeout = \"5s\"\nmax_in_flight = 3\n").expect("valid");
        assert_eq!(limits.request_timeout.get(), Duration::from_secs(5));
        assert_eq!(limits.max_in_flight.get(), 3);
        assert_eq!(limits.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(limits.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert!(toml::from_str::<HttpLimits>("max_connections = 0\n").is_err());
        assert!(toml::from_str::<HttpLimits>("shutdown_grace = \"0s\"\n").is_err());
        assert!(toml::from_str::<HttpLimits>("header_timeout = \"1s\"\n").is_err());
    }

    #[tokio::test]
    async fn a_stalled_body_fails_at_its_deadline_and_a_complete_one_does_not() {
        let (sender, receiver) =
            futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        sender
            .unbounded_send(Ok(Bytes::from_static(b"{\"a\":")))
            .expect("receiver alive");
        let expired = Arc::new(AtomicBool::new(false));
        let stalled = DeadlineBody {
            inner: Body::from_stream(receiver),
            deadline: tokio::time::sleep(Duration::from_millis(50)),
            expired: expired.clone(),
        };
        let error = axum::body::to_bytes(Body::new(stalled), usize::MAX)
            .await
            .expect_err("the body stalls (its sender stays open)");
        assert!(error.to_string().contains("deadline"), "{error}");
        assert!(expired.load(Ordering::Acquire));
        drop(sender);

        let expired = Arc::new(AtomicBool::new(false));
        let complete = DeadlineBody {
            inner: Body::from("{}"),
            deadline: tokio::time::sleep(Duration::from_millis(50)),
            expired: expired.clone(),
        };
        let bytes = axum::body::to_bytes(Body::new(complete), usize::MAX)
            .await
            .expect("a complete body");
        assert_eq!(&bytes[..], b"{}");
        assert!(!expired.load(Ordering::Acquire));
    }
}
