//! Policy → engine → snapshot → restore → same decisions; reload keeps state; bad policies
//! never replace good ones.
#![cfg(feature = "std")]

use outguard::policy::{snapshot, Policy};
use outguard::{Decision, EventKind, Message, Reason, Verdict};

const POLICY: &str = r#"
[rules.tenant_threshold]
window = "1h"
slots = 12
min_messages = 20
min_suspicious = 10
max_ratio = 0.5
warn_ratio = 0.3

[rules.unregistered_domain]
window = "1h"
slots = 6
limit = 5

[rules.low_reputation_ip]
scope = "unlicensed"
ranges = ["192.0.2.0/24"]

[[tenants]]
id = "contoso"
domains = [{ name = "contoso.com", subdomains = true }]
connectors = [{ name = "hq", ranges = ["203.0.113.0/24"] }]

[[tenants]]
id = "fabrikam"
domains = ["fabrikam.com"]
rules.unregistered_domain.limit = 8

[[tenants]]
id = "trial"
licensed = false
domains = ["trial.example"]
"#;

fn policy(text: &str) -> Policy {
    Policy::from_toml(text, "policy.toml", None).unwrap_or_else(|e| panic!("{e}"))
}

/// A deterministic stream of messages: (time, tenant, sender, ip, verdict).
fn stream(n: usize) -> Vec<(u64, &'static str, &'static str, &'static str, Verdict)> {
    let tenants = ["contoso", "fabrikam", "trial"];
    let senders = [
        "a@contoso.com",
        "b@mail.contoso.com",
        "x@unregistered.example",
        "y@fabrikam.com",
        "z@trial.example",
        "<>",
    ];
    let ips = ["203.0.113.9", "192.0.2.44", "198.51.100.1"];
    let mut x: u64 = 0x9e37_79b9;
    let mut t = 1_790_000_000u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += x % 40;
            let verdict = match x % 7 {
                0 | 1 => Verdict::Spam,
                2 => Verdict::Bulk,
                _ => Verdict::Clean,
            };
            (
                t,
                tenants[(x >> 8) as usize % 3],
                senders[(x >> 16) as usize % senders.len()],
                ips[(x >> 24) as usize % 3],
                verdict,
            )
        })
        .collect()
}

/// A decision with its events as (kind, rule, tenant).
type Outcome = (Decision, Vec<(u8, u8, u32)>);

fn run(
    e: &mut outguard::policy::HeapEngine,
    msgs: &[(u64, &str, &str, &str, Verdict)],
) -> Vec<Outcome> {
    msgs.iter()
        .map(|&(now, tenant, from, ip, verdict)| {
            let msg = Message {
                tenant: Some(tenant),
                client_ip: ip.parse().ok(),
                ..Message::new(from)
            };
            let (d, ev) = e.evaluate(now, &msg, verdict);
            (d, ev.iter().map(|e| (e.kind, e.rule, e.tenant)).collect())
        })
        .collect()
}

#[test]
fn snapshot_restore_gives_the_same_decisions() {
    let p = policy(POLICY);
    let msgs = stream(3000);
    let (first, second) = msgs.split_at(1500);
    let mut a = p.build().unwrap();
    let before = run(&mut a, first);
    assert!(
        before
            .iter()
            .any(|(d, _)| d.reason == Some(Reason::UnregisteredDomain)),
        "the stream must exercise 5.7.750"
    );
    let bytes = snapshot(&a);
    let (mut b, report) = p.restore(&bytes).unwrap();
    assert!(report.restored >= 1);
    assert_eq!(report.unknown, 0);
    let ra = run(&mut a, second);
    let rb = run(&mut b, second);
    assert_eq!(ra, rb);
    // And the restored engine snapshots to the same state.
    for id in ["contoso", "fabrikam", "trial"] {
        let ta = a.tenant(id).unwrap();
        let tb = b.tenant(id).unwrap();
        assert_eq!(
            a.status(ta, 1_800_000_000).unwrap().counters,
            b.status(tb, 1_800_000_000).unwrap().counters
        );
    }
}

#[test]
fn reload_keeps_blocks_counters_and_audit_whatever_the_limits() {
    let p = policy(POLICY);
    let mut e = p.build().unwrap();
    let now = 1_790_000_000;
    let msg = Message {
        tenant: Some("contoso"),
        ..Message::new("x@elsewhere.example")
    };
    for k in 0..5 {
        assert!(e.evaluate(now + k, &msg, Verdict::Clean).0.accepted());
    }
    assert_eq!(
        e.check(now + 10, &msg).reason,
        Some(Reason::UnregisteredDomain)
    );
    let t = e.tenant("contoso").unwrap();
    let audit_before: Vec<_> = e.audit(t).copied().collect();
    assert_eq!(audit_before.len(), 1);

    // Raise the limit, drop a tenant, add one.
    let edited = POLICY.replace("limit = 5", "limit = 50").replace(
        "[[tenants]]\nid = \"trial\"\nlicensed = false\ndomains = [\"trial.example\"]\n",
        "[[tenants]]\nid = \"newcomer\"\ndomains = [\"newcomer.example\"]\n",
    );
    let report = policy(&edited).reload(&mut e).unwrap();
    assert_eq!(report.removed, vec!["trial".to_string()]);
    assert_eq!(report.added, vec!["newcomer".to_string()]);
    let d = e.check(now + 20, &msg);
    assert_eq!(
        d.reason,
        Some(Reason::UnregisteredDomain),
        "a block survives a reload"
    );
    assert_eq!(d.counters.unregistered, 5);
    assert_eq!(d.counters.limit, 50);
    let t = e.tenant("contoso").unwrap();
    let audit_after: Vec<_> = e.audit(t).map(|ev| (ev.kind, ev.rule, ev.time)).collect();
    assert_eq!(
        audit_after,
        audit_before
            .iter()
            .map(|ev| (ev.kind, ev.rule, ev.time))
            .collect::<Vec<_>>()
    );
    // Release works on the reloaded engine and the new limit applies.
    let ev = e.release(t, None, now + 30).unwrap();
    assert_eq!(ev[0].kind(), Some(EventKind::Released));
    assert!(e.check(now + 31, &msg).accepted());
}

#[test]
fn reload_with_changed_window_keeps_totals() {
    let p = policy(POLICY);
    let mut e = p.build().unwrap();
    let now = 1_790_000_000;
    let msg = Message {
        tenant: Some("fabrikam"),
        ..Message::new("x@elsewhere.example")
    };
    for k in 0..3 {
        e.evaluate(now + k * 60, &msg, Verdict::Spam);
    }
    let edited = POLICY.replace("window = \"1h\"\nslots = 6", "window = \"2h\"\nslots = 4");
    policy(&edited).reload(&mut e).unwrap();
    let c = e.check(now + 200, &msg).counters;
    assert_eq!((c.unregistered, c.total, c.suspicious), (3, 3, 3));
}

#[test]
fn a_bad_policy_never_replaces_a_good_one() {
    let p = policy(POLICY);
    let mut e = p.build().unwrap();
    let now = 1_790_000_000;
    let msg = Message {
        tenant: Some("contoso"),
        ..Message::new("x@elsewhere.example")
    };
    for k in 0..5 {
        e.evaluate(now + k, &msg, Verdict::Clean);
    }
    // A parse error is caught before any engine exists.
    let err = Policy::from_toml(
        &POLICY.replace("limit = 5", "limit = \"five\""),
        "edit.toml",
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("edit.toml:"), "{err}");
    assert!(
        err.to_string().contains("rules.unregistered_domain.limit"),
        "{err}"
    );
    // A policy that only fails when built (two connectors claim one range) leaves the engine as is.
    let clash = POLICY.replace(
        "domains = [\"fabrikam.com\"]",
        "domains = [\"fabrikam.com\"]\nconnectors = [{ name = \"dup\", ranges = [\"203.0.113.0/24\"] }]",
    );
    match Policy::from_toml(&clash, "clash.toml", None) {
        Err(err) => assert!(err.to_string().contains("203.0.113.0/24"), "{err}"),
        Ok(bad) => {
            let err = bad.reload(&mut e).unwrap_err();
            assert!(err.to_string().contains("fabrikam"), "{err}");
        }
    }
    assert_eq!(
        e.check(now + 10, &msg).reason,
        Some(Reason::UnregisteredDomain)
    );
    assert_eq!(e.check(now + 10, &msg).counters.unregistered, 5);
}

#[test]
fn corrupt_snapshots_leave_the_engine_as_it_was() {
    let p = policy(POLICY);
    let mut e = p.build().unwrap();
    let msgs = stream(500);
    run(&mut e, &msgs);
    let good = snapshot(&e);
    let before = snapshot(&e);
    for bad in [
        good[..good.len() - 1].to_vec(),
        {
            let mut b = good.clone();
            let n = b.len();
            b[n / 2] ^= 0x40;
            b
        },
        {
            let mut b = good.clone();
            b[8] = 9; // version
            b
        },
        b"not a snapshot at all".to_vec(),
    ] {
        assert!(e.restore_snapshot(&bad).is_err());
        assert_eq!(snapshot(&e), before);
        assert!(p.restore(&bad).is_err());
    }
}
