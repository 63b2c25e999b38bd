//! The error a request through the mesh can end with.
//!
//! Every failure carries an [`ErrorKind`] a program can branch on and a message a
//! person can act on: it names the host, route, cluster or address involved. The
//! kinds map to the HTTP status Envoy answers with (its response flags `NR`, `NC`,
//! `UH`, `UF`, `UT`, `UR`) and to the gRPC status gRPC's proxyless clients use.

use std::fmt;

/// A boxed error, as Tower stacks pass them around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong with a request, coarse enough to branch on.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No virtual host or route matched the request (Envoy `NR`).
    NoRoute,
    /// The matched route names a cluster the configuration does not define (Envoy `NC`).
    UnknownCluster,
    /// The cluster has no endpoint that may take traffic (Envoy `UH`).
    NoEndpoints,
    /// Connecting to the chosen endpoint failed (Envoy `UF`).
    Connect,
    /// The route's timeout elapsed before the response arrived (Envoy `UT`).
    Timeout,
    /// The upstream connection failed after the request was sent (Envoy `UR`).
    Upstream,
    /// Finding a cluster's endpoints failed: a DNS name did not resolve, or its
    /// name server did not answer. The endpoints found before stay in force.
    Discovery,
    /// The request's path cannot be sent: with `normalize_path` on it
    /// cannot be normalised (it does not start with `/`), or a route's path
    /// rewrite made a path that is not valid (the request is sent neither
    /// rewritten nor with its original path). HTTP 400, as Envoy answers a
    /// path it cannot normalise (and an upstream, a path Envoy's rewrite
    /// broke); gRPC `INTERNAL`, what gRPC makes of a 400.
    InvalidPath,
    /// The client's local rate limit had no token for the request, which was
    /// not sent (Envoy `RL`). HTTP 429; gRPC `RESOURCE_EXHAUSTED`.
    RateLimited,
}

impl ErrorKind {
    /// The HTTP status Envoy answers with for this kind of failure.
    pub fn http_status(self) -> http::StatusCode {
        match self {
            ErrorKind::NoRoute => http::StatusCode::NOT_FOUND,
            ErrorKind::InvalidPath => http::StatusCode::BAD_REQUEST,
            ErrorKind::RateLimited => http::StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::UnknownCluster
            | ErrorKind::NoEndpoints
            | ErrorKind::Connect
            | ErrorKind::Upstream
            | ErrorKind::Discovery => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code (as its number) gRPC's xDS clients fail an RPC with.
    ///
    /// `UNAVAILABLE` (14) for everything but a timeout, which is
    /// `DEADLINE_EXCEEDED` (4), an invalid path, `INTERNAL` (13, what gRPC
    /// makes of HTTP 400), and a local rate limit, `RESOURCE_EXHAUSTED` (8);
    /// gRPC also fails an RPC that matches no route with `UNAVAILABLE`,
    /// where Envoy answers HTTP 404.
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::Timeout => 4,
            ErrorKind::InvalidPath => 13,
            ErrorKind::RateLimited => 8,
            _ => 14,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no route",
            ErrorKind::UnknownCluster => "unknown cluster",
            ErrorKind::NoEndpoints => "no healthy endpoint",
            ErrorKind::Connect => "connect failed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Upstream => "upstream error",
            ErrorKind::Discovery => "discovery failed",
            ErrorKind::InvalidPath => "invalid path",
            ErrorKind::RateLimited => "rate limited",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request through the mesh failed.
///
/// ```
/// use meshlib::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::NoEndpoints, "cluster \"reviews-v1\" has no healthy endpoint");
/// assert_eq!(err.kind(), ErrorKind::NoEndpoints);
/// assert_eq!(err.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(err.to_string(), "no healthy endpoint: cluster \"reviews-v1\" has no healthy endpoint");
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: Box<str>,
    source: Option<BoxError>,
    attempts: Option<u32>,
}

impl Error {
    /// An error of `kind` with a message that names what was involved.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into().into_boxed_str(),
            source: None,
            attempts: None,
        }
    }

    /// The same error, ending a request retried under a retry policy after
    /// `attempts` attempts: the message says so, the kind stays the last
    /// attempt's.
    pub(crate) fn after_attempts(mut self, attempts: u32) -> Self {
        self.message = format!(
            "gave up after {attempts} attempt{}; the last failed: {}",
            if attempts == 1 { "" } else { "s" },
            self.message
        )
        .into_boxed_str();
        self.attempts = Some(attempts);
        self
    }

    /// How many attempts were made, when the request had a retry policy
    /// (the [`Retry`](crate::retry::Retry) layer sets it on the error it
    /// returns); `None` otherwise.
    ///
    /// ```
    /// # use meshlib::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Connect, "cluster \"a\" endpoint 10.0.0.1:80");
    /// assert_eq!(err.attempts(), None);
    /// ```
    pub fn attempts(&self) -> Option<u32> {
        self.attempts
    }

    /// The same error, caused by `source`.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the kind, e.g. `cluster "reviews-v1" has no healthy endpoint`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status a proxy would answer with; see [`ErrorKind::http_status`].
    pub fn http_status(&self) -> http::StatusCode {
        self.kind.http_status()
    }

    /// The gRPC status code; see [`ErrorKind::grpc_code`].
    pub fn grpc_code(&self) -> i32 {
        self.kind.grpc_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

/// Request data (a path, an authority) as an error message quotes it: in
/// quotes and escaped, at most [`Quoted::MAX`] bytes of it, then an ellipsis
/// and its whole length, so a hostile 60 KB path makes no 60 KB message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl Quoted<'_> {
    /// The most bytes of the data quoted.
    pub(crate) const MAX: usize = 256;
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.0;
        if data.len() <= Self::MAX {
            return write!(f, "{data:?}");
        }
        let mut end = Self::MAX;
        while !data.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}… ({} bytes)", &data[..end], data.len())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_request_data_is_cut_at_256_bytes_with_its_length() {
        assert_eq!(Quoted("/a\"b").to_string(), r#""/a\"b""#);
        let long = format!("/{}", "é".repeat(30_000));
        let quoted = Quoted(&long).to_string();
        assert!(quoted.ends_with("\"… (60001 bytes)"), "{quoted}");
        assert!(quoted.len() < 300, "{}", quoted.len());
    }
}
