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

/// How often a server looks at its certificate files for a change ([`FileCert`]).
pub const CERT_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// A server's certificate and key as their files hold them: looked at again, at most every
/// [`CERT_CHECK`], by the next handshake, so a renewed certificate (certbot, `adit certs`) is
/// served without a restart. Files that changed but do not load (half-written, a key that does
/// not match) are logged and the previous pair served until they do.
#[derive(Debug)]
struct FileCert {
    files: TlsFiles,
    every: std::time::Duration,
    state: std::sync::Mutex<ServedCert>,
}

#[derive(Debug)]
struct ServedCert {
    key: Arc<rustls::sign::CertifiedKey>,
    stamps: [Option<(std::time::SystemTime, u64)>; 2],
    checked: std::time::Instant,
}

impl FileCert {
    fn new(
        files: &TlsFiles,
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        every: std::time::Duration,
    ) -> Result<Self> {
        let key = rustls::sign::CertifiedKey::from_der(certs, key, &provider())
            .map_err(|e| tls_error("certificate and key", &e))?;
        Ok(Self {
            state: std::sync::Mutex::new(ServedCert {
                key: Arc::new(key),
                stamps: stamps(files),
                checked: std::time::Instant::now(),
            }),
            files: files.clone(),
            every,
        })
    }

    /// The pair as the files hold it now.
    fn load(&self) -> Result<rustls::sign::CertifiedKey> {
        let (certs, key) = identity(&self.files)?;
        rustls::sign::CertifiedKey::from_der(certs, key, &provider())
            .map_err(|e| tls_error("certificate and key", &e))
    }
}

/// The certificate's and key's modification times and lengths (none: unreadable).
fn stamps(files: &TlsFiles) -> [Option<(std::time::SystemTime, u64)>; 2] {
    [&files.cert, &files.key].map(|path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
}

impl rustls::server::ResolvesServerCert for FileCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let mut served = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if served.checked.elapsed() >= self.every {
            served.checked = std::time::Instant::now();
            let now = stamps(&self.files);
            if now != served.stamps {
                match self.load() {
                    Ok(key) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate files changed: serving them from now on");
                        served.key = Arc::new(key);
                        served.stamps = now;
                    }
                    Err(e) => {
                        tracing::warn!(cert = %self.files.cert.display(), error = %e, "TLS certificate files changed but do not load; serving the previous ones until they do");
                    }
                }
            }
        }
        Some(served.key.clone())
    }
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
    acceptor_checking(files, client_ca, protocols, CERT_CHECK)
}

/// [`acceptor_for`], looking at the certificate files for a change at most every `every`
/// instead of every [`CERT_CHECK`].
pub fn acceptor_checking(
    files: &TlsFiles,
    client_ca: Option<&Path>,
    protocols: &[&[u8]],
    every: std::time::Duration,
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
    let mut config = builder.with_cert_resolver(Arc::new(FileCert::new(files, certs, key, every)?));
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TLS acceptor that follows its files: the certificate, key and client CA are read again
/// when one of them changes (looked at, at most every `every`, by the next handshake), so a
/// renewed or rotated certificate is served without a restart. A change that does not load (a
/// file half-written, a key that does not match) is logged and the old acceptor kept until the
/// files load; connections already up keep their session.
#[derive(Clone)]
pub struct ReloadingAcceptor {
    files: TlsFiles,
    client_ca: Option<PathBuf>,
    protocols: Vec<Vec<u8>>,
    every: std::time::Duration,
    state: Arc<std::sync::Mutex<Loaded>>,
}

/// What a [`ReloadingAcceptor`] serves now, and from which files.
struct Loaded {
    acceptor: TlsAcceptor,
    stamps: Vec<Option<(std::time::SystemTime, u64)>>,
    checked: std::time::Instant,
}

impl ReloadingAcceptor {
    /// [`acceptor_for`] `files` (and `client_ca`), looked at again at most every `every`.
    pub fn new(
        files: &TlsFiles,
        client_ca: Option<&Path>,
        protocols: &[&[u8]],
        every: std::time::Duration,
    ) -> Result<Self> {
        let reloading = Self {
            files: files.clone(),
            client_ca: client_ca.map(Path::to_owned),
            protocols: protocols.iter().map(|p| p.to_vec()).collect(),
            every,
            state: Arc::new(std::sync::Mutex::new(Loaded {
                acceptor: acceptor_for(files, client_ca, protocols)?,
                stamps: Vec::new(),
                checked: std::time::Instant::now(),
            })),
        };
        reloading.lock().stamps = reloading.stamps();
        Ok(reloading)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Each file's modification time and length (none: unreadable).
    fn stamps(&self) -> Vec<Option<(std::time::SystemTime, u64)>> {
        [
            Some(&self.files.cert),
            Some(&self.files.key),
            self.client_ca.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|path| {
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
    }

    /// The acceptor for the next handshake: the files' as they are now, if they changed and
    /// load, else the one served so far.
    pub fn current(&self) -> TlsAcceptor {
        let mut loaded = self.lock();
        if loaded.checked.elapsed() < self.every {
            return loaded.acceptor.clone();
        }
        loaded.checked = std::time::Instant::now();
        let stamps = self.stamps();
        if stamps == loaded.stamps {
            return loaded.acceptor.clone();
        }
        let protocols: Vec<&[u8]> = self.protocols.iter().map(Vec::as_slice).collect();
        match acceptor_for(&self.files, self.client_ca.as_deref(), &protocols) {
            Ok(acceptor) => {
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate files changed: serving them from now on");
                loaded.acceptor = acceptor;
                loaded.stamps = stamps;
            }
            Err(e) => {
                tracing::warn!(cert = %self.files.cert.display(), error = %e, "TLS certificate files changed but do not load; serving the previous ones until they do");
            }
        }
        loaded.acceptor.clone()
    }
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
