//! The config watch against a loopback fake of the API server's Secret endpoints.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};

use super::*;

fn secret(version: &str, rv: &str) -> Value {
    let cfg = WorkerConfig {
        version: version.into(),
        pool: "orders".into(),
        namespace: "shop".into(),
        ..WorkerConfig::default()
    };
    let data = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&cfg).unwrap());
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "causeway-orders-config", "namespace": "shop", "resourceVersion": rv},
           "data": {"config.json": data}})
}

fn bad_secret(rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "causeway-orders-config", "namespace": "shop", "resourceVersion": rv},
           "data": {"config.json": base64::engine::general_purpose::STANDARD.encode("{not json")}})
}

type Seen = Arc<Mutex<Vec<String>>>;

async fn list_or_watch(
    State(seen): State<Seen>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    seen.lock().unwrap().push(format!("{q:?}"));
    if q.get("fieldSelector").map(String::as_str) != Some("metadata.name=causeway-orders-config") {
        return axum::response::IntoResponse::into_response((
            axum::http::StatusCode::FORBIDDEN,
            "resourceNames needs a fieldSelector",
        ));
    }
    if q.get("watch").map(String::as_str) == Some("true") {
        let lines = vec![
            format!(
                "{}\n",
                json!({"type": "MODIFIED", "object": bad_secret("2")})
            ),
            format!(
                "{}\n",
                json!({"type": "MODIFIED", "object": secret("v2", "3")})
            ),
        ];
        let stream = futures::stream::iter(
            lines
                .into_iter()
                .map(|l| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(l))),
        )
        .chain(futures::stream::pending());
        return axum::response::IntoResponse::into_response(Body::from_stream(stream));
    }
    axum::response::IntoResponse::into_response(axum::Json(json!({
        "apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": "1"}, "items": [secret("v1", "1")]
    })))
}

async fn fake_apiserver() -> (Client, Seen, tokio::task::JoinHandle<()>) {
    fake_apiserver_with(secret("v1", "1")).await
}

/// The fake, answering a GET of the config Secret with `first`.
async fn fake_apiserver_with(first: Value) -> (Client, Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/api/v1/namespaces/shop/secrets", get(list_or_watch))
        .route(
            "/api/v1/namespaces/shop/secrets/causeway-orders-config",
            get(move || {
                let first = first.clone();
                async move { axum::Json(first) }
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let config = kube::Config::new(url.parse().unwrap());
    (Client::try_from(config).unwrap(), seen, server)
}

#[test]
fn pool_argument() {
    assert_eq!(
        parse_pool("shop/orders").unwrap(),
        ("shop".to_string(), "orders".to_string())
    );
    for bad in ["orders", "/orders", "shop/", "a/b/c"] {
        assert!(parse_pool(bad).is_err(), "{bad}");
    }
    assert_eq!(config_secret_name("orders"), "causeway-orders-config");
}

#[test]
fn bad_secrets_are_reported_not_parsed() {
    let s: Secret = serde_json::from_value(bad_secret("1")).unwrap();
    assert!(parse_secret(&s).unwrap_err().contains("not a WorkerConfig"));
    let empty: Secret = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    assert!(parse_secret(&empty).unwrap_err().contains("no key"));
    let good: Secret = serde_json::from_value(secret("v1", "1")).unwrap();
    assert_eq!(parse_secret(&good).unwrap().version, "v1");
}

#[tokio::test]
async fn publishes_each_version_skips_a_bad_one_and_keeps_the_last_good() {
    let (client, seen, server) = fake_apiserver().await;
    let (tx, mut rx) = watch::channel(None);
    let task = tokio::spawn(async move { watch_config(client, "shop", "orders", tx).await });

    let mut versions = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while versions.len() < 2 {
        tokio::time::timeout_at(deadline, rx.changed())
            .await
            .expect("a new version in time")
            .unwrap();
        if let Some(cfg) = rx.borrow_and_update().clone() {
            versions.push(cfg.version.clone());
        }
    }
    assert_eq!(
        versions,
        vec!["v1", "v2"],
        "the bad Secret in between was skipped"
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|q| q.contains("metadata.name=causeway-orders-config"))
    );

    // Dropping the receiver ends the watch.
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    server.abort();
}

#[tokio::test]
async fn secret_source_loads_then_watches() {
    let (client, _seen, server) = fake_apiserver().await;
    let mut src = SecretSource::with_client(client, "shop", "orders", Duration::from_secs(5))
        .await
        .unwrap();
    let first = src.load().unwrap();
    assert_eq!(first.config.version, "v1");
    let (out, mut rx) = watch::channel(Some(Arc::new(first)));
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(src).watch(out, stop.clone()));
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            rx.changed().await.unwrap();
            if rx
                .borrow_and_update()
                .as_ref()
                .is_some_and(|l| l.config.version == "v2")
            {
                break;
            }
        }
    })
    .await
    .expect("v2 published");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    server.abort();
}

/// A config rendered from `n` Bridge manifests by the operator's renderer.
fn rendered(n: usize) -> WorkerConfig {
    let mut yaml = String::new();
    for i in 0..n {
        yaml.push_str(&format!(
            "---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: b{i:05}, namespace: shop}}\n\
             spec:\n  destinations:\n  - name: out\n    url: \"http://127.0.0.1:9/b{i}\"\n    \
             body: '{{\"order\": \"$payload.id\", \"bridge\": \"b{i}\"}}'\n"
        ));
    }
    let inv =
        causeway_crds::manifest::load_str(&yaml, std::path::Path::new("bridges.yaml")).unwrap();
    let r = causeway_crds::config::render(
        &inv,
        &causeway_crds::config::Scope::Pool {
            namespace: "shop".into(),
            name: "default".into(),
        },
        &causeway_crds::config::RenderContext::default(),
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.config.bridges.len(), n);
    r.config
}

// Issue 15: a config too large for plain JSON in a Secret is stored compressed under
// `config.json.zst`; the worker's Secret source loads it like a plain one.
#[tokio::test]
async fn a_compressed_config_secret_loads() {
    let cfg = rendered(2_000);
    let packed = causeway_config::packing::pack(&cfg).unwrap();
    assert_eq!(
        packed.key, "config.json.zst",
        "{} bytes of JSON",
        packed.json_len
    );
    let first = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "causeway-orders-config", "namespace": "shop", "resourceVersion": "1"},
        "data": {packed.key: base64::engine::general_purpose::STANDARD.encode(&packed.bytes)}});
    let s: Secret = serde_json::from_value(first.clone()).unwrap();
    assert_eq!(parse_secret(&s).unwrap(), cfg);

    let (client, _seen, server) = fake_apiserver_with(first).await;
    let mut src = SecretSource::with_client(client, "shop", "orders", Duration::from_secs(5))
        .await
        .unwrap();
    let loaded = src.load().unwrap();
    assert_eq!(loaded.config.version, cfg.version);
    assert_eq!(loaded.config.bridges.len(), 2_000);
    assert_eq!(*loaded.config, cfg);
    server.abort();
}

#[test]
fn a_corrupt_compressed_config_is_reported_without_its_contents() {
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "x"},
        "data": {"config.json.zst": base64::engine::general_purpose::STANDARD.encode("garbage")}}))
    .unwrap();
    let e = parse_secret(&s).unwrap_err();
    assert!(e.contains("config.json.zst does not decompress"), "{e}");
}
