//! PostgreSQL for scenarios 8 and 9: a throwaway server (`scripts/postgres.sh`), the
//! database's own counters read over a connection of our own, a loopback proxy in front
//! of the server that counts round trips, and the CPU the server's processes use.
//!
//! Nothing here is stopped by name: the server by the postmaster's PID (the script reads
//! it from the data directory), the proxy by dropping it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::sut::{Paths, clock_ticks, free_addr};

/// A PostgreSQL server of our own, stopped (by PID) and deleted when dropped.
pub struct Server {
    dir: PathBuf,
    script: PathBuf,
    /// `postgres://user:password@127.0.0.1:port/causeway`. Never logged.
    pub url: String,
    pub addr: SocketAddr,
    pub version: String,
}

impl Server {
    /// Start one with `scripts/postgres.sh` in `BENCH_PG_DIR`, else in
    /// `/var/tmp/causeway-bench-pg-<pid>`: on disk (fsync costs what it costs), and where
    /// the `postgres` user can reach it when we run as root (`$HOME` often is not).
    pub fn start(paths: &Paths) -> anyhow::Result<Server> {
        let dir = std::env::var_os("BENCH_PG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(format!("/var/tmp/causeway-bench-pg-{}", std::process::id()))
            });
        let _ = std::fs::remove_dir_all(&dir);
        let script = paths.repo.join("scripts/postgres.sh");
        let addr = free_addr()?;
        let out = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .arg(addr.port().to_string())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "scripts/postgres.sh start failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut s = Server {
            dir,
            script,
            url,
            addr,
            version: String::new(),
        };
        s.version = std::fs::read_to_string(s.dir.join("data/PG_VERSION"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        Ok(s)
    }

    /// The postmaster's PID, from its pid file.
    pub fn postmaster(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// CPU used so far by the server: the postmaster, its live children (backends, WAL
    /// writer, checkpointer, …) and the children it has reaped (backends that exited).
    pub fn cpu_time(&self) -> Option<Duration> {
        let pm = self.postmaster()?;
        let own = proc_ticks(pm)?;
        let mut ticks = own.utime + own.stime + own.cutime + own.cstime;
        for pid in children(pm) {
            if let Some(t) = proc_ticks(pid) {
                ticks += t.utime + t.stime;
            }
        }
        Some(ticks_to_duration(ticks))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
        if std::env::var("BENCH_KEEP_DATA").map_or(true, |v| v.is_empty() || v == "0") {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `url` with its `host:port` replaced by `addr` (to go through the [`Proxy`]).
pub fn url_via(url: &str, addr: SocketAddr) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (userinfo, hostpath) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let path = hostpath.find(['/', '?']).map_or("", |i| &hostpath[i..]);
    Some(match userinfo {
        Some(u) => format!("{scheme}://{u}@{addr}{path}"),
        None => format!("{scheme}://{addr}{path}"),
    })
}

pub(crate) struct Ticks {
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
}

pub(crate) fn proc_ticks(pid: u32) -> Option<Ticks> {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime, stime, cutime, cstime of a `/proc/<pid>/stat` line.
fn stat_ticks(text: &str) -> Option<Ticks> {
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (f.len() == 4).then(|| Ticks {
        utime: f[0],
        stime: f[1],
        cutime: f[2],
        cstime: f[3],
    })
}

fn ppid(text: &str) -> Option<u32> {
    text.get(text.rfind(')')? + 2..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// PIDs whose parent is `parent`.
pub(crate) fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|t| ppid(&t))
                == Some(parent)
        })
        .collect()
}

pub(crate) fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks())
}

/// CPU used so far by this process (the load generator, the sink and the proxy).
pub fn own_cpu_time() -> Option<Duration> {
    let t = stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some(ticks_to_duration(t.utime + t.stime))
}

/// The whole machine's CPU so far, from `/proc/stat`: `(busy, total)`.
pub fn machine_cpu() -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 5 {
        return None;
    }
    let total: u64 = f.iter().sum();
    let idle = f[3] + f[4];
    Some((ticks_to_duration(total - idle), ticks_to_duration(total)))
}

/// A connection of our own to the database, for its counters.
pub struct Db {
    client: tokio_postgres::Client,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Db {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// What the database did between [`Db::reset`] and [`Db::counters`].
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Statements executed (`pg_stat_statements`, calls summed), ours excluded.
    pub statements: f64,
    /// Of which `BEGIN`, `COMMIT` and `ROLLBACK`.
    pub tx_control: f64,
    /// Transactions committed (`pg_stat_database.xact_commit`).
    pub commits: f64,
    /// WAL written, from `pg_current_wal_lsn()` (exact, whichever process wrote it).
    pub wal_bytes: f64,
    /// WAL flushes to disk (`pg_stat_wal.wal_sync`).
    pub wal_syncs: f64,
    /// The most frequent statements: `(calls, query)`.
    pub top: Vec<(i64, String)>,
}

/// Our own queries all name one of these; they are left out of the counts.
const OURS: &str = "query NOT ILIKE '%pg_stat%' AND query NOT ILIKE '%pg_current_wal%' \
                    AND query NOT ILIKE '%CHECKPOINT%' AND query NOT ILIKE '%DROP SCHEMA%'";

impl Db {
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .context("connecting to the benchmark's PostgreSQL")?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let db = Db { client, conn };
        db.client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .context("CREATE EXTENSION pg_stat_statements")?;
        Ok(db)
    }

    pub async fn version(&self) -> String {
        match self.client.query_one("SHOW server_version", &[]).await {
            Ok(r) => r.get(0),
            Err(_) => String::new(),
        }
    }

    /// Start counting: a checkpoint (so that every run starts with the same full-page
    /// writes ahead of it), the statement and WAL statistics reset; returns the WAL
    /// position to measure from.
    pub async fn reset(&self) -> anyhow::Result<String> {
        self.client
            .batch_execute(
                "CHECKPOINT; SELECT pg_stat_statements_reset(); \
                 SELECT pg_stat_reset_shared('wal'); SELECT pg_stat_reset();",
            )
            .await
            .context("resetting the statistics")?;
        let lsn: String = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?
            .get(0);
        Ok(lsn)
    }

    /// What happened since [`Db::reset`] returned `lsn`. Read after the workers stopped:
    /// backends report their transaction and WAL counters when they exit (otherwise up
    /// to a second or more late); statement counts are current at any time.
    pub async fn counters(&self, lsn: &str) -> anyhow::Result<Counters> {
        let c = &self.client;
        let stmts = c
            .query_one(
                &format!(
                    "SELECT coalesce(sum(calls), 0)::float8,
                            coalesce(sum(calls) FILTER (WHERE upper(query) IN ('BEGIN', 'COMMIT', 'ROLLBACK')), 0)::float8
                     FROM pg_stat_statements
                     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND {OURS}"
                ),
                &[],
            )
            .await?;
        let wal: i64 = c
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
                &[&lsn],
            )
            .await?
            .get(0);
        let syncs: i64 = c
            .query_one("SELECT wal_sync FROM pg_stat_wal", &[])
            .await?
            .get(0);
        let commits: i64 = c
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await?
            .get(0);
        let top = c
            .query(
                &format!(
                    "SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements
                     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND {OURS}
                     ORDER BY calls DESC LIMIT 12"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(Counters {
            statements: stmts.get(0),
            tx_control: stmts.get(1),
            commits: commits as f64,
            wal_bytes: wal as f64,
            wal_syncs: syncs as f64,
            top,
        })
    }

    /// Drop a pool's schema (between runs: keeps the disk small and every run fresh).
    pub async fn drop_schema(&self, schema: &str) -> anyhow::Result<()> {
        self.client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .context("dropping a schema")?;
        Ok(())
    }
}

/// A loopback TCP proxy in front of the server that counts round trips: on each
/// connection, every time the client sends after the server last spoke (or first, the
/// startup message) is one round trip. Statements pipelined in one flight count once;
/// a flight sent while answers to the previous one are still arriving counts again.
pub struct Proxy {
    pub addr: SocketAddr,
    trips: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let trips = Arc::new(AtomicU64::new(0));
        let counter = trips.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) closes every connection.
            let mut conns = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let counter = counter.clone();
                conns.spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let server_spoke = Arc::new(AtomicBool::new(true));
                    let spoke = server_spoke.clone();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = cr.read(&mut buf).await {
                            if server_spoke.swap(false, Ordering::AcqRel) {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = sr.read(&mut buf).await {
                            spoke.store(true, Ordering::Release);
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Proxy { addr, trips, task })
    }

    /// Round trips since the last [`Proxy::reset`].
    pub fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.trips.store(0, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Write the most frequent statements of a run next to its logs.
pub fn write_top(dir: &Path, c: &Counters, events: usize) {
    let mut text = format!("# statements per event ({events} events)\n");
    for (calls, q) in &c.top {
        text.push_str(&format!(
            "{:>8.3}  {calls:>9}  {q}\n",
            *calls as f64 / events.max(1) as f64
        ));
    }
    let _ = std::fs::write(dir.join("statements.txt"), text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_pointed_at_the_proxy_keeping_the_rest() {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            url_via("postgres://u:p@ss@127.0.0.1:5432/causeway", a).as_deref(),
            Some("postgres://u:p@ss@127.0.0.1:4000/causeway")
        );
        assert_eq!(
            url_via("postgresql://h:1/db?sslmode=disable", a).as_deref(),
            Some("postgresql://127.0.0.1:4000/db?sslmode=disable")
        );
        assert_eq!(url_via("not a url", a), None);
    }

    #[test]
    fn proc_stat_fields_after_a_command_with_spaces() {
        let line = "42 (postgres: causeway x) S 7 42 42 0 -1 4194560 1 0 0 0 11 22 33 44 20 0 1 0";
        let t = stat_ticks(line).unwrap();
        assert_eq!((t.utime, t.stime, t.cutime, t.cstime), (11, 22, 33, 44));
        assert_eq!(ppid(line), Some(7));
    }
}
