//! `fuzz [--seconds N] [--target NAME]... [--seed S] [--crash-dir DIR] [--replay FILE]`
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(causeway_fuzz::cli(&args));
}
