//! Prometheus metrics of the operator and the HTTP server for `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Errors creating or serving metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("register metric: {0}")]
    Register(#[from] prometheus::Error),
    #[error("serve metrics on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The operator's metrics, all prefixed `causeway_operator_`. Labels are bounded: the
/// controller (`workerpool`, `bridge`, `plugin`) and an error kind from a fixed list.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub failures: IntCounterVec,
    pub duration: HistogramVec,
    pub status_writes: IntCounterVec,
    /// Pool configs rendered (whether or not they changed): with coalescing, about one per
    /// batch of changes, not one per changed Bridge.
    pub renders: IntCounter,
    pub leader: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new_custom(Some("causeway_operator".into()), None)?;
        let reconciles = IntCounterVec::new(
            Opts::new("reconciliations_total", "Reconciliations run"),
            &["controller"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "reconcile_errors_total",
                "Reconciliations that failed, by error kind",
            ),
            &["controller", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "reconcile_duration_seconds",
                "Duration of one reconciliation",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["controller"],
        )?;
        let status_writes = IntCounterVec::new(
            Opts::new(
                "status_writes_total",
                "Status subresource writes (only on change)",
            ),
            &["controller"],
        )?;
        let renders = IntCounter::new(
            "renders_total",
            "Pool configurations rendered and applied to their Secret",
        )?;
        let leader = IntGauge::new(
            "leader",
            "1 while this replica holds the lease and runs the controllers",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(status_writes.clone()))?;
        registry.register(Box::new(renders.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            failures,
            duration,
            status_writes,
            renders,
            leader,
        })
    }

    /// Count a reconciliation and time it until the guard drops.
    pub fn start(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        ReconcileTimer {
            histogram: self.duration.clone(),
            controller,
            start: Instant::now(),
        }
    }

    pub fn failed(&self, controller: &'static str, error: &'static str) {
        self.failures.with_label_values(&[controller, error]).inc();
    }

    fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Observes the duration of a reconciliation when dropped.
pub struct ReconcileTimer {
    histogram: HistogramVec,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram
            .with_label_values(&[self.controller])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// What `/readyz` answers.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
}

/// The router of the metrics port.
pub fn router(metrics: Metrics, health: Health) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serve until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Metrics, health: Health) -> Result<(), MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Serve { addr, source })?;
    axum::serve(listener, router(metrics, health))
        .await
        .map_err(|source| MetricsError::Serve { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(app: axum::Router, path: &str) -> (StatusCode, String) {
        let resp = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_ready_and_metrics() {
        let m = Metrics::new().unwrap();
        let h = Health::default();
        {
            let _t = m.start("workerpool");
        }
        m.failed("bridge", "kube");
        assert_eq!(
            get(router(m.clone(), h.clone()), "/healthz").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(router(m.clone(), h.clone()), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        h.set_ready(true);
        assert_eq!(
            get(router(m.clone(), h.clone()), "/readyz").await.0,
            StatusCode::OK
        );
        let (_, body) = get(router(m, h), "/metrics").await;
        assert!(
            body.contains("causeway_operator_reconciliations_total{controller=\"workerpool\"} 1"),
            "{body}"
        );
        assert!(body.contains(
            "causeway_operator_reconcile_errors_total{controller=\"bridge\",error=\"kube\"} 1"
        ));
        assert!(body.contains("causeway_operator_reconcile_duration_seconds_bucket"));
    }
}
