//! Every conversion between C pointers and Rust values, in one audited file.
//!
//! This is the only file of the crate with `unsafe`. The contract it relies on is the one every
//! exported function states in its documentation: a non-NULL pointer argument points to a
//! valid, properly aligned object of its type (or `len` of them) that stays valid and is not
//! written by anyone else for the duration of the call; NUL-terminated strings are terminated.
//! NULL is always checked here before anything is dereferenced.
//!
//! Output pointers are never turned into references: C may hand us uninitialised memory, so
//! outputs are written with `ptr::write` and never read ([`Out`], [`OutSlice`]).
#![allow(unsafe_code)]

use core::ffi::{c_char, c_void, CStr};
use core::ptr::NonNull;
use std::path::Path;

use crate::error::og_result;
use crate::types::og_event;

/// A checked, non-NULL output pointer to one `T`; written at most once, never read.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// Stores `v` (overwriting without reading or dropping what was there).
    pub(crate) fn write(self, v: T) {
        // SAFETY: non-NULL (checked in `out`), valid and aligned by the API contract; T is a
        // plain C type (Copy, no drop glue), so not dropping the old value is correct.
        unsafe { self.0.as_ptr().write(v) }
    }
}

/// A required output pointer.
pub(crate) fn out<T>(p: *mut T) -> Result<Out<T>, og_result> {
    NonNull::new(p).map(Out).ok_or_else(null_parameter)
}

/// The error for a NULL pointer that must not be NULL. Cold: a caller passing NULL is a bug,
/// and with the error path marked so, the compiler tests each pointer with a branch of its own
/// instead of combining the tests of all of them into one flag first.
///
/// Out of line too (as [`invalid_parameter`]): inlined, its constant was loaded into a register
/// kept for the result before each test, on the hot path too, and that register was one more
/// to save and restore.
#[cold]
#[inline(never)]
fn null_parameter() -> og_result {
    og_result::NullParameter
}

/// The error for an argument that is out of range; cold and out of line, as
/// [`null_parameter`].
#[cold]
#[inline(never)]
pub(crate) fn invalid_parameter() -> og_result {
    og_result::InvalidParameter
}

/// An optional output pointer (NULL: the caller does not want this output).
pub(crate) fn opt_out<T>(p: *mut T) -> Option<Out<T>> {
    NonNull::new(p).map(Out)
}

/// A checked output array of `len` elements of `T` (`ptr` may be NULL only when `len` is 0).
pub(crate) struct OutSlice<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> OutSlice<T> {
    /// How many elements fit.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `v` at `i`; does nothing when `i` is out of bounds.
    pub(crate) fn write_at(&mut self, i: usize, v: T) {
        if i < self.len {
            // SAFETY: i < len, and `ptr` points to `len` writable elements by the API
            // contract (NULL only with len 0, which this branch excludes).
            unsafe { self.ptr.add(i).write(v) }
        }
    }
}

impl OutSlice<u8> {
    /// Copies `src` to `offset`; returns false (writing nothing) when it does not fit.
    pub(crate) fn copy_at(&mut self, offset: usize, src: &[u8]) -> bool {
        let fits = offset
            .checked_add(src.len())
            .is_some_and(|end| end <= self.len);
        if fits && !src.is_empty() {
            // SAFETY: offset + src.len() <= len, and the destination holds `len` writable
            // bytes (API contract; non-NULL since len > 0 here); `src` is Rust memory, so the
            // two do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(offset), src.len()) }
        }
        fits
    }

    /// The first `n` bytes as a Rust slice, zero-filled first (C may have handed us
    /// uninitialised memory); `None` when `n` exceeds the buffer.
    pub(crate) fn zeroed_prefix(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.len {
            return None;
        }
        if n == 0 {
            return Some(&mut []);
        }
        // SAFETY: n <= len writable bytes (API contract; non-NULL since n > 0); they are
        // initialised by `write_bytes` before the slice is made, and the slice borrows
        // `self`, so no other Rust access to the buffer exists meanwhile.
        unsafe {
            self.ptr.write_bytes(0, n);
            Some(core::slice::from_raw_parts_mut(self.ptr, n))
        }
    }
}

/// An output array; NULL is accepted only together with `len == 0`.
pub(crate) fn out_slice<T>(p: *mut T, len: usize) -> Result<OutSlice<T>, og_result> {
    if p.is_null() && len > 0 {
        return Err(og_result::NullParameter);
    }
    Ok(OutSlice { ptr: p, len })
}

/// A byte output buffer given as `char *`.
pub(crate) fn out_bytes(p: *mut c_char, len: usize) -> Result<OutSlice<u8>, og_result> {
    out_slice(p.cast::<u8>(), len)
}

/// A required input object.
pub(crate) fn input<'a, T>(p: *const T) -> Result<&'a T, og_result> {
    // SAFETY: NULL is excluded by `as_ref`; otherwise valid, aligned and not mutated during
    // the call, by the API contract.
    unsafe { p.as_ref() }.ok_or_else(null_parameter)
}

/// A required NUL-terminated UTF-8 string.
pub(crate) fn text<'a>(p: *const c_char) -> Result<&'a str, og_result> {
    opt_text(p)?.ok_or(og_result::NullParameter)
}

/// An optional NUL-terminated UTF-8 string (NULL: absent).
#[inline]
pub(crate) fn opt_text<'a>(p: *const c_char) -> Result<Option<&'a str>, og_result> {
    opt_text_ascii(p).map(|(s, _)| s)
}

/// [`opt_text`], and whether the text is all ASCII (NULL counts as ASCII).
///
/// Exactly `CStr::to_str`, but ASCII (tenant ids, logins, domains: nearly every string a
/// mail server passes) is recognised a word at a time and only other text goes to the general
/// UTF-8 validator, which costs about a hundred instructions for a short id. Callers that need
/// to know whether the text is ASCII (to convert U-labels) get it for nothing.
#[inline(always)]
pub(crate) fn opt_text_ascii<'a>(p: *const c_char) -> Result<(Option<&'a str>, bool), og_result> {
    if p.is_null() {
        return Ok((None, true));
    }
    // SAFETY: non-NULL, NUL-terminated and unchanged during the call by the API contract.
    text_ascii(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// [`opt_text_ascii`] for text of `len` bytes, or NUL-terminated when `len` is 0; NULL with a
/// length is `OG_RESULT_NULL_PARAMETER`, as for [`bytes`].
#[inline(always)]
pub(crate) fn opt_text_ascii_n<'a>(
    p: *const c_char,
    len: usize,
) -> Result<(Option<&'a str>, bool), og_result> {
    if len == 0 {
        return opt_text_ascii(p);
    }
    text_ascii(self::bytes(p, len)?)
}

/// `bytes` as UTF-8 text, and whether it is all ASCII: the word-at-a-time ASCII test first,
/// the general validator only for other text.
#[inline(always)]
fn text_ascii(bytes: &[u8]) -> Result<(Option<&str>, bool), og_result> {
    if is_ascii(bytes) {
        // SAFETY: ASCII is valid UTF-8.
        Ok((Some(unsafe { core::str::from_utf8_unchecked(bytes) }), true))
    } else {
        utf8_general(bytes).map(|s| (Some(s), false))
    }
}

/// The general UTF-8 check, for text that is not all ASCII.
#[cold]
#[inline(never)]
fn utf8_general(bytes: &[u8]) -> Result<&str, og_result> {
    core::str::from_utf8(bytes).map_err(|_| og_result::InvalidUtf8)
}

/// `<[u8]>::is_ascii`, with strings of up to 16 bytes read as two overlapping words (or
/// half-words) instead of a word loop and a byte tail; longer ones go to the standard loop,
/// out of line.
#[inline(always)]
pub(crate) fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if b.len() > 16 {
        return is_ascii_long(b);
    }
    if let (Some(head), Some(tail)) = (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        return (u64::from_ne_bytes(*head) | u64::from_ne_bytes(*tail)) & HIGH == 0;
    }
    if let (Some(head), Some(tail)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        return (u32::from_ne_bytes(*head) | u32::from_ne_bytes(*tail)) & HIGH as u32 == 0;
    }
    b.iter().fold(0, |acc, &x| acc | x) < 0x80
}

#[inline(never)]
fn is_ascii_long(b: &[u8]) -> bool {
    b.is_ascii()
}

/// A NUL-terminated file name: any bytes (Unix paths need not be UTF-8).
pub(crate) fn path<'a>(p: *const c_char) -> Result<&'a Path, og_result> {
    if p.is_null() {
        return Err(og_result::NullParameter);
    }
    // SAFETY: as in `opt_text`.
    let c = unsafe { CStr::from_ptr(p) };
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(Path::new(std::ffi::OsStr::from_bytes(c.to_bytes())))
    }
    #[cfg(not(unix))]
    {
        c.to_str()
            .map(Path::new)
            .map_err(|_| og_result::InvalidUtf8)
    }
}

/// An optional file name.
pub(crate) fn opt_path<'a>(p: *const c_char) -> Result<Option<&'a Path>, og_result> {
    if p.is_null() {
        Ok(None)
    } else {
        path(p).map(Some)
    }
}

/// `len` input bytes; NULL is accepted only together with `len == 0` (an empty input).
pub(crate) fn bytes<'a>(p: *const c_char, len: usize) -> Result<&'a [u8], og_result> {
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(og_result::NullParameter)
        };
    }
    if len > isize::MAX as usize {
        return Err(invalid_parameter());
    }
    // SAFETY: non-NULL, `len` readable bytes, unchanged during the call (API contract);
    // len <= isize::MAX checked above.
    Ok(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// `len` input bytes given as `uint8_t *`.
pub(crate) fn u8_bytes<'a>(p: *const u8, len: usize) -> Result<&'a [u8], og_result> {
    bytes(p.cast::<c_char>(), len)
}

/// An array of `n` NUL-terminated UTF-8 strings (NULL only when `n` is 0; no element NULL).
pub(crate) fn text_array<'a>(p: *const *const c_char, n: usize) -> Result<Vec<&'a str>, og_result> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(og_result::NullParameter);
    }
    if n > isize::MAX as usize / core::mem::size_of::<*const c_char>() {
        return Err(og_result::InvalidParameter);
    }
    // SAFETY: non-NULL, `n` readable pointers (API contract), size checked above.
    let ptrs = unsafe { core::slice::from_raw_parts(p, n) };
    ptrs.iter().map(|&s| text(s)).collect()
}

/// Hands a boxed object to C.
pub(crate) fn into_handle<T>(b: Box<T>) -> *mut T {
    Box::into_raw(b)
}

/// Takes back and drops an object handed out by [`into_handle`]; NULL is a no-op.
pub(crate) fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: the API contract: `p` came from `into_handle::<T>` and is freed once, with
        // no other call using it concurrently or afterwards.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// The C type of an event callback.
#[allow(non_camel_case_types)]
pub type og_event_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const og_event)>;

/// An event callback with its user data, kept in the engine handle.
#[derive(Clone, Copy)]
pub(crate) struct EventCallback {
    f: unsafe extern "C" fn(*mut c_void, *const og_event),
    userdata: *mut c_void,
}

// SAFETY: the callback and its userdata are called from whichever thread makes an
// event-producing call; `og_engine_set_event_callback` documents that the caller must make
// them safe for that (the pointer itself is never dereferenced by Rust).
unsafe impl Send for EventCallback {}
// SAFETY: as above; Rust only copies the pointer.
unsafe impl Sync for EventCallback {}

impl EventCallback {
    /// A callback, or `None` for a NULL function pointer.
    pub(crate) fn new(f: og_event_callback, userdata: *mut c_void) -> Option<EventCallback> {
        f.map(|f| EventCallback { f, userdata })
    }

    /// Calls the C function with one event.
    pub(crate) fn call(&self, ev: &og_event) {
        // SAFETY: the function pointer was given by C for exactly this signature; `ev`
        // lives for the duration of the call.
        unsafe { (self.f)(self.userdata, ev) }
    }
}

/// The test binary's allocator: the system's, counting the allocations each thread makes, so
/// that tests can hold calls to making none.
#[cfg(test)]
pub(crate) mod counting_alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    struct Counting;

    // SAFETY: every call is passed on unchanged to the system allocator; counting touches a
    // const-initialised thread-local `Cell` only, which neither allocates nor unwinds.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's contract for `alloc`, passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// How many allocations (and reallocations) this thread has made so far.
    pub(crate) fn allocations() -> usize {
        ALLOCATIONS.with(Cell::get)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::*;

    #[test]
    fn is_ascii_agrees_with_the_standard_check() {
        for len in 0..40 {
            let ascii = vec![b'a'; len];
            assert!(is_ascii(&ascii));
            for i in 0..len {
                for high in [0x80, 0xc3, 0xff] {
                    let mut b = ascii.clone();
                    b[i] = high;
                    assert!(!is_ascii(&b), "len {len}, byte {i}");
                }
            }
        }
    }

    #[test]
    fn text_is_checked_as_utf8_whatever_its_length() {
        assert_eq!(opt_text_ascii(core::ptr::null()), Ok((None, true)));
        for len in 1..40 {
            let ascii = "t".repeat(len);
            let c = CString::new(ascii.clone()).expect("no NUL");
            assert_eq!(opt_text_ascii(c.as_ptr()), Ok((Some(ascii.as_str()), true)));
            // Valid UTF-8 that is not ASCII, the non-ASCII character at every position.
            for i in 0..len {
                let s = format!("{}ü{}", &ascii[..i], &ascii[i..]);
                let c = CString::new(s.clone()).expect("no NUL");
                assert_eq!(opt_text_ascii(c.as_ptr()), Ok((Some(s.as_str()), false)));
                assert_eq!(opt_text(c.as_ptr()), Ok(Some(s.as_str())));
            }
            // A bad byte, and a sequence cut short, at every position (the end too).
            for i in 0..=len {
                for bad in [&b"\xff"[..], b"\xc3"] {
                    let mut b = ascii.as_bytes()[..i].to_vec();
                    b.extend_from_slice(bad);
                    b.extend_from_slice(&ascii.as_bytes()[i..]);
                    let c = CString::new(b).expect("no NUL");
                    assert_eq!(opt_text_ascii(c.as_ptr()), Err(og_result::InvalidUtf8));
                    assert_eq!(text(c.as_ptr()), Err(og_result::InvalidUtf8));
                }
            }
        }
    }
}
