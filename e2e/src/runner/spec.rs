//! What a pod asks for, translated to a host process: which binary, which argv, which
//! mounts become which directories. Pure functions, unit-tested; nothing here talks to the
//! API server or starts anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Probe, Volume};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The binaries this runner can stand in for, by the name an image would carry them under
/// (`/usr/local/bin/<name>` in the project's Dockerfile).
pub const KNOWN_BINARIES: [&str; 2] = ["causeway", "causeway-operator"];
/// The image entrypoint of the project's Dockerfile, used when a container sets no `command`.
pub const IMAGE_ENTRYPOINT: &str = "/usr/local/bin/causeway";
/// Where the kubelet mounts the ServiceAccount token; the runner writes a kubeconfig instead.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why a pod cannot be run here: it stays Pending (unbound) and the reason is logged once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrunnable {
    #[error("pod has no spec")]
    NoSpec,
    #[error("init containers are not supported by the e2e pod runner")]
    InitContainers,
    #[error("container {container}: {program:?} is not one of {KNOWN_BINARIES:?}")]
    UnknownProgram { container: String, program: String },
    #[error("volume {volume}: {kind} volumes are not supported by the e2e pod runner")]
    UnsupportedVolume { volume: String, kind: &'static str },
    #[error("container {container}: mounts unknown volume {volume}")]
    UnknownVolume { container: String, volume: String },
}

/// One container as a process.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    pub name: String,
    /// The locally built binary.
    pub program: PathBuf,
    /// Arguments after the program, before `$(VAR)` expansion and rewriting.
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub env_from: Vec<k8s_openapi::api::core::v1::EnvFromSource>,
    /// `(mountPath, volume name, subPath)`.
    pub mounts: Vec<(String, String, Option<String>)>,
    /// Named container ports, for probes.
    pub ports: BTreeMap<String, u16>,
    /// Every declared container port, checked free on the pod's address before it is given.
    pub port_numbers: Vec<u16>,
    pub readiness: Option<HttpProbe>,
    pub liveness: Option<HttpProbe>,
}

/// An httpGet probe, resolved to a port number. Other probe kinds count as success.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpProbe {
    pub path: String,
    pub port: u16,
    pub initial_delay_s: u64,
    pub period_s: u64,
    pub timeout_s: u64,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

/// What a volume becomes on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumePlan {
    /// A directory per claim (by the claim's uid) that outlives the pod.
    Claim { claim: String },
    /// A fresh directory per pod.
    EmptyDir,
    /// Files written from a Secret (all keys, or the listed items).
    Secret {
        name: String,
        items: Vec<(String, String)>,
        optional: bool,
    },
    /// Files written from a ConfigMap.
    ConfigMap {
        name: String,
        items: Vec<(String, String)>,
        optional: bool,
    },
    /// Projected sources, as the ServiceAccount admission plugin injects them
    /// (`kube-api-access-*`: token, `kube-root-ca.crt`, the namespace).
    Projected { sources: Vec<ProjectedFile> },
}

/// One file (or set of files) of a projected volume.
#[derive(Debug, Clone, PartialEq)]
pub enum ProjectedFile {
    Token {
        path: String,
        audience: Option<String>,
        expiration_s: Option<i64>,
    },
    ConfigMap {
        name: String,
        items: Vec<(String, String)>,
        optional: bool,
    },
    Secret {
        name: String,
        items: Vec<(String, String)>,
        optional: bool,
    },
    /// `(path, fieldPath)`.
    Field { path: String, field: String },
}

/// A whole pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPlan {
    pub containers: Vec<ContainerPlan>,
    pub volumes: BTreeMap<String, VolumePlan>,
    pub restart_policy: RestartPolicy,
    pub grace_period_s: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// Decide whether the runner can run `pod`, and how.
pub fn plan(pod: &Pod, bin_dir: &Path) -> Result<PodPlan, Unrunnable> {
    let spec = pod.spec.as_ref().ok_or(Unrunnable::NoSpec)?;
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(Unrunnable::InitContainers);
    }
    let mut volumes = BTreeMap::new();
    for v in spec.volumes.iter().flatten() {
        volumes.insert(v.name.clone(), volume_plan(v)?);
    }
    let mut containers = Vec::new();
    for c in &spec.containers {
        let (program, args) = program(c, bin_dir)?;
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            if !volumes.contains_key(&m.name) {
                return Err(Unrunnable::UnknownVolume {
                    container: c.name.clone(),
                    volume: m.name.clone(),
                });
            }
            mounts.push((
                m.mount_path.clone(),
                m.name.clone(),
                m.sub_path.clone().filter(|s| !s.is_empty()),
            ));
        }
        let ports: BTreeMap<String, u16> = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
            .collect();
        let port_numbers = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| u16::try_from(p.container_port).ok())
            .collect();
        containers.push(ContainerPlan {
            name: c.name.clone(),
            program,
            args,
            env: c.env.clone().unwrap_or_default(),
            env_from: c.env_from.clone().unwrap_or_default(),
            mounts,
            readiness: c
                .readiness_probe
                .as_ref()
                .and_then(|p| http_probe(p, &ports)),
            liveness: c
                .liveness_probe
                .as_ref()
                .and_then(|p| http_probe(p, &ports)),
            ports,
            port_numbers,
        });
    }
    let restart_policy = match spec.restart_policy.as_deref() {
        Some("Never") => RestartPolicy::Never,
        Some("OnFailure") => RestartPolicy::OnFailure,
        _ => RestartPolicy::Always,
    };
    Ok(PodPlan {
        containers,
        volumes,
        restart_policy,
        grace_period_s: spec.termination_grace_period_seconds.unwrap_or(30).max(0),
    })
}

/// The local binary and its arguments, as the kubelet composes `command` and `args` with
/// the image's entrypoint: `command` replaces the entrypoint; without it the entrypoint
/// (`/usr/local/bin/causeway` in this project's image) runs with `args`.
pub fn program(c: &Container, bin_dir: &Path) -> Result<(PathBuf, Vec<String>), Unrunnable> {
    let mut argv: Vec<String> = match c.command.as_ref().filter(|c| !c.is_empty()) {
        Some(cmd) => cmd.clone(),
        None => vec![IMAGE_ENTRYPOINT.to_string()],
    };
    argv.extend(c.args.iter().flatten().cloned());
    let first = argv.remove(0);
    let base = first.rsplit('/').next().unwrap_or(&first);
    if !KNOWN_BINARIES.contains(&base) {
        return Err(Unrunnable::UnknownProgram {
            container: c.name.clone(),
            program: first,
        });
    }
    Ok((bin_dir.join(base), argv))
}

fn items_of(items: &Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>) -> Vec<(String, String)> {
    items
        .iter()
        .flatten()
        .map(|i| (i.key.clone(), i.path.clone()))
        .collect()
}

fn volume_plan(v: &Volume) -> Result<VolumePlan, Unrunnable> {
    let unsupported = |kind| Unrunnable::UnsupportedVolume {
        volume: v.name.clone(),
        kind,
    };
    if let Some(pvc) = &v.persistent_volume_claim {
        return Ok(VolumePlan::Claim {
            claim: pvc.claim_name.clone(),
        });
    }
    if v.empty_dir.is_some() {
        return Ok(VolumePlan::EmptyDir);
    }
    if let Some(s) = &v.secret {
        return Ok(VolumePlan::Secret {
            name: s.secret_name.clone().unwrap_or_default(),
            items: items_of(&s.items),
            optional: s.optional.unwrap_or(false),
        });
    }
    if let Some(cm) = &v.config_map {
        return Ok(VolumePlan::ConfigMap {
            name: cm.name.clone(),
            items: items_of(&cm.items),
            optional: cm.optional.unwrap_or(false),
        });
    }
    if let Some(p) = &v.projected {
        let mut sources = Vec::new();
        for s in p.sources.iter().flatten() {
            if let Some(t) = &s.service_account_token {
                sources.push(ProjectedFile::Token {
                    path: t.path.clone(),
                    audience: t.audience.clone().filter(|a| !a.is_empty()),
                    expiration_s: t.expiration_seconds,
                });
            } else if let Some(cm) = &s.config_map {
                sources.push(ProjectedFile::ConfigMap {
                    name: cm.name.clone(),
                    items: items_of(&cm.items),
                    optional: cm.optional.unwrap_or(false),
                });
            } else if let Some(sec) = &s.secret {
                sources.push(ProjectedFile::Secret {
                    name: sec.name.clone(),
                    items: items_of(&sec.items),
                    optional: sec.optional.unwrap_or(false),
                });
            } else if let Some(d) = &s.downward_api {
                for i in d.items.iter().flatten() {
                    match &i.field_ref {
                        Some(f) => sources.push(ProjectedFile::Field {
                            path: i.path.clone(),
                            field: f.field_path.clone(),
                        }),
                        None => return Err(unsupported("projected downwardAPI resourceFieldRef")),
                    }
                }
            } else {
                return Err(unsupported("projected (clusterTrustBundle/podCertificate)"));
            }
        }
        return Ok(VolumePlan::Projected { sources });
    }
    if v.host_path.is_some() {
        return Err(unsupported("hostPath"));
    }
    if v.downward_api.is_some() {
        return Err(unsupported("downwardAPI"));
    }
    Err(unsupported("this kind of"))
}

fn http_probe(p: &Probe, ports: &BTreeMap<String, u16>) -> Option<HttpProbe> {
    let get = p.http_get.as_ref()?;
    let port = match &get.port {
        IntOrString::Int(n) => u16::try_from(*n).ok()?,
        IntOrString::String(name) => match ports.get(name) {
            Some(p) => *p,
            None => name.parse().ok()?,
        },
    };
    let pos = |v: Option<i32>, d: i32| u64::try_from(v.unwrap_or(d).max(0)).unwrap_or(0);
    Some(HttpProbe {
        path: get.path.clone().unwrap_or_else(|| "/".into()),
        port,
        initial_delay_s: pos(p.initial_delay_seconds, 0),
        period_s: pos(p.period_seconds, 10).max(1),
        timeout_s: pos(p.timeout_seconds, 1).max(1),
        failure_threshold: u32::try_from(p.failure_threshold.unwrap_or(3).max(1)).unwrap_or(3),
        success_threshold: u32::try_from(p.success_threshold.unwrap_or(1).max(1)).unwrap_or(1),
    })
}

/// Kubernetes' `$(VAR)` expansion (as in command, args and env values): `$(NAME)` becomes
/// the value of NAME when it is defined and stays as written otherwise; `$$` is a literal
/// `$`, so `$$(NAME)` gives `$(NAME)`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(close) => {
                    let name = &tail[..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &tail[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = tail;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Rewrites what only makes sense inside a container of its own:
/// - a wildcard listen address (`0.0.0.0:P`, `[::]:P`) becomes the pod's own loopback
///   address, since all pods share the host's network namespace here;
/// - a path under a volume's `mountPath` (the whole value, or the part after `=`) becomes
///   the host directory that stands for the volume. The longest mount path wins.
pub fn rewrite(value: &str, pod_ip: &str, mounts: &[(String, PathBuf)]) -> String {
    let v = value
        .replace("0.0.0.0:", &format!("{pod_ip}:"))
        .replace("[::]:", &format!("{pod_ip}:"));
    let (prefix, path) = match v.split_once('=') {
        Some((k, p)) if p.starts_with('/') => (format!("{k}="), p.to_string()),
        _ => (String::new(), v.clone()),
    };
    let mut sorted: Vec<&(String, PathBuf)> = mounts.iter().collect();
    sorted.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    for (mount, host) in sorted {
        let mount = mount.trim_end_matches('/');
        if mount.is_empty() {
            continue;
        }
        if path == mount {
            return format!("{prefix}{}", host.display());
        }
        if let Some(tail) = path.strip_prefix(mount).and_then(|t| t.strip_prefix('/')) {
            return format!("{prefix}{}", host.join(tail).display());
        }
    }
    v
}

/// Does `pod`'s nodeSelector allow a node with `labels`? (Affinity is not evaluated.)
pub fn selects(pod: &Pod, labels: &BTreeMap<String, String>) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn command_replaces_the_entrypoint_and_args_follow() {
        let bin = Path::new("/t/debug");
        let c = container(
            serde_json::json!({"name": "operator", "command": ["/usr/local/bin/causeway-operator"], "args": ["--a=1"]}),
        );
        assert_eq!(
            program(&c, bin).unwrap(),
            (
                PathBuf::from("/t/debug/causeway-operator"),
                vec!["--a=1".to_string()]
            )
        );
        let c =
            container(serde_json::json!({"name": "worker", "args": ["worker", "--pool", "ns/p"]}));
        assert_eq!(
            program(&c, bin).unwrap().0,
            PathBuf::from("/t/debug/causeway")
        );
        assert_eq!(
            program(&c, bin).unwrap().1,
            vec!["worker", "--pool", "ns/p"]
        );
        let c = container(serde_json::json!({"name": "x", "command": ["causeway", "up"]}));
        assert_eq!(
            program(&c, bin).unwrap(),
            (PathBuf::from("/t/debug/causeway"), vec!["up".to_string()])
        );
        let c = container(serde_json::json!({"name": "nginx", "command": ["/usr/sbin/nginx"]}));
        assert!(matches!(
            program(&c, bin),
            Err(Unrunnable::UnknownProgram { .. })
        ));
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = |n: &str| match n {
            "POD_IP" => Some("127.0.1.2".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand("--addr=$(POD_IP):8080", &vars),
            "--addr=127.0.1.2:8080"
        );
        assert_eq!(expand("$(MISSING)/x", &vars), "$(MISSING)/x");
        assert_eq!(expand("$$(POD_IP)", &vars), "$(POD_IP)");
        assert_eq!(expand("a$$b", &vars), "a$b");
        assert_eq!(expand("$(EMPTY)x$", &vars), "x$");
        assert_eq!(expand("$(unterminated", &vars), "$(unterminated");
        assert_eq!(expand("$x $(POD_IP)", &vars), "$x 127.0.1.2");
    }

    #[test]
    fn rewrite_maps_wildcards_and_mount_paths() {
        let mounts = vec![
            (
                "/var/lib/causeway".to_string(),
                PathBuf::from("/e2e/vol/data"),
            ),
            ("/var/lib".to_string(), PathBuf::from("/e2e/vol/lib")),
            ("/tmp".to_string(), PathBuf::from("/e2e/pod/tmp")),
        ];
        assert_eq!(
            rewrite("0.0.0.0:8080", "127.0.1.3", &mounts),
            "127.0.1.3:8080"
        );
        assert_eq!(
            rewrite("--listen=[::]:9090", "127.0.1.3", &mounts),
            "--listen=127.0.1.3:9090"
        );
        assert_eq!(rewrite("/var/lib/causeway", "ip", &mounts), "/e2e/vol/data");
        assert_eq!(
            rewrite("/var/lib/causeway/store", "ip", &mounts),
            "/e2e/vol/data/store"
        );
        assert_eq!(
            rewrite("--data-dir=/var/lib/causeway", "ip", &mounts),
            "--data-dir=/e2e/vol/data"
        );
        assert_eq!(
            rewrite("/var/lib/other", "ip", &mounts),
            "/e2e/vol/lib/other"
        );
        assert_eq!(rewrite("/var/libx", "ip", &mounts), "/var/libx");
        assert_eq!(rewrite("127.0.0.1:9090", "ip", &mounts), "127.0.0.1:9090");
        assert_eq!(rewrite("worker", "ip", &mounts), "worker");
    }

    fn worker_pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w", "namespace": "shop"},
            "spec": {
                "containers": [{
                    "name": "worker",
                    "args": ["worker", "--data-dir", "/var/lib/causeway"],
                    "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9090}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 2},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 9090}},
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/var/lib/causeway"},
                        {"name": "kube-api-access-x", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": true}
                    ]
                }],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "causeway-p-data"}},
                    {"name": "kube-api-access-x", "projected": {"sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
                    ]}}
                ],
                "terminationGracePeriodSeconds": 5
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_worker_pod_plans_its_probes_volumes_and_grace() {
        let p = plan(&worker_pod(), Path::new("/bin")).unwrap();
        assert_eq!(p.restart_policy, RestartPolicy::Always);
        assert_eq!(p.grace_period_s, 5);
        let c = &p.containers[0];
        assert_eq!(c.program, PathBuf::from("/bin/causeway"));
        let r = c.readiness.as_ref().unwrap();
        assert_eq!(
            (r.path.as_str(), r.port, r.period_s, r.failure_threshold),
            ("/readyz", 9090, 2, 3)
        );
        assert_eq!(c.liveness.as_ref().unwrap().period_s, 10);
        assert_eq!(c.port_numbers, vec![8080, 9090]);
        assert_eq!(
            p.volumes["data"],
            VolumePlan::Claim {
                claim: "causeway-p-data".into()
            }
        );
        match &p.volumes["kube-api-access-x"] {
            VolumePlan::Projected { sources } => assert_eq!(sources.len(), 3),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unsupported_pods_are_refused_with_a_reason() {
        let mut pod = worker_pod();
        pod.spec.as_mut().unwrap().volumes.as_mut().unwrap().push(
            serde_json::from_value(serde_json::json!({"name": "h", "hostPath": {"path": "/"}}))
                .unwrap(),
        );
        assert!(matches!(
            plan(&pod, Path::new("/b")),
            Err(Unrunnable::UnsupportedVolume {
                kind: "hostPath",
                ..
            })
        ));
        let mut pod = worker_pod();
        pod.spec.as_mut().unwrap().init_containers = Some(vec![container(
            serde_json::json!({"name": "i", "command": ["causeway"]}),
        )]);
        assert_eq!(plan(&pod, Path::new("/b")), Err(Unrunnable::InitContainers));
    }

    #[test]
    fn node_selector_must_match() {
        let mut pod = worker_pod();
        let labels = BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())]);
        assert!(selects(&pod, &labels));
        pod.spec.as_mut().unwrap().node_selector = Some(BTreeMap::from([(
            "kubernetes.io/os".into(),
            "linux".into(),
        )]));
        assert!(selects(&pod, &labels));
        pod.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("disk".into(), "ssd".into())]));
        assert!(!selects(&pod, &labels));
    }
}
