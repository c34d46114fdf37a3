//! Local mode's configuration: manifest files and directories, rendered with the same
//! function the operator renders a pool's configuration with (`Scope::All`: every object
//! in every namespace, one process).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use causeway_crds::manifest::{load_paths, manifest_files};
use causeway_crds::{RenderContext, Scope, render};
use causeway_runtime::config::{ConfigError, ConfigSource, Loaded, Published, poll_files};
use tokio_util::sync::CancellationToken;

/// Manifest files and directories (local mode), rendered with `Scope::All`.
pub struct ManifestSource {
    pub paths: Vec<PathBuf>,
}

impl ManifestSource {
    fn files(&self) -> Vec<PathBuf> {
        let mut files = manifest_files(&self.paths).unwrap_or_default();
        // Directories themselves: a new or deleted file changes their mtime.
        files.extend(self.paths.iter().filter(|p| p.is_dir()).cloned());
        files
    }
}

impl ConfigSource for ManifestSource {
    fn load(&mut self) -> Result<Loaded, ConfigError> {
        let inv = load_paths(&self.paths).map_err(|e| ConfigError::Source(Arc::new(e)))?;
        let rendered = render(&inv, &Scope::All, &RenderContext::default());
        Ok(Loaded {
            config: Arc::new(rendered.config),
            problems: rendered.problems,
        })
    }

    fn watch(
        self: Box<Self>,
        out: Published,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(poll_files(*self, |s: &ManifestSource| s.files(), out, stop))
    }
}
