//! The scheduler: sleeps until the next due job or a wake-up, claims due jobs in memory
//! and starts one task per attempt, at most `max_inflight` at once. Jobs this worker has
//! just committed are handed over without a pass ([`hand_off`]), under the same slots and
//! destination limits.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{instrument, warn};

use crate::delivery::attempt::attempt;
use crate::delivery::breaker::{Breakers, Gate};
use crate::shared::Shared;
use crate::store::{EventDetail, JobFilter, JobKey, JobRecord, now_ms};
use crate::sync::lock;

/// Jobs claimed per scheduler pass.
const CLAIM_BATCH: usize = 256;
/// Longest the scheduler sleeps without being woken.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// What the scheduler and the hand-off share: the pool's global slots and the jobs in
/// flight.
pub(crate) struct Dispatch {
    slots: Arc<Semaphore>,
    inflight: Mutex<HashSet<JobKey>>,
    /// Finished attempts, released from `inflight` only by the scheduler before it reads:
    /// a read that started before an attempt's commit must still see the job as claimed.
    done: Mutex<Vec<JobKey>>,
}

impl Dispatch {
    pub(crate) fn new(max_inflight: usize) -> Dispatch {
        Dispatch {
            slots: Arc::new(Semaphore::new(max_inflight)),
            inflight: Mutex::new(HashSet::new()),
            done: Mutex::new(Vec::new()),
        }
    }

    /// Whether a job is in flight (the `claimed` filter of the store's reads).
    fn claimed(self: &Arc<Self>) -> JobFilter<JobKey> {
        let d = self.clone();
        Arc::new(move |k: &JobKey| lock(&d.inflight).contains(k))
    }
}

/// How a job reached delivery (the `via` label of `delivery_jobs_started_total`).
#[derive(Clone, Copy)]
enum Via {
    Scheduler,
    HandOff,
}

/// The destinations' gate for one read of due jobs: a job whose destination has no
/// permit or token free is held back (it takes no global slot and counts against no
/// limit), so a slow or rate-limited destination never holds the pool's slots; a job
/// that passes has its destination's permit reserved for its attempt.
struct DestGate {
    hold: JobFilter<JobRecord>,
    reserved: Arc<Mutex<HashMap<JobKey, OwnedSemaphorePermit>>>,
    /// When a held job's rate token comes back.
    refill: Arc<Mutex<Option<Duration>>>,
    /// The earliest time an open circuit breaker lets its probe go.
    probe_at: Arc<Mutex<Option<u64>>>,
}

impl DestGate {
    fn new(shared: &Arc<Shared>) -> DestGate {
        let reserved: Arc<Mutex<HashMap<JobKey, OwnedSemaphorePermit>>> = Default::default();
        let refill: Arc<Mutex<Option<Duration>>> = Default::default();
        let probe_at: Arc<Mutex<Option<u64>>> = Default::default();
        let hold: JobFilter<JobRecord> = {
            let shared = shared.clone();
            let active = shared.active();
            let (reserved, refill, probe_at) = (reserved.clone(), refill.clone(), probe_at.clone());
            Arc::new(move |j: &JobRecord| {
                let Some(dest) = j.target.destination_name() else {
                    return shared.is_suspended(&j.bridge);
                };
                if shared.is_suspended(&j.bridge) || shared.delivery.is_paused(&j.bridge, dest) {
                    return true;
                }
                let Some((_, d)) = active
                    .bridges
                    .get(&j.bridge)
                    .and_then(|b| b.destination(dest))
                else {
                    // No longer configured: the attempt says so.
                    return false;
                };
                let limits = shared.delivery.limits(&j.bridge, d);
                let Ok(permit) = limits.concurrency.clone().try_acquire_owned() else {
                    return true;
                };
                // An open breaker holds its destination's jobs (no attempt, no retry
                // spent) and lets one through as the probe when its time comes.
                if d.circuit_breaker.is_some() {
                    let hold_ms = Breakers::probe_hold_ms(d.timeout_ms);
                    if let Gate::Hold(at) =
                        shared
                            .delivery
                            .breakers
                            .gate(&j.bridge, dest, now_ms(), hold_ms)
                    {
                        if let Some(at) = at {
                            let mut p = lock(&probe_at);
                            *p = Some(p.map_or(at, |t| t.min(at)));
                        }
                        return true;
                    }
                }
                if let Some(bucket) = &limits.bucket
                    && let Err(wait) = lock(bucket).try_take()
                {
                    let mut r = lock(&refill);
                    *r = Some(r.map_or(wait, |w| w.min(wait)));
                    return true;
                }
                lock(&reserved).insert(j.key(), permit);
                false
            })
        };
        DestGate {
            hold,
            reserved,
            refill,
            probe_at,
        }
    }
}

/// Starts one claimed job's attempt in its own task, holding one global slot. `event`:
/// the event as its steps left it (an early hand-off), or None to read it.
fn start(
    shared: &Arc<Shared>,
    dispatch: &Arc<Dispatch>,
    job: JobRecord,
    slot: OwnedSemaphorePermit,
    permit: Option<OwnedSemaphorePermit>,
    via: Via,
    event: Option<Arc<EventDetail>>,
) {
    lock(&dispatch.inflight).insert(job.key());
    let label = match via {
        Via::Scheduler => "scheduler",
        Via::HandOff => "hand_off",
    };
    shared
        .metrics
        .jobs_started
        .with_label_values(&[label])
        .inc();
    let shared = shared.clone();
    let dispatch = dispatch.clone();
    tokio::spawn(async move {
        let key = job.key();
        attempt(&shared, job, permit, event).await;
        // A claim the attempt did not finish (its record could not be written, its
        // event was gone) goes back to the queue; a finished one is already free.
        if let Err(e) = shared.store.release(vec![key]).await {
            warn!(error = %e, "cannot release a claimed job; its lease runs out");
        }
        lock(&dispatch.done).push(key);
        drop(slot);
        shared.delivery.wake();
    });
}

/// Hands jobs this worker has just committed (an ingest's, a step's) straight to
/// delivery: each one that is due, free of its destination's limits and finds a global
/// slot is claimed in memory and started now, without waiting for a scheduler pass.
/// Whatever is not started stays queued and the scheduler is woken for it. The store
/// stays the truth: a crash before an attempt's record makes the job run again after
/// the restart (at-least-once).
pub(crate) async fn hand_off(shared: &Arc<Shared>, keys: Vec<JobKey>) {
    if keys.is_empty() {
        return;
    }
    let Some(dispatch) = shared.delivery.dispatch() else {
        shared.delivery.wake();
        return;
    };
    // A slot per job first, so that nothing is claimed (and no rate token taken) for a
    // job that could not start.
    let mut slots = Vec::with_capacity(keys.len());
    while slots.len() < keys.len() {
        match dispatch.slots.clone().try_acquire_owned() {
            Ok(s) => slots.push(s),
            Err(_) => break,
        }
    }
    let asked = slots.len();
    let gate = DestGate::new(shared);
    let jobs = if asked == 0 {
        Vec::new()
    } else {
        match shared
            .store
            .claim_jobs(
                keys[..asked].to_vec(),
                now_ms(),
                dispatch.claimed(),
                gate.hold.clone(),
            )
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                warn!(error = %e, "cannot hand jobs over; the scheduler takes them");
                Vec::new()
            }
        }
    };
    let started = jobs.len();
    for (job, slot) in jobs.into_iter().zip(slots) {
        let permit = lock(&gate.reserved).remove(&job.key());
        start(shared, &dispatch, job, slot, permit, Via::HandOff, None);
    }
    if started < keys.len() {
        shared.delivery.wake();
    }
}

/// A step's deliveries on their way to delivery before the step's result commits (only
/// for a store whose writes apply in order, [`crate::store::Store::writes_in_order`]):
/// [`reserve_early`] before the result is queued, [`Early::start`] after.
pub(crate) struct Early {
    dispatch: Arc<Dispatch>,
    ready: Vec<(
        JobRecord,
        OwnedSemaphorePermit,
        Option<OwnedSemaphorePermit>,
    )>,
    /// Jobs not taken (no global slot, or held by their destination's limits): the
    /// result's commit queues them for the scheduler, which must then be woken.
    pub left: bool,
}

/// The first half of an early hand-off of `jobs`, whose records are not written yet:
/// takes a global slot and the destination's gate for each, as [`hand_off`] does, and
/// marks each job taken as in flight, so that no scheduler pass claims it once the
/// result's commit queues it. Call it before queueing that write.
pub(crate) fn reserve_early(shared: &Arc<Shared>, jobs: Vec<JobRecord>) -> Option<Early> {
    let dispatch = shared.delivery.dispatch()?;
    let gate = DestGate::new(shared);
    let mut ready = Vec::with_capacity(jobs.len());
    let mut left = false;
    for job in jobs {
        let Ok(slot) = dispatch.slots.clone().try_acquire_owned() else {
            left = true;
            break;
        };
        if (gate.hold)(&job) {
            left = true;
            continue;
        }
        let permit = lock(&gate.reserved).remove(&job.key());
        lock(&dispatch.inflight).insert(job.key());
        ready.push((job, slot, permit));
    }
    Some(Early {
        dispatch,
        ready,
        left,
    })
}

impl Early {
    /// The second half: starts the jobs taken, each with the event as the steps left it.
    /// Call it after queueing the write that creates them: each attempt's record is then
    /// queued after that write.
    pub(crate) fn start(&mut self, shared: &Arc<Shared>, event: &Arc<EventDetail>) {
        for (job, slot, permit) in self.ready.drain(..) {
            start(
                shared,
                &self.dispatch,
                job,
                slot,
                permit,
                Via::HandOff,
                Some(event.clone()),
            );
        }
    }
}

/// Run the scheduler until `stop`, then wait (bounded) for attempts in flight.
#[instrument(skip_all)]
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let max = shared.limits.max_inflight.max(1);
    let dispatch = Arc::new(Dispatch::new(max));
    let slots = dispatch.slots.clone();
    shared.delivery.set_dispatch(Some(dispatch.clone()));
    loop {
        if stop.is_cancelled() {
            break;
        }
        {
            let done: Vec<JobKey> = std::mem::take(&mut *lock(&dispatch.done));
            let mut s = lock(&dispatch.inflight);
            for k in done {
                s.remove(&k);
            }
        }
        shared.metrics.scheduler_passes.inc();
        let now = now_ms();
        let claimed = dispatch.claimed();
        let gate = DestGate::new(&shared);
        let (hold, reserved, refill, probe_at) = (
            gate.hold.clone(),
            gate.reserved.clone(),
            gate.refill.clone(),
            gate.probe_at.clone(),
        );
        let due = match shared
            .store
            .claim_due(now, CLAIM_BATCH, claimed, hold)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot read due jobs");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if !due.undecodable.is_empty() {
            let keys: Vec<String> = due
                .undecodable
                .iter()
                .map(|(_, k)| format!("{}/{}", k.event, k.index))
                .collect();
            warn!(jobs = ?keys, "job records that cannot be decoded: quarantined, the rest goes on");
            match shared.store.quarantine(due.undecodable.clone()).await {
                Ok(n) => shared.metrics.jobs_quarantined.inc_by(n as u64),
                Err(e) => warn!(error = %e, "cannot quarantine job records"),
            }
        }
        let mut next_due = due.next_due_ms;
        let mut jobs: std::collections::VecDeque<JobRecord> = due.jobs.into();
        while let Some(job) = jobs.pop_front() {
            let Ok(slot) = dispatch.slots.clone().try_acquire_owned() else {
                // Every slot is busy: a finishing attempt wakes us. What was claimed and not
                // started goes back (a shared store leased it to this worker).
                next_due = None;
                let rest: Vec<JobKey> = std::iter::once(job.key())
                    .chain(jobs.iter().map(JobRecord::key))
                    .collect();
                if let Err(e) = shared.store.release(rest).await {
                    warn!(error = %e, "cannot release claimed jobs; their lease runs out");
                }
                break;
            };
            let permit = lock(&reserved).remove(&job.key());
            start(&shared, &dispatch, job, slot, permit, Via::Scheduler, None);
        }
        // Reservations of jobs not started go back; a held job's token comes back in time.
        lock(&reserved).clear();
        if let Some(wait) = lock(&refill).take() {
            let at = now_ms().saturating_add(wait.as_millis() as u64);
            next_due = Some(next_due.map_or(at, |t| t.min(at)));
        }
        if let Some(at) = lock(&probe_at).take() {
            next_due = Some(next_due.map_or(at, |t| t.min(at)));
        }
        let longest = shared.store.poll_interval().unwrap_or(MAX_SLEEP);
        let sleep = next_due
            .map(|t| Duration::from_millis(t.saturating_sub(now_ms())))
            .unwrap_or(longest)
            .min(longest);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = shared.delivery.woken() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
    // Nothing more is handed over; what is in flight gets the grace period.
    shared.delivery.set_dispatch(None);
    if tokio::time::timeout(shared.limits.shutdown_grace, slots.acquire_many(max as u32))
        .await
        .is_err()
    {
        warn!(
            "delivery: attempts still in flight after the shutdown grace period; they will be retried after restart"
        );
    }
}
