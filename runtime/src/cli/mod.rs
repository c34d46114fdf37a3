//! Command line: `up` (local mode), `worker`, `render`, and admin commands that talk to a
//! running worker's admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use causeway_config::ObjectKey;
use clap::{Args, Parser, Subcommand};

use crate::limits::Limits;

pub mod send;

#[derive(Parser, Debug)]
#[command(
    name = "causeway",
    version,
    about = "Webhook bridges and Wasm plugins: the worker, local mode and admin commands"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run manifests locally (no cluster): bridges, plugins and the store in one process.
    Up {
        /// A manifest file or directory (repeatable).
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        #[arg(long, default_value = ".causeway")]
        data_dir: PathBuf,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Run a worker: from a rendered WorkerConfig file (JSON or YAML, `--config`), or from
    /// its pool's config Secret in a cluster (`--pool <namespace>/<name>`); reloads on change.
    Worker {
        /// A rendered WorkerConfig file.
        #[arg(
            long,
            env = "CAUSEWAY_CONFIG",
            conflicts_with = "pool",
            required_unless_present = "pool"
        )]
        config: Option<PathBuf>,
        /// `<namespace>/<name>`: watch the pool's config Secret (KUBECONFIG, else in-cluster).
        #[arg(long, env = "CAUSEWAY_POOL")]
        pool: Option<String>,
        #[arg(long, env = "CAUSEWAY_DATA_DIR", default_value = "/var/lib/causeway")]
        data_dir: PathBuf,
        /// Internal address: plugin calls from other pools (`/internal/<ns>/<plugin>/...`).
        #[arg(long)]
        internal: Option<SocketAddr>,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Print the AsyncAPI 3.0 document of the bridges in manifest files (no secrets).
    Asyncapi {
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Only this namespace's bridges.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// `host[:port]` where senders reach the ingress.
        #[arg(long, default_value = "localhost:8080")]
        server: String,
        /// YAML instead of JSON.
        #[arg(long)]
        yaml: bool,
    },
    /// Print the WorkerConfig that `up` would run. It contains the resolved secrets.
    Render {
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Print problems too (on stderr) and fail when there are any.
        #[arg(long)]
        strict: bool,
    },
    /// Events of a running worker.
    Events {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Move a store's contents: `causeway store export --data-dir D | causeway store import
    /// --postgres URL` moves a pool from the embedded store to PostgreSQL (stop the worker
    /// first). JSON lines: events with their jobs and attempts, paused destinations,
    /// plugin keyvalue.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Suspend or resume a bridge of a running worker.
    Bridges {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: BridgesAction,
    },
    /// WebSub subscriptions of a running worker's hubs.
    Subscriptions {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: SubscriptionsAction,
    },
    /// POST one event to a URL and print the answer (for scratch containers, `helm test`).
    Send(send::SendArgs),
}

#[derive(Subcommand, Debug)]
pub enum StoreAction {
    /// Write the store's contents to stdout.
    Export {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Read an export from stdin into the store (events already there are left alone).
    Import {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which store: the embedded one of a data directory, or a pool's schema on PostgreSQL.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// The worker's data directory (its embedded store is `<data-dir>/store`).
    #[arg(
        long,
        conflicts_with = "postgres",
        required_unless_present = "postgres"
    )]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "CAUSEWAY_POSTGRES_URL", hide_env_values = true)]
    pub postgres: Option<String>,
    /// The pool's schema (default: `causeway_local`, the schema of `causeway up`).
    #[arg(
        long,
        env = "CAUSEWAY_POSTGRES_SCHEMA",
        requires = "postgres",
        conflicts_with = "pool"
    )]
    pub postgres_schema: Option<String>,
    /// `<namespace>/<name>` of a cluster pool: its schema, `causeway_<namespace>_<name>`.
    #[arg(long, requires = "postgres")]
    pub pool: Option<String>,
}

impl StoreArgs {
    /// Open the store these arguments name.
    pub async fn open(
        &self,
    ) -> Result<std::sync::Arc<dyn crate::store::Store>, crate::store::StoreError> {
        use crate::store::postgres::{PostgresOptions, PostgresStore, pool_schema};
        if let Some(url) = &self.postgres {
            let schema = match (&self.postgres_schema, &self.pool) {
                (Some(s), _) => s.clone(),
                (None, Some(p)) => {
                    let (ns, name) = p.split_once('/').unwrap_or(("", p));
                    pool_schema(ns, name)
                }
                (None, None) => pool_schema("", "local"),
            };
            let store = PostgresStore::open(PostgresOptions::new(url.clone(), schema)).await?;
            // A command, not a worker: wait for the database rather than fail at once.
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while !crate::store::Store::healthy(&store) {
                if std::time::Instant::now() > deadline {
                    return Err(crate::store::StoreError::Unavailable {
                        location: store.location().to_string(),
                        message: "not reachable".into(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            return Ok(std::sync::Arc::new(store));
        }
        let dir = self.data_dir.clone().unwrap_or_default().join("store");
        if !dir.join("events.redb").exists() {
            return Err(crate::store::StoreError::Open {
                path: dir.display().to_string(),
                message: "no store there".into(),
            });
        }
        Ok(std::sync::Arc::new(
            crate::store::embedded::EmbeddedStore::open(&dir, None)?,
        ))
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Ingress address (bridges and public plugins).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin API address (health, metrics, events).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,
    /// Ingress connections served at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Ingress connections from one peer address at once (0: half of --max-connections).
    /// Behind a load balancer every client shares its address: raise it there.
    #[arg(long, default_value_t = 0)]
    pub max_connections_per_peer: usize,
    /// Time a client has to send its headers (also the keep-alive idle limit).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub header_timeout: Duration,
    /// Time a client has to send its body.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub body_timeout: Duration,
    /// Delivery attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// On SIGTERM, how long in-flight requests and attempts may take.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// How often retention runs.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub retention_interval: Duration,
    /// Destinations may never connect to these networks (CIDR, repeatable or
    /// comma-separated), whatever a pool allows; link-local and metadata addresses are
    /// refused already.
    /// Below this much free space on the data volume, new events are refused with 507
    /// (before the disk fills up and the store stops taking writes).
    #[arg(long, default_value = "64Mi", value_parser = bytes)]
    pub min_free_disk: u64,
    /// Request body bytes read at once over all connections; past it new requests get
    /// 503 before their body is read.
    #[arg(long, default_value = "256Mi", value_parser = bytes)]
    pub max_body_bytes_in_flight: u64,
    /// Resolve a destination host to a fixed address, like curl's --resolve:
    /// `host:port:addr` (repeatable). For tests and split-horizon names.
    #[arg(long = "resolve", value_parser = resolve_override)]
    pub resolve: Vec<(String, std::net::SocketAddr)>,
    #[arg(long = "deny-destination-cidr", env = "CAUSEWAY_DENY_DESTINATION_CIDRS", value_delimiter = ',', value_parser = cidr)]
    pub deny_destination_cidrs: Vec<crate::netguard::Cidr>,
    /// Keep events, jobs and plugin state in PostgreSQL (a libpq URL, `sslmode` as libpq
    /// spells it) instead of the embedded store: any number of workers may share it.
    #[arg(long, env = "CAUSEWAY_POSTGRES_URL", hide_env_values = true)]
    pub postgres: Option<String>,
    /// The schema the pool's tables live in (default: `causeway_<namespace>_<pool>`).
    #[arg(long, env = "CAUSEWAY_POSTGRES_SCHEMA", requires = "postgres")]
    pub postgres_schema: Option<String>,
    /// Connections to PostgreSQL at most.
    #[arg(long, default_value_t = 16, requires = "postgres")]
    pub postgres_pool_size: usize,
    /// Longest a statement may run on PostgreSQL.
    #[arg(long, default_value = "10s", value_parser = duration, requires = "postgres")]
    pub postgres_statement_timeout: Duration,
    /// How long a claimed job stays this worker's without renewal: after a crash, another
    /// worker takes it once this has passed.
    #[arg(long, default_value = "30s", value_parser = duration, requires = "postgres")]
    pub postgres_lease: Duration,
}

impl ServeArgs {
    /// The shared store's options, when `--postgres` is given. The schema, when not
    /// given, follows the pool (see `worker::serve`).
    pub fn postgres(&self) -> Option<crate::store::postgres::PostgresArgs> {
        self.postgres
            .as_ref()
            .map(|url| crate::store::postgres::PostgresArgs {
                url: url.clone(),
                schema: self.postgres_schema.clone(),
                pool_size: self.postgres_pool_size,
                statement_timeout: self.postgres_statement_timeout,
                lease: self.postgres_lease,
            })
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            max_inflight: self.max_inflight,
            shutdown_grace: self.shutdown_grace,
            retention_interval: self.retention_interval,
            denied_destinations: self.deny_destination_cidrs.clone(),
            min_free_disk_bytes: self.min_free_disk,
            resolve: self.resolve.clone(),
            max_body_bytes_in_flight: self.max_body_bytes_in_flight,
            ..Limits::default()
        }
    }
}

/// `host:port:addr` → (host, addr:port).
fn resolve_override(s: &str) -> Result<(String, std::net::SocketAddr), String> {
    let err = || format!("{s:?}: expected host:port:address, e.g. api.corp.internal:443:10.0.0.7");
    let (host, rest) = s.split_once(':').ok_or_else(err)?;
    let (port, addr) = rest.split_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    let ip: std::net::IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| err())?;
    if host.is_empty() {
        return Err(err());
    }
    Ok((
        host.to_ascii_lowercase(),
        std::net::SocketAddr::new(ip, port),
    ))
}

fn bytes(s: &str) -> Result<u64, String> {
    causeway_config::duration::parse_quantity_bytes(s)
}

fn cidr(s: &str) -> Result<crate::netguard::Cidr, String> {
    crate::netguard::Cidr::parse(s)
}

fn duration(s: &str) -> Result<Duration, String> {
    causeway_config::duration::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// Admin API of the worker.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9090",
        env = "CAUSEWAY_ADMIN"
    )]
    pub admin: String,
    /// Bearer token, when the worker requires one.
    #[arg(
        long,
        global = true,
        env = "CAUSEWAY_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum EventsAction {
    /// List events, newest first.
    List {
        /// `namespace/name`
        #[arg(long)]
        bridge: Option<ObjectKey>,
        /// pending, delivered, dead or filtered
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One event with its deliveries and attempts.
    Show { id: String },
    /// Replay one event, or every dead letter of a bridge.
    Replay {
        /// Event id.
        #[arg(conflicts_with = "bridge", required_unless_present = "bridge")]
        id: Option<String>,
        /// Replay all dead letters of this bridge (`namespace/name`).
        #[arg(long)]
        bridge: Option<ObjectKey>,
    },
    /// Delete a bridge's pending jobs.
    Purge {
        #[arg(long)]
        bridge: ObjectKey,
    },
}

#[derive(Subcommand, Debug)]
pub enum BridgesAction {
    /// Bridges with their suspension and paused destinations.
    List,
    /// Stop a bridge's ingress (503) and hold its deliveries.
    Suspend { bridge: ObjectKey },
    /// Resume a bridge: ingress opens, held deliveries are sent.
    Resume { bridge: ObjectKey },
    /// Resume a destination paused by a 410 or disabled by its circuit breaker.
    ResumeDestination {
        bridge: ObjectKey,
        destination: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SubscriptionsAction {
    /// Subscriptions with their state, lease and delivery counts (never their secrets).
    List {
        /// Only this bridge's (`namespace/name`).
        #[arg(long)]
        bridge: Option<ObjectKey>,
        /// The admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin API at {addr}: {message}")]
    Request { addr: String, message: String },
    #[error("admin API at {addr} answered {status}: {body}")]
    Status {
        addr: String,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Usage(&'static str),
}

async fn call(
    admin: &AdminArgs,
    method: reqwest::Method,
    path: &str,
) -> Result<serde_json::Value, AdminError> {
    let base = if admin.admin.starts_with("http") {
        admin.admin.clone()
    } else {
        format!("http://{}", admin.admin)
    };
    let client = reqwest::Client::new();
    let mut rb = client
        .request(method, format!("{base}{path}"))
        .timeout(Duration::from_secs(30));
    if let Some(t) = &admin.token {
        rb = rb.bearer_auth(t);
    }
    let err = |e: reqwest::Error| AdminError::Request {
        addr: base.clone(),
        message: e.to_string(),
    };
    let resp = rb.send().await.map_err(err)?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(err)?;
    if !(200..300).contains(&status) {
        return Err(AdminError::Status {
            addr: base,
            status,
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|e| AdminError::Request {
        addr: base,
        message: format!("invalid JSON: {e}"),
    })
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Run an `events` command; returns what to print.
pub async fn events(admin: &AdminArgs, action: &EventsAction) -> Result<String, AdminError> {
    use reqwest::Method;
    match action {
        EventsAction::List {
            bridge,
            status,
            limit,
        } => {
            let mut q = format!("?limit={limit}");
            if let Some(b) = bridge {
                q.push_str(&format!("&bridge={}", encode(&b.to_string())));
            }
            if let Some(s) = status {
                q.push_str(&format!("&status={}", encode(s)));
            }
            let v = call(admin, Method::GET, &format!("/api/v1/events{q}")).await?;
            let mut out = format!(
                "{:<36}  {:<24}  {:<9}  {}\n",
                "ID", "BRIDGE", "STATUS", "RECEIVED"
            );
            for e in v["events"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{:<36}  {:<24}  {:<9}  {}\n",
                    e["id"].as_str().unwrap_or(""),
                    e["bridge"].as_str().unwrap_or(""),
                    e["status"].as_str().unwrap_or(""),
                    e["receivedAt"].as_str().unwrap_or("")
                ));
            }
            Ok(out)
        }
        EventsAction::Show { id } => Ok(pretty(
            &call(
                admin,
                Method::GET,
                &format!("/api/v1/events/{}", encode(id)),
            )
            .await?,
        )),
        EventsAction::Replay { id: Some(id), .. } => Ok(pretty(
            &call(
                admin,
                Method::POST,
                &format!("/api/v1/events/{}/replay", encode(id)),
            )
            .await?,
        )),
        EventsAction::Replay { id: None, bridge } => {
            let ObjectKey {
                namespace: ns,
                name,
            } = bridge
                .as_ref()
                .ok_or(AdminError::Usage("replay needs an event id or --bridge"))?;
            Ok(pretty(
                &call(
                    admin,
                    Method::POST,
                    &format!("/api/v1/bridges/{ns}/{name}/replay"),
                )
                .await?,
            ))
        }
        EventsAction::Purge { bridge } => {
            let ObjectKey {
                namespace: ns,
                name,
            } = bridge;
            Ok(pretty(
                &call(
                    admin,
                    Method::POST,
                    &format!("/api/v1/bridges/{ns}/{name}/purge"),
                )
                .await?,
            ))
        }
    }
}

/// Run a `bridges` command; returns what to print.
pub async fn bridges(admin: &AdminArgs, action: &BridgesAction) -> Result<String, AdminError> {
    use reqwest::Method;
    let v = match action {
        BridgesAction::List => call(admin, Method::GET, "/api/v1/bridges").await?,
        BridgesAction::Suspend { bridge } => {
            let ObjectKey {
                namespace: ns,
                name,
            } = bridge;
            call(
                admin,
                Method::POST,
                &format!("/api/v1/bridges/{ns}/{name}/suspend"),
            )
            .await?
        }
        BridgesAction::Resume { bridge } => {
            let ObjectKey {
                namespace: ns,
                name,
            } = bridge;
            call(
                admin,
                Method::POST,
                &format!("/api/v1/bridges/{ns}/{name}/resume"),
            )
            .await?
        }
        BridgesAction::ResumeDestination {
            bridge,
            destination,
        } => {
            let ObjectKey {
                namespace: ns,
                name,
            } = bridge;
            call(
                admin,
                Method::POST,
                &format!(
                    "/api/v1/bridges/{ns}/{name}/destinations/{}/resume",
                    encode(destination)
                ),
            )
            .await?
        }
    };
    Ok(pretty(&v))
}

/// Run a `subscriptions` command; returns what to print.
pub async fn subscriptions(
    admin: &AdminArgs,
    action: &SubscriptionsAction,
) -> Result<String, AdminError> {
    let SubscriptionsAction::List { bridge, json } = action;
    let path = match bridge {
        Some(b) => format!("/api/v1/subscriptions?bridge={}", encode(&b.to_string())),
        None => "/api/v1/subscriptions".to_string(),
    };
    let v = call(admin, reqwest::Method::GET, &path).await?;
    if *json {
        return Ok(pretty(&v));
    }
    Ok(subscriptions_table(&v))
}

/// The listing as a table: one line per subscription.
fn subscriptions_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<24} {:<10} {:<8} {:<21} {:>9} {:>6} {:>5} {:>7}  {}\n",
        "BRIDGE", "ID", "STATE", "EXPIRES", "DELIVERED", "FAILED", "DEAD", "PENDING", "CALLBACK"
    );
    let empty = Vec::new();
    let subs = v["subscriptions"].as_array().unwrap_or(&empty);
    for s in subs {
        let s_ = |k: &str| s[k].as_str().unwrap_or("").to_string();
        let n = |k: &str| s["lastHour"][k].as_u64().unwrap_or(0);
        let id = s_("id");
        out.push_str(&format!(
            "{:<24} {:<10} {:<8} {:<21} {:>9} {:>6} {:>5} {:>7}  {}\n",
            s_("bridge"),
            &id[id.len().saturating_sub(10)..],
            s_("state"),
            s_("expiresAt"),
            n("delivered"),
            n("failed"),
            n("dead"),
            s["pending"].as_u64().unwrap_or(0),
            s_("callback"),
        ));
    }
    if subs.is_empty() {
        out.push_str("(no subscriptions)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("causeway").chain(args.iter().copied()))
    }

    #[test]
    fn worker_accepts_the_operators_arguments() {
        // What operator/src/builders/workload.rs `worker_args` passes.
        let cli = parse(&[
            "worker",
            "--pool",
            "shop/orders",
            "--listen",
            "0.0.0.0:8080",
            "--admin",
            "0.0.0.0:9090",
            "--internal",
            "0.0.0.0:8081",
            "--data-dir",
            "/var/lib/causeway",
        ])
        .unwrap();
        let Command::Worker {
            config,
            pool,
            internal,
            data_dir,
            serve,
        } = cli.command
        else {
            panic!("not a worker command")
        };
        assert_eq!(config, None);
        assert_eq!(pool.as_deref(), Some("shop/orders"));
        assert_eq!(internal, Some("0.0.0.0:8081".parse().unwrap()));
        assert_eq!(data_dir, PathBuf::from("/var/lib/causeway"));
        assert_eq!(serve.listen, "0.0.0.0:8080".parse().unwrap());
    }

    #[test]
    fn worker_needs_exactly_one_of_config_and_pool() {
        // Not influenced by the environment in the usual test run.
        if std::env::var_os("CAUSEWAY_CONFIG").is_some()
            || std::env::var_os("CAUSEWAY_POOL").is_some()
        {
            return;
        }
        assert!(parse(&["worker", "--config", "c.json"]).is_ok());
        assert!(parse(&["worker", "--config", "c.json", "--pool", "a/b"]).is_err());
        assert!(parse(&["worker"]).is_err());
    }
}
