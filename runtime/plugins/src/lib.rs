//! The Wasm plugin host: `wasi:http/proxy` components on wasmtime.
//!
//! * one [`wasmtime::Engine`] with epoch interruption and (when the machine allows it) the
//!   pooling instance allocator;
//! * components compiled once per sha256 digest and kept on disk as `.cwasm`;
//!   an `InstancePre` per digest, a fresh `Store` per call;
//! * limits per call: memory, wall-clock deadline, concurrency (queue or reject);
//! * outbound HTTP only through the `send_request` hook: allow-list, SSRF guard, and
//!   `http://<plugin>.internal` chaining (in-process or to another pool);
//! * `wasi:config/store` (variables) and `wasi:keyvalue` over the worker's [`KvStore`].
//!
//! Modules depend one way: `host` (the registry of loaded plugins and the router: routes,
//! peer pools, tokens) → `call` (one call on a fresh store; it reaches the host only
//! through the `CallHost` trait the host implements) → `outbound`, `kv`, `log`, `metrics`.
//!
//! See `docs/plugins-host.md` for the design and the metrics.

mod cache;
mod call;
mod engine;
mod error;
mod host;
mod kv;
mod log;
mod metrics;
pub mod outbound;
mod plugin_ref;
mod source;

pub use cache::{normalize_digest, sha256_hex};
pub use call::{HEADER_CALLER, HEADER_DEPTH, HEADER_ERROR, HEADER_TOKEN, MAX_RESPONSE_BYTES};
pub use engine::{AllocatorKind, EPOCH_TICK, PoolingMode};
pub use error::{CallError, HostError, LoadError};
pub use host::{
    ApplyReport, DEFAULT_REMOTE_TIMEOUT, HostOptions, INTERNAL_PREFIX, MAX_CHAIN_DEPTH, PluginHost,
    PluginState, UNKNOWN_PLUGIN, chain_target, chain_url, error_response, internal_url,
    parse_internal_path,
};
pub use kv::{FileKv, KvStore, MAX_VALUE_BYTES, MemoryKv};
pub use plugin_ref::PluginRef;
pub use source::{MAX_COMPONENT_BYTES, WASM_MEDIA_TYPES, install_crypto_provider, oci_client};
