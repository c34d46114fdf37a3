//! Several `causeway up --postgres` workers on one database, as a pool of replicas runs:
//! one killed mid-load loses nothing, the database stopped mid-load loses nothing and gets
//! no 202 while it is down, an idempotency key holds across workers, and every worker
//! shows the whole event log. A real server, started by the tests (`common/postgres.rs`).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

fn bridge(sink: &Sink) -> String {
    format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: load}}
spec:
  destinations:
  - name: sink
    url: "{url}"
    retries: 20
    backoff: {{policy: fixed, delays: [200ms]}}
"#,
        url = sink.url("/load")
    )
}

fn pg_args<'a>(url: &'a str, schema: &'a str) -> Vec<&'a str> {
    vec![
        "--postgres",
        url,
        "--postgres-schema",
        schema,
        "--postgres-lease",
        "3s",
    ]
}

/// Ids the sink received, with how often.
fn received_ids(sink: &Sink) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in sink.requests("/load") {
        if let Some(id) = r
            .headers
            .get("causeway-event-id")
            .and_then(|v| v.to_str().ok())
        {
            *seen.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    seen
}

async fn wait_all(sink: &Sink, ids: &HashSet<String>, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = received_ids(sink);
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !seen.contains_key(*id))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Post one event; the id when it was acknowledged with 202, else the status (0: no answer).
async fn send(c: &reqwest::Client, url: &str, body: String) -> Result<String, u16> {
    match c
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) if r.status().as_u16() == 202 => {
            let v: serde_json::Value = r.json().await.map_err(|_| 0u16)?;
            v["id"].as_str().map(str::to_string).ok_or(0)
        }
        Ok(r) => Err(r.status().as_u16()),
        Err(_) => Err(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_the_load_and_a_killed_one_loses_nothing() {
    const EVENTS: usize = 3000;
    const IN_FLIGHT: usize = 24;
    let url = postgres::url();
    let schema = postgres::fresh_schema("replicas");
    let sink = Sink::ok().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let m = manifests(dirs[0].path(), &bridge(&sink));
    let args = pg_args(&url, &schema);
    let workers: Vec<Arc<Mutex<Worker>>> = dirs
        .iter()
        .map(|d| Arc::new(Mutex::new(Worker::start(d.path(), &m, &args))))
        .collect();
    let urls: Vec<String> = workers
        .iter()
        .map(|w| w.lock().unwrap().url("/hooks/default/load"))
        .collect();
    let c = client();
    let acked: Arc<Mutex<HashSet<String>>> = Default::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (c, urls, acked, refused, next) = (
            c.clone(),
            urls.clone(),
            acked.clone(),
            refused.clone(),
            next.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= EVENTS {
                    return;
                }
                match send(&c, &urls[i % 3], format!(r#"{{"seq":{i}}}"#)).await {
                    Ok(id) => {
                        acked.lock().unwrap().insert(id);
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    // A third of the way in, SIGKILL worker 1, and start it again a little later.
    while next.load(Ordering::SeqCst) < EVENTS / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers[1].lock().unwrap().kill9();
    while next.load(Ordering::SeqCst) < EVENTS / 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let w1 = workers[1].clone();
    tokio::task::spawn_blocking(move || w1.lock().unwrap().spawn())
        .await
        .unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let missing = wait_all(&sink, &acked, Duration::from_secs(120)).await;
    let seen = received_ids(&sink);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "three workers: {} acknowledged, {} refused while worker 1 was down, {} delivered twice or more",
        acked.len(),
        refused.load(Ordering::SeqCst),
        duplicates
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged events never reached the sink, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        workers[1].lock().unwrap().log_text()
    );
    assert!(
        acked.len() >= EVENTS * 2 / 3,
        "most events were acknowledged: {}",
        acked.len()
    );
    // The event log is the pool's: every worker lists every acknowledged event, and shows
    // the attempts another worker made.
    for w in &workers {
        let admin = w.lock().unwrap().admin_url("/api/v1/events?limit=10000");
        let listed = get_json(&c, &admin).await;
        let ids: HashSet<String> = listed["events"]
            .as_array()
            .expect("an event list")
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect();
        assert!(
            acked.is_subset(&ids),
            "{} acknowledged events missing from one worker's list",
            acked.difference(&ids).count()
        );
    }
    let one = acked.iter().next().unwrap();
    for w in &workers {
        let url = w
            .lock()
            .unwrap()
            .admin_url(&format!("/api/v1/events/{one}"));
        let ev = get_json(&c, &url).await;
        assert_eq!(ev["status"], "delivered", "{ev}");
        assert!(
            ev["deliveries"][0]["attempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{ev}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_mid_load_gets_no_202_and_loses_nothing() {
    let server = postgres::OwnServer::start();
    let sink = Sink::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), &bridge(&sink));
    let mut w = Worker::start(dir.path(), &m, &pg_args(&server.url, "outage"));
    let url = w.url("/hooks/default/load");
    let c = client();
    let acked: Arc<Mutex<HashSet<String>>> = Default::default();
    let down = Arc::new(AtomicBool::new(false));
    let acked_while_down = Arc::new(AtomicUsize::new(0));
    let statuses: Arc<Mutex<HashMap<u16, usize>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for t in 0..8 {
        let (c, url, acked, down, acked_while_down, statuses, stop) = (
            c.clone(),
            url.clone(),
            acked.clone(),
            down.clone(),
            acked_while_down.clone(),
            statuses.clone(),
            stop.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 2000 {
                i += 1;
                // Read before sending: a 202 that began after the stop finished is a bug.
                let was_down = down.load(Ordering::SeqCst);
                match send(&c, &url, format!(r#"{{"t":{t},"i":{i}}}"#)).await {
                    Ok(id) => {
                        if was_down && down.load(Ordering::SeqCst) {
                            acked_while_down.fetch_add(1, Ordering::SeqCst);
                        }
                        acked.lock().unwrap().insert(id);
                    }
                    Err(s) => *statuses.lock().unwrap().entry(s).or_insert(0) += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.stop();
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let ready = blocking_get(&w.admin_url("/readyz")).map(|r| r.0);
    down.store(false, Ordering::SeqCst);
    server.restart();
    // The worker finds the database again by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while blocking_get(&w.admin_url("/readyz")).map(|r| r.0) != Ok(200) {
        assert!(Instant::now() < deadline, "{}", w.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    eprintln!("outage: statuses other than 202: {statuses:?}");
    assert_eq!(ready, Ok(503), "not ready while the database is down");
    assert_eq!(
        acked_while_down.load(Ordering::SeqCst),
        0,
        "no 202 while the database is down"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "refused with 503: {statuses:?}"
    );
    assert!(
        statuses.keys().all(|s| *s == 503),
        "only 503s: {statuses:?}"
    );
    let acked = acked.lock().unwrap().clone();
    let missing = wait_all(&sink, &acked, Duration::from_secs(60)).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost\n{}",
        missing.len(),
        w.log_text()
    );
    let log = w.log_text();
    assert!(log.contains("postgres unreachable"), "{log}");
    let password = server.url.split(['@', ':']).nth(2).unwrap_or("none");
    assert!(
        !log.contains(password),
        "the password never reaches the log"
    );
    w.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_holds_across_workers() {
    let url = postgres::url();
    let schema = postgres::fresh_schema("idem_http");
    let sink = Sink::ok().await;
    let (d0, d1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m = manifests(d0.path(), &bridge(&sink));
    let a = Worker::start(d0.path(), &m, &pg_args(&url, &schema));
    let b = Worker::start(d1.path(), &m, &pg_args(&url, &schema));
    let c = client();
    let hdr = [("webhook-id", "msg_2f1")];
    let (sa, va) = post(&c, &a.url("/hooks/default/load"), r#"{"n":1}"#, &hdr).await;
    let (sb, vb) = post(&c, &b.url("/hooks/default/load"), r#"{"n":1}"#, &hdr).await;
    assert_eq!((sa, sb), (202, 202));
    assert_eq!(
        va["id"], vb["id"],
        "the second worker answers the first event"
    );
    assert_eq!(stored_events(&c, &a).await, 1);
    assert_eq!(stored_events(&c, &b).await, 1);
    assert_eq!(sink.wait_for("/load", 1, Duration::from_secs(20)).await, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.count("/load"), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_moves_from_embedded_to_postgres_without_losing_a_queued_job() {
    let failing = Arc::new(AtomicBool::new(true));
    let sink = {
        let failing = failing.clone();
        Sink::start(move |_, _| {
            if failing.load(Ordering::SeqCst) {
                (503, vec![])
            } else {
                (200, vec![])
            }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), &bridge(&sink));
    // On the embedded store: ten events, every attempt refused, so all are queued.
    let mut w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let mut ids = HashSet::new();
    for i in 0..10 {
        let (s, v) = post(
            &c,
            &w.url("/hooks/default/load"),
            &format!(r#"{{"i":{i}}}"#),
            &[],
        )
        .await;
        assert_eq!(s, 202);
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert!(sink.wait_for("/load", 10, Duration::from_secs(20)).await >= 10);
    assert!(w.terminate().success());
    // Move: export the embedded store, import it into the pool's schema, twice.
    let bin = env!("CARGO_BIN_EXE_causeway");
    let export = std::process::Command::new(bin)
        .args(["store", "export", "--data-dir"])
        .arg(&w.data_dir)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert!(
        String::from_utf8_lossy(&export.stderr).contains("10 events (10 queued jobs)"),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let url = postgres::url();
    let schema = postgres::fresh_schema("moved");
    let import = |input: &[u8]| {
        use std::io::Write;
        let mut child = std::process::Command::new(bin)
            .args([
                "store",
                "import",
                "--postgres",
                &url,
                "--postgres-schema",
                &schema,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(import(&export.stdout).contains("imported 10 events (10 queued jobs)"));
    assert!(
        import(&export.stdout).contains("10 events were already there"),
        "an import runs again without doubling"
    );
    // The pool on postgres delivers every queued job, its earlier attempts kept.
    failing.store(false, Ordering::SeqCst);
    let dir2 = tempfile::tempdir().unwrap();
    let w2 = Worker::start(dir2.path(), &m, &pg_args(&url, &schema));
    // (The sink saw every id already, answering 503: wait for each to be delivered.)
    let mut last = serde_json::Value::Null;
    for id in &ids {
        last = wait_status(&c, &w2, id, "delivered", Duration::from_secs(30)).await;
        assert_eq!(last["status"], "delivered", "{last}\n{}", w2.log_text());
    }
    let ev = last;
    let attempts = ev["deliveries"][0]["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "the refused attempts moved too: {ev}");
    assert_eq!(attempts[0]["statusCode"], 503, "{ev}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_before_its_database_stays_up_unready_and_recovers() {
    let server = postgres::OwnServer::start();
    server.stop();
    let sink = Sink::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), &bridge(&sink));
    // The URL as a Secret file gives it: with a trailing newline.
    let url = format!("{}\n", server.url);
    let mut w = Worker::start_unready(dir.path(), &m, &pg_args(&url, "late_worker"));
    // Up (the admin API answers, health is live) but not ready, and no crash.
    let deadline = Instant::now() + Duration::from_secs(30);
    while blocking_get(&w.admin_url("/healthz")).map(|r| r.0) != Ok(200) {
        assert!(Instant::now() < deadline, "{}", w.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        w.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the worker stays up: {}",
        w.log_text()
    );
    assert_eq!(blocking_get(&w.admin_url("/readyz")).map(|r| r.0), Ok(503));
    let c = client();
    let (s, _) = post(&c, &w.url("/hooks/default/load"), r#"{"n":1}"#, &[]).await;
    assert_eq!(s, 503, "no 202 before the database is there");
    server.restart();
    w.wait_ready();
    let (s, _) = post(&c, &w.url("/hooks/default/load"), r#"{"n":2}"#, &[]).await;
    assert_eq!(s, 202);
    assert_eq!(sink.wait_for("/load", 1, Duration::from_secs(20)).await, 1);
    w.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_the_slots_drains() {
    // More due jobs than --max-inflight: what a pass claims and cannot start goes back,
    // never held (and renewed) by a worker that is not attempting it.
    let url = postgres::url();
    let schema = postgres::fresh_schema("slots");
    let sink = Sink::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), &bridge(&sink));
    let mut args = pg_args(&url, &schema);
    args.extend_from_slice(&["--max-inflight", "4"]);
    let w = Worker::start(dir.path(), &m, &args);
    let c = client();
    let mut ids = HashSet::new();
    let hook = w.url("/hooks/default/load");
    let sends: Vec<_> = (0..300)
        .map(|i| send(&c, &hook, format!(r#"{{"i":{i}}}"#)))
        .collect();
    for r in futures::future::join_all(sends).await {
        ids.insert(r.expect("202"));
    }
    let missing = wait_all(&sink, &ids, Duration::from_secs(60)).await;
    assert!(
        missing.is_empty(),
        "{} of 300 never delivered\n{}",
        missing.len(),
        w.log_text()
    );
}
