//! Streams: a bridge's accepted events for consumers, over Server-Sent Events or a
//! WebSocket at `GET /streams/<namespace>/<bridge>/<stream>` on the ingress address, with
//! replay from the store. See `docs/streams.md` for why it is built this way.
//!
//! - [`Streams`] is the handle the worker shares: it mints the ids of events of bridges
//!   with streams ([`Ticket`]), so that it knows the *watermark* below which every event is
//!   committed; it keeps one [`hub::Hub`] per bridge and counts connections.
//! - A hub is the one live fan-out of a bridge: woken when ingress commits an event, it
//!   reads the new events from the store once ([`crate::store::Store::stream_events`]) and
//!   appends them to one ring that every live connection reads at its own cursor, in
//!   rounds at most every [`hub::ROUND_GAP`] under a steady flow. A connection more than
//!   its buffer behind leaves the fan-out and catches up from the store by itself.
//! - [`consumer::Consumer`] is one connection's view: replay from the store, then live,
//!   heartbeats, pacing; [`http`] turns it into SSE frames or WebSocket messages.

mod consumer;
mod http;
mod hub;
mod raw;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use std::time::Duration;

use causeway_config::StreamConfig;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::{EventId, Store, StreamItem, now_ms};
use crate::sync::lock;

pub use http::{StreamBody, serve};
pub use raw::{PREFIX as RAW_PREFIX, serve_raw};

/// Events read from the store in one go (by a hub or by a connection catching up).
const PAGE: usize = 64;
/// How often a hub reads without being woken when the store is shared by several workers:
/// the events other workers accept show up within this (plus [`SETTLE`]).
const SHARED_POLL: Duration = Duration::from_millis(250);
/// On a shared store, an event is streamed once it is this old: another worker's event
/// with a smaller id may still be committing (its append and clocks), and a stream never
/// goes back in id order.
const SETTLE: Duration = Duration::from_millis(3000);
/// How often a hub looks again while an event's steps are running.
const HELD_POLL: Duration = Duration::from_millis(100);
/// How often connections are checked for stalls.
const SWEEP: Duration = Duration::from_millis(250);
/// The most bytes of events a connection takes into one write.
const BATCH_BYTES: usize = 64 * 1024;
/// After a slow consumer is told why, how long its socket has to take the message before
/// it is closed.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// The streams' metrics: labels are the bridge, the stream and a fixed set of reasons.
#[derive(Clone)]
pub struct StreamMetrics {
    pub connections: IntGaugeVec,
    pub events_sent: IntCounterVec,
    pub refused: IntCounterVec,
    pub disconnects: IntCounterVec,
}

impl StreamMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let connections = IntGaugeVec::new(
            Opts::new("stream_connections", "Open stream connections"),
            &["bridge", "stream"],
        )?;
        let events_sent = IntCounterVec::new(
            Opts::new(
                "stream_events_sent_total",
                "Events sent to stream consumers",
            ),
            &["bridge", "stream"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "stream_refused_total",
                "Stream connections refused before streaming, by reason",
            ),
            &["bridge", "stream", "reason"],
        )?;
        let disconnects = IntCounterVec::new(
            Opts::new(
                "stream_disconnects_total",
                "Stream connections the worker ended, by reason",
            ),
            &["bridge", "stream", "reason"],
        )?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(events_sent.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(disconnects.clone()))?;
        Ok(StreamMetrics {
            connections,
            events_sent,
            refused,
            disconnects,
        })
    }
}

/// The streams of every bridge of this worker.
pub struct Streams {
    store: Arc<dyn Store>,
    /// The store is shared by other workers (their events arrive by polling).
    shared_store: bool,
    /// Ids minted for events of bridges with streams whose append has not finished.
    inflight: Mutex<BTreeSet<u128>>,
    hubs: Mutex<HashMap<String, Arc<hub::Hub>>>,
    /// Open connections per stream (`ns/bridge/stream`) and per consumer of a stream.
    counts: Mutex<HashMap<String, u32>>,
    conns: Mutex<HashMap<u64, Weak<ConnState>>>,
    next_conn: AtomicU64,
    sweeping: AtomicBool,
    pub metrics: StreamMetrics,
    shutdown: CancellationToken,
}

impl Streams {
    pub fn new(
        store: Arc<dyn Store>,
        registry: &Registry,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, prometheus::Error> {
        Ok(Arc::new(Streams {
            shared_store: store.poll_interval().is_some(),
            store,
            inflight: Mutex::default(),
            hubs: Mutex::default(),
            counts: Mutex::default(),
            conns: Mutex::default(),
            next_conn: AtomicU64::new(1),
            sweeping: AtomicBool::new(false),
            metrics: StreamMetrics::new(registry)?,
            shutdown,
        }))
    }

    /// The id of a new event of `bridge` (which has streams), held as in flight until the
    /// ticket is [done](Ticket::done) or dropped: streams read no further than the
    /// smallest id in flight, so an event committed late is never skipped.
    pub fn mint(self: &Arc<Self>, bridge: &str) -> Ticket {
        let mut inflight = lock(&self.inflight);
        // Minted under the lock that `watermark` takes: ids come out in order.
        let id = EventId::now_v7();
        inflight.insert(id.as_u128());
        Ticket {
            streams: self.clone(),
            bridge: bridge.to_string(),
            id,
            done: false,
        }
    }

    /// The exclusive upper bound of what streams may read now: every event below it is
    /// committed (or will never be).
    fn watermark(&self) -> EventId {
        let local = {
            let inflight = lock(&self.inflight);
            match inflight.first() {
                Some(first) => EventId::from_u128(*first),
                // Nothing in flight: any id minted from now on is above this one.
                None => EventId::now_v7(),
            }
        };
        if self.shared_store {
            local.min(id_floor(now_ms().saturating_sub(SETTLE.as_millis() as u64)))
        } else {
            local
        }
    }

    /// Wake the hub of `bridge`, if it has one (an event was committed or gave up).
    pub fn wake(&self, bridge: &str) {
        if let Some(h) = lock(&self.hubs).get(bridge) {
            h.wake();
        }
    }

    fn hub(self: &Arc<Self>, bridge: &str) -> Arc<hub::Hub> {
        let mut hubs = lock(&self.hubs);
        if let Some(h) = hubs.get(bridge) {
            return h.clone();
        }
        // The live fan-out starts at the watermark: what is below it is history, which
        // connections read from the store.
        let start = id_before(self.watermark());
        let h = Arc::new(hub::Hub::new(bridge.to_string(), start));
        hubs.insert(bridge.to_string(), h.clone());
        tokio::spawn(hub::run(h.clone(), Arc::downgrade(self)));
        h
    }

    /// Take a connection slot of `stream` (and of `consumer` on it) within the limits;
    /// None when one is full.
    fn take_slot(
        self: &Arc<Self>,
        stream: &str,
        consumer: &str,
        max: u32,
        max_per_consumer: u32,
    ) -> Result<Slot, &'static str> {
        let per = format!("{stream}#{consumer}");
        let mut counts = lock(&self.counts);
        let total = counts.get(stream).copied().unwrap_or(0);
        let mine = counts.get(&per).copied().unwrap_or(0);
        if max > 0 && total >= max {
            return Err("max_connections");
        }
        if max_per_consumer > 0 && mine >= max_per_consumer {
            return Err("max_connections_per_consumer");
        }
        *counts.entry(stream.to_string()).or_insert(0) += 1;
        *counts.entry(per.clone()).or_insert(0) += 1;
        Ok(Slot {
            streams: self.clone(),
            keys: [stream.to_string(), per],
        })
    }

    /// End the connections whose stream is gone from `active` or configured differently
    /// (its auth, limits or buffer): they were admitted under rules that no longer hold.
    pub fn reconfigured(&self, active: &crate::config::active::Active) {
        let conns: Vec<Arc<ConnState>> = lock(&self.conns)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for c in conns {
            let same = active
                .bridges
                .get(&c.bridge)
                .and_then(|b| b.cfg.streams.iter().find(|s| s.name == c.stream))
                .is_some_and(|s| *s == c.cfg);
            if !same {
                c.cut(
                    "reconfigured",
                    "the stream's configuration changed: reconnect".into(),
                    &self.metrics,
                );
            }
        }
    }

    fn register(self: &Arc<Self>, conn: &Arc<ConnState>) {
        lock(&self.conns).insert(conn.id, Arc::downgrade(conn));
        if !self.sweeping.swap(true, Ordering::SeqCst) {
            tokio::spawn(sweep(Arc::downgrade(self), self.shutdown.clone()));
        }
    }

    fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// The id of an event being appended; see [`Streams::mint`].
pub struct Ticket {
    streams: Arc<Streams>,
    bridge: String,
    id: EventId,
    done: bool,
}

impl Ticket {
    pub fn id(&self) -> EventId {
        self.id
    }

    /// The append finished (committed or failed): the id leaves the in-flight set and the
    /// bridge's hub reads on.
    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let id = self.id.as_u128();
        if !self.done
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // Dropped mid-append (the client went away): the store may still commit the
            // write it was sent, so the id stays in flight a little longer.
            let (streams, bridge) = (self.streams.clone(), std::mem::take(&mut self.bridge));
            rt.spawn(async move {
                tokio::time::sleep(SETTLE).await;
                lock(&streams.inflight).remove(&id);
                streams.wake(&bridge);
            });
            return;
        }
        lock(&self.streams.inflight).remove(&id);
        self.streams.wake(&self.bridge);
    }
}

/// One open connection's slot in the stream's counts.
struct Slot {
    streams: Arc<Streams>,
    keys: [String; 2],
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.streams.counts);
        for k in &self.keys {
            if let Some(n) = counts.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(k);
                }
            }
        }
    }
}

/// What the hub, the sweeper and the connection share about one connection.
pub(crate) struct ConnState {
    id: u64,
    bridge: String,
    stream: String,
    /// When the connection last handed something to its socket and has not been asked for
    /// more since, in ms (0: it is waiting for events, so its socket keeps up).
    stalled_since: AtomicU64,
    /// It has events waiting (queued live, or to catch up from the store).
    behind: AtomicBool,
    /// Its cursor in its hub's ring (the next sequence number it reads).
    cursor: AtomicU64,
    stall_ms: u64,
    /// The stream's configuration it was admitted under.
    cfg: StreamConfig,
    /// Why it was cut; set once.
    reason: Mutex<Option<String>>,
    cut: CancellationToken,
    /// Closes the connection's socket.
    closer: CancellationToken,
    /// The last id sent, to tell a cut consumer where to resume.
    last_sent: Mutex<Option<EventId>>,
}

impl ConnState {
    fn polled(&self) {
        self.stalled_since.store(0, Ordering::Relaxed);
    }

    fn handed(&self) {
        self.stalled_since.store(now_ms().max(1), Ordering::Relaxed);
    }

    /// Cut the connection with `reason` (the first reason wins); the socket is closed
    /// after [`CUT_GRACE`] whether or not the consumer took the message.
    fn cut(&self, label: &'static str, reason: String, metrics: &StreamMetrics) {
        {
            let mut r = lock(&self.reason);
            if r.is_some() {
                return;
            }
            *r = Some(reason.clone());
        }
        metrics
            .disconnects
            .with_label_values(&[&self.bridge, &self.stream, label])
            .inc();
        warn!(bridge = %self.bridge, stream = %self.stream, reason = %reason, "stream consumer disconnected");
        self.cut.cancel();
        let closer = self.closer.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CUT_GRACE).await;
            closer.cancel();
        });
    }

    fn reason(&self) -> Option<String> {
        lock(&self.reason).clone()
    }
}

/// Cut connections that have events waiting and whose socket took nothing for their
/// stall timeout.
async fn sweep(streams: Weak<Streams>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SWEEP) => {}
        }
        let Some(s) = streams.upgrade() else { return };
        let now = now_ms();
        let conns: Vec<Arc<ConnState>> = {
            let mut map = lock(&s.conns);
            map.retain(|_, w| w.strong_count() > 0);
            map.values().filter_map(Weak::upgrade).collect()
        };
        for c in conns {
            let since = c.stalled_since.load(Ordering::Relaxed);
            if since != 0
                && c.behind.load(Ordering::Relaxed)
                && now.saturating_sub(since) >= c.stall_ms
            {
                let resume = lock(&c.last_sent)
                    .map(|id| format!("; reconnect with Last-Event-ID {id} to resume"))
                    .unwrap_or_default();
                c.cut(
                    "slow_consumer",
                    format!(
                        "slow consumer: events waited and the connection took nothing for {} ms{resume}",
                        c.stall_ms
                    ),
                    &s.metrics,
                );
            }
        }
    }
}

/// One event on its way to consumers: the store's item, and its frames rendered once for
/// every connection that sends it (a fan-out to a thousand connections formats it once).
pub(crate) struct Item {
    pub(crate) data: StreamItem,
    sse: OnceLock<Bytes>,
    ws: OnceLock<tokio_tungstenite::tungstenite::Utf8Bytes>,
}

impl Item {
    pub(crate) fn new(data: StreamItem) -> Arc<Item> {
        Arc::new(Item {
            data,
            sse: OnceLock::new(),
            ws: OnceLock::new(),
        })
    }

    pub(crate) fn id(&self) -> EventId {
        self.data.id
    }

    /// The event as SSE (`id:` and `data:` lines).
    pub(crate) fn sse(&self) -> Bytes {
        self.sse
            .get_or_init(|| http::sse_event(self.data.id, &self.data.body))
            .clone()
    }

    /// The event as a WebSocket text message.
    pub(crate) fn ws(&self) -> tokio_tungstenite::tungstenite::Utf8Bytes {
        self.ws
            .get_or_init(|| http::ws_event(self.data.id, &self.data.body).into())
            .clone()
    }
}

/// The smallest event id of millisecond `ms`.
pub(crate) fn id_floor(ms: u64) -> EventId {
    EventId::from_u128(u128::from(ms) << 80)
}

/// The id just below `id`, so that "after it" includes `id`.
pub(crate) fn id_before(id: EventId) -> EventId {
    EventId::from_u128(id.as_u128().saturating_sub(1))
}

/// The id just above `id`, so that "before it" includes `id`.
pub(crate) fn id_after(id: EventId) -> EventId {
    EventId::from_u128(id.as_u128().saturating_add(1))
}

/// The millisecond an event id names (UUID v7, and v8 children carry their parent's).
pub(crate) fn id_ms(id: EventId) -> u64 {
    (id.as_u128() >> 80) as u64
}

#[cfg(test)]
mod tests;
