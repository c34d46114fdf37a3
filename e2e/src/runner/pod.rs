//! One pod's life on this "node": address, volumes, token, processes, probes, status,
//! restarts, and termination. One task per pod; it alone writes the pod's status.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use super::env::{self, EnvContext, Objects};
use super::probe::{ProbeState, Verdict};
use super::spec::{self, ContainerPlan, PodPlan, ProjectedFile, RestartPolicy, VolumePlan};
use super::{POD_MARKER_ENV, RunnerError, Shared, signal_group};

/// What the main loop tells a pod task.
#[derive(Clone, Debug)]
pub enum PodUpdate {
    /// The pod as the API server has it now.
    Current(Arc<Pod>),
    /// The pod is gone from the API server (force-deleted, or deleted during a watch gap).
    Gone,
    /// The runner is stopping: stop the processes, leave the API objects alone.
    Shutdown,
}

const TICK: Duration = Duration::from_millis(250);
/// Restart back-off as the kubelet's: the first restart is immediate, then 10 s doubling
/// to 5 min; a container that ran 10 min is forgiven.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How long a force-deleted or shutting-down pod's processes get after SIGTERM.
const QUICK_GRACE: Duration = Duration::from_secs(3);

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

struct Running {
    child: tokio::process::Child,
    pid: u32,
    started_at: Time,
    started: Instant,
}

#[derive(Clone, Debug)]
struct Terminated {
    exit_code: i32,
    signal: Option<i32>,
    reason: &'static str,
    started_at: Time,
    finished_at: Time,
}

struct ContainerRt {
    plan: ContainerPlan,
    running: Option<Running>,
    restart_count: i32,
    crashes: u32,
    last: Option<Terminated>,
    /// `(reason, message)` while not running.
    waiting: Option<(String, String)>,
    next_start: Instant,
    done: bool,
    readiness: Option<ProbeState>,
    liveness: Option<ProbeState>,
}

impl ContainerRt {
    fn ready(&self) -> bool {
        self.running.is_some() && self.readiness.as_ref().is_none_or(|p| p.ok)
    }
}

/// The pod task.
pub async fn run(
    shared: Arc<Shared>,
    plan: PodPlan,
    first: Arc<Pod>,
    mut rx: watch::Receiver<PodUpdate>,
) {
    let ns = first.namespace().unwrap_or_default();
    let name = first.name_any();
    let uid = first.uid().unwrap_or_default();
    let mut pod = PodTask::new(shared, plan, &first);
    let end = pod.live(&mut rx).await;
    match end {
        Ok(End::Deleted(p)) => pod.terminate(&p).await,
        Ok(End::Gone) => pod.stop_all(QUICK_GRACE).await,
        Ok(End::Shutdown) => pod.stop_all(QUICK_GRACE).await,
        Ok(End::Completed) => {}
        Err(e) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod task failed; stopping its processes");
            pod.stop_all(QUICK_GRACE).await;
        }
    }
    pod.cleanup().await;
    tracing::info!(pod = %format!("{ns}/{name}"), %uid, "pod task done");
}

enum End {
    Deleted(Arc<Pod>),
    Gone,
    Shutdown,
    Completed,
}

struct PodTask {
    shared: Arc<Shared>,
    plan: PodPlan,
    ns: String,
    name: String,
    uid: String,
    dir: PathBuf,
    ip: Option<Ipv4Addr>,
    start_time: Time,
    containers: Vec<ContainerRt>,
    /// Host directory of each volume.
    volume_dirs: BTreeMap<String, PathBuf>,
    /// Projected token files to refresh: `(path, audience, expiration)`, and when.
    tokens: Vec<(PathBuf, Option<String>, i64)>,
    token_refresh: Option<Instant>,
    kubeconfig: Option<PathBuf>,
    last_status: Option<serde_json::Value>,
    last_status_error: Option<String>,
}

impl PodTask {
    fn new(shared: Arc<Shared>, plan: PodPlan, pod: &Pod) -> Self {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let dir = shared
            .opts
            .run_dir
            .join("pods")
            .join(format!("{ns}_{name}"));
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or_else(now);
        let previous = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        let containers = plan
            .containers
            .iter()
            .map(|c| {
                // After a runner restart the processes are new: count that as a restart.
                let prev = previous.iter().find(|s| s.name == c.name);
                let restart_count = prev
                    .map(|s| {
                        s.restart_count
                            + i32::from(s.state.as_ref().is_some_and(|st| st.running.is_some()))
                    })
                    .unwrap_or(0);
                ContainerRt {
                    plan: c.clone(),
                    running: None,
                    restart_count,
                    crashes: 0,
                    last: None,
                    waiting: Some(("ContainerCreating".into(), String::new())),
                    next_start: Instant::now(),
                    done: false,
                    readiness: None,
                    liveness: None,
                }
            })
            .collect();
        PodTask {
            uid: pod.uid().unwrap_or_default(),
            shared,
            plan,
            ns,
            name,
            dir,
            ip: None,
            start_time,
            containers,
            volume_dirs: BTreeMap::new(),
            tokens: Vec::new(),
            token_refresh: None,
            kubeconfig: None,
            last_status: None,
            last_status_error: None,
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.shared.client.clone(), &self.ns)
    }

    /// Runs the pod until it is deleted, gone, completed, or the runner stops.
    async fn live(&mut self, rx: &mut watch::Receiver<PodUpdate>) -> Result<End, RunnerError> {
        let mut current;
        std::fs::create_dir_all(&self.dir).map_err(RunnerError::io("create pod dir", &self.dir))?;
        self.reset_dir_for_new_uid()?;
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prepared = false;
        let mut last_prepare_attempt: Option<Instant> = None;
        loop {
            // What the API server says first: deletion wins over everything.
            match &*rx.borrow_and_update() {
                PodUpdate::Current(p) => current = p.clone(),
                PodUpdate::Gone => return Ok(End::Gone),
                PodUpdate::Shutdown => return Ok(End::Shutdown),
            }
            if current.metadata.deletion_timestamp.is_some() {
                return Ok(End::Deleted(current));
            }

            if self.ip.is_none() {
                self.allocate_ip(&current);
            }
            if let Some(ip) = self.ip {
                if !prepared
                    && last_prepare_attempt.is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
                {
                    last_prepare_attempt = Some(Instant::now());
                    match self.prepare_volumes(&current).await {
                        Ok(()) => prepared = true,
                        Err(msg) => {
                            for c in &mut self.containers {
                                c.waiting = Some(("ContainerCreating".into(), msg.clone()));
                            }
                            tracing::info!(pod = %self.key(), "volumes not ready: {msg}");
                        }
                    }
                }
                if prepared {
                    self.refresh_tokens().await;
                    self.start_due(&current, ip).await;
                    self.reap();
                    self.probe(ip).await;
                }
            }
            self.report(&current).await?;
            if self.completed() {
                return Ok(End::Completed);
            }

            tokio::select! {
                _ = ticker.tick() => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Ok(End::Shutdown);
                    }
                }
            }
        }
    }

    fn reset_dir_for_new_uid(&self) -> Result<(), RunnerError> {
        let marker = self.dir.join("uid");
        let previous = std::fs::read_to_string(&marker).unwrap_or_default();
        if previous.trim() != self.uid {
            let vols = self.dir.join("volumes");
            if vols.exists() {
                std::fs::remove_dir_all(&vols)
                    .map_err(RunnerError::io("clear old volumes", &vols))?;
            }
            std::fs::write(&marker, &self.uid).map_err(RunnerError::io("write uid", &marker))?;
        }
        Ok(())
    }

    fn allocate_ip(&mut self, pod: &Pod) {
        let preferred = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let ports: Vec<u16> = self
            .plan
            .containers
            .iter()
            .flat_map(|c| c.port_numbers.iter().copied())
            .collect();
        let ip = match self.shared.ips.lock() {
            Ok(mut pool) => pool.allocate(&self.uid, &ports, preferred),
            Err(_) => None,
        };
        match ip {
            Some(ip) => {
                tracing::info!(pod = %self.key(), %ip, "pod address");
                self.ip = Some(ip);
            }
            None => {
                for c in &mut self.containers {
                    c.waiting = Some(("ContainerCreating".into(), "no free pod address".into()));
                }
            }
        }
    }

    // ---- volumes ---------------------------------------------------------------------

    async fn get_data(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let client = self.shared.client.clone();
        match kind {
            "secret" => {
                let api: Api<Secret> = Api::namespaced(client, &self.ns);
                let s = api
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("get secret {name}: {e}"))?;
                Ok(s.map(|s| {
                    let mut m: BTreeMap<String, Vec<u8>> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    m.extend(
                        s.string_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes())),
                    );
                    m
                }))
            }
            _ => {
                let api: Api<ConfigMap> = Api::namespaced(client, &self.ns);
                let cm = api
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("get configmap {name}: {e}"))?;
                Ok(cm.map(|cm| {
                    let mut m: BTreeMap<String, Vec<u8>> = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    m.extend(
                        cm.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    );
                    m
                }))
            }
        }
    }

    async fn write_object_files(
        &self,
        dir: &Path,
        kind: &str,
        name: &str,
        items: &[(String, String)],
        optional: bool,
    ) -> Result<(), String> {
        let data = match self.get_data(kind, name).await? {
            Some(d) => d,
            None if optional => return Ok(()),
            None => {
                return Err(format!(
                    "MountVolume.SetUp failed: {kind} {name:?} not found"
                ));
            }
        };
        let files: Vec<(String, String)> = if items.is_empty() {
            data.keys().map(|k| (k.clone(), k.clone())).collect()
        } else {
            items.to_vec()
        };
        for (key, path) in files {
            let bytes = match data.get(&key) {
                Some(b) => b,
                None if optional => continue,
                None => {
                    return Err(format!(
                        "MountVolume.SetUp failed: {kind} {name:?} has no key {key:?}"
                    ));
                }
            };
            write_file(&dir.join(&path), bytes)?;
        }
        Ok(())
    }

    async fn prepare_volumes(&mut self, pod: &Pod) -> Result<(), String> {
        let vol_root = self.dir.join("volumes");
        let mut dirs = BTreeMap::new();
        let mut tokens = Vec::new();
        for (name, v) in &self.plan.volumes {
            let dir = match v {
                VolumePlan::Claim { claim } => self.claim_dir(claim).await?,
                _ => vol_root.join(name),
            };
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            match v {
                VolumePlan::Claim { .. } | VolumePlan::EmptyDir => {}
                VolumePlan::Secret {
                    name,
                    items,
                    optional,
                } => {
                    self.write_object_files(&dir, "secret", name, items, *optional)
                        .await?
                }
                VolumePlan::ConfigMap {
                    name,
                    items,
                    optional,
                } => {
                    self.write_object_files(&dir, "configmap", name, items, *optional)
                        .await?
                }
                VolumePlan::Projected { sources } => {
                    for s in sources {
                        match s {
                            ProjectedFile::Token {
                                path,
                                audience,
                                expiration_s,
                            } => {
                                let exp = expiration_s.unwrap_or(3607).max(3600);
                                let token = self.request_token(pod, audience.clone(), exp).await?;
                                write_file(&dir.join(path), token.as_bytes())?;
                                tokens.push((dir.join(path), audience.clone(), exp));
                            }
                            ProjectedFile::ConfigMap {
                                name,
                                items,
                                optional,
                            } => {
                                self.write_object_files(&dir, "configmap", name, items, *optional)
                                    .await?
                            }
                            ProjectedFile::Secret {
                                name,
                                items,
                                optional,
                            } => {
                                self.write_object_files(&dir, "secret", name, items, *optional)
                                    .await?
                            }
                            ProjectedFile::Field { path, field } => {
                                let ip = self.ip.map(|i| i.to_string()).unwrap_or_default();
                                let ctx = EnvContext {
                                    pod,
                                    pod_ip: &ip,
                                    host_ip: "127.0.0.1",
                                    node_name: &self.shared.opts.node_name,
                                    secrets: &Objects::new(),
                                    config_maps: &Objects::new(),
                                };
                                let value = env::field(&ctx, field).ok_or_else(|| {
                                    format!("downwardAPI field {field} not supported")
                                })?;
                                write_file(&dir.join(path), value.as_bytes())?;
                            }
                        }
                    }
                }
            }
            dirs.insert(name.clone(), dir);
        }
        self.volume_dirs = dirs;
        self.token_refresh =
            (!tokens.is_empty()).then(|| Instant::now() + token_refresh_after(&tokens));
        self.tokens = tokens;
        self.kubeconfig = self.write_kubeconfig()?;
        Ok(())
    }

    /// The directory standing for a PersistentVolumeClaim: one per claim uid, kept when
    /// pods come and go (a deleted and re-created claim gets a fresh one, as dynamic
    /// provisioning would give).
    async fn claim_dir(&self, claim: &str) -> Result<PathBuf, String> {
        let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(self.shared.client.clone(), &self.ns);
        let pvc = api
            .get_opt(claim)
            .await
            .map_err(|e| format!("get persistentvolumeclaim {claim}: {e}"))?
            .ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
        let uid = pvc.uid().unwrap_or_default();
        Ok(self
            .shared
            .opts
            .run_dir
            .join("volumes")
            .join(format!("{}_{claim}_{uid}", self.ns)))
    }

    async fn request_token(
        &self,
        pod: &Pod,
        audience: Option<String>,
        expiration_s: i64,
    ) -> Result<String, String> {
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &self.ns);
        let req = TokenRequest {
            metadata: Default::default(),
            spec: TokenRequestSpec {
                audiences: audience.into_iter().collect(),
                expiration_seconds: Some(expiration_s),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.name.clone()),
                    uid: Some(self.uid.clone()),
                }),
            },
            status: None,
        };
        let resp: TokenRequest = api
            .create_subresource("token", &sa, &PostParams::default(), &req)
            .await
            .map_err(|e| format!("token for serviceaccount {sa}: {e}"))?;
        resp.status
            .map(|s| s.token)
            .ok_or_else(|| format!("token for serviceaccount {sa}: empty response"))
    }

    async fn refresh_tokens(&mut self) {
        let due = self.token_refresh.is_some_and(|t| Instant::now() >= t);
        if !due {
            return;
        }
        let Some(pod) = self.pods().get_opt(&self.name).await.ok().flatten() else {
            return;
        };
        let mut ok = true;
        for (path, aud, exp) in self.tokens.clone() {
            match self.request_token(&pod, aud, exp).await {
                Ok(t) => {
                    if let Err(e) = write_file(&path, t.as_bytes()) {
                        tracing::warn!(pod = %self.key(), "token refresh: {e}");
                        ok = false;
                    }
                }
                Err(e) => {
                    tracing::warn!(pod = %self.key(), "token refresh: {e}");
                    ok = false;
                }
            }
        }
        self.token_refresh = Some(
            Instant::now()
                + if ok {
                    token_refresh_after(&self.tokens)
                } else {
                    Duration::from_secs(10)
                },
        );
    }

    /// A kubeconfig using the pod's ServiceAccount token (the file a real kubelet would
    /// mount at /var/run/secrets/kubernetes.io/serviceaccount), for processes that mount it.
    fn write_kubeconfig(&self) -> Result<Option<PathBuf>, String> {
        let sa_volume = self
            .plan
            .containers
            .iter()
            .flat_map(|c| c.mounts.iter())
            .find(|(path, _, _)| path.trim_end_matches('/') == spec::SERVICE_ACCOUNT_DIR)
            .map(|(_, vol, _)| vol.clone());
        let Some(dir) = sa_volume.and_then(|v| self.volume_dirs.get(&v).cloned()) else {
            return Ok(None);
        };
        let opts = &self.shared.opts;
        let ca = if dir.join("ca.crt").exists() {
            dir.join("ca.crt")
        } else {
            opts.ca_file.clone()
        };
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {"server": opts.apiserver, "certificate-authority": ca}}],
            "users": [{"name": "pod", "user": {"tokenFile": dir.join("token")}}],
            "contexts": [{"name": "pod", "context": {"cluster": "e2e", "user": "pod", "namespace": self.ns}}],
            "current-context": "pod",
        });
        let path = self.dir.join("kubeconfig");
        let text = serde_json::to_vec_pretty(&doc).map_err(|e| format!("kubeconfig: {e}"))?;
        write_file(&path, &text)?;
        Ok(Some(path))
    }

    // ---- processes -------------------------------------------------------------------

    fn mounts_of(&self, c: &ContainerPlan) -> Vec<(String, PathBuf)> {
        c.mounts
            .iter()
            .filter_map(|(path, vol, sub)| {
                let base = self.volume_dirs.get(vol)?;
                Some((
                    path.clone(),
                    sub.as_ref()
                        .map(|s| base.join(s))
                        .unwrap_or_else(|| base.clone()),
                ))
            })
            .collect()
    }

    async fn start_due(&mut self, pod: &Pod, ip: Ipv4Addr) {
        for i in 0..self.containers.len() {
            let c = &self.containers[i];
            if c.running.is_some() || c.done || Instant::now() < c.next_start {
                continue;
            }
            if let Err((reason, msg)) = self.start(i, pod, ip).await {
                tracing::warn!(pod = %self.key(), container = %self.containers[i].plan.name, "{reason}: {msg}");
                let c = &mut self.containers[i];
                c.waiting = Some((reason, msg));
                c.next_start = Instant::now() + Duration::from_secs(2);
            }
        }
    }

    async fn start(&mut self, i: usize, pod: &Pod, ip: Ipv4Addr) -> Result<(), (String, String)> {
        let plan = self.containers[i].plan.clone();
        let config_err = |m: String| ("CreateContainerConfigError".to_string(), m);
        // Environment, re-read at every start as the kubelet does.
        let (secret_names, cm_names) = env::needed(&plan);
        let mut secrets = Objects::new();
        for n in secret_names {
            secrets.insert(
                n.clone(),
                self.get_data("secret", &n).await.map_err(config_err)?,
            );
        }
        let mut cms = Objects::new();
        for n in cm_names {
            cms.insert(
                n.clone(),
                self.get_data("configmap", &n).await.map_err(config_err)?,
            );
        }
        let ip_s = ip.to_string();
        let ctx = EnvContext {
            pod,
            pod_ip: &ip_s,
            host_ip: "127.0.0.1",
            node_name: &self.shared.opts.node_name,
            secrets: &secrets,
            config_maps: &cms,
        };
        let env = env::resolve(&plan, &ctx).map_err(|e| config_err(e.to_string()))?;
        let mounts = self.mounts_of(&plan);
        let env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k, spec::rewrite(&v, &ip_s, &mounts)))
            .collect();
        let lookup = |n: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let args: Vec<String> = plan
            .args
            .iter()
            .map(|a| spec::rewrite(&spec::expand(a, &lookup), &ip_s, &mounts))
            .collect();

        let log_path = self.dir.join(format!("{}.log", plan.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| {
                (
                    "RunContainerError".to_string(),
                    format!("open {}: {e}", log_path.display()),
                )
            })?;
        let restart = self.containers[i].restart_count;
        {
            use std::io::Write;
            let mut l = &log;
            let _ = writeln!(
                l,
                "--- e2e pod runner: starting {} {} (restart {restart}) at {}",
                plan.program.display(),
                args.join(" "),
                now().0
            );
        }
        let err_log = log
            .try_clone()
            .map_err(|e| ("RunContainerError".to_string(), format!("log: {e}")))?;

        let opts = &self.shared.opts;
        let mut cmd = tokio::process::Command::new(&plan.program);
        cmd.args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("HOSTNAME", &self.name)
            .env(POD_MARKER_ENV, &self.dir)
            .env("KUBERNETES_SERVICE_HOST", &opts.apiserver_host)
            .env("KUBERNETES_SERVICE_PORT", &opts.apiserver_port);
        if let Some(k) = &self.kubeconfig
            && plan
                .mounts
                .iter()
                .any(|(p, _, _)| p.trim_end_matches('/') == spec::SERVICE_ACCOUNT_DIR)
        {
            cmd.env("KUBECONFIG", k);
        }
        if let Some((_, tmp)) = mounts.iter().find(|(p, _)| p == "/tmp") {
            cmd.env("TMPDIR", tmp);
        }
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            (
                "RunContainerError".to_string(),
                format!("start {}: {e}", plan.program.display()),
            )
        })?;
        let pid = child.id().unwrap_or(0);
        let pid_file = self.dir.join(format!("{}.pid", plan.name));
        if let Err(e) = write_file(&pid_file, format!("{pid}\n").as_bytes()) {
            tracing::warn!(pod = %self.key(), "{e}");
        }
        tracing::info!(pod = %self.key(), container = %plan.name, pid, %ip, restart, "started");
        let started = Instant::now();
        let c = &mut self.containers[i];
        c.running = Some(Running {
            child,
            pid,
            started_at: now(),
            started,
        });
        c.waiting = None;
        c.readiness = plan
            .readiness
            .clone()
            .map(|p| ProbeState::new(p, started, false));
        c.liveness = plan
            .liveness
            .clone()
            .map(|p| ProbeState::new(p, started, true));
        Ok(())
    }

    /// Notice exited processes; schedule restarts per the restart policy and back-off.
    fn reap(&mut self) {
        let policy = self.plan.restart_policy;
        let key = self.key();
        let dir = self.dir.clone();
        for c in &mut self.containers {
            let Some(r) = c.running.as_mut() else {
                continue;
            };
            let status = match r.child.try_wait() {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(pod = %key, "wait: {e}");
                    continue;
                }
            };
            let Some(r) = c.running.take() else { continue };
            let _ = std::fs::remove_file(dir.join(format!("{}.pid", c.plan.name)));
            let (exit_code, signal) = match (status.code(), status.signal()) {
                (Some(code), _) => (code, None),
                (None, Some(sig)) => (128 + sig, Some(sig)),
                (None, None) => (1, None),
            };
            let term = Terminated {
                exit_code,
                signal,
                reason: if exit_code == 0 { "Completed" } else { "Error" },
                started_at: r.started_at,
                finished_at: now(),
            };
            tracing::info!(pod = %key, container = %c.plan.name, pid = r.pid, exit_code, ?signal, "exited");
            c.last = Some(term);
            c.readiness = None;
            c.liveness = None;
            let restart = match policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => exit_code != 0,
                RestartPolicy::Never => false,
            };
            if !restart {
                c.done = true;
                continue;
            }
            if r.started.elapsed() >= BACKOFF_RESET {
                c.crashes = 0;
            }
            let delay = if c.crashes == 0 {
                Duration::ZERO
            } else {
                BACKOFF_INITIAL
                    .saturating_mul(1u32 << (c.crashes - 1).min(8))
                    .min(BACKOFF_MAX)
            };
            c.crashes += 1;
            c.restart_count += 1;
            c.next_start = Instant::now() + delay;
            c.waiting = Some((
                if delay.is_zero() {
                    "ContainerCreating".into()
                } else {
                    "CrashLoopBackOff".into()
                },
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(
                        "back-off {}s restarting failed container={}",
                        delay.as_secs(),
                        c.plan.name
                    )
                },
            ));
        }
    }

    async fn probe(&mut self, ip: Ipv4Addr) {
        let cap = self.shared.opts.probe_period_cap;
        let key = self.key();
        let mut kill = Vec::new();
        for (i, c) in self.containers.iter_mut().enumerate() {
            if c.running.is_none() {
                continue;
            }
            let t = Instant::now();
            if let Some(p) = c.readiness.as_mut() {
                match p.tick(ip, t, cap).await {
                    Verdict::Passed => {
                        tracing::info!(pod = %key, container = %c.plan.name, "ready")
                    }
                    Verdict::Failed => {
                        tracing::info!(pod = %key, container = %c.plan.name, error = ?p.last_error, "not ready")
                    }
                    Verdict::Unchanged => {}
                }
            }
            if let Some(p) = c.liveness.as_mut()
                && p.tick(ip, t, Duration::from_secs(p.probe.period_s)).await == Verdict::Failed
            {
                tracing::warn!(pod = %key, container = %c.plan.name, error = ?p.last_error, "liveness probe failed: restarting");
                kill.push(i);
            }
        }
        for i in kill {
            self.stop_container(
                i,
                Duration::from_secs(u64::try_from(self.plan.grace_period_s).unwrap_or(30)),
            )
            .await;
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit (the next `reap` records it).
    async fn stop_container(&mut self, i: usize, grace: Duration) {
        let Some(pid) = self.containers[i].running.as_ref().map(|r| r.pid) else {
            return;
        };
        signal_group(pid, "TERM");
        let deadline = Instant::now() + grace;
        loop {
            let exited = match self.containers[i].running.as_mut() {
                Some(r) => !matches!(r.child.try_wait(), Ok(None)),
                None => true,
            };
            if exited {
                break;
            }
            if Instant::now() >= deadline {
                signal_group(pid, "KILL");
                if let Some(r) = self.containers[i].running.as_mut() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), r.child.wait()).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stop every process (grace as given), leave the API alone.
    async fn stop_all(&mut self, grace: Duration) {
        for i in 0..self.containers.len() {
            if self.containers[i].running.is_some() {
                signal_group(
                    self.containers[i]
                        .running
                        .as_ref()
                        .map(|r| r.pid)
                        .unwrap_or(0),
                    "TERM",
                );
            }
        }
        let deadline = Instant::now() + grace;
        for i in 0..self.containers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.stop_container(i, left).await;
            if let Some(mut r) = self.containers[i].running.take() {
                let _ = r.child.try_wait();
            }
        }
    }

    /// A deleted pod: stop with the pod's grace period, then confirm the deletion.
    async fn terminate(&mut self, pod: &Pod) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or(self.plan.grace_period_s)
            .max(0);
        tracing::info!(pod = %self.key(), grace, "terminating");
        self.stop_all(Duration::from_secs(u64::try_from(grace).unwrap_or(0)))
            .await;
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.pods().delete(&self.name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %self.key(), error = %e, "confirming deletion"),
        }
    }

    fn completed(&self) -> bool {
        !self.containers.is_empty() && self.containers.iter().all(|c| c.done)
    }

    async fn cleanup(&mut self) {
        // A claim that is gone (or going) takes its directory with it, as a dynamically
        // provisioned volume with reclaim policy Delete would.
        let claims: Vec<String> = self
            .plan
            .volumes
            .values()
            .filter_map(|v| match v {
                VolumePlan::Claim { claim } => Some(claim.clone()),
                _ => None,
            })
            .collect();
        for claim in claims {
            let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
                Api::namespaced(self.shared.client.clone(), &self.ns);
            let gone = match api.get_opt(&claim).await {
                Ok(None) => true,
                Ok(Some(pvc)) => pvc.metadata.deletion_timestamp.is_some(),
                Err(_) => false,
            };
            if !gone {
                continue;
            }
            let prefix = format!("{}_{claim}_", self.ns);
            let root = self.shared.opts.run_dir.join("volumes");
            for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix)
                    && let Err(err) = std::fs::remove_dir_all(e.path())
                {
                    tracing::warn!(pod = %self.key(), "remove {}: {err}", e.path().display());
                }
            }
        }
        if let Some(ip) = self.ip.take()
            && let Ok(mut pool) = self.shared.ips.lock()
        {
            pool.release(ip);
        }
        for c in &self.containers {
            let _ = std::fs::remove_file(self.dir.join(format!("{}.pid", c.plan.name)));
        }
        // Scratch volumes go with the pod; claims' directories stay; logs stay.
        let vols = self.dir.join("volumes");
        if vols.exists()
            && let Err(e) = std::fs::remove_dir_all(&vols)
        {
            tracing::warn!(pod = %self.key(), "remove {}: {e}", vols.display());
        }
    }

    // ---- status ----------------------------------------------------------------------

    async fn report(&mut self, pod: &Pod) -> Result<(), RunnerError> {
        let status = self.status(pod);
        if self.last_status.as_ref() == Some(&status) {
            return Ok(());
        }
        // A JSON merge patch: the lists (conditions, containerStatuses, podIPs) are
        // replaced whole, since this task is their only writer.
        let patch = serde_json::json!({"status": status});
        match self
            .pods()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                self.last_status = Some(status);
                self.last_status_error = None;
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                if self.last_status_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(pod = %self.key(), error = %msg, "status update (retrying)");
                    self.last_status_error = Some(msg);
                }
                Ok(())
            }
        }
    }

    fn status(&self, pod: &Pod) -> serde_json::Value {
        let all_ready = self.containers.iter().all(ContainerRt::ready);
        let all_done = self.completed();
        let phase = if all_done {
            if self
                .containers
                .iter()
                .all(|c| c.last.as_ref().is_some_and(|t| t.exit_code == 0))
            {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if self
            .containers
            .iter()
            .any(|c| c.running.is_some() || c.last.is_some())
        {
            "Running"
        } else {
            "Pending"
        };
        // Keep transition times unless the status changes.
        let previous = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let condition = |type_: &str, ok: bool, reason: Option<&str>| {
            let status = if ok { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(now);
            let mut c =
                serde_json::json!({"type": type_, "status": status, "lastTransitionTime": since});
            if let Some(r) = reason.filter(|_| !ok) {
                c["reason"] = r.into();
            }
            c
        };
        let not_ready = if all_done {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let mut out = serde_json::json!({
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": [
                condition("PodReadyToStartContainers", self.ip.is_some(), None),
                condition("Initialized", true, None),
                condition("ContainersReady", all_ready, Some(not_ready)),
                condition("Ready", all_ready, Some(not_ready)),
                condition("PodScheduled", true, None),
            ],
            "containerStatuses": self.containers.iter().map(|c| self.container_status(pod, c)).collect::<Vec<_>>(),
            "qosClass": pod.status.as_ref().and_then(|s| s.qos_class.clone()).unwrap_or_else(|| "BestEffort".into()),
        });
        if let Some(ip) = self.ip {
            out["podIP"] = ip.to_string().into();
            out["podIPs"] = serde_json::json!([{"ip": ip.to_string()}]);
        }
        out
    }

    fn container_status(&self, pod: &Pod, c: &ContainerRt) -> serde_json::Value {
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|x| x.name == c.plan.name))
            .and_then(|x| x.image.clone())
            .unwrap_or_default();
        let terminated = |t: &Terminated| {
            let mut v = serde_json::json!({
                "exitCode": t.exit_code, "reason": t.reason, "startedAt": t.started_at, "finishedAt": t.finished_at,
            });
            if let Some(sig) = t.signal {
                v["signal"] = sig.into();
            }
            v
        };
        let state = match (&c.running, &c.waiting, &c.last) {
            (Some(r), _, _) => serde_json::json!({"running": {"startedAt": r.started_at}}),
            (None, _, Some(t)) if c.done => serde_json::json!({"terminated": terminated(t)}),
            (None, Some((reason, msg)), _) => {
                let mut w = serde_json::json!({"reason": reason});
                if !msg.is_empty() {
                    w["message"] = msg.clone().into();
                }
                serde_json::json!({"waiting": w})
            }
            (None, None, _) => serde_json::json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        let mut s = serde_json::json!({
            "name": c.plan.name,
            "image": image,
            "imageID": format!("causeway-e2e://{}", c.plan.program.display()),
            "ready": c.ready(),
            "started": c.running.is_some(),
            "restartCount": c.restart_count,
            "state": state,
        });
        if let Some(r) = &c.running {
            s["containerID"] = format!("causeway-e2e://{}", r.pid).into();
        }
        if let (Some(t), false) = (&c.last, c.done) {
            s["lastState"] = serde_json::json!({"terminated": terminated(t)});
        }
        s
    }
}

fn token_refresh_after(tokens: &[(PathBuf, Option<String>, i64)]) -> Duration {
    let min = tokens.iter().map(|(_, _, e)| *e).min().unwrap_or(3600);
    Duration::from_secs(u64::try_from(min * 4 / 5).unwrap_or(2880))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    // Write then rename, so a reader (kube's tokenFile) never sees half a token.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp~"));
    std::fs::write(&tmp, bytes).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename {}: {e}", path.display()))
}
