//! The Node this runner stands for: registered Ready, its Lease renewed every few seconds
//! and its Ready condition refreshed, so the node-lifecycle controller neither taints it
//! nor evicts its pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::RunnerError;

const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet renews every 10 s against a 40 s lease; this renews more often because
/// the machine is shared with compilers.
pub const LEASE_RENEW: Duration = Duration::from_secs(5);
const LEASE_SECONDS: i32 = 40;
/// How often the node's status (conditions' heartbeat) is rewritten.
pub const STATUS_EVERY: Duration = Duration::from_secs(30);

pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
        ),
        (
            "causeway.dev/e2e-pod-runner".to_string(),
            "true".to_string(),
        ),
    ])
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

fn status_patch(name: &str) -> serde_json::Value {
    let t = Time(now());
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        serde_json::json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": t, "lastTransitionTime": t,
        })
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .to_string();
    let resources = serde_json::json!({"cpu": cpus, "memory": "16Gi", "pods": "250", "ephemeral-storage": "100Gi"});
    serde_json::json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "e2e pod runner"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "e2e pod runner"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "e2e pod runner"),
                cond("Ready", "True", "KubeletReady", "causeway e2e pod runner is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "machineID": "causeway-e2e", "systemUUID": "causeway-e2e", "bootID": "causeway-e2e",
                "kernelVersion": "", "osImage": "causeway e2e pod runner (processes on loopback)",
                "containerRuntimeVersion": "causeway-e2e://0", "kubeletVersion": "v0.0.0-causeway-e2e",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
            },
        }
    })
}

/// Create the Node if it is missing, and mark it Ready. (Conditions keep their
/// `lastTransitionTime` through strategic merge only if unchanged; that is good enough.)
pub async fn register(client: &Client, name: &str) -> Result<(), RunnerError> {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes
        .get_opt(name)
        .await
        .map_err(RunnerError::kube("get node"))?
        .is_none()
    {
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {},
        }))
        .map_err(RunnerError::Json)?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => tracing::info!(node = name, "registered node"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(RunnerError::kube("create node")(e)),
        }
    }
    report_status(client, name).await?;
    renew_lease(client, name).await
}

pub async fn report_status(client: &Client, name: &str) -> Result<(), RunnerError> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Strategic(status_patch(name)),
        )
        .await
        .map_err(RunnerError::kube("patch node status"))?;
    Ok(())
}

pub async fn renew_lease(client: &Client, name: &str) -> Result<(), RunnerError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": MicroTime(now())},
    });
    leases
        .patch(
            name,
            &PatchParams::apply("causeway-e2e-pod-runner").force(),
            &Patch::Apply(lease),
        )
        .await
        .map_err(RunnerError::kube("renew node lease"))?;
    Ok(())
}

/// Keep the node alive until the task is dropped. Errors are logged and retried.
pub async fn heartbeat(client: Client, name: String) {
    let mut lease = tokio::time::interval(LEASE_RENEW);
    let mut status = tokio::time::interval(STATUS_EVERY);
    lease.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = lease.tick() => {
                if let Err(e) = renew_lease(&client, &name).await {
                    tracing::warn!(error = %e, "node lease");
                }
            }
            _ = status.tick() => {
                // Also brings the node back if someone deleted it.
                if let Err(e) = register(&client, &name).await {
                    tracing::warn!(error = %e, "node status");
                }
            }
        }
    }
}
