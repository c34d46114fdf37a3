//! What a worker says about the configuration it runs: the body of its
//! `GET /api/v1/config`, which the operator folds into the status of pools, bridges and
//! plugins. One type for both sides:
//!
//! ```json
//! {"version": "3f2a…", "pool": "default", "namespace": "shop", "loadedAt": "2026-01-01T00:00:00Z",
//!  "bridges": [{"namespace": "shop", "name": "orders", "generation": 3, "path": "/hooks/shop/orders",
//!               "ready": true, "suspended": false, "error": null}],
//!  "plugins": [{"namespace": "shop", "name": "enrich", "generation": 1, "route": null, "ready": true,
//!               "error": null, "digest": "sha256:…", "size": 12345}],
//!  "errors": [{"kind": "Plugin", "namespace": "shop", "name": "bad", "reason": "LoadError", "message": "…"}]}
//! ```
//!
//! Every field has a default, so a report from a worker older than the operator (fewer
//! fields) still parses, and what is missing counts as unknown. An entry of `errors` that
//! does not parse (a kind this side does not know, from a newer worker) is left out rather
//! than failing the whole report.

use serde::{Deserialize, Deserializer, Serialize};

use crate::key::{Kind, ObjectKey};

/// A problem with one item: the renderer leaves the item out of the config, or the worker
/// could not apply it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub kind: Kind,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// A stable reason such as `SecretNotFound` (see [`crate::reason`]).
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

impl ItemError {
    pub fn new(
        kind: Kind,
        key: ObjectKey,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ItemError {
            kind,
            namespace: key.namespace,
            name: key.name,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// True when this error is about `kind` `key`.
    pub fn is_about(&self, kind: Kind, key: &ObjectKey) -> bool {
        self.kind == kind && self.namespace == key.namespace && self.name == key.name
    }
}

/// The body of a worker's `GET /api/v1/config`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    /// Version of the config the worker runs (`WorkerConfig.version`); empty before the
    /// first.
    #[serde(default)]
    pub version: String,
    /// The pool the config is for (`local` in local mode).
    #[serde(default)]
    pub pool: String,
    /// The pool's namespace (empty in local mode).
    #[serde(default)]
    pub namespace: String,
    /// When the running config was applied (RFC 3339).
    #[serde(default)]
    pub loaded_at: String,
    /// Bridges the running config serves.
    #[serde(default)]
    pub bridges: Vec<BridgeReport>,
    /// Plugins the running config loads.
    #[serde(default)]
    pub plugins: Vec<PluginReport>,
    /// Items the renderer left out or the worker could not apply.
    #[serde(default, deserialize_with = "known_items")]
    pub errors: Vec<ItemError>,
}

impl WorkerReport {
    /// The error the worker reports for one item.
    pub fn error_for(&self, kind: Kind, key: &ObjectKey) -> Option<&ItemError> {
        self.errors.iter().find(|e| e.is_about(kind, key))
    }

    /// The report of one bridge.
    pub fn bridge(&self, key: &ObjectKey) -> Option<&BridgeReport> {
        self.bridges
            .iter()
            .find(|b| b.namespace == key.namespace && b.name == key.name)
    }

    /// The report of one plugin.
    pub fn plugin(&self, key: &ObjectKey) -> Option<&PluginReport> {
        self.plugins
            .iter()
            .find(|p| p.namespace == key.namespace && p.name == key.name)
    }
}

/// One bridge of the running config.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeReport {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// Generation of the Bridge the config was rendered from.
    #[serde(default)]
    pub generation: Option<i64>,
    /// The path it is served at.
    #[serde(default)]
    pub path: String,
    /// Applied without error.
    #[serde(default)]
    pub ready: bool,
    /// Suspended, by the config or through the admin API.
    #[serde(default)]
    pub suspended: bool,
    /// Why it could not be applied.
    #[serde(default)]
    pub error: Option<String>,
}

impl BridgeReport {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
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
    /// Generation of the Plugin the config was rendered from.
    #[serde(default)]
    pub generation: Option<i64>,
    /// The public route, if any.
    #[serde(default)]
    pub route: Option<String>,
    /// Loaded without error.
    #[serde(default)]
    pub ready: bool,
    /// Why it could not be loaded.
    #[serde(default)]
    pub error: Option<String>,
    /// Digest of the component loaded (`sha256:<hex>`).
    #[serde(default)]
    pub digest: Option<String>,
    /// Size of the component in bytes.
    #[serde(default, alias = "sizeBytes")]
    pub size: Option<u64>,
}

impl PluginReport {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
}

/// The entries of `errors` that parse; see the module documentation.
fn known_items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ItemError>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Known(ItemError),
        Unknown(serde::de::IgnoredAny),
    }
    let entries = Vec::<Entry>::deserialize(d)?;
    Ok(entries
        .into_iter()
        .filter_map(|e| match e {
            Entry::Known(item) => Some(item),
            Entry::Unknown(_) => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn worker_side() -> WorkerReport {
        WorkerReport {
            version: "3f2a".into(),
            pool: "default".into(),
            namespace: "shop".into(),
            loaded_at: "2026-01-01T00:00:00Z".into(),
            bridges: vec![BridgeReport {
                namespace: "shop".into(),
                name: "orders".into(),
                generation: Some(3),
                path: "/hooks/shop/orders".into(),
                ready: true,
                suspended: false,
                error: None,
            }],
            plugins: vec![PluginReport {
                namespace: "shop".into(),
                name: "enrich".into(),
                generation: None,
                route: Some("/enrich".into()),
                ready: false,
                error: Some("compile: invalid magic".into()),
                digest: Some("sha256:ab".into()),
                size: Some(10),
            }],
            errors: vec![ItemError::new(
                Kind::Plugin,
                ObjectKey::new("shop", "enrich"),
                "LoadError",
                "compile: invalid magic",
            )],
        }
    }

    /// The worker's value, as JSON, parsed by the operator: the same value, in the shape
    /// workers sent before the type existed (built with `json!`), so that running workers
    /// and operators of either version still understand each other.
    #[test]
    fn worker_report_round_trips_in_the_wire_shape() {
        let sent = worker_side();
        let wire = serde_json::to_value(&sent).unwrap();
        assert_eq!(
            wire,
            json!({
                "version": "3f2a", "pool": "default", "namespace": "shop", "loadedAt": "2026-01-01T00:00:00Z",
                "bridges": [{"namespace": "shop", "name": "orders", "generation": 3, "path": "/hooks/shop/orders",
                             "ready": true, "suspended": false, "error": null}],
                "plugins": [{"namespace": "shop", "name": "enrich", "generation": null, "route": "/enrich",
                             "ready": false, "error": "compile: invalid magic", "digest": "sha256:ab", "size": 10}],
                "errors": [{"kind": "Plugin", "namespace": "shop", "name": "enrich", "reason": "LoadError",
                            "message": "compile: invalid magic"}],
            })
        );
        let text = serde_json::to_string(&sent).unwrap();
        let parsed: WorkerReport = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, sent);
        let key = ObjectKey::new("shop", "enrich");
        assert_eq!(
            parsed
                .error_for(Kind::Plugin, &key)
                .map(|e| e.reason.as_str()),
            Some("LoadError")
        );
        assert!(parsed.error_for(Kind::Bridge, &key).is_none());
        assert_eq!(
            parsed
                .bridge(&"shop/orders".parse().unwrap())
                .and_then(|b| b.generation),
            Some(3)
        );
        assert_eq!(parsed.plugin(&key).and_then(|p| p.size), Some(10));
    }

    #[test]
    fn older_and_newer_workers_still_parse() {
        assert_eq!(
            serde_json::from_str::<WorkerReport>("{}").unwrap(),
            WorkerReport::default()
        );
        let r: WorkerReport = serde_json::from_value(json!({
            "version": "v1",
            "bridges": [{"namespace": "shop", "name": "orders"}],
            "plugins": [{"namespace": "shop", "name": "enrich", "sizeBytes": 7, "newField": 1}],
            "errors": [
                {"kind": "Stream", "namespace": "shop", "name": "s", "reason": "X", "message": "from a newer worker"},
                {"kind": "Bridge", "namespace": "shop", "name": "orders", "message": "no reason"},
            ],
            "somethingNew": true,
        }))
        .unwrap();
        assert_eq!(r.version, "v1");
        assert_eq!(r.bridges[0].generation, None);
        assert_eq!(r.plugins[0].size, Some(7));
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].kind, Kind::Bridge);
        assert_eq!(r.errors[0].reason, "");
    }
}
