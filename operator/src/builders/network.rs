//! The pool's NetworkPolicy: the ingress port is open to anyone (senders), the admin port
//! only to the operator (and Prometheus when the operator is told where it runs), the
//! internal port only to the operator and the worker pods of the namespace (other pools
//! call it; the namespace's internal token authenticates those calls).

use std::collections::BTreeMap;

use causeway_crds::config::{ADMIN_PORT, INGRESS_PORT, INTERNAL_PORT};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{NAME_LABEL, PoolView, WORKER_APP, object_name};

/// Label the API server sets on every namespace: its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Pods in namespaces matching `namespace_labels`, matching `pod_labels`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Peer {
    /// Labels of the namespaces (empty: every namespace).
    pub namespace_labels: BTreeMap<String, String>,
    /// Labels of the pods (empty: every pod of those namespaces).
    pub pod_labels: BTreeMap<String, String>,
}

impl Peer {
    fn to_peer(&self) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            namespace_selector: Some(selector(&self.namespace_labels)),
            pod_selector: Some(selector(&self.pod_labels)),
            ip_block: None,
        }
    }
}

/// Who may reach the workers' admin and internal ports, from the operator's flags.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkPolicySettings {
    /// The operator's own pods (namespace and pod labels).
    pub operator: Peer,
    /// Prometheus, when it scrapes the workers' `/metrics` (on the admin port).
    pub prometheus: Option<Peer>,
}

fn selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: (!labels.is_empty()).then(|| labels.clone()),
        match_expressions: None,
    }
}

fn tcp(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

/// The pool's NetworkPolicy (named like its Deployment), selecting the pool's pods.
pub fn network_policy(view: &PoolView<'_>, settings: &NetworkPolicySettings) -> NetworkPolicy {
    let mut admin_from = vec![settings.operator.to_peer()];
    admin_from.extend(settings.prometheus.iter().map(Peer::to_peer));
    let workers_here = NetworkPolicyPeer {
        namespace_selector: None,
        pod_selector: Some(selector(&BTreeMap::from([(
            NAME_LABEL.to_string(),
            WORKER_APP.to_string(),
        )]))),
        ip_block: None,
    };
    NetworkPolicy {
        metadata: view.meta(object_name(&view.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&view.selector())),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![tcp(INGRESS_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: Some(admin_from),
                    ports: Some(vec![tcp(ADMIN_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![settings.operator.to_peer(), workers_here]),
                    ports: Some(vec![tcp(INTERNAL_PORT)]),
                },
            ]),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn operator() -> Peer {
        Peer {
            namespace_labels: BTreeMap::from([(
                NAMESPACE_NAME_LABEL.into(),
                "causeway-system".into(),
            )]),
            pod_labels: BTreeMap::from([
                ("app.kubernetes.io/name".into(), "causeway".into()),
                ("app.kubernetes.io/component".into(), "operator".into()),
            ]),
        }
    }

    fn rule_for(np: &NetworkPolicy, port: u16) -> NetworkPolicyIngressRule {
        let rules = np.spec.as_ref().unwrap().ingress.clone().unwrap();
        let mut found: Vec<_> = rules
            .into_iter()
            .filter(|r| {
                r.ports
                    .iter()
                    .flatten()
                    .any(|p| p.port == Some(IntOrString::Int(i32::from(port))))
            })
            .collect();
        assert_eq!(found.len(), 1, "one rule for port {port}");
        found.remove(0)
    }

    // Issue 12 item 8: admin and internal ports admit only the operator (and Prometheus when
    // configured); ingress stays open; the policy is a child of the pool.
    #[test]
    fn item8_admin_and_internal_ports_admit_only_the_operator_and_prometheus_when_asked() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let np = network_policy(
            &view,
            &NetworkPolicySettings {
                operator: operator(),
                prometheus: None,
            },
        );
        assert_eq!(np.metadata.name.as_deref(), Some("causeway-orders"));
        let owner = &np.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("WorkerPool", "uid-orders", Some(true))
        );
        let spec = np.spec.as_ref().unwrap();
        assert_eq!(
            spec.pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["causeway.dev/pool"],
            "orders"
        );
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_string()][..])
        );

        assert!(
            rule_for(&np, INGRESS_PORT).from.is_none(),
            "ingress is open to senders"
        );
        let admin = rule_for(&np, ADMIN_PORT).from.unwrap();
        assert_eq!(admin.len(), 1, "only the operator: {admin:?}");
        assert_eq!(
            admin[0]
                .namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()[NAMESPACE_NAME_LABEL],
            "causeway-system"
        );
        assert_eq!(
            admin[0]
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["app.kubernetes.io/component"],
            "operator"
        );
        let internal = rule_for(&np, INTERNAL_PORT).from.unwrap();
        assert_eq!(internal.len(), 2);
        assert_eq!(internal[0], admin[0]);
        assert!(
            internal[1].namespace_selector.is_none(),
            "worker pods of this namespace only"
        );
        assert_eq!(
            internal[1]
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()[NAME_LABEL],
            WORKER_APP
        );
        // No rule is left without ports (that would open every port to its peers).
        assert!(
            np.spec
                .as_ref()
                .unwrap()
                .ingress
                .as_ref()
                .unwrap()
                .iter()
                .all(|r| r.ports.as_ref().is_some_and(|p| !p.is_empty()))
        );

        let prom = Peer {
            namespace_labels: BTreeMap::from([(NAMESPACE_NAME_LABEL.into(), "monitoring".into())]),
            pod_labels: BTreeMap::from([("app.kubernetes.io/name".into(), "prometheus".into())]),
        };
        let np = network_policy(
            &view,
            &NetworkPolicySettings {
                operator: operator(),
                prometheus: Some(prom),
            },
        );
        let admin = rule_for(&np, ADMIN_PORT).from.unwrap();
        assert_eq!(admin.len(), 2);
        assert_eq!(
            admin[1]
                .namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()[NAMESPACE_NAME_LABEL],
            "monitoring"
        );
        assert_eq!(
            rule_for(&np, INTERNAL_PORT).from.unwrap().len(),
            2,
            "Prometheus does not get the internal port"
        );
    }
}
