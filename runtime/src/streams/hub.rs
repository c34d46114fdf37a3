//! One bridge's live fan-out: one reader of the store, and one ring of recent events that
//! every live connection reads at its own cursor.
//!
//! Why a shared ring rather than a queue per connection: handing an event to a thousand
//! queues is a thousand pushes and a thousand wake-ups per event, on the cores ingress
//! needs; the ring is one push per event and one wake-up per connection per *round* (the
//! events of one store read), and a connection takes every event of a round at once, in
//! one write. Memory is bounded by the largest `buffer.maxEvents` of the bridge's live
//! connections, and events every connection has passed are let go at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

use super::{ConnState, HELD_POLL, Item, PAGE, SHARED_POLL, Streams};
use crate::store::{EventId, StreamItem, StreamRead};
use crate::sync::lock;

/// How long a hub of a single worker's store sleeps when nothing wakes it (a safety net:
/// ingress wakes it on every commit).
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Under a steady flow, the least time between two rounds: every round wakes every live
/// connection, so rounds are what the fan-out costs, and a round more often than this
/// would take the cores ingress needs. The first event after a quiet spell goes at once.
pub(crate) const ROUND_GAP: Duration = Duration::from_millis(10);
/// The most events handed out in one round (the rest go in the next, at once).
const ROUND_MAX: usize = 1024;
/// The most events the ring keeps for connections that have not read them, whatever the
/// connections' `buffer.maxEvents`.
const RING_MAX: usize = 65_536;

pub(crate) struct Hub {
    bridge: String,
    /// Ingress → hub: an event was committed.
    wake: Notify,
    /// Hub → connections: a round was added to the ring.
    pub(crate) news: Notify,
    /// The sequence number after the ring's last event (read without the lock).
    end: AtomicU64,
    state: Mutex<State>,
}

struct State {
    /// The last event handed to the ring.
    last: EventId,
    /// Recent events; `ring[0]` has sequence number `base`.
    ring: VecDeque<Arc<Item>>,
    base: u64,
    /// The live connections, with their `buffer.maxEvents`.
    subs: HashMap<u64, (Arc<ConnState>, usize)>,
}

/// A connection fell more than its buffer behind the ring (or behind what the ring kept):
/// it catches up from the store.
pub(crate) struct Overflow;

impl Hub {
    pub(crate) fn new(bridge: String, start: EventId) -> Self {
        Hub {
            bridge,
            wake: Notify::new(),
            news: Notify::new(),
            end: AtomicU64::new(0),
            state: Mutex::new(State {
                last: start,
                ring: VecDeque::new(),
                base: 0,
                subs: HashMap::new(),
            }),
        }
    }

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Join the live fan-out with a buffer of `buffer` events. Returns the connection's
    /// cursor in the ring and the last event handed out before it joined: everything
    /// after that comes through the ring, everything up to it is in the store.
    pub(crate) fn subscribe(&self, conn: &Arc<ConnState>, buffer: usize) -> (u64, EventId) {
        let mut st = lock(&self.state);
        let seq = st.base + st.ring.len() as u64;
        conn.cursor.store(seq, Ordering::Relaxed);
        st.subs.insert(conn.id, (conn.clone(), buffer.max(1)));
        (seq, st.last)
    }

    pub(crate) fn unsubscribe(&self, conn: u64) {
        lock(&self.state).subs.remove(&conn);
    }

    /// Whether the ring holds events at or after `seq`.
    pub(crate) fn has(&self, seq: u64) -> bool {
        self.end.load(Ordering::Acquire) > seq
    }

    /// Move up to `max` events from `*seq` on into `out`. Overflow (and the connection
    /// leaves the fan-out) when it is more than its buffer behind, or behind the ring.
    pub(crate) fn read(
        &self,
        conn: &ConnState,
        seq: &mut u64,
        max: usize,
        out: &mut VecDeque<Arc<Item>>,
    ) -> Result<usize, Overflow> {
        let mut st = lock(&self.state);
        let end = st.base + st.ring.len() as u64;
        let buffer = st.subs.get(&conn.id).map_or(0, |s| s.1) as u64;
        if *seq < st.base || end.saturating_sub(*seq) > buffer {
            st.subs.remove(&conn.id);
            return Err(Overflow);
        }
        let from = (*seq - st.base) as usize;
        let n = st.ring.len().saturating_sub(from).min(max);
        out.extend(st.ring.range(from..from + n).cloned());
        *seq += n as u64;
        conn.cursor.store(*seq, Ordering::Relaxed);
        Ok(n)
    }

    /// Add a round of events to the ring, in order, and wake the live connections. Nobody
    /// waits for a connection: one that falls too far behind finds out when it reads.
    pub(super) fn dispatch(&self, items: Vec<StreamItem>) {
        if items.is_empty() {
            return;
        }
        {
            let mut st = lock(&self.state);
            for item in items {
                let item = Item::new(item);
                st.last = item.id();
                st.ring.push_back(item);
            }
            // Keep what a live connection within its buffer may still read, and no more.
            let end = st.base + st.ring.len() as u64;
            let mut keep_from = end;
            let mut cap = 0usize;
            for (conn, buffer) in st.subs.values() {
                conn.behind.store(true, Ordering::Relaxed);
                let c = conn.cursor.load(Ordering::Relaxed);
                if end.saturating_sub(c) <= *buffer as u64 {
                    keep_from = keep_from.min(c);
                }
                cap = cap.max(*buffer);
            }
            let keep_from = keep_from.max(end.saturating_sub(cap.min(RING_MAX) as u64));
            while st.base < keep_from {
                st.ring.pop_front();
                st.base += 1;
            }
            self.end.store(end, Ordering::Release);
        }
        self.news.notify_waiters();
    }

    /// Move the start of the next read to `to` (never back).
    fn advance(&self, to: EventId) {
        let mut st = lock(&self.state);
        st.last = st.last.max(to);
    }

    fn last(&self) -> EventId {
        lock(&self.state).last
    }
}

/// Read what is new for the bridge whenever woken (or polled), and fan it out.
pub(crate) async fn run(hub: Arc<Hub>, streams: Weak<Streams>) {
    let mut held = false;
    let mut last_round: Option<Instant> = None;
    loop {
        let (shared_store, stop) = match streams.upgrade() {
            Some(s) => (s.shared_store, s.shutdown.clone()),
            None => return,
        };
        let wait = if held {
            HELD_POLL
        } else if shared_store {
            SHARED_POLL
        } else {
            IDLE_POLL
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = hub.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        // Right after a round, let events gather for the next one.
        if let Some(at) = last_round {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(at + ROUND_GAP) => {}
            }
        }
        let Some(s) = streams.upgrade() else { return };
        last_round = None;
        // One round: the pages read now, handed out together (up to ROUND_MAX events).
        let mut round: Vec<StreamItem> = Vec::new();
        let mut after = hub.last();
        loop {
            let before = s.watermark();
            let read = StreamRead {
                bridge: hub.bridge.clone(),
                after: Some(after),
                before: Some(before),
                limit: PAGE,
            };
            match s.store.stream_events(read).await {
                Ok(page) => {
                    held = page.held.is_some();
                    let full = page.items.len() >= PAGE;
                    if let Some(last) = page.items.last() {
                        after = last.id;
                        last_round = Some(Instant::now());
                    }
                    round.extend(page.items);
                    if full && round.len() < ROUND_MAX {
                        continue;
                    }
                    hub.dispatch(std::mem::take(&mut round));
                    if !full {
                        if !held {
                            // Nothing of this bridge below the watermark is left: the next
                            // read starts there, not at the bridge's last event (which
                            // other bridges' events may have followed by the thousand).
                            hub.advance(super::id_before(before));
                        }
                        break;
                    }
                }
                Err(e) => {
                    warn!(bridge = %hub.bridge, error = %e, "stream read failed");
                    hub.dispatch(std::mem::take(&mut round));
                    held = true;
                    break;
                }
            }
        }
    }
}
