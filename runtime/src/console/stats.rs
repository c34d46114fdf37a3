//! What the Bridges and Plugins pages count: events of the last hour per bridge (from the
//! store, newest first, bounded), and plugin calls, errors and call times (from the plugin
//! host's Prometheus metrics, since the worker started).

use std::collections::HashMap;

use crate::store::{EventQuery, EventStatus, Store, StoreError};

/// The window the Bridges page counts.
pub const WINDOW_MS: u64 = 60 * 60 * 1000;
/// Minutes in the sparkline.
pub const MINUTES: usize = 60;
/// Events read at most for the counts, so the page costs the same on a busy store.
pub const SCAN_LIMIT: usize = 20_000;
/// Events per store read while counting.
const SCAN_PAGE: usize = 1_000;

/// One bridge's last hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeHour {
    pub received: u64,
    pub delivered: u64,
    /// Not yet delivered: queued, or failing and waiting for the next try.
    pub pending: u64,
    pub dead: u64,
    pub filtered: u64,
    /// Events received per minute, oldest first; the last is the current minute.
    pub per_minute: Vec<u64>,
}

impl Default for BridgeHour {
    fn default() -> Self {
        BridgeHour {
            received: 0,
            delivered: 0,
            pending: 0,
            dead: 0,
            filtered: 0,
            per_minute: vec![0; MINUTES],
        }
    }
}

/// The counts of every bridge, and whether the scan stopped at [`SCAN_LIMIT`] before
/// the hour was over (then the counts cover only the newest events).
#[derive(Debug, Default)]
pub struct Hour {
    pub bridges: HashMap<String, BridgeHour>,
    /// When the scan stopped early: the receive time of the oldest event counted.
    pub partial_since_ms: Option<u64>,
}

/// Counts the events received in the hour before `now_ms`, newest first, reading at most
/// `limit` events (pages of the store's cursor listing).
pub async fn last_hour(store: &dyn Store, now_ms: u64, limit: usize) -> Result<Hour, StoreError> {
    let since = now_ms.saturating_sub(WINDOW_MS);
    let mut hour = Hour::default();
    let mut before = None;
    let mut read = 0;
    loop {
        let page = store
            .list_events(EventQuery {
                bridge: None,
                status: None,
                limit: SCAN_PAGE.min(limit - read).max(1),
                before,
                ..Default::default()
            })
            .await?;
        let n = page.len();
        for e in &page {
            if e.received_at_ms < since {
                return Ok(hour);
            }
            read += 1;
            let b = hour.bridges.entry(e.bridge.clone()).or_default();
            b.received += 1;
            match e.status {
                EventStatus::Delivered => b.delivered += 1,
                EventStatus::Pending => b.pending += 1,
                EventStatus::Dead => b.dead += 1,
                EventStatus::Filtered => b.filtered += 1,
            }
            let age_min = (now_ms.saturating_sub(e.received_at_ms) / 60_000) as usize;
            if age_min < MINUTES {
                b.per_minute[MINUTES - 1 - age_min] += 1;
            }
            if read >= limit {
                hour.partial_since_ms = Some(e.received_at_ms);
                return Ok(hour);
            }
        }
        match page.last() {
            Some(last) if n >= SCAN_PAGE.min(limit) => before = Some(last.id),
            _ => return Ok(hour),
        }
    }
}

/// One plugin's calls since the worker started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PluginCalls {
    pub calls: u64,
    /// Calls that did not answer (trap, timeout, out of memory, busy, …).
    pub errors: u64,
    /// The upper bound of the histogram bucket holding the median and the 99th percentile,
    /// in seconds (`None` without calls; infinite past the last bucket).
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
}

/// Calls, errors and call-time percentiles per plugin (`namespace/name`) from the plugin
/// host's metrics (`causeway_plugin_calls_total`, `causeway_plugin_call_duration_seconds`).
pub fn plugin_calls(registry: &prometheus::Registry) -> HashMap<String, PluginCalls> {
    let mut out: HashMap<String, PluginCalls> = HashMap::new();
    // Per plugin: cumulative bucket counts by upper bound, summed over outcomes.
    let mut buckets: HashMap<String, Vec<(f64, u64)>> = HashMap::new();
    for family in registry.gather() {
        let name = family.name();
        for m in family.get_metric() {
            let label = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map(|l| l.value().to_string())
            };
            let Some(plugin) = label("plugin") else {
                continue;
            };
            if name == "causeway_plugin_calls_total" {
                let n = m.get_counter().get_value() as u64;
                let p = out.entry(plugin).or_default();
                p.calls += n;
                if label("outcome").as_deref() != Some("ok") {
                    p.errors += n;
                }
            } else if name == "causeway_plugin_call_duration_seconds" {
                let h = m.get_histogram();
                let acc = buckets.entry(plugin).or_default();
                for (i, b) in h.get_bucket().iter().enumerate() {
                    if acc.len() <= i {
                        acc.push((b.upper_bound(), 0));
                    }
                    acc[i].1 += b.cumulative_count();
                }
            }
        }
    }
    for (plugin, acc) in buckets {
        let p = out.entry(plugin).or_default();
        p.p50_s = quantile(&acc, p.calls, 0.50);
        p.p99_s = quantile(&acc, p.calls, 0.99);
    }
    out
}

/// The upper bound of the first bucket whose cumulative count reaches `q` of `total`.
fn quantile(buckets: &[(f64, u64)], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil().max(1.0) as u64;
    Some(
        buckets
            .iter()
            .find(|(_, c)| *c >= want)
            .map(|(ub, _)| *ub)
            .unwrap_or(f64::INFINITY),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_upper_bounds() {
        let b = [(0.001, 50), (0.01, 98), (0.1, 100)];
        assert_eq!(quantile(&b, 100, 0.5), Some(0.001));
        assert_eq!(quantile(&b, 100, 0.99), Some(0.1));
        assert_eq!(quantile(&b, 0, 0.5), None);
        // Past the last bucket (the +Inf bucket is implicit in Prometheus' output).
        assert_eq!(quantile(&b, 120, 0.99), Some(f64::INFINITY));
    }

    #[test]
    fn plugin_calls_come_from_the_hosts_metrics() {
        let r = prometheus::Registry::new();
        let calls = prometheus::IntCounterVec::new(
            prometheus::Opts::new("causeway_plugin_calls_total", "calls"),
            &["plugin", "outcome"],
        )
        .unwrap();
        let secs = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("causeway_plugin_call_duration_seconds", "secs")
                .buckets(vec![0.001, 0.01, 0.1]),
            &["plugin", "outcome"],
        )
        .unwrap();
        r.register(Box::new(calls.clone())).unwrap();
        r.register(Box::new(secs.clone())).unwrap();
        for _ in 0..98 {
            calls.with_label_values(&["shop/p", "ok"]).inc();
            secs.with_label_values(&["shop/p", "ok"]).observe(0.0005);
        }
        for _ in 0..2 {
            calls.with_label_values(&["shop/p", "trap"]).inc();
            secs.with_label_values(&["shop/p", "trap"]).observe(0.05);
        }
        let got = plugin_calls(&r);
        let p = &got["shop/p"];
        assert_eq!((p.calls, p.errors), (100, 2));
        assert_eq!(p.p50_s, Some(0.001));
        assert_eq!(p.p99_s, Some(0.1));
    }
}
