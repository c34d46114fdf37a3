//! The Causeway operator: reconciles WorkerPools, Bridges and Plugins into workers.
//!
//! - [`builders`]: pure functions from a pool to its desired children.
//! - [`status`]: pure folding of renders and worker reports into status.
//! - [`controller`]: the three kube-runtime controllers and their wiring.
//! - [`admin`]: the client of the workers' admin API.
//! - [`leader`], [`metrics`], [`memory`], [`cli`]: running it.
//!
//! See `docs/operator.md`.

pub mod admin;
pub mod builders;
pub mod cli;
pub mod console;
pub mod controller;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::admin::{AdminError, HttpAdmin};
use crate::builders::{BuildSettings, NAMESPACE_NAME_LABEL, NetworkPolicySettings, Peer};
use crate::cli::{Args, LogFormat, parse_labels};
use crate::console::workers::Observations;
use crate::console::{ClusterDirectory, Console, ConsoleError, WorkerClient};
use crate::controller::{PoolDefaults, RunError, Settings, run_controllers};
use crate::leader::{LeaderElector, LeaseError};
use crate::metrics::{Health, Metrics, MetricsError};

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("{0}")]
    Metrics(#[from] MetricsError),
    #[error("{0}")]
    Admin(#[from] AdminError),
    #[error("{0}")]
    Lease(#[from] LeaseError),
    #[error("{0}")]
    Run(#[from] RunError),
    #[error("logging: {0}")]
    Logging(String),
    #[error("flags: {0}")]
    Flags(String),
    #[error("{0}")]
    Console(crate::console::ConsoleError),
}

/// Set up logging from `--log-level` (or `RUST_LOG`) and `--log-format`.
pub fn init_logging(args: &Args) -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .map_err(|e| Error::Logging(e.to_string()))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| Error::Logging(e.to_string()))
}

fn identity(args: &Args) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let host = if host.is_empty() {
            "causeway-operator".to_string()
        } else {
            host
        };
        format!("{host}-{}", std::process::id())
    })
}

fn lease_namespace(args: &Args, client: &kube::Client) -> String {
    args.leader_election_namespace
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Who may reach the workers' admin and internal ports, from the flags; `None` when the
/// operator writes no NetworkPolicy. `own_namespace` is where the operator runs.
pub fn network_policy_settings(
    args: &Args,
    own_namespace: &str,
) -> Result<Option<NetworkPolicySettings>, String> {
    if !args.worker_network_policy {
        return Ok(None);
    }
    let namespace = args
        .operator_namespace
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| own_namespace.to_string());
    let pod_labels = parse_labels(&args.operator_pod_labels)?;
    if pod_labels.is_empty() {
        return Err("--operator-pod-labels must name the operator's pod labels".into());
    }
    let operator = Peer {
        namespace_labels: [(NAMESPACE_NAME_LABEL.to_string(), namespace)].into(),
        pod_labels,
    };
    let prometheus = if args.prometheus_namespace_labels.is_some()
        || args.prometheus_pod_labels.is_some()
    {
        Some(Peer {
            namespace_labels: parse_labels(
                args.prometheus_namespace_labels
                    .as_deref()
                    .unwrap_or_default(),
            )?,
            pod_labels: parse_labels(args.prometheus_pod_labels.as_deref().unwrap_or_default())?,
        })
    } else {
        None
    };
    Ok(Some(NetworkPolicySettings {
        operator,
        prometheus,
    }))
}

/// The platform's deny list, checked here so that a typo fails the operator's start
/// instead of every worker's.
pub fn deny_destination_cidrs(args: &Args) -> Result<Vec<String>, String> {
    let list: Vec<String> = args
        .worker_deny_destination_cidrs
        .iter()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    for c in &list {
        causeway_crds::validate::check_cidr(c)
            .map_err(|e| format!("--worker-deny-destination-cidrs: {e}"))?;
    }
    Ok(list)
}

/// The operator's controller settings from its flags (`own_namespace`: where it runs).
pub fn settings(args: &Args, own_namespace: &str) -> Result<Settings, Error> {
    Ok(Settings {
        build: BuildSettings {
            worker_image: args.worker_image.clone(),
            image_pull_policy: args.worker_image_pull_policy.clone(),
            image_pull_secrets: args
                .worker_image_pull_secrets
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            network_policy: network_policy_settings(args, own_namespace).map_err(Error::Flags)?,
            deny_destination_cidrs: deny_destination_cidrs(args).map_err(Error::Flags)?,
            otel_env: args.worker_otel_env.clone(),
        },
        default_pool: PoolDefaults {
            replicas: args.default_pool_replicas,
            storage_size: args.default_pool_storage_size.clone(),
            storage_class: args.default_pool_storage_class.clone(),
            postgres_url: args
                .default_pool_postgres_url_secret
                .as_ref()
                .filter(|name| !name.is_empty())
                .map(|name| causeway_crds::common::SecretKeyRef {
                    name: name.clone(),
                    key: args.default_pool_postgres_url_key.clone(),
                }),
        },
        requeue_pending: Duration::from_secs(args.requeue_seconds.max(1)),
        requeue_converged: Duration::from_secs(60),
        render_batch: Duration::from_millis(args.render_batch_ms),
        reconcile_concurrency: args.reconcile_concurrency.max(1),
        pool_routing: args.pool_routing,
    })
}

/// Run the operator until SIGTERM, or until it loses its lease.
pub async fn run(args: Args) -> Result<(), Error> {
    init_logging(&args)?;
    let client = kube::Client::try_default().await.map_err(Error::Client)?;
    let settings = settings(&args, &lease_namespace(&args, &client))?;
    let metrics = Metrics::new()?;
    let health = Health::default();
    let server = tokio::spawn(metrics::serve(
        args.metrics_addr,
        metrics.clone(),
        health.clone(),
    ));

    tokio::spawn(memory::trim_periodically(memory::TRIM_INTERVAL));

    let version = client.apiserver_version().await.map_err(Error::Client)?;
    tracing::info!(apiserver = %version.git_version, metrics = %args.metrics_addr, "connected");
    health.set_ready(true);

    let identity = identity(&args);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "causeway-operator".into(),
            instance: Some(identity.clone()),
        },
    );
    let admin = Arc::new(HttpAdmin::new(Duration::from_millis(
        args.admin_timeout_ms,
    ))?);

    let elector = args.leader_election.then(|| {
        LeaderElector::new(
            client.clone(),
            &lease_namespace(&args, &client),
            &args.leader_election_lease,
            &identity,
        )
    });
    if let Some(e) = &elector {
        tokio::select! {
            r = e.acquire() => r?,
            _ = shutdown_signal() => return Ok(()),
        }
    }
    metrics.leader.set(1);

    // Causeway's objects only ever relate within a namespace, so a namespaced install runs
    // one independent set of controllers per watched namespace.
    let shutdown = futures::FutureExt::shared(shutdown_signal());
    let mut observations: Vec<Observations> = Vec::new();
    let runs: Vec<_> = match args.watched_namespaces() {
        None => {
            let obs = Observations::default();
            observations.push(obs.clone());
            vec![run_controllers(
                client.clone(),
                None,
                settings,
                admin,
                metrics,
                recorder,
                obs,
                shutdown,
            )]
        }
        Some(namespaces) => {
            tracing::info!(namespaces = ?namespaces, "watching only these namespaces");
            namespaces
                .into_iter()
                .map(|ns| {
                    let obs = Observations::default();
                    observations.push(obs.clone());
                    run_controllers(
                        client.clone(),
                        Some(ns),
                        settings.clone(),
                        admin.clone(),
                        metrics.clone(),
                        recorder.clone(),
                        obs,
                        shutdown.clone(),
                    )
                })
                .collect()
        }
    };
    let console = match args.console_addr {
        Some(addr) => {
            let token = std::env::var("CAUSEWAY_CONSOLE_TOKEN").unwrap_or_default();
            let c = Console {
                token,
                directory: Arc::new(ClusterDirectory::new(client.clone(), observations)),
                workers: WorkerClient::new(Duration::from_millis(args.admin_timeout_ms))
                    .map_err(|e| Error::Console(ConsoleError::Client(e)))?,
            };
            if c.token.trim().is_empty() {
                return Err(Error::Console(ConsoleError::NoToken));
            }
            tokio::spawn(console::serve(addr, c))
        }
        None => tokio::spawn(std::future::pending()),
    };
    let controllers = async {
        for r in futures::future::join_all(runs).await {
            r?;
        }
        Ok::<(), RunError>(())
    };
    let lost = async {
        match &elector {
            Some(e) => e.hold().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = controllers => r?,
        lost = lost => return Err(lost.into()),
        served = server => match served {
            Ok(Err(e)) => return Err(e.into()),
            _ => tracing::error!("metrics server stopped"),
        },
        served = console => match served {
            Ok(Err(e)) => return Err(Error::Console(e)),
            _ => tracing::error!("console stopped"),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    // Issue 12 item 8: the flags the chart passes give the per-pool NetworkPolicy's peers.
    #[test]
    fn item8_network_policy_settings_from_flags() {
        let args = Args::try_parse_from(["causeway-operator"]).unwrap();
        assert_eq!(
            network_policy_settings(&args, "causeway-system").unwrap(),
            None,
            "off unless asked"
        );

        let args = Args::try_parse_from([
            "causeway-operator",
            "--worker-network-policy",
            "--operator-pod-labels=app.kubernetes.io/name=causeway,app.kubernetes.io/instance=rel",
        ])
        .unwrap();
        let s = network_policy_settings(&args, "causeway-system")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.operator.namespace_labels[NAMESPACE_NAME_LABEL],
            "causeway-system"
        );
        assert_eq!(s.operator.pod_labels["app.kubernetes.io/instance"], "rel");
        assert_eq!(s.prometheus, None);
        let built = settings(&args, "causeway-system").unwrap();
        assert!(built.build.network_policy.is_some());

        let args = Args::try_parse_from([
            "causeway-operator",
            "--worker-network-policy",
            "--operator-namespace=ops",
            "--prometheus-namespace-labels=kubernetes.io/metadata.name=monitoring",
            "--prometheus-pod-labels=",
        ])
        .unwrap();
        let s = network_policy_settings(&args, "ignored").unwrap().unwrap();
        assert_eq!(s.operator.namespace_labels[NAMESPACE_NAME_LABEL], "ops");
        let prom = s.prometheus.unwrap();
        assert_eq!(prom.namespace_labels[NAMESPACE_NAME_LABEL], "monitoring");
        assert!(prom.pod_labels.is_empty(), "any pod of that namespace");

        let args = Args::try_parse_from([
            "causeway-operator",
            "--worker-network-policy",
            "--operator-pod-labels=",
        ])
        .unwrap();
        assert!(
            network_policy_settings(&args, "x").is_err(),
            "an empty operator selector would admit every pod"
        );
    }

    #[test]
    fn the_deny_list_is_checked_at_start() {
        let args = Args::try_parse_from([
            "causeway-operator",
            "--worker-deny-destination-cidrs=10.0.0.0/8, fd00::/8",
        ])
        .unwrap();
        assert_eq!(
            deny_destination_cidrs(&args).unwrap(),
            vec!["10.0.0.0/8", "fd00::/8"]
        );
        let args = Args::try_parse_from([
            "causeway-operator",
            "--worker-deny-destination-cidrs=10.0.0.0",
        ])
        .unwrap();
        assert!(settings(&args, "x").is_err());
    }
}
