//! Giving freed memory back to the system.
//!
//! A burst of changes (1,000 Bridges applied at once, or a namespace of them deleted)
//! allocates on every runtime thread: watch events, renders, request and response buffers.
//! glibc keeps what is freed in per-thread arenas, so without a trim the operator's RSS
//! stayed at the high-water mark of its largest burst, and crept up from burst to burst as
//! each landed in other arenas, while its live heap went back down (heaptrack;
//! `docs/operator.md`, "Memory at scale"). The same fix as the worker's
//! (`runtime/src/memory.rs`), on a timer: the operator frees in bursts that it does not see
//! end (an idle connection closes 90 s after its last request).

use std::time::Duration;

/// How often [`trim_periodically`] trims.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(30);

/// Return the free memory of every malloc arena to the system (`malloc_trim(0)`: free
/// pages inside the heaps too, not only the top). A few milliseconds for a heap of a few
/// hundred MiB. A no-op where the allocator is not glibc's.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only walks the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trim every `interval`, for as long as the runtime runs.
pub async fn trim_periodically(interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        tokio::task::spawn_blocking(release_freed);
    }
}
