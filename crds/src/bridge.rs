//! `Bridge`: one inbound endpoint and what happens to each request it accepts.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{NamedValue, SecretKeyRef};

// Enums the rendered configuration carries too: defined once, in `causeway-config` (with
// its `schema` feature, so that the CRD schemas still describe them).
pub use causeway_config::{
    BackoffPolicy, CloudEventsMode, HmacAlgorithm, HmacPreset, JwtAlgorithm, MissingPolicy,
    NotificationEvent, OAuth2ClientAuth, PluginNotReadyPolicy, SignatureEncoding,
};

/// A webhook bridge: receive at an endpoint, verify, filter, transform with plugin steps,
/// and deliver to one or more destinations with delays, retries and an attempt log.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "causeway.dev",
    version = "v1alpha1",
    kind = "Bridge",
    namespaced,
    status = "BridgeStatus",
    shortname = "br",
    category = "causeway",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Pool", type_ = "string", json_path = ".status.pool"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Destinations",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"DestinationsHealthy\")].status",
        priority = 1
    ),
    printcolumn(
        name = "Delivered-1h",
        type_ = "string",
        json_path = ".status.destinations[*].deliveredLastHour",
        priority = 1
    ),
    printcolumn(
        name = "Dead-1h",
        type_ = "string",
        json_path = ".status.destinations[*].deadLastHour",
        priority = 1
    ),
    printcolumn(
        name = "Pending",
        type_ = "string",
        json_path = ".status.destinations[*].pending",
        priority = 1
    ),
    doc = "A webhook bridge: an inbound endpoint, its verification, filter, plugin steps and destinations."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.destinations) && size(self.destinations) > 0) || (has(self.steps) && size(self.steps) > 0)",
     "message": "a bridge needs at least one destination or one step"}
]))]
pub struct BridgeSpec {
    /// WorkerPool that serves this bridge, in the same namespace. Defaults to `default`,
    /// which the operator creates on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub pool: Option<String>,

    /// Stop listening (ingress answers 503) and hold pending deliveries until resumed.
    /// Nothing is dropped.
    #[serde(default)]
    pub suspend: bool,

    /// While a plugin this bridge calls (a step, an `http://<plugin>.internal` destination)
    /// is not loaded, the Bridge is `Ready=False` (`PluginNotReady`) and either `Hold`s
    /// (the default: events are accepted and wait, their retries untouched, until the
    /// plugin loads) or `Reject`s (503 with `Retry-After` at the ingress).
    #[serde(default)]
    pub when_plugin_not_ready: PluginNotReadyPolicy,

    /// How requests are received and verified.
    #[serde(default)]
    pub ingress: Ingress,

    /// A CEL expression over `payload`, `headers`, `query` and `method`. Events for which
    /// it is false are recorded as `filtered` and not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub filter: Option<String>,

    /// Plugins that run in order after the event is stored. Each may enrich, transform,
    /// fan out or drop the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "atomic"))]
    pub steps: Vec<Step>,

    /// Retry policy for failed steps. Same shape and defaults as a destination's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_retry: Option<RetryPolicy>,

    /// Where each event is delivered. Each destination gets its own job, retries and
    /// dead letters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        extend(
            "x-kubernetes-list-type" = "map",
            "x-kubernetes-list-map-keys" = ["name"],
            "x-kubernetes-validations" = [
                {"rule": "self.all(d, self.exists_one(e, e.name == d.name))", "message": "destination names must be unique"}
            ]
        )
    )]
    pub destinations: Vec<Destination>,

    /// Values available to templates as `$env.NAME`. Values from Secrets never appear in
    /// status, logs, events, metrics or the attempt log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub env: Vec<NamedValue>,

    /// How templates treat a reference that does not resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<TemplateOptions>,

    /// A JSON Schema the payload must match (the data, for a structured CloudEvent).
    /// Requests that do not match get 422 with the first violations and are not stored.
    /// The schema also describes the bridge's messages in its AsyncAPI document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<PayloadSchema>,
    /// Streams of the accepted events for consumers (Server-Sent Events and WebSocket at
    /// `/streams/<namespace>/<name>/<stream>`), with replay from the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        extend(
            "x-kubernetes-list-type" = "map",
            "x-kubernetes-list-map-keys" = ["name"]
        )
    )]
    pub streams: Vec<crate::stream::Stream>,
    /// A WebSub hub at `/hub/<namespace>/<name>`: consumers subscribe their own callback
    /// URLs with an API key and receive every accepted event there (`docs/websub.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<crate::websub::Subscriptions>,

    /// Operational webhooks: a signed POST to `url` when a destination is paused, its
    /// circuit breaker opens or closes, or it is disabled (`docs/circuit-breaker.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Notifications>,
    /// What deleting the Bridge does with the jobs still queued for it: `Drain` (the
    /// default) keeps delivering them, refusing new events with 410 Gone, for at most
    /// `drainTimeout`; `Discard` removes the bridge at once and dead-letters them.
    #[serde(default, skip_serializing_if = "is_default")]
    pub deletion: Deletion,
}

/// `spec.deletion`: how a Bridge goes away. See `docs/deletion.md`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deletion {
    /// `Drain` (default) or `Discard`.
    #[serde(default)]
    pub policy: DeletionPolicy,
    /// With `Drain`: the longest the operator waits for the queued jobs (default 5m). What
    /// is left then is dead-lettered, and a Warning Event says how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub drain_timeout: Option<String>,
}

/// The default `spec.deletion.drainTimeout`.
pub const DEFAULT_DRAIN_TIMEOUT: &str = "5m";

impl Deletion {
    /// The drain timeout, or the default when unset; `None` when it does not parse
    /// (validation reports it).
    pub fn drain_timeout(&self) -> Option<std::time::Duration> {
        causeway_config::duration::parse_duration(
            self.drain_timeout
                .as_deref()
                .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        )
        .ok()
    }
}

/// What deleting a Bridge does with its queued jobs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Refuse new events (410 Gone) and deliver the queued jobs, for at most
    /// `drainTimeout`, before the Bridge goes.
    #[default]
    Drain,
    /// Go at once: queued jobs are dead-lettered.
    Discard,
}

/// Where a bridge tells someone about its destinations' health.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.url.startsWith('http://') || self.url.startsWith('https://')", "message": "url must be http:// or https://"}
]))]
pub struct Notifications {
    /// The receiver; each notification is a JSON POST, retried a few times.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Sign the notifications (Standard Webhooks), as a destination's `signing` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    /// Which events to send (default: all): `destination.paused`, `destination.opened`,
    /// `destination.closed`, `destination.disabled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4), extend("x-kubernetes-list-type" = "set"))]
    pub events: Vec<NotificationEvent>,
}

/// A destination's circuit breaker. After `consecutiveFailures` failed attempts in a row
/// (or `failureRate`), the breaker opens: the destination's jobs wait without attempts or
/// spent retries; after `openFor` one probe attempt goes out, and its success closes the
/// breaker, its failure opens it again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Failed attempts in a row that open the breaker (default 5).
    #[serde(default = "default_consecutive_failures")]
    #[schemars(range(min = 1, max = 10000))]
    pub consecutive_failures: u32,
    /// Open also when this share of the attempts over a window failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<FailureRate>,
    /// How long the breaker stays open before a probe (default 30s).
    #[serde(default = "default_open_for")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub open_for: String,
    /// Disable the destination after failing this long without one success: its jobs
    /// are kept and wait until it is resumed, as after a 410 (default 5d; `0s` never).
    #[serde(default = "default_disable_after")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub disable_after: String,
}

/// The failure-rate trigger of a circuit breaker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureRate {
    /// Percent of failed attempts that opens the breaker.
    #[schemars(range(min = 1, max = 100))]
    pub percent: u32,
    /// The sliding window (default 60s).
    #[serde(default = "default_rate_window")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub window: String,
    /// Fewer attempts in the window never open the breaker (default 20).
    #[serde(default = "default_min_attempts")]
    #[schemars(range(min = 1, max = 100000))]
    pub min_attempts: u32,
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_open_for() -> String {
    "30s".into()
}
fn default_disable_after() -> String {
    "5d".into()
}
fn default_rate_window() -> String {
    "60s".into()
}
fn default_min_attempts() -> u32 {
    20
}

/// A JSON Schema for a bridge's payloads: inline, or from a key of a ConfigMap in the
/// bridge's namespace (JSON or YAML). Set exactly one. Schemas are self-contained: a `$ref`
/// may point inside the schema only (nothing is fetched).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.inline) != has(self.configMapRef)", "message": "set exactly one of inline and configMapRef"}
]))]
pub struct PayloadSchema {
    /// The schema itself (draft 2020-12 unless `$schema` names another draft).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_object")]
    pub inline: Option<serde_json::Value>,
    /// A ConfigMap key holding the schema. A missing ConfigMap or key leaves the Bridge
    /// not Ready (reason `ConfigMapNotFound`); a change to it is picked up like a change to
    /// the Bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

/// A reference to one key of a ConfigMap in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the ConfigMap's `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Any JSON object, kept as written (a JSON Schema document).
fn any_json_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The schema itself (draft 2020-12 unless `$schema` names another draft).",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// How a bridge receives requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingress {
    /// Path the bridge is served at. Defaults to `/hooks/<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 512), regex(pattern = r"^/[A-Za-z0-9._~/-]+$"))]
    pub path: Option<String>,

    /// HTTP methods accepted. Others get 405.
    #[serde(default = "default_methods")]
    #[schemars(length(min = 1, max = 8), extend("x-kubernetes-list-type" = "set"))]
    pub methods: Vec<HttpMethod>,

    /// Largest accepted body in bytes. Larger requests get 413.
    #[serde(default = "default_max_body_bytes")]
    #[schemars(range(min = 1, max = 67108864))]
    pub max_body_bytes: u64,

    /// Header whose value deduplicates redeliveries from the sender: a repeated value within
    /// `dedupeWindow` returns the first event's id and stores nothing. When unset: the
    /// delivery id header of the hmac preset (`x-github-delivery` for github,
    /// `x-shopify-webhook-id` for shopify), else `webhook-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub idempotency_header: Option<String>,

    /// How long an idempotency key is remembered.
    #[serde(default = "default_dedupe_window")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub dedupe_window: String,

    /// How the sender is authenticated. At most one scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<IngressAuth>,

    /// Requests accepted per second at this bridge's path, per worker (a token bucket of
    /// `burst` tokens, default `perSecond`). Past it, requests get 429 with `Retry-After`
    /// before their body is read and nothing is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl Default for Ingress {
    fn default() -> Self {
        Ingress {
            path: None,
            methods: default_methods(),
            max_body_bytes: default_max_body_bytes(),
            idempotency_header: None,
            dedupe_window: default_dedupe_window(),
            auth: None,
            rate_limit: None,
        }
    }
}

fn default_methods() -> Vec<HttpMethod> {
    vec![HttpMethod::Post]
}
fn default_max_body_bytes() -> u64 {
    1_048_576
}
fn default_dedupe_window() -> String {
    "24h".into()
}

/// An HTTP method.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// Authentication of inbound requests. Set at most one scheme.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.standardWebhooks), has(self.hmac), has(self.jwt), has(self.basic), has(self.apiKey)].filter(x, x).size() <= 1",
     "message": "set at most one of standardWebhooks, hmac, jwt, basic, apiKey"}
]))]
pub struct IngressAuth {
    /// Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_webhooks: Option<StandardWebhooksAuth>,
    /// A generic HMAC signature header, or a provider preset (GitHub, Stripe, Shopify, Slack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<HmacAuth>,
    /// A JSON Web Token in the `Authorization: Bearer` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
    /// HTTP Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// A static API key in a header or query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
}

impl IngressAuth {
    /// Every Secret key this scheme reads.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let mut out = Vec::new();
        if let Some(a) = &self.standard_webhooks {
            out.push(&a.secret_ref);
            out.extend(a.previous_secret_refs.iter());
        }
        if let Some(a) = &self.hmac {
            out.push(&a.secret_ref);
            out.extend(a.previous_secret_refs.iter());
        }
        if let Some(a) = &self.jwt {
            out.extend(a.secret_ref.iter());
            out.extend(a.jwks_ref.iter());
        }
        if let Some(a) = &self.basic {
            out.push(&a.password_ref);
        }
        if let Some(a) = &self.api_key {
            out.push(&a.secret_ref);
            out.extend(a.previous_secret_refs.iter());
        }
        out
    }
}

/// Standard Webhooks verification.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StandardWebhooksAuth {
    /// The signing secret (`whsec_...`, base64 after the prefix).
    pub secret_ref: SecretKeyRef,
    /// Older secrets still accepted while senders rotate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4), extend("x-kubernetes-list-type" = "atomic"))]
    pub previous_secret_refs: Vec<SecretKeyRef>,
    /// How far `webhook-timestamp` may be from now.
    #[serde(default = "default_tolerance")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub tolerance: String,
}

fn default_tolerance() -> String {
    "5m".into()
}

/// The idempotency header when the bridge names none.
pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "webhook-id";

impl Ingress {
    /// The idempotency header in effect, lower-case: the one set, else the preset's delivery
    /// id header, else `webhook-id`.
    pub fn effective_idempotency_header(&self) -> String {
        if let Some(h) = &self.idempotency_header {
            return h.to_ascii_lowercase();
        }
        self.auth
            .as_ref()
            .and_then(|a| a.hmac.as_ref())
            .and_then(|h| h.preset)
            .and_then(HmacPreset::delivery_id_header)
            .unwrap_or(DEFAULT_IDEMPOTENCY_HEADER)
            .to_string()
    }
}

/// A generic HMAC signature, or a provider preset. Fields set next to a preset override it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.preset) || has(self.header)", "message": "hmac needs a preset or a header"}
]))]
pub struct HmacAuth {
    /// A provider preset: github, stripe, shopify or slack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<HmacPreset>,
    /// The shared secret.
    pub secret_ref: SecretKeyRef,
    /// Older secrets still accepted while senders rotate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4), extend("x-kubernetes-list-type" = "atomic"))]
    pub previous_secret_refs: Vec<SecretKeyRef>,
    /// Header carrying the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub header: Option<String>,
    /// Digest algorithm (default sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HmacAlgorithm>,
    /// Signature encoding (default hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<SignatureEncoding>,
    /// Text before the signature in the header, such as `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub prefix: Option<String>,
    /// Header carrying a Unix timestamp that is part of the signed content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub timestamp_header: Option<String>,
    /// What is signed, with `{timestamp}` and `{body}` placeholders (default `{body}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub signed_content: Option<String>,
    /// How far the timestamp may be from now, when there is one (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub tolerance: Option<String>,
}

/// A JSON Web Token, by default in `Authorization: Bearer <token>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.secretRef) != has(self.jwksRef)", "message": "set exactly one of secretRef (HMAC key or PEM public key) and jwksRef"}
]))]
pub struct JwtAuth {
    /// Accepted algorithms. A token signed with any other is refused.
    #[schemars(length(min = 1, max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub algorithms: Vec<JwtAlgorithm>,
    /// The key: the shared secret for HS256, a PEM public key for RS256/ES256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// A JSON Web Key Set; the token's `kid` picks the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_ref: Option<SecretKeyRef>,
    /// Required `iss` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub issuer: Option<String>,
    /// Required `aud` claim (one of the token's audiences must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub audience: Option<String>,
    /// Clock skew allowed for `exp` and `nbf` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub leeway: Option<String>,
    /// Accept each token once: a token must carry a `jti` claim, and a `jti` already seen
    /// (until the token expires) is refused like a redelivered event. Off by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dedupe_jti: bool,
}

/// HTTP Basic authentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// The expected user name.
    #[schemars(length(min = 1, max = 256))]
    pub username: String,
    /// The expected password.
    pub password_ref: SecretKeyRef,
}

/// A static API key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.header) && has(self.queryParam))", "message": "set header or queryParam, not both"}
]))]
pub struct ApiKeyAuth {
    /// Header carrying the key (default `x-api-key` unless `queryParam` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub header: Option<String>,
    /// Query parameter carrying the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub query_param: Option<String>,
    /// The expected key.
    pub secret_ref: SecretKeyRef,
    /// Older keys still accepted while clients rotate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4), extend("x-kubernetes-list-type" = "atomic"))]
    pub previous_secret_refs: Vec<SecretKeyRef>,
}

/// One plugin step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// Name of a Plugin in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub plugin: String,
    /// Path of the request sent to the plugin (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^/"))]
    pub path: Option<String>,
}

/// Retries after the first attempt, and the delay before each.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 5).
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 100))]
    pub retries: u32,
    /// Delay before each retry.
    #[serde(default)]
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: default_retries(),
            backoff: Backoff::default(),
        }
    }
}

fn default_retries() -> u32 {
    5
}

/// Delay before each retry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.policy != 'fixed' || (has(self.delays) && size(self.delays) > 0)", "message": "the fixed policy needs a delays list"}
]))]
pub struct Backoff {
    /// sidekiq (default), exponential, fixed or none.
    #[serde(default)]
    pub policy: BackoffPolicy,
    /// First delay for `exponential` (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub initial_delay: Option<String>,
    /// Largest delay for `exponential` (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub max_delay: Option<String>,
    /// Delays for `fixed`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "atomic"), inner(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$")))]
    pub delays: Vec<String>,
}

/// One outbound target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.url.startsWith('http://') || self.url.startsWith('https://') || self.url.startsWith('nats://') || self.url.startsWith('$')",
     "message": "url must be http://, https:// or nats:// (or start with a template reference such as $env.BASE_URL)"},
    {"rule": "!self.url.startsWith('nats://') || self.url.matches('^nats://([A-Za-z0-9.-]+|\\\\[[0-9A-Fa-f:.]+\\\\])(:[0-9]{1,5})?/[^.\\\\s*>?#]+(\\\\.[^.\\\\s*>?#]+)*$')",
     "message": "a nats url is nats://host[:port]/subject: no credentials, query or wildcard, tokens separated by single dots"},
    {"rule": "!has(self.nats) || self.url.startsWith('nats://')", "message": "nats needs a nats:// url"},
    {"rule": "!self.url.startsWith('nats://') || (!has(self.oauth2) && !has(self.tls) && self.method == 'POST')",
     "message": "a nats destination takes no oauth2, tls or method"},
    {"rule": "!has(self.cloudEvents) || (has(self.format) && self.format == 'cloudevents')",
     "message": "cloudEvents needs format: cloudevents"}
]))]
pub struct Destination {
    /// Unique name within the bridge; used in metrics and the attempt log.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Target URL: `http://`, `https://`, or `nats://host:port/subject` for a NATS
    /// JetStream subject. May contain template references (`$payload.kind`, `$env.BASE`).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// HTTP method (default POST).
    #[serde(default = "default_destination_method")]
    pub method: HttpMethod,
    /// Extra request headers. Values may contain template references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub headers: BTreeMap<String, String>,
    /// Body template. Without it the event's body (after steps) is sent unchanged. In a
    /// JSON body, a string that is exactly one reference becomes the typed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
    /// Wait this long after receipt before the first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub delay: Option<String>,
    /// Timeout of one attempt (default 10s).
    #[serde(default = "default_timeout")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub timeout: String,
    /// Retries after the first attempt (default 5).
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 100))]
    pub retries: u32,
    /// Delay before each retry.
    #[serde(default)]
    pub backoff: Backoff,
    /// Longest `Retry-After` honoured (default 1h); longer values are clamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub max_retry_after: Option<String>,
    /// At most this many attempts in flight at once (default 16).
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrency: u32,
    /// Optional rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Sign outbound requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    /// Where an exhausted delivery is also sent (it is always kept as a dead letter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterTarget>,
    /// `raw` (default) sends the body as rendered; `cloudevents` sends a CloudEvent 1.0
    /// (see `cloudEvents`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub format: DeliveryFormat,
    /// With `format: cloudevents`: the content mode and attribute templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_events: Option<CloudEventsOutput>,
    /// OAuth2 client credentials: every attempt carries `Authorization: Bearer <token>`,
    /// a token fetched from `tokenUrl`, cached until shortly before it expires and fetched
    /// again after the destination answers 401. Not with an `Authorization` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
    /// TLS to this destination: a private CA to trust instead of the system's roots, and
    /// a client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DestinationTlsSpec>,
    /// Stop attempting a destination that keeps failing, probe it, and disable it after
    /// a long outage (`docs/circuit-breaker.md`). Off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// With a `nats://host:port/subject` url: how the worker authenticates to the NATS
    /// server (`docs/nats.md`). Each event is published to JetStream and its publish
    /// acknowledgement is the delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsDestination>,
}

/// Credentials of a NATS destination, from Secrets; at most one kind. Without any, the
/// worker connects without credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.user) == has(self.passwordRef)", "message": "user and passwordRef go together"},
    {"rule": "(has(self.passwordRef) ? 1 : 0) + (has(self.tokenRef) ? 1 : 0) + (has(self.nkeySeedRef) ? 1 : 0) + (has(self.credentialsRef) ? 1 : 0) <= 1",
     "message": "set at most one of passwordRef, tokenRef, nkeySeedRef, credentialsRef"}
]))]
pub struct NatsDestination {
    /// The user name, with `passwordRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub user: Option<String>,
    /// The user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_ref: Option<SecretKeyRef>,
    /// A token (the server's `authorization { token }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<SecretKeyRef>,
    /// A user nkey seed (`SU...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey_seed_ref: Option<SecretKeyRef>,
    /// A credentials file (`.creds`: a user JWT and its nkey seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<SecretKeyRef>,
}

impl NatsDestination {
    /// Every Secret key it reads.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        [
            &self.password_ref,
            &self.token_ref,
            &self.nkey_seed_ref,
            &self.credentials_ref,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// TLS settings of a destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.caSecretRef) || has(self.clientCertificateSecret)", "message": "set caSecretRef, clientCertificateSecret or both"}
]))]
pub struct DestinationTlsSpec {
    /// PEM CA certificate(s) in a Secret: the only roots trusted for this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`): the client certificate
    /// presented to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_certificate_secret: Option<String>,
}

/// OAuth2 client credentials (RFC 6749 section 4.4).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.tokenUrl.startsWith('http://') || self.tokenUrl.startsWith('https://')", "message": "tokenUrl must be http:// or https://"}
]))]
pub struct OAuth2 {
    /// The token endpoint.
    #[schemars(length(min = 1, max = 2048))]
    pub token_url: String,
    /// The client id.
    #[schemars(length(min = 1, max = 1024))]
    pub client_id: String,
    /// The client secret.
    pub client_secret_ref: SecretKeyRef,
    /// Scopes to ask for (sent space-separated as `scope`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "atomic"))]
    pub scopes: Vec<String>,
    /// An `audience` parameter, for token servers that want one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub audience: Option<String>,
    /// How the client authenticates: `basic` (HTTP Basic, the default) or `body` (id and
    /// secret in the form).
    #[serde(default)]
    pub client_auth: OAuth2ClientAuth,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// What a destination sends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryFormat {
    /// The body as rendered (the event body, or the body template).
    #[default]
    Raw,
    /// A CloudEvent 1.0 over HTTP.
    Cloudevents,
}

/// A CloudEvent sent to a destination. Attributes are templates (`$payload.kind`,
/// `$event.cloudevent.type`, …); each one unset is derived from the event: `id`, `source`,
/// `type`, `subject` and `time` of an inbound CloudEvent, else the event id, the bridge's
/// path, `dev.causeway.event`, none and the time received.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudEventsOutput {
    /// `binary` (default: attributes in `ce-*` headers) or `structured` (one
    /// `application/cloudevents+json` document).
    #[serde(default)]
    pub mode: CloudEventsMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `id` (default: the inbound event's, else the event id, the same on every retry).
    #[schemars(length(min = 1, max = 1024))]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `source` (default: the inbound event's, else the bridge's path).
    #[schemars(length(min = 1, max = 1024))]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    /// `type` (default: the inbound event's, else `dev.causeway.event`).
    #[schemars(length(min = 1, max = 1024))]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `subject` (default: the inbound event's, else none).
    #[schemars(length(min = 1, max = 1024))]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `time`, RFC 3339 once rendered (default: the inbound event's, else when it was received).
    #[schemars(length(min = 1, max = 1024))]
    pub time: Option<String>,
}

fn default_destination_method() -> HttpMethod {
    HttpMethod::Post
}
fn default_timeout() -> String {
    "10s".into()
}
fn default_concurrency() -> u32 {
    16
}

/// A rate limit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Attempts (on a destination) or requests (on the ingress) per second.
    #[schemars(range(min = 1, max = 100000))]
    pub per_second: u32,
    /// Burst size (default equal to perSecond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub burst: Option<u32>,
}

/// Outbound signing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Signing {
    /// Sign with Standard Webhooks; `webhook-id` is the event id, so receivers can
    /// deduplicate retries.
    pub standard_webhooks: SigningSecret,
}

/// A signing secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SigningSecret {
    /// The secret (`whsec_...`).
    pub secret_ref: SecretKeyRef,
}

/// Where exhausted deliveries are also sent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.url.startsWith('http://') || self.url.startsWith('https://')", "message": "url must be http:// or https://"}
]))]
pub struct DeadLetterTarget {
    /// URL that receives a JSON record of the dead letter.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
}

/// Template behaviour.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateOptions {
    /// What a missing reference does: `empty` (default) or `error`.
    #[serde(default)]
    pub on_missing: MissingPolicy,
}

/// Observed state of a Bridge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BridgeStatus {
    /// The generation last processed by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Where senders POST, inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The pool serving the bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The pool config version that first contained this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// Each destination: paused or not, jobs waiting, and the last hour summed over the
    /// pool's ready workers. The counts are rewritten at most once a minute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub destinations: Vec<DestinationStatus>,
    /// When the counts of `destinations` were taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations_at: Option<Time>,
    /// While the Bridge is being deleted and drains: how far it has got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<DeletionStatus>,
}

/// `status.deletion`: the drain of a Bridge being deleted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletionStatus {
    /// `Draining` until the queued jobs are delivered or the deadline passes.
    pub phase: String,
    /// Jobs still queued for the bridge (steps, deliveries, paused ones), as its pool's
    /// workers last reported them; unset until they have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_jobs: Option<u64>,
    /// When what is left is dead-lettered and the Bridge goes anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// When `pendingJobs` was taken: it is rewritten at most every few seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<Time>,
}

/// `status.deletion.phase` while the queued jobs drain.
pub const PHASE_DRAINING: &str = "Draining";

/// One destination of a Bridge, as its pool's workers report it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStatus {
    /// The destination's name.
    pub name: String,
    /// Paused until resumed (`kubectl causeway destinations resume`): by a 410 Gone, or
    /// disabled by its circuit breaker.
    #[serde(default)]
    pub paused: bool,
    /// Why it is paused: `Gone` (a 410) or `Disabled` (failing for `disableAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// Its circuit breaker when not closed: `open` or `halfOpen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    /// Jobs waiting for an attempt.
    #[serde(default)]
    pub pending: u64,
    /// Deliveries that got a 2xx in the last hour.
    #[serde(default)]
    pub delivered_last_hour: u64,
    /// Attempts that failed in the last hour.
    #[serde(default)]
    pub failed_last_hour: u64,
    /// Deliveries dead-lettered in the last hour.
    #[serde(default)]
    pub dead_last_hour: u64,
}
