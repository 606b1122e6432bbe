//! The OpenSY networks and what tells them apart (`src/kernel/chainparams.cpp`): address
//! prefixes and the easiest target a block may have.

use bitcoin::bech32::{self, Hrp};
use bitcoin::{Target, WitnessProgram};

/// An OpenSY network.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize
)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Mainnet: `syl1…`, base58 35/36.
    Main,
    /// Testnet, testnet4 and signet: `tsyl1…`, base58 95/96.
    Test,
    /// Regtest: `rsyl1…`, base58 95/96.
    Regtest,
}

impl Network {
    /// The bech32 prefix of SegWit addresses.
    pub fn hrp(self) -> &'static str {
        match self {
            Network::Main => "syl",
            Network::Test => "tsyl",
            Network::Regtest => "rsyl",
        }
    }

    /// The easiest target a block may have (`powLimitRandomX`).
    pub fn pow_limit(self) -> Target {
        let top: &[u8] = match self {
            Network::Main => &[0x00, 0x00],
            Network::Test => &[0x00],
            Network::Regtest => &[0x7f],
        };
        let mut be = [0xff; 32];
        be[..top.len()].copy_from_slice(top);
        Target::from_be_bytes(be)
    }

    /// The base58 version bytes of P2PKH and P2SH addresses.
    pub(super) fn base58_versions(self) -> (u8, u8) {
        match self {
            Network::Main => (35, 36),
            Network::Test | Network::Regtest => (95, 96),
        }
    }

    /// The SegWit address paying witness `program`.
    pub fn segwit_address(self, program: &WitnessProgram) -> String {
        let hrp = Hrp::parse_unchecked(self.hrp());
        bech32::segwit::encode(hrp, program.version().to_fe(), program.program().as_bytes())
            .expect("a witness program is a valid SegWit payload")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_the_node_s() {
        // powLimitRandomX per network; regtest's is what bits 0x207fffff expand to.
        assert_eq!(
            Network::Regtest
                .pow_limit()
                .to_compact_lossy()
                .to_consensus(),
            crate::opensy::REGTEST_LIMIT_BITS
        );
        // Mainnet's is 0000ffff…ff.
        let main = Network::Main.pow_limit().to_be_bytes();
        assert_eq!(main[..3], [0x00, 0x00, 0xff]);
        assert_eq!(main[31], 0xff);
        assert!(Network::Main.pow_limit() < Network::Test.pow_limit());
        assert!(Network::Test.pow_limit() < Network::Regtest.pow_limit());
    }
}
