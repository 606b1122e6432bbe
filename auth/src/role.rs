//! The roles a caller may hold; each includes the ones below it.

use serde::{Deserialize, Serialize};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[derive(Deserialize, Serialize, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Query and watch.
    Read,
    /// Also push data and act (ingest, overrides).
    Operate,
    /// Also manage the registry, rules and tokens.
    Admin,
}

impl Role {
    /// Its name.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "read" => Ok(Self::Read),
            "operate" => Ok(Self::Operate),
            "admin" => Ok(Self::Admin),
            other => Err(format!("{other:?} is not a role: read, operate or admin")),
        }
    }
}
