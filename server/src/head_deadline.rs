//! The request-head deadline, kept apart from the idle keep-alive timeout.
//!
//! hyper has one timer for both: its `header_read_timeout` runs from the end of one
//! response to the end of the next request head, so an idle keep-alive connection is
//! closed when a slow head would be. The two want different values. A head should
//! arrive within seconds (slowloris clients trickle one byte at a time to hold sockets);
//! an idle connection should stay open longer than the load balancer in front keeps its
//! own idle backend connections (60 s on an AWS ALB), or the balancer reuses a connection
//! the server is closing at the same moment and answers its client 502.
//!
//! So hyper's timer is set to the keep-alive timeout, and [`HeadDeadlineIo`] adds the
//! head deadline: it starts when the connection is accepted (for the first request) or
//! when the first byte of a later request arrives, and a read after it has passed, with
//! no request started since, fails with [`std::io::ErrorKind::TimedOut`], which closes
//! the connection without an answer. [`track_requests`] tells it when a request starts
//! (its head is complete) and when its response is done, so body bytes and pipelined
//! bytes never start a head deadline.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What one connection's requests are doing, shared by its IO and its service.
#[derive(Debug, Default)]
pub struct ConnectionActivity {
    /// Requests whose head was complete, on this connection so far.
    started: AtomicU64,
    /// Whether a request is being served (from its complete head until its response
    /// body is done or dropped).
    in_request: AtomicBool,
}

impl ConnectionActivity {
    fn begin(&self) {
        self.in_request.store(true, Ordering::Release);
        self.started.fetch_add(1, Ordering::AcqRel);
    }
}

/// Marks the end of a request when dropped: hyper drops a response body once it is
/// written out, or when the connection ends.
#[derive(Debug)]
struct RequestInProgress(Arc<ConnectionActivity>);

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.0.in_request.store(false, Ordering::Release);
    }
}

/// The head deadline ran out.
#[derive(Debug, thiserror::Error)]
#[error("the request head was not complete within the header-read timeout")]
pub struct HeadDeadlineExpired;

/// A connection's socket that fails reads once a request head has taken longer than its
/// limit (see the module documentation).
///
/// `Unpin` (hyper's graceful shutdown needs it): the timer is boxed.
pub struct HeadDeadlineIo<I> {
    inner: I,
    deadline: Pin<Box<Sleep>>,
    /// The `started` count when the deadline was armed; `None` when not armed.
    armed_for: Option<u64>,
    limit: Duration,
    activity: Arc<ConnectionActivity>,
}

impl<I> HeadDeadlineIo<I> {
    /// Wraps a freshly accepted connection: its first request head must be complete
    /// within `limit` from now.
    pub fn new(inner: I, limit: Duration, activity: Arc<ConnectionActivity>) -> Self {
        HeadDeadlineIo {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            armed_for: Some(0),
            limit,
            activity,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadDeadlineIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let started = this.activity.started.load(Ordering::Acquire);
        let in_request = this.activity.in_request.load(Ordering::Acquire);
        if in_request || this.armed_for.is_some_and(|armed| armed != started) {
            // The head it was armed for is complete.
            this.armed_for = None;
        }
        if this.armed_for.is_some() && this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                HeadDeadlineExpired,
            )));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got_bytes = buf.filled().len() > before;
        if matches!(read, Poll::Ready(Ok(())))
            && got_bytes
            && !in_request
            && this.armed_for.is_none()
        {
            // The first byte of a new request head (hyper keeps reading until the head is
            // complete or the socket would block, so the next call polls the deadline and
            // registers its wake-up).
            this.deadline.as_mut().reset(Instant::now() + this.limit);
            this.armed_for = Some(started);
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadDeadlineIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// `app` for one connection, telling `activity` when each request starts and ends.
pub fn track_requests(
    app: Router,
    activity: Arc<ConnectionActivity>,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    let on_request = activity.clone();
    tower::ServiceBuilder::new()
        .map_request(move |request: Request<hyper::body::Incoming>| {
            on_request.begin();
            request
        })
        .map_response(move |response: Response| {
            let guard = RequestInProgress(activity.clone());
            response.map(|inner| Body::new(TrackedBody { inner, guard }))
        })
        .service(app)
}

pin_project_lite::pin_project! {
    /// A response body that ends its request when it is dropped.
    struct TrackedBody {
        #[pin]
        inner: Body,
        guard: RequestInProgress,
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
