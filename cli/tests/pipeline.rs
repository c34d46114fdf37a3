//! The bridge pipeline through real sockets: verification at ingress, the filter,
//! templates rendered at delivery, outbound signing, and redaction of the attempt log.

mod common;

use std::time::Duration;

use common::*;

const SECRET: &str = "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLW9ubHk=";
const OUT_SECRET: &str = "whsec_b3V0Ym91bmQtc2lnbmluZy1rZXk=";
const TOKEN: &str = "tok-very-secret-123";
const WAIT: Duration = Duration::from_secs(20);

fn yaml(sink: &Sink) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{inbound: "{SECRET}", outbound: "{OUT_SECRET}", token: "{TOKEN}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders}}
spec:
  ingress:
    auth:
      standardWebhooks: {{secretRef: {{name: keys, key: inbound}}}}
  filter: "payload.kind == 'order'"
  env:
  - {{name: REGION, value: eu-west}}
  destinations:
  - name: shaped
    url: "{shaped}"
    body: '{{"id": "$payload.id", "amount": "$payload.amount", "region": "$env.REGION", "event": "$event.id"}}'
    signing: {{standardWebhooks: {{secretRef: {{name: keys, key: outbound}}}}}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: strict}}
spec:
  templates: {{onMissing: error}}
  env:
  - name: TOKEN
    valueFrom: {{secretKeyRef: {{name: keys, key: token}}}}
  destinations:
  - name: missing
    url: "{strict}"
    body: '{{"x": "$payload.nope"}}'
  - name: echo
    url: "{echo}"
    headers: {{Authorization: "Bearer $env.TOKEN"}}
    retries: 0
"#,
        shaped = sink.url("/shaped"),
        strict = sink.url("/strict"),
        echo = sink.url("/echo")
    )
}

fn signed(body: &str, id: &str) -> Vec<(&'static str, String)> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    causeway_pipeline::signing::standard_webhooks_headers(SECRET, id, ts, body.as_bytes()).to_vec()
}

async fn post_signed(
    c: &reqwest::Client,
    url: &str,
    body: &str,
    id: &str,
) -> (u16, serde_json::Value) {
    let h = signed(body, id);
    let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post(c, url, body, &refs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_filtered_templated_signed_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(|_, r| {
        if r.path == "/echo" {
            (500, vec![])
        } else {
            (200, vec![])
        }
    })
    .await;
    let m = manifests(dir.path(), &yaml(&sink));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let url = w.url("/hooks/default/orders");

    // Unsigned and badly signed requests: 401, generic body, nothing stored.
    let (s, v) = post(&c, &url, r#"{"kind":"order"}"#, &[]).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    let mut h = signed(r#"{"kind":"order"}"#, "msg_x");
    h[2].1 = "v1,AAAA".into();
    let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post(&c, &url, r#"{"kind":"order"}"#, &refs).await.0, 401);
    assert_eq!(stored_events(&c, &w).await, 0);
    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("reason=\"unauthorized_"), "{metrics}");

    // Filtered: stored as filtered, no deliveries.
    let (s, v) = post_signed(&c, &url, r#"{"kind":"refund","id":"r1"}"#, "msg_1").await;
    assert_eq!(s, 202);
    let ev = get_json(
        &c,
        &w.admin_url(&format!("/api/v1/events/{}", v["id"].as_str().unwrap())),
    )
    .await;
    assert_eq!(ev["status"], "filtered");
    assert_eq!(ev["deliveries"].as_array().unwrap().len(), 0);

    // Passed: templated (typed values), signed with the event id.
    let (s, v) = post_signed(
        &c,
        &url,
        r#"{"kind":"order","id":"o-7","amount":1500}"#,
        "msg_2",
    )
    .await;
    assert_eq!(s, 202);
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(sink.wait_for("/shaped", 1, WAIT).await, 1);
    let got = &sink.requests("/shaped")[0];
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"id": "o-7", "amount": 1500, "region": "eu-west", "event": id})
    );
    assert_eq!(got.headers["webhook-id"], id.as_str());
    let ts: i64 = got.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expect =
        causeway_pipeline::signing::standard_webhooks_headers(OUT_SECRET, &id, ts, &got.body);
    assert_eq!(got.headers["webhook-signature"], expect[2].1.as_str());
    assert!(
        sink.requests("/shaped")
            .iter()
            .all(|r| r.body.as_ref() != br#"{"kind":"refund","id":"r1"}"#)
    );
    assert_eq!(sink.count("/shaped"), 1, "the filtered event was delivered");
    // The inbound signature is never stored or shown.
    let shown = c
        .get(w.admin_url(&format!("/api/v1/events/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!shown.contains("v1,"), "{shown}");

    // onMissing: error dead-letters with the missing path; secrets are redacted from the log.
    let (s, v) = post(&c, &w.url("/hooks/default/strict"), r#"{"a":1}"#, &[]).await;
    assert_eq!(s, 202);
    let sid = v["id"].as_str().unwrap().to_string();
    let ev = wait_status(&c, &w, &sid, "dead", WAIT).await;
    let deliveries = ev["deliveries"].as_array().unwrap();
    let missing = deliveries
        .iter()
        .find(|d| d["destination"] == "missing")
        .unwrap();
    assert_eq!(missing["status"], "dead");
    assert!(
        missing["lastError"].as_str().unwrap().contains("nope"),
        "{missing:#}"
    );
    assert_eq!(sink.count("/strict"), 0);
    let echo = deliveries
        .iter()
        .find(|d| d["destination"] == "echo")
        .unwrap();
    assert_eq!(echo["status"], "dead");
    assert_eq!(
        sink.requests("/echo")[0].headers["authorization"],
        format!("Bearer {TOKEN}").as_str()
    );
    let text = ev.to_string();
    assert!(
        !text.contains(TOKEN),
        "a secret leaked into the attempt log: {text}"
    );
    assert!(
        echo["attempts"][0]["response"]
            .as_str()
            .unwrap()
            .contains("authorization")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_in_the_query_is_checked_then_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{token: "{TOKEN}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: keyed}}
spec:
  ingress:
    auth:
      apiKey: {{queryParam: key, secretRef: {{name: keys, key: token}}}}
  destinations:
  - name: out
    url: "{url}"
    body: '{{"key": "$query.key", "x": "$query.x"}}'
"#,
        url = sink.url("/keyed")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let base = w.url("/hooks/default/keyed");
    assert_eq!(
        post(&c, &format!("{base}?x=1&key=wrong"), "{}", &[])
            .await
            .0,
        401
    );
    let (s, v) = post(&c, &format!("{base}?x=1&key={TOKEN}"), "{}", &[]).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap();
    let ev = wait_status(&c, &w, id, "delivered", WAIT).await;
    assert!(!ev.to_string().contains(TOKEN), "{ev:#}");
    // The delivery renders from what was stored: the key is gone, the rest is there.
    let got: serde_json::Value = serde_json::from_slice(&sink.requests("/keyed")[0].body).unwrap();
    assert_eq!(got, serde_json::json!({"key": null, "x": "1"}));
    let list = get_json(&c, &w.admin_url("/api/v1/events")).await;
    assert!(!list.to_string().contains(TOKEN), "{list:#}");
}
