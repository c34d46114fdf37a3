use std::collections::BTreeMap;

use causeway_config::{DestinationConfig, EnvValue, RetryConfig, SecretValue};
use serde_json::json;

use super::*;

fn dest(url: &str, headers: &[(&str, &str)], body: Option<&str>) -> DestinationConfig {
    DestinationConfig {
        name: "crm".into(),
        url: url.into(),
        method: "POST".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
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

struct Fixture {
    payload: Option<serde_json::Value>,
    body: Vec<u8>,
    headers: http::HeaderMap,
    query: String,
    env: BTreeMap<String, EnvValue>,
}

impl Fixture {
    fn new(payload: serde_json::Value) -> Fixture {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-github-event", "push".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        let mut env = BTreeMap::new();
        env.insert(
            "BASE_URL".into(),
            EnvValue {
                value: SecretValue("https://crm.example/api".into()),
                secret: false,
            },
        );
        env.insert(
            "TOKEN".into(),
            EnvValue {
                value: SecretValue("tok-123".into()),
                secret: true,
            },
        );
        Fixture {
            body: serde_json::to_vec(&payload).unwrap(),
            payload: Some(payload),
            headers,
            query: "source=shop%201&x=1&x=2".into(),
            env,
        }
    }

    fn ctx(&self) -> EventContext<'_> {
        EventContext {
            payload: self.payload.as_ref(),
            body: &self.body,
            headers: &self.headers,
            query: &self.query,
            env: &self.env,
            event_id: "evt_1",
            received_at: "2024-05-01T12:00:00Z",
            cloudevent: None,
        }
    }
}

fn payload() -> serde_json::Value {
    json!({
        "id": "ord/42",
        "amount": 12.5,
        "count": 3,
        "paid": true,
        "note": null,
        "customer": {"name": "Zoë \"Z\" Smith", "tags": ["vip", "eu"]},
        "items": [{"id": "A1", "qty": 2}, {"id": "B2", "qty": 1}],
    })
}

fn render(
    d: &DestinationConfig,
    f: &Fixture,
    policy: MissingPolicy,
) -> Result<RenderedRequest, TemplateError> {
    DestinationTemplate::compile(d, 1 << 20)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .render(&f.ctx(), policy)
}

fn body_json(r: &RenderedRequest) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)))
}

#[test]
fn typed_substitution_in_json_bodies() {
    let f = Fixture::new(payload());
    let d = dest(
        "https://crm.example/orders",
        &[],
        Some(
            r#"{"amount": "$payload.amount", "count": "$payload.count", "paid": "$payload.paid",
                "customer": "$payload.customer", "first": "$payload.items[0].id", "all": "$payload",
                "text": "Order $payload.id for ${payload.customer.name}!", "event": "$event.id",
                "at": "$event.receivedAt", "gh": "$headers.X-GitHub-Event", "src": "$query.source",
                "null": "$payload.note", "literal": 7, "list": ["$payload.count", "x $payload.count"]}"#,
        ),
    );
    let r = render(&d, &f, MissingPolicy::Empty).unwrap();
    let b = body_json(&r);
    assert_eq!(b["amount"], json!(12.5));
    assert_eq!(b["count"], json!(3));
    assert_eq!(b["paid"], json!(true));
    assert_eq!(b["customer"]["tags"], json!(["vip", "eu"]));
    assert_eq!(b["first"], json!("A1"));
    assert_eq!(b["all"], payload());
    assert_eq!(b["text"], json!("Order ord/42 for Zoë \"Z\" Smith!"));
    assert_eq!(b["event"], json!("evt_1"));
    assert_eq!(b["at"], json!("2024-05-01T12:00:00Z"));
    assert_eq!(b["gh"], json!("push"));
    assert_eq!(b["src"], json!("shop 1"));
    assert_eq!(b["null"], json!(null));
    assert_eq!(b["literal"], json!(7));
    assert_eq!(b["list"], json!([3, "x 3"]));
    assert!(
        r.headers
            .contains(&("content-type".into(), "application/json".into()))
    );
}

#[test]
fn json_body_keeps_key_order() {
    let f = Fixture::new(payload());
    let d = dest(
        "https://x.example",
        &[],
        Some(r#"{"z": 1, "a": "$payload.count", "m": {"y": 2, "b": 3}}"#),
    );
    let r = render(&d, &f, MissingPolicy::Empty).unwrap();
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        r#"{"z":1,"a":3,"m":{"y":2,"b":3}}"#
    );
}

#[test]
fn missing_policy() {
    let f = Fixture::new(payload());
    let d = dest(
        "https://x.example",
        &[("x-note", "n=$payload.nope.deeper")],
        Some(r#"{"a": "$payload.nope", "b": "x$payload.items[9].id"}"#),
    );
    let r = render(&d, &f, MissingPolicy::Empty).unwrap();
    assert_eq!(body_json(&r), json!({"a": null, "b": "x"}));
    assert!(r.headers.contains(&("x-note".into(), "n=".into())));

    let err = render(&d, &f, MissingPolicy::Error).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Missing {
            field: "headers.x-note".into(),
            path: "$payload.nope.deeper".into()
        }
    );
    let d = dest("https://x.example", &[], Some(r#"{"a": "$payload.nope"}"#));
    assert_eq!(
        render(&d, &f, MissingPolicy::Error)
            .unwrap_err()
            .to_string(),
        "body: $payload.nope is missing"
    );
    let d = dest("https://x.example/$env.NOPE", &[], None);
    assert_eq!(
        render(&d, &f, MissingPolicy::Error).unwrap_err(),
        TemplateError::Missing {
            field: "url".into(),
            path: "$env.NOPE".into()
        }
    );
    // A present null is not missing.
    let d = dest("https://x.example", &[], Some(r#"{"a": "$payload.note"}"#));
    assert_eq!(
        body_json(&render(&d, &f, MissingPolicy::Error).unwrap()),
        json!({"a": null})
    );
}

#[test]
fn url_encoding() {
    let f = Fixture::new(payload());
    let d = dest(
        "$env.BASE_URL/orders/$payload.id?name=${payload.customer.name}&n=$payload.count",
        &[],
        None,
    );
    let r = render(&d, &f, MissingPolicy::Empty).unwrap();
    assert_eq!(
        r.url,
        "https://crm.example/api/orders/ord%2F42?name=Zo%C3%AB%20%22Z%22%20Smith&n=3"
    );

    // A base url that does not resolve to http(s) is refused at render time.
    let d = dest("$env.NOPE/orders", &[], None);
    assert_eq!(
        render(&d, &f, MissingPolicy::Empty).unwrap_err(),
        TemplateError::BadUrl {
            reason: "rendered url is not http://, https:// or nats://"
        }
    );
    let mut f2 = Fixture::new(payload());
    f2.env.insert(
        "BASE_URL".into(),
        EnvValue {
            value: SecretValue("https://a.example/\r\nx".into()),
            secret: false,
        },
    );
    let d = dest("$env.BASE_URL/orders", &[], None);
    assert!(matches!(
        render(&d, &f2, MissingPolicy::Empty),
        Err(TemplateError::BadUrl { .. })
    ));
}

#[test]
fn headers_and_default_content_type() {
    let f = Fixture::new(payload());
    let d = dest(
        "https://x.example",
        &[
            ("Authorization", "Bearer $env.TOKEN"),
            ("X-Event", "$headers.x-github-event"),
            ("X-Multi", "$headers.X-Multi"),
            ("X-Price", "$$${payload.amount}"),
        ],
        None,
    );
    let r = render(&d, &f, MissingPolicy::Empty).unwrap();
    assert_eq!(
        r.headers,
        vec![
            ("authorization".to_string(), "Bearer tok-123".to_string()),
            ("x-event".into(), "push".into()),
            ("x-multi".into(), "a, b".into()),
            ("x-price".into(), "$12.5".into()),
            // No body template: the event body and its content type pass through.
            ("content-type".into(), "application/json".into()),
        ]
    );
    assert_eq!(&r.body[..], &f.body[..]);
    assert_eq!(r.method, "POST");

    // A user-set content type wins.
    let d = dest(
        "https://x.example",
        &[("Content-Type", "application/vnd.x+json")],
        Some(r#"{"a": 1}"#),
    );
    let r = render(&d, &f, MissingPolicy::Empty).unwrap();
    assert_eq!(
        r.headers,
        vec![(
            "content-type".to_string(),
            "application/vnd.x+json".to_string()
        )]
    );
}

#[test]
fn header_injection_is_refused() {
    let f = Fixture::new(json!({"evil": "x\r\nX-Admin: 1", "nul": "a\u{0}b"}));
    for value in ["$payload.evil", "v=$payload.nul"] {
        let d = dest("https://x.example", &[("X-Note", value)], None);
        assert_eq!(
            render(&d, &f, MissingPolicy::Empty).unwrap_err(),
            TemplateError::HeaderInjection {
                header: "x-note".into()
            }
        );
    }
    // In a JSON body the same value is just an escaped string.
    let d = dest("https://x.example", &[], Some(r#"{"e": "$payload.evil"}"#));
    assert_eq!(
        body_json(&render(&d, &f, MissingPolicy::Empty).unwrap())["e"],
        json!("x\r\nX-Admin: 1")
    );
}

#[test]
fn text_bodies_and_non_json_events() {
    let f = Fixture::new(payload());
    let d = dest(
        "https://x.example",
        &[],
        Some("id=$payload.id&amount=$payload.amount&tags=$payload.customer.tags&cost=$$5 or $5."),
    );
    let r = render(&d, &f, MissingPolicy::Empty).unwrap();
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        r#"id=ord/42&amount=12.5&tags=["vip","eu"]&cost=$5 or $5."#
    );
    assert!(
        r.headers
            .contains(&("content-type".into(), "text/plain; charset=utf-8".into()))
    );

    // Not JSON: `$payload.*` is missing, the rest still renders.
    let mut raw = Fixture::new(json!(null));
    raw.payload = None;
    raw.body = b"a=1&b=2".to_vec();
    let d = dest(
        "https://x.example",
        &[],
        Some("got [$payload.a] for $event.id"),
    );
    assert_eq!(
        &render(&d, &raw, MissingPolicy::Empty).unwrap().body[..],
        b"got [] for evt_1"
    );
    assert!(matches!(
        render(&d, &raw, MissingPolicy::Error),
        Err(TemplateError::Missing { .. })
    ));
    let d = dest("https://x.example", &[], None);
    assert_eq!(
        &render(&d, &raw, MissingPolicy::Error).unwrap().body[..],
        b"a=1&b=2"
    );
}

#[test]
fn where_a_reference_ends() {
    let f = Fixture::new(payload());
    let d = dest(
        "https://x.example",
        &[],
        Some(
            "[$payload.count.] [$payload.items[1].qty[x]] [${payload.count}px] [$payload.count-x] [$env.TOKEN,] [$payload.items.1.id]",
        ),
    );
    let r = render(&d, &f, MissingPolicy::Empty).unwrap();
    // `-` continues a name, so `$payload.count-x` looks up the key "count-x" (missing).
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        "[3.] [1[x]] [3px] [] [tok-123,] [B2]"
    );
}

#[test]
fn compile_errors_name_field_and_position() {
    let d = dest(
        "https://x.example/$paylod.id",
        &[("X-A", "${payload.a"), ("bad header", "x")],
        Some("{\n  \"a\": \"$event.nope\"\n}"),
    );
    let errs = DestinationTemplate::compile(&d, 0).unwrap_err();
    let text: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    assert_eq!(text.len(), 4, "{text:?}");
    assert!(
        text[0].starts_with("url: unknown reference $paylod")
            && text[0].ends_with("at line 1, column 19"),
        "{}",
        text[0]
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("headers.X-A: unclosed ${")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t == "headers.bad header: not a valid header name"),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("body: unknown $event.nope") && t.ends_with("line 2, column 9")),
        "{text:?}"
    );

    for (bad, what) in [
        ("$headers", "takes exactly one name"),
        ("$env.A.B", "takes exactly one name"),
        ("${payload.a b}", "unexpected"),
        ("${}", "unknown reference"),
    ] {
        let d = dest("https://x.example", &[], Some(bad));
        let e = DestinationTemplate::compile(&d, 0).unwrap_err();
        assert!(e[0].message.contains(what), "{bad}: {e:?}");
    }
    let d = dest("ftp://x.example", &[], None);
    assert_eq!(
        DestinationTemplate::compile(&d, 0).unwrap_err()[0].field,
        "url"
    );
    // Event data cannot pick the host.
    for url in ["$payload.callback", "${headers.x-target}/x", "$query.u"] {
        let e = DestinationTemplate::compile(&dest(url, &[], None), 0).unwrap_err();
        assert!(
            e[0].message
                .contains("only an $env reference can be a base url"),
            "{url}: {e:?}"
        );
    }
}

#[test]
fn rendered_body_is_bounded() {
    let big = "x".repeat(1 << 20);
    let f = Fixture::new(json!({"s": big}));
    let many = format!("[{}]", vec!["\"$payload.s\""; 20].join(","));
    let d = dest("https://x.example", &[], Some(&many));
    let t = DestinationTemplate::compile(&d, 1024).unwrap();
    assert_eq!(
        t.render(&f.ctx(), MissingPolicy::Empty).unwrap_err(),
        TemplateError::TooLarge {
            field: "body".into(),
            limit: MAX_BODY_BYTES
        }
    );
    let text = vec!["$payload.s"; 20].join(" ");
    let d = dest("https://x.example", &[], Some(&text));
    let t = DestinationTemplate::compile(&d, 1024).unwrap();
    assert!(matches!(
        t.render(&f.ctx(), MissingPolicy::Empty),
        Err(TemplateError::TooLarge { .. })
    ));
    // The bridge's own body limit raises the cap.
    let d = dest("https://x.example", &[], Some(&many));
    let t = DestinationTemplate::compile(&d, 64 << 20).unwrap();
    assert_eq!(
        t.render(&f.ctx(), MissingPolicy::Empty).unwrap().body.len(),
        20 * ((1 << 20) + 2) + 21
    );
    let d = dest("https://x.example", &[("x-big", "$payload.s")], None);
    assert!(matches!(
        render(&d, &f, MissingPolicy::Empty),
        Err(TemplateError::TooLarge { .. })
    ));
}

#[test]
fn signing_from_the_destination() {
    let mut d = dest("https://x.example", &[], None);
    d.signing_secret = Some(SecretValue("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()));
    let t = DestinationTemplate::compile(&d, 0).unwrap();
    let h = t
        .sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
    assert_eq!(h[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert!(!format!("{t:?}").contains("MfKQ9r8"));
    d.signing_secret = Some(SecretValue("whsec_***".into()));
    assert_eq!(
        DestinationTemplate::compile(&d, 0).unwrap_err()[0].field,
        "signing"
    );
    assert!(
        DestinationTemplate::compile(&dest("https://x.example", &[], None), 0)
            .unwrap()
            .sign("e", 1, b"")
            .is_none()
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Template text rich in the characters the parser cares about.
    fn template_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("$".to_string()),
                Just("$$".to_string()),
                Just("${".to_string()),
                Just("}".to_string()),
                Just("$payload".to_string()),
                Just(".".to_string()),
                Just("[0]".to_string()),
                Just("$headers.x-a".to_string()),
                Just("$env.A".to_string()),
                Just("\"".to_string()),
                "[a-z0-9{}\\[\\]:,\" ]{0,6}",
            ],
            0..16,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn arbitrary_templates_and_payloads_never_panic(body in template_text(), url in template_text(), p in json_value()) {
            let f = Fixture::new(p);
            let d = dest(&format!("https://x.example/{url}"), &[("x-t", &body)], Some(&body));
            if let Ok(t) = DestinationTemplate::compile(&d, 0) {
                for policy in [MissingPolicy::Empty, MissingPolicy::Error] {
                    if let Ok(r) = t.render(&f.ctx(), policy) {
                        prop_assert!(r.url.starts_with("https://x.example/"));
                        prop_assert!(r.body.len() <= MAX_BODY_BYTES);
                    }
                }
            }
        }

        #[test]
        fn whole_reference_round_trips_any_payload(p in json_value()) {
            let f = Fixture::new(p.clone());
            let d = dest("https://x.example", &[], Some(r#"{"all": "$payload", "again": ["$payload"]}"#));
            let r = render(&d, &f, MissingPolicy::Error).unwrap();
            let b = body_json(&r);
            // serde_json's default float parser is not exact for every double, so compare
            // with the payload as it reads back from its own text.
            let p: serde_json::Value = serde_json::from_str(&p.to_string()).unwrap();
            prop_assert_eq!(&b["all"], &p);
            prop_assert_eq!(&b["again"][0], &p);
        }

        #[test]
        fn literal_text_without_dollar_is_unchanged(s in "[^$]{0,64}") {
            let f = Fixture::new(json!({}));
            let d = dest("https://x.example", &[], Some(&s));
            let r = render(&d, &f, MissingPolicy::Error).unwrap();
            // Valid JSON is re-serialised compactly; anything else is sent byte for byte.
            match serde_json::from_str::<serde_json::Value>(&s) {
                Ok(v) => prop_assert_eq!(body_json(&r), v),
                Err(_) => prop_assert_eq!(&r.body[..], s.as_bytes()),
            }
        }
    }
}

/// Issue 12 item 3: no reference in the scheme or authority, except a leading `$env` base.
#[test]
fn references_in_the_authority_are_refused() {
    for url in [
        "http://$payload.host:8080/x",
        "https://$headers.x/",
        "http://a.$payload.b/",
        "http://${payload.host}/x",
        "http://user:$query.p@host.example/",
        "http://host.example:$payload.port/x",
        "http://$payload.name.internal/run",
        "http://$env.HOST/x",
    ] {
        let e = DestinationTemplate::compile(&dest(url, &[], None), 0).unwrap_err();
        assert_eq!(e[0].field, "url", "{url}");
        assert!(
            e[0].message.contains("scheme or host part of the url"),
            "{url}: {e:?}"
        );
    }
    assert!(DestinationTemplate::compile(&dest("http:///x", &[], None), 0).is_err());
    // References after the host are fine, and so is a leading $env base.
    for url in [
        "http://orders.internal/run/$payload.id",
        "https://x.example?id=$payload.id",
        "https://x.example#$payload.id",
        "$env.BASE_URL/orders/$payload.id",
        "$env.BASE_URL$payload.id",
        "${env.BASE_URL}",
    ] {
        assert!(
            DestinationTemplate::compile(&dest(url, &[], None), 0).is_ok(),
            "{url}"
        );
    }
}

/// Issue 12 item 3: after a `$env` base, event data cannot change the authority.
#[test]
fn event_data_cannot_change_the_host_after_an_env_base() {
    let mut f = Fixture::new(json!({}));
    f.env.insert(
        "HOST".into(),
        EnvValue {
            value: SecretValue("https://api.example".into()),
            secret: false,
        },
    );
    let d = dest("$env.HOST$payload.p", &[], None);
    let t = DestinationTemplate::compile(&d, 0).unwrap();
    for evil in [
        ".evil.example",
        "@evil.example",
        "/x@evil.example",
        "?a",
        "#a",
        "\\evil",
        ":8443",
        "-evil",
    ] {
        f.payload = Some(json!({ "p": evil }));
        match t.render(&f.ctx(), MissingPolicy::Empty) {
            Ok(r) => assert!(
                r.url.starts_with("https://api.example%") || r.url == "https://api.example",
                "{evil}: {}",
                r.url
            ),
            Err(e) => assert_eq!(
                e,
                TemplateError::BadUrl {
                    reason: "the rendered host is not the one the template or its $env base fixes"
                },
                "{evil}"
            ),
        }
    }
    f.payload = Some(json!({ "p": ".evil.example" }));
    assert_eq!(
        t.render(&f.ctx(), MissingPolicy::Empty).unwrap_err(),
        TemplateError::BadUrl {
            reason: "the rendered host is not the one the template or its $env base fixes"
        }
    );
    // With a path after the base, the same values stay in the path.
    let t = DestinationTemplate::compile(&dest("$env.HOST/$payload.p", &[], None), 0).unwrap();
    for evil in [
        ".evil.example",
        "@evil.example",
        "/x@evil.example",
        "?a",
        "#a",
        "\\evil",
    ] {
        f.payload = Some(json!({ "p": evil }));
        let r = t.render(&f.ctx(), MissingPolicy::Empty).unwrap();
        assert!(
            r.url.starts_with("https://api.example/"),
            "{evil}: {}",
            r.url
        );
    }
    // Literal text right after the base cannot extend its host either (found by the
    // templates fuzz target: `${env.BASE}&,$` made the host `api.example&,$`).
    for url in [
        "${env.HOST}&,$",
        "${env.HOST}.evil.example/x",
        "$env.HOST:8080/x",
        "$env.HOST@evil/x",
    ] {
        let t = DestinationTemplate::compile(&dest(url, &[], None), 0).unwrap();
        assert_eq!(
            t.render(&f.ctx(), MissingPolicy::Empty).unwrap_err(),
            TemplateError::BadUrl {
                reason: "the rendered host is not the one the template or its $env base fixes"
            },
            "{url}"
        );
    }
    // An empty value leaves the base alone; a base with no host is refused.
    f.payload = Some(json!({ "p": "" }));
    let t = DestinationTemplate::compile(&d, 0).unwrap();
    assert_eq!(
        t.render(&f.ctx(), MissingPolicy::Empty).unwrap().url,
        "https://api.example"
    );
    f.env.insert(
        "HOST".into(),
        EnvValue {
            value: SecretValue("https://".into()),
            secret: false,
        },
    );
    assert_eq!(
        t.render(&f.ctx(), MissingPolicy::Empty).unwrap_err(),
        TemplateError::BadUrl {
            reason: "rendered url has no host"
        }
    );
}

/// Issue 17: a nats destination's url compiles through the same template, is checked
/// whole when literal, and may take event data in its subject (never in its host).
#[test]
fn nats_urls_compile_and_render() {
    let f = Fixture::new(payload());
    let d = dest("nats://127.0.0.1:4222/orders.created", &[], None);
    assert_eq!(
        render(&d, &f, MissingPolicy::Empty).unwrap().url,
        "nats://127.0.0.1:4222/orders.created"
    );
    let d = dest("nats://nats:4222/orders.$payload.count", &[], None);
    assert_eq!(
        render(&d, &f, MissingPolicy::Empty).unwrap().url,
        "nats://nats:4222/orders.3"
    );
    for (url, why) in [
        ("nats://u:p@nats:4222/orders", "carries no credentials"),
        ("nats://nats:4222", "needs a subject"),
        ("nats://nats:4222/orders.*", "no wildcard"),
    ] {
        let e = DestinationTemplate::compile(&dest(url, &[], None), 0).unwrap_err();
        assert_eq!(e[0].field, "url", "{url}");
        assert!(e[0].message.contains(why), "{url}: {e:?}");
    }
}
