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
//! [`parse_report`] are pure. The simulator's fake miner, which answers as a bmminer-based
//! Antminer S9, is `adit_ingest::simulate::cgminer`.

use std::time::Duration;

use adit_schemas::MinerState;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
pub const CODE_INVALID_COMMAND: i64 = 14;
/// The status code cgminer gives a command the client may not use (likewise).
const CODE_ACCESS_DENIED: i64 = 45;

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
    query_with(guard, addr, command, None, timeout, max_bytes).await
}

/// [`query`] with the command's `parameter` (`{"command":"…","parameter":"…"}`), as the
/// commands that change a miner take it.
pub async fn query_with(
    guard: &adit_egress::Guard,
    addr: &str,
    command: &str,
    parameter: Option<&str>,
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
        let request = match parameter {
            Some(p) => serde_json::json!({ "command": command, "parameter": p }),
            None => serde_json::json!({ "command": command }),
        }
        .to_string();
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

/// A reply's verdict on a command that changes the miner: `S` or `I` is done (with its
/// `Msg`), anything else is a refusal, with the miner's `Msg`.
pub fn judge(reply: &Value) -> Result<String, String> {
    let status = reply
        .get("STATUS")
        .and_then(|s| s.get(0))
        .ok_or_else(|| "the reply has no STATUS".to_string())?;
    let code = status.get("STATUS").and_then(Value::as_str).unwrap_or("?");
    let msg = status
        .get("Msg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect::<String>();
    match code {
        "S" | "I" => Ok(msg),
        _ => Err(format!("the miner refused ({code}): {msg}")),
    }
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
pub fn trim_reply(raw: &[u8]) -> &[u8] {
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

#[cfg(test)]
mod tests;
