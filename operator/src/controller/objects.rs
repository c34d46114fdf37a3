//! The Bridge and Plugin reconcilers: create the `default` pool on demand and fold the
//! pools' observations into status. They never render or touch workers themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use causeway_crds::common::{DEFAULT_POOL, condition, reason};
use causeway_crds::config::pool_of;
use causeway_crds::{Bridge, Plugin, WorkerPool};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::apply::{apply_status, publish};
use super::finalizer::{has_finalizer, set_finalizer};
use super::pool::now;
use super::{Context, Error};
use crate::builders::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL};
use crate::status::deletion::{DrainStep, drain_step, end_event};
use crate::status::{PoolObservation, bridge_status, plugin_status};

/// Reconcile one Bridge's status.
pub async fn reconcile_bridge(bridge: Arc<Bridge>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start("bridge");
    if !ctx.is_synced() {
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    }
    let name = bridge.name_any();
    let ns = bridge.namespace().ok_or_else(|| Error::NoNamespace {
        kind: "Bridge".into(),
        name: name.clone(),
    })?;
    if bridge.meta().deletion_timestamp.is_some() {
        return drain(&bridge, &ns, &ctx).await;
    }
    if !has_finalizer(&bridge) {
        // Before anything else: a Bridge deleted from here on drains.
        if !set_finalizer(&ctx.client, &bridge, true).await? {
            return Ok(Action::requeue(CONFLICT_RETRY));
        }
    }
    let pool = pool_of(&bridge.spec.pool).to_string();
    let exists = ctx
        .stores
        .pools
        .get(&ObjectRef::new(&pool).within(&ns))
        .is_some();
    if !exists && pool == DEFAULT_POOL && ensure_default_pool(&ctx, &ns).await? {
        publish(
            &ctx.recorder,
            bridge.as_ref(),
            EventType::Normal,
            "DefaultPoolCreated",
            "Create",
            format!("created WorkerPool {DEFAULT_POOL}"),
        )
        .await;
    }
    let obs = ctx.observation(&ns, &pool);
    let Some(status) = bridge_status(&bridge, exists, obs.as_deref(), &now()) else {
        // The pool has not rendered this generation yet; it wakes us when it has.
        return Ok(Action::requeue(ctx.settings.requeue_converged));
    };
    if bridge.status.as_ref() != Some(&status) {
        apply_status(&ctx.client, bridge.as_ref(), &status).await?;
        ctx.metrics
            .status_writes
            .with_label_values(&["bridge"])
            .inc();
        let old = bridge
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        announce(&ctx, bridge.as_ref(), old, &status.conditions).await;
    }
    // Pending or not, a Bridge does not poll: its status changes only with its pool's
    // observation, and the pool (which polls its workers while they catch up) wakes the
    // Bridges whose status that changes. 10,000 pending Bridges polling every 5 s were
    // 2,000 reconciles a second that wrote nothing.
    Ok(Action::requeue(ctx.settings.requeue_converged))
}

/// How soon a finalizer write that met a newer object is tried again.
const CONFLICT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A Bridge being deleted: drain it ([`crate::status::deletion`]), then let it go.
async fn drain(bridge: &Bridge, ns: &str, ctx: &Context) -> Result<Action, Error> {
    if !has_finalizer(bridge) {
        // Not ours to hold (another finalizer keeps it): it has left its pool's config.
        return Ok(Action::await_change());
    }
    let pool = pool_of(&bridge.spec.pool).to_string();
    let pool_live = ctx
        .stores
        .pools
        .get(&ObjectRef::new(&pool).within(ns))
        .is_some_and(|p| p.meta().deletion_timestamp.is_none());
    let obs = ctx.observation(ns, &pool);
    match drain_step(
        bridge,
        pool_live,
        obs.as_deref(),
        &now(),
        ctx.settings.requeue_pending,
    ) {
        DrainStep::Wait { status, recheck } => {
            if bridge.status.as_ref() != Some(status.as_ref()) {
                let first = bridge
                    .status
                    .as_ref()
                    .and_then(|s| s.deletion.as_ref())
                    .is_none();
                apply_status(&ctx.client, bridge, status.as_ref()).await?;
                ctx.metrics
                    .status_writes
                    .with_label_values(&["bridge"])
                    .inc();
                if first && let Some(d) = &status.deletion {
                    let left = d.pending_jobs.map_or("its queued jobs".to_string(), |n| {
                        format!("{n} queued jobs")
                    });
                    let until = d
                        .deadline
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default();
                    publish(
                        &ctx.recorder,
                        bridge,
                        EventType::Normal,
                        reason::DRAINING,
                        "Delete",
                        format!(
                            "being deleted: new events get 410 Gone; draining {left} until {until}"
                        ),
                    )
                    .await;
                }
            }
            Ok(Action::requeue(recheck))
        }
        DrainStep::End(end) => {
            if !set_finalizer(&ctx.client, bridge, false).await? {
                return Ok(Action::requeue(CONFLICT_RETRY));
            }
            let (warning, why, note) = end_event(bridge, &end);
            tracing::info!(bridge = %bridge.name_any(), namespace = %ns, reason = why, "{note}");
            // After the write, so that a retried removal does not announce twice. The
            // Event outlives the Bridge.
            publish(
                &ctx.recorder,
                bridge,
                if warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                why,
                "Delete",
                note,
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

/// Reconcile one Plugin's status.
pub async fn reconcile_plugin(plugin: Arc<Plugin>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start("plugin");
    if !ctx.is_synced() || plugin.meta().deletion_timestamp.is_some() {
        return Ok(if ctx.is_synced() {
            Action::await_change()
        } else {
            Action::requeue(std::time::Duration::from_secs(1))
        });
    }
    let name = plugin.name_any();
    let ns = plugin.namespace().ok_or_else(|| Error::NoNamespace {
        kind: "Plugin".into(),
        name: name.clone(),
    })?;
    let pools: BTreeSet<String> = ctx
        .stores
        .pools
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .map(|p| p.name_any())
        .collect();
    let wants_default = plugin.spec.pool.as_deref().unwrap_or(DEFAULT_POOL) == DEFAULT_POOL;
    if wants_default && !pools.contains(DEFAULT_POOL) && ensure_default_pool(&ctx, &ns).await? {
        publish(
            &ctx.recorder,
            plugin.as_ref(),
            EventType::Normal,
            "DefaultPoolCreated",
            "Create",
            format!("created WorkerPool {DEFAULT_POOL}"),
        )
        .await;
    }
    let observations: Vec<Arc<PoolObservation>> = ctx
        .observations_in(&ns)
        .into_iter()
        .filter(|o| pools.contains(&o.pool))
        .collect();
    let refs: Vec<&PoolObservation> = observations.iter().map(|o| o.as_ref()).collect();
    let Some(status) = plugin_status(&plugin, &pools, &refs, &now()) else {
        return Ok(Action::requeue(ctx.settings.requeue_converged));
    };
    if plugin.status.as_ref() != Some(&status) {
        apply_status(&ctx.client, plugin.as_ref(), &status).await?;
        ctx.metrics
            .status_writes
            .with_label_values(&["plugin"])
            .inc();
        let old = plugin
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        announce(&ctx, plugin.as_ref(), old, &status.conditions).await;
    }
    // As a Bridge, a pending Plugin does not poll: every pool of its namespace wakes it
    // when its observation changes (`Context::wake_dependents`).
    Ok(Action::requeue(ctx.settings.requeue_converged))
}

/// One Event per change of the Ready condition (status or reason), and of a Bridge's
/// DestinationsHealthy (a Warning when a destination is paused, Normal when all take
/// deliveries again; none for the first, healthy, report).
async fn announce<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    old: &[Condition],
    new: &[Condition],
) {
    for type_ in [condition::READY, condition::DESTINATIONS_HEALTHY] {
        let find = |c: &[Condition]| {
            c.iter()
                .find(|c| c.type_ == type_)
                .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        };
        let (Some(new), old) = (find(new), find(old)) else {
            continue;
        };
        if old.as_ref().map(|o| (&o.0, &o.1)) == Some((&new.0, &new.1)) {
            continue;
        }
        if type_ == condition::DESTINATIONS_HEALTHY && old.is_none() && new.0 == "True" {
            continue;
        }
        let event_type =
            if new.0 == "True" || new.1 == reason::PENDING || new.1 == reason::SUSPENDED {
                EventType::Normal
            } else {
                EventType::Warning
            };
        publish(&ctx.recorder, obj, event_type, &new.1, "Reconcile", new.2).await;
    }
}

/// Create the namespace's `default` WorkerPool with the operator's defaults. A plain create
/// (not an apply) so that a pool the user already wrote is never overwritten; 409 is fine.
/// Returns true when this call created it.
pub async fn ensure_default_pool(ctx: &Context, ns: &str) -> Result<bool, Error> {
    let api: Api<WorkerPool> = Api::namespaced(ctx.client.clone(), ns);
    let pool = WorkerPool {
        metadata: ObjectMeta {
            name: Some(DEFAULT_POOL.into()),
            namespace: Some(ns.into()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: ctx.settings.default_pool.spec(),
        status: None,
    };
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&pp, &pool).await {
        Ok(_) => {
            tracing::info!(namespace = %ns, "created WorkerPool default");
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(source) => Err(Error::Kube {
            verb: "create",
            kind: "WorkerPool".into(),
            namespace: ns.into(),
            name: DEFAULT_POOL.into(),
            source,
        }),
    }
}
