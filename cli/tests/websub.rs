//! WebSub hubs (`POST /hub/<namespace>/<bridge>`) on the real worker, loopback only. The
//! subscriber is a small server written here from the W3C WebSub recommendation, apart from
//! the worker's code: it answers the verification of intent (a GET with `hub.mode`,
//! `hub.topic`, `hub.challenge`, `hub.lease_seconds`) by echoing the challenge, and checks
//! each delivery's `X-Hub-Signature-256` with its own HMAC-SHA256 (the `hmac` and `sha2`
//! crates). A destination (`audit`, a common sink) is the barrier: once an event reached it,
//! its jobs are all made, so the test can say a subscription got none without waiting for
//! a packet that does not come.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use common::*;

const KEY: &str = "hub-key-1";
const LIMIT: Duration = Duration::from_secs(30);

/// How a subscriber's path answers the verification of intent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 200 with the challenge, as the spec says.
    Echo,
    /// 200 with something else.
    WrongBody,
}

#[derive(Clone, Debug)]
struct Verification {
    path: String,
    query: HashMap<String, String>,
}

#[derive(Clone, Debug)]
struct Delivery {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The subscriber's own check of `X-Hub-Signature-256` (None: no header).
    signature_ok: Option<bool>,
}

#[derive(Default)]
struct SubscriberState {
    answers: HashMap<String, Answer>,
    secrets: HashMap<String, String>,
    /// Answer the first N deliveries of a path with 500.
    fail_first: HashMap<String, usize>,
    verifications: Vec<Verification>,
    deliveries: Vec<Delivery>,
}

/// The subscriber: one server, one callback per path.
#[derive(Clone)]
struct Subscriber {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<SubscriberState>>,
}

impl Subscriber {
    async fn start() -> Subscriber {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = Subscriber {
            addr: listener.local_addr().unwrap(),
            state: Default::default(),
        };
        let app = axum::Router::new().fallback(callback).with_state(s.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        s
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn expect(&self, path: &str, answer: Answer, secret: Option<&str>) {
        let mut st = self.state.lock().unwrap();
        st.answers.insert(path.into(), answer);
        if let Some(s) = secret {
            st.secrets.insert(path.into(), s.into());
        }
    }

    fn verifications(&self, path: &str) -> Vec<Verification> {
        let st = self.state.lock().unwrap();
        st.verifications
            .iter()
            .filter(|v| v.path == path)
            .cloned()
            .collect()
    }

    fn deliveries(&self, path: &str) -> Vec<Delivery> {
        let st = self.state.lock().unwrap();
        st.deliveries
            .iter()
            .filter(|d| d.path == path)
            .cloned()
            .collect()
    }

    async fn wait_deliveries(&self, path: &str, n: usize) -> Vec<Delivery> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let d = self.deliveries(path);
            if d.len() >= n || Instant::now() > deadline {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// WebSub 5.3 (verification of intent) and 7 (content distribution), the subscriber's side.
async fn callback(
    State(s): State<Subscriber>,
    method: axum::http::Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let path = uri.path().to_string();
    let mut st = s.state.lock().unwrap();
    if method == axum::http::Method::GET {
        st.verifications.push(Verification {
            path: path.clone(),
            query: query.clone(),
        });
        let challenge = query.get("hub.challenge").cloned().unwrap_or_default();
        return match st.answers.get(&path) {
            Some(Answer::Echo) => (StatusCode::OK, challenge).into_response(),
            Some(Answer::WrongBody) => (StatusCode::OK, "not the challenge").into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let signature_ok = headers
        .get("x-hub-signature-256")
        .map(|v| match st.secrets.get(&path) {
            None => false,
            Some(secret) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(&body);
                let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                v.to_str().is_ok_and(|got| got == want)
            }
        });
    st.deliveries.push(Delivery {
        path: path.clone(),
        headers,
        body: body.to_vec(),
        signature_ok,
    });
    if let Some(n) = st.fail_first.get_mut(&path)
        && *n > 0
    {
        *n -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "not now").into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

fn manifest(audit: &Sink, sub: &Subscriber, extra_allowed: &str) -> String {
    format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders}}
spec:
  destinations:
  - {{name: audit, url: "{audit}"}}
  subscriptions:
    enabled: true
    auth: {{apiKey: {{secretRef: {{name: hub, key: key}}}}}}
    allowedCallbackHosts: ["http://127.0.0.1:{port}"{extra_allowed}]
    leaseSeconds: {{min: 1, max: 3600, default: 600}}
    retries: 3
    backoff: {{policy: fixed, delays: [100ms]}}
    timeout: 5s
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: plain}}
spec:
  destinations:
  - {{name: audit, url: "{audit}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: hub}}
stringData: {{key: {KEY}}}
"#,
        audit = audit.url("/audit"),
        port = sub.addr.port(),
    )
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// POST a form to the hub; returns (status, body text).
async fn hub_post(
    c: &reqwest::Client,
    w: &Worker,
    key: Option<&str>,
    content_type: &str,
    body: String,
) -> (u16, String) {
    let mut rb = c
        .post(w.url("/hub/default/orders"))
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = key {
        rb = rb.header("x-api-key", k);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn topic(w: &Worker) -> String {
    w.url("/hub/default/orders")
}

async fn subscribe(
    c: &reqwest::Client,
    w: &Worker,
    callback: &str,
    secret: Option<&str>,
    lease: Option<&str>,
) -> (u16, String) {
    let t = topic(w);
    let mut pairs = vec![
        ("hub.mode", "subscribe"),
        ("hub.topic", t.as_str()),
        ("hub.callback", callback),
    ];
    if let Some(s) = secret {
        pairs.push(("hub.secret", s));
    }
    if let Some(l) = lease {
        pairs.push(("hub.lease_seconds", l));
    }
    hub_post(
        c,
        w,
        Some(KEY),
        "application/x-www-form-urlencoded",
        form(&pairs),
    )
    .await
}

async fn listing(c: &reqwest::Client, w: &Worker) -> serde_json::Value {
    get_json(
        c,
        &w.admin_url("/api/v1/subscriptions?bridge=default/orders"),
    )
    .await
}

/// Wait until the listing satisfies `f` (bounded); returns the last listing.
async fn wait_listing(
    c: &reqwest::Client,
    w: &Worker,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let l = listing(c, w).await;
        if f(&l) {
            return l;
        }
        assert!(Instant::now() < deadline, "{what}: {l:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn sub_of<'a>(l: &'a serde_json::Value, callback: &str) -> Option<&'a serde_json::Value> {
    l["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["callback"] == callback)
}

fn verification_of<'a>(
    l: &'a serde_json::Value,
    callback: &str,
    mode: &str,
) -> Option<&'a serde_json::Value> {
    l["verifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["callback"] == callback && v["mode"] == mode)
}

/// Post an event to the bridge and wait until every job of it is finished (the event is no
/// longer pending: its `audit` delivery and every subscription's); returns its detail.
async fn send_and_settle(c: &reqwest::Client, w: &Worker, body: &str) -> serde_json::Value {
    let (status, v) = post(c, &w.url("/hooks/default/orders"), body, &[]).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + LIMIT;
    loop {
        let ev = get_json(c, &w.admin_url(&format!("/api/v1/events/{id}"))).await;
        let audit_done = ev["deliveries"].as_array().is_some_and(|j| {
            j.iter()
                .any(|j| j["destination"] == "audit" && j["status"] == "delivered")
        });
        if audit_done && ev["status"] != "pending" {
            return ev;
        }
        assert!(Instant::now() < deadline, "event not delivered: {ev:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn websub_jobs(ev: &serde_json::Value) -> Vec<serde_json::Value> {
    ev["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| {
            j["destination"]
                .as_str()
                .is_some_and(|d| d.starts_with("websub:"))
        })
        .cloned()
        .collect()
}

/// A worker whose bridge has a hub allowing the subscriber's address, its audit sink and
/// the subscriber (the temporary directory holds the worker's data: keep it alive).
async fn hub_worker() -> (tempfile::TempDir, Sink, Subscriber, Worker) {
    let dir = tempfile::tempdir().unwrap();
    let audit = Sink::ok().await;
    let sub = Subscriber::start().await;
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), &manifest(&audit, &sub, "")),
        &[],
    );
    (dir, audit, sub, w)
}

/// The whole flow: subscribe with a secret, pass the verification of intent, receive
/// signed events checked by the subscriber's own HMAC; a second subscriber without a
/// secret gets unsigned events, and one that fails first is retried with every attempt
/// recorded; the listing and `causeway subscriptions list` show counts, never a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_is_verified_and_receives_signed_events() {
    let (_dir, _audit, sub, w) = hub_worker().await;
    let c = client();
    let secret = "subscriber-secret-7f3a";
    sub.expect("/cb/signed", Answer::Echo, Some(secret));
    sub.expect("/cb/plain", Answer::Echo, None);
    sub.expect("/cb/flaky", Answer::Echo, None);
    sub.state
        .lock()
        .unwrap()
        .fail_first
        .insert("/cb/flaky".into(), 1);
    let (status, body) = subscribe(&c, &w, &sub.url("/cb/signed"), Some(secret), Some("120")).await;
    assert_eq!(status, 202, "{body}");
    assert!(!body.contains(secret));
    for path in ["/cb/plain", "/cb/flaky"] {
        let (status, body) = subscribe(&c, &w, &sub.url(path), None, None).await;
        assert_eq!(status, 202, "{body}");
    }
    let l = wait_listing(&c, &w, "three active subscriptions", |l| {
        l["subscriptions"].as_array().unwrap().len() == 3
    })
    .await;
    // The verification of intent as the spec says: mode, topic, challenge, lease.
    let v = sub.verifications("/cb/signed");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].query["hub.mode"], "subscribe");
    assert_eq!(v[0].query["hub.topic"], topic(&w));
    assert_eq!(v[0].query["hub.lease_seconds"], "120");
    assert!(v[0].query["hub.challenge"].len() >= 16);
    // The default lease when none is asked for.
    assert_eq!(
        sub.verifications("/cb/plain")[0].query["hub.lease_seconds"],
        "600"
    );
    let s = sub_of(&l, &sub.url("/cb/signed")).unwrap();
    assert_eq!(s["state"], "active");
    assert_eq!(s["signed"], true);
    assert_eq!(s["leaseSeconds"], 120);

    let bodies = [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#];
    for b in bodies {
        send_and_settle(&c, &w, b).await;
    }
    let got = sub.wait_deliveries("/cb/signed", 3).await;
    assert_eq!(got.len(), 3);
    let mut seen: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8(d.body.clone()).unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, bodies.map(String::from).to_vec());
    for d in &got {
        assert_eq!(d.signature_ok, Some(true), "X-Hub-Signature-256 checks out");
        assert_eq!(
            d.headers["x-hub-signature"], d.headers["x-hub-signature-256"],
            "the recommendation's header carries the same sha256=<hex>"
        );
        assert_eq!(d.headers["content-type"], "application/json");
        let link = d.headers["link"].to_str().unwrap();
        assert!(
            link.contains(&format!("<{}>; rel=\"hub\"", topic(&w))),
            "{link}"
        );
        assert!(
            link.contains(&format!("<{}>; rel=\"self\"", topic(&w))),
            "{link}"
        );
        assert!(d.headers.contains_key("causeway-event-id"));
    }
    // A tampered body would not check out: the subscriber's check is real.
    {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(b"{\"n\":4}");
        let other = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_ne!(got[0].headers["x-hub-signature-256"], other.as_str());
    }
    let plain = sub.wait_deliveries("/cb/plain", 3).await;
    assert_eq!(plain.len(), 3);
    assert!(plain.iter().all(|d| d.signature_ok.is_none()));
    // The flaky subscriber: its first delivery failed (500) and was retried.
    let flaky = sub.wait_deliveries("/cb/flaky", 4).await;
    assert_eq!(flaky.len(), 4);
    let l = wait_listing(&c, &w, "counts settle", |l| {
        let s = sub_of(l, &sub.url("/cb/flaky")).unwrap();
        s["lastHour"]["delivered"] == 3 && s["pending"] == 0
    })
    .await;
    let s = sub_of(&l, &sub.url("/cb/flaky")).unwrap();
    assert_eq!(s["lastHour"]["failed"], 1);
    let s = sub_of(&l, &sub.url("/cb/signed")).unwrap();
    assert_eq!(s["lastHour"]["delivered"], 3);
    assert_eq!(s["lastHour"]["failed"], 0);
    assert!(
        !l.to_string().contains(secret),
        "the listing never shows a secret"
    );
    // The attempt log of the retried job: a 500 then a 204.
    let events = get_json(&c, &w.admin_url("/api/v1/events?bridge=default/orders")).await;
    let flaky_sub = sub_of(&l, &sub.url("/cb/flaky")).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut attempts = Vec::new();
    for e in events["events"].as_array().unwrap() {
        let ev = get_json(
            &c,
            &w.admin_url(&format!("/api/v1/events/{}", e["id"].as_str().unwrap())),
        )
        .await;
        for j in websub_jobs(&ev) {
            if j["destination"] == format!("websub:{flaky_sub}") {
                attempts.push(
                    j["attempts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a["statusCode"].as_u64().unwrap_or(0))
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
    attempts.sort();
    assert_eq!(
        attempts,
        vec![vec![204], vec![204], vec![500, 204]],
        "{events:#}"
    );
    // The CLI's table.
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args([
            "subscriptions",
            "list",
            "--bridge",
            "default/orders",
            "--admin",
        ])
        .arg(w.admin.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let line = table
        .lines()
        .find(|l| l.contains("/cb/signed"))
        .unwrap_or_else(|| panic!("{table}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[0], "default/orders");
    assert_eq!(cols[2], "active");
    assert_eq!(&cols[4..8], &["3", "0", "0", "0"], "{table}");
    assert!(!table.contains(secret));
    assert!(
        !w.log_text().contains(secret),
        "the log never shows a secret"
    );
}

/// A stored subscription is durable: after a restart it is listed and delivered to without
/// a new verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_survives_a_worker_restart() {
    let (_dir, _audit, sub, mut w) = hub_worker().await;
    let c = client();
    sub.expect("/cb/a", Answer::Echo, Some("s-1"));
    let (status, body) = subscribe(&c, &w, &sub.url("/cb/a"), Some("s-1"), None).await;
    assert_eq!(status, 202, "{body}");
    let before = wait_listing(&c, &w, "active", |l| sub_of(l, &sub.url("/cb/a")).is_some()).await;
    assert!(w.terminate().success());
    w.spawn();
    let after = listing(&c, &w).await;
    let (a, b) = (
        sub_of(&before, &sub.url("/cb/a")).unwrap(),
        sub_of(&after, &sub.url("/cb/a")).expect("listed after the restart"),
    );
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["expiresAt"], b["expiresAt"]);
    send_and_settle(&c, &w, r#"{"after":"restart"}"#).await;
    let got = sub.wait_deliveries("/cb/a", 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, br#"{"after":"restart"}"#);
    assert_eq!(got[0].signature_ok, Some(true), "the secret survived too");
    assert_eq!(
        sub.verifications("/cb/a").len(),
        1,
        "no second verification"
    );
}

/// What the hub refuses before anything is stored or any request goes out: a wrong or
/// missing API key (401), a form that is not one or lacks what the spec requires (415,
/// 400), a callback not in the allow-list (403, a loopback address on another address or
/// port), a hub path of a bridge without subscriptions (404), and other methods (405).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_requests_store_nothing_and_send_nothing() {
    let (_dir, _audit, sub, w) = hub_worker().await;
    let c = client();
    sub.expect("/cb/x", Answer::Echo, None);
    let t = topic(&w);
    let cb = sub.url("/cb/x");
    let good = form(&[
        ("hub.mode", "subscribe"),
        ("hub.topic", &t),
        ("hub.callback", &cb),
    ]);
    let ct = "application/x-www-form-urlencoded";
    assert_eq!(hub_post(&c, &w, None, ct, good.clone()).await.0, 401);
    assert_eq!(
        hub_post(&c, &w, Some("wrong-key"), ct, good.clone())
            .await
            .0,
        401
    );
    let (status, body) = hub_post(&c, &w, Some(KEY), "application/json", good.clone()).await;
    assert_eq!(status, 415, "{body}");
    for (f, why) in [
        (
            form(&[("hub.topic", &t), ("hub.callback", &cb)]),
            "hub.mode is missing",
        ),
        (
            form(&[("hub.mode", "subscribe"), ("hub.topic", &t)]),
            "hub.callback is missing",
        ),
        (
            form(&[("hub.mode", "subscribe"), ("hub.callback", &cb)]),
            "hub.topic is missing",
        ),
        (
            form(&[
                ("hub.mode", "subscribe"),
                ("hub.topic", &w.url("/hub/default/plain")),
                ("hub.callback", &cb),
            ]),
            "this hub's URL",
        ),
        (
            form(&[
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", &cb),
                ("hub.lease_seconds", "ten"),
            ]),
            "not a positive number",
        ),
        (
            form(&[
                ("hub.mode", "publish"),
                ("hub.topic", &t),
                ("hub.callback", &cb),
            ]),
            "not subscribe or unsubscribe",
        ),
        (
            form(&[
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", "ftp://127.0.0.1/x"),
            ]),
            "http:// or https://",
        ),
        (
            "hub.mode=subscribe&hub.topic=%zz".to_string(),
            "percent-encoding",
        ),
    ] {
        let (status, body) = hub_post(&c, &w, Some(KEY), ct, f.clone()).await;
        assert_eq!(status, 400, "{f}: {body}");
        let msg: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(msg["error"].as_str().unwrap().contains(why), "{f}: {body}");
    }
    // A loopback callback the allow-list does not name: another port, another address.
    let other_port = format!("http://127.0.0.1:{}/cb/x", free_port());
    let other_addr = format!("http://127.0.0.2:{}/cb/x", sub.addr.port());
    for callback in [
        other_port.as_str(),
        other_addr.as_str(),
        "http://169.254.169.254/latest",
    ] {
        let (status, body) = hub_post(
            &c,
            &w,
            Some(KEY),
            ct,
            form(&[
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", callback),
            ]),
        )
        .await;
        assert_eq!(status, 403, "{callback}: {body}");
        assert!(
            body.contains("hub.callback refused") && body.contains("allowedCallbackHosts"),
            "{body}"
        );
    }
    let resp = c.get(w.url("/hub/default/orders")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let resp = c
        .post(w.url("/hub/default/plain"))
        .header("x-api-key", KEY)
        .header("content-type", ct)
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // Nothing was stored and no request went out.
    let l = listing(&c, &w).await;
    assert_eq!(l["subscriptions"], serde_json::json!([]));
    assert_eq!(l["verifications"], serde_json::json!([]));
    assert!(sub.verifications("/cb/x").is_empty());
    // The bridge's ingress is untouched by the hub's key.
    let (status, _) = post(&c, &w.url("/hooks/default/orders"), "{}", &[]).await;
    assert_eq!(status, 202);
}

/// A callback that does not echo `hub.challenge` is not subscribed: the listing says why,
/// and events get no job for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_does_not_echo_the_challenge_is_not_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Sink::ok().await;
    let sub = Subscriber::start().await;
    // An allowed port where nothing listens: the verification cannot connect.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let w = Worker::start(
        dir.path(),
        &manifests(
            dir.path(),
            &manifest(&audit, &sub, &format!(", \"{dead}\"")),
        ),
        &[],
    );
    let c = client();
    let dead_cb = format!("{dead}/cb?token=subscriber-capability");
    let (status, body) = subscribe(&c, &w, &dead_cb, None, None).await;
    assert_eq!(status, 202, "{body}");
    sub.expect("/cb/mute", Answer::WrongBody, Some("s"));
    let (status, body) = subscribe(&c, &w, &sub.url("/cb/mute"), Some("s"), None).await;
    assert_eq!(status, 202, "{body}");
    // A callback that answers 404 to the verification is refused as well.
    let (status, body) = subscribe(&c, &w, &sub.url("/cb/unknown"), None, None).await;
    assert_eq!(status, 202, "{body}");
    let l = wait_listing(&c, &w, "the three verifications failed", |l| {
        verification_of(l, &sub.url("/cb/mute"), "subscribe").is_some()
            && verification_of(l, &sub.url("/cb/unknown"), "subscribe").is_some()
            && verification_of(l, &dead_cb, "subscribe").is_some()
    })
    .await;
    let v = verification_of(&l, &dead_cb, "subscribe").unwrap();
    assert_eq!(v["verified"], false);
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("the verification request failed"), "{v}");
    assert!(
        !reason.contains("hub.challenge") && !reason.contains("subscriber-capability"),
        "the reason never quotes the verification URL: {v}"
    );
    let v = verification_of(&l, &sub.url("/cb/mute"), "subscribe").unwrap();
    assert_eq!(v["verified"], false);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("did not echo hub.challenge"),
        "{v}"
    );
    let v = verification_of(&l, &sub.url("/cb/unknown"), "subscribe").unwrap();
    assert_eq!(v["verified"], false);
    assert!(v["reason"].as_str().unwrap().contains("404"), "{v}");
    assert_eq!(l["subscriptions"], serde_json::json!([]));
    let ev = send_and_settle(&c, &w, r#"{"n":1}"#).await;
    assert!(websub_jobs(&ev).is_empty(), "{ev:#}");
    assert!(sub.deliveries("/cb/mute").is_empty());
}

/// A lease ends: the subscription shows `expired` and the events after it get no job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_expiry_stops_deliveries() {
    let (_dir, _audit, sub, w) = hub_worker().await;
    let c = client();
    sub.expect("/cb/short", Answer::Echo, None);
    sub.expect("/cb/long", Answer::Echo, None);
    let (status, _) = subscribe(&c, &w, &sub.url("/cb/short"), None, Some("2")).await;
    assert_eq!(status, 202);
    let (status, _) = subscribe(&c, &w, &sub.url("/cb/long"), None, Some("3600")).await;
    assert_eq!(status, 202);
    wait_listing(&c, &w, "both active", |l| {
        l["subscriptions"].as_array().unwrap().len() == 2
    })
    .await;
    // Every job of the first event finishes (delivered to the short lease, or ended if it
    // expired first) before the test goes on.
    let first = send_and_settle(&c, &w, r#"{"n":1}"#).await;
    assert!(!websub_jobs(&first).is_empty(), "{first:#}");
    let l = wait_listing(&c, &w, "the short lease expired", |l| {
        sub_of(l, &sub.url("/cb/short")).is_some_and(|s| s["state"] == "expired")
    })
    .await;
    let short_id = sub_of(&l, &sub.url("/cb/short")).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let long_id = sub_of(&l, &sub.url("/cb/long")).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let delivered_before = sub.deliveries("/cb/short").len();
    let second = send_and_settle(&c, &w, r#"{"n":2}"#).await;
    let names: Vec<String> = websub_jobs(&second)
        .iter()
        .map(|j| j["destination"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec![format!("websub:{long_id}")], "{second:#}");
    assert!(!names.contains(&format!("websub:{short_id}")));
    assert_eq!(sub.wait_deliveries("/cb/long", 2).await.len(), 2);
    // The long subscriber has both events: the short one got nothing more.
    assert_eq!(sub.deliveries("/cb/short").len(), delivered_before);
    assert!(
        sub.deliveries("/cb/short")
            .iter()
            .all(|d| d.body == br#"{"n":1}"#)
    );
}

/// Unsubscribe is verified like a subscription, then deliveries stop; an unsubscribe the
/// callback does not confirm changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsubscribe_stops_deliveries() {
    let (_dir, _audit, sub, w) = hub_worker().await;
    let c = client();
    sub.expect("/cb/a", Answer::Echo, None);
    let (status, _) = subscribe(&c, &w, &sub.url("/cb/a"), None, None).await;
    assert_eq!(status, 202);
    wait_listing(&c, &w, "active", |l| sub_of(l, &sub.url("/cb/a")).is_some()).await;
    send_and_settle(&c, &w, r#"{"n":1}"#).await;
    assert_eq!(sub.wait_deliveries("/cb/a", 1).await.len(), 1);
    let t = topic(&w);
    let unsubscribe = form(&[
        ("hub.mode", "unsubscribe"),
        ("hub.topic", &t),
        ("hub.callback", &sub.url("/cb/a")),
    ]);
    let ct = "application/x-www-form-urlencoded";
    // Not confirmed: still subscribed.
    sub.expect("/cb/a", Answer::WrongBody, None);
    let (status, body) = hub_post(&c, &w, Some(KEY), ct, unsubscribe.clone()).await;
    assert_eq!(status, 202, "{body}");
    let l = wait_listing(&c, &w, "the unconfirmed unsubscribe", |l| {
        verification_of(l, &sub.url("/cb/a"), "unsubscribe").is_some()
    })
    .await;
    assert_eq!(
        verification_of(&l, &sub.url("/cb/a"), "unsubscribe").unwrap()["verified"],
        false
    );
    assert!(sub_of(&l, &sub.url("/cb/a")).is_some());
    // Confirmed: gone.
    sub.expect("/cb/a", Answer::Echo, None);
    let (status, body) = hub_post(&c, &w, Some(KEY), ct, unsubscribe).await;
    assert_eq!(status, 202, "{body}");
    wait_listing(&c, &w, "unsubscribed", |l| {
        sub_of(l, &sub.url("/cb/a")).is_none()
    })
    .await;
    let v = sub.verifications("/cb/a");
    let last = v.last().unwrap();
    assert_eq!(last.query["hub.mode"], "unsubscribe");
    assert!(!last.query.contains_key("hub.lease_seconds"));
    let ev = send_and_settle(&c, &w, r#"{"n":2}"#).await;
    assert!(websub_jobs(&ev).is_empty(), "{ev:#}");
    assert_eq!(sub.deliveries("/cb/a").len(), 1);
}

/// A subscriber gets what passed the bridge's filter and steps, as the steps left it (the
/// step's body, signed): a subscription is delivered like a destination. Needs
/// `make plugins`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_get_what_passed_the_filter_and_the_steps() {
    let wasm = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins/dist/tagger.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `make plugins` first",
        wasm.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let audit = Sink::ok().await;
    let sub = Subscriber::start().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: tagger}}
spec:
  source: {{file: "{wasm}"}}
  variables: [{{name: tag, value: blue}}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders}}
spec:
  filter: "payload.keep"
  steps: [{{plugin: tagger}}]
  destinations:
  - {{name: audit, url: "{audit}"}}
  subscriptions:
    enabled: true
    auth: {{apiKey: {{secretRef: {{name: hub, key: key}}}}}}
    allowedCallbackHosts: ["http://127.0.0.1:{port}"]
---
apiVersion: v1
kind: Secret
metadata: {{name: hub}}
stringData: {{key: {KEY}}}
"#,
        wasm = wasm.display(),
        audit = audit.url("/audit"),
        port = sub.addr.port(),
    );
    let w = Worker::start(dir.path(), &manifests(dir.path(), &yaml), &[]);
    let c = client();
    sub.expect("/cb/s", Answer::Echo, Some("step-secret"));
    let (status, body) = subscribe(&c, &w, &sub.url("/cb/s"), Some("step-secret"), None).await;
    assert_eq!(status, 202, "{body}");
    wait_listing(&c, &w, "active", |l| sub_of(l, &sub.url("/cb/s")).is_some()).await;
    // Filtered out: no job for anyone.
    let (status, v) = post(
        &c,
        &w.url("/hooks/default/orders"),
        r#"{"keep":false}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let dropped = wait_status(&c, &w, v["id"].as_str().unwrap(), "filtered", LIMIT).await;
    assert_eq!(dropped["status"], "filtered");
    assert!(websub_jobs(&dropped).is_empty());
    let ev = send_and_settle(&c, &w, r#"{"keep":true,"n":7}"#).await;
    assert_eq!(websub_jobs(&ev).len(), 1, "{ev:#}");
    let got = sub.wait_deliveries("/cb/s", 1).await;
    assert_eq!(got.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"keep": true, "n": 7, "tagged": true, "tag": "blue"})
    );
    assert_eq!(got[0].signature_ok, Some(true));
    assert_eq!(audit.count("/audit"), 1);
}

/// The callback policy holds again at delivery: once the hub's allow-list no longer names
/// a subscribed callback (the manifest edited), its deliveries fail with the reason in the
/// attempt log, are retried as the hub's policy says, then dead-lettered; nothing reaches
/// the callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_no_longer_allowed_is_refused_at_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Sink::ok().await;
    let sub = Subscriber::start().await;
    let m = manifests(dir.path(), &manifest(&audit, &sub, ""));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    sub.expect("/cb/a", Answer::Echo, None);
    let (status, _) = subscribe(&c, &w, &sub.url("/cb/a"), None, None).await;
    assert_eq!(status, 202);
    wait_listing(&c, &w, "active", |l| sub_of(l, &sub.url("/cb/a")).is_some()).await;
    // The allow-list now names another port only.
    let v1 = get_json(&c, &w.admin_url("/api/v1/config")).await["version"].clone();
    let edited = manifest(&audit, &sub, "").replace(
        &format!("\"http://127.0.0.1:{}\"", sub.addr.port()),
        &format!("\"http://127.0.0.1:{}\"", free_port()),
    );
    std::fs::write(m.join("bridges.yaml"), edited).unwrap();
    let deadline = Instant::now() + LIMIT;
    while get_json(&c, &w.admin_url("/api/v1/config")).await["version"] == v1 {
        assert!(Instant::now() < deadline, "not reloaded:\n{}", w.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ev = send_and_settle(&c, &w, r#"{"n":1}"#).await;
    let jobs = websub_jobs(&ev);
    assert_eq!(jobs.len(), 1, "{ev:#}");
    assert_eq!(jobs[0]["status"], "dead", "{ev:#}");
    let attempts = jobs[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "the first attempt and 3 retries: {ev:#}");
    for a in attempts {
        let e = a["error"].as_str().unwrap();
        assert!(
            e.contains("callback refused") && e.contains("not in the hub's allowedCallbackHosts"),
            "{e}"
        );
        assert!(a["statusCode"].is_null());
    }
    assert!(sub.deliveries("/cb/a").is_empty());
    let l = listing(&c, &w).await;
    let s = sub_of(&l, &sub.url("/cb/a")).unwrap();
    assert_eq!(s["lastHour"]["dead"], 1);
    assert_eq!(s["lastHour"]["failed"], 4);
}

/// On PostgreSQL (a real server, `common/postgres.rs`) a subscription verified through one
/// worker is stored for the pool: another worker of the same store lists it and delivers
/// the events it accepts to it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_postgres_a_subscription_made_on_one_worker_is_served_by_another() {
    let url = postgres::url();
    let schema = postgres::fresh_schema("websub");
    let audit = Sink::ok().await;
    let sub = Subscriber::start().await;
    let (d0, d1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m = manifests(d0.path(), &manifest(&audit, &sub, ""));
    let args = ["--postgres", &url, "--postgres-schema", &schema];
    let a = Worker::start(d0.path(), &m, &args);
    let b = Worker::start(d1.path(), &m, &args);
    let c = client();
    sub.expect("/cb/pool", Answer::Echo, Some("pool-secret"));
    let (status, body) = subscribe(&c, &a, &sub.url("/cb/pool"), Some("pool-secret"), None).await;
    assert_eq!(status, 202, "{body}");
    wait_listing(&c, &a, "stored through a", |l| {
        sub_of(l, &sub.url("/cb/pool")).is_some()
    })
    .await;
    // b reads the store again within its refresh interval.
    let lb = wait_listing(&c, &b, "listed by b", |l| {
        sub_of(l, &sub.url("/cb/pool")).is_some()
    })
    .await;
    assert_eq!(
        sub_of(&lb, &sub.url("/cb/pool")).unwrap()["state"],
        "active"
    );
    let ev = send_and_settle(&c, &b, r#"{"via":"b"}"#).await;
    assert_eq!(websub_jobs(&ev).len(), 1, "{ev:#}");
    let got = sub.wait_deliveries("/cb/pool", 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, br#"{"via":"b"}"#);
    assert_eq!(got[0].signature_ok, Some(true));
    assert_eq!(sub.verifications("/cb/pool").len(), 1);
}

/// `causeway store export | causeway store import` moves subscriptions with the pool: after
/// a move from the embedded store to PostgreSQL the subscription is listed and served, its
/// secret kept, without a new verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_move_with_the_store() {
    let audit = Sink::ok().await;
    let sub = Subscriber::start().await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), &manifest(&audit, &sub, ""));
    let mut w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    sub.expect("/cb/moved", Answer::Echo, Some("moved-secret"));
    let (status, _) = subscribe(&c, &w, &sub.url("/cb/moved"), Some("moved-secret"), None).await;
    assert_eq!(status, 202);
    let before = wait_listing(&c, &w, "active", |l| {
        sub_of(l, &sub.url("/cb/moved")).is_some()
    })
    .await;
    assert!(w.terminate().success());
    let bin = env!("CARGO_BIN_EXE_causeway");
    let export = Command::new(bin)
        .args(["store", "export", "--data-dir"])
        .arg(&w.data_dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{report}");
    assert!(report.contains("1 subscriptions"), "{report}");
    let url = postgres::url();
    let schema = postgres::fresh_schema("websub_moved");
    let mut child = Command::new(bin)
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
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&export.stdout)
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 subscriptions"));
    let dir2 = tempfile::tempdir().unwrap();
    let w2 = Worker::start(
        dir2.path(),
        &m,
        &["--postgres", &url, "--postgres-schema", &schema],
    );
    let after = listing(&c, &w2).await;
    assert_eq!(
        sub_of(&after, &sub.url("/cb/moved")).unwrap()["id"],
        sub_of(&before, &sub.url("/cb/moved")).unwrap()["id"]
    );
    send_and_settle(&c, &w2, r#"{"moved":true}"#).await;
    let got = sub.wait_deliveries("/cb/moved", 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].signature_ok, Some(true));
    assert_eq!(sub.verifications("/cb/moved").len(), 1);
}

/// `maxSubscriptions` bounds the live subscriptions of a hub: a new callback past it gets
/// 403 before any verification; renewing a subscribed callback still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_keeps_at_most_max_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Sink::ok().await;
    let sub = Subscriber::start().await;
    let yaml = manifest(&audit, &sub, "").replace(
        "    timeout: 5s\n",
        "    timeout: 5s\n    maxSubscriptions: 1\n",
    );
    let w = Worker::start(dir.path(), &manifests(dir.path(), &yaml), &[]);
    let c = client();
    sub.expect("/cb/one", Answer::Echo, None);
    sub.expect("/cb/two", Answer::Echo, None);
    let (status, _) = subscribe(&c, &w, &sub.url("/cb/one"), None, None).await;
    assert_eq!(status, 202);
    wait_listing(&c, &w, "one", |l| sub_of(l, &sub.url("/cb/one")).is_some()).await;
    let (status, body) = subscribe(&c, &w, &sub.url("/cb/two"), None, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("maximum of 1 subscriptions"), "{body}");
    assert!(sub.verifications("/cb/two").is_empty());
    // A renewal of the one there is not a new subscription.
    let (status, body) = subscribe(&c, &w, &sub.url("/cb/one"), None, Some("900")).await;
    assert_eq!(status, 202, "{body}");
    let l = wait_listing(&c, &w, "renewed", |l| {
        sub_of(l, &sub.url("/cb/one")).is_some_and(|s| s["leaseSeconds"] == 900)
    })
    .await;
    assert_eq!(l["subscriptions"].as_array().unwrap().len(), 1);
}
