//! Scenarios 3 (plugin step) and 4 (CEL filter + body template). Each run starts one
//! worker per variant, back to back, at the same fixed rate, so that every added cost is a
//! difference between two measurements made a few seconds apart:
//!
//! - `plain`: scenario 2's bridge;
//! - `step`: the same with one `tagger` step (pooling allocator);
//! - `step, on-demand`: the same with the pooling allocator unavailable;
//! - `filter + template`: scenario 2's bridge with a CEL filter and a JSON body template.
//!
//! The floor for a plugin call is `wasmtime serve` running the same component, over one
//! connection, minus the HTTP floor over one connection. Scenario 4 is also measured
//! in-process with the runtime's own `causeway-pipeline` code (no HTTP, no store).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use causeway_crds::config::BridgeConfig;
use causeway_pipeline::CompiledBridge;

use super::forward::{PATH, bridge_yaml, e2e};
use super::{Ctx, cpu_per_event, histogram_mean, manifests, or_nan, progress, say, wait_delivered};
use crate::event::event;
use crate::load::{OpenLoop, Target, closed_loop, open_loop};
use crate::report::{Report, Section, Table, TargetCheck, fmt_summary};
use crate::sink::Sink;
use crate::stats::{Percentiles, Summary, paired_differences, paired_ratios};
use crate::sut::{Worker, WorkerOpts, start_floor, start_wasmtime};

/// Address-space limit that makes the pooling allocator unavailable (it reserves
/// terabytes) while leaving on-demand allocation plenty (4 GiB + guard per instance).
pub const NO_POOLING_KIB: u64 = 256 * 1024 * 1024;

pub const FILTER: &str = "payload.amount >= 1000 && payload.customer.tier == 'gold'";
pub const BODY: &str = r#"{"seq": "$payload.seq", "amount": "$payload.amount", "currency": "$payload.currency", "customer": "$payload.customer.id", "tier": "$payload.customer.tier", "note": "order $payload.seq for $payload.customer.email", "receivedAt": "$event.receivedAt"}"#;

fn plugin_yaml(wasm: &Path) -> String {
    format!(
        r#"---
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: tagger}}
spec:
  source: {{file: "{}"}}
"#,
        wasm.display()
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Plain,
    Step,
    StepOnDemand,
    FilterTemplate,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Step => "step",
            Variant::StepOnDemand => "step-ondemand",
            Variant::FilterTemplate => "filter-template",
        }
    }
}

#[derive(Default, Clone)]
struct Measured {
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu_us: Vec<f64>,
    call_us: Vec<f64>,
    missing: Vec<f64>,
}

fn yaml_for(v: Variant, ctx: &Ctx, sink: &Sink) -> String {
    let url = sink.url("/forward");
    let plugin = plugin_yaml(&ctx.paths.plugin("tagger"));
    match v {
        Variant::Plain => bridge_yaml(&url, ctx.conns, "", ""),
        Variant::Step | Variant::StepOnDemand => {
            bridge_yaml(&url, ctx.conns, "  steps:\n  - plugin: tagger\n", "") + &plugin
        }
        Variant::FilterTemplate => bridge_yaml(
            &url,
            ctx.conns,
            &format!("  filter: \"{FILTER}\"\n"),
            &format!("    body: '{BODY}'\n"),
        ),
    }
}

/// One variant at the fixed rate; returns the worker's allocator kind when it has plugins.
async fn measure(
    ctx: &Ctx,
    run: usize,
    v: Variant,
    sink: &Sink,
    out: &mut Measured,
) -> anyhow::Result<Option<String>> {
    let dir = ctx.dir("pipeline", run, v.name());
    sink.clear();
    let m = manifests(&dir, &yaml_for(v, ctx, sink))?;
    let opts = WorkerOpts {
        address_space_kib: (v == Variant::StepOnDemand).then_some(NO_POOLING_KIB),
        ..WorkerOpts::default()
    };
    let mut w = Worker::start(&ctx.paths, &dir, &m, opts).await?;
    let t = Target::new(w.listen, PATH);
    let plan = OpenLoop {
        rate: ctx.forward_rate,
        duration: ctx.open,
        conns: ctx.conns,
        seq_base: ctx.seqs(10_000_000),
    };
    let profile = crate::sut::Profile::start(w.proc.pid(), &dir, "worker");
    let cpu0 = w.proc.cpu_time();
    let open = open_loop(&t, plan, progress()).await;
    let _ = wait_delivered(&open, sink, Duration::from_secs(30)).await;
    let cpu1 = w.proc.cpu_time();
    if let Some(p) = profile.and_then(crate::sut::Profile::finish) {
        say(format!("profile: {}", p.display()));
    }
    let metrics = w.metrics().await;
    w.discard();
    let (p, missing) = e2e(&open, sink);
    out.p50.push(or_nan(p.map(|p| p.p50)));
    out.p99.push(or_nan(p.map(|p| p.p99)));
    out.missing.push(missing as f64);
    out.cpu_us.push(cpu_per_event(cpu0, cpu1, open.ok_count()));
    out.call_us.push(or_nan(
        histogram_mean(&metrics, "causeway_plugin_call_duration_seconds").map(|s| s * 1e6),
    ));
    let allocator = ["pooling", "ondemand"].iter().find(|k| {
        crate::sut::metric_has(
            &metrics,
            &format!("causeway_plugin_allocator{{kind=\"{k}\"}} 1"),
        )
    });
    say(format!(
        "pipeline run {run}: {} e2e p50 {:.0} µs, p99 {:.0} µs",
        v.name(),
        out.p50[run],
        out.p99[run]
    ));
    Ok(allocator.map(|s| s.to_string()))
}

/// p50 and mean service time (µs) over one connection, closed loop.
async fn one_connection(addr: std::net::SocketAddr, path: &str, ctx: &Ctx) -> (f64, f64) {
    let r = closed_loop(
        &Target::new(addr, path),
        1,
        ctx.closed,
        ctx.seqs(10_000_000),
        progress(),
    )
    .await;
    let mut lat = r.latencies_us();
    let mean = if lat.is_empty() {
        f64::NAN
    } else {
        lat.iter().sum::<u64>() as f64 / lat.len() as f64
    };
    (or_nan(Percentiles::of(&mut lat).map(|p| p.p50)), mean)
}

/// A bridge from YAML, compiled as the worker compiles it.
fn compile(yaml: &str) -> anyhow::Result<(BridgeConfig, CompiledBridge)> {
    let inv = causeway_crds::manifest::load_str(yaml, Path::new("bench.yaml"))
        .map_err(|e| anyhow!("{e}"))?;
    let rendered = causeway_crds::render(
        &inv,
        &causeway_crds::Scope::All,
        &causeway_crds::RenderContext::default(),
    );
    let cfg = rendered
        .config
        .bridges
        .first()
        .cloned()
        .context("no bridge rendered")?;
    let compiled = causeway_pipeline::compile_bridge(&cfg).map_err(|errs| {
        anyhow!(
            "{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    Ok((cfg, compiled))
}

/// Nanoseconds per event of what the worker does with a bridge's filter and template:
/// parse the body and evaluate the filter (ingress), parse it again and render the
/// destination (delivery, per attempt).
fn per_event_ns(b: &(BridgeConfig, CompiledBridge), bodies: &[bytes::Bytes], n: usize) -> f64 {
    let headers = http::HeaderMap::new();
    let env: BTreeMap<String, causeway_crds::config::EnvValue> = BTreeMap::new();
    let t = Instant::now();
    for i in 0..n {
        let body = &bodies[i % bodies.len()];
        let payload: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        if let Some(f) = &b.1.filter {
            let inbound = causeway_pipeline::Inbound {
                method: "POST",
                headers: &headers,
                query: "",
                body,
            };
            black_box(f.evaluate(&inbound, payload.as_ref()));
        }
        let payload: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let ctx = causeway_pipeline::EventContext {
            payload: payload.as_ref(),
            body,
            headers: &headers,
            query: "",
            env: &env,
            event_id: "0197f0e2-6a7b-7c3d-9e4f-0123456789ab",
            received_at: "2025-01-01T00:00:00.000Z",
            cloudevent: None,
        };
        let _ = black_box(b.1.destinations[0].render(&ctx, b.0.on_missing));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// In-process cost of the filter and template: `(without, with)` in ns per event.
fn microbench(n: usize) -> anyhow::Result<(f64, f64)> {
    let without = compile(&bridge_yaml("http://127.0.0.1:9/x", 16, "", ""))?;
    let with = compile(&bridge_yaml(
        "http://127.0.0.1:9/x",
        16,
        &format!("  filter: \"{FILTER}\"\n"),
        &format!("    body: '{BODY}'\n"),
    ))?;
    let bodies: Vec<bytes::Bytes> = (0..256).map(event).collect();
    // Check that every event passes and renders (else the figure would be for an error path).
    let mut probe = with.1.destinations[0].render(
        &causeway_pipeline::EventContext {
            payload: serde_json::from_slice::<serde_json::Value>(&bodies[0])
                .ok()
                .as_ref(),
            body: &bodies[0],
            headers: &http::HeaderMap::new(),
            query: "",
            env: &BTreeMap::new(),
            event_id: "x",
            received_at: "2025-01-01T00:00:00.000Z",
            cloudevent: None,
        },
        with.0.on_missing,
    );
    let rendered = probe.as_mut().map_err(|e| anyhow!("template: {e}"))?;
    anyhow::ensure!(
        crate::event::seq_in_body(&rendered.body) == Some(0),
        "template lost the seq: {:?}",
        rendered.body
    );
    per_event_ns(&without, &bodies, n / 10);
    let a = per_event_ns(&without, &bodies, n);
    let b = per_event_ns(&with, &bodies, n);
    Ok((a, b))
}

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let sink = Sink::start().await?;
    let wasm = ctx.paths.plugin("tagger");
    anyhow::ensure!(
        wasm.exists(),
        "{} is missing: run `make plugins`",
        wasm.display()
    );
    let mut res: BTreeMap<&'static str, Measured> = BTreeMap::new();
    let (mut wt_p50, mut wt_mean, mut fl_p50, mut fl_mean) = (vec![], vec![], vec![], vec![]);
    let (mut ready_cold, mut ready_warm, mut ready_plain, mut compile_s) =
        (vec![], vec![], vec![], vec![]);
    let (mut micro_without, mut micro_with) = (vec![], vec![]);
    // In-process host: per mode, call p50/p99/mean (µs), first call, apply cold and warm (ms).
    #[derive(Default)]
    struct HostFig {
        p50: Vec<f64>,
        p99: Vec<f64>,
        mean: Vec<f64>,
        first: Vec<f64>,
        cold: Vec<f64>,
        warm: Vec<f64>,
    }
    let mut host_fig: [HostFig; 2] = Default::default();
    let mut notes = Vec::new();
    for run in 0..ctx.runs {
        for v in [
            Variant::Plain,
            Variant::Step,
            Variant::StepOnDemand,
            Variant::FilterTemplate,
        ] {
            let allocator = measure(ctx, run, v, &sink, res.entry(v.name()).or_default()).await?;
            let want = match v {
                Variant::Step => Some("pooling"),
                Variant::StepOnDemand => Some("ondemand"),
                _ => None,
            };
            if want.is_some() && allocator.as_deref() != want {
                notes.push(format!(
                    "run {run}: variant `{}` ran with allocator {allocator:?}, not {want:?}",
                    v.name()
                ));
            }
        }

        // The plugin-call floor: wasmtime serve vs the HTTP floor, one connection each.
        // Without wasmtime-cli (bench/setup.sh builds it, 38 min cold) the floor is left
        // out and said so; the worker's own figures stand without it.
        if ctx.paths.wasmtime().is_file() {
            let dir = ctx.dir("pipeline", run, "wasmtime");
            let (mut p, addr) = start_wasmtime(&ctx.paths, &dir, &wasm).await?;
            let (a, b) = one_connection(addr, "/", ctx).await;
            wt_p50.push(a);
            wt_mean.push(b);
            p.terminate(Duration::from_secs(5));
        } else {
            wt_p50.push(f64::NAN);
            wt_mean.push(f64::NAN);
            if run == 0 {
                notes.push(format!(
                    "wasmtime serve was not run: {} is missing (bench/setup.sh installs it)",
                    ctx.paths.wasmtime().display()
                ));
            }
        }
        let dir = ctx.dir("pipeline", run, "floor");
        let (mut p, addr) = start_floor(&ctx.paths, &dir).await?;
        let (a, b) = one_connection(addr, "/", ctx).await;
        fl_p50.push(a);
        fl_mean.push(b);
        p.terminate(Duration::from_secs(5));

        // The plugin host in-process, pooling and on-demand; cold then warm compile cache.
        let n = if ctx.quick { 500 } else { 2000 };
        for (i, mode) in [
            causeway_plugins::PoolingMode::Auto,
            causeway_plugins::PoolingMode::Off,
        ]
        .into_iter()
        .enumerate()
        {
            let cache = ctx.dir("pipeline", run, &format!("host-{i}")).join("cache");
            let cold = host_calls(mode, &cache, &wasm, n).await?;
            let warm = host_calls(mode, &cache, &wasm, 1).await?;
            let want = if i == 0 { "pooling" } else { "ondemand" };
            if cold.allocator != want {
                notes.push(format!(
                    "run {run}: in-process host ran with allocator {}, not {want}",
                    cold.allocator
                ));
            }
            let f = &mut host_fig[i];
            f.first.push(
                cold.calls_ns
                    .first()
                    .map_or(f64::NAN, |&ns| ns as f64 / 1e3),
            );
            let mut rest: Vec<u64> = cold.calls_ns.iter().skip(1).map(|ns| ns / 1000).collect();
            f.mean.push(if rest.is_empty() {
                f64::NAN
            } else {
                rest.iter().sum::<u64>() as f64 / rest.len() as f64
            });
            let p = Percentiles::of(&mut rest);
            f.p50.push(or_nan(p.map(|p| p.p50)));
            f.p99.push(or_nan(p.map(|p| p.p99)));
            f.cold.push(cold.apply_ms);
            f.warm.push(warm.apply_ms);
            let _ = std::fs::remove_dir_all(&cache);
        }

        // Cold and warm compile cache: time to ready of a worker with the step.
        let dir = ctx.dir("pipeline", run, "cold-cache");
        let m = manifests(&dir, &yaml_for(Variant::Step, ctx, &sink))?;
        let mut w = Worker::start(&ctx.paths, &dir, &m, WorkerOpts::default()).await?;
        ready_cold.push(w.ready_after.as_secs_f64() * 1e3);
        compile_s.push(or_nan(
            crate::sut::metric_sum(&w.metrics().await, "causeway_plugin_compile_seconds_sum")
                .map(|s| s * 1e3),
        ));
        w.stop();
        ready_warm.push(w.restart().await?.as_secs_f64() * 1e3);
        w.discard();
        let dir = ctx.dir("pipeline", run, "plain-start");
        let m = manifests(&dir, &yaml_for(Variant::Plain, ctx, &sink))?;
        let mut w = Worker::start(&ctx.paths, &dir, &m, WorkerOpts::default()).await?;
        ready_plain.push(w.ready_after.as_secs_f64() * 1e3);
        w.discard();

        // Scenario 4 in-process.
        let n = if ctx.quick { 20_000 } else { 100_000 };
        let (a, b) = tokio::task::spawn_blocking(move || microbench(n)).await??;
        micro_without.push(a);
        micro_with.push(b);
        say(format!(
            "pipeline run {run}: wasmtime serve p50 {:.0} µs, floor p50 {:.0} µs; filter+template {:.0} ns vs {:.0} ns",
            wt_p50[run], fl_p50[run], b, a
        ));
    }

    let plain = res["plain"].clone();
    let step = res["step"].clone();
    let ondemand = res["step-ondemand"].clone();
    let ft = res["filter-template"].clone();
    let added_p50 = paired_differences(&step.p50, &plain.p50);
    let added_p99 = paired_differences(&step.p99, &plain.p99);
    let wasm_floor = paired_differences(&wt_p50, &fl_p50);
    // Issue 15: the in-process call against `wasmtime serve` running the same component,
    // run by run: against its request time less the HTTP floor's (the call itself, as the
    // first measurement compared them: ~1.0×), and against its whole request time.
    let host_vs_serve = Summary::of(&paired_ratios(&host_fig[0].p50, &wasm_floor));
    let host_vs_request = Summary::of(&paired_ratios(&host_fig[0].p50, &wt_p50));

    let mut t3 = Table::new(&format!(
        "Plugin step at a fixed {:.0} events/s (open loop; send → arrival at the sink)",
        ctx.forward_rate
    ));
    t3.add(
        "no step (scenario 2's bridge), p50",
        "µs",
        plain.p50.clone(),
    )
    .add("no step, p99", "µs", plain.p99.clone())
    .add("one `tagger` step, p50", "µs", step.p50.clone())
    .add("one `tagger` step, p99", "µs", step.p99.clone())
    .add(
        "**added by the step, p50** (paired)",
        "µs",
        added_p50.clone(),
    )
    .add("added by the step, p99 (paired)", "µs", added_p99)
    .add(
        "plugin call inside the worker (mean of `causeway_plugin_call_duration_seconds`)",
        "µs",
        step.call_us.clone(),
    )
    .add("worker CPU per event, no step", "µs", plain.cpu_us.clone())
    .add(
        "worker CPU per event, with the step",
        "µs",
        step.cpu_us.clone(),
    )
    .add(
        "worker CPU added by the step (paired)",
        "µs",
        paired_differences(&step.cpu_us, &plain.cpu_us),
    );
    let mut floor = Table::new(
        "The floor for a plugin call: `wasmtime serve` (pooling) running `tagger`, one connection, closed loop",
    );
    floor
        .add("wasmtime serve, p50 per request", "µs", wt_p50)
        .add("wasmtime serve, mean per request", "µs", wt_mean)
        .add("HTTP floor, p50 per request", "µs", fl_p50)
        .add("HTTP floor, mean per request", "µs", fl_mean)
        .add(
            "wasmtime serve − HTTP floor, p50 (the call itself, paired)",
            "µs",
            wasm_floor,
        );
    let [hp, ho] = host_fig;
    let mut host = Table::new(
        "The plugin host in-process (`causeway-plugins`, as the worker builds it), one call at a time from a runtime task (as the worker calls), no HTTP, no store",
    );
    host.add("call, pooling, p50", "µs", hp.p50.clone())
        .add("call, pooling, p99", "µs", hp.p99)
        .add("call, pooling, mean", "µs", hp.mean)
        .add("call, on-demand, p50", "µs", ho.p50.clone())
        .add("call, on-demand, p99", "µs", ho.p99)
        .add("call, on-demand, mean", "µs", ho.mean)
        .add(
            "on-demand − pooling, p50 (paired)",
            "µs",
            paired_differences(&ho.p50, &hp.p50),
        )
        .add("first call after apply, pooling", "µs", hp.first)
        .add("first call after apply, on-demand", "µs", ho.first)
        .add(
            "apply, cold compile cache (compiles `tagger`)",
            "ms",
            hp.cold.clone(),
        )
        .add(
            "apply, warm compile cache (loads the `.cwasm`)",
            "ms",
            hp.warm.clone(),
        )
        .add(
            "cold − warm apply (paired)",
            "ms",
            paired_differences(&hp.cold, &hp.warm),
        );
    let host_p50 = Summary::of(&hp.p50);
    let mut design = Table::new("What the design choices buy");
    design
        .add(
            "step with on-demand allocation (pooling off), p50",
            "µs",
            ondemand.p50.clone(),
        )
        .add(
            "step with on-demand allocation, p99",
            "µs",
            ondemand.p99.clone(),
        )
        .add(
            "on-demand − pooling, p50 (paired)",
            "µs",
            paired_differences(&ondemand.p50, &step.p50),
        )
        .add(
            "plugin call inside the worker, on-demand (mean)",
            "µs",
            ondemand.call_us.clone(),
        )
        .add(
            "worker CPU per event, step, on-demand",
            "µs",
            ondemand.cpu_us.clone(),
        )
        .add("start to ready, no plugin", "ms", ready_plain)
        .add(
            "start to ready, one plugin, cold compile cache",
            "ms",
            ready_cold.clone(),
        )
        .add(
            "start to ready, one plugin, warm compile cache (restart)",
            "ms",
            ready_warm.clone(),
        )
        .add(
            "compile time of `tagger` (from `causeway_plugin_compile_seconds`)",
            "ms",
            compile_s,
        )
        .add(
            "cold − warm start (paired)",
            "ms",
            paired_differences(&ready_cold, &ready_warm),
        );
    let added = Summary::of(&added_p50);
    report.targets.push(TargetCheck {
        target: "Plugin step ≤ 50 µs p50 added".into(),
        measured: format!(
            "{} µs added end to end at {:.0}/s; the host call alone {} µs p50 in-process",
            fmt_summary(added),
            ctx.forward_rate,
            fmt_summary(host_p50)
        ),
        met: added.map(|s| s.median <= 50.0),
    });
    report.targets.push(TargetCheck {
        target: "In-process host call of `tagger` ≤ 0.6× `wasmtime serve` (issue 15)".into(),
        measured: match host_vs_serve {
            Some(_) => format!(
                "{}× of `wasmtime serve`'s request time less the HTTP floor's (paired per run); {}× of its whole request time",
                fmt_summary(host_vs_serve),
                fmt_summary(host_vs_request)
            ),
            None => "not measured: `wasmtime serve` did not run (bench/setup.sh installs it)".into(),
        },
        met: host_vs_serve.map(|s| s.median <= 0.6),
    });
    report.sections.push(Section {
        title: "3. Plugin step".into(),
        method: format!(
            "Scenario 2's bridge with one step calling `tagger` (parses the JSON event, adds `\"tagged\": true`, answers \
             with the new body). Each run measures the bridge without the step, with it, and with it on on-demand \
             allocation, one worker after the other at {:.0} events/s, and subtracts run by run. The worker has no flag for \
             the allocator: its host falls back to on-demand allocation when the pooling allocator cannot reserve its \
             address space, so the on-demand variant runs under `ulimit -v {}` (the allocator in use is read from \
             `causeway_plugin_allocator`). A step also costs a second store transaction (the event is stored before the \
             steps run, and the new body with its delivery jobs after), which the end-to-end figure includes.",
            ctx.forward_rate, NO_POOLING_KIB
        ),
        tables: vec![t3, host, floor, design],
        notes,
    });

    let mut t4 = Table::new(&format!(
        "At a fixed {:.0} events/s (open loop; send → arrival at the sink)",
        ctx.forward_rate
    ));
    t4.add("no filter, no template, p50", "µs", plain.p50.clone())
        .add("filter + template, p50", "µs", ft.p50.clone())
        .add("filter + template, p99", "µs", ft.p99.clone())
        .add(
            "added, p50 (paired)",
            "µs",
            paired_differences(&ft.p50, &plain.p50),
        )
        .add(
            "worker CPU per event, filter + template",
            "µs",
            ft.cpu_us.clone(),
        )
        .add(
            "worker CPU added (paired)",
            "µs",
            paired_differences(&ft.cpu_us, &plain.cpu_us),
        );
    let mut micro =
        Table::new("In-process, the worker's own code (`causeway-pipeline`), one thread");
    micro
        .add(
            "parse + passthrough render (what every event pays)",
            "ns/event",
            micro_without.clone(),
        )
        .add(
            "parse + filter + parse + template render",
            "ns/event",
            micro_with.clone(),
        )
        .add(
            "**added by filter + template** (paired)",
            "ns/event",
            paired_differences(&micro_with, &micro_without),
        );
    report.sections.push(Section {
        title: "4. CEL filter and body template".into(),
        method: format!(
            "Filter `{FILTER}` (always true for these events, so every event pays for the template too) and a JSON body \
             template of seven fields (typed `$payload` values, a text template, `$event.receivedAt`). End to end like \
             scenario 3, and in-process with the worker's own code: the ingress parses the body and evaluates the filter; \
             delivery parses it again and renders the destination."
        ),
        tables: vec![t4, micro],
        notes: vec![],
    });
    Ok(())
}

/// What one in-process host measurement gives.
pub struct HostCalls {
    /// `PluginHost::apply` of one plugin (compile or cache load, `InstancePre`).
    pub apply_ms: f64,
    /// Sequential `PluginHost::call`s of `tagger` with a 1 KiB event, ns each.
    pub calls_ns: Vec<u64>,
    pub allocator: String,
}

/// The plugin host on its own, as the worker builds it (same crate, same options), with
/// calls made one at a time: the cost of a plugin call without HTTP, store or queueing.
pub async fn host_calls(
    pooling: causeway_plugins::PoolingMode,
    cache_dir: &Path,
    wasm: &Path,
    n: usize,
) -> anyhow::Result<HostCalls> {
    use causeway_plugins::{HostOptions, MemoryKv, PluginHost, PluginRef};
    let registry = prometheus::Registry::new();
    let host = PluginHost::new(HostOptions {
        cache_dir: cache_dir.to_path_buf(),
        pooling,
        kv: std::sync::Arc::new(MemoryKv::new()),
        registry: registry.clone(),
        allow_file_sources: true,
    })
    .map_err(|e| anyhow!("plugin host: {e}"))?;
    let inv = causeway_crds::manifest::load_str(&plugin_yaml(wasm), Path::new("bench.yaml"))
        .map_err(|e| anyhow!("{e}"))?;
    let cfg = causeway_crds::render(
        &inv,
        &causeway_crds::Scope::All,
        &causeway_crds::RenderContext::default(),
    )
    .config;
    let t = Instant::now();
    let report = host.apply(&cfg).await;
    let apply_ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(report.errors.is_empty(), "apply: {:?}", report.errors);
    // The calls run in a task of the runtime, as the worker's steps and deliveries make
    // them (not on the thread that blocks on the bench's main future).
    let host = std::sync::Arc::new(host);
    let calls = {
        let host = host.clone();
        tokio::spawn(async move {
            let target = PluginRef::new("default", "tagger");
            let mut calls_ns = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let req = http::Request::post("/")
                    .header("content-type", "application/json")
                    .header("causeway-event-id", format!("bench-{i}"))
                    .header("causeway-bridge", "default/forward")
                    .body(event(i))?;
                let t = Instant::now();
                let resp = host
                    .call(&target, req)
                    .await
                    .map_err(|e| anyhow!("call: {e}"))?;
                calls_ns.push(t.elapsed().as_nanos() as u64);
                anyhow::ensure!(resp.status() == 200, "tagger answered {}", resp.status());
                if i == 0 {
                    anyhow::ensure!(
                        resp.body().windows(13).any(|w| w == b"\"tagged\":true"),
                        "tagger did not tag: {:?}",
                        resp.body()
                    );
                }
            }
            Ok::<_, anyhow::Error>(calls_ns)
        })
    };
    let calls_ns = calls.await.map_err(|e| anyhow!("call task: {e}"))??;
    let metrics = {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).to_string()
    };
    let allocator = ["pooling", "ondemand"]
        .iter()
        .find(|k| {
            crate::sut::metric_has(
                &metrics,
                &format!("causeway_plugin_allocator{{kind=\"{k}\"}} 1"),
            )
        })
        .map_or("unknown".to_string(), |s| s.to_string());
    Ok(HostCalls {
        apply_ms,
        calls_ns,
        allocator,
    })
}
