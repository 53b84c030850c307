//! The gateway's one error type.
//!
//! An [`Error`] says what failed (`kind`), whose fault it is (`side`) and whether trying again
//! may help. [`Error::to_jsonrpc`] is the one place that turns it into what a client sees:
//! a stable code and message. Upstream text never reaches a client through here; `Display`
//! (with the source chain) is for logs.

use std::fmt;

use crate::jsonrpc::Code;

/// What failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The upstream could not be reached, refused, or its process is down.
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream answered with bytes that are not a valid answer.
    UpstreamProtocol,
    /// The upstream session expired (HTTP 404 from the upstream).
    UpstreamSessionExpired,
    /// The upstream's circuit breaker is open: not tried.
    CircuitOpen,
    /// Something inside the gateway.
    Internal,
}

/// Whose fault an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The MCP client sent something wrong.
    Client,
    /// The MCP server (upstream) failed.
    Upstream,
    /// The gateway itself.
    Internal,
}

/// A gateway error with its cause for the log.
#[derive(Debug)]
pub struct Error {
    /// What failed.
    pub kind: ErrorKind,
    /// Whose fault.
    pub side: Side,
    /// Whether a retry may succeed.
    pub retryable: bool,
    /// Context for the log.
    pub context: String,
    /// The underlying cause, for the log.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// The request surely never reached the upstream (connect failed, child down): safe to
    /// retry whatever it was.
    pub unsent: bool,
    /// The HTTP status the upstream answered with, when the failure is one.
    pub http_status: Option<u16>,
}

/// Result with the gateway error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a log context.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        let (side, retryable) = match kind {
            ErrorKind::UpstreamUnavailable => (Side::Upstream, true),
            ErrorKind::UpstreamTimeout => (Side::Upstream, false),
            ErrorKind::UpstreamProtocol => (Side::Upstream, false),
            ErrorKind::UpstreamSessionExpired => (Side::Upstream, true),
            ErrorKind::CircuitOpen => (Side::Upstream, false),
            ErrorKind::Internal => (Side::Internal, false),
        };
        Self {
            kind,
            side,
            retryable,
            context: context.into(),
            source: None,
            unsent: false,
            http_status: None,
        }
    }

    /// Marks the request as never delivered.
    pub fn unsent(mut self) -> Self {
        self.unsent = true;
        self
    }

    /// Attaches the cause.
    pub fn with_source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(e));
        self
    }

    /// The stable code and message a client sees.
    pub fn to_jsonrpc(&self) -> (Code, &'static str) {
        match self.kind {
            ErrorKind::UpstreamUnavailable | ErrorKind::UpstreamSessionExpired => {
                (Code::UpstreamUnavailable, "Upstream unavailable")
            }
            ErrorKind::UpstreamTimeout => (Code::UpstreamTimeout, "Upstream timed out"),
            ErrorKind::CircuitOpen => (Code::CircuitOpen, "Upstream unavailable: circuit open"),
            ErrorKind::UpstreamProtocol => {
                (Code::UpstreamProtocol, "Upstream sent an invalid answer")
            }
            ErrorKind::Internal => (Code::InternalError, "Internal error"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.context)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
