//! OpenTelemetry traces, collected by a real OTLP receiver: Jaeger (all-in-one, built from
//! its Go module by `scripts/jaeger.sh`) on free loopback ports with in-memory storage.
//! The worker is the real binary with the standard `OTEL_*` variables.
//!
//! One event with a sender's `traceparent` goes through a filter, a plugin step (tagger)
//! and a destination that fails once: the destination sees the sender's trace id with the
//! attempt's span id; Jaeger holds the accepting span, the filter, the steps and both
//! attempts in that one trace; the admin API and the attempt log name it. An event without
//! a `traceparent` starts a trace of its own. A plugin's outbound request joins the trace
//! of its call. A retry made after a restart joins the trace it belongs to. With export
//! off, nothing reaches the receiver and the ids are still kept.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";
const SECRET: &str = "tr4ce-s3cret";

fn wasm(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `make plugins` first",
        p.display()
    );
    p.display().to_string()
}

/// Jaeger all-in-one: OTLP/HTTP in, the query API out, both on loopback; stopped by PID.
struct Jaeger {
    child: Option<Child>,
    otlp: SocketAddr,
    query: SocketAddr,
    log: PathBuf,
}

impl Jaeger {
    /// The binary: `$CAUSEWAY_JAEGER_BIN`, else what `scripts/jaeger.sh` builds (or has).
    fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("CAUSEWAY_JAEGER_BIN") {
            return PathBuf::from(p);
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/jaeger.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/jaeger.sh");
        assert!(out.status.success(), "scripts/jaeger.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    }

    fn start(dir: &Path) -> Jaeger {
        let bin = Jaeger::binary();
        let otlp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let query: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let grpc = free_port();
        let health = free_port();
        // Only what the test needs, every port on loopback; Jaeger's own telemetry off
        // (it would try to export its traces to localhost:4317).
        let config = format!(
            r#"
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {{level: none}}
    traces: {{level: none}}
    logs: {{level: info}}
extensions:
  jaeger_query:
    storage: {{traces: mem}}
    http: {{endpoint: "{query}"}}
    grpc: {{endpoint: "127.0.0.1:{grpc}"}}
  jaeger_storage:
    backends:
      mem: {{memory: {{max_traces: 1000}}}}
  healthcheckv2:
    use_v2: true
    http: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  otlp:
    protocols:
      http: {{endpoint: "{otlp}"}}
exporters:
  jaeger_storage_exporter: {{trace_storage: mem}}
"#
        );
        let cfg = dir.join("jaeger.yaml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("jaeger.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(format!("file:{}", cfg.display()))
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") {
                cmd.env_remove(k);
            }
        }
        let j = Jaeger {
            child: Some(cmd.spawn().expect("start jaeger")),
            otlp,
            query,
            log,
        };
        let deadline = Instant::now() + WAIT;
        while !matches!(
            blocking_get(&format!("http://127.0.0.1:{health}/status")),
            Ok((200, _))
        ) {
            assert!(
                Instant::now() < deadline,
                "jaeger did not start; log:\n{}",
                std::fs::read_to_string(&j.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        j
    }

    /// The trace as the query API returns it (`data[0]`), None while it has none.
    async fn trace(&self, c: &reqwest::Client, id: &str) -> Option<Value> {
        let resp = c
            .get(format!("http://{}/api/traces/{id}", self.query))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let v: Value = resp.json().await.ok()?;
        v["data"].get(0).cloned()
    }

    /// Wait until the trace has at least `n` spans (bounded); returns it.
    async fn wait_spans(&self, c: &reqwest::Client, id: &str, n: usize) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(t) = self.trace(c, id).await
                && t["spans"].as_array().is_some_and(|s| s.len() >= n)
            {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "trace {id} never had {n} spans: {:#}",
                self.trace(c, id).await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The spans of a trace named `name`.
fn spans<'a>(trace: &'a Value, name: &str) -> Vec<&'a Value> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["operationName"] == name)
        .collect()
}

fn one<'a>(trace: &'a Value, name: &str) -> &'a Value {
    let s = spans(trace, name);
    assert_eq!(s.len(), 1, "one span {name:?} in {trace:#}");
    s[0]
}

/// The span a span is a child of (its CHILD_OF reference).
fn parent_of(span: &Value) -> Option<&str> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .and_then(|r| r["spanID"].as_str())
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

/// `traceparent` of a request the sink got: (trace id, span id, flags).
fn traceparent(r: &Received) -> (String, String, String) {
    let tp = r
        .headers
        .get("traceparent")
        .expect("a traceparent header")
        .to_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn is_trace_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

fn bridges(sink: &Sink) -> String {
    format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: tagger}}
spec:
  source: {{file: "{tagger}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: fx-forbidden}}
spec:
  source: {{file: "{forbidden}"}}
  allowedOutboundHosts: ["http://{sink_addr}"]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders}}
spec:
  filter: "payload.amount >= 10"
  steps: [{{plugin: tagger}}]
  destinations:
  - name: crm
    url: "{crm}"
    retries: 3
    backoff: {{policy: fixed, delays: [100ms]}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: later}}
spec:
  destinations:
  - name: later
    url: "{later}"
    retries: 3
    backoff: {{policy: fixed, delays: [5s]}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: chain}}
spec:
  steps: [{{plugin: fx-forbidden}}]
  destinations:
  - name: sink
    url: "{chain}"
"#,
        tagger = wasm("tagger"),
        forbidden = wasm("fx-forbidden"),
        sink_addr = sink.addr,
        crm = sink.url("/crm"),
        chain = sink.url("/chain"),
        later = sink.url("/later"),
    )
}

/// `/crm` fails its first request of each event (503), then answers 200; `/later` fails
/// its first request.
async fn sink() -> Sink {
    Sink::start(|n, r| match r.path.as_str() {
        "/crm" if n % 2 == 0 => (503, vec![]),
        "/later" if n == 0 => (503, vec![]),
        _ => (200, vec![]),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_senders_traceparent_through_filter_step_and_every_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let jaeger = Jaeger::start(dir.path());
    let sink = sink().await;
    let m = manifests(dir.path(), &bridges(&sink));
    let endpoint = format!("http://{}", jaeger.otlp);
    let mut w = Worker::start_with_env(
        dir.path(),
        &m,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "causeway-traces-test"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            // Export within a fraction of a second (the SDK's default is 5 s).
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    assert!(
        w.log_text().contains("traces: exported over OTLP"),
        "{}",
        w.log_text()
    );
    let c = client();

    // 1. The sender's traceparent: everything joins its trace.
    let sent = format!("00-{TRACE_ID}-{SENDER_SPAN}-01");
    let (s, v) = post(
        &c,
        &w.url("/hooks/default/orders"),
        r#"{"amount": 42}"#,
        &[
            ("traceparent", &sent),
            ("tracestate", "vendor=abc"),
            ("authorization", &format!("Bearer {SECRET}")),
        ],
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let ev = wait_status(&c, &w, &id, "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}");

    // The destination saw the sender's trace, each attempt as a span of its own, and the
    // sender's tracestate passed on.
    let crm = sink.requests("/crm");
    assert_eq!(crm.len(), 2, "one failure, one success");
    let (t1, s1, f1) = traceparent(&crm[0]);
    let (t2, s2, f2) = traceparent(&crm[1]);
    assert_eq!((t1.as_str(), t2.as_str()), (TRACE_ID, TRACE_ID));
    assert_eq!((f1.as_str(), f2.as_str()), ("01", "01"));
    assert_ne!(s1, s2, "each attempt is a span of its own");
    assert_ne!(s1, SENDER_SPAN);
    assert_eq!(crm[1].headers.get("tracestate").unwrap(), "vendor=abc");

    // The admin API: the event's trace id, and each attempt's span in the attempt log.
    assert_eq!(ev["traceId"], TRACE_ID, "{ev:#}");
    let deliveries = ev["deliveries"].as_array().unwrap();
    let crm_job = deliveries
        .iter()
        .find(|d| d["destination"] == "crm")
        .unwrap();
    let attempts = crm_job["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{ev:#}");
    assert_eq!(attempts[0]["statusCode"], 503);
    assert_eq!(attempts[1]["statusCode"], 200);
    for (a, span) in attempts.iter().zip([&s1, &s2]) {
        assert_eq!(a["traceId"], TRACE_ID, "{a:#}");
        assert_eq!(a["spanId"], span.as_str(), "{a:#}");
    }
    let steps_job = deliveries
        .iter()
        .find(|d| d["destination"] == "(steps)")
        .unwrap();
    let steps_span = steps_job["attempts"][0]["spanId"].as_str().unwrap();
    assert_eq!(steps_job["attempts"][0]["traceId"], TRACE_ID);
    // The list of events names the trace too.
    let list = get_json(&c, &w.admin_url("/api/v1/events?bridge=default/orders")).await;
    assert_eq!(list["events"][0]["traceId"], TRACE_ID, "{list:#}");

    // Jaeger: one trace with the accepting span (child of the sender's), the filter, the
    // steps with the plugin call, and both attempts, each a child of the right span.
    let trace = jaeger.wait_spans(&c, TRACE_ID, 6).await;
    assert_eq!(trace["traceID"], TRACE_ID);
    let accept = one(&trace, "accept default/orders");
    assert_eq!(parent_of(accept), Some(SENDER_SPAN), "{accept:#}");
    assert_eq!(accept["references"][0]["traceID"], TRACE_ID);
    assert_eq!(
        tag(accept, "http.response.status_code"),
        Some(&Value::from(202))
    );
    assert_eq!(
        tag(accept, "causeway.event.id"),
        Some(&Value::from(id.as_str()))
    );
    let accept_id = accept["spanID"].as_str().unwrap();
    let filter = one(&trace, "filter");
    assert_eq!(parent_of(filter), Some(accept_id));
    assert_eq!(
        tag(filter, "causeway.filter.result"),
        Some(&Value::from("pass"))
    );
    let steps = one(&trace, "steps default/orders");
    assert_eq!(steps["spanID"], steps_span);
    assert_eq!(parent_of(steps), Some(accept_id));
    let step = one(&trace, "step tagger");
    assert_eq!(parent_of(step), Some(steps_span));
    assert_eq!(
        tag(step, "http.response.status_code"),
        Some(&Value::from(200))
    );
    let delivers = spans(&trace, "deliver crm");
    assert_eq!(delivers.len(), 2, "{trace:#}");
    for (span_id, status, n) in [(&s1, 503, 1), (&s2, 200, 2)] {
        let d = delivers
            .iter()
            .find(|d| d["spanID"] == span_id.as_str())
            .unwrap_or_else(|| panic!("no span {span_id} in {trace:#}"));
        assert_eq!(parent_of(d), Some(accept_id), "{d:#}");
        assert_eq!(
            tag(d, "http.response.status_code"),
            Some(&Value::from(status))
        );
        assert_eq!(tag(d, "causeway.attempt"), Some(&Value::from(n)));
        assert_eq!(tag(d, "causeway.destination"), Some(&Value::from("crm")));
    }
    let failed = delivers
        .iter()
        .find(|d| d["spanID"] == s1.as_str())
        .unwrap();
    assert_eq!(tag(failed, "error"), Some(&Value::from(true)), "{failed:#}");
    let service = trace["processes"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["serviceName"].as_str().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(service, vec!["causeway-traces-test"]);

    // 2. No traceparent: a trace of its own, rooted at the accepting span.
    let (s, v) = post(
        &c,
        &w.url("/hooks/default/orders"),
        r#"{"amount": 50}"#,
        &[],
    )
    .await;
    assert_eq!(s, 202);
    let id2 = v["id"].as_str().unwrap().to_string();
    let ev2 = wait_status(&c, &w, &id2, "delivered", WAIT).await;
    let fresh = ev2["traceId"].as_str().unwrap().to_string();
    assert!(is_trace_id(&fresh), "{ev2:#}");
    assert_ne!(fresh, TRACE_ID);
    let crm = sink.requests("/crm");
    assert_eq!(crm.len(), 4);
    assert_eq!(traceparent(&crm[3]).0, fresh);
    let trace2 = jaeger.wait_spans(&c, &fresh, 6).await;
    let root = one(&trace2, "accept default/orders");
    assert_eq!(parent_of(root), None, "a new trace starts here: {root:#}");
    assert_eq!(spans(&trace2, "deliver crm").len(), 2);

    // 3. A plugin's own outbound request carries its call's trace (the step's span).
    let upstream = sink.url("/upstream");
    let (s, v) = post(
        &c,
        &w.url("/hooks/default/chain"),
        &upstream,
        &[("traceparent", &sent)],
    )
    .await;
    assert_eq!(s, 202);
    let id3 = v["id"].as_str().unwrap().to_string();
    let ev3 = wait_status(&c, &w, &id3, "delivered", WAIT).await;
    assert_eq!(ev3["status"], "delivered", "{ev3:#}");
    // Steps run at least once: on a loaded machine the plugin's own call can fail and the
    // chain runs again. Each run is a `steps` span with its `step` child, and each outbound
    // request carries the span of the run that made it.
    let runs = ev3["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == "(steps)")
        .and_then(|d| d["attempts"].as_array())
        .map_or(0, Vec::len);
    assert!(runs >= 1, "{ev3:#}");
    let up = sink.requests("/upstream");
    assert!(
        (1..=runs).contains(&up.len()),
        "{} calls, {ev3:#}",
        up.len()
    );
    // The first event's six spans, and this one's: accept, deliver, and a steps and a step
    // span for each run.
    let trace3 = jaeger.wait_spans(&c, TRACE_ID, 6 + 2 + 2 * runs).await;
    let plugin_steps: Vec<&str> = spans(&trace3, "step fx-forbidden")
        .iter()
        .map(|s| s["spanID"].as_str().unwrap())
        .collect();
    assert_eq!(plugin_steps.len(), runs, "{trace3:#}");
    for r in &up {
        let (ut, us, _) = traceparent(r);
        assert_eq!(ut, TRACE_ID);
        assert!(plugin_steps.contains(&us.as_str()), "{us} in {trace3:#}");
    }

    // No header of a request is recorded in a span: its credentials stay out.
    let text = serde_json::to_string(&trace3).unwrap();
    assert!(!text.contains(SECRET), "{text}");

    // 4. A retry after a restart still belongs to the event's trace: the context is stored
    // with the event, not held by the process that accepted it.
    let later_trace = "0af7651916cd43dd8448eb211c80319c";
    let (s, v) = post(
        &c,
        &w.url("/hooks/default/later"),
        "{}",
        &[(
            "traceparent",
            &format!("00-{later_trace}-b7ad6b7169203331-01"),
        )],
    )
    .await;
    assert_eq!(s, 202);
    let id4 = v["id"].as_str().unwrap().to_string();
    assert_eq!(sink.wait_for("/later", 1, WAIT).await, 1);
    // The first attempt failed; its retry is due 5 s later. Stop the worker before then
    // (it exports its spans as it stops) and start it again on the same data.
    assert!(w.terminate().success());
    assert_eq!(sink.count("/later"), 1, "the retry ran before the restart");
    w.spawn();
    let ev4 = wait_status(&c, &w, &id4, "delivered", WAIT).await;
    assert_eq!(ev4["status"], "delivered", "{ev4:#}");
    let later = sink.requests("/later");
    assert_eq!(later.len(), 2);
    assert_eq!(traceparent(&later[0]).0, later_trace);
    assert_eq!(traceparent(&later[1]).0, later_trace);
    let trace4 = jaeger.wait_spans(&c, later_trace, 3).await;
    let accept = one(&trace4, "accept default/later")["spanID"]
        .as_str()
        .unwrap();
    let delivers = spans(&trace4, "deliver later");
    assert_eq!(delivers.len(), 2, "{trace4:#}");
    for d in &delivers {
        assert_eq!(parent_of(d), Some(accept), "{d:#}");
    }
    let mut sent_spans: Vec<String> = later.iter().map(|r| traceparent(r).1).collect();
    let mut seen: Vec<String> = delivers
        .iter()
        .map(|d| d["spanID"].as_str().unwrap().to_string())
        .collect();
    sent_spans.sort();
    seen.sort();
    assert_eq!(sent_spans, seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_export_off_nothing_reaches_the_receiver_and_the_trace_id_is_still_kept() {
    let dir = tempfile::tempdir().unwrap();
    let jaeger = Jaeger::start(dir.path());
    let sink = sink().await;
    let m = manifests(dir.path(), &bridges(&sink));
    let endpoint = format!("http://{}", jaeger.otlp);
    // An endpoint is named, and the SDK is disabled: off.
    let mut w = Worker::start_with_env(
        dir.path(),
        &m,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    assert!(!w.log_text().contains("traces: exported over OTLP"));
    let c = client();
    let sent = format!("00-{TRACE_ID}-{SENDER_SPAN}-01");
    let (s, v) = post(
        &c,
        &w.url("/hooks/default/orders"),
        r#"{"amount": 42}"#,
        &[("traceparent", &sent)],
    )
    .await;
    assert_eq!(s, 202);
    let id = v["id"].as_str().unwrap().to_string();
    let ev = wait_status(&c, &w, &id, "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}");
    assert_eq!(ev["traceId"], TRACE_ID);
    let crm = sink.requests("/crm");
    assert_eq!(crm.len(), 2);
    for (r, a) in crm.iter().zip(
        ev["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == "crm")
            .unwrap()["attempts"]
            .as_array()
            .unwrap(),
    ) {
        let (t, span, _) = traceparent(r);
        assert_eq!(t, TRACE_ID);
        assert_eq!(a["spanId"], span.as_str());
    }
    // A worker that stops exports what it has queued: after it stopped, the receiver has
    // nothing of this trace.
    assert!(w.terminate().success());
    assert_eq!(jaeger.trace(&c, TRACE_ID).await, None);
}
