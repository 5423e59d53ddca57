//! What the scalar calls keep from one call to the next, with the GIL as their lock: the
//! `Decision` objects they handed out (reused once nobody holds them), and (`fastcall.rs`) the
//! parameters each call site's keyword names map to.
//!
//! Making a `Decision` through PyO3 (`object.__new__`, `tp_alloc`, a garbage-collected
//! allocation) and freeing it (PyO3's `tp_dealloc` trampoline, `tp_free`) cost about a third
//! of a `check`'s work outside the core. So the last few decisions handed out stay in a small
//! pool, and a call whose pool holds one that nobody else references any more (reference
//! count 1: only the pool's) refills that object in place and returns it, as CPython's `zip`
//! and `enumerate` reuse their result tuple. No reference to the object existed outside the
//! pool (a `Decision` supports no weak references), so no code held it, as if it had been freed
//! and a new one made at the same address. What can tell: the garbage collector's list of
//! objects (`gc.get_objects()`) still shows up to `SLOTS` decisions nobody holds, with their
//! data, and their tenant `str`s stay referenced until then; a leak checker that counts
//! objects sees those few, never more.
//!
//! Soundness rests on the GIL: this state (`GilCell`) and the refcount test are only touched
//! while attached, by code that runs no Python code in between (no allocation of Python
//! objects, no decref of anything but a `str` or a tuple of `str`s), so no other thread and no
//! re-entrant call sees them half-done. It is all off on an interpreter without a GIL (an abi3
//! module never loads in one; checked at import all the same). The pool holds at most `SLOTS`
//! decisions (and the tenant `str`s they hold) for the life of the process.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::types::{Decision, DecisionData, EventData, TenantName};

/// A `Decision`'s data: read through `Deref` like a plain field, written only by
/// `decision` below, when the object is referenced by the pool alone.
pub struct Cell<T>(UnsafeCell<T>);

impl<T> Cell<T> {
    pub fn new(value: T) -> Cell<T> {
        Cell(UnsafeCell::new(value))
    }
}

impl<T> Deref for Cell<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the only write (`refill`) happens while the object holding this cell is
        // referenced by the pool alone, with the GIL held: no reference to it, Python or Rust,
        // exists then (a Rust `&` to its data can only come from a Python reference).
        unsafe { &*self.0.get() }
    }
}

// SAFETY: shared access only reads (see `Deref`); `T` itself must be shareable.
unsafe impl<T: Sync> Sync for Cell<T> {}

/// How many decisions the pool keeps: the one just handed out is usually still held (`d =
/// e.check(...)` rebinds `d` after the call), so one more, and a little room for code that
/// holds two or three at once.
const SLOTS: usize = 4;

/// The pool: strong references to recent decisions (null when empty), and the slot the next
/// new decision replaces.
struct Pool {
    slots: [*mut ffi::PyObject; SLOTS],
    next: usize,
}

/// A value only touched with the GIL held.
pub(crate) struct GilCell<T>(UnsafeCell<T>);

// SAFETY: every access goes through `with`, made attached to an interpreter with a GIL
// (`enabled()`), whose closure runs no Python code: one thread at a time, no re-entry.
unsafe impl<T> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub(crate) const fn new(value: T) -> GilCell<T> {
        GilCell(UnsafeCell::new(value))
    }

    /// Runs `f` on the value (`None`: not on this interpreter, see `enabled`). `f` must not
    /// run Python code (nor release the GIL).
    #[inline]
    pub(crate) fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if !enabled() {
            return None;
        }
        // SAFETY: attached to an interpreter with a GIL, and `f` cannot re-enter.
        Some(f(unsafe { &mut *self.0.get() }))
    }
}

static POOL: GilCell<Pool> = GilCell::new(Pool {
    slots: [std::ptr::null_mut(); SLOTS],
    next: 0,
});

/// The interpreter has a GIL (set at import): the state of this file may be used.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns reuse on when the running interpreter has a GIL. Called once, at import.
pub fn init(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    let gil = match sys.getattr("_is_gil_enabled") {
        Ok(f) => f.call0()?.is_truthy()?,
        Err(_) => true, // before 3.13: always a GIL
    };
    ENABLED.store(gil, Ordering::Relaxed);
    Ok(())
}

/// Whether reuse is on (`GilCell`s may be used).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A `Decision` object holding `d`, `tenant` and `events`: a pooled one nobody else holds,
/// refilled, or a new one (then kept in the pool in place of the oldest).
#[inline]
pub fn decision(
    py: Python<'_>,
    d: &outguard::Decision,
    tenant: Option<TenantName>,
    events: Vec<EventData>,
) -> PyResult<Py<PyAny>> {
    let free = POOL
        .with(py, |p| {
            p.slots
                .iter()
                .copied()
                // SAFETY: a non-null slot is a live object the pool holds a reference to.
                .find(|&o| !o.is_null() && unsafe { ffi::Py_REFCNT(o) } == 1)
        })
        .flatten();
    if let Some(o) = free {
        // SAFETY: `o` is a `Decision` (only they enter the pool) referenced by the pool alone.
        let (tenant, events) = unsafe { refill(py, o, d, tenant, events) };
        // The caller's reference is taken before anything old is released, so the object is
        // no longer free even if a release ever ran Python code.
        // SAFETY: a live object; the new reference is the caller's.
        let out = unsafe { Bound::from_borrowed_ptr(py, o) }.unbind();
        // Its old tenant `str`: released now (a `Bound`, not a `Py`, whose drop could be
        // deferred outside PyO3's trampoline); freeing a `str` runs no Python code.
        if let Some(TenantName::Given(s)) = tenant {
            drop(s.into_bound(py));
        }
        drop(events);
        return Ok(out);
    }
    // Making the object may run Python code (a garbage collection): not inside `with`.
    let data = DecisionData {
        d: *d,
        tenant,
        events,
    };
    let obj = Bound::new(py, Decision::new(data))?.into_any();
    let out = POOL.with(py, |p| {
        let k = p.next;
        p.next = (k + 1) % SLOTS;
        std::mem::replace(&mut p.slots[k], obj.clone().into_ptr())
    });
    if let Some(out) = out.filter(|o| !o.is_null()) {
        // SAFETY: the pool's reference to the decision it let go of.
        drop(unsafe { Bound::from_owned_ptr(py, out) });
    }
    Ok(obj.unbind())
}

/// Puts `d`, `tenant` and `events` in the pooled decision `o` and returns the tenant and
/// events it held.
///
/// # Safety
/// `o` is a live `Decision` referenced by the pool alone, the GIL held.
#[inline]
unsafe fn refill(
    py: Python<'_>,
    o: *mut ffi::PyObject,
    d: &outguard::Decision,
    tenant: Option<TenantName>,
    events: Vec<EventData>,
) -> (Option<TenantName>, Vec<EventData>) {
    // SAFETY: (caller) a live `Decision`.
    let obj = unsafe { pyo3::Borrowed::from_ptr(py, o).cast_unchecked::<Decision>() };
    // SAFETY: nobody else references the object, so no reference to its data exists.
    let cell = unsafe { &mut *obj.get().0 .0.get() };
    cell.d = *d;
    (
        std::mem::replace(&mut cell.tenant, tenant),
        std::mem::replace(&mut cell.events, events),
    )
}
