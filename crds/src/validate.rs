//! Validation in Rust, mirroring the CRD schema's patterns and CEL rules.
//!
//! In a cluster the API server enforces the schema; local mode has no API server, so the
//! manifest loader and the renderer run these checks. Messages match the CEL rules' messages.

use std::collections::BTreeSet;
use std::fmt;

use crate::bridge::{Backoff, BackoffPolicy, BridgeSpec};
use crate::duration::{parse_duration, parse_quantity_bytes};
use crate::plugin::PluginSpec;
use crate::pool::{StorageType, WorkerPoolSpec};

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path such as `spec.destinations[0].url`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
    fn duration(&mut self, path: impl Into<String>, value: &str) {
        if let Err(e) = parse_duration(value) {
            self.add(path, e.to_string());
        }
    }
    fn opt_duration(&mut self, path: impl Into<String>, value: &Option<String>) {
        if let Some(v) = value {
            self.duration(path, v);
        }
    }
    fn quantity(&mut self, path: impl Into<String>, value: &str) {
        if let Err(e) = parse_quantity_bytes(value) {
            self.add(path, e);
        }
    }
    fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_route_path(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with('/')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~/-".contains(&b))
}

fn backoff(e: &mut Errors, path: &str, b: &Backoff) {
    e.opt_duration(format!("{path}.initialDelay"), &b.initial_delay);
    e.opt_duration(format!("{path}.maxDelay"), &b.max_delay);
    for (i, d) in b.delays.iter().enumerate() {
        e.duration(format!("{path}.delays[{i}]"), d);
    }
    if b.policy == BackoffPolicy::Fixed && b.delays.is_empty() {
        e.add(path, "the fixed policy needs a delays list");
    }
}

/// Check a Bridge spec.
/// Whether a JSON Schema compiles (against its meta-schema, with nothing fetched): the
/// message says what is wrong. The worker compiles it the same way.
pub fn check_json_schema(schema: &serde_json::Value) -> Result<(), String> {
    if !schema.is_object() {
        return Err("a JSON Schema is an object".into());
    }
    jsonschema::validator_for(schema)
        .map(|_| ())
        .map_err(|e| format!("invalid JSON Schema: {e}"))
}

pub fn validate_bridge(spec: &BridgeSpec) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::default();
    if spec.destinations.is_empty() && spec.steps.is_empty() {
        e.add(
            "spec",
            "a bridge needs at least one destination or one step",
        );
    }
    if let Some(p) = &spec.ingress.path
        && !is_route_path(p)
    {
        e.add(
            "spec.ingress.path",
            format!("{p:?} must start with / and use only letters, digits and ._~/-"),
        );
    }
    if spec.ingress.methods.is_empty() {
        e.add("spec.ingress.methods", "at least one method is required");
    }
    if spec.ingress.max_body_bytes == 0 {
        e.add("spec.ingress.maxBodyBytes", "must be at least 1");
    }
    e.duration("spec.ingress.dedupeWindow", &spec.ingress.dedupe_window);
    if let Some(t) = &spec.deletion.drain_timeout {
        match parse_duration(t) {
            Err(err) => e.add("spec.deletion.drainTimeout", err.to_string()),
            Ok(d) if d.is_zero() => e.add(
                "spec.deletion.drainTimeout",
                "must be longer than 0 (policy: Discard removes at once)",
            ),
            Ok(_) if spec.deletion.policy == crate::bridge::DeletionPolicy::Discard => e.add(
                "spec.deletion.drainTimeout",
                "applies to policy: Drain only (Discard removes at once)",
            ),
            Ok(_) => {}
        }
    }
    if let Some(a) = &spec.ingress.auth {
        let set = [
            a.standard_webhooks.is_some(),
            a.hmac.is_some(),
            a.jwt.is_some(),
            a.basic.is_some(),
            a.api_key.is_some(),
        ];
        if set.iter().filter(|x| **x).count() > 1 {
            e.add(
                "spec.ingress.auth",
                "set at most one of standardWebhooks, hmac, jwt, basic, apiKey",
            );
        }
        if let Some(s) = &a.standard_webhooks {
            e.duration("spec.ingress.auth.standardWebhooks.tolerance", &s.tolerance);
        }
        if let Some(h) = &a.hmac {
            if h.preset.is_none() && h.header.is_none() {
                e.add("spec.ingress.auth.hmac", "hmac needs a preset or a header");
            }
            e.opt_duration("spec.ingress.auth.hmac.tolerance", &h.tolerance);
        }
        if let Some(j) = &a.jwt {
            if j.secret_ref.is_some() == j.jwks_ref.is_some() {
                e.add(
                    "spec.ingress.auth.jwt",
                    "set exactly one of secretRef (HMAC key or PEM public key) and jwksRef",
                );
            }
            if j.algorithms.is_empty() {
                e.add(
                    "spec.ingress.auth.jwt.algorithms",
                    "at least one algorithm is required",
                );
            }
            e.opt_duration("spec.ingress.auth.jwt.leeway", &j.leeway);
        }
        if let Some(k) = &a.api_key
            && k.header.is_some()
            && k.query_param.is_some()
        {
            e.add(
                "spec.ingress.auth.apiKey",
                "set header or queryParam, not both",
            );
        }
    }
    for (i, s) in spec.steps.iter().enumerate() {
        if s.plugin.is_empty() {
            e.add(format!("spec.steps[{i}].plugin"), "must not be empty");
        }
        if let Some(p) = &s.path
            && !p.starts_with('/')
        {
            e.add(format!("spec.steps[{i}].path"), "must start with /");
        }
    }
    if let Some(r) = &spec.step_retry {
        backoff(&mut e, "spec.stepRetry.backoff", &r.backoff);
    }
    let mut names = BTreeSet::new();
    for (i, d) in spec.destinations.iter().enumerate() {
        let p = format!("spec.destinations[{i}]");
        if !is_dns_label(&d.name) {
            e.add(
                format!("{p}.name"),
                format!("{:?} must be a lower-case DNS label", d.name),
            );
        }
        if !names.insert(d.name.as_str()) {
            e.add(
                format!("{p}.name"),
                format!("destination names must be unique ({:?} repeats)", d.name),
            );
        }
        if !(d.url.starts_with("http://")
            || d.url.starts_with("https://")
            || d.url.starts_with("nats://")
            || d.url.starts_with('$'))
        {
            e.add(
                format!("{p}.url"),
                "url must be http://, https:// or nats:// (or start with a template reference such as $env.BASE_URL)",
            );
        }
        nats_destination(&mut e, &p, d);
        e.opt_duration(format!("{p}.delay"), &d.delay);
        e.duration(format!("{p}.timeout"), &d.timeout);
        e.opt_duration(format!("{p}.maxRetryAfter"), &d.max_retry_after);
        backoff(&mut e, &format!("{p}.backoff"), &d.backoff);
        if let Some(o) = &d.oauth2 {
            if !(o.token_url.starts_with("http://") || o.token_url.starts_with("https://")) {
                e.add(
                    format!("{p}.oauth2.tokenUrl"),
                    "tokenUrl must be http:// or https://",
                );
            }
            if d.headers
                .keys()
                .any(|h| h.eq_ignore_ascii_case("authorization"))
            {
                e.add(
                    format!("{p}.oauth2"),
                    "oauth2 sets the Authorization header: remove it from headers",
                );
            }
        }
        if let Some(dl) = &d.dead_letter
            && !(dl.url.starts_with("http://") || dl.url.starts_with("https://"))
        {
            e.add(
                format!("{p}.deadLetter.url"),
                "url must be http:// or https://",
            );
        }
        if let Some(cb) = &d.circuit_breaker {
            circuit_breaker(&mut e, &format!("{p}.circuitBreaker"), cb);
        }
        if d.cloud_events.is_some() && d.format != crate::bridge::DeliveryFormat::Cloudevents {
            e.add(
                format!("{p}.cloudEvents"),
                "cloudEvents needs format: cloudevents",
            );
        }
    }
    if let Some(schema) = &spec.schema {
        match (&schema.inline, &schema.config_map_ref) {
            (Some(v), None) => {
                if let Err(msg) = check_json_schema(v) {
                    e.add("spec.schema.inline", msg);
                }
            }
            (None, Some(_)) => {}
            _ => e.add("spec.schema", "set exactly one of inline and configMapRef"),
        }
    }
    if let Some(n) = &spec.notifications
        && !(n.url.starts_with("http://") || n.url.starts_with("https://"))
    {
        e.add("spec.notifications.url", "url must be http:// or https://");
    }
    streams(&mut e, spec);
    if let Some(s) = &spec.subscriptions {
        subscriptions(&mut e, s);
    }
    let mut env_names = BTreeSet::new();
    for (i, v) in spec.env.iter().enumerate() {
        if v.value.is_some() == v.value_from.is_some() {
            e.add(
                format!("spec.env[{i}]"),
                "exactly one of value or valueFrom must be set",
            );
        }
        if !env_names.insert(v.name.as_str()) {
            e.add(
                format!("spec.env[{i}].name"),
                format!("{:?} repeats", v.name),
            );
        }
    }
    e.finish()
}

/// A `nats://` destination: the url's shape, no HTTP-only field; `nats` only with such a url.
fn nats_destination(e: &mut Errors, p: &str, d: &crate::bridge::Destination) {
    let is_nats = d.url.starts_with("nats://");
    if !is_nats {
        if d.nats.is_some() {
            e.add(format!("{p}.nats"), "nats needs a nats:// url");
        }
        return;
    }
    if let Err(why) = causeway_config::NatsUrl::parse(&d.url) {
        e.add(format!("{p}.url"), why.to_string());
    }
    if d.oauth2.is_some() || d.tls.is_some() || d.method != crate::bridge::HttpMethod::Post {
        e.add(p, "a nats destination takes no oauth2, tls or method");
    }
    if let Some(n) = &d.nats {
        if n.user.is_some() != n.password_ref.is_some() {
            e.add(format!("{p}.nats"), "user and passwordRef go together");
        }
        if n.secret_refs().len() > 1 {
            e.add(
                format!("{p}.nats"),
                "set at most one of passwordRef, tokenRef, nkeySeedRef, credentialsRef",
            );
        }
    }
}

/// A destination's `circuitBreaker`: counts of at least one, durations that parse, an
/// `openFor` above zero (a breaker that never waits would probe with every job).
fn circuit_breaker(e: &mut Errors, p: &str, cb: &crate::bridge::CircuitBreaker) {
    if cb.consecutive_failures == 0 {
        e.add(format!("{p}.consecutiveFailures"), "must be at least 1");
    }
    match parse_duration(&cb.open_for) {
        Err(err) => e.add(format!("{p}.openFor"), err.to_string()),
        Ok(d) if d.is_zero() => e.add(format!("{p}.openFor"), "must be longer than 0s"),
        Ok(_) => {}
    }
    e.duration(format!("{p}.disableAfter"), &cb.disable_after);
    if let Some(r) = &cb.failure_rate {
        if !(1..=100).contains(&r.percent) {
            e.add(
                format!("{p}.failureRate.percent"),
                format!("must be between 1 and 100 (got {})", r.percent),
            );
        }
        if r.min_attempts == 0 {
            e.add(format!("{p}.failureRate.minAttempts"), "must be at least 1");
        }
        match parse_duration(&r.window) {
            Err(err) => e.add(format!("{p}.failureRate.window"), err.to_string()),
            Ok(d) if d.is_zero() => {
                e.add(format!("{p}.failureRate.window"), "must be longer than 0s")
            }
            Ok(_) => {}
        }
    }
}

/// `spec.subscriptions`: callback hosts in the allow-list syntax, lease bounds in order,
/// durations that parse, one place for the API key.
fn subscriptions(e: &mut Errors, s: &crate::websub::Subscriptions) {
    let p = "spec.subscriptions";
    for (i, h) in s.allowed_callback_hosts.iter().enumerate() {
        if let Err(msg) = check_outbound_host(h) {
            e.add(format!("{p}.allowedCallbackHosts[{i}]"), msg);
        }
    }
    if let Some(l) = &s.lease_seconds {
        use causeway_config::SubscriptionsConfig as C;
        let min = l.min.unwrap_or(C::DEFAULT_MIN_LEASE_SECONDS);
        let max = l.max.unwrap_or(C::DEFAULT_MAX_LEASE_SECONDS);
        if min > max {
            e.add(
                format!("{p}.leaseSeconds"),
                format!("min ({min}) must not exceed max ({max})"),
            );
        }
        if let Some(d) = l.default
            && !(min..=max).contains(&d)
        {
            e.add(
                format!("{p}.leaseSeconds.default"),
                format!("{d} is outside min..max ({min}..{max})"),
            );
        }
        for (field, v) in [("default", l.default), ("min", l.min), ("max", l.max)] {
            if v == Some(0) {
                e.add(format!("{p}.leaseSeconds.{field}"), "must be at least 1");
            }
        }
    }
    e.opt_duration(format!("{p}.timeout"), &s.timeout);
    if let Some(b) = &s.backoff {
        e.opt_duration(format!("{p}.backoff.initialDelay"), &b.initial_delay);
        e.opt_duration(format!("{p}.backoff.maxDelay"), &b.max_delay);
    }
    let k = &s.auth.api_key;
    if k.header.is_some() && k.query_param.is_some() {
        e.add(
            format!("{p}.auth.apiKey"),
            "set header or queryParam, not both",
        );
    }
}

/// `spec.streams`: unique DNS-label names, one auth scheme each, durations that parse.
fn streams(e: &mut Errors, spec: &BridgeSpec) {
    let mut names = BTreeSet::new();
    for (i, s) in spec.streams.iter().enumerate() {
        let p = format!("spec.streams[{i}]");
        if !is_dns_label(&s.name) {
            e.add(
                format!("{p}.name"),
                format!("{:?} must be a lower-case DNS label", s.name),
            );
        }
        if !names.insert(s.name.as_str()) {
            e.add(
                format!("{p}.name"),
                format!("stream names must be unique ({:?} repeats)", s.name),
            );
        }
        if let Some(a) = &s.auth {
            let set = [a.jwt.is_some(), a.basic.is_some(), a.api_key.is_some()];
            if set.iter().filter(|x| **x).count() != 1 {
                e.add(format!("{p}.auth"), "set exactly one of jwt, basic, apiKey");
            }
            if let Some(j) = &a.jwt {
                if j.secret_ref.is_some() == j.jwks_ref.is_some() {
                    e.add(
                        format!("{p}.auth.jwt"),
                        "set exactly one of secretRef (HMAC key or PEM public key) and jwksRef",
                    );
                }
                if j.algorithms.is_empty() {
                    e.add(
                        format!("{p}.auth.jwt.algorithms"),
                        "at least one algorithm is required",
                    );
                }
                if j.dedupe_jti {
                    e.add(
                        format!("{p}.auth.jwt.dedupeJti"),
                        "a stream consumer reconnects with its token: dedupeJti applies to ingress only",
                    );
                }
                e.opt_duration(format!("{p}.auth.jwt.leeway"), &j.leeway);
            }
            if let Some(k) = &a.api_key
                && k.header.is_some()
                && k.query_param.is_some()
            {
                e.add(
                    format!("{p}.auth.apiKey"),
                    "set header or queryParam, not both",
                );
            }
        }
        if let Some(l) = &s.limits {
            for (field, v) in [
                ("maxConnectionsPerConsumer", l.max_connections_per_consumer),
                ("maxConnections", l.max_connections),
                ("eventsPerSecond", l.events_per_second),
            ] {
                if v == Some(0) {
                    e.add(format!("{p}.limits.{field}"), "must be at least 1");
                }
            }
        }
        if let Some(b) = &s.buffer {
            if b.max_events == Some(0) {
                e.add(format!("{p}.buffer.maxEvents"), "must be at least 1");
            }
            e.opt_duration(format!("{p}.buffer.stallTimeout"), &b.stall_timeout);
        }
        e.opt_duration(format!("{p}.retention"), &s.retention);
        e.opt_duration(format!("{p}.heartbeat"), &s.heartbeat);
        if let Some(h) = &s.heartbeat
            && crate::duration::parse_duration(h).is_ok_and(|d| d.is_zero())
        {
            e.add(format!("{p}.heartbeat"), "must be longer than 0");
        }
    }
}

/// Check an `allowedOutboundHosts` entry (Spin's syntax).
pub fn check_outbound_host(entry: &str) -> Result<(), String> {
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err(format!(
            "{entry:?} needs a scheme, such as https://api.example.com"
        ));
    };
    if !matches!(scheme, "http" | "https" | "*") {
        return Err(format!("{entry:?}: scheme must be http, https or *"));
    }
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(format!(
            "{entry:?}: give a host (and optional port) without a path"
        ));
    }
    let (h, port) = match host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || host.starts_with('[') => (h, Some(p)),
        _ => (host, None),
    };
    if let Some(p) = port
        && p != "*"
        && p.parse::<u16>().is_err()
    {
        return Err(format!("{entry:?}: port must be a number or *"));
    }
    if h.is_empty() {
        return Err(format!("{entry:?}: missing host"));
    }
    Ok(())
}

/// Check a Plugin spec.
pub fn validate_plugin(spec: &PluginSpec) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::default();
    let s = &spec.source;
    let count = [
        s.file.is_some(),
        s.http.is_some(),
        s.oci.is_some(),
        s.config_map.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if count != 1 {
        e.add(
            "spec.source",
            "set exactly one of file, http, oci, configMap",
        );
    }
    if let Some(h) = &s.http {
        if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
            e.add("spec.source.http.url", "url must be http:// or https://");
        }
        if h.sha256.len() != 64
            || !h
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            e.add(
                "spec.source.http.sha256",
                "must be 64 lower-case hex digits",
            );
        }
    }
    if let Some(o) = &s.oci
        && let Some(d) = &o.digest
        && !(d.len() == 71
            && d.starts_with("sha256:")
            && d[7..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        e.add(
            "spec.source.oci.digest",
            "must be sha256: followed by 64 lower-case hex digits",
        );
    }
    for (i, h) in spec.allowed_outbound_hosts.iter().enumerate() {
        if let Err(msg) = check_outbound_host(h) {
            e.add(format!("spec.allowedOutboundHosts[{i}]"), msg);
        }
    }
    let mut names = BTreeSet::new();
    for (i, v) in spec.variables.iter().enumerate() {
        if v.value.is_some() == v.value_from.is_some() {
            e.add(
                format!("spec.variables[{i}]"),
                "exactly one of value or valueFrom must be set",
            );
        }
        if !names.insert(v.name.as_str()) {
            e.add(
                format!("spec.variables[{i}].name"),
                format!("{:?} repeats", v.name),
            );
        }
    }
    e.quantity("spec.limits.memory", &spec.limits.memory);
    e.duration("spec.limits.timeout", &spec.limits.timeout);
    if spec.limits.max_concurrency == 0 {
        e.add("spec.limits.maxConcurrency", "must be at least 1");
    }
    if let Some(r) = &spec.route
        && !is_route_path(r)
    {
        e.add(
            "spec.route",
            format!("{r:?} must start with / and use only letters, digits and ._~/-"),
        );
    }
    e.finish()
}

/// Check a CIDR such as `169.254.10.0/24` or `fd00::/64` (what CEL's `isCIDR` accepts).
pub fn check_cidr(cidr: &str) -> Result<(), String> {
    let bad = || format!("{cidr:?} must be a CIDR such as 169.254.10.0/24 or fd00::/64");
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    if prefix.is_empty()
        || !prefix.bytes().all(|b| b.is_ascii_digit())
        || (prefix.len() > 1 && prefix.starts_with('0'))
    {
        return Err(bad());
    }
    let bits: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(bad());
    }
    Ok(())
}

/// Check a WorkerPool spec.
pub fn validate_pool(spec: &WorkerPoolSpec) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::default();
    if spec.storage.type_ == StorageType::Embedded && spec.replicas > 1 {
        e.add(
            "spec",
            "embedded storage serves one replica; use postgres storage for more",
        );
    }
    if spec.storage.type_ == StorageType::Postgres && spec.storage.postgres.is_none() {
        e.add("spec.storage", "postgres storage needs a postgres section");
    }
    e.quantity("spec.storage.size", &spec.storage.size);
    e.duration("spec.retention.maxAge", &spec.retention.max_age);
    e.quantity("spec.retention.maxBytes", &spec.retention.max_bytes);
    for (i, c) in spec.network.allowed_destination_cidrs.iter().enumerate() {
        if let Err(msg) = check_cidr(c) {
            e.add(format!("spec.network.allowedDestinationCidrs[{i}]"), msg);
        }
    }
    if let Some(a) = &spec.autoscaling {
        if a.min_replicas > a.max_replicas {
            e.add(
                "spec.autoscaling",
                "minReplicas must not exceed maxReplicas",
            );
        }
        if spec.storage.type_ != StorageType::Postgres {
            e.add(
                "spec",
                "autoscaling needs postgres storage (embedded storage has one writer)",
            );
        }
    }
    e.finish()
}
