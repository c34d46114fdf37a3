//! Optional PodDisruptionBudget and HorizontalPodAutoscaler.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{PoolView, object_name};

/// A PodDisruptionBudget when `spec.disruptionBudget` is set.
pub fn disruption_budget(view: &PoolView<'_>) -> Option<PodDisruptionBudget> {
    let budget = view.pool.spec.disruption_budget.as_ref()?;
    Some(PodDisruptionBudget {
        metadata: view.meta(object_name(&view.name)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(budget.min_available)),
            selector: Some(LabelSelector {
                match_labels: Some(view.selector()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// An autoscaling/v2 HorizontalPodAutoscaler on CPU when `spec.autoscaling` is set and the
/// storage is shared (postgres). Embedded storage has one writer: it is never autoscaled.
pub fn horizontal_autoscaler(view: &PoolView<'_>) -> Option<HorizontalPodAutoscaler> {
    let a = view.pool.spec.autoscaling.as_ref()?;
    if view.pool.spec.storage.type_ != causeway_crds::pool::StorageType::Postgres {
        return None;
    }
    Some(HorizontalPodAutoscaler {
        metadata: view.meta(object_name(&view.name)),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: object_name(&view.name),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(a.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use causeway_crds::pool::{Autoscaling, DisruptionBudget};

    #[test]
    fn none_unless_asked_for() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        assert!(disruption_budget(&view).is_none());
        assert!(horizontal_autoscaler(&view).is_none());
    }

    #[test]
    fn embedded_storage_is_never_autoscaled() {
        let mut s = default_spec();
        s.autoscaling = Some(Autoscaling {
            min_replicas: 1,
            max_replicas: 5,
            target_cpu_utilization_percentage: 60,
        });
        let p = pool("orders", s);
        assert!(horizontal_autoscaler(&PoolView::new(&p).unwrap()).is_none());
    }

    #[test]
    fn hpa_targets_the_deployment_on_cpu() {
        let mut s = default_spec();
        s.storage.type_ = causeway_crds::pool::StorageType::Postgres;
        s.storage.postgres = Some(causeway_crds::pool::PostgresStorage {
            url_secret_ref: causeway_crds::common::SecretKeyRef {
                name: "pg".into(),
                key: "url".into(),
            },
        });
        s.autoscaling = Some(Autoscaling {
            min_replicas: 2,
            max_replicas: 5,
            target_cpu_utilization_percentage: 60,
        });
        s.disruption_budget = Some(DisruptionBudget { min_available: 1 });
        let p = pool("orders", s);
        let view = PoolView::new(&p).unwrap();
        let hpa = horizontal_autoscaler(&view).unwrap().spec.unwrap();
        assert_eq!(hpa.scale_target_ref.name, "causeway-orders");
        assert_eq!(hpa.scale_target_ref.kind, "Deployment");
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 5));
        let m = &hpa.metrics.unwrap()[0];
        assert_eq!(
            m.resource.as_ref().unwrap().target.average_utilization,
            Some(60)
        );
        let pdb = disruption_budget(&view).unwrap().spec.unwrap();
        assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
        assert_eq!(
            pdb.selector.unwrap().match_labels.unwrap()["causeway.dev/pool"],
            "orders"
        );
    }
}
