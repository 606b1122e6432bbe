//! The site's last demand-response signal on GRID, read when a VEN starts: the last `curtail`
//! or `normal` on `grid.signal.<site>`, past the prices a price feed publishes on the same
//! subject (a price says nothing of whether a curtailment was in force).
//!
//! The subject's last message is read first; when it is no demand-response signal, the
//! subject is read forward from ever earlier points of the stream (the last
//! [`WINDOWS`] messages of GRID, then all of it) up to that last message.

use std::time::Duration;

use adit_schemas::{EventKind, GridSignal, GridSignalKind, names};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self};
use futures::StreamExt;

/// How many of GRID's last messages (every site's) the forward reads start before the
/// subject's last message, before reading the whole stream.
const WINDOWS: [u64; 2] = [4_096, 262_144];
/// Longest wait for a message the server said is there.
const NEXT_WAIT: Duration = Duration::from_secs(5);

/// The last demand-response signal for `site` on GRID; `None` when the site has none. An
/// error is the bus's, worded for the log (the caller tries again).
pub async fn last_demand_response(
    js: &jetstream::Context,
    site: &str,
) -> Result<Option<GridSignal>, String> {
    let stream = js
        .get_stream(names::STREAM_GRID)
        .await
        .map_err(|e| e.to_string())?;
    let subject = EventKind::Grid.filter(Some(site));
    let last = match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => message,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if let Some(signal) = demand_response(&last.payload) {
        return Ok(Some(signal));
    }
    let starts = WINDOWS
        .iter()
        .filter(|&&n| n < last.sequence)
        .map(|n| DeliverPolicy::ByStartSequence {
            start_sequence: last.sequence - n,
        })
        .chain([DeliverPolicy::All]);
    for start in starts {
        if let Some(signal) = scan(&stream, &subject, start, last.sequence).await? {
            return Ok(Some(signal));
        }
    }
    Ok(None)
}

/// A GRID payload as a demand-response signal: `None` for a price, or for bytes that do not
/// read as a signal (the landing files those as dead letters).
fn demand_response(payload: &[u8]) -> Option<GridSignal> {
    let signal: GridSignal = serde_json::from_slice(payload).ok()?;
    (signal.kind != GridSignalKind::Price).then_some(signal)
}

/// The last demand-response signal among `subject`'s messages from `start` up to stream
/// sequence `until`.
async fn scan(
    stream: &Stream,
    subject: &str,
    start: DeliverPolicy,
    until: u64,
) -> Result<Option<GridSignal>, String> {
    let mut consumer = adit_bus::reader::ordered(stream, subject, start)
        .await
        .map_err(|e| e.to_string())?;
    if consumer
        .info()
        .await
        .map_err(|e| e.to_string())?
        .num_pending
        == 0
    {
        return Ok(None);
    }
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut found = None;
    loop {
        let message = match tokio::time::timeout(NEXT_WAIT, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err(format!("reading {subject}: the consumer ended early")),
            Err(_) => {
                return Err(format!(
                    "reading {subject}: no message in {NEXT_WAIT:?} where the server had more"
                ));
            }
        };
        let info = message.info().map_err(|e| e.to_string())?;
        if info.stream_sequence > until {
            break;
        }
        if let Some(signal) = demand_response(&message.payload) {
            found = Some(signal);
        }
        if info.stream_sequence == until || info.pending == 0 {
            break;
        }
    }
    Ok(found)
}
