//! `outguard.Policy`: a parsed, validated policy, ready to build engines from.

use std::path::PathBuf;

use outguard::policy::Policy as CorePolicy;
use outguard::{BlockDuration, RATIO_ONE};
use pyo3::prelude::*;

use crate::error::policy_error;
use crate::types::mode_name;

/// A validated policy (SPEC §2). Immutable; share it freely between threads and engines.
#[pyclass(frozen, module = "outguard")]
pub struct Policy {
    pub inner: CorePolicy,
}

fn block_text(b: BlockDuration) -> String {
    match b {
        BlockDuration::Manual => "manual".into(),
        BlockDuration::Seconds(s) => format!("{s}s"),
    }
}

#[pymethods]
impl Policy {
    /// Reads and parses a policy file; files it refers to are read relative to its directory.
    /// Raises `PolicyError` listing every problem.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Policy> {
        py.detach(|| CorePolicy::load(&path))
            .map(|inner| Policy { inner })
            .map_err(|e| policy_error(&e))
    }

    /// Parses policy text. `file` names it in diagnostics; relative `files` and
    /// `tenants_file` entries are read from `base_dir` (without one they are an error).
    #[staticmethod]
    #[pyo3(signature = (text, file = "<string>", base_dir = None))]
    fn from_toml(
        py: Python<'_>,
        text: String,
        file: &str,
        base_dir: Option<PathBuf>,
    ) -> PyResult<Policy> {
        py.detach(|| CorePolicy::from_toml(&text, file, base_dir.as_deref()))
            .map(|inner| Policy { inner })
            .map_err(|e| policy_error(&e))
    }

    /// The file name used in messages (`"<string>"` for `from_toml` by default).
    #[getter]
    fn file(&self) -> &str {
        self.inner.file()
    }

    /// The tenant ids, in policy order.
    #[getter]
    fn tenants(&self) -> Vec<String> {
        self.inner
            .doc()
            .tenants
            .iter()
            .map(|t| t.id.clone())
            .collect()
    }

    /// The policy's default rule parameters, as a dict per rule (durations in seconds, ratios
    /// 0..1, `block` as seconds or `"manual"`).
    fn rules<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        use pyo3::types::PyDict;
        let r = &self.inner.doc().rules;
        let block = |b: BlockDuration| -> PyResult<Bound<'py, PyAny>> {
            Ok(match b {
                BlockDuration::Manual => "manual".into_pyobject(py)?.into_any(),
                BlockDuration::Seconds(s) => s.into_pyobject(py)?.into_any(),
            })
        };
        let out = PyDict::new(py);
        let t = PyDict::new(py);
        t.set_item("mode", mode_name(r.threshold.mode))?;
        t.set_item("window", r.threshold.window)?;
        t.set_item(
            "count",
            match r.threshold.count {
                outguard::CountMode::Messages => "messages",
                outguard::CountMode::Recipients => "recipients",
            },
        )?;
        t.set_item(
            "suspicious",
            outguard::Verdict::ALL
                .iter()
                .filter(|v| r.threshold.suspicious.contains(**v))
                .map(|v| v.name())
                .collect::<Vec<_>>(),
        )?;
        t.set_item("min_messages", r.threshold.min_messages)?;
        t.set_item("min_suspicious", r.threshold.min_suspicious)?;
        t.set_item(
            "max_ratio",
            r.threshold.max_ratio_ppm as f64 / RATIO_ONE as f64,
        )?;
        t.set_item(
            "warn_ratio",
            r.threshold.warn_ratio_ppm as f64 / RATIO_ONE as f64,
        )?;
        t.set_item("block", block(r.threshold.block)?)?;
        t.set_item("grace", r.threshold.grace)?;
        t.set_item("renewal_delay", r.threshold.renewal_delay)?;
        out.set_item("tenant_threshold", t)?;
        let u = PyDict::new(py);
        u.set_item("mode", mode_name(r.unregistered.mode))?;
        u.set_item("window", r.unregistered.window)?;
        u.set_item("limit", r.unregistered.limit)?;
        u.set_item("block", block(r.unregistered.block)?)?;
        u.set_item("grace", r.unregistered.grace)?;
        out.set_item("unregistered_domain", u)?;
        let l = PyDict::new(py);
        l.set_item("mode", mode_name(r.low_reputation.mode))?;
        l.set_item(
            "scope",
            match r.low_reputation.scope {
                outguard::Scope::All => "all",
                outguard::Scope::Unlicensed => "unlicensed",
            },
        )?;
        l.set_item("ranges", self.inner.doc().low_reputation.len())?;
        out.set_item("low_reputation_ip", l)?;
        Ok(out)
    }

    fn __repr__(&self) -> String {
        let d = self.inner.doc();
        let r = &d.rules;
        format!(
            "<Policy {:?}: {} tenants; 5.7.705 {} (>= {} suspicious of >= {} messages, ratio >= {}, \
             block {}); 5.7.750 {} (limit {}, block {}); 5.7.708 {} ({} ranges, scope {})>",
            self.inner.file(),
            d.tenants.len(),
            mode_name(r.threshold.mode),
            r.threshold.min_suspicious,
            r.threshold.min_messages,
            r.threshold.max_ratio_ppm as f64 / RATIO_ONE as f64,
            block_text(r.threshold.block),
            mode_name(r.unregistered.mode),
            r.unregistered.limit,
            block_text(r.unregistered.block),
            mode_name(r.low_reputation.mode),
            d.low_reputation.len(),
            match r.low_reputation.scope {
                outguard::Scope::All => "all",
                outguard::Scope::Unlicensed => "unlicensed",
            }
        )
    }
}
