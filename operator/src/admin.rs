//! The operator's client of the workers' admin API (`GET /api/v1/config` on port 9090).
//!
//! Pods are reached by IP, not through a Service: each pod is asked on its own, and the
//! e2e control plane has neither DNS nor kube-proxy. The caller passes only pods whose
//! owner chain proves them the pool's (`controller::inventory::Owners`): the request
//! carries the pool's admin token, so a pod that merely copies a pool's labels must never
//! get it. The traffic is plain HTTP inside the cluster; the per-pool NetworkPolicy keeps
//! other pods off the admin port (TLS is not done yet).

use std::time::Duration;

use causeway_crds::config::ADMIN_PORT;
use futures::future::BoxFuture;

use crate::status::WorkerReport;

/// Path of the config report on the admin port.
pub const CONFIG_PATH: &str = "/api/v1/config";

/// Asks one worker what it runs. A trait so that scenario tests can stand in for workers.
pub trait AdminApi: Send + Sync + 'static {
    /// `Err` is a short human-readable reason (it ends up in a condition message).
    fn config(&self, pod_ip: &str, token: &str)
    -> BoxFuture<'static, Result<WorkerReport, String>>;
}

/// Errors building the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("build http client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The real client: plain HTTP to `http://<podIP>:9090`, bearer token.
#[derive(Clone)]
pub struct HttpAdmin {
    client: reqwest::Client,
    port: u16,
}

impl HttpAdmin {
    pub fn new(timeout: Duration) -> Result<Self, AdminError> {
        Self::with_port(timeout, ADMIN_PORT)
    }

    /// Same, on another port (tests serve on an ephemeral one).
    pub fn with_port(timeout: Duration, port: u16) -> Result<Self, AdminError> {
        // reqwest is built without a default TLS provider and panics without one; the admin
        // API is plain HTTP, but the client is built with TLS support all the same.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()?;
        Ok(HttpAdmin { client, port })
    }
}

/// `http://<ip>:<port>`, bracketing IPv6 addresses.
pub fn base_url(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]:{port}")
    } else {
        format!("http://{ip}:{port}")
    }
}

impl AdminApi for HttpAdmin {
    fn config(
        &self,
        pod_ip: &str,
        token: &str,
    ) -> BoxFuture<'static, Result<WorkerReport, String>> {
        let req = self
            .client
            .get(format!("{}{CONFIG_PATH}", base_url(pod_ip, self.port)))
            .bearer_auth(token);
        Box::pin(async move {
            let resp = req.send().await.map_err(|e| short(&e))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("GET {CONFIG_PATH}: HTTP {}", status.as_u16()));
            }
            let bytes = resp.bytes().await.map_err(|e| short(&e))?;
            serde_json::from_slice(&bytes).map_err(|e| format!("GET {CONFIG_PATH}: bad body: {e}"))
        })
    }
}

fn short(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use axum::routing::get;

    #[tokio::test]
    async fn reads_a_report_with_the_token_and_reports_refusals() {
        let app = axum::Router::new().route(
            CONFIG_PATH,
            get(|h: HeaderMap| async move {
                if h.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer s3cret") {
                    return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                }
                (
                    axum::http::StatusCode::OK,
                    r#"{"version":"v9","bridges":[{"namespace":"a","name":"b","generation":1}]}"#
                        .to_string(),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let admin = HttpAdmin::with_port(Duration::from_secs(2), port).unwrap();
        let r = admin.config("127.0.0.1", "s3cret").await.unwrap();
        assert_eq!(r.version, "v9");
        let e = admin.config("127.0.0.1", "wrong").await.unwrap_err();
        assert!(e.contains("401"), "{e}");
        server.abort();
        let closed = HttpAdmin::with_port(Duration::from_millis(500), port).unwrap();
        assert!(closed.config("127.0.0.1", "x").await.is_err());
        assert_eq!(base_url("fd00::1", 9090), "http://[fd00::1]:9090");
    }
}
