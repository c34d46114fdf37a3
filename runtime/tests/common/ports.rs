//! Loopback ports for the processes the tests start (one file, included by the test crates
//! of `runtime` and `cli`, and by `bench` for the processes it measures).
//!
//! A port from `bind(127.0.0.1:0)` comes from the kernel's ephemeral range, and once the
//! probe's listener is closed the kernel may hand the same port to an outgoing connection
//! (a test's client to Postgres, the worker's own calls) as its source port before the
//! process under test binds it: the worker then fails with "Address already in use". Ports
//! below the ephemeral range are never given out as source ports, so they are picked from
//! there, from an offset that differs per test process, and never twice in one process.

use std::net::TcpListener;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const FIRST: u32 = 10_000;

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_start() -> u32 {
    static START: OnceLock<u32> = OnceLock::new();
    *START.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .filter(|&p: &u32| p > FIRST + 1_000)
            .unwrap_or(32_768)
    })
}

/// A loopback port that is free now, below the ephemeral range, not handed out before by
/// this process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = ephemeral_start() - FIRST;
    // Test binaries run one after another but may overlap with other suites on the
    // machine: start each process somewhere else in the range.
    let offset = (std::process::id().wrapping_mul(7_919)) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (offset + n) % span;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", ephemeral_start());
}
