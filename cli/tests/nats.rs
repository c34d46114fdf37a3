//! Issue 17, a broker destination: a Bridge whose destination is `nats://host:port/subject`
//! publishes each event to JetStream and counts the publish acknowledgement as the
//! delivery. A real `nats-server -js` (Debian's, installed by `scripts/nats.sh` when
//! missing) runs on a free loopback port with a password; the test creates the stream with
//! the same client crate the worker uses and reads it back message by message.
//!
//! - 1,000 events: the stream holds exactly 1,000 messages with 1,000 distinct
//!   `Nats-Msg-Id`s, one per event, and each event's job has exactly one successful
//!   attempt, although the server was stopped (SIGTERM to its PID) while events were
//!   flowing and restarted on the same port and store directory: the attempts made while
//!   it was down failed and were retried, nothing lost, nothing stored twice.
//! - Wrong credentials, a subject no stream captures and an expected stream that does not
//!   match fail their attempts with a clear error; the password never reaches the attempt
//!   log or the worker's log.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;

const PASSWORD: &str = "nats-pass-s3cret-value";
const WRONG: &str = "wrong-pass-value-0421";
const WAIT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `scripts/nats.sh install`: the nats-server binary.
fn nats_server_bin() -> PathBuf {
    let out = Command::new(repo().join("scripts/nats.sh"))
        .arg("install")
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/nats.sh");
    assert!(out.status.success(), "scripts/nats.sh install failed");
    let path = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(path.lines().last().expect("nats-server path").trim())
}

/// A nats-server with JetStream on a loopback port, a store directory and a password.
struct NatsServer {
    bin: PathBuf,
    port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    fn start(dir: &Path) -> NatsServer {
        let mut s = NatsServer {
            bin: nats_server_bin(),
            port: free_port(),
            store: dir.join("jetstream"),
            log: dir.join("nats-server.log"),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store)
            .args(["--user", "causeway", "--pass", PASSWORD])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client of the test, once the server answers (bounded).
    async fn client(&self) -> async_nats::Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match async_nats::ConnectOptions::with_user_and_password(
                "causeway".into(),
                PASSWORD.into(),
            )
            .connect(self.url())
            .await
            {
                Ok(c) => return c,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "nats-server not ready: {e}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM to the server's PID; waits for it to exit.
    fn terminate(&mut self) {
        let mut c = self.child.take().expect("server running");
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {}", c.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "nats-server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The stream every `events.>` subject lands in, deduplicating over two minutes.
async fn create_stream(client: &async_nats::Client) -> jetstream::Context {
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["events.>".into()],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("create the stream");
    js
}

async fn stream_messages(js: &jetstream::Context) -> u64 {
    let mut s = js.get_stream("EVENTS").await.expect("the stream");
    s.info().await.expect("stream info").state.messages
}

fn bridge(name: &str, url: &str, password_key: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: {name}}}
spec:
  destinations:
  - name: stream
    url: "{url}"
    timeout: 2s
{extra}
    nats:
      user: causeway
      passwordRef: {{name: nats, key: {password_key}}}
---
"#
    )
}

fn secret() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: nats}}\nstringData: {{password: {PASSWORD}, wrong: {WRONG}}}\n---\n"
    )
}

fn attempts(ev: &serde_json::Value) -> Vec<serde_json::Value> {
    ev["deliveries"][0]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// POST events `from..to` with a few senders at once; their ids in order.
async fn send(c: &reqwest::Client, url: &str, from: usize, to: usize) -> Vec<(usize, String)> {
    let mut tasks = Vec::new();
    for lane in 0..8 {
        let c = c.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (from + lane..to).step_by(8) {
                let (s, v) = post(&c, &url, &format!(r#"{{"n":{n}}}"#), &[]).await;
                assert_eq!(s, 202, "event {n}: {v}");
                ids.push((n, v["id"].as_str().unwrap().to_string()));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_jetstream_gets_every_event_once_across_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start(dir.path());
    let js = create_stream(&server.client().await).await;
    let yaml = secret()
        + &bridge(
            "orders",
            &format!("{}/events.orders", server.url()),
            "password",
            "    retries: 100\n    maxConcurrency: 32\n    backoff: {policy: fixed, delays: [200ms]}",
        );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let url = w.url("/hooks/default/orders");

    // Events flow; once some are in the stream, the server is stopped mid-run.
    let first = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { send(&c, &url, 0, 500).await })
    };
    let deadline = Instant::now() + WAIT;
    while stream_messages(&js).await < 100 {
        assert!(Instant::now() < deadline, "no events reached the stream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(js);
    server.terminate();
    let mut ids = first.await.unwrap();
    // While it is down the ingress still answers 202 and the attempts fail.
    ids.extend(send(&c, &url, 500, 800).await);
    let last = ids.last().unwrap().1.clone();
    let ev = loop {
        let ev = get_json(&c, &w.admin_url(&format!("/api/v1/events/{last}"))).await;
        if attempts(&ev).iter().any(|a| !a["error"].is_null()) {
            break ev;
        }
        assert!(Instant::now() < deadline, "no failed attempt: {ev:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let down_error = attempts(&ev)[0]["error"].as_str().unwrap().to_string();
    assert!(
        !down_error.is_empty() && !down_error.contains(PASSWORD),
        "{down_error}"
    );

    // Restarted on the same port and store directory: everything is delivered.
    server.spawn();
    let js = jetstream::new(server.client().await);
    ids.extend(send(&c, &url, 800, 1000).await);
    assert_eq!(ids.len(), 1000);
    let (mut retried, mut duplicates) = (0, 0);
    for (n, id) in &ids {
        let ev = wait_status(&c, &w, id, "delivered", WAIT).await;
        assert_eq!(ev["status"], "delivered", "event {n}: {ev:#}");
        let a = attempts(&ev);
        let ok: Vec<&serde_json::Value> = a.iter().filter(|a| a["error"].is_null()).collect();
        assert_eq!(ok.len(), 1, "event {n} delivered once: {ev:#}");
        assert!(
            a.last().unwrap()["error"].is_null(),
            "the success is the last attempt: {ev:#}"
        );
        let response = ok[0]["response"].as_str().unwrap();
        assert!(
            response.starts_with("stream EVENTS sequence "),
            "{response}"
        );
        retried += usize::from(a.len() > 1);
        duplicates += usize::from(response.contains("duplicate"));
    }
    eprintln!(
        "retried after the outage: {retried} events; acknowledged as duplicates: {duplicates}"
    );
    assert!(retried > 0, "the outage failed no attempt");

    // The stream: exactly one message per event, in its own id.
    assert_eq!(stream_messages(&js).await, 1000);
    let stream = js.get_stream("EVENTS").await.unwrap();
    let want: HashSet<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    let mut msg_ids = HashSet::new();
    let mut event_ids = HashSet::new();
    for seq in 1..=1000 {
        let m = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(m.subject.as_str(), "events.orders");
        let h = |n: &str| m.headers.get(n).map(|v| v.as_str().to_string());
        let event = h("causeway-event-id").expect("causeway-event-id");
        assert!(want.contains(event.as_str()), "unknown event {event}");
        assert_eq!(h("webhook-id").as_deref(), Some(event.as_str()));
        assert!(h("webhook-timestamp").is_some());
        assert_eq!(h("content-type").as_deref(), Some("application/json"));
        let msg_id = h("Nats-Msg-Id").expect("Nats-Msg-Id");
        assert_eq!(msg_id, format!("{event}:stream:0"));
        let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let n = body["n"].as_u64().unwrap() as usize;
        assert_eq!(ids[n].1, event, "message {seq} carries event {n}'s body");
        assert!(msg_ids.insert(msg_id), "message id twice at {seq}");
        assert!(event_ids.insert(event), "an event twice at {seq}");
    }
    assert_eq!(event_ids.len(), 1000);
    let log = w.log_text();
    assert!(!log.contains(PASSWORD), "the password in the worker log");
    assert!(log.contains("nats: disconnected"), "the outage is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_failures_are_clear_and_never_show_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let js = create_stream(&server.client().await).await;
    js.create_stream(jetstream::stream::Config {
        name: "OTHER".into(),
        subjects: vec!["other.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let once = "    retries: 1\n    backoff: {policy: fixed, delays: [50ms]}";
    let yaml = secret()
        + &bridge(
            "wrong",
            &format!("{}/events.wrong", server.url()),
            "wrong",
            once,
        )
        + &bridge(
            "nostream",
            &format!("{}/nowhere.at.all", server.url()),
            "password",
            once,
        )
        + &bridge(
            "pinned",
            &format!("{}/events.pinned", server.url()),
            "password",
            &format!("{once}\n    headers: {{nats-expected-stream: OTHER}}"),
        )
        + &bridge(
            "good",
            &format!("{}/events.good", server.url()),
            "password",
            &format!("{once}\n    headers: {{nats-expected-stream: EVENTS}}"),
        );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let mut cases = Vec::new();
    for (bridge, want) in [
        ("wrong", "authorization violation"),
        (
            "nostream",
            "no JetStream stream captures subject nowhere.at.all",
        ),
        ("pinned", "expected stream does not match"),
    ] {
        let (s, v) = post(&c, &w.url(&format!("/hooks/default/{bridge}")), "{}", &[]).await;
        assert_eq!(s, 202, "{v}");
        cases.push((bridge, want, v["id"].as_str().unwrap().to_string()));
    }
    for (bridge, want, id) in &cases {
        let ev = wait_status(&c, &w, id, "dead", WAIT).await;
        assert_eq!(ev["status"], "dead", "{bridge}: {ev:#}");
        let a = attempts(&ev);
        assert_eq!(a.len(), 2, "{bridge}: one attempt and one retry: {ev:#}");
        for at in &a {
            let e = at["error"].as_str().unwrap();
            assert!(e.contains(want), "{bridge}: {e}");
            assert!(!e.contains(WRONG) && !e.contains(PASSWORD), "{bridge}: {e}");
        }
        let text = ev.to_string();
        assert!(!text.contains(WRONG) && !text.contains(PASSWORD), "{text}");
    }
    // The right stream pinned: delivered.
    let (s, v) = post(&c, &w.url("/hooks/default/good"), "{}", &[]).await;
    assert_eq!(s, 202, "{v}");
    let ev = wait_status(&c, &w, v["id"].as_str().unwrap(), "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}");
    let log = w.log_text();
    assert!(
        !log.contains(WRONG) && !log.contains(PASSWORD),
        "a password in the worker log"
    );
}
