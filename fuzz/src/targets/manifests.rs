//! Manifests: the loader of local mode (`causeway_crds::manifest::load_str`) on mutated
//! real manifests, then the renderer and the pipeline's compiler on whatever loads.
//!
//! Properties besides "no panic": a rendered `WorkerConfig` survives a JSON round trip,
//! and its version is stable.

use std::path::Path;

use causeway_crds::config::{RenderContext, Scope, WorkerConfig, render, version_of};
use causeway_crds::manifest::load_str;

use super::EXAMPLE_MANIFESTS;
use crate::{Rng, Target};

pub struct Manifests;

/// Scalars that stress YAML and the validators.
const SCALARS: &[&str] = &[
    "~",
    "null",
    "''",
    "\"\"",
    "0",
    "-1",
    "99999999999999999999999",
    "1e400",
    "0x1F",
    "0o17",
    ".inf",
    "-.nan",
    "true",
    "yes",
    "[]",
    "{}",
    "[a, b]",
    "{a: 1}",
    "&a x",
    "*a",
    "!!binary aGVsbG8=",
    "!!str 1",
    "'$payload.host'",
    "\"http://$payload.host/x\"",
    "\"$env.BASE$payload.a\"",
    "\"payload.a.all(x, payload.a.exists(y, x == y))\"",
    "1h",
    "0s",
    "999999999999d",
    "-5m",
    "1Ki",
    "16Mi",
    "1e3Mi",
    "\"\\u0000\"",
    "|\n  multi\n  line",
    ">-\n  folded",
    "\"http://127.0.0.1:9/\"",
    "https://*.internal",
    "sha256:00",
    "../../etc/passwd",
    "/etc/passwd",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = if rng.one_in(2) { 1 } else { 1 + rng.below(4) };
    for _ in 0..n {
        if lines.is_empty() {
            break;
        }
        let i = rng.below(lines.len());
        match rng.below(8) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
            3..=5 => {
                // Replace a value after `: `.
                if let Some(p) = lines[i].find(": ") {
                    let key = lines[i][..p + 2].to_string();
                    let value = if rng.one_in(3) {
                        rng.text(12)
                    } else {
                        rng.pick(SCALARS).to_string()
                    };
                    lines[i] = format!("{key}{value}");
                }
            }
            6 => {
                let mut b = lines[i].clone().into_bytes();
                rng.mutate_bytes(&mut b);
                lines[i] = String::from_utf8_lossy(&b).into_owned();
            }
            _ => {
                // Re-indent: YAML structure changes.
                let l = lines[i].trim_start().to_string();
                lines[i] = format!("{}{l}", " ".repeat(rng.below(8)));
            }
        }
    }
    lines.join("\n")
}

impl Target for Manifests {
    fn name(&self) -> &'static str {
        "manifests"
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let seed = *rng.pick(EXAMPLE_MANIFESTS);
        let text = if rng.one_in(30) {
            String::from_utf8_lossy(&rng.bytes(200)).into_owned()
        } else if rng.one_in(10) {
            // Two seeds in one file (name clashes, cross-references).
            let other = *rng.pick(EXAMPLE_MANIFESTS);
            format!("{}\n---\n{}", mutate(rng, seed), mutate(rng, other))
        } else {
            mutate(rng, seed)
        };
        text.into_bytes()
    }

    fn execute(&self, input: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(input);
        let Ok(inv) = load_str(&text, Path::new("fuzz.yaml")) else {
            return None;
        };
        let rendered = render(&inv, &Scope::All, &RenderContext::default());
        check_config(&rendered.config);
        None
    }
}

/// Properties every rendered or parsed `WorkerConfig` must have, and the pipeline's
/// compiler over every bridge.
pub fn check_config(config: &WorkerConfig) {
    let json = match serde_json::to_string(config) {
        Ok(j) => j,
        Err(e) => panic!("a WorkerConfig does not serialise: {e}"),
    };
    match serde_json::from_str::<WorkerConfig>(&json) {
        Ok(back) => assert!(
            back == *config,
            "a WorkerConfig changes through JSON: {json}"
        ),
        Err(e) => panic!("a serialised WorkerConfig does not parse back: {e}: {json}"),
    }
    assert_eq!(version_of(config), version_of(config));
    for b in &config.bridges {
        let _ = causeway_pipeline::compile_bridge(b);
        let secrets = causeway_pipeline::redact::bridge_secrets(config, b);
        let text = format!("echo {} {}", secrets.join(" "), json.len());
        let out = causeway_pipeline::redact::redact_then_truncate(&text, &secrets, 4096);
        for s in secrets
            .iter()
            .filter(|s| s.len() >= causeway_pipeline::redact::MIN_SECRET_LEN)
        {
            assert!(!out.contains(*s), "a secret survived redaction");
        }
    }
}
