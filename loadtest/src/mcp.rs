//! The MCP side of the load generator: request bodies, the request mix, and the verdict on
//! each answer (JSON or SSE).
//!
//! It sits between the load loop (which picks an operation and an id) and the HTTP client
//! (which moves bytes). It builds bodies from templates made once at start, so a request
//! costs a copy, not a serialization; it never touches sockets.

use std::{fmt, str::FromStr};

use serde::{de::IgnoredAny, Deserialize};
use serde_json::value::RawValue;

use crate::sse;

#[cfg(test)]
mod tests;

/// The protocol revision the load generator negotiates.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// The revision spoken with `--stateless`: no session, each request carries `_meta`.
pub const STATELESS_VERSION: &str = "2026-07-28";

/// The body of `notifications/initialized`.
pub const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// One kind of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `tools/call` of the configured tool.
    Call,
    /// `tools/list` (first page).
    List,
    /// `resources/read` of the configured resource.
    Read,
}

impl Op {
    /// All operations, in index order.
    pub const ALL: [Op; 3] = [Op::Call, Op::List, Op::Read];

    /// Index into per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in `--mix` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Call => "call",
            Op::List => "list",
            Op::Read => "read",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl Mix ===

/// Weighted request mix, e.g. `call=90,list=5,read=5`.
///
/// Requests are interleaved deterministically (smooth weighted round-robin over the weights
/// divided by their gcd), so every window of one period has exactly the configured shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 3],
    pattern: Vec<Op>,
}

impl Mix {
    /// The operation for the `i`-th request of a connection.
    pub fn pick(&self, i: u64) -> Op {
        // The pattern is never empty: FromStr rejects an all-zero mix.
        self.pattern[(i % self.pattern.len() as u64) as usize]
    }

    /// Weight of `op` as given.
    pub fn weight(&self, op: Op) -> u32 {
        self.weights[op.index()]
    }

    /// Length of one period of the pattern.
    pub fn period(&self) -> usize {
        self.pattern.len()
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights = [0u32; 3];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected NAME=WEIGHT"))?;
            let op = match name.trim() {
                "call" => Op::Call,
                "list" => Op::List,
                "read" => Op::Read,
                other => return Err(format!("unknown operation `{other}` (call, list, read)")),
            };
            weights[op.index()] = w
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: weight must be a whole number"))?;
        }
        let g = weights.iter().fold(0, |a, &b| gcd(a, b));
        if g == 0 {
            return Err("the mix needs at least one positive weight".into());
        }
        let reduced = weights.map(|w| w / g);
        let period: u32 = reduced.iter().sum();
        if period > 10_000 {
            return Err("the mix is too fine-grained (reduced weights sum above 10000)".into());
        }
        // Smooth weighted round-robin: each step adds every weight to its credit, picks the
        // largest credit and takes the period off it.
        let mut credit = [0i64; 3];
        let mut pattern = Vec::with_capacity(period as usize);
        for _ in 0..period {
            for (c, w) in credit.iter_mut().zip(reduced) {
                *c += i64::from(w);
            }
            let mut best = 0;
            for i in 1..3 {
                if credit[i] > credit[best] {
                    best = i;
                }
            }
            credit[best] -= i64::from(period);
            pattern.push(Op::ALL[best]);
        }
        Ok(Mix { weights, pattern })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for op in Op::ALL {
            if self.weight(op) > 0 {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{}={}", op, self.weight(op))?;
            }
        }
        Ok(())
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

// === impl Bodies ===

/// `sample` repeated to `len` bytes, cut back to a character boundary.
fn text_of(sample: &str, len: usize) -> String {
    let mut text = sample.repeat(len / sample.len() + 1);
    let mut end = len.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// What the requests carry.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Tool called by `tools/call`.
    pub tool: String,
    /// Length of the `text` argument, bytes.
    pub payload_bytes: usize,
    /// Text the `text` argument is made of (repeated and cut); `x`s when `None`.
    pub sample: Option<String>,
    /// Forwarded as the `result_bytes` argument when set.
    pub result_bytes: Option<usize>,
    /// URI read by `resources/read`.
    pub resource: String,
    /// MCP 2026-07-28: `params._meta` with version and capabilities in every request, and
    /// the `Mcp-Method` / `Mcp-Name` headers.
    pub stateless: bool,
}

/// Request bodies, pre-serialized around the id: `prefix + id + suffix`.
#[derive(Debug, Clone)]
pub struct Bodies {
    parts: [(Vec<u8>, Vec<u8>); 3],
    /// Header lines each request of an op carries (stateless era: `Mcp-Method`, `Mcp-Name`).
    headers: [Vec<u8>; 3],
}

impl Bodies {
    /// Serializes the templates once.
    pub fn new(p: &Payload) -> Self {
        let text = match p.sample.as_deref() {
            Some(s) if !s.is_empty() => text_of(s, p.payload_bytes),
            _ => "x".repeat(p.payload_bytes),
        };
        let mut args = serde_json::json!({ "text": text });
        if let Some(n) = p.result_bytes {
            args["result_bytes"] = n.into();
        }
        let mut call = serde_json::json!({"name": p.tool, "arguments": args});
        let mut read = serde_json::json!({"uri": p.resource});
        let mut list = None;
        if p.stateless {
            let meta = serde_json::json!({
                "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo":
                    {"name": "mcpgw-load", "version": env!("CARGO_PKG_VERSION")},
            });
            call["_meta"] = meta.clone();
            read["_meta"] = meta.clone();
            list = Some(serde_json::json!({ "_meta": meta }));
        }
        let headers = |method: &str, name: Option<&str>| -> Vec<u8> {
            if !p.stateless {
                return Vec::new();
            }
            let mut h = format!("Mcp-Method: {method}\r\n");
            if let Some(n) = name {
                h.push_str(&format!("Mcp-Name: {n}\r\n"));
            }
            h.into_bytes()
        };
        let template = |method: &str, params: Option<serde_json::Value>| {
            let prefix = br#"{"jsonrpc":"2.0","id":"#.to_vec();
            let mut suffix = format!(r#","method":"{method}""#);
            if let Some(params) = params {
                suffix.push_str(r#","params":"#);
                suffix.push_str(&params.to_string());
            }
            suffix.push('}');
            (prefix, suffix.into_bytes())
        };
        Bodies {
            parts: [
                template("tools/call", Some(call)),
                template("tools/list", list),
                template("resources/read", Some(read)),
            ],
            headers: [
                headers("tools/call", Some(&p.tool)),
                headers("tools/list", None),
                headers("resources/read", Some(&p.resource)),
            ],
        }
    }

    /// Appends the body of `op` with `id` to `out`.
    pub fn write(&self, op: Op, id: u64, out: &mut Vec<u8>) {
        let (prefix, suffix) = &self.parts[op.index()];
        out.extend_from_slice(prefix);
        push_u64(out, id);
        out.extend_from_slice(suffix);
    }

    /// The header lines of every request of `op` (empty in the legacy era).
    pub fn headers(&self, op: Op) -> &[u8] {
        &self.headers[op.index()]
    }

    /// Length of the body of `op` with `id`, bytes.
    pub fn len(&self, op: Op, id: u64) -> usize {
        let (prefix, suffix) = &self.parts[op.index()];
        prefix.len() + digits(id) + suffix.len()
    }
}

/// The body of `initialize` (id 0).
pub fn initialize_body() -> Vec<u8> {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcpgw-load", "version": env!("CARGO_PKG_VERSION")}
        }
    })
    .to_string()
    .into_bytes()
}

/// Appends the decimal digits of `n`.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

// === verdicts ===

/// What an answer with the right id said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A `result`, and for a tool call, not `isError: true`.
    Ok,
    /// A JSON-RPC `error` with this code.
    RpcError(i64),
    /// A `tools/call` result with `isError: true`.
    ToolError,
}

/// An answer that cannot be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum BadAnswer {
    /// The body is not a JSON-RPC response.
    #[error("answer is not a JSON-RPC response")]
    NotJsonRpc,
    /// A response for another id.
    #[error("answer for another id")]
    WrongId,
    /// An event stream without an event for this id.
    #[error("no answer in the event stream")]
    NoAnswerInStream,
}

#[derive(Deserialize)]
struct Answer<'a, R> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    result: Option<R>,
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    code: i64,
}

#[derive(Deserialize)]
struct CallResult {
    #[serde(rename = "isError", default)]
    is_error: bool,
}

/// Judges a JSON body answering request `id` of kind `op`.
pub fn check_json(body: &[u8], id: u64, op: Op) -> Result<Verdict, BadAnswer> {
    match judge(body, id, op)? {
        Some(v) => Ok(v),
        None => Err(BadAnswer::WrongId),
    }
}

/// Judges an event-stream body: the answer is the event whose id is `id`; other events
/// (notifications, progress, answers to nothing) are skipped.
pub fn check_sse(body: &[u8], id: u64, op: Op) -> Result<Verdict, BadAnswer> {
    for data in sse::events(body) {
        if let Ok(Some(v)) = judge(&data, id, op) {
            return Ok(v);
        }
    }
    Err(BadAnswer::NoAnswerInStream)
}

/// `Ok(None)`: a well-formed message for another id (or a notification).
fn judge(body: &[u8], id: u64, op: Op) -> Result<Option<Verdict>, BadAnswer> {
    let (raw_id, verdict) = if op == Op::Call {
        let a: Answer<'_, CallResult> =
            serde_json::from_slice(body).map_err(|_| BadAnswer::NotJsonRpc)?;
        let v = match (a.result, a.error) {
            (Some(r), _) if r.is_error => Some(Verdict::ToolError),
            (Some(_), _) => Some(Verdict::Ok),
            (None, Some(e)) => Some(Verdict::RpcError(e.code)),
            (None, None) => None,
        };
        (a.id, v)
    } else {
        let a: Answer<'_, IgnoredAny> =
            serde_json::from_slice(body).map_err(|_| BadAnswer::NotJsonRpc)?;
        let v = match (a.result, a.error) {
            (Some(_), _) => Some(Verdict::Ok),
            (None, Some(e)) => Some(Verdict::RpcError(e.code)),
            (None, None) => None,
        };
        (a.id, v)
    };
    let same_id = raw_id.is_some_and(|raw| id_matches(raw.get(), id));
    match (same_id, verdict) {
        (true, Some(v)) => Ok(Some(v)),
        (true, None) => Err(BadAnswer::NotJsonRpc),
        (false, _) => Ok(None),
    }
}

/// A numeric id as we sent it; a string holding the same digits is accepted too.
fn id_matches(raw: &str, id: u64) -> bool {
    let raw = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(raw);
    raw.parse::<u64>() == Ok(id)
}
