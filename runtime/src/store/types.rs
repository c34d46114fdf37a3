//! Plain records the store keeps. No transport, no engine.

use serde::{Deserialize, Serialize};

/// Event ids are UUID v7: time-ordered, so the key order is the arrival order.
pub type EventId = uuid::Uuid;

/// The slot of the job that runs a bridge's steps in the store's keys and records
/// (destinations use 0, 1, …). Only the store's encoding knows it: everything else sees
/// [`JobTarget::Steps`].
pub(crate) const STEPS_SLOT: u32 = u32::MAX;

/// What a job does: run the bridge's steps, or deliver to one destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JobTarget {
    Steps,
    Destination {
        /// The destination's place in the bridge's list when the job was made.
        index: u32,
        name: String,
    },
}

impl JobTarget {
    pub fn destination(index: u32, name: impl Into<String>) -> JobTarget {
        JobTarget::Destination {
            index,
            name: name.into(),
        }
    }

    /// The job's slot in the store's keys (one per event).
    pub fn slot(&self) -> u32 {
        match self {
            JobTarget::Steps => STEPS_SLOT,
            JobTarget::Destination { index, .. } => *index,
        }
    }

    /// The destination's name, None for the steps job.
    pub fn destination_name(&self) -> Option<&str> {
        match self {
            JobTarget::Steps => None,
            JobTarget::Destination { name, .. } => Some(name),
        }
    }

    /// How the admin API, logs and metrics name it: the destination, or `(steps)`.
    pub fn label(&self) -> &str {
        self.destination_name().unwrap_or("(steps)")
    }

    pub(crate) fn from_slot(index: u32, name: String) -> JobTarget {
        if index == STEPS_SLOT {
            JobTarget::Steps
        } else {
            JobTarget::Destination { index, name }
        }
    }
}

/// Response bytes kept per attempt.
pub const RESPONSE_SNIPPET_BYTES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Pending,
    Delivered,
    Dead,
    Filtered,
}

impl EventStatus {
    /// Every status.
    pub const ALL: [EventStatus; 4] = [
        EventStatus::Pending,
        EventStatus::Delivered,
        EventStatus::Dead,
        EventStatus::Filtered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Delivered => "delivered",
            EventStatus::Dead => "dead",
            EventStatus::Filtered => "filtered",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => EventStatus::Pending,
            "delivered" => EventStatus::Delivered,
            "dead" => EventStatus::Dead,
            "filtered" => EventStatus::Filtered,
            _ => return None,
        })
    }
    /// Finished events are what retention may delete.
    pub fn finished(self) -> bool {
        !matches!(self, EventStatus::Pending)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Retrying,
    Delivered,
    Dead,
    Paused,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Retrying => "retrying",
            JobStatus::Delivered => "delivered",
            JobStatus::Dead => "dead",
            JobStatus::Paused => "paused",
        }
    }
    /// Waiting for an attempt (has an entry in the due index).
    pub fn queued(self) -> bool {
        matches!(self, JobStatus::Pending | JobStatus::Retrying)
    }
}

/// One received event. The body is stored beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub id: EventId,
    /// `namespace/name`.
    pub bridge: String,
    pub received_at_ms: u64,
    pub method: String,
    pub query: String,
    /// Inbound headers, credentials removed.
    pub headers: Vec<(String, String)>,
    pub status: EventStatus,
    /// Why it was filtered or dead-lettered, when it was.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub body_bytes: u64,
    /// The event a step fanned this one out of (`causeway-fanout: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<EventId>,
    /// The events a step fanned this one out into.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<EventId>,
    /// Its place in its trace: the trace id, and the span its later spans (steps,
    /// attempts) are children of. None in records written before traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::traces::TraceContext>,
}

/// The id of a fanned-out event: derived from its parent's id and its place in the fan-out
/// (`path`, e.g. `0` or `1.0` after two fan-outs), so a step that runs again produces the
/// same ids and the store does not double them. The parent's 48-bit timestamp comes first
/// (children sort next to their parent); the rest is a hash; version 8.
pub fn child_id(parent: EventId, path: &str) -> EventId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update(b"/");
    h.update(path.as_bytes());
    let h = h.finalize();
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&parent.as_bytes()[..6]);
    b[6..].copy_from_slice(&h[..10]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    EventId::from_bytes(b)
}

/// One delivery job (event × destination), or the job that runs the bridge's steps.
///
/// Stored as [`JobRecordV1`] (the format written since the first version: a slot number
/// with `u32::MAX` for the steps job, and the destination's name), so stores written by
/// earlier versions open and deliver unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "JobRecordV1", into = "JobRecordV1")]
pub struct JobRecord {
    pub event: EventId,
    pub target: JobTarget,
    pub bridge: String,
    pub status: JobStatus,
    pub due_at_ms: u64,
    pub received_at_ms: u64,
    /// Attempts made so far, over the job's whole life.
    pub attempts: u32,
    /// `attempts` when the job was last queued (first time or replay): retries count from here.
    pub attempts_at_queue: u32,
    pub last_error: Option<String>,
}

/// The stored form of a [`JobRecord`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecordV1 {
    event: EventId,
    /// Destination index in the event's job list, or `u32::MAX` for the steps job.
    index: u32,
    bridge: String,
    /// Destination name (empty for the steps job).
    destination: String,
    status: JobStatus,
    due_at_ms: u64,
    received_at_ms: u64,
    attempts: u32,
    #[serde(default)]
    attempts_at_queue: u32,
    #[serde(default)]
    last_error: Option<String>,
}

impl From<JobRecordV1> for JobRecord {
    fn from(r: JobRecordV1) -> Self {
        JobRecord {
            event: r.event,
            target: JobTarget::from_slot(r.index, r.destination),
            bridge: r.bridge,
            status: r.status,
            due_at_ms: r.due_at_ms,
            received_at_ms: r.received_at_ms,
            attempts: r.attempts,
            attempts_at_queue: r.attempts_at_queue,
            last_error: r.last_error,
        }
    }
}

impl From<JobRecord> for JobRecordV1 {
    fn from(r: JobRecord) -> Self {
        JobRecordV1 {
            event: r.event,
            index: r.target.slot(),
            destination: r.target.destination_name().unwrap_or_default().to_string(),
            bridge: r.bridge,
            status: r.status,
            due_at_ms: r.due_at_ms,
            received_at_ms: r.received_at_ms,
            attempts: r.attempts,
            attempts_at_queue: r.attempts_at_queue,
            last_error: r.last_error,
        }
    }
}

impl JobRecord {
    /// A new job of `event` as it is first queued: pending, no attempt yet.
    pub fn queued(event: EventId, bridge: &str, received_at_ms: u64, job: &NewJob) -> JobRecord {
        JobRecord {
            event,
            target: job.target.clone(),
            bridge: bridge.to_string(),
            status: JobStatus::Pending,
            due_at_ms: job.due_at_ms,
            received_at_ms,
            attempts: 0,
            attempts_at_queue: 0,
            last_error: None,
        }
    }

    pub fn key(&self) -> JobKey {
        JobKey {
            event: self.event,
            index: self.target.slot(),
        }
    }
    /// The job's slot in the store's keys.
    pub fn slot(&self) -> u32 {
        self.target.slot()
    }
    /// Retries already made since the job was queued.
    pub fn retries_made(&self) -> u32 {
        self.attempts
            .saturating_sub(self.attempts_at_queue)
            .saturating_sub(1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub event: EventId,
    pub index: u32,
}

/// One recorded attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub at_ms: u64,
    pub duration_ms: u64,
    #[serde(default)]
    pub status_code: Option<u16>,
    /// First 4 KiB of the response, secrets redacted.
    #[serde(default)]
    pub response: String,
    #[serde(default)]
    pub error: Option<String>,
    /// The attempt's span: the trace id of its event, and the span id the outgoing
    /// request's `traceparent` named. None in records written before traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::traces::SpanRef>,
}

/// A new job to create.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub target: JobTarget,
    pub due_at_ms: u64,
}

/// What ingress stores.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub record: EventRecord,
    pub body: bytes::Bytes,
    pub jobs: Vec<NewJob>,
    /// Idempotency key and when it expires.
    pub idempotency: Option<(String, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub id: EventId,
    /// The key was already held: nothing was stored and `id` is the first event's.
    pub duplicate: bool,
}

#[derive(Clone, Debug, Default)]
pub struct DueJobs {
    pub jobs: Vec<JobRecord>,
    pub next_due_ms: Option<u64>,
    /// Due jobs whose record could not be decoded, with their due time: the caller
    /// quarantines them ([`super::Store::quarantine`]) so that they never block the rest.
    pub undecodable: Vec<(u64, JobKey)>,
}

/// What follows an attempt.
#[derive(Clone, Debug)]
pub enum Next {
    Delivered,
    Retry {
        due_at_ms: u64,
    },
    Dead {
        reason: String,
    },
    /// 410: the destination is paused with this job.
    Paused,
    /// The steps ran: replace the body and create the delivery jobs.
    StepsDone {
        body: bytes::Bytes,
        jobs: Vec<NewJob>,
    },
    /// A step dropped the event.
    Filtered {
        reason: String,
    },
    /// The steps fanned the event out: the steps job is done and each child is stored
    /// (once: a child whose id exists is left as it is) with its own jobs.
    FannedOut {
        children: Vec<NewEvent>,
    },
}

#[derive(Clone, Debug)]
pub struct JobUpdate {
    pub job: JobKey,
    pub attempt: Option<AttemptRecord>,
    pub next: Next,
}

/// Everything about one event, for the admin API and for delivery.
#[derive(Clone, Debug)]
pub struct EventDetail {
    pub record: EventRecord,
    pub body: bytes::Bytes,
    pub jobs: Vec<(JobRecord, Vec<AttemptRecord>)>,
}

#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub bridge: Option<String>,
    pub status: Option<EventStatus>,
    /// Newest first; at most this many.
    pub limit: usize,
    /// Only events older than this one (a cursor: the last id of the previous page).
    pub before: Option<EventId>,
    /// Only events received at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only events received before this time (ms since the epoch).
    pub until_ms: Option<u64>,
    /// Only events whose `webhook-id` header is exactly this ([`EventRecord::webhook_id`]).
    pub webhook_id: Option<String>,
}

/// How far an event id's time (UUID v7) may lie from the event's `received_at_ms` and
/// still be found by a time filter: ingress takes both from the clock one after the other,
/// a fanned-out child carries its parent's. Stores narrow a time filter to the ids of
/// `[since - slack, until + slack)` and then compare `received_at_ms` exactly.
pub const ID_TIME_SLACK_MS: u64 = 60_000;

/// The smallest event id of a time (ms since the epoch), for range reads: UUID v7 ids
/// start with their 48-bit millisecond time.
pub fn first_id_at(ms: u64) -> u128 {
    u128::from(ms.min((1 << 48) - 1)) << 80
}

impl EventQuery {
    /// The ids a page may hold, as a half-open range `[lo, hi)` of `u128`: the cursor and
    /// the time filter (widened by [`ID_TIME_SLACK_MS`]).
    pub fn id_range(&self) -> (u128, u128) {
        let lo = self
            .since_ms
            .map(|s| first_id_at(s.saturating_sub(ID_TIME_SLACK_MS)))
            .unwrap_or(0);
        let mut hi = self
            .until_ms
            .map(|u| first_id_at(u.saturating_add(ID_TIME_SLACK_MS)))
            .unwrap_or(u128::MAX);
        if let Some(b) = self.before {
            hi = hi.min(b.as_u128());
        }
        (lo, hi)
    }
    /// Whether a record's time is within the filter (exact, on `received_at_ms`).
    pub fn in_time(&self, rec: &EventRecord) -> bool {
        self.since_ms.is_none_or(|s| rec.received_at_ms >= s)
            && self.until_ms.is_none_or(|u| rec.received_at_ms < u)
    }
}

/// The longest `webhook-id` the stores index (a longer one is not searchable).
pub const WEBHOOK_ID_MAX_BYTES: usize = 512;

impl EventRecord {
    /// The event's place in its trace. A record written before traces has none: it gets
    /// one derived from its id (the same on every attempt, so what remains of it still
    /// shares one trace).
    pub fn trace_context(&self) -> crate::traces::TraceContext {
        self.trace
            .clone()
            .unwrap_or_else(|| crate::traces::TraceContext {
                trace_id: crate::traces::TraceId(self.id.as_u128().max(1)),
                span_id: crate::traces::SpanId((self.id.as_u128() as u64).max(1)),
                sampled: true,
                state: None,
            })
    }

    /// The sender's message id: the `webhook-id` header (Standard Webhooks), when it has
    /// one of at most [`WEBHOOK_ID_MAX_BYTES`].
    pub fn webhook_id(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("webhook-id"))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty() && v.len() <= WEBHOOK_ID_MAX_BYTES)
    }
}

/// A read for a bridge's streams ([`super::Store::stream_events`]): its events with an id
/// in `(after, before)`, ascending, that passed the filter and the steps.
#[derive(Clone, Debug)]
pub struct StreamRead {
    /// `namespace/name`.
    pub bridge: String,
    /// Only events after this id (none: from the oldest).
    pub after: Option<EventId>,
    /// Only events before this id (none: to the newest): the streams' watermark, below
    /// which every event has been committed.
    pub before: Option<EventId>,
    /// At most this many.
    pub limit: usize,
}

/// One event as a stream serves it: its id and its body after the steps.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamItem {
    pub id: EventId,
    pub received_at_ms: u64,
    pub body: bytes::Bytes,
}

/// What [`super::Store::stream_events`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamPage {
    pub items: Vec<StreamItem>,
    /// The read stopped at this event, whose steps have not finished: whether it passes is
    /// not known yet, and the events after it wait for it (streams keep id order).
    pub held: Option<EventId>,
}

/// Whether a stream serves an event, from its record and the state of its steps job
/// (None: the bridge ran no steps on it).
pub(crate) enum StreamDecision {
    Serve,
    Skip,
    Hold,
}

pub(crate) fn stream_decision(rec: &EventRecord, steps: Option<JobStatus>) -> StreamDecision {
    if rec.status == EventStatus::Filtered || !rec.children.is_empty() {
        // Dropped by the filter or a step; or fanned out: its children are served instead.
        return StreamDecision::Skip;
    }
    match steps {
        Some(s) if s.queued() => StreamDecision::Hold,
        // The steps failed for good: the event never passed them.
        Some(JobStatus::Dead) => StreamDecision::Skip,
        _ => StreamDecision::Serve,
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub max_age_ms: u64,
    pub max_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_by_age: usize,
    pub deleted_by_size: usize,
    pub expired_keys: usize,
    pub compacted: bool,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Record counts, for the admin API and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreCounts {
    pub events: u64,
    pub jobs: u64,
    pub attempts: u64,
    pub idempotency_keys: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_are_stable_distinct_and_sort_by_their_parent() {
        let parent = EventId::now_v7();
        let a = child_id(parent, "0");
        assert_eq!(a, child_id(parent, "0"));
        assert_ne!(a, child_id(parent, "1"));
        assert_ne!(a, child_id(parent, "0.0"));
        assert_ne!(a, child_id(EventId::now_v7(), "0"));
        assert_eq!(a.get_version_num(), 8);
        assert_eq!(a.as_bytes()[..6], parent.as_bytes()[..6]);
    }
}

/// Where a destination's circuit breaker stands (`delivery/breaker.rs` decides the
/// transitions; the store keeps the state so that it survives restarts and every worker of
/// a shared store sees it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum BreakerPhase {
    /// Attempts go out; failures are counted.
    #[default]
    Closed,
    /// No attempt until `until_ms`.
    Open,
    /// One probe attempt is out (its worker holds it until `until_ms`).
    HalfOpen,
    /// Failed for the breaker's `disableAfter`: paused until resumed, like a 410.
    Disabled,
}

/// One destination's circuit breaker, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BreakerState {
    pub phase: BreakerPhase,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The first failure since the last success: continuous failure since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_ms: Option<u64>,
    /// Open: when the probe may go. Half-open: when the probe's claim runs out (its
    /// worker died) and another worker may probe.
    #[serde(default)]
    pub until_ms: u64,
    /// Half-open: the token of the worker's attempt that holds the probe.
    #[serde(default)]
    pub probe: u64,
    /// Times the breaker opened.
    #[serde(default)]
    pub openings: u64,
}

/// A change of one breaker, applied atomically by the store: sees what is stored (None:
/// nothing, a closed breaker without failures) and returns what to store (None: delete).
pub type BreakerUpdate =
    std::sync::Arc<dyn Fn(Option<&BreakerState>) -> Option<BreakerState> + Send + Sync>;

/// A breaker before and after an update.
pub type BreakerChange = (Option<BreakerState>, Option<BreakerState>);

/// One WebSub subscription of a bridge's hub: a callback whose intent was verified, and
/// its lease. Keyed by `(bridge, callback)`, as WebSub identifies a subscription by its
/// topic and callback. Holds the subscriber's `hub.secret`: never listed or logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRecord {
    /// `namespace/name` of the bridge (the hub's topic).
    pub bridge: String,
    pub callback: String,
    /// The `hub.topic` the subscriber gave (this hub's URL as it reached it), sent back in
    /// each delivery's `Link` header.
    pub topic: String,
    /// Names the subscription's delivery jobs; a new one for each subscription made (a
    /// renewal keeps it), so that the jobs of an ended subscription never reach a later one
    /// of the same callback.
    pub id: String,
    /// The `hub.secret` deliveries are signed with (`X-Hub-Signature-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub lease_seconds: u64,
    pub created_at_ms: u64,
    /// When intent was last verified (subscribe or renewal).
    pub verified_at_ms: u64,
    pub expires_at_ms: u64,
}
