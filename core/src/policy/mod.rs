//! Policy files (TOML), building engines from them, reload and snapshots as owned bytes.
//! Needs the `std` feature.

mod build;
mod doc;
mod duration;
mod error;
pub mod idna;
mod parse;

pub use build::{replace_engine, snapshot, HeapEngine, Policy, ReloadReport, RestoreError};
pub use doc::*;
pub use duration::{parse_duration, parse_time};
pub use error::{Diagnostic, PolicyError};
pub use parse::{load_policy, parse_policy};
