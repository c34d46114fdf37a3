//! Reading what a render needs: referenced Secrets and ConfigMaps (on demand, by name, so
//! that the operator caches no Secret data), and the pod IPs of the namespace's pools.
//!
//! A worker pod is recognised by ownership, not by its labels: the operator sends the
//! pool's admin token to it and routes plugin calls (with the namespace's internal token)
//! to it, and anyone who may create a pod could copy a label. A pod counts for a pool only
//! when its controller chain ReplicaSet → Deployment → WorkerPool matches by uid, each link
//! read from the API server ([`Owners`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use causeway_crds::common::secret_opted_in;
use causeway_crds::config::INTERNAL_PORT;
use causeway_crds::{Bridge, Inventory, Plugin, WorkerPool};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, ResourceExt};

use super::Error;

/// Names of the Secrets and ConfigMaps that `bridges` and `plugins` refer to.
pub fn referenced(
    bridges: &[Arc<Bridge>],
    plugins: &[Arc<Plugin>],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    for b in bridges {
        if let Some(auth) = &b.spec.ingress.auth {
            secrets.extend(auth.secret_refs().into_iter().map(|r| r.name.clone()));
        }
        for auth in b.spec.streams.iter().filter_map(|s| s.auth.as_ref()) {
            secrets.extend(auth.secret_refs().into_iter().map(|r| r.name.clone()));
        }
        if let Some(s) = &b.spec.subscriptions {
            secrets.extend(s.secret_refs().into_iter().map(|r| r.name.clone()));
        }
        secrets.extend(
            b.spec
                .env
                .iter()
                .filter_map(|v| v.value_from.as_ref())
                .map(|f| f.secret_key_ref.name.clone()),
        );
        for d in &b.spec.destinations {
            if let Some(s) = &d.signing {
                secrets.insert(s.standard_webhooks.secret_ref.name.clone());
            }
            if let Some(n) = &d.nats {
                secrets.extend(n.secret_refs().into_iter().map(|r| r.name.clone()));
            }
        }
        if let Some(s) = b
            .spec
            .notifications
            .as_ref()
            .and_then(|n| n.signing.as_ref())
        {
            secrets.insert(s.standard_webhooks.secret_ref.name.clone());
        }
        if let Some(r) = b
            .spec
            .schema
            .as_ref()
            .and_then(|s| s.config_map_ref.as_ref())
        {
            config_maps.insert(r.name.clone());
        }
    }
    for p in plugins {
        secrets.extend(
            p.spec
                .variables
                .iter()
                .filter_map(|v| v.value_from.as_ref())
                .map(|f| f.secret_key_ref.name.clone()),
        );
        if let Some(cm) = &p.spec.source.config_map {
            config_maps.insert(cm.name.clone());
        }
    }
    (secrets, config_maps)
}

/// Build the namespace's inventory: objects from the stores, Secret and ConfigMap data read
/// now. A missing one is simply absent (the render reports `SecretNotFound`).
pub async fn inventory(
    client: &Client,
    namespace: &str,
    pools: Vec<Arc<WorkerPool>>,
    bridges: Vec<Arc<Bridge>>,
    plugins: Vec<Arc<Plugin>>,
) -> Result<Inventory, Error> {
    let (secret_names, cm_names) = referenced(&bridges, &plugins);
    let mut inv = Inventory {
        pools,
        bridges,
        plugins,
        ..Inventory::default()
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in secret_names {
        let got = secrets.get_opt(&name).await.map_err(|source| Error::Kube {
            verb: "get",
            kind: "Secret".into(),
            namespace: namespace.into(),
            name: name.clone(),
            source,
        })?;
        if let Some(s) = got {
            let (opted_in, data) = secret_data(s);
            let key = (namespace.to_string(), name);
            if opted_in {
                inv.opted_in_secrets.insert(key.clone());
            }
            inv.secrets.insert(key, data);
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for name in cm_names {
        let got = cms.get_opt(&name).await.map_err(|source| Error::Kube {
            verb: "get",
            kind: "ConfigMap".into(),
            namespace: namespace.into(),
            name: name.clone(),
            source,
        })?;
        if let Some(cm) = got {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            inv.config_maps.insert((namespace.to_string(), name), data);
        }
    }
    Ok(inv)
}

/// What a render may see of a Secret: whether it is opted in (`causeway.dev/use: "true"`),
/// and its data only when it is. A Secret that is not opted in is known to exist, so the
/// render can say what to do, but its values never enter the inventory.
pub fn secret_data(s: Secret) -> (bool, BTreeMap<String, Vec<u8>>) {
    if !secret_opted_in(s.metadata.labels.as_ref()) {
        return (false, BTreeMap::new());
    }
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    (true, data)
}

/// The controller chain of the namespace's ReplicaSets and Deployments, by uid: enough to
/// tell which WorkerPool (by uid) a pod belongs to.
#[derive(Clone, Debug, Default)]
pub struct Owners {
    /// uid → (kind, namespace, controller owner reference).
    links: BTreeMap<String, (&'static str, String, Option<OwnerReference>)>,
}

fn controller_of(meta: &ObjectMeta) -> Option<OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .cloned()
}

impl Owners {
    /// From the ReplicaSets and Deployments the operator watches (metadata only).
    pub fn new(
        replica_sets: &[Arc<PartialObjectMeta<ReplicaSet>>],
        deployments: &[Arc<PartialObjectMeta<Deployment>>],
    ) -> Self {
        let mut links = BTreeMap::new();
        let mut add = |kind: &'static str, meta: &ObjectMeta| {
            if let (Some(uid), Some(ns)) = (meta.uid.clone(), meta.namespace.clone()) {
                links.insert(uid, (kind, ns, controller_of(meta)));
            }
        };
        for rs in replica_sets {
            add("ReplicaSet", &rs.metadata);
        }
        for d in deployments {
            add("Deployment", &d.metadata);
        }
        Owners { links }
    }

    /// Follow one controller link: `owner` must be an object of `kind` in `namespace` that
    /// the operator has seen; returns that object's own controller reference.
    fn step(&self, owner: &OwnerReference, kind: &str, namespace: &str) -> Option<OwnerReference> {
        if owner.kind != kind {
            return None;
        }
        let (k, ns, next) = self.links.get(&owner.uid)?;
        (*k == kind && ns == namespace)
            .then(|| next.clone())
            .flatten()
    }

    /// The uid of the WorkerPool whose Deployment's ReplicaSet controls `pod`, if any.
    pub fn pool_uid_of(&self, pod: &Pod) -> Option<String> {
        let ns = pod.metadata.namespace.as_deref()?;
        let rs = controller_of(&pod.metadata)?;
        let deployment = self.step(&rs, "ReplicaSet", ns)?;
        let pool = self.step(&deployment, "Deployment", ns)?;
        (pool.kind == "WorkerPool" && pool.api_version.starts_with("causeway.dev/"))
            .then_some(pool.uid)
    }
}

/// A pod counts when it is not being deleted.
pub fn is_live(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        )
}

/// Live and in phase `Running` (its containers have started), ready or not.
pub fn is_running(pod: &Pod) -> bool {
    is_live(pod) && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Ready condition true.
pub fn is_ready(pod: &Pod) -> bool {
    is_live(pod)
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's IP, when it has one.
pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
}

/// Live pods of one pool (by the pool's uid, through [`Owners`]), sorted by name.
pub fn pods_of(
    pods: &[Arc<Pod>],
    owners: &Owners,
    namespace: &str,
    pool_uid: &str,
) -> Vec<Arc<Pod>> {
    let mut out: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(namespace)
                && is_live(p)
                && owners.pool_uid_of(p).as_deref() == Some(pool_uid)
        })
        .cloned()
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// Internal-port URLs of the ready pods of every pool of `namespace` except `except`.
/// Pools without a ready pod are left out, so the render falls back to their Service name.
/// `pools` maps a pool's uid to its name; pods are assigned to pools through [`Owners`].
pub fn pool_endpoints(
    pods: &[Arc<Pod>],
    owners: &Owners,
    pools: &BTreeMap<String, String>,
    namespace: &str,
    except: &str,
) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for p in pods {
        if p.namespace().as_deref() != Some(namespace) || !is_ready(p) {
            continue;
        }
        let Some(pool) = owners
            .pool_uid_of(p)
            .and_then(|uid| pools.get(&uid).cloned())
        else {
            continue;
        };
        if pool == except {
            continue;
        }
        if let Some(ip) = pod_ip(p) {
            out.entry((namespace.to_string(), pool))
                .or_default()
                .push((p.name_any(), crate::admin::base_url(&ip, INTERNAL_PORT)));
        }
    }
    out.into_iter()
        .map(|(k, mut v)| {
            v.sort();
            (k, v.into_iter().map(|(_, url)| url).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Bridge's `spec.schema.configMapRef` is fetched with the namespace's other
    /// references, so the render resolves it (or reports `ConfigMapNotFound`).
    #[test]
    fn a_bridge_schema_config_map_is_referenced() {
        let inv = causeway_crds::manifest::load_str(
            r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: orders, namespace: shop}
spec:
  destinations: [{name: crm, url: "https://crm.example.com/in"}]
  schema: {configMapRef: {name: order-schemas, key: order.json}}
"#,
            std::path::Path::new("m.yaml"),
        )
        .unwrap();
        let (secrets, config_maps) = referenced(&inv.bridges, &[]);
        assert!(secrets.is_empty());
        assert_eq!(config_maps, BTreeSet::from(["order-schemas".to_string()]));
    }
}
