//! The three controllers and what they share.
//!
//! - **WorkerPool**: renders the pool's config, applies its children, asks its workers what
//!   they run, and writes the pool's status. It keeps that observation in [`Context`] and
//!   wakes the Bridge and Plugin controllers when it changes.
//! - **Bridge** and **Plugin**: fold the observations into their own status, and create the
//!   `default` pool when an object lands in it and it does not exist.
//!
//! Inputs are shared reflector stores (pools, bridges, plugins, worker pods), so the three
//! controllers watch each kind once.

mod apply;
mod changes;
pub mod coalesce;
mod finalizer;
mod inventory;
mod objects;
mod pool;
mod run;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use causeway_crds::{Bridge, Plugin, WorkerPool, WorkerPoolSpec};
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::admin::AdminApi;
use crate::builders::{BuildError, BuildSettings, ConfigSecretError};
use crate::metrics::Metrics;
use crate::status::{PoolObservation, bridge_status};

pub use objects::{reconcile_bridge, reconcile_plugin};
pub use pool::{reconcile_pool, usable_token};
pub use run::{RunError, run_controllers};

/// Errors of one reconciliation. Each becomes a Warning Event and a metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {kind} {namespace}/{name}: {source}")]
    Kube {
        verb: &'static str,
        kind: String,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0}")]
    ConfigSecret(#[from] ConfigSecretError),
    #[error("{kind} {name} has no namespace")]
    NoNamespace { kind: String, name: String },
}

impl Error {
    /// A bounded label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.code == 409 => "conflict",
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.code == 403 => "forbidden",
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.code == 422 => "invalid",
            Error::Kube { .. } => "kube",
            Error::Build(_) => "build",
            Error::ConfigSecret(e) if e.is_too_large() => "config_too_large",
            Error::ConfigSecret(_) => "serialize",
            Error::NoNamespace { .. } => "no_namespace",
        }
    }
}

impl Error {
    /// The reason of the pool's Ready condition when its reconcile fails with this.
    pub fn pool_reason(&self) -> &'static str {
        match self {
            Error::ConfigSecret(e) if e.is_too_large() => crate::status::CONFIG_TOO_LARGE,
            _ => crate::status::APPLY_FAILED,
        }
    }
}

/// Defaults of a `default` pool the operator creates on demand.
#[derive(Clone, Debug)]
pub struct PoolDefaults {
    pub replicas: i32,
    pub storage_size: String,
    pub storage_class: Option<String>,
    /// Postgres storage with the URL from this Secret key, instead of embedded storage.
    pub postgres_url: Option<causeway_crds::common::SecretKeyRef>,
}

impl PoolDefaults {
    pub fn spec(&self) -> WorkerPoolSpec {
        let mut spec = WorkerPoolSpec {
            replicas: self.replicas,
            ..WorkerPoolSpec::default()
        };
        spec.storage.size = self.storage_size.clone();
        spec.storage.storage_class_name = self.storage_class.clone();
        if let Some(url) = &self.postgres_url {
            spec.storage.type_ = causeway_crds::pool::StorageType::Postgres;
            spec.storage.postgres = Some(causeway_crds::pool::PostgresStorage {
                url_secret_ref: url.clone(),
            });
        }
        spec
    }
}

/// How the controllers behave.
#[derive(Clone, Debug)]
pub struct Settings {
    pub build: BuildSettings,
    pub default_pool: PoolDefaults,
    /// Requeue of a pool (and its objects) that has not converged: worker state is not a
    /// watched object, so the operator polls it until it matches.
    pub requeue_pending: Duration,
    /// Requeue of a converged pool, to notice late worker errors.
    pub requeue_converged: Duration,
    /// How long a pool's wake-ups are folded together before it renders
    /// ([`coalesce`]).
    pub render_batch: Duration,
    /// Reconciles run at once, per controller.
    pub reconcile_concurrency: u16,
    /// How workers reach plugins placed in another pool.
    pub pool_routing: crate::cli::PoolRouting,
}

/// Shared reflector stores.
#[derive(Clone)]
pub struct Stores {
    pub pools: Store<WorkerPool>,
    pub bridges: Store<Bridge>,
    pub plugins: Store<Plugin>,
    /// Worker pods (label `app.kubernetes.io/managed-by=causeway-operator`).
    pub pods: Store<Pod>,
    /// Optional children, so that the ones no longer wanted can be deleted.
    pub claims: Store<PersistentVolumeClaim>,
    pub budgets: Store<PodDisruptionBudget>,
    pub autoscalers: Store<HorizontalPodAutoscaler>,
    pub service_accounts: Store<ServiceAccount>,
    pub network_policies: Store<NetworkPolicy>,
    /// ReplicaSets and Deployments (metadata only), to tell a worker pod by its owners.
    pub replica_sets: Store<PartialObjectMeta<ReplicaSet>>,
    pub deployments: Store<PartialObjectMeta<Deployment>>,
}

/// Everything a reconciliation needs.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub stores: Stores,
    pub admin: Arc<dyn AdminApi>,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Last observation of each pool, keyed `(namespace, name)`.
    /// Shared with the cluster console (`crate::console::workers::Observations`).
    pub observations: crate::console::workers::Observations,
    pub wake_bridges: UnboundedSender<ObjectRef<Bridge>>,
    pub wake_plugins: UnboundedSender<ObjectRef<Plugin>>,
    /// True once every store has listed: rendering from a half-filled store would drop
    /// bridges from a running config.
    pub synced: AtomicBool,
}

impl Context {
    /// The observation of one pool. Shared, not copied: every Bridge reconcile reads its
    /// pool's, and a copy of a 1,000-bridge observation per reconcile was most of the
    /// operator's memory churn (`docs/operator.md`, "Memory at scale").
    pub fn observation(&self, namespace: &str, pool: &str) -> Option<Arc<PoolObservation>> {
        self.observations
            .read()
            .ok()?
            .get(&(namespace.to_string(), pool.to_string()))
            .cloned()
    }

    /// Every observation of a namespace.
    pub fn observations_in(&self, namespace: &str) -> Vec<Arc<PoolObservation>> {
        match self.observations.read() {
            Ok(map) => map
                .iter()
                .filter(|((ns, _), _)| ns == namespace)
                .map(|(_, o)| o.clone())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Store an observation; true when it differs from the previous one.
    pub fn set_observation(&self, obs: Arc<PoolObservation>) -> bool {
        let Ok(mut map) = self.observations.write() else {
            return true;
        };
        let key = (obs.namespace.clone(), obs.pool.clone());
        if map.get(&key).map(|o| o.as_ref()) == Some(obs.as_ref()) {
            return false;
        }
        map.insert(key, obs);
        true
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// After a pool's observation changed: wake the Bridges of the pool whose status it
    /// changes, and every Plugin of the namespace.
    pub fn wake_dependents(&self, obs: &PoolObservation) {
        for b in bridges_to_wake(&self.stores.bridges.state(), obs, &pool::now()) {
            let _closed = self.wake_bridges.unbounded_send(b);
        }
        for p in self.stores.plugins.state() {
            if p.namespace().as_deref() == Some(obs.namespace.as_str()) {
                let _closed = self
                    .wake_plugins
                    .unbounded_send(ObjectRef::from_obj(p.as_ref()));
            }
        }
    }

    /// Forget a pool's observation (the pool is gone).
    pub fn forget(&self, namespace: &str, pool: &str) {
        if let Ok(mut map) = self.observations.write() {
            map.remove(&(namespace.to_string(), pool.to_string()));
        }
    }
}

/// The Bridges of `obs`'s pool that a reconcile would write a new status for (computed
/// with the reconciler's own [`bridge_status`]), and those being deleted, which poll their
/// jobs left. Waking every Bridge of a pool on each of its renders cost 10,000 reconciles
/// per render at 10,000 Bridges, nearly all of which wrote nothing.
pub(crate) fn bridges_to_wake(
    bridges: &[Arc<Bridge>],
    obs: &PoolObservation,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Vec<ObjectRef<Bridge>> {
    bridges
        .iter()
        .filter(|b| {
            b.namespace().as_deref() == Some(obs.namespace.as_str())
                && causeway_crds::config::pool_of(&b.spec.pool) == obs.pool
        })
        .filter(|b| {
            causeway_crds::config::being_deleted(b)
                || bridge_status(b, true, Some(obs), now)
                    .is_some_and(|s| b.status.as_ref() != Some(&s))
        })
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests;
