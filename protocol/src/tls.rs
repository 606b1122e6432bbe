//! TLS for every adit connection (rustls, ring provider): the pool's acceptor for miners, the
//! cluster's acceptor that requires a client certificate from its CA, and the client side for
//! `stratum+ssl://` upstreams and workers presenting their certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{Error, Result};

/// Where a certificate chain and its private key are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A TLS error with what we were doing.
fn tls_error(what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Tls {
        reason: format!("{what}: {e}"),
    }
}

/// The ring provider every config is built on.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file `path`; refuses a file with none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(&format!("reading {}", path.display()), &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&format!("parsing {}", path.display()), &e))?;
    if certs.is_empty() {
        return Err(Error::Tls {
            reason: format!("{} holds no certificate", path.display()),
        });
    }
    Ok(certs)
}

/// The certificate chain and key of `files`.
fn identity(files: &TlsFiles) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls_error(&format!("reading {}", files.key.display()), &e))?;
    Ok((certs, key))
}

/// A root store holding every certificate of the PEM file `ca`.
fn roots(ca: &Path) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(ca)? {
        store
            .add(cert)
            .map_err(|e| tls_error(&format!("CA certificate in {}", ca.display()), &e))?;
    }
    Ok(store)
}

/// A server acceptor presenting `files`. With `client_ca`, every client must present a
/// certificate issued by that CA (mutual TLS); without, clients are anonymous.
pub fn acceptor(files: &TlsFiles, client_ca: Option<&Path>) -> Result<TlsAcceptor> {
    acceptor_for(files, client_ca, &[])
}

/// [`acceptor`] for a protocol that names itself in the handshake (ALPN): `h2` for gRPC,
/// whose clients refuse a server that selects none, `postgresql` for PostgreSQL's.
pub fn acceptor_for(
    files: &TlsFiles,
    client_ca: Option<&Path>,
    protocols: &[&[u8]],
) -> Result<TlsAcceptor> {
    let (certs, key) = identity(files)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", &e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| tls_error("client certificate verifier", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("certificate and key", &e))?;
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client connector trusting `ca` (or the Web PKI's roots without one), presenting
/// `identity` when given (a cluster worker's certificate).
pub fn connector(ca: Option<&Path>, identity_files: Option<&TlsFiles>) -> Result<TlsConnector> {
    let store = match ca {
        Some(ca) => roots(ca)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", &e))?
        .with_root_certificates(store);
    let config = match identity_files {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let (certs, key) = identity(files)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| tls_error("client certificate and key", &e))?
        }
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The subject common name of a DER certificate (how the cluster names a worker).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(name)
}
