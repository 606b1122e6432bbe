//! RandomX VMs for hashing threads in either mode: light (each thread rekeys its own VM) or
//! fast (the threads share one 2 GiB dataset, built once per seed by the first that needs it).
//! Used by the worker's miners and the coordinator's share checkers alike.

use std::sync::Mutex;

use adit_protocol::{RandomXHasher, SharedDataset};

use crate::config::HashMode;
use crate::error::Result;

/// The mode and, in fast mode, the shared dataset.
#[derive(Debug)]
pub(crate) struct Vms {
    /// Light or fast.
    mode: HashMode,
    /// The dataset for the last seed (fast mode).
    dataset: Mutex<Option<SharedDataset>>,
}

impl Vms {
    /// VMs of `mode`.
    pub(crate) fn new(mode: HashMode) -> Self {
        Self {
            mode,
            dataset: Mutex::new(None),
        }
    }

    /// Makes `vm` hash under `seed`: rekeyed in light mode, on the shared dataset in fast mode.
    pub(crate) fn ready(&self, vm: &mut Option<RandomXHasher>, seed: &[u8]) -> Result<()> {
        if vm.as_ref().is_some_and(|v| v.seed() == seed) {
            return Ok(());
        }
        match self.mode {
            HashMode::Light => match vm {
                Some(v) => v.set_seed(seed)?,
                None => *vm = Some(RandomXHasher::light(seed)?),
            },
            HashMode::Fast => {
                let dataset = {
                    let mut slot = self
                        .dataset
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if slot.as_ref().is_none_or(|d| d.seed() != seed) {
                        tracing::info!("building the RandomX dataset for a new seed (fast mode)");
                        *slot = None;
                        *slot = Some(SharedDataset::build(seed)?);
                    }
                    slot.clone()
                };
                if let Some(dataset) = dataset {
                    *vm = Some(RandomXHasher::fast(&dataset)?);
                }
            }
        }
        Ok(())
    }
}
