//! Configuration reloads, SIGTERM, the admin CLI and `causeway render`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn bridge(name: &str, url: &str) -> String {
    format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: {name}}}
spec:
  destinations:
  - {{name: sink, url: "{url}"}}
"#
    )
}

fn causeway(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reload_atomically_and_a_broken_edit_keeps_the_running_config() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(dir.path(), &bridge("one", &sink.url("/one")));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    assert!(
        w.log_text()
            .contains(&format!("http://{}/hooks/default/one", w.listen)),
        "the URL is printed:\n{}",
        w.log_text()
    );
    let v1 = get_json(&c, &w.admin_url("/api/v1/config")).await["version"].clone();

    // A new bridge in a new file is picked up.
    std::fs::write(m.join("two.yaml"), bridge("two", &sink.url("/two"))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while post(&c, &w.url("/hooks/default/two"), "{}", &[]).await.0 != 202 {
        assert!(
            Instant::now() < deadline,
            "new bridge not loaded:\n{}",
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v2 = get_json(&c, &w.admin_url("/api/v1/config")).await["version"].clone();
    assert_ne!(v1, v2);

    // A broken edit: the running config stays and one clear error names file and field.
    std::fs::write(m.join("two.yaml"), "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: two}\nspec:\n  destinations:\n  - {name: sink, url: 42, retries: lots}\n").unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        post(&c, &w.url("/hooks/default/two"), "{}", &[]).await.0,
        202,
        "the running config was dropped"
    );
    assert_eq!(
        get_json(&c, &w.admin_url("/api/v1/config")).await["version"],
        v2
    );
    let log = w.log_text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("configuration not reloaded"))
        .collect();
    assert_eq!(errors.len(), 1, "one error per broken edit:\n{log}");
    assert!(
        errors[0].contains("two.yaml") && errors[0].contains("document 1"),
        "{}",
        errors[0]
    );

    // Deleting the file removes the bridge.
    std::fs::remove_file(m.join("two.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while post(&c, &w.url("/hooks/default/two"), "{}", &[]).await.0 != 404 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_attempts_finish_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // The sink takes a second to answer.
    let slow = Sink::start(|_, _| {
        std::thread::sleep(Duration::from_millis(1000));
        (200, vec![])
    })
    .await;
    let m = manifests(dir.path(), &bridge("slow", &slow.url("/slow")));
    let mut w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let (_, v) = post(&c, &w.url("/hooks/default/slow"), "{}", &[]).await;
    let id = v["id"].as_str().unwrap().to_string();
    // Wait until the attempt is in flight, then stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.total.load(std::sync::atomic::Ordering::SeqCst) == 0
        && slow.received.lock().unwrap().is_empty()
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = w.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", w.log_text());
    // The attempt finished and was recorded before the exit: after a restart it is delivered.
    w.spawn();
    let ev = get_json(&c, &w.admin_url(&format!("/api/v1/events/{id}"))).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}");
    assert_eq!(ev["deliveries"][0]["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_shows_replays_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(|_, _| (500, vec![])).await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: cli}}
spec:
  destinations:
  - {{name: sink, url: "{url}", retries: 0}}
"#,
        url = sink.url("/cli")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let (_, v) = post(&c, &w.url("/hooks/default/cli"), "{}", &[]).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_status(&c, &w, &id, "dead", Duration::from_secs(20)).await;
    let admin = w.admin.to_string();

    let (ok, out, err) = causeway(&[
        "events",
        "list",
        "--admin",
        &admin,
        "--bridge",
        "default/cli",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("dead"), "{out}");
    let (ok, out, _) = causeway(&["events", "show", &id, "--admin", &admin]);
    assert!(ok && out.contains("\"statusCode\": 500"), "{out}");
    let (ok, out, _) = causeway(&[
        "events",
        "replay",
        "--bridge",
        "default/cli",
        "--admin",
        &admin,
    ]);
    assert!(ok && out.contains("\"replayed\": 1"), "{out}");
    assert_eq!(sink.wait_for("/cli", 2, Duration::from_secs(20)).await, 2);
    let (ok, out, _) = causeway(&["events", "replay", &id, "--admin", &admin]);
    assert!(ok && out.contains("\"replayed\""), "{out}");
    let (ok, out, _) = causeway(&[
        "events",
        "purge",
        "--bridge",
        "default/cli",
        "--admin",
        &admin,
    ]);
    assert!(ok && out.contains("\"purged\""), "{out}");
    let (ok, _, err) = causeway(&["events", "show", "not-an-id", "--admin", &admin]);
    assert!(!ok && err.contains("400"), "{err}");
}

#[test]
fn render_prints_the_worker_config() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), &bridge("r", "http://127.0.0.1:9/x"));
    let (ok, out, err) = causeway(&["render", "-f", m.to_str().unwrap()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["bridges"][0]["path"], "/hooks/default/r");
    assert_eq!(v["pool"], "local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_mode_runs_a_rendered_config_file_and_guards_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(dir.path(), &bridge("w", &sink.url("/w")));
    let (ok, out, err) = causeway(&["render", "-f", m.to_str().unwrap()]);
    assert!(ok, "{err}");
    let mut cfg: serde_json::Value = serde_json::from_str(&out).unwrap();
    cfg["adminToken"] = "admin-s3cret".into();
    let file = dir.path().join("config.json");
    std::fs::write(&file, cfg.to_string()).unwrap();
    let w = Worker::start_worker(dir.path(), &file, &[]);
    let c = client();
    assert_eq!(post(&c, &w.url("/hooks/default/w"), "{}", &[]).await.0, 202);
    assert_eq!(sink.wait_for("/w", 1, Duration::from_secs(20)).await, 1);

    // Health, readiness and metrics are open; the API needs the token.
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            c.get(w.admin_url(open))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200,
            "{open}"
        );
    }
    assert_eq!(
        c.get(w.admin_url("/api/v1/events"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let wrong = c
        .get(w.admin_url("/api/v1/events"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let config: serde_json::Value = c
        .get(w.admin_url("/api/v1/config"))
        .bearer_auth("admin-s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["version"], cfg["version"]);
    // Through the API server's pod proxy `Authorization` is not forwarded: a second header.
    let proxied = c
        .get(w.admin_url("/api/v1/events"))
        .header("x-causeway-admin-token", "admin-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status().as_u16(), 200);
    for bad in ["nope", "", "admin-s3cre", "Bearer admin-s3cret"] {
        let r = c
            .get(w.admin_url("/api/v1/events"))
            .header("x-causeway-admin-token", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{bad:?}");
    }
    assert_eq!(config["bridges"][0]["ready"], true);
    // The operator's side of the contract: the same body, parsed as the typed report.
    let report: causeway_config::WorkerReport = serde_json::from_value(config.clone()).unwrap();
    assert_eq!(Some(report.version.as_str()), cfg["version"].as_str());
    assert_eq!(report.bridges[0].key().to_string(), "default/w");
    assert!(report.bridges[0].ready && !report.bridges[0].suspended);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(serde_json::to_value(&report).unwrap(), config);
    assert!(
        !config.to_string().contains("admin-s3cret"),
        "the config endpoint shows a secret"
    );

    // Editing the file reloads it.
    cfg["bridges"][0]["suspend"] = true.into();
    cfg["version"] = "edited".into();
    std::fs::write(&file, cfg.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while post(&c, &w.url("/hooks/default/w"), "{}", &[]).await.0 != 503 {
        assert!(
            Instant::now() < deadline,
            "config file edit not applied:\n{}",
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 18: a bridge whose Bridge is being deleted runs `draining` in the rendered config.
/// It answers 410 Gone to new events while its queued jobs keep going to a sink that fails
/// and then recovers; the admin report counts what is left (0 once all are delivered), and
/// the other bridge of the worker is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_bridge_answers_410_while_its_backlog_still_delivers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let up = Arc::new(AtomicBool::new(false));
    let sink_up = up.clone();
    let sink = Sink::start(move |_, r| {
        if r.path == "/other" || sink_up.load(Ordering::SeqCst) {
            (200, vec![])
        } else {
            (503, vec![])
        }
    })
    .await;
    let retrying = |name: &str, path: &str| {
        format!(
            r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: {name}}}
spec:
  destinations:
  - name: sink
    url: "{}"
    retries: 100
    backoff: {{policy: exponential, initialDelay: 200ms, maxDelay: 500ms}}
"#,
            sink.url(path)
        )
    };
    let m = manifests(dir.path(), &retrying("leaving", "/leaving"));
    std::fs::write(m.join("other.yaml"), retrying("other", "/other")).unwrap();
    let (ok, out, err) = causeway(&["render", "-f", m.to_str().unwrap()]);
    assert!(ok, "{err}");
    let mut cfg: serde_json::Value = serde_json::from_str(&out).unwrap();
    cfg["adminToken"] = "admin-s3cret".into();
    let file = dir.path().join("config.json");
    std::fs::write(&file, cfg.to_string()).unwrap();
    let w = Worker::start_worker(dir.path(), &file, &[]);
    let c = client();
    let report = || async {
        let v: serde_json::Value = c
            .get(w.admin_url("/api/v1/config"))
            .bearer_auth("admin-s3cret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        serde_json::from_value::<causeway_config::WorkerReport>(v).unwrap()
    };

    // Three events queue up behind a failing sink.
    for i in 0..3 {
        let body = format!(r#"{{"n":{i}}}"#);
        assert_eq!(
            post(&c, &w.url("/hooks/default/leaving"), &body, &[])
                .await
                .0,
            202
        );
    }
    assert!(sink.wait_for("/leaving", 3, Duration::from_secs(20)).await >= 3);
    let leaving: causeway_config::ObjectKey = "default/leaving".parse().unwrap();
    assert_eq!(
        report().await.bridge(&leaving).unwrap().jobs_left,
        None,
        "only a draining bridge is counted"
    );

    // The Bridge is deleted: the operator renders it draining.
    let i = cfg["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .position(|b| b["name"] == "leaving")
        .unwrap();
    cfg["bridges"][i]["draining"] = true.into();
    cfg["version"] = "draining".into();
    std::fs::write(&file, cfg.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while report().await.version != "draining" {
        assert!(
            Instant::now() < deadline,
            "draining not applied:\n{}",
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = post(
        &c,
        &w.url("/hooks/default/leaving"),
        r#"{"late":true}"#,
        &[],
    )
    .await;
    assert_eq!(code, 410, "{body}");
    assert_eq!(
        body["error"],
        "bridge default/leaving is being deleted: it takes no new events (its queued deliveries are draining)"
    );
    // The other bridge takes events and delivers them.
    assert_eq!(
        post(&c, &w.url("/hooks/default/other"), r#"{"x":1}"#, &[])
            .await
            .0,
        202
    );
    assert_eq!(sink.wait_for("/other", 1, Duration::from_secs(20)).await, 1);
    let r = report().await;
    assert_eq!(r.version, "draining");
    assert_eq!(
        r.bridge(&leaving).unwrap().jobs_left,
        Some(3),
        "the three queued events, none refused ones"
    );
    assert_eq!(
        r.bridge(&"default/other".parse().unwrap())
            .unwrap()
            .jobs_left,
        None
    );

    // The sink recovers: the backlog drains, every queued event delivered once.
    up.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while report().await.bridge(&leaving).unwrap().jobs_left != Some(0) {
        assert!(
            Instant::now() < deadline,
            "backlog not drained:\n{}",
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered: std::collections::BTreeSet<String> = sink
        .requests("/leaving")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        delivered,
        (0..3).map(|i| format!(r#"{{"n":{i}}}"#)).collect(),
        "the queued events were delivered; the refused one never reached the sink"
    );
}
