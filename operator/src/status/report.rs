//! What a worker's admin API says about the config it runs: `GET /api/v1/config`.
//!
//! The shape is documented in `docs/operator.md`. Every field is optional so that a worker
//! older or newer than the operator still parses; what is missing is treated as unknown.

use std::collections::BTreeMap;

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
    /// Per-item errors, keyed `namespace/name` (the plugin host's `ApplyReport.errors`).
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
}

/// One bridge of the running config.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemReport {
    /// `namespace/name`.
    pub key: String,
    #[serde(default)]
    pub generation: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// One plugin of the running config.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginReport {
    /// `namespace/name`.
    pub key: String,
    #[serde(default)]
    pub generation: Option<i64>,
    /// `sha256:<hex>` of the component loaded.
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
    /// `DigestMismatch`, `FetchFailed` or `LoadError` when the worker classifies the error.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A condition reason for a plugin load error the worker did not classify.
pub fn classify_plugin_error(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("digest") || m.contains("sha256") || m.contains("checksum") {
        reason::DIGEST_MISMATCH
    } else if ["fetch", "download", "connect", "registry", "pull", "status 4", "status 5"].iter().any(|w| m.contains(w)) {
        reason::FETCH_FAILED
    } else {
        reason::LOAD_ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_and_a_full_report() {
        let r: WorkerReport = serde_json::from_str("{}").unwrap();
        assert_eq!(r, WorkerReport::default());
        let r: WorkerReport = serde_json::from_value(serde_json::json!({
            "version": "v1",
            "bridges": [{"key": "shop/orders", "generation": 2}],
            "plugins": [{"key": "shop/enrich", "generation": 1, "digest": "sha256:ab", "sizeBytes": 10, "error": null}],
            "errors": {"shop/bad": "compile: invalid magic"},
            "somethingNew": true
        }))
        .unwrap();
        assert_eq!(r.version.as_deref(), Some("v1"));
        assert_eq!(r.bridges[0].generation, Some(2));
        assert_eq!(r.plugins[0].size_bytes, Some(10));
        assert_eq!(r.errors["shop/bad"], "compile: invalid magic");
    }

    #[test]
    fn classifies_errors() {
        assert_eq!(classify_plugin_error("sha256 digest mismatch: want a got b"), reason::DIGEST_MISMATCH);
        assert_eq!(classify_plugin_error("fetch http://x: connection refused"), reason::FETCH_FAILED);
        assert_eq!(classify_plugin_error("failed to compile component"), reason::LOAD_ERROR);
    }
}
