//! Dashboards as data through the real binary (issue 28): an operator creates a dashboard of
//! three panels and a site variable; a reader cannot see it while it is private, sees it
//! once shared with the read role, and runs its panels with the variable bound as a value
//! (never pasted into SQL); made public, it opens through its link without a token — its
//! panels and nothing else (another dashboard, SQL, the API are refused); an edit makes a new
//! revision; a stale write is a 409; a bad panel is a 400 naming its field.

mod common;

use common::{ADMIN_TOKEN, App, NatsServer, OPERATE_TOKEN, READ_TOKEN};
use serde_json::{Value, json};

/// A request to the app with `token` (none: no Authorization).
async fn call(
    app: &App,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    if_match: Option<u64>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", app.url()));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    if let Some(r) = if_match {
        request = request.header("if-match", r.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn farm(visibility: Value) -> Value {
    json!({
        "title": "Site at a glance",
        "visibility": visibility,
        "time": {"from": "now-1h", "to": "now"},
        "variables": [{"name": "site", "label": "Site", "default": "site-01",
                       "query": "SELECT column1 AS site FROM (VALUES ('site-01'), ('site-02'))"}],
        "panels": [
            {"id": "which", "title": "Site", "kind": "stat",
             "sql": "SELECT $site AS site", "layout": {"x": 0, "y": 0, "w": 6, "h": 4}},
            {"id": "range", "title": "Range", "kind": "table",
             "sql": "SELECT $from < $to AS ordered, CAST($to AS BIGINT) - CAST($from AS BIGINT) AS span",
             "layout": {"x": 6, "y": 0, "w": 6, "h": 4}},
            {"id": "tables", "title": "Tables", "kind": "table", "unit": "",
             "sql": "SELECT count(*) AS n FROM information_schema.tables WHERE table_name <> $site",
             "thresholds": [{"value": 0, "color": "green"}, {"value": 100, "color": "#ff0000"}],
             "layout": {"x": 12, "y": 0, "w": 12, "h": 4}, "live": "results.energy.>"}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_are_made_shared_opened_by_link_and_revised() {
    use reqwest::Method as M;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&nats.url(), dir.path(), "query", "");
    app.wait_http().await;

    // A reader may not create one; an operator may.
    let (status, _) = call(
        &app,
        M::PUT,
        "/api/v1/dashboards/farm",
        Some(READ_TOKEN),
        Some(farm(json!({"kind": "private"}))),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, created) = call(
        &app,
        M::PUT,
        "/api/v1/dashboards/farm",
        Some(OPERATE_TOKEN),
        Some(farm(json!({"kind": "private"}))),
        None,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["owner"], "operator");
    let first = created["revision"].as_u64().unwrap();

    // Private: the reader does not see it, not even that it exists.
    let (status, _) = call(
        &app,
        M::GET,
        "/api/v1/dashboards/farm",
        Some(READ_TOKEN),
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, listed) = call(
        &app,
        M::GET,
        "/api/v1/dashboards",
        Some(READ_TOKEN),
        None,
        None,
    )
    .await;
    assert_eq!(listed, json!([]));

    // Shared with the read role: the reader sees it and runs its panels.
    let (status, shared) = call(
        &app,
        M::PUT,
        "/api/v1/dashboards/farm",
        Some(OPERATE_TOKEN),
        Some(farm(json!({"kind": "shared", "role": "read"}))),
        Some(first),
    )
    .await;
    assert_eq!(status, 200, "{shared}");
    let second = shared["revision"].as_u64().unwrap();
    assert!(second > first);
    let (status, rows) = call(
        &app,
        M::POST,
        "/api/v1/dashboards/farm/panels/which/query",
        Some(READ_TOKEN),
        Some(json!({})),
        None,
    )
    .await;
    assert_eq!(
        (status, rows.clone()),
        (200, json!([{"site": "site-01"}])),
        "{rows}"
    );
    // A viewer's value is bound as a value: quotes and SQL in it are just text.
    let hostile = "site-02' OR 1=1; DROP TABLE shares; --";
    let (status, rows) = call(
        &app,
        M::POST,
        "/api/v1/dashboards/farm/panels/which/query",
        Some(READ_TOKEN),
        Some(json!({"variables": {"site": hostile}})),
        None,
    )
    .await;
    assert_eq!(
        (status, rows.clone()),
        (200, json!([{"site": hostile}])),
        "{rows}"
    );
    let (status, rows) = call(
        &app,
        M::POST,
        "/api/v1/dashboards/farm/panels/range/query",
        Some(READ_TOKEN),
        Some(json!({"from": "now-2h", "to": "now"})),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows[0]["ordered"], true, "{rows}");
    let span = rows[0]["span"].as_i64().unwrap();
    assert!(
        (7_199_000_000..=7_201_000_000).contains(&span),
        "two hours in µs: {span}"
    );
    let (status, values) = call(
        &app,
        M::POST,
        "/api/v1/dashboards/farm/variables/site/values",
        Some(READ_TOKEN),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, values.clone()),
        (200, json!([{"site": "site-01"}, {"site": "site-02"}])),
        "{values}"
    );
    let (status, _) = call(
        &app,
        M::POST,
        "/api/v1/dashboards/farm/panels/which/query",
        Some(READ_TOKEN),
        Some(json!({"variables": {"nope": "x"}})),
        None,
    )
    .await;
    assert_eq!(status, 400);
    // The reader may not change it; a stale write is refused.
    let (status, _) = call(
        &app,
        M::DELETE,
        "/api/v1/dashboards/farm",
        Some(READ_TOKEN),
        None,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &app,
        M::PUT,
        "/api/v1/dashboards/farm",
        Some(OPERATE_TOKEN),
        Some(farm(json!({"kind": "private"}))),
        Some(first),
    )
    .await;
    assert_eq!(status, 409);
    // A bad panel is refused naming its field.
    let mut bad = farm(json!({"kind": "private"}));
    bad["panels"][1]["sql"] = json!("DELETE FROM shares");
    let (status, refused) = call(
        &app,
        M::PUT,
        "/api/v1/dashboards/farm",
        Some(OPERATE_TOKEN),
        Some(bad),
        Some(second),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "panels[1].sql", "{refused}");

    // Public: its link opens it without a token, its panels and nothing else.
    let (status, public) = call(
        &app,
        M::PUT,
        "/api/v1/dashboards/farm",
        Some(OPERATE_TOKEN),
        Some(farm(json!({"kind": "public"}))),
        Some(second),
    )
    .await;
    assert_eq!(status, 200, "{public}");
    let link = public["link"].as_str().unwrap().to_string();
    assert_eq!(link.len(), 64);
    let (_, seen_by_reader) = call(
        &app,
        M::GET,
        "/api/v1/dashboards/farm",
        Some(READ_TOKEN),
        None,
        None,
    )
    .await;
    assert!(
        seen_by_reader.get("link").is_none(),
        "only its owner sees the link: {seen_by_reader}"
    );
    let (status, opened) = call(
        &app,
        M::GET,
        &format!("/api/v1/public/dashboards/{link}"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["dashboard"]["panels"].as_array().unwrap().len(), 3);
    assert!(opened.get("owner").is_none(), "{opened}");
    let (status, rows) = call(
        &app,
        M::POST,
        &format!("/api/v1/public/dashboards/{link}/panels/which/query"),
        None,
        Some(json!({"variables": {"site": "site-02"}})),
        None,
    )
    .await;
    assert_eq!(
        (status, rows.clone()),
        (200, json!([{"site": "site-02"}])),
        "{rows}"
    );
    let (other_status, _) = call(
        &app,
        M::PUT,
        "/api/v1/dashboards/other",
        Some(OPERATE_TOKEN),
        Some(farm(json!({"kind": "private"}))),
        None,
    )
    .await;
    assert_eq!(other_status, 201);
    for (method, path) in [
        (M::GET, "/api/v1/dashboards/other".to_string()),
        (M::GET, "/api/v1/dashboards/farm".to_string()),
        (M::GET, "/api/v1/dashboards".to_string()),
        (M::POST, "/api/v1/sql".to_string()),
        (
            M::POST,
            "/api/v1/dashboards/farm/panels/which/query".to_string(),
        ),
    ] {
        let (status, _) = call(
            &app,
            method,
            &path,
            None,
            Some(json!({"sql": "SELECT 1"})),
            None,
        )
        .await;
        assert_eq!(status, 401, "{path} without a token");
    }
    let mut forged = link.clone();
    forged.replace_range(0..1, if link.starts_with('0') { "1" } else { "0" });
    for path in [
        format!("/api/v1/public/dashboards/{forged}"),
        format!("/api/v1/public/dashboards/{link}/panels/nope/query"),
        "/api/v1/public/dashboards/other".to_string(),
    ] {
        let method = if path.ends_with("/query") {
            M::POST
        } else {
            M::GET
        };
        let (status, _) = call(&app, method, &path, None, None, None).await;
        assert_eq!(status, 404, "{path}");
    }

    // An edit is a new revision; the old ones are kept; made private, the link ends.
    let mut edited = farm(json!({"kind": "private"}));
    edited["panels"][0]["title"] = json!("Which site");
    let (_, current) = call(
        &app,
        M::GET,
        "/api/v1/dashboards/farm",
        Some(OPERATE_TOKEN),
        None,
        None,
    )
    .await;
    let (status, after) = call(
        &app,
        M::PUT,
        "/api/v1/dashboards/farm",
        Some(ADMIN_TOKEN),
        Some(edited),
        current["revision"].as_u64(),
    )
    .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        after["owner"], "operator",
        "an admin's edit keeps the owner"
    );
    assert_eq!(after["author"], "admin");
    let (_, revisions) = call(
        &app,
        M::GET,
        "/api/v1/dashboards/farm/revisions",
        Some(OPERATE_TOKEN),
        None,
        None,
    )
    .await;
    let titles: Vec<&str> = revisions
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dashboard"]["panels"][0]["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Site", "Site", "Site", "Which site"],
        "{revisions}"
    );
    let (status, _) = call(
        &app,
        M::GET,
        &format!("/api/v1/public/dashboards/{link}"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(status, 404, "a private dashboard's old link is dead");
    let (status, _) = call(
        &app,
        M::DELETE,
        "/api/v1/dashboards/farm",
        Some(OPERATE_TOKEN),
        None,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &app,
        M::GET,
        "/api/v1/dashboards/farm",
        Some(OPERATE_TOKEN),
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);
}
