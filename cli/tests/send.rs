//! `causeway send`: the webhook sender of scratch images and the chart's `helm test`. It
//! waits (with `--retry-for`) for a worker that is still starting, prints the answer, and
//! fails with the last answer when it never got a 2xx.

mod common;

use std::process::{Command, Output};

use common::*;

fn send(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
        .arg("send")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_waits_for_the_worker_and_prints_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(
        dir.path(),
        &format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: probe}}\nspec:\n  destinations: [{{name: out, url: \"{}\"}}]\n",
            sink.url("/out")
        ),
    );
    // Started before the worker: it retries until the worker answers 202.
    let mut w = Worker::start_unready(dir.path(), &m, &[]);
    let url = w.url("/hooks/default/probe");
    let sender = {
        let url = url.clone();
        std::thread::spawn(move || {
            send(&[
                &url,
                "-d",
                r#"{"probe":true}"#,
                "-H",
                "x-probe: helm-test",
                "--retry-for",
                "60s",
            ])
        })
    };
    w.wait_ready();
    let out = sender.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("202 {"), "{stdout}");
    let id = serde_json::from_str::<serde_json::Value>(stdout.trim_start_matches("202 ").trim())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sink.wait_for("/out", 1, std::time::Duration::from_secs(20))
            .await,
        1
    );
    let got = &sink.requests("/out")[0];
    assert_eq!(got.body.as_ref(), br#"{"probe":true}"#);
    assert_eq!(
        got.headers["causeway-event-id"].to_str().unwrap(),
        id.as_str()
    );

    // A body from a file.
    let file = dir.path().join("event.json");
    std::fs::write(&file, r#"{"from":"file"}"#).unwrap();
    let out = send(&[&url, "-d", &format!("@{}", file.display())]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        sink.wait_for("/out", 2, std::time::Duration::from_secs(20))
            .await,
        2
    );

    // No 2xx: the last answer, and a failure exit.
    let out = send(&[&w.url("/hooks/default/nope")]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("404"), "{stderr}");
    w.terminate();
    let out = send(&[&url, "--retry-for", "1s"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(&url), "{stderr}");

    // Bad arguments.
    for (args, want) in [
        (vec![url.as_str(), "-H", "no colon"], "is not `Name: value`"),
        (
            vec![url.as_str(), "-d", "@/nonexistent/event.json"],
            "reading /nonexistent",
        ),
        (vec![url.as_str(), "--retry-for", "soon"], "soon"),
    ] {
        let out = send(&args);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
