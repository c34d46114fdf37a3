//! OAuth2 client credentials for destinations (RFC 6749 section 4.4): a bearer token per
//! destination, fetched from its token endpoint through the network guard, cached until
//! shortly before it expires, and dropped when the destination answers 401.
//!
//! One fetch at a time per destination: attempts that find no valid token wait on the
//! destination's lock while the first of them fetches, then use its token. Tokens and the
//! client secret are never logged; a token a destination echoes is redacted from the
//! attempt log by the caller ([`Token::redact`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use causeway_config::{OAuth2ClientAuth, OAuth2Config};

use crate::delivery::client::error_chain;
use crate::shared::Shared;
use crate::sync::lock;

/// A token is used until this long before it expires, so that it does not expire in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// How long a token without `expires_in` is used (until a 401 drops it sooner).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The most of a token endpoint's error answer quoted in the attempt log.
const ERROR_SNIPPET: usize = 200;

/// A bearer token.
#[derive(Clone)]
pub(crate) struct Token {
    value: Arc<str>,
    fresh_until: Instant,
}

impl Token {
    pub(crate) fn header(&self) -> String {
        format!("Bearer {}", self.value)
    }

    /// `text` without the token in it (a destination may echo the request's headers).
    pub(crate) fn redact(&self, text: &str) -> String {
        causeway_pipeline::redact::redact(text, &[&self.value])
    }
}

/// Which cached token a destination uses: its bridge and name, and everything that would
/// give another token (so that a config change never reuses the old one).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    bridge: String,
    destination: String,
    token_url: String,
    client_id: String,
    secret_digest: [u8; 32],
    scopes: Vec<String>,
    audience: Option<String>,
}

impl Key {
    fn new(bridge: &str, destination: &str, cfg: &OAuth2Config) -> Key {
        use sha2::Digest as _;
        Key {
            bridge: bridge.to_string(),
            destination: destination.to_string(),
            token_url: cfg.token_url.clone(),
            client_id: cfg.client_id.clone(),
            secret_digest: sha2::Sha256::digest(cfg.client_secret.expose().as_bytes()).into(),
            scopes: cfg.scopes.clone(),
            audience: cfg.audience.clone(),
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// The tokens of every destination with `oauth2`.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<Key, Slot>>,
}

impl TokenCache {
    fn slot(&self, key: &Key) -> Slot {
        lock(&self.slots).entry(key.clone()).or_default().clone()
    }

    /// A valid token for the destination: the cached one, or a new one from its endpoint.
    pub(crate) async fn token(
        &self,
        shared: &Shared,
        bridge: &str,
        destination: &str,
        cfg: &OAuth2Config,
        timeout: Duration,
    ) -> Result<Token, String> {
        let slot = self.slot(&Key::new(bridge, destination, cfg));
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.fresh_until) {
            return Ok(t.clone());
        }
        let labels = [bridge, destination];
        let fetched = fetch(shared, cfg, timeout).await;
        let outcome = if fetched.is_ok() { "ok" } else { "error" };
        shared
            .metrics
            .oauth2_token_fetches
            .with_label_values(&[labels[0], labels[1], outcome])
            .inc();
        let token = fetched?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// The destination refused `used` (401): forget it, unless a newer one replaced it.
    pub(crate) async fn refused(
        &self,
        bridge: &str,
        destination: &str,
        cfg: &OAuth2Config,
        used: &Token,
    ) {
        let slot = self.slot(&Key::new(bridge, destination, cfg));
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == used.value) {
            *cached = None;
        }
    }

    /// Drops the tokens of destinations that are no longer configured.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        lock(&self.slots).retain(|k, _| keep(&k.bridge, &k.destination));
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The form a token request sends, and its `Authorization` header (for `basic`).
fn request_parts(cfg: &OAuth2Config) -> (String, Option<String>) {
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if !cfg.scopes.is_empty() {
        form.push(("scope", cfg.scopes.join(" ")));
    }
    if let Some(a) = &cfg.audience {
        form.push(("audience", a.clone()));
    }
    let authorization = match cfg.client_auth {
        OAuth2ClientAuth::Basic => {
            // RFC 6749 section 2.3.1: id and secret form-encoded, then joined by ':'.
            let pair = format!(
                "{}:{}",
                form_encode(&cfg.client_id),
                form_encode(cfg.client_secret.expose())
            );
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
        OAuth2ClientAuth::Body => {
            form.push(("client_id", cfg.client_id.clone()));
            form.push(("client_secret", cfg.client_secret.expose().to_string()));
            None
        }
    };
    let body = form
        .iter()
        .map(|(n, v)| format!("{}={}", form_encode(n), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    (body, authorization)
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// One token request. Errors name the endpoint and what went wrong, never the secret.
async fn fetch(shared: &Shared, cfg: &OAuth2Config, timeout: Duration) -> Result<Token, String> {
    let what = format!("oauth2 token from {}", cfg.token_url);
    if let Err(reason) = shared.netguard.check_destination(&cfg.token_url).await {
        shared.metrics.destination_refused.inc();
        return Err(format!("{what}: refused: {reason}"));
    }
    let (body, authorization) = request_parts(cfg);
    let mut rb = shared
        .http
        .post(&cfg.token_url)
        .timeout(timeout)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(body);
    if let Some(a) = authorization {
        rb = rb.header(http::header::AUTHORIZATION, a);
    }
    let started = Instant::now();
    let resp = rb
        .send()
        .await
        .map_err(|e| format!("{what}: {}", error_chain(&e)))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("{what}: reading the answer: {}", error_chain(&e)))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_SNIPPET)]);
        return Err(format!("{what}: status {}: {text}", status.as_u16()));
    }
    let parsed: TokenResponse = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{what}: not a token response ({e})"))?;
    if let Some(t) = &parsed.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(format!("{what}: token_type {t:?} is not Bearer"));
    }
    if parsed.access_token.is_empty() {
        return Err(format!("{what}: empty access_token"));
    }
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LIFETIME);
    Ok(Token {
        value: parsed.access_token.into(),
        fresh_until: started + lifetime.saturating_sub(EXPIRY_MARGIN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_config::SecretValue;

    fn cfg(client_auth: OAuth2ClientAuth) -> OAuth2Config {
        OAuth2Config {
            token_url: "https://auth.example.com/token".into(),
            client_id: "shop client".into(),
            client_secret: SecretValue("s3cr:et/+".into()),
            scopes: vec!["orders.write".into(), "orders.read".into()],
            audience: Some("https://api.example.com".into()),
            client_auth,
        }
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret_and_the_form_has_scope_and_audience() {
        let (body, auth) = request_parts(&cfg(OAuth2ClientAuth::Basic));
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=orders.write+orders.read&audience=https%3A%2F%2Fapi.example.com"
        );
        let encoded = auth.unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"shop+client:s3cr%3Aet%2F%2B");
    }

    #[test]
    fn body_auth_puts_the_credentials_in_the_form_only() {
        let (body, auth) = request_parts(&cfg(OAuth2ClientAuth::Body));
        assert!(auth.is_none());
        assert!(
            body.ends_with("&client_id=shop+client&client_secret=s3cr%3Aet%2F%2B"),
            "{body}"
        );
    }

    #[test]
    fn a_changed_secret_is_another_token() {
        let a = cfg(OAuth2ClientAuth::Basic);
        let mut b = a.clone();
        b.client_secret = SecretValue("rotated".into());
        assert!(Key::new("ns/b", "d", &a) == Key::new("ns/b", "d", &a));
        assert!(Key::new("ns/b", "d", &a) != Key::new("ns/b", "d", &b));
    }
}
