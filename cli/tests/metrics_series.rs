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
    let metrics = || metrics_text(&c, &w);
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

/// Latency histograms per bridge and destination are opt-in (`spec.metrics
/// .destinationHistograms` of the pool): by default a delivered event is counted in the
/// pool-wide histograms and a bridge costs a few counters, so that 10,000 bridges do not
/// cost hundreds of thousands of series. Turned on, each destination gets its own; turned
/// off again, those series go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_destination_histograms_are_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let names = ["b0", "b1", "b2"];
    let m = manifests(dir.path(), &bridges(&sink, &names));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let metrics = || metrics_text(&c, &w);
    let mut delivered = 0;
    let mut deliver_all = async || {
        for b in names {
            let (s, _) = post(&c, &w.url(&format!("/hooks/default/{b}")), "{}", &[]).await;
            assert_eq!(s, 202);
        }
        delivered += 1;
        for b in names {
            assert_eq!(
                sink.wait_for(&format!("/{b}"), delivered, Duration::from_secs(20))
                    .await,
                delivered
            );
        }
    };
    let destination_series = |text: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("causeway_destination_attempt_duration_seconds")
                    || l.starts_with("causeway_destination_ingest_to_delivery_seconds")
            })
            .count()
    };
    let count_of = |text: &str, family: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{family}_count ")))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0)
    };

    // The sink sees a request before the worker records its outcome: wait for the record.
    let settled = |n: u64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = metrics().await;
            if count_of(&text, "causeway_ingest_to_delivery_seconds") >= n {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n} deliveries not recorded:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    deliver_all().await;
    let off = settled(3).await;
    assert_eq!(destination_series(&off), 0, "{off}");
    assert!(
        count_of(&off, "causeway_attempt_duration_seconds") >= 3,
        "{off}"
    );
    assert_eq!(
        count_of(&off, "causeway_ingest_to_delivery_seconds"),
        3,
        "{off}"
    );
    let per_bridge = off
        .lines()
        .filter(|l| l.contains(r#"bridge="default/b0""#))
        .count();
    assert!(
        per_bridge <= 8,
        "a delivered bridge costs a few counters, not histograms: {per_bridge} series\n{}",
        off.lines()
            .filter(|l| l.contains(r#"bridge="default/b0""#))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The pool opts in.
    let version = || async {
        get_json(&c, &w.admin_url("/api/v1/config")).await["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let reloaded = |from: String| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while version().await == from {
            assert!(std::time::Instant::now() < deadline, "no reload");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let pool = "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: default}\nspec:\n  metrics: {destinationHistograms: true}\n";
    let before = version().await;
    std::fs::write(m.join("pool.yaml"), pool).unwrap();
    reloaded(before).await;
    deliver_all().await;
    let on = settled(6).await;
    for b in names {
        let bucket = format!(
            r#"causeway_destination_attempt_duration_seconds_count{{bridge="default/{b}",destination="out"}} 1"#
        );
        assert!(on.contains(&bucket), "{bucket} in\n{on}");
        let age = format!(
            r#"causeway_destination_ingest_to_delivery_seconds_count{{bridge="default/{b}",destination="out"}} 1"#
        );
        assert!(on.contains(&age), "{age} in\n{on}");
    }
    assert_eq!(
        count_of(&on, "causeway_ingest_to_delivery_seconds"),
        6,
        "{on}"
    );

    // Off again: the per-destination series go, the pool-wide ones stay.
    let before = version().await;
    std::fs::remove_file(m.join("pool.yaml")).unwrap();
    reloaded(before).await;
    let again = metrics().await;
    assert_eq!(destination_series(&again), 0, "{again}");
    assert_eq!(
        count_of(&again, "causeway_ingest_to_delivery_seconds"),
        6,
        "{again}"
    );
}
