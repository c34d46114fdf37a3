//! What the embedded engine keeps in memory beside redb: the due queue and the hand-off
//! cache. The embedded store has one writer and one worker, so memory can follow every
//! commit exactly: the writer thread applies a transaction's [`Change`]s after its commit
//! (and drops them with an aborted one), and the store's file stays the truth: at start
//! and after a reopen the queue is rebuilt from the `due` table.
//!
//! - The **due queue** orders queued jobs by `(due ms, event, slot)`, like the `due` table,
//!   so the scheduler never walks redb to find work. It is one queue per destination,
//!   merged in due order by a pass: a destination held back (busy, rate-limited, paused)
//!   costs the pass one look, not one per job of its backlog. A job the pass claims moves
//!   to `claimed` (out of the walk) until its attempt's record commits or it is released;
//!   a pass therefore touches what it starts and one job per destination it holds back.
//!   Jobs queued by this process carry their record (up to [`RECORDS_IN_MEMORY`]); the
//!   others (rebuilt at start, or past that bound) are read from disk by key when claimed.
//! - The **hand-off cache** keeps the record and body of events just ingested (up to
//!   [`HOT_BYTES`]) until each of their jobs has had its first attempt recorded, so a
//!   delivery never reads back what it was handed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::ops::Bound;
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

/// Where a job sits: its due time and its key, the order of the `due` table.
type Pos = (u64, u128, u32);
/// A destination's queue (or the steps of a bridge): its index in `Memory::queues`.
type Group = usize;
/// Jobs rebuilt from disk whose destination is not known until their record is read.
const UNSORTED: Group = 0;

/// The due queue, one queue per destination. A scheduler pass merges the queues in due
/// order; once it holds a destination back (no permit, no token, paused), it passes over
/// the rest of that destination's jobs without looking at them, so a pass costs what it
/// starts plus one look per held destination, not the length of the backlog.
pub(crate) struct Memory {
    /// `queues[g]`: the queued jobs of group `g`; `queues[UNSORTED]` holds the jobs read
    /// back at start until a pass learns their destination.
    queues: Vec<BTreeMap<Pos, Slot>>,
    /// The first job of every queue that has one.
    heads: BTreeSet<(Pos, Group)>,
    /// Group of each bridge's destinations (`None`: its steps job).
    groups: HashMap<String, BridgeGroups>,
    /// Where each queued job sits.
    at: HashMap<Key, (u64, Group)>,
    /// Claimed jobs (attempts in flight) with their place in the queue.
    claimed: HashMap<Key, (u64, Group, Slot)>,
    records: usize,
    hot: HashMap<u128, (Arc<EventDetail>, u32, u64)>,
    hot_bytes: u64,
}

/// The groups of one bridge.
#[derive(Default)]
struct BridgeGroups {
    steps: Option<Group>,
    destinations: HashMap<String, Group>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            queues: vec![Default::default()],
            heads: Default::default(),
            groups: HashMap::new(),
            at: HashMap::new(),
            claimed: HashMap::new(),
            records: 0,
            hot: HashMap::new(),
            hot_bytes: 0,
        }
    }
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
    /// stay claimed. The jobs' destinations are learnt as passes read their records.
    pub fn rebuild(&mut self, keys: impl IntoIterator<Item = Pos>) {
        for q in &mut self.queues {
            q.clear();
        }
        self.heads.clear();
        self.at.clear();
        self.records = self.claimed.values().map(|(_, _, s)| slot_size(s)).sum();
        for (at, e, i) in keys {
            if self.claimed.contains_key(&(e, i)) {
                continue;
            }
            self.insert(UNSORTED, (at, e, i), Slot::OnDisk);
        }
    }

    /// The group of a job's destination (or of its bridge's steps), made on first sight.
    fn group(
        queues: &mut Vec<BTreeMap<Pos, Slot>>,
        groups: &mut HashMap<String, BridgeGroups>,
        job: &JobRecord,
    ) -> Group {
        let dest = job.target.destination_name();
        let known = groups.get(job.bridge.as_str()).and_then(|b| match dest {
            None => b.steps,
            Some(d) => b.destinations.get(d).copied(),
        });
        if let Some(g) = known {
            return g;
        }
        let g = queues.len();
        queues.push(BTreeMap::new());
        let b = groups.entry(job.bridge.clone()).or_default();
        match dest {
            None => b.steps = Some(g),
            Some(d) => {
                b.destinations.insert(d.to_owned(), g);
            }
        }
        g
    }

    fn insert(&mut self, g: Group, pos: Pos, slot: Slot) {
        self.records += slot_size(&slot);
        let q = &mut self.queues[g];
        let old_head = q.first_key_value().map(|(k, _)| *k);
        q.insert(pos, slot);
        if old_head.is_none_or(|h| pos < h) {
            if let Some(h) = old_head {
                self.heads.remove(&(h, g));
            }
            self.heads.insert((pos, g));
        }
        self.at.insert((pos.1, pos.2), (pos.0, g));
    }

    /// Takes a job out of its queue (not out of `at`).
    fn remove(&mut self, g: Group, pos: Pos) -> Option<Slot> {
        let q = &mut self.queues[g];
        let was_head = q.first_key_value().is_some_and(|(k, _)| *k == pos);
        let slot = q.remove(&pos)?;
        if was_head {
            self.heads.remove(&(pos, g));
            if let Some((k, _)) = q.first_key_value() {
                self.heads.insert((*k, g));
            }
        }
        self.records = self.records.saturating_sub(slot_size(&slot));
        Some(slot)
    }

    pub fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::Queue(rec) => {
                    let key = (rec.event.as_u128(), rec.slot());
                    self.unqueue(key);
                    let g = Self::group(&mut self.queues, &mut self.groups, &rec);
                    let slot = if self.records < RECORDS_IN_MEMORY {
                        Slot::Record(Arc::new(rec.clone()))
                    } else {
                        Slot::OnDisk
                    };
                    self.insert(g, (rec.due_at_ms, key.0, key.1), slot);
                }
                Change::Unqueue(key) => self.unqueue(key),
                Change::Cold(key) => {
                    if let Some((at, g)) = self.at.get(&key)
                        && let Some(s) = self.queues[*g].get_mut(&(*at, key.0, key.1))
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
        if let Some((at, g)) = self.at.remove(&key) {
            self.remove(g, (at, key.0, key.1));
        }
        if let Some((_, _, s)) = self.claimed.remove(&key) {
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

    /// The job after `pos` in queue `g`, if it is due at `now_ms`.
    fn next_in(&self, g: Group, pos: Pos, now_ms: u64) -> Option<Pos> {
        self.queues[g]
            .range((Bound::Excluded(pos), Bound::Unbounded))
            .next()
            .map(|(k, _)| *k)
            .filter(|k| k.0 <= now_ms)
    }

    /// Due jobs, as [`crate::store::Store::due_jobs`] describes; with `claim`, the jobs
    /// returned leave the walk until [`Memory::release`] or their record commits. `load`
    /// reads a record memory does not hold.
    ///
    /// The queues are merged in due order. `hold` is a destination's answer: once it holds
    /// one job back, the pass does not look at that destination's other jobs.
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
        // (where it sits, its group now, the group it belongs to)
        let mut taken: Vec<(Pos, Group, Group)> = Vec::new();
        // Records read from disk: (where it sits, its group now, the group it belongs to); an
        // unsorted one moves to its group.
        let mut loaded: Vec<(Pos, Group, Group, Option<Arc<JobRecord>>)> = Vec::new();
        let mut held: HashSet<Group> = HashSet::new();
        let mut full = false;
        // The earliest job after `now_ms` among the queues the pass looked at.
        let mut later: Option<u64> = None;
        let note_later = |q: &BTreeMap<Pos, Slot>, later: &mut Option<u64>| {
            if let Some((k, _)) = q.range((now_ms.saturating_add(1), 0, 0)..).next() {
                *later = Some(later.map_or(k.0, |t: u64| t.min(k.0)));
            }
        };
        let mut starts = self
            .heads
            .range(..=((now_ms, u128::MAX, u32::MAX), usize::MAX))
            .copied()
            .peekable();
        let mut going: BinaryHeap<Reverse<(Pos, Group)>> = BinaryHeap::new();
        loop {
            // The earliest of the queues under way and the next queue to start.
            let next = match (going.peek(), starts.peek()) {
                (Some(Reverse(a)), Some(b)) if b < a => starts.next(),
                (Some(_), _) => going.pop().map(|Reverse(a)| a),
                (None, Some(_)) => starts.next(),
                (None, None) => break,
            };
            let Some((pos, g)) = next else { break };
            if out.jobs.len() >= limit {
                full = true;
                break;
            }
            let (at, event, index) = pos;
            let key = JobKey {
                event: EventId::from_u128(event),
                index,
            };
            let mut follow = |going: &mut BinaryHeap<Reverse<(Pos, Group)>>, this: &Self| match this
                .next_in(g, pos, now_ms)
            {
                Some(p) => going.push(Reverse((p, g))),
                None => note_later(&this.queues[g], &mut later),
            };
            if g != UNSORTED && held.contains(&g) {
                note_later(&self.queues[g], &mut later);
                continue;
            }
            if claimed(&key) {
                follow(&mut going, self);
                continue;
            }
            let slot = self.queues[g].get(&pos).cloned().unwrap_or(Slot::OnDisk);
            let job = match slot {
                Slot::Record(r) => r,
                Slot::OnDisk => match load(event, index)? {
                    Loaded::Record(j) => Arc::new(j),
                    Loaded::Missing => {
                        follow(&mut going, self);
                        continue;
                    }
                    Loaded::Undecodable => {
                        out.undecodable.push((at, key));
                        follow(&mut going, self);
                        continue;
                    }
                },
            };
            let fresh = matches!(self.queues[g].get(&pos), Some(Slot::OnDisk));
            let home = if g == UNSORTED {
                Self::group(&mut self.queues, &mut self.groups, &job)
            } else {
                g
            };
            if fresh {
                loaded.push((pos, g, home, fresh.then(|| job.clone())));
            }
            if held.contains(&home) {
                // An unsorted job of a destination already held back.
                follow(&mut going, self);
                continue;
            }
            if hold(&job) {
                held.insert(home);
                if g == UNSORTED {
                    follow(&mut going, self);
                } else {
                    note_later(&self.queues[g], &mut later);
                }
                continue;
            }
            taken.push((pos, g, home));
            out.jobs.push(Arc::unwrap_or_clone(job));
            follow(&mut going, self);
        }
        drop(starts);
        out.next_due_ms = if full {
            Some(now_ms)
        } else {
            // Queues not looked at start after now; the others were noted on the way.
            let first = self
                .heads
                .range(((now_ms.saturating_add(1), 0, 0), 0)..)
                .next()
                .map(|(k, _)| k.0);
            match (first, later) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        // What was read from disk stays in memory while there is room, and an unsorted
        // job moves to its destination's queue.
        for (pos, g, home, record) in loaded {
            let Some(slot) = self.remove(g, pos) else {
                continue;
            };
            let slot = match record {
                Some(r) if self.records < RECORDS_IN_MEMORY => Slot::Record(r),
                _ => slot,
            };
            self.insert(home, pos, slot);
        }
        if claim {
            for (pos, _, home) in taken {
                if let Some(s) = self.remove(home, pos) {
                    self.records += slot_size(&s);
                    self.at.remove(&(pos.1, pos.2));
                    self.claimed.insert((pos.1, pos.2), (pos.0, home, s));
                }
            }
        }
        Ok(out)
    }

    /// Claims the jobs named by `keys` that are queued with their record in memory, due at
    /// `now_ms`, neither `claimed` nor held back by `hold`: the hand-off of jobs this
    /// process has just committed, without a pass over the queues. What it leaves (a
    /// record on disk, a held destination) stays queued for the next pass.
    pub fn claim_keys(
        &mut self,
        keys: &[JobKey],
        now_ms: u64,
        claimed: &JobFilter<JobKey>,
        hold: &JobFilter<JobRecord>,
    ) -> Vec<JobRecord> {
        let mut out = Vec::new();
        for k in keys {
            let key = (k.event.as_u128(), k.index);
            let Some(&(at, g)) = self.at.get(&key) else {
                continue;
            };
            let pos = (at, key.0, key.1);
            if at > now_ms || claimed(k) {
                continue;
            }
            let Some(Slot::Record(job)) = self.queues[g].get(&pos).cloned() else {
                continue;
            };
            if hold(&job) {
                continue;
            }
            if let Some(s) = self.remove(g, pos) {
                self.records += slot_size(&s);
                self.at.remove(&key);
                self.claimed.insert(key, (at, g, s));
                out.push(Arc::unwrap_or_clone(job));
            }
        }
        out
    }

    /// Claimed jobs whose attempt recorded nothing go back to the queue where they were.
    pub fn release(&mut self, jobs: &[JobKey]) {
        for k in jobs {
            let key = (k.event.as_u128(), k.index);
            if let Some((at, g, s)) = self.claimed.remove(&key) {
                self.records = self.records.saturating_sub(slot_size(&s));
                self.insert(g, (at, key.0, key.1), s);
            }
        }
    }

    /// Queued jobs in memory (not claimed) and claimed ones: for tests and metrics.
    #[cfg(test)]
    pub fn sizes(&self) -> (usize, usize, usize) {
        let due = self.queues.iter().map(BTreeMap::len).sum();
        (due, self.claimed.len(), self.hot.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::{JobStatus, JobTarget};

    fn job(n: u128, bridge: &str, dest: &str, due: u64) -> JobRecord {
        JobRecord {
            event: EventId::from_u128(n),
            target: JobTarget::destination(0, dest),
            bridge: bridge.into(),
            status: JobStatus::Pending,
            due_at_ms: due,
            received_at_ms: due,
            attempts: 0,
            attempts_at_queue: 0,
            last_error: None,
        }
    }

    /// A hold filter that holds back one destination and counts what it was asked.
    fn holding(dest: &'static str) -> (JobFilter<JobRecord>, Arc<Mutex<Vec<u128>>>) {
        let asked: Arc<Mutex<Vec<u128>>> = Default::default();
        let a = asked.clone();
        let f: JobFilter<JobRecord> = Arc::new(move |j: &JobRecord| {
            a.lock().expect("lock").push(j.event.as_u128());
            j.target.destination_name() == Some(dest)
        });
        (f, asked)
    }

    fn none() -> JobFilter<JobKey> {
        Arc::new(|_| false)
    }

    fn events(d: &DueJobs) -> Vec<u128> {
        d.jobs.iter().map(|j| j.event.as_u128()).collect()
    }

    /// Issue 13: a pass asks a held-back destination once, however long its backlog, and
    /// still takes every other destination's due jobs in due order.
    #[test]
    fn a_held_destination_costs_a_pass_one_look() {
        let mut m = Memory::default();
        let mut changes = Vec::new();
        for n in 0..5_000u128 {
            changes.push(Change::Queue(job(n, "ns/a", "slow", 1_000 + n as u64)));
        }
        for n in 0..10u128 {
            changes.push(Change::Queue(job(
                10_000 + n,
                "ns/b",
                "fast",
                1_500 + n as u64 * 500,
            )));
        }
        m.apply(changes);
        let (hold, asked) = holding("slow");
        let d = m
            .due(10_000, 256, &none(), &hold, true, |_, _| {
                Ok(Loaded::Missing)
            })
            .expect("due");
        // b's jobs due by 10,000 (1,500 … 6,000); the rest of b's are later.
        assert_eq!(events(&d), (10_000..10_010).collect::<Vec<_>>());
        assert_eq!(
            asked
                .lock()
                .expect("lock")
                .iter()
                .filter(|e| **e < 10_000)
                .count(),
            1,
            "the held destination was asked about once"
        );
        // Nothing left due but the held backlog: the next due time is none of it.
        assert_eq!(d.next_due_ms, None);
        assert_eq!(m.sizes(), (5_000, 10, 0));
        // Once it is free, the held destination's jobs come in due order, `limit` at a time.
        let (free, _) = holding("nothing");
        let d = m
            .due(10_000, 256, &none(), &free, true, |_, _| {
                Ok(Loaded::Missing)
            })
            .expect("due");
        assert_eq!(events(&d), (0..256).collect::<Vec<_>>());
        assert_eq!(d.next_due_ms, Some(10_000), "more are due now");
    }

    /// Queues of several destinations merge in due order, and a later job of a held
    /// destination still counts for the next due time.
    #[test]
    fn queues_merge_in_due_order_and_report_the_next_due_time() {
        let mut m = Memory::default();
        m.apply(vec![
            Change::Queue(job(1, "ns/a", "x", 10)),
            Change::Queue(job(2, "ns/b", "y", 20)),
            Change::Queue(job(3, "ns/a", "x", 30)),
            Change::Queue(job(4, "ns/b", "y", 40)),
            Change::Queue(job(5, "ns/a", "z", 500)),
            Change::Queue(job(6, "ns/b", "y", 700)),
        ]);
        let (free, _) = holding("nothing");
        let d = m
            .due(100, 10, &none(), &free, false, |_, _| Ok(Loaded::Missing))
            .expect("due");
        assert_eq!(events(&d), vec![1, 2, 3, 4]);
        assert_eq!(d.next_due_ms, Some(500));
        // y held: its job at 700 still counts, z's at 500 comes first.
        let (hold, _) = holding("y");
        let d = m
            .due(600, 10, &none(), &hold, false, |_, _| Ok(Loaded::Missing))
            .expect("due");
        assert_eq!(events(&d), vec![1, 3, 5]);
        assert_eq!(d.next_due_ms, Some(700));
    }

    /// The hand-off claims the jobs it names when they are due, in memory and not held; a
    /// pass then passes over them, and a release puts them back for the next pass.
    #[test]
    fn named_jobs_are_claimed_once_and_a_pass_skips_them() {
        let mut m = Memory::default();
        // 4 as read back at start: its record stays on disk.
        m.rebuild([(10, 4, 0)]);
        m.apply(vec![
            Change::Queue(job(1, "ns/a", "x", 10)),
            Change::Queue(job(2, "ns/a", "held", 10)),
            Change::Queue(job(3, "ns/a", "x", 500)),
        ]);
        let (hold, _) = holding("held");
        let keys: Vec<JobKey> = [1u128, 2, 3, 4, 5]
            .iter()
            .map(|n| JobKey {
                event: EventId::from_u128(*n),
                index: 0,
            })
            .collect();
        let got = m.claim_keys(&keys, 100, &none(), &hold);
        // 2 is held, 3 is not due, 4's record is on disk, 5 is not queued.
        assert_eq!(
            got.iter().map(|j| j.event.as_u128()).collect::<Vec<_>>(),
            vec![1]
        );
        assert!(
            m.claim_keys(&keys[..1], 100, &none(), &hold).is_empty(),
            "claimed once"
        );
        let (free, _) = holding("nothing");
        let d = m
            .due(100, 10, &none(), &free, false, |e, _| {
                Ok(Loaded::Record(job(e, "ns/a", "x", 10)))
            })
            .expect("due");
        assert_eq!(events(&d), vec![2, 4], "a pass skips the claimed job");
        m.release(&keys[..1]);
        let d = m
            .due(100, 10, &none(), &free, false, |e, _| {
                Ok(Loaded::Record(job(e, "ns/a", "x", 10)))
            })
            .expect("due");
        assert_eq!(events(&d), vec![1, 2, 4]);
    }

    /// Jobs rebuilt from disk are read once, move to their destination's queue, and from
    /// then on a held destination is skipped unread; a release puts a claim back in place.
    #[test]
    fn rebuilt_jobs_find_their_destination_and_claims_come_back() {
        let mut m = Memory::default();
        m.rebuild((0..100u128).map(|n| (n as u64, n, 0)));
        let reads = Arc::new(Mutex::new(0usize));
        let load = |r: Arc<Mutex<usize>>| {
            move |e: u128, _| {
                *r.lock().expect("lock") += 1;
                let dest = if e.is_multiple_of(2) { "even" } else { "odd" };
                Ok(Loaded::Record(job(e, "ns/a", dest, e as u64)))
            }
        };
        let (hold, asked) = holding("even");
        let d = m
            .due(1_000, 1_000, &none(), &hold, false, load(reads.clone()))
            .expect("due");
        assert_eq!(
            events(&d),
            (0..100).filter(|n| n % 2 == 1).collect::<Vec<_>>()
        );
        assert_eq!(*reads.lock().expect("lock"), 100);
        asked.lock().expect("lock").clear();
        let d = m
            .due(1_000, 1_000, &none(), &hold, true, load(reads.clone()))
            .expect("due");
        assert_eq!(d.jobs.len(), 50);
        assert_eq!(
            *reads.lock().expect("lock"),
            100,
            "read once, kept in memory"
        );
        assert_eq!(
            asked.lock().expect("lock").len(),
            51,
            "50 taken, 1 held look"
        );
        assert_eq!(m.sizes(), (50, 50, 0));
        let back: Vec<JobKey> = d.jobs.iter().map(JobRecord::key).collect();
        m.release(&back);
        assert_eq!(m.sizes(), (100, 0, 0));
        let (free, _) = holding("nothing");
        let d = m
            .due(1_000, 1_000, &none(), &free, false, load(reads.clone()))
            .expect("due");
        assert_eq!(events(&d), (0..100).collect::<Vec<_>>());
    }
}
