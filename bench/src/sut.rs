//! Systems under test as child processes on free loopback ports: the causeway worker, the
//! HTTP floor, nginx and `wasmtime serve`. Each [`Proc`] is stopped by its own PID when
//! dropped; nothing is ever stopped by name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the binaries and caches are.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The repository root.
    pub repo: PathBuf,
    /// `target/release`: `causeway`, `http-floor`.
    pub bin_dir: PathBuf,
    /// `$CAUSEWAY_CACHE` (default `~/.cache/causeway`): nginx and wasmtime live there.
    pub cache: PathBuf,
    /// Scratch space for this benchmark run (data dirs, configs, logs), on the same disk
    /// as a real data dir would be (not tmpfs: fsync must cost what it costs).
    pub work: PathBuf,
}

impl Paths {
    /// The worker binary: `target/release/causeway`, or `BENCH_CAUSEWAY` when set (the
    /// binary of another commit, for runs paired against it: `bench/paired.sh`).
    pub fn causeway(&self) -> PathBuf {
        match std::env::var_os("BENCH_CAUSEWAY") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => self.bin_dir.join("causeway"),
        }
    }
    pub fn floor(&self) -> PathBuf {
        self.bin_dir.join("http-floor")
    }
    pub fn nginx(&self) -> PathBuf {
        self.cache.join("nginx/usr/sbin/nginx")
    }
    pub fn wasmtime(&self) -> PathBuf {
        self.cache.join("wasmtime/bin/wasmtime")
    }
    pub fn plugin(&self, name: &str) -> PathBuf {
        self.repo
            .join("examples/plugins/dist")
            .join(format!("{name}.wasm"))
    }
}

/// Ports below the kernel's ephemeral range, as the tests pick them (one file for all).
#[path = "../../runtime/tests/common/ports.rs"]
mod ports;

/// A free port on 127.0.0.1 for a child to take, below the ephemeral range: a port from
/// `bind(:0)`, once released, may become the source port of the generator's own outgoing
/// connections before the child binds it.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], ports::free_port())))
}

/// A child process, killed (SIGKILL, by PID) when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
    pub started: Instant,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| log.display().to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            started,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident set size in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// CPU time used so far (user + system, all threads), from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Option<Duration> {
        let t = crate::pg::proc_ticks(self.pid()?)?;
        Some(crate::pg::ticks_to_duration(t.utime + t.stime))
    }

    /// CPU time used so far by the process and its live children (nginx's worker
    /// processes), user + system.
    pub fn tree_cpu_time(&self) -> Option<Duration> {
        let pid = self.pid()?;
        let ticks = std::iter::once(pid)
            .chain(crate::pg::children(pid))
            .filter_map(crate::pg::proc_ticks)
            .map(|t| t.utime + t.stime)
            .sum();
        Some(crate::pg::ticks_to_duration(ticks))
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL by PID, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM by PID; SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn clock_ticks() -> u64 {
    // USER_HZ is 100 on every Linux this runs on; `getconf` confirms when available.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A plain HTTP/1.1 GET with `Connection: close`; `(status, body)`. Bounded by 5 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no status line")?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .context("GET timed out")?
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Wait until `GET path` answers 200; the time it took.
pub async fn wait_ok(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    proc: &mut Proc,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        if let Ok((200, _)) = http_get(addr, path).await {
            return Ok(t.elapsed());
        }
        if !proc.alive() {
            bail!(
                "{} exited; log {}:\n{}",
                proc.name,
                proc.log.display(),
                tail(&proc.log_text(), 30)
            );
        }
        if t.elapsed() > limit {
            bail!(
                "{} not ready after {limit:?}; log {}:\n{}",
                proc.name,
                proc.log.display(),
                tail(&proc.log_text(), 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait until `addr` accepts TCP connections.
pub async fn wait_port(
    addr: SocketAddr,
    limit: Duration,
    proc: &mut Proc,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(t.elapsed());
        }
        if !proc.alive() {
            bail!(
                "{} exited; log {}:\n{}",
                proc.name,
                proc.log.display(),
                tail(&proc.log_text(), 30)
            );
        }
        if t.elapsed() > limit {
            bail!("{} not listening after {limit:?}", proc.name);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sum of every sample of `name` (any labels) in a Prometheus text exposition. The worker
/// currently exposes the plugin host's metrics with the registry's prefix added once more
/// (`causeway_causeway_plugin_*`), so that spelling is accepted too.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    metric_sum_exact(text, name).or_else(|| metric_sum_exact(text, &format!("causeway_{name}")))
}

/// The metric's lines, `name{labels} value`, under either spelling (see [`metric_sum`]).
pub fn metric_has(text: &str, line: &str) -> bool {
    text.lines()
        .any(|l| l == line || l.strip_prefix("causeway_") == Some(line))
}

fn metric_sum_exact(text: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
            found = true;
        }
    }
    found.then_some(sum)
}

/// How a worker is started.
#[derive(Clone, Debug, Default)]
pub struct WorkerOpts {
    /// Extra command-line flags.
    pub args: Vec<String>,
    /// `ulimit -v` in KiB. The plugin host falls back from the pooling allocator to
    /// on-demand allocation when it cannot reserve the pool's address space; a limit
    /// well under the pool's reservation (terabytes) turns pooling off without a flag.
    pub address_space_kib: Option<u64>,
}

/// A `causeway up -f <manifests>` process.
pub struct Worker {
    pub proc: Proc,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub manifests: PathBuf,
    pub opts: WorkerOpts,
    /// Spawn until `/readyz` answered 200.
    pub ready_after: Duration,
    exe: PathBuf,
}

impl Worker {
    pub async fn start(
        paths: &Paths,
        dir: &Path,
        manifests: &Path,
        opts: WorkerOpts,
    ) -> anyhow::Result<Worker> {
        std::fs::create_dir_all(dir)?;
        let listen = free_addr()?;
        let admin = free_addr()?;
        let data_dir = dir.join("data");
        let (proc, ready_after) = Self::spawn(
            &paths.causeway(),
            dir,
            manifests,
            &data_dir,
            listen,
            admin,
            &opts,
        )
        .await?;
        Ok(Worker {
            proc,
            listen,
            admin,
            data_dir,
            manifests: manifests.to_path_buf(),
            opts,
            ready_after,
            exe: paths.causeway(),
        })
    }

    async fn spawn(
        exe: &Path,
        dir: &Path,
        manifests: &Path,
        data_dir: &Path,
        listen: SocketAddr,
        admin: SocketAddr,
        opts: &WorkerOpts,
    ) -> anyhow::Result<(Proc, Duration)> {
        let mut cmd = match opts.address_space_kib {
            // `exec` keeps the PID: the shell becomes the worker.
            Some(kib) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
                    .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.arg("up")
            .arg("-f")
            .arg(manifests)
            .arg("--data-dir")
            .arg(data_dir);
        cmd.arg("--listen")
            .arg(listen.to_string())
            .arg("--admin")
            .arg(admin.to_string());
        cmd.args(&opts.args);
        cmd.env("CAUSEWAY_LOG", "info").env("NO_COLOR", "1");
        let mut proc = Proc::spawn("causeway", cmd, &dir.join("worker.log"))?;
        let ready = wait_ok(admin, "/readyz", Duration::from_secs(120), &mut proc).await?;
        Ok((proc, ready))
    }

    /// Start again on the same data dir and ports (after [`Proc::kill9`]).
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        let dir = self
            .proc
            .log
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let (proc, ready) = Self::spawn(
            &self.exe,
            &dir,
            &self.manifests,
            &self.data_dir,
            self.listen,
            self.admin,
            &self.opts,
        )
        .await?;
        self.proc = proc;
        self.ready_after = ready;
        Ok(ready)
    }

    pub async fn metrics(&self) -> String {
        http_get(self.admin, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    pub async fn config_version(&self) -> Option<String> {
        let (_, body) = http_get(self.admin, "/api/v1/config").await.ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["version"].as_str().map(str::to_string)
    }

    pub fn stop(&mut self) {
        self.proc.terminate(Duration::from_secs(15));
    }

    /// Stop and delete the data dir (a closed-loop run stores hundreds of MB); the log
    /// stays. `BENCH_KEEP_DATA=1` keeps it.
    pub fn discard(&mut self) {
        self.stop();
        if std::env::var("BENCH_KEEP_DATA").map_or(true, |v| v.is_empty() || v == "0") {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Baseline 1: `http-floor`.
pub async fn start_floor(paths: &Paths, dir: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    let addr = free_addr()?;
    let mut cmd = Command::new(paths.floor());
    cmd.arg("--listen").arg(addr.to_string());
    let mut p = Proc::spawn("http-floor", cmd, &dir.join("floor.log"))?;
    wait_port(addr, Duration::from_secs(10), &mut p).await?;
    Ok((p, addr))
}

/// Baseline 2: nginx with `proxy_pass` to `upstream` (keep-alive to the upstream, as the
/// worker keeps its connections), one worker process per core, its own prefix, pid and logs.
pub async fn start_nginx(
    paths: &Paths,
    dir: &Path,
    upstream: SocketAddr,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let addr = free_addr()?;
    let p = prefix.display();
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes auto;
user root;
pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {p}/client_body;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  keepalive_requests 1000000;
  upstream sink {{ server {upstream}; keepalive 256; keepalive_requests 1000000; }}
  server {{
    listen {addr} backlog=4096;
    location / {{
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"#
    );
    std::fs::write(prefix.join("nginx.conf"), conf)?;
    let mut cmd = Command::new(paths.nginx());
    cmd.arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-e")
        .arg(prefix.join("logs/error.log"));
    let mut proc = Proc::spawn("nginx", cmd, &dir.join("nginx.log"))?;
    wait_port(addr, Duration::from_secs(10), &mut proc).await?;
    Ok((proc, addr))
}

/// Baseline 3: `wasmtime serve` running a component (`-S cli -S config`, as the plugin
/// guide runs the examples), with the pooling allocator as the worker uses it.
pub async fn start_wasmtime(
    paths: &Paths,
    dir: &Path,
    wasm: &Path,
) -> anyhow::Result<(Proc, SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    let addr = free_addr()?;
    let mut cmd = Command::new(paths.wasmtime());
    cmd.arg("serve")
        .args(["-S", "cli", "-S", "config", "-O", "pooling-allocator=y"])
        .arg("--addr")
        .arg(addr.to_string())
        .arg(wasm);
    let mut proc = Proc::spawn("wasmtime serve", cmd, &dir.join("wasmtime.log"))?;
    wait_port(addr, Duration::from_secs(120), &mut proc).await?;
    Ok((proc, addr))
}

/// A `perf record` (software clock, call graphs) attached to one process, when
/// `BENCH_PROFILE=1` and perf works; [`Profile::finish`] writes `perf report` next to
/// the data.
pub struct Profile {
    proc: Proc,
    data: PathBuf,
}

impl Profile {
    pub fn start(pid: Option<u32>, dir: &Path, name: &str) -> Option<Profile> {
        if std::env::var("BENCH_PROFILE").map_or(true, |v| v.is_empty() || v == "0") {
            return None;
        }
        let data = dir.join(format!("{name}.perf.data"));
        let mut cmd = Command::new("perf");
        // BENCH_PROFILE_CALLGRAPH=dwarf for stacks through code built without frame pointers.
        let graph = std::env::var("BENCH_PROFILE_CALLGRAPH").unwrap_or_else(|_| "fp".into());
        cmd.args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "1999",
            "--call-graph",
            &graph,
            "-o",
        ])
        .arg(&data)
        .arg("-p")
        .arg(pid?.to_string());
        let proc = Proc::spawn("perf", cmd, &dir.join(format!("{name}.perf.log"))).ok()?;
        // perf needs a moment to attach.
        std::thread::sleep(Duration::from_millis(300));
        Some(Profile { proc, data })
    }

    /// Stop recording (SIGINT, by PID) and write the flat and the caller reports.
    pub fn finish(mut self) -> Option<PathBuf> {
        let pid = self.proc.pid()?;
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.proc.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let report = self.data.with_extension("txt");
        let flat = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                "dso,symbol",
                "--percent-limit",
                "0.7",
                "-g",
                "none",
                "-i",
            ])
            .arg(&self.data)
            .output()
            .ok()?;
        let tree = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--children",
                "--sort",
                "symbol",
                "--percent-limit",
                "3",
                "-g",
                "caller,0.5,callee,function,percent",
                "-i",
            ])
            .arg(&self.data)
            .output()
            .ok()?;
        let mut text = String::from_utf8_lossy(&flat.stdout).to_string();
        text.push_str("\n\n==== inclusive (children) ====\n\n");
        text.push_str(&String::from_utf8_lossy(&tree.stdout));
        std::fs::write(&report, text).ok()?;
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_over_labels() {
        let text = "# HELP x y\n# TYPE x counter\ncauseway_queue_depth{bridge=\"a\",destination=\"s\"} 3\ncauseway_queue_depth{bridge=\"b\",destination=\"s\"} 4\ncauseway_queue_depth_other 100\ncauseway_store_commit_seconds_sum 0.5\n";
        assert_eq!(metric_sum(text, "causeway_queue_depth"), Some(7.0));
        assert_eq!(
            metric_sum(text, "causeway_store_commit_seconds_sum"),
            Some(0.5)
        );
        assert_eq!(metric_sum(text, "causeway_missing"), None);
        let doubled = "causeway_causeway_plugin_allocator{kind=\"pooling\"} 1\n";
        assert_eq!(metric_sum(doubled, "causeway_plugin_allocator"), Some(1.0));
        assert!(metric_has(
            doubled,
            "causeway_plugin_allocator{kind=\"pooling\"} 1"
        ));
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
