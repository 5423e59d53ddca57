//! From a parsed policy to a running engine, and the std conveniences around it: reload and
//! snapshots as owned bytes.

use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use super::{Diagnostic, PolicyDoc, PolicyError};
use crate::{Capacity, Engine, Error, HeapStorage, RestoreReport};

/// An engine whose tables live in one set of heap allocations.
pub type HeapEngine = Engine<HeapStorage>;

/// A validated policy, ready to build engines from.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    doc: PolicyDoc,
    file: String,
}

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Tenants of the old policy that the new one no longer has (their state is dropped).
    pub removed: Vec<String>,
    /// Tenants new in this policy.
    pub added: Vec<String>,
}

fn diag(file: &str, path: String, err: Error) -> PolicyError {
    PolicyError {
        diagnostics: vec![Diagnostic {
            file: file.to_string(),
            line: 0,
            column: 0,
            path,
            expected: String::new(),
            found: String::new(),
            message: err.to_string(),
        }],
    }
}

fn grow(n: usize, headroom_percent: u32, floor: usize) -> u32 {
    let n = n
        .saturating_add(n.saturating_mul(headroom_percent as usize) / 100)
        .max(floor);
    n.min(u32::MAX as usize / 4) as u32
}

impl Policy {
    /// A policy from an already parsed document. `file` names it in error messages.
    pub fn from_doc(doc: PolicyDoc, file: &str) -> Policy {
        Policy {
            doc,
            file: file.to_string(),
        }
    }

    /// Parses policy text; `file` names it in diagnostics, relative `files` and the bulk
    /// tenants file are read from `base_dir`.
    pub fn from_toml(
        text: &str,
        file: &str,
        base_dir: Option<&std::path::Path>,
    ) -> Result<Policy, PolicyError> {
        let doc = super::parse_policy(text, file, base_dir)?;
        Ok(Policy::from_doc(doc, file))
    }

    /// Reads and parses a policy file.
    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let doc = super::load_policy(path)?;
        Ok(Policy::from_doc(doc, &path.display().to_string()))
    }

    /// The parsed document.
    pub fn doc(&self) -> &PolicyDoc {
        &self.doc
    }

    /// The file name used in messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The capacity an engine for this policy gets: what the policy needs plus the
    /// `[engine] headroom_percent` for operator additions at run time.
    pub fn capacity(&self) -> Capacity {
        let d = &self.doc;
        let h = d.engine.headroom_percent;
        let tenants = d.tenants.len();
        let mut domains = 0usize;
        let mut connectors = 0usize;
        let mut ranges = d.low_reputation.len();
        let mut names = 0usize;
        let mut overrides = 0usize;
        for t in &d.tenants {
            names += crate::name_cost(t.id.len());
            domains += t.domains.len();
            names += t
                .domains
                .iter()
                .map(|x| crate::name_cost(x.name.len()))
                .sum::<usize>();
            connectors += t.connectors.len();
            for c in &t.connectors {
                names += crate::name_cost(c.name.len());
                if let Some(cert) = &c.certificate {
                    domains += 1;
                    // Once in the domain table, once in the connector.
                    names += 2 * crate::name_cost(cert.len());
                }
                ranges += c.ranges.len();
            }
            ranges += t.ip_exceptions.len();
            overrides += t.rules.is_some() as usize;
        }
        Capacity {
            tenants: grow(tenants, h, 16),
            domains: grow(domains, h, 64),
            connectors: grow(connectors, h, 16),
            ranges: grow(ranges, h, 64),
            name_bytes: grow(names, h, 4096),
            overrides: grow(overrides, h, 4),
            audit_depth: d.engine.audit_depth,
            threshold_slots: d.threshold_slots.max(1),
            unregistered_slots: d.unregistered_slots.max(1),
        }
    }

    /// Builds an engine holding this policy, with one allocation per table. The few problems
    /// only a build can find (two connectors claiming one source range, a certificate domain
    /// used twice by one tenant) are reported here, as diagnostics naming the tenant.
    pub fn build(&self) -> Result<HeapEngine, PolicyError> {
        let cap = self.capacity();
        let f = &self.file;
        let d = &self.doc;
        let mut e = Engine::new(HeapStorage::new(&cap), cap, d.rules)
            .map_err(|err| diag(f, "rules".into(), err))?;
        e.set_recent_connector(d.engine.recent_connector);
        for (i, r) in d.low_reputation.iter().enumerate() {
            e.add_low_reputation(*r)
                .map_err(|err| diag(f, format!("rules.low_reputation_ip.ranges[{i}]"), err))?;
        }
        for (ti, t) in d.tenants.iter().enumerate() {
            let at = |what: String| format!("tenants[{ti}] ({}){what}", t.id);
            let id = e
                .add_tenant(&t.id, t.licensed)
                .map_err(|err| diag(f, at(String::new()), err))?;
            if t.lapsed {
                e.set_policy_lapsed(id, true)
                    .map_err(|err| diag(f, at(".lapsed".into()), err))?;
            }
            if let Some(r) = t.rules {
                e.set_overrides(id, Some(r))
                    .map_err(|err| diag(f, at(".rules".into()), err))?;
            }
            for (di, dom) in t.domains.iter().enumerate() {
                e.add_domain(id, &dom.name, dom.subdomains, dom.validated)
                    .map_err(|err| diag(f, at(format!(".domains[{di}] ({})", dom.name)), err))?;
            }
            for (ci, c) in t.connectors.iter().enumerate() {
                let cid = e
                    .add_connector(id, &c.name, c.certificate.as_deref(), c.created)
                    .map_err(|err| diag(f, at(format!(".connectors[{ci}] ({})", c.name)), err))?;
                for (ri, r) in c.ranges.iter().enumerate() {
                    e.add_connector_range(cid, *r).map_err(|err| {
                        let err = if err == Error::DuplicateDomain {
                            Error::InvalidParameter(
                                "this range already belongs to another connector",
                            )
                        } else {
                            err
                        };
                        diag(f, at(format!(".connectors[{ci}].ranges[{ri}] ({r})")), err)
                    })?;
                }
            }
            for (xi, x) in t.ip_exceptions.iter().enumerate() {
                e.grant_exception(id, x.range, x.expires)
                    .map_err(|err| diag(f, at(format!(".ip_exceptions[{xi}]")), err))?;
            }
        }
        // Lapsed tenants from the policy carry no time of lapsing.
        Ok(e)
    }

    /// Builds an engine for this policy that carries over the state of `engine` (counters,
    /// blocks, grace periods, audit trails of tenants that remain) and puts it in its place.
    /// On error `engine` is untouched.
    pub fn reload(&self, engine: &mut HeapEngine) -> Result<ReloadReport, PolicyError> {
        let fresh = self.build()?;
        Ok(replace_engine(fresh, engine))
    }

    /// Builds an engine for this policy and restores a snapshot into it.
    pub fn restore(&self, snapshot: &[u8]) -> Result<(HeapEngine, RestoreReport), RestoreError> {
        let mut e = self.build().map_err(RestoreError::Policy)?;
        let r = e
            .restore_snapshot(snapshot)
            .map_err(RestoreError::Snapshot)?;
        Ok((e, r))
    }
}

/// Puts `fresh` (built from a new policy) in the place of `engine`, carrying over the state
/// of the tenants that remain. The expensive part of a reload, building `fresh`, can so
/// happen outside whatever lock guards `engine`; this swap only copies per-tenant state.
pub fn replace_engine(mut fresh: HeapEngine, engine: &mut HeapEngine) -> ReloadReport {
    fresh.adopt_state(engine);
    let mut report = ReloadReport::default();
    for t in engine.tenants() {
        let id = engine.tenant_name(t);
        if fresh.tenant(id).is_none() {
            report.removed.push(id.to_string());
        }
    }
    for t in fresh.tenants() {
        let id = fresh.tenant_name(t);
        if engine.tenant(id).is_none() {
            report.added.push(id.to_string());
        }
    }
    *engine = fresh;
    report
}

/// A snapshot of an engine's state as owned bytes.
pub fn snapshot<S: crate::Storage>(engine: &Engine<S>) -> Vec<u8> {
    let mut out = vec![0u8; engine.snapshot_len()];
    // The buffer has exactly the length asked for.
    let n = engine.write_snapshot(&mut out).unwrap_or(0);
    out.truncate(n);
    out
}

/// Why [`Policy::restore`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// The policy does not build.
    Policy(PolicyError),
    /// The snapshot is truncated, corrupt, foreign or of another version.
    Snapshot(Error),
}

impl core::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RestoreError::Policy(p) => write!(f, "{p}"),
            RestoreError::Snapshot(e) => write!(f, "cannot restore snapshot: {e}"),
        }
    }
}

impl std::error::Error for RestoreError {}
