//! One connection's view of a stream: replay from the store, then the live fan-out;
//! heartbeats, pacing and the slow-consumer cut. The transport (SSE or WebSocket) asks for
//! the next [`Out`] whenever its socket can take more.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::hub::{Hub, Overflow};
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
    /// In the live fan-out at ring sequence `seq`; events up to `upto` (handed out before
    /// it joined) are read from the store first.
    Live { seq: u64, upto: EventId },
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
    /// When something was last returned: a heartbeat is due `heartbeat` after it.
    last_out: Instant,
    /// One timer, one wait on the cut and one on shutdown for the connection's life: a
    /// wait for events registers nothing else (a round wakes every connection).
    timer: Pin<Box<Sleep>>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
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
                let (seq, last) = hub.subscribe(&conn, settings.buffer);
                (Mode::Live { seq, upto: last }, last)
            }
        };
        let now = Instant::now();
        let cut = Box::pin(conn.cut.clone().cancelled_owned());
        let shutdown = Box::pin(streams.shutdown.clone().cancelled_owned());
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
            last_out: now,
            timer: Box::pin(tokio::time::sleep_until(now + settings.heartbeat)),
            cut,
            shutdown,
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
        self.emit(out)
    }

    /// The next event if one can be sent at once (queued, within the pace), without
    /// waiting or reading the store: a transport takes these into the same write.
    pub(crate) fn next_now(&mut self) -> Option<Arc<Item>> {
        if self.done || self.conn.reason().is_some() {
            return None;
        }
        loop {
            self.skip_sent();
            if !self.pending.is_empty() {
                break;
            }
            let Mode::Live { seq, upto } = &mut self.mode else {
                return None;
            };
            if *upto > self.cursor {
                return None;
            }
            let mut at = *seq;
            match self.hub.read(&self.conn, &mut at, PAGE, &mut self.pending) {
                Err(Overflow) => {
                    self.mode = Mode::CatchUp;
                    return None;
                }
                Ok(n) => {
                    *seq = at;
                    if n == 0 {
                        return None;
                    }
                }
            }
        }
        if let Some((gap, next)) = &mut self.pace {
            let now = Instant::now();
            if *next > now || self.pending.is_empty() {
                return None;
            }
            *next = now.max(*next) + *gap;
        }
        let item = self.pending.pop_front()?;
        self.cursor = item.id();
        match self.emit(Some(Out::Event(item))) {
            Some(Out::Event(item)) => Some(item),
            _ => None,
        }
    }

    /// Drop queued events at or below the cursor: what the ring holds may overlap what was
    /// read from the store while catching up, and those were sent already.
    fn skip_sent(&mut self) {
        while self.pending.front().is_some_and(|i| i.id() <= self.cursor) {
            self.pending.pop_front();
        }
    }

    fn emit(&mut self, out: Option<Out>) -> Option<Out> {
        let behind = !self.pending.is_empty()
            || match &self.mode {
                Mode::CatchUp => true,
                Mode::Live { seq, upto } => self.hub.has(*seq) || *upto > self.cursor,
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
        if out.is_some() {
            self.last_out = Instant::now();
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
            self.skip_sent();
            if !self.pending.is_empty() {
                if let Some((gap, next)) = &mut self.pace {
                    let now = Instant::now();
                    if *next > now {
                        let until = *next;
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => {}
                            _ = self.cut.as_mut() => continue,
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
                        let (seq, upto) = self.hub.subscribe(&self.conn, self.buffer);
                        self.mode = Mode::Live { seq, upto };
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
                Mode::Live { seq, .. } => {
                    let mut at = *seq;
                    match self.hub.read(&self.conn, &mut at, PAGE, &mut self.pending) {
                        Err(Overflow) => {
                            // Too far behind the ring: catch up from the store.
                            self.mode = Mode::CatchUp;
                            continue;
                        }
                        Ok(n) => {
                            if let Mode::Live { seq, .. } = &mut self.mode {
                                *seq = at;
                            }
                            if n > 0 {
                                continue;
                            }
                        }
                    }
                    // Nothing queued: wait for the next round, registered before looking
                    // again so that a round in between is not missed.
                    let news = self.hub.news.notified();
                    tokio::pin!(news);
                    news.as_mut().enable();
                    if self.hub.has(at) {
                        continue;
                    }
                    // The timer is moved only when it went off early or would go off late,
                    // not on every wait.
                    let due = self.last_out + self.heartbeat;
                    if self.timer.deadline() > due || self.timer.is_elapsed() {
                        self.timer.as_mut().reset(due);
                    }
                    tokio::select! {
                        _ = news => {}
                        _ = self.timer.as_mut() => {
                            if Instant::now() >= self.last_out + self.heartbeat {
                                return Some(Out::Heartbeat);
                            }
                        }
                        _ = self.cut.as_mut() => {}
                        _ = self.shutdown.as_mut() => {}
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
