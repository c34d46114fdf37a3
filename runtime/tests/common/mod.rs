//! Helpers for the store tests: a throwaway PostgreSQL ([`postgres`]). The tests that run
//! the `causeway` binary, and their helpers, are in `cli/tests/` (they share this
//! `postgres` module).
#![allow(dead_code)]

mod ports;
pub mod postgres;

pub use ports::free_port;
