//! Store engine comparison on Causeway's workload (see docs/store.md).
//!
//! Each engine gets the same group-commit driver: `writers` threads each append events one
//! at a time and wait for the acknowledgement; one writer thread drains whatever is queued,
//! writes it in one transaction and syncs to disk once, then acknowledges the whole batch.
//! One append writes what ingress writes: the event (1 KiB body), one delivery job, one due
//! index entry and one idempotency key. Then every job is completed the same way (job
//! updated, attempt inserted, due entry removed), which is what delivery writes.
//!
//! Run: `cargo run --release -p causeway-runtime --features storebench --bin storebench`
//! Optional arguments: events per run (default 4000) and the data directory (default a
//! fresh temp dir under the current directory).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

enum Op {
    Append { id: u128, body: Vec<u8> },
    Complete { id: u128 },
}

trait Engine: Send {
    fn name(&self) -> &'static str;
    /// Write every op in one transaction and sync to disk once.
    fn apply(&mut self, ops: &[Op]) -> Res<()>;
    fn disk_bytes(&self) -> u64;
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

fn job_record(id: u128, attempts: u32) -> Vec<u8> {
    format!(r#"{{"event":"{id:032x}","destination":"sink","status":"pending","attempts":{attempts},"bridge":"default/orders"}}"#)
        .into_bytes()
}

// ---------------------------------------------------------------- redb
struct Redb {
    db: redb::Database,
    path: PathBuf,
}
const R_EVENTS: redb::TableDefinition<u128, &[u8]> = redb::TableDefinition::new("events");
const R_JOBS: redb::TableDefinition<(u128, u32), &[u8]> = redb::TableDefinition::new("jobs");
const R_DUE: redb::TableDefinition<(u64, u128, u32), ()> = redb::TableDefinition::new("due");
const R_IDEM: redb::TableDefinition<(&str, &str), u128> = redb::TableDefinition::new("idem");
const R_ATTEMPTS: redb::TableDefinition<(u128, u32, u32), &[u8]> =
    redb::TableDefinition::new("attempts");

impl Redb {
    fn open(dir: &Path) -> Res<Self> {
        let path = dir.join("redb.db");
        let db = redb::Database::create(&path).map_err(|e| e.to_string())?;
        Ok(Redb { db, path })
    }
}
impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb 4"
    }
    fn apply(&mut self, ops: &[Op]) -> Res<()> {
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut ev = txn.open_table(R_EVENTS).map_err(|e| e.to_string())?;
            let mut jobs = txn.open_table(R_JOBS).map_err(|e| e.to_string())?;
            let mut due = txn.open_table(R_DUE).map_err(|e| e.to_string())?;
            let mut idem = txn.open_table(R_IDEM).map_err(|e| e.to_string())?;
            let mut att = txn.open_table(R_ATTEMPTS).map_err(|e| e.to_string())?;
            for op in ops {
                match op {
                    Op::Append { id, body } => {
                        ev.insert(*id, body.as_slice()).map_err(|e| e.to_string())?;
                        jobs.insert((*id, 0), job_record(*id, 0).as_slice())
                            .map_err(|e| e.to_string())?;
                        due.insert((0, *id, 0), ()).map_err(|e| e.to_string())?;
                        let key = format!("{id:x}");
                        idem.insert(("default/orders", key.as_str()), *id)
                            .map_err(|e| e.to_string())?;
                    }
                    Op::Complete { id } => {
                        jobs.insert((*id, 0), job_record(*id, 1).as_slice())
                            .map_err(|e| e.to_string())?;
                        due.remove((0, *id, 0)).map_err(|e| e.to_string())?;
                        att.insert((*id, 0, 1), &b"{\"status\":200,\"durationMs\":3}"[..])
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| e.to_string())
    }
    fn disk_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

// ---------------------------------------------------------------- fjall
struct Fjall {
    db: fjall::Database,
    events: fjall::Keyspace,
    jobs: fjall::Keyspace,
    due: fjall::Keyspace,
    idem: fjall::Keyspace,
    attempts: fjall::Keyspace,
    dir: PathBuf,
}
impl Fjall {
    fn open(dir: &Path) -> Res<Self> {
        let dir = dir.join("fjall");
        let db = fjall::Database::builder(&dir)
            .open()
            .map_err(|e| e.to_string())?;
        let ks = |n: &str| {
            db.keyspace(n, fjall::KeyspaceCreateOptions::default)
                .map_err(|e| e.to_string())
        };
        Ok(Fjall {
            events: ks("events")?,
            jobs: ks("jobs")?,
            due: ks("due")?,
            idem: ks("idem")?,
            attempts: ks("attempts")?,
            db,
            dir,
        })
    }
}
impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall 3"
    }
    fn apply(&mut self, ops: &[Op]) -> Res<()> {
        let mut b = self.db.batch();
        for op in ops {
            match op {
                Op::Append { id, body } => {
                    let k = id.to_be_bytes();
                    b.insert(&self.events, k, body.clone());
                    let mut jk = k.to_vec();
                    jk.extend_from_slice(&0u32.to_be_bytes());
                    b.insert(&self.jobs, jk.clone(), job_record(*id, 0));
                    let mut dk = 0u64.to_be_bytes().to_vec();
                    dk.extend_from_slice(&jk);
                    b.insert(&self.due, dk, b"".to_vec());
                    b.insert(&self.idem, format!("default/orders\0{id:x}"), k.to_vec());
                }
                Op::Complete { id } => {
                    let mut jk = id.to_be_bytes().to_vec();
                    jk.extend_from_slice(&0u32.to_be_bytes());
                    b.insert(&self.jobs, jk.clone(), job_record(*id, 1));
                    let mut dk = 0u64.to_be_bytes().to_vec();
                    dk.extend_from_slice(&jk);
                    b.remove(&self.due, dk);
                    jk.extend_from_slice(&1u32.to_be_bytes());
                    b.insert(
                        &self.attempts,
                        jk,
                        b"{\"status\":200,\"durationMs\":3}".to_vec(),
                    );
                }
            }
        }
        b.commit().map_err(|e| e.to_string())?;
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .map_err(|e| e.to_string())
    }
    fn disk_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

// ---------------------------------------------------------------- SQLite
struct Sqlite {
    conn: rusqlite::Connection,
    dir: PathBuf,
}
impl Sqlite {
    fn open(dir: &Path) -> Res<Self> {
        let dir = dir.join("sqlite");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let conn = rusqlite::Connection::open(dir.join("store.db")).map_err(|e| e.to_string())?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE events(id BLOB PRIMARY KEY, body BLOB) WITHOUT ROWID;
             CREATE TABLE jobs(event BLOB, dest INTEGER, rec BLOB, PRIMARY KEY(event, dest)) WITHOUT ROWID;
             CREATE TABLE due(due INTEGER, event BLOB, dest INTEGER, PRIMARY KEY(due, event, dest)) WITHOUT ROWID;
             CREATE TABLE idem(bridge TEXT, key TEXT, event BLOB, PRIMARY KEY(bridge, key)) WITHOUT ROWID;
             CREATE TABLE attempts(event BLOB, dest INTEGER, n INTEGER, rec BLOB, PRIMARY KEY(event, dest, n)) WITHOUT ROWID;",
        )
        .map_err(|e| e.to_string())?;
        Ok(Sqlite { conn, dir })
    }
}
impl Engine for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite (rusqlite, WAL, synchronous=FULL)"
    }
    fn apply(&mut self, ops: &[Op]) -> Res<()> {
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        for op in ops {
            match op {
                Op::Append { id, body } => {
                    let k = id.to_be_bytes();
                    tx.execute(
                        "INSERT INTO events VALUES (?1, ?2)",
                        rusqlite::params![&k[..], body],
                    )
                    .map_err(|e| e.to_string())?;
                    tx.execute(
                        "INSERT INTO jobs VALUES (?1, 0, ?2)",
                        rusqlite::params![&k[..], job_record(*id, 0)],
                    )
                    .map_err(|e| e.to_string())?;
                    tx.execute(
                        "INSERT INTO due VALUES (0, ?1, 0)",
                        rusqlite::params![&k[..]],
                    )
                    .map_err(|e| e.to_string())?;
                    tx.execute(
                        "INSERT INTO idem VALUES ('default/orders', ?1, ?2)",
                        rusqlite::params![format!("{id:x}"), &k[..]],
                    )
                    .map_err(|e| e.to_string())?;
                }
                Op::Complete { id } => {
                    let k = id.to_be_bytes();
                    tx.execute(
                        "UPDATE jobs SET rec = ?2 WHERE event = ?1 AND dest = 0",
                        rusqlite::params![&k[..], job_record(*id, 1)],
                    )
                    .map_err(|e| e.to_string())?;
                    tx.execute(
                        "DELETE FROM due WHERE due = 0 AND event = ?1 AND dest = 0",
                        rusqlite::params![&k[..]],
                    )
                    .map_err(|e| e.to_string())?;
                    tx.execute(
                        "INSERT INTO attempts VALUES (?1, 0, 1, ?2)",
                        rusqlite::params![&k[..], &b"{\"status\":200}"[..]],
                    )
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }
    fn disk_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

// ---------------------------------------------------------------- driver
type Request = (Op, mpsc::Sender<Res<()>>);

struct RunResult {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_batch: f64,
}

fn run_phase(
    engine: &mut dyn Engine,
    writers: usize,
    ops_per_writer: Vec<Vec<Op>>,
) -> Res<RunResult> {
    let (tx, rx) = mpsc::channel::<Request>();
    let total: usize = ops_per_writer.iter().map(Vec::len).sum();
    let start = Instant::now();
    let (lat, batches) = std::thread::scope(|s| -> Res<(Vec<Duration>, usize)> {
        let mut handles = Vec::new();
        for ops in ops_per_writer.into_iter().take(writers) {
            let tx = tx.clone();
            handles.push(s.spawn(move || -> Res<Vec<Duration>> {
                let mut lat = Vec::with_capacity(ops.len());
                for op in ops {
                    let (ack_tx, ack_rx) = mpsc::channel();
                    let t = Instant::now();
                    tx.send((op, ack_tx)).map_err(|e| e.to_string())?;
                    ack_rx.recv().map_err(|e| e.to_string())??;
                    lat.push(t.elapsed());
                }
                Ok(lat)
            }));
        }
        drop(tx);
        // The group-commit writer: block for one, drain the rest, one commit, ack all.
        let mut batches = 0;
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
                if batch.len() >= 512 {
                    break;
                }
            }
            let ops: Vec<Op> = batch
                .iter_mut()
                .map(|(op, _)| std::mem::replace(op, Op::Complete { id: 0 }))
                .collect();
            let res = engine.apply(&ops);
            batches += 1;
            for (_, ack) in batch {
                let _ = ack.send(res.clone());
            }
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "writer panicked".to_string())??);
        }
        Ok((all, batches))
    })?;
    let secs = start.elapsed().as_secs_f64();
    let mut lat = lat;
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    Ok(RunResult {
        per_sec: total as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        mean_batch: total as f64 / batches.max(1) as f64,
    })
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let events: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4000);
    let base = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/storebench"));
    let _ = std::fs::remove_dir_all(&base);
    println!("events per run: {events}, body 1 KiB, one fsync per group commit\n");
    println!(
        "| engine | writers | append/s | append p50 ms | append p99 ms | mean batch | complete/s | disk after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for writers in [1usize, 16, 64] {
        for which in 0..3 {
            let dir = base.join(format!("{which}-{writers}"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let mut engine: Box<dyn Engine> = match which {
                0 => Box::new(Redb::open(&dir)?),
                1 => Box::new(Fjall::open(&dir)?),
                _ => Box::new(Sqlite::open(&dir)?),
            };
            // Fewer events with one writer: every append waits for its own fsync.
            let n = if writers == 1 { events / 8 } else { events };
            let per = n / writers;
            let body = vec![b'x'; 1024];
            let appends: Vec<Vec<Op>> = (0..writers)
                .map(|w| {
                    (0..per)
                        .map(|i| Op::Append {
                            id: ((w as u128) << 64) | i as u128,
                            body: body.clone(),
                        })
                        .collect()
                })
                .collect();
            let a = run_phase(engine.as_mut(), writers, appends)?;
            let completes: Vec<Vec<Op>> = (0..writers)
                .map(|w| {
                    (0..per)
                        .map(|i| Op::Complete {
                            id: ((w as u128) << 64) | i as u128,
                        })
                        .collect()
                })
                .collect();
            let c = run_phase(engine.as_mut(), writers, completes)?;
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.0} | {:.1} MiB |",
                engine.name(),
                writers,
                a.per_sec,
                a.p50_ms,
                a.p99_ms,
                a.mean_batch,
                c.per_sec,
                engine.disk_bytes() as f64 / (1 << 20) as f64
            );
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
