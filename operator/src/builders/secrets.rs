//! The config Secret (the rendered `WorkerConfig`) and the token Secrets.

use std::collections::BTreeMap;

use causeway_crds::WorkerConfig;
use causeway_crds::config::packing::{PackError, pack};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{
    CONFIG_VERSION_ANNOTATION, INTERNAL_TOKEN_SECRET, MANAGED_BY, MANAGED_BY_LABEL, PoolView,
    TOKEN_KEY, admin_secret_name, config_secret_name,
};

/// The rendered config cannot be stored: it does not serialise, or it does not fit in a
/// Secret even compressed ([`PackError::TooLarge`]).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ConfigSecretError(#[from] pub PackError);

impl ConfigSecretError {
    /// True when the config is too large for a Secret (a condition on the pool, not a
    /// failure to retry soon).
    pub fn is_too_large(&self) -> bool {
        matches!(self.0, PackError::TooLarge { .. })
    }
}

/// The pool's config Secret: the rendered `WorkerConfig` as JSON under `config.json`, or
/// zstd-compressed under `config.json.zst` when it is large ([`causeway_crds::config::packing`]),
/// and its version in the `causeway.dev/config-version` annotation. Only the pool's
/// ServiceAccount may read it (see [`super::role`]). Server-side apply drops the key the
/// previous version used when the other one is written.
pub fn config_secret(
    view: &PoolView<'_>,
    config: &WorkerConfig,
) -> Result<Secret, ConfigSecretError> {
    let packed = pack(config)?;
    let mut meta = view.meta(config_secret_name(&view.name));
    meta.annotations = Some(BTreeMap::from([(
        CONFIG_VERSION_ANNOTATION.to_string(),
        config.version.clone(),
    )]));
    Ok(Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            packed.key.to_string(),
            ByteString(packed.bytes),
        )])),
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

    use causeway_crds::config::CONFIG_KEY;
    use causeway_crds::config::packing::{CONFIG_ZSTD_KEY, SECRET_DATA_LIMIT, unpack};

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

    /// `n` Bridges rendered by the pure renderer into pool `orders`; each destination's
    /// body template is `body(i)`.
    fn rendered(n: usize, body: impl Fn(usize) -> String) -> WorkerConfig {
        use causeway_crds::config::{RenderContext, Scope, render};
        let bridges = (0..n)
            .map(|i| {
                serde_json::from_value::<causeway_crds::Bridge>(serde_json::json!({
                    "apiVersion": "causeway.dev/v1alpha1", "kind": "Bridge",
                    "metadata": {"name": format!("b{i:05}"), "namespace": "shop", "generation": 1},
                    "spec": {"pool": "orders", "destinations": [{
                        "name": "out", "url": format!("http://127.0.0.1:9/b{i}"), "body": body(i)}]},
                }))
                .map(std::sync::Arc::new)
                .unwrap()
            })
            .collect();
        let inv = causeway_crds::Inventory {
            bridges,
            ..Default::default()
        };
        let scope = Scope::Pool {
            namespace: "shop".into(),
            name: "orders".into(),
        };
        let r = render(&inv, &scope, &RenderContext::default());
        assert!(r.problems.is_empty(), "{:?}", &r.problems[..1]);
        assert_eq!(r.config.bridges.len(), n);
        r.config
    }

    /// A body template of about 1.5 KiB: the same shape for every bridge (as a chart or a
    /// generator writes them), with the bridge's own names in it.
    fn long_body(i: usize) -> String {
        let fields: Vec<String> = (0..40)
            .map(|f| format!("\"field_{f}_of_b{i}\": \"$payload.order.items.{f}.sku\""))
            .collect();
        format!("{{{}}}", fields.join(", "))
    }

    // Issue 15: 10,000 Bridges with long bodies, rendered by the pure renderer. Their JSON
    // is far over the 1 MiB a Secret holds; compressed it fits, and the worker's reading
    // gives back the same config.
    #[test]
    fn ten_thousand_bridges_with_long_bodies_fit_compressed() {
        let cfg = rendered(10_000, long_body);
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let s = config_secret(&view, &cfg).unwrap();
        let data = s.data.as_ref().unwrap();
        assert_eq!(
            data.len(),
            1,
            "one key: the previous one is dropped by the apply"
        );
        let stored = &data[CONFIG_ZSTD_KEY].0;
        let json = serde_json::to_vec(&cfg).unwrap().len();
        eprintln!(
            "10,000 bridges with long bodies: {json} bytes of JSON, {} compressed ({:.1}x)",
            stored.len(),
            json as f64 / stored.len() as f64
        );
        assert!(json > 10 * SECRET_DATA_LIMIT);
        assert!(stored.len() < SECRET_DATA_LIMIT);
        let back = unpack(|k| data.get(k).map(|b| b.0.as_slice())).unwrap();
        assert_eq!(back, cfg);
    }

    // When even the compressed config does not fit (here 1,000 bodies of 4 KiB that share
    // nothing: random text compresses little), nothing is built: a clear error that names
    // the sizes and the limit, which the pool shows as its `ConfigTooLarge` condition.
    #[test]
    fn a_config_that_does_not_fit_even_compressed_is_a_clear_error() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut noise = |len: usize| -> String {
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(
                        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                            [(x % 62) as usize],
                    )
                })
                .collect()
        };
        let bodies: Vec<String> = (0..1_000)
            .map(|_| format!("{{\"n\": \"{}\"}}", noise(4096)))
            .collect();
        let cfg = rendered(1_000, |i| bodies[i].clone());
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let err = config_secret(&view, &cfg).unwrap_err();
        assert!(err.is_too_large());
        let PackError::TooLarge {
            json,
            packed,
            limit,
        } = err.0
        else {
            unreachable!()
        };
        assert!(packed > limit && json > packed, "{json} → {packed}");
        let err = ConfigSecretError(PackError::TooLarge {
            json,
            packed,
            limit,
        });
        let text = err.to_string();
        assert!(text.contains("does not fit in a Secret"), "{text}");
        assert!(text.contains(&limit.to_string()), "{text}");
        assert!(text.contains("keep the previous config"), "{text}");
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
