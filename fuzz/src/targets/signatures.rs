//! Signature headers: every verification scheme with random, near-valid and valid headers
//! and bodies, through both the pre-body check and the full verification.
//!
//! Properties besides "no panic":
//! - a request that verifies also passes [`Verifier::check_headers`] (the pre-body check
//!   never refuses what the verification accepts);
//! - a request built valid (signed over its body, fresh timestamp, good token) verifies;
//! - with `dedupeJti`, a verified token always yields its `jti`.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use causeway_crds::bridge::{HmacAlgorithm, HmacPreset, JwtAlgorithm, SignatureEncoding};
use causeway_crds::config::{AuthConfig, SecretValue};
use causeway_pipeline::Inbound;
use causeway_pipeline::auth::Verifier;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use crate::{Rng, Target};

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HMAC_SECRET: &str = "It's a Secret to Everybody";
const JWT_SECRET: &str = "jwt-shared-secret-for-tests";
const RSA_PRIVATE: &str = include_str!("../../../runtime/pipeline/testdata/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../../../runtime/pipeline/testdata/rsa-public.pem");
const EC_PRIVATE: &str = include_str!("../../../runtime/pipeline/testdata/ec-private.pem");
const EC_PUBLIC: &str = include_str!("../../../runtime/pipeline/testdata/ec-public.pem");
const NOW: u64 = 1_700_000_000;

pub struct Signatures {
    verifiers: Vec<(&'static str, Verifier)>,
    /// RS256 and ES256 tokens signed once (signing is slow in a debug build): (token, valid).
    rs256: Vec<(String, bool)>,
    es256: Vec<(String, bool)>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Input {
    scheme: usize,
    headers: Vec<(String, Vec<u8>)>,
    query: String,
    body: Vec<u8>,
    now: u64,
    /// Built valid, unmutated: must verify.
    valid: bool,
}

fn secret(s: &str) -> SecretValue {
    SecretValue(s.to_string())
}

fn hmac_cfg(preset: Option<HmacPreset>) -> AuthConfig {
    AuthConfig::Hmac {
        preset,
        secrets: vec![secret(HMAC_SECRET)],
        header: None,
        algorithm: None,
        encoding: None,
        prefix: None,
        timestamp_header: None,
        signed_content: None,
        tolerance_ms: 300_000,
    }
}

fn jwt_cfg(alg: JwtAlgorithm, key: &str, dedupe_jti: bool) -> AuthConfig {
    AuthConfig::Jwt {
        algorithms: vec![alg],
        key: Some(secret(key)),
        jwks: None,
        issuer: Some("https://issuer.example".into()),
        audience: Some("causeway".into()),
        leeway_ms: 30_000,
        dedupe_jti,
    }
}

impl Signatures {
    pub fn new() -> Signatures {
        let configs: Vec<(&'static str, AuthConfig)> = vec![
            (
                "standardWebhooks",
                AuthConfig::StandardWebhooks {
                    secrets: vec![secret(SW_SECRET)],
                    tolerance_ms: 300_000,
                },
            ),
            ("github", hmac_cfg(Some(HmacPreset::Github))),
            ("stripe", hmac_cfg(Some(HmacPreset::Stripe))),
            ("shopify", hmac_cfg(Some(HmacPreset::Shopify))),
            ("slack", hmac_cfg(Some(HmacPreset::Slack))),
            (
                "custom",
                AuthConfig::Hmac {
                    preset: None,
                    secrets: vec![secret(HMAC_SECRET)],
                    header: Some("X-Sig".into()),
                    algorithm: Some(HmacAlgorithm::Sha512),
                    encoding: Some(SignatureEncoding::Base64),
                    prefix: Some("v=".into()),
                    timestamp_header: Some("X-Ts".into()),
                    signed_content: Some("{timestamp}:{body}".into()),
                    tolerance_ms: 60_000,
                },
            ),
            ("hs256", jwt_cfg(JwtAlgorithm::HS256, JWT_SECRET, true)),
            ("rs256", jwt_cfg(JwtAlgorithm::RS256, RSA_PUBLIC, false)),
            ("es256", jwt_cfg(JwtAlgorithm::ES256, EC_PUBLIC, true)),
            (
                "basic",
                AuthConfig::Basic {
                    username: "hook".into(),
                    password: secret("p4ss:word"),
                },
            ),
            (
                "apiKeyHeader",
                AuthConfig::ApiKey {
                    header: Some("x-api-key".into()),
                    query_param: None,
                    keys: vec![secret("k-123456")],
                },
            ),
            (
                "apiKeyQuery",
                AuthConfig::ApiKey {
                    header: None,
                    query_param: Some("key".into()),
                    keys: vec![secret("k-123456")],
                },
            ),
        ];
        let verifiers = configs
            .into_iter()
            .filter_map(|(n, c)| Verifier::new(&c).ok().map(|v| (n, v)))
            .collect();
        let mut rng = Rng::new(7);
        let rs256 = (0..24)
            .map(|_| jwt(&mut rng, jsonwebtoken::Algorithm::RS256, NOW))
            .collect();
        let es256 = (0..24)
            .map(|_| jwt(&mut rng, jsonwebtoken::Algorithm::ES256, NOW))
            .collect();
        Signatures {
            verifiers,
            rs256,
            es256,
        }
    }
}

impl Default for Signatures {
    fn default() -> Self {
        Signatures::new()
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut m) = <M as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    mac::<Hmac<sha2::Sha256>>(key, parts)
}

/// A timestamp: mostly `now`, sometimes stale, sometimes junk.
fn timestamp(rng: &mut Rng, now: u64) -> (String, bool) {
    match rng.below(8) {
        0 => (format!("{}", now as i64 - 3600), false),
        1 => (
            rng.pick(&[
                "",
                "abc",
                "-1",
                "99999999999999999999",
                "1e9",
                " 1700000000 ",
                "0x10",
            ])
            .to_string(),
            false,
        ),
        2 => (rng.int().to_string(), false),
        _ => (now.to_string(), true),
    }
}

fn jwt(rng: &mut Rng, alg: jsonwebtoken::Algorithm, now: u64) -> (String, bool) {
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => {
            jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes())
        }
        jsonwebtoken::Algorithm::ES256 => {
            jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes())
        }
        _ => Ok(jsonwebtoken::EncodingKey::from_secret(
            JWT_SECRET.as_bytes(),
        )),
    };
    let Ok(key) = key else {
        return (String::new(), false);
    };
    let mut valid = true;
    let mut claims = serde_json::json!({
        "iss": "https://issuer.example", "aud": "causeway", "exp": now + 600, "jti": format!("j-{}", rng.below(1000)),
    });
    for _ in 0..rng.below(3) {
        let k = *rng.pick(&["iss", "aud", "exp", "nbf", "jti", "sub", "iat"]);
        claims[k] = match rng.below(3) {
            0 => rng.json(2),
            1 => serde_json::json!(*rng.pick(&[1e300, -1e300, 0.5, f64::MAX])),
            _ => serde_json::json!(rng.int()),
        };
        valid = false;
    }
    let mut header = jsonwebtoken::Header::new(alg);
    if rng.one_in(8) {
        header.kid = Some(rng.text(5));
    }
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap_or_default();
    if rng.one_in(4) {
        // A forged header or payload segment.
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&rng.json(2)).unwrap_or_default());
        let mut parts: Vec<&str> = token.split('.').collect();
        if !parts.is_empty() {
            let i = rng.below(parts.len());
            parts[i] = &forged;
            return (parts.join("."), false);
        }
    }
    (token, valid)
}

impl Target for Signatures {
    fn name(&self) -> &'static str {
        "signatures"
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let scheme = rng.below(self.verifiers.len());
        let name = self.verifiers.get(scheme).map(|(n, _)| *n).unwrap_or("");
        let body = rng.bytes(64);
        let now = NOW;
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        let mut query = String::new();
        let mut valid = true;
        let mut h = |k: &str, v: String| headers.push((k.to_string(), v.into_bytes()));
        match name {
            "standardWebhooks" => {
                let id = if rng.one_in(8) {
                    rng.text(6)
                } else {
                    "msg_1".to_string()
                };
                let (ts, ok) = timestamp(rng, now);
                valid &= ok;
                let key = STANDARD.decode(&SW_SECRET[6..]).unwrap_or_default();
                let sig = STANDARD.encode(sha256(
                    &key,
                    &[id.as_bytes(), b".", ts.trim().as_bytes(), b".", &body],
                ));
                h("webhook-id", id);
                h("webhook-timestamp", ts);
                h(
                    "webhook-signature",
                    match rng.below(6) {
                        0 => {
                            valid = false;
                            format!("v1,{}", STANDARD.encode(rng.bytes(40)))
                        }
                        1 => format!("v2,abc v1,{sig} v1a,{}", rng.text(4)),
                        2 => {
                            valid = false;
                            rng.text(20)
                        }
                        _ => format!("v1,{sig}"),
                    },
                );
            }
            "github" | "shopify" | "custom" | "slack" | "stripe" => {
                let (ts, ok) = timestamp(rng, now);
                let key = HMAC_SECRET.as_bytes();
                let (header, value, uses_ts) = match name {
                    "github" => (
                        "x-hub-signature-256",
                        format!("sha256={}", hex::encode(sha256(key, &[&body]))),
                        false,
                    ),
                    "shopify" => (
                        "x-shopify-hmac-sha256",
                        STANDARD.encode(sha256(key, &[&body])),
                        false,
                    ),
                    "slack" => (
                        "x-slack-signature",
                        format!(
                            "v0={}",
                            hex::encode(sha256(key, &[b"v0:", ts.trim().as_bytes(), b":", &body]))
                        ),
                        true,
                    ),
                    "stripe" => (
                        "stripe-signature",
                        format!(
                            "t={},v1={}",
                            ts.trim(),
                            hex::encode(sha256(key, &[ts.trim().as_bytes(), b".", &body]))
                        ),
                        true,
                    ),
                    _ => (
                        "x-sig",
                        format!(
                            "v={}",
                            STANDARD.encode(mac::<Hmac<sha2::Sha512>>(
                                key,
                                &[ts.trim().as_bytes(), b":", &body]
                            ))
                        ),
                        true,
                    ),
                };
                if uses_ts {
                    valid &= ok;
                }
                match rng.below(6) {
                    0 => {
                        valid = false;
                        h(header, rng.text(30));
                    }
                    1 => {
                        valid = false;
                        h(
                            header,
                            format!("{}{}", &value[..value.len() / 2], hex::encode(rng.bytes(8))),
                        );
                    }
                    _ => h(header, value),
                }
                if name == "slack" {
                    h("x-slack-request-timestamp", ts);
                } else if name == "custom" {
                    h("x-ts", ts);
                }
            }
            "hs256" | "rs256" | "es256" => {
                let alg = match name {
                    "rs256" => jsonwebtoken::Algorithm::RS256,
                    "es256" => jsonwebtoken::Algorithm::ES256,
                    _ => jsonwebtoken::Algorithm::HS256,
                };
                // Sometimes a token of another algorithm (confusion attempts).
                let alg = if rng.one_in(6) {
                    valid = false;
                    *rng.pick(&[
                        jsonwebtoken::Algorithm::HS256,
                        jsonwebtoken::Algorithm::RS256,
                        jsonwebtoken::Algorithm::ES256,
                    ])
                } else {
                    alg
                };
                let (t, ok) = match alg {
                    jsonwebtoken::Algorithm::RS256 => rng.pick(&self.rs256).clone(),
                    jsonwebtoken::Algorithm::ES256 => rng.pick(&self.es256).clone(),
                    _ => jwt(rng, alg, now),
                };
                valid &= ok;
                let scheme = if rng.one_in(8) {
                    rng.pick(&["bearer", "Basic", "", "Bearer  "]).to_string()
                } else {
                    "Bearer".into()
                };
                valid &= scheme == "Bearer" || scheme == "bearer";
                h("authorization", format!("{scheme} {t}"));
            }
            "basic" => {
                let creds = if rng.one_in(3) {
                    valid = false;
                    rng.text(12)
                } else {
                    "hook:p4ss:word".to_string()
                };
                h("authorization", format!("Basic {}", STANDARD.encode(creds)));
            }
            _ => {
                let key = if rng.one_in(3) {
                    valid = false;
                    rng.text(10)
                } else {
                    "k-123456".to_string()
                };
                if name == "apiKeyQuery" {
                    query = format!(
                        "a=1&key={}",
                        key.replace('%', "%25")
                            .replace('&', "%26")
                            .replace('+', "%2B")
                            .replace('#', "%23")
                    );
                } else {
                    h("x-api-key", key);
                }
            }
        }
        // Noise: extra, duplicated or dropped headers, and byte-level damage.
        if rng.one_in(4) {
            valid = false;
            match rng.below(3) {
                0 => headers.push((
                    rng.pick(&[
                        "webhook-signature",
                        "authorization",
                        "x-ts",
                        "stripe-signature",
                    ])
                    .to_string(),
                    rng.bytes(40),
                )),
                1 if !headers.is_empty() => {
                    let i = rng.below(headers.len());
                    headers.remove(i);
                }
                _ if !headers.is_empty() => {
                    let i = rng.below(headers.len());
                    rng.mutate_bytes(&mut headers[i].1);
                }
                _ => {}
            }
        }
        let input = Input {
            scheme,
            headers,
            query,
            body,
            now,
            valid,
        };
        serde_json::to_vec(&input).unwrap_or_default()
    }

    fn execute(&self, input: &[u8]) -> Option<String> {
        let Ok(input) = serde_json::from_slice::<Input>(input) else {
            return None;
        };
        let (name, v) = self.verifiers.get(input.scheme)?;
        let (headers, all_headers_valid) = super::header_map_checked(&input.headers);
        let now = UNIX_EPOCH + Duration::from_secs(input.now);
        let req = Inbound {
            method: "POST",
            headers: &headers,
            query: &input.query,
            body: &input.body,
        };
        let pre = v.check_headers(&headers, &input.query, now);
        let full = v.verify_full(&req, now);
        assert_eq!(
            v.verify(&req, now),
            full.clone().map(|_| ()),
            "{name}: verify and verify_full differ"
        );
        if let Ok(verified) = &full {
            assert_eq!(
                pre,
                Ok(()),
                "{name}: verified, but the pre-body check refused: {input:?}"
            );
            if matches!(*name, "hs256" | "es256") {
                assert!(
                    verified.jti.is_some(),
                    "{name}: dedupeJti verified without a jti"
                );
                assert!(
                    verified.jti_expires_at.is_some_and(|t| t >= now),
                    "{name}: jti remembered for no time"
                );
            }
        }
        if input.valid && all_headers_valid {
            assert_eq!(
                full.as_ref().map(|_| ()),
                Ok(()),
                "{name}: a valid request was refused: {input:?}"
            );
        }
        None
    }
}
