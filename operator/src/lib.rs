//! The Causeway operator: reconciles WorkerPools, Bridges and Plugins into workers.
//!
//! - [`builders`]: pure functions from a pool to its desired children.
//! - [`status`]: pure folding of renders and worker reports into status.
//! - [`controller`]: the three kube-runtime controllers and their wiring.
//! - [`admin`]: the client of the workers' admin API.
//! - [`leader`], [`metrics`], [`cli`]: running it.
//!
//! See `docs/operator.md`.

pub mod admin;
pub mod builders;
pub mod cli;
pub mod controller;
pub mod leader;
pub mod metrics;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::admin::{AdminError, HttpAdmin};
use crate::builders::BuildSettings;
use crate::cli::{Args, LogFormat};
use crate::controller::{run_controllers, PoolDefaults, RunError, Settings};
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
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let host = if host.is_empty() { "causeway-operator".to_string() } else { host };
        format!("{host}-{}", std::process::id())
    })
}

fn lease_namespace(args: &Args, client: &kube::Client) -> String {
    args.leader_election_namespace
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok().map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The operator's controller settings from its flags.
pub fn settings(args: &Args) -> Settings {
    Settings {
        build: BuildSettings { worker_image: args.worker_image.clone(), image_pull_policy: args.worker_image_pull_policy.clone() },
        default_pool: PoolDefaults {
            replicas: args.default_pool_replicas,
            storage_size: args.default_pool_storage_size.clone(),
            storage_class: args.default_pool_storage_class.clone(),
        },
        requeue_pending: Duration::from_secs(args.requeue_seconds.max(1)),
        requeue_converged: Duration::from_secs(60),
    }
}

/// Run the operator until SIGTERM, or until it loses its lease.
pub async fn run(args: Args) -> Result<(), Error> {
    init_logging(&args)?;
    let client = kube::Client::try_default().await.map_err(Error::Client)?;
    let metrics = Metrics::new()?;
    let health = Health::default();
    let server = tokio::spawn(metrics::serve(args.metrics_addr, metrics.clone(), health.clone()));

    let version = client.apiserver_version().await.map_err(Error::Client)?;
    tracing::info!(apiserver = %version.git_version, metrics = %args.metrics_addr, "connected");
    health.set_ready(true);

    let identity = identity(&args);
    let recorder = Recorder::new(client.clone(), Reporter { controller: "causeway-operator".into(), instance: Some(identity.clone()) });
    let admin = Arc::new(HttpAdmin::new(Duration::from_millis(args.admin_timeout_ms))?);

    let elector = args
        .leader_election
        .then(|| LeaderElector::new(client.clone(), &lease_namespace(&args, &client), &args.leader_election_lease, &identity));
    if let Some(e) = &elector {
        tokio::select! {
            r = e.acquire() => r?,
            _ = shutdown_signal() => return Ok(()),
        }
    }
    metrics.leader.set(1);

    let controllers = run_controllers(client, settings(&args), admin, metrics, recorder, shutdown_signal());
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
    }
    Ok(())
}
