//! What a worker's admin API says about the config it runs: `GET /api/v1/config`
//! (served by `causeway_runtime::admin`):
//!
//! ```json
//! {"version": "3f2a…", "pool": "default", "namespace": "shop", "loadedAt": "…",
//!  "bridges": [{"namespace": "shop", "name": "orders", "generation": 3, "ready": true, "error": null}],
//!  "plugins": [{"namespace": "shop", "name": "enrich", "generation": 1, "ready": true, "error": null,
//!               "digest": "sha256:…", "size": 12345}],
//!  "errors": [{"kind": "Plugin", "namespace": "shop", "name": "bad", "reason": "LoadError", "message": "…"}]}
//! ```
//!
//! Every field is optional so that a worker older or newer than the operator still parses;
//! what is missing counts as unknown.

use causeway_crds::common::reason;
use serde::{Deserialize, Serialize};

/// The body of `GET /api/v1/config`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    /// Version of the config the worker runs (`WorkerConfig.version`), none before the first.
    #[serde(default)]
    pub version: Option<String>,
    /// Bridges the running config serves.
    #[serde(default)]
    pub bridges: Vec<ItemReport>,
    /// Plugins the running config loads.
    #[serde(default)]
    pub plugins: Vec<PluginReport>,
    /// Items the worker could not apply.
    #[serde(default)]
    pub errors: Vec<ItemError>,
}

impl WorkerReport {
    /// The error the worker reports for one item (`kind` is `Bridge` or `Plugin`).
    pub fn error_for(&self, kind: &str, key: &str) -> Option<&ItemError> {
        self.errors.iter().find(|e| e.kind == kind && e.key() == key)
    }
}

/// One bridge of the running config.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemReport {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub generation: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
}

impl ItemReport {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One plugin of the running config.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginReport {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub generation: Option<i64>,
    /// Digest of the component loaded.
    #[serde(default)]
    pub digest: Option<String>,
    /// Size of the component in bytes.
    #[serde(default, alias = "sizeBytes")]
    pub size: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

impl PluginReport {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// An item the worker could not apply.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

impl ItemError {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The condition reason for a plugin load error: the worker's own when it is specific,
/// otherwise read from the message (digest mismatch, fetch failure, anything else).
pub fn classify_plugin_error(worker_reason: Option<&str>, message: &str) -> String {
    if let Some(r) = worker_reason.filter(|r| !r.is_empty() && *r != reason::LOAD_ERROR) {
        return r.to_string();
    }
    let m = message.to_ascii_lowercase();
    if m.contains("digest") || m.contains("sha256") || m.contains("checksum") {
        reason::DIGEST_MISMATCH.into()
    } else if ["fetch", "download", "connect", "registry", "pull", "status 4", "status 5"].iter().any(|w| m.contains(w)) {
        reason::FETCH_FAILED.into()
    } else {
        reason::LOAD_ERROR.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_runtime_admin_shape() {
        let r: WorkerReport = serde_json::from_str("{}").unwrap();
        assert_eq!(r, WorkerReport::default());
        let r: WorkerReport = serde_json::from_value(serde_json::json!({
            "version": "v1", "pool": "default", "namespace": "shop", "loadedAt": "2026-01-01T00:00:00Z",
            "bridges": [{"namespace": "shop", "name": "orders", "generation": 2, "path": "/x", "ready": true, "suspended": false, "error": null}],
            "plugins": [{"namespace": "shop", "name": "enrich", "generation": 1, "route": null, "ready": true, "error": null,
                         "digest": "sha256:ab", "size": 10}],
            "errors": [{"kind": "Plugin", "namespace": "shop", "name": "bad", "reason": "LoadError", "message": "compile: invalid magic"}],
        }))
        .unwrap();
        assert_eq!(r.version.as_deref(), Some("v1"));
        assert_eq!(r.bridges[0].key(), "shop/orders");
        assert_eq!(r.bridges[0].generation, Some(2));
        assert_eq!(r.plugins[0].size, Some(10));
        assert_eq!(r.error_for("Plugin", "shop/bad").unwrap().message, "compile: invalid magic");
        assert!(r.error_for("Bridge", "shop/bad").is_none());
    }

    #[test]
    fn classifies_errors() {
        assert_eq!(classify_plugin_error(Some("LoadError"), "sha256 digest mismatch: want a got b"), reason::DIGEST_MISMATCH);
        assert_eq!(classify_plugin_error(None, "fetch http://x: connection refused"), reason::FETCH_FAILED);
        assert_eq!(classify_plugin_error(None, "failed to compile component"), reason::LOAD_ERROR);
        assert_eq!(classify_plugin_error(Some("FetchFailed"), "whatever"), reason::FETCH_FAILED);
    }
}
