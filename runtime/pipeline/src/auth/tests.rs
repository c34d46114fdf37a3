use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use causeway_config::{
    AuthConfig, HmacAlgorithm, HmacPreset, JwtAlgorithm, SecretValue, SignatureEncoding,
};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

// Test-only keys, see testdata/README.md.
const RSA_PRIVATE: &str = include_str!("../../testdata/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../../testdata/rsa-public.pem");
const EC_PRIVATE: &str = include_str!("../../testdata/ec-private.pem");
const EC_PUBLIC: &str = include_str!("../../testdata/ec-public.pem");

/// name, verifier, headers, body, now, expected
type SwCase<'a> = (
    &'a str,
    Verifier,
    http::HeaderMap,
    &'a [u8],
    SystemTime,
    Result<(), AuthReason>,
);
/// name, verifier, headers, now (seconds), expected
type JwtCase<'a> = (
    &'a str,
    &'a Verifier,
    http::HeaderMap,
    u64,
    Result<(), AuthReason>,
);

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn check(
    v: &Verifier,
    h: &http::HeaderMap,
    query: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<(), AuthReason> {
    v.verify(
        &Inbound {
            method: "POST",
            headers: h,
            query,
            body,
        },
        now,
    )
    .map_err(|f| f.reason)
}

fn secrets(s: &[&str]) -> Vec<SecretValue> {
    s.iter().map(|s| SecretValue(s.to_string())).collect()
}

// ---------------------------------------------------------------- Standard Webhooks

/// The example published with the Standard Webhooks specification (the test vector of its
/// reference libraries, github.com/standard-webhooks/standard-webhooks, libraries/*/tests),
/// and reproduced with the Python reference library standardwebhooks 1.1.0:
/// `Webhook(SW_SECRET).sign(SW_ID, datetime.fromtimestamp(SW_TS, tz=timezone.utc), SW_BODY)`.
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: u64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
/// Another valid secret, standing for the one a sender rotated to.
const SW_OTHER: &str = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==";

fn sw(secrets_: &[&str]) -> Verifier {
    Verifier::new(&AuthConfig::StandardWebhooks {
        secrets: secrets(secrets_),
        tolerance_ms: 300_000,
    })
    .unwrap()
}

fn sw_headers(id: &str, ts: &str, sig: &str) -> http::HeaderMap {
    headers(&[
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ])
}

#[test]
fn standard_webhooks_published_vector() {
    let h = sw_headers(SW_ID, &SW_TS.to_string(), SW_SIG);
    assert_eq!(check(&sw(&[SW_SECRET]), &h, "", SW_BODY, at(SW_TS)), Ok(()));
    // The prefix is optional, as in the reference libraries.
    assert_eq!(
        check(
            &sw(&["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]),
            &h,
            "",
            SW_BODY,
            at(SW_TS)
        ),
        Ok(())
    );
}

#[test]
fn standard_webhooks_table() {
    let ts = SW_TS.to_string();
    let ok = sw_headers(SW_ID, &ts, SW_SIG);
    let cases: Vec<SwCase> = vec![
        (
            "valid",
            sw(&[SW_SECRET]),
            ok.clone(),
            SW_BODY,
            at(SW_TS),
            Ok(()),
        ),
        (
            "5 minutes late is fine",
            sw(&[SW_SECRET]),
            ok.clone(),
            SW_BODY,
            at(SW_TS + 300),
            Ok(()),
        ),
        (
            "5 minutes early is fine",
            sw(&[SW_SECRET]),
            ok.clone(),
            SW_BODY,
            at(SW_TS - 300),
            Ok(()),
        ),
        (
            "stale",
            sw(&[SW_SECRET]),
            ok.clone(),
            SW_BODY,
            at(SW_TS + 301),
            Err(AuthReason::StaleTimestamp),
        ),
        (
            "future",
            sw(&[SW_SECRET]),
            ok.clone(),
            SW_BODY,
            at(SW_TS - 301),
            Err(AuthReason::StaleTimestamp),
        ),
        (
            "tampered body",
            sw(&[SW_SECRET]),
            ok.clone(),
            br#"{"test": 2432232315}"#,
            at(SW_TS),
            Err(AuthReason::BadSignature),
        ),
        (
            "wrong secret",
            sw(&[SW_OTHER]),
            ok.clone(),
            SW_BODY,
            at(SW_TS),
            Err(AuthReason::BadSignature),
        ),
        (
            "rotation: old secret still listed",
            sw(&[SW_OTHER, SW_SECRET]),
            ok.clone(),
            SW_BODY,
            at(SW_TS),
            Ok(()),
        ),
        (
            "rotation: order does not matter",
            sw(&[SW_SECRET, SW_OTHER]),
            ok.clone(),
            SW_BODY,
            at(SW_TS),
            Ok(()),
        ),
        (
            "several signatures, one valid",
            sw(&[SW_SECRET]),
            sw_headers(SW_ID, &ts, &format!("v1,AAAA v2,xyz {SW_SIG}")),
            SW_BODY,
            at(SW_TS),
            Ok(()),
        ),
        (
            "wrong id",
            sw(&[SW_SECRET]),
            sw_headers("msg_other", &ts, SW_SIG),
            SW_BODY,
            at(SW_TS),
            Err(AuthReason::BadSignature),
        ),
        (
            "missing signature header",
            sw(&[SW_SECRET]),
            headers(&[("webhook-id", SW_ID), ("webhook-timestamp", &ts)]),
            SW_BODY,
            at(SW_TS),
            Err(AuthReason::MissingHeader),
        ),
        (
            "missing id header",
            sw(&[SW_SECRET]),
            headers(&[("webhook-signature", SW_SIG), ("webhook-timestamp", &ts)]),
            SW_BODY,
            at(SW_TS),
            Err(AuthReason::MissingHeader),
        ),
        (
            "timestamp not a number",
            sw(&[SW_SECRET]),
            sw_headers(SW_ID, "yesterday", SW_SIG),
            SW_BODY,
            at(SW_TS),
            Err(AuthReason::Malformed),
        ),
        (
            "no v1 entry",
            sw(&[SW_SECRET]),
            sw_headers(SW_ID, &ts, "v2,abc"),
            SW_BODY,
            at(SW_TS),
            Err(AuthReason::Malformed),
        ),
        (
            "not base64",
            sw(&[SW_SECRET]),
            sw_headers(SW_ID, &ts, "v1,@@@"),
            SW_BODY,
            at(SW_TS),
            Err(AuthReason::Malformed),
        ),
    ];
    for (name, v, h, body, now, want) in cases {
        assert_eq!(check(&v, &h, "", body, now), want, "{name}");
    }
}

#[test]
fn standard_webhooks_bad_secret_is_a_config_error_without_the_secret() {
    let e = Verifier::new(&AuthConfig::StandardWebhooks {
        secrets: secrets(&["whsec_%%%sekrit%%%"]),
        tolerance_ms: 1,
    })
    .unwrap_err();
    assert_eq!(e, AuthConfigError::BadStandardWebhooksSecret { index: 0 });
    assert!(!e.to_string().contains("sekrit"));
}

// ---------------------------------------------------------------- HMAC presets

fn hmac(preset: Option<HmacPreset>, s: &[&str]) -> AuthConfig {
    AuthConfig::Hmac {
        preset,
        secrets: secrets(s),
        header: None,
        algorithm: None,
        encoding: None,
        prefix: None,
        timestamp_header: None,
        signed_content: None,
        tolerance_ms: 300_000,
    }
}

/// GitHub's documented example ("Validating webhook deliveries", docs.github.com):
/// secret "It's a Secret to Everybody", payload "Hello, World!".
const GH_SECRET: &str = "It's a Secret to Everybody";
const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn github_documented_example() {
    let v = Verifier::new(&hmac(Some(HmacPreset::Github), &[GH_SECRET])).unwrap();
    let h = headers(&[("X-Hub-Signature-256", GH_SIG)]);
    assert_eq!(check(&v, &h, "", b"Hello, World!", at(0)), Ok(()));
    assert_eq!(
        check(&v, &h, "", b"Hello, World?", at(0)),
        Err(AuthReason::BadSignature)
    );
    // Upper-case hex is the same signature.
    let upper = headers(&[(
        "x-hub-signature-256",
        &GH_SIG.to_uppercase().replace("SHA256=", "sha256="),
    )]);
    assert_eq!(check(&v, &upper, "", b"Hello, World!", at(0)), Ok(()));
    let no_prefix = headers(&[("x-hub-signature-256", &GH_SIG["sha256=".len()..])]);
    assert_eq!(
        check(&v, &no_prefix, "", b"Hello, World!", at(0)),
        Err(AuthReason::Malformed)
    );
    assert_eq!(
        check(&v, &headers(&[]), "", b"Hello, World!", at(0)),
        Err(AuthReason::MissingHeader)
    );
    assert_eq!(
        v.sensitive_headers(),
        vec!["x-hub-signature-256".to_string()]
    );
    let rotated =
        Verifier::new(&hmac(Some(HmacPreset::Github), &["new secret", GH_SECRET])).unwrap();
    assert_eq!(check(&rotated, &h, "", b"Hello, World!", at(0)), Ok(()));
}

/// Slack's documented example ("Verifying requests from Slack", api.slack.com).
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: u64 = 1_531_420_618;
const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

#[test]
fn slack_documented_example() {
    let v = Verifier::new(&hmac(Some(HmacPreset::Slack), &[SLACK_SECRET])).unwrap();
    let ts = SLACK_TS.to_string();
    let h = headers(&[
        ("X-Slack-Signature", SLACK_SIG),
        ("X-Slack-Request-Timestamp", &ts),
    ]);
    let body = SLACK_BODY.as_bytes();
    assert_eq!(check(&v, &h, "", body, at(SLACK_TS + 60)), Ok(()));
    assert_eq!(
        check(&v, &h, "", body, at(SLACK_TS + 301)),
        Err(AuthReason::StaleTimestamp)
    );
    let other_ts = headers(&[
        ("x-slack-signature", SLACK_SIG),
        ("x-slack-request-timestamp", "1531420619"),
    ]);
    assert_eq!(
        check(&v, &other_ts, "", body, at(SLACK_TS)),
        Err(AuthReason::BadSignature)
    );
    let no_ts = headers(&[("x-slack-signature", SLACK_SIG)]);
    assert_eq!(
        check(&v, &no_ts, "", body, at(SLACK_TS)),
        Err(AuthReason::MissingHeader)
    );
}

/// Produced with the official Python library stripe 16.1.0, which also verified it:
/// ```python
/// sig = stripe.WebhookSignature._compute_signature(f"{t}.{payload}", secret)
/// stripe.WebhookSignature.verify_header(payload, f"t={t},v1={sig}", secret, tolerance=None)  # True
/// ```
/// The key is the whole secret string, `whsec_` included (unlike Standard Webhooks).
const STRIPE_SECRET: &str = "whsec_causeway_test_only_5f1c2b";
const STRIPE_TS: u64 = 1_700_000_000;
const STRIPE_BODY: &str =
    r#"{"id":"evt_test_webhook","object":"event","type":"payment_intent.succeeded"}"#;
const STRIPE_V1: &str = "44e445fb52b53b7b39e77ea57468dba3083dd9572ee2f4d2a44e4979837ada03";

#[test]
fn stripe_vector_from_the_official_library() {
    let v = Verifier::new(&hmac(Some(HmacPreset::Stripe), &[STRIPE_SECRET])).unwrap();
    let body = STRIPE_BODY.as_bytes();
    let now = at(STRIPE_TS + 10);
    let hdr = |value: &str| headers(&[("Stripe-Signature", value)]);
    let cases: Vec<(&str, String, Result<(), AuthReason>)> = vec![
        ("valid", format!("t={STRIPE_TS},v1={STRIPE_V1}"), Ok(())),
        (
            "rolled secret: two v1 and a v0",
            format!(
                "t={STRIPE_TS},v1={},v1={STRIPE_V1},v0=abcd",
                "00".repeat(32)
            ),
            Ok(()),
        ),
        (
            "other timestamp",
            format!("t={},v1={STRIPE_V1}", STRIPE_TS + 1),
            Err(AuthReason::BadSignature),
        ),
        (
            "no timestamp",
            format!("v1={STRIPE_V1}"),
            Err(AuthReason::Malformed),
        ),
        (
            "no v1",
            format!("t={STRIPE_TS},v0={STRIPE_V1}"),
            Err(AuthReason::Malformed),
        ),
        (
            "not hex",
            format!("t={STRIPE_TS},v1=zz"),
            Err(AuthReason::Malformed),
        ),
    ];
    for (name, value, want) in cases {
        assert_eq!(check(&v, &hdr(&value), "", body, now), want, "{name}");
    }
    let ok = hdr(&format!("t={STRIPE_TS},v1={STRIPE_V1}"));
    assert_eq!(
        check(&v, &ok, "", body, at(STRIPE_TS + 301)),
        Err(AuthReason::StaleTimestamp)
    );
    // Keyed like Standard Webhooks (base64 after the prefix) it would not match.
    let decoded_key = Verifier::new(&hmac(
        Some(HmacPreset::Stripe),
        &["causeway_test_only_5f1c2b"],
    ))
    .unwrap();
    assert_eq!(
        check(&decoded_key, &ok, "", body, now),
        Err(AuthReason::BadSignature)
    );
}

/// Shopify signs `base64(HMAC-SHA256(secret, body))` ("Verify webhooks", shopify.dev). No
/// published vector; produced with Python's standard library following that algorithm:
/// `base64.b64encode(hmac.new(b"shpss_causeway_test_only", body, hashlib.sha256).digest())`.
const SHOPIFY_SECRET: &str = "shpss_causeway_test_only";
const SHOPIFY_BODY: &str =
    r#"{"id":820982911946154508,"email":"jon@example.com","total_price":"199.65"}"#;
const SHOPIFY_SIG: &str = "2xRIK3w02enxWyNzjSQfKhD++/i1UZwqaSIO1R/IcXk=";

#[test]
fn shopify_vector() {
    let v = Verifier::new(&hmac(Some(HmacPreset::Shopify), &[SHOPIFY_SECRET])).unwrap();
    let h = headers(&[("X-Shopify-Hmac-Sha256", SHOPIFY_SIG)]);
    assert_eq!(check(&v, &h, "", SHOPIFY_BODY.as_bytes(), at(0)), Ok(()));
    assert_eq!(
        check(&v, &h, "", b"{}", at(0)),
        Err(AuthReason::BadSignature)
    );
    let hex_instead = headers(&[("x-shopify-hmac-sha256", "deadbeef!")]);
    assert_eq!(
        check(&v, &hex_instead, "", b"{}", at(0)),
        Err(AuthReason::Malformed)
    );
}

#[test]
fn generic_hmac_with_overrides() {
    // sha1, base64, a prefix, a timestamp header and a custom signed content.
    let key = "generic-secret";
    let body = b"payload";
    let ts = 1_700_000_000u64;
    let mac = run_mac::<Hmac<sha1::Sha1>>(key.as_bytes(), &[format!("{ts}|").as_bytes(), body]);
    let sig = format!("sig={}", STANDARD.encode(mac));
    let cfg = AuthConfig::Hmac {
        preset: None,
        secrets: secrets(&[key]),
        header: Some("X-Signature".into()),
        algorithm: Some(HmacAlgorithm::Sha1),
        encoding: Some(SignatureEncoding::Base64),
        prefix: Some("sig=".into()),
        timestamp_header: Some("X-Timestamp".into()),
        signed_content: Some("{timestamp}|{body}".into()),
        tolerance_ms: 60_000,
    };
    let v = Verifier::new(&cfg).unwrap();
    let h = headers(&[("x-signature", &sig), ("x-timestamp", &ts.to_string())]);
    assert_eq!(check(&v, &h, "", body, at(ts + 59)), Ok(()));
    assert_eq!(
        check(&v, &h, "", body, at(ts + 61)),
        Err(AuthReason::StaleTimestamp)
    );

    // sha512 hex, GitHub preset with the header overridden.
    let mac = run_mac::<Hmac<sha2::Sha512>>(key.as_bytes(), &[body]);
    let cfg = AuthConfig::Hmac {
        preset: Some(HmacPreset::Github),
        secrets: secrets(&[key]),
        header: Some("X-Hub-Signature-512".into()),
        algorithm: Some(HmacAlgorithm::Sha512),
        encoding: None,
        prefix: Some("sha512=".into()),
        timestamp_header: None,
        signed_content: None,
        tolerance_ms: 300_000,
    };
    let v = Verifier::new(&cfg).unwrap();
    let h = headers(&[(
        "x-hub-signature-512",
        &format!("sha512={}", hex::encode(mac)),
    )]);
    assert_eq!(check(&v, &h, "", body, at(0)), Ok(()));
    assert_eq!(
        v.sensitive_headers(),
        vec!["x-hub-signature-512".to_string()]
    );
}

#[test]
fn hmac_config_errors() {
    let mut no_header = hmac(None, &["k"]);
    assert_eq!(
        Verifier::new(&no_header).unwrap_err(),
        AuthConfigError::NoHeader
    );
    if let AuthConfig::Hmac {
        header,
        signed_content,
        ..
    } = &mut no_header
    {
        *header = Some("x-sig".into());
        *signed_content = Some("{timestamp}".into());
    }
    assert_eq!(
        Verifier::new(&no_header).unwrap_err(),
        AuthConfigError::ContentWithoutBody
    );
    if let AuthConfig::Hmac { signed_content, .. } = &mut no_header {
        *signed_content = Some("{timestamp}.{body}".into());
    }
    assert_eq!(
        Verifier::new(&no_header).unwrap_err(),
        AuthConfigError::TimestampWithoutHeader
    );
    assert_eq!(
        Verifier::new(&hmac(Some(HmacPreset::Github), &[])).unwrap_err(),
        AuthConfigError::NoSecret { scheme: "hmac" }
    );
}

// ---------------------------------------------------------------- JWT

const NOW: u64 = 1_700_000_000;

fn jwt_cfg(algs: &[JwtAlgorithm], key: Option<&str>, jwks: Option<&str>) -> AuthConfig {
    AuthConfig::Jwt {
        algorithms: algs.to_vec(),
        key: key.map(|k| SecretValue(k.into())),
        jwks: jwks.map(|k| SecretValue(k.into())),
        issuer: Some("https://issuer.example".into()),
        audience: Some("causeway".into()),
        leeway_ms: 30_000,
        dedupe_jti: false,
    }
}

fn claims() -> serde_json::Value {
    json!({"iss": "https://issuer.example", "aud": "causeway", "sub": "sender", "exp": NOW + 600, "iat": NOW})
}

fn token(
    alg: Algorithm,
    key: &EncodingKey,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn bearer(t: &str) -> http::HeaderMap {
    headers(&[("authorization", &format!("Bearer {t}"))])
}

fn hs_key() -> EncodingKey {
    EncodingKey::from_secret(b"jwt-shared-secret-for-tests")
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()
}

fn with(mut c: serde_json::Value, k: &str, v: serde_json::Value) -> serde_json::Value {
    c[k] = v;
    c
}

fn without(mut c: serde_json::Value, k: &str) -> serde_json::Value {
    c.as_object_mut().unwrap().remove(k);
    c
}

#[test]
fn jwt_table() {
    let hs = Verifier::new(&jwt_cfg(
        &[JwtAlgorithm::HS256],
        Some("jwt-shared-secret-for-tests"),
        None,
    ))
    .unwrap();
    let rs = Verifier::new(&jwt_cfg(&[JwtAlgorithm::RS256], Some(RSA_PUBLIC), None)).unwrap();
    let es = Verifier::new(&jwt_cfg(&[JwtAlgorithm::ES256], Some(EC_PUBLIC), None)).unwrap();
    let c = claims();
    let none_token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    let cases: Vec<JwtCase> = vec![
        (
            "HS256 valid",
            &hs,
            bearer(&token(Algorithm::HS256, &hs_key(), None, &c)),
            NOW,
            Ok(()),
        ),
        (
            "RS256 valid",
            &rs,
            bearer(&token(Algorithm::RS256, &rsa_key(), None, &c)),
            NOW,
            Ok(()),
        ),
        (
            "ES256 valid",
            &es,
            bearer(&token(Algorithm::ES256, &ec_key(), None, &c)),
            NOW,
            Ok(()),
        ),
        (
            "expired",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &hs_key(),
                None,
                &with(c.clone(), "exp", json!(NOW - 31)),
            )),
            NOW,
            Err(AuthReason::Expired),
        ),
        (
            "expired within leeway",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &hs_key(),
                None,
                &with(c.clone(), "exp", json!(NOW - 29)),
            )),
            NOW,
            Ok(()),
        ),
        (
            "nbf in the future",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &hs_key(),
                None,
                &with(c.clone(), "nbf", json!(NOW + 31)),
            )),
            NOW,
            Err(AuthReason::NotYetValid),
        ),
        (
            "nbf within leeway",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &hs_key(),
                None,
                &with(c.clone(), "nbf", json!(NOW + 29)),
            )),
            NOW,
            Ok(()),
        ),
        (
            "no exp",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &hs_key(),
                None,
                &without(c.clone(), "exp"),
            )),
            NOW,
            Err(AuthReason::MissingClaim),
        ),
        (
            "wrong audience",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &hs_key(),
                None,
                &with(c.clone(), "aud", json!("other")),
            )),
            NOW,
            Err(AuthReason::WrongAudience),
        ),
        (
            "audience in a list",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &hs_key(),
                None,
                &with(c.clone(), "aud", json!(["x", "causeway"])),
            )),
            NOW,
            Ok(()),
        ),
        (
            "no audience",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &hs_key(),
                None,
                &without(c.clone(), "aud"),
            )),
            NOW,
            Err(AuthReason::WrongAudience),
        ),
        (
            "wrong issuer",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &hs_key(),
                None,
                &with(c.clone(), "iss", json!("https://evil.example")),
            )),
            NOW,
            Err(AuthReason::WrongIssuer),
        ),
        (
            "wrong secret",
            &hs,
            bearer(&token(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"other"),
                None,
                &c,
            )),
            NOW,
            Err(AuthReason::BadSignature),
        ),
        (
            "HS256 token when only RS256 is allowed",
            &rs,
            bearer(&token(
                Algorithm::HS256,
                &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
                None,
                &c,
            )),
            NOW,
            Err(AuthReason::WrongAlgorithm),
        ),
        (
            "RS256 token when only HS256 is allowed",
            &hs,
            bearer(&token(Algorithm::RS256, &rsa_key(), None, &c)),
            NOW,
            Err(AuthReason::WrongAlgorithm),
        ),
        (
            "ES256 token for the RS256 verifier",
            &rs,
            bearer(&token(Algorithm::ES256, &ec_key(), None, &c)),
            NOW,
            Err(AuthReason::WrongAlgorithm),
        ),
        (
            "alg none",
            &hs,
            bearer(&none_token),
            NOW,
            Err(AuthReason::WrongAlgorithm),
        ),
        (
            "alg none for RS256",
            &rs,
            bearer(&none_token),
            NOW,
            Err(AuthReason::WrongAlgorithm),
        ),
        (
            "no authorization",
            &hs,
            headers(&[]),
            NOW,
            Err(AuthReason::MissingHeader),
        ),
        (
            "not bearer",
            &hs,
            headers(&[("authorization", "Basic abc")]),
            NOW,
            Err(AuthReason::Malformed),
        ),
        (
            "garbage token",
            &hs,
            bearer("not.a.token"),
            NOW,
            Err(AuthReason::Malformed),
        ),
    ];
    for (name, v, h, now, want) in cases {
        assert_eq!(check(v, &h, "", b"", at(now)), want, "{name}");
    }
}

#[test]
fn jwt_with_jwks_picks_the_key_by_kid() {
    let rsa_jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&rsa_key(), Algorithm::RS256).unwrap();
    let ec_jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&ec_key(), Algorithm::ES256).unwrap();
    let mut rsa_json = serde_json::to_value(&rsa_jwk).unwrap();
    rsa_json["kid"] = json!("rsa-1");
    let mut ec_json = serde_json::to_value(&ec_jwk).unwrap();
    ec_json["kid"] = json!("ec-1");
    let jwks = json!({"keys": [rsa_json, ec_json]}).to_string();
    let v = Verifier::new(&jwt_cfg(
        &[JwtAlgorithm::RS256, JwtAlgorithm::ES256],
        None,
        Some(&jwks),
    ))
    .unwrap();
    let c = claims();
    let t = |alg, key: &EncodingKey, kid| {
        check(&v, &bearer(&token(alg, key, kid, &c)), "", b"", at(NOW))
    };
    assert_eq!(t(Algorithm::RS256, &rsa_key(), Some("rsa-1")), Ok(()));
    assert_eq!(t(Algorithm::ES256, &ec_key(), Some("ec-1")), Ok(()));
    assert_eq!(
        t(Algorithm::RS256, &rsa_key(), Some("nope")),
        Err(AuthReason::UnknownKey)
    );
    assert_eq!(
        t(Algorithm::RS256, &rsa_key(), None),
        Err(AuthReason::UnknownKey)
    );
    // The kid names the EC key but the token says RS256.
    assert_eq!(
        t(Algorithm::RS256, &rsa_key(), Some("ec-1")),
        Err(AuthReason::WrongAlgorithm)
    );
    // Signed by another RSA key under a known kid.
    let other_hs = EncodingKey::from_secret(b"x");
    assert_eq!(
        t(Algorithm::HS256, &other_hs, Some("rsa-1")),
        Err(AuthReason::WrongAlgorithm)
    );
}

#[test]
fn jwt_config_errors() {
    let mixed = jwt_cfg(
        &[JwtAlgorithm::HS256, JwtAlgorithm::RS256],
        Some(RSA_PUBLIC),
        None,
    );
    assert_eq!(
        Verifier::new(&mixed).unwrap_err(),
        AuthConfigError::MixedKeyFamilies
    );
    let bad_pem = jwt_cfg(
        &[JwtAlgorithm::RS256],
        Some("-----BEGIN PUBLIC KEY-----\nsekrit\n"),
        None,
    );
    let e = Verifier::new(&bad_pem).unwrap_err();
    assert_eq!(e, AuthConfigError::BadPem { alg: "RS256" });
    assert!(!e.to_string().contains("sekrit"));
    let bad_jwks = jwt_cfg(&[JwtAlgorithm::RS256], None, Some("{\"sekrit\": 1}"));
    assert_eq!(
        Verifier::new(&bad_jwks).unwrap_err(),
        AuthConfigError::BadJwks
    );
    assert_eq!(
        Verifier::new(&jwt_cfg(&[JwtAlgorithm::RS256], None, None)).unwrap_err(),
        AuthConfigError::KeyOrJwks
    );
}

// ---------------------------------------------------------------- Basic and API keys

#[test]
fn basic_auth() {
    let v = Verifier::new(&AuthConfig::Basic {
        username: "hook".into(),
        password: SecretValue("p4ss:word".into()),
    })
    .unwrap();
    let b = |creds: &str| {
        headers(&[(
            "authorization",
            &format!("Basic {}", STANDARD.encode(creds)),
        )])
    };
    assert_eq!(check(&v, &b("hook:p4ss:word"), "", b"", at(0)), Ok(()));
    assert_eq!(
        check(&v, &b("hook:p4ss"), "", b"", at(0)),
        Err(AuthReason::BadCredentials)
    );
    assert_eq!(
        check(&v, &b("other:p4ss:word"), "", b"", at(0)),
        Err(AuthReason::BadCredentials)
    );
    assert_eq!(
        check(&v, &b("hookp4ssword"), "", b"", at(0)),
        Err(AuthReason::Malformed)
    );
    assert_eq!(
        check(
            &v,
            &headers(&[("authorization", "Basic ###")]),
            "",
            b"",
            at(0)
        ),
        Err(AuthReason::Malformed)
    );
    assert_eq!(
        check(&v, &headers(&[]), "", b"", at(0)),
        Err(AuthReason::MissingHeader)
    );
    assert_eq!(v.sensitive_headers(), vec!["authorization".to_string()]);
}

#[test]
fn api_keys_with_rotation() {
    let v = Verifier::new(&AuthConfig::ApiKey {
        header: Some("X-Api-Key".into()),
        query_param: None,
        keys: secrets(&["new-key-1", "old-key-0"]),
    })
    .unwrap();
    assert_eq!(
        check(&v, &headers(&[("x-api-key", "new-key-1")]), "", b"", at(0)),
        Ok(())
    );
    assert_eq!(
        check(&v, &headers(&[("x-api-key", "old-key-0")]), "", b"", at(0)),
        Ok(())
    );
    assert_eq!(
        check(&v, &headers(&[("x-api-key", "new-key-")]), "", b"", at(0)),
        Err(AuthReason::BadCredentials)
    );
    assert_eq!(
        check(&v, &headers(&[]), "", b"", at(0)),
        Err(AuthReason::MissingHeader)
    );
    assert_eq!(v.sensitive_headers(), vec!["x-api-key".to_string()]);

    let q = Verifier::new(&AuthConfig::ApiKey {
        header: None,
        query_param: Some("key".into()),
        keys: secrets(&["k e/y"]),
    })
    .unwrap();
    assert_eq!(
        check(&q, &headers(&[]), "a=1&key=k+e%2Fy", b"", at(0)),
        Ok(())
    );
    assert_eq!(
        check(&q, &headers(&[]), "key=nope", b"", at(0)),
        Err(AuthReason::BadCredentials)
    );
    assert_eq!(
        check(&q, &headers(&[]), "a=1", b"", at(0)),
        Err(AuthReason::MissingParam)
    );
    assert_eq!(q.sensitive_query_param(), Some("key"));
}

// ---------------------------------------------------------------- no secret leaks

#[test]
fn nothing_secret_in_debug_or_errors() {
    let secret = "whsec_c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw==";
    let v = sw(&[secret]);
    let dbg = format!("{v:?}");
    assert!(
        !dbg.contains("c2VjcmV0") && !dbg.contains("secret-value"),
        "{dbg}"
    );
    let presented = "v1,Zm9yZ2VkLXNpZ25hdHVyZS12YWx1ZQ==";
    let h = sw_headers("id", "100", presented);
    let err = v
        .verify(
            &Inbound {
                method: "POST",
                headers: &h,
                query: "",
                body: b"",
            },
            at(100),
        )
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("Zm9yZ2Vk") && !text.contains("c2VjcmV0"),
        "{text}"
    );

    let basic = Verifier::new(&AuthConfig::Basic {
        username: "u".into(),
        password: SecretValue("hunter2-pw".into()),
    })
    .unwrap();
    assert!(!format!("{basic:?}").contains("hunter2"));
}

#[test]
fn reasons_are_stable_metric_labels() {
    let all = [
        (AuthReason::MissingHeader, "missing_header"),
        (AuthReason::MissingParam, "missing_param"),
        (AuthReason::Malformed, "malformed"),
        (AuthReason::BadSignature, "bad_signature"),
        (AuthReason::StaleTimestamp, "stale_timestamp"),
        (AuthReason::Expired, "expired"),
        (AuthReason::NotYetValid, "not_yet_valid"),
        (AuthReason::WrongIssuer, "wrong_issuer"),
        (AuthReason::WrongAudience, "wrong_audience"),
        (AuthReason::WrongAlgorithm, "wrong_algorithm"),
        (AuthReason::MissingClaim, "missing_claim"),
        (AuthReason::UnknownKey, "unknown_key"),
        (AuthReason::BadCredentials, "bad_credentials"),
    ];
    for (r, s) in all {
        assert_eq!(r.as_str(), s);
    }
}

// ---------------------------------------------------------------- before the body

fn pre(v: &Verifier, h: &http::HeaderMap, query: &str, now: SystemTime) -> Result<(), AuthReason> {
    v.check_headers(h, query, now).map_err(|f| f.reason)
}

/// Issue 12 item 6: unsigned, malformed or stale requests are refused from their headers
/// alone; well-formed ones pass the pre-check and are still verified with the body.
#[test]
fn check_headers_refuses_before_the_body() {
    // Standard Webhooks.
    let v = sw(&[SW_SECRET]);
    let now = at(SW_TS + 10);
    let ts = SW_TS.to_string();
    assert_eq!(pre(&v, &sw_headers(SW_ID, &ts, SW_SIG), "", now), Ok(()));
    assert_eq!(
        pre(
            &v,
            &headers(&[("content-type", "application/json")]),
            "",
            now
        ),
        Err(AuthReason::MissingHeader)
    );
    assert_eq!(
        pre(&v, &sw_headers(SW_ID, &ts, "v1,!!!"), "", now),
        Err(AuthReason::Malformed)
    );
    assert_eq!(
        pre(&v, &sw_headers(SW_ID, &ts, "v1,c2hvcnQ="), "", now),
        Err(AuthReason::Malformed)
    );
    assert_eq!(
        pre(&v, &sw_headers(SW_ID, "soon", SW_SIG), "", now),
        Err(AuthReason::Malformed)
    );
    assert_eq!(
        pre(&v, &sw_headers(SW_ID, &ts, SW_SIG), "", at(SW_TS + 3600)),
        Err(AuthReason::StaleTimestamp)
    );
    // A well-formed signature over another body passes the pre-check, not the verification.
    let h = sw_headers(SW_ID, &ts, SW_SIG);
    assert_eq!(check(&v, &h, "", b"{}", now), Err(AuthReason::BadSignature));

    // HMAC presets: GitHub (hex with a prefix), Shopify (base64), Slack and Stripe (timestamps).
    let gh = Verifier::new(&hmac(Some(HmacPreset::Github), &[GH_SECRET])).unwrap();
    assert_eq!(
        pre(&gh, &headers(&[("X-Hub-Signature-256", GH_SIG)]), "", at(0)),
        Ok(())
    );
    assert_eq!(
        pre(&gh, &headers(&[]), "", at(0)),
        Err(AuthReason::MissingHeader)
    );
    assert_eq!(
        pre(
            &gh,
            &headers(&[("X-Hub-Signature-256", "sha1=abcd")]),
            "",
            at(0)
        ),
        Err(AuthReason::Malformed)
    );
    assert_eq!(
        pre(
            &gh,
            &headers(&[("X-Hub-Signature-256", "sha256=zz")]),
            "",
            at(0)
        ),
        Err(AuthReason::Malformed)
    );
    assert_eq!(
        pre(
            &gh,
            &headers(&[("X-Hub-Signature-256", "sha256=abcd")]),
            "",
            at(0)
        ),
        Err(AuthReason::Malformed)
    );
    let shop = Verifier::new(&hmac(Some(HmacPreset::Shopify), &[SHOPIFY_SECRET])).unwrap();
    assert_eq!(
        pre(
            &shop,
            &headers(&[("X-Shopify-Hmac-Sha256", SHOPIFY_SIG)]),
            "",
            at(0)
        ),
        Ok(())
    );
    assert_eq!(
        pre(
            &shop,
            &headers(&[("X-Shopify-Hmac-Sha256", "YWJj")]),
            "",
            at(0)
        ),
        Err(AuthReason::Malformed)
    );
    let slack = Verifier::new(&hmac(Some(HmacPreset::Slack), &[SLACK_SECRET])).unwrap();
    let sts = SLACK_TS.to_string();
    let sh = headers(&[
        ("X-Slack-Signature", SLACK_SIG),
        ("X-Slack-Request-Timestamp", &sts),
    ]);
    assert_eq!(pre(&slack, &sh, "", at(SLACK_TS)), Ok(()));
    assert_eq!(
        pre(&slack, &sh, "", at(SLACK_TS + 3600)),
        Err(AuthReason::StaleTimestamp)
    );
    let no_ts = headers(&[("X-Slack-Signature", SLACK_SIG)]);
    assert_eq!(
        pre(&slack, &no_ts, "", at(SLACK_TS)),
        Err(AuthReason::MissingHeader)
    );
    let stripe = Verifier::new(&hmac(Some(HmacPreset::Stripe), &[STRIPE_SECRET])).unwrap();
    let good = format!("t={STRIPE_TS},v1={STRIPE_V1}");
    assert_eq!(
        pre(
            &stripe,
            &headers(&[("Stripe-Signature", &good)]),
            "",
            at(STRIPE_TS)
        ),
        Ok(())
    );
    let no_t = format!("v1={STRIPE_V1}");
    assert_eq!(
        pre(
            &stripe,
            &headers(&[("Stripe-Signature", &no_t)]),
            "",
            at(STRIPE_TS)
        ),
        Err(AuthReason::Malformed)
    );
    assert_eq!(
        pre(
            &stripe,
            &headers(&[("Stripe-Signature", &good)]),
            "",
            at(STRIPE_TS + 3600)
        ),
        Err(AuthReason::StaleTimestamp)
    );

    // Header-only schemes: the whole verification.
    let basic = Verifier::new(&AuthConfig::Basic {
        username: "hook".into(),
        password: SecretValue("p4ss:word".into()),
    })
    .unwrap();
    assert!(basic.is_header_only() && !v.is_header_only() && !gh.is_header_only());
    let b = |creds: &str| {
        headers(&[(
            "authorization",
            &format!("Basic {}", STANDARD.encode(creds)),
        )])
    };
    assert_eq!(pre(&basic, &b("hook:p4ss:word"), "", at(0)), Ok(()));
    assert_eq!(
        pre(&basic, &b("hook:nope"), "", at(0)),
        Err(AuthReason::BadCredentials)
    );
    let key = Verifier::new(&AuthConfig::ApiKey {
        header: None,
        query_param: Some("key".into()),
        keys: secrets(&["k-123456"]),
    })
    .unwrap();
    assert_eq!(pre(&key, &headers(&[]), "key=k-123456", at(0)), Ok(()));
    assert_eq!(
        pre(&key, &headers(&[]), "key=other", at(0)),
        Err(AuthReason::BadCredentials)
    );
    assert_eq!(
        pre(&key, &headers(&[]), "", at(0)),
        Err(AuthReason::MissingParam)
    );
    let jwt = Verifier::new(&jwt_cfg(
        &[JwtAlgorithm::HS256],
        Some("jwt-shared-secret-for-tests"),
        None,
    ))
    .unwrap();
    let t = token(Algorithm::HS256, &hs_key(), None, &claims());
    assert_eq!(pre(&jwt, &bearer(&t), "", at(NOW)), Ok(()));
    assert_eq!(
        pre(&jwt, &bearer(&t), "", at(NOW + 3600)),
        Err(AuthReason::Expired)
    );
    assert_eq!(
        pre(&jwt, &headers(&[]), "", at(NOW)),
        Err(AuthReason::MissingHeader)
    );
}

// ---------------------------------------------------------------- jti

/// Issue 12 item 23: with dedupeJti, a token must carry a jti, and the verifier returns it
/// (with the time until which to remember it) for the idempotency table.
#[test]
fn jwt_dedupe_jti_returns_the_jti() {
    let mut cfg = jwt_cfg(
        &[JwtAlgorithm::HS256],
        Some("jwt-shared-secret-for-tests"),
        None,
    );
    if let AuthConfig::Jwt { dedupe_jti, .. } = &mut cfg {
        *dedupe_jti = true;
    }
    let v = Verifier::new(&cfg).unwrap();
    let req = |h: &http::HeaderMap| -> Result<Verified, AuthReason> {
        let r = Inbound {
            method: "POST",
            headers: h,
            query: "",
            body: b"",
        };
        v.verify_full(&r, at(NOW)).map_err(|f| f.reason)
    };
    let t = token(
        Algorithm::HS256,
        &hs_key(),
        None,
        &with(claims(), "jti", json!("tok-1")),
    );
    let got = req(&bearer(&t)).unwrap();
    assert_eq!(got.jti.as_deref(), Some("tok-1"));
    assert_eq!(got.jti_expires_at, Some(at(NOW + 600 + 30)));
    // No jti, or not a usable one: refused.
    let t = token(Algorithm::HS256, &hs_key(), None, &claims());
    assert_eq!(req(&bearer(&t)), Err(AuthReason::MissingClaim));
    for bad in [json!(42), json!(""), json!("x".repeat(MAX_JTI_BYTES + 1))] {
        let t = token(
            Algorithm::HS256,
            &hs_key(),
            None,
            &with(claims(), "jti", bad),
        );
        assert_eq!(req(&bearer(&t)), Err(AuthReason::Malformed));
    }
    // Without the option the jti is neither required nor returned.
    let plain = Verifier::new(&jwt_cfg(
        &[JwtAlgorithm::HS256],
        Some("jwt-shared-secret-for-tests"),
        None,
    ))
    .unwrap();
    let t = token(
        Algorithm::HS256,
        &hs_key(),
        None,
        &with(claims(), "jti", json!("tok-1")),
    );
    let r = Inbound {
        method: "POST",
        headers: &bearer(&t),
        query: "",
        body: b"",
    };
    assert_eq!(plain.verify_full(&r, at(NOW)), Ok(Verified::default()));
    // The config field defaults to off in the rendered config.
    let json = serde_json::json!({"type": "jwt", "algorithms": ["HS256"], "key": "k", "jwks": null,
        "issuer": null, "audience": null, "leewayMs": 0});
    let parsed: AuthConfig = serde_json::from_value(json).unwrap();
    assert!(matches!(
        parsed,
        AuthConfig::Jwt {
            dedupe_jti: false,
            ..
        }
    ));
}

/// A sender-chosen exp of 1e300 saturates instead of overflowing.
#[test]
fn huge_exp_does_not_overflow() {
    let v = Verifier::new(&jwt_cfg(
        &[JwtAlgorithm::HS256],
        Some("jwt-shared-secret-for-tests"),
        None,
    ))
    .unwrap();
    let t = token(
        Algorithm::HS256,
        &hs_key(),
        None,
        &with(claims(), "exp", json!(1e300)),
    );
    assert_eq!(check(&v, &bearer(&t), "", b"", at(NOW)), Ok(()));
    let t = token(
        Algorithm::HS256,
        &hs_key(),
        None,
        &with(claims(), "nbf", json!(-1e300)),
    );
    assert_eq!(check(&v, &bearer(&t), "", b"", at(NOW)), Ok(()));
}
