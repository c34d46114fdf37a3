//! `PluginHost`: configuration swaps, calls, public routes, chaining and the internal
//! port's request handler.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use causeway_config::{PluginConfig, PluginRoute, SecretValue, WorkerConfig};
use serde::Serialize;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{RequestOptions, WasiBody};

use crate::cache::{CacheDirs, write_atomic};
use crate::call::{
    CallCx, CallHost, CallState, Compiled, HEADER_CALLER, HEADER_DEPTH, HEADER_ERROR, HEADER_TOKEN,
    IoFuture, Loaded, OutboundCtx, OutboundFuture, add_trace_headers, build_linker, invoke, probe,
    wasi_body,
};
use crate::engine::{AllocatorKind, PoolingMode, Ticker, Ticking, build_engine, compat_hash};
use crate::error::{CallError, HostError, LoadError};
use crate::kv::KvStore;
use crate::log::PluginLogs;
use crate::metrics::Metrics;
use crate::outbound::{
    AllowList, Refusal, Resolved, collect_limited, discard, resolve_checked, send_to,
};
use crate::plugin_ref::PluginRef;
use crate::source;

/// The `plugin` label of calls to a plugin that is neither loaded nor routed.
pub const UNKNOWN_PLUGIN: &str = "(unknown)";
/// Chained calls (`http://<plugin>.internal`) may nest this deep; deeper is a loop.
pub const MAX_CHAIN_DEPTH: u32 = 8;
/// Time limit for a call to a plugin served by another pool when the caller has none.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body a guest may send to a chained plugin.
const MAX_CHAIN_REQUEST_BYTES: u64 = 8 << 20;
/// Path prefix of plugin calls between pools, on the worker's internal port:
/// `POST|GET|… /internal/<namespace>/<plugin>/<rest of the path>?<query>`.
pub const INTERNAL_PREFIX: &str = "/internal/";

/// What the host needs from the worker.
pub struct HostOptions {
    /// Where downloaded components and compiled `.cwasm` files are kept. Must be writable
    /// only by the worker: compiled artifacts in it are loaded as native code.
    pub cache_dir: PathBuf,
    pub pooling: PoolingMode,
    /// Plugins' persistent keyvalue state.
    pub kv: Arc<dyn KvStore>,
    /// Metrics are registered here (names start with `causeway_plugin_`).
    pub registry: prometheus::Registry,
    /// Whether `file` sources may be read. Only local mode (`causeway up`, or a worker
    /// given a config file by its owner) sets this: in a cluster a Plugin's `source.file`
    /// would read any file of the worker's pod, its ServiceAccount token included.
    pub allow_file_sources: bool,
}

/// The result of [`PluginHost::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// The config version now applied.
    pub version: String,
    /// `namespace/name` of every plugin now serving the new configuration.
    pub loaded: Vec<String>,
    /// `namespace/name` → why it failed to load. A plugin that failed but had loaded
    /// before keeps serving its previous version.
    pub errors: BTreeMap<String, String>,
}

/// One plugin's state, for the admin API and the operator's conditions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginState {
    /// `namespace/name`.
    pub key: String,
    /// `sha256:<hex>` of the component serving (or last resolved).
    pub digest: Option<String>,
    /// Size of the component in bytes.
    pub size: Option<u64>,
    /// The last load error, if any.
    pub error: Option<String>,
    /// Whether calls are served (possibly by a previous version when `error` is set).
    pub loaded: bool,
    /// Generation of the Plugin object the serving version came from.
    pub generation: Option<i64>,
    /// Public route, when the plugin has one.
    pub route: Option<String>,
}

/// One applied configuration.
#[derive(Default)]
struct State {
    version: String,
    plugins: HashMap<String, Arc<Loaded>>,
    /// Public routes, longest prefix first.
    routes: Vec<(String, PluginRef)>,
    /// Plugins served by other pools.
    remote: HashMap<String, PluginRoute>,
    tokens: BTreeMap<String, SecretValue>,
    pool: String,
    status: Vec<PluginState>,
}

/// The registry (loaded plugins, compiled components), the router (routes, peer pools,
/// tokens) and the clients: what [`PluginHost`] shares between its clones.
struct Inner {
    engine: Engine,
    /// After `engine`: dropped after it, so its thread finds the engine gone.
    ticker: Arc<Ticker>,
    allocator: AllocatorKind,
    linker: Linker<CallState>,
    compat: String,
    dirs: CacheDirs,
    kv: Arc<dyn KvStore>,
    metrics: Metrics,
    logs: PluginLogs,
    /// Downloads (honours the usual proxy variables).
    download: reqwest::Client,
    /// Calls to other pools (never through a proxy).
    internal: reqwest::Client,
    state: RwLock<Arc<State>>,
    apply_lock: tokio::sync::Mutex<()>,
    /// Compiled components by digest, shared by every plugin and config that uses them.
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
    increment_lock: Arc<tokio::sync::Mutex<()>>,
    allow_file_sources: bool,
}

impl Inner {
    fn snapshot(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl CallHost for Inner {
    fn engine(&self) -> &Engine {
        &self.engine
    }
    fn ticking(&self) -> Ticking {
        self.ticker.ticking()
    }
    fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }
    fn increment_lock(&self) -> &Arc<tokio::sync::Mutex<()>> {
        &self.increment_lock
    }
    fn logs(&self) -> &PluginLogs {
        &self.logs
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    fn send_request(
        self: Arc<Self>,
        out: Arc<OutboundCtx>,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> OutboundFuture {
        Box::pin(send_outbound(self, out, request, options))
    }
}

/// The Wasm plugin host. Cheap to clone; all clones share one engine and state.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.snapshot();
        f.debug_struct("PluginHost")
            .field("allocator", &self.inner.allocator)
            .field("version", &state.version)
            .field("plugins", &state.plugins.len())
            .finish()
    }
}

impl PluginHost {
    /// Creates the engine (pooling allocator when possible), the linker and the caches,
    /// and registers the metrics.
    pub fn new(opts: HostOptions) -> Result<Self, HostError> {
        // reqwest and oci-client use rustls without a built-in provider: make ring the
        // process default (a no-op when the worker already installed one).
        source::install_crypto_provider();
        let metrics = Metrics::new(&opts.registry)?;
        let dirs = CacheDirs::create(&opts.cache_dir)?;
        let (engine, allocator) = build_engine(opts.pooling)?;
        metrics
            .allocator
            .with_label_values(&[allocator.as_str()])
            .set(1);
        let ticker = Ticker::start(&engine)?;
        let linker = build_linker(&engine)?;
        let compat = compat_hash(&engine);
        // Neither client follows redirects: a 3xx from a download server or from another
        // pool would re-send the request (and, between pools, the namespace's internal
        // token) to a place the allow-list and the SSRF guard never saw.
        let download = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(HostError::HttpClient)?;
        let internal = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(HostError::HttpClient)?;
        Ok(PluginHost {
            inner: Arc::new(Inner {
                engine,
                ticker,
                allocator,
                linker,
                compat,
                dirs,
                kv: opts.kv,
                metrics,
                logs: PluginLogs::default(),
                download,
                internal,
                state: RwLock::new(Arc::new(State::default())),
                apply_lock: tokio::sync::Mutex::new(()),
                compiled: Mutex::new(HashMap::new()),
                increment_lock: Arc::new(tokio::sync::Mutex::new(())),
                allow_file_sources: opts.allow_file_sources,
            }),
        })
    }

    /// Which instance allocator the engine uses.
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.allocator
    }

    /// The version of the configuration last applied.
    pub fn config_version(&self) -> String {
        self.inner.snapshot().version.clone()
    }

    /// Fetches and compiles what is new or changed, then swaps the configuration
    /// atomically; calls in flight finish on the version they started with. Per-plugin
    /// failures are reported, the rest is applied.
    #[tracing::instrument(skip_all, fields(version = %cfg.version))]
    pub async fn apply(&self, cfg: &WorkerConfig) -> ApplyReport {
        let inner = &self.inner;
        let _guard = inner.apply_lock.lock().await;
        let old = inner.snapshot();
        let mut plugins: HashMap<String, Arc<Loaded>> = HashMap::new();
        let mut report = ApplyReport {
            version: cfg.version.clone(),
            ..ApplyReport::default()
        };
        let mut status = Vec::new();
        for pc in &cfg.plugins {
            let key = pc.key();
            if plugins.contains_key(&key) {
                report.errors.insert(
                    key.clone(),
                    "listed twice in the worker configuration".into(),
                );
                continue;
            }
            let prev = old.plugins.get(&key);
            let loaded = match prev {
                Some(p) if p.cfg == *pc => Ok(p.clone()),
                // Same limit: keep the semaphore, so calls on the old and the new version
                // together never exceed maxConcurrency.
                _ => load(
                    inner,
                    pc,
                    prev.filter(|p| p.cfg.max_concurrency == pc.max_concurrency)
                        .map(|p| p.sem.clone()),
                )
                .await
                .map(Arc::new),
            };
            match loaded {
                Ok(l) => {
                    status.push(state_of(&l, None));
                    report.loaded.push(key.clone());
                    plugins.insert(key, l);
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(plugin = %key, error = %msg, "plugin failed to load");
                    report.errors.insert(key.clone(), msg.clone());
                    match prev {
                        Some(p) => {
                            status.push(state_of(
                                p,
                                Some(format!("{msg} (still serving the previous version)")),
                            ));
                            plugins.insert(key, p.clone());
                        }
                        None => status.push(PluginState {
                            key,
                            digest: None,
                            size: None,
                            error: Some(msg),
                            loaded: false,
                            generation: pc.generation,
                            route: pc.route.clone(),
                        }),
                    }
                }
            }
        }
        let mut routes: Vec<(String, PluginRef)> = plugins
            .values()
            .filter_map(|l| {
                l.cfg
                    .route
                    .as_deref()
                    .map(|r| (normalize_route(r), l.reference.clone()))
            })
            .collect();
        routes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let remote = cfg
            .routes
            .iter()
            .map(|r| (format!("{}/{}", r.namespace, r.plugin), r.clone()))
            .filter(|(k, _)| !plugins.contains_key(k))
            .collect();
        let in_use: std::collections::HashSet<String> = plugins
            .values()
            .map(|l| l.compiled.digest.clone())
            .collect();
        let n_loaded = plugins.len();
        let n_errors = report.errors.len();
        let new_state = Arc::new(State {
            version: cfg.version.clone(),
            plugins,
            routes,
            remote,
            tokens: cfg.internal_tokens.clone(),
            pool: cfg.pool.clone(),
            status,
        });
        *inner.state.write().unwrap_or_else(|p| p.into_inner()) = new_state.clone();
        // Compiled components nobody uses any more: in-flight calls hold their own Arc.
        inner
            .compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|d, _| in_use.contains(d));
        inner.logs.retain(|k| new_state.plugins.contains_key(k));
        inner.metrics.loaded.set(n_loaded as i64);
        inner.metrics.load_errors.set(n_errors as i64);
        inner
            .metrics
            .applies
            .with_label_values(&[if n_errors == 0 { "ok" } else { "partial" }])
            .inc();
        tracing::info!(
            loaded = n_loaded,
            errors = n_errors,
            "plugin configuration applied"
        );
        report
    }

    /// Calls a plugin: in-process when it is loaded here, over HTTP (with the namespace
    /// token) when another pool serves it, `NotFound` otherwise.
    #[tracing::instrument(level = "debug", skip_all, fields(plugin = %target))]
    pub async fn call(
        &self,
        target: &PluginRef,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, CallError> {
        let inner = &self.inner;
        let state = inner.snapshot();
        let key = target.key();
        if let Some(l) = state.plugins.get(&key) {
            return invoke(inner, l.clone(), req, CallCx::default()).await;
        }
        let started = Instant::now();
        let result = match state.remote.get(&key) {
            Some(route) => {
                let caller = req
                    .headers()
                    .get(HEADER_CALLER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("worker/{}", state.pool));
                remote_call(inner, &state, route, target, req, &caller, 0, None).await
            }
            None => Err(CallError::NotFound {
                plugin: key.clone(),
            }),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        // A plugin nobody configured gets no series of its own (names come from requests).
        let label = if matches!(result, Err(CallError::NotFound { .. })) {
            UNKNOWN_PLUGIN
        } else {
            key.as_str()
        };
        inner
            .metrics
            .calls
            .with_label_values(&[label, outcome])
            .inc();
        inner
            .metrics
            .call_seconds
            .with_label_values(&[label, outcome])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// The plugin loaded here whose public route is the longest prefix of `path` (on a
    /// segment boundary: `/api` serves `/api` and `/api/x`, not `/apix`).
    pub fn route(&self, path: &str) -> Option<PluginRef> {
        let state = self.inner.snapshot();
        state
            .routes
            .iter()
            .find(|(prefix, _)| route_matches(prefix, path))
            .map(|(_, r)| r.clone())
    }

    /// Every configured plugin: digest, size, load error.
    pub fn status(&self) -> Vec<PluginState> {
        self.inner.snapshot().status.clone()
    }

    /// One plugin's state (`namespace/name`), without copying every plugin's: what the
    /// delivery path asks before each steps job.
    pub fn state(&self, key: &str) -> Option<PluginState> {
        self.inner
            .snapshot()
            .status
            .iter()
            .find(|s| s.key == key)
            .cloned()
    }

    /// Recent stdout/stderr lines of a plugin (bounded).
    pub fn logs(&self, plugin: &PluginRef) -> Vec<String> {
        self.inner.logs.get(&plugin.key())
    }

    /// Serves one request of the internal port (calls from other pools):
    /// `/internal/<namespace>/<plugin>/<rest>` with `causeway-internal-token` equal to the
    /// namespace's token. The plugin sees `/<rest>` and the query; failures answer with
    /// [`CallError::status_code`] and a `causeway-error: <kind>` header.
    #[tracing::instrument(level = "debug", skip_all, fields(path = %req.uri().path()))]
    pub async fn handle_internal(&self, req: http::Request<Bytes>) -> http::Response<Bytes> {
        let inner = &self.inner;
        let Some((target, rest)) = parse_internal_path(req.uri().path()) else {
            return plain(
                http::StatusCode::NOT_FOUND,
                "expected /internal/<namespace>/<plugin>/<path>",
                Some("not_found"),
            );
        };
        let state = inner.snapshot();
        let presented = req
            .headers()
            .get(HEADER_TOKEN)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let valid = state.tokens.get(&target.namespace).is_some_and(|t| {
            let t = t.expose().as_bytes();
            !t.is_empty() && bool::from(t.ct_eq(presented))
        });
        if !valid {
            return plain(
                http::StatusCode::UNAUTHORIZED,
                "missing or wrong causeway-internal-token",
                Some("unauthorized"),
            );
        }
        let depth: u32 = req
            .headers()
            .get(HEADER_DEPTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if depth > MAX_CHAIN_DEPTH {
            let e = CallError::LoopDetected {
                plugin: target.key(),
                max_depth: MAX_CHAIN_DEPTH,
            };
            return error_response(&e);
        }
        let caller = req
            .headers()
            .get(HEADER_CALLER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (mut parts, body) = req.into_parts();
        let pq = match parts.uri.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest,
        };
        parts.uri = match pq.parse() {
            Ok(u) => u,
            Err(_) => {
                return plain(
                    http::StatusCode::BAD_REQUEST,
                    "invalid path",
                    Some("internal"),
                );
            }
        };
        let req = http::Request::from_parts(parts, body);
        let Some(l) = state.plugins.get(&target.key()) else {
            // Never forwarded again: the caller's routing table is stale.
            return error_response(&CallError::NotFound {
                plugin: target.key(),
            });
        };
        match invoke(
            inner,
            l.clone(),
            req,
            CallCx {
                depth,
                caller,
                deadline: None,
            },
        )
        .await
        {
            Ok(mut resp) => {
                // Only the host reports errors: a guest's own header would be misread.
                resp.headers_mut().remove(HEADER_ERROR);
                // A guest's redirect never leaves this port: the caller would follow it
                // from its own network position.
                if resp.status().is_redirection() {
                    let e = CallError::Remote {
                        plugin: target.key(),
                        status: Some(502),
                        message: format!(
                            "the plugin answered a redirect ({})",
                            resp.status().as_u16()
                        ),
                    };
                    return error_response(&e);
                }
                resp.headers_mut().remove(http::header::LOCATION);
                resp
            }
            Err(e) => error_response(&e),
        }
    }
}

/// `/internal/<ns>/<plugin>/<rest>` → (plugin, `/<rest>`).
pub fn parse_internal_path(path: &str) -> Option<(PluginRef, String)> {
    let rest = path.strip_prefix(INTERNAL_PREFIX)?;
    let (ns, rest) = rest.split_once('/')?;
    let (name, rest) = match rest.split_once('/') {
        Some((n, r)) => (n, format!("/{r}")),
        None => (rest, "/".to_string()),
    };
    (!ns.is_empty() && !name.is_empty()).then(|| (PluginRef::new(ns, name), rest))
}

/// The internal URL of `plugin` under a pool's base URL, for a path-and-query `pq`.
pub fn internal_url(base: &str, plugin: &PluginRef, pq: &str) -> String {
    let pq = if pq.starts_with('/') {
        pq.to_string()
    } else {
        format!("/{pq}")
    };
    format!(
        "{}{INTERNAL_PREFIX}{}/{}{pq}",
        base.trim_end_matches('/'),
        plugin.namespace,
        plugin.name
    )
}

fn normalize_route(r: &str) -> String {
    let t = r.trim_end_matches('/');
    if t.is_empty() {
        "/".to_string()
    } else {
        t.to_string()
    }
}

fn route_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn state_of(l: &Loaded, error: Option<String>) -> PluginState {
    PluginState {
        key: l.key.clone(),
        digest: Some(format!("sha256:{}", l.compiled.digest)),
        size: l.size,
        error,
        loaded: true,
        generation: l.cfg.generation,
        route: l.cfg.route.clone(),
    }
}

fn plain(status: http::StatusCode, message: &str, kind: Option<&str>) -> http::Response<Bytes> {
    let mut resp = http::Response::new(Bytes::from(message.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(k) = kind.and_then(|k| http::HeaderValue::from_str(k).ok()) {
        resp.headers_mut().insert(HEADER_ERROR, k);
    }
    resp
}

/// A call failure as an HTTP response: its status, `causeway-error: <kind>`, the message.
pub fn error_response(e: &CallError) -> http::Response<Bytes> {
    plain(e.status_code(), &e.to_string(), Some(e.kind()))
}

/// Loads one plugin: allow-list, source, compiled component.
async fn load(
    inner: &Arc<Inner>,
    pc: &PluginConfig,
    sem: Option<Arc<Semaphore>>,
) -> Result<Loaded, LoadError> {
    let allow = AllowList::parse(&pc.allowed_outbound_hosts)?;
    if matches!(pc.source, causeway_config::SourceConfig::File { .. }) && !inner.allow_file_sources
    {
        return Err(LoadError::FileSourceRefused);
    }
    let located = source::locate(&pc.source, &inner.dirs, &inner.download).await?;
    if let Some(kind) = located.fetched {
        inner.metrics.fetches.with_label_values(&[kind]).inc();
    }
    let size = located
        .bytes
        .as_ref()
        .map(|b| b.len() as u64)
        .or_else(|| inner.dirs.artifact_size(&located.digest));
    let compiled = compiled_for(inner, located, pc).await?;
    let vars: WasiConfigVariables = pc
        .variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    let reference = PluginRef::new(&pc.namespace, &pc.name);
    Ok(Loaded {
        cfg: pc.clone(),
        key: pc.key(),
        reference,
        compiled,
        allow: Arc::new(allow),
        vars: Arc::new(vars),
        sem: sem.unwrap_or_else(|| Arc::new(Semaphore::new(pc.max_concurrency.max(1) as usize))),
        size,
    })
}

/// The compiled component for a digest: memory, then `.cwasm` on disk, then Cranelift.
async fn compiled_for(
    inner: &Arc<Inner>,
    located: source::Located,
    pc: &PluginConfig,
) -> Result<Arc<Compiled>, LoadError> {
    let digest = located.digest.clone();
    if let Some(c) = inner
        .compiled
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&digest)
        .cloned()
    {
        inner
            .metrics
            .cache_hits
            .with_label_values(&["memory"])
            .inc();
        return Ok(c);
    }
    let engine = inner.engine.clone();
    let dirs = inner.dirs.clone();
    let path = dirs.compiled(&digest, &inner.compat);
    let d = digest.clone();
    let loaded = tokio::task::spawn_blocking(move || -> Result<(Component, Option<Duration>), LoadError> {
        if path.exists() {
            // SAFETY: `.cwasm` files in the cache directory are only ever written by this
            // host (atomically, from `Component::serialize`) and the directory must be
            // private to the worker; the engine compatibility hash is in the file name and
            // wasmtime checks it again while loading.
            match unsafe { Component::deserialize_file(&engine, &path) } {
                Ok(c) => return Ok((c, None)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unusable compiled component, recompiling");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let bytes = match located.bytes {
            Some(b) => b,
            None => dirs.read_artifact(&d)?.ok_or_else(|| LoadError::ReadFile {
                path: dirs.artifact(&d),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "artifact vanished from the cache"),
            })?,
        };
        // Only binary components are compiled: wasmtime would parse anything else as the
        // text format and quote the offending line in its error, which reaches logs and
        // status. The error never carries the bytes or the parser's context.
        if !bytes.starts_with(WASM_MAGIC) {
            return Err(LoadError::NotWasm { digest: d.clone() });
        }
        let t = std::time::Instant::now();
        let c = Component::from_binary(&engine, &bytes).map_err(|e| LoadError::Compile { digest: d.clone(), message: compile_message(&e) })?;
        let took = t.elapsed();
        let serialized = c.serialize().map_err(|e| LoadError::Compile { digest: d.clone(), message: format!("serializing: {e}") })?;
        write_atomic(&path, &serialized)?;
        Ok((c, Some(took)))
    })
    .await
    .map_err(|e| LoadError::Compile { digest: digest.clone(), message: format!("compile task failed: {e}") })??;
    let (component, compiled_in) = loaded;
    match compiled_in {
        Some(took) => {
            inner.metrics.compiles.inc();
            inner.metrics.compile_seconds.observe(took.as_secs_f64());
            tracing::info!(digest = %digest, ms = took.as_millis() as u64, "component compiled");
        }
        None => {
            inner.metrics.cache_hits.with_label_values(&["disk"]).inc();
            tracing::info!(digest = %digest, "compiled component loaded from disk cache");
        }
    }
    let link_err = |e: wasmtime::Error| LoadError::Link {
        digest: digest.clone(),
        message: format!("{e:#}"),
        source: e.into(),
    };
    let pre = inner.linker.instantiate_pre(&component).map_err(link_err)?;
    let pre = ProxyPre::new(pre).map_err(link_err)?;
    probe(inner, &pre, pc)
        .await
        .map_err(|message| LoadError::Instantiate {
            digest: digest.clone(),
            message,
        })?;
    let compiled = Arc::new(Compiled {
        digest: digest.clone(),
        pre,
    });
    inner
        .compiled
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(digest, compiled.clone());
    Ok(compiled)
}

/// The first bytes of every WebAssembly binary (module or component).
pub const WASM_MAGIC: &[u8] = b"\0asm";

/// A compile error's message for logs and status: the first line only (wasmtime's own
/// description, with a byte offset at most), bounded.
fn compile_message(e: &wasmtime::Error) -> String {
    let first = e.to_string();
    let line = first.lines().next().unwrap_or_default();
    let mut out: String = line.chars().filter(|c| !c.is_control()).take(200).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

/// `store-api.internal` → `store-api` (one label before `.internal`). The one rule for
/// what names a plugin: `api.corp.internal` is a host on the network.
pub fn chain_target(host: &str) -> Option<&str> {
    let name = host.strip_suffix(".internal")?;
    (!name.is_empty() && !name.contains('.')).then_some(name)
}

/// `http(s)://<plugin>.internal[:port]/path?query` → (`plugin`, `/path?query`), by
/// [`chain_target`]; None for every other URL (they go to the network).
pub fn chain_url(url: &str) -> Option<(String, String)> {
    let uri: http::Uri = url.parse().ok()?;
    if !matches!(uri.scheme_str(), Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
    {
        return None;
    }
    let host = uri.host()?.to_ascii_lowercase();
    let name = chain_target(&host)?.to_string();
    let pq = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    Some((name, pq.to_string()))
}

/// Where a guest's outbound request goes, once the host has let it through.
enum Route {
    /// `http://<plugin>.internal`: in-process or to the plugin's pool.
    Chain(String),
    /// The network, at an address the SSRF guard accepted.
    Connect {
        addr: std::net::SocketAddr,
        host: String,
        tls: bool,
    },
}

/// The `send_request` hook: allow-list, chaining, SSRF guard, connection.
async fn send_outbound(
    inner: Arc<Inner>,
    out: Arc<OutboundCtx>,
    mut request: http::Request<WasiBody>,
    _options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error> {
    add_trace_headers(request.headers_mut(), &out.trace);
    let route = match route(&inner, &out, request.uri()).await {
        Ok(route) => route,
        Err(e) => {
            release_unsent(request);
            return Err(e);
        }
    };
    match route {
        Route::Chain(name) => chain(&inner, &out, &name, request).await,
        Route::Connect { addr, host, tls } => {
            let m = &inner.metrics;
            m.outbound_requests
                .with_label_values(&[&out.key, "network"])
                .inc();
            m.outbound_connects.with_label_values(&[&out.key]).inc();
            for h in [HEADER_TOKEN, HEADER_DEPTH, HEADER_CALLER] {
                request.headers_mut().remove(h);
            }
            send_to(request, addr, &host, tls, out.deadline).await
        }
    }
}

/// Decides where a request to `uri` goes, or why it is refused (counted, logged and
/// recorded for the call as it is decided).
async fn route(
    inner: &Inner,
    out: &OutboundCtx,
    uri: &http::Uri,
) -> Result<Route, wasmtime_wasi_http::Error> {
    use wasmtime_wasi_http::Error as E;
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let target = format!("{scheme}://{authority}");
    let refuse = |r: Refusal| {
        inner
            .metrics
            .outbound_refused
            .with_label_values(&[&out.key, r.reason])
            .inc();
        tracing::warn!(plugin = %out.key, target = %r.target, reason = r.reason, detail = %r.detail, "outbound request refused");
        out.shared.set_refused(r);
    };
    let host = uri
        .host()
        .ok_or(E::HttpRequestUriInvalid)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = match (uri.port_u16(), scheme.as_str()) {
        (Some(p), _) => p,
        (None, "http") => 80,
        (None, "https") => 443,
        _ => {
            refuse(Refusal {
                target,
                reason: "scheme",
                detail: format!("scheme {scheme} is not supported"),
            });
            return Err(E::HttpRequestDenied);
        }
    };
    let Some(allowed) = out.allow.check(&scheme, &host, port) else {
        refuse(Refusal {
            target: target.clone(),
            reason: "not_allowed",
            detail: format!("{target} is not in allowedOutboundHosts"),
        });
        return Err(E::HttpRequestDenied);
    };
    if let Some(name) = chain_target(&host) {
        return Ok(Route::Chain(name.to_string()));
    }
    match resolve_checked(&target, &host, port, allowed.explicit, out.deadline).await? {
        Resolved::Refused(r) => {
            refuse(r);
            Err(E::DestinationIpProhibited)
        }
        Resolved::Connect(addr) => Ok(Route::Connect {
            addr,
            host,
            tls: scheme == "https",
        }),
    }
}

/// A guest's request answered with an error without being sent: its body is read to its
/// end on a task of its own, so a guest still writing it gets the error code rather than
/// its body stream closed under it ("connection reset"). The task ends when the guest
/// finishes the body or its store is dropped.
fn release_unsent(request: http::Request<WasiBody>) {
    tokio::spawn(discard(request.into_body()));
}

/// `http://<name>.internal/...` from a guest: the plugin in-process, or in its pool.
async fn chain(
    host: &Arc<Inner>,
    out: &Arc<OutboundCtx>,
    name: &str,
    request: http::Request<WasiBody>,
) -> Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error> {
    let m = &host.metrics;
    let target = PluginRef::new(&out.plugin.namespace, name);
    let respond = |resp: http::Response<Bytes>| -> (http::Response<WasiBody>, IoFuture) {
        (resp.map(wasi_body), Box::new(async { Ok(()) }))
    };
    let depth = out.depth + 1;
    // The body is read before anything is answered: a guest still writing it into a
    // dropped request would see its stream closed ("connection reset") instead of the
    // answer.
    let (mut parts, body) = request.into_parts();
    let (bytes, _) = collect_limited(body, MAX_CHAIN_REQUEST_BYTES).await?;
    if bytes.len() as u64 > MAX_CHAIN_REQUEST_BYTES {
        return Err(wasmtime_wasi_http::Error::HttpRequestBodySize(Some(
            bytes.len() as u64,
        )));
    }
    if depth > MAX_CHAIN_DEPTH {
        m.chain_errors.with_label_values(&["depth"]).inc();
        let e = CallError::LoopDetected {
            plugin: target.key(),
            max_depth: MAX_CHAIN_DEPTH,
        };
        let mut resp = error_response(&e);
        *resp.status_mut() = http::StatusCode::LOOP_DETECTED;
        return Ok(respond(resp));
    }
    for h in [HEADER_TOKEN, HEADER_DEPTH] {
        parts.headers.remove(h);
    }
    let req = http::Request::from_parts(parts, bytes);
    let state = host.snapshot();
    let key = target.key();
    let result = if let Some(l) = state.plugins.get(&key) {
        m.chain_calls.with_label_values(&["local"]).inc();
        m.outbound_requests
            .with_label_values(&[&out.key, "chain"])
            .inc();
        let cx = CallCx {
            depth,
            caller: Some(out.key.clone()),
            deadline: Some(out.deadline),
        };
        // Boxed: a chained call is a call, which may chain again.
        Box::pin(invoke(host, l.clone(), req, cx)).await
    } else if let Some(route) = state.remote.get(&key) {
        m.chain_calls.with_label_values(&["remote"]).inc();
        m.outbound_requests
            .with_label_values(&[&out.key, "chain"])
            .inc();
        remote_call(
            host,
            &state,
            route,
            &target,
            req,
            &out.key,
            depth,
            Some(out.deadline),
        )
        .await
    } else {
        m.chain_errors.with_label_values(&["not_found"]).inc();
        tracing::warn!(plugin = %out.key, target = %key, "chained call to a plugin that is neither loaded here nor routed");
        Err(CallError::NotFound { plugin: key })
    };
    Ok(respond(match result {
        Ok(resp) => resp,
        Err(e @ CallError::NotFound { .. }) => {
            // For the caller this is a bad gateway, not its own 404.
            let mut resp = error_response(&e);
            *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
            resp
        }
        Err(e) => error_response(&e),
    }))
}

/// A call to a plugin that another pool serves, over that pool's internal port.
#[allow(clippy::too_many_arguments)]
async fn remote_call(
    inner: &Arc<Inner>,
    state: &State,
    route: &PluginRoute,
    target: &PluginRef,
    req: http::Request<Bytes>,
    caller: &str,
    depth: u32,
    deadline: Option<Instant>,
) -> Result<http::Response<Bytes>, CallError> {
    let plugin = target.key();
    let remote_err = |status: Option<u16>, message: String| CallError::Remote {
        plugin: plugin.clone(),
        status,
        message,
    };
    let Some(token) = state.tokens.get(&target.namespace) else {
        return Err(remote_err(
            None,
            format!("no internal token for namespace {}", target.namespace),
        ));
    };
    let deadline = deadline.unwrap_or_else(|| Instant::now() + DEFAULT_REMOTE_TIMEOUT);
    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let mut last = String::from("the route lists no URL");
    for base in &route.urls {
        let url = internal_url(base, target, &pq);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CallError::Timeout {
                plugin,
                timeout_ms: 0,
            });
        }
        let mut rb = inner
            .internal
            .request(parts.method.clone(), &url)
            .timeout(remaining);
        for (name, value) in &parts.headers {
            if !is_hop_by_hop(name)
                && name != HEADER_TOKEN
                && name != HEADER_CALLER
                && name != HEADER_DEPTH
            {
                rb = rb.header(name, value);
            }
        }
        rb = rb
            .header(HEADER_TOKEN, token.expose())
            .header(HEADER_CALLER, caller)
            .header(HEADER_DEPTH, depth.to_string())
            .body(body.clone());
        match rb.send().await {
            Ok(resp) => {
                let status = resp.status();
                let mut headers = resp.headers().clone();
                let error_kind = headers
                    .get(HEADER_ERROR)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let mut collected = Vec::new();
                let mut stream = resp;
                loop {
                    match stream.chunk().await {
                        Ok(Some(c)) => {
                            collected.extend_from_slice(&c);
                            if collected.len() as u64 > crate::call::MAX_RESPONSE_BYTES {
                                return Err(remote_err(
                                    Some(502),
                                    "response larger than the limit".into(),
                                ));
                            }
                        }
                        Ok(None) => break,
                        Err(e) if e.is_timeout() => {
                            return Err(CallError::Timeout {
                                plugin,
                                timeout_ms: remaining.as_millis() as u64,
                            });
                        }
                        Err(e) => {
                            return Err(remote_err(
                                None,
                                format!("{url}: reading the response: {e}"),
                            ));
                        }
                    }
                }
                if let Some(kind) = error_kind {
                    let text = String::from_utf8_lossy(&collected);
                    return Err(remote_err(Some(status.as_u16()), format!("{kind}: {text}")));
                }
                // Pools never redirect each other: a 3xx is an error, never followed.
                if status.is_redirection() {
                    return Err(remote_err(
                        Some(502),
                        format!("{url}: the pool answered a redirect ({})", status.as_u16()),
                    ));
                }
                for h in [http::header::TRANSFER_ENCODING, http::header::CONNECTION] {
                    headers.remove(h);
                }
                let mut out = http::Response::new(Bytes::from(collected));
                *out.status_mut() = status;
                *out.headers_mut() = headers;
                return Ok(out);
            }
            Err(e) if e.is_timeout() => {
                return Err(CallError::Timeout {
                    plugin,
                    timeout_ms: remaining.as_millis() as u64,
                });
            }
            Err(e) if e.is_connect() => {
                last = format!("{url}: {e}");
                continue;
            }
            Err(e) => return Err(remote_err(None, format!("{url}: {e}"))),
        }
    }
    Err(remote_err(None, last))
}

fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "host"
            | "content-length"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_paths() {
        assert_eq!(
            parse_internal_path("/internal/shop/store-api/customers/c1/purchases"),
            Some((
                PluginRef::new("shop", "store-api"),
                "/customers/c1/purchases".into()
            ))
        );
        assert_eq!(
            parse_internal_path("/internal/shop/store-api"),
            Some((PluginRef::new("shop", "store-api"), "/".into()))
        );
        assert_eq!(
            parse_internal_path("/internal/shop/store-api/"),
            Some((PluginRef::new("shop", "store-api"), "/".into()))
        );
        assert_eq!(parse_internal_path("/internal/shop"), None);
        assert_eq!(parse_internal_path("/internal//x/y"), None);
        assert_eq!(parse_internal_path("/hooks/a/b"), None);
        assert_eq!(
            internal_url(
                "http://10.0.0.5:8081/",
                &PluginRef::new("shop", "store-api"),
                "/a?b=1"
            ),
            "http://10.0.0.5:8081/internal/shop/store-api/a?b=1"
        );
    }

    #[test]
    fn routes_match_on_segments() {
        assert!(route_matches("/api", "/api"));
        assert!(route_matches("/api", "/api/x"));
        assert!(!route_matches("/api", "/apix"));
        assert!(route_matches("/", "/anything"));
        assert_eq!(normalize_route("/api/"), "/api");
        assert_eq!(normalize_route("/"), "/");
    }

    #[test]
    fn chain_urls() {
        assert_eq!(
            chain_url("http://inbox.internal/orders?x=1"),
            Some(("inbox".into(), "/orders?x=1".into()))
        );
        assert_eq!(
            chain_url("https://Inbox.Internal:8443"),
            Some(("inbox".into(), "/".into()))
        );
        assert_eq!(
            chain_url("http://api.corp.internal/orders"),
            None,
            "a real host under .internal"
        );
        assert_eq!(chain_url("http://127.0.0.1:9/x"), None);
        assert_eq!(chain_url("https://api.example.com/internal"), None);
        assert_eq!(chain_url("ftp://inbox.internal/x"), None);
    }

    #[test]
    fn chain_targets() {
        assert_eq!(chain_target("store-api.internal"), Some("store-api"));
        assert_eq!(chain_target("metadata.google.internal"), None);
        assert_eq!(chain_target(".internal"), None);
        assert_eq!(chain_target("example.com"), None);
    }

    #[test]
    fn plugin_refs() {
        assert_eq!(
            PluginRef::parse("shop/loyalty"),
            Some(PluginRef::new("shop", "loyalty"))
        );
        assert_eq!(PluginRef::parse("shop"), None);
        assert_eq!(PluginRef::parse("a/b/c"), None);
        assert_eq!(PluginRef::new("a", "b").to_string(), "a/b");
    }
}
