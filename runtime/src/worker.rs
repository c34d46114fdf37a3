//! The worker: shared state, applying configurations, and running every stage until a
//! shutdown signal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use causeway_crds::config::WorkerConfig;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::bridge::ActiveBridge;
use crate::config::{ConfigSource, Loaded};
use crate::metrics::Metrics;
use crate::netguard::{GuardedResolver, NetGuard, parse_cidrs};
use crate::plugins::Plugins;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Retention, Store, now_ms};
use crate::{admin, delivery, ingress};

/// Bounds and timeouts of one worker. See `docs/worker.md`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Ingress connections served at once; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// Ingress connections served at once from one peer address (0: half of
    /// `max_connections`), so that one client cannot take every slot.
    pub max_connections_per_peer: usize,
    /// Time a client has to send its request headers (also closes idle keep-alive connections).
    pub header_timeout: Duration,
    /// Time a client has to send its request body.
    pub body_timeout: Duration,
    /// Delivery attempts in flight at once, over all destinations.
    pub max_inflight: usize,
    /// On SIGTERM, how long in-flight requests and attempts may take to finish.
    pub shutdown_grace: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Largest request body a public plugin route accepts.
    pub plugin_body_bytes: usize,
    /// Networks no destination may reach (`--deny-destination-cidr`).
    pub denied_destinations: Vec<crate::netguard::Cidr>,
    /// Below this many free bytes on the store's volume, ingress refuses new events (507).
    pub min_free_disk_bytes: u64,
    /// Request body bytes being read at once over all connections; past it new requests
    /// get 503 before their body is read.
    pub max_body_bytes_in_flight: u64,
    /// Fixed addresses for destination hosts (`--resolve host:port:addr`).
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_peer: 0,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_inflight: 256,
            shutdown_grace: Duration::from_secs(10),
            retention_interval: Duration::from_secs(60),
            plugin_body_bytes: 1 << 20,
            denied_destinations: Vec::new(),
            min_free_disk_bytes: 64 << 20,
            max_body_bytes_in_flight: 256 << 20,
            resolve: Vec::new(),
        }
    }
}

impl Limits {
    /// The connection bounds of the ingress and internal ports.
    pub fn conn_limits(&self) -> crate::listener::ConnLimits {
        let max = self.max_connections.max(1);
        crate::listener::ConnLimits {
            max_connections: max,
            max_per_peer: match self.max_connections_per_peer {
                0 => (max / 2).max(1),
                n => n,
            },
            header_timeout: self.header_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }

    /// The admin port's bounds: its own, smaller pool of connections, so that health
    /// checks and the operator never wait behind ingress traffic.
    pub fn admin_conn_limits(&self) -> crate::listener::ConnLimits {
        crate::listener::ConnLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            max_per_peer: ADMIN_MAX_CONNECTIONS / 2,
            header_timeout: self.header_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// Connections the admin port serves at once.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// How a worker is started.
#[derive(Clone, Debug)]
pub struct Options {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The internal port (plugin calls from other pools), if any.
    pub internal: Option<SocketAddr>,
    pub limits: Limits,
    /// Print the bridges' URLs and problems on every load (local mode).
    pub print_urls: bool,
}

/// A problem with one configured item, as the admin API reports it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub reason: String,
    pub message: String,
}

/// One applied configuration.
pub struct Active {
    pub config: Arc<WorkerConfig>,
    pub bridges: HashMap<String, Arc<ActiveBridge>>,
    /// Path → bridge key.
    pub by_path: HashMap<String, String>,
    pub errors: Vec<ItemError>,
    pub loaded_at_ms: u64,
}

impl Active {
    fn empty() -> Self {
        Active {
            config: Arc::new(WorkerConfig::default()),
            bridges: HashMap::new(),
            by_path: HashMap::new(),
            errors: vec![],
            loaded_at_ms: 0,
        }
    }
}

/// Per-destination limits: a concurrency semaphore and an optional token bucket.
pub struct DestLimits {
    pub concurrency: Arc<tokio::sync::Semaphore>,
    pub bucket: Option<Mutex<crate::delivery::TokenBucket>>,
    shape: (u32, Option<(u32, u32)>),
}

/// State every stage shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    active: RwLock<Arc<Active>>,
    pub plugins: Plugins,
    /// Suspensions set through the admin API, over the config's `suspend`.
    pub overrides: Mutex<HashMap<String, bool>>,
    /// Destinations paused by a 410, `(bridge, destination)`.
    pub paused: Mutex<HashSet<(String, String)>>,
    limits_by_dest: Mutex<HashMap<(String, String), Arc<DestLimits>>>,
    /// Wakes the delivery scheduler (new jobs, finished attempts, resumes).
    pub wake: Notify,
    pub ready: AtomicBool,
    pub limits: Limits,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub ingress_addr: SocketAddr,
    /// Where destinations may connect (shared with `http`'s resolver).
    pub netguard: Arc<NetGuard>,
    /// The admin token this worker made up because its configuration has none and its
    /// admin address is not loopback (local mode on `0.0.0.0`, say). Printed once at start.
    pub generated_admin_token: Option<causeway_crds::config::SecretValue>,
    /// The store's directory, watched for free space.
    pub store_dir: PathBuf,
    /// Free space on the store's volume is below `min_free_disk_bytes`.
    pub disk_low: AtomicBool,
    /// Body bytes in flight over all connections, in KiB permits.
    pub body_budget: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// Whether the worker should take traffic: started, store writable, disk not full.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.store.healthy() && !self.disk_low.load(Ordering::SeqCst)
    }

    /// Measures the free space of the store's volume and updates `disk_low`.
    pub fn check_disk(&self) {
        match free_bytes(&self.store_dir) {
            Ok(free) => {
                let low = free < self.limits.min_free_disk_bytes;
                if low != self.disk_low.swap(low, Ordering::SeqCst) {
                    if low {
                        warn!(free, min = self.limits.min_free_disk_bytes, "free disk space below the watermark: refusing new events");
                    } else {
                        info!(free, "free disk space back above the watermark: accepting events");
                    }
                }
            }
            Err(e) => warn!(error = %e, dir = %self.store_dir.display(), "cannot measure free disk space"),
        }
    }

    /// The token the admin API requires, if any. `Some("")` refuses every call.
    pub fn admin_token(&self) -> Option<causeway_crds::config::SecretValue> {
        self.active().config.admin_token.clone().or_else(|| self.generated_admin_token.clone())
    }
}

impl Shared {
    pub fn active(&self) -> Arc<Active> {
        match self.active.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn swap(&self, next: Arc<Active>) {
        match self.active.write() {
            Ok(mut a) => *a = next,
            Err(p) => *p.into_inner() = next,
        }
    }

    pub fn is_suspended(&self, bridge: &str) -> bool {
        let over = self
            .overrides
            .lock()
            .ok()
            .and_then(|o| o.get(bridge).copied());
        over.unwrap_or_else(|| {
            self.active()
                .bridges
                .get(bridge)
                .is_some_and(|b| b.cfg.suspend)
        })
    }

    pub fn set_suspended(&self, bridge: &str, suspended: bool) {
        if let Ok(mut o) = self.overrides.lock() {
            o.insert(bridge.to_string(), suspended);
        }
        self.wake.notify_one();
    }

    pub fn is_paused(&self, bridge: &str, destination: &str) -> bool {
        self.paused
            .lock()
            .is_ok_and(|p| p.contains(&(bridge.to_string(), destination.to_string())))
    }

    pub fn set_paused(&self, bridge: &str, destination: &str, paused: bool) {
        if let Ok(mut p) = self.paused.lock() {
            let key = (bridge.to_string(), destination.to_string());
            if paused {
                p.insert(key);
            } else {
                p.remove(&key);
            }
        }
        self.metrics
            .paused
            .with_label_values(&[bridge, destination])
            .set(i64::from(paused));
    }

    /// The limits of one destination, rebuilt when its configuration changes.
    pub fn dest_limits(
        &self,
        bridge: &str,
        d: &causeway_crds::config::DestinationConfig,
    ) -> Arc<DestLimits> {
        let shape = (
            d.max_concurrency.max(1),
            d.rate_limit.as_ref().map(|r| (r.per_second, r.burst)),
        );
        let key = (bridge.to_string(), d.name.clone());
        let Ok(mut map) = self.limits_by_dest.lock() else {
            return Arc::new(new_limits(shape));
        };
        if let Some(l) = map.get(&key)
            && l.shape == shape
        {
            return l.clone();
        }
        let l = Arc::new(new_limits(shape));
        map.insert(key, l.clone());
        l
    }
}

fn new_limits(shape: (u32, Option<(u32, u32)>)) -> DestLimits {
    DestLimits {
        concurrency: Arc::new(tokio::sync::Semaphore::new(shape.0 as usize)),
        bucket: shape
            .1
            .filter(|(rate, _)| *rate > 0)
            .map(|(rate, burst)| Mutex::new(crate::delivery::TokenBucket::new(rate, burst))),
        shape,
    }
}

/// Bytes available to this process on the file system holding `path`.
fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter
    // that statvfs fills on success; it is read only then.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Creates `dir` (and missing parents) readable by the owner only. A directory that
/// exists keeps its mode (in a pod it may be a volume the kubelet set up for a group).
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    #[error("{0}")]
    Plugins(#[from] crate::plugins::PluginsError),
    #[error("http client: {0}")]
    Client(String),
    #[error("signals: {0}")]
    Signal(String),
}

/// Build and apply an [`Active`] from a loaded config. Bridges that fail to compile keep
/// their previous version when there is one.
#[instrument(skip_all, fields(version = %loaded.config.version))]
pub async fn apply(shared: &Shared, loaded: &Loaded) -> Arc<Active> {
    let old = shared.active();
    let cfg = loaded.config.clone();
    let mut errors: Vec<ItemError> = loaded
        .problems
        .iter()
        .map(|p| ItemError {
            kind: format!("{:?}", p.kind),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            reason: p.reason.clone(),
            message: p.message.clone(),
        })
        .collect();
    let mut bridges = HashMap::new();
    for b in &cfg.bridges {
        let key = b.key();
        match ActiveBridge::compile(b, &cfg) {
            Ok(a) => {
                bridges.insert(key, Arc::new(a));
            }
            Err(errs) => {
                let kept = old.bridges.get(&key).cloned();
                let note = if kept.is_some() {
                    " (the previous version keeps running)"
                } else {
                    ""
                };
                errors.push(ItemError {
                    kind: "Bridge".into(),
                    namespace: b.namespace.clone(),
                    name: b.name.clone(),
                    reason: "InvalidSpec".into(),
                    message: format!("{}{note}", errs.join("; ")),
                });
                if let Some(prev) = kept {
                    bridges.insert(key, prev);
                }
            }
        }
    }
    for (key, message) in shared.plugins.apply(&cfg).await {
        let (namespace, name) = key
            .split_once('/')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap_or_default();
        errors.push(ItemError {
            kind: "Plugin".into(),
            namespace,
            name,
            reason: "LoadError".into(),
            message,
        });
    }
    match parse_cidrs(&cfg.destination_allowed_cidrs) {
        Ok(allowed) => shared.netguard.set_allowed(allowed),
        Err(message) => errors.push(ItemError {
            kind: "WorkerPool".into(),
            namespace: cfg.namespace.clone(),
            name: cfg.pool.clone(),
            reason: "InvalidSpec".into(),
            message: format!("allowedDestinationCidrs: {message} (the previous list stays)"),
        }),
    }
    let by_path = bridges
        .values()
        .map(|b| (b.cfg.path.clone(), b.key.clone()))
        .collect();
    // A suspension toggled through the admin API lasts until the config's own flag changes.
    if let Ok(mut o) = shared.overrides.lock() {
        o.retain(|k, _| match (old.bridges.get(k), bridges.get(k)) {
            (Some(a), Some(b)) => a.cfg.suspend == b.cfg.suspend,
            _ => false,
        });
    }
    let active = Arc::new(Active {
        config: cfg,
        bridges,
        by_path,
        errors,
        loaded_at_ms: now_ms(),
    });
    shared.swap(active.clone());
    shared
        .metrics
        .config_reloads
        .with_label_values(&["applied"])
        .inc();
    shared.wake.notify_one();
    for e in &active.errors {
        warn!(kind = %e.kind, item = %format!("{}/{}", e.namespace, e.name), reason = %e.reason, "{}", e.message);
    }
    info!(
        bridges = active.bridges.len(),
        plugins = active.config.plugins.len(),
        "configuration applied"
    );
    active
}

/// What local mode prints after each load.
pub fn describe(active: &Active, listen: SocketAddr, admin: SocketAddr) -> String {
    let mut out = format!("causeway: configuration {} loaded\n", active.config.version);
    let mut bridges: Vec<&Arc<ActiveBridge>> = active.bridges.values().collect();
    bridges.sort_by(|a, b| a.key.cmp(&b.key));
    for b in bridges {
        let state = if b.cfg.suspend { "  (suspended)" } else { "" };
        out.push_str(&format!(
            "  bridge {:<24} {} http://{listen}{}{state}\n",
            b.key,
            b.cfg.methods.join(","),
            b.cfg.path
        ));
    }
    for p in &active.config.plugins {
        let failed = active
            .errors
            .iter()
            .any(|e| e.kind == "Plugin" && e.namespace == p.namespace && e.name == p.name);
        match (&p.route, failed) {
            (_, true) => {}
            (Some(route), false) => out.push_str(&format!(
                "  plugin {:<24} http://{listen}{route}\n",
                p.key()
            )),
            (None, false) => out.push_str(&format!("  plugin {:<24} (private)\n", p.key())),
        }
    }
    for e in &active.errors {
        out.push_str(&format!(
            "  ! {} {}/{}: {}: {}\n",
            e.kind, e.namespace, e.name, e.reason, e.message
        ));
    }
    out.push_str(&format!("  admin  http://{admin}  (events, metrics)\n"));
    out
}

/// Run a worker until SIGTERM or Ctrl-C.
pub async fn serve(opts: Options, mut source: Box<dyn ConfigSource>) -> Result<(), RunError> {
    // reqwest is built without a default crypto provider; install ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Metrics::new()?;
    let first = source.load()?;
    // Events, plugin state and compiled plugins are private to the worker's user.
    for dir in [opts.data_dir.clone(), opts.data_dir.join("store"), opts.data_dir.join("plugins")] {
        private_dir(&dir).map_err(|e| crate::store::StoreError::Open { path: dir.display().to_string(), message: e.to_string() })?;
    }
    let store = EmbeddedStore::open(&opts.data_dir.join("store"), Some(metrics.store.clone()))?;
    let ingress_listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| RunError::Bind {
            addr: opts.listen,
            message: e.to_string(),
        })?;
    let admin_listener = tokio::net::TcpListener::bind(opts.admin)
        .await
        .map_err(|e| RunError::Bind {
            addr: opts.admin,
            message: e.to_string(),
        })?;
    let internal_listener = match opts.internal {
        Some(addr) => {
            Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| RunError::Bind {
                        addr,
                        message: e.to_string(),
                    })?,
            )
        }
        None => None,
    };
    let listen = ingress_listener.local_addr().map_err(|e| RunError::Bind {
        addr: opts.listen,
        message: e.to_string(),
    })?;
    let admin_addr = admin_listener.local_addr().map_err(|e| RunError::Bind {
        addr: opts.admin,
        message: e.to_string(),
    })?;
    let netguard = Arc::new(NetGuard::new(opts.limits.denied_destinations.clone()));
    let mut http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver(netguard.clone())));
    for (host, addr) in &opts.limits.resolve {
        http = http.resolve(host, *addr);
    }
    let http = http
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("causeway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RunError::Client(e.to_string()))?;
    let shutdown = CancellationToken::new();
    let store: Arc<dyn Store> = Arc::new(store);
    let plugins = Plugins::new(
        opts.data_dir.join("plugins"),
        store.clone(),
        metrics.plugin_registry.clone(),
        source.is_local(),
    )?;
    let shared = Arc::new(Shared {
        store,
        metrics,
        active: RwLock::new(Arc::new(Active::empty())),
        plugins,
        overrides: Mutex::new(HashMap::new()),
        paused: Mutex::new(HashSet::new()),
        limits_by_dest: Mutex::new(HashMap::new()),
        wake: Notify::new(),
        ready: AtomicBool::new(false),
        limits: opts.limits.clone(),
        http,
        shutdown: shutdown.clone(),
        ingress_addr: listen,
        netguard,
        generated_admin_token: (first.config.admin_token.is_none() && !admin_addr.ip().is_loopback())
            .then(|| causeway_crds::config::SecretValue(hex::encode(rand::random::<[u8; 24]>()))),
        store_dir: opts.data_dir.join("store"),
        disk_low: AtomicBool::new(false),
        body_budget: Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(opts.limits.max_body_bytes_in_flight.div_ceil(1024).max(1)).unwrap_or(usize::MAX >> 4),
        )),
    });
    shared.check_disk();
    for (b, d) in shared.store.paused().await? {
        shared.set_paused(&b, &d, true);
    }
    let active = apply(&shared, &first).await;
    if opts.print_urls {
        println!("{}", describe(&active, listen, admin_addr));
    }
    if let Some(token) = &shared.generated_admin_token {
        // Printed on the terminal of whoever started the worker, never logged.
        println!(
            "causeway: the admin address {admin_addr} is not loopback: admin calls need the token {}\n  (causeway events --token <token>, or CAUSEWAY_ADMIN_TOKEN)\n",
            token.expose()
        );
    }
    shared.ready.store(true, Ordering::SeqCst);
    info!(%listen, admin = %admin_addr, data_dir = %opts.data_dir.display(), "worker started");

    // Configuration: the source publishes, the applier applies.
    let (tx, mut rx) = watch::channel(Some(Arc::new(first)));
    let watcher = tokio::spawn(source.watch(tx, shutdown.clone()));
    let applier = {
        let shared = shared.clone();
        let stop = shutdown.clone();
        let print = opts.print_urls;
        // No `mark_unchanged` here: the receiver starts with `first` already seen, and the
        // source may have published a newer version by the time this task first runs
        // (marking then would skip it for good).
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
                let next = rx.borrow_and_update().clone();
                if let Some(loaded) = next {
                    let active = apply(&shared, &loaded).await;
                    if print {
                        println!("{}", describe(&active, listen, admin_addr));
                    }
                }
            }
        })
    };

    let delivery = tokio::spawn(delivery::run(shared.clone(), shutdown.clone()));
    let maintenance = tokio::spawn(maintenance(shared.clone(), shutdown.clone()));
    let admin = spawn_admin(admin_listener, shared.clone(), shutdown.clone())?;
    let ingress = tokio::spawn(ingress::serve(
        ingress_listener,
        shared.clone(),
        shutdown.clone(),
    ));

    let internal = internal_listener
        .map(|l| tokio::spawn(ingress::serve_internal(l, shared.clone(), shutdown.clone())));

    wait_for_signal().await?;
    info!("shutting down: no new connections; in-flight requests and attempts may finish");
    shared.ready.store(false, Ordering::SeqCst);
    shutdown.cancel();
    // Ingress and delivery drain side by side, each bounded by `shutdown_grace`.
    let _ = tokio::join!(ingress, delivery);
    if let Some(internal) = internal {
        let _ = internal.await;
    }
    let _ = tokio::join!(watcher, applier, maintenance, admin);
    // Every acknowledged write was committed before its answer; dropping the store
    // lets the writer thread finish what is queued.
    drop(shared);
    info!("stopped");
    Ok(())
}

/// Runs the admin API on a thread and runtime of its own: a busy ingress (or a slow
/// filter) can never delay `/healthz`, `/readyz` or the operator's calls. Resolves when it
/// has stopped.
fn spawn_admin(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<tokio::sync::oneshot::Receiver<()>, RunError> {
    let addr = listener.local_addr().map_err(|e| RunError::Signal(e.to_string()))?;
    let bind_err = |e: std::io::Error| RunError::Bind { addr, message: e.to_string() };
    let std_listener = listener.into_std().map_err(bind_err)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("causeway-admin")
        .build()
        .map_err(bind_err)?;
    let (done, stopped) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("causeway-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => admin::serve(l, shared, stop).await,
                    Err(e) => warn!(error = %e, "admin listener"),
                }
            });
            let _ = done.send(());
        })
        .map_err(bind_err)?;
    Ok(stopped)
}

async fn wait_for_signal() -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| RunError::Signal(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| RunError::Signal(e.to_string()))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// How often free disk space is measured.
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Retention on its interval; gauges every few seconds; free disk space every second.
async fn maintenance(shared: Arc<Shared>, stop: CancellationToken) {
    let mut gauges = tokio::time::interval(Duration::from_secs(5));
    let mut disk = tokio::time::interval(DISK_CHECK_INTERVAL);
    let mut retention = tokio::time::interval(shared.limits.retention_interval);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = gauges.tick() => update_gauges(&shared).await,
            _ = disk.tick() => shared.check_disk(),
            _ = retention.tick() => run_retention(&shared).await,
        }
    }
}

async fn update_gauges(shared: &Shared) {
    shared
        .metrics
        .store_bytes
        .set(shared.store.disk_bytes() as i64);
    match shared.store.queue_depth().await {
        Ok(depths) => {
            shared.metrics.queue_depth.reset();
            for ((b, d), n) in depths {
                shared
                    .metrics
                    .queue_depth
                    .with_label_values(&[&b, &d])
                    .set(n as i64);
            }
        }
        Err(e) => warn!(error = %e, "cannot read queue depth"),
    }
}

#[instrument(skip_all)]
pub async fn run_retention(shared: &Shared) {
    let r = &shared.active().config.retention;
    let policy = Retention {
        max_age_ms: r.max_age_ms,
        max_bytes: r.max_bytes,
    };
    match shared.store.retain(policy, now_ms()).await {
        Ok(rep) => {
            shared
                .metrics
                .retention_deleted
                .with_label_values(&["age"])
                .inc_by(rep.deleted_by_age as u64);
            shared
                .metrics
                .retention_deleted
                .with_label_values(&["size"])
                .inc_by(rep.deleted_by_size as u64);
            if rep.deleted_by_age + rep.deleted_by_size > 0 {
                info!(
                    by_age = rep.deleted_by_age,
                    by_size = rep.deleted_by_size,
                    compacted = rep.compacted,
                    bytes_before = rep.bytes_before,
                    bytes_after = rep.bytes_after,
                    "retention"
                );
            }
        }
        Err(e) => warn!(error = %e, "retention failed"),
    }
}

/// Errors in a [`BTreeMap`] by `Kind ns/name`, for display.
pub fn errors_by_item(active: &Active) -> BTreeMap<String, String> {
    active
        .errors
        .iter()
        .map(|e| {
            (
                format!("{} {}/{}", e.kind, e.namespace, e.name),
                e.message.clone(),
            )
        })
        .collect()
}
