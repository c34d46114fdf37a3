//! The Deployment of worker pods and the embedded store's volume claim.

use std::collections::BTreeMap;

use causeway_crds::config::{ADMIN_PORT, INGRESS_PORT, INTERNAL_PORT};
use causeway_crds::pool::StorageType;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, ContainerPort, DownwardAPIProjection,
    DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    LocalObjectReference, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ProjectedVolumeSource, SeccompProfile, SecretKeySelector, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::{
    BuildSettings, DATA_DIR, POD_SPEC_HASH_ANNOTATION, PoolView, data_claim_name, object_name,
};

/// User and group the worker runs as (the image's non-root user).
pub const WORKER_UID: i64 = 65532;
/// Environment variable carrying the postgres connection URL, from the pool's Secret.
pub const POSTGRES_URL_ENV: &str = "CAUSEWAY_POSTGRES_URL";
/// Environment variable of the worker's `--deny-destination-cidr` list (comma-separated).
/// An environment variable rather than a flag: a worker image that predates it ignores it.
pub const DENY_DESTINATION_CIDRS_ENV: &str = "CAUSEWAY_DENY_DESTINATION_CIDRS";
/// Where the Kubernetes client looks for in-cluster credentials (token, ca.crt, namespace).
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Lifetime of the worker's projected ServiceAccount token (the API's minimum). The kubelet
/// renews it at 80 % of that, and the worker's client re-reads the file every minute.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 600;
/// Name of the projected credentials volume.
pub const TOKEN_VOLUME: &str = "kube-api-access";

/// The worker's API credentials as a projected volume, in place of the automounted one: a
/// short-lived token bound to the pod, the cluster CA and the namespace, mounted only into
/// the worker container (which reads its config Secret with it), read-only. Nothing else in
/// the pod gets a token (`automountServiceAccountToken: false`).
pub fn token_volume() -> Volume {
    Volume {
        name: TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o444),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        audience: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                api_version: Some("v1".into()),
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

fn image(view: &PoolView<'_>, settings: &BuildSettings) -> String {
    view.pool
        .spec
        .image
        .clone()
        .unwrap_or_else(|| settings.worker_image.clone())
}

/// Hash of what is allowed to roll the pods: image, resources and storage. Bridges and
/// plugins live in the config Secret, which workers reload live, so they never change it.
pub fn pod_spec_hash(view: &PoolView<'_>, settings: &BuildSettings) -> String {
    let input = serde_json::json!({
        "image": image(view, settings),
        "resources": view.pool.spec.resources,
        "storage": view.pool.spec.storage,
    });
    hex::encode(&Sha256::digest(input.to_string().as_bytes())[..8])
}

/// The pool's Deployment. Embedded storage means one replica and strategy `Recreate` (the
/// volume is ReadWriteOnce and the store has one writer); postgres allows any number and
/// rolls. With an autoscaler the replica count is left to it.
pub fn deployment(view: &PoolView<'_>, settings: &BuildSettings) -> Deployment {
    let spec = &view.pool.spec;
    let embedded = spec.storage.type_ == StorageType::Embedded;
    let replicas = if spec.autoscaling.is_some() && !embedded {
        None
    } else if embedded {
        Some(spec.replicas.clamp(0, 1))
    } else {
        Some(spec.replicas.max(0))
    };
    let strategy = if embedded {
        DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        }
    } else {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: Some(IntOrString::Int(0)),
                max_surge: Some(IntOrString::Int(1)),
            }),
        }
    };

    let mut pod_labels = spec.pod_labels.clone();
    pod_labels.extend(view.labels());
    let mut annotations = spec.pod_annotations.clone();
    annotations.insert(
        POD_SPEC_HASH_ANNOTATION.into(),
        pod_spec_hash(view, settings),
    );

    let data_volume = if embedded {
        Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: data_claim_name(&view.name),
                read_only: None,
            }),
            ..Volume::default()
        }
    } else {
        // Postgres holds the events; the compiled-plugin cache lives on scratch space.
        Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }
    };
    let tmp_volume = Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };

    let mut env = vec![
        field_env("POD_IP", "status.podIP"),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
    ];
    if !settings.deny_destination_cidrs.is_empty() {
        env.push(EnvVar {
            name: DENY_DESTINATION_CIDRS_ENV.into(),
            value: Some(settings.deny_destination_cidrs.join(",")),
            value_from: None,
        });
    }
    // OpenTelemetry: the platform's collector and sampling, the same for every pool.
    env.extend(settings.otel_env.iter().map(|(name, value)| EnvVar {
        name: name.clone(),
        value: Some(value.clone()),
        value_from: None,
    }));
    if let (StorageType::Postgres, Some(pg)) = (spec.storage.type_, &spec.storage.postgres) {
        env.push(EnvVar {
            name: POSTGRES_URL_ENV.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: pg.url_secret_ref.name.clone(),
                    key: pg.url_secret_ref.key.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        });
    }

    let container = Container {
        name: "worker".into(),
        image: Some(image(view, settings)),
        image_pull_policy: spec
            .image_pull_policy
            .map(|p| p.as_str().to_string())
            .or_else(|| settings.image_pull_policy.clone()),
        args: Some(worker_args(&view.namespace, &view.name)),
        ports: Some(vec![
            container_port("http", INGRESS_PORT),
            container_port("internal", INTERNAL_PORT),
            container_port("admin", ADMIN_PORT),
        ]),
        env: Some(env),
        resources: spec.resources.clone(),
        readiness_probe: Some(probe("/readyz", 2, 5)),
        liveness_probe: Some(probe("/healthz", 10, 10)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: TOKEN_VOLUME.into(),
                mount_path: SERVICE_ACCOUNT_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    Deployment {
        metadata: view.meta(object_name(&view.name)),
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(view.selector()),
                ..LabelSelector::default()
            },
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(view.service_account_name()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    image_pull_secrets: image_pull_secrets(view, settings),
                    containers: vec![container],
                    volumes: Some(vec![data_volume, tmp_volume, token_volume()]),
                    node_selector: (!spec.node_selector.is_empty())
                        .then(|| spec.node_selector.clone()),
                    tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
                    affinity: spec.affinity.clone(),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(WORKER_UID),
                        run_as_group: Some(WORKER_UID),
                        fs_group: Some(WORKER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The pool's own pull secrets, else the operator's; none: the field stays unset.
fn image_pull_secrets(
    view: &PoolView<'_>,
    settings: &BuildSettings,
) -> Option<Vec<LocalObjectReference>> {
    let names: Vec<String> = if view.pool.spec.image_pull_secrets.is_empty() {
        settings.image_pull_secrets.clone()
    } else {
        view.pool
            .spec
            .image_pull_secrets
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    (!names.is_empty()).then(|| {
        names
            .into_iter()
            .map(|name| LocalObjectReference { name })
            .collect()
    })
}

/// `causeway worker …` arguments (the image's entrypoint is `causeway`).
pub fn worker_args(namespace: &str, pool: &str) -> Vec<String> {
    [
        "worker".to_string(),
        "--pool".into(),
        format!("{namespace}/{pool}"),
        "--listen".into(),
        format!("0.0.0.0:{INGRESS_PORT}"),
        "--admin".into(),
        format!("0.0.0.0:{ADMIN_PORT}"),
        "--internal".into(),
        format!("0.0.0.0:{INTERNAL_PORT}"),
        "--data-dir".into(),
        DATA_DIR.into(),
    ]
    .to_vec()
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// The embedded store's ReadWriteOnce volume, when storage is `embedded`.
pub fn data_claim(view: &PoolView<'_>) -> Option<PersistentVolumeClaim> {
    let storage = &view.pool.spec.storage;
    if storage.type_ != StorageType::Embedded {
        return None;
    }
    let mut metadata = view.meta(data_claim_name(&view.name));
    if view
        .pool
        .spec
        .persistent_volume_claim_retention_policy
        .when_deleted
        == causeway_crds::pool::PvcRetention::Retain
    {
        // No owner: the garbage collector leaves the claim when the pool goes, and the
        // operator never deletes an unowned claim. A pool of the same name adopts it.
        metadata.owner_references = None;
    }
    Some(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(storage.size.clone()),
                )])),
                limits: None,
            }),
            storage_class_name: storage.storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use causeway_crds::common::SecretKeyRef;
    use causeway_crds::pool::{Autoscaling, PostgresStorage};

    /// Issue 18 (traces): the operator's `OTEL_*` variables reach every worker container;
    /// with none set, the worker gets no `OTEL_` variable (export stays off).
    #[test]
    fn otel_variables_of_the_operator_reach_the_worker_container() {
        let env = |settings: &BuildSettings| -> Vec<(String, Option<String>)> {
            let p = pool("p", default_spec());
            let view = PoolView::new(&p).unwrap();
            deployment(&view, settings)
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .containers[0]
                .env
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.name.starts_with("OTEL_"))
                .map(|e| (e.name, e.value))
                .collect()
        };
        assert!(env(&settings()).is_empty());
        let mut s = settings();
        s.otel_env = vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                "http://collector.observability:4318".into(),
            ),
            (
                "OTEL_TRACES_SAMPLER".into(),
                "parentbased_traceidratio".into(),
            ),
        ];
        assert_eq!(
            env(&s),
            vec![
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                    Some("http://collector.observability:4318".to_string())
                ),
                (
                    "OTEL_TRACES_SAMPLER".to_string(),
                    Some("parentbased_traceidratio".to_string())
                ),
            ]
        );
    }

    /// Issue 18: pull policy and pull secrets come from the pool, else from the operator
    /// (the chart), else stay unset (the cluster's defaults).
    #[test]
    fn image_pull_policy_and_secrets_from_the_pool_else_the_operator() {
        let pod = |spec: causeway_crds::WorkerPoolSpec, settings: &BuildSettings| {
            let p = pool("p", spec);
            let view = PoolView::new(&p).unwrap();
            deployment(&view, settings)
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
        };
        let names = |pod: &PodSpec| -> Vec<String> {
            pod.image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect()
        };
        let bare = pod(default_spec(), &settings());
        assert_eq!(bare.containers[0].image_pull_policy, None);
        assert_eq!(bare.image_pull_secrets, None);

        let mut operator = settings();
        operator.image_pull_policy = Some("IfNotPresent".into());
        operator.image_pull_secrets = vec!["org-registry".into()];
        let inherited = pod(default_spec(), &operator);
        assert_eq!(
            inherited.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
        assert_eq!(names(&inherited), ["org-registry"]);

        let mut own = default_spec();
        own.image_pull_policy = Some(causeway_crds::pool::PullPolicy::Always);
        own.image_pull_secrets = vec![causeway_crds::pool::PullSecretRef {
            name: "team-registry".into(),
        }];
        let own = pod(own, &operator);
        assert_eq!(
            own.containers[0].image_pull_policy.as_deref(),
            Some("Always")
        );
        assert_eq!(names(&own), ["team-registry"]);

        let spec: causeway_crds::WorkerPoolSpec = serde_json::from_value(serde_json::json!({
            "imagePullPolicy": "Never",
            "imagePullSecrets": [{"name": "a"}, {"name": "b"}]
        }))
        .unwrap();
        assert_eq!(names(&pod(spec, &settings())), ["a", "b"]);
        for bad in [
            serde_json::json!({"imagePullPolicy": "Sometimes"}),
            serde_json::json!({"imagePullSecrets": [{"name": "a", "key": "b"}]}),
        ] {
            assert!(
                serde_json::from_value::<causeway_crds::WorkerPoolSpec>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    /// Issue 18: by default the data claim has no owner (deleting the pool keeps it);
    /// `whenDeleted: Delete` gives it the pool as owner, so it goes with the pool.
    #[test]
    fn the_data_claim_is_owned_by_the_pool_only_when_it_may_be_deleted() {
        let claim = |spec: causeway_crds::WorkerPoolSpec| {
            let p = pool("p", spec);
            let view = PoolView::new(&p).unwrap();
            data_claim(&view).unwrap().metadata
        };
        let retained = claim(default_spec());
        assert_eq!(retained.owner_references, None);
        assert_eq!(retained.name.as_deref(), Some("causeway-p-data"));
        assert!(retained.labels.unwrap().contains_key("causeway.dev/pool"));
        let spec: causeway_crds::WorkerPoolSpec = serde_json::from_value(serde_json::json!({
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"}
        }))
        .unwrap();
        let owned = claim(spec).owner_references.unwrap();
        assert_eq!(owned[0].kind, "WorkerPool");
        assert_eq!(owned[0].controller, Some(true));
        assert!(
            serde_json::from_value::<causeway_crds::WorkerPoolSpec>(serde_json::json!({
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Sometimes"}
            }))
            .is_err()
        );
    }

    fn postgres_spec(replicas: i32) -> causeway_crds::WorkerPoolSpec {
        let mut s = default_spec();
        s.replicas = replicas;
        s.storage.type_ = StorageType::Postgres;
        s.storage.postgres = Some(PostgresStorage {
            url_secret_ref: SecretKeyRef {
                name: "pg".into(),
                key: "url".into(),
            },
        });
        s
    }

    #[test]
    fn embedded_storage_is_one_replica_recreate_with_a_claim() {
        let mut s = default_spec();
        s.replicas = 3; // refused by the CRD's rule, clamped here anyway
        let p = pool("orders", s);
        let view = PoolView::new(&p).unwrap();
        let d = deployment(&view, &settings()).spec.unwrap();
        assert_eq!(d.replicas, Some(1));
        assert_eq!(d.strategy.unwrap().type_.as_deref(), Some("Recreate"));
        let pod = d.template.spec.unwrap();
        let data = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert_eq!(
            data.persistent_volume_claim.unwrap().claim_name,
            "causeway-orders-data"
        );
        let claim = data_claim(&view).unwrap().spec.unwrap();
        assert_eq!(claim.access_modes.unwrap(), vec!["ReadWriteOnce"]);
        assert_eq!(
            claim.resources.unwrap().requests.unwrap()["storage"].0,
            "1Gi"
        );
    }

    #[test]
    fn postgres_storage_rolls_any_number_and_has_no_claim() {
        let p = pool("orders", postgres_spec(3));
        let view = PoolView::new(&p).unwrap();
        let d = deployment(&view, &settings()).spec.unwrap();
        assert_eq!(d.replicas, Some(3));
        assert_eq!(d.strategy.unwrap().type_.as_deref(), Some("RollingUpdate"));
        assert!(data_claim(&view).is_none());
        let env = d.template.spec.unwrap().containers[0].env.clone().unwrap();
        let pg = env.iter().find(|e| e.name == POSTGRES_URL_ENV).unwrap();
        assert_eq!(
            pg.value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "pg"
        );
    }

    #[test]
    fn autoscaled_pools_leave_replicas_to_the_hpa() {
        let mut s = postgres_spec(2);
        s.autoscaling = Some(Autoscaling {
            min_replicas: 2,
            max_replicas: 4,
            target_cpu_utilization_percentage: 75,
        });
        let p = pool("orders", s);
        let view = PoolView::new(&p).unwrap();
        assert_eq!(deployment(&view, &settings()).spec.unwrap().replicas, None);
    }

    #[test]
    fn worker_container_args_ports_probes_and_env() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let d = deployment(&view, &settings()).spec.unwrap();
        let labels = d
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert_eq!(labels["causeway.dev/pool"], "orders");
        assert_eq!(
            d.selector.match_labels.unwrap()["causeway.dev/pool"],
            "orders"
        );
        let pod = d.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("causeway-orders"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("causeway:test"));
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            "worker --pool shop/orders --listen 0.0.0.0:8080 --admin 0.0.0.0:9090 --internal 0.0.0.0:8081 --data-dir /var/lib/causeway"
        );
        let ports: Vec<i32> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.container_port)
            .collect();
        assert_eq!(ports, vec![8080, 8081, 9090]);
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(
            (ready.path.as_deref(), &ready.port),
            (Some("/readyz"), &IntOrString::String("admin".into()))
        );
        let live = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        let env: Vec<&str> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert!(env.contains(&"POD_IP"));
        assert!(
            c.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.mount_path == DATA_DIR)
        );
    }

    // Issue 12 item 2: no automounted token for every container; the worker container
    // alone gets a short-lived projected token where its client looks for it.
    #[test]
    fn item2_only_the_worker_container_gets_a_short_lived_projected_token() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let pod = deployment(&view, &settings())
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let vol = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == TOKEN_VOLUME)
            .expect("token volume");
        let sources = vol.projected.as_ref().unwrap().sources.as_ref().unwrap();
        let token = sources
            .iter()
            .find_map(|s| s.service_account_token.as_ref())
            .expect("token source");
        assert_eq!(token.path, "token");
        assert!(
            token
                .expiration_seconds
                .is_some_and(|s| (600..=3600).contains(&s)),
            "{token:?}"
        );
        assert!(sources.iter().any(|s| {
            s.config_map
                .as_ref()
                .is_some_and(|c| c.name == "kube-root-ca.crt")
        }));
        assert!(sources.iter().any(|s| s.downward_api.is_some()));
        let worker = &pod.containers[0];
        let mount = worker
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == TOKEN_VOLUME)
            .expect("mounted in the worker");
        assert_eq!(
            mount.mount_path,
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert_eq!(mount.read_only, Some(true));
        let mounted_by = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .filter(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.name == TOKEN_VOLUME)
            })
            .count();
        assert_eq!(mounted_by, 1);
    }

    // Issue 12 item 4 (operator side): the platform team's deny list reaches every worker.
    #[test]
    fn the_platform_deny_list_reaches_the_worker_env() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let env_of = |s: &BuildSettings| {
            deployment(&view, s)
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .containers[0]
                .env
                .clone()
                .unwrap()
        };
        assert!(
            !env_of(&settings())
                .iter()
                .any(|e| e.name == DENY_DESTINATION_CIDRS_ENV)
        );
        let mut s = settings();
        s.deny_destination_cidrs = vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()];
        let env = env_of(&s);
        let e = env
            .iter()
            .find(|e| e.name == DENY_DESTINATION_CIDRS_ENV)
            .unwrap();
        assert_eq!(e.value.as_deref(), Some("10.0.0.0/8,192.168.0.0/16"));
    }

    #[test]
    fn user_pod_labels_cannot_override_the_selector() {
        let mut s = default_spec();
        s.pod_labels
            .insert("causeway.dev/pool".into(), "evil".into());
        s.pod_labels.insert("team".into(), "payments".into());
        s.pod_annotations
            .insert("prometheus.io/scrape".into(), "true".into());
        let p = pool("orders", s);
        let view = PoolView::new(&p).unwrap();
        let t = deployment(&view, &settings())
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap();
        assert_eq!(t.labels.as_ref().unwrap()["causeway.dev/pool"], "orders");
        assert_eq!(t.labels.as_ref().unwrap()["team"], "payments");
        assert_eq!(
            t.annotations.as_ref().unwrap()["prometheus.io/scrape"],
            "true"
        );
    }

    #[test]
    fn pod_template_changes_only_with_image_resources_or_storage() {
        let base = pool("orders", default_spec());
        let hash = |p: &causeway_crds::WorkerPool, s: &BuildSettings| {
            let view = PoolView::new(p).unwrap();
            let d = deployment(&view, s);
            (pod_spec_hash(&view, s), d.spec.unwrap().template)
        };
        let (h0, t0) = hash(&base, &settings());

        // Anything that is not image, resources or storage (retention, service, pdb) leaves
        // the template alone: bridges and plugins are not even part of the pool's spec.
        let mut other = base.clone();
        other.spec.retention.max_age = "1d".into();
        other
            .spec
            .service
            .annotations
            .insert("a".into(), "b".into());
        other.metadata.generation = Some(7);
        let (h1, t1) = hash(&other, &settings());
        assert_eq!(h0, h1);
        assert_eq!(t0, t1);

        // The image rolls (from the spec or from the operator's default).
        let mut img = base.clone();
        img.spec.image = Some("causeway:v2".into());
        assert_ne!(hash(&img, &settings()).0, h0);
        let mut s2 = settings();
        s2.worker_image = "causeway:v3".into();
        assert_ne!(hash(&base, &s2).0, h0);

        // So do resources and storage.
        let mut res = base.clone();
        res.spec.resources =
            Some(serde_json::from_value(serde_json::json!({"limits": {"cpu": "1"}})).unwrap());
        assert_ne!(hash(&res, &settings()).0, h0);
        let mut st = base.clone();
        st.spec.storage.size = "5Gi".into();
        assert_ne!(hash(&st, &settings()).0, h0);
    }
}
