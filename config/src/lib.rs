//! The one error every config section gives for a value that parses but cannot work, and the
//! check most of them make. Each section's `validate` returns [`Checked`]; the key it names is
//! relative to that section, and the section above prefixes its own name with
//! [`Invalid::under`], so `adit run` reports the full dotted key (`pool.server.listen: …`)
//! whatever crate the section lives in.
//!
//! A leaf crate (no adit dependency), so every crate with a config section can use it.

use std::fmt;

/// A config value that cannot work, with the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// Dotted key, e.g. `pipelines.energy.tick`; relative to the section that checked it until
    /// the sections above prefix their names.
    pub key: String,
    /// Why, in words a user can act on (what the value must be, and often what it is).
    pub reason: String,
}

impl Invalid {
    /// `key` cannot work because of `reason`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The same problem named from the section above: `server.listen` under `pool` is
    /// `pool.server.listen`.
    #[must_use]
    pub fn under(mut self, section: &str) -> Self {
        self.key = if self.key.is_empty() {
            section.to_string()
        } else {
            format!("{section}.{}", self.key)
        };
        self
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// What a section's `validate` returns: the first value that cannot work, if any.
pub type Checked = Result<(), Invalid>;

/// `Ok` when `ok` holds, else `key` with `reason`. The reason is built either way; config is
/// checked once at start-up, so clarity wins over the allocation.
pub fn check(ok: bool, key: &str, reason: impl Into<String>) -> Checked {
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(key, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_prefixes_the_key_it_was_given() {
        let e = Invalid::new("listen", "\"x\" is not an address")
            .under("server")
            .under("pool");
        assert_eq!(e.key, "pool.server.listen");
        assert_eq!(e.to_string(), "pool.server.listen: \"x\" is not an address");
        assert_eq!(Invalid::new("", "must be set").under("nats").key, "nats");
    }

    #[test]
    fn check_passes_what_holds_and_names_what_does_not() {
        assert_eq!(check(true, "a", "never"), Ok(()));
        let e = check(false, "batch_max_rows", "must be at least 1").unwrap_err();
        assert_eq!(e.to_string(), "batch_max_rows: must be at least 1");
    }
}
