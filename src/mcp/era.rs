//! The MCP 2026-07-28 envelope: pure rules, no IO.
//!
//! The `_meta` members a stateless request carries (`io.modelcontextprotocol/...`), the
//! routing headers (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`) and how their values are
//! written and read (`=?base64?...?=`), the members a legacy upstream's result gains, and
//! where edits go in a request or a result. Both sides use them: the front checks clients'
//! requests with them, the upstreams write theirs. Nothing here knows a session, a front,
//! an upstream or a socket; it works on bytes, `jsonrpc::Frame`s and JSON values.

use std::borrow::Cow;

use base64::Engine as _;

use super::{version::STATELESS_VERSION, Hello};
use crate::jsonrpc::{Frame, Span};

/// Added inside a legacy upstream's result for a 2026-07-28 client.
pub const RESULT_COMPLETE: &[u8] = b"\"resultType\":\"complete\",";

/// Added inside list and read results: complete, and not to be reused (what a principal
/// sees depends on its roles, and changes with the catalog).
pub const LIST_MEMBERS: &[u8] =
    b"\"resultType\":\"complete\",\"ttlMs\":0,\"cacheScope\":\"private\",";

/// The members a legacy upstream's result for `method` gains for a 2026-07-28 client.
pub fn result_members(method: Option<&str>) -> &'static [u8] {
    match method {
        Some("resources/read") => LIST_MEMBERS,
        _ => RESULT_COMPLETE,
    }
}

/// The protocol version a 2026-07-28 request says it speaks.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The client capabilities a 2026-07-28 request carries.
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The client information a 2026-07-28 request may carry.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// The level of log messages a 2026-07-28 request wants (none without it).
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// Whether a `_meta` key (raw) is one of the 2026-07-28 envelope's, which a legacy
/// upstream must not be sent (the official SDK servers refuse such requests on a legacy
/// session).
pub fn is_envelope_key(key: &[u8]) -> bool {
    key.starts_with(b"io.modelcontextprotocol/")
}

/// The JSON-RPC parameter a method's `Mcp-Name` mirrors.
pub fn named_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// The routing headers of request `f` for a 2026-07-28 upstream: `Mcp-Method`, `Mcp-Name`
/// (`name`: what it names there, a tool, prompt or resource URI) and, for a tool whose
/// arguments `params_of` says are mirrored (`x-mcp-header`), `Mcp-Param-*` from `f`'s
/// arguments. The front calls it with the request it parsed (the upstream's own name), so
/// the body is not parsed again on its way out.
pub fn routing_of(
    f: &Frame,
    method: &str,
    name: Option<&str>,
    params_of: impl Fn(&str) -> Option<ParamHeaders>,
) -> Routing {
    let mut routing = vec![(Cow::Borrowed("Mcp-Method"), method.as_bytes().to_vec())];
    if let Some(v) = name {
        // A tool's arguments it names with `x-mcp-header` go in `Mcp-Param-*` headers.
        if let Some(declared) = (method == "tools/call").then(|| params_of(v)).flatten() {
            let arguments = arguments_of(f);
            for (path, token) in &declared {
                if let Some(text) = argument_text(&arguments, path) {
                    routing.push((format!("Mcp-Param-{token}").into(), header_value(&text)));
                }
            }
        }
        routing.push((Cow::Borrowed("Mcp-Name"), header_value(v)));
    }
    routing
}

/// HTTP headers a request to a 2026-07-28 upstream carries (name, value).
pub type Routing = Vec<(Cow<'static, str>, Vec<u8>)>;

/// A tool's `Mcp-Param-*` headers: for each property of its `inputSchema` (reached through
/// `properties` alone) that names one with `x-mcp-header` and is a string, integer or
/// boolean, its path of property names and the header's token.
pub type ParamHeaders = Vec<(Vec<String>, String)>;

/// The [`ParamHeaders`] of a tool definition.
pub fn param_headers(tool: &serde_json::Value) -> ParamHeaders {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<String>, &serde_json::Value)> = tool
        .get("inputSchema")
        .map(|s| (Vec::new(), s))
        .into_iter()
        .collect();
    while let Some((path, schema)) = stack.pop() {
        if let (false, Some(token)) = (
            path.is_empty(),
            schema.get("x-mcp-header").and_then(|t| t.as_str()),
        ) {
            let typed = matches!(
                schema.get("type").and_then(|t| t.as_str()),
                Some("string" | "integer" | "boolean")
            );
            if typed && !token.is_empty() {
                out.push((path.clone(), token.to_string()));
            }
        }
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let mut p = path.clone();
                p.push(name.clone());
                stack.push((p, sub));
            }
        }
    }
    out
}

/// A call's `arguments` as a document (null when absent or not JSON): read only for tools
/// that declare `Mcp-Param-*` headers.
pub fn arguments_of(f: &Frame) -> serde_json::Value {
    f.param("arguments")
        .and_then(|s| f.raw_at(s))
        .and_then(|r| serde_json::from_slice(r).ok())
        .unwrap_or_default()
}

/// The header text of the argument at `path` in `arguments` (`true`/`false`, a number's
/// JSON text, a string's text); `None` when absent, null or not a scalar.
pub fn argument_text(arguments: &serde_json::Value, path: &[String]) -> Option<String> {
    let v = path.iter().try_fold(arguments, |node, key| node.get(key))?;
    match v {
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The 2026-07-28 envelope's `_meta` members for a client that said `hello` (JSON members,
/// without braces).
pub fn envelope(hello: &Hello) -> String {
    format!(
        r#""{META_VERSION}":"{STATELESS_VERSION}","{META_CAPABILITIES}":{caps},"{META_CLIENT_INFO}":{info}"#,
        caps = String::from_utf8_lossy(&hello.capabilities),
        info = String::from_utf8_lossy(&hello.client_info),
    )
}

/// The edit that puts `members` (JSON members, without braces) first in the request's
/// `params._meta`, creating `_meta` (and `params`) when absent. `meta_emptied`: other edits
/// remove every member `_meta` has. `None` when `params` or `_meta` is not an object: the
/// request is left as the client sent it.
pub fn meta_insert(f: &Frame, members: &str, meta_emptied: bool) -> Option<(Span, Vec<u8>)> {
    let raw = f.bytes();
    let object = |s: Span| raw.get(s.start as usize) == Some(&b'{');
    match (f.param("_meta"), f.param_span()) {
        (Some(m), _) if object(m) => object_insert(raw, m, members.to_string(), meta_emptied),
        (Some(_), _) => None,
        (None, Some(p)) if object(p) => {
            object_insert(raw, p, format!(r#""_meta":{{{members}}}"#), false)
        }
        (None, Some(_)) => None,
        // No params: they go last in the message.
        (None, None) => raw.iter().rposition(|b| *b == b'}').map(|end| {
            let at = u32::try_from(end).unwrap_or(u32::MAX);
            (
                Span { start: at, end: at },
                format!(r#","params":{{"_meta":{{{members}}}}}"#).into_bytes(),
            )
        }),
    }
}

/// The edit that puts `members` first in the object at `obj` (with a comma when it keeps
/// members of its own).
fn object_insert(raw: &[u8], obj: Span, members: String, emptied: bool) -> Option<(Span, Vec<u8>)> {
    let inner = raw.get(obj.start as usize + 1..(obj.end as usize).checked_sub(1)?)?;
    let comma = if emptied || inner.iter().all(u8::is_ascii_whitespace) {
        ""
    } else {
        ","
    };
    let at = obj.start + 1;
    Some((
        Span { start: at, end: at },
        format!("{members}{comma}").into_bytes(),
    ))
}

/// A routing header's value: as is when it is visible ASCII without blanks at its ends,
/// else `=?base64?...?=`.
fn header_value(v: &str) -> Vec<u8> {
    let plain = !v.is_empty()
        && v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !v.starts_with(' ')
        && !v.ends_with(' ')
        && !v.starts_with("=?");
    if plain {
        v.as_bytes().to_vec()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
        .into_bytes()
    }
}

/// Where a legacy upstream's successful result gets the members a 2026-07-28 client
/// expects (`resultType`, ...); `None` for errors and results that have a `resultType`.
pub fn legacy_result_insert(frame: &Frame) -> Option<Span> {
    if frame.is_error() {
        return None;
    }
    let rs = frame.result_span()?;
    // The parse noted the member, if the result has it.
    if frame.result_has_type() {
        return None;
    }
    insert_point(frame.raw_at(rs)?, rs)
}

/// Where members go into the object at `span` whose bytes are `raw`: just after its `{`,
/// when it has members (so the inserted ones end with a comma); `None` for `{}`.
pub fn insert_point(raw: &[u8], span: Span) -> Option<Span> {
    let open = raw.iter().position(|b| !b.is_ascii_whitespace())?;
    if raw[open] != b'{' {
        return None;
    }
    let next = raw[open + 1..].iter().find(|b| !b.is_ascii_whitespace())?;
    if *next == b'}' {
        return None;
    }
    let at = span.start + u32::try_from(open + 1).ok()?;
    Some(Span { start: at, end: at })
}

/// Whether a routing header says `want`: compared as is (surrounding blanks dropped), or
/// decoded first when it is `=?base64?...?=`. No allocation unless it is encoded.
pub fn header_says(v: &[u8], want: &str) -> bool {
    let t = v.trim_ascii();
    if t.starts_with(b"=?base64?") {
        return header_text(t).as_deref() == Some(want);
    }
    t == want.as_bytes()
}

/// A routing header's text: surrounding blanks dropped, `=?base64?...?=` decoded.
pub fn header_text(v: &[u8]) -> Option<String> {
    let t = std::str::from_utf8(v).ok()?.trim_matches([' ', '\t']);
    match t
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(raw).ok()
        }
        None => Some(t.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_points_skip_empty_objects() {
        let span = Span { start: 10, end: 20 };
        assert_eq!(
            insert_point(b" {\"a\":1}", span),
            Some(Span { start: 12, end: 12 })
        );
        assert_eq!(insert_point(b"{ }", span), None);
        assert_eq!(insert_point(b"[1]", span), None);
    }

    #[test]
    fn routing_headers_decode_base64() {
        assert_eq!(header_text(b" tools/call ").as_deref(), Some("tools/call"));
        let enc = format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode("héllo")
        );
        assert_eq!(header_text(enc.as_bytes()).as_deref(), Some("héllo"));
        assert_eq!(header_text(b"=?base64?***?="), None);
        assert!(header_says(b" tools/call\t", "tools/call"));
        assert!(!header_says(b"Tools/Call", "tools/call"));
        assert!(header_says(enc.as_bytes(), "héllo"));
        assert!(!header_says(b"=?base64?***?=", "=?base64?***?="));
    }
}
