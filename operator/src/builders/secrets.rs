//! The config Secret (the rendered `WorkerConfig`) and the token Secrets.

use std::collections::BTreeMap;

use causeway_crds::WorkerConfig;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{
    CONFIG_KEY, CONFIG_VERSION_ANNOTATION, INTERNAL_TOKEN_SECRET, MANAGED_BY, MANAGED_BY_LABEL,
    PoolView, TOKEN_KEY, admin_secret_name, config_secret_name,
};

/// The rendered config could not be serialised.
#[derive(Debug, thiserror::Error)]
#[error("serialise worker config: {0}")]
pub struct ConfigSecretError(#[from] serde_json::Error);

/// The pool's config Secret: `config.json` holds the rendered `WorkerConfig`, and the
/// `causeway.dev/config-version` annotation its version. Only the pool's ServiceAccount may
/// read it (see [`super::role`]).
pub fn config_secret(
    view: &PoolView<'_>,
    config: &WorkerConfig,
) -> Result<Secret, ConfigSecretError> {
    let json = serde_json::to_vec(config)?;
    let mut meta = view.meta(config_secret_name(&view.name));
    meta.annotations = Some(BTreeMap::from([(
        CONFIG_VERSION_ANNOTATION.to_string(),
        config.version.clone(),
    )]));
    Ok(Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), ByteString(json))])),
        ..Secret::default()
    })
}

/// The Secret holding the pool's admin-API token, under `token`.
pub fn token_secret(view: &PoolView<'_>, token: &str) -> Secret {
    Secret {
        metadata: view.meta(admin_secret_name(&view.name)),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The namespace's token for calls between pools. It is shared by every pool of the
/// namespace, so each pool is a (non-controller) owner: the Secret goes away with the last.
pub fn internal_token_secret(namespace: &str, owners: Vec<OwnerReference>, token: &str) -> Secret {
    let owners = owners
        .into_iter()
        .map(|o| OwnerReference {
            controller: None,
            block_owner_deletion: None,
            ..o
        })
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(INTERNAL_TOKEN_SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (
                    super::COMPONENT_LABEL.to_string(),
                    "internal-token".to_string(),
                ),
            ])),
            owner_references: Some(owners),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn config_secret_holds_the_json_and_its_version() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let cfg = WorkerConfig {
            version: "abc".into(),
            pool: "orders".into(),
            namespace: "shop".into(),
            ..WorkerConfig::default()
        };
        let s = config_secret(&view, &cfg).unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("causeway-orders-config"));
        assert_eq!(
            s.metadata.annotations.as_ref().unwrap()[CONFIG_VERSION_ANNOTATION],
            "abc"
        );
        let bytes = &s.data.as_ref().unwrap()[CONFIG_KEY].0;
        let back: WorkerConfig = serde_json::from_slice(bytes).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(
            s.metadata.owner_references.unwrap()[0].controller,
            Some(true)
        );
    }

    #[test]
    fn internal_token_is_owned_by_every_pool_but_controlled_by_none() {
        let a = pool("a", default_spec());
        let b = pool("b", default_spec());
        let owners = vec![
            PoolView::new(&a).unwrap().owner,
            PoolView::new(&b).unwrap().owner,
        ];
        let s = internal_token_secret("shop", owners, "t0k");
        let refs = s.metadata.owner_references.unwrap();
        assert_eq!(refs.len(), 2);
        assert!(refs.iter().all(|r| r.controller.is_none()));
        assert_eq!(s.data.unwrap()[TOKEN_KEY].0, b"t0k");
        let view = PoolView::new(&a).unwrap();
        assert_eq!(
            token_secret(&view, "x").metadata.name.as_deref(),
            Some("causeway-a-admin")
        );
    }
}
