//! `Plugin`: one sandboxed Wasm component of the `wasi:http/proxy` world.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::NamedValue;

// Also carried by the rendered configuration: defined in `causeway-config`.
pub use causeway_config::WhenBusy;

/// A Wasm component that runs next to the events: a bridge step, a public HTTP function,
/// or a private service other plugins call at `http://<name>.internal/`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "causeway.dev",
    version = "v1alpha1",
    kind = "Plugin",
    namespaced,
    status = "PluginStatus",
    shortname = "plg",
    category = "causeway",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Digest", type_ = "string", json_path = ".status.digest"),
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.pool"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    doc = "A sandboxed WebAssembly component (wasi:http/proxy) run by the workers."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSpec {
    /// Where the component comes from. Exactly one source.
    pub source: PluginSource,

    /// Hosts the plugin may call, in Spin's syntax: `https://api.example.com`,
    /// `http://*.internal`, `https://api.example.com:8443`. Denied by default. Loopback,
    /// private, link-local and metadata addresses are refused unless listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        extend("x-kubernetes-list-type" = "set"),
        inner(length(min = 1, max = 512), regex(pattern = r"^(\*|https?|[a-z][a-z0-9+.-]*)://[^/\s]+/?$"))
    )]
    pub allowed_outbound_hosts: Vec<String>,

    /// Configuration the plugin reads through `wasi:config/store`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub variables: Vec<NamedValue>,

    /// Hard limits for each call.
    #[serde(default)]
    pub limits: PluginLimits,

    /// Makes the plugin public: it serves HTTP requests under this path on the ingress
    /// port. Without it the plugin is private (chaining and bridge steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 512), regex(pattern = r"^/[A-Za-z0-9._~/-]+$"))]
    pub route: Option<String>,

    /// Run only in this WorkerPool (selective deployment). Unplaced plugins are loaded in
    /// every pool that uses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub pool: Option<String>,
}

/// Where the component comes from. Set exactly one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.file), has(self.http), has(self.oci), has(self.configMap)].filter(x, x).size() == 1",
     "message": "set exactly one of file, http, oci, configMap"}
]))]
pub struct PluginSource {
    /// A local file, relative to the manifest that names it (local mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub file: Option<String>,
    /// An HTTP(S) download, checked against its sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSource>,
    /// An OCI artifact, digest-pinned or resolved to a digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciSource>,
    /// A small component stored in a ConfigMap's `binaryData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
}

/// An HTTP(S) download.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.url.startsWith('http://') || self.url.startsWith('https://')", "message": "url must be http:// or https://"}
]))]
pub struct HttpSource {
    /// Where to download the component.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Required lowercase hex sha256 of the component; a mismatch refuses to load.
    #[schemars(regex(pattern = r"^[a-f0-9]{64}$"))]
    pub sha256: String,
}

/// An OCI artifact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OciSource {
    /// Reference such as `registry.example.com/team/plugin:1.2` or `...@sha256:<hex>`.
    #[schemars(length(min = 1, max = 1024))]
    pub reference: String,
    /// Expected manifest digest (`sha256:<hex>`). When set, anything else is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[a-f0-9]{64}$"))]
    pub digest: Option<String>,
    /// Talk plain HTTP to the registry (test registries on loopback only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// A Secret of type `kubernetes.io/dockerconfigjson` with registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub pull_secret: Option<String>,
}

/// A ConfigMap holding the component in `binaryData`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapSource {
    /// Name of the ConfigMap, in the plugin's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in `binaryData`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Hard limits for each call of a plugin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginLimits {
    /// Linear memory an instance may grow to (default 64Mi).
    #[serde(default = "default_memory")]
    #[schemars(regex(pattern = r"^[0-9]+(k|M|G|Ki|Mi|Gi|Ti)?$"))]
    pub memory: String,
    /// Wall-clock limit of one call (default 1s).
    #[serde(default = "default_plugin_timeout")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub timeout: String,
    /// Calls running at once in one worker (default 64).
    #[serde(default = "default_max_concurrency")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrency: u32,
    /// Behaviour when `maxConcurrency` is reached: `queue` (default) or `reject`.
    #[serde(default)]
    pub when_busy: WhenBusy,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory: default_memory(),
            timeout: default_plugin_timeout(),
            max_concurrency: default_max_concurrency(),
            when_busy: WhenBusy::Queue,
        }
    }
}

fn default_memory() -> String {
    "64Mi".into()
}
fn default_plugin_timeout() -> String {
    "1s".into()
}
fn default_max_concurrency() -> u32 {
    64
}

/// Observed state of a Plugin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// The generation last processed by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Accepted; load errors appear here with their reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The component's resolved digest (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Size of the component in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Pools that serve the plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
}
