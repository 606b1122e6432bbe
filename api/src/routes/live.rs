//! Live results over Server-Sent Events: `GET /api/v1/live?subjects=results.>,mining.block.>`.
//!
//! Each subscription reads its streams (`RESULTS`, and `MINING` for blocks) through ordered
//! consumers of its own, starting after the streams' last message, and relays every message
//! as an event whose id is the position reached in each stream (`1234` when one stream is
//! followed, `RESULTS:1234,MINING:56` when several). A client that reconnects with that id as
//! `Last-Event-ID` resumes right after it: it misses nothing and sees nothing twice. The first
//! event, `ready`, carries the starting position, so that holds even before any result. An id
//! that does not parse, or points before the oldest message still kept, is answered with a
//! `notice` event saying so, and the subscription starts from the oldest message kept; a
//! stream the id names but the subscription does not follow is ignored, and one it follows
//! but the id does not name starts at the present.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use adit_schemas::EventKind;
use adit_schemas::names::{STREAM_MINING, STREAM_RESULTS, filter_matches};
use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Role};
use crate::error::{QueryError, Result};
use crate::state::AppState;

/// The subjects followed when none are named.
pub const DEFAULT_SUBJECTS: &str = "results.>";

/// How often an idle subscription gets a comment line, so proxies keep it open.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The query string.
#[derive(Debug, Deserialize)]
pub struct LiveParams {
    /// Comma-separated subject filters under `results.` or `mining.block.`.
    pub subjects: Option<String>,
}

/// The streams a subscription reads, each with its subject filters.
type Plan = BTreeMap<&'static str, Vec<String>>;

/// Sorts the filters by stream; a filter outside what may be followed is refused.
pub fn plan(subjects: &str) -> Result<Plan> {
    let mut plan = Plan::new();
    for filter in subjects.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let tokens: Vec<&str> = filter.split('.').collect();
        let well_formed = tokens.iter().enumerate().all(|(i, t)| {
            !t.is_empty()
                && (*t != ">" || i == tokens.len() - 1)
                && !t.chars().any(|c| c.is_whitespace())
        });
        let stream = match tokens.as_slice() {
            ["results", _, ..] => STREAM_RESULTS,
            ["mining", "block", _, ..] => STREAM_MINING,
            _ => {
                return Err(QueryError::BadRequest(format!(
                    "subject {filter:?} cannot be followed live: use filters under results. or mining.block. (e.g. results.>, mining.block.>)"
                )));
            }
        };
        if !well_formed {
            return Err(QueryError::BadRequest(format!(
                "subject {filter:?} is not a valid NATS subject filter"
            )));
        }
        plan.entry(stream).or_default().push(filter.to_string());
    }
    if plan.is_empty() {
        return Err(QueryError::BadRequest("no subjects to follow".into()));
    }
    Ok(plan)
}

/// Positions in each stream: the last sequence a client has seen.
type Positions = BTreeMap<&'static str, u64>;

/// The event id for `positions`: the bare sequence for one stream, `NAME:seq,…` for several.
pub fn event_id(positions: &Positions) -> String {
    if positions.len() == 1 {
        return positions
            .values()
            .next()
            .map(u64::to_string)
            .unwrap_or_default();
    }
    positions
        .iter()
        .map(|(stream, seq)| format!("{stream}:{seq}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a `Last-Event-ID` back into positions for the streams of `plan`.
pub fn parse_event_id(id: &str, plan: &Plan) -> std::result::Result<Positions, String> {
    let id = id.trim();
    let mut out = Positions::new();
    if plan.len() == 1 && !id.contains(':') {
        let stream = plan.keys().next().copied().unwrap_or(STREAM_RESULTS);
        let seq = id
            .parse::<u64>()
            .map_err(|_| format!("Last-Event-ID {id:?} is not a sequence number"))?;
        out.insert(stream, seq);
        return Ok(out);
    }
    for part in id.split(',') {
        let (name, seq) = part
            .split_once(':')
            .ok_or_else(|| format!("Last-Event-ID part {part:?} is not STREAM:sequence"))?;
        let seq = seq
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("Last-Event-ID part {part:?} has no sequence number"))?;
        // A stream the subscription no longer follows is ignored; one it newly follows has
        // no position and starts at the present (see `starts`).
        if let Some(stream) = plan.keys().copied().find(|s| *s == name.trim()) {
            out.insert(stream, seq);
        }
    }
    Ok(out)
}

/// A notice for the client (bad or expired `Last-Event-ID`).
fn notice(code: &str, message: &str) -> Event {
    Event::default()
        .event("notice")
        .data(json!({ "code": code, "message": message }).to_string())
}

/// Where each stream starts, and the notices the client should get about its `Last-Event-ID`.
async fn starts(
    js: &jetstream::Context,
    plan: &Plan,
    last_event_id: Option<&str>,
) -> Result<(Positions, Vec<Event>)> {
    let mut bounds = BTreeMap::new();
    for stream in plan.keys() {
        let mut handle = js
            .get_stream(*stream)
            .await
            .map_err(|e| QueryError::Unavailable(format!("stream {stream}: {e}")))?;
        let info = handle
            .info()
            .await
            .map_err(|e| QueryError::Unavailable(format!("stream {stream}: {e}")))?;
        bounds.insert(
            *stream,
            (info.state.first_sequence, info.state.last_sequence),
        );
    }
    let mut notices = Vec::new();
    let oldest = |bounds: &BTreeMap<&'static str, (u64, u64)>| -> Positions {
        bounds
            .iter()
            .map(|(s, (first, _))| (*s, first.saturating_sub(1)))
            .collect()
    };
    let Some(id) = last_event_id else {
        let now = bounds.iter().map(|(s, (_, last))| (*s, *last)).collect();
        return Ok((now, notices));
    };
    let positions = match parse_event_id(id, plan) {
        Ok(p) => p,
        Err(reason) => {
            notices.push(notice(
                "last_event_id_malformed",
                &format!("{reason}; starting from the oldest event still kept"),
            ));
            return Ok((oldest(&bounds), notices));
        }
    };
    let mut out: Positions = bounds.iter().map(|(s, (_, last))| (*s, *last)).collect();
    for (stream, seq) in positions {
        let (first, last) = bounds[stream];
        if seq > last {
            notices.push(notice(
                "last_event_id_malformed",
                &format!("{stream} has no event {seq} yet (its last is {last}); starting from the oldest event still kept"),
            ));
            out.insert(stream, first.saturating_sub(1));
        } else if seq + 1 < first {
            notices.push(notice(
                "last_event_id_expired",
                &format!("{stream} no longer keeps events after {seq} (its oldest is {first}); starting from there"),
            ));
            out.insert(stream, first.saturating_sub(1));
        } else {
            out.insert(stream, seq);
        }
    }
    Ok((out, notices))
}

/// One message relayed: its stream, sequence, subject and body.
struct Relayed {
    stream: &'static str,
    seq: u64,
    subject: String,
    payload: Value,
}

/// The messages of one stream after `after`, through an ordered consumer.
async fn follow(
    js: &jetstream::Context,
    stream: &'static str,
    filters: Vec<String>,
    after: u64,
) -> Result<BoxStream<'static, Relayed>> {
    // One filter goes to the server; several are matched here (servers before 2.10 ignore a
    // consumer's list of filters), under the stream's part that may be followed.
    let server_filter = match filters.as_slice() {
        [one] => one.clone(),
        _ if stream == STREAM_MINING => EventKind::Block.filter(None),
        _ => "results.>".to_string(),
    };
    let consumer = adit_bus::reader::ordered_in(
        js,
        stream,
        &server_filter,
        DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        },
    )
    .await
    .map_err(|e| QueryError::Unavailable(e.to_string()))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| QueryError::Unavailable(format!("consumer on {stream}: {e}")))?;
    let filters = Arc::new(filters);
    Ok(messages
        .filter_map(move |m| {
            let filters = filters.clone();
            async move {
            let message = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(stream, error = %e, "live consumer error (it recreates itself)");
                    return None;
                }
            };
            if !filters.iter().any(|f| filter_matches(f, &message.subject)) {
                return None;
            }
            let seq = message.info().ok()?.stream_sequence;
            let payload = serde_json::from_slice(&message.payload).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&message.payload).into_owned())
            });
            Some(Relayed {
                stream,
                seq,
                subject: message.subject.to_string(),
                payload,
            })
            }
        })
        .boxed())
}

/// The live subscription, for readers.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(Role::Read, OpenApiRouter::new().routes(routes!(live)))
}

/// Follows result subjects as Server-Sent Events (read role).
#[utoipa::path(get, path = "/api/v1/live", tag = "live",
    params(("subjects" = Option<String>, Query, description = "comma-separated filters under results. or mining.block. (default results.>)"),
           ("Last-Event-ID" = Option<String>, Header, description = "resume right after this event")),
    responses((status = 200, description = "text/event-stream: data {subject, stream, seq, payload}; event `notice` for a bad Last-Event-ID"),
              (status = 400), (status = 401), (status = 429), (status = 503)),
    security(("bearer" = [])))]
pub async fn live(
    State(state): State<AppState>,
    Query(params): Query<LiveParams>,
    headers: HeaderMap,
) -> Result<Response> {
    let live = state
        .live
        .clone()
        .ok_or_else(|| QueryError::Unavailable("live streams need NATS".into()))?;
    let plan = plan(params.subjects.as_deref().unwrap_or(DEFAULT_SUBJECTS))?;
    let permit =
        live.slots.clone().try_acquire_owned().map_err(|_| {
            QueryError::TooBusy("too many live subscribers; try again later".into())
        })?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let (positions, notices) = starts(&live.js, &plan, last_event_id.as_deref()).await?;
    let mut sources = Vec::new();
    for (stream, filters) in plan {
        sources.push(follow(&live.js, stream, filters, positions[stream]).await?);
    }
    // The first event carries the starting position, so a client that drops before any
    // result still resumes from where it began.
    let ready = Event::default()
        .event("ready")
        .id(event_id(&positions))
        .data(json!({ "positions": positions }).to_string());
    let events = relay(positions, stream::select_all(sources), permit);
    let all = stream::iter(notices)
        .chain(stream::once(async move { ready }))
        .chain(events)
        .map(Ok::<_, Infallible>);
    Ok(Sse::new(all)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("hb"))
        .into_response())
}

/// Turns relayed messages into events, each carrying the positions reached; the permit is
/// held for as long as the client listens.
fn relay(
    mut positions: Positions,
    messages: impl futures::Stream<Item = Relayed> + Send + 'static,
    permit: OwnedSemaphorePermit,
) -> impl futures::Stream<Item = Event> + Send + 'static {
    messages.map(move |m| {
        let _held = &permit;
        positions.insert(m.stream, m.seq);
        Event::default().id(event_id(&positions)).data(
            json!({
                "subject": m.subject,
                "stream": m.stream,
                "seq": m.seq,
                "payload": m.payload,
            })
            .to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_sorted_by_stream_and_others_refused() {
        let p = plan("results.>, mining.block.>,results.alert.*").unwrap();
        assert_eq!(p[STREAM_RESULTS], vec!["results.>", "results.alert.*"]);
        assert_eq!(p[STREAM_MINING], vec!["mining.block.>"]);
        for bad in [
            ">",
            "mining.share.>",
            "telemetry.>",
            "results",
            "results.>.x",
            "",
        ] {
            assert!(plan(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn event_ids_round_trip() {
        let one = plan("results.>").unwrap();
        let p = Positions::from([(STREAM_RESULTS, 42)]);
        assert_eq!(event_id(&p), "42");
        assert_eq!(parse_event_id("42", &one).unwrap(), p);

        let two = plan("results.>,mining.block.>").unwrap();
        let p = Positions::from([(STREAM_RESULTS, 42), (STREAM_MINING, 7)]);
        assert_eq!(event_id(&p), "MINING:7,RESULTS:42");
        assert_eq!(parse_event_id("MINING:7,RESULTS:42", &two).unwrap(), p);
    }

    #[test]
    fn malformed_ids_are_refused_with_a_reason() {
        let one = plan("results.>").unwrap();
        let two = plan("results.>,mining.block.>").unwrap();
        assert!(parse_event_id("abc", &one).is_err());
        assert!(parse_event_id("-1", &one).is_err());
        assert!(parse_event_id("42", &two).is_err());
        // Streams not followed are ignored; a followed one missing starts at the present.
        let p = parse_event_id("RESULTS:42,GRID:1", &two).unwrap();
        assert_eq!(p, Positions::from([(STREAM_RESULTS, 42)]));
        assert!(parse_event_id("RESULTS:x,MINING:1", &two).is_err());
    }
}
