//! NATS JetStream destinations (`nats://host:port/subject`, `docs/nats.md`): an attempt
//! publishes the rendered body to the subject and waits for JetStream's publish
//! acknowledgement, which is the delivery. No acknowledgement within the destination's
//! timeout, no stream for the subject, a refused connection or wrong credentials fail the
//! attempt, which is retried like an HTTP 5xx.
//!
//! Every attempt of one job carries the same `Nats-Msg-Id` (event, destination, and how
//! often the job was queued), so a retry after a lost acknowledgement is dropped by the
//! stream's duplicate window instead of stored twice; a deliberate replay is queued anew
//! and gets a new id.
//!
//! One client per (server, credentials), shared by every destination that names them. It
//! connects once and then reconnects by itself; an attempt never opens a connection of its
//! own. A first connection that fails (server down, wrong credentials) is tried again by
//! the next attempt. The client dials the addresses the network guard passed, never the
//! name again (a second lookup could answer differently), and ignores the servers a
//! cluster advertises; each attempt checks those addresses again, since the pool's
//! allowed ranges change with the configuration.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};
use causeway_config::{DestinationConfig, NatsAuth, NatsUrl};
use sha2::Digest as _;
use tracing::{info, warn};

use crate::bridge::OutboundRequest;
use crate::delivery::client::{CallResult, failed};
use crate::shared::Shared;
use crate::store::JobRecord;
use crate::sync::lock;

/// The header JetStream deduplicates on.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// The stable message id of one queueing of a job: its retries share it.
pub fn msg_id(job: &JobRecord, destination: &str) -> String {
    format!("{}:{}:{}", job.event, destination, job.attempts_at_queue)
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    server: String,
    /// SHA-256 of the credentials: the map never holds them twice, and a rotated secret
    /// gets a client of its own.
    auth: [u8; 32],
}

impl Key {
    fn new(server: &str, auth: Option<&NatsAuth>) -> Key {
        let mut h = sha2::Sha256::new();
        match auth {
            None => h.update(b"none"),
            Some(NatsAuth::UserPassword { user, password }) => {
                h.update(b"user\0");
                h.update(user.as_bytes());
                h.update([0]);
                h.update(password.expose().as_bytes());
            }
            Some(NatsAuth::Token { token }) => {
                h.update(b"token\0");
                h.update(token.expose().as_bytes());
            }
            Some(NatsAuth::Nkey { seed }) => {
                h.update(b"nkey\0");
                h.update(seed.expose().as_bytes());
            }
            Some(NatsAuth::Credentials { creds }) => {
                h.update(b"creds\0");
                h.update(creds.expose().as_bytes());
            }
        }
        Key {
            server: server.to_string(),
            auth: h.finalize().into(),
        }
    }
}

/// A connected client and the addresses it dials.
struct Conn {
    client: async_nats::Client,
    addrs: Vec<SocketAddr>,
}

#[derive(Default)]
struct Slot {
    conn: tokio::sync::OnceCell<Conn>,
    /// `(bridge, destination)` pairs that used it: a client no configured destination uses
    /// is dropped (and its connection closed).
    users: Mutex<HashSet<(String, String)>>,
}

/// The NATS clients of this worker.
#[derive(Default)]
pub struct NatsClients {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
}

impl NatsClients {
    fn slot(&self, key: &Key, bridge: &str, destination: &str) -> Arc<Slot> {
        let slot = lock(&self.slots).entry(key.clone()).or_default().clone();
        lock(&slot.users).insert((bridge.to_string(), destination.to_string()));
        slot
    }

    /// Drops the clients no configured destination uses.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        lock(&self.slots).retain(|_, slot| {
            let mut users = lock(&slot.users);
            users.retain(|(b, d)| keep(b, d));
            !users.is_empty()
        });
    }

    /// How many clients are kept (for tests).
    pub fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One attempt: publish `req` to its subject and wait for the acknowledgement.
pub(crate) async fn publish(
    shared: &Shared,
    bridge: &str,
    dest: &DestinationConfig,
    job: &JobRecord,
    req: &OutboundRequest,
    timeout: Duration,
) -> CallResult {
    let started = Instant::now();
    let url = match NatsUrl::parse(&req.url) {
        Ok(u) => u,
        Err(e) => return failed(format!("nats url: {e}")),
    };
    let auth = dest.nats.as_ref().and_then(|n| n.auth.as_ref());
    let server = url.server();
    let slot = shared
        .delivery
        .nats
        .slot(&Key::new(&server, auth), bridge, &dest.name);
    let connect = slot
        .conn
        .get_or_try_init(|| connect(shared, &url, auth, timeout));
    let conn = match tokio::time::timeout(timeout, connect).await {
        Err(_) => {
            return failed(format!(
                "nats connect to {server}: timeout after {} ms",
                timeout.as_millis()
            ));
        }
        Ok(Err(e)) => return failed(e),
        Ok(Ok(c)) => c,
    };
    for a in &conn.addrs {
        if let Err(reason) = shared.netguard.check_ip(a.ip()) {
            shared.metrics.destination_refused.inc();
            return failed(format!("destination refused: {reason}"));
        }
    }
    let headers = headers(req, &msg_id(job, &dest.name));
    let mut js = async_nats::jetstream::new(conn.client.clone());
    js.set_timeout(timeout);
    let remaining = timeout.saturating_sub(started.elapsed());
    let subject = url.subject.clone();
    let body = req.body.clone();
    let sent = async move { js.publish_with_headers(subject, headers, body).await?.await };
    match tokio::time::timeout(remaining, sent).await {
        Err(_) => failed(format!(
            "no JetStream acknowledgement within {} ms",
            timeout.as_millis()
        )),
        Ok(Err(e)) => failed(match e.kind() {
            PublishErrorKind::StreamNotFound => {
                format!("no JetStream stream captures subject {}", url.subject)
            }
            PublishErrorKind::TimedOut => format!(
                "no JetStream acknowledgement within {} ms",
                timeout.as_millis()
            ),
            _ => format!("publish: {e}"),
        }),
        Ok(Ok(ack)) => {
            let mut response = format!("stream {} sequence {}", ack.stream, ack.sequence);
            if ack.duplicate {
                // A retry of a message whose acknowledgement was lost: stored once.
                response.push_str(" (duplicate: already stored)");
            }
            CallResult {
                acked: true,
                ..crate::delivery::client::answered(response)
            }
        }
    }
}

/// NATS headers of a message: the rendered ones (the event's content type, signing,
/// `causeway-event-id`), `webhook-id` and `webhook-timestamp` as Standard Webhooks names
/// them, and the message id.
fn headers(req: &OutboundRequest, id: &str) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let webhook_id = !has("webhook-id");
    let webhook_ts = !has("webhook-timestamp");
    for (n, v) in &req.headers {
        if n.eq_ignore_ascii_case(MSG_ID) {
            continue; // the worker's, below
        }
        // JetStream reads its headers (`Nats-Expected-Stream`, …) case-sensitively.
        let name = if n.len() > 5 && n[..5].eq_ignore_ascii_case("nats-") {
            canonical(n)
        } else {
            n.clone()
        };
        h.append(name.as_str(), v.as_str());
    }
    if webhook_id
        && let Some((_, event)) = req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("causeway-event-id"))
    {
        h.insert("webhook-id", event.as_str());
    }
    if webhook_ts {
        let now = (crate::store::now_ms() / 1000).to_string();
        h.insert("webhook-timestamp", now.as_str());
    }
    h.insert(MSG_ID, id);
    h
}

/// `nats-expected-stream` → `Nats-Expected-Stream`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The addresses of `url`'s host that the network guard passes (an IP literal, the
/// worker's fixed addresses, else the system's resolver).
async fn addresses(shared: &Shared, url: &NatsUrl) -> Result<Vec<SocketAddr>, String> {
    let refused = |reason: String| {
        shared.metrics.destination_refused.inc();
        format!("destination refused: {reason}")
    };
    let all: Vec<SocketAddr> = if let Ok(ip) = url.host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, url.port)]
    } else {
        shared.netguard.check_name(&url.host).map_err(refused)?;
        let fixed: Vec<SocketAddr> = shared
            .limits
            .resolve
            .iter()
            .filter(|(h, _)| h.eq_ignore_ascii_case(&url.host))
            .map(|(_, a)| SocketAddr::new(a.ip(), url.port))
            .collect();
        if fixed.is_empty() {
            tokio::net::lookup_host((url.host.as_str(), url.port))
                .await
                .map_err(|e| format!("nats connect to {}: resolving: {e}", url.server()))?
                .collect()
        } else {
            fixed
        }
    };
    let mut reasons = Vec::new();
    let ok: Vec<SocketAddr> = all
        .into_iter()
        .filter(|a| match shared.netguard.check_ip(a.ip()) {
            Ok(()) => true,
            Err(r) => {
                reasons.push(r);
                false
            }
        })
        .collect();
    if ok.is_empty() {
        return Err(refused(format!("{}: {}", url.host, reasons.join("; "))));
    }
    Ok(ok)
}

async fn connect(
    shared: &Shared,
    url: &NatsUrl,
    auth: Option<&NatsAuth>,
    timeout: Duration,
) -> Result<Conn, String> {
    let addrs = addresses(shared, url).await?;
    let server = url.server();
    let list: Vec<ServerAddr> = addrs
        .iter()
        .map(|a| format!("nats://{a}").parse::<ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("nats connect to {server}: {e}"))?;
    let log_server = server.clone();
    let mut opts = ConnectOptions::new()
        .name(concat!("causeway/", env!("CARGO_PKG_VERSION")))
        .ignore_discovered_servers()
        .retain_servers_order()
        .connection_timeout(timeout)
        .max_reconnects(None)
        .event_callback(move |event| {
            let server = log_server.clone();
            async move {
                match event {
                    async_nats::Event::Connected => info!(%server, "nats: connected"),
                    async_nats::Event::Disconnected => {
                        warn!(%server, "nats: disconnected; reconnecting")
                    }
                    other => info!(%server, event = %other, "nats"),
                }
            }
        });
    opts = match auth {
        None => opts,
        Some(NatsAuth::UserPassword { user, password }) => {
            opts.user_and_password(user.clone(), password.expose().to_string())
        }
        Some(NatsAuth::Token { token }) => opts.token(token.expose().to_string()),
        Some(NatsAuth::Nkey { seed }) => opts.nkey(seed.expose().to_string()),
        Some(NatsAuth::Credentials { creds }) => opts
            .credentials(creds.expose())
            // The parser's message names the part it could not read, never the text.
            .map_err(|_| {
                format!("nats connect to {server}: the credentials Secret is not a .creds file (a user JWT and an nkey seed)")
            })?,
    };
    match opts.connect(list).await {
        Ok(client) => Ok(Conn { client, addrs }),
        Err(e) => Err(match e.kind() {
            ConnectErrorKind::AuthorizationViolation => format!(
                "nats connect to {server}: authorization violation (the server refused the destination's credentials)"
            ),
            ConnectErrorKind::Authentication => format!(
                "nats connect to {server}: cannot sign the server's nonce with the destination's nkey"
            ),
            _ => format!("nats connect to {server}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jetstream_header_names_are_canonical() {
        assert_eq!(canonical("nats-expected-stream"), "Nats-Expected-Stream");
        assert_eq!(canonical("NATS-MSG-ID"), "Nats-Msg-Id");
        assert_eq!(
            canonical("nats-expected-last-subject-sequence"),
            "Nats-Expected-Last-Subject-Sequence"
        );
    }

    #[test]
    fn headers_carry_the_message_id_and_webhook_names() {
        let req = OutboundRequest {
            url: "nats://127.0.0.1:4222/a".into(),
            method: "POST".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("causeway-event-id".into(), "ev-1".into()),
                ("nats-msg-id".into(), "chosen-by-the-user".into()),
                ("nats-expected-stream".into(), "ORDERS".into()),
            ],
            body: bytes::Bytes::new(),
        };
        let h = headers(&req, "ev-1:d:0");
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_string());
        assert_eq!(get(MSG_ID).as_deref(), Some("ev-1:d:0"));
        assert_eq!(get("content-type").as_deref(), Some("application/json"));
        assert_eq!(get("webhook-id").as_deref(), Some("ev-1"));
        assert!(get("webhook-timestamp").is_some());
        assert_eq!(get("Nats-Expected-Stream").as_deref(), Some("ORDERS"));
        assert_eq!(get("nats-msg-id"), None);
    }

    #[test]
    fn keys_differ_by_credentials_and_never_hold_them() {
        let pw = |p: &str| NatsAuth::UserPassword {
            user: "u".into(),
            password: causeway_config::SecretValue(p.into()),
        };
        let a = Key::new("h:4222", Some(&pw("one")));
        assert!(a == Key::new("h:4222", Some(&pw("one"))));
        assert!(a != Key::new("h:4222", Some(&pw("two"))));
        assert!(a != Key::new("h:4222", None));
        assert!(a != Key::new("h:4223", Some(&pw("one"))));
    }
}
