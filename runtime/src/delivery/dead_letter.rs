//! Dead letters: a job out of retries is kept (listed, replayable); when its destination
//! names a dead-letter URL, that URL is told once, best effort.

use std::time::Duration;

use causeway_config::DestinationConfig;
use tracing::warn;

use crate::bridge::ActiveBridge;
use crate::delivery::attempt::rfc3339;
use crate::delivery::client::error_chain;
use crate::shared::Shared;
use crate::store::{EventDetail, JobRecord};

/// Tell the destination's dead-letter URL, once, best effort (the dead letter is kept either way).
pub(crate) fn dead_letter(
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
    let body = serde_json::json!({
        "eventId": job.event.to_string(),
        "bridge": job.bridge,
        "destination": job.target.label(),
        "receivedAt": rfc3339(detail.record.received_at_ms),
        "attempts": job.attempts + 1,
        "reason": reason,
        "body": String::from_utf8_lossy(&detail.body),
    });
    let client = shared.http.clone();
    let timeout = Duration::from_millis(dest.timeout_ms.max(1));
    let key = bridge.key.clone();
    let guard = shared.netguard.clone();
    tokio::spawn(async move {
        if let Err(reason) = guard.check_destination(&url).await {
            warn!(bridge = %key, %reason, "dead-letter notification refused");
            return;
        }
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
