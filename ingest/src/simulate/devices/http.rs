//! The simulated farm's HTTP devices, one server for every site: each device family's fake
//! (`adapters::poll::fakes`, under `/<family>/`) over the farm's layout and latest readings,
//! and the sites' fan relays, which obey the actuators.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

use crate::adapters::poll::fakes;
use crate::fake::{Reply, Sim};
use crate::simulate::clock::Clock;
use crate::simulate::controls::Controls;

/// What the fan relays need.
struct Relays {
    /// The farm's devices and readings (the relay answers for a known site only).
    sim: Arc<Sim>,
    /// Where the relays' orders go.
    controls: Controls,
    /// The farm's clock (orders are timed on it).
    clock: Clock,
}

/// The HTTP devices' routes: every family's fake over `sim`, and a fan relay per site
/// obeying into `controls` on `clock`.
pub(super) fn router(sim: Arc<Sim>, controls: Controls, clock: Clock) -> axum::Router {
    let relays = Arc::new(Relays {
        sim: sim.clone(),
        controls,
        clock,
    });
    fakes().with_state(sim).merge(
        axum::Router::new()
            .route("/fans/{site}/level", post(fan_level))
            .with_state(relays),
    )
}

/// A fan relay: `POST /fans/<site>/level` with `{"level": 1..9}`.
async fn fan_level(
    State(relays): State<Arc<Relays>>,
    Path(site): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    relays.sim.site(&site)?;
    let level = body
        .get("level")
        .and_then(Value::as_u64)
        .filter(|l| (1..=9).contains(l))
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("level must be 1 to 9, not {}", body["level"]),
            )
        })?;
    relays
        .controls
        .set_fans(&site, level as u8, relays.clock.now());
    Ok(Json(json!({ "site": site, "level": level })))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::adapters::poll::{INITIAL_EVENT_ID, INITIAL_PRICE_ID, INITIAL_PRICE_PER_MWH};
    use crate::fake::{Latest, SiteLayout};
    use crate::simulate::Farm;
    use crate::simulate::devices::test_config;
    use adit_devices::http_json::{
        FieldMap, parse_dr_signal, parse_iotawatt, parse_pdu, parse_price_signal, parse_roomalert,
    };
    use adit_schemas::{AnyEvent, GridSignalKind, SensorKind};
    use axum::body::Body;
    use axum::http::Request;
    use chrono::Utc;
    use tokio::sync::watch;
    use tower::ServiceExt as _;

    async fn get_body(app: &axum::Router, uri: &str) -> (StatusCode, Vec<u8>) {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    /// The status of `POST uri` with `{"level": level}`.
    async fn post_level(app: &axum::Router, uri: &str, level: u64) -> StatusCode {
        let request = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({ "level": level }).to_string(),
            ))
            .unwrap();
        app.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn the_http_devices_answer_what_the_parsers_read_and_the_relays_obey() {
        let mut farm = Farm::new(test_config());
        let mut latest = Latest::default();
        let now = Utc::now();
        let events = farm.tick(now);
        latest.apply(&events);
        let (_tx, rx) = watch::channel(latest);
        let mut layout = BTreeMap::new();
        layout.insert(
            "site-01".to_string(),
            SiteLayout {
                metered: vec!["m-001".into()],
                outlets: vec![(2, "m-002".into())],
                sensors: vec![
                    ("temp-01".into(), SensorKind::Temperature),
                    ("hum-01".into(), SensorKind::Humidity),
                ],
            },
        );
        let sim = Arc::new(Sim {
            layout,
            latest: rx,
            started: now,
        });
        let config = test_config();
        let controls = Controls::default();
        let app = router(
            sim,
            controls.clone(),
            Clock::new(config.backfill, config.speed),
        );
        let truth = |site: &str, machine: &str| {
            events
                .iter()
                .find_map(|e| match e {
                    AnyEvent::Energy(r) if r.site == site && r.machine == machine => {
                        Some(r.power_w)
                    }
                    _ => None,
                })
                .unwrap()
        };

        let (status, body) = get_body(
            &app,
            "/iotawatt/site-01/query?select=[time.iso,m-001.watts]&begin=s-1s&end=s&group=all&format=json",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let got = parse_iotawatt(&body, &["m-001".into()]).unwrap();
        assert_eq!(got, vec![("m-001".into(), truth("site-01", "m-001"))]);
        let (status, _) = get_body(&app, "/iotawatt/site-01/query?select=[m-002.watts]").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "m-002 is on the PDU");
        let (status, _) = get_body(&app, "/iotawatt/site-09/query?select=[m-001.watts]").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (_, body) = get_body(&app, "/pdu/site-01").await;
        let got = parse_pdu(&body, &FieldMap::default()).unwrap();
        assert_eq!(got, vec![("2".into(), truth("site-01", "m-002"))]);

        let (_, body) = get_body(&app, "/roomalert/site-01/getData.json").await;
        let got = parse_roomalert(&body).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].temp_c.is_some() && got[0].humidity_pct.is_none());
        assert!(got[1].humidity_pct.is_some() && got[1].temp_c.is_none());

        // grid_every = 1: the first tick curtailed one site; the other has had no signal, and
        // neither a price.
        let curtailed = events
            .iter()
            .find_map(|e| match e {
                AnyEvent::Grid(g) => Some(g.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(curtailed.kind, GridSignalKind::Curtail);
        let (_, body) = get_body(&app, "/grid/site-01/signal").await;
        let signal = parse_dr_signal(&body, "site-01").unwrap();
        if curtailed.site == "site-01" {
            assert_eq!(signal.kind, GridSignalKind::Curtail);
            assert_eq!(signal.event_id, curtailed.event_id);
            assert_eq!(signal.target_kw, curtailed.target_kw);
            assert_eq!(signal.deadline, curtailed.deadline);
        } else {
            assert_eq!(
                (signal.kind, signal.event_id.as_str()),
                (GridSignalKind::Normal, INITIAL_EVENT_ID)
            );
        }
        let (_, body) = get_body(&app, "/grid/site-01/price").await;
        let price = parse_price_signal(&body, "site-01").unwrap();
        assert_eq!(price.price_per_mwh, Some(INITIAL_PRICE_PER_MWH));
        assert_eq!(price.event_id, INITIAL_PRICE_ID);

        // The fan relay, beside the fakes on the same server.
        let (site_01, site_09) = ("/fans/site-01/level", "/fans/site-09/level");
        assert_eq!(post_level(&app, site_01, 3).await, StatusCode::OK);
        let later = Utc::now() + chrono::Duration::hours(1);
        assert_eq!(
            controls.fan_level("site-01", later, std::time::Duration::ZERO),
            Some(3)
        );
        assert_eq!(post_level(&app, site_01, 0).await, StatusCode::BAD_REQUEST);
        assert_eq!(post_level(&app, site_09, 3).await, StatusCode::NOT_FOUND);
    }
}
