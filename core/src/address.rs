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
        let name = validate_domain(name)?;
        let mut out = DomainName {
            len: name.len() as u8,
            bytes: [0; MAX_DOMAIN],
        };
        for (o, &b) in out.bytes.iter_mut().zip(name) {
            *o = b.to_ascii_lowercase();
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
        parents(self.as_bytes())
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

const LABEL_BYTE: u8 = 1;
const DOT: u8 = 2;
/// The hostname alphabet: letters, digits and `-` make labels; `.` separates them.
const HOSTNAME: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' {
            t[b] = LABEL_BYTE;
        } else if c == b'.' {
            t[b] = DOT;
        }
        b += 1;
    }
    t
};

/// Validates a domain without copying it: hostname alphabet (letters, digits, `-`), labels of
/// 1..=63 octets, at most 253 octets; returns it without its one optional trailing dot. The
/// result may be in any case: lookups fold case as they hash and compare (for this alphabet,
/// setting bit `0x20` of every byte is exactly ASCII lower-casing).
pub fn validate_domain(name: &[u8]) -> Result<&[u8], Error> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_DOMAIN {
        return Err(Error::InvalidDomain);
    }
    // A label at a time: its bytes are found with one table lookup each, then its length and
    // what ends it are checked.
    let mut rest = name;
    loop {
        let len = rest
            .iter()
            .position(|&b| HOSTNAME[b as usize] != LABEL_BYTE)
            .unwrap_or(rest.len());
        if !(1..=MAX_LABEL).contains(&len) {
            return Err(Error::InvalidDomain);
        }
        match rest.get(len) {
            None => return Ok(name),
            Some(&b) if HOSTNAME[b as usize] == DOT => rest = &rest[len + 1..],
            Some(_) => return Err(Error::InvalidDomain),
        }
    }
}

/// The parent suffixes of a domain, longest first, excluding the name itself
/// (`a.b.c` gives `b.c`, then `c`).
pub fn parents(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    name.iter()
        .enumerate()
        .filter(|&(_, &c)| c == b'.')
        .map(move |(i, _)| &name[i + 1..])
}

/// What the envelope sender says about the sending domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender<'a> {
    /// The null reverse-path `<>` (or an empty string).
    Null,
    /// `local@domain`: the domain, validated, in the case it was written (see
    /// [`validate_domain`]).
    Domain(&'a [u8]),
    /// `local@[address literal]`: never a registered domain.
    Literal,
}

/// Parses an envelope sender (`MAIL FROM` argument or the bare address).
///
/// Accepts `<...>` wrapping, quoted local parts that contain `@` (the domain follows the last
/// `@` outside quotes), and source routes (`<@a,@b:user@example.com>`, route ignored).
/// An empty string and `<>` are the null sender.
pub fn parse_sender(raw: &[u8]) -> Result<Sender<'_>, Error> {
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
    match plain_domain(s) {
        Some(domain) => Ok(Sender::Domain(domain)),
        None => address(s),
    }
}

/// `local@domain` (after `<>` and a source route are taken off), every form.
fn address(s: &[u8]) -> Result<Sender<'_>, Error> {
    // The domain follows the last '@' (a domain never holds '@' or quotes, so a last '@'
    // inside quotes leaves an invalid domain and the address is refused below).
    let at = s
        .iter()
        .rposition(|&b| b == b'@')
        .ok_or(Error::InvalidAddress)?;
    check_local_part(&s[..at])?;
    let domain = &s[at + 1..];
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
    validate_domain(domain)
        .map(Sender::Domain)
        .map_err(|_| Error::InvalidAddress)
}

/// The common address, `local@domain` with an unquoted ASCII local part, in one backward pass
/// over the domain (which finds the `@` as it validates the labels) and one forward pass over
/// the local part: the domain as [`validate_domain`] gives it. `None` for anything else
/// (quotes, literals, non-ASCII, anything invalid), which the general code decides; so
/// wherever this answers, the answer is the general code's.
#[inline]
fn plain_domain(s: &[u8]) -> Option<&[u8]> {
    let end = match s.last() {
        Some(b'.') => s.len() - 1, // one trailing dot is allowed, and not part of the name
        _ => s.len(),
    };
    // Backwards: `i` is where the bytes still to read end, `label_end` where the current
    // label ends; a label's length is known when the byte before it is not a label byte.
    let (mut i, mut label_end) = (end, end);
    let stop = loop {
        let b = *s[..i].last()?;
        let class = HOSTNAME[b as usize];
        if class == LABEL_BYTE {
            i -= 1;
            continue;
        }
        if !(1..=MAX_LABEL).contains(&(label_end - i)) {
            return None;
        }
        if class != DOT {
            break b;
        }
        i -= 1;
        label_end = i;
    };
    if stop != b'@' {
        return None;
    }
    // `s[i - 1]` is the '@'.
    let (local, domain) = (&s[..i - 1], &s[i..end]);
    let plain_local = !local.is_empty() && local.iter().all(|&b| LOCAL[b as usize] && b < 0x80);
    (plain_local && domain.len() <= MAX_DOMAIN).then_some(domain)
}

/// Bytes a local part may hold outside quotes (RFC 5321 atext and '.', plus UTF-8 bytes for
/// SMTPUTF8 local parts).
const LOCAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || c >= 0x80
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'/'
                    | b'='
                    | b'?'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'{'
                    | b'|'
                    | b'}'
                    | b'~'
                    | b'.'
            );
        b += 1;
    }
    t
};

/// Checks a local part: atext outside quotes; inside quotes anything printable with `\`
/// escapes; no control characters; UTF-8.
fn check_local_part(local: &[u8]) -> Result<(), Error> {
    if local.is_empty() {
        return Err(Error::InvalidAddress);
    }
    // The common case: one table lookup a byte (the table has no quote, so no quotes).
    if !local.iter().all(|&b| LOCAL[b as usize]) {
        if !local.contains(&b'"') {
            return Err(Error::InvalidAddress);
        }
        check_quoted(local)?;
    }
    if !local.is_ascii() && core::str::from_utf8(local).is_err() {
        return Err(Error::InvalidAddress);
    }
    Ok(())
}

/// A local part with quotes: atext outside them; inside, anything printable with `\`
/// escapes; no control characters.
fn check_quoted(local: &[u8]) -> Result<(), Error> {
    let mut in_quotes = false;
    let mut escaped = false;
    for &b in local {
        if escaped {
            escaped = false;
            if b < 0x20 || b == 0x7f {
                return Err(Error::InvalidAddress);
            }
            continue;
        }
        match b {
            0..=0x1f | 0x7f => return Err(Error::InvalidAddress),
            b'"' => in_quotes = !in_quotes,
            b'\\' if in_quotes => escaped = true,
            _ if in_quotes => {}
            _ if LOCAL[b as usize] => {}
            _ => return Err(Error::InvalidAddress),
        }
    }
    if in_quotes || escaped {
        return Err(Error::InvalidAddress);
    }
    Ok(())
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
pub fn login_domain(login: &[u8]) -> Option<&[u8]> {
    let at = login.iter().rposition(|&b| b == b'@')?;
    validate_domain(&login[at + 1..]).ok()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn dom(s: &str) -> Sender<'_> {
        parse_sender(s.as_bytes()).unwrap()
    }
    fn name(s: &Sender) -> String {
        match s {
            Sender::Domain(d) => DomainName::parse(d).unwrap().as_str().into(),
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

    /// `validate_domain` as first written (a running label length), for comparison.
    fn validate_reference(name: &[u8]) -> Result<&[u8], Error> {
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.is_empty() || name.len() > MAX_DOMAIN {
            return Err(Error::InvalidDomain);
        }
        let mut label = 0usize;
        for &b in name {
            match HOSTNAME[b as usize] {
                LABEL_BYTE => {
                    label += 1;
                    if label > MAX_LABEL {
                        return Err(Error::InvalidDomain);
                    }
                }
                DOT if label > 0 => label = 0,
                _ => return Err(Error::InvalidDomain),
            }
        }
        if label == 0 {
            return Err(Error::InvalidDomain);
        }
        Ok(name)
    }

    #[test]
    fn the_plain_path_answers_as_the_general_one() {
        // Every string of up to 6 bytes over an alphabet of the bytes that steer the parsers,
        // then local parts and labels around their limits: wherever `plain_domain` answers,
        // the general code gives the same domain.
        let alphabet = [b'a', b'.', b'@', b'"', b'-', 0xC3, b' ', b'[', b'_'];
        let k = alphabet.len();
        let mut buf = [0u8; 6];
        let mut answered = 0u32;
        for len in 0..=buf.len() {
            for code in 0..k.pow(len as u32) {
                let mut c = code;
                for b in buf[..len].iter_mut() {
                    *b = alphabet[c % k];
                    c /= k;
                }
                let s = &buf[..len];
                if let Some(d) = plain_domain(s) {
                    answered += 1;
                    assert_eq!(address(s), Ok(Sender::Domain(d)), "{s:?}");
                }
            }
        }
        assert!(answered > 1000, "{answered}");
        let mut v = heapless::Vec::<u8, 300>::new();
        for local in [0usize, 1, 3] {
            for a in [0usize, 1, 62, 63, 64] {
                for b in [0usize, 1, 62, 63, 64] {
                    for tail in [&b""[..], b".", b".."] {
                        v.clear();
                        v.extend(core::iter::repeat_n(b'l', local));
                        v.push(b'@').unwrap();
                        v.extend(core::iter::repeat_n(b'x', a));
                        v.push(b'.').unwrap();
                        v.extend(core::iter::repeat_n(b'y', b));
                        v.extend_from_slice(tail).unwrap();
                        let general = address(&v);
                        match plain_domain(&v) {
                            Some(d) => assert_eq!(general, Ok(Sender::Domain(d))),
                            None => assert!(
                                general.is_err(),
                                "{local} {a} {b} {tail:?}: plain code refused a valid address"
                            ),
                        }
                    }
                }
            }
        }
        for len in 250..=256 {
            v.clear();
            v.extend_from_slice(b"u@").unwrap();
            for i in 0..len {
                v.push(if i % 50 == 49 { b'.' } else { b'z' }).unwrap();
            }
            if let Some(d) = plain_domain(&v) {
                assert_eq!(address(&v), Ok(Sender::Domain(d)), "{len}");
            } else {
                assert!(address(&v).is_err(), "{len}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4_000))]

        /// Long and odd strings, over the bytes that steer the parsers: wherever the plain
        /// path answers, the general code gives the same domain.
        #[test]
        fn the_plain_path_agrees_on_any_string(
            s in proptest::collection::vec(proptest::sample::select(&b"ab0-._@\"<>[] \\\xc3\x80Z"[..]), 0..300)
        ) {
            if let Some(d) = plain_domain(&s) {
                proptest::prop_assert_eq!(address(&s), Ok(Sender::Domain(d)));
            }
        }

        /// `local@label.label...` with labels around the 63-byte limit and domains around 253.
        #[test]
        fn the_plain_path_agrees_on_addresses(
            local in 0usize..4,
            labels in proptest::collection::vec(0usize..66, 1..6),
            dot in proptest::bool::ANY,
        ) {
            let mut v = std::vec::Vec::new();
            v.extend(core::iter::repeat_n(b'u', local));
            v.push(b'@');
            for (k, n) in labels.iter().enumerate() {
                if k > 0 {
                    v.push(b'.');
                }
                v.extend(core::iter::repeat_n(b'a' + (k as u8), *n));
            }
            if dot {
                v.push(b'.');
            }
            match plain_domain(&v) {
                Some(d) => proptest::prop_assert_eq!(address(&v), Ok(Sender::Domain(d))),
                None => proptest::prop_assert!(address(&v).is_err()),
            }
        }
    }

    #[test]
    fn validate_domain_as_first_written() {
        // Every string of up to 6 bytes over an alphabet of a label byte, a dot and a bad byte,
        // then labels around the 63-byte limit in every position, and names around 253.
        let alphabet = [b'a', b'.', b'_'];
        let mut buf = [0u8; 6];
        for len in 0..=buf.len() {
            for code in 0..3usize.pow(len as u32) {
                let mut c = code;
                for b in buf[..len].iter_mut() {
                    *b = alphabet[c % 3];
                    c /= 3;
                }
                let s = &buf[..len];
                assert_eq!(validate_domain(s), validate_reference(s), "{s:?}");
            }
        }
        let mut v = heapless::Vec::<u8, 300>::new();
        for a in [0usize, 1, 62, 63, 64] {
            for b in [0usize, 1, 62, 63, 64] {
                for dots in [0usize, 1, 2] {
                    v.clear();
                    v.extend(core::iter::repeat_n(b'x', a));
                    v.extend(core::iter::repeat_n(b'.', dots));
                    v.extend(core::iter::repeat_n(b'y', b));
                    assert_eq!(
                        validate_domain(&v),
                        validate_reference(&v),
                        "{a} {dots} {b}"
                    );
                    v.push(b'.').unwrap();
                    assert_eq!(
                        validate_domain(&v),
                        validate_reference(&v),
                        "{a} {dots} {b}."
                    );
                }
            }
        }
        for len in 250..=256 {
            v.clear();
            for i in 0..len {
                v.push(if i % 50 == 49 { b'.' } else { b'z' }).unwrap();
            }
            assert_eq!(validate_domain(&v), validate_reference(&v), "{len}");
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
