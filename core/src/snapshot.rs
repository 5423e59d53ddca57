//! Snapshots: counters, blocks, grace periods, lapsed state and audit trails as bytes.
//!
//! Layout (little-endian): a 32-byte header — magic `OUTGUARD`, format version (u32),
//! reserved (u32), body length (u64), checksum of the body (u64) — then the body: a tenant
//! count (u32) and one record per tenant that has any state, keyed by tenant id so a snapshot
//! can be restored into an engine built from an edited policy. Restoring checks the header,
//! the checksum and the whole structure before it touches the engine.

use crate::engine::{AuditCells, Cells, TenantState};
use crate::storage::{RuleState, Storage};
use crate::{Engine, Error, Event};

/// First bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"OUTGUARD";
/// Format version written by this build.
pub const VERSION: u32 = 2;
const HEADER: usize = 32;
pub(crate) const EVENT_BYTES: usize = 36;
const RULE_BYTES: usize = 36;

/// What a restore did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RestoreReport {
    /// Tenants whose state was restored.
    pub restored: u32,
    /// Tenants in the snapshot that the engine does not have (their state is dropped).
    pub unknown: u32,
}

struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
    measure: bool,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) -> Result<(), Error> {
        let end = self.pos + b.len();
        if !self.measure {
            self.out
                .get_mut(self.pos..end)
                .ok_or(Error::BufferTooSmall)?
                .copy_from_slice(b);
        }
        self.pos = end;
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<(), Error> {
        self.put(&[v])
    }
    fn u32(&mut self, v: u32) -> Result<(), Error> {
        self.put(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<(), Error> {
        self.put(&v.to_le_bytes())
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::SnapshotCorrupt)?;
        let s = self.b.get(self.pos..end).ok_or(Error::SnapshotCorrupt)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Error> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn encode_event(w: &mut Writer<'_>, e: &Event) -> Result<(), Error> {
    w.u64(e.time)?;
    w.u64(e.until)?;
    w.u32(e.tenant)?;
    w.u32(e.total)?;
    w.u32(e.suspicious)?;
    w.u32(e.unregistered)?;
    w.put(&[e.kind, e.rule, e.monitor, 0])
}

pub(crate) fn decode_event(b: &[u8]) -> Option<Event> {
    if b.len() < EVENT_BYTES {
        return None;
    }
    Some(Event {
        time: le_u64(b, 0),
        until: le_u64(b, 8),
        tenant: le_u32(b, 16),
        total: le_u32(b, 20),
        suspicious: le_u32(b, 24),
        unregistered: le_u32(b, 28),
        kind: b[32],
        rule: b[33],
        monitor: b[34],
        reserved: 0,
        reserved2: 0,
    })
}

fn has_state(st: &TenantState<'_>) -> bool {
    st.flags & crate::storage::TENANT_LAPSED != 0
        || st.active_at != 0
        || st.audit_written != 0
        || st.rules.iter().any(|r| r.flags != 0 || r.grace_until != 0)
        || (0..st.threshold.len()).any(|i| st.threshold.get(i) != 0)
        || (0..st.unregistered.len()).any(|i| st.unregistered.get(i) != 0)
}

fn write_tenant(w: &mut Writer<'_>, st: &TenantState<'_>) -> Result<(), Error> {
    w.u8(st.id.len() as u8)?;
    w.put(st.id)?;
    w.u8(st.flags)?;
    w.u64(st.active_at)?;
    w.u64(st.lapsed_at)?;
    for r in &st.rules {
        w.u64(r.head)?;
        w.u64(r.blocked_at)?;
        w.u64(r.until)?;
        w.u64(r.grace_until)?;
        w.u32(r.flags)?;
    }
    w.u64(st.slot_lens[0])?;
    w.u64(st.slot_lens[1])?;
    for cells in [&st.threshold, &st.unregistered] {
        w.u32(cells.len() as u32)?;
        for i in 0..cells.len() {
            w.u32(cells.get(i))?;
        }
    }
    w.u32(st.audit_written)?;
    let n = (st.audit_written as usize).min(st.audit.len());
    w.u32(n as u32)?;
    // Oldest first.
    let depth = st.audit.len().max(1);
    for k in 0..n {
        let i = (st.audit_written as usize - n + k) % depth;
        if let Some(e) = st.audit.get(i) {
            encode_event(w, &e)?;
        }
    }
    Ok(())
}

fn read_tenant<'a>(r: &mut Reader<'a>) -> Result<TenantState<'a>, Error> {
    let id_len = r.u8()? as usize;
    let id = r.take(id_len)?;
    if id.is_empty() || core::str::from_utf8(id).is_err() {
        return Err(Error::SnapshotCorrupt);
    }
    let flags = r.u8()?;
    let active_at = r.u64()?;
    let lapsed_at = r.u64()?;
    let mut rules = [RuleState::default(); 2];
    for rule in &mut rules {
        rule.head = r.u64()?;
        rule.blocked_at = r.u64()?;
        rule.until = r.u64()?;
        rule.grace_until = r.u64()?;
        rule.flags = r.u32()?;
        if rule.flags & !7 != 0 {
            return Err(Error::SnapshotCorrupt);
        }
    }
    let slot_lens = [r.u64()?, r.u64()?];
    if slot_lens.contains(&0) {
        return Err(Error::SnapshotCorrupt);
    }
    let n = r.u32()? as usize;
    if n == 0 || n % 2 != 0 || n > 1 << 16 {
        return Err(Error::SnapshotCorrupt);
    }
    let threshold = Cells::Bytes(r.take(n * 4)?);
    let n = r.u32()? as usize;
    if n == 0 || n > 1 << 16 {
        return Err(Error::SnapshotCorrupt);
    }
    let unregistered = Cells::Bytes(r.take(n * 4)?);
    let audit_written = r.u32()?;
    let n = r.u32()? as usize;
    if n > audit_written as usize || n > 1 << 16 {
        return Err(Error::SnapshotCorrupt);
    }
    let audit_bytes = r.take(n * EVENT_BYTES)?;
    // The encoded audit is oldest-first and complete: present it as a ring of exactly `n`
    // entries that was written `n` times.
    let _ = RULE_BYTES;
    Ok(TenantState {
        id,
        flags,
        active_at,
        lapsed_at,
        rules,
        slot_lens,
        threshold,
        unregistered,
        audit_written: n as u32,
        audit: AuditCells::Bytes(audit_bytes),
    })
}

impl<S: Storage> Engine<S> {
    fn write_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        let count = (0..self.tenants_high())
            .filter(|&t| self.state_of(t).is_some_and(|st| has_state(&st)))
            .count();
        w.u32(count as u32)?;
        for t in 0..self.tenants_high() {
            if let Some(st) = self.state_of(t) {
                if has_state(&st) {
                    write_tenant(w, &st)?;
                }
            }
        }
        Ok(())
    }

    /// Bytes a snapshot of the current state needs.
    pub fn snapshot_len(&self) -> usize {
        let mut w = Writer {
            out: &mut [],
            pos: HEADER,
            measure: true,
        };
        let _ = self.write_body(&mut w);
        w.pos
    }

    /// Writes a snapshot into `out`; returns its length. [`Error::BufferTooSmall`] when `out`
    /// is shorter than [`Engine::snapshot_len`].
    pub fn write_snapshot(&self, out: &mut [u8]) -> Result<usize, Error> {
        let len = self.snapshot_len();
        if out.len() < len {
            return Err(Error::BufferTooSmall);
        }
        let mut w = Writer {
            out,
            pos: HEADER,
            measure: false,
        };
        self.write_body(&mut w)?;
        let end = w.pos;
        let sum = crate::hash::checksum(&out[HEADER..end]);
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&0u32.to_le_bytes());
        out[16..24].copy_from_slice(&((end - HEADER) as u64).to_le_bytes());
        out[24..32].copy_from_slice(&sum.to_le_bytes());
        Ok(end)
    }

    /// Restores a snapshot: afterwards every tenant of the engine has exactly the state the
    /// snapshot holds for its id (tenants absent from the snapshot start clean). A truncated,
    /// corrupt, foreign or other-version snapshot is an error and leaves the engine as it was.
    pub fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<RestoreReport, Error> {
        let body = verify(bytes)?;
        // Pass 1: structure only.
        let mut r = Reader { b: body, pos: 0 };
        let count = r.u32()?;
        for _ in 0..count {
            read_tenant(&mut r)?;
        }
        if r.pos != body.len() {
            return Err(Error::SnapshotCorrupt);
        }
        // Pass 2: apply.
        self.reset_state();
        let mut report = RestoreReport::default();
        let mut r = Reader { b: body, pos: 0 };
        let count = r.u32()?;
        for _ in 0..count {
            let st = read_tenant(&mut r)?;
            match self.import_state(&st) {
                Ok(()) => report.restored += 1,
                Err(_) => report.unknown += 1,
            }
        }
        Ok(report)
    }
}

/// Checks the header and checksum; returns the body.
pub fn verify(bytes: &[u8]) -> Result<&[u8], Error> {
    if bytes.len() < 8 {
        return Err(if MAGIC.starts_with(bytes) {
            Error::SnapshotTruncated
        } else {
            Error::SnapshotForeign
        });
    }
    if bytes[0..8] != MAGIC {
        return Err(Error::SnapshotForeign);
    }
    if bytes.len() < HEADER {
        return Err(Error::SnapshotTruncated);
    }
    if le_u32(bytes, 8) != VERSION {
        return Err(Error::SnapshotVersion);
    }
    if le_u32(bytes, 12) != 0 {
        return Err(Error::SnapshotCorrupt);
    }
    let len = le_u64(bytes, 16);
    let avail = (bytes.len() - HEADER) as u64;
    if len > avail {
        return Err(Error::SnapshotTruncated);
    }
    if len < avail {
        return Err(Error::SnapshotCorrupt);
    }
    let body = &bytes[HEADER..];
    if crate::hash::checksum(body) != le_u64(bytes, 24) {
        return Err(Error::SnapshotChecksum);
    }
    Ok(body)
}
