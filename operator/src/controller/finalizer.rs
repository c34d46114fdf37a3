//! The Bridge finalizer (`causeway.dev/drain`): added to every Bridge the operator
//! reconciles, removed when its drain is over ([`crate::status::deletion`]).
//!
//! Both writes are merge patches of `metadata.finalizers` guarded by the object's
//! `resourceVersion`: the list is replaced whole, so a concurrent change by anyone else
//! (another finalizer) fails with 409 and is retried from a fresh read, never lost.

use causeway_crds::Bridge;
use causeway_crds::common::BRIDGE_FINALIZER;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::Error;
use crate::builders::FIELD_MANAGER;

/// True when the Bridge carries the operator's finalizer.
pub fn has_finalizer(bridge: &Bridge) -> bool {
    bridge.finalizers().iter().any(|f| f == BRIDGE_FINALIZER)
}

/// The finalizer list with ours added or taken out.
pub fn finalizers_with(bridge: &Bridge, ours: bool) -> Vec<String> {
    let mut list: Vec<String> = bridge
        .finalizers()
        .iter()
        .filter(|f| *f != BRIDGE_FINALIZER)
        .cloned()
        .collect();
    if ours {
        list.push(BRIDGE_FINALIZER.to_string());
    }
    list
}

/// The merge patch that sets the finalizers to `list`, guarded by `resourceVersion`.
pub fn finalizer_patch(bridge: &Bridge, list: &[String]) -> serde_json::Value {
    let mut metadata = serde_json::json!({ "finalizers": list });
    if let Some(rv) = &bridge.metadata.resource_version {
        metadata["resourceVersion"] = rv.clone().into();
    }
    serde_json::json!({ "metadata": metadata })
}

/// Add or remove the operator's finalizer: `Ok(true)` when written. `Ok(false)` when the
/// cached object is stale: a conflict (409) or already gone (404); the caller looks again
/// shortly, from what the watch brings, without a Warning (and announces nothing twice).
pub async fn set_finalizer(client: &Client, bridge: &Bridge, ours: bool) -> Result<bool, Error> {
    let namespace = bridge.namespace().unwrap_or_default();
    let name = bridge.name_any();
    let api: Api<Bridge> = Api::namespaced(client.clone(), &namespace);
    let patch = finalizer_patch(bridge, &finalizers_with(bridge, ours));
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api
        .patch_metadata(&name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(source) => Err(Error::Kube {
            verb: if ours {
                "add finalizer to"
            } else {
                "remove finalizer from"
            },
            kind: "Bridge".into(),
            namespace,
            name,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(finalizers: &[&str], rv: Option<&str>) -> Bridge {
        let mut b = Bridge::new(
            "orders",
            serde_json::from_value(serde_json::json!({
                "destinations": [{"name": "d", "url": "http://127.0.0.1:1/"}]
            }))
            .unwrap(),
        );
        b.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        b.metadata.resource_version = rv.map(str::to_string);
        b
    }

    #[test]
    fn the_patch_keeps_other_finalizers_and_is_guarded_by_the_resource_version() {
        let b = bridge(&["example.com/keep"], Some("42"));
        assert!(!has_finalizer(&b));
        assert_eq!(
            finalizer_patch(&b, &finalizers_with(&b, true)),
            serde_json::json!({"metadata": {
                "finalizers": ["example.com/keep", "causeway.dev/drain"],
                "resourceVersion": "42"
            }})
        );
        let b = bridge(&["causeway.dev/drain", "example.com/keep"], None);
        assert!(has_finalizer(&b));
        assert_eq!(
            finalizer_patch(&b, &finalizers_with(&b, false)),
            serde_json::json!({"metadata": {"finalizers": ["example.com/keep"]}})
        );
        // Adding it twice keeps one.
        assert_eq!(finalizers_with(&b, true).len(), 2);
    }
}
