//! Where the console finds the workers, and how it talks to them.
//!
//! [`ClusterDirectory`] reads the pools and their pods from the controllers' last
//! observations (pods proven the pool's by their owner chain, as for the status checks),
//! and each pool's admin token from its Secret when a page needs it (the operator caches
//! no Secret data).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use causeway_crds::config::packing::unpack;
use causeway_crds::config::{ADMIN_PORT, WorkerConfig, config_secret_name};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::Value;

use crate::admin::base_url;
use crate::builders::admin_secret_name;
use crate::status::PoolObservation;

/// One pool and the admin base URLs of its running workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolTarget {
    pub namespace: String,
    pub pool: String,
    /// `http://<pod IP>:9090`, one per running worker.
    pub workers: Vec<String>,
}

/// The pools the console shows and their tokens. A trait so that tests can serve real
/// workers on loopback without a cluster.
pub trait Directory: Send + Sync + 'static {
    /// Every pool, by namespace and name.
    fn pools(&self) -> Vec<PoolTarget>;
    /// The pool's admin token; `Err` is a short reason shown on the page.
    fn token(&self, namespace: &str, pool: &str) -> BoxFuture<'static, Result<String, String>>;
    /// The pool's rendered configuration, for its AsyncAPI document; `Err` is a short
    /// reason. Read when asked: secret values in it are never kept or shown.
    fn config(
        &self,
        namespace: &str,
        pool: &str,
    ) -> BoxFuture<'static, Result<WorkerConfig, String>> {
        let why = format!("the configuration of {namespace}/{pool} cannot be read here");
        Box::pin(async move { Err(why) })
    }
}

/// The last observation of every pool, shared by every set of controllers (one per watched
/// namespace in a namespaced install).
pub type Observations = Arc<RwLock<BTreeMap<(String, String), Arc<PoolObservation>>>>;

/// The cluster: pools from the controllers' observations, tokens from their Secrets.
pub struct ClusterDirectory {
    pub client: Client,
    pub observations: Vec<Observations>,
    pub port: u16,
}

impl ClusterDirectory {
    pub fn new(client: Client, observations: Vec<Observations>) -> Self {
        ClusterDirectory {
            client,
            observations,
            port: ADMIN_PORT,
        }
    }
}

impl Directory for ClusterDirectory {
    fn pools(&self) -> Vec<PoolTarget> {
        let mut out = Vec::new();
        for obs in &self.observations {
            let Ok(map) = obs.read() else { continue };
            for ((ns, pool), o) in map.iter() {
                out.push(PoolTarget {
                    namespace: ns.clone(),
                    pool: pool.clone(),
                    workers: o
                        .pods
                        .iter()
                        .filter_map(|p| p.ip.as_deref())
                        .map(|ip| base_url(ip, self.port))
                        .collect(),
                });
            }
        }
        out.sort_by(|a, b| (&a.namespace, &a.pool).cmp(&(&b.namespace, &b.pool)));
        out
    }

    fn token(&self, namespace: &str, pool: &str) -> BoxFuture<'static, Result<String, String>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let name = admin_secret_name(pool);
        Box::pin(async move {
            let secret = api
                .get_opt(&name)
                .await
                .map_err(|e| format!("reading Secret {name}: {e}"))?
                .ok_or_else(|| format!("no Secret {name} yet"))?;
            crate::controller::usable_token(Some(secret))
                .ok_or_else(|| format!("Secret {name} holds no token"))
        })
    }

    fn config(
        &self,
        namespace: &str,
        pool: &str,
    ) -> BoxFuture<'static, Result<WorkerConfig, String>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let name = config_secret_name(pool);
        Box::pin(async move {
            let secret = api
                .get_opt(&name)
                .await
                .map_err(|e| format!("reading Secret {name}: {e}"))?
                .ok_or_else(|| format!("no Secret {name} yet"))?;
            let data = secret.data.unwrap_or_default();
            // The error names the key and a position only, never a value of the Secret.
            unpack(|k| data.get(k).map(|b| b.0.as_slice()))
                .map_err(|e| format!("Secret {name}: {e}"))
        })
    }
}

/// HTTP to the workers' admin API, with the pool's token.
#[derive(Clone)]
pub struct WorkerClient {
    client: reqwest::Client,
}

impl WorkerClient {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        Ok(WorkerClient {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .no_proxy()
                .build()?,
        })
    }

    pub fn get(
        &self,
        base: &str,
        token: &str,
        path: &str,
    ) -> BoxFuture<'static, Result<Value, String>> {
        let req = self.client.get(format!("{base}{path}")).bearer_auth(token);
        let what = format!("GET {}", path.split('?').next().unwrap_or(path));
        Box::pin(send(req, what))
    }

    pub fn post(
        &self,
        base: &str,
        token: &str,
        path: &str,
    ) -> BoxFuture<'static, Result<Value, String>> {
        let req = self.client.post(format!("{base}{path}")).bearer_auth(token);
        let what = format!("POST {path}");
        Box::pin(send(req, what))
    }
}

/// The answer's JSON, or `"<what>: HTTP <code>: <the worker's error>"`.
async fn send(req: reqwest::RequestBuilder, what: String) -> Result<Value, String> {
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("{what}: timed out")
        } else if e.is_connect() {
            format!("{what}: connection refused or unreachable")
        } else {
            format!("{what}: {e}")
        }
    })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| format!("{what}: {e}"))?;
    if !status.is_success() {
        let why = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(format!("{what}: HTTP {} {why}", status.as_u16())
            .trim_end()
            .to_string());
    }
    serde_json::from_slice(&body).map_err(|e| format!("{what}: bad body: {e}"))
}
