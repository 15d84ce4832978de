//! Diagnostics: every problem names the file, the line (and column where it helps), the
//! directive and what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in which file a problem sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line, when the problem is on one line.
    pub line: Option<usize>,
    /// 1-based column, when it helps.
    pub column: Option<usize>,
}

impl Location {
    /// The whole file.
    pub fn file(file: &Path) -> Self {
        Location {
            file: file.to_path_buf(),
            line: None,
            column: None,
        }
    }

    /// One line of a file.
    pub fn line(file: &Path, line: usize) -> Self {
        Location {
            file: file.to_path_buf(),
            line: Some(line),
            column: None,
        }
    }

    /// One column of one line.
    pub fn at(file: &Path, line: usize, column: usize) -> Self {
        Location {
            file: file.to_path_buf(),
            line: Some(line),
            column: Some(column),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where it is.
    pub location: Location,
    /// The directive (ha.cf), key (TOML) or field it concerns.
    pub directive: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// A problem at `location`, about `directive`.
    pub fn new(location: Location, directive: Option<&str>, message: impl Into<String>) -> Self {
        Diagnostic {
            location,
            directive: directive.map(str::to_owned),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if let Some(directive) = &self.directive {
            write!(f, "{directive}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with a configuration: it is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Each problem, in file order.
    pub errors: Vec<Diagnostic>,
}

impl ConfigError {
    /// One problem.
    pub fn single(diagnostic: Diagnostic) -> Self {
        ConfigError {
            errors: vec![diagnostic],
        }
    }

    /// A problem with a whole file (missing, unreadable, bad permissions).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self::single(Diagnostic::new(Location::file(file), None, message))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Collects errors and warnings while a file is read, so that one run reports every problem.
#[derive(Debug, Default)]
pub struct Collector {
    /// Problems that refuse the configuration.
    pub errors: Vec<Diagnostic>,
    /// Problems that are reported but accepted.
    pub warnings: Vec<Diagnostic>,
}

impl Collector {
    /// Records an error.
    pub fn error(&mut self, location: Location, directive: Option<&str>, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(location, directive, message));
    }

    /// Records a warning.
    pub fn warn(&mut self, location: Location, directive: Option<&str>, message: impl Into<String>) {
        self.warnings.push(Diagnostic::new(location, directive, message));
    }

    /// The value if nothing was wrong, else every error.
    pub fn finish<T>(self, value: T) -> Result<(T, Vec<Diagnostic>), ConfigError> {
        if self.errors.is_empty() {
            Ok((value, self.warnings))
        } else {
            Err(ConfigError { errors: self.errors })
        }
    }
}
