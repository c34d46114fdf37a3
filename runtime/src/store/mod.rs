//! The store: events, delivery jobs, attempts, dead letters, idempotency keys and plugin
//! keyvalue, behind one trait so that a shared Postgres store can follow without touching
//! ingress or delivery.
//!
//! Every method returns a future. The embedded engine ([`embedded::EmbeddedStore`], on
//! redb; see `docs/store.md` for why) answers reads at once and sends writes to one writer
//! thread that group-commits them: one transaction and one fsync per batch, and no future
//! resolves before its batch is on disk.
//!
//! What every engine must do is written once, as tests over this trait, in `contract.rs`
//! (built for tests, or with the `store-contract` feature); `tests/store_contract.rs` runs
//! it on the embedded store.

#[cfg(any(test, feature = "store-contract"))]
pub mod contract;
pub mod embedded;
mod types;

use std::future::Future;
use std::pin::Pin;

pub use types::*;

/// What a store method returns.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store: cannot open {path}: {message}")]
    Open { path: String, message: String },
    #[error("store: {op}: {message}")]
    Engine { op: &'static str, message: String },
    #[error("store: corrupt record in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("store: not found: {0}")]
    NotFound(String),
    #[error("store: closed")]
    Closed,
    #[error("store: {what} would exceed its quota of {limit} bytes")]
    Quota { what: String, limit: u64 },
}

/// The durable state of the worker. See the module docs.
pub trait Store: Send + Sync + 'static {
    /// Store a new event with its jobs and idempotency key, durably. A key already held
    /// within its window returns the first event's id and stores nothing.
    fn append(&self, event: NewEvent) -> StoreFuture<Appended>;
    /// Jobs due at `now_ms` (at most `limit`, oldest due first) that are neither claimed
    /// nor held back, and `next_due_ms`: the due time of the first job after `now_ms`, or a
    /// time at or before `now_ms` when the limit left due jobs out. Claimed and held-back
    /// jobs count neither against `limit` nor for `next_due_ms` (whoever holds them wakes
    /// the scheduler when it lets go).
    ///
    /// `claimed` is asked first, with the job's key only, so that jobs already in flight
    /// cost no read or decode of their record; `hold` then sees the decoded record. A due
    /// job whose record cannot be decoded goes to [`DueJobs::undecodable`] instead; every
    /// other method passes over such a record.
    fn due_jobs(
        &self,
        now_ms: u64,
        limit: usize,
        claimed: &(dyn Fn(&JobKey) -> bool + Sync),
        hold: &(dyn Fn(&JobRecord) -> bool + Sync),
    ) -> StoreFuture<DueJobs>;
    /// Take jobs whose record cannot be decoded out of the due queue (their records stay,
    /// for inspection); returns how many were moved.
    fn quarantine(&self, jobs: Vec<(u64, JobKey)>) -> StoreFuture<usize>;
    /// Record one attempt and what follows it, in one transaction.
    fn finish_attempt(&self, update: JobUpdate) -> StoreFuture<JobRecord>;
    fn event(&self, id: EventId) -> StoreFuture<Option<EventDetail>>;
    fn list_events(&self, query: EventQuery) -> StoreFuture<Vec<EventRecord>>;
    /// Queue again every job of one event that is not pending; returns how many.
    fn replay_event(&self, id: EventId, now_ms: u64) -> StoreFuture<usize>;
    /// Queue again every dead job of a bridge.
    fn replay_dead(&self, bridge: String, now_ms: u64) -> StoreFuture<usize>;
    /// Delete a bridge's pending, retrying and paused jobs.
    fn purge(&self, bridge: String) -> StoreFuture<usize>;
    /// Pause or resume a destination. Resuming queues its paused jobs at `now_ms`.
    fn set_paused(
        &self,
        bridge: String,
        destination: String,
        paused: bool,
        now_ms: u64,
    ) -> StoreFuture<usize>;
    /// Destinations paused by a 410, as `(bridge, destination)`.
    fn paused(&self) -> StoreFuture<Vec<(String, String)>>;
    /// Pending jobs per `(bridge, destination)`.
    fn queue_depth(&self) -> StoreFuture<Vec<((String, String), u64)>>;
    /// Apply the retention policy: age, then size, then compaction.
    fn retain(&self, policy: Retention, now_ms: u64) -> StoreFuture<RetentionReport>;
    /// Bytes the store occupies on disk.
    fn disk_bytes(&self) -> u64;
    /// Record counts, for the admin API and tests.
    fn counts(&self) -> StoreFuture<StoreCounts>;
    /// Plugin keyvalue (`wasi:keyvalue`), durable like everything else.
    fn kv_get(&self, plugin: String, key: String) -> StoreFuture<Option<Vec<u8>>>;
    fn kv_set(&self, plugin: String, key: String, value: Vec<u8>) -> StoreFuture<()>;
    fn kv_delete(&self, plugin: String, key: String) -> StoreFuture<()>;
    fn kv_list(&self, plugin: String) -> StoreFuture<Vec<String>>;
    /// Whether writes work. False after an I/O error (a full disk) until the store has
    /// recovered by itself; readiness follows it.
    fn healthy(&self) -> bool {
        true
    }
}
