//! Reading a policy: the TOML policy file (SPEC §2), the low-reputation range lists and the bulk
//! tenants files it refers to, into a validated, normalised [`PolicyDoc`].
//!
//! Every problem is collected, never just the first: each [`Diagnostic`] names the file, the
//! 1-based line and column, the field (`tenants[3].domains[1].name`), what was expected and what
//! was found. A TOML syntax error stops the parse of that file; it is reported with its position.
//!
//! # Low-reputation lists (`[rules.low_reputation_ip] files = [...]`)
//!
//! One IP address or CIDR range a line (`192.0.2.0/24`, `2001:db8:bad::/48`, `198.51.100.7`);
//! `#` starts a comment, blank lines are ignored.
//!
//! # Bulk tenants file (`tenants_file = "tenants.txt"`, or an array of files)
//!
//! For hundreds of thousands of tenants. UTF-8 text, one record a line, fields separated by
//! spaces or tabs; a field starting with `#` starts a comment that runs to the end of the line;
//! blank lines are ignored. Records:
//!
//! ```text
//! tenant    <id> [licensed|unlicensed] [lapsed|active]
//! domain    <id> <name> [subdomains|exact] [validated|unvalidated]
//! connector <id> <name> [cert=<domain>] [ranges=<cidr>[,<cidr>...]] [created=<time>]
//! exception <id> <cidr> [expires=<time>]
//! override  <id> <rule>.<key> <value>
//! ```
//!
//! - `tenant` declares a tenant (licensed and active unless the flags say otherwise). Its id is
//!   any run of non-blank characters not starting with `#`, at most 255 bytes; it must not be
//!   declared anywhere else (inline `[[tenants]]` included).
//! - `domain`, `connector`, `exception` and `override` refer to a tenant declared on an earlier
//!   line of a bulk file or inline in the policy file; a record for an unknown tenant is an error.
//! - `domain`: an accepted domain (U-labels are converted to A-labels); exact and validated
//!   unless flagged `subdomains` / `unvalidated`.
//! - `connector`: needs `cert=` (the certificate domain; `certificate=` works too) or `ranges=`
//!   (comma-separated CIDR ranges; may be repeated) or both; `created=` is optional.
//! - `exception`: an exception to the low-reputation rule for that range; `expires=` optional
//!   (never expires when absent).
//! - `override`: one per-tenant rule parameter, as in the policy file's
//!   `rules.<rule>.<key> = <value>` (a leading `rules.` is allowed): durations (`6h`), integers,
//!   ratios (`0.3`), `manual`, `monitor`, and for `suspicious` a comma-separated verdict list
//!   (`spam,bulk`, or `none`).
//! - Times are RFC 3339 (`2026-12-31T00:00:00Z`) or Unix seconds.
//!
//! ```text
//! # id       flags
//! tenant contoso
//! tenant tailspin unlicensed
//! domain contoso contoso.com subdomains
//! domain contoso bücher.example unvalidated
//! connector contoso onprem cert=mail.contoso.com created=2026-01-10T00:00:00Z
//! connector contoso hq ranges=203.0.113.0/24,2001:db8:1::/48
//! exception tailspin 192.0.2.7/32 expires=2026-12-31T00:00:00Z
//! override contoso unregistered_domain.limit 1000
//! ```
//!
//! Problems in a bulk file are reported with that file's name and line; the `path` of such a
//! diagnostic is the record and field (`domain.name`), or the rule parameter of an `override`.

use super::doc::{ConnectorDoc, DomainDoc, EngineDoc, IpExceptionDoc, PolicyDoc, TenantDoc};
use crate::address::DomainName;
use crate::{BlockDuration, Cidr, CountMode, Mode, RuleSet, Scope, Verdict, VerdictSet, RATIO_ONE};
use core::net::IpAddr;
use std::borrow::ToOwned;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::format;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;
use toml_span::value::{Key, Table, Value};
use toml_span::{ErrorKind, Span};

use super::duration::{parse_duration, parse_time};
use super::error::{Diagnostic, PolicyError};

/// Parses policy text.
///
/// `file` is the name used in diagnostics. `base_dir` is the directory that relative paths in
/// `rules.low_reputation_ip.files` and `tenants_file` are read from; with `None`, any such
/// reference is reported as an error. Returns every problem found, or the policy if there is none.
pub fn parse_policy(
    text: &str,
    file: &str,
    base_dir: Option<&Path>,
) -> Result<PolicyDoc, PolicyError> {
    let mut p = Parser::new(base_dir);
    let f = p.sink.add_file(file.to_owned());
    p.policy_text(f, text);
    p.finish()
}

/// Reads and parses a policy file; the files it refers to are read relative to its directory.
/// A file that cannot be read (or is not UTF-8) is reported as a [`Diagnostic`] too.
pub fn load_policy(path: &Path) -> Result<PolicyDoc, PolicyError> {
    let name = path.display().to_string();
    let base = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut p = Parser::new(Some(base));
    let f = p.sink.add_file(name);
    match read_text(path) {
        Ok(text) => p.policy_text(f, &text),
        Err(e) => p.read_failure(f, e),
    }
    p.finish()
}

// ---------------------------------------------------------------------------------------------
// Diagnostics sink

/// At most this many diagnostics are kept per file; the rest are counted.
const MAX_SHOWN: usize = 1_000;

/// What is wrong with one value: the parts of a [`Diagnostic`] that do not say where.
#[derive(Debug)]
struct Problem {
    expected: String,
    found: String,
    message: String,
    /// For a value that is a list: the element at fault.
    elem: Option<usize>,
}

fn problem(
    expected: impl Into<String>,
    found: impl Into<String>,
    message: impl Into<String>,
) -> Problem {
    Problem {
        expected: expected.into(),
        found: found.into(),
        message: message.into(),
        elem: None,
    }
}

impl Problem {
    fn at(mut self, elem: usize) -> Problem {
        self.elem = Some(elem);
        self
    }
}

struct Sink {
    files: Vec<String>,
    shown: Vec<usize>,
    hidden: Vec<usize>,
    items: Vec<(u32, usize, usize, Diagnostic)>,
}

impl Sink {
    fn add_file(&mut self, name: String) -> u32 {
        self.files.push(name);
        self.shown.push(0);
        self.hidden.push(0);
        u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX)
    }

    fn push(&mut self, file: u32, line: usize, column: usize, path: String, p: Problem) {
        let f = file as usize;
        let (Some(shown), Some(name)) = (self.shown.get_mut(f), self.files.get(f)) else {
            return;
        };
        if *shown >= MAX_SHOWN {
            if let Some(h) = self.hidden.get_mut(f) {
                *h += 1;
            }
            return;
        }
        *shown += 1;
        let d = Diagnostic {
            file: name.clone(),
            line,
            column,
            path,
            expected: p.expected,
            found: p.found,
            message: p.message,
        };
        self.items.push((file, line, column, d));
    }

    fn count(&self) -> usize {
        self.items.len()
    }

    fn finish(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|(f, l, c, _)| (*f, *l, *c));
        let mut out = Vec::with_capacity(self.items.len() + 1);
        let mut items = self.items.into_iter().peekable();
        for (f, name) in self.files.iter().enumerate() {
            while let Some((_, _, _, d)) = items.next_if(|(file, ..)| *file as usize == f) {
                out.push(d);
            }
            let hidden = self.hidden.get(f).copied().unwrap_or(0);
            if hidden > 0 {
                out.push(Diagnostic {
                    file: name.clone(),
                    line: 0,
                    column: 0,
                    path: String::new(),
                    expected: String::new(),
                    found: String::new(),
                    message: format!("{hidden} more problems in this file are not listed (only the first {MAX_SHOWN} are)"),
                });
            }
        }
        out.extend(items.map(|(.., d)| d));
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Source positions

/// A policy file's text with the start of every line, to turn byte offsets into line/column.
struct Src<'t> {
    file: u32,
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> Src<'t> {
    fn new(file: u32, text: &'t str) -> Src<'t> {
        let mut starts = Vec::with_capacity(text.len() / 32 + 1);
        starts.push(0);
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Src { file, text, starts }
    }

    /// toml-span's spans of strings (values and keys) start after the opening quote: move such
    /// an offset back onto the quote, which is where an editor should point.
    fn quoted_start(&self, offset: usize) -> usize {
        let before = self.text.get(..offset).unwrap_or("");
        if before.ends_with("\"\"\"") || before.ends_with("'''") {
            offset - 3
        } else if before.ends_with('"') || before.ends_with('\'') {
            offset - 1
        } else {
            offset
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn pos(&self, offset: usize) -> (usize, usize) {
        let i = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(i).copied().unwrap_or(0);
        let col = match self.text.get(start..offset) {
            Some(s) => s.chars().count(),
            None => offset.saturating_sub(start),
        };
        (i + 1, col + 1)
    }
}

/// Where something was declared, for "first defined at" messages.
#[derive(Clone, Copy, Debug)]
struct Loc {
    file: u32,
    line: usize,
}

/// The first tenant that listed an accepted domain: `doc.tenants[tenant].domains[domain]`.
#[derive(Clone, Copy, Debug)]
struct Claim {
    tenant: u32,
    domain: u32,
    at: Loc,
}

/// An accepted domain read from a bulk file: `doc.tenants[tenant].domains[domain]`, hashed.
#[derive(Clone, Copy, Debug)]
struct BulkClaim {
    hash: u64,
    tenant: u32,
    domain: u32,
    file: u32,
    line: u32,
    column: u32,
}

// ---------------------------------------------------------------------------------------------
// Hashing
//
// A bulk file brings millions of short keys (tenant ids, domain names); SipHash was a quarter of
// the parse time. The policy is the operator's own file, so a fast multiplicative hash (FxHash's
// step, murmur3's finaliser) with a per-parse random seed is enough.

/// Builds [`FastHasher`]s with one random seed.
#[derive(Clone, Copy)]
struct FastState(u64);

impl FastState {
    fn new() -> FastState {
        use core::hash::BuildHasher;
        FastState(
            std::collections::hash_map::RandomState::new().hash_one(0x6f75_7467_7561_7264_u64),
        )
    }
}

impl core::hash::BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

/// FxHash-style hasher, eight bytes a step.
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl core::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            for (w, b) in word.iter_mut().zip(rest) {
                *w = *b;
            }
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// For maps keyed by a [`FastHasher`] hash already: the key is the hash.
#[derive(Clone, Copy, Default)]
struct KeyIsHash;

impl core::hash::BuildHasher for KeyIsHash {
    type Hasher = HashValue;
    fn build_hasher(&self) -> HashValue {
        HashValue(0)
    }
}

/// Passes a `u64` key through.
struct HashValue(u64);

impl core::hash::Hasher for HashValue {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b) ^ (self.0 >> 56);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

// ---------------------------------------------------------------------------------------------
// Rules

/// The three rules, by their policy-file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleKind {
    Threshold,
    Unregistered,
    LowReputation,
}

const RULE_NAMES: &[&str] = &[
    "tenant_threshold",
    "unregistered_domain",
    "low_reputation_ip",
];
const THRESHOLD_KEYS: &[&str] = &[
    "mode",
    "window",
    "slots",
    "count",
    "suspicious",
    "min_messages",
    "min_suspicious",
    "max_ratio",
    "warn_ratio",
    "block",
    "grace",
    "renewal_delay",
];
const UNREGISTERED_KEYS: &[&str] = &[
    "mode", "window", "slots", "count", "limit", "block", "grace",
];
const LOW_REPUTATION_KEYS: &[&str] = &["mode", "scope", "ranges", "files"];
/// Keys that only the top-level rules may set.
const GLOBAL_ONLY: &[&str] = &["slots", "ranges", "files"];

const ROOT_KEYS: &[&str] = &["rules", "engine", "tenants", "tenants_file"];
const ENGINE_KEYS: &[&str] = &["audit_depth", "headroom_percent", "recent_connector"];
const TENANT_KEYS: &[&str] = &[
    "id",
    "licensed",
    "lapsed",
    "domains",
    "connectors",
    "ip_exceptions",
    "rules",
];
const DOMAIN_KEYS: &[&str] = &["name", "subdomains", "validated"];
const CONNECTOR_KEYS: &[&str] = &["name", "certificate", "ranges", "created"];
const EXCEPTION_KEYS: &[&str] = &["range", "expires"];

impl RuleKind {
    fn from_name(name: &str) -> Option<RuleKind> {
        match name {
            "tenant_threshold" => Some(RuleKind::Threshold),
            "unregistered_domain" => Some(RuleKind::Unregistered),
            "low_reputation_ip" => Some(RuleKind::LowReputation),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            RuleKind::Threshold => "tenant_threshold",
            RuleKind::Unregistered => "unregistered_domain",
            RuleKind::LowReputation => "low_reputation_ip",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            RuleKind::Threshold => THRESHOLD_KEYS,
            RuleKind::Unregistered => UNREGISTERED_KEYS,
            RuleKind::LowReputation => LOW_REPUTATION_KEYS,
        }
    }
}

/// A value as the rule setters see it, from TOML or from a bulk-file field.
#[derive(Debug)]
enum Raw<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Raw<'a>>),
    Other(&'static str),
}

fn raw<'a>(v: &'a Value<'_>) -> Raw<'a> {
    match v.as_array() {
        Some(a) => Raw::List(a.iter().map(raw_scalar).collect()),
        None => raw_scalar(v),
    }
}

fn raw_scalar<'a>(v: &'a Value<'_>) -> Raw<'a> {
    if let Some(s) = v.as_str() {
        Raw::Str(s)
    } else if let Some(i) = v.as_integer() {
        Raw::Int(i)
    } else if let Some(f) = v.as_float() {
        Raw::Float(f)
    } else if let Some(b) = v.as_bool() {
        Raw::Bool(b)
    } else if v.as_array().is_some() {
        Raw::Other("an array")
    } else {
        Raw::Other("a table")
    }
}

/// A bulk-file field as a value: integers, floats, booleans, else a string.
fn raw_field<'a>(key: &str, s: &'a str) -> Raw<'a> {
    if key == "suspicious" {
        if s.eq_ignore_ascii_case("none") {
            return Raw::List(Vec::new());
        }
        return Raw::List(s.split(',').map(Raw::Str).collect());
    }
    if let Ok(i) = s.parse::<i64>() {
        return Raw::Int(i);
    }
    if s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
    {
        if let Ok(f) = s.parse::<f64>() {
            return Raw::Float(f);
        }
    }
    match s {
        "true" => Raw::Bool(true),
        "false" => Raw::Bool(false),
        _ => Raw::Str(s),
    }
}

/// A string for diagnostics: quoted, escaped, cut after 60 characters.
fn quote(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((cut, _)) => format!("{:?}…", s.get(..cut).unwrap_or("")),
        None => format!("{s:?}"),
    }
}

/// The value, as found.
fn shown(v: &Raw) -> String {
    match v {
        Raw::Str(s) => quote(s),
        Raw::Int(i) => i.to_string(),
        Raw::Float(f) => f.to_string(),
        Raw::Bool(b) => b.to_string(),
        Raw::List(_) => "an array".to_owned(),
        Raw::Other(s) => (*s).to_owned(),
    }
}

/// The value with its type, for type mismatches.
fn typed(v: &Raw) -> String {
    match v {
        Raw::Str(s) => format!("a string {}", quote(s)),
        Raw::Int(i) => format!("an integer {i}"),
        Raw::Float(f) => format!("a float {f}"),
        Raw::Bool(b) => format!("a boolean {b}"),
        Raw::List(_) => "an array".to_owned(),
        Raw::Other(s) => (*s).to_owned(),
    }
}

fn wrong_type(expected: &str, v: &Raw) -> Problem {
    let numeric = expected.contains("integer") || expected.contains("ratio");
    let hint = match v {
        Raw::Str(s)
            if numeric
                && s.trim().parse::<f64>().is_ok()
                && s.trim()
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'.') =>
        {
            format!("wrong type: write the number without quotes ({})", s.trim())
        }
        Raw::Str(s @ ("true" | "false")) if expected.contains("boolean") => {
            format!("wrong type: write {s} without quotes")
        }
        _ => "wrong type".to_owned(),
    };
    problem(expected, typed(v), hint)
}

fn want_str<'a>(v: &Raw<'a>, expected: &str) -> Result<&'a str, Problem> {
    match v {
        Raw::Str(s) => Ok(s),
        other => Err(wrong_type(expected, other)),
    }
}

fn want_choice<T: Copy>(
    v: &Raw,
    expected: &str,
    what: &str,
    choices: &[(&str, T)],
) -> Result<T, Problem> {
    let s = want_str(v, expected)?;
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, t)| *t)
        .ok_or_else(|| problem(expected, quote(s), format!("unknown {what}")))
}

fn want_mode(v: &Raw) -> Result<Mode, Problem> {
    want_choice(
        v,
        "\"enforce\" or \"monitor\"",
        "mode",
        &[("enforce", Mode::Enforce), ("monitor", Mode::Monitor)],
    )
}

fn want_count(v: &Raw) -> Result<CountMode, Problem> {
    want_choice(
        v,
        "\"messages\" or \"recipients\"",
        "count",
        &[
            ("messages", CountMode::Messages),
            ("recipients", CountMode::Recipients),
        ],
    )
}

fn want_scope(v: &Raw) -> Result<Scope, Problem> {
    want_choice(
        v,
        "\"all\" or \"unlicensed\"",
        "scope",
        &[("all", Scope::All), ("unlicensed", Scope::Unlicensed)],
    )
}

const DURATION: &str = "a duration such as \"90s\", \"15m\", \"24h\" or \"7d\"";

fn want_duration(v: &Raw, allow_zero: bool) -> Result<u64, Problem> {
    let secs = match v {
        Raw::Str(s) => parse_duration(s).ok_or_else(|| {
            problem(
                DURATION,
                quote(s),
                "a duration is a number with a unit s, m, h, d or w (\"1h30m\" works too), or a bare number of seconds",
            )
        })?,
        Raw::Int(i) => u64::try_from(*i).map_err(|_| problem(DURATION, i.to_string(), "a duration cannot be negative"))?,
        other => return Err(wrong_type(DURATION, other)),
    };
    if secs == 0 && !allow_zero {
        return Err(problem(
            "a duration > 0",
            shown(v),
            "this duration must not be zero",
        ));
    }
    Ok(secs)
}

fn want_window(v: &Raw) -> Result<u64, Problem> {
    want_duration(v, false).map_err(|mut p| {
        if p.expected == "a duration > 0" {
            p.message = "a window of zero seconds cannot count anything".to_owned();
        }
        p
    })
}

fn want_block(v: &Raw) -> Result<BlockDuration, Problem> {
    const EXPECTED: &str = "\"manual\" or a duration such as \"6h\"";
    match v {
        Raw::Str(s) if s.trim().eq_ignore_ascii_case("manual") => Ok(BlockDuration::Manual),
        Raw::Str(_) | Raw::Int(_) => match want_duration(v, true) {
            Ok(0) => Err(problem(
                EXPECTED,
                shown(v),
                "a block of zero seconds would never block; use a positive duration, or \"manual\" for a block that lasts until released",
            )),
            Ok(s) => Ok(BlockDuration::Seconds(s)),
            Err(mut p) => {
                p.expected = EXPECTED.to_owned();
                Err(p)
            }
        },
        other => Err(wrong_type(EXPECTED, other)),
    }
}

fn want_uint(v: &Raw, min: u32) -> Result<u32, Problem> {
    let expected = if min == 0 {
        "a non-negative integer".to_owned()
    } else {
        format!("an integer >= {min}")
    };
    match v {
        Raw::Int(i) => match u32::try_from(*i) {
            Ok(n) if n >= min => Ok(n),
            Ok(_) | Err(_) if *i < i64::from(min) => Err(problem(
                expected,
                i.to_string(),
                format!("the value must be at least {min}"),
            )),
            _ => Err(problem(
                format!("an integer up to {}", u32::MAX),
                i.to_string(),
                "the value is too large",
            )),
        },
        other => Err(wrong_type(
            if min == 0 { "an integer" } else { &expected },
            other,
        )),
    }
}

fn want_int_range(v: &Raw, min: i64, max: i64) -> Result<i64, Problem> {
    match v {
        Raw::Int(i) if (min..=max).contains(i) => Ok(*i),
        Raw::Int(i) => Err(problem(
            format!("an integer from {min} to {max}"),
            i.to_string(),
            "the value is out of range",
        )),
        other => Err(wrong_type("an integer", other)),
    }
}

fn want_ratio(v: &Raw) -> Result<u32, Problem> {
    const EXPECTED: &str = "a ratio from 0 to 1";
    let f = match v {
        Raw::Float(f) => *f,
        Raw::Int(i @ (0 | 1)) => *i as f64,
        Raw::Int(i) => {
            return Err(problem(
                EXPECTED,
                i.to_string(),
                "a ratio is a fraction such as 0.5 (not a percentage)",
            ))
        }
        other => return Err(wrong_type(EXPECTED, other)),
    };
    if !(0.0..=1.0).contains(&f) {
        return Err(problem(
            EXPECTED,
            shown(v),
            "a ratio is a fraction such as 0.5 (not a percentage)",
        ));
    }
    // Round to the nearest part per million; f is within 0..=1 so this cannot overflow.
    let ppm = (f * f64::from(RATIO_ONE) + 0.5) as u32;
    Ok(ppm.min(RATIO_ONE))
}

fn want_verdicts(v: &Raw) -> Result<VerdictSet, Problem> {
    const EXPECTED: &str = "an array of verdict names";
    let Raw::List(items) = v else {
        return Err(wrong_type(EXPECTED, v));
    };
    let mut set = VerdictSet::EMPTY;
    for (i, item) in items.iter().enumerate() {
        const NAME: &str = "\"clean\", \"spam\", \"bulk\", \"phish\" or \"malware\"";
        let name = want_str(item, NAME).map_err(|p| p.at(i))?;
        let verdict = Verdict::from_name(name)
            .ok_or_else(|| problem(NAME, quote(name), "unknown verdict").at(i))?;
        set = set.with(verdict);
    }
    Ok(set)
}

const TIME: &str = "an RFC 3339 time such as \"2026-12-31T00:00:00Z\", or Unix seconds";

fn want_time(v: &Raw) -> Result<u64, Problem> {
    match v {
        Raw::Str(s) => parse_time(s).ok_or_else(|| {
            problem(
                TIME,
                quote(s),
                "not a time: write RFC 3339 with an offset (\"2026-12-31T00:00:00Z\", \"2026-12-31T02:00:00+02:00\") or Unix seconds",
            )
        }),
        Raw::Int(i) => u64::try_from(*i).map_err(|_| problem(TIME, i.to_string(), "a time cannot be before 1970")),
        other => Err(wrong_type(TIME, other)),
    }
}

fn want_bool(v: &Raw) -> Result<bool, Problem> {
    match v {
        Raw::Bool(b) => Ok(*b),
        other => Err(wrong_type("a boolean (true or false)", other)),
    }
}

/// Sets one per-tenant-capable rule parameter. `None`: not a key of that rule.
fn set_rule_key(
    rs: &mut RuleSet,
    rule: RuleKind,
    key: &str,
    v: &Raw,
) -> Option<Result<(), Problem>> {
    use RuleKind::{LowReputation as L, Threshold as T, Unregistered as U};
    let t = &mut rs.threshold;
    let u = &mut rs.unregistered;
    let l = &mut rs.low_reputation;
    let r = match (rule, key) {
        (T, "mode") => want_mode(v).map(|x| t.mode = x),
        (T, "window") => want_window(v).map(|x| t.window = x),
        (T, "count") => want_count(v).map(|x| t.count = x),
        (T, "suspicious") => want_verdicts(v).map(|x| t.suspicious = x),
        (T, "min_messages") => want_uint(v, 1).map(|x| t.min_messages = x),
        (T, "min_suspicious") => want_uint(v, 0).map(|x| t.min_suspicious = x),
        (T, "max_ratio") => want_ratio(v).map(|x| t.max_ratio_ppm = x),
        (T, "warn_ratio") => want_ratio(v).map(|x| t.warn_ratio_ppm = x),
        (T, "block") => want_block(v).map(|x| t.block = x),
        (T, "grace") => want_duration(v, true).map(|x| t.grace = x),
        (T, "renewal_delay") => want_duration(v, true).map(|x| t.renewal_delay = x),
        (U, "mode") => want_mode(v).map(|x| u.mode = x),
        (U, "window") => want_window(v).map(|x| u.window = x),
        (U, "count") => want_count(v).map(|x| u.count = x),
        (U, "limit") => want_uint(v, 1).map(|x| u.limit = x),
        (U, "block") => want_block(v).map(|x| u.block = x),
        (U, "grace") => want_duration(v, true).map(|x| u.grace = x),
        (L, "mode") => want_mode(v).map(|x| l.mode = x),
        (L, "scope") => want_scope(v).map(|x| l.scope = x),
        _ => return None,
    };
    Some(r)
}

/// `0.25` for 250 000 ppm.
fn ratio_text(ppm: u32) -> String {
    let whole = ppm / RATIO_ONE;
    let frac = ppm % RATIO_ONE;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

fn ratio_conflict(rs: &RuleSet, set_here: &str) -> Problem {
    let t = &rs.threshold;
    problem(
        format!("warn_ratio <= max_ratio ({})", ratio_text(t.max_ratio_ppm)),
        format!("warn_ratio {}", ratio_text(t.warn_ratio_ppm)),
        format!(
            "the warning tier must not be above the blocking ratio (max_ratio {}, warn_ratio {}; {set_here})",
            ratio_text(t.max_ratio_ppm),
            ratio_text(t.warn_ratio_ppm)
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Names, domains, ranges

fn check_id(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() {
        Err(format!("a {what} cannot be empty"))
    } else if s.len() > 255 {
        Err(format!(
            "a {what} is at most 255 bytes (this one has {})",
            s.len()
        ))
    } else if s.chars().any(char::is_control) {
        Err(format!("a {what} cannot contain control characters"))
    } else {
        Ok(())
    }
}

/// Normalises an accepted or certificate domain: IDNA to A-labels, lower case, no trailing dot.
fn normalise_domain(s: &str) -> Result<String, String> {
    if is_normal_domain(s) {
        return Ok(s.to_owned());
    }
    if s.is_ascii() {
        return match DomainName::parse(s.as_bytes()) {
            Ok(d) => Ok(d.as_str().to_owned()),
            Err(_) => Err(domain_problem(s)),
        };
    }
    let ascii = idna::domain_to_ascii(s).map_err(|_| {
        "not a valid internationalised domain name (the IDNA conversion failed)".to_owned()
    })?;
    match DomainName::parse(ascii.as_bytes()) {
        Ok(d) => Ok(d.as_str().to_owned()),
        Err(_) => Err(format!(
            "{} (after IDNA conversion to {})",
            domain_problem(&ascii),
            quote(&ascii)
        )),
    }
}

/// Whether `s` is already a domain in normal form (what `DomainName::parse` would return
/// unchanged): the fast path for the millions of names of a bulk file.
fn is_normal_domain(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > crate::address::MAX_DOMAIN {
        return false;
    }
    let mut label = 0usize;
    for &c in b {
        match c {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => {
                label += 1;
                if label > crate::address::MAX_LABEL {
                    return false;
                }
            }
            b'.' if label > 0 => label = 0,
            _ => return false,
        }
    }
    label > 0
}

fn domain_problem(s: &str) -> String {
    if s.starts_with("*.") {
        return "a wildcard is not a domain name: list the parent domain with subdomains = true"
            .to_owned();
    }
    let body = s.strip_suffix('.').unwrap_or(s);
    if body.is_empty() {
        return "the name is empty".to_owned();
    }
    if let Some(c) = body
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return format!(
            "{c:?} is not allowed in a domain name (letters, digits, '-' and '.' only)"
        );
    }
    if body.split('.').any(str::is_empty) {
        return "a label is empty (two dots in a row, or a leading dot)".to_owned();
    }
    if let Some(label) = body.split('.').find(|l| l.len() > 63) {
        return format!(
            "the label {} is {} octets long; the limit is 63",
            quote(label),
            label.len()
        );
    }
    if body.len() > 253 {
        return format!("the name is {} octets long; the limit is 253", body.len());
    }
    "not a valid domain name".to_owned()
}

const CIDR: &str = "an IP address or CIDR range";

fn parse_cidr(s: &str) -> Result<Cidr, Problem> {
    Cidr::parse(s).map_err(|_| problem(CIDR, quote(s), cidr_problem(s)))
}

fn cidr_problem(s: &str) -> String {
    let s = s.trim();
    let Some((addr, len)) = s.split_once('/') else {
        return "not an IP address or CIDR range (such as 192.0.2.0/24 or 2001:db8::/32)"
            .to_owned();
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return format!("{} is not an IP address", quote(addr));
    };
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    match len.parse::<u8>() {
        Ok(n) if len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit()) => {
            if n > max {
                return format!("the prefix length /{n} is longer than {max} bits");
            }
            match (Cidr::new(ip, n), Cidr::new(ip, max)) {
                (Ok(net), Ok(host)) if net.network != host.network => {
                    format!("host bits are set below the /{n} prefix; did you mean {net}?")
                }
                _ => "not a valid CIDR range".to_owned(),
            }
        }
        _ => format!(
            "the prefix length {} is not a number from 0 to {max}",
            quote(len)
        ),
    }
}

/// Levenshtein distance, for "did you mean" hints (short strings only).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = Vec::with_capacity(b.len() + 1);
    for (i, ca) in a.chars().enumerate() {
        cur.clear();
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        core::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}

fn unknown_key_problem(key: &str, valid: &[&str], table: &str) -> Problem {
    let list = valid.join(", ");
    let mut message = format!("unknown key {} in {table}", quote(key));
    if key.len() <= 64 {
        if let Some(best) = valid
            .iter()
            .map(|v| (distance(key, v), *v))
            .filter(|(d, v)| *d <= 2 && *d < v.len())
            .min_by_key(|(d, _)| *d)
        {
            message = format!("{message}; did you mean {:?}?", best.1);
        }
    }
    problem(format!("one of {list}"), quote(key), message)
}

fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn table_label(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("[{path}]")
    }
}

// ---------------------------------------------------------------------------------------------
// Reading files

enum ReadError {
    Io(String),
    Utf8 { line: usize, column: usize },
}

fn read_text(path: &Path) -> Result<String, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| ReadError::Io(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = e
            .as_bytes()
            .get(..e.utf8_error().valid_up_to())
            .unwrap_or(&[]);
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = core::str::from_utf8(good.get(line_start..).unwrap_or(&[]))
            .map_or(1, |s| s.chars().count() + 1);
        ReadError::Utf8 { line, column }
    })
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

// ---------------------------------------------------------------------------------------------
// The parser

/// A bulk-file line being parsed, for positions of its fields.
struct Line<'t> {
    file: u32,
    number: usize,
    text: &'t str,
}

impl Line<'_> {
    /// 1-based column of a field (a sub-slice of the line), or just past the end for `None`.
    fn column(&self, field: Option<&str>) -> usize {
        let offset = match field {
            Some(f) => (f.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize),
            None => self.text.trim_end().len(),
        };
        let chars = match self.text.get(..offset) {
            Some(s) => s.chars().count(),
            None => offset,
        };
        chars + 1
    }
}

/// The fields of a bulk-file line: runs of non-blank characters, up to a field starting with `#`.
/// (A byte loop: `split_ascii_whitespace` cost twice as much on a million-line file.)
struct Fields<'t>(&'t str);

impl<'t> Iterator for Fields<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let rest = self.0.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let end = rest
            .bytes()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let (field, tail) = rest.split_at(end);
        self.0 = tail;
        if field.is_empty() || field.starts_with('#') {
            self.0 = "";
            return None;
        }
        Some(field)
    }
}

/// Overrides a bulk file gave one tenant, for the checks made once the file is read.
#[derive(Clone, Copy)]
struct Touched {
    last: (usize, usize),
    ratio: Option<(usize, usize, &'static str)>,
}

struct Parser<'b> {
    base_dir: Option<&'b Path>,
    sink: Sink,
    doc: PolicyDoc,
    /// Tenant id -> index in `doc.tenants`.
    ids: HashMap<String, usize, FastState>,
    /// Where each tenant of `doc.tenants` was declared.
    declared: Vec<Loc>,
    /// Hash of an accepted domain -> the tenant that listed it first (the name itself is the
    /// `DomainDoc`'s: one allocation per domain, not two).
    claims: HashMap<u64, Claim, KeyIsHash>,
    /// Accepted domains whose hash collided with another name's.
    colliding: HashMap<String, Claim, FastState>,
    /// Accepted domains of bulk files, checked against each other and `claims` at the end.
    bulk_claims: Vec<BulkClaim>,
    /// (tenant, connector name) -> where it was defined.
    connectors: HashMap<(usize, String), Loc, FastState>,
    hasher: FastState,
    /// Whether the top-level rules passed `RuleSet::validate` (else tenants' failures are noise).
    global_valid: bool,
}

impl<'b> Parser<'b> {
    fn new(base_dir: Option<&'b Path>) -> Parser<'b> {
        let hasher = FastState::new();
        Parser {
            base_dir,
            sink: Sink {
                files: Vec::new(),
                shown: Vec::new(),
                hidden: Vec::new(),
                items: Vec::new(),
            },
            doc: PolicyDoc {
                rules: RuleSet::default(),
                threshold_slots: 24,
                unregistered_slots: 24,
                low_reputation: Vec::new(),
                engine: EngineDoc::default(),
                tenants: Vec::new(),
            },
            ids: HashMap::with_hasher(hasher),
            declared: Vec::new(),
            claims: HashMap::with_hasher(KeyIsHash),
            colliding: HashMap::with_hasher(hasher),
            bulk_claims: Vec::new(),
            connectors: HashMap::with_hasher(hasher),
            hasher,
            global_valid: true,
        }
    }

    fn finish(mut self) -> Result<PolicyDoc, PolicyError> {
        self.check_bulk_claims();
        if self.sink.count() == 0 && self.sink.hidden.iter().all(|&h| h == 0) {
            Ok(self.doc)
        } else {
            Err(PolicyError {
                diagnostics: self.sink.finish(),
            })
        }
    }

    fn loc_text(&self, loc: Loc) -> String {
        let file = self
            .sink
            .files
            .get(loc.file as usize)
            .map_or("?", String::as_str);
        format!("{file}:{}", loc.line)
    }

    fn tenant_label(&self, idx: usize) -> String {
        match self.doc.tenants.get(idx) {
            Some(t) if !t.id.is_empty() => quote(&t.id),
            _ => match self.declared.get(idx) {
                Some(&loc) => format!("(without a valid id, at {})", self.loc_text(loc)),
                None => "(unknown)".to_owned(),
            },
        }
    }

    // --- reporting -------------------------------------------------------------------------

    fn report_span(&mut self, src: &Src, span: Span, path: String, p: Problem) {
        let (line, col) = src.pos(src.quoted_start(span.start));
        self.sink.push(src.file, line, col, path, p);
    }

    /// Reports a problem with a TOML value; for a list element, at that element.
    fn report_value(&mut self, src: &Src, v: &Value, path: &str, p: Problem) {
        match p
            .elem
            .and_then(|i| v.as_array().and_then(|a| a.get(i)).map(|e| (i, e.span)))
        {
            Some((i, span)) => self.report_span(src, span, format!("{path}[{i}]"), p),
            None => self.report_span(src, v.span, path.to_owned(), p),
        }
    }

    fn report_line(&mut self, line: &Line, field: Option<&str>, path: &str, mut p: Problem) {
        if field.is_none() && p.found.is_empty() {
            p.found = "the end of the line".to_owned();
        }
        let col = line.column(field);
        self.sink
            .push(line.file, line.number, col, path.to_owned(), p);
    }

    fn unknown_key(&mut self, src: &Src, key: &Key, prefix: &str, valid: &[&str]) {
        let p = unknown_key_problem(&key.name, valid, &table_label(prefix));
        self.report_span(src, key.span, join_path(prefix, &key.name), p);
    }

    /// Reports every key of `t` not in `valid`.
    fn check_keys(&mut self, src: &Src, t: &Table, prefix: &str, valid: &[&str]) {
        for key in t.keys() {
            if !valid.contains(&key.name.as_ref()) {
                self.unknown_key(src, key, prefix, valid);
            }
        }
    }

    fn want_table<'v, 'de>(
        &mut self,
        src: &Src,
        v: &'v Value<'de>,
        path: &str,
        expected: &str,
    ) -> Option<&'v Table<'de>> {
        let t = v.as_table();
        if t.is_none() {
            self.report_value(src, v, path, wrong_type(expected, &raw_scalar(v)));
        }
        t
    }

    fn want_array<'v, 'de>(
        &mut self,
        src: &Src,
        v: &'v Value<'de>,
        path: &str,
        expected: &str,
    ) -> Option<&'v [Value<'de>]> {
        let a = v.as_array();
        if a.is_none() {
            self.report_value(src, v, path, wrong_type(expected, &raw_scalar(v)));
        }
        a.map(Vec::as_slice)
    }

    /// Applies a scalar of a TOML table with `f`; reports its problem.
    fn scalar<T>(
        &mut self,
        src: &Src,
        t: &Table,
        key: &str,
        path: &str,
        f: impl Fn(&Raw) -> Result<T, Problem>,
    ) -> Option<T> {
        let v = t.get(key)?;
        let path = join_path(path, key);
        match f(&raw(v)) {
            Ok(x) => Some(x),
            Err(p) => {
                self.report_value(src, v, &path, p);
                None
            }
        }
    }

    fn read_failure(&mut self, file: u32, e: ReadError) {
        match e {
            ReadError::Io(msg) => self.sink.push(
                file,
                0,
                0,
                String::new(),
                problem("", "", format!("cannot read the file: {msg}")),
            ),
            ReadError::Utf8 { line, column } => self.sink.push(
                file,
                line,
                column,
                String::new(),
                problem(
                    "UTF-8 text",
                    "bytes that are not UTF-8",
                    "the file must be UTF-8",
                ),
            ),
        }
    }

    /// Resolves and reads a file the policy refers to; problems are reported at the reference.
    /// Returns the new file's index and text.
    fn read_referenced(
        &mut self,
        src: &Src,
        v: &Value,
        path: &str,
        name: &str,
    ) -> Option<(u32, String)> {
        let Some(base) = self.base_dir else {
            self.report_value(
                src,
                v,
                path,
                problem(
                    "",
                    "",
                    format!(
                        "cannot read {}: the policy was given as text without a base directory (load it from a file, or pass base_dir)",
                        quote(name)
                    ),
                ),
            );
            return None;
        };
        let full: PathBuf = base.join(name);
        match read_text(&full) {
            Ok(text) => Some((self.sink.add_file(full.display().to_string()), text)),
            Err(ReadError::Io(msg)) => {
                let p = problem("", "", format!("cannot read {}: {msg}", full.display()));
                self.report_value(src, v, path, p);
                None
            }
            Err(e) => {
                let f = self.sink.add_file(full.display().to_string());
                self.read_failure(f, e);
                None
            }
        }
    }

    // --- the policy file ---------------------------------------------------------------------

    fn policy_text(&mut self, file: u32, text: &str) {
        let text = strip_bom(text);
        let src = Src::new(file, text);
        let root = match toml_span::parse(text) {
            Ok(root) => root,
            Err(e) => return self.syntax_error(&src, &e),
        };
        let Some(t) = root.as_table() else {
            return;
        };
        self.check_keys(&src, t, "", ROOT_KEYS);
        if let Some(v) = t.get("rules") {
            if let Some(rs) = self.rules(&src, v, "rules", true) {
                self.doc.rules = rs;
            }
        }
        if let Some(v) = t.get("engine") {
            self.engine(&src, v);
        }
        if let Some(v) = t.get("tenants") {
            self.tenants(&src, v);
        }
        if let Some(v) = t.get("tenants_file") {
            self.tenants_files(&src, v);
        }
    }

    fn syntax_error(&mut self, src: &Src, e: &toml_span::Error) {
        let first_line = |span: &Span| src.pos(span.start).0;
        let (expected, found, mut message) = match &e.kind {
            ErrorKind::Wanted { expected, found } => (
                (*expected).to_owned(),
                (*found).to_owned(),
                "TOML syntax error".to_owned(),
            ),
            ErrorKind::DuplicateKey { key, first } => (
                String::new(),
                String::new(),
                format!(
                    "duplicate key {} (first defined on line {})",
                    quote(key),
                    first_line(first)
                ),
            ),
            ErrorKind::DuplicateTable { name, first } => (
                String::new(),
                String::new(),
                format!(
                    "table {} is defined twice (first on line {})",
                    quote(name),
                    first_line(first)
                ),
            ),
            _ => (
                String::new(),
                String::new(),
                format!("TOML syntax error: {e}"),
            ),
        };
        // toml-span has no date-time values: point at the fix when one is written bare.
        let rest = src.text.get(e.span.start..).unwrap_or("");
        let looks_like_date = rest.len() >= 10
            && rest.bytes().take(4).all(|b| b.is_ascii_digit())
            && rest.as_bytes().get(4) == Some(&b'-');
        if looks_like_date {
            let value: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ',' && *c != '}' && *c != ']')
                .collect();
            message = format!("{message}; write times as strings: \"{value}\"");
        }
        self.report_span(
            src,
            e.span,
            String::new(),
            problem(expected, found, message),
        );
    }

    /// A `rules` table: the top level (`global`: may set the global-only keys, starts from the
    /// defaults) or a tenant's overrides (start from the top level's rules).
    /// Returns the rule set if any key was given.
    fn rules(&mut self, src: &Src, v: &Value, path: &str, global: bool) -> Option<RuleSet> {
        let t = self.want_table(src, v, path, "a table of rules")?;
        let mut rs = if global {
            RuleSet::default()
        } else {
            self.doc.rules
        };
        let mut any = false;
        let mut max_span = None;
        let mut warn_span = None;
        let mut files = None;
        for (rule_key, rv) in t {
            let Some(rule) = RuleKind::from_name(&rule_key.name) else {
                self.unknown_key(src, rule_key, path, RULE_NAMES);
                continue;
            };
            let rpath = join_path(path, rule.name());
            let Some(rt) = self.want_table(src, rv, &rpath, "a table of rule parameters") else {
                continue;
            };
            for (key, kv) in rt {
                let name: &str = &key.name;
                let kpath = join_path(&rpath, name);
                if GLOBAL_ONLY.contains(&name) && rule.keys().contains(&name) {
                    if global && name == "files" {
                        // After `ranges`, whatever the order in the file.
                        files = Some((kv, kpath));
                    } else if global {
                        self.global_only(src, rule, name, kv, &kpath);
                    } else {
                        let p = problem(
                            "a per-tenant rule parameter",
                            quote(name),
                            format!("{name:?} applies to every tenant: set it in the top-level [rules.{}] table", rule.name()),
                        );
                        self.report_span(src, key.span, kpath, p);
                    }
                    continue;
                }
                match set_rule_key(&mut rs, rule, name, &raw(kv)) {
                    None => {
                        let valid: Vec<&str> = rule
                            .keys()
                            .iter()
                            .copied()
                            .filter(|k| global || !GLOBAL_ONLY.contains(k))
                            .collect();
                        self.unknown_key(src, key, &rpath, &valid);
                    }
                    Some(Ok(())) => {
                        any = true;
                        if rule == RuleKind::Threshold && name == "max_ratio" {
                            max_span = Some((kv.span, kpath));
                        } else if rule == RuleKind::Threshold && name == "warn_ratio" {
                            warn_span = Some((kv.span, kpath));
                        }
                    }
                    Some(Err(p)) => self.report_value(src, kv, &kpath, p),
                }
            }
        }
        if let Some((kv, kpath)) = files {
            self.global_only(src, RuleKind::LowReputation, "files", kv, &kpath);
        }
        let th = &rs.threshold;
        if th.warn_ratio_ppm > th.max_ratio_ppm {
            let both = max_span.is_some() && warn_span.is_some();
            if let Some((span, kpath)) = warn_span.or(max_span) {
                let set_here = if both {
                    "both set here"
                } else if global {
                    "the other is the default"
                } else {
                    "the other is the policy's value"
                };
                let p = ratio_conflict(&rs, set_here);
                self.report_span(src, span, kpath, p);
            }
        }
        if global || self.global_valid {
            if let Err(e) = rs.validate() {
                if global {
                    self.global_valid = false;
                }
                self.report_span(src, v.span, path.to_owned(), problem("", "", e.to_string()));
            }
        }
        (any || global).then_some(rs)
    }

    /// `slots`, `ranges`, `files`: only in the top-level rules.
    fn global_only(&mut self, src: &Src, rule: RuleKind, key: &str, v: &Value, path: &str) {
        match key {
            "slots" => {
                if let Ok(n) =
                    want_int_range(&raw(v), 1, 1024).map_err(|p| self.report_value(src, v, path, p))
                {
                    let n = u16::try_from(n).unwrap_or(24);
                    if rule == RuleKind::Threshold {
                        self.doc.threshold_slots = n;
                    } else {
                        self.doc.unregistered_slots = n;
                    }
                }
            }
            "ranges" => {
                let ranges = self.cidr_list(src, v, path);
                self.doc.low_reputation.extend(ranges);
            }
            _ => {
                let Some(files) = self.want_array(src, v, path, "an array of file names") else {
                    return;
                };
                for (i, fv) in files.iter().enumerate() {
                    let fpath = format!("{path}[{i}]");
                    let Some(name) = fv.as_str() else {
                        self.report_value(
                            src,
                            fv,
                            &fpath,
                            wrong_type("a file name", &raw_scalar(fv)),
                        );
                        continue;
                    };
                    if let Some((f, text)) = self.read_referenced(src, fv, &fpath, name) {
                        self.range_file(f, &text, &fpath);
                    }
                }
            }
        }
    }

    /// An array of CIDR strings.
    fn cidr_list(&mut self, src: &Src, v: &Value, path: &str) -> Vec<Cidr> {
        let mut out = Vec::new();
        let Some(items) = self.want_array(src, v, path, "an array of CIDR ranges") else {
            return out;
        };
        out.reserve(items.len());
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            match item.as_str() {
                Some(s) => match parse_cidr(s) {
                    Ok(c) => out.push(c),
                    Err(p) => self.report_span(src, item.span, ipath, p),
                },
                None => {
                    self.report_span(src, item.span, ipath, wrong_type(CIDR, &raw_scalar(item)))
                }
            }
        }
        out
    }

    /// A low-reputation list file: one range a line.
    fn range_file(&mut self, file: u32, text: &str, path: &str) {
        for (n, text) in strip_bom(text).lines().enumerate() {
            let content = text.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            match parse_cidr(content) {
                Ok(c) => self.doc.low_reputation.push(c),
                Err(p) => {
                    let line = Line {
                        file,
                        number: n + 1,
                        text,
                    };
                    self.report_line(&line, Some(content), path, p);
                }
            }
        }
    }

    fn engine(&mut self, src: &Src, v: &Value) {
        let Some(t) = self.want_table(src, v, "engine", "a table") else {
            return;
        };
        self.check_keys(src, t, "engine", ENGINE_KEYS);
        if let Some(n) = self.scalar(src, t, "audit_depth", "engine", |r| {
            want_int_range(r, 1, 1024)
        }) {
            self.doc.engine.audit_depth = u16::try_from(n).unwrap_or(16);
        }
        if let Some(n) = self.scalar(src, t, "headroom_percent", "engine", |r| {
            want_int_range(r, 0, 1000)
        }) {
            self.doc.engine.headroom_percent = u32::try_from(n).unwrap_or(25);
        }
        if let Some(n) = self.scalar(src, t, "recent_connector", "engine", |r| {
            want_duration(r, true)
        }) {
            self.doc.engine.recent_connector = n;
        }
    }

    // --- tenants in the policy file -------------------------------------------------------------

    fn tenants(&mut self, src: &Src, v: &Value) {
        let Some(items) = self.want_array(src, v, "tenants", "an array of tables ([[tenants]])")
        else {
            return;
        };
        for (i, tv) in items.iter().enumerate() {
            let path = format!("tenants[{i}]");
            if let Some(t) = self.want_table(src, tv, &path, "a table") {
                self.tenant(src, tv.span, t, &path);
            }
        }
    }

    /// Adds a tenant (even one whose id is wrong, so that its other problems are found too).
    fn add_tenant(
        &mut self,
        id: Option<&str>,
        licensed: bool,
        lapsed: bool,
        at: Loc,
    ) -> (usize, Option<Problem>) {
        let idx = self.doc.tenants.len();
        let mut dup = None;
        if let Some(id) = id {
            match self.ids.get(id) {
                Some(&first) => {
                    let first_at = self
                        .declared
                        .get(first)
                        .map_or_else(|| "?".to_owned(), |&l| self.loc_text(l));
                    dup = Some(problem(
                        "a tenant id not used before",
                        quote(id),
                        format!("tenant {} is already declared at {first_at}", quote(id)),
                    ));
                }
                None => {
                    self.ids.insert(id.to_owned(), idx);
                }
            }
        }
        self.doc.tenants.push(TenantDoc {
            id: id.map(str::to_owned).unwrap_or_default(),
            licensed,
            lapsed,
            domains: Vec::new(),
            connectors: Vec::new(),
            ip_exceptions: Vec::new(),
            rules: None,
        });
        self.declared.push(at);
        (idx, dup)
    }

    fn tenant(&mut self, src: &Src, span: Span, t: &Table, path: &str) {
        self.check_keys(src, t, path, TENANT_KEYS);
        let id_path = join_path(path, "id");
        let mut id = None;
        match t.get("id") {
            None => self.report_span(
                src,
                span,
                id_path.clone(),
                problem(
                    "a tenant id",
                    "nothing",
                    "every [[tenants]] entry needs an id",
                ),
            ),
            Some(v) => match v.as_str() {
                None => self.report_value(
                    src,
                    v,
                    &id_path,
                    wrong_type("a tenant id (a string)", &raw_scalar(v)),
                ),
                Some(s) => match check_id(s, "tenant id") {
                    Ok(()) => id = Some((s, v.span)),
                    Err(m) => {
                        self.report_value(src, v, &id_path, problem("a tenant id", quote(s), m))
                    }
                },
            },
        }
        let licensed = self
            .scalar(src, t, "licensed", path, want_bool)
            .unwrap_or(true);
        let lapsed = self
            .scalar(src, t, "lapsed", path, want_bool)
            .unwrap_or(false);
        let at = Loc {
            file: src.file,
            line: src.pos(id.map_or(span, |(_, s)| s).start).0,
        };
        let (idx, dup) = self.add_tenant(id.map(|(s, _)| s), licensed, lapsed, at);
        if let (Some(p), Some((_, id_span))) = (dup, id) {
            self.report_span(src, id_span, id_path, p);
        }
        if let Some(v) = t.get("domains") {
            self.domains(src, v, &join_path(path, "domains"), idx);
        }
        if let Some(v) = t.get("connectors") {
            self.toml_connectors(src, v, &join_path(path, "connectors"), idx);
        }
        if let Some(v) = t.get("ip_exceptions") {
            self.exceptions(src, v, &join_path(path, "ip_exceptions"), idx);
        }
        if let Some(v) = t.get("rules") {
            let rules = self.rules(src, v, &join_path(path, "rules"), false);
            if let Some(tenant) = self.doc.tenants.get_mut(idx) {
                tenant.rules = rules;
            }
        }
    }

    /// Adds an accepted domain to a tenant; the problem if another tenant (or this one) has it.
    fn add_domain(&mut self, tenant: usize, d: DomainDoc, at: Loc) -> Result<(), Problem> {
        use core::hash::BuildHasher;
        let Some(t) = self.doc.tenants.get_mut(tenant) else {
            return Ok(());
        };
        let claim = Claim {
            tenant: u32::try_from(tenant).unwrap_or(u32::MAX),
            domain: u32::try_from(t.domains.len()).unwrap_or(u32::MAX),
            at,
        };
        let first = match self.claims.entry(self.hasher.hash_one(d.name.as_str())) {
            Entry::Vacant(e) => {
                e.insert(claim);
                t.domains.push(d);
                return Ok(());
            }
            Entry::Occupied(e) => *e.get(),
        };
        let first_name = self
            .doc
            .tenants
            .get(first.tenant as usize)
            .and_then(|t| t.domains.get(first.domain as usize))
            .map(|first| first.name.as_str());
        let first = if first_name == Some(d.name.as_str()) {
            first
        } else {
            // Two names with one hash: settle it by the names themselves.
            match self.colliding.entry(d.name.clone()) {
                Entry::Vacant(e) => {
                    e.insert(claim);
                    if let Some(t) = self.doc.tenants.get_mut(tenant) {
                        t.domains.push(d);
                    }
                    return Ok(());
                }
                Entry::Occupied(e) => *e.get(),
            }
        };
        Err(self.domain_conflict(&d.name, first, tenant))
    }

    /// The name of `doc.tenants[tenant].domains[domain]`.
    fn domain_name(&self, tenant: u32, domain: u32) -> &str {
        self.doc
            .tenants
            .get(tenant as usize)
            .and_then(|t| t.domains.get(domain as usize))
            .map_or("", |d| d.name.as_str())
    }

    /// A domain listed again: by the same tenant, or by another one.
    fn domain_conflict(&self, name: &str, first: Claim, tenant: usize) -> Problem {
        let first_at = self.loc_text(first.at);
        if first.tenant as usize == tenant {
            problem(
                "a domain not listed yet for this tenant",
                quote(name),
                format!(
                    "{} is listed twice for tenant {} (first at {first_at})",
                    quote(name),
                    self.tenant_label(tenant)
                ),
            )
        } else {
            problem(
                "a domain no other tenant accepts",
                quote(name),
                format!(
                    "{} is already an accepted domain of tenant {} ({first_at}); it cannot also belong to tenant {}",
                    quote(name),
                    self.tenant_label(first.tenant as usize),
                    self.tenant_label(tenant)
                ),
            )
        }
    }

    /// Adds an accepted domain from a bulk file. Whether another tenant (or this one) has it is
    /// checked once every file is read, by [`Parser::check_bulk_claims`]: a hash table of a
    /// million names costs two cache misses a line, a sort of them a fraction of that.
    fn add_bulk_domain(&mut self, tenant: usize, d: DomainDoc, line: &Line, column: usize) {
        use core::hash::BuildHasher;
        let hash = self.hasher.hash_one(d.name.as_str());
        let Some(t) = self.doc.tenants.get_mut(tenant) else {
            return;
        };
        self.bulk_claims.push(BulkClaim {
            hash,
            tenant: u32::try_from(tenant).unwrap_or(u32::MAX),
            domain: u32::try_from(t.domains.len()).unwrap_or(u32::MAX),
            file: line.file,
            line: u32::try_from(line.number).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        });
        t.domains.push(d);
    }

    /// Reports every bulk-file domain that an earlier line, or the policy file, already listed.
    fn check_bulk_claims(&mut self) {
        let mut claims = core::mem::take(&mut self.bulk_claims);
        // Equal names have equal hashes; within a hash, file and line order is reading order.
        claims.sort_unstable_by_key(|c| (c.hash, c.file, c.line, c.column));
        let mut found = Vec::new();
        for group in claims.chunk_by(|a, b| a.hash == b.hash) {
            let Some(head) = group.first() else {
                continue;
            };
            let inline = self.claims.get(&head.hash).copied();
            if group.len() == 1 && inline.is_none() {
                continue;
            }
            // Name -> first claim, for this hash (almost always a single name).
            let mut firsts: Vec<(&str, Claim)> = Vec::new();
            if let Some(c) = inline {
                firsts.push((self.domain_name(c.tenant, c.domain), c));
            }
            for c in group {
                let name = self.domain_name(c.tenant, c.domain);
                let first = firsts
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, first)| *first)
                    .or_else(|| self.colliding.get(name).copied());
                match first {
                    Some(first) => {
                        found.push((*c, self.domain_conflict(name, first, c.tenant as usize)))
                    }
                    None => {
                        let at = Loc {
                            file: c.file,
                            line: c.line as usize,
                        };
                        let claim = Claim {
                            tenant: c.tenant,
                            domain: c.domain,
                            at,
                        };
                        firsts.push((name, claim));
                    }
                }
            }
        }
        for (c, p) in found {
            let path = "domain.name".to_owned();
            self.sink
                .push(c.file, c.line as usize, c.column as usize, path, p);
        }
    }

    fn domains(&mut self, src: &Src, v: &Value, path: &str, tenant: usize) {
        const EXPECTED: &str =
            "a domain name, or { name = \"...\", subdomains = false, validated = true }";
        let Some(items) = self.want_array(src, v, path, "an array of domains") else {
            return;
        };
        for (i, dv) in items.iter().enumerate() {
            let dpath = format!("{path}[{i}]");
            let (name_v, name_path, subdomains, validated) = if dv.as_str().is_some() {
                (dv, dpath, false, true)
            } else if let Some(dt) = dv.as_table() {
                self.check_keys(src, dt, &dpath, DOMAIN_KEYS);
                let subdomains = self
                    .scalar(src, dt, "subdomains", &dpath, want_bool)
                    .unwrap_or(false);
                let validated = self
                    .scalar(src, dt, "validated", &dpath, want_bool)
                    .unwrap_or(true);
                let Some(name_v) = dt.get("name") else {
                    let p = problem("a domain name", "nothing", "a domain entry needs a name");
                    self.report_span(src, dv.span, join_path(&dpath, "name"), p);
                    continue;
                };
                (name_v, join_path(&dpath, "name"), subdomains, validated)
            } else {
                self.report_value(src, dv, &dpath, wrong_type(EXPECTED, &raw_scalar(dv)));
                continue;
            };
            let Some(s) = name_v.as_str() else {
                self.report_value(
                    src,
                    name_v,
                    &name_path,
                    wrong_type("a domain name", &raw_scalar(name_v)),
                );
                continue;
            };
            let name = match normalise_domain(s) {
                Ok(n) => n,
                Err(m) => {
                    self.report_span(
                        src,
                        name_v.span,
                        name_path,
                        problem("a domain name", quote(s), m),
                    );
                    continue;
                }
            };
            let at = Loc {
                file: src.file,
                line: src.pos(name_v.span.start).0,
            };
            let d = DomainDoc {
                name,
                subdomains,
                validated,
            };
            if let Err(p) = self.add_domain(tenant, d, at) {
                self.report_span(src, name_v.span, name_path, p);
            }
        }
    }

    /// Registers a connector name for a tenant; the problem if it already has one by that name.
    fn connector_name(&mut self, tenant: usize, name: &str, at: Loc) -> Result<(), Problem> {
        match self.connectors.entry((tenant, name.to_owned())) {
            Entry::Vacant(e) => {
                e.insert(at);
                Ok(())
            }
            Entry::Occupied(e) => {
                let first = *e.get();
                Err(problem(
                    "a connector name not used yet for this tenant",
                    quote(name),
                    format!(
                        "tenant {} already has a connector named {} ({})",
                        self.tenant_label(tenant),
                        quote(name),
                        self.loc_text(first)
                    ),
                ))
            }
        }
    }

    fn toml_connectors(&mut self, src: &Src, v: &Value, path: &str, tenant: usize) {
        let Some(items) = self.want_array(src, v, path, "an array of connectors") else {
            return;
        };
        for (i, cv) in items.iter().enumerate() {
            let cpath = format!("{path}[{i}]");
            let Some(ct) = self.want_table(
                src,
                cv,
                &cpath,
                "a connector table { name = \"...\", certificate = \"...\", ranges = [...] }",
            ) else {
                continue;
            };
            let before = self.sink.count();
            self.check_keys(src, ct, &cpath, CONNECTOR_KEYS);
            let name_path = join_path(&cpath, "name");
            let name = match ct.get("name") {
                None => {
                    let p = problem("a connector name", "nothing", "a connector needs a name");
                    self.report_span(src, cv.span, name_path, p);
                    None
                }
                Some(nv) => match nv.as_str() {
                    None => {
                        self.report_value(
                            src,
                            nv,
                            &name_path,
                            wrong_type("a connector name", &raw_scalar(nv)),
                        );
                        None
                    }
                    Some(s) => match check_id(s, "connector name") {
                        Err(m) => {
                            self.report_value(
                                src,
                                nv,
                                &name_path,
                                problem("a connector name", quote(s), m),
                            );
                            None
                        }
                        Ok(()) => {
                            let at = Loc {
                                file: src.file,
                                line: src.pos(nv.span.start).0,
                            };
                            match self.connector_name(tenant, s, at) {
                                Ok(()) => Some(s.to_owned()),
                                Err(p) => {
                                    self.report_value(src, nv, &name_path, p);
                                    None
                                }
                            }
                        }
                    },
                },
            };
            let certificate = ct.get("certificate").and_then(|v| {
                let cert_path = join_path(&cpath, "certificate");
                let Some(s) = v.as_str() else {
                    self.report_value(
                        src,
                        v,
                        &cert_path,
                        wrong_type("a certificate domain", &raw_scalar(v)),
                    );
                    return None;
                };
                normalise_domain(s)
                    .map_err(|m| {
                        self.report_value(
                            src,
                            v,
                            &cert_path,
                            problem("a certificate domain", quote(s), m),
                        )
                    })
                    .ok()
            });
            let ranges = match ct.get("ranges") {
                Some(rv) => self.cidr_list(src, rv, &join_path(&cpath, "ranges")),
                None => Vec::new(),
            };
            let created = self
                .scalar(src, ct, "created", &cpath, want_time)
                .unwrap_or(0);
            if self.sink.count() != before {
                continue;
            }
            if certificate.is_none() && ranges.is_empty() {
                let p = problem(
                    "certificate or ranges",
                    "neither",
                    "a connector needs a certificate domain, source ranges, or both",
                );
                self.report_span(src, cv.span, cpath, p);
                continue;
            }
            if let (Some(name), Some(t)) = (name, self.doc.tenants.get_mut(tenant)) {
                t.connectors.push(ConnectorDoc {
                    name,
                    certificate,
                    ranges,
                    created,
                });
            }
        }
    }

    fn exceptions(&mut self, src: &Src, v: &Value, path: &str, tenant: usize) {
        let Some(items) = self.want_array(src, v, path, "an array of IP exceptions") else {
            return;
        };
        for (i, ev) in items.iter().enumerate() {
            let epath = format!("{path}[{i}]");
            let (range_v, range_path, expires) = if ev.as_str().is_some() {
                (ev, epath, u64::MAX)
            } else if let Some(et) = ev.as_table() {
                self.check_keys(src, et, &epath, EXCEPTION_KEYS);
                let expires = self.scalar(src, et, "expires", &epath, want_time);
                let Some(range_v) = et.get("range") else {
                    let p = problem(CIDR, "nothing", "an IP exception needs a range");
                    self.report_span(src, ev.span, join_path(&epath, "range"), p);
                    continue;
                };
                (
                    range_v,
                    join_path(&epath, "range"),
                    expires.unwrap_or(u64::MAX),
                )
            } else {
                let p = wrong_type("{ range = \"...\", expires = \"...\" }", &raw_scalar(ev));
                self.report_value(src, ev, &epath, p);
                continue;
            };
            let range = match range_v.as_str() {
                Some(s) => parse_cidr(s),
                None => Err(wrong_type(CIDR, &raw_scalar(range_v))),
            };
            match range {
                Ok(range) => {
                    if let Some(t) = self.doc.tenants.get_mut(tenant) {
                        t.ip_exceptions.push(IpExceptionDoc { range, expires });
                    }
                }
                Err(p) => self.report_value(src, range_v, &range_path, p),
            }
        }
    }

    fn tenants_files(&mut self, src: &Src, v: &Value) {
        let Some(items) = v.as_array() else {
            return self.tenants_file(
                src,
                v,
                "tenants_file",
                "a file name or an array of file names",
            );
        };
        for (i, fv) in items.iter().enumerate() {
            self.tenants_file(src, fv, &format!("tenants_file[{i}]"), "a file name");
        }
    }

    fn tenants_file(&mut self, src: &Src, v: &Value, path: &str, expected: &str) {
        match v.as_str() {
            Some(name) => {
                if let Some((f, text)) = self.read_referenced(src, v, path, name) {
                    self.bulk(f, &text);
                }
            }
            None => self.report_value(src, v, path, wrong_type(expected, &raw_scalar(v))),
        }
    }

    // --- bulk tenants files ----------------------------------------------------------------------

    fn bulk(&mut self, file: u32, text: &str) {
        let mut last: Option<(&str, usize)> = None;
        let mut touched: HashMap<usize, Touched> = HashMap::new();
        let text = strip_bom(text);
        // At most one domain a line: size the list of claims once.
        let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
        self.bulk_claims.reserve(lines);
        for (n, text) in text.lines().enumerate() {
            let line = Line {
                file,
                number: n + 1,
                text,
            };
            let mut fields = Fields(text);
            let Some(kind) = fields.next() else {
                continue;
            };
            match kind {
                "tenant" => self.bulk_tenant(&line, &mut fields),
                "domain" | "connector" | "exception" | "override" => {
                    let Some(id) = fields.next() else {
                        let p = problem(
                            "a tenant id",
                            "",
                            format!("a {kind} record starts with the tenant id"),
                        );
                        self.report_line(&line, None, &format!("{kind}.tenant"), p);
                        continue;
                    };
                    let tenant = match last {
                        Some((last_id, idx)) if last_id == id => idx,
                        _ => match self.ids.get(id) {
                            Some(&idx) => {
                                last = Some((id, idx));
                                idx
                            }
                            None => {
                                let p = problem(
                                    "a declared tenant id",
                                    quote(id),
                                    format!(
                                        "tenant {} is not declared: add a `tenant {id}` line before its records, or declare it in the policy file",
                                        quote(id)
                                    ),
                                );
                                self.report_line(&line, Some(id), &format!("{kind}.tenant"), p);
                                continue;
                            }
                        },
                    };
                    match kind {
                        "domain" => self.bulk_domain(&line, tenant, &mut fields),
                        "connector" => self.bulk_connector(&line, tenant, &mut fields),
                        "exception" => self.bulk_exception(&line, tenant, &mut fields),
                        _ => self.bulk_override(&line, tenant, &mut fields, &mut touched),
                    }
                }
                other => {
                    let p = problem(
                        "one of tenant, domain, connector, exception, override",
                        quote(other),
                        "unknown record type",
                    );
                    self.report_line(&line, Some(other), "record", p);
                }
            }
        }
        let mut touched: Vec<(usize, Touched)> = touched.into_iter().collect();
        touched.sort_unstable_by_key(|(idx, _)| *idx);
        for (idx, t) in touched {
            let Some(rs) = self.doc.tenants.get(idx).and_then(|t| t.rules) else {
                continue;
            };
            if let Some((line, col, key)) = t.ratio {
                if rs.threshold.warn_ratio_ppm > rs.threshold.max_ratio_ppm {
                    let p = ratio_conflict(&rs, "the other is the tenant's or the policy's value");
                    self.sink
                        .push(file, line, col, format!("rules.tenant_threshold.{key}"), p);
                }
            }
            if self.global_valid {
                if let Err(e) = rs.validate() {
                    let (line, col) = t.last;
                    self.sink.push(
                        file,
                        line,
                        col,
                        "override".to_owned(),
                        problem("", "", e.to_string()),
                    );
                }
            }
        }
    }

    /// Reports any field left on a line whose record is complete.
    fn bulk_extra<'t>(
        &mut self,
        line: &Line,
        fields: &mut impl Iterator<Item = &'t str>,
        path: &str,
    ) {
        if let Some(extra) = fields.next() {
            let p = problem(
                "the end of the line",
                quote(extra),
                "unexpected extra field",
            );
            self.report_line(line, Some(extra), path, p);
        }
    }

    fn bulk_tenant<'t>(&mut self, line: &Line<'t>, fields: &mut impl Iterator<Item = &'t str>) {
        let Some(id) = fields.next() else {
            self.report_line(
                line,
                None,
                "tenant.id",
                problem("a tenant id", "", "a tenant record needs an id"),
            );
            return;
        };
        let mut licensed = true;
        let mut lapsed = false;
        for flag in fields {
            match flag {
                "licensed" => licensed = true,
                "unlicensed" => licensed = false,
                "lapsed" => lapsed = true,
                "active" => lapsed = false,
                _ => {
                    let p = problem(
                        "licensed, unlicensed, lapsed or active",
                        quote(flag),
                        "unknown tenant flag",
                    );
                    self.report_line(line, Some(flag), "tenant.flags", p);
                }
            }
        }
        let valid = match check_id(id, "tenant id") {
            Ok(()) => Some(id),
            Err(m) => {
                self.report_line(
                    line,
                    Some(id),
                    "tenant.id",
                    problem("a tenant id", quote(id), m),
                );
                None
            }
        };
        let at = Loc {
            file: line.file,
            line: line.number,
        };
        let (_, dup) = self.add_tenant(valid, licensed, lapsed, at);
        if let Some(p) = dup {
            self.report_line(line, Some(id), "tenant.id", p);
        }
    }

    fn bulk_domain<'t>(
        &mut self,
        line: &Line<'t>,
        tenant: usize,
        fields: &mut impl Iterator<Item = &'t str>,
    ) {
        let Some(name) = fields.next() else {
            self.report_line(
                line,
                None,
                "domain.name",
                problem("a domain name", "", "a domain record needs a name"),
            );
            return;
        };
        let mut subdomains = false;
        let mut validated = true;
        for flag in fields {
            match flag {
                "subdomains" => subdomains = true,
                "exact" => subdomains = false,
                "unvalidated" => validated = false,
                "validated" => validated = true,
                _ => {
                    let p = problem(
                        "subdomains, exact, validated or unvalidated",
                        quote(flag),
                        "unknown domain flag",
                    );
                    self.report_line(line, Some(flag), "domain.flags", p);
                }
            }
        }
        let normal = match normalise_domain(name) {
            Ok(n) => n,
            Err(m) => {
                self.report_line(
                    line,
                    Some(name),
                    "domain.name",
                    problem("a domain name", quote(name), m),
                );
                return;
            }
        };
        let d = DomainDoc {
            name: normal,
            subdomains,
            validated,
        };
        let column = line.column(Some(name));
        self.add_bulk_domain(tenant, d, line, column);
    }

    fn bulk_connector<'t>(
        &mut self,
        line: &Line<'t>,
        tenant: usize,
        fields: &mut impl Iterator<Item = &'t str>,
    ) {
        let Some(name) = fields.next() else {
            let p = problem("a connector name", "", "a connector record needs a name");
            self.report_line(line, None, "connector.name", p);
            return;
        };
        let before = self.sink.count();
        if let Err(m) = check_id(name, "connector name") {
            self.report_line(
                line,
                Some(name),
                "connector.name",
                problem("a connector name", quote(name), m),
            );
        }
        let mut certificate = None;
        let mut ranges = Vec::new();
        let mut created = None;
        for field in fields {
            let (key, value) = field.split_once('=').unwrap_or((field, ""));
            match key {
                "cert" | "certificate" => match normalise_domain(value) {
                    _ if certificate.is_some() => {
                        let p = problem(
                            "one certificate",
                            quote(field),
                            "the certificate is given twice",
                        );
                        self.report_line(line, Some(field), "connector.cert", p);
                    }
                    Ok(d) => certificate = Some(d),
                    Err(m) => {
                        let p = problem("a certificate domain", quote(value), m);
                        self.report_line(line, Some(value), "connector.cert", p);
                    }
                },
                "ranges" => {
                    for r in value.split(',') {
                        match parse_cidr(r) {
                            Ok(c) => ranges.push(c),
                            Err(p) => self.report_line(line, Some(r), "connector.ranges", p),
                        }
                    }
                }
                "created" => match want_time(&Raw::Str(value)) {
                    _ if created.is_some() => {
                        let p = problem(
                            "one creation time",
                            quote(field),
                            "the creation time is given twice",
                        );
                        self.report_line(line, Some(field), "connector.created", p);
                    }
                    Ok(t) => created = Some(t),
                    Err(p) => self.report_line(line, Some(value), "connector.created", p),
                },
                _ => {
                    let p = problem(
                        "cert=<domain>, ranges=<cidr>,... or created=<time>",
                        quote(field),
                        "unknown connector field",
                    );
                    self.report_line(line, Some(field), "connector", p);
                }
            }
        }
        if self.sink.count() != before {
            return;
        }
        if certificate.is_none() && ranges.is_empty() {
            let p = problem(
                "cert=<domain> or ranges=<cidr>,...",
                "",
                "a connector needs a certificate domain, source ranges, or both",
            );
            self.report_line(line, None, "connector", p);
            return;
        }
        let at = Loc {
            file: line.file,
            line: line.number,
        };
        if let Err(p) = self.connector_name(tenant, name, at) {
            self.report_line(line, Some(name), "connector.name", p);
            return;
        }
        if let Some(t) = self.doc.tenants.get_mut(tenant) {
            t.connectors.push(ConnectorDoc {
                name: name.to_owned(),
                certificate,
                ranges,
                created: created.unwrap_or(0),
            });
        }
    }

    fn bulk_exception<'t>(
        &mut self,
        line: &Line<'t>,
        tenant: usize,
        fields: &mut impl Iterator<Item = &'t str>,
    ) {
        let Some(range) = fields.next() else {
            self.report_line(
                line,
                None,
                "exception.range",
                problem(CIDR, "", "an exception record needs a range"),
            );
            return;
        };
        let before = self.sink.count();
        let parsed = parse_cidr(range)
            .map_err(|p| self.report_line(line, Some(range), "exception.range", p));
        let mut expires = u64::MAX;
        if let Some(field) = fields.next() {
            match field.strip_prefix("expires=") {
                Some(value) => match want_time(&Raw::Str(value)) {
                    Ok(t) => expires = t,
                    Err(p) => self.report_line(line, Some(value), "exception.expires", p),
                },
                None => {
                    let p = problem("expires=<time>", quote(field), "unknown exception field");
                    self.report_line(line, Some(field), "exception", p);
                }
            }
        }
        self.bulk_extra(line, fields, "exception");
        if let (Ok(range), true) = (parsed, self.sink.count() == before) {
            if let Some(t) = self.doc.tenants.get_mut(tenant) {
                t.ip_exceptions.push(IpExceptionDoc { range, expires });
            }
        }
    }

    fn bulk_override<'t>(
        &mut self,
        line: &Line<'t>,
        tenant: usize,
        fields: &mut impl Iterator<Item = &'t str>,
        touched: &mut HashMap<usize, Touched>,
    ) {
        const EXPECTED: &str = "<rule>.<key>, such as unregistered_domain.limit";
        let Some(key_field) = fields.next() else {
            self.report_line(
                line,
                None,
                "override",
                problem(EXPECTED, "", "an override names a rule parameter"),
            );
            return;
        };
        let full = key_field.strip_prefix("rules.").unwrap_or(key_field);
        let Some((rule_name, key)) = full.split_once('.') else {
            self.report_line(
                line,
                Some(key_field),
                "override",
                problem(EXPECTED, quote(key_field), "not a rule parameter"),
            );
            return;
        };
        let Some(rule) = RuleKind::from_name(rule_name) else {
            let p = unknown_key_problem(rule_name, RULE_NAMES, "[rules]");
            self.report_line(line, Some(key_field), "override", p);
            return;
        };
        let path = format!("rules.{}.{key}", rule.name());
        let valid: Vec<&str> = rule
            .keys()
            .iter()
            .copied()
            .filter(|k| !GLOBAL_ONLY.contains(k))
            .collect();
        if !valid.contains(&key) {
            let p = if rule.keys().contains(&key) {
                problem(
                    "a per-tenant rule parameter",
                    quote(key),
                    format!("{key:?} applies to every tenant: set it in the policy file's [rules.{}] table", rule.name()),
                )
            } else {
                unknown_key_problem(key, &valid, &format!("[rules.{}]", rule.name()))
            };
            self.report_line(line, Some(key_field), &path, p);
            return;
        }
        let Some(value) = fields.next() else {
            self.report_line(
                line,
                None,
                &path,
                problem("a value", "", "an override needs a value"),
            );
            return;
        };
        let before = self.sink.count();
        self.bulk_extra(line, fields, &path);
        let base = self.doc.rules;
        let Some(t) = self.doc.tenants.get_mut(tenant) else {
            return;
        };
        let rs = t.rules.get_or_insert(base);
        match set_rule_key(rs, rule, key, &raw_field(key, value)) {
            Some(Ok(())) if self.sink.count() == before => {
                let col = line.column(Some(value));
                let entry = touched.entry(tenant).or_insert(Touched {
                    last: (line.number, col),
                    ratio: None,
                });
                entry.last = (line.number, col);
                if rule == RuleKind::Threshold && (key == "max_ratio" || key == "warn_ratio") {
                    let key = if key == "max_ratio" {
                        "max_ratio"
                    } else {
                        "warn_ratio"
                    };
                    entry.ratio = Some((line.number, col, key));
                }
            }
            Some(Ok(())) | None => {}
            Some(Err(p)) => self.report_line(line, Some(value), &path, p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::{fs, vec};

    const FILE: &str = "policy.toml";

    fn errors(text: &str) -> Vec<Diagnostic> {
        match parse_policy(text, FILE, None) {
            Ok(doc) => panic!("expected errors, got {doc:?}"),
            Err(e) => e.diagnostics,
        }
    }

    /// The one diagnostic of a text, with its position and path checked.
    fn one(text: &str, line: usize, column: usize, path: &str) -> Diagnostic {
        let d = errors(text);
        assert_eq!(
            d.len(),
            1,
            "{}",
            PolicyError {
                diagnostics: d.clone()
            }
        );
        let d = d.into_iter().next().unwrap();
        assert_eq!(
            (d.file.as_str(), d.line, d.column, d.path.as_str()),
            (FILE, line, column, path),
            "{d}"
        );
        d
    }

    fn ok(text: &str) -> PolicyDoc {
        match parse_policy(text, FILE, None) {
            Ok(doc) => doc,
            Err(e) => panic!("unexpected errors:\n{e}"),
        }
    }

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy")
    }

    /// A scratch directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p =
                std::env::temp_dir().join(format!("outguard-policy-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            fs::write(&p, text).unwrap();
            p
        }
        fn name(&self, file: &str) -> String {
            self.0.join(file).display().to_string()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn spec_example() {
        let doc = load_policy(&fixtures().join("spec_example.toml")).unwrap();
        let mut rules = RuleSet::default();
        rules.threshold.suspicious = VerdictSet::SPAM_AND_BULK;
        assert_eq!(doc.rules, rules);
        assert_eq!(doc.rules.threshold.max_ratio_ppm, 500_000);
        assert_eq!(doc.rules.threshold.warn_ratio_ppm, 250_000);
        assert_eq!(doc.rules.unregistered.limit, 200);
        assert_eq!((doc.threshold_slots, doc.unregistered_slots), (24, 24));
        assert_eq!(doc.engine, EngineDoc::default());
        assert_eq!(
            doc.low_reputation,
            vec![
                cidr("192.0.2.0/24"),
                cidr("2001:db8:bad::/48"),
                cidr("198.51.100.0/24"),
                cidr("203.0.113.128/25"),
                cidr("2001:db8:dead::/48"),
                cidr("198.18.0.1/32"),
            ]
        );
        let mut overridden = rules;
        overridden.unregistered.limit = 1000;
        let expected = TenantDoc {
            id: "contoso".to_owned(),
            licensed: true,
            lapsed: false,
            domains: vec![
                DomainDoc {
                    name: "fabrikam.com".to_owned(),
                    subdomains: false,
                    validated: true,
                },
                DomainDoc {
                    name: "contoso.com".to_owned(),
                    subdomains: true,
                    validated: true,
                },
                DomainDoc {
                    name: "contoso.net".to_owned(),
                    subdomains: false,
                    validated: false,
                },
            ],
            connectors: vec![
                ConnectorDoc {
                    name: "onprem".to_owned(),
                    certificate: Some("mail.contoso.com".to_owned()),
                    ranges: vec![],
                    created: 1_768_003_200,
                },
                ConnectorDoc {
                    name: "hq".to_owned(),
                    certificate: None,
                    ranges: vec![cidr("203.0.113.0/24")],
                    created: 0,
                },
            ],
            ip_exceptions: vec![IpExceptionDoc {
                range: cidr("192.0.2.7/32"),
                expires: 1_798_675_200,
            }],
            rules: Some(overridden),
        };
        assert_eq!(doc.tenants, vec![expected]);
    }

    #[test]
    fn defaults_and_every_key() {
        let doc = ok("");
        assert_eq!(doc.rules, RuleSet::default());
        assert_eq!((doc.threshold_slots, doc.unregistered_slots), (24, 24));
        assert_eq!(doc.engine, EngineDoc::default());
        assert!(doc.tenants.is_empty() && doc.low_reputation.is_empty());

        let doc = ok(r#"
[rules.tenant_threshold]
mode = "monitor"
window = "1h30m"
slots = 90
count = "recipients"
suspicious = ["spam", "PHISH", "malware"]
min_messages = 10
min_suspicious = 0
max_ratio = 0.3333335
warn_ratio = 0
block = "6h"
grace = 600
renewal_delay = "2h"

[rules.unregistered_domain]
mode = "Monitor"
window = 3600
slots = 2
count = "recipients"
limit = 5
block = "manual"
grace = "0s"

[rules.low_reputation_ip]
mode = "monitor"
scope = "unlicensed"
ranges = ["192.0.2.7"]

[engine]
audit_depth = 64
headroom_percent = 0
recent_connector = "2w"

[[tenants]]
id = "t1"
licensed = false
lapsed = true
ip_exceptions = ["198.51.100.0/24", { range = "2001:db8::/32", expires = 1790000000 }]
rules.tenant_threshold.max_ratio = 1
rules.tenant_threshold.warn_ratio = 1
rules.low_reputation_ip.scope = "all"
"#);
        let t = doc.rules.threshold;
        assert_eq!(t.mode, Mode::Monitor);
        assert_eq!(t.window, 5_400);
        assert_eq!(t.count, CountMode::Recipients);
        assert_eq!(
            t.suspicious,
            VerdictSet::EMPTY
                .with(Verdict::Spam)
                .with(Verdict::Phish)
                .with(Verdict::Malware)
        );
        assert_eq!((t.min_messages, t.min_suspicious), (10, 0));
        assert_eq!((t.max_ratio_ppm, t.warn_ratio_ppm), (333_334, 0));
        assert_eq!(t.block, BlockDuration::Seconds(21_600));
        assert_eq!((t.grace, t.renewal_delay), (600, 7_200));
        let u = doc.rules.unregistered;
        assert_eq!(
            (u.mode, u.window, u.count, u.limit),
            (Mode::Monitor, 3_600, CountMode::Recipients, 5)
        );
        assert_eq!((u.block, u.grace), (BlockDuration::Manual, 0));
        assert_eq!(doc.rules.low_reputation.mode, Mode::Monitor);
        assert_eq!(doc.rules.low_reputation.scope, Scope::Unlicensed);
        assert_eq!((doc.threshold_slots, doc.unregistered_slots), (90, 2));
        assert_eq!(doc.low_reputation, vec![cidr("192.0.2.7/32")]);
        assert_eq!(
            doc.engine,
            EngineDoc {
                audit_depth: 64,
                headroom_percent: 0,
                recent_connector: 1_209_600
            }
        );
        let tenant = &doc.tenants[0];
        assert!(!tenant.licensed && tenant.lapsed);
        assert_eq!(
            tenant.ip_exceptions,
            vec![
                IpExceptionDoc {
                    range: cidr("198.51.100.0/24"),
                    expires: u64::MAX
                },
                IpExceptionDoc {
                    range: cidr("2001:db8::/32"),
                    expires: 1_790_000_000
                },
            ]
        );
        let mut expected = doc.rules;
        expected.threshold.max_ratio_ppm = RATIO_ONE;
        expected.threshold.warn_ratio_ppm = RATIO_ONE;
        expected.low_reputation.scope = Scope::All;
        assert_eq!(tenant.rules, Some(expected));
    }

    #[test]
    fn idna_and_normalisation() {
        let doc = ok(r#"
[[tenants]]
id = "b"
domains = ["bücher.example", "MIXED.Example.COM.", { name = "BÜCHER.test", subdomains = true }]
connectors = [{ name = "c", certificate = "Mail.Bücher.example." }]
"#);
        let names: Vec<&str> = doc.tenants[0]
            .domains
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "xn--bcher-kva.example",
                "mixed.example.com",
                "xn--bcher-kva.test"
            ]
        );
        assert_eq!(
            doc.tenants[0].connectors[0].certificate.as_deref(),
            Some("mail.xn--bcher-kva.example")
        );
        // The same domain written as a U-label and as an A-label is one domain.
        let d = one(
            "[[tenants]]\nid = \"a\"\ndomains = [\"bücher.example\", \"xn--bcher-kva.example\"]\n",
            3,
            30,
            "tenants[0].domains[1]",
        );
        assert!(
            d.message
                .contains("listed twice for tenant \"a\" (first at policy.toml:3)"),
            "{d}"
        );
        let d = one(
            "[[tenants]]\nid = \"a\"\ndomains = [\"bü cher.example\"]\n",
            3,
            12,
            "tenants[0].domains[0]",
        );
        assert_eq!(d.expected, "a domain name");
    }

    #[test]
    fn bad_domain() {
        let text = "[[tenants]]\nid = \"contoso\"\ndomains = [\n  \"fabrikam.com\",\n  \"exa mple.com\",\n  { name = \"a..b\" },\n  { name = \"*.x.com\", validated = false },\n  { subdomains = true },\n  42,\n]\n";
        let d = errors(text);
        let got: Vec<(usize, usize, &str, &str, &str)> = d
            .iter()
            .map(|d| {
                (
                    d.line,
                    d.column,
                    d.path.as_str(),
                    d.expected.as_str(),
                    d.found.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    5,
                    3,
                    "tenants[0].domains[1]",
                    "a domain name",
                    "\"exa mple.com\""
                ),
                (
                    6,
                    12,
                    "tenants[0].domains[2].name",
                    "a domain name",
                    "\"a..b\""
                ),
                (
                    7,
                    12,
                    "tenants[0].domains[3].name",
                    "a domain name",
                    "\"*.x.com\""
                ),
                (
                    8,
                    3,
                    "tenants[0].domains[4].name",
                    "a domain name",
                    "nothing"
                ),
                (
                    9,
                    3,
                    "tenants[0].domains[5]",
                    "a domain name, or { name = \"...\", subdomains = false, validated = true }",
                    "an integer 42"
                ),
            ]
        );
        assert_eq!(
            d[0].to_string(),
            "policy.toml:5:3: tenants[0].domains[1]: expected a domain name, found \"exa mple.com\": \
             ' ' is not allowed in a domain name (letters, digits, '-' and '.' only)"
        );
        assert!(d[1].message.contains("label is empty"), "{}", d[1]);
        assert!(d[2].message.contains("wildcard"), "{}", d[2]);
        let long = format!(
            "[[tenants]]\nid = \"a\"\ndomains = [\"{}.com\"]\n",
            "x".repeat(64)
        );
        assert!(one(&long, 3, 12, "tenants[0].domains[0]")
            .message
            .contains("64 octets long; the limit is 63"));
    }

    #[test]
    fn wrong_types() {
        let d = one(
            "[rules.tenant_threshold]\nmin_messages = \"100\"\n",
            2,
            16,
            "rules.tenant_threshold.min_messages",
        );
        assert_eq!(d.expected, "an integer >= 1");
        assert_eq!(d.found, "a string \"100\"");
        assert!(d.message.contains("without quotes"), "{d}");
        let d = one(
            "[rules.tenant_threshold]\nmin_suspicious = 1.5\n",
            2,
            18,
            "rules.tenant_threshold.min_suspicious",
        );
        assert_eq!(
            (d.expected.as_str(), d.found.as_str()),
            ("an integer", "a float 1.5")
        );
        let d = one(
            "[[tenants]]\nid = \"a\"\nlicensed = \"yes\"\n",
            3,
            12,
            "tenants[0].licensed",
        );
        assert_eq!(d.found, "a string \"yes\"");
        let d = one("[[tenants]]\nid = 7\n", 2, 6, "tenants[0].id");
        assert_eq!(d.found, "an integer 7");
        let d = one("rules = 5\n", 1, 9, "rules");
        assert_eq!(d.expected, "a table of rules");
        let d = one("[tenants]\nid = \"x\"\n", 1, 1, "tenants");
        assert_eq!(d.expected, "an array of tables ([[tenants]])");
        let d = one(
            "[rules.tenant_threshold]\nsuspicious = [\"spam\", \"ham\"]\n",
            2,
            23,
            "rules.tenant_threshold.suspicious[1]",
        );
        assert_eq!(d.found, "\"ham\"");
        one(
            "[rules.tenant_threshold]\nsuspicious = \"spam\"\n",
            2,
            14,
            "rules.tenant_threshold.suspicious",
        );
        let d = one(
            "[rules.unregistered_domain]\nlimit = 5000000000\n",
            2,
            9,
            "rules.unregistered_domain.limit",
        );
        assert_eq!(d.expected, "an integer up to 4294967295");
        let d = one(
            "[rules.unregistered_domain]\nmode = \"enforced\"\n",
            2,
            8,
            "rules.unregistered_domain.mode",
        );
        assert_eq!(d.expected, "\"enforce\" or \"monitor\"");
    }

    #[test]
    fn unknown_keys() {
        let d = one(
            "[rules.tenant_threshold]\nwindw = \"1h\"\n",
            2,
            1,
            "rules.tenant_threshold.windw",
        );
        assert!(d.message.contains("did you mean \"window\"?"), "{d}");
        assert!(
            d.expected.starts_with("one of mode, window, slots, count"),
            "{d}"
        );
        let d = one("colour = 1\n", 1, 1, "colour");
        assert_eq!(d.expected, "one of rules, engine, tenants, tenants_file");
        one("[rules.tenant_treshold]\n", 1, 8, "rules.tenant_treshold");
        one("[engine]\naudit = 3\n", 2, 1, "engine.audit");
        let d = one(
            "[[tenants]]\nid = \"a\"\ndomain = [\"a.com\"]\n",
            3,
            1,
            "tenants[0].domain",
        );
        assert!(d.message.contains("did you mean \"domains\"?"), "{d}");
        one(
            "[[tenants]]\nid = \"a\"\nconnectors = [{ name = \"c\", cert = \"x.com\" }]\n",
            3,
            29,
            "tenants[0].connectors[0].cert",
        );
        // Global-only keys cannot be overridden per tenant.
        let d = one(
            "[[tenants]]\nid = \"a\"\nrules.tenant_threshold.slots = 4\n",
            3,
            24,
            "tenants[0].rules.tenant_threshold.slots",
        );
        assert!(
            d.message.contains("top-level [rules.tenant_threshold]"),
            "{d}"
        );
        one(
            "[[tenants]]\nid = \"a\"\nrules.low_reputation_ip.ranges = []\n",
            3,
            25,
            "tenants[0].rules.low_reputation_ip.ranges",
        );
    }

    #[test]
    fn durations_ratios_and_limits() {
        let d = one(
            "[rules.tenant_threshold]\nwindow = \"24x\"\n",
            2,
            10,
            "rules.tenant_threshold.window",
        );
        assert_eq!(d.found, "\"24x\"");
        assert!(d.expected.starts_with("a duration"));
        one(
            "[rules.tenant_threshold]\ngrace = -5\n",
            2,
            9,
            "rules.tenant_threshold.grace",
        );
        let d = one(
            "[rules.tenant_threshold]\nmax_ratio = 1.5\n",
            2,
            13,
            "rules.tenant_threshold.max_ratio",
        );
        assert_eq!(
            (d.expected.as_str(), d.found.as_str()),
            ("a ratio from 0 to 1", "1.5")
        );
        one(
            "[rules.tenant_threshold]\nwarn_ratio = 25\n",
            2,
            14,
            "rules.tenant_threshold.warn_ratio",
        );
        one(
            "[rules.tenant_threshold]\nwarn_ratio = nan\n",
            2,
            14,
            "rules.tenant_threshold.warn_ratio",
        );
        let d = one(
            "[rules.tenant_threshold]\nmax_ratio = 0.2\nwarn_ratio = 0.3\n",
            3,
            14,
            "rules.tenant_threshold.warn_ratio",
        );
        assert_eq!(d.found, "warn_ratio 0.3");
        assert_eq!(d.expected, "warn_ratio <= max_ratio (0.2)");
        // Against the default warn_ratio (0.25).
        let d = one(
            "[rules.tenant_threshold]\nmax_ratio = 0.2\n",
            2,
            13,
            "rules.tenant_threshold.max_ratio",
        );
        assert!(d.message.contains("default"), "{d}");
        // A tenant's max_ratio below the policy's warn_ratio.
        one(
            "[[tenants]]\nid = \"a\"\nrules.tenant_threshold.max_ratio = 0.1\n",
            3,
            36,
            "tenants[0].rules.tenant_threshold.max_ratio",
        );
        let d = one("[engine]\naudit_depth = 0\n", 2, 15, "engine.audit_depth");
        assert_eq!(d.expected, "an integer from 1 to 1024");
        one(
            "[rules.unregistered_domain]\nslots = 2000\n",
            2,
            9,
            "rules.unregistered_domain.slots",
        );
        one(
            "[engine]\nrecent_connector = \"soon\"\n",
            2,
            20,
            "engine.recent_connector",
        );
    }

    /// The limits `RuleSet::validate` enforces are reported at the key that breaks them.
    #[test]
    fn validate_limits() {
        let d = one(
            "[rules.tenant_threshold]\nwindow = \"0s\"\n",
            2,
            10,
            "rules.tenant_threshold.window",
        );
        assert_eq!(d.expected, "a duration > 0");
        one(
            "[rules.unregistered_domain]\nwindow = 0\n",
            2,
            10,
            "rules.unregistered_domain.window",
        );
        let d = one(
            "[rules.unregistered_domain]\nlimit = 0\n",
            2,
            9,
            "rules.unregistered_domain.limit",
        );
        assert_eq!(
            (d.expected.as_str(), d.found.as_str()),
            ("an integer >= 1", "0")
        );
        one(
            "[rules.tenant_threshold]\nmin_messages = 0\n",
            2,
            16,
            "rules.tenant_threshold.min_messages",
        );
        let d = one(
            "[rules.unregistered_domain]\nblock = \"0h\"\n",
            2,
            9,
            "rules.unregistered_domain.block",
        );
        assert!(d.message.contains("never block"), "{d}");
        one(
            "[[tenants]]\nid = \"a\"\nrules.unregistered_domain.limit = 0\n",
            3,
            35,
            "tenants[0].rules.unregistered_domain.limit",
        );
        // Whatever passes the key checks passes validate.
        for text in [
            "[rules.tenant_threshold]\nmax_ratio = 1\nwarn_ratio = 1\nmin_messages = 1\nblock = 1\n",
            "[rules.unregistered_domain]\nlimit = 1\nwindow = 1\nblock = \"1s\"\ngrace = 0\n",
        ] {
            ok(text).rules.validate().unwrap();
        }
    }

    #[test]
    fn ranges_and_connectors() {
        let d = one(
            "[rules.low_reputation_ip]\nranges = [\"192.0.2.0/24\", \"192.0.2.1/24\"]\n",
            2,
            27,
            "rules.low_reputation_ip.ranges[1]",
        );
        assert_eq!(d.expected, "an IP address or CIDR range");
        assert!(d.message.contains("did you mean 192.0.2.0/24?"), "{d}");
        let d = one(
            "[rules.low_reputation_ip]\nranges = [\"10.0.0.0/33\"]\n",
            2,
            11,
            "rules.low_reputation_ip.ranges[0]",
        );
        assert!(d.message.contains("longer than 32 bits"), "{d}");
        one(
            "[[tenants]]\nid = \"a\"\nconnectors = [{ name = \"hq\", ranges = [\"203.0.113.0/24\", \"nope\"] }]\n",
            3,
            58,
            "tenants[0].connectors[0].ranges[1]",
        );
        one(
            "[[tenants]]\nid = \"a\"\nip_exceptions = [{ range = \"::1/200\" }]\n",
            3,
            28,
            "tenants[0].ip_exceptions[0].range",
        );
        one(
            "[[tenants]]\nid = \"a\"\nip_exceptions = [{ range = \"::1\", expires = \"tomorrow\" }]\n",
            3,
            45,
            "tenants[0].ip_exceptions[0].expires",
        );
        let d = one(
            "[[tenants]]\nid = \"a\"\nconnectors = [{ name = \"x\", created = 5 }]\n",
            3,
            15,
            "tenants[0].connectors[0]",
        );
        assert_eq!(
            (d.expected.as_str(), d.found.as_str()),
            ("certificate or ranges", "neither")
        );
        let d = one(
            "[[tenants]]\nid = \"a\"\nconnectors = [\n  { name = \"hq\", ranges = [\"203.0.113.0/24\"] },\n  { name = \"hq\", certificate = \"mail.a.com\" },\n]\n",
            5,
            12,
            "tenants[0].connectors[1].name",
        );
        assert!(
            d.message
                .contains("already has a connector named \"hq\" (policy.toml:4)"),
            "{d}"
        );
        one(
            "[[tenants]]\nid = \"a\"\nconnectors = [{ ranges = [\"203.0.113.0/24\"] }]\n",
            3,
            15,
            "tenants[0].connectors[0].name",
        );
        // Connector names are per tenant.
        ok("[[tenants]]\nid = \"a\"\nconnectors = [{ name = \"hq\", ranges = [\"192.0.2.0/24\"] }]\n\
            [[tenants]]\nid = \"b\"\nconnectors = [{ name = \"hq\", ranges = [\"198.51.100.0/24\"] }]\n");
    }

    #[test]
    fn tenant_cross_checks() {
        let text = "[[tenants]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n\n[[tenants]]\nid = \"fabrikam\"\ndomains = [\"Contoso.com\"]\n\n[[tenants]]\nid = \"contoso\"\n";
        let d = errors(text);
        assert_eq!(
            d.len(),
            2,
            "{}",
            PolicyError {
                diagnostics: d.clone()
            }
        );
        assert_eq!(
            (d[0].line, d[0].column, d[0].path.as_str()),
            (7, 12, "tenants[1].domains[0]")
        );
        assert_eq!(
            d[0].message,
            "\"contoso.com\" is already an accepted domain of tenant \"contoso\" (policy.toml:3); it cannot also belong to tenant \"fabrikam\""
        );
        assert_eq!(
            (d[1].line, d[1].column, d[1].path.as_str()),
            (10, 6, "tenants[2].id")
        );
        assert_eq!(
            d[1].message,
            "tenant \"contoso\" is already declared at policy.toml:2"
        );
        let d = one("[[tenants]]\nlicensed = true\n", 1, 1, "tenants[0].id");
        assert_eq!(d.found, "nothing");
        let d = one("[[tenants]]\nid = \"\"\n", 2, 6, "tenants[0].id");
        assert!(d.message.contains("empty"));
        let long = format!("[[tenants]]\nid = \"{}\"\n", "x".repeat(256));
        assert!(one(&long, 2, 6, "tenants[0].id")
            .message
            .contains("at most 255 bytes"));
        one("[[tenants]]\nid = \"a\\tb\"\n", 2, 6, "tenants[0].id");
    }

    #[test]
    fn all_errors_are_reported_in_order() {
        let text = r#"[rules.tenant_threshold]
window = "forever"
max_ratio = 2
bogus = 1

[rules.unregistered_domain]
limit = -1

[[tenants]]
id = "a"
domains = ["a.com", "a.com", "bad_name.com"]
connectors = [{ name = "c" }]

[[tenants]]
id = "a"
domains = ["a.com"]
ip_exceptions = [{ range = "1.2.3.4/40" }]
"#;
        let d = errors(text);
        let got: Vec<(usize, &str)> = d.iter().map(|d| (d.line, d.path.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "rules.tenant_threshold.window"),
                (3, "rules.tenant_threshold.max_ratio"),
                (4, "rules.tenant_threshold.bogus"),
                (7, "rules.unregistered_domain.limit"),
                (11, "tenants[0].domains[1]"),
                (11, "tenants[0].domains[2]"),
                (12, "tenants[0].connectors[0]"),
                (15, "tenants[1].id"),
                (16, "tenants[1].domains[0]"),
                (17, "tenants[1].ip_exceptions[0].range"),
            ]
        );
        let shown = PolicyError { diagnostics: d }.to_string();
        assert_eq!(shown.lines().count(), 10);
        assert!(
            shown.lines().all(|l| l.starts_with("policy.toml:")),
            "{shown}"
        );
    }

    #[test]
    fn syntax_errors() {
        // An unterminated string: toml-span points at the end of the line.
        let d = one(
            "[rules.tenant_threshold]\nwindow = \"24h\nslots = 3\n",
            2,
            14,
            "",
        );
        assert!(d.message.contains("TOML syntax error"), "{d}");
        let d = one("a = 1\n[[tenants]]\nid = \"x\"\nid = \"y\"\n", 4, 1, "");
        assert!(
            d.message
                .contains("duplicate key \"id\" (first defined on line 3)"),
            "{d}"
        );
        let d = one(
            "[[tenants]]\nid = \"x\"\nip_exceptions = [{ range = \"::1\", expires = 2026-12-31T00:00:00Z }]\n",
            3,
            45,
            "",
        );
        assert!(
            d.message
                .contains("write times as strings: \"2026-12-31T00:00:00Z\""),
            "{d}"
        );
        // Positions count characters, not bytes.
        let d = one("# çé\nx = \"ü\" y\n", 2, 9, "");
        assert!(!d.message.is_empty());
    }

    #[test]
    fn referenced_files() {
        let d = one(
            "[rules.low_reputation_ip]\nfiles = [\"lowrep.txt\"]\n",
            2,
            10,
            "rules.low_reputation_ip.files[0]",
        );
        assert!(d.message.contains("without a base directory"), "{d}");
        one("tenants_file = \"t.txt\"\n", 1, 16, "tenants_file");

        let dir = TempDir::new("files");
        dir.write(
            "bad.txt",
            "192.0.2.0/24\n\n  # comment\n 10.0.0.300/8  # typo\n::/0\n",
        );
        let policy = dir.write(
            "policy.toml",
            "[rules.low_reputation_ip]\nfiles = [\"bad.txt\", \"missing.txt\"]\n",
        );
        let e = load_policy(&policy).unwrap_err();
        let d = &e.diagnostics;
        assert_eq!(d.len(), 2, "{e}");
        assert_eq!(
            (d[0].file.clone(), d[0].line, d[0].column),
            (dir.name("policy.toml"), 2, 21)
        );
        assert!(d[0].message.starts_with("cannot read "), "{}", d[0]);
        assert_eq!(d[0].path, "rules.low_reputation_ip.files[1]");
        assert_eq!(
            (d[1].file.clone(), d[1].line, d[1].column),
            (dir.name("bad.txt"), 4, 2)
        );
        assert_eq!(
            (d[1].path.as_str(), d[1].found.as_str()),
            ("rules.low_reputation_ip.files[0]", "\"10.0.0.300/8\"")
        );

        fs::write(dir.0.join("bin.txt"), b"192.0.2.0/24\n10.\xff\n").unwrap();
        dir.write(
            "policy.toml",
            "[rules.low_reputation_ip]\nfiles = [\"bin.txt\"]\n",
        );
        let e = load_policy(&policy).unwrap_err();
        assert_eq!(
            (
                e.diagnostics[0].file.clone(),
                e.diagnostics[0].line,
                e.diagnostics[0].column
            ),
            (dir.name("bin.txt"), 2, 4)
        );

        let e = load_policy(&dir.0.join("nope.toml")).unwrap_err();
        assert_eq!(e.diagnostics.len(), 1);
        assert_eq!((e.diagnostics[0].line, e.diagnostics[0].column), (0, 0));
        assert!(
            e.to_string().starts_with(&format!(
                "{}: cannot read the file: ",
                dir.name("nope.toml")
            )),
            "{e}"
        );
    }

    const BULK: &str = "# bulk tenants\n\
tenant t1\n\
tenant t2 unlicensed lapsed\n\
domain t1 one.example subdomains\n\
domain t1 bücher.example unvalidated   # IDNA\n\
domain inline inline2.example\n\
\tdomain   t2   two.example\n\
connector t1 onprem cert=mail.one.example created=2026-01-10T00:00:00Z\n\
connector t1 hq ranges=203.0.113.0/24,2001:db8:1::/48 ranges=192.0.2.0/28\n\
exception t2 192.0.2.7/32 expires=1790000000\n\
exception t2 198.51.100.0/24\n\
override t1 unregistered_domain.limit 1000\n\
override t1 rules.tenant_threshold.block 6h\n\
override t1 tenant_threshold.suspicious spam,phish\n\
override t1 tenant_threshold.warn_ratio 0.1\n\
override inline low_reputation_ip.mode monitor\n";

    #[test]
    fn bulk_file() {
        let dir = TempDir::new("bulk");
        dir.write("tenants.txt", BULK);
        let policy = dir.write(
            "policy.toml",
            "tenants_file = \"tenants.txt\"\n[[tenants]]\nid = \"inline\"\ndomains = [\"inline.example\"]\n",
        );
        let doc = load_policy(&policy).unwrap();
        let ids: Vec<&str> = doc.tenants.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["inline", "t1", "t2"]);
        let [inline, t1, t2] = &doc.tenants[..] else {
            panic!()
        };
        assert_eq!(inline.domains.len(), 2);
        assert_eq!(inline.domains[1].name, "inline2.example");
        let mut r = RuleSet::default();
        r.low_reputation.mode = Mode::Monitor;
        assert_eq!(inline.rules, Some(r));
        assert!(t1.licensed && !t1.lapsed && !t2.licensed && t2.lapsed);
        assert_eq!(
            t1.domains,
            vec![
                DomainDoc {
                    name: "one.example".to_owned(),
                    subdomains: true,
                    validated: true
                },
                DomainDoc {
                    name: "xn--bcher-kva.example".to_owned(),
                    subdomains: false,
                    validated: false
                },
            ]
        );
        assert_eq!(t2.domains[0].name, "two.example");
        assert_eq!(
            t1.connectors,
            vec![
                ConnectorDoc {
                    name: "onprem".to_owned(),
                    certificate: Some("mail.one.example".to_owned()),
                    ranges: vec![],
                    created: 1_768_003_200
                },
                ConnectorDoc {
                    name: "hq".to_owned(),
                    certificate: None,
                    ranges: vec![
                        cidr("203.0.113.0/24"),
                        cidr("2001:db8:1::/48"),
                        cidr("192.0.2.0/28")
                    ],
                    created: 0
                },
            ]
        );
        assert_eq!(
            t2.ip_exceptions,
            vec![
                IpExceptionDoc {
                    range: cidr("192.0.2.7/32"),
                    expires: 1_790_000_000
                },
                IpExceptionDoc {
                    range: cidr("198.51.100.0/24"),
                    expires: u64::MAX
                },
            ]
        );
        let mut r = RuleSet::default();
        r.unregistered.limit = 1000;
        r.threshold.block = BlockDuration::Seconds(21_600);
        r.threshold.suspicious = VerdictSet::EMPTY.with(Verdict::Spam).with(Verdict::Phish);
        r.threshold.warn_ratio_ppm = 100_000;
        assert_eq!(t1.rules, Some(r));
        assert_eq!(t2.rules, None);

        // An array of files, read in order.
        dir.write("more.txt", "tenant t3\ndomain t1 three.example\n");
        dir.write(
            "policy.toml",
            "tenants_file = [\"tenants.txt\", \"more.txt\"]\n[[tenants]]\nid = \"inline\"\n",
        );
        let doc = load_policy(&policy).unwrap();
        assert_eq!(doc.tenants.len(), 4);
        assert_eq!(doc.tenants[1].domains.len(), 3);
    }

    #[test]
    fn bulk_errors() {
        let dir = TempDir::new("bulk-errors");
        let bulk = "tenant a\n\
domain b b.example\n\
tenant a\n\
domain a exa_mple.com\n\
tenant c\n\
domain c inline.example\n\
domain a a.example\n\
domain a A.example.\n\
connector a\n\
connector a x\n\
connector a y cert=mail.example ranges=10.0.0.1/8 created=yesterday\n\
connector a z ranges=10.0.0.0/8\n\
connector a z cert=z.example\n\
exception a 192.0.2.0/24 expires=never extra\n\
override a unregistered_domain.limit 0\n\
override a tenant_threshold.slots 4\n\
override a tenant_threshold.max_ratio 0.1\n\
override a tenant_threshold.mode\n\
frobnicate a\n\
tenant d wat\n\
domain a\n\
override c nonsense.limit 4\n\
override c unregistered_domain.limt 4\n\
tenant \u{1}x\n";
        dir.write("tenants.txt", bulk);
        let policy = dir.write(
            "policy.toml",
            "tenants_file = \"tenants.txt\"\n[[tenants]]\nid = \"inline\"\ndomains = [\"inline.example\"]\n",
        );
        let e = load_policy(&policy).unwrap_err();
        let file = dir.name("tenants.txt");
        assert!(e.diagnostics.iter().all(|d| d.file == file), "{e}");
        let got: Vec<(usize, usize, &str)> = e
            .diagnostics
            .iter()
            .map(|d| (d.line, d.column, d.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, 8, "domain.tenant"),
                (3, 8, "tenant.id"),
                (4, 10, "domain.name"),
                (6, 10, "domain.name"),
                (8, 10, "domain.name"),
                (9, 12, "connector.name"),
                (10, 14, "connector"),
                (11, 40, "connector.ranges"),
                (11, 59, "connector.created"),
                (13, 13, "connector.name"),
                (14, 34, "exception.expires"),
                (14, 40, "exception"),
                (15, 38, "rules.unregistered_domain.limit"),
                (16, 12, "rules.tenant_threshold.slots"),
                (17, 39, "rules.tenant_threshold.max_ratio"),
                (18, 33, "rules.tenant_threshold.mode"),
                (19, 1, "record"),
                (20, 10, "tenant.flags"),
                (21, 9, "domain.name"),
                (22, 12, "override"),
                (23, 12, "rules.unregistered_domain.limt"),
                (24, 8, "tenant.id"),
            ],
            "{e}"
        );
        let d = &e.diagnostics;
        assert!(
            d[0].message.contains("tenant \"b\" is not declared"),
            "{}",
            d[0]
        );
        assert!(
            d[1].message
                .contains(&format!("already declared at {file}:1")),
            "{}",
            d[1]
        );
        assert!(
            d[3].message.contains(&format!(
                "already an accepted domain of tenant \"inline\" ({}:4); it cannot also belong to tenant \"c\"",
                dir.name("policy.toml")
            )),
            "{}",
            d[3]
        );
        assert!(
            d[4].message.contains(&format!(
                "listed twice for tenant \"a\" (first at {file}:7)"
            )),
            "{}",
            d[4]
        );
        assert!(
            d[9].message
                .contains(&format!("already has a connector named \"z\" ({file}:12)")),
            "{}",
            d[9]
        );
        assert!(d[14].message.contains("warning tier"), "{}", d[14]);
        assert_eq!(d[15].found, "the end of the line", "{}", d[15]);
        assert!(
            d[20].message.contains("did you mean \"limit\"?"),
            "{}",
            d[20]
        );
    }

    #[test]
    fn scale_small() {
        let dir = TempDir::new("scale");
        let mut bulk = String::new();
        for t in 0..2_000 {
            bulk.push_str(&format!(
                "tenant tenant{t}{}\n",
                if t % 3 == 0 { " unlicensed" } else { "" }
            ));
            for d in 0..5 {
                bulk.push_str(&format!("domain tenant{t} d{d}.tenant{t}.example\n"));
            }
            if t % 10 == 0 {
                bulk.push_str(&format!(
                    "connector tenant{t} relay ranges=10.{}.{}.0/24\n",
                    t / 256,
                    t % 256
                ));
                bulk.push_str(&format!(
                    "override tenant{t} unregistered_domain.limit {}\n",
                    1000 + t
                ));
            }
        }
        dir.write("tenants.txt", &bulk);
        let policy = dir.write("policy.toml", "tenants_file = \"tenants.txt\"\n");
        let doc = load_policy(&policy).unwrap();
        assert_eq!(doc.tenants.len(), 2_000);
        assert_eq!(
            doc.tenants.iter().map(|t| t.domains.len()).sum::<usize>(),
            10_000
        );
        assert_eq!(doc.tenants.iter().filter(|t| !t.licensed).count(), 667);
        assert_eq!(
            doc.tenants[1990].rules.map(|r| r.unregistered.limit),
            Some(2_990)
        );
        assert_eq!(doc.tenants[1999].domains[4].name, "d4.tenant1999.example");
    }

    #[test]
    fn many_errors_are_capped() {
        let mut text = String::new();
        for i in 0..1_500 {
            text.push_str(&format!("[[tenants]]\nid = \"t{i}\"\nlapsed = 1\n"));
        }
        let d = errors(&text);
        assert_eq!(d.len(), MAX_SHOWN + 1);
        assert_eq!(d[MAX_SHOWN].line, 0);
        assert!(
            d[MAX_SHOWN].message.starts_with("500 more problems"),
            "{}",
            d[MAX_SHOWN]
        );
    }

    /// Deterministic xorshift64* generator for the fuzz tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const TOKENS: &[&str] = &[
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        "=",
        ",",
        ".",
        "\"",
        "'",
        "\n",
        " ",
        "#",
        "\\",
        "[[tenants]]\n",
        "[rules.tenant_threshold]\n",
        "[rules.unregistered_domain]\n",
        "[rules.low_reputation_ip]\n",
        "[engine]\n",
        "rules",
        "tenant_threshold",
        "unregistered_domain",
        "low_reputation_ip",
        "id",
        "domains",
        "connectors",
        "ip_exceptions",
        "name",
        "range",
        "ranges",
        "expires",
        "created",
        "certificate",
        "window",
        "slots",
        "limit",
        "max_ratio",
        "warn_ratio",
        "block",
        "mode",
        "scope",
        "files",
        "tenants_file",
        "suspicious",
        "\"24h\"",
        "\"0s\"",
        "\"manual\"",
        "0",
        "1",
        "-1",
        "0.5",
        "1e400",
        "nan",
        "inf",
        "true",
        "false",
        "\"x.com\"",
        "\"bücher.example\"",
        "\"192.0.2.0/24\"",
        "\"::/0\"",
        "\"2026-12-31T00:00:00Z\"",
        "2026-12-31T00:00:00Z",
        "\"ü\"",
        "\u{0}",
        "\r\n",
        "\"\"\"",
        "'''",
        "9999999999999999999999",
        "\"\\u0000\"",
        "\"a\"",
        "\"xn--\"",
        "\"a..b\"",
        "\t",
    ];

    #[test]
    fn fuzz_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Random bytes.
        for _ in 0..1_500 {
            let len = rng.below(200);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_policy(&text, FILE, None);
        }
        // Token soup.
        for _ in 0..3_000 {
            let n = rng.below(60);
            let mut text = String::new();
            for _ in 0..n {
                text.push_str(TOKENS[rng.below(TOKENS.len())]);
            }
            let _ = parse_policy(&text, FILE, None);
        }
        // Mutations of the example.
        let example = fs::read_to_string(fixtures().join("spec_example.toml")).unwrap();
        let chars: Vec<char> = example.chars().collect();
        for _ in 0..2_000 {
            let mut c = chars.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(c.len());
                match rng.below(4) {
                    0 => {
                        c.remove(at.min(c.len() - 1));
                    }
                    1 => {
                        let tok = TOKENS[rng.below(TOKENS.len())];
                        for (k, ch) in tok.chars().enumerate() {
                            c.insert((at + k).min(c.len()), ch);
                        }
                    }
                    2 => {
                        let end = (at + rng.below(40)).min(c.len());
                        c.drain(at..end);
                    }
                    _ => {
                        let from = rng.below(c.len());
                        let end = (from + rng.below(80)).min(c.len());
                        let piece: Vec<char> = c[from..end].to_vec();
                        for (k, ch) in piece.into_iter().enumerate() {
                            c.insert((at + k).min(c.len()), ch);
                        }
                    }
                }
            }
            let text: String = c.into_iter().collect();
            let _ = parse_policy(&text, FILE, None);
        }
    }

    #[test]
    fn fuzz_bulk_never_panics() {
        const WORDS: &[&str] = &[
            "tenant",
            "domain",
            "connector",
            "exception",
            "override",
            "t",
            "u",
            "x.example",
            "bücher.example",
            "a..b",
            "cert=x.example",
            "cert=",
            "ranges=",
            "ranges=10.0.0.0/8,",
            "ranges=::/0",
            "created=0",
            "created=2026-01-10",
            "expires=",
            "expires=-1",
            "unregistered_domain.limit",
            "tenant_threshold.max_ratio",
            "tenant_threshold.",
            "rules.",
            ".",
            "0",
            "0.5",
            "2",
            "-1",
            "nan",
            "manual",
            "spam,",
            ",",
            "none",
            "#",
            "licensed",
            "lapsed",
            "subdomains",
            "unvalidated",
            "=",
            "\u{feff}",
            "\u{85}",
            "ü",
            "\r",
            " ",
            "\t",
        ];
        let dir = TempDir::new("fuzz-bulk");
        let policy = dir.0.join("policy.toml");
        dir.write(
            "policy.toml",
            "tenants_file = \"t.txt\"\n[[tenants]]\nid = \"u\"\n",
        );
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for _ in 0..300 {
            let mut text = String::new();
            for _ in 0..rng.below(40) {
                for _ in 0..rng.below(6) {
                    text.push_str(WORDS[rng.below(WORDS.len())]);
                    text.push(if rng.below(5) == 0 { '\t' } else { ' ' });
                }
                text.push('\n');
            }
            dir.write("t.txt", &text);
            let _ = load_policy(&policy);
        }
    }
}
