//! One plugin, resolved, and routes to plugins that other pools serve.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::key::ObjectKey;
use crate::secret::SecretValue;

/// One plugin, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginConfig {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub generation: Option<i64>,
    pub source: SourceConfig,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// `wasi:config/store` values. All treated as secret in logs.
    #[serde(default)]
    pub variables: BTreeMap<String, SecretValue>,
    pub memory_bytes: u64,
    pub timeout_ms: u64,
    pub max_concurrency: u32,
    pub when_busy: WhenBusy,
    #[serde(default)]
    pub route: Option<String>,
}

impl PluginConfig {
    /// The plugin's key in metrics, logs and the admin API.
    pub fn object_key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        self.object_key().to_string()
    }
}

/// Where a worker gets a component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SourceConfig {
    /// An absolute path on the worker's file system.
    File { path: String },
    /// A download checked against `sha256`.
    Http { url: String, sha256: String },
    /// An OCI artifact.
    #[serde(rename_all = "camelCase")]
    Oci {
        reference: String,
        digest: Option<String>,
        insecure: bool,
        /// Credentials for the reference's registry, from the Plugin's `pullSecret`
        /// (absent: an anonymous pull).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials: Option<RegistryCredentials>,
    },
    /// The component itself, base64 (from a ConfigMap).
    Inline { sha256: String, data: String },
}

/// A user name and password for one registry, taken from a `kubernetes.io/dockerconfigjson`
/// Secret by the renderer. Never printed (`SecretValue`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistryCredentials {
    pub username: SecretValue,
    pub password: SecretValue,
}

/// Where to send calls for a plugin that another pool serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginRoute {
    pub namespace: String,
    pub plugin: String,
    pub pool: String,
    /// Base URLs of the serving pool's internal port, tried in turn.
    pub urls: Vec<String>,
}

/// What to do when `maxConcurrency` calls are already running.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum WhenBusy {
    /// Wait for a free slot, up to the call's timeout.
    #[default]
    Queue,
    /// Fail at once (HTTP 429 for public routes; a failed, retried step for bridges).
    Reject,
}
