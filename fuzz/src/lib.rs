//! Fuzz targets for every parser that sees untrusted input, and a runner.
//!
//! The toolchain is stable Rust, so there is no `cargo fuzz` (libFuzzer needs nightly's
//! sanitizer flags). Instead each target generates structured random inputs (grammars for
//! templates and CEL, mutated real manifests and configurations, near-valid signature
//! headers), runs them under `catch_unwind`, and checks properties besides "no panic":
//! a rendered url keeps the host its template fixed, a request that verifies passes the
//! pre-body check, a config survives a JSON round trip. See `docs/fuzzing.md`.
//!
//! Every input is a self-contained text (JSON, YAML or raw bytes), so a crash is saved as
//! a file and replayed with `fuzz --target <name> --replay <file>`.

pub mod rng;
pub mod runner;
pub mod targets;

pub use rng::Rng;
pub use runner::{Options, Report, cli, run, run_targets};

/// One parser under test.
pub trait Target: Send + Sync {
    fn name(&self) -> &'static str;
    /// One random input.
    fn generate(&self, rng: &mut Rng) -> Vec<u8>;
    /// Run one input. Panics on a bug (a panic, or a broken property). Returns a note when
    /// the code under test contained a panic of a dependency (caught and failed closed):
    /// not a crash, but reported.
    fn execute(&self, input: &[u8]) -> Option<String>;
}

/// Every target, in report order.
pub fn all_targets() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(targets::templates::Templates),
        Box::new(targets::filters::Filters),
        Box::new(targets::signatures::Signatures::new()),
        Box::new(targets::manifests::Manifests),
        Box::new(targets::worker_config::WorkerConfigTarget::new()),
    ]
}
