//! HTTP clients of destinations. Every client has the same guard: no redirects, the network
//! guard in its resolver, the worker's fixed addresses. A destination with `tls` gets a
//! client of its own, built once per TLS material and kept until the material changes or
//! the destination goes: it trusts only the destination's CA (when given) and presents its
//! client certificate (when given).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_config::DestinationTls;
use sha2::Digest as _;

use crate::netguard::{GuardedResolver, NetGuard};
use crate::sync::lock;

/// The builder every destination client starts from.
pub fn guarded_builder(
    netguard: &Arc<NetGuard>,
    resolve: &[(String, SocketAddr)],
) -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver(netguard.clone())));
    for (host, addr) in resolve {
        b = b.resolve(host, *addr);
    }
    b.pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("causeway/", env!("CARGO_PKG_VERSION")))
}

/// A client for `tls`. Errors say what is wrong with the material, never quote the key.
pub fn client_for(
    netguard: &Arc<NetGuard>,
    resolve: &[(String, SocketAddr)],
    tls: &DestinationTls,
) -> Result<reqwest::Client, String> {
    let mut b = guarded_builder(netguard, resolve);
    if let Some(ca) = &tls.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .map_err(|_| "tls: the CA is not PEM certificates".to_string())?;
        if certs.is_empty() {
            return Err("tls: the CA holds no certificate".into());
        }
        b = b.tls_certs_only(certs);
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert_pem, &tls.client_key_pem) {
        let pem = format!("{}\n{}", key.expose(), cert);
        let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| {
            "tls: the client certificate Secret does not hold a PEM certificate and key".to_string()
        })?;
        b = b.identity(identity);
    }
    b.build().map_err(|e| format!("tls: {e}"))
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    bridge: String,
    destination: String,
    material: [u8; 32],
}

impl Key {
    fn new(bridge: &str, destination: &str, tls: &DestinationTls) -> Key {
        let mut h = sha2::Sha256::new();
        for part in [
            tls.ca_pem.as_deref(),
            tls.client_cert_pem.as_deref(),
            tls.client_key_pem.as_ref().map(|k| k.expose()),
        ] {
            h.update(part.unwrap_or_default().as_bytes());
            h.update([0]);
        }
        Key {
            bridge: bridge.to_string(),
            destination: destination.to_string(),
            material: h.finalize().into(),
        }
    }
}

/// The clients of destinations with `tls`.
#[derive(Default)]
pub struct TlsClients {
    clients: Mutex<HashMap<Key, reqwest::Client>>,
}

impl TlsClients {
    pub(crate) fn get(
        &self,
        netguard: &Arc<NetGuard>,
        resolve: &[(String, SocketAddr)],
        bridge: &str,
        destination: &str,
        tls: &DestinationTls,
    ) -> Result<reqwest::Client, String> {
        let key = Key::new(bridge, destination, tls);
        if let Some(c) = lock(&self.clients).get(&key) {
            return Ok(c.clone());
        }
        let client = client_for(netguard, resolve, tls)?;
        let mut clients = lock(&self.clients);
        // Material that changed replaces the destination's old client.
        clients.retain(|k, _| !(k.bridge == bridge && k.destination == destination));
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Drops the clients of destinations that are no longer configured.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        lock(&self.clients).retain(|k, _| keep(&k.bridge, &k.destination));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_material_is_refused_without_quoting_the_key() {
        let guard = Arc::new(NetGuard::new(Vec::new()));
        let tls = DestinationTls {
            ca_pem: Some("not a certificate".into()),
            client_cert_pem: None,
            client_key_pem: None,
        };
        let err = client_for(&guard, &[], &tls).unwrap_err();
        assert!(err.contains("CA"), "{err}");
        let tls = DestinationTls {
            ca_pem: None,
            client_cert_pem: Some(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            ),
            client_key_pem: Some(causeway_config::SecretValue("very-secret-key-bytes".into())),
        };
        let err = client_for(&guard, &[], &tls).unwrap_err();
        assert!(err.contains("client certificate"), "{err}");
        assert!(!err.contains("very-secret-key-bytes"), "{err}");
    }
}
