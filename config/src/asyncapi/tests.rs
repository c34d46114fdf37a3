use super::*;

fn config() -> WorkerConfig {
    let bridge: BridgeConfig = serde_json::from_value(json!({
        "namespace": "shop", "name": "orders", "path": "/hooks/shop/orders", "methods": ["POST", "PUT"],
        "maxBodyBytes": 1024, "idempotencyHeader": "webhook-id", "dedupeWindowMs": 1000, "suspend": false,
        "auth": {"type": "basic", "username": "shop", "password": "s3cret-pass"},
        "stepRetry": crate::RetryConfig::default(),
        "env": {"TOKEN": {"value": "tok-123", "secret": true}, "BASE": {"value": "https://base.example", "secret": false}},
        "destinations": [
            {"name": "crm", "url": "https://user:pw@crm.example.com:8443/in?token=abc", "method": "POST",
             "delayMs": 0, "timeoutMs": 1000, "retry": crate::RetryConfig::default(),
             "maxRetryAfterMs": 1000, "maxConcurrency": 1, "headers": {"authorization": "Bearer $env.TOKEN"}},
            {"name": "audit", "url": "$env.BASE/audit/$payload.id", "method": "PUT",
             "delayMs": 0, "timeoutMs": 1000, "retry": crate::RetryConfig::default(),
             "maxRetryAfterMs": 1000, "maxConcurrency": 1,
             "cloudEvents": {"mode": "structured"}}
        ],
        "onMissing": "empty",
        "schema": "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"type\": \"object\", \"required\": [\"id\"]}"
    }))
    .unwrap();
    let mut other = bridge.clone();
    other.namespace = "billing".into();
    other.path = "/hooks/billing/orders".into();
    WorkerConfig {
        version: "abc123".into(),
        bridges: vec![bridge, other],
        ..WorkerConfig::default()
    }
}

#[test]
fn a_channel_per_ingress_and_destination_with_bindings_security_and_schemas() {
    let doc = document(
        &config(),
        &Options {
            namespace: Some("shop".into()),
            ..Options::default()
        },
    );
    assert_eq!(doc["asyncapi"], "3.0.0");
    let channels = doc["channels"].as_object().unwrap();
    let mut names: Vec<&str> = channels.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "shop__orders__audit",
            "shop__orders__crm",
            "shop__orders__ingress"
        ]
    );
    assert_eq!(
        channels["shop__orders__ingress"]["address"],
        "/hooks/shop/orders"
    );
    assert_eq!(channels["shop__orders__crm"]["address"], "/in");
    assert_eq!(channels["shop__orders__audit"]["address"], Value::Null);

    let ops = doc["operations"].as_object().unwrap();
    let post = &ops["shop__orders__ingress__post"];
    assert_eq!(post["action"], "receive");
    assert_eq!(post["bindings"]["http"]["method"], "POST");
    assert!(ops.contains_key("shop__orders__ingress__put"));
    assert_eq!(
        ops["shop__orders__audit__send"]["bindings"]["http"]["method"],
        "PUT"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["shop__orders__auth"],
        json!({"type": "http", "scheme": "basic"})
    );
    assert_eq!(
        doc["servers"]["shop__orders__crm"]["host"],
        "crm.example.com:8443"
    );

    let m = &doc["components"]["messages"]["shop__orders__event"]["payload"];
    assert_eq!(m["schemaFormat"], SCHEMA_FORMAT);
    assert_eq!(m["schema"]["required"], json!(["id"]));
    assert!(m["schema"].get("$schema").is_none());
    let ce = &doc["components"]["messages"]["shop__orders__audit__event"];
    assert_eq!(ce["contentType"], "application/cloudevents+json");
}

#[test]
fn no_secret_is_in_the_document() {
    let text = document(&config(), &Options::default()).to_string();
    for secret in [
        "s3cret-pass",
        "tok-123",
        "user:pw",
        "token=abc",
        "https://base.example",
    ] {
        assert!(!text.contains(secret), "{secret} is in the document");
    }
    // Both namespaces without a filter.
    assert!(text.contains("billing__orders__ingress"));
}

/// Issue 17: a nats destination is a channel addressed by its subject, on a `nats` server,
/// sent with a `nats` operation binding; its credentials never appear.
#[test]
fn a_nats_destination_has_a_nats_channel() {
    let mut cfg = config();
    let d: crate::DestinationConfig = serde_json::from_value(json!({
        "name": "stream", "url": "nats://nats.infra:4222/orders.created", "method": "POST",
        "delayMs": 0, "timeoutMs": 1000, "retry": crate::RetryConfig::default(),
        "maxRetryAfterMs": 1000, "maxConcurrency": 1,
        "nats": {"auth": {"type": "token", "token": "nats-tok-secret"}}
    }))
    .unwrap();
    cfg.bridges[0].destinations = vec![d];
    let doc = document(&cfg, &Options::default());
    let ch = &doc["channels"]["shop__orders__stream"];
    assert_eq!(ch["address"], "orders.created");
    let server = &doc["servers"]["shop__orders__stream"];
    assert_eq!(server["protocol"], "nats");
    assert_eq!(server["host"], "nats.infra:4222");
    let op = &doc["operations"]["shop__orders__stream__send"];
    assert_eq!(op["bindings"], json!({"nats": {"bindingVersion": "0.1.0"}}));
    assert!(!doc.to_string().contains("nats-tok-secret"));
}

/// Issue 17: a bridge with `subscriptions` has a hub channel at `/hub/<ns>/<bridge>` whose
/// send operation names the hub's API key by kind and header only.
#[test]
fn a_websub_hub_has_a_channel() {
    let mut cfg = config();
    cfg.bridges[0].subscriptions = Some(
        serde_json::from_value(json!({
            "auth": {"type": "apiKey", "header": "x-hub-key", "queryParam": null, "keys": ["hub-key-secret"]},
            "allowedCallbackHosts": ["https://hooks.example.com"],
            "defaultLeaseSeconds": 600, "minLeaseSeconds": 60, "maxLeaseSeconds": 3600,
            "retry": crate::RetryConfig::default(), "timeoutMs": 1000,
            "signingSecret": "whsec_c2lnbmluZy1zZWNyZXQ="
        }))
        .unwrap(),
    );
    let doc = document(&cfg, &Options::default());
    let ch = &doc["channels"]["shop__orders__hub"];
    assert_eq!(ch["address"], "/hub/shop/orders");
    assert_eq!(
        ch["messages"]["event"]["$ref"],
        "#/components/messages/shop__orders__event"
    );
    let op = &doc["operations"]["shop__orders__hub__deliver"];
    assert_eq!(op["action"], "send");
    assert_eq!(
        op["security"],
        json!([{"type": "httpApiKey", "in": "header", "name": "x-hub-key"}])
    );
    let text = doc.to_string();
    assert!(!text.contains("hub-key-secret"));
    assert!(!text.contains("whsec_"));
    // The other namespace's bridge has no hub.
    assert!(doc["channels"].get("billing__orders__hub").is_none());
}

/// Issue 17: a stream is a channel at `/streams/<ns>/<bridge>/<stream>` on the ingress and
/// its WebSocket server, with an `sse` operation (http GET binding and the replay query)
/// and a `ws` operation (the channel's ws binding), the stream's security scheme, and the
/// bridge's event as message in both framings; its API key never appears.
#[test]
fn a_stream_has_a_channel_with_sse_and_ws_bindings() {
    let mut cfg = config();
    cfg.bridges[0].streams = vec![serde_json::from_value(json!({
        "name": "live",
        "auth": {"type": "apiKey", "header": "x-consumer-key", "keys": ["stream-key-secret"]},
        "maxConnectionsPerConsumer": 4, "maxConnections": 0, "eventsPerSecond": 0,
        "bufferEvents": 1024, "stallTimeoutMs": 30000, "retentionMs": 86400000, "heartbeatMs": 15000
    }))
    .unwrap()];
    let doc = document(
        &cfg,
        &Options {
            namespace: Some("shop".into()),
            ingress_host: "hooks.shop.example:443".into(),
            ingress_protocol: "https".into(),
        },
    );
    let ch = &doc["channels"]["shop__orders__streams__live"];
    assert_eq!(ch["address"], "/streams/shop/orders/live");
    assert_eq!(
        ch["servers"],
        json!([{"$ref": "#/servers/ingress"}, {"$ref": "#/servers/ingress-ws"}])
    );
    assert_eq!(ch["bindings"]["ws"]["method"], "GET");
    assert_eq!(ch["bindings"]["ws"]["bindingVersion"], "0.1.0");
    assert!(ch["bindings"]["ws"]["query"]["properties"]["from"].is_object());
    assert_eq!(
        doc["servers"]["ingress-ws"],
        json!({
            "host": "hooks.shop.example:443",
            "protocol": "wss",
            "description": "The Causeway ingress, upgraded to a WebSocket: stream consumers connect here.",
        })
    );

    let ops = doc["operations"].as_object().unwrap();
    let sse = &ops["shop__orders__streams__live__sse"];
    assert_eq!(sse["action"], "send");
    assert_eq!(sse["bindings"]["http"]["method"], "GET");
    assert!(sse["bindings"]["http"]["query"]["properties"]["since"].is_object());
    assert_eq!(
        sse["messages"],
        json!([{"$ref": "#/channels/shop__orders__streams__live/messages/sse"}])
    );
    let ws = &ops["shop__orders__streams__live__ws"];
    assert_eq!(ws["action"], "send");
    assert!(ws.get("bindings").is_none());
    let auth = json!([{"$ref": "#/components/securitySchemes/shop__orders__streams__live__auth"}]);
    assert_eq!(sse["security"], auth);
    assert_eq!(ws["security"], auth);
    assert_eq!(
        doc["components"]["securitySchemes"]["shop__orders__streams__live__auth"],
        json!({"type": "httpApiKey", "in": "header", "name": "x-consumer-key"})
    );

    // The bridge's event: its schema as the SSE data, inside `{id, data}` on the WebSocket.
    let m = &doc["components"]["messages"];
    let sse_msg = &m["shop__orders__streams__live__sse"];
    assert_eq!(sse_msg["payload"]["schema"]["required"], json!(["id"]));
    let ws_msg = &m["shop__orders__streams__live__ws"]["payload"]["schema"];
    assert_eq!(ws_msg["required"], json!(["id", "data"]));
    assert_eq!(ws_msg["properties"]["data"]["required"], json!(["id"]));

    assert!(!doc.to_string().contains("stream-key-secret"));
    // A bridge without streams has no stream channel and no WebSocket server.
    let plain = document(&config(), &Options::default());
    assert!(plain["servers"].get("ingress-ws").is_none());
}
