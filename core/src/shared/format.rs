//! The two file formats: the compiled policy image and the shared state file.
//!
//! An image starts with an 8192-byte header, a state file with a 4096-byte header page; integers in headers are little-endian, records in
//! tables are in the machine's byte order (a byte-order marker and the record sizes in the header
//! refuse files of another machine or build). Tables start at 64-byte-aligned offsets.
//!
//! Image header: magic `OGIMAGE\0` · version (u32) · header length (u32) · byte-order marker
//! (u32, native) · reserved (u32) · image id (u64: checksum of the `Meta` bytes and of everything
//! after the header page)
//! · file length (u64) · six record sizes (u16) · reserved · table directory (offset, bytes: u64
//! each) of tenant_index, domains, connectors, connector_index, ranges, overrides, names and the
//! tenants' initial records · `Meta` length (u32) and `Meta::encode` bytes · header checksum
//! (u64, the page's last 8 bytes, over everything before it).
//!
//! State header (version 3): magic `OGSTATE\0` · version · header length · byte-order marker ·
//! reserved · image id · file length · tenants, counter cells per tenant, audit depth, journaled
//! audit slots per stripe (u32 each) · record sizes (u16 ×2) · stripes (u32) · table directory of
//! tenants, counters, audit, sequence numbers, stripe blocks, journal records, journal cells,
//! journal audit slots · creation time (u64) · lock kind and lock size (u32 each: which mutex
//! implementation the stripe blocks hold) · image path length (u32) and bytes · header checksum
//! at byte 2040 (over bytes 0..2040). From byte 2048 the mutable words: superseded flag (0,
//! 1, or 2 while a migration is pending), a reserved word, the lock epoch (the boot the stripe
//! locks were last initialized in; 0 while an initialization is unfinished), the device and
//! inode of a pending migration's new file, and the superseding file's path.
//!
//! A stripe block (128 bytes, one per stripe; tenant `t` is in stripe `t % stripes`) holds the
//! stripe's lock, its journal state and tenant, and its write and recovery counts. Version 2
//! files (one lock and one journal for the whole file) are refused.

use core::mem::size_of;
use std::boxed::Box;
use std::format;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::vec;
use std::vec::Vec;

use super::sys::{
    bytes_of, header, preallocate, ImageRegions, Mapping, Region, StateRegions, StripeBlock,
    LOCK_BYTES, LOCK_KIND,
};
use super::{FileKind, SharedError};
use crate::hash::checksum;
use crate::storage::{ConnectorRecord, DomainEntry, RangeEntry, RuleState, TenantRecord};
use crate::{Capacity, Engine, Error, Event, Layout, Meta, RuleSetRecord, Storage};

/// First bytes of a compiled policy image.
pub const IMAGE_MAGIC: [u8; 8] = *b"OGIMAGE\0";
/// First bytes of a shared state file.
pub const STATE_MAGIC: [u8; 8] = *b"OGSTATE\0";
/// Image format version written and read by this build.
pub const IMAGE_VERSION: u32 = 2;
/// State file format version written and read by this build.
pub const STATE_VERSION: u32 = 3;

pub(super) const PAGE: usize = 4096;
/// The image header takes two pages (its `Meta` holds per-class prefix-length counts).
pub(super) const IMG_PAGE: usize = 2 * PAGE;
/// Longest path recorded in a state header.
pub(super) const MAX_PATH: usize = 1024;
/// Audit slots saved in the journal: more than one call ever writes (at most 4 events).
pub(super) const JOURNAL_AUDIT_SLOTS: usize = 8;
/// Lock stripes of a state file (fewer when it has fewer tenants): writers of tenants in
/// different stripes run in parallel.
pub(super) const STRIPES: usize = 64;

/// The number of stripes of a state file with `tenants` tenant records.
pub(super) fn stripes_for(tenants: usize) -> usize {
    tenants.clamp(1, STRIPES)
}
const ALIGN: usize = 64;
const ENDIAN: u32 = 0x0102_0304;

mod img {
    pub const VERSION: usize = 8;
    pub const HEADER_LEN: usize = 12;
    pub const ENDIAN: usize = 16;
    pub const ID: usize = 24;
    pub const FILE_LEN: usize = 32;
    pub const SIZES: usize = 40;
    pub const DIR: usize = 56;
    pub const TABLES: usize = 8;
    pub const META_LEN: usize = DIR + TABLES * 16;
    pub const META: usize = META_LEN + 8;
    pub const SUM: usize = super::IMG_PAGE - 8;
}

mod st {
    pub const VERSION: usize = 8;
    pub const HEADER_LEN: usize = 12;
    pub const ENDIAN: usize = 16;
    pub const IMAGE_ID: usize = 24;
    pub const FILE_LEN: usize = 32;
    pub const TENANTS: usize = 40;
    pub const STRIDE: usize = 44;
    pub const DEPTH: usize = 48;
    pub const JOURNAL_AUDIT: usize = 52;
    pub const SIZES: usize = 56;
    pub const STRIPES: usize = 60;
    pub const DIR: usize = 64;
    pub const TABLES: usize = 8;
    pub const CREATED: usize = DIR + TABLES * 16;
    pub const LOCK_KIND: usize = CREATED + 8;
    pub const LOCK_BYTES: usize = LOCK_KIND + 4;
    pub const IMAGE_PATH_LEN: usize = LOCK_BYTES + 4;
    pub const IMAGE_PATH: usize = IMAGE_PATH_LEN + 8;
    pub const SUM: usize = 2040;
}

const _: () = {
    assert!(img::META + Meta::ENCODED_LEN <= img::SUM);
    assert!(st::IMAGE_PATH + MAX_PATH <= st::SUM);
    assert!(header::SUPERSEDED_BY + MAX_PATH <= PAGE);
};

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    if let Some(s) = b.get_mut(at..at + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn get16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}
fn get32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}
fn get64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn record_sizes_image() -> [u16; 6] {
    [
        size_of::<TenantRecord>() as u16,
        size_of::<DomainEntry>() as u16,
        size_of::<ConnectorRecord>() as u16,
        size_of::<RangeEntry>() as u16,
        size_of::<RuleSetRecord>() as u16,
        size_of::<Event>() as u16,
    ]
}

/// Lays regions out one after the other from the end of the header page.
struct Cursor(usize);

impl Cursor {
    fn next(&mut self, len: usize, size: usize) -> Option<Region> {
        let off = self.0.checked_next_multiple_of(ALIGN)?;
        self.0 = off.checked_add(len.checked_mul(size)?)?;
        Some(Region { off, len })
    }
    fn end(&self) -> Option<usize> {
        self.0.checked_next_multiple_of(ALIGN)
    }
}

fn image_regions(l: &Layout) -> Option<(ImageRegions, usize)> {
    let mut c = Cursor(IMG_PAGE);
    let r = ImageRegions {
        tenant_index: c.next(l.tenant_index, 4)?,
        domains: c.next(l.domains, size_of::<DomainEntry>())?,
        connectors: c.next(l.connectors, size_of::<ConnectorRecord>())?,
        connector_index: c.next(l.connector_index, 4)?,
        ranges: c.next(l.ranges, size_of::<RangeEntry>())?,
        overrides: c.next(l.overrides, size_of::<RuleSetRecord>())?,
        names: c.next(l.names, 1)?,
        tenants: c.next(l.tenants, size_of::<TenantRecord>())?,
    };
    Some((r, c.end()?))
}

fn image_dir(r: &ImageRegions) -> [(Region, usize); img::TABLES] {
    [
        (r.tenant_index, 4),
        (r.domains, size_of::<DomainEntry>()),
        (r.connectors, size_of::<ConnectorRecord>()),
        (r.connector_index, 4),
        (r.ranges, size_of::<RangeEntry>()),
        (r.overrides, size_of::<RuleSetRecord>()),
        (r.names, 1),
        (r.tenants, size_of::<TenantRecord>()),
    ]
}

pub(super) fn state_regions(
    tenants: usize,
    stride: usize,
    depth: usize,
    stripes: usize,
) -> Option<(StateRegions, usize)> {
    let mut c = Cursor(PAGE);
    let slots = depth.min(JOURNAL_AUDIT_SLOTS);
    let r = StateRegions {
        tenants: c.next(tenants, size_of::<TenantRecord>())?,
        counters: c.next(tenants.checked_mul(stride)?, 4)?,
        audit: c.next(tenants.checked_mul(depth)?, size_of::<Event>())?,
        seqs: c.next(tenants, 8)?,
        stripes: c.next(stripes, size_of::<StripeBlock>())?,
        journal_record: c.next(stripes, size_of::<TenantRecord>())?,
        journal_cells: c.next(stripes.checked_mul(stride)?, 4)?,
        journal_audit: c.next(stripes.checked_mul(slots)?, size_of::<Event>())?,
    };
    Some((r, c.end()?))
}

fn state_dir(r: &StateRegions) -> [(Region, usize); st::TABLES] {
    [
        (r.tenants, size_of::<TenantRecord>()),
        (r.counters, 4),
        (r.audit, size_of::<Event>()),
        (r.seqs, 8),
        (r.stripes, size_of::<StripeBlock>()),
        (r.journal_record, size_of::<TenantRecord>()),
        (r.journal_cells, 4),
        (r.journal_audit, size_of::<Event>()),
    ]
}

fn dir_matches(h: &[u8], at: usize, dir: &[(Region, usize)]) -> bool {
    dir.iter().enumerate().all(|(i, (r, size))| {
        get64(h, at + i * 16) == r.off as u64 && get64(h, at + i * 16 + 8) == (r.len * size) as u64
    })
}

fn put_dir(h: &mut [u8], at: usize, dir: &[(Region, usize)]) {
    for (i, (r, size)) in dir.iter().enumerate() {
        put64(h, at + i * 16, r.off as u64);
        put64(h, at + i * 16 + 8, (r.len * size) as u64);
    }
}

// ----- common file helpers --------------------------------------------------------------------

/// A fresh name next to `path` for a file that is renamed or linked into place.
pub(super) fn temp_sibling(path: &Path) -> PathBuf {
    use core::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = format!(
        ".{name}.tmp.{}.{}.{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    path.with_file_name(tmp)
}

/// Makes a rename or link in `path`'s directory durable.
pub(super) fn sync_dir(path: &Path) -> Result<(), SharedError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SharedError::io(dir, "sync directory", e))
}

/// Writes `bytes` to `path` through a temporary file and a rename: readers see the old file or
/// the new one, never a part.
fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), SharedError> {
    let tmp = temp_sibling(path);
    let res = (|| {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| SharedError::io(&tmp, "create", e))?;
        f.write_all_at(bytes, 0)
            .and_then(|_| f.sync_all())
            .map_err(|e| SharedError::io(&tmp, "write", e))?;
        fs::rename(&tmp, path).map_err(|e| SharedError::io(path, "rename into place", e))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    sync_dir(path)
}

fn read_header(path: &Path, kind: FileKind, file: &File) -> Result<(Vec<u8>, u64), SharedError> {
    let size = file
        .metadata()
        .map_err(|e| SharedError::io(path, "stat", e))?
        .len();
    let page = match kind {
        FileKind::Image => IMG_PAGE,
        FileKind::State => PAGE,
    };
    let n = (size.min(page as u64)) as usize;
    let mut h = vec![0u8; n];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| SharedError::io(path, "read", e))?;
    let magic = match kind {
        FileKind::Image => IMAGE_MAGIC,
        FileKind::State => STATE_MAGIC,
    };
    if h.len() < 8 {
        if magic.starts_with(&h) {
            return Err(SharedError::Truncated {
                path: path.to_path_buf(),
                kind,
                expected: page as u64,
                found: size,
            });
        }
        return Err(SharedError::BadMagic {
            path: path.to_path_buf(),
            kind,
        });
    }
    if h[..8] != magic {
        return Err(SharedError::BadMagic {
            path: path.to_path_buf(),
            kind,
        });
    }
    let version = get32(&h, img::VERSION);
    let expected = match kind {
        FileKind::Image => IMAGE_VERSION,
        FileKind::State => STATE_VERSION,
    };
    if h.len() >= 12 && version != expected {
        return Err(SharedError::Version {
            path: path.to_path_buf(),
            kind,
            found: version,
            expected,
        });
    }
    if h.len() < page {
        return Err(SharedError::Truncated {
            path: path.to_path_buf(),
            kind,
            expected: page as u64,
            found: size,
        });
    }
    Ok((h, size))
}

// ----- images -------------------------------------------------------------------------------

/// What a policy image holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The file.
    pub path: PathBuf,
    /// The image id: the checksum of the image body. A state file records the id of its image.
    pub id: u64,
    /// File length in bytes.
    pub bytes: u64,
    /// The engine capacity the tables were laid out for.
    pub capacity: Capacity,
    /// Tenants.
    pub tenants: u32,
    /// Domain entries (accepted domains and certificate-connector domains).
    pub domains: u32,
    /// Connectors.
    pub connectors: u32,
    /// CIDR ranges.
    pub ranges: u32,
}

/// The image id: a checksum of the engine metadata (capacity, default rules, fill levels) and of
/// the tables.
fn image_id(meta: &[u8], body: &[u8]) -> u64 {
    crate::hash::hash_bytes(checksum(body), meta)
}

/// An opened image: its private mapping and what its header says.
pub(super) struct ImageFile {
    pub path: PathBuf,
    pub map: Mapping,
    pub meta: Meta,
    pub id: u64,
    pub regions: ImageRegions,
    pub len: u64,
}

impl ImageFile {
    pub fn info(&self) -> ImageInfo {
        ImageInfo {
            path: self.path.clone(),
            id: self.id,
            bytes: self.len,
            capacity: self.meta.capacity,
            tenants: self.meta.tenants_live,
            domains: self.meta.domains_live,
            connectors: self.meta.connectors_high,
            ranges: self.meta.ranges_live,
        }
    }

    /// Recomputes the image id (reads the whole file).
    pub fn verify_body(&self) -> Result<(), SharedError> {
        let body = self
            .map
            .bytes(IMG_PAGE, self.map.len().saturating_sub(IMG_PAGE))
            .unwrap_or(&[]);
        let mut meta = [0u8; Meta::ENCODED_LEN];
        let encoded = self.meta.encode(&mut meta).is_ok();
        if !encoded || image_id(&meta, body) != self.id {
            return Err(SharedError::Checksum {
                path: self.path.clone(),
            });
        }
        Ok(())
    }
}

/// Opens and maps an image, checking its header (not the body checksum).
pub(super) fn open_image(path: &Path) -> Result<ImageFile, SharedError> {
    let kind = FileKind::Image;
    let file = File::open(path).map_err(|e| SharedError::io(path, "open", e))?;
    let (h, size) = read_header(path, kind, &file)?;
    let corrupt = |detail| SharedError::CorruptHeader {
        path: path.to_path_buf(),
        kind,
        detail,
    };
    if checksum(&h[..img::SUM]) != get64(&h, img::SUM) {
        return Err(corrupt("header checksum mismatch"));
    }
    if get32(&h, img::HEADER_LEN) as usize != IMG_PAGE {
        return Err(corrupt("header length"));
    }
    let incompatible = |detail| SharedError::Incompatible {
        path: path.to_path_buf(),
        kind,
        detail,
    };
    if h[img::ENDIAN..img::ENDIAN + 4] != ENDIAN.to_ne_bytes() {
        return Err(incompatible("byte order differs"));
    }
    let sizes = record_sizes_image();
    if (0..sizes.len()).any(|i| get16(&h, img::SIZES + 2 * i) != sizes[i]) {
        return Err(incompatible("record layout differs"));
    }
    let file_len = get64(&h, img::FILE_LEN);
    if file_len != size {
        return Err(SharedError::Truncated {
            path: path.to_path_buf(),
            kind,
            expected: file_len,
            found: size,
        });
    }
    if get32(&h, img::META_LEN) as usize != Meta::ENCODED_LEN {
        return Err(corrupt("metadata length"));
    }
    let meta = Meta::decode(&h[img::META..img::META + Meta::ENCODED_LEN])
        .map_err(|_| corrupt("engine metadata"))?;
    meta.rules.validate().map_err(|_| corrupt("rule set"))?;
    let layout = meta.capacity.layout();
    let (regions, end) = image_regions(&layout).ok_or(corrupt("table sizes overflow"))?;
    if end as u64 != file_len || !dir_matches(&h, img::DIR, &image_dir(&regions)) {
        return Err(corrupt("table directory does not match the capacity"));
    }
    let len = usize::try_from(size).map_err(|_| corrupt("file too large"))?;
    let map = Mapping::file(&file, len, false).map_err(|e| SharedError::io(path, "map", e))?;
    Ok(ImageFile {
        path: path.to_path_buf(),
        map,
        meta,
        id: get64(&h, img::ID),
        regions,
        len: size,
    })
}

/// Compiles an engine's policy tables into an image at `path` (replacing any file there
/// atomically), then reads it back and verifies its checksum.
///
/// The image holds the policy: tenants (identity, licence, lapsed state, overrides), domains,
/// connectors, ranges and the default rules. Per-rule state, counters and audit trails are not
/// part of it: they live in state files ([`create_state`], [`super::migrate`]).
pub fn compile<S: Storage>(engine: &Engine<S>, path: &Path) -> Result<ImageInfo, SharedError> {
    let meta = engine.meta();
    let layout = meta.capacity.layout();
    let p = engine.storage().parts();
    let too_large = SharedError::Engine(Error::InvalidCapacity("too large for a policy image"));
    let short = || SharedError::Engine(Error::InvalidCapacity("storage shorter than the layout"));
    if !p.fits(&layout) {
        return Err(short());
    }
    let (r, end) = image_regions(&layout).ok_or(too_large)?;
    let mut buf = vec![0u8; end];
    let tenants: Vec<TenantRecord> = p
        .tenants
        .get(..layout.tenants)
        .ok_or_else(short)?
        .iter()
        .map(|t| TenantRecord {
            rules: [RuleState::EMPTY; 2],
            audit_written: 0,
            ..*t
        })
        .collect();
    let tables: [(Region, &[u8]); img::TABLES] = [
        (
            r.tenant_index,
            bytes_of(
                p.tenant_index
                    .get(..layout.tenant_index)
                    .ok_or_else(short)?,
            ),
        ),
        (
            r.domains,
            bytes_of(p.domains.get(..layout.domains).ok_or_else(short)?),
        ),
        (
            r.connectors,
            bytes_of(p.connectors.get(..layout.connectors).ok_or_else(short)?),
        ),
        (
            r.connector_index,
            bytes_of(
                p.connector_index
                    .get(..layout.connector_index)
                    .ok_or_else(short)?,
            ),
        ),
        (
            r.ranges,
            bytes_of(p.ranges.get(..layout.ranges).ok_or_else(short)?),
        ),
        (
            r.overrides,
            bytes_of(p.overrides.get(..layout.overrides).ok_or_else(short)?),
        ),
        (
            r.names,
            bytes_of(p.names.get(..layout.names).ok_or_else(short)?),
        ),
        (r.tenants, bytes_of(&tenants)),
    ];
    for (region, bytes) in tables {
        buf.get_mut(region.off..region.off + bytes.len())
            .ok_or_else(short)?
            .copy_from_slice(bytes);
    }
    let mut meta_bytes = [0u8; Meta::ENCODED_LEN];
    meta.encode(&mut meta_bytes)?;
    let id = image_id(&meta_bytes, &buf[IMG_PAGE..]);
    let h = &mut buf[..IMG_PAGE];
    h[..8].copy_from_slice(&IMAGE_MAGIC);
    put32(h, img::VERSION, IMAGE_VERSION);
    put32(h, img::HEADER_LEN, IMG_PAGE as u32);
    h[img::ENDIAN..img::ENDIAN + 4].copy_from_slice(&ENDIAN.to_ne_bytes());
    put64(h, img::ID, id);
    put64(h, img::FILE_LEN, end as u64);
    for (i, s) in record_sizes_image().into_iter().enumerate() {
        put16(h, img::SIZES + 2 * i, s);
    }
    put_dir(h, img::DIR, &image_dir(&r));
    put32(h, img::META_LEN, Meta::ENCODED_LEN as u32);
    h[img::META..img::META + Meta::ENCODED_LEN].copy_from_slice(&meta_bytes);
    let sum = checksum(&h[..img::SUM]);
    put64(h, img::SUM, sum);
    write_replace(path, &buf)?;
    verify_image(path)
}

/// Builds the policy and compiles it into an image at `path` (see [`compile`]).
pub fn compile_policy(
    policy: &crate::policy::Policy,
    path: &Path,
) -> Result<ImageInfo, SharedError> {
    let engine = policy
        .build()
        .map_err(|e| SharedError::Policy(Box::new(e)))?;
    compile(&engine, path)
}

/// Opens an image and verifies everything, the body checksum included (reads the whole file).
pub fn verify_image(path: &Path) -> Result<ImageInfo, SharedError> {
    let image = open_image(path)?;
    image.verify_body()?;
    Ok(image.info())
}

// ----- state files --------------------------------------------------------------------------

/// What a state file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateInfo {
    /// The file.
    pub path: PathBuf,
    /// The id of the image it belongs to.
    pub image_id: u64,
    /// The image it was created for (absolute path, as recorded in its header).
    pub image_path: PathBuf,
    /// File length in bytes.
    pub bytes: u64,
    /// Tenant records (the image's tenant capacity).
    pub tenants: u32,
}

/// What a state header says.
pub(super) struct StateHeader {
    pub image_id: u64,
    pub image_path: PathBuf,
    pub regions: StateRegions,
    pub len: u64,
    pub tenants: u32,
    pub stride: u32,
    pub depth: u32,
    pub superseded: u32,
}

impl StateHeader {
    pub fn info(&self, path: &Path) -> StateInfo {
        StateInfo {
            path: path.to_path_buf(),
            image_id: self.image_id,
            image_path: self.image_path.clone(),
            bytes: self.len,
            tenants: self.tenants,
        }
    }
}

fn parse_state_header(path: &Path, h: &[u8], size: u64) -> Result<StateHeader, SharedError> {
    let kind = FileKind::State;
    let corrupt = |detail| SharedError::CorruptHeader {
        path: path.to_path_buf(),
        kind,
        detail,
    };
    if checksum(&h[..st::SUM]) != get64(h, st::SUM) {
        return Err(corrupt("header checksum mismatch"));
    }
    if get32(h, st::HEADER_LEN) as usize != PAGE {
        return Err(corrupt("header length"));
    }
    if h[st::ENDIAN..st::ENDIAN + 4] != ENDIAN.to_ne_bytes() {
        return Err(SharedError::Incompatible {
            path: path.to_path_buf(),
            kind,
            detail: "byte order differs",
        });
    }
    if get16(h, st::SIZES) as usize != size_of::<TenantRecord>()
        || get16(h, st::SIZES + 2) as usize != size_of::<Event>()
    {
        return Err(SharedError::Incompatible {
            path: path.to_path_buf(),
            kind,
            detail: "record layout differs",
        });
    }
    let len = get64(h, st::FILE_LEN);
    if len != size {
        return Err(SharedError::Truncated {
            path: path.to_path_buf(),
            kind,
            expected: len,
            found: size,
        });
    }
    let (tenants, stride, depth) = (
        get32(h, st::TENANTS),
        get32(h, st::STRIDE),
        get32(h, st::DEPTH),
    );
    if tenants == 0 || stride == 0 || depth == 0 || depth > u16::MAX as u32 {
        return Err(corrupt("table sizes"));
    }
    if get32(h, st::JOURNAL_AUDIT) as usize != (depth as usize).min(JOURNAL_AUDIT_SLOTS) {
        return Err(corrupt("journal size"));
    }
    let stripes = get32(h, st::STRIPES);
    if stripes == 0 || stripes > tenants {
        return Err(corrupt("stripe count"));
    }
    if get32(h, st::LOCK_KIND) != LOCK_KIND || get32(h, st::LOCK_BYTES) != LOCK_BYTES {
        return Err(SharedError::Incompatible {
            path: path.to_path_buf(),
            kind,
            detail: "its stripe locks are of another implementation (another C library or system)",
        });
    }
    let (regions, end) = state_regions(
        tenants as usize,
        stride as usize,
        depth as usize,
        stripes as usize,
    )
    .ok_or(corrupt("table sizes overflow"))?;
    if end as u64 != len || !dir_matches(h, st::DIR, &state_dir(&regions)) {
        return Err(corrupt("table directory does not match the sizes"));
    }
    let plen = get32(h, st::IMAGE_PATH_LEN) as usize;
    if plen > MAX_PATH {
        return Err(corrupt("image path length"));
    }
    let image_path = {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(
            &h[st::IMAGE_PATH..st::IMAGE_PATH + plen],
        ))
    };
    let sh = StateHeader {
        image_id: get64(h, st::IMAGE_ID),
        image_path,
        regions,
        len,
        tenants,
        stride,
        depth,
        superseded: get32(h, header::SUPERSEDED),
    };
    if sh.superseded > 2 || get32(h, header::RESERVED) != 0 {
        return Err(corrupt("flag words"));
    }
    Ok(sh)
}

/// What a state file's header says (which image it belongs to, its size), read without
/// mapping the file or taking any lock.
pub fn read_state_info(path: &Path) -> Result<StateInfo, SharedError> {
    read_state_header(path).map(|h| h.info(path))
}

/// Reads a state file's header (without mapping it).
pub(super) fn read_state_header(path: &Path) -> Result<StateHeader, SharedError> {
    let file = File::open(path).map_err(|e| SharedError::io(path, "open", e))?;
    let (h, size) = read_header(path, FileKind::State, &file)?;
    parse_state_header(path, &h, size)
}

/// An opened state file: its shared mapping and what its header says.
pub(super) struct StateFile {
    pub path: PathBuf,
    pub file: File,
    pub map: Mapping,
    pub header: StateHeader,
}

/// Opens and maps a state file, checking its header and that it belongs to `image`.
/// A superseded file is refused (with the path of its successor when recorded).
pub(super) fn open_state(path: &Path, image: &ImageFile) -> Result<StateFile, SharedError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| SharedError::io(path, "open", e))?;
    let (h, size) = read_header(path, FileKind::State, &file)?;
    let header = parse_state_header(path, &h, size)?;
    if header.image_id != image.id {
        return Err(SharedError::ImageMismatch {
            state: path.to_path_buf(),
            image: image.path.clone(),
            state_image_id: header.image_id,
            image_id: image.id,
        });
    }
    let cap = &image.meta.capacity;
    if header.tenants != cap.tenants
        || header.stride as usize != cap.counter_stride()
        || header.depth != cap.audit_depth as u32
    {
        return Err(SharedError::CorruptHeader {
            path: path.to_path_buf(),
            kind: FileKind::State,
            detail: "table sizes do not match the image",
        });
    }
    let len = usize::try_from(size).map_err(|_| SharedError::CorruptHeader {
        path: path.to_path_buf(),
        kind: FileKind::State,
        detail: "file too large",
    })?;
    let map = Mapping::file(&file, len, true).map_err(|e| SharedError::io(path, "map", e))?;
    // 2: a migration is pending; it is settled under the stripe locks (see `migrate`).
    if header.superseded == 1 {
        let by = superseded_by_of(&h);
        return Err(SharedError::Superseded {
            path: path.to_path_buf(),
            by,
        });
    }
    Ok(StateFile {
        path: path.to_path_buf(),
        file,
        map,
        header,
    })
}

fn superseded_by_of(h: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let n = (get32(h, header::SUPERSEDED_BY_LEN) as usize).min(MAX_PATH);
    let b = h.get(header::SUPERSEDED_BY..header::SUPERSEDED_BY + n)?;
    (!b.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(b)))
}

/// Writes a fresh state file for `image` at `path` (which must not exist): the image's initial
/// tenant records, zero counters, empty audit rings.
pub(super) fn write_state_file(
    image: &ImageFile,
    image_path: &Path,
    path: &Path,
) -> Result<StateInfo, SharedError> {
    use std::os::unix::ffi::OsStrExt;
    let cap = &image.meta.capacity;
    let tenants = cap.tenants as usize;
    let stride = cap.counter_stride();
    let depth = cap.audit_depth as usize;
    let stripes = stripes_for(tenants);
    let (r, end) = state_regions(tenants, stride, depth, stripes).ok_or(SharedError::Engine(
        Error::InvalidCapacity("too large for a state file"),
    ))?;
    let ipath = image_path.as_os_str().as_bytes();
    if ipath.len() > MAX_PATH {
        return Err(SharedError::PathTooLong {
            path: image_path.to_path_buf(),
        });
    }
    let mut h = vec![0u8; PAGE];
    h[..8].copy_from_slice(&STATE_MAGIC);
    put32(&mut h, st::VERSION, STATE_VERSION);
    put32(&mut h, st::HEADER_LEN, PAGE as u32);
    h[st::ENDIAN..st::ENDIAN + 4].copy_from_slice(&ENDIAN.to_ne_bytes());
    put64(&mut h, st::IMAGE_ID, image.id);
    put64(&mut h, st::FILE_LEN, end as u64);
    put32(&mut h, st::TENANTS, tenants as u32);
    put32(&mut h, st::STRIDE, stride as u32);
    put32(&mut h, st::DEPTH, depth as u32);
    put32(
        &mut h,
        st::JOURNAL_AUDIT,
        depth.min(JOURNAL_AUDIT_SLOTS) as u32,
    );
    put16(&mut h, st::SIZES, size_of::<TenantRecord>() as u16);
    put16(&mut h, st::SIZES + 2, size_of::<Event>() as u16);
    put32(&mut h, st::STRIPES, stripes as u32);
    put_dir(&mut h, st::DIR, &state_dir(&r));
    put32(&mut h, st::LOCK_KIND, LOCK_KIND);
    put32(&mut h, st::LOCK_BYTES, LOCK_BYTES);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    put64(&mut h, st::CREATED, created);
    put32(&mut h, st::IMAGE_PATH_LEN, ipath.len() as u32);
    h[st::IMAGE_PATH..st::IMAGE_PATH + ipath.len()].copy_from_slice(ipath);
    let sum = checksum(&h[..st::SUM]);
    put64(&mut h, st::SUM, sum);

    let it = image.regions.tenants;
    let initial = image
        .map
        .bytes(it.off, it.len * size_of::<TenantRecord>())
        .ok_or(SharedError::CorruptHeader {
            path: image.path.clone(),
            kind: FileKind::Image,
            detail: "tenant table outside the file",
        })?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o660)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                SharedError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                SharedError::io(path, "create", e)
            }
        })?;
    let res = (|| {
        f.set_len(end as u64)?;
        preallocate(&f, end as u64)?;
        f.write_all_at(&h, 0)?;
        f.write_all_at(initial, r.tenants.off as u64)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(path);
        return Err(SharedError::io(path, "write", e));
    }
    Ok(StateInfo {
        path: path.to_path_buf(),
        image_id: image.id,
        image_path: image_path.to_path_buf(),
        bytes: end as u64,
        tenants: tenants as u32,
    })
}

/// Creates a state file for an image: the image's tenants with zero counters and empty audit
/// trails. Verifies the image completely first (its checksum). Refuses to replace an existing
/// file ([`SharedError::Exists`]): two processes racing to create it get one file. The file is
/// created with mode 0660 (less the umask); the mail server's user needs to read and write it.
pub fn create_state(image_path: &Path, state_path: &Path) -> Result<StateInfo, SharedError> {
    let image = open_image(image_path)?;
    image.verify_body()?;
    if fs::symlink_metadata(state_path).is_ok() {
        return Err(SharedError::Exists {
            path: state_path.to_path_buf(),
        });
    }
    let canonical =
        fs::canonicalize(image_path).map_err(|e| SharedError::io(image_path, "resolve", e))?;
    let tmp = temp_sibling(state_path);
    let info = write_state_file(&image, &canonical, &tmp)?;
    let linked = fs::hard_link(&tmp, state_path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(SharedError::Exists {
                path: state_path.to_path_buf(),
            })
        }
        Err(e) => return Err(SharedError::io(state_path, "link into place", e)),
    }
    sync_dir(state_path)?;
    Ok(StateInfo {
        path: state_path.to_path_buf(),
        ..info
    })
}
