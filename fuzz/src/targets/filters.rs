//! CEL filters: compile expressions from a grammar (with character-level mutations, so
//! that broken syntax is covered too) and evaluate them over random payloads, headers and
//! query strings, within a budget.
//!
//! Properties besides "no panic": an evaluation ends within its budget (a deadline far
//! below the runner's slow threshold); a panic inside the parser or interpreter is caught
//! by the pipeline (fail closed) and reported as contained.

use std::time::{Duration, Instant};

use causeway_pipeline::Inbound;
use causeway_pipeline::filter::{Budget, FailureKind, Filter, FilterFailure};
use serde::{Deserialize, Serialize};

use crate::{Rng, Target};

pub struct Filters;

#[derive(Serialize, Deserialize, Debug)]
struct Input {
    expr: String,
    payload: Option<serde_json::Value>,
    headers: Vec<(String, Vec<u8>)>,
    query: String,
    method: String,
}

const ATOMS: &[&str] = &[
    "payload",
    "payload.a",
    "payload.items",
    "payload.amount",
    "payload['x-y']",
    "payload.a.b.c",
    "headers",
    "headers['x-h']",
    "query",
    "query.q",
    "method",
    "x",
    "y",
    "1",
    "-1",
    "0",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615u",
    "1u",
    "1.5",
    "1e308",
    "-0.0",
    "'str'",
    "\"é\\u00e9\\n\"",
    "r'raw\\d'",
    "b'\\xff'",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "[1, 2, 3]",
    "{'a': 1}",
    "int",
    "string",
];

const BINOPS: &[&str] = &[
    "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "in",
];

const FUNCS: &[&str] = &[
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "type",
    "dyn",
    "bool",
    "timestamp",
    "duration",
    "has",
];

const METHODS: &[&str] = &[
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "size",
    "getMilliseconds",
    "getFullYear",
    "exists",
    "all",
];

const MACROS: &[&str] = &["all", "exists", "exists_one", "map", "filter"];

fn expr(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 {
        return rng.pick(ATOMS).to_string();
    }
    let d = depth - 1;
    match rng.below(12) {
        0 | 1 => rng.pick(ATOMS).to_string(),
        2 | 3 => format!("{} {} {}", expr(rng, d), rng.pick(BINOPS), expr(rng, d)),
        4 => format!("{}{}", rng.pick(&["!", "-", "!!", "--"]), expr(rng, d)),
        5 => format!("{} ? {} : {}", expr(rng, d), expr(rng, d), expr(rng, d)),
        6 => format!("({})", expr(rng, d)),
        7 => {
            let f = rng.pick(FUNCS);
            if *f == "has" {
                format!(
                    "has({}.{})",
                    rng.pick(&["payload", "payload.a", "headers", "x"]),
                    rng.pick(&["a", "b", "items"])
                )
            } else {
                format!("{f}({})", expr(rng, d))
            }
        }
        8 => format!("{}.{}({})", expr(rng, d), rng.pick(METHODS), expr(rng, d)),
        9 => {
            let var = rng.pick(&["x", "y"]);
            let m = rng.pick(MACROS);
            if *m == "map" && rng.one_in(2) {
                format!(
                    "{}.map({var}, {}, {})",
                    expr(rng, d),
                    expr(rng, d),
                    expr(rng, d)
                )
            } else {
                format!("{}.{m}({var}, {})", expr(rng, d), expr(rng, d))
            }
        }
        10 => format!("[{}, {}]", expr(rng, d), expr(rng, d)),
        _ => format!("{}[{}]", expr(rng, d), expr(rng, d)),
    }
}

impl Target for Filters {
    fn name(&self) -> &'static str {
        "filters"
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let depth = 1 + rng.below(5);
        let mut e = if rng.one_in(20) {
            rng.text(30)
        } else {
            expr(rng, depth)
        };
        if rng.one_in(4) {
            let mut b = e.into_bytes();
            rng.mutate_bytes(&mut b);
            e = String::from_utf8_lossy(&b).into_owned();
        }
        let payload = if rng.one_in(8) {
            None
        } else if rng.one_in(10) {
            // A long list: macros over it must end on the budget.
            Some(serde_json::json!({"items": (0..2_000).collect::<Vec<_>>(), "a": rng.json(2)}))
        } else {
            Some(rng.json(4))
        };
        let input = Input {
            expr: e,
            payload,
            headers: (0..rng.below(3))
                .map(|_| {
                    (
                        rng.pick(&["x-h", "authorization", "x-y"]).to_string(),
                        rng.bytes(8),
                    )
                })
                .collect(),
            query: rng.text(10),
            method: rng.pick(&["POST", "GET", "DELETE"]).to_string(),
        };
        serde_json::to_vec(&input).unwrap_or_default()
    }

    fn execute(&self, input: &[u8]) -> Option<String> {
        let Ok(input) = serde_json::from_slice::<Input>(input) else {
            return None;
        };
        let f = match Filter::compile(&input.expr) {
            Ok(f) => f,
            // The pipeline reports a parser panic as this syntax error.
            Err(e) if e.to_string().contains("the expression cannot be parsed") => {
                return Some(format!("parser panic on {:?}", input.expr));
            }
            Err(_) => return None,
        };
        let headers = super::header_map(&input.headers);
        let req = Inbound {
            method: &input.method,
            headers: &headers,
            query: &input.query,
            body: b"",
        };
        let limit = Duration::from_millis(500);
        let budget = Budget {
            max_iterations: 100_000,
            deadline: Instant::now().checked_add(limit),
        };
        let began = Instant::now();
        let result = f.evaluate_with(&req, input.payload.as_ref(), budget);
        let took = began.elapsed();
        // One iteration's body is bounded by the expression and input sizes: far below 1 s.
        assert!(
            took < limit + Duration::from_secs(1),
            "evaluation took {took:?} for {:?}",
            input.expr
        );
        // The instrumentation changes nothing but the budget: within it, the expression as
        // written gives the same outcome.
        if !matches!(&result, Err(e) if e.kind == FailureKind::Budget) {
            let plain = f.evaluate_uninstrumented(&req, input.payload.as_ref());
            // Error kinds, not messages: those print maps in hash order.
            let kind = |r: &Result<bool, FilterFailure>| r.as_ref().map_err(|e| e.kind).copied();
            assert_eq!(
                kind(&result),
                kind(&plain),
                "budget checks changed the outcome of {:?}",
                input.expr
            );
        }
        match result {
            Err(e) if e.kind == FailureKind::Internal => {
                Some(format!("interpreter panic on {:?}", input.expr))
            }
            _ => None,
        }
    }
}
