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

/// `n` bridges with a filter, a body template and an env value `GEN` (a swap recompiles
/// every one of them), all to the sink.
fn generation(sink: &Sink, n: usize, generation: u32) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: b{i}}}\nspec:\n  filter: \"payload.amount >= {i}\"\n  destinations:\n  - name: out\n    url: \"{}\"\n    body: '{{\"amount\": \"$payload.amount\", \"gen\": \"$env.GEN\"}}'\n  env:\n  - {{name: GEN, value: \"{generation}\"}}\n",
                sink.url(&format!("/b{i}"))
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A swapped-out configuration is freed once what started on it has finished: after
/// swaps with deliveries in between, one configuration is alive, not one per swap, nor the
/// first one pinned for the life of the worker (which it was: issue 15, "Memory that
/// stays flat").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_out_configurations_are_freed() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(dir.path(), &generation(&sink, 20, 0));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let live = || async {
        let text = c
            .get(w.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("causeway_config_generations_live "))
            .map(|v| v.trim().parse::<i64>().unwrap())
            .unwrap_or_else(|| panic!("no causeway_config_generations_live in:\n{text}"))
    };
    assert_eq!(live().await, 1, "the first configuration");
    let version = || async {
        get_json(&c, &w.admin_url("/api/v1/config")).await["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for g in 1..=3u32 {
        // An event on the running configuration, delivered with its generation.
        let (s, _) = post(&c, &w.url("/hooks/default/b3"), r#"{"amount": 7}"#, &[]).await;
        assert_eq!(s, 202);
        assert_eq!(
            sink.wait_for("/b3", g as usize, Duration::from_secs(20))
                .await,
            g as usize
        );
        let before = version().await;
        std::fs::write(m.join("bridges.yaml"), generation(&sink, 20, g)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while version().await == before {
            assert!(
                std::time::Instant::now() < deadline,
                "generation {g} never applied"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let delivered = sink.requests("/b3");
    let third: serde_json::Value = serde_json::from_slice(&delivered[2].body).unwrap();
    assert_eq!(third["gen"], "2", "the third event ran on generation 2");
    // The scheduler lets go of the configuration it started its pass with when it wakes
    // (the swap wakes it): the count settles at the one running configuration.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = live().await;
        if n == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} configurations alive after 3 swaps; only the running one should be"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
