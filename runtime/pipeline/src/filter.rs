//! The bridge filter: one CEL expression over `payload`, `headers`, `query` and `method`.
//!
//! Compiled when the configuration loads. Evaluation rules (also in `docs/bridges.md`):
//! - `payload` is the parsed JSON body, `null` when the body is not JSON. JSON integers are
//!   CEL `int` (`uint` above `i64::MAX`), other numbers `double`; CEL compares the two as
//!   numbers, so `payload.amount >= 1000` holds for `1500` and `1500.0`.
//! - `headers` maps lower-case names to values (repeated headers joined with `", "`),
//!   `query` maps names to their first value, `method` is the request method. Headers and
//!   the query parameter that carry credentials are left out (see [`Filter::hide`]).
//! - `cloudevent` maps the attributes of an inbound CloudEvent (`cloudevent.type`,
//!   `cloudevent.source`, extensions by name) and is an empty map when the request was not
//!   one; `payload` is then the event's data (the `data` member in structured mode). See
//!   [`crate::cloudevents`].
//! - `true` delivers, `false` drops (recorded as `filtered`).
//! - An evaluation error (a missing key is `no such key`, a type mismatch, a non-bool
//!   result) does NOT deliver: it fails closed, and the runtime records the event as
//!   `filtered` with the error as the reason and counts it. Write `has(payload.x) && …` to
//!   make absence explicit.
//!
//! Cost bounds. Compile time: at most [`MAX_EXPRESSION_BYTES`] of source, at most
//! [`MAX_NODES`] AST nodes, a tree at most [`MAX_NESTING`] deep (evaluation recurses once per
//! level on the worker's stack) and at most [`MAX_COMPREHENSION_DEPTH`] nested macros (`all`,
//! `exists`, `map`, `filter`, …). Parsing runs on its own thread with a large stack, since
//! the parser recurses deeply before its own limit applies.
//!
//! Evaluation: `cel` 0.15 has no evaluation budget of its own, and two nested macros over
//! a sender-sized list are quadratic (`payload.a.all(x, payload.a.exists(y, x == y))` over
//! 100k items is 10^10 steps). So the compiled program is instrumented: every iteration of
//! every macro first calls a budget check (an internal function, not callable from the
//! source), which counts iterations against [`Budget::max_iterations`] and looks at the
//! clock against [`Budget::deadline`]. When either is exhausted the check fails, and the
//! failure leaves the loop at once (it is evaluated as the loop condition, or as the guard
//! or element of `map`/`filter`, where the interpreter does not defer errors). Whatever
//! the expression makes of that error (`… || true` absorbs errors in CEL), an exhausted
//! budget is reported as [`FailureKind::Budget`] and the event is not delivered (fail
//! closed). The cost between two checks is one iteration's body outside nested macros,
//! bounded by the expression size times the input size. Run evaluation off the async
//! threads (`spawn_blocking`) with a deadline: the check stops the evaluation itself, so no
//! abandoned thread keeps running.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cel::common::ast::{CallExpr, EntryExpr, Expr, LiteralValue, operators};
use cel::common::types::CelBool;
use cel::common::value::CowVal;
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, IdedExpr, Value};

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
/// Macro iterations one evaluation may run by default (all macros, nested ones included).
pub const DEFAULT_MAX_ITERATIONS: u64 = 1_000_000;
/// Wall-clock time [`Filter::evaluate`] gives one evaluation.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(250);
/// The budget check the instrumented program calls on every macro iteration. The `@`
/// makes it a name no source expression can spell.
const BUDGET_FN: &str = "@causeway_budget";
/// The clock is read every this many iterations.
const CLOCK_EVERY: u64 = 16;

/// What one evaluation may spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Macro iterations (`all`, `exists`, `exists_one`, `map`, `filter`), nested ones
    /// included: `a.all(x, b.exists(y, …))` over 1,000 × 1,000 items is 1,001,000.
    pub max_iterations: u64,
    /// Stop when this instant passes (checked every few iterations).
    pub deadline: Option<Instant>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_iterations: DEFAULT_MAX_ITERATIONS,
            deadline: None,
        }
    }
}

impl Budget {
    /// The default iteration limit and a deadline `limit` from now.
    pub fn with_time_limit(limit: Duration) -> Budget {
        Budget {
            max_iterations: DEFAULT_MAX_ITERATIONS,
            deadline: Instant::now().checked_add(limit),
        }
    }
}

/// Why an evaluation did not give a decision. The event is not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The iteration or time budget ran out.
    Budget,
    /// An evaluation error: a missing key, a type mismatch, a failed function.
    Evaluation,
    /// The result is not a bool.
    NotBool,
    /// The interpreter panicked (caught).
    Internal,
}

impl FailureKind {
    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Budget => "budget",
            FailureKind::Evaluation => "evaluation",
            FailureKind::NotBool => "not_bool",
            FailureKind::Internal => "internal",
        }
    }
}

/// A filter that failed on one event: fail closed with this reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FilterFailure {
    pub kind: FailureKind,
    /// Short, truncated; may quote event values (never hidden credentials).
    pub message: String,
}

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
    /// The parsed expression, instrumented with budget checks.
    expr: IdedExpr,
    /// The same, uninstrumented: only for [`Filter::evaluate_uninstrumented`].
    plain: IdedExpr,
    env: Arc<Env>,
    hidden_headers: Vec<String>,
    hidden_query: Option<String>,
}

/// The one function environment of every filter: the standard library and the budget
/// check, the same for all. Built once and shared, because each one costs about 30 KiB of
/// small allocations: a configuration of 1,000 filters held 30 MiB of identical tables, and
/// every swap allocated them again (issue 15, "Memory that stays flat").
fn shared_env() -> Result<Arc<Env>, FilterError> {
    static ENV: std::sync::OnceLock<Result<Arc<Env>, String>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        env.add_overload(BUDGET_FN, "causeway_budget", vec![], budget_check)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(env))
    })
    .clone()
    .map_err(|message| FilterError::Internal { message })
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
        let (expr, plain) = std::thread::Builder::new()
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
            expr,
            plain,
            env: shared_env()?,
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

    /// Evaluate for one request with the default budget ([`DEFAULT_MAX_ITERATIONS`],
    /// [`DEFAULT_TIME_LIMIT`]). `payload` is the parsed body (None when it is not JSON).
    pub fn evaluate(&self, req: &Inbound, payload: Option<&serde_json::Value>) -> FilterDecision {
        match self.evaluate_with(req, payload, Budget::with_time_limit(DEFAULT_TIME_LIMIT)) {
            Ok(true) => FilterDecision::Pass,
            Ok(false) => FilterDecision::Drop,
            Err(f) => FilterDecision::Error(f.message),
        }
    }

    /// Evaluate for one request within `budget`: `Ok(true)` delivers, `Ok(false)` drops,
    /// an error drops too (fail closed) with its kind and reason. Synchronous and
    /// CPU-bound: call it off the async threads.
    pub fn evaluate_with(
        &self,
        req: &Inbound,
        payload: Option<&serde_json::Value>,
        budget: Budget,
    ) -> Result<bool, FilterFailure> {
        self.run(&self.expr, req, payload, None, budget)
    }

    /// [`Filter::evaluate_with`] for a request that may be a CloudEvent: its attributes are
    /// the `cloudevent` variable, and `payload` should be its data.
    pub fn evaluate_event(
        &self,
        req: &Inbound,
        payload: Option<&serde_json::Value>,
        cloudevent: Option<&crate::cloudevents::CloudEvent>,
        budget: Budget,
    ) -> Result<bool, FilterFailure> {
        self.run(&self.expr, req, payload, cloudevent, budget)
    }

    /// The expression as written, without budget checks (unbounded). For differential
    /// testing of the instrumentation (the fuzz target compares the two); never call it on
    /// event data in the worker.
    #[doc(hidden)]
    pub fn evaluate_uninstrumented(
        &self,
        req: &Inbound,
        payload: Option<&serde_json::Value>,
    ) -> Result<bool, FilterFailure> {
        let unlimited = Budget {
            max_iterations: u64::MAX,
            deadline: None,
        };
        self.run(&self.plain, req, payload, None, unlimited)
    }

    fn run(
        &self,
        expr: &IdedExpr,
        req: &Inbound,
        payload: Option<&serde_json::Value>,
        cloudevent: Option<&crate::cloudevents::CloudEvent>,
        budget: Budget,
    ) -> Result<bool, FilterFailure> {
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        let attributes: serde_json::Map<String, serde_json::Value> = cloudevent
            .map(|c| c.attributes.clone().into_iter().collect())
            .unwrap_or_default();
        ctx.add_variable_from_value(
            "cloudevent",
            json_to_cel(&serde_json::Value::Object(attributes)),
        );
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
        let meter = MeterGuard::install(budget);
        // A panic inside the interpreter must not take the worker down: it fails closed.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Value::resolve(expr, &ctx)));
        let exhausted = meter.exhausted();
        drop(meter);
        let fail = |kind, message: String| FilterFailure { kind, message };
        // An exhausted budget wins over any result: CEL may have absorbed the error
        // (`… || true`), and a decision reached that way is not one to trust.
        if let Some(what) = exhausted {
            return Err(fail(FailureKind::Budget, what.to_string()));
        }
        match result {
            Ok(Ok(Value::Bool(b))) => Ok(b),
            Ok(Ok(other)) => Err(fail(
                FailureKind::NotBool,
                format!("filter returned {}, not a bool", other.type_of()),
            )),
            Ok(Err(e)) => Err(fail(
                FailureKind::Evaluation,
                truncate(e.to_string(), MAX_ERROR_BYTES),
            )),
            Err(_) => Err(fail(
                FailureKind::Internal,
                "the filter failed unexpectedly".into(),
            )),
        }
    }
}

/// Which budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exhausted {
    Iterations(u64),
    Time,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exhausted::Iterations(n) => {
                write!(f, "filter budget exceeded: more than {n} macro iterations")
            }
            Exhausted::Time => f.write_str("filter budget exceeded: evaluation deadline passed"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Meter {
    used: u64,
    budget: Budget,
    exhausted: Option<Exhausted>,
}

thread_local! {
    /// The budget of the evaluation running on this thread (evaluation is synchronous and
    /// never re-entrant, so one slot per thread is enough).
    static METER: Cell<Option<Meter>> = const { Cell::new(None) };
}

/// Installs a meter for one evaluation and removes it on drop (panics included).
struct MeterGuard;

impl MeterGuard {
    fn install(budget: Budget) -> MeterGuard {
        METER.with(|m| {
            m.set(Some(Meter {
                used: 0,
                budget,
                exhausted: None,
            }))
        });
        MeterGuard
    }

    fn exhausted(&self) -> Option<Exhausted> {
        METER.with(|m| m.get().and_then(|m| m.exhausted))
    }
}

impl Drop for MeterGuard {
    fn drop(&mut self) {
        METER.with(|m| m.set(None));
    }
}

/// The budget check: `true`, or an error once the budget is spent (and on every later
/// call, so an outer loop stops at its next iteration too).
fn budget_check<'b, 'v>(_args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let exhausted = METER.with(|cell| {
        let mut m = cell.get()?;
        if m.exhausted.is_none() {
            m.used += 1;
            if m.used > m.budget.max_iterations {
                m.exhausted = Some(Exhausted::Iterations(m.budget.max_iterations));
            } else if m.used % CLOCK_EVERY == 0
                && let Some(d) = m.budget.deadline
                && Instant::now() >= d
            {
                m.exhausted = Some(Exhausted::Time);
            }
            cell.set(Some(m));
        }
        m.exhausted
    });
    match exhausted {
        None => Ok(CowVal::owned(CelBool::from(true))),
        Some(e) => Err(ExecutionError::function_error("budget", e)),
    }
}

/// Put a budget check in front of every iteration of every comprehension.
///
/// The interpreter defers errors of an `all`/`exists` loop step (a later `false` may still
/// decide), so the check must sit where an error ends the loop at once: the loop
/// condition. `map` and `filter` have a literal loop condition that the interpreter's fast
/// path relies on (building the result in place); for them the check guards the step's
/// condition (`filter`) or its appended element (`map`), whose errors also end the loop.
fn instrument(e: &mut IdedExpr) {
    match &mut e.expr {
        Expr::Call(c) => {
            if let Some(t) = &mut c.target {
                instrument(t);
            }
            c.args.iter_mut().for_each(instrument);
        }
        Expr::Comprehension(c) => {
            instrument(&mut c.iter_range);
            instrument(&mut c.accu_init);
            instrument(&mut c.loop_cond);
            instrument(&mut c.loop_step);
            instrument(&mut c.result);
            let literal_cond = matches!(c.loop_cond.expr, Expr::Literal(_));
            let placed = literal_cond && guard_step(&mut c.loop_step, &c.accu_var);
            if !placed {
                let cond = std::mem::take(&mut c.loop_cond);
                c.loop_cond = checked(cond, false_literal());
            }
        }
        Expr::List(l) => l.elements.iter_mut().for_each(instrument),
        Expr::Map(m) => m
            .entries
            .iter_mut()
            .for_each(|x| instrument_entry(&mut x.expr)),
        Expr::Struct(st) => st
            .entries
            .iter_mut()
            .for_each(|x| instrument_entry(&mut x.expr)),
        Expr::Select(sel) => instrument(&mut sel.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn instrument_entry(e: &mut EntryExpr) {
    match e {
        EntryExpr::MapEntry(m) => {
            instrument(&mut m.key);
            instrument(&mut m.value);
        }
        EntryExpr::StructField(f) => instrument(&mut f.value),
    }
}

/// Place the check inside a `map`/`filter`/`exists_one` step: `g ? … : …` → the guard;
/// `@result + [x]` → the element. False when the step has neither shape.
fn guard_step(step: &mut IdedExpr, accu: &str) -> bool {
    let Expr::Call(call) = &mut step.expr else {
        return false;
    };
    if call.target.is_some() {
        return false;
    }
    if call.func_name == operators::CONDITIONAL && call.args.len() == 3 {
        let guard = std::mem::take(&mut call.args[0]);
        call.args[0] = checked(guard, false_literal());
        return true;
    }
    if call.func_name == operators::ADD
        && let [lhs, rhs] = call.args.as_mut_slice()
        && matches!(&lhs.expr, Expr::Ident(n) if n == accu)
        && let Expr::List(list) = &mut rhs.expr
        && let Some(first) = list.elements.first_mut()
    {
        let x = std::mem::take(first);
        *first = checked(x, null_literal());
        return true;
    }
    false
}

/// `@causeway_budget() ? e : otherwise`: `e` once the check passes (it never yields false);
/// the check's error otherwise, without evaluating `e`.
fn checked(e: IdedExpr, otherwise: IdedExpr) -> IdedExpr {
    let check = node(Expr::Call(CallExpr {
        func_name: BUDGET_FN.to_string(),
        target: None,
        args: vec![],
    }));
    node(Expr::Call(CallExpr {
        func_name: operators::CONDITIONAL.to_string(),
        target: None,
        args: vec![check, e, otherwise],
    }))
}

fn false_literal() -> IdedExpr {
    node(Expr::Literal(LiteralValue::Boolean(CelBool::from(false))))
}

fn null_literal() -> IdedExpr {
    node(Expr::Literal(LiteralValue::Null))
}

/// Nodes added by the instrumentation have id 0 (no source position).
fn node(expr: Expr) -> IdedExpr {
    IdedExpr { id: 0, expr }
}

/// The instrumented expression and the plain one.
fn compile_checked(source: &str) -> Result<(IdedExpr, IdedExpr), FilterError> {
    let env = shared_env()?;
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
    let plain = program.expression().clone();
    let mut expr = plain.clone();
    instrument(&mut expr);
    Ok((expr, plain))
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
