//! The HTTP server: the router that mounts every route module behind its
//! guard, and serving until shutdown. Route modules never name it.

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router, middleware};
use tokio::net::TcpListener;

use utoipa_axum::router::OpenApiRouter;

use crate::auth::{Access, Role, Tokens};
use crate::state::AppState;

/// The full router: every route module's routes behind the role each declares, `extra`
/// (another crate's routes, e.g. HTTP ingest, already with their state) behind `operate`,
/// the OpenAPI document of them all, and the dashboard's pages; every route behind `origins`
/// (what a browser may ask, checked before the token).
pub fn router(
    state: AppState,
    tokens: Tokens,
    origins: crate::origin::OriginPolicy,
    extra: OpenApiRouter,
) -> Router {
    let tokens = Arc::new(tokens);
    if !tokens.enabled() {
        tracing::warn!("no API tokens configured: the API is open to anyone who can reach it");
    }
    let trail = Arc::new(crate::auth::Trail {
        lockout: state.lockout.clone(),
        publisher: state.publisher.clone(),
    });
    let access = Access::new(tokens, trail);
    let (api, doc) = OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(crate::routes::each(&access))
        .with_state(state)
        .merge(access.at(Role::Operate, extra))
        .split_for_parts();
    let doc = Arc::new(doc);
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { Json((*doc).clone()) }
        }),
    )
    .merge(adit_web::page::routes())
    .layer(middleware::from_fn_with_state(
        Arc::new(origins),
        crate::origin::guard,
    ))
    .layer(middleware::from_fn(crate::traffic::record))
}

/// Serves `router` on `listener` (HTTPS with `tls`) until `shutdown` completes, then drains
/// open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<adit_protocol::https::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The client's address reaches the handlers (the lockout and the audit trail read it).
    adit_protocol::https::serve(listener, router, tls, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, TokenConfig, Tokens};
    use adit_sql::{SqlEngine, SqlLimits};
    use axum::body::Body;
    use axum::http::Request;
    use axum::http::{StatusCode, header};
    use tower::ServiceExt;

    fn app(dir: &std::path::Path) -> Router {
        app_with(dir, adit_supervise::Vitals::new())
    }

    fn app_with(dir: &std::path::Path, vitals: adit_supervise::Vitals) -> Router {
        let tokens = Tokens::new(
            "query",
            &[
                TokenConfig::new("r", "reader-token-0000", Role::Read),
                TokenConfig::new("a", "admin-token-00000", Role::Admin),
            ],
            None,
        )
        .unwrap();
        app_with_tokens(dir, vitals, tokens)
    }

    fn app_with_tokens(
        dir: &std::path::Path,
        vitals: adit_supervise::Vitals,
        tokens: Tokens,
    ) -> Router {
        let store = adit_sinks::TableStore::new(dir.to_str().unwrap(), Default::default()).unwrap();
        let state = AppState {
            vitals,
            ..AppState::bare(Arc::new(SqlEngine::new(
                Arc::new(adit_sql::Catalog::new(store, std::time::Duration::ZERO)),
                SqlLimits::default(),
            )))
        };
        let operate = utoipa_axum::router::OpenApiRouter::new().route(
            "/api/v1/ingest/{kind}",
            axum::routing::post(|| async { "ingested" }),
        );
        router(state, tokens, Default::default(), operate)
    }

    async fn call(
        app: Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = app
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let text = if json.is_null() {
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            ctype
        };
        (status, json, text)
    }

    #[tokio::test]
    async fn auth_roles_and_refusals_map_to_their_status_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _, _) = call(app(dir.path()), "GET", "/health", None, "").await;
        assert_eq!(s, StatusCode::OK, "health needs no token");
        let (s, body, _) = call(app(dir.path()), "POST", "/api/v1/sql", None, "SELECT 1").await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
        let (s, body, _) = call(
            app(dir.path()),
            "POST",
            "/api/v1/ingest/energy",
            Some("reader-token-0000"),
            "{}",
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden"))
        );
        let (s, _, text) = call(
            app(dir.path()),
            "POST",
            "/api/v1/ingest/energy",
            Some("admin-token-00000"),
            "{}",
        )
        .await;
        assert_eq!(
            (s, text.as_str()),
            (StatusCode::OK, "ingested"),
            "admin includes operate"
        );
        let (s, body, _) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql",
            Some("reader-token-0000"),
            "DROP TABLE x",
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "read_only");
        let (s, body, _) = call(
            app(dir.path()),
            "GET",
            "/api/v1/sql",
            Some("reader-token-0000"),
            "",
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
        let (s, body, _) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql?format=yaml",
            Some("reader-token-0000"),
            "SELECT 1",
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
    }

    /// Issue 56: a JWT with a cluster `worker` claim is refused (401, the reason named), even
    /// for a route any role may call, as the PostgreSQL and Flight SQL ports refuse it; the
    /// same JWT without the claim is let in.
    #[tokio::test]
    async fn a_worker_jwt_is_refused_by_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let app = || {
            let vitals = adit_supervise::Vitals::new();
            app_with_tokens(dir.path(), vitals, adit_testkit::jwt::tokens())
        };
        let worker = adit_testkit::jwt::signed("rig-7", Some("rig-7"));
        let (s, body, _) = call(
            app(),
            "POST",
            "/api/v1/sql",
            Some(worker.as_str()),
            "SELECT 1",
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("coordinator"), "{body}");
        let plain = adit_testkit::jwt::signed("alice", None);
        let (s, body, _) = call(
            app(),
            "POST",
            "/api/v1/sql",
            Some(plain.as_str()),
            "SELECT 1",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    /// Issue 22: while a supervised part is down (restarting after a panic), `/ready` says
    /// which and answers 503; once it runs again, 200.
    #[tokio::test]
    async fn ready_names_a_part_that_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let vitals = adit_supervise::Vitals::new();
        let gave_up = adit_supervise::supervise(
            "pool_publisher",
            &vitals,
            adit_supervise::Policy {
                first_backoff: std::time::Duration::from_millis(1),
                max_backoff: std::time::Duration::from_millis(1),
                max_restarts: 0,
                window: std::time::Duration::from_secs(60),
            },
            || async { panic!("injected") },
        )
        .await;
        assert!(gave_up.is_err());
        let (s, body, _) = call(app_with(dir.path(), vitals), "GET", "/ready", None, "").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["down"], serde_json::json!(["pool_publisher"]));
        assert_eq!(body["parts"]["pool_publisher"]["last_error"], "injected");
        let (s, body, _) = call(app(dir.path()), "GET", "/ready", None, "").await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    #[tokio::test]
    async fn formats_follow_the_parameter_or_the_accept_header() {
        let dir = tempfile::tempdir().unwrap();
        let sql = "SELECT 1 AS one, 'a' AS s";
        let (s, body, _) = call(
            app(dir.path()),
            "GET",
            "/api/v1/sql?q=SELECT%201%20AS%20one",
            Some("reader-token-0000"),
            "",
        )
        .await;
        assert_eq!((s, body), (StatusCode::OK, serde_json::json!([{"one": 1}])));
        let (s, _, text) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql?format=csv",
            Some("reader-token-0000"),
            sql,
        )
        .await;
        assert_eq!((s, text.as_str()), (StatusCode::OK, "one,s\n1,a\n"));
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/sql")
            .header(header::AUTHORIZATION, "Bearer reader-token-0000")
            .header(header::ACCEPT, "application/x-ndjson")
            .body(Body::from(sql))
            .unwrap();
        let resp = app(dir.path()).oneshot(req).await.unwrap();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/x-ndjson");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"{\"one\":1,\"s\":\"a\"}\n");
        let (s, _, text) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql?format=csv",
            Some("reader-token-0000"),
            "SELECT 1 AS one WHERE false",
        )
        .await;
        assert_eq!(
            (s, text.as_str()),
            (StatusCode::OK, "one\n"),
            "an empty result still has its header"
        );
    }

    /// Found by `scripts/hostile.py`: a map with integer keys cannot be written as JSON or CSV;
    /// the encoding error cut the connection with no answer and no log line.
    #[tokio::test]
    async fn a_result_the_format_cannot_carry_is_a_400_naming_the_formats_that_can() {
        let dir = tempfile::tempdir().unwrap();
        let sql = "SELECT map([1, 2], 3) AS m";
        for format in ["json", "ndjson", "csv"] {
            let (s, body, _) = call(
                app(dir.path()),
                "POST",
                &format!("/api/v1/sql?format={format}"),
                Some("reader-token-0000"),
                sql,
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{format}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("arrow and parquet"), "{format}: {body}");
        }
        let (s, _, _) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql?format=arrow",
            Some("reader-token-0000"),
            sql,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_openapi_document_covers_every_route() {
        let dir = tempfile::tempdir().unwrap();
        let (s, doc, _) = call(app(dir.path()), "GET", "/api/v1/openapi.json", None, "").await;
        assert_eq!(s, StatusCode::OK);
        let paths = doc["paths"].as_object().expect("paths");
        for route in [
            "/api/v1/sql",
            "/api/v1/tables",
            "/api/v1/pools/{pool}",
            "/api/v1/pools/{pool}/blocks",
            "/api/v1/pools/{pool}/payments",
            "/api/v1/pools/{pool}/miners/{miner}",
            "/api/v1/pools/{pool}/miners/{miner}/workers",
            "/health",
            "/ready",
            "/metrics",
        ] {
            assert!(paths.contains_key(route), "{route} in {:?}", paths.keys());
        }
        assert!(paths["/api/v1/sql"]["post"].is_object());
        for schema in ["PoolStats", "SqlBody", "NewBan", "NewOverride"] {
            assert!(
                doc["components"]["schemas"][schema].is_object(),
                "{schema} in {:?}",
                doc["components"]["schemas"]
            );
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[tokio::test]
    async fn pool_views_of_tables_not_yet_written_are_empty_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let token = Some("reader-token-0000");
        let (s, stats, _) = call(app(dir.path()), "GET", "/api/v1/pools/p1", token, "").await;
        assert_eq!(s, StatusCode::OK, "{stats}");
        assert_eq!(stats["blocks_found"], 0);
        assert_eq!(stats["last_block"], serde_json::Value::Null);
        for uri in [
            "/api/v1/pools/p1/blocks",
            "/api/v1/pools/p1/payments?limit=5",
            "/api/v1/pools/p1/miners/some'one/workers",
        ] {
            let (s, body, _) = call(app(dir.path()), "GET", uri, token, "").await;
            assert_eq!(
                (s, body.clone()),
                (StatusCode::OK, serde_json::json!([])),
                "{uri}"
            );
        }
        let (s, _, _) = call(app(dir.path()), "GET", "/api/v1/pools/p1", None, "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "views need the read role");
        let (s, body, _) = call(
            app(dir.path()),
            "GET",
            "/api/v1/pools/p1/blocks?limit=abc",
            token,
            "",
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_workers_view_joins_what_its_machines_report() {
        use adit_schemas::{AnyEvent, EventKind, HashrateSample, Share};
        let dir = tempfile::tempdir().unwrap();
        let store =
            adit_sinks::TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let now = chrono::Utc::now();
        let share = |worker: &str| Share {
            pool: "p1".into(),
            miner: "m".into(),
            worker: worker.into(),
            job_id: "j".into(),
            nonce: "00".into(),
            difficulty: 10,
            height: 1,
            accepted: true,
            reason: None,
            ts: now,
            network_difficulty: None,
            reward: None,
            subsidy: None,
            team: None,
        };
        let sample = |cluster: &str, worker: &str, hs: f64| HashrateSample {
            cluster: cluster.into(),
            worker: worker.into(),
            ts: now,
            hashrate_hs: hs,
        };
        let shares = [
            (1, AnyEvent::Share(share("coop"))),
            (2, AnyEvent::Share(share("solo"))),
        ];
        let samples = [
            (1, AnyEvent::Hashrate(sample("coop", "w1", 100.0))),
            (2, AnyEvent::Hashrate(sample("coop", "w1", 300.0))),
            (3, AnyEvent::Hashrate(sample("coop", "w2", 50.0))),
            (4, AnyEvent::Hashrate(sample("other", "w1", 999.0))),
        ];
        for (kind, rows) in [
            (EventKind::Share, &shares[..]),
            (EventKind::Hashrate, &samples[..]),
        ] {
            let mut table = adit_sinks::ExactlyOnceTable::open(
                &store,
                kind.table(),
                &kind.table_schema(),
                &["date"],
                "t",
                adit_sinks::Maintenance::default(),
            )
            .await
            .unwrap();
            let batch = kind.batch(rows).unwrap();
            table.commit(vec![batch], 1).await.unwrap();
        }
        let (s, body, _) = call(
            app(dir.path()),
            "GET",
            "/api/v1/pools/p1/miners/m/workers",
            Some("reader-token-0000"),
            "",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let by_name = |w: &str| {
            body.as_array()
                .unwrap()
                .iter()
                .find(|r| r["worker"] == w)
                .cloned()
                .unwrap()
        };
        // w1's mean (200) + w2's (50); another cluster's machines do not count.
        assert_eq!(by_name("coop")["reported_hs"], 250.0);
        assert_eq!(by_name("solo")["reported_hs"], serde_json::Value::Null);
        assert_eq!(by_name("coop")["accepted_24h"], 1);
    }
}
