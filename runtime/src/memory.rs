//! Giving freed memory back to the system after a configuration swap.
//!
//! A swap compiles every bridge again (CEL programs, templates, verifiers: many small
//! allocations, on the applier's thread and the filter compiler's threads) while the old
//! ones still run, then frees the old set. glibc's allocator keeps what was freed in its
//! arenas, and the next swap's allocations land in other arenas or above a fragment that
//! is still used, so without a trim the worker's RSS climbed by 10–40 MiB with every swap
//! of 1,000 bridges while its live heap stayed flat (heaptrack; `docs/worker.md`,
//! "Memory across swaps").

/// Return the free memory of every malloc arena to the system (`malloc_trim(0)`: whole
/// free pages inside the heaps are released too, not only the top). A few milliseconds for
/// a heap of 100 MiB; called once per configuration dropped, never per request. A no-op
/// where the allocator is not glibc's.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only walks the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}
