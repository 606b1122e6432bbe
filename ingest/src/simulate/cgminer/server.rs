//! The fake miner's server: one request per connection, as cgminer answers it, from a fresh
//! snapshot of the simulated machine; and the commands it obeys: Braiins OS's `pause` and
//! `resume`, and LuxOS's `logon`, `profileset` by watts (`<session>,<W>W`) and `logoff`,
//! under LuxOS's session rule ([`super::session`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use adit_devices::cgminer::{CODE_INVALID_COMMAND, trim_reply};
use adit_devices::luxos::{LOGOFF, LOGON, PROFILESET, TARGET_RANGE_W};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::session::Sessions;
use super::{CgminerSnapshot, Format, Rec, Reply, Section, render};

/// The status code of a control command carried out.
const CODE_CONTROL_DONE: i64 = 300;
/// LuxOS's codes: a session created, a profile set.
const CODE_SESSION_CREATED: i64 = 316;
const CODE_PROFILE_SET: i64 = 321;
/// The fake's code for a session refused or unknown (LuxOS answers such a request with an
/// `E` status; the code is the fake's own).
const CODE_SESSION_REFUSED: i64 = 402;
/// The fake's code for a session dropped.
const CODE_SESSION_DROPPED: i64 = 317;
/// Largest request the fake miner reads (cgminer's receive buffer).
const MAX_REQUEST_BYTES: usize = 8192;
/// How long the fake miner waits for a request (Antminer firmware's receive timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the fake miner is told to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Control {
    /// `pause`: stop hashing.
    Pause,
    /// `resume`: hash again.
    Resume,
    /// A power target, W (LuxOS `profileset` by watts).
    PowerTarget(f64),
}

/// Serves the fake miner's API on `listener` until `shutdown` is cancelled, answering each
/// connection as cgminer does: read one request (`{"command":"…"}` or the plain-text
/// `summary|` form), reply from a fresh `snapshot()` with [`reply_for`] (or its text form),
/// close. Returns once the listener is closed and every open connection has finished.
/// Control commands are refused as cgminer refuses unknown ones; see [`serve_controlled`].
pub async fn serve(
    listener: TcpListener,
    snapshot: impl Fn() -> CgminerSnapshot + Send + Sync + 'static,
    shutdown: CancellationToken,
) {
    serve_controlled(listener, snapshot, |_: Control| None, shutdown).await;
}

/// [`serve`], also obeying `pause`, `resume` and LuxOS's power targets: `control` carries
/// each out and returns the message of the `S` reply (`None`: refused as an invalid command).
pub async fn serve_controlled(
    listener: TcpListener,
    snapshot: impl Fn() -> CgminerSnapshot + Send + Sync + 'static,
    control: impl Fn(Control) -> Option<String> + Send + Sync + 'static,
    shutdown: CancellationToken,
) {
    let handlers = Arc::new((snapshot, control, Sessions::default()));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let handlers = Arc::clone(&handlers);
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    let (snapshot, control, sessions) = &*handlers;
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        answered = answer(stream, snapshot, control, sessions) => {
                            if let Err(error) = answered {
                                tracing::debug!(%peer, %error, "fake cgminer API: connection failed");
                            }
                        }
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "fake cgminer API: accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One connection: request in, reply out, close.
async fn answer<F, C>(
    mut stream: TcpStream,
    snapshot: &F,
    control: &C,
    sessions: &Sessions,
) -> std::io::Result<()>
where
    F: Fn() -> CgminerSnapshot,
    C: Fn(Control) -> Option<String>,
{
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let when = chrono::Utc::now().timestamp();
    let reply = control_reply(&request, control, sessions, Instant::now(), when)
        .unwrap_or_else(|| respond(&request, &snapshot(), when));
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// The reply to a JSON command that changes the miner (`pause`, `resume`, LuxOS's `logon`,
/// `profileset`, `logoff`); `None` for any other request, or one `control` refuses.
fn control_reply<C: Fn(Control) -> Option<String>>(
    request: &[u8],
    control: &C,
    sessions: &Sessions,
    now: Instant,
    when: i64,
) -> Option<String> {
    let value: Value = serde_json::from_slice(trim_reply(request)).ok()?;
    let word = value.get("command")?.as_str()?;
    let parameter = value.get("parameter").and_then(Value::as_str).unwrap_or("");
    let reply = match word {
        "pause" => Reply::ok(CODE_CONTROL_DONE, control(Control::Pause)?, Vec::new()),
        "resume" => Reply::ok(CODE_CONTROL_DONE, control(Control::Resume)?, Vec::new()),
        LOGON => match sessions.logon(now) {
            Some(id) => Reply::ok(
                CODE_SESSION_CREATED,
                "Session created",
                vec![section("SESSION", Rec::default().s("SessionID", id))],
            ),
            None => Reply::error(CODE_SESSION_REFUSED, "Another session is active"),
        },
        LOGOFF if sessions.logoff(parameter, now) => {
            Reply::ok(CODE_SESSION_DROPPED, "Session dropped", Vec::new())
        }
        LOGOFF => Reply::error(CODE_SESSION_REFUSED, "Invalid session id"),
        PROFILESET => profile_set(parameter, control, sessions, now)?,
        _ => return None,
    };
    let mut out = reply.json(when);
    out.push('\0');
    Some(out)
}

/// `profileset` with `<session>,<watts>W`: the target obeyed, under a valid session.
fn profile_set<C: Fn(Control) -> Option<String>>(
    parameter: &str,
    control: &C,
    sessions: &Sessions,
    now: Instant,
) -> Option<Reply> {
    let Some((id, profile)) = parameter.split_once(',') else {
        return Some(Reply::error(CODE_SESSION_REFUSED, "Missing session id"));
    };
    if !sessions.use_session(id, now) {
        return Some(Reply::error(CODE_SESSION_REFUSED, "Invalid session id"));
    }
    let (lo, hi) = TARGET_RANGE_W;
    let watts = profile
        .strip_suffix('W')
        .and_then(|w| w.parse::<f64>().ok())
        .filter(|w| w.is_finite() && (lo..=hi).contains(w));
    let Some(watts) = watts else {
        return Some(Reply::error(CODE_INVALID_COMMAND, "Invalid profile"));
    };
    control(Control::PowerTarget(watts))?;
    Some(Reply::ok(
        CODE_PROFILE_SET,
        "Profile Set",
        vec![section(
            "PROFILE",
            Rec::default().i("Board", 0).s("Profile", profile),
        )],
    ))
}

/// A section of one entry.
fn section(name: &'static str, rec: Rec) -> Section {
    Section {
        name,
        text_label: false,
        entries: vec![rec],
    }
}

/// Reads one request: a complete JSON object, or (plain text) whatever the first read brings,
/// as cgminer does with its single `recv`.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        request.extend_from_slice(&chunk[..n]);
        let text = trim_reply(&request);
        let complete = n == 0
            || request.len() >= MAX_REQUEST_BYTES
            || request.contains(&0)
            || request.contains(&b'\n')
            || (!text.is_empty() && text[0] != b'{')
            || serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok();
        if complete {
            return Ok(request);
        }
    }
}

/// The fake miner's answer to the bytes of one request.
fn respond(request: &[u8], snap: &CgminerSnapshot, when: i64) -> String {
    let request = trim_reply(request);
    if request.first() == Some(&b'{') {
        let command = match serde_json::from_slice::<Value>(request) {
            Ok(Value::Object(o)) => match o.get("command") {
                Some(Value::String(c)) => Ok(c.clone()),
                Some(_) => Err(Reply::error(CODE_INVALID_COMMAND, "Invalid command")),
                None => Err(Reply::error(24, "Missing JSON 'command'")),
            },
            _ => Err(Reply::error(23, "Invalid JSON")),
        };
        match command {
            Ok(command) => render(&command, snap, when, Format::Json),
            Err(reply) => {
                let mut out = reply.json(when);
                out.push('\0');
                out
            }
        }
    } else {
        let text = String::from_utf8_lossy(request);
        let command = text.split_once('|').map_or(&*text, |(c, _)| c).trim();
        render(command, snap, when, Format::Text)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use adit_devices::cgminer::{REPORT_COMMAND, decode_reply, parse_report, query};
    use adit_schemas::MinerState;

    use super::super::test_snapshot as snapshot;
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const MAX_BYTES: usize = 1024 * 1024;

    /// A guard that lets the tests reach their loopback miners.
    fn any() -> adit_egress::Guard {
        adit_egress::Guard::new(
            adit_egress::Purpose::Devices,
            adit_egress::policy::Rules::parse(&["loopback".to_string()]).expect("rules"),
        )
    }

    async fn listener() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        (l, addr)
    }

    #[test]
    fn requests_are_answered_like_cgminer() {
        let snap = snapshot(MinerState::Mining);
        let text = respond(b"summary|\n", &snap, 7);
        assert!(text.starts_with("STATUS=S,When=7,Code=11,Msg=Summary,Description=bmminer 1.0.0|SUMMARY,Elapsed=86400,GHS 5s=13500.00,"), "{text}");
        assert!(text.ends_with("|\0"), "{text}");
        let joined = respond(b"summary+pools", &snap, 7);
        assert!(joined.starts_with("CMD=summary|STATUS=S,"), "{joined}");
        assert!(
            joined.contains("|CMD=pools|STATUS=S,When=7,Code=7,Msg=1 Pool(s),"),
            "{joined}"
        );
        assert!(
            joined.contains("URL=stratum+tcp://pool.example:3333,"),
            "{joined}"
        );

        let json_reply = respond(br#"{"command":"summary","parameter":""}"#, &snap, 7);
        let v = decode_reply(json_reply.as_bytes()).expect("decodes");
        assert_eq!(v["SUMMARY"][0]["GHS 5s"], "13500.00");
        assert_eq!(v["STATUS"][0]["When"], 7);

        for (request, code, msg) in [
            (&b"{\"command\":"[..], 23, "Invalid JSON"),
            (&b"{\"cmd\":\"summary\"}"[..], 24, "Missing JSON 'command'"),
            (&b"{\"command\":5}"[..], 14, "Invalid command"),
        ] {
            let v = decode_reply(respond(request, &snap, 7).as_bytes()).expect("decodes");
            assert_eq!(v["STATUS"][0]["STATUS"], "E");
            assert_eq!(v["STATUS"][0]["Code"], code);
            assert_eq!(v["STATUS"][0]["Msg"], msg);
        }
    }

    #[tokio::test]
    async fn the_fake_miner_round_trips_a_snapshot_over_tcp() {
        let (l, addr) = listener().await;
        let snap = snapshot(MinerState::Mining);
        let served = snap.clone();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(l, move || served.clone(), shutdown.clone()));

        let reply = query(&any(), &addr, REPORT_COMMAND, TIMEOUT, MAX_BYTES)
            .await
            .expect("query");
        let r = parse_report(&reply).expect("parses");
        assert_eq!(r.hashrate_hs, snap.hashrate_hs);
        assert_eq!(r.temp_c, Some(74.75));
        assert_eq!(r.fan_rpm, Some(6000.0));
        assert_eq!(r.power_w, Some(1350.0));
        assert_eq!(r.state, MinerState::Mining);

        // One request per connection: a second query is a second connection.
        let single = query(&any(), &addr, "summary", TIMEOUT, MAX_BYTES)
            .await
            .expect("query");
        assert_eq!(
            parse_report(&single).expect("parses").hashrate_hs,
            snap.hashrate_hs
        );

        // The plain-text form gets the text reply.
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        stream.write_all(b"summary|").await.expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("read");
        assert!(text.starts_with("STATUS=S,"), "{text}");
        assert!(text.contains("|SUMMARY,Elapsed=86400,"), "{text}");

        shutdown.cancel();
        tokio::time::timeout(TIMEOUT, server)
            .await
            .expect("serve stops")
            .expect("no panic");
        assert!(matches!(
            query(&any(), &addr, "summary", TIMEOUT, MAX_BYTES).await,
            Err(adit_devices::DeviceError::Connect { .. })
        ));
    }

    #[tokio::test]
    async fn a_power_target_is_set_through_a_luxos_session_and_obeyed() {
        let (l, addr) = listener().await;
        let obeyed = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&obeyed);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_controlled(
            l,
            || snapshot(MinerState::Mining),
            move |c| {
                seen.lock().expect("lock").push(c);
                Some("done".into())
            },
            shutdown.clone(),
        ));
        let said = adit_devices::luxos::set_power_target(&any(), &addr, 1099.6, TIMEOUT, MAX_BYTES)
            .await
            .expect("set");
        assert!(said.contains("profile 1100W"), "{said}");
        // The session was dropped: the next target opens another.
        adit_devices::luxos::set_power_target(&any(), &addr, 1350.0, TIMEOUT, MAX_BYTES)
            .await
            .expect("set again");
        assert_eq!(
            *obeyed.lock().expect("lock"),
            vec![Control::PowerTarget(1100.0), Control::PowerTarget(1350.0)]
        );
        // A change without the session is refused and not obeyed; a held session refuses a
        // second actor.
        let ask = |command: &'static str, parameter: Option<String>| {
            let addr = addr.clone();
            async move {
                adit_devices::cgminer::query_with(
                    &any(),
                    &addr,
                    command,
                    parameter.as_deref(),
                    TIMEOUT,
                    MAX_BYTES,
                )
                .await
                .expect("answers")
            }
        };
        let stray = ask(PROFILESET, Some("nosuch,900W".into())).await;
        assert_eq!(stray["STATUS"][0]["STATUS"], "E", "{stray}");
        let held = adit_devices::luxos::session_id(&ask(LOGON, None).await).expect("logon");
        let refused =
            adit_devices::luxos::set_power_target(&any(), &addr, 900.0, TIMEOUT, MAX_BYTES)
                .await
                .expect_err("another session is active");
        assert!(refused.contains("Another session"), "{refused}");
        let bad = ask(PROFILESET, Some(format!("{held},lots"))).await;
        assert_eq!(bad["STATUS"][0]["Msg"], "Invalid profile", "{bad}");
        assert_eq!(
            obeyed.lock().expect("lock").len(),
            2,
            "nothing more was obeyed"
        );
        shutdown.cancel();
        server.await.expect("no panic");
    }
}
