//! The e2e pod runner: **test infrastructure, not product**. There is no container runtime
//! on the test machine, so this plays the kubelet (and the scheduler) for pods whose
//! containers run the project's own binaries (`causeway`, `causeway-operator`):
//!
//! - registers a Ready Node and keeps its Lease and status fresh ([`node`]);
//! - binds pending pods it can run to that node (pods/binding);
//! - runs each container as a host process on the pod's own 127.x.y.z address, with the
//!   environment, `$(VAR)` expansion, volumes (as host directories) and ServiceAccount
//!   credentials (a TokenRequest token and a kubeconfig) a kubelet would give ([`pod`]);
//! - writes Pod status (IP, phase, container statuses, Ready from the readiness probe),
//!   restarts crashed processes with back-off, and on deletion sends SIGTERM, then SIGKILL
//!   after the grace period, then confirms the deletion.
//!
//! See docs/e2e.md for what it emulates and what it does not.

pub mod env;
pub mod ips;
pub mod node;
pub mod pod;
pub mod probe;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::pod::PodUpdate;

/// Set on every process the runner starts (value: the pod's directory), so that
/// `e2e/controlplane/down.sh` can tell our processes from a recycled pid.
pub const POD_MARKER_ENV: &str = "CAUSEWAY_E2E_POD";

/// Settings of the runner.
#[derive(Debug, Clone)]
pub struct Options {
    /// Kubeconfig of the runner itself (admin: it is the node); `None` infers.
    pub kubeconfig: Option<PathBuf>,
    pub node_name: String,
    /// Where the locally built `causeway` and `causeway-operator` are.
    pub bin_dir: PathBuf,
    /// The e2e run directory (`E2E_DIR`): pods/, volumes/ go there.
    pub run_dir: PathBuf,
    /// Loopback range for pod addresses, e.g. `127.42.0.0/16`.
    pub pod_range: String,
    /// API server URL and CA written into pods' kubeconfigs.
    pub apiserver: String,
    pub apiserver_host: String,
    pub apiserver_port: String,
    pub ca_file: PathBuf,
    /// Probes run at least this often (the kubelet uses `periodSeconds`; tests want ~1 s).
    pub probe_period_cap: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Range(#[from] ips::RangeError),
    #[error("the pod watch ended")]
    WatchEnded,
}

impl RunnerError {
    pub fn kube(what: &'static str) -> impl FnOnce(kube::Error) -> RunnerError {
        move |source| RunnerError::Kube { what, source }
    }
    pub fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> RunnerError + 'a {
        move |source| RunnerError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What every pod task shares.
pub struct Shared {
    pub client: Client,
    pub opts: Options,
    pub ips: Mutex<ips::IpPool>,
}

/// Signal a process group (our children lead their own group). Never signals pid 0 or 1.
pub fn signal_group(pid: u32, sig: &str) {
    if pid <= 1 {
        return;
    }
    let r = std::process::Command::new("kill")
        .args(["-s", sig, "--", &format!("-{pid}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if let Err(e) = r {
        tracing::warn!(pid, sig, "kill: {e}");
    }
}

/// Is `pid` a process this runner (or a previous one on the same run dir) started?
pub fn is_ours(pid: u32, pod_dir: &Path) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("{POD_MARKER_ENV}={}", pod_dir.display());
    environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes())
}

/// Kill processes a previous runner left behind (it was SIGKILLed, so it could not),
/// and wait until they are gone, so that their addresses and ports are free again.
fn kill_leftovers(run_dir: &Path) {
    let killed = kill_leftover_pids(run_dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while killed.iter().any(|(pid, dir)| is_ours(*pid, dir)) && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_leftover_pids(run_dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut killed = Vec::new();
    let Ok(pods) = std::fs::read_dir(run_dir.join("pods")) else {
        return killed;
    };
    for pod_dir in pods.flatten().map(|e| e.path()) {
        let Ok(files) = std::fs::read_dir(&pod_dir) else {
            continue;
        };
        for f in files.flatten().map(|e| e.path()) {
            if f.extension().is_none_or(|e| e != "pid") {
                continue;
            }
            let pid: Option<u32> = std::fs::read_to_string(&f)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if let Some(pid) = pid
                && is_ours(pid, &pod_dir)
            {
                tracing::warn!(pid, dir = %pod_dir.display(), "killing a process left by a previous runner");
                signal_group(pid, "KILL");
                killed.push((pid, pod_dir.clone()));
            }
            let _ = std::fs::remove_file(&f);
        }
    }
    killed
}

async fn client(opts: &Options) -> Result<Client, RunnerError> {
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| RunnerError::Config(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| RunnerError::Config(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| RunnerError::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(RunnerError::kube("build client"))
}

struct Handle {
    tx: watch::Sender<PodUpdate>,
    task: JoinHandle<()>,
}

/// Run until SIGTERM or SIGINT; then stop every process and return.
pub async fn run(opts: Options) -> Result<(), RunnerError> {
    let client = client(&opts).await?;
    let pool = ips::IpPool::new(&opts.pod_range)?;
    kill_leftovers(&opts.run_dir);
    node::register(&client, &opts.node_name).await?;
    let node_labels = node::labels(&opts.node_name);
    let heartbeat = tokio::spawn(node::heartbeat(client.clone(), opts.node_name.clone()));
    tracing::info!(node = %opts.node_name, range = %opts.pod_range, bin_dir = %opts.bin_dir.display(), "pod runner ready");

    let shared = Arc::new(Shared {
        client: client.clone(),
        opts: opts.clone(),
        ips: Mutex::new(pool),
    });
    let mut tasks: HashMap<String, Handle> = HashMap::new();
    // Pods whose task ended (deleted, completed): never started again.
    let mut finished: HashSet<String> = HashSet::new();
    let mut refused: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;

    let pods_api: Api<Pod> = Api::all(client.clone());
    let stream = watcher::watcher(pods_api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunnerError::io("signal handler", Path::new("SIGTERM")))?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(RunnerError::io("signal handler", Path::new("SIGINT")))?;
    let mut reap = tokio::time::interval(Duration::from_secs(1));

    let result = loop {
        tokio::select! {
            _ = sigterm.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
            _ = reap.tick() => {
                tasks.retain(|uid, h| {
                    if h.task.is_finished() {
                        finished.insert(uid.clone());
                        false
                    } else {
                        true
                    }
                });
            }
            ev = stream.next() => {
                let ev = match ev {
                    None => break Err(RunnerError::WatchEnded),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "pod watch");
                        continue;
                    }
                    Some(Ok(ev)) => ev,
                };
                match ev {
                    Event::Init => listing = Some(HashSet::new()),
                    Event::InitApply(p) => {
                        if let Some(seen) = listing.as_mut() {
                            seen.insert(p.uid().unwrap_or_default());
                        }
                        handle(&shared, &node_labels, &mut tasks, &finished, &mut refused, p).await;
                    }
                    Event::InitDone => {
                        if let Some(seen) = listing.take() {
                            for (uid, h) in &tasks {
                                if !seen.contains(uid) {
                                    let _ = h.tx.send(PodUpdate::Gone);
                                }
                            }
                        }
                    }
                    Event::Apply(p) => handle(&shared, &node_labels, &mut tasks, &finished, &mut refused, p).await,
                    Event::Delete(p) => {
                        let uid = p.uid().unwrap_or_default();
                        if let Some(h) = tasks.get(&uid) {
                            let _ = h.tx.send(PodUpdate::Gone);
                        }
                        finished.remove(&uid);
                        refused.remove(&uid);
                    }
                }
            }
        }
    };

    tracing::info!(
        pods = tasks.len(),
        "stopping: terminating every pod process"
    );
    heartbeat.abort();
    for h in tasks.values() {
        let _ = h.tx.send(PodUpdate::Shutdown);
    }
    for (_, h) in tasks.drain() {
        if tokio::time::timeout(Duration::from_secs(8), h.task)
            .await
            .is_err()
        {
            tracing::warn!("a pod task did not stop in time");
        }
    }
    result
}

async fn handle(
    shared: &Arc<Shared>,
    node_labels: &std::collections::BTreeMap<String, String>,
    tasks: &mut HashMap<String, Handle>,
    finished: &HashSet<String>,
    refused: &mut HashSet<String>,
    p: Pod,
) {
    let uid = p.uid().unwrap_or_default();
    if let Some(h) = tasks.get(&uid) {
        let _ = h.tx.send(PodUpdate::Current(Arc::new(p)));
        return;
    }
    if finished.contains(&uid) {
        return;
    }
    let key = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return;
    }
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
    let opts = &shared.opts;
    let plan = spec::plan(&p, &opts.bin_dir);
    match (node.as_deref(), plan) {
        (None, Ok(_)) if p.metadata.deletion_timestamp.is_none() => {
            if !spec::selects(&p, node_labels) {
                if refused.insert(uid) {
                    tracing::info!(pod = %key, "nodeSelector does not match the e2e node: left Pending");
                }
                return;
            }
            bind(shared, &p, &key).await;
        }
        (None, Err(e)) if refused.insert(uid.clone()) => {
            tracing::info!(pod = %key, "not run by the e2e pod runner: {e}")
        }
        (Some(n), Ok(plan)) if n == opts.node_name => {
            let (tx, rx) = watch::channel(PodUpdate::Current(Arc::new(p.clone())));
            let task = tokio::spawn(pod::run(shared.clone(), plan, Arc::new(p), rx));
            tasks.insert(uid, Handle { tx, task });
        }
        (Some(n), Err(e)) if n == opts.node_name => {
            if refused.insert(uid.clone()) {
                tracing::warn!(pod = %key, "bound to the e2e node but cannot run: {e}");
            }
            if p.metadata.deletion_timestamp.is_some() {
                confirm_deletion(shared, &p, &uid).await;
            }
        }
        _ => {}
    }
}

async fn bind(shared: &Shared, p: &Pod, key: &str) {
    let ns = p.namespace().unwrap_or_default();
    let name = p.name_any();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let binding = serde_json::json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": p.uid()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": shared.opts.node_name},
    });
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => tracing::info!(pod = %key, node = %shared.opts.node_name, "bound"),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
        Err(e) => tracing::warn!(pod = %key, error = %e, "bind"),
    }
}

async fn confirm_deletion(shared: &Shared, p: &Pod, uid: &str) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &p.namespace().unwrap_or_default());
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(e) = api.delete(&p.name_any(), &dp).await {
        tracing::warn!(pod = %p.name_any(), error = %e, "confirming deletion");
    }
}
