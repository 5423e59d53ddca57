use outguard::*;

fn engine() -> Engine<HeapStorage> {
    let cap = Capacity::default();
    let mut rules = RuleSet::default();
    rules.unregistered.limit = 3;
    rules.threshold.min_messages = 10;
    rules.threshold.min_suspicious = 5;
    let mut e = Engine::new(HeapStorage::new(&cap), cap, rules).unwrap();
    let t = e.add_tenant("contoso", true).unwrap();
    e.add_domain(t, "contoso.com", true, true).unwrap();
    e
}

#[test]
fn unregistered_allowance() {
    let mut e = engine();
    let now = 1_790_000_000;
    let bad = Message {
        tenant: Some("contoso"),
        ..Message::new("x@evil.example")
    };
    let good = Message {
        tenant: Some("contoso"),
        ..Message::new("x@mail.contoso.com")
    };
    for i in 0..3 {
        let (d, ev) = e.evaluate(now + i, &bad, Verdict::Clean);
        assert!(d.accepted(), "{i}");
        assert_eq!(d.sender_class, Some(SenderClass::Unregistered));
        assert_eq!(ev.len(), if i == 2 { 1 } else { 0 });
    }
    let d = e.check(now + 5, &bad);
    assert_eq!(d.reason, Some(Reason::UnregisteredDomain));
    let d = e.check(now + 5, &good);
    assert!(d.accepted());
    assert_eq!(d.sender_class, Some(SenderClass::Registered));
}

#[test]
fn prefix_classes_route_lookups_by_family() {
    let cap = Capacity::default();
    let mut e = Engine::new(HeapStorage::new(&cap), cap, RuleSet::default()).unwrap();
    let ip = |s: &str| s.parse::<core::net::IpAddr>().unwrap();
    e.add_low_reputation(Cidr::parse("192.0.2.0/24").unwrap())
        .unwrap();
    e.add_low_reputation(Cidr::parse("2001:db8:bad::/48").unwrap())
        .unwrap();
    assert!(e.is_low_reputation(ip("192.0.2.9")));
    assert!(e.is_low_reputation(ip("::ffff:192.0.2.9")));
    assert!(e.is_low_reputation(ip("2001:db8:bad::1")));
    assert!(!e.is_low_reputation(ip("2001:db8:bae::1")));
    assert!(!e.is_low_reputation(ip("198.51.100.1")));
    // A prefix covering the IPv4-mapped block matches IPv4 addresses too.
    e.add_low_reputation(Cidr::parse("::/64").unwrap()).unwrap();
    assert!(e.is_low_reputation(ip("198.51.100.1")));
    assert!(e.is_low_reputation(ip("::1")));
    assert!(!e.is_low_reputation(ip("2001:db8::1")));
    e.remove_low_reputation(Cidr::parse("::/64").unwrap())
        .unwrap();
    assert!(!e.is_low_reputation(ip("198.51.100.1")));
    assert!(e.is_low_reputation(ip("192.0.2.200")));
    // Meta round trip keeps the per-class counts.
    let meta = e.meta();
    let mut buf = [0u8; Meta::ENCODED_LEN];
    meta.encode(&mut buf).unwrap();
    assert_eq!(Meta::decode(&buf).unwrap(), meta);
}

/// An engine with a low-reputation range and 5.7.750 tripped for `contoso` at `now`, and `n`
/// messages mixing good, unregistered, null and bad senders, named, unnamed and unknown
/// tenants, and no, listed and IPv6 client addresses.
fn mixed_batch(n: usize, now: u64) -> (Engine<HeapStorage>, Vec<Message<'static>>) {
    let mut e = engine();
    e.add_low_reputation(Cidr::parse("192.0.2.0/24").unwrap())
        .unwrap();
    let senders = [
        "a@contoso.com",
        "x@evil.example",
        "",
        "bad address",
        "b@mail.contoso.com",
    ];
    let tenants = [Some("contoso"), None, Some("nobody")];
    let ips = [None, Some("192.0.2.7"), Some("2001:db8::1")];
    let msgs: Vec<Message> = (0..n)
        .map(|i| Message {
            tenant: tenants[i % 3],
            client_ip: ips[i % 3].map(|x| x.parse().unwrap()),
            recipients: i as u32,
            spf_pass: i % 2 == 0,
            ..Message::new(senders[i % senders.len()])
        })
        .collect();
    // Trip 5.7.750 so some decisions are refusals.
    for k in 0..3 {
        e.evaluate(now + k, &msgs[6], Verdict::Clean); // contoso, x@evil.example
    }
    (e, msgs)
}

#[test]
fn check_batch_decides_like_check() {
    let now = 1_790_000_000;
    let (e, msgs) = mixed_batch(40, now);
    let mut out = vec![e.check(now, &msgs[0]); msgs.len()];
    assert_eq!(e.check_batch(now + 10, &msgs, &mut out), msgs.len());
    for (m, d) in msgs.iter().zip(&out) {
        assert_eq!(*d, e.check(now + 10, m));
    }
    assert!(out.iter().any(|d| !d.accepted()) && out.iter().any(|d| d.accepted()));
    // A short output slice decides only what fits.
    assert_eq!(e.check_batch(now, &msgs, &mut out[..5]), 5);

    // A time per message: each decided at its own time, across groups and across the
    // 24 h window (the counters that tripped the block age out along the batch).
    let times: Vec<u64> = (0..msgs.len() as u64)
        .map(|i| now + 10 + i * 3_000)
        .collect();
    assert_eq!(e.check_batch_at(&times, &msgs, &mut out), msgs.len());
    for ((m, d), t) in msgs.iter().zip(&out).zip(&times) {
        assert_eq!(*d, e.check(*t, m), "at {t}");
    }
    let early = e.check(times[0], &msgs[6]);
    let late = e.check(times[39], &msgs[6]);
    assert_ne!(
        early.counters, late.counters,
        "time must matter in this batch"
    );
    // The shortest of the three slices bounds the count.
    assert_eq!(e.check_batch_at(&times[..7], &msgs, &mut out), 7);
    assert_eq!(e.check_batch_at(&times, &msgs[..3], &mut out), 3);
}

#[test]
fn check_batch_with_decides_like_check() {
    let now = 1_790_000_000;
    let (e, msgs) = mixed_batch(70, now);
    let times: Vec<u64> = (0..msgs.len() as u64)
        .map(|i| now + 10 + i * 2_000)
        .collect();

    // Every field set by `fill`, across groups (70: four full groups and a short one).
    for n in [0, 1, 15, 16, 17, 70] {
        let mut got = Vec::new();
        let mut starts = Vec::new();
        let r = e.check_batch_with(
            n,
            Message::default(),
            |start, t, m| {
                starts.push((start, m.len()));
                t.copy_from_slice(&times[start..start + t.len()]);
                m.copy_from_slice(&msgs[start..start + m.len()]);
                Ok::<(), ()>(())
            },
            |i, d| got.push((i, *d)),
        );
        assert_eq!(r, Ok(n));
        assert_eq!(got.len(), n);
        for (k, (i, d)) in got.iter().enumerate() {
            assert_eq!(*i, k);
            assert_eq!(*d, e.check(times[k], &msgs[k]), "message {k} of {n}");
        }
        let mut out = vec![e.check(now, &msgs[0]); n];
        assert_eq!(e.check_batch_at(&times[..n], &msgs[..n], &mut out), n);
        assert!(got.iter().map(|(_, d)| *d).eq(out));
        assert!(starts
            .iter()
            .all(|&(s, l)| s % 16 == 0 && l == 16.min(n - s)));
    }

    // Fields the same for every message: given once by the template, kept across groups.
    let template = Message {
        tenant: Some("contoso"),
        client_ip: Some("192.0.2.9".parse().unwrap()),
        ..Message::new("")
    };
    let mut got = Vec::new();
    e.check_batch_with(
        40,
        template,
        |start, t, m| {
            for (k, (t, m)) in t.iter_mut().zip(m).enumerate() {
                *t = times[start + k];
                m.mail_from = msgs[start + k].mail_from;
            }
            Ok::<(), ()>(())
        },
        |_, d| got.push(*d),
    )
    .unwrap();
    for (i, d) in got.iter().enumerate() {
        let m = Message {
            mail_from: msgs[i].mail_from,
            ..template
        };
        assert_eq!(*d, e.check(times[i], &m), "message {i}");
    }
    assert!(got
        .iter()
        .any(|d| d.reason == Some(Reason::LowReputationIp)));

    // An error from `fill` stops the batch: only the groups before it were decided.
    let mut written = 0;
    let r = e.check_batch_with(
        70,
        Message::default(),
        |start, t, m| {
            if start >= 32 {
                return Err(start);
            }
            t.copy_from_slice(&times[start..start + t.len()]);
            m.copy_from_slice(&msgs[start..start + m.len()]);
            Ok(())
        },
        |_, _| written += 1,
    );
    assert_eq!(r, Err(32));
    assert_eq!(written, 32);
}

/// `Counters`' limits are the tenant's rules': every decision about a tenant carries the
/// same ones, whatever it counts or refuses, until `set_overrides` changes them; a decision
/// without a tenant has none (the Python batch keeps them once per tenant on this promise).
#[test]
fn a_tenants_decisions_carry_its_rules_limits() {
    let now = 1_790_000_000;
    let (mut e, msgs) = mixed_batch(60, now);
    let limits = |c: &Counters| {
        (
            c.min_messages,
            c.min_suspicious,
            c.max_ratio_ppm,
            c.warn_ratio_ppm,
            c.limit,
        )
    };
    let t = e.tenant("contoso").unwrap();
    let base = (
        10,
        5,
        RuleSet::DEFAULT.threshold.max_ratio_ppm,
        RuleSet::DEFAULT.threshold.warn_ratio_ppm,
        3,
    );
    let mut seen = 0;
    let run = |e: &mut Engine<HeapStorage>, want: (u32, u32, u32, u32, u32), seen: &mut usize| {
        for (k, m) in msgs.iter().enumerate() {
            let at = now + 60 * k as u64;
            let verdict = if k % 4 == 0 {
                Verdict::Spam
            } else {
                Verdict::Clean
            };
            let (d, _) = e.evaluate(at, m, verdict);
            let c = e.check(at + 1, m);
            for d in [d, c] {
                match d.tenant {
                    Some(x) => {
                        assert_eq!(x, t);
                        assert_eq!(limits(&d.counters), want, "{d:?}");
                        *seen += 1;
                    }
                    None => assert_eq!(d.counters, Counters::default(), "{d:?}"),
                }
            }
        }
    };
    run(&mut e, base, &mut seen);
    let mut own = RuleSet::DEFAULT;
    own.unregistered.limit = 9;
    own.threshold.min_messages = 4;
    e.set_overrides(t, Some(own)).unwrap();
    let want = (
        4,
        own.threshold.min_suspicious,
        own.threshold.max_ratio_ppm,
        own.threshold.warn_ratio_ppm,
        9,
    );
    run(&mut e, want, &mut seen);
    assert!(seen > 40, "{seen} decisions about the tenant");
}

/// The same promise with two tenants, one on its own rules in monitor mode and attributed by
/// its login, the other on the defaults: each keeps its own limits whatever it counts.
#[test]
fn each_tenant_keeps_its_own_limits() {
    let now = 1_790_000_000;
    let mut e = engine();
    let contoso = e.tenant("contoso").unwrap();
    let f = e.add_tenant("fabrikam", true).unwrap();
    e.add_domain(f, "fabrikam.com", true, true).unwrap();
    let mut own = RuleSet::DEFAULT;
    own.unregistered.limit = 9;
    own.unregistered.mode = Mode::Monitor;
    own.threshold.min_messages = 4;
    own.threshold.mode = Mode::Monitor;
    e.set_overrides(f, Some(own)).unwrap();
    let msgs = [
        Message {
            tenant: Some("contoso"),
            ..Message::new("x@evil.example")
        },
        Message {
            auth_user: Some("u@fabrikam.com"),
            ..Message::new("y@evil.example")
        },
        Message {
            auth_user: Some("u@fabrikam.com"),
            ..Message::new("u@fabrikam.com")
        },
        Message {
            tenant: Some("contoso"),
            ..Message::new("a@contoso.com")
        },
    ];
    let (mut seen_c, mut seen_f) = (0, 0);
    for k in 0..60u64 {
        let m = &msgs[k as usize % msgs.len()];
        let verdict = if k % 3 == 0 {
            Verdict::Spam
        } else {
            Verdict::Clean
        };
        let (d, _) = e.evaluate(now + 30 * k, m, verdict);
        let c = &d.counters;
        match d.tenant {
            Some(t) if t == contoso => {
                assert_eq!((c.min_messages, c.limit), (10, 3), "{d:?}");
                seen_c += 1;
            }
            Some(t) if t == f => {
                assert_eq!((c.min_messages, c.limit), (4, 9), "{d:?}");
                assert_eq!(d.attribution, Some(Attribution::AuthUser));
                seen_f += 1;
            }
            other => panic!("unexpected tenant {other:?}"),
        }
    }
    assert!(seen_c >= 20 && seen_f >= 20, "{seen_c} {seen_f}");
}
