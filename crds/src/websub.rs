//! `Bridge.spec.subscriptions`: a WebSub hub at `/hub/<namespace>/<bridge>` where consumers
//! subscribe their own callback URLs with an API key. See `docs/websub.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bridge::{ApiKeyAuth, Backoff, Signing};
use crate::common::SecretKeyRef;

/// The bridge's WebSub hub: subscribers `POST` `hub.mode`, `hub.topic`, `hub.callback`,
/// `hub.secret` and `hub.lease_seconds`; the hub verifies their intent, stores the
/// subscription and delivers every accepted event (after the filter and steps) to the
/// callback with a destination's retries and attempt log, signed with
/// `X-Hub-Signature-256` when the subscriber gave a secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscriptions {
    /// Serve the hub. False keeps the settings and refuses subscribers (404); stored
    /// subscriptions get no deliveries while it is false.
    pub enabled: bool,
    /// The API key subscribers present (header `x-api-key` by default).
    pub auth: SubscriptionsAuth,
    /// Where callbacks may point, in the plugins' `allowedOutboundHosts` syntax
    /// (`https://hooks.example.com`, `https://*.example.com`, `http://10.0.0.7:8080`).
    /// Empty refuses every callback. Loopback and private addresses need the host listed
    /// by name or address (a wildcard never unlocks them); link-local and metadata
    /// addresses are refused unless the pool's `allowedDestinationCidrs` lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 512)))]
    pub allowed_callback_hosts: Vec<String>,
    /// The lease a subscription gets: `default` when the subscriber asks for none, a
    /// request outside `min`..`max` is brought inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<LeaseSeconds>,
    /// Retries of each delivery after the first attempt (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub retries: Option<u32>,
    /// Delay before each retry, as a destination's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Live subscriptions the hub keeps at most (default 100): every event is one delivery
    /// per subscription, so a key holder cannot multiply the pool's work without bound. A
    /// new callback past it gets 403; renewing one does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_subscriptions: Option<u32>,
    /// Timeout of one delivery and of the verification of intent (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub timeout: Option<String>,
    /// Also sign deliveries with Standard Webhooks (beside `X-Hub-Signature-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
}

/// How subscribers authenticate: an API key from a Secret, as `ingress.auth.apiKey`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionsAuth {
    /// A static API key in a header or query parameter.
    pub api_key: ApiKeyAuth,
}

/// Lease bounds in seconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.min) || !has(self.max) || self.min <= self.max", "message": "min must not exceed max"}
]))]
pub struct LeaseSeconds {
    /// Granted when the subscriber asks for no lease (default 864000, ten days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31536000))]
    pub default: Option<u64>,
    /// Shortest lease granted (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31536000))]
    pub min: Option<u64>,
    /// Longest lease granted (default 2592000, thirty days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31536000))]
    pub max: Option<u64>,
}

impl Subscriptions {
    /// Every Secret key it reads.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let mut out = vec![&self.auth.api_key.secret_ref];
        out.extend(self.auth.api_key.previous_secret_refs.iter());
        if let Some(s) = &self.signing {
            out.push(&s.standard_webhooks.secret_ref);
        }
        out
    }
}
