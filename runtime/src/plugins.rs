//! The worker's view of the Wasm plugin host (`causeway-plugins`): load what a config
//! names, serve public routes, call plugins for steps and `http://<plugin>.internal`
//! destinations. Everything else in the runtime goes through this type.

use std::collections::BTreeMap;

use bytes::Bytes;
use causeway_crds::config::WorkerConfig;

/// A plugin by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginTarget {
    pub namespace: String,
    pub name: String,
}

/// Why a plugin call failed, with the status code a caller should see.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {target}: {message}")]
pub struct PluginCallError {
    pub target: String,
    pub status: u16,
    pub message: String,
}

pub struct Plugins {}

impl Plugins {
    pub fn disabled() -> Self {
        Plugins {}
    }

    /// Load what `cfg` names; returns per-plugin errors by `namespace/name`.
    pub async fn apply(&self, cfg: &WorkerConfig) -> BTreeMap<String, String> {
        cfg.plugins.iter().map(|p| (p.key(), "the plugin host is not available in this build".to_string())).collect()
    }

    /// The public plugin serving `path`, if any.
    pub fn route(&self, _path: &str) -> Option<PluginTarget> {
        None
    }

    pub async fn call(&self, target: &PluginTarget, _req: http::Request<Bytes>) -> Result<http::Response<Bytes>, PluginCallError> {
        Err(PluginCallError { target: format!("{}/{}", target.namespace, target.name), status: 502, message: "plugin host not available".into() })
    }
}
