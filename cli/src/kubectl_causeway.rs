//! `kubectl-causeway`, the kubectl plugin: `kubectl causeway events list`, … (see
//! `causeway::kubectl`).

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = causeway::kubectl::Args::parse();
    let mut out = std::io::stdout();
    match causeway::kubectl::run(args, &mut out).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
