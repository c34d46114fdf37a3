//! Destination templates: the seed syntax in a destination's url, headers and body.
//!
//! Grammar (see `docs/bridges.md` for the why):
//! - `$$` is a literal `$`; a `$` not followed by a letter or `_` (or `{`) is literal too.
//! - `$root.name…` is a reference. Roots: `payload`, `headers`, `query`, `env`, `event`.
//!   A bare reference is the root, then any number of `.name` (name characters
//!   `[A-Za-z0-9_-]`) and, for `payload`, `[n]` indexes. It ends at the first character
//!   that does not continue it, so `$payload.id.` ends before the final dot.
//! - `${payload.a.b}` delimits a reference inside text: `${env.HOST}-suffix`.
//! - `headers`, `query` and `env` take one name (`$headers.x-github-event`, matched
//!   case-insensitively for headers); `event` takes `id`, `receivedAt` or
//!   `cloudevent.<attribute>` (an attribute of an inbound CloudEvent: `$event.cloudevent.type`,
//!   missing when the request was not one); `$payload` alone is the whole payload (the data,
//!   for a structured CloudEvent).
//! - A destination with `format: cloudevents` sends a CloudEvent ([`crate::cloudevents`]);
//!   its attribute templates are text templates rendered like header values, and an
//!   attribute whose template renders empty falls back to the derived value.
//!
//! Where a reference lands:
//! - url: substituted values are percent-encoded (everything but RFC 3986 unreserved
//!   characters), except an `$env` reference at the very start of the url (a base url such
//!   as `$env.BASE_URL/orders`), which is inserted as is. Event data (`$payload`, …) cannot
//!   start the url: the sender must not choose the host. No reference may appear in the
//!   scheme or authority either (`http://$payload.host/x` is refused when compiling): a
//!   literal url must spell its whole host, up to the first `/`, `?` or `#`. At render time
//!   the authority of the rendered url must equal the authority of the `$env` value alone
//!   (for a base url; it must hold the whole scheme and host, and nothing after it may
//!   extend them, not even literal text) or of the literal text before the first reference,
//!   so event data can neither extend a base (`.evil.example`) nor add user info or a port,
//!   and `<plugin>.internal` targets are always the ones written. The result must be
//!   http(s).
//! - header values: as text; a value that then holds CR, LF or NUL is refused.
//! - body: when the body template is valid JSON, it is a JSON template: a JSON string that
//!   is exactly one reference becomes the typed value (number, object, …), other strings
//!   are text templates and come out JSON-escaped. Otherwise the body is a text template.
//!   Without a body template the event body is sent unchanged.
//!
//! A reference that does not resolve follows [`MissingPolicy`]: `Empty` gives `null` for a
//! whole-reference JSON string and the empty string in text; `Error` fails the render with
//! the path. As text, strings are inserted raw, numbers and booleans as JSON, objects and
//! arrays as compact JSON, and `null` as the empty string.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use bytes::Bytes;
use causeway_config::{CloudEventsMode, DestinationConfig, EnvValue, MissingPolicy};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::cloudevents::{self, CloudEvent};
use crate::signing::SigningKey;
use crate::text::{header_joined, line_col, percent_encode_into, query_first};

/// Largest rendered url.
pub const MAX_URL_BYTES: usize = 16 * 1024;
/// Largest rendered header value.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest rendered body, unless the bridge accepts larger bodies (then that size).
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// What a destination template reads for one event.
#[derive(Clone, Copy, Debug)]
pub struct EventContext<'a> {
    /// Parsed body when it is JSON.
    pub payload: Option<&'a serde_json::Value>,
    /// The event body (after steps).
    pub body: &'a [u8],
    /// Inbound headers (sensitive ones removed).
    pub headers: &'a http::HeaderMap,
    pub query: &'a str,
    pub env: &'a BTreeMap<String, EnvValue>,
    pub event_id: &'a str,
    /// RFC 3339.
    pub received_at: &'a str,
    /// The inbound request as a CloudEvent, when it was one.
    pub cloudevent: Option<&'a CloudEvent>,
}

/// The request for one delivery attempt, before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedRequest {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// A render that cannot produce a request. The runtime dead-letters with this reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("{field}: {path} is missing")]
    Missing { field: String, path: String },
    #[error("{field}: rendered value is larger than {limit} bytes")]
    TooLarge { field: String, limit: usize },
    #[error("headers.{header}: value contains CR, LF or NUL after substitution")]
    HeaderInjection { header: String },
    #[error("url: {reason}")]
    BadUrl { reason: &'static str },
    #[error("cloudEvents.{attribute}: {reason}")]
    BadAttribute {
        attribute: &'static str,
        reason: &'static str,
    },
}

/// A problem with one field of a destination, found when compiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    /// `url`, `body`, `headers.<name>`, `signing`.
    pub field: String,
    pub message: String,
}

/// A parse error inside one template text.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ParseError {
    offset: usize,
    message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, PartialEq)]
enum RefKind {
    Payload(Vec<Seg>),
    Header(String),
    Query(String),
    Env(String),
    EventId,
    EventReceivedAt,
    /// `$event.cloudevent.<name>`.
    CloudEvent(String),
}

#[derive(Clone, Debug, PartialEq)]
struct Reference {
    /// As the user wrote it, for error messages: `$payload.a.b`.
    text: String,
    kind: RefKind,
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Lit(String),
    Ref(Reference),
}

#[derive(Clone, Debug, PartialEq, Default)]
struct TextTemplate {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq)]
enum JNode {
    Lit(String),
    Str(TextTemplate),
    Whole(Reference),
    Array(Vec<JNode>),
    Object(Vec<(TextTemplate, JNode)>),
}

#[derive(Clone, Debug, PartialEq)]
enum BodyTemplate {
    Json(JNode),
    Text(TextTemplate),
}

/// One destination, compiled.
#[derive(Clone, Debug)]
pub struct DestinationTemplate {
    name: String,
    method: String,
    url: TextTemplate,
    headers: Vec<(String, TextTemplate)>,
    body: Option<BodyTemplate>,
    max_body: usize,
    user_content_type: bool,
    signing: Option<SigningKey>,
    uses_payload: bool,
    uses_cloudevent: bool,
    cloud_events: Option<CloudEventsTemplate>,
}

/// A destination's `format: cloudevents`, compiled.
#[derive(Clone, Debug)]
struct CloudEventsTemplate {
    mode: CloudEventsMode,
    /// `id`, `source`, `type`, `subject`, `time`: each an optional template.
    attributes: Vec<(&'static str, TextTemplate)>,
    /// The `source` when neither a template nor the inbound event gives one.
    default_source: String,
}

/// The attributes a destination may template, in the order they are rendered.
const CE_ATTRIBUTES: [&str; 5] = ["id", "source", "type", "subject", "time"];
/// Attributes that are not extensions: never copied from the inbound event as such.
const CE_CORE: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
];

fn text_uses_payload(t: &TextTemplate) -> bool {
    t.pieces.iter().any(|p| {
        matches!(
            p,
            Piece::Ref(Reference {
                kind: RefKind::Payload(_),
                ..
            })
        )
    })
}

fn text_uses_cloudevent(t: &TextTemplate) -> bool {
    t.pieces.iter().any(|p| {
        matches!(
            p,
            Piece::Ref(Reference {
                kind: RefKind::CloudEvent(_),
                ..
            })
        )
    })
}

fn node_uses_cloudevent(n: &JNode) -> bool {
    match n {
        JNode::Lit(_) => false,
        JNode::Str(t) => text_uses_cloudevent(t),
        JNode::Whole(r) => matches!(r.kind, RefKind::CloudEvent(_)),
        JNode::Array(v) => v.iter().any(node_uses_cloudevent),
        JNode::Object(kv) => kv
            .iter()
            .any(|(k, v)| text_uses_cloudevent(k) || node_uses_cloudevent(v)),
    }
}

fn node_uses_payload(n: &JNode) -> bool {
    match n {
        JNode::Lit(_) => false,
        JNode::Str(t) => text_uses_payload(t),
        JNode::Whole(r) => matches!(r.kind, RefKind::Payload(_)),
        JNode::Array(v) => v.iter().any(node_uses_payload),
        JNode::Object(kv) => kv
            .iter()
            .any(|(k, v)| text_uses_payload(k) || node_uses_payload(v)),
    }
}

impl DestinationTemplate {
    /// Parse a destination's url, headers, body and signing secret. Every problem is
    /// reported. `max_body_bytes` is the bridge's inbound limit (rendered bodies may be as
    /// large as that or [`MAX_BODY_BYTES`], whichever is larger).
    pub fn compile(
        d: &DestinationConfig,
        max_body_bytes: u64,
    ) -> Result<DestinationTemplate, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(FieldProblem {
                field: field.to_string(),
                message,
            })
        };
        let at = |src: &str, e: ParseError| {
            let (l, c) = line_col(src, e.offset);
            format!("{} at line {l}, column {c}", e.message)
        };

        let url = match parse_text(&d.url) {
            Ok(t) => {
                match t.pieces.first() {
                    // A base url comes from configuration: event data must not choose
                    // where the request goes.
                    Some(Piece::Ref(r)) if !matches!(r.kind, RefKind::Env(_)) => problem(
                        "url",
                        format!("{} cannot start the url: only an $env reference can be a base url", r.text),
                    ),
                    Some(Piece::Ref(_)) => {}
                    Some(Piece::Lit(first)) => match authority_of(first) {
                        None => problem(
                            "url",
                            "must start with http://, https://, nats:// or a reference such as $env.BASE_URL".into(),
                        ),
                        // The literal must hold the whole authority: a reference right
                        // after it would still be part of the host (or port, user info).
                        Some(Authority { complete: false, .. }) if t.pieces.len() > 1 => {
                            let r = t
                                .pieces
                                .iter()
                                .find_map(|p| match p {
                                    Piece::Ref(r) => Some(r.text.as_str()),
                                    Piece::Lit(_) => None,
                                })
                                .unwrap_or("a reference");
                            problem(
                                "url",
                                format!(
                                    "{r} is in the scheme or host part of the url: only a leading $env reference \
                                     (a base url such as $env.BASE_URL) may set the host; end the host with / first"
                                ),
                            )
                        }
                        Some(Authority { authority: "", .. }) => problem("url", "has no host".into()),
                        // A literal nats url is checked whole (one parser for all).
                        Some(_) if t.pieces.len() == 1 && causeway_config::nats::is_nats_url(first) => {
                            if let Err(e) = causeway_config::NatsUrl::parse(first) {
                                problem("url", e.to_string());
                            }
                        }
                        Some(_) => {}
                    },
                    None => {
                        problem("url", "must start with http://, https://, nats:// or a reference such as $env.BASE_URL".into())
                    }
                }
                t
            }
            Err(e) => {
                problem("url", at(&d.url, e));
                TextTemplate::default()
            }
        };

        let mut headers = Vec::new();
        for (name, value) in &d.headers {
            let field = format!("headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problem(&field, "not a valid header name".into());
                continue;
            }
            if value.contains(['\r', '\n', '\0']) {
                problem(&field, "value contains CR, LF or NUL".into());
                continue;
            }
            match parse_text(value) {
                Ok(t) => headers.push((name.to_ascii_lowercase(), t)),
                Err(e) => problem(&field, at(value, e)),
            }
        }
        let user_content_type = headers.iter().any(|(n, _)| n == "content-type");

        let body = match &d.body {
            None => None,
            Some(src) => match compile_body(src) {
                Ok(b) => Some(b),
                Err(e) => {
                    problem("body", at(src, e));
                    None
                }
            },
        };

        let signing = match &d.signing_secret {
            None => None,
            Some(s) => match SigningKey::new(s.expose()) {
                Ok(k) => Some(k),
                Err(e) => {
                    problem("signing", e.to_string());
                    None
                }
            },
        };

        let cloud_events = d.cloud_events.as_ref().map(|c| {
            let mut attributes = Vec::new();
            for (name, src) in [
                ("id", &c.id),
                ("source", &c.source),
                ("type", &c.r#type),
                ("subject", &c.subject),
                ("time", &c.time),
            ] {
                let Some(src) = src else { continue };
                let field = format!("cloudEvents.{name}");
                if src.contains(['\r', '\n', '\0']) {
                    problem(&field, "value contains CR, LF or NUL".into());
                    continue;
                }
                match parse_text(src) {
                    Ok(t) => attributes.push((name, t)),
                    Err(e) => problem(&field, at(src, e)),
                }
            }
            CloudEventsTemplate {
                mode: c.mode,
                attributes,
                default_source: String::new(),
            }
        });

        if !problems.is_empty() {
            return Err(problems);
        }
        let ce_texts = || {
            cloud_events
                .iter()
                .flat_map(|c| c.attributes.iter().map(|(_, t)| t))
        };
        let uses_cloudevent = cloud_events.is_some()
            || text_uses_cloudevent(&url)
            || headers.iter().any(|(_, t)| text_uses_cloudevent(t))
            || match &body {
                None => false,
                Some(BodyTemplate::Json(n)) => node_uses_cloudevent(n),
                Some(BodyTemplate::Text(t)) => text_uses_cloudevent(t),
            };
        let uses_payload = ce_texts().any(text_uses_payload)
            || text_uses_payload(&url)
            || headers.iter().any(|(_, t)| text_uses_payload(t))
            || match &body {
                None => false,
                Some(BodyTemplate::Json(n)) => node_uses_payload(n),
                Some(BodyTemplate::Text(t)) => text_uses_payload(t),
            };
        Ok(DestinationTemplate {
            uses_payload,
            uses_cloudevent,
            cloud_events,
            name: d.name.clone(),
            method: d.method.clone(),
            url,
            headers,
            body,
            max_body: MAX_BODY_BYTES.max(usize::try_from(max_body_bytes).unwrap_or(usize::MAX)),
            user_content_type,
            signing,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the url, a header or the body refers to `$payload`: only then does a
    /// delivery need the body parsed as JSON.
    pub fn uses_payload(&self) -> bool {
        self.uses_payload
    }

    /// Whether rendering needs the inbound CloudEvent ([`EventContext::cloudevent`]): a
    /// `$event.cloudevent` reference, or `format: cloudevents`.
    pub fn uses_cloudevent(&self) -> bool {
        self.uses_cloudevent
    }

    /// The `source` a CloudEvent gets when neither its template nor the inbound event
    /// gives one (the runtime passes the bridge's path).
    pub fn set_default_source(&mut self, source: &str) {
        if let Some(c) = &mut self.cloud_events {
            c.default_source = source.to_string();
        }
    }

    /// The Standard Webhooks headers for one attempt of a rendered request, when this
    /// destination signs. `ts` is the attempt's Unix time in seconds.
    pub fn sign(
        &self,
        event_id: &str,
        ts: i64,
        body: &[u8],
    ) -> Option<[(&'static str, String); 3]> {
        self.signing.as_ref().map(|k| k.headers(event_id, ts, body))
    }

    /// Render the request for one event.
    pub fn render(
        &self,
        ctx: &EventContext,
        on_missing: MissingPolicy,
    ) -> Result<RenderedRequest, TemplateError> {
        let r = Renderer { ctx, on_missing };

        let mut url = Out::new("url", MAX_URL_BYTES);
        // The part of the url that fixes the authority: the leading `$env` value (inserted
        // as is), or else the literal text up to the first reference.
        let mut fixed_len: Option<usize> = None;
        for (i, piece) in self.url.pieces.iter().enumerate() {
            match piece {
                Piece::Lit(s) => url.push(s)?,
                Piece::Ref(rf) => {
                    let text = r.text_of(rf, "url")?;
                    if i == 0 {
                        url.push(&text)?;
                        // A base url's authority comes from the env value alone.
                        fixed_len = Some(url.buf.len());
                    } else {
                        fixed_len.get_or_insert(url.buf.len());
                        let mut enc = String::with_capacity(text.len());
                        percent_encode_into(&mut enc, &text);
                        url.push(&enc)?;
                    }
                }
            }
        }
        let fixed_len = fixed_len.unwrap_or(url.buf.len());
        let url = url.into_string();
        let lower = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
        if !(lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("nats://"))
        {
            return Err(TemplateError::BadUrl {
                reason: "rendered url is not http://, https:// or nats://",
            });
        }
        if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(TemplateError::BadUrl {
                reason: "rendered url contains spaces or control characters",
            });
        }
        // The host is the one configuration chose: event data placed after the base (even
        // percent-encoded, or unreserved characters such as `.evil.example`) must not
        // extend or replace it.
        let fixed = url.get(..fixed_len).and_then(authority_of);
        let rendered = authority_of(&url);
        match (fixed, rendered) {
            (Some(f), Some(r)) if !f.authority.is_empty() && f.authority == r.authority => {}
            (Some(f), _) if f.authority.is_empty() => {
                return Err(TemplateError::BadUrl {
                    reason: "rendered url has no host",
                });
            }
            _ => {
                return Err(TemplateError::BadUrl {
                    reason: "the rendered host is not the one the template or its $env base fixes",
                });
            }
        }

        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        for (name, t) in &self.headers {
            let field = format!("headers.{name}");
            let mut out = Out::new(&field, MAX_HEADER_BYTES);
            r.render_text(t, &field, &mut out)?;
            let value = out.into_string();
            if value.contains(['\r', '\n', '\0']) {
                return Err(TemplateError::HeaderInjection {
                    header: name.clone(),
                });
            }
            headers.push((name.clone(), value));
        }

        let body = match &self.body {
            None => {
                if !self.user_content_type
                    && let Some(ct) = header_joined(ctx.headers, "content-type")
                {
                    headers.push(("content-type".into(), ct));
                }
                Bytes::copy_from_slice(ctx.body)
            }
            Some(BodyTemplate::Json(node)) => {
                let mut out = Out::new("body", self.max_body);
                r.render_json(node, &mut out)?;
                if !self.user_content_type {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                Bytes::from(out.buf)
            }
            Some(BodyTemplate::Text(t)) => {
                let mut out = Out::new("body", self.max_body);
                r.render_text(t, "body", &mut out)?;
                if !self.user_content_type {
                    headers.push(("content-type".into(), "text/plain; charset=utf-8".into()));
                }
                Bytes::from(out.buf)
            }
        };

        let (headers, body) = match &self.cloud_events {
            None => (headers, body),
            Some(ce) => self.cloud_event(ce, &r, headers, body)?,
        };

        Ok(RenderedRequest {
            url,
            method: self.method.clone(),
            headers,
            body,
        })
    }

    /// Wrap a rendered request as a CloudEvent: attributes from the templates, else the
    /// inbound event, else derived; the data is the rendered body (the inbound event's data
    /// when the body is forwarded unchanged from a structured event).
    fn cloud_event(
        &self,
        ce: &CloudEventsTemplate,
        r: &Renderer,
        mut headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Result<(Vec<(String, String)>, Bytes), TemplateError> {
        let ctx = r.ctx;
        let inbound = ctx.cloudevent;
        let mut attrs = cloudevents::Attributes::new();
        // Extensions of the inbound event travel with it.
        if let Some(inb) = inbound {
            for name in inb.attributes.keys() {
                if !CE_CORE.contains(&name.as_str())
                    && let Some(v) = inb.attribute(name)
                {
                    attrs.insert(name.clone(), v);
                }
            }
        }
        for name in CE_ATTRIBUTES {
            let templated = match ce.attributes.iter().find(|(n, _)| *n == name) {
                Some((_, t)) => {
                    let field = format!("cloudEvents.{name}");
                    let mut out = Out::new(&field, MAX_HEADER_BYTES);
                    r.render_text(t, &field, &mut out)?;
                    Some(out.into_string()).filter(|v| !v.is_empty())
                }
                None => None,
            };
            let value = templated
                .or_else(|| inbound.and_then(|c| c.attribute(name)))
                .or_else(|| match name {
                    "id" => Some(ctx.event_id.to_string()),
                    "source" => Some(if ce.default_source.is_empty() {
                        "/".to_string()
                    } else {
                        ce.default_source.clone()
                    }),
                    "type" => Some(cloudevents::DEFAULT_TYPE.to_string()),
                    "time" => Some(ctx.received_at.to_string()),
                    _ => None,
                });
            if let Some(v) = value {
                if name == "time"
                    && time::OffsetDateTime::parse(
                        &v,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .is_err()
                {
                    return Err(TemplateError::BadAttribute {
                        attribute: "time",
                        reason: "rendered value is not an RFC 3339 timestamp",
                    });
                }
                attrs.insert(name.to_string(), v);
            }
        }
        // The data: forwarded unchanged from a structured event, its `data`; else the body.
        let content_type = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone());
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        let (data, content_type) = match inbound {
            Some(inb) if self.body.is_none() && inb.mode == cloudevents::Mode::Structured => (
                inb.data_bytes(ctx.body),
                inb.attribute("datacontenttype")
                    .or_else(|| Some("application/json".into())),
            ),
            _ => (body.to_vec(), content_type),
        };
        if let Some(ct) = content_type {
            attrs.insert("datacontenttype".into(), ct);
        }
        match ce.mode {
            CloudEventsMode::Binary => {
                let (h, data) = cloudevents::to_binary(&attrs, &data);
                headers.retain(|(n, _)| !n.to_ascii_lowercase().starts_with("ce-"));
                headers.extend(h);
                Ok((headers, Bytes::from(data)))
            }
            CloudEventsMode::Structured => {
                headers.push((
                    "content-type".into(),
                    cloudevents::STRUCTURED_CONTENT_TYPE.into(),
                ));
                Ok((
                    headers,
                    Bytes::from(cloudevents::to_structured(&attrs, &data)),
                ))
            }
        }
    }
}

/// The authority (user info, host, port) of an http(s) url, as a WHATWG parser (the one
/// the HTTP client uses) delimits it for these schemes: it ends at `/`, a backslash, `?` or `#`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Authority<'a> {
    authority: &'a str,
    /// A delimiter ends it (otherwise it runs to the end of the text given).
    complete: bool,
}

/// `None` unless `url` starts with `http://`, `https://` or `nats://` (any case).
fn authority_of(url: &str) -> Option<Authority<'_>> {
    let scheme_len = if url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://") || s.eq_ignore_ascii_case("nats://"))
    {
        7
    } else if url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        8
    } else {
        return None;
    };
    let rest = &url[scheme_len..];
    match rest.find(['/', '\\', '?', '#']) {
        Some(end) => Some(Authority {
            authority: &rest[..end],
            complete: true,
        }),
        None => Some(Authority {
            authority: rest,
            complete: false,
        }),
    }
}

/// A bounded output buffer.
struct Out {
    field: String,
    limit: usize,
    buf: Vec<u8>,
}

impl Out {
    fn new(field: &str, limit: usize) -> Out {
        Out {
            field: field.to_string(),
            limit,
            buf: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) -> Result<(), TemplateError> {
        if self.buf.len() + s.len() > self.limit {
            return Err(self.too_large());
        }
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn too_large(&self) -> TemplateError {
        TemplateError::TooLarge {
            field: self.field.clone(),
            limit: self.limit,
        }
    }

    /// Every push is a `&str` (or serde_json output, which is UTF-8).
    fn into_string(self) -> String {
        String::from_utf8(self.buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl io::Write for Out {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len() + b.len() > self.limit {
            return Err(io::Error::other("template output limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Resolved<'a> {
    Json(&'a serde_json::Value),
    Text(String),
}

struct Renderer<'c, 'a> {
    ctx: &'c EventContext<'a>,
    on_missing: MissingPolicy,
}

impl<'c, 'a> Renderer<'c, 'a> {
    fn resolve(&self, r: &Reference) -> Option<Resolved<'a>> {
        let ctx = self.ctx;
        match &r.kind {
            RefKind::Payload(path) => {
                let mut v = ctx.payload?;
                for seg in path {
                    v = match (seg, v) {
                        (Seg::Key(k), serde_json::Value::Object(o)) => o.get(k)?,
                        (Seg::Key(k), serde_json::Value::Array(a)) => {
                            a.get(k.parse::<usize>().ok()?)?
                        }
                        (Seg::Index(i), serde_json::Value::Array(a)) => a.get(*i)?,
                        _ => return None,
                    };
                }
                Some(Resolved::Json(v))
            }
            RefKind::Header(h) => header_joined(ctx.headers, h).map(Resolved::Text),
            RefKind::Query(q) => query_first(ctx.query, q).map(Resolved::Text),
            RefKind::Env(n) => ctx
                .env
                .get(n)
                .map(|v| Resolved::Text(v.value.expose().to_string())),
            RefKind::EventId => Some(Resolved::Text(ctx.event_id.to_string())),
            RefKind::EventReceivedAt => Some(Resolved::Text(ctx.received_at.to_string())),
            RefKind::CloudEvent(name) => ctx
                .cloudevent
                .and_then(|c| c.attributes.get(name))
                .map(Resolved::Json),
        }
    }

    fn missing(&self, r: &Reference, field: &str) -> Result<(), TemplateError> {
        match self.on_missing {
            MissingPolicy::Empty => Ok(()),
            MissingPolicy::Error => Err(TemplateError::Missing {
                field: field.to_string(),
                path: r.text.clone(),
            }),
        }
    }

    /// The text form of a reference (empty when missing under the `Empty` policy).
    fn text_of(&self, r: &Reference, field: &str) -> Result<String, TemplateError> {
        match self.resolve(r) {
            None => self.missing(r, field).map(|()| String::new()),
            Some(Resolved::Text(s)) => Ok(s),
            Some(Resolved::Json(v)) => Ok(match v {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        }
    }

    fn render_text(
        &self,
        t: &TextTemplate,
        field: &str,
        out: &mut Out,
    ) -> Result<(), TemplateError> {
        for piece in &t.pieces {
            match piece {
                Piece::Lit(s) => out.push(s)?,
                Piece::Ref(r) => match self.resolve(r) {
                    None => self.missing(r, field)?,
                    Some(Resolved::Text(s)) => out.push(&s)?,
                    Some(Resolved::Json(serde_json::Value::String(s))) => out.push(s)?,
                    Some(Resolved::Json(serde_json::Value::Null)) => {}
                    Some(Resolved::Json(v)) => {
                        serde_json::to_writer(&mut *out, v).map_err(|_| out.too_large())?
                    }
                },
            }
        }
        Ok(())
    }

    fn render_json(&self, node: &JNode, out: &mut Out) -> Result<(), TemplateError> {
        match node {
            JNode::Lit(s) => out.push(s),
            JNode::Str(t) => {
                let mut tmp = Out::new("body", out.limit);
                self.render_text(t, "body", &mut tmp)?;
                let s = tmp.into_string();
                serde_json::to_writer(&mut *out, &s).map_err(|_| out.too_large())
            }
            JNode::Whole(r) => match self.resolve(r) {
                None => {
                    self.missing(r, "body")?;
                    out.push("null")
                }
                Some(Resolved::Json(v)) => {
                    serde_json::to_writer(&mut *out, v).map_err(|_| out.too_large())
                }
                Some(Resolved::Text(s)) => {
                    serde_json::to_writer(&mut *out, &s).map_err(|_| out.too_large())
                }
            },
            JNode::Array(items) => {
                out.push("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(",")?;
                    }
                    self.render_json(item, out)?;
                }
                out.push("]")
            }
            JNode::Object(entries) => {
                out.push("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(",")?;
                    }
                    let mut key = Out::new("body", out.limit);
                    self.render_text(k, "body", &mut key)?;
                    let key = key.into_string();
                    serde_json::to_writer(&mut *out, &key).map_err(|_| out.too_large())?;
                    out.push(":")?;
                    self.render_json(v, out)?;
                }
                out.push("}")
            }
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Parse a text template.
fn parse_text(src: &str) -> Result<TextTemplate, ParseError> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let bytes = src.as_bytes();
    while i < src.len() {
        let Some(rel) = src[i..].find('$') else {
            lit.push_str(&src[i..]);
            break;
        };
        lit.push_str(&src[i..i + rel]);
        i += rel;
        match bytes.get(i + 1) {
            Some(b'$') => {
                lit.push('$');
                i += 2;
            }
            Some(b'{') => {
                let close = src[i + 2..].find('}').ok_or(ParseError {
                    offset: i,
                    message: "unclosed ${ (add a closing })".into(),
                })?;
                let inner = &src[i + 2..i + 2 + close];
                let (kind, used) = parse_reference(inner, i)?;
                if used != inner.len() {
                    return Err(ParseError {
                        offset: i + 2 + used,
                        message: format!("unexpected {:?} inside ${{…}}", &inner[used..]),
                    });
                }
                flush(&mut pieces, &mut lit);
                pieces.push(Piece::Ref(Reference {
                    text: format!("${inner}"),
                    kind,
                }));
                i += 3 + close;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let (kind, used) = parse_reference(&src[i + 1..], i)?;
                flush(&mut pieces, &mut lit);
                pieces.push(Piece::Ref(Reference {
                    text: src[i..i + 1 + used].to_string(),
                    kind,
                }));
                i += 1 + used;
            }
            _ => {
                lit.push('$');
                i += 1;
            }
        }
    }
    flush(&mut pieces, &mut lit);
    Ok(TextTemplate { pieces })
}

fn flush(pieces: &mut Vec<Piece>, lit: &mut String) {
    if !lit.is_empty() {
        pieces.push(Piece::Lit(std::mem::take(lit)));
    }
}

/// Parse `root(.name|[n])*` at the start of `s`. Returns the reference and the bytes used.
/// `base` is the offset of the reference's `$` in the template, where errors point.
fn parse_reference(s: &str, base: usize) -> Result<(RefKind, usize), ParseError> {
    let name_end = |from: usize| {
        s[from..]
            .find(|c: char| !is_name_char(c))
            .map(|n| from + n)
            .unwrap_or(s.len())
    };
    let root_end = name_end(0);
    let root = &s[..root_end];
    let mut segs = Vec::new();
    let mut i = root_end;
    loop {
        let rest = &s[i..];
        if rest.starts_with('.') && rest[1..].starts_with(is_name_char) {
            let end = name_end(i + 1);
            segs.push(Seg::Key(s[i + 1..end].to_string()));
            i = end;
        } else if let Some(after) = rest.strip_prefix('[') {
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            if digits == 0 || !after[digits..].starts_with(']') {
                break;
            }
            let n = after[..digits].parse::<usize>().map_err(|_| ParseError {
                offset: base,
                message: "index too large".into(),
            })?;
            segs.push(Seg::Index(n));
            i += digits + 2;
        } else {
            break;
        }
    }
    let err = |message: String| ParseError {
        offset: base,
        message,
    };
    let one_name = |what: &str| -> Result<String, ParseError> {
        match segs.as_slice() {
            [Seg::Key(k)] => Ok(k.clone()),
            _ => Err(err(format!(
                "${what} takes exactly one name, as in ${what}.NAME (use ${{…}} to end it)"
            ))),
        }
    };
    let kind = match root {
        "payload" => RefKind::Payload(segs.clone()),
        "headers" => RefKind::Header(one_name("headers")?.to_ascii_lowercase()),
        "query" => RefKind::Query(one_name("query")?),
        "env" => RefKind::Env(one_name("env")?),
        "event" => match segs.as_slice() {
            [Seg::Key(k)] if k == "id" => RefKind::EventId,
            [Seg::Key(k)] if k == "receivedAt" => RefKind::EventReceivedAt,
            [Seg::Key(k), Seg::Key(attr)] if k == "cloudevent" => RefKind::CloudEvent(attr.clone()),
            _ => {
                let other = s[root_end..i].trim_start_matches('.');
                return Err(err(format!(
                    "unknown $event.{other} (use $event.id, $event.receivedAt or $event.cloudevent.<attribute>)"
                )));
            }
        },
        other => {
            return Err(err(format!(
                "unknown reference ${other} (roots: payload, headers, query, env, event; write $$ for a literal $)"
            )));
        }
    };
    Ok((kind, i))
}

fn compile_body(src: &str) -> Result<BodyTemplate, ParseError> {
    // Check the reference syntax over the raw text first: this gives positions in the body
    // as written, whichever mode it ends up in.
    let text = parse_text(src)?;
    match serde_json::from_str::<Raw>(src) {
        Ok(raw) => Ok(BodyTemplate::Json(to_node(raw)?)),
        Err(_) => Ok(BodyTemplate::Text(text)),
    }
}

fn to_node(raw: Raw) -> Result<JNode, ParseError> {
    Ok(match raw {
        Raw::Lit(s) => JNode::Lit(s),
        Raw::Str(s) => {
            // Offsets inside a JSON string are not positions in the body: the raw-text pass
            // has already located syntax errors; this one only sees escaped forms.
            let t = parse_text(&s).map_err(|e| ParseError {
                offset: 0,
                message: format!("in a JSON string: {}", e.message),
            })?;
            match t.pieces.as_slice() {
                [Piece::Ref(r)] => JNode::Whole(r.clone()),
                _ => JNode::Str(t),
            }
        }
        Raw::Array(items) => {
            JNode::Array(items.into_iter().map(to_node).collect::<Result<_, _>>()?)
        }
        Raw::Object(entries) => JNode::Object(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = parse_text(&k).map_err(|e| ParseError {
                        offset: 0,
                        message: format!("in a JSON key: {}", e.message),
                    })?;
                    Ok((key, to_node(v)?))
                })
                .collect::<Result<_, ParseError>>()?,
        ),
    })
}

/// A JSON document that keeps object keys in the order written (serde_json's `Value`
/// sorts them unless its `preserve_order` feature is on).
enum Raw {
    /// `null`, a boolean or a number, as JSON text.
    Lit(String),
    Str(String),
    Array(Vec<Raw>),
    Object(Vec<(String, Raw)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
                Ok(Raw::Lit("null".into()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Raw, E> {
                Ok(Raw::Lit(b.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Raw, E> {
                Ok(Raw::Lit(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Raw, E> {
                Ok(Raw::Lit(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Raw, E> {
                Ok(Raw::Lit(
                    serde_json::Number::from_f64(n)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "null".into()),
                ))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Raw, E> {
                Ok(Raw::Str(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Raw, E> {
                Ok(Raw::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(x) = a.next_element()? {
                    items.push(x);
                }
                Ok(Raw::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Raw>()? {
                    entries.push((k, v));
                }
                Ok(Raw::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
