//! The unsafe part of shared state, in one file: memory maps, file locks, and typed views of
//! mapped bytes.
//!
//! Casting mapped bytes to records is sound because every record type here is `#[repr(C)]` and
//! made of integers only (any bit pattern is a valid value, and the types listed in [`Plain`]
//! have no padding bytes, checked at compile time), every region is checked at construction to
//! lie inside its mapping and to be aligned for its type, and the mappings live exactly as long
//! as the [`MappedStorage`] that owns them.
//!
//! Memory that other processes write at the same time (the state file) is read outside the locks
//! only with volatile reads validated by a per-tenant sequence number (a seqlock), and only into
//! private memory; the engine itself reads a tenant's shared records only while this process
//! holds the lock of the tenant's stripe, so no other process writes them meanwhile.
//!
//! The stripe locks are robust, process-shared pthread mutexes stored in the state file (Linux
//! with glibc or musl): taking an uncontended one is an atomic instruction, no system call, and
//! the kernel marks one whose holder died (`EOWNERDEAD`). Elsewhere every stripe lock is the
//! state file's `flock` (correct, but writers do not run in parallel).

use core::cell::Cell;
use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, AtomicU64};
use std::format;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::vec::Vec;

use super::SharedError;
use crate::storage::{ConnectorRecord, DomainEntry, Parts, PartsMut, RangeEntry, TenantRecord};
use crate::{Event, RuleSetRecord, Storage};

// ----- crash points -------------------------------------------------------------------------

/// Named instants inside the write, recovery, reset and migration paths. In test builds, a
/// thread that armed one (`crash::arm`, in a forked child) kills its process with SIGKILL when
/// it gets there, so that every crash window is tested deterministically; elsewhere they cost
/// nothing.
pub(super) mod crash {
    #[cfg(test)]
    std::thread_local! {
        static ARMED: core::cell::Cell<Option<&'static str>> = const { core::cell::Cell::new(None) };
    }

    /// Makes this thread die at `point`.
    #[cfg(test)]
    pub fn arm(point: &'static str) {
        ARMED.with(|a| a.set(Some(point)));
    }

    /// A crash point.
    #[cfg(test)]
    pub fn point(name: &'static str) {
        if ARMED.with(|a| a.get()) == Some(name) {
            // SAFETY: plain system call; the process dies here, as if killed from outside.
            unsafe { libc::raise(libc::SIGKILL) };
        }
    }

    /// A crash point (nothing outside tests).
    #[cfg(not(test))]
    #[inline(always)]
    pub fn point(_name: &'static str) {}
}

// ----- plain records ------------------------------------------------------------------------

/// Record types whose bytes may be viewed as `&[u8]`: `#[repr(C)]`, integers only, no padding.
pub(super) trait Plain: Copy + 'static {}
impl Plain for u8 {}
impl Plain for u32 {}
impl Plain for u64 {}
impl Plain for TenantRecord {}
impl Plain for DomainEntry {}
impl Plain for ConnectorRecord {}
impl Plain for RangeEntry {}
impl Plain for RuleSetRecord {}

// No padding anywhere: the size is the sum of the fields' sizes. (`Event` has 4 bytes of tail
// padding, so it is never viewed as bytes; it is only copied as a value.)
const _: () = {
    assert!(size_of::<crate::storage::RuleState>() == 4 * 8 + 2 * 4);
    assert!(size_of::<TenantRecord>() == 4 + 1 + 1 + 2 + 4 + 4 + 8 + 8 + 2 * 40);
    assert!(size_of::<DomainEntry>() == 4 + 4 + 4 + 1 + 1 + 2);
    assert!(size_of::<ConnectorRecord>() == 4 * 3 + 4 + 4 + 4 + 8);
    assert!(size_of::<RangeEntry>() == 16 + 4 + 4 + 4 + 4 + 8);
    assert!(size_of::<RuleSetRecord>() == RuleSetRecord::WORDS * 8);
    assert!(align_of::<Event>() <= 64 && align_of::<TenantRecord>() <= 64);
};

/// The bytes of a slice of plain records.
pub(super) fn bytes_of<T: Plain>(s: &[T]) -> &[u8] {
    // SAFETY: `T: Plain` has no padding (checked above), so all `size_of_val(s)` bytes are
    // initialized; `u8` has alignment 1; the lifetime is that of `s`.
    unsafe { core::slice::from_raw_parts(s.as_ptr().cast::<u8>(), core::mem::size_of_val(s)) }
}

// ----- mappings -----------------------------------------------------------------------------

/// An `mmap`ed address range, unmapped on drop.
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` owns its address range exclusively (nothing else in this process unmaps
// it); the range is valid from any thread.
unsafe impl Send for Mapping {}
// SAFETY: its `&self` methods only read its bounds, make views of memory that no thread of this
// process writes while they are alive (see `bytes`), or call `msync`; the stripe guards share a
// mapping only to unlock a mutex in it (pthread mutexes are made for concurrent use).
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` read-write: `MAP_SHARED` (writes reach the file and other
    /// processes) or `MAP_PRIVATE` (copy on write, nothing reaches the file).
    pub fn file(file: &File, len: usize, shared: bool) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty file"));
        }
        let flags = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        // SAFETY: a fresh mapping at an address the kernel chooses (null hint) cannot overlap
        // memory Rust knows about; `file` is an open descriptor for the duration of the call;
        // the result is checked for MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                file.as_raw_fd(),
                0,
            )
        };
        Mapping::from_raw(p, len)
    }

    /// Maps `len` bytes of private, zero-filled memory (pages are allocated when first written).
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        let len = len.max(1);
        // SAFETY: as for `file`, with no descriptor.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        Mapping::from_raw(p, len)
    }

    fn from_raw(p: *mut libc::c_void, len: usize) -> io::Result<Mapping> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Mapping { ptr, len })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes of `range`, for memory no other process writes while the view is used (an
    /// image, or the immutable part of a state header).
    pub fn bytes(&self, start: usize, len: usize) -> Option<&[u8]> {
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `start..end` lies inside the mapping (checked), which is readable, initialized
        // (file pages or zero pages) and lives as long as `&self`.
        Some(unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().add(start), len) })
    }

    /// Writes the mapping's dirty pages to the file and waits (`msync(MS_SYNC)`).
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: the range is exactly a mapping this value owns.
        let r = unsafe { libc::msync(self.ptr.as_ptr().cast(), self.len, libc::MS_SYNC) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is exactly a mapping this value owns; every reference into it is
        // tied to a borrow of its owner, so none outlives this drop.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Reserves the file's blocks so that writes through a shared mapping never meet a full disk
/// (which would be SIGBUS). File systems that cannot reserve are left sparse.
pub(super) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::other("file too large"))?;
    // SAFETY: plain system call on an open descriptor.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match r {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

// ----- file locks ---------------------------------------------------------------------------

/// The state file's `flock`. Where stripe locks are mutexes, every engine holds it shared for
/// as long as it is open, and an opener (or `repair_state`) that can take it exclusively
/// without waiting knows that nobody else has the file open (see `SharedEngine::prepare_locks`).
/// Where they are not, it is every stripe's lock, taken exclusively by `lock`, which reopens
/// the descriptor after a `fork`: flock locks belong to the open file description, which a
/// child shares with its parent, so a child locking the inherited descriptor would "hold" its
/// parent's lock too.
pub(super) struct StateLock {
    file: File,
    pid: u32,
    path: PathBuf,
}

/// Holds the lock until dropped. Dropped before the `StateLock` it came from is replaced or
/// dropped (guards live inside one method of the engine).
pub(super) struct LockGuard {
    fd: i32,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // SAFETY: plain system call on a descriptor the `StateLock` keeps open for the guard's
        // lifetime; unlocking cannot fail in a way that matters (the kernel drops the lock with
        // the descriptor anyway).
        unsafe {
            libc::flock(self.fd, libc::LOCK_UN);
        }
    }
}

impl StateLock {
    pub fn new(file: File, path: &Path) -> StateLock {
        StateLock {
            file,
            pid: std::process::id(),
            path: path.to_path_buf(),
        }
    }

    /// Takes the lock, shared or exclusive, waiting for it.
    pub fn lock(&mut self, exclusive: bool) -> Result<LockGuard, SharedError> {
        let pid = std::process::id();
        if pid != self.pid {
            self.file = self.reopen()?;
            self.pid = pid;
        }
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        let fd = self.file.as_raw_fd();
        loop {
            // SAFETY: plain system call on an open descriptor.
            let r = unsafe { libc::flock(fd, op) };
            if r == 0 {
                return Ok(LockGuard { fd });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(SharedError::io(&self.path, "lock", e));
            }
        }
    }

    /// Takes the lock exclusively if no other open file description holds it, without waiting:
    /// `Ok(false)` when one does. Where stripe locks are mutexes, every open engine holds the
    /// lock shared for as long as it is open, so `Ok(true)` proves that no other engine has
    /// the file open. Kept until [`Self::share`], [`Self::unlock`] or the file is closed.
    pub fn try_exclusive(&self) -> Result<bool, SharedError> {
        match self.raw(libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(SharedError::io(&self.path, "lock", e)),
        }
    }

    /// Takes the lock shared, waiting for an exclusive holder (converting this description's
    /// exclusive lock, if it holds one). Kept until the file is closed: see `try_exclusive`.
    pub fn share(&self) -> Result<(), SharedError> {
        self.raw(libc::LOCK_SH)
            .map_err(|e| SharedError::io(&self.path, "lock", e))
    }

    /// Releases whatever this description holds.
    pub fn unlock(&self) {
        let _ = self.raw(libc::LOCK_UN);
    }

    fn raw(&self, op: libc::c_int) -> io::Result<()> {
        loop {
            // SAFETY: plain system call on an open descriptor.
            if unsafe { libc::flock(self.file.as_raw_fd(), op) } == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// A new open file description of the same file (not of whatever the path names now).
    fn reopen(&self) -> Result<File, SharedError> {
        let err = |e| SharedError::io(&self.path, "reopen after fork", e);
        let old = self.file.metadata().map_err(err)?;
        let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .and_then(|f| Ok((f.metadata()?, f)))
        };
        for candidate in [Path::new(&proc_path), self.path.as_path()] {
            if let Ok((m, f)) = open(candidate) {
                if m.dev() == old.dev() && m.ino() == old.ino() {
                    return Ok(f);
                }
            }
        }
        Err(err(io::Error::other(
            "the state file can no longer be opened (removed or replaced)",
        )))
    }
}

// ----- regions ------------------------------------------------------------------------------

/// `len` records starting `off` bytes into a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Region {
    pub off: usize,
    pub len: usize,
}

impl Region {
    fn fits<T>(&self, m: &Mapping) -> bool {
        self.off % align_of::<T>() == 0
            && (m.base() as usize + self.off) % align_of::<T>() == 0
            && self
                .len
                .checked_mul(size_of::<T>())
                .and_then(|b| b.checked_add(self.off))
                .is_some_and(|end| end <= m.len())
    }
    fn end<T>(&self) -> usize {
        self.off + self.len * size_of::<T>()
    }
}

/// Where the policy tables are in an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ImageRegions {
    pub tenant_index: Region,
    pub domains: Region,
    pub connectors: Region,
    pub connector_index: Region,
    pub ranges: Region,
    pub overrides: Region,
    pub names: Region,
    /// The tenants' initial records.
    pub tenants: Region,
}

/// Where the state tables are in a state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StateRegions {
    pub tenants: Region,
    pub counters: Region,
    pub audit: Region,
    /// One `u64` sequence number per tenant.
    pub seqs: Region,
    /// One [`StripeBlock`] per stripe: its lock, journal words and statistics. Tenant `t`
    /// belongs to stripe `t % stripes`.
    pub stripes: Region,
    /// The undo journals, one per stripe: a tenant record each ...
    pub journal_record: Region,
    /// ... its counter cells (`stride` per stripe) ...
    pub journal_cells: Region,
    /// ... and the audit slots a call may write (`JOURNAL_AUDIT_SLOTS` or the audit depth per
    /// stripe).
    pub journal_audit: Region,
}

/// Offsets of the mutable words of a state header.
pub(super) mod header {
    /// `u32`: 1 once the state file was superseded by a migration; 2 while a migration is
    /// renaming the new file into place (it holds every stripe lock meanwhile).
    pub const SUPERSEDED: usize = 2048;
    /// `u32`: reserved, zero.
    pub const RESERVED: usize = 2052;
    /// `u64`: the boot the stripe locks were initialized in (a hash of the kernel's boot id;
    /// 0: never initialized, or an initialization is unfinished; 1: initialized by a process
    /// that could not read the boot id).
    pub const LOCK_EPOCH: usize = 2056;
    /// `u64` ×2: while a migration is pending (`SUPERSEDED` is 2), the device and inode of the
    /// new state file it renames into place (`SUPERSEDED_BY`).
    pub const MIGRATE_DEV: usize = 2064;
    /// See `MIGRATE_DEV`.
    pub const MIGRATE_INO: usize = 2072;
    /// `u32`: length of the superseding state file's path.
    pub const SUPERSEDED_BY_LEN: usize = 2080;
    /// The superseding state file's path (up to `MAX_PATH` bytes).
    pub const SUPERSEDED_BY: usize = 2088;
}

/// One stripe's block in the state file: 128 bytes (two cache lines, so that writers of
/// different stripes never share a line), viewed through the offsets in [`stripe`].
pub(super) type StripeBlock = [u64; 16];

/// Offsets inside a [`StripeBlock`].
pub(super) mod stripe {
    /// The stripe's lock: a process-shared robust `pthread_mutex_t` (up to `LOCK_MAX` bytes;
    /// unused where stripes share the file's `flock`).
    pub const LOCK: usize = 0;
    /// Room for the mutex.
    pub const LOCK_MAX: usize = 64;
    /// `u32`: 1 while a write is in progress (the stripe's journal holds its before-image).
    pub const JOURNAL_STATE: usize = 64;
    /// `u32`: the tenant the stripe's journal belongs to.
    pub const JOURNAL_TENANT: usize = 68;
    /// `u64`: committed writes in this stripe (statistics).
    pub const WRITES: usize = 72;
    /// `u64`: writes of this stripe rolled back after their writer died (statistics).
    pub const RECOVERIES: usize = 80;
}

const _: () = assert!(size_of::<StripeBlock>() == 128 && stripe::RECOVERIES + 8 <= 128);

// ----- stripe locks -------------------------------------------------------------------------

/// Robust process-shared mutexes (Linux, glibc or musl).
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
mod mutex {
    use core::mem::{size_of, MaybeUninit};
    use std::io;

    /// What the lock bytes of a stripe block are: recorded in the state header, so that a file
    /// is never used by builds whose mutexes differ (another C library).
    pub const KIND: u32 = if cfg!(target_env = "gnu") { 1 } else { 2 };
    /// `size_of::<pthread_mutex_t>()`, recorded in the header as well.
    pub const BYTES: u32 = size_of::<libc::pthread_mutex_t>() as u32;
    /// How long a waiter waits for a stripe lock before giving up with an error: writers hold
    /// one for microseconds, so this means a holder that is stopped (or a file copied while
    /// locked), not contention.
    const TIMEOUT_SECS: i64 = 10;

    const _: () = assert!(
        size_of::<libc::pthread_mutex_t>() <= super::stripe::LOCK_MAX
            && core::mem::align_of::<libc::pthread_mutex_t>() <= 8
    );

    fn check(r: libc::c_int) -> io::Result<()> {
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(r))
        }
    }

    /// Initializes a process-shared, robust mutex at `m`.
    ///
    /// # Safety
    /// `m` is valid, aligned memory for a `pthread_mutex_t` that no thread of any process uses
    /// meanwhile.
    pub unsafe fn init(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: initializing and then using an attribute object we own; `m` per the contract.
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let r = check(libc::pthread_mutexattr_setpshared(
                attr.as_mut_ptr(),
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|()| {
                check(libc::pthread_mutexattr_setrobust(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| check(libc::pthread_mutex_init(m, attr.as_ptr())));
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            r
        }
    }

    /// Locks `m`; `Ok(true)` when its previous holder died holding it (the mutex is made
    /// consistent again at once: what the holder left half done is repaired by the caller from
    /// the stripe's journal, which stays marked until that is done).
    ///
    /// # Safety
    /// `m` is a mutex initialized by [`init`] in memory that stays mapped while it is held.
    pub unsafe fn lock(m: *mut libc::pthread_mutex_t) -> io::Result<bool> {
        // SAFETY: per the contract.
        let mut r = unsafe { libc::pthread_mutex_trylock(m) };
        if r == libc::EBUSY {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: writes the current time into `ts`.
            unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
            ts.tv_sec = ts.tv_sec.saturating_add(TIMEOUT_SECS as _);
            // SAFETY: per the contract; `ts` is a valid absolute time.
            r = unsafe { libc::pthread_mutex_timedlock(m, &ts) };
        }
        match r {
            0 => Ok(false),
            libc::EOWNERDEAD => {
                // SAFETY: we hold `m` (EOWNERDEAD means the lock was acquired).
                check(unsafe { libc::pthread_mutex_consistent(m) })?;
                Ok(true)
            }
            libc::ETIMEDOUT => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "a stripe lock was held for more than 10 s (a process holding it is stopped, or \
                 the state file was copied while in use)",
            )),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Whether `m` is held (by anyone, dead or alive), without waiting. A mutex whose owner
    /// died is taken, made consistent and released again (it counts as held: the caller repairs
    /// what its owner left).
    ///
    /// # Safety
    /// As for [`lock`].
    pub unsafe fn probe(m: *mut libc::pthread_mutex_t) -> io::Result<bool> {
        // SAFETY: per the contract.
        match unsafe { libc::pthread_mutex_trylock(m) } {
            0 => {
                // SAFETY: we hold `m`.
                unsafe { libc::pthread_mutex_unlock(m) };
                Ok(false)
            }
            libc::EBUSY | libc::ENOTRECOVERABLE => Ok(true),
            libc::EOWNERDEAD => {
                // SAFETY: we hold `m` (EOWNERDEAD means the lock was acquired); releasing it
                // consistent keeps it usable and takes it off this thread's robust list.
                unsafe {
                    check(libc::pthread_mutex_consistent(m))?;
                    libc::pthread_mutex_unlock(m);
                }
                Ok(true)
            }
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Unlocks `m`.
    ///
    /// # Safety
    /// This thread holds `m` (locked by [`lock`]).
    pub unsafe fn unlock(m: *mut libc::pthread_mutex_t) {
        // SAFETY: per the contract.
        unsafe { libc::pthread_mutex_unlock(m) };
    }
}

/// Where robust process-shared mutexes are not available, every stripe's lock is the file's
/// `flock` (one lock for all stripes).
#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
mod mutex {
    pub const KIND: u32 = 0;
    pub const BYTES: u32 = 0;
}

/// What the lock bytes of a stripe block are (see the state header).
pub(super) const LOCK_KIND: u32 = mutex::KIND;
/// The size of one stripe lock (see the state header).
pub(super) const LOCK_BYTES: u32 = mutex::BYTES;

/// Holds one stripe lock until dropped. Not `Send`: a mutex is unlocked by the thread that
/// locked it.
pub(super) struct StripeGuard {
    /// Keeps the mapping that holds the mutex alive.
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    _map: Arc<Mapping>,
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    mutex: *mut libc::pthread_mutex_t,
    #[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
    _file: LockGuard,
    owner_died: bool,
    /// Not `Send`.
    _thread: core::marker::PhantomData<*const ()>,
}

impl StripeGuard {
    /// Whether the lock's previous holder died holding it.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
impl Drop for StripeGuard {
    fn drop(&mut self) {
        // SAFETY: the guard was made by `lock_stripe` on this thread (the guard is not `Send`)
        // for `mutex`, which the guard keeps mapped.
        unsafe { mutex::unlock(self.mutex) }
    }
}

/// All stripe locks of a state file, taken in stripe order.
pub(super) struct AllStripes {
    _guards: Vec<StripeGuard>,
}

/// Which tenant records and counters the engine sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// The state file itself: only while this process holds its lock.
    Shared,
    /// This process's private copy (tenants refreshed one by one under the seqlock).
    Shadow,
}

// ----- the storage --------------------------------------------------------------------------

/// Engine storage over a mapped policy image and a mapped shared state file.
///
/// The policy tables are the image's (mapped privately, used in place); the tenant records,
/// counters and audit rings are either the shared state file's or this process's private copy
/// of them. Obtained only through [`super::SharedEngine`] (and [`super::migrate`]), which decide
/// which one the engine sees under which lock; there is no public constructor.
pub struct MappedStorage {
    image: Mapping,
    /// Shared with the stripe guards, which must be able to unlock whatever happens to the
    /// storage.
    state: Arc<Mapping>,
    shadow: Mapping,
    img: ImageRegions,
    st: StateRegions,
    shadow_counters: Region,
    shadow_audit: Region,
    stride: usize,
    depth: usize,
    /// Audit slots per stripe journal.
    slots: usize,
    source: Cell<Source>,
}

// SAFETY: the storage owns its mappings (see `Mapping`); `Cell` keeps it `!Sync`, so one thread
// at a time uses it.
unsafe impl Send for MappedStorage {}

impl core::fmt::Debug for MappedStorage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MappedStorage")
            .field("image_bytes", &self.image.len())
            .field("state_bytes", &self.state.len())
            .field("source", &self.source.get())
            .finish()
    }
}

fn disjoint(a: (usize, usize), b: (usize, usize)) -> bool {
    a.1 <= b.0 || b.1 <= a.0
}

impl MappedStorage {
    /// Checks every region against its mapping (inside it, aligned, not overlapping another)
    /// and the lengths against `layout`; allocates the private copy.
    pub(super) fn new(
        image: Mapping,
        img: ImageRegions,
        state: Mapping,
        st: StateRegions,
        layout: &crate::Layout,
        stride: usize,
        depth: usize,
    ) -> Result<MappedStorage, &'static str> {
        let stripes = st.stripes.len;
        let slots = depth.min(super::format::JOURNAL_AUDIT_SLOTS);
        let image_ok = img.tenant_index.fits::<u32>(&image)
            && img.domains.fits::<DomainEntry>(&image)
            && img.connectors.fits::<ConnectorRecord>(&image)
            && img.connector_index.fits::<u32>(&image)
            && img.ranges.fits::<RangeEntry>(&image)
            && img.overrides.fits::<RuleSetRecord>(&image)
            && img.names.fits::<u8>(&image)
            && img.tenants.fits::<TenantRecord>(&image);
        if !image_ok {
            return Err("image tables outside the file or misaligned");
        }
        let spans = [
            (img.tenant_index.off, img.tenant_index.end::<u32>()),
            (img.domains.off, img.domains.end::<DomainEntry>()),
            (img.connectors.off, img.connectors.end::<ConnectorRecord>()),
            (img.connector_index.off, img.connector_index.end::<u32>()),
            (img.ranges.off, img.ranges.end::<RangeEntry>()),
            (img.overrides.off, img.overrides.end::<RuleSetRecord>()),
            (img.names.off, img.names.end::<u8>()),
            (img.tenants.off, img.tenants.end::<TenantRecord>()),
        ];
        let state_ok = st.tenants.fits::<TenantRecord>(&state)
            && st.counters.fits::<u32>(&state)
            && st.audit.fits::<Event>(&state)
            && st.seqs.fits::<u64>(&state)
            && st.stripes.fits::<StripeBlock>(&state)
            && st.journal_record.fits::<TenantRecord>(&state)
            && st.journal_cells.fits::<u32>(&state)
            && st.journal_audit.fits::<Event>(&state)
            && state.len() >= 4096;
        if !state_ok {
            return Err("state tables outside the file or misaligned");
        }
        let state_spans = [
            (0, 4096),
            (st.tenants.off, st.tenants.end::<TenantRecord>()),
            (st.counters.off, st.counters.end::<u32>()),
            (st.audit.off, st.audit.end::<Event>()),
            (st.seqs.off, st.seqs.end::<u64>()),
            (st.stripes.off, st.stripes.end::<StripeBlock>()),
            (
                st.journal_record.off,
                st.journal_record.end::<TenantRecord>(),
            ),
            (st.journal_cells.off, st.journal_cells.end::<u32>()),
            (st.journal_audit.off, st.journal_audit.end::<Event>()),
        ];
        for set in [&spans[..], &state_spans[..]] {
            for (i, a) in set.iter().enumerate() {
                if set[i + 1..].iter().any(|b| !disjoint(*a, *b)) {
                    return Err("tables overlap");
                }
            }
        }
        let lengths_ok = img.tenant_index.len == layout.tenant_index
            && img.domains.len == layout.domains
            && img.connectors.len == layout.connectors
            && img.connector_index.len == layout.connector_index
            && img.ranges.len == layout.ranges
            && img.overrides.len == layout.overrides
            && img.names.len == layout.names
            && img.tenants.len == layout.tenants
            && st.tenants.len == layout.tenants
            && st.counters.len == layout.counters
            && st.audit.len == layout.audit
            && st.seqs.len == layout.tenants
            && (1..=layout.tenants.max(1)).contains(&stripes)
            && st.journal_record.len == stripes
            && st.journal_cells.len == stripes.saturating_mul(stride)
            && layout.counters == layout.tenants.saturating_mul(stride)
            && layout.audit == layout.tenants.saturating_mul(depth)
            && st.journal_audit.len == stripes.saturating_mul(slots);
        if !lengths_ok {
            return Err("table lengths do not match the capacity");
        }
        let counters_bytes = layout.counters * size_of::<u32>();
        let audit_off = counters_bytes.next_multiple_of(64);
        let shadow_len = audit_off + layout.audit * size_of::<Event>();
        let shadow = Mapping::anonymous(shadow_len).map_err(|_| "cannot map private memory")?;
        Ok(MappedStorage {
            image,
            state: Arc::new(state),
            shadow,
            img,
            st,
            shadow_counters: Region {
                off: 0,
                len: layout.counters,
            },
            shadow_audit: Region {
                off: audit_off,
                len: layout.audit,
            },
            stride,
            depth,
            slots,
            source: Cell::new(Source::Shared),
        })
    }

    pub(super) fn set_source(&self, s: Source) {
        self.source.set(s);
    }

    pub(super) fn tenants(&self) -> usize {
        self.st.tenants.len
    }

    pub(super) fn sync(&self) -> io::Result<()> {
        self.state.sync()
    }

    /// Pointer to record `i` of region `r` of mapping `m` (not dereferenced here).
    fn at<T>(m: &Mapping, r: Region, i: usize) -> Option<*mut T> {
        (i < r.len).then(|| {
            m.base()
                .wrapping_add(r.off + i * size_of::<T>())
                .cast::<T>()
        })
    }

    /// A mutable 32-bit word of the state header.
    pub(super) fn header_u32(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && (2048..4096).contains(&off));
        let off = off.clamp(2048, 4092) & !3;
        // SAFETY: `off` is inside the header page of the state mapping (at least 4096 bytes,
        // checked in `new`), 4-aligned (page-aligned base); `AtomicU32` has the layout of `u32`;
        // every process accesses these words only atomically.
        unsafe { &*self.state.base().add(off).cast::<AtomicU32>() }
    }

    /// A mutable 64-bit word of the state header.
    pub(super) fn header_u64(&self, off: usize) -> &AtomicU64 {
        let off = off.clamp(2048, 4088) & !7;
        // SAFETY: as for `header_u32`, 8-aligned.
        unsafe { &*self.state.base().add(off).cast::<AtomicU64>() }
    }

    /// Tenant `t`'s sequence number.
    pub(super) fn seq(&self, t: u32) -> Option<&AtomicU64> {
        let p = Self::at::<u64>(&self.state, self.st.seqs, t as usize)?;
        // SAFETY: `p` is inside the seqs region (checked in `new`: inside the mapping, 8-aligned);
        // sequence numbers are only ever accessed atomically, by every process.
        Some(unsafe { &*p.cast::<AtomicU64>() })
    }

    /// Writes the superseding state file's path into the mutable header (before the flag).
    pub(super) fn write_superseded_by(&self, path: &[u8]) {
        let n = path.len().min(super::format::MAX_PATH);
        for (i, b) in path.iter().take(n).enumerate() {
            // SAFETY: inside the header page (MAX_PATH bytes from SUPERSEDED_BY end before 4096);
            // written only under every stripe lock (by `migrate`), read only after the flag was
            // seen.
            unsafe { ptr::write_volatile(self.state.base().add(header::SUPERSEDED_BY + i), *b) }
        }
        self.header_u32(header::SUPERSEDED_BY_LEN)
            .store(n as u32, core::sync::atomic::Ordering::Release);
    }

    /// The superseding state file's path, if recorded.
    pub(super) fn superseded_by(&self) -> Vec<u8> {
        let n = (self
            .header_u32(header::SUPERSEDED_BY_LEN)
            .load(core::sync::atomic::Ordering::Acquire) as usize)
            .min(super::format::MAX_PATH);
        (0..n)
            // SAFETY: inside the header page, see `write_superseded_by`.
            .map(|i| unsafe {
                ptr::read_volatile(self.state.base().add(header::SUPERSEDED_BY + i))
            })
            .collect()
    }

    /// Tenant `t`'s record in the state file, read with volatile reads (it may be changing: the
    /// caller validates the copy with the tenant's sequence number).
    pub(super) fn shared_record(&self, t: u32) -> Option<TenantRecord> {
        let p = Self::at::<TenantRecord>(&self.state, self.st.tenants, t as usize)?;
        // SAFETY: inside the tenants region (checked in `new`), aligned; any bit pattern is a
        // valid `TenantRecord`; a torn read is discarded by the caller.
        Some(unsafe { ptr::read_volatile(p) })
    }

    /// Tenant `t`'s record in the private copy.
    pub(super) fn shadow_record(&self, t: u32) -> Option<TenantRecord> {
        let p = Self::at::<TenantRecord>(&self.image, self.img.tenants, t as usize)?;
        // SAFETY: inside the image's private tenants region, aligned; only this process writes
        // it, and no reference into it is alive outside engine calls.
        Some(unsafe { ptr::read(p) })
    }

    /// The image's initial record of tenant `t` is the private copy's until refreshed; this
    /// replaces it.
    pub(super) fn set_shadow_record(&self, t: u32, rec: TenantRecord) {
        if let Some(p) = Self::at::<TenantRecord>(&self.image, self.img.tenants, t as usize) {
            // SAFETY: as for `shadow_record`; the mapping is private and writable.
            unsafe { ptr::write(p, rec) }
        }
    }

    /// Copies tenant `t`'s counter cells from the state file into the private copy, with
    /// volatile reads (validated by the caller).
    pub(super) fn copy_cells_to_shadow(&self, t: u32) {
        let base = t as usize * self.stride;
        for k in 0..self.stride {
            let (Some(src), Some(dst)) = (
                Self::at::<u32>(&self.state, self.st.counters, base + k),
                Self::at::<u32>(&self.shadow, self.shadow_counters, base + k),
            ) else {
                return;
            };
            // SAFETY: both inside their regions (checked in `new`), aligned; the source may be
            // changing (volatile, validated by the caller), the destination is private memory
            // with no live reference outside engine calls.
            unsafe { ptr::write(dst, ptr::read_volatile(src)) }
        }
    }

    /// The number of stripes.
    pub(super) fn stripes(&self) -> usize {
        self.st.stripes.len
    }

    /// The stripe of tenant `t`.
    pub(super) fn stripe_of(&self, t: u32) -> usize {
        t as usize % self.st.stripes.len.max(1)
    }

    fn stripe_word(&self, s: usize, off: usize) -> Option<*mut u8> {
        let p = Self::at::<StripeBlock>(&self.state, self.st.stripes, s)?;
        Some(p.cast::<u8>().wrapping_add(off))
    }

    /// A 32-bit word of stripe `s`'s block.
    pub(super) fn stripe_u32(&self, s: usize, off: usize) -> Option<&AtomicU32> {
        debug_assert!(off % 4 == 0 && off >= stripe::LOCK_MAX && off + 4 <= 128);
        let p = self.stripe_word(s, off.clamp(stripe::LOCK_MAX, 124) & !3)?;
        // SAFETY: inside stripe `s`'s block (checked in `new`: inside the mapping, 8-aligned),
        // past its lock bytes, 4-aligned; these words are only ever accessed atomically.
        Some(unsafe { &*p.cast::<AtomicU32>() })
    }

    /// A 64-bit word of stripe `s`'s block.
    pub(super) fn stripe_u64(&self, s: usize, off: usize) -> Option<&AtomicU64> {
        debug_assert!(off % 8 == 0 && off >= stripe::LOCK_MAX && off + 8 <= 128);
        let p = self.stripe_word(s, off.clamp(stripe::LOCK_MAX, 120) & !7)?;
        // SAFETY: as for `stripe_u32`, 8-aligned.
        Some(unsafe { &*p.cast::<AtomicU64>() })
    }

    /// Stripe `s`'s mutex (for `s` below [`Self::stripes`]: inside the mapping and 8-aligned,
    /// as checked in `new`). Not dereferenced here.
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    fn stripe_mutex(&self, s: usize) -> *mut libc::pthread_mutex_t {
        let off = self.st.stripes.off + s * size_of::<StripeBlock>() + stripe::LOCK;
        self.state.base().wrapping_add(off).cast()
    }

    /// Takes stripe `s`'s lock, waiting for it. `file` is the state file's `flock`, the
    /// stripe's lock where robust mutexes are not available.
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    pub(super) fn lock_stripe(
        &self,
        s: usize,
        file: &mut StateLock,
    ) -> Result<StripeGuard, SharedError> {
        if s >= self.st.stripes.len {
            return Err(SharedError::io(
                &file.path,
                "lock",
                io::Error::other("stripe out of range"),
            ));
        }
        let m = self.stripe_mutex(s);
        // SAFETY: `m` is stripe `s`'s mutex, inside the mapping and 8-aligned (checked in
        // `new`), initialized by `init_locks` (an engine locks stripes only after
        // `prepare_locks`: the locks were initialized, by an opener that was alone with the
        // file, before anyone used them); the guard keeps the mapping alive while it holds the
        // mutex.
        let died = unsafe { mutex::lock(m) }.map_err(|e| SharedError::io(&file.path, "lock", e))?;
        Ok(StripeGuard {
            _map: Arc::clone(&self.state),
            mutex: m,
            owner_died: died,
            _thread: core::marker::PhantomData,
        })
    }

    /// Takes stripe `s`'s lock, waiting for it: here the state file's `flock`.
    #[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
    pub(super) fn lock_stripe(
        &self,
        _s: usize,
        file: &mut StateLock,
    ) -> Result<StripeGuard, SharedError> {
        Ok(StripeGuard {
            _file: file.lock(true)?,
            owner_died: false,
            _thread: core::marker::PhantomData,
        })
    }

    /// Takes every stripe's lock, in stripe order (the only order in which a process ever holds
    /// more than one).
    pub(super) fn lock_all(&self, file: &mut StateLock) -> Result<AllStripes, SharedError> {
        let n = if LOCK_KIND == 0 { 1 } else { self.stripes() };
        let mut guards = Vec::with_capacity(n);
        for s in 0..n {
            guards.push(self.lock_stripe(s, file)?);
        }
        Ok(AllStripes { _guards: guards })
    }

    /// Whether stripe `s`'s lock is held, without waiting (see `mutex::probe`); always `false`
    /// where stripes share the file's `flock`.
    pub(super) fn probe_stripe(&self, s: usize) -> io::Result<bool> {
        if s >= self.st.stripes.len {
            return Err(io::Error::other("stripe out of range"));
        }
        #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
        {
            // SAFETY: as for `lock_stripe`.
            unsafe { mutex::probe(self.stripe_mutex(s)) }
        }
        #[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
        Ok(false)
    }

    /// Initializes every stripe's lock (unlocked). Only while no process can use them: under
    /// the file's exclusive `flock`, which no other engine holds shared (see
    /// `SharedEngine::prepare_locks`).
    pub(super) fn init_locks(&self) -> io::Result<()> {
        #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
        for s in 0..self.stripes() {
            // SAFETY: stripe `s`'s block is inside the mapping and 8-aligned (checked in `new`),
            // with `LOCK_MAX` bytes for the mutex; by the contract above nobody uses it.
            unsafe { mutex::init(self.stripe_mutex(s))? };
            if s == 0 {
                crash::point("reset:partial");
            }
        }
        Ok(())
    }

    /// Saves tenant `t`'s record, counter cells and the audit slots its next call may write
    /// into stripe `s`'s journal. Only under that stripe's lock.
    pub(super) fn journal_save(&self, s: usize, t: u32) {
        let (Some(rec), Some(jrec)) = (
            Self::at::<TenantRecord>(&self.state, self.st.tenants, t as usize),
            Self::at::<TenantRecord>(&self.state, self.st.journal_record, s),
        ) else {
            return;
        };
        // SAFETY: inside their regions (checked in `new`), aligned, not overlapping; no other
        // process writes this tenant or this journal while this one holds the stripe's lock,
        // and no reference into them is alive outside engine calls.
        let r = unsafe {
            ptr::write(jrec, ptr::read(rec));
            ptr::read(rec)
        };
        self.copy_cells(s, t, true);
        self.copy_audit(s, t, r.audit_written, true);
    }

    /// Puts tenant `t`'s before-image back from stripe `s`'s journal. Only under that stripe's
    /// lock.
    pub(super) fn journal_restore(&self, s: usize, t: u32) {
        let (Some(rec), Some(jrec)) = (
            Self::at::<TenantRecord>(&self.state, self.st.tenants, t as usize),
            Self::at::<TenantRecord>(&self.state, self.st.journal_record, s),
        ) else {
            return;
        };
        // SAFETY: as for `journal_save`.
        let r = unsafe {
            let r = ptr::read(jrec);
            ptr::write(rec, r);
            r
        };
        self.copy_cells(s, t, false);
        self.copy_audit(s, t, r.audit_written, false);
    }

    fn copy_cells(&self, s: usize, t: u32, save: bool) {
        let base = t as usize * self.stride;
        for k in 0..self.stride {
            let (Some(cell), Some(j)) = (
                Self::at::<u32>(&self.state, self.st.counters, base + k),
                Self::at::<u32>(&self.state, self.st.journal_cells, s * self.stride + k),
            ) else {
                return;
            };
            let (src, dst) = if save { (cell, j) } else { (j, cell) };
            // SAFETY: as for `journal_save`.
            unsafe { ptr::write(dst, ptr::read(src)) }
        }
    }

    fn copy_audit(&self, s: usize, t: u32, written: u32, save: bool) {
        let depth = self.depth.max(1);
        let base = t as usize * depth;
        for k in 0..self.slots {
            let slot = base + (written as usize + k) % depth;
            let (Some(a), Some(j)) = (
                Self::at::<Event>(&self.state, self.st.audit, slot),
                Self::at::<Event>(&self.state, self.st.journal_audit, s * self.slots + k),
            ) else {
                return;
            };
            let (src, dst) = if save { (a, j) } else { (j, a) };
            // SAFETY: as for `journal_save`.
            unsafe { ptr::write(dst, ptr::read(src)) }
        }
    }

    /// A view of region `r` of mapping `m`.
    ///
    /// # Safety
    /// `r` must be one of the regions `new` checked against `m` (inside it, aligned for `T`).
    /// `T` is plain integers, so any bytes are a valid `T`.
    unsafe fn view<T>(m: &Mapping, r: Region) -> &[T] {
        // SAFETY: by the caller's contract the region is inside the mapping and aligned; the
        // slice borrows the mapping, which owns the memory.
        unsafe { core::slice::from_raw_parts(m.base().add(r.off).cast::<T>(), r.len) }
    }

    /// A mutable view of region `r` of mapping `m`.
    ///
    /// # Safety
    /// As for [`Self::view`]; besides, the caller holds `&mut` of the storage and creates at
    /// most one view per region (regions do not overlap, checked in `new`), so the views are
    /// unique for that borrow.
    #[allow(clippy::mut_from_ref)]
    unsafe fn view_mut<T>(m: &Mapping, r: Region) -> &mut [T] {
        // SAFETY: by the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(m.base().add(r.off).cast::<T>(), r.len) }
    }
}

impl Storage for MappedStorage {
    fn parts(&self) -> Parts<'_> {
        let (im, st, sh) = (&self.image, &self.state, &self.shadow);
        // SAFETY: every region passed is the one `new` checked against that mapping.
        unsafe {
            let (tenants, counters, audit) = match self.source.get() {
                Source::Shared => (
                    Self::view(st, self.st.tenants),
                    Self::view(st, self.st.counters),
                    Self::view(st, self.st.audit),
                ),
                Source::Shadow => (
                    Self::view(im, self.img.tenants),
                    Self::view(sh, self.shadow_counters),
                    Self::view(sh, self.shadow_audit),
                ),
            };
            Parts {
                tenants,
                tenant_index: Self::view(im, self.img.tenant_index),
                domains: Self::view(im, self.img.domains),
                connectors: Self::view(im, self.img.connectors),
                connector_index: Self::view(im, self.img.connector_index),
                ranges: Self::view(im, self.img.ranges),
                overrides: Self::view(im, self.img.overrides),
                counters,
                audit,
                names: Self::view(im, self.img.names),
            }
        }
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let (im, st, sh) = (&self.image, &self.state, &self.shadow);
        // SAFETY: every region passed is the one `new` checked against that mapping; `&mut self`
        // is held for the views' lifetime and each region is viewed once (the shadow's tenants
        // region and the policy tables do not overlap, checked in `new`).
        unsafe {
            let (tenants, counters, audit) = match self.source.get() {
                Source::Shared => (
                    Self::view_mut(st, self.st.tenants),
                    Self::view_mut(st, self.st.counters),
                    Self::view_mut(st, self.st.audit),
                ),
                Source::Shadow => (
                    Self::view_mut(im, self.img.tenants),
                    Self::view_mut(sh, self.shadow_counters),
                    Self::view_mut(sh, self.shadow_audit),
                ),
            };
            PartsMut {
                tenants,
                tenant_index: Self::view_mut(im, self.img.tenant_index),
                domains: Self::view_mut(im, self.img.domains),
                connectors: Self::view_mut(im, self.img.connectors),
                connector_index: Self::view_mut(im, self.img.connector_index),
                ranges: Self::view_mut(im, self.img.ranges),
                overrides: Self::view_mut(im, self.img.overrides),
                counters,
                audit,
                names: Self::view_mut(im, self.img.names),
            }
        }
    }
}

// ----- huge pages ----------------------------------------------------------------------------

/// Asks the kernel to back a fresh (not yet touched) allocation with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`): with tables of hundreds of megabytes, every random lookup is
/// otherwise a TLB miss on top of a cache miss. Best effort: where the kernel says no (THP
/// disabled), nothing changes. Only whole 2 MiB pages inside the range are advised.
pub(crate) fn advise_huge_pages(start: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < HUGE {
        return;
    }
    let s = (start as usize).div_ceil(HUGE) * HUGE;
    let e = (start as usize).saturating_add(len) / HUGE * HUGE;
    if e > s {
        // SAFETY: [s, e) lies inside the live allocation [start, start + len) the caller owns;
        // MADV_HUGEPAGE changes how the kernel backs those pages, never their contents.
        unsafe { libc::madvise(s as *mut libc::c_void, e - s, libc::MADV_HUGEPAGE) };
    }
}
