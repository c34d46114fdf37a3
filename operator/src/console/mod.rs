//! The operator-wide console: one web console over every pool of every namespace the
//! operator watches, on its own address (`--console-addr`, the chart's `console.enabled`).
//!
//! It renders pages of its own over the workers' admin JSON API (`/api/v1/bridges`,
//! `/api/v1/events`, `/api/v1/actions` and the actions' `POST`s), reached by pod IP with
//! each pool's admin token, as the status checks reach `/api/v1/config` (`crate::admin`).
//! The operator does not depend on the worker's crate; why pages of its own rather than a
//! shared rendering crate is in `docs/console.md`.
//!
//! Safety, as the worker's console: every request needs the console token (a sign-in form
//! sets an `HttpOnly; SameSite=Strict` cookie holding a digest of the token and a
//! per-process secret, or `Authorization: Bearer`); every `POST` carries this process's
//! CSRF token and, when the browser sends one, an `Origin` of this host; the same
//! Content-Security-Policy (no script at all here, one stylesheet). The console token and
//! the pools' admin tokens never appear on a page or in a log line.

mod pages;
pub mod workers;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use workers::{ClusterDirectory, Directory, PoolTarget, WorkerClient};

/// The session cookie's name.
pub const COOKIE: &str = "causeway_operator_console";
/// Events per page.
pub const PAGE: usize = 50;
/// The header scripts may send the console token in (besides `Authorization: Bearer`).
pub const TOKEN_HEADER: &str = "x-causeway-console-token";

/// The same policy as the worker's console: nothing but this origin's stylesheet.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The worker console's stylesheet, so that both consoles look alike (one file, two
/// binaries; the operator does not link the worker's crate).
const CSS: &str = include_str!("../../../runtime/src/console/assets/console.css");

/// What the console runs on.
pub struct Console {
    /// The console token: required on every request. Never empty (see [`serve`]).
    pub token: String,
    pub directory: Arc<dyn Directory>,
    pub workers: WorkerClient,
}

type AppState = Arc<Console>;

/// Errors starting the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console: no console token (set CAUSEWAY_CONSOLE_TOKEN from the chart's Secret)")]
    NoToken,
    #[error("console: bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("console: serve: {0}")]
    Serve(#[source] std::io::Error),
    #[error("console: http client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Serve the console on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, console: Console) -> Result<(), ConsoleError> {
    if console.token.trim().is_empty() {
        return Err(ConsoleError::NoToken);
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleError::Bind { addr, source })?;
    tracing::info!(%addr, "console listening");
    axum::serve(listener, router(Arc::new(console)))
        .await
        .map_err(ConsoleError::Serve)
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The CSRF token of this process: in every form, checked on every POST.
pub fn csrf_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(random_hex)
}

/// The session cookie's value: a digest of a per-process secret and the token.
fn session_value(token: &str) -> String {
    static SECRET: OnceLock<String> = OnceLock::new();
    let secret = SECRET.get_or_init(random_hex);
    hex::encode(Sha256::digest(format!("{secret}\n{token}").as_bytes()))
}

/// Equal, in a time that says nothing about where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

pub(crate) fn css_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let digest = hex::encode(&Sha256::digest(CSS.as_bytes())[..6]);
        format!("/assets/console.css?v={digest}")
    })
}

/// The console's routes.
pub fn router(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(bridges_page))
        .route("/events", get(events_page))
        .route("/events/{ns}/{pool}/{id}", get(event_page))
        .route(
            "/events/{ns}/{pool}/{id}/replay",
            get(confirm_replay).post(replay),
        )
        .route(
            "/pools/{ns}/{pool}/bridges/{bns}/{name}/{action}",
            get(confirm_bridge_action).post(bridge_action),
        )
        .route("/actions", get(actions_page))
        .route("/asyncapi/{ns}", get(asyncapi))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ));
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/assets/console.css", get(css))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(pages)
        .layer(middleware::from_fn(check_post))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
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

/// Whether a request's `Origin` (or, without one, `Referer`) is this host.
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

/// The console token's session cookie, or the token itself in a header.
fn authorized(console: &Console, headers: &HeaderMap) -> bool {
    let token = console.token.as_str();
    if token.trim().is_empty() {
        return false;
    }
    if cookie(headers, COOKIE).is_some_and(|c| same_secret(c, &session_value(token))) {
        return true;
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()))
        .is_some_and(|t| same_secret(t, token))
}

async fn require_session(State(console): State<AppState>, req: Request, next: Next) -> Response {
    if authorized(&console, req.headers()) {
        return next.run(req).await;
    }
    if req.method() == Method::GET {
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
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    )
        .into_response()
}

async fn login_page() -> Response {
    pages::login(None).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(console): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    if !same_secret(form.token.trim(), &console.token) {
        tracing::warn!("console: sign-in with a wrong console token");
        return (
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That is not the console token.")),
        )
            .into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        session_value(&console.token)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

/// An error page with its status.
pub(crate) struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (self.0, pages::error(self.0, &self.1)).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> PageError {
    PageError(StatusCode::BAD_REQUEST, msg.into())
}

/// A pool the directory knows, or 404.
fn pool(console: &Console, ns: &str, name: &str) -> Result<PoolTarget, PageError> {
    console
        .directory
        .pools()
        .into_iter()
        .find(|p| p.namespace == ns && p.pool == name)
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("no pool {ns}/{name}")))
}

/// What one pool answered for a page: its JSON, or why not.
pub(crate) struct PoolAnswer {
    pub pool: PoolTarget,
    pub answer: Result<Value, String>,
}

/// `GET path` on one worker of every pool (the first that answers: a pool's workers run one
/// configuration, and share the store on PostgreSQL).
async fn ask_each_pool(console: &Console, pools: Vec<PoolTarget>, path: &str) -> Vec<PoolAnswer> {
    futures::future::join_all(pools.into_iter().map(|pool| async move {
        let answer = console.first_answer(&pool, path).await;
        PoolAnswer { pool, answer }
    }))
    .await
}

impl Console {
    /// The pool's admin token (read from its Secret each time: nothing is cached).
    async fn token_of(&self, pool: &PoolTarget) -> Result<String, String> {
        self.directory.token(&pool.namespace, &pool.pool).await
    }

    /// `GET path` on the pool's workers in turn, the first answer.
    async fn first_answer(&self, pool: &PoolTarget, path: &str) -> Result<Value, String> {
        let token = self.token_of(pool).await?;
        let mut last = "no running worker".to_string();
        for base in &pool.workers {
            match self.workers.get(base, &token, path).await {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `GET path` on every worker of the pool (embedded stores: each has its own events).
    async fn every_answer(&self, pool: &PoolTarget, path: &str) -> Vec<Result<Value, String>> {
        let token = match self.token_of(pool).await {
            Ok(t) => t,
            Err(e) => return vec![Err(e)],
        };
        futures::future::join_all(
            pool.workers
                .iter()
                .map(|base| self.workers.get(base, &token, path)),
        )
        .await
    }
}

/// `GET /asyncapi/<namespace>`: the AsyncAPI document of the namespace's event APIs, built
/// by the worker's own function (`causeway_config::asyncapi`) over the rendered
/// configuration of every pool in the namespace (read from each pool's config Secret when
/// asked, never kept), each pool's ingress at its Service. 404 when the namespace has no
/// pool; 502 naming the pool whose configuration cannot be read.
async fn asyncapi(State(console): State<AppState>, Path(ns): Path<String>) -> Response {
    use causeway_crds::config::{INGRESS_PORT, asyncapi, pool_object_name};
    let json_error = |status: StatusCode, message: String| {
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    };
    let pools: Vec<PoolTarget> = console
        .directory
        .pools()
        .into_iter()
        .filter(|p| p.namespace == ns)
        .collect();
    if pools.is_empty() {
        return json_error(
            StatusCode::NOT_FOUND,
            format!("no worker pool in namespace {ns}"),
        );
    }
    let mut configs = Vec::new();
    for p in &pools {
        match console.directory.config(&ns, &p.pool).await {
            Ok(cfg) => configs.push((
                p.pool.clone(),
                format!("{}.{ns}.svc:{INGRESS_PORT}", pool_object_name(&p.pool)),
                cfg,
            )),
            Err(e) => {
                return json_error(StatusCode::BAD_GATEWAY, format!("pool {}: {e}", p.pool));
            }
        }
    }
    let pools: Vec<(&str, &str, &causeway_crds::config::WorkerConfig)> = configs
        .iter()
        .map(|(pool, host, cfg)| (pool.as_str(), host.as_str(), cfg))
        .collect();
    axum::Json(asyncapi::namespace_document(&ns, "http", &pools)).into_response()
}

async fn bridges_page(State(console): State<AppState>, Query(done): Query<Done>) -> Response {
    let pools = console.directory.pools();
    let answers = ask_each_pool(&console, pools.clone(), "/api/v1/bridges").await;
    pages::bridges(&answers, done.message().as_deref()).into_response()
}

/// An action's result line, from a fixed set (a link cannot put text on the page).
#[derive(Deserialize, Default)]
pub(crate) struct Done {
    done: Option<String>,
    n: Option<u64>,
}

impl Done {
    fn message(&self) -> Option<String> {
        let n = self.n.unwrap_or(0);
        Some(match self.done.as_deref()? {
            "suspended" => "Bridge suspended.".to_string(),
            "resumed" => "Bridge resumed.".to_string(),
            "replayed" => format!("Replayed: {n} delivery(ies) queued again."),
            _ => return None,
        })
    }
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct EventsQuery {
    /// `namespace/pool`, or every pool.
    pub pool: Option<String>,
    pub bridge: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    #[serde(rename = "webhookId")]
    pub webhook_id: Option<String>,
    pub before: Option<String>,
}

const STATUSES: [&str; 4] = ["pending", "delivered", "dead", "filtered"];

impl EventsQuery {
    /// The workers' query string for this page (checked here first, so a bad value is this
    /// console's 400, not a pool's error).
    fn api_query(&self) -> Result<String, PageError> {
        let mut q = vec![format!("limit={}", PAGE + 1)];
        let set = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        if let Some(s) = set(&self.status) {
            if !STATUSES.contains(&s.as_str()) {
                return Err(bad_request(format!(
                    "unknown status {s:?} (pending, delivered, dead, filtered)"
                )));
            }
            q.push(format!("status={s}"));
        }
        if let Some(b) = set(&self.bridge) {
            q.push(format!("bridge={}", pages::encode(&b)));
        }
        for (name, v) in [("since", &self.since), ("until", &self.until)] {
            if let Some(v) = set(v) {
                pages::check_time(&v).map_err(|e| bad_request(format!("{name}: {e}")))?;
                q.push(format!("{name}={}", pages::encode(&v)));
            }
        }
        if let Some(w) = set(&self.webhook_id) {
            if w.len() > 512 {
                return Err(bad_request("webhookId: longer than 512 bytes"));
            }
            q.push(format!("webhookId={}", pages::encode(&w)));
        }
        if let Some(b) = set(&self.before) {
            if !pages::is_event_id(&b) {
                return Err(bad_request(format!("not an event id: {b:?}")));
            }
            q.push(format!("before={b}"));
        }
        Ok(q.join("&"))
    }
}

/// One row of the merged events list.
pub(crate) struct Row {
    pub pool: PoolTarget,
    pub event: Value,
}

async fn events_page(
    State(console): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, PageError> {
    let api = q.api_query()?;
    let all = console.directory.pools();
    let pools: Vec<PoolTarget> = match q.pool.as_deref().filter(|p| !p.is_empty()) {
        None => all.clone(),
        Some(p) => {
            let (ns, name) = p
                .split_once('/')
                .ok_or_else(|| bad_request(format!("pool {p:?}: name it as namespace/pool")))?;
            vec![pool(&console, ns, name)?]
        }
    };
    let path = format!("/api/v1/events?{api}");
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut errors = Vec::new();
    let answers = futures::future::join_all(pools.iter().map(|p| {
        let console = console.clone();
        let path = path.clone();
        let p = p.clone();
        async move {
            let answers = console.every_answer(&p, &path).await;
            (p, answers)
        }
    }))
    .await;
    for (p, answers) in answers {
        for a in answers {
            match a {
                Ok(v) => {
                    for e in v["events"].as_array().cloned().unwrap_or_default() {
                        if let Some(id) = e["id"].as_str() {
                            rows.entry(id.to_string()).or_insert(Row {
                                pool: p.clone(),
                                event: e,
                            });
                        }
                    }
                }
                Err(e) => errors.push(format!("{}/{}: {e}", p.namespace, p.pool)),
            }
        }
    }
    // Ids are UUID v7: their order is the arrival order, across pools too.
    let mut rows: Vec<Row> = rows.into_values().rev().collect();
    let more = rows.len() > PAGE;
    rows.truncate(PAGE);
    Ok(pages::events(&q, &all, &rows, more, &errors).into_response())
}

async fn event_page(
    State(console): State<AppState>,
    Path((ns, name, id)): Path<(String, String, String)>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    if !pages::is_event_id(&id) {
        return Err(bad_request(format!("not an event id: {id:?}")));
    }
    let p = pool(&console, &ns, &name)?;
    let found = find_event(&console, &p, &id).await?;
    let actions = console
        .first_answer(&p, &format!("/api/v1/actions?event={id}"))
        .await
        .ok();
    Ok(pages::event(&p, &found, actions.as_ref(), done.message().as_deref()).into_response())
}

/// The event from the first worker of the pool that has it.
async fn find_event(console: &Console, p: &PoolTarget, id: &str) -> Result<Value, PageError> {
    let mut errors = Vec::new();
    for a in console
        .every_answer(p, &format!("/api/v1/events/{id}"))
        .await
    {
        match a {
            Ok(v) => return Ok(v),
            Err(e) => errors.push(e),
        }
    }
    if errors.iter().all(|e| e.contains("404")) {
        Err(PageError(StatusCode::NOT_FOUND, format!("no event {id}")))
    } else {
        Err(PageError(StatusCode::BAD_GATEWAY, errors.join("; ")))
    }
}

async fn confirm_replay(
    State(console): State<AppState>,
    Path((ns, name, id)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    if !pages::is_event_id(&id) {
        return Err(bad_request(format!("not an event id: {id:?}")));
    }
    let p = pool(&console, &ns, &name)?;
    find_event(&console, &p, &id).await?;
    let back = format!("/events/{ns}/{name}/{id}");
    Ok(pages::confirm(
        &format!("Replay event {id}?"),
        "Its delivered and dead deliveries are queued again and sent to their destinations.",
        "Replay",
        &format!("{back}/replay"),
        &back,
    )
    .into_response())
}

async fn replay(
    State(console): State<AppState>,
    Path((ns, name, id)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    if !pages::is_event_id(&id) {
        return Err(bad_request(format!("not an event id: {id:?}")));
    }
    let p = pool(&console, &ns, &name)?;
    let token = console
        .token_of(&p)
        .await
        .map_err(|e| PageError(StatusCode::BAD_GATEWAY, e))?;
    let mut last = String::from("no running worker");
    for base in &p.workers {
        match console
            .workers
            .post(base, &token, &format!("/api/v1/events/{id}/replay"))
            .await
        {
            Ok(v) => {
                let n = v["replayed"].as_u64().unwrap_or(0);
                tracing::info!(pool = %format!("{ns}/{name}"), event = %id, "console: replay");
                return Ok(
                    Redirect::to(&format!("/events/{ns}/{name}/{id}?done=replayed&n={n}"))
                        .into_response(),
                );
            }
            Err(e) => last = e,
        }
    }
    Err(PageError(StatusCode::BAD_GATEWAY, last))
}

fn check_bridge_action(action: &str) -> Result<(&'static str, &'static str), PageError> {
    match action {
        "suspend" => Ok(("suspend", "suspended")),
        "resume" => Ok(("resume", "resumed")),
        other => Err(PageError(
            StatusCode::NOT_FOUND,
            format!("no action {other:?} (suspend, resume)"),
        )),
    }
}

async fn confirm_bridge_action(
    State(console): State<AppState>,
    Path((ns, name, bns, bridge, action)): Path<(String, String, String, String, String)>,
) -> Result<Response, PageError> {
    let (action, _) = check_bridge_action(&action)?;
    pool(&console, &ns, &name)?;
    let (question, what) = match action {
        "suspend" => (
            format!("Suspend bridge {bns}/{bridge}?"),
            "It keeps receiving and storing events but delivers nothing until resumed.",
        ),
        _ => (
            format!("Resume bridge {bns}/{bridge}?"),
            "Its held deliveries are sent again.",
        ),
    };
    Ok(pages::confirm(
        &question,
        what,
        if action == "suspend" {
            "Suspend"
        } else {
            "Resume"
        },
        &format!("/pools/{ns}/{name}/bridges/{bns}/{bridge}/{action}"),
        "/",
    )
    .into_response())
}

/// A bridge action goes to every worker of the pool (each action is idempotent).
async fn bridge_action(
    State(console): State<AppState>,
    Path((ns, name, bns, bridge, action)): Path<(String, String, String, String, String)>,
) -> Result<Response, PageError> {
    let (action, done) = check_bridge_action(&action)?;
    let p = pool(&console, &ns, &name)?;
    let token = console
        .token_of(&p)
        .await
        .map_err(|e| PageError(StatusCode::BAD_GATEWAY, e))?;
    let path = format!(
        "/api/v1/bridges/{}/{}/{action}",
        pages::encode(&bns),
        pages::encode(&bridge)
    );
    let results = futures::future::join_all(
        p.workers
            .iter()
            .map(|b| console.workers.post(b, &token, &path)),
    )
    .await;
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        return Err(PageError(StatusCode::BAD_GATEWAY, e.clone()));
    }
    if results.is_empty() {
        return Err(PageError(
            StatusCode::BAD_GATEWAY,
            "no running worker".into(),
        ));
    }
    tracing::info!(pool = %format!("{ns}/{name}"), bridge = %format!("{bns}/{bridge}"), action, "console: bridge action");
    Ok(Redirect::to(&format!("/?done={done}")).into_response())
}

async fn actions_page(State(console): State<AppState>) -> Response {
    let pools = console.directory.pools();
    let answers = ask_each_pool(&console, pools, "/api/v1/actions?limit=50").await;
    pages::actions(&answers).into_response()
}
