//! AsyncAPI 3.0 documents describing a worker configuration's event APIs: one channel per
//! bridge ingress (the events the bridge receives) and per destination (the events it
//! sends), with HTTP bindings, security schemes from the bridge's ingress auth, and message
//! schemas from `spec.schema`. `causeway asyncapi -f DIR` prints one for manifest files;
//! the admin API serves one per namespace at `GET /asyncapi/<namespace>`.
//!
//! Nothing secret goes in: auth schemes are described by kind and header name only, `$env`
//! values are never resolved (a destination url shows its template), and user info and
//! query strings are cut from urls. See `docs/event-apis.md`.

use crate::{AuthConfig, BridgeConfig, CloudEventsMode, DestinationConfig, WorkerConfig};
use serde_json::{Map, Value, json};

/// The AsyncAPI version written.
pub const ASYNCAPI_VERSION: &str = "3.0.0";
/// The HTTP bindings' version.
const HTTP_BINDING_VERSION: &str = "0.3.0";
/// The NATS bindings' version.
const NATS_BINDING_VERSION: &str = "0.1.0";
/// The schema format of message payloads: JSON Schema as the AsyncAPI parser knows it.
const SCHEMA_FORMAT: &str = "application/schema+json;version=draft-07";
/// A structured CloudEvent's content type (`causeway_pipeline::cloudevents` sends it).
const CLOUDEVENTS_STRUCTURED: &str = "application/cloudevents+json";

/// What the document says about where it is served.
#[derive(Clone, Debug)]
pub struct Options {
    /// `host[:port]` where senders reach the ingress.
    pub ingress_host: String,
    /// `http` or `https`.
    pub ingress_protocol: String,
    /// Only this namespace's bridges (None: every bridge of the configuration).
    pub namespace: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ingress_host: format!("localhost:{}", crate::INGRESS_PORT),
            ingress_protocol: "http".into(),
            namespace: None,
        }
    }
}

/// A key usable in the document's maps (channels, operations, components): AsyncAPI allows
/// `[A-Za-z0-9_-]`; Kubernetes names never hold `_`, so `__` joins parts without clashes.
fn key(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("__")
}

/// The document for `cfg`.
pub fn document(cfg: &WorkerConfig, opts: &Options) -> Value {
    let bridges: Vec<&BridgeConfig> = cfg
        .bridges
        .iter()
        .filter(|b| opts.namespace.as_deref().is_none_or(|ns| b.namespace == ns))
        .collect();
    let mut servers = Map::new();
    servers.insert(
        "ingress".into(),
        json!({
            "host": opts.ingress_host,
            "protocol": opts.ingress_protocol,
            "description": "The Causeway ingress: senders deliver events here.",
        }),
    );
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let mut schemes = Map::new();

    for b in &bridges {
        let base = key(&[&b.namespace, &b.name]);
        let message_key = format!("{base}__event");
        messages.insert(message_key.clone(), inbound_message(b));

        // The ingress: the bridge receives events.
        let ingress = format!("{base}__ingress");
        channels.insert(
            ingress.clone(),
            json!({
                "address": b.path,
                "title": format!("{}/{} ingress", b.namespace, b.name),
                "description": format!("Events sent to bridge {}/{}. Accepted with 202 once stored.", b.namespace, b.name),
                "servers": [{"$ref": "#/servers/ingress"}],
                "messages": {"event": {"$ref": format!("#/components/messages/{message_key}")}},
            }),
        );
        let security = auth_scheme(b.auth.as_ref()).map(|scheme| {
            let name = format!("{base}__auth");
            schemes.insert(name.clone(), scheme);
            json!([{"$ref": format!("#/components/securitySchemes/{name}")}])
        });
        for method in &b.methods {
            let mut op = json!({
                "action": "receive",
                "channel": {"$ref": format!("#/channels/{ingress}")},
                "summary": format!("{method} an event to {}/{}", b.namespace, b.name),
                "bindings": {"http": {"method": method, "bindingVersion": HTTP_BINDING_VERSION}},
                "messages": [{"$ref": format!("#/channels/{ingress}/messages/event")}],
            });
            if let Some(s) = &security {
                op["security"] = s.clone();
            }
            operations.insert(format!("{ingress}__{}", method.to_ascii_lowercase()), op);
        }

        // Each destination: the bridge sends events.
        for d in &b.destinations {
            let channel = key(&[&b.namespace, &b.name, &d.name]);
            let out_message = format!("{channel}__event");
            messages.insert(out_message.clone(), outbound_message(b, d));
            let server = destination_server(d).map(|(host, protocol)| {
                let name = channel.clone();
                servers.insert(
                    name.clone(),
                    json!({
                        "host": host,
                        "protocol": protocol,
                        "description": format!("Destination {} of bridge {}/{}.", d.name, b.namespace, b.name),
                    }),
                );
                name
            });
            let nats = crate::nats::is_nats_url(&d.url);
            let description = if nats {
                format!(
                    "Events bridge {}/{} publishes to NATS JetStream through {}: {}",
                    b.namespace,
                    b.name,
                    d.name,
                    public_url(&d.url)
                )
            } else {
                format!(
                    "Events bridge {}/{} delivers to {}: {} {}",
                    b.namespace,
                    b.name,
                    d.name,
                    d.method,
                    public_url(&d.url)
                )
            };
            // A nats channel's address is its subject; the operation has a nats binding.
            let (address, bindings) = if nats {
                (
                    nats_subject(&d.url),
                    json!({"nats": {"bindingVersion": NATS_BINDING_VERSION}}),
                )
            } else {
                (
                    destination_address(&d.url),
                    json!({"http": {"method": d.method, "bindingVersion": HTTP_BINDING_VERSION}}),
                )
            };
            let mut ch = json!({
                "address": address,
                "title": format!("{}/{} to {}", b.namespace, b.name, d.name),
                "description": description,
                "messages": {"event": {"$ref": format!("#/components/messages/{out_message}")}},
            });
            if let Some(s) = &server {
                ch["servers"] = json!([{"$ref": format!("#/servers/{s}")}]);
            }
            channels.insert(channel.clone(), ch);
            operations.insert(
                format!("{channel}__send"),
                json!({
                    "action": "send",
                    "channel": {"$ref": format!("#/channels/{channel}")},
                    "summary": format!("Deliver each event of {}/{} to {}", b.namespace, b.name, d.name),
                    "bindings": bindings,
                    "messages": [{"$ref": format!("#/channels/{channel}/messages/event")}],
                }),
            );
        }

        // Streams and subscription hubs (`spec.streams`, `spec.subscriptions`) are not in the
        // configuration yet: when they land, each stream gets a channel at
        // `/streams/<namespace>/<bridge>/<stream>` with `ws` and `http` (SSE) bindings and
        // an `action: send` operation, and each hub a channel at `/hub/<namespace>/<bridge>`
        // (see `stream_channels`).
        for c in stream_channels(b) {
            channels.insert(c.key, c.channel);
            operations.extend(c.operations);
        }
    }

    let title = match &opts.namespace {
        Some(ns) => format!("Causeway event APIs of namespace {ns}"),
        None => "Causeway event APIs".to_string(),
    };
    let mut components = Map::new();
    if !messages.is_empty() {
        components.insert("messages".into(), Value::Object(messages));
    }
    if !schemes.is_empty() {
        components.insert("securitySchemes".into(), Value::Object(schemes));
    }
    let mut doc = json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": if cfg.version.is_empty() { "0" } else { cfg.version.as_str() },
            "description": "Generated by Causeway from the Bridges' configuration: a channel per bridge ingress and per destination.",
        },
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": channels,
        "operations": operations,
    });
    if !components.is_empty() {
        doc["components"] = Value::Object(components);
    }
    doc
}

/// A channel with its operations, by key.
struct Channel {
    key: String,
    channel: Value,
    operations: Vec<(String, Value)>,
}

/// The hook for `spec.streams` and `spec.subscriptions` (issue 17): their channels and
/// operations. Empty until the configuration carries them.
fn stream_channels(_b: &BridgeConfig) -> Vec<Channel> {
    Vec::new()
}

/// The message a bridge receives: its payload schema when it has one.
fn inbound_message(b: &BridgeConfig) -> Value {
    let mut m = json!({
        "name": format!("{}-{}-event", b.namespace, b.name),
        "title": format!("Event of {}/{}", b.namespace, b.name),
        "contentType": "application/json",
        "description": "A CloudEvent (binary or structured mode) is accepted too; the schema applies to its data.",
    });
    if let Some(schema) = payload_schema(b) {
        m["payload"] = schema;
    }
    m
}

/// The message a destination receives: the event as forwarded, or its CloudEvent.
fn outbound_message(b: &BridgeConfig, d: &DestinationConfig) -> Value {
    let mut m = json!({
        "name": format!("{}-{}-{}", b.namespace, b.name, d.name),
        "title": format!("Event of {}/{} for {}", b.namespace, b.name, d.name),
    });
    let data = if d.body.is_none() {
        payload_schema(b)
    } else {
        None
    };
    match &d.cloud_events {
        None => {
            m["contentType"] = json!("application/json");
            if let Some(s) = data {
                m["payload"] = s;
            }
        }
        Some(ce) if ce.mode == CloudEventsMode::Binary => {
            m["contentType"] = json!("application/json");
            m["description"] = json!(
                "A CloudEvent 1.0 in binary mode: attributes in ce-* headers, the data as the body."
            );
            m["headers"] = json!({
                "schemaFormat": SCHEMA_FORMAT,
                "schema": {
                    "type": "object",
                    "required": ["ce-specversion", "ce-id", "ce-source", "ce-type"],
                    "properties": {
                        "ce-specversion": {"const": "1.0"},
                        "ce-id": {"type": "string"},
                        "ce-source": {"type": "string"},
                        "ce-type": {"type": "string"},
                        "ce-subject": {"type": "string"},
                        "ce-time": {"type": "string", "format": "date-time"},
                    },
                },
            });
            if let Some(s) = data {
                m["payload"] = s;
            }
        }
        Some(_) => {
            m["contentType"] = json!(CLOUDEVENTS_STRUCTURED);
            m["description"] = json!("A CloudEvent 1.0 in structured mode.");
            let mut envelope = json!({
                "type": "object",
                "required": ["specversion", "id", "source", "type"],
                "properties": {
                    "specversion": {"const": "1.0"},
                    "id": {"type": "string"},
                    "source": {"type": "string"},
                    "type": {"type": "string"},
                    "subject": {"type": "string"},
                    "time": {"type": "string", "format": "date-time"},
                    "datacontenttype": {"type": "string"},
                    "data_base64": {"type": "string"},
                },
            });
            if let Some(s) = data.as_ref().and_then(|s| s.get("schema")) {
                envelope["properties"]["data"] = s.clone();
            }
            m["payload"] = json!({"schemaFormat": SCHEMA_FORMAT, "schema": envelope});
        }
    }
    m
}

/// `spec.schema` as a message payload, in the JSON Schema format the parser knows.
fn payload_schema(b: &BridgeConfig) -> Option<Value> {
    let mut schema: Value = serde_json::from_str(b.schema.as_deref()?).ok()?;
    // The format is named by `schemaFormat`; a `$schema` naming another draft would
    // contradict it.
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
    }
    Some(json!({"schemaFormat": SCHEMA_FORMAT, "schema": schema}))
}

/// The security scheme of a bridge's ingress auth, by kind and header only.
fn auth_scheme(auth: Option<&AuthConfig>) -> Option<Value> {
    use crate::HmacPreset;
    Some(match auth? {
        AuthConfig::Basic { .. } => json!({"type": "http", "scheme": "basic"}),
        AuthConfig::Jwt {
            algorithms, issuer, ..
        } => {
            let mut s = json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": format!("A JSON Web Token signed with {}.", algorithms.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(" or ")),
            });
            if let Some(iss) = issuer {
                s["description"] = json!(format!(
                    "{} Issuer: {iss}.",
                    s["description"].as_str().unwrap_or_default()
                ));
            }
            s
        }
        AuthConfig::ApiKey {
            header,
            query_param,
            ..
        } => match (header, query_param) {
            (_, Some(q)) => json!({"type": "httpApiKey", "in": "query", "name": q}),
            (h, None) => {
                json!({"type": "httpApiKey", "in": "header", "name": h.as_deref().unwrap_or("x-api-key")})
            }
        },
        AuthConfig::StandardWebhooks { .. } => json!({
            "type": "httpApiKey",
            "in": "header",
            "name": "webhook-signature",
            "description": "Standard Webhooks: an HMAC-SHA256 signature of `webhook-id.webhook-timestamp.body` in `webhook-signature`, with `webhook-id` and `webhook-timestamp`.",
        }),
        AuthConfig::Hmac { preset, header, .. } => {
            let (name, what) = match (header, preset) {
                (Some(h), _) => (h.clone(), "an HMAC signature of the body".to_string()),
                (None, Some(p)) => {
                    let h = match p {
                        HmacPreset::Github => "x-hub-signature-256",
                        HmacPreset::Stripe => "stripe-signature",
                        HmacPreset::Shopify => "x-shopify-hmac-sha256",
                        HmacPreset::Slack => "x-slack-signature",
                    };
                    (h.to_string(), format!("the {p:?} webhook signature"))
                }
                (None, None) => return None,
            };
            json!({
                "type": "httpApiKey",
                "in": "header",
                "name": name,
                "description": format!("{what} in `{name}`, keyed by a shared secret."),
            })
        }
    })
}

/// A url without user info and query (they may hold credentials), and without fragment.
fn public_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or("");
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// A destination's host and protocol, when its url spells them (not an `$env` base).
fn destination_server(d: &DestinationConfig) -> Option<(String, String)> {
    let url = public_url(&d.url);
    let (scheme, rest) = url.split_once("://")?;
    let host = &rest[..rest.find('/').unwrap_or(rest.len())];
    (!host.is_empty() && !host.contains('$'))
        .then(|| (host.to_string(), scheme.to_ascii_lowercase()))
}

/// A nats destination's address: its subject, or null when it holds template references.
fn nats_subject(url: &str) -> Value {
    let url = public_url(url);
    let Some((_, rest)) = url.split_once("://") else {
        return Value::Null;
    };
    match rest.split_once('/') {
        Some((_, subject)) if !subject.is_empty() && !subject.contains(['$', '{', '}']) => {
            Value::String(subject.to_string())
        }
        _ => Value::Null,
    }
}

/// A destination channel's address: the url's path, or null (unknown) when it holds
/// template references the address syntax cannot express.
fn destination_address(url: &str) -> Value {
    let url = public_url(url);
    let Some((_, rest)) = url.split_once("://") else {
        return Value::Null;
    };
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    if path.contains(['$', '{', '}']) {
        Value::Null
    } else {
        Value::String(path.to_string())
    }
}

#[cfg(test)]
mod tests;
