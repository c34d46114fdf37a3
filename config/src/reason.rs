//! Reasons used in item errors and conditions. Stable strings: users match on them in
//! alerts.

pub const READY: &str = "Ready";
pub const PENDING: &str = "Pending";
pub const PLUGIN_NOT_FOUND: &str = "PluginNotFound";
pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
pub const POOL_NOT_FOUND: &str = "PoolNotFound";
pub const PATH_CONFLICT: &str = "PathConflict";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const LOAD_ERROR: &str = "LoadError";
pub const DIGEST_MISMATCH: &str = "DigestMismatch";
pub const FETCH_FAILED: &str = "FetchFailed";
pub const SUSPENDED: &str = "Suspended";
/// A Bridge is being deleted and its queued jobs drain (new events get 410 Gone).
pub const DRAINING: &str = "Draining";
/// A plugin a Bridge calls (a step, an `http://<plugin>.internal` destination) is not
/// loaded on a worker of its pool.
pub const PLUGIN_NOT_READY: &str = "PluginNotReady";
/// A Bridge destination is paused (410 Gone) on a worker of its pool.
pub const DESTINATIONS_PAUSED: &str = "DestinationsPaused";
/// A Bridge destination was disabled by its circuit breaker (failing for `disableAfter`).
pub const DESTINATIONS_DISABLED: &str = "DestinationsDisabled";
/// A Bridge destination's circuit breaker is open: its jobs wait for the probe.
pub const CIRCUIT_OPEN: &str = "CircuitOpen";
/// A Secret the object names lacks the `causeway.dev/use: "true"` opt-in label.
pub const SECRET_NOT_OPTED_IN: &str = "SecretNotOptedIn";
/// The ServiceAccount a pool names lacks the `causeway.dev/pool: <pool>` opt-in label.
pub const SERVICE_ACCOUNT_NOT_OPTED_IN: &str = "ServiceAccountNotOptedIn";
/// A pool's workers report that their store cannot be written (the database is
/// unreachable, or the volume is full).
pub const STORE_UNAVAILABLE: &str = "StoreUnavailable";
