//! LuxOS's session rule on the fake miner: a change needs a session, one at a time; `logon`
//! opens it (refused while another is open and used within the last minute), each use
//! refreshes it, `logoff` with its id ends it. What a real LuxOS miner does, so the actuator's
//! driver (`adit_devices::luxos`) is tested against the rule it will meet.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// A session unused for this long has expired (LuxOS: one minute).
pub(super) const SESSION_IDLE: Duration = Duration::from_secs(60);

/// The open session, if any.
#[derive(Debug, Default)]
pub(super) struct Sessions(Mutex<Option<(String, Instant)>>);

impl Sessions {
    fn open(&self) -> std::sync::MutexGuard<'_, Option<(String, Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session at `now`: its id, or `None` while another is open.
    pub(super) fn logon(&self, now: Instant) -> Option<String> {
        let mut open = self.open();
        if open
            .as_ref()
            .is_some_and(|(_, used)| now.duration_since(*used) < SESSION_IDLE)
        {
            return None;
        }
        let id: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(8)
            .map(char::from)
            .collect();
        *open = Some((id.clone(), now));
        Some(id)
    }

    /// Whether `id` is the open session at `now` (refreshing it).
    pub(super) fn use_session(&self, id: &str, now: Instant) -> bool {
        let mut open = self.open();
        match open.as_mut() {
            Some((open_id, used)) if open_id == id && now.duration_since(*used) < SESSION_IDLE => {
                *used = now;
                true
            }
            _ => false,
        }
    }

    /// Ends session `id`: whether it was the open one.
    pub(super) fn logoff(&self, id: &str, now: Instant) -> bool {
        let ok = self.use_session(id, now);
        if ok {
            *self.open() = None;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_session_at_a_time_until_logoff_or_a_minute_unused() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let id = s.logon(t0).expect("first logon");
        assert_eq!(id.len(), 8);
        assert!(s.logon(t0).is_none(), "a second session is refused");
        assert!(s.use_session(&id, t0 + Duration::from_secs(50)));
        assert!(!s.use_session("other", t0), "another id is not the session");
        // Used at 50 s: still open at 100 s, expired at 111 s.
        assert!(s.logon(t0 + Duration::from_secs(100)).is_none());
        let again = s.logon(t0 + Duration::from_secs(111)).expect("expired");
        assert!(
            !s.use_session(&id, t0 + Duration::from_secs(111)),
            "the old id is gone"
        );
        assert!(s.logoff(&again, t0 + Duration::from_secs(112)));
        assert!(!s.logoff(&again, t0 + Duration::from_secs(112)));
        assert!(s.logon(t0 + Duration::from_secs(113)).is_some());
    }
}
