//! The Causeway worker (`causeway worker`), local mode (`causeway up`) and admin commands.
//!
//! Stages, one folder each: [`ingress`] → [`store`] → [`delivery`], with [`admin`] beside
//! them; [`config`] sources feed whole configurations; [`bridge`] wraps the compiled
//! pipeline and [`plugins`] the Wasm host. See `docs/worker.md`.
//!
//! This library has no Kubernetes dependency. What needs the API types (rendering
//! manifests in local mode, watching a pool's config Secret) comes in through [`Sources`],
//! which the `causeway` binary (package `causeway`, `cli/`) supplies to [`run`].

pub mod admin;
/// AsyncAPI documents: rendered in `causeway-config`, which the operator shares.
pub use causeway_config::asyncapi;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod console;
pub mod delivery;
pub mod health;
pub mod ingress;
pub mod limits;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod netguard;
pub mod plugins;
pub mod shared;
pub mod steps;
pub mod store;
pub mod streams;
pub mod sync;
#[cfg(test)]
mod testkit;
pub mod traces;
pub mod websub;
pub mod worker;

use std::error::Error;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::config::{ConfigSource, FileSource};
use crate::worker::Options;

/// How long `worker --pool` waits at startup for a valid config in the pool's Secret.
const POOL_CONFIG_WAIT: Duration = Duration::from_secs(120);

/// The configuration sources that need Kubernetes types, supplied by the binary.
pub trait Sources {
    /// `causeway up -f` and `causeway render`: manifest files and directories, rendered
    /// into a `WorkerConfig` the way the operator renders a pool's.
    fn manifests(&self, paths: Vec<PathBuf>) -> Box<dyn ConfigSource>;

    /// `causeway worker --pool <namespace>/<name>`: the pool's config Secret, once it holds
    /// a valid config (waiting up to `wait` for one).
    fn pool(
        &self,
        pool: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<Box<dyn ConfigSource>, Box<dyn Error + Send + Sync>>>;
}

/// Parse the command line and run it, with `sources` for manifests and the cluster.
pub fn run(sources: impl Sources) -> ExitCode {
    let cli = Cli::parse();
    // reqwest is built without a default crypto provider; install ring once, first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = EnvFilter::try_from_env("CAUSEWAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("causeway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli, &sources)) {
        Ok(out) => {
            if !out.is_empty() {
                print!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("causeway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli, sources: &impl Sources) -> Result<String, Box<dyn Error>> {
    match cli.command {
        Command::Up {
            files,
            data_dir,
            serve,
        } => {
            let opts = Options {
                data_dir,
                listen: serve.listen,
                admin: serve.admin,
                internal: None,
                limits: serve.limits(),
                print_urls: true,
                postgres: serve.postgres(),
            };
            worker::serve(opts, sources.manifests(files)).await?;
            Ok(String::new())
        }
        Command::Worker {
            config,
            pool,
            data_dir,
            internal,
            serve,
        } => {
            let opts = Options {
                data_dir,
                listen: serve.listen,
                admin: serve.admin,
                internal,
                limits: serve.limits(),
                print_urls: false,
                postgres: serve.postgres(),
            };
            let source: Box<dyn ConfigSource> = match (config, pool) {
                (Some(path), _) => Box::new(FileSource { path }),
                (None, Some(pool)) => sources
                    .pool(&pool, POOL_CONFIG_WAIT)
                    .await
                    .map_err(|e| e as Box<dyn Error>)?,
                (None, None) => return Err("worker: --config or --pool is required".into()),
            };
            worker::serve(opts, source).await?;
            Ok(String::new())
        }
        Command::Asyncapi {
            files,
            namespace,
            server,
            yaml,
        } => {
            let loaded = sources.manifests(files).load()?;
            // A bridge that does not render is not described: say so, as `render` does.
            for p in &loaded.problems {
                eprintln!(
                    "{:?} {}/{}: {}: {} (left out)",
                    p.kind, p.namespace, p.name, p.reason, p.message
                );
            }
            let opts = asyncapi::Options {
                ingress_host: server,
                namespace,
                ..asyncapi::Options::default()
            };
            let doc = asyncapi::document(&loaded.config, &opts);
            Ok(if yaml {
                serde_yaml::to_string(&doc)?
            } else {
                format!("{}\n", serde_json::to_string_pretty(&doc)?)
            })
        }
        Command::Render { files, strict } => {
            let loaded = sources.manifests(files).load()?;
            for p in &loaded.problems {
                eprintln!(
                    "{:?} {}/{}: {}: {}",
                    p.kind, p.namespace, p.name, p.reason, p.message
                );
            }
            if strict && !loaded.problems.is_empty() {
                return Err(format!("{} problem(s)", loaded.problems.len()).into());
            }
            Ok(format!(
                "{}\n",
                serde_json::to_string_pretty(&*loaded.config)?
            ))
        }
        Command::Events { admin, action } => Ok(cli::events(&admin, &action).await?),
        Command::Bridges { admin, action } => Ok(cli::bridges(&admin, &action).await?),
        Command::Subscriptions { admin, action } => Ok(cli::subscriptions(&admin, &action).await?),
        Command::Send(args) => Ok(cli::send::run(&args).await?),
        Command::Store { action } => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            match action {
                cli::StoreAction::Export { store } => {
                    let store = store.open().await?;
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::new(stdout.lock());
                    let moved = store::transfer::export(store.as_ref(), &mut out).await?;
                    // stdout carries the export.
                    eprintln!("causeway: exported {moved}");
                    Ok(String::new())
                }
                cli::StoreAction::Import { store } => {
                    let store = store.open().await?;
                    let stdin = std::io::stdin();
                    let mut input = stdin.lock();
                    let moved = store::transfer::import(store.as_ref(), &mut input).await?;
                    Ok(format!("imported {moved}\n"))
                }
            }
        }
    }
}
