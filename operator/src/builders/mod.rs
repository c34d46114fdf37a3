//! Pure builders of the Kubernetes objects the operator creates for a `WorkerPool`.
//!
//! Nothing here talks to the API server: every function takes the pool (and what the
//! reconciler read) and returns the desired object, so each one is unit-tested without a
//! cluster. The reconciler server-side-applies whatever these return.

mod network;
mod rbac;
mod scaling;
mod secrets;
mod service;
mod workload;

use std::collections::BTreeMap;

use causeway_crds::WorkerPool;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

pub use network::{NAMESPACE_NAME_LABEL, NetworkPolicySettings, Peer, network_policy};
pub use rbac::{role, role_binding, service_account, service_account_opted_in};
pub use scaling::{disruption_budget, horizontal_autoscaler};
pub use secrets::{ConfigSecretError, config_secret, internal_token_secret, token_secret};
pub use service::{internal_service, service};
pub use workload::{data_claim, deployment, pod_spec_hash};

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "causeway-operator";
/// `app.kubernetes.io/managed-by` value on everything the operator creates.
pub const MANAGED_BY: &str = "causeway-operator";
/// Label carrying the pool name on every child and pod.
pub const POOL_LABEL: &str = "causeway.dev/pool";
/// Standard labels.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/name` of worker pods.
pub const WORKER_APP: &str = "causeway-worker";
pub use causeway_crds::config::{
    CONFIG_KEY, CONFIG_VERSION_ANNOTATION, MAX_POOL_NAME, config_secret_name,
};
/// Annotation on the pod template: hash of what may roll the pods (image, resources, storage).
pub const POD_SPEC_HASH_ANNOTATION: &str = "causeway.dev/pod-spec-hash";
/// Key of a token in the admin and internal token Secrets.
pub const TOKEN_KEY: &str = "token";
/// The per-namespace Secret holding the token for calls between pools.
pub const INTERNAL_TOKEN_SECRET: &str = "causeway-internal-token";
/// Where the worker keeps its store and compiled plugins.
pub const DATA_DIR: &str = "/var/lib/causeway";

/// Name of the Deployment, Service, ServiceAccount, Role, RoleBinding, PDB and HPA.
pub fn object_name(pool: &str) -> String {
    causeway_crds::config::pool_object_name(pool)
}

/// Name of the Secret holding the pool's admin-API token.
pub fn admin_secret_name(pool: &str) -> String {
    format!("causeway-{pool}-admin")
}

/// Name of the embedded store's PersistentVolumeClaim.
pub fn data_claim_name(pool: &str) -> String {
    format!("causeway-{pool}-data")
}

/// Errors of the builders: only a pool that the API server never saw (no uid) fails.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("workerpool {0} has no uid or namespace yet")]
    NotPersisted(String),
    #[error("workerpool name {0:?} is longer than {MAX_POOL_NAME} characters")]
    NameTooLong(String),
}

/// What the builders need to know about a pool, computed once.
#[derive(Clone, Debug)]
pub struct PoolView<'a> {
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub pool: &'a WorkerPool,
}

impl<'a> PoolView<'a> {
    pub fn new(pool: &'a WorkerPool) -> Result<Self, BuildError> {
        let name = pool.name_any();
        let owner = pool
            .controller_owner_ref(&())
            .ok_or_else(|| BuildError::NotPersisted(name.clone()))?;
        if owner.uid.is_empty() {
            return Err(BuildError::NotPersisted(name));
        }
        let namespace = pool
            .namespace()
            .ok_or_else(|| BuildError::NotPersisted(name.clone()))?;
        if name.len() > MAX_POOL_NAME {
            return Err(BuildError::NameTooLong(name));
        }
        Ok(PoolView {
            name,
            namespace,
            owner,
            pool,
        })
    }

    /// Labels on every child and on the pods.
    pub fn labels(&self) -> BTreeMap<String, String> {
        labels(&self.name)
    }

    /// Labels that select the pool's pods (immutable once the Deployment exists).
    pub fn selector(&self) -> BTreeMap<String, String> {
        selector_labels(&self.name)
    }

    /// Metadata of a child: name, namespace, labels, and the controller owner reference.
    pub fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// The ServiceAccount the pods run as.
    pub fn service_account_name(&self) -> String {
        self.pool
            .spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| object_name(&self.name))
    }
}

/// Labels on every child of `pool`.
pub fn labels(pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), WORKER_APP.to_string()),
        (INSTANCE_LABEL.to_string(), pool.to_string()),
        (COMPONENT_LABEL.to_string(), "worker".to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (POOL_LABEL.to_string(), pool.to_string()),
    ])
}

/// The labels that select a pool's pods.
pub fn selector_labels(pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), WORKER_APP.to_string()),
        (POOL_LABEL.to_string(), pool.to_string()),
    ])
}

/// `k=v,k=v`, as the scale subresource and `kubectl -l` want it.
pub fn selector_string(pool: &str) -> String {
    selector_labels(pool)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `app.kubernetes.io/managed-by=causeway-operator`, the label selector of every child watch.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// Settings of the operator that shape the children.
#[derive(Clone, Debug)]
pub struct BuildSettings {
    /// Image of the worker container unless the pool names one.
    pub worker_image: String,
    /// `imagePullPolicy` of the worker container unless the pool sets one (the cluster
    /// default when neither does).
    pub image_pull_policy: Option<String>,
    /// `imagePullSecrets` of worker pods unless the pool lists its own.
    pub image_pull_secrets: Vec<String>,
    /// Write a NetworkPolicy per pool (see [`network_policy`]); none when unset.
    pub network_policy: Option<NetworkPolicySettings>,
    /// Networks no destination of any pool may reach, whatever the pool allows (the
    /// platform team's list, passed to every worker as `CAUSEWAY_DENY_DESTINATION_CIDRS`).
    pub deny_destination_cidrs: Vec<String>,
    /// `OTEL_*` variables set on every worker container (trace export, docs/traces.md).
    pub otel_env: Vec<(String, String)>,
}

/// Every child object of one pool except the Secrets (which need tokens and the config).
#[derive(Clone, Debug)]
pub struct Children {
    pub service_account: Option<k8s_openapi::api::core::v1::ServiceAccount>,
    pub role: k8s_openapi::api::rbac::v1::Role,
    pub role_binding: k8s_openapi::api::rbac::v1::RoleBinding,
    pub deployment: k8s_openapi::api::apps::v1::Deployment,
    pub service: k8s_openapi::api::core::v1::Service,
    pub internal_service: k8s_openapi::api::core::v1::Service,
    pub data_claim: Option<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    pub disruption_budget: Option<k8s_openapi::api::policy::v1::PodDisruptionBudget>,
    pub autoscaler: Option<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>,
    pub network_policy: Option<k8s_openapi::api::networking::v1::NetworkPolicy>,
}

/// Build every child of a pool.
pub fn children(view: &PoolView<'_>, settings: &BuildSettings) -> Children {
    Children {
        service_account: service_account(view),
        role: role(view),
        role_binding: role_binding(view),
        deployment: deployment(view, settings),
        service: service(view),
        internal_service: internal_service(view),
        data_claim: data_claim(view),
        disruption_budget: disruption_budget(view),
        autoscaler: horizontal_autoscaler(view),
        network_policy: settings
            .network_policy
            .as_ref()
            .map(|s| network_policy(view, s)),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use causeway_crds::{WorkerPool, WorkerPoolSpec};
    use kube::core::ObjectMeta;

    pub fn pool(name: &str, spec: WorkerPoolSpec) -> WorkerPool {
        WorkerPool {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                uid: Some(format!("uid-{name}")),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    pub fn default_spec() -> WorkerPoolSpec {
        serde_json::from_value(serde_json::json!({})).unwrap()
    }

    pub fn settings() -> super::BuildSettings {
        super::BuildSettings {
            worker_image: "causeway:test".into(),
            image_pull_policy: None,
            image_pull_secrets: vec![],
            network_policy: None,
            deny_destination_cidrs: vec![],
            otel_env: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn every_child_has_a_controller_owner_reference_and_labels() {
        let mut spec = default_spec();
        spec.disruption_budget = Some(causeway_crds::pool::DisruptionBudget { min_available: 1 });
        // (A retained data claim, the default, has no owner: see workload.rs.)
        spec.persistent_volume_claim_retention_policy.when_deleted =
            causeway_crds::pool::PvcRetention::Delete;
        let p = pool("orders", spec);
        let view = PoolView::new(&p).unwrap();
        let c = children(&view, &settings());
        let metas = [
            c.service_account.as_ref().map(|o| &o.metadata),
            Some(&c.role.metadata),
            Some(&c.role_binding.metadata),
            Some(&c.deployment.metadata),
            Some(&c.service.metadata),
            Some(&c.internal_service.metadata),
            c.data_claim.as_ref().map(|o| &o.metadata),
            c.disruption_budget.as_ref().map(|o| &o.metadata),
        ];
        for meta in metas {
            let meta = meta.expect("child present");
            let owners = meta.owner_references.as_ref().unwrap();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].uid, "uid-orders");
            assert_eq!(owners[0].kind, "WorkerPool");
            assert_eq!(owners[0].controller, Some(true));
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels[POOL_LABEL], "orders");
            assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
            assert_eq!(meta.namespace.as_deref(), Some("shop"));
        }
    }

    #[test]
    fn a_pool_without_uid_is_refused() {
        let mut p = pool("orders", default_spec());
        p.metadata.uid = None;
        assert!(matches!(
            PoolView::new(&p),
            Err(BuildError::NotPersisted(_))
        ));
    }

    #[test]
    fn a_pool_name_too_long_for_a_service_is_refused() {
        let p = pool(&"a".repeat(MAX_POOL_NAME + 1), default_spec());
        assert!(matches!(PoolView::new(&p), Err(BuildError::NameTooLong(_))));
        let p = pool(&"a".repeat(MAX_POOL_NAME), default_spec());
        let view = PoolView::new(&p).unwrap();
        assert!(service(&view).metadata.name.unwrap().len() <= 63);
    }

    #[test]
    fn selector_string_is_sorted_and_stable() {
        assert_eq!(
            selector_string("a"),
            "app.kubernetes.io/name=causeway-worker,causeway.dev/pool=a"
        );
    }
}
