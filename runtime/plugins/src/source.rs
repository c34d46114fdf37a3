//! Getting a component's bytes: file, inline (ConfigMap), HTTP(S) with a required sha256,
//! and OCI artifacts. Every source ends with the bytes stored in `artifacts/` under their
//! sha256, so nothing is downloaded twice.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use causeway_config::SourceConfig;
use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client as OciClient, Reference};

use crate::cache::{CacheDirs, normalize_digest, sha256_hex};
use crate::error::LoadError;

/// Largest component accepted from any source.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// Time limit for one download.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Layer media types that hold a Wasm component.
pub const WASM_MEDIA_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];

/// A component located in the artifact store.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// sha256 hex of the component bytes.
    pub digest: String,
    /// The bytes, when this step already had them in memory.
    pub bytes: Option<Vec<u8>>,
    /// Whether this call downloaded something.
    pub fetched: Option<&'static str>,
}

fn check_digest(expected: &str, bytes: &[u8]) -> Result<String, LoadError> {
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(LoadError::DigestMismatch {
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(actual)
}

/// Finds (and if needed fetches) the component a source names.
pub(crate) async fn locate(
    src: &SourceConfig,
    dirs: &CacheDirs,
    http: &reqwest::Client,
) -> Result<Located, LoadError> {
    match src {
        SourceConfig::File { path } => {
            let bytes = read_capped(std::path::Path::new(path), MAX_COMPONENT_BYTES).await?;
            let digest = sha256_hex(&bytes);
            dirs.store_artifact(&digest, &bytes)?;
            Ok(Located {
                digest,
                bytes: Some(bytes),
                fetched: None,
            })
        }
        SourceConfig::Inline { sha256, data } => {
            let expected = normalize_digest(sha256)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(LoadError::Base64)?;
            let digest = check_digest(&expected, &bytes)?;
            dirs.store_artifact(&digest, &bytes)?;
            Ok(Located {
                digest,
                bytes: Some(bytes),
                fetched: None,
            })
        }
        SourceConfig::Http { url, sha256 } => {
            let expected = normalize_digest(sha256)?;
            if dirs.artifact_size(&expected).is_some() {
                return Ok(Located {
                    digest: expected,
                    bytes: None,
                    fetched: None,
                });
            }
            let bytes = download(http, url).await?;
            let digest = check_digest(&expected, &bytes)?;
            dirs.store_artifact(&digest, &bytes)?;
            Ok(Located {
                digest,
                bytes: Some(bytes),
                fetched: Some("http"),
            })
        }
        SourceConfig::Oci {
            reference,
            digest,
            insecure,
            credentials,
        } => {
            let auth = match credentials {
                Some(c) => RegistryAuth::Basic(
                    c.username.expose().to_string(),
                    c.password.expose().to_string(),
                ),
                None => RegistryAuth::Anonymous,
            };
            pull_oci(reference, digest.as_deref(), *insecure, &auth, dirs).await
        }
    }
}

/// Reads a file of at most `limit` bytes; larger files are refused before and while reading
/// (a file may grow, or be a device that never ends).
async fn read_capped(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    use tokio::io::AsyncReadExt as _;
    let read_err = |source| LoadError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(read_err)?;
    let meta = file.metadata().await.map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    if meta.len() > limit {
        return Err(LoadError::FileTooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut out)
        .await
        .map_err(read_err)?;
    if out.len() as u64 > limit {
        return Err(LoadError::FileTooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(out)
}

async fn download(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, LoadError> {
    let err = |message: String| LoadError::Download {
        url: url.to_string(),
        message,
        source: None,
    };
    let client_err = |e: reqwest::Error| LoadError::Download {
        url: url.to_string(),
        message: e.to_string(),
        source: Some(e),
    };
    let resp = http
        .get(url)
        .timeout(DOWNLOAD_TIMEOUT)
        .send()
        .await
        .map_err(client_err)?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(err(format!(
            "HTTP {status}: redirects are not followed (give the final URL)"
        )));
    }
    if !status.is_success() {
        return Err(err(format!("HTTP {status}")));
    }
    if resp
        .content_length()
        .is_some_and(|l| l > MAX_COMPONENT_BYTES)
    {
        return Err(LoadError::TooLarge {
            url: url.to_string(),
            limit: MAX_COMPONENT_BYTES,
        });
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(client_err)?;
        out.extend_from_slice(&chunk);
        if out.len() as u64 > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge {
                url: url.to_string(),
                limit: MAX_COMPONENT_BYTES,
            });
        }
    }
    Ok(out)
}

/// Makes ring the process-wide rustls crypto provider unless one is installed already
/// (reqwest and oci-client are built without a provider of their own).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The OCI client for a registry; `insecure` speaks plain HTTP.
pub fn oci_client(insecure: bool) -> OciClient {
    install_crypto_provider();
    OciClient::new(ClientConfig {
        protocol: if insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..ClientConfig::default()
    })
}

async fn pull_oci(
    reference: &str,
    pinned: Option<&str>,
    insecure: bool,
    auth: &RegistryAuth,
    dirs: &CacheDirs,
) -> Result<Located, LoadError> {
    let parsed: Reference =
        reference
            .parse()
            .map_err(|e: oci_client::ParseError| LoadError::OciReference {
                reference: reference.to_string(),
                message: e.to_string(),
            })?;
    let pinned = match pinned {
        Some(d) => Some(normalize_digest(d)?),
        None => parsed.digest().map(normalize_digest).transpose()?,
    };
    // A pinned manifest we pulled before: no network at all.
    if let Some(p) = &pinned
        && let Some(digest) = dirs.oci_lookup(p)
    {
        return Ok(Located {
            digest,
            bytes: None,
            fetched: None,
        });
    }
    let pull_err = |message: String| LoadError::OciPull {
        reference: reference.to_string(),
        message,
        source: None,
    };
    let client_err = |e: oci_client::errors::OciDistributionError| LoadError::OciPull {
        reference: reference.to_string(),
        message: e.to_string(),
        source: Some(e.into()),
    };
    let client = oci_client(insecure);
    let (manifest, manifest_digest) =
        tokio::time::timeout(DOWNLOAD_TIMEOUT, client.pull_image_manifest(&parsed, auth))
            .await
            .map_err(|_| pull_err("timed out fetching the manifest".into()))?
            .map_err(client_err)?;
    let manifest_hex = normalize_digest(&manifest_digest)?;
    if let Some(p) = &pinned
        && *p != manifest_hex
    {
        return Err(LoadError::DigestMismatch {
            expected: format!("sha256:{p}"),
            actual: format!("sha256:{manifest_hex}"),
        });
    }
    let layer = manifest
        .layers
        .iter()
        .find(|l| WASM_MEDIA_TYPES.contains(&l.media_type.as_str()))
        .ok_or_else(|| LoadError::OciNoWasmLayer {
            reference: reference.to_string(),
            media_types: manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let layer_hex = normalize_digest(&layer.digest)?;
    if dirs.artifact_size(&layer_hex).is_none() {
        if layer.size < 0 || layer.size as u64 > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge {
                url: reference.to_string(),
                limit: MAX_COMPONENT_BYTES,
            });
        }
        let mut out = BoundedVec {
            buf: Vec::new(),
            limit: MAX_COMPONENT_BYTES as usize,
        };
        tokio::time::timeout(DOWNLOAD_TIMEOUT, client.pull_blob(&parsed, layer, &mut out))
            .await
            .map_err(|_| pull_err("timed out fetching the wasm layer".into()))?
            .map_err(client_err)?;
        let bytes = out.buf;
        check_digest(&layer_hex, &bytes)?;
        dirs.store_artifact(&layer_hex, &bytes)?;
        dirs.oci_record(&manifest_hex, &layer_hex)?;
        return Ok(Located {
            digest: layer_hex,
            bytes: Some(bytes),
            fetched: Some("oci"),
        });
    }
    dirs.oci_record(&manifest_hex, &layer_hex)?;
    Ok(Located {
        digest: layer_hex,
        bytes: None,
        fetched: Some("oci"),
    })
}

/// A `Vec` that refuses to grow past `limit`.
struct BoundedVec {
    buf: Vec<u8>,
    limit: usize,
}

impl tokio::io::AsyncWrite for BoundedVec {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.len() + data.len() > self.limit {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "layer larger than {} bytes",
                self.limit
            ))));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
