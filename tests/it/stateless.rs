//! MCP 2026-07-28 clients (stateless: no `initialize`, no session) through the gateway to
//! legacy upstreams: the official Python SDK client in `mode="auto"` (it probes
//! `server/discover` before `initialize`), and raw HTTP for the checks of `_meta` and the
//! routing headers.

use serde_json::{json, Value};

use crate::support::{
    client, client_opts, http_upstream_toml, stdio_fixture_toml, strings, Gateway, HttpFixture, Raw,
};

/// The same gateway, the same upstreams (a stdio child and an HTTP server, both spoken to in
/// the legacy era): a 2026-07-28 client sees what a legacy client sees and its calls work.
#[test]
fn sdk_client_in_auto_mode_is_served_statelessly() {
    let alpha = HttpFixture::start("alpha");
    let upstreams = format!(
        "{}\n{}",
        // The legacy era (the SDK server speaks both, and `auto` would serve a 2026-07-28
        // client in that era): this test is about calls to legacy upstreams.
        http_upstream_toml("alpha", &alpha.url(), "era = \"legacy\""),
        stdio_fixture_toml("beta", "")
    );
    let audit = std::env::temp_dir().join(format!(
        "mcpgw-stateless-audit-{}-{}.jsonl",
        std::process::id(),
        alpha.port
    ));
    let _ = std::fs::remove_file(&audit);
    let gw = Gateway::start(
        &format!("[audit]\npath = {:?}\n", audit.display().to_string()),
        &upstreams,
        "auto",
    );
    let modern = client_opts(&["--mode", "auto"], &gw.url(), "tour", &[]);
    let legacy = client(&gw.url(), "tour", &[]);
    assert_eq!(modern["protocol_version"], "2026-07-28", "{modern}");
    assert_eq!(legacy["protocol_version"], "2025-11-25", "{legacy}");
    for list in ["tools", "prompts", "resources", "resource_templates"] {
        assert_eq!(strings(&modern[list]), strings(&legacy[list]), "{list}");
    }
    assert!(strings(&modern["tools"]).contains(&"beta__echo".to_string()));

    let out = client_opts(
        &["--mode", "auto"],
        &gw.url(),
        "script",
        &[&json!([
            ["call", "alpha__echo", {"text": "hi"}],
            ["call", "beta__add", {"a": 2, "b": 40}],
            ["call", "beta__fail", {}],
            ["call", "gamma__echo", {"text": "x"}],
            ["call_progress", "alpha__progress", {"steps": 3}],
            ["read", "mcpgw://beta/fixture://beta/item/42"],
            ["read", "mcpgw://nosuch/fixture://x"],
            ["prompt", "beta__greet", {"who": "ann"}],
            ["complete_prompt", "alpha__greet", "who", "al"],
            ["call", "beta__ask_llm", {"prompt": "hello"}],
            ["many", "20", "alpha__echo"],
            ["call", "alpha__ask_user", {"question": "q?"}],
            ["call", "beta__list_roots", {}],
        ])
        .to_string()],
    );
    let steps = &out["steps"];
    assert_eq!(steps[0]["text"][0], "alpha:hi", "{}", steps[0]);
    assert_eq!(steps[1]["structured"]["result"], 42, "{}", steps[1]);
    assert_eq!(steps[2]["is_error"], true, "{}", steps[2]);
    assert_eq!(steps[3]["error"]["code"], -32602, "{}", steps[3]);
    assert_eq!(
        steps[4]["progress"].as_array().map(Vec::len),
        Some(3),
        "{}",
        steps[4]
    );
    assert_eq!(steps[5]["contents"][0]["text"], "item 42 from beta");
    // 2026-07-28: an unknown resource is invalid params, naming the URI.
    assert_eq!(steps[6]["error"]["code"], -32602, "{}", steps[6]);
    assert_eq!(
        steps[6]["error"]["data"]["uri"], "mcpgw://nosuch/fixture://x",
        "{}",
        steps[6]
    );
    assert_eq!(steps[7]["messages"][0]["text"], "Hello ann from beta");
    assert_eq!(steps[8]["values"], json!(["alice", "albert", "alpha"]));
    // The legacy upstreams ask the client mid-call (sampling, elicitation, roots): the call
    // is parked, the client gets an input-required result, answers, retries with the
    // gateway's requestState, and the parked call goes on with the answer.
    assert_eq!(
        steps[9]["text"][0], "llm said: sampled:hello",
        "{}",
        steps[9]
    );
    assert_eq!(steps[10]["ok"], 20, "{}", steps[10]);
    assert_eq!(steps[11]["text"][0], "user said: 42", "{}", steps[11]);
    assert_eq!(
        steps[12]["text"][0], "file:///tmp/root-a,file:///tmp/root-b",
        "{}",
        steps[12]
    );
    let log = gw.log_text();
    assert_eq!(
        log.matches("session created").count(),
        1,
        "only the legacy client opened a session:\n{log}"
    );
    // Audited like any call, with no session.
    let audited = crate::support::wait_for(10, || {
        std::fs::read_to_string(&audit).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains(r#""session":"-""#) && l.contains(r#""target":"alpha__echo""#))
        })
    });
    assert!(
        audited,
        "{}",
        std::fs::read_to_string(&audit).unwrap_or_default()
    );
    let _ = std::fs::remove_file(&audit);
}

/// Screening holds for 2026-07-28 clients as for legacy ones: a masked result keeps the
/// members such a client expects, and a call parked on a legacy upstream's sampling request
/// is screened when it ends (the client's own answer comes back in the tool's result).
#[test]
fn stateless_calls_are_screened_like_legacy_ones() {
    let guard = "[[guard.screen]]\nupstreams = [\"beta\"]\narguments = false\npii = \"mask\"\n";
    let gw = Gateway::start(guard, &stdio_fixture_toml("beta", ""), "epoll");
    let card = "card 4111 1111 1111 1111";
    let out = client_opts(
        &["--mode", "auto"],
        &gw.url(),
        "script",
        &[&json!([
            ["call", "beta__echo", {"text": card}],
            ["call", "beta__ask_llm", {"prompt": card}],
            ["call", "beta__echo", {"text": "no card 4111 1111 1111 1112"}],
        ])
        .to_string()],
    );
    let steps = &out["steps"];
    assert_eq!(
        steps[0]["text"][0], "beta:card [REDACTED:card]",
        "{}",
        steps[0]
    );
    assert_eq!(
        steps[1]["text"][0], "llm said: sampled:card [REDACTED:card]",
        "{}",
        steps[1]
    );
    assert_eq!(
        steps[2]["text"][0], "beta:no card 4111 1111 1111 1112",
        "{}",
        steps[2]
    );
    // A screened tool's log messages are screened like its result.
    let out = client_opts(
        &["--mode", "legacy"],
        &gw.url(),
        "script",
        &[&json!([
            ["call", "beta__log", {"message": card, "level": "warning"}],
            ["notifications", "0.5"],
        ])
        .to_string()],
    );
    let logs = out["steps"][1]["logs"].to_string();
    assert!(logs.contains("[REDACTED:card]"), "{out}");
    assert!(!logs.contains("4111 1111 1111 1111"), "{out}");
    // On the wire: masked, and still a 2026-07-28 result.
    let mut c = Raw::connect(gw.addr);
    c.send(&stateless(
        7,
        "tools/call",
        json!({"name": "beta__echo", "arguments": {"text": card}, "_meta": meta("2026-07-28")}),
        &[
            "MCP-Protocol-Version: 2026-07-28",
            "Mcp-Method: tools/call",
            "Mcp-Name: beta__echo",
        ],
    ));
    let r = c.read().expect("answer");
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 200, "{body}");
    assert!(body.contains(r#""resultType":"complete""#), "{body}");
    assert!(body.contains("[REDACTED:card]"), "{body}");
    assert!(!body.contains(card), "{body}");
}

/// The JSON of every `data:` line in raw (chunked) SSE bytes.
fn sse_data(raw: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(raw)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// `subscriptions/listen`: the stream opens with the acknowledgement of what the gateway
/// honors, carries the list changes asked for (each tagged with the listen request's id) and
/// nothing else, and ends with the request's result when the gateway drains.
#[test]
fn listen_streams_get_the_list_changes_they_ask_for() {
    let admin_port = crate::support::free_port();
    let adm: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let mut gw = Gateway::start(
        "",
        &format!(
            "[admin]\nlisten = \"{adm}\"\ntoken = \"tk\"\ndata_dir = \":memory:\"\n\n{}",
            stdio_fixture_toml("beta", "")
        ),
        "epoll",
    );
    let v = "MCP-Protocol-Version: 2026-07-28";
    let listen = |id: &str, notifications: Value| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen",
            "params": {"_meta": meta("2026-07-28"), "notifications": notifications}});
        crate::support::post(&body.to_string(), &[v, "Mcp-Method: subscriptions/listen"])
    };
    // Discover says the lists can change.
    let mut c = Raw::connect(gw.addr);
    c.send(&stateless(
        1,
        "server/discover",
        json!({"_meta": meta("2026-07-28")}),
        &[v, "Mcp-Method: server/discover"],
    ));
    let caps = c.read().expect("discover").json()["result"]["capabilities"].clone();
    assert_eq!(caps["tools"]["listChanged"], true, "{caps}");
    assert_eq!(caps["prompts"]["listChanged"], true, "{caps}");
    assert_eq!(caps["resources"]["subscribe"], true, "{caps}");

    let mut tools = Raw::connect(gw.addr);
    let counter = "mcpgw://beta/fixture://beta/counter";
    tools.send(&listen(
        "t-1",
        json!({"toolsListChanged": true, "resourceSubscriptions":
            [counter, "mcpgw://beta/fixture://beta/nope", "mcpgw://nosuch/y", counter]}),
    ));
    let first = tools.read_until(b"acknowledged");
    let head = String::from_utf8_lossy(&first).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let ack = &sse_data(&first)[0];
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    // Honored: tools, and the resource the upstream agreed to, once (it refuses an unknown
    // one; the other routes nowhere).
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true, "resourceSubscriptions": [counter]}),
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "t-1"
    );

    let mut prompts = Raw::connect(gw.addr);
    prompts.send(&listen("p-1", json!({"promptsListChanged": true})));
    let ack = sse_data(&prompts.read_until(b"acknowledged"))[0].clone();
    assert_eq!(
        crate::support::scrape(adm, "tk", "mcpgw_listen_streams"),
        2.0
    );
    assert_eq!(
        ack["params"]["notifications"],
        json!({"promptsListChanged": true}),
        "{ack}"
    );

    // The upstream adds a tool (and says so): the tools listener hears of it.
    c.send(&stateless(
        2,
        "tools/call",
        json!({"name": "beta__add_tool", "arguments": {"name": "fresh"}, "_meta": meta("2026-07-28")}),
        &[v, "Mcp-Method: tools/call", "Mcp-Name: beta__add_tool"],
    ));
    assert_eq!(c.read().expect("call").status, 200);
    let got = tools.read_until(b"tools/list_changed");
    let change = sse_data(&got)
        .into_iter()
        .find(|m| m["method"] == "notifications/tools/list_changed")
        .unwrap_or_else(|| panic!("no list change: {}", String::from_utf8_lossy(&got)));
    assert_eq!(
        change["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "t-1",
        "{change}"
    );

    // The resource changes: the subscribed listener hears of it, by the URI it used.
    c.send(&stateless(
        3,
        "tools/call",
        json!({"name": "beta__bump", "arguments": {}, "_meta": meta("2026-07-28")}),
        &[v, "Mcp-Method: tools/call", "Mcp-Name: beta__bump"],
    ));
    assert_eq!(c.read().expect("call").status, 200);
    let got = tools.read_until(b"resources/updated");
    let update = sse_data(&got)
        .into_iter()
        .find(|m| m["method"] == "notifications/resources/updated")
        .unwrap_or_else(|| panic!("no update: {}", String::from_utf8_lossy(&got)));
    assert_eq!(update["params"]["uri"], counter, "{update}");
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "t-1",
        "{update}"
    );

    // Bad requests: no filter; JSON only.
    let mut bad = Raw::connect(gw.addr);
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen",
        "params": {"_meta": meta("2026-07-28")}});
    bad.send(&crate::support::post(
        &body.to_string(),
        &[v, "Mcp-Method: subscriptions/listen"],
    ));
    let r = bad.read().expect("answer");
    assert_eq!((r.status, r.code()), (400, -32602), "{:?}", r.json());
    let body = json!({"jsonrpc": "2.0", "id": 10, "method": "subscriptions/listen",
        "params": {"_meta": meta("2026-07-28"), "notifications": {}}})
    .to_string();
    bad.send(
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json\r\n{v}\r\nMcp-Method: subscriptions/listen\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = bad.read().expect("answer");
    assert_eq!(r.status, 406, "{:?}", r.json());

    // Drain: each stream ends with the listen request's result; the prompts listener got
    // nothing it did not ask for.
    gw.stop();
    let rest = prompts.read_until(b"\r\n0\r\n\r\n");
    let msgs = sse_data(&rest);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["id"], "p-1", "{msgs:?}");
    assert_eq!(msgs[0]["result"]["resultType"], "complete");
    assert_eq!(
        msgs[0]["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "p-1"
    );
    let rest = tools.read_until(b"\r\n0\r\n\r\n");
    assert!(
        sse_data(&rest)
            .iter()
            .any(|m| m["id"] == "t-1" && m.get("result").is_some()),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}

/// 2026-07-28 log levels are per request: log messages of the call reach the client at or
/// above the `_meta` level it set, and none without one.
#[test]
fn stateless_calls_get_log_messages_at_their_own_level() {
    let gw = Gateway::start("", &stdio_fixture_toml("beta", ""), "epoll");
    let v = "MCP-Protocol-Version: 2026-07-28";
    let call = |id: u32, level: Option<&str>, msg_level: &str| {
        let mut m = meta("2026-07-28");
        if let Some(l) = level {
            m["io.modelcontextprotocol/logLevel"] = json!(l);
        }
        let mut c = Raw::connect(gw.addr);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "beta__log", "arguments": {"message": format!("note {id}"), "level": msg_level},
            "_meta": m}})
        .to_string();
        c.send(
            format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n{v}\r\nMcp-Method: tools/call\r\nMcp-Name: beta__log\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        // Until the result's event is whole (streamed, or one SSE body: either way it ends
        // with a blank line).
        let mut raw = c.read_until(b"resultType");
        while !String::from_utf8_lossy(&raw)
            .rsplit("resultType")
            .next()
            .is_some_and(|t| t.contains("\n\n"))
        {
            let more = c.read_until(b"\n\n");
            assert!(!more.is_empty(), "{}", String::from_utf8_lossy(&raw));
            raw.extend(more);
        }
        let msgs = sse_data(&raw);
        assert!(
            msgs.iter()
                .any(|m| m["id"] == id && m["result"]["resultType"] == "complete"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
        msgs.iter()
            .filter(|m| m["method"] == "notifications/message")
            .map(|m| m["params"]["data"].to_string())
            .collect::<Vec<_>>()
    };
    let got = call(1, Some("info"), "warning");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("note 1"), "{got:?}");
    assert!(call(2, Some("error"), "warning").is_empty());
    assert!(call(3, None, "warning").is_empty());
}

/// A 2026-07-28 request for `method` with `meta` as its `_meta`, and `headers`.
fn stateless(id: u32, method: &str, params: Value, headers: &[&str]) -> Vec<u8> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    crate::support::post(&body.to_string(), headers)
}

fn meta(version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    })
}

/// Every refusal is an HTTP status and a JSON-RPC error with the request's id, decided
/// before anything is routed; the connection stays usable; no answer names a session.
#[test]
fn stateless_requests_are_checked_before_they_are_routed() {
    let gw = Gateway::start("", &stdio_fixture_toml("beta", ""), "epoll");
    let mut c = Raw::connect(gw.addr);
    let v = "MCP-Protocol-Version: 2026-07-28";
    let call =
        |name: &str| json!({"name": name, "arguments": {"text": "x"}, "_meta": meta("2026-07-28")});
    let name_b64 = format!("Mcp-Name: =?base64?{}?=", base64_of("beta__echo"));
    let cases: Vec<(Vec<u8>, u16, Option<i64>, &str)> = vec![
        // A well-formed call, and the same with its name base64-encoded in the header.
        (
            stateless(
                1,
                "tools/call",
                call("beta__echo"),
                &[v, "Mcp-Method: tools/call", "Mcp-Name: beta__echo"],
            ),
            200,
            None,
            "beta:x",
        ),
        (
            stateless(
                2,
                "tools/call",
                call("beta__echo"),
                &[v, "Mcp-Method: tools/call", &name_b64],
            ),
            200,
            None,
            "beta:x",
        ),
        // No _meta; _meta without capabilities.
        (
            stateless(3, "tools/list", json!({}), &[v, "Mcp-Method: tools/list"]),
            400,
            Some(-32602),
            "_meta",
        ),
        (
            stateless(
                4,
                "tools/list",
                json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
                &[v, "Mcp-Method: tools/list"],
            ),
            400,
            Some(-32602),
            "clientCapabilities",
        ),
        // Headers unlike the body, missing, or repeated.
        (
            stateless(
                5,
                "tools/call",
                call("beta__echo"),
                &[v, "Mcp-Method: tools/list", "Mcp-Name: beta__echo"],
            ),
            400,
            Some(-32020),
            "Mcp-Method",
        ),
        (
            stateless(
                6,
                "tools/call",
                call("beta__echo"),
                &[v, "Mcp-Method: tools/call", "Mcp-Name: beta__add"],
            ),
            400,
            Some(-32020),
            "Mcp-Name",
        ),
        (
            stateless(
                7,
                "tools/call",
                call("beta__echo"),
                &[v, "Mcp-Method: tools/call"],
            ),
            400,
            Some(-32020),
            "Mcp-Name is required",
        ),
        (
            stateless(8, "tools/list", json!({"_meta": meta("2026-07-28")}), &[v]),
            400,
            Some(-32020),
            "Mcp-Method is required",
        ),
        (
            stateless(
                9,
                "tools/list",
                json!({"_meta": meta("2026-07-28")}),
                &[v, "Mcp-Method: tools/list", "Mcp-Method: tools/list"],
            ),
            400,
            Some(-32020),
            "twice",
        ),
        (
            stateless(
                10,
                "tools/list",
                json!({"_meta": meta("2026-07-29")}),
                &[v, "Mcp-Method: tools/list"],
            ),
            400,
            Some(-32020),
            "MCP-Protocol-Version",
        ),
        // A version the gateway does not speak, in header and body.
        (
            stateless(
                11,
                "server/discover",
                json!({"_meta": meta("v999.0.0")}),
                &[
                    "MCP-Protocol-Version: v999.0.0",
                    "Mcp-Method: server/discover",
                ],
            ),
            400,
            Some(-32022),
            "Unsupported protocol version",
        ),
        // Methods the revision removed, and unknown ones.
        (
            stateless(
                12,
                "ping",
                json!({"_meta": meta("2026-07-28")}),
                &[v, "Mcp-Method: ping"],
            ),
            404,
            Some(-32601),
            "Method not found",
        ),
        (
            stateless(
                13,
                "initialize",
                json!({"_meta": meta("2026-07-28")}),
                &[v, "Mcp-Method: initialize"],
            ),
            404,
            Some(-32601),
            "Method not found",
        ),
        // Unknown tool: invalid params (HTTP 400 in this era).
        (
            stateless(
                14,
                "tools/call",
                call("beta__nope"),
                &[v, "Mcp-Method: tools/call", "Mcp-Name: beta__nope"],
            ),
            400,
            Some(-32602),
            "Unknown tool",
        ),
    ];
    for (i, (req, status, code, text)) in cases.iter().enumerate() {
        c.send(req);
        let r = c
            .read()
            .unwrap_or_else(|| panic!("case {i}: no answer (connection closed)"));
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, *status, "case {i}: {body}");
        assert!(r.header("mcp-session-id").is_none(), "case {i}: {r:?}");
        let v = r.json();
        assert!(
            v["id"].as_u64().is_some(),
            "case {i}: the request's id: {body}"
        );
        match code {
            Some(code) => assert_eq!(v["error"]["code"], *code, "case {i}: {body}"),
            None => assert_eq!(v["result"]["resultType"], "complete", "case {i}: {body}"),
        }
        assert!(body.contains(text), "case {i}: {text:?} not in {body}");
    }
    // A 2026-07-28 body without the version header (and without a session): the header is
    // what is missing.
    c.send(&stateless(
        17,
        "tools/list",
        json!({"_meta": meta("2026-07-28")}),
        &["Mcp-Method: tools/list"],
    ));
    let r = c.read().expect("answer");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"]["code"], -32020, "{r:?}");
    assert_eq!(r.json()["id"], 17, "{r:?}");

    // A requestState that names no parked call (made up, or expired) is invalid params.
    c.send(&stateless(
        18,
        "tools/call",
        json!({"name": "beta__echo", "arguments": {"text": "x"}, "inputResponses": {"input": {}},
               "requestState": "mcpgw-parked:00000000000000000000000000000000",
               "_meta": meta("2026-07-28")}),
        &[v, "Mcp-Method: tools/call", "Mcp-Name: beta__echo"],
    ));
    let r = c.read().expect("answer");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"]["code"], -32602, "{r:?}");

    // -32022 names what the gateway speaks.
    c.send(&stateless(
        15,
        "server/discover",
        json!({"_meta": meta("v999.0.0")}),
        &[
            "MCP-Protocol-Version: v999.0.0",
            "Mcp-Method: server/discover",
        ],
    ));
    let r = c.read().expect("answer");
    assert_eq!(
        r.json()["error"]["data"]["supported"],
        json!(["2026-07-28"])
    );
    assert_eq!(r.json()["error"]["data"]["requested"], "v999.0.0");

    // server/discover from the snapshot: listChanged and subscribe (served on
    // subscriptions/listen), no logging (no per-request log level yet).
    c.send(&stateless(
        16,
        "server/discover",
        json!({"_meta": meta("2026-07-28")}),
        &[v, "Mcp-Method: server/discover"],
    ));
    let r = c.read().expect("discover");
    let d = r.json();
    assert_eq!(
        d["result"]["supportedVersions"],
        json!(["2026-07-28"]),
        "{d}"
    );
    let caps = &d["result"]["capabilities"];
    assert_eq!(caps["tools"]["listChanged"], true, "{d}");
    assert_eq!(caps["resources"]["subscribe"], true, "{d}");
    assert!(caps.get("logging").is_none(), "{d}");
    assert_eq!(
        d["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcpgw"
    );

    // GET and DELETE are not part of the era.
    c.send(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\r\n");
    let r = c.read().expect("GET answer");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("POST"));
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The default `era = "auto"`: a server of both eras serves each client in its own era
/// (nothing translated, so a legacy client keeps the tools that ask mid-call), a server of
/// 2026-07-28 alone is spoken to in that era (a legacy client's calls translated).
#[test]
fn default_era_serves_each_client_in_its_own_era() {
    let dual = HttpFixture::start("dual");
    let modern = HttpFixture::only_2026("modern");
    let gw = Gateway::start(
        "",
        &format!(
            "{}\n{}",
            http_upstream_toml("dual", &dual.url(), ""),
            http_upstream_toml("modern", &modern.url(), "")
        ),
        "auto",
    );
    let log = gw.log_text();
    assert!(
        log.contains("upstream=dual era=\"both (each client's own)\""),
        "{log}"
    );
    assert!(log.contains("upstream=modern era=\"2026-07-28\""), "{log}");
    let script = json!([
        ["call", "dual__client_view", {}],
        ["call", "dual__ask_llm_resolved", {"prompt": "hi"}],
        ["call", "modern__client_view", {}],
        ["call", "modern__ask_llm_resolved", {"prompt": "hi"}],
        ["call", "dual__ask_user", {"question": "q?"}],
    ])
    .to_string();
    for (mode, dual_version) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
        let out = client_opts(&["--mode", mode], &gw.url(), "script", &[&script]);
        let steps = &out["steps"];
        let view = |i: usize| -> Value {
            serde_json::from_str(steps[i]["text"][0].as_str().unwrap_or("")).unwrap_or_default()
        };
        // The dual-era server sees each client in its own era; the other one, 2026-07-28.
        assert_eq!(view(0)["version"], dual_version, "{mode}: {out}");
        assert_eq!(view(2)["version"], "2026-07-28", "{mode}: {out}");
        for i in [1, 3] {
            assert_eq!(
                steps[i]["text"][0],
                "llm said: sampled:hi",
                "{mode} step {i}: {out}\n{}",
                gw.log_text()
            );
        }
        // A tool that asks mid-call (written for sessions): it works on the legacy
        // session; on the server's stateless path it fails, as it does for a 2026-07-28
        // client calling it directly (`era = "legacy"` would have the gateway park it).
        match mode {
            "legacy" => assert_eq!(steps[4]["text"][0], "user said: 42", "{out}"),
            _ => assert_eq!(steps[4]["is_error"], true, "{out}"),
        }
    }
}

/// A server of both eras whose `initialize` fails once (503: restarting) after
/// `server/discover` answered: no verdict, so it is not taken for a server of 2026-07-28
/// alone (legacy clients would be translated, and lose its tools that ask mid-call); asked
/// again, it is found speaking both.
#[test]
fn a_passing_initialize_failure_does_not_settle_the_era() {
    let dual = HttpFixture::start_args("dual", &["--fail-initialize", "1"]);
    let gw = Gateway::start(
        "refresh_interval_ms = 300",
        &http_upstream_toml("dual", &dual.url(), ""),
        "auto",
    );
    let both = "upstream=dual era=\"both (each client's own)\"";
    let found = crate::support::wait_for(20, || gw.log_text().contains(both));
    assert!(found, "{}", gw.log_text());
    assert!(
        !gw.log_text().contains("upstream=dual era=\"2026-07-28\""),
        "{}",
        gw.log_text()
    );
    let listed = crate::support::wait_for(20, || {
        let tour = client_opts(&["--mode", "legacy"], &gw.url(), "tour", &[]);
        strings(&tour["tools"]).contains(&"dual__ask_user".to_string())
    });
    assert!(listed, "{}", gw.log_text());
    let out = client_opts(
        &["--mode", "legacy"],
        &gw.url(),
        "script",
        &[&json!([["call", "dual__ask_user", {"question": "q?"}]]).to_string()],
    );
    assert_eq!(out["steps"][0]["text"][0], "user said: 42", "{out}");
}

/// Upstreams spoken to in 2026-07-28 alone: the SDK's dual-era servers with
/// `era = "2026-07-28"`, so that a legacy client's requests are translated (a dual-era
/// upstream found by the default `auto` serves each client in its own era instead), serving
/// clients of both eras.
#[test]
fn upstream_spoken_to_statelessly_serves_clients_of_both_eras() {
    let fx = HttpFixture::conformance();
    let alpha = HttpFixture::start("alpha");
    let gw = Gateway::start(
        "",
        &format!(
            "{}\n{}",
            http_upstream_toml("fx", &fx.url(), "era = \"2026-07-28\""),
            http_upstream_toml("alpha", &alpha.url(), "era = \"2026-07-28\"")
        ),
        "auto",
    );
    let log = gw.log_text();
    assert!(
        log.contains("upstream era") && log.contains("era=\"2026-07-28\""),
        "{log}"
    );
    for mode in ["legacy", "auto"] {
        let tour = client_opts(&["--mode", mode], &gw.url(), "tour", &[]);
        assert!(
            strings(&tour["tools"]).contains(&"fx__test_simple_text".to_string()),
            "{mode}: {tour}"
        );
        let out = client_opts(
            &["--mode", mode],
            &gw.url(),
            "script",
            &[&json!([
                ["call", "fx__test_simple_text", {}],
                ["call", "fx__test_error_handling", {}],
                ["read", "mcpgw://fx/test://static-text"],
                ["call", "fx__nope", {}],
            ])
            .to_string()],
        );
        let steps = &out["steps"];
        assert_eq!(
            steps[0]["text"][0], "This is a simple text response for testing.",
            "{mode}: {}",
            steps[0]
        );
        assert_eq!(steps[1]["is_error"], true, "{mode}: {}", steps[1]);
        assert!(
            steps[2]["contents"][0]["text"].is_string(),
            "{mode}: {}",
            steps[2]
        );
        assert_eq!(steps[3]["error"]["code"], -32602, "{mode}: {}", steps[3]);
        // What the upstream saw: 2026-07-28 with the client's own capabilities (for a
        // legacy client, those of its initialize), and routing headers naming the
        // upstream's own tool.
        let out = client_opts(
            &["--mode", mode],
            &gw.url(),
            "script",
            &[&json!([
                ["call", "alpha__client_view", {}],
                ["call", "alpha__header", {"name": "mcp-name"}],
                ["call", "alpha__header", {"name": "mcp-method"}],
                ["call", "alpha__ask_llm_resolved", {"prompt": "hi"}],
            ])
            .to_string()],
        );
        let steps = &out["steps"];
        let view: Value =
            serde_json::from_str(steps[0]["text"][0].as_str().unwrap_or("")).expect("json");
        assert_eq!(view["version"], "2026-07-28", "{mode}: {view}");
        assert!(
            view["capabilities"]["sampling"].is_object(),
            "{mode}: the client's capabilities: {view}"
        );
        assert_eq!(steps[1]["text"][0], "header", "{mode}: {}", steps[1]);
        assert_eq!(steps[2]["text"][0], "tools/call", "{mode}: {}", steps[2]);
        // The upstream needs the client's LLM: it answers input_required. A 2026 client
        // gets that as it is (its SDK asks and retries); for a legacy client the gateway
        // asks it with sampling/createMessage on the call's stream and retries upstream
        // with its answer. Either way the tool completes.
        assert_eq!(
            steps[3]["text"][0], "llm said: sampled:hi",
            "{mode}: {}",
            steps[3]
        );
    }
    // No upstream session was opened for anyone: nothing was initialized upstream.
    assert!(
        !gw.log_text().contains("upstream session initialized"),
        "{}",
        gw.log_text()
    );
    // A legacy client's logging/setLevel becomes its requests' `_meta` log level for a
    // 2026-07-28 upstream: the call's log messages reach it.
    let out = client_opts(
        &["--mode", "legacy"],
        &gw.url(),
        "script",
        &[&json!([
            ["set_level", "info"],
            ["call", "alpha__log", {"message": "hi-legacy", "level": "warning"}],
            ["call", "alpha__log", {"message": "too-low", "level": "debug"}],
            ["notifications", "0.5"],
        ])
        .to_string()],
    );
    let logs = out["steps"][3]["logs"].to_string();
    assert!(logs.contains("hi-legacy"), "{out}");
    assert!(!logs.contains("too-low"), "{out}");
    // A tool declaring `x-mcp-header` (Mcp-Param-Region): the 2026-07-28 upstream refuses a
    // call without the header, so the gateway mirrors the argument into it, for clients of
    // both eras.
    for mode in ["legacy", "auto"] {
        let out = client_opts(
            &["--mode", mode],
            &gw.url(),
            "script",
            &[&json!([["call", "alpha__region", {"region": "zürich"}]]).to_string()],
        );
        assert_eq!(
            out["steps"][0]["text"][0],
            "region zürich",
            "{mode}: {out}\n{}",
            gw.log_text()
        );
    }
    // A 2026-07-28 client's own Mcp-Param-* headers are checked against its arguments.
    let v = "MCP-Protocol-Version: 2026-07-28";
    let region_call = |id: u32, extra: &[&str]| {
        let mut h = vec![v, "Mcp-Method: tools/call", "Mcp-Name: alpha__region"];
        h.extend_from_slice(extra);
        stateless(
            id,
            "tools/call",
            json!({"name": "alpha__region", "arguments": {"region": "north"}, "_meta": meta("2026-07-28")}),
            &h,
        )
    };
    let mut c = Raw::connect(gw.addr);
    for (id, extra, status) in [
        (1, vec!["Mcp-Param-Region: north"], 200),
        (2, vec!["Mcp-Param-Region: =?base64?bm9ydGg=?="], 200),
        (3, vec![], 400),
        (4, vec!["Mcp-Param-Region: south"], 400),
        (5, vec!["Mcp-Param-Region: =?base64?bm9ydGg?="], 400),
    ] {
        c.send(&region_call(id, &extra));
        let r = c.read().expect("answer");
        assert_eq!(r.status, status, "case {id}: {:?}", r.json());
        if status == 400 {
            assert_eq!(r.code(), -32020, "case {id}: {:?}", r.json());
        }
    }
    // A legacy client's resources/subscribe to a 2026-07-28 upstream: the gateway's listen
    // stream to it names the resource (it listens again), and the update reaches the client.
    let counter = "mcpgw://alpha/fixture://alpha/counter";
    let out = client_opts(
        &["--mode", "legacy"],
        &gw.url(),
        "script",
        &[&json!([
            ["subscribe", counter],
            ["notifications", "1.0"],
            ["call", "alpha__bump", {}],
            ["notifications", "1.0"],
        ])
        .to_string()],
    );
    assert_eq!(out["steps"][0]["ok"], true, "{out}");
    let updated = out["steps"][3]["notifications"]
        .as_array()
        .is_some_and(|a| {
            a.iter().any(|n| {
                n["method"] == "notifications/resources/updated" && n["params"]["uri"] == counter
            })
        });
    assert!(updated, "{out}\n{}", gw.log_text());
    // The gateway listens to a 2026-07-28 upstream (subscriptions/listen) for list
    // changes: a tool it adds is served at once, not at the next refresh (30 s).
    let out = client_opts(
        &["--mode", "auto"],
        &gw.url(),
        "script",
        &[&json!([["call", "fx__test_toggle_dynamic_tool", {}]]).to_string()],
    );
    assert_eq!(
        out["steps"][0]["text"][0], "test_dynamic_tool added",
        "{out}"
    );
    let listed = crate::support::wait_for(10, || {
        let tour = client_opts(&["--mode", "auto"], &gw.url(), "tour", &[]);
        strings(&tour["tools"]).contains(&"fx__test_dynamic_tool".to_string())
    });
    assert!(listed, "{}", gw.log_text());
    assert!(
        gw.log_text().contains("upstream lists changed"),
        "{}",
        gw.log_text()
    );
}

/// A large result of a legacy upstream reaches a 2026-07-28 client exact, with the members
/// its era adds (the result's bytes after them are not copied).
#[test]
fn large_results_get_their_era_members() {
    let gw = Gateway::start("", &stdio_fixture_toml("beta", ""), "epoll");
    let mut c = Raw::connect(gw.addr);
    let text = "long \"text\" \\ é\n".repeat(3000);
    let req = stateless(
        5,
        "tools/call",
        json!({"name": "beta__echo", "arguments": {"text": text}, "_meta": meta("2026-07-28")}),
        &[
            "MCP-Protocol-Version: 2026-07-28",
            "Mcp-Method: tools/call",
            "Mcp-Name: beta__echo",
        ],
    );
    c.send(&req);
    let r = c.read().expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["id"], 5);
    assert_eq!(v["result"]["resultType"], "complete", "{}", v["result"]);
    let got = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(got, format!("beta:{text}"));
}
