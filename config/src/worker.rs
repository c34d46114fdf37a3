//! Everything one worker runs, and where the operator hands it over.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bridge::BridgeConfig;
use crate::plugin::{PluginConfig, PluginRoute};
use crate::secret::SecretValue;

/// Port of the worker's ingress (bridges and public plugins).
pub const INGRESS_PORT: u16 = 8080;
/// Port of the worker's admin API and metrics.
pub const ADMIN_PORT: u16 = 9090;
/// Port on which a worker serves plugin calls from other pools.
pub const INTERNAL_PORT: u16 = 8081;

/// Key of the rendered `WorkerConfig` (JSON) in a pool's config Secret.
pub const CONFIG_KEY: &str = "config.json";
/// Annotation on the config Secret: the version of the `WorkerConfig` it holds.
pub const CONFIG_VERSION_ANNOTATION: &str = "causeway.dev/config-version";

/// Name of the Secret holding a pool's rendered `WorkerConfig`. The operator writes it; the
/// worker started with `--pool <namespace>/<name>` watches it.
pub fn config_secret_name(pool: &str) -> String {
    format!("causeway-{pool}-config")
}

/// Everything one worker runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkerConfig {
    /// Content hash of everything below: equal configs have equal versions.
    pub version: String,
    /// The pool this config is for (`local` in local mode).
    pub pool: String,
    /// The pool's namespace (empty in local mode, which serves every namespace).
    #[serde(default)]
    pub namespace: String,
    pub bridges: Vec<BridgeConfig>,
    pub plugins: Vec<PluginConfig>,
    /// Plugins served by other pools, for `http://<plugin>.internal` calls.
    #[serde(default)]
    pub routes: Vec<PluginRoute>,
    /// Per-namespace token that authenticates calls between pools.
    #[serde(default)]
    pub internal_tokens: BTreeMap<String, SecretValue>,
    /// Token required by the admin API (except health and metrics). None in local mode.
    #[serde(default)]
    pub admin_token: Option<SecretValue>,
    pub retention: RetentionConfig,
    /// CIDRs that destinations may reach although they are link-local or metadata
    /// addresses (the pool's `spec.network.allowedDestinationCidrs`).
    #[serde(default)]
    pub destination_allowed_cidrs: Vec<String>,
    /// What the worker's `/metrics` breaks down (the pool's `spec.metrics`).
    #[serde(default, skip_serializing_if = "MetricsConfig::is_default")]
    pub metrics: MetricsConfig,
}

/// What the worker's `/metrics` breaks down by bridge and destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsConfig {
    /// Latency histograms per bridge and destination, as well as the pool-wide ones. Off by
    /// default: each destination would cost about twenty series, which at 10,000 bridges
    /// is hundreds of thousands of series in Prometheus.
    #[serde(default)]
    pub destination_histograms: bool,
}

impl MetricsConfig {
    pub fn is_default(&self) -> bool {
        *self == MetricsConfig::default()
    }
}

/// Retention of finished events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionConfig {
    pub max_age_ms: u64,
    pub max_bytes: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age_ms: 7 * 86_400_000,
            max_bytes: 512 << 20,
        }
    }
}
