//! Writes: server-side apply with one field manager and `force`, deletes that count 404 as
//! done, and Events.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use crate::builders::FIELD_MANAGER;

fn kind_of<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).to_string()
}

/// Server-side apply `obj` (force, field manager `causeway-operator`).
pub async fn apply<K>(client: &Client, obj: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Kube {
        verb: "apply",
        kind: kind_of::<K>(),
        namespace,
        name,
        source,
    })
}

/// Server-side apply of the status subresource of a custom resource.
pub async fn apply_status<K, S>(client: &Client, obj: &K, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
    S: Serialize,
{
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Kube {
        verb: "apply status of",
        kind: kind_of::<K>(),
        namespace,
        name,
        source,
    })
}

/// Delete every object of `store` that the pool with `owner_uid` controls and that is not
/// `keep`. 404 counts as done.
pub async fn delete_unwanted<K>(
    client: &Client,
    store: &Store<K>,
    namespace: &str,
    owner_uid: &str,
    keep: Option<&str>,
) -> Result<Vec<String>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let mut deleted = Vec::new();
    for obj in store.state() {
        if obj.namespace().as_deref() != Some(namespace) || keep == Some(obj.name_any().as_str()) {
            continue;
        }
        let controlled = obj
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == owner_uid);
        if !controlled {
            continue;
        }
        let name = obj.name_any();
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Kube {
                    verb: "delete",
                    kind: kind_of::<K>(),
                    namespace: namespace.into(),
                    name,
                    source,
                });
            }
        }
    }
    Ok(deleted)
}

/// Publish an Event about `obj`. Failing to publish is logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(&note, 1000)),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, object = %obj.meta().name.clone().unwrap_or_default(), "could not publish event");
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(super::truncate("héllo", 2), "h…");
        assert_eq!(super::truncate("abc", 5), "abc");
    }
}
