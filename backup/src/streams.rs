//! JetStream streams (the event streams and the KV buckets, which are streams too) through
//! the server's own snapshot and restore API (`$JS.API.STREAM.SNAPSHOT/RESTORE`, what
//! `nats stream backup` uses): every message with its sequence, every consumer with its
//! position, so a pipeline's recorded positions mean the same after a restore.
//!
//! Snapshot: the server sends the s2-compressed tar in chunks to an inbox; each chunk that
//! carries a reply subject is acknowledged (the server's flow control), and an empty message
//! ends it (with an error status when the server failed). Restore: the server names a subject
//! to send chunks to, each a request it answers, and an empty request ends it.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::place::{Moved, Place};

/// How long the server may stay silent during a snapshot or a restore.
const SILENCE: Duration = Duration::from_secs(60);
/// Chunks sent on restore (well under NATS's default 1 MiB payload).
const CHUNK: usize = 128 * 1024;

fn err(stream: &str) -> impl Fn(String) -> Error + '_ {
    move |message| Error::Stream {
        stream: stream.to_string(),
        message,
    }
}

/// What the server said of a stream when snapshotting it.
#[derive(Debug, Clone)]
pub struct Snapshotted {
    /// Its config.
    pub config: Value,
    /// Its state (messages, first and last sequence…).
    pub state: Value,
    /// The snapshot file written.
    pub moved: Moved,
}

/// Sends an API request and returns its JSON answer, or the error the server gave.
async fn api(
    client: &async_nats::Client,
    stream: &str,
    subject: String,
    body: &Value,
    timeout: Duration,
) -> Result<Value> {
    let request = async_nats::Request::new()
        .payload(Bytes::from(body.to_string()))
        .timeout(Some(timeout));
    let answer = client
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| err(stream)(format!("{subject}: {e}")))?;
    let value: Value = serde_json::from_slice(&answer.payload)
        .map_err(|e| err(stream)(format!("{subject}: answer is not JSON: {e}")))?;
    if let Some(error) = value.get("error") {
        let description = error
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        return Err(err(stream)(format!("{subject}: {description}")));
    }
    Ok(value)
}

/// The state of stream `name`, or `None` if there is no such stream.
pub async fn state(client: &async_nats::Client, name: &str) -> Result<Option<Value>> {
    let subject = format!("$JS.API.STREAM.INFO.{name}");
    let answer = client
        .request(subject.clone(), Bytes::new())
        .await
        .map_err(|e| err(name)(format!("{subject}: {e}")))?;
    let value: Value = serde_json::from_slice(&answer.payload)
        .map_err(|e| err(name)(format!("{subject}: answer is not JSON: {e}")))?;
    if let Some(error) = value.get("error") {
        if error.get("code").and_then(Value::as_u64) == Some(404) {
            return Ok(None);
        }
        return Err(err(name)(format!("{subject}: {error}")));
    }
    Ok(value.get("state").cloned())
}

/// Writes a snapshot of stream `name` to `to`/`rel`.
pub async fn snapshot(
    client: &async_nats::Client,
    name: &str,
    to: &Place,
    rel: &str,
) -> Result<Snapshotted> {
    let inbox = client.new_inbox();
    let mut chunks = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| err(name)(format!("subscribing for the snapshot: {e}")))?;
    let answer = api(
        client,
        name,
        format!("$JS.API.STREAM.SNAPSHOT.{name}"),
        &json!({ "deliver_subject": inbox }),
        SILENCE,
    )
    .await?;
    let mut writer = to.writer(rel).await?;
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let chunk = tokio::time::timeout(SILENCE, chunks.next())
            .await
            .map_err(|_| err(name)(format!("the server sent nothing for {SILENCE:?}")))?
            .ok_or_else(|| err(name)("the connection closed during the snapshot".into()))?;
        if chunk.payload.is_empty() {
            if let Some(status) = chunk.status
                && status.as_u16() != 204
            {
                let why = chunk.description.unwrap_or_default();
                return Err(err(name)(format!(
                    "the server ended the snapshot: {status} {why}"
                )));
            }
            break;
        }
        hash.update(&chunk.payload);
        bytes += chunk.payload.len() as u64;
        writer
            .put(chunk.payload.clone())
            .await
            .map_err(|e| err(name)(format!("writing {rel}: {e}")))?;
        if let Some(reply) = chunk.reply {
            client
                .publish(reply, Bytes::new())
                .await
                .map_err(|e| err(name)(format!("acknowledging a chunk: {e}")))?;
        }
    }
    writer.finish().await?;
    Ok(Snapshotted {
        config: answer.get("config").cloned().unwrap_or(Value::Null),
        state: answer.get("state").cloned().unwrap_or(Value::Null),
        moved: Moved {
            bytes,
            sha256: hex::encode(hash.finalize()),
        },
    })
}

/// Deletes stream `name`.
pub async fn delete(client: &async_nats::Client, name: &str) -> Result<()> {
    api(
        client,
        name,
        format!("$JS.API.STREAM.DELETE.{name}"),
        &json!({}),
        SILENCE,
    )
    .await
    .map(drop)
}

/// Restores stream `name` (which must not exist) from the snapshot at `from`/`rel`, with the
/// `config` and `state` recorded beside it; `replicas` replaces the recorded replica count
/// (a backup of a cluster restored on one server, or the reverse).
pub async fn restore(
    client: &async_nats::Client,
    name: &str,
    config: &Value,
    state: &Value,
    replicas: Option<usize>,
    from: &Place,
    rel: &str,
) -> Result<Value> {
    let mut config = config.clone();
    if let (Some(replicas), Some(object)) = (replicas, config.as_object_mut()) {
        object.insert("num_replicas".into(), json!(replicas));
    }
    let answer = api(
        client,
        name,
        format!("$JS.API.STREAM.RESTORE.{name}"),
        &json!({ "config": config, "state": state }),
        SILENCE,
    )
    .await?;
    let deliver = answer
        .get("deliver_subject")
        .and_then(Value::as_str)
        .ok_or_else(|| err(name)("the server named no subject to restore to".into()))?
        .to_string();
    let mut file = from.chunks(rel).await?;
    while let Some(read) = file.next().await {
        let mut read = read?;
        while !read.is_empty() {
            let piece = read.split_to(read.len().min(CHUNK));
            send_chunk(client, name, &deliver, piece).await?;
        }
    }
    let request = async_nats::Request::new()
        .payload(Bytes::new())
        .timeout(Some(SILENCE * 5));
    let done = client
        .send_request(deliver, request)
        .await
        .map_err(|e| err(name)(format!("finishing the restore: {e}")))?;
    let value: Value = serde_json::from_slice(&done.payload)
        .map_err(|e| err(name)(format!("the restore's answer is not JSON: {e}")))?;
    if let Some(error) = value.get("error") {
        return Err(err(name)(format!(
            "the server refused the restore: {error}"
        )));
    }
    Ok(value.get("state").cloned().unwrap_or(value))
}

async fn send_chunk(
    client: &async_nats::Client,
    name: &str,
    deliver: &str,
    piece: Bytes,
) -> Result<()> {
    let request = async_nats::Request::new()
        .payload(piece)
        .timeout(Some(SILENCE));
    let answer = client
        .send_request(deliver.to_string(), request)
        .await
        .map_err(|e| err(name)(format!("sending a chunk: {e}")))?;
    if answer.payload.is_empty() {
        return Ok(());
    }
    Err(err(name)(format!(
        "the server refused a chunk: {}",
        String::from_utf8_lossy(&answer.payload)
    )))
}
