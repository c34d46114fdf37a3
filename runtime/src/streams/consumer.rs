//! One connection's view of a stream: replay from the store, then the live fan-out;
//! heartbeats, pacing and the slow-consumer cut. The transport (SSE or WebSocket) asks for
//! the next [`Out`] whenever its socket can take more.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::hub::Hub;
use super::{ConnState, Item, PAGE, Slot, Streams};
use crate::store::{EventId, StreamRead};
use crate::sync::lock;

/// What a connection sends next.
pub(crate) enum Out {
    Event(Arc<Item>),
    Heartbeat,
    /// The last message: why the worker ends the stream.
    End(String),
}

enum Mode {
    /// Reading from the store up to the watermark, then joining the live fan-out.
    CatchUp,
    /// In the live fan-out; events up to `upto` (handed out before it joined) are read
    /// from the store first.
    Live {
        rx: mpsc::Receiver<Arc<Item>>,
        upto: EventId,
    },
}

pub(crate) struct Consumer {
    streams: Arc<Streams>,
    hub: Arc<Hub>,
    pub(crate) conn: Arc<ConnState>,
    /// The last id sent (or the exclusive start).
    cursor: EventId,
    pending: VecDeque<Arc<Item>>,
    mode: Mode,
    buffer: usize,
    heartbeat: Duration,
    /// Time between two events (`eventsPerSecond`), and when the next may go.
    pace: Option<(Duration, Instant)>,
    done: bool,
    /// This stream's `events_sent` counter (looked up once, not per event).
    sent: prometheus::IntCounter,
    _slot: Slot,
}

pub(crate) struct Settings {
    pub buffer: usize,
    pub heartbeat: Duration,
    pub events_per_second: u32,
}

impl Consumer {
    /// A consumer from `start` (exclusive; replayed from the store), or live from now.
    pub(crate) fn new(
        streams: Arc<Streams>,
        hub: Arc<Hub>,
        conn: Arc<ConnState>,
        start: Option<EventId>,
        settings: Settings,
        slot: Slot,
    ) -> Self {
        let (mode, cursor) = match start {
            Some(s) => (Mode::CatchUp, s),
            None => {
                let (rx, last) = hub.subscribe(&conn, settings.buffer);
                (Mode::Live { rx, upto: last }, last)
            }
        };
        streams.register(&conn);
        let sent = streams
            .metrics
            .events_sent
            .with_label_values(&[&conn.bridge, &conn.stream]);
        Consumer {
            streams,
            hub,
            conn,
            cursor,
            pending: VecDeque::new(),
            mode,
            buffer: settings.buffer,
            heartbeat: settings.heartbeat,
            pace: (settings.events_per_second > 0).then(|| {
                (
                    Duration::from_secs(1) / settings.events_per_second,
                    Instant::now(),
                )
            }),
            done: false,
            sent,
            _slot: slot,
        }
    }

    /// The next message, or None after the last. Cancel-safe: nothing is taken before it
    /// is returned.
    pub(crate) async fn next(&mut self) -> Option<Out> {
        if self.done {
            return None;
        }
        self.conn.polled();
        let out = self.next_inner().await;
        let behind = !self.pending.is_empty()
            || match &self.mode {
                Mode::CatchUp => true,
                Mode::Live { rx, upto } => !rx.is_empty() || *upto > self.cursor,
            };
        self.conn.behind.store(behind, Ordering::Relaxed);
        self.conn.handed();
        match &out {
            Some(Out::Event(item)) => {
                *lock(&self.conn.last_sent) = Some(item.id());
                self.sent.inc();
            }
            Some(Out::End(_)) => self.done = true,
            _ => {}
        }
        out
    }

    async fn next_inner(&mut self) -> Option<Out> {
        loop {
            if let Some(reason) = self.conn.reason() {
                return Some(Out::End(reason));
            }
            if self.streams.shutdown.is_cancelled() {
                return Some(Out::End("the worker is shutting down".into()));
            }
            while self.pending.front().is_some_and(|i| i.id() <= self.cursor) {
                self.pending.pop_front();
            }
            if !self.pending.is_empty() {
                if let Some((gap, next)) = &mut self.pace {
                    let now = Instant::now();
                    if *next > now {
                        tokio::select! {
                            _ = tokio::time::sleep_until(*next) => {}
                            _ = self.conn.cut.cancelled() => continue,
                        }
                    }
                    *next = Instant::now().max(*next) + *gap;
                }
                let item = self.pending.pop_front()?;
                self.cursor = item.id();
                return Some(Out::Event(item));
            }
            match &mut self.mode {
                Mode::CatchUp => {
                    let before = self.streams.watermark();
                    let page = match self.read(self.cursor, before).await {
                        Ok(p) => p,
                        Err(e) => return Some(Out::End(e)),
                    };
                    let full = page.len() >= PAGE;
                    self.pending.extend(page);
                    if !full {
                        // Caught up with the watermark: join the live fan-out.
                        let (rx, upto) = self.hub.subscribe(&self.conn, self.buffer);
                        self.mode = Mode::Live { rx, upto };
                    }
                }
                Mode::Live { upto, .. } if *upto > self.cursor => {
                    // Handed out before this connection joined: from the store.
                    let upto = *upto;
                    let page = match self.read(self.cursor, super::id_after(upto)).await {
                        Ok(p) => p,
                        Err(e) => return Some(Out::End(e)),
                    };
                    if page.is_empty() {
                        self.cursor = self.cursor.max(upto);
                    }
                    self.pending.extend(page);
                }
                Mode::Live { rx, .. } => {
                    // Queued events first, without timers or waiters: under load most
                    // calls end here, so a busy fan-out costs no timer or token churn.
                    match rx.try_recv() {
                        Ok(item) => {
                            self.pending.push_back(item);
                            continue;
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            self.mode = Mode::CatchUp;
                            continue;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => {}
                    }
                    tokio::select! {
                        item = rx.recv() => match item {
                            Some(item) => self.pending.push_back(item),
                            None => {
                                // The queue overflowed and the hub let go of it: catch
                                // up from the store.
                                self.mode = Mode::CatchUp;
                            }
                        },
                        _ = tokio::time::sleep(self.heartbeat) => return Some(Out::Heartbeat),
                        _ = self.conn.cut.cancelled() => {}
                        _ = self.streams.shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Events after `after` and before `before` from the store (at most a page).
    async fn read(&self, after: EventId, before: EventId) -> Result<Vec<Arc<Item>>, String> {
        let read = StreamRead {
            bridge: self.conn.bridge.clone(),
            after: Some(after),
            before: Some(before),
            limit: PAGE,
        };
        match self.streams.store.stream_events(read).await {
            Ok(p) => Ok(p.items.into_iter().map(Item::new).collect()),
            Err(e) => {
                tracing::warn!(bridge = %self.conn.bridge, error = %e, "stream read failed");
                self.conn.cut(
                    "store_error",
                    "the store cannot be read: reconnect later".into(),
                    &self.streams.metrics,
                );
                Err("the store cannot be read: reconnect later".into())
            }
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.conn.id);
        self.streams
            .metrics
            .connections
            .with_label_values(&[&self.conn.bridge, &self.conn.stream])
            .dec();
        self.conn.closer.cancel();
    }
}
