//! One bridge, resolved: authentication, steps, destinations, retries, `$env`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::key::ObjectKey;
use crate::secret::SecretValue;

/// One bridge, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConfig {
    pub namespace: String,
    pub name: String,
    /// Generation of the Bridge object this was rendered from.
    #[serde(default)]
    pub generation: Option<i64>,
    pub path: String,
    pub methods: Vec<String>,
    pub max_body_bytes: u64,
    /// Lower-case header name.
    pub idempotency_header: String,
    pub dedupe_window_ms: u64,
    /// Requests accepted per second at the ingress (per worker); past it, 429.
    #[serde(default)]
    pub ingress_rate_limit: Option<RateLimitConfig>,
    pub suspend: bool,
    /// The Bridge is being deleted and drains: the ingress refuses new events (410 Gone)
    /// while the jobs already queued (steps and deliveries) keep going.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// What the ingress does while a plugin the bridge calls is not loaded.
    #[serde(default)]
    pub when_plugin_not_ready: PluginNotReadyPolicy,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    pub step_retry: RetryConfig,
    pub destinations: Vec<DestinationConfig>,
    /// `$env.NAME` values; the `secret` flag marks values to redact.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    pub on_missing: MissingPolicy,
    /// JSON Schema (as JSON text) the payload must match at ingress, resolved from
    /// `spec.schema` (inline or a ConfigMap key). Payloads that do not match get 422.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Streams of the bridge's accepted events (SSE and WebSocket), see `stream.rs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<crate::stream::StreamConfig>,
    /// The bridge's WebSub hub (self-service subscriptions), see `websub.rs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<crate::websub::SubscriptionsConfig>,
    /// Operational webhooks about the bridge's destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsConfig>,
}

impl BridgeConfig {
    /// The bridge's key in metrics, the store and the admin API.
    pub fn object_key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// `namespace/name`, the bridge's key in metrics, the store and the admin API.
    pub fn key(&self) -> String {
        self.object_key().to_string()
    }

    /// Every secret value this bridge holds, for redaction.
    pub fn secret_values(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .env
            .values()
            .filter(|v| v.secret)
            .map(|v| v.value.expose())
            .collect();
        if let Some(auth) = &self.auth {
            out.extend(auth.secrets().into_iter().map(SecretValue::expose));
        }
        for d in &self.destinations {
            out.extend(d.signing_secret.iter().map(SecretValue::expose));
            out.extend(d.oauth2.iter().map(|o| o.client_secret.expose()));
            out.extend(
                d.nats
                    .iter()
                    .filter_map(|n| n.auth.as_ref())
                    .map(crate::nats::NatsAuth::secret)
                    .map(SecretValue::expose),
            );
            out.extend(
                d.tls
                    .iter()
                    .filter_map(|t| t.client_key_pem.as_ref())
                    .map(SecretValue::expose),
            );
        }
        if let Some(n) = &self.notifications {
            out.extend(n.signing_secret.iter().map(SecretValue::expose));
        }
        for s in &self.streams {
            if let Some(auth) = &s.auth {
                out.extend(auth.secrets().into_iter().map(SecretValue::expose));
            }
        }
        if let Some(s) = &self.subscriptions {
            out.extend(s.secrets().into_iter().map(SecretValue::expose));
        }
        out.retain(|s| !s.is_empty());
        out
    }
}

/// What a bridge does while a plugin it calls (a step, an `http://<plugin>.internal`
/// destination) is not loaded.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum PluginNotReadyPolicy {
    /// Accept events and hold their steps and plugin deliveries, without spending their
    /// retries, until the plugin loads: nothing is lost.
    #[default]
    Hold,
    /// Answer 503 with `Retry-After` at the ingress; the sender retries later.
    Reject,
}

/// One `$env` value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvValue {
    pub value: SecretValue,
    /// Came from a Secret: redact it wherever it could be echoed.
    pub secret: bool,
}

/// Resolved inbound authentication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AuthConfig {
    #[serde(rename_all = "camelCase")]
    StandardWebhooks {
        secrets: Vec<SecretValue>,
        tolerance_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    Hmac {
        preset: Option<HmacPreset>,
        secrets: Vec<SecretValue>,
        header: Option<String>,
        algorithm: Option<HmacAlgorithm>,
        encoding: Option<SignatureEncoding>,
        prefix: Option<String>,
        timestamp_header: Option<String>,
        signed_content: Option<String>,
        tolerance_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    Jwt {
        algorithms: Vec<JwtAlgorithm>,
        key: Option<SecretValue>,
        jwks: Option<SecretValue>,
        issuer: Option<String>,
        audience: Option<String>,
        leeway_ms: u64,
        /// Accept each token once: the verifier returns its `jti` for the idempotency table.
        #[serde(default)]
        dedupe_jti: bool,
    },
    #[serde(rename_all = "camelCase")]
    Basic {
        username: String,
        password: SecretValue,
    },
    #[serde(rename_all = "camelCase")]
    ApiKey {
        header: Option<String>,
        query_param: Option<String>,
        keys: Vec<SecretValue>,
    },
}

impl AuthConfig {
    fn secrets(&self) -> Vec<&SecretValue> {
        match self {
            AuthConfig::StandardWebhooks { secrets, .. } | AuthConfig::Hmac { secrets, .. } => {
                secrets.iter().collect()
            }
            AuthConfig::Jwt { key, jwks, .. } => key.iter().chain(jwks.iter()).collect(),
            AuthConfig::Basic { password, .. } => vec![password],
            AuthConfig::ApiKey { keys, .. } => keys.iter().collect(),
        }
    }
}

/// Signature schemes of well-known providers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum HmacPreset {
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// `Stripe-Signature: t=<ts>,v1=<hex>` over `<ts>.<body>`, with tolerance.
    Stripe,
    /// `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify,
    /// `X-Slack-Signature: v0=<hex>` over `v0:<ts>:<body>`, with `X-Slack-Request-Timestamp`.
    Slack,
}

impl HmacPreset {
    /// The header in which the provider sends a unique delivery id, which makes a good
    /// idempotency key (these presets sign no timestamp, so it is their replay protection).
    /// Stripe's event id is in the body and Slack sends no delivery id header: none.
    pub fn delivery_id_header(self) -> Option<&'static str> {
        match self {
            HmacPreset::Github => Some("x-github-delivery"),
            HmacPreset::Shopify => Some("x-shopify-webhook-id"),
            HmacPreset::Stripe | HmacPreset::Slack => None,
        }
    }
}

/// Digest used by an HMAC signature.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

/// How a signature is written in its header.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// JWT algorithms accepted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// One plugin step of a bridge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepConfig {
    /// Plugin name, in the bridge's namespace.
    pub plugin: String,
    pub path: String,
}

/// Retries and the delays between them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    pub retries: u32,
    pub policy: BackoffPolicy,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    #[serde(default)]
    pub delays_ms: Vec<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            retries: 5,
            policy: BackoffPolicy::Sidekiq,
            initial_delay_ms: 1_000,
            max_delay_ms: 3_600_000,
            delays_ms: vec![],
        }
    }
}

/// Backoff policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    /// `n^4 + 15 + rand(30)·(n+1)` seconds before retry n (n from 0), as in the seed.
    #[default]
    Sidekiq,
    /// `initialDelay · 2^n` with full jitter, capped at `maxDelay`.
    Exponential,
    /// The `delays` list in order; the last entry repeats.
    Fixed,
    /// Retry at once.
    None,
}

/// One destination, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationConfig {
    pub name: String,
    pub url: String,
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    pub delay_ms: u64,
    pub timeout_ms: u64,
    pub retry: RetryConfig,
    pub max_retry_after_ms: u64,
    pub max_concurrency: u32,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub signing_secret: Option<SecretValue>,
    #[serde(default)]
    pub dead_letter_url: Option<String>,
    /// Send each event as a CloudEvent (`format: cloudevents`); None sends the body as
    /// rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_events: Option<CloudEventsConfig>,
    /// OAuth2 client credentials: each attempt carries a bearer token from `token_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Config>,
    /// TLS beyond the system's roots: a private CA, a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DestinationTls>,
    /// Stop attempting a destination that keeps failing (`docs/circuit-breaker.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// A `nats://` destination's credentials (`docs/nats.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<crate::nats::NatsConfig>,
}

/// A destination's circuit breaker: closed (attempts go out), open (its jobs wait, no
/// attempt, no retry spent), half-open (one probe attempt decides).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerConfig {
    /// Open after this many failed attempts in a row.
    pub consecutive_failures: u32,
    /// Open also when this share of the attempts over a window failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<FailureRateConfig>,
    /// How long the breaker stays open before one probe attempt.
    pub open_for_ms: u64,
    /// Disable (pause until resumed) a destination that has failed without a single
    /// success for this long; None never disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_after_ms: Option<u64>,
}

/// The failure-rate trigger of a circuit breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRateConfig {
    /// Percent of failed attempts (1 to 100) that opens the breaker.
    pub percent: u32,
    /// The sliding window the rate is taken over.
    pub window_ms: u64,
    /// Fewer attempts than this in the window never open the breaker.
    pub min_attempts: u32,
}

/// Operational webhooks of a bridge: a destination paused, opened, closed or disabled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsConfig {
    pub url: String,
    /// Sign with Standard Webhooks, as a destination does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SecretValue>,
    /// Which events to send; empty sends every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NotificationEvent>,
}

impl NotificationsConfig {
    pub fn wants(&self, e: NotificationEvent) -> bool {
        self.events.is_empty() || self.events.contains(&e)
    }
}

/// The operational events of a bridge's destinations.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum NotificationEvent {
    /// Paused by a 410 Gone.
    #[serde(rename = "destination.paused")]
    DestinationPaused,
    /// Its circuit breaker opened.
    #[serde(rename = "destination.opened")]
    DestinationOpened,
    /// Its circuit breaker closed: a probe succeeded.
    #[serde(rename = "destination.closed")]
    DestinationClosed,
    /// Failing for `disableAfter`: paused until resumed.
    #[serde(rename = "destination.disabled")]
    DestinationDisabled,
}

impl NotificationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::DestinationPaused => "destination.paused",
            NotificationEvent::DestinationOpened => "destination.opened",
            NotificationEvent::DestinationClosed => "destination.closed",
            NotificationEvent::DestinationDisabled => "destination.disabled",
        }
    }
}

/// TLS material of one destination, PEM, from Secrets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationTls {
    /// Trust only these CA certificates for the destination (instead of the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// A client certificate (chain) and its private key, for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_pem: Option<SecretValue>,
}

/// OAuth2 client credentials (RFC 6749 section 4.4) for one destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretValue,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default)]
    pub client_auth: OAuth2ClientAuth,
}

/// How the client authenticates to the token endpoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum OAuth2ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Body,
}

/// How a destination sends CloudEvents. Each attribute is a template (the destination
/// template syntax); unset ones are derived from the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudEventsConfig {
    pub mode: CloudEventsMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// The CloudEvents HTTP binding's content modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum CloudEventsMode {
    /// Attributes in `ce-*` headers, the data as the body.
    #[default]
    Binary,
    /// One `application/cloudevents+json` document holding attributes and data.
    Structured,
}

/// A token bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitConfig {
    pub per_second: u32,
    pub burst: u32,
}

/// What a template does with a reference that does not resolve.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum MissingPolicy {
    /// `null` where a JSON value stands alone, the empty string inside text.
    #[default]
    Empty,
    /// The delivery fails at once and is dead-lettered with the missing path as reason.
    Error,
}
