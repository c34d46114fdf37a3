//! Scenario 9: deleting a Bridge stops its endpoint (404) while its neighbours keep
//! working; deleting a WorkerPool garbage-collects its children (and, on the local
//! stack, its worker process stops).

use std::time::Duration;

use anyhow::{Result, ensure};
use causeway_e2e::harness::http::{Sink, post};
use causeway_e2e::harness::{
    Mode, READY_TIMEOUT, Stack, TestNs, Want, container_pid, eventually, ingress_url, kubectl,
    pid_alive, ready_pool_pod, wait_condition,
};
use kube::ResourceExt;

use crate::names;

fn bridge(name: &str, sink: &Sink) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {name}}}\nspec:\n  pool: gone\n  destinations: [{{name: out, url: \"{}\"}}]\n",
        sink.url(&format!("/{name}"))
    )
}

#[tokio::test]
async fn s9_deleting_a_bridge_404s_and_deleting_a_pool_collects_its_children() -> Result<()> {
    let ns = TestNs::new("delete").await?;
    let stack = Stack::get()?;
    let client = stack.client().await?;
    let sink = Sink::start()?;
    ns.apply(&format!(
        "{}---\n{}---\n{}",
        crate::pool("gone"),
        bridge("first", &sink),
        bridge("second", &sink)
    ))?;
    for b in ["first", "second"] {
        wait_condition(&client, &ns.name, "Bridge", b, Want::ready(), READY_TIMEOUT).await?;
    }
    let pod = ready_pool_pod(&client, &ns.name, "gone").await?;
    let first = ingress_url(&pod, &format!("/hooks/{}/first", ns.name))?;
    let second = ingress_url(&pod, &format!("/hooks/{}/second", ns.name))?;
    ensure!(
        post(&first, "{}", &[]).await?.status == 202,
        "first before deletion"
    );

    kubectl(&["delete", "bridge", "first", "-n", &ns.name])?.ok()?;
    eventually(
        "404 from the deleted bridge",
        Duration::from_secs(30),
        || async {
            let r = post(&first, "{}", &[]).await?;
            Ok((r.status == 404).then_some(()))
        },
    )
    .await?;
    let r = post(&second, "{}", &[]).await?;
    ensure!(
        r.status == 202,
        "the other bridge still answers: {} {}",
        r.status,
        r.body
    );

    let pid = match stack.mode {
        Mode::Local { .. } => Some(container_pid(stack, &ns.name, &pod.name_any(), "worker")?),
        Mode::External => None,
    };
    let children_sel = "causeway.dev/pool=gone";
    ensure!(
        !names(&ns.name, "deployments", children_sel)?.is_empty(),
        "the pool has a Deployment before deletion"
    );
    kubectl(&[
        "delete",
        "workerpool",
        "gone",
        "-n",
        &ns.name,
        "--wait=false",
    ])?
    .ok()?;
    eventually(
        "the pool's children garbage-collected",
        Duration::from_secs(120),
        || async {
            let mut left = Vec::new();
            for kind in [
                "deployments",
                "replicasets",
                "pods",
                "services",
                "networkpolicies",
                "serviceaccounts",
                "roles",
                "rolebindings",
                "persistentvolumeclaims",
            ] {
                left.extend(names(&ns.name, kind, children_sel)?);
            }
            for s in ["causeway-gone-config", "causeway-gone-admin"] {
                if kubectl(&["get", "secret", s, "-n", &ns.name])?.code == Some(0) {
                    left.push(format!("secret/{s}"));
                }
            }
            if left.is_empty() {
                Ok(Some(()))
            } else {
                Err(anyhow::anyhow!("left: {left:?}"))
            }
        },
    )
    .await?;
    if let Some(pid) = pid {
        eventually(
            "the worker process stopped",
            Duration::from_secs(30),
            || async { Ok((!pid_alive(pid)).then_some(())) },
        )
        .await?;
    }
    ns.pass();
    Ok(())
}
