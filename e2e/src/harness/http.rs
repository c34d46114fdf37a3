//! HTTP on the tests' side: loopback sinks that record what workers deliver, a file
//! server for plugin components (`http` sources with a sha256), a client, and the
//! signatures senders put on webhooks.
//!
//! Servers run on one background runtime of their own, so a test blocked in `kubectl`
//! never holds up a delivery.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::Stack;

fn background() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("e2e-servers")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| anyhow!("background runtime: {e}"))
}

/// Bind on the sink host (loopback locally) and serve `router` in the background.
fn serve(router: axum::Router) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let stack = Stack::get()?;
    let bind_host = std::env::var("E2E_SINK_BIND").unwrap_or_else(|_| stack.sink_host.clone());
    let rt = background()?;
    // Bound here (synchronously: this may run inside a test's runtime), served there.
    let std_listener = std::net::TcpListener::bind((bind_host.as_str(), 0))
        .with_context(|| format!("bind {bind_host}:0"))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("[e2e] sink on {addr}: {e}");
                return;
            }
        };
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok((addr, tx))
}

/// One request a sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "sink body is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

#[derive(Default)]
struct SinkState {
    received: Mutex<Vec<Received>>,
    status: Mutex<u16>,
}

/// A loopback HTTP server that records every request and answers 200 (or what
/// [`Sink::respond_with`] says).
pub struct Sink {
    addr: SocketAddr,
    host: String,
    state: Arc<SinkState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn record(
    State(state): State<Arc<SinkState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let r = Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body,
        at: Instant::now(),
    };
    if let Ok(mut v) = state.received.lock() {
        v.push(r);
    }
    let code = state.status.lock().map(|s| *s).unwrap_or(200);
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

impl Sink {
    pub fn start() -> Result<Sink> {
        let state = Arc::new(SinkState {
            received: Mutex::new(Vec::new()),
            status: Mutex::new(200),
        });
        let router = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let (addr, stop) = serve(router)?;
        Ok(Sink {
            addr,
            host: Stack::get()?.sink_host.clone(),
            state,
            _stop: stop,
        })
    }

    /// `http://<host>:<port>` (no trailing slash).
    pub fn base(&self) -> String {
        format!("http://{}:{}", self.host, self.addr.port())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn respond_with(&self, status: u16) {
        if let Ok(mut s) = self.state.status.lock() {
            *s = status;
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Requests to `path` so far.
    pub fn at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Wait until at least `n` requests reached `path` (any path when `None`).
    pub async fn wait_for(
        &self,
        path: Option<&str>,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>> {
        let start = Instant::now();
        loop {
            let got: Vec<Received> = self
                .received()
                .into_iter()
                .filter(|r| path.is_none_or(|p| r.path == p))
                .collect();
            if got.len() >= n {
                return Ok(got);
            }
            if start.elapsed() >= timeout {
                bail!(
                    "sink {}: {} of {n} requests to {} after {timeout:?} (all received: {:?})",
                    self.base(),
                    got.len(),
                    path.unwrap_or("any path"),
                    self.received()
                        .iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Serves the example plugins' components (`examples/plugins/dist/<name>.wasm`), so
/// Plugins can use `http` sources with the real sha256.
pub struct FileServer {
    addr: SocketAddr,
    host: String,
    dir: PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FileServer {
    pub fn plugins() -> Result<FileServer> {
        let dir = Stack::get()?.repo.join("examples/plugins/dist");
        if !dir.join("tagger.wasm").exists() {
            bail!(
                "{} has no components: run `make plugins` first",
                dir.display()
            );
        }
        let root = dir.clone();
        let router = axum::Router::new().fallback(move |uri: Uri| {
            let root = root.clone();
            async move {
                let name = uri.path().trim_start_matches('/');
                if name.contains('/') || name.contains("..") {
                    return Err(StatusCode::NOT_FOUND);
                }
                tokio::fs::read(root.join(name))
                    .await
                    .map_err(|_| StatusCode::NOT_FOUND)
            }
        });
        let (addr, stop) = serve(router)?;
        Ok(FileServer {
            addr,
            host: Stack::get()?.sink_host.clone(),
            dir,
            _stop: stop,
        })
    }

    /// URL of `name` (e.g. `tagger.wasm`).
    pub fn url(&self, name: &str) -> String {
        format!("http://{}:{}/{name}", self.host, self.addr.port())
    }

    /// Lowercase hex sha256 of `name`.
    pub fn sha256(&self, name: &str) -> Result<String> {
        let bytes = std::fs::read(self.dir.join(name)).with_context(|| format!("read {name}"))?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    }

    /// A Plugin `source` for `name`, as YAML flow text.
    pub fn source(&self, name: &str) -> Result<String> {
        Ok(format!(
            "{{http: {{url: \"{}\", sha256: \"{}\"}}}}",
            self.url(name),
            self.sha256(name)?
        ))
    }
}

/// A plain HTTP client (no proxies from the environment, short timeouts).
pub fn client() -> Result<reqwest::Client> {
    static PROVIDER: OnceLock<()> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .context("http client")
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

/// POST `body` to `url` with `headers`.
pub async fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    let mut req = client()?.post(url).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    Ok(Reply {
        status,
        body: resp.text().await.unwrap_or_default(),
    })
}

/// GET `url`.
pub async fn get(url: &str) -> Result<Reply> {
    let resp = client()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    Ok(Reply {
        status,
        body: resp.text().await.unwrap_or_default(),
    })
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| anyhow!("hmac key: {e}"))?;
    mac.update(msg);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// GitHub's `X-Hub-Signature-256` value for `body`.
pub fn github_signature(secret: &str, body: &str) -> Result<String> {
    Ok(format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body.as_bytes())?)
    ))
}

/// Stripe's `Stripe-Signature` value: HMAC-SHA256 of `"{t}.{body}"` keyed with the whole
/// endpoint secret (`whsec_` included).
pub fn stripe_signature(secret: &str, body: &str, t: i64) -> Result<String> {
    let sig = hmac_sha256(secret.as_bytes(), format!("{t}.{body}").as_bytes())?;
    Ok(format!("t={t},v1={}", hex::encode(sig)))
}

/// Verify a Standard Webhooks signature (`webhook-signature: v1,<base64>`) over
/// `"{id}.{timestamp}.{body}"` with the base64-decoded part of `whsec_…` as the key.
pub fn standard_webhooks_valid(
    secret: &str,
    id: &str,
    ts: &str,
    body: &[u8],
    signature_header: &str,
) -> Result<bool> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .context("secret")?;
    let mut msg = format!("{id}.{ts}.").into_bytes();
    msg.extend_from_slice(body);
    let want = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, &msg)?);
    Ok(signature_header
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(want.as_str())))
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_known_vectors() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        assert_eq!(
            github_signature("It's a Secret to Everybody", "Hello, World!").unwrap(),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let s = stripe_signature("whsec_x", "{}", 1).unwrap();
        assert!(s.starts_with("t=1,v1="));
    }
}
