//! Destination templates: compile random url, header and body templates, render them with
//! random payloads, headers, query strings and env values.
//!
//! Properties besides "no panic":
//! - a url that starts with the literal `https://x.example/` renders to a url whose host
//!   (as the WHATWG parser the HTTP client uses sees it) is `x.example`;
//! - a url that starts with a `$env` base renders to a url with the base's host, port and
//!   user info, whatever the payload;
//! - rendered header values never hold CR, LF or NUL.

use std::collections::BTreeMap;

use causeway_crds::bridge::MissingPolicy;
use causeway_crds::config::{DestinationConfig, EnvValue, SecretValue};
use causeway_pipeline::template::DestinationTemplate;
use serde::{Deserialize, Serialize};

use crate::{Rng, Target};

pub struct Templates;

#[derive(Serialize, Deserialize, Debug)]
struct Input {
    /// 0: literal `https://x.example/` prefix, 1: `$env.BASE` prefix, 2: anything.
    shape: u8,
    url: String,
    headers: BTreeMap<String, String>,
    body: Option<String>,
    payload: Option<serde_json::Value>,
    base: String,
    env_x: String,
    inbound: Vec<(String, Vec<u8>)>,
    query: String,
    error_on_missing: bool,
}

const BASES: &[&str] = &[
    "https://api.example",
    "https://api.example/v1",
    "https://api.example/v1/",
    "http://10.0.0.1:8080",
    "https://u:p@api.example:8443/x",
    "http://plugin.internal",
    "HTTPS://API.example",
    "https://api.example?x=1",
    "https://api.example#f",
    "https://",
    "ftp://api.example",
];

const PIECES: &[&str] = &[
    "a",
    "/",
    "?",
    "#",
    "@",
    ":",
    ".",
    "\\",
    "%",
    "%2F",
    "%40",
    "$$",
    "$",
    "{",
    "}",
    " ",
    "é",
    "\"",
    "x=1&",
    "-",
    "evil.example",
    ":8080",
    "//",
    "..",
    "\t",
];

const REFS: &[&str] = &[
    "$payload",
    "$payload.a",
    "$payload.host",
    "$payload.items[0]",
    "$payload.items.0.id",
    "${payload.a.b}",
    "$payload.a.",
    "$headers.x-h",
    "${headers.x-h}",
    "$query.q",
    "$env.BASE",
    "$env.X",
    "${env.X}",
    "$env.NOPE",
    "$event.id",
    "$event.receivedAt",
];

/// References that do not compile (rarer, or few templates would compile).
const BAD_REFS: &[&str] = &[
    "$event.nope",
    "$nope",
    "${",
    "${payload.a",
    "$headers",
    "$headers.a.b",
    "$payload[99999999999999999999]",
    "$env.A.B",
    "${}",
];

fn template_text(rng: &mut Rng, max: usize) -> String {
    let n = rng.below(max + 1);
    let mut s = String::new();
    for _ in 0..n {
        match rng.below(3) {
            0 if rng.one_in(12) => s.push_str(rng.pick::<&str>(BAD_REFS)),
            0 => s.push_str(rng.pick::<&str>(REFS)),
            1 => s.push_str(&rng.text(3)),
            _ => s.push_str(rng.pick::<&str>(PIECES)),
        }
    }
    s
}

/// A JSON body template: a random JSON document whose strings are templates.
fn json_template(rng: &mut Rng, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    match rng.below(if depth == 0 { 3 } else { 5 }) {
        0 => Value::String(rng.pick(REFS).to_string()),
        1 => Value::String(template_text(rng, 4)),
        2 => rng.json(0),
        3 => Value::Array(
            (0..rng.below(4))
                .map(|_| json_template(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                m.insert(template_text(rng, 2), json_template(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// Payloads that try to move the host: values with `@`, `/`, `.evil`, `:port`…
fn hostile_payload(rng: &mut Rng) -> serde_json::Value {
    const EVIL: &[&str] = &[
        ".evil.example",
        "@evil.example",
        "/x@evil.example",
        "?a",
        "#a",
        "\\evil",
        ":8443",
        "evil",
        "",
        "%2e",
        "..",
        "a.internal",
        "@",
        "/",
        "//evil.example",
    ];
    let mut v = rng.json(3);
    if let serde_json::Value::Object(m) = &mut v {
        for k in ["a", "host", "id"] {
            if rng.one_in(2) {
                m.insert(
                    k.into(),
                    serde_json::Value::String(rng.pick(EVIL).to_string()),
                );
            }
        }
    }
    v
}

impl Target for Templates {
    fn name(&self) -> &'static str {
        "templates"
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let shape = rng.below(3) as u8;
        let tail = template_text(rng, 6);
        let url = match shape {
            0 => format!("https://x.example/{tail}"),
            1 => format!(
                "{}{tail}",
                if rng.one_in(2) {
                    "$env.BASE"
                } else {
                    "${env.BASE}"
                }
            ),
            _ => template_text(rng, 8),
        };
        let mut headers = BTreeMap::new();
        for _ in 0..rng.below(3) {
            let name = rng
                .pick(&["x-a", "X-B", "content-type", "bad name", "x-c"])
                .to_string();
            headers.insert(name, template_text(rng, 4));
        }
        let body = match rng.below(3) {
            0 => None,
            1 => Some(template_text(rng, 8)),
            _ => serde_json::to_string(&json_template(rng, 3)).ok(),
        };
        let inbound = (0..rng.below(3))
            .map(|_| {
                (
                    rng.pick(&["x-h", "content-type", "x-other"]).to_string(),
                    rng.bytes(10),
                )
            })
            .collect();
        let input = Input {
            shape,
            url,
            headers,
            body,
            payload: if rng.one_in(8) {
                None
            } else {
                Some(hostile_payload(rng))
            },
            base: rng.pick(BASES).to_string(),
            env_x: rng.text(8),
            inbound,
            query: rng.text(12),
            error_on_missing: rng.one_in(2),
        };
        serde_json::to_vec(&input).unwrap_or_default()
    }

    fn execute(&self, input: &[u8]) -> Option<String> {
        let Ok(input) = serde_json::from_slice::<Input>(input) else {
            return None;
        };
        let d: DestinationConfig = match serde_json::from_value(serde_json::json!({
            "name": "fuzz", "url": input.url, "method": "POST", "headers": input.headers, "body": input.body,
            "delayMs": 0, "timeoutMs": 1000, "maxRetryAfterMs": 0, "maxConcurrency": 1,
            "retry": {"retries": 0, "policy": "none", "initialDelayMs": 0, "maxDelayMs": 0},
        })) {
            Ok(d) => d,
            Err(e) => panic!("the fuzz input does not build a DestinationConfig: {e}"),
        };
        let Ok(t) = DestinationTemplate::compile(&d, 1 << 16) else {
            return None;
        };
        let mut env = BTreeMap::new();
        env.insert(
            "BASE".to_string(),
            EnvValue {
                value: SecretValue(input.base.clone()),
                secret: false,
            },
        );
        env.insert(
            "X".to_string(),
            EnvValue {
                value: SecretValue(input.env_x.clone()),
                secret: true,
            },
        );
        let headers = super::header_map(&input.inbound);
        let body = input
            .payload
            .as_ref()
            .and_then(|p| serde_json::to_vec(p).ok())
            .unwrap_or_default();
        let ctx = causeway_pipeline::EventContext {
            payload: input.payload.as_ref(),
            body: &body,
            headers: &headers,
            query: &input.query,
            env: &env,
            event_id: "evt_1",
            received_at: "2024-05-01T12:00:00Z",
            cloudevent: None,
        };
        let policy = if input.error_on_missing {
            MissingPolicy::Error
        } else {
            MissingPolicy::Empty
        };
        let Ok(r) = t.render(&ctx, policy) else {
            return None;
        };
        for (name, value) in &r.headers {
            assert!(
                !value.contains(['\r', '\n', '\0']),
                "header {name} holds CR, LF or NUL: {value:?}"
            );
        }
        let rendered = url::Url::parse(&r.url).ok();
        match input.shape {
            0 => {
                if let Some(u) = &rendered {
                    assert_eq!(
                        u.host_str(),
                        Some("x.example"),
                        "host moved: {} from {}",
                        r.url,
                        input.url
                    );
                    assert_eq!(
                        (u.username(), u.password(), u.port()),
                        ("", None, None),
                        "authority moved: {}",
                        r.url
                    );
                }
            }
            1 => {
                if let (Some(u), Ok(b)) = (&rendered, url::Url::parse(&input.base)) {
                    let key = |u: &url::Url| {
                        (
                            u.host_str().map(str::to_string),
                            u.port(),
                            u.username().to_string(),
                            u.password().map(str::to_string),
                        )
                    };
                    assert_eq!(
                        key(u),
                        key(&b),
                        "host moved: {} from base {} and {}",
                        r.url,
                        input.base,
                        input.url
                    );
                }
            }
            _ => {}
        }
        None
    }
}
