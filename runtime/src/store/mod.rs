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

mod codec;
#[cfg(any(test, feature = "store-contract"))]
pub mod contract;
pub mod embedded;
mod memory;
pub mod postgres;
pub mod transfer;
mod types;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use types::*;

/// What a store method returns.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// A filter the store applies to due jobs (owned, so that an engine may apply it after it
/// has waited for the database).
pub type JobFilter<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The shared database failed; `location` is `host:port/db`, never credentials.
    #[error("store: {op} on {location}: {source}")]
    Database {
        op: &'static str,
        location: String,
        #[source]
        source: Arc<tokio_postgres::Error>,
    },
    /// The shared database cannot be reached (or is not migrated yet).
    #[error("store: database {location} unavailable: {message}")]
    Unavailable { location: String, message: String },
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
    /// The operation cannot apply to what is stored.
    #[error("{0}")]
    Invalid(String),
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
    /// cost no read or decode of their record; `hold` then sees the decoded record. `hold`
    /// answers for a job's destination (or its bridge's steps), not for the one job: once it
    /// holds one back, a store may pass over that destination's other jobs unasked. A due
    /// job whose record cannot be decoded goes to [`DueJobs::undecodable`] instead; every
    /// other method passes over such a record.
    fn due_jobs(
        &self,
        now_ms: u64,
        limit: usize,
        claimed: JobFilter<JobKey>,
        hold: JobFilter<JobRecord>,
    ) -> StoreFuture<DueJobs>;
    /// Claim due jobs for this worker, as [`Store::due_jobs`] reads them. An engine shared
    /// by several workers leases each job to this one until [`Store::finish_attempt`] or
    /// [`Store::release`] (or until the lease runs out, when the worker died); a single
    /// worker's engine claims in memory (the scheduler's in-flight set), which is the
    /// default.
    fn claim_due(
        &self,
        now_ms: u64,
        limit: usize,
        claimed: JobFilter<JobKey>,
        hold: JobFilter<JobRecord>,
    ) -> StoreFuture<DueJobs> {
        self.due_jobs(now_ms, limit, claimed, hold)
    }
    /// Claim the jobs named by `keys`, as [`Store::claim_due`] would, when they are queued,
    /// due at `now_ms`, not `claimed` and not held back by `hold`: the hand-off of jobs
    /// this worker has just committed (an ingest's, a step's), which delivery then starts
    /// without a pass over the queue. An engine may claim fewer, or none (the default: a
    /// shared engine would pay a round trip per hand-off); what it leaves stays queued for
    /// the scheduler.
    fn claim_jobs(
        &self,
        _keys: Vec<JobKey>,
        _now_ms: u64,
        _claimed: JobFilter<JobKey>,
        _hold: JobFilter<JobRecord>,
    ) -> StoreFuture<Vec<JobRecord>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
    /// Whether writes apply in the order they were queued, each one seeing every write
    /// queued before it (the embedded engine's one writer thread): then a delivery may
    /// start before the write that creates its job has committed, because the attempt's
    /// record is queued after it. A step's deliveries start so, with the step's result on
    /// its way to disk. An engine whose writes may overtake each other says no (the
    /// default), and its jobs are handed over after their commit.
    fn writes_in_order(&self) -> bool {
        false
    }
    /// Let go of claimed jobs whose attempt ended without [`Store::finish_attempt`] (the
    /// record could not be written, the event was gone): another worker may take them.
    fn release(&self, _jobs: Vec<JobKey>) -> StoreFuture<()> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// How often the scheduler looks for due jobs without being woken: set by engines
    /// whose jobs other workers also add, reschedule and release.
    fn poll_interval(&self) -> Option<Duration> {
        None
    }
    /// Called when another worker added work (a shared engine's notification).
    fn on_new_work(&self, _wake: Arc<dyn Fn() + Send + Sync>) {}
    /// Take jobs whose record cannot be decoded out of the due queue (their records stay,
    /// for inspection); returns how many were moved.
    fn quarantine(&self, jobs: Vec<(u64, JobKey)>) -> StoreFuture<usize>;
    /// Record one attempt and what follows it, in one transaction.
    fn finish_attempt(&self, update: JobUpdate) -> StoreFuture<JobRecord>;
    fn event(&self, id: EventId) -> StoreFuture<Option<EventDetail>>;
    /// The event as a delivery or the steps need it: its record and body (`jobs` empty).
    /// The embedded engine hands over the events it has just stored from memory, without
    /// reading them back.
    fn event_for_delivery(&self, id: EventId) -> StoreFuture<Option<Arc<EventDetail>>> {
        let f = self.event(id);
        Box::pin(async move {
            Ok(f.await?.map(|mut d| {
                d.jobs.clear();
                Arc::new(d)
            }))
        })
    }
    /// Make every write committed so far durable (writes that did not wait for their
    /// fsync, such as the embedded engine's attempt records). At shutdown.
    fn flush(&self) -> StoreFuture<()> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn list_events(&self, query: EventQuery) -> StoreFuture<Vec<EventRecord>>;
    /// A bridge's events for its streams ([`StreamRead`]): ascending by id, those that
    /// passed the filter and the steps, with their bodies after the steps; fanned-out
    /// events are served as their children. Stops at an event whose steps are still queued
    /// ([`StreamPage::held`]).
    fn stream_events(&self, read: StreamRead) -> StoreFuture<StreamPage>;
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
    /// Destinations paused by a 410 (or disabled by their circuit breaker), as
    /// `(bridge, destination)`.
    fn paused(&self) -> StoreFuture<Vec<(String, String)>>;
    /// Every stored circuit breaker, `(bridge, destination)` → state. Resuming a
    /// destination ([`Store::set_paused`] with false) deletes its breaker: closed.
    fn breakers(&self) -> StoreFuture<Vec<((String, String), BreakerState)>>;
    /// Change one destination's breaker in one transaction (on a shared store, under a
    /// row lock: two workers never both take the half-open probe). Returns the state
    /// before and after.
    fn update_breaker(
        &self,
        bridge: String,
        destination: String,
        f: BreakerUpdate,
    ) -> StoreFuture<BreakerChange>;
    /// Pending jobs per `(bridge, destination)`.
    fn queue_depth(&self) -> StoreFuture<Vec<((String, String), u64)>>;
    /// Every job still queued for one bridge: pending and retrying ones (steps jobs
    /// included) and those paused by a 410; what [`Store::purge`] would delete. The
    /// operator waits for this to reach 0 before a draining Bridge goes.
    fn jobs_left(&self, bridge: String) -> StoreFuture<u64>;
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
    /// `wasi:keyvalue/atomics.increment`: the key's decimal value (none counts as 0) plus
    /// `delta`, written back in one transaction: atomic for every worker on the store.
    fn kv_increment(&self, plugin: String, key: String, delta: u64) -> StoreFuture<u64>;
    /// Store an event exactly as another store holds it (its jobs in their state, their
    /// attempts), for `causeway store import`. An event whose id exists is left alone
    /// (false), so an import can run again.
    fn import_event(&self, detail: EventDetail) -> StoreFuture<bool>;
    /// Plugins holding keyvalue state.
    fn kv_plugins(&self) -> StoreFuture<Vec<String>>;
    /// Bridges suspended or resumed through the admin API, shared by every worker of an
    /// engine several workers use (None: back to the configuration's `suspend`).
    fn set_suspended(&self, _bridge: String, _suspended: Option<bool>) -> StoreFuture<()> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// The admin API's suspensions this engine keeps, `(bridge, suspended)`.
    fn suspended(&self) -> StoreFuture<Vec<(String, bool)>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
    /// Store a verified WebSub subscription, replacing the one of the same bridge and
    /// callback (a renewal).
    fn put_subscription(&self, sub: SubscriptionRecord) -> StoreFuture<()>;
    /// Delete one subscription (unsubscribed, or its lease long expired); whether it was
    /// there. With `id`, only when the stored one still has that id (a renewal that raced
    /// the deletion stays).
    fn delete_subscription(
        &self,
        bridge: String,
        callback: String,
        id: Option<String>,
    ) -> StoreFuture<bool>;
    /// Every stored subscription, by bridge then callback.
    fn subscriptions(&self) -> StoreFuture<Vec<SubscriptionRecord>>;
    /// Whether writes work. False after an I/O error (a full disk) until the store has
    /// recovered by itself; readiness follows it.
    fn healthy(&self) -> bool {
        true
    }
}

/// The value after `atomics.increment`: the old decimal value (none is 0) plus `delta`.
pub(crate) fn increment_value(
    key: &str,
    old: Option<&[u8]>,
    delta: u64,
) -> Result<u64, StoreError> {
    let current = match old {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| StoreError::Invalid(format!("value of {key:?} is not a decimal u64")))?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| StoreError::Invalid(format!("incrementing {key:?} overflows u64")))
}
