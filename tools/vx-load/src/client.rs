//! The bare HTTP/1.1 client of the load modes: one hyper connection per worker (no pool), and a
//! blocking one-shot `GET` for readiness polls. Knows nothing of signing or of the bridge.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

/// Where a webhook goes: the TCP address, the `Host` header and the path.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) addr: String,
    pub(crate) authority: String,
    pub(crate) path: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = url.parse()?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "only http:// URLs are supported"
        );
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("URL without host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        Ok(Target {
            addr: format!("{}:{port}", authority.host()),
            authority: authority.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        })
    }
}

pub(crate) type Sender = http1::SendRequest<Full<Bytes>>;

async fn open(target: &Target) -> std::io::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(&target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One POST over `slot`'s connection (opened or re-opened as needed): the code (or error kind)
/// and, when `want_body`, the parsed JSON answer.
pub(crate) async fn post(
    slot: &mut Option<Sender>,
    target: &Target,
    headers: &[(String, String)],
    body: Bytes,
    want_body: bool,
) -> (String, serde_json::Value) {
    let attempt = async {
        if slot.is_none() {
            *slot = Some(open(target).await.map_err(|_| "connect_error")?);
        }
        let sender = slot.as_mut().ok_or("connect_error")?;
        sender.ready().await.map_err(|_| "io_error")?;
        let mut req = http::Request::post(target.path.as_str())
            .header(http::header::HOST, target.authority.as_str());
        // JSON unless the caller names another content type.
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new(body)).map_err(|_| "bad_request")?;
        let res = sender.send_request(req).await.map_err(|_| "io_error")?;
        let code = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|_| "io_error")?
            .to_bytes();
        let v = if want_body {
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Null
        };
        Ok::<_, &'static str>((code.to_string(), v))
    };
    match tokio::time::timeout(Duration::from_secs(30), attempt).await {
        Ok(Ok(r)) => r,
        Ok(Err(kind)) => {
            *slot = None;
            (kind.to_owned(), serde_json::Value::Null)
        }
        Err(_) => {
            *slot = None;
            ("timeout".to_owned(), serde_json::Value::Null)
        }
    }
}

/// Blocking: one `GET` over a new connection; the status code, if any.
pub(crate) fn get_status(addr: &str, authority: &str, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
