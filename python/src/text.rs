//! Explanations and NDRs: the core's texts and renderer, with Python arguments.

use std::hash::{DefaultHasher, Hash, Hasher};

use outguard::ndr::{render, Ndr};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert;

/// The explanation of a code (`"5.7.750"`, `"550 5.7.750"` or a reason name such as
/// `"tenant_lapsed"`) in a language (`"en"`, `"uk"`, `"pl"`, `"pt-BR"`) for an audience
/// (`"sender"`: why did I get this; `"admin"`: what can I do).
#[pyfunction]
#[pyo3(signature = (code, lang = "en", audience = "sender"))]
pub fn explain(code: &str, lang: &str, audience: &str) -> PyResult<&'static str> {
    Ok(outguard::explain(
        convert::reason(code)?,
        convert::lang(lang)?,
        convert::audience(audience)?,
    ))
}

/// A one-line title for a code in a language ("Message not delivered: ..."), the NDR subject.
#[pyfunction]
#[pyo3(signature = (code, lang = "en"))]
pub fn title(code: &str, lang: &str) -> PyResult<&'static str> {
    Ok(outguard::explain::title(
        convert::reason(code)?,
        convert::lang(lang)?,
    ))
}

/// The exact SMTP reply line of a code (`"550 5.7.750 Service unavailable. ..."`).
#[pyfunction]
pub fn reply(code: &str) -> PyResult<&'static str> {
    Ok(convert::reason(code)?.reply())
}

/// Renders an RFC 3464 `multipart/report` delivery status notification for a refused message,
/// with CRLF line endings: a human-readable part in `lang` (sender and administrator
/// explanations, the exact reply) and a `message/delivery-status` part per recipient.
///
/// `to` is the original envelope sender (who gets the bounce); `now` is the NDR's date and
/// `arrival` the original message's (default `now`). `boundary` and `message_id` default to
/// values derived from the other arguments. Raises `ValueError` for a value that would make a
/// broken or unsafe message (control characters, an over-long field, a bad boundary).
#[pyfunction]
#[pyo3(signature = (code, *, to, recipients, now, lang="en", reporting_mta="localhost",
                    from_addr=None, arrival=None, boundary=None, message_id=None,
                    original_headers=None))]
#[allow(clippy::too_many_arguments)]
pub fn render_ndr(
    code: &str,
    to: &str,
    recipients: Vec<String>,
    now: &Bound<'_, PyAny>,
    lang: &str,
    reporting_mta: &str,
    from_addr: Option<String>,
    arrival: Option<&Bound<'_, PyAny>>,
    boundary: Option<String>,
    message_id: Option<String>,
    original_headers: Option<&str>,
) -> PyResult<String> {
    let reason = convert::reason(code)?;
    let lang = convert::lang(lang)?;
    let now = convert::time(now, "now")?;
    let arrival = convert::opt_time(arrival, "arrival")?.unwrap_or(now);
    let from = from_addr.unwrap_or_else(|| format!("MAILER-DAEMON@{reporting_mta}"));
    let mut h = DefaultHasher::new();
    (to, &recipients, now, arrival, reason.enhanced_code()).hash(&mut h);
    let tag = h.finish();
    let boundary = boundary.unwrap_or_else(|| format!("=_outguard_{tag:016x}"));
    let message_id = message_id.unwrap_or_else(|| format!("{now}.{tag:016x}@{reporting_mta}"));
    let rcpts: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let ndr = Ndr {
        reporting_mta,
        from: &from,
        to,
        recipients: &rcpts,
        reason,
        lang,
        arrival,
        now,
        boundary: &boundary,
        message_id: &message_id,
        original_headers,
    };
    let mut out = String::new();
    render(&ndr, &mut out).map_err(|_| {
        PyValueError::new_err(
            "cannot render the NDR: a field is empty, over 900 bytes or holds a control \
             character, reporting_mta or message_id holds whitespace, message_id lacks '@', \
             or the boundary is not 1-70 RFC 2046 characters",
        )
    })?;
    Ok(out)
}
