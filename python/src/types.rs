//! The value classes: decisions, events, counters, statuses and batch results. Each is a frozen
//! wrapper over a core value (plus the tenant id as text, resolved while the engine was locked),
//! so they are immutable and safe to share between threads.

use std::collections::HashMap;

use outguard::{BlockEnd, EventKind, Reason, Rule, SenderClass, RATIO_ONE};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::reuse;

/// `int` (Unix seconds), `"release"` (the block needs an operator's release), or `None`.
pub fn block_end<'py>(py: Python<'py>, end: Option<BlockEnd>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match end {
        None => py.None().into_bound(py),
        Some(BlockEnd::OnRelease) => PyString::new(py, "release").into_any(),
        Some(BlockEnd::At(t)) => t.into_pyobject(py)?.into_any(),
    })
}

/// RFC 3339 UTC text of a Unix time, for reprs (`2026-09-21T15:33:20Z`).
pub fn iso(py: Python<'_>, t: u64) -> String {
    let f = || -> PyResult<String> {
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let d = dt
            .getattr("datetime")?
            .call_method1("fromtimestamp", (t, utc))?;
        let s: String = d
            .call_method1("strftime", ("%Y-%m-%dT%H:%M:%SZ",))?
            .extract()?;
        Ok(s)
    };
    f().unwrap_or_else(|_| t.to_string())
}

fn end_text(py: Python<'_>, end: Option<BlockEnd>) -> String {
    match end {
        None => String::new(),
        Some(BlockEnd::OnRelease) => "until release".into(),
        Some(BlockEnd::At(t)) => format!("until {}", iso(py, t)),
    }
}

fn rule_name(r: Option<Rule>) -> Option<&'static str> {
    r.map(Rule::name)
}

fn ratio(ppm: u32) -> f64 {
    ppm as f64 / RATIO_ONE as f64
}

// ---------------------------------------------------------------------------------------------

/// The counters of a tenant's rules against their limits, at the time of a decision.
#[pyclass(frozen, module = "outguard", eq)]
#[derive(Clone, PartialEq)]
pub struct Counters(pub outguard::Counters);

#[pymethods]
impl Counters {
    /// Messages (or recipients) within the 5.7.705 window.
    #[getter]
    fn total(&self) -> u32 {
        self.0.total
    }
    /// Suspicious messages within the 5.7.705 window.
    #[getter]
    fn suspicious(&self) -> u32 {
        self.0.suspicious
    }
    /// Unregistered-domain messages within the 5.7.750 window.
    #[getter]
    fn unregistered(&self) -> u32 {
        self.0.unregistered
    }
    /// 5.7.705 volume floor.
    #[getter]
    fn min_messages(&self) -> u32 {
        self.0.min_messages
    }
    /// 5.7.705 suspicious floor.
    #[getter]
    fn min_suspicious(&self) -> u32 {
        self.0.min_suspicious
    }
    /// 5.7.705 trip ratio (0..1).
    #[getter]
    fn max_ratio(&self) -> f64 {
        ratio(self.0.max_ratio_ppm)
    }
    /// 5.7.705 warning ratio (0..1).
    #[getter]
    fn warn_ratio(&self) -> f64 {
        ratio(self.0.warn_ratio_ppm)
    }
    /// 5.7.750 allowance.
    #[getter]
    fn limit(&self) -> u32 {
        self.0.limit
    }
    /// The counters as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("total", self.0.total)?;
        d.set_item("suspicious", self.0.suspicious)?;
        d.set_item("unregistered", self.0.unregistered)?;
        d.set_item("min_messages", self.0.min_messages)?;
        d.set_item("min_suspicious", self.0.min_suspicious)?;
        d.set_item("max_ratio", self.max_ratio())?;
        d.set_item("warn_ratio", self.warn_ratio())?;
        d.set_item("limit", self.0.limit)?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        let c = &self.0;
        format!(
            "Counters(total={}, suspicious={} (trips at >= {} of >= {} messages, ratio >= {}), \
             unregistered={}/{})",
            c.total,
            c.suspicious,
            c.min_suspicious,
            c.min_messages,
            self.max_ratio(),
            c.unregistered,
            c.limit
        )
    }
}

// ---------------------------------------------------------------------------------------------

/// An event with its tenant's id resolved.
#[derive(Clone, Debug)]
pub struct EventData {
    pub ev: outguard::Event,
    pub tenant: String,
}

/// One state change of a tenant's rules (warned, blocked, released, expired, lapsed,
/// reactivated), with the windowed counters at that moment.
#[pyclass(frozen, module = "outguard")]
#[derive(Clone)]
pub struct Event(pub EventData);

#[pymethods]
impl Event {
    /// `"warned"`, `"blocked"`, `"released"`, `"expired"`, `"lapsed"` or `"reactivated"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.0.ev.kind().map(EventKind::name).unwrap_or("unknown")
    }
    /// The rule: `"tenant_threshold"`, `"unregistered_domain"` or `"low_reputation_ip"`.
    #[getter]
    fn rule(&self) -> &'static str {
        self.0.ev.rule().map(Rule::name).unwrap_or("unknown")
    }
    /// The rule's enhanced status code (`"5.7.705"`).
    #[getter]
    fn code(&self) -> &'static str {
        self.0.ev.rule().map(Rule::enhanced_code).unwrap_or("")
    }
    /// The tenant id.
    #[getter]
    fn tenant(&self) -> &str {
        &self.0.tenant
    }
    /// When it happened (Unix seconds).
    #[getter]
    fn time(&self) -> u64 {
        self.0.ev.time
    }
    /// For `blocked`: when the block ends (Unix seconds) or `"release"`; for `reactivated`:
    /// when mail resumes; otherwise `None`.
    #[getter]
    fn until<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        block_end(py, self.end())
    }
    /// Windowed total (messages or recipients) at that moment.
    #[getter]
    fn total(&self) -> u32 {
        self.0.ev.total
    }
    /// Windowed suspicious count at that moment.
    #[getter]
    fn suspicious(&self) -> u32 {
        self.0.ev.suspicious
    }
    /// Windowed unregistered-domain count at that moment.
    #[getter]
    fn unregistered(&self) -> u32 {
        self.0.ev.unregistered
    }
    /// The rule is in monitor mode: nothing was really refused.
    #[getter]
    fn monitor(&self) -> bool {
        self.0.ev.monitor != 0
    }
    /// The event as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("kind", self.kind())?;
        d.set_item("rule", self.rule())?;
        d.set_item("code", self.code())?;
        d.set_item("tenant", self.tenant())?;
        d.set_item("time", self.time())?;
        d.set_item("until", self.until(py)?)?;
        d.set_item("total", self.total())?;
        d.set_item("suspicious", self.suspicious())?;
        d.set_item("unregistered", self.unregistered())?;
        d.set_item("monitor", self.monitor())?;
        Ok(d)
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        let e = &self.0.ev;
        let mut s = format!(
            "<Event {} {} ({}) tenant={:?} at {}",
            self.kind(),
            self.rule(),
            self.code(),
            self.0.tenant,
            iso(py, e.time)
        );
        let end = end_text(py, self.end());
        if !end.is_empty() {
            s.push(' ');
            s.push_str(&end);
        }
        s.push_str(&format!(
            " total={} suspicious={} unregistered={}",
            e.total, e.suspicious, e.unregistered
        ));
        if self.monitor() {
            s.push_str(" monitor");
        }
        s.push('>');
        s
    }
}

impl Event {
    fn end(&self) -> Option<BlockEnd> {
        match (self.0.ev.kind(), self.0.ev.until) {
            (_, 0) => None,
            (Some(EventKind::Blocked), u64::MAX) => Some(BlockEnd::OnRelease),
            (_, t) => Some(BlockEnd::At(t)),
        }
    }
}

pub fn event_list<'py>(py: Python<'py>, events: &[EventData]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for e in events {
        list.append(Bound::new(py, Event(e.clone()))?)?;
    }
    Ok(list)
}

// ---------------------------------------------------------------------------------------------

/// The tenant id of a decision: the caller's own `str` when the tenant was named explicitly
/// (no new string), else the id's text (made a `str` when asked for).
pub enum TenantName {
    Given(Py<PyString>),
    Text(Box<str>),
}

impl TenantName {
    pub fn text(s: &str) -> TenantName {
        TenantName::Text(s.into())
    }
    fn to_py<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        match self {
            TenantName::Given(s) => s.bind(py).clone(),
            TenantName::Text(s) => PyString::new(py, s),
        }
    }
    fn as_string(&self, py: Python<'_>) -> String {
        match self {
            TenantName::Given(s) => s
                .bind(py)
                .to_cow()
                .map(|c| c.into_owned())
                .unwrap_or_default(),
            TenantName::Text(s) => s.to_string(),
        }
    }
}

/// The answer for one message.
// No `weakref`: the scalar calls reuse a `Decision` nobody references any more (`reuse.rs`),
// which a weak reference could see.
#[pyclass(frozen, module = "outguard")]
pub struct Decision(pub(crate) reuse::Cell<DecisionData>);

/// What a `Decision` holds (read as if they were its fields; see `reuse.rs` for why they are
/// in a cell).
pub struct DecisionData {
    pub d: outguard::Decision,
    pub tenant: Option<TenantName>,
    pub events: Vec<EventData>,
}

impl Decision {
    pub fn new(data: DecisionData) -> Decision {
        Decision(reuse::Cell::new(data))
    }
}

impl std::ops::Deref for Decision {
    type Target = DecisionData;
    #[inline]
    fn deref(&self) -> &DecisionData {
        &self.0
    }
}

#[pymethods]
impl Decision {
    /// The message may go out (monitor-mode refusals are accepted).
    #[getter]
    fn accepted(&self) -> bool {
        self.d.accepted()
    }
    /// Enhanced status code of a refusal (`"5.7.750"`); `None` when accepted.
    #[getter]
    fn code(&self) -> Option<&'static str> {
        self.d.code()
    }
    /// The exact SMTP reply line of a refusal; `None` when accepted.
    #[getter]
    fn reply(&self) -> Option<&'static str> {
        self.d.reply()
    }
    /// The basic SMTP reply code (550) of a refusal; `None` when accepted.
    #[getter]
    fn smtp_code(&self) -> Option<u16> {
        self.d.reason.map(Reason::smtp_code)
    }
    /// Why the message is refused, by name (`"tenant_threshold"`, `"tenant_lapsed"`,
    /// `"low_reputation_ip"`, `"unregistered_domain"`, `"unattributed"`, `"invalid_sender"`).
    #[getter]
    fn reason(&self) -> Option<&'static str> {
        self.d.reason.map(Reason::name)
    }
    /// The rule that refused the message (or would have, in monitor mode): `"tenant_threshold"`,
    /// `"unregistered_domain"` or `"low_reputation_ip"`; `None` for 5.1.7, 5.7.64 and acceptance.
    #[getter]
    fn rule(&self) -> Option<&'static str> {
        rule_name(self.d.rule())
    }
    /// The tenant id the message was attributed to.
    #[getter]
    fn tenant<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        self.tenant.as_ref().map(|t| t.to_py(py))
    }
    /// How the tenant was found: `"explicit"`, `"auth_user"`, `"certificate"`, `"ip_connector"`.
    #[getter]
    fn attribution(&self) -> Option<&'static str> {
        self.d.attribution.map(|a| a.name())
    }
    /// `"registered"`, `"exempt"`, `"unregistered"` or `"null"`; `None` when the sender cannot
    /// be parsed (5.1.7).
    #[getter]
    fn sender_class(&self) -> Option<&'static str> {
        self.d.sender_class.map(SenderClass::name)
    }
    /// In monitor mode: the code of the refusal that would have happened (the message is
    /// accepted); otherwise `None`.
    #[getter]
    fn monitored(&self) -> Option<&'static str> {
        self.d.monitored.map(Reason::enhanced_code)
    }
    /// In monitor mode: the reply line that would have been given.
    #[getter]
    fn monitored_reply(&self) -> Option<&'static str> {
        self.d.monitored.map(Reason::reply)
    }
    /// The tenant's counters against their limits.
    #[getter]
    fn counters(&self) -> Counters {
        Counters(self.d.counters)
    }
    /// When the block that refused the message ends: Unix seconds, `"release"` (needs an
    /// operator's release), or `None`.
    #[getter]
    fn block_ends<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        block_end(py, self.d.block_ends)
    }
    /// The events recording the message caused (`evaluate`); empty for `check`.
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        event_list(py, &self.events)
    }
    fn __bool__(&self) -> bool {
        self.d.accepted()
    }
    /// The decision as a dict (counters flattened, events as dicts).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("accepted", self.accepted())?;
        d.set_item("code", self.code())?;
        d.set_item("reply", self.reply())?;
        d.set_item("reason", self.reason())?;
        d.set_item("rule", self.rule())?;
        d.set_item("tenant", self.tenant(py))?;
        d.set_item("attribution", self.attribution())?;
        d.set_item("sender_class", self.sender_class())?;
        d.set_item("monitored", self.monitored())?;
        d.set_item("block_ends", self.block_ends(py)?)?;
        d.set_item("counters", self.counters().to_dict(py)?)?;
        let ev = PyList::empty(py);
        for e in &self.events {
            ev.append(Event(e.clone()).to_dict(py)?)?;
        }
        d.set_item("events", ev)?;
        Ok(d)
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        let d = &self.d;
        let mut s = String::from("<Decision ");
        match d.reason {
            None => s.push_str("accepted"),
            Some(r) => s.push_str(&format!("refused {:?}", r.reply())),
        }
        if let Some(m) = d.monitored {
            s.push_str(&format!(" (monitor: would refuse {})", m.enhanced_code()));
        }
        if let Some(t) = &self.tenant {
            s.push_str(&format!(" tenant={:?}", t.as_string(py)));
            if let Some(a) = d.attribution {
                s.push_str(&format!(" ({})", a.name()));
            }
        }
        if let Some(c) = d.sender_class {
            s.push_str(&format!(" sender_class={:?}", c.name()));
        }
        let end = end_text(py, d.block_ends);
        if !end.is_empty() {
            s.push(' ');
            s.push_str(&end);
        }
        if self.tenant.is_some() {
            let c = &d.counters;
            s.push_str(&format!(
                " total={} suspicious={} unregistered={}/{}",
                c.total, c.suspicious, c.unregistered, c.limit
            ));
        }
        if !self.events.is_empty() {
            let kinds: Vec<String> = self
                .events
                .iter()
                .map(|e| {
                    let ev = Event(e.clone());
                    format!("{} {}", ev.kind(), ev.code())
                })
                .collect();
            s.push_str(&format!(" events=[{}]", kinds.join(", ")));
        }
        s.push('>');
        s
    }
}

// ---------------------------------------------------------------------------------------------

/// The state of one windowed rule of a tenant.
#[pyclass(frozen, module = "outguard")]
#[derive(Clone)]
pub struct RuleStatus {
    pub s: outguard::RuleStatus,
    pub rule: Rule,
}

#[pymethods]
impl RuleStatus {
    /// `"tenant_threshold"` or `"unregistered_domain"`.
    #[getter]
    fn rule(&self) -> &'static str {
        self.rule.name()
    }
    /// `"5.7.705"` or `"5.7.750"`.
    #[getter]
    fn code(&self) -> &'static str {
        self.rule.enhanced_code()
    }
    /// Blocked now (in monitor mode: would be).
    #[getter]
    fn blocked(&self) -> bool {
        self.s.blocked
    }
    /// When the block started (Unix seconds).
    #[getter]
    fn blocked_at(&self) -> Option<u64> {
        self.s.blocked_at
    }
    /// When the block ends: Unix seconds, `"release"`, or `None`.
    #[getter]
    fn block_ends<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        block_end(py, self.s.block_ends)
    }
    /// The rule will not trip before this time (after a release).
    #[getter]
    fn grace_until(&self) -> Option<u64> {
        self.s.grace_until
    }
    /// The 5.7.705 warning tier is active.
    #[getter]
    fn warned(&self) -> bool {
        self.s.warned
    }
    /// `"enforce"` or `"monitor"`.
    #[getter]
    fn mode(&self) -> &'static str {
        mode_name(self.s.mode)
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        let mut s = format!(
            "<RuleStatus {} ({}) {}",
            self.rule(),
            self.code(),
            self.mode()
        );
        if self.s.blocked {
            s.push_str(" blocked");
            if let Some(t) = self.s.blocked_at {
                s.push_str(&format!(" since {}", iso(py, t)));
            }
            let end = end_text(py, self.s.block_ends);
            if !end.is_empty() {
                s.push(' ');
                s.push_str(&end);
            }
        } else {
            s.push_str(" not blocked");
        }
        if self.s.warned {
            s.push_str(" warned");
        }
        if let Some(g) = self.s.grace_until {
            s.push_str(&format!(" grace until {}", iso(py, g)));
        }
        s.push('>');
        s
    }
}

pub fn mode_name(m: outguard::Mode) -> &'static str {
    match m {
        outguard::Mode::Enforce => "enforce",
        outguard::Mode::Monitor => "monitor",
    }
}

/// A tenant's state at a point in time.
#[pyclass(frozen, module = "outguard")]
pub struct TenantStatus {
    pub s: outguard::TenantStatus,
    pub tenant: String,
}

#[pymethods]
impl TenantStatus {
    /// The tenant id.
    #[getter]
    fn tenant(&self) -> &str {
        &self.tenant
    }
    /// Licensed (paid) tenant.
    #[getter]
    fn licensed(&self) -> bool {
        self.s.licensed
    }
    /// Lapsed now (including the renewal delay after being marked active).
    #[getter]
    fn lapsed(&self) -> bool {
        self.s.lapsed
    }
    /// Any mail of the tenant is refused now: lapsed, or 5.7.705 blocked (enforced).
    #[getter]
    fn blocked(&self) -> bool {
        self.s.lapsed || self.s.threshold.blocked || self.s.unregistered.blocked
    }
    /// The 5.7.705 rule.
    #[getter]
    fn threshold(&self) -> RuleStatus {
        RuleStatus {
            s: self.s.threshold,
            rule: Rule::TenantThreshold,
        }
    }
    /// The 5.7.750 rule.
    #[getter]
    fn unregistered(&self) -> RuleStatus {
        RuleStatus {
            s: self.s.unregistered,
            rule: Rule::UnregisteredDomain,
        }
    }
    /// Counters against limits.
    #[getter]
    fn counters(&self) -> Counters {
        Counters(self.s.counters)
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<TenantStatus {:?} {}{} 5.7.705: {} 5.7.750: {} {}>",
            self.tenant,
            if self.s.licensed {
                "licensed"
            } else {
                "unlicensed"
            },
            if self.s.lapsed { " lapsed" } else { "" },
            self.threshold().__repr__(py),
            self.unregistered().__repr__(py),
            self.counters().__repr__()
        )
    }
}

/// A tenant currently refused, and why.
#[pyclass(frozen, module = "outguard")]
pub struct Restriction {
    pub r: outguard::Restriction,
    pub tenant: String,
}

#[pymethods]
impl Restriction {
    /// The tenant id.
    #[getter]
    fn tenant(&self) -> &str {
        &self.tenant
    }
    /// `"5.7.705"` or `"5.7.750"`.
    #[getter]
    fn code(&self) -> &'static str {
        self.r.reason.enhanced_code()
    }
    /// The exact reply line.
    #[getter]
    fn reply(&self) -> &'static str {
        self.r.reason.reply()
    }
    /// `"tenant_threshold"`, `"tenant_lapsed"` or `"unregistered_domain"`.
    #[getter]
    fn reason(&self) -> &'static str {
        self.r.reason.name()
    }
    /// The rule (`"tenant_threshold"` or `"unregistered_domain"`).
    #[getter]
    fn rule(&self) -> Option<&'static str> {
        rule_name(self.r.reason.rule())
    }
    /// Since when (Unix seconds).
    #[getter]
    fn since(&self) -> u64 {
        self.r.since
    }
    /// Until when: Unix seconds or `"release"`.
    #[getter]
    fn ends<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        block_end(py, Some(self.r.ends))
    }
    /// The rule is in monitor mode: nothing is really refused.
    #[getter]
    fn monitor(&self) -> bool {
        self.r.monitor
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<Restriction {:?} {} ({}) since {} {}{}>",
            self.tenant,
            self.code(),
            self.reason(),
            iso(py, self.r.since),
            end_text(py, Some(self.r.ends)),
            if self.r.monitor { " monitor" } else { "" }
        )
    }
}

/// A connector that deserves an operator's look.
#[pyclass(frozen, module = "outguard")]
pub struct SuspiciousConnector {
    pub tenant: String,
    pub name: String,
    pub certificate: Option<String>,
    pub created: u64,
    pub why: u8,
}

#[pymethods]
impl SuspiciousConnector {
    /// The tenant id.
    #[getter]
    fn tenant(&self) -> &str {
        &self.tenant
    }
    /// The connector's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
    /// Its certificate domain, for certificate connectors.
    #[getter]
    fn certificate(&self) -> Option<&str> {
        self.certificate.as_deref()
    }
    /// When it was created (Unix seconds; 0 when unknown).
    #[getter]
    fn created(&self) -> u64 {
        self.created
    }
    /// Why it looks suspicious: any of `"recent"`, `"certificate_not_accepted"`,
    /// `"low_reputation_range"`.
    #[getter]
    fn why(&self) -> Vec<&'static str> {
        use outguard::suspicion::*;
        let mut v = Vec::new();
        if self.why & RECENT != 0 {
            v.push("recent");
        }
        if self.why & CERTIFICATE_NOT_ACCEPTED != 0 {
            v.push("certificate_not_accepted");
        }
        if self.why & LOW_REPUTATION_RANGE != 0 {
            v.push("low_reputation_range");
        }
        v
    }
    fn __repr__(&self) -> String {
        format!(
            "<SuspiciousConnector {:?} of {:?}{} why={:?}>",
            self.name,
            self.tenant,
            self.certificate
                .as_ref()
                .map(|c| format!(" certificate={c:?}"))
                .unwrap_or_default(),
            self.why()
        )
    }
}

/// One problem found in a policy.
#[pyclass(frozen, module = "outguard", eq)]
#[derive(Clone, PartialEq)]
pub struct Diagnostic {
    /// The file the problem is in.
    #[pyo3(get)]
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    #[pyo3(get)]
    pub line: usize,
    /// 1-based column; 0 when `line` is 0.
    #[pyo3(get)]
    pub column: usize,
    /// The field, such as `tenants[3].domains[1].name`; empty for syntax errors.
    #[pyo3(get)]
    pub path: String,
    /// What was expected there; may be empty.
    #[pyo3(get)]
    pub expected: String,
    /// What was found instead; may be empty.
    #[pyo3(get)]
    pub found: String,
    /// What is wrong and how to put it right.
    #[pyo3(get)]
    pub message: String,
}

#[pymethods]
impl Diagnostic {
    fn __str__(&self) -> String {
        outguard::policy::Diagnostic {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            path: self.path.clone(),
            expected: self.expected.clone(),
            found: self.found.clone(),
            message: self.message.clone(),
        }
        .to_string()
    }
    fn __repr__(&self) -> String {
        format!("<Diagnostic {}>", self.__str__())
    }
    /// `(file, line, column, path, expected, found, message)`.
    fn astuple(&self) -> (String, usize, usize, String, String, String, String) {
        (
            self.file.clone(),
            self.line,
            self.column,
            self.path.clone(),
            self.expected.clone(),
            self.found.clone(),
            self.message.clone(),
        )
    }
}

/// What a reload changed.
#[pyclass(frozen, module = "outguard")]
pub struct ReloadReport {
    /// Tenants of the old policy that the new one no longer has (their state was dropped).
    #[pyo3(get)]
    pub removed: Vec<String>,
    /// Tenants new in this policy.
    #[pyo3(get)]
    pub added: Vec<String>,
}

#[pymethods]
impl ReloadReport {
    fn __repr__(&self) -> String {
        format!(
            "<ReloadReport added={:?} removed={:?}>",
            self.added, self.removed
        )
    }
}

/// What restoring a snapshot did.
#[pyclass(frozen, module = "outguard")]
pub struct RestoreReport {
    /// Tenants whose state was restored.
    #[pyo3(get)]
    pub restored: u32,
    /// Tenants in the snapshot that the engine does not have (their state was dropped).
    #[pyo3(get)]
    pub unknown: u32,
}

#[pymethods]
impl RestoreReport {
    fn __repr__(&self) -> String {
        format!(
            "<RestoreReport restored={} unknown={}>",
            self.restored, self.unknown
        )
    }
}

// ---------------------------------------------------------------------------------------------

/// One decision of a batch in 40 bytes (the core's is 64): the tenant's fixed limits
/// (`Counters` fields other than the three counts) are kept once per tenant in `Decisions`.
/// The other fields are the core's own, copied as they are.
#[derive(Clone, Copy)]
struct Compact {
    tenant: Option<outguard::TenantId>,
    total: u32,
    suspicious: u32,
    unregistered: u32,
    block_ends: Option<BlockEnd>,
    reason: Option<Reason>,
    monitored: Option<Reason>,
    attribution: Option<outguard::Attribution>,
    sender_class: Option<SenderClass>,
}

/// The fixed part of a tenant's `Counters`.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Limits {
    min_messages: u32,
    min_suspicious: u32,
    max_ratio_ppm: u32,
    warn_ratio_ppm: u32,
    limit: u32,
}

impl Limits {
    #[inline]
    fn of(c: &outguard::Counters) -> Limits {
        Limits {
            min_messages: c.min_messages,
            min_suspicious: c.min_suspicious,
            max_ratio_ppm: c.max_ratio_ppm,
            warn_ratio_ppm: c.warn_ratio_ppm,
            limit: c.limit,
        }
    }
}

/// A batch's decisions, compact (`Compact`), each rebuilt exactly on demand (`get`).
#[derive(Default)]
pub struct Decisions {
    compact: Vec<Compact>,
    /// The limits of each tenant index seen (from its first decision).
    limits: Vec<Option<Limits>>,
    /// The decisions the compact form cannot hold (by index): limits other than the tenant's
    /// first decision's, counters without a tenant.
    exact: HashMap<usize, outguard::Decision>,
}

impl Decisions {
    pub fn with_capacity(n: usize) -> Decisions {
        Decisions {
            compact: Vec::with_capacity(n),
            ..Decisions::default()
        }
    }

    /// Appends decisions (converted while they are still in cache).
    pub fn extend(&mut self, ds: &[outguard::Decision]) {
        self.compact.reserve(ds.len());
        for d in ds {
            self.push(d);
        }
    }

    /// Appends a decision. The usual one (a tenant whose limits are kept already, or no
    /// tenant and no counters) costs a lookup and the compact record's store.
    ///
    /// A tenant's limits are taken from its first decision: every decision about a tenant
    /// carries its rules' limits (`outguard::Counters`), and the decisions of one
    /// `Decisions` are made under one hold of the engine's lock, where rules do not change.
    #[inline]
    pub fn push(&mut self, d: &outguard::Decision) {
        let c = &d.counters;
        let usual = match d.tenant {
            Some(t) => matches!(self.limits.get(t.0 as usize), Some(Some(_))),
            None => *c == outguard::Counters::default(),
        };
        debug_assert!(d.tenant.is_none_or(|t| {
            self.limits
                .get(t.0 as usize)
                .is_none_or(|l| l.is_none_or(|l| l == Limits::of(c)))
        }));
        if !usual {
            self.note(d);
        }
        self.compact.push(Compact {
            tenant: d.tenant,
            total: c.total,
            suspicious: c.suspicious,
            unregistered: c.unregistered,
            block_ends: d.block_ends,
            reason: d.reason,
            monitored: d.monitored,
            attribution: d.attribution,
            sender_class: d.sender_class,
        });
    }

    /// The rest of `push` for a decision that is not the usual one (before its compact
    /// record is stored): a tenant's first decision gives its limits; a decision the compact
    /// form cannot hold (limits other than its tenant's, counters without a tenant) is kept
    /// whole.
    #[cold]
    #[inline(never)]
    fn note(&mut self, d: &outguard::Decision) {
        let lim = Limits::of(&d.counters);
        let odd = match d.tenant {
            None => d.counters != outguard::Counters::default(),
            Some(t) => {
                let k = t.0 as usize;
                if k >= self.limits.len() {
                    self.limits.resize(k + 1, None);
                }
                match self.limits[k] {
                    None => {
                        self.limits[k] = Some(lim);
                        false
                    }
                    Some(l) => l != lim,
                }
            }
        };
        if odd {
            self.exact.insert(self.compact.len(), *d);
        }
    }

    pub fn len(&self) -> usize {
        self.compact.len()
    }

    /// Decision `i`, exactly as the core gave it.
    pub fn get(&self, i: usize) -> outguard::Decision {
        if !self.exact.is_empty() {
            if let Some(d) = self.exact.get(&i) {
                return *d;
            }
        }
        let c = self.compact[i];
        let lim = c
            .tenant
            .and_then(|t| self.limits.get(t.0 as usize).copied().flatten())
            .unwrap_or_default();
        outguard::Decision {
            reason: c.reason,
            monitored: c.monitored,
            tenant: c.tenant,
            attribution: c.attribution,
            sender_class: c.sender_class,
            counters: outguard::Counters {
                total: c.total,
                suspicious: c.suspicious,
                unregistered: c.unregistered,
                min_messages: lim.min_messages,
                min_suspicious: lim.min_suspicious,
                max_ratio_ppm: lim.max_ratio_ppm,
                warn_ratio_ppm: lim.warn_ratio_ppm,
                limit: lim.limit,
            },
            block_ends: c.block_ends,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = outguard::Decision> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Whether message `i` was accepted (without rebuilding its decision).
    pub fn accepted(&self, i: usize) -> bool {
        self.compact[i].reason.is_none()
    }

    /// The tenant indices that occur (in increasing order).
    pub fn tenants(&self) -> impl Iterator<Item = u32> + '_ {
        let odd = self.exact.values().filter_map(|d| d.tenant).map(|t| t.0);
        let mut v: Vec<u32> = self
            .limits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .map(|(t, _)| t as u32)
            .chain(odd)
            .collect();
        v.sort_unstable();
        v.dedup();
        v.into_iter()
    }
}

/// A batch's tenant ids by tenant index.
pub type Names = HashMap<u32, String, std::hash::BuildHasherDefault<IndexHasher>>;

/// The hash of a tenant index: the index times an odd constant (indices are distinct small
/// integers, so nothing stronger is needed).
#[derive(Default)]
pub struct IndexHasher(u64);

impl std::hash::Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The columns of a batch: one entry per message, in the order given.
#[pyclass(frozen, module = "outguard")]
pub struct Replay {
    pub decisions: Decisions,
    pub names: Names,
    /// Events with the index of the message whose recording caused them.
    pub events: Vec<(usize, EventData)>,
}

const COLUMNS: [&str; 13] = [
    "accepted",
    "code",
    "reason",
    "rule",
    "tenant",
    "attribution",
    "sender_class",
    "monitored",
    "block_ends",
    "total",
    "suspicious",
    "unregistered",
    "limit",
];

impl Replay {
    /// A column of interned strings (a handful of distinct values).
    fn strings<'py>(
        &self,
        py: Python<'py>,
        f: impl Fn(&outguard::Decision) -> Option<&'static str>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut cache: HashMap<&'static str, Bound<'py, PyString>> = HashMap::new();
        let none = py.None().into_bound(py);
        let items = self
            .decisions
            .iter()
            .map(|d| match f(&d) {
                None => none.clone(),
                Some(s) => cache
                    .entry(s)
                    .or_insert_with(|| PyString::intern(py, s))
                    .clone()
                    .into_any(),
            })
            .collect::<Vec<_>>();
        PyList::new(py, items)
    }

    fn ints<'py>(
        &self,
        py: Python<'py>,
        f: impl Fn(&outguard::Decision) -> u32,
    ) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.decisions.iter().map(|d| f(&d)))
    }

    fn column<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyList>> {
        match name {
            "accepted" => PyList::new(
                py,
                (0..self.decisions.len()).map(|i| self.decisions.accepted(i)),
            ),
            "code" => self.strings(py, |d| d.code()),
            "reason" => self.strings(py, |d| d.reason.map(Reason::name)),
            "rule" => self.strings(py, |d| rule_name(d.rule())),
            "attribution" => self.strings(py, |d| d.attribution.map(|a| a.name())),
            "sender_class" => self.strings(py, |d| d.sender_class.map(SenderClass::name)),
            "monitored" => self.strings(py, |d| d.monitored.map(Reason::enhanced_code)),
            "tenant" => {
                let mut cache: HashMap<u32, Bound<'py, PyAny>> = HashMap::new();
                let none = py.None().into_bound(py);
                let items = self
                    .decisions
                    .iter()
                    .map(|d| match d.tenant {
                        None => none.clone(),
                        Some(t) => cache
                            .entry(t.0)
                            .or_insert_with(|| {
                                let name = self.names.get(&t.0).map(String::as_str).unwrap_or("");
                                PyString::new(py, name).into_any()
                            })
                            .clone(),
                    })
                    .collect::<Vec<_>>();
                PyList::new(py, items)
            }
            "block_ends" => {
                let items = self
                    .decisions
                    .iter()
                    .map(|d| block_end(py, d.block_ends))
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, items)
            }
            "total" => self.ints(py, |d| d.counters.total),
            "suspicious" => self.ints(py, |d| d.counters.suspicious),
            "unregistered" => self.ints(py, |d| d.counters.unregistered),
            "limit" => self.ints(py, |d| d.counters.limit),
            other => Err(PyKeyError::new_err(format!(
                "no column {other:?}; columns are {}",
                COLUMNS.join(", ")
            ))),
        }
    }
}

/// The values a categorical column can take, in code order (code 0 is `None`). Fixed per
/// column, so codes mean the same in every batch.
fn categories_of(name: &str) -> Option<Vec<&'static str>> {
    use outguard::Attribution as A;
    let mut v: Vec<&'static str> = match name {
        "code" | "monitored" => Reason::ALL.iter().map(|r| r.enhanced_code()).collect(),
        "reason" => Reason::ALL.iter().map(|r| r.name()).collect(),
        "rule" => [
            Rule::TenantThreshold,
            Rule::UnregisteredDomain,
            Rule::LowReputationIp,
        ]
        .iter()
        .map(|r| r.name())
        .collect(),
        "attribution" => [A::Explicit, A::AuthUser, A::Certificate, A::IpConnector]
            .iter()
            .map(|a| a.name())
            .collect(),
        "sender_class" => [
            SenderClass::Registered,
            SenderClass::Exempt,
            SenderClass::Unregistered,
            SenderClass::Null,
        ]
        .iter()
        .map(|c| c.name())
        .collect(),
        _ => return None,
    };
    let mut seen = Vec::new();
    v.retain(|s| {
        let new = !seen.contains(s);
        seen.push(*s);
        new
    });
    Some(v)
}

/// `array.array(typecode, data)`.
fn py_array<'py>(py: Python<'py>, typecode: &str, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    py.import(pyo3::intern!(py, "array"))?
        .getattr(pyo3::intern!(py, "array"))?
        .call1((typecode, pyo3::types::PyBytes::new(py, data)))
}

impl Replay {
    /// A categorical column's codes (0 for `None`, `k` for `categories_of(name)[k - 1]`).
    fn codes(&self, name: &str) -> Option<Vec<u8>> {
        let cats = categories_of(name)?;
        let f: fn(&outguard::Decision) -> Option<&'static str> = match name {
            "code" => |d| d.code(),
            "reason" => |d| d.reason.map(Reason::name),
            "rule" => |d| rule_name(d.rule()),
            "attribution" => |d| d.attribution.map(|a| a.name()),
            "sender_class" => |d| d.sender_class.map(SenderClass::name),
            _ => |d| d.monitored.map(Reason::enhanced_code),
        };
        let mut last: Option<(&'static str, u8)> = None;
        Some(
            self.decisions
                .iter()
                .map(|d| match f(&d) {
                    None => 0,
                    Some(s) => match last {
                        Some((l, k)) if std::ptr::eq(l, s) => k,
                        _ => {
                            let k = cats.iter().position(|c| *c == s).map_or(0, |p| p + 1) as u8;
                            last = Some((s, k));
                            k
                        }
                    },
                })
                .collect(),
        )
    }

    /// The tenant ids of this batch in code order (code 0 is `None`).
    fn tenant_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.names.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[pymethods]
impl Replay {
    /// The column names, in `to_dict()` order.
    #[classattr]
    fn columns() -> Vec<&'static str> {
        COLUMNS.to_vec()
    }
    /// Whether each message was accepted.
    #[getter]
    fn accepted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "accepted")
    }
    /// Enhanced code of each refusal (`None` when accepted).
    #[getter]
    fn code<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "code")
    }
    /// Reason name of each refusal (`None` when accepted).
    #[getter]
    fn reason<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "reason")
    }
    /// Rule of each refusal or monitored refusal.
    #[getter]
    fn rule<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "rule")
    }
    /// Tenant id of each message (`None` when unattributed).
    #[getter]
    fn tenant<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "tenant")
    }
    /// How each message was attributed.
    #[getter]
    fn attribution<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "attribution")
    }
    /// Sender class of each message.
    #[getter]
    fn sender_class<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "sender_class")
    }
    /// Monitor mode: the code each message would have been refused with.
    #[getter]
    fn monitored<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "monitored")
    }
    /// When the block that refused each message ends (Unix seconds, `"release"`, `None`).
    #[getter]
    fn block_ends<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "block_ends")
    }
    /// The tenant's windowed 5.7.705 total when each message was decided.
    #[getter]
    fn total<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "total")
    }
    /// The tenant's windowed suspicious count when each message was decided.
    #[getter]
    fn suspicious<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "suspicious")
    }
    /// The tenant's windowed unregistered-domain count when each message was decided.
    #[getter]
    fn unregistered<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "unregistered")
    }
    /// The tenant's 5.7.750 allowance when each message was decided.
    #[getter]
    fn limit<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.column(py, "limit")
    }
    /// The events recording caused, in the order they happened.
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (_, e) in &self.events {
            list.append(Bound::new(py, Event(e.clone()))?)?;
        }
        Ok(list)
    }
    /// For each event, the index of the message whose recording caused it (`-1` for events
    /// of the final expiry sweep).
    #[getter]
    fn event_message(&self) -> Vec<i64> {
        self.events
            .iter()
            .map(|(i, _)| if *i == usize::MAX { -1 } else { *i as i64 })
            .collect()
    }
    /// Every column as a dict of lists (`pandas.DataFrame(r.to_dict())` works).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for c in COLUMNS {
            d.set_item(c, self.column(py, c)?)?;
        }
        Ok(d)
    }
    /// One column as an `array.array` (no Python object per message): `accepted` as `"B"`
    /// (0/1); `total`, `suspicious`, `unregistered`, `limit` as `"I"`; `block_ends` as `"Q"`
    /// (0: none, 2**64 - 1: until release); the text columns as codes (`"B"`, `"I"` for
    /// `tenant`): 0 for `None`, `k` for `categories(name)[k]`.
    fn array<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let ds = &self.decisions;
        let u32s = |f: fn(&outguard::Decision) -> u32| -> Vec<u8> {
            ds.iter().flat_map(|d| f(&d).to_ne_bytes()).collect()
        };
        match name {
            "accepted" => {
                let v: Vec<u8> = ds.iter().map(|d| d.accepted() as u8).collect();
                py_array(py, "B", &v)
            }
            "total" => py_array(py, "I", &u32s(|d| d.counters.total)),
            "suspicious" => py_array(py, "I", &u32s(|d| d.counters.suspicious)),
            "unregistered" => py_array(py, "I", &u32s(|d| d.counters.unregistered)),
            "limit" => py_array(py, "I", &u32s(|d| d.counters.limit)),
            "block_ends" => {
                let v: Vec<u8> = ds
                    .iter()
                    .flat_map(|d| {
                        match d.block_ends {
                            None => 0,
                            Some(BlockEnd::OnRelease) => u64::MAX,
                            Some(BlockEnd::At(t)) => t,
                        }
                        .to_ne_bytes()
                    })
                    .collect();
                py_array(py, "Q", &v)
            }
            "tenant" => {
                let ids = self.tenant_ids();
                let v: Vec<u8> = ds
                    .iter()
                    .flat_map(|d| {
                        d.tenant
                            .and_then(|t| ids.binary_search(&t.0).ok())
                            .map_or(0u32, |k| k as u32 + 1)
                            .to_ne_bytes()
                    })
                    .collect();
                py_array(py, "I", &v)
            }
            other => match self.codes(other) {
                Some(v) => py_array(py, "B", &v),
                None => Err(PyKeyError::new_err(format!(
                    "no column {other:?}; columns are {}",
                    COLUMNS.join(", ")
                ))),
            },
        }
    }
    /// The values of a text column's codes in `array(name)`: `categories(name)[k]` for code
    /// `k`, `None` first. Fixed for every column but `tenant` (this batch's tenants, by id).
    fn categories(&self, name: &str) -> PyResult<Vec<Option<String>>> {
        let mut out = vec![None];
        if name == "tenant" {
            out.extend(self.tenant_ids().iter().map(|i| self.names.get(i).cloned()));
            return Ok(out);
        }
        match categories_of(name) {
            Some(c) => {
                out.extend(c.into_iter().map(|s| Some(s.to_owned())));
                Ok(out)
            }
            None => Err(PyKeyError::new_err(format!(
                "{name:?} is not a text column; text columns are code, reason, rule, tenant, \
                 attribution, sender_class, monitored"
            ))),
        }
    }
    /// Every column as a numpy array (numpy is needed): `accepted` bool; counters `uint32`;
    /// `block_ends` `uint64` (as in `array`); text columns as object arrays that share the
    /// category strings (no string is made per message).
    fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let np = py.import("numpy").map_err(|_| {
            pyo3::exceptions::PyImportError::new_err(
                "Replay.to_numpy needs numpy (pip install numpy); Replay.array works without it",
            )
        })?;
        let d = PyDict::new(py);
        for c in COLUMNS {
            let arr = self.array(py, c)?;
            let v = match c {
                "accepted" => np
                    .call_method1("frombuffer", (arr, "u1"))?
                    .call_method1("astype", ("bool",))?,
                "total" | "suspicious" | "unregistered" | "limit" => {
                    np.call_method1("frombuffer", (arr, "u4"))?
                }
                "block_ends" => np.call_method1("frombuffer", (arr, "u8"))?,
                _ => {
                    let codes = np.call_method1(
                        "frombuffer",
                        (arr, if c == "tenant" { "u4" } else { "u1" }),
                    )?;
                    let cats = np.call_method1("array", (self.categories(c)?, "object"))?;
                    cats.get_item(codes)?
                }
            };
            d.set_item(c, v)?;
        }
        Ok(d)
    }
    /// One column by name.
    fn __getitem__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyList>> {
        self.column(py, name)
    }
    /// The decision for message `i` (without its events).
    fn decision(&self, i: isize) -> PyResult<Decision> {
        let n = self.decisions.len() as isize;
        let j = if i < 0 { i + n } else { i };
        if j < 0 || j >= n {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "message index {i} out of range ({n} messages)"
            )));
        }
        let d = self.decisions.get(j as usize);
        Ok(Decision::new(DecisionData {
            d,
            tenant: d
                .tenant
                .and_then(|t| self.names.get(&t.0).map(|s| TenantName::text(s))),
            events: self
                .events
                .iter()
                .filter(|(k, _)| *k == j as usize)
                .map(|(_, e)| e.clone())
                .collect(),
        }))
    }
    fn __len__(&self) -> usize {
        self.decisions.len()
    }
    fn __repr__(&self) -> String {
        let refused = self.decisions.iter().filter(|d| !d.accepted()).count();
        let blocked = self
            .events
            .iter()
            .filter(|(_, e)| e.ev.kind() == Some(EventKind::Blocked))
            .count();
        format!(
            "<Replay {} messages: {} accepted, {} refused; {} events ({} blocks)>",
            self.decisions.len(),
            self.decisions.len() - refused,
            refused,
            self.events.len(),
            blocked
        )
    }
}
