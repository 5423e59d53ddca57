//! What a user might write or pick instead of outguard, built from std and common crates:
//! the baselines every benchmark measures beside outguard in the same run.
//!
//! They are deliberately lean (and so flattering): the composite guard has one attribution
//! path (an explicit tenant), no monitor mode, no overrides, no exceptions, no audit trail and
//! trusts its input to be lower-case.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use ip_network_table::IpNetworkTable;
use outguard::Verdict;

use crate::fixture;

/// Window length of every counter here (the default 24 h).
pub const WINDOW: u64 = 86_400;
/// Slots of the default window.
pub const SLOTS: usize = 24;

/// A ring of `N` time slots with `W` counters each, advanced as time moves on.
#[derive(Clone, Copy, Debug)]
pub struct Ring<const N: usize, const W: usize> {
    head: u64,
    cells: [[u32; W]; N],
}

impl<const N: usize, const W: usize> Default for Ring<N, W> {
    fn default() -> Self {
        Ring {
            head: 0,
            cells: [[0; W]; N],
        }
    }
}

impl<const N: usize, const W: usize> Ring<N, W> {
    /// Slot length of a `WINDOW` split into `N` slots.
    pub const SLOT: u64 = WINDOW / N as u64;

    /// Moves to epoch `e`, zeroing the slots that left the window.
    #[inline]
    pub fn advance(&mut self, e: u64) {
        if e > self.head {
            let gap = (e - self.head).min(N as u64);
            for k in 1..=gap {
                self.cells[((self.head + k) % N as u64) as usize] = [0; W];
            }
            self.head = e;
        }
    }

    /// Adds `n` to counter `col` of the newest slot.
    #[inline]
    pub fn add(&mut self, col: usize, n: u32) {
        let c = &mut self.cells[(self.head % N as u64) as usize][col];
        *c = c.saturating_add(n);
    }

    /// Sums of every counter over the slots still inside the window at epoch `e` (read-only:
    /// one index computation, then a wrapping walk).
    #[inline]
    pub fn sums(&self, e: u64) -> [u32; W] {
        let mut out = [0u32; W];
        let live = if e <= self.head {
            N as u64
        } else {
            (N as u64).saturating_sub(e - self.head)
        };
        let mut i = (self.head % N as u64) as usize;
        for _ in 0..live {
            for (o, c) in out.iter_mut().zip(self.cells[i]) {
                *o = o.saturating_add(c);
            }
            i = if i == 0 { N - 1 } else { i - 1 };
        }
        out
    }
}

/// `std` `HashMap` (foldhash) from a u64 key to a 24-slot ring: the window-counter baseline.
#[derive(Debug, Default)]
pub struct RingMap {
    map: foldhash::HashMap<u64, Ring<SLOTS, 1>>,
}

impl RingMap {
    /// Keys `0..keys`, present with empty rings (so the benchmark measures hits, not inserts).
    pub fn new(keys: u64) -> RingMap {
        let mut m = RingMap::default();
        m.map.reserve(keys as usize);
        for k in 0..keys {
            m.map.insert(k, Ring::default());
        }
        m
    }

    /// Counts one event for `key` at `now`; whether the window stays under `limit`.
    #[inline]
    pub fn hit(&mut self, key: u64, now: u64, limit: u32) -> bool {
        let r = self.map.entry(key).or_default();
        r.advance(now / Ring::<SLOTS, 1>::SLOT);
        r.add(0, 1);
        r.sums(r.head)[0] < limit
    }
}

/// outguard's window counter alone (`outguard::window`), laid out as the engine lays it out:
/// one flat array of rings indexed by tenant number, the heads kept apart (in the engine they
/// sit in the tenant record).
#[derive(Debug)]
pub struct FlatWindows {
    slots: usize,
    cells: Vec<u32>,
    heads: Vec<u64>,
}

impl FlatWindows {
    /// `keys` counters of `slots` slots each.
    pub fn new(keys: usize, slots: usize) -> FlatWindows {
        FlatWindows {
            slots,
            cells: vec![0; keys * slots],
            heads: vec![0; keys],
        }
    }

    /// Counts one event for counter `key` at `now`; whether the window stays under `limit`.
    #[inline]
    pub fn hit(&mut self, key: usize, now: u64, limit: u32) -> bool {
        use outguard::window;
        let s = self.slots;
        let e = now / window::slot_len(WINDOW, s);
        let cells = &mut self.cells[key * s..(key + 1) * s];
        let head = &mut self.heads[key];
        window::advance(cells, 1, head, e);
        window::add(cells, 1, *head, 0, 1);
        window::sum(cells, 1, *head, e, 0) < limit
    }

    /// Bytes per counter: the cells and the head.
    pub fn bytes_per_key(&self) -> usize {
        self.slots * 4 + 8
    }
}

/// governor's keyed limiter (DashMap), on a clock the caller moves: like outguard, it is
/// handed the time rather than reading a clock.
pub type Governor<K> = RateLimiter<
    K,
    DashMapStateStore<K>,
    FakeRelativeClock,
    NoOpMiddleware<<FakeRelativeClock as Clock>::Instant>,
>;

/// One cell per nanosecond, a burst of 1e9: with the clock standing still no key runs dry
/// within a benchmark, so every call is an accepted, counted one.
pub fn governor_quota() -> Quota {
    Quota::per_second(NonZeroU32::new(1_000_000_000).expect("non-zero"))
}

/// A [`Governor`] that has seen each of `keys` once (so the benchmark measures hits).
pub fn governor_limiter<K: Hash + Eq + Clone>(keys: impl Iterator<Item = K>) -> Governor<K> {
    let l = RateLimiter::new(
        governor_quota(),
        DashMapStateStore::default(),
        FakeRelativeClock::default(),
    );
    for k in keys {
        let _ = l.check_key(&k);
    }
    l
}

/// `HashSet<String>` (foldhash) of accepted domains, matched by walking the sender domain's
/// label suffixes: the domain-matching baseline.
#[derive(Debug, Default)]
pub struct SuffixSet {
    set: foldhash::HashSet<String>,
}

impl SuffixSet {
    /// A set of these names.
    pub fn new(names: impl IntoIterator<Item = String>) -> SuffixSet {
        SuffixSet {
            set: names.into_iter().collect(),
        }
    }

    /// Whether the domain of `mail_from`, or a parent of it, is in the set.
    #[inline]
    pub fn matches(&self, mail_from: &str) -> bool {
        let Some((_, d)) = mail_from.rsplit_once('@') else {
            return false;
        };
        if self.set.contains(d) {
            return true;
        }
        d.match_indices('.')
            .any(|(i, _)| self.set.contains(&d[i + 1..]))
    }
}

/// `ip_network_table` of low-reputation prefixes: the CIDR baseline.
pub fn network_table(prefixes: u32) -> IpNetworkTable<()> {
    let mut t = IpNetworkTable::new();
    for i in 0..prefixes {
        t.insert(fixture::lowrep_network(i), ());
    }
    t
}

#[derive(Clone, Copy, Debug)]
struct Owner {
    tenant: u32,
    subdomains: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct TenantState {
    blocked: [bool; 2],
    /// total, suspicious
    threshold: Ring<SLOTS, 2>,
    unregistered: Ring<SLOTS, 1>,
}

/// What [`StdGuard::check`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StdDecision {
    /// The message may go out.
    pub accepted: bool,
    /// Window sums: total, suspicious, unregistered.
    pub counters: [u32; 3],
}

/// The whole check in a std design: `HashMap<String, u32>` of tenants, `HashMap<String, _>` of
/// accepted domains walked by suffix, `ip_network_table` for the low-reputation list, a `Vec`
/// of per-tenant 24-slot rings. The composite baseline of `check` and `record`.
#[derive(Default)]
pub struct StdGuard {
    tenants: foldhash::HashMap<String, u32>,
    domains: foldhash::HashMap<String, Owner>,
    lowrep: IpNetworkTable<()>,
    state: Vec<TenantState>,
}

impl StdGuard {
    /// The same configuration as [`fixture::engine`].
    pub fn new(tenants: u32, lowrep: u32) -> StdGuard {
        let mut g = StdGuard::default();
        g.tenants.reserve(tenants as usize);
        g.domains.reserve(2 * tenants as usize);
        for i in 0..tenants {
            g.tenants.insert(fixture::tenant_name(i), i);
            for (k, subdomains) in [(0, false), (1, true)] {
                g.domains.insert(
                    fixture::domain_name(i, k),
                    Owner {
                        tenant: i,
                        subdomains,
                    },
                );
            }
        }
        g.state = vec![TenantState::default(); tenants as usize];
        g.lowrep = network_table(lowrep);
        g
    }

    fn registered(&self, t: u32, mail_from: &str) -> bool {
        let Some((_, d)) = mail_from.rsplit_once('@') else {
            return false;
        };
        if self.domains.get(d).is_some_and(|o| o.tenant == t) {
            return true;
        }
        d.match_indices('.').any(|(i, _)| {
            self.domains
                .get(&d[i + 1..])
                .is_some_and(|o| o.tenant == t && o.subdomains)
        })
    }

    /// Decides one message with an explicit tenant.
    #[inline]
    pub fn check(&self, now: u64, tenant: &str, mail_from: &str, ip: IpAddr) -> StdDecision {
        let refused = |counters| StdDecision {
            accepted: false,
            counters,
        };
        let Some(&t) = self.tenants.get(tenant) else {
            return refused([0; 3]);
        };
        let registered = self.registered(t, mail_from);
        let s = &self.state[t as usize];
        let [total, suspicious] = s.threshold.sums(now / Ring::<SLOTS, 2>::SLOT);
        let [unregistered] = s.unregistered.sums(now / Ring::<SLOTS, 1>::SLOT);
        let counters = [total, suspicious, unregistered];
        if s.blocked[0] || self.lowrep.longest_match(ip).is_some() || (!registered && s.blocked[1])
        {
            return refused(counters);
        }
        StdDecision {
            accepted: true,
            counters,
        }
    }

    /// Counts an accepted message and trips blocks (same thresholds as the default rules);
    /// whether a block tripped. `None` for an unknown tenant.
    #[inline]
    pub fn record(
        &mut self,
        now: u64,
        tenant: &str,
        mail_from: &str,
        verdict: Verdict,
    ) -> Option<bool> {
        let t = *self.tenants.get(tenant)?;
        let registered = self.registered(t, mail_from);
        let s = &mut self.state[t as usize];
        let e = now / Ring::<SLOTS, 2>::SLOT;
        s.threshold.advance(e);
        s.threshold.add(0, 1);
        if matches!(verdict, Verdict::Spam | Verdict::Bulk) {
            s.threshold.add(1, 1);
        }
        s.unregistered.advance(e);
        if !registered {
            s.unregistered.add(0, 1);
        }
        let [total, suspicious] = s.threshold.sums(e);
        let [unregistered] = s.unregistered.sums(e);
        let mut tripped = false;
        if !s.blocked[0]
            && total >= 100
            && suspicious >= 50
            && 2 * suspicious as u64 >= total as u64
        {
            s.blocked[0] = true;
            tripped = true;
        }
        if !s.blocked[1] && unregistered >= 200 {
            s.blocked[1] = true;
            tripped = true;
        }
        Some(tripped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{queries, NOW};

    #[test]
    fn ring_slides() {
        let mut r = Ring::<4, 1>::default();
        r.advance(10);
        r.add(0, 5);
        r.advance(12);
        r.add(0, 1);
        assert_eq!(r.sums(12), [6]);
        assert_eq!(r.sums(13), [6]);
        assert_eq!(r.sums(14), [1]);
        assert_eq!(r.sums(16), [0]);
    }

    #[test]
    fn windows_agree() {
        let mut a = RingMap::new(10);
        let mut b = FlatWindows::new(10, SLOTS);
        for i in 0..1000u64 {
            let now = NOW + i * 97;
            assert_eq!(
                a.hit(i % 10, now, 50),
                b.hit((i % 10) as usize, now, 50),
                "{i}"
            );
        }
    }

    #[test]
    fn std_guard_agrees_with_engine() {
        let mut g = StdGuard::new(100, 1000);
        let mut e = fixture::engine(100, 1000);
        for q in queries(100, 2000, 9) {
            let d = e.check(NOW, &q.message());
            let s = g.check(NOW, &q.tenant, &q.mail_from, q.ip);
            assert_eq!(d.accepted(), s.accepted);
            assert_eq!(
                [
                    d.counters.total,
                    d.counters.suspicious,
                    d.counters.unregistered
                ],
                s.counters
            );
            e.record(NOW, &q.message(), Verdict::Clean).unwrap();
            assert_eq!(
                g.record(NOW, &q.tenant, &q.mail_from, Verdict::Clean),
                Some(false)
            );
        }
        let mut rng = fixture::Rng::new(5);
        let listed = fixture::listed_addr(7, &mut rng);
        assert!(
            !g.check(NOW, "tenant-0000001", "a@t1.example.com", listed)
                .accepted
        );
    }

    #[test]
    fn suffix_set() {
        let s = SuffixSet::new(["example.com".to_string()]);
        assert!(s.matches("a@example.com"));
        assert!(s.matches("a@mail.example.com"));
        assert!(!s.matches("a@example.net"));
    }
}
