//! A bridge end to end through real sockets: a GitHub-signed request is verified, filtered,
//! templated and fanned out to two sinks with different retry policies, and the outbound
//! Standard Webhooks signature is checked by an implementation written here from the spec,
//! independent of `causeway-pipeline`.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const GITHUB_SECRET: &str = "gh-webhook-secret-for-tests";
const SIGNING_SECRET: &str = "whsec_ZmFub3V0LXNpZ25pbmcta2V5LWZvci10ZXN0cw==";
const WAIT: Duration = Duration::from_secs(20);

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// GitHub's scheme, from its documentation: `sha256=` + hex HMAC-SHA256 of the body.
fn github_signature(body: &str) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac256(GITHUB_SECRET.as_bytes(), body.as_bytes()))
    )
}

/// Standard Webhooks, from the specification: the key is the base64 after `whsec_`, the
/// signed content is `{id}.{timestamp}.{body}`, and the header lists `v1,<base64>` entries.
fn standard_webhooks_valid(secret: &str, id: &str, ts: &str, body: &[u8], header: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac256(&key, &content))
    );
    header.split(' ').any(|sig| sig == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_filtered_templated_and_fanned_out_with_two_retry_policies() {
    let dir = tempfile::tempdir().unwrap();
    // `chat` fails twice then accepts; `audit` always fails.
    let sink = Sink::start(|n, r| match r.path.as_str() {
        "/chat" if n < 2 => (500, vec![]),
        "/audit" => (503, vec![]),
        _ => (200, vec![]),
    })
    .await;
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{github: "{GITHUB_SECRET}", signing: "{SIGNING_SECRET}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: prs}}
spec:
  ingress:
    auth:
      hmac: {{preset: github, secretRef: {{name: keys, key: github}}}}
  filter: "payload.action == 'opened' && payload.pull_request.additions >= 10"
  destinations:
  - name: chat
    url: "{chat}"
    body: '{{"text": "PR opened: $payload.pull_request.title", "additions": "$payload.pull_request.additions"}}'
    retries: 2
    backoff: {{policy: fixed, delays: [100ms]}}
    signing: {{standardWebhooks: {{secretRef: {{name: keys, key: signing}}}}}}
  - name: audit
    url: "{audit}"
    retries: 0
    backoff: {{policy: none}}
"#,
        chat = sink.url("/chat"),
        audit = sink.url("/audit"),
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let url = w.url("/hooks/default/prs");

    let opened = r#"{"action":"opened","pull_request":{"title":"Add retries","additions":42}}"#;
    let small = r#"{"action":"opened","pull_request":{"title":"Typo","additions":1}}"#;

    // Not signed, or signed with another secret: 401 and nothing stored.
    assert_eq!(post(&c, &url, opened, &[]).await.0, 401);
    assert_eq!(
        post(&c, &url, opened, &[("x-hub-signature-256", "sha256=00")])
            .await
            .0,
        401
    );
    assert_eq!(stored_events(&c, &w).await, 0);

    // Signed but filtered out: recorded as filtered, nothing delivered.
    let (s, v) = post(
        &c,
        &url,
        small,
        &[("x-hub-signature-256", &github_signature(small))],
    )
    .await;
    assert_eq!(s, 202);
    let filtered = v["id"].as_str().unwrap().to_string();

    // Signed and passing: fanned out to both destinations.
    let (s, v) = post(
        &c,
        &url,
        opened,
        &[("x-hub-signature-256", &github_signature(opened))],
    )
    .await;
    assert_eq!(s, 202);
    let id = v["id"].as_str().unwrap().to_string();

    assert_eq!(
        sink.wait_for("/chat", 3, WAIT).await,
        3,
        "chat: two failures, then success"
    );
    assert_eq!(sink.wait_for("/audit", 1, WAIT).await, 1);
    let ev = wait_status(&c, &w, &id, "dead", WAIT).await;
    // One destination delivered and one dead: the event is dead (it needs attention).
    let deliveries = ev["deliveries"].as_array().unwrap();
    let by = |name: &str| {
        deliveries
            .iter()
            .find(|d| d["destination"] == name)
            .unwrap()
            .clone()
    };
    let (chat, audit) = (by("chat"), by("audit"));
    assert_eq!(chat["status"], "delivered");
    let codes: Vec<u64> = chat["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![500, 500, 200]);
    assert_eq!(audit["status"], "dead");
    assert_eq!(
        audit["attempts"].as_array().unwrap().len(),
        1,
        "retries: 0 means one attempt"
    );
    assert_eq!(audit["attempts"][0]["statusCode"], 503);

    // Nothing more arrives: the policies are exhausted or satisfied.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!((sink.count("/chat"), sink.count("/audit")), (3, 1));

    // chat got the template with typed values, signed; every retry carries the same id.
    let chat_reqs = sink.requests("/chat");
    for r in &chat_reqs {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"text": "PR opened: Add retries", "additions": 42})
        );
        let h = |k: &str| r.headers[k].to_str().unwrap().to_string();
        assert_eq!(h("webhook-id"), id);
        assert!(
            standard_webhooks_valid(
                SIGNING_SECRET,
                &h("webhook-id"),
                &h("webhook-timestamp"),
                &r.body,
                &h("webhook-signature")
            ),
            "outbound signature does not verify"
        );
        assert!(!standard_webhooks_valid(
            "whsec_d3Jvbmc=",
            &h("webhook-id"),
            &h("webhook-timestamp"),
            &r.body,
            &h("webhook-signature")
        ));
    }
    // audit got the body unchanged and no signature.
    let audit_req = &sink.requests("/audit")[0];
    assert_eq!(audit_req.body.as_ref(), opened.as_bytes());
    assert!(!audit_req.headers.contains_key("webhook-signature"));

    // The filtered event never reached a sink.
    let ev = get_json(&c, &w.admin_url(&format!("/api/v1/events/{filtered}"))).await;
    assert_eq!(ev["status"], "filtered");
    assert_eq!(sink.total.load(std::sync::atomic::Ordering::SeqCst), 4);
}
