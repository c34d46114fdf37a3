//! `pod-runner`: the e2e stand-in for a kubelet. Test infrastructure, not product; see
//! `causeway_e2e::runner` and docs/e2e.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "pod-runner",
    about = "Plays the kubelet for pods running the causeway binaries (e2e tests only)"
)]
struct Args {
    /// Kubeconfig of the runner (admin); defaults to KUBECONFIG.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Name of the Node to register.
    #[arg(long, default_value = "causeway-e2e")]
    node_name: String,
    /// Directory holding the locally built `causeway` and `causeway-operator`.
    #[arg(long)]
    bin_dir: PathBuf,
    /// The e2e run directory; pod logs, pid files and volumes go under it.
    #[arg(long, env = "E2E_DIR")]
    run_dir: PathBuf,
    /// Loopback range pod addresses come from.
    #[arg(long, default_value = "127.0.1.0/24")]
    pod_range: String,
    /// API server URL written into pods' kubeconfigs.
    #[arg(long, env = "E2E_APISERVER")]
    apiserver: String,
    /// CA of the API server, for pods' kubeconfigs.
    #[arg(long, env = "E2E_CA_FILE")]
    ca_file: PathBuf,
    /// Run readiness probes at least this often (seconds).
    #[arg(long, default_value_t = 1)]
    probe_period_cap: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    let (host, port) = host_port(&args.apiserver);
    let opts = causeway_e2e::runner::Options {
        kubeconfig: args.kubeconfig,
        node_name: args.node_name,
        bin_dir: args.bin_dir,
        run_dir: args.run_dir,
        pod_range: args.pod_range,
        apiserver: args.apiserver,
        apiserver_host: host,
        apiserver_port: port,
        ca_file: args.ca_file,
        probe_period_cap: Duration::from_secs(args.probe_period_cap.max(1)),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pod-runner: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(causeway_e2e::runner::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pod-runner: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `https://127.0.0.1:6443` → ("127.0.0.1", "6443").
fn host_port(url: &str) -> (String, String) {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (authority.to_string(), "443".to_string()),
    }
}
