//! `inbox`: a public plugin that keeps what it is sent. The quickstart's sink.
//!
//! * `POST` (or `PUT`), any path: stores the body (JSON as JSON, anything else as
//!   text) and answers `201 {"stored": "<key>"}`. With a `causeway-event-id` header
//!   the key is `event:<id>` (or `webhook:<id>` from a Standard Webhooks `webhook-id`),
//!   so a redelivered event overwrites its first copy instead of appearing twice;
//!   without either the key is made from the time.
//! * `GET`, any path: the stored items, oldest first,
//!   `[{"key", "body", "contentType", "receivedAt"}]`. Only the last 100 are kept.
//! * `DELETE`, any path: forgets everything, `200 {"deleted": <n>}`.
//!
//! Everything lives in the plugin's keyvalue bucket, one key per item. Order comes from
//! a sequence number stored in each item (the bucket's own key order means nothing),
//! so concurrent POSTs never fight over a shared index.

use causeway_plugin_kit::{headers, kv, reply, time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

/// How many items the inbox keeps; older ones are deleted on the next POST.
const MAX_ITEMS: usize = 100;

/// Every item key starts with this, so the bucket can hold other keys too.
const ITEM_PREFIX: &str = "item/";

#[derive(Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Item {
    key: String,
    body: Value,
    content_type: Option<String>,
    received_at: String,
    /// Nanoseconds since the epoch when the key was first stored: the sort order.
    /// Kept when a redelivery overwrites the item, so it keeps its place.
    seq: u64,
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let result = match *request.method() {
        Method::POST | Method::PUT => {
            // A bridge step sends `causeway-event-id`; a bridge destination signed
            // with Standard Webhooks sends `webhook-id`. Both stay the same when the
            // same event is delivered again.
            let key = if let Some(id) = headers::event_id(&request) {
                format!("event:{id}")
            } else if let Some(id) = headers::get(&request, "webhook-id").filter(|id| !id.is_empty()) {
                format!("webhook:{id}")
            } else {
                format!("anon:{}-{:08x}", now_nanos(), random_u32())
            };
            let content_type = headers::get(&request, "content-type").map(str::to_string);
            let bytes = request.body_mut().contents().await?;
            let body = decode_body(bytes, content_type.as_deref());
            store(key, body, content_type).map(|key| reply::json(StatusCode::CREATED, &json!({ "stored": key })))
        }
        Method::GET => list().map(|items| {
            let items: Vec<Value> = items
                .into_iter()
                .map(|i| json!({"key": i.key, "body": i.body, "contentType": i.content_type, "receivedAt": i.received_at}))
                .collect();
            reply::ok_json(&items)
        }),
        Method::DELETE => clear().map(|n| reply::ok_json(&json!({ "deleted": n }))),
        _ => Ok(reply::error(StatusCode::METHOD_NOT_ALLOWED, "use POST, GET or DELETE")),
    };
    Ok(result.unwrap_or_else(|e| reply::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())))
}

/// JSON bodies are kept as JSON; anything else as (lossy UTF-8) text.
fn decode_body(bytes: &[u8], content_type: Option<&str>) -> Value {
    let declared_text = content_type.is_some_and(|ct| ct.starts_with("text/"));
    if !declared_text && let Ok(value) = serde_json::from_slice(bytes) {
        return value;
    }
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// Stores the item under `item/<key>`, keeping its first `seq` on a repeat, then trims
/// the inbox to the newest `MAX_ITEMS`.
fn store(key: String, body: Value, content_type: Option<String>) -> Result<String, kv::Error> {
    let bucket = kv::Bucket::open()?;
    let kv_key = format!("{ITEM_PREFIX}{key}");
    let seq = match bucket.get_json::<Item>(&kv_key) {
        Ok(Some(previous)) => previous.seq,
        // Missing, or unreadable (written by an older version): treat as new.
        Ok(None) | Err(_) => now_nanos(),
    };
    let item = Item {
        key: key.clone(),
        body,
        content_type,
        received_at: time::format_rfc3339(time::now_unix()),
        seq,
    };
    bucket.set_json(&kv_key, &item)?;

    let items = load_all(&bucket)?;
    for old in items.iter().take(items.len().saturating_sub(MAX_ITEMS)) {
        bucket.delete(&format!("{ITEM_PREFIX}{}", old.key))?;
    }
    Ok(key)
}

/// The newest `MAX_ITEMS` items, oldest first.
fn list() -> Result<Vec<Item>, kv::Error> {
    let mut items = load_all(&kv::Bucket::open()?)?;
    let excess = items.len().saturating_sub(MAX_ITEMS);
    items.drain(..excess);
    Ok(items)
}

/// Every item in the bucket, oldest first.
fn load_all(bucket: &kv::Bucket) -> Result<Vec<Item>, kv::Error> {
    let mut items = Vec::new();
    for key in bucket.keys()? {
        if !key.starts_with(ITEM_PREFIX) {
            continue;
        }
        match bucket.get_json::<Item>(&key) {
            Ok(Some(item)) => items.push(item),
            // Deleted between list-keys and get (a concurrent DELETE): skip it.
            Ok(None) => {}
            // One unreadable item must not hide all the others.
            Err(e) if e.is_decode() => eprintln!("inbox: skipping {key}: {e}"),
            Err(e) => return Err(e),
        }
    }
    items.sort_by(|a, b| a.seq.cmp(&b.seq).then_with(|| a.key.cmp(&b.key)));
    Ok(items)
}

/// Deletes every item; returns how many there were.
fn clear() -> Result<usize, kv::Error> {
    let bucket = kv::Bucket::open()?;
    let mut n = 0;
    for key in bucket.keys()? {
        if key.starts_with(ITEM_PREFIX) {
            bucket.delete(&key)?;
            n += 1;
        }
    }
    Ok(n)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Four random bytes from `wasi:random`, to keep two same-nanosecond keys apart.
fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    wstd::rand::get_random_bytes(&mut buf);
    u32::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(
            decode_body(br#"{"a":1}"#, Some("application/json")),
            json!({"a":1})
        );
        assert_eq!(decode_body(b"[1]", None), json!([1]));
        assert_eq!(decode_body(b"42", Some("text/plain")), json!("42"));
        assert_eq!(decode_body(b"hello", None), json!("hello"));
    }
}
