//! The WorkerPool reconciler: guard → render → build (pure) → apply → observe → status.

use std::sync::Arc;

use causeway_crds::common::{condition, is_true, reason};
use causeway_crds::config::{RenderContext, Scope, SecretValue, render};
use causeway_crds::pool::StorageType;
use causeway_crds::{Bridge, Plugin, WorkerPool};
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use rand::RngCore;

use super::apply::{apply, apply_status, delete_unwanted, publish};
use super::inventory::{Owners, inventory, is_ready, is_running, pod_ip, pods_of, pool_endpoints};
use super::{Context, Error};
use crate::builders::{
    self, BuildError, INTERNAL_TOKEN_SECRET, PoolView, TOKEN_KEY, admin_secret_name,
};
use crate::status::{PodObservation, PoolObservation, pool_status};

/// Now, to the second (what the API server keeps).
pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now()))
}

/// Reconcile one WorkerPool.
pub async fn reconcile_pool(pool: Arc<WorkerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start("workerpool");
    if !ctx.is_synced() {
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    }
    let name = pool.name_any();
    let ns = pool.namespace().ok_or_else(|| Error::NoNamespace {
        kind: "WorkerPool".into(),
        name: name.clone(),
    })?;
    if pool.meta().deletion_timestamp.is_some() {
        // Children carry owner references: garbage collection removes them.
        ctx.forget(&ns, &name);
        return Ok(Action::await_change());
    }
    let now = now();
    let view = match PoolView::new(&pool) {
        Ok(v) => v,
        Err(e @ BuildError::NameTooLong(_)) => {
            write_status(
                &ctx,
                &pool,
                None,
                Some((reason::INVALID_SPEC, e.to_string())),
                &now,
            )
            .await?;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(errs) = causeway_crds::validate::validate_pool(&pool.spec) {
        let message = errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        write_status(
            &ctx,
            &pool,
            None,
            Some((reason::INVALID_SPEC, message)),
            &now,
        )
        .await?;
        return Ok(Action::await_change());
    }
    if let Some(sa_name) = &pool.spec.service_account_name {
        // The config Role is bound only to an account that opted in. Labels on accounts the
        // operator did not create are not watched: poll until it does.
        let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
        let sa = api.get_opt(sa_name).await.map_err(|source| Error::Kube {
            verb: "get",
            kind: "ServiceAccount".into(),
            namespace: ns.clone(),
            name: sa_name.clone(),
            source,
        })?;
        if let Err(message) = builders::service_account_opted_in(&name, sa_name, sa.as_ref()) {
            let previous = ctx.observation(&ns, &name);
            write_status(
                &ctx,
                &pool,
                previous.as_deref(),
                Some((reason::SERVICE_ACCOUNT_NOT_OPTED_IN, message)),
                &now,
            )
            .await?;
            return Ok(Action::requeue(ctx.settings.requeue_converged));
        }
    }
    if pool.spec.storage.type_ == StorageType::Postgres
        && let Some(pg) = &pool.spec.storage.postgres
    {
        // The worker gets this Secret through its pod spec (the kubelet reads it), so the
        // operator would hand any Secret of the namespace to the worker: same opt-in as a
        // Bridge's. Metadata only; the value is never read here.
        let secret_name = &pg.url_secret_ref.name;
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let meta = api
            .get_metadata_opt(secret_name)
            .await
            .map_err(|source| Error::Kube {
                verb: "get",
                kind: "Secret".into(),
                namespace: ns.clone(),
                name: secret_name.clone(),
                source,
            })?;
        if let Some((why, message)) =
            postgres_secret_problem(&ns, secret_name, meta.as_ref().map(|m| &m.metadata))
        {
            let previous = ctx.observation(&ns, &name);
            write_status(&ctx, &pool, previous.as_deref(), Some((why, message)), &now).await?;
            return Ok(Action::requeue(ctx.settings.requeue_converged));
        }
    }

    let obs = match converge(&ctx, &pool, &view).await {
        Ok(obs) => obs,
        Err(e) => {
            // Say so on the pool, then let the error policy back off and publish a Warning.
            let previous = ctx.observation(&ns, &name);
            if let Err(status_err) = write_status(
                &ctx,
                &pool,
                previous.as_deref(),
                Some((e.pool_reason(), e.to_string())),
                &now,
            )
            .await
            {
                tracing::warn!(error = %status_err, pool = %name, "could not write pool status");
            }
            return Err(e);
        }
    };

    if pool
        .status
        .as_ref()
        .and_then(|s| s.config_version.as_deref())
        != Some(obs.desired_version.as_str())
    {
        let note = format!(
            "config version {}: {} bridges, {} plugins, {} problems",
            obs.desired_version,
            obs.bridges.len(),
            obs.plugins.len(),
            obs.problems.len()
        );
        publish(
            &ctx.recorder,
            pool.as_ref(),
            EventType::Normal,
            "ConfigRendered",
            "Render",
            note,
        )
        .await;
    }
    let obs = Arc::new(obs);
    if ctx.set_observation(obs.clone()) {
        ctx.wake_dependents(&obs);
    }
    let status = write_status(&ctx, &pool, Some(obs.as_ref()), None, &now).await?;
    // A Bridge of this pool that drains waits for the workers' count of its jobs left:
    // poll them as for a pool that has not converged.
    let draining = ctx.stores.bridges.state().iter().any(|b| {
        b.namespace().as_deref() == Some(ns.as_str())
            && causeway_crds::config::pool_of(&b.spec.pool) == name
            && causeway_crds::config::being_deleted(b)
    });
    let converged = is_true(&status.conditions, condition::READY) && !draining;
    Ok(Action::requeue(if converged {
        ctx.settings.requeue_converged
    } else {
        ctx.settings.requeue_pending
    }))
}

/// Compute and, when it changed, write the pool's status; publish an Event when Ready flips.
async fn write_status(
    ctx: &Context,
    pool: &WorkerPool,
    obs: Option<&PoolObservation>,
    failure: Option<(&str, String)>,
    now: &Time,
) -> Result<causeway_crds::WorkerPoolStatus, Error> {
    let status = pool_status(pool, obs, failure, now);
    if pool.status.as_ref() != Some(&status) {
        apply_status(&ctx.client, pool, &status).await?;
        ctx.metrics
            .status_writes
            .with_label_values(&["workerpool"])
            .inc();
        let old = pool
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == condition::READY));
        let new = status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::READY);
        if let Some(new) = new
            && old.map(|o| (&o.status, &o.reason)) != Some((&new.status, &new.reason))
        {
            let type_ = if new.status == "True" || new.reason == reason::PENDING {
                EventType::Normal
            } else {
                EventType::Warning
            };
            publish(
                &ctx.recorder,
                pool,
                type_,
                &new.reason,
                "Reconcile",
                new.message.clone(),
            )
            .await;
        }
    }
    Ok(status)
}

/// Everything but the status: render, apply the children, observe the workers.
async fn converge(
    ctx: &Context,
    pool: &WorkerPool,
    view: &PoolView<'_>,
) -> Result<PoolObservation, Error> {
    let (ns, name) = (view.namespace.clone(), view.name.clone());
    let in_ns = |o: Option<String>| o.as_deref() == Some(ns.as_str());
    let pools: Vec<Arc<WorkerPool>> = ctx
        .stores
        .pools
        .state()
        .into_iter()
        .filter(|p| in_ns(p.namespace()))
        .collect();
    let bridges: Vec<Arc<Bridge>> = ctx
        .stores
        .bridges
        .state()
        .into_iter()
        .filter(|b| in_ns(b.namespace()))
        .collect();
    let plugins: Vec<Arc<Plugin>> = ctx
        .stores
        .plugins
        .state()
        .into_iter()
        .filter(|p| in_ns(p.namespace()))
        .collect();

    // Tokens: kept in Secrets the operator owns, generated once.
    let owners = pools
        .iter()
        .filter_map(|p| p.controller_owner_ref(&()))
        .collect::<Vec<_>>();
    let internal = ensure_token(ctx, &ns, INTERNAL_TOKEN_SECRET, |t| {
        builders::internal_token_secret(&ns, owners.clone(), t)
    })
    .await?;
    let admin = ensure_token(ctx, &ns, &admin_secret_name(&name), |t| {
        builders::token_secret(view, t)
    })
    .await?;

    // Render.
    let inv = inventory(
        &ctx.client,
        &ns,
        pools.clone(),
        bridges.clone(),
        plugins.clone(),
    )
    .await?;
    let all_pods = ctx.stores.pods.state();
    let owners = Owners::new(
        &ctx.stores.replica_sets.state(),
        &ctx.stores.deployments.state(),
    );
    let pool_uids = pools
        .iter()
        .filter_map(|p| Some((p.uid()?, p.name_any())))
        .collect();
    let rctx = RenderContext {
        internal_tokens: [(ns.clone(), SecretValue(internal))].into(),
        admin_token: Some(SecretValue(admin.clone())),
        // No endpoints: the render names each other pool's internal Service.
        pool_endpoints: match ctx.settings.pool_routing {
            crate::cli::PoolRouting::PodIps => {
                pool_endpoints(&all_pods, &owners, &pool_uids, &ns, &name)
            }
            crate::cli::PoolRouting::Service => Default::default(),
        },
    };
    let rendered = render(
        &inv,
        &Scope::Pool {
            namespace: ns.clone(),
            name: name.clone(),
        },
        &rctx,
    );

    // Built before anything is applied: a config too large for its Secret stops here, and
    // the workers keep the one they run.
    let config_secret = builders::config_secret(view, &rendered.config)?;
    ctx.metrics.renders.inc();

    // Apply the children, config first so that new pods start on it.
    let children = builders::children(view, &ctx.settings.build);
    if let Some(sa) = &children.service_account {
        apply(&ctx.client, sa).await?;
    }
    apply(&ctx.client, &children.role).await?;
    apply(&ctx.client, &children.role_binding).await?;
    apply(&ctx.client, &config_secret).await?;
    drop(config_secret);
    if let Some(pvc) = &children.data_claim {
        apply(&ctx.client, pvc).await?;
    }
    apply(&ctx.client, &children.deployment).await?;
    apply(&ctx.client, &children.service).await?;
    apply(&ctx.client, &children.internal_service).await?;
    if let Some(pdb) = &children.disruption_budget {
        apply(&ctx.client, pdb).await?;
    }
    if let Some(hpa) = &children.autoscaler {
        apply(&ctx.client, hpa).await?;
    }
    if let Some(np) = &children.network_policy {
        apply(&ctx.client, np).await?;
    }

    // Orphans: optional children no longer wanted (PVC after a switch to postgres, …).
    let uid = view.owner.uid.as_str();
    let kept = |o: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
        o.and_then(|m| m.name.clone())
    };
    let keep_claim = kept(children.data_claim.as_ref().map(|o| &o.metadata));
    let keep_pdb = kept(children.disruption_budget.as_ref().map(|o| &o.metadata));
    let keep_hpa = kept(children.autoscaler.as_ref().map(|o| &o.metadata));
    let keep_sa = kept(children.service_account.as_ref().map(|o| &o.metadata));
    let keep_np = kept(children.network_policy.as_ref().map(|o| &o.metadata));
    let mut deleted = Vec::new();
    // A retained claim has no owner, so it is never among these; `Delete` lets a claim go
    // when the pool switches to postgres.
    if view
        .pool
        .spec
        .persistent_volume_claim_retention_policy
        .when_deleted
        == causeway_crds::pool::PvcRetention::Delete
    {
        deleted.extend(
            delete_unwanted(
                &ctx.client,
                &ctx.stores.claims,
                &ns,
                uid,
                keep_claim.as_deref(),
            )
            .await?,
        );
    }
    deleted.extend(
        delete_unwanted(
            &ctx.client,
            &ctx.stores.budgets,
            &ns,
            uid,
            keep_pdb.as_deref(),
        )
        .await?,
    );
    deleted.extend(
        delete_unwanted(
            &ctx.client,
            &ctx.stores.autoscalers,
            &ns,
            uid,
            keep_hpa.as_deref(),
        )
        .await?,
    );
    deleted.extend(
        delete_unwanted(
            &ctx.client,
            &ctx.stores.service_accounts,
            &ns,
            uid,
            keep_sa.as_deref(),
        )
        .await?,
    );
    deleted.extend(
        delete_unwanted(
            &ctx.client,
            &ctx.stores.network_policies,
            &ns,
            uid,
            keep_np.as_deref(),
        )
        .await?,
    );
    if !deleted.is_empty() {
        publish(
            &ctx.recorder,
            pool,
            EventType::Normal,
            "OrphansDeleted",
            "Delete",
            format!("deleted {}", deleted.join(", ")),
        )
        .await;
    }

    // Observe: ask every running pod what it runs. Pods that are not ready are asked too:
    // one whose store is unreachable fails its readiness probe, and its report says why.
    let pods = pods_of(&all_pods, &owners, &ns, &view.owner.uid);
    let reports = join_all(pods.iter().map(|p| {
        let ip = pod_ip(p).filter(|_| is_running(p));
        let api = ctx.admin.clone();
        let token = admin.clone();
        async move {
            match ip {
                Some(ip) => Some(api.config(&ip, &token).await),
                None => None,
            }
        }
    }))
    .await;
    let bridge_refs: Vec<&Bridge> = bridges.iter().map(|b| b.as_ref()).collect();
    let plugin_refs: Vec<&Plugin> = plugins.iter().map(|p| p.as_ref()).collect();
    let mut obs = PoolObservation::from_render(
        &ns,
        &name,
        &rendered.config,
        rendered.problems,
        &bridge_refs,
        &plugin_refs,
    );
    obs.pods = pods
        .iter()
        .zip(reports)
        .map(|(p, report)| {
            PodObservation {
                name: p.name_any(),
                ip: pod_ip(p),
                ready: is_ready(p),
                report,
                index: Default::default(),
            }
            .indexed()
        })
        .collect();
    obs.store = Some(pool.spec.storage.type_);
    Ok(obs)
}

/// Read the token from its Secret, or generate one; then apply the Secret (which keeps its
/// labels and owners current). The value never changes once written.
async fn ensure_token(
    ctx: &Context,
    ns: &str,
    name: &str,
    build: impl Fn(&str) -> Secret,
) -> Result<String, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let existing = api.get_opt(name).await.map_err(|source| Error::Kube {
        verb: "get",
        kind: "Secret".into(),
        namespace: ns.into(),
        name: name.into(),
        source,
    })?;
    let token = usable_token(existing).unwrap_or_else(new_token);
    apply(&ctx.client, &build(&token)).await?;
    Ok(token)
}

/// Why the pool's postgres URL Secret may not be used, if it may not: missing, or not opted
/// in with `causeway.dev/use: "true"`.
pub fn postgres_secret_problem(
    ns: &str,
    name: &str,
    meta: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> Option<(&'static str, String)> {
    let label = causeway_crds::common::SECRET_OPT_IN_LABEL;
    match meta {
        None => Some((
            reason::SECRET_NOT_FOUND,
            format!(
                "Secret {name:?} (spec.storage.postgres.urlSecretRef) not found in namespace {ns}"
            ),
        )),
        Some(m) if !causeway_crds::common::secret_opted_in(m.labels.as_ref()) => Some((
            reason::SECRET_NOT_OPTED_IN,
            format!(
                "Secret {name:?} (spec.storage.postgres.urlSecretRef) is not opted in for use by Causeway: add the label \
                 {label}: \"true\" to it (kubectl label secret -n {ns} {name} {label}=true)"
            ),
        )),
        Some(_) => None,
    }
}

/// The token a token Secret holds, if it is usable: present, UTF-8, and not empty or blank
/// (an empty admin token would switch the workers' admin auth off, so it counts as missing
/// and a new one is generated).
pub fn usable_token(secret: Option<Secret>) -> Option<String> {
    secret
        .and_then(|s| s.data)
        .and_then(|d| d.get(TOKEN_KEY).cloned())
        .and_then(|b| String::from_utf8(b.0).ok())
        .filter(|t| !t.trim().is_empty())
}

/// 32 random bytes, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
