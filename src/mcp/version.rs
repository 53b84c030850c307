//! MCP protocol revisions and what each allows; the MCP log levels.
//!
//! Which revisions the gateway speaks with clients and asks of upstreams, how a client's
//! requested revision is negotiated, which header selects the stateless (2026-07-28) era,
//! and the log levels every revision shares. Pure rules: no sessions, no IO.

/// Protocol revisions the gateway speaks with clients, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The revision without sessions (`initialize`): each request carries its version and
/// capabilities in `params._meta`.
pub const STATELESS_VERSION: &str = "2026-07-28";

/// The newest revision, answered when a client asks for one the gateway does not know.
pub const LATEST_VERSION: &str = "2025-11-25";

/// Whether batches are allowed in `version` (only 2025-03-26 had them).
pub fn batches_allowed(version: &str) -> bool {
    version == "2025-03-26"
}

/// The revision to answer a client's `initialize` with.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r).copied())
        .unwrap_or(LATEST_VERSION)
}

/// The protocol version the gateway asks upstreams for.
pub const UPSTREAM_PROTOCOL_VERSION: &str = "2025-11-25";

/// Whether an `MCP-Protocol-Version` header selects the stateless era: any value that is
/// not a legacy revision (unknown ones are refused there, with -32022).
pub fn is_stateless(version_header: &[u8]) -> bool {
    !SUPPORTED_VERSIONS
        .iter()
        .any(|v| v.as_bytes() == version_header)
}

/// MCP log levels, least severe first (RFC 5424 severities).
pub(crate) const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Where `level` sits among the MCP log levels (`debug` 0 .. `emergency` 7).
pub(crate) fn log_rank(level: &str) -> Option<u8> {
    LOG_LEVELS
        .iter()
        .position(|l| *l == level)
        .and_then(|i| u8::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST_VERSION);
        assert_eq!(negotiate(None), LATEST_VERSION);
        assert!(batches_allowed("2025-03-26") && !batches_allowed("2025-06-18"));
    }

    #[test]
    fn legacy_versions_are_not_stateless() {
        assert!(!is_stateless(b"2025-11-25"));
        assert!(!is_stateless(b"2024-11-05"));
        assert!(is_stateless(b"2026-07-28"));
        assert!(is_stateless(b"v999.0.0"));
    }
}
