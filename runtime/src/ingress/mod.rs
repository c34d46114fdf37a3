//! Ingress: bridges and public plugin routes on one port.
//!
//! Connections are bounded over all peers and per peer by [`crate::listener`]; each
//! connection is HTTP/1.1 with a header read timeout (which also closes idle keep-alive
//! connections); each body must arrive within the body timeout. A bridge's
//! `ingress.rateLimit` ([`rate_limit`]) answers 429 before the body is read. A request is
//! answered 202 only after its event is committed to disk.

pub mod rate_limit;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use causeway_config::BridgeConfig;
use causeway_pipeline::Inbound;
use causeway_pipeline::cloudevents;
use causeway_pipeline::schema::Violation;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, instrument, warn};

use crate::listener::{self, ConnObserver};

use crate::bridge::{ActiveBridge, FilterOutcome};
use crate::shared::Shared;
use crate::store::{
    EventId, EventRecord, EventStatus, JobKey, JobTarget, NewEvent, NewJob, now_ms,
};

pub type Body = Full<Bytes>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body: hyper's [`Incoming`] on a socket, a [`Full`] body in the in-process
/// tests.
pub trait InBody: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send {}

impl<B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send> InBody for B {}

/// Serve ingress until `stop`; then drain open connections for at most the shutdown grace.
#[instrument(skip_all, fields(addr = ?listener.local_addr().ok()))]
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let limits = shared.limits.conn_limits();
    let observer: Arc<dyn ConnObserver> = Arc::new(IngressObserver(shared.clone()));
    // A connection that opens with a stream request is served on the bare socket (see
    // `streams::serve_raw`: an idle consumer then costs no HTTP buffers).
    let raw_shared = shared.clone();
    let header_timeout = limits.header_timeout;
    let raw = listener::RawRoute {
        prefix: crate::streams::RAW_PREFIX,
        serve: Arc::new(move |stream, info| {
            let shared = raw_shared.clone();
            Box::pin(async move {
                let other = shared.clone();
                crate::streams::serve_raw(shared, stream, info, header_timeout, |req| async move {
                    handle(&other, req).await
                })
                .await
            })
        }),
    };
    listener::serve_routed(listener, limits, stop, observer, Some(raw), move |req| {
        let shared = shared.clone();
        async move {
            // A bridge's stream (`/streams/...`), its WebSub hub (`/hub/...`) or, for any
            // other path, a bridge or route.
            crate::streams::serve(&shared, req, |req| async {
                match crate::websub::serve(&shared, req).await {
                    Ok(resp) => resp,
                    Err(req) => handle(&shared, req).await,
                }
            })
            .await
        }
    })
    .await
}

/// Serve the internal port (plugin calls from other pools) until `stop`, with the same
/// connection bound and timeouts as ingress: `/internal/…` goes to the plugin host, which
/// checks the `causeway-internal-token`; any other path is 404.
#[instrument(skip_all, fields(addr = ?listener.local_addr().ok()))]
pub async fn serve_internal(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    serve_with(listener, shared, stop, |shared, req| async move {
        internal_request(&shared, req).await
    })
    .await
}

/// Counts ingress connections and peer refusals in the worker's metrics.
struct IngressObserver(Arc<Shared>);

impl ConnObserver for IngressObserver {
    fn opened(&self) {
        self.0.metrics.connections_open.inc();
    }
    fn closed(&self) {
        self.0.metrics.connections_open.dec();
    }
    fn refused_peer(&self, _peer: std::net::IpAddr) {
        self.0
            .metrics
            .rejected
            .with_label_values(&["", "peer_connections"])
            .inc();
    }
}

/// The accept loop shared by ingress and the internal port.
async fn serve_with<F, Fut, R>(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    handler: F,
) where
    F: Fn(Arc<Shared>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<R>> + Send + 'static,
    R: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let limits = shared.limits.conn_limits();
    let observer: Arc<dyn ConnObserver> = Arc::new(IngressObserver(shared.clone()));
    listener::serve(listener, limits, stop, observer, move |req| {
        handler(shared.clone(), req)
    })
    .await
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }))
}

/// One request: a bridge, a public plugin route, or 404.
pub async fn handle<B: InBody>(shared: &Arc<Shared>, req: Request<B>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let active = shared.active();
    if let Some(bridge) = active
        .by_path
        .get(&path)
        .and_then(|k| active.bridges.get(k))
        .cloned()
    {
        drop(active);
        return bridge_request(shared, &bridge, req).await;
    }
    drop(active);
    if let Some(target) = shared.plugins.route(&path) {
        return plugin_request(shared, target, req).await;
    }
    shared
        .metrics
        .rejected
        .with_label_values(&["", "not_found"])
        .inc();
    error(StatusCode::NOT_FOUND, "no bridge or route at this path")
}

/// One request on the internal port.
async fn internal_request<B: InBody>(shared: &Shared, req: Request<B>) -> Response<Body> {
    if !req
        .uri()
        .path()
        .starts_with(causeway_plugins::INTERNAL_PREFIX)
    {
        return error(StatusCode::NOT_FOUND, "not an internal plugin path");
    }
    let (parts, body) = req.into_parts();
    let max = shared.limits.plugin_body_bytes as u64;
    if content_length(&parts.headers).is_some_and(|n| n > max) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    let Some(_reserved) = reserve_body(shared, &parts.headers, max) else {
        return busy();
    };
    let body = match read_body(body, max, shared.limits.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
        Err(BodyError::Timeout) => {
            return error(StatusCode::REQUEST_TIMEOUT, "body not received in time");
        }
        Err(BodyError::Broken(_)) => {
            return error(StatusCode::BAD_REQUEST, "body could not be read");
        }
    };
    let resp = shared
        .plugins
        .handle_internal(Request::from_parts(parts, body))
        .await;
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Full::new(body))
}

/// Reserves room for one body in the worker-wide budget of body bytes in flight: the
/// declared length, or the largest allowed when none is declared. None when the budget is
/// spent (the caller answers 503 without reading the body).
fn reserve_body(
    shared: &Shared,
    headers: &HeaderMap,
    max: u64,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let n = content_length(headers).unwrap_or(max).min(max);
    // A body larger than the whole budget takes all of it: it goes alone.
    let cap = shared.limits.max_body_bytes_in_flight.div_ceil(1024).max(1);
    let kib = n.div_ceil(1024).clamp(1, cap);
    shared
        .body_budget
        .clone()
        .try_acquire_many_owned(u32::try_from(kib).unwrap_or(u32::MAX))
        .ok()
}

fn busy() -> Response<Body> {
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many request bodies in flight: try again",
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// The idempotency key of a token's `jti` (hashed when long: the table's keys stay small).
fn jti_key(jti: &str) -> String {
    use sha2::Digest as _;
    if jti.len() <= 256 {
        format!("jti:{jti}")
    } else {
        format!(
            "jti-sha256:{}",
            hex::encode(sha2::Sha256::digest(jti.as_bytes()))
        )
    }
}

/// Why a request is refused after its body was parsed.
enum Checked {
    /// It claims to be a CloudEvent and is not a valid one (400).
    BadEvent(String),
    /// The payload does not match the bridge's schema (422).
    Invalid(Vec<Violation>),
}

/// Why reading a body failed.
enum BodyError {
    TooLarge,
    Timeout,
    Broken(String),
}

async fn read_body<B: InBody>(body: B, max: u64, timeout: Duration) -> Result<Bytes, BodyError> {
    let limited = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn allow(cfg: &BridgeConfig) -> HeaderValue {
    HeaderValue::from_str(&cfg.methods.join(", "))
        .unwrap_or_else(|_| HeaderValue::from_static("POST"))
}

/// A request to a bridge, in its trace's accepting span: a child of the sender's
/// `traceparent` when it sent a valid one, else the root of a new trace.
#[instrument(skip_all, fields(bridge = %bridge.key))]
async fn bridge_request<B: InBody>(
    shared: &Arc<Shared>,
    bridge: &Arc<ActiveBridge>,
    req: Request<B>,
) -> Response<Body> {
    let remote = crate::traces::context::extract(req.headers());
    let mut span = shared
        .traces
        .accept(|| format!("accept {}", bridge.key), remote.as_ref());
    if span.recording() {
        span.set_str("causeway.bridge", &bridge.key);
        span.set_str("http.request.method", req.method().as_str());
        span.set_str("url.path", &bridge.cfg.path);
    }
    let state = remote.and_then(|r| r.state);
    let resp = accept(shared, bridge, req, &mut span, state).await;
    let status = resp.status();
    span.set_i64("http.response.status_code", i64::from(status.as_u16()));
    // As OpenTelemetry's HTTP conventions say for a server: a 4xx is the sender's error,
    // not this span's.
    if status.is_server_error() {
        span.fail(status.canonical_reason().unwrap_or("server error"));
    }
    span.end();
    resp
}

async fn accept<B: InBody>(
    shared: &Arc<Shared>,
    bridge: &Arc<ActiveBridge>,
    req: Request<B>,
    span: &mut crate::traces::Span,
    trace_state: Option<String>,
) -> Response<Body> {
    let m = &shared.metrics;
    let key = bridge.key.as_str();
    m.received.with_label_values(&[key]).inc();
    let reject = |reason: &str, status: StatusCode, message: &str| {
        m.rejected.with_label_values(&[key, reason]).inc();
        error(status, message)
    };
    let (parts, body) = req.into_parts();
    if !bridge
        .cfg
        .methods
        .iter()
        .any(|x| x.eq_ignore_ascii_case(parts.method.as_str()))
    {
        let mut resp = reject(
            "method_not_allowed",
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        );
        resp.headers_mut().insert(header::ALLOW, allow(&bridge.cfg));
        return resp;
    }
    if bridge.cfg.draining {
        // Its Bridge is being deleted: the sender should stop, not retry. The jobs already
        // queued keep going until they are delivered or the drain times out.
        return reject(
            "draining",
            StatusCode::GONE,
            &format!(
                "bridge {key} is being deleted: it takes no new events (its queued deliveries are draining)"
            ),
        );
    }
    if shared.is_suspended(key) {
        let mut resp = reject(
            "suspended",
            StatusCode::SERVICE_UNAVAILABLE,
            "bridge suspended",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return resp;
    }
    if bridge.cfg.when_plugin_not_ready == causeway_config::PluginNotReadyPolicy::Reject
        && let Some(why) = shared.plugin_not_ready(&bridge.cfg)
    {
        let mut resp = reject("plugin_not_ready", StatusCode::SERVICE_UNAVAILABLE, &why);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return resp;
    }
    // Refuse before the disk fills: a store that hits ENOSPC stops taking any write.
    if shared.health.disk_low() {
        let mut resp = reject(
            "disk_low",
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient storage: try again later",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return resp;
    }
    let max = bridge.cfg.max_body_bytes;
    if content_length(&parts.headers).is_some_and(|n| n > max) {
        return reject("too_large", StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    // Whether the request claims to be a CloudEvent (checked whole once the body is read).
    let cloud_event = match cloudevents::detect(&parts.headers) {
        Ok(mode) => mode,
        Err(e) => {
            return reject(
                "invalid_cloudevent",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &e.0,
            );
        }
    };
    // Unsigned or badly signed requests are refused before their body costs anything.
    let raw_query = parts.uri.query().unwrap_or("");
    if let Err(reason) = bridge.check_headers(&parts.headers, raw_query) {
        return reject(
            &format!("unauthorized_{reason}"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
    // Past `ingress.rateLimit`: 429 before the body is read. Requests refused above (wrong
    // method, too large, unsigned) take no token.
    if let Some(limit) = &bridge.ingress_limit
        && let Err(wait) = limit.try_take()
    {
        let mut resp = reject(
            "rate_limited",
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded: try again later",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return resp;
    }
    let Some(_reserved) = reserve_body(shared, &parts.headers, max) else {
        m.rejected
            .with_label_values(&[key, "bodies_in_flight"])
            .inc();
        return busy();
    };
    let body = match read_body(body, max, shared.limits.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return reject("too_large", StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        Err(BodyError::Timeout) => {
            return reject(
                "timeout",
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time",
            );
        }
        Err(BodyError::Broken(e)) => {
            debug!(error = %e, "body read failed");
            return reject(
                "bad_request",
                StatusCode::BAD_REQUEST,
                "body could not be read",
            );
        }
    };
    let query = parts.uri.query().unwrap_or("").to_string();
    let inbound = Inbound {
        method: parts.method.as_str(),
        headers: &parts.headers,
        query: &query,
        body: &body,
    };
    let jti = match bridge.verify(&inbound) {
        Ok(jti) => jti,
        Err(reason) => {
            // Never log what was presented: only the reason.
            return reject(
                &format!("unauthorized_{reason}"),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            );
        }
    };
    // A CloudEvent is checked, the payload schema applied and the filter run on the body
    // parsed once. All three are CPU-bound and sized by the sender's payload: they run on
    // the blocking pool (the filter within its budget), never on the threads that serve
    // connections.
    let trace = span.context(trace_state);
    let filtered = if bridge.has_filter() || bridge.has_schema() || cloud_event.is_some() {
        let mut filter_span =
            shared
                .traces
                .child(|| "filter".into(), crate::traces::Kind::Internal, &trace);
        let (b, headers, q, bytes, method) = (
            bridge.clone(),
            parts.headers.clone(),
            query.clone(),
            body.clone(),
            parts.method.as_str().to_string(),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            let parsed: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
            let (ce, body_json) =
                cloudevents::parse_request(&headers, parsed).map_err(|e| Checked::BadEvent(e.0))?;
            let payload = cloudevents::payload_of(ce.as_ref(), body_json.as_ref());
            b.check_payload(payload).map_err(Checked::Invalid)?;
            let req = Inbound {
                method: &method,
                headers: &headers,
                query: &q,
                body: &bytes,
            };
            Ok(b.filter(&req, payload, ce.as_ref()))
        })
        .await;
        let result = match &outcome {
            Ok(Ok(FilterOutcome::Pass)) => "pass",
            Ok(Ok(FilterOutcome::Drop(_))) | Err(_) => "drop",
            Ok(Err(Checked::BadEvent(_))) => "invalid_cloudevent",
            Ok(Err(Checked::Invalid(_))) => "invalid_payload",
        };
        filter_span.set_str("causeway.filter.result", result);
        filter_span.end();
        match outcome {
            Ok(Ok(FilterOutcome::Pass)) => None,
            Ok(Ok(FilterOutcome::Drop(reason))) => Some(reason),
            Ok(Err(Checked::BadEvent(message))) => {
                return reject("invalid_cloudevent", StatusCode::BAD_REQUEST, &message);
            }
            Ok(Err(Checked::Invalid(violations))) => {
                // Refused before anything is stored; the violations go to the sender only
                // (they may quote the payload, which is never logged).
                m.rejected
                    .with_label_values(&[key, "invalid_payload"])
                    .inc();
                return json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    serde_json::json!({
                        "error": "the payload does not match the bridge's schema",
                        "violations": violations,
                    }),
                );
            }
            Err(e) => Some(format!("filter error (internal): {e}")),
        }
    } else {
        None
    };
    let idem = parts
        .headers
        .get(bridge.cfg.idempotency_header.as_str())
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 512)
        .map(str::to_string);
    let sensitive = bridge.sensitive_headers();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(n, _)| !sensitive.iter().any(|s| s.eq_ignore_ascii_case(n.as_str())))
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let now = now_ms();
    // A bridge with streams takes its ids from them: they read no further than the
    // smallest id still being appended.
    let ticket = (!bridge.cfg.streams.is_empty()).then(|| shared.streams.mint(key));
    let id = ticket.as_ref().map_or_else(EventId::now_v7, |t| t.id());
    let jobs = if filtered.is_some() {
        vec![]
    } else if !bridge.cfg.steps.is_empty() {
        vec![NewJob {
            target: JobTarget::Steps,
            due_at_ms: now,
        }]
    } else {
        bridge
            .cfg
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| NewJob {
                target: JobTarget::destination(i as u32, &d.name),
                due_at_ms: now.saturating_add(d.delay_ms),
            })
            .chain(shared.websub.jobs_for(bridge, now, now))
            .collect()
    };
    // Like the sensitive headers, the API key's query parameter is never stored.
    let query = bridge.stored_query(&query);
    let record = EventRecord {
        id,
        bridge: key.to_string(),
        received_at_ms: now,
        method: parts.method.as_str().to_string(),
        query,
        headers,
        status: if filtered.is_some() {
            EventStatus::Filtered
        } else {
            EventStatus::Pending
        },
        reason: filtered.clone(),
        body_bytes: body.len() as u64,
        parent: None,
        children: Vec::new(),
        trace: Some(trace),
    };
    // Jobs due now are handed to delivery once committed (no scheduler pass); a delayed
    // one wakes the scheduler, which sleeps until it is due.
    let ready: Vec<JobKey> = jobs
        .iter()
        .filter(|j| j.due_at_ms <= now)
        .map(|j| JobKey {
            event: id,
            index: j.target.slot(),
        })
        .collect();
    let delayed = jobs.len() > ready.len();
    let event = NewEvent {
        record,
        body,
        jobs,
        // A token's jti wins over the idempotency header: a replayed token with a new
        // header value must not pass. It is kept until the token expires.
        idempotency: match jti {
            Some((jti, until)) => Some((jti_key(&jti), until.max(now))),
            None => idem.map(|k| (k, now.saturating_add(bridge.cfg.dedupe_window_ms))),
        },
    };
    let appended = shared.store.append(event).await;
    if let Some(t) = ticket {
        t.done();
    }
    if let Ok(a) = &appended
        && span.recording()
    {
        span.set_str("causeway.event.id", &a.id.to_string());
        if a.duplicate {
            span.set_str("causeway.duplicate", "true");
        }
    }
    match appended {
        Ok(a) if a.duplicate => {
            m.duplicates.with_label_values(&[key]).inc();
            let mut resp = json(
                StatusCode::ACCEPTED,
                serde_json::json!({ "id": a.id.to_string() }),
            );
            resp.headers_mut()
                .insert("causeway-duplicate", HeaderValue::from_static("true"));
            resp
        }
        Ok(a) => {
            m.accepted.with_label_values(&[key]).inc();
            if filtered.is_some() {
                m.filtered.with_label_values(&[key]).inc();
            }
            if delayed {
                shared.delivery.wake();
            }
            crate::delivery::scheduler::hand_off(shared, ready).await;
            json(
                StatusCode::ACCEPTED,
                serde_json::json!({ "id": a.id.to_string() }),
            )
        }
        Err(e) => {
            warn!(error = %e, "cannot store event");
            reject(
                "store_error",
                StatusCode::SERVICE_UNAVAILABLE,
                "event could not be stored",
            )
        }
    }
}

/// A public plugin route: the request goes to the plugin, its response comes back.
#[instrument(skip_all, fields(plugin = %format!("{}/{}", target.namespace, target.name)))]
async fn plugin_request<B: InBody>(
    shared: &Shared,
    target: causeway_plugins::PluginRef,
    req: Request<B>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let max = shared.limits.plugin_body_bytes as u64;
    if content_length(&parts.headers).is_some_and(|n| n > max) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    let Some(_reserved) = reserve_body(shared, &parts.headers, max) else {
        return busy();
    };
    let body = match read_body(body, max, shared.limits.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
        Err(BodyError::Timeout) => {
            return error(StatusCode::REQUEST_TIMEOUT, "body not received in time");
        }
        Err(BodyError::Broken(_)) => {
            return error(StatusCode::BAD_REQUEST, "body could not be read");
        }
    };
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone());
    for (n, v) in parts.headers.iter() {
        builder = builder.header(n, v);
    }
    let Ok(req) = builder.body(body) else {
        return error(StatusCode::BAD_REQUEST, "bad request");
    };
    match shared.plugins.call(&target, req).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, Full::new(body))
        }
        Err(e) => {
            // Anyone may call a public route: the answer names the kind of failure only.
            // The details (guest stderr, refused addresses, other pools' URLs) stay in the
            // log and the plugin metrics.
            warn!(error = %e, "plugin call failed");
            let mut resp = error(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY),
                e.kind,
            );
            if let Ok(v) = HeaderValue::from_str(e.kind) {
                resp.headers_mut().insert("causeway-error", v);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests;
