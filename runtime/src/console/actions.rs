//! The action log: every replay, purge, suspend, resume and destination resume, from the
//! console or the admin API (`causeway events replay`, `kubectl causeway`), recorded in
//! the store next to the events, so it is durable, shared by a pool's workers on
//! PostgreSQL, and copied by `causeway store export`.
//!
//! Records live in the store's key-value space under the name [`LOG`], which no plugin can
//! have (plugin names are `namespace/name` of DNS labels; parentheses are not allowed in
//! them). The key orders them by time and names the bridge and event, so a page picks its
//! records from the key list and reads only those. At most [`KEEP`] are kept.

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::store::{EventId, Store, StoreError};

/// The key-value name of the action log.
pub const LOG: &str = "(actions)";
/// Records kept; the oldest go first.
pub const KEEP: usize = 500;

/// One action, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub at_ms: u64,
    /// `replay`, `replay-dead`, `purge`, `suspend`, `resume`, `resume-destination`.
    pub action: String,
    pub bridge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Jobs the action queued again or removed.
    pub jobs: u64,
    /// `console` or `api`.
    pub via: String,
}

/// `<at, 16 digits>|<bridge>|<event or ->|<random>`: sorted by time, searchable by name.
fn key(a: &Action) -> String {
    format!(
        "{:016}|{}|{}|{}",
        a.at_ms,
        a.bridge,
        a.event.as_deref().unwrap_or("-"),
        hex::encode(rand::random::<[u8; 4]>())
    )
}

/// Records `a`, then drops the oldest records past [`KEEP`]. A failure is logged and
/// returned: the action itself has happened.
pub async fn record(store: &dyn Store, a: Action) -> Result<(), StoreError> {
    let value = serde_json::to_vec(&a).unwrap_or_default();
    if let Err(e) = store.kv_set(LOG.into(), key(&a), value).await {
        warn!(error = %e, action = %a.action, bridge = %a.bridge, "action log: not recorded");
        return Err(e);
    }
    let mut keys = store.kv_list(LOG.into()).await?;
    if keys.len() > KEEP {
        keys.sort();
        for k in &keys[..keys.len() - KEEP] {
            store.kv_delete(LOG.into(), k.clone()).await?;
        }
    }
    Ok(())
}

/// The newest `limit` records about `bridge` (and, when given, `event`), newest first.
pub async fn recent(
    store: &dyn Store,
    bridge: Option<&str>,
    event: Option<EventId>,
    limit: usize,
) -> Result<Vec<Action>, StoreError> {
    let mut keys = store.kv_list(LOG.into()).await?;
    keys.sort();
    let event = event.map(|e| e.to_string());
    let mut out = Vec::new();
    for k in keys.iter().rev() {
        let mut parts = k.split('|');
        let (_, b, e) = (parts.next(), parts.next(), parts.next());
        if bridge.is_some_and(|want| b != Some(want))
            || event.as_deref().is_some_and(|want| e != Some(want))
        {
            continue;
        }
        if let Some(v) = store.kv_get(LOG.into(), k.clone()).await?
            && let Ok(a) = serde_json::from_slice::<Action>(&v)
        {
            out.push(a);
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Records an action done through `via` (`console` or `api`); a failure is logged (the
/// action itself is done).
pub async fn note(
    store: &dyn Store,
    via: &str,
    action: &str,
    bridge: &str,
    destination: Option<&str>,
    event: Option<EventId>,
    jobs: usize,
) {
    let _logged = record(
        store,
        Action {
            at_ms: crate::store::now_ms(),
            action: action.into(),
            bridge: bridge.into(),
            destination: destination.map(str::to_string),
            event: event.map(|e| e.to_string()),
            jobs: jobs as u64,
            via: via.into(),
        },
    )
    .await;
}
