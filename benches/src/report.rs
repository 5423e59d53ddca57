//! The results table: criterion's estimates from this run, memory figures, callgrind counts
//! and the targets of `shared/notes/performance.md`, as markdown.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

/// Calls each `drive_*` function of `callgrind_check` makes.
pub const CALLGRIND_CALLS: usize = 100_000;

/// Time per call (ns) of every benchmark, by `group/function/value`: the mean of its fastest
/// sample. On a small machine shared with compilers, interference only ever adds time, so
/// the fastest of the samples (each some 80 ms of calls) is the steadiest estimate (Chen and
/// Revels, "Robust benchmarking in noisy environments", 2016); criterion's median is kept
/// as a fallback.
#[derive(Debug, Default)]
pub struct Timings {
    median_ns: HashMap<String, f64>,
    /// Benchmarks found but older than the run (left out).
    pub stale: usize,
}

impl Timings {
    /// Reads `criterion_dir/**/new/{benchmark,sample,estimates}.json`, keeping only results written
    /// at or after `since` (the start of this run), so every figure comes from the same run.
    pub fn load(criterion_dir: &Path, since: Option<SystemTime>) -> Timings {
        let mut t = Timings::default();
        let mut stack = vec![criterion_dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in rd.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.file_name().is_none_or(|n| n != "benchmark.json")
                    || p.parent()
                        .and_then(|d| d.file_name())
                        .is_none_or(|n| n != "new")
                {
                    continue;
                }
                let est = p.with_file_name("estimates.json");
                let fresh = std::fs::metadata(&est)
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| since.is_none_or(|s| m >= s));
                if !fresh {
                    t.stale += 1;
                    continue;
                }
                let read = |p: &Path| -> Option<serde_json::Value> {
                    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
                };
                let (Some(b), Some(e)) = (read(&p), read(&est)) else {
                    continue;
                };
                let fastest = read(&p.with_file_name("sample.json")).and_then(|s| {
                    let iters = s["iters"].as_array()?;
                    let times = s["times"].as_array()?;
                    iters
                        .iter()
                        .zip(times)
                        .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?))
                        .filter(|ns| ns.is_finite())
                        .min_by(f64::total_cmp)
                });
                let (Some(id), Some(ns)) = (
                    b["full_id"].as_str(),
                    fastest.or_else(|| e["median"]["point_estimate"].as_f64()),
                ) else {
                    continue;
                };
                t.median_ns.insert(id.to_string(), ns);
            }
        }
        t
    }

    /// Adds a figure by hand (tests).
    pub fn insert(&mut self, id: &str, ns: f64) {
        self.median_ns.insert(id.to_string(), ns);
    }

    /// ns per call of `group/function/value`.
    pub fn get(&self, id: &str) -> Option<f64> {
        self.median_ns.get(id).copied()
    }

    /// Number of figures.
    pub fn len(&self) -> usize {
        self.median_ns.len()
    }

    /// No figures at all.
    pub fn is_empty(&self) -> bool {
        self.median_ns.is_empty()
    }
}

/// A time for the table: `12.3 ns`, `456 ns`, `1.23 µs`; `–` when not measured.
pub fn time(ns: Option<f64>) -> String {
    match ns {
        None => "–".into(),
        Some(ns) if ns < 10.0 => format!("{ns:.2} ns"),
        Some(ns) if ns < 100.0 => format!("{ns:.1} ns"),
        Some(ns) if ns < 1000.0 => format!("{ns:.0} ns"),
        Some(ns) if ns < 10_000.0 => format!("{:.2} µs", ns / 1000.0),
        Some(ns) => format!("{:.1} µs", ns / 1000.0),
    }
}

/// `a / b` as `1.23×`; `–` when either is missing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// A byte count: `112 B`, `1.05 GB` (decimal units, as the targets are written).
pub fn bytes(n: f64) -> String {
    if n < 10_000.0 {
        format!("{n:.0} B")
    } else if n < 10e6 {
        format!("{:.1} kB", n / 1e3)
    } else if n < 10e9 {
        format!("{:.0} MB", n / 1e6)
    } else {
        format!("{:.2} GB", n / 1e9)
    }
}

/// A markdown table.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }
    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    /// The markdown, columns padded so the raw text reads as a table too.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            self.rows
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
                .max(3)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let line = |r: &Vec<String>| {
            let mut s = String::from("|");
            for (c, w) in widths.iter().enumerate() {
                let cell = r.get(c).map_or("", String::as_str);
                let pad = w - cell.chars().count();
                let _ = write!(s, " {cell}{} |", " ".repeat(pad));
            }
            s.push('\n');
            s
        };
        let mut out = String::new();
        if let Some((head, body)) = self.rows.split_first() {
            out += &line(head);
            out += "|";
            for w in &widths {
                let _ = write!(out, "{}|", "-".repeat(w + 2));
            }
            out.push('\n');
            for r in body {
                out += &line(r);
            }
        }
        out
    }
}

/// Instruction counts per call from `callgrind_annotate --inclusive=yes` output: the
/// inclusive count of each `callgrind_check::drive_<name>` function divided by `calls`.
pub fn callgrind_counts(annotate: &str, calls: f64) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in annotate.lines() {
        let Some(pos) = line.find("callgrind_check::drive_") else {
            continue;
        };
        let name = line[pos + "callgrind_check::drive_".len()..]
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        let count: String = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if let Ok(n) = count.parse::<f64>() {
            out.insert(name.to_string(), n / calls);
        }
    }
    out
}

/// Occupancy of an open-addressing table (linear probing): load, and the mean number of
/// slots a lookup that misses reads (from a uniformly random home slot to the first empty
/// slot, inclusive), and the longest run of occupied slots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeStats {
    /// Slots.
    pub slots: usize,
    /// Occupied fraction.
    pub load: f64,
    /// Mean slots read by a lookup that misses.
    pub miss_probes: f64,
    /// Longest run of occupied slots.
    pub longest_run: usize,
}

impl ProbeStats {
    /// From each slot's occupancy (`true`: in use or deleted, which a probe also walks past).
    pub fn of(occupied: &[bool]) -> Option<ProbeStats> {
        let n = occupied.len();
        let first_empty = occupied.iter().position(|&b| !b)?;
        let mut run = 0usize;
        let mut total = 0usize;
        let mut longest = 0usize;
        // Walk backwards from an empty slot: `run` is the distance to the next empty slot.
        for k in 0..n {
            let i = (first_empty + n - k) % n;
            run = if occupied[i] { run + 1 } else { 1 };
            total += run;
            longest = longest.max(run - 1);
        }
        Some(ProbeStats {
            slots: n,
            load: occupied.iter().filter(|&&b| b).count() as f64 / n as f64,
            miss_probes: total as f64 / n as f64,
            longest_run: longest,
        })
    }
}

/// Civil date (UTC) of a Unix time, `YYYY-MM-DD`.
pub fn date(unix: u64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(time(Some(2.5)), "2.50 ns");
        assert_eq!(time(Some(31.25)), "31.2 ns");
        assert_eq!(time(Some(314.2)), "314 ns");
        assert_eq!(time(Some(3141.0)), "3.14 µs");
        assert_eq!(time(None), "–");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
        assert_eq!(bytes(112.0), "112 B");
        assert_eq!(bytes(1.05e9), "1050 MB");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_790_000_000), "2026-09-21");
    }

    #[test]
    fn table() {
        let mut t = Table::new(&["a", "bee"]);
        t.row(vec!["1".into(), "2".into()]);
        assert_eq!(t.render(), "| a   | bee |\n|-----|-----|\n| 1   | 2   |\n");
    }

    #[test]
    fn probes() {
        // [x x . x .]: misses starting at 0,1,2,3,4 read 3,2,1,2,1 slots.
        let s = ProbeStats::of(&[true, true, false, true, false]).unwrap();
        assert_eq!(s.miss_probes, 9.0 / 5.0);
        assert_eq!(s.longest_run, 2);
        assert!((s.load - 0.6).abs() < 1e-9);
        assert_eq!(ProbeStats::of(&[true]), None);
    }

    #[test]
    fn callgrind() {
        let text = "  1,234,000 (10.0%)  ???:callgrind_check::drive_check_hot [/x]\n\
                    99 (0%) ???:other\n";
        let c = callgrind_counts(text, 1000.0);
        assert_eq!(c.get("check_hot"), Some(&1234.0));
        assert_eq!(c.len(), 1);
    }
}
