//! The store contract: what every engine behind [`Store`] must do, written once.
//!
//! Each `pub async fn` here is one contract. It takes a fresh, empty store of the engine under
//! test and panics when the engine breaks the contract. An engine runs all of them with
//! [`store_contract_tests!`](crate::store_contract_tests), which writes one `#[tokio::test]`
//! per contract (so a failure names the contract):
//!
//! ```ignore
//! async fn fresh() -> (EmbeddedStore, tempfile::TempDir) { /* a new store in a temp dir */ }
//! causeway_runtime::store_contract_tests!(fresh);
//! ```
//!
//! A new contract is one more `pub async fn` here and its name in the macro's list. What
//! only the engine can do (make a record undecodable, set the keyvalue quota) comes
//! through [`EngineHooks`]. Time is explicit: the contracts pass `now_ms` values from a fixed
//! base, never the clock, so every outcome is deterministic.
//!
//! Built for this crate's tests and, with the `store-contract` feature, for other crates'.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::*;

/// What the contracts need from an engine beyond the [`Store`] trait.
pub trait EngineHooks: Store {
    /// Make a job's record undecodable (as a torn or foreign write would) while the job stays
    /// due: the engine must then report it in [`DueJobs::undecodable`].
    fn corrupt_job(&self, job: JobKey) -> StoreFuture<()>;
    /// Bytes of keyvalue state (keys and values) one plugin may hold.
    fn set_kv_quota(&self, bytes: u64);
    /// Compare what the engine keeps beside the event records for the listing's filters
    /// (secondary indexes, derived columns) with the records themselves; the error names
    /// every difference. The contracts call it after each change of an event.
    fn check_event_index(&self) -> StoreFuture<()>;
    /// Treat the store as quiet from now on, as if no write had arrived for a long while:
    /// an engine that postpones heavy maintenance (compaction) while writes arrive does it
    /// on the next run. The contracts write and then run retention at once.
    fn quiesce(&self) {}
}

/// The base time of every contract: 2025-01-01T00:00:00Z.
pub const T0: u64 = 1_735_689_600_000;

/// Write one `#[tokio::test]` per contract for an engine. `$fresh` is an async fn (or a
/// closure returning a future) that gives `(store, guard)`: a fresh empty store, and whatever
/// must live as long as it (a temp dir, a database schema).
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:expr) => {
        $crate::store_contract_tests!(@each $fresh;
            a_fresh_store_is_empty_and_healthy,
            append_stores_the_event_its_body_and_its_jobs,
            a_key_held_within_its_window_returns_the_first_event,
            a_key_past_its_window_stores_a_new_event,
            concurrent_appends_all_commit,
            one_failing_write_does_not_fail_the_others,
            delivered_records_the_attempt_and_finishes_the_event,
            retry_queues_the_job_again_at_its_new_due_time,
            dead_keeps_the_reason_and_marks_the_event_dead,
            a_410_pauses_the_job_and_its_destination,
            steps_done_replaces_the_body_and_creates_the_delivery_jobs,
            the_event_for_delivery_is_its_record_and_body_as_stored,
            filtered_marks_the_event_filtered,
            fanned_out_stores_each_child_once,
            finishing_an_unknown_job_is_not_found,
            due_jobs_come_oldest_first_up_to_the_limit,
            due_jobs_skip_claimed_and_held_jobs,
            handed_over_jobs_are_claimed_once,
            undecodable_jobs_are_reported_and_quarantined,
            replay_event_queues_its_finished_jobs_again,
            replay_dead_queues_a_bridges_dead_jobs_only,
            purge_deletes_a_bridges_queued_and_paused_jobs,
            pause_and_resume_a_destination,
            breakers_update_atomically_and_resume_closes_them,
            retention_by_age_deletes_old_finished_events_and_expired_keys,
            retention_by_size_deletes_the_oldest_finished_events_first,
            keyvalue_get_set_delete_list,
            keyvalue_quota_per_plugin,
            list_events_newest_first_filtered_and_limited,
            filtered_listings_follow_every_change_of_an_event,
            list_events_by_time_and_webhook_id,
            queue_depth_counts_queued_jobs_per_destination,
            stream_events_serve_what_passed_in_id_order,
            subscriptions_put_renew_list_and_delete,
            subscription_jobs_live_beside_destination_jobs
        );
    };
    (@each $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = ($fresh)().await;
                $crate::store::contract::$name(&store).await;
            }
        )*
    };
}

// ------------------------------------------------------------------ helpers

static SEQ: AtomicU16 = AtomicU16::new(0);

/// A UUID v7 for an event received at `ms`: ids sort by arrival, as ingress makes them.
pub fn id_at(ms: u64) -> EventId {
    let n = SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    let mut rest = [0u8; 10];
    rest[..2].copy_from_slice(&n);
    rest[2] = 0x5a;
    uuid::Builder::from_unix_timestamp_millis(ms, &rest).into_uuid()
}

/// A new event of `bridge` received at `at`, with one job per destination, due at `at`.
pub fn new_event(bridge: &str, at: u64, destinations: &[&str]) -> NewEvent {
    let id = id_at(at);
    NewEvent {
        record: EventRecord {
            id,
            bridge: bridge.to_string(),
            received_at_ms: at,
            method: "POST".into(),
            query: "a=1".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            status: EventStatus::Pending,
            reason: None,
            body_bytes: 9,
            parent: None,
            children: vec![],
            // Every record carries its trace context, so each engine shows it keeps it.
            trace: Some(crate::traces::TraceContext {
                trace_id: crate::traces::TraceId(u128::from(at) << 64 | 0x5eed),
                span_id: crate::traces::SpanId(0xa11ce),
                sampled: true,
                state: Some("causeway=t".into()),
            }),
        },
        body: Bytes::from_static(br#"{"n":1}"#),
        jobs: destinations
            .iter()
            .enumerate()
            .map(|(i, d)| NewJob {
                target: JobTarget::destination(i as u32, *d),
                due_at_ms: at,
            })
            .collect(),
        idempotency: None,
    }
}

/// The same event with its steps job instead of destination jobs.
pub fn new_steps_event(bridge: &str, at: u64) -> NewEvent {
    let mut ev = new_event(bridge, at, &[]);
    ev.jobs = vec![NewJob {
        target: JobTarget::Steps,
        due_at_ms: at,
    }];
    ev
}

fn attempt(at: u64, status: Option<u16>, error: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        at_ms: at,
        duration_ms: 12,
        status_code: status,
        response: format!("answer {status:?}"),
        error: error.map(str::to_string),
        trace: Some(crate::traces::SpanRef {
            trace_id: crate::traces::TraceId(u128::from(at) << 64 | 0x5eed),
            span_id: crate::traces::SpanId(at.max(1)),
        }),
    }
}

fn key(id: EventId, index: u32) -> JobKey {
    JobKey { event: id, index }
}

async fn append<S: Store>(s: &S, ev: NewEvent) -> EventId {
    let a = s.append(ev).await.expect("append");
    assert!(!a.duplicate, "a new event is not a duplicate");
    a.id
}

async fn detail<S: Store>(s: &S, id: EventId) -> EventDetail {
    s.event(id).await.expect("event").expect("the event exists")
}

async fn job<S: Store>(s: &S, id: EventId, index: u32) -> JobRecord {
    detail(s, id)
        .await
        .jobs
        .into_iter()
        .map(|(j, _)| j)
        .find(|j| j.slot() == index)
        .expect("the job exists")
}

async fn finish<S: Store>(
    s: &S,
    job: JobKey,
    attempt: Option<AttemptRecord>,
    next: Next,
) -> JobRecord {
    s.finish_attempt(JobUpdate { job, attempt, next })
        .await
        .expect("finish_attempt")
}

async fn due<S: Store>(s: &S, now: u64, limit: usize) -> DueJobs {
    s.due_jobs(now, limit, Arc::new(|_| false), Arc::new(|_| false))
        .await
        .expect("due_jobs")
}

async fn due_keys<S: Store>(s: &S, now: u64) -> Vec<JobKey> {
    due(s, now, 1000)
        .await
        .jobs
        .iter()
        .map(JobRecord::key)
        .collect()
}

async fn counts<S: Store>(s: &S) -> StoreCounts {
    s.counts().await.expect("counts")
}

async fn status<S: Store>(s: &S, id: EventId) -> EventStatus {
    detail(s, id).await.record.status
}

// ------------------------------------------------------------------ append

pub async fn a_fresh_store_is_empty_and_healthy<S: Store>(s: &S) {
    assert!(s.healthy(), "a fresh store is healthy");
    assert_eq!(counts(s).await, StoreCounts::default());
    let d = due(s, T0, 10).await;
    assert!(d.jobs.is_empty() && d.undecodable.is_empty() && d.next_due_ms.is_none());
    assert!(s.paused().await.expect("paused").is_empty());
    assert!(s.queue_depth().await.expect("queue_depth").is_empty());
    assert!(
        s.list_events(EventQuery::default())
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        s.event(id_at(T0)).await.expect("event").is_none(),
        "no such event"
    );
    assert!(s.kv_list("ns/p".into()).await.expect("kv_list").is_empty());
    // Writes work and leave it healthy.
    append(s, new_event("ns/b", T0, &["d"])).await;
    assert!(s.healthy());
}

pub async fn append_stores_the_event_its_body_and_its_jobs<S: Store>(s: &S) {
    let mut ev = new_event("ns/orders", T0, &["crm", "audit"]);
    ev.jobs[1].due_at_ms = T0 + 5_000; // a delayed destination
    ev.body = Bytes::from_static(b"\x00binary\xffbody");
    let record = ev.record.clone();
    let id = append(s, ev).await;
    assert_eq!(id, record.id);
    let d = detail(s, id).await;
    assert_eq!(d.record, record, "the record reads back as written");
    assert_eq!(&d.body[..], b"\x00binary\xffbody");
    assert_eq!(d.jobs.len(), 2);
    for (j, attempts) in &d.jobs {
        assert!(attempts.is_empty());
        assert_eq!(j.event, id);
        assert_eq!(j.bridge, "ns/orders");
        assert_eq!(j.status, JobStatus::Pending);
        assert_eq!(j.received_at_ms, T0);
        assert_eq!(
            (j.attempts, j.attempts_at_queue, j.last_error.as_deref()),
            (0, 0, None)
        );
    }
    let by_index: Vec<_> = d
        .jobs
        .iter()
        .map(|(j, _)| {
            (
                j.slot(),
                j.target.destination_name().unwrap_or_default(),
                j.due_at_ms,
            )
        })
        .collect();
    assert_eq!(by_index, vec![(0, "crm", T0), (1, "audit", T0 + 5_000)]);
    assert_eq!(
        counts(s).await,
        StoreCounts {
            events: 1,
            jobs: 2,
            attempts: 0,
            idempotency_keys: 0
        }
    );
    // Only the first job is due now; the delayed one is the next due time.
    let now = due(s, T0, 10).await;
    assert_eq!(
        now.jobs.iter().map(JobRecord::key).collect::<Vec<_>>(),
        vec![key(id, 0)]
    );
    assert_eq!(now.next_due_ms, Some(T0 + 5_000));
    assert_eq!(due_keys(s, T0 + 5_000).await, vec![key(id, 0), key(id, 1)]);
    // An event with no job (filtered at ingress) is stored as it is.
    let mut filtered = new_event("ns/orders", T0 + 1, &[]);
    filtered.record.status = EventStatus::Filtered;
    filtered.record.reason = Some("filter said no".into());
    let fid = append(s, filtered).await;
    let f = detail(s, fid).await;
    assert_eq!(f.record.status, EventStatus::Filtered);
    assert_eq!(f.record.reason.as_deref(), Some("filter said no"));
    assert!(f.jobs.is_empty());
}

pub async fn a_key_held_within_its_window_returns_the_first_event<S: Store>(s: &S) {
    let mut first = new_event("ns/b", T0, &["d"]);
    first.idempotency = Some(("msg_1".into(), T0 + 60_000));
    let first_id = append(s, first).await;
    for at in [T0 + 1, T0 + 59_999] {
        let mut again = new_event("ns/b", at, &["d"]);
        again.idempotency = Some(("msg_1".into(), at + 60_000));
        let a = s.append(again).await.expect("append");
        assert!(a.duplicate, "a key held within its window is a duplicate");
        assert_eq!(
            a.id, first_id,
            "a duplicate answers with the first event's id"
        );
    }
    assert_eq!(
        counts(s).await,
        StoreCounts {
            events: 1,
            jobs: 1,
            attempts: 0,
            idempotency_keys: 1
        },
        "a duplicate stores nothing"
    );
    assert_eq!(due_keys(s, T0 + 60_000).await, vec![key(first_id, 0)]);
    // Keys are per bridge, and another key is another event.
    let mut other_bridge = new_event("ns/other", T0 + 2, &["d"]);
    other_bridge.idempotency = Some(("msg_1".into(), T0 + 60_000));
    append(s, other_bridge).await;
    let mut other_key = new_event("ns/b", T0 + 3, &["d"]);
    other_key.idempotency = Some(("msg_2".into(), T0 + 60_000));
    append(s, other_key).await;
    // No key, no deduplication.
    append(s, new_event("ns/b", T0 + 4, &["d"])).await;
    let c = counts(s).await;
    assert_eq!((c.events, c.idempotency_keys), (4, 3));
    // Concurrent repeats of one key (one group commit) still store one event.
    let mut repeats = Vec::new();
    for i in 0..8 {
        let mut ev = new_event("ns/b", T0 + 10 + i, &["d"]);
        ev.idempotency = Some(("burst".into(), T0 + 60_000));
        repeats.push(s.append(ev));
    }
    let answers: Vec<Appended> = futures::future::try_join_all(repeats)
        .await
        .expect("append");
    let ids: BTreeSet<EventId> = answers.iter().map(|a| a.id).collect();
    assert_eq!(
        ids.len(),
        1,
        "every repeat answers with one id: {answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| !a.duplicate).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(counts(s).await.events, 5);
}

pub async fn a_key_past_its_window_stores_a_new_event<S: Store>(s: &S) {
    let mut first = new_event("ns/b", T0, &["d"]);
    first.idempotency = Some(("msg_1".into(), T0 + 1_000));
    let first_id = append(s, first).await;
    // Received exactly when the key expires: the window is over.
    let mut later = new_event("ns/b", T0 + 1_000, &["d"]);
    later.idempotency = Some(("msg_1".into(), T0 + 2_000));
    let later_id = later.record.id;
    let a = s.append(later).await.expect("append");
    assert_eq!(
        a,
        Appended {
            id: later_id,
            duplicate: false
        }
    );
    assert_ne!(later_id, first_id);
    // The key now belongs to the new event, with the new window.
    let mut again = new_event("ns/b", T0 + 1_500, &["d"]);
    again.idempotency = Some(("msg_1".into(), T0 + 2_500));
    let a = s.append(again).await.expect("append");
    assert_eq!(
        a,
        Appended {
            id: later_id,
            duplicate: true
        }
    );
    let c = counts(s).await;
    assert_eq!((c.events, c.jobs, c.idempotency_keys), (2, 2, 1));
}

pub async fn concurrent_appends_all_commit<S: Store>(s: &S) {
    let evs: Vec<NewEvent> = (0..50)
        .map(|i| new_event("ns/b", T0 + i, &["d", "e"]))
        .collect();
    let ids: BTreeSet<EventId> = evs.iter().map(|e| e.record.id).collect();
    let answers = futures::future::try_join_all(evs.into_iter().map(|e| s.append(e)))
        .await
        .expect("append");
    assert!(answers.iter().all(|a| !a.duplicate));
    assert_eq!(answers.iter().map(|a| a.id).collect::<BTreeSet<_>>(), ids);
    assert_eq!(
        counts(s).await,
        StoreCounts {
            events: 50,
            jobs: 100,
            attempts: 0,
            idempotency_keys: 0
        }
    );
    assert_eq!(due(s, T0 + 100, 1000).await.jobs.len(), 100);
}

pub async fn one_failing_write_does_not_fail_the_others<S: Store>(s: &S) {
    let id = append(s, new_event("ns/b", T0, &["d"])).await;
    // Sent together, so that a group-committing engine puts them in one batch.
    let missing = s.finish_attempt(JobUpdate {
        job: key(id_at(T0), 0),
        attempt: Some(attempt(T0, Some(200), None)),
        next: Next::Delivered,
    });
    let ok = s.finish_attempt(JobUpdate {
        job: key(id, 0),
        attempt: Some(attempt(T0, Some(200), None)),
        next: Next::Delivered,
    });
    let appended = s.append(new_event("ns/b", T0 + 1, &["d"]));
    let (missing, ok, appended) = futures::join!(missing, ok, appended);
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert_eq!(
        ok.expect("the other write commits").status,
        JobStatus::Delivered
    );
    appended.expect("the append commits");
    assert_eq!(status(s, id).await, EventStatus::Delivered);
    assert_eq!(
        counts(s).await,
        StoreCounts {
            events: 2,
            jobs: 2,
            attempts: 1,
            idempotency_keys: 0
        }
    );
}

// ------------------------------------------------------------------ outcomes

pub async fn delivered_records_the_attempt_and_finishes_the_event<S: Store>(s: &S) {
    let id = append(s, new_event("ns/b", T0, &["a", "b"])).await;
    let a = attempt(T0 + 10, Some(200), None);
    let rec = finish(s, key(id, 0), Some(a.clone()), Next::Delivered).await;
    assert_eq!(rec.status, JobStatus::Delivered);
    assert_eq!((rec.attempts, rec.last_error.as_deref()), (1, None));
    assert_eq!(
        job(s, id, 0).await,
        rec,
        "finish_attempt returns the record it stored"
    );
    assert_eq!(
        status(s, id).await,
        EventStatus::Pending,
        "one destination is left"
    );
    assert_eq!(
        due_keys(s, T0 + 100).await,
        vec![key(id, 1)],
        "a delivered job is no longer due"
    );
    let rec = finish(
        s,
        key(id, 1),
        Some(attempt(T0 + 20, Some(204), None)),
        Next::Delivered,
    )
    .await;
    assert_eq!(rec.status, JobStatus::Delivered);
    let d = detail(s, id).await;
    assert_eq!(
        d.record.status,
        EventStatus::Delivered,
        "every destination delivered"
    );
    assert_eq!(d.record.reason, None);
    assert_eq!(d.jobs[0].1, vec![a], "the attempt reads back as written");
    assert_eq!(d.jobs[1].1.len(), 1);
    assert!(due(s, T0 + 100, 10).await.jobs.is_empty());
    assert_eq!(counts(s).await.attempts, 2);
    // A retried job keeps every attempt, in order.
    let id = append(s, new_event("ns/b", T0 + 1, &["a"])).await;
    finish(
        s,
        key(id, 0),
        Some(attempt(T0 + 1, Some(500), None)),
        Next::Retry { due_at_ms: T0 + 2 },
    )
    .await;
    let rec = finish(
        s,
        key(id, 0),
        Some(attempt(T0 + 2, Some(200), None)),
        Next::Delivered,
    )
    .await;
    assert_eq!(
        (rec.attempts, rec.last_error.as_deref()),
        (2, None),
        "delivered clears the last error"
    );
    let attempts = detail(s, id).await.jobs[0].1.clone();
    let codes: Vec<_> = attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, vec![Some(500), Some(200)]);
    assert_eq!(
        attempts,
        vec![
            attempt(T0 + 1, Some(500), None),
            attempt(T0 + 2, Some(200), None)
        ],
        "each attempt reads back as written, its span with it"
    );
}

pub async fn retry_queues_the_job_again_at_its_new_due_time<S: Store>(s: &S) {
    let id = append(s, new_event("ns/b", T0, &["a"])).await;
    let rec = finish(
        s,
        key(id, 0),
        Some(attempt(T0 + 10, Some(503), None)),
        Next::Retry {
            due_at_ms: T0 + 1_000,
        },
    )
    .await;
    assert_eq!(rec.status, JobStatus::Retrying);
    assert_eq!(rec.due_at_ms, T0 + 1_000);
    assert_eq!(rec.attempts, 1);
    assert_eq!(
        rec.last_error.as_deref(),
        Some("status 503"),
        "the status is the error"
    );
    assert_eq!(rec.retries_made(), 0);
    let before = due(s, T0 + 999, 10).await;
    assert!(before.jobs.is_empty(), "not due before its new time");
    assert_eq!(before.next_due_ms, Some(T0 + 1_000));
    assert_eq!(due_keys(s, T0 + 1_000).await, vec![key(id, 0)]);
    assert_eq!(status(s, id).await, EventStatus::Pending);
    // A transport error is kept as it is.
    let rec = finish(
        s,
        key(id, 0),
        Some(attempt(T0 + 1_000, None, Some("connection refused"))),
        Next::Retry {
            due_at_ms: T0 + 3_000,
        },
    )
    .await;
    assert_eq!((rec.attempts, rec.retries_made()), (2, 1));
    assert_eq!(rec.last_error.as_deref(), Some("connection refused"));
    assert_eq!(due(s, T0 + 2_000, 10).await.next_due_ms, Some(T0 + 3_000));
    assert_eq!(
        due_keys(s, T0 + 3_000).await,
        vec![key(id, 0)],
        "one due entry, at the newest time"
    );
    assert_eq!(queue_of(s).await, vec![(("ns/b".into(), "a".into()), 1)]);
}

async fn queue_of<S: Store>(s: &S) -> Vec<((String, String), u64)> {
    let mut q = s.queue_depth().await.expect("queue_depth");
    q.retain(|(_, n)| *n > 0);
    q.sort();
    q
}

pub async fn dead_keeps_the_reason_and_marks_the_event_dead<S: Store>(s: &S) {
    let id = append(s, new_event("ns/b", T0, &["a", "b"])).await;
    finish(
        s,
        key(id, 1),
        Some(attempt(T0, Some(200), None)),
        Next::Delivered,
    )
    .await;
    let rec = finish(
        s,
        key(id, 0),
        Some(attempt(T0 + 5, Some(500), None)),
        Next::Dead {
            reason: "retries exhausted: status 500".into(),
        },
    )
    .await;
    assert_eq!(rec.status, JobStatus::Dead);
    assert_eq!(rec.attempts, 1);
    assert_eq!(
        rec.last_error.as_deref(),
        Some("retries exhausted: status 500")
    );
    let d = detail(s, id).await;
    assert_eq!(
        d.record.status,
        EventStatus::Dead,
        "one dead destination makes the event dead"
    );
    assert_eq!(
        d.record.reason.as_deref(),
        Some("retries exhausted: status 500")
    );
    assert!(due(s, T0 + 100_000, 10).await.jobs.is_empty());
    assert_eq!(counts(s).await.attempts, 2);
    // Dead without an attempt (the destination was removed): no attempt recorded.
    let id = append(s, new_event("ns/b", T0 + 1, &["gone"])).await;
    let rec = finish(
        s,
        key(id, 0),
        None,
        Next::Dead {
            reason: "destination gone is no longer configured".into(),
        },
    )
    .await;
    assert_eq!((rec.status, rec.attempts), (JobStatus::Dead, 0));
    assert!(detail(s, id).await.jobs[0].1.is_empty());
    assert_eq!(status(s, id).await, EventStatus::Dead);
    let dead = s
        .list_events(EventQuery {
            bridge: Some("ns/b".into()),
            status: Some(EventStatus::Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(dead.len(), 2);
}

pub async fn a_410_pauses_the_job_and_its_destination<S: Store>(s: &S) {
    let id = append(s, new_event("ns/b", T0, &["gone", "ok"])).await;
    let rec = finish(
        s,
        key(id, 0),
        Some(attempt(T0 + 5, Some(410), None)),
        Next::Paused,
    )
    .await;
    assert_eq!(rec.status, JobStatus::Paused);
    assert_eq!(
        (rec.attempts, rec.last_error.as_deref()),
        (1, Some("status 410"))
    );
    assert_eq!(
        s.paused().await.expect("paused"),
        vec![("ns/b".to_string(), "gone".to_string())]
    );
    assert_eq!(
        due_keys(s, T0 + 100_000).await,
        vec![key(id, 1)],
        "a paused job is not due"
    );
    finish(
        s,
        key(id, 1),
        Some(attempt(T0 + 6, Some(200), None)),
        Next::Delivered,
    )
    .await;
    assert_eq!(
        status(s, id).await,
        EventStatus::Pending,
        "a paused job keeps its event pending"
    );
    assert!(
        queue_of(s).await.iter().all(|((_, d), _)| d != "gone"),
        "paused jobs are not queued"
    );
    // Resuming retries it with the budget it had.
    let n = s
        .set_paused("ns/b".into(), "gone".into(), false, T0 + 50)
        .await
        .expect("resume");
    assert_eq!(n, 1);
    assert!(s.paused().await.expect("paused").is_empty());
    let rec = job(s, id, 0).await;
    assert_eq!(rec.status, JobStatus::Retrying);
    assert_eq!(
        (rec.due_at_ms, rec.attempts, rec.attempts_at_queue),
        (T0 + 50, 1, 0)
    );
    assert_eq!(due_keys(s, T0 + 50).await, vec![key(id, 0)]);
    finish(
        s,
        key(id, 0),
        Some(attempt(T0 + 60, Some(200), None)),
        Next::Delivered,
    )
    .await;
    assert_eq!(status(s, id).await, EventStatus::Delivered);
}

/// What a delivery reads ([`Store::event_for_delivery`]): the record and the body as
/// stored, the steps' body once they ran, whether the engine answers from memory (the
/// embedded one, for an event just stored) or from disk.
pub async fn the_event_for_delivery_is_its_record_and_body_as_stored<S: Store>(s: &S) {
    let ev = new_steps_event("ns/b", T0);
    let (record, body) = (ev.record.clone(), ev.body.clone());
    let id = append(s, ev).await;
    let d = s
        .event_for_delivery(id)
        .await
        .expect("event_for_delivery")
        .expect("the event exists");
    assert_eq!((&d.record, &d.body), (&record, &body));
    assert!(d.jobs.is_empty());
    let tagged = Bytes::from_static(br#"{"n":1,"tagged":true}"#);
    finish(
        s,
        key(id, JobTarget::Steps.slot()),
        Some(attempt(T0 + 3, Some(200), None)),
        Next::StepsDone {
            body: tagged.clone(),
            jobs: vec![NewJob {
                target: JobTarget::destination(0, "a"),
                due_at_ms: T0,
            }],
        },
    )
    .await;
    let d = s
        .event_for_delivery(id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(d.body, tagged, "the steps' body");
    assert_eq!(d.record.body_bytes, tagged.len() as u64);
    assert_eq!(d.record.headers, record.headers);
    finish(
        s,
        key(id, 0),
        Some(attempt(T0 + 4, Some(200), None)),
        Next::Delivered,
    )
    .await;
    let d = s
        .event_for_delivery(id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(d.body, tagged, "read back once delivery let go of it");
    assert!(
        s.event_for_delivery(id_at(T0 + 99))
            .await
            .expect("read")
            .is_none()
    );
}

pub async fn steps_done_replaces_the_body_and_creates_the_delivery_jobs<S: Store>(s: &S) {
    let id = append(s, new_steps_event("ns/b", T0)).await;
    let d = due(s, T0, 10).await;
    assert_eq!(d.jobs.len(), 1);
    assert_eq!(
        (
            d.jobs[0].slot(),
            d.jobs[0].target.destination_name().unwrap_or_default()
        ),
        (JobTarget::Steps.slot(), "")
    );
    let rec = finish(
        s,
        key(id, JobTarget::Steps.slot()),
        Some(attempt(T0 + 3, Some(200), None)),
        Next::StepsDone {
            body: Bytes::from_static(br#"{"n":1,"tagged":true}"#),
            jobs: vec![
                NewJob {
                    target: JobTarget::destination(0, "a"),
                    due_at_ms: T0,
                },
                NewJob {
                    target: JobTarget::destination(1, "b"),
                    due_at_ms: T0 + 7_000,
                },
            ],
        },
    )
    .await;
    assert_eq!((rec.status, rec.attempts), (JobStatus::Delivered, 1));
    let d = detail(s, id).await;
    assert_eq!(
        &d.body[..],
        br#"{"n":1,"tagged":true}"#,
        "the steps' body replaces the received one"
    );
    assert_eq!(
        d.record.body_bytes,
        d.body.len() as u64,
        "the record's size follows the body"
    );
    assert_eq!(d.record.status, EventStatus::Pending);
    let jobs: Vec<_> = d
        .jobs
        .iter()
        .map(|(j, _)| {
            (
                j.slot(),
                j.target.destination_name().unwrap_or_default().to_string(),
                j.status,
                j.bridge.clone(),
                j.received_at_ms,
            )
        })
        .collect();
    assert!(
        jobs.contains(&(0, "a".into(), JobStatus::Pending, "ns/b".into(), T0)),
        "{jobs:?}"
    );
    assert!(
        jobs.contains(&(1, "b".into(), JobStatus::Pending, "ns/b".into(), T0)),
        "{jobs:?}"
    );
    assert!(
        jobs.contains(&(
            JobTarget::Steps.slot(),
            String::new(),
            JobStatus::Delivered,
            "ns/b".into(),
            T0
        )),
        "{jobs:?}"
    );
    let now = due(s, T0 + 10, 10).await;
    assert_eq!(
        now.jobs.iter().map(JobRecord::key).collect::<Vec<_>>(),
        vec![key(id, 0)]
    );
    assert_eq!(now.next_due_ms, Some(T0 + 7_000));
    finish(s, key(id, 0), None, Next::Delivered).await;
    finish(s, key(id, 1), None, Next::Delivered).await;
    assert_eq!(status(s, id).await, EventStatus::Delivered);
    // The steps ran once: replaying the event sends the destinations again, not the steps.
    assert_eq!(s.replay_event(id, T0 + 20).await.expect("replay"), 2);
    let keys = due_keys(s, T0 + 20).await;
    assert_eq!(keys, vec![key(id, 0), key(id, 1)]);
    // A failed steps run retries like any job.
    let id = append(s, new_steps_event("ns/b", T0 + 1)).await;
    let rec = finish(
        s,
        key(id, JobTarget::Steps.slot()),
        Some(attempt(T0 + 2, Some(500), Some("step tagger: status 500"))),
        Next::Retry {
            due_at_ms: T0 + 900,
        },
    )
    .await;
    assert_eq!((rec.status, rec.due_at_ms), (JobStatus::Retrying, T0 + 900));
    assert_eq!(rec.last_error.as_deref(), Some("step tagger: status 500"));
}

pub async fn filtered_marks_the_event_filtered<S: Store>(s: &S) {
    let id = append(s, new_steps_event("ns/b", T0)).await;
    let rec = finish(
        s,
        key(id, JobTarget::Steps.slot()),
        Some(attempt(T0 + 1, Some(200), None)),
        Next::Filtered {
            reason: "step tagger dropped the event".into(),
        },
    )
    .await;
    assert_eq!(rec.status, JobStatus::Delivered);
    let d = detail(s, id).await;
    assert_eq!(d.record.status, EventStatus::Filtered);
    assert_eq!(
        d.record.reason.as_deref(),
        Some("step tagger dropped the event")
    );
    assert_eq!(d.jobs.len(), 1, "no delivery job");
    assert!(due(s, T0 + 100, 10).await.jobs.is_empty());
    let filtered = s
        .list_events(EventQuery {
            status: Some(EventStatus::Filtered),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(filtered.iter().map(|e| e.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(
        s.replay_event(id, T0 + 200).await.expect("replay"),
        0,
        "nothing to replay"
    );
    assert_eq!(status(s, id).await, EventStatus::Filtered);
}

pub async fn fanned_out_stores_each_child_once<S: Store>(s: &S) {
    let parent = append(s, new_steps_event("ns/b", T0)).await;
    let child = |path: &str, dests: &[&str]| {
        let mut ev = new_event("ns/b", T0, dests);
        ev.record.id = child_id(parent, path);
        ev.record.parent = Some(parent);
        ev.body = Bytes::from(format!(r#"{{"item":"{path}"}}"#));
        ev
    };
    let mut filtered_child = child("2", &[]);
    filtered_child.record.status = EventStatus::Filtered;
    let children = vec![child("0", &["a"]), child("1", &["a", "b"]), filtered_child];
    let ids: Vec<EventId> = children.iter().map(|c| c.record.id).collect();
    let rec = finish(
        s,
        key(parent, JobTarget::Steps.slot()),
        Some(attempt(T0 + 1, Some(200), None)),
        Next::FannedOut {
            children: children.clone(),
        },
    )
    .await;
    assert_eq!(rec.status, JobStatus::Delivered);
    let p = detail(s, parent).await;
    assert_eq!(p.record.children, ids);
    assert_eq!(
        p.record.status,
        EventStatus::Delivered,
        "the parent has nothing left to deliver"
    );
    assert_eq!(p.record.reason.as_deref(), Some("fanned out into 3 events"));
    for (i, id) in ids.iter().enumerate() {
        let c = detail(s, *id).await;
        assert_eq!(c.record.parent, Some(parent));
        assert_eq!(c.body, Bytes::from(format!(r#"{{"item":"{i}"}}"#)));
        assert_eq!(c.jobs.len(), [1, 2, 0][i]);
        assert!(
            c.jobs
                .iter()
                .all(|(j, _)| j.status == JobStatus::Pending && j.bridge == "ns/b")
        );
    }
    assert_eq!(status(s, ids[2]).await, EventStatus::Filtered);
    assert_eq!(due(s, T0 + 10, 10).await.jobs.len(), 3);
    // The steps run again (a crash before the commit was seen): a child that exists is kept
    // as it is, with its progress.
    finish(
        s,
        key(ids[0], 0),
        Some(attempt(T0 + 2, Some(200), None)),
        Next::Delivered,
    )
    .await;
    finish(
        s,
        key(parent, JobTarget::Steps.slot()),
        None,
        Next::FannedOut { children },
    )
    .await;
    assert_eq!(
        status(s, ids[0]).await,
        EventStatus::Delivered,
        "an existing child is not reset"
    );
    assert_eq!(counts(s).await.events, 4);
    assert_eq!(due(s, T0 + 10, 10).await.jobs.len(), 2);
}

pub async fn finishing_an_unknown_job_is_not_found<S: Store>(s: &S) {
    let id = append(s, new_event("ns/b", T0, &["a"])).await;
    for job in [key(id_at(T0), 0), key(id, 1)] {
        let r = s
            .finish_attempt(JobUpdate {
                job,
                attempt: Some(attempt(T0, Some(200), None)),
                next: Next::Delivered,
            })
            .await;
        assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    }
    assert_eq!(
        counts(s).await.attempts,
        0,
        "no attempt recorded for an unknown job"
    );
    assert_eq!(job(s, id, 0).await.status, JobStatus::Pending);
}

// ------------------------------------------------------------------ due jobs

pub async fn due_jobs_come_oldest_first_up_to_the_limit<S: Store>(s: &S) {
    // Appended in another order than they fall due.
    let mut evs = Vec::new();
    for (at, due_at) in [
        (T0, T0 + 30),
        (T0 + 1, T0 + 10),
        (T0 + 2, T0 + 20),
        (T0 + 3, T0 + 500),
    ] {
        let mut ev = new_event("ns/b", at, &["a"]);
        ev.jobs[0].due_at_ms = due_at;
        evs.push(append(s, ev).await);
    }
    let d = due(s, T0 + 100, 10).await;
    assert_eq!(
        d.jobs.iter().map(JobRecord::key).collect::<Vec<_>>(),
        vec![key(evs[1], 0), key(evs[2], 0), key(evs[0], 0)],
        "oldest due first"
    );
    assert_eq!(d.next_due_ms, Some(T0 + 500), "the first job after now");
    // The limit keeps the oldest, and says that more are due.
    let d = due(s, T0 + 100, 2).await;
    assert_eq!(
        d.jobs.iter().map(JobRecord::key).collect::<Vec<_>>(),
        vec![key(evs[1], 0), key(evs[2], 0)]
    );
    assert!(
        d.next_due_ms.is_some_and(|t| t <= T0 + 100),
        "more are due now: {:?}",
        d.next_due_ms
    );
    // Due exactly at now counts as due.
    assert_eq!(due_keys(s, T0 + 10).await, vec![key(evs[1], 0)]);
    // Nothing due yet: only the next due time.
    let d = due(s, T0, 10).await;
    assert!(d.jobs.is_empty());
    assert_eq!(d.next_due_ms, Some(T0 + 10));
    // due_jobs only reads: asking again gives the same.
    assert_eq!(due(s, T0 + 100, 10).await.jobs.len(), 3);
}

/// The hand-off ([`Store::claim_jobs`]) claims only named jobs that are queued, due, not
/// claimed and not held, each once; a pass does not see what it claimed, and a release puts
/// it back. An engine may claim fewer (or none): the scheduler finds the rest.
pub async fn handed_over_jobs_are_claimed_once<S: Store>(s: &S) {
    let a = append(s, new_event("ns/b", T0, &["x", "y"])).await;
    let mut later = new_event("ns/b", T0, &["x"]);
    later.jobs[0].due_at_ms = T0 + 60_000;
    let b = append(s, later).await;
    let c = append(s, new_event("ns/held", T0, &["x"])).await;
    let none: JobFilter<JobKey> = Arc::new(|_: &JobKey| false);
    let hold: JobFilter<JobRecord> = Arc::new(|j: &JobRecord| j.bridge == "ns/held");
    let asked = vec![
        key(a, 0),
        key(a, 1),
        key(b, 0),
        key(c, 0),
        key(id_at(T0), 0),
    ];
    let handed = s
        .claim_jobs(asked.clone(), T0 + 10, none.clone(), hold.clone())
        .await
        .expect("claim_jobs");
    let mut got: Vec<JobKey> = handed.iter().map(JobRecord::key).collect();
    got.sort_by_key(|k| (k.event, k.index));
    got.dedup();
    assert_eq!(got.len(), handed.len(), "each job once: {got:?}");
    assert!(
        got.iter().all(|k| *k == key(a, 0) || *k == key(a, 1)),
        "only due, queued, unheld jobs: {got:?}"
    );
    for j in &handed {
        assert_eq!(j.bridge, "ns/b");
        assert_eq!(j.status, JobStatus::Pending);
    }
    let again = s
        .claim_jobs(asked, T0 + 10, none.clone(), hold.clone())
        .await
        .expect("claim_jobs");
    assert!(
        again.iter().all(|j| !got.contains(&j.key())),
        "a job is handed over once"
    );
    // A pass takes what the hand-off left, and nothing it took.
    let d = s
        .claim_due(T0 + 10, 10, none.clone(), hold.clone())
        .await
        .expect("claim_due");
    let mut passed: Vec<JobKey> = d.jobs.iter().map(JobRecord::key).collect();
    passed.extend(again.iter().map(JobRecord::key));
    passed.sort_by_key(|k| (k.event, k.index));
    let left: Vec<JobKey> = [key(a, 0), key(a, 1)]
        .into_iter()
        .filter(|k| !got.contains(k))
        .collect();
    assert_eq!(passed, left);
    // Released, the handed-over jobs are found by the next pass.
    s.release(got.clone()).await.expect("release");
    let d = s
        .claim_due(T0 + 10, 10, none, hold)
        .await
        .expect("claim_due");
    let mut back: Vec<JobKey> = d.jobs.iter().map(JobRecord::key).collect();
    back.sort_by_key(|k| (k.event, k.index));
    assert_eq!(back, got);
}

pub async fn due_jobs_skip_claimed_and_held_jobs<S: Store>(s: &S) {
    let a = append(s, new_event("ns/b", T0, &["x", "y"])).await;
    let b = append(s, new_event("ns/b", T0 + 1, &["x"])).await;
    let c = append(s, new_event("ns/held", T0 + 2, &["x"])).await;
    let asked: Arc<Mutex<Vec<JobKey>>> = Arc::new(Mutex::new(Vec::new()));
    let claimed: JobFilter<JobKey> = Arc::new(move |k: &JobKey| *k == key(a, 0));
    let hold: JobFilter<JobRecord> = {
        let asked = asked.clone();
        Arc::new(move |j: &JobRecord| {
            asked.lock().expect("lock").push(j.key());
            j.bridge == "ns/held"
        })
    };
    let d = s
        .due_jobs(T0 + 10, 10, claimed.clone(), hold)
        .await
        .expect("due_jobs");
    assert_eq!(
        d.jobs.iter().map(JobRecord::key).collect::<Vec<_>>(),
        vec![key(a, 1), key(b, 0)]
    );
    let asked = asked.lock().expect("lock").clone();
    assert!(
        !asked.contains(&key(a, 0)),
        "hold is not asked about a claimed job: {asked:?}"
    );
    assert!(asked.contains(&key(c, 0)));
    // Claimed and held jobs do not count against the limit.
    let d = s
        .due_jobs(
            T0 + 10,
            1,
            claimed,
            Arc::new(|j: &JobRecord| j.target.destination_name() == Some("y")),
        )
        .await
        .expect("due_jobs");
    assert_eq!(
        d.jobs.iter().map(JobRecord::key).collect::<Vec<_>>(),
        vec![key(b, 0)]
    );
    // Holding back does not change the job.
    assert_eq!(job(s, c, 0).await.status, JobStatus::Pending);
    assert_eq!(due_keys(s, T0 + 10).await.len(), 4);
}

pub async fn undecodable_jobs_are_reported_and_quarantined<S: EngineHooks>(s: &S) {
    let bad = append(s, new_event("ns/b", T0, &["x", "y"])).await;
    let good = append(s, new_event("ns/b", T0 + 1, &["x"])).await;
    let paused = append(s, new_event("ns/b", T0 + 2, &["p"])).await;
    let dead = append(s, new_event("ns/b", T0 + 3, &["x"])).await;
    finish(
        s,
        key(paused, 0),
        Some(attempt(T0, Some(410), None)),
        Next::Paused,
    )
    .await;
    finish(
        s,
        key(dead, 0),
        None,
        Next::Dead {
            reason: "no".into(),
        },
    )
    .await;
    s.corrupt_job(key(bad, 0)).await.expect("corrupt_job");
    let d = due(s, T0 + 10, 10).await;
    assert_eq!(
        d.jobs.iter().map(JobRecord::key).collect::<Vec<_>>(),
        vec![key(bad, 1), key(good, 0)],
        "the rest is still due, its sibling too"
    );
    assert_eq!(d.undecodable, vec![(T0, key(bad, 0))]);
    assert_eq!(
        queue_of(s).await,
        vec![
            (("ns/b".into(), "x".into()), 1),
            (("ns/b".into(), "y".into()), 1)
        ],
        "the queue depth passes over it"
    );
    assert_eq!(
        s.quarantine(d.undecodable.clone())
            .await
            .expect("quarantine"),
        1
    );
    let d = due(s, T0 + 10, 10).await;
    assert!(
        d.undecodable.is_empty(),
        "a quarantined job is no longer due"
    );
    assert_eq!(
        d.jobs.iter().map(JobRecord::key).collect::<Vec<_>>(),
        vec![key(bad, 1), key(good, 0)]
    );
    assert_eq!(
        s.quarantine(vec![(T0, key(bad, 0))])
            .await
            .expect("quarantine"),
        0,
        "already moved"
    );
    assert_eq!(counts(s).await.jobs, 5, "the record stays, for inspection");
    // Its event still reads, and its sibling is delivered; the event is not called
    // delivered while one of its jobs cannot be read.
    let e = detail(s, bad).await;
    assert_eq!(
        e.jobs.iter().map(|(j, _)| j.slot()).collect::<Vec<_>>(),
        vec![1]
    );
    finish(
        s,
        key(bad, 1),
        Some(attempt(T0 + 11, Some(200), None)),
        Next::Delivered,
    )
    .await;
    assert_eq!(status(s, bad).await, EventStatus::Pending);
    // One bad record blocks nothing else: the event list, the queue, and the bridge-wide
    // operations (resume, replay, purge) still work.
    assert_eq!(
        s.list_events(EventQuery::default())
            .await
            .expect("list")
            .len(),
        4
    );
    assert_eq!(queue_of(s).await, vec![(("ns/b".into(), "x".into()), 1)]);
    assert_eq!(
        s.set_paused("ns/b".into(), "p".into(), false, T0 + 20)
            .await
            .expect("resume"),
        1
    );
    assert_eq!(
        s.replay_dead("ns/b".into(), T0 + 20)
            .await
            .expect("replay_dead"),
        1
    );
    assert_eq!(
        s.replay_event(bad, T0 + 20).await.expect("replay_event"),
        1,
        "its sibling"
    );
    assert_eq!(s.purge("ns/b".into()).await.expect("purge"), 4);
    assert!(due(s, T0 + 100, 10).await.jobs.is_empty());
}

// ------------------------------------------------------------------ operations

pub async fn replay_event_queues_its_finished_jobs_again<S: Store>(s: &S) {
    let id = append(s, new_event("ns/b", T0, &["ok", "bad", "slow"])).await;
    finish(
        s,
        key(id, 0),
        Some(attempt(T0, Some(200), None)),
        Next::Delivered,
    )
    .await;
    finish(
        s,
        key(id, 1),
        Some(attempt(T0, Some(500), None)),
        Next::Retry { due_at_ms: T0 + 1 },
    )
    .await;
    finish(
        s,
        key(id, 1),
        Some(attempt(T0 + 1, Some(500), None)),
        Next::Dead {
            reason: "status 500".into(),
        },
    )
    .await;
    finish(
        s,
        key(id, 2),
        Some(attempt(T0, Some(503), None)),
        Next::Retry {
            due_at_ms: T0 + 9_000,
        },
    )
    .await;
    assert_eq!(
        s.replay_event(id, T0 + 100).await.expect("replay"),
        2,
        "the delivered and the dead job"
    );
    let d = detail(s, id).await;
    assert_eq!(d.record.status, EventStatus::Pending);
    let j: Vec<&JobRecord> = d.jobs.iter().map(|(j, _)| j).collect();
    assert_eq!(
        (
            j[0].status,
            j[0].due_at_ms,
            j[0].attempts,
            j[0].attempts_at_queue
        ),
        (JobStatus::Pending, T0 + 100, 1, 1)
    );
    assert_eq!(
        (
            j[1].status,
            j[1].due_at_ms,
            j[1].attempts,
            j[1].attempts_at_queue
        ),
        (JobStatus::Pending, T0 + 100, 2, 2)
    );
    assert_eq!(j[1].last_error, None, "a replayed job starts clean");
    assert_eq!(j[1].retries_made(), 0, "with its whole retry budget");
    assert_eq!(
        (j[2].status, j[2].due_at_ms),
        (JobStatus::Retrying, T0 + 9_000),
        "a queued job is left alone"
    );
    assert_eq!(d.jobs[1].1.len(), 2, "the attempt log is kept");
    assert_eq!(due_keys(s, T0 + 100).await, vec![key(id, 0), key(id, 1)]);
    assert_eq!(
        s.replay_event(id, T0 + 200).await.expect("replay"),
        0,
        "nothing finished to replay"
    );
    let r = s.replay_event(id_at(T0), T0).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

pub async fn replay_dead_queues_a_bridges_dead_jobs_only<S: Store>(s: &S) {
    let e1 = append(s, new_event("ns/b", T0, &["x", "y"])).await;
    let e2 = append(s, new_event("ns/b", T0 + 1, &["x"])).await;
    let other = append(s, new_event("ns/other", T0 + 2, &["x"])).await;
    let ok = append(s, new_event("ns/b", T0 + 3, &["x"])).await;
    for k in [key(e1, 0), key(e1, 1), key(e2, 0), key(other, 0)] {
        finish(
            s,
            k,
            Some(attempt(T0 + 5, Some(500), None)),
            Next::Dead {
                reason: "status 500".into(),
            },
        )
        .await;
    }
    finish(
        s,
        key(ok, 0),
        Some(attempt(T0 + 5, Some(200), None)),
        Next::Delivered,
    )
    .await;
    assert_eq!(
        s.replay_dead("ns/b".into(), T0 + 50)
            .await
            .expect("replay_dead"),
        3
    );
    assert_eq!(
        due_keys(s, T0 + 50).await,
        vec![key(e1, 0), key(e1, 1), key(e2, 0)]
    );
    for k in [key(e1, 0), key(e1, 1), key(e2, 0)] {
        let j = job(s, k.event, k.index).await;
        assert_eq!(
            (j.status, j.due_at_ms, j.attempts_at_queue, j.last_error),
            (JobStatus::Pending, T0 + 50, 1, None)
        );
    }
    assert_eq!(status(s, e1).await, EventStatus::Pending);
    assert_eq!(status(s, e2).await, EventStatus::Pending);
    assert_eq!(
        status(s, other).await,
        EventStatus::Dead,
        "another bridge's dead letters stay"
    );
    assert_eq!(
        job(s, ok, 0).await.status,
        JobStatus::Delivered,
        "a delivered job is not replayed"
    );
    assert_eq!(
        s.replay_dead("ns/b".into(), T0 + 60)
            .await
            .expect("replay_dead"),
        0
    );
    assert_eq!(
        s.replay_dead("ns/none".into(), T0 + 60)
            .await
            .expect("replay_dead"),
        0
    );
}

pub async fn purge_deletes_a_bridges_queued_and_paused_jobs<S: Store>(s: &S) {
    let pending = append(s, new_event("ns/b", T0, &["x"])).await;
    let retrying = append(s, new_event("ns/b", T0 + 1, &["x"])).await;
    let paused = append(s, new_event("ns/b", T0 + 2, &["p"])).await;
    let mixed = append(s, new_event("ns/b", T0 + 3, &["x", "y"])).await;
    let dead_and_pending = append(s, new_event("ns/b", T0 + 4, &["x", "y"])).await;
    let steps = append(s, new_steps_event("ns/b", T0 + 5)).await;
    let other = append(s, new_event("ns/other", T0 + 6, &["x"])).await;
    finish(
        s,
        key(retrying, 0),
        Some(attempt(T0, Some(500), None)),
        Next::Retry {
            due_at_ms: T0 + 60_000,
        },
    )
    .await;
    finish(
        s,
        key(paused, 0),
        Some(attempt(T0, Some(410), None)),
        Next::Paused,
    )
    .await;
    finish(
        s,
        key(mixed, 0),
        Some(attempt(T0, Some(200), None)),
        Next::Delivered,
    )
    .await;
    finish(
        s,
        key(dead_and_pending, 0),
        None,
        Next::Dead {
            reason: "status 500".into(),
        },
    )
    .await;
    // A draining bridge waits for exactly these: pending, retrying (a later due time
    // too), paused and steps jobs; delivered and dead ones are done.
    assert_eq!(s.jobs_left("ns/b".into()).await.expect("jobs_left"), 6);
    assert_eq!(s.jobs_left("ns/other".into()).await.expect("jobs_left"), 1);
    assert_eq!(s.jobs_left("ns/none".into()).await.expect("jobs_left"), 0);
    assert_eq!(s.purge("ns/b".into()).await.expect("purge"), 6);
    assert_eq!(s.jobs_left("ns/b".into()).await.expect("jobs_left"), 0);
    assert_eq!(
        due_keys(s, T0 + 100_000).await,
        vec![key(other, 0)],
        "only the other bridge is left"
    );
    for id in [pending, retrying, paused, steps] {
        let d = detail(s, id).await;
        assert_eq!(
            d.record.status,
            EventStatus::Dead,
            "an event with nothing left is dead"
        );
        assert_eq!(d.record.reason.as_deref(), Some("purged"));
        assert!(d.jobs.is_empty());
    }
    let d = detail(s, mixed).await;
    assert_eq!(
        d.record.status,
        EventStatus::Delivered,
        "what was delivered stays delivered"
    );
    assert_eq!(d.jobs.len(), 1);
    assert_eq!(d.jobs[0].1.len(), 1, "with its attempts");
    let d = detail(s, dead_and_pending).await;
    assert_eq!(d.record.status, EventStatus::Dead);
    assert_eq!(
        d.jobs.iter().map(|(j, _)| j.status).collect::<Vec<_>>(),
        vec![JobStatus::Dead],
        "dead letters stay"
    );
    assert_eq!(status(s, other).await, EventStatus::Pending);
    let c = counts(s).await;
    assert_eq!((c.events, c.jobs), (7, 3), "events stay; purged jobs go");
    assert_eq!(s.purge("ns/b".into()).await.expect("purge"), 0);
    assert_eq!(
        queue_of(s).await,
        vec![(("ns/other".into(), "x".into()), 1)]
    );
}

pub async fn pause_and_resume_a_destination<S: Store>(s: &S) {
    assert_eq!(
        s.set_paused("ns/b".into(), "x".into(), true, T0)
            .await
            .expect("pause"),
        0
    );
    s.set_paused("ns/c".into(), "x".into(), true, T0)
        .await
        .expect("pause");
    let mut p = s.paused().await.expect("paused");
    p.sort();
    assert_eq!(
        p,
        vec![("ns/b".into(), "x".into()), ("ns/c".into(), "x".into())]
    );
    // Pausing is a flag: queued jobs stay queued (the scheduler holds them back).
    let e = append(s, new_event("ns/b", T0, &["x", "y"])).await;
    assert_eq!(due_keys(s, T0).await, vec![key(e, 0), key(e, 1)]);
    // Two jobs paused by 410s, one on another destination.
    let p1 = append(s, new_event("ns/b", T0 + 1, &["x"])).await;
    let p2 = append(s, new_event("ns/b", T0 + 2, &["y"])).await;
    finish(
        s,
        key(p1, 0),
        Some(attempt(T0 + 3, Some(410), None)),
        Next::Paused,
    )
    .await;
    finish(
        s,
        key(p2, 0),
        Some(attempt(T0 + 3, Some(410), None)),
        Next::Paused,
    )
    .await;
    assert_eq!(
        s.set_paused("ns/b".into(), "x".into(), false, T0 + 10)
            .await
            .expect("resume"),
        1
    );
    let mut p = s.paused().await.expect("paused");
    p.sort();
    assert_eq!(
        p,
        vec![("ns/b".into(), "y".into()), ("ns/c".into(), "x".into())]
    );
    assert_eq!(job(s, p1, 0).await.status, JobStatus::Retrying);
    assert_eq!(
        job(s, p2, 0).await.status,
        JobStatus::Paused,
        "another destination stays paused"
    );
    assert_eq!(
        due_keys(s, T0 + 10).await,
        vec![key(e, 0), key(e, 1), key(p1, 0)]
    );
    // Resuming twice, or what was never paused, queues nothing.
    assert_eq!(
        s.set_paused("ns/b".into(), "x".into(), false, T0 + 11)
            .await
            .expect("resume"),
        0
    );
    assert_eq!(
        s.set_paused("ns/none".into(), "x".into(), false, T0 + 11)
            .await
            .expect("resume"),
        0
    );
    assert_eq!(
        s.set_paused("ns/b".into(), "y".into(), false, T0 + 12)
            .await
            .expect("resume"),
        1
    );
    assert_eq!(
        s.paused().await.expect("paused"),
        vec![("ns/c".into(), "x".into())]
    );
}

pub async fn breakers_update_atomically_and_resume_closes_them<S: Store>(s: &S) {
    assert!(s.breakers().await.expect("breakers").is_empty());
    let open = |until: u64| -> BreakerUpdate {
        Arc::new(move |old: Option<&BreakerState>| {
            let mut b = old.cloned().unwrap_or_default();
            b.consecutive_failures += 1;
            b.failing_since_ms.get_or_insert(T0);
            b.phase = BreakerPhase::Open;
            b.until_ms = until;
            b.openings += 1;
            Some(b)
        })
    };
    let (before, after) = s
        .update_breaker("ns/b".into(), "x".into(), open(T0 + 30))
        .await
        .expect("update");
    assert_eq!(
        before, None,
        "no breaker is stored before the first failure"
    );
    let after = after.expect("stored");
    assert_eq!(
        (after.phase, after.until_ms, after.openings),
        (BreakerPhase::Open, T0 + 30, 1)
    );
    // The update sees what the last one stored.
    let (before, after) = s
        .update_breaker("ns/b".into(), "x".into(), open(T0 + 60))
        .await
        .expect("update");
    assert_eq!(before.map(|b| b.until_ms), Some(T0 + 30));
    assert_eq!(
        after.as_ref().map(|b| (b.consecutive_failures, b.openings)),
        Some((2, 2))
    );
    s.update_breaker("ns/c".into(), "x".into(), open(T0 + 5))
        .await
        .expect("update");
    let mut all = s.breakers().await.expect("breakers");
    all.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        all.iter()
            .map(|(k, b)| (k.clone(), b.until_ms))
            .collect::<Vec<_>>(),
        vec![
            (("ns/b".into(), "x".into()), T0 + 60),
            (("ns/c".into(), "x".into()), T0 + 5)
        ]
    );
    // Many updates at once: each sees the one before (no lost count).
    let bump: BreakerUpdate = Arc::new(|old: Option<&BreakerState>| {
        let mut b = old.cloned().unwrap_or_default();
        b.consecutive_failures += 1;
        Some(b)
    });
    let all = futures::future::join_all(
        (0..20).map(|_| s.update_breaker("ns/d".into(), "x".into(), bump.clone())),
    )
    .await;
    assert!(all.iter().all(Result::is_ok));
    let d = s.breakers().await.expect("breakers");
    let d = d.iter().find(|(k, _)| k.0 == "ns/d").expect("ns/d stored");
    assert_eq!(d.1.consecutive_failures, 20);
    // An update returning None deletes the breaker (closed, no failures).
    let (before, after) = s
        .update_breaker("ns/d".into(), "x".into(), Arc::new(|_| None))
        .await
        .expect("update");
    assert!(before.is_some() && after.is_none());
    assert!(
        !s.breakers()
            .await
            .expect("breakers")
            .iter()
            .any(|(k, _)| k.0 == "ns/d")
    );
    // Disabled: paused; resuming deletes the breaker with the pause.
    s.update_breaker(
        "ns/b".into(),
        "x".into(),
        Arc::new(|old: Option<&BreakerState>| {
            let mut b = old.cloned().unwrap_or_default();
            b.phase = BreakerPhase::Disabled;
            Some(b)
        }),
    )
    .await
    .expect("update");
    s.set_paused("ns/b".into(), "x".into(), true, T0 + 70)
        .await
        .expect("pause");
    s.set_paused("ns/b".into(), "x".into(), false, T0 + 80)
        .await
        .expect("resume");
    let left = s.breakers().await.expect("breakers");
    assert_eq!(
        left.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        vec![("ns/c".into(), "x".into())],
        "resuming a destination closes its breaker; the others stay"
    );
}

pub async fn retention_by_age_deletes_old_finished_events_and_expired_keys<S: Store>(s: &S) {
    const DAY: u64 = 86_400_000;
    let now = T0 + 10 * DAY;
    let old_delivered = append(s, new_event("ns/b", T0, &["x"])).await;
    let mut old_dead = new_event("ns/b", T0 + 1, &["x"]);
    old_dead.idempotency = Some(("expired".into(), T0 + DAY));
    let old_dead = append(s, old_dead).await;
    let mut old_filtered = new_event("ns/b", T0 + 2, &[]);
    old_filtered.record.status = EventStatus::Filtered;
    let old_filtered = append(s, old_filtered).await;
    let old_pending = append(s, new_event("ns/b", T0 + 3, &["x"])).await;
    let mut new_delivered = new_event("ns/b", now - DAY, &["x"]);
    new_delivered.idempotency = Some(("live".into(), now + DAY));
    let new_delivered = append(s, new_delivered).await;
    finish(
        s,
        key(old_delivered, 0),
        Some(attempt(T0, Some(200), None)),
        Next::Delivered,
    )
    .await;
    finish(
        s,
        key(old_dead, 0),
        Some(attempt(T0, Some(500), None)),
        Next::Dead { reason: "x".into() },
    )
    .await;
    finish(
        s,
        key(new_delivered, 0),
        Some(attempt(now - DAY, Some(200), None)),
        Next::Delivered,
    )
    .await;
    let r = s
        .retain(
            Retention {
                max_age_ms: 7 * DAY,
                max_bytes: u64::MAX,
            },
            now,
        )
        .await
        .expect("retain");
    assert_eq!(r.deleted_by_age, 3, "{r:?}");
    assert_eq!(r.deleted_by_size, 0, "{r:?}");
    assert_eq!(r.expired_keys, 1, "{r:?}");
    for id in [old_delivered, old_dead, old_filtered] {
        assert!(
            s.event(id).await.expect("event").is_none(),
            "an old finished event is deleted"
        );
    }
    assert_eq!(
        status(s, old_pending).await,
        EventStatus::Pending,
        "a pending event is never deleted"
    );
    assert_eq!(due_keys(s, now).await, vec![key(old_pending, 0)]);
    assert_eq!(status(s, new_delivered).await, EventStatus::Delivered);
    assert_eq!(
        counts(s).await,
        StoreCounts {
            events: 2,
            jobs: 2,
            attempts: 1,
            idempotency_keys: 1
        },
        "jobs and attempts go with their event"
    );
    // The live key still deduplicates; the expired one is free.
    let mut again = new_event("ns/b", now, &["x"]);
    again.idempotency = Some(("live".into(), now + DAY));
    assert_eq!(
        s.append(again).await.expect("append"),
        Appended {
            id: new_delivered,
            duplicate: true
        }
    );
    let mut again = new_event("ns/b", now, &["x"]);
    again.idempotency = Some(("expired".into(), now + DAY));
    assert!(!s.append(again).await.expect("append").duplicate);
    // Nothing more to do.
    let r = s
        .retain(
            Retention {
                max_age_ms: 7 * DAY,
                max_bytes: u64::MAX,
            },
            now,
        )
        .await
        .expect("retain");
    assert_eq!(
        (r.deleted_by_age, r.deleted_by_size, r.expired_keys),
        (0, 0, 0)
    );
}

pub async fn retention_by_size_deletes_the_oldest_finished_events_first<S: EngineHooks>(s: &S) {
    let blob = Bytes::from(vec![b'z'; 64 * 1024]);
    let pending = {
        let mut ev = new_event("ns/b", T0, &["x"]);
        ev.body = blob.clone();
        append(s, ev).await
    };
    let mut finished = Vec::new();
    let mut writes = Vec::new();
    for i in 0..24 {
        let mut ev = new_event("ns/b", T0 + 1 + i, &["x"]);
        ev.body = blob.clone();
        finished.push(ev.record.id);
        writes.push(s.append(ev));
    }
    futures::future::try_join_all(writes).await.expect("append");
    let done = finished.iter().map(|id| {
        s.finish_attempt(JobUpdate {
            job: key(*id, 0),
            attempt: None,
            next: Next::Delivered,
        })
    });
    futures::future::try_join_all(done)
        .await
        .expect("finish_attempt");
    let before = s.disk_bytes();
    assert!(before > 24 * 64 * 1024, "the bodies take room: {before}");
    // Well under what is stored, well over the pending event alone.
    let limit = before / 2;
    // No write for a while: the file, not only the data, goes under the limit.
    s.quiesce();
    let r = s
        .retain(
            Retention {
                max_age_ms: u64::MAX,
                max_bytes: limit,
            },
            T0 + 100,
        )
        .await
        .expect("retain");
    assert_eq!(r.deleted_by_age, 0, "{r:?}");
    assert!(r.deleted_by_size > 0, "{r:?}");
    assert_eq!(r.bytes_before, before, "{r:?}");
    assert!(
        r.bytes_after < r.bytes_before,
        "deleting gives room back: {r:?}"
    );
    assert!(
        r.bytes_after <= limit,
        "under the limit after one run: {r:?}"
    );
    assert_eq!(s.disk_bytes(), r.bytes_after);
    // The oldest finished events went first: what is left is the newest.
    let left: Vec<bool> = {
        let mut v = Vec::new();
        for id in &finished {
            v.push(s.event(*id).await.expect("event").is_some());
        }
        v
    };
    let gone = left.iter().filter(|l| !**l).count();
    assert_eq!(gone, r.deleted_by_size, "{r:?}");
    assert!(
        left[..gone].iter().all(|l| !l) && left[gone..].iter().all(|l| *l),
        "oldest first: {left:?}"
    );
    assert_eq!(
        status(s, pending).await,
        EventStatus::Pending,
        "a pending event is never deleted"
    );
    assert_eq!(due_keys(s, T0 + 100).await, vec![key(pending, 0)]);
    // Under the limit: nothing to do.
    let r = s
        .retain(
            Retention {
                max_age_ms: u64::MAX,
                max_bytes: u64::MAX,
            },
            T0 + 100,
        )
        .await
        .expect("retain");
    assert_eq!((r.deleted_by_age, r.deleted_by_size), (0, 0));
}

// ------------------------------------------------------------------ keyvalue

pub async fn keyvalue_get_set_delete_list<S: Store>(s: &S) {
    let get = |p: &str, k: &str| s.kv_get(p.into(), k.into());
    assert_eq!(get("ns/a", "k").await.expect("get"), None);
    s.kv_set("ns/a".into(), "k".into(), b"one".to_vec())
        .await
        .expect("set");
    s.kv_set("ns/a".into(), "b/2".into(), vec![0, 255])
        .await
        .expect("set");
    s.kv_set("ns/a".into(), "empty".into(), vec![])
        .await
        .expect("set");
    // Plugins are apart, also when one's name starts with the other's.
    s.kv_set("ns/ab".into(), "k".into(), b"other".to_vec())
        .await
        .expect("set");
    s.kv_set("ns/".into(), "k".into(), b"prefix".to_vec())
        .await
        .expect("set");
    assert_eq!(
        get("ns/a", "k").await.expect("get").as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        get("ns/a", "b/2").await.expect("get").as_deref(),
        Some(&[0u8, 255][..])
    );
    assert_eq!(
        get("ns/a", "empty").await.expect("get").as_deref(),
        Some(&[][..]),
        "empty is not absent"
    );
    assert_eq!(
        get("ns/ab", "k").await.expect("get").as_deref(),
        Some(&b"other"[..])
    );
    let mut keys = s.kv_list("ns/a".into()).await.expect("list");
    keys.sort();
    assert_eq!(keys, vec!["b/2", "empty", "k"]);
    assert_eq!(s.kv_list("ns/ab".into()).await.expect("list"), vec!["k"]);
    assert!(s.kv_list("ns/none".into()).await.expect("list").is_empty());
    s.kv_set("ns/a".into(), "k".into(), b"two".to_vec())
        .await
        .expect("overwrite");
    assert_eq!(
        get("ns/a", "k").await.expect("get").as_deref(),
        Some(&b"two"[..])
    );
    s.kv_delete("ns/a".into(), "k".into())
        .await
        .expect("delete");
    assert_eq!(get("ns/a", "k").await.expect("get"), None);
    s.kv_delete("ns/a".into(), "never".into())
        .await
        .expect("deleting what is absent is fine");
    let mut keys = s.kv_list("ns/a".into()).await.expect("list");
    keys.sort();
    assert_eq!(keys, vec!["b/2", "empty"]);
    assert_eq!(
        get("ns/ab", "k").await.expect("get").as_deref(),
        Some(&b"other"[..]),
        "untouched"
    );
    // Keyvalue is not events.
    assert_eq!(counts(s).await, StoreCounts::default());
}

pub async fn keyvalue_quota_per_plugin<S: EngineHooks>(s: &S) {
    s.set_kv_quota(100);
    // 2 + 60 bytes.
    s.kv_set("ns/a".into(), "k1".into(), vec![1; 60])
        .await
        .expect("set");
    let err = s
        .kv_set("ns/a".into(), "k2".into(), vec![2; 60])
        .await
        .expect_err("past the quota");
    assert!(matches!(err, StoreError::Quota { limit: 100, .. }), "{err}");
    assert_eq!(
        s.kv_get("ns/a".into(), "k2".into()).await.expect("get"),
        None,
        "nothing written past the quota"
    );
    assert_eq!(s.kv_list("ns/a".into()).await.expect("list"), vec!["k1"]);
    // Exactly at the quota is allowed: 62 + 2 + 36.
    s.kv_set("ns/a".into(), "k3".into(), vec![3; 36])
        .await
        .expect("up to the quota");
    s.kv_delete("ns/a".into(), "k3".into())
        .await
        .expect("delete");
    // Another plugin has its own quota.
    s.kv_set("ns/b".into(), "k1".into(), vec![0; 90])
        .await
        .expect("another plugin");
    // Overwriting counts the new size only; deleting gives the bytes back.
    s.kv_set("ns/a".into(), "k1".into(), vec![0; 90])
        .await
        .expect("overwrite");
    s.kv_delete("ns/a".into(), "k1".into())
        .await
        .expect("delete");
    s.kv_set("ns/a".into(), "k2".into(), vec![0; 90])
        .await
        .expect("room again");
    // A value that alone exceeds the quota.
    let err = s
        .kv_set("ns/c".into(), "k".into(), vec![0; 200])
        .await
        .expect_err("past the quota");
    assert!(matches!(err, StoreError::Quota { .. }), "{err}");
}

// ------------------------------------------------------------------ reads

pub async fn list_events_newest_first_filtered_and_limited<S: Store>(s: &S) {
    let mut ids = Vec::new();
    for i in 0..6 {
        let bridge = if i % 2 == 0 { "ns/even" } else { "ns/odd" };
        ids.push(append(s, new_event(bridge, T0 + i, &["x"])).await);
    }
    finish(s, key(ids[0], 0), None, Next::Dead { reason: "x".into() }).await;
    finish(s, key(ids[3], 0), None, Next::Dead { reason: "x".into() }).await;
    let list = |bridge: Option<&str>, status: Option<EventStatus>, limit: usize| {
        s.list_events(EventQuery {
            bridge: bridge.map(str::to_string),
            status,
            limit,
            ..Default::default()
        })
    };
    let all: Vec<EventId> = list(None, None, 100)
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        all,
        ids.iter().rev().copied().collect::<Vec<_>>(),
        "newest first"
    );
    let two: Vec<EventId> = list(None, None, 2)
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(two, vec![ids[5], ids[4]]);
    let even: Vec<EventId> = list(Some("ns/even"), None, 100)
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(even, vec![ids[4], ids[2], ids[0]]);
    let dead: Vec<EventId> = list(None, Some(EventStatus::Dead), 100)
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(dead, vec![ids[3], ids[0]]);
    let odd_pending: Vec<EventId> = list(Some("ns/odd"), Some(EventStatus::Pending), 1)
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(odd_pending, vec![ids[5]]);
    // A cursor: the events older than `before`, with and without a filter.
    let page = |bridge: Option<&str>, before: EventId| {
        s.list_events(EventQuery {
            bridge: bridge.map(str::to_string),
            limit: 2,
            before: Some(before),
            ..Default::default()
        })
    };
    let older: Vec<EventId> = page(None, ids[4])
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(older, vec![ids[3], ids[2]]);
    let older_even: Vec<EventId> = page(Some("ns/even"), ids[4])
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(older_even, vec![ids[2], ids[0]]);
    assert!(
        list(Some("ns/none"), None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    // A limit of 0 means the default page, not nothing.
    assert_eq!(list(None, None, 0).await.expect("list").len(), 6);
}

/// The ids a filtered listing gives, newest first (pages of 2, to walk the cursor too).
async fn listed<S: Store>(
    s: &S,
    bridge: Option<&str>,
    status: Option<EventStatus>,
) -> Vec<EventId> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_events(EventQuery {
                bridge: bridge.map(str::to_string),
                status,
                limit: 2,
                before,
                ..Default::default()
            })
            .await
            .expect("list");
        out.extend(page.iter().map(|e| e.id));
        match page.last() {
            Some(last) if page.len() == 2 => before = Some(last.id),
            _ => return out,
        }
    }
}

/// Every filtered listing (bridge, status, both) against what the records say, and the
/// engine's own check of what it keeps beside them. `what` names the step in a failure.
async fn listings_agree<S: EngineHooks>(s: &S, what: &str) {
    if let Err(e) = s.check_event_index().await {
        panic!("after {what}: {e}");
    }
    let all = s
        .list_events(EventQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("list");
    let bridges: BTreeSet<String> = all.iter().map(|e| e.bridge.clone()).collect();
    let statuses = [
        EventStatus::Pending,
        EventStatus::Delivered,
        EventStatus::Dead,
        EventStatus::Filtered,
    ];
    let want = |b: Option<&str>, st: Option<EventStatus>| -> Vec<EventId> {
        all.iter()
            .filter(|e| b.is_none_or(|b| b == e.bridge) && st.is_none_or(|st| st == e.status))
            .map(|e| e.id)
            .collect()
    };
    for st in statuses {
        assert_eq!(
            listed(s, None, Some(st)).await,
            want(None, Some(st)),
            "after {what}: status {st:?}"
        );
    }
    for b in bridges.iter().map(String::as_str).chain(["ns/none"]) {
        assert_eq!(
            listed(s, Some(b), None).await,
            want(Some(b), None),
            "after {what}: bridge {b}"
        );
        for st in statuses {
            assert_eq!(
                listed(s, Some(b), Some(st)).await,
                want(Some(b), Some(st)),
                "after {what}: bridge {b} and status {st:?}"
            );
        }
    }
}

/// The filtered listings (the stores' secondary indexes) follow every write that changes an
/// event's status or removes it: deliveries, retries, dead letters, a 410, the steps
/// (done, filtered, fanned out), replays, purges, resumes, retention and imports.
pub async fn filtered_listings_follow_every_change_of_an_event<S: EngineHooks>(s: &S) {
    const DAY: u64 = 86_400_000;
    listings_agree(s, "nothing").await;
    let a = append(s, new_event("ns/a", T0, &["x", "y"])).await;
    let b = append(s, new_event("ns/b", T0 + 1, &["x"])).await;
    let c = append(s, new_event("ns/a", T0 + 2, &["x"])).await;
    let steps = append(s, new_steps_event("ns/b", T0 + 3)).await;
    let dropped = append(s, new_steps_event("ns/a", T0 + 4)).await;
    let fan = append(s, new_steps_event("ns/b", T0 + 5)).await;
    let mut filtered = new_event("ns/a", T0 + 6, &[]);
    filtered.record.status = EventStatus::Filtered;
    append(s, filtered).await;
    listings_agree(s, "appends").await;
    finish(
        s,
        key(a, 0),
        Some(attempt(T0, Some(200), None)),
        Next::Delivered,
    )
    .await;
    listings_agree(s, "one of two deliveries").await;
    finish(
        s,
        key(a, 1),
        Some(attempt(T0, Some(200), None)),
        Next::Delivered,
    )
    .await;
    listings_agree(s, "pending to delivered").await;
    finish(
        s,
        key(b, 0),
        Some(attempt(T0, Some(500), None)),
        Next::Retry { due_at_ms: T0 + 9 },
    )
    .await;
    listings_agree(s, "a retry").await;
    finish(
        s,
        key(b, 0),
        Some(attempt(T0, Some(500), None)),
        Next::Dead { reason: "x".into() },
    )
    .await;
    listings_agree(s, "pending to dead").await;
    finish(
        s,
        key(c, 0),
        Some(attempt(T0, Some(410), None)),
        Next::Paused,
    )
    .await;
    listings_agree(s, "a 410").await;
    finish(
        s,
        key(steps, JobTarget::Steps.slot()),
        Some(attempt(T0, Some(200), None)),
        Next::StepsDone {
            body: Bytes::from_static(b"{}"),
            jobs: vec![NewJob {
                target: JobTarget::destination(0, "x"),
                due_at_ms: T0,
            }],
        },
    )
    .await;
    listings_agree(s, "steps done").await;
    finish(
        s,
        key(dropped, JobTarget::Steps.slot()),
        Some(attempt(T0, Some(204), None)),
        Next::Filtered {
            reason: "dropped by a step".into(),
        },
    )
    .await;
    listings_agree(s, "filtered by a step").await;
    let mut child = new_event("ns/b", T0 + 5, &["x"]);
    child.record.id = child_id(fan, "0");
    child.record.parent = Some(fan);
    finish(
        s,
        key(fan, JobTarget::Steps.slot()),
        Some(attempt(T0, Some(200), None)),
        Next::FannedOut {
            children: vec![child],
        },
    )
    .await;
    listings_agree(s, "a fan-out").await;
    assert!(s.replay_event(a, T0 + 10).await.expect("replay") > 0);
    listings_agree(s, "delivered to pending by a replay").await;
    assert!(
        s.replay_dead("ns/b".into(), T0 + 10)
            .await
            .expect("replay dead")
            > 0
    );
    listings_agree(s, "dead to pending by replaying the dead letters").await;
    s.set_paused("ns/a".into(), "x".into(), false, T0 + 10)
        .await
        .expect("resume");
    listings_agree(s, "resuming a paused destination").await;
    assert!(s.purge("ns/a".into()).await.expect("purge") > 0);
    listings_agree(s, "pending to dead by a purge").await;
    // Everything finished is old enough to go: retention deletes it from the listings.
    let before = s
        .list_events(EventQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .len();
    let r = s
        .retain(
            Retention {
                max_age_ms: DAY,
                max_bytes: u64::MAX,
            },
            T0 + 2 * DAY,
        )
        .await
        .expect("retain");
    assert!(r.deleted_by_age > 0, "{r:?}");
    let after = s
        .list_events(EventQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .len();
    assert_eq!(after + r.deleted_by_age, before);
    listings_agree(s, "retention").await;
    // An import lands in the listings with its status as the other store had it.
    let mut imported = new_event("ns/c", T0 + 20, &["x"]);
    imported.record.status = EventStatus::Dead;
    imported
        .record
        .headers
        .push(("webhook-id".into(), "msg_imported".into()));
    let id = imported.record.id;
    let job = JobRecord {
        event: id,
        target: JobTarget::destination(0, "x"),
        bridge: "ns/c".into(),
        status: JobStatus::Dead,
        due_at_ms: T0 + 20,
        received_at_ms: T0 + 20,
        attempts: 1,
        attempts_at_queue: 0,
        last_error: Some("x".into()),
    };
    let detail = EventDetail {
        record: imported.record,
        body: imported.body,
        jobs: vec![(job, vec![attempt(T0 + 20, Some(500), None)])],
    };
    assert!(s.import_event(detail.clone()).await.expect("import"));
    assert!(
        !s.import_event(detail).await.expect("import again"),
        "an import runs again"
    );
    listings_agree(s, "an import").await;
    assert_eq!(
        listed(s, Some("ns/c"), Some(EventStatus::Dead)).await,
        vec![id]
    );
}

/// The time filter is on `received_at_ms` (since inclusive, until exclusive); the
/// webhook-id search finds events by their `webhook-id` header; both combine with the
/// other filters and the cursor.
pub async fn list_events_by_time_and_webhook_id<S: EngineHooks>(s: &S) {
    let mut ids = Vec::new();
    for i in 0..6u64 {
        let mut ev = new_event(
            if i % 2 == 0 { "ns/even" } else { "ns/odd" },
            T0 + i * 1000,
            &["x"],
        );
        // Two deliveries of the same message (a sender's retry, to two bridges), and others.
        let w = if i == 1 || i == 4 {
            "msg_twice".to_string()
        } else {
            format!("msg_{i}")
        };
        ev.record.headers.push(("Webhook-Id".into(), w));
        ids.push(append(s, ev).await);
    }
    let mut no_header = new_event("ns/even", T0 + 6000, &["x"]);
    no_header.record.headers.clear();
    ids.push(append(s, no_header).await);
    finish(s, key(ids[4], 0), None, Next::Dead { reason: "x".into() }).await;
    s.check_event_index()
        .await
        .expect("the index follows the records");
    let list = |q: EventQuery| async move {
        s.list_events(q)
            .await
            .expect("list")
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let q = |since: Option<u64>, until: Option<u64>, webhook: Option<&str>| EventQuery {
        since_ms: since,
        until_ms: until,
        webhook_id: webhook.map(str::to_string),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        list(q(Some(T0 + 2000), None, None)).await,
        vec![ids[6], ids[5], ids[4], ids[3], ids[2]]
    );
    assert_eq!(
        list(q(None, Some(T0 + 2000), None)).await,
        vec![ids[1], ids[0]],
        "until is exclusive"
    );
    assert_eq!(
        list(q(Some(T0 + 1000), Some(T0 + 3000), None)).await,
        vec![ids[2], ids[1]]
    );
    assert_eq!(
        list(q(Some(T0 + 1), Some(T0 + 999), None)).await,
        Vec::<EventId>::new()
    );
    assert_eq!(
        list(q(None, None, Some("msg_twice"))).await,
        vec![ids[4], ids[1]]
    );
    assert_eq!(list(q(None, None, Some("msg_3"))).await, vec![ids[3]]);
    assert_eq!(
        list(q(None, None, Some("msg_"))).await,
        Vec::<EventId>::new(),
        "exact, not a prefix"
    );
    assert_eq!(
        list(q(None, None, Some("msg_none"))).await,
        Vec::<EventId>::new()
    );
    // Combined with the other filters and with the cursor.
    let mut both = q(None, None, Some("msg_twice"));
    both.status = Some(EventStatus::Dead);
    assert_eq!(list(both.clone()).await, vec![ids[4]]);
    both.status = None;
    both.bridge = Some("ns/odd".into());
    assert_eq!(list(both).await, vec![ids[1]]);
    let mut after = q(Some(T0 + 3000), None, Some("msg_twice"));
    assert_eq!(list(after.clone()).await, vec![ids[4]]);
    after.since_ms = Some(T0 + 4001);
    assert_eq!(list(after).await, Vec::<EventId>::new());
    let mut bridge_time = q(Some(T0 + 1000), Some(T0 + 6000), None);
    bridge_time.bridge = Some("ns/even".into());
    assert_eq!(list(bridge_time.clone()).await, vec![ids[4], ids[2]]);
    bridge_time.before = Some(ids[4]);
    bridge_time.limit = 1;
    assert_eq!(list(bridge_time).await, vec![ids[2]]);
    let mut dead_since = q(Some(T0 + 4000), None, None);
    dead_since.status = Some(EventStatus::Dead);
    assert_eq!(list(dead_since).await, vec![ids[4]]);
}

pub async fn queue_depth_counts_queued_jobs_per_destination<S: Store>(s: &S) {
    let a = append(s, new_event("ns/b", T0, &["x", "y"])).await;
    let b = append(s, new_event("ns/b", T0 + 1, &["x", "y"])).await;
    append(s, new_event("ns/c", T0 + 2, &["x"])).await;
    let mut later = new_event("ns/c", T0 + 3, &["x"]);
    later.jobs[0].due_at_ms = T0 + 60_000;
    append(s, later).await;
    finish(s, key(a, 1), None, Next::Delivered).await;
    finish(
        s,
        key(b, 1),
        Some(attempt(T0, Some(500), None)),
        Next::Retry { due_at_ms: T0 + 5 },
    )
    .await;
    finish(
        s,
        key(b, 0),
        Some(attempt(T0, Some(410), None)),
        Next::Paused,
    )
    .await;
    assert_eq!(
        queue_of(s).await,
        vec![
            (("ns/b".into(), "x".into()), 1),
            (("ns/b".into(), "y".into()), 1),
            (("ns/c".into(), "x".into()), 2),
        ],
        "pending and retrying jobs count, delayed ones too; delivered and paused do not"
    );
}

// ------------------------------------------------------------------ streams

async fn stream<S: Store>(
    s: &S,
    after: Option<EventId>,
    before: Option<EventId>,
    limit: usize,
) -> StreamPage {
    s.stream_events(StreamRead {
        bridge: "ns/b".into(),
        after,
        before,
        limit,
    })
    .await
    .expect("stream_events")
}

fn ids(p: &StreamPage) -> Vec<EventId> {
    p.items.iter().map(|i| i.id).collect()
}

pub async fn stream_events_serve_what_passed_in_id_order<S: Store>(s: &S) {
    let a = append(s, new_event("ns/b", T0, &["d"])).await;
    append(s, new_event("ns/other", T0 + 1, &["d"])).await;
    let mut filtered = new_event("ns/b", T0 + 2, &[]);
    filtered.record.status = EventStatus::Filtered;
    append(s, filtered).await;
    let b = append(s, new_event("ns/b", T0 + 3, &["d"])).await;
    // Delivered or dead, an event that passed the filter is served.
    finish(
        s,
        key(b, 0),
        None,
        Next::Dead {
            reason: "gone".into(),
        },
    )
    .await;
    let steps = append(s, new_steps_event("ns/b", T0 + 4)).await;
    let c = append(s, new_event("ns/b", T0 + 5, &["d"])).await;

    let p = stream(s, None, None, 100).await;
    assert_eq!(ids(&p), vec![a, b], "the rest waits for the steps");
    assert_eq!(p.held, Some(steps));
    assert_eq!(&p.items[0].body[..], br#"{"n":1}"#);
    assert_eq!(p.items[0].received_at_ms, T0);
    let p = stream(s, None, None, 1).await;
    assert_eq!((ids(&p), p.held), (vec![a], None), "the limit");
    let p = stream(s, Some(a), None, 100).await;
    assert_eq!(ids(&p), vec![b], "after is exclusive");
    let p = stream(s, None, Some(b), 100).await;
    assert_eq!((ids(&p), p.held), (vec![a], None), "before is exclusive");

    // The steps finish: the event is served with the steps' body, then the rest.
    finish(
        s,
        key(steps, JobTarget::Steps.slot()),
        None,
        Next::StepsDone {
            body: Bytes::from_static(br#"{"tagged":true}"#),
            jobs: vec![],
        },
    )
    .await;
    let p = stream(s, Some(b), None, 100).await;
    assert_eq!((ids(&p), p.held), (vec![steps, c], None));
    assert_eq!(&p.items[0].body[..], br#"{"tagged":true}"#);

    // Steps that drop or fail leave the event out; a fan-out serves the children.
    let dropped = append(s, new_steps_event("ns/b", T0 + 6)).await;
    finish(
        s,
        key(dropped, JobTarget::Steps.slot()),
        None,
        Next::Filtered {
            reason: "dropped".into(),
        },
    )
    .await;
    let failed = append(s, new_steps_event("ns/b", T0 + 7)).await;
    finish(
        s,
        key(failed, JobTarget::Steps.slot()),
        None,
        Next::Dead {
            reason: "step failed".into(),
        },
    )
    .await;
    let parent = append(s, new_steps_event("ns/b", T0 + 8)).await;
    let mut child = new_event("ns/b", T0 + 8, &["d"]);
    child.record.id = child_id(parent, "0");
    child.record.parent = Some(parent);
    child.body = Bytes::from_static(br#"{"item":0}"#);
    let child_id = child.record.id;
    finish(
        s,
        key(parent, JobTarget::Steps.slot()),
        None,
        Next::FannedOut {
            children: vec![child],
        },
    )
    .await;
    let p = stream(s, Some(c), None, 100).await;
    assert_eq!((ids(&p), p.held), (vec![child_id], None));
    assert_eq!(&p.items[0].body[..], br#"{"item":0}"#);
}

fn subscription(bridge: &str, callback: &str, id: &str, at: u64) -> SubscriptionRecord {
    SubscriptionRecord {
        bridge: bridge.into(),
        callback: callback.into(),
        topic: format!("http://127.0.0.1:8080/hub/{bridge}"),
        id: id.into(),
        secret: Some(format!("secret of {id}")),
        lease_seconds: 60,
        created_at_ms: at,
        verified_at_ms: at,
        expires_at_ms: at + 60_000,
    }
}

/// WebSub subscriptions: one per (bridge, callback), a renewal replaces it whole, the
/// listing is ordered by bridge then callback (bytewise), a deletion names its id or not.
pub async fn subscriptions_put_renew_list_and_delete<S: Store>(s: &S) {
    assert!(s.subscriptions().await.expect("list").is_empty());
    let a = subscription("ns/b", "http://127.0.0.1:9/a", "s1", T0);
    let b = subscription("ns/b", "http://127.0.0.1:9/B", "s2", T0);
    let c = subscription("ns/a", "http://127.0.0.1:9/a", "s3", T0);
    for sub in [&a, &b, &c] {
        s.put_subscription(sub.clone()).await.expect("put");
    }
    assert_eq!(
        s.subscriptions().await.expect("list"),
        vec![c.clone(), b.clone(), a.clone()]
    );
    // A renewal: same bridge and callback, a new lease and secret; the id is kept.
    let mut renewed = a.clone();
    renewed.secret = Some("rotated".into());
    renewed.verified_at_ms = T0 + 1_000;
    renewed.expires_at_ms = T0 + 61_000;
    s.put_subscription(renewed.clone()).await.expect("renew");
    let listed = s.subscriptions().await.expect("list");
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], renewed);
    // A deletion naming another id leaves the stored one alone.
    assert!(
        !s.delete_subscription("ns/b".into(), a.callback.clone(), Some("old".into()))
            .await
            .expect("delete")
    );
    assert!(
        s.delete_subscription("ns/b".into(), a.callback.clone(), Some("s1".into()))
            .await
            .expect("delete")
    );
    assert!(
        !s.delete_subscription("ns/b".into(), a.callback.clone(), None)
            .await
            .expect("delete again"),
        "deleting what is gone says so"
    );
    assert!(
        s.delete_subscription("ns/a".into(), c.callback.clone(), None)
            .await
            .expect("delete")
    );
    assert_eq!(s.subscriptions().await.expect("list"), vec![b]);
}

/// A subscription's delivery job is a destination job whose slot follows the bridge's
/// destinations and whose name is not a destination's: stored, attempted and finished
/// like the others.
pub async fn subscription_jobs_live_beside_destination_jobs<S: Store>(s: &S) {
    let mut ev = new_event("ns/hub", T0, &["d"]);
    ev.jobs.push(NewJob {
        target: JobTarget::destination(1, "websub:0192abcd"),
        due_at_ms: T0,
    });
    let id = append(s, ev).await;
    let due = s
        .due_jobs(
            T0,
            10,
            Arc::new(|_: &JobKey| false),
            Arc::new(|_: &JobRecord| false),
        )
        .await
        .expect("due");
    let names: BTreeSet<String> = due
        .jobs
        .iter()
        .map(|j| j.target.label().to_string())
        .collect();
    assert_eq!(
        names,
        ["d", "websub:0192abcd"]
            .map(String::from)
            .into_iter()
            .collect::<BTreeSet<String>>()
    );
    finish(
        s,
        key(id, 1),
        Some(attempt(T0 + 5, Some(204), None)),
        Next::Delivered,
    )
    .await;
    let j = job(s, id, 1).await;
    assert_eq!(j.status, JobStatus::Delivered);
    assert_eq!(j.target.destination_name(), Some("websub:0192abcd"));
    let depth = s.queue_depth().await.expect("depth");
    assert_eq!(depth, vec![(("ns/hub".to_string(), "d".to_string()), 1)]);
}
