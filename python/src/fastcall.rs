//! `Engine.check` as a hand-made method, without PyO3's generic argument handling.
//!
//! Why: under the stable ABI for Python 3.9 PyO3 receives every call as an argument tuple
//! plus a keyword dict built by the interpreter, and reads each keyword's name through a
//! temporary bytes object; for `check` with its ten fields that costs several times the
//! decision itself. This method matches keyword names by identity with interned names (the
//! interpreter interns the names written in a call) and, on Python 3.10 and later, where
//! `METH_FASTCALL` is part of the stable ABI, takes the arguments as the interpreter's own
//! vector (no tuple, no dict). The wheel stays abi3-py39: the calling convention is chosen
//! when the module is imported, from the running interpreter's version.
//!
//! The PyO3 method of the same name stays the definition (signature, docs, stubs): `install`
//! puts this method in its place with the same `__text_signature__` and `__doc__`. The work
//! is done by the safe `Engine::check_args`; this file only turns raw arguments into
//! borrowed references (unsafe code, audited here, like `buffers.rs`).
#![allow(unsafe_code)]

use std::ffi::{c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::{PySystemError, PyTypeError};
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use pyo3::Borrowed;

use crate::engine::{Engine, CHECK_ARGS, CHECK_POSITIONAL};

/// `METH_FASTCALL` (0x80 since CPython 3.7; in the stable ABI from 3.10, where it is used).
const METH_FASTCALL: c_int = 0x0080;
/// The flag bit of a vectorcall argument count.
const ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

type Slots<'a, 'py> = [Option<Borrowed<'a, 'py, PyAny>>; CHECK_ARGS.len()];

static INTERNED: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();

/// The parameter a keyword names.
fn slot_of(py: Python<'_>, name: Borrowed<'_, '_, PyAny>) -> PyResult<usize> {
    let interned = INTERNED.get_or_init(py, || {
        CHECK_ARGS
            .iter()
            .map(|n| PyString::intern(py, n).unbind())
            .collect()
    });
    if let Some(k) = interned.iter().position(|s| s.as_ptr() == name.as_ptr()) {
        return Ok(k);
    }
    // A name made at run time (`**kwargs` from a dict built by hand): compare the text.
    let name = name.cast::<PyString>()?;
    let text = name.to_cow()?;
    CHECK_ARGS.iter().position(|n| *n == text).ok_or_else(|| {
        PyTypeError::new_err(format!(
            "check() got an unexpected keyword argument '{text}'"
        ))
    })
}

fn place<'a, 'py>(
    py: Python<'py>,
    slots: &mut Slots<'a, 'py>,
    name: Borrowed<'_, 'py, PyAny>,
    value: Borrowed<'a, 'py, PyAny>,
) -> PyResult<()> {
    let k = slot_of(py, name)?;
    if slots[k].replace(value).is_some() {
        return Err(PyTypeError::new_err(format!(
            "check() got multiple values for argument '{}'",
            CHECK_ARGS[k]
        )));
    }
    Ok(())
}

fn too_many(n: usize) -> PyErr {
    PyTypeError::new_err(format!(
        "check() takes {CHECK_POSITIONAL} positional arguments but {n} were given"
    ))
}

/// Runs `f` as a method body: errors and panics become Python exceptions.
///
/// # Safety
/// Called only by the interpreter, as a method, with the GIL held.
unsafe fn body(f: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>>) -> *mut ffi::PyObject {
    let py = Python::assume_attached();
    match catch_unwind(AssertUnwindSafe(|| f(py))) {
        Ok(Ok(v)) => v.into_ptr(),
        Ok(Err(e)) => {
            e.restore(py);
            ptr::null_mut()
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic in Engine.check".into());
            PanicException::new_err(msg).restore(py);
            ptr::null_mut()
        }
    }
}

fn call(
    py: Python<'_>,
    slf: Borrowed<'_, '_, PyAny>,
    slots: &Slots<'_, '_>,
) -> PyResult<Py<PyAny>> {
    let engine = slf.cast::<Engine>()?;
    Ok(engine.get().check_args(py, slots)?.into_any().unbind())
}

/// `METH_FASTCALL | METH_KEYWORDS`: positional arguments, then the keyword values, in one
/// vector; the keyword names in a tuple.
unsafe extern "C" fn check_fast(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    body(|py| {
        let nargs = nargsf as usize & !ARGUMENTS_OFFSET;
        if nargs > CHECK_POSITIONAL {
            return Err(too_many(nargs));
        }
        let mut slots: Slots<'_, '_> = Default::default();
        for (i, s) in slots.iter_mut().enumerate().take(nargs) {
            // SAFETY: `args` holds `nargs` borrowed references, alive for the call.
            *s = Some(Borrowed::from_ptr(py, *args.add(i)));
        }
        if !kwnames.is_null() {
            // SAFETY: `kwnames` is a tuple of the keyword names, alive for the call.
            let names = Borrowed::from_ptr(py, kwnames);
            let names = names.cast::<PyTuple>()?;
            for (j, name) in names.iter().enumerate() {
                // SAFETY: the keyword values follow the positional ones in `args`.
                let v = Borrowed::from_ptr(py, *args.add(nargs + j));
                place(py, &mut slots, name.as_borrowed(), v)?;
            }
        }
        // SAFETY: `slf` is the instance the method descriptor was called on.
        call(py, Borrowed::from_ptr(py, slf), &slots)
    })
}

/// `METH_VARARGS | METH_KEYWORDS` (Python 3.9): an argument tuple and a keyword dict.
unsafe extern "C" fn check_varargs(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    body(|py| {
        // SAFETY: `args` is the argument tuple, alive for the call.
        let args = Borrowed::from_ptr(py, args);
        let args = args.cast::<PyTuple>()?;
        if args.len() > CHECK_POSITIONAL {
            return Err(too_many(args.len()));
        }
        let mut slots: Slots<'_, '_> = Default::default();
        for (i, s) in slots.iter_mut().enumerate().take(args.len()) {
            *s = Some(args.get_borrowed_item(i)?);
        }
        // SAFETY: `kwargs` is NULL or the keyword dict, alive for the call.
        let kw = (!kwargs.is_null()).then(|| Borrowed::from_ptr(py, kwargs));
        let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = match &kw {
            Some(d) => d.cast::<PyDict>()?.iter().collect(),
            None => Vec::new(),
        };
        for (name, v) in &items {
            place(py, &mut slots, name.as_borrowed(), v.as_borrowed())?;
        }
        // SAFETY: `slf` is the instance the method descriptor was called on.
        call(py, Borrowed::from_ptr(py, slf), &slots)
    })
}

/// Replaces `Engine.check` by the hand-made method (same signature and docs).
pub fn install(py: Python<'_>, ty: &Bound<'_, PyType>) -> PyResult<()> {
    let original = ty.getattr("check")?;
    let sig: String = original.getattr("__text_signature__")?.extract()?;
    let doc: String = original
        .getattr("__doc__")?
        .extract::<Option<String>>()?
        .unwrap_or_default();
    let doc = CString::new(format!("check{sig}\n--\n\n{doc}"))
        .map_err(|_| PySystemError::new_err("Engine.check: NUL in its docs"))?;
    // `OUTGUARD_CHECK_CALL=varargs` forces the 3.9 convention (so tests can cover it).
    let forced = std::env::var_os("OUTGUARD_CHECK_CALL").is_some_and(|v| v == "varargs");
    let fast = py.version_info() >= (3, 10) && !forced;
    let meth = if fast {
        type Fast = unsafe extern "C" fn(
            *mut ffi::PyObject,
            *const *mut ffi::PyObject,
            ffi::Py_ssize_t,
            *mut ffi::PyObject,
        ) -> *mut ffi::PyObject;
        // SAFETY: the interpreter calls an `ml_meth` by the convention `ml_flags` names
        // (it casts it back, as C extensions do); the pointer's type here is only storage.
        ffi::PyMethodDefPointer {
            PyCFunction: unsafe { std::mem::transmute::<Fast, ffi::PyCFunction>(check_fast) },
        }
    } else {
        ffi::PyMethodDefPointer {
            PyCFunctionWithKeywords: check_varargs,
        }
    };
    // The definition must live as long as the type: made once per process, at import.
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"check".as_ptr(),
        ml_meth: meth,
        ml_flags: if fast {
            METH_FASTCALL | ffi::METH_KEYWORDS
        } else {
            ffi::METH_VARARGS | ffi::METH_KEYWORDS
        },
        ml_doc: Box::leak(doc.into_boxed_c_str()).as_ptr(),
    }));
    // SAFETY: a method descriptor for our type from a definition that is never freed.
    let descr =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))? };
    ty.setattr("check", descr)
}
