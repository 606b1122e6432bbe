//! Compliance reports end to end (issue 12): a seeded day of one site (Europe/Oslo) with a
//! data gap, minutes over the warning, critical and allocation thresholds, estimated minutes,
//! three violations and three curtailment events (one met, one missed, one met after
//! midnight, before its deadline) is closed by
//! `adit compliance`; every figure in the HTML and CSV equals SQL over the same tables; a
//! rerun writes nothing and gives the same bytes; the API serves the stored revision byte for
//! byte; a late reading makes revision 2 while revision 1 stays; bad requests get a 4xx that
//! says which. A sample report is copied to `$CARGO_TARGET_TMPDIR/compliance-sample/`.
//! And inspections (issue 61): recorded over the API with who recorded them, listed, landed in
//! `inspections`, and shown in the report of the site's day, the site's own and those of the
//! pools its machines mine at.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use adit_schemas::events::Event;
use adit_schemas::results::{MachineEnergyMinute, SiteEnergyMinute, ViolationRow};
use adit_schemas::{
    GridSignal, GridSignalKind, SensorKind, SensorReading, control::CommandRow, stamped_batch,
    to_batch,
};
use adit_sinks::{ExactlyOnceTable, Maintenance, TableStore};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::*;
use serde::Serialize;
use serde_json::{Value, json};

const SITE: &str = "site-c";
const TZ: &str = "Europe/Oslo";

/// The seeded day: local `date`, its window in UTC, and the site's power each minute.
struct Seed {
    start: DateTime<Utc>,
    minutes: i64,
}

/// Minutes of the next day's site power seeded (for the curtailment that crosses midnight).
const AFTER_MIDNIGHT: i64 = 30;

impl Seed {
    fn at(&self, hour: i64, minute: i64) -> DateTime<Utc> {
        self.start + Duration::hours(hour) + Duration::minutes(minute)
    }

    /// Site power in minute `i` (none: the data gap 02:00–02:30; past the day's end: the next
    /// day's, under dr-3's target from 00:05).
    fn power_w(&self, i: i64) -> Option<f64> {
        if i >= self.minutes + 5 {
            return Some(3_000.0);
        }
        let (h, m) = (i / 60, i % 60);
        match (h, m) {
            (2, 0..30) => None,
            (13, 0..30) => Some(10_500.0), // over the 10 kW allocation
            (16, 0..45) => Some(9_000.0),  // over warning (80 %), under critical
            (10, 5..) => Some(4_000.0),    // curtailed under the 5 kW target
            _ => Some(7_000.0),
        }
    }
}

/// Commits `batch` to table `name` (of `schema`) as one new version.
async fn commit(store: &TableStore, name: &str, schema: &SchemaRef, batch: RecordBatch) {
    let mut table = ExactlyOnceTable::open(
        store,
        name,
        schema,
        &["date"],
        "seed",
        Maintenance::default(),
    )
    .await
    .unwrap();
    let version = table.committed() + 1;
    assert!(table.commit(vec![batch], version).await.unwrap());
}

/// Commits `rows` to table `name` (of `schema`).
async fn write<T: Serialize>(
    store: &TableStore,
    name: &'static str,
    schema: SchemaRef,
    rows: &[T],
) {
    let batch = to_batch(name, schema.clone(), rows).unwrap();
    commit(store, name, &schema, batch).await;
}

/// Commits landed events (with their sequences, dated by `ts_of`) to table `name`.
async fn write_stamped<T: Serialize>(
    store: &TableStore,
    name: &'static str,
    fields: Vec<arrow::datatypes::Field>,
    events: &[T],
    ts_of: impl Fn(&T) -> DateTime<Utc>,
) {
    let schema = adit_schemas::arrow_rows::stamped_schema(fields);
    let rows: Vec<(u64, &T)> = events
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u64 + 1, r))
        .collect();
    let batch = stamped_batch(name, schema.clone(), &rows, ts_of).unwrap();
    commit(store, name, &schema, batch).await;
}

/// Writes the seeded day into the tables under `root`.
async fn seed_tables(root: &Path, s: &Seed) {
    let store = TableStore::new(root.to_str().unwrap(), Default::default()).unwrap();
    let mut site_rows = Vec::new();
    let mut machine_rows = Vec::new();
    for i in 0..s.minutes + AFTER_MIDNIGHT {
        let Some(w) = s.power_w(i) else { continue };
        let minute = s.start + Duration::minutes(i);
        site_rows.push(SiteEnergyMinute {
            site: SITE.into(),
            minute,
            energy_wh: w / 60.0,
            avg_power_w: w,
            machines: 4,
            quality: 1.0,
            date: minute.date_naive(),
        });
        if i >= s.minutes {
            // The next day's first minutes: only the site's, for dr-3.
            continue;
        }
        for (k, machine) in ["m1", "m2", "m3", "m4"].iter().enumerate() {
            // m4 is estimated from 20:00 to 21:00.
            let estimated = k == 3 && i / 60 == 20;
            machine_rows.push(MachineEnergyMinute {
                site: SITE.into(),
                machine: (*machine).into(),
                minute,
                energy_wh: w / 240.0,
                avg_power_w: w / 4.0,
                max_power_w: w / 4.0,
                samples: 2,
                covered_s: 60.0,
                quality: 1.0,
                method: "power".into(),
                source: if estimated { "estimate" } else { "meter" }.into(),
                date: minute.date_naive(),
            });
        }
    }
    write(
        &store,
        "site_energy_1m",
        SiteEnergyMinute::schema(),
        &site_rows,
    )
    .await;
    write(
        &store,
        "machine_energy_1m",
        MachineEnergyMinute::schema(),
        &machine_rows,
    )
    .await;

    let sensors: Vec<SensorReading> = (0..s.minutes / 5)
        .map(|k| {
            let ts = s.start + Duration::minutes(5 * k);
            let hot = (180..184).contains(&k); // 15:00–15:20
            SensorReading {
                site: SITE.into(),
                sensor: "t1".into(),
                kind: SensorKind::Temperature,
                value: if hot { 38.0 } else { 30.0 },
                ts,
            }
        })
        .collect();
    write_stamped(
        &store,
        "sensor_readings",
        SensorReading::fields(),
        &sensors,
        |r| r.ts,
    )
    .await;

    let signal = |id: &str, kind, target_kw, deadline, ts| GridSignal {
        site: SITE.into(),
        event_id: id.into(),
        kind,
        target_kw,
        deadline,
        price_per_mwh: None,
        ts,
    };
    // A curtailment to `target` kW by `deadline`, sent at `ts`; its end at `ts`.
    let curtail = |id, target, deadline, ts| {
        signal(
            id,
            GridSignalKind::Curtail,
            Some(target),
            Some(deadline),
            ts,
        )
    };
    let normal = |id, ts| signal(id, GridSignalKind::Normal, None, None, ts);
    let signals = [
        curtail("dr-1", 5.0, s.at(10, 10), s.at(10, 0)),
        normal("dr-1", s.at(11, 0)),
        curtail("dr-2", 2.0, s.at(18, 5), s.at(18, 0)),
        normal("dr-2", s.at(19, 0)),
        // Ten minutes before midnight, until ten minutes after: met at 00:06.
        curtail(
            "dr-3",
            5.0,
            s.start + Duration::minutes(s.minutes + 10),
            s.start + Duration::minutes(s.minutes - 10),
        ),
    ];
    write_stamped(
        &store,
        "grid_signals",
        GridSignal::fields(),
        &signals,
        |r| r.ts,
    )
    .await;

    let command = |n: i64, ts: DateTime<Utc>| CommandRow {
        id: format!("{SITE}:{}:{n}", ts.timestamp_micros()),
        site: SITE.into(),
        target: format!("m{}", n % 4 + 1),
        action: "sleep".into(),
        value: None,
        status: "sent".into(),
        attempt: 0,
        reply: None,
        actuator: None,
        ts,
        date: ts.date_naive(),
    };
    let commands = vec![
        command(0, s.at(10, 0) + Duration::seconds(30)),
        command(1, s.at(10, 1)),
        command(2, s.at(18, 0) + Duration::seconds(30)),
        command(3, s.at(18, 1)),
        command(4, s.at(18, 2)),
    ];
    write(&store, "commands", CommandRow::schema(), &commands).await;

    let violation =
        |kind: &str, event: &str, severity: &str, started: DateTime<Utc>, ts: DateTime<Utc>| {
            ViolationRow {
                id: format!("site:{SITE}:{SITE}:{kind}:{}", started.timestamp_micros()),
                event: event.into(),
                site: Some(SITE.into()),
                scope: "site".into(),
                subject: SITE.into(),
                kind: kind.into(),
                severity: severity.into(),
                value: Some(1.0),
                limit: Some(1.0),
                peak: Some(2.0),
                started,
                ts,
                duration_s: (ts - started).num_seconds() as f64,
                source: "pipeline".into(),
                note: None,
                date: ts.date_naive(),
            }
        };
    // (kind, event, severity, started, ts) as (hour, minute) of the day.
    let violations: Vec<ViolationRow> = [
        ("power_allocation", "opened", "warning", (13, 0), (13, 1)),
        ("power_allocation", "updated", "critical", (13, 0), (13, 5)),
        (
            "power_allocation",
            "resolved",
            "critical",
            (13, 0),
            (13, 30),
        ),
        ("temperature", "opened", "warning", (15, 0), (15, 0)),
        ("temperature", "resolved", "warning", (15, 0), (15, 20)),
        (
            "curtailment_deadline",
            "opened",
            "violation",
            (18, 5),
            (18, 5),
        ),
        (
            "curtailment_deadline",
            "resolved",
            "violation",
            (18, 5),
            (19, 0),
        ),
    ]
    .into_iter()
    .map(|(kind, event, severity, (h0, m0), (h, m))| {
        violation(kind, event, severity, s.at(h0, m0), s.at(h, m))
    })
    .collect();
    write(&store, "violations", ViolationRow::schema(), &violations).await;
}

/// Runs `adit compliance` with the app's config; its stdout.
fn close(app: &App, nats: &str, date: NaiveDate) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_adit"))
        .args(["--config", app.dir.join("adit.toml").to_str().unwrap()])
        .args([
            "--nats-url",
            nats,
            "--tables",
            app.dir.join("tables").to_str().unwrap(),
        ])
        .args(["compliance", "--site", SITE, "--date", &date.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "adit compliance failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The CSV as (section, item, field) → value.
fn figures(csv: &str) -> BTreeMap<(String, String, String), String> {
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                (rec[0].to_string(), rec[1].to_string(), rec[2].to_string()),
                rec[3].to_string(),
            )
        })
        .collect()
}

fn fig(f: &BTreeMap<(String, String, String), String>, section: &str, field: &str) -> f64 {
    f.get(&(section.into(), String::new(), field.into()))
        .unwrap_or_else(|| panic!("no {section}.{field} in the CSV"))
        .parse()
        .unwrap()
}

async fn get(app: &App, q: &str) -> (u16, Vec<u8>, String) {
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/reports/compliance?{q}", app.url()))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let revision = r
        .headers()
        .get("x-adit-revision")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, r.bytes().await.unwrap().to_vec(), revision)
}

/// Waits until the running server serves `revision` for `q`: `adit compliance` commits from
/// another process, and the server's snapshots are up to `[query] snapshot_refresh` old.
async fn served(app: &App, q: &str, revision: &str) {
    common::eventually(
        std::time::Duration::from_secs(30),
        &format!("the server to serve revision {revision} of {q}"),
        || async { get(app, q).await.2 == revision },
    )
    .await;
}

async fn number(app: &App, sql: &str) -> f64 {
    let rows = app.rows(sql).await;
    let v = rows
        .first()
        .and_then(|r| r.as_object())
        .and_then(|r| r.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    v.as_f64().unwrap_or_else(|| panic!("{sql}: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_day_is_reported_as_sql_says_and_closed_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let today = adit_reports::compute::local_today(TZ, Utc::now()).unwrap();
    let date = today - Duration::days(2);
    let (start, end) = adit_reports::local_window(TZ, date).unwrap();
    let seed = Seed {
        start,
        minutes: (end - start).num_minutes(),
    };
    seed_tables(&dir.path().join("tables"), &seed).await;
    let app = App::start(
        &nats.url(),
        dir.path(),
        "query",
        &format!(
            "[compliance]\nreports_dir = \"{}\"\npdf = \"off\"\n",
            reports.display()
        ),
    );
    app.wait_http().await;
    app.put_all(vec![
        (
            format!("/api/v1/registry/sites/{SITE}"),
            json!({"allocation_kw": 10.0, "timezone": TZ, "name": "Site C"}),
        ),
        (
            "/api/v1/registry/sites/site-d".to_string(),
            json!({"allocation_kw": 5.0}),
        ),
        ("/api/v1/registry/pools/pool-a".to_string(), json!({})),
        ("/api/v1/registry/pools/pool-b".to_string(), json!({})),
        (
            format!("/api/v1/registry/machines/{SITE}/m1"),
            json!({"model": "S19", "pool": "pool-a", "nominal_hashrate_hs": 1e14, "nominal_power_w": 3000}),
        ),
        (
            format!("/api/v1/registry/machines/{SITE}/m2"),
            json!({"model": "S19", "pool": "pool-a", "nominal_hashrate_hs": 1e14, "nominal_power_w": 3000}),
        ),
        (
            format!("/api/v1/registry/machines/{SITE}/m3"),
            json!({"model": "S19", "pool": "pool-b", "nominal_hashrate_hs": 1e14, "nominal_power_w": 3000}),
        ),
    ])
    .await;

    // Before the job: provisional, computed on the spot.
    let (status, _, revision) = get(&app, &format!("site={SITE}&date={date}&format=json")).await;
    assert_eq!((status, revision.as_str()), (200, "provisional"));

    let out = close(&app, &nats.url(), date);
    assert!(out.contains("revision 1 (new)"), "{out}");
    served(&app, &format!("site={SITE}&date={date}&format=json"), "1").await;
    let day_dir = reports.join(SITE).join(date.to_string());
    let html = std::fs::read_to_string(day_dir.join("compliance-r1.html")).unwrap();
    let csv_text = std::fs::read_to_string(day_dir.join("compliance-r1.csv")).unwrap();
    let sample = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compliance-sample");
    std::fs::create_dir_all(&sample).unwrap();
    std::fs::write(sample.join("compliance.html"), &html).unwrap();
    std::fs::write(sample.join("compliance.csv"), &csv_text).unwrap();
    println!("sample report: {}", sample.display());

    // Every figure equals SQL over the tables.
    let f = figures(&csv_text);
    let window = format!(
        "site = '{SITE}' AND minute >= to_timestamp_micros({}) AND minute < to_timestamp_micros({})",
        start.timestamp_micros(),
        end.timestamp_micros()
    );
    let sql_energy = number(
        &app,
        &format!("SELECT round(sum(energy_wh) / 1000, 3) FROM site_energy_1m WHERE {window}"),
    )
    .await;
    let sql_peak = number(
        &app,
        &format!("SELECT max(avg_power_w) / 1000 FROM site_energy_1m WHERE {window}"),
    )
    .await;
    let over = |pct: f64| {
        format!(
            "SELECT count(*) FROM site_energy_1m WHERE {window} AND avg_power_w > {}",
            10_000.0 * pct / 100.0
        )
    };
    let sql_warning = number(&app, &over(80.0)).await;
    let sql_critical = number(&app, &over(95.0)).await;
    let sql_over = number(&app, &over(100.0)).await;
    let sql_present = number(
        &app,
        &format!("SELECT count(*) FROM site_energy_1m WHERE {window}"),
    )
    .await;
    let sql_estimated = number(&app, &format!("SELECT count(DISTINCT minute) FROM machine_energy_1m WHERE {window} AND source = 'estimate'")).await;
    let sql_violations = number(
        &app,
        &format!("SELECT count(DISTINCT id) FROM violations WHERE site = '{SITE}'"),
    )
    .await;
    let sql_curtailments = number(
        &app,
        &format!("SELECT count(*) FROM grid_signals WHERE site = '{SITE}' AND kind = 'curtail'"),
    )
    .await;
    assert_eq!(fig(&f, "energy", "energy_kwh"), sql_energy);
    assert_eq!(fig(&f, "energy", "peak_kw"), sql_peak);
    assert_eq!(fig(&f, "energy", "minutes_over_warning"), sql_warning);
    assert_eq!(fig(&f, "energy", "minutes_over_critical"), sql_critical);
    assert_eq!(fig(&f, "energy", "minutes_over_allocation"), sql_over);
    assert_eq!(
        fig(&f, "quality", "missing"),
        seed.minutes as f64 - sql_present
    );
    assert_eq!(fig(&f, "quality", "estimated"), sql_estimated);
    assert_eq!(fig(&f, "violations", "count"), sql_violations);
    assert_eq!(fig(&f, "curtailments", "count"), sql_curtailments);
    // What the seed makes them: the report must not just agree with SQL but be right.
    assert_eq!((sql_warning, sql_critical, sql_over), (75.0, 30.0, 30.0));
    assert_eq!(
        (sql_estimated, seed.minutes as f64 - sql_present),
        (60.0, 30.0)
    );
    let curtailment = |id: &str, field: &str| {
        f.get(&("curtailment".into(), id.into(), field.into()))
            .map(String::as_str)
    };
    assert_eq!(
        (
            curtailment("dr-1", "met"),
            curtailment("dr-2", "met"),
            curtailment("dr-3", "met")
        ),
        (Some("true"), Some("false"), Some("true"))
    );
    assert_eq!(
        curtailment("dr-3", "time_to_target_s"),
        Some("960"),
        "dr-3 is judged on the minutes after midnight"
    );
    assert_eq!(curtailment("dr-1", "commands_sent"), Some("2"));
    assert_eq!(curtailment("dr-2", "commands_sent"), Some("3"));
    assert_eq!(curtailment("dr-1", "time_to_target_s"), Some("360"));
    assert_eq!(
        f.get(&("gap".into(), seed.at(2, 0).to_rfc3339(), "until".into())),
        Some(&seed.at(2, 30).to_rfc3339())
    );
    // The HTML shows the same figures.
    for (id, text) in [
        ("energy-kwh", format!("{sql_energy:.3} kWh")),
        ("hours-allocation", format!("{:.2}", sql_over / 60.0)),
        ("hours-warning", format!("{:.2}", sql_warning / 60.0)),
        (
            "minutes-missing",
            format!("{} (", seed.minutes as f64 - sql_present),
        ),
        ("score", format!("{:.1}", fig(&f, "score", "value"))),
    ] {
        let shown = html
            .split(&format!("id=\"{id}\">"))
            .nth(1)
            .unwrap_or_else(|| panic!("no #{id} in the HTML"));
        assert!(
            shown.starts_with(&text),
            "#{id} shows {:?}, SQL says {text:?}",
            &shown[..40.min(shown.len())]
        );
    }
    assert!(html.contains("<svg") && html.contains("Power against allocation"));
    assert!(
        html.contains(
            adit_reports::compute::SCORE_FORMULA
                .split(',')
                .next()
                .unwrap()
        )
    );

    // Each pool's part of the day, in SQL, and the pool's score weighed from it: with one
    // site, the site's score; its energy, what the report gives the pool.
    let parts = app
        .rows("SELECT pool, machines, energy_kwh, site_score FROM compliance_pools WHERE revision = 1 ORDER BY pool")
        .await;
    let pools: Vec<(&str, i64)> = parts
        .iter()
        .map(|r| (r["pool"].as_str().unwrap(), r["machines"].as_i64().unwrap()))
        .collect();
    // (A seeded machine the registry does not list counts as unassigned.)
    assert_eq!(
        pools,
        [("pool-a", 2), ("pool-b", 1), ("unassigned", 1)],
        "{parts:?}"
    );
    let pool_a: Value = app
        .get_json(
            &format!("/api/v1/reports/compliance/pools/pool-a?date={date}"),
            READ_TOKEN,
        )
        .await;
    assert_eq!(
        pool_a["score"].as_f64(),
        Some((fig(&f, "score", "value") * 100.0).round() / 100.0),
        "{pool_a}"
    );
    let energy_a = f
        .get(&("pool".into(), "pool-a".into(), "energy_kwh".into()))
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert_eq!(pool_a["energy_kwh"].as_f64(), Some(energy_a), "{pool_a}");
    assert_eq!(pool_a["sites"][0]["site"], SITE);
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/reports/compliance/pools/pool-nowhere?date={date}",
            app.url()
        ))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Each event's evidence, in SQL and on the page in Chromium.
    let evidence_rows = check_evidence(&app, 1).await;
    let report_url = format!(
        "{}/api/v1/reports/compliance?site={SITE}&date={date}",
        app.url()
    );
    show_evidence(&report_url, dir.path());

    // A rerun writes nothing and the bytes stay; the API serves the filed revision.
    let out = close(&app, &nats.url(), date);
    assert!(out.contains("revision 1 (unchanged)"), "{out}");
    assert_eq!(
        std::fs::read_to_string(day_dir.join("compliance-r1.html")).unwrap(),
        html
    );
    assert!(!day_dir.join("compliance-r2.html").exists());
    let (status, body, revision) = get(&app, &format!("site={SITE}&date={date}")).await;
    assert_eq!((status, revision.as_str()), (200, "1"));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        html,
        "the API serves the filed bytes"
    );
    let (_, body, _) = get(&app, &format!("site={SITE}&date={date}&format=csv")).await;
    assert_eq!(String::from_utf8(body).unwrap(), csv_text);

    // A late reading in the gap: revision 2, revision 1 kept.
    let store = TableStore::new(
        dir.path().join("tables").to_str().unwrap(),
        Default::default(),
    )
    .unwrap();
    let minute = seed.at(2, 10);
    let late = SiteEnergyMinute {
        site: SITE.into(),
        minute,
        energy_wh: 100.0,
        avg_power_w: 6000.0,
        machines: 4,
        quality: 1.0,
        date: minute.date_naive(),
    };
    write(
        &store,
        "site_energy_1m",
        SiteEnergyMinute::schema(),
        &[late],
    )
    .await;
    let out = close(&app, &nats.url(), date);
    assert!(out.contains("revision 2 (new)"), "{out}");
    served(&app, &format!("site={SITE}&date={date}&format=json"), "2").await;
    assert_eq!(
        std::fs::read_to_string(day_dir.join("compliance-r1.html")).unwrap(),
        html
    );
    let (_, body, revision) = get(&app, &format!("site={SITE}&date={date}&format=csv")).await;
    assert_eq!(revision, "2");
    let f2 = figures(&String::from_utf8(body).unwrap());
    assert_eq!(fig(&f2, "quality", "missing"), 29.0);
    let (_, body, revision) = get(&app, &format!("site={SITE}&date={date}&revision=1")).await;
    assert_eq!(
        (revision.as_str(), String::from_utf8(body).unwrap()),
        ("1", html.clone())
    );
    let rows = app
        .rows(&format!(
            "SELECT revision FROM compliance_daily WHERE site = '{SITE}' ORDER BY revision"
        ))
        .await;
    assert_eq!(rows, vec![json!({"revision": 1}), json!({"revision": 2})]);
    assert_eq!(
        check_evidence(&app, 2).await,
        evidence_rows,
        "revision 2's evidence"
    );
    assert_eq!(
        number(
            &app,
            "SELECT count(*) FROM curtailment_evidence WHERE revision = 1"
        )
        .await,
        evidence_rows as f64,
        "the unchanged rerun wrote no evidence"
    );

    // A site with no data gets a report with its gaps, not an error; bad requests say which.
    let (status, body, _) = get(&app, &format!("site=site-d&date={date}&format=csv")).await;
    assert_eq!(status, 200);
    assert_eq!(
        fig(
            &figures(&String::from_utf8(body).unwrap()),
            "quality",
            "measured"
        ),
        0.0
    );
    for (q, want, says) in [
        (format!("site=nowhere&date={date}"), 404, "unknown site"),
        (format!("site={SITE}&date=21-11-2026"), 400, "not a day"),
        (
            format!("site={SITE}&date={}", today + Duration::days(1)),
            400,
            "future",
        ),
        (
            format!("site={SITE}&date={date}&format=pdf"),
            400,
            "unknown format",
        ),
        (
            format!("site={SITE}&date={date}&revision=9"),
            404,
            "no revision 9",
        ),
        (format!("date={date}"), 400, "site is required"),
    ] {
        let (status, body, _) = get(&app, &q).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, want, "{q}: {body}");
        assert!(body.contains(says), "{q}: {body}");
    }
}

/// Checks revision `revision` of `curtailment_evidence` against the tables it came from: each
/// minute's load is the site's minute in `site_energy_1m`, each event's baseline the mean of the
/// ten minutes before its signal, and each event lists every minute from its signal to its end
/// (dr-1 and dr-2: an hour each, to their `normal`; dr-3: to its deadline, ten minutes past
/// midnight). Returns how many rows it holds.
async fn check_evidence(app: &App, revision: i64) -> i64 {
    let rows = app
        .rows(&format!(
            "SELECT e.event_id, count(*) AS n, \
               sum(CASE WHEN e.load_kw IS NULL AND m.avg_power_w IS NULL THEN 0 \
                        WHEN abs(e.load_kw - m.avg_power_w / 1000) < 0.0005 THEN 0 ELSE 1 END) AS wrong, \
               sum(CASE WHEN e.at_target = (m.avg_power_w <= e.target_kw * 1000) THEN 0 \
                        WHEN e.at_target IS NULL AND m.avg_power_w IS NULL THEN 0 ELSE 1 END) AS wrong_at, \
               min(e.interval_start) = min(e.signal_at) AS from_signal, \
               count(DISTINCT e.interval_start) AS distinct_minutes \
             FROM curtailment_evidence e LEFT JOIN site_energy_1m m \
               ON m.site = e.site AND m.minute = e.interval_start \
             WHERE e.site = '{SITE}' AND e.revision = {revision} GROUP BY e.event_id ORDER BY e.event_id"
        ))
        .await;
    let minutes: Vec<(&str, i64)> = vec![("dr-1", 60), ("dr-2", 60), ("dr-3", 20)];
    assert_eq!(rows.len(), minutes.len(), "{rows:?}");
    for (row, (id, n)) in rows.iter().zip(&minutes) {
        assert_eq!(row["event_id"], *id, "{rows:?}");
        assert_eq!(row["n"].as_i64(), Some(*n), "{row}");
        assert_eq!(row["distinct_minutes"].as_i64(), Some(*n), "{row}");
        assert_eq!(row["wrong"].as_i64(), Some(0), "each minute's load: {row}");
        assert_eq!(
            row["wrong_at"].as_i64(),
            Some(0),
            "each minute at target or not: {row}"
        );
        assert_eq!(row["from_signal"], true, "{row}");
    }
    let baselines = app
        .rows(&format!(
            "WITH ev AS (SELECT DISTINCT event_id, signal_at, baseline_kw, baseline_method \
               FROM curtailment_evidence WHERE site = '{SITE}' AND revision = {revision}) \
             SELECT ev.event_id, ev.baseline_kw, ev.baseline_method, \
               avg(m.avg_power_w) / 1000 AS mean_before \
             FROM ev JOIN site_energy_1m m ON m.site = '{SITE}' \
               AND m.minute >= ev.signal_at - INTERVAL '10 minutes' AND m.minute < ev.signal_at \
             GROUP BY ev.event_id, ev.baseline_kw, ev.baseline_method ORDER BY ev.event_id"
        ))
        .await;
    assert_eq!(baselines.len(), 3, "{baselines:?}");
    for b in &baselines {
        let (kw, mean) = (
            b["baseline_kw"].as_f64().unwrap(),
            b["mean_before"].as_f64().unwrap(),
        );
        assert!(
            (kw - mean).abs() < 0.0005,
            "the baseline is the ten minutes' mean: {b}"
        );
        assert_eq!(
            b["baseline_method"],
            adit_reports::compute::BASELINE_METHOD,
            "{b}"
        );
    }
    rows.iter().map(|r| r["n"].as_i64().unwrap()).sum()
}

/// The report page in Chromium shows dr-1's evidence (baseline 7 kW, met, its hour of minutes,
/// its chart); the screenshot is kept where `ADIT_KEEP_SHOTS` says.
fn show_evidence(report_url: &str, dir: &Path) {
    let shot = dir.join("evidence.png");
    let args = [
        "--url",
        report_url,
        "--token",
        READ_TOKEN,
        "--event",
        "dr-1",
        "--baseline",
        "7.000 kW",
        "--met",
        "yes",
        "--minutes",
        "60",
        "--shot",
        shot.to_str().unwrap(),
    ]
    .map(String::from);
    let (status, said) = run_browser_script(
        "evidence.py",
        &args,
        &dir.join("evidence.log"),
        std::time::Duration::from_secs(120),
    );
    assert!(status.success(), "{said}");
    eprintln!("{said}");
    if let Ok(keep) = std::env::var("ADIT_KEEP_SHOTS") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspections_are_recorded_listed_and_shown_in_the_sites_report() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&nats.url(), dir.path(), "pipelines,query", "");
    app.wait_http().await;
    app.put_all(vec![
        (
            "/api/v1/registry/sites/site-i".to_string(),
            json!({"allocation_kw": 10.0, "timezone": "UTC", "name": "Site I"}),
        ),
        (
            "/api/v1/registry/pools/pool-x".to_string(),
            json!({"operator": "op-4411", "location": "Lyngdal, NO2"}),
        ),
        ("/api/v1/registry/pools/pool-y".to_string(), json!({})),
        (
            "/api/v1/registry/machines/site-i/m1".to_string(),
            json!({"model": "S19", "pool": "pool-x", "nominal_hashrate_hs": 1e14, "nominal_power_w": 3000}),
        ),
    ])
    .await;
    let pool: Value = app
        .get_json("/api/v1/registry/pools/pool-x", READ_TOKEN)
        .await;
    assert_eq!(
        (pool["operator"].as_str(), pool["location"].as_str()),
        (Some("op-4411"), Some("Lyngdal, NO2"))
    );
    let bad_operator = reqwest::Client::new()
        .put(format!("{}/api/v1/registry/pools/pool-z", app.url()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"operator": "op 4411"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_operator.status(), 400);

    let at = Utc::now() - Duration::minutes(5);
    let date = at.date_naive();
    let post = |token: &'static str, body: Value| {
        let url = app.url();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/api/v1/inspections"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let site_inspection = json!({"scope": "site", "target": "site-i", "inspector": "K. Berg, NVE",
        "inspected_at": at, "outcome": "remarks",
        "findings": "Meter seal intact.\nFan 3 guard loose <to fix>."});
    assert_eq!(post(READ_TOKEN, site_inspection.clone()).await.0, 403);
    for (bad, field) in [
        (
            json!({"scope": "site", "target": "site-nowhere", "inspector": "K", "inspected_at": at,
                "outcome": "pass", "findings": "x"}),
            None,
        ),
        (
            json!({"scope": "farm", "target": "site-i", "inspector": "K", "inspected_at": at,
                "outcome": "pass", "findings": "x"}),
            Some("scope"),
        ),
        (
            json!({"scope": "site", "target": "site-i", "inspector": "K", "inspected_at": at,
                "outcome": "maybe", "findings": "x"}),
            Some("outcome"),
        ),
        (
            json!({"scope": "site", "target": "site-i", "inspector": "K", "inspected_at": at,
                "outcome": "pass", "findings": "\u{1b}[2J"}),
            Some("findings"),
        ),
        (
            json!({"scope": "site", "target": "site-i", "inspector": "K",
                "inspected_at": Utc::now() + Duration::days(1), "outcome": "pass", "findings": "x"}),
            Some("inspected_at"),
        ),
    ] {
        let (status, body) = post(OPERATE_TOKEN, bad.clone()).await;
        match field {
            None => assert_eq!(status, 404, "{bad}: {body}"),
            Some(field) => assert_eq!(
                (status, body["error"]["field"].as_str()),
                (400, Some(field)),
                "{bad}: {body}"
            ),
        }
    }
    let (status, body) = post(OPERATE_TOKEN, site_inspection).await;
    assert_eq!(status, 201, "{body}");
    let pool_inspection = json!({"scope": "pool", "target": "pool-x", "inspector": "Auditor AS",
        "inspected_at": at, "outcome": "pass", "findings": "Energy accounts reconcile."});
    assert_eq!(post(OPERATE_TOKEN, pool_inspection).await.0, 201);
    let other_pool = json!({"scope": "pool", "target": "pool-y", "inspector": "Auditor AS",
        "inspected_at": at, "outcome": "fail", "findings": "No meter."});
    assert_eq!(post(OPERATE_TOKEN, other_pool).await.0, 201);

    app.wait_rows(
        Duration::seconds(30).to_std().unwrap(),
        "three inspections landed",
        "SELECT count(*) AS n FROM inspections",
        |rows| rows.first().is_some_and(|r| r["n"] == 3),
    )
    .await;
    let of_pools: Vec<Value> = app
        .get_json("/api/v1/inspections?scope=pool", READ_TOKEN)
        .await;
    assert_eq!(of_pools.len(), 2, "{of_pools:?}");
    let failed: Vec<Value> = app
        .get_json("/api/v1/inspections?outcome=fail", READ_TOKEN)
        .await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["target"], "pool-y");
    assert_eq!(failed[0]["recorded_by"], "operator");

    let (status, body, _) = get(&app, &format!("site=site-i&date={date}&format=json")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let report: Value = serde_json::from_slice(&body).unwrap();
    let shown: Vec<(&str, &str, &str)> = report["inspections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["scope"].as_str().unwrap(),
                i["target"].as_str().unwrap(),
                i["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [("site", "site-i", "remarks"), ("pool", "pool-x", "pass")],
        "the site's and its pool's, not pool-y's"
    );
    let (status, html, _) = get(&app, &format!("site=site-i&date={date}&format=html")).await;
    assert_eq!(status, 200);
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("K. Berg, NVE"), "{html}");
    assert!(
        html.contains("Fan 3 guard loose &lt;to fix&gt;."),
        "findings not escaped: {html}"
    );
    assert!(
        !html.contains("No meter."),
        "pool-y's inspection in site-i's report"
    );
}
