//! One call: a fresh `Store` from the plugin's cached `ProxyPre`, limits, the guest run on
//! the caller's task, and the failure classified (timeout, OOM, trap, refused outbound, …).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use causeway_config::{PluginConfig, WhenBusy};

use crate::error::{CallError, HostError};
use crate::kv::{KvCtx, KvStore, KvView};
use crate::log::{CallLog, PluginLogs};
use crate::metrics::Metrics;
use crate::outbound::{AllowList, Refusal};
use crate::plugin_ref::PluginRef;

/// Largest response body a plugin may return from one call.
pub const MAX_RESPONSE_BYTES: u64 = 8 << 20;
/// Largest table a guest may grow to, in elements.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Headers only the host sets; removed from whatever a caller or guest sends.
pub const HEADER_TOKEN: &str = "causeway-internal-token";
pub const HEADER_CALLER: &str = "causeway-caller";
pub const HEADER_DEPTH: &str = "causeway-chain-depth";
pub const HEADER_ERROR: &str = "causeway-error";
/// W3C Trace Context headers, passed from a call to its guest's outbound requests.
pub const HEADER_TRACEPARENT: &str = "traceparent";
pub const HEADER_TRACESTATE: &str = "tracestate";

/// What a guest's outbound request leaves behind once answered: the rest of its body I/O.
pub(crate) type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

/// The answer to a guest's outbound request.
pub(crate) type OutboundFuture = Pin<
    Box<
        dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error>>
            + Send,
    >,
>;

/// What one call needs from the host that runs it: the engine, the keyvalue store, the
/// plugins' logs and metrics, and where a guest's outbound requests go. The host
/// (`host.rs`, registry and router) implements it; a call sees nothing else of the host,
/// so this module does not depend on that one.
pub(crate) trait CallHost: Send + Sync + 'static {
    fn engine(&self) -> &wasmtime::Engine;
    /// Keeps the epoch advancing while a store lives (its state holds the guard).
    fn ticking(&self) -> crate::engine::Ticking;
    fn kv(&self) -> &Arc<dyn KvStore>;
    /// Serialises `wasi:keyvalue/atomics` increments.
    fn increment_lock(&self) -> &Arc<tokio::sync::Mutex<()>>;
    fn logs(&self) -> &PluginLogs;
    fn metrics(&self) -> &Metrics;
    /// Sends one outbound request of a guest: the allow-list, `http://<plugin>.internal`
    /// chaining, the network.
    fn send_request(
        self: Arc<Self>,
        out: Arc<OutboundCtx>,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> OutboundFuture;
}

/// A component compiled and pre-instantiated once per digest.
pub(crate) struct Compiled {
    pub digest: String,
    pub pre: ProxyPre<CallState>,
}

/// One loaded plugin: its configuration and everything derived from it.
pub(crate) struct Loaded {
    pub cfg: PluginConfig,
    pub key: String,
    pub reference: PluginRef,
    pub compiled: Arc<Compiled>,
    pub allow: Arc<AllowList>,
    pub vars: Arc<WasiConfigVariables>,
    pub sem: Arc<Semaphore>,
    pub size: Option<u64>,
}

/// Facts the host learns during a call, readable after the store is gone.
#[derive(Default)]
pub(crate) struct CallShared {
    pub oom: AtomicBool,
    pub refused: Mutex<Option<Refusal>>,
}

impl CallShared {
    pub fn refused(&self) -> Option<Refusal> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn set_refused(&self, r: Refusal) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }
}

/// What the outbound hook needs to know about the call it serves.
pub(crate) struct OutboundCtx {
    pub host: Arc<dyn CallHost>,
    pub plugin: PluginRef,
    pub key: String,
    pub allow: Arc<AllowList>,
    pub deadline: Instant,
    pub depth: u32,
    pub shared: Arc<CallShared>,
    /// The W3C trace context (`traceparent`, `tracestate`) of the request the guest got:
    /// added to its outbound requests that carry none, so they join the caller's trace.
    pub trace: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// The trace context headers of `headers` (`traceparent` and `tracestate`).
pub(crate) fn trace_headers(
    headers: &http::HeaderMap,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut out = Vec::new();
    for name in [HEADER_TRACEPARENT, HEADER_TRACESTATE] {
        if let Some(v) = headers.get(name) {
            out.push((http::HeaderName::from_static(name), v.clone()));
        }
    }
    out
}

/// A guest's outbound request goes out with the trace context of its call unless it set
/// its own `traceparent`.
pub(crate) fn add_trace_headers(
    headers: &mut http::HeaderMap,
    trace: &[(http::HeaderName, http::HeaderValue)],
) {
    if trace.is_empty() || headers.contains_key(HEADER_TRACEPARENT) {
        return;
    }
    headers.remove(HEADER_TRACESTATE);
    for (n, v) in trace {
        headers.insert(n.clone(), v.clone());
    }
}

/// The `WasiHttpHooks` of a call: every outbound request goes through `send_request`.
pub(crate) struct Hooks {
    pub out: Arc<OutboundCtx>,
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let out = self.out.clone();
        Box::new(out.host.clone().send_request(out, request, options))
    }
}

/// Memory accounting for the whole store (all of a component's memories together).
pub(crate) struct Limiter {
    limit: usize,
    total: usize,
    shared: Arc<CallShared>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self.total.saturating_sub(current).saturating_add(desired);
        if next > self.limit || maximum.is_some_and(|m| desired > m) {
            self.shared.oom.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        self.total = next;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.shared.oom.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }
}

/// The `T` of every `Store<T>`: built fresh for each call.
pub(crate) struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    config: Arc<WasiConfigVariables>,
    kv: KvCtx,
    limiter: Limiter,
    /// The epoch advances while this store lives: its deadline and its yields need it.
    _ticking: crate::engine::Ticking,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl CallState {
    fn new(
        out: Arc<OutboundCtx>,
        vars: Arc<WasiConfigVariables>,
        kv: KvCtx,
        memory_limit: u64,
        log: &CallLog,
        ticking: crate::engine::Ticking,
    ) -> CallState {
        let mut wasi = WasiCtxBuilder::new();
        // No environment, arguments, files or sockets; output goes to the call's log.
        wasi.stdout(log.clone())
            .stderr(log.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let shared = out.shared.clone();
        CallState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks { out },
            config: vars,
            kv,
            limiter: Limiter {
                limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
                total: 0,
                shared,
            },
            _ticking: ticking,
        }
    }
}

/// Links everything a plugin may import: WASI 0.2 CLI (no ambient authority), wasi:http,
/// wasi:config/store and wasi:keyvalue.
pub(crate) fn build_linker(engine: &wasmtime::Engine) -> Result<Linker<CallState>, HostError> {
    let err = |what: &'static str, e: wasmtime::Error| HostError::Linker {
        what,
        source: e.into(),
    };
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| err("wasi", e))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(|e| err("wasi:http", e))?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut CallState| {
        WasiConfig::from(&*s.config)
    })
    .map_err(|e| err("wasi:config", e))?;
    crate::kv::add_to_linker(&mut linker, |s: &mut CallState| KvView {
        ctx: &s.kv,
        table: &mut s.table,
    })
    .map_err(|e| err("wasi:keyvalue", e))?;
    Ok(linker)
}

/// The epoch callback's error: the call's deadline passed while wasm was running.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("call deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Where a call comes from.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallCx {
    /// Chained-call depth (0 for calls from the worker).
    pub depth: u32,
    /// `namespace/name` of the calling plugin, if any.
    pub caller: Option<String>,
    /// The caller's own deadline; a chained call never outlives it.
    pub deadline: Option<Instant>,
}

/// Builds a store for `plugin` and instantiates it once, without calling it: checks at
/// load time that the component links and fits the pool.
pub(crate) async fn probe<H: CallHost>(
    host: &Arc<H>,
    pre: &ProxyPre<CallState>,
    plugin: &PluginConfig,
) -> Result<(), String> {
    let shared = Arc::new(CallShared::default());
    let reference = PluginRef {
        namespace: plugin.namespace.clone(),
        name: plugin.name.clone(),
    };
    let out = Arc::new(OutboundCtx {
        host: host.clone(),
        key: reference.key(),
        plugin: reference,
        allow: Arc::new(AllowList::default()),
        deadline: Instant::now() + Duration::from_secs(10),
        depth: 0,
        shared,
        trace: Vec::new(),
    });
    let kv = KvCtx {
        plugin: plugin.key(),
        kv: host.kv().clone(),
        increment_lock: host.increment_lock().clone(),
    };
    let log = CallLog::default();
    let state = CallState::new(
        out,
        Arc::new(WasiConfigVariables::new()),
        kv,
        plugin.memory_bytes,
        &log,
        host.ticking(),
    );
    let mut store = Store::new(host.engine(), state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    let limit = std::time::Instant::now() + Duration::from_secs(10);
    store.epoch_deadline_callback(move |_| {
        if std::time::Instant::now() >= limit {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    pre.instantiate_async(&mut store)
        .await
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// A one-line description of a wasmtime error.
fn describe(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        // Displays as "wasm trap: …".
        return trap.to_string();
    }
    let chain: Vec<String> = e
        .chain()
        .map(|c| c.to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut out = chain.join(": ");
    if let Some(i) = out.find("\nwasm backtrace") {
        out.truncate(i);
    }
    out.lines().next().unwrap_or_default().to_string()
}

/// The guest's last meaningful output line (a Rust panic message, say), skipping
/// the standard "run with RUST_BACKTRACE" hint.
fn last_log_line(log: &CallLog) -> Option<String> {
    let (lines, _) = log.lines();
    lines
        .iter()
        .rev()
        .find(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
        .map(|l| {
            if l.len() > 300 {
                format!("{}…", &l[..l.floor_char_boundary(300)])
            } else {
                l.clone()
            }
        })
}

/// What the guest returned: `returned` when it has already, else what it returns when
/// driven to the end.
async fn guest_result<F>(
    guest: Pin<&mut F>,
    returned: Option<Result<(), GuestFailure>>,
) -> Result<(), GuestFailure>
where
    F: Future<Output = Result<(), GuestFailure>>,
{
    match returned {
        Some(r) => r,
        None => guest.await,
    }
}

enum GuestFailure {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

/// Calls `plugin` with `req`; records metrics and the guest's log.
pub(crate) async fn invoke<H: CallHost>(
    host: &Arc<H>,
    plugin: Arc<Loaded>,
    req: http::Request<Bytes>,
    cx: CallCx,
) -> Result<http::Response<Bytes>, CallError> {
    let started = Instant::now();
    let log = CallLog::default();
    let result = invoke_inner(host, &plugin, req, cx, &log).await;
    host.logs().record(&plugin.key, &log);
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    let m = host.metrics();
    let labels = [plugin.key.as_str(), outcome];
    m.calls.with_label_values(&labels).inc();
    m.call_seconds
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Err(CallError::Trap { .. }) => m.traps.with_label_values(&[&plugin.key]).inc(),
        Err(CallError::Timeout { .. }) => m.timeouts.with_label_values(&[&plugin.key]).inc(),
        Err(CallError::OutOfMemory { .. }) => m.oom.with_label_values(&[&plugin.key]).inc(),
        _ => {}
    }
    if let Err(e) = &result {
        tracing::warn!(plugin = %plugin.key, kind = e.kind(), error = %e, "plugin call failed");
    }
    result
}

async fn invoke_inner<H: CallHost>(
    host: &Arc<H>,
    plugin: &Arc<Loaded>,
    req: http::Request<Bytes>,
    cx: CallCx,
    log: &CallLog,
) -> Result<http::Response<Bytes>, CallError> {
    let key = plugin.key.clone();
    let timeout = Duration::from_millis(plugin.cfg.timeout_ms.max(1));
    let now = Instant::now();
    let cap = |t: Instant| match cx.deadline {
        Some(d) if d < t => d,
        _ => t,
    };

    // Concurrency: reject at once, or wait up to the call's timeout for a slot.
    let permit = match plugin.cfg.when_busy {
        WhenBusy::Reject => plugin.sem.clone().try_acquire_owned().map_err(|_| {
            host.metrics()
                .busy
                .with_label_values(&[&key, "reject"])
                .inc();
            CallError::Busy {
                plugin: key.clone(),
                reason: format!(
                    "maxConcurrency {} reached (whenBusy: reject)",
                    plugin.cfg.max_concurrency
                ),
            }
        })?,
        WhenBusy::Queue => {
            match tokio::time::timeout_at(cap(now + timeout), plugin.sem.clone().acquire_owned())
                .await
            {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => {
                    return Err(CallError::Internal {
                        plugin: key,
                        message: "plugin unloaded".into(),
                    });
                }
                Err(_) => {
                    host.metrics()
                        .busy
                        .with_label_values(&[&key, "queue"])
                        .inc();
                    return Err(CallError::Busy {
                        plugin: key,
                        reason: format!(
                            "no free slot of maxConcurrency {} within {} ms (whenBusy: queue)",
                            plugin.cfg.max_concurrency,
                            timeout.as_millis()
                        ),
                    });
                }
            }
        }
    };
    let deadline = cap(Instant::now() + timeout);
    let effective_ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis() as u64;

    let shared = Arc::new(CallShared::default());
    let out = Arc::new(OutboundCtx {
        host: host.clone(),
        plugin: plugin.reference.clone(),
        key: key.clone(),
        allow: plugin.allow.clone(),
        deadline,
        depth: cx.depth,
        shared: shared.clone(),
        trace: trace_headers(req.headers()),
    });
    let kv = KvCtx {
        plugin: key.clone(),
        kv: host.kv().clone(),
        increment_lock: host.increment_lock().clone(),
    };
    let state = CallState::new(
        out,
        plugin.vars.clone(),
        kv,
        plugin.cfg.memory_bytes,
        log,
        host.ticking(),
    );
    let mut store = Store::new(host.engine(), state);
    store.limiter(|s| &mut s.limiter);
    // Check every tick: past the deadline the guest traps; before it, it yields so a
    // spinning guest never holds a worker thread for longer than one tick.
    store.set_epoch_deadline(1);
    let std_deadline = deadline.into_std();
    store.epoch_deadline_callback(move |_| {
        if std::time::Instant::now() >= std_deadline {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });

    let internal = |message: String| CallError::Internal {
        plugin: key.clone(),
        message,
    };
    let request = guest_request(req, &plugin.reference, cx.caller.as_deref())
        .map_err(|e| internal(e.to_string()))?;
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .map_err(|e| internal(describe(&e)))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let outparam = store
        .data_mut()
        .http()
        .new_response_outparam(tx)
        .map_err(|e| internal(describe(&e)))?;

    let pre = plugin.compiled.pre.clone();
    host.metrics()
        .instance_pre_reuse
        .with_label_values(&[&key])
        .inc();
    // The guest runs on the caller's task, polled together with the response it writes
    // (no spawned task: no hand-over to another runtime thread and back per call). The
    // permit and the store live exactly as long as the guest future; when the caller
    // gives up (its future is dropped, or the deadline passes), the guest stops with it.
    let guest = async move {
        let _permit = permit;
        let proxy = pre
            .instantiate_async(&mut store)
            .await
            .map_err(GuestFailure::Instantiate)?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, incoming, outparam)
            .await
            .map_err(GuestFailure::Run)
    };

    let classify = |f: GuestFailure| -> CallError {
        let (e, instantiating) = match f {
            GuestFailure::Instantiate(e) => (e, true),
            GuestFailure::Run(e) => (e, false),
        };
        if e.downcast_ref::<DeadlineExceeded>().is_some()
            || matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt))
        {
            return CallError::Timeout {
                plugin: key.clone(),
                timeout_ms: effective_ms,
            };
        }
        if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            host.metrics().busy.with_label_values(&[&key, "pool"]).inc();
            return CallError::Busy {
                plugin: key.clone(),
                reason: format!("instance pool exhausted: {}", describe(&e)),
            };
        }
        let mut message = describe(&e);
        if let Some(line) = last_log_line(log) {
            message = format!("{message}; guest output: {line}");
        }
        if shared.oom.load(Ordering::Relaxed) {
            return CallError::OutOfMemory {
                plugin: key.clone(),
                limit_bytes: plugin.cfg.memory_bytes,
                message,
            };
        }
        if let Some(exit) = e.downcast_ref::<I32Exit>() {
            return CallError::Trap {
                plugin: key.clone(),
                message: format!("guest exited with status {}", exit.0),
            };
        }
        if instantiating {
            return CallError::Internal {
                plugin: key.clone(),
                message: format!("instantiating: {message}"),
            };
        }
        CallError::Trap {
            plugin: key.clone(),
            message,
        }
    };

    let run = async {
        let mut guest = std::pin::pin!(guest);
        // The guest's result, once it has returned (a finished future is not polled again).
        let mut returned: Option<Result<(), GuestFailure>> = None;
        let head = {
            let mut rx = rx;
            tokio::select! {
                r = &mut rx => r,
                g = guest.as_mut() => {
                    returned = Some(g);
                    // Its store is gone with it: the response was sent or never will be.
                    rx.await
                }
            }
        };
        match head {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                let collect = crate::outbound::collect_limited(body, MAX_RESPONSE_BYTES);
                let mut collect = std::pin::pin!(collect);
                let collected = match returned {
                    Some(_) => collect.await,
                    None => tokio::select! {
                        c = collect.as_mut() => c,
                        g = guest.as_mut() => {
                            returned = Some(g);
                            collect.await
                        }
                    },
                };
                let body = match collected {
                    Ok((bytes, _)) if bytes.len() as u64 > MAX_RESPONSE_BYTES => {
                        // Returning drops the guest: it stops.
                        return Err(CallError::Failed {
                            plugin: key.clone(),
                            message: format!(
                                "response body larger than {MAX_RESPONSE_BYTES} bytes"
                            ),
                        });
                    }
                    Ok((bytes, _)) => bytes,
                    Err(e) => {
                        // The guest failed while writing its body: its own error says why.
                        guest_result(guest, returned).await.map_err(&classify)?;
                        return Err(CallError::Failed {
                            plugin: key.clone(),
                            message: format!("response body: {e}"),
                        });
                    }
                };
                guest_result(guest, returned).await.map_err(&classify)?;
                Ok(http::Response::from_parts(parts, body))
            }
            Ok(Err(code)) => {
                guest_result(guest, returned).await.map_err(&classify)?;
                Err(CallError::Failed {
                    plugin: key.clone(),
                    message: format!("guest answered with error code {code:?}"),
                })
            }
            Err(_) => {
                guest_result(guest, returned).await.map_err(&classify)?;
                Err(CallError::Failed {
                    plugin: key.clone(),
                    message: "guest returned without sending a response".into(),
                })
            }
        }
    };
    let result = match tokio::time::timeout_at(deadline, run).await {
        Ok(r) => r,
        Err(_) => {
            // `run` is dropped, and the guest with it.
            Err(CallError::Timeout {
                plugin: key.clone(),
                timeout_ms: effective_ms,
            })
        }
    };
    // A guest that failed after the host refused one of its requests: say so.
    match result {
        Ok(resp) if resp.status().as_u16() >= 400 => match shared.refused() {
            Some(r) => Err(CallError::Refused {
                plugin: key,
                target: r.target,
                reason: r.detail,
                status: resp.status().as_u16(),
            }),
            None => Ok(resp),
        },
        other => other,
    }
}

/// The request as the guest sees it: an absolute URI (`http://<name>.internal/...` unless
/// it has one), the host-only headers removed, `causeway-caller` set for chained calls.
fn guest_request(
    req: http::Request<Bytes>,
    plugin: &PluginRef,
    caller: Option<&str>,
) -> Result<http::Request<Full<Bytes>>, http::Error> {
    let (mut parts, body) = req.into_parts();
    if parts.uri.authority().is_none() {
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        parts.uri = http::Uri::builder()
            .scheme("http")
            .authority(format!("{}.internal", plugin.name))
            .path_and_query(pq)
            .build()?;
    }
    parts.headers.remove(HEADER_TOKEN);
    parts.headers.remove(HEADER_DEPTH);
    parts.headers.remove(http::header::HOST);
    match caller.and_then(|c| http::HeaderValue::from_str(c).ok()) {
        Some(v) => {
            parts.headers.insert(HEADER_CALLER, v);
        }
        None => {
            parts.headers.remove(HEADER_CALLER);
        }
    }
    Ok(http::Request::from_parts(parts, Full::new(body)))
}

/// A `WasiBody` holding `bytes`.
pub(crate) fn wasi_body(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_guests_outbound_request_joins_its_calls_trace_unless_it_set_its_own() {
        let mut call = http::HeaderMap::new();
        call.insert(HEADER_TRACEPARENT, http::HeaderValue::from_static(TP));
        call.insert(HEADER_TRACESTATE, http::HeaderValue::from_static("k=v"));
        call.insert("x-other", http::HeaderValue::from_static("1"));
        let trace = trace_headers(&call);
        assert_eq!(trace.len(), 2);

        let mut out = http::HeaderMap::new();
        add_trace_headers(&mut out, &trace);
        assert_eq!(out.get(HEADER_TRACEPARENT).unwrap(), TP);
        assert_eq!(out.get(HEADER_TRACESTATE).unwrap(), "k=v");
        assert!(out.get("x-other").is_none());

        // The guest's own context wins, with its own tracestate (or none).
        let own = "00-11111111111111111111111111111111-2222222222222222-00";
        let mut out = http::HeaderMap::new();
        out.insert(HEADER_TRACEPARENT, http::HeaderValue::from_static(own));
        add_trace_headers(&mut out, &trace);
        assert_eq!(out.get(HEADER_TRACEPARENT).unwrap(), own);
        assert!(out.get(HEADER_TRACESTATE).is_none());

        // A call without a trace adds nothing.
        let mut out = http::HeaderMap::new();
        add_trace_headers(&mut out, &trace_headers(&http::HeaderMap::new()));
        assert!(out.is_empty());
    }
}
