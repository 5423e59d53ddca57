//! Shared, file-mapped state: many processes, crashes, damaged and foreign files, migration.
#![cfg(feature = "shared")]
// fork, kill, waitpid and a shared counter page need libc.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outguard::shared::{self, SharedEngine, SharedError};
use outguard::{Capacity, Engine, EventKind, HeapStorage, Message, Reason, Rule, RuleSet, Verdict};

const T0: u64 = 1_790_000_000;
const R750: &str =
    "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains";

/// A directory removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "outguard-shared-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small policy: contoso (contoso.com), fabrikam (fabrikam.com), and `extra` more tenants.
fn engine(limit: u32, extra: &[&str]) -> Engine<HeapStorage> {
    let cap = Capacity {
        tenants: 8,
        ..Capacity::default()
    };
    let mut rules = RuleSet::default();
    rules.unregistered.limit = limit;
    rules.threshold.min_messages = u32::MAX;
    let mut e = Engine::new(HeapStorage::new(&cap), cap, rules).unwrap();
    for (id, dom) in [("contoso", "contoso.com"), ("fabrikam", "fabrikam.com")]
        .into_iter()
        .chain(extra.iter().map(|id| (*id, "example.org")))
    {
        let t = e.add_tenant(id, true).unwrap();
        e.add_domain(t, dom, false, true).unwrap();
    }
    e
}

fn setup(dir: &TempDir, limit: u32) -> (PathBuf, PathBuf) {
    setup_policy(dir, &engine(limit, &[]))
}

/// The image of `heap`'s policy and a fresh state file for it, in `dir`.
fn setup_policy(dir: &TempDir, heap: &Engine<HeapStorage>) -> (PathBuf, PathBuf) {
    let image = dir.path("policy.img");
    let state = dir.path("state");
    shared::compile(heap, &image).unwrap();
    shared::create_state(&image, &state).unwrap();
    (image, state)
}

fn msg<'a>(tenant: &'a str, from: &'a str) -> Message<'a> {
    Message {
        tenant: Some(tenant),
        ..Message::new(from)
    }
}

fn counters(e: &mut SharedEngine, tenant: &str) -> (u32, u32, u32) {
    let c = e.status(tenant, T0).unwrap().counters;
    (c.total, c.suspicious, c.unregistered)
}

// ----- processes ----------------------------------------------------------------------------

/// Runs `f` in a forked child that exits with `f`'s code (never returns into the test harness).
fn fork(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs `f` (engine calls, no locks held by other threads of the test
    // harness are taken: no allocation-heavy std machinery besides the global allocator, which is
    // fork-safe in glibc) and leaves with `_exit`, skipping the harness's destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for a child; returns its exit code, or `-signal` when a signal ended it.
fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: plain system call on our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    }
}

/// Children killed (SIGKILL) and reaped when dropped, also when a test fails.
struct Children(Vec<libc::pid_t>);

impl Drop for Children {
    fn drop(&mut self) {
        for &pid in self.0.iter().filter(|&&p| p > 0) {
            // SAFETY: plain system calls on our own children (never reaped before: a reaped
            // child's entry is replaced at once by its successor's pid).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// A page of `u64` counters shared with forked children (`MAP_SHARED | MAP_ANONYMOUS`): the
/// children's "counter files".
struct SharedCounters {
    ptr: *mut std::sync::atomic::AtomicU64,
    n: usize,
}

impl SharedCounters {
    fn new(n: usize) -> SharedCounters {
        let len = n * 8;
        // SAFETY: fresh anonymous shared mapping, checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        SharedCounters { ptr: p.cast(), n }
    }
    fn get(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(i < self.n);
        // SAFETY: inside the mapping, 8-aligned (page-aligned base), zero-initialized, accessed
        // only atomically by the parent and its children.
        unsafe { &*self.ptr.add(i) }
    }
}

impl Drop for SharedCounters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.n * 8) };
    }
}

#[test]
fn eight_processes_count_exactly() {
    const PROCS: usize = 8;
    const CALLS: u32 = 50_000;
    let dir = TempDir::new("procs");
    let (image, state) = setup(&dir, u32::MAX);
    // Half the children inherit an engine opened before the fork (its lock descriptor must be
    // reopened in the child), half open their own.
    let mut inherited = SharedEngine::open(&image, &state).unwrap();
    let started = Instant::now();
    let pids: Vec<_> = (0..PROCS)
        .map(|i| {
            let (image, state) = (image.clone(), state.clone());
            let inherited = &mut inherited;
            fork(move || {
                let mut own;
                let e = if i % 2 == 0 {
                    inherited
                } else {
                    own = SharedEngine::open(&image, &state).unwrap();
                    &mut own
                };
                let m = msg("contoso", "someone@unregistered.example");
                for _ in 0..CALLS {
                    if e.record(T0, &m, Verdict::Spam).is_err() {
                        return 2;
                    }
                }
                0
            })
        })
        .collect();
    for pid in pids {
        assert_eq!(wait(pid), 0, "a child failed");
    }
    let elapsed = started.elapsed();
    let mut e = SharedEngine::open(&image, &state).unwrap();
    let n = PROCS as u32 * CALLS;
    assert_eq!(counters(&mut e, "contoso"), (n, n, n));
    assert_eq!(counters(&mut e, "fabrikam"), (0, 0, 0));
    // The parent's inherited engine sees the children's counts too.
    assert_eq!(counters(&mut inherited, "contoso"), (n, n, n));
    assert_eq!(e.info().writes, n as u64);
    assert_eq!(e.info().recoveries, 0);
    eprintln!(
        "{PROCS} processes x {CALLS} records: {:?} ({:.2} us per record)",
        elapsed,
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
}

/// Two processes record at once for tenants in different stripes (each its own tenant, and both
/// for a third one now and then): every count is there, exactly, and the writes add up.
#[test]
fn two_processes_on_different_tenants_count_exactly() {
    const CALLS: u32 = 50_000;
    let dir = TempDir::new("two");
    let (image, state) = setup_policy(&dir, &engine(u32::MAX, &["northwind"]));
    let started = Instant::now();
    let pids: Vec<_> = ["contoso", "fabrikam"]
        .into_iter()
        .map(|own| {
            let (image, state) = (image.clone(), state.clone());
            fork(move || {
                let mut e = SharedEngine::open(&image, &state).unwrap();
                let mine = msg(own, "someone@unregistered.example");
                let third = msg("northwind", "a@example.org");
                for i in 0..CALLS {
                    let m = if i % 10 == 9 { &third } else { &mine };
                    if e.record(T0, m, Verdict::Spam).is_err() {
                        return 2;
                    }
                }
                0
            })
        })
        .collect();
    for pid in pids {
        assert_eq!(wait(pid), 0, "a child failed");
    }
    let elapsed = started.elapsed();
    let mut e = SharedEngine::open(&image, &state).unwrap();
    let own = CALLS - CALLS / 10;
    assert_eq!(counters(&mut e, "contoso"), (own, own, own));
    assert_eq!(counters(&mut e, "fabrikam"), (own, own, own));
    let third = 2 * (CALLS / 10);
    assert_eq!(counters(&mut e, "northwind"), (third, third, 0));
    assert_eq!(e.info().writes, 2 * CALLS as u64);
    assert_eq!(e.info().recoveries, 0);
    shared::verify_state(&image, &state).unwrap();
    eprintln!(
        "2 processes x {CALLS} records on different tenants: {:?} ({:.2} us per record each)",
        elapsed,
        elapsed.as_secs_f64() * 1e6 / CALLS as f64
    );
}

/// Tiny deterministic generator for kill delays.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Writers are killed with SIGKILL at random instants, many times, and each kill is checked
/// on its own. Each writer records in a tight loop for its own tenant (each tenant in its own
/// stripe, all stripes busy at once) and bumps a counter in shared memory after every `record`
/// that returned; the parent kills it once that counter has moved on by a random amount, so
/// kills land all over the loop, inside the journaled part of a write about as often as that
/// part takes of the loop's time. Right after the kill, before anything touches the stripe, the
/// parent reads the stripe's journal flag from the file:
/// - marked: the killed write had not committed, so the tenant must count exactly what its
///   writers reported (the write is rolled back, whole, by the next holder of the lock);
/// - not marked: the count is what was reported, or one more (committed, not yet reported).
///
/// The three counters a record increments must always agree (never half a record). A build
/// without the rollback fails the first check on the first kill that lands after the engine
/// call and before the commit.
#[test]
fn killed_writers_lose_nothing_committed_and_keep_nothing_uncommitted() {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::Ordering::SeqCst;
    const WRITERS: usize = 6;
    const KILLS: usize = 120;
    let dir = TempDir::new("crash");
    let extra = ["t2", "t3", "t4", "t5"];
    let (image, state) = setup_policy(&dir, &engine(u32::MAX, &extra));
    let tenants = ["contoso", "fabrikam", "t2", "t3", "t4", "t5"];
    // Tenant k is in stripe k (8 tenants of capacity, 8 stripes).
    let journal_flag: Vec<u64> = (0..WRITERS)
        .map(|k| stripe_block(&state, k) as u64 + 64)
        .collect();
    let file = std::fs::File::open(&state).unwrap();
    let marked = |k: usize| {
        let mut b = [0u8; 8];
        file.read_exact_at(&mut b, journal_flag[k]).unwrap();
        let (flag, tenant) = (
            u32::from_ne_bytes(b[..4].try_into().unwrap()),
            u32::from_ne_bytes(b[4..].try_into().unwrap()),
        );
        assert!(
            flag == 0 || (flag == 1 && tenant == k as u32),
            "{flag} {tenant}"
        );
        flag == 1
    };
    let done = SharedCounters::new(WRITERS);
    let spawn = |k: usize| {
        let (image, state) = (image.clone(), state.clone());
        let slot = done.get(k) as *const std::sync::atomic::AtomicU64 as usize;
        let tenant = tenants[k];
        fork(move || {
            // SAFETY: the shared counter page outlives the child (the parent keeps it).
            let done = unsafe { &*(slot as *const std::sync::atomic::AtomicU64) };
            let Ok(mut e) = SharedEngine::open(&image, &state) else {
                return 3;
            };
            let m = msg(tenant, "someone@unregistered.example");
            loop {
                if e.record(T0, &m, Verdict::Spam).is_err() {
                    return 2;
                }
                done.fetch_add(1, SeqCst);
            }
        })
    };
    let mut parent = SharedEngine::open(&image, &state).unwrap();
    let mut rng = Lcg(0x5eed ^ std::process::id() as u64);
    let mut base = [0u64; WRITERS];
    let mut pids = Children((0..WRITERS).map(spawn).collect());
    let (mut inside, mut unreported) = (0, 0);
    let started = Instant::now();
    for i in 0..KILLS + WRITERS {
        // The last WRITERS rounds end every writer.
        let k = if i < KILLS {
            rng.next(WRITERS as u64) as usize
        } else {
            i - KILLS
        };
        let from = done.get(k).load(SeqCst);
        let target = from + 1 + rng.next(100);
        let waited = Instant::now();
        while done.get(k).load(SeqCst) < target {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "writer {k} stalled"
            );
            std::thread::yield_now();
        }
        // SAFETY: plain system call on our own child.
        unsafe { libc::kill(pids.0[k], libc::SIGKILL) };
        let code = wait(pids.0[k]);
        assert_eq!(
            code,
            -libc::SIGKILL,
            "writer {k} ended by itself with {code}"
        );
        let was_marked = marked(k);
        let reported = base[k] + done.get(k).swap(0, SeqCst);
        // Take the stripe's lock (reading is lock-free while the tenant's sequence number did
        // not move, which a write killed before it made it odd leaves as it was).
        parent.audit(tenants[k]).unwrap();
        let (total, suspicious, unregistered) = counters(&mut parent, tenants[k]);
        assert_eq!(total, suspicious, "kill {i}: half a record");
        assert_eq!(total, unregistered, "kill {i}: half a record");
        let counted = total as u64;
        if was_marked {
            inside += 1;
            assert_eq!(
                counted, reported,
                "kill {i}: a write killed before its commit was kept"
            );
        } else {
            assert!(
                counted == reported || counted == reported + 1,
                "kill {i}: reported {reported}, counted {counted}"
            );
            unreported += counted - reported;
        }
        assert!(!marked(k), "kill {i}: not rolled back");
        base[k] = counted;
        pids.0[k] = if i < KILLS { spawn(k) } else { 0 };
    }
    pids.0.clear();
    let info = parent.info();
    eprintln!(
        "{} kills in {:?}: {inside} inside the journaled part (rolled back: {}), {unreported} \
         committed but not reported",
        KILLS + WRITERS,
        started.elapsed(),
        info.recoveries
    );
    assert_eq!(info.recoveries, inside);
    for (k, t) in tenants.iter().enumerate() {
        let n = base[k] as u32;
        assert_eq!(counters(&mut parent, t), (n, n, n));
    }
    shared::verify_state(&image, &state).unwrap();
}

// ----- behaviour --------------------------------------------------------------------------

/// The shared engine decides exactly as the in-memory engine does.
#[test]
fn same_decisions_as_the_heap_engine() {
    let dir = TempDir::new("same");
    let (image, state) = setup(&dir, 5);
    let mut heap = engine(5, &[]);
    let mut e = SharedEngine::open(&image, &state).unwrap();
    let senders = [
        ("contoso", "a@contoso.com", Verdict::Clean),
        ("contoso", "b@elsewhere.example", Verdict::Spam),
        ("fabrikam", "c@fabrikam.com", Verdict::Bulk),
        ("contoso", "<>", Verdict::Clean),
        ("fabrikam", "d@other.example", Verdict::Clean),
        ("nobody", "e@contoso.com", Verdict::Clean),
        ("contoso", "not an address", Verdict::Clean),
    ];
    for i in 0..200u64 {
        let (t, from, v) = senders[(i as usize * 7 + i as usize / 3) % senders.len()];
        let m = msg(t, from);
        let now = T0 + i * 600;
        assert_eq!(e.check(now, &m).unwrap(), heap.check(now, &m), "check {i}");
        let (d1, ev1) = e.evaluate(now, &m, v).unwrap();
        let (d2, ev2) = heap.evaluate(now, &m, v);
        assert_eq!(d1, d2, "evaluate {i}");
        assert_eq!(ev1, ev2, "events {i}");
        if i % 50 == 49 {
            let t = heap.tenant("contoso").unwrap();
            assert_eq!(
                e.release("contoso", None, now).unwrap(),
                heap.release(t, None, now).unwrap()
            );
        }
    }
    let t = heap.tenant("fabrikam").unwrap();
    assert_eq!(
        e.status("fabrikam", T0 + 200 * 600).unwrap(),
        heap.status(t, T0 + 200 * 600).unwrap()
    );
    assert_eq!(
        e.audit("contoso").unwrap(),
        heap.audit(heap.tenant("contoso").unwrap())
            .copied()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        e.restricted(T0 + 200 * 600).unwrap(),
        heap.restricted(T0 + 200 * 600).collect::<Vec<_>>()
    );
    // Errors are the engine's.
    assert!(matches!(
        e.record(T0, &msg("nobody", "a@b.example"), Verdict::Clean),
        Err(SharedError::Engine(outguard::Error::UnknownTenant))
    ));
    assert!(matches!(
        e.record(T0, &msg("contoso", "a@@"), Verdict::Clean),
        Err(SharedError::Engine(outguard::Error::InvalidAddress))
    ));
    assert!(matches!(
        e.release("nobody", None, T0),
        Err(SharedError::Engine(outguard::Error::UnknownTenant))
    ));
}

/// A block tripped by one process refuses the next message in another, across separate opens
/// (the Exim case: a process per connection).
#[test]
fn a_block_is_seen_by_every_process() {
    let dir = TempDir::new("block");
    let (image, state) = setup(&dir, 3);
    let mut watcher = SharedEngine::open(&image, &state).unwrap();
    let spam = msg("contoso", "x@unregistered.example");
    let own = msg("contoso", "alice@contoso.com");
    assert!(watcher.check(T0, &spam).unwrap().accepted());
    for i in 0..3 {
        // A new "connection": a fresh open in a fresh process.
        let (image, state) = (image.clone(), state.clone());
        let pid = fork(move || {
            let mut e = SharedEngine::open(&image, &state).unwrap();
            let d = e.check(T0 + i, &spam).unwrap();
            if !d.accepted() {
                return 4;
            }
            e.record(T0 + i, &spam, Verdict::Clean)
                .map(|_| 0)
                .unwrap_or(5)
        });
        assert_eq!(wait(pid), 0);
    }
    let d = watcher.check(T0 + 10, &spam).unwrap();
    assert_eq!(d.reason, Some(Reason::UnregisteredDomain));
    assert_eq!(d.reply(), Some(R750));
    assert!(watcher.check(T0 + 10, &own).unwrap().accepted());
    let audit = watcher.audit("contoso").unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].kind(), Some(EventKind::Blocked));
    // Release from this process; a new one sees it.
    watcher
        .release("contoso", Some(Rule::UnregisteredDomain), T0 + 20)
        .unwrap();
    let mut other = SharedEngine::open(&image, &state).unwrap();
    assert!(other.check(T0 + 21, &spam).unwrap().accepted());
    other.sync().unwrap();
}

// ----- damaged and foreign files --------------------------------------------------------------

/// Offset and length in bytes of table `i` of a state file's header directory (which starts
/// at byte 64 with 16 bytes per table).
fn state_table(b: &[u8], i: usize) -> (usize, usize) {
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    (word(64 + 16 * i), word(72 + 16 * i))
}

/// Where stripe `s`'s 128-byte block is in a state file (the fifth table of the header's
/// directory).
fn stripe_block(state: &Path, s: usize) -> usize {
    let (off, bytes) = state_table(&std::fs::read(state).unwrap(), 4);
    assert!(s * 128 + 128 <= bytes, "stripe {s} of {}", bytes / 128);
    off + s * 128
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn damaged_and_foreign_files_are_refused() {
    let dir = TempDir::new("corrupt");
    let (image, state) = setup(&dir, 10);
    let open = |i: &Path, s: &Path| SharedEngine::open(i, s).map(|_| ());

    // Image header bytes.
    for (at, what) in [
        (0, "magic"),
        (8, "version"),
        (17, "endian"),
        (24, "id"),
        (40, "sizes"),
        (60, "directory"),
        (300, "meta"),
        (4000, "reserved"),
        (4090, "checksum"),
    ] {
        let bad = dir.path("bad.img");
        std::fs::copy(&image, &bad).unwrap();
        flip(&bad, at);
        let err = open(&bad, &state).expect_err(what);
        let ok = match at {
            0 => matches!(err, SharedError::BadMagic { .. }),
            8 => matches!(err, SharedError::Version { .. }),
            _ => matches!(err, SharedError::CorruptHeader { .. }),
        };
        assert!(ok, "image {what}: {err}");
        assert!(err.to_string().contains("bad.img"), "{err}");
    }
    // State header bytes: immutable part and flag words.
    for (at, what) in [
        (0, "magic"),
        (9, "version"),
        (24, "image id"),
        (40, "tenants"),
        (70, "directory"),
        (200, "image path"),
        (2040, "checksum"),
        (2048, "superseded flag"),
        (2052, "reserved word"),
        (stripe_block(&state, 0) + 64, "stripe 0 journal flag"),
        (stripe_block(&state, 5) + 64, "stripe 5 journal flag"),
    ] {
        let bad = dir.path("bad.state");
        std::fs::copy(&state, &bad).unwrap();
        flip(&bad, at);
        let err = open(&image, &bad).expect_err(what);
        let ok = match at {
            0 => matches!(err, SharedError::BadMagic { .. }),
            9 => matches!(err, SharedError::Version { .. }),
            _ => matches!(err, SharedError::CorruptHeader { .. }),
        };
        assert!(ok, "state {what}: {err}");
    }
    // A state file of the previous format version (one lock and one journal for the whole
    // file) is refused with a clear error, whatever else it holds.
    let old = dir.path("v2.state");
    let mut b = std::fs::read(&state).unwrap();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&old, &b).unwrap();
    let err = open(&image, &old).expect_err("version 2");
    assert!(
        matches!(
            err,
            SharedError::Version {
                found: 2,
                expected: shared::STATE_VERSION,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(shared::STATE_VERSION, 3);
    assert!(
        err.to_string()
            .contains("state file format version 2 is not supported (this build reads version 3)"),
        "{err}"
    );
    // A stripe journal that names a tenant of another stripe.
    let bad = dir.path("journal.state");
    let mut b = std::fs::read(&state).unwrap();
    let at = stripe_block(&state, 1);
    b[at + 64..at + 68].copy_from_slice(&1u32.to_ne_bytes());
    b[at + 68..at + 72].copy_from_slice(&2u32.to_ne_bytes());
    std::fs::write(&bad, &b).unwrap();
    let err = open(&image, &bad).expect_err("journal tenant");
    assert!(matches!(err, SharedError::CorruptHeader { .. }), "{err}");
    // ... and one that names a tenant of its own: an unfinished write, rolled back (to the
    // before-image in the stripe's journal: tenant 1's record as it is, zero counters).
    b[at + 68..at + 72].copy_from_slice(&1u32.to_ne_bytes());
    let rec = std::mem::size_of::<outguard::TenantRecord>();
    let (tenants, journal) = (state_table(&b, 0).0, state_table(&b, 5).0);
    let before = b[tenants + rec..tenants + 2 * rec].to_vec();
    b[journal + rec..journal + 2 * rec].copy_from_slice(&before);
    std::fs::write(&bad, &b).unwrap();
    let mut e = SharedEngine::open(&image, &bad).unwrap();
    assert_eq!(counters(&mut e, "fabrikam"), (0, 0, 0));
    assert_eq!(e.info().recoveries, 1);
    // Truncated files.
    for (file, is_image) in [(&image, true), (&state, false)] {
        let bad = dir.path("short");
        let b = std::fs::read(file).unwrap();
        for keep in [0, 5, 100, 4096, b.len() - 64] {
            std::fs::write(&bad, &b[..keep]).unwrap();
            let err = if is_image {
                open(&bad, &state)
            } else {
                open(&image, &bad)
            }
            .expect_err("truncated");
            assert!(
                matches!(err, SharedError::Truncated { .. }),
                "{keep} bytes: {err}"
            );
        }
        std::fs::write(&bad, b"something else entirely").unwrap();
        let err = if is_image {
            open(&bad, &state)
        } else {
            open(&image, &bad)
        }
        .expect_err("foreign");
        assert!(matches!(err, SharedError::BadMagic { .. }), "{err}");
    }
    // Missing files.
    let err = open(&dir.path("none"), &state).expect_err("missing");
    assert!(matches!(err, SharedError::Io { op: "open", .. }), "{err}");
    // A state file of another image.
    let other = dir.path("other.img");
    shared::compile(&engine(11, &[]), &other).unwrap();
    let err = open(&other, &state).expect_err("mismatch");
    assert!(matches!(err, SharedError::ImageMismatch { .. }), "{err}");
    assert!(err.to_string().contains("migrate"), "{err}");
    // The same policy compiled again is the same image.
    let same = dir.path("same.img");
    let info = shared::compile(&engine(10, &[]), &same).unwrap();
    assert_eq!(info.id, shared::verify_image(&image).unwrap().id);
    open(&same, &state).unwrap();
    // A damaged image body: the checksum catches it where it is verified.
    let bad = dir.path("body.img");
    std::fs::copy(&image, &bad).unwrap();
    flip(&bad, 8192 + 10); // past the two header pages
    assert!(matches!(
        shared::verify_image(&bad),
        Err(SharedError::Checksum { .. })
    ));
    assert!(matches!(
        shared::create_state(&bad, &dir.path("s2")),
        Err(SharedError::Checksum { .. })
    ));
    // A damaged tenant record in the state file is refused when first used.
    let bad = dir.path("rec.state");
    std::fs::copy(&state, &bad).unwrap();
    flip(&bad, 4096 + 4); // tenant 0's id length
    let mut e = SharedEngine::open(&image, &bad).unwrap();
    let err = e
        .check(T0, &msg("contoso", "a@contoso.com"))
        .expect_err("damaged record");
    assert!(
        matches!(err, SharedError::CorruptState { tenant: 0, .. }),
        "{err}"
    );
    assert!(matches!(
        shared::verify_state(&image, &bad),
        Err(SharedError::CorruptState { .. })
    ));
    // create_state never replaces a state file.
    assert!(matches!(
        shared::create_state(&image, &state),
        Err(SharedError::Exists { .. })
    ));
    // The good pair still opens.
    open(&image, &state).unwrap();
    shared::verify_state(&image, &state).unwrap();
}

// ----- migration --------------------------------------------------------------------------

#[test]
fn migration_keeps_the_state_files_owner_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = TempDir::new("migrate-owner");
    let image1 = dir.path("v1.img");
    let image2 = dir.path("v2.img");
    let state = dir.path("state");
    shared::compile(&engine(3, &["northwind"]), &image1).unwrap();
    shared::compile(&engine(100, &["adatum"]), &image2).unwrap();
    shared::create_state(&image1, &state).unwrap();
    // As an operator leaves it for the mail server: its own mode, and (when this test may
    // change owners) the mail server's user and group.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o604)).unwrap();
    let root = std::fs::metadata(&state).unwrap().uid() == 0
        && std::os::unix::fs::chown(&state, Some(65534), Some(65534)).is_ok();
    shared::migrate(&image1, &state, &image2, &state).unwrap();
    let m = std::fs::metadata(&state).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o604);
    if root {
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
    }
    assert_eq!(
        root,
        std::env::var_os("CI").is_some() || m.uid() == 65534,
        "CI runs this as root, so the owner is checked there"
    );
    SharedEngine::open(&image2, &state).unwrap();
}

#[test]
fn migration_keeps_blocks_and_counters() {
    let dir = TempDir::new("migrate");
    let image1 = dir.path("v1.img");
    let state = dir.path("state");
    shared::compile(&engine(3, &["northwind"]), &image1).unwrap();
    shared::create_state(&image1, &state).unwrap();
    let mut e = SharedEngine::open(&image1, &state).unwrap();
    let spam = msg("contoso", "x@unregistered.example");
    for i in 0..3 {
        e.record(T0 + i, &spam, Verdict::Spam).unwrap();
    }
    assert_eq!(
        e.check(T0 + 5, &spam).unwrap().reason,
        Some(Reason::UnregisteredDomain)
    );
    e.record(T0, &msg("fabrikam", "y@fabrikam.com"), Verdict::Clean)
        .unwrap();
    e.record(T0, &msg("northwind", "z@example.org"), Verdict::Clean)
        .unwrap();

    // v2: northwind leaves, adatum joins, the allowance rises.
    let image2 = dir.path("v2.img");
    shared::compile(&engine(100, &["adatum"]), &image2).unwrap();
    let report = shared::migrate(&image1, &state, &image2, &state).unwrap();
    assert_eq!(report.carried, 2);
    assert_eq!(report.removed, vec!["northwind".to_string()]);
    assert_eq!(report.added, vec!["adatum".to_string()]);

    // The engine opened before the migration follows on its next call: the block stays (a manual
    // block needs a release, whatever the new limit), and the counters are there.
    let d = e.check(T0 + 6, &spam).unwrap();
    assert_eq!(d.reason, Some(Reason::UnregisteredDomain));
    assert_eq!(d.counters.limit, 100);
    assert_eq!(e.info().image_path, std::fs::canonicalize(&image2).unwrap());
    assert_eq!(counters(&mut e, "contoso"), (3, 3, 3));
    assert_eq!(counters(&mut e, "fabrikam"), (1, 0, 0));
    assert_eq!(counters(&mut e, "adatum"), (0, 0, 0));
    assert!(matches!(
        e.status("northwind", T0),
        Err(SharedError::Engine(outguard::Error::UnknownTenant))
    ));
    let audit = e.audit("contoso").unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].kind(), Some(EventKind::Blocked));

    // New processes: the old image no longer fits the state; the state names its image.
    assert!(matches!(
        SharedEngine::open(&image1, &state),
        Err(SharedError::ImageMismatch { .. })
    ));
    let mut fresh = SharedEngine::open_state(&state).unwrap();
    assert_eq!(
        fresh.check(T0 + 7, &spam).unwrap().reason,
        Some(Reason::UnregisteredDomain)
    );
    fresh.release("contoso", None, T0 + 8).unwrap();
    assert!(e.check(T0 + 9, &spam).unwrap().accepted());

    // Migrating to another path: the old file is superseded and says where its state went.
    let state3 = dir.path("state3");
    shared::migrate(&image2, &state, &image1, &state3).unwrap();
    let err = SharedEngine::open(&image2, &state).expect_err("superseded");
    match &err {
        SharedError::Superseded { by: Some(by), .. } => {
            assert_eq!(by, &std::fs::canonicalize(&state3).unwrap())
        }
        other => panic!("{other}"),
    }
    // ... and an engine still on it follows there.
    let r = e.record(T0 + 10, &msg("fabrikam", "y@fabrikam.com"), Verdict::Clean);
    r.unwrap();
    assert_eq!(e.info().state_path, std::fs::canonicalize(&state3).unwrap());
    assert_eq!(counters(&mut e, "fabrikam"), (2, 0, 0));
    // A superseded file cannot be migrated again; a live one elsewhere is never overwritten.
    assert!(matches!(
        shared::migrate(&image2, &state, &image1, &dir.path("state4")),
        Err(SharedError::Superseded { .. })
    ));
    let other = dir.path("other");
    shared::create_state(&image1, &other).unwrap();
    assert!(matches!(
        shared::migrate(&image1, &state3, &image2, &other),
        Err(SharedError::Exists { .. })
    ));
}

#[test]
fn open_or_create_and_policy_compile() {
    let dir = TempDir::new("create");
    let policy_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy/spec_example.toml");
    let policy = outguard::policy::Policy::load(&policy_path).unwrap();
    let image = dir.path("p.img");
    let info = shared::compile_policy(&policy, &image).unwrap();
    assert_eq!(info.tenants, 1);
    let state = dir.path("s");
    let mut e = SharedEngine::open_or_create(&image, &state).unwrap();
    let m = Message {
        auth_user: Some("alice@contoso.com"),
        ..Message::new("alice@contoso.com")
    };
    let d = e.check(T0, &m).unwrap();
    assert!(d.accepted());
    assert_eq!(e.tenant_name(d.tenant.unwrap()), "contoso");
    let mut again = SharedEngine::open_or_create(&image, &state).unwrap();
    again.record(T0, &m, Verdict::Clean).unwrap();
    assert_eq!(e.status("contoso", T0).unwrap().counters.total, 1);
    fn send<T: Send>(_: &T) {}
    send(&e);
}

/// A tenant the policy marks lapsed (a flag of the image's initial record) is a valid record of
/// the state file: it is refused as lapsed, then marked active again, not reported corrupt.
#[test]
fn a_tenant_lapsed_by_policy_is_usable() {
    let dir = TempDir::new("policylapsed");
    let mut heap = engine(10, &[]);
    let t = heap.tenant("fabrikam").unwrap();
    heap.set_policy_lapsed(t, true).unwrap();
    let (image, state) = setup_policy(&dir, &heap);
    let mut e = SharedEngine::open(&image, &state).unwrap();
    let m = msg("fabrikam", "a@fabrikam.com");
    assert_eq!(e.check(T0, &m).unwrap(), heap.check(T0, &m));
    assert!(!e.check(T0, &m).unwrap().accepted());
    assert_eq!(
        e.mark_active("fabrikam", T0).unwrap(),
        heap.mark_active(t, T0).unwrap()
    );
    assert_eq!(
        e.status("fabrikam", T0).unwrap(),
        heap.status(t, T0).unwrap()
    );
    shared::verify_state(&image, &state).unwrap();
}
