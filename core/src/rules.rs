//! Rule parameters: what the policy configures for each of the three restrictions.

/// One of the three restrictions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Rule {
    /// 5.7.705: too much spam or bulk mail from the tenant as a whole (and lapsed subscriptions).
    TenantThreshold = 0,
    /// 5.7.750: too much mail from domains the tenant never registered.
    UnregisteredDomain = 1,
    /// 5.7.708: client IP on the low-reputation list.
    LowReputationIp = 2,
}

impl Rule {
    /// The policy-file name of the rule (`[rules.<name>]`).
    pub const fn name(self) -> &'static str {
        match self {
            Rule::TenantThreshold => "tenant_threshold",
            Rule::UnregisteredDomain => "unregistered_domain",
            Rule::LowReputationIp => "low_reputation_ip",
        }
    }
    /// The enhanced status code of the rule's refusal.
    pub const fn enhanced_code(self) -> &'static str {
        match self {
            Rule::TenantThreshold => "5.7.705",
            Rule::UnregisteredDomain => "5.7.750",
            Rule::LowReputationIp => "5.7.708",
        }
    }
    /// The rule for its numeric value (`rule as u8`).
    pub const fn from_u8(v: u8) -> Option<Rule> {
        match v {
            0 => Some(Rule::TenantThreshold),
            1 => Some(Rule::UnregisteredDomain),
            2 => Some(Rule::LowReputationIp),
            _ => None,
        }
    }
    /// The rule for its policy-file name.
    pub fn from_name(name: &str) -> Option<Rule> {
        match name {
            "tenant_threshold" => Some(Rule::TenantThreshold),
            "unregistered_domain" => Some(Rule::UnregisteredDomain),
            "low_reputation_ip" => Some(Rule::LowReputationIp),
            _ => None,
        }
    }
}

/// Whether a rule rejects or only reports what it would have done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Mode {
    /// Reject mail as the rule says.
    #[default]
    Enforce = 0,
    /// Never reject; decisions say what would have happened and events still fire.
    Monitor = 1,
}

/// What a rule's window counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum CountMode {
    /// One per message.
    #[default]
    Messages = 0,
    /// One per recipient of the message.
    Recipients = 1,
}

/// How long a tripped block lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BlockDuration {
    /// Until an operator releases it.
    #[default]
    Manual,
    /// This many seconds, then it expires by itself.
    Seconds(u64),
}

/// The content filter's verdict on a message, given to `record`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Verdict {
    /// Nothing wrong found.
    Clean = 0,
    /// Spam.
    Spam = 1,
    /// Bulk mail.
    Bulk = 2,
    /// Phishing.
    Phish = 3,
    /// Malware.
    Malware = 4,
}

impl Verdict {
    /// Every verdict.
    pub const ALL: [Verdict; 5] = [
        Verdict::Clean,
        Verdict::Spam,
        Verdict::Bulk,
        Verdict::Phish,
        Verdict::Malware,
    ];
    /// The lower-case name (`"spam"`).
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Spam => "spam",
            Verdict::Bulk => "bulk",
            Verdict::Phish => "phish",
            Verdict::Malware => "malware",
        }
    }
    /// The verdict for a name, case-insensitive.
    pub fn from_name(name: &str) -> Option<Verdict> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(name.trim()))
    }
    /// The verdict for its numeric value.
    pub const fn from_u8(v: u8) -> Option<Verdict> {
        match v {
            0 => Some(Verdict::Clean),
            1 => Some(Verdict::Spam),
            2 => Some(Verdict::Bulk),
            3 => Some(Verdict::Phish),
            4 => Some(Verdict::Malware),
            _ => None,
        }
    }
}

/// A set of verdicts (those counted as suspicious), as a bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerdictSet(pub u8);

impl VerdictSet {
    /// No verdicts.
    pub const EMPTY: VerdictSet = VerdictSet(0);
    /// The default suspicious set: spam and bulk.
    pub const SPAM_AND_BULK: VerdictSet =
        VerdictSet((1 << Verdict::Spam as u8) | (1 << Verdict::Bulk as u8));
    /// Whether `v` is in the set.
    pub const fn contains(self, v: Verdict) -> bool {
        self.0 & (1 << v as u8) != 0
    }
    /// The set with `v` added.
    pub const fn with(self, v: Verdict) -> VerdictSet {
        VerdictSet(self.0 | (1 << v as u8))
    }
}

impl Default for VerdictSet {
    fn default() -> Self {
        VerdictSet::SPAM_AND_BULK
    }
}

/// Which tenants the low-reputation IP rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Scope {
    /// Every tenant.
    #[default]
    All = 0,
    /// Only tenants that are not licensed (trials, brand-new customers).
    Unlicensed = 1,
}

/// Ratios are kept as parts per million so the core needs no floating point.
pub const RATIO_ONE: u32 = 1_000_000;

/// Parameters of the 5.7.705 rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThresholdParams {
    /// Enforce or monitor.
    pub mode: Mode,
    /// Window length in seconds.
    pub window: u64,
    /// Messages or recipients.
    pub count: CountMode,
    /// Verdicts counted as suspicious.
    pub suspicious: VerdictSet,
    /// Minimum total within the window before the rule can trip.
    pub min_messages: u32,
    /// Minimum suspicious count within the window before the rule can trip.
    pub min_suspicious: u32,
    /// Suspicious/total ratio (parts per million) at which the rule trips.
    pub max_ratio_ppm: u32,
    /// Suspicious/total ratio (parts per million) at which a warning event fires.
    pub warn_ratio_ppm: u32,
    /// How long a block lasts.
    pub block: BlockDuration,
    /// Seconds after a release during which the rule does not trip again.
    pub grace: u64,
    /// Seconds a lapsed tenant stays refused after being marked active (subscription sync delay).
    pub renewal_delay: u64,
}

impl ThresholdParams {
    /// The defaults of SPEC §2 (usable in `const` and `static` items).
    pub const DEFAULT: ThresholdParams = ThresholdParams {
        mode: Mode::Enforce,
        window: 86_400,
        count: CountMode::Messages,
        suspicious: VerdictSet::SPAM_AND_BULK,
        min_messages: 100,
        min_suspicious: 50,
        max_ratio_ppm: RATIO_ONE / 2,
        warn_ratio_ppm: RATIO_ONE / 4,
        block: BlockDuration::Manual,
        grace: 86_400,
        renewal_delay: 0,
    };
}

impl Default for ThresholdParams {
    fn default() -> Self {
        ThresholdParams::DEFAULT
    }
}

/// Parameters of the 5.7.750 rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnregisteredParams {
    /// Enforce or monitor.
    pub mode: Mode,
    /// Window length in seconds.
    pub window: u64,
    /// Messages or recipients.
    pub count: CountMode,
    /// Unregistered-domain messages allowed within the window; the next one is refused.
    pub limit: u32,
    /// How long a block lasts.
    pub block: BlockDuration,
    /// Seconds after a release during which the rule does not trip again.
    pub grace: u64,
}

impl UnregisteredParams {
    /// The defaults of SPEC §2 (usable in `const` and `static` items).
    pub const DEFAULT: UnregisteredParams = UnregisteredParams {
        mode: Mode::Enforce,
        window: 86_400,
        count: CountMode::Messages,
        limit: 200,
        block: BlockDuration::Manual,
        grace: 86_400,
    };
}

impl Default for UnregisteredParams {
    fn default() -> Self {
        UnregisteredParams::DEFAULT
    }
}

/// Parameters of the 5.7.708 rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LowReputationParams {
    /// Enforce or monitor.
    pub mode: Mode,
    /// Which tenants it applies to.
    pub scope: Scope,
}

/// The parameters of all three rules: the policy's defaults, or one tenant's after its overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSet {
    /// 5.7.705.
    pub threshold: ThresholdParams,
    /// 5.7.750.
    pub unregistered: UnregisteredParams,
    /// 5.7.708.
    pub low_reputation: LowReputationParams,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet::DEFAULT
    }
}

impl RuleSet {
    /// The defaults of SPEC §2 (usable in `const` and `static` items).
    pub const DEFAULT: RuleSet = RuleSet {
        threshold: ThresholdParams::DEFAULT,
        unregistered: UnregisteredParams::DEFAULT,
        low_reputation: LowReputationParams {
            mode: Mode::Enforce,
            scope: Scope::All,
        },
    };

    /// Checks the parameters for values the engine cannot work with.
    pub fn validate(&self) -> Result<(), crate::Error> {
        use crate::Error::InvalidParameter as P;
        let t = &self.threshold;
        if t.window == 0 {
            return Err(P("rules.tenant_threshold.window must be > 0"));
        }
        if t.max_ratio_ppm > RATIO_ONE || t.warn_ratio_ppm > RATIO_ONE {
            return Err(P("rules.tenant_threshold ratios must be within 0..=1"));
        }
        if t.min_messages == 0 {
            return Err(P("rules.tenant_threshold.min_messages must be >= 1"));
        }
        let u = &self.unregistered;
        if u.window == 0 {
            return Err(P("rules.unregistered_domain.window must be > 0"));
        }
        if u.limit == 0 {
            return Err(P("rules.unregistered_domain.limit must be >= 1"));
        }
        if matches!(t.block, BlockDuration::Seconds(0))
            || matches!(u.block, BlockDuration::Seconds(0))
        {
            return Err(P("block duration must be > 0 (or \"manual\")"));
        }
        Ok(())
    }
}

/// A [`RuleSet`] as plain words: how the overrides table stores it, so that table is flat
/// integers like every other (it can be mapped from a file; a bad word is a decode error,
/// never an invalid enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct RuleSetRecord {
    /// The encoded fields, in declaration order; blocks are 0 for manual, else seconds.
    pub words: [u64; RuleSetRecord::WORDS],
}

impl RuleSetRecord {
    /// Number of words.
    pub const WORDS: usize = 19;
    /// An unused slot.
    pub const EMPTY: RuleSetRecord = RuleSetRecord {
        words: [0; RuleSetRecord::WORDS],
    };
}

impl Default for RuleSetRecord {
    fn default() -> Self {
        RuleSetRecord::EMPTY
    }
}

fn block_word(b: BlockDuration) -> u64 {
    match b {
        BlockDuration::Manual => 0,
        BlockDuration::Seconds(s) => s,
    }
}

fn word_block(w: u64) -> BlockDuration {
    if w == 0 {
        BlockDuration::Manual
    } else {
        BlockDuration::Seconds(w)
    }
}

fn word_mode(w: u64) -> Result<Mode, crate::Error> {
    match w {
        0 => Ok(Mode::Enforce),
        1 => Ok(Mode::Monitor),
        _ => Err(crate::Error::InvalidParameter("mode")),
    }
}

fn word_count(w: u64) -> Result<CountMode, crate::Error> {
    match w {
        0 => Ok(CountMode::Messages),
        1 => Ok(CountMode::Recipients),
        _ => Err(crate::Error::InvalidParameter("count")),
    }
}

fn word_u32(w: u64) -> Result<u32, crate::Error> {
    u32::try_from(w).map_err(|_| crate::Error::InvalidParameter("value out of range"))
}

impl RuleSet {
    /// The rule set as flat words.
    pub fn encode(&self) -> RuleSetRecord {
        let t = &self.threshold;
        let u = &self.unregistered;
        let l = &self.low_reputation;
        RuleSetRecord {
            words: [
                t.mode as u64,
                t.window,
                t.count as u64,
                t.suspicious.0 as u64,
                t.min_messages as u64,
                t.min_suspicious as u64,
                t.max_ratio_ppm as u64,
                t.warn_ratio_ppm as u64,
                block_word(t.block),
                t.grace,
                t.renewal_delay,
                u.mode as u64,
                u.window,
                u.count as u64,
                u.limit as u64,
                block_word(u.block),
                u.grace,
                l.mode as u64,
                l.scope as u64,
            ],
        }
    }

    /// Decodes and validates flat words.
    pub fn decode(r: &RuleSetRecord) -> Result<RuleSet, crate::Error> {
        let w = &r.words;
        let rs = RuleSet {
            threshold: ThresholdParams {
                mode: word_mode(w[0])?,
                window: w[1],
                count: word_count(w[2])?,
                suspicious: VerdictSet(
                    u8::try_from(w[3]).map_err(|_| crate::Error::InvalidParameter("suspicious"))?,
                ),
                min_messages: word_u32(w[4])?,
                min_suspicious: word_u32(w[5])?,
                max_ratio_ppm: word_u32(w[6])?,
                warn_ratio_ppm: word_u32(w[7])?,
                block: word_block(w[8]),
                grace: w[9],
                renewal_delay: w[10],
            },
            unregistered: UnregisteredParams {
                mode: word_mode(w[11])?,
                window: w[12],
                count: word_count(w[13])?,
                limit: word_u32(w[14])?,
                block: word_block(w[15]),
                grace: w[16],
            },
            low_reputation: LowReputationParams {
                mode: word_mode(w[17])?,
                scope: match w[18] {
                    0 => Scope::All,
                    1 => Scope::Unlicensed,
                    _ => return Err(crate::Error::InvalidParameter("scope")),
                },
            },
        };
        rs.validate()?;
        Ok(rs)
    }
}
