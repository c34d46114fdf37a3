//! NATS JetStream destinations: `nats://host[:port]/subject`, and their credentials.
//!
//! The url names the server and the subject published to; credentials never sit in the
//! url (it shows in status, the console and AsyncAPI documents): they come from Secrets,
//! as [`NatsAuth`]. One parser serves the CRD validation, the worker's template compiler
//! and the publish, so the three agree on what a nats url is.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::SecretValue;

/// The port a `nats://` url without one connects to.
pub const DEFAULT_PORT: u16 = 4222;

/// Whether `url` is meant as a nats destination (its scheme, any case).
pub fn is_nats_url(url: &str) -> bool {
    url.get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("nats://"))
}

/// A parsed `nats://host[:port]/subject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsUrl {
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub subject: String,
}

impl NatsUrl {
    /// Parses a nats destination url; the error says what is wrong, in the words a user
    /// reads in `kubectl apply` or the attempt log.
    pub fn parse(url: &str) -> Result<NatsUrl, NatsUrlError> {
        let err = |why: &'static str| NatsUrlError(why);
        if !is_nats_url(url) {
            return Err(err("a nats url starts with nats://"));
        }
        let rest = &url[7..];
        let (authority, subject) = rest
            .split_once('/')
            .ok_or(err("a nats url needs a subject: nats://host:port/subject"))?;
        if authority.contains('@') {
            return Err(err(
                "a nats url carries no credentials: give them from a Secret in the destination's nats section",
            ));
        }
        let (host, port) = split_host_port(authority).ok_or(err(
            "a nats url's host is a name or an address with an optional numeric port: nats://host:port/subject",
        ))?;
        if subject.contains(['?', '#']) {
            return Err(err("a nats url has no query or fragment"));
        }
        check_subject(subject).map_err(NatsUrlError)?;
        Ok(NatsUrl {
            host: host.to_string(),
            port,
            subject: subject.to_string(),
        })
    }

    /// `host:port` as the client dials it (IPv6 in brackets).
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        if h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let is_ipv6 = authority.starts_with('[');
    if !is_ipv6
        && (host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
    {
        return None;
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|p| *p > 0)?
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// A subject published to: dot-separated tokens, none empty, no whitespace, no wildcard
/// (`*`, `>`: a message is published to one subject).
pub fn check_subject(subject: &str) -> Result<(), &'static str> {
    if subject.is_empty() {
        return Err("a nats url needs a subject: nats://host:port/subject");
    }
    if subject
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("a nats subject has no whitespace or control characters");
    }
    if subject.split('.').any(str::is_empty) {
        return Err("a nats subject is tokens separated by single dots (no empty token)");
    }
    if subject
        .split('.')
        .any(|t| t.contains('*') || t.contains('>'))
    {
        return Err("a nats subject to publish to has no wildcard (* or >)");
    }
    Ok(())
}

/// Why a nats url is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsUrlError(pub &'static str);

impl fmt::Display for NatsUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NatsUrlError {}

/// What a nats destination presents to the server, from Secrets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum NatsAuth {
    #[serde(rename_all = "camelCase")]
    UserPassword { user: String, password: SecretValue },
    #[serde(rename_all = "camelCase")]
    Token { token: SecretValue },
    /// A user nkey seed (`SU...`): the client signs the server's nonce.
    #[serde(rename_all = "camelCase")]
    Nkey { seed: SecretValue },
    /// A `.creds` file: a user JWT and its nkey seed.
    #[serde(rename_all = "camelCase")]
    Credentials { creds: SecretValue },
}

impl NatsAuth {
    /// The secret it holds, for redaction.
    pub fn secret(&self) -> &SecretValue {
        match self {
            NatsAuth::UserPassword { password, .. } => password,
            NatsAuth::Token { token } => token,
            NatsAuth::Nkey { seed } => seed,
            NatsAuth::Credentials { creds } => creds,
        }
    }
}

/// The nats section of a destination.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NatsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NatsAuth>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_parse() {
        let u = NatsUrl::parse("nats://127.0.0.1:4333/orders.created").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.subject.as_str()),
            ("127.0.0.1", 4333, "orders.created")
        );
        assert_eq!(u.server(), "127.0.0.1:4333");
        let u = NatsUrl::parse("NATS://nats.infra.svc/events").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("nats.infra.svc", DEFAULT_PORT));
        let u = NatsUrl::parse("nats://[::1]:4222/a.b").unwrap();
        assert_eq!(u.server(), "[::1]:4222");
        // A template reference in the subject is a token like any other.
        assert!(NatsUrl::parse("nats://n:4222/orders.$payload.kind").is_ok());
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        for (url, why) in [
            ("https://x/y", "starts with nats://"),
            ("nats://host:4222", "needs a subject"),
            ("nats://host:4222/", "needs a subject"),
            ("nats://u:p@host:4222/s", "carries no credentials"),
            ("nats://host:port/s", "numeric port"),
            ("nats://host:0/s", "numeric port"),
            ("nats://host:70000/s", "numeric port"),
            ("nats://:4222/s", "numeric port"),
            ("nats://ho st/s", "numeric port"),
            ("nats://host/s?x=1", "no query"),
            ("nats://host/orders..created", "no empty token"),
            ("nats://host/orders.", "no empty token"),
            ("nats://host/orders.*", "no wildcard"),
            ("nats://host/orders.>", "no wildcard"),
            ("nats://host/or ders", "whitespace"),
        ] {
            let e = NatsUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn auth_serialises_tagged_and_never_prints_the_secret() {
        let a = NatsAuth::UserPassword {
            user: "causeway".into(),
            password: SecretValue("pw-123".into()),
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"type": "userPassword", "user": "causeway", "password": "pw-123"})
        );
        assert!(!format!("{a:?}").contains("pw-123"));
        assert_eq!(a.secret().expose(), "pw-123");
    }
}
