//! `WorkerPool`: a set of identical worker pods, the target of selective deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeyRef;

/// A pool of identical worker pods that serve Bridges and Plugins.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "causeway.dev",
    version = "v1alpha1",
    kind = "WorkerPool",
    namespaced,
    status = "WorkerPoolStatus",
    shortname = "wpool",
    category = "causeway",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Store", type_ = "string", json_path = ".status.store"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", priority = 1),
    doc = "A pool of identical Causeway worker pods.",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 54").message("a WorkerPool name has at most 54 characters")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.storage) || self.storage.type != 'embedded' || self.replicas <= 1",
     "message": "embedded storage serves one replica; use postgres storage for more"},
    {"rule": "!has(self.autoscaling) || (has(self.storage) && self.storage.type == 'postgres')",
     "message": "autoscaling needs postgres storage (embedded storage has one writer)"}
]))]
pub struct WorkerPoolSpec {
    /// Number of worker pods (default 1). Embedded storage allows one.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Worker image; defaults to the operator's configured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,

    /// `imagePullPolicy` of the worker container; defaults to the operator's setting (the
    /// chart's `worker.imagePullPolicy`), else the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Secrets (in the pool's namespace) the kubelet uses to pull the worker image;
    /// defaults to the operator's list (the chart's `worker.imagePullSecrets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub image_pull_secrets: Vec<PullSecretRef>,

    /// Compute resources of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub tolerations: Vec<Toleration>,

    /// Affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Extra labels on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,

    /// Run the pods as this existing ServiceAccount instead of the one the operator creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// Where events, jobs and attempts are stored.
    #[serde(default)]
    pub storage: Storage,

    /// What happens to the embedded store's PersistentVolumeClaim when the pool is deleted
    /// or stops using it (as a StatefulSet's field of the same name): `Retain` (the
    /// default) keeps it, with every event and dead letter in it, for a pool of the same
    /// name to pick up again; `Delete` lets it go with the pool.
    #[serde(default, skip_serializing_if = "PvcRetentionPolicy::is_default")]
    pub persistent_volume_claim_retention_policy: PvcRetentionPolicy,

    /// The ingress Service.
    #[serde(default)]
    pub service: ServiceSettings,

    /// Optional HorizontalPodAutoscaler (needs postgres storage for more than one replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// Optional PodDisruptionBudget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudget>,

    /// How long events are kept, and how much disk they may use.
    #[serde(default)]
    pub retention: Retention,

    /// Network settings of the pool's workers.
    #[serde(default, skip_serializing_if = "Network::is_empty")]
    pub network: Network,

    /// What the workers' `/metrics` breaks down.
    #[serde(default, skip_serializing_if = "Metrics::is_default")]
    pub metrics: Metrics,
}

/// What the workers' `/metrics` breaks down by bridge and destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// Latency histograms (`destination_attempt_duration_seconds`,
    /// `destination_ingest_to_delivery_seconds`) per bridge and destination, beside the
    /// pool-wide ones. Off by default: about twenty series per destination.
    #[serde(default)]
    pub destination_histograms: bool,
}

impl Metrics {
    pub fn is_default(&self) -> bool {
        *self == Metrics::default()
    }
}

/// The PersistentVolumeClaim retention policy of a pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PvcRetentionPolicy {
    /// `Retain` (default) or `Delete`, when the pool is deleted or switches to postgres.
    #[serde(default)]
    pub when_deleted: PvcRetention,
}

impl PvcRetentionPolicy {
    pub fn is_default(&self) -> bool {
        *self == PvcRetentionPolicy::default()
    }
}

/// Keep or delete the claim.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum PvcRetention {
    #[default]
    Retain,
    Delete,
}

/// When the kubelet pulls the worker image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// A Secret of type `kubernetes.io/dockerconfigjson` in the pool's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Network settings of a pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    /// CIDRs that destinations may reach even though they are link-local or cloud metadata
    /// addresses, which are refused otherwise (for example `169.254.10.0/24`). Private
    /// ranges need no entry: in-cluster services live there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "maxItems" = 64,
        "items" = {"type": "string", "maxLength": 64},
        "x-kubernetes-list-type" = "set",
        "x-kubernetes-validations" = [
            {"rule": "self.all(c, isCIDR(c))", "message": "each entry must be a CIDR such as 169.254.10.0/24 or fd00::/64"}
        ]
    ))]
    pub allowed_destination_cidrs: Vec<String>,
}

impl Network {
    pub fn is_empty(&self) -> bool {
        self.allowed_destination_cidrs.is_empty()
    }
}

fn default_replicas() -> i32 {
    1
}

/// A store engine: embedded (one worker's on-disk store) or postgres (a database shared by
/// the pool's workers). As `status.store`, the one the pool's workers run on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// An on-disk store in a PersistentVolumeClaim: one replica, strategy Recreate.
    #[default]
    Embedded,
    /// A shared PostgreSQL database: any number of replicas.
    Postgres,
}

/// Where a pool stores events.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type != 'postgres' || has(self.postgres)", "message": "postgres storage needs a postgres section"}
]))]
pub struct Storage {
    /// embedded (default) or postgres.
    #[serde(default, rename = "type")]
    pub type_: StorageType,
    /// Size of the embedded volume (default 1Gi).
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(k|M|G|Ki|Mi|Gi|Ti)?$"))]
    pub size: String,
    /// StorageClass of the embedded volume; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Connection to the shared database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresStorage>,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            type_: StorageType::Embedded,
            size: default_storage_size(),
            storage_class_name: None,
            postgres: None,
        }
    }
}

fn default_storage_size() -> String {
    "1Gi".into()
}

/// A PostgreSQL connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresStorage {
    /// Secret key holding a `postgres://` connection URL.
    pub url_secret_ref: SecretKeyRef,
}

/// Service types for the ingress Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// The ingress Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSettings {
    /// ClusterIP (default), NodePort or LoadBalancer.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Annotations on the Service (for load balancer controllers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Horizontal autoscaling.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"}
]))]
pub struct Autoscaling {
    /// Fewest replicas.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Target average CPU utilisation, percent (default 75).
    #[serde(default = "default_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_cpu() -> i32 {
    75
}

/// A PodDisruptionBudget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisruptionBudget {
    /// Pods that must stay available during voluntary disruptions.
    #[schemars(range(min = 0, max = 1000))]
    pub min_available: i32,
}

/// Retention of stored events.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    /// Finished events (delivered, filtered, dead) older than this are removed (default 7d).
    #[serde(default = "default_max_age")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub max_age: String,
    /// When the store grows past this, the oldest finished events go first (default 512Mi).
    #[serde(default = "default_max_bytes")]
    #[schemars(regex(pattern = r"^[0-9]+(k|M|G|Ki|Mi|Gi|Ti)?$"))]
    pub max_bytes: String,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: default_max_age(),
            max_bytes: default_max_bytes(),
        }
    }
}

fn default_max_age() -> String {
    "7d".into()
}
fn default_max_bytes() -> String {
    "512Mi".into()
}

/// Observed state of a WorkerPool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPoolStatus {
    /// The generation last processed by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods of the pool.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods of the pool.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Version of the rendered worker configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The store the pool's workers run on: embedded or postgres (the spec's storage type,
    /// once the pool's Deployment has been applied with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StorageType>,
}
