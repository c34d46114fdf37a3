//! What a worker's admin API says about the config it runs: `GET /api/v1/config`.
//!
//! The body is [`WorkerReport`], one typed contract from `causeway-config` that the worker
//! serves (`causeway_runtime::admin`) and the operator parses here. Its fields all have
//! defaults, so a worker older than the operator still parses and what it leaves out counts
//! as unknown; see `causeway_config::WorkerReport` for the shape.

use causeway_crds::common::reason;

pub use causeway_crds::config::{BridgeReport, ItemError, PluginReport, StoreReport, WorkerReport};

/// The condition reason for a plugin load error: the worker's own when it is specific,
/// otherwise read from the message (digest mismatch, fetch failure, anything else).
pub fn classify_plugin_error(worker_reason: Option<&str>, message: &str) -> String {
    if let Some(r) = worker_reason.filter(|r| !r.is_empty() && *r != reason::LOAD_ERROR) {
        return r.to_string();
    }
    let m = message.to_ascii_lowercase();
    if m.contains("digest") || m.contains("sha256") || m.contains("checksum") {
        reason::DIGEST_MISMATCH.into()
    } else if [
        "fetch", "download", "connect", "registry", "pull", "status 4", "status 5",
    ]
    .iter()
    .any(|w| m.contains(w))
    {
        reason::FETCH_FAILED.into()
    } else {
        reason::LOAD_ERROR.into()
    }
}

#[cfg(test)]
mod tests {
    use causeway_crds::config::{Kind, ObjectKey};

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
        assert_eq!(r.version, "v1");
        assert_eq!(r.bridges[0].key().to_string(), "shop/orders");
        assert_eq!(r.bridges[0].generation, Some(2));
        assert_eq!(r.plugins[0].size, Some(10));
        let bad = ObjectKey::new("shop", "bad");
        assert_eq!(
            r.error_for(Kind::Plugin, &bad).unwrap().message,
            "compile: invalid magic"
        );
        assert!(r.error_for(Kind::Bridge, &bad).is_none());
    }

    #[test]
    fn classifies_errors() {
        assert_eq!(
            classify_plugin_error(Some("LoadError"), "sha256 digest mismatch: want a got b"),
            reason::DIGEST_MISMATCH
        );
        assert_eq!(
            classify_plugin_error(None, "fetch http://x: connection refused"),
            reason::FETCH_FAILED
        );
        assert_eq!(
            classify_plugin_error(None, "failed to compile component"),
            reason::LOAD_ERROR
        );
        assert_eq!(
            classify_plugin_error(Some("FetchFailed"), "whatever"),
            reason::FETCH_FAILED
        );
    }
}
