//! Delivery: retries follow the policy, 3xx fails, 410 pauses, dead letters replay, purge,
//! suspend and resume, delays (also across a restart).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_policy_and_the_log_shows_every_attempt() {
    let dir = tempfile::tempdir().unwrap();
    // /flaky fails twice, then succeeds; /down always fails.
    let sink = Sink::start(|n, r| match r.path.as_str() {
        "/flaky" if n < 2 => (500, vec![]),
        "/down" => (503, vec![]),
        "/busy" if n == 0 => (429, vec![("retry-after".into(), "1".into())]),
        _ => (200, vec![]),
    })
    .await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: retry}}
spec:
  destinations:
  - name: flaky
    url: "{flaky}"
    retries: 3
    backoff: {{policy: fixed, delays: [100ms, 200ms]}}
  - name: down
    url: "{down}"
    retries: 2
    backoff: {{policy: none}}
  - name: busy
    url: "{busy}"
    retries: 1
    backoff: {{policy: none}}
    maxRetryAfter: 400ms
"#,
        flaky = sink.url("/flaky"),
        down = sink.url("/down"),
        busy = sink.url("/busy")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let (s, v) = post(&c, &w.url("/hooks/default/retry"), r#"{"a":1}"#, &[]).await;
    assert_eq!(s, 202);
    let id = v["id"].as_str().unwrap().to_string();
    let ev = wait_status(&c, &w, &id, "dead", WAIT).await;
    assert_eq!(ev["status"], "dead", "{ev:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Exactly the policy's attempts: 2 failures + 1 success; 1 + 2 retries.
    assert_eq!(sink.count("/flaky"), 3);
    assert_eq!(sink.count("/down"), 3);
    let flaky = sink.requests("/flaky");
    assert!(flaky[1].at.duration_since(flaky[0].at) >= Duration::from_millis(100));
    assert!(flaky[2].at.duration_since(flaky[1].at) >= Duration::from_millis(200));

    let deliveries = ev["deliveries"].as_array().unwrap();
    let by = |name: &str| {
        deliveries
            .iter()
            .find(|d| d["destination"] == name)
            .unwrap()
            .clone()
    };
    let f = by("flaky");
    assert_eq!(f["status"], "delivered");
    let codes: Vec<u64> = f["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![500, 500, 200]);
    for a in f["attempts"].as_array().unwrap() {
        assert!(a["at"].as_str().unwrap().ends_with('Z'));
        assert!(a["durationMs"].is_u64());
    }
    let d = by("down");
    assert_eq!(d["status"], "dead");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(d["attempts"][0]["error"], "status 503");
    assert_eq!(d["attempts"][0]["response"], "sink answer");

    // Retry-After replaces the policy's immediate retry, clamped to maxRetryAfter.
    assert_eq!(sink.count("/busy"), 2);
    let busy = sink.requests("/busy");
    assert!(busy[1].at.duration_since(busy[0].at) >= Duration::from_millis(400));
    assert_eq!(by("busy")["status"], "delivered");

    // Dead letters are listed and replayed.
    let dead = get_json(
        &c,
        &w.admin_url("/api/v1/events?bridge=default/retry&status=dead"),
    )
    .await;
    assert_eq!(dead["events"].as_array().unwrap().len(), 1);
    let r = admin_post(&c, &w.admin_url("/api/v1/bridges/default/retry/replay")).await;
    assert_eq!(r["replayed"], 1);
    assert_eq!(
        sink.wait_for("/down", 6, WAIT).await,
        6,
        "a replay gets the whole retry budget again"
    );
    assert_eq!(
        sink.count("/flaky"),
        3,
        "a delivered destination is not replayed with the bridge's dead letters"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_fail_gone_pauses_and_dead_letters_are_kept_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let gone = Arc::new(AtomicU16::new(410));
    let g = gone.clone();
    let sink = Sink::start(move |_, r| match r.path.as_str() {
        "/moved" => (302, vec![("location".into(), "/target".into())]),
        "/gone" => (g.load(Ordering::SeqCst), vec![]),
        _ => (200, vec![]),
    })
    .await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: outcomes}}
spec:
  destinations:
  - name: moved
    url: "{moved}"
    retries: 1
    backoff: {{policy: none}}
    deadLetter: {{url: "{dl}"}}
  - name: gone
    url: "{gone}"
    retries: 5
    backoff: {{policy: none}}
"#,
        moved = sink.url("/moved"),
        gone = sink.url("/gone"),
        dl = sink.url("/dead-letters")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let (_, v) = post(&c, &w.url("/hooks/default/outcomes"), r#"{"b":2}"#, &[]).await;
    let id = v["id"].as_str().unwrap().to_string();

    // 3xx is a failure: two attempts, no redirect followed, dead-lettered and announced.
    assert_eq!(sink.wait_for("/dead-letters", 1, WAIT).await, 1);
    assert_eq!(sink.count("/moved"), 2);
    assert_eq!(sink.count("/target"), 0, "a redirect was followed");
    let note: serde_json::Value =
        serde_json::from_slice(&sink.requests("/dead-letters")[0].body).unwrap();
    assert_eq!(note["eventId"], id.as_str());
    assert_eq!(note["destination"], "moved");

    // 410 pauses the destination after one attempt.
    let deadline = Instant::now() + WAIT;
    let ev = loop {
        let ev = get_json(&c, &w.admin_url(&format!("/api/v1/events/{id}"))).await;
        let st = ev["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == "gone")
            .unwrap()["status"]
            .clone();
        if st == "paused" || Instant::now() > deadline {
            break ev;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(ev["status"], "pending", "{ev:#}");
    assert_eq!(sink.count("/gone"), 1);
    let bridges = get_json(&c, &w.admin_url("/api/v1/bridges")).await;
    let dests = bridges["bridges"][0]["destinations"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        dests
            .iter()
            .any(|d| d["name"] == "gone" && d["paused"] == true),
        "{bridges:#}"
    );
    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "causeway_destination_paused{bridge=\"default/outcomes\",destination=\"gone\"} 1"
        ),
        "{metrics}"
    );

    // Another event for the paused destination is held, not attempted.
    let (_, v2) = post(&c, &w.url("/hooks/default/outcomes"), r#"{"b":3}"#, &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.count("/gone"), 1);

    // Issue 18: the report the operator reads (it becomes the Bridge's status and its
    // DestinationsHealthy condition): paused, jobs held, and the last hour.
    // `pending` is the queue-depth gauge, refreshed every few seconds: wait for it.
    let deadline = Instant::now() + WAIT;
    let dests = loop {
        let report = get_json(&c, &w.admin_url("/api/v1/config")).await;
        let dests = report["bridges"][0]["destinations"].clone();
        let pending = dests
            .as_array()
            .and_then(|a| a.iter().find(|d| d["name"] == "gone"))
            .and_then(|d| d["pending"].as_u64())
            .unwrap_or(0);
        if pending >= 1 || Instant::now() > deadline {
            break dests;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by = |name: &str| {
        dests
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {dests:#}"))
            .clone()
    };
    let gone_report = by("gone");
    assert_eq!(gone_report["paused"], true, "{dests:#}");
    assert_eq!(gone_report["failed"], 1, "one attempt, the 410: {dests:#}");
    assert_eq!(gone_report["delivered"], 0, "{dests:#}");
    assert!(
        gone_report["pending"].as_u64().unwrap() >= 1,
        "the second event's job waits: {dests:#}"
    );
    // moved: two failed attempts and one dead letter per event (one or both events by now).
    let moved = by("moved");
    let dead = moved["dead"].as_u64().unwrap();
    assert!((1..=2).contains(&dead), "{dests:#}");
    assert_eq!(moved["failed"].as_u64().unwrap(), 2 * dead, "{dests:#}");
    assert_eq!(moved["paused"], false, "{dests:#}");

    // Resume: the held deliveries go out.
    gone.store(200, Ordering::SeqCst);
    admin_post(
        &c,
        &w.admin_url("/api/v1/bridges/default/outcomes/destinations/gone/resume"),
    )
    .await;
    assert_eq!(sink.wait_for("/gone", 3, WAIT).await, 3);

    // Replay one event's dead delivery: the moved destination is tried again.
    let r = admin_post(&c, &w.admin_url(&format!("/api/v1/events/{id}/replay"))).await;
    assert!(r["replayed"].as_u64().unwrap() >= 1);
    assert_eq!(sink.wait_for("/moved", 6, WAIT).await, 6);
    let _ = v2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_holds_deliveries_resume_sends_them_and_purge_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: held}}
spec:
  destinations:
  - {{name: sink, url: "{url}", delay: 300ms}}
"#,
        url = sink.url("/held")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let url = w.url("/hooks/default/held");
    let (_, a) = post(&c, &url, r#"{"n":1}"#, &[]).await;
    admin_post(&c, &w.admin_url("/api/v1/bridges/default/held/suspend")).await;
    let (s, _) = post(&c, &url, r#"{"n":2}"#, &[]).await;
    assert_eq!(s, 503, "a suspended bridge refuses new events");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(sink.count("/held"), 0, "a suspended bridge's jobs are held");
    admin_post(&c, &w.admin_url("/api/v1/bridges/default/held/resume")).await;
    assert_eq!(sink.wait_for("/held", 1, WAIT).await, 1);
    let ev = wait_status(&c, &w, a["id"].as_str().unwrap(), "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered");

    // Purge: queue three, suspend, purge, resume: nothing is sent.
    for n in 0..3 {
        post(&c, &url, &format!(r#"{{"p":{n}}}"#), &[]).await;
    }
    admin_post(&c, &w.admin_url("/api/v1/bridges/default/held/suspend")).await;
    let r = admin_post(&c, &w.admin_url("/api/v1/bridges/default/held/purge")).await;
    assert_eq!(r["purged"], 3);
    admin_post(&c, &w.admin_url("/api/v1/bridges/default/held/resume")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.count("/held"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_are_honoured_also_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: later}}
spec:
  destinations:
  - {{name: sink, url: "{url}", delay: 2s}}
"#,
        url = sink.url("/later")
    );
    let m = manifests(dir.path(), &yaml);
    let mut w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let sent = Instant::now();
    let (s, _) = post(&c, &w.url("/hooks/default/later"), r#"{"n":1}"#, &[]).await;
    assert_eq!(s, 202);
    // Killed at once: the job is on disk with its due time.
    w.kill9();
    w.spawn();
    let sent2 = Instant::now();
    let (_, _) = post(&c, &w.url("/hooks/default/later"), r#"{"n":2}"#, &[]).await;
    assert_eq!(sink.wait_for("/later", 2, WAIT).await, 2);
    let got = sink.requests("/later");
    let first = got
        .iter()
        .find(|r| r.body.as_ref() == br#"{"n":1}"#)
        .unwrap();
    let second = got
        .iter()
        .find(|r| r.body.as_ref() == br#"{"n":2}"#)
        .unwrap();
    assert!(
        first.at.duration_since(sent) >= Duration::from_millis(1990),
        "delivered early across a restart"
    );
    assert!(
        second.at.duration_since(sent2) >= Duration::from_millis(1990),
        "delivered early"
    );
}
