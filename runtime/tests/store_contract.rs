//! The store contract suite (`causeway_runtime::store::contract`) on the embedded store, one
//! test per contract, each on a fresh store in a temp dir.

use causeway_runtime::store::embedded::EmbeddedStore;

async fn fresh() -> (EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), None).expect("open the store");
    (store, dir)
}

causeway_runtime::store_contract_tests!(fresh);

// ------------------------------------------------------------------ the v1 store fixture
//
// `fixtures/store-v1/events.redb` was written by the store as it was before the issue 13
// redesign (job records with the `u32::MAX` sentinel index for the steps job). These tests prove that a
// store written then still opens, reads back and delivers. They go through the public
// `Store` API only, never the table layout. See `fixtures/store-v1/README.md`. The worker
// delivering a v1 store's pending jobs is tested with the binary, in
// `cli/tests/store_v1.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use causeway_runtime::store::{
    AttemptRecord, EventId, EventQuery, EventRecord, EventStatus, JobKey, JobStatus, JobTarget,
    JobUpdate, NewEvent, NewJob, Next, Retention, Store, StoreCounts, child_id,
};

/// 2025-12-01T00:00:00Z: every time in the fixture counts from here.
const T: u64 = 1_764_547_200_000;
/// When the fixture's idempotency key expires: 2100-01-01.
const KEY_EXPIRES: u64 = 4_102_444_800_000;
const E1: &str = "019ad735-87e8-7000-8000-000000000001";
const E2: &str = "019ad735-8bd0-7000-8000-000000000002";
const E3: &str = "019ad735-8fb8-7000-8000-000000000003";
const E4: &str = "019ad735-93a0-7000-8000-000000000004";
const E5: &str = "019ad735-9788-7000-8000-000000000005";
const E6: &str = "019ad735-9b70-7000-8000-000000000006";
/// `child_id(E6, "0")`, as the fixture holds it.
const C6: &str = "019ad735-9b70-8961-8f55-255bf48dfaad";

fn id(s: &str) -> EventId {
    EventId::parse_str(s).expect("a fixture id")
}

fn fixture_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1/events.redb")
}

/// A copy of the fixture in `dir` (never the committed file: opening writes to it).
fn copy_fixture(dir: &Path) {
    std::fs::create_dir_all(dir).expect("store dir");
    std::fs::copy(fixture_file(), dir.join("events.redb")).expect("copy the fixture");
}

fn fixture_event(
    n: &str,
    bridge: &str,
    at: u64,
    body: &'static [u8],
    jobs: Vec<NewJob>,
) -> NewEvent {
    NewEvent {
        record: EventRecord {
            id: id(n),
            bridge: bridge.into(),
            received_at_ms: at,
            method: "POST".into(),
            query: "src=fixture".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-fixture".into(), "v1".into()),
            ],
            status: EventStatus::Pending,
            reason: None,
            body_bytes: body.len() as u64,
            parent: None,
            children: vec![],
            trace: None,
        },
        body: Bytes::from_static(body),
        jobs,
        idempotency: None,
    }
}

fn job(index: u32, destination: &str, due_at_ms: u64) -> NewJob {
    let target = if index == JobTarget::Steps.slot() {
        JobTarget::Steps
    } else {
        JobTarget::destination(index, destination)
    };
    NewJob { target, due_at_ms }
}

fn attempt(
    at_ms: u64,
    status_code: Option<u16>,
    response: &str,
    error: Option<&str>,
) -> AttemptRecord {
    AttemptRecord {
        at_ms,
        duration_ms: 7,
        status_code,
        response: response.into(),
        error: error.map(str::to_string),
        trace: None,
    }
}

/// Writes the fixture with the store's current code. Run by hand only, and only to make a
/// fixture of a new format (never to overwrite `store-v1`):
/// `STORE_FIXTURE_OUT=<dir> cargo test -p causeway-runtime --test store_contract -- --ignored write_store_fixture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a store fixture; see tests/fixtures/store-v1/README.md"]
async fn write_store_fixture() {
    let out = PathBuf::from(
        std::env::var("STORE_FIXTURE_OUT").expect("STORE_FIXTURE_OUT: where to write events.redb"),
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let s = EmbeddedStore::open(tmp.path(), None).expect("open");
    let finish = |job: JobKey, attempt: Option<AttemptRecord>, next: Next| {
        s.finish_attempt(JobUpdate { job, attempt, next })
    };
    // E1: a pending destination job, and a job paused by a 410 (which pauses `hold`);
    // it holds the idempotency key.
    let mut e1 = fixture_event(
        E1,
        "default/orders",
        T + 1000,
        br#"{"order":1}"#,
        vec![job(0, "sink", T + 1000), job(1, "hold", T + 1000)],
    );
    e1.idempotency = Some(("fixture-msg-1".into(), KEY_EXPIRES));
    s.append(e1).await.expect("append");
    finish(
        JobKey {
            event: id(E1),
            index: 1,
        },
        Some(attempt(T + 1500, Some(410), "gone", None)),
        Next::Paused,
    )
    .await
    .expect("finish");
    // E2: a pending steps job.
    let e2 = fixture_event(
        E2,
        "default/enrich",
        T + 2000,
        br#"{"order":2}"#,
        vec![job(JobTarget::Steps.slot(), "", T + 2000)],
    );
    s.append(e2).await.expect("append");
    // E3: dead after a retry.
    s.append(fixture_event(
        E3,
        "default/orders",
        T + 3000,
        br#"{"order":3}"#,
        vec![job(0, "sink", T + 3000)],
    ))
    .await
    .expect("append");
    let k3 = JobKey {
        event: id(E3),
        index: 0,
    };
    finish(
        k3,
        Some(attempt(T + 3100, Some(503), "busy", None)),
        Next::Retry {
            due_at_ms: T + 3500,
        },
    )
    .await
    .expect("finish");
    finish(
        k3,
        Some(attempt(T + 3600, Some(503), "busy", None)),
        Next::Dead {
            reason: "retries exhausted: status 503".into(),
        },
    )
    .await
    .expect("finish");
    // E4: delivered.
    s.append(fixture_event(
        E4,
        "default/orders",
        T + 4000,
        br#"{"order":4}"#,
        vec![job(0, "sink", T + 4000)],
    ))
    .await
    .expect("append");
    finish(
        JobKey {
            event: id(E4),
            index: 0,
        },
        Some(attempt(T + 4100, Some(200), "ok", None)),
        Next::Delivered,
    )
    .await
    .expect("finish");
    // E5: retrying after a transport error.
    s.append(fixture_event(
        E5,
        "default/orders",
        T + 5000,
        br#"{"order":5}"#,
        vec![job(0, "sink", T + 5000)],
    ))
    .await
    .expect("append");
    finish(
        JobKey {
            event: id(E5),
            index: 0,
        },
        Some(attempt(T + 5100, None, "", Some("connection refused"))),
        Next::Retry {
            due_at_ms: T + 6000,
        },
    )
    .await
    .expect("finish");
    // E6: its steps fanned it out into one child with a pending job.
    let e6 = fixture_event(
        E6,
        "default/enrich",
        T + 6000,
        br#"[{"item":0}]"#,
        vec![job(JobTarget::Steps.slot(), "", T + 6000)],
    );
    s.append(e6).await.expect("append");
    let mut child = fixture_event(
        E6,
        "default/enrich",
        T + 6000,
        br#"{"item":0}"#,
        vec![job(0, "out", T + 6000)],
    );
    child.record.id = child_id(id(E6), "0");
    child.record.parent = Some(id(E6));
    child.record.headers.retain(|(n, _)| n != "content-type");
    println!("child of E6: {}", child.record.id);
    finish(
        JobKey {
            event: id(E6),
            index: JobTarget::Steps.slot(),
        },
        Some(attempt(T + 6100, Some(200), "", None)),
        Next::FannedOut {
            children: vec![child],
        },
    )
    .await
    .expect("finish");
    // Plugin keyvalue.
    s.kv_set("default/tagger".into(), "count".into(), b"42".to_vec())
        .await
        .expect("kv_set");
    s.kv_set("default/tagger".into(), "seen/1".into(), b"yes".to_vec())
        .await
        .expect("kv_set");
    let path = tmp.path().join("events.redb");
    drop(s);
    // Close it cleanly (the writer thread lets go of it shortly after the last handle),
    // and compact it so that the fixture is small.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut db = loop {
        match redb::Database::open(&path) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot reopen {}: {e}", path.display()),
        }
    };
    while db.compact().expect("compact") {}
    drop(db);
    std::fs::create_dir_all(&out).expect("out dir");
    std::fs::copy(&path, out.join("events.redb")).expect("copy");
}

/// Every record of the fixture reads back through the `Store` API, as it was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_fixture_opens_and_reads_back() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_fixture(tmp.path());
    let s = EmbeddedStore::open(tmp.path(), None).expect("the v1 store opens");
    assert!(s.healthy());
    assert_eq!(
        s.counts().await.expect("counts"),
        StoreCounts {
            events: 7,
            jobs: 8,
            attempts: 6,
            idempotency_keys: 1
        }
    );
    // Events, newest first, with their status and reason.
    let events = s
        .list_events(EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    let summary: Vec<(EventId, &str, EventStatus, Option<&str>)> = events
        .iter()
        .map(|e| (e.id, e.bridge.as_str(), e.status, e.reason.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (id(C6), "default/enrich", EventStatus::Pending, None),
            (
                id(E6),
                "default/enrich",
                EventStatus::Delivered,
                Some("fanned out into 1 events")
            ),
            (id(E5), "default/orders", EventStatus::Pending, None),
            (id(E4), "default/orders", EventStatus::Delivered, None),
            (
                id(E3),
                "default/orders",
                EventStatus::Dead,
                Some("retries exhausted: status 503")
            ),
            (id(E2), "default/enrich", EventStatus::Pending, None),
            (id(E1), "default/orders", EventStatus::Pending, None),
        ]
    );
    // One event in full: record, body, jobs with their targets, attempts.
    let e1 = s.event(id(E1)).await.expect("event").expect("E1");
    assert_eq!(
        e1.record,
        EventRecord {
            id: id(E1),
            bridge: "default/orders".into(),
            received_at_ms: T + 1000,
            method: "POST".into(),
            query: "src=fixture".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-fixture".into(), "v1".into()),
            ],
            status: EventStatus::Pending,
            reason: None,
            body_bytes: 11,
            parent: None,
            children: vec![],
            trace: None,
        }
    );
    assert_eq!(&e1.body[..], br#"{"order":1}"#);
    let jobs: Vec<_> = e1
        .jobs
        .iter()
        .map(|(j, _)| {
            (
                j.slot(),
                j.target.destination_name().unwrap_or_default(),
                j.status,
                j.due_at_ms,
                j.attempts,
                j.last_error.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        jobs,
        vec![
            (0, "sink", JobStatus::Pending, T + 1000, 0, None),
            (
                1,
                "hold",
                JobStatus::Paused,
                T + 1000,
                1,
                Some("status 410")
            ),
        ]
    );
    assert!(e1.jobs[0].1.is_empty());
    assert_eq!(
        e1.jobs[1].1,
        vec![attempt(T + 1500, Some(410), "gone", None)]
    );
    for (j, _) in &e1.jobs {
        assert_eq!(
            (
                j.event,
                j.bridge.as_str(),
                j.received_at_ms,
                j.attempts_at_queue
            ),
            (id(E1), "default/orders", T + 1000, 0)
        );
    }
    // The steps job.
    let e2 = s.event(id(E2)).await.expect("event").expect("E2");
    assert_eq!(&e2.body[..], br#"{"order":2}"#);
    assert_eq!(e2.jobs.len(), 1);
    let (steps, attempts) = &e2.jobs[0];
    assert_eq!(
        (
            steps.slot(),
            steps.target.destination_name().unwrap_or_default()
        ),
        (JobTarget::Steps.slot(), ""),
        "the steps job"
    );
    assert_eq!(
        (steps.status, steps.due_at_ms, steps.attempts),
        (JobStatus::Pending, T + 2000, 0)
    );
    assert!(attempts.is_empty());
    // A dead job with its two attempts.
    let e3 = s.event(id(E3)).await.expect("event").expect("E3");
    let (dead, attempts) = &e3.jobs[0];
    assert_eq!((dead.status, dead.attempts), (JobStatus::Dead, 2));
    assert_eq!(
        dead.last_error.as_deref(),
        Some("retries exhausted: status 503")
    );
    assert_eq!(
        attempts,
        &vec![
            attempt(T + 3100, Some(503), "busy", None),
            attempt(T + 3600, Some(503), "busy", None)
        ]
    );
    // Delivered, and retrying after a transport error.
    let e4 = s.event(id(E4)).await.expect("event").expect("E4");
    assert_eq!(
        (e4.jobs[0].0.status, e4.jobs[0].0.last_error.as_deref()),
        (JobStatus::Delivered, None)
    );
    assert_eq!(e4.jobs[0].1, vec![attempt(T + 4100, Some(200), "ok", None)]);
    let e5 = s.event(id(E5)).await.expect("event").expect("E5");
    let (retrying, attempts) = &e5.jobs[0];
    assert_eq!(
        (retrying.status, retrying.due_at_ms, retrying.attempts),
        (JobStatus::Retrying, T + 6000, 1)
    );
    assert_eq!(retrying.last_error.as_deref(), Some("connection refused"));
    assert_eq!(
        attempts,
        &vec![attempt(T + 5100, None, "", Some("connection refused"))]
    );
    // A fan-out: the parent's steps job is done, the child has its own job.
    let e6 = s.event(id(E6)).await.expect("event").expect("E6");
    assert_eq!(e6.record.children, vec![id(C6)]);
    assert_eq!(
        (e6.jobs[0].0.slot(), e6.jobs[0].0.status),
        (JobTarget::Steps.slot(), JobStatus::Delivered)
    );
    let c6 = s.event(id(C6)).await.expect("event").expect("C6");
    assert_eq!(c6.record.parent, Some(id(E6)));
    assert_eq!(&c6.body[..], br#"{"item":0}"#);
    assert_eq!(
        c6.record.headers,
        vec![("x-fixture".to_string(), "v1".to_string())]
    );
    let (out, _) = &c6.jobs[0];
    assert_eq!(
        (
            out.slot(),
            out.target.destination_name().unwrap_or_default(),
            out.status,
            out.bridge.as_str()
        ),
        (0, "out", JobStatus::Pending, "default/enrich")
    );
    // The due queue: the pending jobs, oldest due first; the paused one is not in it.
    let due = s
        .due_jobs(T + 10_000, 100, none(), none())
        .await
        .expect("due_jobs");
    assert!(
        due.undecodable.is_empty(),
        "every job record decodes: {:?}",
        due.undecodable
    );
    let keys: Vec<(EventId, u32)> = due.jobs.iter().map(|j| (j.event, j.slot())).collect();
    assert_eq!(
        keys,
        vec![
            (id(E1), 0),
            (id(E2), JobTarget::Steps.slot()),
            (id(E5), 0),
            (id(C6), 0)
        ]
    );
    assert_eq!(due.next_due_ms, None);
    let early = s
        .due_jobs(T + 1500, 100, none(), none())
        .await
        .expect("due_jobs");
    assert_eq!(early.jobs.len(), 1);
    assert_eq!(early.next_due_ms, Some(T + 2000));
    // Queued per destination (the steps job counts under whatever name the store gives it).
    let depth = s.queue_depth().await.expect("queue_depth");
    assert_eq!(depth.iter().map(|(_, n)| n).sum::<u64>(), 4, "{depth:?}");
    assert!(
        depth.contains(&(("default/orders".into(), "sink".into()), 2)),
        "{depth:?}"
    );
    assert!(
        depth.contains(&(("default/enrich".into(), "out".into()), 1)),
        "{depth:?}"
    );
    // Paused destinations, keyvalue, idempotency.
    assert_eq!(
        s.paused().await.expect("paused"),
        vec![("default/orders".to_string(), "hold".to_string())]
    );
    assert_eq!(
        s.kv_list("default/tagger".into()).await.expect("kv_list"),
        vec!["count", "seen/1"]
    );
    assert_eq!(
        s.kv_get("default/tagger".into(), "count".into())
            .await
            .expect("kv_get")
            .as_deref(),
        Some(&b"42"[..])
    );
    assert_eq!(
        s.kv_get("default/tagger".into(), "seen/1".into())
            .await
            .expect("kv_get")
            .as_deref(),
        Some(&b"yes"[..])
    );
    let mut again = fixture_event(
        E1,
        "default/orders",
        crate::now(),
        br#"{"order":1}"#,
        vec![job(0, "sink", 0)],
    );
    again.record.id = EventId::now_v7();
    again.idempotency = Some(("fixture-msg-1".into(), KEY_EXPIRES));
    let a = s.append(again).await.expect("append");
    assert!(a.duplicate, "the fixture's key is still held");
    assert_eq!(a.id, id(E1));
}

fn none<T>() -> causeway_runtime::store::JobFilter<T> {
    std::sync::Arc::new(|_| false)
}

fn now() -> u64 {
    causeway_runtime::store::now_ms()
}

/// The fixture takes every kind of write: its jobs finish, its paused destination resumes,
/// its dead letters replay, retention deletes its old events, keyvalue keeps its quota count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_fixture_takes_writes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_fixture(tmp.path());
    let s = EmbeddedStore::open(tmp.path(), None).expect("the v1 store opens");
    let finish = |event: &str, index: u32, next: Next| {
        s.finish_attempt(JobUpdate {
            job: JobKey {
                event: id(event),
                index,
            },
            attempt: Some(attempt(T + 20_000, Some(200), "ok", None)),
            next,
        })
    };
    // The steps job runs, and its delivery job follows.
    finish(
        E2,
        JobTarget::Steps.slot(),
        Next::StepsDone {
            body: Bytes::from_static(br#"{"order":2,"tagged":true}"#),
            jobs: vec![job(0, "out", T + 2000)],
        },
    )
    .await
    .expect("steps done");
    let e2 = s.event(id(E2)).await.expect("event").expect("E2");
    assert_eq!(&e2.body[..], br#"{"order":2,"tagged":true}"#);
    assert_eq!(
        e2.jobs
            .iter()
            .map(|(j, _)| (j.slot(), j.status))
            .collect::<Vec<_>>(),
        vec![
            (0, JobStatus::Pending),
            (JobTarget::Steps.slot(), JobStatus::Delivered)
        ]
    );
    finish(E2, 0, Next::Delivered).await.expect("finish");
    assert_eq!(
        s.event(id(E2))
            .await
            .expect("event")
            .expect("E2")
            .record
            .status,
        EventStatus::Delivered
    );
    // The pending and the retrying job are delivered.
    finish(E1, 0, Next::Delivered).await.expect("finish");
    let r = finish(E5, 0, Next::Delivered).await.expect("finish");
    assert_eq!((r.attempts, r.last_error.as_deref()), (2, None));
    // The paused destination resumes with its job.
    assert_eq!(
        s.set_paused("default/orders".into(), "hold".into(), false, T + 21_000)
            .await
            .expect("resume"),
        1
    );
    assert!(s.paused().await.expect("paused").is_empty());
    let due = s
        .due_jobs(T + 21_000, 100, none(), none())
        .await
        .expect("due_jobs");
    let keys: Vec<(EventId, u32)> = due.jobs.iter().map(|j| (j.event, j.slot())).collect();
    assert_eq!(keys, vec![(id(C6), 0), (id(E1), 1)]);
    finish(E1, 1, Next::Delivered).await.expect("finish");
    assert_eq!(
        s.event(id(E1))
            .await
            .expect("event")
            .expect("E1")
            .record
            .status,
        EventStatus::Delivered
    );
    // Dead letters replay.
    assert_eq!(
        s.replay_dead("default/orders".into(), T + 22_000)
            .await
            .expect("replay_dead"),
        1
    );
    assert_eq!(
        s.event(id(E3))
            .await
            .expect("event")
            .expect("E3")
            .record
            .status,
        EventStatus::Pending
    );
    // Retention by age deletes the finished ones (E1, E2, E4, E5, E6) and nothing pending.
    let r = s
        .retain(
            Retention {
                max_age_ms: 7 * 86_400_000,
                max_bytes: u64::MAX,
            },
            T + 30 * 86_400_000,
        )
        .await
        .expect("retain");
    assert_eq!((r.deleted_by_age, r.expired_keys), (5, 0), "{r:?}");
    let left: Vec<EventId> = s
        .list_events(EventQuery::default())
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec![id(C6), id(E3)]);
    // Keyvalue counts what the fixture holds against the quota (5 + 2 + 6 + 3 bytes).
    s.set_kv_quota(16 + 10);
    s.kv_set("default/tagger".into(), "k".into(), vec![0; 9])
        .await
        .expect("up to the quota");
    let err = s
        .kv_set("default/tagger".into(), "k2".into(), vec![0; 1])
        .await
        .expect_err("past the quota");
    assert!(
        matches!(err, causeway_runtime::store::StoreError::Quota { .. }),
        "{err}"
    );
}

/// The fixture was written before the events index: opening builds it from the records,
/// once, so filtered listings (which read only the index) find the fixture's events, and
/// it follows the writes that come after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_fixture_gets_the_events_index_on_open() {
    use causeway_runtime::store::contract::EngineHooks as _;
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_fixture(tmp.path());
    let listed = |s: &EmbeddedStore, bridge: Option<&str>, status: Option<EventStatus>| {
        let f = s.list_events(EventQuery {
            bridge: bridge.map(str::to_string),
            status,
            limit: 100,
            ..Default::default()
        });
        async move {
            f.await
                .expect("list")
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    {
        let s = EmbeddedStore::open(tmp.path(), None).expect("the v1 store opens");
        s.check_event_index()
            .await
            .expect("the index is built on open");
        assert_eq!(
            listed(&s, Some("default/orders"), Some(EventStatus::Pending)).await,
            vec![id(E5), id(E1)]
        );
        assert_eq!(
            listed(&s, None, Some(EventStatus::Dead)).await,
            vec![id(E3)]
        );
        assert_eq!(
            listed(&s, None, Some(EventStatus::Delivered)).await,
            vec![id(E6), id(E4)]
        );
        assert_eq!(
            listed(&s, Some("default/enrich"), None).await,
            vec![id(C6), id(E6), id(E2)]
        );
        // A write after the upgrade moves E5 from pending to delivered in the index.
        s.finish_attempt(JobUpdate {
            job: JobKey {
                event: id(E5),
                index: 0,
            },
            attempt: Some(attempt(T + 7000, Some(200), "ok", None)),
            next: Next::Delivered,
        })
        .await
        .expect("finish");
        s.check_event_index().await.expect("the index follows");
    }
    // Opened again, the index is there (built once) and still right.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let s = loop {
        match EmbeddedStore::open(tmp.path(), None) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    s.check_event_index()
        .await
        .expect("the index after reopening");
    assert_eq!(
        listed(&s, Some("default/orders"), Some(EventStatus::Delivered)).await,
        vec![id(E5), id(E4)]
    );
}
