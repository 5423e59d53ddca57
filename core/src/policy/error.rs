//! What is wrong with a policy: every problem, each with its file, line, column and field.

use core::fmt;
use std::string::String;
use std::vec::Vec;

/// One problem found in a policy file, or in a file it refers to (a low-reputation list, a bulk
/// tenants file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in, as named to the parser (the policy file) or as its path was
    /// joined to the policy's directory (files the policy refers to).
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file (it cannot be read).
    pub line: usize,
    /// 1-based column, counted in characters; 0 when `line` is 0.
    pub column: usize,
    /// The field, as a path from the top of the policy: `tenants[3].domains[1].name`,
    /// `rules.unregistered_domain.limit`, `engine.audit_depth`; in a bulk tenants file the
    /// record and field (`domain.name`); empty for TOML syntax errors and whole-file problems.
    pub path: String,
    /// What was expected there (`a domain name`, `an integer`); may be empty.
    pub expected: String,
    /// What was found instead (`"exa mple.com"`, `a string "100"`); may be empty.
    pub found: String,
    /// What is wrong and, where it helps, how to put it right.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// One line: `policy.toml:12:9: tenants[0].domains[1]: expected a domain name, found
    /// "exa mple.com": <message>`. Empty parts are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        match (self.expected.is_empty(), self.found.is_empty()) {
            (false, false) => write!(f, ": expected {}, found {}", self.expected, self.found)?,
            (false, true) => write!(f, ": expected {}", self.expected)?,
            (true, false) => write!(f, ": found {}", self.found)?,
            (true, true) => {}
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Every problem of a policy, never just the first. A policy with any problem is refused whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The problems, in file order (the policy file first, then the files it refers to) and by
    /// line and column within each file.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for PolicyError {
    /// One line per diagnostic, without a trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::ToOwned;
    use std::string::ToString;
    use std::vec;

    fn d(line: usize, path: &str, expected: &str, found: &str, message: &str) -> Diagnostic {
        Diagnostic {
            file: "policy.toml".to_owned(),
            line,
            column: if line == 0 { 0 } else { 9 },
            path: path.to_owned(),
            expected: expected.to_owned(),
            found: found.to_owned(),
            message: message.to_owned(),
        }
    }

    #[test]
    fn display() {
        let e = PolicyError {
            diagnostics: vec![
                d(
                    12,
                    "tenants[0].domains[1]",
                    "a domain name",
                    "\"exa mple.com\"",
                    "' ' is not allowed in a domain name",
                ),
                d(3, "", "", "", "unterminated string"),
                d(0, "", "", "", "cannot read the file: not found"),
            ],
        };
        assert_eq!(
            e.to_string(),
            "policy.toml:12:9: tenants[0].domains[1]: expected a domain name, found \"exa mple.com\": \
             ' ' is not allowed in a domain name\n\
             policy.toml:3:9: unterminated string\n\
             policy.toml: cannot read the file: not found"
        );
    }
}
