//! What the embedded engine keeps in memory beside redb: the due queue and the hand-off
//! cache. The embedded store has one writer and one worker, so memory can follow every
//! commit exactly: the writer thread applies a transaction's [`Change`]s after its commit
//! (and drops them with an aborted one), and the store's file stays the truth: at start
//! and after a reopen the queue is rebuilt from the `due` table.
//!
//! - The **due queue** orders queued jobs by `(due ms, event, slot)`, like the `due` table,
//!   so the scheduler never walks redb to find work. A job it claims moves to `claimed`
//!   (out of the walk) until its attempt's record commits or it is released; a pass
//!   therefore touches what it starts and what it holds back, not every job in flight.
//!   Jobs queued by this process carry their record (up to [`RECORDS_IN_MEMORY`]); the
//!   others (rebuilt at start, or past that bound) are read from disk by key when claimed.
//! - The **hand-off cache** keeps the record and body of events just ingested (up to
//!   [`HOT_BYTES`]) until each of their jobs has had its first attempt recorded, so a
//!   delivery never reads back what it was handed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{DueJobs, EventDetail, EventId, JobFilter, JobKey, JobRecord, StoreError};

/// Job records the due queue holds in memory; past it, queued jobs are keys only and their
/// record is read by key when claimed (so a backlog of millions costs keys, not records).
pub const RECORDS_IN_MEMORY: usize = 65_536;
/// Bytes of events (bodies and records) the hand-off cache holds; past it, deliveries read
/// the event from disk.
pub const HOT_BYTES: u64 = 64 << 20;

type Key = (u128, u32);

#[derive(Clone)]
enum Slot {
    Record(Arc<JobRecord>),
    OnDisk,
}

/// A job record read from disk by key.
pub(crate) enum Loaded {
    Record(JobRecord),
    Missing,
    Undecodable,
}

/// What a committed transaction changed, for memory to follow.
pub(crate) enum Change {
    /// The job is queued with this record (new, retried, requeued, resumed).
    Queue(JobRecord),
    /// The job left the queue (attempted for good, paused, deleted, quarantined).
    Unqueue(Key),
    /// The job's stored record changed behind the queue's back: read it from disk (the
    /// contract suite's corrupt records).
    #[cfg_attr(not(any(test, feature = "store-contract")), allow(dead_code))]
    Cold(Key),
    /// An event with `jobs` queued jobs, as delivery needs it (record and body).
    Hot(Arc<EventDetail>, u32),
    /// One job of the event had an attempt recorded.
    Attempted(u128),
    /// The event is gone.
    Forget(u128),
}

#[derive(Default)]
pub(crate) struct Memory {
    due: BTreeMap<(u64, u128, u32), Slot>,
    /// Where each queued job sits in `due`.
    at: HashMap<Key, u64>,
    /// Claimed jobs (attempts in flight) with their place in the queue.
    claimed: HashMap<Key, (u64, Slot)>,
    records: usize,
    hot: HashMap<u128, (Arc<EventDetail>, u32, u64)>,
    hot_bytes: u64,
}

fn slot_size(s: &Slot) -> usize {
    usize::from(matches!(s, Slot::Record(_)))
}

fn event_size(d: &EventDetail) -> u64 {
    let headers: usize = d
        .record
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len())
        .sum();
    (d.body.len() + headers + d.record.query.len() + d.record.bridge.len() + 128) as u64
}

impl Memory {
    /// The queue as the `due` table holds it (at start, after a reopen); claims in flight
    /// stay claimed.
    pub fn rebuild(&mut self, keys: impl IntoIterator<Item = (u64, u128, u32)>) {
        self.due.clear();
        self.at.clear();
        self.records = self.claimed.values().map(|(_, s)| slot_size(s)).sum();
        for (at, e, i) in keys {
            if self.claimed.contains_key(&(e, i)) {
                continue;
            }
            self.due.insert((at, e, i), Slot::OnDisk);
            self.at.insert((e, i), at);
        }
    }

    pub fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::Queue(rec) => {
                    let key = (rec.event.as_u128(), rec.slot());
                    self.unqueue(key);
                    let slot = if self.records < RECORDS_IN_MEMORY {
                        self.records += 1;
                        Slot::Record(Arc::new(rec.clone()))
                    } else {
                        Slot::OnDisk
                    };
                    self.due.insert((rec.due_at_ms, key.0, key.1), slot);
                    self.at.insert(key, rec.due_at_ms);
                }
                Change::Unqueue(key) => self.unqueue(key),
                Change::Cold(key) => {
                    if let Some(at) = self.at.get(&key)
                        && let Some(s) = self.due.get_mut(&(*at, key.0, key.1))
                    {
                        self.records = self.records.saturating_sub(slot_size(s));
                        *s = Slot::OnDisk;
                    }
                }
                Change::Hot(detail, jobs) => {
                    let id = detail.record.id.as_u128();
                    self.forget(id);
                    let size = event_size(&detail);
                    if jobs > 0 && self.hot_bytes + size <= HOT_BYTES {
                        self.hot_bytes += size;
                        self.hot.insert(id, (detail, jobs, size));
                    }
                }
                Change::Attempted(id) => {
                    if let Some(h) = self.hot.get_mut(&id) {
                        h.1 = h.1.saturating_sub(1);
                        if h.1 == 0 {
                            self.forget(id);
                        }
                    }
                }
                Change::Forget(id) => self.forget(id),
            }
        }
    }

    fn unqueue(&mut self, key: Key) {
        if let Some(at) = self.at.remove(&key)
            && let Some(s) = self.due.remove(&(at, key.0, key.1))
        {
            self.records = self.records.saturating_sub(slot_size(&s));
        }
        if let Some((_, s)) = self.claimed.remove(&key) {
            self.records = self.records.saturating_sub(slot_size(&s));
        }
    }

    fn forget(&mut self, id: u128) {
        if let Some((_, _, size)) = self.hot.remove(&id) {
            self.hot_bytes = self.hot_bytes.saturating_sub(size);
        }
    }

    /// An event handed over by its ingest (or steps) commit, if memory still holds it.
    pub fn hot(&self, id: EventId) -> Option<Arc<EventDetail>> {
        self.hot.get(&id.as_u128()).map(|h| h.0.clone())
    }

    /// Due jobs, as [`crate::store::Store::due_jobs`] describes; with `claim`, the jobs
    /// returned leave the walk until [`Memory::release`] or their record commits. `load`
    /// reads a record memory does not hold.
    pub fn due(
        &mut self,
        now_ms: u64,
        limit: usize,
        claimed: &JobFilter<JobKey>,
        hold: &JobFilter<JobRecord>,
        claim: bool,
        mut load: impl FnMut(u128, u32) -> Result<Loaded, StoreError>,
    ) -> Result<DueJobs, StoreError> {
        let mut out = DueJobs::default();
        let mut taken: Vec<(u64, u128, u32)> = Vec::new();
        let mut loaded: Vec<((u64, u128, u32), Arc<JobRecord>)> = Vec::new();
        let mut full = false;
        for (&(at, event, index), slot) in self.due.range(..=(now_ms, u128::MAX, u32::MAX)) {
            if out.jobs.len() >= limit {
                full = true;
                break;
            }
            let key = JobKey {
                event: EventId::from_u128(event),
                index,
            };
            if claimed(&key) {
                continue;
            }
            let job = match slot {
                Slot::Record(r) => r.clone(),
                Slot::OnDisk => match load(event, index)? {
                    Loaded::Record(j) => {
                        let j = Arc::new(j);
                        loaded.push(((at, event, index), j.clone()));
                        j
                    }
                    Loaded::Missing => continue,
                    Loaded::Undecodable => {
                        out.undecodable.push((at, key));
                        continue;
                    }
                },
            };
            if !hold(&job) {
                taken.push((at, event, index));
                out.jobs.push(Arc::unwrap_or_clone(job));
            }
        }
        out.next_due_ms = if full {
            Some(now_ms)
        } else {
            self.due
                .range((now_ms.saturating_add(1), 0, 0)..)
                .next()
                .map(|(k, _)| k.0)
        };
        // What was read from disk stays in memory while there is room.
        for (k, j) in loaded {
            if self.records < RECORDS_IN_MEMORY
                && let Some(s) = self.due.get_mut(&k)
            {
                *s = Slot::Record(j);
                self.records += 1;
            }
        }
        if claim {
            for k in taken {
                if let Some(s) = self.due.remove(&k) {
                    self.at.remove(&(k.1, k.2));
                    self.claimed.insert((k.1, k.2), (k.0, s));
                }
            }
        }
        Ok(out)
    }

    /// Claimed jobs whose attempt recorded nothing go back to the queue where they were.
    pub fn release(&mut self, jobs: &[JobKey]) {
        for k in jobs {
            let key = (k.event.as_u128(), k.index);
            if let Some((at, s)) = self.claimed.remove(&key) {
                self.due.insert((at, key.0, key.1), s);
                self.at.insert(key, at);
            }
        }
    }

    /// Queued jobs in memory (not claimed) and claimed ones: for tests and metrics.
    #[cfg(test)]
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.due.len(), self.claimed.len(), self.hot.len())
    }
}
