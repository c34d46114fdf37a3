//! `causeway send`: POST one event to a URL and print the answer. The worker image has no
//! shell and no curl; this is how a `helm test` pod (or anyone in a scratch container)
//! sends a webhook, waiting for a worker that is still starting.

use std::time::{Duration, Instant};

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// Where to POST (a bridge's ingress URL).
    pub url: String,
    /// The body; `@PATH` reads it from a file.
    #[arg(short = 'd', long, default_value = "{}")]
    pub data: String,
    /// A request header, `Name: value` (repeatable). `content-type` defaults to JSON.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Keep trying, once a second, while there is no answer or it is not 2xx (e.g. `2m`:
    /// a worker that is still starting answers 503, a bridge not loaded yet 404).
    #[arg(long, default_value = "0s", value_parser = parse_wait)]
    pub retry_for: Duration,
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    causeway_config::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("send: {0}")]
    Usage(String),
    #[error("send: reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The last answer (or error) after `--retry-for`.
    #[error("send: {url}: {last}")]
    Failed { url: String, last: String },
}

/// Sends; returns the answer's status and body as one line to print.
pub async fn run(args: &SendArgs) -> Result<String, SendError> {
    let body = match args.data.strip_prefix('@') {
        Some(path) => std::fs::read(path).map_err(|source| SendError::Read {
            path: path.to_string(),
            source,
        })?,
        None => args.data.clone().into_bytes(),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| SendError::Usage(format!("header {h:?} is not `Name: value`")))?;
        let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| SendError::Usage(format!("header name {:?} is not valid", name.trim())))?;
        let value = reqwest::header::HeaderValue::from_str(value.trim())
            .map_err(|_| SendError::Usage(format!("header {:?} has an invalid value", name)))?;
        headers.insert(name, value);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| SendError::Usage(e.to_string()))?;
    let deadline = Instant::now() + args.retry_for;
    loop {
        let last = match client
            .post(&args.url)
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let line = format!("{status} {}", text.trim());
                if (200..300).contains(&status) {
                    return Ok(format!("{line}\n"));
                }
                line
            }
            Err(e) => crate::delivery::client::error_chain(&e),
        };
        if Instant::now() >= deadline {
            return Err(SendError::Failed {
                url: args.url.clone(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
