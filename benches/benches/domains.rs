//! Domain matching at 1e3 / 1e6 accepted domains, beside a `HashSet<String>` (foldhash)
//! walked by label suffix.
//!
//! outguard has no public domain lookup, so it is measured through `check`: one tenant owns
//! every domain (its record, counters and id stay cached) and has no low-reputation list, so
//! the domain table is the only large structure the call touches. `outguard-null` (the null
//! sender: no domain to match) is the floor of the rest of `check`; the difference is what
//! domain matching costs, sender parsing and normalisation included.
//!
//! `hit`: the sender's domain is one of the accepted domains (random one). `miss`: an
//! unregistered `x<random>.example.org`, so the exact name misses and both parents are looked
//! up.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use outguard::Message;
use outguard_benches::baseline::SuffixSet;
use outguard_benches::fixture::{self, Cursor, DOMAINS_TENANT, NOW, QUERIES};

fn message(mail_from: &str) -> Message<'_> {
    Message {
        mail_from: mail_from.as_bytes(),
        tenant: Some(DOMAINS_TENANT),
        recipients: 1,
        ..Message::default()
    }
}

fn bench(c: &mut Criterion) {
    for n in [1_000u32, 1_000_000] {
        let size = fixture::label(n as u64);
        let hits = fixture::domain_senders(n, QUERIES, 3);
        let misses = fixture::unregistered_senders(QUERIES, 4);
        let mut g = c.benchmark_group("domains");

        macro_rules! measure {
            ($name:expr, $senders:expr, |$s:ident| $call:expr) => {{
                let senders = &$senders;
                g.bench_function(BenchmarkId::new(format!("{}-stream", $name), &size), |b| {
                    let mut cur = Cursor::new(QUERIES);
                    b.iter(|| {
                        let $s = senders[cur.independent()].as_str();
                        $call
                    })
                });
                g.bench_function(
                    BenchmarkId::new(format!("{}-isolated", $name), &size),
                    |b| {
                        let mut cur = Cursor::new(QUERIES);
                        let mut prev = 0;
                        b.iter(|| {
                            let $s = senders[cur.isolated(prev)].as_str();
                            let r = $call;
                            prev = r as u64;
                            r
                        })
                    },
                );
            }};
        }

        let e = fixture::domains_engine(n);
        let check = |s: &str| {
            e.check(black_box(NOW), &message(s))
                .sender_class
                .map_or(0, |c| c as u64)
        };
        measure!("outguard-hit", hits, |s| check(s));
        measure!("outguard-miss", misses, |s| check(s));
        g.bench_function(BenchmarkId::new("outguard-null", &size), |b| {
            b.iter(|| check(black_box("")))
        });
        drop(e);

        let set = SuffixSet::new((0..n).map(fixture::many_domain_name));
        measure!("hashset-hit", hits, |s| set.matches(s));
        measure!("hashset-miss", misses, |s| set.matches(s));
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
