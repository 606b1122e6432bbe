//! Certificate rotation without a restart (issue 61), on a real socket with real handshakes: a
//! server built by `tls::acceptor_checking` serves the certificate its files hold; once they
//! are replaced by another, the next handshakes present the new one (a client trusting only it
//! connects, one trusting only the old does not), with no new acceptor; files that do not load
//! keep the last good certificate served.

use std::path::Path;
use std::time::Duration;

use adit_protocol::TlsFiles;
use adit_protocol::tls::{acceptor_checking, connector};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes a new self-signed certificate for localhost and its key as `files`, and the
/// certificate alone as `trust` (what a client trusts).
fn issue(files: &TlsFiles, trust: &Path) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&files.cert, cert.cert.pem()).unwrap();
    std::fs::write(&files.key, cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(trust, cert.cert.pem()).unwrap();
}

/// Whether a client trusting only `trust` completes a handshake and an echo with `addr`.
async fn connects(addr: std::net::SocketAddr, trust: &Path) -> bool {
    let tls = connector(Some(trust), None).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let Ok(mut stream) = tls.connect(name, tcp).await else {
        return false;
    };
    if stream.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await.is_ok() && &reply == b"ping"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_to_the_next_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
    };
    let (old, new) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
    issue(&files, &old);
    let acceptor = acceptor_checking(&files, None, &[], Duration::from_millis(100)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 4];
                    if stream.read_exact(&mut buf).await.is_ok() {
                        let _ = stream.write_all(&buf).await;
                    }
                }
            });
        }
    });
    assert!(
        connects(addr, &old).await,
        "the first certificate is not served"
    );

    issue(&files, &new);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !connects(addr, &new).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !connects(addr, &old).await,
        "the old certificate is still served"
    );

    // A half-written key: the renewed certificate stays served.
    std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\ntruncated").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        connects(addr, &new).await,
        "a broken key file stopped the server"
    );
}
