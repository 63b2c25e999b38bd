//! Why a configuration was refused.

use std::fmt;

/// One thing wrong in a configuration: the resource, the field and the problem.
///
/// Displays as `route "reviews-canary": weighted_clusters: weights sum to 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The resource, as a path of named parts: `virtual_host "reviews": route "canary"`.
    pub resource: String,
    /// The field within it, e.g. `weighted_clusters`.
    pub field: String,
    /// What is wrong, e.g. `weights sum to 0`.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.resource.is_empty() {
            write!(f, "{}: ", self.resource)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A configuration was refused, whole; whatever was in force stays in force.
///
/// ```
/// use meshlib::config::MeshConfig;
///
/// let err = MeshConfig::from_yaml("clusters: [{ name: a }, { name: a }]").unwrap_err();
/// assert_eq!(err.to_string(), "cluster \"a\": name: defined twice (also cluster #0)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    origin: Option<String>,
    reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reason {
    /// Could not be read or watched at all.
    Source(String),
    /// Not a document of the expected shape; the parser's message has the position.
    Syntax(String),
    /// Well-formed, but breaks rules the types cannot express.
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub(crate) fn source(origin: Option<&str>, message: String) -> Self {
        Self::with(origin, Reason::Source(message))
    }

    pub(crate) fn syntax(origin: Option<&str>, message: String) -> Self {
        Self::with(origin, Reason::Syntax(message))
    }

    /// A configuration that breaks these rules.
    pub fn invalid(origin: Option<&str>, problems: Vec<Problem>) -> Self {
        Self::with(origin, Reason::Invalid(problems))
    }

    fn with(origin: Option<&str>, reason: Reason) -> Self {
        ConfigError {
            origin: origin.map(str::to_owned),
            reason,
        }
    }

    /// Where the configuration came from (a file path), if it came from one.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The rule-breaking problems, empty when the document could not be read or parsed.
    pub fn problems(&self) -> &[Problem] {
        match &self.reason {
            Reason::Invalid(problems) => problems,
            Reason::Source(_) | Reason::Syntax(_) => &[],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "file {origin:?}: ")?;
        }
        match &self.reason {
            Reason::Source(message) | Reason::Syntax(message) => f.write_str(message),
            Reason::Invalid(problems) => {
                for (i, problem) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}
