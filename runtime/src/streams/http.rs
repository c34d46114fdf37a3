//! `GET /streams/<namespace>/<bridge>/<stream>`: checks (method, auth, limits, replay
//! point) answered with a status before anything is streamed, then Server-Sent Events or a
//! WebSocket.
//!
//! SSE: each event is `id: <event id>` and its body as `data:` lines; heartbeats are
//! comment lines; the worker ends a stream with an `event: error` whose data is JSON
//! (`{"error": …}`). WebSocket: each event is a text message
//! `{"id": "<event id>", "data": <body: JSON as it is, else a string>}`; heartbeats are
//! pings; the last message before the worker closes is `{"error": …}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use causeway_config::{AuthConfig, StreamConfig};
use causeway_pipeline::Inbound;
use causeway_pipeline::auth::{AuthReason, Verifier};
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody as HttpStreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::consumer::{Consumer, Out, Settings};
use super::{ConnState, id_before, id_floor, id_ms};
use crate::listener::ConnInfo;
use crate::shared::Shared;
use crate::store::{EventId, StreamRead, now_ms};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every ingress response: whole, or a stream of SSE frames.
pub type StreamBody = UnsyncBoxBody<Bytes, BoxError>;

fn whole(resp: Response<Full<Bytes>>) -> Response<StreamBody> {
    resp.map(|b| b.map_err(|never: Infallible| match never {}).boxed_unsync())
}

fn error(status: StatusCode, message: &str) -> Response<StreamBody> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::json!({ "error": message }).to_string(),
    )));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    whole(resp)
}

/// `(namespace, bridge, stream)` of a stream path.
pub(super) fn parse_path(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/streams/")?;
    let mut it = rest.split('/');
    let (ns, b, s) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || ns.is_empty() || b.is_empty() || s.is_empty() {
        return None;
    }
    Some((ns, b, s))
}

/// Serve a request on the ingress port: a stream when the path names a bridge's stream,
/// else whatever `other` answers (bridges and plugin routes).
pub async fn serve<B, F, Fut>(
    shared: &Arc<Shared>,
    req: Request<B>,
    other: F,
) -> Response<StreamBody>
where
    F: FnOnce(Request<B>) -> Fut,
    Fut: std::future::Future<Output = Response<Full<Bytes>>>,
{
    let target = parse_path(req.uri().path()).and_then(|(ns, b, s)| {
        let active = shared.active();
        let bridge = active.bridges.get(&format!("{ns}/{b}"))?.clone();
        Some((bridge, s.to_string()))
    });
    let Some((bridge, stream)) = target else {
        return whole(other(req).await);
    };
    let Some(cfg) = bridge
        .cfg
        .streams
        .iter()
        .find(|s| s.name == stream)
        .cloned()
    else {
        return error(
            StatusCode::NOT_FOUND,
            "the bridge has no stream of this name",
        );
    };
    stream_request(shared, &bridge.key, cfg, req).await
}

/// Where a consumer starts: after this id (replayed from the store), or live.
pub(super) enum Start {
    Live,
    After(EventId),
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

pub(super) fn percent_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The replay point: `Last-Event-ID` (resume after it), `?from=<id>` (from it, inclusive)
/// or `?since=<RFC 3339 time>` (events received at or after it). At most one.
pub(super) fn start_of(headers: &HeaderMap, query: &str) -> Result<Start, String> {
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::trim).unwrap_or("\u{0}"))
        .filter(|v| !v.is_empty());
    let from = query_param(query, "from");
    let since = query_param(query, "since");
    let given = [last.is_some(), from.is_some(), since.is_some()];
    if given.iter().filter(|x| **x).count() > 1 {
        return Err("give one of Last-Event-ID, from and since".into());
    }
    let parse_id = |what: &str, v: &str| {
        EventId::parse_str(v).map_err(|_| format!("{what} {v:?} is not an event id"))
    };
    if let Some(v) = last {
        return Ok(Start::After(parse_id("Last-Event-ID", v)?));
    }
    if let Some(v) = from {
        return Ok(Start::After(id_before(parse_id("from", &v)?)));
    }
    if let Some(v) = since {
        let t = time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                format!("since {v:?} is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)")
            })?;
        let ms = u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        return Ok(Start::After(id_before(id_floor(ms))));
    }
    Ok(Start::Live)
}

/// 401 (no or wrong credentials) or 403 (an authentic token not meant for this stream).
fn auth_status(reason: AuthReason) -> StatusCode {
    match reason {
        AuthReason::WrongIssuer | AuthReason::WrongAudience => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// Who the consumer is, for its connection limit: a digest of its credential (never the
/// credential), or its address without auth.
fn consumer_of(auth: Option<&AuthConfig>, headers: &HeaderMap, query: &str, peer: &str) -> String {
    use sha2::Digest as _;
    let credential = match auth {
        None => return format!("addr:{peer}"),
        Some(AuthConfig::ApiKey {
            query_param: Some(q),
            ..
        }) => query_param(query, q).map(|v| v.into_owned()),
        Some(AuthConfig::ApiKey {
            header: Some(h), ..
        }) => headers
            .get(h.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        Some(_) => headers
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    };
    let digest = sha2::Sha256::digest(credential.unwrap_or_default().as_bytes());
    format!("cred:{}", hex::encode(&digest[..12]))
}

fn is_websocket(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

fn wants_sse(headers: &HeaderMap) -> bool {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .collect();
    accept.is_empty()
        || accept
            .iter()
            .any(|t| t.eq_ignore_ascii_case("text/event-stream") || *t == "*/*")
}

async fn stream_request<B>(
    shared: &Arc<Shared>,
    bridge: &str,
    cfg: StreamConfig,
    mut req: Request<B>,
) -> Response<StreamBody> {
    let streams = &shared.streams;
    let m = &streams.metrics;
    let refuse = |reason: &str, status: StatusCode, message: &str| {
        m.refused
            .with_label_values(&[bridge, &cfg.name, reason])
            .inc();
        error(status, message)
    };
    if req.method() != http::Method::GET {
        let mut resp = refuse(
            "method_not_allowed",
            StatusCode::METHOD_NOT_ALLOWED,
            "streams answer GET only",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    let ws = is_websocket(req.headers());
    if !ws && !wants_sse(req.headers()) {
        return refuse(
            "not_acceptable",
            StatusCode::NOT_ACCEPTABLE,
            "a stream is served as text/event-stream or over a WebSocket upgrade",
        );
    }
    let ws_key = if ws {
        let version_ok = req
            .headers()
            .get("sec-websocket-version")
            .is_some_and(|v| v == "13");
        match req.headers().get("sec-websocket-key") {
            Some(k) if version_ok => Some(k.clone()),
            _ => {
                return refuse(
                    "bad_request",
                    StatusCode::BAD_REQUEST,
                    "a WebSocket upgrade needs Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key",
                );
            }
        }
    } else {
        None
    };
    let query = req.uri().query().unwrap_or("").to_string();
    if let Some(auth) = &cfg.auth {
        let verifier = match Verifier::new(auth) {
            Ok(v) => v,
            Err(e) => {
                debug!(error = %e, "stream auth cannot be used");
                return refuse(
                    "auth_config",
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the stream's auth is misconfigured",
                );
            }
        };
        let inbound = Inbound {
            method: "GET",
            headers: req.headers(),
            query: &query,
            body: b"",
        };
        if let Err(f) = verifier.verify(&inbound, std::time::SystemTime::now()) {
            let status = auth_status(f.reason);
            let mut resp = refuse(
                &format!("unauthorized_{}", f.reason.as_str()),
                status,
                if status == StatusCode::FORBIDDEN {
                    "forbidden"
                } else {
                    "unauthorized"
                },
            );
            if status == StatusCode::UNAUTHORIZED && matches!(auth, AuthConfig::Basic { .. }) {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"causeway stream\""),
                );
            }
            return resp;
        }
    }
    let start = match start_of(req.headers(), &query) {
        Ok(s) => s,
        Err(msg) => return refuse("bad_request", StatusCode::BAD_REQUEST, &msg),
    };
    let info = req.extensions().get::<ConnInfo>().cloned();
    let peer = info
        .as_ref()
        .map(|i| i.peer.ip().to_string())
        .unwrap_or_default();
    let consumer = consumer_of(cfg.auth.as_ref(), req.headers(), &query, &peer);
    let stream_key = format!("{bridge}/{}", cfg.name);
    let slot = match streams.take_slot(
        &stream_key,
        &consumer,
        cfg.max_connections,
        cfg.max_connections_per_consumer,
    ) {
        Ok(s) => s,
        Err(reason) => {
            let mut resp = refuse(
                reason,
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections to this stream: close one or try again later",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return resp;
        }
    };
    // Replay older than the window: say so, with the oldest id there is.
    let retention = cfg
        .retention_ms
        .min(shared.active().config.retention.max_age_ms.max(1));
    let start = match start {
        Start::Live => None,
        Start::After(id) => {
            let window_start = now_ms().saturating_sub(retention);
            if id_ms(super::id_after(id)) < window_start {
                let oldest = streams
                    .store
                    .stream_events(StreamRead {
                        bridge: bridge.to_string(),
                        after: Some(id_before(id_floor(window_start))),
                        before: None,
                        limit: 1,
                    })
                    .await
                    .ok()
                    .and_then(|p| p.items.first().map(|i| i.id));
                m.refused
                    .with_label_values(&[bridge, &cfg.name, "too_old"])
                    .inc();
                let body = serde_json::json!({
                    "error": format!(
                        "the replay point ({}) is older than the stream's retention ({} ms): resume from the oldest available id",
                        rfc3339(id_ms(super::id_after(id))),
                        retention
                    ),
                    "oldestId": oldest.map(|i| i.to_string()),
                });
                return too_old(ws, ws_key, req, body).await;
            }
            Some(id)
        }
    };
    let conn = Arc::new(ConnState {
        id: streams.next_conn_id(),
        bridge: bridge.to_string(),
        stream: cfg.name.clone(),
        stalled_since: Default::default(),
        behind: Default::default(),
        cursor: Default::default(),
        stall_ms: cfg.stall_timeout_ms.max(1),
        cfg: cfg.clone(),
        reason: Default::default(),
        cut: CancellationToken::new(),
        closer: if ws {
            CancellationToken::new()
        } else {
            info.map(|i| i.closer).unwrap_or_default()
        },
        last_sent: Default::default(),
    });
    m.connections.with_label_values(&[bridge, &cfg.name]).inc();
    let hub = streams.hub(bridge);
    let consumer = Consumer::new(
        streams.clone(),
        hub,
        conn,
        start,
        Settings {
            buffer: cfg.buffer_events.max(1) as usize,
            heartbeat: Duration::from_millis(cfg.heartbeat_ms.max(1)),
            events_per_second: cfg.events_per_second,
        },
        slot,
    );
    match ws_key {
        Some(key) => {
            upgrade(&mut req, WsSession::Stream(Box::new(consumer)));
            switching(&key)
        }
        None => sse(consumer),
    }
}

/// What a WebSocket does once upgraded.
pub(super) enum WsSession {
    Stream(Box<Consumer>),
    /// The replay point is older than the retention: this error, then a close.
    TooOld(serde_json::Value),
}

/// Run `session` on the upgraded socket: hyper's upgrade, or the bare socket when the
/// connection is served by [`super::raw`] (which writes the `101` and takes it from here).
fn upgrade<B>(req: &mut Request<B>, session: WsSession) {
    if let Some(raw) = req.extensions().get::<super::raw::RawUpgrade>() {
        raw.give(session);
        return;
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
                run_ws(ws, session).await;
            }
            Err(e) => debug!(error = %e, "websocket upgrade failed"),
        }
    });
}

pub(super) async fn run_ws<S>(mut ws: WebSocketStream<S>, session: WsSession)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match session {
        WsSession::Stream(consumer) => websocket(ws, *consumer).await,
        WsSession::TooOld(body) => {
            let _ = ws.send(Message::text(body.to_string())).await;
            let _ = ws
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Policy,
                    reason: "replay point older than the retention".into(),
                })))
                .await;
        }
    }
}

fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn switching(key: &HeaderValue) -> Response<StreamBody> {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(h.finalize());
    let mut resp = whole(Response::new(Full::new(Bytes::new())));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}

/// A replay point older than the retention: SSE gets 410 with the error event (a browser's
/// EventSource does not retry a 410); a WebSocket gets the error message, then a close.
async fn too_old<B>(
    ws: bool,
    ws_key: Option<HeaderValue>,
    mut req: Request<B>,
    body: serde_json::Value,
) -> Response<StreamBody> {
    if let (true, Some(key)) = (ws, ws_key) {
        upgrade(&mut req, WsSession::TooOld(body));
        return switching(&key);
    }
    let mut resp = whole(Response::new(Full::new(Bytes::from(format!(
        "event: error\ndata: {body}\n\n"
    )))));
    *resp.status_mut() = StatusCode::GONE;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

/// One event as SSE: `id:`, then the body as `data:` lines.
pub(super) fn sse_event(id: EventId, body: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str("id: ");
    out.push_str(&id.to_string());
    out.push('\n');
    for line in text.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

fn sse_end(reason: &str) -> Bytes {
    Bytes::from(format!(
        "event: error\ndata: {}\n\n",
        serde_json::json!({ "error": reason })
    ))
}

/// `first` and every event that can go with it at once, as one frame (one write), up to
/// [`super::BATCH_BYTES`]: under a steady flow a connection takes a round in one write.
fn sse_batch(c: &mut Consumer, first: Arc<super::Item>) -> Bytes {
    let first = first.sse();
    let Some(second) = c.next_now() else {
        return first;
    };
    let mut buf = bytes::BytesMut::with_capacity(first.len() * 2);
    buf.extend_from_slice(&first);
    buf.extend_from_slice(&second.sse());
    while buf.len() < super::BATCH_BYTES {
        let Some(item) = c.next_now() else { break };
        buf.extend_from_slice(&item.sse());
    }
    buf.freeze()
}

fn sse(consumer: Consumer) -> Response<StreamBody> {
    // First a retry hint (how long an EventSource waits before it reconnects), so that
    // the headers and something go out at once.
    let first = futures::stream::once(async {
        Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"retry: 2000\n\n")))
    });
    let rest = futures::stream::unfold(consumer, |mut c| async move {
        let out = c.next().await?;
        let bytes = match out {
            Out::Event(item) => sse_batch(&mut c, item),
            Out::Heartbeat => Bytes::from_static(b": heartbeat\n\n"),
            Out::End(reason) => sse_end(&reason),
        };
        Some((Ok::<_, BoxError>(Frame::data(bytes)), c))
    });
    let body = HttpStreamBody::new(first.chain(rest)).boxed_unsync();
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells proxies such as nginx not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// One event as a WebSocket message.
pub(super) fn ws_event(id: EventId, body: &[u8]) -> String {
    let data = serde_json::from_slice::<serde_json::Value>(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
    serde_json::json!({ "id": id.to_string(), "data": data }).to_string()
}

async fn websocket<S>(mut ws: WebSocketStream<S>, mut consumer: Consumer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let closer = consumer.conn.closer.clone();
    loop {
        let out = tokio::select! {
            out = consumer.next() => out,
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                // Pings are answered by the library; text from the consumer is ignored.
                Some(Ok(_)) => continue,
            },
            _ = closer.cancelled() => return,
        };
        let msg = match out {
            None => return,
            Some(Out::Event(item)) => {
                // Every event that can go with it at once, in one flush.
                let mut size = 0;
                let mut batch = vec![Message::Text(item.ws())];
                while size < super::BATCH_BYTES {
                    let Some(next) = consumer.next_now() else {
                        break;
                    };
                    let text = next.ws();
                    size += text.len();
                    batch.push(Message::Text(text));
                }
                let sent = async {
                    for m in batch {
                        ws.feed(m).await?;
                    }
                    ws.flush().await
                };
                tokio::select! {
                    r = sent => if r.is_err() { return },
                    _ = closer.cancelled() => return,
                }
                continue;
            }
            Some(Out::Heartbeat) => Message::Ping(Bytes::new()),
            Some(Out::End(reason)) => {
                let text = serde_json::json!({ "error": reason }).to_string();
                tokio::select! {
                    _ = async {
                        let _ = ws.send(Message::text(text)).await;
                        let _ = ws.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Again,
                            reason: "stream ended by the worker".into(),
                        }))).await;
                    } => {}
                    _ = closer.cancelled() => {}
                }
                return;
            }
        };
        tokio::select! {
            r = ws.send(msg) => if r.is_err() { return },
            _ = closer.cancelled() => return,
        }
    }
}
