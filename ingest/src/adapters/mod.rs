//! The `adapters` role's two ways in from the farm's devices and its utility: polling and
//! subscribing to the devices the registry names ([`poll`], over the protocols of
//! `adit_devices`), and the utility's OpenADR 2.0b VTN, spoken to by a VEN per site
//! ([`openadr`], its own task beside the poll loop); OpenADR 3.1's objects and what its events
//! ask ([`openadr3`]).

pub mod openadr;
pub mod openadr3;
pub mod poll;
