//! Full `check` and `record` at 1 / 1e4 / 1e6 tenants (2 accepted domains each) with 1e6
//! low-reputation prefixes (half IPv4 /24, half IPv6 /48), beside the std composite
//! ([`StdGuard`]: `HashMap` tenants and domains, `ip_network_table`, per-tenant rings).
//!
//! Modes: `hot` repeats one message (everything cached); `stream` sends messages of random
//! tenants from random clean IPs back to back (the CPU may overlap one call's cache misses
//! with the next's); `isolated` makes each call wait for the
//! previous result, as a mail server's single call does, so every miss is paid in full;
//! `batch` decides groups of 64 random messages with `Engine::check_batch` (time per message).

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use outguard::Verdict;
use outguard_benches::baseline::StdGuard;
use outguard_benches::fixture::{self, Cursor, NOW, QUERIES};

/// Low-reputation prefixes in every configuration.
const LOWREP: u32 = 1_000_000;

fn bench(c: &mut Criterion) {
    for n in [1u32, 10_000, 1_000_000] {
        let size = fixture::label(n as u64);
        let qs = fixture::queries(n, QUERIES, 2);
        let hot = qs[0].clone();
        let mut g = c.benchmark_group("engine");

        let mut e = fixture::engine(n, LOWREP);
        let msg = hot.message();
        g.bench_function(BenchmarkId::new("check-hot-outguard", &size), |b| {
            b.iter(|| e.check(black_box(NOW), black_box(&msg)).accepted())
        });
        g.bench_function(BenchmarkId::new("check-stream-outguard", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            b.iter(|| {
                let q = &qs[cur.independent()];
                e.check(black_box(NOW), &q.message()).accepted()
            })
        });
        g.bench_function(BenchmarkId::new("check-batch-outguard", &size), |b| {
            // `check_batch` over groups of 64 random messages; the time is per message.
            const BATCH: usize = 64;
            let mut cur = Cursor::new(QUERIES);
            let mut out = vec![e.check(NOW, &msg); BATCH];
            b.iter_custom(|iters| {
                let batches: Vec<Vec<_>> = (0..8)
                    .map(|_| {
                        (0..BATCH)
                            .map(|_| qs[cur.independent()].message())
                            .collect()
                    })
                    .collect();
                let start = std::time::Instant::now();
                for k in 0..iters {
                    let msgs = &batches[k as usize % batches.len()];
                    black_box(e.check_batch(black_box(NOW), msgs, &mut out));
                }
                start.elapsed() / BATCH as u32
            })
        });
        g.bench_function(BenchmarkId::new("check-isolated-outguard", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            let mut prev = 0;
            b.iter(|| {
                let q = &qs[cur.isolated(prev)];
                let ok = e.check(black_box(NOW), &q.message()).accepted();
                prev = ok as u64;
                ok
            })
        });
        g.bench_function(BenchmarkId::new("record-hot-outguard", &size), |b| {
            b.iter(|| {
                e.record(black_box(NOW), black_box(&msg), Verdict::Clean)
                    .is_ok()
            })
        });
        g.bench_function(BenchmarkId::new("record-stream-outguard", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            b.iter(|| {
                let q = &qs[cur.independent()];
                e.record(black_box(NOW), &q.message(), Verdict::Clean)
                    .is_ok()
            })
        });
        g.bench_function(BenchmarkId::new("record-isolated-outguard", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            let mut prev = 0;
            b.iter(|| {
                let q = &qs[cur.isolated(prev)];
                let ok = e
                    .record(black_box(NOW), &q.message(), Verdict::Clean)
                    .is_ok();
                prev = ok as u64;
                ok
            })
        });
        drop(e);

        let mut s = StdGuard::new(n, LOWREP);
        g.bench_function(BenchmarkId::new("check-hot-std", &size), |b| {
            b.iter(|| {
                s.check(
                    black_box(NOW),
                    black_box(&hot.tenant),
                    black_box(&hot.mail_from),
                    black_box(hot.ip),
                )
                .accepted
            })
        });
        g.bench_function(BenchmarkId::new("check-stream-std", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            b.iter(|| {
                let q = &qs[cur.independent()];
                s.check(black_box(NOW), &q.tenant, &q.mail_from, q.ip)
                    .accepted
            })
        });
        g.bench_function(BenchmarkId::new("check-isolated-std", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            let mut prev = 0;
            b.iter(|| {
                let q = &qs[cur.isolated(prev)];
                let ok = s
                    .check(black_box(NOW), &q.tenant, &q.mail_from, q.ip)
                    .accepted;
                prev = ok as u64;
                ok
            })
        });
        g.bench_function(BenchmarkId::new("record-hot-std", &size), |b| {
            b.iter(|| {
                s.record(
                    black_box(NOW),
                    black_box(&hot.tenant),
                    black_box(&hot.mail_from),
                    Verdict::Clean,
                )
            })
        });
        g.bench_function(BenchmarkId::new("record-stream-std", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            b.iter(|| {
                let q = &qs[cur.independent()];
                s.record(black_box(NOW), &q.tenant, &q.mail_from, Verdict::Clean)
            })
        });
        g.bench_function(BenchmarkId::new("record-isolated-std", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            let mut prev = 0;
            b.iter(|| {
                let q = &qs[cur.isolated(prev)];
                let r = s.record(black_box(NOW), &q.tenant, &q.mail_from, Verdict::Clean);
                prev = r.is_some() as u64;
                r
            })
        });
        drop(s);
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
