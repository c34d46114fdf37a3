//! AsyncAPI 3.0 documents describing a worker configuration's event APIs: one channel per
//! bridge ingress (the events the bridge receives), per destination (the events it
//! sends) and per stream (the events consumers read as SSE or over a WebSocket), with HTTP
//! and WebSocket bindings, security schemes from the bridge's ingress auth, and message
//! schemas from `spec.schema`. `causeway asyncapi -f DIR` prints one for manifest files;
//! the worker's admin API and the operator's console serve one per namespace at
//! `GET /asyncapi/<namespace>`.
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

        // Streams (`spec.streams`): a channel at `/streams/<namespace>/<bridge>/<stream>`
        // on the ingress, as SSE and as a WebSocket; a subscription hub (`spec.subscriptions`)
        // a channel at `/hub/<namespace>/<bridge>`.
        for c in stream_channels(b) {
            for server in c.servers {
                servers.entry(server).or_insert_with(|| ws_server(opts));
            }
            channels.insert(c.key, c.channel);
            operations.extend(c.operations);
            messages.extend(c.messages);
            schemes.extend(c.schemes);
        }
        if let Some(c) = hub_channel(b, &base, &message_key) {
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
            "description": "Generated by Causeway from the Bridges' configuration: a channel per bridge ingress, per destination and per stream.",
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

/// The document of one namespace whose bridges run in several pools, each pool's ingress
/// at its own host: [`document`] per pool (`(pool, ingress host, its configuration)`),
/// merged. With one pool it is that pool's document; with more, each pool's servers are
/// named `<pool>__ingress` (and `<pool>__ingress-ws`) and its channels point at them.
/// Channel, operation and message keys hold the bridge's name, so pools never clash there.
pub fn namespace_document(
    namespace: &str,
    ingress_protocol: &str,
    pools: &[(&str, &str, &WorkerConfig)],
) -> Value {
    let doc_of = |host: &str, cfg: &WorkerConfig| {
        document(
            cfg,
            &Options {
                ingress_host: host.to_string(),
                ingress_protocol: ingress_protocol.to_string(),
                namespace: Some(namespace.to_string()),
            },
        )
    };
    let version = pools
        .iter()
        .map(|(pool, _, cfg)| {
            format!(
                "{pool}@{}",
                if cfg.version.is_empty() {
                    "0"
                } else {
                    &cfg.version
                }
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut merged = match pools {
        [] => doc_of("", &WorkerConfig::default()),
        [(_, host, cfg)] => doc_of(host, cfg),
        _ => {
            let mut out = doc_of("", &WorkerConfig::default());
            out["servers"] = json!({});
            for (pool, host, cfg) in pools {
                let mut doc = doc_of(host, cfg);
                let renamed = |name: &str| key(&[pool, name]);
                if let Some(channels) = doc["channels"].as_object_mut() {
                    for ch in channels.values_mut() {
                        for server in ch["servers"].as_array_mut().into_iter().flatten() {
                            let Some(r) = server["$ref"].as_str() else {
                                continue;
                            };
                            if let Some(name @ ("ingress" | WS_SERVER)) =
                                r.strip_prefix("#/servers/")
                            {
                                server["$ref"] = json!(format!("#/servers/{}", renamed(name)));
                            }
                        }
                    }
                }
                for section in ["servers", "channels", "operations"] {
                    let Some(from) = doc[section].as_object_mut() else {
                        continue;
                    };
                    for (k, v) in std::mem::take(from) {
                        let k = match k.as_str() {
                            "ingress" | WS_SERVER if section == "servers" => renamed(&k),
                            _ => k,
                        };
                        out[section][k] = v;
                    }
                }
                for section in ["messages", "securitySchemes"] {
                    if let Some(from) = doc["components"][section].as_object_mut() {
                        for (k, v) in std::mem::take(from) {
                            out["components"][section][k] = v;
                        }
                    }
                }
            }
            if out["components"].as_object().is_some_and(|c| c.is_empty())
                && let Some(o) = out.as_object_mut()
            {
                o.remove("components");
            }
            out
        }
    };
    merged["info"]["version"] = json!(if version.is_empty() {
        "0".to_string()
    } else {
        version
    });
    merged
}

/// A channel with its operations, and the messages, security schemes and servers (by
/// key; see [`ws_server`]) they refer to.
struct Channel {
    key: String,
    channel: Value,
    operations: Vec<(String, Value)>,
    messages: Vec<(String, Value)>,
    schemes: Vec<(String, Value)>,
    servers: Vec<String>,
}

/// The server of WebSocket stream consumers: the ingress, upgraded.
const WS_SERVER: &str = "ingress-ws";
/// The WebSockets bindings' version.
const WS_BINDING_VERSION: &str = "0.1.0";

fn ws_server(opts: &Options) -> Value {
    let protocol = if opts.ingress_protocol.eq_ignore_ascii_case("https") {
        "wss"
    } else {
        "ws"
    };
    json!({
        "host": opts.ingress_host,
        "protocol": protocol,
        "description": "The Causeway ingress, upgraded to a WebSocket: stream consumers connect here.",
    })
}

/// The channels of `spec.streams` and `spec.subscriptions` (issue 17), with their
/// operations.
///
/// A stream is one channel at `/streams/<namespace>/<bridge>/<stream>` on the ingress
/// (SSE, `http`) and on its WebSocket server (`ws`), and two `send` operations: `sse` with
/// an `http` GET binding and the replay query, `ws` on the channel's `ws` binding. Its
/// messages are the bridge's events as it forwards them (its payload schema), framed as
/// an SSE event or as the WebSocket's `{"id", "data"}`; its security scheme is the
/// stream's auth. The replay header `Last-Event-ID` is described in the query's and the
/// operation's text (a binding's headers schema is for the channel's upgrade only).
fn stream_channels(b: &BridgeConfig) -> Vec<Channel> {
    b.streams
        .iter()
        .map(|s| {
            let key = key(&[&b.namespace, &b.name, "streams", &s.name]);
            let title = format!("{}/{} stream {}", b.namespace, b.name, s.name);
            let query = json!({
                "type": "object",
                "properties": {
                    "from": {"type": "string", "description": "Start at this event id (inclusive)."},
                    "since": {"type": "string", "format": "date-time", "description": "Start at the first event received at or after this time."},
                },
            });
            let schema = payload_schema(b);
            let mut sse = json!({
                "name": format!("{}-{}-{}-sse", b.namespace, b.name, s.name),
                "title": format!("Event of {title} (Server-Sent Events)"),
                "contentType": "application/json",
                "description": "One Server-Sent Event: `id:` is the event id (send it back as `Last-Event-ID` to resume), the event body is the `data:` lines. Heartbeats are comment lines; the worker's last event before it ends the stream is `event: error` with `{\"error\": \"<why>\"}`.",
            });
            if let Some(p) = &schema {
                sse["payload"] = p.clone();
            }
            let mut data = json!({"description": "The event body: as JSON when it is JSON, else as a string."});
            if let Some(inner) = schema.as_ref().and_then(|p| p.get("schema")) {
                data = inner.clone();
            }
            let ws = json!({
                "name": format!("{}-{}-{}-ws", b.namespace, b.name, s.name),
                "title": format!("Event of {title} (WebSocket)"),
                "contentType": "application/json",
                "description": "One WebSocket text message per event. Heartbeats are pings; the worker's last message before it closes is `{\"error\": \"<why>\"}`.",
                "payload": {
                    "schemaFormat": SCHEMA_FORMAT,
                    "schema": {
                        "type": "object",
                        "required": ["id", "data"],
                        "properties": {
                            "id": {"type": "string", "description": "The event id: resume after it with `?from=` (inclusive) or Last-Event-ID."},
                            "data": data,
                        },
                    },
                },
            });
            let (sse_key, ws_key) = (format!("{key}__sse"), format!("{key}__ws"));
            let scheme = auth_scheme(s.auth.as_ref()).map(|v| (format!("{key}__auth"), v));
            let security = scheme.as_ref().map(|(name, _)| {
                json!([{"$ref": format!("#/components/securitySchemes/{name}")}])
            });
            let channel = json!({
                "address": format!("/streams/{}/{}/{}", b.namespace, b.name, s.name),
                "title": title,
                "description": format!(
                    "The events bridge {}/{} accepted (after its filter and steps), in id order, with replay from the store within {} ms: Server-Sent Events (`Accept: text/event-stream`) or a WebSocket (the same path, upgraded).",
                    b.namespace, b.name, s.retention_ms
                ),
                "servers": [
                    {"$ref": "#/servers/ingress"},
                    {"$ref": format!("#/servers/{WS_SERVER}")},
                ],
                "messages": {
                    "sse": {"$ref": format!("#/components/messages/{sse_key}")},
                    "ws": {"$ref": format!("#/components/messages/{ws_key}")},
                },
                "bindings": {
                    "ws": {"method": "GET", "query": query.clone(), "bindingVersion": WS_BINDING_VERSION},
                },
            });
            let mut ops = Vec::new();
            for (name, summary, bindings) in [
                (
                    "sse",
                    format!("Stream each event of {}/{} as Server-Sent Events (resume with Last-Event-ID, ?from= or ?since=)", b.namespace, b.name),
                    Some(json!({"http": {"method": "GET", "query": query.clone(), "bindingVersion": HTTP_BINDING_VERSION}})),
                ),
                (
                    "ws",
                    format!("Stream each event of {}/{} over a WebSocket (resume with ?from= or ?since=)", b.namespace, b.name),
                    None,
                ),
            ] {
                let mut op = json!({
                    "action": "send",
                    "channel": {"$ref": format!("#/channels/{key}")},
                    "summary": summary,
                    "messages": [{"$ref": format!("#/channels/{key}/messages/{name}")}],
                });
                if let Some(bd) = bindings {
                    op["bindings"] = bd;
                }
                if let Some(sec) = &security {
                    op["security"] = sec.clone();
                }
                ops.push((format!("{key}__{name}"), op));
            }
            Channel {
                key: key.clone(),
                channel,
                operations: ops,
                messages: vec![(sse_key, sse), (ws_key, ws)],
                schemes: scheme.into_iter().collect(),
                servers: vec![WS_SERVER.to_string()],
            }
        })
        .collect()
}

/// A bridge's WebSub hub (`spec.subscriptions`): a channel at `/hub/<namespace>/<bridge>`
/// where subscribers register a callback with the hub's API key, and the operation that
/// sends them every accepted event. The hub's API key is described by kind and name only.
fn hub_channel(b: &BridgeConfig, base: &str, message_key: &str) -> Option<Channel> {
    let hub = b.subscriptions.as_ref()?;
    let key = format!("{base}__hub");
    let channel = json!({
        "address": format!("/hub/{}/{}", b.namespace, b.name),
        "title": format!("{}/{} WebSub hub", b.namespace, b.name),
        "description": format!(
            "W3C WebSub hub of bridge {}/{}: POST hub.mode=subscribe, hub.topic (this URL), \
             hub.callback, hub.secret and hub.lease_seconds as a form with the hub's API key; \
             the hub verifies intent with a GET to the callback echoing hub.challenge, then \
             POSTs every event the bridge accepts (after its filter and steps) to the callback, \
             with `Link: <hub>; rel=\"hub\", <topic>; rel=\"self\"` and, with a secret, \
             `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.",
            b.namespace, b.name
        ),
        "servers": [{"$ref": "#/servers/ingress"}],
        "messages": {"event": {"$ref": format!("#/components/messages/{message_key}")}},
    });
    let mut op = json!({
        "action": "send",
        "channel": {"$ref": format!("#/channels/{key}")},
        "summary": format!("Deliver each event of {}/{} to every subscriber's callback", b.namespace, b.name),
        "bindings": {"http": {"method": "POST", "bindingVersion": HTTP_BINDING_VERSION}},
        "messages": [{"$ref": format!("#/channels/{key}/messages/event")}],
    });
    if let Some(scheme) = auth_scheme(Some(&hub.auth)) {
        op["security"] = json!([scheme]);
    }
    Some(Channel {
        key: key.clone(),
        channel,
        operations: vec![(format!("{key}__deliver"), op)],
        messages: Vec::new(),
        schemes: Vec::new(),
        servers: Vec::new(),
    })
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
