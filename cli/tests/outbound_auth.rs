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

/// Issue 18, mTLS and a custom CA: certificates made by `openssl` in the test (a CA, a
/// server certificate for 127.0.0.1, a client certificate), and a TLS destination on
/// loopback that demands a client certificate signed by that CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_destinations_trust_their_ca_and_present_their_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&pki)
            .output()
            .expect("openssl (Debian's openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=causeway-test-ca",
            ],
        ]
        .concat(),
    );
    for (name, cn, ext) in [
        (
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "causeway-client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(pki.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={cn}"),
                ],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let server = MtlsServer::start(&pki).await;

    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: partner-ca}}
stringData:
  ca.crt: |
{ca}
---
apiVersion: v1
kind: Secret
metadata: {{name: partner-client}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{crt}
  tls.key: |
{key}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: mtls}}
spec:
  destinations:
  - name: partner
    url: "https://127.0.0.1:{port}/in"
    retries: 0
    tls:
      caSecretRef: {{name: partner-ca, key: ca.crt}}
      clientCertificateSecret: partner-client
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: no-client-cert}}
spec:
  destinations:
  - name: partner
    url: "https://127.0.0.1:{port}/in"
    retries: 0
    tls:
      caSecretRef: {{name: partner-ca, key: ca.crt}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: system-roots}}
spec:
  destinations:
  - name: partner
    url: "https://127.0.0.1:{port}/in"
    retries: 0
"#,
        ca = indent(read("ca.crt")),
        crt = indent(read("client.crt")),
        key = indent(read("client.key")),
        port = server.addr.port(),
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let mut ids = Vec::new();
    for b in ["mtls", "no-client-cert", "system-roots"] {
        let (s, v) = post(
            &c,
            &w.url(&format!("/hooks/default/{b}")),
            r#"{"x":1}"#,
            &[],
        )
        .await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let ev = wait_status(&c, &w, &ids[0], "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}");
    assert_eq!(
        server.clients(),
        ["CN=causeway-client"],
        "one request, with the client certificate"
    );
    for id in &ids[1..] {
        let ev = wait_status(&c, &w, id, "dead", WAIT).await;
        assert_eq!(ev["status"], "dead", "{ev:#}");
        let err = attempts(&ev)[0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!err.is_empty(), "{ev:#}");
    }
    // The system's roots do not know the private CA.
    let ev = wait_status(&c, &w, &ids[2], "dead", WAIT).await;
    let err = attempts(&ev)[0]["error"].as_str().unwrap().to_string();
    assert!(
        err.to_ascii_lowercase().contains("certificate"),
        "a certificate error: {err}"
    );
    assert_eq!(
        server.clients().len(),
        1,
        "only the mTLS bridge got through"
    );
    assert!(
        server.refused() >= 1,
        "the server refused the handshake without a client certificate"
    );
    let key = read("client.key");
    let key_line = key.lines().nth(1).unwrap();
    let everything = format!(
        "{}{}",
        w.log_text(),
        get_json(&c, &w.admin_url("/api/v1/events?limit=100")).await
    );
    assert!(!everything.contains(key_line), "the client key leaked");
}

/// HTTPS on loopback that requires a client certificate signed by `ca.crt`, answers 200
/// and records each client's subject (`CN=…`).
struct MtlsServer {
    addr: std::net::SocketAddr,
    clients: Arc<Mutex<Vec<String>>>,
    refused: Arc<AtomicUsize>,
}

impl MtlsServer {
    async fn start(pki: &std::path::Path) -> MtlsServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(pki.join("ca.crt")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.join("server.crt"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(pki.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = MtlsServer {
            addr: listener.local_addr().unwrap(),
            clients: Default::default(),
            refused: Default::default(),
        };
        let (clients, refused) = (server.clients.clone(), server.refused.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, clients, refused) =
                    (acceptor.clone(), clients.clone(), refused.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let subject = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| subject_cn(c.as_ref()))
                        .unwrap_or_default();
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    clients.lock().unwrap().push(subject);
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        server
    }

    fn clients(&self) -> Vec<String> {
        self.clients.lock().unwrap().clone()
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

/// `CN=<value>` of a DER certificate's subject, found by the CN attribute's OID (2.5.4.3)
/// followed by a UTF8String or PrintableString: enough for the certificates of this test.
fn subject_cn(der: &[u8]) -> String {
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let mut found = String::new();
    for i in 0..der.len().saturating_sub(oid.len() + 2) {
        if der[i..i + oid.len()] == oid && matches!(der[i + oid.len()], 0x0c | 0x13) {
            let len = der[i + oid.len() + 1] as usize;
            let start = i + oid.len() + 2;
            // The last CN in the DER is the subject's (the issuer's comes first).
            found = format!(
                "CN={}",
                String::from_utf8_lossy(&der[start..(start + len).min(der.len())])
            );
        }
    }
    found
}
