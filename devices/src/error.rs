//! Why a device's answer could not be turned into a reading.
//!
//! One enum for every device protocol in [`crate::adapters`], so a poller handles them alike:
//! [`DeviceError::is_unreachable`] separates "the device did not answer" (record it offline)
//! from "it answered with something unusable" (log it, keep the last good reading).

use std::time::Duration;

/// Bytes of a refused reply kept in the `excerpt` of [`DeviceError::Garbage`].
pub const EXCERPT_BYTES: usize = 200;

/// What went wrong talking to a device or reading its reply.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The TCP connection could not be opened (refused, unreachable, bad address).
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The device's address, as configured.
        addr: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The whole exchange (connect, request, reply) took longer than allowed.
    #[error("{addr} did not answer within {after:?}")]
    Timeout {
        /// The device's address.
        addr: String,
        /// The limit that ran out.
        after: Duration,
    },
    /// The reply was longer than the caller accepts.
    #[error("{addr} sent more than {limit} bytes")]
    TooLarge {
        /// The device's address.
        addr: String,
        /// The limit, bytes.
        limit: usize,
    },
    /// The reply is not what the protocol says: not JSON, cut off, or missing a field.
    #[error("unusable reply: {reason} (it began {excerpt:?})")]
    Garbage {
        /// What is wrong, for a person to act on.
        reason: String,
        /// The reply's first [`EXCERPT_BYTES`] bytes, lossy UTF-8, to recognise the firmware.
        excerpt: String,
    },
    /// A value is not a finite number in its plausible range (negative watts, a 400 °C chip).
    #[error("{field} = {value} is outside its plausible range")]
    OutOfRange {
        /// The field as the device names it.
        field: String,
        /// The value it sent.
        value: f64,
    },
    /// Reading or writing the connection failed after it was opened.
    #[error("talking to {addr}: {source}")]
    Io {
        /// The device's address.
        addr: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

impl DeviceError {
    /// A [`DeviceError::Garbage`] for `body`, keeping its first [`EXCERPT_BYTES`] bytes.
    pub fn garbage(reason: impl Into<String>, body: &[u8]) -> Self {
        let end = body.len().min(EXCERPT_BYTES);
        Self::Garbage {
            reason: reason.into(),
            excerpt: String::from_utf8_lossy(&body[..end]).into_owned(),
        }
    }

    /// Whether the device did not answer at all (as opposed to answering with something
    /// unusable): a poller records such a device as offline.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Io { .. } => true,
            Self::TooLarge { .. } | Self::Garbage { .. } | Self::OutOfRange { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_keeps_a_short_lossy_excerpt() {
        let body = [b'x'; 500];
        match DeviceError::garbage("bad", &body) {
            DeviceError::Garbage { reason, excerpt } => {
                assert_eq!(reason, "bad");
                assert_eq!(excerpt.len(), EXCERPT_BYTES);
            }
            other => panic!("expected Garbage, got {other:?}"),
        }
        let e = DeviceError::garbage("bad", &[0xff, b'a']);
        assert!(e.to_string().contains("\u{fffd}a"), "{e}");
    }

    #[test]
    fn messages_name_the_device() {
        let e = DeviceError::Timeout {
            addr: "10.0.0.7:4028".into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(e.to_string(), "10.0.0.7:4028 did not answer within 2s");
        assert!(e.is_unreachable());
        let e = DeviceError::TooLarge {
            addr: "10.0.0.7:4028".into(),
            limit: 10,
        };
        assert!(e.to_string().contains("10.0.0.7:4028"));
        assert!(!e.is_unreachable());
    }
}
