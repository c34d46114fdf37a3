//! The pieces of the stream protocol that need no socket: paths, replay points, frames.

use http::HeaderMap;

use super::http::{Start, parse_path, percent_decode, sse_event, start_of, ws_event};
use super::{id_before, id_floor, id_ms};
use crate::store::EventId;

#[test]
fn stream_paths_have_three_segments() {
    assert_eq!(
        parse_path("/streams/shop/orders/live"),
        Some(("shop", "orders", "live"))
    );
    for bad in [
        "/streams/shop/orders",
        "/streams/shop/orders/live/more",
        "/streams//orders/live",
        "/hooks/shop/orders",
    ] {
        assert_eq!(parse_path(bad), None, "{bad}");
    }
}

fn start(headers: &[(&str, &str)], query: &str) -> Result<Option<EventId>, String> {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    start_of(&h, query).map(|s| match s {
        Start::Live => None,
        Start::After(id) => Some(id),
    })
}

#[test]
fn replay_points() {
    let id = EventId::parse_str("019ad735-87e8-7000-8000-000000000001").unwrap();
    assert_eq!(start(&[], ""), Ok(None), "live without a replay point");
    assert_eq!(
        start(&[("last-event-id", &id.to_string())], ""),
        Ok(Some(id)),
        "Last-Event-ID: after it"
    );
    assert_eq!(
        start(&[], &format!("from={id}")),
        Ok(Some(id_before(id))),
        "from: it included"
    );
    let since = start(&[], "since=2026-01-31T12%3A00%3A00%2B01%3A00")
        .unwrap()
        .unwrap();
    assert_eq!(id_ms(super::id_after(since)), 1_769_857_200_000);
    assert_eq!(since, id_before(id_floor(1_769_857_200_000)));
    assert_eq!(
        start(&[("last-event-id", "x")], "").unwrap_err(),
        "Last-Event-ID \"x\" is not an event id"
    );
    assert_eq!(
        start(&[], &format!("from={id}&since=2026-01-01T00:00:00Z")).unwrap_err(),
        "give one of Last-Event-ID, from and since"
    );
}

#[test]
fn query_values_are_percent_decoded() {
    assert_eq!(percent_decode("a%20b+c"), "a b c");
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("%zz"), "%zz");
    assert_eq!(percent_decode("plain"), "plain");
}

#[test]
fn an_event_is_its_id_and_its_body_as_data_lines() {
    let id = EventId::parse_str("019ad735-87e8-7000-8000-000000000001").unwrap();
    assert_eq!(
        &sse_event(id, b"{\"a\":1}")[..],
        b"id: 019ad735-87e8-7000-8000-000000000001\ndata: {\"a\":1}\n\n"
    );
    assert_eq!(
        &sse_event(id, b"one\r\ntwo")[..],
        b"id: 019ad735-87e8-7000-8000-000000000001\ndata: one\ndata: two\n\n",
        "each line of the body is a data line"
    );
    assert_eq!(
        ws_event(id, b"{\"a\":1}"),
        r#"{"data":{"a":1},"id":"019ad735-87e8-7000-8000-000000000001"}"#
    );
    assert_eq!(
        ws_event(id, b"plain text"),
        r#"{"data":"plain text","id":"019ad735-87e8-7000-8000-000000000001"}"#,
        "a body that is not JSON is a string"
    );
}

fn streams() -> (std::sync::Arc<super::Streams>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn crate::store::Store> = std::sync::Arc::new(
        crate::store::embedded::EmbeddedStore::open(&dir.path().join("store"), None).unwrap(),
    );
    let s = super::Streams::new(
        store,
        &prometheus::Registry::new(),
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    (s, dir)
}

#[tokio::test]
async fn the_watermark_stays_below_every_id_still_being_appended() {
    let (s, _dir) = streams();
    let idle = s.watermark();
    let a = s.mint("ns/b");
    let b = s.mint("ns/b");
    assert!(idle < a.id() && a.id() < b.id(), "ids come out in order");
    assert_eq!(s.watermark(), a.id(), "the oldest in flight bounds reads");
    let b_id = b.id();
    b.done();
    assert_eq!(s.watermark(), a.id(), "a later commit does not move it");
    a.done();
    let w = s.watermark();
    assert!(w > b_id, "nothing in flight: above every id minted so far");
}

#[tokio::test]
async fn an_append_dropped_midway_keeps_its_id_in_flight_a_while() {
    let (s, _dir) = streams();
    let t = s.mint("ns/b");
    let id = t.id();
    drop(t);
    assert_eq!(s.watermark(), id, "the store may still commit it");
    // Then it goes (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.watermark() <= id {
        assert!(
            std::time::Instant::now() < deadline,
            "the id stayed in flight"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn conn(id: u64) -> std::sync::Arc<super::ConnState> {
    std::sync::Arc::new(super::ConnState {
        id,
        bridge: "ns/b".into(),
        stream: "live".into(),
        stalled_since: Default::default(),
        behind: Default::default(),
        cursor: Default::default(),
        stall_ms: 1000,
        cfg: serde_json::from_value(serde_json::json!({
            "name": "live", "bufferEvents": 2, "stallTimeoutMs": 1000,
            "retentionMs": 1000, "heartbeatMs": 1000
        }))
        .unwrap(),
        reason: Default::default(),
        cut: Default::default(),
        closer: Default::default(),
        last_sent: Default::default(),
    })
}

fn items(ids: std::ops::Range<u128>) -> Vec<crate::store::StreamItem> {
    ids.map(|i| crate::store::StreamItem {
        id: EventId::from_u128(i),
        received_at_ms: 0,
        body: bytes::Bytes::from(format!("{{\"n\":{i}}}")),
    })
    .collect()
}

/// The hub's ring: each live connection reads every event once, in order, at its own
/// cursor; one more than its buffer behind leaves the fan-out (it catches up from the
/// store); the ring lets go of what every connection within its buffer has read, and keeps
/// no more than the largest buffer.
#[test]
fn the_ring_serves_each_connection_at_its_cursor_and_stays_bounded() {
    use std::collections::VecDeque;
    let hub = super::hub::Hub::new("ns/b".into(), EventId::from_u128(0));
    let (fast, slow) = (conn(1), conn(2));
    let (mut f, upto) = hub.subscribe(&fast, 8);
    assert_eq!(
        upto,
        EventId::from_u128(0),
        "nothing handed out before it joined"
    );
    let (mut s, _) = hub.subscribe(&slow, 2);
    hub.dispatch(items(1..3));
    let mut out = VecDeque::new();
    assert_eq!(hub.read(&fast, &mut f, 64, &mut out).ok(), Some(2));
    let ids: Vec<u128> = out.iter().map(|i| i.id().as_u128()).collect();
    assert_eq!(ids, [1, 2]);
    assert!(!hub.has(f), "the fast one read everything");
    // The slow one has 2 waiting (its buffer): it stays. One more and it is out.
    hub.dispatch(items(3..4));
    let mut slow_out = VecDeque::new();
    assert!(hub.read(&slow, &mut s, 64, &mut slow_out).is_err());
    assert!(slow_out.is_empty());
    // The fast one goes on (5 waiting, within its 8); reads at most `max` at a time.
    hub.dispatch(items(4..8));
    out.clear();
    assert_eq!(hub.read(&fast, &mut f, 3, &mut out).ok(), Some(3));
    assert_eq!(hub.read(&fast, &mut f, 64, &mut out).ok(), Some(2));
    let ids: Vec<u128> = out.iter().map(|i| i.id().as_u128()).collect();
    assert_eq!(ids, [3, 4, 5, 6, 7]);
    // A connection that joins now starts at the ring's end, after the last event.
    let late = conn(3);
    let (mut l, upto) = hub.subscribe(&late, 4);
    assert_eq!(upto, EventId::from_u128(7));
    assert!(!hub.has(l));
    hub.dispatch(items(8..9));
    out.clear();
    assert_eq!(hub.read(&late, &mut l, 64, &mut out).ok(), Some(1));
    assert_eq!(out[0].id().as_u128(), 8);
    // With no connection left the ring keeps nothing; a cursor behind it is an overflow.
    hub.unsubscribe(1);
    hub.unsubscribe(3);
    hub.dispatch(items(9..20));
    let mut again = 0u64;
    assert!(hub.read(&fast, &mut again, 64, &mut out).is_err());
}

/// A connection that caught up from the store joins the ring where the hub has not yet
/// handed out what it read: the ring then repeats events it has sent. Taken one at a time
/// or in one write, each event goes once and in id order.
#[tokio::test]
async fn what_the_ring_repeats_after_a_catch_up_is_not_sent_again() {
    use crate::store::StreamRead;
    use crate::store::contract::{T0, new_event};
    let (s, _dir) = streams();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            s.store
                .append(new_event("ns/b", T0 + i, &["d"]))
                .await
                .unwrap()
                .id,
        );
    }
    let read = |after: Option<EventId>| StreamRead {
        bridge: "ns/b".into(),
        after,
        before: None,
        limit: 64,
    };
    let all = s.store.stream_events(read(None)).await.unwrap().items;
    assert_eq!(all.len(), 4);
    // The hub (not running here: the test hands it its rounds) has handed out nothing.
    let hub = std::sync::Arc::new(super::hub::Hub::new("ns/b".into(), EventId::nil()));
    let slot = s.take_slot("live", "anyone", 0, 0).unwrap();
    let settings = super::consumer::Settings {
        buffer: 8,
        heartbeat: std::time::Duration::from_secs(60),
        events_per_second: 0,
    };
    let mut c = super::consumer::Consumer::new(
        s.clone(),
        hub.clone(),
        conn(1),
        Some(EventId::nil()),
        settings,
        slot,
    );
    let mut sent = Vec::new();
    // Catching up, the connection reads all four from the store and joins the ring;
    // three are sent.
    for _ in 0..3 {
        match c.next().await {
            Some(super::consumer::Out::Event(item)) => sent.push(item.id()),
            _ => panic!("an event from the store"),
        }
    }
    // The hub's round brings all four: the fourth goes from what was read, and the ring's
    // repeats are skipped.
    hub.dispatch(all.clone());
    while let Some(item) = c.next_now() {
        sent.push(item.id());
    }
    assert_eq!(sent, ids, "each once, in order (in one write)");
    // And one at a time, after another round that overlaps.
    let more = s
        .store
        .append(new_event("ns/b", T0 + 9, &["d"]))
        .await
        .unwrap()
        .id;
    hub.dispatch(
        s.store
            .stream_events(read(Some(ids[1])))
            .await
            .unwrap()
            .items,
    );
    match c.next().await {
        Some(super::consumer::Out::Event(item)) => assert_eq!(item.id(), more),
        _ => panic!("the new event"),
    }
    assert!(c.next_now().is_none(), "nothing else is queued");
}
