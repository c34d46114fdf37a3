//! Inbound verification: Standard Webhooks, HMAC (generic and provider presets), JWT,
//! Basic and API keys.
//!
//! Keys are decoded once in [`Verifier::new`]. Every comparison of a presented credential
//! with an expected one is constant-time (`subtle`). Neither errors nor `Debug` output ever
//! contain a secret or a presented signature: failures carry a [`AuthReason`] (a metric
//! label) and a fixed description.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use causeway_config::{
    AuthConfig, HmacAlgorithm, HmacPreset, JwtAlgorithm, SecretValue, SignatureEncoding,
};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Inbound;
use crate::text::{header_first, query_first};

/// Why a request was refused. [`AuthReason::as_str`] is the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthReason {
    /// A header the scheme needs is absent.
    MissingHeader,
    /// The API key query parameter is absent.
    MissingParam,
    /// A header is present but cannot be parsed.
    Malformed,
    /// No signature matched any configured secret.
    BadSignature,
    /// The signed timestamp is outside the tolerance.
    StaleTimestamp,
    /// JWT `exp` passed (beyond the leeway).
    Expired,
    /// JWT `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// JWT `iss` is not the configured issuer.
    WrongIssuer,
    /// JWT `aud` does not contain the configured audience.
    WrongAudience,
    /// JWT `alg` is not one of the accepted algorithms (`none` included).
    WrongAlgorithm,
    /// JWT without a claim that is required (`exp`).
    MissingClaim,
    /// JWT `kid` names no key of the JWKS.
    UnknownKey,
    /// Basic or API key credentials do not match.
    BadCredentials,
}

impl AuthReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthReason::MissingHeader => "missing_header",
            AuthReason::MissingParam => "missing_param",
            AuthReason::Malformed => "malformed",
            AuthReason::BadSignature => "bad_signature",
            AuthReason::StaleTimestamp => "stale_timestamp",
            AuthReason::Expired => "expired",
            AuthReason::NotYetValid => "not_yet_valid",
            AuthReason::WrongIssuer => "wrong_issuer",
            AuthReason::WrongAudience => "wrong_audience",
            AuthReason::WrongAlgorithm => "wrong_algorithm",
            AuthReason::MissingClaim => "missing_claim",
            AuthReason::UnknownKey => "unknown_key",
            AuthReason::BadCredentials => "bad_credentials",
        }
    }
}

impl fmt::Display for AuthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request. `detail` is a fixed text (never request or secret data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct AuthFailure {
    pub reason: AuthReason,
    pub detail: &'static str,
}

fn fail(reason: AuthReason, detail: &'static str) -> AuthFailure {
    AuthFailure { reason, detail }
}

/// A scheme configuration that cannot work. Messages never contain the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("{scheme}: no secret configured")]
    NoSecret { scheme: &'static str },
    #[error("standardWebhooks: secret #{index} is not base64 after the whsec_ prefix")]
    BadStandardWebhooksSecret { index: usize },
    #[error("hmac: no signature header (set a preset or a header)")]
    NoHeader,
    #[error("hmac: {name} is not a valid header name")]
    BadHeaderName { name: String },
    #[error("hmac: signedContent must contain {{body}}")]
    ContentWithoutBody,
    #[error("hmac: signedContent uses {{timestamp}} but no timestampHeader is set")]
    TimestampWithoutHeader,
    #[error("jwt: no algorithms listed")]
    NoAlgorithms,
    #[error("jwt: set exactly one of a key and a JWKS")]
    KeyOrJwks,
    #[error(
        "jwt: one key cannot serve both HS256 (a shared secret) and RS256/ES256 (a public key); use a JWKS or separate bridges"
    )]
    MixedKeyFamilies,
    #[error("jwt: the key is not a valid PEM public key for {alg}")]
    BadPem { alg: &'static str },
    #[error("jwt: the JWKS is not a valid JSON Web Key Set")]
    BadJwks,
    #[error("jwt: JWKS key #{index} cannot be used")]
    BadJwk { index: usize },
    #[error("apiKey: set a header or a query parameter")]
    NoKeyLocation,
}

/// Longest `jti` accepted when deduplicating (it becomes an idempotency key).
pub const MAX_JTI_BYTES: usize = 256;

/// What a successful verification established.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// The token's `jti`, for a `jwt` scheme with `dedupeJti` (always present then). Record
    /// it in the idempotency table (with a key of its own kind, e.g. `jti:<jti>`) and
    /// refuse the request when it is already there.
    pub jti: Option<String>,
    /// Until when the `jti` must be remembered: the token's `exp` plus the leeway; after
    /// that the token is refused as expired anyway.
    pub jti_expires_at: Option<SystemTime>,
}

/// Verifies inbound requests for one bridge.
pub struct Verifier {
    scheme: Scheme,
}

enum Scheme {
    StandardWebhooks {
        keys: Vec<Vec<u8>>,
        tolerance_ms: u64,
    },
    Hmac(HmacScheme),
    Jwt(JwtScheme),
    Basic {
        username: Vec<u8>,
        password: Vec<u8>,
    },
    ApiKey {
        location: KeyLocation,
        keys: Vec<Vec<u8>>,
    },
}

enum KeyLocation {
    Header(String),
    Query(String),
}

struct HmacScheme {
    keys: Vec<Vec<u8>>,
    header: String,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: String,
    timestamp_header: Option<String>,
    content: Vec<Part>,
    tolerance_ms: u64,
    /// `t=<ts>,v1=<sig>,...` in one header, the timestamp taken from it.
    stripe_format: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(Vec<u8>),
    Timestamp,
    Body,
}

struct JwtScheme {
    algorithms: Vec<Algorithm>,
    keys: JwtKeys,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_ms: u64,
    /// Require a `jti` and return it for the idempotency table.
    dedupe_jti: bool,
}

enum JwtKeys {
    /// One decoding key per accepted algorithm family.
    Single {
        hmac: Option<DecodingKey>,
        rsa: Option<DecodingKey>,
        ec: Option<DecodingKey>,
    },
    Set(Vec<JwkEntry>),
}

struct JwkEntry {
    kid: Option<String>,
    alg: Option<String>,
    key: DecodingKey,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme_name())
            .finish_non_exhaustive()
    }
}

const STANDARD_WEBHOOKS_HEADERS: [&str; 3] =
    ["webhook-id", "webhook-timestamp", "webhook-signature"];

impl Verifier {
    /// Decode keys and resolve presets.
    pub fn new(cfg: &AuthConfig) -> Result<Verifier, AuthConfigError> {
        let scheme = match cfg {
            AuthConfig::StandardWebhooks {
                secrets,
                tolerance_ms,
            } => {
                if secrets.is_empty() {
                    return Err(AuthConfigError::NoSecret {
                        scheme: "standardWebhooks",
                    });
                }
                let keys = secrets
                    .iter()
                    .enumerate()
                    .map(|(index, s)| {
                        standard_webhooks_key(s.expose())
                            .ok_or(AuthConfigError::BadStandardWebhooksSecret { index })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Scheme::StandardWebhooks {
                    keys,
                    tolerance_ms: *tolerance_ms,
                }
            }
            AuthConfig::Hmac {
                preset,
                secrets,
                header,
                algorithm,
                encoding,
                prefix,
                timestamp_header,
                signed_content,
                tolerance_ms,
            } => {
                if secrets.is_empty() {
                    return Err(AuthConfigError::NoSecret { scheme: "hmac" });
                }
                let d = preset_defaults(*preset);
                let header = header
                    .clone()
                    .or(d.header.map(str::to_string))
                    .ok_or(AuthConfigError::NoHeader)?;
                let header = valid_header_name(&header)?;
                let timestamp_header = match timestamp_header
                    .clone()
                    .or(d.timestamp_header.map(str::to_string))
                {
                    Some(h) => Some(valid_header_name(&h)?),
                    None => None,
                };
                let stripe_format = *preset == Some(HmacPreset::Stripe);
                let content_src = signed_content
                    .clone()
                    .unwrap_or_else(|| d.content.to_string());
                let content = parse_signed_content(&content_src);
                if !content.contains(&Part::Body) {
                    return Err(AuthConfigError::ContentWithoutBody);
                }
                if content.contains(&Part::Timestamp)
                    && timestamp_header.is_none()
                    && !stripe_format
                {
                    return Err(AuthConfigError::TimestampWithoutHeader);
                }
                Scheme::Hmac(HmacScheme {
                    // Provider secrets are used as given (Stripe's `whsec_` included).
                    keys: secrets
                        .iter()
                        .map(|s| s.expose().as_bytes().to_vec())
                        .collect(),
                    header,
                    algorithm: algorithm.unwrap_or(d.algorithm),
                    encoding: encoding.unwrap_or(d.encoding),
                    prefix: prefix.clone().unwrap_or_else(|| d.prefix.to_string()),
                    timestamp_header,
                    content,
                    tolerance_ms: *tolerance_ms,
                    stripe_format,
                })
            }
            AuthConfig::Jwt {
                algorithms,
                key,
                jwks,
                issuer,
                audience,
                leeway_ms,
                dedupe_jti,
            } => Scheme::Jwt(JwtScheme::new(
                algorithms,
                key.as_ref(),
                jwks.as_ref(),
                issuer,
                audience,
                *leeway_ms,
                *dedupe_jti,
            )?),
            AuthConfig::Basic { username, password } => Scheme::Basic {
                username: username.as_bytes().to_vec(),
                password: password.expose().as_bytes().to_vec(),
            },
            AuthConfig::ApiKey {
                header,
                query_param,
                keys,
            } => {
                if keys.is_empty() {
                    return Err(AuthConfigError::NoSecret { scheme: "apiKey" });
                }
                let location = match (header, query_param) {
                    (Some(h), _) => KeyLocation::Header(valid_header_name(h)?),
                    (None, Some(q)) => KeyLocation::Query(q.clone()),
                    (None, None) => return Err(AuthConfigError::NoKeyLocation),
                };
                Scheme::ApiKey {
                    location,
                    keys: keys
                        .iter()
                        .map(|k| k.expose().as_bytes().to_vec())
                        .collect(),
                }
            }
        };
        Ok(Verifier { scheme })
    }

    /// `standardWebhooks`, `hmac`, `jwt`, `basic` or `apiKey`.
    pub fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::StandardWebhooks { .. } => "standardWebhooks",
            Scheme::Hmac(_) => "hmac",
            Scheme::Jwt(_) => "jwt",
            Scheme::Basic { .. } => "basic",
            Scheme::ApiKey { .. } => "apiKey",
        }
    }

    /// Check a request. `now` is the receiving time, for timestamps and token expiry.
    pub fn verify(&self, req: &Inbound, now: SystemTime) -> Result<(), AuthFailure> {
        self.verify_full(req, now).map(|_| ())
    }

    /// [`Verifier::verify`], returning what the verification established: for a `jwt`
    /// scheme with `dedupeJti`, the token's `jti` (and until when to remember it), which
    /// the ingress records in the idempotency table so that each token is accepted once.
    pub fn verify_full(&self, req: &Inbound, now: SystemTime) -> Result<Verified, AuthFailure> {
        let now_ms = unix_ms(now);
        match &self.scheme {
            Scheme::StandardWebhooks { keys, tolerance_ms } => {
                verify_standard_webhooks(keys, *tolerance_ms, req, now_ms)?
            }
            Scheme::Hmac(h) => h.verify(req, now_ms)?,
            Scheme::Jwt(j) => return j.verify(req.headers, now_ms),
            Scheme::Basic { username, password } => verify_basic(username, password, req.headers)?,
            Scheme::ApiKey { location, keys } => verify_api_key(location, keys, req)?,
        }
        Ok(Verified::default())
    }

    /// The cheap check to run before reading the body, so that unsigned or badly signed
    /// requests are refused without it.
    ///
    /// For the schemes that do not sign the body (`basic`, `apiKey`, `jwt`) this is the
    /// whole verification. For the body-signing schemes (`standardWebhooks`, `hmac` and its
    /// presets) it checks that the signature and timestamp headers are present and well
    /// formed (a signature of the algorithm's length in the expected encoding) and that
    /// the timestamp is within the tolerance; the signature itself needs the body:
    /// [`Verifier::verify`] (or [`Verifier::verify_full`]) must still run after reading it.
    pub fn check_headers(
        &self,
        headers: &http::HeaderMap,
        query: &str,
        now: SystemTime,
    ) -> Result<(), AuthFailure> {
        let now_ms = unix_ms(now);
        match &self.scheme {
            Scheme::StandardWebhooks { tolerance_ms, .. } => {
                let (_, _, presented) = standard_webhooks_headers(headers, *tolerance_ms, now_ms)?;
                if !presented.iter().any(|p| p.len() == 32) {
                    return Err(fail(
                        AuthReason::Malformed,
                        "webhook-signature has no v1 signature of the right length",
                    ));
                }
                Ok(())
            }
            Scheme::Hmac(h) => {
                let (_, presented) = h.headers(headers, now_ms)?;
                if !presented.iter().any(|p| p.len() == h.mac_len()) {
                    return Err(fail(
                        AuthReason::Malformed,
                        "signature has the wrong length for the algorithm",
                    ));
                }
                Ok(())
            }
            Scheme::Jwt(_) | Scheme::Basic { .. } | Scheme::ApiKey { .. } => {
                let req = Inbound {
                    method: "",
                    headers,
                    query,
                    body: b"",
                };
                self.verify_full(&req, now).map(|_| ())
            }
        }
    }

    /// Whether [`Verifier::check_headers`] is the whole verification (no body signature).
    pub fn is_header_only(&self) -> bool {
        matches!(
            self.scheme,
            Scheme::Jwt(_) | Scheme::Basic { .. } | Scheme::ApiKey { .. }
        )
    }

    /// Lower-case names of headers that carry credentials: never stored or shown.
    pub fn sensitive_headers(&self) -> Vec<String> {
        match &self.scheme {
            Scheme::StandardWebhooks { .. } => vec!["webhook-signature".into()],
            Scheme::Hmac(h) => vec![h.header.clone()],
            Scheme::Jwt(_) | Scheme::Basic { .. } => vec!["authorization".into()],
            Scheme::ApiKey {
                location: KeyLocation::Header(h),
                ..
            } => vec![h.clone()],
            Scheme::ApiKey {
                location: KeyLocation::Query(_),
                ..
            } => vec![],
        }
    }

    /// The query parameter that carries a credential, if any: strip it before storing.
    pub fn sensitive_query_param(&self) -> Option<&str> {
        match &self.scheme {
            Scheme::ApiKey {
                location: KeyLocation::Query(q),
                ..
            } => Some(q),
            _ => None,
        }
    }
}

fn unix_ms(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    }
}

fn valid_header_name(name: &str) -> Result<String, AuthConfigError> {
    let lower = name.to_ascii_lowercase();
    http::HeaderName::from_bytes(lower.as_bytes())
        .map(|_| lower.clone())
        .map_err(|_| AuthConfigError::BadHeaderName {
            name: name.to_string(),
        })
}

/// The HMAC key of a Standard Webhooks secret: base64 after an optional `whsec_` prefix.
pub(crate) fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD.decode(b64.trim()).ok().filter(|k| !k.is_empty())
}

pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    run_mac::<Hmac<Sha256>>(key, parts)
}

fn run_mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this never fails; an empty MAC never matches.
    let Ok(mut m) = <M as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac_with(alg: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match alg {
        HmacAlgorithm::Sha1 => run_mac::<Hmac<sha1::Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => run_mac::<Hmac<Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => run_mac::<Hmac<sha2::Sha512>>(key, parts),
    }
}

/// Constant-time equality; lengths are public (they are fixed by the algorithm).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    !a.is_empty() && bool::from(a.ct_eq(b))
}

/// Whether `presented` equals any of `keys`, comparing SHA-256 digests in constant time so
/// that neither the content nor the length of the expected keys leaks through timing.
fn any_equal_hashed(keys: &[Vec<u8>], presented: &[u8]) -> bool {
    let p = sha256(presented);
    let mut ok = subtle::Choice::from(0);
    for k in keys {
        ok |= sha256(k).ct_eq(&p);
    }
    bool::from(ok)
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn check_timestamp(ts_secs: i64, now_ms: i128, tolerance_ms: u64) -> Result<(), AuthFailure> {
    let diff = (now_ms - ts_secs as i128 * 1000).abs();
    if diff > tolerance_ms as i128 {
        return Err(fail(
            AuthReason::StaleTimestamp,
            "timestamp outside the tolerance",
        ));
    }
    Ok(())
}

fn parse_ts(s: &str) -> Result<i64, AuthFailure> {
    s.trim().parse::<i64>().map_err(|_| {
        fail(
            AuthReason::Malformed,
            "timestamp is not a Unix time in seconds",
        )
    })
}

/// The Standard Webhooks headers, checked for presence, format and timestamp tolerance:
/// the id, the timestamp as sent (trimmed) and the presented `v1` signatures.
fn standard_webhooks_headers(
    headers: &http::HeaderMap,
    tolerance_ms: u64,
    now_ms: i128,
) -> Result<(String, String, Vec<Vec<u8>>), AuthFailure> {
    let [id_h, ts_h, sig_h] = STANDARD_WEBHOOKS_HEADERS;
    let id = header_first(headers, id_h)
        .ok_or(fail(AuthReason::MissingHeader, "no webhook-id header"))?;
    let ts = header_first(headers, ts_h).ok_or(fail(
        AuthReason::MissingHeader,
        "no webhook-timestamp header",
    ))?;
    let sigs = header_first(headers, sig_h).ok_or(fail(
        AuthReason::MissingHeader,
        "no webhook-signature header",
    ))?;
    let ts_secs = parse_ts(&ts)?;
    check_timestamp(ts_secs, now_ms, tolerance_ms)?;

    // `v1,<base64>` entries separated by spaces; other versions are ignored.
    let presented: Vec<Vec<u8>> = sigs
        .split(' ')
        .filter_map(|e| e.split_once(','))
        .filter(|(v, _)| *v == "v1")
        .filter_map(|(_, s)| STANDARD.decode(s).ok())
        .collect();
    if presented.is_empty() {
        return Err(fail(
            AuthReason::Malformed,
            "webhook-signature has no v1 signature",
        ));
    }
    Ok((id.into_owned(), ts.trim().to_string(), presented))
}

fn verify_standard_webhooks(
    keys: &[Vec<u8>],
    tolerance_ms: u64,
    req: &Inbound,
    now_ms: i128,
) -> Result<(), AuthFailure> {
    let (id, ts_text, presented) = standard_webhooks_headers(req.headers, tolerance_ms, now_ms)?;
    let mut ok = false;
    for key in keys {
        let expected = hmac_sha256(
            key,
            &[id.as_bytes(), b".", ts_text.as_bytes(), b".", req.body],
        );
        for p in &presented {
            ok |= ct_eq(&expected, p);
        }
    }
    if ok {
        Ok(())
    } else {
        Err(fail(
            AuthReason::BadSignature,
            "no webhook-signature entry matches",
        ))
    }
}

struct PresetDefaults {
    header: Option<&'static str>,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: &'static str,
    timestamp_header: Option<&'static str>,
    content: &'static str,
}

fn preset_defaults(p: Option<HmacPreset>) -> PresetDefaults {
    let base = PresetDefaults {
        header: None,
        algorithm: HmacAlgorithm::Sha256,
        encoding: SignatureEncoding::Hex,
        prefix: "",
        timestamp_header: None,
        content: "{body}",
    };
    match p {
        None => base,
        Some(HmacPreset::Github) => PresetDefaults {
            header: Some("x-hub-signature-256"),
            prefix: "sha256=",
            ..base
        },
        Some(HmacPreset::Stripe) => PresetDefaults {
            header: Some("stripe-signature"),
            content: "{timestamp}.{body}",
            ..base
        },
        Some(HmacPreset::Shopify) => PresetDefaults {
            header: Some("x-shopify-hmac-sha256"),
            encoding: SignatureEncoding::Base64,
            ..base
        },
        Some(HmacPreset::Slack) => PresetDefaults {
            header: Some("x-slack-signature"),
            prefix: "v0=",
            timestamp_header: Some("x-slack-request-timestamp"),
            content: "v0:{timestamp}:{body}",
            ..base
        },
    }
}

fn parse_signed_content(src: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut lit = Vec::new();
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{timestamp}") {
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Timestamp);
            rest = r;
        } else if let Some(r) = rest.strip_prefix("{body}") {
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Body);
            rest = r;
        } else {
            let c = rest.chars().next().map(char::len_utf8).unwrap_or(1);
            lit.extend_from_slice(&rest.as_bytes()[..c]);
            rest = &rest[c..];
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    parts
}

impl HmacScheme {
    /// The signature headers, checked for presence, format and timestamp tolerance: the
    /// timestamp as signed and the presented signatures.
    fn headers(
        &self,
        headers: &http::HeaderMap,
        now_ms: i128,
    ) -> Result<(Option<String>, Vec<Vec<u8>>), AuthFailure> {
        let raw = header_first(headers, &self.header)
            .ok_or(fail(AuthReason::MissingHeader, "no signature header"))?;
        let (ts_text, presented): (Option<String>, Vec<Vec<u8>>) = if self.stripe_format {
            let mut t = None;
            let mut sigs = Vec::new();
            for item in raw.split(',') {
                match item.trim().split_once('=') {
                    Some(("t", v)) => t = Some(v.to_string()),
                    Some(("v1", v)) => sigs.push(self.decode(v)?),
                    _ => {}
                }
            }
            let t = t.ok_or(fail(
                AuthReason::Malformed,
                "signature header has no t= timestamp",
            ))?;
            if sigs.is_empty() {
                return Err(fail(
                    AuthReason::Malformed,
                    "signature header has no v1 signature",
                ));
            }
            (Some(t), sigs)
        } else {
            let s = raw.trim().strip_prefix(self.prefix.as_str()).ok_or(fail(
                AuthReason::Malformed,
                "signature header lacks the expected prefix",
            ))?;
            let ts = match &self.timestamp_header {
                None => None,
                Some(h) => Some(
                    header_first(headers, h)
                        .ok_or(fail(AuthReason::MissingHeader, "no timestamp header"))?
                        .trim()
                        .to_string(),
                ),
            };
            (ts, vec![self.decode(s)?])
        };
        if let Some(t) = &ts_text {
            check_timestamp(parse_ts(t)?, now_ms, self.tolerance_ms)?;
        }
        Ok((ts_text, presented))
    }

    /// Length of the MAC, in bytes.
    fn mac_len(&self) -> usize {
        match self.algorithm {
            HmacAlgorithm::Sha1 => 20,
            HmacAlgorithm::Sha256 => 32,
            HmacAlgorithm::Sha512 => 64,
        }
    }

    fn verify(&self, req: &Inbound, now_ms: i128) -> Result<(), AuthFailure> {
        let (ts_text, presented) = self.headers(req.headers, now_ms)?;
        let ts_bytes = ts_text.as_deref().unwrap_or("").as_bytes();
        let parts: Vec<&[u8]> = self
            .content
            .iter()
            .map(|p| match p {
                Part::Lit(l) => l.as_slice(),
                Part::Timestamp => ts_bytes,
                Part::Body => req.body,
            })
            .collect();
        let mut ok = false;
        for key in &self.keys {
            let expected = hmac_with(self.algorithm, key, &parts);
            for p in &presented {
                ok |= ct_eq(&expected, p);
            }
        }
        if ok {
            Ok(())
        } else {
            Err(fail(AuthReason::BadSignature, "signature does not match"))
        }
    }

    fn decode(&self, s: &str) -> Result<Vec<u8>, AuthFailure> {
        let s = s.trim();
        let out = match self.encoding {
            SignatureEncoding::Hex => hex::decode(s).ok(),
            SignatureEncoding::Base64 => STANDARD.decode(s).ok(),
        };
        out.filter(|v| !v.is_empty()).ok_or(fail(
            AuthReason::Malformed,
            "signature is not in the expected encoding",
        ))
    }
}

fn verify_api_key(
    location: &KeyLocation,
    keys: &[Vec<u8>],
    req: &Inbound,
) -> Result<(), AuthFailure> {
    let presented = match location {
        KeyLocation::Header(h) => header_first(req.headers, h)
            .map(|v| v.into_owned())
            .ok_or(fail(AuthReason::MissingHeader, "no API key header"))?,
        KeyLocation::Query(q) => query_first(req.query, q)
            .ok_or(fail(AuthReason::MissingParam, "no API key query parameter"))?,
    };
    if any_equal_hashed(keys, presented.as_bytes()) {
        Ok(())
    } else {
        Err(fail(AuthReason::BadCredentials, "API key does not match"))
    }
}

fn verify_basic(
    username: &[u8],
    password: &[u8],
    headers: &http::HeaderMap,
) -> Result<(), AuthFailure> {
    let h = header_first(headers, "authorization")
        .ok_or(fail(AuthReason::MissingHeader, "no authorization header"))?;
    let (scheme, cred) = h
        .trim()
        .split_once(' ')
        .ok_or(fail(AuthReason::Malformed, "authorization is not Basic"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(fail(AuthReason::Malformed, "authorization is not Basic"));
    }
    let decoded = STANDARD
        .decode(cred.trim())
        .map_err(|_| fail(AuthReason::Malformed, "Basic credentials are not base64"))?;
    let colon = decoded.iter().position(|b| *b == b':').ok_or(fail(
        AuthReason::Malformed,
        "Basic credentials lack a colon",
    ))?;
    let (u, p) = (&decoded[..colon], &decoded[colon + 1..]);
    // Both halves are always compared, so timing does not tell which one was wrong.
    let user_ok = sha256(u).ct_eq(&sha256(username));
    let pass_ok = sha256(p).ct_eq(&sha256(password));
    if bool::from(user_ok & pass_ok) {
        Ok(())
    } else {
        Err(fail(
            AuthReason::BadCredentials,
            "user name or password does not match",
        ))
    }
}

fn jwt_alg(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

impl JwtScheme {
    fn new(
        algorithms: &[JwtAlgorithm],
        key: Option<&SecretValue>,
        jwks: Option<&SecretValue>,
        issuer: &Option<String>,
        audience: &Option<String>,
        leeway_ms: u64,
        dedupe_jti: bool,
    ) -> Result<JwtScheme, AuthConfigError> {
        if algorithms.is_empty() {
            return Err(AuthConfigError::NoAlgorithms);
        }
        let keys = match (key, jwks) {
            (Some(k), None) => {
                let has = |a| algorithms.contains(&a);
                let hs = has(JwtAlgorithm::HS256);
                if hs && (has(JwtAlgorithm::RS256) || has(JwtAlgorithm::ES256)) {
                    return Err(AuthConfigError::MixedKeyFamilies);
                }
                let bytes = k.expose().as_bytes();
                JwtKeys::Single {
                    hmac: hs.then(|| DecodingKey::from_secret(bytes)),
                    rsa: if has(JwtAlgorithm::RS256) {
                        Some(
                            DecodingKey::from_rsa_pem(bytes)
                                .map_err(|_| AuthConfigError::BadPem { alg: "RS256" })?,
                        )
                    } else {
                        None
                    },
                    ec: if has(JwtAlgorithm::ES256) {
                        Some(
                            DecodingKey::from_ec_pem(bytes)
                                .map_err(|_| AuthConfigError::BadPem { alg: "ES256" })?,
                        )
                    } else {
                        None
                    },
                }
            }
            (None, Some(set)) => {
                let set: jsonwebtoken::jwk::JwkSet =
                    serde_json::from_str(set.expose()).map_err(|_| AuthConfigError::BadJwks)?;
                let mut entries = Vec::new();
                for (index, jwk) in set.keys.iter().enumerate() {
                    let key = DecodingKey::from_jwk(jwk)
                        .map_err(|_| AuthConfigError::BadJwk { index })?;
                    entries.push(JwkEntry {
                        kid: jwk.common.key_id.clone(),
                        alg: jwk.common.key_algorithm.map(|a| a.to_string()),
                        key,
                    });
                }
                JwtKeys::Set(entries)
            }
            _ => return Err(AuthConfigError::KeyOrJwks),
        };
        Ok(JwtScheme {
            algorithms: algorithms.iter().copied().map(jwt_alg).collect(),
            keys,
            issuer: issuer.clone(),
            audience: audience.clone(),
            leeway_ms,
            dedupe_jti,
        })
    }

    fn verify(&self, headers: &http::HeaderMap, now_ms: i128) -> Result<Verified, AuthFailure> {
        let h = header_first(headers, "authorization")
            .ok_or(fail(AuthReason::MissingHeader, "no authorization header"))?;
        let (scheme, token) = h
            .trim()
            .split_once(' ')
            .ok_or(fail(AuthReason::Malformed, "authorization is not Bearer"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(fail(AuthReason::Malformed, "authorization is not Bearer"));
        }
        let token = token.trim();

        // Read the header ourselves so that any `alg` (`none` included) that is not listed
        // is reported as wrong_algorithm, before any key is chosen.
        let header_b64 = token.split('.').next().unwrap_or("");
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header_b64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(fail(
                AuthReason::Malformed,
                "token header is not base64url JSON",
            ))?;
        let alg_name = header
            .get("alg")
            .and_then(|a| a.as_str())
            .ok_or(fail(AuthReason::Malformed, "token has no alg"))?;
        let alg = self
            .algorithms
            .iter()
            .copied()
            .find(|a| alg_text(*a) == alg_name)
            .ok_or(fail(
                AuthReason::WrongAlgorithm,
                "token alg is not accepted",
            ))?;

        let key = match &self.keys {
            JwtKeys::Single { hmac, rsa, ec } => match alg {
                Algorithm::HS256 => hmac.as_ref(),
                Algorithm::RS256 => rsa.as_ref(),
                _ => ec.as_ref(),
            }
            .ok_or(fail(AuthReason::WrongAlgorithm, "no key for the token alg"))?,
            JwtKeys::Set(entries) => {
                let kid = header.get("kid").and_then(|k| k.as_str());
                let entry = match kid {
                    Some(kid) => entries.iter().find(|e| e.kid.as_deref() == Some(kid)),
                    None if entries.len() == 1 => entries.first(),
                    None => None,
                }
                .ok_or(fail(
                    AuthReason::UnknownKey,
                    "token kid names no key of the JWKS",
                ))?;
                if entry.alg.as_deref().is_some_and(|a| a != alg_name) {
                    return Err(fail(
                        AuthReason::WrongAlgorithm,
                        "token alg differs from the key's alg",
                    ));
                }
                &entry.key
            }
        };

        // Signature only; claims are checked below against the given `now`.
        let mut v = Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => {
                    fail(AuthReason::BadSignature, "token signature does not verify")
                }
                K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
                    fail(AuthReason::WrongAlgorithm, "token alg does not fit the key")
                }
                _ => fail(AuthReason::Malformed, "token cannot be decoded"),
            }
        })?;
        self.check_claims(&data.claims, now_ms)
    }

    fn check_claims(
        &self,
        claims: &serde_json::Value,
        now_ms: i128,
    ) -> Result<Verified, AuthFailure> {
        let num = |name: &str| -> Result<Option<i128>, AuthFailure> {
            match claims.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(|f| Some((f * 1000.0) as i128))
                    .ok_or(fail(AuthReason::Malformed, "exp or nbf is not a number")),
            }
        };
        let leeway = self.leeway_ms as i128;
        let exp = num("exp")?.ok_or(fail(AuthReason::MissingClaim, "token has no exp"))?;
        // Saturating: `exp` may be any number a sender writes (1e300 saturates the cast).
        if now_ms > exp.saturating_add(leeway) {
            return Err(fail(AuthReason::Expired, "token expired"));
        }
        if let Some(nbf) = num("nbf")?
            && now_ms.saturating_add(leeway) < nbf
        {
            return Err(fail(AuthReason::NotYetValid, "token not valid yet"));
        }
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(|v| v.as_str()) != Some(iss.as_str())
        {
            return Err(fail(AuthReason::WrongIssuer, "token iss does not match"));
        }
        if let Some(aud) = &self.audience {
            let ok = match claims.get("aud") {
                Some(serde_json::Value::String(s)) => s == aud,
                Some(serde_json::Value::Array(a)) => {
                    a.iter().any(|v| v.as_str() == Some(aud.as_str()))
                }
                _ => false,
            };
            if !ok {
                return Err(fail(AuthReason::WrongAudience, "token aud does not match"));
            }
        }
        if !self.dedupe_jti {
            return Ok(Verified::default());
        }
        let jti = match claims.get("jti") {
            None | Some(serde_json::Value::Null) => {
                return Err(fail(AuthReason::MissingClaim, "token has no jti"));
            }
            Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= MAX_JTI_BYTES => {
                s.clone()
            }
            Some(_) => {
                return Err(fail(
                    AuthReason::Malformed,
                    "jti is not a string of 1 to 256 bytes",
                ));
            }
        };
        let until = exp.saturating_add(leeway).clamp(0, u64::MAX as i128) as u64;
        Ok(Verified {
            jti: Some(jti),
            jti_expires_at: UNIX_EPOCH.checked_add(Duration::from_millis(until)),
        })
    }
}

fn alg_text(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
