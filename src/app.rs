//! Wiring: builds the parts from a validated [`Config`] and runs them until shutdown.
//!
//! [`prepare`] is the one step with side effects before anything starts: it reads every secret
//! file once and builds the webhook verifier and the VX API client (`check-config` calls it
//! too). [`run`] is what the integration tests call; the binary calls [`prepare`] and
//! [`run_prepared`], so that a bad secret exits with the configuration's code. Shutdown, in order: stop
//! accepting HTTP connections, let in-flight requests finish (bounded by
//! `http.shutdown_timeout`), stop the status endpoints, the reconciler and the session projector, drain the
//! NATS client. After each (re)connect the server's version is logged and exported
//! ([`watch_server_version`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Verifier;
use crate::config::{AuthMode, Config, ConfigError};
use crate::health::{healthz, readyz, Readiness};
use crate::ingress::{handle_webhook, Ingress};
use crate::nats::stream::{keep_stream, StreamState};
use crate::nats::version::ServerVersion;
use crate::nats::{connect, Publisher, Subjects};
use crate::pii::{KekRing, KeyStore, PiiMode, Sealer};
use crate::schema::Schemas;
use crate::secret::{read_secret_lines, Secret};
use crate::telemetry::{metrics_handle, ServerInfoGauge};
use crate::upstream::clock::{Clock, SystemClock};
use crate::upstream::UpstreamClient;

/// What [`prepare`] builds from a validated [`Config`]: the parts that need secrets or files.
#[derive(Debug)]
pub struct Parts {
    /// The webhook verifier, when `webhook.enabled`.
    pub verifier: Option<Verifier>,
    /// The VX API client, when `status.enabled`.
    pub upstream: Option<Arc<UpstreamClient>>,
    /// The compiled schemas, with today's result schema ([`result_schemas`]).
    pub schemas: Schemas,
    /// The KEKs of `keys.kek_file`, when set.
    pub keks: Option<KekRing>,
}

/// Resolves every secret of the webhook and the status service once (inline or from its
/// `…_file`) and builds the verifier and the VX API client; every problem names its key.
/// `config` must be validated. NATS credentials are read when connecting. Reads
/// `webhook.schema_file` too ([`result_schemas`]).
pub fn prepare(config: &Config) -> Result<Parts, ConfigError> {
    let schemas = result_schemas(config)?;
    if config.needs_kek() && config.keys.kek_file.is_none() {
        return Err(ConfigError::new(
            "keys.kek_file",
            "events.pii = \"encrypted\" (the default) needs a KEK file (one `id:base64` of 32 random bytes per line, e.g. `echo \"k1:$(openssl rand -base64 32)\" > kek`), or set events.pii = \"clear\" or \"omitted\"",
        ));
    }
    let keks = crate::pii::kek::configured(config)?;
    let verifier = if config.webhook.enabled {
        let auth = &config.webhook.auth;
        let secrets = match auth.mode()? {
            AuthMode::None => Vec::new(),
            AuthMode::Basic => secret_list(
                &auth.basic.passwords,
                auth.basic.passwords_file.as_deref(),
                "webhook.auth.basic.passwords_file",
            )?,
            AuthMode::Hmac => secret_list(
                &auth.hmac.secrets,
                auth.hmac.secrets_file.as_deref(),
                "webhook.auth.hmac.secrets_file",
            )?,
        };
        Some(Verifier::from_config(auth, &secrets)?)
    } else {
        None
    };
    let upstream = if config.status.enabled {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Some(Arc::new(
            UpstreamClient::from_config(&config.upstream, clock)?.with_schemas(schemas.clone()),
        ))
    } else {
        None
    };
    Ok(Parts {
        verifier,
        upstream,
        schemas,
        keks,
    })
}

/// The schemas with today's result schema: `webhook.schema_file` read and compiled when set,
/// else the embedded `schemas/vx-result.schema.json`. Every problem is one error naming the key.
/// The one place the file is read (`prepare`, and `vx-bridge replay`, call it).
pub fn result_schemas(config: &Config) -> Result<Schemas, ConfigError> {
    const KEY: &str = "webhook.schema_file";
    let embedded = Schemas::get();
    let Some(path) = &config.webhook.schema_file else {
        return Ok(embedded);
    };
    let text = std::fs::read(path)
        .map_err(|e| ConfigError::new(KEY, format!("cannot read {}: {e}", path.display())))?;
    let schema: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| ConfigError::new(KEY, format!("{} is not JSON: {e}", path.display())))?;
    embedded
        .with_result_schema(&schema)
        .map_err(|e| ConfigError::new(KEY, format!("{}: {e}", path.display())))
}

/// The inline secrets followed by those of `file` (one a line), if set.
fn secret_list(
    inline: &[Secret],
    file: Option<&std::path::Path>,
    key: &str,
) -> Result<Vec<Secret>, ConfigError> {
    let mut out = inline.to_vec();
    if let Some(path) = file {
        out.extend(read_secret_lines(path).map_err(|e| ConfigError::new(key, e))?);
    }
    Ok(out)
}

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

/// Runs the service with the [`Parts`] that [`prepare`] built from `config`.
pub async fn run_prepared(
    config: Config,
    parts: Parts,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Parts {
        verifier,
        upstream,
        schemas,
        keks,
    } = parts;
    for warning in config.deprecations() {
        tracing::warn!("{warning}");
    }
    if config.events.pii == PiiMode::Clear && (config.webhook.enabled || config.status.enabled) {
        tracing::warn!(
            "PERSONAL DATA TRAVELS IN CLEAR (events.pii = \"clear\"): every event carries the VX body under `result`, readable by anyone who may read the stream, for as long as the stream keeps it, and erasure cannot reach it. Use this only where the NATS deployment is itself a PII zone; the default is \"encrypted\"."
        );
    }
    let subjects = Subjects::new(&config.nats.subject_prefix);
    // The recorder first, so the connection events are counted.
    let metrics = metrics_handle();
    crate::telemetry::set_nats_connected(false);
    let client = connect(&config.nats, true)
        .await
        .context("connecting to NATS")?;
    let server_version = Arc::new(ServerVersionWatch::new(client.clone()));
    let version_watch = tokio::spawn(watch_server_version(
        server_version.clone(),
        shutdown.clone(),
    ));
    let scrape = Arc::new(Scrape {
        client: client.clone(),
        server_version,
        metrics,
    });
    let mut webhook = None;
    let mut stream_state = None;
    let mut keeper = None;

    // The data keys: sealing (ingress, reconciler), opening (result.get) and erasure.
    let keys = (config.webhook.enabled || config.status.enabled)
        .then(|| Arc::new(KeyStore::new(client.clone(), &config, keks.clone())));
    let forget_erased = keys
        .clone()
        .map(|k| crate::pii::spawn_forget_erased(client.clone(), subjects.erased(), k));
    let sealer = Sealer::new(config.events.pii, keys.clone());

    if config.webhook.enabled {
        let verifier = verifier.context("webhook.enabled, but no verifier was prepared")?;
        if verifier.is_none() {
            tracing::warn!(
                "WEBHOOK AUTHENTICATION IS OFF (webhook.auth.mode = \"none\"): anyone who can reach {} can publish events. Use this for tests only.",
                config.http.webhook_path
            );
        }
        let publisher = Publisher::new(
            client.clone(),
            config.nats.publish_timeout,
            &config.nats.stream.name,
        );
        let state = Arc::new(StreamState::default());
        let max_body_bytes = config.http.max_body_bytes;
        let pii_mode = config.events.pii;
        let mut warned_limit = None;
        let body_limit = move |max_payload: usize| {
            let limit = crate::ingress::body_limit_for(max_body_bytes, max_payload, pii_mode);
            crate::telemetry::set_body_limit(limit);
            if limit < max_body_bytes && warned_limit != Some(max_payload) {
                warned_limit = Some(max_payload);
                tracing::warn!(
                    max_body_bytes,
                    max_payload,
                    limit,
                    "http.max_body_bytes does not fit the NATS server's max_payload with the headers of a copy kept on rejected: bodies above {limit} bytes are refused with 413; lower http.max_body_bytes or raise the server's max_payload"
                );
            }
        };
        keeper = Some(tokio::spawn(keep_stream(
            publisher.clone(),
            config.nats.stream.clone(),
            subjects.clone(),
            state.clone(),
            body_limit,
            shutdown.clone(),
        )));
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
        webhook = Some((config.http.webhook_path.clone(), Arc::new(ingress)));
        stream_state = Some(state);
        tracing::info!(
            path = %config.http.webhook_path,
            stream = %config.nats.stream.name,
            prefix = %subjects.prefix(),
            "webhook ingress enabled"
        );
    }

    if keeper.is_none() && config.reconcile_enabled() {
        // Polling mode (no ingress): the reconciler publishes events, so the stream is kept too.
        let publisher = Publisher::new(
            client.clone(),
            config.nats.publish_timeout,
            &config.nats.stream.name,
        );
        keeper = Some(tokio::spawn(keep_stream(
            publisher,
            config.nats.stream.clone(),
            subjects.clone(),
            Arc::new(StreamState::default()),
            |_| {},
            shutdown.clone(),
        )));
    }

    // The status service's terminal states, shared with the projector in this process.
    let terminal = (config.status.enabled && config.sessions.enabled)
        .then(|| crate::status::terminal_states(&config));
    let (status, reconciler) = if config.status.enabled {
        let upstream = upstream.context("status.enabled, but no VX API client was prepared")?;
        let reconciler = config.reconcile_enabled().then(|| {
            crate::reconcile::start(
                client.clone(),
                &config,
                upstream.clone(),
                sealer.clone(),
                shutdown.clone(),
            )
        });
        let status = crate::status::start_with_upstream(
            &config,
            client.clone(),
            upstream,
            terminal.clone(),
            sealer.clone(),
        )
        .await?;
        (Some(status), reconciler)
    } else {
        (None, None)
    };

    let (sessions, projector) = if config.sessions.enabled {
        let view = Arc::new(crate::sessions::ViewState::default());
        let on_pending =
            (config.reconcile_enabled() && config.reconcile.watch_pending).then(|| {
                Arc::new(crate::reconcile::queue::Registrar::new(
                    client.clone(),
                    &config,
                )) as Arc<dyn crate::sessions::PendingHook>
            });
        let task = crate::sessions::start(
            client.clone(),
            &config,
            view.clone(),
            on_pending,
            terminal,
            shutdown.clone(),
        );
        (Some(view), Some(task))
    } else {
        (None, None)
    };

    let readiness = Readiness {
        client: client.clone(),
        stream: stream_state,
        // As the stream, the view is part of readiness where the ingress runs, and in a
        // projector-only process (the view is all it does); a status-only process stays ready
        // without it (lookups do not depend on it).
        sessions: sessions.filter(|_| config.webhook.enabled || !config.status.enabled),
    };
    let app = router(Routes {
        scrape,
        webhook,
        readiness,
    });

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
            tracing::info!("shutting down: finishing in-flight requests");
            match tokio::time::timeout(config.http.shutdown_timeout, &mut server).await {
                Ok(res) => res.context("HTTP server task")?,
                Err(_) => {
                    server.abort();
                    tracing::warn!(timeout = ?config.http.shutdown_timeout, "in-flight requests did not finish in time");
                }
            }
        }
    }
    if let Some(s) = status {
        s.stop().await;
    }
    if let Some(k) = keeper {
        k.abort();
    }
    if let Some(r) = reconciler {
        // It stops on `shutdown`, after the checks in hand (bounded).
        let bound = crate::reconcile::CHECK_DEADLINE + Duration::from_secs(1);
        if tokio::time::timeout(bound, r).await.is_err() {
            tracing::warn!("reconciler did not stop in time");
        }
    }
    if let Some(p) = projector {
        // It stops on `shutdown`, after the events in hand (bounded); ack before the drain.
        if tokio::time::timeout(Duration::from_secs(6), p)
            .await
            .is_err()
        {
            tracing::warn!("session projector did not stop in time");
        }
    }
    version_watch.abort();
    if let Some(f) = forget_erased {
        f.abort();
    }
    match tokio::time::timeout(Duration::from_secs(5), client.drain()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "draining NATS failed"),
        Err(_) => tracing::warn!("draining NATS timed out"),
    }
    tracing::info!("vx-bridge stopped");
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
    crate::telemetry::set_nats_connected(
        s.client.connection_state() == async_nats::connection::State::Connected,
    );
    s.server_version.refresh();
    let mut text = s.metrics.render();
    text.push_str(&s.server_version.gauge.render());
    text
}

/// How often the server's `INFO` is looked at (a local read: async-nats keeps the last `INFO`).
const VERSION_CHECK: Duration = Duration::from_secs(1);

/// The NATS server's version as last seen, and its gauge.
struct ServerVersionWatch {
    client: async_nats::Client,
    gauge: ServerInfoGauge,
    /// The `INFO` version string last reported.
    seen: std::sync::Mutex<Option<String>>,
}

impl ServerVersionWatch {
    fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            gauge: ServerInfoGauge::new(),
            seen: std::sync::Mutex::new(None),
        }
    }

    /// Reports the server's version when it differs from the last one seen (the first connect, a
    /// reconnect to another server, or the server upgraded under us).
    fn refresh(&self) {
        let Some(info) = self.client.try_server_info() else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.as_deref() == Some(info.version.as_str()) {
            return;
        }
        report_server_version(
            &ServerVersion::parse(&info.version),
            &info.server_name,
            &self.gauge,
        );
        *seen = Some(info.version);
    }
}

/// Looks at the server's version every [`VERSION_CHECK`] (and `/metrics` on every scrape).
async fn watch_server_version(watch: Arc<ServerVersionWatch>, shutdown: CancellationToken) {
    loop {
        watch.refresh();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(VERSION_CHECK) => {}
        }
    }
}

/// Logs and exports one server version (a warning for a data-loss release, an unsupported one,
/// and 2.9), in one place.
fn report_server_version(version: &ServerVersion, server_name: &str, gauge: &ServerInfoGauge) {
    let support = version.support();
    let caps = version.capabilities();
    let label = version.label();
    gauge.set(label.clone(), support.label());
    match version.warning() {
        Some(warning) => tracing::warn!(
            target: "vx_bridge::nats",
            version = %label,
            support = support.label(),
            server = %server_name,
            "{warning}"
        ),
        None => tracing::info!(
            target: "vx_bridge::nats",
            version = %label,
            support = support.label(),
            server = %server_name,
            message_ttl = caps.message_ttl,
            message_schedules = caps.message_schedules,
            "NATS server version"
        ),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

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
