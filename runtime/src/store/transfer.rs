//! `causeway store export` and `causeway store import`: a store's events (with their jobs
//! in their state and their attempts), paused destinations, plugin keyvalue and WebSub
//! subscriptions (with their secrets: an export is as sensitive as the store) as JSON
//! lines, so that a pool moves from one engine to another (embedded → postgres) without
//! losing a queued job. Idempotency keys are not carried: after a move, a retry of an
//! event sent before it is stored again (at-least-once, as after a key's window).
//!
//! Import is idempotent: an event already there is left alone, so a move can be run again.

use std::io::{BufRead, Write};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::*;

/// One line of an export.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum Line {
    Event {
        /// Boxed: it is most of a line's size.
        record: Box<EventRecord>,
        /// Base64.
        body: String,
        jobs: Vec<ExportedJob>,
    },
    Paused {
        bridge: String,
        destination: String,
    },
    Keyvalue {
        plugin: String,
        key: String,
        /// Base64.
        value: String,
    },
    Subscription {
        subscription: SubscriptionRecord,
    },
}

#[derive(Serialize, Deserialize)]
struct ExportedJob {
    job: JobRecord,
    attempts: Vec<AttemptRecord>,
}

/// What an export or import moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub events: usize,
    /// Events an import found already there.
    pub skipped: usize,
    pub queued_jobs: usize,
    pub paused: usize,
    pub keys: usize,
    pub subscriptions: usize,
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events ({} queued jobs), {} paused destinations, {} keyvalue keys, {} subscriptions",
            self.events, self.queued_jobs, self.paused, self.keys, self.subscriptions
        )?;
        if self.skipped > 0 {
            write!(f, "; {} events were already there", self.skipped)?;
        }
        Ok(())
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(e.to_string())
}

/// Write every event, paused destination and keyvalue key of `store` to `out`.
pub async fn export(store: &dyn Store, out: &mut dyn Write) -> Result<Moved, StoreError> {
    let mut moved = Moved::default();
    let mut write = |line: &Line| -> Result<(), StoreError> {
        serde_json::to_writer(&mut *out, line).map_err(io)?;
        out.write_all(b"\n").map_err(io)
    };
    let all = store
        .list_events(EventQuery {
            limit: usize::MAX,
            ..Default::default()
        })
        .await?;
    // Oldest first, so that an import queues them in arrival order.
    for rec in all.iter().rev() {
        let Some(d) = store.event(rec.id).await? else {
            continue;
        };
        moved.events += 1;
        moved.queued_jobs += d.jobs.iter().filter(|(j, _)| j.status.queued()).count();
        write(&Line::Event {
            record: Box::new(d.record),
            body: b64().encode(&d.body),
            jobs: d
                .jobs
                .into_iter()
                .map(|(job, attempts)| ExportedJob { job, attempts })
                .collect(),
        })?;
    }
    for (bridge, destination) in store.paused().await? {
        moved.paused += 1;
        write(&Line::Paused {
            bridge,
            destination,
        })?;
    }
    for plugin in store.kv_plugins().await? {
        for key in store.kv_list(plugin.clone()).await? {
            if let Some(v) = store.kv_get(plugin.clone(), key.clone()).await? {
                moved.keys += 1;
                write(&Line::Keyvalue {
                    plugin: plugin.clone(),
                    key,
                    value: b64().encode(v),
                })?;
            }
        }
    }
    for subscription in store.subscriptions().await? {
        moved.subscriptions += 1;
        write(&Line::Subscription { subscription })?;
    }
    out.flush().map_err(io)?;
    Ok(moved)
}

/// Read an export into `store`.
pub async fn import(store: &dyn Store, input: &mut dyn BufRead) -> Result<Moved, StoreError> {
    let mut moved = Moved::default();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .map_err(|e| StoreError::Invalid(format!("line {}: {e}", n + 1)))?;
        match parsed {
            Line::Event { record, body, jobs } => {
                let body = b64()
                    .decode(body)
                    .map_err(|e| StoreError::Invalid(format!("line {}: body: {e}", n + 1)))?;
                let queued = jobs.iter().filter(|j| j.job.status.queued()).count();
                let detail = EventDetail {
                    record: *record,
                    body: bytes::Bytes::from(body),
                    jobs: jobs.into_iter().map(|j| (j.job, j.attempts)).collect(),
                };
                if store.import_event(detail).await? {
                    moved.events += 1;
                    moved.queued_jobs += queued;
                } else {
                    moved.skipped += 1;
                }
            }
            Line::Paused {
                bridge,
                destination,
            } => {
                store
                    .set_paused(bridge, destination, true, now_ms())
                    .await?;
                moved.paused += 1;
            }
            Line::Keyvalue { plugin, key, value } => {
                let value = b64()
                    .decode(value)
                    .map_err(|e| StoreError::Invalid(format!("line {}: value: {e}", n + 1)))?;
                store.kv_set(plugin, key, value).await?;
                moved.keys += 1;
            }
            Line::Subscription { subscription } => {
                // A renewal in place when it is there already: an import runs again.
                store.put_subscription(subscription).await?;
                moved.subscriptions += 1;
            }
        }
    }
    Ok(moved)
}
