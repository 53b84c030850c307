//! What the gateway decides on is what the upstream acts on (issue 18, point 1): a member
//! the gateway reads (a tool's name, a resource's URI, `_meta` members, `ref`) given twice,
//! or spelled with escapes it does not need, is refused before anything is authorized,
//! routed, limited or audited, on the legacy and the 2026-07-28 path alike. Also the
//! nesting limit (`max_json_depth`).

use serde_json::{json, Value};

use crate::{
    auth::new_key,
    support::{post, Gateway, Raw, Resp, TempDir},
};

const DEMO: &str = "[[upstream]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = \"@self\"\nargs = [\"demo-server\"]\n";

const READER: &str = r#"
[[role]]
name = "reader"
tools = ["demo__echo"]
prompts = []
resources = ["mcpgw://demo/demo://readme"]
"#;

fn send(c: &mut Raw, body: &str, headers: &[&str]) -> Resp {
    c.send(&post(body, headers));
    c.read().expect("answer")
}

fn init(c: &mut Raw, auth: &str) -> String {
    let r = send(
        c,
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
        &[auth],
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.header("mcp-session-id").expect("session").to_string()
}

fn refused(r: &Resp, member: &str) {
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 400, "{body}");
    assert_eq!(r.code(), -32600, "{body}");
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains(member), "{member} not named: {msg}");
}

/// A key whose role allows only `demo__echo` cannot run `demo__add` by naming it twice (the
/// upstream's parser takes the last), nor with an escaped second key; two `uri` members and
/// two `_meta.progressToken`s are refused too; the audit log records no call; the
/// connection stays usable.
#[test]
fn duplicate_and_escaped_members_are_refused() {
    let (key, entry) = new_key("reader-1", &["reader"]);
    let dir = TempDir::new("smuggle");
    let audit = dir.0.join("audit.jsonl");
    let gw = Gateway::start(
        "",
        &format!(
            "{DEMO}\n[audit]\npath = {:?}\n\n[auth]\n{entry}\n{READER}",
            audit.display().to_string()
        ),
        "auto",
    );
    let auth = format!("Authorization: Bearer {key}");
    let mut c = Raw::connect(gw.addr);
    let sid = init(&mut c, &auth);
    let s = format!("Mcp-Session-Id: {sid}");
    let h = [auth.as_str(), s.as_str()];

    // The role holds: add alone is refused by name.
    let r = send(
        &mut c,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"demo__add","arguments":{"a":1,"b":2}}}"#,
        &h,
    );
    assert!(r.json()["error"].is_object(), "{:?}", r.json());

    let smuggles = [
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__echo","name":"demo__add","arguments":{"a":1,"b":2}}}"#,
            "\"name\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"demo__echo","arguments":{"a":1,"b":2},"name":"demo__add"}}"#,
            "\"name\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"demo__echo","n\u0061me":"demo__add","arguments":{"a":1,"b":2}}}"#,
            "escaped member name",
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"mcpgw://demo/demo://readme","uri":"mcpgw://demo/demo://secret"}}"#,
            "\"uri\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"demo__echo","arguments":{"text":"x"},"_meta":{"progressToken":"a","progressToken":"b"}}}"#,
            "\"progressToken\"",
        ),
    ];
    for (body, member) in smuggles {
        let r = send(&mut c, body, &h);
        refused(&r, member);
        // The refusal carries the request's id.
        assert!(r.json()["id"].is_number(), "{:?}", r.json());
    }

    // The same connection and session still serve a good call.
    let r = send(
        &mut c,
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"demo__echo","arguments":{"text":"still here"}}}"#,
        &h,
    );
    let text = r.json()["result"]["content"][0]["text"].to_string();
    assert!(text.contains("still here"), "{:?}", r.json());

    // Only the good call reached the upstream, and only it is in the audit log.
    let found = crate::support::wait_for(5, || {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("demo__echo"))
    });
    assert!(found, "the good call is audited");
    let log = std::fs::read_to_string(&audit).unwrap_or_default();
    assert!(!log.contains("demo__add\",\"outcome\":\"ok"), "{log}");
    let calls: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e.to_string().contains("tools/call") || e.get("tool").is_some())
        .collect();
    assert!(
        calls
            .iter()
            .all(|e| !e.to_string().contains("\"ok\"") || e.to_string().contains("demo__echo")),
        "{log}"
    );
}

/// The 2026-07-28 path: `Mcp-Name` matching the first of two names does not carry the call.
#[test]
fn stateless_duplicate_name_is_refused() {
    let gw = Gateway::start("", DEMO, "auto");
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    });
    let headers = [
        "MCP-Protocol-Version: 2026-07-28",
        "Mcp-Method: tools/call",
        "Mcp-Name: demo__echo",
    ];
    let mut c = Raw::connect(gw.addr);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"demo__echo","arguments":{{"text":"x"}},"_meta":{meta},"name":"demo__reverse"}}}}"#
    );
    let r = send(&mut c, &body, &headers);
    refused(&r, "\"name\"");
    // Two protocol versions in `_meta` are refused as well.
    let body = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__echo","arguments":{"text":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#;
    let r = send(&mut c, body, &headers);
    refused(&r, "protocolVersion");
    // A well-formed call still works on the same connection.
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "demo__echo", "arguments": {"text": "fine"}, "_meta": meta}})
    .to_string();
    let r = send(&mut c, &body, &headers);
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 200, "{text}");
    assert!(text.contains("fine"), "{text}");
}

/// Nesting past `max_json_depth` (default 64) is -32600 at the gateway, with the request's
/// id, and the connection stays usable; a larger setting lets the same call through.
#[test]
fn nesting_is_limited_at_the_gateway() {
    let nested = |id: u32, n: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"demo__echo","arguments":{{"text":"deep","x":{}1{}}}}}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    for (gateway, deep_ok) in [("", false), ("max_json_depth = 200\n", true)] {
        let gw = Gateway::start(gateway, DEMO, "auto");
        let mut c = Raw::connect(gw.addr);
        let sid = {
            let r = send(
                &mut c,
                r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
                &[],
            );
            r.header("mcp-session-id").expect("session").to_string()
        };
        let s = format!("Mcp-Session-Id: {sid}");
        // 3 levels of envelope, params and arguments, then 61 arrays: 64 in all.
        let r = send(&mut c, &nested(1, 61), &[&s]);
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert!(r.json()["result"].is_object(), "{:?}", r.json());
        let r = send(&mut c, &nested(2, 120), &[&s]);
        if deep_ok {
            assert!(r.json()["result"].is_object(), "{:?}", r.json());
        } else {
            refused(&r, "nested too deeply");
            assert_eq!(r.json()["id"], 2);
        }
        // In a batch (2025-03-26), the deep element alone is refused.
        let batch = format!(
            "[{},{}]",
            nested(3, 120),
            r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#
        );
        let r = send(&mut c, &batch, &[&s]);
        let answers = r.json();
        let arr = answers.as_array().expect("batch answer");
        assert_eq!(arr.len(), 2, "{answers}");
        assert_eq!(arr[0]["error"].is_object(), !deep_ok, "{answers}");
        assert!(arr[1]["result"].is_object(), "{answers}");
    }
    // Out of range is a config error.
    let dir = TempDir::new("depth");
    let cfg = dir.0.join("c.toml");
    std::fs::write(&cfg, "[gateway]\nmax_json_depth = 5000\n").expect("write");
    let out = crate::support::mcpgw_check(&cfg);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_json_depth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Refusals read plainly: a missing credential is "Unauthorized: credentials required"
/// (it said "Unauthorized" twice), and a tool name that is not a string is invalid params
/// (-32602), with roles or without (it was -32013 with roles).
#[test]
fn refusals_read_plainly() {
    let (key, entry) = new_key("reader-2", &["reader"]);
    let gw = Gateway::start("", &format!("{DEMO}\n[auth]\n{entry}\n{READER}"), "auto");
    let mut c = Raw::connect(gw.addr);
    let r = send(
        &mut c,
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
        &[],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error"]["message"],
        "Unauthorized: credentials required"
    );
    let auth = format!("Authorization: Bearer {key}");
    let mut c = Raw::connect(gw.addr);
    let sid = init(&mut c, &auth);
    let s = format!("Mcp-Session-Id: {sid}");
    for name in ["7", "null", "{\"a\":1}", "[\"demo__echo\"]"] {
        let r = send(
            &mut c,
            &format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{name},"arguments":{{}}}}}}"#
            ),
            &[&auth, &s],
        );
        assert_eq!(r.code(), -32602, "{name}: {:?}", r.json());
    }
}

/// An upstream's error answer with `id: null` (it could not read the request: the demo
/// child's JSON parser stops near 128 levels) fails the one call in flight at once, with
/// the upstream's error; it waited for the call timeout before.
#[test]
fn null_id_error_fails_the_sole_call_at_once() {
    let gw = Gateway::start(
        "max_json_depth = 400\ncall_timeout_ms = 60000\n",
        DEMO,
        "auto",
    );
    let mut c = Raw::connect(gw.addr);
    let r = send(
        &mut c,
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
        &[],
    );
    let s = format!(
        "Mcp-Session-Id: {}",
        r.header("mcp-session-id").expect("session")
    );
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"demo__echo","arguments":{{"text":"x","deep":{}1{}}}}}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    let started = std::time::Instant::now();
    let r = send(&mut c, &body, &[&s]);
    let v = r.json();
    assert_eq!(v["id"], 5, "{v}");
    assert_eq!(v["error"]["code"], -32700, "the child's parse error: {v}");
    // Reported, not asserted as a bound: well under the 60 s call timeout.
    eprintln!("null-id error answered in {:?}", started.elapsed());
}
