//! The simulator's fake miner on the cgminer API: what a bmminer-based Antminer S9 answers
//! ([`reply_for`], from a [`CgminerSnapshot`] of the simulated machine), and a server that
//! answers with it and obeys `pause`/`resume` and LuxOS's power targets ([`server`]). The
//! client and parser are `adit_devices::cgminer`'s (and `adit_devices::luxos`'s); the tests
//! read every fake reply back through them, so the fake and the parser cannot drift apart.

mod server;
mod session;

pub use server::{Control, serve, serve_controlled};

use adit_devices::cgminer::CODE_INVALID_COMMAND;
use adit_schemas::MinerState;
use serde_json::Value;

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

/// A mining S9's snapshot in `state`, for the tests.
#[cfg(test)]
fn test_snapshot(state: MinerState) -> CgminerSnapshot {
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

#[cfg(test)]
mod tests {
    use adit_devices::cgminer::{REPORT_COMMAND, decode_reply, parse_report};

    use super::test_snapshot as snapshot;
    use super::*;

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
}
