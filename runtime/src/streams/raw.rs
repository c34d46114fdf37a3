//! Stream connections served on the bare socket, without hyper's connection machinery.
//!
//! A stream connection lives for hours and sends a few events a second; an idle one holds
//! only its state. hyper keeps, for the life of every HTTP/1 connection, an 8 KiB read
//! buffer and an 8 KiB buffer for response heads, which made up most of an idle
//! consumer's memory. So the ingress listener looks at the first bytes of a new
//! connection (`GET /streams/`) and hands it here: the request head is parsed into a
//! small buffer that is freed before streaming, the same checks as on hyper's path answer
//! it ([`super::serve`]), and the response goes to the socket directly: a whole one with
//! `Content-Length`, SSE as chunks, a WebSocket after `101`. Such a connection serves that
//! one request and closes. A stream requested on a connection that began with another
//! request goes through hyper as before.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::debug;

use super::http::{StreamBody, WsSession, run_ws};
use crate::listener::ConnInfo;
use crate::shared::Shared;

/// What a connection starts with when the listener should hand it here.
pub const PREFIX: &[u8] = b"GET /streams/";
/// The longest request head taken (headers included); past it 431.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Handed to [`super::serve`] in the request's extensions: where a WebSocket's session
/// goes once the `101` is written.
#[derive(Clone)]
pub(super) struct RawUpgrade(Arc<Mutex<Option<oneshot::Sender<WsSession>>>>);

impl RawUpgrade {
    pub(super) fn give(&self, session: WsSession) {
        if let Some(tx) = crate::sync::lock(&self.0).take() {
            let _ = tx.send(session);
        }
    }
}

/// Serve one stream request on `stream`, whose first bytes are [`PREFIX`]; any other
/// path goes to `other`, as on hyper's path.
pub async fn serve_raw<F, Fut>(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    info: ConnInfo,
    header_timeout: Duration,
    other: F,
) where
    F: FnOnce(Request<Full<Bytes>>) -> Fut,
    Fut: std::future::Future<Output = Response<Full<Bytes>>>,
{
    let head = match tokio::time::timeout(header_timeout, read_head(&mut stream)).await {
        Ok(Ok(h)) => h,
        Ok(Err(Refused(status, why))) => {
            let _ = write_whole(&mut stream, status, http::HeaderMap::new(), why.as_bytes()).await;
            return;
        }
        Err(_) => {
            debug!(peer = %info.peer, "stream request head timed out");
            return;
        }
    };
    let (mut req, leftover) = head;
    let (tx, rx) = oneshot::channel();
    req.extensions_mut().insert(info.clone());
    req.extensions_mut()
        .insert(RawUpgrade(Arc::new(Mutex::new(Some(tx)))));
    let resp = super::serve(&shared, req, other).await;
    let (parts, body) = resp.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if write_head(&mut stream, parts.status, &parts.headers)
            .await
            .is_err()
        {
            return;
        }
        if let Ok(session) = rx.await {
            let ws =
                WebSocketStream::from_partially_read(stream, leftover, Role::Server, None).await;
            run_ws(ws, session).await;
        }
        return;
    }
    let streaming = parts.status == StatusCode::OK
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let _ = write_whole(&mut stream, parts.status, parts.headers, &bytes).await;
        return;
    }
    sse(stream, &parts.headers, body).await;
}

/// A request head that cannot be served, and what to answer.
struct Refused(StatusCode, &'static str);

/// Read and parse the request head; returns it as a request with an empty body, and any
/// bytes read after it.
async fn read_head(stream: &mut TcpStream) -> Result<(Request<Full<Bytes>>, Vec<u8>), Refused> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|_| Refused(StatusCode::BAD_REQUEST, "read failed"))?;
        if n == 0 {
            return Err(Refused(StatusCode::BAD_REQUEST, "the request ended early"));
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let req = to_request(&parsed)?;
                return Ok((req, buf[len..].to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(Refused(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "the request head is too large",
                ));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Refused(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many request headers",
                ));
            }
            Err(_) => return Err(Refused(StatusCode::BAD_REQUEST, "a malformed request")),
        }
    }
}

fn to_request(parsed: &httparse::Request<'_, '_>) -> Result<Request<Full<Bytes>>, Refused> {
    let bad = |why| Refused(StatusCode::BAD_REQUEST, why);
    if parsed.version != Some(1) {
        return Err(Refused(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "streams speak HTTP/1.1",
        ));
    }
    let mut req = Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(http::Version::HTTP_11)
        .body(Full::new(Bytes::new()))
        .map_err(|_| bad("a malformed request line"))?;
    let h = req.headers_mut();
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| bad("a malformed header"))?;
        let value = HeaderValue::from_bytes(header.value).map_err(|_| bad("a malformed header"))?;
        h.append(name, value);
    }
    // A stream request has no body; one that says otherwise is not taken apart here.
    let has_body = h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return Err(bad("a stream request has no body"));
    }
    Ok(req)
}

async fn write_head(
    stream: &mut TcpStream,
    status: StatusCode,
    headers: &http::HeaderMap,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (k, v) in headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out).await
}

/// A whole response; the connection closes after it.
async fn write_whole(
    stream: &mut TcpStream,
    status: StatusCode,
    mut headers: http::HeaderMap,
    body: &[u8],
) -> std::io::Result<()> {
    if !headers.contains_key(header::CONTENT_TYPE) && !body.is_empty() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    write_head(stream, status, &headers).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

/// Server-Sent Events: the body's frames as chunks, until the stream ends or the consumer
/// closes its side.
async fn sse(mut stream: TcpStream, headers: &http::HeaderMap, body: StreamBody) {
    let mut headers = headers.clone();
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if write_head(&mut stream, StatusCode::OK, &headers)
        .await
        .is_err()
    {
        return;
    }
    let (mut rd, mut wr) = stream.split();
    let mut body = std::pin::pin!(body);
    let mut probe = [0u8; 8];
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            // The consumer sends nothing after its request: a read that returns is its
            // close (or bytes that are ignored).
            r = rd.read(&mut probe) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        let data = match frame {
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Some(Err(_)) | None => break,
        };
        if data.is_empty() {
            continue;
        }
        let mut chunk = Vec::with_capacity(data.len() + 12);
        chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        chunk.extend_from_slice(&data);
        chunk.extend_from_slice(b"\r\n");
        // A consumer that stops reading stalls this write until the sweeper cuts it and
        // the listener closes the socket.
        if wr.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = wr.write_all(b"0\r\n\r\n").await;
    let _ = wr.shutdown().await;
}
