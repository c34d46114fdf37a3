//! Bad inputs get their status code and store nothing; idempotency keys deduplicate.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

fn bridge_yaml(sink: &str) -> String {
    format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders, namespace: shop}}
spec:
  ingress: {{methods: [POST, PUT], maxBodyBytes: 1024, dedupeWindow: 1h}}
  destinations:
  - {{name: sink, url: "{sink}", timeout: 2s, retries: 0}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: paused, namespace: shop}}
spec:
  suspend: true
  destinations:
  - {{name: sink, url: "{sink}"}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_their_status_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(dir.path(), &bridge_yaml(&sink.url("/in")));
    let w = Worker::start(
        dir.path(),
        &m,
        &["--header-timeout", "1s", "--body-timeout", "1s"],
    );
    let c = client();
    let before = stored_events(&c, &w).await;
    assert_eq!(before, 0);

    // 404: no bridge at this path.
    let (s, _) = post(&c, &w.url("/hooks/shop/nope"), "{}", &[]).await;
    assert_eq!(s, 404);

    // 405 with Allow.
    let resp = c.delete(w.url("/hooks/shop/orders")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "POST, PUT");

    // 413 from Content-Length, before reading.
    let big = "x".repeat(2048);
    let (s, _) = post(&c, &w.url("/hooks/shop/orders"), &big, &[]).await;
    assert_eq!(s, 413);

    // 413 while reading a chunked body that has no Content-Length.
    let addr = w.listen;
    let status_line = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /hooks/shop/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .unwrap();
        for _ in 0..4 {
            // The worker may answer and close before every chunk is written.
            let _ = write!(s, "200\r\n{}\r\n", "y".repeat(512));
        }
        let _ = write!(s, "0\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    })
    .await
    .unwrap();
    assert!(status_line.contains("413"), "chunked: {status_line:?}");

    // 503 while suspended.
    let (s, _) = post(&c, &w.url("/hooks/shop/paused"), "{}", &[]).await;
    assert_eq!(s, 503);

    // A client that sends headers and then stalls on its body gets 408 and the socket closes.
    let (status_line, _) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "POST /hooks/shop/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"partial\":").unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).to_string();
        (text.lines().next().unwrap_or("").to_string(), text)
    })
    .await
    .unwrap();
    assert!(status_line.contains("408"), "stalled body: {status_line:?}");

    // A client that never finishes its headers is disconnected.
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "POST /hooks/shop/orders HTTP/1.1\r\nHost: x\r\n").unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).is_ok()
    })
    .await
    .unwrap();
    assert!(
        closed,
        "slow headers: the connection should be closed by the worker"
    );

    // Nothing of the above was stored, and nothing was delivered.
    let store = get_json(&c, &w.admin_url("/api/v1/store")).await;
    for table in ["events", "jobs", "attempts", "idempotencyKeys"] {
        assert_eq!(
            store[table], 0,
            "a rejected request stored {table}: {store}"
        );
    }
    assert_eq!(sink.count("/in"), 0);

    // A good request is stored and acknowledged after it is.
    let (s, v) = post(&c, &w.url("/hooks/shop/orders"), r#"{"ok":true}"#, &[]).await;
    assert_eq!(s, 202);
    assert!(v["id"].as_str().is_some_and(|id| id.len() == 36));
    assert_eq!(stored_events(&c, &w).await, 1);

    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "not_found",
        "method_not_allowed",
        "too_large",
        "suspended",
        "timeout",
    ] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "metric for {reason} missing:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_webhook_id_returns_the_first_id_and_stores_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(dir.path(), &bridge_yaml(&sink.url("/in")));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let url = w.url("/hooks/shop/orders");
    let (s1, first) = post(&c, &url, r#"{"n":1}"#, &[("webhook-id", "msg_1")]).await;
    // Concurrent repeats: the same group commit must not store twice either.
    let mut repeats = Vec::new();
    for _ in 0..8 {
        let (c, url) = (c.clone(), url.clone());
        repeats.push(tokio::spawn(async move {
            post(&c, &url, r#"{"n":1}"#, &[("webhook-id", "msg_1")]).await
        }));
    }
    assert_eq!(s1, 202);
    for r in repeats {
        let (s, v) = r.await.unwrap();
        assert_eq!(s, 202);
        assert_eq!(v["id"], first["id"]);
    }
    let (_, other) = post(&c, &url, r#"{"n":2}"#, &[("webhook-id", "msg_2")]).await;
    assert_ne!(other["id"], first["id"]);
    assert_eq!(stored_events(&c, &w).await, 2);
    assert_eq!(sink.wait_for("/in", 2, Duration::from_secs(10)).await, 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.count("/in"), 2, "a duplicate was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_ingress_rate_limit_requests_get_429_with_retry_after_and_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: limited, namespace: shop}}
spec:
  ingress: {{rateLimit: {{perSecond: 1, burst: 3}}}}
  destinations:
  - {{name: sink, url: "{sink}", retries: 0}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: open, namespace: shop}}
spec:
  destinations:
  - {{name: sink, url: "{sink}", retries: 0}}
"#,
        sink = sink.url("/in")
    );
    let m = manifests(dir.path(), &yaml);
    // A long body timeout: a request whose body is read but never sent would wait for it.
    let w = Worker::start(dir.path(), &m, &["--body-timeout", "60s"]);
    let c = client();
    let url = w.url("/hooks/shop/limited");

    // A burst past the limit: three tokens, then one a second. Send until five are refused
    // (a thousand requests cannot all pass at one a second).
    let (mut accepted, mut refused) = (0u64, 0u64);
    for n in 0..1000 {
        let resp = c
            .post(&url)
            .header("content-type", "application/json")
            .body(format!(r#"{{"n":{n}}}"#))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            202 => accepted += 1,
            429 => {
                refused += 1;
                let retry_after: u64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry_after >= 1, "Retry-After {retry_after}");
                if refused == 5 {
                    break;
                }
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(refused, 5);
    assert!(accepted >= 3, "the burst of 3 passes: {accepted}");
    // Only the accepted requests are stored.
    assert_eq!(stored_events(&c, &w).await, accepted);

    // Refused before the body is read: headers that promise a body which is not sent get
    // 429 at once. Had the request taken a token (one comes back each second) the worker
    // would wait for the body: then the body is sent, that event counts as accepted, and
    // the next try is refused.
    let addr = w.listen;
    let (status_line, taken) = tokio::task::spawn_blocking(move || {
        let mut taken = 0u64;
        for _ in 0..10 {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            write!(
                s,
                "POST /hooks/shop/limited HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let line = String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    return (line, taken);
                }
                _ => {
                    // Waiting for the body: it had a token.
                    write!(s, "{{}}").unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut rest = String::new();
                    let _ = s.read_to_string(&mut rest);
                    assert!(rest.starts_with("HTTP/1.1 202"), "{rest}");
                    taken += 1;
                }
            }
        }
        panic!("never refused before the body");
    })
    .await
    .unwrap();
    accepted += taken;
    assert!(status_line.contains(" 429 "), "{status_line}");

    // The limit is per bridge: another bridge still accepts.
    let (s, _) = post(&c, &w.url("/hooks/shop/open"), "{}", &[]).await;
    assert_eq!(s, 202);
    assert_eq!(stored_events(&c, &w).await, accepted + 1);

    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("causeway_events_rejected_total")
                && l.contains(r#"bridge="shop/limited""#)
                && l.contains(r#"reason="rate_limited""#)),
        "{metrics}"
    );
}
