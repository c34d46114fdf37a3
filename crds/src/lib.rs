//! The `causeway.dev/v1alpha1` API: `Bridge`, `Plugin` and `WorkerPool`, their validation,
//! the manifest loader, and [`config::render`], the one pure function that turns them into a
//! worker's configuration.
//!
//! This crate holds types, defaults, validation and pure rendering only. Kubernetes calls,
//! HTTP and Wasm live in the runtime and operator crates.

// kube's `printcolumn(name = .., type_ = ..)` lists repeat `type_ = "string"`, which
// clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod bridge;
pub mod common;
pub mod config;
pub mod crd;
pub mod manifest;
pub mod plugin;
pub mod pool;
pub mod stream;
pub mod validate;
pub mod websub;

/// The duration and quantity grammar lives with the config types; re-exported here for the
/// CRD schemas and the validators.
pub use causeway_config::duration;

pub use bridge::{Bridge, BridgeSpec, BridgeStatus};
pub use config::{Inventory, RenderContext, Rendered, Scope, WorkerConfig, render};
pub use plugin::{Plugin, PluginSpec, PluginStatus};
pub use pool::{WorkerPool, WorkerPoolSpec, WorkerPoolStatus};
