//! Where a worker's configuration comes from. Every source publishes whole, rendered
//! [`WorkerConfig`]s on a `watch` channel; the worker applies each one atomically. A source
//! that fails to load keeps what it published last and logs one error per distinct
//! failure.
//!
//! Sources: [`FileSource`] (a rendered `WorkerConfig` file, `causeway worker --config`)
//! here; the ones that need Kubernetes types live in the `causeway` binary and implement
//! the same trait: manifest files and directories (`causeway up -f`), rendered with the
//! operator's renderer, and the pool's config Secret (`causeway worker --pool`).

pub mod active;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_config::{ItemError as Problem, WorkerConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One configuration as a source produced it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Arc<WorkerConfig>,
    /// Objects left out of the config, and why.
    pub problems: Vec<Problem>,
}

pub type Published = watch::Sender<Option<Arc<Loaded>>>;

/// Why a configuration could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// A source's own failure, such as manifests that do not load.
    #[error(transparent)]
    Source(Arc<dyn std::error::Error + Send + Sync>),
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: Arc<std::io::Error>,
    },
    #[error("{path}: not a WorkerConfig: {source}")]
    Parse {
        path: String,
        source: Arc<serde_yaml::Error>,
    },
    /// A source that has not read its first configuration yet.
    #[error("{what}: not read yet")]
    NotLoaded { what: String },
}

/// A source of configurations.
pub trait ConfigSource: Send + 'static {
    /// Load once, synchronously (startup, and `causeway render`).
    fn load(&mut self) -> Result<Loaded, ConfigError>;
    /// Publish every change until `stop` is cancelled. The first load has already been
    /// published by the caller.
    fn watch(
        self: Box<Self>,
        out: Published,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Whether the configuration comes from its owner's own files (local mode): only then
    /// may plugins load `file` sources. A cluster source says no.
    fn is_local(&self) -> bool {
        true
    }
}

/// How often file sources look at modification times.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A fingerprint of a set of files: path, length, modification time.
fn fingerprint(files: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok();
            (
                f.clone(),
                m.as_ref().map(|m| m.len()).unwrap_or(0),
                m.and_then(|m| m.modified().ok()),
            )
        })
        .collect()
}

/// Poll `files()` and call `load` when their fingerprint changes; publish what changes the
/// version; log each distinct error once. The `watch` of every file-based source.
pub async fn poll_files<S: ConfigSource>(
    mut src: S,
    files: impl Fn(&S) -> Vec<PathBuf> + Send,
    out: Published,
    stop: CancellationToken,
) {
    let mut seen = fingerprint(&files(&src));
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        let now = fingerprint(&files(&src));
        if now == seen {
            continue;
        }
        seen = now;
        match src.load() {
            Ok(loaded) => {
                last_error = None;
                let changed = out
                    .borrow()
                    .as_ref()
                    .is_none_or(|cur| cur.config.version != loaded.config.version);
                if changed {
                    out.send_replace(Some(Arc::new(loaded)));
                }
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %text, "configuration not reloaded; the previous one keeps running");
                    last_error = Some(text);
                }
            }
        }
    }
}

/// A rendered `WorkerConfig` in a file (JSON or YAML), as the operator writes it.
pub struct FileSource {
    pub path: PathBuf,
}

impl ConfigSource for FileSource {
    fn load(&mut self) -> Result<Loaded, ConfigError> {
        let path = self.path.display().to_string();
        let text = std::fs::read_to_string(&self.path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            source: Arc::new(e),
        })?;
        // YAML is a superset of JSON, so one parser reads both.
        let config: WorkerConfig = serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            source: Arc::new(e),
        })?;
        Ok(Loaded {
            config: Arc::new(config),
            problems: Vec::new(),
        })
    }

    fn watch(
        self: Box<Self>,
        out: Published,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(poll_files(
            *self,
            |s: &FileSource| vec![s.path.clone()],
            out,
            stop,
        ))
    }
}
