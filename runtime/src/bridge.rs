//! One bridge as the worker runs it: its resolved config and its compiled pipeline
//! (verification, filter, templates from `causeway-pipeline`). Ingress and delivery call the
//! pipeline only through this type.

use std::collections::BTreeMap;

use bytes::Bytes;
use causeway_crds::config::{BridgeConfig, DestinationConfig};

/// What ingress and templates read from an inbound request.
pub struct InboundRequest<'a> {
    pub method: &'a str,
    pub headers: &'a http::HeaderMap,
    pub query: &'a str,
    pub body: &'a [u8],
}

/// What the filter decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterOutcome {
    Pass,
    /// Dropped; the reason is recorded on the event.
    Drop(String),
}

/// A request ready to send to a destination.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// What a stored event gives the templates.
pub struct EventView<'a> {
    pub id: &'a str,
    pub received_at: &'a str,
    pub headers: &'a http::HeaderMap,
    pub query: &'a str,
    pub body: &'a [u8],
}

/// Why a destination's request could not be built (the job is dead-lettered with it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// Headers that carry credentials in any scheme: never stored, never shown.
const ALWAYS_SENSITIVE: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

pub struct ActiveBridge {
    pub cfg: BridgeConfig,
    pub key: String,
    /// Secret values to redact from attempt logs.
    pub secrets: Vec<String>,
    compiled: causeway_pipeline::CompiledBridge,
}

impl ActiveBridge {
    /// Compile a bridge. Errors are the pipeline's, one line each.
    pub fn compile(cfg: &BridgeConfig) -> Result<Self, Vec<String>> {
        let compiled = causeway_pipeline::compile_bridge(cfg)
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        Ok(ActiveBridge {
            key: cfg.key(),
            secrets: cfg
                .secret_values()
                .into_iter()
                .map(str::to_string)
                .collect(),
            cfg: cfg.clone(),
            compiled,
        })
    }

    pub fn destination(&self, name: &str) -> Option<(usize, &DestinationConfig)> {
        self.cfg
            .destinations
            .iter()
            .enumerate()
            .find(|(_, d)| d.name == name)
    }

    fn inbound<'a>(req: &'a InboundRequest<'a>) -> causeway_pipeline::Inbound<'a> {
        causeway_pipeline::Inbound {
            method: req.method,
            headers: req.headers,
            query: req.query,
            body: req.body,
        }
    }

    /// Check the sender's credentials. The error is the metric label of the reason.
    pub fn verify(&self, req: &InboundRequest<'_>) -> Result<(), String> {
        match &self.compiled.verifier {
            None => Ok(()),
            Some(v) => v
                .verify(&Self::inbound(req), std::time::SystemTime::now())
                .map_err(|f| f.reason.as_str().to_string()),
        }
    }

    /// Lower-case names of the headers never stored or shown.
    pub fn sensitive_headers(&self) -> Vec<String> {
        let mut out: Vec<String> = ALWAYS_SENSITIVE.iter().map(|s| s.to_string()).collect();
        if let Some(v) = &self.compiled.verifier {
            out.extend(v.sensitive_headers());
        }
        out
    }

    /// Run the filter. An evaluation error drops the event, with the error as the reason
    /// (a filter that cannot be evaluated on an event does not let it through).
    pub fn filter(
        &self,
        req: &InboundRequest<'_>,
        payload: Option<&serde_json::Value>,
    ) -> FilterOutcome {
        let Some(f) = &self.compiled.filter else {
            return FilterOutcome::Pass;
        };
        match f.evaluate(&Self::inbound(req), payload) {
            causeway_pipeline::filter::FilterDecision::Pass => FilterOutcome::Pass,
            causeway_pipeline::filter::FilterDecision::Drop => {
                FilterOutcome::Drop("filter: false".into())
            }
            causeway_pipeline::filter::FilterDecision::Error(e) => {
                FilterOutcome::Drop(format!("filter error: {e}"))
            }
        }
    }

    /// Build the request for destination `index`, with templates and signing applied.
    pub fn render(&self, index: usize, ev: &EventView<'_>) -> Result<OutboundRequest, RenderError> {
        let d = self
            .cfg
            .destinations
            .get(index)
            .ok_or_else(|| RenderError(format!("destination #{index} is gone")))?;
        let t = self
            .compiled
            .destinations
            .get(index)
            .ok_or_else(|| RenderError(format!("destination {} not compiled", d.name)))?;
        let payload: Option<serde_json::Value> = serde_json::from_slice(ev.body).ok();
        let env: &BTreeMap<String, causeway_crds::config::EnvValue> = &self.cfg.env;
        let ctx = causeway_pipeline::EventContext {
            payload: payload.as_ref(),
            body: ev.body,
            headers: ev.headers,
            query: ev.query,
            env,
            event_id: ev.id,
            received_at: ev.received_at,
        };
        let r = t
            .render(&ctx, self.cfg.on_missing)
            .map_err(|e| RenderError(format!("template: {e}")))?;
        let mut out = OutboundRequest {
            url: r.url,
            method: r.method,
            headers: r.headers,
            body: r.body,
        };
        if let Some(secret) = &d.signing_secret {
            let ts = (crate::store::now_ms() / 1000) as i64;
            for (name, value) in causeway_pipeline::signing::standard_webhooks_headers(
                secret.expose(),
                ev.id,
                ts,
                &out.body,
            ) {
                out.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                out.headers.push((name.to_string(), value));
            }
        }
        Ok(out)
    }

    /// Remove every secret this bridge holds from `text`.
    pub fn redact(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        causeway_pipeline::redact::redact(text, &secrets)
    }
}
