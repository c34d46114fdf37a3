//! Command line and environment of `causeway-operator`.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// How a worker reaches a plugin placed in another pool of its namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PoolRouting {
    /// The internal-port URLs of the other pool's ready pods, by IP (the worker spreads
    /// calls over them); its Service's DNS name only while it has no ready pod.
    #[default]
    PodIps,
    /// Always the other pool's internal Service, by its cluster DNS name
    /// (`http://<service>.<namespace>.svc:8081`): kube-proxy picks the pod.
    Service,
}

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

    /// imagePullSecrets of worker pods whose pool lists none (comma-separated Secret
    /// names; each must exist in the pool's namespace).
    #[arg(
        long,
        env = "CAUSEWAY_WORKER_IMAGE_PULL_SECRETS",
        value_delimiter = ','
    )]
    pub worker_image_pull_secrets: Vec<String>,

    /// Replicas of a `default` pool the operator creates on demand.
    #[arg(long, env = "CAUSEWAY_DEFAULT_POOL_REPLICAS", default_value_t = 1)]
    pub default_pool_replicas: i32,

    /// Embedded storage size of a `default` pool the operator creates.
    #[arg(
        long,
        env = "CAUSEWAY_DEFAULT_POOL_STORAGE_SIZE",
        default_value = "1Gi"
    )]
    pub default_pool_storage_size: String,

    /// StorageClass of a `default` pool the operator creates (cluster default when unset).
    #[arg(long, env = "CAUSEWAY_DEFAULT_POOL_STORAGE_CLASS")]
    pub default_pool_storage_class: Option<String>,

    /// Put a `default` pool the operator creates on postgres storage, with the connection
    /// URL from this Secret of the pool's namespace (it must carry `causeway.dev/use:
    /// "true"`). Embedded storage when unset.
    #[arg(long, env = "CAUSEWAY_DEFAULT_POOL_POSTGRES_URL_SECRET")]
    pub default_pool_postgres_url_secret: Option<String>,

    /// The key of that Secret holding the URL.
    #[arg(
        long,
        env = "CAUSEWAY_DEFAULT_POOL_POSTGRES_URL_KEY",
        default_value = "url"
    )]
    pub default_pool_postgres_url_key: String,

    /// Address of the cluster console (one console over every pool; off when unset). It
    /// needs the console token in the environment variable `CAUSEWAY_CONSOLE_TOKEN` (the
    /// chart sets it from its Secret; it is never a flag, so it never shows in `ps`).
    #[arg(long, env = "CAUSEWAY_CONSOLE_ADDR")]
    pub console_addr: Option<SocketAddr>,

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
    #[arg(
        long,
        env = "CAUSEWAY_LEADER_ELECTION_LEASE",
        default_value = "causeway-operator"
    )]
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

    /// How workers reach plugins placed in another pool: `pod-ips` or `service`.
    #[arg(long, env = "CAUSEWAY_POOL_ROUTING", value_enum, default_value_t = PoolRouting::PodIps)]
    pub pool_routing: PoolRouting,

    /// Seconds between status checks of a pool that has not converged.
    #[arg(long, env = "CAUSEWAY_REQUEUE_SECONDS", default_value_t = 5)]
    pub requeue_seconds: u64,

    /// How long a pool's first wake-up waits for more changes before the pool renders, in
    /// milliseconds: a burst of Bridge changes renders about once per window instead of
    /// once per change (0: render on every change).
    #[arg(long, env = "CAUSEWAY_RENDER_BATCH_MS", default_value_t = 1000)]
    pub render_batch_ms: u64,

    /// Reconciles each controller (pools, bridges, plugins) runs at once. Each one that
    /// writes holds a connection to the API server; a bound keeps a burst of thousands of
    /// changes from opening thousands of connections.
    #[arg(long, env = "CAUSEWAY_RECONCILE_CONCURRENCY", default_value_t = 16)]
    pub reconcile_concurrency: u16,

    /// Timeout of one call to a worker's admin API, in milliseconds.
    #[arg(long, env = "CAUSEWAY_ADMIN_TIMEOUT_MS", default_value_t = 2000)]
    pub admin_timeout_ms: u64,

    /// Watch only these namespaces (comma-separated); every namespace when empty. With a
    /// list, the operator needs Roles in those namespaces only (the chart's
    /// `watchNamespaces`), not a cluster-wide ClusterRole.
    #[arg(long, env = "CAUSEWAY_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// Networks no worker destination may reach, whatever a pool allows (comma-separated
    /// CIDRs; the chart's `worker.denyDestinationCidrs`).
    #[arg(
        long,
        env = "CAUSEWAY_WORKER_DENY_DESTINATION_CIDRS",
        value_delimiter = ','
    )]
    pub worker_deny_destination_cidrs: Vec<String>,

    /// OpenTelemetry variables set on every worker container, `NAME=VALUE`, repeatable
    /// (the chart's `worker.otelEnv`): an `OTEL_EXPORTER_OTLP_ENDPOINT` turns on trace
    /// export (docs/traces.md). Only `OTEL_*` names are accepted.
    #[arg(long = "worker-otel-env", value_parser = parse_otel_env)]
    pub worker_otel_env: Vec<(String, String)>,

    /// Write a NetworkPolicy per pool: ingress port open, admin port only from the operator
    /// (and Prometheus when given), internal port only from the operator and worker pods.
    #[arg(long, env = "CAUSEWAY_WORKER_NETWORK_POLICY", default_value_t = false)]
    pub worker_network_policy: bool,

    /// Namespace of the operator's pods, for the NetworkPolicy; defaults to POD_NAMESPACE,
    /// then the service account's namespace.
    #[arg(long, env = "CAUSEWAY_OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,

    /// Labels of the operator's pods (`k=v,k=v`), for the NetworkPolicy.
    #[arg(
        long,
        env = "CAUSEWAY_OPERATOR_POD_LABELS",
        default_value = "app.kubernetes.io/name=causeway,app.kubernetes.io/component=operator"
    )]
    pub operator_pod_labels: String,

    /// Let Prometheus reach the workers' admin port (`/metrics`): labels of its namespaces
    /// (`k=v,…`; empty: any namespace). Prometheus is left out when neither this nor
    /// `--prometheus-pod-labels` is given.
    #[arg(long, env = "CAUSEWAY_PROMETHEUS_NAMESPACE_LABELS")]
    pub prometheus_namespace_labels: Option<String>,

    /// Labels of the Prometheus pods (`k=v,…`; empty: any pod of those namespaces).
    #[arg(long, env = "CAUSEWAY_PROMETHEUS_POD_LABELS")]
    pub prometheus_pod_labels: Option<String>,
}

/// Parse `k=v,k=v` (empty: no labels).
pub fn parse_labels(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("label {pair:?} is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("label {pair:?} has no key"));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

impl Args {
    /// The namespaces to watch: `None` for all, else each listed one once, in order.
    pub fn watched_namespaces(&self) -> Option<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for ns in self
            .watch_namespaces
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            if !out.iter().any(|o| o == ns) {
                out.push(ns.to_string());
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// `NAME=VALUE` with an `OTEL_` name of upper-case letters, digits and underscores; not
/// one of the `*_HEADERS` (their values are credentials).
pub fn parse_otel_env(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    let valid = name.len() > "OTEL_".len()
        && name.starts_with("OTEL_")
        && name
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    if !valid {
        return Err(format!(
            "{name:?}: only OpenTelemetry variables (OTEL_ and upper-case letters, digits, _) are passed to workers"
        ));
    }
    if name.ends_with("_HEADERS") {
        // Headers carry a collector's credentials: a flag and a Deployment's env would show
        // them to anyone who can read either.
        return Err(format!(
            "{name:?}: OTLP headers may hold credentials and are not passed as plain values; see docs/traces.md"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_otel_env_takes_otel_variables_only_and_never_headers() {
        let a = Args::try_parse_from([
            "causeway-operator",
            "--worker-otel-env=OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318",
            "--worker-otel-env",
            "OTEL_RESOURCE_ATTRIBUTES=k8s.cluster.name=prod,team=a",
        ])
        .unwrap();
        assert_eq!(
            a.worker_otel_env,
            vec![
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                    "http://collector:4318".to_string()
                ),
                (
                    "OTEL_RESOURCE_ATTRIBUTES".to_string(),
                    "k8s.cluster.name=prod,team=a".to_string()
                ),
            ]
        );
        for bad in [
            "CAUSEWAY_LOG=debug",
            "OTEL_=x",
            "otel_service_name=x",
            "OTEL_SERVICE_NAME",
            "OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer x",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS=api-key=x",
        ] {
            let e =
                Args::try_parse_from(["causeway-operator", &format!("--worker-otel-env={bad}")])
                    .unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }

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
        assert_eq!(a.default_pool_postgres_url_secret, None);
        assert_eq!(a.worker_image, "causeway:1");
        assert_eq!(a.watched_namespaces(), None, "every namespace by default");
        assert!(!a.worker_network_policy);
    }

    // Issue 12 item 19: the namespaced install's flag.
    #[test]
    fn item19_watch_namespaces_parse_from_flag_and_env_style_lists() {
        let a = Args::try_parse_from([
            "causeway-operator",
            "--watch-namespaces=team-a,team-b",
            "--watch-namespaces",
            "team-c,team-a",
        ])
        .unwrap();
        assert_eq!(
            a.watched_namespaces(),
            Some(vec!["team-a".to_string(), "team-b".into(), "team-c".into()])
        );
        let a = Args::try_parse_from(["causeway-operator", "--watch-namespaces="]).unwrap();
        assert_eq!(a.watched_namespaces(), None);
    }

    #[test]
    fn labels_parse() {
        let l =
            parse_labels("app.kubernetes.io/name=causeway, app.kubernetes.io/component=operator")
                .unwrap();
        assert_eq!(l["app.kubernetes.io/component"], "operator");
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=v").is_err());
    }
}
