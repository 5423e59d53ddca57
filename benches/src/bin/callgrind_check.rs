//! Instruction counts of the hot paths, as a stable second opinion to the timings: run under
//! `valgrind --tool=callgrind` (as `scripts/bench` does when valgrind is installed), each
//! `drive_*` function makes `CALLS` calls and its inclusive instruction count divided by
//! `CALLS` is the cost of one call. Without valgrind it just runs (a smoke test).
//!
//! The configuration is smaller than the timed one (1e4 tenants, 1e5 prefixes) so that it
//! builds quickly under valgrind; instruction counts barely depend on table size.

use std::hint::black_box;

use outguard::{Engine, HeapStorage, Message, Verdict};
use outguard_benches::baseline::{network_table, StdGuard, SuffixSet};
use outguard_benches::cabi::{self, CMessage, Handle};
use outguard_benches::fixture::{self, Query, NOW};

use outguard_benches::report::CALLGRIND_CALLS as CALLS;
const TENANTS: u32 = 10_000;
const LOWREP: u32 = 100_000;

#[inline(never)]
fn drive_check_hot(e: &Engine<HeapStorage>, q: &Query) -> usize {
    let m = q.message();
    (0..CALLS)
        .filter(|_| e.check(black_box(NOW), black_box(&m)).accepted())
        .count()
}

#[inline(never)]
fn drive_check_random(e: &Engine<HeapStorage>, qs: &[Query]) -> usize {
    qs.iter()
        .filter(|q| e.check(black_box(NOW), &q.message()).accepted())
        .count()
}

#[inline(never)]
fn drive_record_hot(e: &mut Engine<HeapStorage>, q: &Query) -> usize {
    let m = q.message();
    (0..CALLS)
        .filter(|_| {
            e.record(black_box(NOW), black_box(&m), Verdict::Clean)
                .is_ok()
        })
        .count()
}

#[inline(never)]
fn drive_record_random(e: &mut Engine<HeapStorage>, qs: &[Query]) -> usize {
    qs.iter()
        .filter(|q| {
            e.record(black_box(NOW), &q.message(), Verdict::Clean)
                .is_ok()
        })
        .count()
}

#[inline(never)]
fn drive_check_null_sender(e: &Engine<HeapStorage>, q: &Query) -> usize {
    let m = Message {
        mail_from: b"",
        ..q.message()
    };
    (0..CALLS)
        .filter(|_| e.check(black_box(NOW), black_box(&m)).accepted())
        .count()
}

#[inline(never)]
fn drive_check_no_ip(e: &Engine<HeapStorage>, q: &Query) -> usize {
    let m = Message {
        client_ip: None,
        ..q.message()
    };
    (0..CALLS)
        .filter(|_| e.check(black_box(NOW), black_box(&m)).accepted())
        .count()
}

#[inline(never)]
fn drive_is_low_reputation(e: &Engine<HeapStorage>, ips: &[std::net::IpAddr]) -> usize {
    ips.iter()
        .filter(|&&ip| e.is_low_reputation(black_box(ip)))
        .count()
}

#[inline(never)]
fn drive_std_check_hot(s: &StdGuard, q: &Query) -> usize {
    (0..CALLS)
        .filter(|_| {
            s.check(
                black_box(NOW),
                black_box(&q.tenant),
                black_box(&q.mail_from),
                black_box(q.ip),
            )
            .accepted
        })
        .count()
}

#[inline(never)]
fn drive_std_check_random(s: &StdGuard, qs: &[Query]) -> usize {
    qs.iter()
        .filter(|q| {
            s.check(black_box(NOW), &q.tenant, &q.mail_from, q.ip)
                .accepted
        })
        .count()
}

#[inline(never)]
fn drive_std_record_hot(s: &mut StdGuard, q: &Query) -> usize {
    (0..CALLS)
        .filter(|_| {
            s.record(
                black_box(NOW),
                black_box(&q.tenant),
                black_box(&q.mail_from),
                Verdict::Clean,
            )
            .is_some()
        })
        .count()
}

#[inline(never)]
fn drive_network_table(
    t: &ip_network_table::IpNetworkTable<()>,
    ips: &[std::net::IpAddr],
) -> usize {
    ips.iter()
        .filter(|&&ip| t.longest_match(black_box(ip)).is_some())
        .count()
}

#[inline(never)]
fn drive_hashset_domain(s: &SuffixSet, senders: &[String]) -> usize {
    senders.iter().filter(|m| s.matches(black_box(m))).count()
}

#[inline(never)]
fn drive_c_check_hot(h: &Handle, m: &CMessage) -> usize {
    let m = m.c();
    (0..CALLS)
        .filter(|_| h.check(black_box(NOW), black_box(&m)))
        .count()
}

#[inline(never)]
fn drive_c_check_hot_binary(h: &Handle, m: &CMessage) -> usize {
    let m = m.c_binary();
    (0..CALLS)
        .rev()
        .filter(|_| h.check(black_box(NOW), black_box(&m)))
        .count()
}

/// Same code as `drive_check_hot` but for the range direction: identical functions would be
/// merged by the compiler, and callgrind would count both under one name.
#[inline(never)]
fn drive_rust_check_hot_policy(e: &outguard::policy::HeapEngine, q: &Query) -> usize {
    let m = q.message();
    (0..CALLS)
        .rev()
        .filter(|_| e.check(black_box(NOW), black_box(&m)).accepted())
        .count()
}

fn main() {
    let qs = fixture::queries(TENANTS, CALLS, 2);
    let ips = fixture::cidr_queries(LOWREP, CALLS, 5);
    let mut e = fixture::engine(TENANTS, LOWREP);
    let mut n = 0;
    n += drive_check_hot(&e, &qs[0]);
    n += drive_check_random(&e, &qs);
    n += drive_check_null_sender(&e, &qs[0]);
    n += drive_check_no_ip(&e, &qs[0]);
    n += drive_is_low_reputation(&e, &ips);
    n += drive_record_hot(&mut e, &qs[0]);
    n += drive_record_random(&mut e, &qs);
    drop(e);

    let mut s = StdGuard::new(TENANTS, LOWREP);
    n += drive_std_check_hot(&s, &qs[0]);
    n += drive_std_check_random(&s, &qs);
    n += drive_std_record_hot(&mut s, &qs[0]);
    drop(s);
    n += drive_network_table(&network_table(LOWREP), &ips);
    let senders: Vec<String> = qs.iter().map(|q| q.mail_from.clone()).collect();
    let set = SuffixSet::new((0..TENANTS).flat_map(|i| [0, 1].map(|k| fixture::domain_name(i, k))));
    n += drive_hashset_domain(&set, &senders);
    // The C ABI against the Rust call, on engines built from one policy text.
    let text = cabi::policy(1);
    let (h, rust) = (Handle::new(&text), cabi::rust_engine(&text));
    let hot = cabi::hot_query();
    n += drive_c_check_hot(&h, &CMessage::of(&hot));
    n += drive_c_check_hot_binary(&h, &CMessage::of(&hot));
    n += drive_rust_check_hot_policy(&rust, &hot);
    println!("callgrind_check: {CALLS} calls per driver ({n} true results)");
}
