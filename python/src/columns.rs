//! The columns of a batch (`Engine.check_batch`, `Engine.replay`), read into Rust without a
//! Python object per value wherever the input allows it:
//! - Arrow arrays and streams (pyarrow, pandas with Arrow-backed or `str` dtypes, polars...)
//!   through the Arrow C Data Interface, read in place (`buffers.rs`);
//! - numpy arrays of numbers, bools and fixed-width `S`/`U` strings, copied in one pass;
//! - lists of exact `str`, each value's UTF-8 form copied into one buffer in one loop, and
//!   lists of exact ints read in one loop of C calls;
//! - anything else (lists of mixed types, `None`s, datetimes, `ipaddress` objects...) one
//!   value at a time, with the scalar call's conversions.
//!
//! Text stays as bytes in its column until the GIL is released; there the messages are built
//! (UTF-8 checked, IDNA applied to non-ASCII values, IP addresses parsed) and lent to the core.
//! Every value means what it means in a scalar call: a column only changes how it is read.

use std::net::IpAddr;

use outguard::{Message, Verdict};
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyList, PyString, PyTuple};

use crate::buffers::{self, ArrowChunk, Ascii, Kind, NdValues, Validity, Values};
use crate::convert;
use crate::fastcall;

/// The error for value `i` of column `name`.
fn at(name: &str, i: usize, msg: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{name}[{i}]: {msg}"))
}

/// Re-labels an error of a scalar conversion with the column and index.
fn relabel(py: Python<'_>, name: &str, i: usize, e: PyErr) -> PyErr {
    let msg = e.value(py).str().map(|s| s.to_string()).unwrap_or_default();
    let msg = msg.strip_prefix(&format!("{name}: ")).unwrap_or(&msg);
    if e.is_instance_of::<PyTypeError>(py) {
        PyTypeError::new_err(format!("{name}[{i}]: {msg}"))
    } else {
        at(name, i, msg)
    }
}

fn is_one_value(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyString>()
        || obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyBool>()
        || obj.is_instance_of::<PyFloat>()
        || obj.extract::<i64>().is_ok()
}

fn not_a_column(obj: &Bound<'_, PyAny>, what: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "{what}: expected a sequence (list, numpy array, pandas or pyarrow column) or one \
         value, got {}",
        obj.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    ))
}

/// A column's values as Python objects (the general path): `to_pylist()` (pyarrow types
/// this crate does not read directly), `tolist()` (numpy, pandas) or iteration.
fn objects<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let seq = if obj.hasattr("to_pylist")? {
        obj.call_method0("to_pylist")?
    } else if obj.hasattr("tolist")? {
        obj.call_method0("tolist")?
    } else {
        obj.clone()
    };
    let iter = seq.try_iter().map_err(|_| not_a_column(obj, what))?;
    iter.collect()
}

/// A column in one of the forms read without Python objects.
enum Fast {
    Arrow(Vec<ArrowChunk>),
    Nd(NdValues),
}

fn fast(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<Fast>> {
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return Ok(None);
    }
    let py = obj.py();
    let label = |e: PyErr| PyValueError::new_err(format!("{what}{}", e.value(py)));
    // An exporter may fail (pandas without pyarrow, a type Arrow cannot hold), or export a
    // type the reader does not know: the general path then reads the column, and reports its
    // problems value by value. An export that was made but cannot be read (consumed before,
    // malformed) is refused: it may not be read again.
    if obj.hasattr("__arrow_c_array__")? || obj.hasattr("__arrow_c_stream__")? {
        let arrow_label = |e: PyErr| PyValueError::new_err(format!("{what}: {}", e.value(py)));
        if let Some(chunks) = buffers::import_arrow(obj).map_err(arrow_label)? {
            return Ok(Some(Fast::Arrow(chunks)));
        }
    }
    if let Some(v) = buffers::read_ndarray(obj).map_err(label)? {
        return Ok(Some(Fast::Nd(v)));
    }
    if !obj.hasattr("__array_interface__")? && obj.hasattr("__array__")? {
        if let Ok(arr) = obj.call_method0("__array__") {
            if let Some(v) = buffers::read_ndarray(&arr).map_err(label)? {
                return Ok(Some(Fast::Nd(v)));
            }
        }
    }
    Ok(None)
}

// --- Text columns -------------------------------------------------------------------------------

/// A text column: its values as bytes, `None` for missing ones.
pub enum Text {
    Absent,
    /// One value for every message.
    One(Option<Vec<u8>>),
    /// Arrow chunks, read in place. `text`: `str` values (else `bytes`).
    Arrow {
        chunks: Vec<ArrowChunk>,
        text: bool,
    },
    /// Values one after another in `data`; value `i` ends at `ends[i]`; `missing` values are
    /// `None`. `raw_text`: `str` values not converted yet as the scalar call converts them
    /// (false for bytes, and for values the scalar conversion made).
    Owned {
        data: Vec<u8>,
        ends: Vec<usize>,
        missing: Vec<bool>,
        raw_text: bool,
    },
}

impl Text {
    pub fn len(&self) -> Option<usize> {
        match self {
            Text::Absent | Text::One(_) => None,
            Text::Arrow { chunks, .. } => Some(chunks.iter().map(ArrowChunk::len).sum()),
            Text::Owned { ends, .. } => Some(ends.len()),
        }
    }

    /// Whether values are `str` that were not converted yet (IDNA may apply).
    fn raw_text(&self) -> bool {
        match self {
            Text::Arrow { text, .. } => *text,
            Text::Owned { raw_text, .. } => *raw_text,
            _ => false,
        }
    }

    /// Calls `f(i, value)` for every message `i < n` (nothing for an absent column).
    pub fn each<'a>(
        &'a self,
        name: &str,
        n: usize,
        mut f: impl FnMut(usize, Option<&'a [u8]>) -> PyResult<()>,
    ) -> PyResult<()> {
        match self {
            Text::Absent => Ok(()),
            Text::One(v) => (0..n).try_for_each(|i| f(i, v.as_deref())),
            Text::Owned {
                data,
                ends,
                missing,
                ..
            } => PartView::owned(data, ends, missing).each(name, &mut f),
            Text::Arrow { chunks, .. } => {
                // A chunk at a time, each checked as it is reached.
                let mut start = 0;
                for c in chunks {
                    PartView::arrow(start, c)?.each(name, &mut f)?;
                    start += c.len();
                }
                Ok(())
            }
        }
    }

    /// Values that need converting before the core sees them, with their conversions:
    /// non-ASCII `str` values of fields the scalar call converts with IDNA.
    fn conversions(
        &self,
        name: &str,
        n: usize,
        convert: fn(&str) -> Option<String>,
    ) -> PyResult<Vec<(usize, Vec<u8>)>> {
        if !self.raw_text() {
            return Ok(Vec::new());
        }
        if let Text::Owned { data, .. } = self {
            // The common case: all of it ASCII, checked in one pass.
            if data.is_ascii() {
                return Ok(Vec::new());
            }
        }
        if let Text::Arrow { chunks, .. } = self {
            // The common case: all of it ASCII, checked a buffer at a time.
            let ascii = chunks.iter().all(|c| {
                c.values()
                    .ok()
                    .and_then(|v| v.data().map(<[u8]>::is_ascii))
                    .unwrap_or(false)
            });
            if ascii {
                return Ok(Vec::new());
            }
        }
        let mut out = Vec::new();
        self.each(name, n, |i, v| {
            if let Some(b) = v.filter(|b| !b.is_ascii()) {
                let s = utf8(name, i, b)?;
                if let Some(c) = convert(s) {
                    out.push((i, c.into_bytes()));
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Reads a text column. `convert` is the scalar call's conversion of one Python value
/// (used by the general path; its result is final).
pub fn text<'py>(
    obj: Option<&Bound<'py, PyAny>>,
    what: &str,
    convert: impl Fn(&Bound<'py, PyAny>) -> PyResult<Option<Vec<u8>>>,
) -> PyResult<Text> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Text::Absent);
    };
    let py = obj.py();
    if is_one_value(obj) {
        return Ok(Text::One(
            convert(obj).map_err(|e| relabel(py, what, 0, e))?,
        ));
    }
    match fast(obj, what)? {
        Some(Fast::Arrow(chunks)) => {
            let kinds: Vec<Kind> = chunks.iter().map(ArrowChunk::kind).collect();
            if kinds.iter().all(|k| *k == Kind::Utf8) || kinds.iter().all(|k| *k == Kind::Binary) {
                let text = kinds.first() != Some(&Kind::Binary);
                return Ok(Text::Arrow { chunks, text });
            }
            return Err(PyTypeError::new_err(format!(
                "{what}: expected an Arrow string or binary column, got {kinds:?}"
            )));
        }
        Some(Fast::Nd(NdValues::Strings { text, data, ends })) => {
            return Ok(Text::Owned {
                data,
                ends,
                missing: Vec::new(),
                raw_text: text,
            });
        }
        Some(Fast::Nd(_)) => {
            return Err(PyTypeError::new_err(format!(
                "{what}: expected strings, got a numeric array (dtype {})",
                obj.getattr("dtype")
                    .and_then(|d| d.str().map(|s| s.to_string()))
                    .unwrap_or_default()
            )));
        }
        None => {}
    }
    if let Ok(list) = obj.cast::<PyList>() {
        if let Some(t) = joined(list)? {
            return Ok(t);
        }
    }
    let values = objects(obj, what)?;
    let mut data = Vec::new();
    let mut ends = Vec::with_capacity(values.len());
    let mut missing = vec![false; values.len()];
    for (i, o) in values.iter().enumerate() {
        match convert(o).map_err(|e| relabel(py, what, i, e))? {
            Some(v) => data.extend_from_slice(&v),
            None => missing[i] = true,
        }
        ends.push(data.len());
    }
    Ok(Text::Owned {
        data,
        ends,
        missing,
        raw_text: false,
    })
}

/// A list of `str` as one UTF-8 buffer, without a temporary per value: each value's own
/// UTF-8 form copied in one loop (3.10+), or one `"\0".join(...)` (3.9). `None` when the list
/// holds anything but `str` (exactly, in the loop), or a value with a NUL in it, or one that
/// is not UTF-8 (the general path takes those, and names a bad value).
fn joined(list: &Bound<'_, PyList>) -> PyResult<Option<Text>> {
    let n = list.len();
    if n == 0 {
        return Ok(None);
    }
    if fastcall::lends_utf8() {
        return Ok(copied_strs(list));
    }
    let py = list.py();
    let sep = pyo3::intern!(py, "\0");
    let Ok(all) = sep.call_method1(pyo3::intern!(py, "join"), (list,)) else {
        return Ok(None);
    };
    let Ok(all) = all.cast_into::<PyString>() else {
        return Ok(None);
    };
    let Ok(bytes) = all.encode_utf8() else {
        return Ok(None);
    };
    let b = bytes.as_bytes();
    let mut ends = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(b.len() + 1 - n);
    for part in b.split(|&c| c == 0) {
        data.extend_from_slice(part);
        ends.push(data.len());
    }
    if ends.len() != n {
        return Ok(None);
    }
    Ok(Some(Text::Owned {
        data,
        ends,
        missing: Vec::new(),
        raw_text: true,
    }))
}

/// [`joined`] on 3.10+: each item's lent UTF-8 form copied into one buffer.
fn copied_strs(list: &Bound<'_, PyList>) -> Option<Text> {
    let (data, ends) = fastcall::exact_str_list(list)?;
    if data.contains(&0) {
        return None;
    }
    Some(Text::Owned {
        data,
        ends,
        missing: Vec::new(),
        raw_text: true,
    })
}

// --- Numeric columns ----------------------------------------------------------------------------

/// A column of numbers or flags: one value, or one per message.
pub enum Many<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Copy> Many<T> {
    pub fn len(&self) -> Option<usize> {
        match self {
            Many::One(_) => None,
            Many::Each(v) => Some(v.len()),
        }
    }
}

/// A numeric value read in place: what it was, or a missing value.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Missing,
}

/// Copies a chunk of 64-bit integers (native byte order, `signed` or not) into `out` in one
/// pass when every one of them converts to itself; `false` (and `out` unchanged) otherwise.
type Bulk<T> = fn(&[u8], bool, &mut Vec<T>) -> bool;

/// [`Bulk`] for columns that take no value in one pass.
fn no_bulk<T>(_: &[u8], _: bool, _: &mut Vec<T>) -> bool {
    false
}

/// [`Bulk`] for times: copied when no value is negative (the others are refused value by
/// value, with their index).
fn bulk_times(bytes: &[u8], signed: bool, out: &mut Vec<u64>) -> bool {
    let values = || {
        bytes
            .chunks_exact(8)
            .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
    };
    if signed && values().fold(0, |acc, v| acc | v) >> 63 != 0 {
        return false;
    }
    out.extend(values());
    true
}

/// The values of Arrow chunks, each converted by `num` as it is read (one pass); chunks of
/// 64-bit integers without nulls go through `bulk` first.
fn nums_of<T>(
    chunks: &[ArrowChunk],
    what: &str,
    num: impl Fn(Num) -> Result<T, String>,
    bulk: Bulk<T>,
) -> PyResult<Vec<T>> {
    let mut out = Vec::new();
    for c in chunks {
        let valid = c.validity()?;
        let Values::Fixed { bytes, bit_offset } = c.values()? else {
            return Err(PyTypeError::new_err(format!(
                "{what}: expected numbers, got an Arrow {:?} column",
                c.kind()
            )));
        };
        // Room for the chunk once its buffers were checked (an allocation failure is a
        // MemoryError, not an abort).
        out.try_reserve_exact(c.len()).map_err(|_| {
            PyMemoryError::new_err(format!("{what}: {} values do not fit in memory", c.len()))
        })?;
        // The common case: 64-bit integers, no nulls.
        if let (Validity::All, Kind::Int { bytes: 8, signed }) = (valid, c.kind()) {
            let bytes = c
                .len()
                .checked_mul(8)
                .and_then(|k| bytes.get(..k))
                .unwrap_or(bytes);
            if bulk(bytes, signed, &mut out) {
                continue;
            }
            for b in bytes.chunks_exact(8) {
                let u = u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
                let x = if signed {
                    Num::Int(u as i64)
                } else {
                    Num::UInt(u)
                };
                let i = out.len();
                out.push(num(x).map_err(|m| at(what, i, m))?);
            }
            continue;
        }
        for j in 0..c.len() {
            let x = if !valid.is_valid(j) {
                Num::Missing
            } else {
                match c.kind() {
                    Kind::Bool => Num::Bool(Validity::Bits(bytes, bit_offset).is_valid(j)),
                    Kind::Int { bytes: w, signed } => {
                        let w = w as usize;
                        // Native byte order (see buffers.rs).
                        let b = &bytes[j * w..j * w + w];
                        let u = buffers::uint_of(b, cfg!(target_endian = "big"));
                        if signed {
                            Num::Int(buffers::sign_extend(u, w))
                        } else {
                            Num::UInt(u)
                        }
                    }
                    Kind::Float { bytes: 8 } => {
                        let mut v = [0u8; 8];
                        v.copy_from_slice(&bytes[j * 8..j * 8 + 8]);
                        Num::Float(f64::from_ne_bytes(v))
                    }
                    Kind::Float { .. } => {
                        let mut v = [0u8; 4];
                        v.copy_from_slice(&bytes[j * 4..j * 4 + 4]);
                        Num::Float(f32::from_ne_bytes(v) as f64)
                    }
                    _ => Num::Missing,
                }
            };
            let i = out.len();
            out.push(num(x).map_err(|m| at(what, i, m))?);
        }
    }
    Ok(out)
}

/// Values read in one piece, each converted by `num` (an error names its index).
fn each_num<T>(
    what: &str,
    values: impl Iterator<Item = Num>,
    num: impl Fn(Num) -> Result<T, String>,
) -> PyResult<Many<T>> {
    values
        .enumerate()
        .map(|(i, x)| num(x).map_err(|m| at(what, i, m)))
        .collect::<PyResult<Vec<T>>>()
        .map(Many::Each)
}

/// Reads a numeric column with `one` (the scalar conversion, for the general path) and
/// `num` (for values read in place).
fn numbers<'py, T: Copy>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    one: impl Fn(&Bound<'py, PyAny>) -> PyResult<T>,
    num: impl Fn(Num) -> Result<T, String> + Copy,
    bulk: Bulk<T>,
    from_ints: bool,
) -> PyResult<Many<T>> {
    if is_one_value(obj) {
        return Ok(Many::One(
            one(obj).map_err(|e| relabel(obj.py(), what, 0, e))?,
        ));
    }
    numbers_of(obj, fast(obj, what)?, what, one, num, bulk, from_ints)
}

/// [`numbers`] of a column that is not one value, `fast` being what [`fast`] made of it.
fn numbers_of<'py, T: Copy>(
    obj: &Bound<'py, PyAny>,
    fast: Option<Fast>,
    what: &str,
    one: impl Fn(&Bound<'py, PyAny>) -> PyResult<T>,
    num: impl Fn(Num) -> Result<T, String> + Copy,
    bulk: Bulk<T>,
    from_ints: bool,
) -> PyResult<Many<T>> {
    let py = obj.py();
    match fast {
        Some(Fast::Arrow(chunks)) => return nums_of(&chunks, what, num, bulk).map(Many::Each),
        Some(Fast::Nd(v)) => {
            return match v {
                NdValues::Ints(v) => each_num(what, v.into_iter().map(Num::Int), num),
                NdValues::UInts(v) => each_num(what, v.into_iter().map(Num::UInt), num),
                NdValues::Floats(v) => each_num(what, v.into_iter().map(Num::Float), num),
                NdValues::Bools(v) => each_num(what, v.into_iter().map(Num::Bool), num),
                NdValues::Strings { .. } => Err(PyTypeError::new_err(format!(
                    "{what}: expected numbers, got a string array"
                ))),
            };
        }
        None => {}
    }
    if from_ints {
        if let Ok(list) = obj.cast::<PyList>() {
            if let Some(v) = fastcall::exact_int_list(list) {
                return each_num(what, v.into_iter().map(Num::Int), num);
            }
        }
    }
    objects(obj, what)?
        .iter()
        .enumerate()
        .map(|(i, o)| one(o).map_err(|e| relabel(py, what, i, e)))
        .collect::<PyResult<Vec<T>>>()
        .map(Many::Each)
}

/// A time read in place as the `now` column takes it: the common cases inlined into the
/// loops that read columns (it runs once per value), the others a call.
#[inline(always)]
fn time_of(x: Num) -> Result<u64, String> {
    match x {
        Num::Int(v) if v >= 0 => Ok(v as u64),
        Num::UInt(v) => Ok(v),
        x => other_time(x),
    }
}

#[inline(never)]
fn other_time(x: Num) -> Result<u64, String> {
    match x {
        Num::Int(v) if v >= 0 => Ok(v as u64),
        Num::Int(v) => Err(format!("{v} is negative; Unix times start at 0")),
        Num::UInt(v) => Ok(v),
        Num::Float(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(f as u64),
        Num::Float(f) => Err(format!(
            "{f} is not a Unix time (seconds since 1970, not negative)"
        )),
        Num::Bool(_) => Err("expected Unix seconds, got a bool".into()),
        Num::Missing => Err("missing time".into()),
    }
}

/// A flag read in place (the error text made out of line).
#[inline(always)]
fn flag_of(x: Num) -> Result<bool, String> {
    match x {
        Num::Bool(b) => Ok(b),
        Num::Missing | Num::Int(0) | Num::UInt(0) => Ok(false),
        Num::Int(1) | Num::UInt(1) => Ok(true),
        Num::Int(v) => Err(not_a_flag(&v)),
        Num::UInt(v) => Err(not_a_flag(&v)),
        Num::Float(f) => Err(not_a_flag(&f)),
    }
}

#[cold]
#[inline(never)]
fn not_a_flag(v: &dyn std::fmt::Display) -> String {
    format!("expected a bool, got {v}")
}

/// A recipient count read in place (the common cases inlined).
#[inline(always)]
fn count_of(x: Num) -> Result<u32, String> {
    match x {
        Num::Int(v) if (0..=u32::MAX as i64).contains(&v) => Ok(v as u32),
        Num::UInt(v) if v <= u32::MAX as u64 => Ok(v as u32),
        x => other_count(x),
    }
}

#[inline(never)]
fn other_count(x: Num) -> Result<u32, String> {
    let bad = |v: &dyn std::fmt::Display| format!("expected a count (0 ..= 4294967295), got {v}");
    match x {
        Num::Missing => Ok(1),
        Num::Int(v) => u32::try_from(v).map_err(|_| bad(&v)),
        Num::UInt(v) => u32::try_from(v).map_err(|_| bad(&v)),
        Num::Bool(b) => Ok(b as u32),
        Num::Float(f) => Err(bad(&f)),
    }
}

/// The `now` column: read in place when it is one Arrow chunk of 64-bit integers without
/// nulls or negative values (the usual Arrow column), else copied.
pub enum Times {
    Arrow(ArrowChunk),
    Owned(Vec<u64>),
}

impl Times {
    pub fn len(&self) -> usize {
        match self {
            Times::Arrow(c) => c.len(),
            Times::Owned(v) => v.len(),
        }
    }

    pub fn values(&self) -> PyResult<&[u64]> {
        match self {
            Times::Arrow(c) => c.u64s(),
            Times::Owned(v) => Ok(v),
        }
    }
}

/// The `now` column (required; one value per message).
pub fn times(obj: &Bound<'_, PyAny>) -> PyResult<Times> {
    let what = "now";
    let one = |o: &Bound<'_, PyAny>| convert::time(o, what);
    let m = if is_one_value(obj) {
        numbers(obj, what, one, time_of, bulk_times, true)?
    } else {
        let mut fast = fast(obj, what)?;
        if let Some(Fast::Arrow(chunks)) = &mut fast {
            if let [c] = &chunks[..] {
                // (A misaligned buffer, which Arrow allows, is copied instead.)
                let in_place = matches!(c.validity()?, Validity::All)
                    && match (c.kind(), c.u64s()) {
                        (Kind::Int { bytes: 8, signed }, Ok(v)) => {
                            !signed || v.iter().fold(0, |a, &v| a | v) >> 63 == 0
                        }
                        _ => false,
                    };
                if in_place {
                    return Ok(Times::Arrow(chunks.remove(0)));
                }
            }
        }
        numbers_of(obj, fast, what, one, time_of, bulk_times, true)?
    };
    match m {
        Many::Each(v) => Ok(Times::Owned(v)),
        Many::One(_) => Err(PyValueError::new_err(
            "now: expected a sequence of times, one per message",
        )),
    }
}

/// A flag column (`None`: false for every message).
pub fn flags(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Many<bool>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Many::One(false));
    };
    numbers(
        obj,
        what,
        |o| convert::flag(o, what),
        flag_of,
        no_bulk,
        false,
    )
}

/// The recipients column (`None`: 1 for every message).
pub fn counts(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Many<u32>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Many::One(1));
    };
    numbers(
        obj,
        "recipients",
        convert::recipients,
        count_of,
        no_bulk,
        true,
    )
}

// --- Messages -----------------------------------------------------------------------------------

/// Every column of a batch, read; the messages are built from it with the GIL released.
pub struct Columns {
    pub n: usize,
    pub now: Times,
    pub mail_from: Text,
    pub verdict: Text,
    pub tenant: Text,
    pub client_ip: Text,
    pub auth_user: Text,
    pub cert_domain: Text,
    pub forwarded: Many<bool>,
    pub spf_pass: Many<bool>,
    pub dkim_pass: Many<bool>,
    pub recipients: Many<u32>,
}

fn opt_bytes(v: Option<String>) -> Option<Vec<u8>> {
    v.map(String::into_bytes)
}

/// The general path's conversions of one value, as the scalar call makes them.
pub fn mail_from_one(o: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    convert::mail_from(o).map(Some)
}
pub fn plain_one(name: &'static str) -> impl Fn(&Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    move |o| convert::opt_text(o, name).map(opt_bytes)
}
pub fn idna_one(name: &'static str) -> impl Fn(&Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    move |o| convert::opt_text(o, name).map(|v| opt_bytes(convert::idna_text(v)))
}
pub fn ip_one(o: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    // Addresses given as objects (ipaddress) become their text; parsed with the rest.
    if o.is_none() {
        return Ok(None);
    }
    if let Ok(s) = o.cast::<PyString>() {
        return Ok(Some(s.encode_utf8()?.as_bytes().to_vec()));
    }
    if o.is_instance_of::<PyFloat>() && o.extract::<f64>().is_ok_and(f64::is_nan) {
        return Ok(None);
    }
    convert::ip(o).map(|ip| Some(ip.to_string().into_bytes()))
}

/// The conversions a batch needs, made before its messages borrow them.
pub struct Prepared {
    mail_from: Vec<(usize, Vec<u8>)>,
    auth_user: Vec<(usize, Vec<u8>)>,
    cert_domain: Vec<(usize, Vec<u8>)>,
    /// The client IPs, parsed; `Many::One(None)` too when `ips_in_fill`.
    pub ips: Many<Option<IpAddr>>,
    /// The client IP column is text in one buffer without nulls: each address is parsed as
    /// its message is built (`Reader::fill`), not into a vector first.
    ips_in_fill: bool,
    pub verdicts: Vec<Verdict>,
}

/// A client IP as the scalar call reads it: `None` for none or an empty text; the address,
/// with white space around it ignored; else an error naming message `i`.
fn ip_at(i: usize, v: Option<&[u8]>) -> PyResult<Option<IpAddr>> {
    let Some(b) = v.filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    // The common case, an address alone: parsed from the bytes (an address parses only from
    // ASCII text, so it needs no UTF-8 check of its own).
    if let Some(ip) = outguard::cidr::parse_ip(b.trim_ascii()) {
        return Ok(Some(ip));
    }
    other_ip(i, b)
}

#[cold]
#[inline(never)]
fn other_ip(i: usize, b: &[u8]) -> PyResult<Option<IpAddr>> {
    let s = utf8("client_ip", i, b)?;
    outguard::cidr::parse_ip(s.trim().as_bytes())
        .map(Some)
        .ok_or_else(|| at("client_ip", i, format!("invalid IP address {s:?}")))
}

fn utf8<'a>(name: &str, i: usize, b: &'a [u8]) -> PyResult<&'a str> {
    std::str::from_utf8(b).map_err(|_| at(name, i, "not valid UTF-8"))
}

impl Columns {
    /// Checks that every column has one value per message.
    pub fn check_lengths(&self) -> PyResult<()> {
        let n = self.n;
        let lens = [
            ("mail_from", self.mail_from.len()),
            ("verdict", self.verdict.len()),
            ("tenant", self.tenant.len()),
            ("client_ip", self.client_ip.len()),
            ("auth_user", self.auth_user.len()),
            ("cert_domain", self.cert_domain.len()),
            ("forwarded", self.forwarded.len()),
            ("spf_pass", self.spf_pass.len()),
            ("dkim_pass", self.dkim_pass.len()),
            ("recipients", self.recipients.len()),
        ];
        for (name, len) in lens {
            if let Some(len) = len.filter(|&l| l != n) {
                return Err(PyValueError::new_err(format!(
                    "{name} has {len} values but now has {n}: every column needs one value \
                     per message"
                )));
            }
        }
        Ok(())
    }

    /// Conversions (IDNA, IP addresses, verdicts); runs without the GIL.
    pub fn prepare(&self, verdicts: bool) -> PyResult<Prepared> {
        let n = self.n;
        let ip = ip_at;
        let ips_in_fill = n > 0 && self.client_ip.view()?.plain(&(0..n)).is_some();
        let ips = match &self.client_ip {
            _ if ips_in_fill => Many::One(None),
            Text::Absent => Many::One(None),
            // (An empty batch has no value to check.)
            Text::One(_) if n == 0 => Many::One(None),
            Text::One(v) => Many::One(ip(0, v.as_deref())?),
            t => {
                // Values laid out one after another are sliced straight from their buffer
                // (`bytes_in`); the first error (in index order) refuses the batch.
                let mut ips = vec![None; n];
                let mut err = None;
                let read = t.view()?.bytes_in("client_ip", 0..n, |i, v| {
                    if err.is_none() {
                        match ip(i, v) {
                            Ok(x) => ips[i] = x,
                            Err(e) => err = Some(e),
                        }
                    }
                });
                if let Some(e) = err {
                    return Err(e);
                }
                read?;
                Many::Each(ips)
            }
        };
        let mut vs = Vec::new();
        if verdicts {
            vs = vec![Verdict::Clean; n];
            self.verdict.each("verdict", n, |i, v| {
                if let Some(b) = v.filter(|b| !b.is_empty()) {
                    let s = utf8("verdict", i, b)?;
                    vs[i] = Verdict::from_name(s)
                        .ok_or_else(|| at("verdict", i, convert::unknown_verdict(s)))?;
                }
                Ok(())
            })?;
        }
        Ok(Prepared {
            mail_from: self.mail_from.conversions(
                "mail_from",
                n,
                outguard::policy::idna::address_to_ascii,
            )?,
            auth_user: self.auth_user.conversions("auth_user", n, convert::idna)?,
            cert_domain: self
                .cert_domain
                .conversions("cert_domain", n, convert::idna)?,
            ips,
            ips_in_fill,
            verdicts: vs,
        })
    }

    /// Benchmark support: the client IP of each message as given, when the column is text
    /// with a value per message.
    pub fn ip_texts(&self) -> PyResult<Option<Vec<Option<&[u8]>>>> {
        let view = self.client_ip.view()?;
        if !view.varies() {
            return Ok(None);
        }
        let mut v = vec![None; self.n];
        view.bytes_in("client_ip", 0..self.n, |i, b| {
            v[i] = b.filter(|b| !b.is_empty()).map(<[u8]>::trim_ascii)
        })?;
        Ok(Some(v))
    }

    /// A reader of the messages, borrowing the columns and the conversions; runs without
    /// the GIL.
    pub fn reader<'a>(&'a self, p: &'a Prepared) -> PyResult<Reader<'a>> {
        Ok(Reader {
            cols: self,
            p,
            mail_from: self.mail_from.view()?,
            client_ip: self.client_ip.view()?,
            tenant: self.tenant.view()?.checked(),
            auth_user: self.auth_user.view()?.checked(),
            cert_domain: self.cert_domain.view()?.checked(),
        })
    }
}

/// One part of a text column, as slices.
struct PartView<'a> {
    start: usize,
    len: usize,
    valid: Validity<'a>,
    missing: &'a [bool],
    values: PartValues<'a>,
    /// For a text column whose part is one buffer without nulls: the bytes its values span,
    /// checked as UTF-8 once (`None`: not checked, or not all UTF-8), and where they start.
    text: Option<(&'a str, usize)>,
    /// `text` when it is all ASCII.
    ascii: Option<Ascii<'a>>,
    /// `packed()`, when the part has neither nulls nor missing values.
    plain: Option<(&'a [u8], Packed<'a>)>,
}

enum PartValues<'a> {
    Arrow(Values<'a>),
    Owned { data: &'a [u8], ends: &'a [usize] },
}

/// The values of a part laid out one after another, as offsets into one buffer: `data` is
/// the buffer they index.
#[derive(Clone, Copy)]
enum Packed<'a> {
    Offsets32(&'a [i32]),
    Offsets64(&'a [i64]),
    Ends(&'a [usize]),
}

impl<'a> Packed<'a> {
    /// The range of value `j` in `data[base..]`.
    #[inline]
    fn range(&self, j: usize, base: usize) -> Option<std::ops::Range<usize>> {
        let (a, b) = match *self {
            Packed::Offsets32(o) => (o[j] as usize, o[j + 1] as usize),
            Packed::Offsets64(o) => (o[j] as usize, o[j + 1] as usize),
            Packed::Ends(e) => (if j == 0 { 0 } else { e[j - 1] }, e[j]),
        };
        Some(a.checked_sub(base)?..b.checked_sub(base)?)
    }

    /// The offsets of values `j0..j1` (not empty).
    #[inline]
    fn slice(self, j0: usize, j1: usize) -> Option<Offsets<'a>> {
        if j0 >= j1 {
            return None;
        }
        Some(match self {
            Packed::Offsets32(o) => Offsets::I32(o.get(j0..=j1)?),
            Packed::Offsets64(o) => Offsets::I64(o.get(j0..=j1)?),
            Packed::Ends(e) => {
                let first = if j0 == 0 { 0 } else { *e.get(j0 - 1)? };
                Offsets::Ends(first, e.get(j0..j1)?)
            }
        })
    }
}

impl<'a> PartView<'a> {
    /// The one part of an owned column.
    fn owned(data: &'a [u8], ends: &'a [usize], missing: &'a [bool]) -> PartView<'a> {
        PartView::with_plain(PartView {
            start: 0,
            len: ends.len(),
            valid: Validity::All,
            missing,
            values: PartValues::Owned { data, ends },
            text: None,
            ascii: None,
            plain: None,
        })
    }

    fn with_plain(mut self) -> PartView<'a> {
        if matches!(self.valid, Validity::All) && self.missing.is_empty() {
            self.plain = self.packed();
        }
        self
    }

    /// Arrow chunk `c`, whose first value is value `start` of the column.
    fn arrow(start: usize, c: &'a ArrowChunk) -> PyResult<PartView<'a>> {
        Ok(PartView::with_plain(PartView {
            start,
            len: c.len(),
            valid: c.validity()?,
            missing: &[],
            values: PartValues::Arrow(c.values()?),
            text: None,
            ascii: None,
            plain: None,
        }))
    }

    /// Calls `f(i, value)` for every value of the part (`i`: its index in the column).
    fn each(
        &self,
        name: &str,
        f: &mut impl FnMut(usize, Option<&'a [u8]>) -> PyResult<()>,
    ) -> PyResult<()> {
        (0..self.len).try_for_each(|j| f(self.start + j, self.get(name, j)?))
    }

    /// Sets `text` when the part is one buffer without nulls whose values span UTF-8 text.
    fn check_text(&mut self) {
        if self.len == 0 {
            return;
        }
        let Some((bytes, lo)) = self.plain.and_then(|(data, packed)| {
            let lo = packed.range(0, 0)?.start;
            let hi = packed.range(self.len - 1, 0)?.end;
            Some((data.get(lo..hi)?, lo))
        }) else {
            return;
        };
        // The usual text, ASCII, found so in one pass; else checked as UTF-8.
        self.ascii = Ascii::from_bytes(bytes);
        self.text = match self.ascii {
            Some(a) => Some((a.as_str(), lo)),
            None => std::str::from_utf8(bytes).ok().map(|t| (t, lo)),
        };
    }

    /// The part's values as one buffer and their offsets, when laid out that way.
    fn packed(&self) -> Option<(&'a [u8], Packed<'a>)> {
        match self.values {
            PartValues::Arrow(Values::Offsets32 { offsets, data }) => {
                Some((data, Packed::Offsets32(offsets)))
            }
            PartValues::Arrow(Values::Offsets64 { offsets, data }) => {
                Some((data, Packed::Offsets64(offsets)))
            }
            PartValues::Owned { data, ends } => Some((data, Packed::Ends(ends))),
            PartValues::Arrow(_) => None,
        }
    }

    #[inline]
    fn is_missing(&self, j: usize) -> bool {
        !self.valid.is_valid(j) || self.missing.get(j).copied().unwrap_or(false)
    }

    /// Value `j` of the part (the general way).
    #[inline]
    fn get(&self, name: &str, j: usize) -> PyResult<Option<&'a [u8]>> {
        if self.is_missing(j) {
            return Ok(None);
        }
        match &self.values {
            PartValues::Owned { data, ends } => {
                let from = if j == 0 { 0 } else { ends[j - 1] };
                Ok(Some(&data[from..ends[j]]))
            }
            PartValues::Arrow(v) => v
                .bytes(j)
                .map(Some)
                .ok_or_else(|| at(name, self.start + j, "Arrow value out of its buffer")),
        }
    }
}

/// A text column ready to be read a range of messages at a time.
pub struct TextView<'a> {
    one: Option<Option<&'a [u8]>>,
    parts: Vec<PartView<'a>>,
}

impl Text {
    fn view(&self) -> PyResult<TextView<'_>> {
        let mut v = TextView {
            one: None,
            parts: Vec::new(),
        };
        match self {
            Text::Absent => v.one = Some(None),
            Text::One(x) => v.one = Some(x.as_deref()),
            Text::Owned {
                data,
                ends,
                missing,
                ..
            } => v.parts.push(PartView::owned(data, ends, missing)),
            Text::Arrow { chunks, .. } => {
                let mut start = 0;
                for c in chunks {
                    v.parts.push(PartView::arrow(start, c)?);
                    start += c.len();
                }
            }
        }
        Ok(v)
    }
}

impl<'a> TextView<'a> {
    /// The view of a column read as text (`str_in`): each part that is one buffer is checked
    /// as UTF-8 here, once, instead of a range at a time.
    fn checked(mut self) -> TextView<'a> {
        self.parts.iter_mut().for_each(PartView::check_text);
        self
    }

    /// The parts that hold values of `range`, each with the part's indices `j0..j1` of them
    /// and the place in the range of the first (`k0`).
    fn parts_in<'s>(
        &'s self,
        range: &std::ops::Range<usize>,
    ) -> impl Iterator<Item = (&'s PartView<'a>, usize, usize, usize)> + 's {
        let range = range.clone();
        self.parts.iter().filter_map(move |p| {
            let (from, to) = (range.start.max(p.start), range.end.min(p.start + p.len));
            if from >= to {
                return None;
            }
            Some((p, from - p.start, to - p.start, from - range.start))
        })
    }

    /// Whether the column has a value per message (else one value for all, or none).
    fn varies(&self) -> bool {
        self.one.is_none()
    }

    /// Calls `set(k, value)` for the `k`-th message of `range` (`None`: missing), a part at
    /// a time; values laid out one after another are sliced straight from their buffer.
    #[inline(always)]
    fn bytes_in(
        &self,
        name: &str,
        range: std::ops::Range<usize>,
        mut set: impl FnMut(usize, Option<&'a [u8]>),
    ) -> PyResult<()> {
        if let Some(one) = self.one {
            (0..range.len()).for_each(|k| set(k, one));
            return Ok(());
        }
        for (p, j0, j1, k0) in self.parts_in(&range) {
            match p.plain.and_then(|(data, o)| Some((data, o.slice(j0, j1)?))) {
                Some((data, offsets)) => offsets
                    .each(k0.., |k, a, b| {
                        data.get(a..b).map(|v| set(k, Some(v))).is_some()
                    })
                    .map_err(|k| at(name, p.start + j0 + k, "value out of its buffer"))?,
                None => {
                    for j in j0..j1 {
                        set(k0 + j - j0, p.get(name, j)?);
                    }
                }
            }
        }
        Ok(())
    }

    /// As `bytes_in`, for values that must be UTF-8 text: a part's buffer is checked once,
    /// and each value is then sliced from the checked text at its boundaries (a value that
    /// starts or ends inside a character is refused); values of a part whose buffer is not
    /// all UTF-8 (or that is not one buffer) are checked one by one.
    #[inline(always)]
    fn str_in(
        &self,
        name: &str,
        range: std::ops::Range<usize>,
        mut set: impl FnMut(usize, Option<&'a str>),
    ) -> PyResult<()> {
        let bad = |i: usize| at(name, i, "not valid UTF-8");
        let one = |i: usize, v: Option<&'a [u8]>| -> PyResult<Option<&'a str>> {
            match v {
                None => Ok(None),
                Some(b) => std::str::from_utf8(b).map(Some).map_err(|_| bad(i)),
            }
        };
        if let Some(v) = self.one {
            let v = one(0, v)?;
            (0..range.len()).for_each(|k| set(k, v));
            return Ok(());
        }
        for (p, j0, j1, k0) in self.parts_in(&range) {
            let packed = p.plain.and_then(|(data, packed)| {
                let (text, base) = p.text.or_else(|| {
                    // Only this range's bytes are checked.
                    let lo = packed.range(j0, 0)?.start;
                    let hi = packed.range(j1 - 1, 0)?.end;
                    Some((std::str::from_utf8(data.get(lo..hi)?).ok()?, lo))
                })?;
                Some((text, base, packed.slice(j0, j1)?))
            });
            match packed {
                Some((text, base, offsets)) => offsets
                    .each(k0.., |k, a, b| {
                        text.get(a.wrapping_sub(base)..b.wrapping_sub(base))
                            .map(|v| set(k, Some(v)))
                            .is_some()
                    })
                    .map_err(|k| bad(p.start + j0 + k))?,
                None => {
                    for j in j0..j1 {
                        set(k0 + j - j0, one(p.start + j, p.get(name, j)?)?);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where consecutive values of one buffer start and end: value `k` of a range is
/// `data[at(k)..at(k + 1)]`.
#[derive(Clone, Copy)]
enum Offsets<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
    /// The first value's start, then each value's end.
    Ends(usize, &'a [usize]),
}

/// The values of a range of messages that lie in one part laid out as one buffer without
/// nulls: read in one tight loop per column (`Reader::fill`).
#[derive(Clone, Copy)]
struct Plain<'a> {
    data: &'a [u8],
    offsets: Offsets<'a>,
    /// The part's text checked as UTF-8 (`PartView::text`, `PartView::ascii`).
    text: Option<(&'a str, usize)>,
    ascii: Option<Ascii<'a>>,
}

impl Offsets<'_> {
    /// Calls `f(slot, a, b)` for the `k`-th value (`data[a..b]`) with the `k`-th of `slots`
    /// (a message to set, or just `k`), one loop per layout (nothing matched per value);
    /// stops at the first `false`, returning its `k`.
    #[inline(always)]
    fn each<S>(
        self,
        slots: impl Iterator<Item = S>,
        mut f: impl FnMut(S, usize, usize) -> bool,
    ) -> Result<(), usize> {
        let mut k = 0;
        match self {
            Offsets::I32(o) => {
                for (slot, (a, b)) in slots.zip(o.iter().zip(&o[1..])) {
                    if !f(slot, *a as usize, *b as usize) {
                        return Err(k);
                    }
                    k += 1;
                }
            }
            Offsets::I64(o) => {
                for (slot, (a, b)) in slots.zip(o.iter().zip(&o[1..])) {
                    if !f(slot, *a as usize, *b as usize) {
                        return Err(k);
                    }
                    k += 1;
                }
            }
            Offsets::Ends(mut a, e) => {
                for (slot, &b) in slots.zip(e) {
                    if !f(slot, a, b) {
                        return Err(k);
                    }
                    a = b;
                    k += 1;
                }
            }
        }
        Ok(())
    }
}

impl<'a> Plain<'a> {
    /// Calls `set(out[k], a, b)` for the `k`-th value (`data[a..b]`); stops at the first
    /// `false`, returning its `k`.
    #[inline(always)]
    fn each<M>(
        &self,
        out: &mut [M],
        set: impl FnMut(&mut M, usize, usize) -> bool,
    ) -> Result<(), usize> {
        self.offsets.each(out.iter_mut(), set)
    }

    /// Sets each message's bytes field.
    #[inline(always)]
    fn bytes<M>(
        &self,
        name: &str,
        start: usize,
        out: &mut [M],
        set: impl Fn(&mut M, &'a [u8]),
    ) -> PyResult<()> {
        let data = self.data;
        self.each(out, |m, a, b| match data.get(a..b) {
            Some(v) => {
                set(m, v);
                true
            }
            None => false,
        })
        .map_err(|k| at(name, start + k, "value out of its buffer"))
    }

    /// Sets each message's text field, from the part's checked text; `false` when the part
    /// is not checked text.
    #[inline(always)]
    fn text<M>(
        &self,
        name: &str,
        start: usize,
        out: &mut [M],
        set: impl Fn(&mut M, &'a str),
    ) -> PyResult<bool> {
        let Some((text, base)) = self.text else {
            return Ok(false);
        };
        let done = match self.ascii {
            // The usual text: a bounds check per value.
            Some(ascii) => self.slices(out, base, |a, b| ascii.get(a, b), &set),
            None => self.slices(out, base, |a, b| text.get(a..b), &set),
        };
        done.map_err(|k| at(name, start + k, "not valid UTF-8"))?;
        Ok(true)
    }

    /// Sets each message's text field to `get(a, b)` of its value's bounds (relative to
    /// `base`); stops at the first `None`, returning its `k`.
    #[inline(always)]
    fn slices<M>(
        &self,
        out: &mut [M],
        base: usize,
        get: impl Fn(usize, usize) -> Option<&'a str>,
        set: impl Fn(&mut M, &'a str),
    ) -> Result<(), usize> {
        self.each(out, |m, a, b| {
            get(a.wrapping_sub(base), b.wrapping_sub(base))
                .map(|v| set(m, v))
                .is_some()
        })
    }
}

impl<'a> TextView<'a> {
    /// The values of `range` as [`Plain`], when they lie in one such part.
    #[inline]
    fn plain(&self, range: &std::ops::Range<usize>) -> Option<Plain<'a>> {
        let p = self
            .parts
            .iter()
            .find(|p| p.start <= range.start && range.end <= p.start + p.len)?;
        let (data, packed) = p.plain?;
        let offsets = packed.slice(range.start - p.start, range.end - p.start)?;
        Some(Plain {
            data,
            offsets,
            text: p.text,
            ascii: p.ascii,
        })
    }
}

/// Builds the messages of a batch a range at a time (so a batch is decided a group at a
/// time, with its messages in cache, instead of all of them being built first), a column at
/// a time: `template` holds the fields that are the same for every message, `fill` writes
/// the others.
pub struct Reader<'a> {
    cols: &'a Columns,
    p: &'a Prepared,
    mail_from: TextView<'a>,
    client_ip: TextView<'a>,
    tenant: TextView<'a>,
    auth_user: TextView<'a>,
    cert_domain: TextView<'a>,
}

/// Replaces the values of `range` that have a conversion (`list` is sorted by index).
fn apply<'a, T: ?Sized + 'a>(
    list: &'a [(usize, Vec<u8>)],
    range: &std::ops::Range<usize>,
    out: &mut [Message<'a>],
    conv: impl Fn(&'a [u8]) -> Option<&'a T>,
    set: impl Fn(&mut Message<'a>, &'a T),
) {
    if list.is_empty() {
        return;
    }
    let from = list.partition_point(|(k, _)| *k < range.start);
    for (i, v) in list[from..].iter().take_while(|(k, _)| *k < range.end) {
        if let Some(v) = conv(v) {
            set(&mut out[i - range.start], v);
        }
    }
}

/// Sets a field of each message from a column with a value per message.
#[inline(always)]
fn each_of<'a, T: Copy>(
    values: &[T],
    start: usize,
    out: &mut [Message<'a>],
    set: impl Fn(&mut Message<'a>, T),
) {
    let values = &values[start..start + out.len()];
    for (m, &x) in out.iter_mut().zip(values) {
        set(m, x);
    }
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

impl<'a> Reader<'a> {
    /// A message with the fields that are the same for every message of the batch (the
    /// others are set by `fill`).
    pub fn template(&self) -> PyResult<Message<'a>> {
        let c = self.cols;
        let mut m = [Message::default()];
        if c.n == 0 {
            // No value to check.
            return Ok(m[0]);
        }
        let one = 0..1;
        if !self.mail_from.varies() {
            self.mail_from.bytes_in("mail_from", one.clone(), |_, v| {
                m[0].mail_from = v.unwrap_or(b"")
            })?;
        }
        for (view, name, set) in [
            (
                &self.tenant,
                "tenant",
                (|m, v| m.tenant = v) as fn(&mut Message<'a>, _),
            ),
            (&self.auth_user, "auth_user", |m, v| m.auth_user = v),
            (&self.cert_domain, "cert_domain", |m, v| m.cert_domain = v),
        ] {
            if !view.varies() {
                view.str_in(name, one.clone(), |_, v| set(&mut m[0], non_empty(v)))?;
            }
        }
        let [mut m] = m;
        if let Many::One(ip) = self.p.ips {
            m.client_ip = ip;
        }
        if let Many::One(v) = c.forwarded {
            m.forwarded = v;
        }
        if let Many::One(v) = c.spf_pass {
            m.spf_pass = v;
        }
        if let Many::One(v) = c.dkim_pass {
            m.dkim_pass = v;
        }
        if let Many::One(v) = c.recipients {
            m.recipients = v;
        }
        Ok(m)
    }

    /// Sets the fields of messages `start..start + out.len()` that vary from message to
    /// message; `out` holds the template's fields (or those a previous `fill` left: the
    /// fields set here are the same each time).
    #[inline]
    pub fn fill(&self, start: usize, out: &mut [Message<'a>]) -> PyResult<()> {
        let c = self.cols;
        let p = self.p;
        let range = start..start + out.len();
        if self.mail_from.varies() {
            match self.mail_from.plain(&range) {
                Some(v) => v.bytes("mail_from", start, out, |m, v| m.mail_from = v)?,
                None => self
                    .mail_from
                    .bytes_in("mail_from", range.clone(), |k, v| {
                        out[k].mail_from = v.unwrap_or(b"")
                    })?,
            }
            apply(&p.mail_from, &range, out, Some, |m, v| m.mail_from = v);
        }
        if self.tenant.varies() {
            let plain = match self.tenant.plain(&range) {
                Some(v) => v.text("tenant", start, out, |m, v| m.tenant = non_empty(Some(v)))?,
                None => false,
            };
            if !plain {
                self.tenant
                    .str_in("tenant", range.clone(), |k, v| out[k].tenant = non_empty(v))?;
            }
        }
        let conv = |b: &'a [u8]| std::str::from_utf8(b).ok().filter(|s| !s.is_empty());
        if self.auth_user.varies() {
            self.auth_user.str_in("auth_user", range.clone(), |k, v| {
                out[k].auth_user = non_empty(v)
            })?;
            apply(&p.auth_user, &range, out, conv, |m, v| {
                m.auth_user = Some(v)
            });
        }
        if self.cert_domain.varies() {
            self.cert_domain
                .str_in("cert_domain", range.clone(), |k, v| {
                    out[k].cert_domain = non_empty(v)
                })?;
            apply(&p.cert_domain, &range, out, conv, |m, v| {
                m.cert_domain = Some(v)
            });
        }
        if let Many::Each(v) = &p.ips {
            each_of(v, start, out, |m, x| m.client_ip = x);
        }
        if p.ips_in_fill {
            self.fill_ips(start, out)?;
        }
        if let Many::Each(v) = &c.forwarded {
            each_of(v, start, out, |m, x| m.forwarded = x);
        }
        if let Many::Each(v) = &c.spf_pass {
            each_of(v, start, out, |m, x| m.spf_pass = x);
        }
        if let Many::Each(v) = &c.dkim_pass {
            each_of(v, start, out, |m, x| m.dkim_pass = x);
        }
        if let Many::Each(v) = &c.recipients {
            each_of(v, start, out, |m, x| m.recipients = x);
        }
        Ok(())
    }

    /// Parses the client IPs of messages `start..start + out.len()` into them, from a text
    /// column in one buffer (`Prepared::ips_in_fill`).
    #[inline(always)]
    fn fill_ips(&self, start: usize, out: &mut [Message<'a>]) -> PyResult<()> {
        if out.is_empty() {
            return Ok(());
        }
        let range = start..start + out.len();
        let Some(v) = self.client_ip.plain(&range) else {
            // (`prepare` found the whole column in one such part.)
            return Err(at("client_ip", start, "value out of its buffer"));
        };
        let data = v.data;
        let mut i = start;
        let mut err = None;
        let read = v.each(out, |m, a, b| {
            i += 1;
            let Some(text) = data.get(a..b) else {
                return false;
            };
            // The common case inline: an address alone.
            if let Some(ip) = outguard::cidr::parse_ip(text) {
                m.client_ip = Some(ip);
                return true;
            }
            // The others: empty, white space around, or bad (`err` says which value).
            match ip_at(i - 1, Some(text)) {
                Ok(ip) => {
                    m.client_ip = ip;
                    true
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        });
        read.map_err(|k| {
            err.unwrap_or_else(|| at("client_ip", start + k, "value out of its buffer"))
        })
    }

    /// Messages `range` into `out` (replacing what it held).
    pub fn messages(
        &self,
        range: std::ops::Range<usize>,
        out: &mut Vec<Message<'a>>,
    ) -> PyResult<()> {
        out.clear();
        out.resize(range.len(), self.template()?);
        self.fill(range.start, out)
    }
}
