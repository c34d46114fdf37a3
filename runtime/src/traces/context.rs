//! W3C Trace Context (`traceparent`, `tracestate`) as plain values: parsed from an
//! inbound request, stored with the event, formatted for outgoing requests. No
//! OpenTelemetry types here: the store and the "off" path need none.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A trace id: 16 bytes, never all zero; 32 lowercase hex digits in headers and records.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub u128);

/// A span id: 8 bytes, never all zero; 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub u64);

impl TraceId {
    /// A random one (never zero).
    pub fn random() -> TraceId {
        TraceId(rand::random::<u128>().max(1))
    }
    /// 32 lowercase hex digits, not all zero.
    pub fn parse(s: &str) -> Option<TraceId> {
        lower_hex(s, 32)
            .then(|| u128::from_str_radix(s, 16).ok())
            .flatten()
            .filter(|v| *v != 0)
            .map(TraceId)
    }
}

impl SpanId {
    /// A random one (never zero).
    pub fn random() -> SpanId {
        SpanId(rand::random::<u64>().max(1))
    }
    /// 16 lowercase hex digits, not all zero.
    pub fn parse(s: &str) -> Option<SpanId> {
        lower_hex(s, 16)
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .filter(|v| *v != 0)
            .map(SpanId)
    }
}

/// Exactly `len` lowercase hex digits (the only form W3C Trace Context allows).
fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

macro_rules! hex_serde {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$t>::parse(&s).ok_or_else(|| serde::de::Error::custom(concat!("invalid ", $what)))
            }
        }
    };
}
hex_serde!(TraceId, "trace id");
hex_serde!(SpanId, "span id");

/// Longest `tracestate` kept (the W3C limit for what a vendor must propagate).
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// An event's place in a trace, stored with the event: every later span of the event
/// (steps, delivery attempts, after a restart too) is a child of `span_id`, the span that
/// accepted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The sampled flag: whether the trace is recorded.
    #[serde(default)]
    pub sampled: bool,
    /// The sender's `tracestate`, passed on unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// One span of an event's trace, as the attempt log records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanRef {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// A `traceparent` from a request: None when missing or invalid (a new trace starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
    pub state: Option<String>,
}

/// The W3C `traceparent` and `tracestate` of `headers`, when `traceparent` is valid
/// (version 00, or a later one read as 00 as the spec asks; never `ff`).
pub fn extract(headers: &http::HeaderMap) -> Option<Remote> {
    let mut values = headers.get_all("traceparent").iter();
    let tp = values.next()?.to_str().ok()?.trim();
    if values.next().is_some() {
        // Two traceparents: the spec says to start a new trace.
        return None;
    }
    let (trace_id, span_id, sampled) = parse_traceparent(tp)?;
    let state = tracestate(headers);
    Some(Remote {
        trace_id,
        span_id,
        sampled,
        state,
    })
}

/// `version-traceid-spanid-flags`: the ids and the sampled flag.
pub fn parse_traceparent(tp: &str) -> Option<(TraceId, SpanId, bool)> {
    let b = tp.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    if !lower_hex(tp.get(0..2)?, 2) {
        return None;
    }
    let version = u8::from_str_radix(tp.get(0..2)?, 16).ok()?;
    if version == 0xff {
        return None;
    }
    // Version 00 is exactly 55 characters; a later version may add fields after a `-`.
    if (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
        return None;
    }
    let trace_id = TraceId::parse(tp.get(3..35)?)?;
    let span_id = SpanId::parse(tp.get(36..52)?)?;
    let flags_hex = tp.get(53..55)?;
    if !lower_hex(flags_hex, 2) {
        return None;
    }
    let flags = u8::from_str_radix(flags_hex, 16).ok()?;
    Some((trace_id, span_id, flags & 1 == 1))
}

/// The request's `tracestate` (several headers join with `,`), when short enough and
/// printable; otherwise none (the spec lets a participant drop what it cannot keep).
fn tracestate(headers: &http::HeaderMap) -> Option<String> {
    let mut out = String::new();
    for v in headers.get_all("tracestate") {
        let v = v.to_str().ok()?.trim();
        if v.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(v);
    }
    (!out.is_empty() && out.len() <= MAX_TRACESTATE_BYTES).then_some(out)
}

/// The `traceparent` of a request sent from span `span_id` of trace `trace_id`.
pub fn traceparent(trace_id: TraceId, span_id: SpanId, sampled: bool) -> String {
    format!(
        "00-{trace_id}-{span_id}-{}",
        if sampled { "01" } else { "00" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_and_tracestate_are_taken() {
        let r = extract(&headers(&[
            ("traceparent", TP),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]))
        .unwrap();
        assert_eq!(r.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(r.span_id.to_string(), "00f067aa0ba902b7");
        assert!(r.sampled);
        assert_eq!(
            r.state.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(traceparent(r.trace_id, r.span_id, r.sampled), TP);
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(extract(&headers(&[("traceparent", bad)])), None, "{bad:?}");
        }
        assert_eq!(extract(&headers(&[])), None);
        // Two traceparents disagree: none is taken.
        assert_eq!(
            extract(&headers(&[("traceparent", TP), ("traceparent", TP)])),
            None
        );
    }

    #[test]
    fn a_later_version_is_read_as_00_and_flags_beyond_sampled_are_ignored() {
        let r = extract(&headers(&[(
            "traceparent",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02-more",
        )]))
        .unwrap();
        assert!(!r.sampled);
        assert_eq!(r.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_tracestate_too_long_is_dropped_not_the_trace() {
        let long = format!("k={}", "v".repeat(MAX_TRACESTATE_BYTES));
        let r = extract(&headers(&[("traceparent", TP), ("tracestate", &long)])).unwrap();
        assert_eq!(r.state, None);
    }

    #[test]
    fn the_stored_form_is_hex_and_rejects_garbage() {
        let c = TraceContext {
            trace_id: TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736),
            span_id: SpanId(0xf067aa0ba902b7),
            sampled: true,
            state: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                               "spanId": "00f067aa0ba902b7", "sampled": true})
        );
        assert_eq!(serde_json::from_value::<TraceContext>(v).unwrap(), c);
        assert!(
            serde_json::from_value::<TraceContext>(
                serde_json::json!({"traceId": "zz", "spanId": "00f067aa0ba902b7"})
            )
            .is_err()
        );
    }

    #[test]
    fn random_ids_are_never_zero() {
        for _ in 0..100 {
            assert_ne!(TraceId::random().0, 0);
            assert_ne!(SpanId::random().0, 0);
        }
    }
}
