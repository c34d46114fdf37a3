//! The pool's identity and its least-privilege access: read its own config Secret.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::{POOL_LABEL, PoolView, config_secret_name, object_name};

/// A pool that names its own ServiceAccount gets the config-Secret Role bound to it, so
/// that account (and every pod that runs as it) could read the pool's config, tokens and
/// resolved secrets. The account must opt in: it carries the label
/// `causeway.dev/pool: <pool name>`, which only someone who may edit ServiceAccounts sets.
pub fn service_account_opted_in(
    pool: &str,
    sa_name: &str,
    sa: Option<&ServiceAccount>,
) -> Result<(), String> {
    let Some(sa) = sa else {
        return Err(format!(
            "ServiceAccount {sa_name:?} (spec.serviceAccountName) not found"
        ));
    };
    if sa
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POOL_LABEL))
        .map(String::as_str)
        == Some(pool)
    {
        return Ok(());
    }
    Err(format!(
        "ServiceAccount {sa_name:?} (spec.serviceAccountName) has not opted in to run pool {pool}: add the label \
         {POOL_LABEL}={pool} to it (kubectl label serviceaccount {sa_name} {POOL_LABEL}={pool})"
    ))
}

/// The ServiceAccount the pods run as; none when the pool names its own.
pub fn service_account(view: &PoolView<'_>) -> Option<ServiceAccount> {
    if view.pool.spec.service_account_name.is_some() {
        return None;
    }
    Some(ServiceAccount {
        metadata: view.meta(object_name(&view.name)),
        ..ServiceAccount::default()
    })
}

/// The worker reads and watches its config Secret, and nothing else. `list` and `watch` are
/// authorised by `resourceNames` only when the client sends `fieldSelector=metadata.name=<it>`,
/// which the worker does.
pub fn role(view: &PoolView<'_>) -> Role {
    Role {
        metadata: view.meta(object_name(&view.name)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(vec![config_secret_name(&view.name)]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
    }
}

/// Binds [`role`] to the ServiceAccount the pods run as.
pub fn role_binding(view: &PoolView<'_>) -> RoleBinding {
    RoleBinding {
        metadata: view.meta(object_name(&view.name)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: object_name(&view.name),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: view.service_account_name(),
            namespace: Some(view.namespace.clone()),
            api_group: None,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn role_reads_only_the_pools_config_secret() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let r = role(&view);
        let rules = r.rules.unwrap();
        assert_eq!(rules.len(), 1);
        let rule = &rules[0];
        assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
        assert_eq!(
            rule.resources.as_deref(),
            Some(&["secrets".to_string()][..])
        );
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["causeway-orders-config".to_string()][..])
        );
        assert_eq!(rule.verbs, vec!["get", "list", "watch"]);
        assert!(rule.non_resource_urls.is_none());
        for verb in ["create", "update", "patch", "delete", "*"] {
            assert!(!rule.verbs.iter().any(|v| v == verb));
        }
    }

    #[test]
    fn binding_names_the_role_and_the_service_account() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let rb = role_binding(&view);
        assert_eq!(rb.role_ref.kind, "Role");
        assert_eq!(rb.role_ref.name, "causeway-orders");
        let s = &rb.subjects.unwrap()[0];
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()),
            ("ServiceAccount", "causeway-orders", Some("shop"))
        );
        assert!(service_account(&view).is_some());
    }

    // Issue 12 item 18: a named ServiceAccount gets the config Role only when it opts in.
    #[test]
    fn item18_a_named_service_account_must_carry_the_pool_label() {
        let sa = |labels: &[(&str, &str)]| ServiceAccount {
            metadata: kube::core::ObjectMeta {
                name: Some("team-sa".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..ServiceAccount::default()
        };
        assert!(
            service_account_opted_in(
                "orders",
                "team-sa",
                Some(&sa(&[("causeway.dev/pool", "orders")]))
            )
            .is_ok()
        );
        let e = service_account_opted_in("orders", "team-sa", Some(&sa(&[]))).unwrap_err();
        assert!(
            e.contains("causeway.dev/pool=orders") && e.contains("team-sa"),
            "{e}"
        );
        assert!(
            service_account_opted_in(
                "orders",
                "team-sa",
                Some(&sa(&[("causeway.dev/pool", "payments")]))
            )
            .is_err()
        );
        assert!(
            service_account_opted_in("orders", "team-sa", None)
                .unwrap_err()
                .contains("not found")
        );
    }

    #[test]
    fn a_pool_with_its_own_service_account_gets_none_created_and_binds_that_one() {
        let mut spec = default_spec();
        spec.service_account_name = Some("team-sa".into());
        let p = pool("orders", spec);
        let view = PoolView::new(&p).unwrap();
        assert!(service_account(&view).is_none());
        assert_eq!(role_binding(&view).subjects.unwrap()[0].name, "team-sa");
    }
}
