//! Outbound signing with Standard Webhooks.
//!
//! `webhook-id` is the event id (the same on every retry, so receivers can deduplicate),
//! `webhook-timestamp` the Unix time of the attempt in seconds, and `webhook-signature`
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64-decoded part
//! of the `whsec_…` secret.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::auth::{hmac_sha256, standard_webhooks_key};

/// A signing secret that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("the signing secret is not base64 after the whsec_ prefix")]
    BadSecret,
}

/// A decoded Standard Webhooks signing key. `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey {
    key: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Decode `whsec_<base64>` (the prefix is optional).
    pub fn new(secret: &str) -> Result<SigningKey, SigningError> {
        standard_webhooks_key(secret)
            .map(|key| SigningKey { key })
            .ok_or(SigningError::BadSecret)
    }

    /// The three headers for one attempt.
    pub fn headers(&self, id: &str, ts: i64, body: &[u8]) -> [(&'static str, String); 3] {
        let ts = ts.to_string();
        let mac = hmac_sha256(&self.key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        [
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts),
            ("webhook-signature", format!("v1,{}", STANDARD.encode(mac))),
        ]
    }
}

/// WebSub's content signature: `sha256=<hex HMAC-SHA256 of the body>`, keyed with the
/// subscriber's `hub.secret` as given (the value of `X-Hub-Signature-256`).
pub fn hub_signature_256(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, &[body])))
}

/// The Standard Webhooks headers for one attempt.
///
/// Prefer [`SigningKey`] (decoded once; `compile_bridge` has already rejected bad secrets).
/// A secret that does not decode is used as raw bytes here, so this never fails; such a
/// secret cannot reach the runtime through `compile_bridge`.
pub fn standard_webhooks_headers(
    secret: &str,
    id: &str,
    ts: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let key = SigningKey::new(secret).unwrap_or_else(|_| SigningKey {
        key: secret.as_bytes().to_vec(),
    });
    key.headers(id, ts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Inbound;
    use crate::auth::Verifier;
    use causeway_config::{AuthConfig, SecretValue};
    use std::time::{Duration, UNIX_EPOCH};

    /// The well-known HMAC-SHA256 vector (key "key", the quick brown fox), hex as WebSub
    /// sends it.
    #[test]
    fn hub_signature_is_hex_hmac_sha256_of_the_body() {
        assert_eq!(
            hub_signature_256(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    /// Produced with the reference Python library, standardwebhooks 1.1.0:
    ///
    /// ```python
    /// from standardwebhooks.webhooks import Webhook
    /// from datetime import datetime, timezone
    /// wh = Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    /// wh.sign("evt_01HZX", datetime.fromtimestamp(1700000000, tz=timezone.utc), '{"order":42,"note":"caf\u00e9"}')
    /// ```
    const PY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const PY_ID: &str = "evt_01HZX";
    const PY_TS: i64 = 1_700_000_000;
    const PY_BODY: &str = "{\"order\":42,\"note\":\"caf\u{e9}\"}";
    const PY_SIGNATURE: &str = "v1,cXXH2W0VUDDTSs07dXr224cwRPPEyUBhSF3NZECgINM=";

    #[test]
    fn matches_the_reference_library() {
        let h = standard_webhooks_headers(PY_SECRET, PY_ID, PY_TS, PY_BODY.as_bytes());
        assert_eq!(h[0], ("webhook-id", PY_ID.to_string()));
        assert_eq!(h[1], ("webhook-timestamp", "1700000000".to_string()));
        assert_eq!(h[2], ("webhook-signature", PY_SIGNATURE.to_string()));
    }

    #[test]
    fn matches_the_published_example() {
        // The example of the Standard Webhooks libraries' tests and README (see auth tests).
        let h = standard_webhooks_headers(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(h[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn our_verifier_accepts_what_we_sign() {
        let secret = "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLW9ubHk=";
        let key = SigningKey::new(secret).unwrap();
        let body = b"{\"a\":1}";
        let ts = 1_750_000_000;
        let mut headers = http::HeaderMap::new();
        for (k, v) in key.headers("evt_1", ts, body) {
            headers.insert(k, v.parse().unwrap());
        }
        let v = Verifier::new(&AuthConfig::StandardWebhooks {
            secrets: vec![SecretValue(secret.into())],
            tolerance_ms: 300_000,
        })
        .unwrap();
        let req = Inbound {
            method: "POST",
            headers: &headers,
            query: "",
            body,
        };
        let now = UNIX_EPOCH + Duration::from_secs(ts as u64 + 10);
        assert_eq!(v.verify(&req, now), Ok(()));
        let tampered = Inbound {
            body: b"{\"a\":2}",
            ..req
        };
        assert!(v.verify(&tampered, now).is_err());
    }

    #[test]
    fn bad_secret_is_refused_and_hidden() {
        let e = SigningKey::new("whsec_not base64!").unwrap_err();
        assert!(!e.to_string().contains("not base64!"));
        let k = SigningKey::new("whsec_c2VjcmV0").unwrap();
        assert_eq!(format!("{k:?}"), "SigningKey(<redacted>)");
    }
}
