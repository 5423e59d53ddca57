//! The engine: attribution, sender classes, the three rules and their lifecycle.

use core::net::IpAddr;

use crate::address::{login_domain, parents, parse_sender, validate_domain, DomainName, Sender};
use crate::cidr::{addr_bits, prefix_mask, Cidr};
use crate::hash::{eq_bytes, eq_domain, hash_bytes, hash_domain, hash_u128, reduce};
use crate::storage::*;
use crate::window;
use crate::{
    BlockDuration, CountMode, Error, Event, EventKind, Events, Mode, Reason, Rule, RuleSet,
    RuleSetRecord, Scope, Table, Verdict, RATIO_ONE,
};

const SEED_TENANT: u64 = 0x7465_6e61_6e74;
const SEED_DOMAIN: u64 = 0x646f_6d61_696e;
const SEED_RANGE: u64 = 0x7261_6e67_6573;
const SEED_CONNECTOR: u64 = 0x636f_6e6e_6563;
/// Every name in the arena is preceded by its length (1 byte) and its owner (4 bytes: kind in
/// the top 2 bits, table index below), so the arena can be compacted in place.
const NAME_HEADER: usize = 5;
/// Messages decided together by the batch calls (each group's lookups touched first).
const GROUP: usize = 16;
const OWNER_INDEX: u32 = (1 << 30) - 1;
const OWNER_TENANT: u32 = 0;
const OWNER_DOMAIN: u32 = 1;
const OWNER_CONNECTOR_NAME: u32 = 2;
const OWNER_CONNECTOR_CERT: u32 = 3;
/// Bytes a name takes in the arena.
pub const fn name_cost(len: usize) -> usize {
    NAME_HEADER + len
}
const NO_OVERRIDE: u32 = u32::MAX;
const INDEX_DELETED: u32 = u32::MAX;
/// Longest tenant id, connector name.
pub const MAX_NAME: usize = 255;

/// A tenant, by its index in the engine's tenant table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub u32);

/// A connector, by its index in the engine's connector table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectorId(pub u32);

/// How a message was attributed to its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Attribution {
    /// The caller named the tenant.
    Explicit = 1,
    /// The authenticated user's domain is an accepted domain of exactly one tenant.
    AuthUser = 2,
    /// The TLS client certificate's domain matched a certificate connector.
    Certificate = 3,
    /// The client IP matched an IP connector.
    IpConnector = 4,
}

impl Attribution {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Attribution::Explicit => "explicit",
            Attribution::AuthUser => "auth_user",
            Attribution::Certificate => "certificate",
            Attribution::IpConnector => "ip_connector",
        }
    }
}

/// The class of the envelope sender's domain, relative to the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SenderClass {
    /// An accepted, validated domain of the tenant (or an opted-in subdomain of one).
    Registered = 1,
    /// Not registered, but a legitimate relay: certificate connector with a registered
    /// certificate domain, or forwarded mail that passed SPF or DKIM.
    Exempt = 2,
    /// Everything else, address literals included.
    Unregistered = 3,
    /// The null reverse-path (bounces); never counts toward 5.7.750.
    Null = 4,
}

impl SenderClass {
    /// Lower-case name (`"registered"`, `"exempt"`, `"unregistered"`, `"null"`).
    pub const fn name(self) -> &'static str {
        match self {
            SenderClass::Registered => "registered",
            SenderClass::Exempt => "exempt",
            SenderClass::Unregistered => "unregistered",
            SenderClass::Null => "null",
        }
    }
}

/// One outbound message, as the mail server sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Message<'a> {
    /// Envelope sender (`MAIL FROM`), with or without `<>`; empty for the null sender.
    pub mail_from: &'a [u8],
    /// Tenant id named by the caller, if any.
    pub tenant: Option<&'a str>,
    /// Connecting client's IP.
    pub client_ip: Option<IpAddr>,
    /// Authenticated (SASL) user, such as `alice@contoso.com`.
    pub auth_user: Option<&'a str>,
    /// Domain of the TLS client certificate.
    pub cert_domain: Option<&'a str>,
    /// The message is being forwarded (mailbox forwarding back out).
    pub forwarded: bool,
    /// SPF passed for the original sender.
    pub spf_pass: bool,
    /// DKIM passed.
    pub dkim_pass: bool,
    /// Number of recipients (counted when a rule counts recipients; 0 is taken as 1).
    pub recipients: u32,
}

impl<'a> Message<'a> {
    /// A message with only an envelope sender.
    pub fn new(mail_from: &'a str) -> Message<'a> {
        Message {
            mail_from: mail_from.as_bytes(),
            recipients: 1,
            ..Message::default()
        }
    }
}

/// When a block ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockEnd {
    /// At this Unix time, by itself.
    At(u64),
    /// When an operator releases it.
    OnRelease,
}

/// The counters of a tenant's rules against their limits, at the time of a decision.
///
/// The limits (every field but the three counts) are those of the tenant's rules: each
/// decision about a tenant carries the same ones until its rules change
/// ([`Engine::set_overrides`], or a new policy). A decision without a tenant has all zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
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

/// The answer for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Why the message is refused; `None` when it is accepted.
    pub reason: Option<Reason>,
    /// In monitor mode: the refusal that would have happened (the message is accepted).
    pub monitored: Option<Reason>,
    /// The tenant the message was attributed to.
    pub tenant: Option<TenantId>,
    /// How it was attributed.
    pub attribution: Option<Attribution>,
    /// The sender's class (`None` when the sender could not be parsed).
    pub sender_class: Option<SenderClass>,
    /// The tenant's counters against their limits.
    pub counters: Counters,
    /// When the block that refused the message ends.
    pub block_ends: Option<BlockEnd>,
}

impl Decision {
    fn new() -> Decision {
        Decision {
            reason: None,
            monitored: None,
            tenant: None,
            attribution: None,
            sender_class: None,
            counters: Counters::default(),
            block_ends: None,
        }
    }
    /// The message may go out.
    pub fn accepted(&self) -> bool {
        self.reason.is_none()
    }
    /// The exact SMTP reply line of a refusal.
    pub fn reply(&self) -> Option<&'static str> {
        self.reason.map(Reason::reply)
    }
    /// The enhanced status code of a refusal (`"5.7.750"`).
    pub fn code(&self) -> Option<&'static str> {
        self.reason.map(Reason::enhanced_code)
    }
    /// The rule that refused the message (or would have, in monitor mode).
    pub fn rule(&self) -> Option<Rule> {
        self.reason.or(self.monitored).and_then(Reason::rule)
    }
}

/// The state of one windowed rule of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleStatus {
    /// Blocked now (in monitor mode: would be).
    pub blocked: bool,
    /// When the block started.
    pub blocked_at: Option<u64>,
    /// When the block ends.
    pub block_ends: Option<BlockEnd>,
    /// The rule will not trip before this time.
    pub grace_until: Option<u64>,
    /// The warning tier is active (5.7.705).
    pub warned: bool,
    /// Enforce or monitor, for this tenant.
    pub mode: Mode,
}

/// A tenant's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantStatus {
    /// Tenant.
    pub tenant: TenantId,
    /// Licensed tenant.
    pub licensed: bool,
    /// Lapsed now (including the renewal delay after being marked active).
    pub lapsed: bool,
    /// 5.7.705.
    pub threshold: RuleStatus,
    /// 5.7.750.
    pub unregistered: RuleStatus,
    /// Counters against limits.
    pub counters: Counters,
}

/// A tenant currently refused, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restriction {
    /// Tenant.
    pub tenant: TenantId,
    /// Why.
    pub reason: Reason,
    /// Since when.
    pub since: u64,
    /// Until when.
    pub ends: BlockEnd,
    /// The rule is in monitor mode: nothing is really refused.
    pub monitor: bool,
}

/// Why a connector looks suspicious (bit set).
pub mod suspicion {
    /// Created within the recent-connector window.
    pub const RECENT: u8 = 1;
    /// Its certificate domain is not an accepted, validated domain of its tenant.
    pub const CERTIFICATE_NOT_ACCEPTED: u8 = 2;
    /// One of its source ranges is on the low-reputation list.
    pub const LOW_REPUTATION_RANGE: u8 = 4;
}

/// A connector that deserves an operator's look (attackers create connectors to relay spam).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuspiciousConnector {
    /// Connector.
    pub connector: ConnectorId,
    /// Its tenant.
    pub tenant: TenantId,
    /// [`suspicion`] bits.
    pub why: u8,
}

/// The engine. Decides every message; counts accepted ones; keeps blocks and audit trails.
///
/// `check` and every query take `&self`; `record`, `release` and operator actions take
/// `&mut self`. Every call takes `now` (Unix seconds): the engine has no clock.
pub struct Engine<S: Storage> {
    store: S,
    cap: Capacity,
    layout: Layout,
    rules: RuleSet,
    recent_connector: u64,
    tenants_high: u32,
    tenants_live: u32,
    domains_live: u32,
    connectors_high: u32,
    ranges_live: u32,
    overrides_high: u32,
    names_len: u32,
    range_lens: [[u32; 129]; RANGE_CLASSES],
    /// Per kind and address family (`kind * 2 + family`): how many prefix lengths a lookup
    /// must probe, then those lengths, longest first (derived from `range_lens`).
    range_order: [[u8; 130]; 6],
    /// The slot lengths of the default rules (5.7.705, 5.7.750) as dividers, so a decision
    /// divides nothing (see [`window::SlotDiv`]); kept with `rules`.
    slot_divs: [window::SlotDiv; 2],
}

/// The slot lengths of `rules` (5.7.705, 5.7.750) with `cap`'s slot counts, as dividers.
fn slot_divs(rules: &RuleSet, cap: &Capacity) -> [window::SlotDiv; 2] {
    [
        window::SlotDiv::new(window::slot_len(
            rules.threshold.window,
            cap.threshold_slots as usize,
        )),
        window::SlotDiv::new(window::slot_len(
            rules.unregistered.window,
            cap.unregistered_slots as usize,
        )),
    ]
}

/// Range counts are kept per kind and per class of prefix (`kind * 3 + class`): inside the
/// IPv4-mapped block, elsewhere in IPv6, or covering the IPv4-mapped block (`::/0`, rare), so
/// an IPv4 address never probes IPv6-only prefix lengths and the reverse.
const RANGE_CLASSES: usize = 9;
const CLASS_V4: usize = 0;
const CLASS_V6: usize = 1;
const CLASS_COVER: usize = 2;
const V4_BLOCK: u128 = 0xffff_0000_0000;

fn range_class(network: u128, len: u8) -> usize {
    let len = len.min(128);
    if len >= 96 && network & prefix_mask(96) == V4_BLOCK {
        CLASS_V4
    } else if len < 96 && V4_BLOCK & prefix_mask(len) == network {
        CLASS_COVER
    } else {
        CLASS_V6
    }
}

/// The live count of ranges of `kind` with the class and prefix length of `network/len`.
fn range_count(
    lens: &mut [[u32; 129]; RANGE_CLASSES],
    kind: u8,
    network: u128,
    len: u8,
) -> &mut u32 {
    &mut lens[kind as usize * 3 + range_class(network, len)][len.min(128) as usize]
}

fn range_order(lens: &[[u32; 129]; RANGE_CLASSES]) -> [[u8; 130]; 6] {
    let mut out = [[0u8; 130]; 6];
    for kind in 0..3 {
        for (family, own) in [(0usize, CLASS_V4), (1, CLASS_V6)] {
            let o = &mut out[kind * 2 + family];
            let mut n = 0usize;
            for len in (0..=128usize).rev() {
                if lens[kind * 3 + own][len] != 0 || lens[kind * 3 + CLASS_COVER][len] != 0 {
                    n += 1;
                    o[n] = len as u8;
                }
            }
            o[0] = n as u8;
        }
    }
    out
}

impl<S: Storage> core::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("capacity", &self.cap)
            .field("tenants", &self.tenants_live)
            .field("domains", &self.domains_live)
            .field("connectors", &self.connectors_high)
            .field("ranges", &self.ranges_live)
            .field("name_bytes", &self.names_len)
            .finish()
    }
}

/// How many entries each table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Tenants.
    pub tenants: u32,
    /// Domain entries.
    pub domains: u32,
    /// Connectors (including removed ones whose record is not reused).
    pub connectors: u32,
    /// Range entries.
    pub ranges: u32,
    /// Name bytes.
    pub name_bytes: u32,
    /// Overrides.
    pub overrides: u32,
}

fn name_of(names: &[u8], off: u32, len: u8) -> &[u8] {
    names
        .get(off as usize..off as usize + len as usize)
        .unwrap_or(&[])
}

fn tag16(h: u64) -> u16 {
    (h >> 48) as u16
}

fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_NAME && !id.chars().any(char::is_control) && id.trim() == id
}

fn ip_words(v: u128) -> [u32; 4] {
    [
        v as u32,
        (v >> 32) as u32,
        (v >> 64) as u32,
        (v >> 96) as u32,
    ]
}

fn words_ip(w: [u32; 4]) -> u128 {
    w[0] as u128 | (w[1] as u128) << 32 | (w[2] as u128) << 64 | (w[3] as u128) << 96
}

/// Probes an open-addressing index of entry numbers plus one (0 empty, [`INDEX_DELETED`] a
/// deleted slot) from the home slot of hash `h`: `Ok(slot)` of the first entry `is` accepts,
/// `Err(first free slot)` when there is none.
fn probe_index(
    idx: &[u32],
    h: u64,
    mut is: impl FnMut(u32) -> bool,
) -> Result<usize, Option<usize>> {
    let n = idx.len();
    if n == 0 {
        return Err(None);
    }
    let mut i = reduce(h, n);
    let mut free = None;
    for _ in 0..n {
        match idx[i] {
            0 => return Err(free.or(Some(i))),
            INDEX_DELETED => free = free.or(Some(i)),
            v => {
                if is(v - 1) {
                    return Ok(i);
                }
            }
        }
        i += 1;
        if i == n {
            i = 0;
        }
    }
    Err(free)
}

/// Hash of the exact range `(kind, owner, network, len)` in the range table.
fn range_hash(kind: u8, owner: u32, network: u128, len: u8) -> u64 {
    hash_u128(SEED_RANGE, network, owner, (kind as u32) << 8 | len as u32)
}

/// Read-only lookups over the tables (shared by `&self` and `&mut self` paths).
struct View<'p> {
    p: Parts<'p>,
    l: &'p Layout,
    range_lens: &'p [[u32; 129]; RANGE_CLASSES],
    range_order: &'p [[u8; 130]; 6],
    /// The engine's dividers for the default rules.
    slot_divs: &'p [window::SlotDiv; 2],
}

impl<'p> View<'p> {
    fn tenants(&self) -> &'p [TenantRecord] {
        self.p.tenants.get(..self.l.tenants).unwrap_or(&[])
    }

    fn tenant(&self, t: u32) -> Option<&'p TenantRecord> {
        self.tenants()
            .get(t as usize)
            .filter(|r| r.flags & TENANT_USED != 0)
    }

    fn tenant_id(&self, t: u32) -> &'p [u8] {
        match self.tenant(t) {
            Some(r) => name_of(self.p.names, r.id_off, r.id_len),
            None => &[],
        }
    }

    /// The tenant index (entry numbers plus one, see [`probe_index`]).
    fn tenant_index(&self) -> &'p [u32] {
        self.p
            .tenant_index
            .get(..self.l.tenant_index)
            .unwrap_or(&[])
    }

    /// Index slot of `id`: `Ok(slot)` when found, `Err(first free slot)` otherwise.
    fn tenant_slot(&self, id: &[u8]) -> Result<usize, Option<usize>> {
        probe_index(self.tenant_index(), hash_bytes(SEED_TENANT, id), |t| {
            eq_bytes(self.tenant_id(t), id)
        })
    }

    /// Index slot of the connector `name` of tenant `t`.
    fn connector_slot(&self, t: u32, name: &[u8]) -> Result<usize, Option<usize>> {
        let idx = self
            .p
            .connector_index
            .get(..self.l.connector_index)
            .unwrap_or(&[]);
        probe_index(idx, hash_bytes(SEED_CONNECTOR ^ t as u64, name), |c| {
            self.p.connectors.get(c as usize).is_some_and(|c| {
                c.tenant == t && name_of(self.p.names, c.name_off, c.name_len) == name
            })
        })
    }

    /// The source ranges of a connector.
    fn connector_ranges(&self, c: &ConnectorRecord) -> impl Iterator<Item = &'p RangeEntry> + 'p {
        let ranges = self.ranges();
        let mut next = c.first_range;
        let mut left = ranges.len();
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let e = ranges.get(next as usize)?;
            next = e.next;
            Some(e)
        })
    }

    fn find_tenant(&self, id: &[u8]) -> Option<u32> {
        let slot = self.tenant_slot(id).ok()?;
        self.p.tenant_index.get(slot).map(|v| v - 1)
    }

    fn domains(&self) -> &'p [DomainEntry] {
        self.p.domains.get(..self.l.domains).unwrap_or(&[])
    }

    /// Calls `f` with every used entry named `name`; stops early when `f` returns true.
    fn each_domain(&self, name: &[u8], mut f: impl FnMut(usize, &DomainEntry) -> bool) -> bool {
        let d = self.domains();
        let n = d.len();
        if n == 0 {
            return false;
        }
        let h = hash_domain(SEED_DOMAIN, name);
        let tag = tag16(h);
        let mut i = reduce(h, n);
        for _ in 0..n {
            let e = &d[i];
            if e.flags == 0 {
                return false;
            }
            if e.flags & DOMAIN_USED != 0
                && e.tag == tag
                && e.name_len as usize == name.len()
                && eq_domain(name_of(self.p.names, e.name_off, e.name_len), name)
                && f(i, e)
            {
                return true;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        false
    }

    /// An accepted, validated domain of tenant `t` matches `dom` (exactly, or as a parent
    /// whose entry allows subdomains).
    fn is_registered(&self, t: u32, dom: &[u8]) -> bool {
        let ok = |e: &DomainEntry, parent: bool| {
            e.tenant == t
                && e.flags & DOMAIN_CERTIFICATE == 0
                && e.flags & DOMAIN_VALIDATED != 0
                && (!parent || e.flags & DOMAIN_SUBDOMAINS != 0)
        };
        if self.each_domain(dom, |_, e| ok(e, false)) {
            return true;
        }
        parents(dom).any(|p| self.each_domain(p, |_, e| ok(e, true)))
    }

    /// The one tenant whose validated accepted domains match `dom`, if exactly one does.
    fn unique_domain_owner(&self, dom: &[u8]) -> Option<u32> {
        let mut owner: Option<u32> = None;
        let mut ambiguous = false;
        let mut visit = |e: &DomainEntry, parent: bool| {
            if e.flags & DOMAIN_CERTIFICATE == 0
                && e.flags & DOMAIN_VALIDATED != 0
                && (!parent || e.flags & DOMAIN_SUBDOMAINS != 0)
            {
                match owner {
                    None => owner = Some(e.tenant),
                    Some(o) if o != e.tenant => ambiguous = true,
                    _ => {}
                }
            }
            false
        };
        self.each_domain(dom, |_, e| visit(e, false));
        for p in parents(dom) {
            self.each_domain(p, |_, e| visit(e, true));
        }
        if ambiguous {
            None
        } else {
            owner
        }
    }

    /// The certificate connector for a certificate domain, if exactly one tenant has one.
    fn certificate_connector(&self, dom: &[u8], only_tenant: Option<u32>) -> Option<(u32, u32)> {
        let mut found: Option<(u32, u32)> = None;
        let mut ambiguous = false;
        self.each_domain(dom, |_, e| {
            if e.flags & DOMAIN_CERTIFICATE != 0 && only_tenant.is_none_or(|t| t == e.tenant) {
                match found {
                    None => found = Some((e.tenant, e.connector)),
                    Some((t, _)) if t != e.tenant => ambiguous = true,
                    _ => {}
                }
            }
            false
        });
        if ambiguous {
            None
        } else {
            found
        }
    }

    fn ranges(&self) -> &'p [RangeEntry] {
        self.p.ranges.get(..self.l.ranges).unwrap_or(&[])
    }

    /// Slot of the exact range `(kind, owner, network, len)`.
    fn range_slot(
        &self,
        kind: u8,
        owner: u32,
        network: u128,
        len: u8,
    ) -> Result<usize, Option<usize>> {
        let r = self.ranges();
        let n = r.len();
        if n == 0 {
            return Err(None);
        }
        let w = ip_words(network);
        let mut i = reduce(range_hash(kind, owner, network, len), n);
        let mut free = None;
        for _ in 0..n {
            let e = &r[i];
            if e.flags == 0 {
                return Err(free.or(Some(i)));
            }
            if e.flags & RANGE_DELETED != 0 {
                free = free.or(Some(i));
            } else if e.kind == kind && e.owner == owner && e.len == len && e.network == w {
                return Ok(i);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        Err(free)
    }

    /// The prefix lengths a lookup of `ip` in ranges of `kind` must probe, longest first.
    fn probe_lens(&self, kind: u8, ip: u128) -> &'p [u8] {
        let family = usize::from(ip & prefix_mask(96) != V4_BLOCK);
        let Some(order) = self.range_order.get(kind as usize * 2 + family) else {
            return &[];
        };
        order.get(1..=order[0] as usize).unwrap_or(&[])
    }

    /// Longest-prefix search: the first entry (longest prefix first) containing `ip` that
    /// satisfies `pred`.
    fn find_range(
        &self,
        kind: u8,
        owner: u32,
        ip: u128,
        mut pred: impl FnMut(&RangeEntry) -> bool,
    ) -> Option<&'p RangeEntry> {
        for &len in self.probe_lens(kind, ip) {
            if let Ok(i) = self.range_slot(kind, owner, ip & prefix_mask(len), len) {
                let e = &self.ranges()[i];
                if pred(e) {
                    return Some(e);
                }
            }
        }
        None
    }

    /// Whether a range shares any address with the low-reputation list: a listed prefix
    /// contains it, or it contains a listed prefix. The second test probes every sub-prefix of
    /// each listed length, up to 4096 per length (wider gaps are not searched).
    fn overlaps_low_reputation(&self, network: u128, len: u8) -> bool {
        if self
            .find_range(RANGE_KIND_LOW_REPUTATION, 0, network, |_| true)
            .is_some()
        {
            return true;
        }
        let k = RANGE_KIND_LOW_REPUTATION as usize * 3;
        for l in (len as usize + 1)..=128 {
            let count: u32 = (0..3).map(|c| self.range_lens[k + c][l]).sum();
            if count == 0 || l - len as usize > 12 {
                continue;
            }
            let step = 1u128 << (128 - l);
            for k in 0..(1u128 << (l - len as usize)) {
                let sub = network | (k * step);
                if self
                    .range_slot(RANGE_KIND_LOW_REPUTATION, 0, sub, l as u8)
                    .is_ok()
                {
                    return true;
                }
            }
        }
        false
    }

    /// Reads the home slot of each lookup `check` will make for `m` (a prefetch that needs
    /// no unsafe code: the loads are independent, so the CPU overlaps their misses).
    fn touch_first(&self, m: &Message<'_>, sender: Result<Sender<'_>, Error>) -> u64 {
        let mut sink = 0u64;
        if let Some(id) = m.tenant {
            let idx = self.tenant_index();
            if !idx.is_empty() {
                let i = reduce(hash_bytes(SEED_TENANT, id.as_bytes()), idx.len());
                sink ^= idx[i] as u64;
            }
        }
        if let Ok(Sender::Domain(d)) = sender {
            let dom = self.domains();
            if !dom.is_empty() {
                let i = reduce(hash_domain(SEED_DOMAIN, d), dom.len());
                sink ^= dom[i].name_off as u64;
            }
        }
        if let Some(ip) = m.client_ip {
            let bits = addr_bits(ip);
            let kind = RANGE_KIND_LOW_REPUTATION;
            let r = self.ranges();
            for &len in self.probe_lens(kind, bits) {
                if r.is_empty() {
                    break;
                }
                let i = reduce(range_hash(kind, 0, bits & prefix_mask(len), len), r.len());
                sink ^= r[i].value;
            }
        }
        sink
    }

    /// Reads the tenant record, its id bytes and its window totals for `m` (after
    /// [`View::touch_first`] brought the index slot in).
    fn touch_second(&self, m: &Message<'_>, cap: &Capacity) -> u64 {
        let Some(id) = m.tenant else { return 0 };
        let Some(t) = self.find_tenant(id.as_bytes()) else {
            return 0;
        };
        let Some(rec) = self.tenant(t) else { return 0 };
        let (th, un) = self.counter_cells(t, cap);
        rec.flags as u64
            ^ th.last().copied().unwrap_or(0) as u64
            ^ un.last().copied().unwrap_or(0) as u64
    }

    fn rules_for(&self, t: &TenantRecord, global: &RuleSet) -> RuleSet {
        if t.overrides != NO_OVERRIDE {
            if let Some(r) = self.p.overrides.get(t.overrides as usize) {
                // Only valid sets are ever stored; a damaged word falls back to the defaults.
                if let Ok(rs) = RuleSet::decode(r) {
                    return rs;
                }
            }
        }
        *global
    }

    fn counter_cells(&self, t: u32, cap: &Capacity) -> (&'p [u32], &'p [u32]) {
        let stride = cap.counter_stride();
        let base = t as usize * stride;
        let ts = cap.threshold_cells();
        let all = self.p.counters.get(base..base + stride).unwrap_or(&[]);
        let (a, b) = all.split_at(ts.min(all.len()));
        (a, b)
    }

    /// The slot dividers of a tenant's rules (`rules`, as [`View::rules_for`] gave them): the
    /// engine's own for a tenant on the default rules.
    #[inline]
    fn slot_divs(
        &self,
        rec: &TenantRecord,
        rules: &RuleSet,
        cap: &Capacity,
    ) -> [window::SlotDiv; 2] {
        if rec.overrides == NO_OVERRIDE {
            debug_assert_eq!(*self.slot_divs, slot_divs(rules, cap));
            *self.slot_divs
        } else {
            slot_divs(rules, cap)
        }
    }

    fn counters(
        &self,
        t: u32,
        rec: &TenantRecord,
        rules: &RuleSet,
        cap: &Capacity,
        now: u64,
    ) -> Counters {
        let divs = self.slot_divs(rec, rules, cap);
        let (th, un) = self.counter_cells(t, cap);
        let te = divs[0].div(now);
        let ue = divs[1].div(now);
        Counters {
            total: window::sum(th, 2, rec.rules[0].head, te, 0),
            suspicious: window::sum(th, 2, rec.rules[0].head, te, 1),
            unregistered: window::sum(un, 1, rec.rules[1].head, ue, 0),
            min_messages: rules.threshold.min_messages,
            min_suspicious: rules.threshold.min_suspicious,
            max_ratio_ppm: rules.threshold.max_ratio_ppm,
            warn_ratio_ppm: rules.threshold.warn_ratio_ppm,
            limit: rules.unregistered.limit,
        }
    }

    /// The tenant (and its record) and sender class of a message, if it belongs to a tenant.
    fn resolve(&self, msg: &Message<'_>, sender: &Sender) -> Option<Resolved<'p>> {
        let cert = msg
            .cert_domain
            .and_then(|c| validate_domain(c.as_bytes()).ok());
        let (tenant, attribution) = if let Some(id) = msg.tenant {
            (self.find_tenant(id.as_bytes())?, Attribution::Explicit)
        } else if let Some(t) = msg
            .auth_user
            .and_then(|u| login_domain(u.as_bytes()))
            .and_then(|d| self.unique_domain_owner(d))
        {
            (t, Attribution::AuthUser)
        } else if let Some((t, _)) = cert
            .as_ref()
            .and_then(|c| self.certificate_connector(c, None))
        {
            (t, Attribution::Certificate)
        } else if let Some(e) = msg
            .client_ip
            .and_then(|ip| self.find_range(RANGE_KIND_CONNECTOR, 0, addr_bits(ip), |_| true))
        {
            let c = self.p.connectors.get(e.value as usize)?;
            (c.tenant, Attribution::IpConnector)
        } else {
            return None;
        };
        let rec = self.tenant(tenant)?;
        let class = match sender {
            Sender::Null => SenderClass::Null,
            Sender::Domain(d) if self.is_registered(tenant, d) => SenderClass::Registered,
            _ => {
                let via_cert = cert.as_ref().is_some_and(|c| {
                    self.certificate_connector(c, Some(tenant)).is_some()
                        && self.is_registered(tenant, c)
                });
                if via_cert || (msg.forwarded && (msg.spf_pass || msg.dkim_pass)) {
                    SenderClass::Exempt
                } else {
                    SenderClass::Unregistered
                }
            }
        };
        Some(Resolved {
            tenant,
            rec,
            attribution,
            class,
        })
    }
}

/// A range as the tables hold it: prefix at most 128 bits, host bits cleared.
fn checked_range(r: Cidr) -> Result<Cidr, Error> {
    if r.len > 128 {
        return Err(Error::InvalidRange);
    }
    Ok(Cidr {
        network: r.network & prefix_mask(r.len),
        len: r.len,
    })
}

/// Whether a rule's block is in force at `now`.
fn block_active(s: &RuleState, now: u64) -> bool {
    s.flags & RULE_BLOCKED != 0 && (s.flags & RULE_MANUAL != 0 || now < s.until)
}

fn block_end(s: &RuleState) -> BlockEnd {
    if s.flags & RULE_MANUAL != 0 {
        BlockEnd::OnRelease
    } else {
        BlockEnd::At(s.until)
    }
}

fn lapsed_now(t: &TenantRecord, now: u64) -> bool {
    t.flags & TENANT_LAPSED != 0 || now < t.active_at
}

/// A message resolved against the tables: its tenant (with the record) and sender class.
struct Resolved<'p> {
    tenant: u32,
    rec: &'p TenantRecord,
    attribution: Attribution,
    class: SenderClass,
}

impl<S: Storage> Engine<S> {
    /// Builds an empty engine over `store`, which must hold at least `cap.layout()` records in
    /// each table. Existing contents of the storage are cleared.
    pub fn new(mut store: S, cap: Capacity, rules: RuleSet) -> Result<Engine<S>, Error> {
        cap.validate()?;
        rules.validate()?;
        let layout = cap.layout();
        if !store.parts().fits(&layout) {
            return Err(Error::InvalidCapacity(
                "storage slices are shorter than the layout",
            ));
        }
        {
            let p = store.parts_mut();
            p.tenants.fill(TenantRecord::EMPTY);
            p.tenant_index.fill(0);
            p.domains.fill(DomainEntry::EMPTY);
            p.connectors.fill(ConnectorRecord::EMPTY);
            p.connector_index.fill(0);
            p.ranges.fill(RangeEntry::EMPTY);
            p.counters.fill(0);
            p.audit.fill(Event::default());
        }
        Ok(Engine {
            store,
            slot_divs: slot_divs(&rules, &cap),
            cap,
            layout,
            rules,
            recent_connector: 7 * 86_400,
            tenants_high: 0,
            tenants_live: 0,
            domains_live: 0,
            connectors_high: 0,
            ranges_live: 0,
            overrides_high: 0,
            names_len: 0,
            range_lens: [[0; 129]; RANGE_CLASSES],
            range_order: [[0; 130]; 6],
        })
    }

    fn view(&self) -> View<'_> {
        View {
            p: self.store.parts(),
            l: &self.layout,
            range_lens: &self.range_lens,
            range_order: &self.range_order,
            slot_divs: &self.slot_divs,
        }
    }

    /// The capacity the engine was built with.
    pub fn capacity(&self) -> &Capacity {
        &self.cap
    }

    /// How full each table is.
    pub fn usage(&self) -> Usage {
        Usage {
            tenants: self.tenants_live,
            domains: self.domains_live,
            connectors: self.connectors_high,
            ranges: self.ranges_live,
            name_bytes: self.names_len,
            overrides: self.overrides_high,
        }
    }

    /// The policy's default rule parameters.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Replaces the default rule parameters (counters and blocks are kept).
    pub fn set_rules(&mut self, rules: RuleSet) -> Result<(), Error> {
        rules.validate()?;
        self.rules = rules;
        self.slot_divs = slot_divs(&self.rules, &self.cap);
        Ok(())
    }

    /// Connectors created less than this many seconds ago are listed as suspicious.
    pub fn set_recent_connector(&mut self, seconds: u64) {
        self.recent_connector = seconds;
    }

    /// The storage (for snapshots of raw tables).
    pub fn storage(&self) -> &S {
        &self.store
    }

    // ----- tenants -------------------------------------------------------------------------

    /// The tenant with this id.
    pub fn tenant(&self, id: &str) -> Option<TenantId> {
        self.view().find_tenant(id.as_bytes()).map(TenantId)
    }

    /// The id of a tenant (empty for an unknown index).
    pub fn tenant_name(&self, t: TenantId) -> &str {
        core::str::from_utf8(self.view().tenant_id(t.0)).unwrap_or("")
    }

    /// Whether `name` is the id of tenant `t`: [`Engine::tenant_name`]`(t) == name`, without
    /// checking the stored id's UTF-8 (a binding that holds the caller's own id string asks
    /// this on every decision).
    pub fn tenant_name_is(&self, t: TenantId, name: &str) -> bool {
        let id = self.view().tenant_id(t.0);
        // An id that is not UTF-8 reads as "" through `tenant_name`.
        if name.is_empty() {
            return id.is_empty() || core::str::from_utf8(id).is_err();
        }
        id == name.as_bytes()
    }

    /// Every tenant.
    pub fn tenants(&self) -> impl Iterator<Item = TenantId> + '_ {
        let v = self.view();
        (0..self.tenants_high)
            .filter(move |&t| v.tenant(t).is_some())
            .map(TenantId)
    }

    /// The rule parameters that apply to a tenant.
    pub fn tenant_rules(&self, t: TenantId) -> Result<RuleSet, Error> {
        let v = self.view();
        let rec = v.tenant(t.0).ok_or(Error::UnknownTenant)?;
        Ok(v.rules_for(rec, &self.rules))
    }

    /// Makes room for names totalling `bytes` (their headers included), compacting the
    /// arena when removed names left holes. After `Ok`, the pushes of those names cannot fail
    /// and nothing moves until the next reservation.
    fn reserve_names(&mut self, bytes: usize) -> Result<(), Error> {
        let fits = |e: &Self| (e.names_len as usize).saturating_add(bytes) <= e.layout.names;
        if fits(self) {
            return Ok(());
        }
        self.compact_names();
        if fits(self) {
            Ok(())
        } else {
            Err(Error::TableFull(Table::Names))
        }
    }

    /// Appends a name preceded by its owner header; returns the offset of the name's bytes.
    /// Call [`Engine::reserve_names`] first.
    fn push_name(&mut self, bytes: &[u8], owner: u32, index: u32) -> Result<u32, Error> {
        let off = self.names_len as usize;
        let end = off
            .checked_add(NAME_HEADER + bytes.len())
            .ok_or(Error::TableFull(Table::Names))?;
        if end > self.layout.names || bytes.len() > u8::MAX as usize || index > OWNER_INDEX {
            return Err(Error::TableFull(Table::Names));
        }
        let names = self.store.parts_mut().names;
        let slot = names
            .get_mut(off..end)
            .ok_or(Error::TableFull(Table::Names))?;
        slot[0] = bytes.len() as u8;
        slot[1..NAME_HEADER].copy_from_slice(&(owner << 30 | index).to_le_bytes());
        slot[NAME_HEADER..].copy_from_slice(bytes);
        self.names_len = end as u32;
        Ok((off + NAME_HEADER) as u32)
    }

    /// Slides every live name down over the holes left by removed ones and updates its
    /// owner's offset. One pass over the arena; no allocation.
    fn compact_names(&mut self) {
        let end = (self.names_len as usize).min(self.layout.names);
        let p = self.store.parts_mut();
        let (mut read, mut write) = (0usize, 0usize);
        while read + NAME_HEADER <= end {
            let len = p.names[read] as usize;
            let w = u32::from_le_bytes([
                p.names[read + 1],
                p.names[read + 2],
                p.names[read + 3],
                p.names[read + 4],
            ]);
            let total = NAME_HEADER + len;
            if read + total > end {
                break;
            }
            let (owner, idx) = (w >> 30, (w & OWNER_INDEX) as usize);
            let off = (read + NAME_HEADER) as u32;
            let new_off = (write + NAME_HEADER) as u32;
            let live = match owner {
                OWNER_TENANT => p
                    .tenants
                    .get_mut(idx)
                    .filter(|r| r.flags & TENANT_USED != 0 && r.id_off == off)
                    .map(|r| r.id_off = new_off),
                OWNER_DOMAIN => p
                    .domains
                    .get_mut(idx)
                    .filter(|e| e.flags & DOMAIN_USED != 0 && e.name_off == off)
                    .map(|e| e.name_off = new_off),
                OWNER_CONNECTOR_NAME => p
                    .connectors
                    .get_mut(idx)
                    .filter(|c| c.flags & CONNECTOR_USED != 0 && c.name_off == off)
                    .map(|c| c.name_off = new_off),
                _ => p
                    .connectors
                    .get_mut(idx)
                    .filter(|c| {
                        c.flags & CONNECTOR_USED != 0 && c.cert_len > 0 && c.cert_off == off
                    })
                    .map(|c| c.cert_off = new_off),
            };
            if live.is_some() {
                p.names.copy_within(read..read + total, write);
                write += total;
            }
            read += total;
        }
        self.names_len = write as u32;
    }

    /// Adds a tenant. Ids are non-empty, at most 255 bytes, without control characters or
    /// surrounding spaces.
    pub fn add_tenant(&mut self, id: &str, licensed: bool) -> Result<TenantId, Error> {
        if !valid_tenant_id(id) {
            return Err(Error::InvalidTenantId);
        }
        let slot = match self.view().tenant_slot(id.as_bytes()) {
            Ok(_) => return Err(Error::DuplicateTenant),
            Err(Some(s)) => s,
            Err(None) => return Err(Error::TableFull(Table::Tenants)),
        };
        let t = if self.tenants_high < self.cap.tenants {
            self.tenants_high
        } else {
            let v = self.view();
            (0..self.cap.tenants)
                .find(|&t| {
                    v.tenants()
                        .get(t as usize)
                        .is_some_and(|r| r.flags & TENANT_USED == 0)
                })
                .ok_or(Error::TableFull(Table::Tenants))?
        };
        self.reserve_names(name_cost(id.len()))?;
        let off = self.push_name(id.as_bytes(), OWNER_TENANT, t)?;
        let stride = self.cap.counter_stride();
        let depth = self.cap.audit_depth as usize;
        let p = self.store.parts_mut();
        let rec = p
            .tenants
            .get_mut(t as usize)
            .ok_or(Error::TableFull(Table::Tenants))?;
        *rec = TenantRecord {
            id_off: off,
            id_len: id.len() as u8,
            flags: TENANT_USED | if licensed { TENANT_LICENSED } else { 0 },
            overrides: NO_OVERRIDE,
            ..TenantRecord::default()
        };
        if let Some(c) = p
            .counters
            .get_mut(t as usize * stride..(t as usize + 1) * stride)
        {
            c.fill(0);
        }
        if let Some(a) = p
            .audit
            .get_mut(t as usize * depth..(t as usize + 1) * depth)
        {
            a.fill(Event::default());
        }
        p.tenant_index[slot] = t + 1;
        if t == self.tenants_high {
            self.tenants_high += 1;
        }
        self.tenants_live += 1;
        Ok(TenantId(t))
    }

    /// Removes a tenant with its domains, connectors, exceptions and state.
    pub fn remove_tenant(&mut self, t: TenantId) -> Result<(), Error> {
        let id_slot = {
            let v = self.view();
            let id = v.tenant_id(t.0);
            if v.tenant(t.0).is_none() {
                return Err(Error::UnknownTenant);
            }
            v.tenant_slot(id).map_err(|_| Error::UnknownTenant)?
        };
        // Connectors of the tenant (with their ranges and certificate entries).
        for ci in 0..self.connectors_high {
            let mine = self
                .view()
                .p
                .connectors
                .get(ci as usize)
                .is_some_and(|c| c.flags & CONNECTOR_USED != 0 && c.tenant == t.0);
            if mine {
                self.remove_connector(ConnectorId(ci))?;
            }
        }
        // Domains of the tenant.
        let mut removed_domains = 0;
        let mut removed_ranges = 0;
        {
            let p = self.store.parts_mut();
            for e in p.domains.iter_mut().take(self.layout.domains) {
                if e.flags & DOMAIN_USED != 0 && e.tenant == t.0 {
                    e.flags = DOMAIN_DELETED;
                    removed_domains += 1;
                }
            }

            for r in p.ranges.iter_mut().take(self.layout.ranges) {
                if r.flags & RANGE_USED != 0 && r.kind == RANGE_KIND_EXCEPTION && r.owner == t.0 {
                    r.flags = RANGE_DELETED;
                    *range_count(&mut self.range_lens, r.kind, words_ip(r.network), r.len) -= 1;
                    removed_ranges += 1;
                }
            }
            if let Some(r) = p.tenants.get(t.0 as usize) {
                if let Some(o) = p.overrides.get_mut(r.overrides as usize) {
                    *o = RuleSetRecord::EMPTY;
                }
            }
            p.tenant_index[id_slot] = INDEX_DELETED;
            if let Some(r) = p.tenants.get_mut(t.0 as usize) {
                *r = TenantRecord::default();
            }
        }
        self.domains_live -= removed_domains;
        self.ranges_live -= removed_ranges;
        self.range_order = range_order(&self.range_lens);
        self.tenants_live -= 1;
        Ok(())
    }

    fn tenant_mut(&mut self, t: TenantId) -> Result<&mut TenantRecord, Error> {
        self.store
            .parts_mut()
            .tenants
            .get_mut(t.0 as usize)
            .filter(|r| r.flags & TENANT_USED != 0)
            .ok_or(Error::UnknownTenant)
    }

    /// Marks a tenant licensed or not (5.7.708 with `scope = "unlicensed"` spares licensed ones).
    pub fn set_licensed(&mut self, t: TenantId, licensed: bool) -> Result<(), Error> {
        let r = self.tenant_mut(t)?;
        if licensed {
            r.flags |= TENANT_LICENSED;
        } else {
            r.flags &= !TENANT_LICENSED;
        }
        Ok(())
    }

    /// Gives a tenant its own rule parameters (`None`: back to the policy's defaults).
    pub fn set_overrides(&mut self, t: TenantId, rules: Option<RuleSet>) -> Result<(), Error> {
        if let Some(r) = &rules {
            r.validate()?;
        }
        let cur = self
            .view()
            .tenant(t.0)
            .ok_or(Error::UnknownTenant)?
            .overrides;
        match rules {
            None => {
                self.tenant_mut(t)?.overrides = NO_OVERRIDE;
                self.free_override(cur);
            }
            Some(r) => {
                // A free slot is all zeros (a used one has a window > 0).
                let free = (0..self.overrides_high).find(|&i| {
                    self.view()
                        .p
                        .overrides
                        .get(i as usize)
                        .is_some_and(|o| o.words == [0; RuleSetRecord::WORDS])
                });
                let slot = if cur != NO_OVERRIDE {
                    cur
                } else if let Some(i) = free {
                    i
                } else if self.overrides_high < self.cap.overrides {
                    self.overrides_high += 1;
                    self.overrides_high - 1
                } else {
                    return Err(Error::TableFull(Table::Overrides));
                };
                *self
                    .store
                    .parts_mut()
                    .overrides
                    .get_mut(slot as usize)
                    .ok_or(Error::TableFull(Table::Overrides))? = r.encode();
                self.tenant_mut(t)?.overrides = slot;
            }
        }
        Ok(())
    }

    fn free_override(&mut self, slot: u32) {
        if let Some(o) = self.store.parts_mut().overrides.get_mut(slot as usize) {
            *o = RuleSetRecord::EMPTY;
        }
    }

    /// Marks a tenant lapsed (or not) as its policy says. Unlike [`Engine::mark_lapsed`], this
    /// is policy data: a restored snapshot or a reload starts from it.
    pub fn set_policy_lapsed(&mut self, t: TenantId, lapsed: bool) -> Result<(), Error> {
        let rec = self.tenant_mut(t)?;
        if lapsed {
            rec.flags |= TENANT_LAPSED | TENANT_LAPSED_BY_POLICY;
        } else {
            rec.flags &= !(TENANT_LAPSED | TENANT_LAPSED_BY_POLICY);
        }
        Ok(())
    }

    // ----- domains -------------------------------------------------------------------------

    fn insert_domain(
        &mut self,
        t: u32,
        name: &DomainName,
        flags: u8,
        connector: u32,
    ) -> Result<(), Error> {
        let cert = flags & DOMAIN_CERTIFICATE;
        let v = self.view();
        if v.each_domain(name.as_bytes(), |_, e| {
            e.tenant == t && e.flags & DOMAIN_CERTIFICATE == cert
        }) {
            return Err(Error::DuplicateDomain);
        }
        if self.domains_live >= self.cap.domains {
            return Err(Error::TableFull(Table::Domains));
        }
        let d = v.domains();
        let n = d.len();
        if n == 0 {
            return Err(Error::TableFull(Table::Domains));
        }
        let h = hash_domain(SEED_DOMAIN, name.as_bytes());
        let mut i = reduce(h, n);
        let mut slot = None;
        for _ in 0..n {
            if d[i].flags & DOMAIN_USED == 0 {
                slot = Some(i);
                break;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        let slot = slot.ok_or(Error::TableFull(Table::Domains))?;
        self.reserve_names(name_cost(name.as_bytes().len()))?;
        let off = self.push_name(name.as_bytes(), OWNER_DOMAIN, slot as u32)?;
        self.store.parts_mut().domains[slot] = DomainEntry {
            name_off: off,
            tenant: t,
            connector,
            name_len: name.as_bytes().len() as u8,
            flags: DOMAIN_USED | flags,
            tag: tag16(h),
        };
        self.domains_live += 1;
        Ok(())
    }

    /// Adds an accepted domain to a tenant. `subdomains` opts in to subdomain matching;
    /// unvalidated domains never make a sender `registered`.
    pub fn add_domain(
        &mut self,
        t: TenantId,
        name: &str,
        subdomains: bool,
        validated: bool,
    ) -> Result<(), Error> {
        self.view().tenant(t.0).ok_or(Error::UnknownTenant)?;
        let dom = DomainName::parse(name.as_bytes())?;
        let flags = if subdomains { DOMAIN_SUBDOMAINS } else { 0 }
            | if validated { DOMAIN_VALIDATED } else { 0 };
        self.insert_domain(t.0, &dom, flags, 0)
    }

    fn domain_slot(&self, t: u32, name: &str) -> Result<usize, Error> {
        let dom = DomainName::parse(name.as_bytes())?;
        let mut slot = None;
        self.view().each_domain(dom.as_bytes(), |i, e| {
            if e.tenant == t && e.flags & DOMAIN_CERTIFICATE == 0 {
                slot = Some(i);
                true
            } else {
                false
            }
        });
        slot.ok_or(Error::NotFound)
    }

    /// Marks an accepted domain validated.
    pub fn validate_domain(&mut self, t: TenantId, name: &str) -> Result<(), Error> {
        let i = self.domain_slot(t.0, name)?;
        self.store.parts_mut().domains[i].flags |= DOMAIN_VALIDATED;
        Ok(())
    }

    /// Removes an accepted domain from a tenant.
    pub fn remove_domain(&mut self, t: TenantId, name: &str) -> Result<(), Error> {
        let i = self.domain_slot(t.0, name)?;
        self.store.parts_mut().domains[i].flags = DOMAIN_DELETED;
        self.domains_live -= 1;
        Ok(())
    }

    /// The accepted domains of a tenant: `(name, subdomains, validated)`.
    pub fn domains_of(&self, t: TenantId) -> impl Iterator<Item = (&str, bool, bool)> + '_ {
        let v = self.view();
        v.domains()
            .iter()
            .filter(move |e| {
                e.flags & DOMAIN_USED != 0 && e.flags & DOMAIN_CERTIFICATE == 0 && e.tenant == t.0
            })
            .map(move |e| {
                (
                    core::str::from_utf8(name_of(v.p.names, e.name_off, e.name_len)).unwrap_or(""),
                    e.flags & DOMAIN_SUBDOMAINS != 0,
                    e.flags & DOMAIN_VALIDATED != 0,
                )
            })
    }

    // ----- connectors ----------------------------------------------------------------------

    /// Adds a connector to a tenant: a certificate connector when `certificate` is given;
    /// add source ranges with [`Engine::add_connector_range`].
    pub fn add_connector(
        &mut self,
        t: TenantId,
        name: &str,
        certificate: Option<&str>,
        created: u64,
    ) -> Result<ConnectorId, Error> {
        self.view().tenant(t.0).ok_or(Error::UnknownTenant)?;
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(Error::InvalidName);
        }
        let index_slot = match self.view().connector_slot(t.0, name.as_bytes()) {
            Ok(_) => return Err(Error::DuplicateConnector),
            Err(Some(s)) => s,
            Err(None) => return Err(Error::TableFull(Table::Connectors)),
        };
        let cert = certificate
            .map(|c| DomainName::parse(c.as_bytes()))
            .transpose()?;
        let ci = {
            let v = self.view();
            if self.connectors_high < self.cap.connectors {
                self.connectors_high
            } else {
                (0..self.connectors_high)
                    .find(|&i| {
                        v.p.connectors
                            .get(i as usize)
                            .is_some_and(|c| c.flags & CONNECTOR_USED == 0)
                    })
                    .ok_or(Error::TableFull(Table::Connectors))?
            }
        };
        let cert_bytes = cert.as_ref().map_or(0, |c| c.as_bytes().len());
        let need = name_cost(name.len())
            + if cert.is_some() {
                2 * name_cost(cert_bytes)
            } else {
                0
            };
        self.reserve_names(need)?;
        if let Some(c) = &cert {
            if self.domains_live >= self.cap.domains {
                return Err(Error::TableFull(Table::Domains));
            }
            self.insert_domain(t.0, c, DOMAIN_CERTIFICATE, ci)?;
        }
        let name_off = self.push_name(name.as_bytes(), OWNER_CONNECTOR_NAME, ci)?;
        let (cert_off, cert_len) = match &cert {
            Some(c) => (
                self.push_name(c.as_bytes(), OWNER_CONNECTOR_CERT, ci)?,
                cert_bytes as u8,
            ),
            None => (0, 0),
        };
        let p = self.store.parts_mut();
        p.connectors[ci as usize] = ConnectorRecord {
            tenant: t.0,
            name_off,
            cert_off,
            name_len: name.len() as u8,
            cert_len,
            flags: CONNECTOR_USED,
            created,
            ..ConnectorRecord::EMPTY
        };
        p.connector_index[index_slot] = ci + 1;
        if ci == self.connectors_high {
            self.connectors_high += 1;
        }
        Ok(ConnectorId(ci))
    }

    fn remove_cert_entry(&mut self, t: u32, c: &DomainName) {
        let mut slot = None;
        self.view().each_domain(c.as_bytes(), |i, e| {
            if e.tenant == t && e.flags & DOMAIN_CERTIFICATE != 0 {
                slot = Some(i);
                true
            } else {
                false
            }
        });
        if let Some(i) = slot {
            self.store.parts_mut().domains[i].flags = DOMAIN_DELETED;
            self.domains_live -= 1;
        }
    }

    /// The connector of a tenant with this name.
    pub fn connector(&self, t: TenantId, name: &str) -> Option<ConnectorId> {
        let v = self.view();
        let slot = v.connector_slot(t.0, name.as_bytes()).ok()?;
        v.p.connector_index.get(slot).map(|i| ConnectorId(i - 1))
    }

    /// A connector's tenant, name, certificate domain and creation time.
    pub fn connector_info(&self, c: ConnectorId) -> Option<(TenantId, &str, Option<&str>, u64)> {
        let v = self.view();
        let r =
            v.p.connectors
                .get(c.0 as usize)
                .filter(|r| r.flags & CONNECTOR_USED != 0)?;
        let name = core::str::from_utf8(name_of(v.p.names, r.name_off, r.name_len)).unwrap_or("");
        let cert = (r.cert_len > 0).then(|| {
            core::str::from_utf8(name_of(v.p.names, r.cert_off, r.cert_len)).unwrap_or("")
        });
        Some((TenantId(r.tenant), name, cert, r.created))
    }

    /// Adds a source range to an IP connector. A range may belong to one connector only.
    pub fn add_connector_range(&mut self, c: ConnectorId, range: Cidr) -> Result<(), Error> {
        self.connector_info(c).ok_or(Error::NotFound)?;
        let slot = self.insert_range(RANGE_KIND_CONNECTOR, 0, range, c.0 as u64)?;
        let p = self.store.parts_mut();
        let first = p.connectors[c.0 as usize].first_range;
        p.ranges[slot].next = first;
        p.connectors[c.0 as usize].first_range = slot as u32;
        Ok(())
    }

    /// Removes a connector with its ranges and certificate entry.
    pub fn remove_connector(&mut self, c: ConnectorId) -> Result<(), Error> {
        let (t, name, cert, _) = self.connector_info(c).ok_or(Error::NotFound)?;
        let index_slot = self.view().connector_slot(t.0, name.as_bytes()).ok();
        let cert = cert.map(|s| DomainName::parse(s.as_bytes())).transpose()?;
        if let Some(d) = cert {
            self.remove_cert_entry(t.0, &d);
        }
        let mut removed = 0;
        let p = self.store.parts_mut();
        let mut next = p.connectors[c.0 as usize].first_range;
        let mut left = self.layout.ranges;
        while let Some(r) = p.ranges.get_mut(next as usize) {
            if left == 0 {
                break;
            }
            left -= 1;
            if r.flags & RANGE_USED != 0 && r.kind == RANGE_KIND_CONNECTOR {
                r.flags = RANGE_DELETED;
                *range_count(&mut self.range_lens, r.kind, words_ip(r.network), r.len) -= 1;
                removed += 1;
            }
            next = r.next;
        }
        p.connectors[c.0 as usize] = ConnectorRecord::EMPTY;
        if let Some(s) = index_slot {
            p.connector_index[s] = INDEX_DELETED;
        }
        self.ranges_live -= removed;
        self.range_order = range_order(&self.range_lens);
        Ok(())
    }

    // ----- ranges --------------------------------------------------------------------------

    fn insert_range(
        &mut self,
        kind: u8,
        owner: u32,
        range: Cidr,
        value: u64,
    ) -> Result<usize, Error> {
        let range = checked_range(range)?;
        let slot = match self
            .view()
            .range_slot(kind, owner, range.network, range.len)
        {
            Ok(i) => {
                if kind == RANGE_KIND_EXCEPTION {
                    // Granting again updates the expiry.
                    self.store.parts_mut().ranges[i].value = value;
                    return Ok(i);
                }
                if kind == RANGE_KIND_LOW_REPUTATION {
                    return Ok(i);
                }
                return Err(Error::DuplicateDomain);
            }
            Err(Some(i)) => i,
            Err(None) => return Err(Error::TableFull(Table::Ranges)),
        };
        if self.ranges_live >= self.cap.ranges {
            return Err(Error::TableFull(Table::Ranges));
        }
        self.store.parts_mut().ranges[slot] = RangeEntry {
            network: ip_words(range.network),
            owner,
            kind,
            len: range.len,
            flags: RANGE_USED,
            value,
            ..RangeEntry::EMPTY
        };
        let count = range_count(&mut self.range_lens, kind, range.network, range.len);
        *count += 1;
        if *count == 1 {
            self.range_order = range_order(&self.range_lens);
        }
        self.ranges_live += 1;
        Ok(slot)
    }

    fn delete_range(&mut self, kind: u8, owner: u32, range: Cidr) -> Result<(), Error> {
        let range = checked_range(range)?;
        let i = self
            .view()
            .range_slot(kind, owner, range.network, range.len)
            .map_err(|_| Error::NotFound)?;
        self.store.parts_mut().ranges[i].flags = RANGE_DELETED;
        let count = range_count(&mut self.range_lens, kind, range.network, range.len);
        *count -= 1;
        if *count == 0 {
            self.range_order = range_order(&self.range_lens);
        }
        self.ranges_live -= 1;
        Ok(())
    }

    /// Puts a range on the low-reputation list (adding it twice is harmless).
    pub fn add_low_reputation(&mut self, range: Cidr) -> Result<(), Error> {
        self.insert_range(RANGE_KIND_LOW_REPUTATION, 0, range, 0)
            .map(|_| ())
    }

    /// Takes a range off the low-reputation list.
    pub fn remove_low_reputation(&mut self, range: Cidr) -> Result<(), Error> {
        self.delete_range(RANGE_KIND_LOW_REPUTATION, 0, range)
    }

    /// Whether an address is on the low-reputation list.
    pub fn is_low_reputation(&self, ip: IpAddr) -> bool {
        self.view()
            .find_range(RANGE_KIND_LOW_REPUTATION, 0, addr_bits(ip), |_| true)
            .is_some()
    }

    /// Grants a tenant an exception to the low-reputation rule for a range until `expires`
    /// (`u64::MAX`: no expiry). Granting the same range again sets the new expiry.
    pub fn grant_exception(&mut self, t: TenantId, range: Cidr, expires: u64) -> Result<(), Error> {
        self.view().tenant(t.0).ok_or(Error::UnknownTenant)?;
        self.insert_range(RANGE_KIND_EXCEPTION, t.0, range, expires)
            .map(|_| ())
    }

    /// Revokes a tenant's exception for exactly this range.
    pub fn revoke_exception(&mut self, t: TenantId, range: Cidr) -> Result<(), Error> {
        self.delete_range(RANGE_KIND_EXCEPTION, t.0, range)
    }

    /// The exceptions of a tenant: `(range, expires)`.
    pub fn exceptions_of(&self, t: TenantId) -> impl Iterator<Item = (Cidr, u64)> + '_ {
        self.view()
            .ranges()
            .iter()
            .filter(move |r| {
                r.flags & RANGE_USED != 0 && r.kind == RANGE_KIND_EXCEPTION && r.owner == t.0
            })
            .map(|r| {
                (
                    Cidr {
                        network: words_ip(r.network),
                        len: r.len,
                    },
                    r.value,
                )
            })
    }

    // ----- decisions -----------------------------------------------------------------------

    /// Decides many messages, like [`Engine::check`] on each in order, writing `out[i]` for
    /// `msgs[i]`; returns how many were decided (`min(msgs.len(), out.len())`). Faster per
    /// message than single calls on large tables: each group of messages first touches the
    /// slots its lookups will need (tenant index, domain, low-reputation probes, then tenant
    /// records and counters), so their cache misses overlap instead of following one another.
    /// A caller that builds its messages as it goes (from columns, say) can use
    /// [`Engine::check_batch_with`] instead, which needs no buffer of messages or decisions.
    pub fn check_batch(&self, now: u64, msgs: &[Message<'_>], out: &mut [Decision]) -> usize {
        self.check_groups(|_| now, msgs, out)
    }

    /// [`Engine::check_batch`] with a time per message: `msgs[i]` is decided at `now[i]`.
    /// Decides `min(now.len(), msgs.len(), out.len())` messages and returns that count.
    pub fn check_batch_at(&self, now: &[u64], msgs: &[Message<'_>], out: &mut [Decision]) -> usize {
        let n = now.len().min(msgs.len());
        self.check_groups(|i| now[i], &msgs[..n], out)
    }

    /// Decides `n` messages like [`Engine::check_batch_at`], with the caller building them
    /// and taking their decisions, so neither needs a buffer of the caller's: the messages
    /// are held a group at a time (16) on the stack.
    ///
    /// For each group, `fill(start, now, msgs)` sets the times and messages
    /// `start..start + msgs.len()` (`now[k]`, `msgs[k]` for message `start + k`); then the group
    /// is decided and `write(i, &decision)` is called for each message `i` of it, in order.
    /// The slices keep what the previous `fill` left in them (before the first: time 0 and
    /// `template`), so fields that are the same for every message (given by `template`, or
    /// set by the first `fill`) need not be set again.
    ///
    /// A `fill` that returns an error stops the batch: the error is returned, and only the
    /// messages of the earlier groups were decided (and written). Otherwise returns `n`.
    pub fn check_batch_with<'m, E>(
        &self,
        n: usize,
        template: Message<'m>,
        mut fill: impl FnMut(usize, &mut [u64], &mut [Message<'m>]) -> Result<(), E>,
        mut write: impl FnMut(usize, &Decision),
    ) -> Result<usize, E> {
        let v = self.view();
        let mut now = [0u64; GROUP];
        let mut msgs = [template; GROUP];
        let mut start = 0;
        while start < n {
            let len = (n - start).min(GROUP);
            fill(start, &mut now[..len], &mut msgs[..len])?;
            self.decide_group(&v, |k| now[k], &msgs[..len], |k, d| write(start + k, d));
            start += len;
        }
        Ok(n)
    }

    fn check_groups(
        &self,
        now: impl Fn(usize) -> u64,
        msgs: &[Message<'_>],
        out: &mut [Decision],
    ) -> usize {
        let n = msgs.len().min(out.len());
        let v = self.view();
        for (g, (msgs, out)) in msgs[..n]
            .chunks(GROUP)
            .zip(out[..n].chunks_mut(GROUP))
            .enumerate()
        {
            let start = g * GROUP;
            self.decide_group(&v, |k| now(start + k), msgs, |k, d| out[k] = *d);
        }
        n
    }

    /// Decides a group of at most [`GROUP`] messages, `msgs[k]` at `now(k)`, passing each
    /// decision to `write(k, ..)`: first every lookup's first slot is touched (parsing each
    /// sender once), then what those slots point at, so that the group's cache misses overlap;
    /// then each message is decided.
    #[inline(always)]
    fn decide_group(
        &self,
        v: &View<'_>,
        now: impl Fn(usize) -> u64,
        msgs: &[Message<'_>],
        mut write: impl FnMut(usize, &Decision),
    ) {
        let msgs = &msgs[..msgs.len().min(GROUP)];
        let mut sink = 0u64;
        // Stage 1: the first slot of every hash lookup.
        let mut senders = [Ok(Sender::Null); GROUP];
        for (s, m) in senders.iter_mut().zip(msgs) {
            *s = parse_sender(m.mail_from);
            sink ^= v.touch_first(m, *s);
        }
        // Stage 2: what those slots point at.
        for m in msgs {
            sink ^= v.touch_second(m, &self.cap);
        }
        core::hint::black_box(sink);
        for (k, (m, s)) in msgs.iter().zip(&senders).enumerate() {
            write(k, &self.decide(v, now(k), m, *s));
        }
    }

    /// Decides one message. Counts nothing.
    pub fn check(&self, now: u64, msg: &Message<'_>) -> Decision {
        self.decide(&self.view(), now, msg, parse_sender(msg.mail_from))
    }

    /// [`Engine::check`] over the view `v` with the message's sender parsed.
    fn decide(
        &self,
        v: &View<'_>,
        now: u64,
        msg: &Message<'_>,
        sender: Result<Sender<'_>, Error>,
    ) -> Decision {
        let mut d = Decision::new();
        let Ok(sender) = sender else {
            d.reason = Some(Reason::InvalidSender);
            return d;
        };
        let Some(r) = v.resolve(msg, &sender) else {
            d.reason = Some(Reason::Unattributed);
            d.sender_class = Some(if sender == Sender::Null {
                SenderClass::Null
            } else {
                SenderClass::Unregistered
            });
            return d;
        };
        d.tenant = Some(TenantId(r.tenant));
        d.attribution = Some(r.attribution);
        d.sender_class = Some(r.class);
        let rec = r.rec;
        let rules = v.rules_for(rec, &self.rules);
        d.counters = v.counters(r.tenant, rec, &rules, &self.cap, now);

        let refuse =
            |d: &mut Decision, reason: Reason, mode: Mode, end: Option<BlockEnd>| -> bool {
                if mode == Mode::Monitor {
                    if d.monitored.is_none() {
                        d.monitored = Some(reason);
                        d.block_ends = end;
                    }
                    false
                } else {
                    d.reason = Some(reason);
                    d.block_ends = end;
                    true
                }
            };

        // 3. Tenant blocked or lapsed.
        if lapsed_now(rec, now) {
            let end = if rec.flags & TENANT_LAPSED != 0 {
                BlockEnd::OnRelease
            } else {
                BlockEnd::At(rec.active_at)
            };
            if refuse(
                &mut d,
                Reason::TenantLapsed,
                rules.threshold.mode,
                Some(end),
            ) {
                return d;
            }
        }
        let th = &rec.rules[0];
        if block_active(th, now)
            && refuse(
                &mut d,
                Reason::TenantThreshold,
                rules.threshold.mode,
                Some(block_end(th)),
            )
        {
            return d;
        }
        // 4. Low-reputation IP without a live exception.
        if let Some(ip) = msg.client_ip {
            let lr = &rules.low_reputation;
            let in_scope = lr.scope == Scope::All || rec.flags & TENANT_LICENSED == 0;
            if in_scope {
                let bits = addr_bits(ip);
                if v.find_range(RANGE_KIND_LOW_REPUTATION, 0, bits, |_| true)
                    .is_some()
                    && v.find_range(RANGE_KIND_EXCEPTION, r.tenant, bits, |e| e.value > now)
                        .is_none()
                    && refuse(&mut d, Reason::LowReputationIp, lr.mode, None)
                {
                    return d;
                }
            }
        }
        // 5. Unregistered sender while the unregistered-domain block is active.
        let un = &rec.rules[1];
        if r.class == SenderClass::Unregistered
            && block_active(un, now)
            && refuse(
                &mut d,
                Reason::UnregisteredDomain,
                rules.unregistered.mode,
                Some(block_end(un)),
            )
        {
            return d;
        }
        d
    }

    /// Counts a message that was accepted and scanned, with the content filter's verdict, and
    /// trips blocks. Returns the events this caused. Errors: the sender cannot be parsed
    /// ([`Error::InvalidAddress`]) or the message belongs to no tenant ([`Error::UnknownTenant`]).
    pub fn record(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        verdict: Verdict,
    ) -> Result<Events, Error> {
        let (t, class) = self.attribute(msg)?;
        Ok(self.count_resolved(now, t, class, msg.recipients, verdict))
    }

    /// The tenant and sender class of a message, or the error [`Engine::record`] gives for it:
    /// the sender cannot be parsed ([`Error::InvalidAddress`]) or the message belongs to no
    /// tenant ([`Error::UnknownTenant`]).
    fn attribute(&self, msg: &Message<'_>) -> Result<(u32, SenderClass), Error> {
        let sender = parse_sender(msg.mail_from)?;
        let r = self.view().resolve(msg, &sender);
        r.map(|r| (r.tenant, r.class)).ok_or(Error::UnknownTenant)
    }

    /// The counting half of [`Engine::record`] for a message already resolved to tenant `t`
    /// and sender class `class`.
    fn count_resolved(
        &mut self,
        now: u64,
        t: u32,
        class: SenderClass,
        recipients: u32,
        verdict: Verdict,
    ) -> Events {
        let mut events = Events::new();
        self.expire_tenant(t, now, &mut events);
        self.count(t, now, class, verdict, recipients.max(1));
        self.test_rules(t, now, &mut events);
        events
    }

    /// The tenant of a message, or the error [`Engine::record`] gives for it (see
    /// [`Engine::attribute`]).
    #[cfg(feature = "shared")]
    pub(crate) fn tenant_of(&self, msg: &Message<'_>) -> Result<u32, Error> {
        self.attribute(msg).map(|(t, _)| t)
    }

    /// [`Engine::record`] for a message `d` (its decision by [`Engine::check`] on the current
    /// tables) accepted: counts it for the tenant and sender class `check` resolved, without
    /// parsing and resolving it again. Counts nothing for a refused message.
    pub(crate) fn record_accepted(
        &mut self,
        now: u64,
        d: &Decision,
        msg: &Message<'_>,
        verdict: Verdict,
    ) -> Events {
        match (d.accepted(), d.tenant, d.sender_class) {
            (true, Some(t), Some(class)) => {
                self.count_resolved(now, t.0, class, msg.recipients, verdict)
            }
            _ => Events::new(),
        }
    }

    /// `check`, then `record` when the message is accepted (monitor-mode refusals count as
    /// accepted). Returns the decision (made before counting) and the events.
    pub fn evaluate(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        verdict: Verdict,
    ) -> (Decision, Events) {
        let d = self.check(now, msg);
        let events = self.record_accepted(now, &d, msg, verdict);
        (d, events)
    }

    fn count(&mut self, t: u32, now: u64, class: SenderClass, verdict: Verdict, recipients: u32) {
        let v = self.view();
        let Some(rec) = v.tenant(t) else { return };
        let rules = v.rules_for(rec, &self.rules);
        let divs = v.slot_divs(rec, &rules, &self.cap);
        let cap = self.cap;
        let stride = cap.counter_stride();
        let ts = cap.threshold_cells();
        let p = self.store.parts_mut();
        let Some(rec) = p.tenants.get_mut(t as usize) else {
            return;
        };
        let Some(cells) = p
            .counters
            .get_mut(t as usize * stride..(t as usize + 1) * stride)
        else {
            return;
        };
        let (th, un) = cells.split_at_mut(ts);
        let n = |c: CountMode| {
            if c == CountMode::Recipients {
                recipients
            } else {
                1
            }
        };

        let e = divs[0].div(now);
        window::advance(th, 2, &mut rec.rules[0].head, e);
        let k = n(rules.threshold.count);
        window::add(th, 2, rec.rules[0].head, 0, k);
        if rules.threshold.suspicious.contains(verdict) {
            window::add(th, 2, rec.rules[0].head, 1, k);
        }
        let e = divs[1].div(now);
        window::advance(un, 1, &mut rec.rules[1].head, e);
        if class == SenderClass::Unregistered {
            window::add(un, 1, rec.rules[1].head, 0, n(rules.unregistered.count));
        }
    }

    fn event(&self, t: u32, now: u64, kind: EventKind, rule: Rule) -> Event {
        let v = self.view();
        let (c, monitor, until) = match v.tenant(t) {
            Some(rec) => {
                let rules = v.rules_for(rec, &self.rules);
                let mode = match rule {
                    Rule::TenantThreshold => rules.threshold.mode,
                    Rule::UnregisteredDomain => rules.unregistered.mode,
                    Rule::LowReputationIp => rules.low_reputation.mode,
                };
                let until = match (kind, rule) {
                    (EventKind::Blocked, Rule::TenantThreshold | Rule::UnregisteredDomain) => {
                        match block_end(&rec.rules[rule as usize]) {
                            BlockEnd::OnRelease => u64::MAX,
                            BlockEnd::At(u) => u,
                        }
                    }
                    (EventKind::Reactivated, _) => rec.active_at,
                    _ => 0,
                };
                (v.counters(t, rec, &rules, &self.cap, now), mode, until)
            }
            None => (Counters::default(), Mode::Enforce, 0),
        };
        Event {
            time: now,
            until,
            tenant: t,
            total: c.total,
            suspicious: c.suspicious,
            unregistered: c.unregistered,
            kind: kind as u8,
            rule: rule as u8,
            monitor: (monitor == Mode::Monitor) as u8,
            reserved: 0,
            reserved2: 0,
        }
    }

    fn emit(&mut self, ev: Event, out: &mut Events) {
        let depth = self.cap.audit_depth as usize;
        let p = self.store.parts_mut();
        if let Some(rec) = p.tenants.get_mut(ev.tenant as usize) {
            let pos = ev.tenant as usize * depth + rec.audit_written as usize % depth;
            if let Some(slot) = p.audit.get_mut(pos) {
                *slot = ev;
            }
            rec.audit_written = rec.audit_written.wrapping_add(1);
        }
        // An Events vector holds more than one call can produce; a full one drops nothing
        // from the audit trail.
        let _ = out.push(ev);
    }

    fn clear_window(&mut self, t: u32, rule: usize) {
        let cap = self.cap;
        let stride = cap.counter_stride();
        let ts = cap.threshold_cells();
        let p = self.store.parts_mut();
        if let Some(cells) = p
            .counters
            .get_mut(t as usize * stride..(t as usize + 1) * stride)
        {
            let (th, un) = cells.split_at_mut(ts);
            if rule == 0 {
                th.fill(0);
            } else {
                un.fill(0);
            }
        }
    }

    fn expire_tenant(&mut self, t: u32, now: u64, events: &mut Events) {
        for (i, rule) in [
            (0usize, Rule::TenantThreshold),
            (1, Rule::UnregisteredDomain),
        ] {
            let expired = {
                let Some(rec) = self.view().tenant(t) else {
                    return;
                };
                let s = &rec.rules[i];
                s.flags & RULE_BLOCKED != 0 && s.flags & RULE_MANUAL == 0 && now >= s.until
            };
            if expired {
                // A block that runs out clears its window (otherwise it would trip again on the
                // next message), without a grace period: nobody remediated anything.
                self.clear_window(t, i);
                if let Ok(rec) = self.tenant_mut(TenantId(t)) {
                    rec.rules[i].flags &= !(RULE_BLOCKED | RULE_MANUAL | RULE_WARNED);
                }
                let ev = self.event(t, now, EventKind::Expired, rule);
                self.emit(ev, events);
            }
        }
    }

    fn test_rules(&mut self, t: u32, now: u64, events: &mut Events) {
        let v = self.view();
        let Some(rec) = v.tenant(t) else { return };
        let rules = v.rules_for(rec, &self.rules);
        let c = v.counters(t, rec, &rules, &self.cap, now);
        let th = rec.rules[0];
        let un = rec.rules[1];

        // 5.7.705
        if th.flags & RULE_BLOCKED == 0 && now >= th.grace_until {
            let p = &rules.threshold;
            let ratio = |ppm: u32| {
                (c.suspicious as u64) * RATIO_ONE as u64 >= (ppm as u64) * (c.total as u64)
            };
            if c.total >= p.min_messages
                && c.suspicious >= p.min_suspicious
                && ratio(p.max_ratio_ppm)
            {
                self.block(t, 0, now, p.block);
                let ev = self.event(t, now, EventKind::Blocked, Rule::TenantThreshold);
                self.emit(ev, events);
            } else if c.total >= p.min_messages && c.suspicious > 0 && ratio(p.warn_ratio_ppm) {
                if th.flags & RULE_WARNED == 0 {
                    if let Ok(r) = self.tenant_mut(TenantId(t)) {
                        r.rules[0].flags |= RULE_WARNED;
                    }
                    let ev = self.event(t, now, EventKind::Warned, Rule::TenantThreshold);
                    self.emit(ev, events);
                }
            } else if th.flags & RULE_WARNED != 0 {
                // Back under the warning ratio: the next crossing warns again.
                if let Ok(r) = self.tenant_mut(TenantId(t)) {
                    r.rules[0].flags &= !RULE_WARNED;
                }
            }
        }
        // 5.7.750
        if un.flags & RULE_BLOCKED == 0
            && now >= un.grace_until
            && c.unregistered >= rules.unregistered.limit
        {
            self.block(t, 1, now, rules.unregistered.block);
            let ev = self.event(t, now, EventKind::Blocked, Rule::UnregisteredDomain);
            self.emit(ev, events);
        }
    }

    fn block(&mut self, t: u32, i: usize, now: u64, how: BlockDuration) {
        if let Ok(r) = self.tenant_mut(TenantId(t)) {
            let s = &mut r.rules[i];
            s.flags |= RULE_BLOCKED;
            s.blocked_at = now;
            match how {
                BlockDuration::Manual => {
                    s.flags |= RULE_MANUAL;
                    s.until = 0;
                }
                BlockDuration::Seconds(d) => {
                    s.flags &= !RULE_MANUAL;
                    s.until = now.saturating_add(d);
                }
            }
        }
    }

    // ----- operator actions ----------------------------------------------------------------

    /// Releases a tenant's block of `rule` (or of both windowed rules with `None`): clears
    /// that rule's window and starts its grace period. A rule that is not blocked is left
    /// alone. Returns a `Released` event per block lifted.
    pub fn release(&mut self, t: TenantId, rule: Option<Rule>, now: u64) -> Result<Events, Error> {
        let v = self.view();
        let rec = v.tenant(t.0).ok_or(Error::UnknownTenant)?;
        let rules = v.rules_for(rec, &self.rules);
        let mut events = Events::new();
        self.expire_tenant(t.0, now, &mut events);
        for (i, r, grace) in [
            (0usize, Rule::TenantThreshold, rules.threshold.grace),
            (1, Rule::UnregisteredDomain, rules.unregistered.grace),
        ] {
            if rule.is_some_and(|x| x != r) {
                continue;
            }
            let blocked = self
                .view()
                .tenant(t.0)
                .is_some_and(|rec| rec.rules[i].flags & RULE_BLOCKED != 0);
            if !blocked {
                continue;
            }
            self.clear_window(t.0, i);
            let rec = self.tenant_mut(t)?;
            let s = &mut rec.rules[i];
            s.flags &= !(RULE_BLOCKED | RULE_MANUAL | RULE_WARNED);
            s.grace_until = now.saturating_add(grace);
            let ev = self.event(t.0, now, EventKind::Released, r);
            self.emit(ev, &mut events);
        }
        Ok(events)
    }

    /// Marks a tenant's subscription lapsed: all its mail is refused with 5.7.705.
    pub fn mark_lapsed(&mut self, t: TenantId, now: u64) -> Result<Events, Error> {
        let rec = self.tenant_mut(t)?;
        let mut events = Events::new();
        if rec.flags & TENANT_LAPSED == 0 {
            rec.flags |= TENANT_LAPSED;
            rec.lapsed_at = now;
            let ev = self.event(t.0, now, EventKind::Lapsed, Rule::TenantThreshold);
            self.emit(ev, &mut events);
        }
        Ok(events)
    }

    /// Marks a lapsed tenant active again; mail resumes after the rule's `renewal_delay`.
    pub fn mark_active(&mut self, t: TenantId, now: u64) -> Result<Events, Error> {
        let delay = self.tenant_rules(t)?.threshold.renewal_delay;
        let rec = self.tenant_mut(t)?;
        let mut events = Events::new();
        if rec.flags & TENANT_LAPSED != 0 {
            rec.flags &= !(TENANT_LAPSED | TENANT_LAPSED_BY_POLICY);
            rec.active_at = now.saturating_add(delay);
            let ev = self.event(t.0, now, EventKind::Reactivated, Rule::TenantThreshold);
            self.emit(ev, &mut events);
        }
        Ok(events)
    }

    /// Expires every timed block that has run out, calling `on_event` for each `Expired`
    /// event. (`record` and `release` also expire the blocks of the tenant they touch.)
    pub fn expire(&mut self, now: u64, mut on_event: impl FnMut(&Event)) {
        for t in 0..self.tenants_high {
            let mut events = Events::new();
            self.expire_tenant(t, now, &mut events);
            events.iter().for_each(&mut on_event);
        }
    }

    /// A tenant's state at `now`.
    pub fn status(&self, t: TenantId, now: u64) -> Result<TenantStatus, Error> {
        let v = self.view();
        let rec = v.tenant(t.0).ok_or(Error::UnknownTenant)?;
        let rules = v.rules_for(rec, &self.rules);
        let rs = |s: &RuleState, mode: Mode| RuleStatus {
            blocked: block_active(s, now),
            blocked_at: (s.flags & RULE_BLOCKED != 0).then_some(s.blocked_at),
            block_ends: block_active(s, now).then(|| block_end(s)),
            grace_until: (now < s.grace_until).then_some(s.grace_until),
            warned: s.flags & RULE_WARNED != 0,
            mode,
        };
        Ok(TenantStatus {
            tenant: t,
            licensed: rec.flags & TENANT_LICENSED != 0,
            lapsed: lapsed_now(rec, now),
            threshold: rs(&rec.rules[0], rules.threshold.mode),
            unregistered: rs(&rec.rules[1], rules.unregistered.mode),
            counters: v.counters(t.0, rec, &rules, &self.cap, now),
        })
    }

    /// Every tenant refused at `now` (or that would be, in monitor mode), one entry per reason.
    pub fn restricted(&self, now: u64) -> impl Iterator<Item = Restriction> + '_ {
        let v = self.view();
        let global = &self.rules;
        (0..self.tenants_high).flat_map(move |t| {
            let mut out: heapless::Vec<Restriction, 3> = heapless::Vec::new();
            if let Some(rec) = v.tenant(t) {
                let rules = v.rules_for(rec, global);
                let monitor705 = rules.threshold.mode == Mode::Monitor;
                if lapsed_now(rec, now) {
                    let ends = if rec.flags & TENANT_LAPSED != 0 {
                        BlockEnd::OnRelease
                    } else {
                        BlockEnd::At(rec.active_at)
                    };
                    let _ = out.push(Restriction {
                        tenant: TenantId(t),
                        reason: Reason::TenantLapsed,
                        since: rec.lapsed_at,
                        ends,
                        monitor: monitor705,
                    });
                }
                for (i, reason, monitor) in [
                    (0usize, Reason::TenantThreshold, monitor705),
                    (
                        1,
                        Reason::UnregisteredDomain,
                        rules.unregistered.mode == Mode::Monitor,
                    ),
                ] {
                    let s = &rec.rules[i];
                    if block_active(s, now) {
                        let _ = out.push(Restriction {
                            tenant: TenantId(t),
                            reason,
                            since: s.blocked_at,
                            ends: block_end(s),
                            monitor,
                        });
                    }
                }
            }
            out
        })
    }

    /// Connectors worth an operator's look at `now`: created recently, certificate domain
    /// not an accepted domain of the tenant, or a source range that overlaps a prefix of the
    /// low-reputation list.
    pub fn suspicious_connectors(
        &self,
        now: u64,
    ) -> impl Iterator<Item = SuspiciousConnector> + '_ {
        let v = self.view();
        let recent = self.recent_connector;
        (0..self.connectors_high).filter_map(move |ci| {
            let c =
                v.p.connectors
                    .get(ci as usize)
                    .filter(|c| c.flags & CONNECTOR_USED != 0)?;
            let mut why = 0u8;
            if c.created != 0 && now >= c.created && now - c.created < recent {
                why |= suspicion::RECENT;
            }
            if c.cert_len > 0 {
                let accepted =
                    v.is_registered(c.tenant, name_of(v.p.names, c.cert_off, c.cert_len));
                if !accepted {
                    why |= suspicion::CERTIFICATE_NOT_ACCEPTED;
                }
            }
            let lowrep = v.connector_ranges(c).any(|r| {
                r.flags & RANGE_USED != 0 && v.overlaps_low_reputation(words_ip(r.network), r.len)
            });
            if lowrep {
                why |= suspicion::LOW_REPUTATION_RANGE;
            }
            (why != 0).then_some(SuspiciousConnector {
                connector: ConnectorId(ci),
                tenant: TenantId(c.tenant),
                why,
            })
        })
    }

    /// A tenant's audit trail, oldest first (at most `audit_depth` entries).
    pub fn audit(&self, t: TenantId) -> impl Iterator<Item = &Event> + '_ {
        let v = self.view();
        let depth = self.cap.audit_depth as usize;
        let (written, base) = match v.tenant(t.0) {
            Some(r) => (r.audit_written as usize, t.0 as usize * depth),
            None => (0, 0),
        };
        let n = written.min(depth);
        let start = written - n;
        (start..written).filter_map(move |i| v.p.audit.get(base + i % depth))
    }

    // ----- state transfer (reload, snapshots) ---------------------------------------------

    pub(crate) fn tenants_high(&self) -> u32 {
        self.tenants_high
    }

    pub(crate) fn state_of(&self, t: u32) -> Option<TenantState<'_>> {
        let v = self.view();
        let rec = v.tenant(t)?;
        let rules = v.rules_for(rec, &self.rules);
        let (th, un) = v.counter_cells(t, &self.cap);
        let depth = self.cap.audit_depth as usize;
        let audit =
            v.p.audit
                .get(t as usize * depth..(t as usize + 1) * depth)
                .unwrap_or(&[]);
        Some(TenantState {
            id: v.tenant_id(t),
            // Only a lapse set at run time travels: policy lapses come from the policy.
            flags: if rec.flags & TENANT_LAPSED != 0 && rec.flags & TENANT_LAPSED_BY_POLICY == 0 {
                TENANT_LAPSED
            } else {
                0
            },
            active_at: rec.active_at,
            lapsed_at: rec.lapsed_at,
            rules: rec.rules,
            slot_lens: [
                window::slot_len(rules.threshold.window, self.cap.threshold_slots as usize),
                window::slot_len(
                    rules.unregistered.window,
                    self.cap.unregistered_slots as usize,
                ),
            ],
            threshold: Cells::Words(th),
            unregistered: Cells::Words(un),
            audit_written: rec.audit_written,
            audit: AuditCells::Events(audit),
        })
    }

    /// Moves every counter, block, grace period, lapsed flag and audit entry of the tenants of
    /// `old` into the tenants of the same id in `self`. Counters survive any change of limits;
    /// when a window's geometry changed, the old window's totals land in the current slot.
    /// Returns how many tenants of `old` have no counterpart here.
    pub fn adopt_state<T: Storage>(&mut self, old: &Engine<T>) -> u32 {
        let mut missing = 0;
        for t in 0..old.tenants_high() {
            if let Some(st) = old.state_of(t) {
                if self.import_state(&st).is_err() {
                    missing += 1;
                }
            }
        }
        missing
    }

    /// Clears every tenant's counters, blocks, grace periods and audit trail.
    pub(crate) fn reset_state(&mut self) {
        let p = self.store.parts_mut();
        for r in p.tenants.iter_mut() {
            r.rules = [RuleState::default(); 2];
            r.audit_written = 0;
            r.active_at = 0;
            // Back to what the policy says.
            if r.flags & TENANT_LAPSED_BY_POLICY == 0 {
                r.flags &= !TENANT_LAPSED;
                r.lapsed_at = 0;
            }
        }
        p.counters.fill(0);
        p.audit.fill(Event::default());
    }

    pub(crate) fn import_state(&mut self, st: &TenantState<'_>) -> Result<(), Error> {
        let id = core::str::from_utf8(st.id).map_err(|_| Error::InvalidTenantId)?;
        let t = self.tenant(id).ok_or(Error::UnknownTenant)?;
        let rules = self.tenant_rules(t)?;
        let cap = self.cap;
        let depth = cap.audit_depth as usize;
        let stride = cap.counter_stride();
        let ts = cap.threshold_cells();
        let new_lens = [
            window::slot_len(rules.threshold.window, cap.threshold_slots as usize),
            window::slot_len(rules.unregistered.window, cap.unregistered_slots as usize),
        ];
        let p = self.store.parts_mut();
        let rec = p
            .tenants
            .get_mut(t.0 as usize)
            .ok_or(Error::UnknownTenant)?;
        // Lapsed is also policy data: lapsed in the policy or in the state means lapsed.
        if st.flags & TENANT_LAPSED != 0 {
            rec.flags |= TENANT_LAPSED;
            rec.lapsed_at = st.lapsed_at;
        }
        rec.active_at = st.active_at;
        let cells = p
            .counters
            .get_mut(t.0 as usize * stride..(t.0 as usize + 1) * stride)
            .ok_or(Error::UnknownTenant)?;
        let (th, un) = cells.split_at_mut(ts);
        for (i, (dst, src, width)) in [(th, st.threshold, 2usize), (un, st.unregistered, 1)]
            .into_iter()
            .enumerate()
        {
            let mut s = st.rules[i];
            if dst.len() == src.len() && new_lens[i] == st.slot_lens[i] {
                for (k, c) in dst.iter_mut().enumerate() {
                    *c = src.get(k);
                }
                // Totals are derived: never trust them from outside.
                window::recount(dst, width);
            } else {
                // Geometry changed: keep the old window's totals in the current slot.
                dst.fill(0);
                let head = s.head.saturating_mul(st.slot_lens[i]) / new_lens[i].max(1);
                for col in 0..width {
                    let total = src.sum(width, s.head, col);
                    window::add(dst, width, head, col, total);
                }
                s.head = head;
            }
            rec.rules[i] = s;
        }
        let audit = p
            .audit
            .get_mut(t.0 as usize * depth..(t.0 as usize + 1) * depth)
            .ok_or(Error::UnknownTenant)?;
        audit.fill(Event::default());
        let n = (st.audit_written as usize).min(st.audit.len()).min(depth);
        let old_depth = st.audit.len().max(1);
        for (k, slot) in audit.iter_mut().take(n).enumerate() {
            let src_i = (st.audit_written as usize - n + k) % old_depth;
            if let Some(ev) = st.audit.get(src_i) {
                *slot = Event { tenant: t.0, ..ev };
            }
        }
        rec.audit_written = n as u32;
        Ok(())
    }
}

/// Counter cells, borrowed from an engine or still encoded in a snapshot.
#[derive(Clone, Copy)]
pub(crate) enum Cells<'a> {
    Words(&'a [u32]),
    Bytes(&'a [u8]),
}

impl Cells<'_> {
    pub fn len(&self) -> usize {
        match self {
            Cells::Words(w) => w.len(),
            Cells::Bytes(b) => b.len() / 4,
        }
    }
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Cells::Words(w) => w.get(i).copied().unwrap_or(0),
            Cells::Bytes(b) => match b.get(i * 4..i * 4 + 4) {
                Some(x) => u32::from_le_bytes([x[0], x[1], x[2], x[3]]),
                None => 0,
            },
        }
    }
    /// Sum of column `col` over the slots inside the window at the ring's own head.
    fn sum(&self, width: usize, head: u64, col: usize) -> u32 {
        // The last group holds the running totals, not a slot.
        let slots = (self.len() / width.max(1)).saturating_sub(1) as u64;
        let mut total = 0u32;
        for k in 0..slots {
            let Some(epoch) = head.checked_sub(k) else {
                break;
            };
            total = total.saturating_add(self.get((epoch % slots) as usize * width + col));
        }
        total
    }
}

/// Audit entries, borrowed from an engine or still encoded in a snapshot.
#[derive(Clone, Copy)]
pub(crate) enum AuditCells<'a> {
    Events(&'a [Event]),
    Bytes(&'a [u8]),
}

impl AuditCells<'_> {
    pub fn len(&self) -> usize {
        match self {
            AuditCells::Events(e) => e.len(),
            AuditCells::Bytes(b) => b.len() / crate::snapshot::EVENT_BYTES,
        }
    }
    pub fn get(&self, i: usize) -> Option<Event> {
        match self {
            AuditCells::Events(e) => e.get(i).copied(),
            AuditCells::Bytes(b) => {
                let n = crate::snapshot::EVENT_BYTES;
                crate::snapshot::decode_event(b.get(i * n..i * n + n)?)
            }
        }
    }
}

/// One tenant's state, borrowed from an engine or read from a snapshot.
pub(crate) struct TenantState<'a> {
    pub id: &'a [u8],
    pub flags: u8,
    pub active_at: u64,
    pub lapsed_at: u64,
    pub rules: [RuleState; 2],
    pub slot_lens: [u64; 2],
    pub threshold: Cells<'a>,
    pub unregistered: Cells<'a>,
    pub audit_written: u32,
    pub audit: AuditCells<'a>,
}

/// The engine's bookkeeping beside its tables: capacity, default rules and fill levels.
/// Together with the tables it is the whole engine, so [`Engine::from_parts`] can reopen
/// tables that already hold data (a file mapped by another process, for instance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Capacity the tables were laid out for.
    pub capacity: Capacity,
    /// The policy's default rules.
    pub rules: RuleSet,
    /// Recent-connector window, seconds.
    pub recent_connector: u64,
    /// Tenant records ever used (high-water mark).
    pub tenants_high: u32,
    /// Live tenants.
    pub tenants_live: u32,
    /// Live domain entries.
    pub domains_live: u32,
    /// Connector records ever used.
    pub connectors_high: u32,
    /// Live range entries.
    pub ranges_live: u32,
    /// Override records ever used.
    pub overrides_high: u32,
    /// Bytes used in the name arena.
    pub names_len: u32,
    /// Live ranges per kind, class of prefix (IPv4-mapped, other IPv6, covering the
    /// IPv4-mapped block) and prefix length, at `kind * 3 + class`.
    pub range_lens: [[u32; 129]; 9],
}

impl Meta {
    /// Bytes of [`Meta::encode`]'s output.
    pub const ENCODED_LEN: usize = 9 * 4 + RuleSetRecord::WORDS * 8 + 8 + 7 * 4 + 9 * 129 * 4;

    /// Writes the metadata as little-endian words; returns [`Meta::ENCODED_LEN`].
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let out = out
            .get_mut(..Meta::ENCODED_LEN)
            .ok_or(Error::BufferTooSmall)?;
        let mut pos = 0;
        let mut put = |b: &[u8]| {
            out[pos..pos + b.len()].copy_from_slice(b);
            pos += b.len();
        };
        let c = &self.capacity;
        for v in [
            c.tenants,
            c.domains,
            c.connectors,
            c.ranges,
            c.name_bytes,
            c.overrides,
            c.audit_depth as u32,
            c.threshold_slots as u32,
            c.unregistered_slots as u32,
        ] {
            put(&v.to_le_bytes());
        }
        for w in self.rules.encode().words {
            put(&w.to_le_bytes());
        }
        put(&self.recent_connector.to_le_bytes());
        for v in [
            self.tenants_high,
            self.tenants_live,
            self.domains_live,
            self.connectors_high,
            self.ranges_live,
            self.overrides_high,
            self.names_len,
        ] {
            put(&v.to_le_bytes());
        }
        for kind in &self.range_lens {
            for v in kind {
                put(&v.to_le_bytes());
            }
        }
        Ok(Meta::ENCODED_LEN)
    }

    /// Reads what [`Meta::encode`] wrote; rejects values no engine could have.
    pub fn decode(b: &[u8]) -> Result<Meta, Error> {
        let b = b.get(..Meta::ENCODED_LEN).ok_or(Error::SnapshotTruncated)?;
        let mut pos = 0;
        let mut u32_ = || {
            let v = u32::from_le_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]);
            pos += 4;
            v
        };
        let c: [u32; 9] = core::array::from_fn(|_| u32_());
        let small = |v: u32| u16::try_from(v).map_err(|_| Error::SnapshotCorrupt);
        let capacity = Capacity {
            tenants: c[0],
            domains: c[1],
            connectors: c[2],
            ranges: c[3],
            name_bytes: c[4],
            overrides: c[5],
            audit_depth: small(c[6])?,
            threshold_slots: small(c[7])?,
            unregistered_slots: small(c[8])?,
        };
        capacity.validate().map_err(|_| Error::SnapshotCorrupt)?;
        let mut pos = 36;
        let mut u64_ = || {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[pos..pos + 8]);
            pos += 8;
            u64::from_le_bytes(a)
        };
        let words: [u64; RuleSetRecord::WORDS] = core::array::from_fn(|_| u64_());
        let rules =
            RuleSet::decode(&RuleSetRecord { words }).map_err(|_| Error::SnapshotCorrupt)?;
        let recent_connector = u64_();
        let mut pos = 36 + RuleSetRecord::WORDS * 8 + 8;
        let mut u32_ = || {
            let v = u32::from_le_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]);
            pos += 4;
            v
        };
        let n: [u32; 7] = core::array::from_fn(|_| u32_());
        let mut range_lens = [[0u32; 129]; 9];
        for kind in range_lens.iter_mut() {
            for v in kind.iter_mut() {
                *v = u32_();
            }
        }
        let m = Meta {
            capacity,
            rules,
            recent_connector,
            tenants_high: n[0],
            tenants_live: n[1],
            domains_live: n[2],
            connectors_high: n[3],
            ranges_live: n[4],
            overrides_high: n[5],
            names_len: n[6],
            range_lens,
        };
        let total: u64 = m.range_lens.iter().flatten().map(|&v| v as u64).sum();
        if m.tenants_live > m.tenants_high
            || m.tenants_high > capacity.tenants
            || m.domains_live > capacity.domains
            || m.connectors_high > capacity.connectors
            || m.ranges_live > capacity.ranges
            || total != m.ranges_live as u64
            || m.overrides_high > capacity.overrides
            || m.names_len > capacity.name_bytes
        {
            return Err(Error::SnapshotCorrupt);
        }
        Ok(m)
    }
}

impl<S: Storage> Engine<S> {
    /// The engine's bookkeeping (see [`Meta`]).
    pub fn meta(&self) -> Meta {
        Meta {
            capacity: self.cap,
            rules: self.rules,
            recent_connector: self.recent_connector,
            tenants_high: self.tenants_high,
            tenants_live: self.tenants_live,
            domains_live: self.domains_live,
            connectors_high: self.connectors_high,
            ranges_live: self.ranges_live,
            overrides_high: self.overrides_high,
            names_len: self.names_len,
            range_lens: self.range_lens,
        }
    }

    /// Reopens tables that already hold an engine's data (written by an engine with this
    /// `meta`), without clearing them. The tables are trusted to be what that engine left:
    /// lookups stay memory-safe on any bytes, but damaged tables give wrong answers, so callers
    /// that read them from outside check a checksum first.
    pub fn from_parts(store: S, meta: Meta) -> Result<Engine<S>, Error> {
        meta.capacity.validate()?;
        meta.rules.validate()?;
        let layout = meta.capacity.layout();
        if !store.parts().fits(&layout) {
            return Err(Error::InvalidCapacity(
                "storage slices are shorter than the layout",
            ));
        }
        Ok(Engine {
            store,
            cap: meta.capacity,
            layout,
            rules: meta.rules,
            recent_connector: meta.recent_connector,
            tenants_high: meta.tenants_high,
            tenants_live: meta.tenants_live,
            domains_live: meta.domains_live,
            connectors_high: meta.connectors_high,
            ranges_live: meta.ranges_live,
            overrides_high: meta.overrides_high,
            names_len: meta.names_len,
            range_lens: meta.range_lens,
            range_order: range_order(&meta.range_lens),
            slot_divs: slot_divs(&meta.rules, &meta.capacity),
        })
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.store
    }
}
