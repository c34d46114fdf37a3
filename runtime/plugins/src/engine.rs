//! The one wasmtime `Engine`: async, epoch interruption, pooling allocator when the
//! machine allows it, and the ticker that advances the epoch while a guest may run.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::HostError;

/// How often the epoch advances; a spinning guest is interrupted within one tick of its
/// deadline, and yields to other tasks once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Size of the instance pool: component instances that may exist at once in one worker.
pub(crate) const POOL_COMPONENT_INSTANCES: u32 = 1000;

/// Whether to use wasmtime's pooling instance allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoolingMode {
    /// Pooling when the pool can be reserved (virtual memory limits allowing), else on-demand.
    #[default]
    Auto,
    /// Always allocate on demand (mmap per instance).
    Off,
}

/// The allocator the engine ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocatorKind {
    Pooling,
    OnDemand,
}

impl AllocatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocatorKind::Pooling => "pooling",
            AllocatorKind::OnDemand => "ondemand",
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Guests are wasi:http/proxy components called one request at a time (`call_async`);
    // nothing uses the component-model concurrency (`run_concurrent`). With it on, every
    // store kept an idle worker fiber that its drop resumed with a fresh error value,
    // which captures a backtrace on every call when `RUST_BACKTRACE` is set.
    config.concurrency_support(false);
    // Compilation happens once per digest at apply time; use both cores for it.
    config.parallel_compilation(true);
    config
}

/// See [`pooling_config`].
const KEEP_RESIDENT: usize = 256 << 10;

fn pooling_config() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_COMPONENT_INSTANCES);
    // A wasm32-wasip2 component is usually 3 core instances (main module, shim,
    // fixups) with one memory and a table each; JavaScript components a few more.
    pool.total_core_instances(POOL_COMPONENT_INSTANCES * 4);
    // Each memory slot reserves 4 GiB + guards of address space (not RAM), so the pool
    // holds one memory per component instance: ~4 TiB of the 128 TiB user space.
    pool.total_memories(POOL_COMPONENT_INSTANCES);
    pool.total_tables(POOL_COMPONENT_INSTANCES * 4);
    pool.total_stacks(POOL_COMPONENT_INSTANCES);
    pool.max_memories_per_module(2);
    pool.max_tables_per_module(4);
    // How much of a reused memory slot is reset with memset; the rest is given back to
    // the kernel (`madvise`, a TLB flush on every core) and faults in again on the next
    // call. With `PAGEMAP_SCAN` (Linux 6.7+) wasmtime finds the pages the call touched,
    // wherever they are, and resets only those, up to this much: a Rust guest's stack sits
    // below its data at 1 MiB, so without the scan the lowest bytes kept resident are ones
    // it never touches. Without the scan, 256 KiB is memset from the bottom each call:
    // `bench host-calls 20000`, five alternating rounds, p50 140 µs at 1 MiB, 104 at
    // 256 KiB, 101 at 64 KiB, 104 with none (bench/notes.md).
    pool.pagemap_scan(Enabled::Auto);
    pool.linear_memory_keep_resident(KEEP_RESIDENT);
    pool.table_keep_resident(1 << 16);
    pool
}

/// Builds the engine: pooling first (unless `Off`), on-demand when the pool cannot be
/// created.
pub(crate) fn build_engine(mode: PoolingMode) -> Result<(Engine, AllocatorKind), HostError> {
    if mode == PoolingMode::Auto {
        let mut config = base_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config()));
        match Engine::new(&config) {
            Ok(engine) => {
                tracing::info!(
                    allocator = "pooling",
                    instances = POOL_COMPONENT_INSTANCES,
                    "wasmtime engine ready"
                );
                return Ok((engine, AllocatorKind::Pooling));
            }
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable, falling back to on-demand allocation");
            }
        }
    }
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let engine = Engine::new(&config).map_err(|e| HostError::Engine(e.into()))?;
    tracing::info!(allocator = "ondemand", "wasmtime engine ready");
    Ok((engine, AllocatorKind::OnDemand))
}

/// How often a parked ticker looks whether its engine is gone.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The thread that advances the engine's epoch every [`EPOCH_TICK`] while a store exists
/// (a guest may run), and parks otherwise: an idle worker, or one without plugins, is not
/// woken 100 times a second for nothing (each wake-up cost ~50 µs of CPU on a 2-core VM,
/// about 5 ms per second, all of an idle worker's CPU). It stops by itself once the engine
/// is dropped.
pub(crate) struct Ticker {
    shared: Arc<TickerShared>,
    thread: std::thread::Thread,
}

#[derive(Default)]
struct TickerShared {
    /// Stores alive: [`Ticking`] guards.
    active: AtomicUsize,
    /// Epoch increments so far.
    ticks: AtomicU64,
    /// Times the thread went to park (tests wait for it).
    parks: AtomicU64,
}

/// Keeps the epoch advancing while it lives: held by every store's state.
pub(crate) struct Ticking(Arc<Ticker>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Ticker {
    pub(crate) fn start(engine: &Engine) -> Result<Arc<Ticker>, HostError> {
        let weak = engine.weak();
        let shared = Arc::new(TickerShared::default());
        let state = shared.clone();
        let handle = std::thread::Builder::new()
            .name("causeway-epoch".into())
            .spawn(move || {
                loop {
                    if state.active.load(Ordering::Acquire) == 0 {
                        // `ticking` unparks: a token left before this park returns at once.
                        state.parks.fetch_add(1, Ordering::Release);
                        std::thread::park_timeout(IDLE_CHECK);
                        if weak.upgrade().is_none() {
                            return;
                        }
                        continue;
                    }
                    // A tick a whole EPOCH_TICK after the first store appeared, not at
                    // once: a call that starts the ticker is not made to yield at its start.
                    std::thread::sleep(EPOCH_TICK);
                    let Some(engine) = weak.upgrade() else {
                        return;
                    };
                    engine.increment_epoch();
                    state.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(HostError::EpochTicker)?;
        Ok(Arc::new(Ticker {
            shared,
            thread: handle.thread().clone(),
        }))
    }

    /// A guard under which the epoch advances.
    pub(crate) fn ticking(self: &Arc<Self>) -> Ticking {
        if self.shared.active.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Ticking(self.clone())
    }

    /// Epoch increments so far.
    #[cfg(test)]
    pub(crate) fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // The engine goes with it (they live in the same host): let the thread see that now.
        self.thread.unpark();
    }
}

/// A short stable hex string for the engine's precompile compatibility: part of each
/// `.cwasm` file name, so a wasmtime upgrade or a config change never loads an
/// incompatible artifact.
pub(crate) fn compat_hash(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (bounded) until the ticker has parked more than `after` times.
    fn parked_after(ticker: &Ticker, after: u64) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while ticker.shared.parks.load(Ordering::Acquire) <= after {
            assert!(std::time::Instant::now() < until, "the ticker never parked");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_epoch_advances_only_while_a_store_may_run() {
        let engine = Engine::new(&base_config()).expect("engine");
        let ticker = Ticker::start(&engine).expect("ticker");
        // Nothing holds it: parked, and no tick while parked.
        parked_after(&ticker, 0);
        let before = ticker.ticks();
        std::thread::sleep(EPOCH_TICK * 5);
        assert_eq!(ticker.ticks(), before, "an idle ticker ticked");

        // A guard (a store's state holds one): the epoch advances.
        let parks = ticker.shared.parks.load(Ordering::Acquire);
        let guard = ticker.ticking();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while ticker.ticks() < before + 2 {
            assert!(std::time::Instant::now() < until, "no tick under a guard");
            std::thread::sleep(EPOCH_TICK);
        }
        // Two guards, one dropped: still ticking.
        let second = ticker.ticking();
        drop(guard);
        let now = ticker.ticks();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while ticker.ticks() < now + 2 {
            assert!(
                std::time::Instant::now() < until,
                "no tick under the second guard"
            );
            std::thread::sleep(EPOCH_TICK);
        }

        // The last guard gone: it parks again and stops ticking.
        drop(second);
        parked_after(&ticker, parks);
        let stopped = ticker.ticks();
        std::thread::sleep(EPOCH_TICK * 5);
        assert_eq!(ticker.ticks(), stopped, "ticked with no guard left");
    }

    #[test]
    fn the_ticker_thread_ends_with_its_engine() {
        let engine = Engine::new(&base_config()).expect("engine");
        let ticker = Ticker::start(&engine).expect("ticker");
        let guard = ticker.ticking();
        let weak = engine.weak();
        drop(engine);
        // Under a guard the thread holds the engine only for an increment; it finds it
        // gone at its next tick and ends.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while weak.upgrade().is_some() {
            assert!(std::time::Instant::now() < until, "the engine stayed alive");
            std::thread::sleep(EPOCH_TICK);
        }
        let ticks = ticker.ticks();
        std::thread::sleep(EPOCH_TICK * 5);
        assert_eq!(ticker.ticks(), ticks, "ticked after its engine was dropped");
        drop(guard);
    }
}
