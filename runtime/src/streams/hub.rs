//! One bridge's live fan-out: one reader of the store, every live connection's queue fed
//! from it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tracing::warn;

use super::{ConnState, HELD_POLL, Item, PAGE, SHARED_POLL, Streams};
use crate::store::{EventId, StreamItem, StreamRead};
use crate::sync::lock;

/// How long a hub of a single worker's store sleeps when nothing wakes it (a safety net:
/// ingress wakes it on every commit).
const IDLE_POLL: Duration = Duration::from_secs(5);

pub(crate) struct Hub {
    bridge: String,
    wake: Notify,
    state: Mutex<State>,
}

struct State {
    /// The last event handed to the live queues.
    last: EventId,
    subs: HashMap<u64, Sub>,
}

struct Sub {
    tx: mpsc::Sender<Arc<Item>>,
    conn: Arc<ConnState>,
}

impl Hub {
    pub(crate) fn new(bridge: String, start: EventId) -> Self {
        Hub {
            bridge,
            wake: Notify::new(),
            state: Mutex::new(State {
                last: start,
                subs: HashMap::new(),
            }),
        }
    }

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Join the live fan-out with a queue of `capacity` events. Returns the queue and the
    /// last event handed out before it joined: everything after that comes through the
    /// queue, everything up to it is in the store.
    pub(crate) fn subscribe(
        &self,
        conn: &Arc<ConnState>,
        capacity: usize,
    ) -> (mpsc::Receiver<Arc<Item>>, EventId) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let mut st = lock(&self.state);
        st.subs.insert(
            conn.id,
            Sub {
                tx,
                conn: conn.clone(),
            },
        );
        (rx, st.last)
    }

    pub(crate) fn unsubscribe(&self, conn: u64) {
        lock(&self.state).subs.remove(&conn);
    }

    /// Hand events to every live queue, in order. A full queue leaves the fan-out (its
    /// connection catches up from the store); nobody waits for it.
    fn dispatch(&self, items: Vec<StreamItem>) {
        let mut st = lock(&self.state);
        for item in items {
            let item = Item::new(item);
            st.last = item.id();
            st.subs
                .retain(|_, sub| match sub.tx.try_send(item.clone()) {
                    Ok(()) => {
                        sub.conn.behind.store(true, Ordering::Relaxed);
                        true
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        sub.conn.behind.store(true, Ordering::Relaxed);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
        }
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
        let Some(s) = streams.upgrade() else { return };
        loop {
            let before = s.watermark();
            let read = StreamRead {
                bridge: hub.bridge.clone(),
                after: Some(hub.last()),
                before: Some(before),
                limit: PAGE,
            };
            match s.store.stream_events(read).await {
                Ok(page) => {
                    held = page.held.is_some();
                    let full = page.items.len() >= PAGE;
                    hub.dispatch(page.items);
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
                    held = true;
                    break;
                }
            }
        }
    }
}
