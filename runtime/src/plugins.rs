//! The worker's view of the Wasm plugin host (`causeway-plugins`): load what a config
//! names, serve public routes, call plugins for steps and `http://<plugin>.internal`
//! destinations. Everything else in the runtime goes through this type.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use causeway_config::WorkerConfig;
use causeway_plugins::{HostOptions, PluginHost, PluginRef, PoolingMode};

use crate::store::Store;
use crate::store::embedded::KvAdapter;

/// Why a plugin call failed, with the status code a caller should see.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PluginCallError {
    pub status: u16,
    /// Stable label (`not_found`, `busy`, `timeout`, `oom`, `trap`, …).
    pub kind: &'static str,
    pub message: String,
}

/// Why the plugin host could not start.
#[derive(Debug, thiserror::Error)]
#[error("plugin host: {0}")]
pub struct PluginsError(#[source] causeway_plugins::HostError);

pub struct Plugins {
    host: PluginHost,
}

impl Plugins {
    /// Start the host: compiled components are cached under `cache_dir`; keyvalue lives in
    /// the store; metrics go to `registry`.
    pub fn new(
        cache_dir: PathBuf,
        store: Arc<dyn Store>,
        registry: prometheus::Registry,
        allow_file_sources: bool,
    ) -> Result<Self, PluginsError> {
        let kv: Arc<dyn causeway_plugins::KvStore> = Arc::new(KvAdapter { store });
        let host = PluginHost::new(HostOptions {
            cache_dir,
            pooling: PoolingMode::Auto,
            kv,
            registry,
            allow_file_sources,
        })
        .map_err(PluginsError)?;
        Ok(Plugins { host })
    }

    /// Load what `cfg` names; returns per-plugin errors by `namespace/name`.
    pub async fn apply(&self, cfg: &WorkerConfig) -> BTreeMap<String, String> {
        self.host.apply(cfg).await.errors
    }

    /// The public plugin serving `path`, if any.
    pub fn route(&self, path: &str) -> Option<PluginRef> {
        self.host.route(path)
    }

    /// Call a plugin (in-process when loaded here, else through the routing table).
    pub async fn call(
        &self,
        target: &PluginRef,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, PluginCallError> {
        self.host
            .call(target, req)
            .await
            .map_err(|e| PluginCallError {
                status: e.status_code().as_u16(),
                kind: e.kind(),
                message: e.to_string(),
            })
    }

    /// One request of the internal port (`/internal/<ns>/<plugin>/…`); the host checks the
    /// `causeway-internal-token`.
    pub async fn handle_internal(&self, req: http::Request<Bytes>) -> http::Response<Bytes> {
        self.host.handle_internal(req).await
    }

    /// Every configured plugin's state (digest, size, error).
    pub fn status(&self) -> Vec<causeway_plugins::PluginState> {
        self.host.status()
    }

    /// Why `target` cannot serve calls here now: a plugin of this worker's configuration
    /// that is not loaded (its load failed, or it is still loading). `None` when it is
    /// loaded, and for plugins this worker does not serve (another pool answers for them).
    pub fn not_ready(
        &self,
        config: &causeway_config::WorkerConfig,
        target: &causeway_plugins::PluginRef,
    ) -> Option<String> {
        if !config
            .plugins
            .iter()
            .any(|p| p.namespace == target.namespace && p.name == target.name)
        {
            return None;
        }
        let key = format!("{}/{}", target.namespace, target.name);
        match self.host.state(&key) {
            Some(s) if s.loaded => None,
            Some(s) => Some(s.error.unwrap_or_else(|| "not loaded yet".into())),
            None => Some("not loaded yet".into()),
        }
    }

    /// The plugin's recent log lines (its stdout and stderr), oldest first.
    pub fn logs(&self, target: &PluginRef) -> Vec<String> {
        self.host.logs(target)
    }
}

impl causeway_plugins::KvStore for KvAdapter {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        KvAdapter::get(self, plugin, key)
    }
    fn set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), String> {
        KvAdapter::set(self, plugin, key, value)
    }
    fn delete(&self, plugin: &str, key: &str) -> Result<(), String> {
        KvAdapter::delete(self, plugin, key)
    }
    fn list_keys(&self, plugin: &str) -> Result<Vec<String>, String> {
        KvAdapter::list_keys(self, plugin)
    }
    fn increment(&self, plugin: &str, key: &str, delta: u64) -> Result<u64, String> {
        KvAdapter::increment(self, plugin, key, delta)
    }
}
