//! One Prometheus registry, prefix `causeway_`. Labels are the bridge (`namespace/name`),
//! the destination name and a fixed set of reasons: nothing unbounded (no ids, no URLs).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::store::embedded::StoreMetrics;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// The plugin host's metrics, already named `causeway_plugin_*`, so unprefixed here.
    pub plugin_registry: Registry,
    pub received: IntCounterVec,
    pub accepted: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub rejected: IntCounterVec,
    pub filtered: IntCounterVec,
    pub delivered: IntCounterVec,
    pub retried: IntCounterVec,
    pub dead: IntCounterVec,
    pub attempts: IntCounterVec,
    pub paused: IntGaugeVec,
    /// Each destination's circuit breaker: 0 closed, 1 open, 2 half-open, 3 disabled.
    pub breaker_state: IntGaugeVec,
    /// Times a destination's circuit breaker opened.
    pub breaker_openings: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    /// From receipt to a successful delivery, pool-wide.
    pub ingest_to_delivery: Histogram,
    /// One delivery attempt, pool-wide.
    pub attempt_seconds: Histogram,
    /// The same two per bridge and destination, only when the pool opts in
    /// (`spec.metrics.destinationHistograms`): see [`Metrics::set_destination_histograms`].
    pub destination_ingest_to_delivery: HistogramVec,
    pub destination_attempt_seconds: HistogramVec,
    destination_histograms: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub config_reloads: IntCounterVec,
    /// Configurations alive: the running one, and an earlier one until the requests and
    /// attempts that started on it finish. More than that for long is a leak.
    pub config_generations: prometheus::IntGauge,
    pub connections_open: prometheus::IntGauge,
    pub store: StoreMetrics,
    pub retention_deleted: IntCounterVec,
    pub store_bytes: prometheus::IntGauge,
    /// Attempts refused by the destination network guard.
    pub destination_refused: prometheus::IntCounter,
    /// Job records that could not be decoded and were taken out of the queue.
    pub jobs_quarantined: prometheus::IntCounter,
    /// OAuth2 token requests of destinations, by outcome (`ok`, `error`).
    pub oauth2_token_fetches: IntCounterVec,
    /// Jobs started (steps and deliveries), by how delivery got them: `scheduler` (a pass
    /// over the due queue) or `hand_off` (straight from the commit that created them).
    pub jobs_started: IntCounterVec,
    /// Passes of the delivery scheduler over the due queue.
    pub scheduler_passes: prometheus::IntCounter,
}

/// Why metrics could not be registered (a programming error: names collide).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Remove the series of bridges and destinations that are no longer configured, so that
    /// `/metrics` (and Prometheus' memory) does not keep every name ever seen.
    pub fn forget_gone(
        &self,
        bridges: &std::collections::HashSet<&str>,
        destinations: &std::collections::HashSet<(&str, &str)>,
    ) {
        let mut gone: Vec<std::collections::HashMap<String, String>> = Vec::new();
        for family in self.registry.gather() {
            for m in family.get_metric() {
                let labels: std::collections::HashMap<String, String> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().to_string()))
                    .collect();
                let Some(bridge) = labels.get("bridge") else {
                    continue;
                };
                let dead = !bridges.contains(bridge.as_str())
                    || labels.get("destination").is_some_and(|d| {
                        !destinations.contains(&(bridge.as_str(), d.as_str())) && d != "(steps)"
                    });
                if dead {
                    gone.push(labels);
                }
            }
        }
        for labels in &gone {
            let l: std::collections::HashMap<&str, &str> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            // Each series belongs to one of these; the others answer an error, ignored.
            for vec in [
                &self.received,
                &self.accepted,
                &self.duplicates,
                &self.rejected,
                &self.filtered,
                &self.delivered,
                &self.retried,
                &self.dead,
                &self.attempts,
                &self.retention_deleted,
                &self.oauth2_token_fetches,
                &self.breaker_openings,
            ] {
                let _ = vec.remove(&l);
            }
            let _ = self.paused.remove(&l);
            let _ = self.breaker_state.remove(&l);
            let _ = self.queue_depth.remove(&l);
            let _ = self.destination_ingest_to_delivery.remove(&l);
            let _ = self.destination_attempt_seconds.remove(&l);
        }
    }

    /// Whether latency is also kept per bridge and destination. Turning it off drops the
    /// series kept so far.
    pub fn set_destination_histograms(&self, on: bool) {
        use std::sync::atomic::Ordering;
        if !self.destination_histograms.swap(on, Ordering::Relaxed) || on {
            return;
        }
        self.destination_ingest_to_delivery.reset();
        self.destination_attempt_seconds.reset();
    }

    /// One delivery attempt of `labels` (bridge, destination) took `seconds`.
    pub fn observe_attempt(&self, labels: &[&str], seconds: f64) {
        self.attempt_seconds.observe(seconds);
        if self
            .destination_histograms
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.destination_attempt_seconds
                .with_label_values(labels)
                .observe(seconds);
        }
    }

    /// An event reached `labels` (bridge, destination) `seconds` after it was received.
    pub fn observe_delivered(&self, labels: &[&str], seconds: f64) {
        self.ingest_to_delivery.observe(seconds);
        if self
            .destination_histograms
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.destination_ingest_to_delivery
                .with_label_values(labels)
                .observe(seconds);
        }
    }

    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new_custom(Some("causeway".into()), None)?;
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, MetricsError> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let hist = |name: &str,
                    help: &str,
                    labels: &[&str],
                    buckets: Vec<f64>|
         -> Result<HistogramVec, MetricsError> {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let plain_hist =
            |name: &str, help: &str, buckets: Vec<f64>| -> Result<Histogram, MetricsError> {
                let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let bd = &["bridge", "destination"];
        let latency = vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let ingest = vec![
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86_400.0,
        ];
        let connections_open = prometheus::IntGauge::new(
            "ingress_connections_open",
            "Ingress connections being served",
        )?;
        registry.register(Box::new(connections_open.clone()))?;
        let store_bytes = prometheus::IntGauge::new("store_bytes", "Size of the store on disk")?;
        registry.register(Box::new(store_bytes.clone()))?;
        let destination_refused = prometheus::IntCounter::new(
            "destination_refused_total",
            "Delivery attempts refused by the network guard (link-local, metadata or denied addresses)",
        )?;
        registry.register(Box::new(destination_refused.clone()))?;
        let jobs_quarantined = prometheus::IntCounter::new(
            "jobs_quarantined_total",
            "Job records that could not be decoded, taken out of the delivery queue",
        )?;
        registry.register(Box::new(jobs_quarantined.clone()))?;
        let scheduler_passes = prometheus::IntCounter::new(
            "delivery_scheduler_passes_total",
            "Passes of the delivery scheduler over the due queue",
        )?;
        registry.register(Box::new(scheduler_passes.clone()))?;
        let config_generations = prometheus::IntGauge::new(
            "config_generations_live",
            "Configurations held in memory: the running one, and earlier ones until what started on them finishes",
        )?;
        registry.register(Box::new(config_generations.clone()))?;
        Ok(Metrics {
            received: counter(
                "events_received_total",
                "Requests received at a bridge",
                &["bridge"],
            )?,
            accepted: counter(
                "events_accepted_total",
                "Events stored and acknowledged with 202",
                &["bridge"],
            )?,
            duplicates: counter(
                "events_duplicate_total",
                "Requests answered with an earlier event's id (idempotency key)",
                &["bridge"],
            )?,
            rejected: counter(
                "events_rejected_total",
                "Requests refused, by reason",
                &["bridge", "reason"],
            )?,
            filtered: counter(
                "events_filtered_total",
                "Events dropped by the filter or a step",
                &["bridge"],
            )?,
            delivered: counter(
                "deliveries_delivered_total",
                "Deliveries that got a 2xx",
                bd,
            )?,
            retried: counter(
                "deliveries_retried_total",
                "Failed attempts that were scheduled again",
                bd,
            )?,
            dead: counter("deliveries_dead_total", "Deliveries dead-lettered", bd)?,
            attempts: counter(
                "delivery_attempts_total",
                "Attempts, by outcome class",
                &["bridge", "destination", "outcome"],
            )?,
            paused: gauge(
                "destination_paused",
                "1 while a destination is paused (by a 410, or disabled by its circuit breaker)",
                bd,
            )?,
            breaker_state: gauge(
                "destination_breaker_state",
                "A destination's circuit breaker: 0 closed, 1 open, 2 half-open, 3 disabled",
                bd,
            )?,
            breaker_openings: counter(
                "destination_breaker_openings_total",
                "Times a destination's circuit breaker opened",
                bd,
            )?,
            queue_depth: gauge("queue_depth", "Jobs waiting for an attempt", bd)?,
            ingest_to_delivery: plain_hist(
                "ingest_to_delivery_seconds",
                "From receipt to a successful delivery",
                ingest,
            )?,
            attempt_seconds: plain_hist(
                "attempt_duration_seconds",
                "Duration of one delivery attempt",
                latency.clone(),
            )?,
            // Fewer buckets than the pool-wide ones: these multiply by destinations.
            destination_ingest_to_delivery: hist(
                "destination_ingest_to_delivery_seconds",
                "From receipt to a successful delivery, per bridge and destination (opt-in)",
                bd,
                vec![0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 86_400.0],
            )?,
            destination_attempt_seconds: hist(
                "destination_attempt_duration_seconds",
                "Duration of one delivery attempt, per bridge and destination (opt-in)",
                bd,
                vec![0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0],
            )?,
            destination_histograms: Default::default(),
            config_reloads: counter(
                "config_reloads_total",
                "Configuration loads, by result",
                &["result"],
            )?,
            retention_deleted: counter(
                "retention_deleted_total",
                "Finished events deleted by retention",
                &["by"],
            )?,
            oauth2_token_fetches: counter(
                "oauth2_token_fetches_total",
                "OAuth2 token requests of destinations, by outcome",
                &["bridge", "destination", "outcome"],
            )?,
            connections_open,
            config_generations,
            store_bytes,
            destination_refused,
            jobs_quarantined,
            scheduler_passes,
            jobs_started: counter(
                "delivery_jobs_started_total",
                "Jobs started (steps and deliveries): by a scheduler pass, or handed over by the commit that created them",
                &["via"],
            )?,
            store: StoreMetrics {
                batch_size: plain_hist(
                    "store_commit_batch_size",
                    "Writes per group commit",
                    vec![
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                    ],
                )?,
                commit_seconds: plain_hist(
                    "store_commit_seconds",
                    "Duration of one group commit, fsync included",
                    latency,
                )?,
            },
            registry,
            plugin_registry: Registry::new(),
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = String::new();
        let enc = prometheus::TextEncoder::new();
        let mut families = self.registry.gather();
        families.extend(self.plugin_registry.gather());
        if let Err(e) = enc.encode_utf8(&families, &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        buf
    }
}
