//! The headers the Causeway host adds when a bridge step calls a plugin.

use wstd::http::Request;

/// The id of the event being processed. The same event may be sent more than once
/// (steps run at least once), always with the same id: derive keys and generated
/// values from it so a repeat call does the same thing again.
pub const EVENT_ID: &str = "causeway-event-id";

/// The name of the bridge the event came through.
pub const BRIDGE: &str = "causeway-bridge";

/// The value of header `name`, if present and valid UTF-8.
pub fn get<'a, B>(request: &'a Request<B>, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The event id header, if the caller sent one (bridge steps always do).
pub fn event_id<B>(request: &Request<B>) -> Option<&str> {
    get(request, EVENT_ID).filter(|id| !id.is_empty())
}
