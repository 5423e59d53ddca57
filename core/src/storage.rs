//! Flat, pointer-free records and the caller-provided storage that holds them.
//!
//! Every table is a slice of plain `#[repr(C)]` records made of integers, so the same bytes can
//! be written to disk or mapped by another process. The engine never allocates: the caller hands
//! it slices of the lengths [`Layout`] computes (a `static` buffer on a device, one allocation
//! in the std layers).

use crate::{Error, Event, RuleSetRecord};

/// How much the engine can hold. Fixed when it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Tenants.
    pub tenants: u32,
    /// Accepted domains plus certificate-connector domains.
    pub domains: u32,
    /// Connectors.
    pub connectors: u32,
    /// CIDR ranges: low-reputation list + IP-connector ranges + IP exceptions.
    pub ranges: u32,
    /// Bytes of tenant ids, domain names and connector names.
    pub name_bytes: u32,
    /// Tenants with their own rule parameters.
    pub overrides: u32,
    /// Audit entries kept per tenant (the oldest are overwritten).
    pub audit_depth: u16,
    /// Slots of the 5.7.705 sliding window (2 gives the two-counter approximation).
    pub threshold_slots: u16,
    /// Slots of the 5.7.750 sliding window.
    pub unregistered_slots: u16,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            tenants: 16,
            domains: 64,
            connectors: 16,
            ranges: 64,
            name_bytes: 4096,
            overrides: 4,
            audit_depth: 16,
            threshold_slots: 24,
            unregistered_slots: 24,
        }
    }
}

/// Table lengths (in records) for a [`Capacity`]: what the caller must provide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `TenantRecord`s.
    pub tenants: usize,
    /// `u32` slots of the tenant-id hash index.
    pub tenant_index: usize,
    /// `DomainEntry` slots.
    pub domains: usize,
    /// `ConnectorRecord`s.
    pub connectors: usize,
    /// `u32` slots of the (tenant, connector name) hash index.
    pub connector_index: usize,
    /// `RangeEntry` slots.
    pub ranges: usize,
    /// `RuleSet` overrides.
    pub overrides: usize,
    /// `u32` counter cells.
    pub counters: usize,
    /// `Event` audit entries.
    pub audit: usize,
    /// Name bytes.
    pub names: usize,
}

/// Open-addressing tables get 50 % spare slots over their capacity (load at most 2/3, so
/// linear probes stay short; 16-byte domain entries then cost 24 B per domain).
pub(crate) const fn table_slots(cap: u32) -> usize {
    let c = cap as usize;
    c + c / 2 + 1
}

impl Capacity {
    /// Checks that nothing is zero where the engine needs room.
    pub fn validate(&self) -> Result<(), Error> {
        if self.tenants == 0 {
            return Err(Error::InvalidCapacity("tenants must be >= 1"));
        }
        if self.threshold_slots == 0 || self.unregistered_slots == 0 {
            return Err(Error::InvalidCapacity("window slots must be >= 1"));
        }
        if self.audit_depth == 0 {
            return Err(Error::InvalidCapacity("audit_depth must be >= 1"));
        }
        if self.tenants >= u32::MAX / 2
            || self.domains >= u32::MAX / 2
            || self.ranges >= u32::MAX / 2
            || self.connectors >= u32::MAX / 2
        {
            return Err(Error::InvalidCapacity("table capacity too large"));
        }
        Ok(())
    }

    /// Counter cells of the 5.7.705 window per tenant (total and suspicious columns).
    pub const fn threshold_cells(&self) -> usize {
        crate::window::cells(self.threshold_slots as usize, 2)
    }

    /// Counter cells per tenant.
    pub const fn counter_stride(&self) -> usize {
        self.threshold_cells() + crate::window::cells(self.unregistered_slots as usize, 1)
    }

    /// The table lengths this capacity needs.
    pub const fn layout(&self) -> Layout {
        let t = self.tenants as usize;
        Layout {
            tenants: t,
            tenant_index: table_slots(self.tenants),
            domains: table_slots(self.domains),
            connectors: self.connectors as usize,
            connector_index: table_slots(self.connectors),
            ranges: table_slots(self.ranges),
            overrides: self.overrides as usize,
            counters: t.saturating_mul(self.counter_stride()),
            audit: t.saturating_mul(self.audit_depth as usize),
            names: self.name_bytes as usize,
        }
    }
}

impl Layout {
    /// Total bytes of storage for this layout.
    pub fn bytes(&self) -> usize {
        use core::mem::size_of;
        self.tenants * size_of::<TenantRecord>()
            + self.tenant_index * 4
            + self.domains * size_of::<DomainEntry>()
            + self.connectors * size_of::<ConnectorRecord>()
            + self.connector_index * 4
            + self.ranges * size_of::<RangeEntry>()
            + self.overrides * size_of::<RuleSetRecord>()
            + self.counters * 4
            + self.audit * size_of::<Event>()
            + self.names
    }
}

/// Per-rule state of one tenant (5.7.705 and 5.7.750).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RuleState {
    /// Slot epoch (`now / slot_len`) of the newest slot of the ring.
    pub head: u64,
    /// When the current block started.
    pub blocked_at: u64,
    /// When a timed block ends (unused for manual blocks).
    pub until: u64,
    /// The rule does not trip before this time (after a release).
    pub grace_until: u64,
    /// `RULE_*` flags.
    pub flags: u32,
    /// Padding, always zero.
    pub reserved: u32,
}

/// Rule is blocked (or, in monitor mode, would be).
pub const RULE_BLOCKED: u32 = 1;
/// The block lasts until a release.
pub const RULE_MANUAL: u32 = 2;
/// The warning tier has fired and not yet been re-armed.
pub const RULE_WARNED: u32 = 4;

/// One tenant: identity, licence state and the two windowed rules' state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TenantRecord {
    /// Offset of the id in the name arena.
    pub id_off: u32,
    /// Length of the id.
    pub id_len: u8,
    /// `TENANT_*` flags.
    pub flags: u8,
    /// Padding, always zero.
    pub reserved: u16,
    /// Index into the overrides table, or `u32::MAX`.
    pub overrides: u32,
    /// Audit entries ever written (the ring position is this modulo the depth).
    pub audit_written: u32,
    /// Lapsed tenants stay refused until this time after being marked active.
    pub active_at: u64,
    /// When the tenant was marked lapsed.
    pub lapsed_at: u64,
    /// State of 5.7.705 (`[0]`) and 5.7.750 (`[1]`).
    pub rules: [RuleState; 2],
}

/// Record in use.
pub const TENANT_USED: u8 = 1;
/// Licensed (paid) tenant.
pub const TENANT_LICENSED: u8 = 2;
/// Subscription lapsed.
pub const TENANT_LAPSED: u8 = 4;
/// Lapsed because the policy says so (as opposed to an operator's call at run time).
pub const TENANT_LAPSED_BY_POLICY: u8 = 8;

/// One slot of the domain hash table: an accepted domain of a tenant, or a certificate
/// connector's domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DomainEntry {
    /// Offset of the name in the name arena.
    pub name_off: u32,
    /// Tenant index.
    pub tenant: u32,
    /// Connector index for certificate entries.
    pub connector: u32,
    /// Name length.
    pub name_len: u8,
    /// `DOMAIN_*` flags.
    pub flags: u8,
    /// 16 bits of the name's hash, to skip most name comparisons.
    pub tag: u16,
}

/// Slot in use.
pub const DOMAIN_USED: u8 = 1;
/// Slot deleted (tombstone).
pub const DOMAIN_DELETED: u8 = 2;
/// Subdomains match too.
pub const DOMAIN_SUBDOMAINS: u8 = 4;
/// Validated accepted domain.
pub const DOMAIN_VALIDATED: u8 = 8;
/// A certificate connector's domain, not an accepted domain.
pub const DOMAIN_CERTIFICATE: u8 = 16;

/// A connector: a certificate domain and/or IP ranges through which a tenant's mail arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ConnectorRecord {
    /// Owning tenant.
    pub tenant: u32,
    /// Offset of the name.
    pub name_off: u32,
    /// Offset of the certificate domain.
    pub cert_off: u32,
    /// Name length.
    pub name_len: u8,
    /// Certificate domain length (0: none).
    pub cert_len: u8,
    /// `CONNECTOR_*` flags.
    pub flags: u8,
    /// Padding, always zero.
    pub reserved: u8,
    /// Slot of the first of its source ranges in the range table (`u32::MAX`: none); the
    /// ranges are chained through [`RangeEntry::next`].
    pub first_range: u32,
    /// Padding, always zero.
    pub reserved2: u32,
    /// Creation time, Unix seconds.
    pub created: u64,
}

/// Record in use.
pub const CONNECTOR_USED: u8 = 1;

/// One slot of the CIDR hash table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RangeEntry {
    /// Network bits, little-endian 32-bit words (keeps the record 4-aligned).
    pub network: [u32; 4],
    /// Owner: tenant index for exceptions, 0 otherwise.
    pub owner: u32,
    /// `RANGE_KIND_*`.
    pub kind: u8,
    /// Prefix length in the 128-bit space.
    pub len: u8,
    /// `RANGE_USED` / `RANGE_DELETED`.
    pub flags: u8,
    /// Padding, always zero.
    pub reserved: u8,
    /// Connector ranges: slot of the connector's next range (`u32::MAX`: last).
    pub next: u32,
    /// Padding, always zero.
    pub reserved2: u32,
    /// Exception expiry, or connector index.
    pub value: u64,
}

/// Slot in use.
pub const RANGE_USED: u8 = 1;
/// Slot deleted (tombstone).
pub const RANGE_DELETED: u8 = 2;
/// Low-reputation list entry.
pub const RANGE_KIND_LOW_REPUTATION: u8 = 0;
/// IP connector range.
pub const RANGE_KIND_CONNECTOR: u8 = 1;
/// Per-tenant exception to the low-reputation rule.
pub const RANGE_KIND_EXCEPTION: u8 = 2;

/// Mutable views of every table, as the engine works on them.
pub struct PartsMut<'a> {
    /// Tenants.
    pub tenants: &'a mut [TenantRecord],
    /// Tenant-id hash index (tenant index + 1; 0 empty; `u32::MAX` deleted).
    pub tenant_index: &'a mut [u32],
    /// Domains.
    pub domains: &'a mut [DomainEntry],
    /// Connectors.
    pub connectors: &'a mut [ConnectorRecord],
    /// (tenant, connector name) hash index (connector index + 1; 0 empty; `u32::MAX` deleted).
    pub connector_index: &'a mut [u32],
    /// Ranges.
    pub ranges: &'a mut [RangeEntry],
    /// Per-tenant rule overrides.
    pub overrides: &'a mut [RuleSetRecord],
    /// Window counters.
    pub counters: &'a mut [u32],
    /// Audit rings.
    pub audit: &'a mut [Event],
    /// Name arena.
    pub names: &'a mut [u8],
}

/// Shared views of every table.
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    /// Tenants.
    pub tenants: &'a [TenantRecord],
    /// Tenant-id hash index.
    pub tenant_index: &'a [u32],
    /// Domains.
    pub domains: &'a [DomainEntry],
    /// Connectors.
    pub connectors: &'a [ConnectorRecord],
    /// (tenant, connector name) hash index.
    pub connector_index: &'a [u32],
    /// Ranges.
    pub ranges: &'a [RangeEntry],
    /// Per-tenant rule overrides.
    pub overrides: &'a [RuleSetRecord],
    /// Window counters.
    pub counters: &'a [u32],
    /// Audit rings.
    pub audit: &'a [Event],
    /// Name arena.
    pub names: &'a [u8],
}

/// Where an engine keeps its tables. Implemented for borrowed slices ([`SliceStorage`]) and,
/// with `std`, for owned vectors (`HeapStorage`).
pub trait Storage {
    /// Shared views of the tables.
    fn parts(&self) -> Parts<'_>;
    /// Mutable views of the tables.
    fn parts_mut(&mut self) -> PartsMut<'_>;
}

/// Storage in slices the caller owns (static buffers on a device).
pub struct SliceStorage<'a>(pub PartsMut<'a>);

impl Storage for SliceStorage<'_> {
    fn parts(&self) -> Parts<'_> {
        let p = &self.0;
        Parts {
            tenants: p.tenants,
            tenant_index: p.tenant_index,
            domains: p.domains,
            connectors: p.connectors,
            connector_index: p.connector_index,
            ranges: p.ranges,
            overrides: p.overrides,
            counters: p.counters,
            audit: p.audit,
            names: p.names,
        }
    }
    fn parts_mut(&mut self) -> PartsMut<'_> {
        let p = &mut self.0;
        PartsMut {
            tenants: p.tenants,
            tenant_index: p.tenant_index,
            domains: p.domains,
            connectors: p.connectors,
            connector_index: p.connector_index,
            ranges: p.ranges,
            overrides: p.overrides,
            counters: p.counters,
            audit: p.audit,
            names: p.names,
        }
    }
}

/// Storage in vectors, allocated once for a capacity.
#[cfg(feature = "std")]
pub struct HeapStorage {
    tenants: std::vec::Vec<TenantRecord>,
    tenant_index: std::vec::Vec<u32>,
    domains: std::vec::Vec<DomainEntry>,
    connectors: std::vec::Vec<ConnectorRecord>,
    connector_index: std::vec::Vec<u32>,
    ranges: std::vec::Vec<RangeEntry>,
    overrides: std::vec::Vec<RuleSetRecord>,
    counters: std::vec::Vec<u32>,
    audit: std::vec::Vec<Event>,
    names: std::vec::Vec<u8>,
}

#[cfg(feature = "std")]
impl HeapStorage {
    /// Allocates empty tables for `cap`. With the `shared` feature, large tables are backed by
    /// transparent huge pages where the kernel allows it (fewer TLB misses at scale).
    pub fn new(cap: &Capacity) -> HeapStorage {
        let l = cap.layout();
        HeapStorage {
            tenants: table(l.tenants, TenantRecord::EMPTY),
            tenant_index: table(l.tenant_index, 0),
            domains: table(l.domains, DomainEntry::EMPTY),
            connectors: table(l.connectors, ConnectorRecord::EMPTY),
            connector_index: table(l.connector_index, 0),
            ranges: table(l.ranges, RangeEntry::EMPTY),
            overrides: table(l.overrides, RuleSetRecord::EMPTY),
            counters: table(l.counters, 0),
            audit: table(l.audit, Event::EMPTY),
            names: table(l.names, 0),
        }
    }
}

/// One table: allocated, advised (huge pages), then filled.
#[cfg(feature = "std")]
fn table<T: Clone>(n: usize, empty: T) -> std::vec::Vec<T> {
    let mut t: std::vec::Vec<T> = std::vec::Vec::with_capacity(n);
    #[cfg(feature = "shared")]
    crate::shared::advise_huge_pages(
        t.as_ptr().cast(),
        n.saturating_mul(core::mem::size_of::<T>()),
    );
    t.resize(n, empty);
    t
}

#[cfg(feature = "std")]
impl Storage for HeapStorage {
    fn parts(&self) -> Parts<'_> {
        Parts {
            tenants: &self.tenants,
            tenant_index: &self.tenant_index,
            domains: &self.domains,
            connectors: &self.connectors,
            connector_index: &self.connector_index,
            ranges: &self.ranges,
            overrides: &self.overrides,
            counters: &self.counters,
            audit: &self.audit,
            names: &self.names,
        }
    }
    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut {
            tenants: &mut self.tenants,
            tenant_index: &mut self.tenant_index,
            domains: &mut self.domains,
            connectors: &mut self.connectors,
            connector_index: &mut self.connector_index,
            ranges: &mut self.ranges,
            overrides: &mut self.overrides,
            counters: &mut self.counters,
            audit: &mut self.audit,
            names: &mut self.names,
        }
    }
}

impl Parts<'_> {
    /// Whether the slices are at least as long as `layout` asks.
    pub fn fits(&self, l: &Layout) -> bool {
        self.tenants.len() >= l.tenants
            && self.tenant_index.len() >= l.tenant_index
            && self.domains.len() >= l.domains
            && self.connectors.len() >= l.connectors
            && self.connector_index.len() >= l.connector_index
            && self.ranges.len() >= l.ranges
            && self.overrides.len() >= l.overrides
            && self.counters.len() >= l.counters
            && self.audit.len() >= l.audit
            && self.names.len() >= l.names
    }
}

impl TenantRecord {
    /// An empty record (an unused slot), for `static` buffers and for clearing tables.
    pub const EMPTY: TenantRecord = TenantRecord {
        id_off: 0,
        id_len: 0,
        flags: 0,
        reserved: 0,
        overrides: 0,
        audit_written: 0,
        active_at: 0,
        lapsed_at: 0,
        rules: [RuleState::EMPTY; 2],
    };
}

impl RuleState {
    /// An empty record (an unused slot), for `static` buffers and for clearing tables.
    pub const EMPTY: RuleState = RuleState {
        head: 0,
        blocked_at: 0,
        until: 0,
        grace_until: 0,
        flags: 0,
        reserved: 0,
    };
}

impl DomainEntry {
    /// An empty record (an unused slot), for `static` buffers and for clearing tables.
    pub const EMPTY: DomainEntry = DomainEntry {
        name_off: 0,
        tenant: 0,
        connector: 0,
        name_len: 0,
        flags: 0,
        tag: 0,
    };
}

impl ConnectorRecord {
    /// An empty record (an unused slot), for `static` buffers and for clearing tables.
    pub const EMPTY: ConnectorRecord = ConnectorRecord {
        tenant: 0,
        name_off: 0,
        cert_off: 0,
        name_len: 0,
        cert_len: 0,
        flags: 0,
        reserved: 0,
        first_range: u32::MAX,
        reserved2: 0,
        created: 0,
    };
}

impl RangeEntry {
    /// An empty record (an unused slot), for `static` buffers and for clearing tables.
    pub const EMPTY: RangeEntry = RangeEntry {
        network: [0; 4],
        owner: 0,
        kind: 0,
        len: 0,
        flags: 0,
        reserved: 0,
        next: u32::MAX,
        reserved2: 0,
        value: 0,
    };
}
