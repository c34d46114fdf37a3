//! `POST /hub/<namespace>/<bridge>`: a subscriber's request, answered before anything is
//! stored (401 without the API key, 400 for a bad form, 403 for a refused callback, 202
//! once the request is taken), then the verification of intent in the background: a GET
//! to the callback with `hub.mode`, `hub.topic`, `hub.challenge` (and `hub.lease_seconds`
//! for a subscription) whose 2xx answer must be the challenge. Only then is the
//! subscription stored (or deleted, for `unsubscribe`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use causeway_config::SubscriptionsConfig;
use causeway_pipeline::Inbound;
use causeway_pipeline::auth::Verifier;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use tracing::{debug, info, instrument, warn};

use super::{Verification, check_callback, split_callback};
use crate::ingress::InBody;
use crate::shared::Shared;
use crate::store::{SubscriptionRecord, now_ms};

/// Largest form a subscriber may send.
const MAX_FORM_BYTES: usize = 8 * 1024;
/// Longest `hub.callback`.
const MAX_CALLBACK_BYTES: usize = 2048;
/// `hub.secret` must be shorter than 200 bytes (WebSub 5.1).
const MAX_SECRET_BYTES: usize = 199;
/// How long the subscriber has to send its form.
const FORM_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a verification answer read (the challenge is far shorter).
const MAX_CHALLENGE_ANSWER: usize = 1024;

type Body = Full<Bytes>;

fn answer(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::json!({ "error": message }).to_string(),
    )));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `(namespace, bridge)` of a hub path.
pub fn parse_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/hub/")?;
    let (ns, b) = rest.split_once('/')?;
    if ns.is_empty() || b.is_empty() || b.contains('/') {
        return None;
    }
    Some((ns, b))
}

/// A subscriber's request, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct HubRequest {
    pub subscribe: bool,
    pub topic: String,
    pub callback: String,
    pub secret: Option<String>,
    pub lease_seconds: Option<u64>,
}

/// Decode an `application/x-www-form-urlencoded` body; the error says what is wrong.
pub(super) fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8".to_string())?;
    let mut out = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                match (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(format!("bad percent-encoding in {s:?}")),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// The hub's parameters from a form, checked; `hub_path` is this hub's path, which the
/// topic must name.
pub(super) fn hub_request(form: &[(String, String)], hub_path: &str) -> Result<HubRequest, String> {
    let one = |name: &str| -> Result<Option<&str>, String> {
        let mut it = form.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(format!("{name} is given more than once"));
        }
        Ok(first)
    };
    let subscribe = match one("hub.mode")? {
        Some("subscribe") => true,
        Some("unsubscribe") => false,
        Some(m) => {
            return Err(format!("hub.mode {m:?} is not subscribe or unsubscribe"));
        }
        None => return Err("hub.mode is missing".into()),
    };
    let topic = one("hub.topic")?.ok_or("hub.topic is missing")?.to_string();
    let topic_path = reqwest::Url::parse(&topic)
        .map_err(|_| format!("hub.topic {topic:?} is not a URL"))?
        .path()
        .to_string();
    if topic_path.trim_end_matches('/') != hub_path {
        return Err(format!(
            "hub.topic must be this hub's URL (its path is {hub_path})"
        ));
    }
    let callback = one("hub.callback")?
        .ok_or("hub.callback is missing")?
        .to_string();
    if callback.len() > MAX_CALLBACK_BYTES {
        return Err(format!(
            "hub.callback is longer than {MAX_CALLBACK_BYTES} bytes"
        ));
    }
    split_callback(&callback)?;
    let secret = match one("hub.secret")? {
        None => None,
        Some(s) if s.is_empty() || s.len() > MAX_SECRET_BYTES => {
            return Err(format!("hub.secret must be 1 to {MAX_SECRET_BYTES} bytes"));
        }
        Some(s) => Some(s.to_string()),
    };
    let lease_seconds = match one("hub.lease_seconds")? {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("hub.lease_seconds {v:?} is not a positive number"))?,
        ),
    };
    Ok(HubRequest {
        subscribe,
        topic,
        callback,
        secret,
        lease_seconds,
    })
}

fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Serve a request on a hub path; None when the path is not a hub's (the caller goes on
/// with bridges and routes).
pub async fn serve<B: InBody>(
    shared: &Arc<Shared>,
    req: Request<B>,
) -> Result<Response<Body>, Request<B>> {
    let Some((ns, b)) = parse_path(req.uri().path()) else {
        return Err(req);
    };
    let key = format!("{ns}/{b}");
    let bridge = shared.active().bridges.get(&key).cloned();
    let Some(cfg) = bridge.as_ref().and_then(|b| b.cfg.subscriptions.clone()) else {
        return Ok(answer(
            StatusCode::NOT_FOUND,
            "no bridge with subscriptions enabled at this hub path",
        ));
    };
    Ok(hub_request_for(shared, &key, &cfg, req).await)
}

#[instrument(skip_all, fields(bridge = %bridge))]
async fn hub_request_for<B: InBody>(
    shared: &Arc<Shared>,
    bridge: &str,
    cfg: &SubscriptionsConfig,
    req: Request<B>,
) -> Response<Body> {
    if req.method() != http::Method::POST {
        let mut resp = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "a hub answers POST (hub.mode, hub.topic, hub.callback as a form)",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let query = req.uri().query().unwrap_or("").to_string();
    match Verifier::new(&cfg.auth) {
        Err(e) => {
            debug!(error = %e, "hub auth cannot be used");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub's auth is misconfigured",
            );
        }
        Ok(v) => {
            let inbound = Inbound {
                method: "POST",
                headers: req.headers(),
                query: &query,
                body: b"",
            };
            if v.verify(&inbound, std::time::SystemTime::now()).is_err() {
                return answer(StatusCode::UNAUTHORIZED, "unauthorized");
            }
        }
    }
    if !is_form(req.headers()) {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the hub's parameters as application/x-www-form-urlencoded",
        );
    }
    let body = match tokio::time::timeout(
        FORM_TIMEOUT,
        Limited::new(req.into_body(), MAX_FORM_BYTES).collect(),
    )
    .await
    {
        Err(_) => return answer(StatusCode::REQUEST_TIMEOUT, "the form took too long"),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the form is larger than {MAX_FORM_BYTES} bytes"),
            );
        }
        Ok(Err(_)) => return answer(StatusCode::BAD_REQUEST, "the form could not be read"),
        Ok(Ok(c)) => c.to_bytes(),
    };
    let hub_path = format!("/hub/{bridge}");
    let parsed = parse_form(&body).and_then(|f| hub_request(&f, &hub_path));
    let hr = match parsed {
        Ok(r) => r,
        Err(msg) => return answer(StatusCode::BAD_REQUEST, &msg),
    };
    if let Err(why) = check_callback(&shared.netguard, cfg, &hr.callback).await {
        return answer(
            StatusCode::FORBIDDEN,
            &format!("hub.callback refused: {why}"),
        );
    }
    if hr.subscribe
        && !shared
            .websub
            .has_room(bridge, &hr.callback, cfg.max_subscriptions, now_ms())
    {
        return answer(
            StatusCode::FORBIDDEN,
            &format!(
                "the hub has its maximum of {} subscriptions: unsubscribe one first",
                cfg.max_subscriptions
            ),
        );
    }
    let Ok(permit) = shared.websub.verifying.clone().try_acquire_owned() else {
        let mut resp = answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many verifications in flight: try again",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return resp;
    };
    let lease = cfg.lease_for(hr.lease_seconds);
    let shared2 = shared.clone();
    let bridge2 = bridge.to_string();
    let cfg2 = cfg.clone();
    tokio::spawn(async move {
        verify_and_apply(&shared2, &bridge2, &cfg2, hr, lease).await;
        drop(permit);
    });
    let mut resp = answer(StatusCode::ACCEPTED, "");
    *resp.body_mut() = Full::new(Bytes::from(
        serde_json::json!({ "status": "verifying", "leaseSeconds": lease }).to_string(),
    ));
    resp
}

/// Verify intent, then store (or delete) the subscription; the outcome goes to the
/// listing and the log (never the secret).
async fn verify_and_apply(
    shared: &Shared,
    bridge: &str,
    cfg: &SubscriptionsConfig,
    hr: HubRequest,
    lease: u64,
) {
    let hubs = &shared.websub;
    let mode = if hr.subscribe {
        "subscribe"
    } else {
        "unsubscribe"
    };
    let outcome = match verify_intent(shared, cfg, &hr, lease).await {
        Err(why) => Err(why),
        Ok(())
            if hr.subscribe
                && !hubs.has_room(bridge, &hr.callback, cfg.max_subscriptions, now_ms()) =>
        {
            // Others were verified while this one was: the bound holds at storing too.
            Err(format!(
                "the hub has its maximum of {} subscriptions",
                cfg.max_subscriptions
            ))
        }
        Ok(()) if hr.subscribe => {
            let now = now_ms();
            let previous = hubs.by_callback(bridge, &hr.callback);
            let sub = SubscriptionRecord {
                bridge: bridge.to_string(),
                callback: hr.callback.clone(),
                topic: hr.topic.clone(),
                id: previous
                    .as_ref()
                    .filter(|p| p.expires_at_ms > now)
                    .map(|p| p.id.clone())
                    .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string()),
                secret: hr.secret.clone(),
                lease_seconds: lease,
                created_at_ms: previous.as_ref().map_or(now, |p| p.created_at_ms),
                verified_at_ms: now,
                expires_at_ms: now.saturating_add(lease.saturating_mul(1000)),
            };
            let id = sub.id.clone();
            match hubs.put(sub).await {
                Ok(()) => {
                    info!(subscription = %id, lease_seconds = lease, "websub: subscription verified and stored");
                    Ok(())
                }
                Err(e) => Err(format!("the hub could not store the subscription: {e}")),
            }
        }
        Ok(()) => match hubs.remove(bridge, &hr.callback).await {
            Ok(found) => {
                info!(found, "websub: unsubscribe verified");
                Ok(())
            }
            Err(e) => Err(format!("the hub could not delete the subscription: {e}")),
        },
    };
    if let Err(why) = &outcome {
        warn!(mode, reason = %why, "websub: verification of intent failed");
    }
    hubs.note(
        bridge,
        Verification {
            callback: hr.callback,
            mode: mode.to_string(),
            at_ms: now_ms(),
            verified: outcome.is_ok(),
            reason: outcome.err(),
        },
    );
}

/// The GET to the callback: 2xx with the challenge as the whole body, or why not.
async fn verify_intent(
    shared: &Shared,
    cfg: &SubscriptionsConfig,
    hr: &HubRequest,
    lease: u64,
) -> Result<(), String> {
    // Again at the time of the call: the name may resolve elsewhere now.
    check_callback(&shared.netguard, cfg, &hr.callback)
        .await
        .map_err(|why| format!("hub.callback refused: {why}"))?;
    let challenge = hex::encode(rand::random::<[u8; 24]>());
    let mut url = reqwest::Url::parse(&hr.callback).map_err(|e| format!("hub.callback: {e}"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair(
            "hub.mode",
            if hr.subscribe {
                "subscribe"
            } else {
                "unsubscribe"
            },
        );
        q.append_pair("hub.topic", &hr.topic);
        q.append_pair("hub.challenge", &challenge);
        if hr.subscribe {
            q.append_pair("hub.lease_seconds", &lease.to_string());
        }
    }
    let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
    let res = shared
        .http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            // Without the URL: it carries the challenge and whatever the callback holds.
            format!(
                "the verification request failed: {}",
                error_chain(&e.without_url())
            )
        })?;
    let status = res.status();
    let mut got = Vec::new();
    let mut res = res;
    while got.len() <= MAX_CHALLENGE_ANSWER {
        match res.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => return Err(format!("the verification answer broke off: {e}")),
        }
    }
    if !status.is_success() {
        return Err(format!(
            "the callback answered the verification with {}",
            status.as_u16()
        ));
    }
    if got != challenge.as_bytes() {
        return Err("the callback did not echo hub.challenge".into());
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
