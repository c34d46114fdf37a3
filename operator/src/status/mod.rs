//! Status folding: what the pool reconciler observed (its render and each worker's admin
//! report) becomes the status of WorkerPools, Bridges and Plugins.
//!
//! Everything here is pure. The reconcilers call these functions and write the result only
//! when it differs from what the object already has.

pub mod deletion;
mod report;

use std::collections::{BTreeMap, BTreeSet};

use causeway_crds::bridge::DestinationStatus;
use causeway_crds::common::DEFAULT_POOL;
use causeway_crds::common::{condition, make_condition, reason, set_condition};
use causeway_crds::config::{
    INGRESS_PORT, Kind, ObjectKey, Problem, SourceConfig, WorkerConfig, bridge_path, pool_of,
};
use causeway_crds::pool::StorageType;
use causeway_crds::{Bridge, BridgeStatus, Plugin, PluginStatus, WorkerPool, WorkerPoolStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

pub use report::{
    BridgeReport, ItemError, PluginReport, StoreReport, WorkerReport, classify_plugin_error,
};

/// Reason on a pool whose children could not be applied.
pub const APPLY_FAILED: &str = "ApplyFailed";
/// Reason on a pool whose rendered config does not fit in its Secret even compressed; its
/// workers keep the previous config.
pub const CONFIG_TOO_LARGE: &str = "ConfigTooLarge";

/// One pod of a pool, as seen by the reconciler.
#[derive(Clone, Debug, PartialEq)]
pub struct PodObservation {
    pub name: String,
    pub ip: Option<String>,
    pub ready: bool,
    /// The admin report of a running pod, ready or not (a pod that is not ready because
    /// its store is unreachable says so here): `Err` holds why it could not be read. Only a
    /// ready pod's report counts for the bridges and plugins it serves.
    pub report: Option<Result<WorkerReport, String>>,
    /// Where each bridge is in the report's `bridges`, by `(namespace, name)`
    /// ([`PodObservation::indexed`]). Every Bridge reconcile looks up its own entry: a scan
    /// of a 10,000-bridge report per reconcile made each wake-up of a pool's Bridges cost
    /// 10,000². Empty: lookups scan.
    pub index: BTreeMap<(String, String), usize>,
}

impl PodObservation {
    /// Index the report's bridges (once per pool reconcile).
    pub fn indexed(mut self) -> Self {
        self.index = match &self.report {
            Some(Ok(r)) => r
                .bridges
                .iter()
                .enumerate()
                .map(|(i, b)| ((b.namespace.clone(), b.name.clone()), i))
                .collect(),
            _ => BTreeMap::new(),
        };
        self
    }

    /// The report of one bridge on this pod.
    pub fn bridge_report(&self, key: &ObjectKey) -> Option<&causeway_crds::config::BridgeReport> {
        let Some(Ok(report)) = &self.report else {
            return None;
        };
        if self.index.is_empty() {
            return report.bridge(key);
        }
        let i = *self.index.get(&(key.namespace.clone(), key.name.clone()))?;
        report.bridges.get(i)
    }

    /// What the pod says is wrong with its store, if anything.
    fn store_problem(&self) -> Option<&str> {
        match &self.report {
            Some(Ok(WorkerReport {
                store: Some(store), ..
            })) if !store.healthy => Some(store.message.as_str()),
            _ => None,
        }
    }
}

/// What a plugin was rendered as, for status.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedPlugin {
    pub generation: Option<i64>,
    /// The digest the config pins, when the source pins one.
    pub digest: Option<String>,
}

/// The last render of one pool and what its workers said about it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PoolObservation {
    pub namespace: String,
    pub pool: String,
    pub desired_version: String,
    /// Bridges in the rendered config: name → generation.
    pub bridges: BTreeMap<String, Option<i64>>,
    /// Plugins in the rendered config.
    pub plugins: BTreeMap<String, RenderedPlugin>,
    pub problems: Vec<Problem>,
    /// Generation of every Bridge and Plugin of the namespace when the pool rendered, so
    /// that a status is never computed from a render that predates the object's change.
    pub seen: BTreeMap<(Kind, String), Option<i64>>,
    pub pods: Vec<PodObservation>,
    /// The store the pool's Deployment was applied with.
    pub store: Option<StorageType>,
}

impl PoolObservation {
    /// Summarise a render.
    pub fn from_render(
        namespace: &str,
        pool: &str,
        config: &WorkerConfig,
        problems: Vec<Problem>,
        bridges: &[&Bridge],
        plugins: &[&Plugin],
    ) -> Self {
        let mut seen = BTreeMap::new();
        for b in bridges {
            seen.insert((Kind::Bridge, b.name_any()), b.metadata.generation);
        }
        for p in plugins {
            seen.insert((Kind::Plugin, p.name_any()), p.metadata.generation);
        }
        PoolObservation {
            namespace: namespace.to_string(),
            pool: pool.to_string(),
            desired_version: config.version.clone(),
            bridges: config
                .bridges
                .iter()
                .map(|b| (b.name.clone(), b.generation))
                .collect(),
            plugins: config
                .plugins
                .iter()
                .map(|p| {
                    let digest = match &p.source {
                        SourceConfig::Http { sha256, .. } | SourceConfig::Inline { sha256, .. } => {
                            Some(format!("sha256:{sha256}"))
                        }
                        SourceConfig::Oci { digest, .. } => digest.clone(),
                        SourceConfig::File { .. } => None,
                    };
                    (
                        p.name.clone(),
                        RenderedPlugin {
                            generation: p.generation,
                            digest,
                        },
                    )
                })
                .collect(),
            problems,
            seen,
            pods: Vec::new(),
            store: None,
        }
    }

    fn problem(&self, kind: Kind, name: &str) -> Option<&Problem> {
        self.problems
            .iter()
            .find(|p| p.kind == kind && p.name == name)
    }

    fn ready_pods(&self) -> impl Iterator<Item = &PodObservation> {
        self.pods.iter().filter(|p| p.ready)
    }

    /// Ready pods whose report says they run the desired version.
    pub fn pods_on_desired_version(&self) -> usize {
        self.ready_pods()
            .filter(|p| matches!(&p.report, Some(Ok(r)) if r.version == self.desired_version))
            .count()
    }
}

/// The replica count the pool should reach.
pub fn desired_replicas(pool: &WorkerPool) -> i32 {
    let spec = &pool.spec;
    match (&spec.storage.type_, &spec.autoscaling) {
        (StorageType::Embedded, _) => spec.replicas.clamp(0, 1),
        (StorageType::Postgres, Some(a)) => a.min_replicas,
        (StorageType::Postgres, None) => spec.replicas.max(0),
    }
}

/// Status of a WorkerPool. `failure` is a reason and message when the reconcile itself
/// failed (children not applied, invalid name).
pub fn pool_status(
    pool: &WorkerPool,
    obs: Option<&PoolObservation>,
    failure: Option<(&str, String)>,
    now: &Time,
) -> WorkerPoolStatus {
    let previous = pool.status.clone().unwrap_or_default();
    let generation_ = pool.metadata.generation;
    let (replicas, ready) = obs
        .map(|o| (o.pods.len() as i32, o.ready_pods().count() as i32))
        .unwrap_or((previous.replicas, previous.ready_replicas));
    let want = desired_replicas(pool);
    let (ok, why, message) = match (failure, obs) {
        (Some((r, m)), _) => (false, r.to_string(), m),
        (None, None) => (
            false,
            reason::PENDING.to_string(),
            "not rendered yet".to_string(),
        ),
        (None, Some(o)) => {
            let on_version = o.pods_on_desired_version() as i32;
            let store_problems: BTreeSet<&str> =
                o.pods.iter().filter_map(|p| p.store_problem()).collect();
            let store_down = o
                .pods
                .iter()
                .filter(|p| p.store_problem().is_some())
                .count();
            let unreachable: Vec<String> = o
                .ready_pods()
                .filter_map(|p| match &p.report {
                    Some(Err(e)) => Some(format!("{}: {e}", p.name)),
                    _ => None,
                })
                .collect();
            if want == 0 {
                (
                    true,
                    reason::READY.to_string(),
                    "scaled to zero".to_string(),
                )
            } else if store_down > 0 {
                // Before the count of ready pods: a worker whose store is unreachable is
                // not ready, and this says why. The workers' messages name the host, never
                // a password; identical ones (every replica on one database) appear once.
                (
                    false,
                    reason::STORE_UNAVAILABLE.to_string(),
                    format!(
                        "{store_down}/{} workers cannot use their store: {}",
                        o.pods.len(),
                        store_problems
                            .iter()
                            .take(3)
                            .copied()
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                )
            } else if ready < want {
                (
                    false,
                    reason::PENDING.to_string(),
                    format!("{ready}/{want} workers ready"),
                )
            } else if !unreachable.is_empty() {
                (
                    false,
                    reason::PENDING.to_string(),
                    format!("admin API not reachable: {}", unreachable.join("; ")),
                )
            } else if on_version < ready {
                (
                    false,
                    reason::PENDING.to_string(),
                    format!(
                        "{on_version}/{ready} ready workers run config version {}",
                        o.desired_version
                    ),
                )
            } else {
                (
                    true,
                    reason::READY.to_string(),
                    format!("{ready} workers run config version {}", o.desired_version),
                )
            }
        }
    };
    let mut conditions = previous.conditions.clone();
    set_condition(
        &mut conditions,
        make_condition(
            condition::READY,
            ok,
            &why,
            message,
            generation_,
            now.clone(),
            &previous.conditions,
        ),
    );
    WorkerPoolStatus {
        observed_generation: generation_,
        conditions,
        replicas,
        ready_replicas: ready,
        config_version: obs
            .map(|o| o.desired_version.clone())
            .or(previous.config_version),
        selector: Some(crate::builders::selector_string(&pool.name_any())),
        store: obs.and_then(|o| o.store).or(previous.store),
    }
}

/// How far one pod is with one item.
enum PodItem {
    Served,
    Waiting(String),
    Failed(String, String),
}

/// The plugins a bridge calls: its steps, and the hosts of its `http://<plugin>.internal`
/// destinations.
fn called_plugins(bridge: &Bridge) -> Vec<String> {
    let steps = bridge.spec.steps.iter().map(|s| s.plugin.clone());
    let internal = bridge.spec.destinations.iter().filter_map(|d| {
        let rest = d.url.strip_prefix("http://")?;
        let host = rest.split(['/', '?', ':']).next()?;
        let name = host.strip_suffix(".internal")?;
        (!name.is_empty() && !name.contains('.')).then(|| name.to_string())
    });
    let mut out: Vec<String> = steps.chain(internal).collect();
    out.dedup();
    out
}

fn bridge_on_pod(
    bridge: &Bridge,
    pod: &PodObservation,
    obs: &PoolObservation,
    key: &ObjectKey,
    generation_: Option<i64>,
) -> PodItem {
    let report = match &pod.report {
        None => return PodItem::Waiting(format!("pod {} not asked yet", pod.name)),
        Some(Err(e)) => return PodItem::Waiting(format!("pod {}: admin API: {e}", pod.name)),
        Some(Ok(r)) => r,
    };
    if let Some(item) = pod.bridge_report(key) {
        if let Some(err) = item
            .error
            .as_ref()
            .or(report.error_for(Kind::Bridge, key).map(|e| &e.message))
        {
            return PodItem::Failed(
                reason::LOAD_ERROR.into(),
                format!("pod {}: {err}", pod.name),
            );
        }
        // A plugin the bridge calls that this worker serves but has not loaded.
        for plugin in called_plugins(bridge) {
            let pkey = ObjectKey::new(&key.namespace, &plugin);
            if let Some(p) = report.plugin(&pkey)
                && (!p.ready || p.error.is_some())
            {
                let why = p.error.clone().unwrap_or_else(|| "not loaded yet".into());
                return PodItem::Failed(
                    reason::PLUGIN_NOT_READY.into(),
                    format!("pod {}: plugin {plugin} is not ready: {why}", pod.name),
                );
            }
        }
        return if item.generation == generation_
            || item.generation.is_none() && report.version == obs.desired_version
        {
            PodItem::Served
        } else {
            PodItem::Waiting(format!(
                "pod {} runs generation {}",
                pod.name,
                item.generation.map(|g| g.to_string()).unwrap_or_default()
            ))
        };
    }
    if let Some(err) = report.error_for(Kind::Bridge, key).map(|e| &e.message) {
        return PodItem::Failed(
            reason::LOAD_ERROR.into(),
            format!("pod {}: {err}", pod.name),
        );
    }
    if report.version == obs.desired_version && report.bridges.is_empty() {
        // A worker that reports only its version: the desired config contains the bridge.
        return PodItem::Served;
    }
    let version = if report.version.is_empty() {
        "none"
    } else {
        report.version.as_str()
    };
    PodItem::Waiting(format!("pod {} runs config version {version}", pod.name))
}

/// Status of a Bridge, or `None` when there is nothing current to say yet (the pool has not
/// rendered this generation): the caller then leaves the status alone.
pub fn bridge_status(
    bridge: &Bridge,
    pool_exists: bool,
    obs: Option<&PoolObservation>,
    now: &Time,
) -> Option<BridgeStatus> {
    let previous = bridge.status.clone().unwrap_or_default();
    let generation_ = bridge.metadata.generation;
    let name = bridge.name_any();
    let ns = bridge.namespace().unwrap_or_default();
    let pool = pool_of(&bridge.spec.pool).to_string();
    let key = ObjectKey::new(&ns, &name);

    let accepted: (bool, String, String);
    let ready: (bool, String, String);
    let mut config_version = previous.config_version.clone();
    let mut destinations: Option<Vec<DestinationStatus>> = None;
    if !pool_exists {
        let (r, m) = if pool == DEFAULT_POOL {
            (
                reason::PENDING,
                format!("creating WorkerPool {DEFAULT_POOL}"),
            )
        } else {
            (
                reason::POOL_NOT_FOUND,
                format!("WorkerPool {pool:?} not found in namespace {ns}"),
            )
        };
        accepted = (false, r.into(), m.clone());
        ready = (false, r.into(), m);
    } else {
        let obs = obs?;
        if obs.seen.get(&(Kind::Bridge, name.clone())) != Some(&generation_) {
            return None;
        }
        if let Some(p) = obs.problem(Kind::Bridge, &name) {
            accepted = (false, p.reason.clone(), p.message.clone());
            ready = accepted.clone();
        } else if obs.bridges.get(&name) == Some(&generation_) {
            if previous.observed_generation != generation_ || config_version.is_none() {
                config_version = Some(obs.desired_version.clone());
            }
            // The version that first rendered this generation, not the pool's latest: a
            // message that changed with every render of the pool rewrote the status of
            // every bridge in it each time (≈10 writes per bridge for 1,000 bridges applied
            // at once, bench scenario 7).
            let version = config_version
                .clone()
                .unwrap_or_else(|| obs.desired_version.clone());
            accepted = (
                true,
                condition::ACCEPTED.into(),
                format!("rendered into config version {version} of pool {pool}"),
            );
            if bridge.spec.suspend {
                ready = (
                    false,
                    reason::SUSPENDED.into(),
                    "suspended: not listening, deliveries held".into(),
                );
            } else {
                let pods: Vec<&PodObservation> = obs.ready_pods().collect();
                let states: Vec<PodItem> = pods
                    .iter()
                    .map(|p| bridge_on_pod(bridge, p, obs, &key, generation_))
                    .collect();
                ready = fold_items(&states, pods.len(), &pool, "bridge");
            }
            destinations = Some(destinations_on_pods(bridge, obs, &key));
        } else {
            return None;
        }
    }

    let mut conditions = previous.conditions.clone();
    set_condition(
        &mut conditions,
        make_condition(
            condition::ACCEPTED,
            accepted.0,
            &accepted.1,
            accepted.2,
            generation_,
            now.clone(),
            &previous.conditions,
        ),
    );
    set_condition(
        &mut conditions,
        make_condition(
            condition::READY,
            ready.0,
            &ready.1,
            ready.2,
            generation_,
            now.clone(),
            &previous.conditions,
        ),
    );
    let (destinations, destinations_at) = match destinations {
        None => (
            previous.destinations.clone(),
            previous.destinations_at.clone(),
        ),
        Some(now_seen) => {
            let healthy = destinations_health(&now_seen);
            set_condition(
                &mut conditions,
                make_condition(
                    condition::DESTINATIONS_HEALTHY,
                    healthy.0,
                    healthy.1,
                    healthy.2,
                    generation_,
                    now.clone(),
                    &previous.conditions,
                ),
            );
            counts_at_most_once_a_minute(&previous, now_seen, now)
        }
    };
    Some(BridgeStatus {
        observed_generation: generation_,
        destinations,
        destinations_at,
        deletion: None,
        conditions,
        url: Some(format!(
            "http://{}.{ns}.svc:{INGRESS_PORT}{}",
            crate::builders::object_name(&pool),
            bridge_path(bridge)
        )),
        pool: Some(pool),
        config_version,
    })
}

/// `DestinationsHealthy` from the destinations: False while one is paused (by a 410),
/// disabled (by its circuit breaker) or has its breaker open, naming each; the reason is
/// the gravest (disabled, then paused, then open).
fn destinations_health(seen: &[DestinationStatus]) -> (bool, &'static str, String) {
    use causeway_crds::config::DestinationReport as R;
    let names = |f: &dyn Fn(&DestinationStatus) -> bool| -> Vec<&str> {
        seen.iter()
            .filter(|d| f(d))
            .map(|d| d.name.as_str())
            .collect()
    };
    let disabled = names(&|d| d.paused && d.paused_reason.as_deref() == Some(R::DISABLED));
    let gone = names(&|d| d.paused && d.paused_reason.as_deref() != Some(R::DISABLED));
    let open = names(&|d| !d.paused && d.breaker.is_some());
    let resume = "jobs held until resumed (kubectl causeway destinations resume)";
    let mut parts = Vec::new();
    if !gone.is_empty() {
        parts.push(format!("paused by 410 Gone, {resume}: {}", gone.join(", ")));
    }
    if !disabled.is_empty() {
        parts.push(format!(
            "disabled by the circuit breaker after failing for its disableAfter, {resume}: {}",
            disabled.join(", ")
        ));
    }
    if !open.is_empty() {
        parts.push(format!(
            "circuit breaker open, jobs wait for its probe: {}",
            open.join(", ")
        ));
    }
    let reason = if !disabled.is_empty() {
        reason::DESTINATIONS_DISABLED
    } else if !gone.is_empty() {
        reason::DESTINATIONS_PAUSED
    } else if !open.is_empty() {
        reason::CIRCUIT_OPEN
    } else {
        return (
            true,
            reason::READY,
            "every destination takes deliveries".to_string(),
        );
    };
    (false, reason, parts.join("; "))
}

/// A bridge's destinations as its pool's ready workers report them: paused when any
/// worker has it paused, counts summed (each worker counts its own attempts). `pending` is
/// the largest any worker reports: with a shared store every worker sees the pool's queue.
fn destinations_on_pods(
    bridge: &Bridge,
    obs: &PoolObservation,
    key: &ObjectKey,
) -> Vec<DestinationStatus> {
    let mut out: Vec<DestinationStatus> = bridge
        .spec
        .destinations
        .iter()
        .map(|d| DestinationStatus {
            name: d.name.clone(),
            ..DestinationStatus::default()
        })
        .collect();
    for pod in obs.ready_pods() {
        let Some(item) = pod.bridge_report(key) else {
            continue;
        };
        for d in &item.destinations {
            if let Some(o) = out.iter_mut().find(|o| o.name == d.name) {
                o.paused |= d.paused;
                if d.paused
                    && o.paused_reason.as_deref()
                        != Some(causeway_crds::config::DestinationReport::DISABLED)
                {
                    o.paused_reason = d.paused_reason.clone();
                }
                // One breaker shared by the pool: open wins over a worker's stale half-open.
                if d.breaker.as_deref() == Some(causeway_crds::config::DestinationReport::OPEN)
                    || o.breaker.is_none()
                {
                    o.breaker = d.breaker.clone().or(o.breaker.take());
                }
                o.pending = o.pending.max(d.pending);
                o.delivered_last_hour += d.delivered;
                o.failed_last_hour += d.failed;
                o.dead_last_hour += d.dead;
            }
        }
    }
    out
}

/// The counts change with every delivery; writing them each time would write the status
/// of a busy bridge many times a second. They are taken at most once a minute; between
/// two takes only `paused` (rare, and urgent) and the set of destinations follow the
/// workers at once.
fn counts_at_most_once_a_minute(
    previous: &BridgeStatus,
    now_seen: Vec<DestinationStatus>,
    now: &Time,
) -> (Vec<DestinationStatus>, Option<Time>) {
    let counts = |d: &DestinationStatus| {
        (
            d.name.clone(),
            d.pending,
            d.delivered_last_hour,
            d.failed_last_hour,
            d.dead_last_hour,
        )
    };
    let unchanged = previous.destinations_at.is_some()
        && previous
            .destinations
            .iter()
            .map(counts)
            .eq(now_seen.iter().map(counts));
    if unchanged {
        // Nothing to tell: no new timestamp either, so an idle bridge is never rewritten.
        return (now_seen, previous.destinations_at.clone());
    }
    let fresh = previous
        .destinations_at
        .as_ref()
        .is_some_and(|at| now.0.as_second() - at.0.as_second() < 60);
    if !fresh {
        return (now_seen, Some(now.clone()));
    }
    let kept = now_seen
        .into_iter()
        .map(
            |d| match previous.destinations.iter().find(|p| p.name == d.name) {
                Some(p) => DestinationStatus {
                    paused: d.paused,
                    paused_reason: d.paused_reason,
                    breaker: d.breaker,
                    ..p.clone()
                },
                None => d,
            },
        )
        .collect();
    (kept, previous.destinations_at.clone())
}

fn fold_items(states: &[PodItem], pods: usize, pool: &str, what: &str) -> (bool, String, String) {
    if pods == 0 {
        return (
            false,
            reason::PENDING.into(),
            format!("no ready worker in pool {pool}"),
        );
    }
    if let Some((r, m)) = states.iter().find_map(|s| match s {
        PodItem::Failed(r, m) => Some((r.clone(), m.clone())),
        _ => None,
    }) {
        return (false, r, m);
    }
    let served = states
        .iter()
        .filter(|s| matches!(s, PodItem::Served))
        .count();
    if served == pods {
        return (
            true,
            reason::READY.into(),
            format!("served by {served}/{pods} ready workers of pool {pool}"),
        );
    }
    let waiting = states.iter().find_map(|s| match s {
        PodItem::Waiting(m) => Some(m.clone()),
        _ => None,
    });
    (
        false,
        reason::PENDING.into(),
        format!(
            "{what} served by {served}/{pods} ready workers of pool {pool}; {}",
            waiting.unwrap_or_default()
        ),
    )
}

fn plugin_on_pod<'a>(
    pod: &'a PodObservation,
    obs: &PoolObservation,
    key: &ObjectKey,
    generation_: Option<i64>,
) -> (PodItem, Option<&'a PluginReport>) {
    let report = match &pod.report {
        None => {
            return (
                PodItem::Waiting(format!("pod {} not asked yet", pod.name)),
                None,
            );
        }
        Some(Err(e)) => {
            return (
                PodItem::Waiting(format!("pod {}: admin API: {e}", pod.name)),
                None,
            );
        }
        Some(Ok(r)) => r,
    };
    let item = report.plugin(key);
    let listed = report.error_for(Kind::Plugin, key);
    let error = item
        .and_then(|i| i.error.clone())
        .or_else(|| listed.map(|e| e.message.clone()));
    if let Some(err) = error {
        let why = classify_plugin_error(listed.map(|e| e.reason.as_str()), &err);
        return (
            PodItem::Failed(why, format!("pool {} pod {}: {err}", obs.pool, pod.name)),
            item,
        );
    }
    match item {
        Some(i)
            if i.generation == generation_
                || i.generation.is_none() && report.version == obs.desired_version =>
        {
            (PodItem::Served, Some(i))
        }
        Some(i) => (
            PodItem::Waiting(format!(
                "pod {} runs generation {}",
                pod.name,
                i.generation.unwrap_or_default()
            )),
            Some(i),
        ),
        None if report.plugins.is_empty() && report.version == obs.desired_version => {
            (PodItem::Served, None)
        }
        None => (
            PodItem::Waiting(format!("pod {} has not loaded it", pod.name)),
            None,
        ),
    }
}

/// Status of a Plugin from every pool of its namespace, or `None` while no pool has
/// rendered its current generation.
pub fn plugin_status(
    plugin: &Plugin,
    pools: &BTreeSet<String>,
    observations: &[&PoolObservation],
    now: &Time,
) -> Option<PluginStatus> {
    let previous = plugin.status.clone().unwrap_or_default();
    let generation_ = plugin.metadata.generation;
    let name = plugin.name_any();
    let ns = plugin.namespace().unwrap_or_default();
    let key = ObjectKey::new(&ns, &name);

    let mut digest = previous.digest.clone();
    let mut size = previous.size_bytes;
    let mut serving: Vec<String> = Vec::new();
    let (accepted, ready): ((bool, String, String), (bool, String, String));

    let missing_pool = plugin.spec.pool.as_ref().filter(|p| !pools.contains(*p));
    if let Err(errs) = causeway_crds::validate::validate_plugin(&plugin.spec) {
        let m = errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        accepted = (false, reason::INVALID_SPEC.into(), m.clone());
        ready = (false, reason::INVALID_SPEC.into(), m);
    } else if let Some(pool) = missing_pool {
        let (r, m) = if pool == DEFAULT_POOL {
            (
                reason::PENDING,
                format!("creating WorkerPool {DEFAULT_POOL}"),
            )
        } else {
            (
                reason::POOL_NOT_FOUND,
                format!("WorkerPool {pool:?} not found in namespace {ns}"),
            )
        };
        accepted = (false, r.into(), m.clone());
        ready = (false, r.into(), m);
    } else {
        let current: Vec<&&PoolObservation> = observations
            .iter()
            .filter(|o| o.seen.get(&(Kind::Plugin, name.clone())) == Some(&generation_))
            .collect();
        if current.is_empty() {
            return None;
        }
        if let Some(p) = current.iter().find_map(|o| o.problem(Kind::Plugin, &name)) {
            accepted = (false, p.reason.clone(), p.message.clone());
            ready = accepted.clone();
        } else {
            let serving_obs: Vec<&&&PoolObservation> = current
                .iter()
                .filter(|o| {
                    o.plugins
                        .get(&name)
                        .is_some_and(|r| r.generation == generation_)
                })
                .collect();
            serving = serving_obs.iter().map(|o| o.pool.clone()).collect();
            serving.sort();
            for o in &serving_obs {
                if let Some(d) = o.plugins.get(&name).and_then(|r| r.digest.clone()) {
                    digest = Some(d);
                }
            }
            accepted = (
                true,
                condition::ACCEPTED.into(),
                if serving.is_empty() {
                    "valid; loaded by no pool yet".to_string()
                } else {
                    format!("loaded by pools {}", serving.join(", "))
                },
            );
            if serving.is_empty() {
                ready = (
                    false,
                    reason::PENDING.into(),
                    "not loaded by any pool: no bridge step or plugin uses it".into(),
                );
            } else {
                let mut states = Vec::new();
                let mut pods = 0;
                let mut empty_pools = Vec::new();
                for o in &serving_obs {
                    let ready_pods: Vec<&PodObservation> = o.ready_pods().collect();
                    if ready_pods.is_empty() {
                        empty_pools.push(o.pool.clone());
                    }
                    pods += ready_pods.len();
                    for pod in ready_pods {
                        let (state, item) = plugin_on_pod(pod, o, &key, generation_);
                        if let Some(i) = item.filter(|_| matches!(state, PodItem::Served)) {
                            if let Some(d) = &i.digest {
                                digest = Some(d.clone());
                            }
                            if i.size.is_some() {
                                size = i.size;
                            }
                        }
                        states.push(state);
                    }
                }
                let pool_list = serving.join(", ");
                ready = if !empty_pools.is_empty()
                    && !states.iter().any(|s| matches!(s, PodItem::Failed(..)))
                {
                    (
                        false,
                        reason::PENDING.into(),
                        format!("no ready worker in pool {}", empty_pools.join(", ")),
                    )
                } else {
                    fold_items(&states, pods, &pool_list, "plugin")
                };
            }
        }
    }

    let mut conditions: Vec<Condition> = previous.conditions.clone();
    set_condition(
        &mut conditions,
        make_condition(
            condition::ACCEPTED,
            accepted.0,
            &accepted.1,
            accepted.2,
            generation_,
            now.clone(),
            &previous.conditions,
        ),
    );
    set_condition(
        &mut conditions,
        make_condition(
            condition::READY,
            ready.0,
            &ready.1,
            ready.2,
            generation_,
            now.clone(),
            &previous.conditions,
        ),
    );
    Some(PluginStatus {
        observed_generation: generation_,
        conditions,
        digest,
        size_bytes: size,
        pools: serving,
    })
}

#[cfg(test)]
mod tests;
