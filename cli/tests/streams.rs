//! Streams (`GET /streams/<namespace>/<bridge>/<stream>`) on the real worker, with real
//! clients on loopback: Server-Sent Events read with reqwest and the `eventsource-stream`
//! parser, WebSockets with `tokio-tungstenite`; a stalled consumer is a raw socket that
//! stops reading; the shared store is a real PostgreSQL (`common/postgres.rs`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use common::*;

const N: usize = 1000;

fn bridge(sink: &Sink, stream: &str) -> String {
    format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders}}
spec:
  destinations:
  - {{name: sink, url: "{url}"}}
  streams:
{stream}
"#,
        url = sink.url("/orders")
    )
}

const LIVE: &str = "  - {name: live, heartbeat: 1s}";

fn stream_url(w: &Worker) -> String {
    w.url("/streams/default/orders/live")
}

/// Post `n` events with `in_flight` at once; returns every acknowledged id in the order
/// a stream serves them (ascending), with the body each was posted with.
async fn post_events(
    c: &reqwest::Client,
    url: &str,
    n: usize,
    in_flight: usize,
    pad: usize,
) -> Vec<(String, String)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (c, url, next) = (c.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return out;
                }
                let body = format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(pad));
                let (status, v) = post(&c, &url, &body, &[]).await;
                assert_eq!(status, 202, "event {i}: {v}");
                out.push((v["id"].as_str().unwrap().to_string(), body));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

/// An SSE consumer: (id, data) of each event, or the error event's data as ("", data).
async fn sse(
    c: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> impl futures::Stream<Item = (String, String)> + Unpin + use<> {
    let mut rb = c.get(url).header("accept", "text/event-stream");
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    Box::pin(resp.bytes_stream().eventsource().map(|e| {
        let e = e.expect("a well-formed event stream");
        if e.event == "error" {
            (String::new(), e.data)
        } else {
            (e.id, e.data)
        }
    }))
}

async fn take<S: futures::Stream<Item = (String, String)> + Unpin>(
    s: &mut S,
    n: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(60), s.next()).await {
            Ok(Some(e)) => out.push(e),
            Ok(None) => panic!("the stream ended after {} events", out.len()),
            Err(_) => panic!("no event for 60 s after {} events", out.len()),
        }
    }
    out
}

fn ws_url(w: &Worker, query: &str) -> String {
    format!("ws://{}/streams/default/orders/live{query}", w.listen)
}

/// (id, data as text) of each WebSocket event message.
async fn ws_take<S>(ws: &mut S, n: usize) -> Vec<(String, String)>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no message for 60 s after {} events", out.len()))
            .expect("the socket stays open")
            .expect("a message");
        match msg {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                out.push((v["id"].as_str().unwrap().to_string(), v["data"].to_string()));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
    out
}

fn same_json(a: &str, b: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(a).unwrap()
        == serde_json::from_str::<serde_json::Value>(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_websocket_consumers_receive_1000_events_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), &bridge(&sink, LIVE)),
        &[],
    );
    let c = client();
    let mut events = sse(&c, &stream_url(&w), &[]).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(ws_url(&w, ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    let sent = post_events(&c, &w.url("/hooks/default/orders"), N, 16, 0).await;
    let got = take(&mut events, N).await;
    let got_ws = ws_take(&mut ws, N).await;
    for (consumer, got) in [("sse", &got), ("websocket", &got_ws)] {
        let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        let want: Vec<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, want, "{consumer}: every event once, in id order");
        for ((_, data), (_, body)) in got.iter().zip(&sent) {
            assert!(same_json(data, body), "{consumer}: {data} for {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_reconnects_with_last_event_id_gets_the_rest_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), &bridge(&sink, LIVE)),
        &[],
    );
    let c = client();
    let mut first = sse(&c, &stream_url(&w), &[]).await;
    // Ingest runs all along: the consumer leaves and comes back while events arrive.
    let sender = {
        let (c, url) = (c.clone(), w.url("/hooks/default/orders"));
        tokio::spawn(async move { post_events(&c, &url, N, 8, 0).await })
    };
    let head = take(&mut first, 400).await;
    drop(first);
    let last = head.last().unwrap().0.clone();
    let mut second = sse(&c, &stream_url(&w), &[("last-event-id", &last)]).await;
    let tail = take(&mut second, N - 400).await;
    let sent = sender.await.unwrap();
    let got: Vec<&str> = head
        .iter()
        .chain(&tail)
        .map(|(id, _)| id.as_str())
        .collect();
    let want: Vec<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(got, want, "401..1000 after the reconnect, each once");
    // The WebSocket resumes the same way with ?from=<id> (inclusive).
    let from = &sent[400].0;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&w, &format!("?from={from}")))
        .await
        .unwrap();
    let again = ws_take(&mut ws, N - 400).await;
    let ids: Vec<&str> = again.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, want[400..].to_vec());
}

/// Read a raw HTTP response head from `s` (the body follows).
async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "the head ends early");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

async fn metric(c: &reqwest::Client, w: &Worker, series: &str) -> f64 {
    let text = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_is_cut_off_while_another_keeps_receiving_and_ingest_answers_202() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let stream = "  - {name: live, buffer: {maxEvents: 8, stallTimeout: 1s}}";
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), &bridge(&sink, stream)),
        &[],
    );
    let c = client();
    // The stalled consumer: a socket with a small receive buffer that reads the head and
    // then nothing.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stalled = sock.connect(w.listen).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /streams/default/orders/live HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
                w.listen
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let head = read_head(&mut stalled).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The healthy consumer reads all along, in a task of its own.
    let mut healthy = sse(&c, &stream_url(&w), &[]).await;
    let (ids_tx, mut ids_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some((id, _)) = healthy.next().await {
            if ids_tx.send(id).is_err() {
                return;
            }
        }
    });
    // Events of 16 KiB, in batches, until the stalled socket's buffers are full and its
    // stall timeout has passed (how much fits in them depends on the kernel).
    let series = r#"causeway_stream_disconnects_total{bridge="default/orders",reason="slow_consumer",stream="live"}"#;
    let mut sent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(&c, &w, series).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled consumer was not cut"
        );
        sent.extend(post_events(&c, &w.url("/hooks/default/orders"), 200, 16, 16384).await);
    }
    sent.sort();
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let id = tokio::time::timeout(Duration::from_secs(60), ids_rx.recv())
            .await
            .expect("the healthy consumer keeps receiving")
            .expect("its stream stays open");
        got.push(id);
    }
    assert_eq!(
        got,
        sent.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        "the other consumer got everything, in order"
    );
    assert!(w.log_text().contains("slow consumer"), "{}", w.log_text());
    // Its socket is closed: reading it now drains what was buffered, then ends.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut rest))
        .await
        .expect("the stalled connection is closed")
        .ok();
    // Ingest still answers, and the healthy consumer still receives.
    let more = post_events(&c, &w.url("/hooks/default/orders"), 10, 1, 0).await;
    for (id, _) in &more {
        let got = tokio::time::timeout(Duration::from_secs(60), ids_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, id);
    }
}

/// An HS256 JWT with these claims, signed with `key`.
fn jwt(key: &[u8], claims: serde_json::Value) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64(claims.to_string().as_bytes());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64(&mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_limits_and_bad_requests_are_answered_before_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let streams = r#"  - name: live
    auth: {apiKey: {secretRef: {name: consumers, key: key}}}
    limits: {maxConnectionsPerConsumer: 1}
  - name: basic
    auth: {basic: {username: app, passwordRef: {name: consumers, key: password}}}
    limits: {maxConnections: 1}
  - name: token
    auth: {jwt: {algorithms: [HS256], secretRef: {name: consumers, key: jwt}, audience: stream-readers}}
---
apiVersion: v1
kind: Secret
metadata: {name: consumers}
stringData: {key: k-live-1, password: p-basic-1, jwt: jwt-key-0123456789}"#;
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), &bridge(&sink, streams)),
        &[],
    );
    let c = client();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut rb = c.get(w.url(path)).header("accept", "text/event-stream");
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send()
    };
    let live = "/streams/default/orders/live";
    let status = |r: &reqwest::Response| r.status().as_u16();
    let r = get(live, &[]).await.unwrap();
    assert_eq!(status(&r), 401, "no key");
    assert_eq!(r.text().await.unwrap(), r#"{"error":"unauthorized"}"#);
    assert_eq!(
        status(&get(live, &[("x-api-key", "wrong")]).await.unwrap()),
        401
    );
    let ok = get(live, &[("x-api-key", "k-live-1")]).await.unwrap();
    assert_eq!(status(&ok), 200);
    let r = get(live, &[("x-api-key", "k-live-1")]).await.unwrap();
    assert_eq!(status(&r), 429, "a second connection of the same consumer");
    assert!(r.headers().contains_key("retry-after"));
    drop(ok);
    // The slot is given back when the consumer goes (bounded wait for the close to land).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(live, &[("x-api-key", "k-live-1")]).await.unwrap();
        if status(&r) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A WebSocket is refused the same way, before the upgrade.
    match tokio_tungstenite::connect_async(format!("ws://{}{live}", w.listen)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401)
        }
        other => panic!("{:?}", other.map(|(_, r)| r.status())),
    }
    // Basic: 401 with a challenge; the stream-wide limit.
    let basic = "/streams/default/orders/basic";
    let r = get(basic, &[("authorization", "Basic YXBwOndyb25n")])
        .await
        .unwrap();
    assert_eq!(status(&r), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    use base64::Engine as _;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("app:p-basic-1")
    );
    let ok = get(basic, &[("authorization", &good)]).await.unwrap();
    assert_eq!(status(&ok), 200);
    assert_eq!(
        status(&get(basic, &[("authorization", &good)]).await.unwrap()),
        429
    );
    // JWT: an authentic token for another audience is 403; a forged one 401.
    let token = "/streams/default/orders/token";
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let bearer = |t: String| format!("Bearer {t}");
    let other = bearer(jwt(
        b"jwt-key-0123456789",
        serde_json::json!({"aud": "billing", "exp": exp}),
    ));
    assert_eq!(
        status(&get(token, &[("authorization", &other)]).await.unwrap()),
        403
    );
    let forged = bearer(jwt(
        b"not-the-key",
        serde_json::json!({"aud": "stream-readers", "exp": exp}),
    ));
    assert_eq!(
        status(&get(token, &[("authorization", &forged)]).await.unwrap()),
        401
    );
    let right = bearer(jwt(
        b"jwt-key-0123456789",
        serde_json::json!({"aud": "stream-readers", "exp": exp}),
    ));
    assert_eq!(
        status(&get(token, &[("authorization", &right)]).await.unwrap()),
        200
    );
    // Bad requests, each with its status and a message.
    let key = [("x-api-key", "k-live-2")];
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (
            get(
                &format!("{live}?from=yesterday"),
                &[("x-api-key", "k-live-1")],
            )
            .await
            .unwrap(),
            400,
            r#"{"error":"from \"yesterday\" is not an event id"}"#,
        ),
        (
            get(
                &format!("{live}?since=last-week"),
                &[("x-api-key", "k-live-1")],
            )
            .await
            .unwrap(),
            400,
            r#"{"error":"since \"last-week\" is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)"}"#,
        ),
        (
            get(
                &format!("{live}?since=2026-01-01T00:00:00Z"),
                &[
                    ("x-api-key", "k-live-1"),
                    ("last-event-id", "0191c9a2-0000-7000-8000-000000000000"),
                ],
            )
            .await
            .unwrap(),
            400,
            r#"{"error":"give one of Last-Event-ID, from and since"}"#,
        ),
        (
            c.get(w.url(live))
                .header("accept", "application/json")
                .header(key[0].0, key[0].1)
                .send()
                .await
                .unwrap(),
            406,
            r#"{"error":"a stream is served as text/event-stream or over a WebSocket upgrade"}"#,
        ),
        (
            c.post(w.url(live)).send().await.unwrap(),
            405,
            r#"{"error":"streams answer GET only"}"#,
        ),
        (
            get("/streams/default/orders/nope", &[]).await.unwrap(),
            404,
            r#"{"error":"the bridge has no stream of this name"}"#,
        ),
    ];
    for (resp, want, body) in cases {
        assert_eq!(resp.status().as_u16(), want, "{body}");
        assert_eq!(resp.text().await.unwrap(), body);
    }
    // Credentials never reach the log or the metrics.
    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in ["k-live-1", "p-basic-1", "jwt-key-0123456789"] {
        assert!(!w.log_text().contains(secret), "{secret} in the log");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
    assert!(metrics.contains(r#"causeway_stream_refused_total{bridge="default/orders",reason="unauthorized_bad_credentials",stream="live"}"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_point_older_than_retention_gets_an_error_event_with_the_oldest_id() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let stream = "  - {name: live, retention: 1h}";
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), &bridge(&sink, stream)),
        &[],
    );
    let c = client();
    let sent = post_events(&c, &w.url("/hooks/default/orders"), 3, 1, 0).await;
    let oldest = &sent[0].0;
    let r = c
        .get(format!("{}?since=2020-01-01T00:00:00Z", stream_url(&w)))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let mut events = r.bytes_stream().eventsource();
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(e.event, "error");
    let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(v["oldestId"], oldest.as_str());
    assert_eq!(
        v["error"],
        "the replay point (2020-01-01T00:00:00Z) is older than the stream's retention (3600000 ms): resume from the oldest available id"
    );
    // An old Last-Event-ID, over a WebSocket: the same error as a message, then a close.
    let old = "01700000-0000-7000-8000-000000000000";
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/streams/default/orders/live", w.listen),
    )
    .unwrap();
    req.headers_mut()
        .insert("last-event-id", old.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else {
        panic!("an error message")
    };
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["oldestId"], oldest.as_str());
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))));
    // Within the retention, the same request replays.
    let mut events = sse(&c, &stream_url(&w), &[("last-event-id", oldest)]).await;
    let got = take(&mut events, 2).await;
    assert_eq!(got[0].0, sent[1].0);
    assert_eq!(got[1].0, sent[2].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_a_consumer_on_one_worker_sees_the_events_sent_to_another() {
    let url = postgres::url();
    let schema = postgres::fresh_schema("streams");
    let sink = Sink::ok().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let m = manifests(dirs[0].path(), &bridge(&sink, LIVE));
    let args = [
        "--postgres",
        url.as_str(),
        "--postgres-schema",
        schema.as_str(),
    ];
    let a = Worker::start(dirs[0].path(), &m, &args);
    let b = Worker::start(dirs[1].path(), &m, &args);
    let c = client();
    let mut on_a = sse(&c, &stream_url(&a), &[]).await;
    let (mut ws_on_a, _) = tokio_tungstenite::connect_async(ws_url(&a, ""))
        .await
        .unwrap();
    // Most events go to the other worker, some to this one, at the same time.
    let (url_a, url_b) = (
        a.url("/hooks/default/orders"),
        b.url("/hooks/default/orders"),
    );
    let (to_b, to_a) = tokio::join!(
        post_events(&c, &url_b, 400, 8, 0),
        post_events(&c, &url_a, 100, 2, 0),
    );
    let mut sent: Vec<String> = to_b.iter().chain(&to_a).map(|(id, _)| id.clone()).collect();
    sent.sort();
    let got: Vec<String> = take(&mut on_a, 500)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, sent, "every event of the pool, once, in id order");
    let got: Vec<String> = ws_take(&mut ws_on_a, 500)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, sent);
    let _ = ws_on_a.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_ends_the_connections_it_let_in() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let with_key = |key: &str| {
        bridge(
            &sink,
            &format!(
                "  - name: live\n    auth: {{apiKey: {{secretRef: {{name: consumers, key: key}}}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: consumers}}\nstringData: {{key: {key}}}"
            ),
        )
    };
    let m = manifests(dir.path(), &with_key("old-key-1"));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let mut events = sse(&c, &stream_url(&w), &[("x-api-key", "old-key-1")]).await;
    std::fs::write(m.join("bridges.yaml"), with_key("new-key-2")).unwrap();
    let (id, data) = take(&mut events, 1).await.remove(0);
    assert_eq!(id, "", "the error event");
    assert_eq!(
        data,
        r#"{"error":"the stream's configuration changed: reconnect"}"#
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .unwrap()
            .is_none(),
        "the stream ends"
    );
    // A client of its own: the server closed the stream's connection, which the first
    // client may still hold in its pool.
    let c = client();
    let old = c
        .get(stream_url(&w))
        .header("x-api-key", "old-key-1")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    let new = c
        .get(stream_url(&w))
        .header("x-api-key", "new-key-2")
        .send()
        .await
        .unwrap();
    assert_eq!(new.status(), 200);
}

/// A bridge with a filter and a step: the stream serves what passed both, as the step left
/// it, in id order; an event whose step fails for good is left out. Needs `make plugins`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_serves_what_passed_the_filter_and_the_steps_as_the_steps_left_it() {
    let wasm = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins/dist/tagger.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `make plugins` first",
        wasm.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
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
  filter: "type(payload) == list || payload.keep"
  steps: [{{plugin: tagger}}]
  stepRetry: {{retries: 0, backoff: {{policy: none}}}}
  destinations:
  - {{name: sink, url: "{url}"}}
  streams:
  - {{name: live}}
"#,
        wasm = wasm.display(),
        url = sink.url("/orders")
    );
    let w = Worker::start(dir.path(), &manifests(dir.path(), &yaml), &[]);
    let c = client();
    let mut events = sse(&c, &stream_url(&w), &[]).await;
    let url = w.url("/hooks/default/orders");
    let mut kept = Vec::new();
    for (i, body) in [
        r#"{"keep":true,"n":0}"#,
        // Dropped by the filter.
        r#"{"keep":false,"n":1}"#,
        // Passes the filter; the step refuses what is not an object: dead, left out.
        "[1,2]",
        r#"{"keep":true,"n":3}"#,
    ]
    .iter()
    .enumerate()
    {
        let (s, v) = post(&c, &url, body, &[]).await;
        assert_eq!(s, 202);
        if i == 0 || i == 3 {
            kept.push(v["id"].as_str().unwrap().to_string());
        }
    }
    let got = take(&mut events, kept.len()).await;
    assert_eq!(
        got.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        kept
    );
    for (n, (_, data)) in [0, 3].iter().zip(&got) {
        assert!(
            same_json(
                data,
                &format!(r#"{{"keep":true,"n":{n},"tagged":true,"tag":"blue"}}"#)
            ),
            "{data}"
        );
    }
}

/// Send `request` on a fresh connection and read the whole answer (the worker closes it).
async fn raw_exchange(w: &Worker, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(w.listen).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("the worker answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection that opens with a stream request is served on the bare socket, not by
/// hyper: its bad heads get a status and a close (a body, a head too large, a malformed
/// line, HTTP/1.0), a path under /streams/ that names no stream gets the ingress's 404, and
/// its SSE is chunked. A stream asked for on a keep-alive connection that began with an
/// ingress request is still served (by hyper), on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_connections_on_the_bare_socket_and_after_another_request() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), &bridge(&sink, LIVE)),
        &[],
    );
    let path = "/streams/default/orders/live";
    let body = raw_exchange(
        &w,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").as_bytes(),
    )
    .await;
    assert!(body.starts_with("HTTP/1.1 400"), "{body}");
    assert!(body.contains("a stream request has no body"), "{body}");
    let big = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(20 * 1024)
    );
    let body = raw_exchange(&w, big.as_bytes()).await;
    assert!(body.starts_with("HTTP/1.1 431"), "{body}");
    let body = raw_exchange(&w, b"GET /streams/ x y z\r\n\r\n").await;
    assert!(body.starts_with("HTTP/1.1 400"), "{body}");
    let body = raw_exchange(&w, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await;
    assert!(body.starts_with("HTTP/1.1 505"), "{body}");
    let body = raw_exchange(
        &w,
        b"GET /streams/default/nobody/live HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(body.starts_with("HTTP/1.1 404"), "{body}");
    assert!(
        body.to_ascii_lowercase().contains("connection: close"),
        "{body}"
    );
    let body = raw_exchange(
        &w,
        b"GET /streams/default/orders/other HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(body.starts_with("HTTP/1.1 404"), "{body}");
    assert!(
        body.contains("the bridge has no stream of this name"),
        "{body}"
    );

    // SSE on the bare socket: chunked, the retry hint first.
    let mut s = tokio::net::TcpStream::connect(w.listen).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let mut first = vec![0u8; 64];
    let n = s.read(&mut first).await.unwrap();
    assert!(
        String::from_utf8_lossy(&first[..n]).starts_with("d\r\nretry: 2000\n\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );
    drop(s);

    // A keep-alive connection: an event posted first, then the stream on the same socket.
    let mut s = tokio::net::TcpStream::connect(w.listen).await.unwrap();
    let event = r#"{"n":1}"#;
    s.write_all(
        format!(
            "POST /hooks/default/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{event}",
            event.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 202"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut answer = vec![0u8; len];
    s.read_exact(&mut answer).await.unwrap();
    let id = serde_json::from_slice::<serde_json::Value>(&answer).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.write_all(
        format!("GET {path}?from={id} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&got).contains(&format!("id: {id}")) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "the stream ended: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains(r#"data: {"n":1}"#));
}
