//! The steps stage: a bridge's plugins, in order, on one event. Each plugin gets the event
//! as an HTTP request; its answer replaces, drops or fans out the event; the result
//! commits with the delivery jobs it creates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bridge::{ActiveBridge, OutboundRequest};
use crate::delivery::attempt::{after_failure, finish};
use crate::delivery::client::plugin_call;
use crate::shared::Shared;
use crate::store::{
    AttemptRecord, EventDetail, EventId, EventRecord, EventStatus, JobKey, JobRecord, JobTarget,
    JobUpdate, NewEvent, NewJob, Next, child_id, now_ms,
};
use causeway_plugins::PluginRef;
use tracing::{debug, warn};

/// One event on its way through the steps: the original, or one a step fanned out.
struct StepItem {
    /// Place in the fan-out (`""` for the original event, `0`, `1.0`, …).
    path: String,
    id: EventId,
    body: Bytes,
    content_type: Option<String>,
    /// `causeway-destinations` of the last step that set it.
    only: Option<Vec<String>>,
    /// Why a step dropped it (204).
    filtered: Option<String>,
}

/// A 2xx step response that asks for fan-out (`causeway-fanout: true`).
fn is_fanout(headers: &http::HeaderMap) -> bool {
    headers
        .get("causeway-fanout")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Run a bridge's steps on an event: each plugin gets the event as an HTTP request; a 2xx
/// body replaces it, 204 drops it (filtered), anything else fails the step and the whole
/// chain is retried by `stepRetry`. A 2xx with `causeway-fanout: true` and a JSON array
/// body turns each element into its own event (JSON), which goes through the remaining
/// steps and gets its own delivery jobs; children's ids derive from the parent's id and
/// their place, so a chain that runs again stores the same children once. Plugins must
/// tolerate a repeat call for one event id.
/// How long the worker waits for one step: the plugin's own `timeout` (which the host
/// enforces on the guest) plus room to queue for a slot (`whenBusy: queue` waits up to the
/// timeout too); a plugin served by another pool gets the host's remote default.
pub fn step_timeout(cfg: &causeway_config::WorkerConfig, target: &PluginRef) -> Duration {
    match cfg
        .plugins
        .iter()
        .find(|p| p.namespace == target.namespace && p.name == target.name)
    {
        Some(p) => Duration::from_millis(p.timeout_ms.max(1)).saturating_mul(2) + STEP_GRACE,
        None => causeway_plugins::DEFAULT_REMOTE_TIMEOUT + STEP_GRACE,
    }
}

/// Added to a step's own limit for scheduling and the call's own overhead.
const STEP_GRACE: Duration = Duration::from_secs(1);

/// How long a job waits for a plugin that is not loaded before it looks again.
pub(crate) const PLUGIN_HOLD_MS: u64 = 2_000;

pub(crate) async fn run_steps(
    shared: &Arc<Shared>,
    bridge: &ActiveBridge,
    job: &JobRecord,
    detail: &EventDetail,
) {
    let mut items = vec![StepItem {
        path: String::new(),
        id: job.event,
        body: detail.body.clone(),
        content_type: detail
            .record
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone()),
        only: None,
        filtered: None,
    }];
    // A step plugin this worker serves but has not loaded: wait for it without spending
    // the event's retries (no attempt is recorded), rather than fail the event.
    if let Some(why) = shared.plugin_not_ready(&bridge.cfg) {
        debug!(bridge = %bridge.key, %why, "steps held until the plugin loads");
        finish(
            shared,
            job,
            None,
            Next::Retry {
                due_at_ms: now_ms() + PLUGIN_HOLD_MS,
            },
        )
        .await;
        return;
    }
    let mut fanned = false;
    let at_ms = now_ms();
    let started = Instant::now();
    let active = shared.active();
    let mut failure: Option<(Option<u16>, String, String)> = None;
    // One span for this run of the steps, a child of the span that accepted the event;
    // each plugin call is a child of it, and the plugin gets its `traceparent`.
    let trace = detail.record.trace_context();
    let mut run_span = shared.traces.child(
        || format!("steps {}", bridge.key),
        crate::traces::Kind::Internal,
        &trace,
    );
    run_span.set_i64("causeway.attempt", i64::from(job.attempts) + 1);
    let run_trace = run_span.context(trace.state.clone());
    'steps: for (n, step) in bridge.cfg.steps.iter().enumerate() {
        let mut next_items = Vec::with_capacity(items.len());
        for mut item in std::mem::take(&mut items) {
            if item.filtered.is_some() {
                next_items.push(item);
                continue;
            }
            let mut headers = vec![
                ("causeway-event-id".to_string(), item.id.to_string()),
                ("causeway-bridge".to_string(), bridge.key.clone()),
            ];
            if let Some(ct) = &item.content_type {
                headers.push(("content-type".into(), ct.clone()));
            }
            let mut span = shared.traces.child(
                || format!("step {}", step.plugin),
                crate::traces::Kind::Client,
                &run_trace,
            );
            if span.recording() {
                span.set_str("causeway.plugin", &step.plugin);
                span.set_i64("causeway.step", n as i64);
                span.set_str("causeway.event.id", &item.id.to_string());
            }
            crate::traces::inject(&mut headers, &span, trace.state.as_deref());
            let req = OutboundRequest {
                url: step.path.clone(),
                method: detail.record.method.clone(),
                headers,
                body: item.body.clone(),
            };
            let target = PluginRef {
                namespace: bridge.cfg.namespace.clone(),
                name: step.plugin.clone(),
            };
            let timeout = step_timeout(&active.config, &target);
            let res = plugin_call(shared, &target, &step.path, &req, timeout).await;
            if let Some(code) = res.status {
                span.set_i64("http.response.status_code", i64::from(code));
            }
            if let Some(e) = &res.error {
                span.fail(&bridge.redact(e));
            } else if res.status.is_some_and(|c| !(200..300).contains(&c)) {
                span.fail("the plugin answered an error status");
            }
            span.end();
            match res.status {
                Some(204) => {
                    item.filtered = Some(format!("step {} dropped the event", step.plugin));
                    next_items.push(item);
                }
                Some(s) if (200..300).contains(&s) && res.error.is_none() => {
                    let only = res
                        .headers
                        .get("causeway-destinations")
                        .and_then(|v| v.to_str().ok())
                        .map(|list| {
                            list.split(',')
                                .map(|s| s.trim().to_string())
                                .filter(|s| !s.is_empty())
                                .collect::<Vec<_>>()
                        })
                        .or_else(|| item.only.clone());
                    if is_fanout(&res.headers) {
                        let Ok(serde_json::Value::Array(elements)) =
                            serde_json::from_slice::<serde_json::Value>(&res.body)
                        else {
                            failure = Some((
                                res.status,
                                format!(
                                    "step {}: causeway-fanout: true needs a JSON array body",
                                    step.plugin
                                ),
                                bridge.redact_snippet(&res.response),
                            ));
                            break 'steps;
                        };
                        fanned = true;
                        for (i, element) in elements.iter().enumerate() {
                            let path = if item.path.is_empty() {
                                i.to_string()
                            } else {
                                format!("{}.{i}", item.path)
                            };
                            next_items.push(StepItem {
                                id: child_id(job.event, &path),
                                path,
                                body: Bytes::from(serde_json::to_vec(element).unwrap_or_default()),
                                content_type: Some("application/json".into()),
                                only: only.clone(),
                                filtered: None,
                            });
                        }
                    } else {
                        item.body = res.body.clone();
                        if let Some(ct) = res
                            .headers
                            .get(http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                        {
                            item.content_type = Some(ct.to_string());
                        }
                        item.only = only;
                        next_items.push(item);
                    }
                }
                _ => {
                    let err = res
                        .error
                        .clone()
                        .or_else(|| res.status.map(|s| format!("status {s}")))
                        .unwrap_or_default();
                    failure = Some((
                        res.status,
                        format!("step {}: {}", step.plugin, bridge.redact(&err)),
                        bridge.redact_snippet(&res.response),
                    ));
                    break 'steps;
                }
            }
        }
        items = next_items;
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    let jobs_for = |item: &StepItem| -> Vec<NewJob> {
        bridge
            .cfg
            .destinations
            .iter()
            .enumerate()
            .filter(|(_, d)| item.only.as_ref().is_none_or(|o| o.contains(&d.name)))
            .map(|(i, d)| NewJob {
                target: JobTarget::destination(i as u32, &d.name),
                due_at_ms: detail.record.received_at_ms.saturating_add(d.delay_ms),
            })
            // Every subscriber gets what passed the steps (`causeway-destinations` names
            // destinations only).
            .chain(
                shared
                    .websub
                    .jobs_for(bridge, now_ms(), detail.record.received_at_ms),
            )
            .collect()
    };
    let trace_ref = Some(run_span.span_ref());
    let done = |response: String| AttemptRecord {
        at_ms,
        duration_ms,
        status_code: Some(200),
        response,
        error: None,
        trace: trace_ref,
    };
    let filtered_metric = || {
        shared
            .metrics
            .filtered
            .with_label_values(&[bridge.key.as_str()])
            .inc();
    };
    let (attempt, next) = if let Some((status, error, response)) = failure {
        let next = after_failure(job, &bridge.cfg.step_retry, None, &error);
        run_span.fail(&error);
        (
            AttemptRecord {
                at_ms,
                duration_ms,
                status_code: status,
                response,
                error: Some(error),
                trace: trace_ref,
            },
            next,
        )
    } else if fanned {
        let children: Vec<NewEvent> = items
            .iter()
            .map(|item| {
                let jobs = if item.filtered.is_some() {
                    filtered_metric();
                    Vec::new()
                } else {
                    jobs_for(item)
                };
                let status = if item.filtered.is_some() {
                    EventStatus::Filtered
                } else if jobs.is_empty() {
                    EventStatus::Delivered
                } else {
                    EventStatus::Pending
                };
                let mut headers: Vec<(String, String)> = detail
                    .record
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        !n.eq_ignore_ascii_case("content-type")
                            && !n.eq_ignore_ascii_case("content-length")
                    })
                    .cloned()
                    .collect();
                if let Some(ct) = &item.content_type {
                    headers.push(("content-type".into(), ct.clone()));
                }
                NewEvent {
                    record: EventRecord {
                        id: item.id,
                        bridge: detail.record.bridge.clone(),
                        received_at_ms: detail.record.received_at_ms,
                        method: detail.record.method.clone(),
                        query: detail.record.query.clone(),
                        headers,
                        status,
                        reason: item.filtered.clone(),
                        body_bytes: item.body.len() as u64,
                        parent: Some(job.event),
                        children: Vec::new(),
                        // In its parent's trace: its attempts are children of the run
                        // of the steps that made it.
                        trace: Some(run_trace.clone()),
                    },
                    body: item.body.clone(),
                    jobs,
                    idempotency: None,
                }
            })
            .collect();
        (
            done(format!("fanned out into {} events", children.len())),
            Next::FannedOut { children },
        )
    } else {
        let Some(item) = items.pop() else {
            return;
        };
        match item.filtered {
            Some(reason) => {
                filtered_metric();
                (
                    AttemptRecord {
                        at_ms,
                        duration_ms,
                        status_code: Some(204),
                        response: String::new(),
                        error: None,
                        trace: trace_ref,
                    },
                    Next::Filtered { reason },
                )
            }
            None => {
                let jobs = jobs_for(&item);
                (
                    done(String::new()),
                    Next::StepsDone {
                        body: item.body,
                        jobs,
                    },
                )
            }
        }
    };
    run_span.end();
    let now = now_ms();
    // A store whose writes apply in order: the deliveries the steps created start now,
    // with the result on its way to disk (queued before any of their records).
    if let Next::StepsDone { body, jobs } = &next
        && shared.store.writes_in_order()
    {
        let due: Vec<JobRecord> = jobs
            .iter()
            .filter(|j| j.due_at_ms <= now)
            .map(|j| JobRecord::queued(job.event, &job.bridge, job.received_at_ms, j))
            .collect();
        let event = Arc::new(EventDetail {
            record: EventRecord {
                body_bytes: body.len() as u64,
                ..detail.record.clone()
            },
            body: body.clone(),
            jobs: Vec::new(),
        });
        let early = if due.is_empty() {
            None
        } else {
            crate::delivery::scheduler::reserve_early(shared, due)
        };
        let written = shared.store.finish_attempt(JobUpdate {
            job: job.key(),
            attempt: Some(attempt),
            next,
        });
        if let Some(mut early) = early {
            early.start(shared, &event);
            match written.await {
                Ok(_) if early.left => shared.delivery.wake(),
                Ok(_) => {}
                Err(e) => warn!(error = %e, event = %job.event, "cannot record attempt"),
            }
        } else if let Err(e) = written.await {
            warn!(error = %e, event = %job.event, "cannot record attempt");
        } else {
            // Delayed deliveries only: the scheduler takes them when due.
            shared.delivery.wake();
        }
        return;
    }
    // The deliveries the steps created, due now: handed to delivery as soon as the
    // result commits with them, without a scheduler pass.
    let due_now = |id: EventId, jobs: &[NewJob]| -> Vec<JobKey> {
        jobs.iter()
            .filter(|j| j.due_at_ms <= now)
            .map(|j| JobKey {
                event: id,
                index: j.target.slot(),
            })
            .collect()
    };
    let ready: Vec<JobKey> = match &next {
        Next::StepsDone { jobs, .. } => due_now(job.event, jobs),
        Next::FannedOut { children } => children
            .iter()
            .flat_map(|c| due_now(c.record.id, &c.jobs))
            .collect(),
        _ => Vec::new(),
    };
    if finish(shared, job, Some(attempt), next).await {
        crate::delivery::scheduler::hand_off(shared, ready).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// `shop/orders` with one `tagger` step and the given destinations.
    fn orders_bridge_with_a_tagger_step(
        destinations: Vec<serde_json::Value>,
    ) -> causeway_config::BridgeConfig {
        serde_json::from_value(serde_json::json!({
            "namespace": "shop", "name": "orders", "path": "/hooks/shop/orders",
            "methods": ["POST"], "maxBodyBytes": 1024, "idempotencyHeader": "webhook-id",
            "dedupeWindowMs": 60_000, "suspend": false,
            "stepRetry": causeway_config::RetryConfig::default(),
            "steps": [{"plugin": "tagger", "path": "/"}],
            "destinations": destinations, "onMissing": "empty"
        }))
        .unwrap()
    }

    /// Issue 15: a step runs right after the ingest commit and its delivery starts as soon
    /// as the step's result commits, both handed over in memory. No scheduler runs here
    /// (only its dispatch state is installed), so nothing could reach delivery by a pass:
    /// the event is delivered through the hand-off alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_and_its_delivery_are_handed_over_without_a_scheduler_pass() {
        let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/plugins/dist/tagger.wasm");
        assert!(
            wasm.exists(),
            "{} is missing: run `make plugins` first",
            wasm.display()
        );
        let plugin: causeway_config::PluginConfig = serde_json::from_value(serde_json::json!({
            "namespace": "shop", "name": "tagger",
            "source": {"type": "file", "path": wasm.display().to_string()},
            "memoryBytes": 67108864, "timeoutMs": 30000, "maxConcurrency": 8, "whenBusy": "queue"
        }))
        .unwrap();
        // The delivery goes to the same plugin in-process (`http://tagger.internal`): no
        // socket, and a 200 only for a JSON object.
        let destination = serde_json::json!({
            "name": "tagged", "url": "http://tagger.internal/", "method": "POST",
            "delayMs": 0, "timeoutMs": 30000, "retry": causeway_config::RetryConfig::default(),
            "maxRetryAfterMs": 60000, "maxConcurrency": 4
        });
        let bridge = orders_bridge_with_a_tagger_step(vec![destination]);
        let cfg = causeway_config::WorkerConfig {
            version: "v1".into(),
            bridges: vec![bridge],
            plugins: vec![plugin],
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let shared =
            crate::testkit::shared(dir.path(), cfg.clone(), crate::limits::Limits::default());
        let errors = shared.plugins.apply(&cfg).await;
        assert!(errors.is_empty(), "{errors:?}");
        shared
            .delivery
            .set_dispatch(Some(Arc::new(crate::delivery::scheduler::Dispatch::new(8))));

        let req = http::Request::post("/hooks/shop/orders")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from_static(
                br#"{"order":1}"#,
            )))
            .unwrap();
        let resp = crate::ingress::handle(&shared, req).await;
        assert_eq!(resp.status(), http::StatusCode::ACCEPTED);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let id: EventId = v["id"].as_str().unwrap().parse().unwrap();

        let mut detail = None;
        for _ in 0..600 {
            let d = shared.store.event(id).await.unwrap().expect("stored");
            if d.record.status == EventStatus::Delivered {
                detail = Some(d);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let detail = detail.expect("delivered through the hand-off");
        // The step's body, committed with the delivery job it created.
        let stored: serde_json::Value = serde_json::from_slice(&detail.body).unwrap();
        assert_eq!(stored, serde_json::json!({"order": 1, "tagged": true}));
        let metric = |via: &str| shared.metrics.jobs_started.with_label_values(&[via]).get();
        assert_eq!(metric("hand_off"), 2, "the steps job and its delivery");
        assert_eq!(metric("scheduler"), 0);
        assert_eq!(shared.metrics.scheduler_passes.get(), 0);
    }

    /// A job the hand-off cannot start (no global slot free) is not lost: it stays queued
    /// for the scheduler's next pass, unclaimed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_free_slot_a_job_stays_queued_for_the_scheduler() {
        let bridge = orders_bridge_with_a_tagger_step(vec![]);
        let cfg = causeway_config::WorkerConfig {
            version: "v1".into(),
            bridges: vec![bridge],
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let shared = crate::testkit::shared(dir.path(), cfg, crate::limits::Limits::default());
        shared
            .delivery
            .set_dispatch(Some(Arc::new(crate::delivery::scheduler::Dispatch::new(0))));
        let req = http::Request::post("/hooks/shop/orders")
            .body(http_body_util::Full::new(Bytes::from_static(
                br#"{"order":1}"#,
            )))
            .unwrap();
        let resp = crate::ingress::handle(&shared, req).await;
        assert_eq!(resp.status(), http::StatusCode::ACCEPTED);
        let started = |via: &str| shared.metrics.jobs_started.with_label_values(&[via]).get();
        assert_eq!(started("hand_off"), 0);
        let none: crate::store::JobFilter<JobKey> = Arc::new(|_: &JobKey| false);
        let free: crate::store::JobFilter<JobRecord> = Arc::new(|_: &JobRecord| false);
        let due = shared
            .store
            .claim_due(now_ms() + 1, 10, none, free)
            .await
            .unwrap();
        assert_eq!(due.jobs.len(), 1, "the steps job waits for a pass");
        assert_eq!(due.jobs[0].target, JobTarget::Steps);
    }

    /// Issue 13 item 2: a step waits as long as its plugin's own timeout allows (it used to
    /// be cut at a hard-coded 30 s whatever the plugin's `timeout`).
    #[test]
    fn a_step_waits_for_its_plugins_own_timeout() {
        let plugin: causeway_config::PluginConfig = serde_json::from_value(serde_json::json!({
            "namespace": "shop", "name": "slow", "source": {"type": "file", "path": "/x.wasm"},
            "memoryBytes": 1048576, "timeoutMs": 120000, "maxConcurrency": 1, "whenBusy": "queue"
        }))
        .unwrap();
        let cfg = causeway_config::WorkerConfig {
            plugins: vec![plugin],
            ..Default::default()
        };
        let slow = PluginRef {
            namespace: "shop".into(),
            name: "slow".into(),
        };
        assert!(step_timeout(&cfg, &slow) >= Duration::from_secs(120));
        let remote = PluginRef {
            namespace: "shop".into(),
            name: "elsewhere".into(),
        };
        assert_eq!(
            step_timeout(&cfg, &remote),
            causeway_plugins::DEFAULT_REMOTE_TIMEOUT + STEP_GRACE
        );
    }
}
