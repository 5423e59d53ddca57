//! `og_result`: the one result type of the C API, and how core errors map onto it.
//!
//! Numbers live in ranges by kind and are never renumbered or reused. A retired code stays
//! here as a comment with its number, so no later code takes it.

use outguard::policy::{PolicyError, RestoreError};
use outguard::{Error, Table};

/// The result of every fallible call. `OG_RESULT_OK` (0) is success; everything else is an
/// error whose number never changes between releases.
///
/// Ranges: 0 success · 1–99 the call itself (NULL, UTF-8, buffers, unknown enum values,
/// panics, I/O) · 100–199 an input value that does not parse · 200–299 the engine's state
/// (unknown tenant, duplicates) · 300–399 a full table · 400–499 policies · 500–599 snapshots
/// · 900–999 internal. `og_result_message()` gives a static description of each.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum og_result {
    /// Success.
    Ok = 0,

    // ----- 1–99: the call itself -----
    /// A required pointer argument was NULL.
    NullParameter = 1,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 2,
    /// An output buffer is too small; `*out_n` holds the size needed.
    BufferTooSmall = 3,
    /// An integer argument is out of range: unknown flag bits, an unknown verdict, rule or
    /// audience value.
    InvalidParameter = 4,
    /// A Rust panic was caught at the API boundary (a bug: please report it).
    Panic = 5,
    /// A file could not be read or written.
    Io = 6,

    // ----- 100–199: input values -----
    /// The envelope sender cannot be parsed (`record` of an unparsable sender).
    InvalidSender = 100,
    /// `client_ip` is not an IPv4 or IPv6 address.
    InvalidIp = 101,
    /// A CIDR range does not parse or its prefix is too long.
    InvalidRange = 102,
    /// A domain name is malformed.
    InvalidDomain = 103,
    /// A tenant id is empty, longer than 255 bytes, or holds control characters or
    /// surrounding spaces.
    InvalidTenantId = 104,
    /// A connector name is empty or longer than 255 bytes.
    InvalidName = 105,
    /// A language tag is not one of `en`, `uk`, `pl`, `pt-BR` (regions ignored).
    UnknownLanguage = 106,
    /// A reason value or SMTP code is not one outguard gives.
    UnknownReason = 107,
    /// An NDR input is invalid (empty or over-long field, control characters, bad
    /// boundary or Message-ID).
    InvalidNdr = 108,

    // ----- 200–299: the engine's state -----
    /// No tenant with that id (or the message belongs to no tenant).
    UnknownTenant = 200,
    /// A tenant with that id already exists.
    DuplicateTenant = 201,
    /// The domain (or range) is already listed for this tenant.
    DuplicateDomain = 202,
    /// A connector with that name already exists for the tenant.
    DuplicateConnector = 203,
    /// No such domain, connector, range or exception.
    NotFound = 204,
    /// The shared state file is open in another process (`og_shared_repair` needs it idle).
    InUse = 205,

    // ----- 300–399: capacity -----
    /// A table is full (a table this version does not know by name).
    TableFull = 300,
    /// The tenant table is full.
    TenantsFull = 301,
    /// The domain table is full.
    DomainsFull = 302,
    /// The connector table is full.
    ConnectorsFull = 303,
    /// The range table (low-reputation list, connector ranges, exceptions) is full.
    RangesFull = 304,
    /// The name arena (tenant ids, domain and connector names) is full.
    NamesFull = 305,
    /// The per-tenant overrides table is full.
    OverridesFull = 306,

    // ----- 400–499: policies -----
    /// The policy is invalid or cannot be read; the error buffer holds every problem with
    /// its file, line and field.
    Policy = 400,
    /// A rule parameter or capacity is out of range.
    InvalidRuleParameter = 401,

    // ----- 500–599: snapshots -----
    /// The snapshot is shorter than its header says.
    SnapshotTruncated = 500,
    /// The bytes are not an outguard snapshot.
    SnapshotForeign = 501,
    /// The snapshot was written by an incompatible format version.
    SnapshotVersion = 502,
    /// The snapshot's checksum does not match (corrupt data).
    SnapshotChecksum = 503,
    /// The snapshot's contents are inconsistent.
    SnapshotCorrupt = 504,

    // ----- 900–999: internal -----
    /// The core returned an error this version of the binding does not know.
    Internal = 900,
}

impl og_result {
    /// Every code, for `og_result_message` and the tests.
    pub(crate) const ALL: [og_result; 37] = [
        og_result::Ok,
        og_result::NullParameter,
        og_result::InvalidUtf8,
        og_result::BufferTooSmall,
        og_result::InvalidParameter,
        og_result::Panic,
        og_result::Io,
        og_result::InvalidSender,
        og_result::InvalidIp,
        og_result::InvalidRange,
        og_result::InvalidDomain,
        og_result::InvalidTenantId,
        og_result::InvalidName,
        og_result::UnknownLanguage,
        og_result::UnknownReason,
        og_result::InvalidNdr,
        og_result::UnknownTenant,
        og_result::DuplicateTenant,
        og_result::DuplicateDomain,
        og_result::DuplicateConnector,
        og_result::NotFound,
        og_result::InUse,
        og_result::TableFull,
        og_result::TenantsFull,
        og_result::DomainsFull,
        og_result::ConnectorsFull,
        og_result::RangesFull,
        og_result::NamesFull,
        og_result::OverridesFull,
        og_result::Policy,
        og_result::InvalidRuleParameter,
        og_result::SnapshotTruncated,
        og_result::SnapshotForeign,
        og_result::SnapshotVersion,
        og_result::SnapshotChecksum,
        og_result::SnapshotCorrupt,
        og_result::Internal,
    ];

    /// The static, NUL-terminated description.
    pub(crate) fn message(self) -> &'static core::ffi::CStr {
        use og_result as R;
        match self {
            R::Ok => c"success",
            R::NullParameter => c"a required pointer argument was NULL",
            R::InvalidUtf8 => c"a string argument is not valid UTF-8",
            R::BufferTooSmall => c"output buffer too small (*out_n holds the size needed)",
            R::InvalidParameter => {
                c"an integer argument is out of range (unknown flag, verdict, rule or audience)"
            }
            R::Panic => c"internal error: a panic was caught at the API boundary",
            R::Io => c"a file could not be read or written",
            R::InvalidSender => c"invalid envelope sender address",
            R::InvalidIp => c"invalid IP address",
            R::InvalidRange => c"invalid IP address or CIDR range",
            R::InvalidDomain => c"invalid domain name (empty label, label over 63 octets, name over 253 octets, or bytes outside the hostname alphabet)",
            R::InvalidTenantId => c"invalid tenant id (empty, over 255 bytes, control characters or surrounding spaces)",
            R::InvalidName => c"invalid name (empty or over 255 bytes)",
            R::UnknownLanguage => c"unknown language (expected en, uk, pl or pt-BR)",
            R::UnknownReason => c"unknown reason or SMTP code",
            R::InvalidNdr => c"invalid NDR input (empty or over-long field, control characters, bad boundary or Message-ID)",
            R::UnknownTenant => c"unknown tenant",
            R::DuplicateTenant => c"a tenant with this id already exists",
            R::DuplicateDomain => c"already listed for this tenant",
            R::DuplicateConnector => c"a connector with this name already exists for the tenant",
            R::NotFound => c"not found",
            R::InUse => c"the shared state file is open in another process",
            R::TableFull => c"a table of the engine is full",
            R::TenantsFull => c"the tenants table is full",
            R::DomainsFull => c"the domains table is full",
            R::ConnectorsFull => c"the connectors table is full",
            R::RangesFull => c"the ranges table is full",
            R::NamesFull => c"the names table is full",
            R::OverridesFull => c"the overrides table is full",
            R::Policy => c"invalid policy (the error buffer names file, line and field)",
            R::InvalidRuleParameter => c"a rule parameter or capacity is out of range",
            R::SnapshotTruncated => c"snapshot is truncated",
            R::SnapshotForeign => c"not an outguard snapshot (bad magic)",
            R::SnapshotVersion => c"snapshot format version is not supported",
            R::SnapshotChecksum => c"snapshot checksum mismatch (corrupt data)",
            R::SnapshotCorrupt => c"snapshot contents are inconsistent",
            R::Internal => c"internal error: unexpected error from the engine",
        }
    }

    /// The code for a number, if it is one.
    pub(crate) fn from_u32(v: u32) -> Option<og_result> {
        og_result::ALL.into_iter().find(|r| *r as u32 == v)
    }
}

impl From<Error> for og_result {
    fn from(e: Error) -> og_result {
        use og_result as R;
        match e {
            Error::TableFull(t) => match t {
                Table::Tenants => R::TenantsFull,
                Table::Domains => R::DomainsFull,
                Table::Connectors => R::ConnectorsFull,
                Table::Ranges => R::RangesFull,
                Table::Names => R::NamesFull,
                Table::Overrides => R::OverridesFull,
                #[allow(unreachable_patterns)]
                _ => R::TableFull,
            },
            Error::InvalidCapacity(_) | Error::InvalidParameter(_) => R::InvalidRuleParameter,
            Error::UnknownTenant => R::UnknownTenant,
            Error::DuplicateTenant => R::DuplicateTenant,
            Error::InvalidTenantId => R::InvalidTenantId,
            Error::InvalidDomain => R::InvalidDomain,
            Error::InvalidAddress => R::InvalidSender,
            Error::InvalidRange => R::InvalidRange,
            Error::DuplicateDomain => R::DuplicateDomain,
            Error::NotFound => R::NotFound,
            Error::DuplicateConnector => R::DuplicateConnector,
            Error::InvalidName => R::InvalidName,
            Error::BufferTooSmall => R::BufferTooSmall,
            Error::SnapshotTruncated => R::SnapshotTruncated,
            Error::SnapshotForeign => R::SnapshotForeign,
            Error::SnapshotVersion => R::SnapshotVersion,
            Error::SnapshotChecksum => R::SnapshotChecksum,
            Error::SnapshotCorrupt => R::SnapshotCorrupt,
            _ => R::Internal,
        }
    }
}

impl From<&PolicyError> for og_result {
    fn from(_: &PolicyError) -> og_result {
        og_result::Policy
    }
}

impl From<&RestoreError> for og_result {
    fn from(e: &RestoreError) -> og_result {
        match e {
            RestoreError::Policy(p) => p.into(),
            RestoreError::Snapshot(s) => (*s).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_listed() {
        let mut seen = std::collections::HashSet::new();
        for r in og_result::ALL {
            assert!(seen.insert(r as u32), "{r:?}");
            assert_eq!(og_result::from_u32(r as u32), Some(r));
            assert!(!r.message().to_bytes().is_empty());
        }
        assert_eq!(og_result::from_u32(7), None);
    }
}
