//! Scenario 8: the operator is killed in the middle of reconciling a burst of new
//! objects. It comes back (the kubelet restarts the container whose process was
//! SIGKILLed; on a real cluster the Deployment replaces the force-deleted pod), converges, and no object is duplicated.

use std::time::Duration;

use anyhow::{Result, ensure};
use causeway_e2e::harness::http::Sink;
use causeway_e2e::harness::{
    Mode, READY_TIMEOUT, Stack, TestNs, Want, container_pid, eventually, kill, kubectl, pod_ready,
    restart_count, wait_condition,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::names;

const POOLS: [&str; 4] = ["p1", "p2", "p3", "p4"];

#[tokio::test]
async fn s8_operator_restart_mid_reconcile_converges_without_duplicates() -> Result<()> {
    // No other test runs meanwhile: they would see the operator vanish.
    let ns = TestNs::exclusive("restart").await?;
    let stack = Stack::get()?;
    let client = stack.client().await?;
    let sink = Sink::start()?;
    let ops: Api<Pod> = Api::namespaced(client.clone(), &stack.release_ns);
    let selector = format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/component=operator",
        stack.release
    );
    let op = ops
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .find(pod_ready);
    let Some(op) = op else {
        anyhow::bail!("no Ready operator pod")
    };
    let (op_uid, op_restarts) = (op.uid(), restart_count(&op));

    let mut yaml = String::new();
    for p in POOLS {
        yaml.push_str(&crate::pool(p));
        yaml.push_str(&format!(
            "---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: b-{p}}}\nspec:\n  pool: {p}\n  destinations: [{{name: out, url: \"{}\"}}]\n---\n",
            sink.url(&format!("/{p}"))
        ));
    }
    ns.apply(&yaml)?;
    // Let the reconcile get going (some children exist, others not yet), then kill.
    eventually("the first children", Duration::from_secs(60), || async {
        Ok((!names(
            &ns.name,
            "serviceaccounts",
            "app.kubernetes.io/managed-by=causeway-operator",
        )?
        .is_empty())
        .then_some(()))
    })
    .await?;
    match &stack.mode {
        // SIGKILL of the container's process, restarted in place by the kubelet, which delays the
        // restart of a container that crashed before (up to 5 min, reset after 10 min of
        // running), so on a stack kept up across runs the pod is deleted instead, as below.
        Mode::Local { .. } if op_restarts == 0 => {
            let pid = container_pid(stack, &stack.release_ns, &op.name_any(), "operator")?;
            kill(pid, "KILL")?;
            eprintln!("[e2e] s8: SIGKILL operator pid {pid} mid-reconcile");
        }
        Mode::Local { .. } | Mode::External => {
            eprintln!(
                "[e2e] s8: force-deleting operator pod {} mid-reconcile",
                op.name_any()
            );
            kubectl(&[
                "delete",
                "pod",
                "-n",
                &stack.release_ns,
                &op.name_any(),
                "--grace-period=0",
                "--force",
            ])?
            .ok()?;
        }
    }
    eventually("the operator back and Ready", READY_TIMEOUT, || async {
        let list = ops
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        Ok(list
            .into_iter()
            .find(|p| pod_ready(p) && (p.uid() != op_uid || restart_count(p) > op_restarts))
            .map(|_| ()))
    })
    .await?;

    for p in POOLS {
        wait_condition(
            &client,
            &ns.name,
            "Bridge",
            &format!("b-{p}"),
            Want::ready(),
            READY_TIMEOUT,
        )
        .await?;
        wait_condition(
            &client,
            &ns.name,
            "WorkerPool",
            p,
            Want::ready(),
            READY_TIMEOUT,
        )
        .await?;
    }
    // Exactly one of each child per pool, each owned by its pool.
    let mut wrong = Vec::new();
    for p in POOLS {
        let sel = format!("causeway.dev/pool={p}");
        for (kind, want) in [
            ("deployments", 1),
            ("replicasets", 1),
            ("pods", 1),
            ("services", 2), // ingress, and the internal ClusterIP Service (issue 12 item 11)
            ("networkpolicies", 1),
            ("serviceaccounts", 1),
            ("roles", 1),
            ("rolebindings", 1),
            ("persistentvolumeclaims", 1),
        ] {
            let got = names(&ns.name, kind, &sel)?;
            if got.len() != want {
                wrong.push(format!("pool {p}: {} {kind}: {got:?}", got.len()));
            }
        }
        for secret in [
            format!("causeway-{p}-config"),
            format!("causeway-{p}-admin"),
        ] {
            if kubectl(&["get", "secret", "-n", &ns.name, &secret])?.code != Some(0) {
                wrong.push(format!("pool {p}: no secret {secret}"));
            }
        }
    }
    let managed = names(
        &ns.name,
        "secrets",
        "app.kubernetes.io/managed-by=causeway-operator",
    )?;
    let expected_secrets = POOLS.len() * 2 + 1;
    if managed.len() != expected_secrets {
        wrong.push(format!(
            "{} managed secrets, want {expected_secrets}: {managed:?}",
            managed.len()
        ));
    }
    let owners = kubectl(&[
        "get", "deployments,services,networkpolicies,serviceaccounts,roles,rolebindings,persistentvolumeclaims", "-n", &ns.name,
        "-l", "app.kubernetes.io/managed-by=causeway-operator", "-o",
        r#"jsonpath={range .items[*]}{.kind}/{.metadata.name} {range .metadata.ownerReferences[?(@.controller==true)]}{.kind}/{.name}{end}{"\n"}{end}"#,
    ])?
    .ok()?;
    for line in owners.lines() {
        // A data claim is retained (persistentVolumeClaimRetentionPolicy Retain, the
        // default): it has no owner on purpose, so that deleting the pool keeps it.
        let retained_claim = line.starts_with("PersistentVolumeClaim/");
        if retained_claim == line.contains(" WorkerPool/") {
            wrong.push(if retained_claim {
                format!("a retained claim has an owner: {line}")
            } else {
                format!("no controller owner: {line}")
            });
        }
    }
    ensure!(wrong.is_empty(), "after the restart:\n{}", wrong.join("\n"));
    ns.pass();
    Ok(())
}
