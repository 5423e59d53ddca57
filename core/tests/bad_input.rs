//! Malformed input of every kind: exact 5.1.7 refusals, errors as values, never a panic.

mod common;
use common::*;
use proptest::prelude::*;

fn rules() -> RuleSet {
    let mut r = RuleSet::default();
    r.threshold.window = 3600;
    r.unregistered.window = 3600;
    r.unregistered.limit = 5;
    r
}

fn setup() -> Engine<HeapStorage> {
    let mut e = engine_with(cap(), rules());
    let t = e.add_tenant("contoso", true).unwrap();
    e.add_domain(t, "example.com", true, true).unwrap();
    e.add_connector(t, "cert", Some("mx.example.com"), 1)
        .unwrap();
    let c = e.add_connector(t, "hq", None, 1).unwrap();
    e.add_connector_range(c, cidr("203.0.113.0/24")).unwrap();
    e.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
    let u = e.add_tenant("fabrikam", false).unwrap();
    e.add_domain(u, "fabrikam.example", false, true).unwrap();
    e
}

fn label(n: usize) -> String {
    "a".repeat(n)
}

/// A domain of exactly `n` octets made of 63-octet labels.
fn domain_of_len(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        if !s.is_empty() {
            s.push('.');
        }
        let left = n - s.len();
        // Never leave a single octet for a label after a dot.
        let take = if left > 63 {
            if left - 63 == 1 {
                62
            } else {
                63
            }
        } else {
            left
        };
        s.push_str(&label(take));
    }
    assert_eq!(s.len(), n);
    s
}

fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut add = |class: &'static str, s: &[u8]| v.push((class, s.to_vec()));
    // No domain.
    for s in [
        "alice", "alice@", "<alice>", "alice@.", "<alice@>", "@", "<@>", "a.b.c",
    ] {
        add("no domain", s.as_bytes());
    }
    // No local part.
    for s in ["@example.com", "<@example.com>"] {
        add("no local part", s.as_bytes());
    }
    // Empty label.
    for s in [
        "a@example..com",
        "a@.example.com",
        "a@example.com..",
        "<a@..>",
    ] {
        add("empty label", s.as_bytes());
    }
    // Label over 63 octets.
    add("label > 63", format!("a@{}.com", label(64)).as_bytes());
    add("label > 63", format!("a@x.{}", label(64)).as_bytes());
    add("label > 63", format!("<a@{}>", label(200)).as_bytes());
    // Domain over 253 octets (with and without a trailing dot).
    add(
        "domain > 253",
        format!("a@{}", domain_of_len(254)).as_bytes(),
    );
    add(
        "domain > 253",
        format!("a@{}.", domain_of_len(254)).as_bytes(),
    );
    add(
        "domain > 253",
        format!("a@{}..", domain_of_len(253)).as_bytes(),
    );
    // Bytes outside the hostname alphabet.
    for s in [
        "a@ex_ample.com",
        "a@exa mple.com",
        "a@example.com;",
        "a@exa!mple.com",
        "a@example.com/x",
        "a@exam\\ple.com",
        "a@exa%mple.com",
        "a@example.com\r\n",
        "a@exa\tmple.com",
        "a@*.example.com",
        "a@example.com:25",
        "a@exa\"mple.com",
        "a@exa(mple).com",
    ] {
        add("hostname alphabet", s.as_bytes());
    }
    // Non-ASCII.
    add("non-ASCII", "a@bücher.de".as_bytes());
    add("non-ASCII", "a@пример.рф".as_bytes());
    add("non-ASCII", b"a@exam\xffple.com");
    add("non-ASCII", b"\xff\xfe@example.com");
    add("non-ASCII", b"a\xc3@example.com");
    // Unbalanced angle brackets.
    for s in [
        "<a@example.com",
        "a@example.com>",
        "<<a@example.com>",
        "<a@example.com>>",
        "<<a@example.com>>",
        "<",
        ">",
        "<<>",
        "<>>",
        "><",
        "a<b@example.com",
        "a>b@example.com",
    ] {
        add("unbalanced <>", s.as_bytes());
    }
    // Unterminated quotes.
    for s in [
        "\"a@example.com",
        "\"a\"@\"example.com",
        "\"a@b\\\"@example.com",
        "<\"alice@example.com>",
        "\"",
        "\"\"\"@example.com",
    ] {
        add("unterminated quote", s.as_bytes());
    }
    // NUL bytes.
    for s in [
        &b"a\0@example.com"[..],
        b"a@exa\0mple.com",
        b"\0",
        b"<a@example.com>\0",
        b"\"a\0\"@example.com",
        b"a@example.com\0",
    ] {
        add("NUL", s);
    }
    // Broken literals and source routes.
    for s in [
        "a@[]",
        "a@[1.2.3.4",
        "a@[1.2.3.4]x",
        "a@[1.2.3.4]]",
        "a@[[1.2.3.4]",
        "<@relay.example user@example.com>",
        "<@relay.example,@b.example>",
        "<@relay.example:>",
    ] {
        add("literal / route", s.as_bytes());
    }
    // An '@' in an unquoted local part.
    add("unquoted @", b"a@b@example.com");
    add("unquoted @", b"<a@b@example.com>");
    // Absurdly long.
    add(
        "too long",
        format!("{}@example.com", label(2000)).as_bytes(),
    );
    v
}

#[test]
fn malformed_senders_are_5_1_7_and_not_recorded() {
    let mut e = setup();
    let mut wrong = Vec::new();
    for (class, raw) in malformed() {
        for tenant in [Some("contoso"), None, Some("nobody")] {
            let m = Message {
                mail_from: &raw,
                tenant,
                client_ip: Some(ip("203.0.113.1")),
                recipients: 1,
                ..Message::default()
            };
            let d = e.check(T0, &m);
            let rec = e.record(T0, &m, Verdict::Spam);
            let ok = d.reason == Some(Reason::InvalidSender)
                && d.code() == Some("5.1.7")
                && d.reply().is_some_and(|r| r.starts_with("550 5.1.7 "))
                && d.sender_class.is_none()
                && !d.accepted()
                && rec == Err(Error::InvalidAddress);
            if !ok {
                wrong.push(format!(
                    "{class}: {:?} (tenant {tenant:?}) -> {:?} / record {:?}",
                    String::from_utf8_lossy(&raw),
                    d.reason,
                    rec
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "malformed senders not refused with 5.1.7:\n{}",
        wrong.join("\n")
    );
    let st = e.status(e.tenant("contoso").unwrap(), T0).unwrap();
    assert_eq!(st.counters.total, 0, "nothing malformed was counted");
}

#[test]
fn evaluate_refuses_malformed_without_counting() {
    let mut e = setup();
    for (_, raw) in malformed() {
        let m = Message {
            mail_from: &raw,
            tenant: Some("contoso"),
            ..Message::default()
        };
        let (d, ev) = e.evaluate(T0, &m, Verdict::Spam);
        assert!(!d.accepted(), "{:?}", String::from_utf8_lossy(&raw));
        assert!(ev.is_empty());
    }
    let st = e.status(e.tenant("contoso").unwrap(), T0).unwrap();
    assert_eq!(
        (
            st.counters.total,
            st.counters.suspicious,
            st.counters.unregistered
        ),
        (0, 0, 0)
    );
}

#[test]
fn well_formed_edge_cases_parse() {
    let e = setup();
    let ok = |s: &str| e.check(T0, &from("contoso", s));
    // Longest label and longest domain are fine.
    let d = ok(&format!("a@{}.com", label(63)));
    assert!(d.accepted(), "{d:?}");
    assert_eq!(d.sender_class, Some(SenderClass::Unregistered));
    let d = ok(&format!("a@{}", domain_of_len(253)));
    assert!(d.accepted(), "{d:?}");
    let d = ok(&format!("a@{}.", domain_of_len(253)));
    assert!(d.accepted(), "one trailing dot is ignored: {d:?}");
    for (s, class) in [
        ("a@example.com", SenderClass::Registered),
        ("A@EXAMPLE.COM", SenderClass::Registered),
        ("a@example.com.", SenderClass::Registered),
        ("<a@example.com>", SenderClass::Registered),
        (" <a@example.com> ", SenderClass::Registered),
        ("\"a@b\"@example.com", SenderClass::Registered),
        (
            "\"a@evil.example\"@mail.example.com",
            SenderClass::Registered,
        ),
        (
            "\"x\\\"@evil.example\"@example.com",
            SenderClass::Registered,
        ),
        (
            "<@relay.example,@b.example:user@example.com>",
            SenderClass::Registered,
        ),
        (
            "<@relay.example:user@evil.example>",
            SenderClass::Unregistered,
        ),
        ("a@[192.0.2.1]", SenderClass::Unregistered),
        ("a@[IPv6:2001:db8::1]", SenderClass::Unregistered),
        ("<>", SenderClass::Null),
        ("", SenderClass::Null),
        ("first.last+tag@x-y.example.com", SenderClass::Registered),
        ("a@xn--bcher-kva.example", SenderClass::Unregistered),
    ] {
        let d = ok(s);
        assert!(d.accepted(), "{s:?}: {d:?}");
        assert_eq!(d.sender_class, Some(class), "{s:?}");
    }
}

#[test]
fn empty_and_invalid_tenant_ids() {
    let mut e = setup();
    assert_eq!(e.add_tenant("", true), Err(Error::InvalidTenantId));
    assert_eq!(e.add_tenant(" ", true), Err(Error::InvalidTenantId));
    assert_eq!(
        e.add_tenant(&"t".repeat(256), true),
        Err(Error::InvalidTenantId)
    );
    assert_eq!(e.tenant(""), None);
    let m = Message {
        tenant: Some(""),
        ..Message::new("a@example.com")
    };
    let d = e.check(T0, &m);
    assert_eq!(d.reason, Some(Reason::Unattributed));
    assert_eq!(d.reply(), Some(R764));
    assert_eq!(e.record(T0, &m, Verdict::Clean), Err(Error::UnknownTenant));
    let long = "t".repeat(10_000);
    let m = Message {
        tenant: Some(&long),
        ..Message::new("a@example.com")
    };
    assert_eq!(e.check(T0, &m).reason, Some(Reason::Unattributed));
    // Operator calls with tenant ids that do not exist.
    let ghost = TenantId(u32::MAX);
    assert_eq!(e.status(ghost, T0), Err(Error::UnknownTenant));
    assert_eq!(e.release(ghost, None, T0), Err(Error::UnknownTenant));
    assert_eq!(e.mark_lapsed(ghost, T0), Err(Error::UnknownTenant));
    assert_eq!(e.mark_active(ghost, T0), Err(Error::UnknownTenant));
    assert_eq!(e.remove_tenant(ghost), Err(Error::UnknownTenant));
    assert_eq!(e.set_licensed(ghost, true), Err(Error::UnknownTenant));
    assert_eq!(e.set_overrides(ghost, None), Err(Error::UnknownTenant));
    assert_eq!(
        e.add_domain(ghost, "a.example", false, true),
        Err(Error::UnknownTenant)
    );
    assert_eq!(
        e.grant_exception(ghost, cidr("192.0.2.0/24"), 5),
        Err(Error::UnknownTenant)
    );
    assert!(e.add_connector(ghost, "x", None, 1).is_err());
    assert_eq!(
        e.remove_connector(ConnectorId(u32::MAX)),
        Err(Error::NotFound)
    );
    assert_eq!(
        e.add_connector_range(ConnectorId(9999), cidr("10.0.0.0/8")),
        Err(Error::NotFound)
    );
    assert_eq!(e.audit(ghost).count(), 0);
    assert_eq!(e.tenant_name(ghost), "");
    assert!(e.tenant_name_is(ghost, ""));
    assert!(!e.tenant_name_is(ghost, "ghost"));
    assert!(e.connector_info(ConnectorId(u32::MAX)).is_none());
}

#[test]
fn operator_input_is_validated() {
    let mut e = setup();
    let t = e.tenant("contoso").unwrap();
    let (l64, d254) = (label(64), domain_of_len(254));
    for bad in ["", ".", "a..b", "exa mple.com", "bücher.de", &l64, &d254] {
        assert_eq!(
            e.add_domain(t, bad, false, true),
            Err(Error::InvalidDomain),
            "{bad:?}"
        );
    }
    assert!(e.add_connector(t, "c1", Some("bad..cert"), 1).is_err());
    assert!(e.add_connector(t, &"n".repeat(256), None, 1).is_err());
    assert_eq!(e.connector(t, "c1"), None);
    for bad in [
        "",
        "192.0.2.0/33",
        "192.0.2.1/24",
        "::/129",
        "x",
        "1.2.3.4/-1",
        "300.1.1.1",
    ] {
        assert_eq!(Cidr::parse(bad), Err(Error::InvalidRange), "{bad:?}");
    }
    let mut r = rules();
    r.threshold.window = 0;
    assert!(matches!(e.set_rules(r), Err(Error::InvalidParameter(_))));
    let mut r = rules();
    r.threshold.min_messages = 0;
    assert!(matches!(e.set_rules(r), Err(Error::InvalidParameter(_))));
    let mut r = rules();
    r.threshold.max_ratio_ppm = RATIO_ONE + 1;
    assert!(matches!(e.set_rules(r), Err(Error::InvalidParameter(_))));
    let mut r = rules();
    r.unregistered.limit = 0;
    assert!(matches!(e.set_rules(r), Err(Error::InvalidParameter(_))));
    let mut r = rules();
    r.unregistered.window = 0;
    assert!(matches!(e.set_rules(r), Err(Error::InvalidParameter(_))));
    let mut r = rules();
    r.threshold.block = BlockDuration::Seconds(0);
    assert!(matches!(e.set_rules(r), Err(Error::InvalidParameter(_))));
    assert!(matches!(
        Engine::new(HeapStorage::new(&cap()), cap(), r),
        Err(Error::InvalidParameter(_))
    ));
    // The rejected rules changed nothing.
    assert_eq!(*e.rules(), rules());
}

#[test]
fn prefix_longer_than_128_is_invalid_range() {
    let mut e = setup();
    let t = e.tenant("contoso").unwrap();
    let c = e.connector(t, "hq").unwrap();
    let bad = Cidr {
        network: 0,
        len: 200,
    };
    assert_eq!(
        e.grant_exception(t, bad, u64::MAX),
        Err(Error::InvalidRange)
    );
    assert_eq!(e.add_connector_range(c, bad), Err(Error::InvalidRange));
    assert_eq!(e.add_low_reputation(bad), Err(Error::InvalidRange));
}

#[test]
fn removing_tenant_with_odd_exception_never_panics() {
    // Whatever the engine accepted, removing it again must not panic.
    let mut e = setup();
    let t = e.tenant("fabrikam").unwrap();
    let odd = Cidr {
        network: u128::MAX,
        len: 255,
    };
    let _ = e.grant_exception(t, odd, u64::MAX);
    let _ = e.add_low_reputation(Cidr {
        network: 1,
        len: 130,
    });
    let _ = e.check(
        T0,
        &Message {
            client_ip: Some(ip("::1")),
            ..from("fabrikam", "a@fabrikam.example")
        },
    );
    let _ = e.remove_low_reputation(Cidr {
        network: 1,
        len: 130,
    });
    e.remove_tenant(t).unwrap();
    assert_eq!(e.tenant("fabrikam"), None);
}

#[test]
fn removing_connector_with_odd_range_never_panics() {
    let mut e = setup();
    let t = e.tenant("contoso").unwrap();
    let c = e.connector(t, "hq").unwrap();
    let _ = e.add_connector_range(
        c,
        Cidr {
            network: 7,
            len: 129,
        },
    );
    e.remove_connector(c).unwrap();
}

#[test]
fn unmasked_cidr_is_rejected_or_normalised() {
    // Host bits below the prefix (192.0.2.7/24 built by hand): either refuse it, or treat it
    // as 192.0.2.0/24. Silently storing a range that can never match is neither.
    let mut e = setup();
    let t = e.tenant("fabrikam").unwrap();
    let host = Cidr::host(ip("192.0.2.7"));
    let unmasked = Cidr {
        network: host.network,
        len: 120,
    };
    match e.grant_exception(t, unmasked, u64::MAX) {
        Err(err) => assert_eq!(err, Error::InvalidRange),
        Ok(()) => {
            let m = Message {
                client_ip: Some(ip("192.0.2.8")),
                ..from("fabrikam", "a@fabrikam.example")
            };
            assert!(
                e.check(T0, &m).accepted(),
                "exception granted but never matches"
            );
        }
    }
}

// ----- capacities and storage ---------------------------------------------------------------

#[test]
fn zero_capacities_are_invalid() {
    let base = cap();
    for (what, c) in [
        ("tenants", Capacity { tenants: 0, ..base }),
        (
            "threshold_slots",
            Capacity {
                threshold_slots: 0,
                ..base
            },
        ),
        (
            "unregistered_slots",
            Capacity {
                unregistered_slots: 0,
                ..base
            },
        ),
        (
            "audit_depth",
            Capacity {
                audit_depth: 0,
                ..base
            },
        ),
    ] {
        let r = Engine::new(HeapStorage::new(&c), c, RuleSet::default());
        assert!(
            matches!(r, Err(Error::InvalidCapacity(_))),
            "{what}: {:?}",
            r.err()
        );
        assert!(
            matches!(c.validate(), Err(Error::InvalidCapacity(_))),
            "{what}"
        );
    }
    let huge = Capacity {
        tenants: u32::MAX,
        ..base
    };
    assert!(matches!(huge.validate(), Err(Error::InvalidCapacity(_))));
}

struct Tables {
    tenants: Vec<TenantRecord>,
    tenant_index: Vec<u32>,
    domains: Vec<DomainEntry>,
    connectors: Vec<ConnectorRecord>,
    connector_index: Vec<u32>,
    ranges: Vec<RangeEntry>,
    overrides: Vec<RuleSetRecord>,
    counters: Vec<u32>,
    audit: Vec<Event>,
    names: Vec<u8>,
}

impl Tables {
    fn new(l: &Layout, short: Option<usize>) -> Tables {
        let n = |i: usize, len: usize| if short == Some(i) { len - 1 } else { len };
        Tables {
            tenants: vec![TenantRecord::default(); n(0, l.tenants)],
            tenant_index: vec![0; n(1, l.tenant_index)],
            domains: vec![DomainEntry::default(); n(2, l.domains)],
            connectors: vec![ConnectorRecord::default(); n(3, l.connectors)],
            connector_index: vec![0; n(9, l.connector_index)],
            ranges: vec![RangeEntry::default(); n(4, l.ranges)],
            overrides: vec![RuleSetRecord::default(); n(5, l.overrides)],
            counters: vec![0; n(6, l.counters)],
            audit: vec![Event::default(); n(7, l.audit)],
            names: vec![0; n(8, l.names)],
        }
    }
    fn storage(&mut self) -> SliceStorage<'_> {
        SliceStorage(PartsMut {
            tenants: &mut self.tenants,
            tenant_index: &mut self.tenant_index,
            domains: &mut self.domains,
            connectors: &mut self.connectors,
            connector_index: &mut self.connector_index,
            ranges: &mut self.ranges,
            overrides: &mut self.overrides,
            counters: &mut self.counters,
            audit: &mut self.audit,
            names: &mut self.names,
        })
    }
}

#[test]
fn storage_slices_too_short_are_an_error() {
    let c = cap();
    let l = c.layout();
    for i in 0..10 {
        let mut t = Tables::new(&l, Some(i));
        let r = Engine::new(t.storage(), c, RuleSet::default());
        assert!(
            matches!(r, Err(Error::InvalidCapacity(_))),
            "table {i} short: {:?}",
            r.err()
        );
    }
    // Exactly the layout works, over caller-owned slices.
    let mut t = Tables::new(&l, None);
    let mut e = Engine::new(t.storage(), c, RuleSet::default()).unwrap();
    let x = e.add_tenant("x", true).unwrap();
    e.add_domain(x, "x.example", false, true).unwrap();
    assert!(e.check(T0, &from("x", "a@x.example")).accepted());
    // Heap storage for a smaller capacity does not fit a bigger one.
    let small = Capacity { tenants: 2, ..c };
    let r = Engine::new(HeapStorage::new(&small), c, RuleSet::default());
    assert!(matches!(r, Err(Error::InvalidCapacity(_))));
    // Empty slices.
    let mut t = Tables::new(&Capacity { tenants: 1, ..c }.layout(), None);
    t.tenants.clear();
    assert!(matches!(
        Engine::new(t.storage(), c, RuleSet::default()),
        Err(Error::InvalidCapacity(_))
    ));
}

// ----- time ---------------------------------------------------------------------------------

#[test]
fn time_going_backwards_counts_into_the_newest_slot() {
    let mut e = engine_with(cap(), rules()); // 24 slots of 150 s
    let t = e.add_tenant("t", true).unwrap();
    let m = from("t", "a@evil.example");
    e.record(T0 + 1000, &m, Verdict::Spam).unwrap();
    e.record(T0, &m, Verdict::Clean).unwrap(); // 1000 s in the past
    e.record(T0 - 100_000, &m, Verdict::Clean).unwrap(); // far in the past
    for now in [T0 - 100_000, T0, T0 + 1000] {
        let c = e.status(t, now).unwrap().counters;
        assert_eq!(
            (c.total, c.suspicious, c.unregistered),
            (3, 1, 3),
            "at {now}"
        );
    }
    // They all leave the window together with the newest slot (T0+1000 is in slot
    // [T0+900, T0+1050): it is counted while now < T0+900+3600).
    let c = e.status(t, T0 + 900 + 3599).unwrap().counters;
    assert_eq!(c.total, 3);
    let c = e.status(t, T0 + 900 + 3600).unwrap().counters;
    assert_eq!((c.total, c.suspicious, c.unregistered), (0, 0, 0));
}

#[test]
fn extreme_times_do_not_panic() {
    let mut r = rules();
    r.threshold.min_messages = 2;
    r.threshold.min_suspicious = 1;
    r.threshold.renewal_delay = 3600;
    r.unregistered.block = BlockDuration::Seconds(60);
    let mut e = engine_with(cap(), r);
    let t = e.add_tenant("t", false).unwrap();
    e.add_domain(t, "t.example", false, true).unwrap();
    e.add_connector(t, "c", Some("mx.evil.example"), u64::MAX)
        .unwrap();
    e.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
    e.grant_exception(t, cidr("192.0.2.0/24"), 0).unwrap(); // expired since forever
    e.set_recent_connector(u64::MAX);
    let m = from("t", "a@t.example");
    e.record(0, &m, Verdict::Spam).unwrap();
    assert_eq!(e.status(t, 0).unwrap().counters.total, 1);
    assert!(e.check(0, &m).accepted());
    let lowrep = Message {
        client_ip: Some(ip("192.0.2.1")),
        ..m
    };
    assert_eq!(e.check(0, &lowrep).reason, Some(Reason::LowReputationIp));
    e.record(u64::MAX, &m, Verdict::Spam).unwrap();
    assert_eq!(
        e.status(t, u64::MAX).unwrap().counters.total,
        1,
        "the message at 0 left the window"
    );
    assert_eq!(
        e.status(t, 0).unwrap().counters.total,
        1,
        "backwards: newest slot"
    );
    let ev = e.record(u64::MAX, &m, Verdict::Spam).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(e.check(u64::MAX, &m).reason, Some(Reason::TenantThreshold));
    assert_eq!(e.check(0, &m).reason, Some(Reason::TenantThreshold));
    e.release(t, None, u64::MAX).unwrap();
    e.mark_lapsed(t, u64::MAX).unwrap();
    e.mark_active(t, u64::MAX).unwrap();
    let _ = e.check(u64::MAX, &m);
    for i in 0..10 {
        let _ = e.evaluate(u64::MAX - i, &from("t", "x@evil.example"), Verdict::Bulk);
    }
    e.expire(u64::MAX, |_| {});
    e.expire(0, |_| {});
    let _ = e.restricted(u64::MAX).count();
    let _ = e.restricted(0).count();
    let _ = e.suspicious_connectors(0).count();
    let _ = e.suspicious_connectors(u64::MAX).count();
    let _ = e.status(t, u64::MAX).unwrap();
    // Snapshots of such a state round-trip.
    let mut buf = vec![0; e.snapshot_len()];
    e.write_snapshot(&mut buf).unwrap();
    e.restore_snapshot(&buf).unwrap();
    // Huge recipient counts saturate instead of wrapping.
    let mut r = rules();
    r.threshold.count = CountMode::Recipients;
    r.threshold.min_messages = u32::MAX;
    let mut e = engine_with(cap(), r);
    let t = e.add_tenant("t", true).unwrap();
    let big = Message {
        recipients: u32::MAX,
        ..from("t", "<>")
    };
    e.record(T0, &big, Verdict::Clean).unwrap();
    e.record(T0, &big, Verdict::Clean).unwrap();
    assert_eq!(e.status(t, T0).unwrap().counters.total, u32::MAX);
}

// ----- snapshot bytes -----------------------------------------------------------------------

/// outguard's snapshot checksum, re-implemented here so the fuzzer can reach the structure
/// checks behind it (the test verifies it agrees with real snapshots first).
fn checksum(bytes: &[u8]) -> u64 {
    const K0: u64 = 0x9E37_79B9_7F4A_7C15;
    const K1: u64 = 0x2D35_8DCC_AA6C_78A5;
    fn fold_mul(a: u64, b: u64) -> u64 {
        let r = (a as u128).wrapping_mul(b as u128);
        (r as u64) ^ ((r >> 64) as u64)
    }
    let mut h = 0x6f75_7467_7561_7264u64 ^ K0 ^ (bytes.len() as u64).wrapping_mul(K1);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = fold_mul(h ^ u64::from_le_bytes(c.try_into().unwrap()), K1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = fold_mul(h ^ u64::from_le_bytes(w), K0);
    }
    fold_mul(h, K1)
}

fn reseal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + body.len());
    out.extend_from_slice(b"OUTGUARD");
    out.extend_from_slice(&outguard::snapshot::VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn busy_engine() -> Engine<HeapStorage> {
    let mut e = setup();
    let mut g = Lcg(5);
    for i in 0..200u64 {
        let s = [
            "a@example.com",
            "x@evil.example",
            "<>",
            "b@fabrikam.example",
        ][g.below(4) as usize];
        let t = ["contoso", "fabrikam"][g.below(2) as usize];
        let v = [Verdict::Clean, Verdict::Spam][g.below(2) as usize];
        let _ = e.evaluate(T0 + i * 30, &from(t, s), v);
    }
    let t = e.tenant("fabrikam").unwrap();
    e.mark_lapsed(t, T0).unwrap();
    e
}

fn state(e: &Engine<HeapStorage>) -> String {
    let mut buf = vec![0; e.snapshot_len()];
    e.write_snapshot(&mut buf).unwrap();
    let checks: Vec<_> = ["a@example.com", "x@evil.example"]
        .iter()
        .flat_map(|s| ["contoso", "fabrikam"].map(|t| e.check(T0 + 7000, &from(t, s))))
        .collect();
    format!("{:?} {checks:?}", &buf)
}

#[test]
fn reimplemented_checksum_matches() {
    let e = busy_engine();
    let mut buf = vec![0; e.snapshot_len()];
    e.write_snapshot(&mut buf).unwrap();
    assert_eq!(
        reseal(&buf[32..]),
        buf,
        "the test's checksum must match the engine's"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any bytes: an error or a restore, never a panic; on error, the engine is unchanged.
    #[test]
    fn restore_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200), sealed in any::<bool>()) {
        let mut e = busy_engine();
        let before = state(&e);
        let input = if sealed { reseal(&bytes) } else { bytes };
        if e.restore_snapshot(&input).is_err() {
            prop_assert_eq!(state(&e), before);
        }
    }

    /// A real snapshot with its body mangled and re-sealed: the structure checks must catch it
    /// or restore something consistent; never a panic.
    #[test]
    fn restore_mangled_snapshot(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut e = busy_engine();
        let mut buf = vec![0; e.snapshot_len()];
        e.write_snapshot(&mut buf).unwrap();
        let mut body = buf[32..].to_vec();
        for (i, b) in edits {
            let i = i.index(body.len());
            body[i] = b;
        }
        if do_cut {
            body.truncate(cut.index(body.len()));
        }
        let before = state(&e);
        let mut fresh = setup();
        match fresh.restore_snapshot(&reseal(&body)) {
            Ok(_) => {
                // Whatever was restored can be used and snapshotted again.
                for s in ["a@example.com", "x@evil.example", "<>"] {
                    let _ = fresh.evaluate(T0 + 9000, &from("contoso", s), Verdict::Spam);
                }
                let mut again = vec![0; fresh.snapshot_len()];
                fresh.write_snapshot(&mut again).unwrap();
                fresh.restore_snapshot(&again).unwrap();
            }
            Err(err) => {
                prop_assert!(matches!(err, Error::SnapshotCorrupt | Error::SnapshotTruncated), "{:?}", err);
            }
        }
        match e.restore_snapshot(&reseal(&body)) {
            Ok(_) => {}
            Err(_) => prop_assert_eq!(state(&e), before),
        }
    }
}

// ----- random input never panics ------------------------------------------------------------

fn fragment_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"<>@\".aZ0-[]:,\\ \t\0_+"
        .iter()
        .copied()
        .chain([0xc3, 0xbc, 0xff, 0x7f])
        .collect();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        prop::collection::vec(prop::sample::select(alphabet), 0..40),
        prop::collection::vec(
            prop::sample::select(vec![
                &b"a"[..],
                b"@",
                b".",
                b"example.com",
                b"<",
                b">",
                b"\"",
                b"[192.0.2.1]",
                b"@r.example,",
                b":",
                b"\\",
                b"xn--p1ai",
                b"..",
                b"-",
                b" ",
            ]),
            0..10
        )
        .prop_map(|v| v.concat()),
    ]
}

fn opt_str() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("contoso".to_string())),
        fragment_bytes().prop_map(|b| Some(String::from_utf8_lossy(&b).into_owned())),
        any::<String>().prop_map(Some),
    ]
}

fn any_ip() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        Just(None),
        any::<u32>().prop_map(|v| Some(IpAddr::from(std::net::Ipv4Addr::from(v)))),
        any::<u128>().prop_map(|v| Some(IpAddr::from(std::net::Ipv6Addr::from(v)))),
        (0u32..256).prop_map(|v| Some(IpAddr::from([192, 0, 2, v as u8]))),
        (0u32..256).prop_map(|v| Some(IpAddr::from([203, 0, 113, v as u8]))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_messages_never_panic_and_check_agrees_with_record(
        mail_from in fragment_bytes(),
        tenant in opt_str(),
        auth_user in opt_str(),
        cert_domain in opt_str(),
        client_ip in any_ip(),
        flags in any::<(bool, bool, bool)>(),
        recipients in any::<u32>(),
        now in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), (T0..T0 + 10_000)],
        verdict in 0u8..5,
    ) {
        let mut e = setup();
        let m = Message {
            mail_from: &mail_from,
            tenant: tenant.as_deref(),
            auth_user: auth_user.as_deref(),
            cert_domain: cert_domain.as_deref(),
            client_ip,
            forwarded: flags.0,
            spf_pass: flags.1,
            dkim_pass: flags.2,
            recipients,
        };
        let d = e.check(now, &m);
        prop_assert_eq!(d.accepted(), d.reason.is_none());
        if let Some(r) = d.reason {
            let reply = d.reply().unwrap();
            prop_assert!(reply.starts_with("550 "));
            prop_assert!(reply.contains(r.enhanced_code()));
        }
        prop_assert_eq!(d, e.check(now, &m), "check is deterministic");
        let rec = e.record(now, &m, Verdict::from_u8(verdict).unwrap());
        match d.reason {
            Some(Reason::InvalidSender) => {
                prop_assert!(d.sender_class.is_none());
                prop_assert_eq!(rec, Err(Error::InvalidAddress));
            }
            Some(Reason::Unattributed) => prop_assert_eq!(rec, Err(Error::UnknownTenant)),
            _ => {
                prop_assert!(rec.is_ok(), "{:?}", rec);
                prop_assert!(d.tenant.is_some());
                let st = e.status(d.tenant.unwrap(), now).unwrap();
                prop_assert!(st.counters.total >= 1);
            }
        }
        let (d2, _) = e.evaluate(now, &m, Verdict::Spam);
        prop_assert_eq!(d2.reason.is_none(), d2.accepted());
    }

    #[test]
    fn random_operator_input_never_panics(
        names in prop::collection::vec(opt_str(), 1..6),
        ranges in prop::collection::vec((any::<u128>(), any::<u8>()), 0..6),
        probes in prop::collection::vec(any_ip(), 0..6),
        expiry in any::<u64>(),
    ) {
        let mut e = setup();
        let t = e.tenant("contoso").unwrap();
        let c = e.connector(t, "hq").unwrap();
        for n in names.iter().flatten() {
            let _ = e.add_tenant(n, true);
            let _ = e.add_domain(t, n, true, true);
            let _ = e.validate_domain(t, n);
            let _ = e.add_connector(t, n, Some(n.as_str()), expiry);
            let _ = e.add_connector(t, n, None, expiry);
            let _ = Cidr::parse(n);
        }
        for &(network, len) in &ranges {
            let r = Cidr { network, len };
            let _ = e.add_low_reputation(r);
            let _ = e.grant_exception(t, r, expiry);
            let _ = e.add_connector_range(c, r);
        }
        for p in probes.iter().flatten() {
            let _ = e.check(T0, &Message { client_ip: Some(*p), ..Message::new("a@example.com") });
            let _ = e.is_low_reputation(*p);
        }
        let _ = e.suspicious_connectors(T0).count();
        for &(network, len) in &ranges {
            let r = Cidr { network, len };
            let _ = e.revoke_exception(t, r);
            let _ = e.remove_low_reputation(r);
        }
        for n in names.iter().flatten() {
            let _ = e.remove_domain(t, n);
            if let Some(id) = e.tenant(n) {
                if id != t {
                    e.remove_tenant(id).unwrap();
                }
            }
        }
        let _ = e.remove_connector(c);
        e.remove_tenant(t).unwrap();
    }

    /// Time going backwards never corrupts the counters: recording one message always adds
    /// exactly its count to what status() reports at that `now`, and with a window far wider
    /// than the whole stream, the totals are exactly what was recorded.
    #[test]
    fn backwards_time_never_corrupts_counters(
        steps in prop::collection::vec((-3000i64..3000, 0u8..3, any::<bool>()), 1..80),
        slots in 1u16..6,
        small_window in any::<bool>(),
    ) {
        let mut c = cap();
        c.threshold_slots = slots;
        c.unregistered_slots = slots;
        let mut r = rules();
        let window = if small_window { 500 } else { 1_000_000_000 };
        r.threshold.window = window;
        r.unregistered.window = window;
        r.threshold.min_messages = u32::MAX;
        r.unregistered.limit = u32::MAX;
        let mut e = engine_with(c, r);
        let t = e.add_tenant("t", true).unwrap();
        e.add_domain(t, "t.example", false, true).unwrap();
        let mut now = T0 as i64;
        let (mut n, mut s, mut u) = (0u32, 0u32, 0u32);
        for (dt, kind, spam) in steps {
            now += dt;
            let snd = ["a@t.example", "a@evil.example", "<>"][kind as usize];
            let m = from("t", snd);
            let at = now as u64;
            let before = e.status(t, at).unwrap().counters;
            let ev = e.record(at, &m, if spam { Verdict::Spam } else { Verdict::Clean }).unwrap();
            prop_assert!(ev.is_empty());
            let after = e.status(t, at).unwrap().counters;
            n += 1;
            s += spam as u32;
            u += (kind == 1) as u32;
            prop_assert_eq!(after.total, before.total + 1);
            prop_assert_eq!(after.suspicious, before.suspicious + spam as u32);
            prop_assert_eq!(after.unregistered, before.unregistered + (kind == 1) as u32);
            prop_assert!(after.total <= n && after.suspicious <= s && after.unregistered <= u);
            prop_assert!(after.suspicious <= after.total);
            if !small_window {
                prop_assert_eq!((after.total, after.suspicious, after.unregistered), (n, s, u));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The fast IPv4 reader never disagrees with the standard parser, on near-addresses.
    #[test]
    fn parse_ip_agrees_with_the_standard_parser(
        s in prop_oneof![
            "[0-9.]{0,18}",
            "[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}",
            "[0-9a-f:.]{0,24}",
            any::<String>(),
        ],
    ) {
        prop_assert_eq!(outguard::cidr::parse_ip(s.as_bytes()), s.parse::<std::net::IpAddr>().ok());
    }
}
