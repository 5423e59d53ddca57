//! IDNA at the edge: U-labels become A-labels before anything reaches the core (which only
//! knows ASCII domains). The bindings call these on every name a caller hands them.

use std::string::String;

/// A domain name in A-labels (`bücher.example` → `xn--bcher-kva.example`). `None` when the
/// name is already ASCII (nothing to do) or is not a valid internationalised name (the core
/// then refuses it as it is).
pub fn domain_to_ascii(name: &str) -> Option<String> {
    if name.is_ascii() {
        return None;
    }
    idna::domain_to_ascii(name).ok()
}

/// An address (`alice@bücher.example`, `<alice@bücher.example>`, a login) with its domain in
/// A-labels; the local part is left alone. `None` when the domain is ASCII already or cannot
/// be converted.
pub fn address_to_ascii(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    let (domain, close) = match domain.strip_suffix('>') {
        Some(d) => (d, ">"),
        None => (domain, ""),
    };
    let ascii = domain_to_ascii(domain)?;
    let mut out = String::with_capacity(local.len() + ascii.len() + 2);
    out.push_str(local);
    out.push('@');
    out.push_str(&ascii);
    out.push_str(close);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_u_labels_only() {
        assert_eq!(
            domain_to_ascii("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(domain_to_ascii("example.com"), None);
        assert_eq!(
            address_to_ascii("<jürgen@bücher.example>").as_deref(),
            Some("<jürgen@xn--bcher-kva.example>")
        );
        assert_eq!(address_to_ascii("alice@example.com"), None);
        assert_eq!(address_to_ascii("no-at-sign"), None);
        assert_eq!(domain_to_ascii("bad\u{0}name.example"), None);
    }
}
