//! A job's hashing blob as a miner sees it: where its 4-byte nonce sits (where the job says, or
//! read from a Monero blob's header: three varints and the previous block id, rather than
//! assumed), and writing a nonce in.

use crate::error::{Error, Result};

/// Length of the previous block's id in the header.
const PREV_ID_LEN: usize = 32;

/// The offset of the nonce in a CryptoNote hashing blob: after the major and minor version and
/// timestamp varints and the 32-byte previous id (39 for today's Monero blocks).
pub fn nonce_offset(blob: &[u8]) -> Result<usize> {
    let mut pos = 0;
    for field in ["major version", "minor version", "timestamp"] {
        pos = skip_varint(blob, pos).ok_or_else(|| Error::InvalidMessage {
            id: None,
            reason: format!("job blob: truncated {field}"),
        })?;
    }
    let offset = pos + PREV_ID_LEN;
    if blob.len() < offset + 4 {
        return Err(Error::InvalidMessage {
            id: None,
            reason: format!("job blob of {} bytes has no nonce", blob.len()),
        });
    }
    Ok(offset)
}

/// Where the nonce sits in a job's `blob`: at the job's `nonce_offset` when it states one
/// (OpenSY's jobs: 76), checked to leave 4 bytes, else found in the Monero header.
pub fn job_nonce_offset(stated: Option<u32>, blob: &[u8]) -> Result<usize> {
    match stated {
        None => nonce_offset(blob),
        Some(at) if (at as usize).saturating_add(4) <= blob.len() => Ok(at as usize),
        Some(at) => Err(Error::InvalidMessage {
            id: None,
            reason: format!(
                "job nonce_offset {at} leaves no 4 bytes in a {}-byte blob",
                blob.len()
            ),
        }),
    }
}

/// The position after the varint starting at `pos`, or `None` when it runs past the end or
/// past the ten bytes a u64 can take.
fn skip_varint(blob: &[u8], pos: usize) -> Option<usize> {
    for (i, byte) in blob.get(pos..)?.iter().take(10).enumerate() {
        if byte & 0x80 == 0 {
            return Some(pos + i + 1);
        }
    }
    None
}

/// Writes `nonce` (little-endian, as XMRig does) at `offset`.
pub fn put_nonce(blob: &mut [u8], offset: usize, nonce: u32) {
    blob[offset..offset + 4].copy_from_slice(&nonce.to_le_bytes());
}

/// A nonce as the 8 hex characters of its little-endian bytes (the `submit` wire form).
pub fn nonce_hex(nonce: u32) -> String {
    hex::encode(nonce.to_le_bytes())
}

/// The nonce of an 8-hex-character `submit` field.
pub fn parse_nonce(hex_nonce: &str) -> Result<u32> {
    let mut bytes = [0u8; 4];
    hex::decode_to_slice(hex_nonce, &mut bytes).map_err(|_| Error::MalformedNonce {
        nonce: hex_nonce.to_owned(),
    })?;
    Ok(u32::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOB: &str = "1010dbcd88d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3000000002cfaa296f21dda6a68dda5ec811797223469c6fe0cc3e5a42fced6ecd73ba3b801";

    #[test]
    fn a_stated_offset_is_taken_when_the_blob_holds_it() {
        let header = [0u8; 80];
        assert_eq!(job_nonce_offset(Some(76), &header).unwrap(), 76);
        assert!(job_nonce_offset(Some(77), &header).is_err());
        assert!(job_nonce_offset(Some(u32::MAX), &header).is_err());
    }

    #[test]
    fn finds_monero_nonce_at_39_and_writes_it() {
        let mut blob = hex::decode(BLOB).unwrap();
        assert_eq!(nonce_offset(&blob).unwrap(), 39);
        put_nonce(&mut blob, 39, 0x0102_0304);
        assert_eq!(&blob[39..43], &[4, 3, 2, 1]);
        assert_eq!(nonce_hex(0x0102_0304), "04030201");
        assert_eq!(parse_nonce("04030201").unwrap(), 0x0102_0304);
    }

    #[test]
    fn refuses_truncated_blobs_and_bad_nonces() {
        let blob = hex::decode(BLOB).unwrap();
        assert!(nonce_offset(&blob[..40]).is_err());
        assert!(nonce_offset(&[0x80, 0x80]).is_err());
        assert!(nonce_offset(&[]).is_err());
        assert!(parse_nonce("0403020").is_err());
        assert!(parse_nonce("zz030201").is_err());
    }

    proptest::proptest! {
        /// A job's blob and `nonce_offset` come from the pool: any pair gives a place with 4
        /// bytes behind it, or an error.
        #[test]
        fn any_job_gives_a_nonce_place_inside_its_blob_or_an_error(
            stated in proptest::option::of(proptest::prelude::any::<u32>()),
            blob in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        ) {
            if let Ok(at) = job_nonce_offset(stated, &blob) {
                proptest::prop_assert!(at + 4 <= blob.len());
            }
        }
    }
}
