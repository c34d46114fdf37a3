//! Errors of the plugin host: one enum per concern, each with the context a reader needs.

use std::path::PathBuf;

/// A cause kept whole, whatever its type (wasmtime's errors, a registry client's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Creating a [`crate::PluginHost`] failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("creating the wasmtime engine: {0}")]
    Engine(#[source] BoxError),
    #[error("starting the epoch ticker: {0}")]
    EpochTicker(#[source] std::io::Error),
    #[error("linking host interfaces: {what}: {source}")]
    Linker {
        what: &'static str,
        source: BoxError,
    },
    #[error("cache directory {path}: {source}")]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registering metric {name}: {source}")]
    Metrics {
        name: String,
        source: prometheus::Error,
    },
    #[error("building the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Loading one plugin failed (reported per plugin by `apply` and `status`).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error(
        "invalid digest {0:?}: expected 64 lowercase hex characters, optionally prefixed with sha256:"
    )]
    InvalidDigest(String),
    #[error("reading {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("inline component is not valid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// `source` is the client's error when there is one (not for a bad status).
    #[error("downloading {url}: {message}")]
    Download {
        url: String,
        message: String,
        #[source]
        source: Option<reqwest::Error>,
    },
    #[error("component from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("invalid OCI reference {reference:?}: {message}")]
    OciReference { reference: String, message: String },
    #[error("pulling {reference}: {message}")]
    OciPull {
        reference: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("OCI artifact {reference} has no wasm layer (layer media types: {media_types})")]
    OciNoWasmLayer {
        reference: String,
        media_types: String,
    },
    /// Only a message, on purpose: wasmtime's own error may quote the component's bytes
    /// or its parser's context, which must not reach logs and status.
    #[error("compiling component sha256:{digest}: {message}")]
    Compile { digest: String, message: String },
    #[error("linking component sha256:{digest}: {message}")]
    Link {
        digest: String,
        message: String,
        #[source]
        source: BoxError,
    },
    #[error("instantiating component sha256:{digest}: {message}")]
    Instantiate { digest: String, message: String },
    #[error("file sources are refused outside local mode (use oci, http or configMap)")]
    FileSourceRefused,
    #[error(
        "component sha256:{digest} is not a WebAssembly binary (it does not start with \\0asm)"
    )]
    NotWasm { digest: String },
    #[error("{path} is larger than {limit} bytes")]
    FileTooLarge { path: PathBuf, limit: u64 },
    #[error("invalid allowedOutboundHosts entry {entry:?}: {message}")]
    AllowedHost { entry: String, message: String },
}

/// Why a call failed. Callers map each kind to a status code and a metric label
/// ([`CallError::status_code`], [`CallError::kind`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No plugin of that name is loaded here and no route names another pool for it.
    #[error("plugin {plugin} not found")]
    NotFound { plugin: String },
    /// `maxConcurrency` calls were running: rejected at once (`whenBusy: reject`) or no
    /// slot freed up within the call's timeout (`whenBusy: queue`).
    #[error("plugin {plugin} is busy: {reason}")]
    Busy { plugin: String, reason: String },
    /// The call ran past its wall-clock limit and was stopped.
    #[error("plugin {plugin} timed out after {timeout_ms} ms")]
    Timeout { plugin: String, timeout_ms: u64 },
    /// The guest tried to grow its memory past its limit and then failed.
    #[error("plugin {plugin} ran out of memory (limit {limit_bytes} bytes): {message}")]
    OutOfMemory {
        plugin: String,
        limit_bytes: u64,
        message: String,
    },
    /// The guest trapped (panic, `unreachable`, …) or exited.
    #[error("plugin {plugin} trapped: {message}")]
    Trap { plugin: String, message: String },
    /// The guest failed after the host refused one of its outbound requests.
    #[error(
        "plugin {plugin}: outbound request to {target} refused: {reason} (plugin answered {status})"
    )]
    Refused {
        plugin: String,
        target: String,
        reason: String,
        status: u16,
    },
    /// A plugin served by another pool could not be called, or failed there.
    #[error("plugin {plugin} (remote): {message}")]
    Remote {
        plugin: String,
        status: Option<u16>,
        message: String,
    },
    /// The guest answered with an error instead of a response, or never answered.
    #[error("plugin {plugin} failed: {message}")]
    Failed { plugin: String, message: String },
    /// Chained calls nested deeper than the host allows (a loop between plugins).
    #[error("plugin {plugin}: chained calls nested deeper than {max_depth}")]
    LoopDetected { plugin: String, max_depth: u32 },
    /// The host could not run the call (bad request, instantiation failure, …).
    #[error("plugin {plugin}: host error: {message}")]
    Internal { plugin: String, message: String },
}

impl CallError {
    /// A short stable label for metrics and the `causeway-error` header.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::NotFound { .. } => "not_found",
            CallError::Busy { .. } => "busy",
            CallError::Timeout { .. } => "timeout",
            CallError::OutOfMemory { .. } => "oom",
            CallError::Trap { .. } => "trap",
            CallError::Refused { .. } => "refused",
            CallError::Remote { .. } => "remote",
            CallError::Failed { .. } => "failed",
            CallError::LoopDetected { .. } => "loop",
            CallError::Internal { .. } => "internal",
        }
    }

    /// The HTTP status a public route or the internal port answers with.
    pub fn status_code(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            CallError::NotFound { .. } => S::NOT_FOUND,
            CallError::Busy { .. } => S::TOO_MANY_REQUESTS,
            CallError::Timeout { .. } => S::GATEWAY_TIMEOUT,
            CallError::Remote {
                status: Some(s), ..
            } => S::from_u16(*s).unwrap_or(S::BAD_GATEWAY),
            CallError::Refused { .. }
            | CallError::Remote { .. }
            | CallError::LoopDetected { .. } => S::BAD_GATEWAY,
            CallError::OutOfMemory { .. }
            | CallError::Trap { .. }
            | CallError::Failed { .. }
            | CallError::Internal { .. } => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `namespace/name` of the plugin the error is about.
    pub fn plugin(&self) -> &str {
        match self {
            CallError::NotFound { plugin }
            | CallError::Busy { plugin, .. }
            | CallError::Timeout { plugin, .. }
            | CallError::OutOfMemory { plugin, .. }
            | CallError::Trap { plugin, .. }
            | CallError::Refused { plugin, .. }
            | CallError::Remote { plugin, .. }
            | CallError::Failed { plugin, .. }
            | CallError::LoopDetected { plugin, .. }
            | CallError::Internal { plugin, .. } => plugin,
        }
    }
}
