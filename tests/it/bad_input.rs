//! The bad-input catalogue (reliability suite 6): every malformed request we could think of,
//! sent as raw bytes over TCP so that framing, encodings and headers are exactly as written.
//! Each case states its expected code; answers from the bridge are `application/problem+json`;
//! the service is healthy after every case; and at the end the stream holds exactly the
//! authenticated bodies that were refused (on `{prefix}.rejected`, sealed as the default mode
//! `events.pii = "encrypted"` says, and byte for byte once opened) plus the accepted ones,
//! nothing else.
//!
//! A few cases are refused by the HTTP parser (hyper) before any handler runs: framing errors
//! and oversized headers. Those answers carry no body ([`Shape::Parser`]); the catalogue pins
//! their codes so a change is noticed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use vx_testkit::{body_with, new_request_id};
use vx_testkit::{now, rejected_body, signed_headers, test_config, Bridge, NatsServer};

/// What the answer must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `application/problem+json` with `type`, `title`, `status`, `detail`.
    Problem,
    /// 202 with the stored event.
    Accepted,
    /// Refused by the HTTP parser: the code only, no body.
    Parser,
    /// No answer: the connection is closed by the server within the time limit.
    Closed,
}

/// Where the body must end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Not stored anywhere.
    Nothing,
    /// On `{prefix}.rejected`, encrypted (`vx-pii: encrypted`), byte for byte once opened.
    Rejected,
    /// As an event.
    Event,
}

/// How the request is written.
#[derive(Debug, Clone)]
enum Write {
    /// All at once, then the server's answer is read.
    Whole,
    /// The head, then `n` bytes of the body one at a time every `every`.
    SlowBody { n: usize, every: Duration },
    /// The head one byte at a time every `every`, never finishing it.
    SlowHead { every: Duration },
    /// Everything except the last `n` bytes, and the connection stays open.
    Short { n: usize },
}

struct Case {
    name: &'static str,
    /// The raw request bytes.
    request: Vec<u8>,
    write: Write,
    code: u16,
    shape: Shape,
    kept: Kept,
    /// The delivery id (for `Kept` checks), when signed with one.
    id: Option<String>,
    /// The body, for `Kept::Rejected` byte comparison.
    body: Vec<u8>,
}

impl Case {
    /// A request written whole, signed with delivery id `id`.
    fn whole(
        name: &'static str,
        request: Vec<u8>,
        id: String,
        body: Vec<u8>,
        code: u16,
        shape: Shape,
        kept: Kept,
    ) -> Self {
        Case {
            name,
            request,
            write: Write::Whole,
            code,
            shape,
            kept,
            id: Some(id),
            body,
        }
    }
}

struct Builder {
    addr: std::net::SocketAddr,
    path: String,
    hmac: vx_bridge::config::HmacConfig,
    n: usize,
}

impl Builder {
    fn next_id(&mut self, name: &str) -> String {
        self.n += 1;
        format!("bad_{}_{}", self.n, name.replace(' ', "_"))
    }

    /// A request with the given headers (each `name: value`, raw bytes) and body.
    fn raw(&self, head_lines: &[Vec<u8>], body: &[u8], content_length: bool) -> Vec<u8> {
        let mut r = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
            self.path, self.addr
        )
        .into_bytes();
        for l in head_lines {
            r.extend_from_slice(l);
            r.extend_from_slice(b"\r\n");
        }
        if content_length {
            r.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(body);
        r
    }

    fn signed_lines(&self, id: &str, body: &[u8], at: i64) -> Vec<Vec<u8>> {
        signed_headers(&self.hmac, body, at, id)
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}").into_bytes())
            .collect()
    }

    /// Signed JSON: `content-type: application/json`, a fresh delivery id, Content-Length.
    fn signed(&mut self, name: &'static str, body: Vec<u8>, code: u16, kept: Kept) -> Case {
        let id = self.next_id(name);
        let mut lines = vec![b"content-type: application/json".to_vec()];
        lines.extend(self.signed_lines(&id, &body, now()));
        let shape = if code == 202 {
            Shape::Accepted
        } else {
            Shape::Problem
        };
        let request = self.raw(&lines, &body, true);
        Case::whole(name, request, id, body, code, shape, kept)
    }

    /// [`Builder::with_headers`] for a request refused as unauthenticated: a 401 problem, and
    /// nothing kept.
    fn unauthorized(
        &mut self,
        name: &'static str,
        headers: impl FnOnce(&Self, &str, &[u8]) -> Vec<Vec<u8>>,
    ) -> Case {
        self.with_headers(name, headers, 401, Shape::Problem, Kept::Nothing)
    }

    /// A valid signed JSON request with the whole header line `extra` after the content type,
    /// that the HTTP parser refuses with its own 400; its delivery id is made from `id_name`.
    fn parser_400(&mut self, name: &'static str, id_name: &str, extra: &[u8]) -> Case {
        let id = self.next_id(id_name);
        let body = body_with("PASS", &new_request_id());
        let mut lines = vec![ct_json(), extra.to_vec()];
        lines.extend(self.signed_lines(&id, &body, now()));
        let request = self.raw(&lines, &body, true);
        Case::whole(name, request, id, vec![], 400, Shape::Parser, Kept::Nothing)
    }

    /// A signed request with the whole header line `content_type`, refused before the body is
    /// read: a 415 problem, nothing kept.
    fn unsupported(&mut self, name: &'static str, content_type: &'static [u8]) -> Case {
        self.with_headers(
            name,
            |b, id, body| typed(content_type, b.signed_lines(id, body, now())),
            415,
            Shape::Problem,
            Kept::Nothing,
        )
    }

    /// Signed JSON without the signature header `header`: [`Builder::unauthorized`].
    fn missing(&mut self, name: &'static str, header: &'static str) -> Case {
        self.unauthorized(name, |b, id, body| {
            then_json(set(b.signed_lines(id, body, now()), header, None))
        })
    }

    /// Valid body, headers as given (signature headers built by `headers` from id and body).
    fn with_headers(
        &mut self,
        name: &'static str,
        headers: impl FnOnce(&Self, &str, &[u8]) -> Vec<Vec<u8>>,
        code: u16,
        shape: Shape,
        kept: Kept,
    ) -> Case {
        let id = self.next_id(name);
        let body = body_with("PASS", &new_request_id());
        let lines = headers(self, &id, &body);
        let request = self.raw(&lines, &body, true);
        Case::whole(name, request, id, body, code, shape, kept)
    }
}

fn ct_json() -> Vec<u8> {
    b"content-type: application/json".to_vec()
}

/// `lines`, then `content-type: application/json`.
fn then_json(mut lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    lines.push(ct_json());
    lines
}

/// The whole header line `content_type`, then `lines`.
fn typed(content_type: &[u8], lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut l = vec![content_type.to_vec()];
    l.extend(lines);
    l
}

/// Replaces the value of header `name` in signed lines (or removes it when `value` is None).
fn set(lines: Vec<Vec<u8>>, name: &str, value: Option<&[u8]>) -> Vec<Vec<u8>> {
    let prefix = format!("{name}: ").into_bytes();
    let mut out: Vec<Vec<u8>> = lines
        .into_iter()
        .filter(|l| !l.starts_with(&prefix))
        .collect();
    if let Some(v) = value {
        let mut l = prefix;
        l.extend_from_slice(v);
        out.push(l);
    }
    out
}

fn seed_value() -> Value {
    serde_json::from_slice(&body_with("PASS", &new_request_id())).unwrap()
}

fn catalogue(b: &mut Builder) -> Vec<Case> {
    let rid = new_request_id();
    let valid = |status: &str| format!(r#"{{"request_id":"{rid}","status":"{status}"}}"#);
    let mut cases =
        vec![
        // --- Bodies that are not JSON (authenticated: 400, kept on `rejected`) ---
        b.signed("empty body", vec![], 400, Kept::Rejected),
        b.signed(
            "truncated JSON",
            valid("PASS").trim_end_matches('}').as_bytes().to_vec(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "invalid JSON",
            b"{request_id: nope}".to_vec(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "trailing garbage",
            format!("{} x", valid("PASS")).into_bytes(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "two JSON documents",
            format!("{}{}", valid("PASS"), valid("FAIL")).into_bytes(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "invalid UTF-8 in a string",
            format!(r#"{{"request_id":"{rid}","status":"PASS","reference":"X"}}"#)
                .replace("\"X\"", "\"\u{fffd}\"")
                .into_bytes()
                .into_iter()
                .map(|c| if c == 0xef { 0xff } else { c })
                .collect(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "UTF-8 byte order mark",
            [&[0xef, 0xbb, 0xbf][..], valid("PASS").as_bytes()].concat(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "UTF-16 encoded body",
            valid("PASS")
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "lone surrogate escape",
            format!(r#"{{"request_id":"{rid}","status":"PASS","reference":"\ud800"}}"#)
                .into_bytes(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "nesting 100000 deep",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "number beyond f64",
            format!(r#"{{"request_id":"{rid}","status":"PASS","n":1e400}}"#).into_bytes(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "duplicate key status",
            format!(r#"{{"request_id":"{rid}","status":"PASS","status":"FAIL"}}"#).into_bytes(),
            400,
            Kept::Rejected,
        ),
        b.signed(
            "duplicate key nested",
            format!(
                r#"{{"request_id":"{rid}","status":"PASS","journey":{{"stops":[],"stops":[1]}}}}"#
            )
            .into_bytes(),
            400,
            Kept::Rejected,
        ),
        // --- JSON that fails the schema (422, kept on `rejected`) ---
        b.signed("JSON array", b"[]".to_vec(), 422, Kept::Rejected),
        b.signed("JSON string", b"\"PASS\"".to_vec(), 422, Kept::Rejected),
        b.signed("JSON null", b"null".to_vec(), 422, Kept::Rejected),
        b.signed("empty object", b"{}".to_vec(), 422, Kept::Rejected),
        b.signed(
            "request_id path traversal",
            br#"{"request_id":"../../etc/passwd","status":"PASS"}"#.to_vec(),
            422,
            Kept::Rejected,
        ),
        b.signed(
            "request_id with subject wildcards",
            br#"{"request_id":"a.*.>","status":"PASS"}"#.to_vec(),
            422,
            Kept::Rejected,
        ),
        b.signed(
            "status is a number",
            format!(r#"{{"request_id":"{rid}","status":7}}"#).into_bytes(),
            422,
            Kept::Rejected,
        ),
        // --- Odd but valid: stored as events ---
        b.signed(
            "huge integer",
            format!(
                r#"{{"request_id":"{rid}","status":"PENDING","n":123456789012345678901234567890}}"#
            )
            .into_bytes(),
            202,
            Kept::Event,
        ),
        b.signed(
            "nesting 100 deep in an unknown field",
            format!(
                r#"{{"request_id":"{rid}","status":"PENDING","x":{}1{}}}"#,
                "[".repeat(100),
                "]".repeat(100)
            )
            .into_bytes(),
            202,
            Kept::Event,
        ),
        b.signed(
            "NUL and emoji escapes",
            format!(r#"{{"request_id":"{rid}","status":"PA\u0000SS","reference":"\ud83d\ude00"}}"#)
                .into_bytes(),
            202,
            Kept::Event,
        ),
        // --- Size ---
        {
            // 10 MB with Content-Length: refused from the header, before the body is read.
            let mut c = b.signed(
                "10 MB body",
                vec![b' '; 10 * 1024 * 1024],
                413,
                Kept::Nothing,
            );
            c.body.clear();
            c
        },
        {
            // 10 MB chunked: refused while reading, at the limit.
            let id = b.next_id("chunked 10 MB");
            let mut body = Vec::new();
            for _ in 0..160 {
                body.extend_from_slice(b"10000\r\n");
                body.extend_from_slice(&vec![b' '; 0x10000]);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            let mut lines = vec![ct_json(), b"transfer-encoding: chunked".to_vec()];
            lines.extend(b.signed_lines(&id, b"", now()));
            Case {
                name: "10 MB chunked body",
                request: b.raw(&lines, &body, false),
                write: Write::Whole,
                code: 413,
                shape: Shape::Problem,
                kept: Kept::Nothing,
                id: Some(id),
                body: vec![],
            }
        },
        // --- Content type (415, before the body is read) ---
        b.with_headers(
            "missing content type",
            |b, id, body| b.signed_lines(id, body, now()),
            415,
            Shape::Problem,
            Kept::Nothing,
        ),
        b.unsupported("text/plain", b"content-type: text/plain"),
        b.unsupported("form content type", b"content-type: application/x-www-form-urlencoded"),
        b.unsupported("application/jsonx", b"content-type: application/jsonx"),
        b.with_headers(
            "JSON with charset, upper case",
            |b, id, body| {
                typed(
                    b"content-type: Application/JSON; charset=UTF-8",
                    b.signed_lines(id, body, now()),
                )
            },
            202,
            Shape::Accepted,
            Kept::Event,
        ),
        // --- Signature headers (401, never parsed, never stored) ---
        b.unauthorized("no signature headers", |_, _, _| vec![ct_json()]),
        b.missing("missing webhook-signature", "webhook-signature"),
        b.missing("missing webhook-id", "webhook-id"),
        b.missing("missing webhook-timestamp", "webhook-timestamp"),
    ];
    let sig_variants: &[(&'static str, &[u8])] = &[
        ("empty signature", b""),
        (
            "signature without version",
            b"g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "signature version v2",
            b"v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        ("signature not base64", b"v1,!!!not-base64!!!"),
        ("signature truncated", b"v1,g0hM9SsE"),
        (
            "signature of another body",
            b"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        ("signature with only a comma", b","),
        ("signature obs-text bytes", b"v1,\xff\xfe\xfd"),
        ("signature 8 KB of v1 entries", &[]),
    ];
    for (name, value) in sig_variants {
        let value: Vec<u8> = if value.is_empty() && name.starts_with("signature 8 KB") {
            "v1,AAAA ".repeat(1000).into_bytes()
        } else {
            value.to_vec()
        };
        cases.push(b.unauthorized(name, move |b, id, body| {
            then_json(set(
                b.signed_lines(id, body, now()),
                "webhook-signature",
                Some(&value),
            ))
        }));
    }
    cases.push(
        b.unauthorized("webhook-signature sent twice", |b, id, body| {
            let mut l = b.signed_lines(id, body, now());
            l.push(b"webhook-signature: v1,AAAA".to_vec());
            then_json(l)
        }),
    );
    cases.push(b.with_headers(
        "a valid signature among bad ones",
        |b, id, body| {
            let l = b.signed_lines(id, body, now());
            let good = l
                .iter()
                .find_map(|x| x.strip_prefix(b"webhook-signature: ".as_slice()))
                .unwrap()
                .to_vec();
            let mut v = b"v1,AAAA v2,BBBB ".to_vec();
            v.extend_from_slice(&good);
            let l = set(l, "webhook-signature", Some(&v));
            then_json(l)
        },
        202,
        Shape::Accepted,
        Kept::Event,
    ));
    let ts_variants: &[(&'static str, i64)] = &[
        ("timestamp far past (epoch)", 0),
        ("timestamp 330 s old", now() - 330),
        ("timestamp 330 s ahead", now() + 330),
        ("timestamp far future (year 5138)", 99_999_999_999),
    ];
    for (name, at) in ts_variants {
        let at = *at;
        cases.push(b.unauthorized(name, move |b, id, body| {
            then_json(b.signed_lines(id, body, at))
        }));
    }
    for (name, ts) in [
        ("timestamp negative", &b"-5"[..]),
        ("timestamp fractional", b"1700000000.5"),
        ("timestamp 20 digits", b"17000000000000000000"),
        ("timestamp in milliseconds", b"1700000000000"),
        ("timestamp RFC 3339", b"2026-11-27T10:00:00Z"),
    ] {
        cases.push(b.unauthorized(name, move |b, id, body| {
            // Signed over the odd timestamp text, so only the timestamp check can refuse it.
            let mut l = b.signed_lines(id, body, now());
            l = set(l, "webhook-timestamp", Some(ts));
            then_json(l)
        }));
    }
    for (name, id) in [
        ("webhook-id with a space", "msg 1".to_owned()),
        ("webhook-id of 300 characters", "m".repeat(300)),
    ] {
        cases.push(b.unauthorized(name, move |b, _, body| {
            then_json(b.signed_lines(&id, body, now()))
        }));
    }
    // Header injection: a CRLF in what the sender means as the delivery id only ends the
    // header; the next line is a separate HTTP header that the bridge ignores, and the
    // Nats-Msg-Id is the signed id, not the injected one.
    cases.push(b.with_headers(
        "CRLF header injection into Nats-Msg-Id",
        |b, id, body| {
            let mut l = b.signed_lines(id, body, now());
            l.push(b"nats-msg-id: injected".to_vec());
            l.push(b"x-evil: 1\r\nnats-expected-stream: OTHER".to_vec());
            then_json(l)
        },
        202,
        Shape::Accepted,
        Kept::Event,
    ));
    cases.push(
        b.unauthorized("Basic credentials instead of a signature", |_, _, _| {
            vec![ct_json(), b"authorization: Basic dng6cDRzcw==".to_vec()]
        }),
    );
    cases.push(b.with_headers(
        "malformed traceparent is replaced",
        |b, id, body| {
            let mut l = b.signed_lines(id, body, now());
            l.push(b"traceparent: 00-zz-\xff-01".to_vec());
            then_json(l)
        },
        202,
        Shape::Accepted,
        Kept::Event,
    ));
    // --- Framing (refused by the HTTP parser or while reading the body) ---
    {
        let id = b.next_id("chunked valid");
        let body = body_with("FAIL", &new_request_id());
        let mut lines = vec![ct_json(), b"transfer-encoding: chunked".to_vec()];
        lines.extend(b.signed_lines(&id, &body, now()));
        let mut chunked = Vec::new();
        for part in body.chunks(100) {
            chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            chunked.extend_from_slice(part);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        cases.push(Case {
            name: "chunked body, signed",
            request: b.raw(&lines, &chunked, false),
            write: Write::Whole,
            code: 202,
            shape: Shape::Accepted,
            kept: Kept::Event,
            id: Some(id),
            body,
        });
        let id = b.next_id("chunked invalid");
        let mut lines = vec![ct_json(), b"transfer-encoding: chunked".to_vec()];
        lines.extend(b.signed_lines(&id, b"{}", now()));
        cases.push(Case {
            name: "chunked body with a bad chunk size",
            request: b.raw(&lines, b"zz\r\n{}\r\n0\r\n\r\n", false),
            write: Write::Whole,
            code: 400,
            shape: Shape::Problem,
            kept: Kept::Nothing,
            id: Some(id),
            body: vec![],
        });
    }
    cases.push(b.parser_400(
        "two different Content-Length headers",
        "two lengths",
        b"content-length: 3",
    ));
    {
        let id = b.next_id("cl and te");
        let mut lines = vec![ct_json(), b"transfer-encoding: chunked".to_vec()];
        lines.extend(b.signed_lines(&id, b"hello", now()));
        // Request smuggling shape: Content-Length and Transfer-Encoding together. As RFC 9112
        // says, the chunked framing wins (and the connection is closed after): the body read,
        // signed and kept is `hello`, not the Content-Length bytes.
        cases.push(Case {
            name: "Content-Length with Transfer-Encoding",
            request: b.raw(&lines, b"5\r\nhello\r\n0\r\n\r\n", true),
            write: Write::Whole,
            code: 400,
            shape: Shape::Problem,
            kept: Kept::Rejected,
            id: Some(id),
            body: b"hello".to_vec(),
        });
    }
    cases.push(b.parser_400(
        "obsolete header line folding",
        "obs fold",
        b"x-folded: a\r\n  continued",
    ));
    cases.push(b.with_headers(
        "one 1 MB header",
        |b, id, body| {
            let mut l = b.signed_lines(id, body, now());
            l.push(format!("x-big: {}", "a".repeat(1024 * 1024)).into_bytes());
            then_json(l)
        },
        431,
        Shape::Parser,
        Kept::Nothing,
    ));
    cases.push(b.with_headers(
        "200 headers",
        |b, id, body| {
            let mut l = b.signed_lines(id, body, now());
            l.extend((0..200).map(|i| format!("x-h{i}: {i}").into_bytes()));
            then_json(l)
        },
        431,
        Shape::Parser,
        Kept::Nothing,
    ));
    // --- Slow senders ---
    {
        let mut c = b.signed(
            "declared length longer than the body",
            valid("PASS").into_bytes(),
            408,
            Kept::Nothing,
        );
        c.write = Write::Short { n: 5 };
        cases.push(c);
        let mut c = b.signed(
            "slowloris body, 1 byte per 150 ms",
            valid("PASS").into_bytes(),
            408,
            Kept::Nothing,
        );
        c.write = Write::SlowBody {
            n: 20,
            every: Duration::from_millis(150),
        };
        cases.push(c);
        let mut c = b.signed(
            "slowloris headers",
            valid("PASS").into_bytes(),
            0,
            Kept::Nothing,
        );
        c.write = Write::SlowHead {
            every: Duration::from_millis(200),
        };
        c.shape = Shape::Closed;
        cases.push(c);
        let mut c = b.signed("connection that sends nothing", vec![], 0, Kept::Nothing);
        c.write = Write::Short { n: c.request.len() };
        c.shape = Shape::Closed;
        cases.push(c);
    }
    let _ = seed_value;
    cases
}

/// Status code, headers (lower-case names) and body of an HTTP/1.1 answer.
type Answer = (u16, BTreeMap<String, String>, Vec<u8>);

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let code = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<BTreeMap<_, _>>();
    let body = &raw[end + 4..];
    let len = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    match len {
        Some(n) if body.len() >= n => Some((code, headers, body[..n].to_vec())),
        Some(_) => None,
        None => Some((code, headers, body.to_vec())),
    }
}

/// Sends a case and returns the answer, or None when the server closed without one.
async fn exchange(addr: std::net::SocketAddr, case: &Case) -> Option<Answer> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let request = case.request.clone();
    let write = case.write.clone();
    let writer = tokio::spawn(async move {
        match write {
            Write::Whole => {
                let _ = wr.write_all(&request).await;
            }
            Write::Short { n } => {
                let _ = wr.write_all(&request[..request.len() - n]).await;
            }
            Write::SlowBody { n, every } => {
                let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let _ = wr.write_all(&request[..head_end]).await;
                for byte in request[head_end..].iter().take(n) {
                    if wr.write_all(&[*byte]).await.is_err() {
                        return wr;
                    }
                    tokio::time::sleep(every).await;
                }
            }
            Write::SlowHead { every } => {
                for byte in request.iter().take(200) {
                    if wr.write_all(&[*byte]).await.is_err() {
                        return wr;
                    }
                    tokio::time::sleep(every).await;
                }
            }
        }
        // Keep the write half open: a closed write half would end the body early.
        wr
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let reading = async {
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return parse_answer(&buf),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(a) = parse_answer(&buf) {
                        return Some(a);
                    }
                }
            }
        }
    };
    let answer = tokio::time::timeout(Duration::from_secs(20), reading)
        .await
        .unwrap_or_else(|_| panic!("{}: no answer and no close within 20 s", case.name));
    writer.abort();
    answer
}

#[tokio::test]
async fn bad_input_catalogue_answers_each_case_and_loses_nothing_authenticated() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.http.body_timeout = Duration::from_secs(1);
    config.http.header_timeout = Duration::from_secs(2);
    let bridge = Bridge::start(config).await;
    let mut b = Builder {
        addr: bridge.addr,
        path: bridge.config.http.webhook_path.clone(),
        hmac: bridge.config.webhook.auth.hmac.clone(),
        n: 0,
    };
    let cases = catalogue(&mut b);
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    for case in &cases {
        let started = Instant::now();
        let answer = exchange(bridge.addr, case).await;
        let took = started.elapsed();
        let got = answer.as_ref().map_or(0, |a| a.0);
        let mut problems = Vec::new();
        if got != case.code {
            problems.push(format!("code {got}, expected {}", case.code));
        }
        if let Some((code, headers, body)) = &answer {
            match case.shape {
                Shape::Problem => {
                    let ct = headers.get("content-type").map(String::as_str);
                    if ct != Some("application/problem+json") {
                        problems.push(format!("content-type {ct:?}"));
                    }
                    match serde_json::from_slice::<Value>(body) {
                        Ok(p) => {
                            let ok = p["status"] == *code
                                && p["type"]
                                    .as_str()
                                    .is_some_and(|t| t.starts_with("urn:vx-bridge:problem:"))
                                && p["title"].is_string()
                                && p["detail"].is_string();
                            if !ok {
                                problems.push(format!("not a problem: {p}"));
                            }
                        }
                        Err(e) => problems.push(format!("body not JSON: {e}")),
                    }
                }
                Shape::Accepted => {
                    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                    if v["seq"].as_u64().is_none() {
                        problems.push(format!("202 body {v}"));
                    }
                }
                Shape::Parser => {}
                Shape::Closed => problems.push("expected no answer".into()),
            }
        }
        let health = http.get(bridge.url("/healthz")).send().await;
        if !health.is_ok_and(|r| r.status() == 200) {
            problems.push("unhealthy afterwards".into());
        }
        eprintln!(
            "bad-input: {:<45} {:>3} in {:>5} ms {}",
            case.name,
            got,
            took.as_millis(),
            if problems.is_empty() { "ok" } else { "FAILED" }
        );
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }

    // What the stream holds: exactly the kept cases.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut stream = js
        .get_stream(&bridge.config.nats.stream.name)
        .await
        .unwrap();
    let total = stream.info().await.unwrap().state.messages;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    type Stored = (String, Option<async_nats::HeaderMap>, Vec<u8>);
    let mut stored: BTreeMap<String, Stored> = BTreeMap::new();
    let mut stored_ids: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let msg_id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .unwrap()
            .to_string();
        // Keyed by the delivery id; the message id binds it to the body it came with.
        let (delivery, bound) = msg_id.split_once(":sha256:").unwrap_or((&msg_id, ""));
        stored_ids.insert(delivery.to_owned(), bound.to_owned());
        stored.insert(
            delivery.to_owned(),
            (m.subject.to_string(), m.headers.clone(), m.payload.to_vec()),
        );
    }
    let prefix = &bridge.config.nats.subject_prefix;
    let mut expected = 0;
    for case in &cases {
        let Some(id) = &case.id else { continue };
        match case.kept {
            Kept::Nothing => {
                if stored.contains_key(id) || stored.contains_key(&format!("rejected:{id}")) {
                    failures.push(format!("{}: stored but refused", case.name));
                }
            }
            Kept::Rejected => {
                expected += 1;
                match stored.get(&format!("rejected:{id}")) {
                    Some((subject, headers, payload)) => {
                        // The default mode: the copy is a JWE, never the body in clear.
                        let pii = headers
                            .as_ref()
                            .and_then(|h| h.get("vx-pii"))
                            .map(|v| v.as_str().to_owned());
                        if pii.as_deref() != Some("encrypted") {
                            failures.push(format!("{}: rejected copy vx-pii {pii:?}", case.name));
                        }
                        let body =
                            rejected_body(&bridge.config, &client, headers.as_ref(), payload).await;
                        if subject != &format!("{prefix}.rejected") || body != case.body {
                            failures.push(format!("{}: rejected copy differs", case.name));
                        }
                    }
                    None => failures.push(format!("{}: refused body not kept", case.name)),
                }
            }
            Kept::Event => {
                expected += 1;
                if !stored.contains_key(id) {
                    failures.push(format!("{}: 202 but not stored", case.name));
                } else if format!("{id}:sha256:{}", stored_ids[id])
                    != vx_bridge::event::delivery_msg_id(id, &case.body)
                {
                    failures.push(format!("{}: Nats-Msg-Id not bound to the body", case.name));
                }
            }
        }
    }
    if stored.len() != expected {
        failures.push(format!(
            "stream holds {} messages, expected {expected}",
            stored.len()
        ));
    }
    let ready = http.get(bridge.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    eprintln!(
        "bad-input: {} cases, {} stored ({} expected)",
        cases.len(),
        stored.len(),
        expected
    );
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    let _ = json!(null);
}
