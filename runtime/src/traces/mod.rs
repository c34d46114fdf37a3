//! OpenTelemetry traces: one trace per event, from the request that brought it in through
//! its filter, steps and every delivery attempt (`docs/traces.md`).
//!
//! The event's place in its trace ([`TraceContext`]) is stored with the event, so steps
//! and attempts that run later, after a restart or on another replica, still join it.
//! Spans go out over OTLP/HTTP (protobuf) only when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; otherwise [`Traces`] is off: no span
//! objects, no exporter thread, only ids (a trace id per event, a random span id per
//! outgoing request) so that the attempt log, the admin API and the `traceparent` sent to
//! destinations still name the trace.

pub mod context;

use std::sync::Arc;

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub use context::{Remote, SpanId, SpanRef, TraceContext, TraceId};

/// Environment variables that turn export on (either one).
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("the OTLP trace exporter: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// The worker's tracer: on (spans exported over OTLP) or off (ids only). Cheap to clone.
#[derive(Clone, Default)]
pub struct Traces {
    on: Option<Arc<On>>,
}

struct On {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces")
            .field("on", &self.on.is_some())
            .finish()
    }
}

/// What a span does, in OpenTelemetry's terms.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Serves a request (the ingress).
    Server,
    /// Sends one (a step's plugin call, a delivery attempt).
    Client,
    /// Work inside the worker (the filter).
    Internal,
}

impl From<Kind> for SpanKind {
    fn from(k: Kind) -> SpanKind {
        match k {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
            Kind::Internal => SpanKind::Internal,
        }
    }
}

/// Whether `vars` (the environment) ask for export: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise.
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let none = var("OTEL_TRACES_EXPORTER").is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .all(|e| e.eq_ignore_ascii_case("none"))
    });
    ENDPOINT_VARS.into_iter().any(set) && !disabled && !none
}

impl Traces {
    /// No export: ids only.
    pub fn off() -> Traces {
        Traces { on: None }
    }

    /// On when the environment asks for it ([`wanted`]); the exporter, sampler and
    /// resource read the standard `OTEL_*` variables (`OTEL_SERVICE_NAME`,
    /// `OTEL_TRACES_SAMPLER` and `_ARG`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`, …).
    pub fn from_env() -> Result<Traces, TracesError> {
        if !wanted(|n| std::env::var(n).ok()) {
            return Ok(Traces::off());
        }
        Traces::otlp()
    }

    /// Export over OTLP/HTTP with protobuf to the endpoint of the environment.
    fn otlp() -> Result<Traces, TracesError> {
        use opentelemetry_otlp::{Protocol, WithExportConfig as _};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
            .map_err(TracesError::Exporter)?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name())
            .build();
        // The batch processor exports from a thread of its own, off the runtime; the
        // sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "causeway");
        Ok(Traces {
            on: Some(Arc::new(On { tracer, provider })),
        })
    }

    /// Whether spans are recorded and exported.
    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// The span that accepts a request: a child of the sender's `traceparent` when it sent
    /// a valid one, else the root of a new trace.
    /// `name` is called only when spans are recorded.
    pub fn accept(&self, name: impl FnOnce() -> String, remote: Option<&Remote>) -> Span {
        match &self.on {
            None => Span {
                otel: None,
                trace_id: remote.map_or_else(TraceId::random, |r| r.trace_id),
                span_id: SpanId::random(),
                sampled: remote.is_some_and(|r| r.sampled),
            },
            Some(on) => {
                let parent = match remote {
                    Some(r) => remote_parent(r.trace_id, r.span_id, r.sampled, r.state.as_deref()),
                    None => opentelemetry::Context::new(),
                };
                on.start(name(), Kind::Server, &parent)
            }
        }
    }

    /// A span of an event's trace, child of `parent` (the stored context, or a span of
    /// this worker's).
    pub fn child(&self, name: impl FnOnce() -> String, kind: Kind, parent: &TraceContext) -> Span {
        match &self.on {
            None => Span {
                otel: None,
                trace_id: parent.trace_id,
                span_id: SpanId::random(),
                sampled: parent.sampled,
            },
            Some(on) => {
                let cx = remote_parent(
                    parent.trace_id,
                    parent.span_id,
                    parent.sampled,
                    parent.state.as_deref(),
                );
                on.start(name(), kind, &cx)
            }
        }
    }

    /// Exports what is queued and stops the exporter (blocking: call it off the runtime).
    pub fn shutdown(&self) {
        if let Some(on) = &self.on
            && let Err(e) = on.provider.shutdown()
        {
            tracing::warn!(error = %e, "traces: the last spans could not be exported");
        }
    }
}

/// `OTEL_SERVICE_NAME`, else `causeway` (the SDK's own default is `unknown_service`).
fn service_name() -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "causeway".to_string())
}

fn remote_parent(
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
    state: Option<&str>,
) -> opentelemetry::Context {
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
    let state = state
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::NOT_SAMPLED
    };
    opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        opentelemetry::trace::TraceId::from(trace_id.0),
        opentelemetry::trace::SpanId::from(span_id.0),
        flags,
        true,
        state,
    ))
}

impl On {
    fn start(&self, name: String, kind: Kind, parent: &opentelemetry::Context) -> Span {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind.into())
            .start_with_context(&self.tracer, parent);
        let sc = span.span_context();
        Span {
            trace_id: TraceId(u128::from_be_bytes(sc.trace_id().to_bytes())),
            span_id: SpanId(u64::from_be_bytes(sc.span_id().to_bytes())),
            sampled: sc.is_sampled(),
            otel: Some(span),
        }
    }
}

/// One span. Ends when dropped (or at [`Span::end`]). Off, it holds ids only and every
/// setter does nothing.
pub struct Span {
    otel: Option<opentelemetry_sdk::trace::Span>,
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
}

impl Span {
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// Trace and span id, for the attempt log.
    pub fn span_ref(&self) -> SpanRef {
        SpanRef {
            trace_id: self.trace_id,
            span_id: self.span_id,
        }
    }

    /// The `traceparent` of a request sent from this span.
    pub fn traceparent(&self) -> String {
        context::traceparent(self.trace_id, self.span_id, self.sampled)
    }

    /// The context that makes later spans children of this one (`state`: the sender's
    /// `tracestate`, passed on).
    pub fn context(&self, state: Option<String>) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: self.sampled,
            state,
        }
    }

    /// Whether anything set on it is recorded (allocate attribute values only then).
    pub fn recording(&self) -> bool {
        self.otel.as_ref().is_some_and(|s| s.is_recording())
    }

    pub fn set_i64(&mut self, key: &'static str, value: i64) {
        self.set(key, || Value::I64(value));
    }

    pub fn set_str(&mut self, key: &'static str, value: &str) {
        self.set(key, || Value::String(value.to_string().into()));
    }

    fn set(&mut self, key: &'static str, value: impl FnOnce() -> Value) {
        if let Some(s) = self.otel.as_mut().filter(|s| s.is_recording()) {
            s.set_attribute(KeyValue::new(key, value()));
        }
    }

    /// Marks it failed with `message` (already free of secrets).
    pub fn fail(&mut self, message: &str) {
        if let Some(s) = self.otel.as_mut().filter(|s| s.is_recording()) {
            s.set_status(Status::error(message.to_string()));
        }
    }

    pub fn end(mut self) {
        if let Some(s) = self.otel.as_mut() {
            s.end();
        }
    }
}

/// Adds (or replaces) `traceparent` and, when the event has one, `tracestate` in an
/// outgoing request's headers.
pub fn inject(headers: &mut Vec<(String, String)>, span: &Span, state: Option<&str>) {
    headers.retain(|(n, _)| {
        !n.eq_ignore_ascii_case("traceparent") && !n.eq_ignore_ascii_case("tracestate")
    });
    headers.push(("traceparent".into(), span.traceparent()));
    if let Some(s) = state {
        headers.push(("tracestate".into(), s.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_is_on_only_with_an_endpoint_and_not_disabled() {
        assert!(!wanted(env(&[])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318"
        )])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces"
        )])));
        assert!(!wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])));
        assert!(!wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])));
        assert!(wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ])));
    }

    #[test]
    fn off_keeps_the_senders_trace_and_makes_new_span_ids() {
        let t = Traces::off();
        let remote = Remote {
            trace_id: TraceId(7),
            span_id: SpanId(9),
            sampled: true,
            state: Some("a=b".into()),
        };
        let accept = t.accept(|| "accept".into(), Some(&remote));
        assert_eq!(accept.trace_id(), TraceId(7));
        assert_ne!(accept.span_id(), SpanId(9));
        assert!(!accept.recording());
        let stored = accept.context(remote.state.clone());
        let attempt = t.child(|| "deliver".into(), Kind::Client, &stored);
        assert_eq!(attempt.trace_id(), TraceId(7));
        assert_eq!(
            attempt.traceparent(),
            format!("00-{:032x}-{}-01", 7, attempt.span_id())
        );
        // A request without one starts a new trace, not sampled (nothing records it).
        let fresh = t.accept(|| "accept".into(), None);
        assert_ne!(fresh.trace_id(), TraceId(7));
        assert!(fresh.traceparent().ends_with("-00"));
    }

    #[test]
    fn inject_replaces_what_a_template_or_sender_put_there() {
        let t = Traces::off();
        let span = t.accept(|| "accept".into(), None);
        let mut h = vec![
            ("TraceParent".to_string(), "00-x".to_string()),
            ("tracestate".to_string(), "old".to_string()),
            ("x-other".to_string(), "1".to_string()),
        ];
        inject(&mut h, &span, Some("k=v"));
        assert_eq!(
            h,
            vec![
                ("x-other".to_string(), "1".to_string()),
                ("traceparent".to_string(), span.traceparent()),
                ("tracestate".to_string(), "k=v".to_string()),
            ]
        );
    }
}
