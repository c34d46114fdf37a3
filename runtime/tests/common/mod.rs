//! Helpers for the store tests: a throwaway PostgreSQL ([`postgres`]). The tests that run
//! the `causeway` binary, and their helpers, are in `cli/tests/` (they share this
//! `postgres` module).
#![allow(dead_code)]

pub mod postgres;

/// A free loopback port (the port may be taken again before it is used; good enough here).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
