//! What a Causeway worker is told and what it answers, as plain serde types.
//!
//! - [`WorkerConfig`] and everything in it: the configuration the operator renders per pool
//!   (and local mode builds from manifest files) and a worker runs.
//! - [`ObjectKey`] (`namespace/name`) and [`Kind`]: how an item is named everywhere.
//! - [`ItemError`]: a problem with one item, from the renderer or the worker.
//! - [`duration`]: the duration (`1h30m`) and quantity (`64Mi`) grammar users write.
//! - [`asyncapi`]: the AsyncAPI document of a configuration's event APIs (pure rendering,
//!   shared by the worker, `causeway asyncapi` and the operator).
//! - [`packing`]: how a config is stored in its pool's Secret (plain or zstd-compressed
//!   JSON) and read back.
//! - [`WorkerReport`]: the body of a worker's `GET /api/v1/config`, which the operator
//!   folds into status.
//!
//! This crate has no Kubernetes dependency, so that the data plane (`causeway-pipeline`,
//! `causeway-plugins`) reads its configuration without compiling kube, k8s-openapi or
//! schemars. `causeway-crds` renders the custom resources into these types and re-exports
//! them from `causeway_crds::config`. The feature `schema` derives `schemars::JsonSchema`
//! for the enums the CRDs embed; only `causeway-crds` enables it.

pub mod asyncapi;
mod bridge;
pub mod duration;
mod key;
pub mod nats;
pub mod packing;
mod plugin;
pub mod reason;
mod report;
mod secret;
mod stream;
mod websub;
mod worker;

pub use bridge::{
    AuthConfig, BackoffPolicy, BridgeConfig, CircuitBreakerConfig, CloudEventsConfig,
    CloudEventsMode, DestinationConfig, DestinationTls, EnvValue, FailureRateConfig, HmacAlgorithm,
    HmacPreset, JwtAlgorithm, MissingPolicy, NotificationEvent, NotificationsConfig,
    OAuth2ClientAuth, OAuth2Config, PluginNotReadyPolicy, RateLimitConfig, RetryConfig,
    SignatureEncoding, StepConfig,
};
pub use key::{Kind, KindError, ObjectKey, ObjectKeyError};
pub use nats::{NatsAuth, NatsConfig, NatsUrl};
pub use plugin::{PluginConfig, PluginRoute, RegistryCredentials, SourceConfig, WhenBusy};
pub use report::{
    BridgeReport, DestinationReport, ItemError, PluginReport, StoreReport, WorkerReport,
    postgres_location,
};
pub use secret::SecretValue;
pub use stream::StreamConfig;
pub use websub::SubscriptionsConfig;
pub use worker::{
    ADMIN_PORT, CONFIG_KEY, CONFIG_VERSION_ANNOTATION, INGRESS_PORT, INTERNAL_PORT, MetricsConfig,
    RetentionConfig, WorkerConfig, config_secret_name,
};
