//! Durations as users write them: `500ms`, `30s`, `15m`, `1h`, `1d`, `1h30m`.
//!
//! The same grammar is enforced by the CRD schema (a pattern) and by [`parse_duration`]
//! (local mode has no API server to enforce the schema).

use std::time::Duration;

/// The schema pattern for a duration; kept in step with [`parse_duration`].
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (write e.g. 500ms, 30s, 15m, 1h, 1d or 1h30m)")]
pub struct DurationError {
    pub input: String,
    pub why: &'static str,
}

/// Parse a duration such as `1h30m`. Units: `ms`, `s`, `m`, `h`, `d`. At least one
/// component; each is a whole number followed by a unit.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        input: input.to_string(),
        why,
    };
    if input.is_empty() {
        return Err(err("empty"));
    }
    let bytes = input.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err("expected a number"));
        }
        let n: u128 = input[start..i]
            .parse()
            .map_err(|_| err("number too large"))?;
        let unit_ms: u128 = if input[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let unit = match bytes.get(i) {
                Some(b's') => 1_000,
                Some(b'm') => 60_000,
                Some(b'h') => 3_600_000,
                Some(b'd') => 86_400_000,
                Some(_) => return Err(err("unknown unit")),
                None => return Err(err("missing unit")),
            };
            i += 1;
            unit
        };
        total = total
            .checked_add(n.checked_mul(unit_ms).ok_or_else(|| err("too large"))?)
            .ok_or_else(|| err("too large"))?;
    }
    let ms = u64::try_from(total).map_err(|_| err("too large"))?;
    Ok(Duration::from_millis(ms))
}

/// Format a duration back into the same grammar (largest units first).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{}", ms / size, unit));
            ms %= size;
        }
    }
    out
}

/// Parse a Kubernetes-style memory quantity (`64Mi`, `1Gi`, `500M`, `1048576`) into bytes.
pub fn parse_quantity_bytes(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid quantity {input:?}: expected a whole number"))?;
    let mult: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid quantity {input:?}: unknown suffix {suffix:?} (use Ki, Mi, Gi, k, M, G)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid quantity {input:?}: too large"))
}

/// The schema pattern for a memory quantity; kept in step with [`parse_quantity_bytes`].
pub const QUANTITY_PATTERN: &str = r"^[0-9]+(k|M|G|Ki|Mi|Gi|Ti)?$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (s, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            ("1m500ms", 60_500),
            ("0s", 0),
        ] {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
        }
    }

    #[test]
    fn rejects_bad_forms_with_reasons() {
        for (s, why) in [
            ("", "empty"),
            ("10", "missing unit"),
            ("1x", "unknown unit"),
            ("h", "expected a number"),
            ("1.5s", "unknown unit"),
            ("-1s", "expected a number"),
            ("1 s", "unknown unit"),
            (
                "99999999999999999999999999999999999999999d",
                "number too large",
            ),
            ("999999999999999999d", "too large"),
        ] {
            assert_eq!(parse_duration(s).unwrap_err().why, why, "{s}");
        }
    }

    #[test]
    fn pattern_and_parser_agree_on_samples() {
        // The schema pattern is used by the API server; the parser by local mode.
        let re = |s: &str| {
            // A tiny matcher for DURATION_PATTERN, to avoid a regex dependency here.
            let mut rest = s;
            if rest.is_empty() {
                return false;
            }
            while !rest.is_empty() {
                let d = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                if d == 0 {
                    return false;
                }
                rest = &rest[d..];
                let u = ["ms", "s", "m", "h", "d"]
                    .iter()
                    .find(|u| rest.starts_with(**u));
                match u {
                    Some(u) => rest = &rest[u.len()..],
                    None => return false,
                }
            }
            true
        };
        for s in ["1h30m", "500ms", "1x", "", "10", "1d2h3m4s5ms", "m"] {
            assert_eq!(re(s), parse_duration(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["1h30m", "500ms", "1d", "2m5s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity_bytes("64Mi").unwrap(), 64 << 20);
        assert_eq!(parse_quantity_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_quantity_bytes("4096").unwrap(), 4096);
        assert!(
            parse_quantity_bytes("64MB")
                .unwrap_err()
                .contains("unknown suffix")
        );
        assert!(
            parse_quantity_bytes("Mi")
                .unwrap_err()
                .contains("whole number")
        );
    }
}
