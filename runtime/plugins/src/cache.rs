//! On-disk caches under `cache_dir`, all keyed by content:
//!
//! ```text
//! cache_dir/artifacts/<sha256>.wasm                      component bytes (any source)
//! cache_dir/oci/<manifest sha256>                          text: the component's sha256
//! cache_dir/<sha256>-<engine compat hash>.cwasm            compiled component
//! ```
//!
//! A component is compiled once per digest and engine configuration; a restarted worker
//! deserializes the `.cwasm` instead of compiling. A digest already present in
//! `artifacts/` is never downloaded again.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{HostError, LoadError};

/// `sha256` hex of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Accepts `<hex>` or `sha256:<hex>` (64 hex chars, any case); returns lowercase hex.
pub fn normalize_digest(d: &str) -> Result<String, LoadError> {
    let hex = d.strip_prefix("sha256:").unwrap_or(d).to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(LoadError::InvalidDigest(d.to_string()))
    }
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        LoadError::WriteFile {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The directories of the cache.
#[derive(Clone, Debug)]
pub(crate) struct CacheDirs {
    pub root: PathBuf,
    pub artifacts: PathBuf,
    pub oci: PathBuf,
}

impl CacheDirs {
    pub fn create(root: &Path) -> Result<CacheDirs, HostError> {
        let dirs = CacheDirs {
            root: root.to_path_buf(),
            artifacts: root.join("artifacts"),
            oci: root.join("oci"),
        };
        for d in [&dirs.root, &dirs.artifacts, &dirs.oci] {
            std::fs::create_dir_all(d).map_err(|source| HostError::CacheDir {
                path: d.clone(),
                source,
            })?;
        }
        Ok(dirs)
    }

    pub fn artifact(&self, digest: &str) -> PathBuf {
        self.artifacts.join(format!("{digest}.wasm"))
    }

    pub fn compiled(&self, digest: &str, compat: &str) -> PathBuf {
        self.root.join(format!("{digest}-{compat}.cwasm"))
    }

    /// Size of the stored artifact, if present.
    pub fn artifact_size(&self, digest: &str) -> Option<u64> {
        std::fs::metadata(self.artifact(digest))
            .ok()
            .map(|m| m.len())
    }

    /// Reads the stored artifact and checks it still has its digest.
    pub fn read_artifact(&self, digest: &str) -> Result<Option<Vec<u8>>, LoadError> {
        let path = self.artifact(digest);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let actual = sha256_hex(&bytes);
                if actual != digest {
                    // Corrupt: drop it so the next load fetches again.
                    let _ = std::fs::remove_file(&path);
                    return Err(LoadError::DigestMismatch {
                        expected: format!("sha256:{digest}"),
                        actual: format!("sha256:{actual}"),
                    });
                }
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LoadError::ReadFile { path, source }),
        }
    }

    pub fn store_artifact(&self, digest: &str, bytes: &[u8]) -> Result<(), LoadError> {
        let path = self.artifact(digest);
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, bytes)
    }

    /// The component digest recorded for an OCI manifest digest.
    pub fn oci_lookup(&self, manifest_digest: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.oci.join(manifest_digest)).ok()?;
        let d = normalize_digest(text.trim()).ok()?;
        self.artifact(&d).exists().then_some(d)
    }

    pub fn oci_record(
        &self,
        manifest_digest: &str,
        component_digest: &str,
    ) -> Result<(), LoadError> {
        write_atomic(&self.oci.join(manifest_digest), component_digest.as_bytes())
    }
}
