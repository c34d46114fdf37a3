use serde_json::json;

use super::*;

fn eval_with(
    expr: &str,
    payload: Option<serde_json::Value>,
    headers: &[(&str, &str)],
    query: &str,
    method: &str,
) -> FilterDecision {
    let f = Filter::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    f.evaluate(
        &Inbound {
            method,
            headers: &h,
            query,
            body: b"",
        },
        payload.as_ref(),
    )
}

fn eval(expr: &str, payload: serde_json::Value) -> FilterDecision {
    eval_with(expr, Some(payload), &[], "", "POST")
}

#[test]
fn integers_and_floats_compare_as_numbers() {
    for amount in [json!(1500), json!(1500.0), json!(1000), json!(u64::MAX)] {
        assert_eq!(
            eval("payload.amount >= 1000", json!({"amount": amount})),
            FilterDecision::Pass,
            "{amount}"
        );
        assert_eq!(
            eval("payload.amount >= 1000.0", json!({"amount": amount})),
            FilterDecision::Pass,
            "{amount}"
        );
    }
    assert_eq!(
        eval("payload.amount >= 1000", json!({"amount": 999.5})),
        FilterDecision::Drop
    );
    assert_eq!(
        eval("payload.amount == 1500", json!({"amount": 1500.0})),
        FilterDecision::Pass
    );
    assert_eq!(
        eval("payload.amount < 0", json!({"amount": -3})),
        FilterDecision::Pass
    );
}

#[test]
fn variables() {
    let d = eval_with(
        r#"headers["x-github-event"] == "push" && headers["x-multi"] == "a, b" && query.ref == "main" && method == "PUT""#,
        Some(json!({})),
        &[
            ("X-GitHub-Event", "push"),
            ("x-multi", "a"),
            ("x-multi", "b"),
        ],
        "ref=main&ref=other",
        "PUT",
    );
    assert_eq!(d, FilterDecision::Pass);
    assert_eq!(
        eval(
            r#"payload.items.exists(i, i.sku == "B")"#,
            json!({"items": [{"sku": "A"}, {"sku": "B"}]})
        ),
        FilterDecision::Pass
    );
    assert_eq!(
        eval(
            r#"payload.type.startsWith("order.")"#,
            json!({"type": "invoice.paid"})
        ),
        FilterDecision::Drop
    );
}

#[test]
fn non_json_body_is_null_payload() {
    assert_eq!(
        eval_with("payload == null", None, &[], "", "POST"),
        FilterDecision::Pass
    );
    // Reading into it is an error, hence not delivered.
    assert!(matches!(
        eval_with("payload.a == 1", None, &[], "", "POST"),
        FilterDecision::Error(_)
    ));
}

#[test]
fn missing_key_fails_closed_with_the_reason() {
    match eval("payload.missing == 1", json!({"present": 1})) {
        FilterDecision::Error(msg) => assert!(msg.contains("missing"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // Explicit absence checks work.
    assert_eq!(
        eval(
            "has(payload.missing) && payload.missing == 1",
            json!({"present": 1})
        ),
        FilterDecision::Drop
    );
    assert_eq!(
        eval(
            "!has(payload.missing) || payload.missing == 1",
            json!({"present": 1})
        ),
        FilterDecision::Pass
    );
    // A missing header is an error too; `in` tests for it.
    assert!(matches!(
        eval(r#"headers["x-nope"] == "1""#, json!({})),
        FilterDecision::Error(_)
    ));
    assert_eq!(
        eval(r#"!("x-nope" in headers)"#, json!({})),
        FilterDecision::Pass
    );
}

#[test]
fn non_bool_result_is_an_error() {
    assert_eq!(
        eval("payload.amount", json!({"amount": 3})),
        FilterDecision::Error("filter returned int, not a bool".into())
    );
    assert!(matches!(
        eval("'a' + 1 == 'a1'", json!({})),
        FilterDecision::Error(_)
    ));
}

#[test]
fn syntax_errors_carry_a_position() {
    let e = Filter::compile("payload.amount >= ").unwrap_err();
    match &e {
        FilterError::Syntax { line, column, .. } => {
            assert_eq!((*line, *column > 1), (1, true), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("line 1, column"), "{e}");
    let e = Filter::compile("payload.a == 1 &&\n  payload.b ==").unwrap_err();
    assert!(matches!(e, FilterError::Syntax { line: 2, .. }), "{e}");
}

#[test]
fn compile_time_cost_bounds() {
    let long = format!("payload.a == '{}'", "x".repeat(MAX_EXPRESSION_BYTES));
    assert!(matches!(
        Filter::compile(&long),
        Err(FilterError::TooLong { .. })
    ));
    // Two nested macros are fine, three are refused.
    assert!(Filter::compile("payload.a.exists(x, x.b.exists(y, y == 1))").is_ok());
    assert!(matches!(
        Filter::compile("payload.a.exists(x, payload.a.exists(y, payload.a.exists(z, z == y)))"),
        Err(FilterError::TooNested { depth: 3, .. })
    ));
    // Deep nesting is an error, not a stack overflow (which would abort the worker).
    for deep in [
        format!("{}1{}", "(".repeat(1500), ")".repeat(1500)),
        format!("{}1{}", "[".repeat(1500), "]".repeat(1500)),
        format!("payload{} == 1", ".a".repeat(1500)),
        format!("payload.a{} == 1", " + 1".repeat(31)),
    ] {
        assert!(Filter::compile(&deep).is_err(), "{}", &deep[..20]);
    }
    let list = format!("size([{}]) > 0", vec!["1"; 1100].join(","));
    assert!(matches!(
        Filter::compile(&list),
        Err(FilterError::TooComplex { .. })
    ));
    // Long && / || chains are balanced by the parser, so they stay shallow.
    assert!(Filter::compile(&vec!["payload.a == 1"; 100].join(" && ")).is_ok());
}

#[test]
fn deepest_accepted_expression_evaluates_on_an_ordinary_thread() {
    // Test threads have the same 2 MiB stack as tokio's workers.
    let src = format!("payload.a{} == 31", " + 1".repeat(30));
    assert_eq!(eval(&src, json!({"a": 1})), FilterDecision::Pass);
}

#[test]
fn errors_quoting_huge_values_are_truncated() {
    let big = "y".repeat(10_000);
    match eval("payload.s + 1 == 1", json!({"s": big})) {
        // Cut to the limit plus the three bytes of the ellipsis.
        FilterDecision::Error(m) => assert!(
            m.len() <= MAX_ERROR_BYTES + 3 && m.ends_with('…'),
            "{}",
            m.len()
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn filter_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Filter>();
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
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_expressions_never_panic(src in ".{0,200}") {
            if let Ok(f) = Filter::compile(&src) {
                let h = http::HeaderMap::new();
                let _ = f.evaluate(&Inbound { method: "POST", headers: &h, query: "a=1", body: b"" }, Some(&json!({"a": 1})));
            }
        }

        #[test]
        fn fixed_filters_over_arbitrary_payloads(p in json_value()) {
            for expr in [
                "payload.amount >= 1000",
                "has(payload.a) && payload.a == 'x'",
                "size(payload) > 2",
                "payload.a.exists(x, x == 1)",
                "payload == null || payload != null",
            ] {
                let f = Filter::compile(expr).unwrap();
                let h = http::HeaderMap::new();
                let d = f.evaluate(&Inbound { method: "POST", headers: &h, query: "", body: b"" }, Some(&p));
                if expr.starts_with("payload == null") {
                    prop_assert_eq!(d, FilterDecision::Pass);
                }
            }
        }
    }
}

#[test]
fn credentials_are_hidden_from_the_filter() {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", "Bearer tok-secret".parse().unwrap());
    h.insert("x-api-key", "key-secret".parse().unwrap());
    h.insert("x-other", "1".parse().unwrap());
    let req = Inbound {
        method: "POST",
        headers: &h,
        query: "key=q-secret&a=1",
        body: b"",
    };
    let mut f = Filter::compile(
        r#""authorization" in headers || "x-api-key" in headers || "key" in query"#,
    )
    .unwrap();
    // Authorization is always hidden; the rest once the verifier's names are passed.
    assert_eq!(f.evaluate(&req, None), FilterDecision::Pass);
    f.hide(&["X-Api-Key".to_string()], Some("key"));
    assert_eq!(f.evaluate(&req, None), FilterDecision::Drop);
    let f = Filter::compile(r#"headers["x-other"] == "1" && query.a == "1""#).unwrap();
    assert_eq!(f.evaluate(&req, None), FilterDecision::Pass);
    // An error that would quote the header value cannot: the header is not there.
    let f = Filter::compile(r#"headers.authorization + 1 == 2"#).unwrap();
    match f.evaluate(&req, None) {
        FilterDecision::Error(m) => assert!(!m.contains("tok-secret"), "{m}"),
        other => panic!("{other:?}"),
    }
}

fn numbers(n: usize) -> serde_json::Value {
    json!({ "a": (0..n).collect::<Vec<_>>() })
}

fn inbound(h: &http::HeaderMap) -> Inbound<'_> {
    Inbound {
        method: "POST",
        headers: h,
        query: "",
        body: b"",
    }
}

/// Issue 12 item 7: a quadratic filter over a sender-sized list ends with a budget error
/// (the worker fails closed) instead of running for minutes.
#[test]
fn quadratic_filters_end_with_a_budget_error() {
    let big = numbers(20_000);
    let h = http::HeaderMap::new();
    for expr in [
        "payload.a.all(x, payload.a.exists(y, y < 0) == false)",
        // CEL absorbs errors in `||`: the budget still decides.
        "payload.a.all(x, payload.a.exists(y, y < 0) == false) || true",
        "payload.a.exists(x, payload.a.all(y, y >= 0) == false)",
        "payload.a.map(x, payload.a.filter(y, y == x)).size() > 0",
        "payload.a.map(x, payload.a.map(y, y)).size() > 0",
        "payload.a.exists_one(x, payload.a.exists_one(y, y == x))",
        "payload.a.filter(x, payload.a.exists(y, y == -1)).size() == 0",
    ] {
        let f = Filter::compile(expr).unwrap();
        let budget = Budget {
            max_iterations: 50_000,
            deadline: None,
        };
        let e = f
            .evaluate_with(&inbound(&h), Some(&big), budget)
            .unwrap_err();
        assert_eq!(e.kind, FailureKind::Budget, "{expr}: {e}");
        assert_eq!(
            e.message,
            "filter budget exceeded: more than 50000 macro iterations"
        );
        // The default entry point fails closed with the reason.
        match f.evaluate(&inbound(&h), Some(&big)) {
            FilterDecision::Error(m) => {
                assert!(m.starts_with("filter budget exceeded"), "{expr}: {m}")
            }
            other => panic!("{expr}: {other:?}"),
        }
    }
}

#[test]
fn a_passed_deadline_stops_the_evaluation() {
    let f = Filter::compile("payload.a.all(x, x >= 0)").unwrap();
    let h = http::HeaderMap::new();
    let budget = Budget {
        max_iterations: u64::MAX,
        deadline: Some(std::time::Instant::now()),
    };
    let e = f
        .evaluate_with(&inbound(&h), Some(&numbers(1_000)), budget)
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Budget);
    assert_eq!(
        e.message,
        "filter budget exceeded: evaluation deadline passed"
    );
}

#[test]
fn linear_filters_fit_the_budget() {
    let h = http::HeaderMap::new();
    let p = numbers(10_000);
    let budget = Budget {
        max_iterations: 10_000 * 5,
        deadline: None,
    };
    for (expr, want) in [
        ("payload.a.all(x, x >= 0)", true),
        ("payload.a.exists(x, x == 9999)", true),
        ("payload.a.exists_one(x, x == 5)", true),
        (
            "payload.a.map(x, x * 2).filter(y, y > 19990).size() == 4",
            true,
        ),
        ("payload.a.filter(x, x < 0).size() > 0", false),
    ] {
        let f = Filter::compile(expr).unwrap();
        assert_eq!(
            f.evaluate_with(&inbound(&h), Some(&p), budget),
            Ok(want),
            "{expr}"
        );
    }
    // Errors keep their kind.
    let f = Filter::compile("payload.nope == 1").unwrap();
    assert_eq!(
        f.evaluate_with(&inbound(&h), Some(&p), budget)
            .unwrap_err()
            .kind,
        FailureKind::Evaluation
    );
    let f = Filter::compile("payload.a.size()").unwrap();
    assert_eq!(
        f.evaluate_with(&inbound(&h), Some(&p), budget)
            .unwrap_err()
            .kind,
        FailureKind::NotBool
    );
}
