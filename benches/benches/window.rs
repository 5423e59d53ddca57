//! The window counter alone: one count plus the window sum per call, for random keys.
//!
//! outguard's counter (`outguard::window` over a flat array, addressed by tenant number)
//! against a std `HashMap` + ring (foldhash) and governor's keyed limiter (u64 and String
//! keys; DashMap). governor runs on a `FakeRelativeClock` so that, like outguard, it is handed
//! the time instead of reading a clock; one row with its default clock shows what reading
//! the clock costs.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use governor::RateLimiter;
use outguard_benches::baseline::{governor_limiter, governor_quota, FlatWindows, RingMap, SLOTS};
use outguard_benches::fixture::{self, Cursor, NOW, QUERIES};

/// A limit no key reaches: every call counts.
const LIMIT: u32 = u32::MAX;

fn bench(c: &mut Criterion) {
    for n in [1u64, 10_000, 1_000_000] {
        let size = fixture::label(n);
        let iso = format!("{size}-isolated");
        let keys = fixture::keys(n, QUERIES, 1);
        let mut g = c.benchmark_group("window");

        // Each closure: `run(isolated)` measures a stream of independent calls, or (at 1e6)
        // calls that each wait for the previous result.
        macro_rules! measure {
            ($name:expr, |$k:ident| $call:expr) => {{
                g.bench_function(BenchmarkId::new($name, &size), |b| {
                    let mut cur = Cursor::new(QUERIES);
                    b.iter(|| {
                        let $k = keys[cur.independent()];
                        $call
                    })
                });
                if n == 1_000_000 {
                    g.bench_function(BenchmarkId::new($name, &iso), |b| {
                        let mut cur = Cursor::new(QUERIES);
                        let mut prev = 0u64;
                        b.iter(|| {
                            let $k = keys[cur.isolated(prev)];
                            let r = $call;
                            prev = r as u64;
                            r
                        })
                    });
                }
            }};
        }

        {
            let mut w = FlatWindows::new(n as usize, SLOTS);
            measure!("outguard-24", |k| w.hit(
                black_box(k) as usize,
                black_box(NOW),
                LIMIT
            ));
        }
        {
            let mut w = FlatWindows::new(n as usize, 2);
            measure!("outguard-2", |k| w.hit(
                black_box(k) as usize,
                black_box(NOW),
                LIMIT
            ));
        }
        {
            let mut m = RingMap::new(n);
            measure!("ring-24", |k| m.hit(black_box(k), black_box(NOW), LIMIT));
        }
        {
            let l = governor_limiter(0..n);
            measure!("governor-u64", |k| l.check_key(black_box(&k)).is_ok());
        }
        {
            let l = governor_limiter((0..n).map(|k| format!("key-{k}")));
            // Key strings in stream order (allocated in that order: read sequentially).
            let strings: Vec<String> = keys.iter().map(|k| format!("key-{k}")).collect();
            let mut cur = Cursor::new(QUERIES);
            g.bench_function(BenchmarkId::new("governor-string", &size), |b| {
                b.iter(|| l.check_key(black_box(&strings[cur.independent()])).is_ok())
            });
        }
        if n == 1 {
            // The default clock (std `Instant`): what a user of governor pays to read the time.
            let l = RateLimiter::dashmap(governor_quota());
            let _ = l.check_key(&0u64);
            g.bench_function(BenchmarkId::new("governor-u64-clock", &size), |b| {
                b.iter(|| l.check_key(black_box(&0u64)).is_ok())
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
