//! The `causeway` binary's Kubernetes side. The worker itself is `causeway-runtime`, a
//! library without Kubernetes dependencies; this crate supplies the two configuration
//! sources that need the API types ([`causeway_runtime::Sources`]):
//!
//! - [`manifests`]: `causeway up -f` and `causeway render` load Bridge, Plugin and
//!   WorkerPool manifests and render them with the operator's own renderer
//!   (`causeway_crds::render`).
//! - [`cluster`]: `causeway worker --pool <namespace>/<name>` watches the pool's config
//!   Secret through the API server.

pub mod cluster;
pub mod kubectl;
pub mod manifests;

use std::error::Error;
use std::path::PathBuf;
use std::time::Duration;

use causeway_runtime::config::ConfigSource;

/// The sources `causeway` runs with: manifests rendered by `causeway-crds`, and the pool's
/// Secret read with the in-cluster (or `KUBECONFIG`) credentials.
pub struct KubeSources;

impl causeway_runtime::Sources for KubeSources {
    fn manifests(&self, paths: Vec<PathBuf>) -> Box<dyn ConfigSource> {
        Box::new(manifests::ManifestSource { paths })
    }

    async fn pool(
        &self,
        pool: &str,
        wait: Duration,
    ) -> Result<Box<dyn ConfigSource>, Box<dyn Error + Send + Sync>> {
        Ok(Box::new(cluster::SecretSource::connect(pool, wait).await?))
    }
}
