//! `bench run [--only 1,2,…] [--out FILE]`: run the scenarios and write the report.
//! `BENCH_QUICK=1` for fewer, shorter runs. See `docs/benchmarks.md`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Measure what production runs: no backtrace capture on every error value (a shell
    // with RUST_BACKTRACE=1 makes each error the plugin host creates walk the stack).
    // The systems under test inherit this environment.
    // SAFETY: first thing in main, before any thread exists.
    unsafe {
        std::env::remove_var("RUST_BACKTRACE");
        std::env::remove_var("RUST_LIB_BACKTRACE");
    }
    causeway_bench::run_cli(std::env::args().skip(1).collect())
}
