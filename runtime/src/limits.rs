//! The worker's bounds and timeouts: one value, read by every stage. See `docs/worker.md`.

use std::net::SocketAddr;
use std::time::Duration;

/// Bounds and timeouts of one worker. See `docs/worker.md`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Ingress connections served at once; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// Ingress connections served at once from one peer address (0: half of
    /// `max_connections`), so that one client cannot take every slot.
    pub max_connections_per_peer: usize,
    /// Time a client has to send its request headers (also closes idle keep-alive connections).
    pub header_timeout: Duration,
    /// Time a client has to send its request body.
    pub body_timeout: Duration,
    /// Delivery attempts in flight at once, over all destinations.
    pub max_inflight: usize,
    /// On SIGTERM, how long in-flight requests and attempts may take to finish.
    pub shutdown_grace: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Largest request body a public plugin route accepts.
    pub plugin_body_bytes: usize,
    /// Networks no destination may reach (`--deny-destination-cidr`).
    pub denied_destinations: Vec<crate::netguard::Cidr>,
    /// Below this many free bytes on the store's volume, ingress refuses new events (507).
    pub min_free_disk_bytes: u64,
    /// Request body bytes being read at once over all connections; past it new requests
    /// get 503 before their body is read.
    pub max_body_bytes_in_flight: u64,
    /// Fixed addresses for destination hosts (`--resolve host:port:addr`).
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_peer: 0,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_inflight: 256,
            shutdown_grace: Duration::from_secs(10),
            retention_interval: Duration::from_secs(60),
            plugin_body_bytes: 1 << 20,
            denied_destinations: Vec::new(),
            min_free_disk_bytes: 64 << 20,
            max_body_bytes_in_flight: 256 << 20,
            resolve: Vec::new(),
        }
    }
}

impl Limits {
    /// The connection bounds of the ingress and internal ports.
    pub fn conn_limits(&self) -> crate::listener::ConnLimits {
        let max = self.max_connections.max(1);
        crate::listener::ConnLimits {
            max_connections: max,
            max_per_peer: match self.max_connections_per_peer {
                0 => (max / 2).max(1),
                n => n,
            },
            header_timeout: self.header_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }

    /// The admin port's bounds: its own, smaller pool of connections, so that health
    /// checks and the operator never wait behind ingress traffic.
    pub fn admin_conn_limits(&self) -> crate::listener::ConnLimits {
        crate::listener::ConnLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            max_per_peer: ADMIN_MAX_CONNECTIONS / 2,
            header_timeout: self.header_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// Connections the admin port serves at once.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
