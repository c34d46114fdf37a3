//! The Wasm plugin host. See the crate description.
