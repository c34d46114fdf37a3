//! A bridge's WebSub hub, resolved: consumers subscribe their own callback at
//! `/hub/<namespace>/<bridge>` and receive the bridge's accepted events there, delivered
//! like a destination's (`docs/websub.md`).

use serde::{Deserialize, Serialize};

use crate::bridge::{AuthConfig, RetryConfig};
use crate::secret::SecretValue;

/// `spec.subscriptions`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionsConfig {
    /// The API key subscribers present (always an [`AuthConfig::ApiKey`]).
    pub auth: AuthConfig,
    /// Where callbacks may point, in the plugins' `allowedOutboundHosts` syntax
    /// (`https://hooks.example.com`, `http://*.apps.example.com:8080`); deny by default.
    pub allowed_callback_hosts: Vec<String>,
    /// Lease granted when the subscriber asks for none, in seconds.
    pub default_lease_seconds: u64,
    /// Shortest lease granted: a shorter request is raised to it.
    pub min_lease_seconds: u64,
    /// Longest lease granted: a longer request is cut to it.
    pub max_lease_seconds: u64,
    /// Retries of each delivery, as a destination's.
    pub retry: RetryConfig,
    /// Timeout of one delivery attempt and of the verification of intent, in ms.
    pub timeout_ms: u64,
    /// Live subscriptions the hub keeps at most; a new callback past it is refused (a
    /// renewal is not).
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions: u32,
    /// Also sign deliveries with Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`) with this secret, beside `X-Hub-Signature-256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SecretValue>,
}

fn default_max_subscriptions() -> u32 {
    SubscriptionsConfig::DEFAULT_MAX_SUBSCRIPTIONS
}

impl SubscriptionsConfig {
    /// Default `maxSubscriptions`.
    pub const DEFAULT_MAX_SUBSCRIPTIONS: u32 = 100;
    /// Default `leaseSeconds.default`: ten days, as many hubs grant.
    pub const DEFAULT_LEASE_SECONDS: u64 = 864_000;
    /// Default `leaseSeconds.min`.
    pub const DEFAULT_MIN_LEASE_SECONDS: u64 = 60;
    /// Default `leaseSeconds.max`: thirty days.
    pub const DEFAULT_MAX_LEASE_SECONDS: u64 = 2_592_000;
    /// Default `timeout`.
    pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

    /// The lease granted for `asked` (None: the default), within the bounds.
    pub fn lease_for(&self, asked: Option<u64>) -> u64 {
        asked.unwrap_or(self.default_lease_seconds).clamp(
            self.min_lease_seconds,
            self.max_lease_seconds.max(self.min_lease_seconds),
        )
    }

    /// Every secret it holds, for redaction.
    pub fn secrets(&self) -> Vec<&SecretValue> {
        let mut out = match &self.auth {
            AuthConfig::ApiKey { keys, .. } => keys.iter().collect(),
            _ => Vec::new(),
        };
        out.extend(self.signing_secret.iter());
        out
    }
}
