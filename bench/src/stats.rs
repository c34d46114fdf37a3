//! Statistics: percentiles of one run, the median/min/max of repeated runs, ratios paired
//! run by run, and when a request's latency starts (the coordinated-omission rule).

/// Where an open-loop request's latency is measured from.
///
/// The generator plans request `i` for `intended`; it actually went out at `sent`; the
/// previous request on the same connection finished at `prev_done` (0 for the first).
///
/// - If the connection was still busy at `intended`, the wait until `sent` was caused by
///   the system under test (a real sender would have been waiting too): latency starts at
///   `intended`. This is what keeps coordinated omission from hiding a stall: every
///   request planned during a stall carries the stall.
/// - If the connection was idle at `intended`, any gap until `sent` is the generator's own
///   timer slack (tokio timers have 1 ms granularity), not the system's: latency starts at
///   `sent`, so sub-millisecond figures are not inflated by up to a millisecond.
pub fn latency_start(intended: u64, sent: u64, prev_done: u64) -> u64 {
    if prev_done > intended {
        intended
    } else {
        sent.max(intended)
    }
}

/// The `p`-th percentile (0..=100) of `sorted` by the nearest-rank method: the smallest
/// value such that at least p% of the samples are <= it. `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // The epsilon keeps float error (0.999 * 1000 = 999.0000000000001) from moving a rank up.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and p99.9 of unsorted samples (sorted in place).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub n: usize,
}

impl Percentiles {
    pub fn of(samples: &mut [u64]) -> Option<Percentiles> {
        samples.sort_unstable();
        Some(Percentiles {
            p50: percentile(samples, 50.0)? as f64,
            p99: percentile(samples, 99.0)? as f64,
            p999: percentile(samples, 99.9)? as f64,
            n: samples.len(),
        })
    }
}

/// The median of repeated runs, with min and max.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Summary {
    /// `None` when there is no finite value. Non-finite values (a failed run) are skipped.
    /// With an even count the median is the mean of the two middle values.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[n - 1],
            runs: n,
        })
    }
}

/// Ratios `a[i] / b[i]` of runs made side by side (run `i` of the system and run `i` of
/// its baseline, back to back), so that a slow moment of a shared machine affects both
/// sides of a ratio. Pairs with a missing or zero side are skipped.
pub fn paired_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite() && **y != 0.0)
        .map(|(x, y)| x / y)
        .collect()
}

/// Differences `a[i] - b[i]` of paired runs (an added cost).
pub fn paired_differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| x - y)
        .collect()
}

/// Least-squares slope of `(x, y)` points (y per unit of x); `None` with fewer than two
/// distinct x. Used for "is the queue growing": backlog samples over time.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.9), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // 1000 samples: p99.9 is the 999th, not the maximum.
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.9), Some(999));
    }

    #[test]
    fn percentiles_sort_their_input() {
        let mut v = vec![5, 1, 4, 2, 3];
        let p = Percentiles::of(&mut v).unwrap();
        assert_eq!((p.p50, p.p99, p.n), (3.0, 5.0, 5));
    }

    #[test]
    fn median_min_max_of_runs() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0, 4.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (3.0, 1.0, 10.0, 5));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        // A failed run (NaN) does not count.
        let s = Summary::of(&[f64::NAN, 2.0, 4.0]).unwrap();
        assert_eq!((s.median, s.runs), (3.0, 2));
        assert!(Summary::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn ratios_are_paired_run_by_run() {
        // The baseline got slower in run 2 as the system did: the ratio stays put.
        let sys = [50.0, 25.0, 52.0];
        let base = [100.0, 50.0, 100.0];
        assert_eq!(paired_ratios(&sys, &base), vec![0.5, 0.5, 0.52]);
        assert_eq!(
            paired_ratios(&[1.0, 2.0], &[0.0, f64::NAN]),
            Vec::<f64>::new()
        );
        assert_eq!(paired_differences(&[5.0, 7.0], &[3.0, 3.0]), vec![2.0, 4.0]);
    }

    /// A 100 ms stall with requests planned every 10 ms on one connection: the requests
    /// planned during the stall each carry the part of the stall they waited through,
    /// instead of one slow sample (which is what a closed-loop measurement would record).
    #[test]
    fn a_stall_is_charged_to_every_request_planned_during_it() {
        let ms = 1_000_000u64;
        let interval = 10 * ms;
        let service = |i: u64| if i == 2 { 100 * ms } else { ms };
        let mut prev_done = 0;
        let mut latencies = vec![];
        for i in 0..15u64 {
            let intended = i * interval;
            let sent = intended.max(prev_done);
            let done = sent + service(i);
            latencies.push((done - latency_start(intended, sent, prev_done)) / ms);
            prev_done = done;
        }
        // Request 2 takes 100 ms; 3..=11 were planned while it ran and wait for it.
        assert_eq!(latencies[2], 100);
        assert_eq!(&latencies[3..12], &[91, 82, 73, 64, 55, 46, 37, 28, 19]);
        assert_eq!(latencies[12], 10);
        // Caught up: back to the service time.
        assert_eq!(&latencies[13..], &[1, 1]);
    }

    #[test]
    fn timer_slack_on_an_idle_connection_is_not_charged() {
        // Planned at 1000, sent 800 µs late by the timer, connection idle since 500.
        assert_eq!(latency_start(1_000, 1_800, 500), 1_800);
        // Same lateness while the connection was busy until 1_700: charged from 1000.
        assert_eq!(latency_start(1_000, 1_800, 1_700), 1_000);
        // Sent early (cannot happen, but never before the plan).
        assert_eq!(latency_start(1_000, 900, 0), 1_000);
    }

    #[test]
    fn slope_of_a_growing_and_a_flat_backlog() {
        let growing: Vec<(f64, f64)> = (0..10).map(|t| (t as f64, 5.0 + 3.0 * t as f64)).collect();
        assert!((slope(&growing).unwrap() - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10)
            .map(|t| (t as f64, if t % 2 == 0 { 4.0 } else { 6.0 }))
            .collect();
        assert!(slope(&flat).unwrap().abs() < 0.25);
        assert!(slope(&[(1.0, 1.0)]).is_none());
    }
}
