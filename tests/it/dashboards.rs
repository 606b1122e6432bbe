//! Dashboards as data through the real binary (issue 28): an operator creates a dashboard of
//! three panels and a site variable; a reader cannot see it while it is private, sees it
//! once shared with the read role, and runs its panels with the variable bound as a value
//! (never pasted into SQL); made public, it opens through its link without a token — its
//! panels and nothing else (another dashboard, SQL, the API are refused); an edit makes a new
//! revision; a stale write is a 409; a bad panel is a 400 naming its field.
//!
//! The shipped dashboards (farm energy, the pool, grid and compliance) are stored ones: every
//! reader lists them and runs each panel; only an admin changes them, an operator saves a
//! copy of their own; one an admin deleted is not written back by a restart.

use crate::common;

use common::{ADMIN_TOKEN, Caller, OPERATE_TOKEN, READ_TOKEN, start_app};
use serde_json::{Value, json};

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
    let (_nats, _dir, app) = start_app("query", "").await;
    let [reader, operator, admin] =
        [READ_TOKEN, OPERATE_TOKEN, ADMIN_TOKEN].map(|t| Caller::new(&app, t));
    let anonymous = Caller::anonymous(&app);

    // A reader may not create one; an operator may.
    let (status, _) = reader
        .put(
            "/api/v1/dashboards/farm",
            farm(json!({"kind": "private"})),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, created) = operator
        .put(
            "/api/v1/dashboards/farm",
            farm(json!({"kind": "private"})),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["owner"], "operator");
    let first = created["revision"].as_u64().unwrap();

    // Private: the reader does not see it, not even that it exists.
    let (status, _) = reader.get("/api/v1/dashboards/farm").await;
    assert_eq!(status, 404);
    let (_, listed) = reader.get("/api/v1/dashboards").await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"farm"),
        "a private dashboard listed: {ids:?}"
    );

    // Shared with the read role: the reader sees it and runs its panels.
    let (status, shared) = operator
        .put(
            "/api/v1/dashboards/farm",
            farm(json!({"kind": "shared", "role": "read"})),
            Some(first),
        )
        .await;
    assert_eq!(status, 200, "{shared}");
    let second = shared["revision"].as_u64().unwrap();
    assert!(second > first);
    let (status, rows) = reader
        .post("/api/v1/dashboards/farm/panels/which/query", json!({}))
        .await;
    assert_eq!(
        (status, rows.clone()),
        (200, json!([{"site": "site-01"}])),
        "{rows}"
    );
    // A viewer's value is bound as a value: quotes and SQL in it are just text.
    let hostile = "site-02' OR 1=1; DROP TABLE shares; --";
    let (status, rows) = reader
        .post(
            "/api/v1/dashboards/farm/panels/which/query",
            json!({"variables": {"site": hostile}}),
        )
        .await;
    assert_eq!(
        (status, rows.clone()),
        (200, json!([{"site": hostile}])),
        "{rows}"
    );
    let (status, rows) = reader
        .post(
            "/api/v1/dashboards/farm/panels/range/query",
            json!({"from": "now-2h", "to": "now"}),
        )
        .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows[0]["ordered"], true, "{rows}");
    let span = rows[0]["span"].as_i64().unwrap();
    assert!(
        (7_199_000_000..=7_201_000_000).contains(&span),
        "two hours in µs: {span}"
    );
    let (status, values) = reader
        .send(
            M::POST,
            "/api/v1/dashboards/farm/variables/site/values",
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, values.clone()),
        (200, json!([{"site": "site-01"}, {"site": "site-02"}])),
        "{values}"
    );
    let (status, _) = reader
        .post(
            "/api/v1/dashboards/farm/panels/which/query",
            json!({"variables": {"nope": "x"}}),
        )
        .await;
    assert_eq!(status, 400);
    // The reader may not change it; a stale write is refused.
    let (status, _) = reader.delete("/api/v1/dashboards/farm").await;
    assert_eq!(status, 403);
    let (status, _) = operator
        .put(
            "/api/v1/dashboards/farm",
            farm(json!({"kind": "private"})),
            Some(first),
        )
        .await;
    assert_eq!(status, 409);
    // A bad panel is refused naming its field.
    let mut bad = farm(json!({"kind": "private"}));
    bad["panels"][1]["sql"] = json!("DELETE FROM shares");
    let (status, refused) = operator
        .put("/api/v1/dashboards/farm", bad, Some(second))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "panels[1].sql", "{refused}");

    // Public: its link opens it without a token, its panels and nothing else.
    let (status, public) = operator
        .put(
            "/api/v1/dashboards/farm",
            farm(json!({"kind": "public"})),
            Some(second),
        )
        .await;
    assert_eq!(status, 200, "{public}");
    let link = public["link"].as_str().unwrap().to_string();
    assert_eq!(link.len(), 64);
    let (_, seen_by_reader) = reader.get("/api/v1/dashboards/farm").await;
    assert!(
        seen_by_reader.get("link").is_none(),
        "only its owner sees the link: {seen_by_reader}"
    );
    let (status, opened) = anonymous
        .get(&format!("/api/v1/public/dashboards/{link}"))
        .await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["dashboard"]["panels"].as_array().unwrap().len(), 3);
    assert!(opened.get("owner").is_none(), "{opened}");
    let (status, rows) = anonymous
        .post(
            &format!("/api/v1/public/dashboards/{link}/panels/which/query"),
            json!({"variables": {"site": "site-02"}}),
        )
        .await;
    assert_eq!(
        (status, rows.clone()),
        (200, json!([{"site": "site-02"}])),
        "{rows}"
    );
    let (other_status, _) = operator
        .put(
            "/api/v1/dashboards/other",
            farm(json!({"kind": "private"})),
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
        let (status, _) = anonymous
            .send(method, &path, Some(json!({"sql": "SELECT 1"})), None)
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
        let (status, _) = anonymous.send(method, &path, None, None).await;
        assert_eq!(status, 404, "{path}");
    }

    // An edit is a new revision; the old ones are kept; made private, the link ends.
    let mut edited = farm(json!({"kind": "private"}));
    edited["panels"][0]["title"] = json!("Which site");
    let (_, current) = operator.get("/api/v1/dashboards/farm").await;
    let (status, after) = admin
        .put(
            "/api/v1/dashboards/farm",
            edited,
            current["revision"].as_u64(),
        )
        .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        after["owner"], "operator",
        "an admin's edit keeps the owner"
    );
    assert_eq!(after["author"], "admin");
    let (_, revisions) = operator.get("/api/v1/dashboards/farm/revisions").await;
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
    let (status, _) = anonymous
        .get(&format!("/api/v1/public/dashboards/{link}"))
        .await;
    assert_eq!(status, 404, "a private dashboard's old link is dead");
    let (status, _) = operator.delete("/api/v1/dashboards/farm").await;
    assert_eq!(status, 204);
    let (status, _) = operator.get("/api/v1/dashboards/farm").await;
    assert_eq!(status, 404);

    // Whoever creates the id again starts a history of its own: nothing of the deleted
    // dashboard's private revisions is read through it.
    let (status, again) = admin
        .put(
            "/api/v1/dashboards/farm",
            json!({"title": "Another farm", "panels": [
            {"id": "one", "title": "One", "kind": "stat", "sql": "SELECT 1 AS one",
             "layout": {"x": 0, "y": 0, "w": 6, "h": 4}}]}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{again}");
    let (status, revisions) = admin.get("/api/v1/dashboards/farm/revisions").await;
    assert_eq!(status, 200, "{revisions}");
    let titles: Vec<&str> = revisions
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dashboard"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Another farm"], "{revisions}");

    // One owner keeps at most 100 dashboards: the operator (who owns `other`) makes 99 more,
    // the 101st is refused, and deleting one makes room.
    let one = |title: String| {
        json!({"title": title, "panels": [
            {"id": "one", "title": "One", "kind": "stat", "sql": "SELECT 1 AS one",
             "layout": {"x": 0, "y": 0, "w": 6, "h": 4}}]})
    };
    for i in 1..100 {
        let (status, body) = operator
            .put(
                &format!("/api/v1/dashboards/mine-{i}"),
                one(format!("Mine {i}")),
                None,
            )
            .await;
        assert_eq!(status, 201, "dashboard {i}: {body}");
    }
    let (status, body) = operator
        .put(
            "/api/v1/dashboards/mine-100",
            one("One too many".into()),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("100"),
        "{body}"
    );
    let (status, _) = operator.delete("/api/v1/dashboards/mine-1").await;
    assert_eq!(status, 204);
    let (status, body) = operator
        .put(
            "/api/v1/dashboards/mine-100",
            one("Room again".into()),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// The ids the shipped dashboards have.
const SHIPPED: [&str; 3] = ["farm-energy", "pool", "grid-compliance"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_dashboards_are_stored_ones_copied_to_be_changed_and_written_only_once() {
    // With the pipelines and the compliance job, so every table the panels read exists (empty).
    let (_nats, _dir, mut app) = start_app("pipelines,query,compliance", "").await;
    let [reader, operator, admin] =
        [READ_TOKEN, OPERATE_TOKEN, ADMIN_TOKEN].map(|t| Caller::new(&app, t));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let (_, tables) = reader.post("/api/v1/sql?format=json", json!({"sql": "SELECT count(*) AS n FROM information_schema.tables WHERE table_name IN ('site_energy_1m', 'energy_settlement', 'sensor_readings', 'hashrate_1m', 'payouts', 'blocks', 'decisions', 'compliance_daily', 'violations', 'commands', 'grid_signals')"}))
        .await;
        if tables[0]["n"] == 11 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tables never made: {tables}; log:\n{}",
            app.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    let (status, listed) = reader.get("/api/v1/dashboards").await;
    assert_eq!(status, 200);
    for id in SHIPPED {
        let entry = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed to a reader: {listed}"));
        assert_eq!(entry["owner"], "adit (built in)");
        // Every panel and variable runs for a reader (no rows yet: the tables are empty).
        let (status, board) = reader.get(&format!("/api/v1/dashboards/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(board["editable"], false, "{id}");
        for panel in board["dashboard"]["panels"].as_array().unwrap() {
            let pid = panel["id"].as_str().unwrap();
            let (status, rows) = reader
                .post(
                    &format!("/api/v1/dashboards/{id}/panels/{pid}/query"),
                    json!({"from": "now-7d", "to": "now"}),
                )
                .await;
            assert_eq!(status, 200, "{id}/{pid}: {rows}");
            assert!(rows.is_array(), "{id}/{pid}: {rows}");
        }
        for variable in board["dashboard"]["variables"].as_array().unwrap() {
            let name = variable["name"].as_str().unwrap();
            let (status, values) = reader
                .post(
                    &format!("/api/v1/dashboards/{id}/variables/{name}/values"),
                    json!({}),
                )
                .await;
            assert_eq!(status, 200, "{id} ${name}: {values}");
            assert_eq!(values[0][name], "all", "{id} ${name}: {values}");
        }
    }

    // An operator may not change one, but saves a copy of their own and changes that.
    let (_, pool) = operator.get("/api/v1/dashboards/pool").await;
    let revision = pool["revision"].as_u64().unwrap();
    let mut changed = pool["dashboard"].clone();
    changed["title"] = json!("My pool");
    let (status, _) = operator
        .put("/api/v1/dashboards/pool", changed.clone(), Some(revision))
        .await;
    assert_eq!(status, 403);
    let (status, copy) = operator
        .put("/api/v1/dashboards/pool-copy", changed, Some(0))
        .await;
    assert_eq!(status, 201, "{copy}");
    assert_eq!(
        (copy["owner"].as_str(), copy["editable"].as_bool()),
        (Some("operator"), Some(true))
    );

    // An admin edits one and deletes another; a restart writes neither back.
    let mut edited = pool["dashboard"].clone();
    edited["title"] = json!("Pool (ours)");
    let (status, _) = admin
        .put("/api/v1/dashboards/pool", edited, Some(revision))
        .await;
    assert_eq!(status, 200);
    let (status, _) = admin.delete("/api/v1/dashboards/farm-energy").await;
    assert!(status == 200 || status == 204, "delete: {status}");
    app.restart();
    app.wait_http().await;
    let (status, _) = admin.get("/api/v1/dashboards/farm-energy").await;
    assert_eq!(status, 404, "a deleted built-in came back after a restart");
    let (_, pool) = admin.get("/api/v1/dashboards/pool").await;
    assert_eq!(
        pool["dashboard"]["title"], "Pool (ours)",
        "an admin's edit was overwritten"
    );
    let (_, grid) = admin.get("/api/v1/dashboards/grid-compliance").await;
    assert_eq!(grid["owner"], "adit (built in)");
}
