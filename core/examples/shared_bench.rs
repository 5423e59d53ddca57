//! Shared state at provider scale: opening a mapped engine over a 1 000 000-domain policy image,
//! decisions on the mapped engine against the in-memory one, and `record` from one process
//! against two at once. Run with
//! `cargo run --release -p outguard --features shared --example shared_bench [TENANTS DOMAINS_PER_TENANT]`.
//! Prints wall-clock figures (a quick timing, not criterion: the benchmarks live in `benches/`).

#[cfg(not(feature = "shared"))]
fn main() {
    eprintln!("build with --features shared");
}

#[cfg(feature = "shared")]
fn main() {
    bench::run();
}

#[cfg(feature = "shared")]
#[allow(unsafe_code)] // fork and wait4
mod bench {
    use std::hint::black_box;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use outguard::shared::{self, SharedEngine};
    use outguard::{Capacity, Engine, HeapStorage, Message, RuleSet, Verdict};

    const NOW: u64 = 1_790_000_000;

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (((z ^ (z >> 31)) as u128 * n as u128) >> 64) as u64
        }
    }

    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    /// Messages: authenticated users of random tenants, 3 in 4 from a registered domain.
    fn queries(tenants: u32, per: u32, n: usize) -> Vec<(String, String)> {
        let mut rng = Rng(7);
        (0..n)
            .map(|_| {
                let t = rng.below(tenants as u64) as u32;
                let d = rng.below(per as u64) as u32;
                let user = format!("user@d{d}-t{t}.example");
                let from = if rng.below(4) == 0 {
                    format!("x@elsewhere{}.example", rng.below(1000))
                } else {
                    user.clone()
                };
                (user, from)
            })
            .collect()
    }

    fn msg<'a>(q: &'a (String, String)) -> Message<'a> {
        Message {
            auth_user: Some(&q.0),
            ..Message::new(&q.1)
        }
    }

    /// `procs` processes at once, each `calls` records for tenants drawn at random from
    /// `names` (so two processes nearly always write different tenants). Returns the wall time
    /// and the share of it the children spent on a CPU (user + system time over wall time,
    /// summed over the children: 2.0 means two whole CPUs). On a machine shared with other work
    /// that share shows whether the processes could run at all.
    fn fork_records(
        image: &Path,
        state: &Path,
        procs: u32,
        calls: u32,
        names: &[String],
        seed: u64,
    ) -> (Duration, f64) {
        let start = Instant::now();
        let pids: Vec<_> = (0..procs)
            .map(|p| {
                // SAFETY: the child only uses the engine and leaves with `_exit`.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0);
                if pid == 0 {
                    let mut e = SharedEngine::open(image, state).expect("open");
                    let mut rng = Rng(seed * 1000 + p as u64);
                    let mut ok = 0;
                    for _ in 0..calls {
                        let t = &names[rng.below(names.len() as u64) as usize];
                        let m = Message {
                            tenant: Some(t),
                            ..Message::new("x@d0-t0.example")
                        };
                        ok += e.record(NOW, &m, Verdict::Clean).is_ok() as u32;
                    }
                    // SAFETY: ends the child.
                    unsafe { libc::_exit(if ok == calls { 0 } else { 1 }) };
                }
                pid
            })
            .collect();
        let mut cpu = 0.0;
        for pid in pids {
            let mut status = 0;
            // SAFETY: an all-zero `rusage` is a valid value (integers only).
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: waiting for our own child, with valid out-pointers.
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            cpu += secs(usage.ru_utime) + secs(usage.ru_stime);
        }
        let wall = start.elapsed();
        (wall, cpu / wall.as_secs_f64())
    }

    pub fn run() {
        let args: Vec<u32> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        let tenants = args.first().copied().unwrap_or(100_000);
        let per = args.get(1).copied().unwrap_or(10);
        let dir =
            std::env::temp_dir().join(format!("outguard-shared-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (image, state) = (dir.join("policy.img"), dir.join("state"));

        let t0 = Instant::now();
        let cap = Capacity {
            tenants,
            domains: tenants * per,
            connectors: 16,
            ranges: 64,
            name_bytes: tenants * (16 + per * 24),
            overrides: 4,
            ..Capacity::default()
        };
        let mut heap =
            Engine::new(HeapStorage::new(&cap), cap, RuleSet::default()).expect("engine");
        for t in 0..tenants {
            let id = heap.add_tenant(&format!("t{t}"), true).expect("tenant");
            for d in 0..per {
                heap.add_domain(id, &format!("d{d}-t{t}.example"), d == 0, true)
                    .expect("domain");
            }
        }
        println!(
            "built an engine with {tenants} tenants and {} domains in {:?}",
            tenants * per,
            t0.elapsed()
        );
        let t0 = Instant::now();
        let info = shared::compile(&heap, &image).expect("compile");
        println!(
            "compile (write + verify): {:?}, image {:.1} MB",
            t0.elapsed(),
            info.bytes as f64 / 1e6
        );
        let t0 = Instant::now();
        let st = shared::create_state(&image, &state).expect("create_state");
        println!(
            "create_state (verifies the image): {:?}, state file {:.1} MB",
            t0.elapsed(),
            st.bytes as f64 / 1e6
        );

        // Opening.
        let mut opens = Vec::new();
        let mut firsts = Vec::new();
        let q = queries(tenants, per, 1 << 16);
        for i in 0..200 {
            let t0 = Instant::now();
            let mut e = SharedEngine::open(&image, &state).expect("open");
            opens.push(t0.elapsed());
            let t0 = Instant::now();
            black_box(e.check(NOW, &msg(&q[i * 97 % q.len()])).expect("check"));
            firsts.push(t0.elapsed());
        }
        println!(
            "open a mapped engine (image {:.0} MB, {} domains): median {:?}, max {:?}; first check after open: median {:?}",
            info.bytes as f64 / 1e6,
            tenants * per,
            median(opens.clone()),
            opens.iter().max().copied().unwrap_or_default(),
            median(firsts)
        );

        // Opening while another engine has the file open (the opens above were alone with it,
        // so each reset the stripe locks and rolled back what a dead writer left).
        let holder = SharedEngine::open(&image, &state).expect("open");
        let mut shared_opens = Vec::new();
        for _ in 0..200 {
            let t0 = Instant::now();
            black_box(SharedEngine::open(&image, &state).expect("open"));
            shared_opens.push(t0.elapsed());
        }
        drop(holder);
        println!(
            "open while another engine has the file open: median {:?} (alone, resetting the locks: median {:?})",
            median(shared_opens),
            median(opens.clone()),
        );

        // Decisions: same queries, in-memory engine against the mapped one (warmed up).
        let mut e = SharedEngine::open(&image, &state).expect("open");
        for m in &q {
            black_box(e.check(NOW, &msg(m)).expect("check"));
            black_box(heap.check(NOW, &msg(m)));
        }
        let rounds = 5;
        let mut heap_ns = Vec::new();
        let mut mapped_ns = Vec::new();
        for _ in 0..rounds {
            let t0 = Instant::now();
            for m in &q {
                black_box(heap.check(NOW, &msg(m)));
            }
            heap_ns.push(t0.elapsed());
            let t0 = Instant::now();
            for m in &q {
                black_box(e.check(NOW, &msg(m)).expect("check"));
            }
            mapped_ns.push(t0.elapsed());
        }
        let per_call = |d: Duration| d.as_nanos() as f64 / q.len() as f64;
        let (h, m) = (per_call(median(heap_ns)), per_call(median(mapped_ns)));
        println!(
            "check: in-memory {h:.0} ns, mapped {m:.0} ns per decision ({:.2}x)",
            m / h
        );

        // A decision right after another process changed the tenant (private copy refreshed).
        let mut writer = SharedEngine::open(&image, &state).expect("open");
        let mut refresh = Vec::new();
        for qi in q.iter().take(2000) {
            writer
                .record(NOW, &msg(qi), Verdict::Clean)
                .expect("record");
            let t0 = Instant::now();
            black_box(e.check(NOW, &msg(qi)).expect("check"));
            refresh.push(t0.elapsed());
        }
        println!(
            "check right after another process recorded for the same tenant: median {:?}",
            median(refresh)
        );

        // record: in memory, one process, two processes at once (rounds alternate, so that
        // both see the same load from whatever else runs on the machine).
        let n = 200_000u32;
        let t0 = Instant::now();
        for (i, qi) in q.iter().cycle().take(n as usize).enumerate() {
            black_box(
                heap.record(NOW + i as u64 / 1000, &msg(qi), Verdict::Clean)
                    .ok(),
            );
        }
        let mem = t0.elapsed();
        let rate = |calls: u32, d: Duration| calls as f64 / d.as_secs_f64() / 1000.0;
        println!("record: in-memory {:.0}k/s", rate(n, mem));
        let pool = tenants.min(10_000);
        let names: Vec<String> = (0..pool).map(|t| format!("t{t}")).collect();
        let before = SharedEngine::open(&image, &state).expect("open").info();
        let (mut ones, mut twos, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let rounds = 5;
        for r in 0..rounds {
            let (d1, cpu1) = fork_records(&image, &state, 1, n, &names, 2 * r);
            let (d2, cpu2) = fork_records(&image, &state, 2, n, &names, 2 * r + 1);
            let (one, two) = (rate(n, d1), rate(2 * n, d2));
            println!(
                "record round {r}: mapped, 1 process {one:.0}k/s ({:.2} us each, on a CPU {:.0}% of the time); 2 processes at once {two:.0}k/s in total ({:.2} us per call per process, CPUs busy {cpu2:.2} of 2): {:.2}x",
                1000.0 / one,
                cpu1 * 100.0,
                2000.0 / two,
                two / one
            );
            ones.push(one);
            twos.push(two);
            ratios.push(two / one);
        }
        let after = SharedEngine::open(&image, &state).expect("open").info();
        assert_eq!(
            after.writes - before.writes,
            3 * n as u64 * rounds,
            "every record committed"
        );
        let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let mid = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "record over {rounds} rounds, tenants drawn from {pool}: 1 process best {:.0}k/s, median {:.0}k/s; 2 processes best {:.0}k/s, median {:.0}k/s; ratio 2 : 1 of the bests {:.2}x, median of the rounds' ratios {:.2}x",
            best(&ones),
            mid(&ones),
            best(&twos),
            mid(&twos),
            best(&twos) / best(&ones),
            mid(&ratios)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
