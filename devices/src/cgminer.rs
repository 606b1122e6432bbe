//! The cgminer API that Antminer (bmminer), Braiins OS (BOSminer), Whatsminer and most other
//! SHA-256 miners answer on TCP port 4028, both ways.
//!
//! The protocol: the client connects, sends one JSON object `{"command":"summary"}` (or the
//! plain-text form `summary|`), and the miner replies with one JSON object, usually followed by
//! a NUL byte, then closes the connection. Commands join with `+`: the reply to
//! `summary+stats` is `{"summary":[<summary reply>],"stats":[<stats reply>],"id":1}`. Every
//! reply carries a `STATUS` array whose `STATUS` is `S` (success), `I` (info), `W` (warning),
//! `E` (error) or `F` (fatal); the data follows under an upper-case key (`SUMMARY`, `STATS`,
//! `DEVS`, `POOLS`, `TEMPS`, `FANS`, `TUNERSTATUS`, …).
//!
//! Firmwares differ in where they put the figures, and this module reads all the known places:
//! - hashrate: `GHS 5s` (bmminer, often a string), `MHS 5s` / `MHS 1m` (cgminer, BOSminer,
//!   Whatsminer), falling back to the `av` averages; from `SUMMARY`, else `STATS`, else the sum
//!   over `DEVS`;
//! - temperatures: bmminer `temp1..` (board), `temp2_1..` (chip), `temp3_..`, `temp_max`,
//!   `temp_chip*` / `temp_pcb*` (newer Antminers, as `"55-55-71-71"` strings or arrays), cgminer
//!   and Whatsminer `Temperature`, Whatsminer `Chip Temp Max`, BOSminer `TEMPS` (`Board`,
//!   `Chip`, `TopLeft`, …). A `0` is how bmminer marks an absent sensor, and is skipped;
//! - fans: bmminer `fan1..`, Whatsminer `Fan Speed In` / `Fan Speed Out`, BOSminer `FANS[].RPM`;
//! - power: Whatsminer `Power`, Antminer `chain_power` (`"3250 W"`), BOSminer
//!   `TUNERSTATUS[].ApproximateMinerPowerConsumption`.
//!
//! Some firmwares send invalid JSON: bmminer omits the comma between the two objects of its
//! `STATS` array (`}{`), others put a comma after `[` or before `}`. [`decode_reply`] repairs
//! exactly these separator faults (outside strings) when strict parsing fails.
//!
//! Layers: [`query`] moves bytes (one exchange under one timeout); [`decode_reply`] and
//! [`parse_report`] are pure; [`reply_for`] builds what a bmminer-based Antminer S9 answers,
//! and [`serve`] is the simulator's fake miner that answers with it.

use std::sync::Arc;
use std::time::Duration;

use adit_schemas::MinerState;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{DeviceError, in_range, json_garbage, number};

/// The port miners answer the API on.
pub const DEFAULT_PORT: u16 = 4028;
/// The command whose reply holds everything [`parse_report`] reads, in one exchange.
pub const REPORT_COMMAND: &str = "summary+stats+devs+pools";

/// Highest hashrate believed from one machine, H/s: 100 PH/s, a hundred times the largest
/// single machines.
const MAX_HASHRATE_HS: f64 = 1e17;
/// Coldest plausible temperature, °C (the range `SensorReading` accepts).
const MIN_TEMP_C: f64 = -60.0;
/// Hottest plausible temperature, °C.
const MAX_TEMP_C: f64 = 150.0;
/// Fastest plausible fan, RPM.
const MAX_FAN_RPM: f64 = 100_000.0;
/// Most power believed drawn by one machine, watts.
const MAX_POWER_W: f64 = 100_000.0;

/// The status code cgminer gives an unknown command: such a section says nothing about the
/// miner, only about its firmware.
const CODE_INVALID_COMMAND: i64 = 14;
/// The status code of a control command carried out.
const CODE_CONTROL_DONE: i64 = 300;
/// The status code cgminer gives a command the client may not use (likewise).
const CODE_ACCESS_DENIED: i64 = 45;

/// Largest request the fake miner reads (cgminer's receive buffer).
const MAX_REQUEST_BYTES: usize = 8192;
/// How long the fake miner waits for a request (Antminer firmware's receive timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// Client: one exchange.
// ---------------------------------------------------------------------------------------------

/// Sends `command` (e.g. `"summary"` or [`REPORT_COMMAND`]) to the miner at `addr` and returns
/// its decoded reply. `guard` decides which addresses `addr` may be reached at (the egress
/// policy for devices).
///
/// `timeout` bounds the whole exchange: connecting, writing, and reading to the end of the
/// reply (the miner closes the connection or sends a NUL byte). A reply longer than
/// `max_bytes` is refused with [`DeviceError::TooLarge`]; one that is not JSON, or is cut off,
/// with [`DeviceError::Garbage`]. The reply's `STATUS` is not judged here: see
/// [`parse_report`].
pub async fn query(
    guard: &adit_egress::Guard,
    addr: &str,
    command: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Value, DeviceError> {
    let io = |source: std::io::Error| DeviceError::Io {
        addr: addr.to_string(),
        source,
    };
    let exchange = async {
        let mut stream = guard
            .connect(addr)
            .await
            .map_err(|e| DeviceError::Connect {
                addr: addr.to_string(),
                source: std::io::Error::other(e),
            })?;
        let request = serde_json::json!({ "command": command }).to_string();
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        read_reply(&mut stream, max_bytes)
            .await
            .map_err(|e| match e {
                ReadError::Io(source) => io(source),
                ReadError::TooLarge => DeviceError::TooLarge {
                    addr: addr.to_string(),
                    limit: max_bytes,
                },
            })
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DeviceError::Timeout {
            addr: addr.to_string(),
            after: timeout,
        })??;
    decode_reply(&raw)
}

/// Why reading a reply stopped early.
enum ReadError {
    /// The connection failed.
    Io(std::io::Error),
    /// The reply passed the caller's limit.
    TooLarge,
}

/// Reads until the peer closes or sends a NUL byte; returns the bytes before the NUL.
async fn read_reply(stream: &mut TcpStream, max_bytes: usize) -> Result<Vec<u8>, ReadError> {
    let mut reply = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(reply);
        }
        let part = &chunk[..n];
        let (part, done) = match part.iter().position(|&b| b == 0) {
            Some(nul) => (&part[..nul], true),
            None => (part, false),
        };
        if reply.len() + part.len() > max_bytes {
            return Err(ReadError::TooLarge);
        }
        reply.extend_from_slice(part);
        if done {
            return Ok(reply);
        }
    }
}

/// Decodes the bytes of one reply: strips the NUL terminator and surrounding whitespace,
/// parses the JSON, and if that fails repairs the separator faults some firmwares make
/// (`}{`, `[,`, `,}`, `""` with no comma between) outside strings and tries once more.
///
/// A reply cut off part-way, or one that is not a JSON object (a plain-text reply, an HTML
/// page), is [`DeviceError::Garbage`].
pub fn decode_reply(raw: &[u8]) -> Result<Value, DeviceError> {
    let text = trim_reply(raw);
    if text.is_empty() {
        return Err(DeviceError::garbage("the reply is empty", raw));
    }
    if text[0] != b'{' {
        let reason = if text.starts_with(b"STATUS=") {
            "a plain-text reply, not JSON (the request was not sent as JSON?)"
        } else {
            "the reply is not a JSON object"
        };
        return Err(DeviceError::garbage(reason, raw));
    }
    let value = match serde_json::from_slice::<Value>(text) {
        Ok(v) => v,
        Err(strict) => {
            if strict.is_eof() {
                return Err(json_garbage(&strict, text));
            }
            // Once the separators are repaired, what is left is the real fault: a cut-off
            // reply shows as such even if it also had a missing comma before the cut.
            serde_json::from_slice(&repair_separators(text)).map_err(|repaired| {
                json_garbage(
                    if repaired.is_eof() {
                        &repaired
                    } else {
                        &strict
                    },
                    text,
                )
            })?
        }
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(DeviceError::garbage("the reply is not a JSON object", raw))
    }
}

/// `raw` without leading whitespace and trailing whitespace and NUL bytes.
fn trim_reply(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != 0)
        .unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != 0)
        .map_or(start, |i| i + 1);
    &raw[start..end]
}

/// Fixes missing and extra commas outside strings: inserts one between a value's end and a
/// following `{`, `[` or `"`; drops one after `[`, `{` or another comma, and before `}` or `]`.
/// Valid JSON never has these, so the repair cannot change a valid document.
fn repair_separators(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    // The last significant byte outside a string: a bracket, `,`, `:`, `"` (a string ended)
    // or `v` (part of a number or literal).
    let mut last: Option<u8> = None;
    for &b in text {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                last = Some(b'"');
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => out.push(b),
            b'{' | b'[' | b'"' => {
                if matches!(last, Some(b'}' | b']' | b'"' | b'v')) {
                    out.push(b',');
                }
                out.push(b);
                if b == b'"' {
                    in_string = true;
                } else {
                    last = Some(b);
                }
            }
            b',' => {
                if !matches!(last, None | Some(b'[' | b'{' | b',')) {
                    out.push(b);
                    last = Some(b);
                }
            }
            b'}' | b']' => {
                if last == Some(b',')
                    && let Some(comma) = out.iter().rposition(|c| !c.is_ascii_whitespace())
                {
                    out.remove(comma);
                }
                out.push(b);
                last = Some(b);
            }
            b':' => {
                out.push(b);
                last = Some(b);
            }
            _ => {
                out.push(b);
                last = Some(b'v');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reading a report.
// ---------------------------------------------------------------------------------------------

/// What a miner's reply says about it, in adit's units.
#[derive(Debug, Clone, PartialEq)]
pub struct MinerReport {
    /// Current hashrate, H/s (the 5-second rate where the firmware has one).
    pub hashrate_hs: f64,
    /// Hottest temperature the miner reports (chip or board), °C.
    pub temp_c: Option<f64>,
    /// Fastest fan, RPM.
    pub fan_rpm: Option<f64>,
    /// Power the firmware reports, watts.
    pub power_w: Option<f64>,
    /// What it is doing.
    pub state: MinerState,
}

/// Reads a [`MinerReport`] from a joined reply (`summary+stats+devs+pools`, or any other
/// combination: each top-level key holds a one-element array with that command's reply) or
/// from a single reply such as `summary`'s.
///
/// The state is, in order: [`MinerState::Error`] if a section's `STATUS` is `E` or `F` (other
/// than "invalid command" or "access denied", which only say the firmware lacks a command) or
/// a device is `Dead`, `Sick` or `NoStart`; [`MinerState::Sleeping`] if the hashrate is 0 and
/// every device is disabled; [`MinerState::Mining`] if the hashrate is above 0 and a pool is
/// `Alive` (or the reply has no pool list); else [`MinerState::Idle`].
///
/// A reply without any hashrate figure (unless it reports an error) is
/// [`DeviceError::Garbage`]; a figure that is not finite or outside its plausible range
/// (negative, a chip over 150 °C, more than 100 PH/s) is [`DeviceError::OutOfRange`].
pub fn parse_report(reply: &Value) -> Result<MinerReport, DeviceError> {
    let garbage = |reason: String| DeviceError::garbage(reason, reply.to_string().as_bytes());
    let Some(top) = reply.as_object() else {
        return Err(garbage("the reply is not a JSON object".into()));
    };
    let replies: Vec<&Map<String, Value>> = if top.contains_key("STATUS") {
        vec![top]
    } else {
        top.values()
            .filter_map(|v| v.as_array()?.first()?.as_object())
            .filter(|r| r.contains_key("STATUS"))
            .collect()
    };
    if replies.is_empty() {
        return Err(garbage(
            "neither a cgminer reply (no STATUS) nor a joined one (no command sections)".into(),
        ));
    }

    let mut seen = Gathered::default();
    let mut refusals = Vec::new();
    let mut used = 0;
    for r in &replies {
        match verdict(r).map_err(garbage)? {
            Verdict::Refused(msg) => {
                refusals.push(msg);
                continue;
            }
            Verdict::Failed => seen.failed = true,
            Verdict::Ok => {}
        }
        used += 1;
        for (section, items) in r.iter() {
            if section == "STATUS" || section == "id" {
                continue;
            }
            for item in items.as_array().into_iter().flatten() {
                if let Some(item) = item.as_object() {
                    seen.item(section, item)?;
                }
            }
        }
    }
    if used == 0 {
        return Err(garbage(format!(
            "the miner refused every command: {}",
            refusals.join("; ")
        )));
    }

    let failed = seen.failed || seen.dev_failed;
    let hashrate_hs = match seen.summary_rate.or(seen.stats_rate).or(seen.devs_rate) {
        Some(rate) => rate,
        None if failed => 0.0,
        None => {
            return Err(garbage(
                "no hashrate in the reply (looked for GHS 5s, MHS 5s, MHS 1m, GHS av, MHS av)"
                    .into(),
            ));
        }
    };
    let state = if failed {
        MinerState::Error
    } else if hashrate_hs == 0.0 && seen.devs > 0 && seen.devs_disabled == seen.devs {
        MinerState::Sleeping
    } else if hashrate_hs > 0.0 && (!seen.pools_seen || seen.pool_alive) {
        MinerState::Mining
    } else {
        MinerState::Idle
    };
    Ok(MinerReport {
        hashrate_hs,
        temp_c: seen.temps.iter().copied().reduce(f64::max),
        fan_rpm: seen.fans.iter().copied().reduce(f64::max),
        power_w: seen.power.map(|(_, w)| w),
        state,
    })
}

/// What one command's `STATUS` says.
enum Verdict {
    /// Success, information or warning: the data stands.
    Ok,
    /// The firmware does not know or allow the command: the section says nothing.
    Refused(String),
    /// The miner reports an error.
    Failed,
}

/// Reads a reply's `STATUS`: an array of one object (cgminer) or a plain string (Whatsminer's
/// newer API).
fn verdict(reply: &Map<String, Value>) -> Result<Verdict, String> {
    let holder = match reply.get("STATUS") {
        Some(Value::Array(items)) => items.first().and_then(Value::as_object),
        Some(Value::String(_)) => Some(reply),
        _ => None,
    };
    let field = |name: &str| holder.and_then(|h| h.get(name));
    let msg = field("Msg")
        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
        .unwrap_or_default();
    match field("STATUS").and_then(Value::as_str) {
        Some("S" | "I" | "W") => Ok(Verdict::Ok),
        Some("E" | "F") => {
            let code = field("Code").and_then(Value::as_i64);
            if matches!(code, Some(CODE_INVALID_COMMAND | CODE_ACCESS_DENIED))
                || msg.eq_ignore_ascii_case("invalid command")
            {
                Ok(Verdict::Refused(msg))
            } else {
                Ok(Verdict::Failed)
            }
        }
        other => Err(format!(
            "STATUS is {other:?}, not one of S, I, W, E, F",
            other = other.unwrap_or("missing")
        )),
    }
}

/// The figures found so far in a reply's sections.
#[derive(Default)]
struct Gathered {
    /// Hashrate from `SUMMARY`, H/s.
    summary_rate: Option<f64>,
    /// Hashrate from `STATS` (bmminer's device entry), H/s.
    stats_rate: Option<f64>,
    /// Sum of the hashrates in `DEVS`, H/s.
    devs_rate: Option<f64>,
    /// Every temperature reading, °C.
    temps: Vec<f64>,
    /// Every fan speed, RPM.
    fans: Vec<f64>,
    /// The best power figure so far: (rank, watts), lower rank preferred.
    power: Option<(u8, f64)>,
    /// The reply has a pool list (without one, a hashing miner counts as mining).
    pools_seen: bool,
    /// A pool in the list is alive.
    pool_alive: bool,
    /// Entries in `DEVS`.
    devs: usize,
    /// Entries in `DEVS` that are disabled (all of them: the miner sleeps).
    devs_disabled: usize,
    /// A device is dead, sick or did not start.
    dev_failed: bool,
    /// A section's STATUS is an error.
    failed: bool,
}

impl Gathered {
    /// Takes in one entry of one section (`SUMMARY[0]`, `DEVS[2]`, …).
    fn item(&mut self, section: &str, item: &Map<String, Value>) -> Result<(), DeviceError> {
        match section {
            "POOLS" => {
                self.pools_seen = true;
                if item
                    .get("Status")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.eq_ignore_ascii_case("alive"))
                {
                    self.pool_alive = true;
                }
                return Ok(());
            }
            "VERSION" | "CONFIG" => return Ok(()),
            "SUMMARY" if self.summary_rate.is_none() => self.summary_rate = rate_of(item)?,
            "STATS" if self.stats_rate.is_none() => self.stats_rate = rate_of(item)?,
            "DEVS" => {
                self.devs += 1;
                let text = |k: &str| item.get(k).and_then(Value::as_str);
                if text("Enabled") == Some("N") {
                    self.devs_disabled += 1;
                }
                if matches!(text("Status"), Some("Dead" | "Sick" | "NoStart")) {
                    self.dev_failed = true;
                }
                if let Some(rate) = rate_of(item)? {
                    *self.devs_rate.get_or_insert(0.0) += rate;
                }
            }
            _ => {}
        }
        self.sensors(section, item)
    }

    /// Takes in the temperatures, fans and power of one entry, and of its `chain` entries
    /// (newer Antminers nest per-board figures there).
    fn sensors(&mut self, section: &str, item: &Map<String, Value>) -> Result<(), DeviceError> {
        for (key, value) in item {
            if is_temp_key(section, key) {
                for t in temp_values(value) {
                    // bmminer reports 0 for every sensor slot without a board.
                    if t != 0.0 {
                        self.temps.push(in_range(key, t, MIN_TEMP_C, MAX_TEMP_C)?);
                    }
                }
            } else if is_fan_key(section, key) {
                if let Some(rpm) = number(value) {
                    self.fans.push(in_range(key, rpm, 0.0, MAX_FAN_RPM)?);
                }
            } else if let Some(rank) = power_rank(key)
                && let Some(w) = power_value(value)
            {
                let w = in_range(key, w, 0.0, MAX_POWER_W)?;
                if self.power.is_none_or(|(best, _)| rank < best) {
                    self.power = Some((rank, w));
                }
            } else if key == "chain"
                && let Some(chains) = value.as_array()
            {
                for chain in chains.iter().filter_map(Value::as_object) {
                    self.sensors(section, chain)?;
                }
            }
        }
        Ok(())
    }
}

/// The hashrate keys, best first, with their unit in H/s.
const RATE_KEYS: &[(&str, f64)] = &[
    ("GHS 5s", 1e9),
    ("MHS 5s", 1e6),
    ("GHS 1m", 1e9),
    ("MHS 1m", 1e6),
    ("GHS av", 1e9),
    ("MHS av", 1e6),
];

/// The hashrate of one entry, H/s, if it has one.
fn rate_of(item: &Map<String, Value>) -> Result<Option<f64>, DeviceError> {
    let found = RATE_KEYS
        .iter()
        .find_map(|&(key, unit)| Some((key, number(item.get(key)?)?, unit)))
        // cgminer names the rolling rate after its log interval: `MHS 20s` with `--log 20`.
        .or_else(|| {
            item.iter()
                .find_map(|(key, v)| Some((key.as_str(), number(v)?, rolling_rate_unit(key)?)))
        });
    match found {
        Some((key, raw, unit)) => Ok(Some(
            in_range(key, raw, 0.0, MAX_HASHRATE_HS / unit)? * unit,
        )),
        None => Ok(None),
    }
}

/// The unit of a `MHS <n>s` / `GHS <n>s` key, H/s.
fn rolling_rate_unit(key: &str) -> Option<f64> {
    let (prefix, window) = key.split_once(' ')?;
    let unit = match prefix {
        "MHS" => 1e6,
        "GHS" => 1e9,
        _ => return None,
    };
    let secs = window.strip_suffix('s')?;
    is_digits(secs).then_some(unit)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `key` is `prefix` followed by a number (`temp6` for `temp`).
fn numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(is_digits)
}

/// `key` is `prefix`, possibly followed by a number (`temp_chip`, `temp_chip1`).
fn maybe_numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || is_digits(rest))
}

/// Whether `key` in `section` holds temperatures. Counts such as `temp_num` do not.
fn is_temp_key(section: &str, key: &str) -> bool {
    if section == "TEMPS" {
        return matches!(
            key,
            "Board" | "Chip" | "TopLeft" | "TopRight" | "BottomLeft" | "BottomRight"
        );
    }
    matches!(key, "Temperature" | "temp_max" | "Chip Temp Max")
        || numbered(key, "temp")
        || numbered(key, "temp2_")
        || numbered(key, "temp3_")
        || maybe_numbered(key, "temp_chip")
        || maybe_numbered(key, "temp_pcb")
}

/// Whether `key` in `section` holds a fan speed in RPM (not a count or a percentage).
fn is_fan_key(section: &str, key: &str) -> bool {
    if section == "FANS" {
        return key == "RPM";
    }
    matches!(key, "Fan Speed In" | "Fan Speed Out") || numbered(key, "fan")
}

/// Whether `key` holds the machine's power, and how much it is preferred (lower is better).
fn power_rank(key: &str) -> Option<u8> {
    match key {
        "Power" => Some(0),
        "chain_power" => Some(1),
        "ApproximateMinerPowerConsumption" => Some(2),
        _ => None,
    }
}

/// The temperatures in one value: a number, a numeric string, a dash-joined string of
/// numbers (`"55-55-71-71"`, one per sensor), or an array of numbers. Markers such as `"-"`
/// give none.
fn temp_values(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().filter_map(number).collect(),
        Value::String(s) => match number(value) {
            Some(t) => vec![t],
            None => {
                let parts: Option<Vec<f64>> = s.split('-').map(|p| p.trim().parse().ok()).collect();
                parts.unwrap_or_default()
            }
        },
        _ => number(value).into_iter().collect(),
    }
}

/// Watts from a number or a string with a unit (`"3250 W"`, `"3250W"`).
fn power_value(value: &Value) -> Option<f64> {
    match value {
        Value::String(s) => {
            let first = s.split_whitespace().next()?;
            first.trim_end_matches(['W', 'w']).parse().ok()
        }
        _ => number(value),
    }
}

// ---------------------------------------------------------------------------------------------
// The fake miner: replies.
// ---------------------------------------------------------------------------------------------

/// The state of a simulated miner, from which [`reply_for`] builds its API replies.
#[derive(Debug, Clone, PartialEq)]
pub struct CgminerSnapshot {
    /// Current hashrate, H/s: reported as the 5-second and the average rate.
    pub hashrate_hs: f64,
    /// One temperature per hash board, °C: the number of boards (at least one) and each
    /// board's chip and PCB sensors.
    pub temps_c: Vec<f64>,
    /// One speed per fan, RPM (reported as whole numbers).
    pub fans_rpm: Vec<f64>,
    /// Power draw, watts, reported as `chain_power` when known.
    pub power_w: Option<f64>,
    /// What the miner is doing. `Idle` and `Mining` report the hashrate as given; `Sleeping`
    /// disables the boards; `Error` reports them `Dead`; `Offline` reports the pool `Dead` (a
    /// miner that does not answer at all is the simulator's business: it does not serve).
    pub state: MinerState,
    /// Seconds since the miner started.
    pub elapsed_s: u64,
    /// The pool it mines on (`stratum+tcp://host:port`).
    pub pool_url: String,
}

/// The `Description` of every status: the fake is a bmminer-based Antminer S9.
const DESCRIPTION: &str = "bmminer 1.0.0";
/// `BMMiner` in `version` and `stats`.
const BMMINER_VERSION: &str = "2.0.0";
/// `API` in `version`.
const API_VERSION: &str = "3.1";
/// `Miner` (the firmware build) in `version` and `stats`.
const MINER_VERSION: &str = "16.8.1.3";
/// `CompileTime` in `version` and `stats`.
const COMPILE_TIME: &str = "Fri Nov 17 17:37:49 CST 2017";
/// `Type` (the model) in `version` and `stats`.
const MINER_TYPE: &str = "Antminer S9";
/// The pool difficulty the fake's share counters assume.
const POOL_DIFFICULTY: f64 = 65536.0;

/// The reply a bmminer-based Antminer S9 sends to `command`, with `snap`'s figures, ending in
/// the NUL byte cgminer sends.
///
/// Knows `summary`, `stats`, `devs`, `pools` and `version`, and their `+`-joined combinations
/// (`{"summary":[…],"stats":[…],"id":1}`, a repeated command answered once). Anything else is
/// answered as cgminer does, with `{"STATUS":[{"STATUS":"E",…,"Code":14,"Msg":"Invalid
/// command"}],"id":1}` (inside a joined reply, for that command only).
pub fn reply_for(command: &str, snap: &CgminerSnapshot) -> String {
    render(command, snap, chrono::Utc::now().timestamp(), Format::Json)
}

/// How the request came, and so how the reply goes.
#[derive(Clone, Copy)]
enum Format {
    /// `{"command":"summary"}` → JSON.
    Json,
    /// `summary|` → cgminer's `key=value,…|` text.
    Text,
}

/// The whole reply to `command`, joined or not, NUL-terminated.
fn render(command: &str, snap: &CgminerSnapshot, when: i64, format: Format) -> String {
    let mut out = String::new();
    if command.contains('+') {
        let mut done: Vec<&str> = Vec::new();
        for cmd in command.split('+').filter(|c| !c.is_empty()) {
            if done.contains(&cmd) {
                continue;
            }
            let reply = single(cmd, snap);
            match format {
                Format::Json => {
                    out.push(if done.is_empty() { '{' } else { ',' });
                    out.push_str(&json_string(cmd));
                    out.push_str(":[");
                    out.push_str(&reply.json(when));
                    out.push(']');
                }
                Format::Text => {
                    out.push_str("CMD=");
                    out.push_str(&text_escape(cmd));
                    out.push('|');
                    out.push_str(&reply.text(when));
                }
            }
            done.push(cmd);
        }
        if let Format::Json = format {
            out.push_str(if done.is_empty() {
                "{\"id\":1}"
            } else {
                ",\"id\":1}"
            });
        }
    } else {
        let reply = single(command, snap);
        out = match format {
            Format::Json => reply.json(when),
            Format::Text => reply.text(when),
        };
    }
    out.push('\0');
    out
}

/// One value in a reply, printed the way cgminer prints its type.
enum Val {
    /// A string, quoted in JSON.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float with this many decimals (cgminer: `%.2f` for rates and temperatures, …).
    Real(f64, usize),
    /// `true` or `false`.
    Bool(bool),
}

/// One entry of a reply section, its fields in cgminer's order.
#[derive(Default)]
struct Rec(Vec<(String, Val)>);

impl Rec {
    fn s(mut self, key: impl Into<String>, v: impl Into<String>) -> Self {
        self.0.push((key.into(), Val::Str(v.into())));
        self
    }
    fn i(mut self, key: impl Into<String>, v: i64) -> Self {
        self.0.push((key.into(), Val::Int(v)));
        self
    }
    fn f(mut self, key: impl Into<String>, v: f64, decimals: usize) -> Self {
        self.0.push((key.into(), Val::Real(v, decimals)));
        self
    }
    fn b(mut self, key: impl Into<String>, v: bool) -> Self {
        self.0.push((key.into(), Val::Bool(v)));
        self
    }
}

/// One command's reply: its status message and its data sections.
struct Reply {
    /// `S`, `I`, `W`, `E` or `F`.
    severity: char,
    /// cgminer's message code (11 summary, 14 invalid command, …).
    code: i64,
    /// The message (`Summary`, `Invalid command`, …).
    msg: String,
    /// cgminer leaves the description out of "invalid command", not to tell random probes
    /// what answers.
    describe: bool,
    /// The data, in order.
    sections: Vec<Section>,
}

/// A named data section of a reply (`SUMMARY`, `DEVS`, …).
struct Section {
    /// Its key (`SUMMARY`, `STATS`, …).
    name: &'static str,
    /// In the text form, whether the first entry starts with `NAME,` (cgminer does this for
    /// sections whose entries carry no id of their own, like `SUMMARY`).
    text_label: bool,
    /// Its entries (one per device, pool, …).
    entries: Vec<Rec>,
}

impl Reply {
    fn ok(code: i64, msg: impl Into<String>, sections: Vec<Section>) -> Self {
        Self {
            severity: 'S',
            code,
            msg: msg.into(),
            describe: true,
            sections,
        }
    }

    fn error(code: i64, msg: &str) -> Self {
        Self {
            severity: 'E',
            code,
            msg: msg.into(),
            describe: code != CODE_INVALID_COMMAND,
            sections: Vec::new(),
        }
    }

    fn status(&self, when: i64) -> Rec {
        let rec = Rec::default()
            .s("STATUS", self.severity.to_string())
            .i("When", when)
            .i("Code", self.code)
            .s("Msg", self.msg.clone());
        if self.describe {
            rec.s("Description", DESCRIPTION)
        } else {
            rec
        }
    }

    fn json(&self, when: i64) -> String {
        let mut out = String::from("{\"STATUS\":[");
        write_json_rec(&mut out, &self.status(when));
        out.push(']');
        for section in &self.sections {
            out.push(',');
            out.push_str(&json_string(section.name));
            out.push_str(":[");
            for (i, rec) in section.entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_rec(&mut out, rec);
            }
            out.push(']');
        }
        out.push_str(",\"id\":1}");
        out
    }

    fn text(&self, when: i64) -> String {
        let mut out = String::new();
        write_text_rec(&mut out, &self.status(when));
        for section in &self.sections {
            for (i, rec) in section.entries.iter().enumerate() {
                if i == 0 && section.text_label {
                    out.push_str(section.name);
                    out.push(',');
                }
                write_text_rec(&mut out, rec);
            }
        }
        out
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A number as cgminer's `%.Nf` prints it; a non-finite one (which `printf` would print as
/// invalid JSON) as 0.
fn real(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "0".into()
    }
}

fn write_json_rec(out: &mut String, rec: &Rec) {
    out.push('{');
    for (i, (key, val)) in rec.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(key));
        out.push(':');
        match val {
            Val::Str(s) => out.push_str(&json_string(s)),
            Val::Int(n) => out.push_str(&n.to_string()),
            Val::Real(v, d) => out.push_str(&real(*v, *d)),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
    out.push('}');
}

/// cgminer's text-mode escaping: the separators `|`, `,`, `=` and the backslash.
fn text_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '|' | ',' | '=' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn write_text_rec(out: &mut String, rec: &Rec) {
    for (i, (key, val)) in rec.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        match val {
            Val::Str(s) => out.push_str(&text_escape(s)),
            Val::Int(n) => out.push_str(&n.to_string()),
            Val::Real(v, d) => out.push_str(&real(*v, *d)),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
    out.push('|');
}

/// The reply to one (not joined) command.
fn single(command: &str, snap: &CgminerSnapshot) -> Reply {
    let work = Work::of(snap);
    match command {
        "summary" => Reply::ok(11, "Summary", vec![summary_section(snap, &work)]),
        "stats" => Reply::ok(70, "CGMiner stats", vec![stats_section(snap)]),
        "devs" => {
            let devs = devs_section(snap, &work);
            let msg = format!("{} ASC(s)", devs.entries.len());
            Reply::ok(9, msg, vec![devs])
        }
        "pools" => Reply::ok(7, "1 Pool(s)", vec![pools_section(snap, &work)]),
        "version" => Reply::ok(22, "CGMiner versions", vec![version_section()]),
        _ => Reply::error(CODE_INVALID_COMMAND, "Invalid command"),
    }
}

/// The work counters implied by a snapshot: hashes done since start, in cgminer's units.
struct Work {
    /// Seconds since start.
    elapsed: f64,
    /// Megahashes done.
    total_mh: f64,
    /// Difficulty-1 shares done.
    diff1: f64,
    /// Shares accepted at [`POOL_DIFFICULTY`].
    accepted: i64,
    /// Difficulty-1 shares per minute.
    work_utility: f64,
    /// Accepted shares per minute.
    utility: f64,
}

impl Work {
    fn of(snap: &CgminerSnapshot) -> Self {
        let elapsed = snap.elapsed_s as f64;
        let rate = if snap.hashrate_hs.is_finite() {
            snap.hashrate_hs.max(0.0)
        } else {
            0.0
        };
        let hashes = rate * elapsed;
        let diff1 = hashes / 4_294_967_296.0;
        let accepted = (diff1 / POOL_DIFFICULTY).floor();
        let minutes = elapsed / 60.0;
        let per_minute = |n: f64| if minutes > 0.0 { n / minutes } else { 0.0 };
        Self {
            elapsed,
            total_mh: hashes / 1e6,
            diff1,
            accepted: accepted as i64,
            work_utility: per_minute(diff1),
            utility: per_minute(accepted),
        }
    }
}

/// How many hash boards the fake has: one per temperature, at least one.
fn boards(snap: &CgminerSnapshot) -> usize {
    snap.temps_c.len().max(1)
}

fn summary_section(snap: &CgminerSnapshot, w: &Work) -> Section {
    let ghs = snap.hashrate_hs / 1e9;
    let rec = Rec::default()
        .f("Elapsed", w.elapsed, 0)
        // bmminer sends the 5-second rate as a string and the average as a number.
        .s("GHS 5s", real(ghs, 2))
        .f("GHS av", ghs, 2)
        .i("Found Blocks", 0)
        .i("Getworks", (w.elapsed / 30.0) as i64)
        .i("Accepted", w.accepted)
        .i("Rejected", 0)
        .i("Hardware Errors", 0)
        .f("Utility", w.utility, 2)
        .i("Discarded", 0)
        .i("Stale", 0)
        .i("Get Failures", 0)
        .i("Local Work", w.diff1 as i64)
        .i("Remote Failures", 0)
        .i("Network Blocks", (w.elapsed / 600.0) as i64)
        .f("Total MH", w.total_mh, 4)
        .f("Work Utility", w.work_utility, 2)
        .f(
            "Difficulty Accepted",
            w.accepted as f64 * POOL_DIFFICULTY,
            8,
        )
        .f("Difficulty Rejected", 0.0, 8)
        .f("Difficulty Stale", 0.0, 8)
        .i("Best Share", 0)
        .f("Device Hardware%", 0.0, 4)
        .f("Device Rejected%", 0.0, 4)
        .f("Pool Rejected%", 0.0, 4)
        .f("Pool Stale%", 0.0, 4)
        .i("Last getwork", 0);
    Section {
        name: "SUMMARY",
        text_label: true,
        entries: vec![rec],
    }
}

/// bmminer's `stats`: a header entry, then one entry for the whole miner with per-board and
/// per-fan fields. Temperatures are whole degrees (C's `(int)` truncation), as bmminer prints
/// them.
fn stats_section(snap: &CgminerSnapshot) -> Section {
    let header = Rec::default()
        .s("BMMiner", BMMINER_VERSION)
        .s("Miner", MINER_VERSION)
        .s("CompileTime", COMPILE_TIME)
        .s("Type", MINER_TYPE);
    let n = boards(snap);
    let ghs = snap.hashrate_hs / 1e9;
    let temp = |i: usize| snap.temps_c.get(i).copied().unwrap_or(0.0);
    let whole = |t: f64| if t.is_finite() { t.trunc() as i64 } else { 0 };
    let mut rec = Rec::default()
        .i("STATS", 0)
        .s("ID", "BC50")
        .i("Elapsed", snap.elapsed_s as i64)
        .i("Calls", 0)
        .f("Wait", 0.0, 6)
        .f("Max", 0.0, 6)
        .f("Min", 99_999_999.0, 6)
        .s("GHS 5s", real(ghs, 2))
        .f("GHS av", ghs, 2)
        .i("miner_count", n as i64)
        .s("frequency", "650")
        .i("fan_num", snap.fans_rpm.len() as i64);
    for (i, rpm) in snap.fans_rpm.iter().enumerate() {
        rec = rec.i(
            format!("fan{}", i + 1),
            if rpm.is_finite() {
                rpm.round() as i64
            } else {
                0
            },
        );
    }
    rec = rec.i("temp_num", n as i64);
    for i in 0..n {
        rec = rec.i(format!("temp{}", i + 1), whole(temp(i)));
    }
    for i in 0..n {
        rec = rec.i(format!("temp2_{}", i + 1), whole(temp(i)));
    }
    let hottest = (0..n).map(temp).fold(0.0, f64::max);
    rec = rec
        .i("temp_max", whole(hottest))
        .f("Device Hardware%", 0.0, 4)
        .i("no_matching_work", 0);
    let chips = match snap.state {
        MinerState::Error => {
            "xxxxxxxx xxxxxxxx xxxxxxxx xxxxxxxx xxxxxxxx xxxxxxxx xxxxxxxx xxxxxxx"
        }
        _ => "oooooooo oooooooo oooooooo oooooooo oooooooo oooooooo oooooooo ooooooo",
    };
    for i in 1..=n {
        rec = rec
            .i(format!("chain_acn{i}"), 63)
            .s(format!("chain_acs{i}"), format!(" {chips}"))
            .i(format!("chain_hw{i}"), 0)
            .s(format!("chain_rate{i}"), real(ghs / n as f64, 2));
    }
    if let Some(w) = snap.power_w {
        rec = rec.s("chain_power", format!("{} W", real(w, 0)));
    }
    Section {
        name: "STATS",
        text_label: false,
        entries: vec![header, rec],
    }
}

fn devs_section(snap: &CgminerSnapshot, w: &Work) -> Section {
    let n = boards(snap);
    let share = 1.0 / n as f64;
    let mhs = snap.hashrate_hs / 1e6 * share;
    let (enabled, status) = match snap.state {
        MinerState::Sleeping => ("N", "Alive"),
        MinerState::Error => ("Y", "Dead"),
        MinerState::Mining | MinerState::Idle | MinerState::Offline => ("Y", "Alive"),
    };
    let entries = (0..n)
        .map(|i| {
            Rec::default()
                .i("ASC", i as i64)
                .s("Name", "BC5")
                .i("ID", i as i64)
                .s("Enabled", enabled)
                .s("Status", status)
                .f(
                    "Temperature",
                    snap.temps_c.get(i).copied().unwrap_or(0.0),
                    2,
                )
                .f("MHS av", mhs, 2)
                .f("MHS 5s", mhs, 2)
                .f("MHS 1m", mhs, 2)
                .f("MHS 5m", mhs, 2)
                .f("MHS 15m", mhs, 2)
                .i("Accepted", (w.accepted as f64 * share) as i64)
                .i("Rejected", 0)
                .i("Hardware Errors", 0)
                .f("Utility", w.utility * share, 2)
                .i("Last Share Pool", 0)
                .i("Last Share Time", 0)
                .f("Total MH", w.total_mh * share, 4)
                .i("Diff1 Work", (w.diff1 * share) as i64)
                .f(
                    "Difficulty Accepted",
                    w.accepted as f64 * share * POOL_DIFFICULTY,
                    8,
                )
                .f("Difficulty Rejected", 0.0, 8)
                .f("Last Share Difficulty", POOL_DIFFICULTY, 8)
                .i("Last Valid Work", 0)
                .f("Device Hardware%", 0.0, 4)
                .f("Device Rejected%", 0.0, 4)
                .f("Device Elapsed", w.elapsed, 0)
        })
        .collect();
    Section {
        name: "DEVS",
        text_label: false,
        entries,
    }
}

fn pools_section(snap: &CgminerSnapshot, w: &Work) -> Section {
    let alive = snap.state != MinerState::Offline;
    // `stratum+tcp://host:port` → `host`, as cgminer shows the stratum host.
    let host = snap
        .pool_url
        .split_once("://")
        .map_or(snap.pool_url.as_str(), |(_, rest)| rest);
    let host = host.split([':', '/']).next().unwrap_or(host);
    let rec = Rec::default()
        .i("POOL", 0)
        .s("URL", snap.pool_url.clone())
        .s("Status", if alive { "Alive" } else { "Dead" })
        .i("Priority", 0)
        .i("Quota", 1)
        .s("Long Poll", "N")
        .i("Getworks", (w.elapsed / 30.0) as i64)
        .i("Accepted", w.accepted)
        .i("Rejected", 0)
        .i("Works", w.diff1 as i64)
        .i("Discarded", 0)
        .i("Stale", 0)
        .i("Get Failures", 0)
        .i("Remote Failures", 0)
        .s("User", "adit.sim")
        .i("Last Share Time", 0)
        .i("Diff1 Shares", w.diff1 as i64)
        .s("Proxy Type", "")
        .s("Proxy", "")
        .f(
            "Difficulty Accepted",
            w.accepted as f64 * POOL_DIFFICULTY,
            8,
        )
        .f("Difficulty Rejected", 0.0, 8)
        .f("Difficulty Stale", 0.0, 8)
        .f("Last Share Difficulty", POOL_DIFFICULTY, 8)
        .f("Work Difficulty", POOL_DIFFICULTY, 8)
        .b("Has Stratum", true)
        .b("Stratum Active", alive)
        .s("Stratum URL", if alive { host } else { "" })
        .f(
            "Stratum Difficulty",
            if alive { POOL_DIFFICULTY } else { 0.0 },
            8,
        )
        .b("Has GBT", false)
        .i("Best Share", 0)
        .f("Pool Rejected%", 0.0, 4)
        .f("Pool Stale%", 0.0, 4);
    Section {
        name: "POOLS",
        text_label: false,
        entries: vec![rec],
    }
}

fn version_section() -> Section {
    let rec = Rec::default()
        .s("BMMiner", BMMINER_VERSION)
        .s("API", API_VERSION)
        .s("Miner", MINER_VERSION)
        .s("CompileTime", COMPILE_TIME)
        .s("Type", MINER_TYPE);
    Section {
        name: "VERSION",
        text_label: true,
        entries: vec![rec],
    }
}

// ---------------------------------------------------------------------------------------------
// The fake miner: server.
// ---------------------------------------------------------------------------------------------

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
    serve_controlled(listener, snapshot, |_: &str| None, shutdown).await;
}

/// The control commands the fake obeys, as Braiins OS names them.
pub const CONTROL_COMMANDS: [&str; 2] = ["pause", "resume"];

/// [`serve`], also obeying `pause` and `resume`: `control(word)` carries it out and returns
/// the message of the `S` reply (`None`: refused as an invalid command).
pub async fn serve_controlled(
    listener: TcpListener,
    snapshot: impl Fn() -> CgminerSnapshot + Send + Sync + 'static,
    control: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    shutdown: CancellationToken,
) {
    let handlers = Arc::new((snapshot, control));
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
                    let (snapshot, control) = &*handlers;
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        answered = answer(stream, snapshot, control) => {
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
async fn answer<F, C>(mut stream: TcpStream, snapshot: &F, control: &C) -> std::io::Result<()>
where
    F: Fn() -> CgminerSnapshot,
    C: Fn(&str) -> Option<String>,
{
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let when = chrono::Utc::now().timestamp();
    let reply = control_reply(&request, control, when)
        .unwrap_or_else(|| respond(&request, &snapshot(), when));
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// The reply to a JSON control command (`pause`, `resume`) that `control` carries out;
/// `None` for any other request.
fn control_reply<C: Fn(&str) -> Option<String>>(
    request: &[u8],
    control: &C,
    when: i64,
) -> Option<String> {
    let value: Value = serde_json::from_slice(trim_reply(request)).ok()?;
    let word = value.get("command")?.as_str()?;
    if !CONTROL_COMMANDS.contains(&word) {
        return None;
    }
    let msg = control(word)?;
    let mut out = Reply::ok(CODE_CONTROL_DONE, msg, Vec::new()).json(when);
    out.push('\0');
    Some(out)
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
    use super::*;

    /// A guard that lets the tests reach their loopback miners.
    fn any() -> adit_egress::Guard {
        adit_egress::Guard::new(
            adit_egress::Purpose::Devices,
            adit_egress::policy::Rules::parse(&["loopback".to_string()]).expect("rules"),
        )
    }
    use serde_json::json;

    /// An Antminer S9 on stock bmminer: `summary+stats`, with bmminer's missing comma between
    /// the two `STATS` entries, absent boards reported as 0.
    const S9_SUMMARY_STATS: &str = concat!(
        r#"{"summary":[{"STATUS":[{"STATUS":"S","When":1577590607,"Code":11,"Msg":"Summary","Description":"bmminer 1.0.0"}],"#,
        r#""SUMMARY":[{"Elapsed":86342,"GHS 5s":"13856.42","GHS av":13784.61,"Found Blocks":0,"Getworks":5824,"Accepted":10243,"Rejected":12,"Hardware Errors":331,"Utility":7.12,"Discarded":21012,"Stale":0,"Get Failures":0,"Local Work":1349214,"Remote Failures":0,"Network Blocks":146,"Total MH":1190143829553.0000,"Work Utility":192512.15,"Difficulty Accepted":276914176.00000000,"Difficulty Rejected":327680.00000000,"Difficulty Stale":0.00000000,"Best Share":4163713519,"Device Hardware%":0.0001,"Device Rejected%":0.1183,"Pool Rejected%":0.1182,"Pool Stale%":0.0000,"Last getwork":1577590607}],"id":1}],"#,
        r#""stats":[{"STATUS":[{"STATUS":"S","When":1577590607,"Code":70,"Msg":"CGMiner stats","Description":"bmminer 1.0.0"}],"#,
        r#""STATS":[{"BMMiner":"2.0.0","Miner":"16.8.1.3","CompileTime":"Fri Nov 17 17:37:49 CST 2017","Type":"Antminer S9"}"#,
        r#"{"STATS":0,"ID":"BC50","Elapsed":86342,"Calls":0,"Wait":0.000000,"Max":0.000000,"Min":99999999.000000,"GHS 5s":"13856.42","GHS av":13784.61,"miner_count":3,"frequency":"650","fan_num":2,"fan1":0,"fan2":0,"fan3":5880,"fan4":0,"fan5":0,"fan6":5760,"fan7":0,"fan8":0,"temp_num":3,"temp1":0,"temp2":0,"temp3":0,"temp4":0,"temp5":0,"temp6":61,"temp7":58,"temp8":63,"temp9":0,"temp10":0,"temp2_1":0,"temp2_2":0,"temp2_3":0,"temp2_4":0,"temp2_5":0,"temp2_6":76,"temp2_7":73,"temp2_8":79,"temp2_9":0,"temp_max":63,"Device Hardware%":0.0001,"no_matching_work":331,"chain_acn6":63,"chain_acn7":63,"chain_acn8":63,"chain_acs6":" oooooooo oooooooo oooooooo oooooooo oooooooo oooooooo oooooooo ooooooo","chain_hw6":105,"chain_hw7":98,"chain_hw8":128,"chain_rate6":"4623.12","chain_rate7":"4598.77","chain_rate8":"4634.53"}],"id":1}],"id":1}"#,
        "\0"
    );

    /// Braiins OS (BOSminer) answering `summary+temps+fans+tunerstatus+pools+devs`.
    const BOSMINER_JOINED: &str = concat!(
        r#"{"summary":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":11,"Msg":"Summary","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"#,
        r#""SUMMARY":[{"Elapsed":6051,"MHS av":13998542.37,"MHS 5s":14035622.66,"MHS 1m":14038010.92,"MHS 5m":14023125.51,"MHS 15m":14009963.12,"Found Blocks":0,"Getworks":1947,"Accepted":1936,"Rejected":0,"Hardware Errors":2,"Utility":19.2,"Discarded":0,"Stale":0,"Get Failures":0,"Local Work":247832,"Remote Failures":0,"Network Blocks":10,"Total MH":84704160398.0,"Work Utility":195432.1,"Difficulty Accepted":19709952.0,"Difficulty Rejected":0.0,"Difficulty Stale":0.0,"Best Share":1261183,"Device Hardware%":0.0,"Device Rejected%":0.0,"Pool Rejected%":0.0,"Pool Stale%":0.0,"Last getwork":1684941022}],"id":1}],"#,
        r#""temps":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":201,"Msg":"3 Temp(s)","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"TEMPS":[{"TEMP":6,"ID":6,"Board":57.0,"Chip":71.875},{"TEMP":7,"ID":7,"Board":55.5,"Chip":69.125},{"TEMP":8,"ID":8,"Board":59.0,"Chip":74.5}],"id":1}],"#,
        r#""fans":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":202,"Msg":"2 Fan(s)","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"FANS":[{"FAN":0,"ID":0,"RPM":4080,"Speed":70},{"FAN":1,"ID":1,"RPM":4200,"Speed":70}],"id":1}],"#,
        r#""tunerstatus":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":203,"Msg":"Tuner Status","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"TUNERSTATUS":[{"PowerLimit":1300,"DynamicPowerScaling":"Disabled","ApproximateChainPowerConsumption":1158,"ApproximateMinerPowerConsumption":1251,"TunerChainStatus":[{"HashchainIndex":6,"Iteration":0,"LoadedProfile":true,"ApproximatePowerConsumptionWatt":386,"PowerLimitWatt":405,"Status":"Stable"}]}],"id":1}],"#,
        r#""pools":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":7,"Msg":"1 Pool(s)","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"POOLS":[{"POOL":0,"URL":"stratum+tcp://eu.stratum.braiins.com:3333","Status":"Alive","Priority":0,"Quota":1,"Long Poll":"N","Getworks":1947,"Accepted":1936,"Rejected":0,"Works":0,"Discarded":0,"Stale":0,"Get Failures":0,"Remote Failures":0,"User":"farm.s9-17","Last Share Time":1684941015,"Stratum Active":true,"Stratum URL":"eu.stratum.braiins.com"}],"id":1}],"#,
        r#""devs":[{"STATUS":[{"STATUS":"S","When":1684941022,"Code":9,"Msg":"3 ASC(s)","Description":"BOSminer bosminer-plus-am1-s9 0.2.0-6d3b8d8ba"}],"DEVS":[{"ASC":0,"Name":"","ID":6,"Enabled":"Y","Status":"Alive","Temperature":71.875,"MHS av":4666180.79,"MHS 5s":4678540.88,"MHS 1m":4679336.97},{"ASC":1,"Name":"","ID":7,"Enabled":"Y","Status":"Alive","Temperature":69.125,"MHS av":4666180.79,"MHS 5s":4678540.89,"MHS 1m":4679336.98},{"ASC":2,"Name":"","ID":8,"Enabled":"Y","Status":"Alive","Temperature":74.5,"MHS av":4666180.79,"MHS 5s":4678540.89,"MHS 1m":4679336.97}],"id":1}],"id":1}"#
    );

    /// A Whatsminer M30S `summary`: its figures are all in the one section.
    const WHATSMINER_SUMMARY: &str = r#"{"STATUS":[{"STATUS":"S","Msg":"Summary","Code":11,"When":1643362121,"Description":"btminer"}],"SUMMARY":[{"Elapsed":20507,"MHS av":84893421.44,"MHS 5s":84941366.02,"MHS 1m":84958471.31,"MHS 5m":84941366.02,"MHS 15m":84969424.09,"HS RT":84941366.02,"Accepted":804,"Rejected":0,"Total MH":225043191209.0000,"Temperature":80.00,"freq_avg":646,"Fan Speed In":4530,"Fan Speed Out":4560,"Power":3593,"Power Rate":42.31,"Pool Rejected%":0.0000,"Pool Stale%":0.0000,"Last getwork":0,"Uptime":20507,"Security Mode":0,"Chip Temp Min":71.56,"Chip Temp Max":96.50,"Chip Temp Avg":86.62,"Env Temp":31.00}],"id":1}"#;

    /// An Antminer S17 whose boards have not started: every figure 0, sensors `"-"`.
    const S17_IDLE_STATS: &str = r#"{"STATUS":[{"STATUS":"S","When":1577590607,"Code":70,"Msg":"CGMiner stats","Description":"cgminer 1.0.0"}],"STATS":[{"BMMiner":"2.0.0","Miner":"","CompileTime":"Fri Jun 14 12:39:27 HKT 2019","Type":"Antminer S17"},{"STATS":0,"ID":"BTM_SOC0","Elapsed":1374,"Calls":0,"Wait":0.000000,"Max":0.000000,"Min":99999999.000000,"GHS 5s":"0.00","GHS av":0.00,"Voltage":"","Mode":2,"miner_count":0,"frequency":"","fan_num":0,"fan1":0,"fan2":0,"fan3":0,"fan4":0,"temp_num":0,"temp1":0,"temp2":0,"temp3":0,"temp2_1":0,"temp2_2":0,"temp2_3":0,"temp3_1":0,"temp3_2":0,"temp3_3":0,"temp_pcb1":"-","temp_pcb2":"-","temp_chip1":"-","temp_chip2":"-"}],"id":1}"#;

    fn approx(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    fn report(raw: &str) -> MinerReport {
        let value = decode_reply(raw.as_bytes()).expect("decodes");
        parse_report(&value).expect("parses")
    }

    fn snapshot(state: MinerState) -> CgminerSnapshot {
        CgminerSnapshot {
            hashrate_hs: 13.5e12,
            temps_c: vec![71.5, 68.25, 74.75],
            fans_rpm: vec![5880.0, 6000.0],
            power_w: Some(1350.0),
            state,
            elapsed_s: 86_400,
            pool_url: "stratum+tcp://pool.example:3333".into(),
        }
    }

    fn out_of_range(result: Result<MinerReport, DeviceError>) -> (String, f64) {
        match result {
            Err(DeviceError::OutOfRange { field, value }) => (field, value),
            other => panic!("expected OutOfRange, got {other:?}"),
        }
    }

    fn garbage_reason(result: Result<impl std::fmt::Debug, DeviceError>) -> String {
        match result {
            Err(DeviceError::Garbage { reason, .. }) => reason,
            other => panic!("expected Garbage, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_bmminer_s9_with_its_missing_comma() {
        let r = report(S9_SUMMARY_STATS);
        assert!(approx(r.hashrate_hs, 13856.42e9), "{r:?}");
        assert_eq!(r.temp_c, Some(79.0));
        assert_eq!(r.fan_rpm, Some(5880.0));
        assert_eq!(r.power_w, None);
        assert_eq!(r.state, MinerState::Mining);
    }

    #[test]
    fn reads_a_bosminer_joined_reply() {
        let r = report(BOSMINER_JOINED);
        assert!(approx(r.hashrate_hs, 14035622.66e6), "{r:?}");
        assert_eq!(r.temp_c, Some(74.5));
        assert_eq!(r.fan_rpm, Some(4200.0));
        assert_eq!(r.power_w, Some(1251.0));
        assert_eq!(r.state, MinerState::Mining);
    }

    #[test]
    fn reads_a_plain_whatsminer_summary() {
        let r = report(WHATSMINER_SUMMARY);
        assert!(approx(r.hashrate_hs, 84941366.02e6), "{r:?}");
        assert_eq!(r.temp_c, Some(96.5));
        assert_eq!(r.fan_rpm, Some(4560.0));
        assert_eq!(r.power_w, Some(3593.0));
        assert_eq!(r.state, MinerState::Mining);
    }

    #[test]
    fn a_miner_with_no_hashrate_is_idle_and_its_empty_sensors_are_skipped() {
        let r = report(S17_IDLE_STATS);
        assert_eq!(r.hashrate_hs, 0.0);
        assert_eq!(r.temp_c, None);
        assert_eq!(r.fan_rpm, Some(0.0));
        assert_eq!(r.state, MinerState::Idle);
    }

    #[test]
    fn newer_antminer_temperature_strings_and_arrays_are_read() {
        let reply = json!({"STATUS":[{"STATUS":"S","Code":70}],"STATS":[
            {"Type":"Antminer S19"},
            {"GHS 5s":"95123.40","temp_pcb1":"50-50-66-66","temp_chip1":"55-55-71-82","chain_power":"3250 W",
             "chain":[{"index":0,"temp_chip":[60,61,88.5,62]}]}
        ]});
        let r = parse_report(&reply).expect("parses");
        assert_eq!(r.temp_c, Some(88.5));
        assert_eq!(r.power_w, Some(3250.0));
        assert!(approx(r.hashrate_hs, 95123.4e9));
    }

    #[test]
    fn a_rolling_rate_named_after_another_log_interval_is_read() {
        let reply = json!({"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"MHS 20s":"1500.5"}]});
        let r = parse_report(&reply).expect("parses");
        assert!(approx(r.hashrate_hs, 1500.5e6));
    }

    #[test]
    fn error_statuses_and_dead_boards_make_an_error_state() {
        let failed = json!({"STATUS":[{"STATUS":"E","Code":10,"Msg":"No ASCs"}],"id":1});
        assert_eq!(
            parse_report(&failed).expect("parses").state,
            MinerState::Error
        );
        let fatal = json!({"summary":[{"STATUS":[{"STATUS":"F","Code":-1,"Msg":"99"}]}]});
        assert_eq!(
            parse_report(&fatal).expect("parses").state,
            MinerState::Error
        );

        let dead = json!({"summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"MHS 5s":100.0}]}],
            "devs":[{"STATUS":[{"STATUS":"S"}],"DEVS":[{"Enabled":"Y","Status":"Dead","MHS 5s":0.0}]}]});
        let r = parse_report(&dead).expect("parses");
        assert_eq!(r.state, MinerState::Error);
        assert!(approx(r.hashrate_hs, 100e6));
    }

    #[test]
    fn a_command_the_firmware_lacks_is_ignored_but_refusing_everything_is_garbage() {
        let partly = json!({
            "summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":"10.00"}]}],
            "tunerstatus":[{"STATUS":[{"STATUS":"E","When":1,"Code":14,"Msg":"Invalid command"}],"id":1}],
        });
        let r = parse_report(&partly).expect("parses");
        assert_eq!(r.state, MinerState::Mining);
        assert!(approx(r.hashrate_hs, 10e9));

        let refused =
            json!({"STATUS":[{"STATUS":"E","When":1,"Code":14,"Msg":"Invalid command"}],"id":1});
        let reason = garbage_reason(parse_report(&refused));
        assert!(reason.contains("Invalid command"), "{reason}");
    }

    #[test]
    fn a_dead_pool_or_disabled_boards_are_not_mining() {
        let no_pool = json!({"summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":"10.00"}]}],
            "pools":[{"STATUS":[{"STATUS":"S"}],"POOLS":[{"POOL":0,"Status":"Dead"}]}]});
        assert_eq!(
            parse_report(&no_pool).expect("parses").state,
            MinerState::Idle
        );
        let asleep = json!({"summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":"0.00"}]}],
            "devs":[{"STATUS":[{"STATUS":"S"}],"DEVS":[{"Enabled":"N","Status":"Alive"},{"Enabled":"N","Status":"Alive"}]}]});
        assert_eq!(
            parse_report(&asleep).expect("parses").state,
            MinerState::Sleeping
        );
    }

    #[test]
    fn implausible_values_are_refused_by_name() {
        let with = |item: Value| json!({"STATUS":[{"STATUS":"S"}],"SUMMARY":[item]});
        assert_eq!(
            out_of_range(parse_report(&with(
                json!({"GHS 5s":"10","Temperature":400.0})
            ))),
            ("Temperature".to_string(), 400.0)
        );
        assert_eq!(
            out_of_range(parse_report(&with(json!({"MHS 5s":-5.0})))),
            ("MHS 5s".to_string(), -5.0)
        );
        assert_eq!(
            out_of_range(parse_report(&with(json!({"GHS 5s":"1e12"})))),
            ("GHS 5s".to_string(), 1e12)
        );
        assert_eq!(
            out_of_range(parse_report(&with(json!({"GHS 5s":"1","fan1":-20})))).0,
            "fan1"
        );
        assert_eq!(
            out_of_range(parse_report(&with(json!({"GHS 5s":"1","Power":-3})))).0,
            "Power"
        );
        let (field, value) = out_of_range(parse_report(&with(json!({"GHS 5s":"nan"}))));
        assert_eq!(field, "GHS 5s");
        assert!(value.is_nan());
        let (field, value) = out_of_range(parse_report(&with(
            json!({"GHS 5s":"1","temp_chip1":"60-nan-61"}),
        )));
        assert_eq!(field, "temp_chip1");
        assert!(value.is_nan());
    }

    #[test]
    fn replies_without_figures_are_garbage() {
        let reason = garbage_reason(parse_report(&json!({"SUMMARY":[{"GHS 5s":"1"}]})));
        assert!(reason.contains("no STATUS"), "{reason}");
        let reason = garbage_reason(parse_report(
            &json!({"STATUS":[{"STATUS":"S"}],"SUMMARY":[{}]}),
        ));
        assert!(reason.contains("no hashrate"), "{reason}");
        let reason = garbage_reason(parse_report(&json!({"STATUS":[{"STATUS":"X"}]})));
        assert!(reason.contains("STATUS"), "{reason}");
        let reason = garbage_reason(parse_report(&json!([1, 2])));
        assert!(reason.contains("not a JSON object"), "{reason}");
    }

    #[test]
    fn decoding_strips_the_nul_and_whitespace() {
        let v = decode_reply(b" {\"STATUS\":[{\"STATUS\":\"S\"}],\"id\":1}\0\n").expect("decodes");
        assert_eq!(v["id"], 1);
    }

    #[test]
    fn decoding_repairs_separator_faults_outside_strings_only() {
        let cases: &[(&str, Value)] = &[
            (r#"{"a":[{"x":1}{"y":2}]}"#, json!({"a":[{"x":1},{"y":2}]})),
            (r#"{"a":[,{"x":1}]}"#, json!({"a":[{"x":1}]})),
            (r#"{"a":1,}"#, json!({"a":1})),
            (r#"{"a":[1,2, ]}"#, json!({"a":[1,2]})),
            (r#"{"a":"}{""b":2}"#, json!({"a":"}{","b":2})),
            (
                r#"{"s":[{"a":"x\"}{"}{"b":1}]}"#,
                json!({"s":[{"a":"x\"}{"},{"b":1}]}),
            ),
            (r#"{"s":[{"q":1}]"t":[2]}"#, json!({"s":[{"q":1}],"t":[2]})),
        ];
        for (raw, want) in cases {
            assert_eq!(&decode_reply(raw.as_bytes()).expect(raw), want, "{raw}");
        }
        // Valid JSON is never touched, whatever its strings hold.
        let valid = br#"{"a":"[,{ }{ ,} \"\"","b":[]}"#;
        assert_eq!(repair_separators(valid), valid.to_vec());
    }

    #[test]
    fn a_reply_cut_in_half_is_garbage_that_says_so() {
        let full = S9_SUMMARY_STATS.as_bytes();
        let reason = garbage_reason(decode_reply(&full[..full.len() / 2]));
        assert!(reason.contains("ends early"), "{reason}");
    }

    #[test]
    fn text_and_html_replies_are_garbage() {
        let reason = garbage_reason(decode_reply(b"STATUS=S,When=1,Code=11,Msg=Summary|\0"));
        assert!(reason.contains("plain-text"), "{reason}");
        let reason = garbage_reason(decode_reply(b"<html></html>"));
        assert!(reason.contains("not a JSON object"), "{reason}");
        let reason = garbage_reason(decode_reply(b"\0"));
        assert!(reason.contains("empty"), "{reason}");
    }

    #[test]
    fn fake_replies_are_valid_json_ending_in_nul() {
        let snap = snapshot(MinerState::Mining);
        for command in ["summary", "stats", "devs", "pools", "version", "bogus"] {
            let reply = reply_for(command, &snap);
            let body = reply.strip_suffix('\0').expect("ends in NUL");
            let v: Value = serde_json::from_str(body).expect(command);
            assert_eq!(v["id"], 1, "{command}");
        }
        let v = decode_reply(reply_for("version", &snap).as_bytes()).expect("decodes");
        assert_eq!(v["VERSION"][0]["Type"], "Antminer S9");
        assert_eq!(v["STATUS"][0]["Code"], 22);
    }

    #[test]
    fn an_unknown_command_gets_cgminers_error() {
        let v = decode_reply(reply_for("bogus", &snapshot(MinerState::Mining)).as_bytes())
            .expect("decodes");
        let status = &v["STATUS"][0];
        assert_eq!(status["STATUS"], "E");
        assert_eq!(status["Code"], 14);
        assert_eq!(status["Msg"], "Invalid command");
        assert!(status.get("Description").is_none());
        assert_eq!(v.as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn joined_commands_are_answered_once_each_and_unknown_ones_alone() {
        let snap = snapshot(MinerState::Mining);
        let v = decode_reply(reply_for("summary+bogus++summary+pools", &snap).as_bytes())
            .expect("decodes");
        let mut keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["bogus", "id", "pools", "summary"]);
        assert_eq!(v["bogus"][0]["STATUS"][0]["Msg"], "Invalid command");
        assert_eq!(
            v["pools"][0]["POOLS"][0]["URL"],
            "stratum+tcp://pool.example:3333"
        );
        assert_eq!(v["pools"][0]["POOLS"][0]["Stratum URL"], "pool.example");
        assert_eq!(parse_report(&v).expect("parses").state, MinerState::Mining);
    }

    #[test]
    fn the_fakes_figures_read_back_in_every_state() {
        for state in [
            MinerState::Mining,
            MinerState::Idle,
            MinerState::Sleeping,
            MinerState::Offline,
            MinerState::Error,
        ] {
            let mut snap = snapshot(state);
            if matches!(state, MinerState::Idle | MinerState::Sleeping) {
                snap.hashrate_hs = 0.0;
            }
            let v = decode_reply(reply_for(REPORT_COMMAND, &snap).as_bytes()).expect("decodes");
            let r = parse_report(&v).expect("parses");
            let want = match state {
                MinerState::Offline => MinerState::Idle,
                other => other,
            };
            assert_eq!(r.state, want, "{state:?}");
            assert_eq!(r.hashrate_hs, snap.hashrate_hs, "{state:?}");
            assert_eq!(r.temp_c, Some(74.75));
            assert_eq!(r.fan_rpm, Some(6000.0));
            assert_eq!(r.power_w, Some(1350.0));
        }
    }

    #[test]
    fn a_fake_without_sensors_reports_none() {
        let snap = CgminerSnapshot {
            temps_c: vec![],
            fans_rpm: vec![],
            power_w: None,
            ..snapshot(MinerState::Mining)
        };
        let r = parse_report(
            &decode_reply(reply_for(REPORT_COMMAND, &snap).as_bytes()).expect("decodes"),
        )
        .expect("parses");
        assert_eq!((r.temp_c, r.fan_rpm, r.power_w), (None, None, None));
        assert_eq!(r.hashrate_hs, 13.5e12);
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

    // ----- real sockets -----

    const TIMEOUT: Duration = Duration::from_secs(10);
    const MAX_BYTES: usize = 1024 * 1024;

    async fn listener() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        (l, addr)
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
            Err(DeviceError::Connect { .. })
        ));
    }

    #[tokio::test]
    async fn a_miner_that_never_answers_times_out() {
        let (l, addr) = listener().await;
        let held = tokio::spawn(async move {
            let (stream, _) = l.accept().await.expect("accept");
            // Keep the connection open, silent, until the client gives up.
            let mut stream = stream;
            let mut sink = Vec::new();
            stream.read_to_end(&mut sink).await.ok();
        });
        let after = Duration::from_millis(300);
        match query(&any(), &addr, "summary", after, MAX_BYTES).await {
            Err(e @ DeviceError::Timeout { .. }) => {
                assert!(e.to_string().contains(&addr), "{e}");
                assert!(e.is_unreachable());
            }
            other => panic!("expected Timeout, got {other:?}"),
        }
        held.await.expect("server task");
    }

    #[tokio::test]
    async fn a_reply_over_the_limit_is_refused() {
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = l.accept().await.expect("accept");
            let mut request = [0u8; 64];
            let n = stream.read(&mut request).await.expect("the request");
            assert!(n > 0, "the client sends its request first");
            let flood = vec![b' '; 2 * 1024 * 1024];
            // The client hangs up part-way: a failed write is expected.
            stream.write_all(&flood).await.ok();
        });
        match query(&any(), &addr, "summary", TIMEOUT, MAX_BYTES).await {
            Err(DeviceError::TooLarge { addr: a, limit }) => {
                assert_eq!(a, addr);
                assert_eq!(limit, MAX_BYTES);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        server.await.expect("server task");
    }

    #[tokio::test]
    async fn a_reply_cut_off_by_a_closed_connection_is_garbage() {
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = l.accept().await.expect("accept");
            let mut request = [0u8; 64];
            let n = stream.read(&mut request).await.expect("the request");
            assert!(n > 0, "the client sends its request first");
            let full = S9_SUMMARY_STATS.as_bytes();
            stream
                .write_all(&full[..full.len() / 2])
                .await
                .expect("write");
        });
        let reason =
            garbage_reason(query(&any(), &addr, "summary+stats", TIMEOUT, MAX_BYTES).await);
        assert!(reason.contains("ends early"), "{reason}");
        server.await.expect("server task");
    }

    #[tokio::test]
    async fn the_reply_ends_at_the_nul_even_if_the_connection_stays_open() {
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = l.accept().await.expect("accept");
            let mut request = [0u8; 64];
            let n = stream.read(&mut request).await.expect("the request");
            assert!(n > 0, "the client sends its request first");
            stream
                .write_all(WHATSMINER_SUMMARY.as_bytes())
                .await
                .expect("write");
            stream.write_all(b"\0trailing").await.expect("write");
            // Stay open until the client has gone.
            let mut sink = Vec::new();
            stream.read_to_end(&mut sink).await.ok();
        });
        let reply = query(&any(), &addr, "summary", TIMEOUT, MAX_BYTES)
            .await
            .expect("query");
        assert_eq!(parse_report(&reply).expect("parses").power_w, Some(3593.0));
        server.await.expect("server task");
    }
}
