//! The last hour of each destination on this worker, in minute buckets: deliveries that got
//! a 2xx, attempts that failed, deliveries dead-lettered. The admin report carries it, and
//! the operator writes it into the Bridge's status (at most once a minute), so that
//! `kubectl get bridge -o wide` and Argo CD show a bridge's health, not only its config.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::sync::lock;

const MINUTES: usize = 60;

/// What one attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Failed; retried, paused, or given up (then [`Outcome::Dead`] is recorded too).
    Failed,
    Dead,
}

/// Counts of one destination over the last hour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HourCounts {
    pub delivered: u64,
    pub failed: u64,
    pub dead: u64,
}

struct Buckets {
    /// The minute (since the epoch) each bucket counts; a bucket of an older minute is stale.
    minute: [u64; MINUTES],
    counts: [HourCounts; MINUTES],
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            minute: [0; MINUTES],
            counts: [HourCounts::default(); MINUTES],
        }
    }
}

/// Every destination's last hour.
#[derive(Default)]
pub struct HourWindow {
    by_destination: Mutex<HashMap<(String, String), Buckets>>,
}

impl HourWindow {
    pub fn record(&self, bridge: &str, destination: &str, outcome: Outcome, now_ms: u64) {
        let minute = now_ms / 60_000;
        let slot = (minute % MINUTES as u64) as usize;
        let mut all = lock(&self.by_destination);
        let b = all
            .entry((bridge.to_string(), destination.to_string()))
            .or_default();
        if b.minute[slot] != minute {
            b.minute[slot] = minute;
            b.counts[slot] = HourCounts::default();
        }
        let c = &mut b.counts[slot];
        match outcome {
            Outcome::Delivered => c.delivered += 1,
            Outcome::Failed => c.failed += 1,
            Outcome::Dead => c.dead += 1,
        }
    }

    /// The last 60 minutes (the current one included).
    pub fn last_hour(&self, bridge: &str, destination: &str, now_ms: u64) -> HourCounts {
        let minute = now_ms / 60_000;
        let all = lock(&self.by_destination);
        let Some(b) = all.get(&(bridge.to_string(), destination.to_string())) else {
            return HourCounts::default();
        };
        let mut sum = HourCounts::default();
        for (m, c) in b.minute.iter().zip(&b.counts) {
            if *m + (MINUTES as u64) > minute && *m <= minute {
                sum.delivered += c.delivered;
                sum.failed += c.failed;
                sum.dead += c.dead;
            }
        }
        sum
    }

    /// Forgets destinations that are no longer configured.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        lock(&self.by_destination).retain(|(b, d), _| keep(b, d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_age_out_after_an_hour_minute_by_minute() {
        let w = HourWindow::default();
        let t0 = 1_000 * 60_000; // a minute boundary
        w.record("ns/b", "d", Outcome::Delivered, t0);
        w.record("ns/b", "d", Outcome::Failed, t0 + 30_000);
        w.record("ns/b", "d", Outcome::Dead, t0 + 30_000);
        w.record("ns/b", "d", Outcome::Delivered, t0 + 10 * 60_000);
        w.record("ns/b", "other", Outcome::Delivered, t0);
        let at = |ms| w.last_hour("ns/b", "d", ms);
        assert_eq!(
            at(t0 + 11 * 60_000),
            HourCounts {
                delivered: 2,
                failed: 1,
                dead: 1
            }
        );
        // 60 minutes after t0's minute, its bucket is out of the hour.
        assert_eq!(
            at(t0 + 60 * 60_000),
            HourCounts {
                delivered: 1,
                failed: 0,
                dead: 0
            }
        );
        // A bucket reused an hour later starts from zero.
        w.record("ns/b", "d", Outcome::Failed, t0 + 60 * 60_000);
        assert_eq!(at(t0 + 60 * 60_000).failed, 1);
        assert_eq!(at(t0 + 120 * 60_000), HourCounts::default());
        assert_eq!(w.last_hour("ns/b", "missing", t0), HourCounts::default());
        w.retain(|_, d| d == "d");
        assert_eq!(w.last_hour("ns/b", "other", t0), HourCounts::default());
    }
}
