//! C ABI overhead: `og_engine_check` (crate `outguard-ffi`, called through its `extern "C"`
//! functions from Rust, as a C caller would: NUL-terminated tenant id, client IP as text, a
//! decision written through a pointer) beside `Engine::check` on an engine built from the
//! same policy text, in the same run.
//!
//! `hot`: one message repeated (1 tenant). `stream`: random tenants of 1e4, random clean IPs.

mod common;

use std::ffi::{c_char, CString};
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::ptr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use outguard::policy::Policy;
use outguard_benches::fixture::{self, Cursor, NOW, QUERIES};
use outguard_ffi::{og_decision, og_engine, og_engine_check, og_engine_free, og_message, og_result};

/// Policy text: `tenants` tenants with the fixture's two domains each, inline.
fn policy(tenants: u32) -> String {
    let mut s = String::new();
    for i in 0..tenants {
        s += &format!(
            "[[tenants]]\nid = \"{}\"\ndomains = [\"{}\", {{ name = \"{}\", subdomains = true }}]\n",
            fixture::tenant_name(i),
            fixture::domain_name(i, 0),
            fixture::domain_name(i, 1),
        );
    }
    s
}

/// A message as a C caller holds it.
struct CMessage {
    mail_from: String,
    tenant: CString,
    ip: CString,
}

impl CMessage {
    fn of(q: &fixture::Query) -> CMessage {
        CMessage {
            mail_from: q.mail_from.clone(),
            tenant: CString::new(q.tenant.as_str()).expect("no NUL"),
            ip: CString::new(q.ip.to_string()).expect("no NUL"),
        }
    }
    fn c(&self) -> og_message {
        og_message {
            mail_from: self.mail_from.as_ptr().cast::<c_char>(),
            mail_from_len: self.mail_from.len(),
            tenant: self.tenant.as_ptr(),
            auth_user: ptr::null(),
            cert_domain: ptr::null(),
            client_ip: self.ip.as_ptr(),
            flags: 0,
            recipients: 1,
        }
    }
}

fn c_check(h: *const og_engine, m: &og_message) -> bool {
    let mut d = MaybeUninit::<og_decision>::uninit();
    let r = og_engine_check(h, black_box(NOW), m, d.as_mut_ptr());
    // Written on success only.
    r == og_result::Ok
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ffi");
    for n in [1u32, 10_000] {
        let size = fixture::label(n as u64);
        let text = policy(n);
        let rust = Policy::from_toml(&text, "bench.toml", None)
            .and_then(|p| p.build())
            .expect("policy");
        let mut h: *mut og_engine = ptr::null_mut();
        let r = outguard_ffi::og_engine_new_from_toml(
            text.as_ptr().cast::<c_char>(),
            text.len(),
            ptr::null(),
            ptr::null(),
            &mut h,
            ptr::null_mut(),
            0,
        );
        assert!(r == og_result::Ok && !h.is_null(), "og_engine_new_from_toml");
        let qs = fixture::queries(n, QUERIES, 2);
        let cm: Vec<CMessage> = qs.iter().map(CMessage::of).collect();
        assert!(c_check(h, &cm[0].c()));
        assert!(rust.check(NOW, &qs[0].message()).accepted());

        if n == 1 {
            let m = qs[0].message();
            g.bench_function(BenchmarkId::new("check-hot-rust", &size), |b| {
                b.iter(|| rust.check(black_box(NOW), black_box(&m)).accepted())
            });
            let m = cm[0].c();
            g.bench_function(BenchmarkId::new("check-hot-c", &size), |b| {
                b.iter(|| c_check(black_box(h), black_box(&m)))
            });
        }
        g.bench_function(BenchmarkId::new("check-stream-rust", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            b.iter(|| rust.check(black_box(NOW), &qs[cur.independent()].message()).accepted())
        });
        g.bench_function(BenchmarkId::new("check-stream-c", &size), |b| {
            let mut cur = Cursor::new(QUERIES);
            b.iter(|| c_check(black_box(h), &cm[cur.independent()].c()))
        });
        og_engine_free(h);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
