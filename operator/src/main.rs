//! `causeway-operator`: parse the flags, run the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = causeway_operator::cli::Args::parse();
    match causeway_operator::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
