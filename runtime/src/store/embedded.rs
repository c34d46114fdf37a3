//! The embedded store on redb (one file, copy-on-write B-trees, fsync per commit).
//!
//! Reads run on the caller's thread in a read transaction. Writes go to one writer thread
//! as closures; it takes whatever is queued (up to [`MAX_BATCH`]), runs all of them in one
//! write transaction, commits once (redb's `Durability::Immediate`: the commit returns after
//! fsync), and only then answers each caller. If one closure fails, the batch is aborted and
//! each closure is run again in its own transaction, so one bad write never fails another.
//!
//! Each transaction notes what it changes in the due queue and the hand-off cache
//! (`memory.rs`); the writer applies the notes after the commit. Attempt records are
//! written lazily ([`EmbeddedStore::write_lazy`]): committed without fsync, durable with the
//! next commit that syncs.
//!
//! Compaction needs the database exclusively: the handle sits in an `RwLock`; readers and
//! the writer take it shared, compaction (on the writer thread, between batches) takes it
//! exclusively. redb compacts in one call that cannot be bounded or interrupted, so the
//! writer compacts only when no write but retention's own arrived for [`QUIET_BEFORE_COMPACT`]
//! (a store under steady ingest is not compacted: its freed pages are reused instead, and
//! the file stays where it is).

use std::cell::{RefCell, RefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    TableHandle, WriteTransaction,
};
use tokio::sync::oneshot;

use super::memory::{Change, Loaded, Memory};
use super::*;

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// An event is handed to delivery in memory when one of its jobs is due within this of its
/// arrival (a delayed job reads it from disk when its time comes).
const HAND_OFF_WITHIN_MS: u64 = 1_000;
/// Rows (events with everything keyed by them, or idempotency keys) deleted per retention
/// transaction: what one trim adds to the ingest commit it shares. Small, so an ingest
/// sharing a commit with it waits a fraction of a millisecond more, not several.
pub const RETENTION_CHUNK: usize = 64;
/// Compaction waits until no write (but retention's) arrived for this long.
pub const QUIET_BEFORE_COMPACT: Duration = Duration::from_secs(1);
/// Compaction runs only when at least this share of the file (1/n) is free: below it, the
/// free pages are left for the next writes to reuse.
const COMPACT_FREE_SHARE: u64 = 4;

const EVENTS: TableDefinition<u128, &[u8]> = TableDefinition::new("events");
const BODIES: TableDefinition<u128, &[u8]> = TableDefinition::new("bodies");
const JOBS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("jobs");
/// `(due_at_ms, event, index)` for every queued job.
const DUE: TableDefinition<(u64, u128, u32), ()> = TableDefinition::new("due");
const ATTEMPTS: TableDefinition<(u128, u32, u32), &[u8]> = TableDefinition::new("attempts");
/// `(bridge, key)` → `(event, expires_at_ms)`.
const IDEM: TableDefinition<(&str, &str), (u128, u64)> = TableDefinition::new("idempotency");
/// `(bridge, destination)` → paused since.
const PAUSED: TableDefinition<(&str, &str), u64> = TableDefinition::new("paused");
/// `(bridge, destination)` → its circuit breaker ([`BreakerState`], JSON).
const BREAKERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("breakers");
const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("keyvalue");
/// `(event, index)` → the due time of a job whose record could not be decoded.
const QUARANTINE: TableDefinition<(u128, u32), u64> = TableDefinition::new("quarantine");
/// Plugin → bytes of keyvalue state it holds (keys and values), for the quota.
const KV_USAGE: TableDefinition<&str, u64> = TableDefinition::new("keyvalue_usage");
/// WebSub subscriptions: `(bridge, callback)` → the JSON [`SubscriptionRecord`].
const SUBSCRIPTIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("subscriptions");
/// The secondary indexes of the events listing (`list_events`), kept in the same
/// transaction as every write of an event record ([`put_event`], [`delete_event`]): a
/// filtered page reads its 50 keys from one of them, newest first, whatever share of the
/// events matches. Keys only; the record is read from [`EVENTS`] by id. A page by bridge
/// alone merges the bridge's four status ranges of [`EVENTS_BY_BRIDGE_STATUS`].
const EVENTS_BY_STATUS: TableDefinition<(u8, u128), ()> = TableDefinition::new("events_by_status");
const EVENTS_BY_BRIDGE_STATUS: TableDefinition<(&str, u8, u128), ()> =
    TableDefinition::new("events_by_bridge_status");
/// `(webhook-id header, event)`.
const EVENTS_BY_WEBHOOK_ID: TableDefinition<(&str, u128), ()> =
    TableDefinition::new("events_by_webhook_id");
/// `(bridge, event)`: index version 1 only. Version 2 lists by bridge from
/// [`EVENTS_BY_BRIDGE_STATUS`] and drops it: one index entry fewer per ingest.
const EVENTS_BY_BRIDGE_V1: TableDefinition<(&str, u128), ()> =
    TableDefinition::new("events_by_bridge");
/// Format markers: `event_index` → the version of the indexes above the file holds. A file
/// without it (written before the indexes) gets them built on open.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EVENT_INDEX_KEY: &str = "event_index";
const EVENT_INDEX_VERSION: u64 = 2;
/// The newest record encoding the file may hold (`codec.rs`): 2 is binary events, jobs and
/// attempts beside the JSON of earlier versions. A worker that finds a higher one refuses
/// to open the file rather than take records it cannot read for corrupt ones.
const RECORD_FORMAT_KEY: &str = "record_format";
const RECORD_FORMAT: u64 = 2;

/// Optional instrumentation of group commits.
#[derive(Clone)]
pub struct StoreMetrics {
    pub batch_size: prometheus::Histogram,
    pub commit_seconds: prometheus::Histogram,
}

/// A write transaction with what it changes in memory ([`Change`]): the writer applies
/// the changes after the commit and drops them with an aborted transaction.
///
/// Tables are opened through [`Txn::table`], at most once per transaction: a group commit
/// of hundreds of writes opens each table once and shares it between them (redb refuses a
/// table opened twice at a time, and opening and closing one per write cost about as much
/// as the write's rows).
pub(crate) struct Txn<'a> {
    tx: &'a WriteTransaction,
    tables: Tables<'a>,
    changes: RefCell<Vec<Change>>,
}

impl<'a> Txn<'a> {
    fn new(tx: &'a WriteTransaction) -> Txn<'a> {
        Txn {
            tx,
            tables: Tables::default(),
            changes: RefCell::new(Vec::new()),
        }
    }
    fn note(&self, c: Change) {
        self.changes.borrow_mut().push(c);
    }
    /// Closes the tables (before the commit) and gives what memory should follow.
    fn into_changes(self) -> Vec<Change> {
        let Txn {
            tables, changes, ..
        } = self;
        drop(tables);
        changes.into_inner()
    }
    /// The table, opened on first use. Borrowed while the guard lives: a second borrow of
    /// the same table meanwhile is an error, as a second `open_table` is in redb.
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<RefMut<'_, Table<'a, K, V>>, StoreError>
    where
        Tables<'a>: Cached<'a, K, V>,
    {
        let (cell, op) = self
            .tables
            .slot(def.name())
            .ok_or_else(|| StoreError::Engine {
                op: "open",
                message: format!("table {} is not one of the store's", def.name()),
            })?;
        let mut slot = cell.try_borrow_mut().map_err(|_| StoreError::Engine {
            op,
            message: format!("table {} is already in use in this write", def.name()),
        })?;
        if slot.is_none() {
            *slot = Some(self.tx.open_table(def).map_err(eng(op))?);
        }
        RefMut::filter_map(slot, Option::as_mut).map_err(|_| StoreError::Engine {
            op,
            message: format!("table {} did not open", def.name()),
        })
    }
    /// Deletes a table that is not open in this transaction (the events indexes, when they
    /// are rebuilt on open).
    fn delete_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<(), StoreError> {
        self.tx.delete_table(def).map_err(eng("open"))?;
        Ok(())
    }
}

/// A table of one key and value type, found by name among the open ones of a transaction.
trait Cached<'a, K: redb::Key + 'static, V: redb::Value + 'static> {
    #[allow(clippy::type_complexity)]
    fn slot(&self, name: &str) -> Option<(&RefCell<Option<Table<'a, K, V>>>, &'static str)>;
}

macro_rules! tables {
    ($($k:ty, $v:ty => { $($def:ident: $field:ident),+ $(,)? })+) => {
        /// The tables a write transaction opened ([`Txn::table`]).
        #[derive(Default)]
        pub(crate) struct Tables<'a> {
            $($($field: RefCell<Option<Table<'a, $k, $v>>>,)+)+
        }
        $(
            impl<'a> Cached<'a, $k, $v> for Tables<'a> {
                fn slot(&self, name: &str) -> Option<(&RefCell<Option<Table<'a, $k, $v>>>, &'static str)> {
                    $(if name == $def.name() {
                        return Some((&self.$field, stringify!($field)));
                    })+
                    None
                }
            }
        )+
    };
}

tables! {
    u128, &'static [u8] => { EVENTS: events, BODIES: bodies }
    (u128, u32), &'static [u8] => { JOBS: jobs }
    (u64, u128, u32), () => { DUE: due }
    (u128, u32, u32), &'static [u8] => { ATTEMPTS: attempts }
    (&'static str, &'static str), (u128, u64) => { IDEM: idempotency }
    (&'static str, &'static str), u64 => { PAUSED: paused }
    (&'static str, &'static str), &'static [u8] => {
        BREAKERS: breakers,
        KV: keyvalue,
        SUBSCRIPTIONS: subscriptions,
    }
    (u128, u32), u64 => { QUARANTINE: quarantine }
    &'static str, u64 => { KV_USAGE: keyvalue_usage, META: meta }
    (&'static str, u128), () => { EVENTS_BY_WEBHOOK_ID: events_by_webhook_id }
    (u8, u128), () => { EVENTS_BY_STATUS: events_by_status }
    (&'static str, u8, u128), () => { EVENTS_BY_BRIDGE_STATUS: events_by_bridge_status }
}

trait WriteOp: Send {
    fn apply(&mut self, tx: &Txn<'_>) -> Result<(), StoreError>;
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
    /// Whether the caller waits for the write to be on disk; a batch of writes that do not
    /// commits without fsync and becomes durable with the next one that does.
    fn durable(&self) -> bool;
}

struct Op<T, F> {
    f: F,
    out: Option<T>,
    reply: Option<oneshot::Sender<Result<T, StoreError>>>,
    durable: bool,
}

impl<T: Send, F: FnMut(&Txn<'_>) -> Result<T, StoreError> + Send> WriteOp for Op<T, F> {
    fn apply(&mut self, tx: &Txn<'_>) -> Result<(), StoreError> {
        self.out = Some((self.f)(tx)?);
        Ok(())
    }
    fn durable(&self) -> bool {
        self.durable
    }
    fn finish(mut self: Box<Self>, committed: Result<(), StoreError>) {
        let res = committed.and_then(|()| {
            self.out.take().ok_or(StoreError::Engine {
                op: "commit",
                message: "no result".into(),
            })
        });
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(res);
        }
    }
}

enum Msg {
    Write(Box<dyn WriteOp>),
    Compact(oneshot::Sender<Result<bool, StoreError>>),
    /// Make every committed write durable (an empty commit with fsync if one is owed).
    Sync(oneshot::Sender<Result<(), StoreError>>),
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: DbHandle,
    path: PathBuf,
    tx: mpsc::Sender<Msg>,
    /// False from an I/O error until the database was reopened and a write committed.
    healthy: Arc<AtomicBool>,
    /// Bytes of keyvalue state (keys and values) one plugin may hold.
    kv_quota: AtomicU64,
    /// The due queue and the hand-off cache (`memory.rs`).
    mem: Arc<Mutex<Memory>>,
    /// When the last write other than retention's was queued (ms since the epoch).
    last_write_ms: Arc<AtomicU64>,
    /// Tests hold retention between its chunks here.
    #[cfg(test)]
    retention_gate: Mutex<Option<RetentionGate>>,
}

#[cfg(test)]
type RetentionGate = tokio::sync::mpsc::UnboundedSender<(usize, oneshot::Sender<()>)>;

/// The database, absent while it is being reopened after an I/O error.
type DbHandle = Arc<RwLock<Option<Database>>>;

/// Default [`EmbeddedStore::set_kv_quota`]: 64 MiB per plugin.
pub const DEFAULT_KV_QUOTA_BYTES: u64 = 64 << 20;

fn unavailable() -> StoreError {
    StoreError::Engine {
        op: "open",
        message: "the database is being reopened after an I/O error".into(),
    }
}

/// Whether an error means the file could not be written (disk full, I/O failure). redb
/// then refuses every later write (`PreviousIo`) until the database is reopened.
fn is_io_error(e: &StoreError) -> bool {
    matches!(e, StoreError::Engine { message, .. } if message.contains("I/O error"))
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::builder()
        .set_cache_size(32 << 20)
        .create(path)
        .map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

fn eng<E: std::fmt::Display>(op: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Engine {
        op,
        message: e.to_string(),
    }
}

fn corrupt<E: std::fmt::Display>(table: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    }
}

fn lock_err<T>(_: T) -> StoreError {
    StoreError::Engine {
        op: "lock",
        message: "store lock poisoned".into(),
    }
}

impl EmbeddedStore {
    /// Open (or create) the store in `dir` (file `events.redb`).
    pub fn open(dir: &Path, metrics: Option<StoreMetrics>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let path = dir.join("events.redb");
        let db = open_db(&path)?;
        // Owner only, whatever the umask: it holds every event's headers and body.
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| StoreError::Open {
                    path: path.display().to_string(),
                    message: e.to_string(),
                },
            )?;
        }
        // Create every table so that reads never meet a missing one.
        let tx = db.begin_write().map_err(eng("open"))?;
        {
            tx.open_table(EVENTS).map_err(eng("open"))?;
            tx.open_table(BODIES).map_err(eng("open"))?;
            tx.open_table(JOBS).map_err(eng("open"))?;
            tx.open_table(DUE).map_err(eng("open"))?;
            tx.open_table(ATTEMPTS).map_err(eng("open"))?;
            tx.open_table(IDEM).map_err(eng("open"))?;
            tx.open_table(PAUSED).map_err(eng("open"))?;
            tx.open_table(BREAKERS).map_err(eng("open"))?;
            tx.open_table(KV).map_err(eng("open"))?;
            tx.open_table(QUARANTINE).map_err(eng("open"))?;
            tx.open_table(KV_USAGE).map_err(eng("open"))?;
            tx.open_table(SUBSCRIPTIONS).map_err(eng("open"))?;
        }
        let built = {
            let txn = Txn::new(&tx);
            check_record_format(&txn, &path)?;
            let built = build_event_index(&txn)?;
            txn.into_changes();
            built
        };
        tx.commit().map_err(eng("open"))?;
        if let Some(n) = built {
            tracing::info!(path = %path.display(), events = n, "store: built the events index of a store written before it");
        }
        let mut mem = Memory::default();
        mem.rebuild(due_keys(&db)?);
        let mem = Arc::new(Mutex::new(mem));
        let db: DbHandle = Arc::new(RwLock::new(Some(db)));
        let (tx, rx) = mpsc::channel();
        let healthy = Arc::new(AtomicBool::new(true));
        // Opened just now: presumed busy (a restart under load), no compaction at once.
        let last_write_ms = Arc::new(AtomicU64::new(now_ms()));
        let writer = Writer {
            db: db.clone(),
            path: path.clone(),
            healthy: healthy.clone(),
            metrics,
            mem: mem.clone(),
            unsynced: false,
            last_write_ms: last_write_ms.clone(),
            last_durable: None,
            durable_gap: SYNC_AFTER,
        };
        std::thread::Builder::new()
            .name("causeway-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                path,
                tx,
                healthy,
                kv_quota: AtomicU64::new(DEFAULT_KV_QUOTA_BYTES),
                mem,
                last_write_ms,
                #[cfg(test)]
                retention_gate: Mutex::new(None),
            }),
        })
    }

    /// Bytes of keyvalue state one plugin may hold (keys and values); a write past it
    /// fails and the plugin sees a keyvalue error.
    pub fn set_kv_quota(&self, bytes: u64) {
        self.inner.kv_quota.store(bytes, Ordering::Relaxed);
    }

    /// Queue a write; the future resolves after the batch holding it is committed and on
    /// disk.
    fn write<T, F>(&self, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnMut(&Txn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_as(true, f)
    }

    /// Queue a write that need not be on disk when the future resolves: it commits with the
    /// next batch (visible to every read at once) and becomes durable with the next durable
    /// commit (an ingest's, or [`SYNC_AFTER`] later). A crash before then loses it; only
    /// attempt records are written so, and a lost one means the job is attempted again.
    fn write_lazy<T, F>(&self, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnMut(&Txn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_as(false, f)
    }

    fn write_as<T, F>(&self, durable: bool, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnMut(&Txn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.last_write_ms.store(now_ms(), Ordering::Relaxed);
        self.enqueue(durable, f)
    }

    /// A durable write of retention's: it does not count as activity that postpones
    /// compaction ([`QUIET_BEFORE_COMPACT`]).
    fn write_background<T, F>(&self, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnMut(&Txn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(true, f)
    }

    fn enqueue<T, F>(&self, durable: bool, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnMut(&Txn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let sent = self.inner.tx.send(Msg::Write(Box::new(Op {
            f,
            out: None,
            reply: Some(reply),
            durable,
        })));
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    /// Run `f` in a read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.inner.db.read().map_err(lock_err)?;
        let db = guard.as_ref().ok_or_else(unavailable)?;
        let tx = db.begin_read().map_err(eng("read"))?;
        let out = f(&tx);
        drop(tx);
        out
    }

    fn compact(&self) -> StoreFuture<bool> {
        let (reply, rx) = oneshot::channel();
        let sent = self.inner.tx.send(Msg::Compact(reply));
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }
}

/// The writer thread: group commits, and recovery from I/O errors.
struct Writer {
    db: DbHandle,
    path: PathBuf,
    healthy: Arc<AtomicBool>,
    metrics: Option<StoreMetrics>,
    mem: Arc<Mutex<Memory>>,
    /// A commit without fsync ([`EmbeddedStore::write_lazy`]) is not on disk yet.
    unsynced: bool,
    /// See [`Inner::last_write_ms`].
    last_write_ms: Arc<AtomicU64>,
    /// When the last batch with a durable write began its commit, and the recent gap between
    /// such batches (a moving average): how long records wait for the next one
    /// ([`Writer::linger`]).
    last_durable: Option<Instant>,
    durable_gap: Duration,
}

/// How often an unhealthy store tries to reopen while no write arrives.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a commit without fsync waits for a durable one to carry it: what a crash may
/// make the worker attempt again.
pub const SYNC_AFTER: Duration = Duration::from_millis(200);
/// Longest a batch of attempt records alone waits for the next durable write to commit
/// with ([`Writer::linger`]); durable writes further apart than this do not make records
/// wait.
pub const LINGER_MAX: Duration = Duration::from_millis(20);
/// A batch of records alone that reaches this many commits without waiting.
const LINGER_MAX_OPS: usize = 64;

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut deferred: Option<Msg> = None;
        loop {
            if !self.healthy.load(Ordering::SeqCst) {
                self.recover();
            }
            let wait = if !self.healthy.load(Ordering::SeqCst) {
                Some(REOPEN_INTERVAL)
            } else if self.unsynced {
                Some(SYNC_AFTER)
            } else {
                None
            };
            let first = match (deferred.take(), wait) {
                (Some(m), _) => m,
                (None, None) => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => return, // every handle dropped
                },
                (None, Some(wait)) => match rx.recv_timeout(wait) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if self.unsynced {
                            let _ = self.sync();
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        if self.unsynced {
                            let _ = self.sync();
                        }
                        return;
                    }
                },
            };
            match first {
                Msg::Compact(reply) => {
                    // A write queued or answered within the quiet time would wait for the
                    // whole compaction: postponed (false) to a quieter run.
                    let last = self.last_write_ms.load(Ordering::Relaxed);
                    let quiet =
                        now_ms().saturating_sub(last) >= QUIET_BEFORE_COMPACT.as_millis() as u64;
                    if !quiet {
                        tracing::debug!("store: compaction postponed: writes are arriving");
                        let _ = reply.send(Ok(false));
                        continue;
                    }
                    // Pages of commits not yet synced are not free to move.
                    let synced = if self.unsynced { self.sync() } else { Ok(()) };
                    let started = Instant::now();
                    let before = std::fs::metadata(&self.path).map_or(0, |m| m.len());
                    let res = synced.and_then(|()| compact(&self.db));
                    if let Ok(true) = res {
                        tracing::info!(
                            ms = started.elapsed().as_millis() as u64,
                            bytes_before = before,
                            bytes_after = std::fs::metadata(&self.path).map_or(0, |m| m.len()),
                            "store: compacted"
                        );
                    }
                    let _ = reply.send(res);
                }
                Msg::Sync(reply) => {
                    let res = if self.unsynced { self.sync() } else { Ok(()) };
                    let _ = reply.send(res);
                }
                Msg::Write(op) => {
                    let mut batch = vec![op];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Msg::Write(op)) => batch.push(op),
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if deferred.is_none() && !batch.iter().any(|op| op.durable()) {
                        deferred = self.linger(&rx, &mut batch);
                    }
                    let started = Instant::now();
                    let n = batch.len();
                    let done = commit_batch(&self.db, &self.mem, batch);
                    if done.synced {
                        self.unsynced = false;
                        self.note_durable(started);
                    }
                    self.unsynced |= done.unsynced;
                    if done.io_error && self.healthy.swap(false, Ordering::SeqCst) {
                        tracing::error!(path = %self.path.display(), "store: I/O error (disk full?): refusing writes until the database reopens");
                    }
                    if let Some(m) = &self.metrics {
                        m.batch_size.observe(n as f64);
                        m.commit_seconds.observe(started.elapsed().as_secs_f64());
                    }
                }
            }
        }
    }

    /// A batch of attempt records alone (writes that need no fsync) waits a little for the
    /// next durable write (an ingest's) when durable writes have been arriving at most
    /// [`LINGER_MAX`] apart, and commits with it: at a low rate an event then costs one
    /// commit instead of two (its ingest's, carrying the previous event's record). Waits
    /// at most twice the recent gap (capped at `LINGER_MAX`), and not at all once
    /// [`LINGER_MAX_OPS`] records are waiting. Returns a message that is not a write, to be
    /// handled after this batch.
    fn linger(&self, rx: &mpsc::Receiver<Msg>, batch: &mut Vec<Box<dyn WriteOp>>) -> Option<Msg> {
        let wait = linger_for(self.last_durable?.elapsed(), self.durable_gap)?;
        let until = Instant::now() + wait;
        while batch.len() < LINGER_MAX_OPS {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Write(op)) => {
                    let durable = op.durable();
                    batch.push(op);
                    if durable {
                        break;
                    }
                }
                Ok(other) => return Some(other),
                Err(_) => return None,
            }
        }
        // Whatever else queued meanwhile joins the batch.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Write(op)) => batch.push(op),
                Ok(other) => return Some(other),
                Err(_) => break,
            }
        }
        None
    }

    /// A batch with a durable write that began committing at `at` is on disk: the gap
    /// since the last one moves [`Writer::durable_gap`] by an eighth.
    fn note_durable(&mut self, at: Instant) {
        if let Some(last) = self.last_durable {
            let gap = at.saturating_duration_since(last).min(SYNC_AFTER);
            self.durable_gap = (self.durable_gap * 7 + gap) / 8;
        }
        self.last_durable = Some(at);
    }

    /// An empty commit with fsync: every commit before it is on disk after it.
    fn sync(&mut self) -> Result<(), StoreError> {
        let res = {
            let guard = self.db.read().map_err(lock_err)?;
            let db = guard.as_ref().ok_or_else(unavailable)?;
            db.begin_write()
                .map_err(eng("sync"))
                .and_then(|tx| tx.commit().map_err(eng("sync")))
        };
        match &res {
            Ok(()) => self.unsynced = false,
            Err(e) if is_io_error(e) => {
                if self.healthy.swap(false, Ordering::SeqCst) {
                    tracing::error!(path = %self.path.display(), "store: I/O error (disk full?): refusing writes until the database reopens");
                }
            }
            Err(_) => {}
        }
        res
    }

    /// Closes and reopens the database (redb refuses every write after an I/O error until
    /// then), and proves it with an empty commit. Healthy again only if that commit works.
    /// Memory's queue is rebuilt from the file: a commit that failed may have reached it.
    fn recover(&mut self) {
        let mut guard = match self.db.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Close first: the file is locked while a handle is open.
        *guard = None;
        let reopened = open_db(&self.path).and_then(|db| {
            let tx = db.begin_write().map_err(eng("begin"))?;
            tx.commit().map_err(eng("commit"))?;
            Ok(db)
        });
        match reopened {
            Ok(db) => {
                let keys = due_keys(&db);
                self.unsynced = false;
                *guard = Some(db);
                // Memory after the database (a scheduler pass holds memory, then reads).
                drop(guard);
                match keys {
                    Ok(keys) => crate::sync::lock(&self.mem).rebuild(keys),
                    Err(e) => tracing::warn!(error = %e, "cannot rebuild the due queue"),
                }
                self.healthy.store(true, Ordering::SeqCst);
                tracing::info!(path = %self.path.display(), "store reopened after an I/O error");
            }
            Err(e) => {
                // Keep it open for reads when it opens at all; retry on the next round.
                *guard = open_db(&self.path).ok();
                tracing::debug!(error = %e, "store still cannot be written");
            }
        }
    }
}

/// How long a batch of records alone waits for the next durable write, when the last
/// one began committing `since` ago and they have been arriving `gap` apart: twice the gap
/// (capped at [`LINGER_MAX`]) from the last one, or not at all when they come further apart
/// than `LINGER_MAX` or the next is already late.
fn linger_for(since: Duration, gap: Duration) -> Option<Duration> {
    let wait = (gap * 2).min(LINGER_MAX);
    if gap > LINGER_MAX || since >= wait {
        return None;
    }
    Some(wait - since)
}

/// What a batch's commit did.
#[derive(Default)]
struct Committed {
    io_error: bool,
    /// A commit with fsync succeeded.
    synced: bool,
    /// A commit without fsync succeeded.
    unsynced: bool,
}

/// Begins a transaction durable or not.
fn begin(db: &Database, durable: bool) -> Result<WriteTransaction, StoreError> {
    let mut tx = db.begin_write().map_err(eng("begin"))?;
    if !durable {
        tx.set_durability(redb::Durability::None)
            .map_err(eng("begin"))?;
    }
    Ok(tx)
}

/// Runs `ops` in one transaction and commits it (then lets memory follow what it
/// changed): the commit's result, or `Err` when an op failed and the transaction was
/// aborted.
fn apply_and_commit(
    tx: WriteTransaction,
    ops: &mut [Box<dyn WriteOp>],
    mem: &Mutex<Memory>,
) -> Result<Result<(), StoreError>, StoreError> {
    let txn = Txn::new(&tx);
    let applied = ops.iter_mut().try_for_each(|op| op.apply(&txn));
    let changes = txn.into_changes();
    if let Err(e) = applied {
        let _ = tx.abort();
        return Err(e);
    }
    Ok(tx.commit().map_err(eng("commit")).map(|()| {
        crate::sync::lock(mem).apply(changes);
    }))
}

/// Commits a batch: with fsync when any of its writes needs it, without otherwise.
fn commit_batch(
    db: &RwLock<Option<Database>>,
    mem: &Mutex<Memory>,
    mut batch: Vec<Box<dyn WriteOp>>,
) -> Committed {
    let mut out = Committed::default();
    let guard = match db.read() {
        Ok(g) => g,
        Err(_) => {
            for op in batch {
                op.finish(Err(lock_err(())));
            }
            return out;
        }
    };
    let Some(db) = guard.as_ref() else {
        for op in batch {
            op.finish(Err(unavailable()));
        }
        out.io_error = true;
        return out;
    };
    let durable = batch.iter().any(|op| op.durable());
    let tx = match begin(db, durable) {
        Ok(tx) => tx,
        Err(err) => {
            out.io_error = is_io_error(&err);
            for op in batch {
                op.finish(Err(err.clone()));
            }
            return out;
        }
    };
    if let Ok(res) = apply_and_commit(tx, &mut batch, mem) {
        out.io_error = res.as_ref().err().is_some_and(is_io_error);
        if res.is_ok() {
            out.synced = durable;
            out.unsynced = !durable;
        }
        for op in batch {
            op.finish(res.clone());
        }
        return out;
    }
    // One failed: run each alone so that the others still commit.
    for mut op in batch {
        let durable = op.durable();
        let res = begin(db, durable).and_then(|tx| {
            apply_and_commit(tx, std::slice::from_mut(&mut op), mem).and_then(|r| r)
        });
        out.io_error |= res.as_ref().err().is_some_and(is_io_error);
        if res.is_ok() {
            if durable {
                out.synced = true;
                out.unsynced = false;
            } else {
                out.unsynced = true;
            }
        }
        op.finish(res);
    }
    out
}

/// Every key of the `due` table, in order.
fn due_keys(db: &Database) -> Result<Vec<(u64, u128, u32)>, StoreError> {
    let tx = db.begin_read().map_err(eng("read"))?;
    let due = tx.open_table(DUE).map_err(eng("due"))?;
    let mut out = Vec::new();
    for row in due.iter().map_err(eng("due"))? {
        let (k, _) = row.map_err(eng("due"))?;
        out.push(k.value());
    }
    Ok(out)
}

/// One compaction (redb moves pages until none moves, then trims the file). Holds the
/// database alone while it runs; a read in progress makes it a no-op (false) this time.
fn compact(db: &RwLock<Option<Database>>) -> Result<bool, StoreError> {
    let mut guard = db.write().map_err(lock_err)?;
    let db = guard.as_mut().ok_or_else(unavailable)?;
    match db.compact() {
        Ok(done) => Ok(done),
        Err(redb::CompactionError::TransactionInProgress) => Ok(false),
        Err(e) => Err(eng("compact")(e)),
    }
}

// ------------------------------------------------------------------ records

/// A record as the embedded store writes it: events, jobs and attempts in the binary
/// encoding of `codec.rs` (JSON ones written by earlier versions still read), the rarely
/// written rest as JSON.
trait Stored: serde::Serialize + serde::de::DeserializeOwned {
    fn to_bytes(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(eng("encode"))
    }
    fn from_bytes(table: &'static str, b: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(b).map_err(corrupt(table))
    }
}

macro_rules! stored_binary {
    ($($t:ty),*) => {$(
        impl Stored for $t {
            fn to_bytes(&self) -> Result<Vec<u8>, StoreError> {
                Ok(super::codec::encode(self))
            }
            fn from_bytes(table: &'static str, b: &[u8]) -> Result<Self, StoreError> {
                match super::codec::decode(b) {
                    Some(res) => res.map_err(corrupt(table)),
                    None => serde_json::from_slice(b).map_err(corrupt(table)),
                }
            }
        }
    )*};
}
stored_binary!(EventRecord, JobRecord, AttemptRecord);
impl Stored for BreakerState {}
impl Stored for SubscriptionRecord {}

fn enc<T: Stored>(v: &T) -> Result<Vec<u8>, StoreError> {
    v.to_bytes()
}

fn dec<T: Stored>(table: &'static str, b: &[u8]) -> Result<T, StoreError> {
    T::from_bytes(table, b)
}

fn job_range(event: u128) -> std::ops::RangeInclusive<(u128, u32)> {
    (event, 0)..=(event, u32::MAX)
}

/// Write a job, keeping the due index (and memory's queue) in step with its status.
fn put_job(
    tx: &Txn,
    jobs: &mut Table<(u128, u32), &[u8]>,
    due: &mut Table<(u64, u128, u32), ()>,
    old: Option<&JobRecord>,
    new: &JobRecord,
) -> Result<(), StoreError> {
    let id = new.event.as_u128();
    if let Some(old) = old
        && old.status.queued()
    {
        due.remove((old.due_at_ms, id, old.slot()))
            .map_err(eng("due"))?;
    }
    if new.status.queued() {
        due.insert((new.due_at_ms, id, new.slot()), ())
            .map_err(eng("due"))?;
        tx.note(Change::Queue(new.clone()));
    } else if old.is_some_and(|o| o.status.queued()) {
        tx.note(Change::Unqueue((id, new.slot())));
    }
    jobs.insert((id, new.slot()), enc(new)?.as_slice())
        .map_err(eng("job"))?;
    Ok(())
}

/// A job record, or `None` when it cannot be decoded. Such a record is reported by
/// `due_jobs` and quarantined; every other read and bridge-wide operation passes over it, so
/// that one bad record never blocks the rest.
fn decode_job(event: u128, index: u32, raw: &[u8]) -> Option<JobRecord> {
    match dec::<JobRecord>("jobs", raw) {
        Ok(j) => Some(j),
        Err(e) => {
            tracing::debug!(event = %EventId::from_u128(event), index, error = %e, "passing over an undecodable job record");
            None
        }
    }
}

/// An event's jobs that decode, and how many of its job records do not.
fn load_jobs(
    jobs: &impl ReadableTable<(u128, u32), &'static [u8]>,
    event: u128,
) -> Result<(Vec<JobRecord>, usize), StoreError> {
    let mut out = Vec::new();
    let mut undecodable = 0;
    for row in jobs.range(job_range(event)).map_err(eng("jobs"))? {
        let (k, v) = row.map_err(eng("jobs"))?;
        match decode_job(event, k.value().1, v.value()) {
            Some(j) => out.push(j),
            None => undecodable += 1,
        }
    }
    Ok((out, undecodable))
}

/// Every job record that decodes and that `keep` keeps.
fn scan_jobs(
    jobs: &impl ReadableTable<(u128, u32), &'static [u8]>,
    keep: impl Fn(&JobRecord) -> bool,
) -> Result<Vec<JobRecord>, StoreError> {
    let mut out = Vec::new();
    for row in jobs.iter().map_err(eng("jobs"))? {
        let (k, v) = row.map_err(eng("jobs"))?;
        let (event, index) = k.value();
        if let Some(j) = decode_job(event, index, v.value())
            && keep(&j)
        {
            out.push(j);
        }
    }
    Ok(out)
}

/// Event status from its jobs.
fn status_from_jobs(jobs: &[JobRecord], current: EventStatus) -> EventStatus {
    if current == EventStatus::Filtered {
        return current;
    }
    if jobs
        .iter()
        .any(|j| j.status.queued() || j.status == JobStatus::Paused)
    {
        EventStatus::Pending
    } else if jobs.iter().any(|j| j.status == JobStatus::Dead)
        || (jobs.is_empty() && current == EventStatus::Dead)
    {
        EventStatus::Dead
    } else {
        EventStatus::Delivered
    }
}

/// The index's number for a status (its order is the key order only).
fn status_key(s: EventStatus) -> u8 {
    match s {
        EventStatus::Pending => 0,
        EventStatus::Delivered => 1,
        EventStatus::Dead => 2,
        EventStatus::Filtered => 3,
    }
}

/// Keep the events indexes in step with one record: `old` is what [`EVENTS`] held for it,
/// `new` what it holds now (None: deleted).
fn index_event(
    tx: &Txn<'_>,
    old: Option<&EventRecord>,
    new: Option<&EventRecord>,
) -> Result<(), StoreError> {
    index_keys(tx, old.map(IndexKeys::of), new.map(IndexKeys::of))
}

/// What the events indexes key an event by.
#[derive(Clone, Copy, PartialEq)]
struct IndexKeys<'a> {
    id: u128,
    bridge: &'a str,
    status: u8,
    webhook: Option<&'a str>,
}

impl<'a> IndexKeys<'a> {
    fn of(r: &'a EventRecord) -> IndexKeys<'a> {
        IndexKeys {
            id: r.id.as_u128(),
            bridge: &r.bridge,
            status: status_key(r.status),
            webhook: r.webhook_id(),
        }
    }
}

/// [`index_event`] on the keys alone. Each index is touched only when its key changes: a
/// delivered event changes its status, not its bridge or webhook id, so it rewrites two
/// entries, not four.
fn index_keys<'a>(
    tx: &Txn<'_>,
    old: Option<IndexKeys<'a>>,
    new: Option<IndexKeys<'a>>,
) -> Result<(), StoreError> {
    if old == new {
        return Ok(());
    }
    move_entry(
        tx,
        EVENTS_BY_STATUS,
        old.map(|k| (k.status, k.id)),
        new.map(|k| (k.status, k.id)),
    )?;
    move_entry(
        tx,
        EVENTS_BY_BRIDGE_STATUS,
        old.map(|k| (k.bridge, k.status, k.id)),
        new.map(|k| (k.bridge, k.status, k.id)),
    )?;
    move_entry(
        tx,
        EVENTS_BY_WEBHOOK_ID,
        old.and_then(|k| k.webhook.map(|w| (w, k.id))),
        new.and_then(|k| k.webhook.map(|w| (w, k.id))),
    )
}

/// Move one key-only index entry from `old` to `new` (None: absent), opening the table
/// only when the key changed.
fn move_entry<'a, 'k, K: redb::Key + 'static>(
    tx: &Txn<'a>,
    table: TableDefinition<K, ()>,
    old: Option<K::SelfType<'k>>,
    new: Option<K::SelfType<'k>>,
) -> Result<(), StoreError>
where
    K::SelfType<'k>: PartialEq,
    Tables<'a>: Cached<'a, K, ()>,
{
    if old == new {
        return Ok(());
    }
    let mut t = tx.table(table)?;
    if let Some(k) = old {
        t.remove(k).map_err(eng("index"))?;
    }
    if let Some(k) = new {
        t.insert(k, ()).map_err(eng("index"))?;
    }
    Ok(())
}

/// Write an event record and its index entries. Every write of [`EVENTS`] goes through
/// here (or [`delete_event`]): the index is never written apart from the record.
fn put_event(
    tx: &Txn<'_>,
    events: &mut Table<u128, &[u8]>,
    rec: &EventRecord,
) -> Result<(), StoreError> {
    let id = rec.id.as_u128();
    let old = events
        .insert(id, enc(rec)?.as_slice())
        .map_err(eng("events"))?
        .and_then(|v| dec::<EventRecord>("events", v.value()).ok());
    index_event(tx, old.as_ref(), Some(rec))
}

/// Refuse a file written by a newer worker ([`RECORD_FORMAT`]); mark an older one as
/// holding this version's records from now on.
fn check_record_format(tx: &Txn<'_>, path: &Path) -> Result<(), StoreError> {
    let mut meta = tx.table(META)?;
    let found = meta
        .get(RECORD_FORMAT_KEY)
        .map_err(eng("open"))?
        .map(|v| v.value());
    match found {
        Some(v) if v > RECORD_FORMAT => Err(StoreError::Open {
            path: path.display().to_string(),
            message: format!(
                "written by a newer worker (record format {v}; this one reads up to {RECORD_FORMAT}): run that version, or move the data with `causeway store export` and `causeway store import`"
            ),
        }),
        Some(v) if v == RECORD_FORMAT => Ok(()),
        _ => {
            meta.insert(RECORD_FORMAT_KEY, RECORD_FORMAT)
                .map_err(eng("open"))?;
            Ok(())
        }
    }
}

/// Build the events indexes from [`EVENTS`] when the file has none yet (written before
/// them); returns how many events were indexed then. Runs in the transaction that opens
/// the store, so a crash halfway leaves the file as it was and the next open builds again.
fn build_event_index(tx: &Txn<'_>) -> Result<Option<u64>, StoreError> {
    let mut meta = tx.table(META)?;
    let version = meta
        .get(EVENT_INDEX_KEY)
        .map_err(eng("open"))?
        .map(|v| v.value());
    if version == Some(EVENT_INDEX_VERSION) {
        return Ok(None);
    }
    // Version 1 kept the other three as version 2 does: drop its by-bridge index.
    tx.delete_table(EVENTS_BY_BRIDGE_V1)?;
    if version == Some(1) {
        meta.insert(EVENT_INDEX_KEY, EVENT_INDEX_VERSION)
            .map_err(eng("open"))?;
        return Ok(None);
    }
    // Clear whatever a different version left, then index every record.
    tx.delete_table(EVENTS_BY_STATUS)?;
    tx.delete_table(EVENTS_BY_BRIDGE_STATUS)?;
    tx.delete_table(EVENTS_BY_WEBHOOK_ID)?;
    // Created even when there is nothing to index: reads never meet a missing table.
    tx.table(EVENTS_BY_STATUS)?;
    tx.table(EVENTS_BY_BRIDGE_STATUS)?;
    tx.table(EVENTS_BY_WEBHOOK_ID)?;
    let events = tx.table(EVENTS)?;
    let mut n = 0u64;
    for row in events.iter().map_err(eng("open"))? {
        let (k, v) = row.map_err(eng("open"))?;
        match dec::<EventRecord>("events", v.value()) {
            Ok(rec) => {
                index_event(tx, None, Some(&rec))?;
                n += 1;
            }
            // Listed by no index, as `list_events` passes over it.
            Err(e) => {
                tracing::warn!(event = %EventId::from_u128(k.value()), error = %e, "store: an event record that cannot be decoded is left out of the index")
            }
        }
    }
    meta.insert(EVENT_INDEX_KEY, EVENT_INDEX_VERSION)
        .map_err(eng("open"))?;
    Ok(Some(n))
}

fn refresh_event(tx: &Txn<'_>, event: u128, reason: Option<String>) -> Result<(), StoreError> {
    let jobs = tx.table(JOBS)?;
    let (list, undecodable) = load_jobs(&*jobs, event)?;
    drop(jobs);
    let mut events = tx.table(EVENTS)?;
    let Some(raw) = events
        .get(event)
        .map_err(eng("events"))?
        .map(|v| v.value().to_vec())
    else {
        return Ok(());
    };
    let mut rec: EventRecord = dec("events", &raw)?;
    // A job that cannot be read is not known to be finished: the event stays pending.
    let status = if undecodable > 0 && rec.status != EventStatus::Filtered {
        EventStatus::Pending
    } else {
        status_from_jobs(&list, rec.status)
    };
    if status != rec.status || reason.is_some() {
        let was = status_key(rec.status);
        rec.status = status;
        if reason.is_some() {
            rec.reason = reason;
        } else if status == EventStatus::Delivered {
            rec.reason = None;
        }
        // Only the status moved: the indexes follow it without decoding the old record.
        events
            .insert(event, enc(&rec)?.as_slice())
            .map_err(eng("events"))?;
        let new = IndexKeys::of(&rec);
        index_keys(tx, Some(IndexKeys { status: was, ..new }), Some(new))?;
    }
    Ok(())
}

/// Delete an event with its body, jobs, attempts and due entries.
fn delete_event(tx: &Txn, event: u128) -> Result<u64, StoreError> {
    tx.note(Change::Forget(event));
    let mut freed = 0u64;
    let mut events = tx.table(EVENTS)?;
    if let Some(v) = events.remove(event).map_err(eng("events"))? {
        freed += v.value().len() as u64;
        if let Ok(old) = dec::<EventRecord>("events", v.value()) {
            index_event(tx, Some(&old), None)?;
        }
    }
    let mut bodies = tx.table(BODIES)?;
    if let Some(v) = bodies.remove(event).map_err(eng("bodies"))? {
        freed += v.value().len() as u64;
    }
    let mut jobs = tx.table(JOBS)?;
    let mut due = tx.table(DUE)?;
    for j in load_jobs(&*jobs, event)?.0 {
        if j.status.queued() {
            due.remove((j.due_at_ms, event, j.slot()))
                .map_err(eng("due"))?;
            tx.note(Change::Unqueue((event, j.slot())));
        }
    }
    jobs.retain_in(job_range(event), |_, _| false)
        .map_err(eng("jobs"))?;
    let mut attempts = tx.table(ATTEMPTS)?;
    attempts
        .retain_in((event, 0, 0)..=(event, u32::MAX, u32::MAX), |_, _| false)
        .map_err(eng("attempts"))?;
    tx.table(QUARANTINE)?
        .retain_in(job_range(event), |_, _| false)
        .map_err(eng("quarantine"))?;
    Ok(freed)
}

fn requeue(job: &JobRecord, now_ms: u64) -> JobRecord {
    JobRecord {
        status: JobStatus::Pending,
        due_at_ms: now_ms,
        attempts_at_queue: job.attempts,
        last_error: None,
        ..job.clone()
    }
}

impl Store for EmbeddedStore {
    fn append(&self, ev: NewEvent) -> StoreFuture<Appended> {
        // The event as delivery will want it, built once (nothing copied): handed over in
        // memory when a job is due at once.
        let NewEvent {
            record,
            body,
            jobs: new_jobs,
            idempotency,
        } = ev;
        let hand_off = new_jobs
            .iter()
            .any(|j| j.due_at_ms <= record.received_at_ms.saturating_add(HAND_OFF_WITHIN_MS));
        let ev = Arc::new(EventDetail {
            record,
            body,
            jobs: Vec::new(),
        });
        self.write(move |tx| {
            let id = ev.record.id;
            if let Some((key, expires)) = &idempotency {
                let mut idem = tx.table(IDEM)?;
                let held = idem
                    .get((ev.record.bridge.as_str(), key.as_str()))
                    .map_err(eng("idempotency"))?
                    .map(|v| v.value());
                if let Some((first, exp)) = held
                    && exp > ev.record.received_at_ms
                {
                    return Ok(Appended {
                        id: EventId::from_u128(first),
                        duplicate: true,
                    });
                }
                idem.insert(
                    (ev.record.bridge.as_str(), key.as_str()),
                    (id.as_u128(), *expires),
                )
                .map_err(eng("idempotency"))?;
            }
            let mut events = tx.table(EVENTS)?;
            put_event(tx, &mut events, &ev.record)?;
            let mut bodies = tx.table(BODIES)?;
            bodies
                .insert(id.as_u128(), ev.body.as_ref())
                .map_err(eng("bodies"))?;
            let mut jobs = tx.table(JOBS)?;
            let mut due = tx.table(DUE)?;
            for j in &new_jobs {
                let rec = JobRecord::queued(id, &ev.record.bridge, ev.record.received_at_ms, j);
                put_job(tx, &mut jobs, &mut due, None, &rec)?;
            }
            if hand_off {
                tx.note(Change::Hot(ev.clone(), new_jobs.len() as u32));
            }
            Ok(Appended {
                id,
                duplicate: false,
            })
        })
    }

    fn due_jobs(
        &self,
        now_ms: u64,
        limit: usize,
        claimed: JobFilter<JobKey>,
        hold: JobFilter<JobRecord>,
    ) -> StoreFuture<DueJobs> {
        Box::pin(std::future::ready(
            self.due_from_memory(now_ms, limit, claimed, hold, false),
        ))
    }

    /// Claims in memory: a claimed job leaves the queue's walk until its attempt's record
    /// commits or [`Store::release`] puts it back.
    fn claim_due(
        &self,
        now_ms: u64,
        limit: usize,
        claimed: JobFilter<JobKey>,
        hold: JobFilter<JobRecord>,
    ) -> StoreFuture<DueJobs> {
        Box::pin(std::future::ready(
            self.due_from_memory(now_ms, limit, claimed, hold, true),
        ))
    }

    /// Claims in memory, like [`Store::claim_due`], without a pass over the queue.
    fn claim_jobs(
        &self,
        keys: Vec<JobKey>,
        now_ms: u64,
        claimed: JobFilter<JobKey>,
        hold: JobFilter<JobRecord>,
    ) -> StoreFuture<Vec<JobRecord>> {
        let jobs = crate::sync::lock(&self.inner.mem).claim_keys(&keys, now_ms, &claimed, &hold);
        Box::pin(std::future::ready(Ok(jobs)))
    }

    /// One writer thread takes writes in the order they were queued. Not while the file
    /// refuses writes (an I/O error, until it reopens): a step's result would fail, and
    /// deliveries started ahead of it would be made again with each rerun of the step.
    fn writes_in_order(&self) -> bool {
        self.inner.healthy.load(Ordering::SeqCst)
    }

    fn release(&self, jobs: Vec<JobKey>) -> StoreFuture<()> {
        crate::sync::lock(&self.inner.mem).release(&jobs);
        Box::pin(std::future::ready(Ok(())))
    }

    fn event_for_delivery(&self, id: EventId) -> StoreFuture<Option<Arc<EventDetail>>> {
        if let Some(d) = crate::sync::lock(&self.inner.mem).hot(id) {
            return Box::pin(std::future::ready(Ok(Some(d))));
        }
        let res = self.read(|tx| {
            let events = tx.open_table(EVENTS).map_err(eng("events"))?;
            let Some(raw) = events.get(id.as_u128()).map_err(eng("events"))? else {
                return Ok(None);
            };
            let record: EventRecord = dec("events", raw.value())?;
            let body = tx
                .open_table(BODIES)
                .map_err(eng("bodies"))?
                .get(id.as_u128())
                .map_err(eng("bodies"))?
                .map(|v| Bytes::copy_from_slice(v.value()))
                .unwrap_or_default();
            Ok(Some(Arc::new(EventDetail {
                record,
                body,
                jobs: Vec::new(),
            })))
        });
        Box::pin(std::future::ready(res))
    }

    fn flush(&self) -> StoreFuture<()> {
        let (reply, rx) = oneshot::channel();
        let sent = self.inner.tx.send(Msg::Sync(reply));
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn quarantine(&self, jobs: Vec<(u64, JobKey)>) -> StoreFuture<usize> {
        self.write(move |tx| {
            let mut due = tx.table(DUE)?;
            let mut q = tx.table(QUARANTINE)?;
            let mut n = 0;
            for (at, k) in &jobs {
                let (event, index) = (k.event.as_u128(), k.index);
                if due
                    .remove((*at, event, index))
                    .map_err(eng("due"))?
                    .is_some()
                {
                    q.insert((event, index), *at).map_err(eng("quarantine"))?;
                    tx.note(Change::Unqueue((event, index)));
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    fn finish_attempt(&self, u: JobUpdate) -> StoreFuture<JobRecord> {
        // The attempt's record rides with the next durable commit (the next ingests'): a
        // crash before it makes the job attempted again, never lost.
        self.write_lazy(move |tx| {
            let id = u.job.event.as_u128();
            let mut jobs = tx.table(JOBS)?;
            let mut due = tx.table(DUE)?;
            let old: JobRecord = match jobs.get((id, u.job.index)).map_err(eng("jobs"))? {
                Some(v) => dec("jobs", v.value())?,
                None => {
                    return Err(StoreError::NotFound(format!(
                        "job {}#{}",
                        u.job.event, u.job.index
                    )));
                }
            };
            let mut new = old.clone();
            if let Some(a) = &u.attempt {
                new.attempts += 1;
                new.last_error = a
                    .error
                    .clone()
                    .or_else(|| a.status_code.map(|c| format!("status {c}")));
                let mut attempts = tx.table(ATTEMPTS)?;
                attempts
                    .insert((id, u.job.index, new.attempts), enc(a)?.as_slice())
                    .map_err(eng("attempts"))?;
            }
            let mut event_reason = None;
            match &u.next {
                Next::Delivered => {
                    new.status = JobStatus::Delivered;
                    new.last_error = None;
                }
                Next::Retry { due_at_ms } => {
                    new.status = JobStatus::Retrying;
                    new.due_at_ms = *due_at_ms;
                }
                Next::Dead { reason } => {
                    new.status = JobStatus::Dead;
                    new.last_error = Some(reason.clone());
                    event_reason = Some(reason.clone());
                }
                Next::Paused => {
                    new.status = JobStatus::Paused;
                    let mut paused = tx.table(PAUSED)?;
                    let now = u.attempt.as_ref().map(|a| a.at_ms).unwrap_or_else(now_ms);
                    paused
                        .insert(
                            (
                                new.bridge.as_str(),
                                new.target.destination_name().unwrap_or_default(),
                            ),
                            now,
                        )
                        .map_err(eng("paused"))?;
                }
                Next::StepsDone {
                    body,
                    jobs: next_jobs,
                } => {
                    new.status = JobStatus::Delivered;
                    let mut bodies = tx.table(BODIES)?;
                    bodies.insert(id, body.as_ref()).map_err(eng("bodies"))?;
                    drop(bodies);
                    // The record's size follows the body the steps left.
                    {
                        let mut events = tx.table(EVENTS)?;
                        let raw = events
                            .get(id)
                            .map_err(eng("events"))?
                            .map(|v| v.value().to_vec());
                        if let Some(raw) = raw {
                            let mut rec: EventRecord = dec("events", &raw)?;
                            rec.body_bytes = body.len() as u64;
                            put_event(tx, &mut events, &rec)?;
                            // Its deliveries get the steps' body without reading it back.
                            let soon = now_ms().saturating_add(HAND_OFF_WITHIN_MS);
                            if next_jobs.iter().any(|j| j.due_at_ms <= soon) {
                                tx.note(Change::Hot(
                                    Arc::new(EventDetail {
                                        record: rec,
                                        body: body.clone(),
                                        jobs: Vec::new(),
                                    }),
                                    next_jobs.len() as u32,
                                ));
                            }
                        }
                    }
                    for j in next_jobs {
                        let rec =
                            JobRecord::queued(u.job.event, &old.bridge, old.received_at_ms, j);
                        put_job(tx, &mut jobs, &mut due, None, &rec)?;
                    }
                }
                Next::FannedOut { children } => {
                    new.status = JobStatus::Delivered;
                    let mut events = tx.table(EVENTS)?;
                    let mut bodies = tx.table(BODIES)?;
                    for child in children {
                        let cid = child.record.id.as_u128();
                        // Written by an earlier run of the same steps: keep it.
                        if events.get(cid).map_err(eng("events"))?.is_some() {
                            continue;
                        }
                        put_event(tx, &mut events, &child.record)?;
                        bodies
                            .insert(cid, child.body.as_ref())
                            .map_err(eng("bodies"))?;
                        for j in &child.jobs {
                            let rec = JobRecord::queued(
                                child.record.id,
                                &child.record.bridge,
                                child.record.received_at_ms,
                                j,
                            );
                            put_job(tx, &mut jobs, &mut due, None, &rec)?;
                        }
                        tx.note(Change::Hot(
                            Arc::new(EventDetail {
                                record: child.record.clone(),
                                body: child.body.clone(),
                                jobs: Vec::new(),
                            }),
                            child.jobs.len() as u32,
                        ));
                    }
                    let raw = events
                        .get(id)
                        .map_err(eng("events"))?
                        .map(|v| v.value().to_vec());
                    if let Some(raw) = raw {
                        let mut rec: EventRecord = dec("events", &raw)?;
                        rec.children = children.iter().map(|c| c.record.id).collect();
                        put_event(tx, &mut events, &rec)?;
                    }
                    event_reason = Some(format!("fanned out into {} events", children.len()));
                }
                Next::Filtered { reason } => {
                    new.status = JobStatus::Delivered;
                    let mut events = tx.table(EVENTS)?;
                    let raw = events
                        .get(id)
                        .map_err(eng("events"))?
                        .map(|v| v.value().to_vec());
                    if let Some(raw) = raw {
                        let mut rec: EventRecord = dec("events", &raw)?;
                        rec.status = EventStatus::Filtered;
                        rec.reason = Some(reason.clone());
                        put_event(tx, &mut events, &rec)?;
                    }
                }
            }
            put_job(tx, &mut jobs, &mut due, Some(&old), &new)?;
            drop(jobs);
            drop(due);
            refresh_event(tx, id, event_reason)?;
            if !matches!(u.next, Next::StepsDone { .. }) {
                tx.note(Change::Attempted(id));
            }
            Ok(new)
        })
    }

    fn event(&self, id: EventId) -> StoreFuture<Option<EventDetail>> {
        let res = self.read(|tx| {
            let events = tx.open_table(EVENTS).map_err(eng("events"))?;
            let Some(raw) = events.get(id.as_u128()).map_err(eng("events"))? else {
                return Ok(None);
            };
            let record: EventRecord = dec("events", raw.value())?;
            let bodies = tx.open_table(BODIES).map_err(eng("bodies"))?;
            let body = bodies
                .get(id.as_u128())
                .map_err(eng("bodies"))?
                .map(|v| Bytes::copy_from_slice(v.value()))
                .unwrap_or_default();
            let jobs = tx.open_table(JOBS).map_err(eng("jobs"))?;
            let attempts = tx.open_table(ATTEMPTS).map_err(eng("attempts"))?;
            let mut out = Vec::new();
            for job in load_jobs(&jobs, id.as_u128())?.0 {
                let mut list = Vec::new();
                let e = id.as_u128();
                for row in attempts
                    .range((e, job.slot(), 0)..=(e, job.slot(), u32::MAX))
                    .map_err(eng("attempts"))?
                {
                    let (_, v) = row.map_err(eng("attempts"))?;
                    list.push(dec("attempts", v.value())?);
                }
                out.push((job, list));
            }
            Ok(Some(EventDetail {
                record,
                body,
                jobs: out,
            }))
        });
        Box::pin(std::future::ready(res))
    }

    /// Newest first through the narrowest index the query has (webhook-id, then bridge
    /// and status, bridge, status), or the id-ordered table without a filter; the cursor
    /// and the time filter bound the range read. Each key costs one read of its record.
    fn list_events(&self, q: EventQuery) -> StoreFuture<Vec<EventRecord>> {
        let res = self.read(|tx| {
            let events = tx.open_table(EVENTS).map_err(eng("events"))?;
            let limit = if q.limit == 0 { 100 } else { q.limit };
            let (lo, hi) = q.id_range();
            let mut out = Vec::new();
            if lo >= hi {
                return Ok(out);
            }
            // What the index chosen does not key, and the exact time. What it keys is
            // taken as it says (the contract suite checks it never goes stale).
            let by_webhook = q.webhook_id.is_some();
            let keep = |rec: &EventRecord| {
                (!by_webhook
                    || (q.bridge.as_ref().is_none_or(|b| b == &rec.bridge)
                        && q.status.is_none_or(|s| s == rec.status)))
                    && q.in_time(rec)
            };
            let mut take = |id: u128| -> Result<bool, StoreError> {
                let Some(v) = events.get(id).map_err(eng("events"))? else {
                    return Ok(false);
                };
                let rec: EventRecord = dec("events", v.value())?;
                if keep(&rec) {
                    out.push(rec);
                }
                Ok(out.len() >= limit)
            };
            match (&q.webhook_id, &q.bridge, q.status) {
                (Some(w), _, _) => {
                    let t = tx.open_table(EVENTS_BY_WEBHOOK_ID).map_err(eng("index"))?;
                    for row in t
                        .range((w.as_str(), lo)..(w.as_str(), hi))
                        .map_err(eng("index"))?
                        .rev()
                    {
                        if take(row.map_err(eng("index"))?.0.value().1)? {
                            break;
                        }
                    }
                }
                (None, Some(b), Some(st)) => {
                    let t = tx
                        .open_table(EVENTS_BY_BRIDGE_STATUS)
                        .map_err(eng("index"))?;
                    let st = status_key(st);
                    let rows = t
                        .range((b.as_str(), st, lo)..(b.as_str(), st, hi))
                        .map_err(eng("index"))?;
                    for row in rows.rev() {
                        if take(row.map_err(eng("index"))?.0.value().2)? {
                            break;
                        }
                    }
                }
                (None, Some(b), None) => {
                    // Newest first across the bridge's four status ranges.
                    let t = tx
                        .open_table(EVENTS_BY_BRIDGE_STATUS)
                        .map_err(eng("index"))?;
                    let mut ranges = Vec::new();
                    for st in EventStatus::ALL.map(status_key) {
                        let r = t
                            .range((b.as_str(), st, lo)..(b.as_str(), st, hi))
                            .map_err(eng("index"))?;
                        ranges.push(r.rev().peekable());
                    }
                    loop {
                        let mut newest: Option<(usize, u128)> = None;
                        for (i, r) in ranges.iter_mut().enumerate() {
                            let id = match r.peek() {
                                None => continue,
                                Some(Ok((k, _))) => k.value().2,
                                Some(Err(_)) => {
                                    if let Some(Err(e)) = r.next() {
                                        return Err(eng("index")(e));
                                    }
                                    continue;
                                }
                            };
                            if newest.is_none_or(|(_, n)| id > n) {
                                newest = Some((i, id));
                            }
                        }
                        let Some((i, id)) = newest else { break };
                        ranges[i].next();
                        if take(id)? {
                            break;
                        }
                    }
                }
                (None, None, Some(st)) => {
                    let t = tx.open_table(EVENTS_BY_STATUS).map_err(eng("index"))?;
                    let st = status_key(st);
                    for row in t.range((st, lo)..(st, hi)).map_err(eng("index"))?.rev() {
                        if take(row.map_err(eng("index"))?.0.value().1)? {
                            break;
                        }
                    }
                }
                (None, None, None) => {
                    for row in events.range(lo..hi).map_err(eng("events"))?.rev() {
                        let (_, v) = row.map_err(eng("events"))?;
                        let rec: EventRecord = dec("events", v.value())?;
                        if q.in_time(&rec) {
                            out.push(rec);
                            if out.len() >= limit {
                                break;
                            }
                        }
                    }
                }
            }
            Ok(out)
        });
        Box::pin(std::future::ready(res))
    }

    fn stream_events(&self, q: StreamRead) -> StoreFuture<StreamPage> {
        let res = self.read(|tx| {
            let events = tx.open_table(EVENTS).map_err(eng("events"))?;
            let bodies = tx.open_table(BODIES).map_err(eng("bodies"))?;
            let jobs = tx.open_table(JOBS).map_err(eng("jobs"))?;
            let lo = q.after.map(|a| a.as_u128().saturating_add(1)).unwrap_or(0);
            let hi = q.before.map(|b| b.as_u128()).unwrap_or(u128::MAX);
            let mut page = StreamPage::default();
            if lo >= hi {
                return Ok(page);
            }
            for row in events.range(lo..hi).map_err(eng("events"))? {
                let (k, v) = row.map_err(eng("events"))?;
                let rec: EventRecord = dec("events", v.value())?;
                if rec.bridge != q.bridge {
                    continue;
                }
                let steps = match jobs.get((k.value(), STEPS_SLOT)).map_err(eng("jobs"))? {
                    None => None,
                    Some(raw) => decode_job(k.value(), STEPS_SLOT, raw.value()).map(|j| j.status),
                };
                match stream_decision(&rec, steps) {
                    StreamDecision::Skip => continue,
                    StreamDecision::Hold => {
                        page.held = Some(rec.id);
                        break;
                    }
                    StreamDecision::Serve => {}
                }
                let body = bodies
                    .get(k.value())
                    .map_err(eng("bodies"))?
                    .map(|v| Bytes::copy_from_slice(v.value()))
                    .unwrap_or_default();
                page.items.push(StreamItem {
                    id: rec.id,
                    received_at_ms: rec.received_at_ms,
                    body,
                });
                if page.items.len() >= q.limit.max(1) {
                    break;
                }
            }
            Ok(page)
        });
        Box::pin(std::future::ready(res))
    }

    fn replay_event(&self, id: EventId, now: u64) -> StoreFuture<usize> {
        self.write(move |tx| {
            let e = id.as_u128();
            {
                let events = tx.table(EVENTS)?;
                if events.get(e).map_err(eng("events"))?.is_none() {
                    return Err(StoreError::NotFound(format!("event {id}")));
                }
            }
            let mut jobs = tx.table(JOBS)?;
            let mut due = tx.table(DUE)?;
            let mut n = 0;
            for j in load_jobs(&*jobs, e)?.0 {
                if matches!(j.status, JobStatus::Dead | JobStatus::Delivered)
                    && j.target != JobTarget::Steps
                {
                    put_job(tx, &mut jobs, &mut due, Some(&j), &requeue(&j, now))?;
                    n += 1;
                }
            }
            drop(jobs);
            drop(due);
            refresh_event(tx, e, None)?;
            Ok(n)
        })
    }

    fn replay_dead(&self, bridge: String, now: u64) -> StoreFuture<usize> {
        self.write(move |tx| {
            let mut jobs = tx.table(JOBS)?;
            let mut due = tx.table(DUE)?;
            let dead = scan_jobs(&*jobs, |j| {
                j.status == JobStatus::Dead && j.bridge == bridge
            })?;
            for j in &dead {
                put_job(tx, &mut jobs, &mut due, Some(j), &requeue(j, now))?;
            }
            drop(jobs);
            drop(due);
            let mut events: Vec<u128> = dead.iter().map(|j| j.event.as_u128()).collect();
            events.dedup();
            for e in events {
                refresh_event(tx, e, None)?;
            }
            Ok(dead.len())
        })
    }

    fn purge(&self, bridge: String) -> StoreFuture<usize> {
        self.write(move |tx| {
            let mut jobs = tx.table(JOBS)?;
            let mut due = tx.table(DUE)?;
            let gone = scan_jobs(&*jobs, |j| {
                j.bridge == bridge && (j.status.queued() || j.status == JobStatus::Paused)
            })?;
            for j in &gone {
                let id = j.event.as_u128();
                if j.status.queued() {
                    due.remove((j.due_at_ms, id, j.slot()))
                        .map_err(eng("due"))?;
                    tx.note(Change::Unqueue((id, j.slot())));
                }
                tx.note(Change::Forget(id));
                jobs.remove((id, j.slot())).map_err(eng("jobs"))?;
            }
            drop(jobs);
            drop(due);
            let mut events: Vec<u128> = gone.iter().map(|j| j.event.as_u128()).collect();
            events.dedup();
            for e in events {
                let jobs = tx.table(JOBS)?;
                let (left, _) = load_jobs(&*jobs, e)?;
                drop(jobs);
                // An event left with nothing to deliver is finished: dead, with the reason.
                let reason =
                    if left.iter().all(|j| j.status == JobStatus::Delivered) && !left.is_empty() {
                        None
                    } else {
                        Some("purged".to_string())
                    };
                refresh_event(tx, e, reason.clone())?;
                if left.is_empty() {
                    let mut events = tx.table(EVENTS)?;
                    let raw = events
                        .get(e)
                        .map_err(eng("events"))?
                        .map(|v| v.value().to_vec());
                    if let Some(raw) = raw {
                        let mut rec: EventRecord = dec("events", &raw)?;
                        rec.status = EventStatus::Dead;
                        rec.reason = reason;
                        put_event(tx, &mut events, &rec)?;
                    }
                }
            }
            Ok(gone.len())
        })
    }

    fn set_paused(
        &self,
        bridge: String,
        destination: String,
        pause: bool,
        now: u64,
    ) -> StoreFuture<usize> {
        self.write(move |tx| {
            let mut paused = tx.table(PAUSED)?;
            if pause {
                paused
                    .insert((bridge.as_str(), destination.as_str()), now)
                    .map_err(eng("paused"))?;
                return Ok(0);
            }
            paused
                .remove((bridge.as_str(), destination.as_str()))
                .map_err(eng("paused"))?;
            drop(paused);
            // Resumed: its circuit breaker starts closed.
            tx.table(BREAKERS)?
                .remove((bridge.as_str(), destination.as_str()))
                .map_err(eng("breakers"))?;
            let mut jobs = tx.table(JOBS)?;
            let mut due = tx.table(DUE)?;
            let held = scan_jobs(&*jobs, |j| {
                j.status == JobStatus::Paused
                    && j.bridge == bridge
                    && j.target.destination_name() == Some(destination.as_str())
            })?;
            for j in &held {
                // The paused attempt failed; resuming retries it with the budget it had.
                let next = JobRecord {
                    status: JobStatus::Retrying,
                    due_at_ms: now,
                    ..j.clone()
                };
                put_job(tx, &mut jobs, &mut due, Some(j), &next)?;
            }
            Ok(held.len())
        })
    }

    fn paused(&self) -> StoreFuture<Vec<(String, String)>> {
        let res = self.read(|tx| {
            let paused = tx.open_table(PAUSED).map_err(eng("paused"))?;
            let mut out = Vec::new();
            for row in paused.iter().map_err(eng("paused"))? {
                let (k, _) = row.map_err(eng("paused"))?;
                let (b, d) = k.value();
                out.push((b.to_string(), d.to_string()));
            }
            Ok(out)
        });
        Box::pin(std::future::ready(res))
    }

    fn breakers(&self) -> StoreFuture<Vec<((String, String), BreakerState)>> {
        let res = self.read(|tx| {
            let t = tx.open_table(BREAKERS).map_err(eng("breakers"))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(eng("breakers"))? {
                let (k, v) = row.map_err(eng("breakers"))?;
                let (b, d) = k.value();
                out.push(((b.to_string(), d.to_string()), dec("breakers", v.value())?));
            }
            Ok(out)
        });
        Box::pin(std::future::ready(res))
    }

    fn update_breaker(
        &self,
        bridge: String,
        destination: String,
        f: BreakerUpdate,
    ) -> StoreFuture<BreakerChange> {
        self.write(move |tx| {
            let mut t = tx.table(BREAKERS)?;
            let key = (bridge.as_str(), destination.as_str());
            let before: Option<BreakerState> = match t.get(key).map_err(eng("breakers"))? {
                Some(v) => Some(dec("breakers", v.value())?),
                None => None,
            };
            let after = f(before.as_ref());
            if after != before {
                match &after {
                    Some(a) => {
                        t.insert(key, enc(a)?.as_slice()).map_err(eng("breakers"))?;
                    }
                    None => {
                        t.remove(key).map_err(eng("breakers"))?;
                    }
                }
            }
            Ok((before, after))
        })
    }

    fn queue_depth(&self) -> StoreFuture<Vec<((String, String), u64)>> {
        let res = self.read(|tx| {
            let jobs = tx.open_table(JOBS).map_err(eng("jobs"))?;
            let due = tx.open_table(DUE).map_err(eng("due"))?;
            let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
            for row in due.iter().map_err(eng("due"))? {
                let (k, _) = row.map_err(eng("due"))?;
                let (_, e, i) = k.value();
                if let Some(raw) = jobs.get((e, i)).map_err(eng("jobs"))?
                    && let Some(j) = decode_job(e, i, raw.value())
                {
                    *counts
                        .entry((j.bridge, j.target.label().to_string()))
                        .or_default() += 1;
                }
            }
            Ok(counts.into_iter().collect())
        });
        Box::pin(std::future::ready(res))
    }

    fn jobs_left(&self, bridge: String) -> StoreFuture<u64> {
        let res = self.read(|tx| {
            let jobs = tx.open_table(JOBS).map_err(eng("jobs"))?;
            let due = tx.open_table(DUE).map_err(eng("due"))?;
            let mut n = 0;
            for row in due.iter().map_err(eng("due"))? {
                let (k, _) = row.map_err(eng("due"))?;
                let (_, e, i) = k.value();
                if let Some(raw) = jobs.get((e, i)).map_err(eng("jobs"))?
                    && let Some(j) = decode_job(e, i, raw.value())
                    && j.bridge == bridge
                {
                    n += 1;
                }
            }
            // Paused jobs are not in the due queue; look for them only when one of the
            // bridge's destinations is paused (a scan of every job otherwise).
            let paused = tx.open_table(PAUSED).map_err(eng("paused"))?;
            let mut any_paused = false;
            for row in paused.iter().map_err(eng("paused"))? {
                let (k, _) = row.map_err(eng("paused"))?;
                if k.value().0 == bridge {
                    any_paused = true;
                    break;
                }
            }
            if any_paused {
                n += scan_jobs(&jobs, |j| {
                    j.bridge == bridge && j.status == JobStatus::Paused
                })?
                .len() as u64;
            }
            Ok(n)
        });
        Box::pin(std::future::ready(res))
    }

    fn retain(&self, policy: Retention, now: u64) -> StoreFuture<RetentionReport> {
        let this = self.clone();
        Box::pin(async move {
            let mut report = RetentionReport {
                bytes_before: this.disk_bytes(),
                ..Default::default()
            };
            // Every step deletes at most RETENTION_CHUNK rows per transaction and waits for
            // its commit before reading the next chunk: ingests queued meanwhile commit in
            // between, so a long trim never holds the writer.
            // Expired idempotency keys.
            loop {
                let expired = this.expired_keys(now, RETENTION_CHUNK)?;
                let n = expired.len();
                if n == 0 {
                    break;
                }
                report.expired_keys += this
                    .write_background(move |tx| {
                        let mut idem = tx.table(IDEM)?;
                        let mut gone = 0;
                        for (b, k) in &expired {
                            // Taken again since it was read: keep it.
                            let still = idem
                                .get((b.as_str(), k.as_str()))
                                .map_err(eng("idempotency"))?
                                .is_some_and(|v| v.value().1 <= now);
                            if still {
                                idem.remove((b.as_str(), k.as_str()))
                                    .map_err(eng("idempotency"))?;
                                gone += 1;
                            }
                        }
                        Ok(gone)
                    })
                    .await?;
                this.chunk_done(n).await;
                if n < RETENTION_CHUNK {
                    break;
                }
            }
            // By age: finished events received before the cut-off, oldest first.
            let cutoff = now.saturating_sub(policy.max_age_ms);
            loop {
                let victims = this.oldest_finished(RETENTION_CHUNK, Some(cutoff))?;
                if victims.is_empty() {
                    break;
                }
                let n = victims.len();
                this.delete_events(victims).await?;
                report.deleted_by_age += n;
                if n < RETENTION_CHUNK {
                    break;
                }
            }
            // By size, against the live data (the pages the tables use), not the file: redb
            // reuses freed pages at once, so the file stays at its high-water mark until a
            // compaction and says little about what is stored. The oldest finished events
            // go until the live data is under 90% of the limit.
            let target = policy.max_bytes / 10 * 9;
            for _ in 0..4 {
                let live = this.live_bytes().await?;
                // Under the limit: nothing to do; once trimming, down to the target.
                if (report.deleted_by_size == 0 && live <= policy.max_bytes) || live <= target {
                    break;
                }
                let events = this.counts().await?.events.max(1);
                let per_event = (live / events).max(1);
                let take = (live - target).div_ceil(per_event) as usize;
                let victims = this.oldest_finished(take, None)?;
                if victims.is_empty() {
                    tracing::warn!(
                        live_bytes = live,
                        max_bytes = policy.max_bytes,
                        "store over its size limit with no finished event to delete"
                    );
                    break;
                }
                let n = victims.len();
                for chunk in victims.chunks(RETENTION_CHUNK) {
                    this.delete_events(chunk.to_vec()).await?;
                }
                report.deleted_by_size += n;
            }
            // Compaction holds the database alone for as long as it runs (redb cannot do it
            // in steps), so it runs only when the file is over the limit, a real share of it
            // (a quarter or more) is free, and no write arrived for a second (the writer
            // checks, see QUIET_BEFORE_COMPACT); the file then stays near the live data,
            // since freed pages are reused. Under steady ingest it is postponed, and the file
            // stays at its high-water mark without growing.
            for _ in 0..2 {
                let file = this.disk_bytes();
                if file <= policy.max_bytes {
                    break;
                }
                let live = this.live_bytes().await?;
                if file.saturating_sub(live) < file / COMPACT_FREE_SHARE {
                    break;
                }
                if !this.compact().await? {
                    break;
                }
                report.compacted = true;
            }
            report.bytes_after = this.disk_bytes();
            Ok(report)
        })
    }

    fn counts(&self) -> StoreFuture<StoreCounts> {
        let res = self.read(|tx| {
            let n = |len: Result<u64, redb::StorageError>| len.map_err(eng("count"));
            Ok(StoreCounts {
                events: n(tx.open_table(EVENTS).map_err(eng("count"))?.len())?,
                jobs: n(tx.open_table(JOBS).map_err(eng("count"))?.len())?,
                attempts: n(tx.open_table(ATTEMPTS).map_err(eng("count"))?.len())?,
                idempotency_keys: n(tx.open_table(IDEM).map_err(eng("count"))?.len())?,
            })
        });
        Box::pin(std::future::ready(res))
    }

    fn disk_bytes(&self) -> u64 {
        std::fs::metadata(&self.inner.path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn kv_get(&self, plugin: String, key: String) -> StoreFuture<Option<Vec<u8>>> {
        let res = self.read(|tx| {
            let kv = tx.open_table(KV).map_err(eng("keyvalue"))?;
            Ok(kv
                .get((plugin.as_str(), key.as_str()))
                .map_err(eng("keyvalue"))?
                .map(|v| v.value().to_vec()))
        });
        Box::pin(std::future::ready(res))
    }

    fn kv_set(&self, plugin: String, key: String, value: Vec<u8>) -> StoreFuture<()> {
        let quota = self.inner.kv_quota.load(Ordering::Relaxed);
        self.write(move |tx| kv_put(tx, &plugin, &key, quota, |_| Ok(value.clone())))
    }

    fn kv_increment(&self, plugin: String, key: String, delta: u64) -> StoreFuture<u64> {
        let quota = self.inner.kv_quota.load(Ordering::Relaxed);
        self.write(move |tx| {
            let mut next = 0;
            kv_put(tx, &plugin, &key, quota, |old| {
                next = super::increment_value(&key, old, delta)?;
                Ok(next.to_string().into_bytes())
            })?;
            Ok(next)
        })
    }

    fn kv_delete(&self, plugin: String, key: String) -> StoreFuture<()> {
        self.write(move |tx| {
            let used = kv_usage(tx, &plugin)?;
            let mut kv = tx.table(KV)?;
            let removed = kv
                .remove((plugin.as_str(), key.as_str()))
                .map_err(eng("keyvalue"))?
                .map(|v| (key.len() + v.value().len()) as u64)
                .unwrap_or(0);
            drop(kv);
            tx.table(KV_USAGE)?
                .insert(plugin.as_str(), used.saturating_sub(removed))
                .map_err(eng("keyvalue"))?;
            Ok(())
        })
    }

    fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::SeqCst)
    }

    fn import_event(&self, d: EventDetail) -> StoreFuture<bool> {
        self.write(move |tx| {
            let id = d.record.id.as_u128();
            let mut events = tx.table(EVENTS)?;
            if events.get(id).map_err(eng("events"))?.is_some() {
                return Ok(false);
            }
            put_event(tx, &mut events, &d.record)?;
            tx.table(BODIES)?
                .insert(id, d.body.as_ref())
                .map_err(eng("bodies"))?;
            let mut jobs = tx.table(JOBS)?;
            let mut due = tx.table(DUE)?;
            let mut attempts = tx.table(ATTEMPTS)?;
            for (job, list) in &d.jobs {
                put_job(tx, &mut jobs, &mut due, None, job)?;
                for (n, a) in list.iter().enumerate() {
                    attempts
                        .insert((id, job.slot(), n as u32 + 1), enc(a)?.as_slice())
                        .map_err(eng("attempts"))?;
                }
            }
            Ok(true)
        })
    }

    fn put_subscription(&self, sub: SubscriptionRecord) -> StoreFuture<()> {
        self.write(move |tx| {
            tx.table(SUBSCRIPTIONS)?
                .insert(
                    (sub.bridge.as_str(), sub.callback.as_str()),
                    enc(&sub)?.as_slice(),
                )
                .map_err(eng("subscriptions"))?;
            Ok(())
        })
    }

    fn delete_subscription(
        &self,
        bridge: String,
        callback: String,
        id: Option<String>,
    ) -> StoreFuture<bool> {
        self.write(move |tx| {
            let mut t = tx.table(SUBSCRIPTIONS)?;
            let key = (bridge.as_str(), callback.as_str());
            let stored = match t.get(key).map_err(eng("subscriptions"))? {
                None => return Ok(false),
                Some(v) => dec::<SubscriptionRecord>("subscriptions", v.value()).ok(),
            };
            if let Some(id) = &id
                && stored.is_some_and(|s| s.id != *id)
            {
                return Ok(false);
            }
            t.remove(key).map_err(eng("subscriptions"))?;
            Ok(true)
        })
    }

    fn subscriptions(&self) -> StoreFuture<Vec<SubscriptionRecord>> {
        let res = self.read(|tx| {
            let t = tx.open_table(SUBSCRIPTIONS).map_err(eng("subscriptions"))?;
            let mut out: Vec<SubscriptionRecord> = Vec::new();
            for row in t.iter().map_err(eng("subscriptions"))? {
                let (_, v) = row.map_err(eng("subscriptions"))?;
                out.push(dec("subscriptions", v.value())?);
            }
            Ok(out)
        });
        Box::pin(std::future::ready(res))
    }

    fn kv_plugins(&self) -> StoreFuture<Vec<String>> {
        let res = self.read(|tx| {
            let kv = tx.open_table(KV).map_err(eng("keyvalue"))?;
            let mut out: Vec<String> = Vec::new();
            for row in kv.iter().map_err(eng("keyvalue"))? {
                let (k, _) = row.map_err(eng("keyvalue"))?;
                let p = k.value().0;
                if out.last().map(String::as_str) != Some(p) {
                    out.push(p.to_string());
                }
            }
            Ok(out)
        });
        Box::pin(std::future::ready(res))
    }

    fn kv_list(&self, plugin: String) -> StoreFuture<Vec<String>> {
        let res = self.read(|tx| {
            let kv = tx.open_table(KV).map_err(eng("keyvalue"))?;
            let mut out = Vec::new();
            for row in kv.range((plugin.as_str(), "")..).map_err(eng("keyvalue"))? {
                let (k, _) = row.map_err(eng("keyvalue"))?;
                let (p, key) = k.value();
                if p != plugin {
                    break;
                }
                out.push(key.to_string());
            }
            Ok(out)
        });
        Box::pin(std::future::ready(res))
    }
}

/// Write one key within the plugin's quota; `f` gets the old value and gives the new one.
fn kv_put(
    tx: &Txn<'_>,
    plugin: &str,
    key: &str,
    quota: u64,
    f: impl FnOnce(Option<&[u8]>) -> Result<Vec<u8>, StoreError>,
) -> Result<(), StoreError> {
    let used = kv_usage(tx, plugin)?;
    let mut kv = tx.table(KV)?;
    let old_value = kv
        .get((plugin, key))
        .map_err(eng("keyvalue"))?
        .map(|v| v.value().to_vec());
    let old = old_value
        .as_ref()
        .map(|v| (key.len() + v.len()) as u64)
        .unwrap_or(0);
    let value = f(old_value.as_deref())?;
    let after = used.saturating_sub(old) + (key.len() + value.len()) as u64;
    if after > quota && after > used {
        return Err(StoreError::Quota {
            what: format!("keyvalue of plugin {plugin}"),
            limit: quota,
        });
    }
    kv.insert((plugin, key), value.as_slice())
        .map_err(eng("keyvalue"))?;
    drop(kv);
    tx.table(KV_USAGE)?
        .insert(plugin, after)
        .map_err(eng("keyvalue"))?;
    Ok(())
}

/// Bytes of keyvalue state a plugin holds; counted once from its rows in stores written
/// before the usage table existed.
fn kv_usage(tx: &Txn<'_>, plugin: &str) -> Result<u64, StoreError> {
    if let Some(v) = tx.table(KV_USAGE)?.get(plugin).map_err(eng("keyvalue"))? {
        return Ok(v.value());
    }
    let kv = tx.table(KV)?;
    let mut total = 0u64;
    for row in kv.range((plugin, "")..).map_err(eng("keyvalue"))? {
        let (k, v) = row.map_err(eng("keyvalue"))?;
        let (p, key) = k.value();
        if p != plugin {
            break;
        }
        total += (key.len() + v.value().len()) as u64;
    }
    Ok(total)
}

impl EmbeddedStore {
    /// Due jobs from memory's queue; the records it does not hold are read by key.
    fn due_from_memory(
        &self,
        now_ms: u64,
        limit: usize,
        claimed: JobFilter<JobKey>,
        hold: JobFilter<JobRecord>,
        claim: bool,
    ) -> Result<DueJobs, StoreError> {
        let mut read: Option<(
            RwLockReadGuard<'_, Option<Database>>,
            Option<redb::ReadTransaction>,
        )> = None;
        let mut mem = crate::sync::lock(&self.inner.mem);
        mem.due(now_ms, limit, &claimed, &hold, claim, |event, index| {
            if read.is_none() {
                read = Some((self.inner.db.read().map_err(lock_err)?, None));
            }
            let Some((guard, tx)) = read.as_mut() else {
                return Err(unavailable());
            };
            if tx.is_none() {
                let db = guard.as_ref().ok_or_else(unavailable)?;
                *tx = Some(db.begin_read().map_err(eng("read"))?);
            }
            let Some(tx) = tx.as_ref() else {
                return Err(unavailable());
            };
            let jobs = tx.open_table(JOBS).map_err(eng("jobs"))?;
            let Some(raw) = jobs.get((event, index)).map_err(eng("jobs"))? else {
                return Ok(Loaded::Missing);
            };
            Ok(match dec::<JobRecord>("jobs", raw.value()) {
                Ok(j) => Loaded::Record(j),
                Err(_) => Loaded::Undecodable,
            })
        })
    }

    /// Deletes events (at most [`RETENTION_CHUNK`]) in one transaction.
    async fn delete_events(&self, victims: Vec<u128>) -> Result<(), StoreError> {
        let n = victims.len();
        self.write_background(move |tx| {
            for e in &victims {
                delete_event(tx, *e)?;
            }
            Ok(())
        })
        .await?;
        self.chunk_done(n).await;
        Ok(())
    }

    /// Between two retention chunks. Tests hold retention here (see the tests below).
    async fn chunk_done(&self, n: usize) {
        #[cfg(test)]
        {
            let gate = crate::sync::lock(&self.inner.retention_gate).clone();
            if let Some(gate) = gate {
                let (go, wait) = oneshot::channel();
                if gate.send((n, go)).is_ok() {
                    let _ = wait.await;
                }
            }
        }
        let _ = n;
    }

    /// Bytes the tables' pages hold (keys, values, branch pages and fragmentation): what a
    /// compaction would leave. Walks every table's tree in a read transaction, off the
    /// writer and off the async threads.
    async fn live_bytes(&self) -> Result<u64, StoreError> {
        let this = self.clone();
        let walk = move || {
            this.read(|tx| {
                let mut total = 0u64;
                let mut add = |s: redb::TableStats| {
                    total += s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes();
                };
                add(tx
                    .open_table(EVENTS)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(BODIES)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(JOBS)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(DUE)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(ATTEMPTS)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(IDEM)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(PAUSED)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(KV)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(QUARANTINE)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(KV_USAGE)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(SUBSCRIPTIONS)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(EVENTS_BY_STATUS)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(EVENTS_BY_BRIDGE_STATUS)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                add(tx
                    .open_table(EVENTS_BY_WEBHOOK_ID)
                    .and_then(|t| Ok(t.stats()?))
                    .map_err(eng("stats"))?);
                Ok(total)
            })
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => h.spawn_blocking(walk).await.map_err(eng("stats"))?,
            Err(_) => walk(),
        }
    }

    /// Up to `limit` idempotency keys expired at `now`.
    fn expired_keys(&self, now: u64, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|tx| {
            let idem = tx.open_table(IDEM).map_err(eng("idempotency"))?;
            let mut out = Vec::new();
            for row in idem.iter().map_err(eng("idempotency"))? {
                let (k, v) = row.map_err(eng("idempotency"))?;
                if v.value().1 <= now {
                    let (b, key) = k.value();
                    out.push((b.to_string(), key.to_string()));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Up to `limit` finished events, oldest first (received before `before` if given).
    fn oldest_finished(&self, limit: usize, before: Option<u64>) -> Result<Vec<u128>, StoreError> {
        self.read(|tx| {
            let events = tx.open_table(EVENTS).map_err(eng("events"))?;
            let mut out = Vec::new();
            for row in events.iter().map_err(eng("events"))? {
                let (k, v) = row.map_err(eng("events"))?;
                let rec: EventRecord = dec("events", v.value())?;
                if before.is_some_and(|b| rec.received_at_ms >= b) {
                    break;
                }
                if rec.status.finished() {
                    out.push(k.value());
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }
}

#[cfg(any(test, feature = "store-contract"))]
impl super::contract::EngineHooks for EmbeddedStore {
    fn corrupt_job(&self, job: JobKey) -> StoreFuture<()> {
        self.write(move |tx| {
            tx.table(JOBS)?
                .insert((job.event.as_u128(), job.index), &b"\xffnot json"[..])
                .map_err(eng("jobs"))?;
            tx.note(Change::Cold((job.event.as_u128(), job.index)));
            Ok(())
        })
    }
    fn set_kv_quota(&self, bytes: u64) {
        EmbeddedStore::set_kv_quota(self, bytes);
    }
    fn quiesce(&self) {
        self.inner.last_write_ms.store(0, Ordering::Relaxed);
    }
    fn check_event_index(&self) -> StoreFuture<()> {
        use std::collections::BTreeSet;
        let res = self.read(|tx| {
            let mut status = BTreeSet::new();
            let mut both = BTreeSet::new();
            let mut webhook = BTreeSet::new();
            for row in tx
                .open_table(EVENTS)
                .map_err(eng("events"))?
                .iter()
                .map_err(eng("events"))?
            {
                let (_, v) = row.map_err(eng("events"))?;
                let r: EventRecord = dec("events", v.value())?;
                let id = r.id.as_u128();
                status.insert((status_key(r.status), id));
                both.insert((r.bridge.clone(), status_key(r.status), id));
                if let Some(w) = r.webhook_id() {
                    webhook.insert((w.to_string(), id));
                }
            }
            let mut diffs = Vec::new();
            let mut compare = |name: &str, want: Vec<String>, have: Vec<String>| {
                let (want, have): (BTreeSet<_>, BTreeSet<_>) =
                    (want.into_iter().collect(), have.into_iter().collect());
                for k in have.difference(&want) {
                    diffs.push(format!("{name}: stale entry {k}"));
                }
                for k in want.difference(&have) {
                    diffs.push(format!("{name}: missing entry {k}"));
                }
            };
            let mut have_status = Vec::new();
            for row in tx
                .open_table(EVENTS_BY_STATUS)
                .map_err(eng("index"))?
                .iter()
                .map_err(eng("index"))?
            {
                let (k, _) = row.map_err(eng("index"))?;
                let (st, id) = k.value();
                have_status.push(format!("{st} {}", EventId::from_u128(id)));
            }
            compare(
                "events_by_status",
                status
                    .iter()
                    .map(|(st, id)| format!("{st} {}", EventId::from_u128(*id)))
                    .collect(),
                have_status,
            );
            let mut have_both = Vec::new();
            for row in tx
                .open_table(EVENTS_BY_BRIDGE_STATUS)
                .map_err(eng("index"))?
                .iter()
                .map_err(eng("index"))?
            {
                let (k, _) = row.map_err(eng("index"))?;
                let (b, st, id) = k.value();
                have_both.push(format!("{b} {st} {}", EventId::from_u128(id)));
            }
            compare(
                "events_by_bridge_status",
                both.iter()
                    .map(|(b, st, id)| format!("{b} {st} {}", EventId::from_u128(*id)))
                    .collect(),
                have_both,
            );
            let mut have_webhook = Vec::new();
            for row in tx
                .open_table(EVENTS_BY_WEBHOOK_ID)
                .map_err(eng("index"))?
                .iter()
                .map_err(eng("index"))?
            {
                let (k, _) = row.map_err(eng("index"))?;
                let (w, id) = k.value();
                have_webhook.push(format!("{w} {}", EventId::from_u128(id)));
            }
            compare(
                "events_by_webhook_id",
                webhook
                    .iter()
                    .map(|(w, id)| format!("{w} {}", EventId::from_u128(*id)))
                    .collect(),
                have_webhook,
            );
            if diffs.is_empty() {
                Ok(())
            } else {
                Err(StoreError::Invalid(format!(
                    "the events index is stale: {}",
                    diffs.join("; ")
                )))
            }
        });
        Box::pin(std::future::ready(res))
    }
}

/// The plugin host's keyvalue interface on top of the store (blocking, called from the
/// host's blocking threads). `plugin` is the plugin's `namespace/name`.
pub struct KvAdapter {
    pub store: Arc<dyn Store>,
}

impl KvAdapter {
    fn block<T>(&self, f: StoreFuture<T>) -> Result<T, String> {
        // The host calls keyvalue from blocking threads; the store's futures need no
        // runtime (reads are ready, writes wait on the writer thread's answer).
        futures::executor::block_on(f).map_err(|e| e.to_string())
    }
    pub fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.block(self.store.kv_get(plugin.into(), key.into()))
    }
    pub fn set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.block(self.store.kv_set(plugin.into(), key.into(), value.to_vec()))
    }
    pub fn delete(&self, plugin: &str, key: &str) -> Result<(), String> {
        self.block(self.store.kv_delete(plugin.into(), key.into()))
    }
    pub fn list_keys(&self, plugin: &str) -> Result<Vec<String>, String> {
        self.block(self.store.kv_list(plugin.into()))
    }
    pub fn increment(&self, plugin: &str, key: &str, delta: u64) -> Result<u64, String> {
        self.block(self.store.kv_increment(plugin.into(), key.into(), delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: StoreFuture<T>) -> Result<T, StoreError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn records_alone_wait_for_the_next_durable_write_only_while_those_come_close_together() {
        let ms = Duration::from_millis;
        // Ingests 10 ms apart, the last 3 ms ago: wait until twice the gap after it.
        assert_eq!(linger_for(ms(3), ms(10)), Some(ms(17)));
        // Gaps above the cap are capped.
        assert_eq!(linger_for(ms(0), ms(15)), Some(LINGER_MAX));
        // Durable writes further apart than the cap (a low ingest rate, or none since the
        // store opened: the gap starts at SYNC_AFTER): commit at once.
        assert_eq!(linger_for(ms(0), LINGER_MAX + ms(1)), None);
        assert_eq!(linger_for(ms(0), SYNC_AFTER), None);
        // The next durable write is already late (ingest stopped): commit at once.
        assert_eq!(linger_for(ms(20), ms(10)), None);
        assert_eq!(linger_for(ms(25), ms(10)), None);
    }

    fn counting() -> (JobFilter<JobKey>, Arc<AtomicU64>) {
        let n = Arc::new(AtomicU64::new(0));
        let m = n.clone();
        let f: JobFilter<JobKey> = Arc::new(move |_| {
            m.fetch_add(1, Ordering::SeqCst);
            false
        });
        (f, n)
    }

    /// Opens the file behind a closed store (its writer thread lets go of it a moment
    /// after the last handle drops).
    fn reopen_raw(path: &Path) -> Database {
        for _ in 0..200 {
            if let Ok(db) = open_db(path) {
                return db;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} stayed locked after its store closed", path.display());
    }

    /// Issue 15: events, jobs and attempts are written in the binary encoding (its version
    /// byte first), the file says so, and a file from a newer worker is refused with the
    /// way out instead of having its records taken for corrupt ones.
    #[test]
    fn records_are_binary_and_a_newer_files_format_is_refused() {
        use crate::store::contract::new_event;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.redb");
        {
            let store = EmbeddedStore::open(dir.path(), None).unwrap();
            let id = block(store.append(new_event("ns/b", 1_000, &["d"])))
                .unwrap()
                .id;
            block(store.finish_attempt(JobUpdate {
                job: JobKey {
                    event: id,
                    index: 0,
                },
                attempt: Some(AttemptRecord {
                    at_ms: 1_100,
                    duration_ms: 3,
                    status_code: Some(200),
                    response: "ok".into(),
                    error: None,
                    trace: None,
                }),
                next: Next::Delivered,
            }))
            .unwrap();
            block(store.flush()).unwrap();
        }
        {
            let db = reopen_raw(&path);
            let tx = db.begin_read().unwrap();
            let first = |t: TableDefinition<u128, &[u8]>| {
                let t = tx.open_table(t).unwrap();
                let (_, v) = t.first().unwrap().expect("a row");
                v.value()[0]
            };
            assert_eq!(first(EVENTS), super::super::codec::BINARY_V1);
            let jobs = tx.open_table(JOBS).unwrap();
            assert_eq!(jobs.first().unwrap().unwrap().1.value()[0], 1);
            let attempts = tx.open_table(ATTEMPTS).unwrap();
            assert_eq!(attempts.first().unwrap().unwrap().1.value()[0], 1);
            let meta = tx.open_table(META).unwrap();
            assert_eq!(
                meta.get(RECORD_FORMAT_KEY).unwrap().map(|v| v.value()),
                Some(RECORD_FORMAT)
            );
            drop((meta, jobs, attempts, tx));
            let w = db.begin_write().unwrap();
            w.open_table(META)
                .unwrap()
                .insert(RECORD_FORMAT_KEY, RECORD_FORMAT + 1)
                .unwrap();
            w.commit().unwrap();
        }
        let err = match EmbeddedStore::open(dir.path(), None) {
            Ok(_) => panic!("a file of a newer record format opened"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("newer worker") && err.contains("store export"),
            "{err}"
        );
        // Refused before anything was written: the file still says the newer format.
        let db = reopen_raw(&path);
        let tx = db.begin_read().unwrap();
        let meta = tx.open_table(META).unwrap();
        assert_eq!(
            meta.get(RECORD_FORMAT_KEY).unwrap().map(|v| v.value()),
            Some(RECORD_FORMAT + 1)
        );
    }

    /// Issue 15: index version 2 lists by bridge from the bridge-and-status index. A file
    /// of version 1 loses its by-bridge index on open (the other three are kept as they
    /// are), and a bridge's page still comes newest first across its statuses.
    #[test]
    fn index_version_1_drops_its_by_bridge_index_and_bridge_pages_merge_statuses() {
        use crate::store::contract::{EngineHooks as _, new_event};
        use redb::TableHandle as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.redb");
        let mut ids = Vec::new();
        {
            let store = EmbeddedStore::open(dir.path(), None).unwrap();
            for (n, bridge) in ["ns/a", "ns/b", "ns/a", "ns/a", "ns/b", "ns/a"]
                .into_iter()
                .enumerate()
            {
                let at = 1_000 + 10 * n as u64;
                ids.push(
                    block(store.append(new_event(bridge, at, &["d"])))
                        .unwrap()
                        .id,
                );
            }
            // ns/a: the 1st delivered, the 3rd dead, the 4th and 6th pending.
            for (i, next) in [
                (0, Next::Delivered),
                (
                    2,
                    Next::Dead {
                        reason: "no".into(),
                    },
                ),
            ] {
                block(store.finish_attempt(JobUpdate {
                    job: JobKey {
                        event: ids[i],
                        index: 0,
                    },
                    attempt: None,
                    next,
                }))
                .unwrap();
            }
            block(store.flush()).unwrap();
        }
        {
            // What a worker of index version 1 left: its by-bridge table, version 1.
            let db = reopen_raw(&path);
            let w = db.begin_write().unwrap();
            w.open_table(EVENTS_BY_BRIDGE_V1)
                .unwrap()
                .insert(("ns/a", ids[0].as_u128()), ())
                .unwrap();
            w.open_table(META)
                .unwrap()
                .insert(EVENT_INDEX_KEY, 1)
                .unwrap();
            w.commit().unwrap();
        }
        let store = EmbeddedStore::open(dir.path(), None).unwrap();
        block(store.check_event_index()).unwrap();
        let page = |limit| {
            block(store.list_events(EventQuery {
                bridge: Some("ns/a".into()),
                limit,
                ..Default::default()
            }))
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
        };
        assert_eq!(page(100), vec![ids[5], ids[3], ids[2], ids[0]]);
        assert_eq!(page(3), vec![ids[5], ids[3], ids[2]]);
        drop(store);
        let db = reopen_raw(&path);
        let tx = db.begin_read().unwrap();
        let names: Vec<String> = tx
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert!(!names.iter().any(|n| n == "events_by_bridge"), "{names:?}");
        let meta = tx.open_table(META).unwrap();
        assert_eq!(
            meta.get(EVENT_INDEX_KEY).unwrap().map(|v| v.value()),
            Some(EVENT_INDEX_VERSION)
        );
    }

    /// Issue 15: the scheduler's queue is in memory. A claim takes jobs out of the walk (a
    /// later pass never looks at jobs in flight), a finished attempt takes its job out for
    /// good, a release puts it back, and the queue is rebuilt from the due index on open.
    /// An event just stored is handed to delivery from memory until its jobs are attempted.
    #[test]
    fn the_due_queue_is_in_memory_and_claims_leave_the_walk() {
        use crate::store::contract::new_event;
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), None).unwrap();
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(
                block(store.append(new_event("ns/b", 1_000 + i, &["d"])))
                    .unwrap()
                    .id,
            );
        }
        assert_eq!(crate::sync::lock(&store.inner.mem).sizes(), (4, 0, 4));
        let none: JobFilter<JobRecord> = Arc::new(|_| false);
        let (asked, n) = counting();
        let first = block(store.claim_due(5_000, 2, asked, none.clone())).unwrap();
        assert_eq!(first.jobs.len(), 2);
        assert_eq!(
            first.next_due_ms,
            Some(5_000),
            "the limit left due jobs out"
        );
        // The next pass sees only the two jobs not claimed.
        let (asked, n2) = counting();
        let second = block(store.claim_due(5_000, 10, asked, none.clone())).unwrap();
        assert_eq!(second.jobs.len(), 2);
        assert_eq!(
            (n.load(Ordering::SeqCst), n2.load(Ordering::SeqCst)),
            (2, 2)
        );
        assert_eq!(crate::sync::lock(&store.inner.mem).sizes(), (0, 4, 4));
        // Handed over from memory: the same record and body the ingest stored.
        let hot = block(store.event_for_delivery(ids[0])).unwrap().unwrap();
        assert_eq!(hot.record.id, ids[0]);
        // One attempt recorded, one released, two still in flight.
        let done = first.jobs[0].key();
        block(store.finish_attempt(JobUpdate {
            job: done,
            attempt: None,
            next: Next::Delivered,
        }))
        .unwrap();
        block(store.release(vec![first.jobs[1].key()])).unwrap();
        assert_eq!(crate::sync::lock(&store.inner.mem).sizes(), (1, 2, 3));
        let (asked, n3) = counting();
        let third = block(store.claim_due(5_000, 10, asked, none.clone())).unwrap();
        assert_eq!(
            third.jobs.iter().map(JobRecord::key).collect::<Vec<_>>(),
            vec![first.jobs[1].key()]
        );
        assert_eq!(n3.load(Ordering::SeqCst), 1);
        // A restart forgets the claims: the three jobs not delivered are queued again.
        drop(store);
        let store = reopen(dir.path());
        assert_eq!(crate::sync::lock(&store.inner.mem).sizes(), (3, 0, 0));
        let again = block(store.claim_due(5_000, 10, Arc::new(|_| false), none)).unwrap();
        assert_eq!(again.jobs.len(), 3);
        assert!(again.jobs.iter().all(|j| j.key() != done));
        // Read from disk when memory does not hold it.
        let cold = block(store.event_for_delivery(ids[1])).unwrap().unwrap();
        assert_eq!(cold.record.id, ids[1]);
    }

    async fn finished_events(store: &EmbeddedStore, n: usize, at: u64, body: usize) {
        use crate::store::contract::new_event;
        let appends = (0..n).map(|i| {
            let mut ev = new_event("ns/b", at + i as u64, &["d"]);
            ev.body = Bytes::from(vec![b'x'; body]);
            store.append(ev)
        });
        let ids = futures::future::try_join_all(appends).await.unwrap();
        let done = ids.iter().map(|a| {
            store.finish_attempt(JobUpdate {
                job: JobKey {
                    event: a.id,
                    index: 0,
                },
                attempt: None,
                next: Next::Delivered,
            })
        });
        futures::future::try_join_all(done).await.unwrap();
    }

    /// Runs `retain` held at every chunk; there, checks the chunk's size and that an ingest
    /// commits while retention is midway. Returns the report and the chunks seen.
    async fn retain_held(
        store: &EmbeddedStore,
        policy: Retention,
        now: u64,
    ) -> (RetentionReport, usize) {
        use crate::store::contract::new_event;
        let (gate, mut held) = tokio::sync::mpsc::unbounded_channel();
        *crate::sync::lock(&store.inner.retention_gate) = Some(gate);
        let s = store.clone();
        let mut run = tokio::spawn(async move { s.retain(policy, now).await });
        let mut chunks = 0;
        let report = loop {
            tokio::select! {
                biased;
                Some((n, go)) = held.recv() => {
                    assert!(n <= RETENTION_CHUNK, "a chunk of {n}");
                    assert!(!run.is_finished());
                    // Retention is between two chunks: an ingest commits now.
                    let a = store
                        .append(new_event("ns/new", now + 1_000_000 + chunks as u64, &["d"]))
                        .await
                        .unwrap();
                    assert!(!a.duplicate);
                    chunks += 1;
                    go.send(()).unwrap();
                }
                r = &mut run => break r.unwrap().unwrap(),
            }
        };
        *crate::sync::lock(&store.inner.retention_gate) = None;
        (report, chunks)
    }

    /// Issue 15: retention trims in bounded chunks, each its own commit, and ingests commit
    /// between them (retention is held between chunks while an append is awaited, so an
    /// ingest never waits for a whole trim). By size, the limit is measured against the
    /// live data, and a file at its high-water mark with room inside is not trimmed again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_trims_in_bounded_chunks_and_ingests_commit_between_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), None).unwrap();
        let old = 4 * RETENTION_CHUNK + 10;
        finished_events(&store, old, 1_000, 64).await;
        // By age.
        let policy = Retention {
            max_age_ms: 1_000_000,
            max_bytes: u64::MAX,
        };
        let (r, chunks) = retain_held(&store, policy, 2_000_000).await;
        assert_eq!(r.deleted_by_age, old, "{r:?}");
        assert!(chunks >= old.div_ceil(RETENTION_CHUNK), "{chunks} chunks");
        assert_eq!(
            block_counts(&store).await.events,
            chunks as u64,
            "the ingests stayed"
        );

        // By size: 1,200 finished events of 4 KiB, a limit of half the live data.
        finished_events(&store, 1_200, 2_000, 4096).await;
        let live = store.live_bytes().await.unwrap();
        let policy = Retention {
            max_age_ms: u64::MAX,
            max_bytes: live / 2,
        };
        let (r, chunks) = retain_held(&store, policy, 3_000_000).await;
        assert!(r.deleted_by_size > 0, "{r:?}");
        assert!(
            chunks >= r.deleted_by_size.div_ceil(RETENTION_CHUNK),
            "{chunks} chunks"
        );
        let after = store.live_bytes().await.unwrap();
        assert!(
            after <= policy.max_bytes,
            "live {after} over {}",
            policy.max_bytes
        );
        // Under the limit by live data: the next run deletes nothing, whatever the file.
        let (r, _) = retain_held(&store, policy, 3_000_000).await;
        assert_eq!(r.deleted_by_size, 0, "{r:?}");
    }

    /// Issue 15: compaction holds the database alone and cannot be cut short, so the writer
    /// runs it only on a quiet store: with a write just queued it is postponed (false, the
    /// file untouched); on a quiet store it runs and gives the free pages back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_waits_for_a_quiet_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), None).unwrap();
        finished_events(&store, 1_000, 1_000, 4096).await;
        let policy = Retention {
            max_age_ms: 1_000_000,
            max_bytes: u64::MAX,
        };
        let r = store.retain(policy, 2_000_000).await.unwrap();
        assert_eq!(r.deleted_by_age, 1_000, "{r:?}");
        let full = store.disk_bytes();
        // A write stamped "now", as far as the writer can tell for the next hour.
        store
            .inner
            .last_write_ms
            .store(now_ms() + 3_600_000, Ordering::Relaxed);
        assert!(!store.compact().await.unwrap(), "compacted under writes");
        assert_eq!(store.disk_bytes(), full);
        // Quiet: no write for longer than QUIET_BEFORE_COMPACT.
        store.inner.last_write_ms.store(0, Ordering::Relaxed);
        assert!(store.compact().await.unwrap(), "a quiet store is compacted");
        assert!(
            store.disk_bytes() < full,
            "{} of {full}",
            store.disk_bytes()
        );
        // Retention's own deletes do not count as writes.
        finished_events(&store, 300, 3_000_000, 4096).await;
        store.inner.last_write_ms.store(0, Ordering::Relaxed);
        let r = store.retain(policy, 5_000_000).await.unwrap();
        assert_eq!(r.deleted_by_age, 300, "{r:?}");
        assert_eq!(store.inner.last_write_ms.load(Ordering::Relaxed), 0);
    }

    async fn block_counts(store: &EmbeddedStore) -> StoreCounts {
        store.counts().await.unwrap()
    }

    /// The writer thread owns the file until every handle is gone; a reopen right after a
    /// drop may find it still open for a moment.
    fn reopen(dir: &Path) -> EmbeddedStore {
        for _ in 0..200 {
            if let Ok(s) = EmbeddedStore::open(dir, None) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        EmbeddedStore::open(dir, None).unwrap()
    }

    /// Issue 12 item 5: plugin keyvalue has a quota per plugin, counted over keys and
    /// values, given back by deletes and overwrites, and separate per plugin.
    #[test]
    fn keyvalue_quota_per_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), None).unwrap();
        store.set_kv_quota(100);
        block(store.kv_set("ns/a".into(), "k1".into(), vec![0; 60])).unwrap();
        let err = block(store.kv_set("ns/a".into(), "k2".into(), vec![0; 60])).unwrap_err();
        assert!(matches!(err, StoreError::Quota { limit: 100, .. }), "{err}");
        assert_eq!(
            block(store.kv_get("ns/a".into(), "k2".into())).unwrap(),
            None,
            "nothing written past the quota"
        );
        // Another plugin has its own quota.
        block(store.kv_set("ns/b".into(), "k1".into(), vec![0; 90])).unwrap();
        // Overwriting counts the new size only; deleting gives the bytes back.
        block(store.kv_set("ns/a".into(), "k1".into(), vec![0; 90])).unwrap();
        block(store.kv_delete("ns/a".into(), "k1".into())).unwrap();
        block(store.kv_set("ns/a".into(), "k2".into(), vec![0; 90])).unwrap();
    }
}
