//! The built-in demo MCP server, run as `mcpgw demo-server`.
//!
//! A small but real Model Context Protocol server speaking JSON-RPC 2.0 over
//! stdio: one JSON message per line on stdin, one JSON message per line on
//! stdout, logs on stderr only. It supports the MCP revisions 2024-11-05,
//! 2025-03-26, 2025-06-18 and 2025-11-25 and offers a handful of tools
//! (`echo`, `add`, `word_count`, `utc_now`, `reverse`), two resources
//! (`demo://readme` and the template `demo://greeting/{name}`), one prompt
//! (`summarize`) and argument completion for both.
//!
//! It sits beside the gateway, not inside it: the gateway starts it as a
//! separate process (an upstream with `command = "@self"`), so it can be tried
//! and tested without any third-party server. Blocking std IO is used on
//! purpose; it is its own process.
//!
//! It never panics on input (bad input gets a JSON-RPC error), never writes
//! anything but JSON-RPC messages to stdout, keeps no session state, sends no
//! requests or notifications of its own, and touches no files or network.

use std::io::{self, BufRead, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Map, Value};

/// MCP protocol revisions this server speaks; `initialize` echoes one of them.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Revision answered when the client asks for one not in
/// [`SUPPORTED_PROTOCOL_VERSIONS`].
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// `serverInfo.name` reported by `initialize`.
pub const SERVER_NAME: &str = "mcpgw-demo";

/// JSON-RPC: the line is not valid JSON.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the JSON is not a valid request object.
const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: the method does not exist.
const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: invalid method parameters.
const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: internal error (only if serializing a response fails).
const INTERNAL_ERROR: i64 = -32603;
/// MCP: the requested resource does not exist.
const RESOURCE_NOT_FOUND: i64 = -32002;

/// URI of the static readme resource.
const README_URI: &str = "demo://readme";
/// URI template of the greeting resource.
const GREETING_TEMPLATE: &str = "demo://greeting/{name}";
/// Prefix of concrete greeting URIs.
const GREETING_PREFIX: &str = "demo://greeting/";

/// Text of `demo://readme`.
const README_TEXT: &str = "# mcpgw demo server\n\n\
This is the small MCP server built into mcpgw (`mcpgw demo-server`). \
It speaks JSON-RPC 2.0 over stdio so the gateway can be tried without any other server.\n\n\
- Tools: `echo`, `add`, `word_count`, `utc_now`, `reverse`\n\
- Resources: `demo://readme` (this text) and `demo://greeting/{name}`\n\
- Prompts: `summarize` (with completion for its `style` argument)\n";

/// Instructions returned by `initialize`.
const INSTRUCTIONS: &str = "mcpgw's built-in demo server. Tools: echo, add, word_count, \
utc_now, reverse. Resources: demo://readme and demo://greeting/{name}. \
Prompt: summarize (arguments: text, optional style).";

/// Values offered when completing the `style` argument of `summarize`.
const STYLES: [&str; 3] = ["brief", "detailed", "bullet-points"];
/// Values offered when completing `name` of `demo://greeting/{name}`.
const GREETING_NAMES: [&str; 3] = ["world", "mcp", "gateway"];
// Log levels accepted by `logging/setLevel`: the gateway's own list.
use crate::mcp::version::LOG_LEVELS;

/// Serves MCP on stdin/stdout until stdin reaches EOF, then returns `Ok`.
///
/// Each input line gets at most one output line (see [`handle_line`]); blank
/// lines are skipped and lines that are not UTF-8 get a parse error. Fails only
/// when stdin cannot be read or stdout cannot be written.
pub fn run() -> anyhow::Result<()> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let stdout = io::stdout();
    let mut output = stdout.lock();
    eprintln!(
        "{SERVER_NAME} {}: serving MCP on stdio",
        env!("CARGO_PKG_VERSION")
    );
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .context("demo server: reading stdin")?;
        if n == 0 {
            break;
        }
        let response = match std::str::from_utf8(&buf) {
            Ok(line) => handle_line(line),
            Err(_) => {
                eprintln!("{SERVER_NAME}: input line is not UTF-8");
                Some(encode(&error_response(
                    Value::Null,
                    &RpcError::new(PARSE_ERROR, "Parse error: input is not UTF-8"),
                )))
            }
        };
        if let Some(line) = response {
            output
                .write_all(line.as_bytes())
                .and_then(|()| output.write_all(b"\n"))
                .and_then(|()| output.flush())
                .context("demo server: writing stdout")?;
        }
    }
    eprintln!("{SERVER_NAME}: stdin closed, exiting");
    Ok(())
}

/// Handles one line of input and returns the line to send back, if any.
///
/// The result has no trailing newline. `None` means nothing is sent: the line
/// was blank, a notification, a response from the client, or a batch made only
/// of those. Never panics; malformed input yields a JSON-RPC error response.
pub fn handle_line(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let message: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Some(encode(&error_response(
                Value::Null,
                &RpcError::new(PARSE_ERROR, format!("Parse error: {e}")),
            )))
        }
    };
    match message {
        Value::Array(items) if items.is_empty() => Some(encode(&error_response(
            Value::Null,
            &RpcError::new(INVALID_REQUEST, "Invalid Request: empty batch"),
        ))),
        Value::Array(items) => {
            let replies: Vec<Value> = items.iter().filter_map(handle_message).collect();
            if replies.is_empty() {
                None
            } else {
                Some(encode(&Value::Array(replies)))
            }
        }
        other => handle_message(&other).map(|v| encode(&v)),
    }
}

/// A JSON-RPC error: code, message and optional data.
#[derive(Debug)]
struct RpcError {
    /// JSON-RPC error code.
    code: i64,
    /// Human-readable message.
    message: String,
    /// Extra structured detail.
    data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// An invalid-params (-32602) error.
    fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
}

/// Serializes a message to one line; falls back to a fixed internal error.
fn encode(message: &Value) -> String {
    serde_json::to_string(message).unwrap_or_else(|_| {
        format!(
            r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{INTERNAL_ERROR},"message":"Internal error"}}}}"#
        )
    })
}

/// Builds an error response.
fn error_response(id: Value, error: &RpcError) -> Value {
    let mut body = json!({ "code": error.code, "message": error.message });
    if let (Some(data), Some(obj)) = (&error.data, body.as_object_mut()) {
        obj.insert("data".to_owned(), data.clone());
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": body })
}

/// Handles one message (a single object or a batch element).
fn handle_message(message: &Value) -> Option<Value> {
    let Some(obj) = message.as_object() else {
        return Some(error_response(
            Value::Null,
            &RpcError::new(
                INVALID_REQUEST,
                "Invalid Request: a message must be a JSON object",
            ),
        ));
    };
    // A response from the client (we never send requests): nothing to answer.
    if !obj.contains_key("method") && (obj.contains_key("result") || obj.contains_key("error")) {
        return None;
    }
    let id = match obj.get("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
        Some(_) => {
            return Some(error_response(
                Value::Null,
                &RpcError::new(
                    INVALID_REQUEST,
                    "Invalid Request: id must be a string or a number",
                ),
            ))
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    let invalid = |msg: &str| {
        Some(error_response(
            reply_id.clone(),
            &RpcError::new(INVALID_REQUEST, format!("Invalid Request: {msg}")),
        ))
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("jsonrpc must be \"2.0\"");
    }
    let method = match obj.get("method") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return invalid("method must be a string"),
        None => return invalid("missing method"),
    };
    let empty = Map::new();
    let params = match obj.get("params") {
        None | Some(Value::Null) => Ok(&empty),
        Some(Value::Object(p)) => Ok(p),
        Some(Value::Array(_)) => Err(RpcError::invalid_params(
            "Invalid params: MCP params must be an object",
        )),
        Some(_) => return invalid("params must be an object or an array"),
    };
    // Notifications (initialized, cancelled, ...) need no answer and change
    // nothing here: this server keeps no state.
    let id = id?;
    let outcome = params.and_then(|p| dispatch(method, p));
    Some(match outcome {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => error_response(id, &error),
    })
}

/// Runs one request method.
fn dispatch(method: &str, params: &Map<String, Value>) -> Result<Value, RpcError> {
    match method {
        "initialize" => Ok(initialize(params)),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tool_definitions() })),
        "tools/call" => call_tool(params),
        "resources/list" => Ok(list_resources()),
        "resources/templates/list" => Ok(list_resource_templates()),
        "resources/read" => read_resource(params),
        "prompts/list" => Ok(list_prompts()),
        "prompts/get" => get_prompt(params),
        "completion/complete" => complete(params),
        "logging/setLevel" => set_log_level(params),
        _ => Err(RpcError::new(METHOD_NOT_FOUND, "Method not found")),
    }
}

/// `initialize`: negotiates the revision and describes the server.
fn initialize(params: &Map<String, Value>) -> Value {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = match requested {
        Some(v) if SUPPORTED_PROTOCOL_VERSIONS.contains(&v) => v,
        _ => LATEST_PROTOCOL_VERSION,
    };
    json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": { "listChanged": false },
            "resources": { "subscribe": false, "listChanged": false },
            "prompts": { "listChanged": false },
            "completions": {}
        },
        "serverInfo": { "name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION") },
        "instructions": INSTRUCTIONS
    })
}

/// Annotations shared by all demo tools: pure, closed-world functions.
fn read_only_annotations() -> Value {
    json!({ "readOnlyHint": true, "openWorldHint": false })
}

/// A JSON Schema object with one required string property `text`.
fn text_input_schema(description: &str) -> Value {
    json!({
        "type": "object",
        "properties": { "text": { "type": "string", "description": description } },
        "required": ["text"]
    })
}

/// The `tools/list` entries.
fn tool_definitions() -> Value {
    json!([
        {
            "name": "echo",
            "title": "Echo",
            "description": "Returns the given text unchanged.",
            "inputSchema": text_input_schema("Text to echo back"),
            "annotations": read_only_annotations()
        },
        {
            "name": "add",
            "title": "Add two numbers",
            "description": "Adds a and b and returns the sum.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "a": { "type": "number", "description": "First addend" },
                    "b": { "type": "number", "description": "Second addend" }
                },
                "required": ["a", "b"]
            },
            "outputSchema": {
                "type": "object",
                "properties": { "sum": { "type": "number", "description": "a + b" } },
                "required": ["sum"]
            },
            "annotations": read_only_annotations()
        },
        {
            "name": "word_count",
            "title": "Word count",
            "description": "Counts the whitespace-separated words in a text.",
            "inputSchema": text_input_schema("Text whose words are counted"),
            "annotations": read_only_annotations()
        },
        {
            "name": "utc_now",
            "title": "Current UTC time",
            "description": "Returns the current UTC time as an RFC 3339 timestamp.",
            "inputSchema": { "type": "object", "properties": {}, "required": [] },
            "annotations": read_only_annotations()
        },
        {
            "name": "reverse",
            "title": "Reverse text",
            "description": "Returns the text with its characters in reverse order.",
            "inputSchema": text_input_schema("Text to reverse"),
            "annotations": read_only_annotations()
        }
    ])
}

/// A successful tool result with one text content block.
fn text_result(text: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": text.into() }], "isError": false })
}

/// A tool execution error, reported inside the result as MCP requires.
fn tool_error(message: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": message }], "isError": true })
}

/// `tools/call`: unknown tools are protocol errors, bad arguments are
/// tool errors (`isError: true`).
fn call_tool(params: &Map<String, Value>) -> Result<Value, RpcError> {
    let name = params.get("name").and_then(Value::as_str).ok_or_else(|| {
        RpcError::invalid_params("Invalid params: tools/call needs a string name")
    })?;
    let empty = Map::new();
    let args = match params.get("arguments") {
        None | Some(Value::Null) => Ok(&empty),
        Some(Value::Object(a)) => Ok(a),
        Some(_) => Err("Invalid arguments: arguments must be an object".to_owned()),
    };
    let outcome = match name {
        "echo" => args.and_then(tool_echo),
        "add" => args.and_then(tool_add),
        "word_count" => args.and_then(tool_word_count),
        "utc_now" => args.and_then(|_| tool_utc_now()),
        "reverse" => args.and_then(tool_reverse),
        _ => return Err(RpcError::invalid_params(format!("Unknown tool: {name}"))),
    };
    Ok(outcome.unwrap_or_else(|message| tool_error(&message)))
}

/// Reads a required string argument.
fn str_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match args.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("Invalid arguments: \"{key}\" must be a string")),
        None => Err(format!("Invalid arguments: missing required \"{key}\"")),
    }
}

/// Reads a required number argument.
fn num_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a serde_json::Number, String> {
    match args.get(key) {
        Some(Value::Number(n)) => Ok(n),
        Some(_) => Err(format!("Invalid arguments: \"{key}\" must be a number")),
        None => Err(format!("Invalid arguments: missing required \"{key}\"")),
    }
}

/// Tool `echo`.
fn tool_echo(args: &Map<String, Value>) -> Result<Value, String> {
    str_arg(args, "text").map(text_result)
}

/// Tool `add`: integer sum when both are integers and it fits, else float.
fn tool_add(args: &Map<String, Value>) -> Result<Value, String> {
    let a = num_arg(args, "a")?;
    let b = num_arg(args, "b")?;
    let int_sum = a
        .as_i64()
        .zip(b.as_i64())
        .and_then(|(x, y)| x.checked_add(y));
    let sum = match int_sum {
        Some(s) => Value::from(s),
        None => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Err("Invalid arguments: a and b must be finite numbers".to_owned());
            };
            serde_json::Number::from_f64(x + y)
                .map(Value::Number)
                .ok_or_else(|| "The sum is not a finite number".to_owned())?
        }
    };
    let structured = json!({ "sum": sum });
    // MCP: structured results should also come as serialized JSON text.
    Ok(json!({
        "content": [{ "type": "text", "text": structured.to_string() }],
        "structuredContent": structured,
        "isError": false
    }))
}

/// Tool `word_count`.
fn tool_word_count(args: &Map<String, Value>) -> Result<Value, String> {
    let n = str_arg(args, "text")?.split_whitespace().count();
    let unit = if n == 1 { "word" } else { "words" };
    Ok(text_result(format!("{n} {unit}")))
}

/// Tool `utc_now`.
fn tool_utc_now() -> Result<Value, String> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "The system clock is set before 1970".to_owned())?
        .as_secs();
    let secs = i64::try_from(secs).map_err(|_| "The system clock is out of range".to_owned())?;
    Ok(text_result(rfc3339_utc(secs)))
}

/// Tool `reverse` (by Unicode scalar values).
fn tool_reverse(args: &Map<String, Value>) -> Result<Value, String> {
    str_arg(args, "text").map(|t| text_result(t.chars().rev().collect::<String>()))
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `resources/list`.
fn list_resources() -> Value {
    json!({
        "resources": [{
            "uri": README_URI,
            "name": "readme",
            "title": "Demo server README",
            "description": "What the mcpgw demo server offers.",
            "mimeType": "text/markdown"
        }]
    })
}

/// `resources/templates/list`.
fn list_resource_templates() -> Value {
    json!({
        "resourceTemplates": [{
            "uriTemplate": GREETING_TEMPLATE,
            "name": "greeting",
            "title": "Greeting",
            "description": "A greeting for {name} (percent-encoded).",
            "mimeType": "text/plain"
        }]
    })
}

/// `resources/read`.
fn read_resource(params: &Map<String, Value>) -> Result<Value, RpcError> {
    let uri = params.get("uri").and_then(Value::as_str).ok_or_else(|| {
        RpcError::invalid_params("Invalid params: resources/read needs a string uri")
    })?;
    let (mime, text) = if uri == README_URI {
        ("text/markdown", README_TEXT.to_owned())
    } else {
        let name = uri
            .strip_prefix(GREETING_PREFIX)
            .filter(|n| !n.is_empty() && !n.contains(['/', '?', '#']))
            .and_then(percent_decode)
            .ok_or_else(|| RpcError {
                code: RESOURCE_NOT_FOUND,
                message: "Resource not found".to_owned(),
                data: Some(json!({ "uri": uri })),
            })?;
        ("text/plain", format!("Hello, {name}!"))
    };
    Ok(json!({ "contents": [{ "uri": uri, "mimeType": mime, "text": text }] }))
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the bytes are
/// not UTF-8. `+` is kept as is (this is a URI path, not a form).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of one hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `prompts/list`.
fn list_prompts() -> Value {
    json!({
        "prompts": [{
            "name": "summarize",
            "title": "Summarize text",
            "description": "Asks the model to summarize a text, optionally in a given style.",
            "arguments": [
                { "name": "text", "description": "The text to summarize", "required": true },
                {
                    "name": "style",
                    "description": "Summary style: brief, detailed or bullet-points",
                    "required": false
                }
            ]
        }]
    })
}

/// `prompts/get`.
fn get_prompt(params: &Map<String, Value>) -> Result<Value, RpcError> {
    let name = params.get("name").and_then(Value::as_str).ok_or_else(|| {
        RpcError::invalid_params("Invalid params: prompts/get needs a string name")
    })?;
    if name != "summarize" {
        return Err(RpcError::invalid_params(format!("Unknown prompt: {name}")));
    }
    let empty = Map::new();
    let args = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(a)) => a,
        Some(_) => {
            return Err(RpcError::invalid_params(
                "Invalid params: arguments must be an object",
            ))
        }
    };
    let string_arg = |key: &str| match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(RpcError::invalid_params(format!(
            "Invalid params: argument {key} must be a string"
        ))),
    };
    let text = string_arg("text")?.ok_or_else(|| {
        RpcError::invalid_params("Invalid params: missing required argument: text")
    })?;
    let instruction = match string_arg("style")? {
        Some(style) if !style.is_empty() => {
            format!("Summarize the following text (style: {style}): {text}")
        }
        _ => format!("Summarize the following text: {text}"),
    };
    Ok(json!({
        "description": "Summarize a text",
        "messages": [{ "role": "user", "content": { "type": "text", "text": instruction } }]
    }))
}

/// `completion/complete`: prefix completion for `summarize`'s `style` and the
/// greeting template's `name`; anything else completes to nothing.
fn complete(params: &Map<String, Value>) -> Result<Value, RpcError> {
    let reference = params
        .get("ref")
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid_params("Invalid params: missing ref"))?;
    let argument = params
        .get("argument")
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid_params("Invalid params: missing argument"))?;
    let arg_name = argument.get("name").and_then(Value::as_str).unwrap_or("");
    let prefix = argument
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_lowercase();
    let field = |key: &str| reference.get(key).and_then(Value::as_str);
    let candidates: &[&str] = match (field("type"), arg_name) {
        (Some("ref/prompt"), "style") if field("name") == Some("summarize") => &STYLES,
        (Some("ref/resource"), "name") if field("uri") == Some(GREETING_TEMPLATE) => {
            &GREETING_NAMES
        }
        _ => &[],
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(&prefix))
        .collect();
    Ok(json!({
        "completion": { "values": values, "total": values.len(), "hasMore": false }
    }))
}

/// `logging/setLevel`: accepts the spec's levels (this server logs nothing
/// over MCP, so the level has no further effect).
fn set_log_level(params: &Map<String, Value>) -> Result<Value, RpcError> {
    match params.get("level").and_then(Value::as_str) {
        Some(level) if LOG_LEVELS.contains(&level) => Ok(json!({})),
        Some(level) => Err(RpcError::invalid_params(format!(
            "Invalid params: unknown log level: {level}"
        ))),
        None => Err(RpcError::invalid_params(
            "Invalid params: logging/setLevel needs a string level",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one request object and parses the single response.
    fn call(request: Value) -> Value {
        let out = handle_line(&request.to_string()).expect("a response");
        serde_json::from_str(&out).expect("response is JSON")
    }

    /// Sends a request with id 1 and returns its `result`.
    fn result_of(method: &str, params: Value) -> Value {
        let resp = call(json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }));
        assert_eq!(resp["id"], json!(1), "{resp}");
        assert!(resp.get("error").is_none(), "unexpected error: {resp}");
        resp["result"].clone()
    }

    /// Sends a request with id 1 and returns its `error`.
    fn error_of(method: &str, params: Value) -> Value {
        let resp = call(json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }));
        assert_eq!(resp["id"], json!(1), "{resp}");
        assert!(resp.get("result").is_none(), "unexpected result: {resp}");
        resp["error"].clone()
    }

    /// Calls a tool and returns the result.
    fn tool(name: &str, arguments: Value) -> Value {
        result_of(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
    }

    /// The text of a tool result's first content block.
    fn first_text(result: &Value) -> &str {
        result["content"][0]["text"].as_str().expect("text content")
    }

    #[test]
    fn initialize_echoes_supported_versions() {
        for v in SUPPORTED_PROTOCOL_VERSIONS {
            let r = result_of(
                "initialize",
                json!({ "protocolVersion": v, "capabilities": {} }),
            );
            assert_eq!(r["protocolVersion"], json!(v));
        }
    }

    #[test]
    fn initialize_answers_latest_for_unknown_or_missing_version() {
        let r = result_of("initialize", json!({ "protocolVersion": "1999-01-01" }));
        assert_eq!(r["protocolVersion"], json!(LATEST_PROTOCOL_VERSION));
        let r = result_of("initialize", json!({}));
        assert_eq!(r["protocolVersion"], json!("2025-11-25"));
        let r = result_of("initialize", json!({ "protocolVersion": 7 }));
        assert_eq!(r["protocolVersion"], json!("2025-11-25"));
    }

    #[test]
    fn initialize_describes_server() {
        let r = result_of("initialize", json!({ "protocolVersion": "2025-06-18" }));
        assert_eq!(r["serverInfo"]["name"], json!("mcpgw-demo"));
        assert_eq!(r["serverInfo"]["version"], json!(env!("CARGO_PKG_VERSION")));
        assert_eq!(
            r["capabilities"],
            json!({
                "tools": { "listChanged": false },
                "resources": { "subscribe": false, "listChanged": false },
                "prompts": { "listChanged": false },
                "completions": {}
            })
        );
        assert!(r["instructions"].as_str().is_some_and(|s| !s.is_empty()));
    }

    #[test]
    fn ping_returns_empty_object() {
        assert_eq!(result_of("ping", Value::Null), json!({}));
        let resp = call(json!({ "jsonrpc": "2.0", "id": "p-1", "method": "ping" }));
        assert_eq!(resp, json!({ "jsonrpc": "2.0", "id": "p-1", "result": {} }));
    }

    #[test]
    fn notifications_and_responses_get_no_output() {
        for line in [
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#,
            r#"{"jsonrpc":"2.0","method":"no/such/notification"}"#,
            r#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":6,"error":{"code":-1,"message":"x"}}"#,
            "",
            "   ",
        ] {
            assert_eq!(handle_line(line), None, "{line}");
        }
    }

    #[test]
    fn tools_list_is_well_formed() {
        let r = result_of("tools/list", json!({}));
        let tools = r["tools"].as_array().expect("tools array");
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["echo", "add", "word_count", "utc_now", "reverse"]);
        for t in tools {
            assert!(
                t["title"].is_string() && t["description"].is_string(),
                "{t}"
            );
            let schema = &t["inputSchema"];
            assert_eq!(schema["type"], json!("object"), "{t}");
            assert!(schema["properties"].is_object() && schema["required"].is_array());
            for req in schema["required"].as_array().into_iter().flatten() {
                let key = req.as_str().expect("string");
                assert!(schema["properties"].get(key).is_some(), "{t}");
            }
            assert_eq!(t["annotations"]["readOnlyHint"], json!(true));
        }
        let add = &tools[1];
        assert_eq!(
            add["outputSchema"]["properties"]["sum"]["type"],
            json!("number")
        );
    }

    #[test]
    fn tool_echo() {
        let r = tool("echo", json!({ "text": "hi there" }));
        assert_eq!(r["isError"], json!(false));
        assert_eq!(
            r["content"],
            json!([{ "type": "text", "text": "hi there" }])
        );
    }

    #[test]
    fn tool_add_integers_and_floats() {
        let r = tool("add", json!({ "a": 2, "b": 3 }));
        assert_eq!(r["structuredContent"], json!({ "sum": 5 }));
        assert_eq!(first_text(&r), r#"{"sum":5}"#);
        let r = tool("add", json!({ "a": 1.5, "b": -0.25 }));
        assert_eq!(r["structuredContent"]["sum"], json!(1.25));
        let r = tool("add", json!({ "a": i64::MAX, "b": 1 }));
        assert_eq!(r["isError"], json!(false));
        assert!(r["structuredContent"]["sum"]
            .as_f64()
            .is_some_and(|s| s > 9e18));
        let r = tool("add", json!({ "a": 1.0e308, "b": 1.0e308 }));
        assert_eq!(r["isError"], json!(true));
    }

    #[test]
    fn tool_word_count() {
        let r = tool("word_count", json!({ "text": "  the quick\tbrown\nfox " }));
        assert_eq!(first_text(&r), "4 words");
        assert_eq!(
            first_text(&tool("word_count", json!({ "text": "" }))),
            "0 words"
        );
        assert_eq!(
            first_text(&tool("word_count", json!({ "text": "one" }))),
            "1 word"
        );
    }

    #[test]
    fn tool_reverse_by_chars() {
        let r = tool("reverse", json!({ "text": "abc€ñ" }));
        assert_eq!(first_text(&r), "ñ€cba");
    }

    #[test]
    fn tool_utc_now_is_rfc3339() {
        let r = tool("utc_now", json!({}));
        let t = first_text(&r);
        let b = t.as_bytes();
        assert_eq!(b.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
        for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
            assert_eq!(b[i], c, "{t}");
        }
        // No arguments at all is fine too.
        let r = result_of("tools/call", json!({ "name": "utc_now" }));
        assert_eq!(r["isError"], json!(false));
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn unknown_tool_is_protocol_error() {
        let e = error_of("tools/call", json!({ "name": "sha256", "arguments": {} }));
        assert_eq!(e["code"], json!(-32602));
        assert_eq!(e["message"], json!("Unknown tool: sha256"));
        let e = error_of("tools/call", json!({ "arguments": {} }));
        assert_eq!(e["code"], json!(-32602));
    }

    #[test]
    fn bad_tool_arguments_are_tool_errors() {
        for (name, args) in [
            ("echo", json!({})),
            ("echo", json!({ "text": 1 })),
            ("add", json!({ "a": 1 })),
            ("add", json!({ "a": "1", "b": 2 })),
            ("word_count", json!({ "text": null })),
            ("reverse", json!({ "txt": "x" })),
            ("echo", json!("not an object")),
            ("utc_now", json!([1])),
        ] {
            let r = tool(name, args.clone());
            assert_eq!(r["isError"], json!(true), "{name} {args}");
            assert!(!first_text(&r).is_empty());
        }
        // Missing arguments entirely.
        let r = result_of("tools/call", json!({ "name": "echo" }));
        assert_eq!(r["isError"], json!(true));
        assert!(first_text(&r).contains("text"));
    }

    #[test]
    fn resources_list_and_templates() {
        let r = result_of("resources/list", json!({}));
        assert_eq!(r["resources"][0]["uri"], json!("demo://readme"));
        assert_eq!(r["resources"][0]["name"], json!("readme"));
        assert_eq!(r["resources"][0]["mimeType"], json!("text/markdown"));
        assert_eq!(r["resources"].as_array().map(Vec::len), Some(1));
        let r = result_of("resources/templates/list", json!({}));
        let t = &r["resourceTemplates"][0];
        assert_eq!(t["uriTemplate"], json!("demo://greeting/{name}"));
        assert_eq!(t["name"], json!("greeting"));
        assert_eq!(t["mimeType"], json!("text/plain"));
    }

    #[test]
    fn resources_read_readme_and_greeting() {
        let r = result_of("resources/read", json!({ "uri": "demo://readme" }));
        let c = &r["contents"][0];
        assert_eq!(c["uri"], json!("demo://readme"));
        assert_eq!(c["mimeType"], json!("text/markdown"));
        assert!(c["text"].as_str().is_some_and(|t| t.contains("demo")));

        let r = result_of("resources/read", json!({ "uri": "demo://greeting/world" }));
        assert_eq!(r["contents"][0]["text"], json!("Hello, world!"));
        assert_eq!(r["contents"][0]["mimeType"], json!("text/plain"));
        assert_eq!(r["contents"][0]["uri"], json!("demo://greeting/world"));

        let r = result_of(
            "resources/read",
            json!({ "uri": "demo://greeting/Ada%20Lovelace%2Fx%C3%A9" }),
        );
        assert_eq!(r["contents"][0]["text"], json!("Hello, Ada Lovelace/xé!"));
    }

    #[test]
    fn resources_read_unknown_uri() {
        for uri in [
            "demo://nope",
            "demo://greeting/",
            "demo://greeting/a/b",
            "demo://greeting/%zz",
            "demo://greeting/%C3",
            "file:///etc/passwd",
        ] {
            let e = error_of("resources/read", json!({ "uri": uri }));
            assert_eq!(e["code"], json!(-32002), "{uri}");
            assert_eq!(e["message"], json!("Resource not found"));
            assert_eq!(e["data"], json!({ "uri": uri }));
        }
        let e = error_of("resources/read", json!({}));
        assert_eq!(e["code"], json!(-32602));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%e2%82%AC").as_deref(), Some("€"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%25").as_deref(), Some("%"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%g0"), None);
        assert_eq!(percent_decode("%FF"), None);
        assert_eq!(percent_decode("é%21").as_deref(), Some("é!"));
    }

    #[test]
    fn prompts_list_and_get() {
        let r = result_of("prompts/list", json!({}));
        let p = &r["prompts"][0];
        assert_eq!(p["name"], json!("summarize"));
        assert_eq!(p["arguments"][0]["name"], json!("text"));
        assert_eq!(p["arguments"][0]["required"], json!(true));
        assert_eq!(p["arguments"][1]["name"], json!("style"));
        assert_eq!(p["arguments"][1]["required"], json!(false));

        let r = result_of(
            "prompts/get",
            json!({ "name": "summarize", "arguments": { "text": "Rust is fast." } }),
        );
        assert!(r["description"].is_string());
        let m = &r["messages"][0];
        assert_eq!(m["role"], json!("user"));
        assert_eq!(m["content"]["type"], json!("text"));
        let text = m["content"]["text"].as_str().expect("text");
        assert!(text.starts_with("Summarize") && text.ends_with(": Rust is fast."));

        let r = result_of(
            "prompts/get",
            json!({ "name": "summarize", "arguments": { "text": "x", "style": "brief" } }),
        );
        let text = r["messages"][0]["content"]["text"].as_str().expect("text");
        assert!(text.contains("brief") && text.ends_with(": x"), "{text}");
    }

    #[test]
    fn prompts_get_errors() {
        let e = error_of(
            "prompts/get",
            json!({ "name": "summarize", "arguments": {} }),
        );
        assert_eq!(e["code"], json!(-32602));
        let e = error_of("prompts/get", json!({ "name": "summarize" }));
        assert_eq!(e["code"], json!(-32602));
        let e = error_of(
            "prompts/get",
            json!({ "name": "summarize", "arguments": { "text": 3 } }),
        );
        assert_eq!(e["code"], json!(-32602));
        let e = error_of("prompts/get", json!({ "name": "haiku", "arguments": {} }));
        assert_eq!(e["code"], json!(-32602));
        assert_eq!(e["message"], json!("Unknown prompt: haiku"));
        let e = error_of("prompts/get", json!({}));
        assert_eq!(e["code"], json!(-32602));
    }

    /// Completion values for a ref, argument name and prefix.
    fn completions(reference: Value, name: &str, value: &str) -> Value {
        let r = result_of(
            "completion/complete",
            json!({ "ref": reference, "argument": { "name": name, "value": value } }),
        );
        assert_eq!(r["completion"]["hasMore"], json!(false));
        assert_eq!(
            r["completion"]["total"].as_u64(),
            r["completion"]["values"].as_array().map(|v| v.len() as u64)
        );
        r["completion"]["values"].clone()
    }

    #[test]
    fn completion_complete() {
        let prompt = json!({ "type": "ref/prompt", "name": "summarize" });
        assert_eq!(
            completions(prompt.clone(), "style", ""),
            json!(["brief", "detailed", "bullet-points"])
        );
        assert_eq!(
            completions(prompt.clone(), "style", "b"),
            json!(["brief", "bullet-points"])
        );
        assert_eq!(
            completions(prompt.clone(), "style", "de"),
            json!(["detailed"])
        );
        assert_eq!(completions(prompt.clone(), "style", "z"), json!([]));
        assert_eq!(completions(prompt, "text", ""), json!([]));

        let res = json!({ "type": "ref/resource", "uri": "demo://greeting/{name}" });
        assert_eq!(completions(res.clone(), "name", "g"), json!(["gateway"]));
        assert_eq!(
            completions(res, "name", ""),
            json!(["world", "mcp", "gateway"])
        );

        let other = json!({ "type": "ref/prompt", "name": "haiku" });
        assert_eq!(completions(other, "style", ""), json!([]));
        let other = json!({ "type": "ref/resource", "uri": "demo://readme" });
        assert_eq!(completions(other, "name", ""), json!([]));

        let e = error_of("completion/complete", json!({}));
        assert_eq!(e["code"], json!(-32602));
    }

    #[test]
    fn logging_set_level() {
        for level in LOG_LEVELS {
            assert_eq!(
                result_of("logging/setLevel", json!({ "level": level })),
                json!({})
            );
        }
        let e = error_of("logging/setLevel", json!({ "level": "verbose" }));
        assert_eq!(e["code"], json!(-32602));
        let e = error_of("logging/setLevel", json!({}));
        assert_eq!(e["code"], json!(-32602));
    }

    #[test]
    fn unknown_method() {
        let e = error_of("tools/destroy", json!({}));
        assert_eq!(e, json!({ "code": -32601, "message": "Method not found" }));
    }

    #[test]
    fn invalid_json_is_parse_error_with_null_id() {
        for line in ["{", "{\"jsonrpc\":\"2.0\",\"id\":1,", "nope", "[1,2"] {
            let resp: Value =
                serde_json::from_str(&handle_line(line).expect("response")).expect("json");
            assert_eq!(resp["jsonrpc"], json!("2.0"));
            assert_eq!(resp["id"], Value::Null);
            assert_eq!(resp["error"]["code"], json!(-32700), "{line}");
        }
    }

    #[test]
    fn invalid_requests() {
        // (request, expected id)
        for (req, id) in [
            (json!({ "id": 1, "method": "ping" }), json!(1)),
            (
                json!({ "jsonrpc": "1.0", "id": "a", "method": "ping" }),
                json!("a"),
            ),
            (
                json!({ "jsonrpc": 2.0, "id": 2, "method": "ping" }),
                json!(2),
            ),
            (json!({ "jsonrpc": "2.0", "id": 3, "method": 5 }), json!(3)),
            (json!({ "jsonrpc": "2.0", "id": 4 }), json!(4)),
            (
                json!({ "jsonrpc": "2.0", "id": 5, "method": "ping", "params": 1 }),
                json!(5),
            ),
            (
                json!({ "jsonrpc": "2.0", "id": true, "method": "ping" }),
                Value::Null,
            ),
            (
                json!({ "jsonrpc": "2.0", "id": null, "method": "ping" }),
                Value::Null,
            ),
            (
                json!({ "jsonrpc": "2.0", "id": [1], "method": "ping" }),
                Value::Null,
            ),
            (
                json!({ "jsonrpc": "2.0", "id": {}, "method": "ping" }),
                Value::Null,
            ),
            (
                json!({ "method": "notifications/initialized" }),
                Value::Null,
            ),
            (json!(42), Value::Null),
            (json!("ping"), Value::Null),
            (json!(null), Value::Null),
        ] {
            let resp = call(req.clone());
            assert_eq!(resp["jsonrpc"], json!("2.0"));
            assert_eq!(resp["id"], id, "{req}");
            assert_eq!(resp["error"]["code"], json!(-32600), "{req}");
        }
    }

    #[test]
    fn array_params_are_invalid_params() {
        let resp = call(json!({ "jsonrpc": "2.0", "id": 9, "method": "ping", "params": [] }));
        assert_eq!(resp["error"]["code"], json!(-32602));
    }

    #[test]
    fn batches() {
        let out = handle_line(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
                {"jsonrpc":"2.0","method":"notifications/initialized"},
                {"jsonrpc":"2.0","id":"two","method":"nope"},
                {"jsonrpc":"2.0","id":3,"result":{}},
                7,
                {"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"b"}}}]"#,
        )
        .expect("batch response");
        let v: Value = serde_json::from_str(&out).expect("json");
        let items = v.as_array().expect("array");
        assert_eq!(items.len(), 4);
        assert_eq!(items[0], json!({ "jsonrpc": "2.0", "id": 1, "result": {} }));
        assert_eq!(items[1]["id"], json!("two"));
        assert_eq!(items[1]["error"]["code"], json!(-32601));
        assert_eq!(items[2]["id"], Value::Null);
        assert_eq!(items[2]["error"]["code"], json!(-32600));
        assert_eq!(items[3]["id"], json!(4));
        assert_eq!(items[3]["result"]["content"][0]["text"], json!("b"));

        // Only notifications: nothing at all.
        let only = r#"[{"jsonrpc":"2.0","method":"notifications/initialized"},
                       {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]"#;
        assert_eq!(handle_line(only), None);

        // Empty batch: one (non-array) invalid-request error.
        let v: Value = serde_json::from_str(&handle_line("[]").expect("response")).expect("json");
        assert_eq!(v["error"]["code"], json!(-32600));
        assert_eq!(v["id"], Value::Null);

        // Nested batch elements are invalid requests.
        let v: Value = serde_json::from_str(&handle_line("[[]]").expect("response")).expect("json");
        assert_eq!(v[0]["error"]["code"], json!(-32600));
    }

    #[test]
    fn output_is_single_line() {
        let out = handle_line(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://readme"}}"#)
            .expect("response");
        assert!(!out.contains('\n'));
    }

    #[test]
    fn full_session_transcript() {
        // (input line, expected id of the response; None = no output)
        let transcript: Vec<(String, Option<Value>)> = vec![
            (
                json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": { "name": "test", "version": "0" }
                }})
                .to_string(),
                Some(json!(0)),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned(),
                Some(json!(1)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"c-2","method":"tools/call","params":{"name":"add","arguments":{"a":40,"b":2}}}"#.to_owned(),
                Some(json!("c-2")),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"reverse","arguments":{"text":"gateway"}}}"#.to_owned(),
                Some(json!(3)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"resources/list","params":{}}"#.to_owned(),
                Some(json!(4)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"demo://greeting/mcp"}}"#.to_owned(),
                Some(json!(5)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":6,"method":"prompts/list"}"#.to_owned(),
                Some(json!(6)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"prompts/get","params":{"name":"summarize","arguments":{"text":"hello"}}}"#.to_owned(),
                Some(json!(7)),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}"#.to_owned(),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":8,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"summarize"},"argument":{"name":"style","value":"d"}}}"#.to_owned(),
                Some(json!(8)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#.to_owned(),
                Some(json!(9)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":10,"method":"logging/setLevel","params":{"level":"info"}}"#.to_owned(),
                Some(json!(10)),
            ),
        ];
        for (line, expected_id) in transcript {
            let out = handle_line(&line);
            let Some(expected_id) = expected_id else {
                assert_eq!(out, None, "{line}");
                continue;
            };
            let out = out.expect("a response");
            assert!(!out.contains('\n'));
            let resp: Value = serde_json::from_str(&out).expect("response is JSON");
            let obj = resp.as_object().expect("response is an object");
            assert_eq!(obj.get("jsonrpc"), Some(&json!("2.0")), "{out}");
            assert_eq!(obj.get("id"), Some(&expected_id), "{out}");
            assert!(obj.contains_key("result"), "{out}");
            assert!(!obj.contains_key("error"), "{out}");
            assert!(!obj.contains_key("method"), "{out}");
        }
    }
}
