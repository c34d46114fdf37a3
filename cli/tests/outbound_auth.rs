//! Issue 18, outbound auth beyond static headers: OAuth2 client credentials against a token
//! endpoint in the test (a loopback server that checks the client's credentials and issues
//! numbered tokens). A token is fetched once and reused, fetched again when it is about to
//! expire or after the destination answers 401; a wrong secret fails the attempt with the
//! endpoint's answer; neither the secret nor a token reaches the attempt log or the log.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use common::*;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "client-s3cret-value";

/// A token endpoint: `client_credentials` only, the client's id and secret by HTTP Basic
/// or in the form; tokens `tok-1`, `tok-2`, … valid for `expires_in` seconds.
#[derive(Clone)]
struct TokenServer {
    addr: std::net::SocketAddr,
    issued: Arc<AtomicUsize>,
    forms: Arc<Mutex<Vec<String>>>,
    /// Tokens the destination accepts (issued, not revoked).
    valid: Arc<Mutex<HashSet<String>>>,
    expires_in: u64,
}

impl TokenServer {
    async fn start(expires_in: u64) -> TokenServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = TokenServer {
            addr: listener.local_addr().unwrap(),
            issued: Default::default(),
            forms: Default::default(),
            valid: Default::default(),
            expires_in,
        };
        let app = axum::Router::new()
            .route("/token", axum::routing::post(issue))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        server
    }

    fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    fn accepts(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| self.valid.lock().unwrap().contains(t))
    }

    fn revoke_all(&self) {
        self.valid.lock().unwrap().clear();
    }
}

fn form_value<'a>(form: &'a str, name: &str) -> Option<&'a str> {
    form.split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

async fn issue(
    State(s): State<TokenServer>,
    headers: HeaderMap,
    form: String,
) -> axum::response::Response {
    s.forms.lock().unwrap().push(form.clone());
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let client_ok = match basic {
        Some(pair) => pair == format!("shop:{SECRET}"),
        None => {
            form_value(&form, "client_id") == Some("shop")
                && form_value(&form, "client_secret") == Some(SECRET)
        }
    };
    if form_value(&form, "grant_type") != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":"unsupported_grant_type"}"#,
        )
            .into_response();
    }
    if !client_ok {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#).into_response();
    }
    let n = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("tok-{n}-{}", "x".repeat(24));
    s.valid.lock().unwrap().insert(token.clone());
    axum::Json(serde_json::json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": s.expires_in,
    }))
    .into_response()
}

fn bridge(name: &str, dest_url: &str, token_url: &str, secret_key: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: {name}}}
spec:
  destinations:
  - name: api
    url: "{dest_url}"
    retries: 3
    backoff: {{policy: fixed, delays: [50ms]}}
    oauth2:
      tokenUrl: "{token_url}"
      clientId: shop
      clientSecretRef: {{name: oauth, key: {secret_key}}}
      scopes: [orders.write]
{extra}
---
"#
    )
}

fn attempts(ev: &serde_json::Value) -> Vec<serde_json::Value> {
    ev["deliveries"][0]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_are_fetched_cached_refreshed_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let cached = TokenServer::start(3600).await;
    // 30 s is the margin kept before expiry: every attempt needs a new token.
    let expiring = TokenServer::start(30).await;
    let body_auth = TokenServer::start(3600).await;
    let guard = cached.clone();
    let guard_exp = expiring.clone();
    let guard_body = body_auth.clone();
    // The destination: a Bearer token its issuer still honours, else 401. Paths under
    // /echo answer with the request's headers (so a token would reach the response).
    let sink = Sink::start(move |_, r| {
        let auth = r.headers.get("authorization").and_then(|v| v.to_str().ok());
        let ok = match r.path.as_str() {
            "/echo/cached" => guard.accepts(auth),
            "/expiring" => guard_exp.accepts(auth),
            "/body" => guard_body.accepts(auth),
            _ => false,
        };
        (if ok { 200 } else { 401 }, vec![])
    })
    .await;
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: oauth}}\nstringData: {{good: {SECRET}, wrong: not-the-secret-at-all}}\n---\n"
    ) + &bridge(
        "cached",
        &sink.url("/echo/cached"),
        &cached.url(),
        "good",
        "",
    ) + &bridge(
        "expiring",
        &sink.url("/expiring"),
        &expiring.url(),
        "good",
        "",
    ) + &bridge(
        "body",
        &sink.url("/body"),
        &body_auth.url(),
        "good",
        "      clientAuth: body\n      audience: https://api.shop.example",
    ) + &bridge("wrong", &sink.url("/never"), &cached.url(), "wrong", "");
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let send = |b: &'static str| {
        let c = c.clone();
        let url = w.url(&format!("/hooks/default/{b}"));
        async move {
            let (s, v) = post(&c, &url, r#"{"order":1}"#, &[]).await;
            assert_eq!(s, 202, "{v}");
            v["id"].as_str().unwrap().to_string()
        }
    };

    // One token for five deliveries, sent as a Bearer header; the echo never shows it.
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(send("cached").await);
    }
    for id in &ids {
        let ev = wait_status(&c, &w, id, "delivered", WAIT).await;
        assert_eq!(ev["status"], "delivered", "{ev:#}");
        let a = attempts(&ev);
        assert_eq!(a.len(), 1, "{ev:#}");
        let response = a[0]["response"].as_str().unwrap();
        assert!(
            !response.contains("tok-"),
            "a token in the attempt log: {response}"
        );
        assert!(response.contains("authorization"), "the echo: {response}");
    }
    assert_eq!(cached.issued(), 1, "the token is cached");
    assert_eq!(
        form_value(&cached.forms.lock().unwrap()[0], "scope"),
        Some("orders.write")
    );

    // The destination stops honouring it: 401, the token is dropped, the retry fetches a
    // new one and is delivered.
    cached.revoke_all();
    let id = send("cached").await;
    let ev = wait_status(&c, &w, &id, "delivered", WAIT).await;
    let codes: Vec<u64> = attempts(&ev)
        .iter()
        .map(|a| a["statusCode"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(codes, [401, 200], "{ev:#}");
    assert_eq!(cached.issued(), 2);

    // A token within the expiry margin is never used: a new one per attempt.
    for _ in 0..3 {
        let id = send("expiring").await;
        let ev = wait_status(&c, &w, &id, "delivered", WAIT).await;
        assert_eq!(ev["status"], "delivered", "{ev:#}");
    }
    assert_eq!(expiring.issued(), 3);

    // client_secret_post, with an audience.
    let id = send("body").await;
    assert_eq!(
        wait_status(&c, &w, &id, "delivered", WAIT).await["status"],
        "delivered"
    );
    let form = body_auth.forms.lock().unwrap()[0].clone();
    assert_eq!(form_value(&form, "client_id"), Some("shop"));
    assert_eq!(
        form_value(&form, "audience"),
        Some("https%3A%2F%2Fapi.shop.example")
    );

    // A wrong secret: the token endpoint's refusal is the attempt's error, the
    // destination is never called, and the retries end in a dead letter.
    let id = send("wrong").await;
    let ev = wait_status(&c, &w, &id, "dead", WAIT).await;
    assert_eq!(ev["status"], "dead", "{ev:#}");
    let a = attempts(&ev);
    assert_eq!(a.len(), 4, "the first attempt and three retries: {ev:#}");
    let error = a[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("oauth2 token from {}: status 401", cached.url()))
            && error.contains("invalid_client"),
        "{error}"
    );
    assert_eq!(sink.count("/never"), 0);

    let metrics = reqwest::get(w.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"causeway_oauth2_token_fetches_total{bridge="default/wrong",destination="api",outcome="error"} 4"#
        ),
        "{metrics}"
    );
    let everything = format!(
        "{metrics}{}{}",
        w.log_text(),
        get_json(&c, &w.admin_url("/api/v1/events?limit=100")).await
    );
    for leak in [SECRET, "not-the-secret-at-all", "tok-1-", "tok-2-"] {
        assert!(!everything.contains(leak), "{leak} leaked");
    }
}
