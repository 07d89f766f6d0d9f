//! Data protection: personal data (the VX body, every rejected body) leaves the bridge for NATS
//! only encrypted under its session's own data key (`events.pii = "encrypted"`), so that
//! retention and erasure are key deletion (crypto-shredding) and reach every copy: the stream,
//! its mirrors and backups, a consumer's replay. `design.md`, "Data protection", is the contract.
//!
//! - [`jwe`]: the compact JWE (`dir`, `A256GCM`) every encrypted value is written in;
//! - [`kek`]: the key-encryption keys of `keys.kek_file`;
//! - [`keys`]: the data keys in the KV bucket `keys.bucket`, cached, made with one
//!   compare-and-set, erased as a tombstone, re-wrapped;
//! - [`erase`]: erasing one session (the `{prefix}.erase` endpoint and `vx-bridge erase`);
//! - [`Sealer`] (here): what the ingress, the reconciler and `replay` call to turn a body into
//!   the form that goes on the bus; [`open`] the way back, for `result.get`, `replay` and the
//!   Rust consumer kit.
//!
//! Must not log, format or put in an error any key, KEK or plaintext; must not touch the
//! event stream's configuration or the HTTP path.

pub mod erase;
pub mod jwe;
pub mod kek;
pub mod keys;

use std::sync::Arc;

pub use crate::config::PiiMode;
pub use kek::KekRing;
pub use keys::{DataKey, KeyError, KeyStore, Lookup};

use crate::event::{carried_pii, CarriedPii, Pii};

/// How one body goes on the bus, once its key was looked up.
#[derive(Debug, Clone)]
pub enum Sealed {
    /// In clear (`events.pii = "clear"`).
    Clear,
    /// This compact JWE.
    Encrypted(String),
    /// Not at all (`events.pii = "omitted"`).
    Omitted,
    /// Not at all: the session was erased.
    Erased,
}

impl Sealed {
    /// The form [`crate::event`] writes, for the body `raw`.
    pub fn form<'a>(&'a self, raw: &'a [u8]) -> Pii<'a> {
        match self {
            Sealed::Clear => Pii::Clear(raw),
            Sealed::Encrypted(jwe) => Pii::Encrypted(jwe),
            Sealed::Omitted => Pii::Omitted,
            Sealed::Erased => Pii::Erased,
        }
    }
}

/// Seals bodies for the bus by `events.pii`.
#[derive(Debug, Clone)]
pub struct Sealer {
    mode: PiiMode,
    keys: Option<Arc<KeyStore>>,
}

impl Sealer {
    /// A sealer for `mode`; `keys` is needed for `encrypted` (and to honour erasure in the
    /// other modes: an erased session's later events carry no personal data in any mode).
    pub fn new(mode: PiiMode, keys: Option<Arc<KeyStore>>) -> Sealer {
        Sealer { mode, keys }
    }

    /// A sealer that writes everything in clear, with no keys (tests, benches).
    pub fn clear() -> Sealer {
        Sealer::new(PiiMode::Clear, None)
    }

    /// The mode.
    pub fn mode(&self) -> PiiMode {
        self.mode
    }

    /// The key store, if any.
    pub fn keys(&self) -> Option<&Arc<KeyStore>> {
        self.keys.as_ref()
    }

    /// Seals `raw`, the body of session `kid` (a lower-case request_id, or a day key for a
    /// rejected body without one): under the session's data key (made if new) in mode
    /// `encrypted`. In every mode, a session whose key is a tombstone gets [`Sealed::Erased`]
    /// when the mode needs a key lookup anyway (`encrypted`); in `clear` and `omitted` no key
    /// is read, so there is no per-webhook cost there.
    pub async fn seal(&self, kid: &str, raw: &[u8]) -> Result<Sealed, KeyError> {
        match self.mode {
            PiiMode::Clear => Ok(Sealed::Clear),
            PiiMode::Omitted => Ok(Sealed::Omitted),
            PiiMode::Encrypted => {
                let keys = self.keys.as_ref().ok_or(KeyError::NoKek)?;
                match keys.data_key(kid).await? {
                    DataKey::Active(k) => jwe::encrypt(&k, kid, raw)
                        .map(Sealed::Encrypted)
                        .map_err(KeyError::Jwe),
                    DataKey::Erased => Ok(Sealed::Erased),
                }
            }
        }
    }
}

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The session was erased: its key is a tombstone.
    #[error("erased")]
    Erased,
    /// No key: past `retention.pii` (or never made).
    #[error("expired")]
    Expired,
    /// The JWE's `kid` is not the session it claims to be about.
    #[error("the ciphertext belongs to another session")]
    WrongSession,
    /// The keys bucket could not answer.
    #[error("the keys bucket could not answer")]
    Keys(#[source] KeyError),
    /// The value is not a JWE that opens under the session's key.
    #[error("the ciphertext does not open")]
    Jwe(#[source] jwe::JweError),
}

/// Opens `compact`, the JWE of session `kid` (its `kid` header must say so), with the session's
/// key from `keys`: the plaintext, byte for byte as it was sealed.
pub async fn open(keys: &KeyStore, kid: &str, compact: &str) -> Result<Vec<u8>, OpenError> {
    let header_kid = jwe::kid(compact).map_err(OpenError::Jwe)?;
    if header_kid != kid {
        return Err(OpenError::WrongSession);
    }
    match keys.lookup(kid).await.map_err(OpenError::Keys)? {
        Lookup::Missing => Err(OpenError::Expired),
        Lookup::Found(DataKey::Erased) => Err(OpenError::Erased),
        Lookup::Found(DataKey::Active(k)) => jwe::decrypt(&k, compact)
            .map(|(_, plain)| plain)
            .map_err(OpenError::Jwe),
    }
}

/// Opens an event's personal data: the `result` (clear) or the decrypted `result_encrypted` of
/// an event body, as raw bytes. `Ok(None)`: the event carries none (`omitted`, or erased before
/// it was written).
pub async fn open_event(
    keys: Option<&KeyStore>,
    event: &[u8],
) -> Result<Option<Vec<u8>>, OpenError> {
    let (request_id, pii) = carried_pii(event).ok_or(OpenError::Jwe(jwe::JweError::Malformed))?;
    match pii {
        CarriedPii::Clear(r) => Ok(Some(r.to_vec())),
        CarriedPii::Absent => Ok(None),
        CarriedPii::Encrypted(compact) => {
            let keys = keys.ok_or(OpenError::Keys(KeyError::NoKek))?;
            open(keys, &request_id.to_ascii_lowercase(), &compact)
                .await
                .map(Some)
        }
    }
}

/// Drops erased sessions' keys from `keys`' memory as `{prefix}.erased` messages arrive (a
/// core subscription: every replica hears of an erasure made by any other), until the client
/// closes. A replica that missed one forgets the key within [`keys::KEY_CACHE_TTL`] anyway.
pub fn spawn_forget_erased(
    client: async_nats::Client,
    subject: String,
    keys: Arc<KeyStore>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use futures::StreamExt as _;
        let mut sub = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%subject, error = %e, "cannot subscribe to erasures; cached data keys of sessions erased elsewhere are dropped only by their TTL");
                return;
            }
        };
        while let Some(msg) = sub.next().await {
            #[derive(serde::Deserialize)]
            struct Erased {
                request_id: String,
            }
            if let Ok(e) = serde_json::from_slice::<Erased>(&msg.payload) {
                keys.forget(&e.request_id.to_ascii_lowercase());
            }
        }
    })
}
