//! [`SharedEngine`]: the engine over a mapped image and a shared state file, with the stripe
//! locks, their undo journals and the per-tenant seqlock (see the module documentation); and
//! [`migrate`].

use core::sync::atomic::{fence, Ordering};
use std::fs;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use super::format::{
    self, open_image, open_state, sync_dir, temp_sibling, write_state_file, ImageFile, StateFile,
    StateInfo,
};
use super::sys::{
    crash, header, stripe, AllStripes, MappedStorage, Source, StateLock, StripeGuard,
};
use super::{FileKind, SharedError};
use crate::storage::{
    TenantRecord, RULE_BLOCKED, RULE_MANUAL, RULE_WARNED, TENANT_LAPSED, TENANT_LAPSED_BY_POLICY,
    TENANT_LICENSED, TENANT_USED,
};
use crate::{
    Capacity, Decision, Engine, Error, Event, Events, Message, Restriction, Rule, TenantId,
    TenantStatus, Verdict,
};

/// Optimistic reads of a tenant before falling back to the lock.
const SPINS: u32 = 200;
/// Superseded state files followed in a row.
const MAX_HOPS: u32 = 8;
/// The lock epoch of a process that cannot read the kernel's boot id.
const EPOCH_UNKNOWN: u64 = 1;

/// This boot's lock epoch: a hash of the kernel's boot id (the same in every process and
/// container of one kernel, new at every boot), or `EPOCH_UNKNOWN` where it cannot be read (no
/// `/proc`, not Linux).
fn boot_epoch() -> u64 {
    static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        match fs::read("/proc/sys/kernel/random/boot_id") {
            Ok(id) if id.len() >= 32 => {
                // Never 0 (uninitialized) nor EPOCH_UNKNOWN.
                crate::hash::hash_bytes(0x6f67_6c6f_636b_7321, id.trim_ascii()).max(2)
            }
            _ => EPOCH_UNKNOWN,
        }
    })
}

/// An engine over a compiled policy image and a shared state file (see the module
/// documentation): one per process (or per thread), all of them sharing the counters.
///
/// Every method takes `&mut self`: one thread uses a `SharedEngine` at a time (wrap it in a
/// mutex to share it between threads). Processes, forked or not, each open their own or inherit
/// one across `fork` (the lock is reopened in the child).
pub struct SharedEngine {
    engine: Engine<MappedStorage>,
    lock: StateLock,
    image_path: PathBuf,
    state_path: PathBuf,
    image_id: u64,
    /// Per tenant: 1 + the sequence number at which this process's private copy was taken
    /// (0: never).
    synced: Vec<u64>,
    /// Incremented each time the engine follows a superseded state file.
    epoch: u64,
}

impl core::fmt::Debug for SharedEngine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedEngine")
            .field("image", &self.image_path)
            .field("state", &self.state_path)
            .field("image_id", &format_args!("{:016x}", self.image_id))
            .finish()
    }
}

/// What a [`SharedEngine`] has open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedInfo {
    /// The policy image.
    pub image_path: PathBuf,
    /// The state file.
    pub state_path: PathBuf,
    /// The image id.
    pub image_id: u64,
    /// The capacity of the image's tables.
    pub capacity: Capacity,
    /// Writes committed to the state file since it was created (all processes).
    pub writes: u64,
    /// Writes rolled back because their process died before committing (all processes).
    pub recoveries: u64,
}

/// What [`migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    /// The new state file.
    pub state: StateInfo,
    /// Tenants whose counters, blocks and audit trail were carried over.
    pub carried: u32,
    /// Tenants of the old image that the new one does not have (their state is dropped).
    pub removed: Vec<String>,
    /// Tenants new in the new image.
    pub added: Vec<String>,
}

fn check_record(rec: &TenantRecord, image: &TenantRecord) -> Result<(), &'static str> {
    if rec.id_off != image.id_off
        || rec.id_len != image.id_len
        || rec.overrides != image.overrides
        || rec.flags & TENANT_USED != image.flags & TENANT_USED
    {
        return Err("identity differs from the policy image");
    }
    if rec.flags & !(TENANT_USED | TENANT_LICENSED | TENANT_LAPSED | TENANT_LAPSED_BY_POLICY) != 0 {
        return Err("unknown tenant flags");
    }
    if rec
        .rules
        .iter()
        .any(|r| r.flags & !(RULE_BLOCKED | RULE_MANUAL | RULE_WARNED) != 0)
    {
        return Err("unknown rule flags");
    }
    Ok(())
}

impl SharedEngine {
    /// Opens a policy image and a state file that belongs to it. Checks both headers (see the
    /// module documentation on verification); refuses a state file of another image, a damaged
    /// or truncated one, or one superseded by a migration.
    pub fn open(image_path: &Path, state_path: &Path) -> Result<SharedEngine, SharedError> {
        let image = open_image(image_path)?;
        let state = open_state(state_path, &image)?;
        SharedEngine::assemble(image, state)
    }

    /// Opens a state file with the image recorded in its header (the image it was created or
    /// migrated for). After a reload the pair is always consistent this way, so servers that
    /// name only the state file need no configuration change.
    pub fn open_state(state_path: &Path) -> Result<SharedEngine, SharedError> {
        let h = format::read_state_header(state_path)?;
        let image = open_image(&h.image_path)?;
        let state = open_state(state_path, &image)?;
        SharedEngine::assemble(image, state)
    }

    /// Opens the state file, creating it from the image first when it does not exist (see
    /// [`super::create_state`]; of processes racing to create it, one wins and all open it).
    pub fn open_or_create(
        image_path: &Path,
        state_path: &Path,
    ) -> Result<SharedEngine, SharedError> {
        if fs::symlink_metadata(state_path).is_err() {
            match super::create_state(image_path, state_path) {
                Ok(_) | Err(SharedError::Exists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        SharedEngine::open(image_path, state_path)
    }

    fn assemble(image: ImageFile, state: StateFile) -> Result<SharedEngine, SharedError> {
        let mut e = SharedEngine::assemble_unprepared(image, state)?;
        e.prepare_locks()?;
        Ok(e)
    }

    /// The engine over an opened pair, before the stripe locks are made usable (see
    /// `prepare_locks`): nothing may lock a stripe yet.
    fn assemble_unprepared(
        image: ImageFile,
        state: StateFile,
    ) -> Result<SharedEngine, SharedError> {
        let cap = image.meta.capacity;
        let layout = cap.layout();
        let storage = MappedStorage::new(
            image.map,
            image.regions,
            state.map,
            state.header.regions,
            &layout,
            cap.counter_stride(),
            cap.audit_depth as usize,
        )
        .map_err(|detail| SharedError::CorruptHeader {
            path: state.path.clone(),
            kind: FileKind::State,
            detail,
        })?;
        let engine = Engine::from_parts(storage, image.meta)?;
        engine.storage().set_source(Source::Shadow);
        let e = SharedEngine {
            engine,
            lock: StateLock::new(state.file, &state.path),
            image_path: image.path,
            state_path: state.path,
            image_id: image.id,
            synced: vec![0; layout.tenants],
            epoch: 0,
        };
        e.check_stripes()?;
        Ok(e)
    }

    /// Checks the stripes' journal words (a journal that is active names a tenant of its
    /// stripe).
    fn check_stripes(&self) -> Result<(), SharedError> {
        for s in 0..self.st().stripes() {
            self.journal_of(s)?;
        }
        Ok(())
    }

    /// Stripe `s`'s journal: the tenant whose before-image it holds while a write is in
    /// progress (or was, when its writer died), `None` when idle.
    fn journal_of(&self, s: usize) -> Result<Option<u32>, SharedError> {
        let st = self.st();
        let corrupt = |detail| SharedError::CorruptHeader {
            path: self.state_path.clone(),
            kind: FileKind::State,
            detail,
        };
        let (Some(state), Some(tenant)) = (
            st.stripe_u32(s, stripe::JOURNAL_STATE),
            st.stripe_u32(s, stripe::JOURNAL_TENANT),
        ) else {
            return Err(corrupt("stripe out of range"));
        };
        match state.load(Ordering::Acquire) {
            0 => Ok(None),
            1 => {
                let t = tenant.load(Ordering::Relaxed);
                if (t as usize) < st.tenants() && st.stripe_of(t) == s {
                    Ok(Some(t))
                } else {
                    Err(corrupt(
                        "a stripe's journal names a tenant outside the stripe",
                    ))
                }
            }
            _ => Err(corrupt("a stripe's journal flag")),
        }
    }

    /// Makes the stripe locks usable, and registers this engine as a user of the file.
    ///
    /// The locks are process-shared mutexes in the file. A mutex held by a process that is gone
    /// without the kernel marking it (the machine went down, the file was copied while in use,
    /// a process lost its robust list) stays "held" in the file forever, and must be
    /// reinitialized, but never while any process may hold or wait for it. So every engine
    /// holds the file's `flock` *shared* for as long as it is open (on its own open file
    /// description; a forked child shares its parent's), and an opener that can take it
    /// *exclusively* without waiting has proved that no other engine has the file open: it
    /// rolls back every unfinished write, publishes every committed one, initializes all locks
    /// and records the boot (`LOCK_EPOCH`, cleared first so that a reset killed half way is
    /// done again), then turns its lock into a shared one. An opener that cannot takes the
    /// lock shared (waiting for a reset in progress) and uses the locks as they are.
    ///
    /// Where stripe locks are the `flock` itself, nothing in the file outlives a process: the
    /// first opener of a boot rolls back unfinished writes under the exclusive lock.
    fn prepare_locks(&mut self) -> Result<(), SharedError> {
        if super::sys::LOCK_KIND == 0 {
            return self.prepare_flock();
        }
        let start = std::time::Instant::now();
        loop {
            if self.lock.try_exclusive()? {
                let reset = self.reset_locks(false);
                crash::point("reset:done");
                reset?;
                return self.lock.share();
            }
            self.lock.share()?;
            if self
                .st()
                .header_u64(header::LOCK_EPOCH)
                .load(Ordering::Acquire)
                != 0
            {
                return Ok(());
            }
            // The locks were never initialized, or a reset was killed half way: whoever is
            // alone next does it. Everyone who meets this lets go and tries again.
            self.lock.unlock();
            if start.elapsed() > std::time::Duration::from_secs(10) {
                return Err(SharedError::io(
                    &self.state_path,
                    "initialize locks",
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the stripe locks stayed uninitialized for 10 s",
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Only while no other engine has the file open (its `flock` held exclusively): rolls back
    /// every unfinished write, makes every sequence number even (every tenant's with `all`, or
    /// when the boot changed; otherwise those of the tenants the journals name, the only ones a
    /// dead writer can have left odd), initializes every stripe lock and records the boot.
    fn reset_locks(&mut self, all: bool) -> Result<(), SharedError> {
        let epoch = boot_epoch();
        let word = self.st().header_u64(header::LOCK_EPOCH);
        let all = all || word.load(Ordering::Acquire) != epoch;
        word.store(0, Ordering::Release);
        crash::point("reset:started");
        for s in 0..self.st().stripes() {
            self.recover_stripe(s)?;
        }
        if all {
            for t in 0..self.st().tenants() as u32 {
                self.repair_seq(t);
            }
        } else {
            for s in 0..self.st().stripes() {
                self.repair_journal_seq(s);
            }
        }
        self.st()
            .init_locks()
            .map_err(|e| SharedError::io(&self.state_path, "initialize locks", e))?;
        fence(Ordering::SeqCst);
        self.st()
            .header_u64(header::LOCK_EPOCH)
            .store(epoch, Ordering::Release);
        Ok(())
    }

    /// `prepare_locks` where stripe locks are the file's `flock`: the first opener of a boot
    /// rolls back unfinished writes under it (as every writer does anyway).
    fn prepare_flock(&mut self) -> Result<(), SharedError> {
        let epoch = boot_epoch();
        let word = |e: &SharedEngine| {
            e.st()
                .header_u64(header::LOCK_EPOCH)
                .load(Ordering::Acquire)
        };
        if word(self) == epoch {
            return Ok(());
        }
        let _g = self.lock.lock(true)?;
        if word(self) == epoch {
            return Ok(());
        }
        self.reset_locks(true)
    }

    fn st(&self) -> &MappedStorage {
        self.engine.storage()
    }

    // ----- superseded files ---------------------------------------------------------------

    /// Whether the file was superseded by a migration (not counting one still pending).
    fn superseded(&self) -> bool {
        self.st()
            .header_u32(header::SUPERSEDED)
            .load(Ordering::Acquire)
            == 1
    }

    /// `superseded`, under at least one stripe lock, settling a pending migration first.
    /// A migration marks the file pending (with the new file's path and inode) before it
    /// renames the new file into place, and superseded after, holding every stripe lock all
    /// along; so a stripe lock holder that finds the file pending knows the migration died in
    /// between, and finishes it (the new file is in place: superseded) or undoes it (it is not:
    /// the file stays current). Holders of different stripes may settle at once: the first
    /// decision wins.
    fn settle_superseded(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let st = self.st();
        let w = st.header_u32(header::SUPERSEDED);
        if w.load(Ordering::Acquire) == 2 {
            let by = st.superseded_by();
            let (dev, ino) = (
                st.header_u64(header::MIGRATE_DEV).load(Ordering::Acquire),
                st.header_u64(header::MIGRATE_INO).load(Ordering::Acquire),
            );
            let renamed = !by.is_empty()
                && fs::metadata(std::ffi::OsStr::from_bytes(&by))
                    .is_ok_and(|m| m.dev() == dev && m.ino() == ino);
            let _ = w.compare_exchange(2, u32::from(renamed), Ordering::AcqRel, Ordering::Acquire);
        }
        w.load(Ordering::Acquire) == 1
    }

    fn ensure_current(&mut self) -> Result<(), SharedError> {
        if self.superseded() {
            self.follow()?;
        }
        Ok(())
    }

    /// Reopens the state file that superseded this one, with the image it names.
    fn follow(&mut self) -> Result<(), SharedError> {
        use std::os::unix::ffi::OsStrExt;
        let by = self.st().superseded_by();
        let mut next = if by.is_empty() {
            self.state_path.clone()
        } else {
            PathBuf::from(std::ffi::OsStr::from_bytes(&by))
        };
        for _ in 0..MAX_HOPS {
            match SharedEngine::open_state(&next) {
                Ok(fresh) => {
                    let epoch = self.epoch + 1;
                    *self = fresh;
                    self.epoch = epoch;
                    return Ok(());
                }
                Err(SharedError::Superseded { by: Some(p), .. }) => next = p,
                Err(e) => return Err(e),
            }
        }
        Err(SharedError::Superseded {
            path: self.state_path.clone(),
            by: Some(next),
        })
    }

    // ----- locks and the journals ---------------------------------------------------------

    /// Takes the lock of tenant `t`'s stripe in the current state file and rolls back a write
    /// of that stripe whose process died. `None` when the file turned out to be superseded: the
    /// engine followed it, and the caller starts again (tenant indexes differ between files).
    fn lock_tenant(&mut self, t: u32) -> Result<Option<StripeGuard>, SharedError> {
        let s = self.st().stripe_of(t);
        let g = self.engine.storage().lock_stripe(s, &mut self.lock)?;
        if self.settle_superseded() {
            drop(g);
            self.follow()?;
            return Ok(None);
        }
        self.recover_stripe(s)?;
        if g.owner_died() {
            // The holder died outside the journaled part of a write: perhaps after committing
            // but before publishing, which leaves its tenant's sequence number odd over complete
            // data.
            self.repair_journal_seq(s);
        }
        Ok(Some(g))
    }

    /// Takes every stripe's lock on the current state file and rolls back every write whose
    /// process died.
    fn lock_all(&mut self) -> Result<AllStripes, SharedError> {
        for _ in 0..=MAX_HOPS {
            self.ensure_current()?;
            let g = self.engine.storage().lock_all(&mut self.lock)?;
            if self.settle_superseded() {
                drop(g);
                self.follow()?;
                continue;
            }
            for s in 0..self.st().stripes() {
                self.recover_stripe(s)?;
            }
            return Ok(g);
        }
        Err(self.too_many_hops())
    }

    fn too_many_hops(&self) -> SharedError {
        SharedError::Superseded {
            path: self.state_path.clone(),
            by: None,
        }
    }

    /// Under stripe `s`'s lock (or while nobody uses the locks): puts back the before-image of
    /// a write of the stripe whose process died. A write in progress always has its journal
    /// marked, and a live writer clears the mark before it unlocks: a marked journal found by
    /// the lock's new holder belongs to a writer that died.
    fn recover_stripe(&mut self, s: usize) -> Result<(), SharedError> {
        let Some(t) = self.journal_of(s)? else {
            return Ok(());
        };
        let st = self.engine.storage();
        let Some(seq) = st.seq(t) else {
            return Err(self.corrupt(t, "record outside the file"));
        };
        let odd = seq.load(Ordering::Relaxed) | 1;
        seq.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        crash::point("recover:odd");
        st.journal_restore(s, t);
        fence(Ordering::SeqCst);
        crash::point("recover:restored");
        if let Some(w) = st.stripe_u32(s, stripe::JOURNAL_STATE) {
            w.store(0, Ordering::Release);
        }
        crash::point("recover:cleared");
        seq.store(odd.wrapping_add(1), Ordering::Release);
        if let Some(r) = st.stripe_u64(s, stripe::RECOVERIES) {
            r.store(r.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
        if let Some(x) = self.synced.get_mut(t as usize) {
            *x = 0;
        }
        Ok(())
    }

    /// Under the lock of `t`'s stripe, after `recover_stripe`: a writer that died after
    /// committing but before publishing leaves an odd sequence number over complete data.
    fn repair_seq(&self, t: u32) {
        if let Some(seq) = self.st().seq(t) {
            let s = seq.load(Ordering::Relaxed);
            if s & 1 == 1 {
                seq.store(s.wrapping_add(1), Ordering::Release);
            }
        }
    }

    /// Under stripe `s`'s lock (or while nobody uses the locks): `repair_seq` for the tenant
    /// the stripe's journal names last, the only tenant of the stripe whose sequence number a
    /// writer (or a recovery) that died can have left odd.
    fn repair_journal_seq(&self, s: usize) {
        if let Some(t) = self
            .st()
            .stripe_u32(s, stripe::JOURNAL_TENANT)
            .map(|w| w.load(Ordering::Relaxed))
            .filter(|&t| (t as usize) < self.st().tenants() && self.st().stripe_of(t) == s)
        {
            self.repair_seq(t);
        }
    }

    fn corrupt(&self, t: u32, detail: &'static str) -> SharedError {
        SharedError::CorruptState {
            path: self.state_path.clone(),
            tenant: t,
            detail,
        }
    }

    /// Checks tenant `t`'s record in the state file against the image (`verify_state`,
    /// `repair_state`).
    fn check_tenant(&self, t: u32) -> Result<(), SharedError> {
        let st = self.st();
        let (Some(rec), Some(image)) = (st.shared_record(t), st.shadow_record(t)) else {
            return Err(self.corrupt(t, "record outside the file"));
        };
        check_record(&rec, &image).map_err(|d| self.corrupt(t, d))
    }

    /// Runs `op` (which changes only tenant `t`'s record, counters and audit ring) as one
    /// atomic write. The caller holds the lock of `t`'s stripe (`lock_tenant`).
    fn write_tenant<R>(
        &mut self,
        t: u32,
        op: impl FnOnce(&mut Engine<MappedStorage>) -> R,
    ) -> Result<R, SharedError> {
        let st = self.engine.storage();
        let (Some(rec), Some(image)) = (st.shared_record(t), st.shadow_record(t)) else {
            return Err(SharedError::Engine(Error::UnknownTenant));
        };
        check_record(&rec, &image).map_err(|d| self.corrupt(t, d))?;
        let s = st.stripe_of(t);
        let (Some(jstate), Some(jtenant), Some(seq)) = (
            st.stripe_u32(s, stripe::JOURNAL_STATE),
            st.stripe_u32(s, stripe::JOURNAL_TENANT),
            st.seq(t),
        ) else {
            return Err(SharedError::Engine(Error::UnknownTenant));
        };
        // 1. Before-image into the stripe's journal, then mark it active.
        st.journal_save(s, t);
        jtenant.store(t, Ordering::Relaxed);
        jstate.store(1, Ordering::Release);
        fence(Ordering::SeqCst);
        crash::point("write:journaled");
        // 2. Readers of this tenant wait from now on.
        let odd = seq.load(Ordering::Relaxed) | 1;
        seq.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        crash::point("write:odd");
        st.set_source(Source::Shared);
        // 3. The engine call.
        let r = op(&mut self.engine);
        let st = self.engine.storage();
        fence(Ordering::SeqCst);
        crash::point("write:applied");
        // 4. Commit: from here on the write survives the death of this process.
        if let Some(w) = st.stripe_u32(s, stripe::JOURNAL_STATE) {
            w.store(0, Ordering::Release);
        }
        crash::point("write:committed");
        // 5. Publish to readers.
        let now_seq = odd.wrapping_add(1);
        if let Some(seq) = st.seq(t) {
            seq.store(now_seq, Ordering::Release);
        }
        crash::point("write:published");
        if let Some(w) = st.stripe_u64(s, stripe::WRITES) {
            w.store(w.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
        // This process's private copy of the tenant is current (no writer but us right now).
        if let Some(rec) = st.shared_record(t) {
            st.copy_cells_to_shadow(t);
            st.set_shadow_record(t, rec);
            if let Some(x) = self.synced.get_mut(t as usize) {
                *x = now_seq.wrapping_add(1);
            }
        }
        st.set_source(Source::Shadow);
        Ok(r)
    }

    // ----- the private copy (lock-free reads) -----------------------------------------------

    fn is_fresh(&self, t: u32) -> bool {
        let Some(seq) = self.st().seq(t) else {
            return false;
        };
        let s = seq.load(Ordering::Acquire);
        s & 1 == 0 && self.synced.get(t as usize) == Some(&s.wrapping_add(1))
    }

    /// Takes a private copy of tenant `t` validated by its sequence number.
    fn accept_copy(&mut self, t: u32, rec: TenantRecord, seq: u64) -> Result<(), SharedError> {
        let st = self.engine.storage();
        let image = st
            .shadow_record(t)
            .ok_or(SharedError::Engine(Error::UnknownTenant))?;
        check_record(&rec, &image).map_err(|d| self.corrupt(t, d))?;
        st.set_shadow_record(t, rec);
        if let Some(s) = self.synced.get_mut(t as usize) {
            *s = seq.wrapping_add(1);
        }
        Ok(())
    }

    /// Refreshes the private copy of tenant `t`. May follow a superseded file (check `epoch`).
    fn refresh(&mut self, t: u32) -> Result<(), SharedError> {
        if let Some(s) = self.synced.get_mut(t as usize) {
            *s = 0;
        }
        for i in 0..SPINS {
            let st = self.engine.storage();
            let seq = st.seq(t).ok_or(SharedError::Engine(Error::UnknownTenant))?;
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let rec = st
                    .shared_record(t)
                    .ok_or(SharedError::Engine(Error::UnknownTenant))?;
                st.copy_cells_to_shadow(t);
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == s1 {
                    return self.accept_copy(t, rec, s1);
                }
            }
            if i < 32 {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // A writer holds the tenant (wait for it), or one died holding it (repair), or the
        // state file was superseded (the caller sees the epoch change and starts again).
        let Some(_g) = self.lock_tenant(t)? else {
            return Ok(());
        };
        self.repair_seq(t);
        let st = self.engine.storage();
        let s = st
            .seq(t)
            .ok_or(SharedError::Engine(Error::UnknownTenant))?
            .load(Ordering::Acquire);
        let rec = st
            .shared_record(t)
            .ok_or(SharedError::Engine(Error::UnknownTenant))?;
        st.copy_cells_to_shadow(t);
        self.accept_copy(t, rec, s)
    }

    // ----- decisions ----------------------------------------------------------------------

    /// Decides one message (see [`Engine::check`]); counts nothing. Takes no lock: the tenant's
    /// state is read from this process's private copy, refreshed when another process changed
    /// it. Errors only when the state file is damaged or a superseding file cannot be opened.
    pub fn check(&mut self, now: u64, msg: &Message<'_>) -> Result<Decision, SharedError> {
        for _ in 0..=MAX_HOPS {
            self.ensure_current()?;
            let epoch = self.epoch;
            self.st().set_source(Source::Shadow);
            let d = self.engine.check(now, msg);
            let Some(t) = d.tenant else {
                return Ok(d);
            };
            if self.is_fresh(t.0) {
                return Ok(d);
            }
            self.refresh(t.0)?;
            if self.epoch != epoch {
                continue;
            }
            self.st().set_source(Source::Shadow);
            return Ok(self.engine.check(now, msg));
        }
        Err(self.too_many_hops())
    }

    /// The tenant a message belongs to (policy data and tenant identity: no lock), or the
    /// error `record` gives for it.
    fn tenant_of(&self, msg: &Message<'_>) -> Result<u32, SharedError> {
        self.st().set_source(Source::Shadow);
        self.engine.tenant_of(msg).map_err(SharedError::Engine)
    }

    /// Counts a message that was accepted and scanned (see [`Engine::record`]) in the shared
    /// state, under the lock of the tenant's stripe, as one atomic write: when this returns
    /// `Ok`, the count is committed, whatever happens to the process next. Processes recording
    /// for tenants of different stripes do not wait for each other.
    pub fn record(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        verdict: Verdict,
    ) -> Result<Events, SharedError> {
        for _ in 0..=MAX_HOPS {
            self.ensure_current()?;
            let t = self.tenant_of(msg)?;
            let Some(_g) = self.lock_tenant(t)? else {
                continue;
            };
            return self
                .write_tenant(t, |e| e.record(now, msg, verdict))?
                .map_err(SharedError::Engine);
        }
        Err(self.too_many_hops())
    }

    /// `check`, then `record` when the message is accepted (see [`Engine::evaluate`]), both
    /// under the lock of the tenant's stripe, so no other process counts for it in between.
    pub fn evaluate(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        verdict: Verdict,
    ) -> Result<(Decision, Events), SharedError> {
        for _ in 0..=MAX_HOPS {
            self.ensure_current()?;
            // The tenant picks the stripe to lock; the decision is made under the lock.
            let Ok(t) = self.tenant_of(msg) else {
                // No tenant: the decision depends on the policy alone.
                return Ok((self.engine.check(now, msg), Events::new()));
            };
            let Some(_g) = self.lock_tenant(t)? else {
                continue;
            };
            self.st().set_source(Source::Shared);
            let d = self.engine.check(now, msg);
            self.st().set_source(Source::Shadow);
            if d.tenant != Some(TenantId(t)) {
                // Attribution depends on the policy and the tenants' identity, which the
                // shared records share with the image; never expected, but never count for a
                // tenant whose stripe is not held.
                return Err(self.corrupt(t, "attributed differently in the state file"));
            }
            if !d.accepted() {
                return Ok((d, Events::new()));
            }
            let events = self.write_tenant(t, |e| e.record_accepted(now, &d, msg, verdict))?;
            return Ok((d, events));
        }
        Err(self.too_many_hops())
    }

    // ----- operator actions ---------------------------------------------------------------

    fn tenant_write<R>(
        &mut self,
        tenant: &str,
        op: impl Fn(&mut Engine<MappedStorage>, TenantId) -> Result<R, Error>,
    ) -> Result<R, SharedError> {
        for _ in 0..=MAX_HOPS {
            self.ensure_current()?;
            let t = self
                .tenant(tenant)
                .ok_or(SharedError::Engine(Error::UnknownTenant))?;
            let Some(_g) = self.lock_tenant(t.0)? else {
                continue;
            };
            return self
                .write_tenant(t.0, |e| op(e, t))?
                .map_err(SharedError::Engine);
        }
        Err(self.too_many_hops())
    }

    /// Releases a tenant's block (see [`Engine::release`]) in the shared state.
    pub fn release(
        &mut self,
        tenant: &str,
        rule: Option<Rule>,
        now: u64,
    ) -> Result<Events, SharedError> {
        self.tenant_write(tenant, |e, t| e.release(t, rule, now))
    }

    /// Marks a tenant's subscription lapsed (see [`Engine::mark_lapsed`]) in the shared state.
    pub fn mark_lapsed(&mut self, tenant: &str, now: u64) -> Result<Events, SharedError> {
        self.tenant_write(tenant, |e, t| e.mark_lapsed(t, now))
    }

    /// Marks a lapsed tenant active again (see [`Engine::mark_active`]) in the shared state.
    pub fn mark_active(&mut self, tenant: &str, now: u64) -> Result<Events, SharedError> {
        self.tenant_write(tenant, |e, t| e.mark_active(t, now))
    }

    /// Marks a tenant licensed or not (see [`Engine::set_licensed`]) in the shared state.
    pub fn set_licensed(&mut self, tenant: &str, licensed: bool) -> Result<(), SharedError> {
        self.tenant_write(tenant, |e, t| e.set_licensed(t, licensed))
    }

    // ----- queries ------------------------------------------------------------------------

    /// A tenant's state at `now` (see [`Engine::status`]); lock-free like `check`.
    pub fn status(&mut self, tenant: &str, now: u64) -> Result<TenantStatus, SharedError> {
        for _ in 0..=MAX_HOPS {
            self.ensure_current()?;
            let epoch = self.epoch;
            self.st().set_source(Source::Shadow);
            let t = self
                .engine
                .tenant(tenant)
                .ok_or(SharedError::Engine(Error::UnknownTenant))?;
            if !self.is_fresh(t.0) {
                self.refresh(t.0)?;
                if self.epoch != epoch {
                    continue;
                }
            }
            self.st().set_source(Source::Shadow);
            return self.engine.status(t, now).map_err(SharedError::Engine);
        }
        Err(self.too_many_hops())
    }

    /// Every tenant refused at `now` (see [`Engine::restricted`]), read under every stripe's
    /// lock.
    pub fn restricted(&mut self, now: u64) -> Result<Vec<Restriction>, SharedError> {
        let _g = self.lock_all()?;
        self.st().set_source(Source::Shared);
        let out = self.engine.restricted(now).collect();
        crash::point("all:locked");
        self.st().set_source(Source::Shadow);
        Ok(out)
    }

    /// A tenant's audit trail, oldest first (see [`Engine::audit`]), read under the lock of
    /// the tenant's stripe.
    pub fn audit(&mut self, tenant: &str) -> Result<Vec<Event>, SharedError> {
        for _ in 0..=MAX_HOPS {
            self.ensure_current()?;
            let t = self
                .tenant(tenant)
                .ok_or(SharedError::Engine(Error::UnknownTenant))?;
            let Some(_g) = self.lock_tenant(t.0)? else {
                continue;
            };
            self.st().set_source(Source::Shared);
            let out = self.engine.audit(t).copied().collect();
            crash::point("audit:locked");
            self.st().set_source(Source::Shadow);
            return Ok(out);
        }
        Err(self.too_many_hops())
    }

    /// The tenant with this id (policy data: no lock).
    pub fn tenant(&self, id: &str) -> Option<TenantId> {
        self.st().set_source(Source::Shadow);
        self.engine.tenant(id)
    }

    /// The id of a tenant, as in [`Decision::tenant`] (empty for an unknown index).
    pub fn tenant_name(&self, t: TenantId) -> &str {
        self.st().set_source(Source::Shadow);
        self.engine.tenant_name(t)
    }

    /// Whether `name` is the id of tenant `t` ([`Engine::tenant_name_is`]).
    pub fn tenant_name_is(&self, t: TenantId, name: &str) -> bool {
        self.st().set_source(Source::Shadow);
        self.engine.tenant_name_is(t, name)
    }

    /// The policy's engine bookkeeping and default rules (policy data: no lock).
    pub fn capacity(&self) -> &Capacity {
        self.engine.capacity()
    }

    fn stripe_sum(&self, word: usize) -> u64 {
        (0..self.st().stripes())
            .filter_map(|s| self.st().stripe_u64(s, word))
            .map(|w| w.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// What is open, with the state file's write statistics.
    pub fn info(&self) -> SharedInfo {
        SharedInfo {
            image_path: self.image_path.clone(),
            state_path: self.state_path.clone(),
            image_id: self.image_id,
            capacity: *self.engine.capacity(),
            writes: self.stripe_sum(stripe::WRITES),
            recoveries: self.stripe_sum(stripe::RECOVERIES),
        }
    }

    /// Writes the state file's changed pages to disk and waits (`msync(MS_SYNC)`). Not needed
    /// for other processes to see changes (they share the pages), only for durability across a
    /// machine crash.
    pub fn sync(&self) -> Result<(), SharedError> {
        self.st()
            .sync()
            .map_err(|e| SharedError::io(&self.state_path, "msync", e))
    }
}

/// Opens a state file with its image and checks every tenant record against the image (identity
/// fields, flag values), under every stripe's lock, after finishing what a process that died left
/// (rolling back an uncommitted write, publishing a committed one).
pub fn verify_state(image_path: &Path, state_path: &Path) -> Result<StateInfo, SharedError> {
    let mut e = SharedEngine::open(image_path, state_path)?;
    let h = format::read_state_header(state_path)?;
    let _g = e.lock_all()?;
    for t in 0..e.st().tenants() as u32 {
        e.repair_seq(t);
        e.check_tenant(t)?;
    }
    Ok(h.info(state_path))
}

/// What [`repair_state`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// The state file.
    pub state: StateInfo,
    /// Stripe locks found held (by processes that are gone), now reset.
    pub locks_reset: u32,
    /// Unfinished writes rolled back from their stripe's journal.
    pub rolled_back: u32,
    /// Committed writes whose process died before publishing them to lock-free readers, now
    /// published.
    pub published: u32,
}

/// Repairs a state file that no process has open: resets every stripe lock (a lock left held
/// by a process that is gone, without the kernel's owner-died mark, otherwise makes its
/// stripe's calls fail after 10 s), rolls back every unfinished write, publishes every
/// committed one and checks every tenant record against the image.
///
/// Safe whenever it succeeds: every open [`SharedEngine`] holds the state file's `flock`
/// shared, and this takes it exclusively without waiting, so it refuses with
/// [`SharedError::InUse`] while any process has the file open (stop them first). Opening an
/// engine does the same repair by itself when no other process has the file open; this is for
/// operators (and reports what it found).
pub fn repair_state(image_path: &Path, state_path: &Path) -> Result<RepairReport, SharedError> {
    let image = open_image(image_path)?;
    let state = open_state(state_path, &image)?;
    let info = state.header.info(state_path);
    let mut e = SharedEngine::assemble_unprepared(image, state)?;
    if !e.lock.try_exclusive()? {
        return Err(SharedError::InUse {
            path: state_path.to_path_buf(),
        });
    }
    let mut report = RepairReport {
        state: info,
        locks_reset: 0,
        rolled_back: 0,
        published: 0,
    };
    let mut rolled = Vec::new();
    for s in 0..e.st().stripes() {
        let held = e
            .st()
            .probe_stripe(s)
            .map_err(|err| SharedError::io(state_path, "probe lock", err))?;
        report.locks_reset += u32::from(held);
        rolled.extend(e.journal_of(s)?);
    }
    report.rolled_back = rolled.len() as u32;
    // Odd sequence numbers left by a death after a commit (a rollback makes its own even).
    report.published = (0..e.st().tenants() as u32)
        .filter(|t| !rolled.contains(t))
        .filter(|&t| {
            e.st()
                .seq(t)
                .is_some_and(|q| q.load(Ordering::Acquire) & 1 == 1)
        })
        .count() as u32;
    e.reset_locks(true)?;
    for t in 0..e.st().tenants() as u32 {
        e.check_tenant(t)?;
    }
    e.sync()?;
    Ok(report)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Gives `new` the owner, group and permission bits of `old`: the mail server's processes that
/// switch to the new state file must be able to open it as they opened the old one (a state
/// file is typically owned by the MTA's user, and migrations are run by an operator).
fn same_owner_and_mode(old: &Path, new: &Path) -> Result<(), SharedError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let o = fs::metadata(old).map_err(|e| SharedError::io(old, "stat", e))?;
    let n = fs::metadata(new).map_err(|e| SharedError::io(new, "stat", e))?;
    if (o.uid(), o.gid()) != (n.uid(), n.gid()) {
        std::os::unix::fs::chown(new, Some(o.uid()), Some(o.gid())).map_err(|e| {
            SharedError::io(
                old,
                "giving the new state file this file's owner and group (run as root or as \
                 its owner)",
                e,
            )
        })?;
    }
    fs::set_permissions(new, fs::Permissions::from_mode(o.mode() & 0o7777))
        .map_err(|e| SharedError::io(new, "setting the old state file's permissions", e))
}

/// Moves the state of `old_state` (which belongs to `old_image`) to a new state file for
/// `new_image` at `new_state_path`: counters, blocks, grace periods, lapsed state and audit
/// trails of every tenant that the new image still has (by tenant id; see
/// [`Engine::adopt_state`]).
///
/// Runs under the old state file's exclusive `flock` and every one of its stripe locks, so no
/// count is lost: the new file is written
/// next to `new_state_path` and renamed into place, then the old file is marked superseded (with
/// the new path) and every process using it reopens the new one on its next call.
/// `new_state_path` may be `old_state` itself (replaced atomically); any other existing file there
/// is refused ([`SharedError::Exists`]).
pub fn migrate(
    old_image: &Path,
    old_state: &Path,
    new_image: &Path,
    new_state_path: &Path,
) -> Result<MigrateReport, SharedError> {
    let mut old = SharedEngine::open(old_image, old_state)?;
    if fs::symlink_metadata(new_state_path).is_ok() && !same_file(new_state_path, old_state) {
        return Err(SharedError::Exists {
            path: new_state_path.to_path_buf(),
        });
    }
    let by = {
        use std::os::unix::ffi::OsStrExt;
        let dir = match new_state_path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let dir = fs::canonicalize(dir).map_err(|e| SharedError::io(dir, "resolve", e))?;
        let by = dir.join(new_state_path.file_name().unwrap_or_default());
        if by.as_os_str().as_bytes().len() > format::MAX_PATH {
            return Err(SharedError::PathTooLong { path: by });
        }
        by
    };
    // Every stripe lock keeps writers out and orders migrations of one file (the file's
    // `flock` is not taken: every engine holds it shared while it has the file open).
    let _all = old.engine.storage().lock_all(&mut old.lock)?;
    crash::point("migrate:locked");
    if old.settle_superseded() {
        return Err(SharedError::Superseded {
            path: old_state.to_path_buf(),
            by: None,
        });
    }
    for s in 0..old.st().stripes() {
        old.recover_stripe(s)?;
    }
    for t in 0..old.st().tenants() as u32 {
        old.repair_seq(t);
    }

    let image = open_image(new_image)?;
    image.verify_body()?;
    let canonical =
        fs::canonicalize(new_image).map_err(|e| SharedError::io(new_image, "resolve", e))?;
    let tmp = temp_sibling(new_state_path);
    let info = write_state_file(&image, &canonical, &tmp)?;
    let built = (|| {
        use std::os::unix::fs::MetadataExt;
        same_owner_and_mode(old_state, &tmp)?;
        let state = open_state(&tmp, &image)?;
        let mut fresh = SharedEngine::assemble(image, state)?;
        old.st().set_source(Source::Shared);
        fresh.st().set_source(Source::Shared);
        fresh.engine.adopt_state(&old.engine);
        let mut carried = 0;
        let mut removed = Vec::new();
        for t in old.engine.tenants() {
            let id = old.engine.tenant_name(t);
            if fresh.engine.tenant(id).is_some() {
                carried += 1;
            } else {
                removed.push(id.to_string());
            }
        }
        let added = fresh
            .engine
            .tenants()
            .map(|t| fresh.engine.tenant_name(t))
            .filter(|id| old.engine.tenant(id).is_none())
            .map(ToString::to_string)
            .collect();
        fresh.sync()?;
        drop(fresh);
        let m = fs::metadata(&tmp).map_err(|e| SharedError::io(&tmp, "stat", e))?;
        Ok((carried, removed, added, m.dev(), m.ino()))
    })();
    let (carried, removed, added, dev, ino) = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // Pending: should this process die from here until the file is marked superseded, the
    // next stripe lock holder finishes the migration or undoes it, by whether the new file
    // (this inode) is at its path (see `settle_superseded`).
    {
        use std::os::unix::ffi::OsStrExt;
        let st = old.st();
        st.write_superseded_by(by.as_os_str().as_bytes());
        st.header_u64(header::MIGRATE_DEV)
            .store(dev, Ordering::Relaxed);
        st.header_u64(header::MIGRATE_INO)
            .store(ino, Ordering::Relaxed);
        st.header_u32(header::SUPERSEDED)
            .store(2, Ordering::Release);
    }
    let renamed = old.sync().and_then(|()| {
        crash::point("migrate:pending");
        fs::rename(&tmp, new_state_path)
            .map_err(|e| SharedError::io(new_state_path, "rename into place", e))
    });
    if let Err(e) = renamed {
        old.st()
            .header_u32(header::SUPERSEDED)
            .store(0, Ordering::Release);
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    crash::point("migrate:renamed");
    old.st()
        .header_u32(header::SUPERSEDED)
        .store(1, Ordering::Release);
    let synced = sync_dir(new_state_path);
    old.sync()?;
    synced?;
    Ok(MigrateReport {
        state: StateInfo {
            path: new_state_path.to_path_buf(),
            ..info
        },
        carried,
        removed,
        added,
    })
}

#[cfg(test)]
mod tests {
    //! The crash windows, made deterministic: a writer that dies before committing (rolled
    //! back), one that dies after committing but before publishing (kept), and a writer killed
    //! for real while it holds its stripe's lock mid-write (rolled back by the next holder,
    //! while the other stripes go on).
    use super::*;
    use crate::{HeapStorage, RuleSet};

    /// A test's directory, removed at the end; it also holds the lock that runs these tests
    /// one at a time: they fork, and a child forked by one test would inherit another test's
    /// open state files (and their shared `flock`), which makes a lock reset or a repair in
    /// that other test fail for a reason that is not its own.
    struct Dir(
        PathBuf,
        #[allow(dead_code)] std::sync::MutexGuard<'static, ()>,
    );
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    const TENANTS: [&str; 3] = ["contoso", "fabrikam", "northwind"];

    fn setup(name: &str) -> (Dir, PathBuf, PathBuf) {
        // A test that failed while holding the lock poisons it; the others still run.
        let serial = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = std::env::temp_dir().join(std::format!(
            "outguard-shared-unit-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cap = Capacity::default();
        let mut e = Engine::new(HeapStorage::new(&cap), cap, RuleSet::default()).unwrap();
        for id in TENANTS {
            let t = e.add_tenant(id, true).unwrap();
            e.add_domain(t, &std::format!("{id}.com"), false, true)
                .unwrap();
        }
        let (image, state) = (dir.join("i"), dir.join("s"));
        super::super::compile(&e, &image).unwrap();
        super::super::create_state(&image, &state).unwrap();
        (Dir(dir, serial), image, state)
    }

    fn msg_for(tenant: &'static str) -> Message<'static> {
        Message {
            tenant: Some(tenant),
            ..Message::new("x@elsewhere.example")
        }
    }

    fn msg() -> Message<'static> {
        msg_for("contoso")
    }

    fn total_of(e: &mut SharedEngine, tenant: &str) -> u32 {
        e.status(tenant, 1000).unwrap().counters.total
    }

    fn total(e: &mut SharedEngine) -> u32 {
        total_of(e, "contoso")
    }

    /// Steps 1-3 of `write_tenant` for tenant `t` (journal saved and marked, sequence number
    /// odd, five records applied), under the stripe's lock, which the caller holds.
    fn half_write(e: &mut SharedEngine, t: u32, tenant: &'static str) {
        let st = e.engine.storage();
        let s = st.stripe_of(t);
        st.journal_save(s, t);
        st.stripe_u32(s, stripe::JOURNAL_TENANT)
            .unwrap()
            .store(t, Ordering::Relaxed);
        st.stripe_u32(s, stripe::JOURNAL_STATE)
            .unwrap()
            .store(1, Ordering::Release);
        let seq = st.seq(t).unwrap();
        seq.store(seq.load(Ordering::Relaxed) | 1, Ordering::Release);
        st.set_source(Source::Shared);
        for _ in 0..5 {
            e.engine
                .record(1000, &msg_for(tenant), Verdict::Spam)
                .unwrap();
        }
        e.st().set_source(Source::Shadow);
    }

    #[test]
    fn tenants_are_spread_over_stripes() {
        let (_d, image, state) = setup("stripes");
        let a = SharedEngine::open(&image, &state).unwrap();
        let st = a.st();
        assert_eq!(st.stripes(), 16.min(super::super::format::STRIPES));
        assert_eq!(a.capacity().tenants, 16);
        let stripes: Vec<usize> = (0..3).map(|t| st.stripe_of(t)).collect();
        assert_eq!(stripes, [0, 1, 2]);
        assert_ne!(
            st.header_u64(header::LOCK_EPOCH).load(Ordering::Relaxed),
            0,
            "the first open initializes the locks"
        );
    }

    #[test]
    fn a_writer_dying_before_commit_is_rolled_back() {
        let (_d, image, state) = setup("rollback");
        let mut a = SharedEngine::open(&image, &state).unwrap();
        a.record(1000, &msg(), Verdict::Clean).unwrap();
        a.record(1000, &msg_for("fabrikam"), Verdict::Clean)
            .unwrap();
        // Steps 1-3 of `write_tenant`, then "death": the lock goes, nothing is committed.
        {
            let g = a.lock_tenant(0).unwrap().unwrap();
            half_write(&mut a, 0, "contoso");
            drop(g);
        }
        let mut b = SharedEngine::open(&image, &state).unwrap();
        // Another stripe is not concerned.
        assert_eq!(total_of(&mut b, "fabrikam"), 1);
        b.record(1000, &msg_for("fabrikam"), Verdict::Clean)
            .unwrap();
        assert_eq!(b.info().recoveries, 0);
        assert_eq!(total(&mut b), 1, "the half-done write is rolled back");
        assert_eq!(b.info().recoveries, 1);
        assert_eq!(b.info().writes, 3);
        b.record(1000, &msg(), Verdict::Clean).unwrap();
        assert_eq!(total(&mut b), 2);
        assert_eq!(total(&mut a), 2);
        assert_eq!(total_of(&mut a, "fabrikam"), 2);
        verify_state(&image, &state).unwrap();
    }

    #[test]
    fn a_writer_dying_after_commit_is_kept() {
        let (_d, image, state) = setup("publish");
        let mut a = SharedEngine::open(&image, &state).unwrap();
        a.record(1000, &msg(), Verdict::Clean).unwrap();
        a.record(1000, &msg(), Verdict::Clean).unwrap();
        // Committed, then "death" before the sequence number was made even again.
        let seq = a.st().seq(0).unwrap();
        seq.store(seq.load(Ordering::Relaxed) + 1, Ordering::Release);
        let mut b = SharedEngine::open(&image, &state).unwrap();
        assert_eq!(total(&mut b), 2, "the committed write stays");
        assert_eq!(b.info().recoveries, 0);
        assert_eq!(b.st().seq(0).unwrap().load(Ordering::Relaxed) & 1, 0);
    }

    /// A child is killed (SIGKILL) while it holds contoso's stripe lock in the middle of a
    /// write. Meanwhile other tenants' stripes are free: the parent records for them. After the
    /// kill, the next holder of contoso's stripe finds the lock's owner dead, rolls the write
    /// back, and everything counts on exactly.
    #[test]
    fn a_writer_killed_holding_its_stripe_is_rolled_back_and_other_stripes_go_on() {
        use std::time::{Duration, Instant};
        let (_d, image, state) = setup("killed");
        let mut p = SharedEngine::open(&image, &state).unwrap();
        p.record(1000, &msg(), Verdict::Clean).unwrap();
        p.record(1000, &msg_for("fabrikam"), Verdict::Clean)
            .unwrap();
        let pid = child_holding_stripe_0(&image, &state, true);
        // The child holds stripe 0 mid-write. A watchdog kills it after 5 s, so that a lock
        // shared by all tenants would show as slowness here rather than as a hang.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if wait.recv_timeout(Duration::from_secs(5)).is_err() {
                // SAFETY: plain system call on our child, which has not been reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            p.record(1000, &msg_for("fabrikam"), Verdict::Clean)
                .unwrap();
            p.record(1000, &msg_for("northwind"), Verdict::Clean)
                .unwrap();
        }
        assert_eq!(total_of(&mut p, "fabrikam"), 101);
        assert_eq!(p.audit("northwind").unwrap().len(), 0);
        assert!(
            super::super::sys::LOCK_KIND == 0 || t0.elapsed() < Duration::from_secs(2),
            "other stripes waited for the held one: {:?}",
            t0.elapsed()
        );
        done.send(()).unwrap();
        watchdog.join().unwrap();
        kill_and_reap(pid);
        // The dead child's write is still marked in stripe 0's journal.
        assert_eq!(p.journal_of(0).unwrap(), Some(0));
        assert_eq!(p.info().recoveries, 0);
        {
            let g = p.lock_tenant(0).unwrap().unwrap();
            if super::super::sys::LOCK_KIND != 0 {
                assert!(g.owner_died(), "the kernel reports the dead owner");
            }
            assert_eq!(p.journal_of(0).unwrap(), None, "rolled back under the lock");
        }
        assert_eq!(p.info().recoveries, 1);
        assert_eq!(total(&mut p), 1, "the killed write is rolled back");
        assert_eq!(total_of(&mut p, "fabrikam"), 101);
        assert_eq!(total_of(&mut p, "northwind"), 100);
        p.record(1000, &msg(), Verdict::Clean).unwrap();
        let mut q = SharedEngine::open(&image, &state).unwrap();
        assert_eq!(total(&mut q), 2);
        assert_eq!(q.info().writes, 1 + 1 + 200 + 1);
        verify_state(&image, &state).unwrap();
    }

    /// After a reboot, a mutex left "held" in the file by a process of the previous boot (no
    /// owner-died mark: the kernel that would have set it is gone) is reinitialized by the
    /// first opener of the new boot, and the unfinished write is rolled back.
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    #[test]
    fn locks_of_a_previous_boot_are_reinitialized() {
        let (_d, image, state) = setup("epoch");
        let mut a = SharedEngine::open(&image, &state).unwrap();
        a.record(1000, &msg(), Verdict::Clean).unwrap();
        die_unseen_in_a_half_write(&image, &state);
        // "Reboot": the file's lock epoch is another boot's.
        a.st()
            .header_u64(header::LOCK_EPOCH)
            .store(12345, Ordering::Release);
        drop(a);
        let mut b = SharedEngine::open(&image, &state).unwrap();
        assert_eq!(
            b.st()
                .header_u64(header::LOCK_EPOCH)
                .load(Ordering::Relaxed),
            boot_epoch()
        );
        assert_eq!(b.info().recoveries, 1);
        assert_eq!(total(&mut b), 1);
        let t0 = std::time::Instant::now();
        b.record(1000, &msg(), Verdict::Clean).unwrap();
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(total(&mut b), 2);
        verify_state(&image, &state).unwrap();
    }

    /// A child takes contoso's stripe lock, writes half a record and dies in a way the kernel
    /// does not see (its robust list unregistered: no owner-died mark, as after a machine
    /// crash or in a copy of a file taken while in use).
    fn die_unseen_in_a_half_write(image: &Path, state: &Path) {
        let r = in_child(|| {
            let mut c = SharedEngine::open(image, state).unwrap();
            let g = c.lock_tenant(0).unwrap().unwrap();
            half_write(&mut c, 0, "contoso");
            std::mem::forget(g);
            // SAFETY: unregisters this thread's robust list (no owner-died mark at exit), exits.
            unsafe {
                libc::syscall(libc::SYS_set_robust_list, 0usize, 24usize);
                libc::_exit(0)
            }
        });
        assert_eq!(r, Ok(0));
    }

    /// Runs `f` in a forked child and returns how the child ended: `Ok(code)` when it exited,
    /// `Err(signal)` when a signal killed it (a crash point: SIGKILL).
    fn in_child(f: impl FnOnce()) -> Result<i32, i32> {
        // SAFETY: the child runs `f` (engine calls on its own engines) and leaves with `_exit`,
        // never returning into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 101 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if libc::WIFSIGNALED(status) {
            Err(libc::WTERMSIG(status))
        } else {
            Ok(libc::WEXITSTATUS(status))
        }
    }

    /// Forks a child that opens its own engine, takes stripe 0's lock (and with `mid_write`
    /// does half a write of contoso) and keeps it (sleeping until killed). Returns the child's
    /// pid once it holds the lock.
    fn child_holding_stripe_0(image: &Path, state: &Path, mid_write: bool) -> libc::pid_t {
        let mut fds = [0; 2];
        // SAFETY: creates a pipe into a valid two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only uses its own engine, writes one byte and sleeps until killed.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut c = SharedEngine::open(image, state).unwrap();
            let g = c.lock_tenant(0).unwrap().unwrap();
            if mid_write {
                half_write(&mut c, 0, "contoso");
            }
            std::mem::forget(g);
            // SAFETY: writes one byte from a live buffer to our end of the pipe.
            unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: reads one byte into a live buffer; closes our pipe ends.
        unsafe {
            assert_eq!(libc::read(fds[0], b.as_mut_ptr().cast(), 1), 1);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        pid
    }

    fn kill_and_reap(pid: libc::pid_t) {
        // SAFETY: plain system calls on our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFSIGNALED(status));
        }
    }

    /// A lock held by a live process is never reinitialized under it, whatever the lock epoch
    /// in the header says: here a previous boot's, as a process that cannot read the boot id
    /// (a chrooted mail server without /proc) accepts it and goes on using the locks, while
    /// another process of the same boot that can read it opens the file.
    #[test]
    fn a_held_lock_is_never_reset_by_another_opener() {
        let (_d, image, state) = setup("held");
        let pid = child_holding_stripe_0(&image, &state, false);
        {
            let a = SharedEngine::open(&image, &state).unwrap();
            a.st()
                .header_u64(header::LOCK_EPOCH)
                .store(12345, Ordering::Release);
        }
        let b = SharedEngine::open(&image, &state).unwrap();
        let held = b.st().probe_stripe(0).unwrap();
        kill_and_reap(pid);
        assert!(
            held || super::super::sys::LOCK_KIND == 0,
            "the lock of a live holder was reset by an opener"
        );
    }

    /// A lock left "held" in the file by a process that is gone, without the kernel's
    /// owner-died mark (a file copied while in use, a process whose robust list was lost) and
    /// without a reboot, is reset by the next process that opens the file while nobody else has
    /// it open; the unfinished write is rolled back.
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    #[test]
    fn a_lock_left_held_in_this_boot_is_reset_when_nobody_has_the_file_open() {
        let (_d, image, state) = setup("stale");
        {
            let mut a = SharedEngine::open(&image, &state).unwrap();
            a.record(1000, &msg(), Verdict::Clean).unwrap();
        }
        die_unseen_in_a_half_write(&image, &state);
        let mut b = SharedEngine::open(&image, &state).unwrap();
        let t0 = std::time::Instant::now();
        let r = b.record(1000, &msg(), Verdict::Clean);
        assert!(r.is_ok(), "{:?} after {:?}", r.err(), t0.elapsed());
        assert!(t0.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(total(&mut b), 2, "the unfinished write was rolled back");
        assert_eq!(b.info().recoveries, 1);
    }

    /// A migration killed right after it renamed the new state file into place: the processes
    /// still on the old file must move to the new one (no count may go to a file nobody opens).
    #[test]
    fn a_migration_killed_after_the_rename_is_finished_by_the_next_locker() {
        let (_d, image, state) = setup("migkill");
        let mut a = SharedEngine::open(&image, &state).unwrap();
        a.record(1000, &msg(), Verdict::Clean).unwrap();
        let r = in_child(|| {
            crash::arm("migrate:renamed");
            let _ = migrate(&image, &state, &image, &state);
        });
        assert_eq!(r, Err(libc::SIGKILL));
        a.record(1000, &msg(), Verdict::Clean).unwrap();
        let mut fresh = SharedEngine::open(&image, &state).unwrap();
        assert_eq!(total(&mut fresh), 2, "a count went to the replaced file");
        assert_eq!(total(&mut a), 2);
    }

    /// What a test can observe of contoso: its audit trail (read under its stripe's lock, which
    /// repairs what a dead writer left) and its status (lock-free).
    fn fingerprint(e: &mut SharedEngine) -> String {
        let audit = e.audit("contoso").unwrap();
        std::format!("{:?} {audit:?}", e.status("contoso", 1000).unwrap())
    }

    type Op = fn(&mut SharedEngine) -> Result<(), SharedError>;

    /// Every write path, with what it needs done first so that it changes contoso's state.
    const WRITES: [(&str, Op, Op); 6] = [
        (
            "record",
            |_| Ok(()),
            |e| e.record(1000, &msg(), Verdict::Spam).map(drop),
        ),
        (
            "evaluate",
            |_| Ok(()),
            |e| e.evaluate(1000, &msg(), Verdict::Spam).map(drop),
        ),
        (
            "release",
            |e| {
                for _ in 0..200 {
                    e.record(1000, &msg(), Verdict::Spam)?;
                }
                assert!(!e.check(1000, &msg())?.accepted());
                Ok(())
            },
            |e| e.release("contoso", None, 1000).map(drop),
        ),
        (
            "mark_lapsed",
            |_| Ok(()),
            |e| e.mark_lapsed("contoso", 1000).map(drop),
        ),
        (
            "mark_active",
            |e| e.mark_lapsed("contoso", 1000).map(drop),
            |e| e.mark_active("contoso", 1000).map(drop),
        ),
        (
            "set_licensed",
            |_| Ok(()),
            |e| e.set_licensed("contoso", false),
        ),
    ];

    /// The instants of a write, and whether a write that dies there is kept (committed).
    const WRITE_POINTS: [(&str, bool); 5] = [
        ("write:journaled", false),
        ("write:odd", false),
        ("write:applied", false),
        ("write:committed", true),
        ("write:published", true),
    ];

    /// Every write path dies (SIGKILL) at every instant of its write: before the commit the
    /// call is rolled back whole, from the commit on it is kept whole; the next holder of the
    /// stripe's lock repairs it at once, and the file verifies.
    #[test]
    fn every_write_path_killed_at_every_instant_is_all_or_nothing() {
        for (name, prepare, op) in WRITES {
            for (point, kept) in WRITE_POINTS {
                let (_d, image, state) = setup(&std::format!("w-{name}-{point}"));
                let mut p = SharedEngine::open(&image, &state).unwrap();
                prepare(&mut p).unwrap();
                let before = fingerprint(&mut p);
                // The call's effect, on a copy of the file.
                let copy = state.with_file_name("copy");
                fs::copy(&state, &copy).unwrap();
                let after = {
                    let mut c = SharedEngine::open(&image, &copy).unwrap();
                    op(&mut c).unwrap();
                    fingerprint(&mut c)
                };
                assert_ne!(before, after, "{name} changes nothing");
                let writes = p.info().writes;
                let r = in_child(|| {
                    let mut c = SharedEngine::open(&image, &state).unwrap();
                    crash::arm(point);
                    let _ = op(&mut c);
                });
                assert_eq!(r, Err(libc::SIGKILL), "{name} never reached {point}");
                let got = fingerprint(&mut p);
                assert_eq!(
                    &got,
                    if kept { &after } else { &before },
                    "{name} at {point}"
                );
                assert_eq!(p.info().recoveries, u64::from(!kept), "{name} at {point}");
                // (The statistic counts writes that returned.)
                assert_eq!(p.info().writes, writes, "{name} at {point}");
                for t in 0..3 {
                    assert_eq!(p.st().seq(t).unwrap().load(Ordering::Relaxed) & 1, 0);
                }
                assert_eq!(p.journal_of(0).unwrap(), None);
                verify_state(&image, &state).unwrap();
                // The stripe goes on; a fresh process sees the same.
                p.record(1000, &msg(), Verdict::Clean).unwrap();
                let mut q = SharedEngine::open(&image, &state).unwrap();
                assert_eq!(fingerprint(&mut q), fingerprint(&mut p));
            }
        }
    }

    /// A process that dies while it rolls back a dead writer's write (at every instant of the
    /// rollback) leaves the rollback to the next holder of the lock: the write is undone once,
    /// whole.
    #[test]
    fn a_recovery_killed_at_every_instant_is_finished_by_the_next_holder() {
        for point in ["recover:odd", "recover:restored", "recover:cleared"] {
            let (_d, image, state) = setup(&std::format!("r-{point}"));
            let mut p = SharedEngine::open(&image, &state).unwrap();
            p.record(1000, &msg(), Verdict::Clean).unwrap();
            let before = fingerprint(&mut p);
            let r = in_child(|| {
                let mut c = SharedEngine::open(&image, &state).unwrap();
                crash::arm("write:applied");
                let _ = c.record(1000, &msg(), Verdict::Spam);
            });
            assert_eq!(r, Err(libc::SIGKILL));
            // The next holder dies in the middle of rolling it back.
            let r = in_child(|| {
                let mut c = SharedEngine::open(&image, &state).unwrap();
                crash::arm(point);
                let _ = c.record(1000, &msg(), Verdict::Spam);
            });
            assert_eq!(r, Err(libc::SIGKILL), "never reached {point}");
            assert_eq!(fingerprint(&mut p), before, "at {point}");
            assert_eq!(p.journal_of(0).unwrap(), None);
            assert_eq!(p.st().seq(0).unwrap().load(Ordering::Relaxed) & 1, 0);
            p.record(1000, &msg(), Verdict::Clean).unwrap();
            assert_eq!(total(&mut p), 2, "at {point}");
            verify_state(&image, &state).unwrap();
        }
    }

    /// Calls that only read under a lock (one stripe, or all of them) and die holding it leave
    /// nothing to repair: every stripe is usable at once.
    #[test]
    fn readers_killed_holding_locks_leave_every_stripe_usable() {
        for point in ["audit:locked", "all:locked"] {
            let (_d, image, state) = setup(&std::format!("l-{point}"));
            let mut p = SharedEngine::open(&image, &state).unwrap();
            let r = in_child(|| {
                let mut c = SharedEngine::open(&image, &state).unwrap();
                c.record(1000, &msg(), Verdict::Clean).unwrap();
                crash::arm(point);
                let _ = c.audit("contoso");
                let _ = c.restricted(1000);
            });
            assert_eq!(r, Err(libc::SIGKILL), "never reached {point}");
            let t0 = std::time::Instant::now();
            for id in TENANTS {
                p.record(1000, &msg_for(id), Verdict::Clean).unwrap();
            }
            assert!(t0.elapsed() < std::time::Duration::from_secs(2));
            assert_eq!(total(&mut p), 2);
            assert_eq!(p.info().recoveries, 0);
            verify_state(&image, &state).unwrap();
        }
    }

    /// The first opener of a boot (or the first while nobody has the file open) dies at every
    /// instant of resetting the locks: the next one does it again, whole.
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    #[test]
    fn a_lock_reset_killed_at_every_instant_is_done_again() {
        for point in ["reset:started", "reset:partial", "reset:done"] {
            let (_d, image, state) = setup(&std::format!("z-{point}"));
            {
                let mut a = SharedEngine::open(&image, &state).unwrap();
                a.record(1000, &msg(), Verdict::Clean).unwrap();
            }
            // A writer dies mid-write without an owner-died mark (as at a power cut).
            let r = in_child(|| {
                let mut c = SharedEngine::open(&image, &state).unwrap();
                let g = c.lock_tenant(0).unwrap().unwrap();
                half_write(&mut c, 0, "contoso");
                std::mem::forget(g);
                c.st()
                    .header_u64(header::LOCK_EPOCH)
                    .store(12345, Ordering::Release);
                // SAFETY: unregisters this thread's robust list, then exits.
                unsafe {
                    libc::syscall(libc::SYS_set_robust_list, 0usize, 24usize);
                    libc::_exit(0)
                }
            });
            assert_eq!(r, Ok(0));
            let r = in_child(|| {
                crash::arm(point);
                let _ = SharedEngine::open(&image, &state);
            });
            assert_eq!(r, Err(libc::SIGKILL), "never reached {point}");
            let mut b = SharedEngine::open(&image, &state).unwrap();
            assert_eq!(
                b.st()
                    .header_u64(header::LOCK_EPOCH)
                    .load(Ordering::Relaxed),
                boot_epoch()
            );
            let t0 = std::time::Instant::now();
            b.record(1000, &msg(), Verdict::Clean).unwrap();
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(1),
                "at {point}"
            );
            assert_eq!(total(&mut b), 2, "at {point}");
            verify_state(&image, &state).unwrap();
        }
    }

    /// A migration that dies at any instant: before the new file is renamed into place the old
    /// one stays current (and can be migrated again); from the rename on, everyone moves to
    /// the new one. No count goes to a file nobody will open again.
    #[test]
    fn a_migration_killed_at_every_instant_loses_no_count() {
        for (point, moved) in [
            ("migrate:locked", false),
            ("migrate:pending", false),
            ("migrate:renamed", true),
        ] {
            for in_place in [true, false] {
                let (d, image, state) = setup(&std::format!("m-{point}-{in_place}"));
                let target = if in_place {
                    state.clone()
                } else {
                    d.0.join("s2")
                };
                let mut a = SharedEngine::open(&image, &state).unwrap();
                a.record(1000, &msg(), Verdict::Clean).unwrap();
                let r = in_child(|| {
                    crash::arm(point);
                    let _ = migrate(&image, &state, &image, &target);
                });
                assert_eq!(r, Err(libc::SIGKILL), "never reached {point}");
                a.record(1000, &msg(), Verdict::Clean).unwrap();
                assert_eq!(total(&mut a), 2);
                let now_at = |p: &Path| fs::canonicalize(p).unwrap();
                if moved {
                    assert_eq!(a.info().state_path, now_at(&target), "at {point}");
                } else {
                    assert_eq!(a.info().state_path, state, "at {point}");
                }
                let mut fresh = SharedEngine::open(&image, &a.info().state_path).unwrap();
                assert_eq!(total(&mut fresh), 2, "at {point} (in place: {in_place})");
                verify_state(&image, &a.info().state_path).unwrap();
                if !moved {
                    // The old file can be migrated again.
                    migrate(&image, &state, &image, &target).unwrap();
                    a.record(1000, &msg(), Verdict::Clean).unwrap();
                    let mut fresh = SharedEngine::open(&image, &target).unwrap();
                    assert_eq!(total(&mut fresh), 3, "at {point} (in place: {in_place})");
                }
            }
        }
    }

    /// `repair_state` refuses while any process has the file open; once none has, it resets a
    /// lock left held (no owner-died mark), rolls back the unfinished write and publishes a
    /// committed one.
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    #[test]
    fn repair_state_refuses_a_file_in_use_and_repairs_an_idle_one() {
        let (_d, image, state) = setup("repair");
        let mut a = SharedEngine::open(&image, &state).unwrap();
        a.record(1000, &msg(), Verdict::Clean).unwrap();
        a.record(1000, &msg_for("fabrikam"), Verdict::Clean)
            .unwrap();
        // Fabrikam's last write committed, then "death" before publishing.
        let seq = a.st().seq(1).unwrap();
        seq.store(seq.load(Ordering::Relaxed) + 1, Ordering::Release);
        die_unseen_in_a_half_write(&image, &state);
        assert!(matches!(
            repair_state(&image, &state),
            Err(SharedError::InUse { .. })
        ));
        assert!(a.st().probe_stripe(0).unwrap(), "still held");
        drop(a);
        let report = repair_state(&image, &state).unwrap();
        assert_eq!(
            (report.locks_reset, report.rolled_back, report.published),
            (1, 1, 1)
        );
        let again = repair_state(&image, &state).unwrap();
        assert_eq!(
            (again.locks_reset, again.rolled_back, again.published),
            (0, 0, 0)
        );
        let mut b = SharedEngine::open(&image, &state).unwrap();
        assert_eq!(total(&mut b), 1);
        assert_eq!(total_of(&mut b, "fabrikam"), 1);
        b.record(1000, &msg(), Verdict::Clean).unwrap();
        assert_eq!(total(&mut b), 2);
    }

    /// An engine inherited across `fork` keeps the file registered as open in the child after
    /// the parent closed its own (the child shares the parent's open file description), so
    /// nothing resets the locks the child uses.
    #[test]
    fn an_engine_inherited_across_fork_keeps_the_file_open() {
        let (_d, image, state) = setup("fork");
        let mut a = SharedEngine::open(&image, &state).unwrap();
        a.record(1000, &msg(), Verdict::Clean).unwrap();
        let mut fds = [0; 2];
        // SAFETY: creates a pipe into a valid two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child uses the inherited engine and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                a.record(1000, &msg(), Verdict::Clean).unwrap();
                let mut b = [0u8; 1];
                // SAFETY: reads one byte into a live buffer: the parent closed its engine.
                assert_eq!(unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) }, 1);
                assert!(matches!(
                    repair_state(&image, &state),
                    Err(SharedError::InUse { .. })
                ));
                a.record(1000, &msg(), Verdict::Clean).unwrap();
                assert_eq!(total(&mut a), 3);
            }))
            .is_ok();
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 101 }) };
        }
        drop(a);
        let mut status = 0;
        // SAFETY: writes one byte to our child, waits for it, closes the pipe.
        unsafe {
            assert_eq!(libc::write(fds[1], b"x".as_ptr().cast(), 1), 1);
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        let mut b = SharedEngine::open(&image, &state).unwrap();
        assert_eq!(total(&mut b), 3);
    }

    #[test]
    fn a_private_copy_is_refreshed_only_when_the_tenant_changed() {
        let (_d, image, state) = setup("fresh");
        let mut a = SharedEngine::open(&image, &state).unwrap();
        let mut b = SharedEngine::open(&image, &state).unwrap();
        assert!(!a.is_fresh(0));
        a.check(1000, &msg()).unwrap();
        assert!(a.is_fresh(0));
        b.record(1000, &msg(), Verdict::Clean).unwrap();
        assert!(b.is_fresh(0), "a writer's own copy is current");
        assert!(!a.is_fresh(0));
        assert_eq!(a.check(1000, &msg()).unwrap().counters.total, 1);
        assert!(a.is_fresh(0));
    }
}
