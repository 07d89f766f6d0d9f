//! The HTTP server loop: accepts connections and serves the router on each, with the timeouts
//! `axum::serve` does not set.
//!
//! `axum::serve` builds hyper without a timer, so hyper's header read timeout is off: a client
//! that opens a connection and sends its headers a byte at a time (or nothing) holds a task and a
//! file descriptor for ever, and enough of them exhaust the process's descriptors (slowloris).
//! Here the header read timeout is `http.header_timeout` (the connection is closed when the
//! head is not complete in time, or when no byte at all arrives in that time); the body has its own bound (`http.body_timeout`, 408) in the
//! ingress. Any connection, HTTP/1 or HTTP/2 (h2c), with no request in progress for
//! `http.header_timeout` is closed gracefully: HTTP/2 has no header timeout between streams, and a
//! client that answers PINGs would otherwise keep its connection for ever. The HTTP/1 read
//! buffer is [`READ_BUFFER_BYTES`] (larger heads: 431, written by hyper without a body).
//! Shutdown: stop accepting, then let every connection finish its in-flight request (the caller
//! bounds the wait). This module knows no route and no NATS.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// Largest HTTP/1 read buffer of a connection: request heads above it are refused with 431.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time allowed to receive a request's head; slower → the connection is closed. Also the
    /// longest a connection (HTTP/1 or HTTP/2) may stay open with no request in progress.
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits for open connections
/// to finish their requests (idle ones are closed at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        // The read buffer bounds the head too (beyond → 431); hyper's default (~400 KB) per
        // connection would let idle clients hold memory outside the body budgets.
        .max_buf_size(READ_BUFFER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.header_timeout)
        .keep_alive_timeout(opts.header_timeout);
    let connections = TaskTracker::new();
    loop {
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Requests in progress on this connection, so that an idle one can be closed.
        let activity = Arc::new(Activity::new());
        let active = activity.clone();
        let service = router
            .clone()
            .map_request(|req: Request<Incoming>| req.map(Body::new))
            .map_future(move |fut| {
                let guard = active.begin();
                async move {
                    let res = fut.await;
                    drop(guard);
                    res
                }
            });
        let (builder, shutdown, idle_timeout) =
            (builder.clone(), shutdown.clone(), opts.header_timeout);
        connections.spawn(async move {
            // hyper arms its header timer on the first byte only: a connection that sends
            // nothing at all is closed here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(idle_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1))
            ) {
                return;
            }
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            let mut conn = std::pin::pin!(conn);
            let mut closing = false;
            loop {
                tokio::select! {
                    res = conn.as_mut() => {
                        if let Err(e) = res {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    // HTTP/2 has no header timeout between streams, and a client that answers
                    // PINGs keeps its connection for ever: close any connection idle this long.
                    _ = idle_for(&activity, idle_timeout), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    _ = shutdown.cancelled(), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Requests in progress on one connection and when the last one ended: plain atomics, so a
/// request's start and end wake nothing (the idle check looks at them when its timer fires).
struct Activity {
    in_progress: AtomicUsize,
    /// The connection's start, the origin of `last_end_nanos`.
    origin: Instant,
    /// When the last request ended (nanoseconds after `origin`); 0: none has yet.
    last_end_nanos: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_progress: AtomicUsize::new(0),
            origin: Instant::now(),
            last_end_nanos: AtomicU64::new(0),
        }
    }

    /// Counts a request as in progress until the guard is dropped.
    fn begin(self: &Arc<Self>) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        InProgress(self.clone())
    }

    /// Since when no request has been in progress; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_progress.load(Ordering::Acquire) > 0 {
            return None;
        }
        let nanos = self.last_end_nanos.load(Ordering::Acquire);
        Some(self.origin + Duration::from_nanos(nanos))
    }
}

/// Counts a request as in progress on its connection while it lives.
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        // The end time first: an idle check that sees no request in progress sees it too.
        let nanos = u64::try_from(self.0.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.last_end_nanos.fetch_max(nanos, Ordering::AcqRel);
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Returns once no request has been in progress for `timeout` in a row. One timer at a time,
/// re-armed for what is left of `timeout` when it fires early (a request ran meanwhile).
async fn idle_for(activity: &Activity, timeout: Duration) {
    let mut wait = timeout;
    loop {
        tokio::time::sleep(wait).await;
        wait = match activity.idle_since() {
            Some(since) => match timeout.checked_sub(since.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return,
            },
            None => timeout,
        };
    }
}
