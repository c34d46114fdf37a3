//! A container's environment, as the kubelet builds it: `envFrom` first, then `env` in
//! order (later wins), each value `$(VAR)`-expanded against what came before; `fieldRef`,
//! `secretKeyRef` and `configMapKeyRef` resolved. Pure: the Secrets and ConfigMaps it
//! needs are fetched by the caller ([`needed`]) and passed in.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

use super::spec::{ContainerPlan, expand};

/// Data of Secrets or ConfigMaps by name; `None` when the object does not exist.
pub type Objects = BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>;

/// What the environment is built from.
pub struct EnvContext<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub node_name: &'a str,
    pub secrets: &'a Objects,
    pub config_maps: &'a Objects,
}

/// Why a container cannot start yet (the kubelet's `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("couldn't find key {key} in {kind} {name:?}")]
    KeyNotFound {
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("env {name}: {what} is not supported by the e2e pod runner")]
    Unsupported { name: String, what: String },
}

/// The Secrets and ConfigMaps a container's environment reads.
pub fn needed(c: &ContainerPlan) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    for f in &c.env_from {
        if let Some(s) = &f.secret_ref {
            secrets.insert(s.name.clone());
        }
        if let Some(cm) = &f.config_map_ref {
            config_maps.insert(cm.name.clone());
        }
    }
    for e in &c.env {
        if let Some(src) = &e.value_from {
            if let Some(s) = &src.secret_key_ref {
                secrets.insert(s.name.clone());
            }
            if let Some(cm) = &src.config_map_key_ref {
                config_maps.insert(cm.name.clone());
            }
        }
    }
    (secrets, config_maps)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Resolve `fieldPath` of the downward API.
pub fn field(ctx: &EnvContext<'_>, path: &str) -> Option<String> {
    let meta = &ctx.pod.metadata;
    let in_map = |m: &Option<BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            m.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => Some(ctx.node_name.to_string()),
        "spec.serviceAccountName" => ctx
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(ctx.pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(ctx.host_ip.to_string()),
        p if p.starts_with("metadata.labels['") => in_map(&meta.labels, "metadata.labels['"),
        p if p.starts_with("metadata.annotations['") => {
            in_map(&meta.annotations, "metadata.annotations['")
        }
        _ => None,
    }
}

/// The environment of `c`, in definition order (a later definition of a name replaces an
/// earlier one in place, as `docker run -e` would see it).
pub fn resolve(c: &ContainerPlan, ctx: &EnvContext<'_>) -> Result<Vec<(String, String)>, EnvError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| match vars
        .iter_mut()
        .find(|(n, _)| *n == k)
    {
        Some(slot) => slot.1 = v,
        None => vars.push((k, v)),
    };
    for f in &c.env_from {
        let prefix = f.prefix.clone().unwrap_or_default();
        if let Some(s) = &f.secret_ref {
            match ctx.secrets.get(&s.name).cloned().flatten() {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut vars, format!("{prefix}{k}"), text(v))),
                None if s.optional.unwrap_or(false) => {}
                None => return Err(EnvError::SecretNotFound(s.name.clone())),
            }
        }
        if let Some(cm) = &f.config_map_ref {
            match ctx.config_maps.get(&cm.name).cloned().flatten() {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut vars, format!("{prefix}{k}"), text(v))),
                None if cm.optional.unwrap_or(false) => {}
                None => return Err(EnvError::ConfigMapNotFound(cm.name.clone())),
            }
        }
    }
    for e in &c.env {
        let value = match &e.value_from {
            None => {
                let snapshot = vars.clone();
                let lookup = move |n: &str| {
                    snapshot
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                };
                Some(expand(e.value.as_deref().unwrap_or(""), &lookup))
            }
            Some(src) => {
                if let Some(f) = &src.field_ref {
                    Some(
                        field(ctx, &f.field_path).ok_or_else(|| EnvError::Unsupported {
                            name: e.name.clone(),
                            what: format!("fieldRef {}", f.field_path),
                        })?,
                    )
                } else if let Some(s) = &src.secret_key_ref {
                    lookup_key(
                        ctx.secrets,
                        "secret",
                        &s.name,
                        &s.key,
                        s.optional.unwrap_or(false),
                    )?
                } else if let Some(cm) = &src.config_map_key_ref {
                    lookup_key(
                        ctx.config_maps,
                        "configmap",
                        &cm.name,
                        &cm.key,
                        cm.optional.unwrap_or(false),
                    )?
                } else {
                    return Err(EnvError::Unsupported {
                        name: e.name.clone(),
                        what: "resourceFieldRef/fileKeyRef".into(),
                    });
                }
            }
        };
        if let Some(v) = value {
            set(&mut vars, e.name.clone(), v);
        }
    }
    Ok(vars)
}

fn lookup_key(
    objects: &Objects,
    kind: &'static str,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<String>, EnvError> {
    match objects.get(name).cloned().flatten() {
        None if optional => Ok(None),
        None if kind == "secret" => Err(EnvError::SecretNotFound(name.into())),
        None => Err(EnvError::ConfigMapNotFound(name.into())),
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(text(v))),
            None if optional => Ok(None),
            None => Err(EnvError::KeyNotFound {
                kind,
                name: name.into(),
                key: key.into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::spec::plan;
    use super::*;
    use std::path::Path;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w-1", "namespace": "shop", "uid": "u1", "labels": {"causeway.dev/pool": "a"}},
            "spec": {"serviceAccountName": "sa", "containers": [{
                "name": "worker",
                "command": ["causeway"],
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POOL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['causeway.dev/pool']"}}},
                    {"name": "ADDR", "value": "$(POD_IP):8080"},
                    {"name": "LATER", "value": "$(UNDEFINED_YET)"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
                    {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                    {"name": "CM_A", "value": "overridden"}
                ]
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn env_resolves_fields_refs_and_expansion_in_order() {
        let pod = pod();
        let p = plan(&pod, Path::new("/b")).unwrap();
        let c = &p.containers[0];
        let (s, cm) = needed(c);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec!["nope", "s"]);
        assert_eq!(cm.into_iter().collect::<Vec<_>>(), vec!["cm"]);
        let secrets: Objects = BTreeMap::from([
            (
                "s".into(),
                Some(BTreeMap::from([("token".into(), b"t0k".to_vec())])),
            ),
            ("nope".into(), None),
        ]);
        let cms: Objects = BTreeMap::from([(
            "cm".into(),
            Some(BTreeMap::from([
                ("A".into(), b"1".to_vec()),
                ("B".into(), b"2".to_vec()),
            ])),
        )]);
        let ctx = EnvContext {
            pod: &pod,
            pod_ip: "127.0.1.9",
            host_ip: "127.0.0.1",
            node_name: "n",
            secrets: &secrets,
            config_maps: &cms,
        };
        let env = resolve(c, &ctx).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CM_A"), Some("overridden"));
        assert_eq!(get("CM_B"), Some("2"));
        assert_eq!(get("POD_IP"), Some("127.0.1.9"));
        assert_eq!(get("POD_NAME"), Some("w-1"));
        assert_eq!(get("POOL"), Some("a"));
        assert_eq!(get("ADDR"), Some("127.0.1.9:8080"));
        assert_eq!(get("LATER"), Some("$(UNDEFINED_YET)"));
        assert_eq!(get("TOKEN"), Some("t0k"));
        assert_eq!(get("OPT"), None);
        assert_eq!(env[0].0, "CM_A");
    }

    #[test]
    fn a_missing_secret_blocks_the_start() {
        let pod = pod();
        let p = plan(&pod, Path::new("/b")).unwrap();
        let secrets: Objects = BTreeMap::from([("s".into(), None)]);
        let cms: Objects = BTreeMap::from([("cm".into(), Some(BTreeMap::new()))]);
        let ctx = EnvContext {
            pod: &pod,
            pod_ip: "i",
            host_ip: "h",
            node_name: "n",
            secrets: &secrets,
            config_maps: &cms,
        };
        assert_eq!(
            resolve(&p.containers[0], &ctx),
            Err(EnvError::SecretNotFound("s".into()))
        );
    }
}
