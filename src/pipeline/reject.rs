//! Refusals, for every phase: why the gateway answers a request itself with an error, as
//! values the phases return (`Result<_, Reject>`), and [`rescue`], the one place a refusal
//! of a JSON-RPC request becomes bytes (a JSON-RPC error with a stable code; see
//! `jsonrpc::codes`).
//!
//! Never logs, counts or audits: the phase that refuses does that, knowing why.

use std::{borrow::Cow, time::Duration};

use bytes::Bytes;

use crate::{
    auth::OverQuota,
    error::Error,
    guard::policy::{blocked_message, Direction},
    jsonrpc::{codes::error_body_data, error_body, Code, FrameError},
};

/// Why a request is answered with an error instead of an upstream's answer.
#[derive(Debug)]
pub enum Reject {
    /// Not the shape a request must have: its code (-32600, -32602, a header mismatch) and
    /// message, with `data` when the client is told more.
    Invalid(Code, Cow<'static, str>, Option<String>),
    /// Names nothing this client can reach.
    NotFound(NotFound),
    /// Outside the principal's roles.
    Denied(Denied),
    /// A `[[rate_limit]]` refuses it now.
    RateLimited(RateLimited),
    /// A `[[quota]]` has no call left for it (as of `.1`, unix seconds).
    OverQuota(OverQuota, u64),
    /// A gateway limit is reached (its message names the setting).
    LimitReached(&'static str),
    /// A guardrail refuses it.
    Blocked(Blocked),
    /// The client cancelled it.
    Cancelled,
    /// The upstream could not answer it: the code and message of its error kind.
    Upstream(Code, &'static str),
    /// The gateway failed (logged where it happened).
    Internal,
}

/// What a request named that is not there.
#[derive(Debug)]
pub enum NotFound {
    /// A method the gateway does not serve.
    Method,
    /// A tool no upstream of the view lists.
    Tool,
    /// A prompt no upstream of the view lists.
    Prompt,
    /// A resource no upstream of the view serves (-32002).
    Resource,
    /// The same for a 2026-07-28 client: `invalid params` with the URI asked for (`null`
    /// when it was not a string) as data, as that revision says.
    ResourceNamed(Option<String>),
    /// The session ended, or its virtual server is gone.
    Session,
}

/// A request for something outside the principal's roles.
#[derive(Debug)]
pub struct Denied {
    /// `tool`, `prompt` or `resource`.
    pub what: &'static str,
}

/// A call refused by a rate limit.
#[derive(Debug)]
pub struct RateLimited {
    /// What was limited (a tool or upstream name); `None` for a batch element.
    pub name: Option<String>,
    /// When a token is next free.
    pub retry_after: Duration,
}

/// What a guardrail refused.
#[derive(Debug)]
pub enum Blocked {
    /// The upstream's catalog failed the guard's scan.
    Catalog,
    /// Screening found kinds a policy blocks, in the arguments or the result.
    Screen(Direction, Vec<&'static str>),
}

impl Reject {
    /// The refusal for a failed upstream call (its kind's code; upstream text never passes).
    pub fn upstream(e: &Error) -> Self {
        let (code, msg) = e.to_jsonrpc();
        Reject::Upstream(code, msg)
    }
}

/// The JSON-RPC error answering request `id` (`None`: not known) refused for `r`.
pub fn rescue(id: Option<&[u8]>, r: Reject) -> Bytes {
    let plain = |code, msg: &str| error_body(id, code, msg);
    match r {
        Reject::Invalid(code, msg, None) => plain(code, &msg),
        Reject::Invalid(code, msg, Some(data)) => error_body_data(id, code, &msg, data.as_bytes()),
        Reject::NotFound(NotFound::Method) => plain(Code::MethodNotFound, "Method not found"),
        Reject::NotFound(NotFound::Tool) => plain(Code::InvalidParams, "Unknown tool"),
        Reject::NotFound(NotFound::Prompt) => plain(Code::InvalidParams, "Unknown prompt"),
        Reject::NotFound(NotFound::Resource) => plain(Code::ResourceNotFound, "Resource not found"),
        Reject::NotFound(NotFound::ResourceNamed(uri)) => {
            let data = serde_json::json!({ "uri": uri }).to_string();
            error_body_data(
                id,
                Code::InvalidParams,
                "Resource not found",
                data.as_bytes(),
            )
        }
        Reject::NotFound(NotFound::Session) => plain(Code::SessionNotFound, "Session not found"),
        Reject::Denied(Denied { what }) => plain(
            Code::Forbidden,
            &format!("Forbidden: this {what} is not allowed for this principal"),
        ),
        Reject::RateLimited(RateLimited { name, retry_after }) => {
            let ms = retry_after.as_millis().max(1);
            let msg = match name {
                Some(name) => format!("Rate limit exceeded for {name}: retry after {ms} ms"),
                None => format!("Too Many Requests: rate limit exceeded: retry after {ms} ms"),
            };
            plain(Code::RateLimited, &msg)
        }
        Reject::OverQuota(over, now) => plain(Code::RateLimited, &quota_message(&over, now)),
        Reject::LimitReached(msg) => plain(Code::LimitReached, msg),
        Reject::Blocked(Blocked::Catalog) => plain(
            Code::GuardBlocked,
            "Blocked by guardrail: this upstream's catalog failed the guard's scan",
        ),
        Reject::Blocked(Blocked::Screen(dir, kinds)) => {
            plain(Code::GuardBlocked, &blocked_message(dir, &kinds))
        }
        Reject::Cancelled => plain(Code::RequestCancelled, "Request cancelled"),
        Reject::Upstream(code, msg) => plain(code, msg),
        Reject::Internal => plain(Code::InternalError, "Internal error"),
    }
}

/// The JSON-RPC error answering a message that is not JSON (-32700) or not a valid
/// JSON-RPC message (-32600, with its id when it had a readable one).
pub fn malformed(e: &FrameError) -> Bytes {
    match e {
        FrameError::Parse(_) => error_body(None, Code::ParseError, "Parse error"),
        FrameError::Invalid { reason, id } => error_body(
            id.as_deref(),
            Code::InvalidRequest,
            &format!("Invalid Request: {reason}"),
        ),
    }
}

/// The message of a refusal by a quota.
fn quota_message(over: &OverQuota, now: u64) -> String {
    let window = match over.window {
        crate::ratelimit::Window::Day => "day",
        crate::ratelimit::Window::Month => "month",
    };
    let scope = if over.team { "team" } else { "principal" };
    format!(
        "Quota exceeded: {} tool calls per {window} for this {scope}; resets at {} (in {} s)",
        over.limit,
        crate::ratelimit::utc_rfc3339(over.resets_at),
        over.resets_at.saturating_sub(now).max(1)
    )
}

/// A refusal with only a code and a fixed message.
pub fn invalid(code: Code, msg: &'static str) -> Reject {
    Reject::Invalid(code, Cow::Borrowed(msg), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(b: &[u8]) -> i64 {
        let v: serde_json::Value = serde_json::from_slice(b).expect("json");
        v["error"]["code"].as_i64().expect("code")
    }

    #[test]
    fn each_refusal_has_its_stable_code() {
        let cases: Vec<(Reject, i64)> = vec![
            (Reject::NotFound(NotFound::Method), -32601),
            (Reject::NotFound(NotFound::Tool), -32602),
            (
                Reject::NotFound(NotFound::Resource),
                Code::ResourceNotFound.code().into(),
            ),
            (
                Reject::NotFound(NotFound::ResourceNamed(Some("x:/y".into()))),
                -32602,
            ),
            (
                Reject::Denied(Denied { what: "tool" }),
                Code::Forbidden.code().into(),
            ),
            (Reject::Cancelled, Code::RequestCancelled.code().into()),
            (Reject::Internal, -32603),
        ];
        for (r, want) in cases {
            let what = format!("{r:?}");
            assert_eq!(code_of(&rescue(Some(b"7"), r)), want, "{what}");
        }
    }

    #[test]
    fn a_resource_not_found_names_its_uri_for_2026_clients() {
        let b = rescue(
            Some(b"1"),
            Reject::NotFound(NotFound::ResourceNamed(Some("demo://x".into()))),
        );
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["error"]["data"]["uri"], "demo://x");
    }
}
