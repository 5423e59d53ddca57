//! A parsed policy, as plain owned data: what the TOML file (and its bulk tenants file) said,
//! validated and normalised, before an engine is built from it.

use crate::{Cidr, RuleSet};
use std::string::String;
use std::vec::Vec;

/// A whole policy.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PolicyDoc {
    /// Default rule parameters for every tenant.
    pub rules: RuleSet,
    /// Ring slots of the 5.7.705 window (`rules.tenant_threshold.slots`, default 24).
    pub threshold_slots: u16,
    /// Ring slots of the 5.7.750 window (`rules.unregistered_domain.slots`, default 24).
    pub unregistered_slots: u16,
    /// Low-reputation ranges: inline `ranges` plus every line of every `files` entry.
    pub low_reputation: Vec<Cidr>,
    /// Engine sizing (`[engine]` table).
    pub engine: EngineDoc,
    /// Tenants: inline `[[tenants]]` first, then those of the bulk tenants file(s), in order.
    pub tenants: Vec<TenantDoc>,
}

/// The `[engine]` table: sizing knobs, all optional.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineDoc {
    /// Audit entries kept per tenant (`audit_depth`, default 16).
    pub audit_depth: u16,
    /// Extra room, in percent, over what the policy needs, for run-time operator additions
    /// (`headroom_percent`, default 25).
    pub headroom_percent: u32,
    /// Connectors created within this many seconds before `now` are listed as suspicious
    /// (`recent_connector`, a duration, default "7d").
    pub recent_connector: u64,
}

impl Default for EngineDoc {
    fn default() -> Self {
        EngineDoc {
            audit_depth: 16,
            headroom_percent: 25,
            recent_connector: 7 * 86_400,
        }
    }
}

/// One tenant.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TenantDoc {
    /// Tenant id (non-empty, at most 255 bytes).
    pub id: String,
    /// Licensed (paid) tenant; `licensed = true` by default.
    pub licensed: bool,
    /// Subscription lapsed; `false` by default.
    pub lapsed: bool,
    /// Accepted domains.
    pub domains: Vec<DomainDoc>,
    /// Connectors.
    pub connectors: Vec<ConnectorDoc>,
    /// IP exceptions to the low-reputation rule.
    pub ip_exceptions: Vec<IpExceptionDoc>,
    /// The tenant's full rule set when it overrides anything (defaults merged with its
    /// `rules.*` keys); `None` when it uses the policy's defaults.
    pub rules: Option<RuleSet>,
}

/// An accepted domain.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainDoc {
    /// Normalised ASCII name (A-labels, lower case, no trailing dot).
    pub name: String,
    /// Subdomains match too (opt-in).
    pub subdomains: bool,
    /// Validated (default true). Unvalidated domains never make a sender `registered`.
    pub validated: bool,
}

/// A connector: certificate-based or IP-based (or both).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectorDoc {
    /// Name, unique within the tenant.
    pub name: String,
    /// Normalised certificate domain, for certificate connectors.
    pub certificate: Option<String>,
    /// Source ranges, for IP connectors.
    pub ranges: Vec<Cidr>,
    /// Creation time, Unix seconds (0 when not given).
    pub created: u64,
}

/// An exception to the low-reputation rule for one tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct IpExceptionDoc {
    /// The range excepted.
    pub range: Cidr,
    /// Unix seconds at which the exception stops applying (`u64::MAX` for never).
    pub expires: u64,
}
