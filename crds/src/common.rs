//! Types shared by the three resources: secret references, named values, conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Causeway resource.
pub const GROUP: &str = "causeway.dev";
/// The one API version served today.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "causeway.dev/v1alpha1";
/// The pool a Bridge or Plugin lands in when it names none.
pub const DEFAULT_POOL: &str = "default";
/// The namespace a manifest lands in when it names none (local mode).
pub const DEFAULT_NAMESPACE: &str = "default";
/// The operator's finalizer on every Bridge: a Bridge being deleted stays, draining, until
/// its queued jobs are delivered or `spec.deletion.drainTimeout` has passed.
pub const BRIDGE_FINALIZER: &str = "causeway.dev/drain";

/// A reference to one key of a Secret in the same namespace.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the namespace of the object that refers to it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's `data` (or `stringData`).
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Where a named value comes from when it is not written inline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueFrom {
    /// Read the value from a key of a Secret. The value never appears in status,
    /// logs, events, metrics or the attempt log.
    pub secret_key_ref: SecretKeyRef,
}

/// A named value: a literal, or a reference to a Secret key. Used for a bridge's `env`
/// and a plugin's `variables`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.value) != has(self.valueFrom)", "message": "exactly one of value or valueFrom must be set"}
]))]
pub struct NamedValue {
    /// Name used to refer to the value (`$env.NAME` in templates, a config key for plugins).
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    )]
    pub name: String,
    /// A literal value. Do not put credentials here: use `valueFrom.secretKeyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub value: Option<String>,
    /// Read the value from a Secret instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

/// Condition types written by the operator.
pub mod condition {
    /// The object is served by every ready worker of its pool, with no error.
    pub const READY: &str = "Ready";
    /// The object was validated and its references resolved.
    pub const ACCEPTED: &str = "Accepted";
    /// A Bridge's destinations all take deliveries (none paused by a 410).
    pub const DESTINATIONS_HEALTHY: &str = "DestinationsHealthy";
}

/// Reasons used in conditions and item errors. Stable strings: users match on them in
/// alerts. They live in `causeway-config`, with the item errors that carry them.
pub use causeway_config::reason;

/// Label a Secret must carry (value `"true"`) before the operator uses it for a Bridge or
/// Plugin in a cluster. The operator reads Secrets with its own rights, so without this
/// opt-in a user who may create Bridges but not read Secrets could send any Secret of the
/// namespace out through `$env` (a confused deputy). Local mode does not need it.
pub const SECRET_OPT_IN_LABEL: &str = "causeway.dev/use";

/// True when a Secret's labels opt it in ([`SECRET_OPT_IN_LABEL`] = `"true"`).
pub fn secret_opted_in(labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(SECRET_OPT_IN_LABEL))
        .is_some_and(|v| v == "true")
}

/// Build a condition. `lastTransitionTime` is carried over from `previous` when the
/// status did not change, so that writing the same state twice changes nothing.
pub fn make_condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
    previous: &[Condition],
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.into(),
        observed_generation,
        last_transition_time,
    }
}

/// Replace or insert `cond` in `conditions`, keyed by type.
pub fn set_condition(conditions: &mut Vec<Condition>, cond: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => *existing = cond,
        None => conditions.push(cond),
    }
}

/// True when `conditions` holds `type_` with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}
