//! adit's web: the page at `/` (charts and tables drawn in the browser from the API, built into
//! the binary: [`page`]) and the dashboards people save for it ([`model`]: panels of SQL, their
//! variables and who may see them; [`store`]: kept with their revisions in a KV bucket;
//! [`builtin`]: the ones adit ships). The API's `/api/v1/dashboards` routes read and write them
//! through this crate; the page asks the API for everything it shows.

pub mod builtin;
pub mod error;
pub mod model;
pub mod page;
pub mod store;

pub use error::{DashboardError, Result};
