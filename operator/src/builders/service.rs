//! The Services in front of the pool: the ingress Service for senders (any type the pool
//! asks for), and a ClusterIP Service for the internal port that other pools call. The
//! internal port is never on a LoadBalancer or NodePort.

use causeway_crds::config::{INGRESS_PORT, INTERNAL_PORT, internal_service_name};
use causeway_crds::pool::ServiceType;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{PoolView, object_name};

/// The ingress Service: only the ingress port. The admin port is deliberately not on any
/// Service: the operator reaches pods by IP and users go through the API server's pod proxy
/// or a port-forward.
pub fn service(view: &PoolView<'_>) -> Service {
    let settings = &view.pool.spec.service;
    let mut meta = view.meta(object_name(&view.name));
    if !settings.annotations.is_empty() {
        meta.annotations = Some(settings.annotations.clone());
    }
    let type_ = match settings.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(view.selector()),
            ports: Some(vec![port("http", INGRESS_PORT, "http")]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The internal Service, `causeway-<pool>-internal`: ClusterIP, internal port only, for
/// `http://<plugin>.internal` calls from other pools (they reach pods by IP when they can,
/// and this name otherwise). The user-facing Service's type and annotations do not apply.
pub fn internal_service(view: &PoolView<'_>) -> Service {
    Service {
        metadata: view.meta(internal_service_name(&view.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(view.selector()),
            ports: Some(vec![port("internal", INTERNAL_PORT, "internal")]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn port(name: &str, port: u16, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        app_protocol: Some("http".into()),
        ..ServicePort::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn ingress_port_only() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let spec = service(&view).spec.unwrap();
        let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![8080]);
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector.unwrap()["causeway.dev/pool"], "orders");
    }

    // Issue 12 item 11: a LoadBalancer or NodePort pool exposes the ingress port only; the
    // internal port is on its own ClusterIP Service.
    #[test]
    fn item11_the_internal_port_is_on_its_own_cluster_ip_service() {
        for type_ in [
            ServiceType::LoadBalancer,
            ServiceType::NodePort,
            ServiceType::ClusterIP,
        ] {
            let mut s = default_spec();
            s.service.type_ = type_;
            s.service
                .annotations
                .insert("lb.example/internal".into(), "false".into());
            let p = pool("orders", s);
            let view = PoolView::new(&p).unwrap();
            let public = service(&view).spec.unwrap();
            let ports: Vec<i32> = public.ports.unwrap().iter().map(|p| p.port).collect();
            assert_eq!(ports, vec![i32::from(INGRESS_PORT)], "{type_:?}");
            let internal = internal_service(&view);
            assert_eq!(
                internal.metadata.name.as_deref(),
                Some("causeway-orders-internal")
            );
            assert!(
                internal.metadata.annotations.is_none(),
                "load balancer annotations stay on the public Service"
            );
            assert_eq!(
                internal.metadata.owner_references.as_ref().unwrap()[0].uid,
                "uid-orders"
            );
            let spec = internal.spec.unwrap();
            assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
            let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
            assert_eq!(ports, vec![i32::from(INTERNAL_PORT)]);
            assert_eq!(spec.selector.unwrap()["causeway.dev/pool"], "orders");
        }
    }

    #[test]
    fn type_and_annotations_come_from_spec_service() {
        let mut s = default_spec();
        s.service.type_ = ServiceType::LoadBalancer;
        s.service
            .annotations
            .insert("lb.example/internal".into(), "true".into());
        let p = pool("orders", s);
        let view = PoolView::new(&p).unwrap();
        let svc = service(&view);
        assert_eq!(svc.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            svc.metadata.annotations.unwrap()["lb.example/internal"],
            "true"
        );
    }
}
