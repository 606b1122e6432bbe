//! Power targets on LuxOS (Luxor's firmware for Antminers), through its cgminer-compatible API
//! on TCP 4028.
//!
//! A change to a LuxOS miner takes a session: `logon` answers `SESSION[0].SessionID` (code
//! 316), or refuses while another session is open; each change names the session as its
//! first parameter; `logoff` ends it (a session unused for a minute also expires). A power
//! target is the profile LuxOS selects by power: `profileset` with `<session>,<watts>W`
//! (code 321; `PROFILE[0].Profile` names the profile chosen), which on models with power
//! targeting holds the miner at that wattage and on the others picks the nearest preset
//! profile. [`set_power_target`] makes the three exchanges; [`session_id`] and
//! [`power_parameter`] are pure. The simulator's fake miner answers the same commands
//! (`adit_ingest::simulate::cgminer`), and its tests drive it through this module.

use std::time::Duration;

use serde_json::Value;

use crate::cgminer::{judge, query_with};

/// The command that opens a session.
pub const LOGON: &str = "logon";
/// The command that ends one.
pub const LOGOFF: &str = "logoff";
/// The command that sets the profile (here: by power).
pub const PROFILESET: &str = "profileset";
/// Most characters of a session id taken from a miner (LuxOS's have 8).
const MAX_SESSION_CHARS: usize = 64;
/// The lowest and highest power target sent, W.
pub const TARGET_RANGE_W: (f64, f64) = (1.0, 100_000.0);

/// The session id a `logon` reply carries, checked before it goes into another request: the
/// reply must be a success, the id 1 to 64 letters, digits, `-` or `_`.
pub fn session_id(reply: &Value) -> Result<String, String> {
    judge(reply)?;
    let id = reply
        .get("SESSION")
        .and_then(|s| s.get(0))
        .and_then(|s| s.get("SessionID"))
        .and_then(Value::as_str)
        .ok_or_else(|| "the logon reply has no SESSION[0].SessionID".to_string())?;
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if id.is_empty() || id.chars().count() > MAX_SESSION_CHARS || !id.chars().all(plain) {
        return Err(format!(
            "the miner's session id is not 1 to {MAX_SESSION_CHARS} letters, digits, - or _"
        ));
    }
    Ok(id.to_string())
}

/// `profileset`'s parameter for a target of `watts` (rounded to whole watts): `<session>,<W>W`.
pub fn power_parameter(session: &str, watts: f64) -> Result<String, String> {
    let (lo, hi) = TARGET_RANGE_W;
    if !watts.is_finite() || watts.round() < lo || watts.round() > hi {
        return Err(format!(
            "a power target of {watts} W is outside {lo}..={hi} W"
        ));
    }
    Ok(format!("{session},{}W", watts.round() as u64))
}

/// Sets the miner at `addr` to a power target of `watts`: logs on, sets the profile by power,
/// logs off (also when the profile was refused). Returns what the miner said it chose.
pub async fn set_power_target(
    guard: &adit_egress::Guard,
    addr: &str,
    watts: f64,
    timeout: Duration,
    max_bytes: usize,
) -> Result<String, String> {
    let ask = |command: &'static str, parameter: Option<String>| async move {
        query_with(
            guard,
            addr,
            command,
            parameter.as_deref(),
            timeout,
            max_bytes,
        )
        .await
        .map_err(|e| format!("{command}: {e}"))
    };
    let session = session_id(&ask(LOGON, None).await?).map_err(|e| format!("{LOGON}: {e}"))?;
    let set = match power_parameter(&session, watts) {
        Ok(parameter) => ask(PROFILESET, Some(parameter)).await.and_then(|reply| {
            let msg = judge(&reply).map_err(|e| format!("{PROFILESET}: {e}"))?;
            let profile = reply
                .get("PROFILE")
                .and_then(|p| p.get(0))
                .and_then(|p| p.get("Profile"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .chars()
                .take(64)
                .collect::<String>();
            Ok(format!("{msg}: profile {profile} for {} W", watts.round()))
        }),
        Err(e) => Err(e),
    };
    let logoff = ask(LOGOFF, Some(session)).await.and_then(|r| judge(&r));
    match (set, logoff) {
        (Ok(done), Ok(_)) => Ok(done),
        (Ok(done), Err(e)) => Ok(format!("{done} (logoff failed: {e}; the session expires)")),
        (Err(e), _) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// LuxOS's documented `logon` reply.
    const LOGON_REPLY: &str = r#"{"SESSION":[{"SessionID":"yJN2nlj1"}],"STATUS":[{"Code":316,"Description":"LUXminer 0.1.0-15436f7140","Msg":"Session created","STATUS":"S","When":1667917312}],"id":1}"#;

    #[test]
    fn a_session_id_is_read_from_logon_and_checked() {
        let reply: Value = serde_json::from_str(LOGON_REPLY).expect("json");
        assert_eq!(session_id(&reply), Ok("yJN2nlj1".into()));
        for hostile in ["", "a,b", "x\"}", "a b", &"z".repeat(65)] {
            let reply = json!({"STATUS":[{"STATUS":"S"}],"SESSION":[{"SessionID": hostile}]});
            assert!(session_id(&reply).is_err(), "{hostile:?}");
        }
        let busy = json!({"STATUS":[{"STATUS":"E","Code":402,"Msg":"Another session is active"}]});
        assert!(session_id(&busy).unwrap_err().contains("Another session"));
        assert!(session_id(&json!({"STATUS":[{"STATUS":"S"}]})).is_err());
    }

    #[test]
    fn a_power_parameter_names_the_session_and_whole_watts() {
        assert_eq!(
            power_parameter("yJN2nlj1", 2749.6),
            Ok("yJN2nlj1,2750W".into())
        );
        for bad in [0.2, -5.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(power_parameter("s", bad).is_err(), "{bad}");
        }
    }
}
