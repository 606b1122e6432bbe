//! How a VEN keeps in touch with its VTN, whichever OpenADR it speaks: when to try next, a
//! doubling backoff while the VTN fails (logged when it starts failing, when it says something
//! new and when it answers again), and whether it answered lately (while it does, a
//! curtailment still asked is confirmed).

use std::time::{Duration, Instant};

use adit_devices::DeviceError;

/// The longest wait between two attempts at a failing VTN.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One VEN's contact with its VTN.
#[derive(Debug)]
pub(crate) struct Contact {
    /// The site, and the VTN's URL redacted, for the log.
    site: String,
    vtn: String,
    /// When the VTN last answered.
    last_ok: Option<Instant>,
    /// When to try the VTN next.
    next_try: Instant,
    /// Failures in a row, and what the last logged one said.
    failures: u32,
    last_error: Option<String>,
}

impl Contact {
    /// A contact due at once.
    pub(crate) fn new(site: &str, vtn_url: &str) -> Self {
        Self {
            site: site.to_string(),
            vtn: adit_egress::redact(vtn_url),
            last_ok: None,
            next_try: Instant::now(),
            failures: 0,
            last_error: None,
        }
    }

    /// Whether the VTN is due to be tried at `now`.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now >= self.next_try
    }

    /// The VTN answered at `now`; the next try after `every`.
    pub(crate) fn succeeded(&mut self, now: Instant, every: Duration) {
        if self.failures > 0 {
            tracing::info!(site = %self.site, vtn = %self.vtn, after = self.failures, "the VTN answers again");
        }
        self.failures = 0;
        self.last_error = None;
        self.last_ok = Some(now);
        self.next_try = now + every;
    }

    /// The VTN failed at `now`; the next try after `poll` doubled per failure in a row, at
    /// most a minute.
    pub(crate) fn failed(&mut self, now: Instant, poll: Duration, e: &DeviceError) {
        self.failures = self.failures.saturating_add(1);
        let said = e.to_string();
        if self.last_error.as_deref() != Some(said.as_str()) {
            tracing::warn!(site = %self.site, vtn = %self.vtn, error = %said, failures = self.failures, "OpenADR VTN failing; retrying");
            self.last_error = Some(said);
        }
        let backoff = poll
            .checked_mul(1 << self.failures.min(6))
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF);
        self.next_try = now + backoff;
    }

    /// Whether the VTN answered within `within`.
    pub(crate) fn answered_within(&self, within: Duration) -> bool {
        self.last_ok.is_some_and(|t| t.elapsed() <= within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_vtn_is_tried_again_later_and_later_and_at_once_when_back() {
        let poll = Duration::from_secs(2);
        let mut c = Contact::new("s", "https://vtn.example/");
        let t0 = Instant::now();
        assert!(c.due(t0) && !c.answered_within(Duration::from_secs(60)));
        let e = DeviceError::garbage("down", b"");
        c.failed(t0, poll, &e);
        assert!(!c.due(t0 + Duration::from_secs(3)) && c.due(t0 + Duration::from_secs(4)));
        for _ in 0..10 {
            c.failed(t0, poll, &e);
        }
        assert!(c.due(t0 + MAX_BACKOFF), "at most a minute");
        c.succeeded(t0, poll);
        assert!(c.due(t0 + poll) && c.answered_within(Duration::from_secs(60)));
    }
}
