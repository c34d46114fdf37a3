//! The bridge filter: one CEL expression over `payload`, `headers`, `query` and `method`.
//!
//! Compiled when the configuration loads. Evaluation rules (also in `docs/bridges.md`):
//! - `payload` is the parsed JSON body, `null` when the body is not JSON. JSON integers are
//!   CEL `int` (`uint` above `i64::MAX`), other numbers `double`; CEL compares the two as
//!   numbers, so `payload.amount >= 1000` holds for `1500` and `1500.0`.
//! - `headers` maps lower-case names to values (repeated headers joined with `", "`),
//!   `query` maps names to their first value, `method` is the request method. Headers and
//!   the query parameter that carry credentials are left out (see [`Filter::hide`]).
//! - `true` delivers, `false` drops (recorded as `filtered`).
//! - An evaluation error (a missing key is `no such key`, a type mismatch, a non-bool
//!   result) does NOT deliver: it fails closed, and the runtime records the event as
//!   `filtered` with the error as the reason and counts it. Write `has(payload.x) && …` to
//!   make absence explicit.
//!
//! Cost bounds: `cel` 0.15 has no evaluation budget, so the cost is bounded at compile time:
//! at most [`MAX_EXPRESSION_BYTES`] of source, at most [`MAX_NODES`] AST nodes, a tree at
//! most [`MAX_NESTING`] deep (evaluation recurses once per level on the worker's stack) and
//! at most [`MAX_COMPREHENSION_DEPTH`] nested macros (`all`, `exists`, `map`, `filter`, …).
//! The input is bounded by the bridge's `maxBodyBytes`. Parsing runs on its own thread with
//! a large stack, since the parser recurses deeply before its own limit applies.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr};
use cel::objects::{Key, Map};
use cel::{Context, Env, IdedExpr, Program, Value};

use crate::Inbound;
use crate::text::{headers_map, query_pairs, truncate};

/// Longest accepted expression (the CRD allows the same).
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// Largest accepted expression tree.
pub const MAX_NODES: usize = 1024;
/// Deepest nesting of comprehension macros: `a.exists(x, x.b.exists(y, …))` is 2.
pub const MAX_COMPREHENSION_DEPTH: usize = 2;
/// Deepest accepted expression tree: evaluation recurses once per level on the calling
/// (worker) thread, so this bounds its stack use.
pub const MAX_NESTING: usize = 32;
/// Stack of the compiler thread.
const COMPILE_STACK_BYTES: usize = 256 << 20;
/// Longest evaluation error message kept (errors may quote values).
const MAX_ERROR_BYTES: usize = 512;

/// A filter expression that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("expression is {len} bytes, the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("{message} at line {line}, column {column}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("expression has {nodes} nodes, the limit is {max}")]
    TooComplex { nodes: usize, max: usize },
    #[error("macros (all, exists, map, filter, …) nest {depth} deep, the limit is {max}")]
    TooNested { depth: usize, max: usize },
    #[error("expression nests {depth} levels deep, the limit is {max}")]
    TooDeep { depth: usize, max: usize },
    #[error("{message}")]
    Internal { message: String },
}

/// What the filter decided for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterDecision {
    /// Deliver.
    Pass,
    /// Do not deliver: record as `filtered`.
    Drop,
    /// The expression failed; the event is not delivered (recorded as `filtered` with this
    /// reason, and counted as a filter error).
    Error(String),
}

/// A compiled filter.
pub struct Filter {
    source: String,
    program: Program,
    env: Arc<Env>,
    hidden_headers: Vec<String>,
    hidden_query: Option<String>,
}

/// Headers that carry credentials whatever the scheme: the filter never sees them.
pub const ALWAYS_HIDDEN_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Filter {
    /// Parse and check an expression.
    ///
    /// The parser recurses deeply (tens of KiB of stack per nesting level in debug builds),
    /// so it runs on a thread of its own with a large stack: a hostile expression fails
    /// here with an error instead of overflowing a worker thread's stack. A panic inside
    /// the parser is reported as a syntax error too.
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        if source.len() > MAX_EXPRESSION_BYTES {
            return Err(FilterError::TooLong {
                len: source.len(),
                max: MAX_EXPRESSION_BYTES,
            });
        }
        let src = source.to_string();
        let program = std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(COMPILE_STACK_BYTES)
            .spawn(move || compile_checked(&src))
            .map_err(|_| FilterError::Internal {
                message: "cannot start the compiler thread".into(),
            })?
            .join()
            .map_err(|_| FilterError::Syntax {
                line: 1,
                column: 1,
                message: "the expression cannot be parsed".into(),
            })??;
        Ok(Filter {
            source: source.to_string(),
            program,
            env: Arc::new(Env::stdlib()),
            hidden_headers: ALWAYS_HIDDEN_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            hidden_query: None,
        })
    }

    /// Also hide these credential-carrying headers (lower-case) and query parameter from
    /// the expression, so that neither a filter nor its error messages (which may quote
    /// values and are recorded) can expose a presented credential. `compile_bridge` passes
    /// the verifier's.
    pub fn hide(&mut self, headers: &[String], query_param: Option<&str>) {
        self.hidden_headers
            .extend(headers.iter().map(|h| h.to_ascii_lowercase()));
        self.hidden_query = query_param.map(str::to_string);
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate for one request. `payload` is the parsed body (None when it is not JSON).
    pub fn evaluate(&self, req: &Inbound, payload: Option<&serde_json::Value>) -> FilterDecision {
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        ctx.add_variable_from_value("payload", payload.map(json_to_cel).unwrap_or(Value::Null));
        let mut headers = headers_map(req.headers);
        headers.retain(|(k, _)| !self.hidden_headers.contains(k));
        ctx.add_variable_from_value("headers", string_map(headers));
        let mut query: Vec<(String, String)> = Vec::new();
        for (k, v) in query_pairs(req.query) {
            if Some(&k) != self.hidden_query.as_ref() && !query.iter().any(|(q, _)| *q == k) {
                query.push((k, v));
            }
        }
        ctx.add_variable_from_value("query", string_map(query));
        ctx.add_variable_from_value("method", Value::String(Arc::new(req.method.to_string())));
        // A panic inside the interpreter must not take the worker down: it fails closed.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.program.execute(&ctx)));
        match result {
            Ok(Ok(Value::Bool(true))) => FilterDecision::Pass,
            Ok(Ok(Value::Bool(false))) => FilterDecision::Drop,
            Ok(Ok(other)) => {
                FilterDecision::Error(format!("filter returned {}, not a bool", other.type_of()))
            }
            Ok(Err(e)) => FilterDecision::Error(truncate(e.to_string(), MAX_ERROR_BYTES)),
            Err(_) => FilterDecision::Error("the filter failed unexpectedly".into()),
        }
    }
}

fn compile_checked(source: &str) -> Result<Program, FilterError> {
    let env = Env::stdlib();
    let program = env.compile(source).map_err(|errs| {
        let first = errs.errors.first();
        // Some errors (the recursion limit) carry no real position: clamp into the source.
        let lines = source.lines().count().max(1);
        let (line, column) = first
            .map(|e| {
                (
                    (e.pos.0.max(1) as usize).min(lines),
                    e.pos.1.max(1) as usize,
                )
            })
            .unwrap_or((1, 1));
        let message = first
            .map(|e| e.msg.clone())
            .unwrap_or_else(|| "syntax error".into());
        FilterError::Syntax {
            line,
            column,
            message,
        }
    })?;
    let mut stats = Stats::default();
    walk(program.expression(), 0, 0, &mut stats);
    if stats.max_nesting > MAX_NESTING {
        return Err(FilterError::TooDeep {
            depth: stats.max_nesting,
            max: MAX_NESTING,
        });
    }
    if stats.nodes > MAX_NODES {
        return Err(FilterError::TooComplex {
            nodes: stats.nodes,
            max: MAX_NODES,
        });
    }
    if stats.max_depth > MAX_COMPREHENSION_DEPTH {
        return Err(FilterError::TooNested {
            depth: stats.max_depth,
            max: MAX_COMPREHENSION_DEPTH,
        });
    }
    Ok(program)
}

#[derive(Default)]
struct Stats {
    nodes: usize,
    /// Deepest comprehension nesting.
    max_depth: usize,
    /// Deepest expression tree.
    max_nesting: usize,
}

/// Count nodes and the nesting of comprehensions (counted in their loop body only: the
/// range is evaluated once).
fn walk(e: &IdedExpr, depth: usize, level: usize, s: &mut Stats) {
    s.nodes += 1;
    s.max_nesting = s.max_nesting.max(level);
    let level = level + 1;
    match &e.expr {
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, depth, level, s);
            }
            for a in &c.args {
                walk(a, depth, level, s);
            }
        }
        Expr::Comprehension(c) => {
            let inner = depth + 1;
            s.max_depth = s.max_depth.max(inner);
            walk(&c.iter_range, depth, level, s);
            walk(&c.accu_init, depth, level, s);
            walk(&c.loop_cond, inner, level, s);
            walk(&c.loop_step, inner, level, s);
            walk(&c.result, depth, level, s);
        }
        Expr::List(l) => l.elements.iter().for_each(|x| walk(x, depth, level, s)),
        Expr::Map(m) => m
            .entries
            .iter()
            .for_each(|x| walk_entry(&x.expr, depth, level, s)),
        Expr::Struct(st) => st
            .entries
            .iter()
            .for_each(|x| walk_entry(&x.expr, depth, level, s)),
        Expr::Select(sel) => walk(&sel.operand, depth, level, s),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn walk_entry(e: &EntryExpr, depth: usize, level: usize, s: &mut Stats) {
    match e {
        EntryExpr::MapEntry(m) => {
            walk(&m.key, depth, level, s);
            walk(&m.value, depth, level, s);
        }
        EntryExpr::StructField(f) => walk(&f.value, depth, level, s),
    }
}

fn string_map(pairs: Vec<(String, String)>) -> Value {
    let map: HashMap<Key, Value> = pairs
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k)), Value::String(Arc::new(v))))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// JSON → CEL: integers that fit are `int`, larger positive ones `uint`, others `double`.
pub(crate) fn json_to_cel(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        J::Object(o) => {
            let map: HashMap<Key, Value> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

#[cfg(test)]
mod tests;
