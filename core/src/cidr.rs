//! IP addresses and CIDR ranges. IPv4 is held as an IPv4-mapped IPv6 address so one table
//! serves both families.

use crate::Error;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP address from its text form: exactly what `str::parse::<IpAddr>` accepts, with the
/// common dotted-quad IPv4 form read directly (a few nanoseconds instead of the general
/// parser's tens).
pub fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    parse_ipv4(s)
        .map(IpAddr::V4)
        .or_else(|| core::str::from_utf8(s).ok()?.parse().ok())
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
