//! Building responses in the shapes the Causeway host understands.
//!
//! | response                                   | what the bridge does                  |
//! |--------------------------------------------|---------------------------------------|
//! | 2xx with a body                            | the body replaces the event           |
//! | 204 No Content                             | the event is dropped (filtered)       |
//! | 2xx, JSON array, `causeway-fanout: true`   | each element becomes its own event    |
//! | 4xx / 5xx (or a trap)                      | the step failed; it is retried        |

use serde::Serialize;
use wstd::http::{Body, Response, StatusCode};

/// The header that asks the host to fan a JSON array response out into events.
pub const FANOUT_HEADER: &str = "causeway-fanout";

/// A JSON response with the given status.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_body(status, "application/json", bytes),
        // Serialising plain data does not fail; if it ever does, say so as a 500.
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding JSON: {e}"),
        ),
    }
}

/// 200 with a JSON body: "here is the new event".
pub fn ok_json<T: Serialize + ?Sized>(value: &T) -> Response<Body> {
    json(StatusCode::OK, value)
}

/// 200 with a JSON array and `causeway-fanout: true`: "each element is an event".
pub fn fanout<T: Serialize>(events: &[T]) -> Response<Body> {
    let mut response = json(StatusCode::OK, events);
    response
        .headers_mut()
        .insert(FANOUT_HEADER, "true".parse().expect("static header value"));
    response
}

/// 204 with no body: "drop this event, it was filtered".
pub fn filtered() -> Response<Body> {
    empty(StatusCode::NO_CONTENT)
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// An error response `{"error": "..."}`. Any 4xx or 5xx fails the bridge step.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    with_body(status, "application/json", body.into_bytes())
}

fn with_body(status: StatusCode, content_type: &'static str, bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        content_type.parse().expect("static header value"),
    );
    response
}
