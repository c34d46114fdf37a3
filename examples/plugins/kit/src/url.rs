//! Percent-encoding for path segments and query strings: just enough for plugins,
//! without pulling in a URL crate.

/// Percent-encodes everything but RFC 3986 unreserved characters, so the result is
/// safe as one path segment or one query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`). Invalid escapes are
/// kept as they are; invalid UTF-8 is replaced.
pub fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded value of query parameter `name` in `query` (`a=1&b=2`), if present.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k, true) == name).then(|| decode(v, true))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(encode("c loyal/1"), "c%20loyal%2F1");
        assert_eq!(decode("c%20loyal%2F1", false), "c loyal/1");
        assert_eq!(decode("100%", false), "100%");
        assert_eq!(decode("%zz+", true), "%zz ");
        let q = Some("a=1&url=http%3A%2F%2F127.0.0.1%3A9%2Fx&b");
        assert_eq!(
            query_param(q, "url").as_deref(),
            Some("http://127.0.0.1:9/x")
        );
        assert_eq!(query_param(q, "b").as_deref(), Some(""));
        assert_eq!(query_param(q, "c"), None);
    }
}
