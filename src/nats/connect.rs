//! The NATS connection: [`connect`] builds the client from `[nats]` (several URLs, creds, nkey,
//! token, user/password, TLS) and reconnects without end, keeping the connection gauge in step
//! with the client's events.
//!
//! This module must not publish, set up streams, or log a secret (it reads the secret files and
//! hands them to the client only).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::NatsConfig;
use crate::secret::read_secret_file;

/// Connects to NATS as `[nats]` says. With `retry_initial`, returns at once and keeps trying in
/// the background (the service starts while NATS is still coming up).
pub async fn connect(cfg: &NatsConfig, retry_initial: bool) -> anyhow::Result<async_nats::Client> {
    // Whether this client has ever been connected: the very first attempt at start-up goes at
    // once (readiness waits on it; async-nats calls the delay callback before every attempt,
    // the first included), while reconnects keep their back-off and jitter.
    let ever_connected = Arc::new(AtomicBool::new(false));
    let connected_flag = ever_connected.clone();
    let mut opts = async_nats::ConnectOptions::new()
        .name(&cfg.name)
        .max_reconnects(None::<usize>)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(move |attempts| {
            if attempts <= 1 && !ever_connected.load(Ordering::Relaxed) {
                return Duration::ZERO;
            }
            // 100, 200 … ms up to 2 s, with jitter so replicas do not reconnect in step.
            let base = (attempts as u64).saturating_mul(100).min(2000);
            Duration::from_millis(base + rand::random::<u64>() % 100)
        })
        .event_callback(move |event| {
            let connected_flag = connected_flag.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        connected_flag.store(true, Ordering::Relaxed);
                        crate::telemetry::NATS_CONNECTED
                            .one()
                            .set(crate::telemetry::flag(true));
                        tracing::info!(target: "vx_bridge::nats", "connected to NATS")
                    }
                    async_nats::Event::Disconnected => {
                        crate::telemetry::NATS_CONNECTED
                            .one()
                            .set(crate::telemetry::flag(false));
                        tracing::warn!(target: "vx_bridge::nats", "disconnected from NATS")
                    }
                    async_nats::Event::Closed => {
                        crate::telemetry::NATS_CONNECTED
                            .one()
                            .set(crate::telemetry::flag(false));
                        tracing::warn!(target: "vx_bridge::nats", "NATS connection closed")
                    }
                    other => {
                        tracing::info!(target: "vx_bridge::nats", event = %other, "NATS event")
                    }
                }
            }
        });
    if retry_initial {
        opts = opts.retry_on_initial_connect();
    }
    if let Some(path) = &cfg.creds_file {
        opts = opts.credentials_file(path).await?;
    }
    if let Some(path) = &cfg.nkey_seed_file {
        let seed = read_secret_file(path).map_err(anyhow::Error::msg)?;
        opts = opts.nkey(seed.expose().trim().to_owned());
    }
    if let Some(token) = &cfg.token {
        opts = opts.token(token.expose().to_owned());
    }
    if let Some(path) = &cfg.token_file {
        opts = opts.token(
            read_secret_file(path)
                .map_err(anyhow::Error::msg)?
                .expose()
                .to_owned(),
        );
    }
    if let Some(user) = &cfg.user {
        let password = match (&cfg.password, &cfg.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(path)) => read_secret_file(path).map_err(anyhow::Error::msg)?,
            (None, None) => Default::default(),
        };
        opts = opts.user_and_password(user.clone(), password.expose().to_owned());
    }
    if cfg.tls.required {
        opts = opts.require_tls(true);
    }
    if let Some(ca) = &cfg.tls.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let urls: Vec<String> = cfg
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    let addrs = urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("nats.url: {e}"))?;
    Ok(opts.connect(addrs).await?)
}
