//! A bridge's operational webhooks (`spec.notifications`): a destination was paused (410),
//! its circuit breaker opened or closed, or it was disabled.
//!
//! The body follows the Standard Webhooks payload shape, `{"type", "timestamp", "data"}`,
//! and the request is signed like a delivery (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`; the id is the same on every retry). Sent by the worker that made
//! the change (the store's update tells exactly one worker), retried a few times with a
//! growing delay, then given up with a warning.
//!
//! Why not a job in the store, like a delivery: a job belongs to an event of the bridge,
//! and a notification is not one (it would show among the bridge's events, count in its
//! metrics and status, and could itself trip the breaker it reports on). The operator's
//! condition and Warning Event, and the metrics, carry the same news durably.

use std::time::Duration;

use causeway_config::NotificationEvent;
use serde_json::json;
use tracing::{debug, warn};

use crate::bridge::ActiveBridge;
use crate::delivery::attempt::rfc3339;
use crate::delivery::client::error_chain;
use crate::shared::Shared;
use crate::store::{BreakerState, now_ms};

/// Attempts of one notification.
const ATTEMPTS: u32 = 5;
/// Delay before the first retry; doubled for each next one.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Timeout of one attempt.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Send `event` about `destination` of `bridge` when the bridge asks for it (in the
/// background).
pub(crate) fn notify(
    shared: &Shared,
    bridge: &ActiveBridge,
    destination: &str,
    event: NotificationEvent,
    breaker: Option<&BreakerState>,
) {
    let Some(cfg) = bridge.cfg.notifications.as_ref().filter(|n| n.wants(event)) else {
        return;
    };
    let now = now_ms();
    let mut data = json!({
        "bridge": bridge.key,
        "destination": destination,
    });
    if let Some(b) = breaker {
        data["consecutiveFailures"] = json!(b.consecutive_failures);
        if let Some(since) = b.failing_since_ms {
            data["failingSince"] = json!(rfc3339(since));
        }
        if event == NotificationEvent::DestinationOpened {
            data["probeAt"] = json!(rfc3339(b.until_ms));
        }
    }
    if matches!(
        event,
        NotificationEvent::DestinationPaused | NotificationEvent::DestinationDisabled
    ) {
        data["resume"] = json!(format!(
            "kubectl causeway destinations resume {} {destination}",
            bridge.key
        ));
    }
    let body = json!({
        "type": event.as_str(),
        "timestamp": rfc3339(now),
        "data": data,
    })
    .to_string();
    let id = format!("ntf_{}", uuid::Uuid::now_v7().simple());
    let key = bridge.notifications_key().cloned();
    let url = cfg.url.clone();
    let client = shared.http.clone();
    let guard = shared.netguard.clone();
    let bridge_key = bridge.key.clone();
    let stop = shared.shutdown.clone();
    tokio::spawn(async move {
        if let Err(reason) = guard.check_destination(&url).await {
            warn!(bridge = %bridge_key, %reason, "notification refused");
            return;
        }
        let mut delay = FIRST_RETRY;
        for n in 1..=ATTEMPTS {
            let mut req = client
                .post(&url)
                .timeout(TIMEOUT)
                .header("content-type", "application/json")
                .header("webhook-id", &id);
            if let Some(k) = &key {
                let ts = (now_ms() / 1000) as i64;
                for (name, value) in k.headers(&id, ts, body.as_bytes()) {
                    if name != "webhook-id" {
                        req = req.header(name, value);
                    }
                }
            }
            match req
                .body(body.clone())
                .send()
                .await
                .and_then(|r| r.error_for_status())
            {
                Ok(_) => {
                    debug!(bridge = %bridge_key, event = event.as_str(), "notification sent");
                    return;
                }
                Err(e) if n == ATTEMPTS => {
                    warn!(bridge = %bridge_key, event = event.as_str(), error = %error_chain(&e), "notification failed; given up");
                }
                Err(e) => {
                    debug!(bridge = %bridge_key, attempt = n, error = %error_chain(&e), "notification failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay *= 2;
                }
            }
        }
    });
}
