//! Telling a pool's own status writes from the changes that matter to it.
//!
//! Every status write of a WorkerPool comes back through its watch as a new version of the
//! object. Reconciling the pool again for it, and waking every Bridge of the pool, made each
//! render cost a second render and (at 10,000 Bridges) 10,000 Bridge reconciles that wrote
//! nothing. What a pool's reconcile and its Bridges read is the pool's spec, its labels and
//! annotations, its finalizers and whether it is being deleted: a version that changes none
//! of them is its own status write, or another field's, and is let pass.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};

use kube::Resource;

/// What was last seen of each object, by uid.
#[derive(Default)]
pub struct Changes {
    seen: Mutex<HashMap<String, u64>>,
}

impl Changes {
    /// True when `obj` is new here or differs from the version seen last in anything but its
    /// status (and resource version). A deleted object is forgotten (and counts as a change).
    pub fn changed<K: Resource>(&self, obj: &K, deleted: bool) -> bool {
        let meta = obj.meta();
        let uid = meta.uid.clone().unwrap_or_default();
        // A map of fingerprints stays whole even if a holder panicked.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if deleted {
            seen.remove(&uid);
            return true;
        }
        let print = fingerprint(meta);
        seen.insert(uid, print) != Some(print)
    }
}

fn fingerprint(meta: &kube::api::ObjectMeta) -> u64 {
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_crds::WorkerPool;

    fn pool(generation: i64, status: serde_json::Value) -> WorkerPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "causeway.dev/v1alpha1", "kind": "WorkerPool",
            "metadata": {"name": "default", "namespace": "shop", "uid": "u1",
                         "generation": generation, "resourceVersion": format!("{generation}{status}")},
            "spec": {}, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn status_writes_pass_but_spec_labels_and_deletion_do_not() {
        let c = Changes::default();
        assert!(
            c.changed(&pool(1, serde_json::json!({})), false),
            "first seen"
        );
        assert!(
            !c.changed(&pool(1, serde_json::json!({"replicas": 1})), false),
            "its own status write"
        );
        assert!(
            c.changed(&pool(2, serde_json::json!({"replicas": 1})), false),
            "spec"
        );
        let mut labelled = pool(2, serde_json::json!({"replicas": 1}));
        labelled.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
        assert!(c.changed(&labelled, false), "labels");
        assert!(!c.changed(&labelled, false), "the same again");
        let mut deleting = labelled.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(c.changed(&deleting, false), "deletion began");
        assert!(c.changed(&deleting, true), "deleted");
        assert!(c.changed(&deleting, false), "a deleted uid is forgotten");
    }
}
