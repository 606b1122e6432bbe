//! Outbound requests (issues 22 and 23): a reply from a destination someone configured (an
//! actuator's webhook or fan relay, a notification channel, the node and the wallet) is read
//! under a size bound, so a hostile or broken peer cannot make adit hold an unbounded body; and
//! a destination is written into errors, logs and tables without what makes it a credential
//! (for Slack, Discord or Teams the webhook URL is the secret).
//!
//! And the egress policy ([`policy`]): which addresses each purpose (devices, grid feeds,
//! notifications) may reach, checked on the addresses a name resolves to, on every request.

pub mod policy;

pub use policy::{ClientError, EgressConfig, Guard, Outbound, Purpose, Refused, ResolveError};
use reqwest::Response;

/// A reply's body, read up to a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The bytes read: at most the limit.
    pub bytes: Vec<u8>,
    /// Whether the body went on past the limit (the rest was never read).
    pub truncated: bool,
}

/// Reads at most `limit` bytes of `response`'s body. What lies past the limit is never read:
/// the response is dropped with it, which closes the connection.
pub async fn read_capped(mut response: Response, limit: usize) -> Result<Body, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Body {
                bytes,
                truncated: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Body {
        bytes,
        truncated: false,
    })
}

/// `e` as it may be logged or stored: without its URL (which may hold a credential), followed
/// by its causes, where a refusal by the egress policy or a DNS or connection failure is told.
pub fn describe(e: reqwest::Error) -> String {
    chain(&e.without_url())
}

/// An error with its causes, `: `-separated, leaving out a cause whose text the line already
/// ends with (many errors repeat their source in their own message).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// At most `chars` characters of `bytes` for a person to read: invalid UTF-8 replaced,
/// control characters (line breaks included) turned to spaces, `…` where it was cut.
pub fn excerpt(bytes: &[u8], chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .take(chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(chars).is_some() {
        out.push('…');
    }
    out.trim().to_string()
}

/// `url` as it may be stored, streamed or logged: its scheme, host and port. The user,
/// password, path, query and fragment are left out (`/…` says there was more), since any of
/// them can be the credential: a Slack or Discord webhook's path, a Telegram bot token, an
/// `?api_key=`. Text that is not a URL is not echoed at all.
pub fn redact(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url.trim()) else {
        return "<a destination that is not a URL>".to_string();
    };
    let Some(host) = parsed.host_str() else {
        return format!("{}:…", parsed.scheme());
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let more = parsed.path() != "/"
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some();
    let more = if more { "/…" } else { "" };
    format!("{}://{host}{port}{more}", parsed.scheme())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_webhook_is_written_without_its_secret() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
                "https://hooks.slack.com/…",
            ),
            (
                "https://discord.com/api/webhooks/123/SECRET",
                "https://discord.com/…",
            ),
            (
                "https://user:SECRET@relay.example:8443/on?key=SECRET#x",
                "https://relay.example:8443/…",
            ),
            ("http://10.0.0.5", "http://10.0.0.5"),
            ("http://[::1]:9/", "http://[::1]:9"),
            ("not a url SECRET", "<a destination that is not a URL>"),
            ("mailto:SECRET@example.com", "mailto:…"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn an_excerpt_is_one_bounded_line() {
        assert_eq!(excerpt(b"ok", 10), "ok");
        assert_eq!(excerpt(b"line\r\nbreak", 20), "line  break");
        assert_eq!(excerpt("ééééé".as_bytes(), 3), "ééé…");
        assert_eq!(excerpt(&[0xff, b'a'], 5), "\u{fffd}a");
    }

    /// A real HTTP server on loopback that answers every request with `body_len` bytes.
    async fn server(body_len: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _read = socket.read(&mut request).await;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n");
                if socket.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = body_len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if socket.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    left -= n;
                }
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_reply_is_read_only_up_to_its_limit() {
        let http = reqwest::Client::new();
        let big = server(8 * 1024 * 1024).await;
        let body = read_capped(http.get(&big).send().await.unwrap(), 1000)
            .await
            .unwrap();
        assert_eq!(body.bytes.len(), 1000);
        assert!(body.truncated);
        let small = server(10).await;
        let body = read_capped(http.get(&small).send().await.unwrap(), 1000)
            .await
            .unwrap();
        assert_eq!(body.bytes, b"xxxxxxxxxx");
        assert!(!body.truncated);
    }

    proptest! {
        #[test]
        fn nothing_after_the_host_is_ever_shown(
            secret in "[A-Za-z0-9]{12,24}",
            place in 0usize..4,
        ) {
            let url = match place {
                0 => format!("https://u:{secret}@h.example/p"),
                1 => format!("https://h.example/services/{secret}"),
                2 => format!("https://h.example/?token={secret}"),
                _ => format!("https://h.example/#{secret}"),
            };
            let shown = redact(&url);
            prop_assert!(!shown.contains(&secret), "{shown}");
            prop_assert!(shown.starts_with("https://h.example"), "{shown}");
        }

        #[test]
        fn any_text_is_redacted_without_a_panic(text in ".{0,200}") {
            let shown = redact(&text);
            prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }

        #[test]
        fn an_excerpt_never_outgrows_its_bound(bytes in proptest::collection::vec(any::<u8>(), 0..600), n in 0usize..300) {
            let e = excerpt(&bytes, n);
            prop_assert!(e.chars().count() <= n + 1);
            prop_assert!(!e.chars().any(char::is_control));
        }
    }
}
