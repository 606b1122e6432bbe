//! The web dashboard: one page at `/` and its assets under `/dashboard/…`, built into the
//! binary (no CDN, no npm: the charts are SVG drawn by `app.js`); and `/verify`, where a miner
//! checks a payout against the pool's published window (`verify.js`); and `/pool`, a pool's
//! teams and competitions (`pool.js`).
//!
//! The page is public: it holds no data of its own and asks for a bearer token when the API
//! answers 401, keeping it in the browser session only. Everything it shows comes from the
//! API the token opens (SQL, the pool and farm views, `/api/v1/live`), each panel on its own,
//! so a failing call shows its error in its panel and the rest stays live. Assets are served
//! with `Cache-Control: no-cache` so an upgraded binary is picked up at the next load, and
//! with a content security policy that lets the page talk to its own origin only.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file: its name under `/dashboard/`, content type and bytes.
struct Asset {
    /// The name in the URL.
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes, embedded at build time.
    body: &'static [u8],
}

/// The page itself, served at `/`.
const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("page/index.html"),
};

/// A miner's check of a payout, served at `/verify` (issue 59): public, as the windows it
/// reads are.
const VERIFY: Asset = Asset {
    name: "verify.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("page/verify.html"),
};

/// A pool's teams and competitions, served at `/pool` (issue 61): public, as the rankings it
/// reads are.
const POOL: Asset = Asset {
    name: "pool.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("page/pool.html"),
};

/// Everything under `/dashboard/`.
const ASSETS: &[Asset] = &[
    INDEX,
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("page/app.js"),
    },
    Asset {
        name: "boards.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("page/boards.js"),
    },
    VERIFY,
    POOL,
    Asset {
        name: "pool.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("page/pool.js"),
    },
    Asset {
        name: "verify.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("page/verify.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("page/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("page/icon.svg"),
    },
];

/// Same origin only; inline styles are allowed because the SVG charts set presentation
/// attributes and the page sets widths from script.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// The dashboard's routes (stateless, public): `/`, `/verify`, `/pool` and `/dashboard/{file}`.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { serve(&INDEX) }))
        .route("/verify", get(|| async { serve(&VERIFY) }))
        .route("/pool", get(|| async { serve(&POOL) }))
        .route("/dashboard/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => serve(a),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-cache")],
            format!("no dashboard asset {file:?}"),
        )
            .into_response(),
    }
}

fn serve(asset: &Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(uri: &str) -> (StatusCode, String, String, Vec<u8>) {
        let resp = routes()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header = |name| {
            resp.headers()
                .get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (ctype, cache) = (header(header::CONTENT_TYPE), header(header::CACHE_CONTROL));
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, ctype, cache, body.to_vec())
    }

    #[tokio::test]
    async fn dashboard_serves_each_asset_with_its_type_and_no_cache() {
        for (uri, ctype) in [
            ("/", "text/html; charset=utf-8"),
            ("/dashboard/index.html", "text/html; charset=utf-8"),
            ("/dashboard/app.js", "text/javascript; charset=utf-8"),
            ("/verify", "text/html; charset=utf-8"),
            ("/dashboard/verify.js", "text/javascript; charset=utf-8"),
            ("/pool", "text/html; charset=utf-8"),
            ("/dashboard/pool.js", "text/javascript; charset=utf-8"),
            ("/dashboard/style.css", "text/css; charset=utf-8"),
            ("/dashboard/icon.svg", "image/svg+xml"),
        ] {
            let (status, got, cache, body) = get(uri).await;
            assert_eq!(
                (status, got.as_str(), cache.as_str()),
                (StatusCode::OK, ctype, "no-cache"),
                "{uri}"
            );
            assert!(!body.is_empty(), "{uri}");
        }
    }

    #[tokio::test]
    async fn dashboard_page_links_only_assets_it_serves() {
        let (_, _, _, pool) = get("/pool").await;
        let pool = String::from_utf8(pool).unwrap();
        for name in pool
            .split("\"/dashboard/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
        {
            let (status, ..) = get(&format!("/dashboard/{name}")).await;
            assert_eq!(status, StatusCode::OK, "{name} is linked from /pool");
        }
        let (_, _, _, page) = get("/").await;
        let page = String::from_utf8(page).unwrap();
        let linked: Vec<&str> = page
            .split("\"/dashboard/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(linked.len() >= 3, "{linked:?}");
        for name in linked {
            let (status, ..) = get(&format!("/dashboard/{name}")).await;
            assert_eq!(status, StatusCode::OK, "{name} is linked from the page");
        }
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing is loaded from elsewhere (the machine may be offline)"
        );
    }

    #[tokio::test]
    async fn dashboard_unknown_asset_is_not_found() {
        for uri in [
            "/dashboard/nope.js",
            "/dashboard/..%2FCargo.toml",
            "/dashboard/",
        ] {
            let (status, ..) = get(uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        }
    }
}
