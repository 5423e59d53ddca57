//! Benchmarks of outguard against its anchors: shared inputs ([`fixture`]) and the std
//! baselines measured beside outguard in the same run ([`baseline`]).
//!
//! Run them all with `scripts/bench`, which prints the results table and writes
//! `benches/RESULTS.md`.

pub mod baseline;
pub mod cabi;
pub mod fixture;
pub mod report;
