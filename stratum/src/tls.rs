//! Optional TLS for the Stratum server (rustls, ring provider): a PEM certificate chain and key.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

/// Where the certificate chain and private key are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A TLS acceptor from `files`.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let err = |what: &str, e: &dyn std::fmt::Display| Error::Tls {
        reason: format!("{what}: {e}"),
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| err(&format!("reading {}", files.cert.display()), &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&format!("parsing {}", files.cert.display()), &e))?;
    if certs.is_empty() {
        return Err(Error::Tls {
            reason: format!("{} holds no certificate", files.cert.display()),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| err(&format!("reading {}", files.key.display()), &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err("certificate and key", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
