//! IP addresses and CIDR ranges. IPv4 is held as an IPv4-mapped IPv6 address so one table
//! serves both families.

use crate::Error;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP address from its text form: exactly what `str::parse::<IpAddr>` accepts, with the
/// common forms (a dotted-quad IPv4 address, an IPv6 address of hex groups with at most one
/// `::`) read directly, in a few nanoseconds instead of the general parser's tens. Anything
/// else (an IPv6 address ending in a dotted quad, or text neither reader accepts) goes to the
/// general parser, which stays the reference.
pub fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    parse_ipv4(s)
        .map(IpAddr::V4)
        .or_else(|| parse_ipv6(s).map(IpAddr::V6))
        .or_else(|| core::str::from_utf8(s).ok()?.parse().ok())
}

/// An IPv6 address of hex groups: eight groups of 1–4 hex digits split by `:`, or fewer with
/// one `::` standing for at least one zero group (the forms the standard parser accepts
/// without an embedded IPv4 address); `None` sends the text to the general parser. One pass.
fn parse_ipv6(s: &[u8]) -> Option<Ipv6Addr> {
    if s.len() < 2 || s.len() > 39 {
        return None;
    }
    let mut groups = [0u16; 8];
    let mut n = 0; // groups read
    let mut gap = None; // where `::` stands, in groups
    let mut i = 0;
    if s[0] == b':' {
        if s[1] != b':' {
            return None;
        }
        if s.len() == 2 {
            return Some(Ipv6Addr::UNSPECIFIED);
        }
        gap = Some(0);
        i = 2;
    }
    loop {
        let start = i;
        let mut v = 0u32;
        while let Some(d) = s.get(i).and_then(|&b| (b as char).to_digit(16)) {
            if i - start == 4 {
                return None; // a fifth digit
            }
            v = v << 4 | d;
            i += 1;
        }
        if i == start || n == 8 {
            return None;
        }
        groups[n] = v as u16;
        n += 1;
        match (s.get(i), s.get(i + 1)) {
            (None, _) => break,
            (Some(b':'), Some(b':')) => {
                if gap.is_some() {
                    return None;
                }
                gap = Some(n);
                i += 2;
                if i == s.len() {
                    break;
                }
            }
            (Some(b':'), Some(_)) => i += 1,
            _ => return None, // `.`, a trailing `:`, anything else
        }
    }
    match gap {
        None if n == 8 => {}
        Some(g) if n <= 7 => {
            // The groups after `::` move to the end; the ones they leave are zero.
            let tail = n - g;
            groups.copy_within(g..n, 8 - tail);
            groups[g..8 - tail].fill(0);
        }
        _ => return None,
    }
    Some(Ipv6Addr::from(groups))
}

/// Four decimal octets, each `0` or 1–3 digits without a leading zero and at most 255 (the
/// forms the standard parser accepts); `None` sends the text to the general parser. One pass,
/// a digit at a time (splitting on `.` took twice the instructions).
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    /// The value of an ASCII digit.
    fn digit(b: Option<&u8>) -> Option<u8> {
        let d = b?.wrapping_sub(b'0');
        (d <= 9).then_some(d)
    }
    if s.len() < 7 || s.len() > 15 {
        return None;
    }
    let mut out = [0u8; 4];
    let mut i = 0;
    for (k, o) in out.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let mut v = u16::from(digit(s.get(i))?);
        i += 1;
        if let Some(d) = digit(s.get(i)) {
            if v == 0 {
                return None; // a leading zero
            }
            v = v * 10 + u16::from(d);
            i += 1;
            if let Some(d) = digit(s.get(i)) {
                v = v * 10 + u16::from(d);
                i += 1;
            }
        }
        // A fourth digit fails the `.` test or the end test.
        *o = u8::try_from(v).ok()?;
    }
    if i != s.len() {
        return None;
    }
    Some(Ipv4Addr::from(out))
}

/// An IP address as a 128-bit number (IPv4 mapped into `::ffff:0:0/96`).
pub fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6),
        },
    }
}

/// A network prefix: `network/len` in the 128-bit space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Network bits (host bits are zero).
    pub network: u128,
    /// Prefix length in the 128-bit space (IPv4 `/n` is `96 + n`).
    pub len: u8,
}

/// Mask with the top `len` bits set.
pub const fn prefix_mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else if len >= 128 {
        u128::MAX
    } else {
        !(u128::MAX >> len)
    }
}

const V4_MAPPED: u128 = 0xffff_0000_0000;

impl Cidr {
    /// A range from an address and a family-relative prefix length (`/24` for IPv4).
    pub fn new(ip: IpAddr, len: u8) -> Result<Cidr, Error> {
        let (bits, len) = match ip {
            IpAddr::V4(_) if len > 32 => return Err(Error::InvalidRange),
            IpAddr::V4(_) => (addr_bits(ip), 96 + len),
            IpAddr::V6(_) if len > 128 => return Err(Error::InvalidRange),
            IpAddr::V6(_) => (addr_bits(ip), len),
        };
        Ok(Cidr {
            network: bits & prefix_mask(len),
            len,
        })
    }

    /// A single address (`/32` or `/128`).
    pub fn host(ip: IpAddr) -> Cidr {
        Cidr {
            network: addr_bits(ip),
            len: 128,
        }
    }

    /// Parses `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host range).
    /// Host bits set below the prefix are an error (`192.0.2.1/24`), as they usually hide a typo.
    pub fn parse(s: &str) -> Result<Cidr, Error> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => {
                if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::InvalidRange);
                }
                let l: u8 = l.parse().map_err(|_| Error::InvalidRange)?;
                (a, Some(l))
            }
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| Error::InvalidRange)?;
        let len = len.unwrap_or(match ip {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        });
        let c = Cidr::new(ip, len)?;
        if addr_bits(ip) != c.network {
            return Err(Error::InvalidRange);
        }
        Ok(c)
    }

    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        addr_bits(ip) & prefix_mask(self.len) == self.network
    }

    /// Whether this range is an IPv4 range.
    pub fn is_v4(&self) -> bool {
        self.len >= 96 && (self.network & prefix_mask(96)) == V4_MAPPED
    }

    /// Whether two ranges share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let l = self.len.min(other.len);
        (self.network & prefix_mask(l)) == (other.network & prefix_mask(l))
    }
}

impl core::fmt::Display for Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_v4() {
            let v4 = Ipv4Addr::from((self.network & 0xffff_ffff) as u32);
            write!(f, "{}/{}", v4, self.len - 96)
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.network), self.len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ip_accepts_exactly_what_the_standard_parser_accepts() {
        for s in [
            "1.2.3.4",
            "255.255.255.255",
            "0.0.0.0",
            "10.0.0.1",
            "203.0.113.5",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "00.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.-4",
            "+1.2.3.4",
            "999.1.1.1",
            "1.2.3.25x",
            "1.2.3.4\0",
            "",
            "a.b.c.d",
            "1.2.3.",
            ".1.2.3",
            "1000.1.1.1",
            "1.2.3.0000",
            "::ffff:1.2.3.4",
            "2001:db8::1",
            "::",
            "::1",
            "2001:db8:bad::25",
            "1:2:3:4:5:6:7:8:9",
            "fe80::1%1",
            "1.2.3.4.",
            "1.2.3.255",
            "1.2.3.256",
            "001.2.3.4",
            "0.0.0.00",
            "1.2.3.4a",
            "1.2.3a.4",
            "123.123.123.123",
            "1.2.3.1234",
            "1.2.3.4\n",
        ] {
            let want = s.parse::<IpAddr>().ok();
            assert_eq!(parse_ip(s.as_bytes()), want, "{s:?}");
        }
        assert_eq!(parse_ip(b"\xff.1.1.1"), None);
    }

    #[test]
    fn parse_ip_agrees_on_every_mix_of_odd_octets() {
        extern crate std;
        use std::string::String;
        const PARTS: [&str; 18] = [
            "", "0", "00", "01", "1", "9", "10", "99", "100", "199", "255", "256", "299", "999",
            "0000", "1000", "a", "1a",
        ];
        let mut s = String::new();
        for a in PARTS {
            for b in PARTS {
                for c in PARTS {
                    for d in PARTS {
                        for tail in ["", ".", ".1"] {
                            s.clear();
                            for (i, p) in [a, b, c, d].into_iter().enumerate() {
                                if i > 0 {
                                    s.push('.');
                                }
                                s.push_str(p);
                            }
                            s.push_str(tail);
                            let want = s.parse::<IpAddr>().ok();
                            assert_eq!(parse_ip(s.as_bytes()), want, "{s:?}");
                        }
                    }
                }
            }
        }
    }

    /// The IPv6 reader against the standard parser on every string of up to 6 characters over
    /// the characters that steer it (digits, hex letters of both cases, `:`, `.`, and one that
    /// belongs to neither), and on eight-group addresses written every way the standard
    /// parser accepts: each group with and without leading zeros, each run of groups
    /// compressed, upper case.
    #[test]
    fn parse_ip_agrees_on_ipv6_text() {
        extern crate std;
        use std::format;
        use std::string::String;
        use std::vec::Vec;
        const CHARS: &[u8] = b"0f1F:.g";
        let mut s = Vec::new();
        let mut checked = 0u32;
        for len in 0..=6u32 {
            for mut k in 0..(CHARS.len() as u32).pow(len) {
                s.clear();
                for _ in 0..len {
                    s.push(CHARS[(k % CHARS.len() as u32) as usize]);
                    k /= CHARS.len() as u32;
                }
                let want = core::str::from_utf8(&s).unwrap().parse::<IpAddr>().ok();
                assert_eq!(parse_ip(&s), want, "{:?}", String::from_utf8_lossy(&s));
                checked += 1;
            }
        }
        assert_eq!(checked, (0..=6).map(|l| 7u32.pow(l)).sum::<u32>());
        let samples: [[u16; 8]; 6] = [
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0xfe80, 0, 0, 0, 0x1ff, 0xfe23, 0x4567, 0x890a],
            [1, 2, 3, 4, 5, 6, 7, 8],
            [0, 1, 0, 0, 0xffff, 0, 0, 0],
            [0xabcd, 0, 0xef, 0, 0, 0, 0x12, 0],
        ];
        for g in samples {
            for pad in [false, true] {
                let hex = |v: u16| {
                    if pad {
                        format!("{v:04x}")
                    } else {
                        format!("{v:x}")
                    }
                };
                let full: Vec<String> = g.iter().map(|&v| hex(v)).collect();
                let mut forms = Vec::from([full.join(":"), full.join(":").to_uppercase()]);
                // `::` in place of every run of groups (zero or not: the parsers must agree
                // on refusing or reading each), and of none.
                for a in 0..=8 {
                    for b in a..=8 {
                        forms.push(format!("{}::{}", full[..a].join(":"), full[b..].join(":")));
                    }
                }
                forms.push(format!("{}:", full.join(":")));
                forms.push(format!(":{}", full.join(":")));
                forms.push(format!("{}:1", full.join(":")));
                forms.push(format!("{}0", full.join(":")));
                for f in forms {
                    let want = f.parse::<IpAddr>().ok();
                    assert_eq!(parse_ip(f.as_bytes()), want, "{f:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4_000))]

        /// Random text over the characters that steer the IPv6 reader, and every address as
        /// the standard library writes it (the longest zero run compressed, an IPv4 tail for
        /// mapped addresses): the same answer as the standard parser.
        #[test]
        fn parse_ip_agrees_on_random_ipv6_text(
            s in proptest::collection::vec(proptest::sample::select(&b"0123456789abcdefABCDEF::::..x"[..]), 0..42),
            groups in proptest::array::uniform8(proptest::prop_oneof![proptest::strategy::Just(0u16), proptest::num::u16::ANY]),
        ) {
            extern crate std;
            use std::string::ToString;
            let want = core::str::from_utf8(&s).unwrap().parse::<IpAddr>().ok();
            proptest::prop_assert_eq!(parse_ip(&s), want);
            let text = Ipv6Addr::from(groups).to_string();
            proptest::prop_assert_eq!(parse_ip(text.as_bytes()), Some(IpAddr::V6(Ipv6Addr::from(groups))));
        }
    }

    #[test]
    fn parses_and_prints() {
        for s in [
            "192.0.2.0/24",
            "2001:db8:bad::/48",
            "203.0.113.7/32",
            "0.0.0.0/0",
            "::/0",
        ] {
            let c = Cidr::parse(s).unwrap();
            assert_eq!(alloc_fmt(&c), s);
        }
        assert_eq!(Cidr::parse("192.0.2.7").unwrap().len, 128);
    }

    #[test]
    fn rejects_bad_ranges() {
        for s in [
            "",
            "192.0.2.0/33",
            "192.0.2.1/24",
            "1.2.3/8",
            "::/129",
            "x/1",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4/0001",
        ] {
            assert_eq!(Cidr::parse(s), Err(Error::InvalidRange), "{s}");
        }
    }

    #[test]
    fn contains_mapped() {
        let c = Cidr::parse("192.0.2.0/24").unwrap();
        assert!(c.contains("192.0.2.200".parse().unwrap()));
        assert!(c.contains("::ffff:192.0.2.9".parse().unwrap()));
        assert!(!c.contains("192.0.3.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
    }

    fn alloc_fmt(c: &Cidr) -> heapless::String<64> {
        use core::fmt::Write;
        let mut s = heapless::String::new();
        write!(s, "{c}").unwrap();
        s
    }
}
