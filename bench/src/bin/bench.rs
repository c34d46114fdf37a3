//! `bench run [--only 1,2,…] [--out FILE]`: run the scenarios and write the report.
//! `BENCH_QUICK=1` for fewer, shorter runs. See `docs/benchmarks.md`.

use std::process::ExitCode;

fn main() -> ExitCode {
    causeway_bench::run_cli(std::env::args().skip(1).collect())
}
