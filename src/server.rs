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

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
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
        let (active, mut activity) = watch::channel(0usize);
        let active = Arc::new(active);
        let service = router
            .clone()
            .map_request(|req: Request<Incoming>| req.map(Body::new))
            .map_future(move |fut| {
                let guard = InProgress::new(active.clone());
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
                    _ = idle_for(&mut activity, idle_timeout), if !closing => {
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

/// Counts a request as in progress on its connection while it lives.
struct InProgress(Arc<watch::Sender<usize>>);

impl InProgress {
    fn new(active: Arc<watch::Sender<usize>>) -> Self {
        active.send_modify(|n| *n += 1);
        Self(active)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Returns once no request has been in progress for `timeout` in a row.
async fn idle_for(activity: &mut watch::Receiver<usize>, timeout: Duration) {
    loop {
        if *activity.borrow_and_update() > 0 {
            if activity.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(timeout) => return,
            changed = activity.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}
