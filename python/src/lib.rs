//! Python bindings for outguard: the module `outguard._outguard`, re-exported by the
//! `outguard` package.
//!
//! This crate holds wrappers and conversions only (STYLE.md, "three rings"): every decision,
//! count and text comes from the core. One file per concern:
//! - `error.rs`: core errors to exception classes;
//! - `convert.rs`: Python arguments to core values;
//! - `types.rs`: frozen value classes (`Decision`, `Event`, `Replay`, ...);
//! - `policy.rs`, `engine.rs`: `Policy` and `Engine`;
//! - `text.rs`: explanations and NDRs;
//! - `columns.rs`: batch columns; `buffers.rs`: Arrow and numpy memory (unsafe, audited);
//! - `fastcall.rs`: the scalar calls without PyO3's argument handling (unsafe, audited);
//! - `reuse.rs`: the scalar calls' `Decision` objects reused once nobody holds them (unsafe,
//!   audited).

mod buffers;
mod columns;
mod convert;
mod engine;
mod error;
mod fastcall;
mod policy;
mod reuse;
mod shared;
mod text;
mod types;

use pyo3::prelude::*;

#[pymodule]
fn _outguard(m: &Bound<'_, PyModule>) -> PyResult<()> {
    error::register(m)?;
    m.add_class::<policy::Policy>()?;
    m.add_class::<engine::Engine>()?;
    fastcall::init_text_reader(m.py());
    reuse::init(m.py())?;
    let engine = m.py().get_type::<engine::Engine>();
    fastcall::install::<engine::CheckCall>(m.py(), &engine)?;
    fastcall::install::<engine::EvaluateCall>(m.py(), &engine)?;
    fastcall::install::<engine::CallFloor>(m.py(), &engine)?;
    fastcall::install::<engine::ReadFloor>(m.py(), &engine)?;
    m.add_class::<shared::SharedEngine>()?;
    let shared = m.py().get_type::<shared::SharedEngine>();
    fastcall::install::<shared::SharedCheckCall>(m.py(), &shared)?;
    m.add_class::<types::Decision>()?;
    m.add_class::<types::Event>()?;
    m.add_class::<types::Counters>()?;
    m.add_class::<types::TenantStatus>()?;
    m.add_class::<types::RuleStatus>()?;
    m.add_class::<types::Restriction>()?;
    m.add_class::<types::SuspiciousConnector>()?;
    m.add_class::<types::Diagnostic>()?;
    m.add_class::<types::ReloadReport>()?;
    m.add_class::<types::RestoreReport>()?;
    m.add_class::<types::Replay>()?;
    m.add_function(wrap_pyfunction!(text::explain, m)?)?;
    m.add_function(wrap_pyfunction!(text::title, m)?)?;
    m.add_function(wrap_pyfunction!(text::reply, m)?)?;
    m.add_function(wrap_pyfunction!(text::render_ndr, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Which fast paths this interpreter got (for the tests): text lent as UTF-8.
    m.setattr("_text_lent", fastcall::lends_utf8())?;
    // Scalar calls reuse decisions nobody holds (`reuse.rs`).
    m.setattr("_decisions_reused", reuse::enabled())?;
    Ok(())
}
