//! The `WorkerConfig` a worker reads from its Secret (or `causeway up` builds): serde_json
//! from mutated rendered configs, from structurally mutated JSON and from random bytes,
//! then everything the manifests target checks.

use causeway_crds::config::{RenderContext, Scope, WorkerConfig, render};
use causeway_crds::manifest::load_str;

use super::EXAMPLE_MANIFESTS;
use super::manifests::check_config;
use crate::{Rng, Target};

pub struct WorkerConfigTarget {
    /// Rendered configs of the example manifests, as JSON.
    seeds: Vec<serde_json::Value>,
}

impl WorkerConfigTarget {
    pub fn new() -> WorkerConfigTarget {
        let seeds = EXAMPLE_MANIFESTS
            .iter()
            .filter_map(|m| load_str(m, std::path::Path::new("seed.yaml")).ok())
            .map(|inv| render(&inv, &Scope::All, &RenderContext::default()).config)
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        WorkerConfigTarget { seeds }
    }
}

impl Default for WorkerConfigTarget {
    fn default() -> Self {
        WorkerConfigTarget::new()
    }
}

/// Replace, delete or add one node somewhere in `v`.
fn mutate_value(rng: &mut Rng, v: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    let descend = depth < 2 || (depth < 8 && rng.below(4) != 0);
    match v {
        Value::Object(m) if descend && !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            match rng.below(8) {
                0 => {
                    m.remove(&k);
                }
                1 => {
                    m.insert(rng.text(6), rng.json(2));
                }
                _ => {
                    if let Some(child) = m.get_mut(&k) {
                        mutate_value(rng, child, depth + 1);
                    }
                }
            }
        }
        Value::Array(a) if descend && !a.is_empty() => {
            let i = rng.below(a.len());
            match rng.below(6) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let c = a[i].clone();
                    a.push(c);
                }
                _ => mutate_value(rng, &mut a[i], depth + 1),
            }
        }
        // Mostly keep the type, so that the config still parses and the bridges compile.
        _ if rng.one_in(5) => *v = rng.json(2),
        Value::String(s) => {
            // Urls, templates, filters, keys, PEMs.
            let mut b = std::mem::take(s).into_bytes();
            rng.mutate_bytes(&mut b);
            *s = String::from_utf8_lossy(&b).into_owned();
        }
        Value::Number(_) => {
            *v = match rng.below(4) {
                0 => serde_json::json!(rng.int().unsigned_abs()),
                _ => serde_json::json!(rng.below(100)),
            }
        }
        Value::Bool(b) => *b = !*b,
        _ => *v = rng.json(2),
    }
}

impl Target for WorkerConfigTarget {
    fn name(&self) -> &'static str {
        "workerconfig"
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        if self.seeds.is_empty() || rng.one_in(40) {
            return rng.bytes(300);
        }
        let mut v = rng.pick(&self.seeds).clone();
        for _ in 0..1 + rng.below(3) {
            mutate_value(rng, &mut v, 0);
        }
        let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
        if rng.one_in(10) {
            rng.mutate_bytes(&mut bytes);
        }
        bytes
    }

    fn execute(&self, input: &[u8]) -> Option<String> {
        if let Ok(config) = serde_json::from_slice::<WorkerConfig>(input) {
            check_config(&config);
        }
        None
    }
}
