//! `outguard.SharedEngine`: an engine over a compiled policy image and a shared state file
//! (the core's `outguard::shared`), so that several processes (forked workers, a mail server's
//! per-connection processes, an analysis script beside them) count into one set of counters.
//!
//! Errors: the core's engine errors as for `Engine`; a policy that does not build is
//! `PolicyError`; a file that cannot be opened or written is `OSError` (`FileExistsError` when
//! `create_state` finds a file there); a damaged, truncated, foreign or superseded file, or a
//! state file of another image, is `OutguardError` with a message naming the file.
//! Every call that may wait for the state file's lock releases the GIL.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use outguard::shared::{self, SharedEngine as CoreShared, SharedError};
use pyo3::exceptions::{PyBlockingIOError, PyFileExistsError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::convert;
use crate::engine::{events_of, name_of, record_error, Fields, Keep, Scalar, TenantNames};
use crate::error::{core_error, exceptions, policy_error, tenant_error};
use crate::fastcall;
use crate::policy::Policy;
use crate::types::{event_list, Decision, DecisionData, ReloadReport, TenantName, TenantStatus};

fn shared_error(err: SharedError) -> PyErr {
    let msg = err.to_string();
    match err {
        SharedError::Engine(e) => core_error(e),
        SharedError::Policy(p) => policy_error(&p),
        SharedError::Exists { .. } => PyFileExistsError::new_err(msg),
        SharedError::Io { .. } => PyOSError::new_err(msg),
        _ => Python::attach(|py| match exceptions(py) {
            Ok(e) => PyErr::from_type(e.base.bind(py).clone(), msg),
            Err(err) => err,
        }),
    }
}

/// An engine over a compiled policy image and a shared state file. Every process that opens
/// the same state file shares its counters, blocks and audit trails; a count is committed when
/// `record` returns, whatever happens to the process next. Safe to share between threads.
///
/// Policy changes (domains, connectors, exceptions) are made in the policy: compile a new
/// image and `SharedEngine.migrate` the state to it (every process follows by itself).
#[pyclass(frozen, module = "outguard")]
pub struct SharedEngine {
    inner: Mutex<CoreShared>,
}

impl SharedEngine {
    /// Runs `f` on the engine with the GIL released (it may wait for the file lock).
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut CoreShared) -> R + Send) -> R {
        py.detach(|| {
            let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut g)
        })
    }

    /// Runs an action on a named tenant (`with`); the core's errors name the tenant.
    fn on_tenant<R: Send>(
        &self,
        py: Python<'_>,
        tenant: &str,
        f: impl FnOnce(&mut CoreShared) -> Result<R, SharedError> + Send,
    ) -> PyResult<R> {
        self.with(py, f).map_err(|err| match err {
            SharedError::Engine(e) => tenant_error(e, tenant),
            other => shared_error(other),
        })
    }
}

impl TenantNames for CoreShared {
    fn name_is(&self, t: outguard::TenantId, name: &str) -> bool {
        self.tenant_name_is(t, name)
    }
    fn name(&self, t: outguard::TenantId) -> &str {
        self.tenant_name(t)
    }
}

/// `SharedEngine.check` (`fastcall.rs`).
pub(crate) struct SharedCheckCall;

impl fastcall::Method for SharedCheckCall {
    const NAME: &'static std::ffi::CStr = c"check";
    const VERDICT: bool = false;
    fn call<'py>(
        py: Python<'py>,
        slf: pyo3::Borrowed<'_, 'py, PyAny>,
        args: &fastcall::Args<'_, 'py>,
        strict: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let engine = slf.cast::<SharedEngine>()?;
        let keep = Keep::default();
        let Some(m) = Scalar::read("check", args, &keep, strict)? else {
            return Ok(None);
        };
        let (now, msg, given) = (m.now, m.message(), m.tenant_text());
        let (d, name) = engine
            .get()
            .with(py, |e| {
                e.check(now, msg).map(|d| (d, name_of(given, &d, e)))
            })
            .map_err(shared_error)?;
        m.decision(py, &d, name, Vec::new())
    }
}

#[pymethods]
impl SharedEngine {
    /// Opens a policy image and its state file. `image=None` uses the image the state file
    /// names (after a migration the pair stays consistent). Raises `OSError` for a missing
    /// file and `OutguardError` for a damaged, foreign or superseded one.
    #[new]
    #[pyo3(signature = (image, state))]
    fn py_new(py: Python<'_>, image: Option<PathBuf>, state: PathBuf) -> PyResult<SharedEngine> {
        let e = py
            .detach(|| match &image {
                Some(i) => CoreShared::open(i, &state),
                None => CoreShared::open_state(&state),
            })
            .map_err(shared_error)?;
        Ok(SharedEngine {
            inner: Mutex::new(e),
        })
    }

    /// Compiles `policy` into a policy image at `image` (replacing a file there atomically)
    /// and verifies it. Returns the image id.
    #[staticmethod]
    fn compile(py: Python<'_>, policy: &Policy, image: PathBuf) -> PyResult<u64> {
        py.detach(|| shared::compile_policy(&policy.inner, &image))
            .map(|i| i.id)
            .map_err(shared_error)
    }

    /// Creates a state file for an image (zero counters). Raises `FileExistsError` when a file
    /// is already there (use `migrate` to move state to a new image).
    #[staticmethod]
    fn create_state(py: Python<'_>, image: PathBuf, state: PathBuf) -> PyResult<()> {
        py.detach(|| shared::create_state(&image, &state))
            .map(|_| ())
            .map_err(shared_error)
    }

    /// Moves the state of `old_state` (for `old_image`) to a new state file for `new_image` at
    /// `new_state` (which may be `old_state`): counters, blocks and audit trails of the tenants
    /// that remain. Processes using the old file switch on their next call.
    #[staticmethod]
    fn migrate(
        py: Python<'_>,
        old_image: PathBuf,
        old_state: PathBuf,
        new_image: PathBuf,
        new_state: PathBuf,
    ) -> PyResult<ReloadReport> {
        py.detach(|| shared::migrate(&old_image, &old_state, &new_image, &new_state))
            .map(|r| ReloadReport {
                removed: r.removed,
                added: r.added,
            })
            .map_err(shared_error)
    }

    /// Repairs a state file that no process has open: resets stripe locks left held by
    /// processes that are gone, rolls back unfinished writes, publishes committed ones and
    /// checks every tenant record against the image (`image` None: the one the state file
    /// names). Raises `BlockingIOError` when a process has the file open (nothing changed).
    /// Returns the counts of what was done.
    #[staticmethod]
    fn repair(
        py: Python<'_>,
        image: Option<PathBuf>,
        state: PathBuf,
    ) -> PyResult<std::collections::BTreeMap<&'static str, u32>> {
        let r = py
            .detach(|| {
                let image = match image {
                    Some(i) => i,
                    None => shared::read_state_info(&state)?.image_path,
                };
                shared::repair_state(&image, &state)
            })
            .map_err(|e| match e {
                SharedError::InUse { .. } => PyBlockingIOError::new_err(e.to_string()),
                e => shared_error(e),
            })?;
        Ok([
            ("locks_reset", r.locks_reset),
            ("rolled_back", r.rolled_back),
            ("published", r.published),
        ]
        .into_iter()
        .collect())
    }

    /// Decides one message against the shared state; counts nothing (as `Engine.check`).
    // A placeholder: its name, signature and docs go to the hand-made `SharedCheckCall`, which
    // replaces it at import (fastcall.rs).
    #[pyo3(
        text_signature = "($self, now, mail_from, *, tenant=None, client_ip=None, \
                              auth_user=None, cert_domain=None, forwarded=False, \
                              spf_pass=False, dkim_pass=False, recipients=1)"
    )]
    fn check(&self) {}

    /// Counts a message that was accepted and scanned (as `Engine.record`) in the shared state.
    /// Returns the events it caused.
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
        let r = self.with(py, |e| {
            e.record(now, &msg.as_message(), v)
                .map(|evs| events_of(e, &evs))
        });
        match r {
            Ok(evs) => event_list(py, &evs),
            Err(SharedError::Engine(e)) => Err(record_error(py, e, &msg.mail_from)),
            Err(e) => Err(shared_error(e)),
        }
    }

    /// `check`, then `record` when accepted, as one step under the state file's lock. Returns
    /// the decision with the events in `decision.events`.
    #[pyo3(signature = (now, mail_from, *, verdict="clean", tenant=None, client_ip=None,
                        auth_user=None, cert_domain=None, forwarded=false, spf_pass=false,
                        dkim_pass=false, recipients=1))]
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        py: Python<'_>,
        now: &Bound<'_, PyAny>,
        mail_from: &Bound<'_, PyAny>,
        verdict: &str,
        tenant: Option<String>,
        client_ip: Option<&Bound<'_, PyAny>>,
        auth_user: Option<String>,
        cert_domain: Option<String>,
        forwarded: bool,
        spf_pass: bool,
        dkim_pass: bool,
        recipients: u32,
    ) -> PyResult<Decision> {
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
        self.with(py, |e| {
            e.evaluate(now, &msg.as_message(), v).map(|(d, evs)| {
                Decision::new(DecisionData {
                    d,
                    tenant: d.tenant.map(|t| TenantName::text(e.tenant_name(t))),
                    events: events_of(e, &evs),
                })
            })
        })
        .map_err(shared_error)
    }

    /// Releases a tenant's block of `rule` (or of both windowed rules with `None`) in the
    /// shared state. Returns a `released` event per block lifted.
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
        let evs = self.on_tenant(py, tenant, |e| {
            e.release(tenant, rule, now).map(|evs| events_of(e, &evs))
        })?;
        event_list(py, &evs)
    }

    /// Marks a tenant's subscription lapsed in the shared state.
    fn mark_lapsed<'py>(
        &self,
        py: Python<'py>,
        tenant: &str,
        now: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let now = convert::time(now, "now")?;
        let evs = self.on_tenant(py, tenant, |e| {
            e.mark_lapsed(tenant, now).map(|evs| events_of(e, &evs))
        })?;
        event_list(py, &evs)
    }

    /// Marks a lapsed tenant active again in the shared state.
    fn mark_active<'py>(
        &self,
        py: Python<'py>,
        tenant: &str,
        now: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let now = convert::time(now, "now")?;
        let evs = self.on_tenant(py, tenant, |e| {
            e.mark_active(tenant, now).map(|evs| events_of(e, &evs))
        })?;
        event_list(py, &evs)
    }

    /// A tenant's state at `now`, from the shared state.
    fn status(
        &self,
        py: Python<'_>,
        tenant: &str,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<TenantStatus> {
        let now = convert::time(now, "now")?;
        self.on_tenant(py, tenant, |e| e.status(tenant, now))
            .map(|s| TenantStatus {
                s,
                tenant: tenant.to_owned(),
            })
    }

    /// Writes the state file's changed pages to disk (`msync`); other processes see changes
    /// without it.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |e| e.sync()).map_err(shared_error)
    }

    /// The state file in use (it changes when a migration superseded the one opened).
    #[getter]
    fn state_path(&self, py: Python<'_>) -> PathBuf {
        self.with(py, |e| e.info().state_path)
    }

    /// The policy image in use.
    #[getter]
    fn image_path(&self, py: Python<'_>) -> PathBuf {
        self.with(py, |e| e.info().image_path)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let i = self.with(py, |e| e.info());
        format!(
            "<SharedEngine image={:?} state={:?} id={:016x}>",
            i.image_path, i.state_path, i.image_id
        )
    }
}
