//! One bridge as the worker runs it: its resolved config and its compiled pipeline
//! (verification, filter, templates from `causeway-pipeline`). Ingress and delivery call the
//! pipeline only through this type.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use causeway_config::{BridgeConfig, DestinationConfig, WorkerConfig};
use causeway_pipeline::Inbound;
use causeway_pipeline::cloudevents::{self, CloudEvent};
use causeway_pipeline::redact::{Secrets, bridge_secrets};
use causeway_pipeline::schema::Violation;

use crate::ingress::rate_limit::IngressLimit;
use crate::store::RESPONSE_SNIPPET_BYTES;

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
    /// Secret values to redact from attempt logs, with their encoded forms.
    secrets: Secrets,
    compiled: causeway_pipeline::CompiledBridge,
    /// `ingress.rateLimit`, when set.
    pub ingress_limit: Option<Arc<IngressLimit>>,
}

/// Wall-clock time one filter evaluation may take; past it the event is dropped with a
/// `budget` reason.
pub const FILTER_TIME_LIMIT: std::time::Duration = std::time::Duration::from_millis(250);

impl ActiveBridge {
    /// The key that signs the bridge's notifications (`spec.notifications.signing`).
    pub fn notifications_key(&self) -> Option<&causeway_pipeline::signing::SigningKey> {
        self.compiled.notifications_key.as_ref()
    }

    /// Compile a bridge of `worker`'s configuration. Errors are the pipeline's, one line
    /// each. Its redaction covers every secret its attempt logs could echo
    /// ([`causeway_pipeline::redact::bridge_secrets`]: its own, the namespace's plugin
    /// variables and internal token).
    pub fn compile(cfg: &BridgeConfig, worker: &WorkerConfig) -> Result<Self, Vec<String>> {
        let compiled = causeway_pipeline::compile_bridge(cfg)
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        Ok(ActiveBridge {
            key: cfg.key(),
            secrets: Secrets::new(bridge_secrets(worker, cfg)),
            cfg: cfg.clone(),
            compiled,
            ingress_limit: cfg
                .ingress_rate_limit
                .as_ref()
                .map(|l| Arc::new(IngressLimit::new(l))),
        })
    }

    /// Keep the previous version's ingress bucket when the limit is unchanged, so that a
    /// reload neither refills nor empties it.
    pub fn keep_ingress_limit(&mut self, previous: Option<&ActiveBridge>) {
        let kept = previous.and_then(|p| p.ingress_limit.as_ref());
        if let (Some(cfg), Some(kept)) = (&self.cfg.ingress_rate_limit, kept)
            && kept.is_for(cfg)
        {
            self.ingress_limit = Some(kept.clone());
        }
    }

    pub fn destination(&self, name: &str) -> Option<(usize, &DestinationConfig)> {
        self.cfg
            .destinations
            .iter()
            .enumerate()
            .find(|(_, d)| d.name == name)
    }

    /// Check the sender's credentials. The error is the metric label of the reason. On
    /// success, a JWT's `jti` to deduplicate on (with `dedupeJti`) and until when, in ms.
    pub fn verify(&self, req: &Inbound<'_>) -> Result<Option<(String, u64)>, String> {
        match &self.compiled.verifier {
            None => Ok(None),
            Some(v) => {
                let verified = v
                    .verify_full(req, std::time::SystemTime::now())
                    .map_err(|f| f.reason.as_str().to_string())?;
                Ok(verified.jti.map(|jti| {
                    let until = verified
                        .jti_expires_at
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(u64::MAX);
                    (jti, until)
                }))
            }
        }
    }

    /// The checks that need no body (header-only schemes whole; the presence, format and
    /// freshness of signature headers for body-signing ones), run before the body is
    /// read. The error is the metric label of the reason.
    pub fn check_headers(&self, headers: &http::HeaderMap, query: &str) -> Result<(), String> {
        match &self.compiled.verifier {
            None => Ok(()),
            Some(v) => v
                .check_headers(headers, query, std::time::SystemTime::now())
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

    /// The query string as stored: without the parameter that carries the API key (in any
    /// spelling its name may be percent-encoded in), like the sensitive headers.
    pub fn stored_query(&self, query: &str) -> String {
        let Some(param) = self
            .compiled
            .verifier
            .as_ref()
            .and_then(|v| v.sensitive_query_param())
        else {
            return query.to_string();
        };
        strip_query_param(query, param)
    }

    /// Whether the bridge has a filter (which [`ActiveBridge::filter`] runs).
    pub fn has_filter(&self) -> bool {
        self.compiled.filter.is_some()
    }

    /// Whether the bridge has a payload schema (which [`ActiveBridge::check_payload`] runs).
    pub fn has_schema(&self) -> bool {
        self.compiled.schema.is_some()
    }

    /// Check the payload (None: the body is not JSON) against the bridge's schema, compiled
    /// once per configuration. CPU-bound and sized by the payload: run it off the async
    /// threads.
    pub fn check_payload(&self, payload: Option<&serde_json::Value>) -> Result<(), Vec<Violation>> {
        let Some(schema) = &self.compiled.schema else {
            return Ok(());
        };
        match payload {
            Some(p) => schema.check(p),
            None => Err(vec![Violation {
                path: String::new(),
                message: "the payload is not JSON".into(),
            }]),
        }
    }

    /// Run the filter within its budget (macro iterations and [`FILTER_TIME_LIMIT`]). Any
    /// failure drops the event, with the kind and reason recorded (a filter that cannot be
    /// decided on an event does not let it through). CPU-bound: callers run it off the
    /// async threads.
    pub fn filter(
        &self,
        req: &Inbound<'_>,
        payload: Option<&serde_json::Value>,
        cloudevent: Option<&CloudEvent>,
    ) -> FilterOutcome {
        let Some(f) = &self.compiled.filter else {
            return FilterOutcome::Pass;
        };
        let budget = causeway_pipeline::filter::Budget::with_time_limit(FILTER_TIME_LIMIT);
        match f.evaluate_event(req, payload, cloudevent, budget) {
            Ok(true) => FilterOutcome::Pass,
            Ok(false) => FilterOutcome::Drop("filter: false".into()),
            Err(e) => {
                FilterOutcome::Drop(format!("filter error ({}): {}", e.kind.as_str(), e.message))
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
        // Parsed only for a template that reads it (a plain forward sends the body as is).
        let parsed: Option<serde_json::Value> = if t.uses_payload() || t.uses_cloudevent() {
            serde_json::from_slice(ev.body).ok()
        } else {
            None
        };
        // A CloudEvent's data is the payload in either mode, as in the filter.
        let (cloudevent, body_json) = cloudevents::read_request(ev.headers, parsed);
        let payload = cloudevents::payload_of(cloudevent.as_ref(), body_json.as_ref());
        let env: &BTreeMap<String, causeway_config::EnvValue> = &self.cfg.env;
        let ctx = causeway_pipeline::EventContext {
            cloudevent: cloudevent.as_ref(),
            payload,
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
        // The key was decoded once, when the bridge was compiled.
        let ts = (crate::store::now_ms() / 1000) as i64;
        if let Some(signed) = t.sign(ev.id, ts, &out.body) {
            for (name, value) in signed {
                out.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                out.headers.push((name.to_string(), value));
            }
        }
        Ok(out)
    }

    /// Remove every secret this bridge holds from `text`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets.redact(text)
    }

    /// A response snippet for the attempt log: redacted first, then cut to
    /// [`RESPONSE_SNIPPET_BYTES`] (cutting first could leave half a secret).
    pub fn redact_snippet(&self, text: &str) -> String {
        self.secrets
            .redact_then_truncate(text, RESPONSE_SNIPPET_BYTES)
    }
}

/// `query` without every `name=value` pair whose (decoded) name is `param`.
pub fn strip_query_param(query: &str, param: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !pair.is_empty() && decode_component(name) != param
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent- and `+`-decoding of one query component (invalid escapes kept as they are).
fn decode_component(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_key_parameter_is_stripped_in_any_spelling() {
        assert_eq!(strip_query_param("key=s3cret&x=1", "key"), "x=1");
        assert_eq!(strip_query_param("x=1&key=a&key=b&y", "key"), "x=1&y");
        assert_eq!(strip_query_param("k%65y=s3cret&x=1", "key"), "x=1");
        assert_eq!(strip_query_param("api+key=s&x=1", "api key"), "x=1");
        assert_eq!(strip_query_param("keys=1&key", "key"), "keys=1");
        assert_eq!(strip_query_param("", "key"), "");
        assert_eq!(strip_query_param("x=%", "key"), "x=%");
        assert_eq!(strip_query_param("%", "key"), "%");
    }

    /// Issue 12 item 12: the attempt log redacts a step plugin's answer that echoes one of
    /// the namespace's plugin variables, and redacts before it cuts the snippet.
    #[test]
    fn snippets_are_redacted_with_plugin_variables_then_cut() {
        use causeway_config::{PluginConfig, SecretValue, SourceConfig};
        let secret = "sk_live_crm_0123456789";
        let cfg = WorkerConfig {
            plugins: vec![PluginConfig {
                namespace: "shop".into(),
                name: "crm".into(),
                generation: None,
                source: SourceConfig::File {
                    path: "/x.wasm".into(),
                },
                allowed_outbound_hosts: vec![],
                variables: [("api_key".to_string(), SecretValue(secret.into()))].into(),
                memory_bytes: 1 << 20,
                timeout_ms: 1000,
                max_concurrency: 1,
                when_busy: Default::default(),
                route: None,
            }],
            ..WorkerConfig::default()
        };
        let bridge: BridgeConfig = serde_json::from_value(serde_json::json!({
            "namespace": "shop", "name": "orders", "path": "/hooks/shop/orders", "methods": ["POST"],
            "maxBodyBytes": 1024, "idempotencyHeader": "webhook-id", "dedupeWindowMs": 1000, "suspend": false,
            "stepRetry": causeway_config::RetryConfig::default(), "destinations": [], "onMissing": "empty"
        }))
        .unwrap();
        let active = ActiveBridge::compile(&bridge, &cfg).unwrap();
        assert!(
            !active
                .redact(&format!("invalid key {secret}"))
                .contains(secret)
        );
        // The secret straddles the snippet's end: cut first, its head would survive.
        let pad = "x".repeat(RESPONSE_SNIPPET_BYTES - 10);
        let snippet = active.redact_snippet(&format!("{pad}{secret} and more"));
        assert!(
            !snippet.contains(&secret[..10]),
            "{}",
            &snippet[snippet.len() - 40..]
        );
        assert!(snippet.len() <= RESPONSE_SNIPPET_BYTES + '…'.len_utf8());
    }
}
