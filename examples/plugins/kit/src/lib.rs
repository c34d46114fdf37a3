//! Helpers shared by the Causeway example plugins.
//!
//! A Causeway plugin is an ordinary `wasi:http/proxy` component: the `wstd` crate gives
//! it the HTTP side (`#[wstd::http_server]`, `wstd::http::Client`). The host adds two
//! interfaces that wstd has no API for, and this crate wraps them:
//!
//! * [`kv`]: `wasi:keyvalue/store@0.2.0-draft`, the plugin's own persistent bucket;
//! * [`config`]: `wasi:config/store@0.2.0-rc.1`, the plugin's `variables`.
//!
//! It also holds the few helpers every example needs: JSON replies ([`reply`]),
//! the Causeway request headers ([`headers`]), RFC 3339 timestamps ([`time`]) and
//! percent-encoding ([`url`]).
//!
//! Copying one plugin out of this repository? Copy this crate and `../wit` with it, or
//! inline the parts you use: each module is short and has no other dependency.

/// Bindings generated from `../wit/world.wit` (the `causeway:plugin/extras` world).
///
/// Only the functions a plugin really calls end up as imports of its component, so
/// depending on this crate does not add keyvalue or config imports to a plugin that
/// does not use them.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "causeway:plugin/extras",
        // Generate the wasi:* packages here instead of expecting them from another crate.
        generate_all,
    });
}

pub mod config;
pub mod headers;
pub mod kv;
pub mod reply;
pub mod time;
pub mod url;
