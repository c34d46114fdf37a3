//! `tagger`: the smallest useful transform, used by the benchmarks.
//!
//! Takes a JSON object, adds `"tagged": true` and, when the plugin variable `tag` is
//! set, `"tag": "<value>"`, and returns it as the new event. Anything but a JSON
//! object is a 400 (the bridge step fails).
//!
//! ```text
//! POST {"order": 1}            ->  200 {"order": 1, "tagged": true, "tag": "blue"}
//! POST [1, 2]                  ->  400 {"error": "expected a JSON object"}
//! ```

use causeway_plugin_kit::{config, reply};
use serde_json::{Map, Value};
use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let bytes = request.body_mut().contents().await?;
    Ok(match tag(bytes, config::get("tag")) {
        Ok(event) => reply::ok_json(&event),
        Err(message) => reply::error(StatusCode::BAD_REQUEST, message),
    })
}

/// The transform itself: plain data in, plain data out, easy to unit-test.
fn tag(body: &[u8], tag: Option<String>) -> Result<Map<String, Value>, &'static str> {
    let mut event = match serde_json::from_slice(body) {
        Ok(Value::Object(event)) => event,
        Ok(_) => return Err("expected a JSON object"),
        Err(_) => return Err("invalid JSON"),
    };
    event.insert("tagged".into(), Value::Bool(true));
    if let Some(tag) = tag {
        event.insert("tag".into(), Value::String(tag));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_objects_only() {
        let out = tag(br#"{"a":1}"#, Some("blue".into())).unwrap();
        assert_eq!(
            Value::Object(out),
            serde_json::json!({"a":1,"tagged":true,"tag":"blue"})
        );
        assert_eq!(tag(b"[1]", None), Err("expected a JSON object"));
        assert_eq!(tag(b"{", None), Err("invalid JSON"));
    }
}
