use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use causeway_config::{
    AuthConfig, DestinationConfig, EnvValue, MissingPolicy, RetryConfig, SecretValue,
};
use serde_json::json;

use super::*;
use crate::filter::FilterDecision;

fn destination(name: &str, url: &str, body: Option<&str>) -> DestinationConfig {
    DestinationConfig {
        name: name.into(),
        url: url.into(),
        method: "POST".into(),
        headers: BTreeMap::new(),
        body: body.map(str::to_string),
        delay_ms: 0,
        timeout_ms: 10_000,
        retry: RetryConfig::default(),
        max_retry_after_ms: 3_600_000,
        max_concurrency: 16,
        rate_limit: None,
        signing_secret: None,
        dead_letter_url: None,
        oauth2: None,
        tls: None,
        cloud_events: None,
        circuit_breaker: None,
        nats: None,
    }
}

fn bridge() -> BridgeConfig {
    let mut env = BTreeMap::new();
    env.insert(
        "CRM".into(),
        EnvValue {
            value: SecretValue("https://crm.example".into()),
            secret: false,
        },
    );
    BridgeConfig {
        namespace: "shop".into(),
        name: "orders".into(),
        generation: Some(1),
        path: "/hooks/shop/orders".into(),
        methods: vec!["POST".into()],
        max_body_bytes: 1 << 20,
        idempotency_header: "webhook-id".into(),
        dedupe_window_ms: 86_400_000,
        ingress_rate_limit: None,
        suspend: false,
        draining: false,
        when_plugin_not_ready: Default::default(),
        auth: Some(AuthConfig::StandardWebhooks {
            secrets: vec![SecretValue("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into())],
            tolerance_ms: 300_000,
        }),
        filter: Some("payload.amount >= 1000".into()),
        steps: vec![],
        step_retry: RetryConfig::default(),
        destinations: vec![
            destination(
                "crm",
                "$env.CRM/orders/$payload.id",
                Some(r#"{"total": "$payload.amount"}"#),
            ),
            destination("audit", "https://audit.example/in", None),
        ],
        env,
        on_missing: MissingPolicy::Empty,
        schema: None,
        streams: vec![],
        subscriptions: None,
        notifications: None,
    }
}

#[test]
fn compiles_and_runs_end_to_end() {
    let cfg = bridge();
    let b = compile_bridge(&cfg).unwrap();
    assert_eq!(
        b.destinations.iter().map(|d| d.name()).collect::<Vec<_>>(),
        vec!["crm", "audit"]
    );

    let body = br#"{"test": 2432232314}"#;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "webhook-id",
        "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
    );
    headers.insert("webhook-timestamp", "1614265330".parse().unwrap());
    headers.insert(
        "webhook-signature",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
            .parse()
            .unwrap(),
    );
    let req = Inbound {
        method: "POST",
        headers: &headers,
        query: "",
        body,
    };
    let verifier = b.verifier.as_ref().unwrap();
    assert_eq!(
        verifier.verify(&req, UNIX_EPOCH + Duration::from_secs(1_614_265_330)),
        Ok(())
    );
    assert_eq!(
        verifier.sensitive_headers(),
        vec!["webhook-signature".to_string()]
    );

    let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
    // No `amount`: the filter errors, and errors do not deliver.
    assert!(matches!(
        b.filter.as_ref().unwrap().evaluate(&req, Some(&payload)),
        FilterDecision::Error(_)
    ));
    let payload = json!({"id": 7, "amount": 1500});
    assert_eq!(
        b.filter.as_ref().unwrap().evaluate(&req, Some(&payload)),
        FilterDecision::Pass
    );

    let ctx = EventContext {
        payload: Some(&payload),
        body: b"{}",
        headers: &headers,
        query: "",
        env: &cfg.env,
        event_id: "evt_1",
        received_at: "2024-05-01T12:00:00Z",
        cloudevent: None,
    };
    let r = b.destinations[0].render(&ctx, cfg.on_missing).unwrap();
    assert_eq!(r.url, "https://crm.example/orders/7");
    assert_eq!(&r.body[..], br#"{"total":1500}"#);
}

#[test]
fn every_problem_is_reported_with_bridge_destination_and_field() {
    let mut cfg = bridge();
    cfg.auth = Some(AuthConfig::StandardWebhooks {
        secrets: vec![SecretValue("whsec_!!sekrit!!".into())],
        tolerance_ms: 1,
    });
    cfg.filter = Some("payload.amount >=".into());
    cfg.destinations[0].body = Some(r#"{"a": "$nope.x"}"#.into());
    cfg.destinations[1]
        .headers
        .insert("X-Id".into(), "${payload.id".into());
    let errs = compile_bridge(&cfg).unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 4, "{text:?}");
    assert_eq!(
        text[0],
        "bridge shop/orders: auth: standardWebhooks: secret #0 is not base64 after the whsec_ prefix"
    );
    assert!(
        text[1].starts_with("bridge shop/orders: filter: ")
            && text[1].contains("at line 1, column"),
        "{}",
        text[1]
    );
    assert!(
        text[2].starts_with("bridge shop/orders: destination crm: body: unknown reference $nope")
            && text[2].ends_with("at line 1, column 8"),
        "{}",
        text[2]
    );
    assert!(
        text[3].starts_with("bridge shop/orders: destination audit: headers.X-Id: unclosed ${"),
        "{}",
        text[3]
    );
    assert!(text.iter().all(|t| !t.contains("sekrit")));
    assert_eq!(errs[2].destination.as_deref(), Some("crm"));
    assert_eq!(errs[2].field, "body");
}

#[test]
fn bridge_without_auth_or_filter() {
    let mut cfg = bridge();
    cfg.auth = None;
    cfg.filter = None;
    let b = compile_bridge(&cfg).unwrap();
    assert!(b.verifier.is_none() && b.filter.is_none());
}

#[test]
fn compiled_bridges_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledBridge>();
}

/// Issue 12 item 12: plugin variables (from Secrets) of the bridge's namespace and the
/// namespace's internal token are in the bridge's redaction list.
#[test]
fn bridge_secrets_include_plugin_variables() {
    let plugin = |ns: &str, var: &str| -> causeway_config::PluginConfig {
        serde_json::from_value(json!({
            "namespace": ns, "name": "enrich",
            "source": {"type": "inline", "sha256": "00", "data": ""},
            "variables": {"api_key": var},
            "memoryBytes": 1, "timeoutMs": 1, "maxConcurrency": 1, "whenBusy": "queue",
        }))
        .unwrap()
    };
    let b = bridge();
    let worker = causeway_config::WorkerConfig {
        bridges: vec![b.clone()],
        plugins: vec![
            plugin("shop", "plugin-var-secret"),
            plugin("other", "not-ours-secret"),
        ],
        internal_tokens: [(
            "shop".to_string(),
            SecretValue("internal-token-shop".into()),
        )]
        .into(),
        ..Default::default()
    };
    let s = redact::bridge_secrets(&worker, &b);
    assert!(s.contains(&"plugin-var-secret"), "{s:?}");
    assert!(s.contains(&"internal-token-shop"));
    assert!(!s.contains(&"not-ours-secret"));
    assert!(s.contains(&"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    let text = redact::redact("echo: plugin%2Dvar%2Dsecret", &s);
    assert_eq!(text, "echo: <redacted>");
}

/// Issue 15: a delivery parses the body only for a template that reads `$payload`.
#[test]
fn a_template_says_whether_it_reads_the_payload() {
    let uses = |url: &str, body: Option<&str>, header: Option<&str>| {
        let mut d = destination("d", url, body);
        if let Some(h) = header {
            d.headers.insert("x-h".into(), h.into());
        }
        crate::template::DestinationTemplate::compile(&d, 1 << 20)
            .unwrap()
            .uses_payload()
    };
    assert!(!uses("https://a.example/in", None, None));
    assert!(!uses(
        "$env.CRM/x/$event.id",
        Some(r#"{"h": "$headers.x"}"#),
        Some("$query.a")
    ));
    assert!(uses("$env.CRM/orders/$payload.id", None, None));
    assert!(uses(
        "https://a.example/in",
        Some(r#"{"t": ["$payload.a"]}"#),
        None
    ));
    assert!(uses("https://a.example/in", Some("$payload"), None));
    assert!(uses("https://a.example/in", None, Some("id-${payload.id}")));
}
