//! Scenario 10 (issue 14): a `storage: postgres` WorkerPool of three replicas on the
//! stack's throwaway PostgreSQL (`e2e/up.sh` starts it with `scripts/postgres.sh`).
//! `kubectl get wpool` shows the store; events sent to the pool's Service (resolved to its
//! ready pods as kube-proxy would: the local stack has none) reach a loopback sink; one
//! pod is killed and deleted in the middle of the load, and every event acknowledged with
//! 202 by any replica still reaches the sink (duplicates allowed and counted: at least
//! once). Then the database is stopped under the running pool: Ready=False
//! `StoreUnavailable` names its host, no replica answers 202, and once it is started again
//! the same worker processes recover, with no restart. The database's password appears in
//! no log, status or event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use causeway_e2e::harness::http::{Sink, post};
use causeway_e2e::harness::{
    Mode, READY_TIMEOUT, Stack, TestNs, Want, container_pid, eventually, ingress_url, kill,
    kubectl, local_log_files, pod_ready, pool_pods, postgres_start, postgres_stop, postgres_url,
    restart_count, service_backends, wait_condition,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

const POOL: &str = "shared";
const REPLICAS: usize = 3;
const EVENTS: usize = 600;
const SENDERS: usize = 8;
/// Kill and delete one pod once this many events were acknowledged.
const KILL_AFTER: usize = 150;

#[tokio::test]
async fn s10_a_postgres_pool_of_three_loses_nothing_when_a_pod_is_deleted() -> Result<()> {
    let ns = TestNs::new("postgres").await?;
    let stack = Stack::get()?;
    let client = stack.client().await?;
    let url = postgres_url(stack)?;
    let password = password_of(&url);
    let sink = Sink::start()?;

    // The URL Secret, through the API (`kubectl apply` would copy it into an annotation),
    // opted in for Causeway's use.
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pg", "labels": {"causeway.dev/use": "true"}},
        "stringData": {"url": url},
    }))?;
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .context("create the URL Secret")?;
    ns.apply(&format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: {POOL}}}\nspec:\n  replicas: {REPLICAS}\n  storage:\n    type: postgres\n    postgres: {{urlSecretRef: {{name: pg, key: url}}}}\n"
    ))?;
    ns.apply(&format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: load}}\nspec:\n  pool: {POOL}\n  destinations:\n  - name: out\n    url: \"{}\"\n    retries: 20\n    backoff: {{policy: exponential, initialDelay: 200ms, maxDelay: 2s}}\n",
        sink.url("/load")
    ))?;
    wait_condition(
        &client,
        &ns.name,
        "WorkerPool",
        POOL,
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "load",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    let pods = pool_pods(&client, &ns.name, POOL).await?;
    ensure!(
        pods.iter().filter(|p| pod_ready(p)).count() == REPLICAS,
        "{REPLICAS} ready pods"
    );
    ensure!(
        pods.iter().all(|p| {
            p.spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .all(|v| v.persistent_volume_claim.is_none())
        }),
        "no volume claim on a postgres pool's pods"
    );

    // `kubectl get wpool` shows the store.
    let store = printed_column(&ns.name, "STORE")?;
    ensure!(
        store == "postgres",
        "kubectl get wpool shows STORE {store:?}"
    );

    // The Service's backends, followed as pods come and go.
    let service = format!("causeway-{POOL}");
    let backends: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
        service_backends(&client, &ns.name, &service, "http").await?,
    ));
    ensure!(
        backends.lock().map(|b| b.len()).unwrap_or(0) == REPLICAS,
        "the Service has {REPLICAS} backends"
    );
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let (client, ns_name, backends, done) = (
            client.clone(),
            ns.name.clone(),
            backends.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(b) = service_backends(&client, &ns_name, &service, "http").await
                    && !b.is_empty()
                    && let Ok(mut current) = backends.lock()
                {
                    *current = b;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    // Senders: each event goes to the next backend, retried (same webhook-id, on another
    // backend) until one acknowledges it.
    let acked: Arc<Mutex<BTreeMap<usize, String>>> = Arc::default();
    let hook = format!("/hooks/{}/load", ns.name);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (backends, acked, hook) = (backends.clone(), acked.clone(), hook.clone());
        senders.push(tokio::spawn(async move {
            let mut refused = 0usize;
            for seq in (s..EVENTS).step_by(SENDERS) {
                let deadline = Instant::now() + Duration::from_secs(180);
                for attempt in 0.. {
                    let base = backends
                        .lock()
                        .map(|b| b[(seq + attempt) % b.len()].clone())
                        .unwrap_or_default();
                    let body = format!(r#"{{"seq": {seq}}}"#);
                    let id = format!("pg-load-{seq}");
                    match post(
                        &format!("{base}{hook}"),
                        &body,
                        &[("content-type", "application/json"), ("webhook-id", &id)],
                    )
                    .await
                    {
                        Ok(r) if r.status == 202 => {
                            if let Ok(mut a) = acked.lock() {
                                a.insert(seq, base);
                            }
                            break;
                        }
                        _ => refused += 1,
                    }
                    if Instant::now() > deadline {
                        bail!("event {seq} never acknowledged");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok::<usize, anyhow::Error>(refused)
        }));
    }

    eventually(
        "enough acknowledged events to delete a pod",
        READY_TIMEOUT,
        || async { Ok((acked.lock().map(|a| a.len()).unwrap_or(0) >= KILL_AFTER).then_some(())) },
    )
    .await?;
    let at_kill = acked.lock().map(|a| a.len()).unwrap_or(0);
    let victim = pods
        .iter()
        .find(|p| pod_ready(p))
        .ok_or_else(|| anyhow!("no ready pod to delete"))?;
    let victim_name = victim.name_any();
    if let Mode::Local { .. } = stack.mode {
        // No graceful shutdown: the process dies in the middle of its claims.
        let pid = container_pid(stack, &ns.name, &victim_name, "worker")?;
        kill(pid, "KILL")?;
        eprintln!(
            "[e2e] s10: SIGKILL worker pid {pid} of {victim_name} after {at_kill} acknowledged events"
        );
    }
    kubectl(&[
        "delete",
        "pod",
        "-n",
        &ns.name,
        &victim_name,
        "--grace-period=0",
        "--force",
    ])?
    .ok()?;

    // The Deployment replaces the pod; the pool is Ready on three replicas again.
    let victim_uid = victim.uid();
    eventually("a replacement pod, three ready", READY_TIMEOUT, || async {
        let pods = pool_pods(&client, &ns.name, POOL).await?;
        let ready: Vec<_> = pods.iter().filter(|p| pod_ready(p)).collect();
        Ok((ready.len() == REPLICAS && ready.iter().all(|p| p.uid() != victim_uid)).then_some(()))
    })
    .await?;

    let mut refused = 0;
    for s in senders {
        refused += s.await??;
    }
    done.store(true, Ordering::Relaxed);
    follower.await?;
    let acked: BTreeMap<usize, String> = acked.lock().map(|a| a.clone()).unwrap_or_default();
    ensure!(
        acked.len() == EVENTS,
        "only {} of {EVENTS} events acknowledged",
        acked.len()
    );
    let by_backend: BTreeSet<&String> = acked.values().collect();
    ensure!(
        by_backend.len() >= REPLICAS,
        "the Service spread the events over every replica: {by_backend:?}"
    );

    let acked_ids: BTreeSet<usize> = acked.keys().copied().collect();
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
            let missing: Vec<usize> = acked_ids.difference(&seen).copied().collect();
            if missing.is_empty() {
                Ok(Some(seen))
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
    let total = sink.at("/load").len();
    eprintln!(
        "[e2e] s10: {} acknowledged by {} replicas, {} distinct delivered, {total} deliveries ({} duplicates, allowed: at least once), {refused} refused sends while the pod went",
        acked.len(),
        by_backend.len(),
        delivered.len(),
        total - delivered.len()
    );

    wait_condition(
        &client,
        &ns.name,
        "WorkerPool",
        POOL,
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    let store = printed_column(&ns.name, "STORE")?;
    ensure!(
        store == "postgres",
        "kubectl get wpool shows STORE {store:?}"
    );

    // The database goes away under the running pool (local stack: its server is ours to
    // stop). Ready says why and names the host; no replica acknowledges an event; once the
    // database is back the same processes recover by themselves.
    if let Mode::Local { .. } = stack.mode {
        let before = restarts(&client, &ns.name).await?;
        postgres_stop(stack)?;
        let outage = database_outage(&client, &ns.name, &url).await;
        let started = postgres_start(stack);
        outage?;
        started?;
        wait_condition(
            &client,
            &ns.name,
            "WorkerPool",
            POOL,
            Want::ready(),
            READY_TIMEOUT,
        )
        .await?;
        let after = restarts(&client, &ns.name).await?;
        ensure!(
            after == before,
            "the workers recover without a restart: {before:?} -> {after:?}"
        );
        let backend = service_backends(&client, &ns.name, &format!("causeway-{POOL}"), "http")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no backend after the outage"))?;
        let r = post(
            &format!("{backend}{hook}"),
            r#"{"seq": 100000}"#,
            &[
                ("content-type", "application/json"),
                ("webhook-id", "pg-after"),
            ],
        )
        .await?;
        ensure!(r.status == 202, "an event after the outage: {}", r.status);
        eventually(
            "the event sent after the outage delivered",
            Duration::from_secs(60),
            || async {
                Ok(sink
                    .at("/load")
                    .iter()
                    .filter_map(|r| r.json().ok())
                    .any(|v| v["seq"] == 100000)
                    .then_some(()))
            },
        )
        .await?;
    }

    // The password is nowhere: status, events, the workers' and the operator's logs.
    if !password.is_empty() {
        let mut places = vec![
            (
                "WorkerPool".to_string(),
                kubectl(&["get", "wpool", "-n", &ns.name, "-o", "yaml"])?.ok()?,
            ),
            (
                "events".to_string(),
                kubectl(&["get", "events", "-n", &ns.name, "-o", "yaml"])?.ok()?,
            ),
        ];
        for log in local_log_files(stack, &[ns.name.as_str(), stack.release_ns.as_str()]) {
            let text = String::from_utf8_lossy(&std::fs::read(&log)?).into_owned();
            places.push((log.display().to_string(), text));
        }
        for (place, text) in &places {
            ensure!(
                !text.contains(&password),
                "the database password appears in {place}"
            );
        }
    }
    ns.pass();
    Ok(())
}

/// While the database is stopped: the pool says `StoreUnavailable` naming the database's
/// host (and no password), and every replica refuses events (never 202).
async fn database_outage(client: &kube::Client, ns: &str, url: &str) -> Result<()> {
    let c = wait_condition(
        client,
        ns,
        "WorkerPool",
        POOL,
        Want::not_ready("StoreUnavailable"),
        READY_TIMEOUT,
    )
    .await?;
    let location = causeway_crds::config::postgres_location(url);
    ensure!(
        c.message.contains(&location),
        "the message names the database {location}: {}",
        c.message
    );
    eprintln!(
        "[e2e] s10: database stopped: Ready=False StoreUnavailable: {}",
        c.message
    );
    for pod in pool_pods(client, ns, POOL).await? {
        let hook = format!("/hooks/{ns}/load");
        if let Ok(r) = post(
            &ingress_url(&pod, &hook)?,
            r#"{"seq": -1}"#,
            &[
                ("content-type", "application/json"),
                ("webhook-id", "pg-down"),
            ],
        )
        .await
        {
            ensure!(
                r.status != 202,
                "{} acknowledged an event while its database was down",
                pod.name_any()
            );
        }
    }
    Ok(())
}

/// Each pool pod's uid and restart count.
async fn restarts(client: &kube::Client, ns: &str) -> Result<BTreeMap<String, i32>> {
    Ok(pool_pods(client, ns, POOL)
        .await?
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.uid().unwrap_or_default(), restart_count(p)))
        .collect())
}

/// The password of a `postgres://user:password@host/db` URL ("" when it has none).
fn password_of(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_default()
}

/// The value of one printer column of `kubectl get wpool POOL`, read at the column's
/// offset in the header (values may be empty).
fn printed_column(ns: &str, column: &str) -> Result<String> {
    let out = kubectl(&["get", "wpool", POOL, "-n", ns])?.ok()?;
    let mut lines = out.lines();
    let header = lines.next().ok_or_else(|| anyhow!("no output"))?;
    let row = lines.next().ok_or_else(|| anyhow!("no row:\n{out}"))?;
    let at = header
        .find(column)
        .ok_or_else(|| anyhow!("no {column} column:\n{out}"))?;
    Ok(row
        .get(at..)
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}
