//! Plain C structs and numbered constants, and their translation from the core's types.
//!
//! Enumerations that C passes *in* are `uint32_t` typedefs with `#define`d values (a C caller
//! can pass any number, which a Rust enum could not safely receive); 0 always means "none".
#![allow(non_camel_case_types)]

use core::ffi::c_char;

use outguard::{
    suspicion, Attribution, BlockEnd, Counters, Decision, Event, EventKind, Reason, Restriction,
    Rule, RuleStatus, SenderClass, SuspiciousConnector, TenantStatus, Verdict,
};

use crate::error::og_result;

/// Why a message is refused (`OG_REASON_*`); `OG_REASON_NONE` when it is accepted.
pub type og_reason = u32;
/// Accepted: no reason.
pub const OG_REASON_NONE: og_reason = 0;
/// `550 5.1.7`: the envelope sender cannot be parsed.
pub const OG_REASON_INVALID_SENDER: og_reason = 1;
/// `550 5.7.64`: the message cannot be attributed to any tenant.
pub const OG_REASON_UNATTRIBUTED: og_reason = 2;
/// `550 5.7.705`: the tenant sent too much spam or bulk mail within the window.
pub const OG_REASON_TENANT_THRESHOLD: og_reason = 3;
/// `550 5.7.705`: the tenant's subscription is lapsed (or a renewal is still syncing).
pub const OG_REASON_TENANT_LAPSED: og_reason = 4;
/// `550 5.7.708`: the client IP is on the low-reputation list without an exception.
pub const OG_REASON_LOW_REPUTATION_IP: og_reason = 5;
/// `550 5.7.750`: the tenant spent its allowance of mail from unregistered domains.
pub const OG_REASON_UNREGISTERED_DOMAIN: og_reason = 6;

/// One of the three restrictions (`OG_RULE_*`); `OG_RULE_NONE` when none applies.
pub type og_rule = u32;
/// No rule (accepted, or refused before any rule: 5.1.7, 5.7.64). As an argument of
/// `og_engine_release`: every rule.
pub const OG_RULE_NONE: og_rule = 0;
/// 5.7.705, `rules.tenant_threshold`.
pub const OG_RULE_TENANT_THRESHOLD: og_rule = 1;
/// 5.7.750, `rules.unregistered_domain`.
pub const OG_RULE_UNREGISTERED_DOMAIN: og_rule = 2;
/// 5.7.708, `rules.low_reputation_ip`.
pub const OG_RULE_LOW_REPUTATION_IP: og_rule = 3;

/// The content filter's verdict on a message (`OG_VERDICT_*`).
pub type og_verdict = u32;
/// Nothing wrong found.
pub const OG_VERDICT_CLEAN: og_verdict = 0;
/// Spam.
pub const OG_VERDICT_SPAM: og_verdict = 1;
/// Bulk mail.
pub const OG_VERDICT_BULK: og_verdict = 2;
/// Phishing.
pub const OG_VERDICT_PHISH: og_verdict = 3;
/// Malware.
pub const OG_VERDICT_MALWARE: og_verdict = 4;

/// The class of the envelope sender's domain (`OG_SENDER_CLASS_*`).
pub type og_sender_class = u32;
/// Not known (the sender could not be parsed).
pub const OG_SENDER_CLASS_NONE: og_sender_class = 0;
/// An accepted, validated domain of the tenant.
pub const OG_SENDER_CLASS_REGISTERED: og_sender_class = 1;
/// Not registered, but a legitimate relay (certificate connector, forwarded with SPF/DKIM).
pub const OG_SENDER_CLASS_EXEMPT: og_sender_class = 2;
/// Everything else, address literals included.
pub const OG_SENDER_CLASS_UNREGISTERED: og_sender_class = 3;
/// The null reverse-path `<>`.
pub const OG_SENDER_CLASS_NULL: og_sender_class = 4;

/// How a message was attributed to its tenant (`OG_ATTRIBUTION_*`).
pub type og_attribution = u32;
/// Not attributed.
pub const OG_ATTRIBUTION_NONE: og_attribution = 0;
/// The caller named the tenant.
pub const OG_ATTRIBUTION_EXPLICIT: og_attribution = 1;
/// The authenticated user's domain.
pub const OG_ATTRIBUTION_AUTH_USER: og_attribution = 2;
/// The TLS client certificate's domain (certificate connector).
pub const OG_ATTRIBUTION_CERTIFICATE: og_attribution = 3;
/// The client IP (IP connector).
pub const OG_ATTRIBUTION_IP_CONNECTOR: og_attribution = 4;

/// What an event reports (`OG_EVENT_*`).
pub type og_event_kind = u32;
/// The 5.7.705 warning tier was crossed (no block).
pub const OG_EVENT_WARNED: og_event_kind = 1;
/// A rule tripped: the tenant is blocked (or would be, in monitor mode).
pub const OG_EVENT_BLOCKED: og_event_kind = 2;
/// An operator released a block.
pub const OG_EVENT_RELEASED: og_event_kind = 3;
/// A timed block ran out.
pub const OG_EVENT_EXPIRED: og_event_kind = 4;
/// The tenant's subscription was marked lapsed.
pub const OG_EVENT_LAPSED: og_event_kind = 5;
/// The tenant was marked active again.
pub const OG_EVENT_REACTIVATED: og_event_kind = 6;

/// Who reads an explanation (`OG_AUDIENCE_*`).
pub type og_audience = u32;
/// The person whose message was refused: *why did I get this?*
pub const OG_AUDIENCE_SENDER: og_audience = 0;
/// The tenant's administrator: *what can I do?*
pub const OG_AUDIENCE_ADMIN: og_audience = 1;

/// `og_message.flags`: the message is being forwarded (mailbox forwarding back out).
pub const OG_MESSAGE_FORWARDED: u32 = 1;
/// `og_message.flags`: SPF passed for the original sender.
pub const OG_MESSAGE_SPF_PASS: u32 = 2;
/// `og_message.flags`: DKIM passed.
pub const OG_MESSAGE_DKIM_PASS: u32 = 4;

/// `og_engine_add_domain` flags: subdomains of the domain match too (opt-in).
pub const OG_DOMAIN_SUBDOMAINS: u32 = 1;
/// `og_engine_add_domain` flags: the domain is validated (only validated domains make a
/// sender `registered`).
pub const OG_DOMAIN_VALIDATED: u32 = 2;

/// `og_suspicious_connector.why`: created within the policy's `engine.recent_connector`
/// window (default 7 days) before `now`.
pub const OG_SUSPICION_RECENT: u32 = 1;
/// `og_suspicious_connector.why`: its certificate domain is not an accepted, validated domain
/// of its tenant.
pub const OG_SUSPICION_CERTIFICATE_NOT_ACCEPTED: u32 = 2;
/// `og_suspicious_connector.why`: one of its source ranges overlaps the low-reputation list.
pub const OG_SUSPICION_LOW_REPUTATION_RANGE: u32 = 4;

/// A tenant index meaning "no tenant".
pub const OG_NO_TENANT: u32 = u32::MAX;
/// A time meaning "never" / "until an operator releases it" (`UINT64_MAX`).
pub const OG_UNTIL_RELEASE: u64 = u64::MAX;
/// The most events one call on one tenant produces (size for event arrays).
pub const OG_EVENTS_MAX: usize = 8;

/// One outbound message, as the mail server sees it. Zero-initialise it, then fill in what
/// you know; every pointer may be NULL except as noted.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct og_message {
    /// Envelope sender (`MAIL FROM`), with or without `<>`; not NUL-terminated. Length 0 (the
    /// pointer may then be NULL) is the null sender `<>`.
    pub mail_from: *const c_char,
    /// Bytes at `mail_from`.
    pub mail_from_len: usize,
    /// Tenant id named by the caller, UTF-8, or NULL: `tenant_len` bytes, or up to its NUL
    /// when `tenant_len` is 0.
    pub tenant: *const c_char,
    /// Bytes at `tenant` (no NUL needed; they are the id as they are, so a NUL among them
    /// matches no tenant), or 0 when `tenant` is NUL-terminated. An empty id is no id: a caller
    /// whose length may be 0 passes NULL then, or the text is read up to a NUL. NULL with a
    /// length is `OG_RESULT_NULL_PARAMETER`. Callers that hold the id with its length save the
    /// call a length scan.
    pub tenant_len: usize,
    /// Authenticated (SASL) user such as `alice@contoso.com`, or NULL.
    pub auth_user: *const c_char,
    /// Domain of the TLS client certificate, or NULL.
    pub cert_domain: *const c_char,
    /// Connecting client's IP address as text (`203.0.113.5`, `2001:db8::1`), or NULL.
    pub client_ip: *const c_char,
    /// `OG_MESSAGE_*` bits; any other bit is `OG_RESULT_INVALID_PARAMETER`.
    pub flags: u32,
    /// Number of recipients (counted by rules that count recipients); 0 counts as 1.
    pub recipients: u32,
    /// Connecting client's IP address in binary form, for callers that hold it so (libmilter's
    /// `hostaddr`, a `sockaddr`): no text to parse. Family `OG_IP_NONE` (zero) when absent; at
    /// most one of `client_ip` and `client_addr` may be given (`OG_RESULT_INVALID_PARAMETER`).
    pub client_addr: og_ip,
}

/// `og_ip.family`: no address.
pub const OG_IP_NONE: u32 = 0;
/// `og_ip.family`: IPv4, the first 4 bytes of `og_ip.bytes`.
pub const OG_IP_V4: u32 = 4;
/// `og_ip.family`: IPv6, all 16 bytes of `og_ip.bytes`.
pub const OG_IP_V6: u32 = 6;

/// An IP address in binary form, network byte order (as in `struct in_addr` / `in6_addr`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct og_ip {
    /// `OG_IP_NONE`, `OG_IP_V4` or `OG_IP_V6`; any other value is
    /// `OG_RESULT_INVALID_PARAMETER`.
    pub family: u32,
    /// The address: `bytes[0..4]` for IPv4, `bytes[0..16]` for IPv6.
    pub bytes: [u8; 16],
}

/// A tenant's counters against their limits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct og_counters {
    /// Messages (or recipients) within the 5.7.705 window.
    pub total: u32,
    /// Suspicious messages within the 5.7.705 window.
    pub suspicious: u32,
    /// Unregistered-domain messages within the 5.7.750 window.
    pub unregistered: u32,
    /// 5.7.705 volume floor.
    pub min_messages: u32,
    /// 5.7.705 suspicious floor.
    pub min_suspicious: u32,
    /// 5.7.705 ratio, parts per million.
    pub max_ratio_ppm: u32,
    /// 5.7.705 warning ratio, parts per million.
    pub warn_ratio_ppm: u32,
    /// 5.7.750 allowance.
    pub limit: u32,
}

/// The answer for one message, filled by `og_engine_check` / `og_engine_evaluate`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct og_decision {
    /// The message may go out.
    pub accepted: bool,
    /// Why it is refused (`OG_REASON_NONE` when accepted). `og_reason_reply()` gives the
    /// exact SMTP reply line.
    pub reason: og_reason,
    /// Monitor mode: the refusal that would have happened (the message is accepted).
    pub monitored: og_reason,
    /// The rule that refused it (or would have, in monitor mode), `OG_RULE_NONE` otherwise.
    pub rule: og_rule,
    /// Index of the tenant it was attributed to, `OG_NO_TENANT` if none
    /// (`og_engine_tenant_id()` gives the id).
    pub tenant: u32,
    /// How it was attributed (`OG_ATTRIBUTION_*`).
    pub attribution: og_attribution,
    /// The sender's class (`OG_SENDER_CLASS_*`).
    pub sender_class: og_sender_class,
    /// The tenant's counters against their limits.
    pub counters: og_counters,
    /// When the block that refused the message ends (Unix seconds); `OG_UNTIL_RELEASE` when
    /// it needs a release; 0 when there is no block.
    pub block_ends: u64,
}

/// One state change of a tenant's rules.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct og_event {
    /// When it happened (the `now` of the call).
    pub time: u64,
    /// For `OG_EVENT_BLOCKED`: when the block ends, `OG_UNTIL_RELEASE` if it needs a
    /// release; 0 otherwise.
    pub until: u64,
    /// Tenant index.
    pub tenant: u32,
    /// What changed (`OG_EVENT_*`).
    pub kind: og_event_kind,
    /// The rule concerned (`OG_RULE_*`).
    pub rule: og_rule,
    /// Windowed total (messages or recipients) of the rule at that moment.
    pub total: u32,
    /// Windowed suspicious count at that moment.
    pub suspicious: u32,
    /// Windowed unregistered-domain count at that moment.
    pub unregistered: u32,
    /// The rule is in monitor mode (nothing was really refused).
    pub monitor: bool,
}

/// The state of one windowed rule of a tenant.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct og_rule_status {
    /// Blocked now (in monitor mode: would be).
    pub blocked: bool,
    /// The warning tier is active (5.7.705).
    pub warned: bool,
    /// The rule is in monitor mode for this tenant.
    pub monitor: bool,
    /// When the block started (0: not blocked).
    pub blocked_at: u64,
    /// When the block ends: Unix seconds, `OG_UNTIL_RELEASE`, or 0 when not blocked.
    pub block_ends: u64,
    /// The rule will not trip before this time (0: no grace period).
    pub grace_until: u64,
}

/// A tenant's state, filled by `og_engine_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct og_tenant_status {
    /// Tenant index.
    pub tenant: u32,
    /// Licensed tenant.
    pub licensed: bool,
    /// Lapsed now (including the renewal delay after being marked active).
    pub lapsed: bool,
    /// 5.7.705.
    pub threshold: og_rule_status,
    /// 5.7.750.
    pub unregistered: og_rule_status,
    /// Counters against limits.
    pub counters: og_counters,
}

/// A tenant currently refused, and why (`og_engine_restricted`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct og_restriction {
    /// Tenant index.
    pub tenant: u32,
    /// Why (`OG_REASON_*`).
    pub reason: og_reason,
    /// Since when (Unix seconds).
    pub since: u64,
    /// Until when: Unix seconds, or `OG_UNTIL_RELEASE`.
    pub ends: u64,
    /// The rule is in monitor mode: nothing is really refused.
    pub monitor: bool,
}

/// A connector that deserves an operator's look (`og_engine_suspicious_connectors`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct og_suspicious_connector {
    /// Connector index (`og_engine_connector_name()` gives its name).
    pub connector: u32,
    /// Index of its tenant (`og_engine_tenant_id()` gives the id).
    pub tenant: u32,
    /// Why: `OG_SUSPICION_*` bits, at least one.
    pub why: u32,
    /// When it was created (Unix seconds; 0 when unknown).
    pub created: u64,
}

/// What a reload changed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct og_reload_report {
    /// Tenants new in the policy.
    pub added: u32,
    /// Tenants the new policy no longer has (their state was dropped).
    pub removed: u32,
}

/// What a restore did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct og_restore_report {
    /// Tenants whose state was restored.
    pub restored: u32,
    /// Tenants in the snapshot that the engine does not have (their state was dropped).
    pub unknown: u32,
}

/// What `og_shared_repair` did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct og_repair_report {
    /// Stripe locks found held by processes that are gone, now reset.
    pub locks_reset: u32,
    /// Unfinished writes rolled back.
    pub rolled_back: u32,
    /// Committed writes whose process died before publishing them, now published.
    pub published: u32,
}

/// What an NDR (RFC 3464 delivery status notification) reports; see `og_ndr_render`.
/// All strings are NUL-terminated UTF-8.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct og_ndr {
    /// Host name of the MTA writing the report (no whitespace).
    pub reporting_mta: *const c_char,
    /// The `From:` of the NDR, such as `MAILER-DAEMON@mx.example.net`.
    pub from: *const c_char,
    /// The `To:` of the NDR: the original envelope sender.
    pub to: *const c_char,
    /// The original recipients that failed (`recipients_len` strings; NULL when 0).
    pub recipients: *const *const c_char,
    /// Number of recipients.
    pub recipients_len: usize,
    /// Why the message was refused (`OG_REASON_*`, not `OG_REASON_NONE`).
    pub reason: og_reason,
    /// Language tag of the human-readable part: `en`, `uk`, `pl`, `pt-BR`.
    pub lang: *const c_char,
    /// Unix seconds at which the original message arrived.
    pub arrival: u64,
    /// Unix seconds now (the NDR's `Date:`).
    pub now: u64,
    /// The MIME boundary: 1 to 70 RFC 2046 characters, not ending in a space.
    pub boundary: *const c_char,
    /// The NDR's Message-ID without angle brackets (`123.abc@mx.example.net`).
    pub message_id: *const c_char,
    /// The original message's header section, or NULL for none.
    pub original_headers: *const c_char,
}

// ----- translation ------------------------------------------------------------------------

pub(crate) fn reason_to_c(r: Option<Reason>) -> og_reason {
    match r {
        None => OG_REASON_NONE,
        Some(Reason::InvalidSender) => OG_REASON_INVALID_SENDER,
        Some(Reason::Unattributed) => OG_REASON_UNATTRIBUTED,
        Some(Reason::TenantThreshold) => OG_REASON_TENANT_THRESHOLD,
        Some(Reason::TenantLapsed) => OG_REASON_TENANT_LAPSED,
        Some(Reason::LowReputationIp) => OG_REASON_LOW_REPUTATION_IP,
        Some(Reason::UnregisteredDomain) => OG_REASON_UNREGISTERED_DOMAIN,
    }
}

pub(crate) fn reason_from_c(r: og_reason) -> Option<Reason> {
    match r {
        OG_REASON_INVALID_SENDER => Some(Reason::InvalidSender),
        OG_REASON_UNATTRIBUTED => Some(Reason::Unattributed),
        OG_REASON_TENANT_THRESHOLD => Some(Reason::TenantThreshold),
        OG_REASON_TENANT_LAPSED => Some(Reason::TenantLapsed),
        OG_REASON_LOW_REPUTATION_IP => Some(Reason::LowReputationIp),
        OG_REASON_UNREGISTERED_DOMAIN => Some(Reason::UnregisteredDomain),
        _ => None,
    }
}

pub(crate) fn rule_to_c(r: Option<Rule>) -> og_rule {
    match r {
        None => OG_RULE_NONE,
        Some(Rule::TenantThreshold) => OG_RULE_TENANT_THRESHOLD,
        Some(Rule::UnregisteredDomain) => OG_RULE_UNREGISTERED_DOMAIN,
        Some(Rule::LowReputationIp) => OG_RULE_LOW_REPUTATION_IP,
    }
}

/// `Ok(None)` for `OG_RULE_NONE`; an error for numbers that are no rule.
pub(crate) fn rule_from_c(r: og_rule) -> Result<Option<Rule>, og_result> {
    match r {
        OG_RULE_NONE => Ok(None),
        OG_RULE_TENANT_THRESHOLD => Ok(Some(Rule::TenantThreshold)),
        OG_RULE_UNREGISTERED_DOMAIN => Ok(Some(Rule::UnregisteredDomain)),
        OG_RULE_LOW_REPUTATION_IP => Ok(Some(Rule::LowReputationIp)),
        _ => Err(og_result::InvalidParameter),
    }
}

pub(crate) fn verdict_from_c(v: og_verdict) -> Result<Verdict, og_result> {
    u8::try_from(v)
        .ok()
        .and_then(Verdict::from_u8)
        .ok_or(og_result::InvalidParameter)
}

pub(crate) fn sender_class_to_c(c: Option<SenderClass>) -> og_sender_class {
    match c {
        None => OG_SENDER_CLASS_NONE,
        Some(SenderClass::Registered) => OG_SENDER_CLASS_REGISTERED,
        Some(SenderClass::Exempt) => OG_SENDER_CLASS_EXEMPT,
        Some(SenderClass::Unregistered) => OG_SENDER_CLASS_UNREGISTERED,
        Some(SenderClass::Null) => OG_SENDER_CLASS_NULL,
    }
}

pub(crate) fn sender_class_from_c(c: og_sender_class) -> Option<SenderClass> {
    match c {
        OG_SENDER_CLASS_REGISTERED => Some(SenderClass::Registered),
        OG_SENDER_CLASS_EXEMPT => Some(SenderClass::Exempt),
        OG_SENDER_CLASS_UNREGISTERED => Some(SenderClass::Unregistered),
        OG_SENDER_CLASS_NULL => Some(SenderClass::Null),
        _ => None,
    }
}

pub(crate) fn attribution_to_c(a: Option<Attribution>) -> og_attribution {
    match a {
        None => OG_ATTRIBUTION_NONE,
        Some(Attribution::Explicit) => OG_ATTRIBUTION_EXPLICIT,
        Some(Attribution::AuthUser) => OG_ATTRIBUTION_AUTH_USER,
        Some(Attribution::Certificate) => OG_ATTRIBUTION_CERTIFICATE,
        Some(Attribution::IpConnector) => OG_ATTRIBUTION_IP_CONNECTOR,
    }
}

pub(crate) fn attribution_from_c(a: og_attribution) -> Option<Attribution> {
    match a {
        OG_ATTRIBUTION_EXPLICIT => Some(Attribution::Explicit),
        OG_ATTRIBUTION_AUTH_USER => Some(Attribution::AuthUser),
        OG_ATTRIBUTION_CERTIFICATE => Some(Attribution::Certificate),
        OG_ATTRIBUTION_IP_CONNECTOR => Some(Attribution::IpConnector),
        _ => None,
    }
}

pub(crate) fn event_kind_from_c(k: og_event_kind) -> Option<EventKind> {
    u8::try_from(k).ok().and_then(EventKind::from_u8)
}

fn block_end_to_c(e: Option<BlockEnd>) -> u64 {
    match e {
        None => 0,
        Some(BlockEnd::At(t)) => t,
        Some(BlockEnd::OnRelease) => OG_UNTIL_RELEASE,
    }
}

impl From<&Counters> for og_counters {
    fn from(c: &Counters) -> og_counters {
        og_counters {
            total: c.total,
            suspicious: c.suspicious,
            unregistered: c.unregistered,
            min_messages: c.min_messages,
            min_suspicious: c.min_suspicious,
            max_ratio_ppm: c.max_ratio_ppm,
            warn_ratio_ppm: c.warn_ratio_ppm,
            limit: c.limit,
        }
    }
}

impl From<&Decision> for og_decision {
    #[inline]
    fn from(d: &Decision) -> og_decision {
        og_decision {
            accepted: d.accepted(),
            reason: reason_to_c(d.reason),
            monitored: reason_to_c(d.monitored),
            rule: rule_to_c(d.rule()),
            tenant: d.tenant.map_or(OG_NO_TENANT, |t| t.0),
            attribution: attribution_to_c(d.attribution),
            sender_class: sender_class_to_c(d.sender_class),
            counters: (&d.counters).into(),
            block_ends: block_end_to_c(d.block_ends),
        }
    }
}

impl From<&Event> for og_event {
    fn from(e: &Event) -> og_event {
        og_event {
            time: e.time,
            until: e.until,
            tenant: e.tenant,
            kind: e.kind().map_or(0, |k| k as u32),
            rule: rule_to_c(e.rule()),
            total: e.total,
            suspicious: e.suspicious,
            unregistered: e.unregistered,
            monitor: e.monitor != 0,
        }
    }
}

impl og_reload_report {
    /// The numbers of tenants added and removed (saturating; tenant counts fit in `u32`).
    pub(crate) fn new(added: &[String], removed: &[String]) -> og_reload_report {
        og_reload_report {
            added: added.len().try_into().unwrap_or(u32::MAX),
            removed: removed.len().try_into().unwrap_or(u32::MAX),
        }
    }
}

impl From<&RuleStatus> for og_rule_status {
    fn from(s: &RuleStatus) -> og_rule_status {
        og_rule_status {
            blocked: s.blocked,
            warned: s.warned,
            monitor: s.mode == outguard::Mode::Monitor,
            blocked_at: s.blocked_at.unwrap_or(0),
            block_ends: block_end_to_c(s.block_ends),
            grace_until: s.grace_until.unwrap_or(0),
        }
    }
}

impl From<&TenantStatus> for og_tenant_status {
    fn from(s: &TenantStatus) -> og_tenant_status {
        og_tenant_status {
            tenant: s.tenant.0,
            licensed: s.licensed,
            lapsed: s.lapsed,
            threshold: (&s.threshold).into(),
            unregistered: (&s.unregistered).into(),
            counters: (&s.counters).into(),
        }
    }
}

impl From<&Restriction> for og_restriction {
    fn from(r: &Restriction) -> og_restriction {
        og_restriction {
            tenant: r.tenant.0,
            reason: reason_to_c(Some(r.reason)),
            since: r.since,
            ends: block_end_to_c(Some(r.ends)),
            monitor: r.monitor,
        }
    }
}

// The `OG_SUSPICION_*` bits are the core's `suspicion` bits.
const _: () = assert!(
    OG_SUSPICION_RECENT == suspicion::RECENT as u32
        && OG_SUSPICION_CERTIFICATE_NOT_ACCEPTED == suspicion::CERTIFICATE_NOT_ACCEPTED as u32
        && OG_SUSPICION_LOW_REPUTATION_RANGE == suspicion::LOW_REPUTATION_RANGE as u32
);

impl og_suspicious_connector {
    /// A suspicious connector, with its creation time (which the core reports separately).
    pub(crate) fn new(s: &SuspiciousConnector, created: u64) -> og_suspicious_connector {
        og_suspicious_connector {
            connector: s.connector.0,
            tenant: s.tenant.0,
            why: u32::from(s.why),
            created,
        }
    }
}
