//! Diagnostics: errors and warnings that point at a file, line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a diagnostic is: errors make the configuration unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// Where a diagnostic points: a place in the file, or a command-line option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// 1-based line and column in a file.
    File {
        path: PathBuf,
        line: usize,
        col: usize,
    },
    /// A command-line option such as `--replicas`.
    Option(&'static str),
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub origin: Origin,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { path, line, col } => write!(f, "{}:{line}:{col}: ", path.display())?,
            Origin::Option(name) => write!(f, "{name}: ")?,
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every diagnostic found while loading a configuration, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Where in the input a problem is: a byte span of the file, or an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Loc {
    Span(Range<usize>),
    Option(&'static str),
}

impl From<Range<usize>> for Loc {
    fn from(span: Range<usize>) -> Self {
        Loc::Span(span)
    }
}

/// Collects diagnostics for one source file, turning byte spans into positions.
pub(crate) struct Reporter<'a> {
    path: &'a Path,
    source: &'a str,
    pub(crate) found: Vec<Diagnostic>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(path: &'a Path, source: &'a str) -> Self {
        Self {
            path,
            source,
            found: Vec::new(),
        }
    }

    pub(crate) fn error(
        &mut self,
        at: impl Into<Loc>,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.push(Severity::Error, at.into(), message.into(), hint.into());
    }

    pub(crate) fn warning(
        &mut self,
        at: impl Into<Loc>,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.push(Severity::Warning, at.into(), message.into(), hint.into());
    }

    /// The file being checked.
    pub(crate) fn path(&self) -> &Path {
        self.path
    }

    /// Names a place for a message about another one ("line 7", "--replicas").
    pub(crate) fn describe(&self, at: &Loc) -> String {
        match at {
            Loc::Span(span) => format!("line {}", self.position(span.start).0),
            Loc::Option(name) => (*name).to_string(),
        }
    }

    fn push(&mut self, severity: Severity, at: Loc, message: String, hint: Option<String>) {
        let origin = match at {
            Loc::Span(span) => {
                let (line, col) = self.position(span.start);
                Origin::File {
                    path: self.path.to_path_buf(),
                    line,
                    col,
                }
            }
            Loc::Option(name) => Origin::Option(name),
        };
        self.found.push(Diagnostic {
            severity,
            origin,
            message,
            hint,
        });
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let before = &self.source[..floor_char_boundary(self.source, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    pub(crate) fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.found.sort_by_key(|d| match &d.origin {
            Origin::File { line, col, .. } => (*line, *col),
            Origin::Option(_) => (0, 0),
        });
        self.found
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let src = "a = 1\nbé = 2\n";
        let mut r = Reporter::new(Path::new("f.toml"), src);
        r.error(10..11, "x", None);
        let d = &r.found[0];
        assert_eq!(
            d.origin,
            Origin::File {
                path: "f.toml".into(),
                line: 2,
                col: 4
            }
        );
        assert_eq!(d.to_string(), "f.toml:2:4: error: x");
    }

    #[test]
    fn hint_goes_on_its_own_line() {
        let d = Diagnostic {
            severity: Severity::Warning,
            origin: Origin::Option("--replicas"),
            message: "two replicas".into(),
            hint: Some("use three".into()),
        };
        assert_eq!(
            d.to_string(),
            "--replicas: warning: two replicas\n  hint: use three"
        );
    }
}
