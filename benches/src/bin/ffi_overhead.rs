//! The C call's overhead over the Rust call, measured so that a busy machine does not blur
//! it: the four `check-hot` calls of `benches/ffi.rs` (Rust, Rust behind a `RwLock`, C with a
//! binary address, C with a text address), and C with a binary address and the tenant id given
//! by length (`tenant_len`, as the Rust call has it), timed in short interleaved rounds;
//! each call's figure is a low percentile of its rounds (a round that another process
//! interrupted only ever comes out slower), and its overhead over the Rust call the median of
//! the differences within each round.
//!
//! `cargo run --release -p outguard-benches --bin ffi_overhead [ROUNDS]`

use std::hint::black_box;
use std::sync::RwLock;
use std::time::Instant;

use outguard_benches::cabi::{self, CMessage, Handle};
use outguard_benches::fixture::NOW;

/// Calls per round: long enough to time, short enough to fit between interruptions.
const CALLS: u32 = 2_000;

/// A named call to time.
type Call<'a> = (&'static str, Box<dyn FnMut() -> bool + 'a>);

fn round(f: &mut dyn FnMut() -> bool) -> f64 {
    let t = Instant::now();
    let mut n = 0u32;
    for _ in 0..CALLS {
        n += u32::from(f());
    }
    black_box(n);
    t.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(3_000, |s| s.parse().expect("ROUNDS: a number"))
        .max(1);
    let text = cabi::policy(1);
    let (h, rust) = (Handle::new(&text), cabi::rust_engine(&text));
    let locked = RwLock::new(cabi::rust_engine(&text));
    let hot = cabi::hot_query();
    let m = hot.message();
    let cm = CMessage::of(&hot);
    let (c_text, c_binary, c_binary_len) = (cm.c(), cm.c_binary(), cm.c_binary_len());
    let mut calls: Vec<Call<'_>> = vec![
        (
            "check-hot-rust",
            Box::new(|| rust.check(black_box(NOW), black_box(&m)).accepted()),
        ),
        (
            "check-hot-rust-rwlock",
            Box::new(|| {
                locked
                    .read()
                    .expect("lock")
                    .check(black_box(NOW), black_box(&m))
                    .accepted()
            }),
        ),
        (
            "check-hot-c-binary",
            Box::new(|| h.check(black_box(NOW), black_box(&c_binary))),
        ),
        (
            "check-hot-c",
            Box::new(|| h.check(black_box(NOW), black_box(&c_text))),
        ),
        (
            "check-hot-c-binary-len",
            Box::new(|| h.check(black_box(NOW), black_box(&c_binary_len))),
        ),
    ];
    let mut times = vec![Vec::with_capacity(rounds); calls.len()];
    for _ in 0..rounds {
        for ((_, f), t) in calls.iter_mut().zip(&mut times) {
            t.push(round(f.as_mut()));
        }
    }
    // Each call's overhead over the Rust call of the same round: whatever slowed a round
    // (another process on the core or its sibling) slowed both about alike.
    let overheads: Vec<f64> = times
        .iter()
        .map(|t| {
            let mut d: Vec<f64> = t.iter().zip(&times[0]).map(|(c, r)| c - r).collect();
            percentile(&mut d, 0.5)
        })
        .collect();
    println!("{rounds} rounds of {CALLS} calls; ns per call: min, 10th percentile; over Rust: median of the rounds");
    for (((name, _), t), over) in calls.iter().zip(&mut times).zip(&overheads) {
        let (min, p10) = (percentile(t, 0.0), percentile(t, 0.1));
        println!("{name:24} {min:7.2} {p10:7.2} {over:+7.2}");
    }
}
