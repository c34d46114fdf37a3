//! The manifests under `examples/`, made to run in a test's namespace on the e2e
//! cluster: every object moves to the test's namespace, a Plugin's local `file` source
//! becomes an `http` source served by the tests' file server (with its real sha256),
//! and the examples' stand-in outside service `http://127.0.0.1:9999` becomes a sink.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use super::http::{FileServer, Sink};

/// The stand-in URL the examples use for services outside the cluster.
pub const OUTSIDE: &str = "http://127.0.0.1:9999";

/// Read `examples/<rel>` and rewrite it (see the module docs). Returns a YAML stream.
pub fn load(rel: &str, ns: &str, files: &FileServer, sink: &Sink) -> Result<String> {
    let path = super::repo().join("examples").join(rel);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    rewrite(&text, ns, files, sink)
}

pub fn rewrite(text: &str, ns: &str, files: &FileServer, sink: &Sink) -> Result<String> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let mut v = Value::deserialize(doc).context("example YAML")?;
        if v.is_null() {
            continue;
        }
        v["metadata"]["namespace"] = Value::String(ns.to_string());
        if v["kind"] == "Plugin"
            && let Some(file) = v["spec"]["source"]["file"].as_str()
        {
            let name = file.rsplit('/').next().unwrap_or(file).to_string();
            v["spec"]["source"] = serde_json::json!({"http": {"url": files.url(&name), "sha256": files.sha256(&name)?}});
        }
        replace_strings(&mut v, OUTSIDE, &sink.base());
        out.push(serde_json::to_string(&v)?);
    }
    if out.is_empty() {
        bail!("no objects in the example");
    }
    Ok(out.join("\n---\n"))
}

fn replace_strings(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, from, to)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_strings(x, from, to)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_replaced_deeply() {
        let mut v = serde_json::json!({"a": ["http://127.0.0.1:9999/x", {"b": "http://127.0.0.1:9999"}], "c": 1});
        replace_strings(&mut v, OUTSIDE, "http://127.0.0.1:1234");
        assert_eq!(
            v,
            serde_json::json!({"a": ["http://127.0.0.1:1234/x", {"b": "http://127.0.0.1:1234"}], "c": 1})
        );
    }
}
