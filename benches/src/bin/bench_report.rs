//! Writes `benches/RESULTS.md` and prints it: criterion's medians from this run beside their
//! baselines, memory (computed from the layout, and measured for the baselines), build
//! times, table occupancy, callgrind instruction counts, the targets and the hand-written
//! analysis (`benches/ANALYSIS.md`).
//!
//! Environment: `OUTGUARD_BENCH_SINCE` (Unix seconds: ignore older criterion results),
//! `OUTGUARD_BENCH_CALLGRIND` (a `callgrind_annotate --inclusive=yes` listing),
//! `OUTGUARD_BENCH_PYTHON_RESULTS` (lines `name ns` from the Python timing of `scripts/bench`),
//! `OUTGUARD_BENCH_QUICK` (say the run was the quick one), `OUTGUARD_BENCH_OUT` (where to
//! write; default `benches/RESULTS.md`).

// The counting allocator below is the only unsafe code: a `GlobalAlloc` impl that forwards
// to the system allocator and keeps a byte count, to measure the baselines' memory.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use outguard::{Capacity, DomainEntry, Event, RangeEntry, Storage, TenantRecord};
use outguard_benches::baseline::{governor_limiter, network_table, RingMap, StdGuard, SuffixSet};
use outguard_benches::fixture;
use outguard_benches::report::{
    bytes, callgrind_counts, date, ratio, time, ProbeStats, Table, Timings, CALLGRIND_CALLS,
};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the same arguments; the counter is a side
// effect that never touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes `build`'s result holds (requested sizes; allocator overhead not counted).
fn heap<T>(build: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    let t = build();
    (t, LIVE.load(Ordering::Relaxed).saturating_sub(before))
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t0 = Instant::now();
    let t = f();
    (t, t0.elapsed())
}

const M: u32 = 1_000_000;

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|n| n.trim() == k))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let mut caches = Vec::new();
    for i in 0..8 {
        let d = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let r = |f: &str| std::fs::read_to_string(format!("{d}/{f}")).map(|s| s.trim().to_string());
        if let (Ok(level), Ok(kind), Ok(size)) = (r("level"), r("type"), r("size")) {
            if kind != "Instruction" {
                caches.push(format!("L{level} {size}"));
            }
        }
    }
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let hyper = if cpuinfo.contains(" hypervisor") {
        ", virtual machine"
    } else {
        ""
    };
    format!(
        "- nproc: {nproc}{hyper}\n- CPU: {} (family {}, model {}), caches per core/shared: {}\n\
         - {rustc}; transparent huge pages: `{}`\n- load average when the report was written: {}\n",
        field("model name"),
        field("cpu family"),
        field("model"),
        caches.join(", "),
        thp.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

struct Memory {
    md: String,
    per_tenant: usize,
    per_counter_2slot: usize,
    per_domain: f64,
}

/// `names_used`: name-arena bytes the 1e6 engine really uses (the fixture reserves more).
fn memory(names_used: usize) -> Memory {
    use std::mem::size_of;
    let cap = fixture::capacity(M, M);
    let l = cap.layout();
    let slots = |c: &Capacity| c.counter_stride() * 4;
    let two = Capacity {
        threshold_slots: 2,
        unregistered_slots: 2,
        ..cap
    };
    let index = 4.0 * l.tenant_index as f64 / cap.tenants as f64;
    let audit = cap.audit_depth as usize * size_of::<Event>();
    let per_tenant = size_of::<TenantRecord>() + slots(&cap) + audit;
    let per_domain = size_of::<DomainEntry>() as f64 * l.domains as f64 / cap.domains as f64
        + outguard::name_cost(0) as f64;
    let per_prefix = size_of::<RangeEntry>() as f64 * l.ranges as f64 / cap.ranges as f64;
    let names = names_used as f64;
    let total = (l.bytes() - l.names) as f64 + names;

    let mut t = Table::new(&["outguard (computed from the layout)", "bytes", "note"]);
    t.row(vec![
        "tenant record".into(),
        format!("{}", size_of::<TenantRecord>()),
        "id offset, flags, lapse times, 2 × 40 B rule state (window head, block, grace)".into(),
    ]);
    t.row(vec![
        "tenant index slot".into(),
        format!("{index:.1}"),
        "u32 per slot, 1.5 slots per tenant".into(),
    ]);
    t.row(vec![
        "window counters, default 24 + 24 slots".into(),
        format!("{}", slots(&cap)),
        "(24 × 2 + 24) × u32: total and suspicious for 5.7.705, unregistered for 5.7.750".into(),
    ]);
    t.row(vec![
        "window counters, 2 + 2 slots".into(),
        format!("{}", slots(&two)),
        "(2 × 2 + 2) × u32; + 8 B head per rule in the record".into(),
    ]);
    t.row(vec![
        format!("audit trail, depth {}", cap.audit_depth),
        format!("{audit}"),
        format!("{} B per event", size_of::<Event>()),
    ]);
    t.row(vec![
        "**per tenant** (default), besides its id".into(),
        format!("**{:.0}**", per_tenant as f64 + index),
        "record + index + counters + audit".into(),
    ]);
    t.row(vec![
        "**per accepted domain**, besides its name".into(),
        format!("**{per_domain:.0}**"),
        format!(
            "{} B entry × 1.5 slots + {} B arena header (owner, for in-place compaction)",
            size_of::<DomainEntry>(),
            outguard::name_cost(0)
        ),
    ]);
    t.row(vec![
        "**per low-reputation prefix**".into(),
        format!("**{per_prefix:.0}**"),
        format!("{} B entry × 1.5 slots", size_of::<RangeEntry>()),
    ]);
    t.row(vec![
        "**total, 1e6 tenants / 2e6 domains / 1e6 prefixes**".into(),
        format!("**{}**", bytes(total)),
        format!(
            "{} of it audit trails, {} counters, {} names",
            bytes(l.audit as f64 * size_of::<Event>() as f64),
            bytes(l.counters as f64 * 4.0),
            bytes(names)
        ),
    ]);
    let mut md = t.render();

    // Baselines, measured with a counting allocator (requested bytes).
    let mut b = Table::new(&["baseline (measured heap, 1e6 entries)", "bytes per entry"]);
    let per = |n: usize| format!("{:.0}", n as f64 / M as f64);
    let (_, n) = heap(|| RingMap::new(M as u64));
    b.row(vec![
        "`HashMap<u64, ring>` (foldhash, 24 slots)".into(),
        per(n),
    ]);
    let (_, n) = heap(|| governor_limiter(0..M as u64));
    b.row(vec!["governor keyed, u64 key".into(), per(n)]);
    let (_, n) = heap(|| governor_limiter((0..M).map(|k| format!("key-{k}"))));
    b.row(vec!["governor keyed, String key (`key-N`)".into(), per(n)]);
    let name_bytes: usize = (0..M).map(|i| fixture::many_domain_name(i).len()).sum();
    let (_, n) = heap(|| SuffixSet::new((0..M).map(fixture::many_domain_name)));
    b.row(vec![
        "`HashSet<String>` domains, besides the names".into(),
        per(n - name_bytes),
    ]);
    let (_, n) = heap(|| network_table(M));
    b.row(vec!["`ip_network_table`, per prefix".into(), per(n)]);
    let (_, n) = heap(|| StdGuard::new(M, M));
    b.row(vec![
        "std composite, 1e6 tenants / 2e6 domains / 1e6 prefixes (total)".into(),
        bytes(n as f64),
    ]);
    md += "\n";
    md += &b.render();
    Memory {
        md,
        per_tenant: (per_tenant as f64 + index).round() as usize,
        per_counter_2slot: 2 * 2 * 4 + 8,
        per_domain,
    }
}

struct Builds {
    md: String,
    policy_load: Option<Duration>,
    names_used: usize,
}

fn builds() -> Builds {
    let mut t = Table::new(&["build", "time"]);
    let (e, d) = timed(|| fixture::engine(M, M));
    t.row(vec![
        "`Engine` with 1e6 tenants, 2e6 domains, 1e6 prefixes (API calls)".into(),
        format!("{:.2} s", d.as_secs_f64()),
    ]);
    let names_used = e.usage().name_bytes as usize;
    let p = e.storage().parts();
    let mut occ = Table::new(&[
        "table (1e6 configuration)",
        "slots",
        "load",
        "slots read by a lookup that misses (mean)",
        "longest run",
    ]);
    let mut stat = |name: &str, v: Vec<bool>| {
        if let Some(s) = ProbeStats::of(&v) {
            occ.row(vec![
                name.into(),
                s.slots.to_string(),
                format!("{:.2}", s.load),
                format!("{:.1}", s.miss_probes),
                s.longest_run.to_string(),
            ]);
        }
    };
    stat(
        "tenant index (u32)",
        p.tenant_index.iter().map(|&v| v != 0).collect(),
    );
    stat(
        "domains (16 B)",
        p.domains.iter().map(|d| d.flags != 0).collect(),
    );
    stat(
        "ranges (32 B)",
        p.ranges.iter().map(|r| r.flags != 0).collect(),
    );
    drop(e);
    let (_, d) = timed(|| fixture::domains_engine(M));
    t.row(vec![
        "`Engine` with 1 tenant owning 1e6 domains (API calls)".into(),
        format!("{:.2} s", d.as_secs_f64()),
    ]);

    // A policy with 1e6 accepted domains: 5e5 tenants of a bulk tenants file, 2 domains each.
    let dir = std::env::temp_dir().join(format!("outguard-bench-{}", std::process::id()));
    let mut policy_load = None;
    if std::fs::create_dir_all(&dir).is_ok() {
        let mut bulk = String::new();
        for i in 0..M / 2 {
            let id = fixture::tenant_name(i);
            let _ = writeln!(bulk, "tenant {id}");
            let _ = writeln!(bulk, "domain {id} {}", fixture::domain_name(i, 0));
            let _ = writeln!(
                bulk,
                "domain {id} {} subdomains",
                fixture::domain_name(i, 1)
            );
        }
        let policy = dir.join("policy.toml");
        let written = std::fs::write(dir.join("tenants.txt"), bulk)
            .and_then(|_| std::fs::write(&policy, "tenants_file = \"tenants.txt\"\n"));
        if written.is_ok() {
            let (loaded, d_load) = timed(|| outguard::policy::Policy::load(&policy));
            match loaded {
                Ok(pol) => {
                    let (built, d_build) = timed(|| pol.build());
                    t.row(vec![
                        "`Policy::load`: bulk file, 5e5 tenants / 1e6 domains (parse + a check build)"
                            .into(),
                        format!("{:.2} s", d_load.as_secs_f64()),
                    ]);
                    t.row(vec![
                        "`Policy::build` of that policy".into(),
                        format!("{:.2} s", d_build.as_secs_f64()),
                    ]);
                    if built.is_ok() {
                        policy_load = Some(d_load + d_build);
                    }
                }
                Err(e) => t.row(vec![
                    "`Policy::load` of 1e6 domains".into(),
                    format!("failed: {e}"),
                ]),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Builds {
        md: format!("{}\n{}", t.render(), occ.render()),
        policy_load,
        names_used,
    }
}

/// `key value` lines of a results file named by an environment variable (empty when unset).
fn key_values(var: &str) -> HashMap<String, f64> {
    std::env::var_os(var)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| {
            s.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../target"));
    let since = std::env::var("OUTGUARD_BENCH_SINCE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    let quick = std::env::var_os("OUTGUARD_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let t = Timings::load(&target.join("criterion"), since);
    let g = |id: &str| t.get(id);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let mut md = String::new();
    let _ = writeln!(md, "# outguard benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench` on {} ({} run: {} benchmarks; criterion {} per \
         benchmark). Every figure is a benchmark's **time per call in its fastest sample** \
         (interference from other work on the machine only adds time), measured in this \
         run; ratios are to a baseline measured in the same run, and they are the figures \
         that count (the absolute times of a small shared machine drift from run to run). \
         `stream`: calls on random keys back to back, so the CPU may overlap one call's cache \
         misses with the next's (§10 on why it hardly does); `isolated`: each call waits \
         for the previous result, as a mail server's single call does; `hot`: one key repeated.\n",
        date(now),
        if quick { "quick" } else { "full" },
        t.len(),
        if quick {
            "10 samples in 0.5 s"
        } else {
            "25 samples in 2 s"
        },
    );
    if t.is_empty() {
        let _ = writeln!(
            md,
            "**No benchmark results from this run were found** (run `scripts/bench`).\n"
        );
    }
    let _ = writeln!(md, "## Machine\n\n{}", machine());

    // 1. Window counter alone.
    let _ = writeln!(
        md,
        "## 1. Window counter alone\n\nOne count plus the window sum per call. outguard: \
         `outguard::window` over a flat array addressed by tenant number (no key lookup: the \
         engine resolves the tenant first); the others look the key up. governor is handed \
         the time (a fake clock), as outguard is; with its default clock (std `Instant`) it \
         takes {} at 1 key.\n",
        time(g("window/governor-u64-clock/1"))
    );
    let mut w = Table::new(&[
        "keys",
        "outguard 24 slots",
        "outguard 2 slots",
        "HashMap + ring, 24 slots",
        "governor u64",
        "governor String",
        "outguard 24 / ring",
        "outguard 24 / governor u64",
    ]);
    for (v, label) in [
        ("1", "1"),
        ("1e4", "1e4"),
        ("1e6", "1e6 stream"),
        ("1e6-isolated", "1e6 isolated"),
    ] {
        let c = |f: &str| g(&format!("window/{f}/{v}"));
        w.row(vec![
            label.into(),
            time(c("outguard-24")),
            time(c("outguard-2")),
            time(c("ring-24")),
            time(c("governor-u64")),
            time(c("governor-string")),
            ratio(c("outguard-24"), c("ring-24")),
            ratio(c("outguard-24"), c("governor-u64")),
        ]);
    }
    md += &w.render();

    // 2. check and record.
    let _ = writeln!(
        md,
        "\n## 2. Full `check` and `record`\n\n1 / 1e4 / 1e6 tenants with 2 accepted domains \
         each, 1e6 low-reputation prefixes (half IPv4 /24, half IPv6 /48); messages from a \
         registered domain of a random tenant (explicit tenant) from a random clean client \
         IP. Baseline: the std composite (`HashMap<String, u32>` tenants, `HashMap<String, _>` \
         domains walked by suffix, `ip_network_table`, a `Vec` of 24-slot rings; \
         `benches/src/baseline.rs`), which does less than outguard (one attribution path, \
         no monitor mode, overrides, exceptions or audit).\n"
    );
    let mut e = Table::new(&[
        "tenants",
        "mode",
        "outguard check",
        "std check",
        "outguard / std",
        "outguard record",
        "std record",
        "outguard / std",
        "outguard record / check",
    ]);
    for n in ["1", "1e4", "1e6"] {
        for mode in ["hot", "stream", "isolated", "batch"] {
            let c = |f: &str| g(&format!("engine/{f}-{mode}-outguard/{n}"));
            let s = |f: &str| g(&format!("engine/{f}-{mode}-std/{n}"));
            e.row(vec![
                n.into(),
                mode.into(),
                time(c("check")),
                time(s("check")),
                ratio(c("check"), s("check")),
                time(c("record")),
                time(s("record")),
                ratio(c("record"), s("record")),
                ratio(c("record"), c("check")),
            ]);
        }
    }
    md += &e.render();

    // 3. Domains.
    let _ = writeln!(
        md,
        "\n## 3. Domain matching\n\noutguard has no public domain lookup: measured through \
         `check` of one tenant that owns every domain (its state stays cached; no IP), minus \
         the same `check` with the null sender (no domain to match) — the floor, {} at 1e3 \
         and {} at 1e6. The difference is domain matching, sender parsing and normalisation \
         included. Baseline: `HashSet<String>` (foldhash) walked by label suffix on the \
         already lower-case sender. `hit`: a random accepted domain; `miss`: \
         `x<random>.example.org` (exact name and both parents looked up).\n",
        time(g("domains/outguard-null/1e3")),
        time(g("domains/outguard-null/1e6")),
    );
    let mut d = Table::new(&[
        "domains",
        "query",
        "mode",
        "outguard check",
        "outguard domain part",
        "HashSet suffix walk",
        "outguard part / HashSet",
    ]);
    for n in ["1e3", "1e6"] {
        let floor = g(&format!("domains/outguard-null/{n}"));
        for q in ["hit", "miss"] {
            for mode in ["stream", "isolated"] {
                let og = g(&format!("domains/outguard-{q}-{mode}/{n}"));
                let part = og.zip(floor).map(|(a, b)| (a - b).max(0.0));
                let hs = g(&format!("domains/hashset-{q}-{mode}/{n}"));
                d.row(vec![
                    n.into(),
                    q.into(),
                    mode.into(),
                    time(og),
                    time(part),
                    time(hs),
                    ratio(part, hs),
                ]);
            }
        }
    }
    md += &d.render();

    // 4. CIDR.
    let _ = writeln!(
        md,
        "\n## 4. CIDR matching\n\n`Engine::is_low_reputation` beside `ip_network_table` \
         (longest match), prefixes half IPv4 /24 and half IPv6 /48; half the addresses inside \
         a listed prefix, half clean, both families.\n"
    );
    let mut c = Table::new(&[
        "prefixes",
        "mode",
        "outguard",
        "ip_network_table",
        "outguard / ip_network_table",
    ]);
    for n in ["1e3", "1e6"] {
        for mode in ["stream", "isolated"] {
            let og = g(&format!("cidr/outguard-{mode}/{n}"));
            let b = g(&format!("cidr/ip_network_table-{mode}/{n}"));
            c.row(vec![n.into(), mode.into(), time(og), time(b), ratio(og, b)]);
        }
    }
    md += &c.render();

    // 5. Memory and builds.
    let b = builds();
    let mem = memory(b.names_used);
    let _ = writeln!(md, "\n## 5. Memory\n\n{}", mem.md);
    let _ = writeln!(
        md,
        "## 6. Build and load times, table occupancy\n\nOpen-addressing tables get 1.5 slots \
         per entry (load 0.8) and probe linearly; a lookup that misses reads until an empty \
         slot.\n\n{}",
        b.md
    );

    // 7. Callgrind.
    let _ = writeln!(md, "## 7. Instructions per call (callgrind)\n");
    let cg = std::env::var_os("OUTGUARD_BENCH_CALLGRIND")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| callgrind_counts(&s, CALLGRIND_CALLS as f64))
        .filter(|m| !m.is_empty());
    match cg {
        None => {
            let _ = writeln!(
                md,
                "Not measured in this run (valgrind is not installed, or its run failed).\n"
            );
        }
        Some(cg) => {
            let _ = writeln!(
                md,
                "`valgrind --tool=callgrind` on `benches/src/bin/callgrind_check.rs` (1e4 \
                 tenants, 1e5 prefixes, {CALLGRIND_CALLS} calls per row): inclusive \
                 instructions per call, loop overhead included. Exact and independent of the \
                 machine's load, but blind to cache misses and divisions' latency.\n"
            );
            let mut t = Table::new(&["path", "outguard", "baseline", "outguard / baseline"]);
            let n = |k: &str| cg.get(k).copied();
            let cnt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
            for (label, og, base) in [
                ("`check`, hot", "check_hot", Some("std_check_hot")),
                (
                    "`check`, random tenants",
                    "check_random",
                    Some("std_check_random"),
                ),
                (
                    "`check`, hot, null sender (no domain)",
                    "check_null_sender",
                    None,
                ),
                ("`check`, hot, no client IP (no CIDR)", "check_no_ip", None),
                ("`record`, hot", "record_hot", Some("std_record_hot")),
                ("`record`, random tenants", "record_random", None),
                (
                    "`is_low_reputation` vs `ip_network_table`",
                    "is_low_reputation",
                    Some("network_table"),
                ),
                (
                    "`HashSet<String>` suffix walk (hit)",
                    "",
                    Some("hashset_domain"),
                ),
                (
                    "`og_engine_check` vs `Engine::check` (1-tenant policy, hot)",
                    "c_check_hot",
                    Some("rust_check_hot_policy"),
                ),
            ] {
                let o = (!og.is_empty()).then(|| n(og)).flatten();
                let b = base.and_then(n);
                t.row(vec![label.into(), cnt(o), cnt(b), ratio(o, b)]);
            }
            md += &t.render();
            md += "\n";
        }
    }

    // 8. C ABI and Python.
    let python = key_values("OUTGUARD_BENCH_PYTHON_RESULTS");
    let extra = key_values("OUTGUARD_BENCH_EXTRA_RESULTS");
    let rust_hot = g("ffi/check-hot-rust/1");
    let rust_locked = g("ffi/check-hot-rust-rwlock/1");
    let c_hot = g("ffi/check-hot-c/1");
    let c_bin = g("ffi/check-hot-c-binary/1");
    let py = |k: &str| python.get(k).copied();
    let py_hot = py("check-hot-python");
    // Python's own same-run baselines (the core timed inside Rust in the same process); the
    // criterion figure of the same message when the package predates them.
    let py_hot_core = py("check-hot-python-core").or(rust_hot);
    let py_batch = py("check-batch-python");
    let py_batch_core = py("check-batch-python-core").or(rust_hot);
    let py_arrow = py("check-batch-python-arrow");
    let py_arrow_core = py("check-batch-python-arrow-core");
    let over = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    let _ = writeln!(
        md,
        "## 8. C ABI and Python overhead\n\nThe C ABI (`og_engine_check` of `ffi-c/`, called \
         through its `extern \"C\"` function from Rust, as C would call it: NUL-terminated \
         tenant id, client IP as text or binary (`og_message.client_addr`), decision written \
         through a pointer; `benches/src/cabi.rs`) and the Python package (`.venv`, `pip install ./python`: \
         `timeit`, best of several repeats; `check_batch` with list and pyarrow columns; its \
         baseline is the core timed inside Rust in the same process: `Engine::check`, and \
         `check_batch_at` over the same messages) beside `Engine::check` on an engine built \
         from the same policy text (1 tenant, no low-reputation list), same message \
         (`alice@t0.example.com` from `203.0.113.5`). `stream` (C only): random tenants of 1e4 \
         from random clean IPs, half of them IPv6.\n"
    );
    let mut f = Table::new(&[
        "call",
        "time per call",
        "overhead over the Rust call",
        "target",
    ]);
    let (rs, cs) = (g("ffi/check-stream-rust/1e4"), g("ffi/check-stream-c/1e4"));
    let cbs = g("ffi/check-stream-c-binary/1e4");
    // (call, its time, the time it is compared with, target)
    let rows = [
        ("`Engine::check`, hot", rust_hot, None, "–"),
        (
            "`Engine::check` behind a `RwLock` (read-locked per call), hot",
            rust_locked,
            rust_hot,
            "–",
        ),
        (
            "`og_engine_check`, hot, client IP as text",
            c_hot,
            rust_hot,
            "≤ 5 ns",
        ),
        (
            "`og_engine_check`, hot, client IP binary",
            c_bin,
            rust_hot,
            "≤ 5 ns",
        ),
        ("`Engine::check`, stream, 1e4 tenants", rs, None, "–"),
        (
            "`og_engine_check`, stream, 1e4 tenants, IP as text",
            cs,
            rs,
            "≤ 5 ns",
        ),
        (
            "`og_engine_check`, stream, 1e4 tenants, IP binary",
            cbs,
            rs,
            "≤ 5 ns",
        ),
        (
            "Python `Engine.check`, hot",
            py_hot,
            py_hot_core,
            "≤ 150 ns",
        ),
        (
            "Python `Engine.check_batch`, lists, per message",
            py_batch,
            py_batch_core,
            "≤ 5 ns",
        ),
        (
            "Python `Engine.check_batch`, pyarrow columns, per message",
            py_arrow,
            py_arrow_core,
            "≤ 5 ns",
        ),
    ];
    for (call, t, base, target) in rows {
        f.row(vec![
            call.into(),
            time(t),
            time(over(t, base)),
            target.into(),
        ]);
    }
    md += &f.render();
    md += "\n";
    // The same hot calls (and the C call with the tenant id's length) timed in interleaved rounds (`benches/src/bin/ffi_overhead.rs`):
    // each overhead is the median of its differences to the Rust call within a round, which a
    // busy machine blurs far less than criterion's separate runs.
    let x = |k: &str| extra.get(k).copied();
    let interleaved = [
        (
            "`Engine::check` behind a `RwLock`",
            x("ffi-overhead-rwlock"),
        ),
        (
            "`og_engine_check`, client IP binary",
            x("ffi-overhead-c-binary"),
        ),
        (
            "`og_engine_check`, client IP as text",
            x("ffi-overhead-c-text"),
        ),
        (
            "`og_engine_check`, client IP binary, tenant id by length (`tenant_len`)",
            x("ffi-overhead-c-binary-len"),
        ),
    ];
    if interleaved.iter().any(|(_, v)| v.is_some()) {
        let rounds = x("ffi-overhead-rounds").unwrap_or(0.0);
        let _ = writeln!(
            md,
            "Interleaved (`ffi_overhead`: the hot calls above in {rounds:.0} short rounds each, one after another; overhead = median over the rounds of the difference to `Engine::check` in the same round):\n"
        );
        let mut t = Table::new(&["call", "overhead over the Rust call", "target"]);
        for (call, v) in interleaved {
            let target = if call.starts_with("`og_") {
                "≤ 5 ns"
            } else {
                "–"
            };
            t.row(vec![call.into(), time(v), target.into()]);
        }
        md += &t.render();
        md += "\n";
    }

    // 9. Targets.
    let _ = writeln!(
        md,
        "## 9. Targets (`shared/notes/performance.md`)\n\nThe anchors there were measured on \
         a Zen 5 guest; compare ratios, not nanoseconds.\n"
    );
    let mut tt = Table::new(&["figure", "target", "measured", "verdict"]);
    let verdict = |v: Option<f64>, limit: f64| match v {
        None => "not measured".to_string(),
        Some(v) if v <= limit => "met".to_string(),
        Some(v) => format!("**missed, {:.1}× over**", v / limit),
    };
    let hot = g("engine/check-hot-outguard/1");
    tt.row(vec![
        "`check`, hot, 1 tenant".into(),
        "≤ 50 ns".into(),
        time(hot),
        verdict(hot, 50.0),
    ]);
    for mode in ["stream", "isolated"] {
        let v = g(&format!("engine/check-{mode}-outguard/1e4"));
        tt.row(vec![
            format!("`check`, 1e4 tenants ({mode})"),
            "≤ 80 ns".into(),
            time(v),
            verdict(v, 80.0),
        ]);
    }
    let iso = g("engine/check-isolated-outguard/1e6");
    tt.row(vec![
        "`check`, 1e6 tenants / 2e6 domains / 1e6 prefixes, isolated".into(),
        "≤ 300 ns".into(),
        time(iso),
        verdict(iso, 300.0),
    ]);
    let batch = g("engine/check-batch-outguard/1e6");
    tt.row(vec![
        "batch `check`, 1e6 tenants (`check_batch`, groups of 64)".into(),
        "≤ 100 ns per message".into(),
        time(batch),
        verdict(batch, 100.0),
    ]);
    let mut worst: Option<(f64, String)> = None;
    for n in ["1", "1e4", "1e6"] {
        for mode in ["hot", "stream", "isolated"] {
            let r = g(&format!("engine/record-{mode}-outguard/{n}"))
                .zip(g(&format!("engine/check-{mode}-outguard/{n}")))
                .map(|(r, c)| r / c);
            if let Some(r) = r {
                if worst.as_ref().is_none_or(|(w, _)| r > *w) {
                    worst = Some((r, format!("{n} {mode}")));
                }
            }
        }
    }
    tt.row(vec![
        "`record` / `check` (worst configuration)".into(),
        "≤ 1.2×".into(),
        worst
            .as_ref()
            .map_or("–".into(), |(r, at)| format!("{r:.2}× ({at})")),
        verdict(worst.as_ref().map(|w| w.0), 1.2),
    ]);
    tt.row(vec![
        "state per tenant, default 24-slot windows".into(),
        "stated and justified".into(),
        format!("{} B + id (§5)", mem.per_tenant),
        "stated".into(),
    ]);
    tt.row(vec![
        "counter slot-set, 2-slot window (5.7.705: 2 counters)".into(),
        "≤ 32 B".into(),
        format!("{} B (16 B cells + 8 B head)", mem.per_counter_2slot),
        verdict(Some(mem.per_counter_2slot as f64), 32.0),
    ]);
    tt.row(vec![
        "accepted domain, beyond its name".into(),
        "≤ 24 B".into(),
        format!("{:.0} B", mem.per_domain),
        verdict(Some(mem.per_domain), 24.0),
    ]);
    tt.row(vec![
        "loading a policy with 1e6 domains".into(),
        "≤ 2 s".into(),
        b.policy_load
            .map_or("–".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        verdict(b.policy_load.map(|d| d.as_secs_f64()), 2.0),
    ]);
    // The interleaved figure when there is one (§8), else criterion's.
    let c_over = x("ffi-overhead-c-binary").or(over(c_bin, rust_hot));
    tt.row(vec![
        "C ABI overhead over the Rust call (hot, client IP binary; interleaved rounds, §8)".into(),
        "≤ 5 ns, 0 allocations".into(),
        time(c_over),
        verdict(c_over, 5.0),
    ]);
    let py_over = over(py_hot, py_hot_core);
    tt.row(vec![
        "Python scalar `check` overhead".into(),
        "≤ 150 ns".into(),
        time(py_over),
        verdict(py_over, 150.0),
    ]);
    let batch_over = over(py_arrow, py_arrow_core).or(over(py_batch, py_batch_core));
    tt.row(vec![
        "Python batch overhead per message (pyarrow columns)".into(),
        "≤ 5 ns".into(),
        time(batch_over),
        verdict(batch_over, 5.0),
    ]);
    let at_least = |v: Option<f64>, limit: f64| match v {
        None => "not measured".to_string(),
        Some(v) if v >= limit => "met".to_string(),
        Some(v) => format!("**missed, {:.0}% short**", (1.0 - v / limit) * 100.0),
    };
    let times = |v: Option<f64>| v.map_or("not measured".into(), |v| format!("{v:.2}×"));
    // The null milter answers without deciding: no milter negotiating the same steps can do
    // better on this machine, so its rows are the floor, not a target.
    for (label, key, floor) in [
        ("libmilter", "postfix-libmilter", false),
        ("event loop, `-E`", "postfix-events", false),
        (
            "null milter: answers, decides nothing",
            "postfix-null",
            true,
        ),
        (
            "event loop, `-E`; `smtp-source -d`: one connection per session",
            "postfix-events-reuse",
            false,
        ),
        (
            "null milter; `smtp-source -d`: one connection per session",
            "postfix-null-reuse",
            true,
        ),
    ] {
        let ratio = x(&format!("{key}-ratio"));
        let cpu = x(&format!("{key}-cpu-us"));
        let median = x(&format!("{key}-median"));
        if floor && ratio.is_none() {
            continue;
        }
        tt.row(vec![
            format!("Postfix + milter ({label}) vs Postfix alone (`smtp-source`)"),
            if floor {
                "floor".into()
            } else {
                "≥ 0.9×".into()
            },
            match (ratio, median, cpu) {
                (Some(r), Some(m), Some(c)) => {
                    format!("{r:.2}× (median round {m:.2}×; milter {c:.0} µs CPU per message)")
                }
                _ => times(ratio),
            },
            if floor {
                "–".into()
            } else {
                at_least(ratio, 0.9)
            },
        ]);
    }
    let open_us = x("shared-open-us");
    tt.row(vec![
        "shared state: open a 1e6-domain image".into(),
        "≤ 1 ms".into(),
        open_us.map_or("not measured".into(), |v| format!("{v:.0} µs")),
        verdict(open_us, 1000.0),
    ]);
    let check_ratio = x("shared-check-ratio");
    tt.row(vec![
        "shared state: `check` mapped vs in memory".into(),
        "≤ 1.2×".into(),
        times(check_ratio),
        verdict(check_ratio, 1.2),
    ]);
    let rec = x("shared-record-ratio");
    tt.row(vec![
        "shared state: `record` from 2 processes vs 1 (median round)".into(),
        "scales (> 1×)".into(),
        times(rec),
        match rec {
            None => "not measured".to_string(),
            Some(v) if v > 1.0 => "met".to_string(),
            Some(_) => "**missed**".to_string(),
        },
    ]);
    md += &tt.render();
    let _ = writeln!(
        md,
        "\nThe Postfix rows come from `ffi-c/bench/postfix_throughput.sh` (2 000 messages × 4 \
         rounds, 10 sessions, unix socket; Postfix alone measured in the same rounds; a new \
         SMTP connection per message unless `-d`; the null milter is \
         `ffi-c/bench/null_milter.c`), the \
         shared-state rows from `core/examples/shared_bench.rs` (1e6 domains; 2 processes \
         recording for tenants drawn from 10 000)."
    );

    if let Ok(a) = std::fs::read_to_string(root.join("ANALYSIS.md")) {
        let _ = writeln!(md, "\n{}", a.trim_end());
    }
    if t.stale > 0 {
        let _ = writeln!(
            md,
            "\n<sub>{} older criterion results in `target/criterion` were ignored.</sub>",
            t.stale
        );
    }

    let out = std::env::var_os("OUTGUARD_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("RESULTS.md"));
    if let Err(e) = std::fs::write(&out, &md) {
        eprintln!("bench_report: cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
    print!("{md}");
}
