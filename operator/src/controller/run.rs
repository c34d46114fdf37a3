//! Wiring: one watch per kind feeding shared stores, the wake-ups between controllers, and
//! the three controllers themselves.
//!
//! Shared reflector streams do not forward deletions, and a deleted Bridge must re-render
//! its pool. So every root watch is driven here: each event (deletions included) is mapped
//! to the pools, bridges or plugins it affects and sent to the controller's `reconcile_on`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use causeway_crds::config::pool_of;
use causeway_crds::{Bridge, Plugin, WorkerPool};
use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::apply::publish;
use super::{Context, Error, Settings, Stores, reconcile_bridge, reconcile_plugin, reconcile_pool};
use crate::admin::AdminApi;
use crate::builders::{MANAGED_BY_LABEL, managed_selector};
use crate::metrics::Metrics;

/// Errors that stop the controllers.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reflector store for {0} cannot be subscribed to")]
    NotShared(&'static str),
}

const BUFFER: usize = 1024;

/// Something that turns watch events into wake-ups; the flag is true for a deletion.
type OnEvent<K> = Box<dyn Fn(&K, bool) + Send + Sync>;

/// Drive a root watch: keep `writer`'s store current and call `on_event` for every applied
/// or deleted object (not for the initial list, after which every controller reconciles
/// everything anyway).
fn drive<K>(
    api: Api<K>,
    wc: watcher::Config,
    writer: reflector::store::Writer<K>,
    kind: &'static str,
    on_event: OnEvent<K>,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    // managedFields are never read here, and they are about half of a small object: the
    // cache (and every copy a render takes) holds the rest.
    let stream = watcher(api, wc)
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect_shared(writer);
    spawn_events(stream, kind, on_event);
}

fn spawn_events<K, S>(stream: S, kind: &'static str, on_event: OnEvent<K>)
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(o)) => on_event(&o, false),
                Ok(watcher::Event::Delete(o)) => on_event(&o, true),
                Ok(_) => {}
                Err(e) => tracing::warn!(kind, error = %e, "watch failed; retrying with backoff"),
            }
        }
    });
}

/// Sends wake-ups for pools.
#[derive(Clone)]
struct PoolWaker {
    tx: UnboundedSender<ObjectRef<WorkerPool>>,
    pools: Store<WorkerPool>,
}

impl PoolWaker {
    fn all_in(&self, ns: Option<String>) {
        let Some(ns) = ns else { return };
        for p in self.pools.state() {
            if p.namespace().as_deref() == Some(ns.as_str()) {
                let _closed = self.tx.unbounded_send(ObjectRef::from_obj(p.as_ref()));
            }
        }
    }

    fn owner_of(&self, meta: &kube::api::ObjectMeta) -> bool {
        let Some(ns) = meta.namespace.clone() else {
            return false;
        };
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "WorkerPool");
        match owner {
            Some(o) => {
                let _closed = self.tx.unbounded_send(ObjectRef::new(&o.name).within(&ns));
                true
            }
            None => false,
        }
    }
}

/// The API of `K` in every namespace (`None`), or in one: the namespaced install watches
/// and lists only what it may see.
pub fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the controllers until `shutdown` resolves, over every namespace (`namespace` None)
/// or over one.
#[allow(clippy::too_many_arguments)] // one per shared handle; a struct of them would only move the list
pub async fn run_controllers(
    client: Client,
    namespace: Option<String>,
    settings: Settings,
    admin: Arc<dyn AdminApi>,
    metrics: Metrics,
    recorder: Recorder,
    observations: crate::console::workers::Observations,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let ns = namespace.as_deref();
    let all = watcher::Config::default();
    let managed = watcher::Config::default().labels(&managed_selector());

    let (pools, pools_w) = reflector::store_shared::<WorkerPool>(BUFFER);
    let (bridges, bridges_w) = reflector::store_shared::<Bridge>(BUFFER);
    let (plugins, plugins_w) = reflector::store_shared::<Plugin>(BUFFER);
    let (pods, pods_w) = reflector::store_shared::<Pod>(BUFFER);
    let (claims, claims_w) = reflector::store_shared::<PersistentVolumeClaim>(BUFFER);
    let (budgets, budgets_w) = reflector::store_shared::<PodDisruptionBudget>(BUFFER);
    let (autoscalers, autoscalers_w) = reflector::store_shared::<HorizontalPodAutoscaler>(BUFFER);
    let (service_accounts, sas_w) = reflector::store_shared::<ServiceAccount>(BUFFER);
    let (network_policies, nps_w) = reflector::store_shared::<NetworkPolicy>(BUFFER);
    let (replica_sets, rs_w) = reflector::store_shared::<PartialObjectMeta<ReplicaSet>>(BUFFER);
    let (deployments, deploy_w) = reflector::store_shared::<PartialObjectMeta<Deployment>>(BUFFER);
    let pool_trigger = pools_w
        .subscribe()
        .ok_or(RunError::NotShared("WorkerPool"))?;
    let bridge_trigger = bridges_w.subscribe().ok_or(RunError::NotShared("Bridge"))?;
    let plugin_trigger = plugins_w.subscribe().ok_or(RunError::NotShared("Plugin"))?;

    let (wake_pools_tx, wake_pools_rx) = unbounded::<ObjectRef<WorkerPool>>();
    let (wake_bridges_tx, wake_bridges_rx) = unbounded::<ObjectRef<Bridge>>();
    let (wake_plugins_tx, wake_plugins_rx) = unbounded::<ObjectRef<Plugin>>();
    let waker = PoolWaker {
        tx: wake_pools_tx,
        pools: pools.clone(),
    };

    let stores = Stores {
        pools: pools.clone(),
        bridges: bridges.clone(),
        plugins: plugins.clone(),
        pods: pods.clone(),
        claims: claims.clone(),
        budgets: budgets.clone(),
        autoscalers: autoscalers.clone(),
        service_accounts: service_accounts.clone(),
        network_policies: network_policies.clone(),
        replica_sets: replica_sets.clone(),
        deployments: deployments.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        stores,
        admin,
        metrics,
        recorder,
        observations,
        wake_bridges: wake_bridges_tx.clone(),
        wake_plugins: wake_plugins_tx.clone(),
        synced: AtomicBool::new(false),
    });

    // Pools: a new or deleted pool changes the status of the objects that name it, and the
    // routes of the other pools of its namespace. A pool's own status writes change
    // neither ([`super::changes`]); its reconcile wakes the objects whose status its
    // observation changes.
    {
        let (ctx2, bridges_tx, plugins_tx, w) = (
            ctx.clone(),
            wake_bridges_tx.clone(),
            wake_plugins_tx.clone(),
            waker.clone(),
        );
        let changes = super::changes::Changes::default();
        drive(
            scoped_api::<WorkerPool>(&client, ns),
            all.clone(),
            pools_w,
            "WorkerPool",
            Box::new(move |p: &WorkerPool, deleted: bool| {
                let ns = p.namespace();
                let (ns_name, name) = (ns.clone().unwrap_or_default(), p.name_any());
                let appeared = ctx2.observation(&ns_name, &name).is_none();
                // A gone pool is forgotten before anything it wakes can read it.
                if deleted {
                    ctx2.forget(&ns_name, &name);
                }
                // Only a pool that appears or goes changes the others' routes (not its status).
                if deleted || appeared {
                    w.all_in(ns.clone());
                }
                if !changes.changed(p, deleted) {
                    return;
                }
                for b in ctx2.stores.bridges.state() {
                    if b.namespace() == ns && pool_of(&b.spec.pool) == name {
                        let _closed = bridges_tx.unbounded_send(ObjectRef::from_obj(b.as_ref()));
                    }
                }
                for pl in ctx2.stores.plugins.state() {
                    if pl.namespace() == ns {
                        let _closed = plugins_tx.unbounded_send(ObjectRef::from_obj(pl.as_ref()));
                    }
                }
            }),
        );
    }
    // Bridges and Plugins: every pool of the namespace may render them (a bridge that moved
    // pools must leave the old one; an unplaced plugin loads wherever it is used).
    {
        let w = waker.clone();
        drive(
            scoped_api::<Bridge>(&client, ns),
            all.clone(),
            bridges_w,
            "Bridge",
            Box::new(move |b: &Bridge, _| w.all_in(b.namespace())),
        );
        let w = waker.clone();
        drive(
            scoped_api::<Plugin>(&client, ns),
            all.clone(),
            plugins_w,
            "Plugin",
            Box::new(move |p: &Plugin, _| w.all_in(p.namespace())),
        );
        // Worker pods: readiness feeds status, and IPs feed the other pools' routes.
        let w = waker.clone();
        drive(
            scoped_api::<Pod>(&client, ns),
            managed.clone(),
            pods_w,
            "Pod",
            Box::new(move |p: &Pod, _| w.all_in(p.namespace())),
        );
    }
    // Optional children: their owner pool.
    {
        let w = waker.clone();
        drive(
            scoped_api::<PersistentVolumeClaim>(&client, ns),
            managed.clone(),
            claims_w,
            "PersistentVolumeClaim",
            Box::new(move |o: &PersistentVolumeClaim, _| {
                w.owner_of(o.meta());
            }),
        );
        let w = waker.clone();
        drive(
            scoped_api::<PodDisruptionBudget>(&client, ns),
            managed.clone(),
            budgets_w,
            "PodDisruptionBudget",
            Box::new(move |o: &PodDisruptionBudget, _| {
                w.owner_of(o.meta());
            }),
        );
        let w = waker.clone();
        drive(
            scoped_api::<HorizontalPodAutoscaler>(&client, ns),
            managed.clone(),
            autoscalers_w,
            "HorizontalPodAutoscaler",
            Box::new(move |o: &HorizontalPodAutoscaler, _| {
                w.owner_of(o.meta());
            }),
        );
        let w = waker.clone();
        drive(
            scoped_api::<ServiceAccount>(&client, ns),
            managed.clone(),
            sas_w,
            "ServiceAccount",
            Box::new(move |o: &ServiceAccount, _| {
                w.owner_of(o.meta());
            }),
        );
        let w = waker.clone();
        drive(
            scoped_api::<NetworkPolicy>(&client, ns),
            managed.clone(),
            nps_w,
            "NetworkPolicy",
            Box::new(move |o: &NetworkPolicy, _| {
                w.owner_of(o.meta());
            }),
        );
    }
    // ReplicaSets and Deployments, metadata only: the owner chain that makes a pod a
    // worker of a pool (a label alone does not). A new ReplicaSet wakes the pools of its
    // namespace, whose pods it now vouches for.
    {
        let w = waker.clone();
        drive(
            scoped_api::<PartialObjectMeta<ReplicaSet>>(&client, ns),
            managed.clone(),
            rs_w,
            "ReplicaSet",
            Box::new(move |o: &PartialObjectMeta<ReplicaSet>, _| {
                w.all_in(o.metadata.namespace.clone())
            }),
        );
        let w = waker.clone();
        drive(
            scoped_api::<PartialObjectMeta<Deployment>>(&client, ns),
            managed.clone(),
            deploy_w,
            "Deployment",
            Box::new(move |o: &PartialObjectMeta<Deployment>, _| {
                w.owner_of(&o.metadata);
            }),
        );
    }
    // Secrets and ConfigMaps, metadata only (no Secret data is cached): ours go to their
    // owner pool; the users' to every pool of the namespace, which re-render if they refer
    // to them.
    {
        let w = waker.clone();
        let secrets = watcher(
            scoped_api::<PartialObjectMeta<Secret>>(&client, ns),
            all.clone(),
        )
        .default_backoff();
        spawn_events(
            secrets,
            "Secret",
            Box::new(move |s: &PartialObjectMeta<Secret>, _| {
                let ours = s
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(MANAGED_BY_LABEL))
                    .is_some();
                if !w.owner_of(&s.metadata) && !ours {
                    w.all_in(s.metadata.namespace.clone());
                }
            }),
        );
        let w = waker.clone();
        let cms = watcher(
            scoped_api::<PartialObjectMeta<ConfigMap>>(&client, ns),
            all.clone(),
        )
        .default_backoff();
        spawn_events(
            cms,
            "ConfigMap",
            Box::new(move |c: &PartialObjectMeta<ConfigMap>, _| {
                w.all_in(c.metadata.namespace.clone())
            }),
        );
    }

    // Mark synced once every store has listed. A store that has not listed after a while is
    // named in a warning (and again every 30 s), so a stuck watch is visible in the log.
    //
    // The stores are polled, not awaited: `Store::wait_until_ready` wakes only the task that
    // polled it last (one oneshot waker per store), and each controller waits on the same
    // store. Awaiting it here too lost the race at random and left the operator unsynced for
    // good (seen on a fresh control plane). Polling `now_or_never` reads the flag instead.
    {
        let ctx2 = ctx.clone();
        let (p, b, pl, po) = (
            pools.clone(),
            bridges.clone(),
            plugins.clone(),
            pods.clone(),
        );
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut warned_at = Duration::ZERO;
            loop {
                let waiting: Vec<&'static str> = [
                    ("WorkerPool", p.wait_until_ready().now_or_never()),
                    ("Bridge", b.wait_until_ready().now_or_never()),
                    ("Plugin", pl.wait_until_ready().now_or_never()),
                    ("Pod", po.wait_until_ready().now_or_never()),
                    ("PersistentVolumeClaim", claims.wait_until_ready().now_or_never()),
                    ("PodDisruptionBudget", budgets.wait_until_ready().now_or_never()),
                    ("HorizontalPodAutoscaler", autoscalers.wait_until_ready().now_or_never()),
                    ("ServiceAccount", service_accounts.wait_until_ready().now_or_never()),
                    ("NetworkPolicy", network_policies.wait_until_ready().now_or_never()),
                    ("ReplicaSet", replica_sets.wait_until_ready().now_or_never()),
                    ("Deployment", deployments.wait_until_ready().now_or_never()),
                ]
                .into_iter()
                .filter_map(|(kind, r)| match r {
                    Some(Ok(())) => None,
                    Some(Err(e)) => {
                        tracing::error!(kind, error = %e, "a cache writer stopped before it listed");
                        Some(kind)
                    }
                    None => Some(kind),
                })
                .collect();
                if waiting.is_empty() {
                    break;
                }
                let elapsed = started.elapsed();
                if elapsed
                    >= warned_at + Duration::from_secs(if warned_at.is_zero() { 10 } else { 30 })
                {
                    warned_at = elapsed;
                    tracing::warn!(waiting = ?waiting, after_s = elapsed.as_secs(), "caches not listed yet; not reconciling");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ctx2.synced.store(true, Ordering::SeqCst);
            tracing::info!(
                after_ms = started.elapsed().as_millis() as u64,
                "caches synced; reconciling"
            );
        });
    }

    // Bounded concurrency: each reconcile that writes holds an HTTP connection to the API
    // server, and a burst of 1,000 Bridges reconciled at once opened hundreds of them, whose
    // buffers were most of the operator's memory (`docs/operator.md`, "Memory at scale").
    let config = || ControllerConfig::default().concurrency(ctx.settings.reconcile_concurrency);
    // A pool's own status writes do not reconcile it again (the same rule as above, with a
    // memory of its own: both see every version).
    let pool_changes = super::changes::Changes::default();
    let pool_trigger =
        pool_trigger.filter(move |p| std::future::ready(pool_changes.changed(p.as_ref(), false)));
    let pool_ctrl = Controller::for_shared_stream(pool_trigger, pools)
        .with_config(config())
        .owns(scoped_api::<Deployment>(&client, ns), managed.clone())
        .owns(scoped_api::<Service>(&client, ns), managed.clone())
        .owns(scoped_api::<Role>(&client, ns), managed.clone())
        .owns(scoped_api::<RoleBinding>(&client, ns), managed.clone())
        .reconcile_on(super::coalesce::spawn(
            wake_pools_rx,
            ctx.settings.render_batch,
        ))
        .run(
            reconcile_pool,
            error_policy::<WorkerPool>("workerpool"),
            ctx.clone(),
        )
        .for_each(|r| async move { log_result(r) });
    let bridge_ctrl = Controller::for_shared_stream(bridge_trigger, bridges)
        .with_config(config())
        .reconcile_on(wake_bridges_rx)
        .run(
            reconcile_bridge,
            error_policy::<Bridge>("bridge"),
            ctx.clone(),
        )
        .for_each(|r| async move { log_result(r) });
    let plugin_ctrl = Controller::for_shared_stream(plugin_trigger, plugins)
        .with_config(config())
        .reconcile_on(wake_plugins_rx)
        .run(
            reconcile_plugin,
            error_policy::<Plugin>("plugin"),
            ctx.clone(),
        )
        .for_each(|r| async move { log_result(r) });

    tokio::select! {
        _ = futures::future::join3(pool_ctrl, bridge_ctrl, plugin_ctrl) => {}
        _ = shutdown => tracing::info!("shutting down controllers"),
    }
    Ok(())
}

fn log_result<K: Resource, E: std::fmt::Display>(r: Result<(ObjectRef<K>, Action), E>) {
    match r {
        Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
        Err(e) => tracing::debug!(error = %e, "reconcile did not run or failed"),
    }
}

/// Reconcile errors: a metric, a log line, a deduplicated Warning Event, and a backoff.
fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    move |obj: Arc<K>, err: &Error, ctx: Arc<Context>| {
        ctx.metrics.failed(controller, err.metric_label());
        tracing::warn!(controller, object = %obj.meta().name.clone().unwrap_or_default(), error = %err, "reconcile failed");
        let note = err.to_string();
        tokio::spawn(async move {
            publish(
                &ctx.recorder,
                obj.as_ref(),
                EventType::Warning,
                "ReconcileFailed",
                "Reconcile",
                note,
            )
            .await;
        });
        Action::requeue(Duration::from_secs(15))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 12 item 19: with watched namespaces every watch and list is namespaced, so the
    // operator needs Roles in those namespaces only.
    #[tokio::test]
    async fn item19_a_watched_namespace_scopes_every_api() {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = Client::new(service, "default");
        let api = scoped_api::<Pod>(&client, Some("team-a"));
        assert_eq!(api.namespace(), Some("team-a"));
        assert_eq!(api.resource_url(), "/api/v1/namespaces/team-a/pods");
        let api = scoped_api::<PartialObjectMeta<Secret>>(&client, Some("team-a"));
        assert_eq!(api.resource_url(), "/api/v1/namespaces/team-a/secrets");
        let api = scoped_api::<WorkerPool>(&client, None);
        assert_eq!(api.namespace(), None);
        assert_eq!(
            api.resource_url(),
            "/apis/causeway.dev/v1alpha1/workerpools"
        );
    }
}
