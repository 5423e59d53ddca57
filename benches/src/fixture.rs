//! Deterministic inputs: tenants, domains, low-reputation prefixes, queries, and the engines
//! built from them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use outguard::{Capacity, Cidr, Engine, HeapStorage, Message, RuleSet};

/// The `now` every benchmark passes (Unix seconds); fixed, so no call pays for a clock.
pub const NOW: u64 = 1_790_000_000;

/// How many queries a random stream holds before it wraps. Larger than any cache, read
/// sequentially (the prefetcher streams it), so the harness itself adds almost no misses.
pub const QUERIES: usize = 1 << 18;

/// splitmix64: small, deterministic, good enough to scatter keys.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Walks a query stream. `independent` calls let the CPU overlap one call's cache misses with
/// the next's (throughput, what a batch could reach); `isolated` calls make the next query's
/// position depend on the previous result, so every call waits for the one before it, as a
/// single call from a mail server does.
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    pos: usize,
    mask: usize,
    /// Zero, but the compiler cannot know it: `prev & zero` keeps a real data dependency.
    zero: u64,
}

impl Cursor {
    /// A cursor over a stream of `len` entries (a power of two).
    pub fn new(len: usize) -> Cursor {
        assert!(len.is_power_of_two());
        Cursor {
            pos: 0,
            mask: len - 1,
            zero: std::hint::black_box(0),
        }
    }
    /// The next position, independent of any previous result.
    #[inline(always)]
    pub fn independent(&mut self) -> usize {
        self.pos = (self.pos + 1) & self.mask;
        self.pos
    }
    /// The next position, which the CPU can only compute once `prev` is known.
    #[inline(always)]
    pub fn isolated(&mut self, prev: u64) -> usize {
        self.pos = (self.pos + 1 + (prev & self.zero) as usize) & self.mask;
        self.pos
    }
}

/// Tenant id of tenant `i`.
pub fn tenant_name(i: u32) -> String {
    format!("tenant-{i:07}")
}

/// Accepted domain `k` (0 or 1) of tenant `i`.
pub fn domain_name(i: u32, k: u32) -> String {
    if k == 0 {
        format!("t{i}.example.com")
    } else {
        format!("mail-t{i}.example.net")
    }
}

/// One of many accepted domains of a single tenant (the domain-matching benchmark).
pub fn many_domain_name(i: u32) -> String {
    format!("d{:07x}.example.org", scatter(i as u64, 28))
}

/// A bijection of `0..2^bits` (multiplication by an odd number) that scatters consecutive
/// numbers.
fn scatter(x: u64, bits: u32) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1u64 << bits) - 1)
}

/// Low-reputation prefix `i`: even `i` an IPv4 /24 below 128.0.0.0, odd `i` an IPv6 /48 in
/// 2a00::/16. Distinct for distinct `i` (below 2^24).
pub fn lowrep_prefix(i: u32) -> Cidr {
    let j = (i / 2) as u64;
    if i % 2 == 0 {
        let net24 = ((j.wrapping_mul(0x5851_F42D) & 0x7F_FFFF) as u32) << 8;
        Cidr::new(IpAddr::V4(Ipv4Addr::from(net24)), 24).expect("valid /24")
    } else {
        let mid = (j.wrapping_mul(0x9E37_79B1) & 0xFFFF_FFFF) as u128;
        let net = (0x2a00u128 << 112) | (mid << 80);
        Cidr::new(IpAddr::V6(Ipv6Addr::from(net)), 48).expect("valid /48")
    }
}

/// The same prefix as an `ip_network` value (for `ip_network_table`).
pub fn lowrep_network(i: u32) -> ip_network::IpNetwork {
    let c = lowrep_prefix(i);
    if c.is_v4() {
        let a = Ipv4Addr::from((c.network & 0xFFFF_FFFF) as u32);
        ip_network::Ipv4Network::new(a, c.len - 96)
            .expect("valid")
            .into()
    } else {
        ip_network::Ipv6Network::new(Ipv6Addr::from(c.network), c.len)
            .expect("valid")
            .into()
    }
}

/// A random address inside low-reputation prefix `i`.
pub fn listed_addr(i: u32, rng: &mut Rng) -> IpAddr {
    let c = lowrep_prefix(i);
    let host = rng.next_u64() as u128;
    if c.is_v4() {
        IpAddr::V4(Ipv4Addr::from(
            (c.network as u32 & 0xFFFF_FF00) | (host as u32 & 0xFF),
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(c.network | (host & ((1u128 << 80) - 1))))
    }
}

/// A random address on no low-reputation list: IPv4 at or above 128.0.0.0, or IPv6 in
/// 2a01::/16; each family half the time.
pub fn clean_addr(rng: &mut Rng) -> IpAddr {
    let r = rng.next_u64();
    if r & 1 == 0 {
        IpAddr::V4(Ipv4Addr::from(0x8000_0000 | (r >> 33) as u32))
    } else {
        let low = ((r as u128) << 64 | rng.next_u64() as u128) & ((1u128 << 112) - 1);
        IpAddr::V6(Ipv6Addr::from((0x2a01u128 << 112) | low))
    }
}

/// One message of a query stream, with its bytes owned (allocated in stream order, so reading
/// the stream in order is sequential).
#[derive(Clone, Debug)]
pub struct Query {
    /// Tenant id.
    pub tenant: String,
    /// Envelope sender.
    pub mail_from: String,
    /// Client IP.
    pub ip: IpAddr,
}

impl Query {
    /// The message the engine sees.
    #[inline(always)]
    pub fn message(&self) -> Message<'_> {
        Message {
            mail_from: self.mail_from.as_bytes(),
            tenant: Some(&self.tenant),
            client_ip: Some(self.ip),
            recipients: 1,
            ..Message::default()
        }
    }
}

/// Messages from random tenants of `0..tenants`, each from one of its registered domains, from
/// a clean client IP.
pub fn queries(tenants: u32, len: usize, seed: u64) -> Vec<Query> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| {
            let t = rng.below(tenants as u64) as u32;
            let k = rng.below(2) as u32;
            Query {
                tenant: tenant_name(t),
                mail_from: format!("alice@{}", domain_name(t, k)),
                ip: clean_addr(&mut rng),
            }
        })
        .collect()
}

/// The capacity of the main configuration: `tenants` tenants with 2 accepted domains each and
/// `lowrep` low-reputation prefixes; windows and audit depth at their defaults.
pub fn capacity(tenants: u32, lowrep: u32) -> Capacity {
    let names: u64 = (0..tenants)
        .map(|i| {
            (name_cost(&tenant_name(i))
                + name_cost(&domain_name(i, 0))
                + name_cost(&domain_name(i, 1))) as u64
        })
        .sum();
    Capacity {
        tenants,
        domains: 2 * tenants,
        connectors: 0,
        ranges: lowrep.max(1),
        name_bytes: u32::try_from(names).expect("names fit u32"),
        overrides: 0,
        ..Capacity::default()
    }
}

/// Name-arena bytes to reserve for a name: its bytes plus room for a small per-name header
/// (the arena may keep one; 16 bytes is more than it needs).
pub fn name_cost(name: &str) -> usize {
    name.len() + 16
}

/// The main configuration's engine (takes a few seconds at 1e6 tenants).
pub fn engine(tenants: u32, lowrep: u32) -> Engine<HeapStorage> {
    let cap = capacity(tenants, lowrep);
    let mut e = Engine::new(HeapStorage::new(&cap), cap, RuleSet::default()).expect("engine");
    for i in 0..tenants {
        let t = e.add_tenant(&tenant_name(i), true).expect("tenant");
        e.add_domain(t, &domain_name(i, 0), false, true)
            .expect("domain");
        e.add_domain(t, &domain_name(i, 1), true, true)
            .expect("domain");
    }
    for i in 0..lowrep {
        e.add_low_reputation(lowrep_prefix(i)).expect("prefix");
    }
    e
}

/// Id of the only tenant of [`domains_engine`].
pub const DOMAINS_TENANT: &str = "owner";

/// One tenant owning `domains` accepted domains ([`many_domain_name`]), nothing else: the
/// domain table is the only large structure a `check` touches.
pub fn domains_engine(domains: u32) -> Engine<HeapStorage> {
    let names: usize = (0..domains).map(|i| name_cost(&many_domain_name(i))).sum();
    let cap = Capacity {
        tenants: 1,
        domains,
        connectors: 0,
        ranges: 1,
        name_bytes: (names + name_cost(DOMAINS_TENANT)) as u32,
        overrides: 0,
        ..Capacity::default()
    };
    let mut e = Engine::new(HeapStorage::new(&cap), cap, RuleSet::default()).expect("engine");
    let t = e.add_tenant(DOMAINS_TENANT, true).expect("tenant");
    for i in 0..domains {
        e.add_domain(t, &many_domain_name(i), false, true)
            .expect("domain");
    }
    e
}

/// Senders from random domains of [`domains_engine`], in stream order.
pub fn domain_senders(domains: u32, len: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| {
            format!(
                "alice@{}",
                many_domain_name(rng.below(domains as u64) as u32)
            )
        })
        .collect()
}

/// Senders from domains that no tenant registered (`x<random>.example.org`: the exact name
/// misses, then its parents are looked up too), in stream order.
pub fn unregistered_senders(len: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| format!("alice@x{:07x}.example.org", rng.below(1 << 28)))
        .collect()
}

/// An engine holding only `prefixes` low-reputation prefixes.
pub fn cidr_engine(prefixes: u32) -> Engine<HeapStorage> {
    let cap = Capacity {
        tenants: 1,
        domains: 1,
        connectors: 0,
        ranges: prefixes,
        name_bytes: 16,
        overrides: 0,
        ..Capacity::default()
    };
    let mut e = Engine::new(HeapStorage::new(&cap), cap, RuleSet::default()).expect("engine");
    for i in 0..prefixes {
        e.add_low_reputation(lowrep_prefix(i)).expect("prefix");
    }
    e
}

/// Addresses to look up among `prefixes` listed prefixes: half inside a random listed prefix,
/// half clean; both families.
pub fn cidr_queries(prefixes: u32, len: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| {
            if rng.below(2) == 0 {
                let i = rng.below(prefixes as u64) as u32;
                listed_addr(i, &mut rng)
            } else {
                clean_addr(&mut rng)
            }
        })
        .collect()
}

/// Random keys in `0..keys`, in stream order.
pub fn keys(keys: u64, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.below(keys)).collect()
}

/// A short label for a count: `1`, `1e4`, `1e6`.
pub fn label(n: u64) -> String {
    let mut e = 0;
    let mut m = n;
    while m >= 10 && m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    if e >= 3 {
        if m == 1 {
            format!("1e{e}")
        } else {
            format!("{m}e{e}")
        }
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_distinct_and_clean_addresses_are_clean() {
        let e = cidr_engine(20_000);
        assert_eq!(e.usage().ranges, 20_000);
        let mut rng = Rng::new(1);
        for i in 0..1000 {
            assert!(e.is_low_reputation(listed_addr(i, &mut rng)));
            assert!(!e.is_low_reputation(clean_addr(&mut rng)));
        }
    }

    #[test]
    fn queries_are_accepted() {
        let e = engine(100, 1000);
        for q in queries(100, 1000, 7) {
            let d = e.check(NOW, &q.message());
            assert!(d.accepted(), "{q:?}: {d:?}");
            assert_eq!(d.sender_class, Some(outguard::SenderClass::Registered));
        }
        let d = domains_engine(1000);
        for s in domain_senders(1000, 100, 3) {
            let m = Message {
                tenant: Some(DOMAINS_TENANT),
                ..Message::new(&s)
            };
            assert_eq!(
                d.check(NOW, &m).sender_class,
                Some(outguard::SenderClass::Registered)
            );
        }
    }

    #[test]
    fn labels() {
        assert_eq!(label(1), "1");
        assert_eq!(label(1000), "1e3");
        assert_eq!(label(10_000), "1e4");
        assert_eq!(label(1_000_000), "1e6");
        assert_eq!(label(2_000_000), "2e6");
    }
}
