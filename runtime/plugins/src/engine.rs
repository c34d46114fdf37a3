//! The one wasmtime `Engine`: async, epoch interruption, pooling allocator when the
//! machine allows it, and the ticker that advances the epoch.

use std::hash::{Hash, Hasher};
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

/// Starts the thread that advances the epoch every [`EPOCH_TICK`]. It stops by itself
/// once the engine is dropped.
pub(crate) fn start_ticker(engine: &Engine) -> Result<(), HostError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("causeway-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(|_| ())
        .map_err(HostError::EpochTicker)
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
