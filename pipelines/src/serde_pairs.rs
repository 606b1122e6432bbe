//! A map with composite keys in pipeline state, as a JSON list of `[key, value]` pairs (JSON
//! object keys are text). Use with `#[serde(with = "crate::serde_pairs")]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Writes `map` as a list of pairs, in key order.
pub(crate) fn serialize<S, K, V>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    K: Serialize,
    V: Serialize,
{
    s.collect_seq(map.iter())
}

/// Reads a list of pairs back into a map.
pub(crate) fn deserialize<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    Vec::<(K, V)>::deserialize(d).map(|pairs| pairs.into_iter().collect())
}
