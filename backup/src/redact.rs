//! The config file as a backup keeps it: every value that is a secret (tokens, passwords,
//! keys, the password in a URL) replaced by `"<redacted>"`, unless the operator asks for them.

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a key names a secret. TLS `key` (a path) and `sha256` (a digest) are not secrets.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "private_key",
        "access_key",
        "api_key",
        "credentials",
        "session",
        "auth",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// `text` (a TOML config) with its secrets redacted.
pub fn redact(text: &str) -> Result<String, String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    redact_table(&mut table);
    toml::to_string_pretty(&table).map_err(|e| e.to_string())
}

fn redact_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        redact_value(is_secret(key), value);
    }
}

fn redact_value(secret: bool, value: &mut toml::Value) {
    match value {
        toml::Value::String(s) if secret => *s = REDACTED.to_string(),
        toml::Value::String(s) => {
            if let Some(clean) = without_password(s) {
                *s = clean;
            }
        }
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(items) => items.iter_mut().for_each(|v| redact_value(secret, v)),
        _ => {}
    }
}

/// A URL (or a comma-separated list of them) with each password replaced; `None` when there
/// was none.
fn without_password(text: &str) -> Option<String> {
    if !text.contains("://") || !text.contains('@') {
        return None;
    }
    let mut changed = false;
    let parts: Vec<String> = text
        .split(',')
        .map(|part| match url::Url::parse(part.trim()) {
            Ok(mut url) if url.password().is_some() || !url.username().is_empty() => {
                // A bare token in the user part (`tok@host`) is as secret as a password.
                let done = if url.password().is_some() {
                    url.set_password(Some(REDACTED))
                } else {
                    url.set_username(REDACTED)
                };
                changed |= done.is_ok();
                url.to_string()
            }
            _ => part.to_string(),
        })
        .collect();
    changed.then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let text = r#"
data_dir = "/var/lib/adit"
[nats]
url = "nats://adit:s3cret@10.0.0.1:4222,nats://10.0.0.2:4222"
[tables.options]
aws_region = "eu-west-1"
aws_access_key_id = "AKIAEXAMPLE"
aws_secret_access_key = "wJalrEXAMPLE"
[query]
tokens = [{ name = "ops", token = "plain-token", role = "operate" },
          { name = "ro", sha256 = "ab12", role = "read" }]
tls = { cert = "/etc/adit/cert.pem", key = "/etc/adit/key.pem" }
[query.jwt]
algorithm = "HS256"
secret = "a-very-long-shared-secret-of-32-bytes!!"
[notify.channels.mail]
smtp = "smtp://mailer:hunter2@mail.example:587"
"#;
        let out = redact(text).unwrap();
        for secret in [
            "s3cret",
            "AKIAEXAMPLE",
            "wJalrEXAMPLE",
            "plain-token",
            "a-very-long",
            "hunter2",
        ] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        for kept in [
            "/var/lib/adit",
            "10.0.0.2:4222",
            "eu-west-1",
            "ab12",
            "/etc/adit/key.pem",
            "HS256",
            "mail.example",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        let back: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(back["query"]["tokens"][0]["token"].as_str(), Some(REDACTED));
    }

    #[test]
    fn a_file_that_is_not_toml_is_an_error() {
        assert!(redact("[[[").is_err());
    }
}
