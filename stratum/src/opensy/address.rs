//! OpenSY addresses to the scripts they pay, by the node's chain parameters
//! (`src/kernel/chainparams.cpp`): bech32/bech32m SegWit addresses under the network's prefix
//! (`syl`, `tsyl`, `rsyl`) and base58check P2PKH and P2SH under its version bytes (35 and 36
//! on mainnet, 95 and 96 elsewhere). The `bitcoin` crate's `Address` knows only Bitcoin's
//! networks, so the prefixes are checked here and the encodings are the crate's.

use bitcoin::bech32;
use bitcoin::hashes::Hash;
use bitcoin::{PubkeyHash, ScriptBuf, ScriptHash, WitnessProgram, WitnessVersion};

use super::Network;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Longer than any address (90 characters, bech32's limit).
    #[error("an address is at most 90 characters, this one has {0}")]
    TooLong(usize),
    /// A SegWit address of another network or chain.
    #[error("the address is for {found:?}, not this network's {expected:?}")]
    WrongPrefix {
        /// The prefix it has.
        found: String,
        /// The prefix this network's addresses have.
        expected: &'static str,
    },
    /// A base58 address with another network's version byte.
    #[error("the address's version byte {0} is not this network's P2PKH or P2SH")]
    WrongVersion(u8),
    /// Neither a valid SegWit address nor a valid base58check one.
    #[error("not an OpenSY address: {0}")]
    Invalid(String),
}

/// The script `address` pays on `network`.
pub fn script_for(address: &str, network: Network) -> Result<ScriptBuf, AddressError> {
    if address.len() > 90 {
        return Err(AddressError::TooLong(address.len()));
    }
    match bech32::segwit::decode(address) {
        Ok((hrp, version, program)) => {
            if !hrp.as_str().eq_ignore_ascii_case(network.hrp()) {
                return Err(AddressError::WrongPrefix {
                    found: hrp.to_string(),
                    expected: network.hrp(),
                });
            }
            let version = WitnessVersion::try_from(version)
                .map_err(|e| AddressError::Invalid(e.to_string()))?;
            let program = WitnessProgram::new(version, &program)
                .map_err(|e| AddressError::Invalid(e.to_string()))?;
            Ok(ScriptBuf::new_witness_program(&program))
        }
        Err(segwit) => base58_script(address, network).map_err(|base58| match base58 {
            AddressError::Invalid(b) => AddressError::Invalid(format!("{segwit}; {b}")),
            other => other,
        }),
    }
}

/// The script of a base58check P2PKH or P2SH address.
fn base58_script(address: &str, network: Network) -> Result<ScriptBuf, AddressError> {
    let data = bitcoin::base58::decode_check(address)
        .map_err(|e| AddressError::Invalid(format!("base58: {e}")))?;
    let [version, hash @ ..] = data.as_slice() else {
        return Err(AddressError::Invalid("base58: empty".into()));
    };
    let hash: [u8; 20] = hash
        .try_into()
        .map_err(|_| AddressError::Invalid(format!("base58: {} bytes, not 21", data.len())))?;
    let (p2pkh, p2sh) = network.base58_versions();
    match *version {
        v if v == p2pkh => Ok(ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array(hash))),
        v if v == p2sh => Ok(ScriptBuf::new_p2sh(&ScriptHash::from_byte_array(hash))),
        v => Err(AddressError::WrongVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::bech32::Hrp;

    fn program(version: WitnessVersion, len: usize) -> WitnessProgram {
        WitnessProgram::new(version, &vec![7; len]).unwrap()
    }

    #[test]
    fn a_segwit_address_pays_its_program_on_its_network_only() {
        for p in [
            program(WitnessVersion::V0, 20),
            program(WitnessVersion::V0, 32),
            program(WitnessVersion::V1, 32),
        ] {
            let address = Network::Regtest.segwit_address(&p);
            assert!(address.starts_with("rsyl1"), "{address}");
            assert_eq!(
                script_for(&address, Network::Regtest).unwrap(),
                ScriptBuf::new_witness_program(&p)
            );
            assert_eq!(
                script_for(&address.to_uppercase(), Network::Regtest).unwrap(),
                ScriptBuf::new_witness_program(&p),
                "bech32 is read in either case"
            );
            assert!(matches!(
                script_for(&address, Network::Main),
                Err(AddressError::WrongPrefix { .. })
            ));
        }
        // A Bitcoin regtest address is not an OpenSY one.
        let bitcoin =
            bech32::segwit::encode(Hrp::parse_unchecked("bcrt"), bech32::Fe32::Q, &[7; 20])
                .unwrap();
        assert!(matches!(
            script_for(&bitcoin, Network::Regtest),
            Err(AddressError::WrongPrefix { .. })
        ));
    }

    #[test]
    fn base58_addresses_pay_by_their_version_byte() {
        let encode = |version: u8| {
            let mut data = vec![version];
            data.extend([9; 20]);
            bitcoin::base58::encode_check(&data)
        };
        assert_eq!(
            script_for(&encode(35), Network::Main).unwrap(),
            ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array([9; 20]))
        );
        assert_eq!(
            script_for(&encode(96), Network::Regtest).unwrap(),
            ScriptBuf::new_p2sh(&ScriptHash::from_byte_array([9; 20]))
        );
        assert_eq!(
            script_for(&encode(0), Network::Regtest),
            Err(AddressError::WrongVersion(0)),
            "a Bitcoin mainnet address"
        );
    }

    #[test]
    fn a_changed_character_is_refused() {
        let address = Network::Regtest.segwit_address(&program(WitnessVersion::V0, 20));
        let mut broken = address.clone().into_bytes();
        let last = broken.len() - 1;
        broken[last] = if broken[last] == b'q' { b'p' } else { b'q' };
        let broken = String::from_utf8(broken).unwrap();
        assert!(matches!(
            script_for(&broken, Network::Regtest),
            Err(AddressError::Invalid(_))
        ));
        assert!(matches!(
            script_for(&"x".repeat(91), Network::Regtest),
            Err(AddressError::TooLong(91))
        ));
    }

    proptest::proptest! {
        /// An address comes from a miner's login or the config: any text is an address or a
        /// reason, never a panic.
        #[test]
        fn any_text_is_an_address_or_a_reason(text in "\\PC{0,100}", network in 0..3u8) {
            let network = [Network::Main, Network::Test, Network::Regtest][network as usize];
            let _ = script_for(&text, network);
            let _ = script_for(&format!("rsyl1{text}"), network);
        }
    }
}
