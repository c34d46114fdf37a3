//! The host's Prometheus metrics, registered once in the registry the caller passes.
//! Every name starts with `causeway_plugin_`; `plugin` labels are `namespace/name`.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::error::HostError;

/// Buckets for call durations: 100 µs to 30 s.
const CALL_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
/// Buckets for compilations: 10 ms to 2 min.
const COMPILE_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Clone)]
pub(crate) struct Metrics {
    pub allocator: IntGaugeVec,
    pub compiles: IntCounter,
    pub compile_seconds: Histogram,
    pub cache_hits: IntCounterVec,
    pub fetches: IntCounterVec,
    pub instance_pre_reuse: IntCounterVec,
    pub calls: IntCounterVec,
    pub call_seconds: HistogramVec,
    pub traps: IntCounterVec,
    pub timeouts: IntCounterVec,
    pub oom: IntCounterVec,
    pub busy: IntCounterVec,
    pub outbound_requests: IntCounterVec,
    pub outbound_refused: IntCounterVec,
    pub outbound_connects: IntCounterVec,
    pub chain_calls: IntCounterVec,
    pub chain_errors: IntCounterVec,
    pub loaded: IntGauge,
    pub load_errors: IntGauge,
    pub applies: IntCounterVec,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    name: &str,
    c: C,
) -> Result<C, HostError> {
    registry
        .register(Box::new(c.clone()))
        .map_err(|source| HostError::Metrics {
            name: name.to_string(),
            source,
        })?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, HostError> {
    let c =
        IntCounterVec::new(Opts::new(name, help), labels).map_err(|source| HostError::Metrics {
            name: name.into(),
            source,
        })?;
    reg(registry, name, c)
}

impl Metrics {
    pub(crate) fn new(registry: &Registry) -> Result<Metrics, HostError> {
        let err = |name: &str| {
            let name = name.to_string();
            move |source| HostError::Metrics { name, source }
        };
        let allocator = reg(
            registry,
            "causeway_plugin_allocator",
            IntGaugeVec::new(
                Opts::new(
                    "causeway_plugin_allocator",
                    "Instance allocator in use (1 for the active kind: pooling or ondemand)",
                ),
                &["kind"],
            )
            .map_err(err("causeway_plugin_allocator"))?,
        )?;
        let compiles = reg(
            registry,
            "causeway_plugin_compiles_total",
            IntCounter::new(
                "causeway_plugin_compiles_total",
                "Components compiled with Cranelift (cache misses)",
            )
            .map_err(err("causeway_plugin_compiles_total"))?,
        )?;
        let compile_seconds = reg(
            registry,
            "causeway_plugin_compile_seconds",
            Histogram::with_opts(
                HistogramOpts::new(
                    "causeway_plugin_compile_seconds",
                    "Time to compile one component",
                )
                .buckets(COMPILE_BUCKETS.to_vec()),
            )
            .map_err(err("causeway_plugin_compile_seconds"))?,
        )?;
        let call_seconds = reg(
            registry,
            "causeway_plugin_call_duration_seconds",
            HistogramVec::new(
                HistogramOpts::new(
                    "causeway_plugin_call_duration_seconds",
                    "Duration of plugin calls, queueing included",
                )
                .buckets(CALL_BUCKETS.to_vec()),
                &["plugin", "outcome"],
            )
            .map_err(err("causeway_plugin_call_duration_seconds"))?,
        )?;
        let loaded = reg(
            registry,
            "causeway_plugin_loaded",
            IntGauge::new("causeway_plugin_loaded", "Plugins loaded and serving")
                .map_err(err("causeway_plugin_loaded"))?,
        )?;
        let load_errors = reg(
            registry,
            "causeway_plugin_load_errors",
            IntGauge::new(
                "causeway_plugin_load_errors",
                "Plugins whose last load failed",
            )
            .map_err(err("causeway_plugin_load_errors"))?,
        )?;
        Ok(Metrics {
            allocator,
            compiles,
            compile_seconds,
            cache_hits: counter_vec(
                registry,
                "causeway_plugin_cache_hits_total",
                "Compiled components reused instead of compiled (tier: memory = already loaded, disk = .cwasm file)",
                &["tier"],
            )?,
            fetches: counter_vec(
                registry,
                "causeway_plugin_fetches_total",
                "Component downloads (cache misses) by source type",
                &["source"],
            )?,
            instance_pre_reuse: counter_vec(
                registry,
                "causeway_plugin_instance_pre_reuse_total",
                "Instantiations from a cached InstancePre (one per call)",
                &["plugin"],
            )?,
            calls: counter_vec(
                registry,
                "causeway_plugin_calls_total",
                "Plugin calls by outcome",
                &["plugin", "outcome"],
            )?,
            call_seconds,
            traps: counter_vec(
                registry,
                "causeway_plugin_traps_total",
                "Calls that trapped",
                &["plugin"],
            )?,
            timeouts: counter_vec(
                registry,
                "causeway_plugin_timeouts_total",
                "Calls stopped at their time limit",
                &["plugin"],
            )?,
            oom: counter_vec(
                registry,
                "causeway_plugin_oom_total",
                "Calls that failed at their memory limit",
                &["plugin"],
            )?,
            busy: counter_vec(
                registry,
                "causeway_plugin_busy_rejections_total",
                "Calls refused because maxConcurrency was reached (mode: reject or queue timeout)",
                &["plugin", "mode"],
            )?,
            outbound_requests: counter_vec(
                registry,
                "causeway_plugin_outbound_requests_total",
                "Outbound HTTP requests made by plugins, by how they were served (network, chain)",
                &["plugin", "via"],
            )?,
            outbound_refused: counter_vec(
                registry,
                "causeway_plugin_outbound_refused_total",
                "Outbound HTTP requests refused by the host (reason: not_allowed, address, scheme, …)",
                &["plugin", "reason"],
            )?,
            outbound_connects: counter_vec(
                registry,
                "causeway_plugin_outbound_connects_total",
                "TCP connections opened for plugins' outbound HTTP",
                &["plugin"],
            )?,
            chain_calls: counter_vec(
                registry,
                "causeway_plugin_chain_calls_total",
                "Calls to http://<plugin>.internal (local: in-process, remote: another pool)",
                &["mode"],
            )?,
            chain_errors: counter_vec(
                registry,
                "causeway_plugin_chain_errors_total",
                "http://<plugin>.internal calls that could not be resolved or nested too deep",
                &["reason"],
            )?,
            loaded,
            load_errors,
            applies: counter_vec(
                registry,
                "causeway_plugin_applies_total",
                "Configuration swaps",
                &["result"],
            )?,
        })
    }
}
