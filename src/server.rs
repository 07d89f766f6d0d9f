//! The HTTP server loop: accepts connections and serves the router on each, with the timeouts
//! `axum::serve` does not set.
//!
//! `axum::serve` builds hyper without a timer, so hyper's header read timeout is off: a client
//! that opens a connection and sends its headers a byte at a time (or nothing) holds a task and a
//! file descriptor for ever, and enough of them exhaust the process's descriptors (slowloris).
//! Here the header read timeout is `http.header_timeout` (the connection is closed when the
//! head is not complete in time, or when no byte at all arrives in that time); the body has its own bound (`http.body_timeout`, 408) in the
//! ingress. Shutdown: stop accepting, then let every connection finish its in-flight request
//! (the caller bounds the wait).

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time allowed to receive a request's head; slower → the connection is closed.
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
        .header_read_timeout(opts.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.header_timeout)
        .keep_alive_timeout(opts.header_timeout);
    let graceful = GracefulShutdown::new();
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
        let service = router
            .clone()
            .map_request(|req: Request<Incoming>| req.map(Body::new));
        let (builder, watcher, first_byte) =
            (builder.clone(), graceful.watcher(), opts.header_timeout);
        tokio::spawn(async move {
            // hyper arms its header timer on the first byte only: a connection that sends
            // nothing at all is closed here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(first_byte, stream.peek(&mut first)).await,
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
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
