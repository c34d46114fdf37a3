//! One attempt of one destination job: render, call, record the attempt and what
//! follows it (delivered, retry, dead, paused) in one transaction.

use std::time::{Duration, Instant, SystemTime};

use causeway_config::{CircuitBreakerConfig, NotificationEvent, RetryConfig};
use tracing::{debug, info, instrument, warn};

use crate::bridge::ActiveBridge;
use crate::bridge::EventView;
use crate::delivery::breaker::{Breakers, after_attempt, transition};
use crate::delivery::client::{failed, http_call, internal_target, plugin_call};
use crate::delivery::dead_letter::dead_letter;
use crate::delivery::notify::notify;
use crate::delivery::retry;
use crate::delivery::window::Outcome;
use crate::shared::Shared;
use crate::store::{
    AttemptRecord, BreakerPhase, BreakerUpdate, JobRecord, JobTarget, JobUpdate, Next, now_ms,
};

/// Test hook: with `CAUSEWAY_TEST_STALL_BEFORE_RECORD=1` in its environment, a worker's
/// attempts stall for good after the call, before their record is written, so that a test
/// can kill the worker between the hand-off and the record (`cli/tests/durability.rs`).
fn stall_before_record() -> bool {
    static STALL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STALL
        .get_or_init(|| std::env::var("CAUSEWAY_TEST_STALL_BEFORE_RECORD").is_ok_and(|v| v == "1"))
}

/// What follows a failed attempt under `policy`.
pub(crate) fn after_failure(
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

pub(crate) fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Headers of a stored event, as a map.
pub(crate) fn header_map(pairs: &[(String, String)]) -> http::HeaderMap {
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

pub(crate) async fn finish(
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

/// The span of one delivery attempt of `job` to `destination`.
fn attempt_span(
    shared: &Shared,
    job: &JobRecord,
    destination: &str,
    event: &crate::store::EventRecord,
) -> crate::traces::Span {
    let mut span = shared.traces.child(
        || format!("deliver {destination}"),
        crate::traces::Kind::Client,
        &event.trace_context(),
    );
    if span.recording() {
        span.set_str("causeway.bridge", &job.bridge);
        span.set_str("causeway.destination", destination);
        span.set_str("causeway.event.id", &job.event.to_string());
        span.set_i64("causeway.attempt", i64::from(job.attempts) + 1);
    }
    span
}

/// One attempt of one job.
#[instrument(skip_all, fields(event = %job.event, bridge = %job.bridge, destination = %job.target.label()))]
/// `permit`: the destination's concurrency permit, reserved by the scheduler with a rate
/// token (None: take both here). `event`: the event as its steps left it, when the
/// steps' result may not have committed yet (None: read it from the store).
pub(crate) async fn attempt(
    shared: &std::sync::Arc<Shared>,
    job: JobRecord,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    event: Option<std::sync::Arc<crate::store::EventDetail>>,
) {
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
    let loaded = match event {
        Some(d) => Ok(Some(d)),
        None => shared.store.event_for_delivery(job.event).await,
    };
    let detail = match loaded {
        Ok(Some(d)) => d,
        Ok(None) => return,
        Err(e) => {
            warn!(error = %e, "cannot load event");
            return;
        }
    };
    let name = match &job.target {
        JobTarget::Steps => {
            crate::steps::run_steps(shared, &bridge, &job, &detail).await;
            return;
        }
        JobTarget::Destination { name, .. } => name.clone(),
    };
    // A WebSub subscription's job (`websub:<id>`) is delivered as a destination the hub
    // makes from the subscription; any other names a destination of the bridge.
    let subscription = crate::websub::subscription_id(&name).map(str::to_string);
    let (dest, req, sub_secret) = if let Some(id) = &subscription {
        match shared.websub.prepare(&bridge, id, &detail, now_ms()) {
            Ok(p) => (p.dest, p.req, p.secret),
            Err(reason) => {
                // Unsubscribed, expired or the hub disabled: no attempt, the job ends.
                debug!(%reason, "subscription job not delivered");
                if finish(shared, &job, None, Next::Dead { reason }).await {
                    shared
                        .delivery
                        .window
                        .record(&bridge.key, &name, Outcome::Dead, now_ms());
                }
                return;
            }
        }
    } else {
        let Some((index, dest)) = bridge.destination(&name) else {
            finish(
                shared,
                &job,
                None,
                Next::Dead {
                    reason: format!("destination {name} is no longer configured"),
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
                let mut span = attempt_span(shared, &job, &dest.name, &detail.record);
                span.fail(&reason);
                let at = AttemptRecord {
                    at_ms: now_ms(),
                    duration_ms: 0,
                    status_code: None,
                    response: String::new(),
                    error: Some(reason.clone()),
                    trace: Some(span.span_ref()),
                };
                span.end();
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
                    let window = &shared.delivery.window;
                    window.record(&bridge.key, &dest.name, Outcome::Failed, now_ms());
                    window.record(&bridge.key, &dest.name, Outcome::Dead, now_ms());
                    dead_letter(shared, &bridge, &dest, &job, &detail, &reason);
                }
                return;
            }
        };
        (dest, req, None)
    };
    let mut req = req;
    let metric_name = if subscription.is_some() {
        crate::websub::METRIC_LABEL
    } else {
        dest.name.as_str()
    };
    let labels = [bridge.key.as_str(), metric_name];
    let m = &shared.metrics;
    let id = job.event.to_string();
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
    let reserved = permit.is_some();
    let permit = match permit {
        Some(p) => p,
        None => match limits.concurrency.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        },
    };
    if let Some(bucket) = limits.bucket.as_ref().filter(|_| !reserved) {
        loop {
            // A poisoned bucket still limits (crate::sync): skipping it would drop rateLimit.
            let wait = crate::sync::lock(bucket).try_take();
            match wait {
                Ok(()) => break,
                Err(d) => tokio::time::sleep(d).await,
            }
        }
    }
    if let Some((target, _)) = internal_target(&req.url, &bridge.cfg.namespace)
        && let Some(why) = shared.plugins.not_ready(&shared.active().config, &target)
    {
        // The plugin is loading (or failed to): hold the job, its retries untouched.
        debug!(plugin = %target.name, %why, "delivery held until the plugin loads");
        finish(
            shared,
            &job,
            None,
            Next::Retry {
                due_at_ms: now_ms() + crate::steps::PLUGIN_HOLD_MS,
            },
        )
        .await;
        return;
    }
    // An open circuit breaker: this job was claimed before it opened, or it is the probe.
    let probe = match &dest.circuit_breaker {
        None => None,
        Some(_) => match breaker_gate(shared, &bridge.key, &dest).await {
            BreakerGate::Go(p) => p,
            BreakerGate::Hold => return,
        },
    };
    // The attempt's span, a child of the span that accepted the event; the request
    // carries it as `traceparent` (replacing any a template set).
    let mut span = attempt_span(shared, &job, &dest.name, &detail.record);
    if span.recording() {
        span.set_str("http.request.method", &req.method);
        // Host and port only: a URL's path or query may hold a credential.
        if let Ok(uri) = req.url.parse::<http::Uri>() {
            if let Some(host) = uri.host() {
                span.set_str("server.address", host);
            }
            if let Some(port) = uri.port_u16() {
                span.set_i64("server.port", i64::from(port));
            }
        }
    }
    let trace_state = detail
        .record
        .trace
        .as_ref()
        .and_then(|t| t.state.as_deref());
    crate::traces::inject(&mut req.headers, &span, trace_state);
    let timeout = Duration::from_millis(dest.timeout_ms.max(1));
    let at_ms = now_ms();
    let started = Instant::now();
    let mut token = None;
    let client = match &dest.tls {
        None => Ok(shared.http.clone()),
        Some(tls) => shared.delivery.tls_clients.get(
            &shared.netguard,
            &shared.limits.resolve,
            &bridge.key,
            &dest.name,
            tls,
        ),
    };
    let is_nats = causeway_config::nats::is_nats_url(&req.url);
    // A callback is policed again before each delivery: the hub's allow-list and the
    // network guard on every address its host resolves to now.
    let refused = match (&subscription, &bridge.cfg.subscriptions) {
        (Some(_), Some(cfg)) => crate::websub::check_callback(&shared.netguard, cfg, &req.url)
            .await
            .err()
            .map(|why| format!("callback refused: {why}")),
        _ => None,
    };
    let mut res = match (internal_target(&req.url, &bridge.cfg.namespace), client) {
        _ if refused.is_some() => failed(refused.clone().unwrap_or_default()),
        (Some((target, path)), _) => plugin_call(shared, &target, &path, &req, timeout).await,
        (None, _) if is_nats => {
            crate::delivery::nats::publish(shared, &bridge.key, &dest, &job, &req, timeout).await
        }
        (None, Err(e)) => failed(e),
        (None, Ok(client)) => match &dest.oauth2 {
            None => http_call(shared, &client, &req, timeout, false).await,
            Some(cfg) => match shared
                .delivery
                .tokens
                .token(shared, &bridge.key, &dest.name, cfg, timeout)
                .await
            {
                Err(e) => failed(e),
                Ok(t) => {
                    req.headers
                        .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
                    req.headers.push(("authorization".into(), t.header()));
                    let res = http_call(shared, &client, &req, timeout, false).await;
                    token = Some(t);
                    res
                }
            },
        },
    };
    if let (Some(t), Some(cfg)) = (&token, &dest.oauth2) {
        // A destination may echo the request's headers: the token stays out of the log.
        res.response = t.redact(&res.response);
        res.error = res.error.as_deref().map(|e| t.redact(e));
        if res.status == Some(401) {
            shared
                .delivery
                .tokens
                .refused(&bridge.key, &dest.name, cfg, t)
                .await;
        }
    }
    if let Some(secret) = &sub_secret {
        // A subscriber's answer may echo its own secret: the log keeps it out.
        res.response = res.response.replace(secret.as_str(), "[redacted]");
        res.error = res
            .error
            .as_deref()
            .map(|e| e.replace(secret.as_str(), "[redacted]"));
    }
    let elapsed = started.elapsed();
    m.observe_attempt(&labels, elapsed.as_secs_f64());
    let ok = res.ok();
    let error = if ok {
        None
    } else {
        res.error
            .clone()
            .map(|e| bridge.redact(&e))
            .or_else(|| res.status.map(|s| format!("status {s}")))
    };
    if let Some(code) = res.status {
        span.set_i64("http.response.status_code", i64::from(code));
    }
    if let Some(e) = &error {
        span.fail(e);
    }
    let record = AttemptRecord {
        at_ms,
        duration_ms: elapsed.as_millis() as u64,
        status_code: res.status,
        response: bridge.redact_snippet(&res.response),
        error: error.clone(),
        trace: Some(span.span_ref()),
    };
    span.end();
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
    // The breaker counts what the retries count as failed; a 410 pauses instead.
    let disabled = match &dest.circuit_breaker {
        Some(cb) if res.status != Some(410) => {
            record_breaker(shared, &bridge, &dest.name, cb, ok, probe.is_some()).await
        }
        _ => false,
    };
    let next = if ok {
        Next::Delivered
    } else if (res.status == Some(410) && subscription.is_none()) || disabled {
        // (A subscriber's 410 is a failure like any other: no one could resume it; it
        // unsubscribes, or its lease ends.)
        // Disabled by its breaker: paused like a 410, this job with it.
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
    if stall_before_record() {
        warn!("test hook: the call is made, its record is held back for good");
        std::future::pending::<()>().await;
    }
    // A delivered job frees its destination's permit before its record commits (which may
    // wait for the next ingest's commit, at a low rate): nothing the next attempt decides
    // on follows from a success. A failure keeps it until its record, so that a 410's
    // pause or a retry is in place before the destination's next attempt.
    if ok {
        drop(permit);
    }
    if !finish(shared, &job, Some(record), next).await {
        return;
    }
    let window = &shared.delivery.window;
    let t = now_ms();
    window.record(
        &bridge.key,
        &dest.name,
        if ok {
            Outcome::Delivered
        } else {
            Outcome::Failed
        },
        t,
    );
    if dead_reason.is_some() {
        window.record(&bridge.key, &dest.name, Outcome::Dead, t);
    }
    if ok {
        m.delivered.with_label_values(&labels).inc();
        let age = now_ms().saturating_sub(job.received_at_ms);
        m.observe_delivered(&labels, age as f64 / 1000.0);
    } else if retrying {
        m.retried.with_label_values(&labels).inc();
    } else if paused && disabled {
        shared.delivery.paused_by_store(&bridge.key, &dest.name);
    } else if paused {
        warn!("destination answered 410 Gone: paused until resumed");
        shared.delivery.paused_by_store(&bridge.key, &dest.name);
        notify(
            shared,
            &bridge,
            &dest.name,
            NotificationEvent::DestinationPaused,
            None,
        );
    } else if let Some(reason) = dead_reason {
        m.dead.with_label_values(&labels).inc();
        dead_letter(shared, &bridge, &dest, &job, &detail, &reason);
    }
    debug!(status = ?res.status, ok, "attempt recorded");
}

/// Whether a job of a destination with a circuit breaker is attempted now.
enum BreakerGate {
    /// Attempt it; `Some(token)` when it is the half-open probe.
    Go(Option<u64>),
    /// Do not: its breaker is open (the job was claimed before it opened) or another
    /// attempt holds the probe. The job stays queued, no attempt recorded.
    Hold,
}

async fn breaker_gate(
    shared: &Shared,
    bridge: &str,
    dest: &causeway_config::DestinationConfig,
) -> BreakerGate {
    let breakers = &shared.delivery.breakers;
    let now = now_ms();
    let Some(state) = breakers.state(bridge, &dest.name) else {
        return BreakerGate::Go(None);
    };
    match state.phase {
        BreakerPhase::Closed => return BreakerGate::Go(None),
        BreakerPhase::Disabled => return BreakerGate::Hold,
        _ if now < state.until_ms => return BreakerGate::Hold,
        _ => {}
    }
    // Open past its time: take the probe in the store, so that one attempt of the whole
    // pool probes.
    let token = breakers.token();
    let update = Breakers::take_probe_update(now, token, dest.timeout_ms);
    match shared
        .store
        .update_breaker(bridge.to_string(), dest.name.clone(), update)
        .await
    {
        Ok((_, after)) => {
            let mine = after
                .as_ref()
                .is_some_and(|a| a.phase == BreakerPhase::HalfOpen && a.probe == token);
            breakers.set(bridge, &dest.name, after);
            if mine {
                info!("circuit breaker half-open: one probe attempt");
                BreakerGate::Go(Some(token))
            } else {
                breakers.probe_done(bridge, &dest.name);
                BreakerGate::Hold
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot take the circuit breaker's probe; the job waits");
            breakers.probe_done(bridge, &dest.name);
            BreakerGate::Hold
        }
    }
}

/// Record one attempt in the destination's breaker; true when the destination is now
/// disabled (its jobs are paused with this one).
async fn record_breaker(
    shared: &Shared,
    bridge: &ActiveBridge,
    destination: &str,
    cfg: &CircuitBreakerConfig,
    ok: bool,
    probe: bool,
) -> bool {
    let breakers = &shared.delivery.breakers;
    let now = now_ms();
    let tripped = breakers.rate(&bridge.key, destination, cfg, ok, now);
    if ok && !probe && breakers.state(&bridge.key, destination).is_none() {
        // Closed without failures: nothing to write (every delivery passes here).
        return false;
    }
    let update: BreakerUpdate = {
        let cfg = cfg.clone();
        std::sync::Arc::new(move |old| after_attempt(&cfg, old, ok, tripped, now))
    };
    let changed = shared
        .store
        .update_breaker(bridge.key.clone(), destination.to_string(), update)
        .await;
    if probe {
        breakers.probe_done(&bridge.key, destination);
    }
    let (before, after) = match changed {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot record the attempt in the circuit breaker");
            return false;
        }
    };
    breakers.set(&bridge.key, destination, after.clone());
    if let Some(event) = transition(before.as_ref(), after.as_ref()) {
        match event {
            NotificationEvent::DestinationOpened => {
                breakers.opened(&bridge.key, destination);
                warn!(
                    failures = after.as_ref().map_or(0, |a| a.consecutive_failures),
                    "circuit breaker opened: the destination's jobs wait for the probe"
                );
            }
            NotificationEvent::DestinationClosed => {
                info!("circuit breaker closed: the destination takes deliveries again");
                shared.delivery.wake();
            }
            NotificationEvent::DestinationDisabled => {
                warn!(
                    "destination failing for the circuit breaker's disableAfter: disabled until resumed"
                );
            }
            NotificationEvent::DestinationPaused => {}
        }
        notify(
            shared,
            bridge,
            destination,
            event,
            after.as_ref().or(before.as_ref()),
        );
    }
    after.is_some_and(|a| a.phase == BreakerPhase::Disabled)
}
