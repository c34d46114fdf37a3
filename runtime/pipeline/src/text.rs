//! Small text helpers shared by the stages: query strings, header values, percent-encoding.

use std::borrow::Cow;

/// The value of a header, repeated headers joined with `", "` (RFC 9110 §5.3).
/// Bytes that are not UTF-8 are replaced.
pub(crate) fn header_joined(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = String::from_utf8_lossy(v.as_bytes());
        match &mut out {
            None => out = Some(s.into_owned()),
            Some(o) => {
                o.push_str(", ");
                o.push_str(&s);
            }
        }
    }
    out
}

/// The first value of a header, as text.
pub(crate) fn header_first<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<Cow<'h, str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// Every header, lower-case name → joined value.
pub(crate) fn headers_map(headers: &http::HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(headers.keys_len());
    for name in headers.keys() {
        if let Some(v) = header_joined(headers, name.as_str()) {
            out.push((name.as_str().to_string(), v));
        }
    }
    out
}

/// `application/x-www-form-urlencoded` pairs of a query string, in order.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
}

/// The first value of a query parameter.
pub(crate) fn query_first(query: &str, name: &str) -> Option<String> {
    query_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Decode `+` and `%XX`; invalid escapes stay as they are.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters, so that a substituted
/// value stays inside one path segment or query value.
pub(crate) fn percent_encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Line and column (both from 1, columns in characters) of a byte offset.
pub(crate) fn line_col(s: &str, offset: usize) -> (usize, usize) {
    let before = &s[..offset.min(s.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Cut a message to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q: Vec<_> = query_pairs("?a=1&b=x+y%20z&c&a=2&bad=%zz%4").collect();
        assert_eq!(
            q,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "".into()),
                ("a".into(), "2".into()),
                ("bad".into(), "%zz%4".into())
            ]
        );
        assert_eq!(query_first("a=1&a=2", "a").as_deref(), Some("1"));
        assert_eq!(query_first("a=1", "b"), None);
    }

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        let mut s = String::new();
        percent_encode_into(&mut s, "a b/c?d=é~");
        assert_eq!(s, "a%20b%2Fc%3Fd%3D%C3%A9~");
    }

    #[test]
    fn positions() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("abc", 0), (1, 1));
    }

    #[test]
    fn joined_headers() {
        let mut h = http::HeaderMap::new();
        h.append("x-a", http::HeaderValue::from_static("1"));
        h.append("x-a", http::HeaderValue::from_static("2"));
        assert_eq!(header_joined(&h, "x-a").as_deref(), Some("1, 2"));
        assert_eq!(header_joined(&h, "X-A").as_deref(), Some("1, 2"));
        assert_eq!(header_joined(&h, "x-b"), None);
    }
}
