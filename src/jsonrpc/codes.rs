//! JSON-RPC error codes the gateway answers with, and the one function that writes an error.
//!
//! The standard codes come from JSON-RPC 2.0. MCP 2026-07-28 leaves -32000..-32019 to
//! implementations and reserves -32020..-32099 for MCP itself (-32020..-32022 are defined;
//! 2025-11-25's -32042 is URL-elicitation-required), so the gateway's own codes are
//! -32003..-32016: past the codes MCP SDKs already use (-32000 connection closed, -32001
//! request timeout, -32002 resource not found). They are stable: README.md lists them and
//! clients may match on them. (Before 2026-11-26 they were -32030..-32043.)

use bytes::{BufMut, Bytes, BytesMut};

/// An error code with its stable message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// -32700: the body is not JSON.
    ParseError,
    /// -32600: JSON, but not a valid JSON-RPC request (or not allowed here).
    InvalidRequest,
    /// -32601: no such method.
    MethodNotFound,
    /// -32602: bad params, unknown tool or prompt, bad cursor.
    InvalidParams,
    /// -32603: a fault inside the gateway.
    InternalError,
    /// -32002: MCP's "resource not found" (unknown or unroutable URI).
    ResourceNotFound,
    /// -32020 (MCP 2026-07-28): an HTTP header (`MCP-Protocol-Version`, `Mcp-Method`,
    /// `Mcp-Name`) is missing, repeated or says something other than the body (HTTP 400).
    HeaderMismatch,
    /// -32021 (MCP 2026-07-28): the request needs a client capability it did not declare
    /// (HTTP 400; `data.requiredCapabilities`).
    MissingClientCapability,
    /// -32022 (MCP 2026-07-28): the protocol version is not one the gateway speaks (HTTP
    /// 400; `data.supported`, `data.requested`).
    UnsupportedProtocolVersion,
    /// -32003: the upstream could not be reached or is restarting.
    UpstreamUnavailable,
    /// -32004: the upstream did not answer within the call timeout.
    UpstreamTimeout,
    /// -32005: the upstream answered with something that is not a valid MCP answer.
    UpstreamProtocol,
    /// -32006: the session is unknown or has ended (HTTP 404).
    SessionNotFound,
    /// -32007: the request needs a session and carries none (HTTP 400).
    SessionRequired,
    /// -32008: the HTTP request itself is unacceptable (size, headers, media type).
    BadHttpRequest,
    /// -32009: the gateway is shutting down.
    ShuttingDown,
    /// -32010: the client cancelled the request (answered only where HTTP needs an answer).
    RequestCancelled,
    /// -32011: a configured limit was reached (connections, sessions, calls in flight); the
    /// message names it. Retrying later may succeed.
    LimitReached,
    /// -32012: no valid credentials (HTTP 401, with `WWW-Authenticate`).
    Unauthorized,
    /// -32013: the principal may not do this (a tool, prompt or resource outside its roles;
    /// a client address refused: HTTP 403).
    Forbidden,
    /// -32014: a rate limit was exceeded (HTTP 429 with `Retry-After` for request-level
    /// limits; a JSON-RPC error for per-tool limits).
    RateLimited,
    /// -32015: the upstream's circuit breaker is open (it failed repeatedly); the call was
    /// not tried. Retry after `breaker_open_ms`.
    CircuitOpen,
    /// -32016: a guardrail refused the call: its arguments or result hold what a
    /// `[[guard.screen]]` policy blocks (the message names the kind, never the value), or
    /// its upstream is blocked by the catalog guard.
    GuardBlocked,
}

impl Code {
    /// The numeric code.
    pub fn code(self) -> i32 {
        match self {
            Code::ParseError => -32700,
            Code::InvalidRequest => -32600,
            Code::MethodNotFound => -32601,
            Code::InvalidParams => -32602,
            Code::InternalError => -32603,
            Code::ResourceNotFound => -32002,
            Code::HeaderMismatch => -32020,
            Code::MissingClientCapability => -32021,
            Code::UnsupportedProtocolVersion => -32022,
            Code::UpstreamUnavailable => -32003,
            Code::UpstreamTimeout => -32004,
            Code::UpstreamProtocol => -32005,
            Code::SessionNotFound => -32006,
            Code::SessionRequired => -32007,
            Code::BadHttpRequest => -32008,
            Code::ShuttingDown => -32009,
            Code::RequestCancelled => -32010,
            Code::LimitReached => -32011,
            Code::Unauthorized => -32012,
            Code::Forbidden => -32013,
            Code::RateLimited => -32014,
            Code::CircuitOpen => -32015,
            Code::GuardBlocked => -32016,
        }
    }
}

/// A complete error response: `{"jsonrpc":"2.0","id":ID,"error":{"code":..,"message":..}}`.
/// `id` is the raw JSON of the request id (`null` when unknown); `message` is escaped here.
pub fn error_body(id: Option<&[u8]>, code: Code, message: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + message.len());
    out.put_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.put_slice(id.unwrap_or(b"null"));
    out.put_slice(b",\"error\":{\"code\":");
    out.put_slice(code.code().to_string().as_bytes());
    out.put_slice(b",\"message\":");
    match serde_json::to_vec(message) {
        Ok(m) => out.put_slice(&m),
        Err(_) => out.put_slice(b"\"error\""),
    }
    out.put_slice(b"}}");
    out.freeze()
}

/// An error response with `data` (raw JSON) beside the code and message.
pub fn error_body_data(id: Option<&[u8]>, code: Code, message: &str, data: &[u8]) -> Bytes {
    let plain = error_body(id, code, message);
    // `plain` ends with `}}`: the data member goes into the error object.
    let mut out = BytesMut::with_capacity(plain.len() + data.len() + 8);
    out.put_slice(&plain[..plain.len() - 2]);
    out.put_slice(b",\"data\":");
    out.put_slice(data);
    out.put_slice(b"}}");
    out.freeze()
}

/// A complete success response around an already-serialized `result`.
pub fn result_body(id: &[u8], result: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(40 + id.len() + result.len());
    out.put_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.put_slice(id);
    out.put_slice(b",\"result\":");
    out.put_slice(result);
    out.put_slice(b"}");
    out.freeze()
}

/// A message in three pieces written one after another and never joined on the way to the
/// socket: the answer to a list request is its envelope's head, the prebuilt page the
/// snapshot holds (shared, not copied) and the closing brace.
#[derive(Clone, Debug)]
pub struct Pieces {
    /// Up to the value that is not copied.
    pub head: Bytes,
    /// The value that is not copied.
    pub body: Bytes,
    /// After it.
    pub tail: &'static [u8],
}

impl Pieces {
    /// The result answer for `id` whose `result` is `result`, an object (not copied).
    pub fn result(id: &[u8], result: Bytes) -> Self {
        let head = crate::arena::build(32 + id.len(), |out| {
            out.put_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
            out.put_slice(id);
            out.put_slice(b",\"result\":");
        });
        Pieces {
            head,
            body: result,
            tail: b"}",
        }
    }

    /// A message in one piece.
    pub fn whole(message: Bytes) -> Self {
        Pieces {
            head: message,
            body: Bytes::new(),
            tail: b"",
        }
    }

    /// Whether the message is in one piece (see [`Pieces::whole`]).
    pub fn is_whole(&self) -> bool {
        self.body.is_empty() && self.tail.is_empty()
    }

    /// The message in one buffer: its only piece, else the pieces joined (a copy).
    pub fn into_bytes(self) -> Bytes {
        if self.is_whole() {
            self.head
        } else {
            self.join()
        }
    }

    /// The same answer with `members` (`"name":value,` each, comma-terminated) first in the
    /// object that is its body; the body is sliced, not copied. A body that is not an
    /// object is left as it is.
    pub fn with_members(self, members: &[u8]) -> Self {
        if self.body.first() != Some(&b'{') {
            return self;
        }
        let empty = self.body.get(1) == Some(&b'}');
        let members = if empty {
            members.strip_suffix(b",").unwrap_or(members)
        } else {
            members
        };
        let head = crate::arena::build(self.head.len() + 1 + members.len(), |out| {
            out.put_slice(&self.head);
            out.put_u8(b'{');
            out.put_slice(members);
        });
        Pieces {
            head,
            body: self.body.slice(1..),
            tail: self.tail,
        }
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len() + self.tail.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message in one buffer (a copy), where one is needed: inside a batch's array or
    /// an SSE event.
    pub fn join(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        out.put_slice(&self.head);
        out.put_slice(&self.body);
        out.put_slice(self.tail);
        out.freeze()
    }
}

impl From<Bytes> for Pieces {
    fn from(message: Bytes) -> Self {
        Pieces::whole(message)
    }
}

/// An error answer for `id` carrying `error`, a raw JSON error object (an upstream's own).
pub fn error_raw_body(id: &[u8], error: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(40 + id.len() + error.len());
    out.put_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.put_slice(id);
    out.put_slice(b",\"error\":");
    out.put_slice(error);
    out.put_slice(b"}");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_valid_json() {
        let b = error_body(Some(b"\"a\""), Code::InvalidParams, "Unknown tool: \"x\"");
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["id"], "a");
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["message"], "Unknown tool: \"x\"");
        let b = error_body_data(
            Some(b"7"),
            Code::UnsupportedProtocolVersion,
            "Unsupported protocol version",
            br#"{"supported":["2026-07-28"]}"#,
        );
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["error"]["code"], -32022);
        assert_eq!(v["error"]["data"]["supported"][0], "2026-07-28");
        let b = error_body(None, Code::ParseError, "Parse error");
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert!(v["id"].is_null());
    }
}
