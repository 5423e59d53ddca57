//! CIDR matching at 1e3 / 1e6 low-reputation prefixes (half IPv4 /24, half IPv6 /48):
//! `Engine::is_low_reputation` beside `ip_network_table`'s longest match. Half the addresses
//! looked up are inside a listed prefix, half are clean; both families.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use outguard_benches::baseline::network_table;
use outguard_benches::fixture::{self, Cursor, QUERIES};

fn bench(c: &mut Criterion) {
    for n in [1_000u32, 1_000_000] {
        let size = fixture::label(n as u64);
        let ips = fixture::cidr_queries(n, QUERIES, 5);
        let mut g = c.benchmark_group("cidr");

        macro_rules! measure {
            ($name:expr, |$ip:ident| $call:expr) => {{
                g.bench_function(BenchmarkId::new(format!("{}-stream", $name), &size), |b| {
                    let mut cur = Cursor::new(QUERIES);
                    b.iter(|| {
                        let $ip = black_box(ips[cur.independent()]);
                        $call
                    })
                });
                g.bench_function(
                    BenchmarkId::new(format!("{}-isolated", $name), &size),
                    |b| {
                        let mut cur = Cursor::new(QUERIES);
                        let mut prev = 0;
                        b.iter(|| {
                            let $ip = ips[cur.isolated(prev)];
                            let r = $call;
                            prev = r as u64;
                            r
                        })
                    },
                );
            }};
        }

        let e = fixture::cidr_engine(n);
        measure!("outguard", |ip| e.is_low_reputation(ip));
        drop(e);
        let t = network_table(n);
        measure!("ip_network_table", |ip| t.longest_match(ip).is_some());
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
