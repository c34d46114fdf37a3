//! Plugin variables, read through `wasi:config/store`.
//!
//! In a `Plugin` manifest, `spec.variables` sets them (a value or a `secretKeyRef`).
//! Under `wasmtime serve`, pass `-S config -S config-var=KEY=VALUE`.

use crate::bindings::wasi::config::store;

/// The value of variable `key`, or `None` when it is not set.
///
/// A host error (for example a secret that could not be read) is logged to stderr and
/// treated as "not set", so a plugin can fall back to its default.
pub fn get(key: &str) -> Option<String> {
    match store::get(key) {
        Ok(value) => value,
        Err(err) => {
            eprintln!(
                "config: reading variable {key:?} failed: {}",
                describe(&err)
            );
            None
        }
    }
}

fn describe(err: &store::Error) -> &str {
    match err {
        store::Error::Upstream(msg) | store::Error::Io(msg) => msg,
    }
}
