//! Command line and environment of `causeway-operator`.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// The Causeway operator: reconciles WorkerPools, Bridges and Plugins into workers.
#[derive(Clone, Debug, Parser)]
#[command(name = "causeway-operator", version)]
pub struct Args {
    /// Worker image for pools that do not name one.
    #[arg(long, env = "CAUSEWAY_WORKER_IMAGE", default_value = concat!("causeway:", env!("CARGO_PKG_VERSION")))]
    pub worker_image: String,

    /// imagePullPolicy of worker containers (cluster default when unset).
    #[arg(long, env = "CAUSEWAY_WORKER_IMAGE_PULL_POLICY")]
    pub worker_image_pull_policy: Option<String>,

    /// Replicas of a `default` pool the operator creates on demand.
    #[arg(long, env = "CAUSEWAY_DEFAULT_POOL_REPLICAS", default_value_t = 1)]
    pub default_pool_replicas: i32,

    /// Embedded storage size of a `default` pool the operator creates.
    #[arg(long, env = "CAUSEWAY_DEFAULT_POOL_STORAGE_SIZE", default_value = "1Gi")]
    pub default_pool_storage_size: String,

    /// StorageClass of a `default` pool the operator creates (cluster default when unset).
    #[arg(long, env = "CAUSEWAY_DEFAULT_POOL_STORAGE_CLASS")]
    pub default_pool_storage_class: Option<String>,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "CAUSEWAY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Run only while holding the `causeway-operator` Lease (for more than one replica).
    #[arg(long, env = "CAUSEWAY_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,

    /// Namespace of the Lease; defaults to POD_NAMESPACE, then the service account's
    /// namespace, then the kubeconfig's.
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(long, env = "CAUSEWAY_LEADER_ELECTION_LEASE", default_value = "causeway-operator")]
    pub leader_election_lease: String,

    /// Identity written into the Lease and into Events; defaults to POD_NAME, then the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Log filter (RUST_LOG syntax). RUST_LOG wins when set.
    #[arg(long, env = "CAUSEWAY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "CAUSEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seconds between status checks of a pool that has not converged.
    #[arg(long, env = "CAUSEWAY_REQUEUE_SECONDS", default_value_t = 5)]
    pub requeue_seconds: u64,

    /// Timeout of one call to a worker's admin API, in milliseconds.
    #[arg(long, env = "CAUSEWAY_ADMIN_TIMEOUT_MS", default_value_t = 2000)]
    pub admin_timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_the_chart_passes_parse() {
        let a = Args::try_parse_from([
            "causeway-operator",
            "--metrics-addr=0.0.0.0:8080",
            "--worker-image=causeway:1",
            "--default-pool-replicas=1",
            "--default-pool-storage-size=2Gi",
            "--default-pool-storage-class=fast",
            "--leader-election",
            "--log-format=json",
        ])
        .unwrap();
        assert!(a.leader_election);
        assert_eq!(a.log_format, LogFormat::Json);
        assert_eq!(a.default_pool_storage_class.as_deref(), Some("fast"));
        assert_eq!(a.worker_image, "causeway:1");
    }
}
