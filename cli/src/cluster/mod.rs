//! The worker's configuration in a cluster: `causeway worker --pool <namespace>/<name>`
//! watches the Secret the operator renders for its pool (`causeway-<pool>-config`, key
//! `config.json`, a JSON [`WorkerConfig`]) and publishes every new version.
//!
//! The pool's Role grants `get`, `list` and `watch` on that one Secret by `resourceNames`;
//! list and watch are authorised that way only with `fieldSelector=metadata.name=<it>`,
//! which is what the watch here sends. A Secret that does not parse is logged once and
//! skipped: the last good configuration keeps running. The worker never reads CRs.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use causeway_config::WorkerConfig;
use causeway_config::packing::unpack;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use causeway_runtime::config::{ConfigError, ConfigSource, Loaded, Published};

pub use causeway_config::{CONFIG_KEY, CONFIG_VERSION_ANNOTATION, config_secret_name};

/// Errors of the cluster config source.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--pool {0:?}: expected <namespace>/<name>")]
    PoolArg(String),
    #[error("kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("secret {namespace}/{name}: {message}")]
    Secret {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("secret {namespace}/{name}: no valid config within {seconds}s: {last}")]
    Timeout {
        namespace: String,
        name: String,
        seconds: u64,
        last: String,
    },
}

/// Split `--pool <namespace>/<name>`.
pub fn parse_pool(arg: &str) -> Result<(String, String), ClusterError> {
    match arg.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(ClusterError::PoolArg(arg.to_string())),
    }
}

/// The config inside a config Secret, or why there is none: `config.json` (plain JSON) or
/// `config.json.zst` (zstd-compressed JSON, for a large config), as the operator writes it
/// ([`causeway_config::packing`]).
pub fn parse_secret(secret: &Secret) -> Result<WorkerConfig, String> {
    let data = secret.data.as_ref();
    let strings = secret.string_data.as_ref();
    unpack(|k| {
        data.and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
            .or_else(|| strings.and_then(|d| d.get(k)).map(|s| s.as_bytes()))
    })
    .map_err(|e| e.to_string())
}

/// Watch the pool's config Secret and send each new version on `tx` (`None` until the first
/// valid one). Runs until every receiver of `tx` is gone. Bad Secrets and watch errors are
/// logged once per distinct message; the watch retries with backoff and never gives up.
pub async fn watch_config(
    client: Client,
    namespace: &str,
    pool: &str,
    tx: watch::Sender<Option<Arc<WorkerConfig>>>,
) -> Result<(), ClusterError> {
    let name = config_secret_name(pool);
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let wc = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = pin!(watcher(api, wc).default_backoff());
    let mut last_error: Option<String> = None;
    let report = |last_error: &mut Option<String>, message: String| {
        if last_error.as_deref() != Some(message.as_str()) {
            tracing::error!(secret = %name, namespace, error = %message, "configuration not reloaded; the previous one keeps running");
            *last_error = Some(message);
        }
    };
    loop {
        let event = tokio::select! {
            _ = tx.closed() => return Ok(()),
            ev = stream.next() => ev,
        };
        let Some(event) = event else { return Ok(()) };
        match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => match parse_secret(&s) {
                Ok(cfg) => {
                    last_error = None;
                    let changed = tx
                        .borrow()
                        .as_ref()
                        .is_none_or(|cur| cur.version != cfg.version);
                    if changed {
                        tracing::info!(version = %cfg.version, bridges = cfg.bridges.len(), plugins = cfg.plugins.len(), "new configuration");
                        tx.send_replace(Some(Arc::new(cfg)));
                    }
                }
                Err(message) => report(&mut last_error, message),
            },
            Ok(watcher::Event::Delete(_)) => {
                report(&mut last_error, "the config Secret was deleted".into())
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => report(&mut last_error, format!("watch: {e}")),
        }
    }
}

/// Read the Secret until it holds a valid config (the operator writes it before the
/// Deployment, but RBAC and caches may lag by a moment), or give up after `wait`.
pub async fn first_config(
    client: Client,
    namespace: &str,
    pool: &str,
    wait: Duration,
) -> Result<WorkerConfig, ClusterError> {
    let name = config_secret_name(pool);
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last = match api.get_opt(&name).await {
            Ok(Some(s)) => match parse_secret(&s) {
                Ok(cfg) => return Ok(cfg),
                Err(m) => m,
            },
            Ok(None) => "not found".to_string(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                namespace: namespace.into(),
                name,
                seconds: wait.as_secs(),
                last,
            });
        }
        tracing::warn!(secret = %name, namespace, reason = %last, "waiting for the pool's config");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A [`ConfigSource`] for `causeway worker --pool <namespace>/<name>`.
pub struct SecretSource {
    client: Client,
    namespace: String,
    pool: String,
    first: Option<Arc<WorkerConfig>>,
}

impl SecretSource {
    /// Connect with the in-cluster (or `KUBECONFIG`) credentials and read the first config.
    pub async fn connect(pool_arg: &str, wait: Duration) -> Result<Self, ClusterError> {
        let (namespace, pool) = parse_pool(pool_arg)?;
        let client = Client::try_default().await.map_err(ClusterError::Client)?;
        Self::with_client(client, &namespace, &pool, wait).await
    }

    /// Same, with a given client.
    pub async fn with_client(
        client: Client,
        namespace: &str,
        pool: &str,
        wait: Duration,
    ) -> Result<Self, ClusterError> {
        let first = first_config(client.clone(), namespace, pool, wait).await?;
        Ok(SecretSource {
            client,
            namespace: namespace.into(),
            pool: pool.into(),
            first: Some(Arc::new(first)),
        })
    }
}

impl ConfigSource for SecretSource {
    /// A pool's Secret is written from CRs that namespace users control.
    fn is_local(&self) -> bool {
        false
    }

    fn load(&mut self) -> Result<Loaded, ConfigError> {
        match &self.first {
            Some(cfg) => Ok(Loaded {
                config: cfg.clone(),
                problems: Vec::new(),
            }),
            None => Err(ConfigError::NotLoaded {
                what: format!(
                    "secret {}/{}",
                    self.namespace,
                    config_secret_name(&self.pool)
                ),
            }),
        }
    }

    fn watch(
        self: Box<Self>,
        out: Published,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let (tx, mut rx) = watch::channel(self.first.clone());
            let watching = watch_config(self.client.clone(), &self.namespace, &self.pool, tx);
            let forward = async {
                while rx.changed().await.is_ok() {
                    let Some(cfg) = rx.borrow_and_update().clone() else {
                        continue;
                    };
                    let changed = out
                        .borrow()
                        .as_ref()
                        .is_none_or(|cur| cur.config.version != cfg.version);
                    if changed {
                        out.send_replace(Some(Arc::new(Loaded {
                            config: cfg,
                            problems: Vec::new(),
                        })));
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                r = watching => if let Err(e) = r { tracing::error!(error = %e, "config watch stopped") },
                _ = forward => {}
            }
        })
    }
}

#[cfg(test)]
mod tests;
