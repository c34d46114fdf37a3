//! What the stages share, as handles with one owner each: the configuration
//! ([`ConfigHandle`]), delivery's wake-ups, pauses and limits ([`DeliveryHandle`]), health
//! ([`Health`]), the store, the plugins, metrics. `worker.rs` builds it and runs the
//! stages; no stage imports `worker.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use causeway_plugins::PluginRef;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::config::active::{Active, ConfigHandle};
use crate::delivery::handle::DeliveryHandle;
use crate::health::Health;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::netguard::NetGuard;
use crate::plugins::Plugins;
use crate::store::{Retention, Store, now_ms};

/// Which store engine the worker runs on and where, for its admin report. Never holds
/// credentials: build it with [`StoreInfo::embedded`] or [`StoreInfo::postgres`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    /// `embedded` or `postgres` (`causeway_config::StoreReport::{EMBEDDED, POSTGRES}`).
    pub engine: &'static str,
    /// Where: the data directory, or `host:port/dbname` of the database.
    pub location: String,
}

impl StoreInfo {
    pub fn embedded(dir: &std::path::Path) -> Self {
        StoreInfo {
            engine: causeway_config::StoreReport::EMBEDDED,
            location: dir.display().to_string(),
        }
    }

    /// From the connection URL (user and password are left out).
    pub fn postgres(url: &str) -> Self {
        StoreInfo {
            engine: causeway_config::StoreReport::POSTGRES,
            location: causeway_config::postgres_location(url),
        }
    }
}

/// The handles every stage is given.
pub struct Shared {
    pub store: Arc<dyn Store>,
    /// What [`Shared::store`] is, for the admin report.
    pub store_info: StoreInfo,
    pub metrics: Metrics,
    pub config: ConfigHandle,
    pub plugins: Plugins,
    pub delivery: DeliveryHandle,
    pub health: Health,
    pub limits: Limits,
    /// The destinations' HTTP client (no redirects, the network guard in its resolver).
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub ingress_addr: SocketAddr,
    /// Where destinations may connect (shared with `http`'s resolver).
    pub netguard: Arc<NetGuard>,
    /// Body bytes in flight over all connections, in KiB permits.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// The bridges' streams (SSE, WebSocket): ingress mints their events' ids here.
    pub streams: Arc<crate::streams::Streams>,
    /// The bridges' WebSub hubs: their stored subscriptions and verifications.
    pub websub: Arc<crate::websub::Hubs>,
    /// OpenTelemetry traces: exported when the environment names an OTLP endpoint, ids
    /// only otherwise.
    pub traces: crate::traces::Traces,
}

impl Shared {
    /// The configuration running now.
    pub fn active(&self) -> Arc<Active> {
        self.config.active()
    }

    pub fn is_suspended(&self, bridge: &str) -> bool {
        self.config.is_suspended(bridge)
    }

    /// Suspends or resumes a bridge (until its configuration's flag changes) and wakes
    /// delivery, which holds a suspended bridge's jobs.
    pub fn set_suspended(&self, bridge: &str, suspended: bool) {
        self.config.set_suspended(bridge, suspended);
        self.delivery.wake();
    }

    /// The first plugin `bridge` calls (a step, or an `http://<plugin>.internal`
    /// destination) that this worker serves but has not loaded, and why: the bridge then
    /// holds (or, by its policy, refuses) events instead of failing them.
    pub fn plugin_not_ready(&self, bridge: &causeway_config::BridgeConfig) -> Option<String> {
        let active = self.active();
        let steps = bridge.steps.iter().map(|s| PluginRef {
            namespace: bridge.namespace.clone(),
            name: s.plugin.clone(),
        });
        let internal = bridge.destinations.iter().filter_map(|d| {
            crate::delivery::client::internal_target(&d.url, &bridge.namespace).map(|(t, _)| t)
        });
        steps.chain(internal).find_map(|target| {
            self.plugins
                .not_ready(&active.config, &target)
                .map(|why| format!("plugin {} is not ready: {why}", target.name))
        })
    }

    /// Whether the worker should take traffic: started, store writable, disk not full.
    pub fn is_ready(&self) -> bool {
        self.health.started() && self.store.healthy() && !self.health.disk_low()
    }
}

/// Applies the retention policy of the running configuration.
#[instrument(skip_all)]
pub async fn run_retention(shared: &Shared) {
    let r = &shared.active().config.retention;
    let policy = Retention {
        max_age_ms: r.max_age_ms,
        max_bytes: r.max_bytes,
    };
    match shared.store.retain(policy, now_ms()).await {
        Ok(rep) => {
            let m = &shared.metrics.retention_deleted;
            m.with_label_values(&["age"])
                .inc_by(rep.deleted_by_age as u64);
            m.with_label_values(&["size"])
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
