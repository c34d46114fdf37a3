//! The connection URL and TLS, spelled as libpq spells them: `sslmode` is `disable`,
//! `prefer` (the default), `require` (encrypted, the certificate not checked),
//! `verify-ca` or `verify-full` (checked against `sslrootcert`, else the system's web
//! roots). TLS is rustls with the ring provider.

use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How connections are made.
#[derive(Clone)]
pub enum Tls {
    None,
    Rustls(MakeRustlsConnect),
}

impl tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> for Tls {
    type Stream = TlsStream;
    type TlsConnect = TlsConnect;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<TlsConnect, std::io::Error> {
        match self {
            Tls::None => Ok(TlsConnect::None),
            Tls::Rustls(m) => <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                tokio_postgres::Socket,
            >>::make_tls_connect(m, domain)
            .map(TlsConnect::Rustls)
            .map_err(std::io::Error::other),
        }
    }
}

type RustlsConnect =
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::TlsConnect;
type RustlsStream =
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

pub enum TlsConnect {
    None,
    Rustls(RustlsConnect),
}

pub enum TlsStream {
    None(tokio_postgres::tls::NoTlsStream),
    Rustls(Box<RustlsStream>),
}

impl tokio_postgres::tls::TlsConnect<tokio_postgres::Socket> for TlsConnect {
    type Stream = TlsStream;
    type Error = std::io::Error;
    type Future = futures::future::BoxFuture<'static, Result<TlsStream, std::io::Error>>;

    fn connect(self, socket: tokio_postgres::Socket) -> Self::Future {
        use futures::FutureExt;
        match self {
            TlsConnect::None => {
                let f = tokio_postgres::tls::TlsConnect::connect(tokio_postgres::NoTls, socket);
                async move { f.await.map(TlsStream::None).map_err(std::io::Error::other) }.boxed()
            }
            TlsConnect::Rustls(c) => {
                let f = tokio_postgres::tls::TlsConnect::connect(c, socket);
                async move {
                    f.await
                        .map(|s| TlsStream::Rustls(Box::new(s)))
                        .map_err(std::io::Error::other)
                }
                .boxed()
            }
        }
    }
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            TlsStream::None(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            TlsStream::Rustls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            TlsStream::None(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            TlsStream::Rustls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            TlsStream::None(s) => std::pin::Pin::new(s).poll_flush(cx),
            TlsStream::Rustls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            TlsStream::None(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            TlsStream::Rustls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tokio_postgres::tls::TlsStream for TlsStream {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        match self {
            TlsStream::None(s) => s.channel_binding(),
            TlsStream::Rustls(s) => s.channel_binding(),
        }
    }
}

/// The URL without the TLS parameters tokio-postgres does not know, and how to connect.
/// Errors never quote the URL (it may hold a password).
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, Tls), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = "prefer".to_string();
    let mut root: Option<String> = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = v.to_string(),
            "sslrootcert" => root = Some(percent_decode(v)),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let mut cfg = tokio_postgres::Config::from_str(&url)
        .map_err(|e| format!("the postgres URL does not parse: {e}"))?;
    let verify = match mode.as_str() {
        "disable" => {
            cfg.ssl_mode(SslMode::Disable);
            return Ok((cfg, Tls::None));
        }
        "allow" | "prefer" => {
            cfg.ssl_mode(SslMode::Prefer);
            false
        }
        "require" => {
            cfg.ssl_mode(SslMode::Require);
            // libpq checks the certificate under `require` only when a root is given.
            root.is_some()
        }
        "verify-ca" | "verify-full" => {
            cfg.ssl_mode(SslMode::Require);
            true
        }
        other => {
            return Err(format!(
                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        match &root {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                if certs.is_empty() {
                    return Err(format!("sslrootcert {path}: no certificate in it"));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    Ok((cfg, Tls::Rustls(MakeRustlsConnect::new(config))))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .map_err(|_| ())
                .and_then(|h| u8::from_str_radix(h, 16).map_err(|_| ()))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `sslmode=prefer` and `require` without a root: encrypted, the certificate unchecked
/// (what libpq does). The signatures are still checked, so the session is the server's
/// that sent the certificate.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmodes_parse_as_libpq_spells_them() {
        let (c, t) = parse("postgres://u:p@db:5433/app?sslmode=disable").unwrap();
        assert!(matches!(t, Tls::None));
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        assert_eq!(c.get_ports(), &[5433]);
        let (c, t) = parse("postgres://u:p@db/app?sslmode=verify-full&application_name=x").unwrap();
        assert!(matches!(t, Tls::Rustls(_)));
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        let (c, _) = parse("postgres://u:p@db/app").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Prefer);
        let e = parse("postgres://u:s3cret@db/app?sslmode=bogus")
            .err()
            .unwrap();
        assert!(e.contains("bogus") && !e.contains("s3cret"), "{e}");
        let e =
            parse("postgres://u:s3cret@db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .err()
                .unwrap();
        assert!(e.contains("sslrootcert") && !e.contains("s3cret"), "{e}");
    }
}
