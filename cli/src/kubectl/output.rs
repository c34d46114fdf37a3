//! Tables like kubectl's, or the JSON/YAML the admin API answered.

use std::io::Write;

use serde_json::Value;

use super::{Format, KubectlError};

fn io(e: std::io::Error) -> KubectlError {
    KubectlError::Api(format!("write: {e}"))
}

/// Percent-encodes a path or query value.
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn structured(out: &mut dyn Write, v: &Value, format: Format) -> Result<bool, KubectlError> {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(v).unwrap_or_default();
            writeln!(out, "{text}").map_err(io)?;
            Ok(true)
        }
        Format::Yaml => {
            let text = serde_yaml::to_string(v).unwrap_or_default();
            write!(out, "{text}").map_err(io)?;
            Ok(true)
        }
        Format::Wide => Ok(false),
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The events list: `ID BRIDGE STATUS RECEIVED` (wide adds `POOL REASON`).
pub fn events(
    out: &mut dyn Write,
    list: &[Value],
    format: Option<Format>,
) -> Result<(), KubectlError> {
    if let Some(f) = format
        && structured(out, &Value::from(list.to_vec()), f)?
    {
        return Ok(());
    }
    let wide = format == Some(Format::Wide);
    if list.is_empty() {
        writeln!(out, "No events.").map_err(io)?;
        return Ok(());
    }
    let mut rows = vec![if wide {
        vec!["ID", "BRIDGE", "STATUS", "RECEIVED", "POOL", "REASON"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    } else {
        vec!["ID", "BRIDGE", "STATUS", "RECEIVED"]
            .into_iter()
            .map(String::from)
            .collect()
    }];
    for e in list {
        let mut row = vec![
            s(&e["id"]).to_string(),
            s(&e["bridge"]).to_string(),
            s(&e["status"]).to_string(),
            s(&e["receivedAt"]).to_string(),
        ];
        if wide {
            row.push(s(&e["pool"]).to_string());
            row.push(s(&e["reason"]).to_string());
        }
        rows.push(row);
    }
    table(out, &rows)
}

fn table(out: &mut dyn Write, rows: &[Vec<String>]) -> Result<(), KubectlError> {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == cols {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end()).map_err(io)?;
    }
    Ok(())
}

/// One event: its facts, then per destination its attempts.
pub fn event(out: &mut dyn Write, v: &Value, format: Option<Format>) -> Result<(), KubectlError> {
    if let Some(f) = format
        && structured(out, v, f)?
    {
        return Ok(());
    }
    let mut w = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(w, "Event:     {}", s(&v["id"]));
    let _ = writeln!(w, "Bridge:    {}", s(&v["bridge"]));
    let _ = writeln!(w, "Pool:      {}", s(&v["pool"]));
    let _ = writeln!(w, "Received:  {}", s(&v["receivedAt"]));
    let _ = writeln!(w, "Status:    {}", s(&v["status"]));
    if let Some(r) = v["reason"].as_str() {
        let _ = writeln!(w, "Reason:    {r}");
    }
    let _ = writeln!(w, "Deliveries:");
    for d in v["deliveries"].as_array().into_iter().flatten() {
        let _ = writeln!(
            w,
            "  {}  {}  next try {}",
            s(&d["destination"]),
            s(&d["status"]),
            s(&d["dueAt"])
        );
        for (i, a) in d["attempts"].as_array().into_iter().flatten().enumerate() {
            let code = a["statusCode"]
                .as_u64()
                .map_or("-".to_string(), |c| c.to_string());
            let _ = writeln!(
                w,
                "    #{} {}  {}  {} ms  {}",
                i + 1,
                s(&a["at"]),
                code,
                a["durationMs"],
                a["error"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(actions) = v["actions"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(w, "Actions:");
        for a in actions {
            let _ = writeln!(
                w,
                "  {}  {} via {}",
                a["atMs"],
                s(&a["action"]),
                s(&a["via"])
            );
        }
    }
    write!(out, "{w}").map_err(io)
}

/// An action's answer: the JSON/YAML, or one line.
pub fn done(
    out: &mut dyn Write,
    v: &Value,
    format: Option<Format>,
    line: &str,
) -> Result<(), KubectlError> {
    if let Some(f) = format
        && structured(out, v, f)?
    {
        return Ok(());
    }
    writeln!(out, "{line}").map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(list: &[Value], f: Option<Format>) -> String {
        let mut out = Vec::new();
        events(&mut out, list, f).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn events_print_as_a_table_json_yaml_or_wide() {
        let list = [
            json!({"id": "0190a", "bridge": "shop/orders", "status": "dead",
            "receivedAt": "2026-12-02T05:00:00Z", "pool": "shop/a", "reason": "410"}),
        ];
        let t = render(&list, None);
        assert_eq!(
            t,
            "ID      BRIDGE        STATUS   RECEIVED\n0190a   shop/orders   dead     2026-12-02T05:00:00Z\n"
        );
        let w = render(&list, Some(Format::Wide));
        assert!(
            w.starts_with(
                "ID      BRIDGE        STATUS   RECEIVED               POOL     REASON\n"
            ),
            "{w}"
        );
        let j: Value = serde_json::from_str(&render(&list, Some(Format::Json))).unwrap();
        assert_eq!(j[0]["id"], "0190a");
        let y: Value = serde_yaml::from_str(&render(&list, Some(Format::Yaml))).unwrap();
        assert_eq!(y[0]["bridge"], "shop/orders");
        assert_eq!(render(&[], None), "No events.\n");
    }

    #[test]
    fn values_are_encoded() {
        assert_eq!(encode("shop/orders"), "shop/orders");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
