//! The one place where errors become Python exceptions.
//!
//! | Python exception | raised for |
//! |---|---|
//! | `OutguardError` | base class of everything below |
//! | `PolicyError` | a policy that does not parse or build; `.diagnostics` lists every problem |
//! | `SnapshotError` | a truncated, corrupt, foreign or other-version snapshot |
//! | `UnknownTenantError` (also a `LookupError`) | an operator action or status for an unknown tenant |
//! | `NotFoundError` (also a `LookupError`) | removing a domain, connector or exception that is not there |
//! | `CapacityError` | a full table (the engine's capacity is fixed when it is built) |
//! | `ValueError` | a bad argument: an IP address, CIDR range, domain, verdict, language, ... |
//!
//! The classes are made at module initialisation with `type(name, bases, ns)` because two of
//! them have two bases (`pyo3::create_exception!` takes one), so `except LookupError` catches
//! an unknown tenant as a Python user expects.

use outguard::policy::{Diagnostic as CoreDiagnostic, PolicyError as CorePolicyError};
use outguard::Error;
use pyo3::exceptions::{PyException, PyLookupError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};

use crate::types::Diagnostic;

/// The exception classes of the module.
pub struct Exceptions {
    pub base: Py<PyType>,
    pub policy: Py<PyType>,
    pub snapshot: Py<PyType>,
    pub unknown_tenant: Py<PyType>,
    pub not_found: Py<PyType>,
    pub capacity: Py<PyType>,
}

static EXCEPTIONS: PyOnceLock<Exceptions> = PyOnceLock::new();

fn make_type<'py>(
    py: Python<'py>,
    name: &str,
    doc: &str,
    bases: Vec<Bound<'py, PyAny>>,
) -> PyResult<Py<PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "outguard")?;
    ns.set_item("__doc__", doc)?;
    if name == "PolicyError" {
        // Raised instances carry their own list and first place; the class defaults are empty.
        ns.set_item("diagnostics", PyList::empty(py))?;
        ns.set_item("file", "")?;
        ns.set_item("line", 0)?;
        ns.set_item("column", 0)?;
        ns.set_item("field", "")?;
    }
    let ty = py
        .get_type::<PyType>()
        .call1((name, PyTuple::new(py, bases)?, ns))?;
    Ok(ty.cast_into::<PyType>()?.unbind())
}

fn create(py: Python<'_>) -> PyResult<Exceptions> {
    let exc = py.get_type::<PyException>().into_any();
    let lookup = py.get_type::<PyLookupError>().into_any();
    let base = make_type(
        py,
        "OutguardError",
        "Base class of every outguard error.",
        vec![exc],
    )?;
    let b = || base.bind(py).clone().into_any();
    Ok(Exceptions {
        policy: make_type(
            py,
            "PolicyError",
            "A policy that does not parse or build. `diagnostics` lists every problem \
             (file, line, column, path, expected, found, message).",
            vec![b()],
        )?,
        snapshot: make_type(
            py,
            "SnapshotError",
            "A snapshot that is truncated, corrupt, foreign or of another format version. \
             The engine is left as it was.",
            vec![b()],
        )?,
        unknown_tenant: make_type(
            py,
            "UnknownTenantError",
            "No tenant with that id.",
            vec![b(), lookup.clone()],
        )?,
        not_found: make_type(
            py,
            "NotFoundError",
            "No such domain, connector, range or exception.",
            vec![b(), lookup],
        )?,
        capacity: make_type(
            py,
            "CapacityError",
            "A table of the engine is full (capacity is fixed when the engine is built; \
             raise [engine] headroom_percent in the policy).",
            vec![b()],
        )?,
        base,
    })
}

/// The exception classes, made on first use.
pub fn exceptions(py: Python<'_>) -> PyResult<&Exceptions> {
    EXCEPTIONS.get_or_try_init(py, || create(py))
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let e = exceptions(py)?;
    m.add("OutguardError", e.base.bind(py))?;
    m.add("PolicyError", e.policy.bind(py))?;
    m.add("SnapshotError", e.snapshot.bind(py))?;
    m.add("UnknownTenantError", e.unknown_tenant.bind(py))?;
    m.add("NotFoundError", e.not_found.bind(py))?;
    m.add("CapacityError", e.capacity.bind(py))?;
    Ok(())
}

fn raise(pick: fn(&Exceptions) -> &Py<PyType>, msg: String) -> PyErr {
    Python::attach(|py| match exceptions(py) {
        Ok(e) => PyErr::from_type(pick(e).bind(py).clone(), msg),
        Err(err) => err,
    })
}

/// A core error as the Python exception a caller expects.
pub fn core_error(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::TableFull(_) | Error::InvalidCapacity(_) => raise(|e| &e.capacity, msg),
        Error::UnknownTenant => raise(|e| &e.unknown_tenant, msg),
        Error::NotFound => raise(|e| &e.not_found, msg),
        Error::SnapshotTruncated
        | Error::SnapshotForeign
        | Error::SnapshotVersion
        | Error::SnapshotChecksum
        | Error::SnapshotCorrupt => raise(|e| &e.snapshot, msg),
        Error::BufferTooSmall => raise(|e| &e.base, msg),
        // Bad arguments: parameters, ids, names, domains, addresses, ranges, duplicates.
        _ => PyValueError::new_err(msg),
    }
}

/// A core error about a named tenant, with the tenant in the message.
pub fn tenant_error(err: Error, tenant: &str) -> PyErr {
    match err {
        Error::UnknownTenant => raise(|e| &e.unknown_tenant, format!("unknown tenant {tenant:?}")),
        other => core_error(other),
    }
}

fn diagnostic(d: &CoreDiagnostic) -> Diagnostic {
    Diagnostic {
        file: d.file.clone(),
        line: d.line,
        column: d.column,
        path: d.path.clone(),
        expected: d.expected.clone(),
        found: d.found.clone(),
        message: d.message.clone(),
    }
}

/// A policy error: the message lists every diagnostic, one a line; `.diagnostics` holds them,
/// and `.file`, `.line`, `.column`, `.field` name the first.
pub fn policy_error(err: &CorePolicyError) -> PyErr {
    Python::attach(|py| {
        let build = || -> PyResult<PyErr> {
            let e = exceptions(py)?;
            let n = err.diagnostics.len();
            let msg = if n == 1 {
                err.to_string()
            } else {
                format!("{n} problems in the policy:\n{err}")
            };
            let exc = e.policy.bind(py).call1((msg,))?;
            let list = PyList::empty(py);
            for d in &err.diagnostics {
                list.append(Bound::new(py, diagnostic(d))?)?;
            }
            exc.setattr("diagnostics", list)?;
            // The first problem's place, for callers that show one (`.diagnostics` has all).
            let first = err.diagnostics.first();
            exc.setattr("file", first.map_or(String::new(), |d| d.file.clone()))?;
            exc.setattr("line", first.map_or(0, |d| d.line))?;
            exc.setattr("column", first.map_or(0, |d| d.column))?;
            exc.setattr("field", first.map_or(String::new(), |d| d.path.clone()))?;
            Ok(PyErr::from_value(exc))
        };
        build().unwrap_or_else(|e| e)
    })
}
