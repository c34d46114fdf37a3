//! `kubectl causeway`: the admin API of a namespace's workers, through the API server.
//!
//! Every request goes with the user's kubeconfig (its `--context`) to the API server: the
//! workers are found by listing pods (`app.kubernetes.io/name=causeway-worker`, grouped by
//! `causeway.dev/pool`), their admin token is read from the pool's Secret
//! (`causeway-<pool>-admin`, key `token`, where the operator puts it), and the admin API
//! is called through the pod proxy (`/api/v1/namespaces/<ns>/pods/<pod>:9090/proxy/...`,
//! token in `x-causeway-admin-token`, which the proxy forwards). So the user's own RBAC
//! decides: listing pods, reading the admin Secret and `pods/proxy` in that namespace.
//!
//! A pool's workers each answer for their own store (embedded) or all for the shared one
//! (PostgreSQL): listings are merged and deduplicated by event id; bridge and destination
//! actions go to every worker of the pool serving the bridge (each is idempotent); an
//! event's replay goes to the first worker that knows the event, once.

mod args;
mod output;

pub use args::{Args, Command, Format};

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::ListParams;
use kube::config::KubeConfigOptions;
use kube::{Api, Client, Config};
use serde_json::Value;

/// The workers' admin port (`causeway_config::ADMIN_PORT`).
const ADMIN_PORT: u16 = causeway_config::ADMIN_PORT;
const WORKER_SELECTOR: &str = "app.kubernetes.io/name=causeway-worker";
const POOL_LABEL: &str = "causeway.dev/pool";
const TOKEN_HEADER: &str = "x-causeway-admin-token";

/// What went wrong, in words for the terminal.
#[derive(Debug, thiserror::Error)]
pub enum KubectlError {
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
}

impl KubectlError {
    /// The process's exit code: 1 for failures, 2 for usage errors (like kubectl).
    pub fn exit_code(&self) -> u8 {
        match self {
            KubectlError::Usage(_) => 2,
            _ => 1,
        }
    }
}

fn api_error(what: &str, e: kube::Error) -> KubectlError {
    match e {
        kube::Error::Api(s) if s.code == 403 => KubectlError::Api(format!(
            "{what}: forbidden: {} (your RBAC does not allow this)",
            s.message
        )),
        kube::Error::Api(s) if s.code == 404 => {
            KubectlError::NotFound(format!("{what}: not found: {}", s.message))
        }
        kube::Error::Api(s) => KubectlError::Api(format!("{what}: {} ({})", s.message, s.code)),
        other => KubectlError::Api(format!("{what}: {other}")),
    }
}

/// A failed answer: the API server's own (a `Status`: RBAC says no, the pod is gone) or the
/// worker's (`{"error": …}` through the proxy).
fn answer_error(what: &str, code: u16, v: Option<&Value>, text: &str) -> KubectlError {
    let from_apiserver = v.is_some_and(|v| v["kind"] == "Status");
    let message = v
        .and_then(|v| v["error"].as_str().or(v["message"].as_str()))
        .unwrap_or(text)
        .to_string();
    match code {
        403 if from_apiserver => KubectlError::Api(format!(
            "{what}: forbidden: {message} (your RBAC does not allow this)"
        )),
        404 => KubectlError::NotFound(format!("{what}: {message}")),
        _ => KubectlError::Api(format!("{what}: {message} ({code})")),
    }
}

/// `ns/name` for a bridge named `name` (or `ns/name`) in the namespace of `-n`.
fn bridge_key(namespace: Option<&str>, name: &str) -> Result<String, KubectlError> {
    let valid = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    let (ns, n) = match (name.split_once('/'), namespace) {
        (Some((ns, n)), _) => (ns, n),
        (None, Some(ns)) => (ns, name),
        (None, None) => {
            return Err(KubectlError::Usage(format!(
                "with -A, name the bridge as <namespace>/<name> (not {name:?})"
            )));
        }
    };
    if !valid(ns) || !valid(n) {
        return Err(KubectlError::Usage(format!(
            "not a bridge name: {name:?} (lowercase letters, digits, '-' and '.')"
        )));
    }
    Ok(format!("{ns}/{n}"))
}

/// One worker pod of a pool, with the pool's admin token.
#[derive(Clone, Debug)]
struct Worker {
    namespace: String,
    pool: String,
    pod: String,
    token: Option<String>,
}

struct Ctx {
    client: Client,
    /// `None` with `-A`.
    namespace: Option<String>,
}

/// Runs one command; what it prints goes to `out`.
pub async fn run(args: Args, out: &mut dyn std::io::Write) -> Result<(), KubectlError> {
    args.check()?;
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let config = match &args.context {
        Some(ctx) => Config::from_kubeconfig(&KubeConfigOptions {
            context: Some(ctx.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| KubectlError::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| KubectlError::Config(e.to_string()))?,
    };
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(
            args.namespace
                .clone()
                .unwrap_or_else(|| config.default_namespace.clone()),
        )
    };
    let client = Client::try_from(config).map_err(|e| KubectlError::Config(e.to_string()))?;
    let ctx = Ctx { client, namespace };
    match &args.command {
        Command::Events(args::Events::List {
            bridge,
            status,
            limit,
            before,
            since,
            until,
            webhook_id,
        }) => {
            let mut query = vec![format!("limit={limit}")];
            // Durations are turned into times here, once, so every worker is asked the same.
            let now = causeway_runtime::store::now_ms();
            for (flag, name, v) in [("--since", "since", since), ("--until", "until", until)] {
                if let Some(v) = v {
                    query.push(format!("{name}={}", args::when(flag, v, now)?));
                }
            }
            if let Some(w) = webhook_id {
                query.push(format!("webhookId={}", output::encode(w)));
            }
            if let Some(b) = bridge {
                let key = if b.contains('/') {
                    b.clone()
                } else {
                    format!("{}/{b}", ctx.namespace.as_deref().unwrap_or("default"))
                };
                query.push(format!("bridge={}", output::encode(&key)));
            }
            if let Some(s) = status {
                query.push(format!("status={}", output::encode(s)));
            }
            if let Some(b) = before {
                query.push(format!("before={}", output::encode(b)));
            }
            let path = format!("/api/v1/events?{}", query.join("&"));
            let mut events: BTreeMap<String, Value> = BTreeMap::new();
            for w in ctx.workers(None).await? {
                let v = ctx.call(&w, "GET", &path).await?;
                for mut e in v["events"].as_array().cloned().unwrap_or_default() {
                    let Some(id) = e["id"].as_str().map(str::to_string) else {
                        continue;
                    };
                    e["pool"] = Value::from(format!("{}/{}", w.namespace, w.pool));
                    events.entry(id).or_insert(e);
                }
            }
            let list: Vec<Value> = events.into_values().rev().take(*limit).collect();
            output::events(out, &list, args.output)
        }
        Command::Events(args::Events::Show { id }) => {
            let (w, v) = ctx.find_event(id).await?;
            let mut v = v;
            v["pool"] = Value::from(format!("{}/{}", w.namespace, w.pool));
            let actions = ctx
                .call(
                    &w,
                    "GET",
                    &format!("/api/v1/actions?event={}", output::encode(id)),
                )
                .await
                .map(|a| a["actions"].clone())
                .unwrap_or(Value::Null);
            if !actions.is_null() {
                v["actions"] = actions;
            }
            output::event(out, &v, args.output)
        }
        Command::Events(args::Events::Replay { id }) => {
            let (w, _) = ctx.find_event(id).await?;
            let v = ctx
                .call(
                    &w,
                    "POST",
                    &format!("/api/v1/events/{}/replay", output::encode(id)),
                )
                .await?;
            output::done(
                out,
                &v,
                args.output,
                &format!(
                    "event {id} replayed: {} delivery job(s) queued again ({}/{})",
                    v["replayed"], w.namespace, w.pool
                ),
            )
        }
        Command::Bridges(b) => {
            let (name, action) = match b {
                args::Bridges::Suspend { name } => (name, "suspend"),
                args::Bridges::Resume { name } => (name, "resume"),
                args::Bridges::Purge { name } => (name, "purge"),
                args::Bridges::ReplayDead { name } => (name, "replay"),
            };
            let key = ctx.bridge_key(name)?;
            let workers = ctx.bridge_workers(&key).await?;
            let mut total = 0;
            let mut last = Value::Null;
            for w in &workers {
                last = ctx
                    .call(w, "POST", &format!("/api/v1/bridges/{key}/{action}"))
                    .await?;
                total += last["purged"]
                    .as_u64()
                    .or(last["replayed"].as_u64())
                    .unwrap_or(0);
            }
            let what = match action {
                "suspend" => "suspended".to_string(),
                "resume" => "resumed".to_string(),
                "purge" => format!("purged ({total} queued job(s) removed)"),
                _ => format!("dead letters replayed ({total} job(s) queued again)"),
            };
            output::done(
                out,
                &last,
                args.output,
                &format!("bridge {key} {what} on {} worker(s)", workers.len()),
            )
        }
        Command::Destinations(args::Destinations::Resume {
            bridge,
            destination,
        }) => {
            let key = ctx.bridge_key(bridge)?;
            let workers = ctx.bridge_workers(&key).await?;
            let mut total = 0;
            let mut last = Value::Null;
            for w in &workers {
                last = ctx
                    .call(
                        w,
                        "POST",
                        &format!(
                            "/api/v1/bridges/{key}/destinations/{}/resume",
                            output::encode(destination)
                        ),
                    )
                    .await?;
                total += last["requeued"].as_u64().unwrap_or(0);
            }
            output::done(
                out,
                &last,
                args.output,
                &format!("destination {destination} of {key} resumed: {total} job(s) queued again"),
            )
        }
        Command::Console {
            port,
            pool: None,
            operator_namespace,
        } => {
            let (ns, service, remote, secret) = ctx.operator_console(operator_namespace).await?;
            writeln!(
                out,
                "console http://127.0.0.1:{port}/ (the cluster console: service {ns}/{service})\n\
                 sign in with the console token:\n  \
                 kubectl get secret -n {ns} {secret} -o jsonpath='{{.data.token}}' | base64 -d\n\
                 port-forwarding until Ctrl-C"
            )
            .map_err(|e| KubectlError::Api(e.to_string()))?;
            out.flush().ok();
            port_forward(
                args.context.as_deref(),
                &ns,
                &format!("svc/{service}"),
                &format!("{port}:{remote}"),
            )
        }
        Command::Console {
            port,
            pool: Some(pool),
            ..
        } => {
            let workers = ctx.workers(Some(pool)).await?;
            let w = workers.first().ok_or_else(|| {
                KubectlError::NotFound("no running worker in this namespace".into())
            })?;
            writeln!(
                out,
                "console http://127.0.0.1:{port}/ (pool {}/{}, pod {})\n\
                 sign in with the pool's admin token:\n  \
                 kubectl get secret -n {} causeway-{}-admin -o jsonpath='{{.data.token}}' | base64 -d\n\
                 port-forwarding until Ctrl-C",
                w.namespace, w.pool, w.pod, w.namespace, w.pool
            )
            .map_err(|e| KubectlError::Api(e.to_string()))?;
            out.flush().ok();
            port_forward(
                args.context.as_deref(),
                &w.namespace,
                &format!("pod/{}", w.pod),
                &format!("{port}:{ADMIN_PORT}"),
            )
        }
    }
}

/// `kubectl port-forward` until it ends (Ctrl-C).
fn port_forward(
    context: Option<&str>,
    namespace: &str,
    target: &str,
    ports: &str,
) -> Result<(), KubectlError> {
    let mut cmd = std::process::Command::new("kubectl");
    if let Some(c) = context {
        cmd.args(["--context", c]);
    }
    let status = cmd
        .args(["port-forward", "-n", namespace, target, ports])
        .status()
        .map_err(|e| KubectlError::Api(format!("kubectl port-forward: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(KubectlError::Api(format!(
            "kubectl port-forward ended: {status}"
        )))
    }
}

impl Ctx {
    fn bridge_key(&self, name: &str) -> Result<String, KubectlError> {
        bridge_key(self.namespace.as_deref(), name)
    }

    /// The operator's cluster console Service in `namespace` (the chart labels it
    /// `causeway.dev/console=true`): `(namespace, name, port, token Secret)`.
    async fn operator_console(
        &self,
        namespace: &str,
    ) -> Result<(String, String, i32, String), KubectlError> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let list = services
            .list(&ListParams::default().labels("causeway.dev/console=true"))
            .await
            .map_err(|e| api_error(&format!("list services in namespace {namespace}"), e))?;
        let svc = list.items.into_iter().next().ok_or_else(|| {
            KubectlError::NotFound(format!(
                "no cluster console in namespace {namespace}: install the chart with \
                 console.enabled=true, or name its namespace with --operator-namespace"
            ))
        })?;
        let name = svc.metadata.name.clone().unwrap_or_default();
        let port = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.iter().find(|p| p.name.as_deref() == Some("console")))
            .map(|p| p.port)
            .unwrap_or(9191);
        let secret = svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("causeway.dev/console-token-secret"))
            .cloned()
            .unwrap_or_else(|| name.clone());
        Ok((namespace.to_string(), name, port, secret))
    }

    /// The running worker pods (of `pool`, when given) with their pool's admin token.
    async fn workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, KubectlError> {
        let pods: Api<Pod> = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut selector = WORKER_SELECTOR.to_string();
        if let Some(p) = pool {
            selector.push_str(&format!(",{POOL_LABEL}={p}"));
        }
        let where_ = self.namespace.as_deref().map_or_else(
            || "in all namespaces".to_string(),
            |ns| format!("in namespace {ns}"),
        );
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| api_error(&format!("list worker pods {where_}"), e))?;
        let mut tokens: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
        let mut out = Vec::new();
        for p in list.items {
            let running = p
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| ph == "Running");
            let (Some(ns), Some(name)) = (p.metadata.namespace.clone(), p.metadata.name.clone())
            else {
                continue;
            };
            let Some(pool) = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(POOL_LABEL))
                .cloned()
            else {
                continue;
            };
            if !running || p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let key = (ns.clone(), pool.clone());
            if !tokens.contains_key(&key) {
                let t = self.token(&ns, &pool).await?;
                tokens.insert(key.clone(), t);
            }
            out.push(Worker {
                namespace: ns,
                pool,
                pod: name,
                token: tokens[&key].clone(),
            });
        }
        out.sort_by(|a, b| (&a.namespace, &a.pool, &a.pod).cmp(&(&b.namespace, &b.pool, &b.pod)));
        if out.is_empty() {
            return Err(KubectlError::NotFound(format!(
                "no running Causeway worker {where_}"
            )));
        }
        Ok(out)
    }

    /// The pool's admin token (`causeway-<pool>-admin`, key `token`); `None` when the pool
    /// has none (the workers then need none).
    async fn token(&self, ns: &str, pool: &str) -> Result<Option<String>, KubectlError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let name = format!("causeway-{pool}-admin");
        match secrets.get_opt(&name).await {
            Ok(Some(s)) => Ok(s
                .data
                .and_then(|d| d.get("token").cloned())
                .and_then(|b| String::from_utf8(b.0).ok())),
            Ok(None) => Ok(None),
            Err(e) => Err(api_error(
                &format!("read the admin token (secret {ns}/{name})"),
                e,
            )),
        }
    }

    /// One admin API call on one worker through the pod proxy.
    async fn call(&self, w: &Worker, method: &str, path: &str) -> Result<Value, KubectlError> {
        let url = format!(
            "/api/v1/namespaces/{}/pods/{}:{ADMIN_PORT}/proxy{path}",
            w.namespace, w.pod
        );
        let mut req = http::Request::builder().method(method).uri(&url);
        if let Some(t) = &w.token {
            req = req.header(TOKEN_HEADER, t);
        }
        let req = req
            .body(Vec::new())
            .map_err(|e| KubectlError::Api(format!("{method} {path}: {e}")))?;
        let what = format!("{method} {path} on {}/{}", w.namespace, w.pod);
        let resp = self
            .client
            .send(req.map(kube::client::Body::from))
            .await
            .map_err(|e| api_error(&what, e))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| api_error(&what, e))?;
        let text = String::from_utf8_lossy(&body);
        let v: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return v.ok_or_else(|| {
                KubectlError::Api(format!("{what}: not JSON: {:.200}", text.trim()))
            });
        }
        Err(answer_error(
            &what,
            status.as_u16(),
            v.as_ref(),
            text.trim(),
        ))
    }

    /// The first worker that knows event `id`, and the event.
    async fn find_event(&self, id: &str) -> Result<(Worker, Value), KubectlError> {
        if id.len() != 36 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(KubectlError::Usage(format!("not an event id: {id:?}")));
        }
        for w in self.workers(None).await? {
            match self.call(&w, "GET", &format!("/api/v1/events/{id}")).await {
                Ok(v) => return Ok((w, v)),
                Err(KubectlError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(KubectlError::NotFound(format!("no event {id}")))
    }

    /// Every worker of the pool(s) serving bridge `key`.
    async fn bridge_workers(&self, key: &str) -> Result<Vec<Worker>, KubectlError> {
        let ns = key.split('/').next().unwrap_or_default();
        let scoped = Ctx {
            client: self.client.clone(),
            namespace: Some(ns.to_string()),
        };
        let workers = scoped.workers(None).await?;
        let mut serving: BTreeSet<String> = BTreeSet::new();
        let mut checked: BTreeSet<String> = BTreeSet::new();
        for w in &workers {
            if !checked.insert(w.pool.clone()) {
                continue;
            }
            let v = scoped.call(w, "GET", "/api/v1/bridges").await?;
            let has = v["bridges"]
                .as_array()
                .is_some_and(|bs| bs.iter().any(|b| b["bridge"] == key));
            if has {
                serving.insert(w.pool.clone());
            }
        }
        let out: Vec<Worker> = workers
            .into_iter()
            .filter(|w| serving.contains(&w.pool))
            .collect();
        if out.is_empty() {
            return Err(KubectlError::NotFound(format!(
                "no worker in namespace {ns} serves bridge {key}"
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use serde_json::json;

    fn parse(args: &[&str]) -> Result<Args, String> {
        let mut all = vec!["kubectl-causeway"];
        all.extend_from_slice(args);
        let a = Args::try_parse_from(all).map_err(|e| e.to_string())?;
        a.check().map_err(|e| e.to_string())?;
        Ok(a)
    }

    #[test]
    fn the_command_line_is_kubectls() {
        let a = parse(&[
            "-n",
            "shop",
            "--context",
            "kind",
            "-o",
            "json",
            "events",
            "list",
        ])
        .unwrap();
        assert_eq!(a.namespace.as_deref(), Some("shop"));
        assert_eq!(a.context.as_deref(), Some("kind"));
        assert_eq!(a.output, Some(Format::Json));
        let a = parse(&["events", "list", "-A", "-o", "wide", "--status", "dead"]).unwrap();
        assert!(a.all_namespaces);
        assert!(parse(&["bridges", "suspend", "orders"]).is_ok());
        assert!(parse(&["bridges", "replay-dead", "shop/orders"]).is_ok());
        assert!(parse(&["destinations", "resume", "orders", "crm"]).is_ok());
        assert!(parse(&["console", "--port", "9292"]).is_ok());
        let a = parse(&["console", "--operator-namespace", "ops"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Console { pool: None, ref operator_namespace, .. } if operator_namespace == "ops"
        ));
        let a = parse(&[
            "events",
            "list",
            "--since",
            "2h",
            "--until",
            "1h",
            "--webhook-id",
            "msg_1",
        ])
        .unwrap();
        assert!(matches!(
            a.command,
            Command::Events(args::Events::List { webhook_id: Some(ref w), .. }) if w == "msg_1"
        ));
    }

    #[test]
    fn since_and_until_take_a_duration_ago_or_a_time() {
        let now = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(args::when("--since", "90s", now).unwrap(), now - 90_000);
        assert_eq!(args::when("--since", "15m", now).unwrap(), now - 900_000);
        assert_eq!(args::when("--since", "2h", now).unwrap(), now - 7_200_000);
        assert_eq!(args::when("--since", "7d", now).unwrap(), now - 604_800_000);
        assert_eq!(
            args::when("--until", "2026-01-01T00:00:00Z", 0).unwrap(),
            now
        );
        let e = args::when("--since", "yesterday", now).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("--since \"yesterday\": not a duration"),
            "{e}"
        );
    }

    #[test]
    fn bad_input_is_refused_with_a_clear_error() {
        let e = parse(&["-n", "a", "-A", "events", "list"]).unwrap_err();
        assert!(e.contains("-n and -A cannot go together"), "{e}");
        let e = parse(&["events", "list", "--status", "lost"]).unwrap_err();
        assert!(e.contains("unknown status \"lost\""), "{e}");
        let e = parse(&["events", "list", "--limit", "0"]).unwrap_err();
        assert!(e.contains("--limit must be 1 to 10000"), "{e}");
        let e = parse(&["events", "list", "--since", "soon"]).unwrap_err();
        assert!(e.contains("--since \"soon\": not a duration"), "{e}");
        let e = parse(&["events", "list", "--since", "1h", "--until", "2h"]).unwrap_err();
        assert!(e.contains("--since must be earlier than --until"), "{e}");
        let e = parse(&["events", "list", "--webhook-id", ""]).unwrap_err();
        assert!(e.contains("--webhook-id must be 1 to 512 bytes"), "{e}");
        let e = parse(&["-o", "xml", "events", "list"]).unwrap_err();
        assert!(e.contains("xml"), "{e}");
        let e = parse(&["events", "replay"]).unwrap_err();
        assert!(e.contains("<ID>"), "{e}");
        let e = parse(&["bridges", "delete", "orders"]).unwrap_err();
        assert!(e.contains("delete"), "{e}");
        let usage = KubectlError::Usage("x".into());
        assert_eq!(usage.exit_code(), 2);
    }

    #[test]
    fn a_bridge_is_named_in_the_namespace_or_with_it() {
        assert_eq!(bridge_key(Some("shop"), "orders").unwrap(), "shop/orders");
        assert_eq!(bridge_key(None, "shop/orders").unwrap(), "shop/orders");
        let e = bridge_key(None, "orders").unwrap_err().to_string();
        assert!(
            e.contains("with -A, name the bridge as <namespace>/<name>"),
            "{e}"
        );
        let e = bridge_key(Some("shop"), "../x").unwrap_err().to_string();
        assert!(e.contains("not a bridge name"), "{e}");
        assert!(bridge_key(Some("shop"), "a/b/c").is_err());
    }

    #[test]
    fn refusals_say_who_refused() {
        let rbac = json!({"kind": "Status", "code": 403, "message": "pods is forbidden: User \"system:serviceaccount:a:u\" cannot list resource \"pods\" in the namespace \"b\""});
        let e = answer_error("list", 403, Some(&rbac), "").to_string();
        assert!(e.contains("forbidden") && e.contains("your RBAC"), "{e}");
        let worker = json!({"error": "no event 0190"});
        let e = answer_error("GET /api/v1/events/0190", 404, Some(&worker), "");
        assert!(matches!(e, KubectlError::NotFound(_)));
        assert!(e.to_string().contains("no event 0190"), "{e}");
        let e = answer_error("GET", 401, Some(&json!({"error": "unauthorized"})), "");
        assert!(e.to_string().ends_with("unauthorized (401)"), "{e}");
        let e = answer_error("GET", 502, None, "Bad Gateway");
        assert!(e.to_string().contains("Bad Gateway (502)"), "{e}");
    }
}
