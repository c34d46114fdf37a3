//! The network guard of destinations: where a bridge may send events.
//!
//! A destination URL is written by whoever may create Bridges in a namespace, so it must
//! not reach what only the node should: link-local addresses and cloud metadata services
//! (the instance's credentials live there). Private ranges stay allowed, because in-cluster
//! services live there. The check runs after DNS resolution, inside the HTTP client's
//! resolver, so a name that resolves to a refused address is refused too (no second lookup
//! that could answer differently), and on the URL's host when it is an IP literal.
//!
//! Two lists change the default:
//! - the pool's `allowedDestinationCidrs` (from the WorkerConfig) unlock link-local or
//!   metadata addresses inside them;
//! - the worker's `--deny-destination-cidr` (set by the platform team) refuses more
//!   ranges, whatever the pool allows.
//!
//! Behind an outbound proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, which
//! the HTTP client honours, see [`OutboundProxy`]) the client connects to the proxy and
//! the proxy resolves the destination, so the resolver never sees it: the destination's
//! name is resolved here first and every address it has must pass ([`NetGuard::check_proxied`]).
//! The proxy's own host is the platform's choice and is never refused.
//!
//! The address classification is the plugin host's ([`causeway_plugins::outbound::classify`]),
//! so destinations and plugins agree on what an address is.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use causeway_plugins::outbound::{AddrClass, classify, is_metadata_name};

/// An IP network, `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network (expected a.b.c.d/n or x::/n)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 network also matches the v4-mapped form of its addresses.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a list of CIDRs; the error names the first bad entry.
pub fn parse_cidrs<S: AsRef<str>>(items: &[S]) -> Result<Vec<Cidr>, String> {
    items.iter().map(|s| Cidr::parse(s.as_ref())).collect()
}

/// Where destinations may connect. Shared by the HTTP client's resolver and the worker,
/// which updates the pool's allowed ranges on every configuration swap.
#[derive(Debug, Default)]
pub struct NetGuard {
    /// Refused whatever the pool says (the worker's flags).
    denied: Vec<Cidr>,
    /// Link-local or metadata addresses the pool unlocked.
    allowed: RwLock<Vec<Cidr>>,
    /// The outbound proxy the HTTP client uses, if any.
    proxy: Option<OutboundProxy>,
}

impl NetGuard {
    pub fn new(denied: Vec<Cidr>) -> NetGuard {
        NetGuard {
            denied,
            allowed: RwLock::new(Vec::new()),
            proxy: None,
        }
    }

    /// The same guard, told which proxy the HTTP client sends destinations through.
    pub fn with_proxy(mut self, proxy: Option<OutboundProxy>) -> NetGuard {
        self.proxy = proxy;
        self
    }

    /// The proxy the client sends `url` through, when there is one.
    pub fn proxy_for(&self, url: &str) -> Option<&OutboundProxy> {
        let proxy = self.proxy.as_ref()?;
        let uri: http::Uri = url.parse().ok()?;
        proxy.matcher.intercept(&uri).map(|_| proxy)
    }

    /// The check before a request to `url`: the host of an IP literal here, names in the
    /// client's resolver; a request through a proxy is checked here whole
    /// ([`NetGuard::check_proxied`]), since the resolver then sees only the proxy.
    pub async fn check_destination(&self, url: &str) -> Result<(), String> {
        if self.proxy_for(url).is_some() {
            self.check_proxied(url).await
        } else {
            self.check_url(url)
        }
    }

    /// The destination check for a request that goes through a proxy: its host name is
    /// resolved here and every address must pass, since the proxy (not the client's
    /// resolver) connects to it. A name that does not resolve here is left to the proxy,
    /// which may see names this worker cannot.
    pub async fn check_proxied(&self, url: &str) -> Result<(), String> {
        self.check_url(url)?;
        let Ok(u) = reqwest::Url::parse(url) else {
            return Ok(());
        };
        let Some(host) = u.host_str() else {
            return Ok(());
        };
        if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
            return Ok(()); // an IP literal: checked by check_url
        }
        let Ok(addrs) = tokio::net::lookup_host((host, 0)).await else {
            return Ok(());
        };
        let reasons: Vec<String> = addrs.filter_map(|a| self.check_ip(a.ip()).err()).collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(format!("{host}: {}", reasons.join("; ")))
        }
    }

    /// Whether `name` is the host of a configured proxy (the resolver does not refuse it).
    fn is_proxy_host(&self, name: &str) -> bool {
        self.proxy
            .as_ref()
            .is_some_and(|p| p.hosts.iter().any(|h| h.eq_ignore_ascii_case(name)))
    }

    /// The pool's `allowedDestinationCidrs`, from the active configuration.
    pub fn set_allowed(&self, allowed: Vec<Cidr>) {
        *crate::sync::write(&self.allowed) = allowed;
    }

    /// Why a connection to `ip` is refused, if it is.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if let Some(net) = self.denied.iter().find(|n| n.contains(ip)) {
            return Err(format!(
                "{ip} is in {net}, which this worker denies to destinations"
            ));
        }
        let class = classify(ip);
        if matches!(class, AddrClass::LinkLocal | AddrClass::Metadata) {
            let allowed = crate::sync::read(&self.allowed);
            if !allowed.iter().any(|n| n.contains(ip)) {
                return Err(format!(
                    "{ip} is a {} address (list it in the pool's allowedDestinationCidrs to allow it)",
                    class.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Why a connection to host name `name` is refused before resolving it, if it is.
    pub fn check_name(&self, name: &str) -> Result<(), String> {
        if is_metadata_name(name) {
            return Err(format!("{name} is a cloud metadata service"));
        }
        Ok(())
    }

    /// Checks the host of a URL that is an IP literal (the resolver never sees those).
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let Ok(u) = reqwest::Url::parse(url) else {
            return Ok(()); // the client reports the bad URL itself
        };
        let Some(host) = u.host_str() else {
            return Ok(());
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check_ip(ip),
            Err(_) => self.check_name(host),
        }
    }
}

/// The outbound proxy settings of the environment (`HTTP_PROXY`, `HTTPS_PROXY`,
/// `ALL_PROXY`, `NO_PROXY` and their lower-case forms, as curl reads them), read with the
/// same matcher the HTTP client applies to them, so both agree on which destinations go
/// through a proxy.
pub struct OutboundProxy {
    matcher: hyper_util::client::proxy::matcher::Matcher,
    /// Host names of the proxies (credentials are never kept here).
    hosts: Vec<String>,
}

impl OutboundProxy {
    /// The proxy settings of this process's environment; None when no proxy is set.
    pub fn from_env() -> Option<OutboundProxy> {
        let matcher = hyper_util::client::proxy::matcher::Matcher::from_env();
        let mut hosts: Vec<String> = ["http://x.invalid/", "https://x.invalid/"]
            .iter()
            .filter_map(|u| u.parse::<http::Uri>().ok())
            .filter_map(|u| matcher.intercept(&u))
            .filter_map(|i| i.uri().host().map(str::to_string))
            .collect();
        hosts.sort();
        hosts.dedup();
        (!hosts.is_empty()).then_some(OutboundProxy { matcher, hosts })
    }

    /// The proxies' host names, for the log.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

impl std::fmt::Debug for OutboundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URLs: they may carry credentials.
        f.debug_struct("OutboundProxy")
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// The HTTP client's resolver: the system's, then the guard on every address.
#[derive(Clone, Debug)]
pub struct GuardedResolver(pub Arc<NetGuard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // The proxy is the platform's egress: it may sit where destinations may not.
            let is_proxy = guard.is_proxy_host(&host);
            if !is_proxy {
                guard.check_name(&host).map_err(refused)?;
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if is_proxy {
                return Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs);
            }
            let mut reasons = Vec::new();
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match guard.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        reasons.push(r);
                        false
                    }
                })
                .collect();
            if ok.is_empty() && !reasons.is_empty() {
                return Err(refused(format!("{host}: {}", reasons.join("; "))));
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A refusal as the resolver's error: the attempt log shows its text.
#[derive(Debug, thiserror::Error)]
#[error("destination refused: {0}")]
pub struct Refused(pub String);

fn refused(reason: String) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(Refused(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(denied: &[&str], allowed: &[&str]) -> NetGuard {
        let g = NetGuard::new(parse_cidrs(denied).unwrap());
        g.set_allowed(parse_cidrs(allowed).unwrap());
        g
    }

    #[test]
    fn cidrs_parse_and_match() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.1.2.3".parse().unwrap()),
            "v4-mapped form"
        );
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert_eq!(
            Cidr::parse("127.0.0.2").unwrap().to_string(),
            "127.0.0.2/32"
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com/8").is_err());
        assert!(
            parse_cidrs(&["10.0.0.0/8", "nope"])
                .unwrap_err()
                .contains("nope")
        );
    }

    /// Issue 12 item 4: the classification destinations get.
    #[test]
    fn link_local_and_metadata_are_refused_private_and_public_are_not() {
        let g = guard(&[], &[]);
        for ip in [
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "168.63.129.16",
            "::ffff:169.254.169.254",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(
                g.check_ip(ip.parse().unwrap()).is_err(),
                "{ip} must be refused"
            );
        }
        for ip in [
            "10.0.0.5",
            "192.168.1.1",
            "172.20.0.1",
            "127.0.0.1",
            "::1",
            "8.8.8.8",
            "fd12::1",
        ] {
            assert_eq!(
                g.check_ip(ip.parse().unwrap()),
                Ok(()),
                "{ip} must be allowed"
            );
        }
        assert!(g.check_name("metadata.google.internal").is_err());
        assert!(g.check_name("Metadata.Google.Internal.").is_err());
        assert_eq!(g.check_name("api.corp.internal"), Ok(()));
        assert!(
            g.check_url("http://169.254.169.254/latest/meta-data/")
                .is_err()
        );
        assert!(g.check_url("http://[::ffff:a9fe:a9fe]/").is_err());
        assert!(
            g.check_url("http://metadata.google.internal/computeMetadata/v1/")
                .is_err()
        );
        assert_eq!(g.check_url("http://10.0.0.1:8080/x"), Ok(()));
    }

    #[test]
    fn the_pool_unlocks_and_the_worker_denies() {
        let g = guard(&["10.96.0.0/12"], &["169.254.0.0/16"]);
        assert_eq!(g.check_ip("169.254.1.1".parse().unwrap()), Ok(()));
        assert!(
            g.check_ip("10.96.0.10".parse().unwrap())
                .unwrap_err()
                .contains("denies")
        );
        // The worker's deny list wins over the pool's allow list.
        let g = guard(&["169.254.169.254"], &["169.254.0.0/16"]);
        assert!(g.check_ip("169.254.169.254".parse().unwrap()).is_err());
    }
}
