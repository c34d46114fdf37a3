//! Reading what a render needs: referenced Secrets and ConfigMaps (on demand, by name, so
//! that the operator caches no Secret data), and the pod IPs of the namespace's pools.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use causeway_crds::config::INTERNAL_PORT;
use causeway_crds::{Bridge, Inventory, Plugin, WorkerPool};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::{Api, Client, ResourceExt};

use super::Error;
use crate::builders::POOL_LABEL;

/// Names of the Secrets and ConfigMaps that `bridges` and `plugins` refer to.
pub fn referenced(bridges: &[Arc<Bridge>], plugins: &[Arc<Plugin>]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    for b in bridges {
        if let Some(auth) = &b.spec.ingress.auth {
            secrets.extend(auth.secret_refs().into_iter().map(|r| r.name.clone()));
        }
        secrets.extend(b.spec.env.iter().filter_map(|v| v.value_from.as_ref()).map(|f| f.secret_key_ref.name.clone()));
        for d in &b.spec.destinations {
            if let Some(s) = &d.signing {
                secrets.insert(s.standard_webhooks.secret_ref.name.clone());
            }
        }
    }
    for p in plugins {
        secrets.extend(p.spec.variables.iter().filter_map(|v| v.value_from.as_ref()).map(|f| f.secret_key_ref.name.clone()));
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
        pools: pools.iter().map(|p| p.as_ref().clone()).collect(),
        bridges: bridges.iter().map(|b| b.as_ref().clone()).collect(),
        plugins: plugins.iter().map(|p| p.as_ref().clone()).collect(),
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
            let mut data: BTreeMap<String, Vec<u8>> = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            inv.secrets.insert((namespace.to_string(), name), data);
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
            let mut data: BTreeMap<String, Vec<u8>> = cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            inv.config_maps.insert((namespace.to_string(), name), data);
        }
    }
    Ok(inv)
}

/// A pod counts when it is not being deleted.
pub fn is_live(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
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
    pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty())
}

/// Live pods of one pool, sorted by name.
pub fn pods_of(pods: &[Arc<Pod>], namespace: &str, pool: &str) -> Vec<Arc<Pod>> {
    let mut out: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace) && p.labels().get(POOL_LABEL).map(String::as_str) == Some(pool) && is_live(p))
        .cloned()
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// Internal-port URLs of the ready pods of every pool of `namespace` except `except`.
/// Pools without a ready pod are left out, so the render falls back to their Service name.
pub fn pool_endpoints(pods: &[Arc<Pod>], namespace: &str, except: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for p in pods {
        if p.namespace().as_deref() != Some(namespace) || !is_ready(p) {
            continue;
        }
        let Some(pool) = p.labels().get(POOL_LABEL).cloned() else { continue };
        if pool == except {
            continue;
        }
        if let Some(ip) = pod_ip(p) {
            out.entry((namespace.to_string(), pool)).or_default().push((p.name_any(), crate::admin::base_url(&ip, INTERNAL_PORT)));
        }
    }
    out.into_iter()
        .map(|(k, mut v)| {
            v.sort();
            (k, v.into_iter().map(|(_, url)| url).collect())
        })
        .collect()
}
