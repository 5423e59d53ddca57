//! The scalar calls (`Engine.check`, `Engine.evaluate`, `SharedEngine.check`...) as
//! hand-made methods, without PyO3's generic argument handling, and the raw C API calls that
//! read their arguments without temporary objects.
//!
//! Why: under the stable ABI for Python 3.9 PyO3 receives every call as an argument tuple
//! plus a keyword dict built by the interpreter, and reads each keyword's name through a
//! temporary bytes object; for `check` with its ten fields that costs several times the
//! decision itself. These methods match keyword names by identity with interned names (the
//! interpreter interns the names written in a call) and, on Python 3.10 and later, where
//! `METH_FASTCALL` is part of the stable ABI, take the arguments as the interpreter's own
//! vector (no tuple, no dict). Text arguments are read, on 3.10 and later, through
//! `PyUnicode_AsUTF8AndSize` (stable ABI from 3.10, so resolved by name at import rather than
//! linked: the wheel must load on 3.9), which lends the string's own UTF-8 form instead of
//! making a bytes object. The wheel stays abi3-py39: the calling convention and the text
//! reader are chosen when the module is imported, from the running interpreter's version;
//! `OUTGUARD_CHECK_CALL=varargs` forces the 3.9 choices (so tests cover them).
//!
//! The PyO3 method of the same name stays the definition (signature, docs, stubs): `install`
//! puts the hand-made method in its place with the same `__text_signature__` and `__doc__`.
//! The work is done by safe code (`Method::call`); this file only turns raw arguments into
//! borrowed references (unsafe code, audited here, like `buffers.rs`).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr, CString};
use std::marker::PhantomData;
use std::sync::OnceLock;

use pyo3::exceptions::{PySystemError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple, PyType};
use pyo3::Borrowed;

use crate::reuse::GilCell;

/// `METH_FASTCALL` (0x80 since CPython 3.7; in the stable ABI from 3.10, where it is used).
const METH_FASTCALL: c_int = 0x0080;
/// The flag bit of a vectorcall argument count.
const ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

/// The parameters of the scalar calls, in slot order (`verdict` only where a method takes it).
pub(crate) const NAMES: [&str; 11] = [
    "now",
    "mail_from",
    "tenant",
    "client_ip",
    "auth_user",
    "cert_domain",
    "forwarded",
    "spf_pass",
    "dkim_pass",
    "recipients",
    "verdict",
];
/// The slot of `verdict`.
pub(crate) const VERDICT: usize = 10;
/// How many parameters may be given by position (`now`, `mail_from`).
pub(crate) const POSITIONAL: usize = 2;

/// A call's arguments by slot (`NAMES` order), borrowed for the call.
pub(crate) type Args<'a, 'py> = [Option<Borrowed<'a, 'py, PyAny>>; NAMES.len()];

/// A method made by hand (`install`): its name, whether it takes `verdict`, and its body.
pub(crate) trait Method {
    /// The attribute it replaces (a PyO3 method with the signature and docs).
    const NAME: &'static CStr;
    /// It takes the `verdict` keyword.
    const VERDICT: bool;
    /// The method's work, from its arguments (`slf` not yet checked to be the right type).
    /// `strict`: called outside PyO3's trampoline, so it may only use the conversions that
    /// drop no Python error (see `entry_fast`); `Ok(None)` when an argument needs another (the
    /// call is then made again through the trampoline, not strict). Never `None` when not
    /// strict.
    fn call<'py>(
        py: Python<'py>,
        slf: Borrowed<'_, 'py, PyAny>,
        args: &Args<'_, 'py>,
        strict: bool,
    ) -> PyResult<Option<Py<PyAny>>>;
}

fn name_of<M: Method>() -> &'static str {
    M::NAME.to_str().unwrap_or("method")
}

static INTERNED: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();

/// The parameter a keyword names, and whether the name is the interned one (the same object).
fn slot_of<M: Method>(py: Python<'_>, name: Borrowed<'_, '_, PyAny>) -> PyResult<(usize, bool)> {
    let interned = INTERNED.get_or_init(py, || {
        NAMES
            .iter()
            .map(|n| PyString::intern(py, n).unbind())
            .collect()
    });
    let mut same = true;
    let k = match interned.iter().position(|s| s.as_ptr() == name.as_ptr()) {
        Some(k) => Some(k),
        None => {
            same = false;
            // A name made at run time (`**kwargs` from a dict built by hand): compare the text.
            // A name that is not UTF-8 (lone surrogates) names no parameter either.
            let name = name.cast::<PyString>()?;
            match name.to_cow() {
                Ok(text) => NAMES.iter().position(|n| *n == text),
                Err(e) => {
                    discard(name.py(), e);
                    None
                }
            }
        }
    };
    match k {
        Some(k) if k != VERDICT || M::VERDICT => Ok((k, same)),
        _ => Err(PyTypeError::new_err(format!(
            "{}() got an unexpected keyword argument '{}'",
            name_of::<M>(),
            name.to_owned() // (`Display` is lossy: surrogates shown as U+FFFD)
        ))),
    }
}

/// Puts `value` in the slot of keyword `name`; returns the slot and whether `name` is the
/// interned name.
fn place<'a, 'py, M: Method>(
    py: Python<'py>,
    slots: &mut Args<'a, 'py>,
    name: Borrowed<'_, 'py, PyAny>,
    value: Borrowed<'a, 'py, PyAny>,
) -> PyResult<(usize, bool)> {
    let (k, same) = slot_of::<M>(py, name)?;
    if slots[k].replace(value).is_some() {
        return Err(PyTypeError::new_err(format!(
            "{}() got multiple values for argument '{}'",
            name_of::<M>(),
            NAMES[k]
        )));
    }
    Ok((k, same))
}

/// A keyword-name tuple seen before and the slots of its names, in order.
///
/// A call written in Python passes the same tuple (a constant of the calling code) every
/// time, so the names are matched once per call site, not per call. The entry holds a strong
/// reference to the tuple, so its address cannot be reused by another tuple while it is
/// here; tuples never change. Only tuples of the interned names themselves are kept (so
/// releasing one frees no object but the tuple), each name once.
#[derive(Clone, Copy)]
struct KnownNames {
    /// The tuple (a strong reference), or null.
    tuple: *mut ffi::PyObject,
    /// The slot of each name (the first `len`).
    slots: [u8; NAMES.len()],
    len: u8,
    /// The slots named, as bits.
    mask: u16,
}

/// How many call sites' names are kept (then the oldest is replaced).
const KNOWN_SITES: usize = 8;

struct Known {
    entries: [KnownNames; KNOWN_SITES],
    next: usize,
}

static KNOWN: GilCell<Known> = GilCell::new(Known {
    entries: [KnownNames {
        tuple: std::ptr::null_mut(),
        slots: [0; NAMES.len()],
        len: 0,
        mask: 0,
    }; KNOWN_SITES],
    next: 0,
});

/// The slots of the names in `kwnames` when this tuple was seen before (and they may be used
/// with `nargs` positional arguments by `M`: else the names are matched again, which raises
/// the right error).
#[inline]
fn known_names<M: Method>(
    py: Python<'_>,
    kwnames: *mut ffi::PyObject,
    nargs: usize,
) -> Option<KnownNames> {
    let e = KNOWN
        .with(py, |k| {
            k.entries.iter().find(|e| e.tuple == kwnames).copied()
        })
        .flatten()?;
    let positional = (1u16 << nargs) - 1;
    let verdict = if M::VERDICT { 0 } else { 1 << VERDICT };
    (e.mask & (positional | verdict) == 0).then_some(e)
}

/// Keeps the slots of the names of `kwnames` (all of them the interned names, each once, so
/// at most `NAMES.len()`).
#[cold]
#[inline(never)]
fn learn_names(py: Python<'_>, kwnames: Borrowed<'_, '_, PyTuple>, slots: &[u8]) {
    let mut e = KnownNames {
        tuple: kwnames.as_ptr(),
        slots: [0; NAMES.len()],
        len: slots.len() as u8,
        mask: 0,
    };
    e.slots[..slots.len()].copy_from_slice(slots);
    for &k in slots {
        e.mask |= 1 << k;
    }
    let out = KNOWN.with(py, |k| {
        let i = k.next;
        k.next = (i + 1) % KNOWN_SITES;
        let out = std::mem::replace(&mut k.entries[i], e);
        // SAFETY: the entry's reference to the tuple.
        unsafe { ffi::Py_IncRef(e.tuple) };
        out.tuple
    });
    if let Some(out) = out.filter(|t| !t.is_null()) {
        // SAFETY: the reference the replaced entry held; the tuple holds only interned names,
        // which stay alive (`INTERNED`), so releasing it runs no Python code.
        unsafe { ffi::Py_DecRef(out) };
    }
}

fn too_many<M: Method>(n: usize) -> PyErr {
    PyTypeError::new_err(format!(
        "{}() takes {POSITIONAL} positional arguments but {n} were given",
        name_of::<M>()
    ))
}

/// Frees an error now (CPython releases it), not through PyO3's deferred pool as dropping a
/// `PyErr` outside PyO3's trampoline would.
pub(crate) fn discard(py: Python<'_>, e: PyErr) {
    e.restore(py);
    // SAFETY: attached; clears the error just raised.
    unsafe { ffi::PyErr_Clear() }
}

// The interpreter calls `entry_fast` / `entry_varargs` directly, not through PyO3's
// trampolines (which cost about a tenth of a `check`: PyO3's attach count in thread-local
// storage raised and lowered, its deferred-release pool checked). They keep what matters of
// the trampoline: a panic becomes a Python exception instead of unwinding into the
// interpreter, and an error is raised. What they do not do is raise PyO3's attach count, so a
// `Py<T>` dropped inside the call would wait in PyO3's deferred pool until the next PyO3 call
// instead of being released at once. So the call is made `strict`: only the conversions that
// drop no Python object (exact `int`s, `str`s, `bytes`, `None`, `True`, `False`: what calls
// almost always pass) run here; an argument that needs another conversion (a float time, an
// `ipaddress` object, a bool-like flag...) makes the method answer `None`, and the whole call
// is made again through PyO3's trampoline (the PyO3 `Def` below), not strict.

// PyO3's trampolines are its hidden (`impl_`) API, which the code its macros generate calls,
// so they stay compatible within a PyO3 minor version (pinned in Cargo.toml).
use pyo3::impl_::trampoline as pyo3_trampoline;
use pyo3_trampoline::{
    cfunction_with_keywords as varargs_trampoline,
    fastcall_cfunction_with_keywords as fast_trampoline,
};

/// PyO3's trampoline definitions of `M`'s two calling conventions (the non-strict calls).
struct Def<M>(PhantomData<M>);

impl<M: Method> pyo3_trampoline::MethodDef<fast_trampoline::Func> for Def<M> {
    const METH: fast_trampoline::Func = trampolined_fast::<M>;
}

impl<M: Method> pyo3_trampoline::MethodDef<varargs_trampoline::Func> for Def<M> {
    const METH: varargs_trampoline::Func = trampolined_varargs::<M>;
}

/// A non-strict call's result (`None` is not an answer there).
fn answer(r: PyResult<Option<*mut ffi::PyObject>>) -> PyResult<*mut ffi::PyObject> {
    r?.ok_or_else(|| PySystemError::new_err("argument conversion refused outside strict mode"))
}

/// # Safety
/// Called by PyO3's trampoline (attached) with the arguments of `METH_FASTCALL`.
unsafe fn trampolined_fast<M: Method>(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: forwarded as received.
    answer(unsafe { call_fast::<M>(py, slf, args, nargsf, kwnames, false) })
}

/// # Safety
/// Called by PyO3's trampoline (attached) with the arguments of `METH_VARARGS`.
unsafe fn trampolined_varargs<M: Method>(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: forwarded as received.
    answer(unsafe { call_varargs::<M>(py, slf, args, kwargs, false) })
}

/// What a strict call gives the interpreter: the new reference, or NULL with the error (or
/// the panic, as `pyo3.PanicException`) raised; `None`: make the call through PyO3.
#[inline(always)]
fn finish(
    py: Python<'_>,
    r: std::thread::Result<PyResult<Option<*mut ffi::PyObject>>>,
) -> Option<*mut ffi::PyObject> {
    match r {
        Ok(Ok(p)) => p,
        r => failed(py, r),
    }
}

/// `finish` of a call that failed or panicked.
#[cold]
#[inline(never)]
fn failed(
    py: Python<'_>,
    r: std::thread::Result<PyResult<Option<*mut ffi::PyObject>>>,
) -> Option<*mut ffi::PyObject> {
    match r {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            e.restore(py);
            Some(std::ptr::null_mut())
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            pyo3::panic::PanicException::new_err(msg).restore(py);
            Some(std::ptr::null_mut())
        }
    }
}

/// `METH_FASTCALL | METH_KEYWORDS` entry of `M`.
///
/// # Safety
/// Called by the interpreter, attached, with the arguments of this calling convention.
unsafe extern "C" fn entry_fast<M: Method>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls a method with the thread attached.
    let py = unsafe { Python::assume_attached() };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the arguments of this calling convention, alive for the call.
        unsafe { call_fast::<M>(py, slf, args, nargsf, kwnames, true) }
    }));
    match finish(py, r) {
        Some(p) => p,
        // SAFETY: the same call, through PyO3's trampoline.
        None => unsafe { fast_trampoline::<Def<M>>(slf, args, nargsf, kwnames) },
    }
}

/// `METH_VARARGS | METH_KEYWORDS` entry of `M` (Python 3.9).
///
/// # Safety
/// Called by the interpreter, attached, with the arguments of this calling convention.
unsafe extern "C" fn entry_varargs<M: Method>(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls a method with the thread attached.
    let py = unsafe { Python::assume_attached() };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the arguments of this calling convention, alive for the call.
        unsafe { call_varargs::<M>(py, slf, args, kwargs, true) }
    }));
    match finish(py, r) {
        Some(p) => p,
        // SAFETY: the same call, through PyO3's trampoline.
        None => unsafe { varargs_trampoline::<Def<M>>(slf, args, kwargs) },
    }
}

/// `METH_FASTCALL | METH_KEYWORDS`: positional arguments, then the keyword values, in one
/// vector; the keyword names in a tuple.
///
/// # Safety
/// Called attached (by an entry point or PyO3's trampoline) with the arguments of this
/// calling convention.
unsafe fn call_fast<M: Method>(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    strict: bool,
) -> PyResult<Option<*mut ffi::PyObject>> {
    let nargs = nargsf as usize & !ARGUMENTS_OFFSET;
    if nargs > POSITIONAL {
        return Err(too_many::<M>(nargs));
    }
    let mut slots: Args<'_, '_> = Default::default();
    for (i, s) in slots.iter_mut().enumerate().take(nargs) {
        // SAFETY: `args` holds `nargs` borrowed references, alive for the call.
        *s = Some(unsafe { Borrowed::from_ptr(py, *args.add(i)) });
    }
    if !kwnames.is_null() {
        if let Some(e) = known_names::<M>(py, kwnames, nargs) {
            for (j, &k) in e.slots[..e.len as usize].iter().enumerate() {
                // SAFETY: the keyword values follow the positional ones in `args`, one per
                // name of the tuple (`e.len` of them).
                slots[k as usize] = Some(unsafe { Borrowed::from_ptr(py, *args.add(nargs + j)) });
            }
        } else {
            // SAFETY: `kwnames` is a tuple of the keyword names, alive for the call.
            let names = unsafe { Borrowed::from_ptr(py, kwnames) };
            let names = names.cast::<PyTuple>()?;
            // (Each name fills a slot of its own, else `place` fails: at most `NAMES.len()`.)
            let mut learned = [0u8; NAMES.len()];
            let mut same = names.is_exact_instance_of::<PyTuple>();
            for (j, name) in names.iter_borrowed().enumerate() {
                // SAFETY: the keyword values follow the positional ones in `args`, one per name.
                let v = unsafe { Borrowed::from_ptr(py, *args.add(nargs + j)) };
                let (k, interned) = place::<M>(py, &mut slots, name, v)?;
                same &= interned;
                if let Some(l) = learned.get_mut(j) {
                    *l = k as u8;
                }
            }
            if same {
                learn_names(py, names.as_borrowed(), &learned[..names.len()]);
            }
        }
    }
    // SAFETY: `slf` is the instance the method descriptor was called on.
    let slf = unsafe { Borrowed::from_ptr(py, slf) };
    Ok(M::call(py, slf, &slots, strict)?.map(Py::into_ptr))
}

/// `METH_VARARGS | METH_KEYWORDS` (Python 3.9): an argument tuple and a keyword dict.
///
/// # Safety
/// Called attached (by an entry point or PyO3's trampoline) with the arguments of this
/// calling convention.
unsafe fn call_varargs<M: Method>(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
    strict: bool,
) -> PyResult<Option<*mut ffi::PyObject>> {
    // SAFETY: `args` is the argument tuple, alive for the call.
    let args = unsafe { Borrowed::from_ptr(py, args) };
    let args = args.cast::<PyTuple>()?;
    if args.len() > POSITIONAL {
        return Err(too_many::<M>(args.len()));
    }
    let mut slots: Args<'_, '_> = Default::default();
    for (i, s) in slots.iter_mut().enumerate().take(args.len()) {
        *s = Some(args.get_borrowed_item(i)?);
    }
    // SAFETY: `kwargs` is NULL or the keyword dict, alive for the call.
    let kw = (!kwargs.is_null()).then(|| unsafe { Borrowed::from_ptr(py, kwargs) });
    let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = match &kw {
        Some(d) => d.cast::<PyDict>()?.iter().collect(),
        None => Vec::new(),
    };
    for (name, v) in &items {
        place::<M>(py, &mut slots, name.as_borrowed(), v.as_borrowed())?;
    }
    // SAFETY: `slf` is the instance the method descriptor was called on.
    let slf = unsafe { Borrowed::from_ptr(py, slf) };
    Ok(M::call(py, slf, &slots, strict)?.map(Py::into_ptr))
}

/// `OUTGUARD_CHECK_CALL=varargs`: use what Python 3.9 gets (tests cover it this way).
fn forced_39() -> bool {
    std::env::var_os("OUTGUARD_CHECK_CALL").is_some_and(|v| v == "varargs")
}

/// Replaces the PyO3 method `M::NAME` of `ty` by the hand-made one (same signature and docs).
pub fn install<M: Method>(py: Python<'_>, ty: &Bound<'_, PyType>) -> PyResult<()> {
    let name = name_of::<M>();
    let original = ty.getattr(name)?;
    let sig: String = original.getattr("__text_signature__")?.extract()?;
    let doc: String = original
        .getattr("__doc__")?
        .extract::<Option<String>>()?
        .unwrap_or_default();
    let doc = CString::new(format!("{name}{sig}\n--\n\n{doc}"))
        .map_err(|_| PySystemError::new_err(format!("{name}: NUL in its docs")))?;
    let fast = py.version_info() >= (3, 10) && !forced_39();
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
            PyCFunction: unsafe { std::mem::transmute::<Fast, ffi::PyCFunction>(entry_fast::<M>) },
        }
    } else {
        ffi::PyMethodDefPointer {
            PyCFunctionWithKeywords: entry_varargs::<M>,
        }
    };
    // The definition must live as long as the type: made once per process, at import.
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: M::NAME.as_ptr(),
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
    ty.setattr(name, descr)
}

// --- Reading arguments ----------------------------------------------------------------------------

/// `PyUnicode_AsUTF8AndSize`: the string's own UTF-8 form (cached in the object), lent.
type AsUtf8AndSize =
    unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::Py_ssize_t) -> *const c_char;

static AS_UTF8: OnceLock<Option<AsUtf8AndSize>> = OnceLock::new();

/// Finds `PyUnicode_AsUTF8AndSize` in the running interpreter (3.10 and later, unix), and
/// checks it on a known string before trusting it. Called once, at import.
pub fn init_text_reader(py: Python<'_>) {
    let found = if py.version_info() >= (3, 10) && !forced_39() {
        find_as_utf8()
    } else {
        None
    };
    let works = |f: AsUtf8AndSize| -> bool {
        let probe = PyString::new(py, "h\u{e9}\u{1F600}");
        let mut n: ffi::Py_ssize_t = 0;
        // SAFETY: `f` is the interpreter's `PyUnicode_AsUTF8AndSize`, called with a live str
        // and a size to write, the GIL held; its result is read while `probe` lives.
        let p = unsafe { f(probe.as_ptr(), &mut n) };
        if p.is_null() || n < 0 {
            let _ = PyErr::take(py);
            return false;
        }
        // SAFETY: on success `p` points at `n` bytes owned by `probe`.
        let got = unsafe { std::slice::from_raw_parts(p as *const u8, n as usize) };
        got == "h\u{e9}\u{1F600}".as_bytes()
    };
    let _ = AS_UTF8.set(found.filter(|f| works(*f)));
}

#[cfg(unix)]
fn find_as_utf8() -> Option<AsUtf8AndSize> {
    // SAFETY: `dlsym` with the default search scope and a NUL-terminated name; it only
    // looks the symbol up.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"PyUnicode_AsUTF8AndSize".as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: the symbol is the C function of this signature (CPython's stable ABI, 3.10+).
    Some(unsafe { std::mem::transmute::<*mut libc::c_void, AsUtf8AndSize>(p) })
}

#[cfg(not(unix))]
fn find_as_utf8() -> Option<AsUtf8AndSize> {
    None
}

/// Whether `str` arguments are lent as UTF-8 (else copied into a bytes object).
pub fn lends_utf8() -> bool {
    AS_UTF8.get().copied().flatten().is_some()
}

/// The UTF-8 form of the `str` `s`, lent (3.10+), for readers that take many strings at
/// once; `None` when the interpreter cannot lend it (3.9) or for a value that has none (a
/// lone surrogate: the error is cleared, and the caller's general path reports it). As for
/// scalar arguments, a non-ASCII str keeps its UTF-8 form cached in itself (CPython's own
/// cache, freed with the str).
#[inline(always)]
pub(crate) fn lent_utf8<'a>(s: Borrowed<'a, '_, PyString>) -> Option<&'a [u8]> {
    let f = AS_UTF8.get().copied().flatten()?;
    let b = lend(f, s);
    if b.is_none() {
        let _ = PyErr::take(s.py());
    }
    b
}

/// `s`'s UTF-8 form through `f` (the interpreter's `PyUnicode_AsUTF8AndSize`); `None` with
/// the interpreter's error set when it has none (a lone surrogate).
#[inline(always)]
fn lend<'a>(f: AsUtf8AndSize, s: Borrowed<'a, '_, PyString>) -> Option<&'a [u8]> {
    let mut n: ffi::Py_ssize_t = 0;
    // SAFETY: the interpreter's `PyUnicode_AsUTF8AndSize` (checked at import), called with a
    // live str and the GIL held.
    let p = unsafe { f(s.as_ptr(), &mut n) };
    if p.is_null() || n < 0 {
        return None;
    }
    // SAFETY: the UTF-8 form is owned by the str, which outlives 'a (the borrow of `s`), and
    // never changes (str objects are immutable; the cache is made once).
    Some(unsafe { std::slice::from_raw_parts(p as *const u8, n as usize) })
}

// The two list readers below hold items borrowed from the list (no reference counting) and
// so must run no Python code while they do: they call only CPython functions that run none
// for an exact str or int, and take no caller code (a closure could run some).

/// Item `i` of `list`, borrowed; `None` out of range. See the note above on its use.
#[inline(always)]
fn list_item<'a, 'py>(list: &'a Bound<'py, PyList>, i: usize) -> Option<Borrowed<'a, 'py, PyAny>> {
    let i = ffi::Py_ssize_t::try_from(i).ok()?;
    // SAFETY: a live list and the GIL held; `PyList_GetItem` checks the index and returns a
    // borrowed reference (NULL with an error set when out of range).
    let p = unsafe { ffi::PyList_GetItem(list.as_ptr(), i) };
    // SAFETY: NULL or a borrowed reference to the list's item, alive while the list holds it,
    // which it does while the caller (one of the readers below) runs no Python code.
    let item = unsafe { Borrowed::from_ptr_or_opt(list.py(), p) };
    if item.is_none() {
        let _ = PyErr::take(list.py());
    }
    item
}

/// A list of exact `str` as one UTF-8 buffer and each value's end in it (3.10+, when the
/// interpreter lends UTF-8 forms); `None` for anything else (a subclass, another type, a lone
/// surrogate, 3.9), which the caller reads its general way.
pub(crate) fn exact_str_list(list: &Bound<'_, PyList>) -> Option<(Vec<u8>, Vec<usize>)> {
    let n = list.len();
    let mut ends = Vec::new();
    ends.try_reserve_exact(n).ok()?;
    let mut data = Vec::new();
    data.try_reserve(n.saturating_mul(16)).ok()?;
    for i in 0..n {
        let item = list_item(list, i)?;
        if !item.is_exact_instance_of::<PyString>() {
            return None;
        }
        // SAFETY (of the borrow): `lent_utf8` runs no Python code; the bytes are copied
        // before the next item is taken.
        data.extend_from_slice(lent_utf8(item.cast::<PyString>().ok()?)?);
        ends.push(data.len());
    }
    Some((data, ends))
}

/// A list of exact `int`s (bools and other subclasses excluded) that fit in 64 bits, read in
/// one loop of C calls; `None` for anything else (the caller's general path).
pub(crate) fn exact_int_list(list: &Bound<'_, PyList>) -> Option<Vec<i64>> {
    let n = list.len();
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    for i in 0..n {
        let o = list_item(list, i)?;
        if !o.is_exact_instance_of::<PyInt>() {
            return None;
        }
        match long_of(o) {
            Some(x) => v.push(x),
            // Beyond a C `long` (32 bits on Windows): the 64-bit reading, which runs no
            // Python code for an exact int either.
            None => v.push(o.extract::<i64>().ok()?),
        }
    }
    Some(v)
}

/// The value of an exact `int` that fits in a C `long`; `None` beyond it.
#[inline(always)]
fn long_of(o: Borrowed<'_, '_, PyAny>) -> Option<i64> {
    debug_assert!(o.is_exact_instance_of::<PyInt>());
    let mut overflow: c_int = 0;
    // SAFETY: a live object and the GIL held. For an exact int no error is possible (no
    // `__index__` is called) and overflow is reported in `overflow`, not as an exception.
    let x = unsafe { ffi::PyLong_AsLongAndOverflow(o.as_ptr(), &mut overflow) };
    if overflow != 0 || (x == -1 && PyErr::occurred(o.py())) {
        let _ = PyErr::take(o.py());
        return None;
    }
    // (A C `long` is 32 bits on Windows.)
    #[allow(clippy::useless_conversion)]
    Some(i64::from(x))
}

/// Where `text` keeps the bytes object it makes when it cannot lend a `str`'s UTF-8 form
/// (Python 3.9): one slot per argument, owned by the caller for the call.
pub(crate) type Keep<'py> = std::cell::OnceCell<Bound<'py, PyBytes>>;

/// The UTF-8 text of `s`: lent by the string (3.10+), or copied into a bytes object kept in
/// the slot `keep` gives (which must be empty). Raises `UnicodeEncodeError` for lone
/// surrogates (as `encode`).
#[inline(always)]
pub(crate) fn text<'k, 'py: 'k>(
    s: Borrowed<'k, 'py, PyString>,
    keep: impl FnOnce() -> &'k Keep<'py>,
) -> PyResult<&'k str> {
    if let Some(f) = AS_UTF8.get().copied().flatten() {
        let Some(b) = lend(f, s) else {
            return Err(fetched(s.py()));
        };
        // SAFETY: CPython only makes valid UTF-8 (it refuses lone surrogates).
        return Ok(unsafe { std::str::from_utf8_unchecked(b) });
    }
    copied_text(s, keep())
}

/// `text` on Python 3.9: `s` copied into a bytes object kept in `keep`.
#[inline(never)]
fn copied_text<'k, 'py: 'k>(
    s: Borrowed<'k, 'py, PyString>,
    keep: &'k Keep<'py>,
) -> PyResult<&'k str> {
    keep.set(s.to_owned().encode_utf8()?)
        .map_err(|_| PySystemError::new_err("argument text kept twice"))?;
    let b = keep.get().map(|b| b.as_bytes()).unwrap_or_default();
    // SAFETY: the bytes came from `str.encode("utf-8")` (strict), and bytes objects never
    // change; `keep` holds the object for 'k.
    Ok(unsafe { std::str::from_utf8_unchecked(b) })
}

/// The error just raised.
#[cold]
#[inline(never)]
fn fetched(py: Python<'_>) -> PyErr {
    PyErr::fetch(py)
}

/// The bytes of a `bytes` object, for as long as it is borrowed.
#[inline]
pub(crate) fn bytes_of<'a>(b: Borrowed<'a, '_, PyBytes>) -> &'a [u8] {
    // SAFETY: a live bytes object (kept alive for 'a by the borrow); its buffer never changes
    // and holds `PyBytes_Size` bytes.
    unsafe {
        let p = ffi::PyBytes_AsString(b.as_ptr());
        let n = ffi::PyBytes_Size(b.as_ptr());
        std::slice::from_raw_parts(p as *const u8, n.max(0) as usize)
    }
}

/// An exact `int` that fits in a non-negative `Py_ssize_t`, without the general conversion
/// (which goes through a byte array for values of more than one internal digit). `None`:
/// anything else (the caller converts it the general way).
#[inline]
pub(crate) fn small_uint(o: Borrowed<'_, '_, PyAny>) -> Option<u64> {
    if !o.is_exact_instance_of::<PyInt>() {
        return None;
    }
    // SAFETY: an exact int, the GIL held. (`PyLong_AsSsize_t` takes fewer instructions than
    // `PyLong_AsLongAndOverflow`, and is 64 bits wide on Windows too.)
    let v = unsafe { ffi::PyLong_AsSsize_t(o.as_ptr()) };
    if v < 0 {
        // -1 with `OverflowError` raised: too large (an exact int raises nothing else). The
        // error is dropped at once (by CPython), as strict calls require.
        // SAFETY: the GIL held.
        if v == -1 && unsafe { !ffi::PyErr_Occurred().is_null() } {
            unsafe { ffi::PyErr_Clear() }
        }
        return None;
    }
    Some(v as u64)
}
