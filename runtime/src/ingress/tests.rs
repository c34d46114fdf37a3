//! Ingress in-process: requests go through [`super::handle`] with full bodies (no socket),
//! against a real embedded store. Each refusal answers its status and stores nothing.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use causeway_config::{BridgeConfig, WorkerConfig};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::limits::Limits;
use crate::shared::Shared;
use crate::store::{EventId, EventQuery, EventStatus};

const PATH: &str = "/hooks/shop/orders";
const KEY: &str = "k_live_ingress_test_0123456789";

fn bridge(extra: serde_json::Value) -> BridgeConfig {
    let mut v = serde_json::json!({
        "namespace": "shop", "name": "orders", "path": PATH, "methods": ["POST"],
        "maxBodyBytes": 1024, "idempotencyHeader": "webhook-id", "dedupeWindowMs": 60_000,
        "suspend": false, "stepRetry": causeway_config::RetryConfig::default(),
        "destinations": [], "onMissing": "empty"
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn worker(dir: &Path, b: BridgeConfig, limits: Limits) -> Arc<Shared> {
    let cfg = WorkerConfig {
        version: "v1".into(),
        bridges: vec![b],
        ..WorkerConfig::default()
    };
    crate::testkit::shared(dir, cfg, limits)
}

async fn send(
    shared: &Arc<Shared>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(Full::new(Bytes::from_static(body))).unwrap();
    let resp = super::handle(shared, req).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (parts.status, parts.headers, json)
}

async fn stored(shared: &Shared) -> Vec<crate::store::EventRecord> {
    shared
        .store
        .list_events(EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn an_accepted_event_is_stored_before_the_202_with_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), bridge(serde_json::json!({})), Limits::default());
    let (status, _, body) = send(&w, "POST", PATH, &[], br#"{"order":1}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id: EventId = body["id"].as_str().unwrap().parse().unwrap();
    let detail = w.store.event(id).await.unwrap().expect("stored");
    assert_eq!(detail.record.bridge, "shop/orders");
    assert_eq!(detail.record.status, EventStatus::Pending);
    assert_eq!(&detail.body[..], br#"{"order":1}"#);
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_large_bodies_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), bridge(serde_json::json!({})), Limits::default());

    let (status, _, body) = send(&w, "POST", "/hooks/shop/nope", &[], b"{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no bridge or route at this path");

    let (status, headers, _) = send(&w, "GET", PATH, &[], b"").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");

    // Declared too large: refused before the body is read.
    let (status, _, _) = send(&w, "POST", PATH, &[("content-length", "4096")], b"{}").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Larger than declared (no length): refused while reading.
    let big: &'static [u8] = Box::leak(vec![b'x'; 2048].into_boxed_slice());
    let (status, _, _) = send(&w, "POST", PATH, &[], big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    assert!(stored(&w).await.is_empty());
}

#[tokio::test]
async fn an_api_key_bridge_refuses_a_missing_or_wrong_key_and_never_stores_the_key() {
    // The key in a header, then in a query parameter (a bridge has one place for it).
    let places = [
        (serde_json::json!({ "header": "x-api-key" }), true),
        (serde_json::json!({ "queryParam": "key" }), false),
    ];
    for (place, in_header) in places {
        let dir = tempfile::tempdir().unwrap();
        let mut auth = serde_json::json!({ "type": "apiKey", "keys": [KEY] });
        for (k, v) in place.as_object().unwrap() {
            auth[k] = v.clone();
        }
        let w = worker(
            dir.path(),
            bridge(serde_json::json!({ "auth": auth })),
            Limits::default(),
        );
        let with_key = |key: &'static str| -> (String, Vec<(&'static str, &'static str)>) {
            if in_header {
                (format!("{PATH}?page=2"), vec![("x-api-key", key)])
            } else {
                (format!("{PATH}?key={key}&page=2"), vec![])
            }
        };

        let (status, _, body) = send(&w, "POST", PATH, &[], b"{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{place}");
        assert_eq!(body["error"], "unauthorized");
        let (uri, headers) = with_key("wrong");
        let (status, _, _) = send(&w, "POST", &uri, &headers, b"{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{place}");
        assert!(stored(&w).await.is_empty());

        let (uri, headers) = with_key(KEY);
        let (status, _, body) = send(&w, "POST", &uri, &headers, b"{}").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{place}");
        let id: EventId = body["id"].as_str().unwrap().parse().unwrap();
        let detail = w.store.event(id).await.unwrap().unwrap();
        let text = format!("{:?}", detail.record);
        assert!(!text.contains(KEY), "the key was stored: {text}");
        assert!(
            text.contains("page=2"),
            "the rest of the query is kept: {text}"
        );
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_answers_the_first_id_and_stores_once() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), bridge(serde_json::json!({})), Limits::default());
    let h = [("webhook-id", "msg_1")];
    let (s1, h1, b1) = send(&w, "POST", PATH, &h, b"{}").await;
    let (s2, h2, b2) = send(&w, "POST", PATH, &h, b"{}").await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(b1["id"], b2["id"]);
    assert!(h1.get("causeway-duplicate").is_none());
    assert_eq!(h2["causeway-duplicate"], "true");
    assert_eq!(stored(&w).await.len(), 1);
}

#[tokio::test]
async fn a_suspended_bridge_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(
        dir.path(),
        bridge(serde_json::json!({ "suspend": true })),
        Limits::default(),
    );
    let (status, headers, body) = send(&w, "POST", PATH, &[], b"{}").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "bridge suspended");
    assert_eq!(headers["retry-after"], "60");
    // Resumed through the config handle (as the admin API does): accepted.
    w.config.set_suspended("shop/orders", false);
    let (status, _, _) = send(&w, "POST", PATH, &[], b"{}").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(stored(&w).await.len(), 1);
}

/// Issue 18: a bridge whose Bridge is being deleted answers 410 Gone with a JSON error
/// and stores nothing (suspended or not: it is going, not pausing).
#[tokio::test]
async fn a_draining_bridge_answers_410_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(
        dir.path(),
        bridge(serde_json::json!({ "draining": true, "suspend": true })),
        Limits::default(),
    );
    let (status, headers, body) = send(&w, "POST", PATH, &[], b"{}").await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(
        body["error"],
        "bridge shop/orders is being deleted: it takes no new events (its queued deliveries are draining)"
    );
    assert!(headers.get("retry-after").is_none(), "gone is not a retry");
    assert!(stored(&w).await.is_empty());
}

#[tokio::test]
async fn past_the_ingress_rate_limit_429_with_retry_after_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let limit = serde_json::json!({ "ingressRateLimit": { "perSecond": 1, "burst": 2 } });
    let w = worker(dir.path(), bridge(limit), Limits::default());
    let mut statuses = vec![];
    for _ in 0..10 {
        let (status, headers, _) = send(&w, "POST", PATH, &[], b"{}").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(wait >= 1, "retry-after {wait}");
        }
        statuses.push(status);
    }
    // The burst of two passes; ten requests cannot all find a refilled token (one a second).
    assert_eq!(statuses[..2], [StatusCode::ACCEPTED; 2], "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(stored(&w).await.len(), accepted);
}

#[tokio::test]
async fn when_the_body_budget_is_spent_503_without_reading_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_body_bytes_in_flight: 1024,
        ..Limits::default()
    };
    let w = worker(dir.path(), bridge(serde_json::json!({})), limits);
    // Another request holds the whole budget.
    let held = w.body_budget.clone().try_acquire_many_owned(1).unwrap();
    let (status, headers, _) = send(&w, "POST", PATH, &[("content-length", "2")], b"{}").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(stored(&w).await.is_empty());
    drop(held);
    let (status, _, _) = send(&w, "POST", PATH, &[("content-length", "2")], b"{}").await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_internal_port_serves_only_internal_plugin_paths() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), bridge(serde_json::json!({})), Limits::default());
    let req = Request::builder()
        .method("POST")
        .uri(PATH)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let resp = super::internal_request(&w, req).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(stored(&w).await.is_empty());
}
