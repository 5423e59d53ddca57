//! Policy load, engine build, snapshot and restore at provider scale: 100 000 tenants and
//! 1 000 000 accepted domains in a bulk tenants file (issue: "Policy files, hot reload and
//! state snapshots"). Run with
//! `cargo run --release -p outguard --features std --example policy_scale [TENANTS DOMAINS_PER_TENANT]`.
//! Prints wall-clock figures and the memory of the built engine.

use std::fmt::Write as _;
use std::time::Instant;

use outguard::policy::{snapshot, Policy};
use outguard::{Message, Verdict};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let tenants = args.first().copied().unwrap_or(100_000);
    let per = args.get(1).copied().unwrap_or(10);
    let dir = std::env::temp_dir().join(format!("outguard-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let mut bulk = String::with_capacity((tenants * per * 32) as usize);
    for t in 0..tenants {
        let _ = writeln!(
            bulk,
            "tenant t{t}{}",
            if t % 10 == 0 { " unlicensed" } else { "" }
        );
        for d in 0..per {
            let _ = writeln!(
                bulk,
                "domain t{t} d{d}-t{t}.example{}",
                if d == 0 { " subdomains" } else { "" }
            );
        }
    }
    std::fs::write(dir.join("tenants.txt"), &bulk).expect("write bulk");
    std::fs::write(
        dir.join("policy.toml"),
        "tenants_file = \"tenants.txt\"\n[rules.unregistered_domain]\nlimit = 5\n",
    )
    .expect("write policy");

    let t0 = Instant::now();
    let policy = Policy::load(&dir.join("policy.toml")).unwrap_or_else(|e| panic!("{e}"));
    let parsed = t0.elapsed();
    let t1 = Instant::now();
    let mut engine = policy.build().unwrap_or_else(|e| panic!("{e}"));
    let built = t1.elapsed();

    // Put some state in: every tenant sends a few messages, some trip 5.7.750.
    let now = 1_790_000_000;
    for t in 0..tenants {
        let id = format!("t{t}");
        let from = if t % 3 == 0 {
            "x@elsewhere.example".to_string()
        } else {
            format!("a@d0-t{t}.example")
        };
        let msg = Message {
            tenant: Some(&id),
            ..Message::new(&from)
        };
        for k in 0..6 {
            let _ = engine.evaluate(now + k, &msg, Verdict::Clean);
        }
    }

    let t2 = Instant::now();
    let bytes = snapshot(&engine);
    let snap = t2.elapsed();
    let mut restored = policy.build().unwrap_or_else(|e| panic!("{e}"));
    let t3 = Instant::now();
    let report = restored
        .restore_snapshot(&bytes)
        .unwrap_or_else(|e| panic!("{e}"));
    let restore = t3.elapsed();
    let t4 = Instant::now();
    let rep = policy.reload(&mut engine).unwrap_or_else(|e| panic!("{e}"));
    let reload = t4.elapsed();

    let cap = engine.capacity();
    let layout = cap.layout();
    println!("tenants {tenants}, domains {}", tenants * per);
    println!("bulk file {:.1} MB", bulk.len() as f64 / 1e6);
    println!("parse    {:>8.3} s", parsed.as_secs_f64());
    println!("build    {:>8.3} s", built.as_secs_f64());
    println!(
        "load     {:>8.3} s (parse + build; target <= 2 s)",
        (parsed + built).as_secs_f64()
    );
    println!(
        "snapshot {:>8.3} s ({} bytes; target <= 0.5 s)",
        snap.as_secs_f64(),
        bytes.len()
    );
    println!(
        "restore  {:>8.3} s ({} tenants restored; target <= 0.5 s)",
        restore.as_secs_f64(),
        report.restored
    );
    println!(
        "reload   {:>8.3} s ({} removed)",
        reload.as_secs_f64(),
        rep.removed.len()
    );
    println!(
        "engine memory {:.1} MB ({} B per tenant with counters and audit, {} B per domain slot)",
        layout.bytes() as f64 / 1e6,
        layout.bytes() / tenants.max(1) as usize,
        std::mem::size_of::<outguard::DomainEntry>()
    );
    let _ = restored;
    let _ = std::fs::remove_dir_all(&dir);
}
