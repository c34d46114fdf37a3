//! `Bridge.spec.streams`: consumers read a bridge's accepted events over Server-Sent Events
//! or a WebSocket, with replay from the store. See `docs/streams.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bridge::{ApiKeyAuth, BasicAuth, JwtAuth};
use crate::common::SecretKeyRef;

/// One stream of a bridge, served at `/streams/<namespace>/<bridge>/<name>` on the ingress
/// address: every event the bridge accepted and that passed its filter and steps, in order,
/// each with its event id as a stable sequence id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stream {
    /// Unique within the bridge; the last segment of the stream's path.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// How consumers authenticate: an API key, a JWT or HTTP Basic, each secret from a
    /// Secret (the same shapes as `ingress.auth`). Without it anyone who reaches the
    /// ingress port may read the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<StreamAuth>,
    /// Per-worker bounds on connections and on the rate events are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<StreamLimits>,
    /// The slow-consumer bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<StreamBuffer>,
    /// How far back consumers may replay (`Last-Event-ID`, `?from=`, `?since=`), default
    /// 24h; events the store no longer keeps (its pool's retention) cannot be replayed. A
    /// request for an older point gets an error event naming the oldest available id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub retention: Option<String>,
    /// Interval of heartbeats (SSE comment lines, WebSocket pings) on an idle connection
    /// (default 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub heartbeat: Option<String>,
}

/// How stream consumers authenticate. Set exactly one scheme.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.jwt), has(self.basic), has(self.apiKey)].filter(x, x).size() == 1",
     "message": "set exactly one of jwt, basic, apiKey"},
    {"rule": "!has(self.jwt) || !has(self.jwt.dedupeJti) || !self.jwt.dedupeJti",
     "message": "a stream consumer reconnects with its token: dedupeJti applies to ingress only"}
]))]
pub struct StreamAuth {
    /// A JSON Web Token in the `Authorization: Bearer` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
    /// HTTP Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// A static API key in a header or query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
}

impl StreamAuth {
    /// Every Secret key this scheme reads.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let mut out = Vec::new();
        if let Some(a) = &self.jwt {
            out.extend(a.secret_ref.iter());
            out.extend(a.jwks_ref.iter());
        }
        if let Some(a) = &self.basic {
            out.push(&a.password_ref);
        }
        if let Some(a) = &self.api_key {
            out.push(&a.secret_ref);
            out.extend(a.previous_secret_refs.iter());
        }
        out
    }
}

/// Per-worker bounds of one stream; past a connection bound a consumer gets 429 before
/// anything is streamed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamLimits {
    /// Open connections of one consumer (its authenticated identity: the API key, the
    /// token's subject or the user name; without auth its address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_connections_per_consumer: Option<u32>,
    /// Open connections on the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_connections: Option<u32>,
    /// Events per second sent to one connection; replays and catch-ups are paced by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub events_per_second: Option<u32>,
}

/// The slow-consumer bound.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamBuffer {
    /// Live events one connection may have queued (not yet taken by its socket); past it
    /// the connection leaves the live fan-out and catches up from the store, so memory
    /// stays bounded and other consumers and ingest never wait for it (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_events: Option<u32>,
    /// A connection that has events waiting and whose socket takes nothing for this long
    /// is disconnected as a slow consumer, with the reason and the id to resume from
    /// (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub stall_timeout: Option<String>,
}
