//! The SMTP replies outguard gives, one [`Reason`] per refusal.

/// Why a message is refused. Each reason has one exact SMTP reply line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reason {
    /// `550 5.1.7`: the envelope sender cannot be parsed.
    InvalidSender = 1,
    /// `550 5.7.64`: the message cannot be attributed to any tenant.
    Unattributed = 2,
    /// `550 5.7.705`: the tenant sent too much spam or bulk mail within the window.
    TenantThreshold = 3,
    /// `550 5.7.705`: the tenant's subscription is lapsed (or a renewal is still syncing).
    TenantLapsed = 4,
    /// `550 5.7.708`: the client IP is on the low-reputation list and the tenant has no exception.
    LowReputationIp = 5,
    /// `550 5.7.750`: the tenant spent its allowance of mail from unregistered domains.
    UnregisteredDomain = 6,
}

impl Reason {
    /// Every reason, in numeric order.
    pub const ALL: [Reason; 6] = [
        Reason::InvalidSender,
        Reason::Unattributed,
        Reason::TenantThreshold,
        Reason::TenantLapsed,
        Reason::LowReputationIp,
        Reason::UnregisteredDomain,
    ];

    /// The basic SMTP reply code (always 550 today).
    pub const fn smtp_code(self) -> u16 {
        550
    }

    /// The enhanced status code (RFC 3463), such as `"5.7.750"`.
    pub const fn enhanced_code(self) -> &'static str {
        match self {
            Reason::InvalidSender => "5.1.7",
            Reason::Unattributed => "5.7.64",
            Reason::TenantThreshold | Reason::TenantLapsed => "5.7.705",
            Reason::LowReputationIp => "5.7.708",
            Reason::UnregisteredDomain => "5.7.750",
        }
    }

    /// The exact reply line, ASCII, without CRLF.
    pub const fn reply(self) -> &'static str {
        match self {
            Reason::InvalidSender => "550 5.1.7 Invalid sender address",
            Reason::Unattributed => "550 5.7.64 TenantAttribution; Relay Access Denied",
            Reason::TenantThreshold | Reason::TenantLapsed => {
                "550 5.7.705 Access denied, tenant has exceeded threshold"
            }
            Reason::LowReputationIp => {
                "550 5.7.708 Access denied, traffic not accepted from this IP"
            }
            Reason::UnregisteredDomain => {
                "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"
            }
        }
    }

    /// The text after the enhanced code (`reply()` without `"550 5.x.y "`).
    pub fn text(self) -> &'static str {
        let r = self.reply();
        // "550 " + code + " "
        let skip = 4 + self.enhanced_code().len() + 1;
        r.get(skip..).unwrap_or(r)
    }

    /// The rule that produced this reason, if it is one of the three restrictions.
    pub const fn rule(self) -> Option<crate::Rule> {
        match self {
            Reason::TenantThreshold | Reason::TenantLapsed => Some(crate::Rule::TenantThreshold),
            Reason::LowReputationIp => Some(crate::Rule::LowReputationIp),
            Reason::UnregisteredDomain => Some(crate::Rule::UnregisteredDomain),
            Reason::InvalidSender | Reason::Unattributed => None,
        }
    }

    /// A short stable name (`"tenant_threshold"`, `"unregistered_domain"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Reason::InvalidSender => "invalid_sender",
            Reason::Unattributed => "unattributed",
            Reason::TenantThreshold => "tenant_threshold",
            Reason::TenantLapsed => "tenant_lapsed",
            Reason::LowReputationIp => "low_reputation_ip",
            Reason::UnregisteredDomain => "unregistered_domain",
        }
    }

    /// The reason for an enhanced code such as `"5.7.750"` (also accepts `"550 5.7.750"`).
    /// `5.7.705` maps to [`Reason::TenantThreshold`].
    pub fn from_code(code: &str) -> Option<Reason> {
        let code = code.trim();
        let code = code
            .strip_prefix("550")
            .map(str::trim_start)
            .unwrap_or(code);
        match code {
            "5.1.7" => Some(Reason::InvalidSender),
            "5.7.64" => Some(Reason::Unattributed),
            "5.7.705" => Some(Reason::TenantThreshold),
            "5.7.708" => Some(Reason::LowReputationIp),
            "5.7.750" => Some(Reason::UnregisteredDomain),
            _ => None,
        }
    }

    /// The reason for its numeric value (`reason as u8`).
    pub const fn from_u8(v: u8) -> Option<Reason> {
        match v {
            1 => Some(Reason::InvalidSender),
            2 => Some(Reason::Unattributed),
            3 => Some(Reason::TenantThreshold),
            4 => Some(Reason::TenantLapsed),
            5 => Some(Reason::LowReputationIp),
            6 => Some(Reason::UnregisteredDomain),
            _ => None,
        }
    }
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reply())
    }
}
