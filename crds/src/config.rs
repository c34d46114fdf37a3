//! The rendered worker configuration, and the one pure function that builds it.
//!
//! The operator calls [`render`] per pool with what it reads from the API; local mode calls
//! it with what it loads from manifest files. Workers only ever see a [`WorkerConfig`].
//! Durations and quantities are parsed here, secrets are resolved here, and every problem
//! with one object is reported against that object while the rest still renders.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;
use sha2::{Digest, Sha256};

// The worker's configuration types live in `causeway-config`, which has no Kubernetes
// dependency; they are re-exported here so that `causeway_crds::config::X` still names them.
// A `Problem` is an item error found while rendering.
pub use causeway_config::ItemError as Problem;
pub use causeway_config::*;

use crate::bridge::{ApiKeyAuth, Backoff, BasicAuth, Bridge, JwtAuth, RateLimit};
use crate::common::{DEFAULT_NAMESPACE, DEFAULT_POOL, NamedValue, SecretKeyRef};
use crate::duration::{parse_duration, parse_quantity_bytes};
use crate::plugin::Plugin;
use crate::pool::WorkerPool;
use crate::stream::Stream;
use crate::validate::{FieldError, validate_bridge, validate_plugin};

/// Everything known about one cluster (or one set of manifest files). The objects are
/// shared (`Arc`), as the operator's caches hold them: a render of 10,000 Bridges reads
/// them in place instead of copying every one (~60 MiB at its peak).
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub pools: Vec<Arc<WorkerPool>>,
    pub bridges: Vec<Arc<Bridge>>,
    pub plugins: Vec<Arc<Plugin>>,
    /// `(namespace, name)` → key → bytes. A Secret that exists but is not opted in may be
    /// listed with no data (so that the render can say why it is not used).
    pub secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// Secrets that carry `causeway.dev/use: "true"` ([`crate::common::SECRET_OPT_IN_LABEL`]).
    /// A cluster render ([`Scope::Pool`]) uses only these; local mode uses any.
    pub opted_in_secrets: BTreeSet<(String, String)>,
    /// `(namespace, name)` → key → bytes (`data` and `binaryData` together).
    pub config_maps: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
}

/// Which objects a config is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One pool of one namespace (in the cluster).
    Pool { namespace: String, name: String },
    /// Everything, in one process (local mode).
    All,
}

/// Cluster facts the renderer cannot know by itself.
#[derive(Clone, Debug, Default)]
pub struct RenderContext {
    /// Namespace → token for calls between pools.
    pub internal_tokens: BTreeMap<String, SecretValue>,
    pub admin_token: Option<SecretValue>,
    /// `(namespace, pool)` → base URLs of that pool's internal port. Pools not listed get
    /// their Service's DNS name.
    pub pool_endpoints: BTreeMap<(String, String), Vec<String>>,
}

/// The result of [`render`].
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub config: WorkerConfig,
    pub problems: Vec<Problem>,
}

/// Longest pool name whose derived object names stay valid DNS labels
/// (`causeway-<pool>-config` and friends must fit in 63 characters).
pub const MAX_POOL_NAME: usize = 54;

/// Name of the objects the operator creates for a pool (Deployment, Service, …).
pub fn pool_object_name(pool: &str) -> String {
    format!("causeway-{pool}")
}

/// Name of the pool's ClusterIP Service for the internal (plugin) port,
/// `causeway-<pool>-internal`. A Service name is a DNS label (63 characters at most), so a
/// pool name longer than 45 characters is cut and a hash of the whole name keeps it unique.
pub fn internal_service_name(pool: &str) -> String {
    let full = format!("causeway-{pool}-internal");
    if full.len() <= 63 {
        return full;
    }
    let hash = hex::encode(&Sha256::digest(pool.as_bytes())[..4]);
    let mut cut = 36;
    while !pool.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "causeway-{}-{hash}-internal",
        pool[..cut].trim_end_matches('-')
    )
}

/// The pool an object lands in.
pub fn pool_of(pool: &Option<String>) -> &str {
    pool.as_deref().unwrap_or(DEFAULT_POOL)
}

/// The namespace of an object (`default` when unset, as in local mode).
pub fn namespace_of(meta: &kube::core::ObjectMeta) -> String {
    meta.namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

fn name_of(meta: &kube::core::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// The path a bridge is served at.
pub fn bridge_path(b: &Bridge) -> String {
    b.spec.ingress.path.clone().unwrap_or_else(|| {
        format!(
            "/hooks/{}/{}",
            namespace_of(&b.metadata),
            name_of(&b.metadata)
        )
    })
}

/// Render the configuration of one pool (or of everything, for local mode).
pub fn render(inv: &Inventory, scope: &Scope, ctx: &RenderContext) -> Rendered {
    let mut problems = Vec::new();
    let in_ns = |ns: &str| match scope {
        Scope::Pool { namespace, .. } => namespace == ns,
        Scope::All => true,
    };
    let in_pool = |ns: &str, pool: &str| match scope {
        Scope::Pool { namespace, name } => namespace == ns && name == pool,
        Scope::All => true,
    };

    // Bridges of this pool, oldest first so that the older one keeps a contested path.
    let mut bridges: Vec<&Bridge> = inv
        .bridges
        .iter()
        .map(|b| b.as_ref())
        .filter(|b| in_pool(&namespace_of(&b.metadata), pool_of(&b.spec.pool)))
        .filter(|b| !being_deleted(b) || drains(b))
        .collect();
    bridges.sort_by_key(|b| {
        (
            b.metadata.creation_timestamp.clone().map(|t| t.0),
            namespace_of(&b.metadata),
            name_of(&b.metadata),
        )
    });

    let plugins_by_key: BTreeMap<(String, String), &Plugin> = inv
        .plugins
        .iter()
        .map(|p| {
            (
                (namespace_of(&p.metadata), name_of(&p.metadata)),
                p.as_ref(),
            )
        })
        .collect();

    // Pools that exist, so that a reference to a missing one is reported.
    let pools: BTreeSet<(String, String)> = inv
        .pools
        .iter()
        .map(|p| (namespace_of(&p.metadata), name_of(&p.metadata)))
        .collect();

    // In a cluster the operator reads Secrets with its own rights: use only opted-in ones.
    let cluster = matches!(scope, Scope::Pool { .. });
    let lookup = Lookup {
        inv,
        require_opt_in: cluster,
    };
    let mut claimed_paths: BTreeMap<String, String> = BTreeMap::new();
    let mut bridge_configs = Vec::new();
    for b in bridges {
        let (ns, name) = (namespace_of(&b.metadata), name_of(&b.metadata));
        let problem = |reason: &str, message: String| Problem {
            kind: Kind::Bridge,
            namespace: ns.clone(),
            name: name.clone(),
            reason: reason.to_string(),
            message,
        };
        if let Err(errs) = validate_bridge(&b.spec) {
            problems.push(problem(reason::INVALID_SPEC, join_errors(&errs)));
            continue;
        }
        if let Some(missing) = b
            .spec
            .steps
            .iter()
            .find(|s| !plugins_by_key.contains_key(&(ns.clone(), s.plugin.clone())))
        {
            problems.push(problem(
                reason::PLUGIN_NOT_FOUND,
                format!(
                    "step plugin {:?} not found in namespace {ns}",
                    missing.plugin
                ),
            ));
            continue;
        }
        let path = bridge_path(b);
        if let Some(owner) = claimed_paths.get(&path) {
            problems.push(problem(
                reason::PATH_CONFLICT,
                format!("path {path} is already served by {owner}"),
            ));
            continue;
        }
        match build_bridge(b, &ns, &name, &path, &lookup) {
            Ok(cfg) => {
                claimed_paths.insert(path, format!("bridge {ns}/{name}"));
                bridge_configs.push(cfg);
            }
            Err(p) => problems.push(problem(p.0, p.1)),
        }
    }

    // Plugins loaded here: placed here, used by a bridge here, public unplaced plugins in
    // the default pool, and whatever those may call through `http://<name>.internal`.
    let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
    for p in &inv.plugins {
        let ns = namespace_of(&p.metadata);
        if !in_ns(&ns) {
            continue;
        }
        let placed_here = p
            .spec
            .pool
            .as_deref()
            .is_some_and(|pool| in_pool(&ns, pool));
        let public_default =
            p.spec.pool.is_none() && p.spec.route.is_some() && in_pool(&ns, DEFAULT_POOL);
        if placed_here || public_default || matches!(scope, Scope::All) {
            wanted.insert((ns, name_of(&p.metadata)));
        }
    }
    for b in &bridge_configs {
        for s in &b.steps {
            let key = (b.namespace.clone(), s.plugin.clone());
            let unplaced = plugins_by_key
                .get(&key)
                .is_some_and(|p| p.spec.pool.is_none());
            if unplaced {
                wanted.insert(key);
            }
        }
    }
    // Close over chaining: an unplaced plugin that a loaded plugin may call is loaded too.
    let mut frontier: Vec<(String, String)> = wanted.iter().cloned().collect();
    while let Some((ns, name)) = frontier.pop() {
        let Some(p) = plugins_by_key.get(&(ns.clone(), name.clone())) else {
            continue;
        };
        for callee in internal_callees(&p.spec.allowed_outbound_hosts, &ns, &plugins_by_key) {
            let unplaced = plugins_by_key
                .get(&callee)
                .is_some_and(|c| c.spec.pool.is_none());
            if unplaced && wanted.insert(callee.clone()) {
                frontier.push(callee);
            }
        }
    }

    let mut plugin_configs = Vec::new();
    for key in &wanted {
        let Some(p) = plugins_by_key.get(key) else {
            continue;
        };
        let problem = |reason: &str, message: String| Problem {
            kind: Kind::Plugin,
            namespace: key.0.clone(),
            name: key.1.clone(),
            reason: reason.to_string(),
            message,
        };
        if let Err(errs) = validate_plugin(&p.spec) {
            problems.push(problem(reason::INVALID_SPEC, join_errors(&errs)));
            continue;
        }
        if let Some(pool) = &p.spec.pool
            && matches!(scope, Scope::Pool { .. })
            && !pools.contains(&(key.0.clone(), pool.clone()))
            && pool != DEFAULT_POOL
        {
            problems.push(problem(
                reason::POOL_NOT_FOUND,
                format!("WorkerPool {pool:?} not found in namespace {}", key.0),
            ));
            continue;
        }
        if cluster && let Err(message) = cluster_source_allowed(&p.spec.source) {
            problems.push(problem(reason::INVALID_SPEC, message));
            continue;
        }
        if let Some(route) = &p.spec.route
            && let Some(owner) = claimed_paths.get(route)
        {
            problems.push(problem(
                reason::PATH_CONFLICT,
                format!("route {route} is already served by {owner}"),
            ));
            continue;
        }
        match build_plugin(p, &key.0, &key.1, &lookup) {
            Ok(cfg) => {
                if let Some(route) = &cfg.route {
                    claimed_paths.insert(route.clone(), format!("plugin {}/{}", key.0, key.1));
                }
                plugin_configs.push(cfg);
            }
            Err(e) => problems.push(problem(e.0, e.1)),
        }
    }

    // Routes to plugins placed in other pools of the same namespace(s).
    let mut routes = Vec::new();
    if let Scope::Pool {
        namespace,
        name: this_pool,
    } = scope
    {
        for p in &inv.plugins {
            let ns = namespace_of(&p.metadata);
            let pname = name_of(&p.metadata);
            if &ns != namespace || wanted.contains(&(ns.clone(), pname.clone())) {
                continue;
            }
            if let Some(pool) = &p.spec.pool
                && pool != this_pool
            {
                let urls = ctx
                    .pool_endpoints
                    .get(&(ns.clone(), pool.clone()))
                    .cloned()
                    .unwrap_or_else(|| {
                        vec![format!(
                            "http://{}.{}.svc:{}",
                            internal_service_name(pool),
                            ns,
                            INTERNAL_PORT
                        )]
                    });
                routes.push(PluginRoute {
                    namespace: ns,
                    plugin: pname,
                    pool: pool.clone(),
                    urls,
                });
            }
        }
    }

    let (pool_name, namespace, retention, destination_allowed_cidrs, metrics) = match scope {
        Scope::Pool { namespace, name } => {
            let pool = inv
                .pools
                .iter()
                .find(|p| &namespace_of(&p.metadata) == namespace && &name_of(&p.metadata) == name);
            let retention = pool.map(|p| retention_of(p)).unwrap_or_default();
            let cidrs = pool
                .map(|p| p.spec.network.allowed_destination_cidrs.clone())
                .unwrap_or_default();
            let metrics = MetricsConfig {
                destination_histograms: pool.is_some_and(|p| p.spec.metrics.destination_histograms),
            };
            (name.clone(), namespace.clone(), retention, cidrs, metrics)
        }
        Scope::All => {
            // One process serves every pool of the files: it may reach what any of them may.
            let cidrs: BTreeSet<String> = inv
                .pools
                .iter()
                .flat_map(|p| p.spec.network.allowed_destination_cidrs.iter().cloned())
                .collect();
            (
                "local".to_string(),
                String::new(),
                inv.pools
                    .first()
                    .map(|p| retention_of(p))
                    .unwrap_or_default(),
                cidrs.into_iter().collect(),
                MetricsConfig {
                    destination_histograms: inv
                        .pools
                        .iter()
                        .any(|p| p.spec.metrics.destination_histograms),
                },
            )
        }
    };
    let internal_tokens = match scope {
        Scope::Pool { namespace, .. } => ctx
            .internal_tokens
            .iter()
            .filter(|(ns, _)| *ns == namespace)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Scope::All => ctx.internal_tokens.clone(),
    };

    let mut config = WorkerConfig {
        version: String::new(),
        pool: pool_name,
        namespace,
        bridges: bridge_configs,
        plugins: plugin_configs,
        routes,
        internal_tokens,
        // An empty token would mean no admin auth: treat it as missing.
        admin_token: ctx
            .admin_token
            .clone()
            .filter(|t| !t.expose().trim().is_empty()),
        retention,
        destination_allowed_cidrs,
        metrics,
    };
    config.version = version_of(&config);
    problems.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    Rendered { config, problems }
}

/// The Bridge has a deletion timestamp.
pub fn being_deleted(b: &Bridge) -> bool {
    b.metadata.deletion_timestamp.is_some()
}

/// A Bridge being deleted stays in its pool's config, draining, while the operator's
/// finalizer holds it (policy `Drain`); with `Discard`, or once the finalizer is gone, it
/// leaves the config at once.
pub fn drains(b: &Bridge) -> bool {
    b.spec.deletion.policy == crate::bridge::DeletionPolicy::Drain
        && b.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == crate::common::BRIDGE_FINALIZER)
}

/// The content hash of a config (its `version` field excluded).
pub fn version_of(config: &WorkerConfig) -> String {
    let mut c = config.clone();
    c.version = String::new();
    // Serialising plain structs and BTreeMaps cannot fail.
    let bytes = serde_json::to_vec(&c).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

fn join_errors(errs: &[FieldError]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn retention_of(p: &WorkerPool) -> RetentionConfig {
    let d = RetentionConfig::default();
    RetentionConfig {
        max_age_ms: parse_duration(&p.spec.retention.max_age)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(d.max_age_ms),
        max_bytes: parse_quantity_bytes(&p.spec.retention.max_bytes).unwrap_or(d.max_bytes),
    }
}

/// Plugins of `ns` that `allowed` lets a plugin call through `http://<name>.internal`.
pub fn internal_callees(
    allowed: &[String],
    ns: &str,
    plugins: &BTreeMap<(String, String), &Plugin>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in allowed {
        let host = entry
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(entry)
            .trim_end_matches('/');
        let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        let Some(label) = host.strip_suffix(".internal") else {
            continue;
        };
        if label == "*" {
            out.extend(plugins.keys().filter(|(pns, _)| pns == ns).cloned());
        } else {
            out.push((ns.to_string(), label.to_string()));
        }
    }
    out
}

type BuildError = (&'static str, String);

/// The inventory, and whether Secrets must be opted in (cluster scope).
struct Lookup<'a> {
    inv: &'a Inventory,
    require_opt_in: bool,
}

impl std::ops::Deref for Lookup<'_> {
    type Target = Inventory;
    fn deref(&self) -> &Inventory {
        self.inv
    }
}

/// Plugin sources a cluster pool may load. `file` reads the worker's own file system (where
/// the ServiceAccount token lives): local mode only. An OCI reference must be pinned by
/// digest, so that what runs is what was reviewed, not whatever a tag points at today.
pub fn cluster_source_allowed(src: &crate::plugin::PluginSource) -> Result<(), String> {
    if src.file.is_some() {
        return Err("spec.source.file is for local mode only (causeway up): a worker in a cluster does not read its own \
                    file system; use oci (with a digest), http (with sha256) or configMap"
            .into());
    }
    if let Some(o) = &src.oci
        && o.digest.is_none()
        && !reference_has_digest(&o.reference)
    {
        return Err(format!(
            "spec.source.oci: {:?} is not pinned; in a cluster give a digest (spec.source.oci.digest, or \
             reference@sha256:<64 hex>)",
            o.reference
        ));
    }
    Ok(())
}

/// `…@sha256:<64 lower-case hex>`.
fn reference_has_digest(reference: &str) -> bool {
    reference.rsplit_once("@sha256:").is_some_and(|(_, hex)| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn ms(s: &str) -> u64 {
    // Validation ran before building, so every duration here parses.
    parse_duration(s).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn opt_ms(s: &Option<String>, default: u64) -> u64 {
    s.as_deref().map(ms).unwrap_or(default)
}

fn secret(inv: &Lookup<'_>, ns: &str, r: &SecretKeyRef) -> Result<SecretValue, BuildError> {
    let key = (ns.to_string(), r.name.clone());
    let data = inv.secrets.get(&key).ok_or_else(|| {
        (
            reason::SECRET_NOT_FOUND,
            format!("Secret {:?} not found in namespace {ns}", r.name),
        )
    })?;
    if inv.require_opt_in && !inv.opted_in_secrets.contains(&key) {
        return Err((
            reason::SECRET_NOT_OPTED_IN,
            format!(
                "Secret {:?} is not opted in for use by Causeway: add the label {}: \"true\" to it \
                 (kubectl label secret -n {ns} {} {}=true)",
                r.name,
                crate::common::SECRET_OPT_IN_LABEL,
                r.name,
                crate::common::SECRET_OPT_IN_LABEL
            ),
        ));
    }
    let bytes = data.get(&r.key).ok_or_else(|| {
        (
            reason::SECRET_NOT_FOUND,
            format!("Secret {:?} has no key {:?}", r.name, r.key),
        )
    })?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| {
        (
            reason::INVALID_SPEC,
            format!("Secret {:?} key {:?} is not UTF-8 text", r.name, r.key),
        )
    })?;
    Ok(SecretValue(text))
}

/// The key of a `kubernetes.io/dockerconfigjson` Secret.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";

/// The credentials a `kubernetes.io/dockerconfigjson` Secret holds for the registry of
/// `reference` (`{"auths": {"<registry>": {"auth": base64("user:pass")}}}`, or `username`
/// and `password` instead of `auth`). Keys may carry a scheme and a path, as `docker login`
/// writes them (`https://index.docker.io/v1/`). No entry for the registry is an error: a
/// pull that would go out anonymously is refused before it is tried.
fn registry_credentials(
    inv: &Lookup<'_>,
    ns: &str,
    secret_name: &str,
    reference: &str,
) -> Result<RegistryCredentials, BuildError> {
    let text = secret(
        inv,
        ns,
        &SecretKeyRef {
            name: secret_name.to_string(),
            key: DOCKER_CONFIG_JSON_KEY.to_string(),
        },
    )?;
    let invalid = |why: &str| {
        (
            reason::INVALID_SPEC,
            format!("Secret {secret_name:?} key {DOCKER_CONFIG_JSON_KEY:?}: {why}"),
        )
    };
    let config: serde_json::Value =
        serde_json::from_str(text.expose()).map_err(|_| invalid("not JSON"))?;
    let registry = registry_of(reference);
    let auths = config["auths"]
        .as_object()
        .ok_or_else(|| invalid("no \"auths\" object"))?;
    let entry = auths
        .iter()
        .find(|(key, _)| same_registry(key, &registry))
        .map(|(_, v)| v)
        .ok_or_else(|| {
            (
                reason::SECRET_NOT_FOUND,
                format!("Secret {secret_name:?} has no credentials for registry {registry:?}"),
            )
        })?;
    let (username, password) = if let Some(auth) = entry["auth"].as_str() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| invalid("\"auth\" is not base64 of user:password"))?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| invalid("\"auth\" is not base64 of user:password"))?;
        (u.to_string(), p.to_string())
    } else {
        match (entry["username"].as_str(), entry["password"].as_str()) {
            (Some(u), Some(p)) => (u.to_string(), p.to_string()),
            _ => {
                return Err(invalid(
                    "the registry's entry has neither auth nor username and password",
                ));
            }
        }
    };
    Ok(RegistryCredentials {
        username: SecretValue(username),
        password: SecretValue(password),
    })
}

/// The registry host of an OCI reference, as the distribution spec and Docker resolve it:
/// the first path component when it looks like a host (has a `.` or a `:`, or is
/// `localhost`), Docker Hub otherwise.
fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_ascii_lowercase()
        }
        _ => "docker.io".into(),
    }
}

/// Whether a key of `auths` names `registry`: scheme and path ignored; Docker Hub's
/// several names are one.
fn same_registry(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    host == registry || (hub(&host) && hub(registry))
}

fn secrets(
    inv: &Lookup<'_>,
    ns: &str,
    first: &SecretKeyRef,
    rest: &[SecretKeyRef],
) -> Result<Vec<SecretValue>, BuildError> {
    std::iter::once(first)
        .chain(rest.iter())
        .map(|r| secret(inv, ns, r))
        .collect()
}

fn named_value(
    inv: &Lookup<'_>,
    ns: &str,
    v: &NamedValue,
) -> Result<(SecretValue, bool), BuildError> {
    match (&v.value, &v.value_from) {
        (Some(val), _) => Ok((SecretValue(val.clone()), false)),
        (None, Some(from)) => Ok((secret(inv, ns, &from.secret_key_ref)?, true)),
        (None, None) => Ok((SecretValue(String::new()), false)),
    }
}

fn retry(retries: u32, b: &Backoff) -> RetryConfig {
    RetryConfig {
        retries,
        policy: b.policy,
        initial_delay_ms: opt_ms(&b.initial_delay, 1_000),
        max_delay_ms: opt_ms(&b.max_delay, 3_600_000),
        delays_ms: b.delays.iter().map(|d| ms(d)).collect(),
    }
}

/// A token bucket: `burst` defaults to `perSecond`.
fn rate_limit(r: &RateLimit) -> RateLimitConfig {
    RateLimitConfig {
        per_second: r.per_second,
        burst: r.burst.unwrap_or(r.per_second),
    }
}

fn build_bridge(
    b: &Bridge,
    ns: &str,
    name: &str,
    path: &str,
    inv: &Lookup<'_>,
) -> Result<BridgeConfig, BuildError> {
    let spec = &b.spec;
    let auth = match &spec.ingress.auth {
        None => None,
        Some(a) => Some(if let Some(s) = &a.standard_webhooks {
            AuthConfig::StandardWebhooks {
                secrets: secrets(inv, ns, &s.secret_ref, &s.previous_secret_refs)?,
                tolerance_ms: ms(&s.tolerance),
            }
        } else if let Some(h) = &a.hmac {
            AuthConfig::Hmac {
                preset: h.preset,
                secrets: secrets(inv, ns, &h.secret_ref, &h.previous_secret_refs)?,
                header: h.header.clone(),
                algorithm: h.algorithm,
                encoding: h.encoding,
                prefix: h.prefix.clone(),
                timestamp_header: h.timestamp_header.clone(),
                signed_content: h.signed_content.clone(),
                tolerance_ms: opt_ms(&h.tolerance, 300_000),
            }
        } else if let Some(j) = &a.jwt {
            jwt_auth(inv, ns, j)?
        } else if let Some(basic) = &a.basic {
            basic_auth(inv, ns, basic)?
        } else if let Some(k) = &a.api_key {
            api_key_auth(inv, ns, k)?
        } else {
            return Err((
                reason::INVALID_SPEC,
                "spec.ingress.auth names no scheme".into(),
            ));
        }),
    };
    let mut env = BTreeMap::new();
    for v in &spec.env {
        let (value, secret) = named_value(inv, ns, v)?;
        env.insert(v.name.clone(), EnvValue { value, secret });
    }
    let mut destinations = Vec::new();
    for d in &spec.destinations {
        destinations.push(DestinationConfig {
            name: d.name.clone(),
            url: d.url.clone(),
            method: d.method.as_str().to_string(),
            headers: d.headers.clone(),
            body: d.body.clone(),
            delay_ms: opt_ms(&d.delay, 0),
            timeout_ms: ms(&d.timeout),
            retry: retry(d.retries, &d.backoff),
            max_retry_after_ms: opt_ms(&d.max_retry_after, 3_600_000),
            max_concurrency: d.max_concurrency,
            rate_limit: d.rate_limit.as_ref().map(rate_limit),
            signing_secret: d
                .signing
                .as_ref()
                .map(|s| secret(inv, ns, &s.standard_webhooks.secret_ref))
                .transpose()?,
            dead_letter_url: d.dead_letter.as_ref().map(|t| t.url.clone()),
            cloud_events: (d.format == crate::bridge::DeliveryFormat::Cloudevents).then(|| {
                let c = d.cloud_events.clone().unwrap_or_default();
                CloudEventsConfig {
                    mode: c.mode,
                    id: c.id,
                    source: c.source,
                    r#type: c.type_,
                    subject: c.subject,
                    time: c.time,
                }
            }),
            oauth2: d
                .oauth2
                .as_ref()
                .map(|o| -> Result<OAuth2Config, BuildError> {
                    Ok(OAuth2Config {
                        token_url: o.token_url.clone(),
                        client_id: o.client_id.clone(),
                        client_secret: secret(inv, ns, &o.client_secret_ref)?,
                        scopes: o.scopes.clone(),
                        audience: o.audience.clone(),
                        client_auth: o.client_auth,
                    })
                })
                .transpose()?,
            tls: d
                .tls
                .as_ref()
                .map(|t| -> Result<DestinationTls, BuildError> {
                    let key = |k: &str| SecretKeyRef {
                        name: t.client_certificate_secret.clone().unwrap_or_default(),
                        key: k.to_string(),
                    };
                    let client = match &t.client_certificate_secret {
                        Some(_) => Some((
                            secret(inv, ns, &key("tls.crt"))?.expose().to_string(),
                            secret(inv, ns, &key("tls.key"))?,
                        )),
                        None => None,
                    };
                    let (client_cert_pem, client_key_pem) = client.unzip();
                    Ok(DestinationTls {
                        ca_pem: t
                            .ca_secret_ref
                            .as_ref()
                            .map(|r| secret(inv, ns, r).map(|v| v.expose().to_string()))
                            .transpose()?,
                        client_cert_pem,
                        client_key_pem,
                    })
                })
                .transpose()?,
            circuit_breaker: d.circuit_breaker.as_ref().map(|cb| CircuitBreakerConfig {
                consecutive_failures: cb.consecutive_failures,
                failure_rate: cb.failure_rate.as_ref().map(|r| FailureRateConfig {
                    percent: r.percent,
                    window_ms: ms(&r.window),
                    min_attempts: r.min_attempts,
                }),
                open_for_ms: ms(&cb.open_for),
                disable_after_ms: Some(ms(&cb.disable_after)).filter(|ms| *ms > 0),
            }),
            nats: d
                .nats
                .as_ref()
                .map(|n| nats_config(inv, ns, n))
                .transpose()?,
        });
    }
    let step_retry = spec
        .step_retry
        .as_ref()
        .map(|r| retry(r.retries, &r.backoff))
        .unwrap_or_default();
    Ok(BridgeConfig {
        namespace: ns.to_string(),
        name: name.to_string(),
        generation: b.metadata.generation,
        path: path.to_string(),
        methods: spec
            .ingress
            .methods
            .iter()
            .map(|m| m.as_str().to_string())
            .collect(),
        max_body_bytes: spec.ingress.max_body_bytes,
        idempotency_header: spec.ingress.effective_idempotency_header(),
        dedupe_window_ms: ms(&spec.ingress.dedupe_window),
        ingress_rate_limit: spec.ingress.rate_limit.as_ref().map(rate_limit),
        suspend: spec.suspend,
        draining: being_deleted(b),
        when_plugin_not_ready: spec.when_plugin_not_ready,
        auth,
        filter: spec.filter.clone(),
        steps: spec
            .steps
            .iter()
            .map(|s| StepConfig {
                plugin: s.plugin.clone(),
                path: s.path.clone().unwrap_or_else(|| "/".into()),
            })
            .collect(),
        step_retry,
        destinations,
        env,
        on_missing: spec
            .templates
            .as_ref()
            .map(|t| t.on_missing)
            .unwrap_or_default(),
        schema: spec
            .schema
            .as_ref()
            .map(|s| payload_schema(s, ns, inv))
            .transpose()?,
        streams: spec
            .streams
            .iter()
            .map(|s| stream_config(inv, ns, s))
            .collect::<Result<_, _>>()?,
        subscriptions: spec
            .subscriptions
            .as_ref()
            .filter(|s| s.enabled)
            .map(|s| subscriptions_config(inv, ns, s))
            .transpose()?,
        notifications: spec
            .notifications
            .as_ref()
            .map(|n| -> Result<NotificationsConfig, BuildError> {
                Ok(NotificationsConfig {
                    url: n.url.clone(),
                    signing_secret: n
                        .signing
                        .as_ref()
                        .map(|s| secret(inv, ns, &s.standard_webhooks.secret_ref))
                        .transpose()?,
                    events: n.events.clone(),
                })
            })
            .transpose()?,
    })
}

fn jwt_auth(inv: &Lookup<'_>, ns: &str, j: &JwtAuth) -> Result<AuthConfig, BuildError> {
    Ok(AuthConfig::Jwt {
        algorithms: j.algorithms.clone(),
        key: j
            .secret_ref
            .as_ref()
            .map(|r| secret(inv, ns, r))
            .transpose()?,
        jwks: j
            .jwks_ref
            .as_ref()
            .map(|r| secret(inv, ns, r))
            .transpose()?,
        issuer: j.issuer.clone(),
        audience: j.audience.clone(),
        leeway_ms: opt_ms(&j.leeway, 30_000),
        dedupe_jti: j.dedupe_jti,
    })
}

fn basic_auth(inv: &Lookup<'_>, ns: &str, basic: &BasicAuth) -> Result<AuthConfig, BuildError> {
    Ok(AuthConfig::Basic {
        username: basic.username.clone(),
        password: secret(inv, ns, &basic.password_ref)?,
    })
}

fn api_key_auth(inv: &Lookup<'_>, ns: &str, k: &ApiKeyAuth) -> Result<AuthConfig, BuildError> {
    Ok(AuthConfig::ApiKey {
        header: if k.query_param.is_none() {
            Some(k.header.clone().unwrap_or_else(|| "x-api-key".into()))
        } else {
            None
        },
        query_param: k.query_param.clone(),
        keys: secrets(inv, ns, &k.secret_ref, &k.previous_secret_refs)?,
    })
}

/// The WebSub hub: its API key rendered with the ingress scheme's code, its bounds with
/// defaults.
fn subscriptions_config(
    inv: &Lookup<'_>,
    ns: &str,
    s: &crate::websub::Subscriptions,
) -> Result<SubscriptionsConfig, BuildError> {
    let lease = s.lease_seconds.clone().unwrap_or_default();
    Ok(SubscriptionsConfig {
        auth: api_key_auth(inv, ns, &s.auth.api_key)?,
        allowed_callback_hosts: s.allowed_callback_hosts.clone(),
        default_lease_seconds: lease
            .default
            .unwrap_or(SubscriptionsConfig::DEFAULT_LEASE_SECONDS),
        min_lease_seconds: lease
            .min
            .unwrap_or(SubscriptionsConfig::DEFAULT_MIN_LEASE_SECONDS),
        max_lease_seconds: lease
            .max
            .unwrap_or(SubscriptionsConfig::DEFAULT_MAX_LEASE_SECONDS),
        retry: retry(
            s.retries.unwrap_or(RetryConfig::default().retries),
            &s.backoff.clone().unwrap_or_default(),
        ),
        timeout_ms: opt_ms(&s.timeout, SubscriptionsConfig::DEFAULT_TIMEOUT_MS),
        max_subscriptions: s
            .max_subscriptions
            .unwrap_or(SubscriptionsConfig::DEFAULT_MAX_SUBSCRIPTIONS),
        signing_secret: s
            .signing
            .as_ref()
            .map(|g| secret(inv, ns, &g.standard_webhooks.secret_ref))
            .transpose()?,
    })
}

/// One stream: its auth rendered with the ingress schemes' code, its bounds with defaults.
fn stream_config(inv: &Lookup<'_>, ns: &str, s: &Stream) -> Result<StreamConfig, BuildError> {
    let auth = match &s.auth {
        None => None,
        Some(a) => Some(if let Some(j) = &a.jwt {
            jwt_auth(inv, ns, j)?
        } else if let Some(b) = &a.basic {
            basic_auth(inv, ns, b)?
        } else if let Some(k) = &a.api_key {
            api_key_auth(inv, ns, k)?
        } else {
            return Err((
                reason::INVALID_SPEC,
                format!("spec.streams[{}].auth names no scheme", s.name),
            ));
        }),
    };
    let limits = s.limits.clone().unwrap_or_default();
    Ok(StreamConfig {
        name: s.name.clone(),
        auth,
        max_connections_per_consumer: limits.max_connections_per_consumer.unwrap_or(0),
        max_connections: limits.max_connections.unwrap_or(0),
        events_per_second: limits.events_per_second.unwrap_or(0),
        buffer_events: s
            .buffer
            .as_ref()
            .and_then(|b| b.max_events)
            .unwrap_or(StreamConfig::DEFAULT_BUFFER_EVENTS),
        stall_timeout_ms: s
            .buffer
            .as_ref()
            .map(|b| opt_ms(&b.stall_timeout, StreamConfig::DEFAULT_STALL_TIMEOUT_MS))
            .unwrap_or(StreamConfig::DEFAULT_STALL_TIMEOUT_MS),
        retention_ms: opt_ms(&s.retention, StreamConfig::DEFAULT_RETENTION_MS),
        heartbeat_ms: opt_ms(&s.heartbeat, StreamConfig::DEFAULT_HEARTBEAT_MS),
    })
}

/// A bridge's payload schema as JSON text: inline, or read from its ConfigMap key (JSON or
/// YAML), and checked to compile, so that a bad schema leaves the Bridge not Ready with
/// the reason instead of reaching the workers.
fn payload_schema(
    s: &crate::bridge::PayloadSchema,
    ns: &str,
    inv: &Lookup<'_>,
) -> Result<String, BuildError> {
    let value = match (&s.inline, &s.config_map_ref) {
        (Some(v), _) => v.clone(),
        (None, Some(r)) => {
            let data = inv
                .config_maps
                .get(&(ns.to_string(), r.name.clone()))
                .ok_or_else(|| {
                    (
                        reason::CONFIG_MAP_NOT_FOUND,
                        format!(
                            "spec.schema.configMapRef: ConfigMap {:?} not found in namespace {ns}",
                            r.name
                        ),
                    )
                })?;
            let bytes = data.get(&r.key).ok_or_else(|| {
                (
                    reason::CONFIG_MAP_NOT_FOUND,
                    format!(
                        "spec.schema.configMapRef: ConfigMap {:?} has no key {:?}",
                        r.name, r.key
                    ),
                )
            })?;
            // YAML is a superset of JSON: one parser reads both.
            serde_yaml::from_slice::<serde_json::Value>(bytes).map_err(|e| {
                (
                    reason::INVALID_SPEC,
                    format!(
                        "spec.schema.configMapRef: ConfigMap {:?} key {:?} is not JSON or YAML: {e}",
                        r.name, r.key
                    ),
                )
            })?
        }
        (None, None) => {
            return Err((
                reason::INVALID_SPEC,
                "spec.schema: set exactly one of inline and configMapRef".into(),
            ));
        }
    };
    crate::validate::check_json_schema(&value)
        .map_err(|e| (reason::INVALID_SPEC, format!("spec.schema: {e}")))?;
    Ok(value.to_string())
}

fn build_plugin(
    p: &Plugin,
    ns: &str,
    name: &str,
    inv: &Lookup<'_>,
) -> Result<PluginConfig, BuildError> {
    let spec = &p.spec;
    let src = &spec.source;
    let source = if let Some(f) = &src.file {
        SourceConfig::File { path: f.clone() }
    } else if let Some(h) = &src.http {
        SourceConfig::Http {
            url: h.url.clone(),
            sha256: h.sha256.clone(),
        }
    } else if let Some(o) = &src.oci {
        SourceConfig::Oci {
            reference: o.reference.clone(),
            digest: o.digest.clone(),
            insecure: o.insecure,
            credentials: o
                .pull_secret
                .as_ref()
                .map(|name| registry_credentials(inv, ns, name, &o.reference))
                .transpose()?,
        }
    } else if let Some(cm) = &src.config_map {
        let data = inv
            .config_maps
            .get(&(ns.to_string(), cm.name.clone()))
            .ok_or_else(|| {
                (
                    reason::CONFIG_MAP_NOT_FOUND,
                    format!("ConfigMap {:?} not found in namespace {ns}", cm.name),
                )
            })?;
        let bytes = data.get(&cm.key).ok_or_else(|| {
            (
                reason::CONFIG_MAP_NOT_FOUND,
                format!("ConfigMap {:?} has no key {:?}", cm.name, cm.key),
            )
        })?;
        SourceConfig::Inline {
            sha256: hex::encode(Sha256::digest(bytes)),
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    } else {
        return Err((reason::INVALID_SPEC, "spec.source names no source".into()));
    };
    let mut variables = BTreeMap::new();
    for v in &spec.variables {
        variables.insert(v.name.clone(), named_value(inv, ns, v)?.0);
    }
    Ok(PluginConfig {
        namespace: ns.to_string(),
        name: name.to_string(),
        generation: p.metadata.generation,
        source,
        allowed_outbound_hosts: spec.allowed_outbound_hosts.clone(),
        variables,
        memory_bytes: parse_quantity_bytes(&spec.limits.memory).unwrap_or(64 << 20),
        timeout_ms: ms(&spec.limits.timeout),
        max_concurrency: spec.limits.max_concurrency,
        when_busy: spec.limits.when_busy,
        route: spec.route.clone(),
    })
}

/// A nats destination's credentials, resolved from their Secrets.
fn nats_config(
    inv: &Lookup<'_>,
    ns: &str,
    n: &crate::bridge::NatsDestination,
) -> Result<causeway_config::NatsConfig, BuildError> {
    use causeway_config::NatsAuth;
    let auth = if let (Some(user), Some(r)) = (&n.user, &n.password_ref) {
        Some(NatsAuth::UserPassword {
            user: user.clone(),
            password: secret(inv, ns, r)?,
        })
    } else if let Some(r) = &n.token_ref {
        Some(NatsAuth::Token {
            token: secret(inv, ns, r)?,
        })
    } else if let Some(r) = &n.nkey_seed_ref {
        Some(NatsAuth::Nkey {
            seed: secret(inv, ns, r)?,
        })
    } else if let Some(r) = &n.credentials_ref {
        Some(NatsAuth::Credentials {
            creds: secret(inv, ns, r)?,
        })
    } else {
        None
    };
    Ok(causeway_config::NatsConfig { auth })
}
