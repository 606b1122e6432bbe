//! Every HTTP request counted and timed by route template, method and status
//! (`adit_http_requests_total`, `adit_http_request_duration_seconds`), so a slow or failing
//! route shows on `/metrics` whichever it is. The route is the template the router matched
//! (`/api/v1/registry/{kind}/{id}`), never the path a client sent: ids and hostile paths never
//! become label values, and the number of series is bounded by the routes.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// The route label of a request no route matched (404s, probes, scanners).
pub const UNMATCHED: &str = "unmatched";

/// Counts and times `request` under its matched route.
pub async fn record(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_string(), |m| m.as_str().to_string());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("route", route),
        ("method", method.to_string()),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("adit_http_requests_total", &labels).increment(1);
    metrics::histogram!("adit_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label: the standard ones by name, anything else as `other` (a client may
/// send any token as a method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invented_method_is_one_label() {
        let invented = Method::from_bytes(b"EXFILTRATE").unwrap();
        assert_eq!(method_label(&invented), "other");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
