//! Circuit breakers of destinations (`docs/circuit-breaker.md`).
//!
//! A destination with `circuitBreaker` counts its failed attempts (every attempt the retry
//! logic counts as failed: a status outside 2xx, a timeout, a connection error; a 410
//! pauses instead). After `consecutiveFailures` in a row, or a failure rate over a window,
//! the breaker opens: the scheduler holds the destination's jobs (no attempt, no retry
//! spent) until `openFor` has passed; then one job goes out as the probe (half-open). Its
//! success closes the breaker, its failure opens it again. A destination failing without
//! one success for `disableAfter` is disabled: paused like after a 410, resumed the same way.
//!
//! The state lives in the store ([`Store::update_breaker`], one transaction, a row lock on
//! a shared store), so it survives restarts and every worker of a pool sees one breaker;
//! each worker keeps a copy for the scheduler's hold filter, refreshed from the store with
//! the paused destinations. The failure rate is counted per worker, in memory.
//!
//! The transitions are pure functions of (stored state, outcome, now): [`after_attempt`]
//! and [`take_probe`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use causeway_config::{CircuitBreakerConfig, NotificationEvent};
use prometheus::{IntCounterVec, IntGaugeVec};

use crate::store::{BreakerPhase, BreakerState, BreakerUpdate, Store, StoreError};
use crate::sync::lock;

/// How long a worker holds the half-open probe beyond the attempt's timeout: after that
/// (its worker died), another may probe.
const PROBE_GRACE_MS: u64 = 10_000;

type Key = (String, String);

/// What the stored breaker becomes after one attempt: `ok` (a 2xx) or a failure,
/// `rate_tripped` when the worker's failure rate over the window calls for opening.
pub fn after_attempt(
    cfg: &CircuitBreakerConfig,
    old: Option<&BreakerState>,
    ok: bool,
    rate_tripped: bool,
    now: u64,
) -> Option<BreakerState> {
    if ok {
        // Any success proves the destination takes deliveries: closed, counts reset. A
        // disabled destination stays so until resumed.
        return old.filter(|b| b.phase == BreakerPhase::Disabled).cloned();
    }
    let mut b = old.cloned().unwrap_or_default();
    b.consecutive_failures = b.consecutive_failures.saturating_add(1);
    let since = *b.failing_since_ms.get_or_insert(now);
    if b.phase == BreakerPhase::Disabled {
        return Some(b);
    }
    if cfg
        .disable_after_ms
        .is_some_and(|d| now.saturating_sub(since) >= d)
    {
        b.phase = BreakerPhase::Disabled;
        b.until_ms = 0;
        b.probe = 0;
        return Some(b);
    }
    match b.phase {
        BreakerPhase::HalfOpen => {
            // The probe failed (or an attempt still in flight when it opened): open again.
            b.phase = BreakerPhase::Open;
            b.until_ms = now.saturating_add(cfg.open_for_ms);
            b.probe = 0;
        }
        BreakerPhase::Closed
            if b.consecutive_failures >= cfg.consecutive_failures.max(1) || rate_tripped =>
        {
            b.phase = BreakerPhase::Open;
            b.until_ms = now.saturating_add(cfg.open_for_ms);
            b.openings += 1;
        }
        // Open: an attempt started before it opened; closed below the thresholds.
        _ => {}
    }
    Some(b)
}

/// Take the half-open probe for `token` when the breaker is open past its time (or a
/// probe's holder let its claim run out); otherwise leave the breaker as it is.
pub fn take_probe(
    old: Option<&BreakerState>,
    now: u64,
    token: u64,
    hold_ms: u64,
) -> Option<BreakerState> {
    let b = old?;
    let free = match b.phase {
        BreakerPhase::Open | BreakerPhase::HalfOpen => now >= b.until_ms,
        _ => false,
    };
    if !free {
        return Some(b.clone());
    }
    Some(BreakerState {
        phase: BreakerPhase::HalfOpen,
        until_ms: now.saturating_add(hold_ms),
        probe: token,
        ..b.clone()
    })
}

/// What a breaker's change tells: the notification and log line it is worth.
pub fn transition(
    before: Option<&BreakerState>,
    after: Option<&BreakerState>,
) -> Option<NotificationEvent> {
    let phase = |b: Option<&BreakerState>| b.map_or(BreakerPhase::Closed, |b| b.phase);
    match (phase(before), phase(after)) {
        (BreakerPhase::Closed, BreakerPhase::Open) => Some(NotificationEvent::DestinationOpened),
        (BreakerPhase::Open | BreakerPhase::HalfOpen, BreakerPhase::Closed) => {
            Some(NotificationEvent::DestinationClosed)
        }
        (a, BreakerPhase::Disabled) if a != BreakerPhase::Disabled => {
            Some(NotificationEvent::DestinationDisabled)
        }
        _ => None,
    }
}

/// What the scheduler does with a job of a destination, by its breaker.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Attempt it.
    Pass,
    /// Hold it; look again at this time (None: when woken).
    Hold(Option<u64>),
}

/// Failed attempts over a window, on this worker.
#[derive(Default)]
struct Rate {
    /// `(at_ms, failed)`, oldest first.
    seen: VecDeque<(u64, bool)>,
}

/// Every destination's breaker on this worker: a copy of the store's, the local probe
/// holds, the failure rates and the metrics.
pub struct Breakers {
    states: Mutex<HashMap<Key, BreakerState>>,
    /// Destinations whose probe this worker's scheduler let through, until when.
    probing: Mutex<HashMap<Key, u64>>,
    rates: Mutex<HashMap<Key, Rate>>,
    state_gauge: IntGaugeVec,
    openings: IntCounterVec,
    tokens: AtomicU64,
}

/// The gauge's value of a phase.
pub fn gauge_value(p: BreakerPhase) -> i64 {
    match p {
        BreakerPhase::Closed => 0,
        BreakerPhase::Open => 1,
        BreakerPhase::HalfOpen => 2,
        BreakerPhase::Disabled => 3,
    }
}

impl Breakers {
    pub fn new(state_gauge: IntGaugeVec, openings: IntCounterVec) -> Self {
        Breakers {
            states: Mutex::default(),
            probing: Mutex::default(),
            rates: Mutex::default(),
            state_gauge,
            openings,
            tokens: AtomicU64::new(rand::random::<u64>() | 1),
        }
    }

    fn key(bridge: &str, destination: &str) -> Key {
        (bridge.to_string(), destination.to_string())
    }

    /// The breaker of one destination as this worker last saw it.
    pub fn state(&self, bridge: &str, destination: &str) -> Option<BreakerState> {
        lock(&self.states)
            .get(&Self::key(bridge, destination))
            .cloned()
    }

    /// Every breaker that is not closed, `(bridge, destination)` → phase.
    pub fn not_closed(&self) -> HashMap<Key, BreakerPhase> {
        lock(&self.states)
            .iter()
            .filter(|(_, b)| b.phase != BreakerPhase::Closed)
            .map(|(k, b)| (k.clone(), b.phase))
            .collect()
    }

    /// Keep the copy, and the gauge, as the store has them now.
    pub fn set(&self, bridge: &str, destination: &str, state: Option<BreakerState>) {
        let key = Self::key(bridge, destination);
        let phase = state.as_ref().map_or(BreakerPhase::Closed, |b| b.phase);
        {
            let mut s = lock(&self.states);
            match state {
                Some(b) => s.insert(key.clone(), b),
                None => s.remove(&key),
            };
        }
        if phase != BreakerPhase::HalfOpen {
            lock(&self.probing).remove(&key);
        }
        self.state_gauge
            .with_label_values(&[bridge, destination])
            .set(gauge_value(phase));
    }

    /// Replace the copy with the store's breakers (at start, and from the shared-state
    /// sync); returns true when one closed or its time moved (the scheduler should look).
    pub fn sync(&self, in_store: Vec<(Key, BreakerState)>) -> bool {
        let want: HashMap<Key, BreakerState> = in_store.into_iter().collect();
        let have = lock(&self.states).clone();
        let mut wake = false;
        for (k, b) in &have {
            if !want.contains_key(k) {
                self.set(&k.0, &k.1, None);
                wake |= b.phase != BreakerPhase::Closed;
            }
        }
        for (k, b) in want {
            if have.get(&k) != Some(&b) {
                wake = true;
                self.set(&k.0, &k.1, Some(b));
            }
        }
        wake
    }

    /// Load the store's breakers (at start).
    pub async fn load(&self, store: &dyn Store) -> Result<(), StoreError> {
        self.sync(store.breakers().await?);
        Ok(())
    }

    /// The scheduler's question for a due job: hold it while the breaker is open (until
    /// the probe's time), let one job through as the probe, hold the rest meanwhile.
    pub fn gate(&self, bridge: &str, destination: &str, now: u64, probe_hold_ms: u64) -> Gate {
        let key = Self::key(bridge, destination);
        let Some((phase, until)) = lock(&self.states).get(&key).map(|b| (b.phase, b.until_ms))
        else {
            return Gate::Pass;
        };
        match phase {
            BreakerPhase::Closed => Gate::Pass,
            BreakerPhase::Disabled => Gate::Hold(None),
            BreakerPhase::Open | BreakerPhase::HalfOpen if now < until => Gate::Hold(Some(until)),
            BreakerPhase::Open | BreakerPhase::HalfOpen => {
                let mut probing = lock(&self.probing);
                match probing.get(&key) {
                    Some(&t) if now < t => Gate::Hold(Some(t)),
                    _ => {
                        probing.insert(key, now.saturating_add(probe_hold_ms));
                        Gate::Pass
                    }
                }
            }
        }
    }

    /// A new probe token (distinct per attempt on this worker, random across workers).
    pub fn token(&self) -> u64 {
        self.tokens.fetch_add(2, Ordering::Relaxed)
    }

    /// The update that takes the probe for `token`.
    pub fn take_probe_update(now: u64, token: u64, timeout_ms: u64) -> BreakerUpdate {
        let hold = timeout_ms.saturating_add(PROBE_GRACE_MS);
        std::sync::Arc::new(move |old| take_probe(old, now, token, hold))
    }

    /// How long the scheduler lets a probe it passed stay out before it passes another.
    pub fn probe_hold_ms(timeout_ms: u64) -> u64 {
        timeout_ms.saturating_add(PROBE_GRACE_MS)
    }

    /// The probe this worker let through is over (sent, or not sent after all).
    pub fn probe_done(&self, bridge: &str, destination: &str) {
        lock(&self.probing).remove(&Self::key(bridge, destination));
    }

    /// Record one attempt's outcome in the worker's failure rate; true when the rate
    /// calls for opening.
    pub fn rate(
        &self,
        bridge: &str,
        destination: &str,
        cfg: &CircuitBreakerConfig,
        ok: bool,
        now: u64,
    ) -> bool {
        let Some(r) = &cfg.failure_rate else {
            return false;
        };
        let mut rates = lock(&self.rates);
        let rate = rates.entry(Self::key(bridge, destination)).or_default();
        rate.seen.push_back((now, !ok));
        let from = now.saturating_sub(r.window_ms);
        while rate.seen.front().is_some_and(|(t, _)| *t < from) {
            rate.seen.pop_front();
        }
        let total = rate.seen.len() as u64;
        let failed = rate.seen.iter().filter(|(_, f)| *f).count() as u64;
        let tripped =
            total >= u64::from(r.min_attempts) && failed * 100 >= total * u64::from(r.percent);
        if tripped {
            // Counted once: after an opening the window starts again.
            rate.seen.clear();
        }
        tripped
    }

    /// Count an opening in the metric.
    pub fn opened(&self, bridge: &str, destination: &str) {
        self.openings
            .with_label_values(&[bridge, destination])
            .inc();
    }

    /// Forget a destination that is gone from the configuration.
    pub fn forget(&self, keep: &std::collections::HashSet<(&str, &str)>) {
        let gone: Vec<Key> = lock(&self.states)
            .keys()
            .filter(|(b, d)| !keep.contains(&(b.as_str(), d.as_str())))
            .cloned()
            .collect();
        for (b, d) in gone {
            lock(&self.states).remove(&(b.clone(), d.clone()));
            let _ = self.state_gauge.remove_label_values(&[&b, &d]);
            let _ = self.openings.remove_label_values(&[&b, &d]);
        }
        lock(&self.rates).retain(|(b, d), _| keep.contains(&(b.as_str(), d.as_str())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_config::FailureRateConfig;
    use prometheus::Opts;

    fn cfg() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            consecutive_failures: 3,
            failure_rate: None,
            open_for_ms: 1_000,
            disable_after_ms: Some(10_000),
        }
    }

    impl Breakers {
        fn for_test() -> Self {
            let labels = &["bridge", "destination"];
            Breakers::new(
                IntGaugeVec::new(Opts::new("s", "s"), labels).unwrap(),
                IntCounterVec::new(Opts::new("o", "o"), labels).unwrap(),
            )
        }
    }

    #[test]
    fn consecutive_failures_open_and_a_success_closes() {
        let c = cfg();
        let mut b = None;
        for t in 0..2 {
            b = after_attempt(&c, b.as_ref(), false, false, 100 + t);
            assert_eq!(b.as_ref().map(|b| b.phase), Some(BreakerPhase::Closed));
        }
        let opened = after_attempt(&c, b.as_ref(), false, false, 200);
        let o = opened.clone().unwrap();
        assert_eq!(
            (o.phase, o.until_ms, o.openings),
            (BreakerPhase::Open, 1_200, 1)
        );
        assert_eq!(o.failing_since_ms, Some(100));
        assert_eq!(
            transition(b.as_ref(), opened.as_ref()),
            Some(NotificationEvent::DestinationOpened)
        );
        // A success before the threshold resets the count.
        let reset = after_attempt(&c, b.as_ref(), true, false, 150);
        assert_eq!(reset, None);
    }

    #[test]
    fn one_probe_after_open_for_then_close_or_open_again() {
        let c = cfg();
        let open = BreakerState {
            phase: BreakerPhase::Open,
            consecutive_failures: 3,
            failing_since_ms: Some(0),
            until_ms: 1_000,
            probe: 0,
            openings: 1,
        };
        // Too early: nobody probes.
        assert_eq!(take_probe(Some(&open), 999, 7, 500), Some(open.clone()));
        let half = take_probe(Some(&open), 1_000, 7, 500).unwrap();
        assert_eq!(
            (half.phase, half.probe, half.until_ms),
            (BreakerPhase::HalfOpen, 7, 1_500)
        );
        // A second worker asks while the probe is out: it does not get it.
        assert_eq!(take_probe(Some(&half), 1_200, 9, 500).unwrap().probe, 7);
        // Its holder died: after the hold another may probe.
        assert_eq!(take_probe(Some(&half), 1_500, 9, 500).unwrap().probe, 9);
        // The probe fails: open again for openFor, not a new opening.
        let again = after_attempt(&c, Some(&half), false, false, 1_100).unwrap();
        assert_eq!(
            (again.phase, again.until_ms, again.openings),
            (BreakerPhase::Open, 2_100, 1)
        );
        assert_eq!(transition(Some(&half), Some(&again)), None);
        // The probe succeeds: closed.
        let closed = after_attempt(&c, Some(&half), true, false, 1_100);
        assert_eq!(closed, None);
        assert_eq!(
            transition(Some(&half), closed.as_ref()),
            Some(NotificationEvent::DestinationClosed)
        );
    }

    #[test]
    fn failing_for_disable_after_disables_until_resumed() {
        let c = cfg();
        let open = after_attempt(
            &c,
            Some(&BreakerState {
                consecutive_failures: 2,
                failing_since_ms: Some(0),
                ..BreakerState::default()
            }),
            false,
            false,
            100,
        );
        let d = after_attempt(&c, open.as_ref(), false, false, 10_000).unwrap();
        assert_eq!(d.phase, BreakerPhase::Disabled);
        assert_eq!(
            transition(open.as_ref(), Some(&d)),
            Some(NotificationEvent::DestinationDisabled)
        );
        // A success of an attempt still in flight does not undo it.
        assert_eq!(
            after_attempt(&c, Some(&d), true, false, 10_001),
            Some(d.clone())
        );
        // Without disableAfter, never.
        let never = CircuitBreakerConfig {
            disable_after_ms: None,
            ..c
        };
        let b = after_attempt(&never, open.as_ref(), false, false, u64::MAX / 2).unwrap();
        assert_eq!(b.phase, BreakerPhase::Open);
    }

    #[test]
    fn the_failure_rate_opens_past_its_minimum_of_attempts() {
        let c = CircuitBreakerConfig {
            consecutive_failures: 1000,
            failure_rate: Some(FailureRateConfig {
                percent: 50,
                window_ms: 1_000,
                min_attempts: 4,
            }),
            ..cfg()
        };
        let br = Breakers::for_test();
        // ok, fail, ok: below the minimum.
        assert!(!br.rate("b", "d", &c, true, 0));
        assert!(!br.rate("b", "d", &c, false, 1));
        assert!(!br.rate("b", "d", &c, true, 2));
        // A fourth, failed: 2 of 4.
        assert!(br.rate("b", "d", &c, false, 3));
        // Old attempts leave the window.
        assert!(!br.rate("b", "d", &c, false, 5_000));
        assert!(
            after_attempt(&c, None, false, true, 10).is_some_and(|b| b.phase == BreakerPhase::Open)
        );
    }

    #[test]
    fn the_gate_holds_while_open_and_passes_one_probe() {
        let br = Breakers::for_test();
        assert_eq!(br.gate("b", "d", 0, 100), Gate::Pass);
        br.set(
            "b",
            "d",
            Some(BreakerState {
                phase: BreakerPhase::Open,
                until_ms: 1_000,
                ..BreakerState::default()
            }),
        );
        assert_eq!(br.gate("b", "d", 500, 100), Gate::Hold(Some(1_000)));
        assert_eq!(br.gate("b", "d", 1_000, 100), Gate::Pass, "the probe");
        assert_eq!(
            br.gate("b", "d", 1_001, 100),
            Gate::Hold(Some(1_100)),
            "one probe only"
        );
        br.probe_done("b", "d");
        assert_eq!(br.gate("b", "d", 1_002, 100), Gate::Pass);
        br.set("b", "d", None);
        assert_eq!(br.gate("b", "d", 1_003, 100), Gate::Pass);
    }
}
