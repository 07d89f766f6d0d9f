//! Wiring: starts the parts a validated [`Config`] asks for ([`Roles`]) and runs them until
//! shutdown.
//!
//! [`prepare`] (`prepare.rs`) is the one step with side effects before anything starts.
//! [`run`] is what the integration tests call; the binary calls [`prepare`] and
//! [`run_prepared`], so that a bad secret exits with the configuration's code. Shutdown, in
//! order: stop accepting HTTP connections, let in-flight requests finish (bounded by
//! `http.shutdown_timeout`), stop the status endpoints, the reconciler and the session
//! projector together (`roles.rs`: each bounded, the budget derived), drain the NATS client.
//! After each (re)connect the server's version is logged and exported (`version.rs`).

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{AuthMode, Config};
use crate::health::{healthz, readyz, Readiness};
use crate::ingress::{handle_webhook, BodyLimitWatch, Ingress};
use crate::nats::stream::{keep_stream, StreamState};
use crate::nats::{connect, Publisher, Subjects};
use crate::pii::{KeyStore, PiiMode, Sealer};
use crate::telemetry::{flag, metrics_handle, NATS_CONNECTED};

mod prepare;
mod roles;
mod version;

pub use prepare::{prepare, result_schemas, Parts};
pub use roles::{shutdown_budget, Roles};
use roles::{Part, Running, NATS_DRAIN};
use version::{watch_server_version, ServerVersionWatch};

/// [`prepare`]s and runs the service on `listener` until `shutdown` is cancelled. `config`
/// must be validated.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let parts = prepare(&config)?;
    run_prepared(config, parts, listener, shutdown).await
}

/// Runs the service with the [`Parts`] that [`prepare`] built from `config`: starts the parts
/// its [`Roles`] name, serves HTTP until `shutdown`, then stops them within the budget
/// ([`roles::shutdown_budget`]).
pub async fn run_prepared(
    config: Config,
    parts: Parts,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let roles = Roles::of(&config);
    warn_at_start(&config, roles);
    let Parts {
        verifier,
        upstream,
        schemas,
        keks,
    } = parts;
    let subjects = Subjects::new(&config.nats.subject_prefix);
    // The recorder first, so the connection events are counted.
    let metrics = metrics_handle();
    NATS_CONNECTED.one().set(flag(false));
    let client = connect(&config.nats, true)
        .await
        .context("connecting to NATS")?;
    let mut running = Running::default();

    let server_version = Arc::new(ServerVersionWatch::new(client.clone()));
    running.push(Part::Aborted(tokio::spawn(watch_server_version(
        server_version.clone(),
        shutdown.clone(),
    ))));
    let scrape = Arc::new(Scrape {
        client: client.clone(),
        server_version,
        metrics,
    });

    // The data keys: sealing (ingress, reconciler), opening (result.get) and erasure.
    let keys = roles
        .uses_keys()
        .then(|| Arc::new(KeyStore::new(client.clone(), &config, keks)));
    if let Some(keys) = &keys {
        running.push(Part::Aborted(crate::pii::spawn_forget_erased(
            client.clone(),
            subjects.erased(),
            keys.clone(),
        )));
    }
    let sealer = Sealer::new(config.events.pii, keys);

    // One publisher for the stream keeper and the ingress.
    let publisher = Publisher::new(
        client.clone(),
        config.nats.publish_timeout,
        &config.nats.stream.name,
    );
    let stream_state = roles.keeps_stream().then(|| {
        let state = Arc::new(StreamState::default());
        let mut body_limit = BodyLimitWatch::new(&config);
        running.push(Part::Aborted(tokio::spawn(keep_stream(
            publisher.clone(),
            config.nats.stream.clone(),
            subjects.clone(),
            state.clone(),
            move |max_payload| {
                if roles.ingress {
                    body_limit.update(max_payload);
                }
            },
            shutdown.clone(),
        ))));
        state
    });

    let webhook = match (roles.ingress, &stream_state) {
        (true, Some(state)) => {
            let verifier = verifier.context("webhook.enabled, but no verifier was prepared")?;
            let ingress = Ingress {
                schemas: schemas.clone(),
                sealer: sealer.clone(),
                ..Ingress::new(
                    &config,
                    verifier,
                    publisher,
                    state.clone(),
                    shutdown.clone(),
                )
            };
            tracing::info!(
                path = %config.http.webhook_path,
                stream = %config.nats.stream.name,
                prefix = %subjects.prefix(),
                "webhook ingress enabled"
            );
            Some((config.http.webhook_path.clone(), Arc::new(ingress)))
        }
        _ => None,
    };

    // The status service's terminal states, shared with the projector in this process.
    let terminal = roles
        .shares_terminal_states()
        .then(|| crate::status::terminal_states(&config));
    if roles.status {
        let upstream = upstream.context("status.enabled, but no VX API client was prepared")?;
        if roles.reconciler {
            running.push(Part::reconciler(crate::reconcile::start(
                client.clone(),
                &config,
                upstream.clone(),
                sealer.clone(),
                shutdown.clone(),
            )));
        }
        let status = crate::status::start_with_upstream(
            &config,
            client.clone(),
            upstream,
            terminal.clone(),
            sealer,
        )
        .await?;
        running.push(Part::Status(Box::new(status)));
    }

    let view = roles.projector.then(|| {
        let view = Arc::new(crate::sessions::ViewState::default());
        let on_pending = (roles.reconciler && config.reconcile.watch_pending).then(|| {
            Arc::new(crate::reconcile::queue::Registrar::new(
                client.clone(),
                &config,
            )) as Arc<dyn crate::sessions::PendingHook>
        });
        running.push(Part::projector(crate::sessions::start(
            client.clone(),
            &config,
            view.clone(),
            on_pending,
            terminal,
            shutdown.clone(),
        )));
        view
    });

    let readiness = Readiness {
        client: client.clone(),
        stream: stream_state.filter(|_| roles.ingress),
        sessions: view.filter(|_| roles.view_in_readiness()),
    };
    let app = router(Routes {
        scrape,
        webhook,
        readiness,
    });
    serve(&config, roles, listener, app, &shutdown).await?;
    running.stop().await;
    match tokio::time::timeout(NATS_DRAIN, client.drain()).await {
        Ok(Ok(())) => tracing::info!("NATS connection drained"),
        Ok(Err(e)) => tracing::warn!(error = %e, "draining NATS failed"),
        Err(_) => tracing::warn!("draining NATS timed out"),
    }
    tracing::info!("vx-bridge stopped");
    Ok(())
}

/// The warnings a configuration earns at start: deprecated keys, personal data in clear, and
/// webhook authentication off.
fn warn_at_start(config: &Config, roles: Roles) {
    for warning in config.deprecations() {
        tracing::warn!("{warning}");
    }
    if config.events.pii == PiiMode::Clear && roles.uses_keys() {
        tracing::warn!(
            "PERSONAL DATA TRAVELS IN CLEAR (events.pii = \"clear\"): every event carries the VX body under `result`, readable by anyone who may read the stream, for as long as the stream keeps it, and erasure cannot reach it. Use this only where the NATS deployment is itself a PII zone; the default is \"encrypted\"."
        );
    }
    if roles.ingress && config.webhook.auth.mode().ok() == Some(AuthMode::None) {
        tracing::warn!(
            "WEBHOOK AUTHENTICATION IS OFF (webhook.auth.mode = \"none\"): anyone who can reach {} can publish events. Use this for tests only.",
            config.http.webhook_path
        );
    }
}

/// Serves `app` on `listener` until `shutdown` (or the server fails), then lets in-flight
/// requests finish within `http.shutdown_timeout`.
async fn serve(
    config: &Config,
    roles: Roles,
    listener: TcpListener,
    app: Router,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(listen = %listener.local_addr()?, "vx-bridge serving");
    let opts = crate::server::ServeOptions {
        header_timeout: config.http.header_timeout,
    };
    let mut server = tokio::spawn(crate::server::serve(listener, app, opts, shutdown.clone()));
    tokio::select! {
        res = &mut server => {
            shutdown.cancel();
            res.context("HTTP server task")?;
        }
        _ = shutdown.cancelled() => {
            tracing::info!(
                budget = ?shutdown_budget(config, roles),
                "shutting down: finishing in-flight requests"
            );
            match tokio::time::timeout(config.http.shutdown_timeout, &mut server).await {
                Ok(res) => res.context("HTTP server task")?,
                Err(_) => {
                    server.abort();
                    tracing::warn!(timeout = ?config.http.shutdown_timeout, "in-flight requests did not finish in time");
                }
            }
        }
    }
    Ok(())
}

/// What the HTTP router serves besides `/healthz`.
struct Routes {
    /// `GET /metrics`.
    scrape: Arc<Scrape>,
    /// `POST {http.webhook_path}`, when the ingress runs (`webhook.enabled`).
    webhook: Option<(String, Arc<Ingress>)>,
    /// `GET /readyz`.
    readiness: Readiness,
}

/// The HTTP router: `/healthz`, `/readyz`, `/metrics` and the webhook path, every error
/// answered as `application/problem+json` (routing misses and panics included). [`run`]
/// serves it; the router tests call it too.
fn router(routes: Routes) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(scrape).with_state(routes.scrape))
        .route("/readyz", get(readyz).with_state(routes.readiness));
    if let Some((path, ingress)) = routes.webhook {
        router = router.route(&path, post(handle_webhook).with_state(ingress));
    }
    router
        .layer(axum::middleware::map_response(
            crate::problem::routing_problems,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
}

/// What a `/metrics` scrape reads.
struct Scrape {
    client: async_nats::Client,
    server_version: Arc<ServerVersionWatch>,
    metrics: PrometheusHandle,
}

/// `GET /metrics`. The connection gauge is set by the connection's events, and again from the
/// client's own state at every scrape, so a lost or late event can never leave it wrong when
/// read. The server's version is looked at again too, so a scrape right after a connect has it.
async fn scrape(State(s): State<Arc<Scrape>>) -> String {
    let connected = s.client.connection_state() == async_nats::connection::State::Connected;
    crate::telemetry::NATS_CONNECTED
        .one()
        .set(crate::telemetry::flag(connected));
    s.server_version.refresh();
    let mut text = s.metrics.render();
    text.push_str(&s.server_version.gauge.render());
    text
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt as _;

    use super::*;
    use crate::secret::Secret;

    /// The router as `run` builds it for `config`, on a client that never connects (nothing
    /// listens on port 1): what the bridge serves while NATS is away.
    async fn app(config: &Config) -> Router {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("127.0.0.1:1")
            .await
            .expect("a client that retries in the background");
        let stream = Arc::new(StreamState::default());
        let verifier = prepare(config)
            .expect("auth config")
            .verifier
            .expect("webhook enabled");
        let publisher = Publisher::new(
            client.clone(),
            config.nats.publish_timeout,
            &config.nats.stream.name,
        );
        let ingress = Ingress::new(
            config,
            verifier,
            publisher,
            stream.clone(),
            CancellationToken::new(),
        );
        router(Routes {
            scrape: Arc::new(Scrape {
                client: client.clone(),
                server_version: Arc::new(ServerVersionWatch::new(client.clone())),
                metrics: metrics_handle(),
            }),
            webhook: Some((config.http.webhook_path.clone(), Arc::new(ingress))),
            readiness: Readiness {
                client,
                stream: Some(stream),
                sessions: None,
            },
        })
    }

    fn config() -> Config {
        let mut config = Config::default();
        config.events.pii = crate::config::PiiMode::Clear;
        config.webhook.auth.mode = Some(AuthMode::Basic);
        config.webhook.auth.basic.username = "vx".into();
        config.webhook.auth.basic.passwords = vec![Secret::new("router-test")];
        config
    }

    async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String, String) {
        let res = app.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn the_router_serves_health_readiness_and_metrics_while_nats_is_away() {
        let app = app(&config()).await;
        let (status, _, body) = call(&app, get("/healthz")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        let (status, _, body) = call(&app, get("/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let (status, _, body) = call(&app, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("vx_bridge_nats_connected 0"), "{body}");
    }

    #[tokio::test]
    async fn the_routers_own_refusals_and_the_webhooks_are_problems() {
        let config = config();
        let app = app(&config).await;
        let path = config.http.webhook_path.as_str();
        let webhook = |content_type: &str, auth: Option<&str>| {
            let mut req = Request::post(path).header(header::CONTENT_TYPE, content_type);
            if let Some(auth) = auth {
                req = req.header(header::AUTHORIZATION, auth);
            }
            req.body(Body::from("{}")).expect("request")
        };
        for (req, want) in [
            (get("/nope"), StatusCode::NOT_FOUND),
            (get(path), StatusCode::METHOD_NOT_ALLOWED),
            (
                Request::post("/healthz")
                    .body(Body::empty())
                    .expect("request"),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                webhook("text/plain", None),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (webhook("application/json", None), StatusCode::UNAUTHORIZED),
            (
                webhook("application/json", Some("Basic dng6d3Jvbmc=")),
                StatusCode::UNAUTHORIZED,
            ),
        ] {
            let what = format!("{} {}", req.method(), req.uri());
            let (status, content_type, body) = call(&app, req).await;
            assert_eq!(status, want, "{what}: {body}");
            assert_eq!(content_type, crate::problem::PROBLEM_JSON, "{what}");
        }
    }
}
