//! The benchmark's events: 1 KiB JSON objects carrying a sequence number, which the sink
//! reads back to match each arrival with its send.

use bytes::Bytes;

/// Size of every event body.
pub const EVENT_BYTES: usize = 1024;

/// Header that carries the sequence number too (for systems that forward headers).
pub const SEQ_HEADER: &str = "x-bench-seq";

/// A 1 KiB JSON event: `{"seq":N,"kind":"order","amount":…,"customer":{…},"pad":"xxx…"}`.
/// Every event passes scenario 4's filter (`amount` is always 1000 or more), so each one
/// pays for the filter and the template.
pub fn event(seq: u64) -> Bytes {
    let head = format!(
        r#"{{"seq":{seq},"kind":"order","amount":{},"currency":"EUR","customer":{{"id":"c-{}","tier":"gold","email":"c{}@example.com"}},"pad":""#,
        1000 + seq % 9000,
        seq % 997,
        seq % 997
    );
    let tail = "\"}";
    let pad = EVENT_BYTES.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(EVENT_BYTES);
    s.push_str(&head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str(tail);
    Bytes::from(s)
}

/// The sequence number in a body: the integer after the first `"seq":` (whitespace allowed,
/// a quoted number accepted too). Templates and plugins may reorder keys; this finds it
/// anywhere.
pub fn seq_in_body(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"seq\"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)?;
    let mut rest = &body[at + KEY.len()..];
    let skip = |r: &mut &[u8]| {
        while let [b' ' | b'\t' | b'\n' | b'\r', tail @ ..] = *r {
            *r = tail;
        }
    };
    skip(&mut rest);
    rest = rest.strip_prefix(b":")?;
    skip(&mut rest);
    if let Some(r) = rest.strip_prefix(b"\"") {
        rest = r;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_kib_of_valid_json() {
        for seq in [0, 7, 123_456_789_012] {
            let e = event(seq);
            assert_eq!(e.len(), EVENT_BYTES);
            let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
            assert_eq!(v["seq"], seq);
            assert_eq!(seq_in_body(&e), Some(seq));
        }
    }

    #[test]
    fn seq_is_found_after_reformatting() {
        assert_eq!(
            seq_in_body(br#"{"pad":"x","seq": 42,"tagged":true}"#),
            Some(42)
        );
        assert_eq!(seq_in_body(br#"{"seq" : "17"}"#), Some(17));
        assert_eq!(seq_in_body(br#"{"sequence":1}"#), None);
        assert_eq!(seq_in_body(b""), None);
    }
}
