//! The outbound proxy of the environment (`HTTP_PROXY`, `NO_PROXY`): destinations go
//! through it, `NO_PROXY` hosts bypass it, the network guard still checks the destination
//! (which only the proxy resolves), and the proxy itself may sit in a denied range.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(20);

/// A forward HTTP proxy on loopback: records each request line (absolute form), sends the
/// request on in origin form with `Connection: close`, and relays the answer.
#[derive(Clone)]
struct Proxy {
    addr: std::net::SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            lines: Default::default(),
        };
        let lines = proxy.lines.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let lines = lines.clone();
                tokio::spawn(async move {
                    let _ = forward(conn, lines).await;
                });
            }
        });
        proxy
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

async fn forward(mut client: TcpStream, lines: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut head_lines = head.split("\r\n");
    let request_line = head_lines.next().unwrap_or_default().to_string();
    lines.lock().unwrap().push(request_line.clone());
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(rest) = target.strip_prefix("http://") else {
        client
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut length = 0usize;
    let mut headers = String::new();
    for h in head_lines.filter(|h| !h.is_empty()) {
        let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name == "content-length" {
            length = h[h.find(':').unwrap() + 1..].trim().parse().unwrap_or(0);
        }
        if name == "connection" || name.starts_with("proxy-") {
            continue;
        }
        headers.push_str(h);
        headers.push_str("\r\n");
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut upstream = TcpStream::connect(authority).await?;
    let path = if path.is_empty() { "/" } else { path };
    upstream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    upstream.write_all(&body).await?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).await?;
    client.write_all(&answer).await?;
    client.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_go_through_the_proxy_of_the_environment_except_no_proxy_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start().await;
    let proxied = Sink::start_on("127.0.0.2", |_, _| (200, vec![])).await;
    let bypassed = Sink::start_on("127.0.0.3", |_, _| (200, vec![])).await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: proxied}}
spec:
  destinations: [{{name: d, url: "{proxied}", retries: 0}}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: bypassed}}
spec:
  destinations: [{{name: d, url: "{bypassed}", retries: 0}}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: guarded}}
spec:
  destinations: [{{name: d, url: "http://localhost:{port}/guarded", retries: 0}}]
"#,
        proxied = proxied.url("/via-proxy"),
        bypassed = bypassed.url("/direct"),
        port = proxied.addr.port(),
    );
    let m = manifests(dir.path(), &yaml);
    // The proxy is named `localhost`, in a range destinations may not reach: the proxy is
    // still used. Upper-case names win over any lower-case ones the test inherits.
    let proxy_url = format!("http://localhost:{}", proxy.addr.port());
    let w = Worker::start_with_env(
        dir.path(),
        &m,
        &["--deny-destination-cidr", "127.0.0.1/32,::1/128"],
        &[
            ("HTTP_PROXY", &proxy_url),
            ("HTTPS_PROXY", ""),
            ("ALL_PROXY", ""),
            ("NO_PROXY", "127.0.0.3"),
        ],
    );
    let c = client();

    // Through the proxy: it saw the absolute-form request line, the sink got the event.
    let (s, v) = post(&c, &w.url("/hooks/default/proxied"), r#"{"a":1}"#, &[]).await;
    assert_eq!(s, 202);
    let ev = wait_status(&c, &w, v["id"].as_str().unwrap(), "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}\n{}", w.log_text());
    assert_eq!(proxied.count("/via-proxy"), 1);
    assert_eq!(
        proxied.requests("/via-proxy")[0].body.as_ref(),
        br#"{"a":1}"#
    );
    let expected = format!("POST {} HTTP/1.1", proxied.url("/via-proxy"));
    assert_eq!(proxy.lines(), vec![expected.clone()]);

    // NO_PROXY: straight to the sink, the proxy sees nothing.
    let (s, v) = post(&c, &w.url("/hooks/default/bypassed"), r#"{"b":2}"#, &[]).await;
    assert_eq!(s, 202);
    let ev = wait_status(&c, &w, v["id"].as_str().unwrap(), "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}");
    assert_eq!(bypassed.count("/direct"), 1);

    // The guard checks a proxied destination itself: `localhost` is denied, so the request
    // never reaches the proxy (which would resolve the name and connect).
    let (s, v) = post(&c, &w.url("/hooks/default/guarded"), r#"{"c":3}"#, &[]).await;
    assert_eq!(s, 202);
    let ev = wait_status(&c, &w, v["id"].as_str().unwrap(), "dead", WAIT).await;
    assert_eq!(ev["status"], "dead", "{ev:#}");
    let err = ev["deliveries"][0]["attempts"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("destination refused") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert_eq!(proxied.count("/guarded"), 0);
    assert_eq!(
        proxy.lines(),
        vec![expected],
        "only the first event went through the proxy"
    );
    assert!(w.log_text().contains("destinations go through the proxy"));
}
