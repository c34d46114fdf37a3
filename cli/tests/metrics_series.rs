//! The series of a bridge that is removed leave `/metrics` (issue 15): a worker that sees
//! bridges come and go does not keep every name it ever saw.

mod common;

use std::time::Duration;

use common::*;

fn bridges(sink: &Sink, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {n}}}\nspec:\n  destinations:\n  - {{name: out, url: \"{}\"}}\n",
                sink.url(&format!("/{n}"))
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_bridges_series_leave_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(dir.path(), &bridges(&sink, &["keep", "gone"]));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    for b in ["keep", "gone"] {
        let (s, _) = post(&c, &w.url(&format!("/hooks/default/{b}")), "{}", &[]).await;
        assert_eq!(s, 202);
        assert_eq!(
            sink.wait_for(&format!("/{b}"), 1, Duration::from_secs(20))
                .await,
            1
        );
    }
    let metrics = || async {
        c.get(w.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = metrics().await;
    assert!(before.contains(r#"bridge="default/gone""#), "{before}");
    // The bridge leaves the manifests; the worker reloads.
    std::fs::write(m.join("bridges.yaml"), bridges(&sink, &["keep"])).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = metrics().await;
        if !now.contains(r#"bridge="default/gone""#) {
            assert!(
                now.contains(r#"bridge="default/keep""#),
                "the bridge that stays keeps its series: {now}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the removed bridge's series are still there:\n{}",
            now.lines()
                .filter(|l| l.contains("default/gone"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
