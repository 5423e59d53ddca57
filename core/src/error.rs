//! The one error type of the core.

/// A table of the engine; named by [`Error::TableFull`] when it has no room left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Table {
    /// Tenants.
    Tenants = 1,
    /// Accepted domains and certificate-connector domains.
    Domains = 2,
    /// Connectors.
    Connectors = 3,
    /// CIDR ranges (low-reputation list, IP connectors, IP exceptions).
    Ranges = 4,
    /// The byte arena holding tenant ids, domain and connector names.
    Names = 5,
    /// Per-tenant rule overrides.
    Overrides = 6,
}

impl Table {
    /// Lower-case name of the table.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Tenants => "tenants",
            Table::Domains => "domains",
            Table::Connectors => "connectors",
            Table::Ranges => "ranges",
            Table::Names => "names",
            Table::Overrides => "overrides",
        }
    }
}

/// Everything that can go wrong in the core, as a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A fixed-capacity table has no room left.
    TableFull(Table),
    /// A capacity or the caller's storage does not fit what was asked (zero, or slices too short).
    InvalidCapacity(&'static str),
    /// A rule parameter is out of range.
    InvalidParameter(&'static str),
    /// No tenant with that id.
    UnknownTenant,
    /// A tenant with that id already exists.
    DuplicateTenant,
    /// A tenant id is empty, too long (over 255 bytes) or not printable ASCII/UTF-8.
    InvalidTenantId,
    /// A domain name is malformed (empty label, label over 63 octets, over 253 octets, bad bytes).
    InvalidDomain,
    /// A mail address cannot be parsed.
    InvalidAddress,
    /// A CIDR range or IP address does not parse, or its prefix is too long.
    InvalidRange,
    /// The domain is already listed for this tenant.
    DuplicateDomain,
    /// No such domain, connector, range or exception.
    NotFound,
    /// A connector with that name already exists for the tenant.
    DuplicateConnector,
    /// A connector name is empty or too long.
    InvalidName,
    /// An output buffer is too small.
    BufferTooSmall,
    /// A snapshot is shorter than its header says.
    SnapshotTruncated,
    /// A snapshot does not start with outguard's magic bytes.
    SnapshotForeign,
    /// A snapshot was written by an incompatible format version.
    SnapshotVersion,
    /// A snapshot's checksum does not match its contents.
    SnapshotChecksum,
    /// A snapshot's contents are inconsistent (bad lengths, unknown values).
    SnapshotCorrupt,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TableFull(t) => write!(f, "the {} table is full", t.name()),
            Error::InvalidCapacity(s) => write!(f, "invalid capacity: {s}"),
            Error::InvalidParameter(s) => write!(f, "invalid parameter: {s}"),
            Error::UnknownTenant => f.write_str("unknown tenant"),
            Error::DuplicateTenant => f.write_str("a tenant with this id already exists"),
            Error::InvalidTenantId => {
                f.write_str("invalid tenant id (empty, over 255 bytes, or containing control characters)")
            }
            Error::InvalidDomain => f.write_str(
                "invalid domain name (empty label, label over 63 octets, name over 253 octets, or bytes outside the hostname alphabet)",
            ),
            Error::InvalidAddress => f.write_str("invalid mail address"),
            Error::InvalidRange => f.write_str("invalid IP address or CIDR range"),
            Error::DuplicateDomain => f.write_str("the domain is already listed for this tenant"),
            Error::NotFound => f.write_str("not found"),
            Error::DuplicateConnector => f.write_str("a connector with this name already exists for the tenant"),
            Error::InvalidName => f.write_str("invalid name (empty or over 255 bytes)"),
            Error::BufferTooSmall => f.write_str("output buffer too small"),
            Error::SnapshotTruncated => f.write_str("snapshot is truncated"),
            Error::SnapshotForeign => f.write_str("not an outguard snapshot (bad magic)"),
            Error::SnapshotVersion => f.write_str("snapshot format version is not supported"),
            Error::SnapshotChecksum => f.write_str("snapshot checksum mismatch (corrupt data)"),
            Error::SnapshotCorrupt => f.write_str("snapshot contents are inconsistent"),
        }
    }
}

impl core::error::Error for Error {}
