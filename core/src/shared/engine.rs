//! [`SharedEngine`]: the engine over a mapped image and a shared state file, with the lock, the
//! undo journal and the per-tenant seqlock (see the module documentation); and [`migrate`].

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
use super::sys::{header, LockGuard, MappedStorage, Source, StateLock};
use super::{FileKind, SharedError};
use crate::storage::{
    TenantRecord, RULE_BLOCKED, RULE_MANUAL, RULE_WARNED, TENANT_LAPSED, TENANT_LICENSED,
    TENANT_USED,
};
use crate::{
    Capacity, Decision, Engine, Error, Event, Events, Message, Reason, Restriction, Rule, TenantId,
    TenantStatus, Verdict,
};

/// Optimistic reads of a tenant before falling back to the lock.
const SPINS: u32 = 200;
/// Rounds of the locked fallback before giving up on a tenant whose writers keep dying.
const MAX_SLOW: u32 = 1000;
/// Superseded state files followed in a row.
const MAX_HOPS: u32 = 8;

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
    if rec.flags & !(TENANT_USED | TENANT_LICENSED | TENANT_LAPSED) != 0 {
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
        Ok(SharedEngine {
            engine,
            lock: StateLock::new(state.file, &state.path),
            image_path: image.path,
            state_path: state.path,
            image_id: image.id,
            synced: vec![0; layout.tenants],
            epoch: 0,
        })
    }

    fn st(&self) -> &MappedStorage {
        self.engine.storage()
    }

    // ----- superseded files ---------------------------------------------------------------

    fn superseded(&self) -> bool {
        self.st()
            .header_u32(header::SUPERSEDED)
            .load(Ordering::Acquire)
            != 0
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

    // ----- locks and the journal ------------------------------------------------------------

    /// Takes the exclusive lock on the current state file and rolls back a write whose process
    /// died.
    fn lock_write(&mut self) -> Result<LockGuard, SharedError> {
        for _ in 0..=MAX_HOPS {
            self.ensure_current()?;
            let g = self.lock.lock(true)?;
            if self.superseded() {
                drop(g);
                self.follow()?;
                continue;
            }
            self.recover()?;
            return Ok(g);
        }
        Err(SharedError::Superseded {
            path: self.state_path.clone(),
            by: None,
        })
    }

    /// Takes the shared lock on a state file with no unfinished write.
    fn lock_read(&mut self) -> Result<LockGuard, SharedError> {
        for _ in 0..=MAX_HOPS {
            self.ensure_current()?;
            let g = self.lock.lock(false)?;
            if self.superseded() {
                drop(g);
                self.follow()?;
                continue;
            }
            if self
                .st()
                .header_u32(header::JOURNAL_STATE)
                .load(Ordering::Acquire)
                == 0
            {
                return Ok(g);
            }
            drop(g);
            drop(self.lock_write()?);
        }
        Err(SharedError::Superseded {
            path: self.state_path.clone(),
            by: None,
        })
    }

    /// Under the exclusive lock: puts back the before-image of a write whose process died.
    fn recover(&mut self) -> Result<(), SharedError> {
        let st = self.engine.storage();
        if st.header_u32(header::JOURNAL_STATE).load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let t = st
            .header_u32(header::JOURNAL_TENANT)
            .load(Ordering::Relaxed);
        let Some(seq) = st.seq(t) else {
            return Err(SharedError::CorruptHeader {
                path: self.state_path.clone(),
                kind: FileKind::State,
                detail: "the journal names a tenant out of range",
            });
        };
        let odd = seq.load(Ordering::Relaxed) | 1;
        seq.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        st.journal_restore(t);
        fence(Ordering::SeqCst);
        st.header_u32(header::JOURNAL_STATE)
            .store(0, Ordering::Release);
        seq.store(odd.wrapping_add(1), Ordering::Release);
        st.header_u64(header::RECOVERIES)
            .fetch_add(1, Ordering::Relaxed);
        if let Some(s) = self.synced.get_mut(t as usize) {
            *s = 0;
        }
        Ok(())
    }

    /// Under the exclusive lock, after `recover`: a writer that died after committing but before
    /// publishing leaves an odd sequence number over complete data.
    fn repair_seq(&self, t: u32) {
        if let Some(seq) = self.st().seq(t) {
            let s = seq.load(Ordering::Relaxed);
            if s & 1 == 1 {
                seq.store(s.wrapping_add(1), Ordering::Release);
            }
        }
    }

    fn corrupt(&self, t: u32, detail: &'static str) -> SharedError {
        SharedError::CorruptState {
            path: self.state_path.clone(),
            tenant: t,
            detail,
        }
    }

    /// Runs `op` (which changes only tenant `t`'s record, counters and audit ring) as one
    /// atomic write. The caller holds the exclusive lock (`lock_write`).
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
        let odd = {
            let st = self.engine.storage();
            let seq = st.seq(t).ok_or(SharedError::Engine(Error::UnknownTenant))?;
            // 1. Before-image into the journal, then mark it active.
            st.journal_save(t);
            st.header_u32(header::JOURNAL_TENANT)
                .store(t, Ordering::Relaxed);
            st.header_u32(header::JOURNAL_STATE)
                .store(1, Ordering::Release);
            fence(Ordering::SeqCst);
            // 2. Readers of this tenant wait from now on.
            let odd = seq.load(Ordering::Relaxed) | 1;
            seq.store(odd, Ordering::Relaxed);
            fence(Ordering::Release);
            st.set_source(Source::Shared);
            odd
        };
        // 3. The engine call.
        let r = op(&mut self.engine);
        let st = self.engine.storage();
        fence(Ordering::SeqCst);
        // 4. Commit: from here on the write survives the death of this process.
        st.header_u32(header::JOURNAL_STATE)
            .store(0, Ordering::Release);
        // 5. Publish to readers.
        let now_seq = odd.wrapping_add(1);
        if let Some(seq) = st.seq(t) {
            seq.store(now_seq, Ordering::Release);
        }
        st.header_u64(header::WRITES)
            .fetch_add(1, Ordering::Relaxed);
        // This process's private copy of the tenant is current (no writer but us right now).
        if let Some(rec) = st.shared_record(t) {
            st.copy_cells_to_shadow(t);
            st.set_shadow_record(t, rec);
            if let Some(s) = self.synced.get_mut(t as usize) {
                *s = now_seq.wrapping_add(1);
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
        // A writer holds the tenant (wait for it), or one died holding it (repair).
        let epoch = self.epoch;
        for _ in 0..MAX_SLOW {
            {
                let _g = self.lock_read()?;
                if self.epoch != epoch {
                    return Ok(());
                }
                let st = self.engine.storage();
                let s = st
                    .seq(t)
                    .ok_or(SharedError::Engine(Error::UnknownTenant))?
                    .load(Ordering::Acquire);
                if s & 1 == 0 {
                    let rec = st
                        .shared_record(t)
                        .ok_or(SharedError::Engine(Error::UnknownTenant))?;
                    st.copy_cells_to_shadow(t);
                    return self.accept_copy(t, rec, s);
                }
            }
            let _g = self.lock_write()?;
            if self.epoch != epoch {
                return Ok(());
            }
            self.repair_seq(t);
        }
        Err(self.corrupt(t, "its sequence number never settles"))
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
        Err(SharedError::Superseded {
            path: self.state_path.clone(),
            by: None,
        })
    }

    /// Counts a message that was accepted and scanned (see [`Engine::record`]) in the shared
    /// state, under the exclusive lock, as one atomic write: when this returns `Ok`, the count
    /// is committed, whatever happens to the process next.
    pub fn record(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        verdict: Verdict,
    ) -> Result<Events, SharedError> {
        let _g = self.lock_write()?;
        self.st().set_source(Source::Shared);
        let d = self.engine.check(now, msg);
        let Some(t) = d.tenant else {
            self.st().set_source(Source::Shadow);
            return Err(SharedError::Engine(
                if d.reason == Some(Reason::InvalidSender) {
                    Error::InvalidAddress
                } else {
                    Error::UnknownTenant
                },
            ));
        };
        self.write_tenant(t.0, |e| e.record(now, msg, verdict))?
            .map_err(SharedError::Engine)
    }

    /// `check`, then `record` when the message is accepted (see [`Engine::evaluate`]), both
    /// under the exclusive lock, so no other process counts in between.
    pub fn evaluate(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        verdict: Verdict,
    ) -> Result<(Decision, Events), SharedError> {
        let _g = self.lock_write()?;
        self.st().set_source(Source::Shared);
        let d = self.engine.check(now, msg);
        let t = match d.tenant {
            Some(t) if d.accepted() => t,
            _ => {
                self.st().set_source(Source::Shadow);
                return Ok((d, Events::new()));
            }
        };
        let events = self.write_tenant(t.0, |e| e.record(now, msg, verdict).unwrap_or_default())?;
        Ok((d, events))
    }

    // ----- operator actions ---------------------------------------------------------------

    fn tenant_write<R>(
        &mut self,
        tenant: &str,
        op: impl FnOnce(&mut Engine<MappedStorage>, TenantId) -> Result<R, Error>,
    ) -> Result<R, SharedError> {
        let _g = self.lock_write()?;
        self.st().set_source(Source::Shadow);
        let t = self
            .engine
            .tenant(tenant)
            .ok_or(SharedError::Engine(Error::UnknownTenant))?;
        self.write_tenant(t.0, |e| op(e, t))?
            .map_err(SharedError::Engine)
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
        Err(SharedError::Superseded {
            path: self.state_path.clone(),
            by: None,
        })
    }

    /// Every tenant refused at `now` (see [`Engine::restricted`]), read under the shared lock.
    pub fn restricted(&mut self, now: u64) -> Result<Vec<Restriction>, SharedError> {
        let _g = self.lock_read()?;
        self.st().set_source(Source::Shared);
        let out = self.engine.restricted(now).collect();
        self.st().set_source(Source::Shadow);
        Ok(out)
    }

    /// A tenant's audit trail, oldest first (see [`Engine::audit`]), read under the shared lock.
    pub fn audit(&mut self, tenant: &str) -> Result<Vec<Event>, SharedError> {
        let _g = self.lock_read()?;
        self.st().set_source(Source::Shared);
        let out = self
            .engine
            .tenant(tenant)
            .map(|t| self.engine.audit(t).copied().collect());
        self.st().set_source(Source::Shadow);
        out.ok_or(SharedError::Engine(Error::UnknownTenant))
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

    /// The policy's engine bookkeeping and default rules (policy data: no lock).
    pub fn capacity(&self) -> &Capacity {
        self.engine.capacity()
    }

    /// What is open, with the state file's write statistics.
    pub fn info(&self) -> SharedInfo {
        let st = self.st();
        SharedInfo {
            image_path: self.image_path.clone(),
            state_path: self.state_path.clone(),
            image_id: self.image_id,
            capacity: *self.engine.capacity(),
            writes: st.header_u64(header::WRITES).load(Ordering::Relaxed),
            recoveries: st.header_u64(header::RECOVERIES).load(Ordering::Relaxed),
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
/// fields, flag values), under the exclusive lock, after finishing what a process that died left
/// (rolling back an uncommitted write, publishing a committed one).
pub fn verify_state(image_path: &Path, state_path: &Path) -> Result<StateInfo, SharedError> {
    let mut e = SharedEngine::open(image_path, state_path)?;
    let h = format::read_state_header(state_path)?;
    let _g = e.lock_write()?;
    for t in 0..e.st().tenants() as u32 {
        e.repair_seq(t);
        let st = e.st();
        let (Some(rec), Some(image)) = (st.shared_record(t), st.shadow_record(t)) else {
            return Err(e.corrupt(t, "record outside the file"));
        };
        check_record(&rec, &image).map_err(|d| e.corrupt(t, d))?;
    }
    Ok(h.info(state_path))
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Moves the state of `old_state` (which belongs to `old_image`) to a new state file for
/// `new_image` at `new_state_path`: counters, blocks, grace periods, lapsed state and audit
/// trails of every tenant that the new image still has (by tenant id; see
/// [`Engine::adopt_state`]).
///
/// Runs under the old state file's exclusive lock, so no count is lost: the new file is written
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
    let _g = old.lock.lock(true)?;
    if old.superseded() {
        return Err(SharedError::Superseded {
            path: old_state.to_path_buf(),
            by: None,
        });
    }
    old.recover()?;

    let image = open_image(new_image)?;
    image.verify_body()?;
    let canonical =
        fs::canonicalize(new_image).map_err(|e| SharedError::io(new_image, "resolve", e))?;
    let tmp = temp_sibling(new_state_path);
    let info = write_state_file(&image, &canonical, &tmp)?;
    let built = (|| {
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
        fs::rename(&tmp, new_state_path)
            .map_err(|e| SharedError::io(new_state_path, "rename into place", e))?;
        sync_dir(new_state_path)?;
        Ok((carried, removed, added))
    })();
    let (carried, removed, added) = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    {
        use std::os::unix::ffi::OsStrExt;
        let st = old.st();
        st.write_superseded_by(by.as_os_str().as_bytes());
        st.header_u32(header::SUPERSEDED)
            .store(1, Ordering::Release);
    }
    old.sync()?;
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
    //! The two crash windows, made deterministic: a writer that dies before committing (rolled
    //! back) and one that dies after committing but before publishing (kept).
    use super::*;
    use crate::{HeapStorage, RuleSet};

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn setup(name: &str) -> (Dir, PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(std::format!(
            "outguard-shared-unit-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cap = Capacity::default();
        let mut e = Engine::new(HeapStorage::new(&cap), cap, RuleSet::default()).unwrap();
        let t = e.add_tenant("contoso", true).unwrap();
        e.add_domain(t, "contoso.com", false, true).unwrap();
        let (image, state) = (dir.join("i"), dir.join("s"));
        super::super::compile(&e, &image).unwrap();
        super::super::create_state(&image, &state).unwrap();
        (Dir(dir), image, state)
    }

    fn msg() -> Message<'static> {
        Message {
            tenant: Some("contoso"),
            ..Message::new("x@elsewhere.example")
        }
    }

    fn total(e: &mut SharedEngine) -> u32 {
        e.status("contoso", 1000).unwrap().counters.total
    }

    #[test]
    fn a_writer_dying_before_commit_is_rolled_back() {
        let (_d, image, state) = setup("rollback");
        let mut a = SharedEngine::open(&image, &state).unwrap();
        a.record(1000, &msg(), Verdict::Clean).unwrap();
        // Steps 1-3 of `write_tenant`, then "death": the lock goes, nothing is committed.
        {
            let g = a.lock.lock(true).unwrap();
            let st = a.engine.storage();
            st.journal_save(0);
            st.header_u32(header::JOURNAL_TENANT)
                .store(0, Ordering::Relaxed);
            st.header_u32(header::JOURNAL_STATE)
                .store(1, Ordering::Release);
            let seq = st.seq(0).unwrap();
            seq.store(seq.load(Ordering::Relaxed) | 1, Ordering::Release);
            st.set_source(Source::Shared);
            for _ in 0..5 {
                a.engine.record(1000, &msg(), Verdict::Spam).unwrap();
            }
            drop(g);
        }
        let mut b = SharedEngine::open(&image, &state).unwrap();
        assert_eq!(total(&mut b), 1, "the half-done write is rolled back");
        assert_eq!(b.info().recoveries, 1);
        assert_eq!(b.info().writes, 1);
        b.record(1000, &msg(), Verdict::Clean).unwrap();
        assert_eq!(total(&mut b), 2);
        assert_eq!(total(&mut a), 2);
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
