//! The worker: builds the stages' handles ([`Shared`]), applies configurations, and runs
//! every stage until a shutdown signal. Only the binary's entry point imports it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use causeway_config::{ItemError, Kind, ObjectKey, reason};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::bridge::ActiveBridge;
use crate::config::active::{Active, Alive, ConfigHandle};
use crate::config::{ConfigSource, Loaded};
use crate::delivery::handle::DeliveryHandle;
use crate::health::Health;
pub use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::netguard::{NetGuard, OutboundProxy, parse_cidrs};
use crate::plugins::Plugins;
use crate::shared::{Shared, StoreInfo, run_retention};
use crate::store::embedded::EmbeddedStore;
use crate::store::postgres::{PostgresOptions, PostgresStore, pool_schema};
use crate::store::{Store, now_ms};
use crate::{admin, delivery, ingress};

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
    /// Run on PostgreSQL instead of the embedded store.
    pub postgres: Option<crate::store::postgres::PostgresArgs>,
}

/// Creates `dir` (and missing parents) readable by the owner only. A directory that
/// exists keeps its mode (in a pod it may be a volume the kubelet set up for a group).
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
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
    #[error("traces: {0}")]
    Traces(#[from] crate::traces::TracesError),
}

/// Build and apply an [`Active`] from a loaded config. Bridges that fail to compile keep
/// their previous version when there is one.
#[instrument(skip_all, fields(version = %loaded.config.version))]
pub async fn apply(shared: &Shared, loaded: &Loaded) -> Arc<Active> {
    let old = shared.active();
    let cfg = loaded.config.clone();
    let mut errors: Vec<ItemError> = loaded.problems.clone();
    let mut bridges = HashMap::new();
    for b in &cfg.bridges {
        let key = b.key();
        match ActiveBridge::compile(b, &cfg) {
            Ok(mut a) => {
                a.keep_ingress_limit(old.bridges.get(&key).map(|p| &**p));
                bridges.insert(key, Arc::new(a));
            }
            Err(errs) => {
                let kept = old.bridges.get(&key).cloned();
                let note = if kept.is_some() {
                    " (the previous version keeps running)"
                } else {
                    ""
                };
                errors.push(ItemError::new(
                    Kind::Bridge,
                    b.object_key(),
                    reason::INVALID_SPEC,
                    format!("{}{note}", errs.join("; ")),
                ));
                if let Some(prev) = kept {
                    bridges.insert(key, prev);
                }
            }
        }
    }
    for (key, message) in shared.plugins.apply(&cfg).await {
        let key = ObjectKey::parse(&key).unwrap_or_default();
        errors.push(ItemError::new(
            Kind::Plugin,
            key,
            reason::LOAD_ERROR,
            message,
        ));
    }
    shared
        .metrics
        .set_destination_histograms(cfg.metrics.destination_histograms);
    match parse_cidrs(&cfg.destination_allowed_cidrs) {
        Ok(allowed) => shared.netguard.set_allowed(allowed),
        Err(message) => errors.push(ItemError::new(
            Kind::WorkerPool,
            ObjectKey::new(&cfg.namespace, &cfg.pool),
            reason::INVALID_SPEC,
            format!("allowedDestinationCidrs: {message} (the previous list stays)"),
        )),
    }
    let by_path = bridges
        .values()
        .map(|b| (b.cfg.path.clone(), b.key.clone()))
        .collect();
    let active = Arc::new(Active {
        config: cfg,
        bridges,
        by_path,
        errors,
        loaded_at_ms: now_ms(),
        alive: Some(Alive::new(&shared.metrics.config_generations)),
    });
    shared.config.swap(active.clone());
    // Connections to a stream that is gone or changed (a rotated key) end; they reconnect
    // under the new configuration.
    shared.streams.reconfigured(&active);
    {
        let bridges = active.bridges.keys().map(String::as_str).collect();
        let destinations: std::collections::HashSet<(&str, &str)> = active
            .bridges
            .values()
            .flat_map(|b| {
                b.cfg
                    .destinations
                    .iter()
                    .map(|d| (b.key.as_str(), d.name.as_str()))
            })
            .collect();
        // Subscriptions' deliveries are counted under one label per bridge.
        let mut labelled = destinations.clone();
        labelled.extend(
            active
                .bridges
                .values()
                .filter(|b| b.cfg.subscriptions.is_some())
                .map(|b| (b.key.as_str(), crate::websub::METRIC_LABEL)),
        );
        shared.metrics.forget_gone(&bridges, &labelled);
        shared
            .delivery
            .tokens
            .retain(|b, d| destinations.contains(&(b, d)));
        shared
            .delivery
            .tls_clients
            .retain(|b, d| destinations.contains(&(b, d)));
        shared
            .delivery
            .nats
            .retain(|b, d| destinations.contains(&(b, d)));
        shared.delivery.breakers.forget(&destinations);
        // A subscription's counts stay while its bridge does (its jobs are named
        // `websub:<id>`, never a destination's).
        shared.delivery.window.retain(|b, d| {
            destinations.contains(&(b, d))
                || (crate::websub::subscription_id(d).is_some() && bridges.contains(b))
        });
    }
    shared
        .metrics
        .config_reloads
        .with_label_values(&["applied"])
        .inc();
    shared.delivery.wake();
    for e in &active.errors {
        warn!(kind = %e.kind, item = %e.key(), reason = %e.reason, "{}", e.message);
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
        for s in &b.cfg.streams {
            out.push_str(&format!(
                "  stream {:<24} GET  http://{listen}/streams/{}/{}/{}\n",
                format!("{}/{}", b.key, s.name),
                b.cfg.namespace,
                b.cfg.name,
                s.name
            ));
        }
    }
    for p in &active.config.plugins {
        let failed = active
            .errors
            .iter()
            .any(|e| e.is_about(Kind::Plugin, &p.object_key()));
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
            "  ! {} {}: {}: {}\n",
            e.kind,
            e.key(),
            e.reason,
            e.message
        ));
    }
    out.push_str(&format!("  admin  http://{admin}  (events, metrics)\n"));
    out.push_str(&format!("  console http://{admin}/\n"));
    out
}

/// Run a worker until SIGTERM or Ctrl-C.
pub async fn serve(opts: Options, mut source: Box<dyn ConfigSource>) -> Result<(), RunError> {
    // reqwest is built without a default crypto provider; install ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Metrics::new()?;
    // OTLP export when the environment names an endpoint; a bad one stops the start.
    let traces = crate::traces::Traces::from_env()?;
    if traces.is_on() {
        info!("traces: exported over OTLP/HTTP (OTEL_EXPORTER_OTLP_* of the environment)");
    }
    let first = source.load()?;
    // Events, plugin state and compiled plugins are private to the worker's user.
    for dir in [
        opts.data_dir.clone(),
        opts.data_dir.join("store"),
        opts.data_dir.join("plugins"),
    ] {
        private_dir(&dir).map_err(|e| crate::store::StoreError::Open {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let (store, store_info): (Arc<dyn Store>, StoreInfo) = match &opts.postgres {
        None => (
            Arc::new(EmbeddedStore::open(
                &opts.data_dir.join("store"),
                Some(metrics.store.clone()),
            )?),
            StoreInfo::embedded(&opts.data_dir.join("store")),
        ),
        Some(pg) => {
            let schema = pg
                .schema
                .clone()
                .unwrap_or_else(|| pool_schema(&first.config.namespace, &first.config.pool));
            // A URL from a Secret file often ends with a newline.
            let mut o = PostgresOptions::new(pg.url.trim().to_string(), schema);
            o.pool_size = pg.pool_size;
            o.statement_timeout = pg.statement_timeout;
            o.lease = pg.lease;
            let store = PostgresStore::open(o).await?;
            info!(database = %store.location(), schema = %store.schema(), "store: postgres");
            (Arc::new(store), StoreInfo::postgres(&pg.url))
        }
    };
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
    // The client honours HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY (reqwest's
    // default); the guard reads them with the same matcher to check proxied destinations.
    let proxy = OutboundProxy::from_env();
    if let Some(p) = &proxy {
        info!(proxies = ?p.hosts(), "destinations go through the proxy of the environment");
    }
    let netguard =
        Arc::new(NetGuard::new(opts.limits.denied_destinations.clone()).with_proxy(proxy));
    let http = crate::delivery::tls::guarded_builder(&netguard, &opts.limits.resolve)
        .build()
        .map_err(|e| RunError::Client(e.to_string()))?;
    let shutdown = CancellationToken::new();
    let plugins = Plugins::new(
        opts.data_dir.join("plugins"),
        store.clone(),
        metrics.plugin_registry.clone(),
        source.is_local(),
    )?;
    let generated_admin_token = (first.config.admin_token.is_none()
        && !admin_addr.ip().is_loopback())
    .then(|| causeway_config::SecretValue(hex::encode(rand::random::<[u8; 24]>())));
    let delivery_handle = DeliveryHandle::new(&metrics);
    if let Err(e) = delivery_handle.load_paused(store.as_ref()).await {
        // A shared store that is not reachable yet: the worker starts unready and learns the
        // paused destinations once it is (the shared-state sync); nothing is claimed before.
        if store.poll_interval().is_none() {
            return Err(e.into());
        }
        warn!(error = %e, "paused destinations not loaded yet: the store is not reachable");
    }
    let streams = crate::streams::Streams::new(store.clone(), &metrics.registry, shutdown.clone())
        .map_err(crate::metrics::MetricsError::from)?;
    let websub = Arc::new(crate::websub::Hubs::new(store.clone()));
    if let Err(e) = websub.load().await {
        // As for paused destinations: a shared store not reachable yet is read again on
        // the hub's next refresh.
        if store.poll_interval().is_none() {
            return Err(e.into());
        }
        warn!(error = %e, "websub subscriptions not loaded yet: the store is not reachable");
    }
    let shared = Arc::new(Shared {
        streams,
        websub,
        store,
        store_info,
        config: ConfigHandle::new(generated_admin_token),
        plugins,
        delivery: delivery_handle,
        health: Health::new(opts.data_dir.join("store"), opts.limits.min_free_disk_bytes),
        limits: opts.limits.clone(),
        http,
        shutdown: shutdown.clone(),
        ingress_addr: listen,
        netguard,
        body_budget: Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(opts.limits.max_body_bytes_in_flight.div_ceil(1024).max(1))
                .unwrap_or(usize::MAX >> 4),
        )),
        traces: traces.clone(),
        metrics,
    });
    shared.health.check_disk();
    {
        // Work another worker of a shared store added wakes this one's scheduler too (a
        // weak handle: the store must not keep the worker alive).
        let weak = Arc::downgrade(&shared);
        shared.store.on_new_work(Arc::new(move || {
            if let Some(s) = weak.upgrade() {
                s.delivery.wake();
            }
        }));
    }
    {
        // Dropped here: held for the life of `serve`, it pinned the first configuration
        // (every compiled bridge of it) after all the swaps that replaced it.
        let active = apply(&shared, &first).await;
        if opts.print_urls {
            println!("{}", describe(&active, listen, admin_addr));
        }
    }
    if let Some(token) = shared.config.generated_admin_token() {
        // Printed on the terminal of whoever started the worker, never logged.
        println!(
            "causeway: the admin address {admin_addr} is not loopback: admin calls need the token {}\n  (causeway events --token <token>, or CAUSEWAY_ADMIN_TOKEN)\n",
            token.expose()
        );
    }
    shared.health.set_started(true);
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
    let hubs = tokio::spawn(shared.websub.clone().run(shutdown.clone()));
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
    shared.health.set_started(false);
    shutdown.cancel();
    // Ingress and delivery drain side by side, each bounded by `shutdown_grace`.
    let _ = tokio::join!(ingress, delivery);
    if let Some(internal) = internal {
        let _ = internal.await;
    }
    let _ = tokio::join!(watcher, applier, maintenance, admin, hubs);
    // Attempt records that did not wait for their fsync are made durable before exit.
    if let Err(e) = shared.store.flush().await {
        warn!(error = %e, "cannot make the last attempt records durable; they are attempted again after restart");
    }
    // Every acknowledged write was committed before its answer; dropping the store
    // lets the writer thread finish what is queued.
    drop(shared);
    // The spans still queued go out (the exporter blocks: off the runtime's threads).
    let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
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
    let addr = listener
        .local_addr()
        .map_err(|e| RunError::Signal(e.to_string()))?;
    let bind_err = |e: std::io::Error| RunError::Bind {
        addr,
        message: e.to_string(),
    };
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
    // A store shared with other workers: their pauses and suspensions hold here too.
    let mut sync = tokio::time::interval(
        shared
            .store
            .poll_interval()
            .unwrap_or(Duration::from_secs(3600))
            * 2,
    );
    let shared_store = shared.store.poll_interval().is_some();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sync.tick(), if shared_store => sync_shared_state(&shared).await,
            _ = gauges.tick() => update_gauges(&shared).await,
            _ = disk.tick() => shared.health.check_disk(),
            _ = retention.tick() => run_retention(&shared).await,
        }
    }
}

/// Pauses and admin suspensions other workers of a shared store made.
async fn sync_shared_state(shared: &Shared) {
    // Breakers first: a paused destination's reason reads its breaker.
    if let Ok(breakers) = shared.store.breakers().await
        && shared.delivery.breakers.sync(breakers)
    {
        shared.delivery.wake();
    }
    if let Ok(paused) = shared.store.paused().await {
        shared.delivery.sync_paused(&paused);
    }
    if let Ok(suspended) = shared.store.suspended().await {
        for (bridge, s) in suspended {
            if shared.is_suspended(&bridge) != s {
                shared.set_suspended(&bridge, s);
                if !s {
                    shared.delivery.wake();
                }
            }
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

/// Errors in a [`BTreeMap`] by `Kind ns/name`, for display.
pub fn errors_by_item(active: &Active) -> BTreeMap<String, String> {
    active
        .errors
        .iter()
        .map(|e| (format!("{} {}", e.kind, e.key()), e.message.clone()))
        .collect()
}
