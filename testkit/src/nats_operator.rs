//! A private nats-server in operator mode, as a managed or secured production NATS is run
//! (`nsc`, Synadia Cloud): an operator signs an account with JetStream enabled, the account
//! signs users, and a client proves itself with a `.creds` file (the user's JWT and NKey
//! seed). The harness makes the keys and JWTs itself (NATS JWT v2, ed25519 NKeys), preloads the
//! accounts into the server's memory resolver, and writes `.creds` files for a test to hand to
//! adit: one of the JetStream account, one of a user whose permissions allow nothing, and one
//! signed by an account the server does not know.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use nkeys::KeyPair;
use serde_json::{Value, json};
use sha2::Digest;

use crate::{free_port, nats_server_binary};

/// A running operator-mode nats-server with JetStream; killed on drop.
pub struct NatsOperator {
    child: Child,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Its config, store and the `.creds` files.
    dir: tempfile::TempDir,
}

impl NatsOperator {
    /// Starts the server with an operator, a system account and one JetStream account `ADIT`,
    /// and writes the `.creds` files ([`Self::creds`], [`Self::denied_creds`],
    /// [`Self::stranger_creds`]).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the operator-mode server");
        let port = free_port();
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            "adit-test-operator",
            json!({"type": "operator", "version": 2, "system_account": system.public_key()}),
        );
        let system_jwt = jwt(
            &operator,
            &system.public_key(),
            "SYS",
            json!({"type": "account", "version": 2, "limits": account_limits(false)}),
        );
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            "ADIT",
            json!({"type": "account", "version": 2, "limits": account_limits(true)}),
        );
        write_creds(&dir.path().join("adit.creds"), &account, "adit", json!({}));
        write_creds(
            &dir.path().join("denied.creds"),
            &account,
            "denied",
            json!({"pub": {"deny": [">"]}, "sub": {"deny": [">"]}}),
        );
        write_creds(
            &dir.path().join("stranger.creds"),
            &KeyPair::new_account(),
            "stranger",
            json!({}),
        );
        let conf = dir.path().join("operator.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{port}\"\n\
                 operator: \"{operator_jwt}\"\n\
                 system_account: \"{sys}\"\n\
                 resolver: MEMORY\n\
                 resolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {acc}: \"{account_jwt}\"\n}}\n\
                 jetstream {{ store_dir: \"{store}\" }}\n",
                sys = system.public_key(),
                acc = account.public_key(),
                store = dir.path().join("js").display(),
            ),
        )
        .expect("write the operator-mode config");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let mut child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server (scripts/setup.sh installs it)");
        crate::wait_listening(
            &mut child,
            "operator-mode nats-server",
            port,
            Duration::from_secs(20),
            || std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default(),
        );
        Self { child, port, dir }
    }

    /// `nats://127.0.0.1:<port>` (no credentials in it: they come from a `.creds` file).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The `.creds` file of a user of the JetStream account, allowed everything.
    pub fn creds(&self) -> PathBuf {
        self.dir.path().join("adit.creds")
    }

    /// The `.creds` file of a user of the same account whose permissions deny every subject.
    pub fn denied_creds(&self) -> PathBuf {
        self.dir.path().join("denied.creds")
    }

    /// The `.creds` file of a user signed by an account the server was never given.
    pub fn stranger_creds(&self) -> PathBuf {
        self.dir.path().join("stranger.creds")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for NatsOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An account's limits: unlimited, with JetStream storage when `jetstream`.
fn account_limits(jetstream: bool) -> Value {
    let storage = if jetstream { -1 } else { 0 };
    json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": storage, "disk_storage": storage, "streams": -1, "consumer": -1,
    })
}

/// Writes a `.creds` file for a new user of `account` with these permissions (`pub`/`sub`).
fn write_creds(path: &Path, account: &KeyPair, name: &str, permissions: Value) {
    let user = KeyPair::new_user();
    let mut nats = json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1});
    if let (Some(nats), Some(permissions)) = (nats.as_object_mut(), permissions.as_object()) {
        nats.extend(permissions.clone());
    }
    let token = jwt(account, &user.public_key(), name, nats);
    let seed = user.seed().expect("a user key has a seed");
    std::fs::write(
        path,
        format!(
            "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    )
    .expect("write a .creds file");
}

/// A NATS JWT (v2) for `subject`, signed by `issuer`: the header and claims as base64url
/// JSON, the ed25519 signature of both.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut claims = json!({
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let id = sha2::Sha256::digest(claims.to_string().as_bytes());
    claims["jti"] = json!(id.iter().map(|b| format!("{b:02X}")).collect::<String>());
    let signed = format!(
        "{}.{}",
        b64.encode(json!({"typ": "JWT", "alg": "ed25519-nkey"}).to_string()),
        b64.encode(claims.to_string())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("sign a JWT");
    format!("{signed}.{}", b64.encode(signature))
}
