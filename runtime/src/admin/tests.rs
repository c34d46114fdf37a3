//! The admin router in-process (`tower::ServiceExt::oneshot`): authentication, bad input
//! and the answers a client sees, without sockets.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use causeway_config::{SecretValue, WorkerConfig};
use tower::ServiceExt as _;

use super::router;
use crate::config::active::{Active, ConfigHandle};
use crate::delivery::handle::DeliveryHandle;
use crate::health::Health;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::netguard::NetGuard;
use crate::plugins::Plugins;
use crate::shared::Shared;
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;

const TOKEN: &str = "admin-token-for-tests";

fn shared(dir: &std::path::Path) -> Arc<Shared> {
    let metrics = Metrics::new().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.join("store"), None).unwrap());
    let plugins = Plugins::new(
        dir.join("plugins"),
        store.clone(),
        metrics.plugin_registry.clone(),
        true,
    )
    .unwrap();
    let shared = Shared {
        streams: crate::streams::Streams::new(
            store.clone(),
            &metrics.registry,
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap(),
        websub: Arc::new(crate::websub::Hubs::new(store.clone())),
        store,
        store_info: crate::shared::StoreInfo::embedded(&dir.join("store")),
        config: ConfigHandle::new(None),
        plugins,
        delivery: DeliveryHandle::new(&metrics),
        health: Health::new(dir.join("store"), 0),
        limits: Limits::default(),
        http: reqwest::Client::new(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        ingress_addr: "127.0.0.1:0".parse().unwrap(),
        netguard: Arc::new(NetGuard::default()),
        traces: crate::traces::Traces::off(),
        body_budget: Arc::new(tokio::sync::Semaphore::new(1024)),
        metrics,
    };
    let cfg = WorkerConfig {
        version: "v1".into(),
        admin_token: Some(SecretValue(TOKEN.into())),
        ..WorkerConfig::default()
    };
    shared.config.swap(Arc::new(Active {
        config: Arc::new(cfg),
        ..Active::empty()
    }));
    shared.health.set_started(true);
    Arc::new(shared)
}

async fn call(
    shared: &Arc<Shared>,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router(shared.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn health_readiness_and_metrics_need_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    assert_eq!(call(&s, "GET", "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(call(&s, "GET", "/readyz", None).await.0, StatusCode::OK);
    let (code, text) = call(&s, "GET", "/metrics", None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        text.contains("causeway_ingress_connections_open 0"),
        "{text}"
    );
    s.health.set_started(false);
    assert_eq!(
        call(&s, "GET", "/readyz", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn the_api_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    for uri in [
        "/api/v1/events",
        "/api/v1/config",
        "/api/v1/bridges",
        "/api/v1/store",
    ] {
        assert_eq!(
            call(&s, "GET", uri, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        assert_eq!(
            call(&s, "GET", uri, Some("wrong")).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        assert_eq!(
            call(&s, "GET", uri, Some(TOKEN)).await.0,
            StatusCode::OK,
            "{uri}"
        );
    }
    let (code, text) = call(&s, "GET", "/api/v1/config", Some(TOKEN)).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        !text.contains(TOKEN),
        "the config report never carries the token: {text}"
    );
}

/// The report names the store and its health for the operator's status (issue 14); the
/// database's host is in it, its password never.
#[tokio::test]
async fn the_config_report_names_the_store_and_never_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let (_, text) = call(&shared(dir.path()), "GET", "/api/v1/config", Some(TOKEN)).await;
    let report: causeway_config::WorkerReport = serde_json::from_str(&text).unwrap();
    let store = report.store.expect("a store section");
    assert_eq!((store.engine.as_str(), store.healthy), ("embedded", true));

    let dir = tempfile::tempdir().unwrap();
    let mut s = Arc::into_inner(shared(dir.path())).unwrap();
    s.store_info =
        crate::shared::StoreInfo::postgres("postgres://causeway:s3cr3t@db.shop.svc:5432/app");
    let (_, text) = call(&Arc::new(s), "GET", "/api/v1/config", Some(TOKEN)).await;
    assert!(!text.contains("s3cr3t"), "{text}");
    let report: causeway_config::WorkerReport = serde_json::from_str(&text).unwrap();
    let store = report.store.unwrap();
    assert_eq!(store.engine, "postgres");
    assert_eq!(store.message, "postgres at db.shop.svc:5432/app");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    let (code, text) = call(&s, "GET", "/api/v1/events?status=bogus", Some(TOKEN)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(text.contains("unknown status"), "{text}");
    let (code, text) = call(&s, "GET", "/api/v1/events/not-an-id", Some(TOKEN)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(text.contains("not an event id"), "{text}");
    let (code, _) = call(
        &s,
        "GET",
        "/api/v1/events/01a1fea3-8901-766a-bd3a-cfe069e94bff",
        Some(TOKEN),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = call(
        &s,
        "POST",
        "/api/v1/bridges/default/nope/suspend",
        Some(TOKEN),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = call(
        &s,
        "POST",
        "/api/v1/bridges/default/nope/destinations/x/resume",
        Some(TOKEN),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = call(&s, "GET", "/api/v1/events", Some(TOKEN)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        call(&s, "DELETE", "/api/v1/events", Some(TOKEN)).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

/// Issue 16: the events API filters by time (`since`, `until`: RFC 3339, or milliseconds)
/// and finds events by their `webhook-id`, with the other filters.
#[tokio::test]
async fn events_filter_by_time_and_webhook_id() {
    use crate::store::{EventId, EventRecord, EventStatus, NewEvent};
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path());
    // 2026-01-01T00:00:00Z, and one event a minute after it.
    const T: u64 = 1_767_225_600_000;
    let mut ids = vec![];
    for i in 0..4u64 {
        let at = T + i * 60_000;
        let id = uuid::Builder::from_unix_timestamp_millis(at, &[i as u8; 10]).into_uuid();
        let record = EventRecord {
            id,
            bridge: if i % 2 == 0 { "shop/a" } else { "shop/b" }.into(),
            received_at_ms: at,
            method: "POST".into(),
            query: String::new(),
            headers: vec![("webhook-id".into(), format!("msg_{}", i % 3))],
            status: EventStatus::Delivered,
            reason: None,
            body_bytes: 2,
            parent: None,
            children: vec![],
            trace: None,
        };
        s.store
            .append(NewEvent {
                record,
                body: bytes::Bytes::from_static(b"{}"),
                jobs: vec![],
                idempotency: None,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    let listed = |text: &str| -> Vec<EventId> {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let get = |q: String| {
        let s = s.clone();
        async move { call(&s, "GET", &format!("/api/v1/events?{q}"), Some(TOKEN)).await }
    };
    let (code, text) = get("since=2026-01-01T00:01:00Z&until=2026-01-01T00:03:00Z".into()).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    assert_eq!(listed(&text), vec![ids[2], ids[1]]);
    let (_, text) = get(format!("since={}", T + 120_000)).await;
    assert_eq!(listed(&text), vec![ids[3], ids[2]], "milliseconds");
    let (_, text) = get("since=2026-01-01T01:00:00%2B01:00".into()).await;
    assert_eq!(listed(&text).len(), 4, "an offset");
    let (_, text) = get("webhookId=msg_0".into()).await;
    assert_eq!(listed(&text), vec![ids[3], ids[0]]);
    let (_, text) = get("webhookId=msg_0&bridge=shop%2Fa".into()).await;
    assert_eq!(listed(&text), vec![ids[0]]);
    let (_, text) = get("webhookId=msg_0&since=2026-01-01T00:00:01Z".into()).await;
    assert_eq!(listed(&text), vec![ids[3]]);
    let (_, text) = get("webhookId=msg_9".into()).await;
    assert!(listed(&text).is_empty());
    // Bad input: a 400 that names the parameter.
    for (q, want) in [
        ("since=yesterday", "since: not a time"),
        ("until=2026-13-01T00:00:00Z", "until: not a time"),
        (
            "since=2026-01-01T00:02:00Z&until=2026-01-01T00:01:00Z",
            "since must be earlier than until",
        ),
    ] {
        let (code, text) = get(q.into()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}: {text}");
        assert!(text.contains(want), "{q}: {text}");
    }
    let (code, text) = get(format!("webhookId={}", "x".repeat(513))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(text.contains("webhookId: longer than 512 bytes"), "{text}");
}
