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
//! producer's `release` when dropped; slices into it borrow the chunk. Arrow arrays are
//! immutable by the format's contract, so they are read in place (with the GIL released).
//! numpy arrays are mutable and their memory belongs to Python, so their values are copied
//! into Rust vectors while the GIL is held and the array is referenced.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyTuple};

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

/// One imported Arrow array (a chunk of a column); released on drop.
pub struct ArrowChunk {
    array: ArrowArray,
    kind: Kind,
    layout: Layout,
}

// SAFETY: an Arrow array is immutable while imported and this type only reads it; the
// producer's `release` runs in `Drop`, which the batch code lets happen with the GIL held
// (the chunks are owned outside the GIL-released section).
unsafe impl Send for ArrowChunk {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for ArrowChunk {}

impl Drop for ArrowChunk {
    fn drop(&mut self) {
        if let Some(r) = self.array.release {
            // SAFETY: the producer's release for the struct we own, called once.
            unsafe { r(&mut self.array) }
        }
    }
}

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

impl ArrowChunk {
    pub fn len(&self) -> usize {
        self.array.length as usize
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn buffer(&self, i: usize) -> *const u8 {
        if i >= self.array.n_buffers as usize || self.array.buffers.is_null() {
            return ptr::null();
        }
        // SAFETY: `buffers` has `n_buffers` entries (checked above).
        unsafe { *self.array.buffers.add(i) as *const u8 }
    }

    /// A slice of `len` items of `T` from buffer `i`, or an error if the buffer is missing.
    fn slice<T>(&self, i: usize, len: usize) -> PyResult<&[T]> {
        if len == 0 {
            return Ok(&[]);
        }
        let p = self.buffer(i);
        if p.is_null() {
            return Err(PyValueError::new_err(
                "Arrow array: a required buffer is missing",
            ));
        }
        if (p as usize) % std::mem::align_of::<T>() != 0 {
            return Err(PyValueError::new_err("Arrow array: a buffer is misaligned"));
        }
        // SAFETY: the producer guarantees buffer `i` holds at least the items the array's
        // length and offset imply (`len` is derived from them by the caller).
        Ok(unsafe { std::slice::from_raw_parts(p as *const T, len) })
    }

    pub fn validity(&self) -> PyResult<Validity<'_>> {
        if self.array.null_count == 0 || self.buffer(0).is_null() {
            return Ok(Validity::All);
        }
        let off = self.array.offset as usize;
        let bits = self.slice::<u8>(0, (off + self.len()).div_ceil(8))?;
        Ok(Validity::Bits(bits, off))
    }

    /// The values, checked against each other (offsets monotonic and within the data).
    pub fn values(&self) -> PyResult<Values<'_>> {
        let n = self.len();
        let off = self.array.offset as usize;
        let bad = || PyValueError::new_err("Arrow array: offsets out of range");
        match self.layout {
            Layout::Offsets32 | Layout::Offsets64 => {
                let (first, last, offsets) = match self.layout {
                    Layout::Offsets32 => {
                        let o = self.slice::<i32>(1, off + n + 1)?;
                        (o[off] as i64, o[off + n] as i64, Ok(&o[off..]))
                    }
                    _ => {
                        let o = self.slice::<i64>(1, off + n + 1)?;
                        (o[off], o[off + n], Err(&o[off..]))
                    }
                };
                if first < 0 || last < first {
                    return Err(bad());
                }
                let data = self.slice::<u8>(2, last as usize)?;
                Ok(match offsets {
                    Ok(offsets) => {
                        if offsets.windows(2).any(|w| w[1] < w[0]) {
                            return Err(bad());
                        }
                        Values::Offsets32 { offsets, data }
                    }
                    Err(offsets) => {
                        if offsets.windows(2).any(|w| w[1] < w[0]) {
                            return Err(bad());
                        }
                        Values::Offsets64 { offsets, data }
                    }
                })
            }
            Layout::Views => {
                let views = &self.slice::<[u8; 16]>(1, off + n)?[off..];
                let nb = self.array.n_buffers as usize;
                if nb < 3 {
                    return Err(bad());
                }
                let sizes = self.slice::<i64>(nb - 1, nb - 3)?;
                let mut data = Vec::with_capacity(nb - 3);
                for (k, &size) in sizes.iter().enumerate() {
                    data.push(self.slice::<u8>(2 + k, size.max(0) as usize)?);
                }
                Ok(Values::Views { views, data })
            }
            Layout::Fixed => {
                let len = match self.kind {
                    Kind::Bool => (off + n).div_ceil(8),
                    Kind::Int { bytes, .. } | Kind::Float { bytes } => (off + n) * bytes as usize,
                    _ => return Err(bad()),
                };
                let bytes = self.slice::<u8>(1, len)?;
                Ok(match self.kind {
                    Kind::Bool => Values::Fixed {
                        bytes,
                        bit_offset: off,
                    },
                    Kind::Int { bytes: w, .. } | Kind::Float { bytes: w } => Values::Fixed {
                        bytes: &bytes[off * w as usize..],
                        bit_offset: 0,
                    },
                    _ => return Err(bad()),
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
                let len = i32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                let len = usize::try_from(len).ok()?;
                if len <= 12 {
                    return v.get(4..4 + len);
                }
                let buf = i32::from_le_bytes([v[8], v[9], v[10], v[11]]);
                let at = i32::from_le_bytes([v[12], v[13], v[14], v[15]]);
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

fn import_schema(cap: &Bound<'_, PyAny>) -> PyResult<Schema> {
    let p = capsule_struct::<ArrowSchema>(cap, c"arrow_schema")?;
    // SAFETY: the capsule holds a live ArrowSchema; we move it out and mark it released.
    Ok(Schema(unsafe { take(p, |p| (*p).release = None) }))
}

/// The chunks of an Arrow array or stream export, or `None` when the column's type is not
/// one this reader understands (the caller then reads it as Python objects).
pub fn import_arrow(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<ArrowChunk>>> {
    if let Some(f) = obj.getattr_opt("__arrow_c_array__")? {
        let pair = f.call0()?;
        let pair = pair.cast::<PyTuple>()?;
        let schema = import_schema(&pair.get_item(0)?)?;
        let p = capsule_struct::<ArrowArray>(&pair.get_item(1)?, c"arrow_array")?;
        // SAFETY: the capsule holds a live ArrowArray; we move it out and mark it released.
        let array = unsafe { take(p, |p| (*p).release = None) };
        return Ok(chunk(&schema, array).map(|c| vec![c]));
    }
    let Some(f) = obj.getattr_opt("__arrow_c_stream__")? else {
        return Ok(None);
    };
    let cap = f.call0()?;
    let p = capsule_struct::<ArrowArrayStream>(&cap, c"arrow_array_stream")?;
    // SAFETY: the capsule holds a live stream; we move it out and mark it released.
    let mut stream = Stream(unsafe { take(p, |p| (*p).release = None) });
    let mut schema = empty_schema();
    stream.check(|s| {
        // SAFETY: `get_schema` of a live stream, writing into a struct we own.
        unsafe { (s.0.get_schema.ok_or(-1)?)(&mut s.0, &mut schema) }.into_result()
    })?;
    let schema = Schema(schema);
    let mut chunks = Vec::new();
    loop {
        let mut a = empty_array();
        stream.check(|s| {
            // SAFETY: `get_next` of a live stream, writing into a struct we own.
            unsafe { (s.0.get_next.ok_or(-1)?)(&mut s.0, &mut a) }.into_result()
        })?;
        if a.release.is_none() {
            break;
        }
        match chunk(&schema, a) {
            Some(c) => chunks.push(c),
            None => return Ok(None),
        }
    }
    Ok(Some(chunks))
}

trait IntoResult {
    fn into_result(self) -> Result<(), c_int>;
}
impl IntoResult for c_int {
    fn into_result(self) -> Result<(), c_int> {
        if self == 0 {
            Ok(())
        } else {
            Err(self)
        }
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

/// Wraps an imported array (which is released either way), if its type is understood.
fn chunk(schema: &Schema, array: ArrowArray) -> Option<ArrowChunk> {
    let parsed = if schema.has_dictionary() {
        None
    } else {
        parse_format(&schema.format())
    };
    let sane = array.length >= 0 && array.offset >= 0;
    match parsed {
        Some((kind, layout)) if sane => Some(ArrowChunk {
            array,
            kind,
            layout,
        }),
        _ => {
            drop(ArrowChunk {
                array,
                kind: Kind::Bool,
                layout: Layout::Fixed,
            });
            None
        }
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

/// Reads a numpy array (or anything with a one-dimensional `__array_interface__`) of a dtype
/// this reader understands; `None` for anything else (object arrays, masked arrays,
/// datetimes...), which the caller reads as Python objects.
pub fn read_ndarray(obj: &Bound<'_, PyAny>) -> PyResult<Option<NdValues>> {
    if obj.hasattr("mask")? {
        return Ok(None); // numpy.ma: the interface would hide the mask
    }
    let Some(ai) = obj.getattr_opt("__array_interface__")? else {
        return Ok(None);
    };
    let Ok(ai) = ai.cast::<PyDict>() else {
        return Ok(None);
    };
    let get = |k: &str| ai.get_item(k).ok().flatten();
    let (Some(shape), Some(typestr), Some(data)) = (get("shape"), get("typestr"), get("data"))
    else {
        return Ok(None);
    };
    let Ok((n,)) = shape.extract::<(usize,)>() else {
        return Ok(None);
    };
    let Ok((addr, _readonly)) = data.extract::<(usize, bool)>() else {
        return Ok(None);
    };
    let typestr: String = typestr.extract()?;
    let b = typestr.as_bytes();
    if b.len() < 3 {
        return Ok(None);
    }
    let (order, kind) = (b[0], b[1]);
    let Ok(count) = typestr[2..].parse::<usize>() else {
        return Ok(None);
    };
    // The count is of bytes, but of 4-byte characters for `U`.
    let size = if kind == b'U' { count * 4 } else { count };
    let big = order == b'>' || (order == b'=' && cfg!(target_endian = "big"));
    let stride = match get("strides").filter(|s| !s.is_none()) {
        None => size as isize,
        Some(s) => match s.extract::<(isize,)>() {
            Ok((s,)) => s,
            Err(_) => return Ok(None),
        },
    };
    if n > 0 && addr == 0 {
        return Ok(None);
    }
    // SAFETY: numpy guarantees item `i` of the array lives at `addr + i * stride` and is
    // `size` bytes long for `i < n`; `obj` (and so the memory) is alive for this call.
    let item = |i: usize| -> &[u8] {
        unsafe { std::slice::from_raw_parts((addr as *const u8).offset(i as isize * stride), size) }
    };
    let word = |i: usize| -> u64 {
        let s = item(i);
        let mut v = [0u8; 8];
        if big {
            v[8 - size..].copy_from_slice(s);
            u64::from_be_bytes(v)
        } else {
            v[..size].copy_from_slice(s);
            u64::from_le_bytes(v)
        }
    };
    Ok(Some(match (kind, size) {
        (b'b', 1) => NdValues::Bools((0..n).map(|i| item(i)[0] != 0).collect()),
        (b'i', 1 | 2 | 4 | 8) => {
            let shift = 64 - 8 * size as u32;
            NdValues::Ints(
                (0..n)
                    .map(|i| ((word(i) << shift) as i64) >> shift)
                    .collect(),
            )
        }
        (b'u', 1 | 2 | 4 | 8) => NdValues::UInts((0..n).map(word).collect()),
        (b'f', 8) => NdValues::Floats((0..n).map(|i| f64::from_bits(word(i))).collect()),
        (b'f', 4) => NdValues::Floats(
            (0..n)
                .map(|i| f32::from_bits(word(i) as u32) as f64)
                .collect(),
        ),
        (b'S', _) => {
            let mut data = Vec::with_capacity(n * size.min(64));
            let mut ends = Vec::with_capacity(n);
            for i in 0..n {
                let s = item(i);
                let len = s.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                data.extend_from_slice(&s[..len]);
                ends.push(data.len());
            }
            NdValues::Strings {
                text: false,
                data,
                ends,
            }
        }
        (b'U', _) => {
            let mut data = Vec::with_capacity(n * (size / 4).min(64));
            let mut ends = Vec::with_capacity(n);
            for i in 0..n {
                let s = item(i);
                let units = s.chunks_exact(4).map(|c| {
                    let c = [c[0], c[1], c[2], c[3]];
                    if big {
                        u32::from_be_bytes(c)
                    } else {
                        u32::from_le_bytes(c)
                    }
                });
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
                ends.push(data.len());
            }
            NdValues::Strings {
                text: true,
                data,
                ends,
            }
        }
        _ => return Ok(None),
    }))
}
