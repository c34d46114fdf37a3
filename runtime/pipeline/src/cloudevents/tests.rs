use super::*;
use serde_json::json;

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

const BINARY: &[(&str, &str)] = &[
    ("ce-specversion", "1.0"),
    ("ce-id", "A234-1234-1234"),
    ("ce-source", "https://example.com/orders"),
    ("ce-type", "com.example.order.created"),
    ("ce-subject", "order%2042%20%22big%22"),
    ("ce-time", "2026-01-02T03:04:05Z"),
    ("ce-tenant", "acme"),
    ("content-type", "application/json"),
];

#[test]
fn binary_mode_reads_every_attribute_and_decodes_values() {
    let ev = parse(&headers(BINARY), None).unwrap().unwrap();
    assert_eq!(ev.mode, Mode::Binary);
    assert_eq!(
        ev.attribute("type").as_deref(),
        Some("com.example.order.created")
    );
    assert_eq!(ev.attribute("subject").as_deref(), Some("order 42 \"big\""));
    assert_eq!(ev.attribute("tenant").as_deref(), Some("acme"));
    assert_eq!(
        ev.attribute("datacontenttype").as_deref(),
        Some("application/json")
    );
    let body = json!({"n": 1});
    assert_eq!(ev.payload(Some(&body)), Some(&body));
}

#[test]
fn structured_mode_takes_data_as_the_payload() {
    let h = headers(&[(
        "content-type",
        "application/cloudevents+json; charset=utf-8",
    )]);
    let body = json!({
        "specversion": "1.0", "id": "1", "source": "/s", "type": "t",
        "priority": 3, "data": {"amount": 5}
    });
    let ev = parse(&h, Some(body)).unwrap().unwrap();
    assert_eq!(ev.mode, Mode::Structured);
    assert_eq!(ev.payload(None), Some(&json!({"amount": 5})));
    assert_eq!(ev.attribute("priority").as_deref(), Some("3"));
    assert_eq!(ev.data_bytes(b"ignored"), br#"{"amount":5}"#.to_vec());
}

#[test]
fn malformed_events_are_refused_with_the_reason() {
    let cases: Vec<(http::HeaderMap, Option<serde_json::Value>, &str)> = vec![
        (
            headers(&[("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")]),
            None,
            "ce-specversion is missing",
        ),
        (
            headers(&[
                ("ce-specversion", "0.3"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ]),
            None,
            "specversion \"0.3\" is not supported",
        ),
        (
            headers(&[
                ("ce-specversion", "1.0"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ]),
            None,
            "ce-id is missing",
        ),
        (
            headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("ce-time", "yesterday"),
            ]),
            None,
            "not an RFC 3339 timestamp",
        ),
        (
            headers(&[("content-type", STRUCTURED_CONTENT_TYPE)]),
            Some(json!({"specversion": "1.0", "id": "1", "source": "/s"})),
            "attribute type is missing",
        ),
        (
            headers(&[("content-type", STRUCTURED_CONTENT_TYPE)]),
            Some(
                json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": 1, "data_base64": "AA=="}),
            ),
            "data and data_base64 are both set",
        ),
        (
            headers(&[("content-type", STRUCTURED_CONTENT_TYPE)]),
            None,
            "not a JSON object",
        ),
        (
            headers(&[("content-type", BATCH_CONTENT_TYPE)]),
            None,
            "batched CloudEvents",
        ),
        (
            headers(&[("content-type", STRUCTURED_CONTENT_TYPE)]),
            Some(
                json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "Bad_Name": "x"}),
            ),
            "must be lower-case letters and digits",
        ),
    ];
    for (h, body, want) in cases {
        let e = parse(&h, body).unwrap_err();
        assert!(e.0.contains(want), "{e} does not say {want:?}");
    }
}

#[test]
fn a_plain_request_is_not_a_cloudevent() {
    assert_eq!(
        parse(
            &headers(&[("content-type", "application/json")]),
            Some(json!({}))
        ),
        Ok(None)
    );
}

#[test]
fn binary_output_round_trips_through_the_reader() {
    let attrs: Attributes = [
        ("id", "e1"),
        ("source", "/hooks/shop/orders"),
        ("type", "com.example.x"),
        ("subject", "naïve \"quoted\" 100%"),
        ("datacontenttype", "application/json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (h, body) = to_binary(&attrs, br#"{"a":1}"#);
    let map = headers(
        &h.iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let ev = parse(&map, None).unwrap().unwrap();
    assert_eq!(
        ev.attribute("subject").as_deref(),
        Some("naïve \"quoted\" 100%")
    );
    assert_eq!(body, br#"{"a":1}"#);

    let doc = to_structured(&attrs, br#"{"a":1}"#);
    let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(v["data"], json!({"a": 1}));
    assert_eq!(v["specversion"], "1.0");
    let bin = to_structured(
        &BTreeMap::from([(
            "datacontenttype".to_string(),
            "application/octet-stream".to_string(),
        )]),
        &[0xff, 0],
    );
    let v: serde_json::Value = serde_json::from_slice(&bin).unwrap();
    assert_eq!(v["data_base64"], "/wA=");
}
