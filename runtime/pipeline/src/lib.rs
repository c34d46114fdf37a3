//! Bridge semantics as plain functions: inbound verification ([`auth`]), the CEL filter
//! ([`filter`]), destination templates ([`template`]), outbound signing ([`signing`]) and
//! redaction ([`redact`]).
//!
//! Nothing here does I/O. The runtime calls [`compile_bridge`] once per configuration
//! version (every expression, template and key is parsed there, so a bad one is reported
//! when the configuration loads, not when the first event arrives) and then uses the
//! compiled parts per request. See `docs/bridges.md` for the user-facing rules.

pub mod auth;
pub mod cloudevents;
pub mod filter;
pub mod redact;
pub mod schema;
pub mod signing;
pub mod template;

mod text;

use std::fmt;

use causeway_config::BridgeConfig;

pub use template::{EventContext, RenderedRequest};

/// What verification, filters and templates read from an inbound request.
#[derive(Clone, Copy, Debug)]
pub struct Inbound<'a> {
    pub method: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The raw query string, without the leading `?`.
    pub query: &'a str,
    pub body: &'a [u8],
}

/// A bridge with everything parsed: what the runtime keeps per bridge.
#[derive(Debug)]
pub struct CompiledBridge {
    pub verifier: Option<auth::Verifier>,
    pub filter: Option<filter::Filter>,
    /// Same order as `cfg.destinations`.
    pub destinations: Vec<template::DestinationTemplate>,
    /// `spec.schema`, compiled.
    pub schema: Option<schema::PayloadSchema>,
    /// The key that signs `spec.notifications`.
    pub notifications_key: Option<signing::SigningKey>,
}

/// A problem with one field of one bridge, found at configuration load.
///
/// Display: `bridge shop/orders: destination crm: body: <what> at <position>`.
/// Messages never contain secret values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `namespace/name`.
    pub bridge: String,
    pub destination: Option<String>,
    /// `auth`, `filter`, `url`, `body`, `headers.<name>`, `signing`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bridge {}: ", self.bridge)?;
        if let Some(d) = &self.destination {
            write!(f, "destination {d}: ")?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Parse everything a bridge needs per event. All problems are reported, not just the first.
pub fn compile_bridge(cfg: &BridgeConfig) -> Result<CompiledBridge, Vec<ConfigError>> {
    let bridge = cfg.key();
    let mut errors = Vec::new();
    let err = |destination: Option<&str>, field: &str, message: String| ConfigError {
        bridge: bridge.clone(),
        destination: destination.map(str::to_string),
        field: field.to_string(),
        message,
    };

    let verifier = match &cfg.auth {
        None => None,
        Some(a) => match auth::Verifier::new(a) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(err(None, "auth", e.to_string()));
                None
            }
        },
    };

    let filter = match &cfg.filter {
        None => None,
        Some(src) => match filter::Filter::compile(src) {
            Ok(mut f) => {
                if let Some(v) = &verifier {
                    f.hide(&v.sensitive_headers(), v.sensitive_query_param());
                }
                Some(f)
            }
            Err(e) => {
                errors.push(err(None, "filter", e.to_string()));
                None
            }
        },
    };

    let schema = match &cfg.schema {
        None => None,
        Some(text) => match schema::PayloadSchema::compile(text) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(err(None, "schema", e));
                None
            }
        },
    };

    let mut destinations = Vec::with_capacity(cfg.destinations.len());
    for d in &cfg.destinations {
        match template::DestinationTemplate::compile(d, cfg.max_body_bytes) {
            Ok(mut t) => {
                t.set_default_source(&cfg.path);
                destinations.push(t)
            }
            Err(errs) => {
                for e in errs {
                    errors.push(err(Some(&d.name), &e.field, e.message));
                }
            }
        }
    }

    let notifications_key = match cfg
        .notifications
        .as_ref()
        .and_then(|n| n.signing_secret.as_ref())
    {
        None => None,
        Some(s) => match signing::SigningKey::new(s.expose()) {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(err(None, "notifications.signing", e.to_string()));
                None
            }
        },
    };

    if errors.is_empty() {
        Ok(CompiledBridge {
            verifier,
            filter,
            destinations,
            schema,
            notifications_key,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
