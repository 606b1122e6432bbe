//! What a browser may ask of the API (issue 23). A page the operator opens elsewhere must not
//! act through the operator's browser:
//!
//! - **Host**: a request must name a host this server serves (an IP address, `localhost`, the
//!   host of `query.public_url`, or one in `query.allowed_hosts`), so a name an attacker
//!   points at 127.0.0.1 (DNS rebinding) gets nothing (421).
//! - **Origin**: a state-changing request (any method but GET, HEAD and OPTIONS) from a page
//!   is refused unless the page is the API's own (same host and port) or `query.public_url`
//!   (403). Clients that are not browsers send no `Origin` and are not affected.
//! - **Body type**: a state-changing request's body must be of a type a cross-site form or a
//!   `no-cors` fetch cannot send: JSON, NDJSON or YAML (415). `POST /api/v1/sql` only reads
//!   and keeps `text/plain`.

use adit_config::{Invalid, check};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header, uri::Authority};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;

use adit_schemas::api::ErrorBody;

/// The route that takes a body but changes nothing (statements are read-only).
const READ_ONLY_POST: &str = "/api/v1/sql";

/// Body types a browser cannot send across origins without asking first.
const BODY_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
];

/// The hosts and origins this server answers browsers for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OriginPolicy {
    /// Host names served besides IP addresses and `localhost`, lowercase, without port.
    hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) whose pages may change things, besides the API's own.
    origins: Vec<String>,
}

impl OriginPolicy {
    /// The policy for `public_url` (where users open the API, e.g.
    /// `https://adit.farm.example`) and `allowed_hosts` (more names it is reached by); an
    /// error names what does not parse.
    pub fn new(public_url: Option<&str>, allowed_hosts: &[String]) -> Result<Self, Invalid> {
        let mut policy = Self::default();
        if let Some(url) = public_url {
            let key = "query.public_url";
            let uri: Uri = url
                .parse()
                .map_err(|e| Invalid::new(key, format!("{url:?} is not a URL: {e}")))?;
            let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
                return Err(Invalid::new(
                    key,
                    format!("{url:?} is not a URL like https://adit.example.com"),
                ));
            };
            check(
                matches!(scheme, "http" | "https"),
                key,
                format!("{url:?} must be http or https"),
            )?;
            policy.hosts.push(host_of(authority));
            policy.origins.push(format!(
                "{scheme}://{}",
                authority.as_str().to_ascii_lowercase()
            ));
        }
        for host in allowed_hosts {
            let authority: Authority = host.parse().map_err(|_| {
                Invalid::new(
                    "query.allowed_hosts",
                    format!("{host:?} is not a host name"),
                )
            })?;
            policy.hosts.push(host_of(&authority));
        }
        Ok(policy)
    }

    /// Why `headers` and `method` on `path` are refused, if they are.
    fn refusal(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Refusal> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if let Some(host) = host
            && !self.serves(host)
        {
            return Some(Refusal::UnknownHost(clip(host)));
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return None;
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.own_page(origin, host) {
                return Some(Refusal::CrossOrigin(clip(origin)));
            }
        } else if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
        {
            return Some(Refusal::CrossOrigin("another site".into()));
        }
        if path != READ_ONLY_POST && has_body(headers) && !json_or_yaml(headers) {
            return Some(Refusal::BodyType);
        }
        None
    }

    /// Whether `host` (a `Host` header) is one this server serves.
    fn serves(&self, host: &str) -> bool {
        let Ok(authority) = host.parse::<Authority>() else {
            return false;
        };
        let name = host_of(&authority);
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.hosts.contains(&name)
    }

    /// Whether `origin` is the API's own page (served from `host`) or the public URL's.
    fn own_page(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        let Ok(uri) = origin.parse::<Uri>() else {
            return false;
        };
        match (uri.authority(), host) {
            (Some(authority), Some(host)) => authority.as_str() == host.to_ascii_lowercase(),
            _ => false,
        }
    }
}

/// A refused request.
enum Refusal {
    UnknownHost(String),
    CrossOrigin(String),
    BodyType,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::UnknownHost(host) => (
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                format!(
                    "this server does not serve the host {host:?}; add it to query.allowed_hosts or set query.public_url"
                ),
            ),
            Self::CrossOrigin(origin) => (
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!(
                    "a change asked by a page of {origin:?} is refused: only the API's own pages (or query.public_url) may change anything"
                ),
            ),
            Self::BodyType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json (ingest also takes application/x-ndjson, alert rules application/yaml)".to_string(),
            ),
        };
        (status, Json(ErrorBody::new(code, message))).into_response()
    }
}

/// The middleware: refuses what [`OriginPolicy`] refuses, before auth and before the body is
/// read.
pub async fn guard(
    State(policy): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    match policy.refusal(request.method(), request.uri().path(), request.headers()) {
        Some(refusal) => refusal.into_response(),
        None => next.run(request).await,
    }
}

/// `authority`'s host, lowercase, without brackets or port.
fn host_of(authority: &Authority) -> String {
    authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Whether the request carries a body.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Whether the body is declared JSON, NDJSON or YAML (parameters such as `charset` allowed,
/// and any `+json` type).
fn json_or_yaml(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    BODY_TYPES.contains(&media.as_str())
        || media.starts_with("application/") && media.ends_with("+json")
}

/// Outside text cut for a message (it is JSON-encoded there).
fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn refused(
        policy: &OriginPolicy,
        method: Method,
        path: &str,
        pairs: &[(&'static str, &str)],
    ) -> Option<&'static str> {
        policy
            .refusal(&method, path, &headers(pairs))
            .map(|r| match r {
                Refusal::UnknownHost(_) => "host",
                Refusal::CrossOrigin(_) => "origin",
                Refusal::BodyType => "type",
            })
    }

    #[test]
    fn hosts_are_ip_addresses_localhost_or_configured() {
        let p =
            OriginPolicy::new(Some("https://Adit.Farm.example:8443"), &["ops.lan".into()]).unwrap();
        for ok in [
            "127.0.0.1:8080",
            "10.0.0.5",
            "[::1]:8080",
            "localhost:8080",
            "adit.farm.example:8443",
            "OPS.lan",
        ] {
            assert_eq!(
                refused(&p, Method::GET, "/health", &[("host", ok)]),
                None,
                "{ok}"
            );
        }
        for bad in [
            "evil.example",
            "127.0.0.1.nip.io:8080",
            "localhost.evil.example",
            "a b",
            "",
        ] {
            assert_eq!(
                refused(&p, Method::GET, "/health", &[("host", bad)]),
                Some("host"),
                "{bad}"
            );
        }
        assert_eq!(
            refused(&OriginPolicy::default(), Method::GET, "/health", &[]),
            None
        );
    }

    #[test]
    fn a_change_from_another_page_is_refused() {
        let p = OriginPolicy::new(Some("https://adit.example"), &[]).unwrap();
        let json = ("content-type", "application/json");
        let some = ("content-length", "2");
        let host = ("host", "127.0.0.1:8080");
        // Not a browser, or the API's own page, or the public URL's.
        assert_eq!(
            refused(
                &p,
                Method::POST,
                "/api/v1/control/overrides",
                &[host, json, some]
            ),
            None
        );
        assert_eq!(
            refused(
                &p,
                Method::POST,
                "/x",
                &[host, json, some, ("origin", "http://127.0.0.1:8080")]
            ),
            None
        );
        assert_eq!(
            refused(
                &p,
                Method::PUT,
                "/x",
                &[host, json, some, ("origin", "https://adit.example")]
            ),
            None
        );
        // Another page, a sandboxed one, another port, another site by fetch metadata.
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:9999",
            "http://127.0.0.1",
        ] {
            assert_eq!(
                refused(
                    &p,
                    Method::POST,
                    "/x",
                    &[host, json, some, ("origin", origin)]
                ),
                Some("origin"),
                "{origin}"
            );
        }
        assert_eq!(
            refused(
                &p,
                Method::DELETE,
                "/x",
                &[host, ("sec-fetch-site", "cross-site")]
            ),
            Some("origin")
        );
        // Reads are answered whatever page asks (the browser keeps the answer from it).
        assert_eq!(
            refused(
                &p,
                Method::GET,
                "/x",
                &[host, ("origin", "http://evil.example")]
            ),
            None
        );
    }

    #[test]
    fn a_changes_body_must_be_json_or_yaml() {
        let p = OriginPolicy::default();
        let some = ("content-length", "10");
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/x-ndjson",
            "application/yaml",
            "application/merge-patch+json",
        ] {
            assert_eq!(
                refused(
                    &p,
                    Method::POST,
                    "/api/v1/ingest/energy",
                    &[some, ("content-type", ok)]
                ),
                None,
                "{ok}"
            );
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "x/\u{7f}",
        ] {
            let value = bad.replace('\u{7f}', "");
            let pairs = [some, ("content-type", value.as_str())];
            assert_eq!(
                refused(&p, Method::POST, "/api/v1/ingest/energy", &pairs),
                Some("type"),
                "{bad}"
            );
        }
        assert_eq!(
            refused(&p, Method::POST, "/api/v1/ingest/energy", &[some]),
            Some("type")
        );
        // No body (a cancel, a resolve), and SQL, which only reads, as text.
        assert_eq!(
            refused(&p, Method::POST, "/api/v1/violations/v1/resolve", &[]),
            None
        );
        assert_eq!(
            refused(
                &p,
                Method::POST,
                "/api/v1/violations/v1/resolve",
                &[("content-length", "0")]
            ),
            None
        );
        assert_eq!(
            refused(
                &p,
                Method::POST,
                "/api/v1/sql",
                &[some, ("content-type", "text/plain")]
            ),
            None
        );
        // Chunked bodies have a type too.
        assert_eq!(
            refused(&p, Method::PUT, "/x", &[("transfer-encoding", "chunked")]),
            Some("type")
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let e = OriginPolicy::new(Some("adit.example"), &[]).unwrap_err();
        assert_eq!(e.key, "query.public_url");
        assert!(
            e.to_string()
                .starts_with("query.public_url: \"adit.example\""),
            "{e}"
        );
        let e = OriginPolicy::new(Some("ftp://adit.example"), &[]).unwrap_err();
        assert_eq!(e.key, "query.public_url");
        assert!(e.reason.contains("http or https"), "{e}");
        let e = OriginPolicy::new(None, &["a b".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "query.allowed_hosts: \"a b\" is not a host name"
        );
    }
}
