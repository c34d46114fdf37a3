//! The plugin host against real components built from examples/plugins.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use causeway_config::{PluginRoute, SecretValue, SourceConfig, WhenBusy};
use causeway_plugins::{
    AllocatorKind, CallError, FileKv, MemoryKv, PluginHost, PoolingMode, sha256_hex,
};
use common::*;

const NS: &str = "shop";

/// Calls tagger in a loop until `stop`, asserting every call succeeds; returns how many.
fn hammer_tagger(host: PluginHost, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let resp = host
                .call(&plugin_ref(NS, "tagger"), req("POST", "/", r#"{"n":1}"#))
                .await
                .expect("tagger call during a bad call");
            assert_eq!(resp.status(), 200);
            assert_eq!(body_json(&resp)["tagged"], true);
            n += 1;
        }
        n
    })
}

/// Runs `bad` while tagger is called concurrently; every tagger call must succeed and
/// some must complete while the bad call is running.
async fn during_bad_call(th: &TestHost, name: &str, path: &str) -> (CallError, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let good = hammer_tagger(th.host.clone(), stop.clone());
    let started = Instant::now();
    let result = th
        .host
        .call(&plugin_ref(NS, name), req("POST", path, ""))
        .await;
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let good_calls = good.await.expect("tagger task");
    let err = result.expect_err("the misbehaving call must fail");
    eprintln!("{name}: {err} after {took:?}; {good_calls} tagger calls succeeded meanwhile");
    assert!(good_calls > 0, "no good call completed while {name} ran");
    (err, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_fail_alone_with_clear_errors_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let sink = serve(|_| async { ok("sink") }).await;

    let mut lp = plugin(NS, "fx-loop", &guest("fx-loop"));
    lp.timeout_ms = 400;
    let mut sleep = plugin(NS, "fx-sleep", &guest("fx-sleep"));
    sleep.timeout_ms = 400;
    let mut bomb = plugin(NS, "fx-membomb", &guest("fx-membomb"));
    bomb.memory_bytes = 48 << 20;
    let forbidden = plugin(NS, "fx-forbidden", &guest("fx-forbidden"));
    let mut wildcard = plugin(NS, "fx-forbidden-wild", &guest("fx-forbidden"));
    wildcard.allowed_outbound_hosts = vec!["http://*:*".into()];
    let trap = plugin(NS, "fx-trap", &guest("fx-trap"));
    let tagger = plugin(NS, "tagger", &guest("tagger"));
    let report = th
        .host
        .apply(&worker(
            "v1",
            vec![lp, sleep, bomb, forbidden, wildcard, trap, tagger],
        ))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.loaded.len(), 7);

    // A CPU loop is interrupted by the epoch deadline.
    let (err, took) = during_bad_call(&th, "fx-loop", "/").await;
    // An endless loop can only end by the deadline: the Timeout error is the proof.
    assert!(
        matches!(err, CallError::Timeout { .. }),
        "{err:?} after {took:?}"
    );
    assert_eq!(
        th.metric(
            "causeway_plugin_timeouts_total",
            &[("plugin", "shop/fx-loop")]
        ),
        1.0
    );

    // An idle guest (sleeping on a host timer) is stopped by the wall-clock deadline.
    let (err, took) = during_bad_call(&th, "fx-sleep", "/?ms=20000").await;
    assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
    // Stopped by the deadline, not by the end of the guest's own 20 s sleep.
    assert!(
        took < Duration::from_secs(20),
        "fx-sleep ran to its end: {took:?}"
    );

    // Growing memory past the limit fails the call as out-of-memory.
    let (err, _) = during_bad_call(&th, "fx-membomb", "/").await;
    assert!(
        matches!(err, CallError::OutOfMemory { limit_bytes, .. } if limit_bytes == 48 << 20),
        "{err:?}"
    );
    assert_eq!(
        th.metric(
            "causeway_plugin_oom_total",
            &[("plugin", "shop/fx-membomb")]
        ),
        1.0
    );

    // A panic is a trap; the guest's last words are in the error and the plugin log.
    let (err, _) = during_bad_call(&th, "fx-trap", "/boom").await;
    match &err {
        CallError::Trap { message, .. } => {
            assert!(message.contains("deliberate panic"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let (err, _) = during_bad_call(&th, "fx-trap", "/x?mode=unreachable").await;
    assert!(
        matches!(err, CallError::Trap { ref message, .. } if message.contains("unreachable")),
        "{err:?}"
    );
    assert_eq!(
        th.metric("causeway_plugin_traps_total", &[("plugin", "shop/fx-trap")]),
        2.0
    );
    assert!(
        th.host
            .logs(&plugin_ref(NS, "fx-trap"))
            .iter()
            .any(|l| l.contains("deliberate panic"))
    );

    // Outbound to a loopback sink that is not allowed: refused, the sink sees nothing.
    let url = format!("{}/steal", sink.url());
    let (err, _) = during_bad_call(&th, "fx-forbidden", &format!("/?url={}", pct(&url))).await;
    match &err {
        CallError::Refused { target, status, .. } => {
            assert_eq!(target, &sink.url());
            assert_eq!(*status, 502);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        th.metric(
            "causeway_plugin_outbound_refused_total",
            &[("plugin", "shop/fx-forbidden"), ("reason", "not_allowed")]
        ),
        1.0
    );
    // Allowed through `http://*:*`, but a wildcard never unlocks loopback.
    let (err, _) = during_bad_call(&th, "fx-forbidden-wild", &format!("/?url={}", pct(&url))).await;
    assert!(
        matches!(err, CallError::Refused { ref reason, .. } if reason.contains("loopback")),
        "{err:?}"
    );
    assert_eq!(
        th.metric(
            "causeway_plugin_outbound_refused_total",
            &[("plugin", "shop/fx-forbidden-wild"), ("reason", "address")]
        ),
        1.0
    );
    assert_eq!(sink.hits(), 0, "the sink must not have been reached");
    assert_eq!(
        th.metric("causeway_plugin_outbound_connects_total", &[]),
        0.0
    );

    // The host is fine afterwards: every plugin still answers.
    let resp = th
        .host
        .call(&plugin_ref(NS, "tagger"), req("POST", "/", r#"{"a":1}"#))
        .await
        .unwrap();
    assert_eq!(
        body_json(&resp),
        serde_json::json!({"a": 1, "tagged": true})
    );
    let resp = th
        .host
        .call(&plugin_ref(NS, "fx-sleep"), req("GET", "/?ms=1", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        th.metric(
            "causeway_plugin_calls_total",
            &[("plugin", "shop/tagger"), ("outcome", "ok")]
        ) > 5.0
    );
}

/// A host whose `fx-forbidden` may reach `allowed` and nothing else.
async fn forbidden_allowing(cache: &std::path::Path, allowed: String) -> TestHost {
    let th = mem_host(cache);
    let mut p = plugin(NS, "fx-forbidden", &guest("fx-forbidden"));
    p.allowed_outbound_hosts = vec![allowed];
    assert!(
        th.host
            .apply(&worker("v1", vec![p]))
            .await
            .errors
            .is_empty()
    );
    th
}

/// `fx-forbidden` fetching `url`, with `query` (`lateBody=1&`, say) before it.
async fn fetch_through_guest(
    th: &TestHost,
    query: &str,
    url: &str,
) -> Result<http::Response<Bytes>, CallError> {
    th.host
        .call(
            &plugin_ref(NS, "fx-forbidden"),
            req("GET", &format!("/?{query}url={}", pct(url)), ""),
        )
        .await
}

/// Asserts a 200, showing the body otherwise.
fn assert_ok(resp: &http::Response<Bytes>) {
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicitly_allowed_loopback_sink_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let sink = serve(|r| async move { ok(&format!("got {}", r.uri())) }).await;
    let th = forbidden_allowing(dir.path(), sink.url()).await;
    let url = format!("{}/allowed?z=1", sink.url());
    let resp = fetch_through_guest(&th, "", &url).await.unwrap();
    assert_ok(&resp);
    assert_eq!(body_json(&resp)["upstreamStatus"], 200);
    assert_eq!(sink.hits(), 1);
    assert_eq!(sink.seen.lock().unwrap()[0].1, "/allowed?z=1");
    assert_eq!(
        th.metric(
            "causeway_plugin_outbound_connects_total",
            &[("plugin", "shop/fx-forbidden")]
        ),
        1.0
    );
    // Another port of the same address is not allowed.
    let other = serve(|_| async { ok("other") }).await;
    let url = format!("{}/x", other.url());
    let err = fetch_through_guest(&th, "", &url).await.unwrap_err();
    assert!(matches!(err, CallError::Refused { .. }), "{err:?}");
    assert_eq!(other.hits(), 0);
}

/// hyper sends no body with a GET of unknown length and drops it once the head is out; a
/// guest still writing that (empty) body must not see its stream closed ("connection
/// reset") while its request in fact went through, nor when the host refused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_body_the_guest_writes_late_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let sink = serve(|_| async move { ok("late") }).await;
    let th = forbidden_allowing(dir.path(), sink.url()).await;
    let url = format!("{}/late", sink.url());
    let resp = fetch_through_guest(&th, "lateBody=1&", &url).await.unwrap();
    assert_ok(&resp);
    assert_eq!(body_json(&resp)["upstreamStatus"], 200);
    assert_eq!(sink.hits(), 1);
    // Nothing of the late body reached the sink: a GET of unknown length has none.
    {
        let seen = sink.seen.lock().unwrap();
        assert_eq!(seen[0].1, "/late");
        assert!(seen[0].2.get("transfer-encoding").is_none());
    }
    // A guest that writes the body only after sending the request, then waits for the
    // response (raw wasi:http, one step after the other) gets its answer too.
    let url = format!("{}/sequential", sink.url());
    let resp = fetch_through_guest(&th, "sequential=1&", &url)
        .await
        .unwrap();
    assert_ok(&resp);
    assert_eq!(sink.hits(), 2);
    // Refused (another port is not allowed): that guest, writing its body after the host
    // has refused the request, gets the refusal's code, not a closed stream.
    let other = serve(|_| async { ok("other") }).await;
    let url = format!("{}/x", other.url());
    let err = fetch_through_guest(&th, "sequential=1&", &url)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Refused { .. }), "{err:?}");
    assert_eq!(other.hits(), 0);
    let logs = th.host.logs(&plugin_ref(NS, "fx-forbidden"));
    let last = logs.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains("HttpRequestDenied"), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaining_runs_in_process_without_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let mut loyalty = plugin(NS, "loyalty", &guest("loyalty"));
    loyalty.allowed_outbound_hosts = vec!["http://store-api.internal".into()];
    let store = plugin(NS, "store-api", &guest("store-api"));
    let mut prober = plugin(NS, "prober", &guest("fx-forbidden"));
    prober.allowed_outbound_hosts = vec!["http://*.internal".into()];
    let mut other_ns = plugin("elsewhere", "store-api", &guest("store-api"));
    other_ns.max_concurrency = 1;
    let report = th
        .host
        .apply(&worker("v1", vec![loyalty, store, prober, other_ns]))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let order = r#"{"orderId":"o-1","customer":{"id":"c-loyal","email":"ada@example.com"}}"#;
    let resp = th
        .host
        .call(&plugin_ref(NS, "loyalty"), req("POST", "/", order))
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    assert_eq!(
        resp.headers().get("causeway-fanout").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let events = body_json(&resp);
    assert_eq!(events[0]["loyal"], true);
    assert_eq!(events[1]["template"], "loyalty-discount");
    let resp = th
        .host
        .call(
            &plugin_ref(NS, "loyalty"),
            req("POST", "/", r#"{"customer":{"id":"c-new"}}"#),
        )
        .await
        .unwrap();
    assert_eq!(
        body_json(&resp),
        serde_json::json!({"customer": {"id": "c-new"}}),
        "not loyal: unchanged"
    );

    assert_eq!(
        th.metric("causeway_plugin_chain_calls_total", &[("mode", "local")]),
        2.0
    );
    assert_eq!(
        th.metric("causeway_plugin_chain_calls_total", &[("mode", "remote")]),
        0.0
    );
    assert_eq!(
        th.metric("causeway_plugin_outbound_connects_total", &[]),
        0.0,
        "no socket for chaining"
    );
    assert_eq!(
        th.metric(
            "causeway_plugin_calls_total",
            &[("plugin", "shop/store-api"), ("outcome", "ok")]
        ),
        2.0
    );
    assert_eq!(
        th.metric(
            "causeway_plugin_calls_total",
            &[("plugin", "elsewhere/store-api")]
        ),
        0.0,
        "same namespace only"
    );

    // The callee sees who called.
    let resp = th
        .host
        .call(
            &plugin_ref(NS, "prober"),
            req(
                "GET",
                &format!(
                    "/?url={}",
                    pct("http://store-api.internal/customers/c-new/purchases")
                ),
                "",
            ),
        )
        .await
        .unwrap();
    assert_eq!(body_json(&resp)["upstreamStatus"], 200);

    // Unknown plugin: the caller sees a 502, a counter moves.
    let resp = th
        .host
        .call(
            &plugin_ref(NS, "prober"),
            req(
                "GET",
                &format!("/?url={}", pct("http://nope.internal/x")),
                "",
            ),
        )
        .await
        .unwrap();
    assert_eq!(body_json(&resp)["upstreamStatus"], 502);
    assert_eq!(
        th.metric(
            "causeway_plugin_chain_errors_total",
            &[("reason", "not_found")]
        ),
        1.0
    );

    // A plugin calling itself through nested URLs is stopped at the depth limit. Each
    // level writes its GET's body late: the refusal at the limit still reads it first, so
    // the last caller sees the 508, not its body stream closed under it.
    let mut url = "http://prober.internal/?z=1".to_string();
    for _ in 0..10 {
        url = format!("http://prober.internal/?url={}&lateBody=1&z=1", pct(&url));
    }
    let resp = th
        .host
        .call(
            &plugin_ref(NS, "prober"),
            req("GET", &format!("/?url={}&z=1", pct(&url)), ""),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        508,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    assert_eq!(
        th.metric("causeway_plugin_chain_errors_total", &[("reason", "depth")]),
        1.0
    );
    assert_eq!(
        th.metric("causeway_plugin_outbound_connects_total", &[]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyvalue_state_and_compiled_code_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let kv_dir = dir.path().join("kv");
    let inbox = plugin(NS, "inbox", &guest("inbox"));
    let cfg = worker("v1", vec![inbox]);

    let t = Instant::now();
    {
        let th = new_host(
            &cache,
            Arc::new(FileKv::open(&kv_dir).unwrap()),
            PoolingMode::Auto,
        );
        assert!(th.host.apply(&cfg).await.errors.is_empty());
        eprintln!(
            "first host: cold load (compile) of inbox took {:?}",
            t.elapsed()
        );
        assert_eq!(th.metric("causeway_plugin_compiles_total", &[]), 1.0);
        for (id, body) in [("e1", r#"{"n":1}"#), ("e2", r#"{"n":2}"#)] {
            let mut r = req("POST", "/", body);
            r.headers_mut()
                .insert("causeway-event-id", id.parse().unwrap());
            let resp = th.host.call(&plugin_ref(NS, "inbox"), r).await.unwrap();
            assert_eq!(
                resp.status(),
                201,
                "{}",
                String::from_utf8_lossy(resp.body())
            );
        }
        assert_eq!(
            th.metric(
                "causeway_plugin_instance_pre_reuse_total",
                &[("plugin", "shop/inbox")]
            ),
            2.0
        );
    }
    // A new host: same KvStore directory and cache directory.
    let t = Instant::now();
    let th = new_host(
        &cache,
        Arc::new(FileKv::open(&kv_dir).unwrap()),
        PoolingMode::Auto,
    );
    assert!(th.host.apply(&cfg).await.errors.is_empty());
    eprintln!(
        "second host: warm load (.cwasm from disk) of inbox took {:?}",
        t.elapsed()
    );
    assert_eq!(
        th.metric("causeway_plugin_compiles_total", &[]),
        0.0,
        "nothing compiled after a restart"
    );
    assert_eq!(
        th.metric("causeway_plugin_cache_hits_total", &[("tier", "disk")]),
        1.0
    );
    let resp = th
        .host
        .call(&plugin_ref(NS, "inbox"), req("GET", "/", ""))
        .await
        .unwrap();
    let items = body_json(&resp);
    let keys: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["event:e1", "event:e2"], "{items}");
    assert_eq!(items[1]["body"], serde_json::json!({"n": 2}));
    // The same state is visible through the KvStore the worker would use.
    let kv = FileKv::open(&kv_dir).unwrap();
    let stored = causeway_plugins::KvStore::list_keys(&kv, "shop/inbox").unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_allocator_and_instance_pre_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let tagger = plugin(NS, "tagger", &guest("tagger"));
    let mut tagger2 = plugin(NS, "tagger-two", &guest("tagger"));
    tagger2.variables = vars(&[("tag", "blue")]);
    let cfg = worker("v1", vec![tagger, tagger2]);

    let th = mem_host(dir.path());
    // This machine allows the pool; the fallback is covered by PoolingMode::Off below.
    eprintln!("allocator: {:?}", th.host.allocator());
    let kind = th.host.allocator().as_str();
    assert_eq!(
        th.metric("causeway_plugin_allocator", &[("kind", kind)]),
        1.0
    );
    let t = Instant::now();
    assert!(th.host.apply(&cfg).await.errors.is_empty());
    let cold = t.elapsed();
    assert_eq!(
        th.metric("causeway_plugin_compiles_total", &[]),
        1.0,
        "two plugins, one digest, one compile"
    );
    assert_eq!(
        th.metric("causeway_plugin_cache_hits_total", &[("tier", "memory")]),
        1.0
    );
    let digest = sha256_hex(&std::fs::read(guest("tagger")).unwrap());
    let cwasm: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".cwasm"))
        .collect();
    assert_eq!(cwasm.len(), 1);
    assert!(cwasm[0].starts_with(&format!("{digest}-")), "{cwasm:?}");

    // Per-call overhead (informal): sequential calls of the smallest transform.
    let n: u32 = if cfg!(debug_assertions) { 200 } else { 1000 };
    let t = Instant::now();
    for _ in 0..n {
        let resp = th
            .host
            .call(
                &plugin_ref(NS, "tagger-two"),
                req("POST", "/", r#"{"o":1}"#),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let per_call = t.elapsed() / n;
    let resp = th
        .host
        .call(
            &plugin_ref(NS, "tagger-two"),
            req("POST", "/", r#"{"o":1}"#),
        )
        .await
        .unwrap();
    assert_eq!(
        body_json(&resp),
        serde_json::json!({"o": 1, "tagged": true, "tag": "blue"})
    );
    assert_eq!(
        th.metric(
            "causeway_plugin_instance_pre_reuse_total",
            &[("plugin", "shop/tagger-two")]
        ),
        f64::from(n + 1)
    );

    // A second host over the same cache directory compiles nothing.
    let th2 = mem_host(dir.path());
    let t = Instant::now();
    assert!(th2.host.apply(&cfg).await.errors.is_empty());
    let warm = t.elapsed();
    assert_eq!(th2.metric("causeway_plugin_compiles_total", &[]), 0.0);
    assert_eq!(
        th2.metric("causeway_plugin_cache_hits_total", &[("tier", "disk")]),
        1.0
    );
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!(
        "tagger: cold apply (compile) {cold:?}, warm apply (.cwasm) {warm:?}, {per_call:?} per call ({profile} host build, {kind})"
    );

    // On-demand allocation works the same and says so.
    let off_dir = tempfile::tempdir().unwrap();
    let off = new_host(off_dir.path(), Arc::new(MemoryKv::new()), PoolingMode::Off);
    assert_eq!(off.host.allocator(), AllocatorKind::OnDemand);
    assert_eq!(
        off.metric("causeway_plugin_allocator", &[("kind", "ondemand")]),
        1.0
    );
    assert!(off.host.apply(&cfg).await.errors.is_empty());
    let resp = off
        .host
        .call(&plugin_ref(NS, "tagger"), req("POST", "/", r#"{"o":2}"#))
        .await
        .unwrap();
    assert_eq!(
        body_json(&resp),
        serde_json::json!({"o": 2, "tagged": true})
    );
    let t = Instant::now();
    for _ in 0..n {
        off.host
            .call(&plugin_ref(NS, "tagger"), req("POST", "/", r#"{"o":1}"#))
            .await
            .unwrap();
    }
    eprintln!(
        "tagger: {:?} per call ({profile} host build, ondemand)",
        t.elapsed() / n
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_reject_and_queue() {
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let mut reject = plugin(NS, "sleep-reject", &guest("fx-sleep"));
    reject.max_concurrency = 1;
    reject.when_busy = WhenBusy::Reject;
    let mut queue = plugin(NS, "sleep-queue", &guest("fx-sleep"));
    queue.max_concurrency = 1;
    queue.timeout_ms = 5_000;
    let mut short = plugin(NS, "sleep-queue-short", &guest("fx-sleep"));
    short.max_concurrency = 1;
    short.timeout_ms = 300;
    assert!(
        th.host
            .apply(&worker("v1", vec![reject, queue, short]))
            .await
            .errors
            .is_empty()
    );

    // reject: the second call fails at once while the first runs.
    let h = th.host.clone();
    let first = tokio::spawn(async move {
        h.call(&plugin_ref(NS, "sleep-reject"), req("GET", "/?ms=600", ""))
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let err = th
        .host
        .call(&plugin_ref(NS, "sleep-reject"), req("GET", "/?ms=1", ""))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Busy { .. }), "{err:?}");
    // Rejected without waiting for the slot: the first call still holds it.
    assert!(
        !first.is_finished(),
        "reject waited for the running call to finish"
    );
    assert_eq!(err.status_code(), 429);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(
        th.metric(
            "causeway_plugin_busy_rejections_total",
            &[("plugin", "shop/sleep-reject"), ("mode", "reject")]
        ),
        1.0
    );

    // A caller that gives up stops the guest and frees its slot at once.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        th.host
            .call(&plugin_ref(NS, "sleep-reject"), req("GET", "/?ms=5000", "")),
    )
    .await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resp = th
        .host
        .call(&plugin_ref(NS, "sleep-reject"), req("GET", "/?ms=1", ""))
        .await
        .expect("slot freed by the abandoned call");
    assert_eq!(resp.status(), 200);

    // queue: the second call waits for the slot and succeeds.
    let h = th.host.clone();
    let first = tokio::spawn(async move {
        h.call(&plugin_ref(NS, "sleep-queue"), req("GET", "/?ms=600", ""))
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    // With one slot and `queue`, the call that finds it taken waits and succeeds, where the
    // `reject` plugin above refused. (No clock bound: a busy machine only makes it wait longer.)
    let resp = th
        .host
        .call(&plugin_ref(NS, "sleep-queue"), req("GET", "/?ms=1", ""))
        .await
        .expect("a queued call waits for the slot, it is not refused");
    assert_eq!(resp.status(), 200);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);

    // queue, but the slot does not free up within the call's timeout: busy.
    let h = th.host.clone();
    let first = tokio::spawn(async move {
        h.call(
            &plugin_ref(NS, "sleep-queue-short"),
            req("GET", "/?ms=250", ""),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = th
        .host
        .call(
            &plugin_ref(NS, "sleep-queue-short"),
            req("GET", "/?ms=1", ""),
        )
        .await;
    // Depending on scheduling the first call may end just in time; only "busy" or success.
    match err {
        Err(CallError::Busy { .. }) => {
            assert_eq!(
                th.metric(
                    "causeway_plugin_busy_rejections_total",
                    &[("plugin", "shop/sleep-queue-short"), ("mode", "queue")]
                ),
                1.0
            )
        }
        Ok(r) => assert_eq!(r.status(), 200),
        Err(other) => panic!("{other:?}"),
    }
    let _ = first.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_swap_keeps_in_flight_calls_and_reports_per_plugin_errors() {
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let mut tagger = plugin(NS, "tagger", &guest("tagger"));
    tagger.variables = vars(&[("tag", "blue")]);
    tagger.route = Some("/shop/tag".into());
    let mut sleep = plugin(NS, "fx-sleep", &guest("fx-sleep"));
    sleep.route = Some("/shop".into());
    let r1 = th
        .host
        .apply(&worker("v1", vec![tagger.clone(), sleep]))
        .await;
    assert!(r1.errors.is_empty());
    assert_eq!(th.host.config_version(), "v1");
    assert_eq!(
        th.host.route("/shop/tag/x"),
        Some(plugin_ref(NS, "tagger")),
        "longest prefix"
    );
    assert_eq!(
        th.host.route("/shop/tagger"),
        Some(plugin_ref(NS, "fx-sleep")),
        "segment boundary"
    );
    assert_eq!(th.host.route("/other"), None);

    // A call in flight on v1 while v2 removes its plugin.
    let h = th.host.clone();
    let in_flight = tokio::spawn(async move {
        h.call(&plugin_ref(NS, "fx-sleep"), req("GET", "/?ms=500", ""))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut tagger2 = tagger.clone();
    tagger2.variables = vars(&[("tag", "green")]);
    tagger2.generation = Some(2);
    let mut broken = plugin(
        NS,
        "broken",
        std::path::Path::new("/nonexistent/broken.wasm"),
    );
    broken.route = Some("/broken".into());
    let mut bad_hosts = plugin(NS, "bad-hosts", &guest("tagger"));
    bad_hosts.allowed_outbound_hosts = vec!["not a url".into()];
    let r2 = th
        .host
        .apply(&worker("v2", vec![tagger2, broken, bad_hosts]))
        .await;
    assert_eq!(r2.loaded, ["shop/tagger"]);
    assert!(
        r2.errors["shop/broken"].contains("/nonexistent/broken.wasm"),
        "{:?}",
        r2.errors
    );
    assert!(
        r2.errors["shop/bad-hosts"].contains("allowedOutboundHosts"),
        "{:?}",
        r2.errors
    );

    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight call finishes on the old version");
    assert_eq!(body_json(&resp)["slept_ms"], 500);
    let err = th
        .host
        .call(&plugin_ref(NS, "fx-sleep"), req("GET", "/?ms=1", ""))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NotFound { .. }), "{err:?}");
    assert_eq!(th.host.route("/shop/x"), None);

    // Same digest, new variables: no compile, new behaviour.
    let resp = th
        .host
        .call(&plugin_ref(NS, "tagger"), req("POST", "/", "{}"))
        .await
        .unwrap();
    assert_eq!(body_json(&resp)["tag"], "green");
    assert_eq!(
        th.metric("causeway_plugin_compiles_total", &[]),
        2.0,
        "tagger and fx-sleep, once each"
    );

    let status = th.host.status();
    let by_key = |k: &str| status.iter().find(|s| s.key == k).unwrap().clone();
    let t = by_key("shop/tagger");
    assert!(
        t.loaded
            && t.error.is_none()
            && t.digest.as_deref().unwrap().starts_with("sha256:")
            && t.size.unwrap() > 1000
    );
    assert_eq!(t.generation, Some(2));
    let b = by_key("shop/broken");
    assert!(!b.loaded && b.error.is_some() && b.digest.is_none());
    assert_eq!(th.metric("causeway_plugin_load_errors", &[]), 2.0);

    // A failed update keeps serving the previous version.
    let mut tagger3 = tagger.clone();
    tagger3.source = SourceConfig::File {
        path: "/nonexistent/tagger-v3.wasm".into(),
    };
    let r3 = th.host.apply(&worker("v3", vec![tagger3])).await;
    assert!(r3.errors.contains_key("shop/tagger"));
    let resp = th
        .host
        .call(&plugin_ref(NS, "tagger"), req("POST", "/", "{}"))
        .await
        .unwrap();
    assert_eq!(body_json(&resp)["tag"], "green");
    let s = th.host.status();
    assert!(
        s[0].loaded && s[0].error.as_deref().unwrap().contains("previous version"),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_inline_sources_are_checked_and_fetched_once() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = Bytes::from(std::fs::read(guest("tagger")).unwrap());
    let digest = sha256_hex(&wasm);
    let served = wasm.clone();
    let server = serve(move |_| {
        let b = served.clone();
        async move { http::Response::new(b) }
    })
    .await;
    let url = format!("{}/tagger.wasm", server.url());

    let mut good = plugin(NS, "from-http", &guest("tagger"));
    good.source = SourceConfig::Http {
        url: url.clone(),
        sha256: digest.clone(),
    };
    let mut bad = plugin(NS, "wrong-digest", &guest("tagger"));
    let wrong = "0".repeat(64);
    bad.source = SourceConfig::Http {
        url: format!("{url}?other"),
        sha256: wrong.clone(),
    };
    let mut inline = plugin(NS, "inline", &guest("tagger"));
    inline.source = SourceConfig::Inline {
        sha256: digest.clone(),
        data: base64::engine::general_purpose::STANDARD.encode(&wasm),
    };
    let mut inline_bad = plugin(NS, "inline-bad", &guest("tagger"));
    inline_bad.source = SourceConfig::Inline {
        sha256: wrong.clone(),
        data: base64::engine::general_purpose::STANDARD.encode(&wasm),
    };

    let th = mem_host(dir.path());
    let report = th
        .host
        .apply(&worker(
            "v1",
            vec![good.clone(), bad.clone(), inline, inline_bad],
        ))
        .await;
    assert_eq!(report.loaded, ["shop/from-http", "shop/inline"]);
    let expected = format!("digest mismatch: expected sha256:{wrong}, got sha256:{digest}");
    assert_eq!(report.errors["shop/wrong-digest"], expected);
    assert_eq!(report.errors["shop/inline-bad"], expected);
    assert_eq!(
        server.hits(),
        2,
        "one download each for the good and the wrong digest"
    );
    let resp = th
        .host
        .call(&plugin_ref(NS, "from-http"), req("POST", "/", "{}"))
        .await
        .unwrap();
    assert_eq!(body_json(&resp)["tagged"], true);

    // A new host over the same cache: the artifact is there, nothing is downloaded.
    let th2 = mem_host(dir.path());
    let report = th2.host.apply(&worker("v1", vec![good])).await;
    assert!(report.errors.is_empty());
    assert_eq!(
        server.hits(),
        2,
        "an artifact fetched once is never fetched again"
    );
    assert_eq!(th2.metric("causeway_plugin_fetches_total", &[]), 0.0);
    assert_eq!(
        th.metric("causeway_plugin_fetches_total", &[("source", "http")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_pool_calls_use_the_internal_port_and_token() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let token = "s3cret-token";
    let tokens: std::collections::BTreeMap<String, SecretValue> =
        [(NS.to_string(), SecretValue(token.into()))].into();

    // Pool B serves store-api on its "internal port".
    let b = mem_host(dir_b.path());
    let mut cfg_b = worker("b1", vec![plugin(NS, "store-api", &guest("store-api"))]);
    cfg_b.internal_tokens = tokens.clone();
    assert!(b.host.apply(&cfg_b).await.errors.is_empty());
    let hb = b.host.clone();
    let internal_port = serve(move |r| {
        let hb = hb.clone();
        async move { hb.handle_internal(r).await }
    })
    .await;

    // Pool A runs loyalty and routes store-api to pool B.
    let a = mem_host(dir_a.path());
    let mut loyalty = plugin(NS, "loyalty", &guest("loyalty"));
    loyalty.allowed_outbound_hosts = vec!["http://store-api.internal".into()];
    let mut cfg_a = worker("a1", vec![loyalty]);
    cfg_a.internal_tokens = tokens.clone();
    // The first URL refuses connections (nothing listens there): the next one is tried.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cfg_a.routes = vec![PluginRoute {
        namespace: NS.into(),
        plugin: "store-api".into(),
        pool: "b".into(),
        urls: vec![format!("http://{dead}"), internal_port.url()],
    }];
    assert!(a.host.apply(&cfg_a).await.errors.is_empty());

    let order = r#"{"orderId":"o-9","customer":{"id":"c-loyal","email":"ada@example.com"}}"#;
    let resp = a
        .host
        .call(&plugin_ref(NS, "loyalty"), req("POST", "/", order))
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    assert_eq!(body_json(&resp)[0]["loyal"], true);
    assert_eq!(
        a.metric("causeway_plugin_chain_calls_total", &[("mode", "remote")]),
        1.0
    );
    assert_eq!(
        b.metric(
            "causeway_plugin_calls_total",
            &[("plugin", "shop/store-api"), ("outcome", "ok")]
        ),
        1.0
    );
    {
        let seen = internal_port.seen.lock().unwrap();
        let (method, uri, headers) = &seen[0];
        assert_eq!(method, "GET");
        assert_eq!(uri, "/internal/shop/store-api/customers/c-loyal/purchases");
        assert_eq!(headers["causeway-internal-token"], token);
        assert_eq!(headers["causeway-caller"], "shop/loyalty");
        assert_eq!(headers["causeway-chain-depth"], "1");
    }

    // The worker's own call() goes remote too.
    let resp = a
        .host
        .call(
            &plugin_ref(NS, "store-api"),
            req("GET", "/customers/c-new/purchases", ""),
        )
        .await
        .unwrap();
    assert_eq!(body_json(&resp).as_array().unwrap().len(), 2);

    // A wrong token is refused by the serving pool.
    let mut cfg_bad = cfg_a.clone();
    cfg_bad.version = "a2".into();
    cfg_bad.internal_tokens = [(NS.to_string(), SecretValue("wrong".into()))].into();
    assert!(a.host.apply(&cfg_bad).await.errors.is_empty());
    let err = a
        .host
        .call(
            &plugin_ref(NS, "store-api"),
            req("GET", "/customers/c-new/purchases", ""),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Remote {
                status: Some(401),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        b.metric(
            "causeway_plugin_calls_total",
            &[("plugin", "shop/store-api")]
        ),
        2.0,
        "refused before any call"
    );

    // Nothing routes an unknown plugin.
    let err = a
        .host
        .call(&plugin_ref(NS, "nope"), req("GET", "/", ""))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_component_runs() {
    let Some(js) = try_guest("js-enricher") else {
        eprintln!(
            "SKIP javascript_component_runs: npm is not installed, so examples/plugins/build.sh cannot build js-enricher"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let t = Instant::now();
    let report = th
        .host
        .apply(&worker("v1", vec![plugin(NS, "js-enricher", &js)]))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let cold = t.elapsed();
    let mut r = req("POST", "/", r#"{"order":1}"#);
    r.headers_mut()
        .insert("causeway-event-id", "ev-1".parse().unwrap());
    let t = Instant::now();
    let resp = th
        .host
        .call(&plugin_ref(NS, "js-enricher"), r)
        .await
        .unwrap();
    let first_call = t.elapsed();
    let v = body_json(&resp);
    assert_eq!(v["enrichedBy"], "javascript");
    assert_eq!(v["order"], 1);
    assert!(
        th.host
            .logs(&plugin_ref(NS, "js-enricher"))
            .iter()
            .any(|l| l.contains("enriched event ev-1"))
    );
    let th2 = mem_host(dir.path());
    let t = Instant::now();
    assert!(
        th2.host
            .apply(&worker("v1", vec![plugin(NS, "js-enricher", &js)]))
            .await
            .errors
            .is_empty()
    );
    eprintln!(
        "js-enricher (14 MB): cold apply {cold:?}, warm apply {:?}, first call {first_call:?}",
        t.elapsed()
    );
}

/// Issue 18: the README promises plugins in Python too. `py-redactor` is built by
/// componentize-py (CPython in the component) and runs in the host like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_component_runs() {
    let Some(py) = try_guest("py-redactor") else {
        panic!("examples/plugins/build.sh did not build py-redactor (python3 with venv is needed)");
    };
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let t = Instant::now();
    let report = th
        .host
        .apply(&worker("v1", vec![plugin(NS, "py-redactor", &py)]))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let cold = t.elapsed();
    let mut r = req(
        "POST",
        "/",
        r#"{"email":"ann@shop.example","order":7,"customer":{"Phone":"+1 555","name":"Ann"}}"#,
    );
    r.headers_mut()
        .insert("causeway-event-id", "ev-9".parse().unwrap());
    let t = Instant::now();
    let resp = th
        .host
        .call(&plugin_ref(NS, "py-redactor"), r)
        .await
        .unwrap();
    let first_call = t.elapsed();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        body_json(&resp),
        serde_json::json!({
            "email": "[redacted]",
            "order": 7,
            "customer": {"Phone": "[redacted]", "name": "Ann"},
            "redactedBy": "python",
            "redacted": 2
        })
    );
    assert!(
        th.host
            .logs(&plugin_ref(NS, "py-redactor"))
            .iter()
            .any(|l| l.contains("redacted 2 field(s) of event ev-9")),
        "{:?}",
        th.host.logs(&plugin_ref(NS, "py-redactor"))
    );
    let resp = th
        .host
        .call(&plugin_ref(NS, "py-redactor"), req("POST", "/", "[1,2]"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(body_json(&resp)["error"], "expected a JSON object");
    let resp = th
        .host
        .call(&plugin_ref(NS, "py-redactor"), req("GET", "/", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    eprintln!("py-redactor (18 MB): cold apply {cold:?}, first call {first_call:?}");
}

/// A real OCI registry (CNCF distribution, Debian's `docker-registry`) on 127.0.0.1,
/// storage in a temporary directory. Installed by `runtime/plugins/tests/registry.sh`.
struct Registry {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry_bin() -> Option<std::path::PathBuf> {
    let path = match std::env::var_os("CAUSEWAY_REGISTRY_BIN") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/causeway/registry/usr/bin/docker-registry"),
    };
    path.exists().then_some(path)
}

async fn start_registry(bin: &std::path::Path) -> Registry {
    start_registry_with(bin, None).await
}

/// `htpasswd`: one `user:bcrypt-hash` line; the registry then answers every request
/// without those credentials with 401 and a `Basic` challenge.
async fn start_registry_with(bin: &std::path::Path, htpasswd: Option<&str>) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: causeway-test\n{}",
            dir.path().join("data").display(),
            match htpasswd {
                Some(line) => {
                    let file = dir.path().join("htpasswd");
                    std::fs::write(&file, format!("{line}\n")).unwrap();
                    format!(
                        "auth:\n  htpasswd:\n    realm: causeway-test\n    path: {}\n",
                        file.display()
                    )
                }
                None => String::new(),
            }
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let child = std::process::Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the registry");
    let registry = Registry {
        child,
        addr,
        _dir: dir,
    };
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..100 {
        if client
            .get(format!("http://{addr}/v2/"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success() || r.status() == 401)
        {
            return registry;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the registry did not start on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_pull_from_a_loopback_registry() {
    use oci_client::client::{Config, ImageLayer};
    use oci_client::secrets::RegistryAuth;

    let Some(bin) = registry_bin() else {
        eprintln!(
            "SKIP oci_pull_from_a_loopback_registry: no registry binary at ~/.cache/causeway/registry/usr/bin/docker-registry \
             (or $CAUSEWAY_REGISTRY_BIN); install it with runtime/plugins/tests/registry.sh"
        );
        return;
    };
    causeway_plugins::install_crypto_provider();
    let registry = start_registry(&bin).await;
    let addr = registry.addr;

    // Push two components with oci-client itself.
    let client = causeway_plugins::oci_client(true);
    let push = |name: &'static str, media_type: &'static str| {
        let client = &client;
        async move {
            let bytes = std::fs::read(guest(name)).unwrap();
            let reference: oci_client::Reference =
                format!("{addr}/causeway/{name}:v1").parse().unwrap();
            let layer = ImageLayer::new(bytes, media_type.to_string(), None);
            let config = Config {
                data: b"{}".to_vec().into(),
                media_type: "application/vnd.wasm.config.v0+json".into(),
                annotations: None,
            };
            client
                .push(&reference, &[layer], config, &RegistryAuth::Anonymous, None)
                .await
                .expect("push");
            client
                .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
                .await
                .expect("manifest digest")
        }
    };
    let tagger_digest = push("tagger", "application/vnd.wasm.content.layer.v1+wasm").await;
    let trap_digest = push("fx-trap", "application/wasm").await;
    assert_ne!(tagger_digest, trap_digest);

    let oci = |reference: String, digest: Option<&str>| SourceConfig::Oci {
        reference,
        digest: digest.map(str::to_string),
        insecure: true,
        credentials: None,
    };
    let mut by_tag = plugin(NS, "by-tag", &guest("tagger"));
    by_tag.source = oci(format!("{addr}/causeway/tagger:v1"), None);
    let mut by_digest = plugin(NS, "by-digest", &guest("tagger"));
    by_digest.source = oci(format!("{addr}/causeway/tagger@{tagger_digest}"), None);
    let mut pinned = plugin(NS, "pinned", &guest("tagger"));
    pinned.source = oci(format!("{addr}/causeway/tagger:v1"), Some(&tagger_digest));
    // The tag points at tagger, the pin at fx-trap's manifest: refused.
    let mut wrong_pin = plugin(NS, "wrong-pin", &guest("tagger"));
    wrong_pin.source = oci(format!("{addr}/causeway/tagger:v1"), Some(&trap_digest));
    // A digest the registry does not have: refused.
    let mut unknown = plugin(NS, "unknown-digest", &guest("tagger"));
    unknown.source = oci(
        format!("{addr}/causeway/tagger@sha256:{}", "1".repeat(64)),
        None,
    );

    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let report = th
        .host
        .apply(&worker(
            "v1",
            vec![by_tag, by_digest, pinned.clone(), wrong_pin, unknown],
        ))
        .await;
    assert_eq!(
        report.loaded,
        ["shop/by-tag", "shop/by-digest", "shop/pinned"],
        "{:?}",
        report.errors
    );
    assert_eq!(
        report.errors["shop/wrong-pin"],
        format!("digest mismatch: expected {trap_digest}, got {tagger_digest}"),
        "{:?}",
        report.errors
    );
    assert!(
        report.errors["shop/unknown-digest"].contains("pulling"),
        "{:?}",
        report.errors
    );
    for name in ["by-tag", "by-digest", "pinned"] {
        let resp = th
            .host
            .call(&plugin_ref(NS, name), req("POST", "/", r#"{"oci":true}"#))
            .await
            .unwrap();
        assert_eq!(
            body_json(&resp),
            serde_json::json!({"oci": true, "tagged": true}),
            "{name}"
        );
    }
    let component_digest = format!(
        "sha256:{}",
        sha256_hex(&std::fs::read(guest("tagger")).unwrap())
    );
    let status = th.host.status();
    assert!(
        status
            .iter()
            .filter(|s| s.loaded)
            .all(|s| s.digest.as_deref() == Some(component_digest.as_str())),
        "{status:?}"
    );
    assert_eq!(th.metric("causeway_plugin_compiles_total", &[]), 1.0);

    // A pinned digest pulled once needs no registry: stop it and load again.
    drop(registry);
    let th2 = mem_host(dir.path());
    let report = th2.host.apply(&worker("v2", vec![pinned])).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(th2.metric("causeway_plugin_compiles_total", &[]), 0.0);
}

/// Issue 18 (pull secrets): a registry that wants a password. A pull with the
/// credentials a `pullSecret` rendered loads the plugin; anonymous and wrong-password pulls
/// are refused with the registry's answer, and the password is in no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_pull_with_registry_credentials() {
    use causeway_config::RegistryCredentials;
    use oci_client::client::{Config, ImageLayer};
    use oci_client::secrets::RegistryAuth;

    let Some(bin) = registry_bin() else {
        eprintln!(
            "SKIP oci_pull_with_registry_credentials: no registry binary (install it with runtime/plugins/tests/registry.sh)"
        );
        return;
    };
    causeway_plugins::install_crypto_provider();
    // bcrypt (cost 5) of "pull-s3cret", the only form the registry's htpasswd accepts.
    let registry = start_registry_with(
        &bin,
        Some("robot:$2b$05$1u.u73TTt1NGdbRN/243Ju45KrbZgJN//3zacb86JByNwfGqWel9i"),
    )
    .await;
    let addr = registry.addr;
    let good = RegistryAuth::Basic("robot".into(), "pull-s3cret".into());
    let client = causeway_plugins::oci_client(true);
    let reference: oci_client::Reference = format!("{addr}/private/tagger:v1").parse().unwrap();
    let layer = ImageLayer::new(
        std::fs::read(guest("tagger")).unwrap(),
        "application/wasm".to_string(),
        None,
    );
    let config = Config {
        data: b"{}".to_vec().into(),
        media_type: "application/vnd.wasm.config.v0+json".into(),
        annotations: None,
    };
    assert!(
        client
            .push(
                &reference,
                std::slice::from_ref(&layer),
                config.clone(),
                &RegistryAuth::Anonymous,
                None
            )
            .await
            .is_err(),
        "the registry takes anonymous pushes: its auth is off"
    );
    // A client of its own: oci-client remembers per registry how it authenticated.
    causeway_plugins::oci_client(true)
        .push(&reference, &[layer], config, &good, None)
        .await
        .expect("push with credentials");

    let source = |credentials: Option<(&str, &str)>| SourceConfig::Oci {
        reference: format!("{addr}/private/tagger:v1"),
        digest: None,
        insecure: true,
        credentials: credentials.map(|(u, p)| RegistryCredentials {
            username: SecretValue(u.into()),
            password: SecretValue(p.into()),
        }),
    };
    let mut with = plugin(NS, "with-credentials", &guest("tagger"));
    with.source = source(Some(("robot", "pull-s3cret")));
    let mut anonymous = plugin(NS, "anonymous", &guest("tagger"));
    anonymous.source = source(None);
    let mut wrong = plugin(NS, "wrong-password", &guest("tagger"));
    wrong.source = source(Some(("robot", "not-the-password")));

    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let report = th
        .host
        .apply(&worker("v1", vec![with, anonymous, wrong]))
        .await;
    assert_eq!(
        report.loaded,
        ["shop/with-credentials"],
        "{:?}",
        report.errors
    );
    for name in ["shop/anonymous", "shop/wrong-password"] {
        let err = &report.errors[name];
        assert!(err.starts_with("pulling "), "{name}: {err}");
        let lower = err.to_ascii_lowercase();
        assert!(
            lower.contains("not authorized") || lower.contains("unauthorized"),
            "{name}: the registry's refusal is in the error: {err}"
        );
        assert!(
            !err.contains("pull-s3cret") && !err.contains("not-the-password"),
            "{name}: {err}"
        );
    }
    let resp = th
        .host
        .call(
            &plugin_ref(NS, "with-credentials"),
            req("POST", "/", r#"{"private":true}"#),
        )
        .await
        .unwrap();
    assert_eq!(
        body_json(&resp),
        serde_json::json!({"private": true, "tagged": true})
    );
}

/// Runs in a child process (see the parent test below) under a virtual memory limit too
/// small for the instance pool: the host must fall back to on-demand and still serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooling_fallback_child() {
    if std::env::var_os("CAUSEWAY_FALLBACK_CHILD").is_none() {
        return; // only meaningful inside the parent test's child process
    }
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    assert_eq!(th.host.allocator(), AllocatorKind::OnDemand);
    assert_eq!(
        th.metric("causeway_plugin_allocator", &[("kind", "ondemand")]),
        1.0
    );
    assert_eq!(
        th.metric("causeway_plugin_allocator", &[("kind", "pooling")]),
        0.0
    );
    assert!(
        th.host
            .apply(&worker("v1", vec![plugin(NS, "tagger", &guest("tagger"))]))
            .await
            .errors
            .is_empty()
    );
    let resp = th
        .host
        .call(
            &plugin_ref(NS, "tagger"),
            req("POST", "/", r#"{"limited":true}"#),
        )
        .await
        .unwrap();
    assert_eq!(body_json(&resp)["tagged"], true);
    println!("FALLBACK-CHILD-OK");
}

#[test]
fn pooling_falls_back_to_on_demand_under_a_virtual_memory_limit() {
    let exe = std::env::current_exe().unwrap();
    let tagger = guest("tagger"); // built here, not in the limited child
    // 16 GiB of address space: plenty for the process and one on-demand instance
    // (4 GiB reservation), far too little for the pool (~4 TiB).
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -v 16777216 && exec \"$0\" pooling_fallback_child --exact --nocapture --test-threads=1")
        .arg(&exe)
        .env("CAUSEWAY_FALLBACK_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("FALLBACK-CHILD-OK"),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(tagger.exists());
}

// --- Security (issue 12) ---------------------------------------------------------------

/// Item 1: a pool that answers a cross-pool call with a redirect must not make the caller
/// re-send the request and the namespace token elsewhere (here: a loopback port the
/// calling plugin was never allowed to reach).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_another_pool_is_an_error_and_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let token = "namespace-token-never-forwarded";
    let victim = serve(|_| async { ok("internal data") }).await;
    let location = format!("{}/steal", victim.url());
    let hostile_pool = serve(move |_| {
        let location = location.clone();
        async move {
            let mut r = ok("");
            *r.status_mut() = http::StatusCode::TEMPORARY_REDIRECT;
            r.headers_mut()
                .insert(http::header::LOCATION, location.parse().unwrap());
            r
        }
    })
    .await;

    let a = mem_host(dir.path());
    let mut loyalty = plugin(NS, "loyalty", &guest("loyalty"));
    loyalty.allowed_outbound_hosts = vec!["http://store-api.internal".into()];
    let mut cfg = worker("a1", vec![loyalty]);
    cfg.internal_tokens = [(NS.to_string(), SecretValue(token.into()))].into();
    cfg.routes = vec![PluginRoute {
        namespace: NS.into(),
        plugin: "store-api".into(),
        pool: "b".into(),
        urls: vec![hostile_pool.url()],
    }];
    assert!(a.host.apply(&cfg).await.errors.is_empty());

    // The worker's own call (a bridge step) and a guest's chained call.
    let err = a
        .host
        .call(
            &plugin_ref(NS, "store-api"),
            req("POST", "/customers/c1/purchases", "{}"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Remote { status: Some(502), message, .. } if message.contains("redirect")),
        "{err:?}"
    );
    let order = r#"{"orderId":"o-1","customer":{"id":"c1","email":"ada@example.com"}}"#;
    let _ = a
        .host
        .call(&plugin_ref(NS, "loyalty"), req("POST", "/", order))
        .await;
    assert!(
        hostile_pool.hits() >= 2,
        "both calls reached the hostile pool"
    );
    assert_eq!(
        victim.hits(),
        0,
        "the redirect was followed: the token went to {}",
        victim.url()
    );
}

/// Item 2: outside local mode a `file` source is refused before anything is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sources_are_refused_outside_local_mode() {
    let dir = tempfile::tempdir().unwrap();
    let th = cluster_host(dir.path());
    let secret = dir.path().join("token");
    std::fs::write(&secret, "eyJhbGciOiJSUzI1NiJ9.service-account-token").unwrap();
    let report = th
        .host
        .apply(&worker(
            "v1",
            vec![
                plugin(NS, "reader", &secret),
                plugin(NS, "tagger", &guest("tagger")),
            ],
        ))
        .await;
    let err = &report.errors["shop/reader"];
    assert!(
        err.contains("file sources are refused outside local mode"),
        "{err}"
    );
    assert!(!err.contains("service-account-token"));
    assert_eq!(
        report.loaded,
        Vec::<String>::new(),
        "even a real component is not read from a file"
    );
}

/// Item 2: a file that is not a component is never parsed as text, and no byte of it
/// reaches the error (which goes to logs, the admin API and the Plugin's status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_wasm_source_is_refused_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let secret = dir.path().join("token");
    // Valid WAT would even compile; a token is text that wasmtime's parser quotes.
    std::fs::write(&secret, "(component) ;; top-secret-token-value\n").unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "top-secret-token-value is not wasm").unwrap();
    let report = th
        .host
        .apply(&worker(
            "v1",
            vec![plugin(NS, "wat", &secret), plugin(NS, "junk", &junk)],
        ))
        .await;
    for key in ["shop/wat", "shop/junk"] {
        let err = &report.errors[key];
        assert!(err.contains("is not a WebAssembly binary"), "{key}: {err}");
        assert!(!err.contains("top-secret"), "{key} quotes the file: {err}");
    }
    let status = th.host.status();
    assert!(status.iter().all(|s| {
        !s.error
            .as_deref()
            .unwrap_or_default()
            .contains("top-secret")
    }));
}

/// Item 2: the read is capped (a sparse file larger than the limit is refused unread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_file_sources_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    let big = dir.path().join("big.wasm");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(causeway_plugins::MAX_COMPONENT_BYTES + 1)
        .unwrap();
    let report = th
        .host
        .apply(&worker("v1", vec![plugin(NS, "big", &big)]))
        .await;
    assert!(
        report.errors["shop/big"].contains("is larger than"),
        "{}",
        report.errors["shop/big"]
    );
    let dev = plugin(NS, "dev", std::path::Path::new("/dev/zero"));
    let report = th.host.apply(&worker("v2", vec![dev])).await;
    assert!(
        report.errors["shop/dev"].contains("not a regular file"),
        "{}",
        report.errors["shop/dev"]
    );
}

/// Item 20: an http source that redirects is refused, the redirect target never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sources_do_not_follow_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = Bytes::from(std::fs::read(guest("tagger")).unwrap());
    let digest = sha256_hex(&wasm);
    let served = wasm.clone();
    let target = serve(move |_| {
        let b = served.clone();
        async move { http::Response::new(b) }
    })
    .await;
    let location = format!("{}/tagger.wasm", target.url());
    let redirecting = serve(move |_| {
        let location = location.clone();
        async move {
            let mut r = ok("");
            *r.status_mut() = http::StatusCode::FOUND;
            r.headers_mut()
                .insert(http::header::LOCATION, location.parse().unwrap());
            r
        }
    })
    .await;
    let mut p = plugin(NS, "redirected", &guest("tagger"));
    p.source = SourceConfig::Http {
        url: format!("{}/tagger.wasm", redirecting.url()),
        sha256: digest,
    };
    let th = mem_host(dir.path());
    let report = th.host.apply(&worker("v1", vec![p])).await;
    assert!(
        report.errors["shop/redirected"].contains("redirects are not followed"),
        "{:?}",
        report.errors
    );
    assert_eq!(target.hits(), 0);
}

/// Item 16: calls to a plugin nobody configured count under one label, not a series per
/// name a request made up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_plugins_make_no_metric_series_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let th = mem_host(dir.path());
    assert!(th.host.apply(&worker("v1", vec![])).await.errors.is_empty());
    for i in 0..3 {
        let err = th
            .host
            .call(
                &plugin_ref(NS, &format!("made-up-{i}")),
                req("GET", "/", ""),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::NotFound { .. }));
    }
    assert_eq!(
        th.metric(
            "causeway_plugin_calls_total",
            &[
                ("plugin", causeway_plugins::UNKNOWN_PLUGIN),
                ("outcome", "not_found")
            ]
        ),
        3.0
    );
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&th.registry.gather())
        .unwrap();
    assert!(!text.contains("made-up"), "{text}");
}
