//! Outbound HTTP from guests: the allow-list (Spin syntax), the SSRF guard, and the
//! connection to the resolved, checked address.
//!
//! Order of checks for `scheme://host:port`:
//! 1. the allow-list must match (deny by default);
//! 2. `<name>.internal` (one label) is service chaining, resolved by the host, no socket;
//! 3. the host is resolved once; every address is classified and non-public ones
//!    (loopback, private, link-local, CGNAT, metadata, …) are refused unless the host
//!    was listed explicitly by name or IP (a `*` wildcard never unlocks them);
//! 4. the connection goes to the checked address itself, so a second resolution (DNS
//!    rebinding) cannot change where the request lands.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::error::LoadError;

/// Largest response body a guest may receive from one outbound request.
pub const MAX_OUTBOUND_RESPONSE_BYTES: u64 = 8 << 20;

/// Host names of cloud metadata services, refused unless listed explicitly.
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "metadata.platformequinix.com",
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum SchemeRule {
    Any,
    Http,
    Https,
    /// Some other scheme (redis, mysql, …): never matches HTTP.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostRule {
    /// `*`: any host (never unlocks non-public addresses).
    Any,
    /// `*.example.com`: any name under the suffix (stored as `.example.com`).
    Suffix(String),
    /// A name, listed explicitly (lowercase).
    Name(String),
    /// An IP address, listed explicitly.
    Ip(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PortRule {
    Any,
    /// No port given: the scheme's default.
    Default,
    Port(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct AllowedHost {
    scheme: SchemeRule,
    host: HostRule,
    port: PortRule,
}

/// A parsed `allowedOutboundHosts` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<AllowedHost>,
}

/// How a request matched the allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowMatch {
    /// The host was listed by name or IP, not only through a wildcard: non-public
    /// addresses are allowed for it.
    pub explicit: bool,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowList {
    /// Parses entries such as `https://api.example.com`, `http://*.internal`,
    /// `https://api.example.com:8443`, `*://example.com:*`, `http://127.0.0.1:8080`,
    /// `http://[::1]:8080`, `*://*:*`.
    pub fn parse(entries: &[String]) -> Result<AllowList, LoadError> {
        let mut out = Vec::new();
        for entry in entries {
            let bad = |message: &str| LoadError::AllowedHost {
                entry: entry.clone(),
                message: message.to_string(),
            };
            let (scheme, rest) = entry
                .split_once("://")
                .ok_or_else(|| bad("expected scheme://host[:port]"))?;
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "*" => SchemeRule::Any,
                "http" => SchemeRule::Http,
                "https" => SchemeRule::Https,
                s if !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) =>
                {
                    SchemeRule::Other
                }
                _ => return Err(bad("invalid scheme")),
            };
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            if rest.is_empty()
                || rest.contains('/')
                || rest.contains('@')
                || rest.contains('?')
                || rest.contains('#')
            {
                return Err(bad(
                    "expected only a host and an optional port, no path or user",
                ));
            }
            let (host, port) = split_host_port(rest).ok_or_else(|| bad("invalid host or port"))?;
            let port = match port {
                None => PortRule::Default,
                Some("*") => PortRule::Any,
                Some(p) => PortRule::Port(p.parse::<u16>().map_err(|_| bad("invalid port"))?),
            };
            let host = host.to_ascii_lowercase();
            let host = if host == "*" {
                HostRule::Any
            } else if let Some(suffix) = host.strip_prefix("*.") {
                if suffix.is_empty() || suffix.contains('*') {
                    return Err(bad(
                        "a wildcard must be the whole first label, as in *.example.com",
                    ));
                }
                HostRule::Suffix(format!(".{suffix}"))
            } else if host.contains('*') {
                return Err(bad(
                    "a wildcard must be the whole first label, as in *.example.com",
                ));
            } else if let Some(ip) = parse_ip_host(&host) {
                HostRule::Ip(ip)
            } else {
                if !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    || host.starts_with('.')
                {
                    return Err(bad("invalid host name"));
                }
                HostRule::Name(host)
            };
            out.push(AllowedHost { scheme, host, port });
        }
        Ok(AllowList { entries: out })
    }

    /// Whether `scheme://host:port` is allowed; `host` is a name or an IP literal
    /// (IPv6 without brackets).
    pub fn check(&self, scheme: &str, host: &str, port: u16) -> Option<AllowMatch> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_ip = parse_ip_host(&host);
        let mut found: Option<AllowMatch> = None;
        for e in &self.entries {
            let scheme_ok = match e.scheme {
                SchemeRule::Any => scheme == "http" || scheme == "https",
                SchemeRule::Http => scheme == "http",
                SchemeRule::Https => scheme == "https",
                SchemeRule::Other => false,
            };
            if !scheme_ok {
                continue;
            }
            let port_ok = match e.port {
                PortRule::Any => true,
                PortRule::Default => default_port(scheme) == Some(port),
                PortRule::Port(p) => p == port,
            };
            if !port_ok {
                continue;
            }
            let explicit = match &e.host {
                HostRule::Any => Some(false),
                HostRule::Suffix(suffix) => {
                    (host.len() > suffix.len() && host.ends_with(suffix.as_str())).then_some(false)
                }
                HostRule::Name(name) => (*name == host).then_some(true),
                HostRule::Ip(ip) => (Some(*ip) == host_ip).then_some(true),
            };
            if let Some(explicit) = explicit {
                let explicit = explicit || found.is_some_and(|f| f.explicit);
                found = Some(AllowMatch { explicit });
            }
        }
        found
    }
}

/// Splits `host[:port]`, handling `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => None, // bare IPv6 needs brackets
        Some((h, p)) if !h.is_empty() && !p.is_empty() => Some((h, Some(p))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

fn parse_ip_host(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

/// What kind of address an IP is, for the SSRF guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrClass {
    Public,
    Loopback,
    /// RFC 1918, IPv6 unique-local (fc00::/7) and site-local (fec0::/10).
    Private,
    LinkLocal,
    /// 100.64.0.0/10.
    Cgnat,
    /// Cloud metadata endpoints (169.254.169.254, fd00:ec2::254, 100.100.100.200, …).
    Metadata,
    Unspecified,
    Broadcast,
    Multicast,
    /// 0/8, 240/4, 192.0.0.0/24, 198.18/15, discard-only and similar.
    Reserved,
}

impl AddrClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Public => "public",
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::LinkLocal => "link-local",
            AddrClass::Cgnat => "cgnat",
            AddrClass::Metadata => "metadata",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Multicast => "multicast",
            AddrClass::Reserved => "reserved",
        }
    }
}

/// Classifies an address. IPv6 forms that embed an IPv4 address (v4-mapped, v4-compatible,
/// NAT64 64:ff9b::/96, 6to4 2002::/16) are classified by the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let o = ip.octets();
    // 168.63.129.16 is Azure's wireserver (platform metadata, DNS, health) on every VM.
    if o == [169, 254, 169, 254]
        || o == [169, 254, 170, 2]
        || o == [100, 100, 100, 200]
        || o == [192, 0, 0, 192]
        || o == [168, 63, 129, 16]
    {
        return AddrClass::Metadata;
    }
    if ip.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if ip.is_broadcast() {
        return AddrClass::Broadcast;
    }
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    if ip.is_private() {
        return AddrClass::Private;
    }
    if ip.is_link_local() {
        return AddrClass::LinkLocal;
    }
    if o[0] == 100 && (o[1] & 0xc0) == 64 {
        return AddrClass::Cgnat;
    }
    if ip.is_multicast() {
        return AddrClass::Multicast;
    }
    // 0/8 "this network", 240/4 reserved, 192.0.0.0/24 IETF, 198.18/15 benchmarking.
    if o[0] == 0
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        return AddrClass::Reserved;
    }
    AddrClass::Public
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return AddrClass::Metadata;
    }
    if ip.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    // SIIT ::ffff:0:a.b.c.d (RFC 6052/7915 "IPv4-translated") reaches a.b.c.d too.
    if s[0..6] == [0, 0, 0, 0, 0xffff, 0] {
        return classify_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // Teredo 2001::/32 tunnels to an IPv4 relay and client: never treated as public.
    if s[0] == 0x2001 && s[1] == 0 {
        return AddrClass::Reserved;
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] {
        return classify_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
    if s[0] == 0x64 && s[1] == 0xff9b {
        if s[2..6] == [0, 0, 0, 0] {
            return classify_v4(Ipv4Addr::new(
                (s[6] >> 8) as u8,
                s[6] as u8,
                (s[7] >> 8) as u8,
                s[7] as u8,
            ));
        }
        if s[2] == 1 {
            return AddrClass::Private;
        }
    }
    // 6to4: 2002:AABB:CCDD::/48 carries a.b.c.d.
    if s[0] == 0x2002 {
        return classify_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
        return AddrClass::Private;
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        return AddrClass::LinkLocal;
    }
    if (s[0] & 0xff00) == 0xff00 {
        return AddrClass::Multicast;
    }
    // 100::/64 discard-only, 2001:db8::/32 documentation.
    if (s[0] == 0x100 && s[1..4] == [0, 0, 0]) || (s[0] == 0x2001 && s[1] == 0xdb8) {
        return AddrClass::Reserved;
    }
    AddrClass::Public
}

/// Whether `host` names a cloud metadata service.
pub fn is_metadata_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    METADATA_NAMES.contains(&h.as_str())
}

/// Why an outbound request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub target: String,
    /// Metric label: `not_allowed`, `address`, `metadata`, `scheme`.
    pub reason: &'static str,
    pub detail: String,
}

/// The host's verdict on where to connect.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// Connect here (the host name is kept for TLS and the Host header).
    Connect(SocketAddr),
    Refused(Refusal),
}

/// Resolves `host` (once) and applies the SSRF guard.
pub(crate) async fn resolve_checked(
    target: &str,
    host: &str,
    port: u16,
    explicit: bool,
    deadline: Instant,
) -> Result<Resolved, HttpError> {
    let refuse = |reason: &'static str, detail: String| {
        Ok(Resolved::Refused(Refusal {
            target: target.to_string(),
            reason,
            detail,
        }))
    };
    if !explicit && is_metadata_name(host) {
        return refuse(
            "metadata",
            format!("{host} is a cloud metadata service name"),
        );
    }
    let addrs: Vec<SocketAddr> = match parse_ip_host(host) {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => {
            match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
                Err(_) => return Err(HttpError::DnsTimeout),
                Ok(Err(e)) => {
                    return Err(HttpError::DnsError {
                        rcode: Some(e.to_string()),
                        info_code: None,
                    });
                }
                Ok(Ok(it)) => it.collect(),
            }
        }
    };
    let mut refused = Vec::new();
    for addr in &addrs {
        let class = classify(addr.ip());
        if class == AddrClass::Public || explicit {
            return Ok(Resolved::Connect(*addr));
        }
        refused.push(format!("{} is {}", addr.ip(), class.as_str()));
    }
    if refused.is_empty() {
        return Err(HttpError::DestinationNotFound);
    }
    refuse(
        "address",
        format!(
            "{} (list the host explicitly in allowedOutboundHosts to allow it)",
            refused.join(", ")
        ),
    )
}

/// A response body that fails past `limit` bytes or after `deadline`.
pub(crate) struct BoundedBody<B> {
    inner: B,
    seen: u64,
    limit: u64,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<B> BoundedBody<B> {
    pub fn new(inner: B, limit: u64, deadline: Instant) -> Self {
        BoundedBody {
            inner,
            seen: 0,
            limit,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl<B> Body for BoundedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            this.seen,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type IoFuture = Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>;

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = match rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
            {
                Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
                // ring supports the default versions; this branch is unreachable in practice.
                Err(_) => rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            };
            Arc::new(config)
        })
        .clone()
}

/// Sends `request` to `addr` (already checked), HTTP/1.1, TLS for https with SNI from
/// `host`. The response body is bounded in size and by `deadline`.
pub(crate) async fn send_to(
    mut request: http::Request<WasiBody>,
    addr: SocketAddr,
    host: &str,
    tls: bool,
    deadline: Instant,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let connect = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(HttpError::Connect)?;
        // Small requests and responses: send them at once.
        let _ = stream.set_nodelay(true);
        let io: Box<dyn IoStream> = if tls {
            let name = match parse_ip_host(host) {
                Some(ip) => rustls::pki_types::ServerName::from(ip),
                None => rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(HttpError::InvalidDnsNameError)?,
            };
            let connector = tokio_rustls::TlsConnector::from(tls_config());
            Box::new(
                connector
                    .connect(name, stream)
                    .await
                    .map_err(HttpError::Tls)?,
            )
        } else {
            Box::new(stream)
        };
        hyper::client::conn::http1::Builder::new()
            .handshake(wasmtime_wasi_http::io::TokioIo::new(io))
            .await
            .map_err(HttpError::from)
    };
    let (mut sender, conn) = match tokio::time::timeout_at(deadline, connect).await {
        Ok(r) => r?,
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    // Only the path goes on the request line; the Host header carries the name.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let (request, ignored) = detach_ignored_body(request);
    let mut drain = Box::pin(async move {
        if let Some(body) = ignored {
            discard(body).await;
        }
    });
    let mut drain_done = false;
    let mut conn = Box::pin(conn);
    let mut conn_done = false;
    let send = sender.send_request(request);
    tokio::pin!(send);
    let response = loop {
        tokio::select! {
            r = &mut send => break r.map_err(HttpError::from)?,
            c = &mut conn, if !conn_done => {
                conn_done = true;
                c.map_err(HttpError::from)?;
            }
            () = &mut drain, if !drain_done => drain_done = true,
            _ = tokio::time::sleep_until(deadline) => return Err(HttpError::ConnectionReadTimeout),
        }
    };
    let io: IoFuture = Box::new(async move {
        let conn = async {
            if !conn_done {
                conn.await.map_err(HttpError::from)?;
            }
            Ok(())
        };
        let drain = async {
            if !drain_done {
                drain.await;
            }
        };
        let (conn, ()) = tokio::join!(conn, drain);
        conn
    });
    let response =
        response.map(|b| BoundedBody::new(b, MAX_OUTBOUND_RESPONSE_BYTES, deadline).boxed_unsync());
    Ok((response, io))
}

/// hyper sends no body with a GET, HEAD or CONNECT whose length is unknown (no
/// `content-length`, no `transfer-encoding`) and drops it once the head is written. The
/// guest may still be writing that body (`wstd` writes an empty one alongside waiting for
/// the response): into a dropped body its write fails as a closed stream, which the guest
/// reads as "connection reset" although the request went through. Such a body is taken
/// off the request and read to its end with nothing sent, which is what hyper would send.
fn detach_ignored_body(
    request: http::Request<WasiBody>,
) -> (http::Request<WasiBody>, Option<WasiBody>) {
    let ignored = matches!(
        *request.method(),
        http::Method::GET | http::Method::HEAD | http::Method::CONNECT
    ) && !request.headers().contains_key(http::header::CONTENT_LENGTH)
        && !request
            .headers()
            .contains_key(http::header::TRANSFER_ENCODING);
    if !ignored {
        return (request, None);
    }
    let (parts, body) = request.into_parts();
    let empty = http_body_util::Empty::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync();
    (http::Request::from_parts(parts, empty), Some(body))
}

/// Reads `body` to its end (or its first error), dropping what it holds.
pub(crate) async fn discard(mut body: WasiBody) {
    while let Some(Ok(_)) = body.frame().await {}
}

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> IoStream for T {}

/// Reads a whole body, failing past `limit` bytes.
pub(crate) async fn collect_limited<B>(
    body: B,
    limit: u64,
) -> Result<(Bytes, http::HeaderMap), B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut body = body;
    let mut out = bytes::BytesMut::new();
    let mut trailers = http::HeaderMap::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) => {
                out.extend_from_slice(&data);
                if out.len() as u64 > limit {
                    // The caller maps a None-limit break to its own error.
                    break;
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.extend(t);
                }
            }
        }
    }
    Ok((out.freeze(), trailers))
}

/// The default timeout budget for an outbound request without a deadline.
pub const DEFAULT_OUTBOUND_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn classification_table() {
        let table: &[(&str, AddrClass)] = &[
            ("8.8.8.8", AddrClass::Public),
            ("1.1.1.1", AddrClass::Public),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.255.255.254", AddrClass::Loopback),
            ("10.0.0.1", AddrClass::Private),
            ("10.255.255.255", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("172.32.0.1", AddrClass::Public),
            ("172.15.255.255", AddrClass::Public),
            ("192.168.1.1", AddrClass::Private),
            ("169.254.1.1", AddrClass::LinkLocal),
            ("169.254.169.254", AddrClass::Metadata),
            ("100.64.0.1", AddrClass::Cgnat),
            ("100.127.255.255", AddrClass::Cgnat),
            ("100.128.0.1", AddrClass::Public),
            ("100.100.100.200", AddrClass::Metadata),
            ("0.0.0.0", AddrClass::Unspecified),
            ("0.1.2.3", AddrClass::Reserved),
            ("255.255.255.255", AddrClass::Broadcast),
            ("224.0.0.1", AddrClass::Multicast),
            ("239.255.255.250", AddrClass::Multicast),
            ("240.0.0.1", AddrClass::Reserved),
            ("198.18.0.1", AddrClass::Reserved),
            ("::1", AddrClass::Loopback),
            ("::", AddrClass::Unspecified),
            ("fc00::1", AddrClass::Private),
            ("fd12:3456::1", AddrClass::Private),
            ("fd00:ec2::254", AddrClass::Metadata),
            ("fe80::1", AddrClass::LinkLocal),
            ("febf::1", AddrClass::LinkLocal),
            ("fec0::1", AddrClass::Private),
            ("ff02::1", AddrClass::Multicast),
            ("2606:4700:4700::1111", AddrClass::Public),
            ("2001:db8::1", AddrClass::Reserved),
            // IPv4 carried in IPv6.
            ("::ffff:127.0.0.1", AddrClass::Loopback),
            ("::ffff:10.1.2.3", AddrClass::Private),
            ("::ffff:169.254.169.254", AddrClass::Metadata),
            ("::ffff:8.8.8.8", AddrClass::Public),
            ("::127.0.0.1", AddrClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddrClass::Metadata),
            ("64:ff9b::808:808", AddrClass::Public),
            ("2002:7f00:1::", AddrClass::Loopback),
            ("2002:0a00:0001::1", AddrClass::Private),
            // Issue 12 item 4: SIIT, Teredo and Azure's wireserver are not public.
            ("::ffff:0:a9fe:a9fe", AddrClass::Metadata),
            ("::ffff:0:7f00:1", AddrClass::Loopback),
            ("::ffff:0:a00:1", AddrClass::Private),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", AddrClass::Reserved),
            ("2001::1", AddrClass::Reserved),
            ("2001:4860:4860::8888", AddrClass::Public),
            ("168.63.129.16", AddrClass::Metadata),
            ("::ffff:168.63.129.16", AddrClass::Metadata),
        ];
        for (ip, want) in table {
            let got = classify(ip.parse().unwrap());
            assert_eq!(got, *want, "{ip}");
        }
    }

    #[test]
    fn spin_syntax_matching() {
        let a = allow(&[
            "https://api.example.com",
            "http://*.internal",
            "http://127.0.0.1:8080",
            "*://svc.example.org:*",
        ]);
        assert_eq!(
            a.check("https", "api.example.com", 443),
            Some(AllowMatch { explicit: true })
        );
        assert_eq!(
            a.check("https", "API.example.com", 443),
            Some(AllowMatch { explicit: true })
        );
        assert_eq!(
            a.check("http", "api.example.com", 80),
            None,
            "scheme must match"
        );
        assert_eq!(
            a.check("https", "api.example.com", 8443),
            None,
            "default port only"
        );
        assert_eq!(a.check("https", "evil.com", 443), None);
        assert_eq!(
            a.check("http", "store-api.internal", 80),
            Some(AllowMatch { explicit: false })
        );
        assert_eq!(
            a.check("http", "internal", 80),
            None,
            "a wildcard needs a label"
        );
        assert_eq!(
            a.check("http", "127.0.0.1", 8080),
            Some(AllowMatch { explicit: true })
        );
        assert_eq!(a.check("http", "127.0.0.1", 8081), None);
        assert_eq!(
            a.check("http", "svc.example.org", 1234),
            Some(AllowMatch { explicit: true })
        );
        assert_eq!(
            a.check("https", "svc.example.org", 443),
            Some(AllowMatch { explicit: true })
        );

        let any = allow(&["*://*:*"]);
        assert_eq!(
            any.check("http", "10.0.0.1", 80),
            Some(AllowMatch { explicit: false })
        );
        let https_any = allow(&["https://*"]);
        assert_eq!(
            https_any.check("https", "x.y", 443),
            Some(AllowMatch { explicit: false })
        );
        assert_eq!(https_any.check("https", "x.y", 444), None);
        let v6 = allow(&["http://[::1]:9000"]);
        assert_eq!(
            v6.check("http", "::1", 9000),
            Some(AllowMatch { explicit: true })
        );
        assert_eq!(
            allow(&[]).check("https", "example.com", 443),
            None,
            "deny by default"
        );
        // Explicit wins when a wildcard also matches.
        let both = allow(&["http://*.example.com", "http://a.example.com"]);
        assert_eq!(
            both.check("http", "a.example.com", 80),
            Some(AllowMatch { explicit: true })
        );
        // Other schemes never match HTTP.
        assert_eq!(
            allow(&["redis://cache:6379"]).check("http", "cache", 6379),
            None
        );
    }

    #[test]
    fn allow_list_rejects_garbage() {
        for bad in [
            "example.com",
            "http://",
            "http://a/b",
            "http://a:b",
            "http://a*.b",
            "http://x.*.com",
            "http://u@h",
            "://h",
        ] {
            assert!(AllowList::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn guard_refuses_non_public_unless_explicit() {
        let deadline = Instant::now() + Duration::from_secs(1);
        for (host, reason) in [
            ("127.0.0.1", "address"),
            ("169.254.169.254", "address"),
            ("10.1.2.3", "address"),
            ("::1", "address"),
        ] {
            match resolve_checked("t", host, 80, false, deadline)
                .await
                .unwrap()
            {
                Resolved::Refused(r) => assert_eq!(r.reason, reason, "{host}"),
                other => panic!("{host}: {other:?}"),
            }
        }
        // Metadata names are refused before any resolution (nothing is looked up).
        match resolve_checked("t", "metadata.google.internal", 80, false, deadline)
            .await
            .unwrap()
        {
            Resolved::Refused(r) => assert_eq!(r.reason, "metadata"),
            other => panic!("{other:?}"),
        }
        match resolve_checked("t", "127.0.0.1", 8080, true, deadline)
            .await
            .unwrap()
        {
            Resolved::Connect(a) => assert_eq!(a, "127.0.0.1:8080".parse().unwrap()),
            other => panic!("{other:?}"),
        }
    }
}
