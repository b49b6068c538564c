//! Problems found in a configuration file, each with the place it was found.

use serde_saphyr::Location;

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file is accepted, but probably not what was meant.
    Warning,
}

/// One problem, displayed as `FILE:LINE:COL: message` (warnings as
/// `FILE:LINE:COL: warning: message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as it was named to fulcrum.
    pub file: String,
    /// 1-based line of the offending value; 0 when the problem concerns the whole file.
    pub line: u32,
    /// 1-based column (in characters) of the offending value; 0 with `line` 0.
    pub col: u32,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// Whether this diagnostic refuses the file.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.file)?;
        if self.line != 0 {
            write!(f, "{}:{}:", self.line, self.col)?;
        }
        if self.severity == Severity::Warning {
            f.write_str(" warning:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub(crate) struct Report {
    file: String,
    items: Vec<Diagnostic>,
}

impl Report {
    pub(crate) fn new(file: &str) -> Self {
        Report {
            file: file.to_owned(),
            items: Vec::new(),
        }
    }

    fn push(&mut self, at: &Location, severity: Severity, message: String) {
        self.items.push(Diagnostic {
            file: self.file.clone(),
            line: u32::try_from(at.line()).unwrap_or(u32::MAX),
            col: u32::try_from(at.column()).unwrap_or(u32::MAX),
            severity,
            message,
        });
    }

    /// Records an error at `at`.
    pub(crate) fn error(&mut self, at: &Location, message: impl Into<String>) {
        self.push(at, Severity::Error, message.into());
    }

    /// Records a warning at `at`.
    pub(crate) fn warn(&mut self, at: &Location, message: impl Into<String>) {
        self.push(at, Severity::Warning, message.into());
    }

    /// Records a problem with the whole file (no position).
    pub(crate) fn file_error(&mut self, message: impl Into<String>) {
        self.push(&Location::UNKNOWN, Severity::Error, message.into());
    }

    /// Records a YAML syntax or shape error from the parser.
    pub(crate) fn yaml_error(&mut self, error: &serde_saphyr::Error) {
        let at = error.location().unwrap_or(Location::UNKNOWN);
        let message = yaml_message(error, &at);
        self.push(&at, Severity::Error, message);
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// The diagnostics in file order (position, then the order found).
    pub(crate) fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| (d.line, d.col));
        self.items
    }
}

/// The parser's message without its position suffix, reworded where the parser speaks
/// of Rust types.
fn yaml_message(error: &serde_saphyr::Error, at: &Location) -> String {
    let text = error.without_snippet().to_string();
    let suffix = format!(" at line {}, column {}", at.line(), at.column());
    let text = text.strip_suffix(&suffix).unwrap_or(&text);
    let text = text
        .strip_suffix(", set DuplicateKeyPolicy in Options if acceptable")
        .unwrap_or(text);
    match text {
        "invalid i64" => "expected an integer".to_owned(),
        "expected string scalar" => {
            "expected a single value (a string), not a list or mapping".to_owned()
        }
        _ => {
            if let Some(rest) = text.strip_prefix("cannot deserialize null into ") {
                let what = rest.split(';').next().unwrap_or(rest);
                format!("missing value: expected {what}")
            } else {
                text.to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_line_col() {
        let d = Diagnostic {
            file: "configs/x.yaml".into(),
            line: 3,
            col: 14,
            severity: Severity::Error,
            message: "boom".into(),
        };
        assert_eq!(d.to_string(), "configs/x.yaml:3:14: boom");
        let w = Diagnostic {
            severity: Severity::Warning,
            ..d.clone()
        };
        assert_eq!(w.to_string(), "configs/x.yaml:3:14: warning: boom");
        let whole = Diagnostic {
            line: 0,
            col: 0,
            ..d
        };
        assert_eq!(whole.to_string(), "configs/x.yaml: boom");
    }
}
