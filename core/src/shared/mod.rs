//! Shared, file-mapped state for mail servers that fork a process per connection (Exim).
//!
//! Exim forks a process per SMTP connection and loads a `${dlfunc}` library afresh in each, so
//! counters kept in process memory vanish with every connection. With this module the policy and
//! the state live in two files that every process maps:
//!
//! - **The compiled policy image** ([`compile`], [`compile_policy`]): a flat, versioned,
//!   checksummed file holding the policy tables (tenant index, domains, connectors, ranges,
//!   overrides, names and the tenants' initial records) exactly as the engine uses them. A
//!   process maps it `MAP_PRIVATE` and uses it in place: opening parses one header page, so it
//!   takes microseconds whatever the size of the policy. The image never changes after it was
//!   written (a new policy is a new image).
//! - **The shared state file** ([`create_state`]): the tenant records (identity and per-rule
//!   state), the window counters and the audit rings, mapped `MAP_SHARED` by every process at
//!   once, so a forking server sees one set of counters and a restart loses nothing.
//!
//! [`SharedEngine`] opens the pair and offers the engine's calls: [`SharedEngine::check`],
//! [`SharedEngine::record`], [`SharedEngine::evaluate`], [`SharedEngine::release`],
//! [`SharedEngine::status`] and the other operator calls that change *state*. Calls that change
//! the *policy* (domains, connectors, exceptions, overrides) are made in the policy, compiled
//! into a new image and carried over with [`migrate`], which keeps every counter, block and audit
//! entry of the tenants that remain.
//!
//! # Verification
//! Opening checks everything that is cheap: magic, format version, byte order and record sizes
//! of this build, the header checksums, the table directory against the capacity in the header,
//! the file lengths, and that the state file belongs to the image (by image id). A file that
//! fails any of these is refused with a [`SharedError`] and nothing of it is used. The image
//! *body* checksum (the image id) is verified by [`create_state`], by [`verify_image`] and right
//! after writing by [`compile`], not on every open: it reads the whole file (about 10 ms for a
//! 1 000 000-domain image, against a 1 ms budget for opening). The engine's lookups stay
//! memory-safe on any bytes, so a damaged body gives wrong answers, never undefined behaviour.
//! A tenant record of the state file is checked against the image (its identity fields) each
//! time a process first reads it; [`verify_state`] checks all of them.
//!
//! # Concurrency and crash safety
//! The tenants are divided into *stripes* (tenant `t` is in stripe `t % stripes`; 64 stripes, or
//! one per tenant for smaller policies). Every call that changes state takes the lock of the
//! tenant's stripe, so processes writing for tenants of different stripes run in parallel. A
//! stripe lock is a process-shared, robust pthread mutex stored in the state file (Linux, glibc
//! or musl): an uncontended one costs an atomic instruction, no system call, and when its holder
//! dies the kernel hands it to the next locker marked "owner died". Each stripe has its own undo
//! journal in the state file: the tenant's record, counter cells and the audit slots the call
//! may write are copied to the stripe's journal, the journal is marked active, the engine call
//! runs, and clearing the journal mark is the commit. A live writer always clears the mark before
//! it unlocks, so whoever takes a stripe lock and finds its journal marked knows the writer died
//! before committing and rolls that tenant back from the journal, under the lock. So a call is
//! either wholly applied or not at all, a count whose `record` returned is committed, and a
//! death repairs only its own stripe: the other stripes never notice. Calls that read or change
//! every tenant ([`SharedEngine::restricted`], [`verify_state`], [`migrate`]) take all stripe
//! locks, in stripe order (the only order in which a process holds more than one).
//!
//! A mutex held by a process that is gone without the kernel marking it "owner died" (the
//! machine went down, the file was copied while in use, a process lost its robust-mutex list)
//! stays "held" in the file. It may be reinitialized only while no process can hold or wait
//! for it, so every open engine holds the state file's `flock` *shared* for as long as it is
//! open (taken once at open). An opener that can take it *exclusively* without waiting has
//! proved that no other process has the file open: it rolls back every unfinished write,
//! publishes every committed one and initializes all stripe locks (recording the boot id in
//! the header, informational), then keeps the lock shared like everyone else. An opener that
//! cannot uses the locks as they are. So a stale lock heals as soon as every process using the
//! file has closed it (after a reboot, always), with or without `/proc`, and a lock that a
//! live process holds is never reset under it. Until then, a wait for a stripe lock gives up
//! with an error after 10 seconds (writers hold one for microseconds); [`repair_state`] does
//! the same repair offline and reports what it found, refusing ([`SharedError::InUse`]) while
//! any process has the file open. All processes using a state file must run on one kernel
//! (containers of one host are fine). Where robust mutexes are not available (other Unix
//! systems), every stripe's lock is the state file's `flock`: the same journals and recovery,
//! without parallel writers (and nothing that outlives a process). The header records which
//! kind of lock the file holds, and a file is refused by builds of another kind.
//!
//! `check` and `status` take no lock: every tenant has a sequence number in the state file
//! (a seqlock), odd while a writer changes that tenant. A process keeps a private copy of the
//! tenants it has looked at and refreshes one only when its sequence number moved, copying it with
//! volatile reads and retrying when the number changed meanwhile. A decision is therefore made on
//! private memory that no other process writes, at the cost of one atomic load when nothing
//! changed. A reader that keeps meeting an odd number falls back to the tenant's stripe lock (a
//! writer that died is repaired then).
//!
//! An engine inherited across `fork` works in the child: the stripe mutexes are taken by the
//! child's own thread id, and the child shares its parent's open file description, so the
//! shared `flock` keeps the file marked open for as long as either has it. (Where stripe locks
//! are the `flock`, a [`SharedEngine`] reopens its descriptor after a fork, since a child
//! locking the shared description would "hold" its parent's lock.) Within one process, a
//! `SharedEngine` is used by one thread at a time (`&mut self`); wrap it in a mutex to share it.
//!
//! # Reload
//! [`migrate`] opens the old image and state, builds a new state file from the new image, adopts
//! the old state by tenant id, writes the new file next to its final path and renames it into
//! place, and then marks the old state file *superseded* in its header (with the new path), all
//! under every stripe lock of the old file. Before the rename it marks the old file *pending*
//! (with the new path and the new file's inode): should it die between the rename and the
//! mark, the next process to take a stripe lock of the old file settles it (the new file is in
//! place: superseded; it is not: the old file stays current), so no count goes to a file that
//! nobody opens again. Every process notices on its next call and reopens the new state (and
//! the image it names) by itself. A migration holds the stripe locks while it writes the new
//! file: writers wait meanwhile, and give up after 10 seconds.
//!
//! # Platform
//! Unix only (`mmap`, `flock`, `msync`; robust process-shared mutexes on Linux); the
//! lock-descriptor reopening after `fork` uses `/proc/self/fd` where it exists and the path
//! otherwise. Records are stored in native byte
//! order: the files belong to machines of the byte order and build that wrote them (both are
//! checked on open).

#![allow(unsafe_code)]

#[cfg(not(unix))]
compile_error!("the `shared` feature needs a Unix system (mmap, flock)");

mod engine;
mod format;
mod sys;

use std::boxed::Box;
use std::fmt;
use std::io;
use std::path::PathBuf;

pub use engine::{
    migrate, repair_state, verify_state, MigrateReport, RepairReport, SharedEngine, SharedInfo,
};
pub use format::{
    compile, compile_policy, create_state, read_state_info, verify_image, ImageInfo, StateInfo,
    IMAGE_MAGIC, IMAGE_VERSION, STATE_MAGIC, STATE_VERSION,
};
pub(crate) use sys::advise_huge_pages;
pub use sys::MappedStorage;

/// Which of the two files an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A compiled policy image.
    Image,
    /// A shared state file.
    State,
}

impl FileKind {
    fn name(self) -> &'static str {
        match self {
            FileKind::Image => "policy image",
            FileKind::State => "state file",
        }
    }
}

/// Everything that can go wrong with images and state files. Every variant names the file.
#[derive(Debug)]
#[non_exhaustive]
pub enum SharedError {
    /// A system call on a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`"open"`, `"map"`, `"lock"`, ...).
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file does not start with the magic bytes of its kind: it is something else.
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        kind: FileKind,
    },
    /// The file was written by an incompatible format version.
    Version {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        kind: FileKind,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The file is shorter (or longer) than its header says.
    Truncated {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        kind: FileKind,
        /// Bytes the header announces.
        expected: u64,
        /// Bytes the file has.
        found: u64,
    },
    /// The header is damaged or inconsistent (checksum, sizes, table directory, field values).
    CorruptHeader {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        kind: FileKind,
        /// What is wrong.
        detail: &'static str,
    },
    /// The file was written on a machine of another byte order or by a build whose record
    /// layout differs.
    Incompatible {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        kind: FileKind,
        /// What differs.
        detail: &'static str,
    },
    /// The image body does not match its checksum (the image id).
    Checksum {
        /// The image.
        path: PathBuf,
    },
    /// A tenant record of the state file does not match the image (damaged state).
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// The tenant's index.
        tenant: u32,
        /// What is wrong.
        detail: &'static str,
    },
    /// The state file belongs to another image.
    ImageMismatch {
        /// The state file.
        state: PathBuf,
        /// The image given.
        image: PathBuf,
        /// The id of the image the state file belongs to.
        state_image_id: u64,
        /// The id of the image given.
        image_id: u64,
    },
    /// The state file was replaced by [`migrate`]; use the new one (a [`SharedEngine`] follows
    /// by itself).
    Superseded {
        /// The old state file.
        path: PathBuf,
        /// Where its state went, when recorded.
        by: Option<PathBuf>,
    },
    /// [`create_state`] refuses to replace an existing state file (its counters would be lost;
    /// use [`migrate`] or remove it).
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// [`repair_state`] refuses: a process has the state file open.
    InUse {
        /// The state file.
        path: PathBuf,
    },
    /// A path is too long to be recorded in a state header.
    PathTooLong {
        /// The path.
        path: PathBuf,
    },
    /// The engine refused (unknown tenant, invalid address, a capacity problem ...).
    Engine(crate::Error),
    /// The policy does not build ([`compile_policy`]).
    Policy(Box<crate::policy::PolicyError>),
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedError::Io { path, op, source } => {
                write!(f, "{}: {op} failed: {source}", path.display())
            }
            SharedError::BadMagic { path, kind } => write!(
                f,
                "{}: not an outguard {} (bad magic bytes)",
                path.display(),
                kind.name()
            ),
            SharedError::Version {
                path,
                kind,
                found,
                expected,
            } => write!(
                f,
                "{}: {} format version {found} is not supported (this build reads version {expected})",
                path.display(),
                kind.name()
            ),
            SharedError::Truncated {
                path,
                kind,
                expected,
                found,
            } => write!(
                f,
                "{}: {} has {found} bytes, its header announces {expected} (truncated or damaged)",
                path.display(),
                kind.name()
            ),
            SharedError::CorruptHeader { path, kind, detail } => write!(
                f,
                "{}: corrupt {} header: {detail}",
                path.display(),
                kind.name()
            ),
            SharedError::Incompatible { path, kind, detail } => write!(
                f,
                "{}: {} was written by an incompatible build or machine: {detail}",
                path.display(),
                kind.name()
            ),
            SharedError::Checksum { path } => write!(
                f,
                "{}: policy image checksum mismatch (the image is damaged; compile it again)",
                path.display()
            ),
            SharedError::CorruptState {
                path,
                tenant,
                detail,
            } => write!(
                f,
                "{}: corrupt state file: tenant record {tenant}: {detail}",
                path.display()
            ),
            SharedError::ImageMismatch {
                state,
                image,
                state_image_id,
                image_id,
            } => write!(
                f,
                "{}: state file belongs to policy image {state_image_id:016x}, not to {} ({image_id:016x}); \
                 migrate the state to the new image",
                state.display(),
                image.display()
            ),
            SharedError::Superseded { path, by: Some(by) } => write!(
                f,
                "{}: state file was superseded by {} (migrated to a new policy image)",
                path.display(),
                by.display()
            ),
            SharedError::Superseded { path, by: None } => write!(
                f,
                "{}: state file was superseded (migrated to a new policy image)",
                path.display()
            ),
            SharedError::Exists { path } => write!(
                f,
                "{}: a state file already exists (use migrate to move its state to a new image, or remove it)",
                path.display()
            ),
            SharedError::InUse { path } => write!(
                f,
                "{}: the state file is open in a running process (stop every process using it, then repair)",
                path.display()
            ),
            SharedError::PathTooLong { path } => write!(
                f,
                "{}: path longer than {} bytes cannot be recorded in a state file",
                path.display(),
                format::MAX_PATH
            ),
            SharedError::Engine(e) => write!(f, "{e}"),
            SharedError::Policy(p) => write!(f, "{p}"),
        }
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SharedError::Io { source, .. } => Some(source),
            SharedError::Engine(e) => Some(e),
            SharedError::Policy(p) => Some(p.as_ref()),
            _ => None,
        }
    }
}

impl From<crate::Error> for SharedError {
    fn from(e: crate::Error) -> Self {
        SharedError::Engine(e)
    }
}

impl SharedError {
    pub(crate) fn io(path: &std::path::Path, op: &'static str, source: io::Error) -> SharedError {
        SharedError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}
