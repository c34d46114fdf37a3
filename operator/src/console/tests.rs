//! The cluster console in-process (`oneshot`), over workers served on loopback by small
//! HTTP servers that answer as the workers' admin API does and check the pool's token.
//! The real workers are behind it in the e2e suite (`e2e/tests/e2e/console.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use serde_json::json;
use tower::ServiceExt as _;

use super::*;

const CONSOLE_TOKEN: &str = "console-token-for-tests";

/// What a fake worker was asked: `METHOD path?query`.
type Seen = Arc<Mutex<Vec<String>>>;

/// One worker of `pool` with `token`, holding `events` (newest first); returns its base URL.
async fn worker(pool: &str, token: &str, events: Vec<serde_json::Value>, seen: Seen) -> String {
    #[derive(Clone)]
    struct W {
        pool: String,
        token: String,
        events: Vec<serde_json::Value>,
        seen: Seen,
    }
    async fn answer(State(w): State<W>, req: Request) -> axum::response::Response {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bearer {}", w.token) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized"})),
            )
                .into_response();
        }
        let path = req.uri().path().to_string();
        w.seen.lock().unwrap().push(format!(
            "{} {}",
            req.method(),
            req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
        ));
        let body = match (req.method().as_str(), path.as_str()) {
            ("GET", "/api/v1/bridges") => json!({"bridges": [{
                "bridge": format!("{}/orders", w.pool.split('/').next().unwrap()),
                "path": "/hooks/orders", "methods": ["POST"], "suspended": false,
                "destinations": [{"name": "crm", "paused": false}],
            }]}),
            ("GET", "/api/v1/events") => json!({"events": w.events}),
            ("GET", "/api/v1/actions") => json!({"actions": [{"atMs": 1_767_225_600_000u64,
                "action": "suspend", "bridge": "x/orders", "jobs": 0, "via": "api"}]}),
            ("GET", p) if p.starts_with("/api/v1/events/") => {
                let id = p.trim_start_matches("/api/v1/events/");
                match w.events.iter().find(|e| e["id"] == id) {
                    Some(e) => {
                        let mut e = e.clone();
                        e["deliveries"] = json!([{"destination": "crm", "status": "delivered",
                            "attempts": [{"at": "2026-01-01T00:00:01Z", "durationMs": 3, "statusCode": 200}]}]);
                        e
                    }
                    None => {
                        return (
                            StatusCode::NOT_FOUND,
                            Json(json!({"error": format!("no event {id}")})),
                        )
                            .into_response();
                    }
                }
            }
            ("POST", p) if p.ends_with("/replay") => json!({"replayed": 1}),
            ("POST", _) => json!({"ok": true}),
            _ => return StatusCode::NOT_FOUND.into_response(),
        };
        Json(body).into_response()
    }
    use axum::Json;
    let app = axum::Router::new().fallback(answer).with_state(W {
        pool: pool.into(),
        token: token.into(),
        events,
        seen,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Pools and tokens as the tests set them (the one part that stands in for the cluster).
struct Fixed(Vec<(PoolTarget, String)>);

impl Directory for Fixed {
    fn pools(&self) -> Vec<PoolTarget> {
        self.0.iter().map(|(p, _)| p.clone()).collect()
    }
    fn token(&self, namespace: &str, pool: &str) -> BoxFuture<'static, Result<String, String>> {
        let t = self
            .0
            .iter()
            .find(|(p, _)| p.namespace == namespace && p.pool == pool)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| format!("no Secret causeway-{pool}-admin yet"));
        Box::pin(async move { t })
    }
}

fn ev(id: &str, bridge: &str) -> serde_json::Value {
    json!({"id": id, "bridge": bridge, "receivedAt": "2026-01-01T00:00:00Z", "status": "delivered"})
}

const A1: &str = "019b7676-0000-7000-8000-000000000001";
const B2: &str = "019b7676-0001-7000-8000-000000000002";
const A3: &str = "019b7676-0002-7000-8000-000000000003";

/// Two pools in two namespaces (`shop/default` with two workers, `billing/fast`), and a
/// pool whose workers cannot be reached.
async fn cluster() -> (Arc<Console>, Seen) {
    let seen: Seen = Arc::default();
    let shop1 = worker(
        "shop/default",
        "shop-token",
        vec![ev(A3, "shop/orders"), ev(A1, "shop/orders")],
        seen.clone(),
    )
    .await;
    let shop2 = worker(
        "shop/default",
        "shop-token",
        vec![ev(A3, "shop/orders")],
        seen.clone(),
    )
    .await;
    let billing = worker(
        "billing/fast",
        "billing-token",
        vec![ev(B2, "billing/orders")],
        seen.clone(),
    )
    .await;
    let pools = vec![
        (
            PoolTarget {
                namespace: "billing".into(),
                pool: "fast".into(),
                workers: vec![billing],
            },
            "billing-token".to_string(),
        ),
        (
            PoolTarget {
                namespace: "shop".into(),
                pool: "default".into(),
                workers: vec![shop1, shop2],
            },
            "shop-token".to_string(),
        ),
        (
            // A port nothing listens on.
            PoolTarget {
                namespace: "gone".into(),
                pool: "p".into(),
                workers: vec!["http://127.0.0.1:1".into()],
            },
            "gone-token".to_string(),
        ),
    ];
    let console = Console {
        token: CONSOLE_TOKEN.into(),
        directory: Arc::new(Fixed(pools)),
        workers: WorkerClient::new(Duration::from_secs(2)).unwrap(),
    };
    (Arc::new(console), seen)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(c: &Arc<Console>, req: axum::http::request::Builder, body: &str) -> Answer {
    let resp = router(c.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(c: &Arc<Console>, uri: &str) -> Answer {
    let req = axum::http::Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {CONSOLE_TOKEN}"));
    send(c, req, "").await
}

async fn post(c: &Arc<Console>, uri: &str, origin: Option<&str>, form: &str) -> Answer {
    let mut req = axum::http::Request::post(uri)
        .header(header::HOST, "console.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Bearer {CONSOLE_TOKEN}"));
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    send(c, req, form).await
}

#[tokio::test]
async fn every_request_needs_the_console_token() {
    let (c, _) = cluster().await;
    for path in [
        "/",
        "/events",
        "/actions",
        &format!("/events/shop/default/{A1}"),
    ] {
        let a = send(&c, axum::http::Request::get(path), "").await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(a.headers[header::LOCATION], "/login", "{path}");
        let wrong = axum::http::Request::get(path).header(header::AUTHORIZATION, "Bearer nope");
        assert_eq!(
            send(&c, wrong, "").await.status,
            StatusCode::SEE_OTHER,
            "{path}"
        );
    }
    let a = send(&c, axum::http::Request::post("/logout"), "").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "no CSRF token");
    // Sign in: a wrong token is refused, the right one sets a cookie that is not the token.
    let login = |form: String| {
        axum::http::Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "console.test")
            .header(header::ORIGIN, "http://console.test")
            .body(Body::from(form))
            .unwrap()
    };
    let csrf = csrf_token();
    let r = router(c.clone())
        .oneshot(login(format!("csrf={csrf}&token=wrong")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = router(c.clone())
        .oneshot(login(format!("csrf={csrf}&token={CONSOLE_TOKEN}")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(CONSOLE_TOKEN),
        "the cookie never holds the token"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let a = send(
        &c,
        axum::http::Request::get("/").header(header::COOKIE, session),
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    // The worker console's policy: no inline script, no frames.
    let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!a.body.contains("<script"), "no script at all");
    assert!(!a.body.contains("style="), "no inline style");
}

#[tokio::test]
async fn bridges_of_every_pool_of_every_namespace() {
    let (c, seen) = cluster().await;
    let page = get(&c, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    for want in [
        "Pool billing/fast",
        "Pool shop/default",
        "billing/orders",
        "shop/orders",
        "id=\"bridge-shop-default-orders\"",
        "id=\"bridge-billing-fast-orders\"",
        "/pools/shop/default/bridges/shop/orders/suspend",
    ] {
        assert!(page.body.contains(want), "{want}: {}", page.body);
    }
    // An unreachable pool says so, and the others still show.
    assert!(
        page.body.contains("Pool gone/p") && page.body.contains("Not reachable"),
        "{}",
        page.body
    );
    // Each pool was asked with its own token (the fake workers refuse any other), and no
    // token is on the page.
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|s| s == "GET /api/v1/bridges")
    );
    for secret in [CONSOLE_TOKEN, "shop-token", "billing-token", "gone-token"] {
        assert!(!page.body.contains(secret), "{secret} on the page");
    }
}

#[tokio::test]
async fn events_of_every_pool_newest_first_with_the_filters() {
    let (c, seen) = cluster().await;
    let page = get(&c, "/events").await;
    assert_eq!(page.status, StatusCode::OK);
    let rows: Vec<&str> = page
        .body
        .split("<tr id=\"ev-")
        .skip(1)
        .map(|r| &r[..36])
        .collect();
    assert_eq!(
        rows,
        vec![A3, B2, A1],
        "merged over pools and workers, each once, newest first"
    );
    assert!(
        page.body.contains(&format!("/events/billing/fast/{B2}")),
        "{}",
        page.body
    );
    // One pool, with the filters passed to its workers.
    let a = get(
        &c,
        "/events?pool=billing%2Ffast&status=dead&bridge=billing%2Forders&since=2026-01-01T00:00&until=2026-01-02T00:00:00Z&webhookId=msg_1",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let asked = seen.lock().unwrap().clone();
    assert!(
        asked.iter().any(|s| s == "GET /api/v1/events?limit=51&status=dead&bridge=billing%2Forders&since=2026-01-01T00%3A00&until=2026-01-02T00%3A00%3A00Z&webhookId=msg_1"),
        "{asked:?}"
    );
    // Bad input: a 400 that says what is wrong.
    for (q, want) in [
        ("status=lost", "unknown status"),
        ("since=yesterday", "since: not a time"),
        ("before=xyz", "not an event id"),
        ("pool=nopool", "name it as namespace/pool"),
    ] {
        let a = get(&c, &format!("/events?{q}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(a.body.contains(want), "{q}: {}", a.body);
    }
    assert_eq!(
        get(&c, "/events?pool=shop%2Fnone").await.status,
        StatusCode::NOT_FOUND
    );
    // One event, from the worker that has it.
    let e = get(&c, &format!("/events/shop/default/{A1}")).await;
    assert_eq!(e.status, StatusCode::OK);
    assert!(
        e.body.contains("crm") && e.body.contains("200"),
        "{}",
        e.body
    );
    let e = get(&c, &format!("/events/shop/default/{B2}")).await;
    assert_eq!(e.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&c, "/events/shop/default/not-an-id").await.status,
        StatusCode::BAD_REQUEST
    );
    // The actions of every pool.
    let a = get(&c, "/actions").await;
    assert!(
        a.body.contains("2026-01-01T00:00:00Z") && a.body.contains("suspend"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn actions_are_confirmed_and_need_the_csrf_token_and_this_origin() {
    let (c, seen) = cluster().await;
    let path = "/pools/shop/default/bridges/shop/orders/suspend";
    let confirm = get(&c, path).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("Suspend bridge shop/orders?"),
        "{}",
        confirm.body
    );
    assert!(
        confirm
            .body
            .contains(&format!("name=\"csrf\" value=\"{}\"", csrf_token()))
    );
    let csrf = format!("csrf={}", csrf_token());
    assert_eq!(
        post(&c, path, Some("http://console.test"), "").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&c, path, Some("http://evil.test"), &csrf).await.status,
        StatusCode::FORBIDDEN
    );
    let before = seen.lock().unwrap().len();
    let done = post(&c, path, Some("http://console.test"), &csrf).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.headers[header::LOCATION], "/?done=suspended");
    let posted: Vec<String> = seen.lock().unwrap()[before..]
        .iter()
        .filter(|s| s.starts_with("POST"))
        .cloned()
        .collect();
    assert_eq!(
        posted,
        vec!["POST /api/v1/bridges/shop/orders/suspend"; 2],
        "every worker of the pool"
    );
    assert!(
        get(&c, "/?done=suspended")
            .await
            .body
            .contains("Bridge suspended.")
    );
    assert_eq!(
        post(
            &c,
            "/pools/shop/default/bridges/shop/orders/delete",
            Some("http://console.test"),
            &csrf
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // Replay, confirmed, goes to the worker that has the event.
    let replay = format!("/events/shop/default/{A1}/replay");
    assert!(
        get(&c, &replay)
            .await
            .body
            .contains(&format!("Replay event {A1}?"))
    );
    let done = post(&c, &replay, Some("http://console.test"), &csrf).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.headers[header::LOCATION],
        format!("/events/shop/default/{A1}?done=replayed&n=1")
    );
}

/// Pools with rendered configurations, as the config Secrets hold them.
struct WithConfigs(
    Vec<(
        PoolTarget,
        Result<causeway_crds::config::WorkerConfig, String>,
    )>,
);

impl Directory for WithConfigs {
    fn pools(&self) -> Vec<PoolTarget> {
        self.0.iter().map(|(p, _)| p.clone()).collect()
    }
    fn token(&self, _: &str, _: &str) -> BoxFuture<'static, Result<String, String>> {
        Box::pin(async { Err("no token here".to_string()) })
    }
    fn config(
        &self,
        namespace: &str,
        pool: &str,
    ) -> BoxFuture<'static, Result<causeway_crds::config::WorkerConfig, String>> {
        let c = self
            .0
            .iter()
            .find(|(p, _)| p.namespace == namespace && p.pool == pool)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| Err("no such pool".into()));
        Box::pin(async move { c })
    }
}

fn rendered(ns: &str, bridges: &[(&str, &str)]) -> causeway_crds::config::WorkerConfig {
    let bridges = bridges
        .iter()
        .map(|(name, streams)| {
            serde_json::from_value(json!({
                "namespace": ns, "name": name, "path": format!("/hooks/{ns}/{name}"),
                "methods": ["POST"], "maxBodyBytes": 1024, "idempotencyHeader": "webhook-id",
                "dedupeWindowMs": 1000, "suspend": false,
                "auth": {"type": "apiKey", "header": "x-api-key", "keys": ["ingress-key-secret"]},
                "stepRetry": causeway_crds::config::RetryConfig::default(),
                "destinations": [], "onMissing": "empty",
                "streams": serde_json::from_str::<serde_json::Value>(streams).unwrap(),
            }))
            .unwrap()
        })
        .collect();
    causeway_crds::config::WorkerConfig {
        version: format!("v-{ns}"),
        bridges,
        ..Default::default()
    }
}

/// Issue 17: `GET /asyncapi/<namespace>` on the operator's console is the document of the
/// bridges of every pool of that namespace, made by the worker's function from each
/// pool's rendered configuration, each pool's ingress at its Service; no secret in it; 404
/// for a namespace without pools, 502 naming a pool whose configuration cannot be read,
/// and the console token is required.
#[tokio::test]
async fn asyncapi_of_a_namespace_spans_its_pools() {
    let stream = r#"[{"name": "live", "auth": {"type": "apiKey", "header": "x-consumer-key", "keys": ["stream-key-secret"]},
        "maxConnectionsPerConsumer": 0, "maxConnections": 0, "eventsPerSecond": 0, "bufferEvents": 1024,
        "stallTimeoutMs": 30000, "retentionMs": 86400000, "heartbeatMs": 15000}]"#;
    let target = |ns: &str, pool: &str| PoolTarget {
        namespace: ns.into(),
        pool: pool.into(),
        workers: vec![],
    };
    let dir = WithConfigs(vec![
        (
            target("shop", "default"),
            Ok(rendered("shop", &[("orders", stream)])),
        ),
        (
            target("shop", "fast"),
            Ok(rendered("shop", &[("refunds", "[]")])),
        ),
        (
            target("billing", "default"),
            Ok(rendered("billing", &[("invoices", "[]")])),
        ),
        (
            target("broken", "default"),
            Err("no Secret causeway-default-config yet".into()),
        ),
    ]);
    let c = Arc::new(Console {
        token: CONSOLE_TOKEN.into(),
        directory: Arc::new(dir),
        workers: WorkerClient::new(Duration::from_secs(2)).unwrap(),
    });

    let a = get(&c, "/asyncapi/shop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let doc: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let channels = doc["channels"].as_object().unwrap();
    let mut names: Vec<&str> = channels.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "shop__orders__ingress",
            "shop__orders__streams__live",
            "shop__refunds__ingress"
        ],
        "both pools' bridges, no other namespace's"
    );
    // Each pool's ingress is its own Service.
    assert_eq!(
        doc["servers"]["default__ingress"]["host"],
        "causeway-default.shop.svc:8080"
    );
    assert_eq!(
        doc["servers"]["fast__ingress"]["host"],
        "causeway-fast.shop.svc:8080"
    );
    assert_eq!(doc["servers"]["default__ingress-ws"]["protocol"], "ws");
    assert_eq!(
        channels["shop__refunds__ingress"]["servers"],
        json!([{"$ref": "#/servers/fast__ingress"}])
    );
    let live = &channels["shop__orders__streams__live"];
    assert_eq!(live["address"], "/streams/shop/orders/live");
    assert_eq!(
        live["servers"],
        json!([{"$ref": "#/servers/default__ingress"}, {"$ref": "#/servers/default__ingress-ws"}])
    );
    assert_eq!(live["bindings"]["ws"]["method"], "GET");
    assert_eq!(
        doc["operations"]["shop__orders__streams__live__sse"]["bindings"]["http"]["method"],
        "GET"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["shop__orders__streams__live__auth"]["name"],
        "x-consumer-key"
    );
    assert_eq!(doc["info"]["version"], "default@v-shop,fast@v-shop");
    for secret in ["stream-key-secret", "ingress-key-secret"] {
        assert!(!a.body.contains(secret), "{}", a.body);
    }

    // One pool: its document as the worker serves it, with the pool's Service as host.
    let one: serde_json::Value =
        serde_json::from_str(&get(&c, "/asyncapi/billing").await.body).unwrap();
    assert_eq!(
        one["servers"]["ingress"]["host"],
        "causeway-default.billing.svc:8080"
    );
    assert!(one["channels"]["billing__invoices__ingress"].is_object());

    let none = get(&c, "/asyncapi/nowhere").await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert!(
        none.body.contains("no worker pool in namespace nowhere"),
        "{}",
        none.body
    );
    let broken = get(&c, "/asyncapi/broken").await;
    assert_eq!(broken.status, StatusCode::BAD_GATEWAY);
    assert!(
        broken.body.contains("pool default: no Secret"),
        "{}",
        broken.body
    );

    let anonymous = send(&c, axum::http::Request::get("/asyncapi/shop"), "").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
}
