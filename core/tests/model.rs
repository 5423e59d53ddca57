//! Property tests: the engine against a simple reference model written from SPEC §1.
//!
//! The model keeps every recorded message with its timestamp in plain `Vec`s and recomputes
//! window sums by filtering them. It shares no code with the engine.
//!
//! ## Window semantics (SPEC: "a ring of time slots; the window's precision is one slot")
//!
//! A rule's window of `window` seconds split into `slots` slots has slots of
//! `slot_len = max(1, window / slots)` seconds. Time is cut into epochs `e = t / slot_len`. A
//! message recorded at time `t` (epoch `e`) is counted at time `now` while
//! `now / slot_len - e < slots`: it stays in the window for `slots` whole slots, its own
//! included, so its lifetime is between `(slots - 1) * slot_len` and `slots * slot_len` seconds
//! depending on where in its slot it arrived.
//!
//! ## Time going backwards (the single documented choice of `window.rs`)
//!
//! "A `now` earlier than `head` counts into the newest slot, so time going backwards never
//! corrupts the ring." The model therefore keeps, per tenant, the latest time any message was
//! recorded, and uses `eff = max(now, latest)` for counting (a backwards message is stamped
//! `eff`) and for window sums (a query at a backwards `now` sees the window as of the newest
//! slot). Block, grace, expiry and event times use the caller's `now` as given.
//!
//! ## Choices where SPEC §1 is silent (documented here, asserted by the model)
//!
//! - The warning tier is tested after counting, like the block, when the rule is neither
//!   blocked nor in grace: it fires when total ≥ `min_messages`, suspicious ≥ 1 and
//!   suspicious/total ≥ `warn_ratio` (the floor on suspicious messages is the block's, not the
//!   warning's); it re-arms on a record where that no longer holds. A record that trips the
//!   block raises `Blocked`, not also `Warned`.
//! - When a timed block runs out (noticed by `record`, `release` or `expire`), its window is
//!   cleared (otherwise the same counters would trip it again on the next message) and no
//!   grace period starts: an `Expired` event.
//! - `release` clears the released rule's window, starts its grace period, and re-arms the
//!   warning tier.
//! - Lapsed / Reactivated events belong to the 5.7.705 rule (lapsed refusals are 5.7.705);
//!   `Reactivated` carries the time mail resumes in `until`.
//! - Certificate attribution: the TLS certificate's domain equals a certificate connector's
//!   domain (exactly); exemption needs a certificate connector *of the attributed tenant* whose
//!   certificate domain is registered for it.
//! - A message naming an unknown tenant explicitly is 5.7.64 (the model never gives such a
//!   message other attribution data, so it does not depend on fall-through).
//! - Event counters are the window counters at the moment of the event (after counting for
//!   Blocked/Warned, after clearing for Released/Expired).

mod common;
use common::*;
use proptest::prelude::*;
use std::net::IpAddr;

// ----- the fixed world ----------------------------------------------------------------------

const NAMES: [&str; 3] = ["t0", "t1", "t2"];

/// (domain, tenant, subdomains, validated)
const DOMAINS: [(&str, usize, bool, bool); 7] = [
    ("a.example", 0, false, true),
    ("sub.example", 0, true, true),
    ("unval.example", 0, false, false),
    ("shared.example", 0, false, true),
    ("shared.example", 1, false, true),
    ("b.example", 1, false, true),
    ("c.example", 2, true, true),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Snd {
    Null,
    Literal,
    Dom(&'static str),
    Invalid,
}

/// The senders used, with what they are (the parser itself is covered by bad_input.rs).
const SENDERS: [(&str, Snd); 15] = [
    ("x@a.example", Snd::Dom("a.example")),
    ("x@m.a.example", Snd::Dom("m.a.example")),
    ("x@sub.example", Snd::Dom("sub.example")),
    ("x@deep.sub.example", Snd::Dom("deep.sub.example")),
    ("x@unval.example", Snd::Dom("unval.example")),
    ("x@shared.example", Snd::Dom("shared.example")),
    ("x@b.example", Snd::Dom("b.example")),
    ("x@c.example", Snd::Dom("c.example")),
    ("x@evil.example", Snd::Dom("evil.example")),
    ("x@[192.0.2.1]", Snd::Literal),
    ("<>", Snd::Null),
    ("", Snd::Null),
    ("x@bad..example", Snd::Invalid),
    ("nodomain", Snd::Invalid),
    ("<X@A.Example.>", Snd::Dom("a.example")),
];

const AUTH: [Option<&str>; 6] = [
    None,
    Some("u@a.example"),
    Some("u@shared.example"),
    Some("u@b.example"),
    Some("u@unval.example"),
    Some("u@c.example"),
];

const IPS: [Option<&str>; 8] = [
    None,
    Some("198.51.100.5"),
    Some("198.51.100.200"),
    Some("192.0.2.7"),
    Some("192.0.2.100"),
    Some("::ffff:192.0.2.7"),
    Some("2001:db8:bad::1"),
    Some("203.0.113.9"),
];

/// Certificate connectors: (tenant, certificate domain). t0's is registered (sub.example allows
/// subdomains); t1's is not an accepted domain.
const CERT_CONNECTORS: [(usize, &str); 2] = [(0, "mx.sub.example"), (1, "relay.partner.example")];
const CERTS: [Option<&str>; 4] = [
    None,
    Some("mx.sub.example"),
    Some("relay.partner.example"),
    Some("mx.unknown.example"),
];

/// IP connector ranges: (tenant, v4 network, v4 prefix).
const CONNECTOR_RANGES: [(usize, [u8; 4], u32); 2] =
    [(2, [198, 51, 100, 0], 24), (1, [198, 51, 100, 128], 25)];
/// t0's exception for 192.0.2.0/28.
const EXCEPTION: ([u8; 4], u32) = ([192, 0, 2, 0], 28);

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn v4(a: [u8; 4]) -> u128 {
    bits(IpAddr::from(a))
}

fn within(ip: u128, net: u128, len: u32) -> bool {
    len == 0 || (ip ^ net) >> (128 - len) == 0
}

fn low_reputation(ip: u128) -> bool {
    within(ip, v4([192, 0, 2, 0]), 96 + 24)
        || within(
            ip,
            "2001:db8:bad::"
                .parse::<std::net::Ipv6Addr>()
                .map(u128::from)
                .unwrap(),
            48,
        )
}

// ----- generated parameters and operations --------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Params {
    th_slots: u16,
    un_slots: u16,
    audit_depth: u16,
    rules: RuleSet,
    t2_licensed: bool,
    exception_expires: u64,
}

#[derive(Clone, Copy, Debug)]
struct Spec {
    tenant: u8, // 0..=2 explicit, 3 unknown id, 4.. none
    auth: u8,
    cert: u8,
    ip: u8,
    sender: u8,
    forwarded: bool,
    spf: bool,
    dkim: bool,
    recipients: u32,
}

impl Spec {
    fn ghost(&self) -> bool {
        self.tenant == 3
    }
    fn message(&self) -> Message<'static> {
        let tenant = match self.tenant {
            0..=2 => Some(NAMES[self.tenant as usize]),
            3 => Some("ghost"),
            _ => None,
        };
        Message {
            mail_from: SENDERS[self.sender as usize].0.as_bytes(),
            tenant,
            auth_user: if self.ghost() {
                None
            } else {
                AUTH[self.auth as usize]
            },
            client_ip: if self.ghost() { None } else { self.ip_addr() },
            cert_domain: if self.ghost() {
                None
            } else {
                CERTS[self.cert as usize]
            },
            forwarded: self.forwarded,
            spf_pass: self.spf,
            dkim_pass: self.dkim,
            recipients: self.recipients,
        }
    }
    fn ip_addr(&self) -> Option<IpAddr> {
        IPS[self.ip as usize].map(|s| s.parse().unwrap())
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Evaluate(Spec, Verdict),
    Check(Spec),
    Release(usize, Option<Rule>),
    Lapse(usize),
    Activate(usize),
    Expire,
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![3 => Just(Mode::Enforce), 1 => Just(Mode::Monitor)]
}
fn count_mode() -> impl Strategy<Value = CountMode> {
    prop_oneof![3 => Just(CountMode::Messages), 1 => Just(CountMode::Recipients)]
}
fn block() -> impl Strategy<Value = BlockDuration> {
    prop_oneof![
        Just(BlockDuration::Manual),
        (1u64..120).prop_map(BlockDuration::Seconds)
    ]
}

fn params() -> impl Strategy<Value = Params> {
    (
        (
            1u16..=4,
            1u16..=4,
            1u16..=5,
            1u64..30,
            1u64..30,
            0u64..4,
            0u64..4,
        ),
        (mode(), mode(), mode(), count_mode(), count_mode()),
        (
            1u32..8,
            1u32..5,
            prop::sample::select(vec![250_000u32, 500_000, 750_000, 1_000_000]),
        ),
        prop::sample::select(vec![0u32, 100_000, 250_000, 400_000, 1_000_000]),
        (block(), block(), 0u64..120, 0u64..120, 0u64..60, 1u32..7),
        (any::<bool>(), any::<bool>(), any::<bool>(), 0u64..600),
    )
        .prop_map(|(geo, modes, th, warn, life, misc)| {
            let (th_slots, un_slots, audit_depth, tl, ul, tx, ux) = geo;
            let mut r = RuleSet::default();
            r.threshold.window = th_slots as u64 * tl + tx.min(th_slots as u64 - 1);
            r.unregistered.window = un_slots as u64 * ul + ux.min(un_slots as u64 - 1);
            r.threshold.mode = modes.0;
            r.unregistered.mode = modes.1;
            r.low_reputation.mode = modes.2;
            r.threshold.count = modes.3;
            r.unregistered.count = modes.4;
            r.threshold.min_messages = th.0;
            r.threshold.min_suspicious = th.1;
            r.threshold.max_ratio_ppm = th.2;
            r.threshold.warn_ratio_ppm = warn;
            r.threshold.block = life.0;
            r.unregistered.block = life.1;
            r.threshold.grace = life.2;
            r.unregistered.grace = life.3;
            r.threshold.renewal_delay = life.4;
            r.unregistered.limit = life.5;
            r.low_reputation.scope = if misc.0 {
                Scope::All
            } else {
                Scope::Unlicensed
            };
            r.threshold.suspicious = if misc.1 {
                VerdictSet::SPAM_AND_BULK
            } else {
                VerdictSet::SPAM_AND_BULK.with(Verdict::Phish)
            };
            Params {
                th_slots,
                un_slots,
                audit_depth,
                rules: r,
                t2_licensed: misc.2,
                exception_expires: T0 + misc.3,
            }
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![4 => 0u8..3, 1 => Just(3u8), 3 => Just(4u8)],
        0u8..6,
        prop_oneof![3 => Just(0u8), 1 => 1u8..4],
        prop_oneof![3 => Just(0u8), 4 => 1u8..8],
        prop_oneof![6 => 0u8..12, 1 => 12u8..15],
        any::<(bool, bool, bool)>(),
        0u32..4,
    )
        .prop_map(|(tenant, auth, cert, ip, sender, f, recipients)| Spec {
            tenant,
            auth,
            cert,
            ip,
            sender,
            forwarded: f.0,
            spf: f.1,
            dkim: f.2,
            recipients,
        })
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        4 => Just(Verdict::Clean),
        3 => Just(Verdict::Spam),
        2 => Just(Verdict::Bulk),
        1 => Just(Verdict::Phish),
        1 => Just(Verdict::Malware),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        14 => (spec(), verdict()).prop_map(|(s, v)| Op::Evaluate(s, v)),
        3 => spec().prop_map(Op::Check),
        1 => (0usize..3, prop_oneof![Just(None), Just(Some(Rule::TenantThreshold)), Just(Some(Rule::UnregisteredDomain))])
            .prop_map(|(t, r)| Op::Release(t, r)),
        1 => (0usize..3).prop_map(Op::Lapse),
        2 => (0usize..3).prop_map(Op::Activate),
        1 => Just(Op::Expire),
    ]
}

fn dt() -> impl Strategy<Value = i64> {
    prop_oneof![16 => 0i64..15, 2 => -60i64..0, 2 => 0i64..300]
}

// ----- the reference model ------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default)]
struct MRule {
    blocked: bool,
    manual: bool,
    blocked_at: u64,
    until: u64,
    grace_until: u64,
    warned: bool,
}

impl MRule {
    fn active(&self, now: u64) -> bool {
        self.blocked && (self.manual || now < self.until)
    }
    fn end(&self) -> BlockEnd {
        if self.manual {
            BlockEnd::OnRelease
        } else {
            BlockEnd::At(self.until)
        }
    }
}

#[derive(Clone, Debug, Default)]
struct MTenant {
    licensed: bool,
    lapsed: bool,
    lapsed_at: u64,
    active_at: u64,
    latest: Option<u64>,
    /// (time, counted amount, suspicious amount) of every message recorded (5.7.705 window).
    threshold: Vec<(u64, u32, u32)>,
    /// (time, counted amount) of every unregistered-domain message (5.7.750 window).
    unregistered: Vec<(u64, u32)>,
    rules: [MRule; 2],
    events: Vec<MEvent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MEvent {
    kind: EventKind,
    rule: Rule,
    tenant: usize,
    time: u64,
    counts: (u32, u32, u32),
    until: u64,
    monitor: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MDecision {
    reason: Option<Reason>,
    monitored: Option<Reason>,
    tenant: Option<usize>,
    attribution: Option<Attribution>,
    class: Option<SenderClass>,
    block_ends: Option<BlockEnd>,
    counts: (u32, u32, u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MStatus {
    lapsed: bool,
    blocked: (bool, bool),
    ends: (Option<BlockEnd>, Option<BlockEnd>),
    grace: (Option<u64>, Option<u64>),
    warned: bool,
    counts: (u32, u32, u32),
}

struct Model {
    p: Params,
    t: Vec<MTenant>,
}

impl Model {
    fn new(p: Params) -> Model {
        let t = (0..3)
            .map(|i| MTenant {
                licensed: [true, false, p.t2_licensed][i],
                ..MTenant::default()
            })
            .collect();
        Model { p, t }
    }

    fn registered(&self, t: usize, dom: &str) -> bool {
        DOMAINS.iter().any(|&(name, owner, subs, validated)| {
            owner == t && validated && (dom == name || (subs && dom.ends_with(&format!(".{name}"))))
        })
    }

    fn resolve(&self, s: &Spec) -> Option<(usize, Attribution, SenderClass)> {
        let (t, how) = if s.tenant <= 2 {
            (s.tenant as usize, Attribution::Explicit)
        } else if s.ghost() {
            return None;
        } else if let Some(t) = AUTH[s.auth as usize].and_then(|u| {
            let dom = u.rsplit('@').next().unwrap();
            let owners: Vec<usize> = (0..3).filter(|&t| self.registered(t, dom)).collect();
            (owners.len() == 1).then(|| owners[0])
        }) {
            (t, Attribution::AuthUser)
        } else if let Some(&(t, _)) = CERT_CONNECTORS
            .iter()
            .find(|c| Some(c.1) == CERTS[s.cert as usize])
            .filter(|_| !s.ghost())
        {
            (t, Attribution::Certificate)
        } else if let Some(ip) = s.ip_addr().map(bits) {
            let best = CONNECTOR_RANGES
                .iter()
                .filter(|(_, net, len)| within(ip, v4(*net), 96 + len))
                .max_by_key(|(_, _, len)| *len)?;
            (best.0, Attribution::IpConnector)
        } else {
            return None;
        };
        let class = match SENDERS[s.sender as usize].1 {
            Snd::Null => SenderClass::Null,
            Snd::Dom(d) if self.registered(t, d) => SenderClass::Registered,
            _ if s.forwarded && (s.spf || s.dkim) => SenderClass::Exempt,
            _ if !s.ghost()
                && CERT_CONNECTORS.iter().any(|&(owner, dom)| {
                    owner == t && Some(dom) == CERTS[s.cert as usize] && self.registered(t, dom)
                }) =>
            {
                SenderClass::Exempt
            }
            _ => SenderClass::Unregistered,
        };
        Some((t, how, class))
    }

    fn slot_len(window: u64, slots: u16) -> u64 {
        (window / slots as u64).max(1)
    }

    fn counts(&self, t: usize, now: u64) -> (u32, u32, u32) {
        let tn = &self.t[t];
        let eff = tn.latest.map_or(now, |l| l.max(now));
        let r = &self.p.rules;
        let tl = Self::slot_len(r.threshold.window, self.p.th_slots);
        let ul = Self::slot_len(r.unregistered.window, self.p.un_slots);
        let (te, ue) = (eff / tl, eff / ul);
        let live_t = |at: u64| te - at / tl < self.p.th_slots as u64;
        let live_u = |at: u64| ue - at / ul < self.p.un_slots as u64;
        let total = tn
            .threshold
            .iter()
            .filter(|m| live_t(m.0))
            .map(|m| m.1)
            .sum();
        let susp = tn
            .threshold
            .iter()
            .filter(|m| live_t(m.0))
            .map(|m| m.2)
            .sum();
        let unreg = tn
            .unregistered
            .iter()
            .filter(|m| live_u(m.0))
            .map(|m| m.1)
            .sum();
        (total, susp, unreg)
    }

    fn lapsed_now(&self, t: usize, now: u64) -> bool {
        self.t[t].lapsed || now < self.t[t].active_at
    }

    fn mode(&self, rule: Rule) -> Mode {
        match rule {
            Rule::TenantThreshold => self.p.rules.threshold.mode,
            Rule::UnregisteredDomain => self.p.rules.unregistered.mode,
            Rule::LowReputationIp => self.p.rules.low_reputation.mode,
        }
    }

    fn check(&self, now: u64, s: &Spec) -> MDecision {
        let mut d = MDecision {
            reason: None,
            monitored: None,
            tenant: None,
            attribution: None,
            class: None,
            block_ends: None,
            counts: (0, 0, 0),
        };
        if SENDERS[s.sender as usize].1 == Snd::Invalid {
            d.reason = Some(Reason::InvalidSender);
            return d;
        }
        let Some((t, how, class)) = self.resolve(s) else {
            d.reason = Some(Reason::Unattributed);
            return d;
        };
        d.tenant = Some(t);
        d.attribution = Some(how);
        d.class = Some(class);
        d.counts = self.counts(t, now);
        let tn = &self.t[t];
        // In order; monitor-mode rules note what they would have done and go on.
        let mut candidates: Vec<(Reason, Rule, Option<BlockEnd>)> = Vec::new();
        if self.lapsed_now(t, now) {
            let end = if tn.lapsed {
                BlockEnd::OnRelease
            } else {
                BlockEnd::At(tn.active_at)
            };
            candidates.push((Reason::TenantLapsed, Rule::TenantThreshold, Some(end)));
        }
        if tn.rules[0].active(now) {
            candidates.push((
                Reason::TenantThreshold,
                Rule::TenantThreshold,
                Some(tn.rules[0].end()),
            ));
        }
        if let Some(ip) = s.ip_addr().map(bits) {
            let in_scope = self.p.rules.low_reputation.scope == Scope::All || !tn.licensed;
            let excepted = t == 0
                && within(ip, v4(EXCEPTION.0), 96 + EXCEPTION.1)
                && now < self.p.exception_expires;
            if in_scope && low_reputation(ip) && !excepted {
                candidates.push((Reason::LowReputationIp, Rule::LowReputationIp, None));
            }
        }
        if class == SenderClass::Unregistered && tn.rules[1].active(now) {
            candidates.push((
                Reason::UnregisteredDomain,
                Rule::UnregisteredDomain,
                Some(tn.rules[1].end()),
            ));
        }
        for (reason, rule, end) in candidates {
            if self.mode(rule) == Mode::Monitor {
                if d.monitored.is_none() {
                    d.monitored = Some(reason);
                    d.block_ends = end;
                }
            } else {
                d.reason = Some(reason);
                d.block_ends = end;
                break;
            }
        }
        d
    }

    fn emit(&mut self, t: usize, now: u64, kind: EventKind, rule: Rule, out: &mut Vec<MEvent>) {
        let r = if rule == Rule::UnregisteredDomain {
            1
        } else {
            0
        };
        let until = match kind {
            EventKind::Blocked => match self.t[t].rules[r].end() {
                BlockEnd::OnRelease => u64::MAX,
                BlockEnd::At(u) => u,
            },
            EventKind::Reactivated => self.t[t].active_at,
            _ => 0,
        };
        let ev = MEvent {
            kind,
            rule,
            tenant: t,
            time: now,
            counts: self.counts(t, now),
            until,
            monitor: self.mode(rule) == Mode::Monitor,
        };
        self.t[t].events.push(ev);
        out.push(ev);
    }

    fn clear(&mut self, t: usize, r: usize) {
        if r == 0 {
            self.t[t].threshold.clear();
        } else {
            self.t[t].unregistered.clear();
        }
    }

    fn expire_tenant(&mut self, t: usize, now: u64, out: &mut Vec<MEvent>) {
        for (r, rule) in [(0, Rule::TenantThreshold), (1, Rule::UnregisteredDomain)] {
            let s = self.t[t].rules[r];
            if s.blocked && !s.manual && now >= s.until {
                self.clear(t, r);
                let s = &mut self.t[t].rules[r];
                s.blocked = false;
                s.warned = false;
                self.emit(t, now, EventKind::Expired, rule, out);
            }
        }
    }

    fn block(&mut self, t: usize, r: usize, now: u64, how: BlockDuration) {
        let s = &mut self.t[t].rules[r];
        s.blocked = true;
        s.blocked_at = now;
        match how {
            BlockDuration::Manual => s.manual = true,
            BlockDuration::Seconds(d) => {
                s.manual = false;
                s.until = now.saturating_add(d);
            }
        }
    }

    fn record(&mut self, now: u64, s: &Spec, v: Verdict) -> Vec<MEvent> {
        let mut out = Vec::new();
        let (t, _, class) = self.resolve(s).expect("only accepted mail is recorded");
        self.expire_tenant(t, now, &mut out);
        // Count (a backwards `now` counts into the newest slot).
        let p = self.p.rules;
        let tn = &mut self.t[t];
        let eff = tn.latest.map_or(now, |l| l.max(now));
        tn.latest = Some(eff);
        let n = |c: CountMode| {
            if c == CountMode::Recipients {
                s.recipients.max(1)
            } else {
                1
            }
        };
        let k = n(p.threshold.count);
        let susp = if p.threshold.suspicious.contains(v) {
            k
        } else {
            0
        };
        tn.threshold.push((eff, k, susp));
        if class == SenderClass::Unregistered {
            tn.unregistered.push((eff, n(p.unregistered.count)));
        }
        // Thresholds, after counting.
        let (total, susp, unreg) = self.counts(t, now);
        let th = p.threshold;
        let ratio = |ppm: u32| susp as u64 * RATIO_ONE as u64 >= ppm as u64 * total as u64;
        let s0 = self.t[t].rules[0];
        if !s0.blocked && now >= s0.grace_until {
            if total >= th.min_messages && susp >= th.min_suspicious && ratio(th.max_ratio_ppm) {
                self.block(t, 0, now, th.block);
                self.emit(t, now, EventKind::Blocked, Rule::TenantThreshold, &mut out);
            } else if total >= th.min_messages && susp >= 1 && ratio(th.warn_ratio_ppm) {
                if !s0.warned {
                    self.t[t].rules[0].warned = true;
                    self.emit(t, now, EventKind::Warned, Rule::TenantThreshold, &mut out);
                }
            } else {
                self.t[t].rules[0].warned = false;
            }
        }
        let s1 = self.t[t].rules[1];
        if !s1.blocked && now >= s1.grace_until && unreg >= p.unregistered.limit {
            self.block(t, 1, now, p.unregistered.block);
            self.emit(
                t,
                now,
                EventKind::Blocked,
                Rule::UnregisteredDomain,
                &mut out,
            );
        }
        out
    }

    fn release(&mut self, t: usize, rule: Option<Rule>, now: u64) -> Vec<MEvent> {
        let mut out = Vec::new();
        self.expire_tenant(t, now, &mut out);
        let graces = [
            self.p.rules.threshold.grace,
            self.p.rules.unregistered.grace,
        ];
        for (r, which) in [(0, Rule::TenantThreshold), (1, Rule::UnregisteredDomain)] {
            if rule.is_some_and(|x| x != which) || !self.t[t].rules[r].blocked {
                continue;
            }
            self.clear(t, r);
            let s = &mut self.t[t].rules[r];
            s.blocked = false;
            s.warned = false;
            s.grace_until = now.saturating_add(graces[r]);
            self.emit(t, now, EventKind::Released, which, &mut out);
        }
        out
    }

    fn lapse(&mut self, t: usize, now: u64) -> Vec<MEvent> {
        let mut out = Vec::new();
        if !self.t[t].lapsed {
            self.t[t].lapsed = true;
            self.t[t].lapsed_at = now;
            self.emit(t, now, EventKind::Lapsed, Rule::TenantThreshold, &mut out);
        }
        out
    }

    fn activate(&mut self, t: usize, now: u64) -> Vec<MEvent> {
        let mut out = Vec::new();
        if self.t[t].lapsed {
            self.t[t].lapsed = false;
            self.t[t].active_at = now.saturating_add(self.p.rules.threshold.renewal_delay);
            self.emit(
                t,
                now,
                EventKind::Reactivated,
                Rule::TenantThreshold,
                &mut out,
            );
        }
        out
    }

    fn expire(&mut self, now: u64) -> Vec<MEvent> {
        let mut out = Vec::new();
        for t in 0..3 {
            self.expire_tenant(t, now, &mut out);
        }
        out
    }

    fn status(&self, t: usize, now: u64) -> MStatus {
        let r = &self.t[t].rules;
        let grace = |s: &MRule| (now < s.grace_until).then_some(s.grace_until);
        MStatus {
            lapsed: self.lapsed_now(t, now),
            blocked: (r[0].active(now), r[1].active(now)),
            ends: (
                r[0].active(now).then(|| r[0].end()),
                r[1].active(now).then(|| r[1].end()),
            ),
            grace: (grace(&r[0]), grace(&r[1])),
            warned: r[0].warned,
            counts: self.counts(t, now),
        }
    }
}

// ----- the engine side ----------------------------------------------------------------------

fn build(p: &Params) -> (Engine<HeapStorage>, [TenantId; 3]) {
    let cap = Capacity {
        tenants: 4,
        domains: 16,
        connectors: 4,
        ranges: 8,
        name_bytes: 512,
        overrides: 1,
        audit_depth: p.audit_depth,
        threshold_slots: p.th_slots,
        unregistered_slots: p.un_slots,
    };
    let mut e = engine_with(cap, p.rules);
    let ids = [
        e.add_tenant("t0", true).unwrap(),
        e.add_tenant("t1", false).unwrap(),
        e.add_tenant("t2", p.t2_licensed).unwrap(),
    ];
    for (name, t, subs, validated) in DOMAINS {
        e.add_domain(ids[t], name, subs, validated).unwrap();
    }
    for (i, (t, dom)) in CERT_CONNECTORS.iter().enumerate() {
        e.add_connector(ids[*t], &format!("cert{i}"), Some(dom), 1)
            .unwrap();
    }
    for (i, (t, net, len)) in CONNECTOR_RANGES.iter().enumerate() {
        let c = e.add_connector(ids[*t], &format!("c{i}"), None, 1).unwrap();
        e.add_connector_range(c, Cidr::new(IpAddr::from(*net), *len as u8).unwrap())
            .unwrap();
    }
    e.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
    e.add_low_reputation(cidr("2001:db8:bad::/48")).unwrap();
    e.grant_exception(
        ids[0],
        Cidr::new(IpAddr::from(EXCEPTION.0), EXCEPTION.1 as u8).unwrap(),
        p.exception_expires,
    )
    .unwrap();
    (e, ids)
}

fn idx(ids: &[TenantId; 3], t: TenantId) -> usize {
    ids.iter().position(|&x| x == t).expect("known tenant")
}

fn decision(d: &Decision, ids: &[TenantId; 3]) -> MDecision {
    let tenant = d.tenant.map(|t| idx(ids, t));
    MDecision {
        reason: d.reason,
        monitored: d.monitored,
        tenant,
        attribution: d.attribution,
        class: tenant.and(d.sender_class),
        block_ends: d.block_ends,
        counts: if tenant.is_some() {
            (
                d.counters.total,
                d.counters.suspicious,
                d.counters.unregistered,
            )
        } else {
            (0, 0, 0)
        },
    }
}

fn event(e: &Event, ids: &[TenantId; 3]) -> MEvent {
    MEvent {
        kind: e.kind().expect("kind"),
        rule: e.rule().expect("rule"),
        tenant: idx(ids, e.tenant()),
        time: e.time,
        counts: (e.total, e.suspicious, e.unregistered),
        until: e.until,
        monitor: e.monitor != 0,
    }
}

fn events(ev: &[Event], ids: &[TenantId; 3]) -> Vec<MEvent> {
    ev.iter().map(|e| event(e, ids)).collect()
}

fn status(s: &TenantStatus) -> MStatus {
    MStatus {
        lapsed: s.lapsed,
        blocked: (s.threshold.blocked, s.unregistered.blocked),
        ends: (s.threshold.block_ends, s.unregistered.block_ends),
        grace: (s.threshold.grace_until, s.unregistered.grace_until),
        warned: s.threshold.warned,
        counts: (
            s.counters.total,
            s.counters.suspicious,
            s.counters.unregistered,
        ),
    }
}

fn run(p: Params, ops: Vec<(i64, Op)>) -> Result<(), TestCaseError> {
    let (mut e, ids) = build(&p);
    let mut m = Model::new(p);
    let mut now = T0;
    for (step, (dt, op)) in ops.into_iter().enumerate() {
        now = now.checked_add_signed(dt).unwrap();
        match op {
            Op::Evaluate(s, v) => {
                let (d, ev) = e.evaluate(now, &s.message(), v);
                let md = m.check(now, &s);
                prop_assert_eq!(
                    decision(&d, &ids),
                    md,
                    "step {} at {}: evaluate {:?} {:?}",
                    step,
                    now,
                    s,
                    v
                );
                let mev = if md.reason.is_none() {
                    m.record(now, &s, v)
                } else {
                    Vec::new()
                };
                prop_assert_eq!(
                    events(&ev, &ids),
                    mev,
                    "step {} at {}: events of evaluate {:?}",
                    step,
                    now,
                    s
                );
            }
            Op::Check(s) => {
                let d = e.check(now, &s.message());
                prop_assert_eq!(
                    decision(&d, &ids),
                    m.check(now, &s),
                    "step {} at {}: check {:?}",
                    step,
                    now,
                    s
                );
            }
            Op::Release(t, r) => {
                let ev = e.release(ids[t], r, now).unwrap();
                prop_assert_eq!(
                    events(&ev, &ids),
                    m.release(t, r, now),
                    "step {}: release",
                    step
                );
            }
            Op::Lapse(t) => {
                let ev = e.mark_lapsed(ids[t], now).unwrap();
                prop_assert_eq!(events(&ev, &ids), m.lapse(t, now), "step {}: lapse", step);
            }
            Op::Activate(t) => {
                let ev = e.mark_active(ids[t], now).unwrap();
                prop_assert_eq!(
                    events(&ev, &ids),
                    m.activate(t, now),
                    "step {}: activate",
                    step
                );
            }
            Op::Expire => {
                let mut got = Vec::new();
                e.expire(now, |x| got.push(event(x, &ids)));
                prop_assert_eq!(got, m.expire(now), "step {}: expire", step);
            }
        }
        for (t, &id) in ids.iter().enumerate().take(3) {
            let st = e.status(id, now).unwrap();
            prop_assert_eq!(
                status(&st),
                m.status(t, now),
                "step {} at {}: status of t{}",
                step,
                now,
                t
            );
        }
    }
    // The audit trail: the last `audit_depth` events of each tenant, oldest first.
    for t in 0..3 {
        let got: Vec<MEvent> = e.audit(ids[t]).map(|x| event(x, &ids)).collect();
        let all = &m.t[t].events;
        let want = &all[all.len().saturating_sub(p.audit_depth as usize)..];
        prop_assert_eq!(&got[..], want, "audit of t{}", t);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        max_shrink_iters: 4000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(p in params(), ops in prop::collection::vec((dt(), op()), 1..120)) {
        run(p, ops)?;
    }

    /// Busy single tenant, no lapses: long enough streams to trip, release and trip again.
    #[test]
    fn engine_matches_model_busy_tenant(
        p in params(),
        ops in prop::collection::vec(
            (
                prop_oneof![8 => 0i64..6, 1 => -20i64..0, 1 => 0i64..120],
                prop_oneof![
                    20 => (spec(), verdict()).prop_map(|(mut s, v)| { s.tenant = 0; Op::Evaluate(s, v) }),
                    1 => Just(Op::Release(0, None)),
                    1 => Just(Op::Expire),
                ],
            ),
            20..200,
        ),
    ) {
        run(p, ops)?;
    }
}

/// A fixed case for the window semantics documented above, so a failure points at the window
/// and not at whatever the generator happened to build.
#[test]
fn model_and_engine_agree_on_a_slot_boundary_stream() {
    let mut r = RuleSet::default();
    r.unregistered.window = 300;
    r.unregistered.limit = 3;
    r.threshold.window = 300;
    r.threshold.min_messages = 1000;
    let p = Params {
        th_slots: 3,
        un_slots: 3,
        audit_depth: 4,
        rules: r,
        t2_licensed: true,
        exception_expires: T0,
    };
    let s = Spec {
        tenant: 0,
        auth: 0,
        cert: 0,
        ip: 0,
        sender: 8, // x@evil.example
        forwarded: false,
        spf: false,
        dkim: false,
        recipients: 1,
    };
    // Epochs of 100 s: E, E, E+2 (3 in window -> trips), ...
    let ops = vec![
        (0, Op::Evaluate(s, Verdict::Clean)),
        (99, Op::Evaluate(s, Verdict::Clean)),
        (101, Op::Evaluate(s, Verdict::Clean)), // T0+200: epoch E+2, both E messages still in
        (1, Op::Check(s)),
        (0, Op::Release(0, None)),
        (100, Op::Evaluate(s, Verdict::Clean)),
        (-150, Op::Evaluate(s, Verdict::Clean)), // backwards: counted in the newest slot
        (1000, Op::Check(s)),
    ];
    run(p, ops).unwrap();
}
