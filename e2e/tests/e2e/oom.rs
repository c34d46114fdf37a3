//! Scenario 11: a worker container OOM-killed by its memory limit. Pool `small` has a
//! 256 MiB container limit; its plugin `bomb` (fixture `fx-membomb`, a public route)
//! may grow its linear memory to 1 GiB, more than the pod has, and allocates until it
//! cannot. While senders keep a bridge of the same pool busy, one request to the plugin
//! makes the kernel's OOM killer end the container: the kubelet reports
//! `lastState.terminated.reason: OOMKilled` (exit code 137) and restarts it in the same
//! pod, and every event acknowledged with 202 before or after reaches the destination.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail, ensure};
use causeway_e2e::harness::http::{FileServer, Sink, post};
use causeway_e2e::harness::{
    READY_TIMEOUT, Stack, TestNs, Want, eventually, ingress_url, ready_pool_pod, restart_count,
    wait_condition,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};

const EVENTS: usize = 200;
const SENDERS: usize = 4;
/// Send the memory bomb once this many events were acknowledged.
const BOMB_AFTER: usize = 60;

/// The OOM kill the kubelet recorded for the worker container, if any:
/// (reason, exit code, restart count).
fn last_termination(pod: &Pod) -> Option<(String, i32, i32)> {
    let cs = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "worker")?;
    let t = cs.last_state.as_ref()?.terminated.as_ref()?;
    Some((
        t.reason.clone().unwrap_or_default(),
        t.exit_code,
        cs.restart_count,
    ))
}

#[tokio::test]
async fn s11_a_worker_oom_killed_by_its_memory_limit_is_restarted_and_loses_no_acknowledged_event()
-> Result<()> {
    let stack = Stack::get()?;
    let ns = TestNs::new("oom").await?;
    let client = stack.client().await?;
    let files = FileServer::plugins()?;
    let sink = Sink::start()?;
    ns.apply(&format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: small}}\nspec:\n  replicas: 1\n  resources: {{requests: {{memory: 64Mi}}, limits: {{memory: 256Mi}}}}\n---\napiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: bomb}}\nspec:\n  source: {}\n  pool: small\n  route: /bomb\n  limits: {{memory: 1Gi, timeout: 60s}}\n---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: load}}\nspec:\n  pool: small\n  destinations:\n  - name: out\n    url: \"{}\"\n    retries: 20\n    backoff: {{policy: exponential, initialDelay: 200ms, maxDelay: 2s}}\n",
        files.source("fx-membomb.wasm")?,
        sink.url("/load")
    ))?;
    for (kind, name) in [("Bridge", "load"), ("Plugin", "bomb")] {
        wait_condition(&client, &ns.name, kind, name, Want::ready(), READY_TIMEOUT).await?;
    }
    let pod = ready_pool_pod(&client, &ns.name, "small").await?;
    let (uid, restarts) = (pod.uid(), restart_count(&pod));
    let hook = Arc::new(Mutex::new(ingress_url(
        &pod,
        &format!("/hooks/{}/load", ns.name),
    )?));
    let acked: Arc<Mutex<BTreeSet<usize>>> = Arc::default();

    // Senders: each event is retried (same webhook-id) until it is acknowledged.
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (hook, acked) = (hook.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            for seq in (s..EVENTS).step_by(SENDERS) {
                let deadline = Instant::now() + Duration::from_secs(240);
                loop {
                    let url = hook.lock().map(|u| u.clone()).unwrap_or_default();
                    let id = format!("load-{seq}");
                    match post(
                        &url,
                        &format!(r#"{{"seq": {seq}}}"#),
                        &[("content-type", "application/json"), ("webhook-id", &id)],
                    )
                    .await
                    {
                        Ok(r) if r.status == 202 => {
                            if let Ok(mut a) = acked.lock() {
                                a.insert(seq);
                            }
                            break;
                        }
                        _ if Instant::now() > deadline => bail!("event {seq} never acknowledged"),
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                // Spread the load over the restart.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    eventually(
        "events acknowledged before the bomb",
        READY_TIMEOUT,
        || async { Ok((acked.lock().map(|a| a.len()).unwrap_or(0) >= BOMB_AFTER).then_some(())) },
    )
    .await?;
    let at_bomb = acked.lock().map(|a| a.len()).unwrap_or(0);

    // The bomb: no answer can come back, the container dies under the request.
    let bomb = post(&ingress_url(&pod, "/bomb")?, "{}", &[]).await;
    match &bomb {
        Ok(r) => ensure!(
            !(200..300).contains(&r.status),
            "the memory bomb answered {} {}: the container survived",
            r.status,
            r.body
        ),
        Err(e) => eprintln!("[e2e] s11: the bomb request ended without an answer: {e:#}"),
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let (reason, code, count) = eventually(
        "the kubelet to report the worker OOMKilled and restarted",
        READY_TIMEOUT,
        || async {
            let p = pods.get(&pod.name_any()).await?;
            match last_termination(&p) {
                Some(t) if t.2 > restarts => Ok(Some(t)),
                other => Err(anyhow!("last termination {other:?}")),
            }
        },
    )
    .await?;
    eprintln!(
        "[e2e] s11: memory bomb after {at_bomb} acknowledged events: worker {reason} (exit {code}), restart count {restarts} -> {count}"
    );
    ensure!(
        reason == "OOMKilled" && code == 137,
        "the worker ended {reason} with exit code {code}, not OOMKilled (137)"
    );

    let back = eventually("the worker back and Ready", READY_TIMEOUT, || async {
        let p = ready_pool_pod(&client, &ns.name, "small").await?;
        Ok((restart_count(&p) > restarts).then_some(p))
    })
    .await?;
    ensure!(
        back.uid() == uid,
        "the kubelet restarts the container in the same pod"
    );
    if let Ok(mut h) = hook.lock() {
        *h = ingress_url(&back, &format!("/hooks/{}/load", ns.name))?;
    }
    for s in senders {
        s.await??;
    }
    let acked: BTreeSet<usize> = acked.lock().map(|a| a.clone()).unwrap_or_default();
    ensure!(
        acked.len() == EVENTS,
        "only {} of {EVENTS} acknowledged",
        acked.len()
    );
    eventually(
        "every acknowledged event delivered",
        Duration::from_secs(180),
        || async {
            let seen: BTreeSet<usize> = sink
                .at("/load")
                .iter()
                .filter_map(|r| r.json().ok())
                .filter_map(|v| v["seq"].as_u64())
                .map(|n| n as usize)
                .collect();
            let missing: Vec<usize> = acked.difference(&seen).copied().collect();
            if missing.is_empty() {
                Ok(Some(()))
            } else {
                Err(anyhow!(
                    "{} missing, e.g. {:?}",
                    missing.len(),
                    &missing[..missing.len().min(10)]
                ))
            }
        },
    )
    .await?;
    ns.pass();
    Ok(())
}
