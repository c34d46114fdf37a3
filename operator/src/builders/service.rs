//! The Service in front of the pool: ingress for senders, internal port for other pools.

use causeway_crds::config::{INGRESS_PORT, INTERNAL_PORT};
use causeway_crds::pool::ServiceType;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{object_name, PoolView};

/// The admin port is deliberately not on the Service: the operator reaches pods by IP and
/// users go through the API server's pod proxy or a port-forward.
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
            ports: Some(vec![
                port("http", INGRESS_PORT, "http"),
                port("internal", INTERNAL_PORT, "internal"),
            ]),
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
    fn ingress_and_internal_ports_only() {
        let p = pool("orders", default_spec());
        let view = PoolView::new(&p).unwrap();
        let spec = service(&view).spec.unwrap();
        let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![8080, 8081]);
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector.unwrap()["causeway.dev/pool"], "orders");
    }

    #[test]
    fn type_and_annotations_come_from_spec_service() {
        let mut s = default_spec();
        s.service.type_ = ServiceType::LoadBalancer;
        s.service.annotations.insert("lb.example/internal".into(), "true".into());
        let p = pool("orders", s);
        let view = PoolView::new(&p).unwrap();
        let svc = service(&view);
        assert_eq!(svc.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(svc.metadata.annotations.unwrap()["lb.example/internal"], "true");
    }
}
