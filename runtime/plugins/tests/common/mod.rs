//! Helpers for the host tests: real components from examples/plugins, loopback servers,
//! metric reading.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

use bytes::Bytes;
use causeway_config::{PluginConfig, SecretValue, SourceConfig, WhenBusy, WorkerConfig};
use causeway_plugins::{HostOptions, KvStore, MemoryKv, PluginHost, PluginRef, PoolingMode};
use http_body_util::{BodyExt, Full};
use prometheus::{Encoder, Registry, TextEncoder};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn npm_available() -> bool {
    std::process::Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

static BUILD: Once = Once::new();

/// `examples/plugins/dist/<name>.wasm`, built with `examples/plugins/build.sh` when
/// missing (never silently skipped). `None` only for the JavaScript plugin on a machine
/// without npm.
pub fn try_guest(name: &str) -> Option<PathBuf> {
    let dist = repo_root().join("examples/plugins/dist");
    let path = dist.join(format!("{name}.wasm"));
    if !path.exists() {
        BUILD.call_once(|| {
            let script = repo_root().join("examples/plugins/build.sh");
            assert!(
                script.exists(),
                "{} is missing: cannot build the test components",
                script.display()
            );
            let mut cmd = std::process::Command::new("bash");
            cmd.arg(&script);
            if !npm_available() {
                eprintln!("npm not found: building the Rust plugins only (--rust-only)");
                cmd.arg("--rust-only");
            }
            eprintln!("building test components: {}", script.display());
            let status = cmd.status().expect("running examples/plugins/build.sh");
            assert!(
                status.success(),
                "examples/plugins/build.sh failed: {status}"
            );
        });
    }
    if path.exists() {
        return Some(path);
    }
    if name == "js-enricher" && !npm_available() {
        return None;
    }
    panic!(
        "{} still missing after examples/plugins/build.sh",
        path.display()
    );
}

pub fn guest(name: &str) -> PathBuf {
    try_guest(name).unwrap_or_else(|| panic!("component {name} unavailable"))
}

pub fn plugin(ns: &str, name: &str, file: &Path) -> PluginConfig {
    PluginConfig {
        namespace: ns.into(),
        name: name.into(),
        generation: Some(1),
        source: SourceConfig::File {
            path: file.display().to_string(),
        },
        allowed_outbound_hosts: vec![],
        variables: BTreeMap::new(),
        memory_bytes: 64 << 20,
        timeout_ms: 10_000,
        max_concurrency: 16,
        when_busy: WhenBusy::Queue,
        route: None,
    }
}

pub fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), SecretValue(v.to_string())))
        .collect()
}

pub fn worker(version: &str, plugins: Vec<PluginConfig>) -> WorkerConfig {
    WorkerConfig {
        version: version.into(),
        pool: "default".into(),
        plugins,
        ..WorkerConfig::default()
    }
}

pub struct TestHost {
    pub host: PluginHost,
    pub registry: Registry,
}

impl TestHost {
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.registry, name, labels)
    }
}

pub fn new_host(cache: &Path, kv: Arc<dyn KvStore>, pooling: PoolingMode) -> TestHost {
    host_with(cache, kv, pooling, true)
}

pub fn host_with(
    cache: &Path,
    kv: Arc<dyn KvStore>,
    pooling: PoolingMode,
    allow_file_sources: bool,
) -> TestHost {
    let registry = Registry::new();
    let host = PluginHost::new(HostOptions {
        cache_dir: cache.to_path_buf(),
        pooling,
        kv,
        registry: registry.clone(),
        allow_file_sources,
    })
    .expect("host");
    TestHost { host, registry }
}

/// A host as a cluster worker runs it: `file` sources refused.
pub fn cluster_host(cache: &Path) -> TestHost {
    host_with(cache, Arc::new(MemoryKv::new()), PoolingMode::Auto, false)
}

pub fn mem_host(cache: &Path) -> TestHost {
    new_host(cache, Arc::new(MemoryKv::new()), PoolingMode::Auto)
}

/// Sum of the samples of `name` whose labels include all of `labels` (counters, gauges;
/// for histograms pass `<name>_count`).
pub fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encode metrics");
    let text = String::from_utf8(buf).expect("utf8 metrics");
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, label_text) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric_name != name {
            continue;
        }
        if labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        }) {
            sum += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

pub fn req(method: &str, path: &str, body: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .expect("request")
}

pub fn body_json(resp: &http::Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(resp.body())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(resp.body())))
}

/// A loopback HTTP server (127.0.0.1 only) that counts requests.
pub struct Server {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<(String, String, http::HeaderMap)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve<F, Fut>(handler: F) -> Server
where
    F: Fn(http::Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Bytes>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let (h, s) = (hits.clone(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let (handler, hits, seen) = (handler.clone(), h.clone(), s.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |r: http::Request<hyper::body::Incoming>| {
                        let (handler, hits, seen) = (handler.clone(), hits.clone(), seen.clone());
                        async move {
                            let (parts, body) = r.into_parts();
                            let bytes = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            hits.fetch_add(1, Ordering::SeqCst);
                            seen.lock().unwrap().push((
                                parts.method.to_string(),
                                parts.uri.to_string(),
                                parts.headers.clone(),
                            ));
                            let resp = handler(http::Request::from_parts(parts, bytes)).await;
                            Ok::<_, std::convert::Infallible>(resp.map(Full::new))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        hits,
        seen,
        task,
    }
}

pub fn ok(body: &str) -> http::Response<Bytes> {
    http::Response::new(Bytes::from(body.to_string()))
}

pub fn plugin_ref(ns: &str, name: &str) -> PluginRef {
    PluginRef::new(ns, name)
}

/// Percent-encodes everything but unreserved characters (for `?url=` values).
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
