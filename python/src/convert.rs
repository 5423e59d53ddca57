//! Python values to core values: times, IP addresses, ranges, verdicts, rules, languages,
//! messages, and the columns of a batch. Conversions only: every decision is the core's.

use std::net::IpAddr;

use outguard::{Audience, Cidr, Lang, Message, Reason, Rule, Verdict};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyString};

/// Unix seconds from an `int`, a `float` (truncated) or a timezone-aware `datetime`.
pub fn time(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(v);
    }
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected Unix seconds, got a bool"
        )));
    }
    if obj.is_instance_of::<PyFloat>() {
        let f: f64 = obj.extract()?;
        if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 {
            return Ok(f as u64);
        }
        return Err(PyValueError::new_err(format!(
            "{what}: {f} is not a Unix time (seconds since 1970, not negative)"
        )));
    }
    if obj.hasattr("tzinfo")? && obj.hasattr("timestamp")? {
        if obj.getattr("tzinfo")?.is_none() {
            return Err(PyValueError::new_err(format!(
                "{what}: a naive datetime is ambiguous; give it a timezone (tzinfo=timezone.utc)"
            )));
        }
        let f: f64 = obj.call_method0("timestamp")?.extract()?;
        if f.is_finite() && f >= 0.0 {
            return Ok(f as u64);
        }
        return Err(PyValueError::new_err(format!(
            "{what}: datetimes before 1970 are not Unix times"
        )));
    }
    if let Ok(v) = obj.extract::<i64>() {
        return Err(PyValueError::new_err(format!(
            "{what}: {v} is negative; Unix times start at 0"
        )));
    }
    Err(PyTypeError::new_err(format!(
        "{what}: expected Unix seconds (int or float) or an aware datetime, got {}",
        obj.get_type().name()?
    )))
}

/// An optional time (`None` stays `None`).
pub fn opt_time(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<u64>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => time(o, what).map(Some),
    }
}

/// Parses an IP address from its text (spaces around it ignored).
pub fn parse_ip(s: &str) -> PyResult<IpAddr> {
    // Text that starts and ends with a visible ASCII character (what callers pass) has nothing
    // to trim; `trim` decodes characters at both ends to look for Unicode spaces.
    let b = s.as_bytes();
    let t = match (b.first(), b.last()) {
        (Some(f), Some(l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => s,
        _ => s.trim(),
    };
    outguard::cidr::parse_ip(t.as_bytes())
        .ok_or_else(|| PyValueError::new_err(format!("invalid IP address {s:?}")))
}

/// An IP address from a `str` or an `ipaddress.IPv4Address`/`IPv6Address` (anything whose
/// `str()` is an address).
pub fn ip(obj: &Bound<'_, PyAny>) -> PyResult<IpAddr> {
    if let Ok(s) = obj.cast::<PyString>() {
        return parse_ip(&s.to_cow()?);
    }
    parse_ip(&obj.str()?.to_cow()?)
}

/// An optional IP address (`None` and `""` are no address).
pub fn opt_ip(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<IpAddr>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => {
            if let Ok(s) = o.cast::<PyString>() {
                let s = s.to_cow()?;
                if s.is_empty() {
                    return Ok(None);
                }
                return parse_ip(&s).map(Some);
            }
            ip(o).map(Some)
        }
    }
}

/// A CIDR range (`"192.0.2.0/24"`, a bare address, or an `ipaddress` network/address).
pub fn cidr(obj: &Bound<'_, PyAny>) -> PyResult<Cidr> {
    let s = obj.str()?.to_cow()?.into_owned();
    Cidr::parse(&s).map_err(|_| {
        PyValueError::new_err(format!(
            "invalid CIDR range {s:?} (expected such as \"192.0.2.0/24\", host bits zero)"
        ))
    })
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter()
        .map(|v| format!("{:?}", name(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A verdict from its name (`"clean"`, `"spam"`, `"bulk"`, `"phish"`, `"malware"`).
pub fn verdict(s: &str) -> PyResult<Verdict> {
    Verdict::from_name(s).ok_or_else(|| PyValueError::new_err(unknown_verdict(s)))
}

/// The message for a verdict name that is not one.
pub fn unknown_verdict(s: &str) -> String {
    format!(
        "unknown verdict {s:?}; expected one of {}",
        names(&Verdict::ALL, Verdict::name)
    )
}

const RULES: [Rule; 3] = [
    Rule::TenantThreshold,
    Rule::UnregisteredDomain,
    Rule::LowReputationIp,
];

/// A rule from its policy name (`"tenant_threshold"`) or code (`"5.7.705"`).
pub fn rule(s: &str) -> PyResult<Rule> {
    Rule::from_name(s.trim())
        .or_else(|| RULES.into_iter().find(|r| r.enhanced_code() == s.trim()))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown rule {s:?}; expected one of {} or its code (\"5.7.705\", \"5.7.750\")",
                names(&RULES, Rule::name)
            ))
        })
}

/// A refusal reason from an enhanced code (`"5.7.750"`, `"550 5.7.750"`) or a reason name
/// (`"tenant_lapsed"`).
pub fn reason(s: &str) -> PyResult<Reason> {
    Reason::from_code(s)
        .or_else(|| Reason::ALL.into_iter().find(|r| r.name() == s.trim()))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown code {s:?}; expected one of \"5.1.7\", \"5.7.64\", \"5.7.705\", \
                 \"5.7.708\", \"5.7.750\" or a reason name ({})",
                names(&Reason::ALL, Reason::name)
            ))
        })
}

/// A language tag (`"en"`, `"uk"`, `"pl"`, `"pt-BR"`).
pub fn lang(s: &str) -> PyResult<Lang> {
    Lang::parse(s).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown language {s:?}; expected one of \"en\", \"uk\", \"pl\", \"pt-BR\""
        ))
    })
}

/// An audience (`"sender"` or `"admin"`).
pub fn audience(s: &str) -> PyResult<Audience> {
    Audience::parse(s).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown audience {s:?}; expected \"sender\" or \"admin\""
        ))
    })
}

/// A message with owned fields, ready to lend to the core as a [`Message`].
#[derive(Clone, Debug, Default)]
pub struct OwnedMessage {
    pub mail_from: Vec<u8>,
    pub tenant: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub auth_user: Option<String>,
    pub cert_domain: Option<String>,
    pub forwarded: bool,
    pub spf_pass: bool,
    pub dkim_pass: bool,
    pub recipients: u32,
}

impl OwnedMessage {
    pub fn as_message(&self) -> Message<'_> {
        Message {
            mail_from: &self.mail_from,
            tenant: self.tenant.as_deref(),
            client_ip: self.client_ip,
            auth_user: self.auth_user.as_deref(),
            cert_domain: self.cert_domain.as_deref(),
            forwarded: self.forwarded,
            spf_pass: self.spf_pass,
            dkim_pass: self.dkim_pass,
            recipients: self.recipients,
        }
    }
}

/// The A-label form of an internationalised address or domain (a login, a certificate or
/// accepted domain); `None` when it has none (ASCII already, or not a name).
pub fn idna(s: &str) -> Option<String> {
    outguard::policy::idna::address_to_ascii(s)
        .or_else(|| outguard::policy::idna::domain_to_ascii(s))
}

/// An internationalised domain in a login or certificate domain, in A-labels (the core only
/// knows ASCII names); anything else is passed through for the core to judge.
pub fn idna_text(v: Option<String>) -> Option<String> {
    v.map(|s| idna(&s).unwrap_or(s))
}

/// An envelope sender from `str` or `bytes` (`None` is the null sender, like `""` and `"<>"`).
/// U-labels in the domain become A-labels.
pub fn mail_from(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        return Ok(match outguard::policy::idna::address_to_ascii(&s) {
            Some(a) => a.into_bytes(),
            None => s.as_bytes().to_vec(),
        });
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if obj.is_none() {
        return Ok(Vec::new());
    }
    Err(PyTypeError::new_err(format!(
        "mail_from: expected str or bytes, got {}",
        obj.get_type().name()?
    )))
}

/// An optional text field: `None` and `""` are absent; a float NaN (pandas' missing value) too.
pub fn opt_text(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<String>> {
    if obj.is_none() {
        return Ok(None);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        return Ok((!s.is_empty()).then(|| s.into_owned()));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        if f.value().is_nan() {
            return Ok(None);
        }
    }
    Err(PyTypeError::new_err(format!(
        "{what}: expected str or None, got {}",
        obj.get_type().name()?
    )))
}

/// A flag: `bool`, numpy bools, 0/1; `None` is false.
pub fn flag(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<bool> {
    if obj.is_none() {
        return Ok(false);
    }
    if let Ok(b) = obj.extract::<bool>() {
        return Ok(b);
    }
    match obj.extract::<i64>() {
        Ok(0) => Ok(false),
        Ok(1) => Ok(true),
        _ => Err(PyTypeError::new_err(format!(
            "{what}: expected a bool, got {}",
            obj.repr()?.to_cow()?
        ))),
    }
}

/// A recipient count (`None` is 1).
pub fn recipients(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    if obj.is_none() {
        return Ok(1);
    }
    obj.extract::<u32>().map_err(|_| {
        PyValueError::new_err(format!(
            "recipients: expected a count (0 ..= 4294967295), got {}",
            obj.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })
}
