//! C ABI overhead: `og_engine_check` (crate `outguard-ffi`, called through its `extern "C"`
//! function from Rust, as a C caller would: NUL-terminated tenant id, client IP as text, the
//! decision written through a pointer) beside `Engine::check` on an engine built from the
//! same policy text, in the same run.
//!
//! `hot`: one message repeated (1 tenant, client IP `203.0.113.5`). `stream`: random tenants,
//! random clean IPs (half of them IPv6, whose text takes longer to parse).

mod common;

use std::hint::black_box;
use std::sync::RwLock;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use outguard_benches::cabi::{hot_query, policy, rust_engine, CMessage, Handle};
use outguard_benches::fixture::{self, Cursor, NOW, QUERIES};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ffi");
    for n in [1u32, 10_000] {
        let size = fixture::label(n as u64);
        let text = policy(n);
        let rust = rust_engine(&text);
        let h = Handle::new(&text);
        let qs = fixture::queries(n, QUERIES, 2);
        let cm: Vec<CMessage> = qs.iter().map(CMessage::of).collect();

        if n == 1 {
            let hot = hot_query();
            let m = hot.message();
            g.bench_function(BenchmarkId::new("check-hot-rust", &size), |b| {
                b.iter(|| rust.check(black_box(NOW), black_box(&m)).accepted())
            });
            // What a threaded Rust server pays: the same engine behind a `RwLock`, read-locked
            // per check (the C handle's design).
            let locked = RwLock::new(rust_engine(&text));
            g.bench_function(BenchmarkId::new("check-hot-rust-rwlock", &size), |b| {
                b.iter(|| {
                    locked
                        .read()
                        .expect("lock")
                        .check(black_box(NOW), black_box(&m))
                        .accepted()
                })
            });
            let cm = CMessage::of(&hot);
            let m = cm.c();
            g.bench_function(BenchmarkId::new("check-hot-c", &size), |b| {
                b.iter(|| h.check(black_box(NOW), black_box(&m)))
            });
            let m = cm.c_binary();
            g.bench_function(BenchmarkId::new("check-hot-c-binary", &size), |b| {
                b.iter(|| h.check(black_box(NOW), black_box(&m)))
            });
        }
        g.bench_function(BenchmarkId::new("check-stream-rust", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            b.iter(|| {
                rust.check(black_box(NOW), &qs[cur.independent()].message())
                    .accepted()
            })
        });
        g.bench_function(BenchmarkId::new("check-stream-c", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            b.iter(|| h.check(black_box(NOW), &cm[cur.independent()].c()))
        });
        g.bench_function(BenchmarkId::new("check-stream-c-binary", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            b.iter(|| h.check(black_box(NOW), &cm[cur.independent()].c_binary()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
