//! One stream of a bridge, resolved: consumers read the bridge's accepted events over
//! Server-Sent Events or a WebSocket at `/streams/<namespace>/<bridge>/<stream>`.

use serde::{Deserialize, Serialize};

use crate::bridge::AuthConfig;

/// One stream, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamConfig {
    /// Unique within the bridge; the last segment of the stream's path.
    pub name: String,
    /// How consumers authenticate (API key, JWT or basic); None: anyone who reaches the
    /// ingress port may read the stream.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Open connections of one consumer (the authenticated identity, or the peer address
    /// without auth) on this stream, per worker; past it 429. 0: no limit.
    #[serde(default)]
    pub max_connections_per_consumer: u32,
    /// Open connections on this stream, per worker; past it 429. 0: no limit.
    #[serde(default)]
    pub max_connections: u32,
    /// Events per second sent to one connection (a token bucket of one second); a
    /// consumer that replays or catches up is paced by it. 0: no limit.
    #[serde(default)]
    pub events_per_second: u32,
    /// Live events one connection may have queued; past it the connection leaves the live
    /// fan-out and catches up from the store.
    pub buffer_events: u32,
    /// A connection that has events waiting and whose socket takes nothing for this long
    /// is disconnected as a slow consumer, in ms.
    pub stall_timeout_ms: u64,
    /// How far back a consumer may replay, in ms (bounded by what the store keeps).
    pub retention_ms: u64,
    /// Interval of SSE comment lines / WebSocket pings on an idle connection, in ms.
    pub heartbeat_ms: u64,
}

impl StreamConfig {
    /// Default `buffer.maxEvents`.
    pub const DEFAULT_BUFFER_EVENTS: u32 = 1024;
    /// Default `buffer.stallTimeout`.
    pub const DEFAULT_STALL_TIMEOUT_MS: u64 = 30_000;
    /// Default `retention`: a day.
    pub const DEFAULT_RETENTION_MS: u64 = 86_400_000;
    /// Default `heartbeat`.
    pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
}
