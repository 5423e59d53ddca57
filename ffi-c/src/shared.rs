//! `og_shared_*`: an engine over a compiled policy image and a shared state file, for mail
//! servers that fork a process per connection (Exim's `${dlfunc}`): every process maps the same
//! state file, so counters and blocks are shared and survive restarts. See the core's
//! `outguard::shared` documentation for the file formats, locking and crash safety.
//!
//! Result codes: file problems are reported with the closest existing codes, and the error
//! buffer (or `og_shared_engine_last_error`) holds the exact description naming the file:
//! `OG_RESULT_IO` (a system call failed, or `create_state` found a file already there),
//! `OG_RESULT_SNAPSHOT_FOREIGN` (not an image / state file, or a state file of another image),
//! `OG_RESULT_SNAPSHOT_VERSION`, `OG_RESULT_SNAPSHOT_TRUNCATED`, `OG_RESULT_SNAPSHOT_CHECKSUM`,
//! `OG_RESULT_SNAPSHOT_CORRUPT` (damaged header or record, other byte order or build),
//! `OG_RESULT_NOT_FOUND` (a superseded state file whose successor cannot be opened).

use core::ffi::c_char;
use std::sync::{Mutex, MutexGuard, PoisonError};

use outguard::shared::{self, SharedEngine, SharedError};
use outguard::TenantId;

use crate::engine::{with_message, EventSink};
use crate::error::og_result;
use crate::ffi;
use crate::panic::guard;
use crate::text::{self, write_tenant_id, write_text};
use crate::types::*;

/// An engine over a policy image and a shared state file. Opaque; open it with
/// `og_shared_engine_open`, free it with `og_shared_engine_free`. One handle may be used by
/// any number of threads (calls are serialised by a mutex); every process (a forked child too)
/// may use its own or an inherited one: processes share the state through the file.
#[allow(non_camel_case_types)]
pub struct og_shared_engine {
    inner: Mutex<Inner>,
}

struct Inner {
    engine: SharedEngine,
    last_error: String,
}

impl og_shared_engine {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn code(e: &SharedError) -> og_result {
    use og_result as R;
    match e {
        SharedError::Io { .. } | SharedError::Exists { .. } => R::Io,
        SharedError::BadMagic { .. } | SharedError::ImageMismatch { .. } => R::SnapshotForeign,
        SharedError::Version { .. } => R::SnapshotVersion,
        SharedError::Truncated { .. } => R::SnapshotTruncated,
        SharedError::Checksum { .. } => R::SnapshotChecksum,
        SharedError::CorruptHeader { .. }
        | SharedError::CorruptState { .. }
        | SharedError::Incompatible { .. } => R::SnapshotCorrupt,
        SharedError::Superseded { .. } => R::NotFound,
        SharedError::PathTooLong { .. } => R::InvalidParameter,
        SharedError::InUse { .. } => R::InUse,
        SharedError::Engine(e) => og_result::from(*e),
        SharedError::Policy(_) => R::Policy,
        _ => R::Internal,
    }
}

/// Runs a body that may fail with a `SharedError`; on failure writes its description into the
/// error buffer.
fn with_error_buffer(
    err_buf: *mut c_char,
    err_len: usize,
    f: impl FnOnce() -> Result<Result<(), SharedError>, og_result>,
) -> og_result {
    text::with_error_buffer(err_buf, err_len, code, f)
}

/// Runs a call on the handle; a `SharedError` is kept for `og_shared_engine_last_error`.
fn with_engine(
    engine: *const og_shared_engine,
    f: impl FnOnce(&mut SharedEngine) -> Result<Result<(), SharedError>, og_result>,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut inner = h.lock();
        match f(&mut inner.engine)? {
            Ok(()) => Ok(()),
            Err(e) => {
                inner.last_error = e.to_string();
                Err(code(&e))
            }
        }
    })
}

// ----- files --------------------------------------------------------------------------------

/// Compiles a policy file (TOML) into a policy image at `image_path`: a flat, versioned,
/// checksummed file that processes map and use in place (opening takes microseconds whatever
/// the policy's size). An existing file at `image_path` is replaced atomically (processes that
/// have the old one open keep using it). The image is read back and verified.
///
/// `policy_path` and `image_path` must not be NULL; `err_buf` may be NULL when `err_len` is 0.
/// On failure `err_buf` receives a NUL-terminated description (for a bad policy, every problem
/// with its file, line and field).
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_POLICY`, `OG_RESULT_IO`,
/// file-format results (listed at `og_shared_engine_open`). Thread-safe.
#[no_mangle]
pub extern "C" fn og_shared_compile(
    policy_path: *const c_char,
    image_path: *const c_char,
    err_buf: *mut c_char,
    err_len: usize,
) -> og_result {
    with_error_buffer(err_buf, err_len, || {
        let policy = ffi::path(policy_path)?;
        let image = ffi::path(image_path)?;
        Ok(outguard::policy::Policy::load(policy)
            .map_err(|e| SharedError::Policy(Box::new(e)))
            .and_then(|p| shared::compile_policy(&p, image))
            .map(|_| ()))
    })
}

/// Creates a state file for a policy image: the image's tenants with zero counters and empty
/// audit trails (mode 0660 less the umask: the mail server's user must be able to read and
/// write it). Verifies the whole image first. Never replaces an existing file (`OG_RESULT_IO`,
/// "already exists"): of processes racing to create it, one wins.
///
/// Pointers and the error buffer as for `og_shared_compile`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_IO`, file-format results.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn og_shared_create_state(
    image_path: *const c_char,
    state_path: *const c_char,
    err_buf: *mut c_char,
    err_len: usize,
) -> og_result {
    with_error_buffer(err_buf, err_len, || {
        let image = ffi::path(image_path)?;
        let state = ffi::path(state_path)?;
        Ok(shared::create_state(image, state).map(|_| ()))
    })
}

/// Moves the state of `old_state` (for `old_image`) to a new state file for `new_image` at
/// `new_state` (which may be `old_state` itself, replaced atomically): counters, blocks, grace
/// periods and audit trails of every tenant the new image still has. The old file is marked
/// superseded; every process using it switches to the new one on its next call. No count is
/// lost (every stripe lock of the old file is held throughout).
///
/// `*out_report` (may be NULL) receives how many tenants were added and removed.
/// Pointers and the error buffer as for `og_shared_compile`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_IO`, file-format results.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn og_shared_migrate(
    old_image: *const c_char,
    old_state: *const c_char,
    new_image: *const c_char,
    new_state: *const c_char,
    out_report: *mut og_reload_report,
    err_buf: *mut c_char,
    err_len: usize,
) -> og_result {
    with_error_buffer(err_buf, err_len, || {
        let (oi, os) = (ffi::path(old_image)?, ffi::path(old_state)?);
        let (ni, ns) = (ffi::path(new_image)?, ffi::path(new_state)?);
        let out = ffi::opt_out(out_report);
        Ok(shared::migrate(oi, os, ni, ns).map(|r| {
            if let Some(o) = out {
                o.write(og_reload_report::new(&r.added, &r.removed));
            }
        }))
    })
}

/// Repairs a state file that no process has open: resets every stripe lock (a lock left held
/// by a process the kernel could not see die, e.g. in a copy of a file taken while in use,
/// otherwise makes that stripe's calls fail after 10 s), rolls back every unfinished write,
/// publishes every committed one and checks every tenant record against the image.
/// `image_path` may be NULL: the image recorded in the state file.
///
/// `*out_report` (may be NULL) receives what was done. Pointers and the error buffer as for
/// `og_shared_compile`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_IN_USE` (a process has the
/// file open: stop them first; nothing was changed), `OG_RESULT_IO`, file-format results.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn og_shared_repair(
    image_path: *const c_char,
    state_path: *const c_char,
    out_report: *mut og_repair_report,
    err_buf: *mut c_char,
    err_len: usize,
) -> og_result {
    with_error_buffer(err_buf, err_len, || {
        let state = ffi::path(state_path)?;
        let image = ffi::opt_path(image_path)?;
        let out = ffi::opt_out(out_report);
        let image = match image {
            Some(i) => Ok(i.to_path_buf()),
            None => shared::read_state_info(state).map(|info| info.image_path),
        };
        Ok(image
            .and_then(|i| shared::repair_state(&i, state))
            .map(|r| {
                if let Some(o) = out {
                    o.write(og_repair_report {
                        locks_reset: r.locks_reset,
                        rolled_back: r.rolled_back,
                        published: r.published,
                    });
                }
            }))
    })
}

// ----- the handle ---------------------------------------------------------------------------

/// Opens an engine over a policy image and its state file. `image_path` may be NULL: the image
/// recorded in the state file is used (recommended: after a reload by `og_shared_migrate` the
/// pair stays consistent with no configuration change). Checks both headers; refuses a state
/// file of another image, a damaged, truncated or superseded one. Opening maps the files and
/// reads one header page of each: it takes microseconds, whatever the policy's size.
///
/// `state_path` and `out_engine` must not be NULL; `err_buf` may be NULL when `err_len` is 0.
/// On success `*out_engine` receives a handle the caller owns and frees with
/// `og_shared_engine_free`; on failure it is not written and `err_buf` receives a description.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_IO` (a system call failed,
/// or `og_shared_create_state` found a file already there), and the file-format results, which
/// reuse the snapshot codes: `OG_RESULT_SNAPSHOT_FOREIGN` (not an image / state file, or a state
/// file of another image), `OG_RESULT_SNAPSHOT_VERSION`, `OG_RESULT_SNAPSHOT_TRUNCATED`,
/// `OG_RESULT_SNAPSHOT_CHECKSUM`, `OG_RESULT_SNAPSHOT_CORRUPT` (damaged header or record, other
/// byte order or build), `OG_RESULT_NOT_FOUND` (superseded, successor not found). The error
/// buffer always names the file and the problem. Thread-safe.
#[no_mangle]
pub extern "C" fn og_shared_engine_open(
    image_path: *const c_char,
    state_path: *const c_char,
    out_engine: *mut *mut og_shared_engine,
    err_buf: *mut c_char,
    err_len: usize,
) -> og_result {
    with_error_buffer(err_buf, err_len, || {
        let image = ffi::opt_path(image_path)?;
        let state = ffi::path(state_path)?;
        let out = ffi::out(out_engine)?;
        let opened = match image {
            Some(i) => SharedEngine::open(i, state),
            None => SharedEngine::open_state(state),
        };
        Ok(opened.map(|engine| {
            out.write(ffi::into_handle(Box::new(og_shared_engine {
                inner: Mutex::new(Inner {
                    engine,
                    last_error: String::new(),
                }),
            })))
        }))
    })
}

/// Frees a handle (the files stay as they are; nothing needs flushing for other processes).
/// NULL is a no-op. Not thread-safe: no other call on the handle may be running or follow.
#[no_mangle]
pub extern "C" fn og_shared_engine_free(engine: *mut og_shared_engine) {
    let _ = guard(|| {
        ffi::free_handle(engine);
        Ok(())
    });
}

/// Copies the description of the last failed call on this handle (naming the file concerned)
/// into `buf`; `*out_n` receives its length (empty when no call failed). Buffer rules as for
/// `og_engine_tenant_id`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_BUFFER_TOO_SMALL`.
/// Thread-safe: holds the handle's mutex. The error is the handle's, not the thread's: with
/// threads sharing a handle it may be another thread's.
#[no_mangle]
pub extern "C" fn og_shared_engine_last_error(
    engine: *const og_shared_engine,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut buf = ffi::out_bytes(buf, len)?;
        let out_n = ffi::out(out_n)?;
        let inner = h.lock();
        write_text(&mut buf, out_n, inner.last_error.as_bytes())
    })
}

/// Decides one message, as `og_engine_check`, against the shared state. Takes no stripe lock:
/// the tenant's state is read from this process's private copy, refreshed when another process
/// changed it (it waits for the tenant's stripe lock only when it finds that tenant
/// mid-write).
///
/// `engine`, `message` and `out_decision` must not be NULL. `*out_decision` is written on
/// success only.
/// Results: as `og_engine_check`, plus file-format results and `OG_RESULT_IO` when the state
/// file is damaged or a reload's new file cannot be opened (`og_shared_engine_last_error`).
/// Thread-safe: holds the handle's mutex, so calls on one handle run one at a time.
#[no_mangle]
pub extern "C" fn og_shared_engine_check(
    engine: *const og_shared_engine,
    now: u64,
    message: *const og_message,
    out_decision: *mut og_decision,
) -> og_result {
    with_engine(engine, |e| {
        let m = ffi::input(message)?;
        let out = ffi::out(out_decision)?;
        with_message(m, |msg| {
            Ok(e.check(now, msg).map(|d| out.write(og_decision::from(&d))))
        })
    })
}

/// Counts a message that was accepted and scanned, as `og_engine_record`, in the shared state:
/// under the lock of the tenant's stripe (writers for tenants of other stripes run in
/// parallel), as one atomic write. When this returns
/// `OG_RESULT_OK` the count is committed, whatever happens to the process next.
///
/// Events: the first `events_len` go to `events` (NULL only when `events_len` is 0), their
/// number to `*out_events_n` (may be NULL); at most `OG_EVENTS_MAX`.
/// Results: as `og_engine_record`, plus the file results of `og_shared_engine_check`.
/// Thread-safe: holds the handle's mutex, then the tenant's stripe lock.
#[no_mangle]
pub extern "C" fn og_shared_engine_record(
    engine: *const og_shared_engine,
    now: u64,
    message: *const og_message,
    verdict: og_verdict,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    with_engine(engine, |e| {
        let m = ffi::input(message)?;
        let sink = EventSink::new(events, events_len, out_events_n)?;
        let verdict = verdict_from_c(verdict)?;
        with_message(m, |msg| {
            Ok(e.record(now, msg, verdict).map(|ev| sink.write_all(&ev)))
        })
    })
}

/// `og_shared_engine_check`, then `og_shared_engine_record` when the message is accepted, as
/// one step under the tenant's stripe lock. Outputs as for the two.
/// Thread-safe: holds the handle's mutex, then the tenant's stripe lock (a message that
/// belongs to no tenant is decided without it).
#[no_mangle]
pub extern "C" fn og_shared_engine_evaluate(
    engine: *const og_shared_engine,
    now: u64,
    message: *const og_message,
    verdict: og_verdict,
    out_decision: *mut og_decision,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    with_engine(engine, |e| {
        let m = ffi::input(message)?;
        let out = ffi::out(out_decision)?;
        let sink = EventSink::new(events, events_len, out_events_n)?;
        let verdict = verdict_from_c(verdict)?;
        with_message(m, |msg| {
            Ok(e.evaluate(now, msg, verdict).map(|(d, ev)| {
                out.write(og_decision::from(&d));
                sink.write_all(&ev);
            }))
        })
    })
}

/// Releases a tenant's block of `rule` (`OG_RULE_NONE`: every rule), as `og_engine_release`,
/// in the shared state: every process sees it on its next call. Events as for
/// `og_shared_engine_record`.
/// Results: as `og_engine_release`, plus the file results of `og_shared_engine_check`.
/// Thread-safe: holds the handle's mutex, then the tenant's stripe lock.
#[no_mangle]
pub extern "C" fn og_shared_engine_release(
    engine: *const og_shared_engine,
    tenant: *const c_char,
    rule: og_rule,
    now: u64,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    with_engine(engine, |e| {
        let tenant = ffi::text(tenant)?;
        let rule = rule_from_c(rule)?;
        let sink = EventSink::new(events, events_len, out_events_n)?;
        Ok(e.release(tenant, rule, now).map(|ev| sink.write_all(&ev)))
    })
}

/// Marks a tenant lapsed (`lapsed` true) or active again, as `og_engine_mark_lapsed` /
/// `og_engine_mark_active`, in the shared state. Events as for `og_shared_engine_record`.
/// Results: as `og_shared_engine_release`.
/// Thread-safe: holds the handle's mutex, then the tenant's stripe lock.
#[no_mangle]
pub extern "C" fn og_shared_engine_set_lapsed(
    engine: *const og_shared_engine,
    tenant: *const c_char,
    lapsed: bool,
    now: u64,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    with_engine(engine, |e| {
        let tenant = ffi::text(tenant)?;
        let sink = EventSink::new(events, events_len, out_events_n)?;
        let r = if lapsed {
            e.mark_lapsed(tenant, now)
        } else {
            e.mark_active(tenant, now)
        };
        Ok(r.map(|ev| sink.write_all(&ev)))
    })
}

/// A tenant's state at `now`, as `og_engine_status`, from the shared state.
/// `engine`, `tenant` and `out_status` must not be NULL; `*out_status` is written on success.
/// Results: as `og_engine_status`, plus the file results of `og_shared_engine_check`.
/// Thread-safe: holds the handle's mutex; reads the tenant's state as `og_shared_engine_check`
/// does (no stripe lock unless it finds that tenant mid-write).
#[no_mangle]
pub extern "C" fn og_shared_engine_status(
    engine: *const og_shared_engine,
    tenant: *const c_char,
    now: u64,
    out_status: *mut og_tenant_status,
) -> og_result {
    with_engine(engine, |e| {
        let tenant = ffi::text(tenant)?;
        let out = ffi::out(out_status)?;
        Ok(e.status(tenant, now)
            .map(|s| out.write(og_tenant_status::from(&s))))
    })
}

/// Copies the id of the tenant with index `tenant` (as in `og_decision.tenant`) into `buf`;
/// buffer rules and results as for `og_engine_tenant_id`.
/// Thread-safe: holds the handle's mutex; reads policy data only (no stripe lock).
#[no_mangle]
pub extern "C" fn og_shared_engine_tenant_id(
    engine: *const og_shared_engine,
    tenant: u32,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> og_result {
    with_engine(engine, |e| {
        let mut buf = ffi::out_bytes(buf, len)?;
        let out_n = ffi::out(out_n)?;
        write_tenant_id(&mut buf, out_n, e.tenant_name(TenantId(tenant))).map(Ok)
    })
}

/// Writes the state file's changed pages to disk and waits (`msync`). Other processes see
/// changes without it; it only matters for a machine crash.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_IO`.
/// Thread-safe: holds the handle's mutex; takes no stripe lock.
#[no_mangle]
pub extern "C" fn og_shared_engine_sync(engine: *const og_shared_engine) -> og_result {
    with_engine(engine, |e| Ok(e.sync()))
}
