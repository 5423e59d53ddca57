//! Helpers shared by the scenario, model and bad-input tests.
#![allow(dead_code)]

pub use outguard::*;
pub use std::net::IpAddr;

/// A fixed "now" to start from (a multiple of 3600, so slot boundaries are easy to reason about).
pub const T0: u64 = 1_789_999_200;

pub const R517: &str = "550 5.1.7";
pub const R764: &str = "550 5.7.64 TenantAttribution; Relay Access Denied";
pub const R705: &str = "550 5.7.705 Access denied, tenant has exceeded threshold";
pub const R708: &str = "550 5.7.708 Access denied, traffic not accepted from this IP";
pub const R750: &str =
    "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains";

pub fn cap() -> Capacity {
    Capacity::default()
}

pub fn engine_with(cap: Capacity, rules: RuleSet) -> Engine<HeapStorage> {
    Engine::new(HeapStorage::new(&cap), cap, rules).expect("engine builds")
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP parses")
}

pub fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).expect("test CIDR parses")
}

/// A message from `mail_from`, attributed explicitly to `tenant`.
pub fn from<'a>(tenant: &'a str, mail_from: &'a str) -> Message<'a> {
    Message {
        tenant: Some(tenant),
        ..Message::new(mail_from)
    }
}

/// Asserts that `d` is a refusal for `reason` with the exact reply line `reply`.
#[track_caller]
pub fn assert_refused(d: &Decision, reason: Reason, reply: &str) {
    assert_eq!(d.reason, Some(reason), "decision: {d:?}");
    assert!(!d.accepted(), "decision: {d:?}");
    assert_eq!(d.reply(), Some(reply), "decision: {d:?}");
    assert!(d.monitored.is_none(), "decision: {d:?}");
}

#[track_caller]
pub fn assert_accepted(d: &Decision) {
    assert!(d.accepted(), "expected accept, got {d:?}");
    assert_eq!(d.reason, None);
    assert_eq!(d.reply(), None);
    assert_eq!(d.code(), None);
}

/// Kinds of a list of events.
pub fn kinds(ev: &[Event]) -> Vec<(EventKind, Rule)> {
    ev.iter()
        .map(|e| (e.kind().expect("kind"), e.rule().expect("rule")))
        .collect()
}

/// A tiny deterministic generator for replayed streams.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
