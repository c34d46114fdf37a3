//! The shared store on PostgreSQL: any number of workers of one pool on one database.
//!
//! - **Schema per pool.** Every table lives in the pool's own schema (`search_path` is set
//!   on each connection), so pools of several namespaces can share a database and a
//!   worker never sees another pool's rows.
//! - **Migrations** are embedded, versioned and applied at start in one transaction under
//!   an advisory lock: two workers starting at once migrate once. A worker that finds a
//!   newer schema than it knows refuses to start.
//! - **Group commit.** Appends and finished attempts go to a few writer tasks; each takes
//!   what is waiting (up to [`BATCH`]) and runs it as one transaction, the statements of
//!   every operation pipelined on one connection, so a batch costs a handful of round
//!   trips and one commit. No future resolves before its transaction committed.
//! - **Claims.** A replica claims due jobs with `FOR UPDATE SKIP LOCKED` and holds them by
//!   a lease (`claimed_by`, `lease_until` by the database's clock), renewed while the
//!   attempt runs. A replica that dies leaves its leases to run out; another takes the
//!   jobs (at-least-once). New work wakes the other replicas with `NOTIFY`; they also poll.
//! - **Retention** drops whole day partitions of events, jobs and attempts when nothing in
//!   them is pending, and deletes row by row otherwise.
//!
//! See `docs/store.md` for the schema, sizing and what vacuum still has to do.

mod tls;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use futures::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};

use super::*;
use crate::sync::lock;

/// Migrations, in order. A migration is never edited once released: add the next one.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("001_init.sql")),
    (2, include_str!("002_event_index.sql")),
    (3, include_str!("003_breakers.sql")),
    (4, include_str!("004_subscriptions.sql")),
];

/// Operations one transaction takes at most.
const BATCH: usize = 256;
/// Writer tasks, each with its own transaction in flight.
const WRITERS: usize = 3;
/// The database's clock, in milliseconds since the epoch.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
const DAY_MS: u64 = 86_400_000;
/// Job columns, in the order [`job_from_row`] reads them.
const JOB_COLS: &str = "event, slot, bridge, destination, status, due_at, received_at, attempts, attempts_at_queue, last_error";
/// [`JOB_COLS`] of the `jobs` table aliased `j`.
const J_JOB_COLS: &str = "j.event, j.slot, j.bridge, j.destination, j.status, j.due_at, j.received_at, j.attempts, j.attempts_at_queue, j.last_error";
/// Event columns (without the body), in the order [`event_from_row`] reads them.
const EVENT_COLS: &str = "id, bridge, received_at, status, reason, record, children, body_bytes";
/// Jobs sort as the embedded store sorts them: by slot as an unsigned number (steps last).
const SLOT_ORDER: &str = "(slot::bigint & 4294967295)";

/// How to reach the database and how to use it.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// A libpq-style URL (`postgres://user:password@host:port/db?sslmode=verify-full`).
    pub url: String,
    /// The pool's schema: every table lives there.
    pub schema: String,
    /// Connections at most.
    pub pool_size: usize,
    /// Longest a statement may run.
    pub statement_timeout: Duration,
    /// How long a claim holds a job without being renewed.
    pub lease: Duration,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: schema.into(),
            pool_size: 16,
            statement_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
        }
    }
}

/// A schema name from anything: lower-case letters, digits and `_`, at most 48 bytes,
/// never starting with a digit or `pg_`.
pub fn schema_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) || s.starts_with("pg_") {
        s.insert_str(0, "cw_");
    }
    s.truncate(48);
    s
}

/// The schema of a pool: `causeway_<namespace>_<pool>`; `causeway_local` for `causeway up`
/// (pool `local`, no namespace).
pub fn pool_schema(namespace: &str, pool: &str) -> String {
    if namespace.is_empty() {
        schema_name(&format!("causeway_{pool}"))
    } else {
        schema_name(&format!("causeway_{namespace}_{pool}"))
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write that waits for the next batch.
enum Op {
    Append(Box<NewEvent>, Reply<Appended>),
    Finish(Box<JobUpdate>, Reply<JobRecord>),
}

impl Op {
    /// Lock order inside a batch: finishes by event id, then appends by idempotency key,
    /// so that two replicas' batches take row locks in the same order.
    fn order(&self) -> (u8, Vec<u8>) {
        match self {
            Op::Finish(u, _) => (0, u.job.event.as_bytes().to_vec()),
            Op::Append(ev, _) => match &ev.idempotency {
                Some((k, _)) => (
                    1,
                    [ev.record.bridge.as_bytes(), b"\0", k.as_bytes()].concat(),
                ),
                None => (2, Vec::new()),
            },
        }
    }
}

/// Why one operation of a batch failed: its own outcome (the transaction goes on), or
/// the database's (the transaction is lost).
enum OpError {
    Outcome(StoreError),
    Sql(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for OpError {
    fn from(e: tokio_postgres::Error) -> Self {
        OpError::Sql(e)
    }
}

struct Core {
    pool: Pool,
    pg: tokio_postgres::Config,
    tls: tls::Tls,
    schema: String,
    /// `host:port/db`, for logs and errors: never the user or password.
    location: String,
    /// Who claims: this process.
    me: String,
    lease_ms: i64,
    channel: String,
    /// Migrations applied: until then every operation answers unavailable.
    ready: AtomicBool,
    healthy: AtomicBool,
    /// Reported unreachable, and not reported back yet (one log line each way).
    lost: AtomicBool,
    /// The sum of the events' sizes, as last counted (see `disk_bytes`).
    size: AtomicU64,
    kv_quota: AtomicU64,
    /// Day partitions known to exist.
    days: Mutex<HashSet<u64>>,
    /// Jobs this process claimed and has not finished or released.
    claimed: Mutex<HashSet<JobKey>>,
    waker: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

/// The shared store. See the module docs.
pub struct PostgresStore {
    core: Arc<Core>,
    writes: mpsc::Sender<Op>,
    rt: tokio::runtime::Handle,
    _stop: Arc<DropGuard>,
}

impl Clone for PostgresStore {
    fn clone(&self) -> Self {
        PostgresStore {
            core: self.core.clone(),
            writes: self.writes.clone(),
            rt: self.rt.clone(),
            _stop: self._stop.clone(),
        }
    }
}

fn db_err(core: &Core, op: &'static str, e: tokio_postgres::Error) -> StoreError {
    if is_connection_error(&e) {
        mark_unhealthy(core, &e);
    }
    StoreError::Database {
        op,
        location: core.location.clone(),
        source: Arc::new(e),
    }
}

fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 (connection exception), 57P (operator intervention: shutdown, crash).
        Some(c) => c.code().starts_with("08") || c.code().starts_with("57P"),
        // No SQLSTATE: the error came from the connection itself (I/O, TLS, timeout).
        None => true,
    }
}

fn mark_unhealthy(core: &Core, e: &dyn std::fmt::Display) {
    core.healthy.store(false, Ordering::SeqCst);
    if !core.lost.swap(true, Ordering::SeqCst) {
        warn!(database = %core.location, error = %e, "postgres unreachable: new events are refused (503) until it is back");
    }
}

fn mark_healthy(core: &Core) {
    core.healthy.store(true, Ordering::SeqCst);
    if core.lost.swap(false, Ordering::SeqCst) {
        info!(database = %core.location, "postgres reachable again");
    }
}

fn unavailable(core: &Core, why: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        location: core.location.clone(),
        message: why.to_string(),
    }
}

impl Core {
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if !self.ready.load(Ordering::SeqCst) {
            return Err(unavailable(self, "the schema is not migrated yet"));
        }
        match self.pool.get().await {
            Ok(c) => Ok(c),
            Err(e) => {
                mark_unhealthy(self, &e);
                Err(unavailable(self, e))
            }
        }
    }

    fn wake_local(&self) {
        if let Some(w) = lock(&self.waker).clone() {
            w();
        }
    }
}

/// Milliseconds from a UUID v7/v8 id's first 48 bits.
fn id_ms(id: EventId) -> u64 {
    let b = id.as_bytes();
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// The lowest id of a day.
fn day_floor(day: u64) -> EventId {
    let ms = day * DAY_MS;
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    EventId::from_bytes(b)
}

fn day_name(day: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(day as i64);
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn slot(index: u32) -> i32 {
    index as i32
}

fn job_status(s: &str) -> Option<JobStatus> {
    Some(match s {
        "pending" => JobStatus::Pending,
        "retrying" => JobStatus::Retrying,
        "delivered" => JobStatus::Delivered,
        "dead" => JobStatus::Dead,
        "paused" => JobStatus::Paused,
        _ => return None,
    })
}

/// A job row, or None when its status is not one this version knows (a foreign or torn
/// write): such a job is reported by `due_jobs` and passed over by everything else.
fn job_from_row(r: &Row, at: usize) -> Option<JobRecord> {
    let event: EventId = r.get(at);
    let index = r.get::<_, i32>(at + 1) as u32;
    let status = job_status(r.get(at + 4))?;
    Some(JobRecord {
        event,
        target: JobTarget::from_slot(index, r.get(at + 3)),
        bridge: r.get(at + 2),
        status,
        due_at_ms: u(r.get(at + 5)),
        received_at_ms: u(r.get(at + 6)),
        attempts: r.get::<_, i32>(at + 7) as u32,
        attempts_at_queue: r.get::<_, i32>(at + 8) as u32,
        last_error: r.get(at + 9),
    })
}

fn event_from_row(r: &Row) -> Result<EventRecord, StoreError> {
    let raw: serde_json::Value = r.get(5);
    let mut rec: EventRecord = serde_json::from_value(raw).map_err(|e| StoreError::Corrupt {
        table: "events",
        message: e.to_string(),
    })?;
    rec.id = r.get(0);
    rec.bridge = r.get(1);
    rec.received_at_ms = u(r.get(2));
    rec.status = EventStatus::parse(r.get(3)).ok_or_else(|| StoreError::Corrupt {
        table: "events",
        message: format!("unknown status {:?}", r.get::<_, String>(3)),
    })?;
    rec.reason = r.get(4);
    rec.children = r.get(6);
    rec.body_bytes = u(r.get(7));
    Ok(rec)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(v).map_err(|e| StoreError::Engine {
        op: "encode",
        message: e.to_string(),
    })
}

impl PostgresStore {
    /// Connect, migrate and start the background tasks. A database that cannot be reached
    /// yet is not an error: the store starts unhealthy (every operation answers
    /// unavailable, readiness fails) and migrates as soon as the database answers. A
    /// schema newer than this worker knows is an error.
    pub async fn open(opts: PostgresOptions) -> Result<Self, StoreError> {
        let (mut pg, tls) = tls::parse(&opts.url).map_err(|message| StoreError::Open {
            path: "postgres".into(),
            message,
        })?;
        let location = location(&pg);
        let schema = schema_name(&opts.schema);
        pg.options(format!(
            "-c search_path={schema} -c statement_timeout={}",
            opts.statement_timeout.as_millis()
        ));
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(5));
        }
        pg.application_name("causeway");
        let manager = Manager::from_config(
            pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let wait = Some(opts.statement_timeout.min(Duration::from_secs(10)));
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(wait)
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Open {
                path: location.clone(),
                message: e.to_string(),
            })?;
        let core = Arc::new(Core {
            pool,
            pg,
            tls,
            channel: format!("{schema}_work"),
            schema,
            location,
            me: format!(
                "{}-{}-{}",
                hostname(),
                std::process::id(),
                &uuid::Uuid::now_v7().simple().to_string()[24..]
            ),
            lease_ms: opts.lease.as_millis().max(1000) as i64,
            ready: AtomicBool::new(false),
            healthy: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            size: AtomicU64::new(0),
            kv_quota: AtomicU64::new(super::embedded::DEFAULT_KV_QUOTA_BYTES),
            days: Mutex::new(HashSet::new()),
            claimed: Mutex::new(HashSet::new()),
            waker: Mutex::new(None),
        });
        let stop = CancellationToken::new();
        match migrate(&core).await {
            Ok(()) => {}
            Err(e @ StoreError::Open { .. }) => return Err(e),
            Err(e) => {
                warn!(database = %core.location, error = %e, "postgres not reachable at start: the worker waits for it (not ready until then)");
            }
        }
        let (writes, rx) = mpsc::channel::<Op>(BATCH * 8);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WRITERS {
            tokio::spawn(writer(core.clone(), rx.clone()));
        }
        tokio::spawn(maintain(core.clone(), stop.clone()));
        tokio::spawn(listen(core.clone(), stop.clone()));
        Ok(PostgresStore {
            core,
            writes,
            rt: tokio::runtime::Handle::current(),
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// `host:port/db` of the database.
    pub fn location(&self) -> &str {
        &self.core.location
    }

    /// The schema this store uses.
    pub fn schema(&self) -> &str {
        &self.core.schema
    }

    /// The store's own pool of connections, for tests and benchmarks that inspect it.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.core.client().await
    }

    pub fn set_kv_quota(&self, bytes: u64) {
        self.core.kv_quota.store(bytes, Ordering::Relaxed);
    }

    /// Run `f` on the runtime the store was opened on, so that its futures can be awaited
    /// anywhere (the plugin host blocks on them from its own threads).
    fn run<T, F>(&self, f: impl FnOnce(Arc<Core>) -> F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let task = self.rt.spawn(f(self.core.clone()));
        Box::pin(async move {
            task.await.unwrap_or_else(|e| {
                Err(StoreError::Engine {
                    op: "task",
                    message: e.to_string(),
                })
            })
        })
    }

    fn write<T: Send + 'static>(&self, op: impl FnOnce(Reply<T>) -> Op) -> StoreFuture<T> {
        let (tx, rx) = oneshot::channel();
        let sent = self.writes.try_send(op(tx));
        let writes = self.writes.clone();
        Box::pin(async move {
            match sent {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(op)) => {
                    writes.send(op).await.map_err(|_| StoreError::Closed)?;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "worker".into())
}

fn location(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", pg.get_dbname().unwrap_or("postgres"))
}

/// An advisory-lock key for `what` in `schema`.
fn lock_key(schema: &str, what: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("causeway:{schema}:{what}").as_bytes());
    i64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]))
}

/// Apply the migrations this worker knows and the schema lacks, once, under an advisory
/// lock. A schema newer than this worker is [`StoreError::Open`].
async fn migrate(core: &Core) -> Result<(), StoreError> {
    let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    let mut client = core.pool.get().await.map_err(|e| unavailable(core, e))?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_err(core, "migrate", e))?;
    let err = |e| db_err(core, "migrate", e);
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(&core.schema, "migrate")],
    )
    .await
    .map_err(err)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now());",
        s = core.schema
    ))
    .await
    .map_err(err)?;
    let have: i32 = tx
        .query_one(
            &format!(
                "SELECT coalesce(max(version), 0) FROM {}.schema_migrations",
                core.schema
            ),
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    if have > latest {
        return Err(StoreError::Open {
            path: format!("{} schema {}", core.location, core.schema),
            message: format!(
                "the database schema is at version {have}, newer than this worker knows ({latest}): \
                 run a worker of the newer version, or point this one at another schema"
            ),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
        info!(database = %core.location, schema = %core.schema, version, "applying store migration");
        tx.batch_execute(&format!("SET LOCAL search_path = {};\n{sql}", core.schema))
            .await
            .map_err(err)?;
        tx.execute(
            &format!(
                "INSERT INTO {}.schema_migrations (version) VALUES ($1)",
                core.schema
            ),
            &[version],
        )
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    core.ready.store(true, Ordering::SeqCst);
    mark_healthy(core);
    Ok(())
}

/// Make sure the day partitions of these ids exist.
async fn ensure_days(core: &Core, ids: impl Iterator<Item = EventId>) -> Result<(), StoreError> {
    let missing: Vec<u64> = {
        let known = lock(&core.days);
        let mut v: Vec<u64> = ids
            .map(|id| id_ms(id) / DAY_MS)
            .filter(|d| !known.contains(d))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if missing.is_empty() {
        return Ok(());
    }
    let mut client = core.client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_err(core, "partition", e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(&core.schema, "partitions")],
    )
    .await
    .map_err(|e| db_err(core, "partition", e))?;
    for day in &missing {
        let (lo, hi, name) = (day_floor(*day), day_floor(day + 1), day_name(*day));
        let mut sql = String::new();
        for t in ["events", "jobs", "attempts"] {
            sql.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {t}_{name} PARTITION OF {t} FOR VALUES FROM ('{lo}') TO ('{hi}');\n"
            ));
        }
        tx.batch_execute(&sql)
            .await
            .map_err(|e| db_err(core, "partition", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| db_err(core, "partition", e))?;
    lock(&core.days).extend(missing);
    Ok(())
}

// ------------------------------------------------------------------ background tasks

/// Take what waits and run it as one transaction, until the store is dropped.
async fn writer(core: Arc<Core>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Op>>>) {
    loop {
        let mut ops = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            ops.push(first);
            while ops.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
        }
        run_batch(&core, ops).await;
    }
}

/// What one operation of a batch gives back.
enum Done {
    Appended(Appended, u64),
    Finished(JobRecord),
}

async fn run_batch(core: &Core, mut ops: Vec<Op>) {
    ops.sort_by_key(Op::order);
    // Partitions first: their DDL must not share the batch's transaction.
    let ids = ops.iter().flat_map(|op| -> Vec<EventId> {
        match op {
            Op::Append(ev, _) => vec![ev.record.id],
            Op::Finish(u, _) => match &u.next {
                Next::FannedOut { children } => children.iter().map(|c| c.record.id).collect(),
                _ => Vec::new(),
            },
        }
    });
    if let Err(e) = ensure_days(core, ids.collect::<Vec<_>>().into_iter()).await {
        for op in ops {
            reply(op, Err(e.clone()));
        }
        return;
    }
    match try_batch(core, &ops).await {
        Ok(results) => {
            mark_healthy(core);
            for (op, r) in ops.into_iter().zip(results) {
                deliver(core, op, r);
            }
            core.wake_local();
        }
        Err(BatchError::Lost(e)) => {
            for op in ops {
                reply(op, Err(e.clone()));
            }
        }
        Err(BatchError::Retry) if ops.len() > 1 => {
            // One operation broke the transaction: run each alone, so that only its own
            // caller hears of it.
            for op in ops {
                match try_batch(core, std::slice::from_ref(&op)).await {
                    Ok(mut r) => deliver(core, op, r.remove(0)),
                    Err(BatchError::Lost(e)) => reply(op, Err(e)),
                    Err(BatchError::Retry) => {
                        reply(op, Err(unavailable(core, "the transaction failed")))
                    }
                }
            }
            core.wake_local();
        }
        Err(BatchError::Retry) => {
            let e = unavailable(core, "the transaction failed");
            for op in ops {
                reply(op, Err(e.clone()));
            }
        }
    }
}

fn deliver(core: &Core, op: Op, r: Result<Done, StoreError>) {
    match (op, r) {
        (Op::Append(_, tx), Ok(Done::Appended(a, size))) => {
            core.size.fetch_add(size, Ordering::Relaxed);
            let _ = tx.send(Ok(a));
        }
        (Op::Finish(u, tx), Ok(Done::Finished(j))) => {
            lock(&core.claimed).remove(&u.job);
            let _ = tx.send(Ok(j));
        }
        (op, Err(e)) => reply(op, Err(e)),
        (op, Ok(_)) => reply(
            op,
            Err(StoreError::Engine {
                op: "batch",
                message: "mismatched result".into(),
            }),
        ),
    }
}

fn reply(op: Op, r: Result<std::convert::Infallible, StoreError>) {
    let Err(e) = r;
    match op {
        Op::Append(_, tx) => {
            let _ = tx.send(Err(e));
        }
        Op::Finish(_, tx) => {
            let _ = tx.send(Err(e));
        }
    }
}

enum BatchError {
    /// Nothing committed and the transaction cannot tell which operation broke it.
    Retry,
    /// The database is gone or the commit failed: every operation failed.
    Lost(StoreError),
}

async fn try_batch(core: &Core, ops: &[Op]) -> Result<Vec<Result<Done, StoreError>>, BatchError> {
    let mut client = core.client().await.map_err(BatchError::Lost)?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| BatchError::Lost(db_err(core, "begin", e)))?;
    let results = join_all(ops.iter().map(|op| apply(&tx, op))).await;
    let mut out = Vec::with_capacity(results.len());
    let mut broken = None;
    let mut notify = false;
    for r in results {
        match r {
            Ok((done, wake)) => {
                notify |= wake;
                out.push(Ok(done));
            }
            Err(OpError::Outcome(e)) => out.push(Err(e)),
            Err(OpError::Sql(e)) => {
                broken = Some(e);
                out.push(Err(StoreError::Closed));
            }
        }
    }
    if let Some(e) = broken {
        debug!(error = %e, "batch rolled back");
        if is_connection_error(&e) {
            return Err(BatchError::Lost(db_err(core, "write", e)));
        }
        return Err(BatchError::Retry);
    }
    if notify {
        tx.execute("SELECT pg_notify($1, '')", &[&core.channel])
            .await
            .map_err(|e| BatchError::Lost(db_err(core, "notify", e)))?;
    }
    tx.commit()
        .await
        .map_err(|e| BatchError::Lost(db_err(core, "commit", e)))?;
    Ok(out)
}

/// One operation inside the batch's transaction; true when it queued work.
async fn apply(tx: &Transaction<'_>, op: &Op) -> Result<(Done, bool), OpError> {
    match op {
        Op::Append(ev, _) => {
            let (a, size) = append_in(tx, ev).await?;
            let wake = !a.duplicate && !ev.jobs.is_empty();
            Ok((Done::Appended(a, size), wake))
        }
        Op::Finish(u, _) => {
            let (j, wake) = finish_in(tx, u).await?;
            Ok((Done::Finished(j), wake))
        }
    }
}

async fn append_in(tx: &Transaction<'_>, ev: &NewEvent) -> Result<(Appended, u64), OpError> {
    let id = ev.record.id;
    let bridge = &ev.record.bridge;
    if let Some((key, expires)) = &ev.idempotency {
        let st = tx
            .prepare_cached(
                "INSERT INTO idempotency AS i (bridge, key, event, expires) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (bridge, key) DO UPDATE SET event = EXCLUDED.event, expires = EXCLUDED.expires
                 WHERE i.expires <= $5
                 RETURNING i.event",
            )
            .await?;
        let rows = tx
            .query(
                &st,
                &[bridge, key, &id, &i(*expires), &i(ev.record.received_at_ms)],
            )
            .await?;
        if rows.is_empty() {
            let first: EventId = tx
                .query_one(
                    "SELECT event FROM idempotency WHERE bridge = $1 AND key = $2",
                    &[bridge, key],
                )
                .await?
                .get(0);
            return Ok((
                Appended {
                    id: first,
                    duplicate: true,
                },
                0,
            ));
        }
    }
    let size = insert_event(tx, ev, false).await?.unwrap_or(0);
    Ok((
        Appended {
            id,
            duplicate: false,
        },
        size,
    ))
}

/// Insert an event with its jobs; with `keep_existing`, an event whose id exists is left
/// as it is (None). Returns the size it counts.
async fn insert_event(
    tx: &Transaction<'_>,
    ev: &NewEvent,
    keep_existing: bool,
) -> Result<Option<u64>, OpError> {
    let r = &ev.record;
    let record = encode(r).map_err(OpError::Outcome)?;
    let size = (ev.body.len() + record.to_string().len()) as u64;
    let sql = if keep_existing {
        "INSERT INTO events (id, bridge, received_at, status, reason, record, children, body_bytes, body, size, webhook_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
    } else {
        "INSERT INTO events (id, bridge, received_at, status, reason, record, children, body_bytes, body, size, webhook_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    };
    let st = tx.prepare_cached(sql).await?;
    let body: &[u8] = &ev.body;
    let webhook_id = r.webhook_id();
    let params: [&(dyn ToSql + Sync); 11] = [
        &r.id,
        &r.bridge,
        &i(r.received_at_ms),
        &r.status.as_str(),
        &r.reason,
        &record,
        &r.children,
        &i(r.body_bytes),
        &body,
        &i(size),
        &webhook_id,
    ];
    if keep_existing {
        if tx.execute(&st, &params).await? == 0 {
            return Ok(None);
        }
        insert_jobs(tx, r.id, &r.bridge, r.received_at_ms, &ev.jobs).await?;
    } else {
        // Pipelined: the event and its jobs go out together.
        let (a, b) = futures::join!(
            tx.execute(&st, &params),
            insert_jobs(tx, r.id, &r.bridge, r.received_at_ms, &ev.jobs)
        );
        a?;
        b?;
    }
    Ok(Some(size))
}

async fn insert_jobs(
    tx: &Transaction<'_>,
    event: EventId,
    bridge: &str,
    received_at_ms: u64,
    jobs: &[NewJob],
) -> Result<(), OpError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let slots: Vec<i32> = jobs.iter().map(|j| slot(j.target.slot())).collect();
    let names: Vec<&str> = jobs
        .iter()
        .map(|j| j.target.destination_name().unwrap_or_default())
        .collect();
    let due: Vec<i64> = jobs.iter().map(|j| i(j.due_at_ms)).collect();
    let ins_jobs = tx
        .prepare_cached(
            "INSERT INTO jobs (event, slot, bridge, destination, status, due_at, received_at)
             SELECT $1, s, $2, d, 'pending', t, $3 FROM unnest($4::int4[], $5::text[], $6::int8[]) AS x(s, d, t)",
        )
        .await?;
    let ins_queue = tx
        .prepare_cached(
            "INSERT INTO queue (event, slot, bridge, destination, due_at)
             SELECT $1, s, $2, d, t FROM unnest($3::int4[], $4::text[], $5::int8[]) AS x(s, d, t)",
        )
        .await?;
    let recv = i(received_at_ms);
    let bridge = bridge.to_string();
    let p_jobs: [&(dyn ToSql + Sync); 6] = [&event, &bridge, &recv, &slots, &names, &due];
    let p_queue: [&(dyn ToSql + Sync); 5] = [&event, &bridge, &slots, &names, &due];
    let (a, b) = futures::join!(
        tx.execute(&ins_jobs, &p_jobs),
        tx.execute(&ins_queue, &p_queue)
    );
    a?;
    b?;
    Ok(())
}

/// The event's status from its jobs (as the embedded store computes it), and its reason.
const REFRESH: &str = "
WITH s AS (
    SELECT count(*) FILTER (WHERE status IN ('pending', 'retrying', 'paused')) AS open,
           count(*) FILTER (WHERE status = 'dead') AS dead,
           count(*) FILTER (WHERE status NOT IN ('pending', 'retrying', 'paused', 'dead', 'delivered')) AS bad,
           count(*) AS total
    FROM jobs WHERE event = $1),
n AS (
    SELECT CASE WHEN e.status = 'filtered' THEN 'filtered'
                WHEN s.open > 0 OR s.bad > 0 THEN 'pending'
                WHEN s.dead > 0 OR (s.total = 0 AND e.status = 'dead') THEN 'dead'
                ELSE 'delivered' END AS status
    FROM events e, s WHERE e.id = $1)
UPDATE events e SET status = n.status,
    reason = CASE WHEN $2::text IS NOT NULL THEN $2::text
                  WHEN n.status = 'delivered' THEN NULL
                  ELSE e.reason END
FROM n WHERE e.id = $1 AND (e.status <> n.status OR $2::text IS NOT NULL)";

async fn refresh(
    tx: &Transaction<'_>,
    event: EventId,
    reason: Option<&str>,
) -> Result<(), OpError> {
    let st = tx.prepare_cached(REFRESH).await?;
    tx.execute(&st, &[&event, &reason]).await?;
    Ok(())
}

async fn queue_put(tx: &Transaction<'_>, job: &JobRecord) -> Result<(), tokio_postgres::Error> {
    let st = tx
        .prepare_cached(
            "INSERT INTO queue (event, slot, bridge, destination, due_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (event, slot) DO UPDATE SET due_at = EXCLUDED.due_at, claimed_by = NULL, lease_until = NULL",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &job.event,
            &slot(job.slot()),
            &job.bridge,
            &job.target.destination_name().unwrap_or_default(),
            &i(job.due_at_ms),
        ],
    )
    .await?;
    Ok(())
}

async fn queue_delete(tx: &Transaction<'_>, key: JobKey) -> Result<(), tokio_postgres::Error> {
    let st = tx
        .prepare_cached("DELETE FROM queue WHERE event = $1 AND slot = $2")
        .await?;
    tx.execute(&st, &[&key.event, &slot(key.index)]).await?;
    Ok(())
}

async fn finish_in(tx: &Transaction<'_>, u: &JobUpdate) -> Result<(JobRecord, bool), OpError> {
    let ev = u.job.event;
    let s = slot(u.job.index);
    // The event's row lock serialises the finishes of its jobs across replicas, so that
    // the status computed from its jobs sees every sibling.
    let lock = tx
        .prepare_cached("SELECT 1 FROM events WHERE id = $1 FOR UPDATE")
        .await?;
    let (status, due, keep_error, error): (&str, Option<i64>, bool, Option<String>) = {
        let attempt_error = u.attempt.as_ref().map(|a| {
            a.error
                .clone()
                .or_else(|| a.status_code.map(|c| format!("status {c}")))
        });
        let keep = attempt_error.is_none();
        let err = attempt_error.flatten();
        match &u.next {
            Next::Delivered => ("delivered", None, false, None),
            Next::Retry { due_at_ms } => ("retrying", Some(i(*due_at_ms)), keep, err),
            Next::Dead { reason } => ("dead", None, false, Some(reason.clone())),
            Next::Paused => ("paused", None, keep, err),
            Next::StepsDone { .. } | Next::Filtered { .. } | Next::FannedOut { .. } => {
                ("delivered", None, keep, err)
            }
        }
    };
    let update = tx
        .prepare_cached(&format!(
            "UPDATE jobs SET attempts = attempts + $3, status = $4, due_at = coalesce($5, due_at),
                 last_error = CASE WHEN $6 THEN last_error ELSE $7 END
             WHERE event = $1 AND slot = $2 RETURNING {JOB_COLS}"
        ))
        .await?;
    let inc: i32 = i32::from(u.attempt.is_some());
    let p_lock: [&(dyn ToSql + Sync); 1] = [&ev];
    let p_update: [&(dyn ToSql + Sync); 7] = [&ev, &s, &inc, &status, &due, &keep_error, &error];
    let (locked, row) = futures::join!(
        tx.query_opt(&lock, &p_lock),
        tx.query_opt(&update, &p_update)
    );
    locked?;
    let Some(row) = row? else {
        return Err(OpError::Outcome(StoreError::NotFound(format!(
            "job {}#{}",
            u.job.event, u.job.index
        ))));
    };
    let job = job_from_row(&row, 0).ok_or_else(|| {
        OpError::Outcome(StoreError::Corrupt {
            table: "jobs",
            message: "unknown status".into(),
        })
    })?;
    let mut wake = job.status.queued();
    let attempt = async {
        if let Some(a) = &u.attempt {
            let st = tx
                .prepare_cached(
                    "INSERT INTO attempts (event, slot, n, record) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            let rec = serde_json::to_value(a).unwrap_or_default();
            tx.execute(&st, &[&ev, &s, &(job.attempts as i32), &rec])
                .await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let queue = async {
        if job.status.queued() {
            queue_put(tx, &job).await
        } else {
            queue_delete(tx, u.job).await
        }
    };
    let (a, q) = futures::join!(attempt, queue);
    a?;
    q?;
    let mut reason: Option<String> = None;
    match &u.next {
        Next::Dead { reason: r } => reason = Some(r.clone()),
        Next::Paused => {
            let now = u.attempt.as_ref().map(|a| a.at_ms).unwrap_or_else(now_ms);
            tx.execute(
                "INSERT INTO paused (bridge, destination, since) VALUES ($1, $2, $3)
                 ON CONFLICT (bridge, destination) DO UPDATE SET since = EXCLUDED.since",
                &[
                    &job.bridge,
                    &job.target.destination_name().unwrap_or_default(),
                    &i(now),
                ],
            )
            .await?;
        }
        Next::StepsDone { body, jobs } => {
            let b: &[u8] = body;
            let st = tx
                .prepare_cached(
                    "UPDATE events SET size = size - octet_length(body) + octet_length($2::bytea),
                         body = $2, body_bytes = $3 WHERE id = $1",
                )
                .await?;
            let len = b.len() as i64;
            let params: [&(dyn ToSql + Sync); 3] = [&ev, &b, &len];
            let (x, y) = futures::join!(
                tx.execute(&st, &params),
                insert_jobs(tx, ev, &job.bridge, job.received_at_ms, jobs)
            );
            x?;
            y?;
            wake |= !jobs.is_empty();
        }
        Next::FannedOut { children } => {
            for child in children {
                if insert_event(tx, child, true).await?.is_some() {
                    wake |= !child.jobs.is_empty();
                }
            }
            let ids: Vec<EventId> = children.iter().map(|c| c.record.id).collect();
            tx.execute(
                "UPDATE events SET children = $2 WHERE id = $1",
                &[&ev, &ids],
            )
            .await?;
            reason = Some(format!("fanned out into {} events", children.len()));
        }
        Next::Filtered { reason: r } => {
            tx.execute(
                "UPDATE events SET status = 'filtered', reason = $2 WHERE id = $1",
                &[&ev, r],
            )
            .await?;
        }
        Next::Delivered | Next::Retry { .. } => {}
    }
    refresh(tx, ev, reason.as_deref()).await?;
    Ok((job, wake))
}

/// Renew leases, keep partitions ahead, recount the size, probe a lost database.
async fn maintain(core: Arc<Core>, stop: CancellationToken) {
    let lease_every = Duration::from_millis((core.lease_ms / 3).max(300) as u64);
    let mut last_size = std::time::Instant::now() - Duration::from_secs(3600);
    let mut last_days = last_size;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(lease_every.min(Duration::from_secs(2))) => {}
        }
        if !core.ready.load(Ordering::SeqCst) {
            match migrate(&core).await {
                Ok(()) => core.wake_local(),
                Err(e @ StoreError::Open { .. }) => {
                    warn!(error = %e, "the store cannot start");
                }
                Err(_) => continue,
            }
        }
        if !core.healthy.load(Ordering::SeqCst) {
            match core.pool.get().await {
                Ok(c) if c.simple_query("SELECT 1").await.is_ok() => {
                    mark_healthy(&core);
                    core.wake_local();
                }
                _ => continue,
            }
        }
        let keys: Vec<JobKey> = lock(&core.claimed).iter().copied().collect();
        if !keys.is_empty()
            && let Ok(c) = core.client().await
        {
            let events: Vec<EventId> = keys.iter().map(|k| k.event).collect();
            let slots: Vec<i32> = keys.iter().map(|k| slot(k.index)).collect();
            let r = c
                .execute(
                    &format!(
                        "UPDATE queue q SET lease_until = {DB_NOW} + $2
                         FROM unnest($3::uuid[], $4::int4[]) AS k(e, s)
                         WHERE q.event = k.e AND q.slot = k.s AND q.claimed_by = $1"
                    ),
                    &[&core.me, &core.lease_ms, &events, &slots],
                )
                .await;
            if let Err(e) = r {
                let _ = db_err(&core, "renew leases", e);
            }
        }
        if last_days.elapsed() > Duration::from_secs(3600) {
            // Today's and tomorrow's partitions, before the first event needs them.
            let today = now_ms() / DAY_MS;
            if ensure_days(&core, [day_floor(today), day_floor(today + 1)].into_iter())
                .await
                .is_ok()
            {
                last_days = std::time::Instant::now();
            }
        }
        if last_size.elapsed() > Duration::from_secs(30) {
            if let Ok(n) = total_size(&core).await {
                core.size.store(n, Ordering::Relaxed);
            }
            last_size = std::time::Instant::now();
        }
    }
}

async fn total_size(core: &Core) -> Result<u64, StoreError> {
    let c = core.client().await?;
    let row = c
        .query_one("SELECT coalesce(sum(size), 0)::bigint FROM events", &[])
        .await
        .map_err(|e| db_err(core, "size", e))?;
    Ok(u(row.get(0)))
}

/// LISTEN for work queued by other replicas and wake the scheduler; reconnect when the
/// connection drops.
async fn listen(core: Arc<Core>, stop: CancellationToken) {
    use futures::StreamExt;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let connected = match &core.tls {
            tls::Tls::None => core
                .pg
                .connect(tokio_postgres::NoTls)
                .await
                .map(|(c, conn)| (c, messages(conn))),
            tls::Tls::Rustls(t) => core
                .pg
                .connect(t.clone())
                .await
                .map(|(c, conn)| (c, messages(conn))),
        };
        let Ok((client, mut messages)) = connected else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
            }
        };
        let listening = async {
            client
                .batch_execute(&format!("LISTEN {}", core.channel))
                .await
        };
        // The connection must be polled for the LISTEN to complete.
        let mut listening = Box::pin(listening);
        let ok = loop {
            tokio::select! {
                r = &mut listening => break r.is_ok(),
                m = messages.next() => if m.is_none() { break false },
            }
        };
        drop(listening);
        if ok {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    m = messages.next() => match m {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => core.wake_local(),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
        }
        drop(client);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// A connection's messages (notifications), as a stream that also drives the connection.
fn messages<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
) -> futures::stream::BoxStream<'static, Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(futures::stream::poll_fn(move |cx| conn.poll_message(cx)))
}

// ------------------------------------------------------------------ the trait

/// Jobs due at `now`, with their queue due time, oldest first (`limit` rows at most).
async fn due_rows(core: &Core, now: u64, limit: i64) -> Result<Vec<Row>, StoreError> {
    let c = core.client().await?;
    let st = c
        .prepare_cached(&format!(
            "SELECT q.due_at, {cols} FROM queue q JOIN jobs j ON j.event = q.event AND j.slot = q.slot
             WHERE q.due_at <= $1 AND (q.lease_until IS NULL OR q.lease_until < {DB_NOW})
             ORDER BY q.due_at, q.event, (q.slot::bigint & 4294967295) LIMIT $2",
            cols = J_JOB_COLS
        ))
        .await
        .map_err(|e| db_err(core, "due", e))?;
    c.query(&st, &[&i(now), &limit])
        .await
        .map_err(|e| db_err(core, "due", e))
}

async fn next_due(core: &Core, now: u64) -> Result<Option<u64>, StoreError> {
    let c = core.client().await?;
    let row = c
        .query_one(
            "SELECT min(due_at) FROM queue WHERE due_at > $1",
            &[&i(now)],
        )
        .await
        .map_err(|e| db_err(core, "due", e))?;
    Ok(row.get::<_, Option<i64>>(0).map(u))
}

impl Store for PostgresStore {
    fn append(&self, event: NewEvent) -> StoreFuture<Appended> {
        self.write(|tx| Op::Append(Box::new(event), tx))
    }

    fn due_jobs(
        &self,
        now_ms: u64,
        limit: usize,
        claimed: JobFilter<JobKey>,
        hold: JobFilter<JobRecord>,
    ) -> StoreFuture<DueJobs> {
        self.run(move |core| async move {
            let fetch = (limit + 1024) as i64;
            let rows = due_rows(&core, now_ms, fetch).await?;
            let mut out = DueJobs::default();
            let exhausted = (rows.len() as i64) < fetch;
            let mut cut = false;
            for r in &rows {
                let at = u(r.get(0));
                let key = JobKey {
                    event: r.get(1),
                    index: r.get::<_, i32>(2) as u32,
                };
                if claimed(&key) {
                    continue;
                }
                let Some(job) = job_from_row(r, 1) else {
                    out.undecodable.push((at, key));
                    continue;
                };
                if hold(&job) {
                    continue;
                }
                if out.jobs.len() >= limit {
                    cut = true;
                    break;
                }
                out.jobs.push(job);
            }
            out.next_due_ms = if cut || !exhausted {
                Some(now_ms)
            } else {
                next_due(&core, now_ms).await?
            };
            Ok(out)
        })
    }

    fn claim_due(
        &self,
        now_ms: u64,
        limit: usize,
        claimed: JobFilter<JobKey>,
        hold: JobFilter<JobRecord>,
    ) -> StoreFuture<DueJobs> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let cols = J_JOB_COLS;
            let st = c
                .prepare_cached(&format!(
                    "WITH c AS (
                         SELECT q.event, q.slot FROM queue q
                         WHERE q.due_at <= $1
                           AND (q.lease_until IS NULL OR q.lease_until < {DB_NOW})
                           AND NOT EXISTS (SELECT 1 FROM paused p
                                           WHERE p.bridge = q.bridge AND p.destination = q.destination AND q.slot <> -1)
                           AND NOT EXISTS (SELECT 1 FROM suspended s WHERE s.bridge = q.bridge AND s.suspended)
                           AND NOT EXISTS (SELECT 1 FROM breakers b
                                           WHERE b.bridge = q.bridge AND b.destination = q.destination AND q.slot <> -1
                                             AND b.state::jsonb->>'phase' IN ('open', 'halfOpen')
                                             AND (b.state::jsonb->>'untilMs')::bigint > $1)
                         ORDER BY q.due_at, q.event, q.slot
                         LIMIT $2
                         FOR UPDATE OF q SKIP LOCKED)
                     UPDATE queue q SET claimed_by = $3, lease_until = {DB_NOW} + $4
                     FROM c, jobs j
                     WHERE q.event = c.event AND q.slot = c.slot AND j.event = q.event AND j.slot = q.slot
                     RETURNING q.due_at, {cols}"
                ))
                .await
                .map_err(|e| db_err(&core, "claim", e))?;
            let next_st = c
                .prepare_cached("SELECT min(due_at) FROM queue WHERE due_at > $1")
                .await
                .map_err(|e| db_err(&core, "claim", e))?;
            let now = i(now_ms);
            let mut out = DueJobs::default();
            let mut release = Vec::new();
            let mut mine = Vec::new();
            let mut more = false;
            let mut next: Option<i64> = None;
            // Held jobs (a destination without a free permit, a suspended bridge) count
            // against no limit: claim again, up to a few rounds, while they fill the batch.
            // Jobs claimed in an earlier round are leased, so a later round passes over them.
            for round in 0..4 {
                let want = (limit - out.jobs.len()) as i64;
                let p_claim: [&(dyn ToSql + Sync); 4] = [&now, &want, &core.me, &core.lease_ms];
                let p_next: [&(dyn ToSql + Sync); 1] = [&now];
                // Pipelined: the claim and the next due time in one round trip.
                let (rows, n) = if round == 0 {
                    let (rows, n) =
                        futures::join!(c.query(&st, &p_claim), c.query_one(&next_st, &p_next));
                    (rows, Some(n))
                } else {
                    (c.query(&st, &p_claim).await, None)
                };
                let rows = rows.map_err(|e| db_err(&core, "claim", e))?;
                if let Some(n) = n {
                    next = n.map_err(|e| db_err(&core, "claim", e))?.get(0);
                }
                let mut held = 0;
                for r in &rows {
                    let at = u(r.get(0));
                    let key = JobKey {
                        event: r.get(1),
                        index: r.get::<_, i32>(2) as u32,
                    };
                    if claimed(&key) {
                        // Already in flight here (a lease that ran out while the attempt ran).
                        continue;
                    }
                    match job_from_row(r, 1) {
                        None => {
                            out.undecodable.push((at, key));
                            release.push(key);
                        }
                        Some(job) if hold(&job) => {
                            held += 1;
                            release.push(key);
                        }
                        Some(job) => {
                            mine.push(key);
                            out.jobs.push(job);
                        }
                    }
                }
                more = (rows.len() as i64) >= want;
                if !more || held == 0 || out.jobs.len() >= limit {
                    break;
                }
            }
            lock(&core.claimed).extend(mine);
            if !release.is_empty() {
                release_keys(&core, &c, &release).await?;
            }
            // Due jobs left out by the limit: come back at once. Left out because they are
            // held: the scheduler wakes when a permit or token frees up (or polls).
            out.next_due_ms = if more && out.jobs.len() >= limit {
                Some(now_ms)
            } else {
                next.map(u)
            };
            Ok(out)
        })
    }

    fn release(&self, jobs: Vec<JobKey>) -> StoreFuture<()> {
        let held: Vec<JobKey> = {
            let mut claimed = lock(&self.core.claimed);
            jobs.into_iter().filter(|k| claimed.remove(k)).collect()
        };
        if held.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        self.run(move |core| async move {
            let c = core.client().await?;
            release_keys(&core, &c, &held).await
        })
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    fn on_new_work(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        *lock(&self.core.waker) = Some(wake);
    }

    fn quarantine(&self, jobs: Vec<(u64, JobKey)>) -> StoreFuture<usize> {
        self.run(move |core| async move {
            let mut c = core.client().await?;
            let tx = c
                .transaction()
                .await
                .map_err(|e| db_err(&core, "quarantine", e))?;
            let mut n = 0;
            for (at, k) in &jobs {
                let moved = tx
                    .execute(
                        "DELETE FROM queue WHERE event = $1 AND slot = $2",
                        &[&k.event, &slot(k.index)],
                    )
                    .await
                    .map_err(|e| db_err(&core, "quarantine", e))?;
                if moved > 0 {
                    tx.execute(
                        "INSERT INTO quarantine (event, slot, due_at) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                        &[&k.event, &slot(k.index), &i(*at)],
                    )
                    .await
                    .map_err(|e| db_err(&core, "quarantine", e))?;
                    n += 1;
                }
            }
            tx.commit()
                .await
                .map_err(|e| db_err(&core, "quarantine", e))?;
            let mut claimed = lock(&core.claimed);
            for (_, k) in &jobs {
                claimed.remove(k);
            }
            Ok(n)
        })
    }

    fn finish_attempt(&self, update: JobUpdate) -> StoreFuture<JobRecord> {
        self.write(|tx| Op::Finish(Box::new(update), tx))
    }

    fn event(&self, id: EventId) -> StoreFuture<Option<EventDetail>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let err = |e| db_err(&core, "event", e);
            let ev = c
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLS}, body FROM events WHERE id = $1"
                ))
                .await
                .map_err(err)?;
            let jobs = c
                .prepare_cached(&format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE event = $1 ORDER BY {SLOT_ORDER}"
                ))
                .await
                .map_err(err)?;
            let attempts = c
                .prepare_cached(
                    "SELECT slot, record FROM attempts WHERE event = $1 ORDER BY slot, n",
                )
                .await
                .map_err(err)?;
            let p: [&(dyn ToSql + Sync); 1] = [&id];
            let (e, j, a) = futures::join!(
                c.query_opt(&ev, &p),
                c.query(&jobs, &p),
                c.query(&attempts, &p)
            );
            let Some(e) = e.map_err(err)? else {
                return Ok(None);
            };
            let (j, a) = (j.map_err(err)?, a.map_err(err)?);
            let record = event_from_row(&e)?;
            let body: Vec<u8> = e.get(8);
            let mut out = Vec::new();
            for r in &j {
                let Some(job) = job_from_row(r, 0) else {
                    continue;
                };
                let s = slot(job.slot());
                let mut list = Vec::new();
                for ar in a.iter().filter(|ar| ar.get::<_, i32>(0) == s) {
                    let v: serde_json::Value = ar.get(1);
                    list.push(serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
                        table: "attempts",
                        message: e.to_string(),
                    })?);
                }
                out.push((job, list));
            }
            Ok(Some(EventDetail {
                record,
                body: Bytes::from(body),
                jobs: out,
            }))
        })
    }

    /// One statement per combination of filters (each planned for the index it can use:
    /// `events_webhook_id`, `events_bridge_status`, `events_bridge`, `events_status` or
    /// the primary key), the id range bounding the partitions read.
    fn list_events(&self, q: EventQuery) -> StoreFuture<Vec<EventRecord>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let limit = i64::try_from(if q.limit == 0 { 100 } else { q.limit }).unwrap_or(i64::MAX);
            let (lo, hi) = q.id_range();
            if lo >= hi {
                return Ok(Vec::new());
            }
            let (lo, hi) = (EventId::from_u128(lo), EventId::from_u128(hi));
            let status = q.status.map(|s| s.as_str());
            let since = q.since_ms.map(i);
            let until = q.until_ms.map(i);
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&lo, &hi, &limit];
            let mut wh = vec!["id >= $1".to_string(), "id < $2".to_string()];
            if let Some(b) = &q.bridge {
                params.push(b);
                wh.push(format!("bridge = ${}", params.len()));
            }
            if let Some(s) = &status {
                params.push(s);
                wh.push(format!("status = ${}", params.len()));
            }
            if let Some(w) = &q.webhook_id {
                params.push(w);
                wh.push(format!("webhook_id = ${}", params.len()));
            }
            if let Some(s) = &since {
                params.push(s);
                wh.push(format!("received_at >= ${}", params.len()));
            }
            if let Some(u) = &until {
                params.push(u);
                wh.push(format!("received_at < ${}", params.len()));
            }
            let sql = format!(
                "SELECT {EVENT_COLS} FROM events WHERE {} ORDER BY id DESC LIMIT $3",
                wh.join(" AND ")
            );
            let st = c
                .prepare_cached(&sql)
                .await
                .map_err(|e| db_err(&core, "list", e))?;
            let rows = c
                .query(&st, &params)
                .await
                .map_err(|e| db_err(&core, "list", e))?;
            rows.iter().map(event_from_row).collect()
        })
    }

    fn stream_events(&self, q: StreamRead) -> StoreFuture<StreamPage> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let limit = i64::try_from(q.limit.max(1)).unwrap_or(i64::MAX);
            // Filtered, fanned-out and failed-steps events are left out here, so that the
            // limit counts what is served; an event whose steps are queued comes back and
            // stops the page.
            let rows = c
                .query(
                    &format!(
                        "SELECT {EVENT_COLS}, body,
                           (SELECT j.status FROM jobs j WHERE j.event = events.id AND j.slot = -1)
                         FROM events
                         WHERE bridge = $1 AND ($2::uuid IS NULL OR id > $2)
                           AND ($3::uuid IS NULL OR id < $3)
                           AND status <> 'filtered' AND cardinality(children) = 0
                           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event = events.id
                                           AND j.slot = -1 AND j.status = 'dead')
                         ORDER BY id LIMIT $4"
                    ),
                    &[&q.bridge, &q.after, &q.before, &limit],
                )
                .await
                .map_err(|e| db_err(&core, "stream", e))?;
            let mut page = StreamPage::default();
            for r in &rows {
                let rec = event_from_row(r)?;
                let steps = r.get::<_, Option<String>>(9).and_then(|s| job_status(&s));
                match stream_decision(&rec, steps) {
                    StreamDecision::Skip => continue,
                    StreamDecision::Hold => {
                        page.held = Some(rec.id);
                        break;
                    }
                    StreamDecision::Serve => {}
                }
                let body: Vec<u8> = r.get(8);
                page.items.push(StreamItem {
                    id: rec.id,
                    received_at_ms: rec.received_at_ms,
                    body: Bytes::from(body),
                });
            }
            Ok(page)
        })
    }

    fn replay_event(&self, id: EventId, now_ms: u64) -> StoreFuture<usize> {
        self.run(move |core| async move {
            let mut c = core.client().await?;
            let err = |e| db_err(&core, "replay", e);
            let tx = c.transaction().await.map_err(err)?;
            if tx
                .query_opt("SELECT 1 FROM events WHERE id = $1 FOR UPDATE", &[&id])
                .await
                .map_err(err)?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("event {id}")));
            }
            let n = requeue(
                &tx,
                &core,
                "event = $1 AND status IN ('dead', 'delivered') AND slot <> -1",
                &[&id],
                now_ms,
            )
            .await?;
            refresh(&tx, id, None).await.map_err(|e| op_err(&core, e))?;
            notify(&tx, &core).await?;
            tx.commit().await.map_err(err)?;
            core.wake_local();
            Ok(n)
        })
    }

    fn replay_dead(&self, bridge: String, now_ms: u64) -> StoreFuture<usize> {
        self.run(move |core| async move {
            let mut c = core.client().await?;
            let err = |e| db_err(&core, "replay", e);
            let tx = c.transaction().await.map_err(err)?;
            let events: Vec<EventId> = tx
                .query(
                    "SELECT DISTINCT event FROM jobs WHERE bridge = $1 AND status = 'dead'",
                    &[&bridge],
                )
                .await
                .map_err(err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let n = requeue(
                &tx,
                &core,
                "bridge = $1 AND status = 'dead'",
                &[&bridge],
                now_ms,
            )
            .await?;
            for e in events {
                refresh(&tx, e, None).await.map_err(|e| op_err(&core, e))?;
            }
            notify(&tx, &core).await?;
            tx.commit().await.map_err(err)?;
            core.wake_local();
            Ok(n)
        })
    }

    fn purge(&self, bridge: String) -> StoreFuture<usize> {
        self.run(move |core| async move {
            let mut c = core.client().await?;
            let err = |e| db_err(&core, "purge", e);
            let tx = c.transaction().await.map_err(err)?;
            let gone = tx
                .query(
                    "DELETE FROM jobs WHERE bridge = $1 AND status IN ('pending', 'retrying', 'paused')
                     RETURNING event, slot",
                    &[&bridge],
                )
                .await
                .map_err(err)?;
            let events: Vec<EventId> = gone.iter().map(|r| r.get(0)).collect();
            let slots: Vec<i32> = gone.iter().map(|r| r.get(1)).collect();
            tx.execute(
                "DELETE FROM queue q USING unnest($1::uuid[], $2::int4[]) AS k(e, s)
                 WHERE q.event = k.e AND q.slot = k.s",
                &[&events, &slots],
            )
            .await
            .map_err(err)?;
            let mut distinct = events.clone();
            distinct.sort();
            distinct.dedup();
            for e in distinct {
                // An event left with nothing to deliver is finished: dead, "purged".
                let left = tx
                    .query(
                        "SELECT status FROM jobs WHERE event = $1",
                        &[&e],
                    )
                    .await
                    .map_err(err)?;
                let all_delivered = !left.is_empty()
                    && left.iter().all(|r| r.get::<_, &str>(0) == "delivered");
                let reason = (!all_delivered).then_some("purged");
                refresh(&tx, e, reason).await.map_err(|e| op_err(&core, e))?;
                if left.is_empty() {
                    tx.execute(
                        "UPDATE events SET status = 'dead', reason = $2 WHERE id = $1",
                        &[&e, &reason],
                    )
                    .await
                    .map_err(err)?;
                }
            }
            tx.commit().await.map_err(err)?;
            let mut claimed = lock(&core.claimed);
            for (e, s) in events.iter().zip(&slots) {
                claimed.remove(&JobKey {
                    event: *e,
                    index: *s as u32,
                });
            }
            Ok(gone.len())
        })
    }

    fn set_paused(
        &self,
        bridge: String,
        destination: String,
        paused: bool,
        now_ms: u64,
    ) -> StoreFuture<usize> {
        self.run(move |core| async move {
            let mut c = core.client().await?;
            let err = |e| db_err(&core, "pause", e);
            if paused {
                c.execute(
                    "INSERT INTO paused (bridge, destination, since) VALUES ($1, $2, $3)
                     ON CONFLICT (bridge, destination) DO NOTHING",
                    &[&bridge, &destination, &i(now_ms)],
                )
                .await
                .map_err(err)?;
                return Ok(0);
            }
            let tx = c.transaction().await.map_err(err)?;
            tx.execute(
                "DELETE FROM paused WHERE bridge = $1 AND destination = $2",
                &[&bridge, &destination],
            )
            .await
            .map_err(err)?;
            // Resumed: its circuit breaker starts closed.
            tx.execute(
                "DELETE FROM breakers WHERE bridge = $1 AND destination = $2",
                &[&bridge, &destination],
            )
            .await
            .map_err(err)?;
            // The paused attempt failed; resuming retries it with the budget it had.
            let rows = tx
                .query(
                    &format!(
                        "UPDATE jobs SET status = 'retrying', due_at = $3
                         WHERE bridge = $1 AND destination = $2 AND status = 'paused' AND slot <> -1
                         RETURNING {JOB_COLS}"
                    ),
                    &[&bridge, &destination, &i(now_ms)],
                )
                .await
                .map_err(err)?;
            for r in &rows {
                if let Some(j) = job_from_row(r, 0) {
                    queue_put(&tx, &j).await.map_err(err)?;
                }
            }
            notify(&tx, &core).await?;
            tx.commit().await.map_err(err)?;
            core.wake_local();
            Ok(rows.len())
        })
    }

    fn paused(&self) -> StoreFuture<Vec<(String, String)>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let rows = c
                .query(
                    "SELECT bridge, destination FROM paused
                     ORDER BY bridge COLLATE \"C\", destination COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(|e| db_err(&core, "paused", e))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn breakers(&self) -> StoreFuture<Vec<((String, String), BreakerState)>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let rows = c
                .query("SELECT bridge, destination, state FROM breakers", &[])
                .await
                .map_err(|e| db_err(&core, "breakers", e))?;
            rows.iter()
                .map(|r| {
                    let state: String = r.get(2);
                    let s = serde_json::from_str(&state).map_err(|e| StoreError::Corrupt {
                        table: "breakers",
                        message: e.to_string(),
                    })?;
                    Ok(((r.get(0), r.get(1)), s))
                })
                .collect()
        })
    }

    fn update_breaker(
        &self,
        bridge: String,
        destination: String,
        f: BreakerUpdate,
    ) -> StoreFuture<BreakerChange> {
        self.run(move |core| async move {
            let mut c = core.client().await?;
            let err = |e| db_err(&core, "breaker", e);
            let tx = c.transaction().await.map_err(err)?;
            // A row that does not exist yet cannot be locked: the advisory lock of the
            // destination serialises the workers instead (released at commit).
            let what = format!("breaker:{bridge}:{destination}");
            tx.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&lock_key(&core.schema, &what)],
            )
            .await
            .map_err(err)?;
            let row = tx
                .query_opt(
                    "SELECT state FROM breakers WHERE bridge = $1 AND destination = $2",
                    &[&bridge, &destination],
                )
                .await
                .map_err(err)?;
            let before: Option<BreakerState> = match row {
                None => None,
                Some(r) => {
                    let state: String = r.get(0);
                    Some(
                        serde_json::from_str(&state).map_err(|e| StoreError::Corrupt {
                            table: "breakers",
                            message: e.to_string(),
                        })?,
                    )
                }
            };
            let after = f(before.as_ref());
            if after != before {
                match &after {
                    Some(a) => {
                        let state = serde_json::to_string(a).map_err(|e| StoreError::Engine {
                            op: "breaker",
                            message: e.to_string(),
                        })?;
                        tx.execute(
                            "INSERT INTO breakers (bridge, destination, state) VALUES ($1, $2, $3)
                             ON CONFLICT (bridge, destination) DO UPDATE SET state = EXCLUDED.state",
                            &[&bridge, &destination, &state],
                        )
                        .await
                        .map_err(err)?;
                    }
                    None => {
                        tx.execute(
                            "DELETE FROM breakers WHERE bridge = $1 AND destination = $2",
                            &[&bridge, &destination],
                        )
                        .await
                        .map_err(err)?;
                    }
                }
            }
            tx.commit().await.map_err(err)?;
            Ok((before, after))
        })
    }

    fn set_suspended(&self, bridge: String, suspended: Option<bool>) -> StoreFuture<()> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let r = match suspended {
                Some(s) => {
                    c.execute(
                        "INSERT INTO suspended (bridge, suspended) VALUES ($1, $2)
                         ON CONFLICT (bridge) DO UPDATE SET suspended = EXCLUDED.suspended",
                        &[&bridge, &s],
                    )
                    .await
                }
                None => {
                    c.execute("DELETE FROM suspended WHERE bridge = $1", &[&bridge])
                        .await
                }
            };
            r.map_err(|e| db_err(&core, "suspend", e))?;
            if suspended == Some(false) {
                core.wake_local();
            }
            Ok(())
        })
    }

    fn put_subscription(&self, sub: SubscriptionRecord) -> StoreFuture<()> {
        self.run(move |core| async move {
            let record = serde_json::to_string(&sub).map_err(|e| StoreError::Engine {
                op: "subscriptions",
                message: e.to_string(),
            })?;
            let c = core.client().await?;
            c.execute(
                "INSERT INTO subscriptions (bridge, callback, id, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (bridge, callback) DO UPDATE SET id = EXCLUDED.id, record = EXCLUDED.record",
                &[&sub.bridge, &sub.callback, &sub.id, &record],
            )
            .await
            .map_err(|e| db_err(&core, "subscriptions", e))?;
            Ok(())
        })
    }

    fn delete_subscription(
        &self,
        bridge: String,
        callback: String,
        id: Option<String>,
    ) -> StoreFuture<bool> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let n = c
                .execute(
                    "DELETE FROM subscriptions WHERE bridge = $1 AND callback = $2
                     AND ($3::text IS NULL OR id = $3)",
                    &[&bridge, &callback, &id],
                )
                .await
                .map_err(|e| db_err(&core, "subscriptions", e))?;
            Ok(n > 0)
        })
    }

    fn subscriptions(&self) -> StoreFuture<Vec<SubscriptionRecord>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let rows = c
                .query(
                    "SELECT record FROM subscriptions
                     ORDER BY bridge COLLATE \"C\", callback COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(|e| db_err(&core, "subscriptions", e))?;
            rows.iter()
                .map(|r| {
                    let text: String = r.get(0);
                    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                        table: "subscriptions",
                        message: e.to_string(),
                    })
                })
                .collect()
        })
    }

    fn suspended(&self) -> StoreFuture<Vec<(String, bool)>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let rows = c
                .query("SELECT bridge, suspended FROM suspended", &[])
                .await
                .map_err(|e| db_err(&core, "suspended", e))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn queue_depth(&self) -> StoreFuture<Vec<((String, String), u64)>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let rows = c
                .query(
                    "SELECT b, d, n FROM (
                         SELECT j.bridge AS b, CASE WHEN j.slot = -1 THEN '(steps)' ELSE j.destination END AS d,
                                count(*)::bigint AS n
                         FROM queue q JOIN jobs j ON j.event = q.event AND j.slot = q.slot
                         WHERE j.status IN ('pending', 'retrying')
                         GROUP BY 1, 2) x
                     ORDER BY b COLLATE \"C\", d COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(|e| db_err(&core, "queue depth", e))?;
            Ok(rows
                .iter()
                .map(|r| ((r.get(0), r.get(1)), u(r.get(2))))
                .collect())
        })
    }

    fn jobs_left(&self, bridge: String) -> StoreFuture<u64> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let row = c
                .query_one(
                    "SELECT (SELECT count(*) FROM queue q JOIN jobs j ON j.event = q.event AND j.slot = q.slot
                             WHERE j.bridge = $1 AND j.status IN ('pending', 'retrying'))
                          + (SELECT count(*) FROM jobs WHERE bridge = $1 AND status = 'paused')",
                    &[&bridge],
                )
                .await
                .map_err(|e| db_err(&core, "jobs left", e))?;
            Ok(u(row.get::<_, i64>(0)))
        })
    }

    fn retain(&self, policy: Retention, now_ms: u64) -> StoreFuture<RetentionReport> {
        self.run(move |core| async move { retain(&core, policy, now_ms).await })
    }

    fn disk_bytes(&self) -> u64 {
        self.core.size.load(Ordering::Relaxed)
    }

    fn counts(&self) -> StoreFuture<StoreCounts> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let r = c
                .query_one(
                    "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM jobs),
                            (SELECT count(*) FROM attempts), (SELECT count(*) FROM idempotency)",
                    &[],
                )
                .await
                .map_err(|e| db_err(&core, "counts", e))?;
            Ok(StoreCounts {
                events: u(r.get(0)),
                jobs: u(r.get(1)),
                attempts: u(r.get(2)),
                idempotency_keys: u(r.get(3)),
            })
        })
    }

    fn kv_get(&self, plugin: String, key: String) -> StoreFuture<Option<Vec<u8>>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let row = c
                .query_opt(
                    "SELECT value FROM kv WHERE plugin = $1 AND key = $2",
                    &[&plugin, &key],
                )
                .await
                .map_err(|e| db_err(&core, "keyvalue", e))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn kv_set(&self, plugin: String, key: String, value: Vec<u8>) -> StoreFuture<()> {
        self.run(move |core| async move {
            kv_write(&core, &plugin, &key, |_| Ok(Some(value)))
                .await
                .map(|_| ())
        })
    }

    fn kv_delete(&self, plugin: String, key: String) -> StoreFuture<()> {
        self.run(move |core| async move {
            kv_write(&core, &plugin, &key, |_| Ok(None))
                .await
                .map(|_| ())
        })
    }

    fn kv_increment(&self, plugin: String, key: String, delta: u64) -> StoreFuture<u64> {
        self.run(move |core| async move {
            let mut next = 0;
            kv_write(&core, &plugin, &key, |old| {
                next = super::increment_value(&key, old, delta)?;
                Ok(Some(next.to_string().into_bytes()))
            })
            .await?;
            Ok(next)
        })
    }

    fn kv_list(&self, plugin: String) -> StoreFuture<Vec<String>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let rows = c
                .query(
                    "SELECT key FROM kv WHERE plugin = $1 ORDER BY key COLLATE \"C\"",
                    &[&plugin],
                )
                .await
                .map_err(|e| db_err(&core, "keyvalue", e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn healthy(&self) -> bool {
        self.core.ready.load(Ordering::SeqCst) && self.core.healthy.load(Ordering::SeqCst)
    }

    fn import_event(&self, d: EventDetail) -> StoreFuture<bool> {
        self.run(move |core| async move {
            ensure_days(&core, std::iter::once(d.record.id)).await?;
            let mut c = core.client().await?;
            let err = |e| db_err(&core, "import", e);
            let tx = c.transaction().await.map_err(err)?;
            let ev = NewEvent {
                record: d.record.clone(),
                body: d.body.clone(),
                jobs: Vec::new(),
                idempotency: None,
            };
            let inserted = insert_event(&tx, &ev, true)
                .await
                .map_err(|e| op_err(&core, e))?;
            if inserted.is_none() {
                return Ok(false);
            }
            for (j, attempts) in &d.jobs {
                tx.execute(
                    "INSERT INTO jobs (event, slot, bridge, destination, status, due_at, received_at,
                                       attempts, attempts_at_queue, last_error)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &[
                        &j.event,
                        &slot(j.slot()),
                        &j.bridge,
                        &j.target.destination_name().unwrap_or_default(),
                        &j.status.as_str(),
                        &i(j.due_at_ms),
                        &i(j.received_at_ms),
                        &(j.attempts as i32),
                        &(j.attempts_at_queue as i32),
                        &j.last_error,
                    ],
                )
                .await
                .map_err(err)?;
                if j.status.queued() {
                    queue_put(&tx, j).await.map_err(err)?;
                }
                for (n, a) in attempts.iter().enumerate() {
                    let rec = encode(a)?;
                    tx.execute(
                        "INSERT INTO attempts (event, slot, n, record) VALUES ($1, $2, $3, $4)",
                        &[&j.event, &slot(j.slot()), &(n as i32 + 1), &rec],
                    )
                    .await
                    .map_err(err)?;
                }
            }
            tx.commit().await.map_err(err)?;
            core.size.fetch_add(inserted.unwrap_or(0), Ordering::Relaxed);
            Ok(true)
        })
    }

    fn kv_plugins(&self) -> StoreFuture<Vec<String>> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let rows = c
                .query(
                    "SELECT DISTINCT plugin FROM kv ORDER BY plugin COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(|e| db_err(&core, "keyvalue", e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}

fn op_err(core: &Core, e: OpError) -> StoreError {
    match e {
        OpError::Outcome(e) => e,
        OpError::Sql(e) => db_err(core, "write", e),
    }
}

async fn notify(tx: &Transaction<'_>, core: &Core) -> Result<(), StoreError> {
    tx.execute("SELECT pg_notify($1, '')", &[&core.channel])
        .await
        .map_err(|e| db_err(core, "notify", e))?;
    Ok(())
}

async fn release_keys(
    core: &Core,
    c: &deadpool_postgres::Object,
    keys: &[JobKey],
) -> Result<(), StoreError> {
    let events: Vec<EventId> = keys.iter().map(|k| k.event).collect();
    let slots: Vec<i32> = keys.iter().map(|k| slot(k.index)).collect();
    c.execute(
        "UPDATE queue q SET claimed_by = NULL, lease_until = NULL
         FROM unnest($2::uuid[], $3::int4[]) AS k(e, s)
         WHERE q.event = k.e AND q.slot = k.s AND q.claimed_by = $1",
        &[&core.me, &events, &slots],
    )
    .await
    .map_err(|e| db_err(core, "release", e))?;
    Ok(())
}

/// Queue again the jobs `filter` selects (pending at `now`, retries counted from here).
async fn requeue(
    tx: &Transaction<'_>,
    core: &Core,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
    now_ms: u64,
) -> Result<usize, StoreError> {
    let n = params.len() + 1;
    let mut all: Vec<&(dyn ToSql + Sync)> = params.to_vec();
    let now = i(now_ms);
    all.push(&now);
    let rows = tx
        .query(
            &format!(
                "UPDATE jobs SET status = 'pending', due_at = ${n}, attempts_at_queue = attempts, last_error = NULL
                 WHERE {filter} RETURNING {JOB_COLS}"
            ),
            &all,
        )
        .await
        .map_err(|e| db_err(core, "requeue", e))?;
    for r in &rows {
        if let Some(j) = job_from_row(r, 0) {
            queue_put(tx, &j)
                .await
                .map_err(|e| db_err(core, "requeue", e))?;
        }
    }
    Ok(rows.len())
}

/// Read-modify-write one key under the plugin's usage row lock (atomic across replicas),
/// within the plugin's quota. `f` gets the old value and gives the new one (None deletes).
async fn kv_write(
    core: &Core,
    plugin: &str,
    key: &str,
    f: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<(), StoreError> {
    let quota = core.kv_quota.load(Ordering::Relaxed);
    let mut c = core.client().await?;
    let err = |e| db_err(core, "keyvalue", e);
    let tx = c.transaction().await.map_err(err)?;
    tx.execute(
        "INSERT INTO kv_usage (plugin, bytes)
         SELECT $1, coalesce(sum(octet_length(key) + octet_length(value)), 0) FROM kv WHERE plugin = $1
         ON CONFLICT (plugin) DO NOTHING",
        &[&plugin],
    )
    .await
    .map_err(err)?;
    let used: i64 = tx
        .query_one(
            "SELECT bytes FROM kv_usage WHERE plugin = $1 FOR UPDATE",
            &[&plugin],
        )
        .await
        .map_err(err)?
        .get(0);
    let old: Option<Vec<u8>> = tx
        .query_opt(
            "SELECT value FROM kv WHERE plugin = $1 AND key = $2",
            &[&plugin, &key],
        )
        .await
        .map_err(err)?
        .map(|r| r.get(0));
    let used = u(used);
    let old_bytes = old.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
    let new = f(old.as_deref())?;
    let after =
        used.saturating_sub(old_bytes) + new.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
    if new.is_some() && after > quota && after > used {
        return Err(StoreError::Quota {
            what: format!("keyvalue of plugin {plugin}"),
            limit: quota,
        });
    }
    match &new {
        Some(v) => {
            tx.execute(
                "INSERT INTO kv (plugin, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (plugin, key) DO UPDATE SET value = EXCLUDED.value",
                &[&plugin, &key, v],
            )
            .await
            .map_err(err)?;
        }
        None => {
            tx.execute(
                "DELETE FROM kv WHERE plugin = $1 AND key = $2",
                &[&plugin, &key],
            )
            .await
            .map_err(err)?;
        }
    }
    tx.execute(
        "UPDATE kv_usage SET bytes = $2 WHERE plugin = $1",
        &[&plugin, &i(after)],
    )
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(())
}

/// Delete the ids' events with their jobs, attempts and quarantine entries; the count.
async fn delete_events(
    tx: &Transaction<'_>,
    core: &Core,
    ids: &[EventId],
) -> Result<usize, StoreError> {
    let err = |e| db_err(core, "retain", e);
    let n = tx
        .execute("DELETE FROM events WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(err)?;
    for t in ["jobs", "attempts", "quarantine", "queue"] {
        tx.execute(&format!("DELETE FROM {t} WHERE event = ANY($1)"), &[&ids])
            .await
            .map_err(err)?;
    }
    Ok(n as usize)
}

/// Retention: expired keys; by age, whole day partitions when nothing in them is pending,
/// else row by row; by size, the oldest finished events until under 90% of the limit.
async fn retain(core: &Core, policy: Retention, now: u64) -> Result<RetentionReport, StoreError> {
    let err = |e| db_err(core, "retain", e);
    let mut report = RetentionReport {
        bytes_before: core.size.load(Ordering::Relaxed),
        ..Default::default()
    };
    let mut c = core.client().await?;
    report.expired_keys = c
        .execute("DELETE FROM idempotency WHERE expires <= $1", &[&i(now)])
        .await
        .map_err(err)? as usize;
    let cutoff = now.saturating_sub(policy.max_age_ms);
    // Whole days before the cut-off.
    let parts = c
        .query(
            "SELECT c.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             JOIN pg_namespace n ON n.oid = p.relnamespace
             WHERE n.nspname = $1 AND p.relname = 'events'",
            &[&core.schema],
        )
        .await
        .map_err(err)?;
    for r in &parts {
        let name: String = r.get(0);
        let Some(day) = name.strip_prefix("events_").and_then(|d| {
            time::Date::parse(d, time::macros::format_description!("[year][month][day]")).ok()
        }) else {
            continue;
        };
        let day = (day.midnight().assume_utc().unix_timestamp() / 86_400) as u64;
        if (day + 1) * DAY_MS > cutoff {
            continue;
        }
        let tx = c.transaction().await.map_err(err)?;
        let suffix = day_name(day);
        tx.batch_execute(&format!(
            "LOCK TABLE events_{suffix}, jobs_{suffix}, attempts_{suffix} IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .map_err(err)?;
        let counts = tx
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FROM events_{suffix}"
                ),
                &[],
            )
            .await
            .map_err(err)?;
        let (pending, total): (i64, i64) = (counts.get(0), counts.get(1));
        if pending == 0 {
            tx.batch_execute(&format!(
                "DELETE FROM queue q USING jobs_{suffix} j WHERE q.event = j.event AND q.slot = j.slot;
                 DELETE FROM quarantine q USING jobs_{suffix} j WHERE q.event = j.event AND q.slot = j.slot;
                 DROP TABLE events_{suffix}, jobs_{suffix}, attempts_{suffix};"
            ))
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            lock(&core.days).remove(&day);
            report.deleted_by_age += total as usize;
            info!(day = %suffix, events = total, "retention dropped a day partition");
        } else {
            tx.rollback().await.map_err(err)?;
        }
    }
    // Row by row: finished events before the cut-off in partitions that stay.
    loop {
        let tx = c.transaction().await.map_err(err)?;
        let ids: Vec<EventId> = tx
            .query(
                "SELECT id FROM events WHERE received_at < $1 AND status <> 'pending'
                 ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED",
                &[&i(cutoff)],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            break;
        }
        report.deleted_by_age += delete_events(&tx, core, &ids).await?;
        tx.commit().await.map_err(err)?;
        if ids.len() < 1000 {
            break;
        }
    }
    drop(c);
    let mut total = total_size(core).await?;
    if report.deleted_by_age == 0 && report.expired_keys == 0 {
        report.bytes_before = report.bytes_before.max(total);
    }
    if total > policy.max_bytes {
        let target = policy.max_bytes / 10 * 9;
        let excess = i(total - target);
        let mut c = core.client().await?;
        let tx = c.transaction().await.map_err(err)?;
        let ids: Vec<EventId> = tx
            .query(
                "SELECT id FROM (
                     SELECT id, size, (sum(size) OVER (ORDER BY id))::bigint AS cum
                     FROM events WHERE status <> 'pending') f
                 WHERE cum - size < $1 ORDER BY id",
                &[&excess],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            warn!(
                bytes = total,
                max_bytes = policy.max_bytes,
                "store over its size limit with no finished event to delete"
            );
        } else {
            report.deleted_by_size = delete_events(&tx, core, &ids).await?;
        }
        tx.commit().await.map_err(err)?;
        total = total_size(core).await?;
    }
    core.size.store(total, Ordering::Relaxed);
    report.bytes_after = total;
    Ok(report)
}

#[cfg(any(test, feature = "store-contract"))]
impl super::contract::EngineHooks for PostgresStore {
    fn corrupt_job(&self, job: JobKey) -> StoreFuture<()> {
        self.run(move |core| async move {
            let c = core.client().await?;
            c.execute(
                "UPDATE jobs SET status = 'unknown-to-this-version' WHERE event = $1 AND slot = $2",
                &[&job.event, &slot(job.index)],
            )
            .await
            .map_err(|e| db_err(&core, "corrupt", e))?;
            Ok(())
        })
    }
    fn set_kv_quota(&self, bytes: u64) {
        PostgresStore::set_kv_quota(self, bytes);
    }
    /// The database keeps its indexes; the worker keeps `webhook_id`, derived from the
    /// record's headers: every row's must be what the record says.
    fn check_event_index(&self) -> StoreFuture<()> {
        self.run(move |core| async move {
            let c = core.client().await?;
            let rows = c
                .query(&format!("SELECT {EVENT_COLS}, webhook_id FROM events"), &[])
                .await
                .map_err(|e| db_err(&core, "check", e))?;
            let mut diffs = Vec::new();
            for r in &rows {
                let rec = event_from_row(r)?;
                let have: Option<String> = r.get(8);
                if have.as_deref() != rec.webhook_id() {
                    diffs.push(format!(
                        "event {}: webhook_id {have:?}, the record says {:?}",
                        rec.id,
                        rec.webhook_id()
                    ));
                }
            }
            if diffs.is_empty() {
                Ok(())
            } else {
                Err(StoreError::Invalid(format!(
                    "the events index is stale: {}",
                    diffs.join("; ")
                )))
            }
        })
    }
}

/// `--postgres` and its companions.
#[derive(Clone)]
pub struct PostgresArgs {
    pub url: String,
    /// None: `causeway_<namespace>_<pool>` from the configuration.
    pub schema: Option<String>,
    pub pool_size: usize,
    pub statement_timeout: Duration,
    pub lease: Duration,
}

impl std::fmt::Debug for PostgresArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: only where it points.
        f.debug_struct("PostgresArgs")
            .field("at", &causeway_config::postgres_location(&self.url))
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_bounds_follow_the_ids_clock() {
        let id = super::super::contract::id_at(1_735_689_600_000 + 5_000);
        let day = id_ms(id) / DAY_MS;
        assert!(day_floor(day) <= id && id < day_floor(day + 1));
        assert_eq!(day_name(day), "20250101");
    }

    #[test]
    fn the_aliased_job_columns_are_the_job_columns() {
        let aliased: Vec<String> = JOB_COLS.split(", ").map(|c| format!("j.{c}")).collect();
        assert_eq!(J_JOB_COLS, aliased.join(", "));
    }

    #[test]
    fn schema_names_are_safe_identifiers() {
        assert_eq!(pool_schema("shop", "orders"), "causeway_shop_orders");
        assert_eq!(pool_schema("", "local"), "causeway_local");
        assert_eq!(schema_name("a-b.c"), "a_b_c");
        assert_eq!(schema_name("9x"), "cw_9x");
        assert_eq!(schema_name("pg_x"), "cw_pg_x");
        assert_eq!(schema_name("x; DROP TABLE y"), "x__drop_table_y");
        assert!(schema_name(&"a".repeat(100)).len() <= 48);
    }
}
