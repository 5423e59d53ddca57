//! `outguard.Engine`: the core engine behind a `std::sync::RwLock`.
//!
//! Locking: `check`, `status` and every query take the read lock, so threads decide in
//! parallel; `record`, `evaluate`, operator actions, `reload` take the write lock. A lock is
//! only ever held by pure Rust code: nothing that could run Python (and so switch threads)
//! happens under it, and results are copied out (tenant ids as `String`) before any Python
//! object is built. When a lock is contended the GIL is released while waiting, so a thread
//! that holds the lock during a batch (with the GIL released) can always finish.

use std::cell::OnceCell;
use std::ffi::CStr;
use std::sync::{PoisonError, RwLock, TryLockError};

use outguard::policy::{snapshot, HeapEngine, RestoreError};
use outguard::{Error, Event as CoreEvent, Message, TenantId, Verdict};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString};
use pyo3::Borrowed;

use crate::columns::{self, Columns, Text};
use crate::convert::{self, OwnedMessage};
use crate::error::{core_error, exceptions, policy_error, tenant_error};
use crate::fastcall;
use crate::policy::Policy;
use crate::reuse;
use crate::types::{
    event_list, Decisions, EventData, Names, ReloadReport, Replay, RestoreReport, Restriction,
    SuspiciousConnector, TenantName, TenantStatus,
};

/// The engine: decides every message, counts accepted ones, keeps blocks and audit trails.
/// Safe to share between threads.
#[pyclass(frozen, module = "outguard")]
pub struct Engine {
    inner: RwLock<HeapEngine>,
    policy_file: RwLock<String>,
}

/// The core's events with their tenants' ids (read from `e`, locked).
pub(crate) fn events_of(e: &impl TenantNames, evs: &[CoreEvent]) -> Vec<EventData> {
    evs.iter()
        .map(|ev| EventData {
            ev: *ev,
            tenant: e.name(ev.tenant()).to_owned(),
        })
        .collect()
}

/// Message fields of the scalar calls (of `Engine` and `SharedEngine`).
pub(crate) struct Fields<'a, 'py> {
    pub now: &'a Bound<'py, PyAny>,
    pub mail_from: &'a Bound<'py, PyAny>,
    pub tenant: Option<String>,
    pub client_ip: Option<&'a Bound<'py, PyAny>>,
    pub auth_user: Option<String>,
    pub cert_domain: Option<String>,
    pub forwarded: bool,
    pub spf_pass: bool,
    pub dkim_pass: bool,
    pub recipients: u32,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

impl Fields<'_, '_> {
    pub(crate) fn message(self) -> PyResult<(u64, OwnedMessage)> {
        Ok((
            convert::time(self.now, "now")?,
            OwnedMessage {
                mail_from: convert::mail_from(self.mail_from)?,
                tenant: non_empty(self.tenant),
                client_ip: convert::opt_ip(self.client_ip)?,
                auth_user: convert::idna_text(non_empty(self.auth_user)),
                cert_domain: convert::idna_text(non_empty(self.cert_domain)),
                forwarded: self.forwarded,
                spf_pass: self.spf_pass,
                dkim_pass: self.dkim_pass,
                recipients: self.recipients,
            },
        ))
    }
}

/// What a scalar call's message cannot borrow from its arguments, owned by the caller for the
/// call (so the message itself is only borrowed text): the bytes objects of `str` texts
/// (Python 3.9) and converted texts (IDNA, a `mail_from` of another type). One slot per field,
/// each filled at most once. Each group is made when first needed (most calls need neither:
/// two empty cells are all a call makes and drops).
#[derive(Default)]
pub(crate) struct Keep<'py> {
    texts: OnceCell<Box<KeptTexts<'py>>>,
    owned: OnceCell<Box<KeptOwned>>,
}

/// The bytes objects of `str` texts (Python 3.9).
#[derive(Default)]
struct KeptTexts<'py> {
    mail_from: fastcall::Keep<'py>,
    tenant: fastcall::Keep<'py>,
    auth_user: fastcall::Keep<'py>,
    cert_domain: fastcall::Keep<'py>,
    client_ip: fastcall::Keep<'py>,
    verdict: fastcall::Keep<'py>,
}

/// Converted texts.
#[derive(Default)]
struct KeptOwned {
    mail_from: OnceCell<Vec<u8>>,
    auth_user: OnceCell<String>,
    cert_domain: OnceCell<String>,
}

impl<'py> Keep<'py> {
    fn texts(&self) -> &KeptTexts<'py> {
        self.texts.get_or_init(Box::default)
    }
    fn owned(&self) -> &KeptOwned {
        self.owned.get_or_init(Box::default)
    }
}

/// `o` as a `str` (the exact type checked first: a pointer comparison).
#[inline]
fn as_str_obj<'k, 'py>(o: Borrowed<'k, 'py, PyAny>) -> Option<Borrowed<'k, 'py, PyString>> {
    match o.cast_exact::<PyString>() {
        Ok(s) => Some(s),
        Err(_) => o.cast::<PyString>().ok(),
    }
}

/// An optional `str` argument (`None`: absent) and its text, as `what` in errors.
#[inline(always)]
fn opt_str<'k, 'py: 'k>(
    obj: Option<Borrowed<'k, 'py, PyAny>>,
    what: &str,
    keep: impl FnOnce() -> &'k fastcall::Keep<'py>,
) -> PyResult<Option<(Borrowed<'k, 'py, PyString>, &'k str)>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => match as_str_obj(o) {
            Some(s) => Ok(Some((s, fastcall::text(s, keep)?))),
            None => Err(not_str(what, o)),
        },
    }
}

#[cold]
#[inline(never)]
fn not_str(what: &str, o: Borrowed<'_, '_, PyAny>) -> PyErr {
    match o.get_type().name() {
        Ok(n) => PyTypeError::new_err(format!("{what}: expected str or None, got {n}")),
        Err(e) => e,
    }
}

/// A text field that IDNA may convert: its conversion if it has one, else the given text
/// (`None` when absent or empty).
#[inline(always)]
fn idna_field<'k, 'py: 'k>(
    obj: Option<Borrowed<'k, 'py, PyAny>>,
    what: &str,
    keep: impl FnOnce() -> &'k fastcall::Keep<'py>,
    converted: impl FnOnce() -> &'k OnceCell<String>,
) -> PyResult<Option<&'k str>> {
    let Some((_, t)) = opt_str(obj, what, keep)? else {
        return Ok(None);
    };
    if !t.is_ascii() {
        return Ok(Some(idna_text(t, converted)));
    }
    Ok(Some(t).filter(|s| !s.is_empty()))
}

/// A non-ASCII text field: its IDNA conversion if it has one, else itself.
#[cold]
#[inline(never)]
fn idna_text<'k>(t: &'k str, converted: impl FnOnce() -> &'k OnceCell<String>) -> &'k str {
    match convert::idna(t) {
        Some(c) => converted().get_or_init(|| c),
        None => t,
    }
}

/// The message of a scalar call, read from its arguments (`fastcall::Args`), its text lent by
/// the argument objects wherever it can be (else by a `Keep`). Converts every field as the
/// PyO3 methods do (`Fields::message`).
pub(crate) struct Scalar<'k, 'py> {
    pub now: u64,
    msg: Message<'k>,
    /// The `tenant` argument (when a non-empty, exact `str`).
    tenant: Option<Borrowed<'k, 'py, PyString>>,
    /// `verdict` (methods that take it; `"clean"` when not given).
    pub verdict: Verdict,
}

fn missing(method: &str, k: usize) -> PyErr {
    PyTypeError::new_err(format!(
        "{method}() missing required argument '{}'",
        fastcall::NAMES[k]
    ))
}

/// A flag argument given as `o`: `None` and the two `bool`s read by identity, anything else
/// converted as `bool` (or refused); `None` for that when `strict`.
fn flag_of(k: usize, o: Borrowed<'_, '_, PyAny>, strict: bool) -> PyResult<Option<bool>> {
    if o.is_none() || o.as_ptr() == PyBool::new(o.py(), false).as_ptr() {
        Ok(Some(false))
    } else if o.as_ptr() == PyBool::new(o.py(), true).as_ptr() {
        Ok(Some(true))
    } else if strict {
        Ok(None)
    } else {
        o.extract::<bool>().map(Some).map_err(|_| not_bool(k, o))
    }
}

fn not_bool(k: usize, o: Borrowed<'_, '_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "{}: expected a bool, got {}",
        fastcall::NAMES[k],
        o.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    ))
}

impl<'k, 'py> Scalar<'k, 'py> {
    #[inline(always)]
    pub(crate) fn read(
        method: &str,
        a: &fastcall::Args<'k, 'py>,
        keep: &'k Keep<'py>,
        strict: bool,
    ) -> PyResult<Option<Self>> {
        let now_obj = a[0].ok_or_else(|| missing(method, 0))?;
        let now = match fastcall::small_uint(now_obj) {
            Some(v) => v,
            None if strict => return Ok(None),
            None => convert::time(&now_obj.to_owned(), "now")?,
        };
        let mf = a[1].ok_or_else(|| missing(method, 1))?;
        let mail_from: &'k [u8] = if let Some(s) = as_str_obj(mf) {
            let t = fastcall::text(s, || &keep.texts().mail_from)?;
            match Some(t)
                .filter(|s| !s.is_ascii())
                .and_then(outguard::policy::idna::address_to_ascii)
            {
                Some(c) => keep.owned().mail_from.get_or_init(|| c.into_bytes()),
                None => t.as_bytes(),
            }
        } else if let Ok(b) = mf.cast_exact::<PyBytes>() {
            fastcall::bytes_of(b)
        } else if strict {
            return Ok(None);
        } else if let Ok(b) = mf.cast::<PyBytes>() {
            fastcall::bytes_of(b)
        } else {
            let v = convert::mail_from(&mf.to_owned())?;
            keep.owned().mail_from.get_or_init(|| v)
        };
        let tenant =
            opt_str(a[2], "tenant", || &keep.texts().tenant)?.filter(|(_, t)| !t.is_empty());
        let client_ip = match a[3] {
            None => None,
            // A str is read in place (no copies), as the other text fields are.
            Some(o) => match as_str_obj(o) {
                Some(s) => match fastcall::text(s, || &keep.texts().client_ip)? {
                    "" => None,
                    t => Some(convert::parse_ip(t)?),
                },
                None if o.is_none() => None,
                None if strict => return Ok(None),
                None => convert::opt_ip(Some(&o))?,
            },
        };
        let flag = |k: usize| -> PyResult<Option<bool>> {
            match a[k] {
                None => Ok(Some(false)),
                Some(o) => flag_of(k, o, strict),
            }
        };
        // (Most calls give no flag: one test for the three.)
        let flags = match a[6..9] {
            [None, None, None] => (Some(false), Some(false), Some(false)),
            _ => (flag(6)?, flag(7)?, flag(8)?),
        };
        let (Some(forwarded), Some(spf_pass), Some(dkim_pass)) = flags else {
            return Ok(None);
        };
        let recipients = match a[9] {
            None => 1,
            Some(o) => match fastcall::small_uint(o).and_then(|v| u32::try_from(v).ok()) {
                Some(v) => v,
                None if strict => return Ok(None),
                None => o.extract::<u32>().map_err(|_| {
                    PyValueError::new_err(format!(
                        "recipients: expected a count (0 ..= 4294967295), got {}",
                        o.repr().map(|r| r.to_string()).unwrap_or_default()
                    ))
                })?,
            },
        };
        let verdict = match a[fastcall::VERDICT] {
            None => Verdict::Clean,
            Some(o) => match as_str_obj(o) {
                Some(s) => convert::verdict(fastcall::text(s, || &keep.texts().verdict)?)?,
                None => {
                    return Err(PyTypeError::new_err(format!(
                        "verdict: expected str, got {}",
                        o.get_type().name()?
                    )))
                }
            },
        };
        Ok(Some(Scalar {
            now,
            msg: Message {
                mail_from,
                tenant: tenant.map(|(_, t)| t),
                client_ip,
                auth_user: idna_field(
                    a[4],
                    "auth_user",
                    || &keep.texts().auth_user,
                    || &keep.owned().auth_user,
                )?,
                cert_domain: idna_field(
                    a[5],
                    "cert_domain",
                    || &keep.texts().cert_domain,
                    || &keep.owned().cert_domain,
                )?,
                forwarded,
                spf_pass,
                dkim_pass,
                recipients,
            },
            // Kept for the Decision only when exactly a `str` (a subclass is not handed back).
            tenant: tenant
                .map(|(s, _)| s)
                .filter(|s| s.is_exact_instance_of::<PyString>()),
            verdict,
        }))
    }

    /// The message, borrowing the arguments.
    #[inline]
    pub(crate) fn message(&self) -> &Message<'k> {
        &self.msg
    }

    /// The `tenant` argument's text when the `Decision` may hold the argument itself (an
    /// exact, non-empty `str`).
    #[inline]
    pub(crate) fn tenant_text(&self) -> Option<&'k str> {
        self.tenant.and(self.msg.tenant)
    }

    /// The `Decision` of a scalar call: the core's decision `d`, its tenant's `Name` (read
    /// with the engine locked) and the events the call caused.
    #[inline]
    pub(crate) fn decision(
        &self,
        py: Python<'py>,
        d: &outguard::Decision,
        n: Name,
        events: Vec<EventData>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let tenant = match n {
            Name::None => None,
            Name::Same => self
                .tenant
                .map(|s| TenantName::Given(s.to_owned().unbind())),
            Name::Text(t) => Some(TenantName::Text(t)),
        };
        reuse::decision(py, d, tenant, events).map(Some)
    }
}

/// A decision's tenant name, copied out while the engine is locked.
pub(crate) enum Name {
    None,
    Same,
    Text(Box<str>),
}

/// The tenant ids of an engine (the in-memory one and the shared one).
pub(crate) trait TenantNames {
    /// `Engine::tenant_name_is`.
    fn name_is(&self, t: TenantId, name: &str) -> bool;
    /// `Engine::tenant_name`.
    fn name(&self, t: TenantId) -> &str;
}

impl TenantNames for HeapEngine {
    fn name_is(&self, t: TenantId, name: &str) -> bool {
        self.tenant_name_is(t, name)
    }
    fn name(&self, t: TenantId) -> &str {
        self.tenant_name(t)
    }
}

/// The tenant's name for decision `d` (read from `e`, locked): `Same` when it is the text of
/// the `tenant` argument (`given`), so the `Decision` can hold the caller's `str`.
pub(crate) fn name_of(given: Option<&str>, d: &outguard::Decision, e: &impl TenantNames) -> Name {
    match d.tenant {
        None => Name::None,
        Some(t) => match given {
            Some(g) if e.name_is(t, g) => Name::Same,
            _ => Name::Text(e.name(t).into()),
        },
    }
}

/// `Engine.check` (`fastcall.rs`).
pub(crate) struct CheckCall;

impl fastcall::Method for CheckCall {
    const NAME: &'static CStr = c"check";
    const VERDICT: bool = false;
    fn call<'py>(
        py: Python<'py>,
        slf: Borrowed<'_, 'py, PyAny>,
        args: &fastcall::Args<'_, 'py>,
        strict: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let engine = slf.cast::<Engine>()?;
        let keep = Keep::default();
        let Some(m) = Scalar::read("check", args, &keep, strict)? else {
            return Ok(None);
        };
        let msg = m.message();
        let (now, given) = (m.now, m.tenant_text());
        let (d, name) = engine.get().read(py, |e| {
            let d = e.check(now, msg);
            (d, name_of(given, &d, e))
        });
        m.decision(py, &d, name, Vec::new())
    }
}

/// `Engine.evaluate` (`fastcall.rs`).
pub(crate) struct EvaluateCall;

impl fastcall::Method for EvaluateCall {
    const NAME: &'static CStr = c"evaluate";
    const VERDICT: bool = true;
    fn call<'py>(
        py: Python<'py>,
        slf: Borrowed<'_, 'py, PyAny>,
        args: &fastcall::Args<'_, 'py>,
        strict: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let engine = slf.cast::<Engine>()?;
        let keep = Keep::default();
        let Some(m) = Scalar::read("evaluate", args, &keep, strict)? else {
            return Ok(None);
        };
        let msg = m.message();
        let (now, verdict, given) = (m.now, m.verdict, m.tenant_text());
        let (d, name, events) = engine.get().write(py, |e| {
            let (d, evs) = e.evaluate(now, msg, verdict);
            (d, name_of(given, &d, e), events_of(e, &evs))
        });
        m.decision(py, &d, name, events)
    }
}

/// Benchmark support: `Engine._check_floor`, the hand-made call with `check`'s arguments
/// matched to their parameters, nothing converted, `None` returned.
pub(crate) struct CallFloor;

impl fastcall::Method for CallFloor {
    const NAME: &'static CStr = c"_check_floor";
    const VERDICT: bool = false;
    fn call<'py>(
        py: Python<'py>,
        slf: Borrowed<'_, 'py, PyAny>,
        args: &fastcall::Args<'_, 'py>,
        _strict: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        slf.cast::<Engine>()?;
        std::hint::black_box(args);
        Ok(Some(py.None()))
    }
}

/// Benchmark support: `Engine._read_floor`, `_check_floor` plus the conversion of every
/// argument (the message built, not decided), `None` returned.
pub(crate) struct ReadFloor;

impl fastcall::Method for ReadFloor {
    const NAME: &'static CStr = c"_read_floor";
    const VERDICT: bool = false;
    fn call<'py>(
        py: Python<'py>,
        slf: Borrowed<'_, 'py, PyAny>,
        args: &fastcall::Args<'_, 'py>,
        strict: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        slf.cast::<Engine>()?;
        let keep = Keep::default();
        let Some(m) = Scalar::read("_read_floor", args, &keep, strict)? else {
            return Ok(None);
        };
        std::hint::black_box(m.message());
        Ok(Some(py.None()))
    }
}

impl Engine {
    fn new(engine: HeapEngine, file: &str) -> Engine {
        Engine {
            inner: RwLock::new(engine),
            policy_file: RwLock::new(file.to_owned()),
        }
    }

    /// Runs `f` under the read lock (releasing the GIL only if it has to wait).
    fn read<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&HeapEngine) -> R + Send) -> R {
        match self.inner.try_read() {
            Ok(g) => f(&g),
            Err(TryLockError::Poisoned(p)) => f(&p.into_inner()),
            Err(TryLockError::WouldBlock) => py.detach(|| {
                let g = self.inner.read().unwrap_or_else(PoisonError::into_inner);
                f(&g)
            }),
        }
    }

    /// Runs `f` under the write lock (releasing the GIL only if it has to wait).
    fn write<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut HeapEngine) -> R + Send) -> R {
        match self.inner.try_write() {
            Ok(mut g) => f(&mut g),
            Err(TryLockError::Poisoned(p)) => f(&mut p.into_inner()),
            Err(TryLockError::WouldBlock) => py.detach(|| {
                let mut g = self.inner.write().unwrap_or_else(PoisonError::into_inner);
                f(&mut g)
            }),
        }
    }

    /// Runs an operator action on a named tenant under the write lock.
    fn on_tenant<R: Send>(
        &self,
        py: Python<'_>,
        tenant: &str,
        f: impl FnOnce(&mut HeapEngine, TenantId) -> Result<R, Error> + Send,
    ) -> PyResult<R> {
        self.write(py, |e| {
            let t = e.tenant(tenant).ok_or(Error::UnknownTenant)?;
            f(e, t)
        })
        .map_err(|err| tenant_error(err, tenant))
    }

    #[allow(clippy::too_many_arguments)]
    fn read_columns(
        &self,
        now: &Bound<'_, PyAny>,
        mail_from: &Bound<'_, PyAny>,
        verdict: Option<&Bound<'_, PyAny>>,
        tenant: Option<&Bound<'_, PyAny>>,
        client_ip: Option<&Bound<'_, PyAny>>,
        auth_user: Option<&Bound<'_, PyAny>>,
        cert_domain: Option<&Bound<'_, PyAny>>,
        forwarded: Option<&Bound<'_, PyAny>>,
        spf_pass: Option<&Bound<'_, PyAny>>,
        dkim_pass: Option<&Bound<'_, PyAny>>,
        recipients: Option<&Bound<'_, PyAny>>,
        count: bool,
    ) -> PyResult<Columns> {
        let now = columns::times(now)?;
        let cols = Columns {
            n: now.len(),
            now,
            mail_from: columns::text(Some(mail_from), "mail_from", columns::mail_from_one)?,
            verdict: if count {
                columns::text(verdict, "verdict", columns::plain_one("verdict"))?
            } else {
                Text::Absent
            },
            tenant: columns::text(tenant, "tenant", columns::plain_one("tenant"))?,
            client_ip: columns::text(client_ip, "client_ip", columns::ip_one)?,
            auth_user: columns::text(auth_user, "auth_user", columns::idna_one("auth_user"))?,
            cert_domain: columns::text(
                cert_domain,
                "cert_domain",
                columns::idna_one("cert_domain"),
            )?,
            forwarded: columns::flags(forwarded, "forwarded")?,
            spf_pass: columns::flags(spf_pass, "spf_pass")?,
            dkim_pass: columns::flags(dkim_pass, "dkim_pass")?,
            recipients: columns::counts(recipients)?,
        };
        cols.check_lengths()?;
        Ok(cols)
    }

    #[allow(clippy::too_many_arguments)]
    fn batch(
        &self,
        py: Python<'_>,
        now: &Bound<'_, PyAny>,
        mail_from: Option<&Bound<'_, PyAny>>,
        verdict: Option<&Bound<'_, PyAny>>,
        tenant: Option<&Bound<'_, PyAny>>,
        client_ip: Option<&Bound<'_, PyAny>>,
        auth_user: Option<&Bound<'_, PyAny>>,
        cert_domain: Option<&Bound<'_, PyAny>>,
        forwarded: Option<&Bound<'_, PyAny>>,
        spf_pass: Option<&Bound<'_, PyAny>>,
        dkim_pass: Option<&Bound<'_, PyAny>>,
        recipients: Option<&Bound<'_, PyAny>>,
        count: bool,
    ) -> PyResult<Replay> {
        // In the order of `fastcall::NAMES`, which names the table's columns.
        let given = [
            Some(now),
            mail_from,
            tenant,
            client_ip,
            auth_user,
            cert_domain,
            forwarded,
            spf_pass,
            dkim_pass,
            recipients,
            verdict,
        ];
        let table =
            match mail_from {
                Some(_) if is_table(now) => return Err(PyTypeError::new_err(
                    "now: a table; give it alone (without mail_from) to read its columns by name",
                )),
                Some(_) => None,
                None => Some(table_columns(now, &given)?),
            };
        // A table's columns, and the arguments for the fields it lacks (the table itself is
        // `now`'s argument).
        let f: [Option<&Bound<'_, PyAny>>; 11] = match &table {
            None => given,
            Some(t) => std::array::from_fn(|k| match k {
                0 => t[0].as_ref(),
                _ => given[k].or(t[k].as_ref()),
            }),
        };
        let (Some(now), Some(mail_from)) = (f[0], f[1]) else {
            return Err(PyTypeError::new_err("mail_from: missing"));
        };
        // 1. Every column read, with the GIL held (in place or copied: see columns.rs).
        let cols = self.read_columns(
            now, mail_from, f[10], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], count,
        )?;
        // 2. Messages built and decided with the GIL released. `cols` (which may hold Arrow
        // arrays whose release needs Python) is dropped afterwards, with the GIL held.
        let r = py.detach(|| {
            let prep = cols.prepare(count)?;
            let reader = cols.reader(&prep)?;
            if count {
                // Every message first: a bad value refuses the batch before anything counts.
                let mut msgs = Vec::new();
                reader.messages(0..cols.n, &mut msgs)?;
                Ok(self.evaluate_all(cols.now.values()?, &msgs, &prep.verdicts))
            } else {
                self.check_all(cols.now.values()?, &reader)
            }
        });
        drop(cols);
        r
    }

    /// `check` of every message, through the core's batch call (order does not matter:
    /// nothing is counted).
    fn check_all(&self, now: &[u64], reader: &columns::Reader<'_>) -> PyResult<Replay> {
        // The core holds a group of messages at a time; `fill` writes the fields that vary
        // (the template has the others), and each decision is made compact as it is made:
        // no buffer of messages or of the core's decisions.
        let n = now.len();
        let mut out = Decisions::with_capacity(n);
        let template = reader.template()?;
        let g = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        g.check_batch_with(
            n,
            template,
            |start, t, msgs| {
                t.copy_from_slice(&now[start..start + t.len()]);
                reader.fill(start, msgs)
            },
            |_, d| out.push(d),
        )?;
        let tenants: Vec<TenantId> = out.tenants().map(TenantId).collect();
        let names = tenant_names(&g, tenants.iter().copied());
        Ok(Replay {
            decisions: out,
            names,
            events: Vec::new(),
        })
    }

    /// `evaluate` of every message in time order (stable for equal times), answered in input
    /// order.
    fn evaluate_all(&self, now: &[u64], msgs: &[Message<'_>], verdicts: &[Verdict]) -> Replay {
        let n = msgs.len();
        let order: Option<Vec<usize>> = if now.windows(2).all(|w| w[0] <= w[1]) {
            None
        } else {
            let mut o: Vec<usize> = (0..n).collect();
            o.sort_by_key(|&i| now[i]);
            Some(o)
        };
        let mut decisions = Decisions::with_capacity(n);
        let mut events: Vec<(usize, CoreEvent)> = Vec::new();
        let mut g = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let e: &mut HeapEngine = &mut g;
        match &order {
            // In time order already (the usual log): each decision made compact as it is
            // made, while in cache.
            None => {
                for i in 0..n {
                    let (d, evs) = e.evaluate(now[i], &msgs[i], verdicts[i]);
                    decisions.push(&d);
                    events.extend(evs.into_iter().map(|ev| (i, ev)));
                }
            }
            // Decided in time order, answered in input order: the decisions are placed in a
            // full-size vector first, then made compact.
            Some(order) => {
                let mut out = vec![NO_DECISION; n];
                for &i in order {
                    let (d, evs) = e.evaluate(now[i], &msgs[i], verdicts[i]);
                    out[i] = d;
                    events.extend(evs.into_iter().map(|ev| (i, ev)));
                }
                decisions.extend(&out);
            }
        }
        let tenants: Vec<TenantId> = decisions.tenants().map(TenantId).collect();
        let names = tenant_names(
            e,
            tenants
                .iter()
                .copied()
                .chain(events.iter().map(|(_, ev)| ev.tenant())),
        );
        drop(g);
        let events = events
            .into_iter()
            .map(|(i, ev)| {
                let tenant = names.get(&ev.tenant).cloned().unwrap_or_default();
                (i, EventData { ev, tenant })
            })
            .collect();
        Replay {
            decisions,
            names,
            events,
        }
    }
}

/// The best of `repeat` timings of `iterations` runs of `f`, in nanoseconds per run.
fn best_ns(repeat: u32, iterations: u32, mut f: impl FnMut()) -> f64 {
    (0..repeat.max(1))
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..iterations {
                f();
            }
            t.elapsed().as_nanos() as f64 / iterations.max(1) as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// A decision to fill a result vector with before the core writes it.
const NO_DECISION: outguard::Decision = outguard::Decision {
    reason: None,
    monitored: None,
    tenant: None,
    attribution: None,
    sender_class: None,
    counters: outguard::Counters {
        total: 0,
        suspicious: 0,
        unregistered: 0,
        min_messages: 0,
        min_suspicious: 0,
        max_ratio_ppm: 0,
        warn_ratio_ppm: 0,
        limit: 0,
    },
    block_ends: None,
};

/// The ids of the distinct tenants among `ids` (a flag per tenant index: no hashing per
/// message).
fn tenant_names(e: &HeapEngine, ids: impl Iterator<Item = TenantId> + Clone) -> Names {
    let max = ids.clone().map(|t| t.0 as usize + 1).max().unwrap_or(0);
    let mut seen = vec![false; max];
    let mut names = Names::default();
    for t in ids {
        if !std::mem::replace(&mut seen[t.0 as usize], true) {
            names.insert(t.0, e.tenant_name(t).to_owned());
        }
    }
    names
}

/// The exception for a `record` the core refused: a message of no tenant, or an unparsable
/// sender (used by `Engine` and `SharedEngine`).
pub(crate) fn record_error(py: Python<'_>, e: Error, mail_from: &[u8]) -> PyErr {
    match e {
        Error::UnknownTenant => match exceptions(py) {
            Ok(x) => PyErr::from_type(
                x.unknown_tenant.bind(py).clone(),
                "the message belongs to no tenant (check refuses it with 5.7.64); \
                 nothing was counted",
            ),
            Err(err) => err,
        },
        Error::InvalidAddress => PyValueError::new_err(format!(
            "invalid sender address {:?} (check refuses it with 5.1.7); nothing was counted",
            String::from_utf8_lossy(mail_from)
        )),
        e => core_error(e),
    }
}

#[pymethods]
impl Engine {
    /// Builds an engine holding `policy` (fresh counters).
    #[new]
    fn py_new(py: Python<'_>, policy: &Policy) -> PyResult<Engine> {
        let e = py
            .detach(|| policy.inner.build())
            .map_err(|e| policy_error(&e))?;
        Ok(Engine::new(e, policy.inner.file()))
    }

    /// Builds an engine for `policy` and restores a snapshot (from `snapshot()`) into it.
    /// Raises `SnapshotError` for a truncated, corrupt, foreign or other-version snapshot.
    #[staticmethod]
    fn restore(py: Python<'_>, policy: &Policy, data: &[u8]) -> PyResult<Engine> {
        let r = py.detach(|| policy.inner.restore(data));
        match r {
            Ok((e, _report)) => Ok(Engine::new(e, policy.inner.file())),
            Err(RestoreError::Policy(p)) => Err(policy_error(&p)),
            Err(RestoreError::Snapshot(e)) => Err(core_error(e)),
        }
    }

    // The scalar calls' placeholders (`CheckCall`, `EvaluateCall`): their names, signatures and
    // docs, which `install` (fastcall.rs) gives the hand-made methods that replace them at import.
    /// Decides one message; counts nothing. Takes the read lock: threads check in parallel.
    #[pyo3(
        text_signature = "($self, now, mail_from, *, tenant=None, client_ip=None, \
                              auth_user=None, cert_domain=None, forwarded=False, \
                              spf_pass=False, dkim_pass=False, recipients=1)"
    )]
    fn check(&self) {}

    /// Counts a message that was accepted and scanned, with the content filter's verdict
    /// (`"clean"`, `"spam"`, `"bulk"`, `"phish"`, `"malware"`), and trips blocks. Returns the
    /// events this caused. Raises `ValueError` for an unparsable sender and
    /// `UnknownTenantError` for a message that belongs to no tenant.
    #[pyo3(signature = (now, mail_from, *, verdict, tenant=None, client_ip=None, auth_user=None,
                        cert_domain=None, forwarded=false, spf_pass=false, dkim_pass=false,
                        recipients=1))]
    #[allow(clippy::too_many_arguments)]
    fn record<'py>(
        &self,
        py: Python<'py>,
        now: &Bound<'py, PyAny>,
        mail_from: &Bound<'py, PyAny>,
        verdict: &str,
        tenant: Option<String>,
        client_ip: Option<&Bound<'py, PyAny>>,
        auth_user: Option<String>,
        cert_domain: Option<String>,
        forwarded: bool,
        spf_pass: bool,
        dkim_pass: bool,
        recipients: u32,
    ) -> PyResult<Bound<'py, PyList>> {
        let v = convert::verdict(verdict)?;
        let (now, msg) = Fields {
            now,
            mail_from,
            tenant,
            client_ip,
            auth_user,
            cert_domain,
            forwarded,
            spf_pass,
            dkim_pass,
            recipients,
        }
        .message()?;
        let r = self.write(py, |e| {
            e.record(now, &msg.as_message(), v)
                .map(|evs| events_of(e, &evs))
        });
        match r {
            Ok(evs) => event_list(py, &evs),
            Err(e) => Err(record_error(py, e, &msg.mail_from)),
        }
    }

    /// `check`, then `record` when the message is accepted. Returns the decision (made before
    /// counting) with the events recording caused in `decision.events`.
    #[pyo3(
        text_signature = "($self, now, mail_from, *, verdict=\"clean\", tenant=None, \
                              client_ip=None, auth_user=None, cert_domain=None, \
                              forwarded=False, spf_pass=False, dkim_pass=False, recipients=1)"
    )]
    fn evaluate(&self) {}

    /// Evaluates a batch of messages given as columns (lists, numpy arrays, pandas or pyarrow
    /// columns; a single value stands for every message) in time order, with the GIL released
    /// for the whole loop. Returns a `Replay` with one entry per message, in input order.
    /// The columns may also come as one table in place of `now` (`mail_from` not given): a
    /// pandas DataFrame, a pyarrow Table or RecordBatch, or a dict of columns, read
    /// by name (`now` or `time`, `mail_from`, ...; other columns are ignored).
    #[pyo3(signature = (now, mail_from=None, verdict=None, tenant=None, client_ip=None,
                        auth_user=None, cert_domain=None, forwarded=None, spf_pass=None,
                        dkim_pass=None, recipients=None))]
    #[allow(clippy::too_many_arguments)]
    fn replay(
        &self,
        py: Python<'_>,
        now: &Bound<'_, PyAny>,
        mail_from: Option<&Bound<'_, PyAny>>,
        verdict: Option<&Bound<'_, PyAny>>,
        tenant: Option<&Bound<'_, PyAny>>,
        client_ip: Option<&Bound<'_, PyAny>>,
        auth_user: Option<&Bound<'_, PyAny>>,
        cert_domain: Option<&Bound<'_, PyAny>>,
        forwarded: Option<&Bound<'_, PyAny>>,
        spf_pass: Option<&Bound<'_, PyAny>>,
        dkim_pass: Option<&Bound<'_, PyAny>>,
        recipients: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Replay> {
        self.batch(
            py,
            now,
            mail_from,
            verdict,
            tenant,
            client_ip,
            auth_user,
            cert_domain,
            forwarded,
            spf_pass,
            dkim_pass,
            recipients,
            true,
        )
    }

    /// Checks a batch of messages given as columns (as `replay`, or one table), counting
    /// nothing, with the GIL released for the whole loop.
    #[pyo3(signature = (now, mail_from=None, tenant=None, client_ip=None, auth_user=None,
                        cert_domain=None, forwarded=None, spf_pass=None, dkim_pass=None,
                        recipients=None))]
    #[allow(clippy::too_many_arguments)]
    fn check_batch(
        &self,
        py: Python<'_>,
        now: &Bound<'_, PyAny>,
        mail_from: Option<&Bound<'_, PyAny>>,
        tenant: Option<&Bound<'_, PyAny>>,
        client_ip: Option<&Bound<'_, PyAny>>,
        auth_user: Option<&Bound<'_, PyAny>>,
        cert_domain: Option<&Bound<'_, PyAny>>,
        forwarded: Option<&Bound<'_, PyAny>>,
        spf_pass: Option<&Bound<'_, PyAny>>,
        dkim_pass: Option<&Bound<'_, PyAny>>,
        recipients: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Replay> {
        self.batch(
            py,
            now,
            mail_from,
            None,
            tenant,
            client_ip,
            auth_user,
            cert_domain,
            forwarded,
            spf_pass,
            dkim_pass,
            recipients,
            false,
        )
    }

    /// Benchmark support (python/bench/overhead.py): nanoseconds per core `Engine::check` of
    /// this message (converted once, outside the timing), best of `repeat` runs of
    /// `iterations` calls, under the read lock as `check` takes it.
    #[pyo3(signature = (iterations, repeat, now, mail_from, *, tenant=None, client_ip=None,
                        auth_user=None, cert_domain=None, forwarded=false, spf_pass=false,
                        dkim_pass=false, recipients=1))]
    #[allow(clippy::too_many_arguments)]
    fn _core_check_ns(
        &self,
        py: Python<'_>,
        iterations: u32,
        repeat: u32,
        now: &Bound<'_, PyAny>,
        mail_from: &Bound<'_, PyAny>,
        tenant: Option<String>,
        client_ip: Option<&Bound<'_, PyAny>>,
        auth_user: Option<String>,
        cert_domain: Option<String>,
        forwarded: bool,
        spf_pass: bool,
        dkim_pass: bool,
        recipients: u32,
    ) -> PyResult<f64> {
        let (now, msg) = Fields {
            now,
            mail_from,
            tenant,
            client_ip,
            auth_user,
            cert_domain,
            forwarded,
            spf_pass,
            dkim_pass,
            recipients,
        }
        .message()?;
        Ok(py.detach(|| {
            let g = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            best_ns(repeat, iterations, || {
                std::hint::black_box(g.check(
                    std::hint::black_box(now),
                    std::hint::black_box(&msg.as_message()),
                ));
            })
        }))
    }

    /// Benchmark support: a method with `check`'s signature that converts nothing and
    /// returns `None` (the floor of a call with these arguments).
    #[pyo3(signature = (now, mail_from, *, tenant=None, client_ip=None, auth_user=None,
                        cert_domain=None, forwarded=None, spf_pass=None, dkim_pass=None,
                        recipients=None))]
    #[allow(clippy::too_many_arguments, unused_variables)]
    fn _call_floor(
        &self,
        now: &Bound<'_, PyAny>,
        mail_from: &Bound<'_, PyAny>,
        tenant: Option<&Bound<'_, PyAny>>,
        client_ip: Option<&Bound<'_, PyAny>>,
        auth_user: Option<&Bound<'_, PyAny>>,
        cert_domain: Option<&Bound<'_, PyAny>>,
        forwarded: Option<&Bound<'_, PyAny>>,
        spf_pass: Option<&Bound<'_, PyAny>>,
        dkim_pass: Option<&Bound<'_, PyAny>>,
        recipients: Option<&Bound<'_, PyAny>>,
    ) {
    }

    /// Benchmark support: replaced at import by the hand-made `_check_floor` (`CallFloor`):
    /// `check`'s arguments matched to parameters, nothing converted, `None` returned.
    #[pyo3(
        text_signature = "($self, now, mail_from, *, tenant=None, client_ip=None, \
                              auth_user=None, cert_domain=None, forwarded=None, spf_pass=None, \
                              dkim_pass=None, recipients=None)"
    )]
    fn _check_floor(&self) {}

    /// Benchmark support: replaced at import by the hand-made `_read_floor` (`ReadFloor`):
    /// `_check_floor` plus every argument converted into a message (not decided).
    #[pyo3(
        text_signature = "($self, now, mail_from, *, tenant=None, client_ip=None, \
                              auth_user=None, cert_domain=None, forwarded=None, spf_pass=None, \
                              dkim_pass=None, recipients=None)"
    )]
    fn _read_floor(&self) {}

    /// Benchmark support: nanoseconds per message of the core's part of `check_batch`
    /// (`count=False`: `Engine::check_batch_at` into a vector of every decision, with the
    /// client IPs given as text parsed by `cidr::parse_ip`) or `replay` (`count=True`:
    /// `evaluate` in time order; this changes the engine's counters) over these columns, read
    /// and converted once outside the timing. Best of `repeat` runs (one run when counting).
    #[pyo3(signature = (repeat, count, now, mail_from, verdict=None, tenant=None, client_ip=None,
                        auth_user=None, cert_domain=None, forwarded=None, spf_pass=None,
                        dkim_pass=None, recipients=None))]
    #[allow(clippy::too_many_arguments)]
    fn _core_batch_ns(
        &self,
        py: Python<'_>,
        repeat: u32,
        count: bool,
        now: &Bound<'_, PyAny>,
        mail_from: &Bound<'_, PyAny>,
        verdict: Option<&Bound<'_, PyAny>>,
        tenant: Option<&Bound<'_, PyAny>>,
        client_ip: Option<&Bound<'_, PyAny>>,
        auth_user: Option<&Bound<'_, PyAny>>,
        cert_domain: Option<&Bound<'_, PyAny>>,
        forwarded: Option<&Bound<'_, PyAny>>,
        spf_pass: Option<&Bound<'_, PyAny>>,
        dkim_pass: Option<&Bound<'_, PyAny>>,
        recipients: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<f64> {
        let cols = self.read_columns(
            now,
            mail_from,
            verdict,
            tenant,
            client_ip,
            auth_user,
            cert_domain,
            forwarded,
            spf_pass,
            dkim_pass,
            recipients,
            count,
        )?;
        let r = py.detach(|| -> PyResult<f64> {
            let prep = cols.prepare(count)?;
            let mut msgs = Vec::new();
            cols.reader(&prep)?.messages(0..cols.n, &mut msgs)?;
            let n = msgs.len().max(1) as f64;
            let now = cols.now.values()?;
            Ok(if count {
                best_ns(1, 1, || {
                    std::hint::black_box(self.evaluate_all(now, &msgs, &prep.verdicts));
                }) / n
            } else {
                // The core's batch call as a Rust caller makes it: every message's decision
                // into a vector of them. Client IPs given as text are the core's to parse
                // (`cidr::parse_ip`, as a Rust caller holding text would), so that is timed too.
                let ips = cols.ip_texts()?;
                let mut out = vec![NO_DECISION; msgs.len()];
                let g = self.inner.read().unwrap_or_else(PoisonError::into_inner);
                best_ns(repeat, 1, || {
                    if let Some(ips) = &ips {
                        for (m, ip) in msgs.iter_mut().zip(ips) {
                            m.client_ip = ip.and_then(outguard::cidr::parse_ip);
                        }
                    }
                    g.check_batch_at(now, std::hint::black_box(&msgs), &mut out);
                    std::hint::black_box(&out);
                }) / n
            })
        });
        drop(cols);
        r
    }

    /// Releases a tenant's block of `rule` (`"tenant_threshold"`/`"5.7.705"`,
    /// `"unregistered_domain"`/`"5.7.750"`, or both with `None`): clears that rule's window
    /// and starts its grace period. Returns a `released` event per block lifted.
    #[pyo3(signature = (tenant, now, rule=None))]
    fn release<'py>(
        &self,
        py: Python<'py>,
        tenant: &str,
        now: &Bound<'py, PyAny>,
        rule: Option<&str>,
    ) -> PyResult<Bound<'py, PyList>> {
        let now = convert::time(now, "now")?;
        let rule = rule.map(convert::rule).transpose()?;
        let evs = self.on_tenant(py, tenant, |e, t| {
            e.release(t, rule, now).map(|evs| events_of(e, &evs))
        })?;
        event_list(py, &evs)
    }

    /// A tenant's state at `now`.
    fn status(
        &self,
        py: Python<'_>,
        tenant: &str,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<TenantStatus> {
        let now = convert::time(now, "now")?;
        self.read(py, |e| {
            let t = e.tenant(tenant).ok_or(Error::UnknownTenant)?;
            e.status(t, now)
        })
        .map(|s| TenantStatus {
            s,
            tenant: tenant.to_owned(),
        })
        .map_err(|err| tenant_error(err, tenant))
    }

    /// Marks a tenant's subscription lapsed: all its mail is refused with 5.7.705.
    fn mark_lapsed<'py>(
        &self,
        py: Python<'py>,
        tenant: &str,
        now: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let now = convert::time(now, "now")?;
        let evs = self.on_tenant(py, tenant, |e, t| {
            e.mark_lapsed(t, now).map(|evs| events_of(e, &evs))
        })?;
        event_list(py, &evs)
    }

    /// Marks a lapsed tenant active again; mail resumes after the policy's renewal delay.
    fn mark_active<'py>(
        &self,
        py: Python<'py>,
        tenant: &str,
        now: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let now = convert::time(now, "now")?;
        let evs = self.on_tenant(py, tenant, |e, t| {
            e.mark_active(t, now).map(|evs| events_of(e, &evs))
        })?;
        event_list(py, &evs)
    }

    /// Expires every timed block that has run out by `now`; returns the `expired` events.
    fn expire<'py>(
        &self,
        py: Python<'py>,
        now: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let now = convert::time(now, "now")?;
        let evs = self.write(py, |e| {
            let mut out = Vec::new();
            e.expire(now, |ev| out.push(*ev));
            events_of(e, &out)
        });
        event_list(py, &evs)
    }

    /// Grants a tenant an exception to the low-reputation rule for `range` until `expires`
    /// (Unix seconds or an aware datetime; `None`: never expires). Granting again updates it.
    #[pyo3(signature = (tenant, range, expires=None))]
    fn grant_exception(
        &self,
        py: Python<'_>,
        tenant: &str,
        range: &Bound<'_, PyAny>,
        expires: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let range = convert::cidr(range)?;
        let expires = convert::opt_time(expires, "expires")?.unwrap_or(u64::MAX);
        self.on_tenant(py, tenant, |e, t| e.grant_exception(t, range, expires))
    }

    /// Revokes a tenant's exception for exactly this range.
    fn revoke_exception(
        &self,
        py: Python<'_>,
        tenant: &str,
        range: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let range = convert::cidr(range)?;
        self.on_tenant(py, tenant, |e, t| e.revoke_exception(t, range))
    }

    /// A tenant's exceptions: `(range, expires)` with `expires` `None` for never.
    fn exceptions(&self, py: Python<'_>, tenant: &str) -> PyResult<Vec<(String, Option<u64>)>> {
        self.read(py, |e| {
            let t = e.tenant(tenant).ok_or(Error::UnknownTenant)?;
            Ok(e.exceptions_of(t)
                .map(|(c, x)| (c.to_string(), (x != u64::MAX).then_some(x)))
                .collect())
        })
        .map_err(|err| tenant_error(err, tenant))
    }

    /// Adds an accepted domain to a tenant (`subdomains` opts in to subdomain matching;
    /// unvalidated domains never make a sender `registered`).
    #[pyo3(signature = (tenant, name, subdomains=false, validated=true))]
    fn add_domain(
        &self,
        py: Python<'_>,
        tenant: &str,
        name: &str,
        subdomains: bool,
        validated: bool,
    ) -> PyResult<()> {
        let name = convert::idna(name).unwrap_or_else(|| name.to_owned());
        self.on_tenant(py, tenant, |e, t| {
            e.add_domain(t, &name, subdomains, validated)
        })
    }

    /// Marks an accepted domain of a tenant validated.
    fn validate_domain(&self, py: Python<'_>, tenant: &str, name: &str) -> PyResult<()> {
        let name = convert::idna(name).unwrap_or_else(|| name.to_owned());
        self.on_tenant(py, tenant, |e, t| e.validate_domain(t, &name))
    }

    /// Removes an accepted domain from a tenant.
    fn remove_domain(&self, py: Python<'_>, tenant: &str, name: &str) -> PyResult<()> {
        let name = convert::idna(name).unwrap_or_else(|| name.to_owned());
        self.on_tenant(py, tenant, |e, t| e.remove_domain(t, &name))
    }

    /// A tenant's accepted domains: `(name, subdomains, validated)`.
    fn domains(&self, py: Python<'_>, tenant: &str) -> PyResult<Vec<(String, bool, bool)>> {
        self.read(py, |e| {
            let t = e.tenant(tenant).ok_or(Error::UnknownTenant)?;
            Ok(e.domains_of(t)
                .map(|(n, s, v)| (n.to_owned(), s, v))
                .collect())
        })
        .map_err(|err| tenant_error(err, tenant))
    }

    /// Adds a connector to a tenant: a certificate connector with `certificate`, an IP connector
    /// with `ranges`, or both. `created` (Unix seconds) feeds `suspicious_connectors`.
    #[pyo3(signature = (tenant, name, certificate=None, ranges=Vec::new(), created=None))]
    fn add_connector(
        &self,
        py: Python<'_>,
        tenant: &str,
        name: &str,
        certificate: Option<String>,
        ranges: Vec<Bound<'_, PyAny>>,
        created: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let ranges = ranges
            .iter()
            .map(convert::cidr)
            .collect::<PyResult<Vec<_>>>()?;
        let created = convert::opt_time(created, "created")?.unwrap_or(0);
        let cert = non_empty(certificate);
        self.on_tenant(py, tenant, |e, t| {
            let c = e.add_connector(t, name, cert.as_deref(), created)?;
            for r in &ranges {
                if let Err(err) = e.add_connector_range(c, *r) {
                    // All or nothing: take the half-made connector away again.
                    let _ = e.remove_connector(c);
                    return Err(err);
                }
            }
            Ok(())
        })
    }

    /// Removes a tenant's connector with its ranges and certificate entry.
    fn remove_connector(&self, py: Python<'_>, tenant: &str, name: &str) -> PyResult<()> {
        self.on_tenant(py, tenant, |e, t| {
            let c = e.connector(t, name).ok_or(Error::NotFound)?;
            e.remove_connector(c)
        })
    }

    /// Adds a tenant (no domains yet).
    #[pyo3(signature = (tenant, licensed=true))]
    fn add_tenant(&self, py: Python<'_>, tenant: &str, licensed: bool) -> PyResult<()> {
        self.write(py, |e| e.add_tenant(tenant, licensed).map(|_| ()))
            .map_err(core_error)
    }

    /// Removes a tenant with its domains, connectors, exceptions and state.
    fn remove_tenant(&self, py: Python<'_>, tenant: &str) -> PyResult<()> {
        self.on_tenant(py, tenant, |e, t| e.remove_tenant(t))
    }

    /// Marks a tenant licensed or not (5.7.708 with `scope = "unlicensed"` spares licensed ones).
    fn set_licensed(&self, py: Python<'_>, tenant: &str, licensed: bool) -> PyResult<()> {
        self.on_tenant(py, tenant, |e, t| e.set_licensed(t, licensed))
    }

    /// Puts a range on the low-reputation list.
    fn add_low_reputation(&self, py: Python<'_>, range: &Bound<'_, PyAny>) -> PyResult<()> {
        let range = convert::cidr(range)?;
        self.write(py, |e| e.add_low_reputation(range))
            .map_err(core_error)
    }

    /// Takes a range off the low-reputation list.
    fn remove_low_reputation(&self, py: Python<'_>, range: &Bound<'_, PyAny>) -> PyResult<()> {
        let range = convert::cidr(range)?;
        self.write(py, |e| e.remove_low_reputation(range))
            .map_err(core_error)
    }

    /// Whether an address is on the low-reputation list.
    fn is_low_reputation(&self, py: Python<'_>, ip: &Bound<'_, PyAny>) -> PyResult<bool> {
        let ip = convert::ip(ip)?;
        Ok(self.read(py, |e| e.is_low_reputation(ip)))
    }

    /// Every tenant refused at `now` (or that would be, in monitor mode), one entry per reason.
    fn restricted(&self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<Vec<Restriction>> {
        let now = convert::time(now, "now")?;
        Ok(self.read(py, |e| {
            e.restricted(now)
                .map(|r| Restriction {
                    r,
                    tenant: e.tenant_name(r.tenant).to_owned(),
                })
                .collect()
        }))
    }

    /// Connectors worth an operator's look at `now`: created recently, certificate domain not
    /// accepted, or a source range on the low-reputation list.
    fn suspicious_connectors(
        &self,
        py: Python<'_>,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<SuspiciousConnector>> {
        let now = convert::time(now, "now")?;
        Ok(self.read(py, |e| {
            e.suspicious_connectors(now)
                .map(|s| {
                    let (t, name, cert, created) = e
                        .connector_info(s.connector)
                        .unwrap_or((s.tenant, "", None, 0));
                    SuspiciousConnector {
                        tenant: e.tenant_name(t).to_owned(),
                        name: name.to_owned(),
                        certificate: cert.map(str::to_owned),
                        created,
                        why: s.why,
                    }
                })
                .collect()
        }))
    }

    /// A tenant's audit trail, oldest first (at most the policy's `audit_depth` entries).
    fn audit<'py>(&self, py: Python<'py>, tenant: &str) -> PyResult<Bound<'py, PyList>> {
        let evs = self
            .read(py, |e| {
                let t = e.tenant(tenant).ok_or(Error::UnknownTenant)?;
                let evs: Vec<CoreEvent> = e.audit(t).copied().collect();
                Ok(events_of(e, &evs))
            })
            .map_err(|err| tenant_error(err, tenant))?;
        event_list(py, &evs)
    }

    /// The tenant ids.
    fn tenants(&self, py: Python<'_>) -> Vec<String> {
        self.read(py, |e| {
            e.tenants().map(|t| e.tenant_name(t).to_owned()).collect()
        })
    }

    /// How full each table is, against its capacity.
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (u, c) = self.read(py, |e| (e.usage(), *e.capacity()));
        let d = PyDict::new(py);
        for (k, used, cap) in [
            ("tenants", u.tenants, c.tenants),
            ("domains", u.domains, c.domains),
            ("connectors", u.connectors, c.connectors),
            ("ranges", u.ranges, c.ranges),
            ("name_bytes", u.name_bytes, c.name_bytes),
            ("overrides", u.overrides, c.overrides),
        ] {
            d.set_item(k, (used, cap))?;
        }
        Ok(d)
    }

    /// Swaps in a new policy, keeping every counter, block and audit entry of tenants that
    /// still exist. A policy that does not build leaves the engine as it was.
    fn reload(&self, py: Python<'_>, policy: &Policy) -> PyResult<ReloadReport> {
        // Build without the lock (and without the GIL); only the state swap locks.
        let fresh = py.detach(|| policy.inner.build());
        let r = fresh.map(|fresh| self.write(py, |e| outguard::policy::replace_engine(fresh, e)));
        match r {
            Ok(rep) => {
                *self
                    .policy_file
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = policy.inner.file().to_owned();
                Ok(ReloadReport {
                    removed: rep.removed,
                    added: rep.added,
                })
            }
            Err(e) => Err(policy_error(&e)),
        }
    }

    /// Counters, blocks, grace periods, lapsed state and audit trails as bytes (versioned,
    /// checksummed). Give them to `Engine.restore(policy, data)`.
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let data = self.read(py, snapshot);
        PyBytes::new(py, &data)
    }

    /// Restores a snapshot into this engine. Raises `SnapshotError` (and leaves the engine as
    /// it was) for a truncated, corrupt, foreign or other-version snapshot.
    fn restore_snapshot(&self, py: Python<'_>, data: &[u8]) -> PyResult<RestoreReport> {
        self.write(py, |e| e.restore_snapshot(data))
            .map(|r| RestoreReport {
                restored: r.restored,
                unknown: r.unknown,
            })
            .map_err(core_error)
    }

    /// The file of the policy the engine was built from (or last reloaded with).
    #[getter]
    fn policy_file(&self) -> String {
        self.policy_file
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn __contains__(&self, py: Python<'_>, tenant: &str) -> bool {
        self.read(py, |e| e.tenant(tenant).is_some())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.read(py, |e| e.usage().tenants as usize)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let u = self.read(py, |e| e.usage());
        format!(
            "<Engine policy={:?}: {} tenants, {} domains, {} connectors, {} ranges>",
            self.policy_file(),
            u.tenants,
            u.domains,
            u.connectors,
            u.ranges
        )
    }
}

/// Whether `obj` is one of the tables `table_columns` reads (a dict of columns, or an object
/// with named columns) rather than a column.
fn is_table(obj: &Bound<'_, PyAny>) -> bool {
    let py = obj.py();
    obj.is_instance_of::<PyDict>()
        || obj
            .hasattr(pyo3::intern!(py, "column_names"))
            .unwrap_or(false)
        || obj.hasattr(pyo3::intern!(py, "columns")).unwrap_or(false)
}

/// The columns of a batch given as one table (a pandas DataFrame, a pyarrow Table
/// or RecordBatch, a dict of columns), by field name (`fastcall::NAMES`; the time also as
/// `time`, as in logs); other columns are ignored. `given` holds the arguments (the table
/// first): a field given both ways is refused.
fn table_columns<'py>(
    table: &Bound<'py, PyAny>,
    given: &[Option<&Bound<'py, PyAny>>; 11],
) -> PyResult<[Option<Bound<'py, PyAny>>; 11]> {
    let py = table.py();
    let names_of = |o: Bound<'py, PyAny>| -> PyResult<Vec<String>> {
        // Column names that are not strings (a DataFrame's may be numbers) name no field.
        Ok(o.try_iter()?
            .filter_map(|n| n.ok()?.extract::<String>().ok())
            .collect())
    };
    let names = if let Ok(d) = table.cast::<PyDict>() {
        names_of(d.keys().into_any())?
    } else if let Ok(n) = table.getattr(pyo3::intern!(py, "column_names")) {
        names_of(n)?
    } else if let Ok(c) = table.getattr(pyo3::intern!(py, "columns")) {
        names_of(c)?
    } else {
        return Err(PyTypeError::new_err(
            "mail_from: missing (give the columns, or one table in place of `now`: a DataFrame, \
             a pyarrow Table or RecordBatch, or a dict of columns)",
        ));
    };
    let has = |n: &str| names.iter().any(|x| x == n);
    let mut out: [Option<Bound<'py, PyAny>>; 11] = Default::default();
    for (k, field) in fastcall::NAMES.iter().enumerate() {
        let name = if k == 0 && !has("now") { "time" } else { field };
        if !has(name) {
            continue;
        }
        if k > 0 && given[k].is_some() {
            return Err(PyTypeError::new_err(format!(
                "{field}: given both as an argument and as a column of the table"
            )));
        }
        out[k] = Some(table.get_item(name)?);
    }
    for (k, what) in [(0, "now (or time)"), (1, "mail_from")] {
        if out[k].is_none() {
            return Err(PyTypeError::new_err(format!(
                "the table has no {what} column (its columns: {})",
                names.join(", ")
            )));
        }
    }
    Ok(out)
}
