//! `adit certs`: the cluster's certificates with rcgen. A CA (made once, then reused so workers
//! can be added later), the coordinator's server certificate for the names and IPs it is
//! reached by, and one client certificate per worker whose common name is the worker's id.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use adit_config::Invalid;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{Error, Result};

/// What `adit certs` writes.
#[derive(Debug, Clone)]
pub struct CertsPlan {
    /// The folder to write into.
    pub out: PathBuf,
    /// DNS names and IPs the coordinator is reached by.
    pub server_names: Vec<String>,
    /// Worker ids to make client certificates for.
    pub workers: Vec<String>,
    /// The cluster's name, in the CA's common name.
    pub cluster: String,
}

/// The files written, for the caller to print.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Paths in the order written.
    pub files: Vec<PathBuf>,
    /// Whether the CA already existed and was reused.
    pub reused_ca: bool,
}

/// A certificate error.
fn cert_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Certificate(format!("{what}: {e}"))
}

/// Writes `contents` to `path`, keys readable by the owner only: a key file is created 0600
/// (and an existing one narrowed to 0600) before a byte of the key is written, so it is never
/// readable by others, not even briefly (issue 23).
fn write(path: &Path, contents: &str, secret: bool, written: &mut Written) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| failed("writing", e))?;
    if secret {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| failed("protecting", e))?;
    }
    file.write_all(contents.as_bytes())
        .map_err(|e| failed("writing", e))?;
    written.files.push(path.to_owned());
    Ok(())
}

/// A worker id or host name must be a plain token: it becomes a file name and a subject token.
fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(Invalid::new(
            "certs",
            format!(
                "{kind} {name:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        )))
    }
}

/// Makes what `plan` asks for.
pub fn make(plan: &CertsPlan) -> Result<Written> {
    for w in &plan.workers {
        check_name("worker", w)?;
        if w.contains('.') {
            return Err(Error::Config(Invalid::new(
                "certs",
                format!("worker {w:?}: no '.' in a worker id (it is a subject token)"),
            )));
        }
    }
    for name in &plan.server_names {
        if name.parse::<IpAddr>().is_err() {
            check_name("server name", name)?;
        }
    }
    std::fs::create_dir_all(&plan.out)
        .map_err(|e| Error::io(format!("creating {}", plan.out.display()), e))?;
    let mut written = Written::default();
    let (ca_key, ca_pem) = ca(plan, &mut written)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| cert_error("CA", e))?;
    if !plan.server_names.is_empty() {
        let mut params = leaf("coordinator", &plan.server_names)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_files(&plan.out, "coordinator", &params, &issuer, &mut written)?;
    }
    for worker in &plan.workers {
        let mut params = leaf(worker, &[])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf_files(&plan.out, worker, &params, &issuer, &mut written)?;
    }
    Ok(written)
}

/// The CA's key and certificate: read from `ca.key`/`ca.pem` when both exist, made otherwise.
fn ca(plan: &CertsPlan, written: &mut Written) -> Result<(KeyPair, String)> {
    let (key_path, cert_path) = (plan.out.join("ca.key"), plan.out.join("ca.pem"));
    if key_path.exists() && cert_path.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
        };
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| cert_error("ca.key", e))?;
        written.reused_ca = true;
        return Ok((key, read(&cert_path)?));
    }
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("adit cluster {} CA", plan.cluster),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let key = KeyPair::generate().map_err(|e| cert_error("CA key", e))?;
    let cert = params.self_signed(&key).map_err(|e| cert_error("CA", e))?;
    write(&key_path, &key.serialize_pem(), true, written)?;
    write(&cert_path, &cert.pem(), false, written)?;
    Ok((key, cert.pem()))
}

/// Parameters of a leaf certificate named `cn` with `names` as its subject alternative names.
fn leaf(cn: &str, names: &[String]) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    for name in names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|e| cert_error(&format!("name {name}"), e))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(params)
}

/// Signs `params` with a new key and writes `<name>.pem` and `<name>.key`.
fn leaf_files(
    out: &Path,
    name: &str,
    params: &CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
    written: &mut Written,
) -> Result<()> {
    let key = KeyPair::generate().map_err(|e| cert_error(&format!("{name} key"), e))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| cert_error(name, e))?;
    write(
        &out.join(format!("{name}.key")),
        &key.serialize_pem(),
        true,
        written,
    )?;
    write(
        &out.join(format!("{name}.pem")),
        &cert.pem(),
        false,
        written,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_ca_once_and_names_workers_by_common_name() {
        let dir = tempfile::tempdir().unwrap();
        let plan = CertsPlan {
            out: dir.path().to_owned(),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            workers: vec!["rig1".into()],
            cluster: "c1".into(),
        };
        let first = make(&plan).unwrap();
        assert!(!first.reused_ca);
        let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let again = make(&CertsPlan {
            workers: vec!["rig2".into()],
            server_names: vec![],
            ..plan.clone()
        })
        .unwrap();
        assert!(again.reused_ca);
        assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);
        let certs = adit_protocol::tls::load_certs(&dir.path().join("rig2.pem")).unwrap();
        assert_eq!(
            adit_protocol::tls::common_name(&certs[0]).as_deref(),
            Some("rig2")
        );
        let bad = CertsPlan {
            workers: vec!["../x".into()],
            ..plan
        };
        assert!(make(&bad).is_err());
    }

    #[test]
    fn a_key_is_never_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("rig.key");
        // A key file left world-readable by an older release is narrowed when rewritten.
        std::fs::write(&key, "old").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut written = Written::default();
        for path in [key.clone(), dir.path().join("new.key")] {
            write(&path, "KEY", true, &mut written).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "KEY");
        }
    }
}
