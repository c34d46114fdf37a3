//! A destination that is rate-limited or slow never holds the pool's delivery slots: its
//! jobs wait without a slot, and other bridges' events go out meanwhile (issue 15).

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_backlog_does_not_hold_other_bridges() {
    rate_limited_backlog(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_backlog_does_not_hold_other_bridges_on_postgres() {
    let url = postgres::url();
    let schema = postgres::fresh_schema("fair");
    rate_limited_backlog(&["--postgres", &url, "--postgres-schema", &schema]).await;
}

async fn rate_limited_backlog(store: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: slow}}
spec:
  destinations:
  - name: out
    url: "{a}"
    rateLimit: {{perSecond: 5, burst: 1}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: fast}}
spec:
  destinations:
  - name: out
    url: "{b}"
"#,
        a = sink.url("/slow"),
        b = sink.url("/fast")
    );
    let m = manifests(dir.path(), &yaml);
    // Fewer global slots than the backlog, as a busy pool has.
    let mut args = vec!["--max-inflight", "32"];
    args.extend_from_slice(store);
    let w = Worker::start(dir.path(), &m, &args);
    let c = client();
    let send = |path: &'static str, n: usize| {
        let (c, url) = (c.clone(), w.url(path));
        async move {
            for i in 0..n {
                let (s, _) = post(&c, &url, &format!(r#"{{"i":{i}}}"#), &[]).await;
                assert_eq!(s, 202);
            }
        }
    };
    // Bridge A's backlog first (its jobs are older than all of B's), then B's events;
    // several senders at once, so that a loaded machine still sends all of them well
    // within the time A's limit takes to deliver 100.
    futures::future::join_all((0..10).map(|_| send("/hooks/default/slow", 100))).await;
    futures::future::join_all((0..4).map(|_| send("/hooks/default/fast", 50))).await;
    let delivered = sink.wait_for("/fast", 200, Duration::from_secs(60)).await;
    let slow = sink.count("/slow");
    assert_eq!(delivered, 200, "every event of the other bridge went out");
    assert!(
        slow < 100,
        "while the rate-limited backlog was still above 900 ({slow} of 1000 delivered)"
    );
}
