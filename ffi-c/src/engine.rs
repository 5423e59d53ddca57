//! `og_engine`: the thread-safe engine handle and every call on it.
//!
//! The handle is an `RwLock` around the core engine: `check` and every query take the read
//! lock, so they run in parallel; `record`, `evaluate`, operator actions, reload and restore
//! take the write lock. A panic while the lock is held (none is expected: the core has no
//! panicking paths) does not make the handle unusable: the lock's poison flag is ignored,
//! because every core table stays bounds-checked and a half-counted message is harmless.

use core::ffi::{c_char, c_void};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use outguard::policy::{HeapEngine, Policy, PolicyError};
use outguard::{Cidr, ConnectorId, Event, Message, Reason, TenantId};

use crate::error::og_result;
use crate::ffi::{self, og_event_callback, EventCallback, Out, OutSlice};
use crate::panic::guard;
use crate::text::{self, write_tenant_id};
use crate::types::*;

/// An engine: a policy's tenants, rules and lists, with every counter, block and audit
/// trail. Opaque; create it with `og_engine_new_from_file` or `og_engine_new_from_toml`,
/// free it with `og_engine_free`. One handle may be used by any number of threads at once.
#[allow(non_camel_case_types)]
pub struct og_engine {
    inner: RwLock<Inner>,
}

struct Inner {
    engine: HeapEngine,
    callback: Option<EventCallback>,
}

impl og_engine {
    #[inline]
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where the events of one call go: the engine's callback (every event) and the caller's
/// array (the first `len`), with the total count in `*out_n`.
pub(crate) struct EventSink {
    events: OutSlice<og_event>,
    out_n: Option<Out<usize>>,
    n: usize,
}

impl EventSink {
    pub(crate) fn new(
        events: *mut og_event,
        len: usize,
        out_n: *mut usize,
    ) -> Result<EventSink, og_result> {
        Ok(EventSink {
            events: ffi::out_slice(events, len)?,
            out_n: ffi::opt_out(out_n),
            n: 0,
        })
    }
    fn push(&mut self, callback: Option<&EventCallback>, ev: &Event) {
        let c = og_event::from(ev);
        if let Some(cb) = callback {
            cb.call(&c);
        }
        self.events.write_at(self.n, c);
        self.n += 1;
    }
    fn push_all<'a>(
        &mut self,
        callback: Option<&EventCallback>,
        evs: impl IntoIterator<Item = &'a Event>,
    ) {
        for ev in evs {
            self.push(callback, ev);
        }
    }
    fn finish(self) {
        if let Some(o) = self.out_n {
            o.write(self.n);
        }
    }
    /// Writes all the events of a call that has no callback, then their count.
    pub(crate) fn write_all(mut self, evs: &[Event]) {
        self.push_all(None, evs);
        self.finish();
    }
}

/// Runs `f` on the core's view of a C message (borrowed; no allocation) and whether its
/// `auth_user` and `cert_domain` are ASCII (else they may need converting to A-labels).
#[inline(always)]
fn with_raw_message<'a, R>(
    m: &'a og_message,
    f: impl FnOnce(&Message<'a>, bool) -> Result<R, og_result>,
) -> Result<R, og_result> {
    let mut msg = Message::default();
    let names_ascii = read_message(m, &mut msg)?;
    f(&msg, names_ascii)
}

/// `forwarded`, `spf_pass` and `dkim_pass` for each valid `og_message.flags` (a copy of three
/// bytes instead of three tests; the fourth pads the rows to 4 bytes); other flags are an
/// error.
const MESSAGE_FLAGS: [[bool; 4]; 8] = {
    let mut t = [[false; 4]; 8];
    let mut f = 0;
    while f < 8 {
        t[f] = [
            f as u32 & OG_MESSAGE_FORWARDED != 0,
            f as u32 & OG_MESSAGE_SPF_PASS != 0,
            f as u32 & OG_MESSAGE_DKIM_PASS != 0,
            false,
        ];
        f += 1;
    }
    t
};
// Every flag bit has its column in the table (a new flag needs a wider one).
const _: () = assert!(OG_MESSAGE_FORWARDED | OG_MESSAGE_SPF_PASS | OG_MESSAGE_DKIM_PASS == 7);

/// Fills every field of `msg` with the core's view of a C message (borrowed; no allocation);
/// returns whether its `auth_user` and `cert_domain` are ASCII (else they may need converting
/// to A-labels). Errors in this order: flags, address, sender, tenant, `auth_user`,
/// `cert_domain`.
///
/// Inlined, with the caller's `Message` filled in place (returned through memory, the
/// ~90-byte `Message` was copied on every call), and each field stored as soon as it is known
/// rather than kept in registers across the `strlen` calls. A binary address is read without
/// going through the text path, and `auth_user` and `cert_domain` are read out of line: the
/// hot path (binary address, no names) pays one test for each of those, and its frame does not
/// carry the registers their code needs. (The text address stays inline: out of line it cost
/// that path more than it saved the binary one.)
#[inline(always)]
fn read_message<'a>(m: &'a og_message, msg: &mut Message<'a>) -> Result<bool, og_result> {
    let Some(&[forwarded, spf_pass, dkim_pass, _]) = MESSAGE_FLAGS.get(m.flags as usize) else {
        return Err(ffi::invalid_parameter());
    };
    *msg = Message {
        mail_from: &[],
        tenant: None,
        client_ip: None,
        auth_user: None,
        cert_domain: None,
        forwarded,
        spf_pass,
        dkim_pass,
        recipients: m.recipients,
    };
    if m.client_ip.is_null() {
        let b = &m.client_addr.bytes;
        match m.client_addr.family {
            OG_IP_NONE => {}
            OG_IP_V4 => msg.client_ip = Some(IpAddr::from([b[0], b[1], b[2], b[3]])),
            OG_IP_V6 => msg.client_ip = Some(IpAddr::from(*b)),
            _ => return Err(ffi::invalid_parameter()),
        }
    } else {
        client_ip_text(m, msg)?;
    }
    msg.mail_from = ffi::bytes(m.mail_from, m.mail_from_len)?;
    msg.tenant = ffi::opt_text_ascii_n(m.tenant, m.tenant_len)?.0;
    if m.auth_user.is_null() && m.cert_domain.is_null() {
        Ok(true)
    } else {
        names(m, msg)
    }
}

/// Stores the client address given as text (`client_ip`) into `msg`; an error when
/// `client_addr` gives one in binary too.
#[inline(always)]
fn client_ip_text(m: &og_message, msg: &mut Message<'_>) -> Result<(), og_result> {
    let s = ffi::opt_text_ascii(m.client_ip)?.0.unwrap_or_default();
    if m.client_addr.family != OG_IP_NONE {
        return Err(og_result::InvalidParameter);
    }
    msg.client_ip = outguard::cidr::parse_ip(s.as_bytes());
    match msg.client_ip {
        Some(_) => Ok(()),
        None => Err(og_result::InvalidIp),
    }
}

/// Stores a message's `auth_user` and `cert_domain` into `msg`; whether both are ASCII. Out of
/// line (see [`read_message`]).
#[inline(never)]
fn names<'a>(m: &'a og_message, msg: &mut Message<'a>) -> Result<bool, og_result> {
    let auth_ascii;
    (msg.auth_user, auth_ascii) = ffi::opt_text_ascii(m.auth_user)?;
    let cert_ascii;
    (msg.cert_domain, cert_ascii) = ffi::opt_text_ascii(m.cert_domain)?;
    Ok(auth_ascii && cert_ascii)
}

/// Runs `f` on the core's view of a C message with its U-labels turned into A-labels (the core
/// only knows ASCII domains). An ASCII message, the usual case, goes through as it is: no
/// copy, no allocation.
#[inline]
pub(crate) fn with_message<R>(
    m: &og_message,
    f: impl FnOnce(&Message<'_>) -> Result<R, og_result>,
) -> Result<R, og_result> {
    with_raw_message(m, |raw, names_ascii| {
        if names_ascii && raw.mail_from.is_ascii() {
            f(raw)
        } else {
            with_converted(*raw, f)
        }
    })
}

/// `Engine::check` on a C message: [`with_message`]'s result, with the sender's scan for
/// U-labels left until the core has refused it as unparsable.
///
/// Why that gives the same decision for every message: a check has no side effects, and the
/// core parses the sender before anything else and answers `InvalidSender` when that fails,
/// so any other decision means `parse_sender` accepted `mail_from`. It then holds no U-label
/// where the conversion looks: the conversion rewrites only what follows the last `@` (less a
/// closing `>`), and a parsed sender's domain (hostname bytes or a printable ASCII literal)
/// is followed by nothing but blanks and `>`. So the converted sender would be the same bytes
/// and the decision the same. Only an `InvalidSender` with a non-ASCII sender is checked
/// again, converted, as `with_message` would have done. `auth_user` and `cert_domain` are
/// converted before the check, exactly as in `with_message`. The test
/// `check_decides_as_the_eager_conversion` holds this to the eager path.
///
/// The decision is written to `out` from where the core returned it (not returned again
/// through memory). The message is filled here rather than through [`with_raw_message`]: the
/// compiler left that closure, this large, out of line. Both conversions are cold.
#[inline(always)]
fn check_message(
    h: &og_engine,
    now: u64,
    m: &og_message,
    out: Out<og_decision>,
) -> Result<(), og_result> {
    let mut raw = Message::default();
    if !read_message(m, &mut raw)? {
        return check_converted(h, now, &raw, out);
    }
    let d = h.read().engine.check(now, &raw);
    if d.reason == Some(Reason::InvalidSender) && !raw.mail_from.is_ascii() {
        return check_converted(h, now, &raw, out);
    }
    out.write(og_decision::from(&d));
    Ok(())
}

/// [`check_message`] for a message whose names may need converting to A-labels.
#[cold]
#[inline(never)]
fn check_converted(
    h: &og_engine,
    now: u64,
    raw: &Message<'_>,
    out: Out<og_decision>,
) -> Result<(), og_result> {
    with_converted(*raw, |msg| {
        out.write(og_decision::from(&h.read().engine.check(now, msg)));
        Ok(())
    })
}

#[cold]
#[inline(never)]
fn with_converted<R>(
    raw: Message<'_>,
    f: impl FnOnce(&Message<'_>) -> Result<R, og_result>,
) -> Result<R, og_result> {
    let names = ascii_names(&raw);
    f(&with_ascii(raw, &names))
}

/// A-label copies of a message's names when they carry U-labels (the core only knows ASCII
/// domains). ASCII messages, the usual case, allocate nothing.
#[derive(Default)]
struct AsciiNames {
    mail_from: Option<Vec<u8>>,
    auth_user: Option<String>,
    cert_domain: Option<String>,
}

fn ascii_names(m: &Message<'_>) -> AsciiNames {
    use outguard::policy::idna::{address_to_ascii, domain_to_ascii};
    let mut n = AsciiNames::default();
    if !m.mail_from.is_ascii() {
        if let Ok(s) = std::str::from_utf8(m.mail_from) {
            n.mail_from = address_to_ascii(s).map(String::into_bytes);
        }
    }
    n.auth_user = m.auth_user.and_then(address_to_ascii);
    n.cert_domain = m.cert_domain.and_then(domain_to_ascii);
    n
}

/// The message with its names replaced by their A-label copies, where there are any.
fn with_ascii<'a>(mut m: Message<'a>, n: &'a AsciiNames) -> Message<'a> {
    if let Some(v) = &n.mail_from {
        m.mail_from = v;
    }
    if let Some(v) = &n.auth_user {
        m.auth_user = Some(v);
    }
    if let Some(v) = &n.cert_domain {
        m.cert_domain = Some(v);
    }
    m
}

fn tenant_of(e: &HeapEngine, id: *const c_char) -> Result<TenantId, og_result> {
    let id = ffi::text(id)?;
    e.tenant(id).ok_or(og_result::UnknownTenant)
}

fn cidr(s: *const c_char) -> Result<Cidr, og_result> {
    Cidr::parse(ffi::text(s)?).map_err(og_result::from)
}

/// Runs a policy-loading body; on failure writes the description into the error buffer.
fn with_error_buffer(
    err_buf: *mut c_char,
    err_len: usize,
    f: impl FnOnce() -> Result<Result<(), PolicyError>, og_result>,
) -> og_result {
    text::with_error_buffer(err_buf, err_len, |e| og_result::from(e), f)
}

fn load_toml(
    text: *const c_char,
    len: usize,
    file_name: *const c_char,
    base_dir: *const c_char,
) -> Result<Result<Policy, PolicyError>, og_result> {
    let bytes = ffi::bytes(text, len)?;
    let text = core::str::from_utf8(bytes).map_err(|_| og_result::InvalidUtf8)?;
    let name = ffi::opt_text(file_name)?.unwrap_or("<string>");
    let base: Option<&Path> = ffi::opt_path(base_dir)?;
    Ok(Policy::from_toml(text, name, base))
}

fn new_handle(engine: HeapEngine) -> *mut og_engine {
    ffi::into_handle(Box::new(og_engine {
        inner: RwLock::new(Inner {
            engine,
            callback: None,
        }),
    }))
}

/// Builds an engine from a policy file (TOML, SPEC §2).
///
/// `path` and `out_engine` must not be NULL; `err_buf` may be NULL when `err_len` is 0. On
/// success `*out_engine` receives a new handle that the caller owns and frees with
/// `og_engine_free`. On failure `*out_engine` is not written and, if `err_len` > 0, `err_buf`
/// receives a NUL-terminated description (truncated to fit): for a bad policy every problem,
/// one a line, as `file:line:column: field: expected ..., found ...: message`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_POLICY`.
/// Thread-safe (no shared state).
#[no_mangle]
pub extern "C" fn og_engine_new_from_file(
    path: *const c_char,
    out_engine: *mut *mut og_engine,
    err_buf: *mut c_char,
    err_len: usize,
) -> og_result {
    with_error_buffer(err_buf, err_len, || {
        let path = ffi::path(path)?;
        let out = ffi::out(out_engine)?;
        Ok(Policy::load(path)
            .and_then(|p| p.build())
            .map(|engine| out.write(new_handle(engine))))
    })
}

/// Builds an engine from policy text (TOML, `len` bytes of UTF-8, no NUL needed).
///
/// `file_name` names the text in error messages (NULL: `"<string>"`); relative `files` and the
/// bulk tenants file are read from `base_dir` (NULL: none given). `text` may be NULL only when
/// `len` is 0; `out_engine` must not be NULL. Ownership, outputs and the error buffer as for
/// `og_engine_new_from_file`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_POLICY`. Thread-safe.
#[no_mangle]
pub extern "C" fn og_engine_new_from_toml(
    text: *const c_char,
    len: usize,
    file_name: *const c_char,
    base_dir: *const c_char,
    out_engine: *mut *mut og_engine,
    err_buf: *mut c_char,
    err_len: usize,
) -> og_result {
    with_error_buffer(err_buf, err_len, || {
        let out = ffi::out(out_engine)?;
        Ok(load_toml(text, len, file_name, base_dir)?
            .and_then(|p| p.build())
            .map(|engine| out.write(new_handle(engine))))
    })
}

/// Frees an engine. NULL is a no-op.
///
/// The caller must make sure no other call on this handle is running or will run: freeing is
/// the one call that is not safe concurrently with others on the same handle.
#[no_mangle]
pub extern "C" fn og_engine_free(engine: *mut og_engine) {
    let _ = guard(|| {
        ffi::free_handle(engine);
        Ok(())
    });
}

/// Sets the function called for every event of every later call on this engine (record,
/// evaluate, release, mark lapsed/active, expire), in the calling thread, while the engine's
/// write lock is held; NULL `callback` removes it. `userdata` is passed through untouched.
///
/// The callback must not call any `og_engine_*` function on the same engine (it would
/// deadlock) and must be safe to call from every thread that uses the engine. The event
/// pointer is valid only during the callback.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER` (engine). Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_set_event_callback(
    engine: *const og_engine,
    callback: og_event_callback,
    userdata: *mut c_void,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        h.write().callback = EventCallback::new(callback, userdata);
        Ok(())
    })
}

/// Decides one message: accept, or the exact refusal. Counts nothing.
///
/// `engine`, `message` and `out_decision` must not be NULL; the message's pointers follow the
/// rules of `og_message`. `*out_decision` is filled on success only. Allocates nothing.
/// Results: `OG_RESULT_OK` (whatever the decision), `OG_RESULT_NULL_PARAMETER`,
/// `OG_RESULT_INVALID_UTF8`, `OG_RESULT_INVALID_IP`, `OG_RESULT_INVALID_PARAMETER` (unknown
/// flag bits, an unknown address family or both address forms, a length above `PTRDIFF_MAX`).
/// An unparsable sender is not an error: the decision is `OG_REASON_INVALID_SENDER` (5.1.7).
/// Takes the read lock: any number of threads may check at once.
#[no_mangle]
pub extern "C" fn og_engine_check(
    engine: *const og_engine,
    now: u64,
    message: *const og_message,
    out_decision: *mut og_decision,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let m = ffi::input(message)?;
        let out = ffi::out(out_decision)?;
        check_message(h, now, m, out)
    })
}

/// Counts a message that was accepted and scanned, with the content filter's verdict
/// (`OG_VERDICT_*`), and trips blocks; the next `og_engine_check` sees them.
///
/// Events: the first `events_len` events this call caused are written to `events` (which may
/// be NULL only when `events_len` is 0) and their total to `*out_events_n` (may be NULL); a
/// call causes at most `OG_EVENTS_MAX`. The event callback, if set, sees each of them. Outputs
/// are written on success only.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_INVALID_IP`, `OG_RESULT_INVALID_PARAMETER` (verdict or flags),
/// `OG_RESULT_INVALID_SENDER`, `OG_RESULT_UNKNOWN_TENANT` (belongs to no tenant).
/// Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_record(
    engine: *const og_engine,
    now: u64,
    message: *const og_message,
    verdict: og_verdict,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let m = ffi::input(message)?;
        let mut sink = EventSink::new(events, events_len, out_events_n)?;
        let verdict = verdict_from_c(verdict)?;
        with_message(m, |msg| {
            let mut inner = h.write();
            let evs = inner.engine.record(now, msg, verdict)?;
            sink.push_all(inner.callback.as_ref(), &evs);
            Ok(())
        })?;
        sink.finish();
        Ok(())
    })
}

/// `og_engine_check`, then `og_engine_record` when the message is accepted (monitor-mode
/// refusals count as accepted), as one atomic step. `*out_decision` is the decision made
/// before counting.
///
/// Pointers, events and outputs as for `og_engine_check` and `og_engine_record`.
/// Results: as `og_engine_check`, plus `OG_RESULT_INVALID_PARAMETER` for an unknown verdict.
/// Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_evaluate(
    engine: *const og_engine,
    now: u64,
    message: *const og_message,
    verdict: og_verdict,
    out_decision: *mut og_decision,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let m = ffi::input(message)?;
        let out = ffi::out(out_decision)?;
        let mut sink = EventSink::new(events, events_len, out_events_n)?;
        let verdict = verdict_from_c(verdict)?;
        let d = with_message(m, |msg| {
            let mut inner = h.write();
            let (d, evs) = inner.engine.evaluate(now, msg, verdict);
            sink.push_all(inner.callback.as_ref(), &evs);
            Ok(d)
        })?;
        out.write(og_decision::from(&d));
        sink.finish();
        Ok(())
    })
}

fn tenant_action(
    engine: *const og_engine,
    tenant: *const c_char,
    now: u64,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
    action: impl FnOnce(&mut HeapEngine, TenantId, u64) -> Result<outguard::Events, outguard::Error>,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut sink = EventSink::new(events, events_len, out_events_n)?;
        let mut inner = h.write();
        let t = tenant_of(&inner.engine, tenant)?;
        let evs = action(&mut inner.engine, t, now)?;
        sink.push_all(inner.callback.as_ref(), &evs);
        drop(inner);
        sink.finish();
        Ok(())
    })
}

/// Releases a tenant's block of `rule` (`OG_RULE_NONE`: every rule): clears that rule's
/// window and starts its grace period. Releasing a tenant that is not blocked is not an error
/// (no event). Events as for `og_engine_record`.
///
/// `engine` and `tenant` (the tenant id) must not be NULL.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_INVALID_PARAMETER` (unknown rule), `OG_RESULT_UNKNOWN_TENANT`.
/// Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_release(
    engine: *const og_engine,
    tenant: *const c_char,
    rule: og_rule,
    now: u64,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    let rule = match rule_from_c(rule) {
        Ok(r) => r,
        Err(e) => return e,
    };
    tenant_action(
        engine,
        tenant,
        now,
        events,
        events_len,
        out_events_n,
        |e, t, now| e.release(t, rule, now),
    )
}

/// Marks a tenant's subscription lapsed: all its mail is refused with 5.7.705 until it is
/// marked active. Events, pointers and results as for `og_engine_release` (no rule).
/// Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_mark_lapsed(
    engine: *const og_engine,
    tenant: *const c_char,
    now: u64,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    let f = HeapEngine::mark_lapsed;
    tenant_action(engine, tenant, now, events, events_len, out_events_n, f)
}

/// Marks a lapsed tenant active again; mail resumes after the policy's renewal delay.
/// Events, pointers and results as for `og_engine_mark_lapsed`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_mark_active(
    engine: *const og_engine,
    tenant: *const c_char,
    now: u64,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    let f = HeapEngine::mark_active;
    tenant_action(engine, tenant, now, events, events_len, out_events_n, f)
}

/// Expires every timed block that has run out at `now` (`record` and `release` already do
/// this for the tenant they touch; call this periodically to see expiries of idle tenants).
/// Events: the first `events_len` are written to `events`, the total to `*out_events_n`
/// (may be NULL); there may be more than `OG_EVENTS_MAX`: the callback sees all of them.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_expire(
    engine: *const og_engine,
    now: u64,
    events: *mut og_event,
    events_len: usize,
    out_events_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut sink = EventSink::new(events, events_len, out_events_n)?;
        let mut inner = h.write();
        let Inner { engine, callback } = &mut *inner;
        engine.expire(now, |ev| sink.push(callback.as_ref(), ev));
        drop(inner);
        sink.finish();
        Ok(())
    })
}

/// A tenant's state at `now`: blocks, grace periods, warning tier, lapsed, counters.
///
/// `engine`, `tenant` and `out_status` must not be NULL; `*out_status` is written on success.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`. Takes the read lock.
#[no_mangle]
pub extern "C" fn og_engine_status(
    engine: *const og_engine,
    tenant: *const c_char,
    now: u64,
    out_status: *mut og_tenant_status,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let out = ffi::out(out_status)?;
        let inner = h.read();
        let t = tenant_of(&inner.engine, tenant)?;
        let s = inner.engine.status(t, now)?;
        out.write(og_tenant_status::from(&s));
        Ok(())
    })
}

/// Writes every item of a list into `out` and their number into `*out_n`; when they do not
/// fit, writes only the number needed (`OG_RESULT_BUFFER_TOO_SMALL`). `items` is called twice:
/// to count, then to write.
fn write_list<T, I: Iterator<Item = T>>(
    out: &mut OutSlice<T>,
    out_n: Out<usize>,
    items: impl Fn() -> I,
) -> Result<(), og_result> {
    let n = items().count();
    if n > out.len() {
        out_n.write(n);
        return Err(og_result::BufferTooSmall);
    }
    for (i, item) in items().enumerate() {
        out.write_at(i, item);
    }
    out_n.write(n);
    Ok(())
}

/// Every tenant refused at `now` (or that would be, in monitor mode), one entry per reason,
/// into `out` (`len` entries; NULL only when `len` is 0). `*out_n` receives the number of
/// entries; when they do not fit, nothing is written to `out`, `*out_n` receives the number
/// needed and the result is `OG_RESULT_BUFFER_TOO_SMALL`. `og_engine_tenant_id` turns the
/// tenant indexes into ids.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_BUFFER_TOO_SMALL`.
/// Takes the read lock.
#[no_mangle]
pub extern "C" fn og_engine_restricted(
    engine: *const og_engine,
    now: u64,
    out: *mut og_restriction,
    len: usize,
    out_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut out = ffi::out_slice(out, len)?;
        let out_n = ffi::out(out_n)?;
        let inner = h.read();
        write_list(&mut out, out_n, || {
            inner
                .engine
                .restricted(now)
                .map(|r| og_restriction::from(&r))
        })
    })
}

/// A tenant's audit trail (its last events, oldest first) into `out`; `*out_n` and short
/// buffers as for `og_engine_restricted`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`, `OG_RESULT_BUFFER_TOO_SMALL`. Takes the read lock.
#[no_mangle]
pub extern "C" fn og_engine_audit(
    engine: *const og_engine,
    tenant: *const c_char,
    out: *mut og_event,
    len: usize,
    out_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut out = ffi::out_slice(out, len)?;
        let out_n = ffi::out(out_n)?;
        let inner = h.read();
        let t = tenant_of(&inner.engine, tenant)?;
        write_list(&mut out, out_n, || {
            inner.engine.audit(t).map(og_event::from)
        })
    })
}

/// Connectors worth an operator's look at `now` (attackers create connectors to relay spam),
/// one entry per connector, into `out`: created within the policy's `engine.recent_connector`
/// window, a certificate domain that is not an accepted, validated domain of the tenant, or a
/// source range overlapping the low-reputation list (`OG_SUSPICION_*` bits in `why`). `*out_n`
/// and short buffers as for `og_engine_restricted`. `og_engine_connector_name` and
/// `og_engine_tenant_id` turn the indexes into names.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_BUFFER_TOO_SMALL`.
/// Takes the read lock.
#[no_mangle]
pub extern "C" fn og_engine_suspicious_connectors(
    engine: *const og_engine,
    now: u64,
    out: *mut og_suspicious_connector,
    len: usize,
    out_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut out = ffi::out_slice(out, len)?;
        let out_n = ffi::out(out_n)?;
        let inner = h.read();
        let e = &inner.engine;
        write_list(&mut out, out_n, || {
            e.suspicious_connectors(now).map(|s| {
                let created = e.connector_info(s.connector).map_or(0, |(_, _, _, c)| c);
                og_suspicious_connector::new(&s, created)
            })
        })
    })
}

/// The index of the tenant with id `tenant` (as in `og_decision.tenant`).
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`. `*out_index` is written on success. Takes the read lock.
#[no_mangle]
pub extern "C" fn og_engine_tenant_index(
    engine: *const og_engine,
    tenant: *const c_char,
    out_index: *mut u32,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let out = ffi::out(out_index)?;
        let t = tenant_of(&h.read().engine, tenant)?;
        out.write(t.0);
        Ok(())
    })
}

/// Copies the id of the tenant with index `tenant` into `buf` (NUL-terminated, `len` bytes
/// available); `*out_n` receives its length without the NUL. When it does not fit nothing is
/// copied and `*out_n` receives the length needed (without the NUL). Ids are at most 255
/// bytes. Tenant indexes can be reused after a tenant is removed or the policy reloaded.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_UNKNOWN_TENANT`,
/// `OG_RESULT_BUFFER_TOO_SMALL`. Takes the read lock.
#[no_mangle]
pub extern "C" fn og_engine_tenant_id(
    engine: *const og_engine,
    tenant: u32,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut buf = ffi::out_bytes(buf, len)?;
        let out_n = ffi::out(out_n)?;
        write_tenant_id(
            &mut buf,
            out_n,
            h.read().engine.tenant_name(TenantId(tenant)),
        )
    })
}

/// Copies the name of the connector with index `connector` (as in
/// `og_suspicious_connector.connector`) into `buf`; the buffer, `*out_n` and short buffers as
/// for `og_engine_tenant_id`. Names are at most 255 bytes. Connector indexes can be reused
/// after a connector or its tenant is removed or the policy reloaded.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_NOT_FOUND` (no connector
/// has this index), `OG_RESULT_BUFFER_TOO_SMALL`. Takes the read lock.
#[no_mangle]
pub extern "C" fn og_engine_connector_name(
    engine: *const og_engine,
    connector: u32,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut buf = ffi::out_bytes(buf, len)?;
        let out_n = ffi::out(out_n)?;
        let inner = h.read();
        let (_, name, _, _) = inner
            .engine
            .connector_info(ConnectorId(connector))
            .ok_or(og_result::NotFound)?;
        text::write_text(&mut buf, out_n, name.as_bytes())
    })
}

fn write_action(
    engine: *const og_engine,
    f: impl FnOnce(&mut HeapEngine) -> Result<(), og_result>,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut inner = h.write();
        f(&mut inner.engine)
    })
}

/// Adds a tenant (id: non-empty, at most 255 bytes, no control characters or surrounding
/// spaces). Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_INVALID_TENANT_ID`, `OG_RESULT_DUPLICATE_TENANT`, `OG_RESULT_TENANTS_FULL`,
/// `OG_RESULT_NAMES_FULL`. Takes the write lock. A reload replaces run-time additions with
/// what the policy says.
#[no_mangle]
pub extern "C" fn og_engine_add_tenant(
    engine: *const og_engine,
    tenant: *const c_char,
    licensed: bool,
) -> og_result {
    write_action(engine, |e| {
        e.add_tenant(ffi::text(tenant)?, licensed)?;
        Ok(())
    })
}

/// Removes a tenant with its domains, connectors, exceptions and state.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_remove_tenant(
    engine: *const og_engine,
    tenant: *const c_char,
) -> og_result {
    write_action(engine, |e| {
        let t = tenant_of(e, tenant)?;
        Ok(e.remove_tenant(t)?)
    })
}

/// Marks a tenant licensed or not (5.7.708 with `scope = "unlicensed"` spares licensed ones).
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_set_licensed(
    engine: *const og_engine,
    tenant: *const c_char,
    licensed: bool,
) -> og_result {
    write_action(engine, |e| {
        let t = tenant_of(e, tenant)?;
        Ok(e.set_licensed(t, licensed)?)
    })
}

/// Adds an accepted domain to a tenant; `flags`: `OG_DOMAIN_SUBDOMAINS` (subdomains match
/// too), `OG_DOMAIN_VALIDATED` (only validated domains make a sender `registered`).
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_INVALID_PARAMETER` (unknown flag), `OG_RESULT_UNKNOWN_TENANT`,
/// `OG_RESULT_INVALID_DOMAIN`, `OG_RESULT_DUPLICATE_DOMAIN`, `OG_RESULT_DOMAINS_FULL`,
/// `OG_RESULT_NAMES_FULL`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_add_domain(
    engine: *const og_engine,
    tenant: *const c_char,
    domain: *const c_char,
    flags: u32,
) -> og_result {
    write_action(engine, |e| {
        if flags & !(OG_DOMAIN_SUBDOMAINS | OG_DOMAIN_VALIDATED) != 0 {
            return Err(og_result::InvalidParameter);
        }
        let t = tenant_of(e, tenant)?;
        let d = ffi::text(domain)?;
        Ok(e.add_domain(
            t,
            d,
            flags & OG_DOMAIN_SUBDOMAINS != 0,
            flags & OG_DOMAIN_VALIDATED != 0,
        )?)
    })
}

/// Marks an accepted domain of a tenant validated.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`, `OG_RESULT_INVALID_DOMAIN`, `OG_RESULT_NOT_FOUND`.
/// Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_validate_domain(
    engine: *const og_engine,
    tenant: *const c_char,
    domain: *const c_char,
) -> og_result {
    write_action(engine, |e| {
        let t = tenant_of(e, tenant)?;
        Ok(e.validate_domain(t, ffi::text(domain)?)?)
    })
}

/// Removes an accepted domain from a tenant. Results as for `og_engine_validate_domain`.
/// Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_remove_domain(
    engine: *const og_engine,
    tenant: *const c_char,
    domain: *const c_char,
) -> og_result {
    write_action(engine, |e| {
        let t = tenant_of(e, tenant)?;
        Ok(e.remove_domain(t, ffi::text(domain)?)?)
    })
}

/// Adds a connector to a tenant: a certificate connector when `certificate` (a domain) is not
/// NULL; add source ranges with `og_engine_add_connector_range`. `created` is its creation
/// time (Unix seconds; 0 if unknown), used to list recently created connectors.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`, `OG_RESULT_INVALID_NAME`, `OG_RESULT_INVALID_DOMAIN`,
/// `OG_RESULT_DUPLICATE_CONNECTOR`, `OG_RESULT_DUPLICATE_DOMAIN`, `OG_RESULT_*_FULL`.
/// Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_add_connector(
    engine: *const og_engine,
    tenant: *const c_char,
    name: *const c_char,
    certificate: *const c_char,
    created: u64,
) -> og_result {
    write_action(engine, |e| {
        let t = tenant_of(e, tenant)?;
        let name = ffi::text(name)?;
        let cert = ffi::opt_text(certificate)?;
        e.add_connector(t, name, cert, created)?;
        Ok(())
    })
}

/// Adds a source range (CIDR text such as `203.0.113.0/24`) to a tenant's connector. A
/// range belongs to one connector only.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`, `OG_RESULT_NOT_FOUND` (no such connector),
/// `OG_RESULT_INVALID_RANGE`, `OG_RESULT_DUPLICATE_DOMAIN` (range already taken),
/// `OG_RESULT_RANGES_FULL`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_add_connector_range(
    engine: *const og_engine,
    tenant: *const c_char,
    connector: *const c_char,
    range: *const c_char,
) -> og_result {
    write_action(engine, |e| {
        let t = tenant_of(e, tenant)?;
        let c = e
            .connector(t, ffi::text(connector)?)
            .ok_or(og_result::NotFound)?;
        Ok(e.add_connector_range(c, cidr(range)?)?)
    })
}

/// Removes a tenant's connector with its ranges and certificate entry.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`, `OG_RESULT_NOT_FOUND`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_remove_connector(
    engine: *const og_engine,
    tenant: *const c_char,
    connector: *const c_char,
) -> og_result {
    write_action(engine, |e| {
        let t = tenant_of(e, tenant)?;
        let c = e
            .connector(t, ffi::text(connector)?)
            .ok_or(og_result::NotFound)?;
        Ok(e.remove_connector(c)?)
    })
}

/// Puts a range (CIDR text) on the low-reputation list; adding it twice is harmless.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_INVALID_RANGE`, `OG_RESULT_RANGES_FULL`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_add_low_reputation(
    engine: *const og_engine,
    range: *const c_char,
) -> og_result {
    write_action(engine, |e| Ok(e.add_low_reputation(cidr(range)?)?))
}

/// Takes a range off the low-reputation list.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_INVALID_RANGE`, `OG_RESULT_NOT_FOUND`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_remove_low_reputation(
    engine: *const og_engine,
    range: *const c_char,
) -> og_result {
    write_action(engine, |e| Ok(e.remove_low_reputation(cidr(range)?)?))
}

/// Grants a tenant an exception to the low-reputation rule for a range (CIDR text) until
/// `expires` (Unix seconds; `OG_UNTIL_RELEASE` for no expiry). Granting the same range again
/// sets the new expiry.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`, `OG_RESULT_INVALID_RANGE`, `OG_RESULT_RANGES_FULL`.
/// Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_grant_exception(
    engine: *const og_engine,
    tenant: *const c_char,
    range: *const c_char,
    expires: u64,
) -> og_result {
    write_action(engine, |e| {
        let t = tenant_of(e, tenant)?;
        Ok(e.grant_exception(t, cidr(range)?, expires)?)
    })
}

/// Revokes a tenant's exception for exactly this range.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_TENANT`, `OG_RESULT_INVALID_RANGE`, `OG_RESULT_NOT_FOUND`.
/// Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_revoke_exception(
    engine: *const og_engine,
    tenant: *const c_char,
    range: *const c_char,
) -> og_result {
    write_action(engine, |e| {
        let t = tenant_of(e, tenant)?;
        Ok(e.revoke_exception(t, cidr(range)?)?)
    })
}

/// Whether an address (text) is on the low-reputation list; `*out` is written on success.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_INVALID_IP`. Takes the read lock.
#[no_mangle]
pub extern "C" fn og_engine_is_low_reputation(
    engine: *const og_engine,
    ip: *const c_char,
    out: *mut bool,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let o = ffi::out(out)?;
        let ip = outguard::cidr::parse_ip(ffi::text(ip)?.as_bytes()).ok_or(og_result::InvalidIp)?;
        o.write(h.read().engine.is_low_reputation(ip));
        Ok(())
    })
}

fn reload(
    h: &og_engine,
    policy: Result<Policy, PolicyError>,
    report: *mut og_reload_report,
) -> Result<(), PolicyError> {
    let report = ffi::opt_out(report);
    // Build outside the lock; checks keep running meanwhile. Only the state swap locks.
    let fresh = policy?.build()?;
    let r = outguard::policy::replace_engine(fresh, &mut h.write().engine);
    if let Some(o) = report {
        o.write(og_reload_report::new(&r.added, &r.removed));
    }
    Ok(())
}

/// Replaces the engine's policy with the one in a file, keeping every counter, block and
/// audit entry of the tenants that remain. A bad policy changes nothing.
///
/// `engine` and `path` must not be NULL; `out_report` may be NULL and is written on success;
/// the error buffer as for `og_engine_new_from_file`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_POLICY`.
/// Reads the file and builds the new tables without the lock, then takes the write lock only
/// to carry the state over and swap.
#[no_mangle]
pub extern "C" fn og_engine_reload_file(
    engine: *const og_engine,
    path: *const c_char,
    out_report: *mut og_reload_report,
    err_buf: *mut c_char,
    err_len: usize,
) -> og_result {
    with_error_buffer(err_buf, err_len, || {
        let h = ffi::input(engine)?;
        let path = ffi::path(path)?;
        Ok(reload(h, Policy::load(path), out_report))
    })
}

/// Like `og_engine_reload_file`, with the policy as text (`len` bytes of UTF-8; `file_name`
/// and `base_dir` as for `og_engine_new_from_toml`).
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_POLICY`. Takes the write lock to swap.
#[no_mangle]
pub extern "C" fn og_engine_reload_toml(
    engine: *const og_engine,
    text: *const c_char,
    len: usize,
    file_name: *const c_char,
    base_dir: *const c_char,
    out_report: *mut og_reload_report,
    err_buf: *mut c_char,
    err_len: usize,
) -> og_result {
    with_error_buffer(err_buf, err_len, || {
        let h = ffi::input(engine)?;
        let policy = load_toml(text, len, file_name, base_dir)?;
        Ok(reload(h, policy, out_report))
    })
}

/// The number of bytes a snapshot of the engine's state needs now (it can grow as other
/// threads record). Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`. Takes the read lock.
#[no_mangle]
pub extern "C" fn og_engine_snapshot_len(
    engine: *const og_engine,
    out_len: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let out = ffi::out(out_len)?;
        out.write(h.read().engine.snapshot_len());
        Ok(())
    })
}

/// Writes a snapshot of the engine's state (counters, blocks, grace periods, lapsed state,
/// audit trails; versioned and checksummed) into `buf` (`len` bytes; NULL only when `len` is
/// 0). `*out_n` receives its length; when it does not fit, nothing is written to `buf`,
/// `*out_n` receives the length needed and the result is `OG_RESULT_BUFFER_TOO_SMALL`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_BUFFER_TOO_SMALL`.
/// Takes the read lock; allocates nothing.
#[no_mangle]
pub extern "C" fn og_engine_snapshot(
    engine: *const og_engine,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let mut buf = ffi::out_slice(buf, len)?;
        let out_n = ffi::out(out_n)?;
        let inner = h.read();
        let need = inner.engine.snapshot_len();
        let Some(dst) = buf.zeroed_prefix(need) else {
            out_n.write(need);
            return Err(og_result::BufferTooSmall);
        };
        let n = inner.engine.write_snapshot(dst)?;
        out_n.write(n);
        Ok(())
    })
}

/// Writes a snapshot of the engine's state to a file, atomically: into `PATH.tmp`, flushed to
/// disk, then renamed over `path`.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_IO`.
/// Takes the read lock while the snapshot is taken, not while writing.
#[no_mangle]
pub extern "C" fn og_engine_snapshot_file(
    engine: *const og_engine,
    path: *const c_char,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let path = ffi::path(path)?;
        let bytes = outguard::policy::snapshot(&h.read().engine);
        write_atomically(path, &bytes).map_err(|_| og_result::Io)
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn restore(h: &og_engine, bytes: &[u8], report: *mut og_restore_report) -> Result<(), og_result> {
    let report = ffi::opt_out(report);
    let r = h.write().engine.restore_snapshot(bytes)?;
    if let Some(o) = report {
        o.write(og_restore_report {
            restored: r.restored,
            unknown: r.unknown,
        });
    }
    Ok(())
}

/// Restores a snapshot (`len` bytes at `bytes`) into the engine: afterwards every tenant has
/// exactly the state the snapshot holds for its id (tenants absent from it start clean). A
/// truncated, corrupt, foreign or other-version snapshot changes nothing.
/// `out_report` may be NULL; it is written on success.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_SNAPSHOT_TRUNCATED`,
/// `OG_RESULT_SNAPSHOT_FOREIGN`, `OG_RESULT_SNAPSHOT_VERSION`, `OG_RESULT_SNAPSHOT_CHECKSUM`,
/// `OG_RESULT_SNAPSHOT_CORRUPT`. Takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_restore(
    engine: *const og_engine,
    bytes: *const u8,
    len: usize,
    out_report: *mut og_restore_report,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let b = ffi::u8_bytes(bytes, len)?;
        restore(h, b, out_report)
    })
}

/// Restores a snapshot from a file (see `og_engine_restore`).
/// Results: as `og_engine_restore`, plus `OG_RESULT_IO` (cannot read the file; a missing
/// file too: check for it first if that is not an error for you).
/// Reads the file without the lock, then takes the write lock.
#[no_mangle]
pub extern "C" fn og_engine_restore_file(
    engine: *const og_engine,
    path: *const c_char,
    out_report: *mut og_restore_report,
) -> og_result {
    guard(|| {
        let h = ffi::input(engine)?;
        let path = ffi::path(path)?;
        let bytes = std::fs::read(path).map_err(|_| og_result::Io)?;
        restore(h, &bytes, out_report)
    })
}

#[cfg(test)]
mod idna_tests {
    use super::*;

    #[test]
    fn u_labels_reach_the_core_as_a_labels() {
        let raw = Message {
            auth_user: Some("jürgen@bücher.example"),
            cert_domain: Some("mail.bücher.example"),
            ..Message::new("<jürgen@Bücher.example>")
        };
        let names = ascii_names(&raw);
        let m = with_ascii(raw, &names);
        assert_eq!(m.mail_from, b"<j\xc3\xbcrgen@xn--bcher-kva.example>");
        assert_eq!(m.auth_user, Some("jürgen@xn--bcher-kva.example"));
        assert_eq!(m.cert_domain, Some("mail.xn--bcher-kva.example"));
        let ascii = Message::new("a@example.com");
        let names = ascii_names(&ascii);
        assert!(
            names.mail_from.is_none() && names.auth_user.is_none() && names.cert_domain.is_none()
        );
    }
}

#[cfg(test)]
mod check_tests {
    use std::ffi::CString;

    use super::*;

    const NOW: u64 = 1_780_000_000;
    const POLICY: &str = r#"
[[tenants]]
id = "bücher"
domains = ["bücher.example"]
connectors = [{ name = "tls", certificate = "mail.bücher.example" }]

[[tenants]]
id = "contoso"
domains = ["contoso.com"]
"#;

    fn engine() -> og_engine {
        let engine = Policy::from_toml(POLICY, "test.toml", None)
            .and_then(|p| p.build())
            .expect("policy");
        og_engine {
            inner: RwLock::new(Inner {
                engine,
                callback: None,
            }),
        }
    }

    /// `og_engine_check` against the eager path it replaces (every name converted before the
    /// check, as `with_message` does for record and evaluate): the same result code, and the
    /// same decision, for senders with and without U-labels in every position the parser and
    /// the conversion look at, with every kind of `auth_user` and `cert_domain`.
    #[test]
    fn check_decides_as_the_eager_conversion() {
        let h = engine();
        let senders: &[&[u8]] = &[
            "jürgen@bücher.example".as_bytes(),
            "<jürgen@Bücher.example>".as_bytes(),
            " <alice@bücher.example> ".as_bytes(),
            "alice@bücher.example ".as_bytes(),
            "alice@bücher.example.".as_bytes(),
            "alice@bücher.example>".as_bytes(),
            "<alice@bücher.example".as_bytes(),
            "alice@xn--bcher-kva.example".as_bytes(),
            "jürgen@xn--bcher-kva.example".as_bytes(),
            "<@bücher.example:alice@contoso.com>".as_bytes(),
            "<@bücher.example:alice@bücher.example>".as_bytes(),
            "<@contoso.com:jürgen@bücher.example>".as_bytes(),
            "\"a@bücher\"@bücher.example".as_bytes(),
            "\"a@bücher\"@contoso.com".as_bytes(),
            "alice@[203.0.113.5]".as_bytes(),
            "jürgen@[203.0.113.5]".as_bytes(),
            "alice@bücher..example".as_bytes(),
            "alice@-bücher.example".as_bytes(),
            "alice@".as_bytes(),
            "ü".as_bytes(),
            "@bücher.example".as_bytes(),
            b"alice@b\xfccher.example",
            b"\xff@contoso.com",
            b"",
            b"<>",
            b"alice@contoso.com",
        ];
        let names = [
            None,
            Some("jürgen@bücher.example"),
            Some("alice@contoso.com"),
            Some("mail.bücher.example"),
            Some("ü"),
        ];
        let tenants = [None, Some("bücher"), Some("contoso")];
        let mut compared = 0;
        for &from in senders {
            for tenant in tenants {
                for auth in names {
                    for cert in names {
                        let c = |s: Option<&str>| s.map(|s| CString::new(s).expect("no NUL"));
                        let (t, a, d) = (c(tenant), c(auth), c(cert));
                        let p = |s: &Option<CString>| s.as_ref().map_or(ptr_null(), |s| s.as_ptr());
                        let m = og_message {
                            mail_from: from.as_ptr().cast(),
                            mail_from_len: from.len(),
                            tenant: p(&t),
                            tenant_len: 0,
                            auth_user: p(&a),
                            cert_domain: p(&d),
                            client_ip: ptr_null(),
                            flags: 0,
                            recipients: 1,
                            client_addr: og_ip::default(),
                        };
                        let want = with_message(&m, |msg| Ok(h.read().engine.check(NOW, msg)));
                        let want = want.expect("a valid message");
                        let mut got = UNWRITTEN;
                        assert_eq!(og_engine_check(&h, NOW, &m, &mut got), og_result::Ok);
                        assert_eq!(
                            format!("{got:?}"),
                            format!("{:?}", og_decision::from(&want)),
                            "{:?} tenant {tenant:?} auth {auth:?} cert {cert:?}",
                            String::from_utf8_lossy(from),
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, senders.len() * 3 * 25);

        // The U-label sender is decided on its A-labels (found again after the core refused the
        // raw bytes), and a non-ASCII local part with an ASCII domain needs no conversion.
        let t = CString::new("bücher").expect("no NUL");
        for from in ["jürgen@bücher.example", "jürgen@xn--bcher-kva.example"] {
            let m = og_message {
                mail_from: from.as_ptr().cast(),
                mail_from_len: from.len(),
                tenant: t.as_ptr(),
                tenant_len: 0,
                auth_user: ptr_null(),
                cert_domain: ptr_null(),
                client_ip: ptr_null(),
                flags: 0,
                recipients: 1,
                client_addr: og_ip::default(),
            };
            let mut d = UNWRITTEN;
            assert_eq!(og_engine_check(&h, NOW, &m, &mut d), og_result::Ok);
            assert!(
                d.accepted && d.sender_class == OG_SENDER_CLASS_REGISTERED,
                "{from}: {d:?}"
            );
            assert_eq!(d.tenant, 0);
        }
    }

    /// `og_engine_check` as the C documentation describes it, written out plainly: the fields
    /// read in order (flags, address, sender, tenant, `auth_user`, `cert_domain`), the first
    /// bad one giving the result, the address text parsed by the standard parser, every name
    /// converted to A-labels before the check.
    fn check_as_documented(h: &og_engine, m: &og_message) -> Result<og_decision, og_result> {
        if m.flags & !(OG_MESSAGE_FORWARDED | OG_MESSAGE_SPF_PASS | OG_MESSAGE_DKIM_PASS) != 0 {
            return Err(og_result::InvalidParameter);
        }
        let b = m.client_addr.bytes;
        let client_ip = match (ffi::opt_text(m.client_ip)?, m.client_addr.family) {
            (None, OG_IP_NONE) => None,
            (None, OG_IP_V4) => Some(IpAddr::from([b[0], b[1], b[2], b[3]])),
            (None, OG_IP_V6) => Some(IpAddr::from(b)),
            (Some(s), OG_IP_NONE) => Some(s.parse().map_err(|_| og_result::InvalidIp)?),
            _ => return Err(og_result::InvalidParameter),
        };
        let raw = Message {
            mail_from: ffi::bytes(m.mail_from, m.mail_from_len)?,
            tenant: match m.tenant_len {
                0 => ffi::opt_text(m.tenant)?,
                n => Some(
                    core::str::from_utf8(ffi::bytes(m.tenant, n)?)
                        .map_err(|_| og_result::InvalidUtf8)?,
                ),
            },
            client_ip,
            auth_user: ffi::opt_text(m.auth_user)?,
            cert_domain: ffi::opt_text(m.cert_domain)?,
            forwarded: m.flags & OG_MESSAGE_FORWARDED != 0,
            spf_pass: m.flags & OG_MESSAGE_SPF_PASS != 0,
            dkim_pass: m.flags & OG_MESSAGE_DKIM_PASS != 0,
            recipients: m.recipients,
        };
        let names = ascii_names(&raw);
        let msg = with_ascii(raw, &names);
        Ok(og_decision::from(&h.read().engine.check(NOW, &msg)))
    }

    /// Every combination of good, bad and absent fields gets the result, and the decision, of
    /// [`check_as_documented`]: which error a bad message gets does not depend on the order in
    /// which `og_engine_check` happens to read the fields.
    #[test]
    fn check_reads_messages_as_documented() {
        let h = engine();
        // NULL, then each string.
        let strings = |v: &[&[u8]]| {
            let owned: Vec<CString> = v
                .iter()
                .map(|&s| CString::new(s).expect("no NUL"))
                .collect();
            let mut ptrs = vec![ptr_null()];
            ptrs.extend(owned.iter().map(|s| s.as_ptr()));
            (owned, ptrs)
        };
        let (_ips, ips) = strings(&[b"203.0.113.5", b"2001:db8::1", b"203.0.113.05", b"\xff"]);
        let (_t, tenants) = strings(&[b"contoso", "bücher".as_bytes(), b"nobody", b"\xff"]);
        // Each tenant as NUL-terminated text (length 0), then by length: a prefix of a longer
        // text without its NUL, a non-ASCII id, bad UTF-8, an id with a NUL inside, a length
        // no buffer has, and NULL with a length.
        let by_len: [&[u8]; 4] = [b"contosoX", "bücher".as_bytes(), b"ok\xff", b"contoso\0"];
        let tenants: Vec<(*const c_char, usize)> = tenants
            .iter()
            .map(|&p| (p, 0))
            .chain([
                (by_len[0].as_ptr().cast(), 7),
                (by_len[1].as_ptr().cast(), by_len[1].len()),
                (by_len[2].as_ptr().cast(), 3),
                (by_len[3].as_ptr().cast(), 8),
                (by_len[0].as_ptr().cast(), usize::MAX),
                (ptr_null(), 3),
            ])
            .collect();
        let (_a, auths) = strings(&[
            b"alice@contoso.com",
            "jürgen@bücher.example".as_bytes(),
            b"\xff",
        ]);
        let (_c, certs) = strings(&["mail.bücher.example".as_bytes(), b"\xc3"]);
        let senders: [&[u8]; 4] = [
            b"alice@contoso.com",
            "jürgen@bücher.example".as_bytes(),
            b"not a sender",
            b"",
        ];
        // Each sender, then NULL with a length of 0 and of 5.
        let senders: Vec<(*const c_char, usize)> = senders
            .iter()
            .map(|s| (s.as_ptr().cast(), s.len()))
            .chain([(ptr_null(), 0), (ptr_null(), 5)])
            .collect();
        let v4 = [203, 0, 113, 5, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9];
        let v6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let addrs = [
            (OG_IP_NONE, [0; 16]),
            (OG_IP_V4, v4),
            (OG_IP_V6, v6),
            (5, v4),
        ]
        .map(|(family, bytes)| og_ip { family, bytes });
        let flags = [0, OG_MESSAGE_FORWARDED | OG_MESSAGE_SPF_PASS, 8];
        let sizes = [
            flags.len(),
            ips.len(),
            addrs.len(),
            senders.len(),
            tenants.len(),
            auths.len(),
            certs.len(),
        ];
        let total: usize = sizes.iter().product();
        for n in 0..total {
            // The n-th combination, one digit per field.
            let mut rest = n;
            let [f, ip, addr, from, tenant, auth, cert] = sizes.map(|size| {
                let digit = rest % size;
                rest /= size;
                digit
            });
            let m = og_message {
                mail_from: senders[from].0,
                mail_from_len: senders[from].1,
                tenant: tenants[tenant].0,
                tenant_len: tenants[tenant].1,
                auth_user: auths[auth],
                cert_domain: certs[cert],
                client_ip: ips[ip],
                flags: flags[f],
                recipients: 2,
                client_addr: addrs[addr],
            };
            let mut got = UNWRITTEN;
            let r = og_engine_check(&h, NOW, &m, &mut got);
            let got = (r == og_result::Ok).then(|| format!("{got:?}"));
            let want = match check_as_documented(&h, &m) {
                Ok(d) => (og_result::Ok, Some(format!("{d:?}"))),
                Err(e) => (e, None),
            };
            assert_eq!((r, got), want, "{m:?}");
        }
        assert_eq!(total, 3 * 5 * 4 * 6 * 11 * 4 * 3);
    }

    /// An ASCII message, the address in binary or as text, is checked without allocating.
    #[test]
    fn check_allocates_nothing() {
        let h = engine();
        let from = "alice@contoso.com";
        let (tenant, ip) = (c"contoso", c"203.0.113.5");
        let binary = og_message {
            mail_from: from.as_ptr().cast(),
            mail_from_len: from.len(),
            tenant: tenant.as_ptr(),
            tenant_len: 0,
            auth_user: ptr_null(),
            cert_domain: ptr_null(),
            client_ip: ptr_null(),
            flags: OG_MESSAGE_SPF_PASS,
            recipients: 1,
            client_addr: og_ip {
                family: OG_IP_V4,
                bytes: [203, 0, 113, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            },
        };
        let text = og_message {
            client_ip: ip.as_ptr(),
            client_addr: og_ip::default(),
            ..binary
        };
        for m in [binary, text] {
            let mut d = UNWRITTEN;
            let before = ffi::counting_alloc::allocations();
            for _ in 0..100 {
                assert_eq!(og_engine_check(&h, NOW, &m, &mut d), og_result::Ok);
            }
            assert_eq!(ffi::counting_alloc::allocations(), before, "{m:?}");
            assert!(d.accepted && d.tenant == 1, "{d:?}");
        }
        // The count sees an allocation.
        let before = ffi::counting_alloc::allocations();
        drop(std::hint::black_box(Box::new(0u64)));
        assert_eq!(ffi::counting_alloc::allocations(), before + 1);
    }

    fn ptr_null() -> *const c_char {
        core::ptr::null()
    }

    /// A decision no check writes (the reason and tenant are out of range).
    const UNWRITTEN: og_decision = og_decision {
        accepted: true,
        reason: 99,
        monitored: 99,
        rule: 99,
        tenant: 99,
        attribution: 99,
        sender_class: 99,
        counters: og_counters {
            total: 99,
            suspicious: 99,
            unregistered: 99,
            min_messages: 99,
            min_suspicious: 99,
            max_ratio_ppm: 99,
            warn_ratio_ppm: 99,
            limit: 99,
        },
        block_ends: 99,
    };
}
