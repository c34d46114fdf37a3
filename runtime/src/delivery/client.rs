//! The call of one attempt: HTTP to a destination (through the network guard), or a
//! plugin in-process for `http://<plugin>.internal`.

use std::time::Duration;

use bytes::Bytes;

use crate::bridge::OutboundRequest;
use crate::shared::Shared;
use crate::store::RESPONSE_SNIPPET_BYTES;
use causeway_plugins::PluginRef;

/// How one call ended.
pub(crate) struct CallResult {
    pub(crate) status: Option<u16>,
    pub(crate) response: String,
    pub(crate) error: Option<String>,
    pub(crate) retry_after: Option<String>,
    /// Response headers and body, for steps.
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
    /// A broker acknowledged the message (a nats destination): delivered, with no HTTP
    /// status.
    pub(crate) acked: bool,
}

impl CallResult {
    /// Delivered: a 2xx answer, or a broker's acknowledgement.
    pub(crate) fn ok(&self) -> bool {
        self.error.is_none() && (self.acked || self.status.is_some_and(|s| (200..300).contains(&s)))
    }
}

pub(crate) fn failed(error: String) -> CallResult {
    CallResult {
        error: Some(error),
        ..answered(String::new())
    }
}

/// A call that ended with `response` and no status (yet).
pub(crate) fn answered(response: String) -> CallResult {
    CallResult {
        status: None,
        response,
        error: None,
        retry_after: None,
        headers: Default::default(),
        body: Bytes::new(),
        acked: false,
    }
}

/// The raw text of a response for the attempt log: twice the snippet, so that it can be
/// redacted before it is cut ([`ActiveBridge::redact_snippet`]).
pub(crate) fn snippet(body: &[u8]) -> String {
    let cut = &body[..body.len().min(2 * RESPONSE_SNIPPET_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}

/// Send over HTTP with `client` (the shared one, or a destination's own for `tls`); keep at most 4 KiB of the response (or all of it when `keep_body`).
pub(crate) async fn http_call(
    shared: &Shared,
    client: &reqwest::Client,
    req: &OutboundRequest,
    timeout: Duration,
    keep_body: bool,
) -> CallResult {
    let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
        return failed(format!("invalid method {:?}", req.method));
    };
    // Names are checked by the client's resolver after resolution; IP literals (and
    // requests through a proxy) here.
    if let Err(reason) = shared.netguard.check_destination(&req.url).await {
        shared.metrics.destination_refused.inc();
        return failed(format!("destination refused: {reason}"));
    }
    let mut rb = client
        .request(method, &req.url)
        .timeout(timeout)
        .body(req.body.clone());
    for (n, v) in &req.headers {
        rb = rb.header(n, v);
    }
    let mut resp = match rb.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return failed(format!("timeout after {} ms", timeout.as_millis()));
        }
        Err(e) if is_refused(&e) => {
            shared.metrics.destination_refused.inc();
            return failed(error_chain(&e));
        }
        Err(e) if e.is_connect() => return failed(format!("connect: {}", error_chain(&e))),
        Err(e) => return failed(error_chain(&e)),
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let mut error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                body.extend_from_slice(&c);
                if !keep_body && body.len() >= 2 * RESPONSE_SNIPPET_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("reading response: {}", error_chain(&e)));
                break;
            }
        }
    }
    CallResult {
        status: Some(status),
        response: snippet(&body),
        error,
        retry_after,
        headers,
        body: Bytes::from(body),
        acked: false,
    }
}

/// Whether the network guard refused the connection (somewhere in the error's sources).
fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<crate::netguard::Refused>().is_some() {
            return true;
        }
        cur = err.source();
    }
    false
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `<plugin>.internal` → the plugin, when `url` names one (the plugin host's rule: one
/// label before `.internal`; `api.corp.internal` goes to the network).
pub(crate) fn internal_target(url: &str, namespace: &str) -> Option<(PluginRef, String)> {
    let (name, path) = causeway_plugins::chain_url(url)?;
    Some((
        PluginRef {
            namespace: namespace.to_string(),
            name,
        },
        path,
    ))
}

pub(crate) async fn plugin_call(
    shared: &Shared,
    target: &PluginRef,
    path: &str,
    req: &OutboundRequest,
    timeout: Duration,
) -> CallResult {
    let mut b = http::Request::builder()
        .method(req.method.as_str())
        .uri(path);
    for (n, v) in &req.headers {
        b = b.header(n, v);
    }
    let Ok(hreq) = b.body(req.body.clone()) else {
        return failed("invalid request for plugin".into());
    };
    match tokio::time::timeout(timeout, shared.plugins.call(target, hreq)).await {
        Err(_) => failed(format!("timeout after {} ms", timeout.as_millis())),
        Ok(Err(e)) => failed(e.to_string()),
        Ok(Ok(resp)) => {
            let (parts, body) = resp.into_parts();
            let retry_after = parts
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            CallResult {
                status: Some(parts.status.as_u16()),
                response: snippet(&body),
                error: None,
                retry_after,
                headers: parts.headers,
                body,
                acked: false,
            }
        }
    }
}
