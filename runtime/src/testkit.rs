//! Test support: a worker's [`Shared`] on a real embedded store in a temporary directory,
//! with a configuration applied, for the in-process router tests of ingress and admin.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use causeway_config::WorkerConfig;

use crate::bridge::ActiveBridge;
use crate::config::active::{Active, ConfigHandle};
use crate::delivery::handle::DeliveryHandle;
use crate::health::Health;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::netguard::NetGuard;
use crate::plugins::Plugins;
use crate::shared::{Shared, StoreInfo};
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;

/// A started worker's shared state under `dir`, with `cfg`'s bridges compiled and active
/// (plugins are not loaded). Panics on a bridge that does not compile: tests give good ones.
pub fn shared(dir: &Path, cfg: WorkerConfig, limits: Limits) -> Arc<Shared> {
    let metrics = Metrics::new().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.join("store"), None).unwrap());
    let plugins = Plugins::new(
        dir.join("plugins"),
        store.clone(),
        metrics.plugin_registry.clone(),
        true,
    )
    .unwrap();
    let budget = limits.max_body_bytes_in_flight.div_ceil(1024).max(1);
    let shared = Shared {
        streams: crate::streams::Streams::new(
            store.clone(),
            &metrics.registry,
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap(),
        websub: Arc::new(crate::websub::Hubs::new(store.clone())),
        store,
        store_info: StoreInfo::embedded(&dir.join("store")),
        config: ConfigHandle::new(None),
        plugins,
        delivery: DeliveryHandle::new(&metrics),
        health: Health::new(dir.join("store"), 0),
        limits,
        http: reqwest::Client::new(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        ingress_addr: "127.0.0.1:0".parse().unwrap(),
        netguard: Arc::new(NetGuard::default()),
        traces: crate::traces::Traces::off(),
        body_budget: Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(budget).unwrap(),
        )),
        metrics,
    };
    let mut bridges = HashMap::new();
    let mut by_path = HashMap::new();
    for b in &cfg.bridges {
        let active = ActiveBridge::compile(b, &cfg).unwrap();
        by_path.insert(b.path.clone(), b.key());
        bridges.insert(b.key(), Arc::new(active));
    }
    shared.config.swap(Arc::new(Active {
        config: Arc::new(cfg),
        bridges,
        by_path,
        ..Active::empty()
    }));
    shared.health.set_started(true);
    Arc::new(shared)
}
