//! The store on PostgreSQL: the contract suite every engine passes, and what only a store
//! shared by several workers must do (claims and leases, migrations, one pool's data apart
//! from another's, keys and counters shared by every worker). A real server, started by
//! the tests (`common/postgres.rs`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use causeway_runtime::store::contract::{T0, new_event};
use causeway_runtime::store::postgres::{PostgresOptions, PostgresStore};
use causeway_runtime::store::{JobFilter, JobKey, JobUpdate, Next, Store, StoreError};
use common::postgres::{fresh_schema, psql, url};

async fn open(schema: &str) -> PostgresStore {
    PostgresStore::open(PostgresOptions::new(url(), schema))
        .await
        .expect("open the store")
}

async fn fresh() -> (PostgresStore, ()) {
    (open(&fresh_schema("contract")).await, ())
}

causeway_runtime::store_contract_tests!(fresh);

fn none<T>() -> JobFilter<T> {
    Arc::new(|_| false)
}

async fn open_with(schema: &str, lease: Duration) -> PostgresStore {
    let mut o = PostgresOptions::new(url(), schema);
    o.lease = lease;
    PostgresStore::open(o).await.expect("open the store")
}

fn keys(d: &causeway_runtime::store::DueJobs) -> Vec<JobKey> {
    d.jobs.iter().map(|j| j.key()).collect()
}

fn delivered(job: JobKey) -> JobUpdate {
    JobUpdate {
        job,
        attempt: None,
        next: Next::Delivered,
    }
}

// ------------------------------------------------------------------ migrations

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_starting_at_once_migrate_once() {
    let schema = fresh_schema("migrate");
    let (a, b, c) = tokio::join!(open(&schema), open(&schema), open(&schema));
    assert!(a.healthy() && b.healthy() && c.healthy());
    assert_eq!(
        psql(&format!(
            "SELECT string_agg(version::text, ',') FROM {schema}.schema_migrations"
        )),
        "1,2,3,4",
        "each migration applied once"
    );
    // All three see the same tables.
    a.append(new_event("ns/b", T0, &["d"]))
        .await
        .expect("append");
    assert_eq!(b.counts().await.expect("counts").events, 1);
    assert_eq!(c.counts().await.expect("counts").jobs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_worker_refuses_to_start() {
    let schema = fresh_schema("newer");
    drop(open(&schema).await);
    psql(&format!(
        "INSERT INTO {schema}.schema_migrations (version) VALUES (999)"
    ));
    let err = PostgresStore::open(PostgresOptions::new(url(), &schema))
        .await
        .err()
        .expect("a newer schema is refused");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{msg}");
    assert!(
        msg.contains("version 999") && msg.contains("newer than this worker"),
        "{msg}"
    );
    assert!(
        !msg.contains(&url()),
        "the URL (and its password) is never quoted: {msg}"
    );
}

/// A schema of version 1 (before the events index) with events in it: migration 2 adds
/// the indexes and fills `webhook_id` from the stored headers, so the search finds events
/// stored before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_indexes_the_events_a_version_1_schema_holds() {
    use causeway_runtime::store::contract::EngineHooks as _;
    use causeway_runtime::store::{EventQuery, EventStatus};
    let schema = fresh_schema("v1");
    let s = open(&schema).await;
    let mut with_id = new_event("ns/b", T0, &["d"]);
    with_id
        .record
        .headers
        .push(("webhook-id".into(), "msg_before".into()));
    let id = s.append(with_id).await.expect("append").id;
    s.append(new_event("ns/b", T0 + 1, &["d"]))
        .await
        .expect("append");
    drop(s);
    // Back to version 1, as a worker of that version left it.
    psql(&format!(
        "SET search_path = {schema};
         DROP INDEX events_status, events_bridge_status, events_webhook_id;
         ALTER TABLE events DROP COLUMN webhook_id;
         DROP TABLE breakers;
         DROP TABLE subscriptions;
         DELETE FROM schema_migrations WHERE version >= 2;"
    ));
    let s = open(&schema).await;
    assert_eq!(
        psql(&format!(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM {schema}.schema_migrations"
        )),
        "1,2,3,4"
    );
    s.check_event_index()
        .await
        .expect("webhook_id filled from the records");
    let found: Vec<_> = s
        .list_events(EventQuery {
            webhook_id: Some("msg_before".into()),
            status: Some(EventStatus::Pending),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(found, vec![id]);
    assert!(
        psql(&format!(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = '{schema}' AND indexname IN ('events_status', 'events_bridge_status', 'events_webhook_id')"
        )) == "3"
    );
}

// ------------------------------------------------------------------ claims and leases

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_job_goes_to_one_worker_until_its_lease_runs_out() {
    let schema = fresh_schema("claims");
    let a = open_with(&schema, Duration::from_secs(1)).await;
    let b = open_with(&schema, Duration::from_secs(1)).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            a.append(new_event("ns/b", T0 + n, &["d"]))
                .await
                .expect("append")
                .id,
        );
    }
    let first = a
        .claim_due(T0 + 10, 3, none(), none())
        .await
        .expect("claim");
    assert_eq!(first.jobs.len(), 3);
    let second = b
        .claim_due(T0 + 10, 10, none(), none())
        .await
        .expect("claim");
    assert_eq!(
        keys(&second),
        vec![JobKey {
            event: ids[3],
            index: 0
        }],
        "the other worker gets only what is not claimed"
    );
    // Claims are not reads: due_jobs passes over jobs leased to a worker.
    assert!(
        b.due_jobs(T0 + 10, 10, none(), none())
            .await
            .expect("due")
            .jobs
            .is_empty()
    );
    // A finished claim is gone; a released one is free at once.
    a.finish_attempt(delivered(first.jobs[0].key()))
        .await
        .expect("finish");
    a.release(vec![first.jobs[1].key()]).await.expect("release");
    let again = b
        .claim_due(T0 + 10, 10, none(), none())
        .await
        .expect("claim");
    assert_eq!(keys(&again), vec![first.jobs[1].key()]);
    // `a` stops renewing (as a worker that died would): its last claim runs out and the
    // other worker takes it. `a` renews every lease/3, so dropping it is what stops that.
    let orphan = first.jobs[2].key();
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = b
            .claim_due(T0 + 10, 10, none(), none())
            .await
            .expect("claim");
        if keys(&got).contains(&orphan) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease of a dead worker runs out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_worker_keeps_its_claims() {
    let schema = fresh_schema("renew");
    let a = open_with(&schema, Duration::from_secs(1)).await;
    let b = open_with(&schema, Duration::from_secs(1)).await;
    a.append(new_event("ns/b", T0, &["d"]))
        .await
        .expect("append");
    let got = a
        .claim_due(T0 + 1, 10, none(), none())
        .await
        .expect("claim");
    assert_eq!(got.jobs.len(), 1);
    // Three lease lengths: `a` renews its claim, so `b` never gets the job.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            b.claim_due(T0 + 1, 10, none(), none())
                .await
                .expect("claim")
                .jobs
                .is_empty(),
            "a claim held by a live worker is renewed"
        );
    }
    a.finish_attempt(delivered(got.jobs[0].key()))
        .await
        .expect("finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_pass_over_paused_destinations_and_suspended_bridges_of_any_worker() {
    let schema = fresh_schema("holds");
    let a = open(&schema).await;
    let b = open(&schema).await;
    a.append(new_event("ns/paused", T0, &["d", "e"]))
        .await
        .expect("append");
    let s = a
        .append(new_event("ns/suspended", T0 + 1, &["d"]))
        .await
        .expect("append")
        .id;
    a.set_paused("ns/paused".into(), "d".into(), true, T0)
        .await
        .expect("pause");
    a.set_suspended("ns/suspended".into(), Some(true))
        .await
        .expect("suspend");
    assert_eq!(
        b.paused().await.expect("paused"),
        vec![("ns/paused".to_string(), "d".to_string())]
    );
    assert_eq!(
        b.suspended().await.expect("suspended"),
        vec![("ns/suspended".to_string(), true)]
    );
    let got = b
        .claim_due(T0 + 10, 10, none(), none())
        .await
        .expect("claim");
    assert_eq!(
        got.jobs
            .iter()
            .map(|j| (j.bridge.as_str(), j.target.label()))
            .collect::<Vec<_>>(),
        vec![("ns/paused", "e")],
        "held by another worker's pause and suspension"
    );
    b.set_suspended("ns/suspended".into(), Some(false))
        .await
        .expect("resume");
    let got = a
        .claim_due(T0 + 10, 10, none(), none())
        .await
        .expect("claim");
    assert_eq!(keys(&got), vec![JobKey { event: s, index: 0 }]);
}

// ------------------------------------------------------------------ shared state

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_stores_one_event_across_workers() {
    let schema = fresh_schema("idem");
    let a = open(&schema).await;
    let b = open(&schema).await;
    let mut sent = Vec::new();
    for n in 0..20u64 {
        let mut ev = new_event("ns/b", T0 + n, &["d"]);
        ev.idempotency = Some(("msg-1".into(), T0 + 3_600_000));
        sent.push(if n % 2 == 0 {
            a.append(ev)
        } else {
            b.append(ev)
        });
    }
    let answers = futures::future::try_join_all(sent).await.expect("append");
    let firsts: std::collections::BTreeSet<_> = answers.iter().map(|x| x.id).collect();
    assert_eq!(firsts.len(), 1, "every answer names the one stored event");
    assert_eq!(answers.iter().filter(|x| !x.duplicate).count(), 1);
    let counts = a.counts().await.expect("counts");
    assert_eq!((counts.events, counts.jobs), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_are_atomic_across_workers() {
    let schema = fresh_schema("incr");
    let a = open(&schema).await;
    let b = open(&schema).await;
    let mut calls = Vec::new();
    for n in 0..60 {
        let s = if n % 2 == 0 { &a } else { &b };
        calls.push(s.kv_increment("ns/counter".into(), "hits".into(), 1));
    }
    let values = futures::future::try_join_all(calls)
        .await
        .expect("increment");
    let distinct: std::collections::BTreeSet<_> = values.iter().copied().collect();
    assert_eq!(distinct.len(), 60, "no two increments saw the same value");
    assert_eq!(
        b.kv_get("ns/counter".into(), "hits".into())
            .await
            .expect("get")
            .as_deref(),
        Some(&b"60"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_on_one_database_are_kept_apart() {
    let shop = open(&fresh_schema("shop")).await;
    let billing = open(&fresh_schema("billing")).await;
    let ev = shop
        .append(new_event("shop/orders", T0, &["d"]))
        .await
        .expect("append")
        .id;
    shop.finish_attempt(JobUpdate {
        job: JobKey {
            event: ev,
            index: 0,
        },
        attempt: None,
        next: Next::Dead { reason: "x".into() },
    })
    .await
    .expect("finish");
    shop.append(new_event("shop/orders", T0 + 1, &["d"]))
        .await
        .expect("append");
    assert!(
        billing
            .claim_due(T0 + 10, 10, none(), none())
            .await
            .expect("claim")
            .jobs
            .is_empty()
    );
    assert!(
        billing
            .list_events(Default::default())
            .await
            .expect("list")
            .is_empty()
    );
    assert!(billing.event(ev).await.expect("event").is_none());
    assert_eq!(
        billing
            .replay_dead("shop/orders".into(), T0 + 20)
            .await
            .expect("replay"),
        0
    );
    assert_eq!(billing.purge("shop/orders".into()).await.expect("purge"), 0);
    assert_eq!(shop.counts().await.expect("counts").jobs, 2);
    assert_eq!(
        shop.claim_due(T0 + 10, 10, none(), none())
            .await
            .expect("claim")
            .jobs
            .len(),
        1
    );
}

// ------------------------------------------------------------------ retention

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_days_and_keeps_a_day_with_pending_events() {
    use causeway_runtime::store::Retention;
    const DAY: u64 = 86_400_000;
    let schema = fresh_schema("days");
    let s = open(&schema).await;
    // Day 0: two finished events. Day 1: one finished, one pending. Day 5: finished, young.
    let mut finish = Vec::new();
    for (at, done) in [
        (T0, true),
        (T0 + 1, true),
        (T0 + DAY, true),
        (T0 + DAY + 1, false),
        (T0 + 5 * DAY, true),
    ] {
        let id = s
            .append(new_event("ns/b", at, &["d"]))
            .await
            .expect("append")
            .id;
        if done {
            finish.push(s.finish_attempt(delivered(JobKey {
                event: id,
                index: 0,
            })));
        }
    }
    futures::future::try_join_all(finish).await.expect("finish");
    let tables = |day: &str| {
        psql(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}' AND tablename LIKE '%\\_{day}'"
        ))
    };
    assert_eq!(tables("20250101"), "3", "events, jobs, attempts of day 0");
    let r = s
        .retain(
            Retention {
                max_age_ms: 3 * DAY,
                max_bytes: u64::MAX,
            },
            T0 + 6 * DAY,
        )
        .await
        .expect("retain");
    assert_eq!(r.deleted_by_age, 3, "{r:?}");
    assert_eq!(tables("20250101"), "0", "day 0 was dropped whole");
    assert_eq!(
        tables("20250102"),
        "3",
        "day 1 has a pending event: kept, its finished event deleted row by row"
    );
    assert_eq!(s.counts().await.expect("counts").events, 2);
    // The pending event of day 1 is still due.
    assert_eq!(
        s.due_jobs(T0 + 6 * DAY, 10, none(), none())
            .await
            .expect("due")
            .jobs
            .len(),
        1
    );
}

// ------------------------------------------------------------------ faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_refuses_writes_and_the_store_recovers_by_itself() {
    let server = common::postgres::OwnServer::start();
    let s = PostgresStore::open(PostgresOptions::new(&server.url, "faults"))
        .await
        .expect("open");
    let id = s
        .append(new_event("ns/b", T0, &["d"]))
        .await
        .expect("append")
        .id;
    server.stop();
    let err = s
        .append(new_event("ns/b", T0 + 1, &["d"]))
        .await
        .expect_err("no write while the database is down");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::Unavailable { .. } | StoreError::Database { .. }
        ),
        "{msg}"
    );
    assert!(msg.contains("127.0.0.1:"), "names the host: {msg}");
    let password = server.url.split(['@', ':']).nth(2).unwrap_or_default();
    assert!(!msg.contains(password), "never the password: {msg}");
    assert!(!s.healthy(), "readiness follows");
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !s.healthy() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store finds the database again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.append(new_event("ns/b", T0 + 2, &["d"]))
        .await
        .expect("writes again, without a restart");
    let ids: Vec<_> = s
        .list_events(Default::default())
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id), "what was acknowledged is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_before_its_database_waits_for_it() {
    let server = common::postgres::OwnServer::start();
    server.stop();
    let s = PostgresStore::open(PostgresOptions::new(&server.url, "late"))
        .await
        .expect("an unreachable database is not a start failure");
    assert!(!s.healthy());
    assert!(s.append(new_event("ns/b", T0, &["d"])).await.is_err());
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !s.healthy() {
        assert!(
            std::time::Instant::now() < deadline,
            "it migrates once the database answers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.append(new_event("ns/b", T0, &["d"]))
        .await
        .expect("append");
}

// ------------------------------------------------------------------ TLS

/// Healthy within a few seconds, or not.
async fn becomes_healthy(s: &PostgresStore) -> bool {
    for _ in 0..40 {
        if s.healthy() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_sslmode_as_libpq_spells_it() {
    let server = common::postgres::OwnServer::start();
    let ca = server.tls_only();
    let with = |q: &str| format!("{}?{q}", server.url);
    let try_open = |url: String| async move {
        let mut o = PostgresOptions::new(url, "tls");
        o.statement_timeout = Duration::from_secs(2);
        PostgresStore::open(o).await.expect("open")
    };
    // The server takes TLS only: a plain connection is refused.
    let plain = try_open(with("sslmode=disable")).await;
    assert!(!becomes_healthy(&plain).await, "hostssl refuses plain");
    // verify-full against the server's own CA.
    let checked = try_open(with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca.display()
    )))
    .await;
    assert!(becomes_healthy(&checked).await, "verify-full with the CA");
    checked
        .append(new_event("ns/b", T0, &["d"]))
        .await
        .expect("append over TLS");
    // verify-full against the web's roots: this CA is not one of them.
    let unknown = try_open(with("sslmode=verify-full")).await;
    assert!(!becomes_healthy(&unknown).await, "an unknown CA is refused");
    // require: encrypted, the certificate not checked (as libpq does).
    let required = try_open(with("sslmode=require")).await;
    assert!(becomes_healthy(&required).await, "require");
    assert_eq!(required.counts().await.expect("counts").events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_work_on_one_worker_wakes_the_others() {
    let schema = fresh_schema("notify");
    let a = open(&schema).await;
    let b = open(&schema).await;
    let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let woken = woken.clone();
        b.on_new_work(Arc::new(move || {
            woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    // The listener connects in the background: give it its first poll, then write on `a`.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        a.append(new_event("ns/b", T0, &["d"]))
            .await
            .expect("append");
        tokio::time::sleep(Duration::from_millis(300)).await;
        if woken.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b is woken by a's NOTIFY"
        );
    }
}
