//! Delivery: a scheduler that sleeps until the next due job (or until woken), and one task
//! per attempt.
//!
//! A job is claimed in memory (the in-flight set): with one embedded store per worker
//! nothing else can take it, and a crash forgets the claim, so the job, still queued on
//! disk, is attempted again after a restart (at-least-once). After the call, the attempt,
//! the job's new state and the event's status are written in one transaction.

pub mod handle;
pub mod limits;
pub mod retry;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use causeway_crds::config::{DestinationConfig, RetryConfig};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, instrument, warn};

use crate::bridge::{ActiveBridge, EventView, OutboundRequest};
use crate::plugins::PluginTarget;
use crate::store::{
    AttemptRecord, EventDetail, EventId, EventRecord, EventStatus, JobKey, JobRecord, JobUpdate,
    NewEvent, NewJob, Next, RESPONSE_SNIPPET_BYTES, STEPS_JOB, child_id, now_ms,
};
use crate::shared::Shared;

/// Jobs claimed per scheduler pass.
const CLAIM_BATCH: usize = 256;
/// Longest the scheduler sleeps without being woken.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Run the scheduler until `stop`, then wait (bounded) for attempts in flight.
#[instrument(skip_all)]
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let max = shared.limits.max_inflight.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let inflight: Arc<Mutex<HashSet<JobKey>>> = Arc::new(Mutex::new(HashSet::new()));
    // Finished attempts, released from `inflight` only by the scheduler before it reads:
    // a read that started before an attempt's commit must still see the job as claimed.
    let done: Arc<Mutex<Vec<JobKey>>> = Arc::new(Mutex::new(Vec::new()));
    loop {
        if stop.is_cancelled() {
            break;
        }
        if let (Ok(mut d), Ok(mut s)) = (done.lock(), inflight.lock()) {
            for k in d.drain(..) {
                s.remove(&k);
            }
        }
        let now = now_ms();
        let claimed = |k: &JobKey| inflight.lock().is_ok_and(|s| s.contains(k));
        let hold = |j: &JobRecord| {
            shared.is_suspended(&j.bridge)
                || (j.index != STEPS_JOB && shared.delivery.is_paused(&j.bridge, &j.destination))
        };
        let due = match shared.store.due_jobs(now, CLAIM_BATCH, &claimed, &hold).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot read due jobs");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if !due.undecodable.is_empty() {
            let keys: Vec<String> = due.undecodable.iter().map(|(_, k)| format!("{}/{}", k.event, k.index)).collect();
            warn!(jobs = ?keys, "job records that cannot be decoded: quarantined, the rest goes on");
            match shared.store.quarantine(due.undecodable.clone()).await {
                Ok(n) => shared.metrics.jobs_quarantined.inc_by(n as u64),
                Err(e) => warn!(error = %e, "cannot quarantine job records"),
            }
        }
        let mut next_due = due.next_due_ms;
        for job in due.jobs {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Every slot is busy: a finishing attempt wakes us.
                next_due = None;
                break;
            };
            if let Ok(mut s) = inflight.lock() {
                s.insert(job.key());
            }
            let shared = shared.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let key = job.key();
                attempt(&shared, job).await;
                if let Ok(mut d) = done.lock() {
                    d.push(key);
                }
                drop(slot);
                shared.delivery.wake();
            });
        }
        let sleep = next_due
            .map(|t| Duration::from_millis(t.saturating_sub(now_ms())))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = shared.delivery.woken() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
    if tokio::time::timeout(shared.limits.shutdown_grace, slots.acquire_many(max as u32))
        .await
        .is_err()
    {
        warn!(
            "delivery: attempts still in flight after the shutdown grace period; they will be retried after restart"
        );
    }
}

/// How one call ended.
struct CallResult {
    status: Option<u16>,
    response: String,
    error: Option<String>,
    retry_after: Option<String>,
    /// Response headers and body, for steps.
    headers: http::HeaderMap,
    body: Bytes,
}

fn failed(error: String) -> CallResult {
    CallResult {
        status: None,
        response: String::new(),
        error: Some(error),
        retry_after: None,
        headers: Default::default(),
        body: Bytes::new(),
    }
}

/// The raw text of a response for the attempt log: twice the snippet, so that it can be
/// redacted before it is cut ([`ActiveBridge::redact_snippet`]).
fn snippet(body: &[u8]) -> String {
    let cut = &body[..body.len().min(2 * RESPONSE_SNIPPET_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}

/// Send over HTTP; keep at most 4 KiB of the response (or all of it when `keep_body`).
async fn http_call(
    shared: &Shared,
    req: &OutboundRequest,
    timeout: Duration,
    keep_body: bool,
) -> CallResult {
    let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
        return failed(format!("invalid method {:?}", req.method));
    };
    // Names are checked by the client's resolver after resolution; IP literals here.
    if let Err(reason) = shared.netguard.check_url(&req.url) {
        shared.metrics.destination_refused.inc();
        return failed(format!("destination refused: {reason}"));
    }
    let mut rb = shared
        .http
        .request(method, &req.url)
        .timeout(timeout)
        .body(req.body.clone());
    for (n, v) in &req.headers {
        rb = rb.header(n, v);
    }
    let mut resp = match rb.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return failed(format!("timeout after {} ms", timeout.as_millis()));
        }
        Err(e) if is_refused(&e) => {
            shared.metrics.destination_refused.inc();
            return failed(error_chain(&e));
        }
        Err(e) if e.is_connect() => return failed(format!("connect: {}", error_chain(&e))),
        Err(e) => return failed(error_chain(&e)),
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let mut error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                body.extend_from_slice(&c);
                if !keep_body && body.len() >= 2 * RESPONSE_SNIPPET_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("reading response: {}", error_chain(&e)));
                break;
            }
        }
    }
    CallResult {
        status: Some(status),
        response: snippet(&body),
        error,
        retry_after,
        headers,
        body: Bytes::from(body),
    }
}

/// Whether the network guard refused the connection (somewhere in the error's sources).
fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<crate::netguard::Refused>().is_some() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `<plugin>.internal` → the plugin, when `url` names one (the plugin host's rule: one
/// label before `.internal`; `api.corp.internal` goes to the network).
fn internal_target(url: &str, namespace: &str) -> Option<(PluginTarget, String)> {
    let (name, path) = causeway_plugins::chain_url(url)?;
    Some((
        PluginTarget {
            namespace: namespace.to_string(),
            name,
        },
        path,
    ))
}

async fn plugin_call(
    shared: &Shared,
    target: &PluginTarget,
    path: &str,
    req: &OutboundRequest,
    timeout: Duration,
) -> CallResult {
    let mut b = http::Request::builder()
        .method(req.method.as_str())
        .uri(path);
    for (n, v) in &req.headers {
        b = b.header(n, v);
    }
    let Ok(hreq) = b.body(req.body.clone()) else {
        return failed("invalid request for plugin".into());
    };
    match tokio::time::timeout(timeout, shared.plugins.call(target, hreq)).await {
        Err(_) => failed(format!("timeout after {} ms", timeout.as_millis())),
        Ok(Err(e)) => failed(e.to_string()),
        Ok(Ok(resp)) => {
            let (parts, body) = resp.into_parts();
            let retry_after = parts
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            CallResult {
                status: Some(parts.status.as_u16()),
                response: snippet(&body),
                error: None,
                retry_after,
                headers: parts.headers,
                body,
            }
        }
    }
}

/// What follows a failed attempt under `policy`.
fn after_failure(
    job: &JobRecord,
    policy: &RetryConfig,
    retry_after: Option<Duration>,
    error: &str,
) -> Next {
    // Retries made before this attempt: attempts since queued, minus the first.
    let n = job.attempts.saturating_sub(job.attempts_at_queue);
    match retry::delay_before_retry(policy, n, &mut rand::rng()) {
        None => Next::Dead {
            reason: format!("retries exhausted: {error}"),
        },
        Some(d) => {
            let d = retry_after.unwrap_or(d);
            Next::Retry {
                due_at_ms: now_ms().saturating_add(d.as_millis() as u64),
            }
        }
    }
}

fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Headers of a stored event, as a map.
fn header_map(pairs: &[(String, String)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (n, v) in pairs {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            h.append(n, v);
        }
    }
    h
}

async fn finish(
    shared: &Shared,
    job: &JobRecord,
    attempt: Option<AttemptRecord>,
    next: Next,
) -> bool {
    let update = JobUpdate {
        job: job.key(),
        attempt,
        next,
    };
    match shared.store.finish_attempt(update).await {
        Ok(_) => true,
        Err(e) => {
            // The job stays queued on disk and is attempted again.
            warn!(error = %e, event = %job.event, "cannot record attempt");
            false
        }
    }
}

/// One attempt of one job.
#[instrument(skip_all, fields(event = %job.event, bridge = %job.bridge, destination = %job.destination))]
async fn attempt(shared: &Shared, job: JobRecord) {
    let active = shared.active();
    let Some(bridge) = active.bridges.get(&job.bridge).cloned() else {
        finish(
            shared,
            &job,
            None,
            Next::Dead {
                reason: format!("bridge {} is no longer configured", job.bridge),
            },
        )
        .await;
        return;
    };
    drop(active);
    let detail = match shared.store.event(job.event).await {
        Ok(Some(d)) => d,
        Ok(None) => return,
        Err(e) => {
            warn!(error = %e, "cannot load event");
            return;
        }
    };
    if job.index == STEPS_JOB {
        run_steps(shared, &bridge, &job, &detail).await;
        return;
    }
    let Some((index, dest)) = bridge.destination(&job.destination) else {
        finish(
            shared,
            &job,
            None,
            Next::Dead {
                reason: format!("destination {} is no longer configured", job.destination),
            },
        )
        .await;
        return;
    };
    let dest = dest.clone();
    let labels = [bridge.key.as_str(), dest.name.as_str()];
    let m = &shared.metrics;
    let headers = header_map(&detail.record.headers);
    let id = job.event.to_string();
    let received_at = rfc3339(detail.record.received_at_ms);
    let view = EventView {
        id: &id,
        received_at: &received_at,
        headers: &headers,
        query: &detail.record.query,
        body: &detail.body,
    };
    let req = match bridge.render(index, &view) {
        Ok(r) => r,
        Err(e) => {
            let reason = bridge.redact(&e.to_string());
            let at = AttemptRecord {
                at_ms: now_ms(),
                duration_ms: 0,
                status_code: None,
                response: String::new(),
                error: Some(reason.clone()),
            };
            if finish(
                shared,
                &job,
                Some(at),
                Next::Dead {
                    reason: reason.clone(),
                },
            )
            .await
            {
                m.dead.with_label_values(&labels).inc();
                dead_letter(shared, &bridge, &dest, &job, &detail, &reason);
            }
            return;
        }
    };
    let mut req = req;
    // Receivers deduplicate our retries on the event id (signed deliveries also carry it
    // as `webhook-id`).
    if !req
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("causeway-event-id"))
    {
        req.headers.push(("causeway-event-id".into(), id.clone()));
    }
    let limits = shared.delivery.limits(&bridge.key, &dest);
    let Ok(_permit) = limits.concurrency.clone().acquire_owned().await else {
        return;
    };
    if let Some(bucket) = &limits.bucket {
        loop {
            let wait = match bucket.lock() {
                Ok(mut b) => b.try_take(),
                Err(_) => Ok(()),
            };
            match wait {
                Ok(()) => break,
                Err(d) => tokio::time::sleep(d).await,
            }
        }
    }
    let timeout = Duration::from_millis(dest.timeout_ms.max(1));
    let at_ms = now_ms();
    let started = Instant::now();
    let res = match internal_target(&req.url, &bridge.cfg.namespace) {
        Some((target, path)) => plugin_call(shared, &target, &path, &req, timeout).await,
        None => http_call(shared, &req, timeout, false).await,
    };
    let elapsed = started.elapsed();
    m.attempt_seconds
        .with_label_values(&labels)
        .observe(elapsed.as_secs_f64());
    let ok = res.status.is_some_and(|s| (200..300).contains(&s)) && res.error.is_none();
    let error = if ok {
        None
    } else {
        res.error
            .clone()
            .map(|e| bridge.redact(&e))
            .or_else(|| res.status.map(|s| format!("status {s}")))
    };
    let record = AttemptRecord {
        at_ms,
        duration_ms: elapsed.as_millis() as u64,
        status_code: res.status,
        response: bridge.redact_snippet(&res.response),
        error: error.clone(),
    };
    let outcome = if ok {
        "success"
    } else if res.status.is_some() {
        "status"
    } else {
        "error"
    };
    m.attempts
        .with_label_values(&[labels[0], labels[1], outcome])
        .inc();
    let next = if ok {
        Next::Delivered
    } else if res.status == Some(410) {
        Next::Paused
    } else {
        let ra = res.retry_after.as_deref().and_then(|v| {
            retry::retry_after(
                v,
                SystemTime::now(),
                Duration::from_millis(dest.max_retry_after_ms),
            )
        });
        after_failure(&job, &dest.retry, ra, error.as_deref().unwrap_or("failed"))
    };
    let dead_reason = if let Next::Dead { reason } = &next {
        Some(reason.clone())
    } else {
        None
    };
    let paused = matches!(next, Next::Paused);
    let retrying = matches!(next, Next::Retry { .. });
    if !finish(shared, &job, Some(record), next).await {
        return;
    }
    if ok {
        m.delivered.with_label_values(&labels).inc();
        let age = now_ms().saturating_sub(job.received_at_ms);
        m.ingest_to_delivery
            .with_label_values(&labels)
            .observe(age as f64 / 1000.0);
    } else if retrying {
        m.retried.with_label_values(&labels).inc();
    } else if paused {
        warn!("destination answered 410 Gone: paused until resumed");
        shared.delivery.paused_by_store(&bridge.key, &dest.name);
    } else if let Some(reason) = dead_reason {
        m.dead.with_label_values(&labels).inc();
        dead_letter(shared, &bridge, &dest, &job, &detail, &reason);
    }
    debug!(status = ?res.status, ok, "attempt recorded");
}

/// Tell the destination's dead-letter URL, once, best effort (the dead letter is kept either way).
fn dead_letter(
    shared: &Shared,
    bridge: &ActiveBridge,
    dest: &DestinationConfig,
    job: &JobRecord,
    detail: &EventDetail,
    reason: &str,
) {
    let Some(url) = dest.dead_letter_url.clone() else {
        return;
    };
    if let Err(reason) = shared.netguard.check_url(&url) {
        warn!(bridge = %bridge.key, %reason, "dead-letter notification refused");
        return;
    }
    let body = serde_json::json!({
        "eventId": job.event.to_string(),
        "bridge": job.bridge,
        "destination": job.destination,
        "receivedAt": rfc3339(detail.record.received_at_ms),
        "attempts": job.attempts + 1,
        "reason": reason,
        "body": String::from_utf8_lossy(&detail.body),
    });
    let client = shared.http.clone();
    let timeout = Duration::from_millis(dest.timeout_ms.max(1));
    let key = bridge.key.clone();
    tokio::spawn(async move {
        if let Err(e) = client
            .post(&url)
            .timeout(timeout)
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
        {
            warn!(bridge = %key, error = %error_chain(&e), "dead-letter notification failed");
        }
    });
}

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
async fn run_steps(shared: &Shared, bridge: &ActiveBridge, job: &JobRecord, detail: &EventDetail) {
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
    let mut fanned = false;
    let at_ms = now_ms();
    let started = Instant::now();
    let timeout = Duration::from_secs(30);
    let mut failure: Option<(Option<u16>, String, String)> = None;
    'steps: for step in &bridge.cfg.steps {
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
            let req = OutboundRequest {
                url: step.path.clone(),
                method: detail.record.method.clone(),
                headers,
                body: item.body.clone(),
            };
            let target = PluginTarget {
                namespace: bridge.cfg.namespace.clone(),
                name: step.plugin.clone(),
            };
            let res = plugin_call(shared, &target, &step.path, &req, timeout).await;
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
                index: i as u32,
                destination: d.name.clone(),
                due_at_ms: detail.record.received_at_ms.saturating_add(d.delay_ms),
            })
            .collect()
    };
    let done = |response: String| AttemptRecord {
        at_ms,
        duration_ms,
        status_code: Some(200),
        response,
        error: None,
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
        (
            AttemptRecord {
                at_ms,
                duration_ms,
                status_code: status,
                response,
                error: Some(error),
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
    finish(shared, job, Some(attempt), next).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_hosts_are_plugins() {
        let (t, p) = internal_target("http://inbox.internal/orders?x=1", "default").unwrap();
        assert_eq!((t.name.as_str(), p.as_str()), ("inbox", "/orders?x=1"));
        assert!(internal_target("http://127.0.0.1:9/x", "default").is_none());
        assert!(internal_target("https://api.example.com/internal", "default").is_none());
        // Issue 13 item 5: a real host whose name ends in .internal is not a plugin.
        assert!(internal_target("https://api.corp.internal/orders", "default").is_none());
    }

    #[test]
    fn token_bucket_refuses_past_the_burst() {
        let mut b = limits::TokenBucket::new(1, 2);
        assert!(b.try_take().is_ok());
        assert!(b.try_take().is_ok());
        assert!(b.try_take().is_err());
    }
}
