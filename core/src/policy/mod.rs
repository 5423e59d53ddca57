//! Policy files (TOML), building engines from them, reload and snapshots as owned bytes.
//! Needs the `std` feature.

mod build;
mod doc;
mod duration;
mod error;
// TEMP: parse.rs lands shortly

pub use build::{snapshot, HeapEngine, Policy, ReloadReport, RestoreError};
pub use doc::*;
pub use duration::{parse_duration, parse_time};
pub use error::{Diagnostic, PolicyError};
/// Parses policy text (temporary stand-in).
pub fn parse_policy(
    _t: &str,
    file: &str,
    _b: Option<&std::path::Path>,
) -> Result<PolicyDoc, PolicyError> {
    Err(PolicyError {
        diagnostics: std::vec![Diagnostic {
            file: file.into(),
            line: 0,
            column: 0,
            path: std::string::String::new(),
            expected: std::string::String::new(),
            found: std::string::String::new(),
            message: "parser not wired yet".into()
        }],
    })
}
/// Loads a policy file (temporary stand-in).
pub fn load_policy(p: &std::path::Path) -> Result<PolicyDoc, PolicyError> {
    use std::string::ToString;
    parse_policy("", &p.display().to_string(), None)
}
