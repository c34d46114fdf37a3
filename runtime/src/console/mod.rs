//! The event console: server-rendered pages on the worker's admin address (`/`) for
//! seeing and acting on events (issue 16). Bridges, events (live through server-sent
//! events), one event with its attempts, plugins, and the admin actions, each confirmed
//! on a page of its own and done by a POST.
//!
//! Safety:
//! - HTML comes from maud templates (escaped by default); the one script and the style
//!   sheet are separate files embedded in the binary, and a Content-Security-Policy
//!   allows scripts from this origin only (no inline script, no `eval`).
//! - Every POST carries the per-process CSRF token ([`csrf_token`]) in its form and, when
//!   the browser sends one, an `Origin` (or `Referer`) of this host; anything else is 403.
//! - With an admin token (configured, or generated because the admin address is not
//!   loopback) every page asks for it, as the API does: a login form sets an HttpOnly,
//!   SameSite=Strict session cookie that is derived from the token and a per-process
//!   secret, so it says nothing about the token and ends with the process. The API's
//!   headers (`Authorization: Bearer`, `x-causeway-admin-token`) work too.
//! - Secrets never reach a page: the store keeps headers without credentials, the pages
//!   redact the bridge's secrets again from anything received or answered, and no page
//!   shows a manifest's auth, signing, header or env values.

pub(crate) mod actions;
mod pages;
pub(crate) mod stats;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::Stream;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::shared::Shared;
use crate::store::{EventId, EventQuery, EventStatus, StoreError, now_ms};

type AppState = Arc<Shared>;

/// The session cookie's name.
pub const COOKIE: &str = "causeway_console";
/// Events per page.
pub const PAGE: usize = 50;
/// How often the live stream looks for new events.
const STREAM_POLL: Duration = Duration::from_secs(1);

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's policy: scripts, styles and connections from this origin only; no
/// inline script or style, no frames, forms post here only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The CSRF token of this process: in every form, checked on every POST.
pub fn csrf_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(random_hex)
}

/// The session cookie's value for `token`: a digest of a per-process secret and the
/// token (the cookie never carries the token, and ends with the process).
fn session_value(token: &str) -> String {
    static SECRET: OnceLock<String> = OnceLock::new();
    let secret = SECRET.get_or_init(random_hex);
    hex::encode(Sha256::digest(format!("{secret}\n{token}").as_bytes()))
}

/// Equal, in a time that says nothing about where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// `/assets/<name>?v=<digest of the content>`, so browsers may cache assets for long.
fn asset_url(name: &str, content: &str) -> String {
    let digest = hex::encode(&Sha256::digest(content.as_bytes())[..6]);
    format!("/assets/{name}?v={digest}")
}

pub(crate) fn css_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| asset_url("console.css", CSS))
}

pub(crate) fn js_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| asset_url("console.js", JS))
}

/// The console's routes, merged into the admin router.
pub fn router(shared: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(bridges_page))
        .route("/events", get(events_page))
        .route("/events/stream", get(events_stream))
        .route("/events/{id}", get(event_page))
        .route("/events/{id}/replay", get(confirm_replay).post(replay))
        .route(
            "/bridges/{ns}/{name}/{action}",
            get(confirm_bridge_action).post(bridge_action),
        )
        .route(
            "/bridges/{ns}/{name}/destinations/{dest}/resume",
            get(confirm_destination).post(resume_destination),
        )
        .route("/plugins", get(plugins_page))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(shared, require_session));
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .merge(pages)
        .layer(middleware::from_fn(check_post))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn forbidden(why: &str) -> Response {
    (StatusCode::FORBIDDEN, format!("forbidden: {why}\n")).into_response()
}

/// Whether a request's `Origin` (or, without one, `Referer`) is this host. Browsers send
/// `Origin` with every POST; a client that sends neither is judged by the CSRF token alone.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let matches = |url: &str| {
        host.is_some_and(|host| {
            ["http://", "https://"].iter().any(|scheme| {
                url.strip_prefix(scheme)
                    .and_then(|rest| rest.strip_prefix(host))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
        })
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(matches);
    }
    if let Some(referer) = headers.get(header::REFERER) {
        return referer.to_str().is_ok_and(matches);
    }
    true
}

/// Every POST: from this origin, with this process's CSRF token in its form.
async fn check_post(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    if !same_origin(req.headers()) {
        return forbidden("the request comes from another origin");
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response();
    };
    // The token is hex: no percent-decoding needed to compare it.
    let presented = std::str::from_utf8(&bytes)
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("csrf="))
        .unwrap_or("");
    if !same_secret(presented, csrf_token()) {
        return forbidden("missing or wrong CSRF token (reload the page)");
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Whether the request may see the console: no admin token, or the token's session
/// cookie, or the token in the API's headers.
fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = shared.config.admin_token() else {
        return true;
    };
    let token = token.expose();
    // An empty token is a broken configuration, never "no auth".
    if token.is_empty() {
        return false;
    }
    if cookie(headers, COOKIE).is_some_and(|c| same_secret(c, &session_value(token))) {
        return true;
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| {
            headers
                .get(crate::admin::ADMIN_TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
        })
        .is_some_and(|t| same_secret(t, token))
}

async fn require_session(State(shared): State<AppState>, req: Request, next: Next) -> Response {
    if authorized(&shared, req.headers()) {
        return next.run(req).await;
    }
    if req.method() == Method::GET && req.uri().path() != "/events/stream" {
        Redirect::to("/login").into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "unauthorized: sign in at /login\n",
        )
            .into_response()
    }
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The URL names the content's digest.
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

async fn login_page(State(shared): State<AppState>) -> Response {
    if shared.config.admin_token().is_none() {
        return Redirect::to("/").into_response();
    }
    pages::login(None).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(shared): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = shared.config.admin_token() else {
        return Redirect::to("/").into_response();
    };
    if token.expose().is_empty() || !same_secret(&form.token, token.expose()) {
        warn!("console: sign-in with a wrong admin token");
        return (
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That is not this worker's admin token.")),
        )
            .into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        session_value(token.expose())
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

/// A console error: a page with the message.
pub(crate) struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (self.0, pages::error(self.0, &self.1)).into_response()
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                PageError(StatusCode::NOT_FOUND, format!("not found: {what}"))
            }
            e @ (StoreError::Unavailable { .. } | StoreError::Database { .. }) => {
                PageError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => PageError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

fn not_found(what: String) -> PageError {
    PageError(StatusCode::NOT_FOUND, what)
}

fn parse_id(id: &str) -> Result<EventId, PageError> {
    EventId::parse_str(id.trim())
        .map_err(|_| PageError(StatusCode::BAD_REQUEST, format!("not an event id: {id:?}")))
}

fn parse_status(s: Option<&str>) -> Result<Option<EventStatus>, PageError> {
    match s {
        None | Some("") => Ok(None),
        Some(s) => EventStatus::parse(s).map(Some).ok_or_else(|| {
            PageError(
                StatusCode::BAD_REQUEST,
                format!("unknown status {s:?} (pending, delivered, dead, filtered)"),
            )
        }),
    }
}

/// What an action did, shown once on the page it returns to (`?done=…&n=…`): a fixed
/// set of messages, so a link cannot put text of its own on the page.
#[derive(Deserialize, Default)]
pub(crate) struct Done {
    done: Option<String>,
    n: Option<u64>,
}

impl Done {
    pub(crate) fn message(&self) -> Option<String> {
        let n = self.n.unwrap_or(0);
        Some(match self.done.as_deref()? {
            "suspended" => "Bridge suspended: its events are held until it is resumed.".into(),
            "resumed" => "Bridge resumed.".into(),
            "replayed" => format!("Replayed: {n} delivery job(s) queued again."),
            "purged" => format!("Purged: {n} queued job(s) removed."),
            "destination-resumed" => format!("Destination resumed: {n} job(s) queued again."),
            _ => return None,
        })
    }
}

async fn bridges_page(
    State(shared): State<AppState>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let depth = shared.store.queue_depth().await?;
    let hour = stats::last_hour(shared.store.as_ref(), now_ms(), stats::SCAN_LIMIT).await?;
    let recent = actions::recent(shared.store.as_ref(), None, None, 20).await?;
    Ok(pages::bridges(&shared, &depth, &hour, &recent, done.message()).into_response())
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    pub bridge: Option<String>,
    pub status: Option<String>,
    /// An event id to open.
    pub q: Option<String>,
    /// The cursor: events older than this id.
    pub before: Option<String>,
    /// Received at or after (`datetime-local`, UTC, or RFC 3339).
    pub since: Option<String>,
    /// Received before.
    pub until: Option<String>,
    /// The sender's message id (`webhook-id` header).
    #[serde(rename = "webhookId")]
    pub webhook_id: Option<String>,
}

/// The time and webhook-id filters of a page or stream (a bad one is a 400 page naming it).
fn filters(
    since: Option<&str>,
    until: Option<&str>,
    webhook_id: Option<&str>,
) -> Result<crate::admin::TimeAndWebhook, PageError> {
    crate::admin::time_and_webhook_filters(since, until, webhook_id)
        .map_err(|e| PageError(StatusCode::BAD_REQUEST, e))
}

async fn events_page(
    State(shared): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, PageError> {
    let mut notice = None;
    if let Some(wanted) = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        match EventId::parse_str(wanted) {
            Ok(id) if shared.store.event(id).await?.is_some() => {
                return Ok(Redirect::to(&format!("/events/{id}")).into_response());
            }
            Ok(_) => notice = Some(format!("No event with id {wanted}.")),
            Err(_) => notice = Some(format!("{wanted:?} is not an event id.")),
        }
    }
    let status = parse_status(q.status.as_deref())?;
    let before = match q.before.as_deref().filter(|s| !s.is_empty()) {
        Some(b) => Some(parse_id(b)?),
        None => None,
    };
    let bridge = q.bridge.clone().filter(|b| !b.is_empty());
    let (since_ms, until_ms, webhook_id) = filters(
        q.since.as_deref(),
        q.until.as_deref(),
        q.webhook_id.as_deref(),
    )?;
    // One more than a page, to know whether there is an older page.
    let mut events = shared
        .store
        .list_events(EventQuery {
            bridge,
            status,
            limit: PAGE + 1,
            before,
            since_ms,
            until_ms,
            webhook_id,
        })
        .await?;
    let more = events.len() > PAGE;
    events.truncate(PAGE);
    Ok(pages::events(&shared, &q, &events, more, notice).into_response())
}

#[derive(Deserialize)]
struct StreamQuery {
    bridge: Option<String>,
    status: Option<String>,
    /// The newest event the page shows: the stream sends newer ones.
    after: Option<String>,
    since: Option<String>,
    #[serde(rename = "webhookId")]
    webhook_id: Option<String>,
}

/// New events as server-sent events (`event: events`, data: a JSON array, oldest first),
/// looked for every second until the client goes or the worker stops.
async fn events_stream(
    State(shared): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, PageError> {
    let status = parse_status(q.status.as_deref())?;
    let after = match q.after.as_deref().filter(|s| !s.is_empty()) {
        Some(a) => Some(parse_id(a)?),
        None => None,
    };
    let bridge = q.bridge.filter(|b| !b.is_empty());
    let (since_ms, _, webhook_id) = filters(q.since.as_deref(), None, q.webhook_id.as_deref())?;
    let stop = shared.shutdown.clone();
    let stream = futures::stream::unfold(after, move |mut after| {
        let shared = shared.clone();
        let bridge = bridge.clone();
        let webhook_id = webhook_id.clone();
        let stop = stop.clone();
        async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(STREAM_POLL) => {}
                }
                let query = EventQuery {
                    bridge: bridge.clone(),
                    status,
                    limit: PAGE,
                    since_ms,
                    webhook_id: webhook_id.clone(),
                    ..Default::default()
                };
                let events = match shared.store.list_events(query).await {
                    Ok(events) => events,
                    Err(e) => {
                        warn!(error = %e, "console: live events");
                        continue;
                    }
                };
                let new: Vec<_> = events
                    .iter()
                    .filter(|e| after.is_none_or(|a| e.id > a))
                    .collect();
                let Some(newest) = new.first() else {
                    continue;
                };
                after = Some(newest.id);
                let rows: Vec<_> = new.iter().rev().map(|e| pages::event_row_json(e)).collect();
                let msg = SseEvent::default()
                    .event("events")
                    .data(serde_json::Value::from(rows).to_string());
                return Some((Ok(msg), after));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn event_page(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let Some(detail) = shared.store.event(id).await? else {
        return Err(not_found(format!("no event {id}")));
    };
    let recent = actions::recent(
        shared.store.as_ref(),
        Some(&detail.record.bridge),
        Some(id),
        20,
    )
    .await?;
    Ok(pages::event(&shared, &detail, &recent, done.message()).into_response())
}

async fn confirm_replay(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    if shared.store.event(id).await?.is_none() {
        return Err(not_found(format!("no event {id}")));
    }
    Ok(pages::confirm(
        &format!("Replay event {id}?"),
        "Its delivered and dead deliveries are queued again and sent to their destinations.",
        "Replay",
        &format!("/events/{id}/replay"),
        &format!("/events/{id}"),
    )
    .into_response())
}

async fn replay(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let Some(detail) = shared.store.event(id).await? else {
        return Err(not_found(format!("no event {id}")));
    };
    let n = shared.store.replay_event(id, now_ms()).await?;
    shared.delivery.wake();
    info!(event = %id, replayed = n, "console: event replayed");
    record(&shared, "replay", &detail.record.bridge, None, Some(id), n).await;
    Ok(Redirect::to(&format!("/events/{id}?done=replayed&n={n}")).into_response())
}

/// A bridge action: what it asks and what it does.
#[derive(Clone, Copy)]
enum BridgeAction {
    Suspend,
    Resume,
    ReplayDead,
    Purge,
}

impl BridgeAction {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "suspend" => BridgeAction::Suspend,
            "resume" => BridgeAction::Resume,
            "replay" => BridgeAction::ReplayDead,
            "purge" => BridgeAction::Purge,
            _ => return None,
        })
    }

    /// (question, explanation, button)
    fn words(self, key: &str) -> (String, &'static str, &'static str) {
        match self {
            BridgeAction::Suspend => (
                format!("Suspend bridge {key}?"),
                "It keeps receiving and storing events but delivers none until it is resumed.",
                "Suspend",
            ),
            BridgeAction::Resume => (
                format!("Resume bridge {key}?"),
                "Its held events are delivered again.",
                "Resume",
            ),
            BridgeAction::ReplayDead => (
                format!("Replay the dead letters of {key}?"),
                "Every dead delivery of this bridge is queued again.",
                "Replay dead letters",
            ),
            BridgeAction::Purge => (
                format!("Purge the queue of {key}?"),
                "Every queued delivery of this bridge is dropped. The events stay in the log.",
                "Purge queue",
            ),
        }
    }
}

/// The bridge's key, when it is configured.
fn bridge_key(shared: &Shared, ns: &str, name: &str) -> Result<String, PageError> {
    let key = format!("{ns}/{name}");
    if shared.active().bridges.contains_key(&key) {
        Ok(key)
    } else {
        Err(not_found(format!("no bridge {key}")))
    }
}

async fn confirm_bridge_action(
    State(shared): State<AppState>,
    Path((ns, name, action)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let key = bridge_key(&shared, &ns, &name)?;
    let act =
        BridgeAction::parse(&action).ok_or_else(|| not_found(format!("no action {action:?}")))?;
    let (question, explanation, button) = act.words(&key);
    Ok(pages::confirm(
        &question,
        explanation,
        button,
        &format!("/bridges/{key}/{action}"),
        "/",
    )
    .into_response())
}

async fn bridge_action(
    State(shared): State<AppState>,
    Path((ns, name, action)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let key = bridge_key(&shared, &ns, &name)?;
    let act =
        BridgeAction::parse(&action).ok_or_else(|| not_found(format!("no action {action:?}")))?;
    let (done, n) = match act {
        BridgeAction::Suspend | BridgeAction::Resume => {
            let suspend = matches!(act, BridgeAction::Suspend);
            // The store first: with a shared store, every worker of the pool holds it.
            shared
                .store
                .set_suspended(key.clone(), Some(suspend))
                .await?;
            shared.set_suspended(&key, suspend);
            (if suspend { "suspended" } else { "resumed" }, 0)
        }
        BridgeAction::ReplayDead => {
            let n = shared.store.replay_dead(key.clone(), now_ms()).await?;
            shared.delivery.wake();
            ("replayed", n)
        }
        BridgeAction::Purge => ("purged", shared.store.purge(key.clone()).await?),
    };
    info!(bridge = %key, action = %action, n, "console: bridge action");
    let name = match act {
        BridgeAction::Suspend => "suspend",
        BridgeAction::Resume => "resume",
        BridgeAction::ReplayDead => "replay-dead",
        BridgeAction::Purge => "purge",
    };
    record(&shared, name, &key, None, None, n).await;
    Ok(Redirect::to(&format!("/?done={done}&n={n}")).into_response())
}

fn destination_key(shared: &Shared, ns: &str, name: &str, dest: &str) -> Result<String, PageError> {
    let key = bridge_key(shared, ns, name)?;
    let known = shared
        .active()
        .bridges
        .get(&key)
        .is_some_and(|b| b.destination(dest).is_some());
    if known {
        Ok(key)
    } else {
        Err(not_found(format!(
            "bridge {key} has no destination {dest:?}"
        )))
    }
}

async fn confirm_destination(
    State(shared): State<AppState>,
    Path((ns, name, dest)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let key = destination_key(&shared, &ns, &name, &dest)?;
    Ok(pages::confirm(
        &format!("Resume destination {dest} of {key}?"),
        "Its paused deliveries are queued again.",
        "Resume destination",
        &format!("/bridges/{key}/destinations/{dest}/resume"),
        "/",
    )
    .into_response())
}

async fn resume_destination(
    State(shared): State<AppState>,
    Path((ns, name, dest)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let key = destination_key(&shared, &ns, &name, &dest)?;
    let n = shared
        .delivery
        .resume(shared.store.as_ref(), &key, &dest, now_ms())
        .await?;
    info!(bridge = %key, destination = %dest, requeued = n, "console: destination resumed");
    record(&shared, "resume-destination", &key, Some(&dest), None, n).await;
    Ok(Redirect::to(&format!("/?done=destination-resumed&n={n}")).into_response())
}

async fn plugins_page(State(shared): State<AppState>) -> Response {
    let calls = stats::plugin_calls(&shared.metrics.plugin_registry);
    pages::plugins(&shared, &calls).into_response()
}

/// Records a console action in the action log.
async fn record(
    shared: &Shared,
    action: &str,
    bridge: &str,
    destination: Option<&str>,
    event: Option<EventId>,
    jobs: usize,
) {
    actions::note(
        shared.store.as_ref(),
        "console",
        action,
        bridge,
        destination,
        event,
        jobs,
    )
    .await;
}
