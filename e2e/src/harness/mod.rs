//! What the end-to-end tests in `tests/` share: where the cluster is, `kubectl` and `helm`
//! at the pinned versions, a namespace per test that dumps its objects and logs when the
//! test fails, loopback sinks and a file server for plugins, and waiting helpers.
//!
//! Two ways to run (docs/e2e.md):
//! - **local** (default): the stack of `e2e/up.sh`; `E2E_DIR` (default `<repo>/.e2e`)
//!   holds `env.sh`, which names the kubeconfig and puts the pinned kubectl and helm first
//!   on `PATH`. Pods are containers of the node's containerd ([`Node`]) on the bridge
//!   10.244.0.0/24: the tests reach pod IPs through the bridge, pods reach the tests'
//!   sinks at the node's address (`E2E_SINK_HOST`), and a test can SIGKILL a container's
//!   process by its host pid.
//! - **external** (`E2E_EXTERNAL=1`): `KUBECONFIG` names a real cluster where the chart is
//!   installed (release `causeway` in `causeway-system`, or `E2E_RELEASE`/`E2E_RELEASE_NAMESPACE`).
//!   The test process must reach pod IPs, and pods must reach `E2E_SINK_HOST` (an address
//!   of the test machine); run the suite from a pod or a node of the cluster.

pub mod dump;
pub mod examples;
pub mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use causeway_crds::{Bridge, Plugin, WorkerPool};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// Where the tests run.
#[derive(Debug, Clone)]
pub enum Mode {
    /// The local stack of `e2e/up.sh`, with its run directory.
    Local { run_dir: PathBuf },
    /// A real cluster.
    External,
}

/// The cluster under test, read once from the environment.
#[derive(Debug)]
pub struct Stack {
    pub mode: Mode,
    pub kubeconfig: PathBuf,
    /// Environment for `kubectl` and `helm` (KUBECONFIG, KUBECACHEDIR, HELM_*, PATH).
    pub cmd_env: Vec<(String, String)>,
    pub repo: PathBuf,
    pub release: String,
    pub release_ns: String,
    /// Host the pods use to reach the tests' sinks and file server.
    pub sink_host: String,
    /// The local stack's node (None on an external cluster).
    pub node: Option<Node>,
}

/// The real node of the local stack (`e2e/node/`): kubelet and containerd.
#[derive(Debug, Clone)]
pub struct Node {
    /// `$E2E_DIR/node`: containerd, kubelet, pod logs (`pod-logs/<ns>_<pod>_<uid>/`).
    pub dir: PathBuf,
    /// containerd's socket, for `ctr`.
    pub containerd_sock: PathBuf,
}

static STACK: OnceLock<std::result::Result<Stack, String>> = OnceLock::new();

/// The repository root (this crate is `<repo>/e2e`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Parses `export K='v'` / `export K=v` lines of up.sh's env.sh.
fn parse_env_sh(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k != "PATH")
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches('\'').trim_matches('"').to_string(),
            )
        })
        .collect()
}

impl Stack {
    fn load() -> std::result::Result<Stack, String> {
        let repo = repo();
        let release = std::env::var("E2E_RELEASE").unwrap_or_else(|_| "causeway".into());
        let release_ns =
            std::env::var("E2E_RELEASE_NAMESPACE").unwrap_or_else(|_| "causeway-system".into());
        let path = std::env::var("PATH").unwrap_or_default();
        if std::env::var("E2E_EXTERNAL").is_ok_and(|v| v == "1") {
            let kubeconfig = std::env::var("KUBECONFIG")
                .map_err(|_| "E2E_EXTERNAL=1 needs KUBECONFIG".to_string())?;
            return Ok(Stack {
                mode: Mode::External,
                kubeconfig: PathBuf::from(&kubeconfig),
                cmd_env: vec![("KUBECONFIG".into(), kubeconfig), ("PATH".into(), path)],
                repo,
                release,
                release_ns,
                sink_host: std::env::var("E2E_SINK_HOST")
                    .map_err(|_| "E2E_EXTERNAL=1 needs E2E_SINK_HOST".to_string())?,
                node: None,
            });
        }
        let run_dir = std::env::var("E2E_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo.join(".e2e"));
        let env_sh = run_dir.join("env.sh");
        let text = std::fs::read_to_string(&env_sh)
            .map_err(|e| format!("{}: {e}; start the stack with `make e2e-up` (or set E2E_EXTERNAL=1 and KUBECONFIG)", env_sh.display()))?;
        let mut cmd_env = parse_env_sh(&text);
        let kubeconfig = cmd_env
            .iter()
            .find(|(k, _)| k == "KUBECONFIG")
            .map(|(_, v)| PathBuf::from(v))
            .ok_or("env.sh has no KUBECONFIG")?;
        let from_env_sh = |key: &str| {
            cmd_env
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        if from_env_sh("E2E_NODE").as_deref() != Some("1") {
            return Err(format!(
                "{} names a stack without a node (from before e2e/node/): make e2e-down, then make e2e-up",
                env_sh.display()
            ));
        }
        let node = Some(Node {
            dir: run_dir.join("node"),
            containerd_sock: from_env_sh("E2E_CONTAINERD_SOCK")
                .map(PathBuf::from)
                .unwrap_or_else(|| run_dir.join("node/containerd/containerd.sock")),
        });
        let sink_host = std::env::var("E2E_SINK_HOST")
            .ok()
            .or_else(|| from_env_sh("E2E_SINK_HOST"))
            .unwrap_or_else(|| "127.0.0.1".into());
        cmd_env.push((
            "PATH".into(),
            format!("{}:{path}", run_dir.join("bin").display()),
        ));
        Ok(Stack {
            mode: Mode::Local { run_dir },
            kubeconfig,
            cmd_env,
            repo,
            release,
            release_ns,
            sink_host,
            node,
        })
    }

    /// The stack, or why there is none.
    pub fn get() -> Result<&'static Stack> {
        STACK
            .get_or_init(Stack::load)
            .as_ref()
            .map_err(|e| anyhow!("no e2e cluster: {e}"))
    }

    pub fn run_dir(&self) -> Option<&Path> {
        match &self.mode {
            Mode::Local { run_dir } => Some(run_dir),
            Mode::External => None,
        }
    }

    /// A kube client for the admin kubeconfig. One per test: a client belongs to the
    /// runtime that made it.
    pub async fn client(&self) -> Result<Client> {
        let kc =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).context("read kubeconfig")?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .context("kubeconfig")?;
        Client::try_from(config).context("kube client")
    }

    /// Where failure dumps go.
    pub fn failures_dir(&self) -> PathBuf {
        match &self.mode {
            Mode::Local { run_dir } => run_dir.join("failures"),
            Mode::External => self.repo.join("target").join("e2e-failures"),
        }
    }
}

/// Output of a command.
#[derive(Debug)]
pub struct Out {
    pub cmd: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// stdout when the command succeeded, else an error with its stderr.
    pub fn ok(self) -> Result<String> {
        if self.success() {
            Ok(self.stdout)
        } else {
            bail!(
                "`{}` failed ({:?}): {}{}",
                self.cmd,
                self.code,
                self.stderr.trim(),
                self.stdout.trim()
            )
        }
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<Out> {
    let stack = Stack::get()?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(stack.cmd_env.iter().map(|(k, v)| (k, v)))
        .current_dir(&stack.repo);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let path = stack
        .cmd_env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let desc = format!("{program} {}", args.join(" "));
    let mut child = cmd.spawn().with_context(|| format!("start {desc}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(input.as_bytes())
            .with_context(|| format!("stdin of {desc}"))?;
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child
        .wait_with_output()
        .with_context(|| format!("wait for {desc}"))?;
    Ok(Out {
        cmd: desc,
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// `kubectl ARGS…` (the pinned kubectl locally).
pub fn kubectl(args: &[&str]) -> Result<Out> {
    run("kubectl", args, None)
}

/// `kubectl ARGS… -f -` with `input` on stdin.
pub fn kubectl_stdin(args: &[&str], input: &str) -> Result<Out> {
    run("kubectl", args, Some(input))
}

/// `helm ARGS…`.
pub fn helm(args: &[&str]) -> Result<Out> {
    run("helm", args, None)
}

/// `kubectl apply -n NS -f -`, which must succeed.
pub fn apply(ns: &str, yaml: &str) -> Result<String> {
    kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml)?.ok()
}

/// Poll `f` every 250 ms until it gives `Some`, or fail after `timeout` with the last
/// thing it said (`Err` from `f` is remembered and polling goes on).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("nothing yet");
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() >= timeout {
            bail!(
                "timed out after {:?} waiting for {what}; last: {last}",
                timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Generous timeouts: a shared 2-core machine that compiles Rust beside the tests.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

// ---- one namespace per test ------------------------------------------------------

/// Serialises tests that disrupt everyone (restarting the operator) against the rest.
static DISRUPTION: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A test's own namespace. On failure (a panic, or dropped without [`TestNs::pass`]) it
/// dumps the namespace's objects, events, and the workers' and operator's logs; then it
/// deletes the namespace (kept with `E2E_KEEP_NS=1`).
pub struct TestNs {
    pub name: String,
    pub test: String,
    passed: bool,
    _guard: Guard,
}

enum Guard {
    Shared(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'static, ()>),
}

impl TestNs {
    /// A fresh namespace `e2e-<test>-<random>`.
    pub async fn new(test: &str) -> Result<TestNs> {
        let guard = Guard::Shared(DISRUPTION.read().await);
        Self::create(test, guard)
    }

    /// The same, with no other test running meanwhile (for tests that restart shared parts).
    pub async fn exclusive(test: &str) -> Result<TestNs> {
        let guard = Guard::Exclusive(DISRUPTION.write().await);
        Self::create(test, guard)
    }

    fn create(test: &str, guard: Guard) -> Result<TestNs> {
        Stack::get()?;
        let suffix: u32 = rand::random::<u32>() % 100_000;
        let name = format!("e2e-{test}-{suffix:05}");
        kubectl(&["create", "namespace", &name])?.ok()?;
        kubectl(&["label", "namespace", &name, "causeway.dev/e2e=true"])?.ok()?;
        eprintln!("[e2e] {test}: namespace {name}");
        Ok(TestNs {
            name,
            test: test.to_string(),
            passed: false,
            _guard: guard,
        })
    }

    pub fn apply(&self, yaml: &str) -> Result<String> {
        apply(&self.name, yaml)
    }

    /// Mark the test as passed: the namespace is deleted without a dump.
    pub fn pass(mut self) {
        self.passed = true;
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if !self.passed || std::thread::panicking() {
            dump::dump(&self.name, &self.test);
        }
        if std::env::var("E2E_KEEP_NS").is_ok_and(|v| v == "1") {
            eprintln!("[e2e] keeping namespace {}", self.name);
            return;
        }
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

// ---- reading the cluster ---------------------------------------------------------

/// The `type` condition of a status' conditions.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Conditions of a Bridge, Plugin or WorkerPool by kind and name.
pub async fn conditions(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<Vec<Condition>> {
    Ok(match kind {
        "Bridge" => Api::<Bridge>::namespaced(client.clone(), ns)
            .get(name)
            .await?
            .status
            .map(|s| s.conditions),
        "Plugin" => Api::<Plugin>::namespaced(client.clone(), ns)
            .get(name)
            .await?
            .status
            .map(|s| s.conditions),
        "WorkerPool" => Api::<WorkerPool>::namespaced(client.clone(), ns)
            .get(name)
            .await?
            .status
            .map(|s| s.conditions),
        other => bail!("unknown kind {other}"),
    }
    .unwrap_or_default())
}

/// A condition a test waits for.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    pub type_: &'a str,
    pub status: &'a str,
    pub reason: Option<&'a str>,
}

impl<'a> Want<'a> {
    pub fn ready() -> Want<'static> {
        Want {
            type_: "Ready",
            status: "True",
            reason: None,
        }
    }
    pub fn not_ready(reason: &'a str) -> Want<'a> {
        Want {
            type_: "Ready",
            status: "False",
            reason: Some(reason),
        }
    }
}

/// Wait until `kind ns/name` has the wanted condition. Returns the condition.
pub async fn wait_condition(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    want: Want<'_>,
    timeout: Duration,
) -> Result<Condition> {
    let Want {
        type_,
        status,
        reason,
    } = want;
    let what = format!(
        "{kind} {ns}/{name} {type_}={status}{}",
        reason.map(|r| format!(" reason={r}")).unwrap_or_default()
    );
    eventually(&what, timeout, || async {
        let conds = conditions(client, ns, kind, name).await?;
        match condition(&conds, type_) {
            Some(c) if c.status == status && reason.is_none_or(|r| c.reason == r) => {
                Ok(Some(c.clone()))
            }
            Some(c) => Err(anyhow!(
                "{}={} reason={} message={}",
                c.type_,
                c.status,
                c.reason,
                c.message
            )),
            None => Err(anyhow!("no {type_} condition yet (conditions: {conds:?})")),
        }
    })
    .await
}

/// The pods of a pool.
pub async fn pool_pods(client: &Client, ns: &str, pool: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(&format!("causeway.dev/pool={pool}")))
        .await?
        .items)
}

pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_ip(p: &Pod) -> Result<String> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or_else(|| anyhow!("pod {} has no IP", p.name_any()))
}

pub fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// Wait for exactly one Ready pod in `pool` and return it.
pub async fn ready_pool_pod(client: &Client, ns: &str, pool: &str) -> Result<Pod> {
    eventually(
        &format!("a Ready pod of pool {ns}/{pool}"),
        READY_TIMEOUT,
        || async {
            let pods = pool_pods(client, ns, pool).await?;
            let ready: Vec<Pod> = pods.iter().filter(|p| pod_ready(p)).cloned().collect();
            match ready.as_slice() {
                [one] => Ok(Some(one.clone())),
                _ => Err(anyhow!(
                    "pods: {:?}",
                    pods.iter()
                        .map(|p| format!(
                            "{} phase={:?} ready={} restarts={}",
                            p.name_any(),
                            p.status.as_ref().and_then(|s| s.phase.clone()),
                            pod_ready(p),
                            restart_count(p)
                        ))
                        .collect::<Vec<_>>()
                )),
            }
        },
    )
    .await
}

/// The host pid of a pod's container's first process, on the local stack's node (from
/// containerd, by the container ID in the pod's status).
pub fn container_pid(stack: &Stack, ns: &str, pod: &str, container: &str) -> Result<u32> {
    let node = stack
        .node
        .as_ref()
        .ok_or_else(|| anyhow!("container pids exist only on the local stack"))?;
    node_container_pid(node, ns, pod, container)
}

fn node_container_pid(node: &Node, ns: &str, pod: &str, container: &str) -> Result<u32> {
    let id = kubectl(&[
        "get",
        "pod",
        "-n",
        ns,
        pod,
        "-o",
        &format!("jsonpath={{.status.containerStatuses[?(@.name==\"{container}\")].containerID}}"),
    ])?
    .ok()?;
    let id = id
        .trim()
        .strip_prefix("containerd://")
        .ok_or_else(|| anyhow!("pod {ns}/{pod} has no running container {container} ({id:?})"))?
        .to_string();
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&node.containerd_sock)
        .args(["--namespace", "k8s.io", "task", "ls"])
        .output()
        .context("ctr task ls")?;
    if !out.status.success() {
        bail!(
            "ctr task ls failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_ctr_task_pid(&text, &id)
        .ok_or_else(|| anyhow!("no running task {id} of {ns}/{pod}/{container} in:\n{text}"))
}

/// The pid of task `id` in `ctr task ls` output (`TASK PID STATUS`), if it runs.
fn parse_ctr_task_pid(text: &str, id: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some(task), Some(pid), Some("RUNNING")) if task == id => pid.parse().ok(),
            _ => None,
        }
    })
}

/// Container log files of the local stack's pods in `namespaces`, every restart's
/// (`node/pod-logs/<ns>_<pod>_<uid>/<container>/<n>.log`). Empty on an external cluster.
pub fn local_log_files(stack: &Stack, namespaces: &[&str]) -> Vec<PathBuf> {
    let Some(node) = &stack.node else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let Ok(pods) = std::fs::read_dir(node.dir.join("pod-logs")) else {
        return out;
    };
    for pod in pods.flatten() {
        let name = pod.file_name().to_string_lossy().into_owned();
        if !namespaces
            .iter()
            .any(|ns| name.starts_with(&format!("{ns}_")))
        {
            continue;
        }
        for container in std::fs::read_dir(pod.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(container.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.path().extension().is_some_and(|e| e == "log") {
                    out.push(f.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// Is this pid alive (and not a zombie)?
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Send a signal to a process (`kill -s SIG PID`).
pub fn kill(pid: u32, sig: &str) -> Result<()> {
    let st = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .context("kill")?;
    if !st.success() {
        bail!("kill -s {sig} {pid} failed");
    }
    Ok(())
}

/// Worker ingress URL of a pod.
pub fn ingress_url(pod: &Pod, path: &str) -> Result<String> {
    Ok(format!(
        "http://{}:{}{path}",
        pod_ip(pod)?,
        causeway_crds::config::INGRESS_PORT
    ))
}

/// Worker internal (chaining) URL of a pod.
pub fn internal_url(pod: &Pod, path: &str) -> Result<String> {
    Ok(format!(
        "http://{}:{}{path}",
        pod_ip(pod)?,
        causeway_crds::config::INTERNAL_PORT
    ))
}

/// The URL of the throwaway PostgreSQL for `storage: postgres` pools: the one `e2e/up.sh`
/// started (`$E2E_DIR/postgres/url`), or `E2E_POSTGRES_URL` on a real cluster (a database
/// the cluster's pods reach). It holds a password: never print it.
pub fn postgres_url(stack: &Stack) -> Result<String> {
    if let Ok(url) = std::env::var("E2E_POSTGRES_URL") {
        return Ok(url);
    }
    let dir = stack.run_dir().ok_or_else(|| {
        anyhow!("no postgres: set E2E_POSTGRES_URL to a database the cluster's pods reach")
    })?;
    let url = std::fs::read_to_string(dir.join("postgres").join("url")).with_context(|| {
        format!(
            "no postgres from e2e/up.sh (see {})",
            dir.join("logs").join("postgres.log").display()
        )
    })?;
    Ok(url.trim().to_string())
}

/// Stop the PostgreSQL of `e2e/up.sh` (fast shutdown, by the PID in its data directory,
/// through `scripts/postgres.sh stop`), keeping its data. Local stack only.
pub fn postgres_stop(stack: &Stack) -> Result<()> {
    let dir = local_postgres_dir(stack)?;
    let script = stack.repo.join("scripts").join("postgres.sh");
    let st = Command::new(&script)
        .arg("stop")
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("run {}", script.display()))?;
    if !st.success() {
        bail!("{} stop failed", script.display());
    }
    Ok(())
}

/// Start the PostgreSQL of `e2e/up.sh` again on its data directory (`pg_ctl start`, as
/// the `postgres` user when running as root, like `scripts/postgres.sh`). Local stack only.
pub fn postgres_start(stack: &Stack) -> Result<()> {
    let dir = local_postgres_dir(stack)?;
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .context("/usr/lib/postgresql")?
        .flatten()
        .map(|e| e.path().join("bin").join("pg_ctl"))
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("no pg_ctl under /usr/lib/postgresql"))?;
    let data = dir.join("data");
    let log = dir.join("server.log");
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let st = cmd
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "start"])
        .stdout(Stdio::null())
        .status()
        .context("pg_ctl start")?;
    if !st.success() {
        bail!("pg_ctl start failed (see {})", log.display());
    }
    Ok(())
}

/// Whether this process runs as root (from /proc, no libc call).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn local_postgres_dir(stack: &Stack) -> Result<PathBuf> {
    let dir = stack
        .run_dir()
        .ok_or_else(|| anyhow!("only the local stack's PostgreSQL can be stopped"))?
        .join("postgres");
    if !dir.join("data").join("PG_VERSION").exists() {
        bail!("no PostgreSQL data directory in {}", dir.display());
    }
    Ok(dir)
}

/// The addresses a Service sends its port `port_name` to: `http://<podIP>:<targetPort>` of
/// each Ready pod its selector matches, in name order. This is what kube-proxy does with
/// the Service's endpoints; the tests resolve the Service themselves because this
/// machine cannot open ClusterIPs (they are routed `unreachable` here; docs/e2e.md).
pub async fn service_backends(
    client: &Client,
    ns: &str,
    service: &str,
    port_name: &str,
) -> Result<Vec<String>> {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get(service)
        .await
        .with_context(|| format!("get Service {ns}/{service}"))?;
    let spec = svc
        .spec
        .ok_or_else(|| anyhow!("Service {service} has no spec"))?;
    let selector = spec
        .selector
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow!("Service {service} has no selector"))?;
    let port = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.name.as_deref() == Some(port_name))
        .ok_or_else(|| anyhow!("Service {service} has no port {port_name}"))?;
    let labels = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&labels))
        .await?
        .items;
    pods.sort_by_key(|p| p.name_any());
    let mut out = Vec::new();
    for p in pods.iter().filter(|p| pod_ready(p)) {
        let target = match &port.target_port {
            Some(IntOrString::Int(n)) => *n,
            Some(IntOrString::String(name)) => p
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .map(|cp| cp.container_port)
                .ok_or_else(|| anyhow!("pod {} has no port {name}", p.name_any()))?,
            None => port.port,
        };
        let ip = pod_ip(p)?;
        out.push(if ip.contains(':') {
            format!("http://[{ip}]:{target}")
        } else {
            format!("http://{ip}:{target}")
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_task_pid_is_found_by_container_id() {
        let text = "TASK    PID     STATUS\nabc     4242    RUNNING\ndef     17      STOPPED\n";
        assert_eq!(parse_ctr_task_pid(text, "abc"), Some(4242));
        assert_eq!(parse_ctr_task_pid(text, "def"), None);
        assert_eq!(parse_ctr_task_pid(text, "ab"), None);
    }

    #[test]
    fn env_sh_is_parsed() {
        let text = "# c\nexport E2E_DIR='/x'\nexport KUBECONFIG='/x/kubeconfig'\nexport E2E_APISERVER_HOST=127.0.0.1\ncase \":$PATH:\" in *) export PATH='/x/bin':\"$PATH\" ;; esac\n";
        let env = parse_env_sh(text);
        assert_eq!(
            env,
            vec![
                ("E2E_DIR".to_string(), "/x".to_string()),
                ("KUBECONFIG".to_string(), "/x/kubeconfig".to_string()),
                ("E2E_APISERVER_HOST".to_string(), "127.0.0.1".to_string())
            ]
        );
    }
}
