//! Envelope sender parsing and domain-name normalisation.
//!
//! Domains compare case-insensitively and ignore one trailing dot, so every name is stored
//! and looked up in its normal form: lower-case ASCII, no trailing dot.

use crate::Error;

/// Longest domain name, in octets, without the trailing dot.
pub const MAX_DOMAIN: usize = 253;
/// Longest label, in octets.
pub const MAX_LABEL: usize = 63;
/// Longest envelope sender accepted (RFC 5321 path limit is 256 octets; allow some slack for
/// source routes and quoting).
pub const MAX_ADDRESS: usize = 1024;

/// A domain name in normal form (lower-case ASCII, no trailing dot), held inline.
#[derive(Clone, Copy)]
pub struct DomainName {
    len: u8,
    bytes: [u8; MAX_DOMAIN],
}

impl DomainName {
    /// Normalises and validates a domain: hostname alphabet (letters, digits, `-`), labels of
    /// 1..=63 octets, at most 253 octets, one trailing dot ignored.
    pub fn parse(name: &[u8]) -> Result<DomainName, Error> {
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.is_empty() || name.len() > MAX_DOMAIN {
            return Err(Error::InvalidDomain);
        }
        let mut out = DomainName {
            len: name.len() as u8,
            bytes: [0; MAX_DOMAIN],
        };
        let mut label = 0usize;
        for (i, &b) in name.iter().enumerate() {
            match b {
                b'.' => {
                    if label == 0 {
                        return Err(Error::InvalidDomain);
                    }
                    label = 0;
                }
                b'a'..=b'z' | b'0'..=b'9' | b'-' => label += 1,
                b'A'..=b'Z' => label += 1,
                _ => return Err(Error::InvalidDomain),
            }
            if label > MAX_LABEL {
                return Err(Error::InvalidDomain);
            }
            out.bytes[i] = b.to_ascii_lowercase();
        }
        if label == 0 {
            return Err(Error::InvalidDomain);
        }
        Ok(out)
    }

    /// The normalised bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The parent suffixes of this name, longest first, excluding the name itself
    /// (`a.b.c` gives `b.c`, then `c`).
    pub fn parents(&self) -> impl Iterator<Item = &[u8]> {
        let b = self.as_bytes();
        b.iter()
            .enumerate()
            .filter(|&(_, &c)| c == b'.')
            .map(move |(i, _)| &b[i + 1..])
    }
}

impl PartialEq for DomainName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for DomainName {}

impl core::fmt::Debug for DomainName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DomainName({:?})", self.as_str())
    }
}

/// What the envelope sender says about the sending domain.
// A short-lived stack value: boxing the inline name would need an allocator.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The null reverse-path `<>` (or an empty string).
    Null,
    /// `local@domain`.
    Domain(DomainName),
    /// `local@[address literal]`: never a registered domain.
    Literal,
}

/// Parses an envelope sender (`MAIL FROM` argument or the bare address).
///
/// Accepts `<...>` wrapping, quoted local parts that contain `@` (the domain follows the last
/// `@` outside quotes), and source routes (`<@a,@b:user@example.com>`, route ignored).
/// An empty string and `<>` are the null sender.
pub fn parse_sender(raw: &[u8]) -> Result<Sender, Error> {
    if raw.len() > MAX_ADDRESS {
        return Err(Error::InvalidAddress);
    }
    let mut s = trim(raw);
    if s.is_empty() {
        return Ok(Sender::Null);
    }
    match (s.first(), s.last()) {
        (Some(b'<'), Some(b'>')) if s.len() >= 2 => s = trim(&s[1..s.len() - 1]),
        (Some(b'<'), _) | (_, Some(b'>')) => return Err(Error::InvalidAddress),
        _ => {}
    }
    if s.is_empty() {
        return Ok(Sender::Null);
    }
    // Source route: "@a,@b:" prefix.
    if s[0] == b'@' {
        let colon = s
            .iter()
            .position(|&b| b == b':')
            .ok_or(Error::InvalidAddress)?;
        s = &s[colon + 1..];
    }
    // Find the last '@' outside a quoted string.
    let mut in_quotes = false;
    let mut escaped = false;
    let mut at = None;
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            // One unquoted '@' only: `a@b@example.com` is not an address (RFC 5321 local parts
            // carry '@' only inside quotes), and guessing its domain invites spoofing.
            b'@' if !in_quotes => {
                if at.is_some() {
                    return Err(Error::InvalidAddress);
                }
                at = Some(i)
            }
            0..=0x1f | 0x7f => return Err(Error::InvalidAddress),
            b' ' | b'<' | b'>' | b'(' | b')' | b',' | b';' | b'\\' if !in_quotes => {
                return Err(Error::InvalidAddress)
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err(Error::InvalidAddress);
    }
    let at = at.ok_or(Error::InvalidAddress)?;
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if local.is_empty() {
        return Err(Error::InvalidAddress);
    }
    if core::str::from_utf8(local).is_err() {
        return Err(Error::InvalidAddress);
    }
    if domain.first() == Some(&b'[') {
        if domain.len() < 3 || domain.last() != Some(&b']') {
            return Err(Error::InvalidAddress);
        }
        let inner = &domain[1..domain.len() - 1];
        if inner
            .iter()
            .any(|&b| !(b.is_ascii_graphic()) || b == b'[' || b == b']' || b == b'\\')
        {
            return Err(Error::InvalidAddress);
        }
        return Ok(Sender::Literal);
    }
    DomainName::parse(domain)
        .map(Sender::Domain)
        .map_err(|_| Error::InvalidAddress)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The domain part of a login such as `alice@contoso.com` (for SASL attribution), if it has one.
pub fn login_domain(login: &[u8]) -> Option<DomainName> {
    let at = login.iter().rposition(|&b| b == b'@')?;
    DomainName::parse(&login[at + 1..]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(s: &str) -> Sender {
        parse_sender(s.as_bytes()).unwrap()
    }
    fn name(s: &Sender) -> &str {
        match s {
            Sender::Domain(d) => d.as_str(),
            _ => panic!("not a domain: {s:?}"),
        }
    }

    #[test]
    fn forms() {
        assert_eq!(name(&dom("alice@Contoso.COM")), "contoso.com");
        assert_eq!(name(&dom("<alice@contoso.com.>")), "contoso.com");
        assert_eq!(
            name(&dom("<@relay.example,@b.example:user@example.com>")),
            "example.com"
        );
        assert_eq!(name(&dom("\"a@b\"@example.org")), "example.org");
        assert_eq!(name(&dom("\"a\\\"@b\"@example.org")), "example.org");
        assert_eq!(dom(""), Sender::Null);
        assert_eq!(dom("<>"), Sender::Null);
        assert_eq!(dom("user@[192.0.2.1]"), Sender::Literal);
        assert_eq!(dom("user@[IPv6:2001:db8::1]"), Sender::Literal);
    }

    #[test]
    fn malformed() {
        let long_label = [b'a'; 64];
        let mut a = heapless::Vec::<u8, 400>::new();
        a.extend_from_slice(b"x@").unwrap();
        a.extend_from_slice(&long_label).unwrap();
        a.extend_from_slice(b".com").unwrap();
        let mut long = heapless::Vec::<u8, 400>::new();
        long.extend_from_slice(b"x@").unwrap();
        for _ in 0..64 {
            long.extend_from_slice(b"abc.").unwrap();
        }
        long.extend_from_slice(b"com").unwrap();
        for bad in [
            &b"alice"[..],
            b"alice@",
            b"@example.com",
            b"alice@example..com",
            b"alice@.example.com",
            b"alice@exa mple.com",
            b"alice@ex_ample.com",
            b"alice@b\xc3\xbccher.de",
            b"<alice@example.com",
            b"alice@example.com>",
            b"\"alice@example.com",
            b"alice@[]",
            b"alice@[1.2.3.4",
            b"a\x00b@example.com",
            b"<@relay.example user@example.com>",
            &a,
            &long,
        ] {
            assert_eq!(parse_sender(bad), Err(Error::InvalidAddress), "{:?}", bad);
        }
    }

    #[test]
    fn domain_limits() {
        let mut ok = heapless::Vec::<u8, 300>::new();
        // 63-octet labels: 63*3 + 3 dots + "com" ... build exactly 253
        for _ in 0..3 {
            ok.extend_from_slice(&[b'a'; 63]).unwrap();
            ok.push(b'.').unwrap();
        }
        ok.extend_from_slice(&[b'b'; 61]).unwrap();
        assert_eq!(ok.len(), 253);
        assert!(DomainName::parse(&ok).is_ok());
        ok.push(b'.').unwrap();
        assert!(
            DomainName::parse(&ok).is_ok(),
            "one trailing dot is ignored"
        );
        ok.push(b'.').unwrap();
        assert!(DomainName::parse(&ok).is_err());
        ok.truncate(253);
        ok.push(b'c').unwrap();
        assert!(DomainName::parse(&ok).is_err(), "254 octets");
    }

    #[test]
    fn parents() {
        let d = DomainName::parse(b"a.b.example.com").unwrap();
        let mut it = d.parents();
        assert_eq!(it.next(), Some(&b"b.example.com"[..]));
        assert_eq!(it.next(), Some(&b"example.com"[..]));
        assert_eq!(it.next(), Some(&b"com"[..]));
        assert_eq!(it.next(), None);
    }
}
