//! Scenario 9: deleting a Bridge stops its endpoint (404) while its neighbours keep
//! working; deleting a WorkerPool garbage-collects its children (and, on the local
//! stack, its worker process stops) but keeps its data claim (issue 18: the default
//! `persistentVolumeClaimRetentionPolicy` is Retain): a pool of the same name picks the
//! claim up and delivers what the deleted one had accepted. With `whenDeleted: Delete` the
//! claim goes with the pool.
//!
//! Scenario 18 (issue 18): a deleted Bridge drains. Its finalizer holds it, `Draining` in
//! status, while new events get 410 and the queued ones are delivered once the sink
//! recovers; a drain that times out warns with the discarded count; `policy: Discard`
//! goes at once.

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
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {name}}}\nspec:\n  pool: gone\n  destinations: [{{name: out, url: \"{}\", retries: 100, backoff: {{policy: fixed, delays: [1s]}}}}]\n",
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

    // An event accepted while the destination fails: it waits in the pool's store.
    sink.respond_with(503);
    let pending = post(&second, r#"{"kept":true}"#, &[]).await?;
    ensure!(pending.status == 202, "{} {}", pending.status, pending.body);
    let pending_id = pending.json()?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    sink.wait_for(Some("/second"), 2, Duration::from_secs(30))
        .await?;

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
    // Retain (the default): the claim stays, with no owner.
    let owners = kubectl(&[
        "get",
        "pvc",
        "causeway-gone-data",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.metadata.ownerReferences}",
    ])?
    .ok()?;
    ensure!(
        owners.trim().is_empty(),
        "the retained claim has owners: {owners}"
    );

    // A pool of the same name adopts it and delivers the event the old one accepted.
    sink.respond_with(200);
    let before = sink.at("/second").len();
    ns.apply(&crate::pool("gone"))?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "second",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    eventually(
        "the event accepted before the pool was deleted is delivered by its successor",
        Duration::from_secs(120),
        || async {
            let delivered = sink.at("/second").iter().skip(before).any(|r| {
                r.headers
                    .get("causeway-event-id")
                    .and_then(|v| v.to_str().ok())
                    == Some(pending_id.as_str())
            });
            Ok(delivered.then_some(()))
        },
    )
    .await?;

    // Delete: the claim is owned again and goes with the pool.
    ns.apply(
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: gone}\nspec: {replicas: 1, persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}}\n",
    )?;
    eventually(
        "the claim owned by the pool",
        Duration::from_secs(60),
        || async {
            let owners = kubectl(&[
                "get",
                "pvc",
                "causeway-gone-data",
                "-n",
                &ns.name,
                "-o",
                "jsonpath={.metadata.ownerReferences[0].kind}",
            ])?
            .ok()?;
            Ok((owners.trim() == "WorkerPool").then_some(()))
        },
    )
    .await?;
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
        "the claim collected with the pool",
        Duration::from_secs(120),
        || async {
            let left = names(&ns.name, "persistentvolumeclaims", children_sel)?;
            Ok(left.is_empty().then_some(()))
        },
    )
    .await?;
    ns.pass();
    Ok(())
}

// ---- scenario 18: a deleted Bridge drains (issue 18) ------------------------------

/// A Bridge on pool `drain` whose one destination retries every second for long.
fn draining_bridge(name: &str, sink: &Sink, deletion: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {name}}}\nspec:\n  pool: drain\n  deletion: {deletion}\n  destinations: [{{name: out, url: \"{}\", retries: 100, backoff: {{policy: fixed, delays: [1s]}}}}]\n",
        sink.url(&format!("/{name}"))
    )
}

/// The Bridge, or `None` once it is gone.
async fn bridge_now(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<causeway_crds::Bridge>> {
    let api: kube::Api<causeway_crds::Bridge> = kube::Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?)
}

/// Events about Bridge `name` with `reason`: their notes and types.
async fn bridge_events(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> Result<Vec<(String, String)>> {
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Bridge")
        })
        .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect())
}

/// Post `n` events to `url`; their ids.
async fn post_events(url: &str, n: usize) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = post(url, &format!(r#"{{"n":{i}}}"#), &[]).await?;
        ensure!(r.status == 202, "{} {}", r.status, r.body);
        ids.push(r.json()?["id"].as_str().unwrap_or_default().to_string());
    }
    Ok(ids)
}

#[tokio::test]
async fn s18_a_deleted_bridge_drains_its_queue_then_goes() -> Result<()> {
    let ns = TestNs::new("drain").await?;
    let stack = Stack::get()?;
    let client = stack.client().await?;
    let failing = Sink::start()?;
    failing.respond_with(503);
    let healthy = Sink::start()?;
    ns.apply(&format!(
        "{}---\n{}---\n{}",
        crate::pool("drain"),
        draining_bridge("leaving", &failing, "{drainTimeout: 10m}"),
        draining_bridge("staying", &healthy, "{}"),
    ))?;
    for b in ["leaving", "staying"] {
        wait_condition(&client, &ns.name, "Bridge", b, Want::ready(), READY_TIMEOUT).await?;
    }
    let finalizers = bridge_now(&client, &ns.name, "leaving")
        .await?
        .and_then(|b| b.metadata.finalizers)
        .unwrap_or_default();
    ensure!(
        finalizers == ["causeway.dev/drain"],
        "the operator's finalizer: {finalizers:?}"
    );
    let pod = ready_pool_pod(&client, &ns.name, "drain").await?;
    let leaving = ingress_url(&pod, &format!("/hooks/{}/leaving", ns.name))?;
    let staying = ingress_url(&pod, &format!("/hooks/{}/staying", ns.name))?;
    const N: usize = 3;
    let ids = post_events(&leaving, N).await?;
    failing
        .wait_for(Some("/leaving"), N, Duration::from_secs(60))
        .await?;

    kubectl(&[
        "delete",
        "bridge",
        "leaving",
        "-n",
        &ns.name,
        "--wait=false",
    ])?
    .ok()?;
    // Draining: the Bridge stays, with its progress in status; new events get 410.
    eventually(
        "status.deletion: Draining with the queued jobs",
        Duration::from_secs(90),
        || async {
            let b = bridge_now(&client, &ns.name, "leaving")
                .await?
                .ok_or_else(|| anyhow::anyhow!("the Bridge went before it drained"))?;
            let d = b.status.and_then(|s| s.deletion);
            Ok(
                d.filter(|d| d.phase == "Draining" && d.pending_jobs == Some(N as u64))
                    .map(|_| ()),
            )
        },
    )
    .await?;
    eventually(
        "410 from the draining bridge",
        Duration::from_secs(60),
        || async {
            let r = post(&leaving, r#"{"late":true}"#, &[]).await?;
            Ok((r.status == 410).then_some(r))
        },
    )
    .await
    .and_then(|r| {
        ensure!(
            r.body.contains("is being deleted"),
            "a clear JSON error: {}",
            r.body
        );
        Ok(())
    })?;
    let r = post(&staying, "{}", &[]).await?;
    ensure!(
        r.status == 202,
        "the other bridge still takes events: {} {}",
        r.status,
        r.body
    );
    let conditions =
        causeway_e2e::harness::conditions(&client, &ns.name, "Bridge", "leaving").await?;
    let ready = causeway_e2e::harness::condition(&conditions, "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()));
    ensure!(
        ready == Some(("False".into(), "Draining".into())),
        "Ready while draining: {ready:?}"
    );
    ensure!(
        bridge_now(&client, &ns.name, "leaving").await?.is_some(),
        "the Bridge stays while its jobs are queued"
    );

    // The sink recovers: every queued event is delivered, then the Bridge goes.
    let before = failing.at("/leaving").len();
    failing.respond_with(200);
    eventually(
        "the Bridge gone after its queue drained",
        Duration::from_secs(120),
        || async {
            Ok(bridge_now(&client, &ns.name, "leaving")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    let delivered: std::collections::BTreeSet<String> = failing
        .at("/leaving")
        .iter()
        .skip(before)
        .filter_map(|r| {
            r.headers
                .get("causeway-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .collect();
    for id in &ids {
        ensure!(
            delivered.contains(id),
            "queued event {id} was not delivered before the Bridge went: {delivered:?}"
        );
    }
    ensure!(
        !failing
            .at("/leaving")
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("late")),
        "an event refused with 410 reached the sink"
    );
    // The operator publishes the Event right after it lets the Bridge go, so the
    // Bridge can be gone a moment before its Event is there.
    eventually(
        "a Normal Drained event",
        Duration::from_secs(30),
        || async {
            let drained = bridge_events(&client, &ns.name, "leaving", "Drained").await?;
            Ok(drained.iter().any(|(t, _)| t == "Normal").then_some(()))
        },
    )
    .await?;
    ensure!(
        bridge_events(&client, &ns.name, "leaving", "DrainTimedOut")
            .await?
            .is_empty(),
        "nothing discarded"
    );
    eventually("404 once it is gone", Duration::from_secs(60), || async {
        Ok((post(&leaving, "{}", &[]).await?.status == 404).then_some(()))
    })
    .await?;
    ns.pass();
    Ok(())
}

#[tokio::test]
async fn s18_a_drain_that_times_out_warns_with_the_discarded_count() -> Result<()> {
    let ns = TestNs::new("drain-timeout").await?;
    let stack = Stack::get()?;
    let client = stack.client().await?;
    let sink = Sink::start()?;
    sink.respond_with(503);
    ns.apply(&format!(
        "{}---\n{}",
        crate::pool("drain"),
        draining_bridge("stuck", &sink, "{drainTimeout: 40s}"),
    ))?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "stuck",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    let pod = ready_pool_pod(&client, &ns.name, "drain").await?;
    let url = ingress_url(&pod, &format!("/hooks/{}/stuck", ns.name))?;
    post_events(&url, 2).await?;
    sink.wait_for(Some("/stuck"), 2, Duration::from_secs(60))
        .await?;

    kubectl(&["delete", "bridge", "stuck", "-n", &ns.name, "--wait=false"])?.ok()?;
    eventually(
        "a Warning Event naming the discarded count",
        Duration::from_secs(150),
        || async {
            let warned = bridge_events(&client, &ns.name, "stuck", "DrainTimedOut").await?;
            Ok(warned
                .into_iter()
                .find(|(t, note)| t == "Warning" && note.contains("2 queued jobs discarded")))
        },
    )
    .await?;
    eventually("the Bridge gone", Duration::from_secs(60), || async {
        Ok(bridge_now(&client, &ns.name, "stuck")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    ns.pass();
    Ok(())
}

#[tokio::test]
async fn s18_policy_discard_deletes_at_once() -> Result<()> {
    let ns = TestNs::new("drain-discard").await?;
    let stack = Stack::get()?;
    let client = stack.client().await?;
    let sink = Sink::start()?;
    sink.respond_with(503);
    ns.apply(&format!(
        "{}---\n{}",
        crate::pool("drain"),
        draining_bridge("dropped", &sink, "{policy: Discard}"),
    ))?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "dropped",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    let pod = ready_pool_pod(&client, &ns.name, "drain").await?;
    let url = ingress_url(&pod, &format!("/hooks/{}/dropped", ns.name))?;
    post_events(&url, 2).await?;
    sink.wait_for(Some("/dropped"), 2, Duration::from_secs(60))
        .await?;

    // `kubectl delete` waits for the finalizer: with Discard it goes at once.
    kubectl(&[
        "delete",
        "bridge",
        "dropped",
        "-n",
        &ns.name,
        "--timeout=30s",
    ])?
    .ok()?;
    ensure!(
        bridge_now(&client, &ns.name, "dropped").await?.is_none(),
        "the Bridge is gone"
    );
    eventually("a Discarded event", Duration::from_secs(30), || async {
        let discarded = bridge_events(&client, &ns.name, "dropped", "Discarded").await?;
        Ok((!discarded.is_empty()).then_some(()))
    })
    .await?;
    ensure!(
        bridge_now(&client, &ns.name, "dropped").await?.is_none()
            && bridge_events(&client, &ns.name, "dropped", "Draining")
                .await?
                .is_empty(),
        "never drained"
    );
    ns.pass();
    Ok(())
}
