//! Circuit breakers (issue 18), through the real worker and a loopback sink that fails then
//! recovers: the breaker opens after consecutive failures (the sink sees nothing while it is
//! open, the held jobs record no attempt), one probe goes out after `openFor`, a failed
//! probe opens it again, a restart keeps it open, a good probe closes it and every event
//! is delivered once. A destination failing for `disableAfter` is disabled (paused, with
//! its own reason) and resumed like a 410. The bridge's `notifications` receiver gets
//! `destination.opened`, `destination.closed` and `destination.disabled`, signed with
//! Standard Webhooks (checked here from the specification, independent of the worker).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SIGNING_SECRET: &str = "whsec_Y2lyY3VpdC1icmVha2VyLW5vdGlmaWNhdGlvbnM=";
const WAIT: Duration = Duration::from_secs(30);

/// Standard Webhooks, from the specification: the key is the base64 after `whsec_`, the
/// signed content is `{id}.{timestamp}.{body}`, and the header lists `v1,<base64>` entries.
fn standard_webhooks_valid(r: &Received) -> bool {
    let h = |k: &str| {
        r.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(SIGNING_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut m = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    m.update(format!("{}.{}.", h("webhook-id"), h("webhook-timestamp")).as_bytes());
    m.update(&r.body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    );
    !h("webhook-id").is_empty() && h("webhook-signature").split(' ').any(|s| s == want)
}

fn manifest(sink: &Sink, destination: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: ops}}
stringData: {{signing: "{SIGNING_SECRET}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: cb}}
spec:
  notifications:
    url: "{notify}"
    signing: {{standardWebhooks: {{secretRef: {{name: ops, key: signing}}}}}}
  destinations:
{destination}
"#,
        notify = sink.url("/notify"),
    )
}

/// The notifications received so far, `type` → requests.
fn notifications(sink: &Sink) -> HashMap<String, Vec<(Received, serde_json::Value)>> {
    let mut out: HashMap<String, Vec<_>> = HashMap::new();
    for r in sink.requests("/notify") {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        out.entry(v["type"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push((r, v));
    }
    out
}

async fn wait_notification(sink: &Sink, kind: &str) -> (Received, serde_json::Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(n) = notifications(sink).remove(kind) {
            return n[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} notification: {:?}",
            notifications(sink).keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The destination `name` in the worker's report (`/api/v1/config`).
async fn report(c: &reqwest::Client, w: &Worker, name: &str) -> serde_json::Value {
    let r = get_json(c, &w.admin_url("/api/v1/config")).await;
    r["bridges"][0]["destinations"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == name).cloned())
        .unwrap_or_else(|| panic!("{name} in {r:#}"))
}

/// Wait until the report of `name` satisfies `ok`.
async fn wait_report(
    c: &reqwest::Client,
    w: &Worker,
    name: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let d = report(c, w, name).await;
        if ok(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "report of {name}: {d:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(c: &reqwest::Client, w: &Worker, i: usize) -> String {
    let (s, v) = post(
        c,
        &w.url("/hooks/default/cb"),
        &format!(r#"{{"i":{i}}}"#),
        &[],
    )
    .await;
    assert_eq!(s, 202, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_probes_once_reopens_survives_a_restart_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let status = Arc::new(AtomicU16::new(500));
    let answer = status.clone();
    // The event ids the sink acknowledged with a 2xx, in order.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let ack = acked.clone();
    let sink = Sink::start(move |_, r| match r.path.as_str() {
        "/out" => {
            let s = answer.load(Ordering::SeqCst);
            if s == 200 {
                let id = r.headers["causeway-event-id"].to_str().unwrap().to_string();
                ack.lock().unwrap().push(id);
            }
            (s, vec![])
        }
        _ => (200, vec![]),
    })
    .await;
    let open_for = Duration::from_secs(3);
    let dest = format!(
        r#"  - name: out
    url: "{}"
    retries: 50
    backoff: {{policy: fixed, delays: [50ms]}}
    maxConcurrency: 1
    circuitBreaker: {{consecutiveFailures: 3, openFor: 3s, disableAfter: 1h}}"#,
        sink.url("/out")
    );
    let m = manifests(dir.path(), &manifest(&sink, &dest));
    let mut w = Worker::start(dir.path(), &m, &[]);
    let c = client();

    // Three failures in a row (the first attempt and two retries): the breaker opens.
    let first = send(&c, &w, 0).await;
    let (opened, body) = wait_notification(&sink, "destination.opened").await;
    assert_eq!(sink.count("/out"), 3, "opened at the third failure");
    assert!(
        standard_webhooks_valid(&opened),
        "the notification is signed"
    );
    assert_eq!(body["data"]["bridge"], "default/cb");
    assert_eq!(body["data"]["destination"], "out");
    assert_eq!(body["data"]["consecutiveFailures"], 3);
    let d = report(&c, &w, "out").await;
    assert_eq!(
        (d["breaker"].as_str(), d["paused"].as_bool()),
        (Some("open"), Some(false)),
        "{d:#}"
    );
    let text = metrics_text(&c, &w).await;
    assert!(
        text.contains(
            "causeway_destination_breaker_state{bridge=\"default/cb\",destination=\"out\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("causeway_destination_breaker_openings_total{bridge=\"default/cb\",destination=\"out\"} 1"),
        "{text}"
    );

    // Events accepted while it is open wait: pending, no attempt recorded.
    let mut ids = vec![first.clone()];
    for i in 1..4 {
        ids.push(send(&c, &w, i).await);
    }
    for id in &ids[1..] {
        let ev = get_json(&c, &w.admin_url(&format!("/api/v1/events/{id}"))).await;
        assert_eq!(ev["status"], "pending", "{ev:#}");
        let attempts = ev["deliveries"][0]["attempts"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(attempts, 0, "a held job records no attempt: {ev:#}");
    }

    // After openFor, one probe; it fails: open again (no second `opened`), and nothing more
    // goes out until the next probe.
    let d = wait_report(&c, &w, "out", |d| {
        d["breaker"] == "open" && sink.count("/out") >= 4
    })
    .await;
    assert_eq!(sink.count("/out"), 4, "exactly one probe: {d:#}");
    let out = sink.requests("/out");
    assert!(
        out[3].at.duration_since(out[2].at) >= open_for,
        "the probe waits openFor after the opening"
    );

    // A restart while open keeps it open: the next request still waits openFor after the
    // failed probe (a fresh breaker would attempt the due jobs at once).
    w.terminate();
    w.spawn();
    let d = report(&c, &w, "out").await;
    assert!(
        d["breaker"] == "open" || d["breaker"] == "halfOpen",
        "open after the restart: {d:#}"
    );

    // The sink recovers: the next probe succeeds and closes the breaker, and every event
    // is delivered once.
    status.store(200, Ordering::SeqCst);
    let (closed, body) = wait_notification(&sink, "destination.closed").await;
    assert!(standard_webhooks_valid(&closed));
    assert_eq!(body["data"]["destination"], "out");
    let out = sink.requests("/out");
    assert!(
        out[4].at.duration_since(out[3].at) >= open_for,
        "after the restart the next probe still waited openFor"
    );
    for id in &ids {
        let ev = wait_status(&c, &w, id, "delivered", WAIT).await;
        assert_eq!(ev["status"], "delivered", "{ev:#}");
    }
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for id in acked.lock().unwrap().iter() {
        *delivered.entry(id.clone()).or_default() += 1;
    }
    assert_eq!(delivered.len(), ids.len(), "{delivered:?}");
    for id in &ids {
        assert_eq!(
            delivered.get(id),
            Some(&1),
            "{id} acknowledged once: {delivered:?}"
        );
    }
    let d = wait_report(&c, &w, "out", |d| d.get("breaker").is_none()).await;
    assert_eq!(d["paused"], false);
    let text = metrics_text(&c, &w).await;
    assert!(
        text.contains(
            "causeway_destination_breaker_state{bridge=\"default/cb\",destination=\"out\"} 0"
        ),
        "{text}"
    );
    // The first event's log: its failures, the failed probes and the success; the held
    // passes recorded nothing.
    let ev = get_json(&c, &w.admin_url(&format!("/api/v1/events/{first}"))).await;
    let codes: Vec<u64> = ev["deliveries"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes.last(), Some(&200), "{ev:#}");
    assert!(
        codes[..codes.len() - 1].iter().all(|c| *c == 500),
        "{codes:?}"
    );
    let n = notifications(&sink);
    assert_eq!(
        n["destination.opened"].len(),
        1,
        "a failed probe is not a new opening"
    );
    assert!(!n.contains_key("destination.disabled"));

    // The destination leaves the configuration: its breaker series leave /metrics.
    let renamed = dest.replace("name: out", "name: other");
    std::fs::write(m.join("bridges.yaml"), manifest(&sink, &renamed)).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics_text(&c, &w).await;
        let left: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("causeway_destination_breaker") && l.contains("destination=\"out\"")
            })
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_for_disable_after_disables_the_destination_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let status = Arc::new(AtomicU16::new(503));
    let answer = status.clone();
    let sink = Sink::start(move |_, r| match r.path.as_str() {
        "/down" => (answer.load(Ordering::SeqCst), vec![]),
        _ => (200, vec![]),
    })
    .await;
    let dest = format!(
        r#"  - name: down
    url: "{}"
    retries: 100
    backoff: {{policy: fixed, delays: [50ms]}}
    maxConcurrency: 1
    circuitBreaker: {{consecutiveFailures: 2, openFor: 200ms, disableAfter: 1s}}"#,
        sink.url("/down")
    );
    let m = manifests(dir.path(), &manifest(&sink, &dest));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(send(&c, &w, i).await);
    }
    let (disabled, body) = wait_notification(&sink, "destination.disabled").await;
    assert!(standard_webhooks_valid(&disabled));
    assert_eq!(body["data"]["destination"], "down");
    assert!(
        body["data"]["resume"]
            .as_str()
            .unwrap()
            .contains("destinations resume default/cb down"),
        "{body}"
    );
    // Paused, with the breaker's reason (not a 410's), in the report and the bridges list.
    let d = wait_report(&c, &w, "down", |d| d["paused"] == true).await;
    assert_eq!(d["pausedReason"], "Disabled", "{d:#}");
    let list = get_json(&c, &w.admin_url("/api/v1/bridges")).await;
    assert_eq!(
        list["bridges"][0]["destinations"][0]["pausedReason"], "Disabled",
        "{list:#}"
    );
    let text = metrics_text(&c, &w).await;
    assert!(
        text.contains("causeway_destination_paused{bridge=\"default/cb\",destination=\"down\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "causeway_destination_breaker_state{bridge=\"default/cb\",destination=\"down\"} 3"
        ),
        "{text}"
    );
    // Disabled means nothing goes out, not even probes: the count holds across a wait
    // for the events to show as held.
    let before = sink.count("/down");
    for id in &ids {
        let ev = get_json(&c, &w.admin_url(&format!("/api/v1/events/{id}"))).await;
        assert_eq!(ev["status"], "pending", "kept, not dead: {ev:#}");
    }
    // Resume (as after a 410): the backlog is delivered and the breaker starts closed.
    status.store(200, Ordering::SeqCst);
    let r = admin_post(
        &c,
        &w.admin_url("/api/v1/bridges/default/cb/destinations/down/resume"),
    )
    .await;
    assert_eq!(r["paused"], false);
    for id in &ids {
        let ev = wait_status(&c, &w, id, "delivered", WAIT).await;
        assert_eq!(ev["status"], "delivered", "{ev:#}");
    }
    assert_eq!(
        sink.count("/down"),
        before + 3,
        "one delivery per event after the resume, none while disabled"
    );
    let d = report(&c, &w, "down").await;
    assert_eq!(d["paused"], false, "{d:#}");
    assert!(
        d.get("breaker").is_none() && d.get("pausedReason").is_none(),
        "{d:#}"
    );
    let n = notifications(&sink);
    assert_eq!(n["destination.opened"].len(), 1);
    assert!(standard_webhooks_valid(&n["destination.opened"][0].0));
}

/// Two workers on one PostgreSQL store share one breaker: the one that did not see the
/// failures holds its events too (no attempt while open), the pool sends one probe, and
/// the opening and closing are told once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_postgres_share_one_breaker() {
    let url = postgres::url();
    let schema = postgres::fresh_schema("breaker");
    let status = Arc::new(AtomicU16::new(500));
    let answer = status.clone();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let ack = acked.clone();
    let sink = Sink::start(move |_, r| match r.path.as_str() {
        "/out" => {
            let s = answer.load(Ordering::SeqCst);
            if s == 200 {
                let id = r.headers["causeway-event-id"].to_str().unwrap().to_string();
                ack.lock().unwrap().push(id);
            }
            (s, vec![])
        }
        _ => (200, vec![]),
    })
    .await;
    let dest = format!(
        r#"  - name: out
    url: "{}"
    retries: 50
    backoff: {{policy: fixed, delays: [50ms]}}
    maxConcurrency: 1
    circuitBreaker: {{consecutiveFailures: 3, openFor: 3s, disableAfter: 1h}}"#,
        sink.url("/out")
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m = manifests(da.path(), &manifest(&sink, &dest));
    let args = ["--postgres", &url, "--postgres-schema", &schema];
    let a = Worker::start(da.path(), &m, &args);
    let b = Worker::start(db.path(), &m, &args);
    let c = client();

    let mut ids = vec![send(&c, &a, 0).await];
    wait_notification(&sink, "destination.opened").await;
    let at_open = sink.count("/out");
    assert_eq!(at_open, 3, "opened at the third failure");
    // The other worker holds its events at once (the store's breaker, before its copy
    // catches up): pending, no attempt.
    for i in 1..4 {
        ids.push(send(&c, &b, i).await);
    }
    for id in &ids[1..] {
        let ev = get_json(&c, &b.admin_url(&format!("/api/v1/events/{id}"))).await;
        assert_eq!(ev["status"], "pending", "{ev:#}");
        let attempts = ev["deliveries"][0]["attempts"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(attempts, 0, "{ev:#}");
    }
    wait_report(&c, &b, "out", |d| d["breaker"] == "open").await;
    // One probe for the pool; it fails, and the breaker is open again on both.
    let deadline = Instant::now() + WAIT;
    loop {
        let (ra, rb) = (report(&c, &a, "out").await, report(&c, &b, "out").await);
        if sink.count("/out") > at_open && ra["breaker"] == "open" && rb["breaker"] == "open" {
            break;
        }
        assert!(Instant::now() < deadline, "{ra:#} {rb:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sink.count("/out"),
        at_open + 1,
        "exactly one probe from two workers"
    );

    status.store(200, Ordering::SeqCst);
    wait_notification(&sink, "destination.closed").await;
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < ids.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for id in acked.lock().unwrap().iter() {
        *delivered.entry(id.clone()).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            delivered.get(id),
            Some(&1),
            "{id} acknowledged once: {delivered:?}"
        );
    }
    let n = notifications(&sink);
    assert_eq!(
        n["destination.opened"].len(),
        1,
        "told once, by the worker that opened it"
    );
    assert_eq!(n["destination.closed"].len(), 1);
}

/// A 410 pauses as before and is notified as `destination.paused`, with the reason `Gone`
/// (not `Disabled`); `events` limits what is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_pause_is_notified_and_told_apart_from_a_disable() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(|_, r| match r.path.as_str() {
        "/gone" => (410, vec![]),
        "/flaky" => (500, vec![]),
        _ => (200, vec![]),
    })
    .await;
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: ops}}
stringData: {{signing: "{SIGNING_SECRET}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: cb}}
spec:
  notifications:
    url: "{notify}"
    signing: {{standardWebhooks: {{secretRef: {{name: ops, key: signing}}}}}}
    events: [destination.paused]
  destinations:
  - name: gone
    url: "{gone}"
    circuitBreaker: {{consecutiveFailures: 1}}
  - name: flaky
    url: "{flaky}"
    retries: 0
    circuitBreaker: {{consecutiveFailures: 1, openFor: 1h}}
"#,
        notify = sink.url("/notify"),
        gone = sink.url("/gone"),
        flaky = sink.url("/flaky"),
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    send(&c, &w, 0).await;
    let (paused, body) = wait_notification(&sink, "destination.paused").await;
    assert!(standard_webhooks_valid(&paused));
    assert_eq!(body["data"]["destination"], "gone");
    let d = wait_report(&c, &w, "gone", |d| d["paused"] == true).await;
    assert_eq!(d["pausedReason"], "Gone", "{d:#}");
    assert!(
        d.get("breaker").is_none(),
        "a 410 is not a breaker failure: {d:#}"
    );
    // flaky's breaker opened, but only `destination.paused` is asked for.
    wait_report(&c, &w, "flaky", |d| d["breaker"] == "open").await;
    let n = notifications(&sink);
    assert_eq!(
        n.keys().collect::<Vec<_>>(),
        vec!["destination.paused"],
        "{n:?}"
    );
}
