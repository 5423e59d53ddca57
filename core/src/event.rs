//! Events: every state change of a tenant's rules, with the counters at that moment.

use crate::Rule;

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// The 5.7.705 warning tier was crossed (no block).
    Warned = 1,
    /// A rule tripped: the tenant is blocked (or would be, in monitor mode).
    Blocked = 2,
    /// An operator released a block.
    Released = 3,
    /// A timed block ran out.
    Expired = 4,
    /// The tenant's subscription was marked lapsed.
    Lapsed = 5,
    /// The tenant was marked active again (mail resumes after the renewal delay).
    Reactivated = 6,
}

impl EventKind {
    /// Lower-case name (`"blocked"`).
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Warned => "warned",
            EventKind::Blocked => "blocked",
            EventKind::Released => "released",
            EventKind::Expired => "expired",
            EventKind::Lapsed => "lapsed",
            EventKind::Reactivated => "reactivated",
        }
    }
    /// The kind for its numeric value.
    pub const fn from_u8(v: u8) -> Option<EventKind> {
        match v {
            1 => Some(EventKind::Warned),
            2 => Some(EventKind::Blocked),
            3 => Some(EventKind::Released),
            4 => Some(EventKind::Expired),
            5 => Some(EventKind::Lapsed),
            6 => Some(EventKind::Reactivated),
            _ => None,
        }
    }
}

/// One state change. A flat record (it is also what the audit trail stores).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Event {
    /// When it happened (the `now` of the call).
    pub time: u64,
    /// For `Blocked`: when the block ends; `u64::MAX` when it needs a release; 0 otherwise.
    pub until: u64,
    /// Tenant index.
    pub tenant: u32,
    /// Windowed total (messages or recipients) of the rule at that moment.
    pub total: u32,
    /// Windowed suspicious count at that moment.
    pub suspicious: u32,
    /// Windowed unregistered-domain count at that moment.
    pub unregistered: u32,
    /// [`EventKind`] as a number (0 marks an empty audit slot).
    pub kind: u8,
    /// [`Rule`] as a number.
    pub rule: u8,
    /// 1 when the rule is in monitor mode (nothing was really refused).
    pub monitor: u8,
    /// Padding, always zero.
    pub reserved: u8,
    /// Padding, always zero (spelled out so that no byte of a stored event is uninitialised:
    /// audit trails live in mapped state files).
    pub reserved2: u32,
}

impl Event {
    /// An empty audit slot, for `static` buffers.
    pub const EMPTY: Event = Event {
        time: 0,
        until: 0,
        tenant: 0,
        total: 0,
        suspicious: 0,
        unregistered: 0,
        kind: 0,
        rule: 0,
        monitor: 0,
        reserved: 0,
        reserved2: 0,
    };
    /// What changed.
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_u8(self.kind)
    }
    /// The rule concerned.
    pub fn rule(&self) -> Option<Rule> {
        Rule::from_u8(self.rule)
    }
    /// The tenant concerned.
    pub fn tenant(&self) -> crate::TenantId {
        crate::TenantId(self.tenant)
    }
}

/// The events of one call (at most a handful).
pub type Events = heapless::Vec<Event, 8>;
