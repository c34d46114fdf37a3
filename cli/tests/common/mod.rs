//! Shared helpers for the worker's integration tests: the real `causeway` binary on
//! loopback with free ports and a temp data dir, and a loopback sink that records requests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// The throwaway PostgreSQL of the store tests, one file for both crates.
#[path = "../../../runtime/tests/common/postgres.rs"]
pub mod postgres;

/// Ports for the processes the tests start, one file for both crates.
#[path = "../../../runtime/tests/common/ports.rs"]
mod ports;

pub use ports::free_port;

/// A running `causeway up` process.
pub struct Worker {
    pub child: Option<Child>,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub manifests: PathBuf,
    pub log: PathBuf,
    pub extra: Vec<String>,
    /// The subcommand and its source, e.g. `up -f <dir>` or `worker --config <file>`.
    pub cmd: Vec<String>,
    /// Environment variables set for the process (on top of the test's own).
    pub env: Vec<(String, String)>,
}

impl Worker {
    /// Start `causeway up -f <manifests>` with a data dir under `dir`.
    pub fn start(dir: &Path, manifests: &Path, extra: &[&str]) -> Worker {
        let cmd = vec![
            "up".to_string(),
            "-f".to_string(),
            manifests.display().to_string(),
        ];
        Worker::start_cmd(dir, manifests, cmd, extra)
    }

    /// Start `causeway worker --config <file>`.
    pub fn start_worker(dir: &Path, config: &Path, extra: &[&str]) -> Worker {
        let cmd = vec![
            "worker".to_string(),
            "--config".to_string(),
            config.display().to_string(),
        ];
        Worker::start_cmd(dir, config, cmd, extra)
    }

    /// Start `cmd` (e.g. `["up", "-f", dir]`) with the admin API on `admin`.
    pub fn start_admin_at(
        dir: &Path,
        manifests: &Path,
        cmd: Vec<String>,
        admin: SocketAddr,
        extra: &[&str],
    ) -> Worker {
        let mut w = Worker {
            cmd,
            child: None,
            listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            admin,
            data_dir: dir.join("data"),
            manifests: manifests.to_path_buf(),
            log: dir.join("worker.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        };
        w.spawn();
        w
    }

    /// Start `causeway up -f <manifests>` with these environment variables set.
    pub fn start_with_env(
        dir: &Path,
        manifests: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        let cmd = vec![
            "up".to_string(),
            "-f".to_string(),
            manifests.display().to_string(),
        ];
        let mut w = Worker::unstarted(dir, manifests, cmd, extra);
        w.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        w.spawn();
        w
    }

    fn start_cmd(dir: &Path, manifests: &Path, cmd: Vec<String>, extra: &[&str]) -> Worker {
        let mut w = Worker::unstarted(dir, manifests, cmd, extra);
        w.spawn();
        w
    }

    /// `causeway up -f <manifests>` started without waiting for it to be ready.
    pub fn start_unready(dir: &Path, manifests: &Path, extra: &[&str]) -> Worker {
        let cmd = vec![
            "up".to_string(),
            "-f".to_string(),
            manifests.display().to_string(),
        ];
        let mut w = Worker::unstarted(dir, manifests, cmd, extra);
        w.spawn_only();
        w
    }

    fn unstarted(dir: &Path, manifests: &Path, cmd: Vec<String>, extra: &[&str]) -> Worker {
        Worker {
            cmd,
            child: None,
            listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            admin: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            data_dir: dir.join("data"),
            manifests: manifests.to_path_buf(),
            log: dir.join("worker.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        }
    }

    pub fn spawn(&mut self) {
        self.spawn_only();
        self.wait_ready();
    }

    /// Start the process; do not wait for it to be ready.
    pub fn spawn_only(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(&self.cmd)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--admin")
            .arg(self.admin.to_string())
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("CAUSEWAY_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = blocking_get(&format!("http://{}/readyz", self.admin)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "worker not ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, by PID.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("worker did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET with a fresh blocking connection (for readiness polling outside async code).
pub fn blocking_get(url: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("http only")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        if path.is_empty() { "/" } else { path }
    )
    .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// One request the sink received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

type Responder = dyn Fn(usize, &Received) -> (u16, Vec<(String, String)>) + Send + Sync;

/// A loopback HTTP server that records every request and answers with `respond(n, req)`
/// where `n` counts requests to the same path (0 for the first).
#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    counts: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    respond: Arc<Responder>,
    pub total: Arc<AtomicUsize>,
}

impl Sink {
    pub async fn start(
        respond: impl Fn(usize, &Received) -> (u16, Vec<(String, String)>) + Send + Sync + 'static,
    ) -> Sink {
        Sink::start_on("127.0.0.1", respond).await
    }

    /// A sink on another loopback address (`127.0.0.2`, …) or a given `ip:port`.
    pub async fn start_on(
        ip: &str,
        respond: impl Fn(usize, &Received) -> (u16, Vec<(String, String)>) + Send + Sync + 'static,
    ) -> Sink {
        let bind = if ip.contains(':') {
            ip.to_string()
        } else {
            format!("{ip}:0")
        };
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            received: Default::default(),
            counts: Default::default(),
            respond: Arc::new(respond),
            total: Default::default(),
        };
        let app = axum::Router::new()
            .fallback(record)
            .with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sink
    }

    pub async fn ok() -> Sink {
        Sink::start(|_, _| (200, vec![])).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    /// Wait until `path` has seen at least `n` requests (bounded).
    pub async fn wait_for(&self, path: &str, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.count(path);
            if c >= n || Instant::now() > deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn record(
    State(sink): State<Sink>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Received {
        path: uri.path().to_string(),
        headers,
        body,
        at: Instant::now(),
    };
    let n = {
        let mut counts = sink.counts.lock().unwrap();
        let c = counts.entry(r.path.clone()).or_default();
        *c += 1;
        *c - 1
    };
    let (status, headers) = (sink.respond)(n, &r);
    // Paths under /echo answer with what they were sent (to test redaction).
    let text = if r.path.starts_with("/echo") {
        format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body))
    } else {
        "sink answer".to_string()
    };
    sink.received.lock().unwrap().push(r);
    sink.total.fetch_add(1, Ordering::SeqCst);
    let mut resp = (StatusCode::from_u16(status).unwrap(), text).into_response();
    for (k, v) in headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

/// A plugin `make plugins` built into `examples/plugins/dist` (e.g. `tagger.wasm`).
pub fn built_plugin(file: &str) -> PathBuf {
    let wasm = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins/dist")
        .join(file);
    assert!(
        wasm.exists(),
        "{} is missing: run `make plugins` first",
        wasm.display()
    );
    wasm
}

/// Write one bridge manifest (plus anything in `extra`) into `dir/manifests/`.
pub fn manifests(dir: &Path, yaml: &str) -> PathBuf {
    let m = dir.join("manifests");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("bridges.yaml"), yaml).unwrap();
    m
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// POST a body; returns (status, json body).
pub async fn post(
    c: &reqwest::Client,
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut rb = c
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The worker's `/metrics` text.
pub async fn metrics_text(c: &reqwest::Client, w: &Worker) -> String {
    c.get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn get_json(c: &reqwest::Client, url: &str) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

pub async fn admin_post(c: &reqwest::Client, url: &str) -> serde_json::Value {
    let resp = c.post(url).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap()
}

/// Wait until an event reaches `status` (bounded); returns the event.
pub async fn wait_status(
    c: &reqwest::Client,
    w: &Worker,
    id: &str,
    status: &str,
    limit: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let ev = get_json(c, &w.admin_url(&format!("/api/v1/events/{id}"))).await;
        if ev["status"] == status || Instant::now() > deadline {
            return ev;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Number of events in the store.
pub async fn stored_events(c: &reqwest::Client, w: &Worker) -> u64 {
    get_json(c, &w.admin_url("/api/v1/store")).await["events"]
        .as_u64()
        .unwrap()
}
