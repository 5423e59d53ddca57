//! Columns read straight from their memory, without a Python object per value: Arrow arrays
//! through the Arrow C Data Interface (the PyCapsules of `__arrow_c_array__` and
//! `__arrow_c_stream__`, which pyarrow, pandas, polars and others export) and numpy arrays
//! through `__array_interface__` (the buffer protocol is not in the stable ABI before 3.11).
//!
//! This is the crate's only unsafe code, in the manner of rustls-ffi's one audited file of
//! pointer conversions: every raw pointer is turned into a slice here, after its bounds were
//! checked against the lengths the producer declared, and nothing raw leaves this file.
//!
//! Lifetimes: an imported Arrow array is owned by an [`ArrowChunk`], which calls the
//! producer's `release` when dropped; slices into it borrow the chunk. A struct whose
//! `release` is already NULL (an export imported before: the capsule is "consumed") is
//! refused before anything else in it is read or called.
//!
//! Trust: the declared counts, length and offset of an imported array are checked (exact
//! buffer counts per format, no negative values, sizes computed with checked arithmetic and
//! kept within `isize::MAX`) before any pointer becomes a slice; what the checks cannot see
//! is the producer's promise that each buffer really is as large as the array declares.
//!
//! Arrow buffers are read in place, without a copy and with the GIL released, on the
//! assumption that the producer treats them as immutable while exported (the C Data
//! Interface says producers SHOULD; pyarrow, polars and pandas do). A producer mutating a
//! buffer during a call breaks that assumption and with it Rust's aliasing rules, which no
//! check here could repair (a per-value UTF-8 check would race the same way); text is
//! checked to be UTF-8 (columns.rs) on the bytes as read. Values are read in the platform's
//! byte order, as the C Data Interface shares memory within one process (no byte order is
//! declared; Arrow's little-endian default is for serialized data).
//!
//! numpy arrays are mutable and their memory belongs to Python, so their values are copied
//! into Rust vectors while the GIL is held and the array is referenced; only real
//! `numpy.ndarray`s are read this way, through numpy's own `__array_interface__`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCapsule, PyDict, PyTuple, PyType};

// --- The Arrow C Data Interface (arrow.apache.org/docs/format/CDataInterface.html) --------------

#[repr(C)]
struct ArrowSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut ArrowSchema,
    dictionary: *mut ArrowSchema,
    release: Option<unsafe extern "C" fn(*mut ArrowSchema)>,
    private_data: *mut c_void,
}

#[repr(C)]
struct ArrowArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut ArrowArray,
    dictionary: *mut ArrowArray,
    release: Option<unsafe extern "C" fn(*mut ArrowArray)>,
    private_data: *mut c_void,
}

#[repr(C)]
struct ArrowArrayStream {
    get_schema: Option<unsafe extern "C" fn(*mut ArrowArrayStream, *mut ArrowSchema) -> c_int>,
    get_next: Option<unsafe extern "C" fn(*mut ArrowArrayStream, *mut ArrowArray) -> c_int>,
    get_last_error: Option<unsafe extern "C" fn(*mut ArrowArrayStream) -> *const c_char>,
    release: Option<unsafe extern "C" fn(*mut ArrowArrayStream)>,
    private_data: *mut c_void,
}

/// Moves the struct a capsule points at out of it (the spec's "move": copy, then mark the
/// source released so the capsule's destructor leaves it alone).
///
/// # Safety
/// `p` points at a live `T` whose last field group ends in a `release` callback at the
/// position `mark_released` writes.
unsafe fn take<T>(p: *mut T, mark_released: impl FnOnce(*mut T)) -> T {
    let v = ptr::read(p);
    mark_released(p);
    v
}

/// An owned schema; released on drop.
struct Schema(ArrowSchema);

impl Drop for Schema {
    fn drop(&mut self) {
        if let Some(r) = self.0.release {
            // SAFETY: the producer's release for the struct we own, called once.
            unsafe { r(&mut self.0) }
        }
    }
}

impl Schema {
    fn format(&self) -> String {
        if self.0.format.is_null() {
            return String::new();
        }
        // SAFETY: the spec requires a NUL-terminated format string.
        unsafe { CStr::from_ptr(self.0.format) }
            .to_string_lossy()
            .into_owned()
    }
    fn has_dictionary(&self) -> bool {
        !self.0.dictionary.is_null()
    }
}

/// The value layouts this reader understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `u`, `U`, `vu`: UTF-8 text.
    Utf8,
    /// `z`, `Z`, `vz`: bytes.
    Binary,
    /// `b`: bit-packed booleans.
    Bool,
    /// Integers of 1, 2, 4, 8 bytes, signed or not.
    Int { bytes: u8, signed: bool },
    /// `f`, `g`.
    Float { bytes: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Offsets32,
    Offsets64,
    Views,
    Fixed,
}

fn parse_format(f: &str) -> Option<(Kind, Layout)> {
    use Kind::*;
    Some(match f {
        "u" => (Utf8, Layout::Offsets32),
        "U" => (Utf8, Layout::Offsets64),
        "vu" => (Utf8, Layout::Views),
        "z" => (Binary, Layout::Offsets32),
        "Z" => (Binary, Layout::Offsets64),
        "vz" => (Binary, Layout::Views),
        "b" => (Bool, Layout::Fixed),
        "c" => (
            Int {
                bytes: 1,
                signed: true,
            },
            Layout::Fixed,
        ),
        "C" => (
            Int {
                bytes: 1,
                signed: false,
            },
            Layout::Fixed,
        ),
        "s" => (
            Int {
                bytes: 2,
                signed: true,
            },
            Layout::Fixed,
        ),
        "S" => (
            Int {
                bytes: 2,
                signed: false,
            },
            Layout::Fixed,
        ),
        "i" => (
            Int {
                bytes: 4,
                signed: true,
            },
            Layout::Fixed,
        ),
        "I" => (
            Int {
                bytes: 4,
                signed: false,
            },
            Layout::Fixed,
        ),
        "l" => (
            Int {
                bytes: 8,
                signed: true,
            },
            Layout::Fixed,
        ),
        "L" => (
            Int {
                bytes: 8,
                signed: false,
            },
            Layout::Fixed,
        ),
        "f" => (Float { bytes: 4 }, Layout::Fixed),
        "g" => (Float { bytes: 8 }, Layout::Fixed),
        _ => return None,
    })
}

/// An owned array; released on drop.
struct Array(ArrowArray);

impl Drop for Array {
    fn drop(&mut self) {
        if let Some(r) = self.0.release {
            // SAFETY: the producer's release for the struct we own, called once.
            unsafe { r(&mut self.0) }
        }
    }
}

/// One imported Arrow array (a chunk of a column); released on drop.
pub struct ArrowChunk {
    array: Array,
    kind: Kind,
    layout: Layout,
    /// `array.offset` and `array.length`, checked (non-negative, `offset + length + 1` fits).
    offset: usize,
    len: usize,
    /// The offsets were found monotonic once (`values` checks them the first time only).
    monotonic: std::sync::atomic::AtomicBool,
}

// SAFETY: an Arrow array is immutable while imported and this type only reads it; the
// producer's `release` runs in `Drop`, which the batch code lets happen with the GIL held
// (the chunks are owned outside the GIL-released section).
unsafe impl Send for ArrowChunk {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for ArrowChunk {}

/// Which values are valid (not null).
#[derive(Clone, Copy)]
pub enum Validity<'a> {
    All,
    Bits(&'a [u8], usize),
}

impl Validity<'_> {
    #[inline]
    pub fn is_valid(&self, i: usize) -> bool {
        match self {
            Validity::All => true,
            Validity::Bits(b, off) => {
                let k = i + off;
                b[k / 8] >> (k % 8) & 1 == 1
            }
        }
    }
}

/// Text that is all ASCII: every byte range of it is a `str` (each byte is a character),
/// so a value is sliced from it with a bounds check only.
#[derive(Clone, Copy)]
pub struct Ascii<'a>(&'a str);

impl<'a> Ascii<'a> {
    /// The bytes as text, when they are all ASCII (one pass, no UTF-8 decoding).
    pub fn from_bytes(bytes: &'a [u8]) -> Option<Ascii<'a>> {
        if bytes.is_ascii() {
            // SAFETY: ASCII is UTF-8.
            Some(Ascii(unsafe { std::str::from_utf8_unchecked(bytes) }))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// `text[a..b]`, or `None` when the range is not inside the text.
    #[inline(always)]
    pub fn get(&self, a: usize, b: usize) -> Option<&'a str> {
        if a <= b && b <= self.0.len() {
            // SAFETY: `a..b` is inside the text (checked above), and every byte of ASCII text
            // is a character boundary.
            Some(unsafe { self.0.get_unchecked(a..b) })
        } else {
            None
        }
    }
}

/// A chunk's values as slices.
pub enum Values<'a> {
    Offsets32 {
        offsets: &'a [i32],
        data: &'a [u8],
    },
    Offsets64 {
        offsets: &'a [i64],
        data: &'a [u8],
    },
    Views {
        views: &'a [[u8; 16]],
        data: Vec<&'a [u8]>,
    },
    /// Fixed-width values (or, for `Bool`, the bits with `bit_offset`).
    Fixed {
        bytes: &'a [u8],
        bit_offset: usize,
    },
}

/// The number of `T` items in `len`, as bytes no more than `isize::MAX` (`from_raw_parts`).
fn byte_size<T>(len: usize) -> Option<usize> {
    len.checked_mul(std::mem::size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
}

/// An unsigned integer of `b.len()` (1 to 8) bytes in big- or little-endian order.
#[inline]
pub fn uint_of(b: &[u8], big: bool) -> u64 {
    let mut v = [0u8; 8];
    if big {
        v[8 - b.len()..].copy_from_slice(b);
        u64::from_be_bytes(v)
    } else {
        v[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(v)
    }
}

/// The low `bytes` (1 to 8) bytes of `u` as a signed integer.
pub fn sign_extend(u: u64, bytes: usize) -> i64 {
    let shift = 64 - 8 * bytes as u32;
    ((u << shift) as i64) >> shift
}

fn malformed(what: &str) -> PyErr {
    PyValueError::new_err(format!("Arrow array: {what}"))
}

/// Offsets for the values of an empty offsets-layout chunk (whose buffers may be NULL).
static NO_OFFSETS32: [i32; 1] = [0];
static NO_OFFSETS64: [i64; 1] = [0];

impl ArrowChunk {
    /// Wraps an imported array (released on drop, whatever the outcome), after checking its
    /// declared shape: non-negative length, offset, counts; the exact number of buffers its
    /// layout has; a buffer array when there are buffers; no children or dictionary.
    fn new(kind: Kind, layout: Layout, array: Array) -> PyResult<ArrowChunk> {
        let mut c = ArrowChunk {
            array,
            kind,
            layout,
            offset: 0,
            len: 0,
            monotonic: std::sync::atomic::AtomicBool::new(false),
        };
        let a = &c.array.0;
        let (Ok(offset), Ok(len)) = (usize::try_from(a.offset), usize::try_from(a.length)) else {
            return Err(malformed("negative or too large length or offset"));
        };
        // `offset + length + 1` (the offsets of a text chunk) must not overflow.
        if offset
            .checked_add(len)
            .and_then(|e| e.checked_add(1))
            .is_none()
        {
            return Err(malformed("length and offset overflow"));
        }
        if a.null_count < -1 {
            return Err(malformed("negative null count"));
        }
        if a.n_children != 0 || !a.dictionary.is_null() {
            return Err(malformed("unexpected children or dictionary"));
        }
        let buffers_ok = match layout {
            Layout::Fixed => a.n_buffers == 2,
            Layout::Offsets32 | Layout::Offsets64 => a.n_buffers == 3,
            Layout::Views => a.n_buffers >= 3,
        };
        if !buffers_ok {
            return Err(malformed(&format!(
                "{} buffers for a {layout:?} layout",
                a.n_buffers
            )));
        }
        if a.buffers.is_null() {
            return Err(malformed("no buffer array"));
        }
        c.offset = offset;
        c.len = len;
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Buffer `i` (`i < n_buffers`, checked by `new`; else NULL).
    fn buffer(&self, i: usize) -> *const u8 {
        let a = &self.array.0;
        let n = usize::try_from(a.n_buffers).unwrap_or(0);
        if i >= n || a.buffers.is_null() {
            return ptr::null();
        }
        // SAFETY: `buffers` is non-NULL and has `n_buffers` entries (the spec; `new` checked
        // the count is the layout's), and `i < n_buffers`.
        unsafe { *a.buffers.add(i) as *const u8 }
    }

    /// A slice of `len` items of `T` from buffer `i`, or an error if the buffer is missing,
    /// misaligned or its size would exceed `isize::MAX` bytes.
    fn slice<T>(&self, i: usize, len: usize) -> PyResult<&[T]> {
        if len == 0 {
            return Ok(&[]);
        }
        if byte_size::<T>(len).is_none() {
            return Err(malformed("a buffer's size overflows"));
        }
        let p = self.buffer(i);
        if p.is_null() {
            return Err(malformed("a required buffer is missing"));
        }
        if (p as usize) % std::mem::align_of::<T>() != 0 {
            return Err(malformed("a buffer is misaligned"));
        }
        // SAFETY: `p` is non-NULL and aligned for `T`; `len * size_of::<T>()` was checked to
        // be at most `isize::MAX`; the producer guarantees buffer `i` holds at least the
        // items the array's length and offset imply (`len` is derived from them by the
        // caller, with checked arithmetic), alive and unchanged while the chunk is owned.
        Ok(unsafe { std::slice::from_raw_parts(p as *const T, len) })
    }

    /// The values of a chunk of 64-bit integers as `u64`s, in place (a signed chunk's
    /// values read so: the caller checks they are not negative).
    pub fn u64s(&self) -> PyResult<&[u64]> {
        if !matches!(self.kind, Kind::Int { bytes: 8, .. }) {
            return Err(malformed("not a column of 64-bit integers"));
        }
        if self.len == 0 {
            // Nothing to read: the buffers of an empty array may be NULL.
            return Ok(&[]);
        }
        Ok(&self.slice::<u64>(1, self.offset + self.len)?[self.offset..])
    }

    pub fn validity(&self) -> PyResult<Validity<'_>> {
        if self.len == 0 || self.array.0.null_count == 0 || self.buffer(0).is_null() {
            return Ok(Validity::All);
        }
        // `new` checked `offset + len + 1` fits.
        let bits = self.slice::<u8>(0, (self.offset + self.len).div_ceil(8))?;
        Ok(Validity::Bits(bits, self.offset))
    }

    /// The offsets of values `off..end` (buffer 1) and the data they index (buffer 2),
    /// checked: not negative, monotonic, within the data.
    fn offsets<T: Copy + Into<i64>>(&self, off: usize, end: usize) -> PyResult<(&[T], &[u8])> {
        let bad = || malformed("offsets out of range");
        let o = self.slice::<T>(1, end + 1)?;
        let (first, last) = (o[off].into(), o[end].into());
        if first < 0 || last < first {
            return Err(bad());
        }
        let last = usize::try_from(last).map_err(|_| bad())?;
        let data = self.slice::<u8>(2, last)?;
        let offsets = &o[off..];
        use std::sync::atomic::Ordering::Relaxed;
        if !self.monotonic.load(Relaxed) {
            // One branch-free pass (vectorized), not a branch per value.
            let falls = offsets
                .iter()
                .zip(&offsets[1..])
                .fold(false, |f, (&a, &b)| f | (b.into() < a.into()));
            if falls {
                return Err(bad());
            }
            self.monotonic.store(true, Relaxed);
        }
        Ok((offsets, data))
    }

    /// The values, checked against each other (offsets monotonic and within the data).
    pub fn values(&self) -> PyResult<Values<'_>> {
        let (n, off) = (self.len, self.offset);
        // `new` checked that `off + n + 1` does not overflow.
        let end = off + n;
        let bad = || malformed("offsets out of range");
        if n == 0 {
            // Nothing to read: the buffers of an empty array may be NULL.
            return Ok(match self.layout {
                Layout::Offsets32 => Values::Offsets32 {
                    offsets: &NO_OFFSETS32,
                    data: &[],
                },
                Layout::Offsets64 => Values::Offsets64 {
                    offsets: &NO_OFFSETS64,
                    data: &[],
                },
                Layout::Views => Values::Views {
                    views: &[],
                    data: Vec::new(),
                },
                Layout::Fixed => Values::Fixed {
                    bytes: &[],
                    bit_offset: 0,
                },
            });
        }
        match self.layout {
            Layout::Offsets32 => {
                let (offsets, data) = self.offsets::<i32>(off, end)?;
                Ok(Values::Offsets32 { offsets, data })
            }
            Layout::Offsets64 => {
                let (offsets, data) = self.offsets::<i64>(off, end)?;
                Ok(Values::Offsets64 { offsets, data })
            }
            Layout::Views => {
                let views = &self.slice::<[u8; 16]>(1, end)?[off..];
                // `new` checked `n_buffers >= 3`: validity, views, data buffers, their sizes.
                let nb = usize::try_from(self.array.0.n_buffers).map_err(|_| bad())?;
                let sizes = self.slice::<i64>(nb - 1, nb - 3)?;
                let mut data = Vec::with_capacity(nb - 3);
                for (k, &size) in sizes.iter().enumerate() {
                    let size = usize::try_from(size).map_err(|_| malformed("negative size"))?;
                    data.push(self.slice::<u8>(2 + k, size)?);
                }
                Ok(Values::Views { views, data })
            }
            Layout::Fixed => {
                let width = match self.kind {
                    Kind::Int { bytes, .. } | Kind::Float { bytes } => bytes as usize,
                    _ => 0,
                };
                let len = match self.kind {
                    Kind::Bool => end.div_ceil(8),
                    _ => end
                        .checked_mul(width)
                        .ok_or_else(|| malformed("a buffer's size overflows"))?,
                };
                let bytes = self.slice::<u8>(1, len)?;
                Ok(match self.kind {
                    Kind::Bool => Values::Fixed {
                        bytes,
                        bit_offset: off,
                    },
                    // `off * width <= end * width == len`, checked above.
                    _ => Values::Fixed {
                        bytes: &bytes[off * width..],
                        bit_offset: 0,
                    },
                })
            }
        }
    }
}

impl<'a> Values<'a> {
    /// Value `i` of a text or bytes chunk (`None` when out of range of the data).
    #[inline]
    pub fn bytes(&self, i: usize) -> Option<&'a [u8]> {
        match *self {
            Values::Offsets32 { offsets, data } => {
                data.get(offsets[i] as usize..offsets[i + 1] as usize)
            }
            Values::Offsets64 { offsets, data } => {
                data.get(offsets[i] as usize..offsets[i + 1] as usize)
            }
            Values::Views { views, ref data } => {
                let v: &'a [u8; 16] = &views[i];
                let len = i32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
                let len = usize::try_from(len).ok()?;
                if len <= 12 {
                    return v.get(4..4 + len);
                }
                let buf = i32::from_ne_bytes([v[8], v[9], v[10], v[11]]);
                let at = i32::from_ne_bytes([v[12], v[13], v[14], v[15]]);
                let buf: &'a [u8] = data.get(usize::try_from(buf).ok()?)?;
                let at = usize::try_from(at).ok()?;
                buf.get(at..at.checked_add(len)?)
            }
            Values::Fixed { .. } => None,
        }
    }

    /// The data bytes of an offsets layout covering every value (for a one-pass check).
    pub fn data(&self) -> Option<&'a [u8]> {
        match *self {
            Values::Offsets32 { offsets, data } => {
                data.get(offsets[0] as usize..*offsets.last()? as usize)
            }
            Values::Offsets64 { offsets, data } => {
                data.get(offsets[0] as usize..*offsets.last()? as usize)
            }
            _ => None,
        }
    }
}

fn capsule_struct<T>(cap: &Bound<'_, PyAny>, name: &CStr) -> PyResult<*mut T> {
    let cap = cap.cast::<PyCapsule>().map_err(|_| {
        PyTypeError::new_err(format!("Arrow export: expected a PyCapsule named {name:?}"))
    })?;
    Ok(cap.pointer_checked(Some(name))?.as_ptr() as *mut T)
}

fn consumed() -> PyErr {
    PyValueError::new_err(
        "Arrow export already consumed (its release callback is NULL): export the data again",
    )
}

/// The value layout of a schema, or `None` when this reader does not understand it.
fn layout_of(schema: &Schema) -> Option<(Kind, Layout)> {
    if schema.has_dictionary() || schema.0.n_children != 0 {
        return None;
    }
    parse_format(&schema.format())
}

/// The chunks of an Arrow array or stream export, or `None` when the object exports nothing
/// (or its export call fails) or the column's type is not one this reader understands: the
/// caller then reads it as Python objects. An export that cannot be read (already consumed,
/// malformed, a stream failing part way) is an error: it is not read a second time.
pub fn import_arrow(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<ArrowChunk>>> {
    if let Some(f) = obj.getattr_opt("__arrow_c_array__")? {
        // An exporter may fail (pandas without pyarrow, a type Arrow cannot hold).
        let Ok(pair) = f.call0() else {
            return Ok(None);
        };
        let pair = pair.cast::<PyTuple>()?;
        let (s, a) = (pair.get_item(0)?, pair.get_item(1)?);
        let sp = capsule_struct::<ArrowSchema>(&s, c"arrow_schema")?;
        let ap = capsule_struct::<ArrowArray>(&a, c"arrow_array")?;
        // SAFETY: the capsules (named as the spec says, kept alive by `pair`) point at an
        // ArrowSchema and an ArrowArray; only their `release` fields are read here.
        if unsafe { (*sp).release.is_none() || (*ap).release.is_none() } {
            return Err(consumed());
        }
        // SAFETY: a live struct (release set, checked above), moved out; its source is marked
        // released, so the capsule's destructor leaves it alone.
        let schema = Schema(unsafe { take(sp, |p| (*p).release = None) });
        // SAFETY: as above.
        let array = Array(unsafe { take(ap, |p| (*p).release = None) });
        // A type this reader does not know: the array is released unread.
        return match layout_of(&schema) {
            Some((kind, layout)) => Ok(Some(vec![ArrowChunk::new(kind, layout, array)?])),
            None => Ok(None),
        };
    }
    let Some(f) = obj.getattr_opt("__arrow_c_stream__")? else {
        return Ok(None);
    };
    let Ok(cap) = f.call0() else {
        return Ok(None);
    };
    let p = capsule_struct::<ArrowArrayStream>(&cap, c"arrow_array_stream")?;
    // SAFETY: the capsule (named as the spec says, kept alive by `cap`) points at an
    // ArrowArrayStream; only its `release` field is read here.
    if unsafe { (*p).release.is_none() } {
        return Err(consumed());
    }
    // SAFETY: a live stream (release set, checked above), moved out; its source is marked
    // released.
    let mut stream = Stream(unsafe { take(p, |p| (*p).release = None) });
    let mut schema = empty_schema();
    stream.check(|s| {
        // SAFETY: `get_schema` of a live stream, writing into a struct we own.
        status(unsafe { (s.0.get_schema.ok_or(-1)?)(&mut s.0, &mut schema) })
    })?;
    if schema.release.is_none() {
        return Err(PyValueError::new_err("Arrow stream: a released schema"));
    }
    let schema = Schema(schema);
    // Every chunk has the stream's type: an unknown one is found before any chunk is read
    // (nothing is then read twice).
    let Some((kind, layout)) = layout_of(&schema) else {
        return Ok(None);
    };
    let mut chunks = Vec::new();
    loop {
        let mut a = empty_array();
        stream.check(|s| {
            // SAFETY: `get_next` of a live stream, writing into a struct we own.
            status(unsafe { (s.0.get_next.ok_or(-1)?)(&mut s.0, &mut a) })
        })?;
        if a.release.is_none() {
            break;
        }
        chunks.push(ArrowChunk::new(kind, layout, Array(a))?);
    }
    Ok(Some(chunks))
}

/// A stream callback's return code: 0 or an errno.
fn status(code: c_int) -> Result<(), c_int> {
    if code == 0 {
        Ok(())
    } else {
        Err(code)
    }
}

struct Stream(ArrowArrayStream);

impl Stream {
    fn check(&mut self, f: impl FnOnce(&mut Stream) -> Result<(), c_int>) -> PyResult<()> {
        f(self).map_err(|code| {
            let msg = match self.0.get_last_error {
                // SAFETY: `get_last_error` of a live stream; NULL or a NUL-terminated text.
                Some(g) => unsafe {
                    let p = g(&mut self.0);
                    if p.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(p).to_string_lossy().into_owned()
                    }
                },
                None => String::new(),
            };
            PyValueError::new_err(format!("Arrow stream error {code}: {msg}"))
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(r) = self.0.release {
            // SAFETY: the producer's release for the stream we own, called once.
            unsafe { r(&mut self.0) }
        }
    }
}

fn empty_schema() -> ArrowSchema {
    ArrowSchema {
        format: ptr::null(),
        name: ptr::null(),
        metadata: ptr::null(),
        flags: 0,
        n_children: 0,
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: None,
        private_data: ptr::null_mut(),
    }
}

fn empty_array() -> ArrowArray {
    ArrowArray {
        length: 0,
        null_count: 0,
        offset: 0,
        n_buffers: 0,
        n_children: 0,
        buffers: ptr::null_mut(),
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: None,
        private_data: ptr::null_mut(),
    }
}

// --- numpy's __array_interface__ ----------------------------------------------------------------

/// A one-dimensional numpy array's values, copied out while the GIL is held.
pub enum NdValues {
    Ints(Vec<i64>),
    UInts(Vec<u64>),
    Floats(Vec<f64>),
    Bools(Vec<bool>),
    /// `S` (bytes) or `U` (text) items as UTF-8 (for `S`, the raw bytes) in one buffer;
    /// `ends[i]` is where item `i` ends.
    Strings {
        text: bool,
        data: Vec<u8>,
        ends: Vec<usize>,
    },
}

/// numpy's `ndarray` type and its own `__array_interface__` descriptor, looked up once
/// (`None`: numpy cannot be imported).
static NDARRAY: PyOnceLock<Option<(Py<PyType>, Py<PyAny>)>> = PyOnceLock::new();

fn ndarray_interface(py: Python<'_>) -> Option<&(Py<PyType>, Py<PyAny>)> {
    NDARRAY
        .get_or_init(py, || {
            let ty = py.import("numpy").ok()?.getattr("ndarray").ok()?;
            let ty = ty.cast_into::<PyType>().ok()?;
            let descr = ty
                .getattr("__dict__")
                .ok()?
                .get_item("__array_interface__")
                .ok()?;
            Some((ty.unbind(), descr.unbind()))
        })
        .as_ref()
}

/// `typestr` (`<i8`, `|b1`, `>U10`...) as byte order, kind and item size in bytes; `None`
/// for anything not ASCII or a size that does not fit.
fn parse_typestr(typestr: &str) -> Option<(u8, u8, usize)> {
    let b = typestr.as_bytes();
    if !typestr.is_ascii() || b.len() < 3 {
        return None;
    }
    let (order, kind) = (b[0], b[1]);
    let count = typestr[2..].parse::<usize>().ok()?;
    // The count is of bytes, but of 4-byte characters for `U`.
    let size = if kind == b'U' {
        count.checked_mul(4)?
    } else {
        count
    };
    Some((order, kind, size))
}

/// Room for `n` more items, or `MemoryError` (instead of aborting).
fn reserve<T>(v: &mut Vec<T>, n: usize) -> PyResult<()> {
    v.try_reserve_exact(n)
        .map_err(|_| PyMemoryError::new_err(format!("{n} values do not fit in memory")))
}

/// A vector of `n` items made by `f`, refused with `MemoryError` when it cannot be allocated
/// (instead of aborting).
fn collect_n<T>(n: usize, f: impl FnMut(usize) -> T) -> PyResult<Vec<T>> {
    let mut v = Vec::new();
    reserve(&mut v, n)?;
    v.extend((0..n).map(f));
    Ok(v)
}

/// `n` `S` or `U` items of about `chars` bytes each as [`NdValues::Strings`], each appended
/// to the one buffer by `push(i, data)`.
fn strings(
    n: usize,
    text: bool,
    chars: usize,
    mut push: impl FnMut(usize, &mut Vec<u8>) -> PyResult<()>,
) -> PyResult<NdValues> {
    let mut data = Vec::new();
    let mut ends = Vec::new();
    reserve(&mut data, n.saturating_mul(chars.min(64)))?;
    reserve(&mut ends, n)?;
    for i in 0..n {
        push(i, &mut data)?;
        ends.push(data.len());
    }
    Ok(NdValues::Strings { text, data, ends })
}

/// Appends a numpy `U` item in native byte order to `data` if it is ASCII text (one byte
/// per character; trailing NULs are padding), in two simple passes the compiler vectorizes:
/// the length, then the characters copied and checked together. `false` (nothing appended)
/// when a character is not ASCII.
#[inline]
fn ascii_ucs4(s: &[u8], data: &mut Vec<u8>) -> bool {
    let unit = |c: &[u8]| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    let mut len = s.len() / 4;
    while len > 0 && unit(&s[4 * len - 4..4 * len]) == 0 {
        len -= 1;
    }
    let start = data.len();
    data.resize(start + len, 0);
    let mut high = 0u32;
    for (d, c) in data[start..].iter_mut().zip(s.chunks_exact(4)) {
        let u = unit(c);
        high |= u;
        *d = u as u8;
    }
    if high >= 0x80 {
        data.truncate(start);
        return false;
    }
    true
}

/// Reads a one-dimensional `numpy.ndarray` (or an instance of a subclass, through numpy's
/// own `__array_interface__`, not an override) of a dtype this reader understands; `None`
/// for anything else (other objects, object arrays, masked arrays, datetimes...), which the
/// caller reads as Python objects.
pub fn read_ndarray(obj: &Bound<'_, PyAny>) -> PyResult<Option<NdValues>> {
    let py = obj.py();
    let Some((ndarray, descr)) = ndarray_interface(py) else {
        return Ok(None);
    };
    if !obj.is_instance(ndarray.bind(py))? {
        return Ok(None);
    }
    if obj.hasattr("mask")? {
        return Ok(None); // numpy.ma: the interface would hide the mask
    }
    let Ok(ai) = descr
        .bind(py)
        .call_method1("__get__", (obj, ndarray.bind(py)))
    else {
        return Ok(None);
    };
    let Ok(ai) = ai.cast::<PyDict>() else {
        return Ok(None);
    };
    let get = |k: &str| ai.get_item(k).ok().flatten();
    // `data` is read last: nothing (no Python code) runs between it and the copy.
    let (Some(shape), Some(typestr)) = (get("shape"), get("typestr")) else {
        return Ok(None);
    };
    let Ok((n,)) = shape.extract::<(usize,)>() else {
        return Ok(None);
    };
    let Ok(typestr) = typestr.extract::<String>() else {
        return Ok(None);
    };
    let Some((order, kind, size)) = parse_typestr(&typestr) else {
        return Ok(None);
    };
    let big = order == b'>' || (order == b'=' && cfg!(target_endian = "big"));
    let stride = match get("strides").filter(|s| !s.is_none()) {
        None => match isize::try_from(size) {
            Ok(s) => s,
            Err(_) => return Ok(None),
        },
        Some(s) => match s.extract::<(isize,)>() {
            Ok((s,)) => s,
            Err(_) => return Ok(None),
        },
    };
    let Some(data) = get("data") else {
        return Ok(None);
    };
    let Ok((addr, _readonly)) = data.extract::<(usize, bool)>() else {
        return Ok(None);
    };
    if n > 0 && addr == 0 {
        return Ok(None);
    }
    // SAFETY: `obj` is a numpy.ndarray and the interface is numpy's own (not an override),
    // so numpy guarantees item `i` of the array lives at `addr + i * stride` and is `size`
    // bytes long for `i < n` (so the offsets fit in `isize`); `obj` (and so the memory) is
    // alive for this call, and no Python code runs while the items are read (GIL held).
    let item = |i: usize| -> &[u8] {
        unsafe { std::slice::from_raw_parts((addr as *const u8).offset(i as isize * stride), size) }
    };
    let word = |i: usize| uint_of(item(i), big);
    // The common case, 8-byte items one after another in native order: each read as a word
    // (the general path reads them a byte string at a time).
    let native = big == cfg!(target_endian = "big") && stride == 8 && size == 8;
    let word8 = |i: usize| u64::from_ne_bytes(item(i).try_into().unwrap_or([0; 8]));
    Ok(Some(match (kind, size) {
        (b'b', 1) => NdValues::Bools(collect_n(n, |i| item(i)[0] != 0)?),
        (b'i', 8) if native => NdValues::Ints(collect_n(n, |i| word8(i) as i64)?),
        (b'u', 8) if native => NdValues::UInts(collect_n(n, word8)?),
        (b'f', 8) if native => NdValues::Floats(collect_n(n, |i| f64::from_bits(word8(i)))?),
        (b'i', 1 | 2 | 4 | 8) => NdValues::Ints(collect_n(n, |i| sign_extend(word(i), size))?),
        (b'u', 1 | 2 | 4 | 8) => NdValues::UInts(collect_n(n, word)?),
        (b'f', 8) => NdValues::Floats(collect_n(n, |i| f64::from_bits(word(i)))?),
        (b'f', 4) => NdValues::Floats(collect_n(n, |i| f32::from_bits(word(i) as u32) as f64)?),
        (b'S', _) => strings(n, false, size, |i, data| {
            let s = item(i);
            let len = s.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
            data.extend_from_slice(&s[..len]);
            Ok(())
        })?,
        (b'U', _) => strings(n, true, size / 4, |i, data| {
            let s = item(i);
            if big == cfg!(target_endian = "big") && ascii_ucs4(s, data) {
                return Ok(());
            }
            let units = s.chunks_exact(4).map(|c| uint_of(c, big) as u32);
            let len = units.clone().rposition(|u| u != 0).map_or(0, |p| p + 1);
            for u in units.take(len) {
                match char::from_u32(u) {
                    Some(c) if c.is_ascii() => data.push(c as u8),
                    Some(c) => data.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    None => {
                        return Err(PyValueError::new_err(format!(
                            "[{i}]: not a Unicode character (U+{u:X})"
                        )))
                    }
                }
            }
            Ok(())
        })?,
        _ => return Ok(None),
    }))
}
