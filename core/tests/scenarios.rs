//! One scenario per behaviour of SPEC §1, written from the specification.
//!
//! Every test is deterministic: time is the `now` parameter, starting at `T0`.

mod common;
use common::*;

// ----- setup --------------------------------------------------------------------------------

/// Rules with small, easy numbers; the warning tier is out of the way (ratio 1.0 is only
/// reached by all-spam streams, which trip the block first).
fn rules() -> RuleSet {
    let mut r = RuleSet::default();
    r.threshold.window = 3600;
    r.threshold.min_messages = 10;
    r.threshold.min_suspicious = 5;
    r.threshold.max_ratio_ppm = RATIO_ONE / 2;
    r.threshold.warn_ratio_ppm = RATIO_ONE;
    r.threshold.grace = 600;
    r.unregistered.window = 3600;
    r.unregistered.limit = 1000;
    r.unregistered.grace = 600;
    r
}

fn contoso(r: RuleSet) -> (Engine<HeapStorage>, TenantId) {
    let mut e = engine_with(cap(), r);
    let t = e.add_tenant("contoso", true).unwrap();
    e.add_domain(t, "contoso.com", true, true).unwrap();
    (e, t)
}

fn status(e: &Engine<HeapStorage>, t: TenantId, now: u64) -> TenantStatus {
    e.status(t, now).expect("status")
}

/// Records `verdicts` one per second from `start`, checking each message is accepted first.
/// Returns the index of the record that produced a `Blocked` event for 5.7.705, if any.
fn feed(
    e: &mut Engine<HeapStorage>,
    m: &Message<'_>,
    start: u64,
    verdicts: &[Verdict],
) -> (Option<usize>, Vec<Event>) {
    let mut all = Vec::new();
    for (i, v) in verdicts.iter().enumerate() {
        let now = start + i as u64;
        let d = e.check(now, m);
        assert_accepted(&d);
        let ev = e.record(now, m, *v).unwrap();
        all.extend(ev.iter().copied());
        if ev.iter().any(|x| {
            x.kind() == Some(EventKind::Blocked) && x.rule() == Some(Rule::TenantThreshold)
        }) {
            return (Some(i), all);
        }
    }
    (None, all)
}

use Verdict::{Bulk, Clean, Spam};

// ----- 5.7.705: the tenant threshold --------------------------------------------------------

/// Runs `verdicts`, expects the block at exactly `trip` (0-based), with these window counters.
fn assert_trips_exactly(r: RuleSet, verdicts: &[Verdict], trip: usize, total: u32, susp: u32) {
    let (mut e, t) = contoso(r);
    let m = from("contoso", "alice@contoso.com");
    // Everything before the tripping record: accepted, no event.
    let (got, events) = feed(&mut e, &m, T0, &verdicts[..trip]);
    assert_eq!(got, None, "tripped early");
    assert!(events.is_empty(), "no event before the trip: {events:?}");
    let before = e.check(T0 + trip as u64, &m);
    assert_accepted(&before);
    assert_eq!(before.counters.total, total - 1);
    // The tripping record: that message itself was already accepted.
    let ev = e.record(T0 + trip as u64, &m, verdicts[trip]).unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    let b = ev[0];
    assert_eq!(b.kind(), Some(EventKind::Blocked));
    assert_eq!(b.rule(), Some(Rule::TenantThreshold));
    assert_eq!(b.tenant(), t);
    assert_eq!(b.time, T0 + trip as u64);
    assert_eq!((b.total, b.suspicious, b.unregistered), (total, susp, 0));
    assert_eq!(b.until, u64::MAX, "manual block needs a release");
    assert_eq!(b.monitor, 0);
    // The next check refuses, exactly.
    let d = e.check(T0 + trip as u64 + 1, &m);
    assert_refused(&d, Reason::TenantThreshold, R705);
    assert_eq!(d.code(), Some("5.7.705"));
    assert_eq!(d.rule(), Some(Rule::TenantThreshold));
    assert_eq!(d.tenant, Some(t));
    assert_eq!(d.sender_class, Some(SenderClass::Registered));
    assert_eq!(d.block_ends, Some(BlockEnd::OnRelease));
    assert_eq!((d.counters.total, d.counters.suspicious), (total, susp));
    assert_eq!(d.counters.min_messages, 10);
    assert_eq!(d.counters.max_ratio_ppm, RATIO_ONE / 2);
    // Every kind of sender of the tenant is refused: the tenant as a whole is blocked.
    for s in ["<>", "x@evil.example", "bob@mail.contoso.com"] {
        assert_refused(
            &e.check(T0 + 5000, &from("contoso", s)),
            Reason::TenantThreshold,
            R705,
        );
    }
    let st = status(&e, t, T0 + trip as u64 + 1);
    assert!(st.threshold.blocked);
    assert_eq!(st.threshold.blocked_at, Some(T0 + trip as u64));
    assert_eq!(st.threshold.block_ends, Some(BlockEnd::OnRelease));
}

#[test]
fn threshold_trips_exactly_at_min_messages() {
    // All spam: ratio and min_suspicious are met early; volume decides: the 10th message.
    let v = [Spam; 10];
    assert_trips_exactly(rules(), &v, 9, 10, 10);
}

#[test]
fn threshold_trips_exactly_at_min_suspicious() {
    let mut r = rules();
    r.threshold.min_suspicious = 8;
    // 4 clean, then spam: total >= 10 after 6 spam, ratio >= 0.5 after 4, suspicious >= 8
    // after 8 -> the 12th message (index 11).
    let mut v = vec![Clean; 4];
    v.extend([Spam, Bulk, Spam, Bulk, Spam, Bulk, Spam, Bulk]);
    assert_trips_exactly(r, &v, 11, 12, 8);
}

#[test]
fn threshold_trips_exactly_at_max_ratio() {
    // 10 clean, then spam: ratio k/(10+k) reaches 0.5 at k = 10 (exactly 0.5 trips).
    let mut v = vec![Clean; 10];
    v.extend([Spam; 10]);
    assert_trips_exactly(rules(), &v, 19, 20, 10);
}

#[test]
fn only_configured_verdicts_are_suspicious() {
    let mut r = rules();
    r.threshold.min_messages = 3;
    r.threshold.min_suspicious = 3;
    r.threshold.max_ratio_ppm = RATIO_ONE / 4;
    r.threshold.suspicious = VerdictSet::EMPTY.with(Verdict::Phish);
    let (mut e, t) = contoso(r);
    let m = from("contoso", "alice@contoso.com");
    let (got, _) = feed(&mut e, &m, T0, &[Spam, Bulk, Spam, Bulk, Verdict::Malware]);
    assert_eq!(got, None);
    assert_eq!(status(&e, t, T0 + 5).counters.suspicious, 0);
    let (got, _) = feed(
        &mut e,
        &m,
        T0 + 10,
        &[Verdict::Phish, Verdict::Phish, Verdict::Phish],
    );
    assert_eq!(got, Some(2));
    assert_refused(&e.check(T0 + 20, &m), Reason::TenantThreshold, R705);
}

#[test]
fn warn_tier_fires_once_per_crossing_and_never_blocks() {
    let mut r = rules();
    r.threshold.min_messages = 4;
    r.threshold.min_suspicious = 1000; // never blocks
    r.threshold.max_ratio_ppm = RATIO_ONE / 2;
    r.threshold.warn_ratio_ppm = RATIO_ONE / 4;
    let (mut e, t) = contoso(r);
    let m = from("contoso", "alice@contoso.com");
    #[rustfmt::skip]
    let stream = [
        Clean, Clean, Clean, Clean, // 4/0
        Spam,                       // 5/1  0.20
        Spam,                       // 6/2  0.33  -> warned
        Spam,                       // 7/3  0.43  still above: nothing
        Clean, Clean, Clean, Clean, // 11/3 0.27
        Clean,                      // 12/3 0.25  (>= 0.25: still above)
        Clean,                      // 13/3 0.23  below
        Spam,                       // 14/4 0.29  -> warned again
        Spam, Spam,                 // 16/6 above: nothing
    ];
    let mut warned = Vec::new();
    for (i, v) in stream.iter().enumerate() {
        let now = T0 + i as u64;
        assert_accepted(&e.check(now, &m));
        for ev in e.record(now, &m, *v).unwrap() {
            assert_eq!(ev.kind(), Some(EventKind::Warned), "{ev:?}");
            assert_eq!(ev.rule(), Some(Rule::TenantThreshold));
            assert_eq!(ev.tenant(), t);
            assert_eq!(ev.time, now);
            warned.push((i, ev.total, ev.suspicious));
        }
    }
    assert_eq!(warned, vec![(5, 6, 2), (13, 14, 4)]);
    let st = status(&e, t, T0 + 100);
    assert!(!st.threshold.blocked);
    assert!(st.threshold.warned);
    assert_accepted(&e.check(T0 + 100, &m));
    assert_eq!(e.restricted(T0 + 100).count(), 0);
}

// ----- 5.7.750: unregistered domains --------------------------------------------------------

fn unregistered_setup(limit: u32) -> (Engine<HeapStorage>, TenantId) {
    let mut r = rules();
    r.unregistered.limit = limit;
    let mut e = engine_with(cap(), r);
    let t = e.add_tenant("contoso", true).unwrap();
    e.add_domain(t, "contoso.com", false, true).unwrap();
    e.add_domain(t, "fabrikam.com", true, true).unwrap();
    e.add_domain(t, "contoso.net", false, false).unwrap(); // not validated
    (e, t)
}

#[test]
fn unregistered_allowance_is_exactly_limit() {
    let (mut e, t) = unregistered_setup(5);
    let bad = from("contoso", "mallory@evil.example");
    for i in 0..5u64 {
        let d = e.check(T0 + i, &bad);
        assert_accepted(&d);
        assert_eq!(d.sender_class, Some(SenderClass::Unregistered));
        assert_eq!(d.counters.unregistered, i as u32);
        assert_eq!(d.counters.limit, 5);
        let ev = e.record(T0 + i, &bad, Clean).unwrap();
        if i < 4 {
            assert!(ev.is_empty(), "{i}: {ev:?}");
        } else {
            assert_eq!(
                kinds(&ev),
                vec![(EventKind::Blocked, Rule::UnregisteredDomain)]
            );
            assert_eq!(ev[0].unregistered, 5);
            assert_eq!(ev[0].total, 5);
            assert_eq!(ev[0].tenant(), t);
            assert_eq!(ev[0].time, T0 + 4);
            assert_eq!(ev[0].until, u64::MAX);
        }
    }
    let d = e.check(T0 + 5, &bad);
    assert_refused(&d, Reason::UnregisteredDomain, R750);
    assert_eq!(d.code(), Some("5.7.750"));
    assert_eq!(d.block_ends, Some(BlockEnd::OnRelease));
    assert_eq!(d.counters.unregistered, 5);
    let st = status(&e, t, T0 + 5);
    assert!(st.unregistered.blocked);
    assert!(!st.threshold.blocked);
}

#[test]
fn unregistered_block_lets_registered_and_null_senders_flow() {
    let (mut e, _) = unregistered_setup(3);
    let now = T0 + 10;
    // Mixed stream: only unregistered senders count.
    let stream = [
        ("a@evil.example", SenderClass::Unregistered),
        ("<>", SenderClass::Null),
        ("", SenderClass::Null),
        ("a@contoso.com", SenderClass::Registered),
        ("a@[192.0.2.1]", SenderClass::Unregistered), // address literal
        ("a@mail.fabrikam.com", SenderClass::Registered),
        ("a@sub.contoso.com", SenderClass::Unregistered), // no subdomains=true
    ];
    for (i, (s, class)) in stream.iter().enumerate() {
        let m = from("contoso", s);
        let d = e.check(now, &m);
        assert_accepted(&d);
        assert_eq!(d.sender_class, Some(*class), "{s}");
        let ev = e.record(now, &m, Clean).unwrap();
        assert_eq!(ev.is_empty(), i != 6, "{s}: {ev:?}");
    }
    // The third unregistered message was the last one allowed.
    let now = now + 1;
    for s in [
        "b@evil.example",
        "b@[192.0.2.1]",
        "b@[IPv6:2001:db8::1]",
        "b@sub.contoso.com",
        "b@contoso.net", // accepted but not validated
        "b@contoso.net.evil.example",
    ] {
        let d = e.check(now, &from("contoso", s));
        assert_refused(&d, Reason::UnregisteredDomain, R750);
        assert_eq!(d.sender_class, Some(SenderClass::Unregistered), "{s}");
    }
    for (s, class) in [
        ("b@contoso.com", SenderClass::Registered),
        ("<b@CONTOSO.COM.>", SenderClass::Registered),
        ("b@fabrikam.com", SenderClass::Registered),
        ("b@a.b.fabrikam.com", SenderClass::Registered),
        ("<>", SenderClass::Null),
        ("", SenderClass::Null),
    ] {
        let m = from("contoso", s);
        let d = e.check(now, &m);
        assert_accepted(&d);
        assert_eq!(d.sender_class, Some(class), "{s}");
        // ... and they keep flowing after being recorded.
        e.record(now, &m, Clean).unwrap();
        assert_accepted(&e.check(now, &m));
    }
}

#[test]
fn validating_a_domain_makes_it_registered() {
    let (mut e, t) = unregistered_setup(1);
    let m = from("contoso", "a@contoso.net");
    assert_eq!(
        e.check(T0, &m).sender_class,
        Some(SenderClass::Unregistered)
    );
    e.validate_domain(t, "contoso.net").unwrap();
    assert_eq!(e.check(T0, &m).sender_class, Some(SenderClass::Registered));
    assert_eq!(e.validate_domain(t, "nope.example"), Err(Error::NotFound));
    e.remove_domain(t, "contoso.net").unwrap();
    assert_eq!(
        e.check(T0, &m).sender_class,
        Some(SenderClass::Unregistered)
    );
    assert_eq!(e.remove_domain(t, "contoso.net"), Err(Error::NotFound));
}

// ----- exemptions ---------------------------------------------------------------------------

#[test]
fn certificate_connector_with_registered_certificate_domain_is_exempt() {
    let (mut e, t) = unregistered_setup(1);
    e.add_connector(t, "onprem", Some("mail.fabrikam.com"), T0 - 90 * 86_400)
        .unwrap();
    let m = Message {
        cert_domain: Some("mail.fabrikam.com"),
        ..Message::new("relay@customer-of-contoso.example")
    };
    for i in 0..10 {
        let d = e.check(T0 + i, &m);
        assert_accepted(&d);
        assert_eq!(d.tenant, Some(t));
        assert_eq!(d.attribution, Some(Attribution::Certificate));
        assert_eq!(d.sender_class, Some(SenderClass::Exempt));
        assert!(e.record(T0 + i, &m, Clean).unwrap().is_empty());
    }
    let st = status(&e, t, T0 + 10);
    assert_eq!(st.counters.unregistered, 0);
    assert_eq!(st.counters.total, 10);
    assert!(!st.unregistered.blocked);
}

#[test]
fn certificate_connector_with_unaccepted_certificate_domain_does_not_exempt() {
    let (mut e, t) = unregistered_setup(2);
    e.add_connector(
        t,
        "partner",
        Some("relay.partner.example"),
        T0 - 90 * 86_400,
    )
    .unwrap();
    e.add_connector(t, "unvalidated", Some("mx.contoso.net"), T0 - 90 * 86_400)
        .unwrap();
    for cert in ["relay.partner.example", "mx.contoso.net"] {
        let m = Message {
            cert_domain: Some(cert),
            ..Message::new("x@elsewhere.example")
        };
        let d = e.check(T0, &m);
        assert_eq!(d.attribution, Some(Attribution::Certificate), "{cert}");
        assert_eq!(d.sender_class, Some(SenderClass::Unregistered), "{cert}");
    }
    // A registered certificate domain presented without a connector does not exempt either.
    let m = Message {
        cert_domain: Some("contoso.com"),
        ..from("contoso", "x@elsewhere.example")
    };
    assert_eq!(
        e.check(T0, &m).sender_class,
        Some(SenderClass::Unregistered)
    );
}

#[test]
fn forwarded_mail_is_exempt_only_with_spf_or_dkim() {
    let (mut e, t) = unregistered_setup(1);
    let base = from("contoso", "original.sender@gmail.example");
    let fwd = |spf, dkim| Message {
        forwarded: true,
        spf_pass: spf,
        dkim_pass: dkim,
        ..base
    };
    for (m, class) in [
        (fwd(true, false), SenderClass::Exempt),
        (fwd(false, true), SenderClass::Exempt),
        (fwd(true, true), SenderClass::Exempt),
        (fwd(false, false), SenderClass::Unregistered),
        (
            Message {
                spf_pass: true,
                dkim_pass: true,
                ..base
            },
            SenderClass::Unregistered,
        ),
    ] {
        assert_eq!(e.check(T0, &m).sender_class, Some(class), "{m:?}");
    }
    for i in 0..5 {
        e.record(T0 + i, &fwd(true, false), Clean).unwrap();
    }
    assert_eq!(status(&e, t, T0 + 5).counters.unregistered, 0);
    let ev = e.record(T0 + 6, &fwd(false, false), Clean).unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Blocked, Rule::UnregisteredDomain)]
    );
    assert_refused(
        &e.check(T0 + 7, &fwd(false, false)),
        Reason::UnregisteredDomain,
        R750,
    );
    assert_accepted(&e.check(T0 + 7, &fwd(false, true)));
}

// ----- attribution --------------------------------------------------------------------------

fn attribution_setup() -> Engine<HeapStorage> {
    let mut e = engine_with(cap(), rules());
    let a = e.add_tenant("alpha", true).unwrap();
    let b = e.add_tenant("bravo", true).unwrap();
    let c = e.add_tenant("charlie", true).unwrap();
    let d = e.add_tenant("delta", true).unwrap();
    let x = e.add_tenant("echo", true).unwrap();
    e.add_domain(a, "alpha.example", false, true).unwrap();
    e.add_domain(b, "bravo.example", false, true).unwrap();
    e.add_domain(a, "shared.example", false, true).unwrap();
    e.add_domain(b, "shared.example", false, true).unwrap();
    e.add_domain(x, "pending.example", false, false).unwrap();
    e.add_domain(c, "charlie.example", true, true).unwrap();
    e.add_connector(c, "cert", Some("mx.charlie.example"), 1)
        .unwrap();
    let dc = e.add_connector(d, "hq", None, 1).unwrap();
    e.add_connector_range(dc, cidr("203.0.113.0/24")).unwrap();
    e.add_connector_range(dc, cidr("2001:db8:1::/48")).unwrap();
    let xc = e.add_connector(x, "branch", None, 1).unwrap();
    e.add_connector_range(xc, cidr("203.0.113.128/25")).unwrap();
    e.add_connector_range(xc, cidr("2001:db8:1:2::/64"))
        .unwrap();
    e
}

#[test]
fn attribution_order_explicit_auth_certificate_ip() {
    let e = attribution_setup();
    let id = |n: &str| e.tenant(n).unwrap();
    let full = Message {
        tenant: Some("alpha"),
        auth_user: Some("bob@bravo.example"),
        cert_domain: Some("mx.charlie.example"),
        client_ip: Some(ip("203.0.113.5")),
        ..Message::new("bob@bravo.example")
    };
    let cases = [
        (full, "alpha", Attribution::Explicit),
        (
            Message {
                tenant: None,
                ..full
            },
            "bravo",
            Attribution::AuthUser,
        ),
        (
            Message {
                tenant: None,
                auth_user: None,
                ..full
            },
            "charlie",
            Attribution::Certificate,
        ),
        (
            Message {
                tenant: None,
                auth_user: None,
                cert_domain: None,
                ..full
            },
            "delta",
            Attribution::IpConnector,
        ),
    ];
    for (m, who, how) in cases {
        let d = e.check(T0, &m);
        assert_eq!(d.tenant, Some(id(who)), "{m:?}");
        assert_eq!(d.attribution, Some(how), "{m:?}");
        assert_eq!(e.tenant_name(d.tenant.unwrap()), who);
        assert!(e.tenant_name_is(d.tenant.unwrap(), who));
        assert!(!e.tenant_name_is(d.tenant.unwrap(), "someone-else"));
        assert!(!e.tenant_name_is(d.tenant.unwrap(), ""));
    }
}

#[test]
fn auth_user_domain_of_two_tenants_or_unvalidated_is_not_used() {
    let e = attribution_setup();
    // Shared domain: falls through to the next method.
    let m = Message {
        auth_user: Some("bob@shared.example"),
        client_ip: Some(ip("203.0.113.5")),
        ..Message::new("bob@shared.example")
    };
    let d = e.check(T0, &m);
    assert_eq!(d.tenant, e.tenant("delta"));
    assert_eq!(d.attribution, Some(Attribution::IpConnector));
    // ... and with nothing else: 5.7.64.
    let d = e.check(
        T0,
        &Message {
            client_ip: None,
            ..m
        },
    );
    assert_refused(&d, Reason::Unattributed, R764);
    assert_eq!(d.tenant, None);
    // An accepted but unvalidated domain does not attribute either.
    let d = e.check(
        T0,
        &Message {
            auth_user: Some("bob@pending.example"),
            ..Message::new("bob@pending.example")
        },
    );
    assert_refused(&d, Reason::Unattributed, R764);
    // Auth user domains compare case-insensitively.
    let d = e.check(
        T0,
        &Message {
            auth_user: Some("Bob@ALPHA.Example."),
            ..Message::new("bob@alpha.example")
        },
    );
    assert_eq!(d.tenant, e.tenant("alpha"));
    assert_eq!(d.attribution, Some(Attribution::AuthUser));
}

#[test]
fn unattributable_messages_get_5_7_64() {
    let e = attribution_setup();
    for m in [
        from("nobody", "a@alpha.example"),
        Message::new("a@alpha.example"),
        Message {
            client_ip: Some(ip("198.51.100.1")),
            cert_domain: Some("mx.unknown.example"),
            auth_user: Some("someone@unknown.example"),
            ..Message::new("a@alpha.example")
        },
        Message {
            auth_user: Some("no-domain-login"),
            ..Message::new("a@alpha.example")
        },
    ] {
        let d = e.check(T0, &m);
        assert_refused(&d, Reason::Unattributed, R764);
        assert_eq!(d.code(), Some("5.7.64"));
        assert_eq!(d.tenant, None);
        assert_eq!(d.attribution, None);
    }
}

#[test]
fn longest_prefix_ip_connector_wins() {
    let e = attribution_setup();
    for (addr, who) in [
        ("203.0.113.5", "delta"),
        ("203.0.113.127", "delta"),
        ("203.0.113.128", "echo"),
        ("203.0.113.255", "echo"),
        ("::ffff:203.0.113.200", "echo"),
        ("::ffff:203.0.113.1", "delta"),
        ("2001:db8:1::1", "delta"),
        ("2001:db8:1:2::99", "echo"),
        ("2001:db8:1:3::99", "delta"),
    ] {
        let m = Message {
            client_ip: Some(ip(addr)),
            ..Message::new("x@example.org")
        };
        let d = e.check(T0, &m);
        assert_eq!(d.tenant, e.tenant(who), "{addr}");
        assert_eq!(d.attribution, Some(Attribution::IpConnector), "{addr}");
    }
    for addr in ["203.0.112.255", "198.51.100.1", "2001:db8:2::1"] {
        let m = Message {
            client_ip: Some(ip(addr)),
            ..Message::new("x@example.org")
        };
        assert_refused(&e.check(T0, &m), Reason::Unattributed, R764);
    }
}

// ----- 5.7.708: low-reputation IPs ----------------------------------------------------------

fn lowrep_setup(scope: Scope) -> (Engine<HeapStorage>, TenantId, TenantId) {
    let mut r = rules();
    r.low_reputation.scope = scope;
    let mut e = engine_with(cap(), r);
    let lic = e.add_tenant("licensed", true).unwrap();
    let trial = e.add_tenant("trial", false).unwrap();
    e.add_domain(lic, "licensed.example", false, true).unwrap();
    e.add_domain(trial, "trial.example", false, true).unwrap();
    e.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
    e.add_low_reputation(cidr("2001:db8:bad::/48")).unwrap();
    (e, lic, trial)
}

fn via<'a>(tenant: &'a str, addr: &str) -> Message<'a> {
    let dom = if tenant == "licensed" {
        "a@licensed.example"
    } else {
        "a@trial.example"
    };
    Message {
        client_ip: Some(ip(addr)),
        ..from(tenant, dom)
    }
}

#[test]
fn low_reputation_ip_is_refused_without_exception() {
    let (e, lic, trial) = lowrep_setup(Scope::All);
    for addr in [
        "192.0.2.7",
        "192.0.2.0",
        "192.0.2.255",
        "::ffff:192.0.2.7",
        "2001:db8:bad::1",
        "2001:db8:bad:ffff::1",
    ] {
        for (name, t) in [("licensed", lic), ("trial", trial)] {
            let d = e.check(T0, &via(name, addr));
            assert_refused(&d, Reason::LowReputationIp, R708);
            assert_eq!(d.code(), Some("5.7.708"));
            assert_eq!(d.tenant, Some(t));
        }
    }
    for addr in [
        "192.0.3.7",
        "192.0.1.255",
        "2001:db8:bae::1",
        "::ffff:198.51.100.1",
    ] {
        assert_accepted(&e.check(T0, &via("trial", addr)));
    }
    assert!(e.is_low_reputation(ip("::ffff:192.0.2.9")));
    assert!(!e.is_low_reputation(ip("2001:db8:bae::1")));
}

#[test]
fn ip_exception_is_live_until_exactly_its_expiry() {
    let (mut e, lic, trial) = lowrep_setup(Scope::All);
    let exp = T0 + 1000;
    e.grant_exception(lic, cidr("192.0.2.0/28"), exp).unwrap();
    e.grant_exception(lic, cidr("2001:db8:bad:1::/64"), exp)
        .unwrap();
    for addr in ["192.0.2.7", "::ffff:192.0.2.15", "2001:db8:bad:1::5"] {
        assert_accepted(&e.check(T0, &via("licensed", addr)));
        assert_accepted(&e.check(exp - 1, &via("licensed", addr)));
        assert_refused(
            &e.check(exp, &via("licensed", addr)),
            Reason::LowReputationIp,
            R708,
        );
        assert_refused(
            &e.check(exp + 1, &via("licensed", addr)),
            Reason::LowReputationIp,
            R708,
        );
        // Another tenant's exception does not help.
        assert_refused(
            &e.check(T0, &via("trial", addr)),
            Reason::LowReputationIp,
            R708,
        );
    }
    // Outside the excepted range.
    assert_refused(
        &e.check(T0, &via("licensed", "192.0.2.16")),
        Reason::LowReputationIp,
        R708,
    );
    assert_refused(
        &e.check(T0, &via("licensed", "2001:db8:bad:2::5")),
        Reason::LowReputationIp,
        R708,
    );
    // Granting again sets the new expiry.
    e.grant_exception(lic, cidr("192.0.2.0/28"), exp + 500)
        .unwrap();
    assert_accepted(&e.check(exp + 100, &via("licensed", "192.0.2.7")));
    assert_eq!(
        e.exceptions_of(lic)
            .find(|(c, _)| *c == cidr("192.0.2.0/28")),
        Some((cidr("192.0.2.0/28"), exp + 500))
    );
    // Revoking removes it.
    e.revoke_exception(lic, cidr("192.0.2.0/28")).unwrap();
    assert_refused(
        &e.check(T0, &via("licensed", "192.0.2.7")),
        Reason::LowReputationIp,
        R708,
    );
    assert_eq!(
        e.revoke_exception(lic, cidr("192.0.2.0/28")),
        Err(Error::NotFound)
    );
    // An exception that never expires.
    e.grant_exception(trial, cidr("192.0.2.7/32"), u64::MAX)
        .unwrap();
    assert_accepted(&e.check(u64::MAX - 1, &via("trial", "192.0.2.7")));
    assert_refused(
        &e.check(T0, &via("trial", "192.0.2.8")),
        Reason::LowReputationIp,
        R708,
    );
}

#[test]
fn unlicensed_scope_spares_licensed_tenants() {
    let (mut e, _lic, trial) = lowrep_setup(Scope::Unlicensed);
    assert_accepted(&e.check(T0, &via("licensed", "192.0.2.7")));
    assert_accepted(&e.check(T0, &via("licensed", "2001:db8:bad::1")));
    assert_refused(
        &e.check(T0, &via("trial", "192.0.2.7")),
        Reason::LowReputationIp,
        R708,
    );
    e.set_licensed(trial, true).unwrap();
    assert_accepted(&e.check(T0, &via("trial", "192.0.2.7")));
    e.set_licensed(trial, false).unwrap();
    assert_refused(
        &e.check(T0, &via("trial", "192.0.2.7")),
        Reason::LowReputationIp,
        R708,
    );
    e.remove_low_reputation(cidr("192.0.2.0/24")).unwrap();
    assert_accepted(&e.check(T0, &via("trial", "192.0.2.7")));
    assert_eq!(
        e.remove_low_reputation(cidr("192.0.2.0/24")),
        Err(Error::NotFound)
    );
}

#[test]
fn low_reputation_ip_refusals_are_not_counted() {
    let (mut e, _, trial) = lowrep_setup(Scope::All);
    for i in 0..20 {
        let (d, ev) = e.evaluate(T0 + i, &via("trial", "192.0.2.7"), Spam);
        assert_refused(&d, Reason::LowReputationIp, R708);
        assert!(ev.is_empty());
    }
    assert_eq!(status(&e, trial, T0 + 20).counters.total, 0);
}

// ----- order of evaluation ------------------------------------------------------------------

#[test]
fn order_of_evaluation() {
    let mut r = rules();
    r.unregistered.limit = 1;
    r.threshold.min_messages = 1;
    r.threshold.min_suspicious = 1;
    let mut e = engine_with(cap(), r);
    let t = e.add_tenant("t", true).unwrap();
    let u = e.add_tenant("u", true).unwrap();
    e.add_domain(t, "t.example", false, true).unwrap();
    e.add_domain(u, "u.example", false, true).unwrap();
    e.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
    // u: 5.7.750 block only.
    let ev = e.record(T0, &from("u", "x@evil.example"), Clean).unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Blocked, Rule::UnregisteredDomain)]
    );
    let lowrep = Some(ip("192.0.2.1"));

    // 1. 5.1.7 before 5.7.64.
    let d = e.check(
        T0,
        &Message {
            tenant: Some("nobody"),
            client_ip: lowrep,
            ..Message::new("not an address")
        },
    );
    assert_eq!(d.reason, Some(Reason::InvalidSender));
    assert_eq!(d.code(), Some("5.1.7"));
    assert!(d.reply().unwrap().starts_with("550 5.1.7 "));
    // 2. 5.7.64 before anything tenant-related (even on a low-reputation IP).
    let d = e.check(
        T0,
        &Message {
            tenant: Some("nobody"),
            client_ip: lowrep,
            ..Message::new("x@evil.example")
        },
    );
    assert_refused(&d, Reason::Unattributed, R764);
    // 4. 5.7.708 before 5.7.750 (u is 750-blocked, unregistered sender, low-rep IP).
    let m = Message {
        client_ip: lowrep,
        ..from("u", "x@evil.example")
    };
    assert_refused(&e.check(T0 + 1, &m), Reason::LowReputationIp, R708);
    // 5. 5.7.750 without the low-rep IP.
    assert_refused(
        &e.check(T0 + 1, &from("u", "x@evil.example")),
        Reason::UnregisteredDomain,
        R750,
    );

    // t: trip both 5.7.705 and 5.7.750 with one spam message from an unregistered domain.
    let ev = e.record(T0, &from("t", "x@evil.example"), Spam).unwrap();
    assert_eq!(
        kinds(&ev),
        vec![
            (EventKind::Blocked, Rule::TenantThreshold),
            (EventKind::Blocked, Rule::UnregisteredDomain)
        ]
    );
    // 3. 5.7.705 before 5.7.708 and 5.7.750.
    let m = Message {
        client_ip: lowrep,
        ..from("t", "x@evil.example")
    };
    assert_refused(&e.check(T0 + 1, &m), Reason::TenantThreshold, R705);
    // Lapsed (also 5.7.705) before 5.7.708.
    e.mark_lapsed(u, T0 + 2).unwrap();
    let m = Message {
        client_ip: lowrep,
        ..from("u", "x@evil.example")
    };
    let d = e.check(T0 + 3, &m);
    assert_eq!(d.reason, Some(Reason::TenantLapsed));
    assert_eq!(d.reply(), Some(R705));
    // Invalid sender beats a blocked tenant.
    let d = e.check(T0 + 3, &from("t", "x@evil..example"));
    assert_eq!(d.reason, Some(Reason::InvalidSender));
}

// ----- counting -----------------------------------------------------------------------------

#[test]
fn check_counts_nothing() {
    let (mut e, t) = unregistered_setup(3);
    e.record(T0, &from("contoso", "a@evil.example"), Spam)
        .unwrap();
    let before = status(&e, t, T0 + 1);
    let mut snap_before = vec![0; e.snapshot_len()];
    e.write_snapshot(&mut snap_before).unwrap();
    for i in 0..500 {
        let s = ["a@evil.example", "a@contoso.com", "<>"][i % 3];
        let d = e.check(T0 + 1, &from("contoso", s));
        assert_accepted(&d);
    }
    assert_eq!(status(&e, t, T0 + 1), before);
    assert_eq!(before.counters.total, 1);
    assert_eq!(before.counters.suspicious, 1);
    assert_eq!(before.counters.unregistered, 1);
    let mut snap_after = vec![0; e.snapshot_len()];
    e.write_snapshot(&mut snap_after).unwrap();
    assert_eq!(snap_before, snap_after, "check() must not change any state");
}

#[test]
fn evaluate_counts_accepted_mail_only() {
    let (mut e, t) = unregistered_setup(3);
    let bad = from("contoso", "a@evil.example");
    for i in 0..3 {
        let (d, _) = e.evaluate(T0 + i, &bad, Spam);
        assert_accepted(&d);
    }
    let c = status(&e, t, T0 + 3).counters;
    assert_eq!((c.total, c.suspicious, c.unregistered), (3, 3, 3));
    // A retrying client does not extend its own block.
    for i in 0..50 {
        let (d, ev) = e.evaluate(T0 + 3 + i, &bad, Spam);
        assert_refused(&d, Reason::UnregisteredDomain, R750);
        assert!(ev.is_empty());
    }
    let c = status(&e, t, T0 + 60).counters;
    assert_eq!((c.total, c.suspicious, c.unregistered), (3, 3, 3));
    // Accepted mail of the same tenant still counts.
    let (d, _) = e.evaluate(T0 + 60, &from("contoso", "a@contoso.com"), Clean);
    assert_accepted(&d);
    let c = status(&e, t, T0 + 60).counters;
    assert_eq!((c.total, c.suspicious, c.unregistered), (4, 3, 3));
    // Unattributable and invalid messages are not counted anywhere.
    let (d, ev) = e.evaluate(T0 + 61, &from("nobody", "a@evil.example"), Spam);
    assert_refused(&d, Reason::Unattributed, R764);
    assert!(ev.is_empty());
    assert_eq!(
        e.record(T0 + 61, &from("nobody", "a@evil.example"), Spam),
        Err(Error::UnknownTenant)
    );
    assert_eq!(status(&e, t, T0 + 61).counters.total, 4);
}

// ----- release, grace, timed and manual blocks ----------------------------------------------

#[test]
fn release_clears_window_and_starts_grace() {
    let mut r = rules();
    r.threshold.min_messages = 4;
    r.threshold.min_suspicious = 2;
    r.threshold.grace = 600;
    let (mut e, t) = contoso(r);
    let m = from("contoso", "alice@contoso.com");
    let (got, _) = feed(&mut e, &m, T0, &[Spam; 4]);
    assert_eq!(got, Some(3));
    assert_refused(&e.check(T0 + 10, &m), Reason::TenantThreshold, R705);
    // Release.
    let rel = T0 + 100;
    let ev = e.release(t, None, rel).unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Released, Rule::TenantThreshold)]
    );
    assert_eq!(ev[0].time, rel);
    assert_eq!(ev[0].tenant(), t);
    assert_eq!((ev[0].total, ev[0].suspicious), (0, 0), "window cleared");
    let st = status(&e, t, rel);
    assert!(!st.threshold.blocked);
    assert_eq!(st.threshold.grace_until, Some(rel + 600));
    assert_eq!(st.counters.total, 0);
    assert_accepted(&e.check(rel, &m));
    // During grace: far over the threshold, but no trip.
    for i in 0..30 {
        let now = rel + i * 10;
        assert_accepted(&e.check(now, &m));
        let ev = e.record(now, &m, Spam).unwrap();
        assert!(ev.is_empty(), "no trip during grace: {ev:?}");
    }
    let ev = e.record(rel + 599, &m, Spam).unwrap();
    assert!(ev.is_empty());
    assert_accepted(&e.check(rel + 599, &m));
    // Grace over: the next record trips.
    let ev = e.record(rel + 600, &m, Spam).unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Blocked, Rule::TenantThreshold)]
    );
    assert_eq!((ev[0].total, ev[0].suspicious), (32, 32));
    assert_refused(&e.check(rel + 601, &m), Reason::TenantThreshold, R705);
    // Releasing only 5.7.750 leaves 5.7.705 alone.
    assert!(e
        .release(t, Some(Rule::UnregisteredDomain), rel + 700)
        .unwrap()
        .is_empty());
    assert_refused(&e.check(rel + 701, &m), Reason::TenantThreshold, R705);
    // Releasing a tenant that is not blocked does nothing.
    e.release(t, Some(Rule::TenantThreshold), rel + 800)
        .unwrap();
    assert!(e.release(t, None, rel + 801).unwrap().is_empty());
    assert_eq!(
        e.release(TenantId(999), None, rel),
        Err(Error::UnknownTenant)
    );
}

#[test]
fn release_of_unregistered_block() {
    let (mut e, t) = unregistered_setup(2);
    let bad = from("contoso", "a@evil.example");
    e.record(T0, &bad, Clean).unwrap();
    e.record(T0 + 1, &bad, Clean).unwrap();
    assert_refused(&e.check(T0 + 2, &bad), Reason::UnregisteredDomain, R750);
    let ev = e
        .release(t, Some(Rule::UnregisteredDomain), T0 + 3)
        .unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Released, Rule::UnregisteredDomain)]
    );
    assert_eq!(ev[0].unregistered, 0);
    assert_eq!(ev[0].total, 2, "5.7.705's window is not touched");
    for i in 0..5 {
        assert_accepted(&e.check(T0 + 4 + i, &bad));
        assert!(e.record(T0 + 4 + i, &bad, Clean).unwrap().is_empty());
    }
    // After grace (600 s), over the limit: trips on the next record.
    let ev = e.record(T0 + 603, &bad, Clean).unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Blocked, Rule::UnregisteredDomain)]
    );
}

#[test]
fn timed_block_ends_by_itself() {
    let mut r = rules();
    r.unregistered.limit = 2;
    r.unregistered.block = BlockDuration::Seconds(300);
    let (mut e, t) = contoso(r);
    let bad = from("contoso", "a@evil.example");
    e.record(T0, &bad, Clean).unwrap();
    let ev = e.record(T0 + 10, &bad, Clean).unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Blocked, Rule::UnregisteredDomain)]
    );
    assert_eq!(ev[0].until, T0 + 310);
    let d = e.check(T0 + 11, &bad);
    assert_refused(&d, Reason::UnregisteredDomain, R750);
    assert_eq!(d.block_ends, Some(BlockEnd::At(T0 + 310)));
    assert_refused(&e.check(T0 + 309, &bad), Reason::UnregisteredDomain, R750);
    assert_accepted(&e.check(T0 + 310, &bad));
    assert_eq!(
        status(&e, t, T0 + 309).unregistered.block_ends,
        Some(BlockEnd::At(T0 + 310))
    );
    assert!(!status(&e, t, T0 + 310).unregistered.blocked);
    // The next record expires it.
    let ev = e
        .record(T0 + 320, &from("contoso", "a@contoso.com"), Clean)
        .unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Expired, Rule::UnregisteredDomain)]
    );
    assert_eq!(ev[0].time, T0 + 320);
    assert_eq!(ev[0].tenant(), t);
    assert_accepted(&e.check(T0 + 321, &bad));
    assert_eq!(
        e.audit(t)
            .filter(|x| x.kind() == Some(EventKind::Expired))
            .count(),
        1
    );
}

#[test]
fn expire_emits_expired_for_every_run_out_block() {
    let mut r = rules();
    r.threshold.min_messages = 1;
    r.threshold.min_suspicious = 1;
    r.threshold.block = BlockDuration::Seconds(60);
    r.unregistered.limit = 1;
    r.unregistered.block = BlockDuration::Seconds(120);
    let (mut e, t) = contoso(r);
    let ev = e
        .record(T0, &from("contoso", "a@evil.example"), Spam)
        .unwrap();
    assert_eq!(ev.len(), 2);
    let d = e.check(T0 + 1, &from("contoso", "a@contoso.com"));
    assert_refused(&d, Reason::TenantThreshold, R705);
    assert_eq!(d.block_ends, Some(BlockEnd::At(T0 + 60)));
    let mut got = Vec::new();
    e.expire(T0 + 59, |x| got.push(*x));
    assert!(got.is_empty());
    e.expire(T0 + 60, |x| got.push(*x));
    assert_eq!(
        kinds(&got),
        vec![(EventKind::Expired, Rule::TenantThreshold)]
    );
    assert_eq!(got[0].time, T0 + 60);
    assert_accepted(&e.check(T0 + 60, &from("contoso", "a@contoso.com")));
    assert_refused(
        &e.check(T0 + 60, &from("contoso", "a@evil.example")),
        Reason::UnregisteredDomain,
        R750,
    );
    got.clear();
    e.expire(T0 + 500, |x| got.push(*x));
    assert_eq!(
        kinds(&got),
        vec![(EventKind::Expired, Rule::UnregisteredDomain)]
    );
    got.clear();
    e.expire(T0 + 501, |x| got.push(*x));
    assert!(got.is_empty(), "expired only once");
    let st = status(&e, t, T0 + 501);
    assert!(!st.threshold.blocked && !st.unregistered.blocked);
}

#[test]
fn manual_block_needs_release() {
    let mut r = rules();
    r.unregistered.limit = 1;
    let (mut e, t) = contoso(r);
    let bad = from("contoso", "a@evil.example");
    e.record(T0, &bad, Clean).unwrap();
    let far = T0 + 400 * 86_400;
    let d = e.check(far, &bad);
    assert_refused(&d, Reason::UnregisteredDomain, R750);
    assert_eq!(d.block_ends, Some(BlockEnd::OnRelease));
    let mut got = Vec::new();
    e.expire(far, |x| got.push(*x));
    assert!(got.is_empty());
    assert_refused(&e.check(far, &bad), Reason::UnregisteredDomain, R750);
    e.release(t, None, far).unwrap();
    assert_accepted(&e.check(far, &bad));
}

// ----- monitor mode -------------------------------------------------------------------------

#[test]
fn monitor_mode_never_rejects_but_reports() {
    let mut r = rules();
    r.threshold.mode = Mode::Monitor;
    r.threshold.min_messages = 2;
    r.threshold.min_suspicious = 2;
    r.unregistered.mode = Mode::Monitor;
    r.unregistered.limit = 2;
    r.low_reputation.mode = Mode::Monitor;
    let (mut e, t) = contoso(r);
    e.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
    let bad = from("contoso", "a@evil.example");
    let (d, ev) = e.evaluate(T0, &bad, Spam);
    assert_accepted(&d);
    assert!(ev.is_empty());
    let (d, ev) = e.evaluate(T0 + 1, &bad, Spam);
    assert_accepted(&d);
    assert_eq!(
        kinds(&ev),
        vec![
            (EventKind::Blocked, Rule::TenantThreshold),
            (EventKind::Blocked, Rule::UnregisteredDomain)
        ]
    );
    assert!(ev.iter().all(|x| x.monitor == 1));
    assert_eq!((ev[0].total, ev[0].suspicious), (2, 2));
    // Would have been refused with 5.7.705 (the first applicable rule).
    let d = e.check(T0 + 2, &bad);
    assert_accepted(&d);
    assert_eq!(d.monitored, Some(Reason::TenantThreshold));
    assert_eq!(d.rule(), Some(Rule::TenantThreshold));
    assert_eq!(d.block_ends, Some(BlockEnd::OnRelease));
    // Low-reputation IP in monitor mode.
    let (mut e2, _) = contoso({
        let mut r = rules();
        r.low_reputation.mode = Mode::Monitor;
        r
    });
    e2.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
    let d = e2.check(
        T0,
        &Message {
            client_ip: Some(ip("192.0.2.1")),
            ..from("contoso", "a@contoso.com")
        },
    );
    assert_accepted(&d);
    assert_eq!(d.monitored, Some(Reason::LowReputationIp));
    // Monitored mail is counted like accepted mail.
    let (d, _) = e.evaluate(T0 + 3, &bad, Spam);
    assert_accepted(&d);
    assert_eq!(status(&e, t, T0 + 3).counters.total, 3);
    let restr: Vec<_> = e.restricted(T0 + 3).collect();
    assert_eq!(restr.len(), 2);
    assert!(restr.iter().all(|x| x.monitor));
}

#[test]
fn monitor_on_one_rule_enforce_on_another() {
    let mut r = rules();
    r.threshold.mode = Mode::Monitor;
    r.threshold.min_messages = 1;
    r.threshold.min_suspicious = 1;
    r.unregistered.limit = 1;
    let (mut e, _) = contoso(r);
    let bad = from("contoso", "a@evil.example");
    e.record(T0, &bad, Spam).unwrap();
    let d = e.check(T0 + 1, &bad);
    assert_refused_with_monitor(&d, Reason::UnregisteredDomain, Reason::TenantThreshold);
    let d = e.check(T0 + 1, &from("contoso", "a@contoso.com"));
    assert_accepted(&d);
    assert_eq!(d.monitored, Some(Reason::TenantThreshold));
}

#[track_caller]
fn assert_refused_with_monitor(d: &Decision, reason: Reason, monitored: Reason) {
    assert_eq!(d.reason, Some(reason), "{d:?}");
    assert_eq!(d.reply(), Some(reason.reply()));
    assert_eq!(d.monitored, Some(monitored), "{d:?}");
}

// ----- lapsed subscriptions -----------------------------------------------------------------

#[test]
fn lapsed_tenant_is_refused_until_renewal_synced() {
    let mut r = rules();
    r.threshold.renewal_delay = 3600;
    let (mut e, t) = contoso(r);
    let m = from("contoso", "a@contoso.com");
    assert_accepted(&e.check(T0, &m));
    let ev = e.mark_lapsed(t, T0 + 10).unwrap();
    assert_eq!(kinds(&ev), vec![(EventKind::Lapsed, Rule::TenantThreshold)]);
    assert_eq!(ev[0].time, T0 + 10);
    assert!(
        e.mark_lapsed(t, T0 + 11).unwrap().is_empty(),
        "already lapsed"
    );
    for s in ["a@contoso.com", "<>", "a@evil.example"] {
        let d = e.check(T0 + 20, &from("contoso", s));
        assert_eq!(d.reason, Some(Reason::TenantLapsed), "{s}");
        assert_eq!(d.reply(), Some(R705));
        assert_eq!(d.code(), Some("5.7.705"));
        assert_eq!(d.block_ends, Some(BlockEnd::OnRelease));
    }
    assert!(status(&e, t, T0 + 20).lapsed);
    let r: Vec<_> = e.restricted(T0 + 20).collect();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].tenant, r[0].reason, r[0].since),
        (t, Reason::TenantLapsed, T0 + 10)
    );
    let ev = e.mark_active(t, T0 + 100).unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Reactivated, Rule::TenantThreshold)]
    );
    assert!(e.mark_active(t, T0 + 101).unwrap().is_empty());
    let d = e.check(T0 + 100, &m);
    assert_eq!(d.reason, Some(Reason::TenantLapsed));
    assert_eq!(d.block_ends, Some(BlockEnd::At(T0 + 3700)));
    assert_eq!(e.check(T0 + 3699, &m).reason, Some(Reason::TenantLapsed));
    assert!(status(&e, t, T0 + 3699).lapsed);
    assert_accepted(&e.check(T0 + 3700, &m));
    assert!(!status(&e, t, T0 + 3700).lapsed);
    assert_eq!(e.restricted(T0 + 3700).count(), 0);
    // Lapsed refusals are not counted.
    let (mut e, t) = contoso(rules());
    e.mark_lapsed(t, T0).unwrap();
    let (d, _) = e.evaluate(T0 + 1, &m, Spam);
    assert_eq!(d.reason, Some(Reason::TenantLapsed));
    assert_eq!(status(&e, t, T0 + 1).counters.total, 0);
    // Without renewal delay, active immediately.
    e.mark_active(t, T0 + 2).unwrap();
    assert_accepted(&e.check(T0 + 2, &m));
}

// ----- sliding window -----------------------------------------------------------------------

fn window_rules(window: u64, slots: u16) -> (Engine<HeapStorage>, TenantId) {
    let mut c = cap();
    c.threshold_slots = slots;
    c.unregistered_slots = slots;
    let mut r = rules();
    r.threshold.window = window;
    r.unregistered.window = window;
    let mut e = engine_with(c, r);
    let t = e.add_tenant("contoso", true).unwrap();
    e.add_domain(t, "contoso.com", false, true).unwrap();
    (e, t)
}

#[test]
fn window_forgets_old_counts_with_slot_precision() {
    // 4 slots of 100 s.
    let (mut e, t) = window_rules(400, 4);
    let bad = from("contoso", "a@evil.example");
    e.record(T0 + 50, &bad, Spam).unwrap(); // slot epoch E = T0/100
    e.record(T0 + 150, &bad, Clean).unwrap(); // E+1
    e.record(T0 + 399, &bad, Clean).unwrap(); // E+3
    let c = |e: &Engine<HeapStorage>, now| {
        let c = status(e, t, now).counters;
        (c.total, c.suspicious, c.unregistered)
    };
    assert_eq!(c(&e, T0 + 399), (3, 1, 3));
    assert_eq!(c(&e, T0 + 400), (2, 0, 2), "epoch E left the window");
    assert_eq!(c(&e, T0 + 499), (2, 0, 2));
    assert_eq!(c(&e, T0 + 500), (1, 0, 1));
    assert_eq!(c(&e, T0 + 699), (1, 0, 1));
    assert_eq!(c(&e, T0 + 700), (0, 0, 0));
    // Counting after a gap does not resurrect old slots.
    e.record(T0 + 1000, &bad, Clean).unwrap();
    assert_eq!(c(&e, T0 + 1000), (1, 0, 1));
    // The decision's counters agree.
    assert_eq!(e.check(T0 + 1000, &bad).counters.unregistered, 1);
}

#[test]
fn window_decides_whether_limit_trips() {
    let (mut e, _) = window_rules(400, 4);
    e.set_rules({
        let mut r = *e.rules();
        r.unregistered.limit = 2;
        r
    })
    .unwrap();
    let bad = from("contoso", "a@evil.example");
    e.record(T0 + 50, &bad, Clean).unwrap();
    // Slot of T0+50 has left the window at T0+400: no trip.
    assert!(e.record(T0 + 420, &bad, Clean).unwrap().is_empty());
    assert_accepted(&e.check(T0 + 421, &bad));
    // Still inside (T0+420 counted): trips.
    let ev = e.record(T0 + 799, &bad, Clean).unwrap();
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Blocked, Rule::UnregisteredDomain)]
    );
}

#[test]
fn two_slot_window() {
    let (mut e, t) = window_rules(200, 2);
    let bad = from("contoso", "a@evil.example");
    e.record(T0 + 99, &bad, Clean).unwrap(); // epoch E
    e.record(T0 + 100, &bad, Clean).unwrap(); // epoch E+1
    let u = |now| status(&e, t, now).counters.unregistered;
    assert_eq!(u(T0 + 100), 2);
    assert_eq!(u(T0 + 199), 2);
    assert_eq!(u(T0 + 200), 1);
    assert_eq!(u(T0 + 299), 1);
    assert_eq!(u(T0 + 300), 0);
}

#[test]
fn recipients_count_mode() {
    let mut r = rules();
    r.threshold.count = CountMode::Recipients;
    r.threshold.min_messages = 10;
    r.threshold.min_suspicious = 6;
    r.unregistered.count = CountMode::Recipients;
    r.unregistered.limit = 10;
    let (mut e, t) = contoso(r);
    let m = |n| Message {
        recipients: n,
        ..from("contoso", "a@evil.example")
    };
    assert!(e.record(T0, &m(4), Spam).unwrap().is_empty());
    assert!(e.record(T0 + 1, &m(0), Clean).unwrap().is_empty()); // 0 counts as 1
    let c = status(&e, t, T0 + 1).counters;
    assert_eq!((c.total, c.suspicious, c.unregistered), (5, 4, 5));
    assert!(e.record(T0 + 2, &m(4), Clean).unwrap().is_empty()); // 9 total, 4 suspicious
    assert_accepted(&e.check(T0 + 3, &m(50)));
    let ev = e.record(T0 + 3, &m(5), Spam).unwrap(); // 14 total, 9 suspicious
    assert_eq!(
        kinds(&ev),
        vec![
            (EventKind::Blocked, Rule::TenantThreshold),
            (EventKind::Blocked, Rule::UnregisteredDomain)
        ]
    );
    assert_eq!(
        (ev[0].total, ev[0].suspicious, ev[0].unregistered),
        (14, 9, 14)
    );
}

#[test]
fn messages_count_mode_ignores_recipients() {
    let mut r = rules();
    r.unregistered.limit = 3;
    let (mut e, t) = contoso(r);
    let m = Message {
        recipients: 100,
        ..from("contoso", "a@evil.example")
    };
    assert!(e.record(T0, &m, Clean).unwrap().is_empty());
    assert!(e.record(T0, &m, Clean).unwrap().is_empty());
    assert_eq!(status(&e, t, T0).counters.unregistered, 2);
    assert_eq!(status(&e, t, T0).counters.total, 2);
}

// ----- per-tenant overrides -----------------------------------------------------------------

#[test]
fn overrides_give_a_big_customer_a_higher_limit() {
    let mut r = rules();
    r.unregistered.limit = 2;
    let mut e = engine_with(cap(), r);
    let small = e.add_tenant("small", true).unwrap();
    let big = e.add_tenant("big", true).unwrap();
    let mut br = r;
    br.unregistered.limit = 5;
    e.set_overrides(big, Some(br)).unwrap();
    assert_eq!(e.tenant_rules(big).unwrap().unregistered.limit, 5);
    assert_eq!(e.tenant_rules(small).unwrap().unregistered.limit, 2);
    let mut tripped = std::collections::HashMap::new();
    for i in 0..6u64 {
        for name in ["small", "big"] {
            let m = from(name, "a@evil.example");
            let (d, ev) = e.evaluate(T0 + i, &m, Clean);
            if !ev.is_empty() {
                tripped.insert(name, i);
            }
            if name == "big" {
                assert_eq!(d.counters.limit, 5);
            }
        }
    }
    assert_eq!(tripped.get("small"), Some(&1));
    assert_eq!(tripped.get("big"), Some(&4));
    assert_refused(
        &e.check(T0 + 10, &from("big", "a@evil.example")),
        Reason::UnregisteredDomain,
        R750,
    );
    assert!(status(&e, small, T0 + 10).unregistered.blocked);
    // Back to the defaults: the counters are kept.
    e.release(big, None, T0 + 20).unwrap();
    e.set_overrides(big, None).unwrap();
    assert_eq!(e.tenant_rules(big).unwrap().unregistered.limit, 2);
    let mut bad = rules();
    bad.unregistered.limit = 0;
    assert!(matches!(
        e.set_overrides(big, Some(bad)),
        Err(Error::InvalidParameter(_))
    ));
}

// ----- audit trail --------------------------------------------------------------------------

#[test]
fn audit_trail_is_bounded_oldest_dropped_in_order() {
    let mut c = cap();
    c.audit_depth = 3;
    let mut e = engine_with(c, rules());
    let t = e.add_tenant("contoso", true).unwrap();
    let other = e.add_tenant("other", true).unwrap();
    e.mark_lapsed(other, T0).unwrap();
    for i in 0..3u64 {
        e.mark_lapsed(t, T0 + 10 * i).unwrap();
        e.mark_active(t, T0 + 10 * i + 5).unwrap();
    }
    let a: Vec<_> = e
        .audit(t)
        .map(|x| (x.kind().unwrap(), x.time, x.tenant()))
        .collect();
    assert_eq!(
        a,
        vec![
            (EventKind::Reactivated, T0 + 15, t),
            (EventKind::Lapsed, T0 + 20, t),
            (EventKind::Reactivated, T0 + 25, t),
        ]
    );
    let a: Vec<_> = e
        .audit(other)
        .map(|x| (x.kind().unwrap(), x.time))
        .collect();
    assert_eq!(a, vec![(EventKind::Lapsed, T0)]);
    // Blocks and releases are audited with their counters.
    let mut r = rules();
    r.unregistered.limit = 1;
    let (mut e, t) = contoso(r);
    e.record(T0, &from("contoso", "a@evil.example"), Spam)
        .unwrap();
    e.release(t, None, T0 + 1).unwrap();
    let a: Vec<_> = e
        .audit(t)
        .map(|x| (x.kind().unwrap(), x.rule().unwrap(), x.time, x.unregistered))
        .collect();
    assert_eq!(
        a,
        vec![
            (EventKind::Blocked, Rule::UnregisteredDomain, T0, 1),
            (EventKind::Released, Rule::UnregisteredDomain, T0 + 1, 0),
        ]
    );
}

// ----- restricted tenants and suspicious connectors -----------------------------------------

#[test]
fn restricted_lists_blocked_tenants_with_reason_and_since() {
    let mut r = rules();
    r.unregistered.limit = 1;
    r.threshold.min_messages = 1;
    r.threshold.min_suspicious = 1;
    let mut e = engine_with(cap(), r);
    let a = e.add_tenant("a", true).unwrap();
    let b = e.add_tenant("b", true).unwrap();
    let c = e.add_tenant("c", true).unwrap();
    let _d = e.add_tenant("d", true).unwrap();
    e.add_domain(a, "a.example", false, true).unwrap();
    e.record(T0 + 1, &from("a", "x@a.example"), Spam).unwrap();
    e.record(T0 + 2, &from("b", "x@evil.example"), Clean)
        .unwrap();
    e.mark_lapsed(c, T0 + 3).unwrap();
    e.record(T0 + 4, &from("d", "<>"), Clean).unwrap();
    let mut got: Vec<_> = e
        .restricted(T0 + 10)
        .map(|x| (x.tenant, x.reason, x.since, x.ends, x.monitor))
        .collect();
    got.sort_by_key(|x| x.0);
    assert_eq!(
        got,
        vec![
            (
                a,
                Reason::TenantThreshold,
                T0 + 1,
                BlockEnd::OnRelease,
                false
            ),
            (
                b,
                Reason::UnregisteredDomain,
                T0 + 2,
                BlockEnd::OnRelease,
                false
            ),
            (c, Reason::TenantLapsed, T0 + 3, BlockEnd::OnRelease, false),
        ]
    );
    e.release(a, None, T0 + 20).unwrap();
    let got: Vec<_> = e.restricted(T0 + 20).map(|x| x.tenant).collect();
    assert!(!got.contains(&a));
    assert_eq!(got.len(), 2);
}

#[test]
fn suspicious_connectors_are_flagged() {
    let mut e = engine_with(cap(), rules());
    let t = e.add_tenant("contoso", true).unwrap();
    e.add_domain(t, "contoso.com", true, true).unwrap();
    e.add_domain(t, "contoso.org", true, false).unwrap();
    e.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
    let now = T0;
    let old = now - 60 * 86_400;
    let fine = e
        .add_connector(t, "onprem", Some("mail.contoso.com"), old)
        .unwrap();
    let fresh = e.add_connector(t, "fresh", None, now - 3600).unwrap();
    let bad_cert = e
        .add_connector(t, "partner", Some("relay.attacker.example"), old)
        .unwrap();
    let unval_cert = e
        .add_connector(t, "unvalidated", Some("mx.contoso.org"), old)
        .unwrap();
    let lowrep = e.add_connector(t, "cheap-vps", None, old).unwrap();
    e.add_connector_range(lowrep, cidr("192.0.2.64/26"))
        .unwrap();
    let clean = e.add_connector(t, "hq", None, old).unwrap();
    e.add_connector_range(clean, cidr("198.51.100.0/24"))
        .unwrap();
    let all_bad = e
        .add_connector(t, "all", Some("x.attacker.example"), now - 10)
        .unwrap();
    e.add_connector_range(all_bad, cidr("192.0.2.7/32"))
        .unwrap();
    let mut got: Vec<_> = e
        .suspicious_connectors(now)
        .map(|s| (s.connector.0, s.tenant, s.why))
        .collect();
    got.sort();
    use outguard::suspicion::*;
    let mut want = vec![
        (fresh.0, t, RECENT),
        (bad_cert.0, t, CERTIFICATE_NOT_ACCEPTED),
        (unval_cert.0, t, CERTIFICATE_NOT_ACCEPTED),
        (lowrep.0, t, LOW_REPUTATION_RANGE),
        (
            all_bad.0,
            t,
            RECENT | CERTIFICATE_NOT_ACCEPTED | LOW_REPUTATION_RANGE,
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(!got.iter().any(|x| x.0 == fine.0 || x.0 == clean.0));
    // "Recent" is relative to now.
    let later: Vec<_> = e
        .suspicious_connectors(now + 30 * 86_400)
        .map(|s| s.connector)
        .collect();
    assert!(!later.contains(&fresh));
    // Validating the domain clears the certificate flag.
    e.validate_domain(t, "contoso.org").unwrap();
    assert!(!e
        .suspicious_connectors(now)
        .any(|s| s.connector == unval_cert));
}

#[test]
fn connector_range_partly_on_low_reputation_list_is_suspicious() {
    // A connector whose source range includes low-reputation addresses deserves a look even
    // when its first address is not listed.
    let mut e = engine_with(cap(), rules());
    let t = e.add_tenant("contoso", true).unwrap();
    e.add_low_reputation(cidr("203.0.113.128/25")).unwrap();
    let c = e.add_connector(t, "wide", None, T0 - 60 * 86_400).unwrap();
    e.add_connector_range(c, cidr("203.0.113.0/24")).unwrap();
    let got: Vec<_> = e
        .suspicious_connectors(T0)
        .map(|s| (s.connector, s.why))
        .collect();
    assert_eq!(got, vec![(c, suspicion::LOW_REPUTATION_RANGE)]);
}

// ----- snapshots ----------------------------------------------------------------------------

fn snapshot_setup() -> Engine<HeapStorage> {
    let mut r = rules();
    r.threshold.min_messages = 6;
    r.threshold.min_suspicious = 3;
    r.threshold.warn_ratio_ppm = RATIO_ONE / 4;
    r.unregistered.limit = 4;
    r.unregistered.block = BlockDuration::Seconds(900);
    let mut c = cap();
    c.threshold_slots = 6;
    c.unregistered_slots = 4;
    c.audit_depth = 5;
    let mut e = engine_with(c, r);
    for (id, dom) in [
        ("contoso", "contoso.com"),
        ("fabrikam", "fabrikam.com"),
        ("idle", "idle.example"),
    ] {
        let t = e.add_tenant(id, true).unwrap();
        e.add_domain(t, dom, false, true).unwrap();
    }
    e
}

const SENDERS: [&str; 6] = [
    "a@contoso.com",
    "b@fabrikam.com",
    "c@evil.example",
    "<>",
    "d@[192.0.2.1]",
    "e@other.example",
];

/// Runs `n` pseudo-random messages through `e`; returns every decision and event.
fn replay(e: &mut Engine<HeapStorage>, seed: u64, start: u64, n: usize) -> Vec<String> {
    let mut g = Lcg(seed);
    let mut out = Vec::new();
    let mut now = start;
    for i in 0..n {
        now += g.below(40);
        let tenant = ["contoso", "fabrikam"][g.below(2) as usize];
        let m = from(tenant, SENDERS[g.below(SENDERS.len() as u64) as usize]);
        let v = [Clean, Clean, Spam, Bulk][g.below(4) as usize];
        if i % 97 == 96 {
            let t = e.tenant(tenant).unwrap();
            out.push(format!("release {:?}", e.release(t, None, now).unwrap()));
        }
        let (d, ev) = e.evaluate(now, &m, v);
        out.push(format!("{d:?} {ev:?}"));
    }
    out
}

fn full_state(e: &Engine<HeapStorage>, now: u64) -> Vec<String> {
    let mut s: Vec<String> = e
        .tenants()
        .map(|t| {
            format!(
                "{:?} {:?}",
                e.status(t, now).unwrap(),
                e.audit(t).collect::<Vec<_>>()
            )
        })
        .collect();
    for snd in SENDERS {
        for t in ["contoso", "fabrikam", "idle"] {
            s.push(format!("{:?}", e.check(now, &from(t, snd))));
        }
    }
    s
}

fn snapshot_of(e: &Engine<HeapStorage>) -> Vec<u8> {
    let mut buf = vec![0; e.snapshot_len()];
    let n = e.write_snapshot(&mut buf).unwrap();
    assert_eq!(n, buf.len());
    buf
}

#[test]
fn snapshot_round_trip_replays_identically() {
    let mut a = snapshot_setup();
    replay(&mut a, 7, T0, 400);
    let snap = snapshot_of(&a);
    let mid = T0 + 400 * 40;
    let mut b = snapshot_setup();
    let rep = b.restore_snapshot(&snap).unwrap();
    assert_eq!(rep.unknown, 0);
    assert!(rep.restored >= 2);
    assert_eq!(full_state(&a, mid), full_state(&b, mid));
    // Same stream afterwards: same decisions, events and state.
    let ra = replay(&mut a, 99, mid, 400);
    let rb = replay(&mut b, 99, mid, 400);
    assert_eq!(ra, rb);
    let end = mid + 400 * 40;
    assert_eq!(full_state(&a, end), full_state(&b, end));
    // A snapshot of the restored engine restores to the same state again.
    let mut c = snapshot_setup();
    c.restore_snapshot(&snapshot_of(&b)).unwrap();
    assert_eq!(full_state(&a, end), full_state(&c, end));
    // Too small a buffer is an error.
    let mut small = vec![0; a.snapshot_len() - 1];
    assert_eq!(a.write_snapshot(&mut small), Err(Error::BufferTooSmall));
}

#[test]
fn snapshot_restore_overwrites_existing_state() {
    let mut a = snapshot_setup();
    replay(&mut a, 3, T0, 200);
    let snap = snapshot_of(&a);
    let fresh = snapshot_of(&snapshot_setup());
    let mut b = snapshot_setup();
    replay(&mut b, 5, T0, 300);
    b.restore_snapshot(&snap).unwrap();
    let now = T0 + 200 * 40;
    assert_eq!(full_state(&a, now), full_state(&b, now));
    // Restoring the snapshot of a fresh engine clears everything.
    b.restore_snapshot(&fresh).unwrap();
    assert_eq!(full_state(&b, now), full_state(&snapshot_setup(), now));
}

#[test]
fn snapshot_restore_clears_runtime_lapsed_state() {
    // "Afterwards every tenant of the engine has exactly the state the snapshot holds."
    let a = snapshot_setup();
    let snap = snapshot_of(&a);
    let mut b = snapshot_setup();
    let t = b.tenant("contoso").unwrap();
    b.mark_lapsed(t, T0).unwrap();
    b.restore_snapshot(&snap).unwrap();
    assert_eq!(full_state(&a, T0 + 1), full_state(&b, T0 + 1));
}

/// The engine after a failed restore is exactly as it was.
fn assert_restore_fails(e: &mut Engine<HeapStorage>, bytes: &[u8], want: Error, what: &str) {
    let now = T0 + 100_000;
    let before = full_state(e, now);
    let snap_before = snapshot_of(e);
    assert_eq!(e.restore_snapshot(bytes), Err(want), "{what}");
    assert_eq!(full_state(e, now), before, "{what}: engine changed");
    assert_eq!(snapshot_of(e), snap_before, "{what}: engine changed");
}

#[test]
fn corrupt_snapshots_are_errors_and_leave_engine_unchanged() {
    let mut a = snapshot_setup();
    replay(&mut a, 11, T0, 300);
    let snap = snapshot_of(&a);
    assert!(snap.len() > 64);
    let mut b = snapshot_setup();
    replay(&mut b, 12, T0, 150);
    // Wrong magic.
    let mut x = snap.clone();
    x[0] ^= 0x20;
    assert_restore_fails(&mut b, &x, Error::SnapshotForeign, "magic");
    assert_restore_fails(
        &mut b,
        b"PK\x03\x04 a zip file, not a snapshot ......",
        Error::SnapshotForeign,
        "zip",
    );
    assert_restore_fails(&mut b, b"", Error::SnapshotTruncated, "empty");
    // Wrong version.
    let mut x = snap.clone();
    x[8..12].copy_from_slice(&(outguard::snapshot::VERSION + 1).to_le_bytes());
    assert_restore_fails(&mut b, &x, Error::SnapshotVersion, "next version");
    let mut x = snap.clone();
    x[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert_restore_fails(&mut b, &x, Error::SnapshotVersion, "version 0");
    // Truncated at every length.
    for n in 0..snap.len() {
        assert_eq!(
            b.restore_snapshot(&snap[..n]),
            Err(Error::SnapshotTruncated),
            "truncated to {n}"
        );
    }
    assert_restore_fails(
        &mut b,
        &snap[..snap.len() - 1],
        Error::SnapshotTruncated,
        "truncated",
    );
    // A corrupted byte in the body.
    for at in [32, 33, snap.len() / 2, snap.len() - 1] {
        let mut x = snap.clone();
        x[at] ^= 0x01;
        assert_restore_fails(&mut b, &x, Error::SnapshotChecksum, "body byte");
    }
    // A corrupted checksum.
    let mut x = snap.clone();
    x[30] ^= 0x80;
    assert_restore_fails(&mut b, &x, Error::SnapshotChecksum, "checksum");
    // Trailing garbage.
    let mut x = snap.clone();
    x.push(0);
    assert!(b.restore_snapshot(&x).is_err());
    // And the good one still restores afterwards.
    b.restore_snapshot(&snap).unwrap();
    assert_eq!(full_state(&a, T0 + 100_000), full_state(&b, T0 + 100_000));
}

#[test]
fn every_flipped_snapshot_byte_is_detected() {
    let mut a = snapshot_setup();
    replay(&mut a, 13, T0, 120);
    let snap = snapshot_of(&a);
    let mut b = snapshot_setup();
    let mut undetected = Vec::new();
    for at in 0..snap.len() {
        let mut x = snap.clone();
        x[at] ^= 0x04;
        if b.restore_snapshot(&x).is_ok() {
            undetected.push(at);
        }
    }
    assert!(
        undetected.is_empty(),
        "corruption at byte offsets {undetected:?} restored without error"
    );
}

#[test]
fn adopt_state_keeps_blocks_and_counters_when_limits_change() {
    let mut old = snapshot_setup();
    let gone = old.add_tenant("gone", true).unwrap();
    old.mark_lapsed(gone, T0).unwrap();
    let c = old.tenant("contoso").unwrap();
    let bad = from("contoso", "x@evil.example");
    for i in 0..4 {
        old.record(T0 + i, &bad, Spam).unwrap();
    }
    assert!(old.status(c, T0 + 4).unwrap().unregistered.blocked);
    let mut r = *old.rules();
    r.unregistered.limit = 100;
    r.threshold.min_messages = 50;
    let mut cp = *old.capacity();
    cp.tenants = 8;
    let mut new = engine_with(cp, r);
    for (id, dom) in [
        ("idle", "idle.example"),
        ("contoso", "contoso.com"),
        ("fabrikam", "fabrikam.com"),
    ] {
        let t = new.add_tenant(id, true).unwrap();
        new.add_domain(t, dom, false, true).unwrap();
    }
    assert_eq!(new.adopt_state(&old), 1, "one tenant has no counterpart");
    let nc = new.tenant("contoso").unwrap();
    let st = new.status(nc, T0 + 5).unwrap();
    assert!(st.unregistered.blocked);
    assert_eq!(st.unregistered.blocked_at, Some(T0 + 3));
    assert_eq!(st.unregistered.block_ends, Some(BlockEnd::At(T0 + 3 + 900)));
    assert_eq!(
        (
            st.counters.total,
            st.counters.suspicious,
            st.counters.unregistered
        ),
        (4, 4, 4)
    );
    assert_eq!(st.counters.limit, 100);
    assert_refused(&new.check(T0 + 5, &bad), Reason::UnregisteredDomain, R750);
    assert_eq!(
        new.audit(nc).map(|x| x.kind().unwrap()).collect::<Vec<_>>(),
        old.audit(c).map(|x| x.kind().unwrap()).collect::<Vec<_>>()
    );
    // The audit entries name the tenant's index in the new engine.
    assert!(new.audit(nc).all(|x| x.tenant() == nc));
}

// ----- operator actions ---------------------------------------------------------------------

#[test]
fn domains_connectors_and_tenants_can_be_removed() {
    let mut e = engine_with(cap(), rules());
    let a = e.add_tenant("alpha", true).unwrap();
    let b = e.add_tenant("bravo", true).unwrap();
    e.add_domain(a, "alpha.example", false, true).unwrap();
    e.add_domain(b, "bravo.example", false, true).unwrap();
    assert_eq!(
        e.add_domain(a, "ALPHA.example.", true, true),
        Err(Error::DuplicateDomain)
    );
    assert_eq!(
        e.add_domain(a, "bad..example", false, true),
        Err(Error::InvalidDomain)
    );
    assert_eq!(
        e.add_domain(TenantId(77), "x.example", false, true),
        Err(Error::UnknownTenant)
    );
    let ac = e.add_connector(a, "hq", None, 1).unwrap();
    e.add_connector_range(ac, cidr("203.0.113.0/24")).unwrap();
    let bc = e
        .add_connector(b, "cert", Some("mx.bravo.example"), 1)
        .unwrap();
    assert_eq!(
        e.add_connector(a, "hq", None, 1),
        Err(Error::DuplicateConnector)
    );
    assert_eq!(e.add_connector(a, "", None, 1), Err(Error::InvalidName));
    assert_eq!(e.connector(a, "hq"), Some(ac));
    assert_eq!(
        e.connector_info(bc),
        Some((b, "cert", Some("mx.bravo.example"), 1))
    );
    let by_ip = Message {
        client_ip: Some(ip("203.0.113.9")),
        ..Message::new("x@alpha.example")
    };
    let by_cert = Message {
        cert_domain: Some("mx.bravo.example"),
        ..Message::new("x@bravo.example")
    };
    let by_auth = Message {
        auth_user: Some("u@alpha.example"),
        ..Message::new("x@alpha.example")
    };
    assert_eq!(e.check(T0, &by_ip).tenant, Some(a));
    assert_eq!(e.check(T0, &by_cert).tenant, Some(b));
    assert_eq!(e.check(T0, &by_auth).tenant, Some(a));
    // Remove connectors.
    e.remove_connector(ac).unwrap();
    assert_refused(&e.check(T0, &by_ip), Reason::Unattributed, R764);
    assert_eq!(e.remove_connector(ac), Err(Error::NotFound));
    e.remove_connector(bc).unwrap();
    assert_refused(&e.check(T0, &by_cert), Reason::Unattributed, R764);
    assert_eq!(e.connector(a, "hq"), None);
    // Remove a tenant: its domains stop attributing, its id is unknown.
    e.remove_tenant(a).unwrap();
    assert_refused(&e.check(T0, &by_auth), Reason::Unattributed, R764);
    assert_refused(
        &e.check(T0, &from("alpha", "x@alpha.example")),
        Reason::Unattributed,
        R764,
    );
    assert_eq!(e.tenant("alpha"), None);
    assert_eq!(e.remove_tenant(a), Err(Error::UnknownTenant));
    assert_eq!(e.status(a, T0), Err(Error::UnknownTenant));
    assert_eq!(e.tenants().collect::<Vec<_>>(), vec![b]);
    // The id can be used again, and starts clean.
    let a2 = e.add_tenant("alpha", false).unwrap();
    assert_eq!(e.status(a2, T0).unwrap().counters.total, 0);
    assert_eq!(
        e.check(T0, &from("alpha", "x@alpha.example")).sender_class,
        Some(SenderClass::Unregistered)
    );
    assert_refused(&e.check(T0, &by_auth), Reason::Unattributed, R764);
    assert_eq!(
        e.check(T0, &from("bravo", "x@bravo.example")).sender_class,
        Some(SenderClass::Registered)
    );
}

#[test]
fn removed_tenant_state_does_not_leak_into_a_new_tenant() {
    let mut r = rules();
    r.unregistered.limit = 1;
    let mut c = cap();
    c.tenants = 1;
    let mut e = engine_with(c, r);
    let a = e.add_tenant("alpha", true).unwrap();
    e.record(T0, &from("alpha", "x@evil.example"), Spam)
        .unwrap();
    e.mark_lapsed(a, T0).unwrap();
    e.grant_exception(a, cidr("192.0.2.0/24"), u64::MAX)
        .unwrap();
    e.remove_tenant(a).unwrap();
    let b = e.add_tenant("bravo", false).unwrap();
    let st = e.status(b, T0 + 1).unwrap();
    assert!(!st.unregistered.blocked && !st.lapsed && !st.threshold.blocked);
    assert_eq!(st.counters.unregistered, 0);
    assert_eq!(e.audit(b).count(), 0);
    assert_eq!(e.exceptions_of(b).count(), 0);
    assert_accepted(&e.check(T0 + 1, &from("bravo", "x@evil.example")));
}

#[test]
fn full_tables_name_the_table() {
    let mut c = Capacity {
        tenants: 2,
        domains: 2,
        connectors: 1,
        ranges: 2,
        name_bytes: 64,
        overrides: 1,
        audit_depth: 2,
        threshold_slots: 2,
        unregistered_slots: 2,
    };
    let mut e = engine_with(c, rules());
    let a = e.add_tenant("a", true).unwrap();
    let b = e.add_tenant("b", true).unwrap();
    assert_eq!(
        e.add_tenant("c", true),
        Err(Error::TableFull(Table::Tenants))
    );
    e.add_domain(a, "a.example", false, true).unwrap();
    e.add_domain(b, "b.example", false, true).unwrap();
    assert_eq!(
        e.add_domain(b, "c.example", false, true),
        Err(Error::TableFull(Table::Domains))
    );
    let k = e.add_connector(a, "k", None, 1).unwrap();
    assert_eq!(
        e.add_connector(b, "l", None, 1),
        Err(Error::TableFull(Table::Connectors))
    );
    e.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
    e.add_connector_range(k, cidr("198.51.100.0/24")).unwrap();
    assert_eq!(
        e.add_low_reputation(cidr("192.0.3.0/24")),
        Err(Error::TableFull(Table::Ranges))
    );
    assert_eq!(
        e.grant_exception(a, cidr("192.0.2.0/24"), u64::MAX),
        Err(Error::TableFull(Table::Ranges))
    );
    assert_eq!(
        e.add_connector_range(k, cidr("2001:db8::/32")),
        Err(Error::TableFull(Table::Ranges))
    );
    e.set_overrides(a, Some(rules())).unwrap();
    e.set_overrides(a, Some(rules())).unwrap(); // replacing is not a new entry
    assert_eq!(
        e.set_overrides(b, Some(rules())),
        Err(Error::TableFull(Table::Overrides))
    );
    // A full table changes nothing.
    assert_eq!(e.usage().tenants, 2);
    assert_eq!(e.usage().domains, 2);
    assert_eq!(e.usage().ranges, 2);
    // Names.
    // Room for one 8-byte id (with its arena header) and 4 bytes more.
    c.name_bytes = outguard::name_cost(8) as u32 + 4;
    let mut e = engine_with(c, rules());
    let a = e.add_tenant("tenant-a", true).unwrap();
    assert_eq!(
        e.add_domain(a, "a.example", false, true),
        Err(Error::TableFull(Table::Names))
    );
    assert_eq!(
        e.add_tenant("tenant-b", true),
        Err(Error::TableFull(Table::Names))
    );
    assert_eq!(e.domains_of(a).count(), 0);
    assert_eq!(e.tenants().count(), 1);
    assert_eq!(e.usage().domains, 0);
    // Zero-sized optional tables.
    let mut z = c;
    z.overrides = 0;
    z.domains = 0;
    z.ranges = 0;
    z.connectors = 0;
    z.name_bytes = 64;
    let mut e = engine_with(z, rules());
    let a = e.add_tenant("a", true).unwrap();
    assert_eq!(
        e.set_overrides(a, Some(rules())),
        Err(Error::TableFull(Table::Overrides))
    );
    assert_eq!(
        e.add_domain(a, "a.example", false, true),
        Err(Error::TableFull(Table::Domains))
    );
    assert_eq!(
        e.add_low_reputation(cidr("192.0.2.0/24")),
        Err(Error::TableFull(Table::Ranges))
    );
    assert_eq!(
        e.add_connector(a, "k", None, 1),
        Err(Error::TableFull(Table::Connectors))
    );
    assert_accepted(&e.check(
        T0,
        &Message {
            tenant: Some("a"),
            ..Message::new("<>")
        },
    ));
}

// Long-running engines add and remove domains, connectors, tenants and overrides; a removed
// entry must not keep holding capacity (otherwise an operator eventually gets TableFull with a
// nearly empty engine).
fn small_cap() -> Capacity {
    Capacity {
        tenants: 2,
        domains: 2,
        connectors: 1,
        ranges: 2,
        name_bytes: 64,
        overrides: 1,
        audit_depth: 2,
        threshold_slots: 2,
        unregistered_slots: 2,
    }
}

#[test]
fn removed_domains_free_their_capacity() {
    let mut e = engine_with(small_cap(), rules());
    let a = e.add_tenant("a", true).unwrap();
    for i in 0..100 {
        e.add_domain(a, "domain-number.example", false, true)
            .unwrap_or_else(|x| panic!("round {i}: {x:?}"));
        e.remove_domain(a, "domain-number.example").unwrap();
    }
}

#[test]
fn removed_connectors_free_their_capacity() {
    let mut e = engine_with(small_cap(), rules());
    let a = e.add_tenant("a", true).unwrap();
    for i in 0..100 {
        let k = e
            .add_connector(a, "connector", Some("mx.example"), 1)
            .unwrap_or_else(|x| panic!("round {i}: {x:?}"));
        e.add_connector_range(k, cidr("198.51.100.0/24")).unwrap();
        e.remove_connector(k).unwrap();
    }
}

#[test]
fn revoked_exceptions_free_their_capacity() {
    let mut e = engine_with(small_cap(), rules());
    let a = e.add_tenant("a", true).unwrap();
    for i in 0..100 {
        e.grant_exception(a, cidr("192.0.2.0/24"), 5)
            .unwrap_or_else(|x| panic!("round {i}: {x:?}"));
        e.add_low_reputation(cidr("192.0.2.0/24")).unwrap();
        e.revoke_exception(a, cidr("192.0.2.0/24")).unwrap();
        e.remove_low_reputation(cidr("192.0.2.0/24")).unwrap();
    }
}

#[test]
fn removed_tenants_free_their_capacity() {
    let mut e = engine_with(small_cap(), rules());
    for i in 0..100 {
        let t = e
            .add_tenant("tenant", true)
            .unwrap_or_else(|x| panic!("round {i}: {x:?}"));
        e.remove_tenant(t).unwrap();
    }
}

#[test]
fn removed_overrides_free_their_slot() {
    let mut e = engine_with(small_cap(), rules());
    let a = e.add_tenant("a", true).unwrap();
    let b = e.add_tenant("b", true).unwrap();
    e.set_overrides(a, Some(rules())).unwrap();
    e.set_overrides(a, None).unwrap();
    e.set_overrides(b, Some(rules()))
        .expect("a's override was dropped, its slot is free");
    e.remove_tenant(b).unwrap();
    e.set_overrides(a, Some(rules()))
        .expect("b was removed, its override slot is free");
}

#[test]
fn duplicate_and_invalid_tenant_ids() {
    let mut e = engine_with(cap(), rules());
    e.add_tenant("contoso", true).unwrap();
    assert_eq!(e.add_tenant("contoso", false), Err(Error::DuplicateTenant));
    for bad in [
        "",
        " contoso",
        "contoso ",
        "con\ntoso",
        "tab\there",
        "nul\0",
        "\u{7f}",
    ] {
        assert_eq!(
            e.add_tenant(bad, true),
            Err(Error::InvalidTenantId),
            "{bad:?}"
        );
    }
    let long = "x".repeat(256);
    assert_eq!(e.add_tenant(&long, true), Err(Error::InvalidTenantId));
    let ok = "y".repeat(255);
    let t = e.add_tenant(&ok, true).unwrap();
    assert_eq!(e.tenant_name(t), ok);
    assert_eq!(e.tenant(&ok), Some(t));
    let u = e.add_tenant("školа-ünïcode", true).unwrap();
    assert_eq!(e.tenant("školа-ünïcode"), Some(u));
    assert_eq!(e.tenants().count(), 3);
}

#[test]
fn reply_lines_are_exact() {
    assert_eq!(Reason::TenantThreshold.reply(), R705);
    assert_eq!(Reason::TenantLapsed.reply(), R705);
    assert_eq!(Reason::LowReputationIp.reply(), R708);
    assert_eq!(Reason::UnregisteredDomain.reply(), R750);
    assert_eq!(Reason::Unattributed.reply(), R764);
    assert!(Reason::InvalidSender.reply().starts_with("550 5.1.7 "));
    for r in Reason::ALL {
        assert!(r.reply().is_ascii());
        assert_eq!(r.smtp_code(), 550);
        assert!(r
            .reply()
            .starts_with(&format!("550 {} ", r.enhanced_code())));
    }
}

#[test]
fn connectors_with_many_ranges_attribute_and_remove_cleanly() {
    let mut e = engine_with(cap(), rules());
    let a = e.add_tenant("alpha", true).unwrap();
    let b = e.add_tenant("bravo", true).unwrap();
    let ca = e.add_connector(a, "a", None, 1).unwrap();
    let cb = e.add_connector(b, "b", None, 1).unwrap();
    // Interleaved additions.
    for (c, r) in [
        (ca, "10.1.0.0/16"),
        (cb, "10.2.0.0/16"),
        (ca, "10.3.0.0/16"),
        (cb, "2001:db8:2::/48"),
        (ca, "2001:db8:1::/48"),
        (cb, "10.4.0.0/16"),
    ] {
        e.add_connector_range(c, cidr(r)).unwrap();
    }
    // A range belongs to one connector only.
    assert!(e.add_connector_range(cb, cidr("10.1.0.0/16")).is_err());
    let who = |e: &Engine<HeapStorage>, addr: &str| {
        e.check(
            T0,
            &Message {
                client_ip: Some(ip(addr)),
                ..Message::new("x@example.org")
            },
        )
        .tenant
    };
    for (addr, t) in [
        ("10.1.2.3", Some(a)),
        ("10.3.2.3", Some(a)),
        ("2001:db8:1::9", Some(a)),
        ("10.2.2.3", Some(b)),
        ("10.4.2.3", Some(b)),
        ("2001:db8:2::9", Some(b)),
        ("10.5.0.1", None),
    ] {
        assert_eq!(who(&e, addr), t, "{addr}");
    }
    e.remove_connector(ca).unwrap();
    for (addr, t) in [
        ("10.1.2.3", None),
        ("10.3.2.3", None),
        ("2001:db8:1::9", None),
        ("10.2.2.3", Some(b)),
        ("10.4.2.3", Some(b)),
        ("2001:db8:2::9", Some(b)),
    ] {
        assert_eq!(who(&e, addr), t, "after removing a's connector: {addr}");
    }
    assert_eq!(e.usage().ranges, 3);
    // The freed range slots are reused by a new connector; b is unaffected.
    let cc = e.add_connector(a, "a2", None, 1).unwrap();
    for r in ["10.1.0.0/16", "10.9.0.0/16", "10.10.0.0/16", "10.11.0.0/16"] {
        e.add_connector_range(cc, cidr(r)).unwrap();
    }
    assert_eq!(who(&e, "10.1.2.3"), Some(a));
    assert_eq!(who(&e, "10.11.2.3"), Some(a));
    assert_eq!(who(&e, "10.4.2.3"), Some(b));
    e.add_low_reputation(cidr("10.11.0.0/16")).unwrap();
    let s: Vec<_> = e
        .suspicious_connectors(T0)
        .map(|s| (s.connector, s.why))
        .collect();
    assert_eq!(s, vec![(cc, suspicion::LOW_REPUTATION_RANGE)]);
    // Removing the tenant removes its connector's ranges, not b's.
    e.remove_tenant(a).unwrap();
    assert_eq!(who(&e, "10.11.2.3"), None);
    assert_eq!(who(&e, "10.1.2.3"), None);
    assert_eq!(who(&e, "10.2.2.3"), Some(b));
    assert_eq!(who(&e, "2001:db8:2::9"), Some(b));
    assert_eq!(
        e.usage().ranges,
        4,
        "b's three ranges and the low-reputation entry"
    );
    e.remove_connector(cb).unwrap();
    assert_eq!(who(&e, "10.2.2.3"), None);
    assert_eq!(e.usage().ranges, 1);
}
