//! CloudEvents 1.0 over HTTP: reading the binary (`ce-*` headers) and structured
//! (`application/cloudevents+json`) content modes at ingress, and writing either mode for a
//! destination with `format: cloudevents`.
//!
//! A request is a CloudEvent when its content type is `application/cloudevents+json`
//! (structured) or when it carries a `ce-specversion`, `ce-id`, `ce-source` or `ce-type`
//! header (binary). [`parse`] is strict (the ingress answers 400 with its message); [`read`]
//! is the lenient form used when a stored event is filtered or delivered.
//!
//! The event's data is what filters, templates and payload schemas see as `payload`: the
//! body in binary mode, the `data` member in structured mode. The attributes are
//! `cloudevent` in filters and `$event.cloudevent.<name>` in templates. See
//! `docs/event-apis.md`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

/// Content type of the structured mode.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// Content type of the batched mode, which the ingress refuses.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// The one spec version understood.
pub const SPEC_VERSION: &str = "1.0";
/// The `type` a destination sends when neither the inbound event nor a template gives one.
pub const DEFAULT_TYPE: &str = "dev.causeway.event";

/// The headers that make a request a binary-mode CloudEvent.
const BINARY_MARKERS: &[&str] = &["ce-specversion", "ce-id", "ce-source", "ce-type"];

/// How the event was carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Binary,
    Structured,
}

/// One CloudEvent's context attributes and, in structured mode, its data.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudEvent {
    pub mode: Mode,
    /// Every context attribute (`specversion`, `id`, `source`, `type`, `subject`, `time`,
    /// `datacontenttype`, `dataschema` and extensions) by lower-case name. Binary mode gives
    /// strings; structured mode may give numbers and booleans for extensions.
    pub attributes: BTreeMap<String, Value>,
    /// Structured mode: the `data` member (a `data_base64` member is kept as its text).
    pub data: Option<Value>,
    /// Structured mode: the data was `data_base64`.
    pub data_is_base64: bool,
}

/// Why a request that claims to be a CloudEvent is not a valid one. The message is shown
/// to the sender.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CloudEventError(pub String);

fn content_type(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// The mode a request claims, if any. Batched mode is reported as an error.
pub fn detect(headers: &http::HeaderMap) -> Result<Option<Mode>, CloudEventError> {
    match content_type(headers).as_deref() {
        Some(STRUCTURED_CONTENT_TYPE) => return Ok(Some(Mode::Structured)),
        Some(BATCH_CONTENT_TYPE) => {
            return Err(CloudEventError(
                "batched CloudEvents (application/cloudevents-batch+json) are not accepted: send one event per request"
                    .into(),
            ));
        }
        _ => {}
    }
    Ok(BINARY_MARKERS
        .iter()
        .any(|h| headers.contains_key(*h))
        .then_some(Mode::Binary))
}

/// Strict parse of a request: `Ok(None)` when it is not a CloudEvent, an error when it
/// claims to be one and is not valid. `body` is the parsed body (None when it is not JSON);
/// structured mode takes it over.
pub fn parse(
    headers: &http::HeaderMap,
    body: Option<Value>,
) -> Result<Option<CloudEvent>, CloudEventError> {
    match detect(headers)? {
        None => Ok(None),
        Some(Mode::Binary) => binary(headers).map(Some),
        Some(Mode::Structured) => structured(body.ok_or_else(|| {
            CloudEventError("structured CloudEvent: the body is not a JSON object".into())
        })?)
        .map(Some),
    }
}

/// Lenient read of a stored event: the CloudEvent when the request was a valid one.
pub fn read(headers: &http::HeaderMap, body: Option<Value>) -> Option<CloudEvent> {
    parse(headers, body).ok().flatten()
}

/// [`parse`] for a request whose body was parsed once: the CloudEvent (if any) and the
/// parsed body when the event did not take it over (binary mode, or not a CloudEvent).
/// The payload is then [`payload_of`] the two.
pub fn parse_request(
    headers: &http::HeaderMap,
    body: Option<Value>,
) -> Result<(Option<CloudEvent>, Option<Value>), CloudEventError> {
    match detect(headers)? {
        Some(Mode::Structured) => Ok((parse(headers, body)?, None)),
        Some(Mode::Binary) => Ok((Some(binary(headers)?), body)),
        None => Ok((None, body)),
    }
}

/// The lenient form of [`parse_request`], for stored events (a step may have replaced a
/// structured event's body with something else: the body is then the payload).
pub fn read_request(
    headers: &http::HeaderMap,
    body: Option<Value>,
) -> (Option<CloudEvent>, Option<Value>) {
    match detect(headers) {
        Ok(Some(Mode::Structured)) => match parse(headers, body.clone()) {
            Ok(ce) => (ce, None),
            Err(_) => (None, body),
        },
        Ok(Some(Mode::Binary)) => (binary(headers).ok(), body),
        _ => (None, body),
    }
}

/// What filters, templates and schemas see as the payload of a request split by
/// [`parse_request`].
pub fn payload_of<'a>(ce: Option<&'a CloudEvent>, body: Option<&'a Value>) -> Option<&'a Value> {
    match ce {
        Some(c) => c.payload(body),
        None => body,
    }
}

fn binary(headers: &http::HeaderMap) -> Result<CloudEvent, CloudEventError> {
    let mut attributes = BTreeMap::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        check_name(attr)?;
        if attr == "datacontenttype" {
            return Err(CloudEventError(
                "binary CloudEvent: datacontenttype goes in Content-Type, not ce-datacontenttype"
                    .into(),
            ));
        }
        let text = percent_decode(value.as_bytes()).ok_or_else(|| {
            CloudEventError(format!(
                "binary CloudEvent: header ce-{attr} is not percent-encoded UTF-8"
            ))
        })?;
        if attributes
            .insert(attr.to_string(), Value::String(text))
            .is_some()
        {
            return Err(CloudEventError(format!(
                "binary CloudEvent: header ce-{attr} is repeated"
            )));
        }
    }
    if let Some(ct) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        attributes.insert("datacontenttype".into(), Value::String(ct.to_string()));
    }
    let ev = CloudEvent {
        mode: Mode::Binary,
        attributes,
        data: None,
        data_is_base64: false,
    };
    check_required(&ev, "binary CloudEvent", "header ce-")?;
    Ok(ev)
}

fn structured(body: Value) -> Result<CloudEvent, CloudEventError> {
    let Value::Object(map) = body else {
        return Err(CloudEventError(
            "structured CloudEvent: the body is not a JSON object".into(),
        ));
    };
    let mut attributes = BTreeMap::new();
    let mut data = None;
    let mut data_is_base64 = false;
    for (k, v) in map {
        match k.as_str() {
            "data" => {
                if data.is_some() {
                    return Err(CloudEventError(
                        "structured CloudEvent: data and data_base64 are both set".into(),
                    ));
                }
                data = Some(v);
            }
            "data_base64" => {
                if data.is_some() {
                    return Err(CloudEventError(
                        "structured CloudEvent: data and data_base64 are both set".into(),
                    ));
                }
                let Value::String(s) = &v else {
                    return Err(CloudEventError(
                        "structured CloudEvent: data_base64 is not a string".into(),
                    ));
                };
                if base64::engine::general_purpose::STANDARD.decode(s).is_err() {
                    return Err(CloudEventError(
                        "structured CloudEvent: data_base64 is not base64".into(),
                    ));
                }
                data = Some(v);
                data_is_base64 = true;
            }
            name => {
                check_name(name)?;
                match &v {
                    Value::String(_) | Value::Bool(_) | Value::Number(_) => {}
                    Value::Null => continue,
                    _ => {
                        return Err(CloudEventError(format!(
                            "structured CloudEvent: attribute {name} must be a string, number or boolean"
                        )));
                    }
                }
                attributes.insert(k, v);
            }
        }
    }
    let ev = CloudEvent {
        mode: Mode::Structured,
        attributes,
        data,
        data_is_base64,
    };
    check_required(&ev, "structured CloudEvent", "attribute ")?;
    Ok(ev)
}

/// Attribute names are lower-case ASCII letters and digits (CloudEvents 1.0, "Attribute
/// Naming Convention").
fn check_name(name: &str) -> Result<(), CloudEventError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(CloudEventError(format!(
            "CloudEvent attribute name {name:?} must be lower-case letters and digits"
        )));
    }
    Ok(())
}

fn check_required(ev: &CloudEvent, what: &str, prefix: &str) -> Result<(), CloudEventError> {
    match ev.attributes.get("specversion") {
        None => {
            return Err(CloudEventError(format!(
                "{what}: {prefix}specversion is missing"
            )));
        }
        Some(Value::String(v)) if v == SPEC_VERSION => {}
        Some(v) => {
            return Err(CloudEventError(format!(
                "{what}: specversion {v} is not supported (only {SPEC_VERSION})"
            )));
        }
    }
    for required in ["id", "source", "type"] {
        match ev.attributes.get(required) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) => {
                return Err(CloudEventError(format!(
                    "{what}: {prefix}{required} is empty"
                )));
            }
            Some(_) => {
                return Err(CloudEventError(format!(
                    "{what}: {required} must be a string"
                )));
            }
            None => {
                return Err(CloudEventError(format!(
                    "{what}: {prefix}{required} is missing"
                )));
            }
        }
    }
    for optional in ["subject", "time", "datacontenttype", "dataschema"] {
        match ev.attributes.get(optional) {
            None | Some(Value::String(_)) => {}
            Some(_) => {
                return Err(CloudEventError(format!(
                    "{what}: {optional} must be a string"
                )));
            }
        }
    }
    if let Some(Value::String(t)) = ev.attributes.get("time")
        && time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err()
    {
        return Err(CloudEventError(format!(
            "{what}: time {t:?} is not an RFC 3339 timestamp"
        )));
    }
    Ok(())
}

impl CloudEvent {
    /// The attribute as text (numbers and booleans in their JSON form).
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.attributes.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The event's data as filters, templates and schemas see it: in structured mode the
    /// `data` member (None for `data_base64`); in binary mode `body`, the parsed body.
    pub fn payload<'a>(&'a self, body: Option<&'a Value>) -> Option<&'a Value> {
        match self.mode {
            Mode::Binary => body,
            Mode::Structured if self.data_is_base64 => None,
            Mode::Structured => self.data.as_ref(),
        }
    }

    /// The data as bytes, as a binary-mode body would carry it: in binary mode `body`; in
    /// structured mode the `data` member (a string as its text, other JSON as JSON, and
    /// `data_base64` decoded).
    pub fn data_bytes(&self, body: &[u8]) -> Vec<u8> {
        match (self.mode, &self.data) {
            (Mode::Binary, _) => body.to_vec(),
            (Mode::Structured, None) => Vec::new(),
            (Mode::Structured, Some(Value::String(s))) if self.data_is_base64 => {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .unwrap_or_default()
            }
            (Mode::Structured, Some(Value::String(s))) if !self.data_is_json() => {
                s.as_bytes().to_vec()
            }
            (Mode::Structured, Some(v)) => serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    /// Whether `datacontenttype` is JSON (or absent, which means JSON in structured mode).
    fn data_is_json(&self) -> bool {
        match self.attributes.get("datacontenttype") {
            Some(Value::String(ct)) => is_json_type(ct),
            _ => self.mode == Mode::Structured,
        }
    }
}

/// `application/json`, `text/json` or any `+json` media type.
pub fn is_json_type(content_type: &str) -> bool {
    let mt = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mt == "application/json" || mt == "text/json" || mt.ends_with("+json")
}

/// The attributes of an outgoing event, by name; `specversion` is added when missing.
pub type Attributes = BTreeMap<String, String>;

/// Headers and body of an outgoing event in binary mode: `ce-<name>` per attribute
/// (values percent-encoded as the HTTP binding asks), `Content-Type` from
/// `datacontenttype`, and the data as the body.
pub fn to_binary(attrs: &Attributes, data: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = vec![("ce-specversion".to_string(), SPEC_VERSION.to_string())];
    for (name, value) in attrs {
        match name.as_str() {
            "specversion" => {}
            "datacontenttype" => headers.push(("content-type".into(), value.clone())),
            _ => headers.push((format!("ce-{name}"), percent_encode(value))),
        }
    }
    (headers, data.to_vec())
}

/// The body of an outgoing event in structured mode: one JSON document with the
/// attributes and `data` (JSON data as JSON, UTF-8 text as a string, anything else as
/// `data_base64`).
pub fn to_structured(attrs: &Attributes, data: &[u8]) -> Vec<u8> {
    let mut doc = serde_json::Map::new();
    doc.insert("specversion".into(), Value::String(SPEC_VERSION.into()));
    for (name, value) in attrs {
        if name != "specversion" {
            doc.insert(name.clone(), Value::String(value.clone()));
        }
    }
    let json = attrs
        .get("datacontenttype")
        .is_none_or(|ct| is_json_type(ct));
    if !data.is_empty() {
        let parsed = if json {
            serde_json::from_slice::<Value>(data).ok()
        } else {
            None
        };
        match (parsed, std::str::from_utf8(data)) {
            (Some(v), _) => {
                doc.insert("data".into(), v);
            }
            (None, Ok(text)) if !json => {
                doc.insert("data".into(), Value::String(text.to_string()));
            }
            _ => {
                doc.insert(
                    "data_base64".into(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
                );
            }
        }
    }
    serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
}

/// Percent-encode a header value as the CloudEvents HTTP binding asks: space, `"`, `%` and
/// everything outside printable ASCII.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode a percent-encoded header value; None when the result is not UTF-8.
pub fn percent_decode(value: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%'
            && i + 2 < value.len()
            && let (Some(h), Some(l)) = (hex(value[i + 1]), hex(value[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(value[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests;
