//! The admin API: health, readiness, metrics, events, actions and the running
//! configuration. With an admin token configured, everything but health, readiness and
//! metrics needs `Authorization: Bearer <token>` or `x-causeway-admin-token: <token>` (the
//! API server's pod proxy does not forward `Authorization`).

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::shared::Shared;
use crate::store::{
    EventDetail, EventId, EventQuery, EventRecord, EventStatus, StoreError, now_ms,
};

type AppState = Arc<Shared>;

/// The router, for tests with `oneshot` and for [`serve`].
pub fn router(shared: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/{id}", get(show_event))
        .route("/api/v1/events/{id}/replay", post(replay_event))
        .route("/api/v1/bridges", get(list_bridges))
        .route("/api/v1/bridges/{ns}/{name}/replay", post(replay_dead))
        .route("/api/v1/bridges/{ns}/{name}/purge", post(purge))
        .route("/api/v1/bridges/{ns}/{name}/suspend", post(suspend))
        .route("/api/v1/bridges/{ns}/{name}/resume", post(resume))
        .route(
            "/api/v1/bridges/{ns}/{name}/destinations/{dest}/resume",
            post(resume_destination),
        )
        .route("/api/v1/actions", get(list_actions))
        .route("/api/v1/subscriptions", get(list_subscriptions))
        .route("/api/v1/config", get(config))
        .route("/asyncapi/{ns}", get(asyncapi))
        .route("/api/v1/store", get(store_info))
        .route("/api/v1/retention", post(retention_now))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(crate::console::router(shared.clone()))
        .with_state(shared)
}

/// Serve the admin API until `stop`, with the same header timeout as ingress and its own
/// bound on connections (the worker runs it on a runtime of its own, so health checks
/// never queue behind ingress work).
#[instrument(skip_all)]
pub async fn serve(listener: TcpListener, shared: AppState, stop: CancellationToken) {
    use tower::ServiceExt as _;
    let limits = shared.limits.admin_conn_limits();
    let app = router(shared);
    crate::listener::serve(
        listener,
        limits,
        stop,
        Arc::new(()),
        move |req: Request<hyper::body::Incoming>| {
            let app = app.clone();
            async move {
                match app.oneshot(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        },
    )
    .await
}

/// The admin token's second header, for callers behind the API server's pod proxy.
pub const ADMIN_TOKEN_HEADER: &str = "x-causeway-admin-token";

async fn require_token(
    State(shared): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = shared.config.admin_token() {
        // An empty token is a broken configuration, never "no auth": refuse everything.
        if token.expose().is_empty() {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized (the worker's admin token is empty)"})),
            )
                .into_response();
        }
        // The API server's pod proxy does not forward `Authorization`; the token may come
        // in `x-causeway-admin-token` instead.
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| {
                headers
                    .get(ADMIN_TOKEN_HEADER)
                    .and_then(|v| v.to_str().ok())
            })
            .unwrap_or("");
        // Compare digests so the time taken says nothing about the token.
        if Sha256::digest(presented.as_bytes()) != Sha256::digest(token.expose().as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

async fn readyz(State(shared): State<AppState>) -> Response {
    if shared.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if !shared.store.healthy() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store cannot write\n",
        )
            .into_response()
    } else if shared.health.disk_low() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the data volume is almost full\n",
        )
            .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(shared): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

/// An admin API error.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                ApiError(StatusCode::NOT_FOUND, format!("not found: {what}"))
            }
            e @ (StoreError::Unavailable { .. } | StoreError::Database { .. }) => {
                ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => ApiError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventSummary {
    id: String,
    bridge: String,
    received_at: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    /// The event's trace (W3C trace id), when its record has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

fn summary(r: &EventRecord) -> EventSummary {
    EventSummary {
        id: r.id.to_string(),
        bridge: r.bridge.clone(),
        received_at: rfc3339(r.received_at_ms),
        status: r.status.as_str(),
        reason: r.reason.clone(),
        parent: r.parent.map(|p| p.to_string()),
        trace_id: r.trace.as_ref().map(|t| t.trace_id.to_string()),
    }
}

/// The event as the admin API shows it (headers and body are not shown: they may carry
/// personal data; the attempt log carries the destinations' answers, redacted).
pub fn event_json(d: &EventDetail) -> serde_json::Value {
    let deliveries: Vec<serde_json::Value> = d
        .jobs
        .iter()
        .map(|(j, attempts)| {
            json!({
                "destination": j.target.label(),
                "status": j.status.as_str(),
                "dueAt": rfc3339(j.due_at_ms),
                "lastError": j.last_error,
                "attempts": attempts.iter().map(|a| json!({
                    "at": rfc3339(a.at_ms),
                    "durationMs": a.duration_ms,
                    "statusCode": a.status_code,
                    "error": a.error,
                    "response": a.response,
                    "traceId": a.trace.map(|t| t.trace_id.to_string()),
                    "spanId": a.trace.map(|t| t.span_id.to_string()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "id": d.record.id.to_string(),
        "bridge": d.record.bridge,
        "receivedAt": rfc3339(d.record.received_at_ms),
        "status": d.record.status.as_str(),
        "reason": d.record.reason,
        "bodyBytes": d.record.body_bytes,
        "parent": d.record.parent.map(|p| p.to_string()),
        "children": d.record.children.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "traceId": d.record.trace.as_ref().map(|t| t.trace_id.to_string()),
        "deliveries": deliveries,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    bridge: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    /// The cursor: only events older than this id (the last id of the previous page).
    before: Option<String>,
    /// Received at or after this time ([`parse_time`]).
    since: Option<String>,
    /// Received before this time.
    until: Option<String>,
    /// The sender's message id (`webhook-id` header).
    #[serde(rename = "webhookId")]
    webhook_id: Option<String>,
}

/// A time in a query: RFC 3339 (`2026-12-02T07:00:00Z`), the same without seconds or
/// offset (UTC; what a browser's `datetime-local` field sends), or milliseconds since the
/// epoch. Returns milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<u64, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    let bad = || {
        format!(
            "not a time: {s:?} (RFC 3339 such as 2026-12-02T07:00:00Z, or milliseconds since the epoch)"
        )
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map_err(|_| bad());
    }
    let t = match time::OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => t,
        Err(_) => {
            let minutes = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
            let seconds =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            time::PrimitiveDateTime::parse(s, &seconds)
                .or_else(|_| time::PrimitiveDateTime::parse(s, &minutes))
                .map_err(|_| bad())?
                .assume_utc()
        }
    };
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).map_err(|_| format!("{s:?} is before 1970"))
}

/// `(since_ms, until_ms, webhook_id)` of an events query.
pub(crate) type TimeAndWebhook = (Option<u64>, Option<u64>, Option<String>);

/// The time and webhook-id filters of an events query, checked; the error names the
/// parameter.
pub(crate) fn time_and_webhook_filters(
    since: Option<&str>,
    until: Option<&str>,
    webhook_id: Option<&str>,
) -> Result<TimeAndWebhook, String> {
    let time = |name: &str, v: Option<&str>| -> Result<Option<u64>, String> {
        match v.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_time(v).map(Some).map_err(|e| format!("{name}: {e}")),
        }
    };
    let since_ms = time("since", since)?;
    let until_ms = time("until", until)?;
    if let (Some(s), Some(u)) = (since_ms, until_ms)
        && s >= u
    {
        return Err("since must be earlier than until".into());
    }
    let webhook_id = webhook_id.map(str::trim).filter(|w| !w.is_empty());
    if let Some(w) = webhook_id
        && w.len() > crate::store::WEBHOOK_ID_MAX_BYTES
    {
        return Err(format!(
            "webhookId: longer than {} bytes",
            crate::store::WEBHOOK_ID_MAX_BYTES
        ));
    }
    Ok((since_ms, until_ms, webhook_id.map(str::to_string)))
}

async fn list_events(
    State(shared): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(EventStatus::parse(s).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("unknown status {s:?} (pending, delivered, dead, filtered)"),
            )
        })?),
    };
    let (since_ms, until_ms, webhook_id) = time_and_webhook_filters(
        q.since.as_deref(),
        q.until.as_deref(),
        q.webhook_id.as_deref(),
    )
    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let query = EventQuery {
        bridge: q.bridge.filter(|b| !b.is_empty()),
        status,
        limit: q.limit.unwrap_or(100).min(10_000),
        before: match q.before.as_deref().filter(|b| !b.is_empty()) {
            Some(b) => Some(parse_id(b)?),
            None => None,
        },
        since_ms,
        until_ms,
        webhook_id,
    };
    let events = shared.store.list_events(query).await?;
    Ok(Json(
        json!({ "events": events.iter().map(summary).collect::<Vec<_>>() }),
    ))
}

fn parse_id(id: &str) -> Result<EventId, ApiError> {
    EventId::parse_str(id)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("not an event id: {id:?}")))
}

async fn show_event(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    match shared.store.event(id).await? {
        Some(d) => Ok(Json(event_json(&d))),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no event {id}"))),
    }
}

async fn replay_event(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let Some(detail) = shared.store.event(id).await? else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no event {id}")));
    };
    let n = shared.store.replay_event(id, now_ms()).await?;
    shared.delivery.wake();
    note(&shared, "replay", &detail.record.bridge, None, Some(id), n).await;
    Ok(Json(json!({ "replayed": n })))
}

fn bridge_key(shared: &Shared, ns: &str, name: &str) -> Result<String, ApiError> {
    let key = format!("{ns}/{name}");
    if shared.active().bridges.contains_key(&key) {
        Ok(key)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no bridge {key}")))
    }
}

async fn replay_dead(
    State(shared): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = format!("{ns}/{name}");
    let n = shared.store.replay_dead(key.clone(), now_ms()).await?;
    shared.delivery.wake();
    note(&shared, "replay-dead", &key, None, None, n).await;
    Ok(Json(json!({ "replayed": n })))
}

async fn purge(
    State(shared): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = format!("{ns}/{name}");
    let n = shared.store.purge(key.clone()).await?;
    note(&shared, "purge", &key, None, None, n).await;
    Ok(Json(json!({ "purged": n })))
}

async fn suspend(
    State(shared): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = bridge_key(&shared, &ns, &name)?;
    // The store first: with a shared store, every worker of the pool holds it.
    shared.store.set_suspended(key.clone(), Some(true)).await?;
    shared.set_suspended(&key, true);
    note(&shared, "suspend", &key, None, None, 0).await;
    Ok(Json(json!({ "bridge": key, "suspended": true })))
}

async fn resume(
    State(shared): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = bridge_key(&shared, &ns, &name)?;
    shared.store.set_suspended(key.clone(), Some(false)).await?;
    shared.set_suspended(&key, false);
    note(&shared, "resume", &key, None, None, 0).await;
    Ok(Json(json!({ "bridge": key, "suspended": false })))
}

async fn resume_destination(
    State(shared): State<AppState>,
    Path((ns, name, dest)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Only a configured destination: any other value would create metric series and
    // store rows for names nobody configured.
    let key = bridge_key(&shared, &ns, &name)?;
    let known = shared
        .active()
        .bridges
        .get(&key)
        .is_some_and(|b| b.destination(&dest).is_some());
    if !known {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("bridge {key} has no destination {dest:?}"),
        ));
    }
    let n = shared
        .delivery
        .resume(shared.store.as_ref(), &key, &dest, now_ms())
        .await?;
    note(&shared, "resume-destination", &key, Some(&dest), None, n).await;
    Ok(Json(
        json!({ "bridge": key, "destination": dest, "paused": false, "requeued": n }),
    ))
}

/// Records an admin API action in the action log (see `console::actions`).
async fn note(
    shared: &Shared,
    action: &str,
    bridge: &str,
    destination: Option<&str>,
    event: Option<EventId>,
    jobs: usize,
) {
    crate::console::actions::note(
        shared.store.as_ref(),
        "api",
        action,
        bridge,
        destination,
        event,
        jobs,
    )
    .await;
}

#[derive(Deserialize)]
struct ActionsQuery {
    bridge: Option<String>,
    event: Option<String>,
    limit: Option<usize>,
}

/// The action log, newest first (`?bridge=`, `?event=`, `?limit=`, at most 500).
async fn list_actions(
    State(shared): State<AppState>,
    Query(q): Query<ActionsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let event = match q.event.as_deref().filter(|e| !e.is_empty()) {
        Some(e) => Some(parse_id(e)?),
        None => None,
    };
    let actions = crate::console::actions::recent(
        shared.store.as_ref(),
        q.bridge.as_deref().filter(|b| !b.is_empty()),
        event,
        q.limit.unwrap_or(100).min(crate::console::actions::KEEP),
    )
    .await?;
    Ok(Json(json!({ "actions": actions })))
}

#[derive(Deserialize)]
struct SubscriptionsQuery {
    bridge: Option<String>,
}

/// The WebSub subscriptions (`?bridge=ns/name`): per subscription its state (`active` or
/// `expired`), lease and delivery counts (the last hour on this worker, and the jobs still
/// queued in the store), then the latest verifications of intent. Never a secret: a
/// subscription only says whether it signs.
async fn list_subscriptions(
    State(shared): State<AppState>,
    Query(q): Query<SubscriptionsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bridge = q.bridge.as_deref().filter(|b| !b.is_empty());
    let now = crate::store::now_ms();
    let queued: std::collections::HashMap<(String, String), u64> =
        shared.store.queue_depth().await?.into_iter().collect();
    let subs: Vec<serde_json::Value> = shared
        .websub
        .list(bridge)
        .into_iter()
        .map(|s| {
            let name = crate::websub::job_name(&s.id);
            let hour = shared.delivery.window.last_hour(&s.bridge, &name, now);
            let pending = queued.get(&(s.bridge.clone(), name)).copied().unwrap_or(0);
            json!({
                "bridge": s.bridge,
                "id": s.id,
                "callback": s.callback,
                "topic": s.topic,
                "state": if s.expires_at_ms > now { "active" } else { "expired" },
                "signed": s.secret.is_some(),
                "leaseSeconds": s.lease_seconds,
                "createdAt": crate::delivery::attempt::rfc3339(s.created_at_ms),
                "verifiedAt": crate::delivery::attempt::rfc3339(s.verified_at_ms),
                "expiresAt": crate::delivery::attempt::rfc3339(s.expires_at_ms),
                "lastHour": {"delivered": hour.delivered, "failed": hour.failed, "dead": hour.dead},
                "pending": pending,
            })
        })
        .collect();
    let verifications: Vec<serde_json::Value> = shared
        .websub
        .recent(bridge)
        .into_iter()
        .map(|(b, v)| {
            json!({
                "bridge": b,
                "callback": v.callback,
                "mode": v.mode,
                "at": crate::delivery::attempt::rfc3339(v.at_ms),
                "verified": v.verified,
                "reason": v.reason,
            })
        })
        .collect();
    Ok(Json(
        json!({ "subscriptions": subs, "verifications": verifications }),
    ))
}

async fn list_bridges(State(shared): State<AppState>) -> Json<serde_json::Value> {
    let active = shared.active();
    let mut keys: Vec<&String> = active.bridges.keys().collect();
    keys.sort();
    let paused = shared.delivery.paused();
    let breakers = shared.delivery.breakers.not_closed();
    let bridges: Vec<serde_json::Value> = keys
        .into_iter()
        .filter_map(|k| active.bridges.get(k))
        .map(|b| {
            json!({
                "bridge": b.key,
                "path": b.cfg.path,
                "methods": b.cfg.methods,
                "suspended": shared.is_suspended(&b.key),
                "destinations": b.cfg.destinations.iter().map(|d| {
                    let key = (b.key.clone(), d.name.clone());
                    let is_paused = paused.contains(&key);
                    let mut v = json!({"name": d.name, "paused": is_paused});
                    if is_paused {
                        v["pausedReason"] = json!(shared.delivery.paused_reason(&key.0, &d.name));
                    }
                    // A breaker left in the store by a destination that no longer has one
                    // holds nothing: not shown.
                    let breaker = d.circuit_breaker.as_ref().and(breakers.get(&key));
                    if let Some(name) = breaker.and_then(|p| breaker_name(*p)) {
                        v["breaker"] = json!(name);
                    }
                    v
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "bridges": bridges }))
}

/// The running configuration's version and per-item state. No secrets. The body is the
/// typed contract the operator parses (`causeway_config::WorkerReport`).
/// The AsyncAPI document of one namespace's bridges on this worker. The ingress server is
/// named by the request's `Host` with the ingress port (the admin and ingress addresses
/// share a host in a pod).
async fn asyncapi(
    State(shared): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Response {
    let active = shared.active();
    if !active.config.bridges.iter().any(|b| b.namespace == ns) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no bridge of namespace {ns} runs on this worker")})),
        )
            .into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host))
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ']))
        .unwrap_or("localhost");
    let port = shared.ingress_addr.port();
    let opts = crate::asyncapi::Options {
        ingress_host: format!("{host}:{port}"),
        namespace: Some(ns),
        ..crate::asyncapi::Options::default()
    };
    Json(crate::asyncapi::document(&active.config, &opts)).into_response()
}

/// A breaker's phase as the report names it; None for closed (and disabled, which the
/// report tells as paused with its reason).
fn breaker_name(p: crate::store::BreakerPhase) -> Option<String> {
    use crate::store::BreakerPhase;
    match p {
        BreakerPhase::Open => Some(causeway_config::DestinationReport::OPEN.into()),
        BreakerPhase::HalfOpen => Some(causeway_config::DestinationReport::HALF_OPEN.into()),
        BreakerPhase::Closed | BreakerPhase::Disabled => None,
    }
}

async fn config(State(shared): State<AppState>) -> Json<causeway_config::WorkerReport> {
    use causeway_config::{
        BridgeReport, DestinationReport, ItemError, Kind, ObjectKey, PluginReport, WorkerReport,
    };
    use prometheus::core::Collector as _;
    // Waiting jobs per destination, as the queue-depth gauge last saw them (refreshed every
    // few seconds): the operator asks every pod for this report, and counting the queue
    // on each ask would cost a scan of every due job.
    let depth: std::collections::HashMap<(String, String), u64> = shared
        .metrics
        .queue_depth
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .filter_map(|m| {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
            };
            let value = m.get_gauge().get_value().max(0.0) as u64;
            Some(((label("bridge")?, label("destination")?), value))
        })
        .collect();
    let paused = shared.delivery.paused();
    let breakers = shared.delivery.breakers.not_closed();
    let now = crate::store::now_ms();
    // A draining bridge's jobs are counted now, from the store (paused and steps jobs
    // too): the operator removes the Bridge when this reaches 0, so a gauge a few seconds
    // old will not do. Only draining bridges cost a count, and only while they drain.
    let draining: Vec<String> = shared
        .active()
        .config
        .bridges
        .iter()
        .filter(|b| b.draining)
        .map(|b| b.key())
        .collect();
    let mut jobs_left = std::collections::HashMap::new();
    for key in draining {
        match shared.store.jobs_left(key.clone()).await {
            Ok(n) => {
                jobs_left.insert(key, n);
            }
            Err(e) => {
                tracing::warn!(bridge = %key, error = %e, "cannot count the jobs left of a draining bridge")
            }
        }
    }
    let active = shared.active();
    let cfg = &active.config;
    let errors: Vec<ItemError> = active.errors.clone();
    let failed = |kind: Kind, key: &ObjectKey| {
        errors
            .iter()
            .find(|e| e.is_about(kind, key))
            .map(|e| e.message.clone())
    };
    let bridges = cfg
        .bridges
        .iter()
        .map(|b| {
            let error = failed(Kind::Bridge, &b.object_key());
            BridgeReport {
                namespace: b.namespace.clone(),
                name: b.name.clone(),
                generation: b.generation,
                path: b.path.clone(),
                ready: error.is_none(),
                suspended: shared.is_suspended(&b.key()),
                jobs_left: if b.draining {
                    jobs_left.get(&b.key()).copied()
                } else {
                    None
                },
                error,
                destinations: b
                    .destinations
                    .iter()
                    .map(|d| {
                        let key = (b.key(), d.name.clone());
                        let hour = shared.delivery.window.last_hour(&key.0, &d.name, now);
                        let is_paused = paused.contains(&key);
                        DestinationReport {
                            name: d.name.clone(),
                            paused: is_paused,
                            paused_reason: is_paused
                                .then(|| shared.delivery.paused_reason(&key.0, &d.name).into()),
                            breaker: d
                                .circuit_breaker
                                .as_ref()
                                .and(breakers.get(&key))
                                .and_then(|p| breaker_name(*p)),
                            pending: depth.get(&key).copied().unwrap_or(0),
                            delivered: hour.delivered,
                            failed: hour.failed,
                            dead: hour.dead,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let states = shared.plugins.status();
    let plugins = cfg
        .plugins
        .iter()
        .map(|p| {
            let error = failed(Kind::Plugin, &p.object_key());
            let state = states.iter().find(|s| s.key == p.key());
            PluginReport {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                generation: p.generation,
                route: p.route.clone(),
                ready: error.is_none(),
                error,
                digest: state.and_then(|s| s.digest.clone()),
                size: state.and_then(|s| s.size),
            }
        })
        .collect();
    Json(WorkerReport {
        version: cfg.version.clone(),
        pool: cfg.pool.clone(),
        namespace: cfg.namespace.clone(),
        loaded_at: rfc3339(active.loaded_at_ms),
        bridges,
        plugins,
        errors,
        store: Some(causeway_config::StoreReport::new(
            shared.store_info.engine,
            &shared.store_info.location,
            shared.store.healthy(),
        )),
    })
}

async fn store_info(State(shared): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let depth = shared.store.queue_depth().await?;
    let queued: u64 = depth.iter().map(|(_, n)| n).sum();
    let counts = shared.store.counts().await?;
    Ok(Json(json!({
        "bytes": shared.store.disk_bytes(),
        "events": counts.events,
        "jobs": counts.jobs,
        "attempts": counts.attempts,
        "idempotencyKeys": counts.idempotency_keys,
        "queued": queued,
    })))
}

async fn retention_now(State(shared): State<AppState>) -> Json<serde_json::Value> {
    crate::shared::run_retention(&shared).await;
    Json(json!({ "bytes": shared.store.disk_bytes() }))
}

#[cfg(test)]
mod tests;
