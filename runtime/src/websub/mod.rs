//! WebSub hubs: a bridge with `spec.subscriptions` serves `POST /hub/<namespace>/<bridge>`
//! on the ingress address, where consumers subscribe their own callback URLs (W3C WebSub,
//! the hub's side). See `docs/websub.md` for why it is built this way.
//!
//! - [`Hubs`] is the handle the worker shares: the stored subscriptions of every bridge,
//!   read from the store at start and every [`REFRESH`] (another worker of a shared store
//!   may have verified one), and the last outcomes of verification of intent.
//! - A subscription delivers like a destination of its bridge: each accepted event (after
//!   the filter and steps) gets one job per live subscription, named
//!   `websub:<subscription id>`, whose slot follows the bridge's destinations. The delivery
//!   engine runs it with the hub's retries and timeout, records every attempt, and asks
//!   [`Hubs::prepare`] for the request (the body as the bridge accepted it, the `Link`
//!   header, `X-Hub-Signature-256`) and [`check_callback`] for where it may go.
//! - [`http`] is the endpoint: API key, form, callback policy, 202, then verification of
//!   intent (a GET to the callback that must echo `hub.challenge`) in the background.

pub mod http;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use causeway_config::{DestinationConfig, SubscriptionsConfig};
use causeway_plugins::outbound::{AddrClass, AllowList, classify, is_metadata_name};
use serde::Serialize;
use tracing::{info, warn};

use crate::bridge::{ActiveBridge, OutboundRequest};
use crate::netguard::NetGuard;
use crate::store::{EventDetail, JobTarget, NewJob, Store, StoreError, SubscriptionRecord, now_ms};
use crate::sync::{lock, read, write};

pub use http::serve;

/// The prefix of a subscription's job name (destination names are DNS labels, so no
/// destination can take it).
pub const JOB_PREFIX: &str = "websub:";
/// The destination label of every subscription's delivery metrics (one series per bridge,
/// not per subscriber).
pub const METRIC_LABEL: &str = "(websub)";
/// How often the subscriptions are read again from the store (and long-expired ones
/// deleted).
pub const REFRESH: Duration = Duration::from_secs(5);
/// How long an expired subscription is still listed (as `expired`) before it is deleted.
pub const EXPIRED_KEPT_MS: u64 = 3_600_000;
/// Verification outcomes kept per bridge for the listing.
const RECENT: usize = 32;
/// Verifications of intent in flight on one worker; past it the hub answers 503.
const MAX_VERIFYING: usize = 64;

/// The subscription id a job name carries, if it is a subscription's job.
pub fn subscription_id(job_name: &str) -> Option<&str> {
    job_name.strip_prefix(JOB_PREFIX)
}

/// The job name of a subscription.
pub fn job_name(id: &str) -> String {
    format!("{JOB_PREFIX}{id}")
}

/// What became of one verification of intent.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub callback: String,
    /// `subscribe` or `unsubscribe`.
    pub mode: String,
    pub at_ms: u64,
    pub verified: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The WebSub subscriptions of every bridge of this worker. See the module docs.
pub struct Hubs {
    store: Arc<dyn Store>,
    /// Stored subscriptions by bridge key, as last read or written.
    subs: RwLock<HashMap<String, Vec<SubscriptionRecord>>>,
    recent: Mutex<HashMap<String, VecDeque<Verification>>>,
    verifying: Arc<tokio::sync::Semaphore>,
    /// Counts this worker's own writes, so that a read of the store that started before
    /// one does not replace what it wrote.
    writes: AtomicU64,
}

impl Hubs {
    pub fn new(store: Arc<dyn Store>) -> Hubs {
        Hubs {
            store,
            subs: RwLock::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            verifying: Arc::new(tokio::sync::Semaphore::new(MAX_VERIFYING)),
            writes: AtomicU64::new(0),
        }
    }

    /// Read every subscription from the store, and delete those expired for longer than
    /// [`EXPIRED_KEPT_MS`].
    pub async fn load(&self) -> Result<(), StoreError> {
        let writes = self.writes.load(Ordering::SeqCst);
        let all = self.store.subscriptions().await?;
        let now = now_ms();
        let mut by_bridge: HashMap<String, Vec<SubscriptionRecord>> = HashMap::new();
        for s in all {
            if s.expires_at_ms.saturating_add(EXPIRED_KEPT_MS) <= now {
                info!(bridge = %s.bridge, subscription = %s.id, "websub: lease expired an hour ago, subscription deleted");
                self.store
                    .delete_subscription(s.bridge.clone(), s.callback.clone(), Some(s.id.clone()))
                    .await?;
                continue;
            }
            by_bridge.entry(s.bridge.clone()).or_default().push(s);
        }
        let mut subs = write(&self.subs);
        // A subscribe or unsubscribe of this worker since the read: the next read has it.
        if self.writes.load(Ordering::SeqCst) == writes {
            *subs = by_bridge;
        }
        Ok(())
    }

    /// Keep the subscriptions in step with the store until `stop`.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
            if let Err(e) = self.load().await {
                warn!(error = %e, "websub: cannot read the subscriptions");
            }
        }
    }

    /// One stored subscription.
    pub fn get(&self, bridge: &str, id: &str) -> Option<SubscriptionRecord> {
        read(&self.subs)
            .get(bridge)?
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    /// Whether `bridge` may take a subscription of `callback`: a renewal always, a new
    /// callback while fewer than `max` subscriptions are live.
    pub fn has_room(&self, bridge: &str, callback: &str, max: u32, now: u64) -> bool {
        let subs = read(&self.subs);
        let Some(list) = subs.get(bridge) else {
            return max > 0;
        };
        let live = list.iter().filter(|s| s.expires_at_ms > now);
        let mut n = 0u32;
        for s in live {
            if s.callback == callback {
                return true;
            }
            n += 1;
        }
        n < max
    }

    /// The stored subscription of a callback.
    pub fn by_callback(&self, bridge: &str, callback: &str) -> Option<SubscriptionRecord> {
        read(&self.subs)
            .get(bridge)?
            .iter()
            .find(|s| s.callback == callback)
            .cloned()
    }

    /// Every stored subscription of `bridge` (all bridges for None).
    pub fn list(&self, bridge: Option<&str>) -> Vec<SubscriptionRecord> {
        let subs = read(&self.subs);
        let mut out: Vec<SubscriptionRecord> = subs
            .iter()
            .filter(|(b, _)| bridge.is_none_or(|x| x == b.as_str()))
            .flat_map(|(_, v)| v.iter().cloned())
            .collect();
        out.sort_by(|a, b| (&a.bridge, &a.callback).cmp(&(&b.bridge, &b.callback)));
        out
    }

    /// The last verification outcomes of `bridge` (all bridges for None), newest first.
    pub fn recent(&self, bridge: Option<&str>) -> Vec<(String, Verification)> {
        let recent = lock(&self.recent);
        let mut out: Vec<(String, Verification)> = recent
            .iter()
            .filter(|(b, _)| bridge.is_none_or(|x| x == b.as_str()))
            .flat_map(|(b, v)| v.iter().map(|x| (b.clone(), x.clone())))
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.1.at_ms));
        out
    }

    fn note(&self, bridge: &str, v: Verification) {
        let mut recent = lock(&self.recent);
        let q = recent.entry(bridge.to_string()).or_default();
        if q.len() >= RECENT {
            q.pop_front();
        }
        q.push_back(v);
    }

    /// Store a verified subscription (or its renewal), durably, then serve it.
    async fn put(&self, sub: SubscriptionRecord) -> Result<(), StoreError> {
        self.store.put_subscription(sub.clone()).await?;
        let mut subs = write(&self.subs);
        self.writes.fetch_add(1, Ordering::SeqCst);
        let list = subs.entry(sub.bridge.clone()).or_default();
        list.retain(|s| s.callback != sub.callback);
        list.push(sub);
        list.sort_by(|a, b| a.callback.cmp(&b.callback));
        Ok(())
    }

    /// Delete a subscription, durably, then stop serving it.
    async fn remove(&self, bridge: &str, callback: &str) -> Result<bool, StoreError> {
        let found = self
            .store
            .delete_subscription(bridge.to_string(), callback.to_string(), None)
            .await?;
        let mut subs = write(&self.subs);
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Some(list) = subs.get_mut(bridge) {
            list.retain(|s| s.callback != callback);
        }
        Ok(found)
    }

    /// One delivery job per live subscription of `bridge`, due at `due_at_ms`; their slots
    /// follow the bridge's destinations. None while the hub is disabled.
    pub fn jobs_for(&self, bridge: &ActiveBridge, now: u64, due_at_ms: u64) -> Vec<NewJob> {
        if bridge.cfg.subscriptions.is_none() {
            return Vec::new();
        }
        let subs = read(&self.subs);
        let Some(list) = subs.get(&bridge.key) else {
            return Vec::new();
        };
        let base = bridge.cfg.destinations.len() as u32;
        list.iter()
            .filter(|s| s.expires_at_ms > now)
            .enumerate()
            .map(|(i, s)| NewJob {
                target: JobTarget::destination(base + i as u32, job_name(&s.id)),
                due_at_ms,
            })
            .collect()
    }

    /// The destination a subscription's job is delivered as, and its request; the error
    /// (the subscription ended, the hub was disabled) dead-letters the job.
    pub fn prepare(
        &self,
        bridge: &ActiveBridge,
        id: &str,
        detail: &EventDetail,
        now: u64,
    ) -> Result<Prepared, String> {
        let Some(cfg) = &bridge.cfg.subscriptions else {
            return Err("subscription ended: the bridge's hub is disabled".into());
        };
        let Some(sub) = self.get(&bridge.key, id) else {
            return Err(
                "subscription ended: unsubscribed, or replaced by a new subscription".into(),
            );
        };
        if sub.expires_at_ms <= now {
            return Err(format!(
                "subscription ended: its lease expired at {}",
                crate::delivery::attempt::rfc3339(sub.expires_at_ms)
            ));
        }
        let dest = destination_of(cfg, &sub);
        let event_id = detail.record.id.to_string();
        let content_type = detail
            .record
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "application/octet-stream".into());
        let body = detail.body.clone();
        let mut headers = vec![
            ("content-type".to_string(), content_type),
            (
                "link".to_string(),
                format!(
                    "<{}>; rel=\"hub\", <{}>; rel=\"self\"",
                    sub.topic, sub.topic
                ),
            ),
        ];
        if let Some(secret) = &sub.secret {
            let signature = causeway_pipeline::signing::hub_signature_256(secret.as_bytes(), &body);
            // `X-Hub-Signature` is the recommendation's header (`method=signature`);
            // `X-Hub-Signature-256` the name most receivers look for. The same value.
            headers.push(("x-hub-signature".to_string(), signature.clone()));
            headers.push(("x-hub-signature-256".to_string(), signature));
        }
        if let Some(secret) = &cfg.signing_secret {
            let ts = (now / 1000) as i64;
            for (n, v) in causeway_pipeline::signing::standard_webhooks_headers(
                secret.expose(),
                &event_id,
                ts,
                &body,
            ) {
                headers.push((n.to_string(), v));
            }
        }
        Ok(Prepared {
            req: OutboundRequest {
                url: sub.callback.clone(),
                method: "POST".into(),
                headers,
                body: Bytes::clone(&body),
            },
            secret: sub.secret.clone(),
            dest,
        })
    }
}

/// A subscription's delivery, ready for the delivery engine.
pub struct Prepared {
    pub dest: DestinationConfig,
    pub req: OutboundRequest,
    /// The subscriber's secret, redacted from the attempt log like the bridge's own.
    pub secret: Option<String>,
}

/// A subscription as a destination of its bridge: the hub's retries and timeout, no
/// template, no breaker (a subscriber's failures end in its own dead letters).
fn destination_of(cfg: &SubscriptionsConfig, sub: &SubscriptionRecord) -> DestinationConfig {
    DestinationConfig {
        name: job_name(&sub.id),
        url: sub.callback.clone(),
        method: "POST".into(),
        headers: Default::default(),
        body: None,
        delay_ms: 0,
        timeout_ms: cfg.timeout_ms,
        retry: cfg.retry.clone(),
        max_retry_after_ms: 3_600_000,
        max_concurrency: 16,
        rate_limit: None,
        signing_secret: None,
        dead_letter_url: None,
        cloud_events: None,
        oauth2: None,
        tls: None,
        circuit_breaker: None,
        nats: None,
    }
}

/// Why a callback URL is refused, if it is: the hub's `allowedCallbackHosts` (deny by
/// default), no plugin name, no metadata name, and every address the host resolves to
/// must pass the worker's network guard (link-local and metadata refused, the worker's
/// denied ranges) and, when it is not public (loopback, private, …), the host must be
/// listed by name or address, not only matched by a wildcard: the rules of plugins'
/// outbound hosts. Checked at subscribe time and again before each delivery.
pub async fn check_callback(
    guard: &NetGuard,
    cfg: &SubscriptionsConfig,
    callback: &str,
) -> Result<(), String> {
    let (scheme, host, port) = split_callback(callback)?;
    let ip_literal = host.parse::<IpAddr>().ok();
    let allowed = check_static(cfg, &scheme, &host, port, ip_literal)?;
    let addrs: Vec<IpAddr> = match ip_literal {
        Some(ip) => vec![ip],
        None => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("the callback host {host} does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("the callback host {host} has no address"));
    }
    for ip in addrs {
        check_address(guard, ip, allowed)?;
    }
    Ok(())
}

/// `(scheme, host without brackets, port)` of an http(s) callback URL.
pub fn split_callback(callback: &str) -> Result<(String, String, u16), String> {
    let u = reqwest::Url::parse(callback).map_err(|e| format!("hub.callback is not a URL: {e}"))?;
    let scheme = u.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        return Err("hub.callback must be an http:// or https:// URL".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("hub.callback must not carry credentials".into());
    }
    if u.fragment().is_some() {
        return Err("hub.callback must not have a fragment".into());
    }
    let host = u
        .host_str()
        .ok_or("hub.callback has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = u
        .port_or_known_default()
        .ok_or("hub.callback has no port")?;
    Ok((scheme, host, port))
}

/// The checks that need no resolution; `Ok(explicit)`: whether the host was listed by
/// name or address.
fn check_static(
    cfg: &SubscriptionsConfig,
    scheme: &str,
    host: &str,
    port: u16,
    ip_literal: Option<IpAddr>,
) -> Result<bool, String> {
    if ip_literal.is_none() {
        // Plugin chaining names resolve in the worker; a callback is always a host.
        if let Some(name) = host.trim_end_matches('.').strip_suffix(".internal")
            && !name.contains('.')
        {
            return Err(format!(
                "{host} names a plugin (<name>.internal): a callback must be an HTTP host"
            ));
        }
        if is_metadata_name(host) {
            return Err(format!("{host} is a cloud metadata service"));
        }
    }
    let list = AllowList::parse(&cfg.allowed_callback_hosts)
        .map_err(|e| format!("the hub's allowedCallbackHosts is invalid: {e}"))?;
    let shown = match ip_literal {
        Some(IpAddr::V6(_)) => format!("{scheme}://[{host}]:{port}"),
        _ => format!("{scheme}://{host}:{port}"),
    };
    list.check(scheme, host, port)
        .map(|m| m.explicit)
        .ok_or_else(|| format!("{shown} is not in the hub's allowedCallbackHosts"))
}

/// One resolved address of a callback: the network guard, then the non-public rule.
pub fn check_address(guard: &NetGuard, ip: IpAddr, explicit: bool) -> Result<(), String> {
    guard.check_ip(ip)?;
    let class = classify(ip);
    if class != AddrClass::Public && !explicit {
        return Err(format!(
            "{ip} is a {} address: list the host by name or address (not a wildcard) in allowedCallbackHosts to allow it",
            class.as_str()
        ));
    }
    Ok(())
}
