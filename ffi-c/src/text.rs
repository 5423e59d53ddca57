//! Static strings (replies, names, explanations), result messages, the version, NDRs, and the
//! helpers that copy text into caller buffers.

use core::ffi::{c_char, CStr};
use core::fmt::Write;
use std::ffi::CString;
use std::sync::LazyLock;

use outguard::explain::{explain, Audience, Lang};
use outguard::ndr::{render, Ndr};
use outguard::{Attribution, EventKind, Reason, Rule, SenderClass};

use crate::error::og_result;
use crate::ffi::{self, Out, OutSlice};
use crate::panic::{guard, guard_or};
use crate::types::*;

/// Copies `s` and a terminating NUL into `buf` and stores `s.len()` in `out_n`. When it does
/// not fit, nothing is copied, `out_n` still receives `s.len()` (the caller needs
/// `s.len() + 1` bytes) and the result is `OG_RESULT_BUFFER_TOO_SMALL`.
pub(crate) fn write_text(
    buf: &mut OutSlice<u8>,
    out_n: Out<usize>,
    s: &[u8],
) -> Result<(), og_result> {
    if s.len() >= buf.len() {
        out_n.write(s.len());
        return Err(og_result::BufferTooSmall);
    }
    buf.copy_at(0, s);
    buf.copy_at(s.len(), &[0]);
    out_n.write(s.len());
    Ok(())
}

/// Copies a tenant's id as `write_text` does; an empty id (what the engines give for an index
/// that is no tenant) is `OG_RESULT_UNKNOWN_TENANT`.
pub(crate) fn write_tenant_id(
    buf: &mut OutSlice<u8>,
    out_n: Out<usize>,
    id: &str,
) -> Result<(), og_result> {
    if id.is_empty() {
        return Err(og_result::UnknownTenant);
    }
    write_text(buf, out_n, id.as_bytes())
}

/// Writes an error description into an error buffer: truncated at a character boundary to
/// fit, always NUL-terminated; nothing at all when the buffer has no room.
pub(crate) fn write_error(buf: &mut OutSlice<u8>, msg: &str) {
    if buf.len() == 0 {
        return;
    }
    let mut n = msg.len().min(buf.len() - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    buf.copy_at(0, &msg.as_bytes()[..n]);
    buf.copy_at(n, &[0]);
}

/// Runs a body that fails with a result code or with an error `E` that describes itself (a
/// policy's problems, a file's); on failure writes that description (for a code, its message)
/// into the error buffer and returns the code (`code(e)` for an `E`).
pub(crate) fn with_error_buffer<E: core::fmt::Display>(
    err_buf: *mut c_char,
    err_len: usize,
    code: fn(&E) -> og_result,
    f: impl FnOnce() -> Result<Result<(), E>, og_result>,
) -> og_result {
    guard(|| {
        let mut eb = ffi::out_bytes(err_buf, err_len)?;
        match f() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                write_error(&mut eb, &e.to_string());
                Err(code(&e))
            }
            Err(c) => {
                write_error(&mut eb, &og_result::message(c).to_string_lossy());
                Err(c)
            }
        }
    })
}

/// Every static text of the core, NUL-terminated once, at first use, and kept for the life of
/// the process (so the pointers handed to C never dangle). Nothing allocates after that.
struct Texts {
    reply: Vec<CString>,
    enhanced_code: Vec<CString>,
    text: Vec<CString>,
    reason_name: Vec<CString>,
    explain: Vec<CString>,
    sender_class: Vec<CString>,
    attribution: Vec<CString>,
    rule: Vec<CString>,
    event_kind: Vec<CString>,
}

fn cstring(s: &str) -> CString {
    // Core texts hold no NUL; an empty string would be the (impossible) fallback.
    CString::new(s).unwrap_or_default()
}

static TEXTS: LazyLock<Texts> = LazyLock::new(|| {
    let reasons = Reason::ALL;
    let mut explanations = Vec::new();
    for r in reasons {
        for l in Lang::ALL {
            for a in [Audience::Sender, Audience::Admin] {
                explanations.push(cstring(explain(r, l, a)));
            }
        }
    }
    Texts {
        reply: reasons.iter().map(|r| cstring(r.reply())).collect(),
        enhanced_code: reasons.iter().map(|r| cstring(r.enhanced_code())).collect(),
        text: reasons.iter().map(|r| cstring(r.text())).collect(),
        reason_name: reasons.iter().map(|r| cstring(r.name())).collect(),
        explain: explanations,
        sender_class: (1..=4)
            .filter_map(sender_class_from_c)
            .map(|c| cstring(c.name()))
            .collect(),
        attribution: (1..=4)
            .filter_map(attribution_from_c)
            .map(|a| cstring(a.name()))
            .collect(),
        rule: [
            Rule::TenantThreshold,
            Rule::UnregisteredDomain,
            Rule::LowReputationIp,
        ]
        .iter()
        .map(|r| cstring(r.name()))
        .collect(),
        event_kind: (1..=6)
            .filter_map(event_kind_from_c)
            .map(|k| cstring(k.name()))
            .collect(),
    }
});

fn reason_index(r: Reason) -> usize {
    Reason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

fn ptr_of(table: &'static [CString], i: Option<usize>) -> *const c_char {
    i.and_then(|i| table.get(i))
        .map_or(core::ptr::null(), |s| s.as_ptr())
}

fn reason_text(r: og_reason, pick: fn(&'static Texts) -> &'static [CString]) -> *const c_char {
    guard_or(core::ptr::null(), || {
        ptr_of(pick(&TEXTS), reason_from_c(r).map(reason_index))
    })
}

/// The library version, such as `"0.1.0"`: a static NUL-terminated string.
///
/// Thread-safe; never NULL; never allocates.
#[no_mangle]
pub extern "C" fn og_version() -> *const c_char {
    const V: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    V.as_ptr()
}

/// A static, NUL-terminated description of a result code (`og_result` as a number; any
/// number is accepted, unknown ones give `"unknown result code"`).
///
/// Thread-safe; never NULL; never allocates.
#[no_mangle]
pub extern "C" fn og_result_message(result: u32) -> *const c_char {
    guard_or(c"unknown result code".as_ptr(), || {
        og_result::from_u32(result)
            .map_or(c"unknown result code", og_result::message)
            .as_ptr()
    })
}

/// The exact SMTP reply line of a refusal, such as
/// `"550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"`
/// (ASCII, no CRLF): a static NUL-terminated string.
///
/// Returns NULL for `OG_REASON_NONE` and unknown values. Thread-safe; the string lives for
/// the life of the process; the first call of any text function allocates the table once.
#[no_mangle]
pub extern "C" fn og_reason_reply(reason: og_reason) -> *const c_char {
    reason_text(reason, |t| &t.reply)
}

/// The enhanced status code of a refusal, such as `"5.7.750"`: a static string.
///
/// Returns NULL for `OG_REASON_NONE` and unknown values. Thread-safe.
#[no_mangle]
pub extern "C" fn og_reason_enhanced_code(reason: og_reason) -> *const c_char {
    reason_text(reason, |t| &t.enhanced_code)
}

/// The text of the reply after the enhanced code, such as
/// `"Service unavailable. Client blocked from sending from unregistered domains"`: a static
/// string. With `og_reason_smtp_code` and `og_reason_enhanced_code` this is the reply split
/// the way libmilter's `smfi_setreply` wants it.
///
/// Returns NULL for `OG_REASON_NONE` and unknown values. Thread-safe.
#[no_mangle]
pub extern "C" fn og_reason_text(reason: og_reason) -> *const c_char {
    reason_text(reason, |t| &t.text)
}

/// A short stable name of the reason, such as `"unregistered_domain"`: a static string.
///
/// Returns NULL for `OG_REASON_NONE` and unknown values. Thread-safe.
#[no_mangle]
pub extern "C" fn og_reason_name(reason: og_reason) -> *const c_char {
    reason_text(reason, |t| &t.reason_name)
}

/// The basic SMTP reply code of a refusal (550), or 0 for `OG_REASON_NONE` and unknown values.
///
/// Thread-safe.
#[no_mangle]
pub extern "C" fn og_reason_smtp_code(reason: og_reason) -> u32 {
    guard_or(0, || {
        reason_from_c(reason).map_or(0, |r| u32::from(r.smtp_code()))
    })
}

/// The reason for an enhanced code such as `"5.7.750"` (also `"550 5.7.750"`); `5.7.705`
/// gives `OG_REASON_TENANT_THRESHOLD`.
///
/// `code` must not be NULL. `*out_reason` is written on success only.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_REASON`. Thread-safe.
#[no_mangle]
pub extern "C" fn og_reason_from_code(
    code: *const c_char,
    out_reason: *mut og_reason,
) -> og_result {
    guard(|| {
        let code = ffi::text(code)?;
        let out = ffi::out(out_reason)?;
        let r = Reason::from_code(code).ok_or(og_result::UnknownReason)?;
        out.write(reason_to_c(Some(r)));
        Ok(())
    })
}

/// The name of a sender class (`"registered"`, `"exempt"`, `"unregistered"`, `"null"`): a
/// static string; NULL for `OG_SENDER_CLASS_NONE` and unknown values. Thread-safe.
#[no_mangle]
pub extern "C" fn og_sender_class_name(sender_class: og_sender_class) -> *const c_char {
    guard_or(core::ptr::null(), || {
        let i = sender_class_from_c(sender_class).map(|c: SenderClass| c as usize - 1);
        ptr_of(&TEXTS.sender_class, i)
    })
}

/// The name of an attribution (`"explicit"`, `"auth_user"`, `"certificate"`,
/// `"ip_connector"`): a static string; NULL for `OG_ATTRIBUTION_NONE` and unknown values.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn og_attribution_name(attribution: og_attribution) -> *const c_char {
    guard_or(core::ptr::null(), || {
        let i = attribution_from_c(attribution).map(|a: Attribution| a as usize - 1);
        ptr_of(&TEXTS.attribution, i)
    })
}

/// The policy-file name of a rule (`"tenant_threshold"`, `"unregistered_domain"`,
/// `"low_reputation_ip"`): a static string; NULL for `OG_RULE_NONE` and unknown values.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn og_rule_name(rule: og_rule) -> *const c_char {
    guard_or(core::ptr::null(), || {
        let i = rule_from_c(rule).ok().flatten().map(|r| r as usize);
        ptr_of(&TEXTS.rule, i)
    })
}

/// The name of an event kind (`"warned"`, `"blocked"`, `"released"`, `"expired"`,
/// `"lapsed"`, `"reactivated"`): a static string; NULL for unknown values. Thread-safe.
#[no_mangle]
pub extern "C" fn og_event_kind_name(kind: og_event_kind) -> *const c_char {
    guard_or(core::ptr::null(), || {
        let i = event_kind_from_c(kind).map(|k: EventKind| k as usize - 1);
        ptr_of(&TEXTS.event_kind, i)
    })
}

/// The explanation of a refusal for its sender (*why did I get this?*) or the tenant's
/// administrator (*what can I do?*), in English (`"en"`), Ukrainian (`"uk"`), Polish (`"pl"`)
/// or Brazilian Portuguese (`"pt-BR"`; regions and `_` are accepted: `"en-US"`, `"pt_br"`).
///
/// On success `*out_text` points to a static NUL-terminated UTF-8 string that lives for the
/// life of the process (never free it); it is written on success only.
/// `lang` and `out_text` must not be NULL.
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_REASON` (`OG_REASON_NONE` or an unknown value),
/// `OG_RESULT_UNKNOWN_LANGUAGE`, `OG_RESULT_INVALID_PARAMETER` (unknown audience).
/// Thread-safe; allocates nothing after the first call.
#[no_mangle]
pub extern "C" fn og_explain(
    reason: og_reason,
    lang: *const c_char,
    audience: og_audience,
    out_text: *mut *const c_char,
) -> og_result {
    guard(|| {
        let lang = ffi::text(lang)?;
        let out = ffi::out(out_text)?;
        let r = reason_from_c(reason).ok_or(og_result::UnknownReason)?;
        let l = Lang::parse(lang).ok_or(og_result::UnknownLanguage)?;
        let a = u8::try_from(audience)
            .ok()
            .and_then(Audience::from_u8)
            .ok_or(og_result::InvalidParameter)?;
        let i = (reason_index(r) * Lang::ALL.len() + l as usize) * 2 + a as usize;
        let p = ptr_of(&TEXTS.explain, Some(i));
        if p.is_null() {
            return Err(og_result::Internal);
        }
        out.write(p);
        Ok(())
    })
}

struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

struct SliceWriter<'a> {
    buf: &'a mut OutSlice<u8>,
    pos: usize,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if !self.buf.copy_at(self.pos, s.as_bytes()) {
            return Err(core::fmt::Error);
        }
        self.pos += s.len();
        Ok(())
    }
}

/// Renders an RFC 3464 `multipart/report` delivery status notification for a refusal into
/// `buf` (CRLF line endings, NUL-terminated): a localized human-readable part with the
/// sender and administrator explanations, and a `message/delivery-status` part with
/// `Status:` and `Diagnostic-Code: smtp; 550 5.7.xxx ...` per recipient.
///
/// `ndr`, `out_n` and every string of `ndr` except `original_headers` (and `recipients`
/// when `recipients_len` is 0) must not be NULL; `buf` may be NULL only when `len` is 0.
/// On success `*out_n` is the length without the NUL. When `buf` is too small nothing is
/// written to it and `*out_n` receives the length needed (without the NUL: allocate
/// `*out_n + 1`).
/// Results: `OG_RESULT_OK`, `OG_RESULT_NULL_PARAMETER`, `OG_RESULT_INVALID_UTF8`,
/// `OG_RESULT_UNKNOWN_REASON`, `OG_RESULT_UNKNOWN_LANGUAGE`, `OG_RESULT_INVALID_NDR` (a
/// field is empty, too long, holds control characters, or the boundary or Message-ID is
/// malformed), `OG_RESULT_BUFFER_TOO_SMALL`.
/// Thread-safe; allocates only the array of recipient pointers.
#[no_mangle]
pub extern "C" fn og_ndr_render(
    ndr: *const og_ndr,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> og_result {
    guard(|| {
        let n = ffi::input(ndr)?;
        let mut buf = ffi::out_bytes(buf, len)?;
        let out_n = ffi::out(out_n)?;
        let recipients = ffi::text_array(n.recipients, n.recipients_len)?;
        let reason = reason_from_c(n.reason).ok_or(og_result::UnknownReason)?;
        let lang = Lang::parse(ffi::text(n.lang)?).ok_or(og_result::UnknownLanguage)?;
        let ndr = Ndr {
            reporting_mta: ffi::text(n.reporting_mta)?,
            from: ffi::text(n.from)?,
            to: ffi::text(n.to)?,
            recipients: &recipients,
            reason,
            lang,
            arrival: n.arrival,
            now: n.now,
            boundary: ffi::text(n.boundary)?,
            message_id: ffi::text(n.message_id)?,
            original_headers: ffi::opt_text(n.original_headers)?,
        };
        let mut count = Counter(0);
        // The counter never fails, so an error here is an invalid input.
        render(&ndr, &mut count).map_err(|_| og_result::InvalidNdr)?;
        if count.0 >= buf.len() {
            out_n.write(count.0);
            return Err(og_result::BufferTooSmall);
        }
        let mut w = SliceWriter {
            buf: &mut buf,
            pos: 0,
        };
        render(&ndr, &mut w).map_err(|_| og_result::Internal)?;
        let end = w.pos;
        buf.copy_at(end, &[0]);
        out_n.write(end);
        Ok(())
    })
}
