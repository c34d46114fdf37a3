//! The command line, like kubectl's: `-n`/`-A`, `--context`, `-o json|yaml|wide`.

use clap::{Parser, Subcommand, ValueEnum};

use super::KubectlError;

/// See and act on Causeway events through the API server, with your kubeconfig and RBAC.
#[derive(Debug, Parser)]
#[command(name = "kubectl causeway", version)]
pub struct Args {
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace you may read.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Output format: a table (default), `wide`, `json` or `yaml`.
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Format>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Events: list, show, replay.
    #[command(subcommand)]
    Events(Events),
    /// Bridge actions: suspend, resume, purge, replay-dead.
    #[command(subcommand)]
    Bridges(Bridges),
    /// Destination actions: resume (a destination paused by a 410 or disabled by its circuit breaker).
    #[command(subcommand)]
    Destinations(Destinations),
    /// Port-forward to the operator's cluster console (or, with --pool, to one worker's
    /// console) and print its URL and how to sign in.
    Console {
        /// The local port.
        #[arg(long, default_value_t = 9191)]
        port: u16,
        /// A pool of the namespace: that pool's worker console instead of the cluster's.
        #[arg(long)]
        pool: Option<String>,
        /// Where the operator runs (the chart's release namespace).
        #[arg(long, default_value = "causeway-system")]
        operator_namespace: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Events {
    /// Events, newest first.
    List {
        /// A bridge: `name` (in the namespace) or `namespace/name`.
        #[arg(long)]
        bridge: Option<String>,
        /// pending, delivered, dead or filtered.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only events older than this id (the last id of the previous page).
        #[arg(long)]
        before: Option<String>,
        /// Received at or after: a duration ago (`90s`, `15m`, `2h`, `7d`) or a time
        /// (RFC 3339, `2026-12-02T07:00:00Z`).
        #[arg(long)]
        since: Option<String>,
        /// Received before: a duration ago or a time, as `--since`.
        #[arg(long)]
        until: Option<String>,
        /// The sender's message id (the `webhook-id` header), exactly.
        #[arg(long)]
        webhook_id: Option<String>,
    },
    /// One event with its deliveries and attempts.
    Show { id: String },
    /// Queue an event's delivered and dead deliveries again.
    Replay { id: String },
}

#[derive(Debug, Subcommand)]
pub enum Bridges {
    /// Keep receiving, deliver nothing until resumed.
    Suspend {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Drop the bridge's queued deliveries (the events stay).
    Purge {
        name: String,
    },
    /// Queue the bridge's dead letters again.
    ReplayDead {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Destinations {
    /// Resume a paused destination of a bridge.
    Resume { bridge: String, destination: String },
}

const STATUSES: [&str; 4] = ["pending", "delivered", "dead", "filtered"];

impl Args {
    /// What clap cannot check.
    pub fn check(&self) -> Result<(), KubectlError> {
        if self.all_namespaces && self.namespace.is_some() {
            return Err(KubectlError::Usage("-n and -A cannot go together".into()));
        }
        if let Command::Events(Events::List {
            status: Some(s), ..
        }) = &self.command
            && !STATUSES.contains(&s.as_str())
        {
            return Err(KubectlError::Usage(format!(
                "unknown status {s:?} (pending, delivered, dead, filtered)"
            )));
        }
        if let Command::Events(Events::List { limit, .. }) = &self.command
            && !(1..=10_000).contains(limit)
        {
            return Err(KubectlError::Usage(format!(
                "--limit must be 1 to 10000, not {limit}"
            )));
        }
        if let Command::Events(Events::List {
            since,
            until,
            webhook_id,
            ..
        }) = &self.command
        {
            let now = causeway_runtime::store::now_ms();
            let since = since
                .as_deref()
                .map(|s| when("--since", s, now))
                .transpose()?;
            let until = until
                .as_deref()
                .map(|s| when("--until", s, now))
                .transpose()?;
            if let (Some(s), Some(u)) = (since, until)
                && s >= u
            {
                return Err(KubectlError::Usage(
                    "--since must be earlier than --until".into(),
                ));
            }
            if webhook_id
                .as_deref()
                .is_some_and(|w| w.trim().is_empty() || w.len() > 512)
            {
                return Err(KubectlError::Usage(
                    "--webhook-id must be 1 to 512 bytes".into(),
                ));
            }
        }
        Ok(())
    }
}

/// `--since`/`--until` as milliseconds since the epoch: a duration ago (`90s`, `15m`, `2h`,
/// `7d`, as `kubectl logs --since`) or a time the events API reads (RFC 3339).
pub fn when(flag: &str, s: &str, now_ms: u64) -> Result<u64, KubectlError> {
    let s = s.trim();
    let unit = match s.chars().last() {
        Some('s') => Some(1_000),
        Some('m') => Some(60_000),
        Some('h') => Some(3_600_000),
        Some('d') => Some(86_400_000),
        _ => None,
    };
    if let Some(unit) = unit
        && let Ok(n) = s[..s.len() - 1].parse::<u64>()
    {
        return Ok(now_ms.saturating_sub(n.saturating_mul(unit)));
    }
    causeway_runtime::admin::parse_time(s).map_err(|_| {
        KubectlError::Usage(format!(
            "{flag} {s:?}: not a duration (90s, 15m, 2h, 7d) or a time (RFC 3339, 2026-12-02T07:00:00Z)"
        ))
    })
}
