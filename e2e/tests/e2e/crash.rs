//! Scenario 6: SIGKILL a worker container's process in the middle of a load. The kubelet
//! restarts it (same pod, restart count + 1, same volume) and every event that was
//! acknowledged with 202 reaches the destination (at least once). On a real cluster the
//! pod is force-deleted instead, and its replacement takes over the same volume.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use causeway_e2e::harness::http::{Sink, post};
use causeway_e2e::harness::{
    Mode, READY_TIMEOUT, Stack, TestNs, Want, container_pid, eventually, ingress_url, kill,
    kubectl, pid_alive, ready_pool_pod, restart_count, wait_condition,
};
use kube::ResourceExt;

const EVENTS: usize = 300;
const SENDERS: usize = 8;
/// Kill the worker once this many events were acknowledged.
const KILL_AFTER: usize = 90;

#[tokio::test]
async fn s6_sigkill_under_load_loses_no_acknowledged_event() -> Result<()> {
    let ns = TestNs::new("crash").await?;
    let stack = Stack::get()?;
    let client = stack.client().await?;
    let sink = Sink::start()?;
    ns.apply(&format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: load}}\nspec:\n  destinations:\n  - name: out\n    url: \"{}\"\n    retries: 20\n    backoff: {{policy: exponential, initialDelay: 200ms, maxDelay: 2s}}\n",
        sink.url("/load")
    ))?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "load",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    let pod = ready_pool_pod(&client, &ns.name, "default").await?;
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
            let mut refused = 0usize;
            for seq in (s..EVENTS).step_by(SENDERS) {
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let url = hook.lock().map(|u| u.clone()).unwrap_or_default();
                    let body = format!(r#"{{"seq": {seq}}}"#);
                    let id = format!("load-{seq}");
                    match post(
                        &url,
                        &body,
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
                        _ => refused += 1,
                    }
                    if Instant::now() > deadline {
                        bail!("event {seq} never acknowledged");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Ok::<usize, anyhow::Error>(refused)
        }));
    }

    eventually(
        "enough acknowledged events to kill the worker",
        READY_TIMEOUT,
        || async { Ok((acked.lock().map(|a| a.len()).unwrap_or(0) >= KILL_AFTER).then_some(())) },
    )
    .await?;
    let at_kill = acked.lock().map(|a| a.len()).unwrap_or(0);
    match &stack.mode {
        Mode::Local { .. } => {
            let pid = container_pid(stack, &ns.name, &pod.name_any(), "worker")?;
            kill(pid, "KILL")?;
            eprintln!("[e2e] s6: SIGKILL worker pid {pid} after {at_kill} acknowledged events");
            eventually(
                "the killed worker to be gone",
                Duration::from_secs(10),
                || async { Ok((!pid_alive(pid)).then_some(())) },
            )
            .await?;
        }
        Mode::External => {
            kubectl(&[
                "delete",
                "pod",
                "-n",
                &ns.name,
                &pod.name_any(),
                "--grace-period=0",
                "--force",
            ])?
            .ok()?;
        }
    }

    // The worker comes back; senders follow its address.
    let back = eventually("the worker back and Ready", READY_TIMEOUT, || async {
        let p = ready_pool_pod(&client, &ns.name, "default").await?;
        Ok((p.uid() != uid || restart_count(&p) > restarts).then_some(p))
    })
    .await?;
    if let Ok(mut h) = hook.lock() {
        *h = ingress_url(&back, &format!("/hooks/{}/load", ns.name))?;
    }
    if let Mode::Local { .. } = stack.mode {
        ensure!(
            back.uid() == uid,
            "the kubelet restarts the container in the same pod"
        );
        ensure!(
            restart_count(&back) == restarts + 1,
            "restart count {} -> {}",
            restarts,
            restart_count(&back)
        );
    }

    let mut refused = 0;
    for s in senders {
        refused += s.await??;
    }
    let acked: BTreeSet<usize> = acked.lock().map(|a| a.clone()).unwrap_or_default();
    ensure!(
        acked.len() == EVENTS,
        "only {} of {EVENTS} events acknowledged",
        acked.len()
    );

    let delivered = eventually(
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
                Ok(Some(seen))
            } else {
                Err(anyhow::anyhow!(
                    "{} missing, e.g. {:?}",
                    missing.len(),
                    &missing[..missing.len().min(10)]
                ))
            }
        },
    )
    .await?;
    let total = sink.at("/load").len();
    eprintln!(
        "[e2e] s6: {} acknowledged, {} distinct delivered, {} deliveries ({} duplicates, allowed: at least once), {refused} refused sends during the restart",
        acked.len(),
        delivered.len(),
        total,
        total - delivered.len()
    );
    ns.pass();
    Ok(())
}
