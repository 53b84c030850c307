//! Virtual servers: a bundle of chosen tools, prompts and resources at its own endpoint.

use serde_json::json;

use crate::support::{
    client, client_script, http_upstream_toml, initialize, post, stdio_fixture_toml, Gateway,
    HttpFixture, Raw,
};

const TEAM: &str = r#"
[[server]]
name = "team"
tools = ["alpha__echo", "beta__add", "beta__who*"]
prompts = ["beta__greet"]
resources = ["mcpgw://beta/*"]
rename = { "alpha__echo" = "echo" }
descriptions = { "echo" = "Echo for the team" }
"#;

#[test]
fn a_virtual_server_shows_and_calls_only_its_bundle() {
    let alpha = HttpFixture::start("alpha");
    let upstreams = format!(
        "{}{}{TEAM}",
        http_upstream_toml("alpha", &alpha.url(), ""),
        stdio_fixture_toml("beta", "")
    );
    let gw = Gateway::start("", &upstreams, "auto");
    let url = format!("http://{}/servers/team/mcp", gw.addr);

    let tour = client(&url, "tour", &["echo"]);
    let mut tools: Vec<&str> = tour["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    tools.sort();
    assert_eq!(tools, ["beta__add", "beta__whoami", "echo"], "{tour}");
    assert_eq!(tour["prompts"], json!(["beta__greet"]), "{tour}");
    let resources: Vec<&str> = tour["resources"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    assert!(
        !resources.is_empty() && resources.iter().all(|r| r.starts_with("mcpgw://beta/")),
        "{tour}"
    );

    let steps = client_script(
        &url,
        json!([
            ["call", "echo", {"text": "hi"}],
            ["call", "beta__add", {"a": 1, "b": 2}],
            ["call", "alpha__whoami", {}],
            ["call", "alpha__echo", {"text": "by its old name"}],
            ["read", "mcpgw://beta/fixture://beta/info"],
            ["read", "mcpgw://alpha/fixture://alpha/info"],
            ["prompt", "beta__greet", {"who": "ann"}],
            ["prompt", "alpha__greet", {"who": "ann"}],
        ]),
    );
    assert_eq!(steps[0]["text"][0], "alpha:hi", "{}", steps[0]);
    assert_eq!(steps[1]["structured"]["result"], 3, "{}", steps[1]);
    assert_eq!(
        steps[2]["error"]["code"], -32602,
        "outside the bundle: {}",
        steps[2]
    );
    assert_eq!(
        steps[3]["error"]["code"], -32602,
        "renamed away: {}",
        steps[3]
    );
    assert_eq!(
        steps[4]["contents"][0]["text"], "info from beta",
        "{}",
        steps[4]
    );
    assert_eq!(
        steps[5]["error"]["code"], -32002,
        "outside the bundle: {}",
        steps[5]
    );
    assert_eq!(
        steps[6]["messages"][0]["text"], "Hello ann from beta",
        "{}",
        steps[6]
    );
    assert_eq!(steps[7]["error"]["code"], -32602, "{}", steps[7]);

    // The description override is what the server lists.
    let raw = initialize_at(&gw, "/servers/team/mcp");
    let mut c = Raw::connect(gw.addr);
    c.send(&post_at(
        "/servers/team/mcp",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &raw,
    ));
    let list = c.read().expect("list").json();
    let echo = list["result"]["tools"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "echo").cloned())
        .unwrap_or_default();
    assert_eq!(echo["description"], "Echo for the team", "{list}");

    // A session belongs to its endpoint: not usable on /mcp, nor a /mcp one here.
    c.send(&post(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        &[&format!("Mcp-Session-Id: {raw}")],
    ));
    assert_eq!(c.read().expect("answer").status, 404);
    let root = initialize(gw.addr, "2025-11-25");
    c.send(&post_at(
        "/servers/team/mcp",
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
        &root,
    ));
    assert_eq!(c.read().expect("answer").status, 404);
    // An unknown server is not found.
    c.send(&post_at(
        "/servers/nope/mcp",
        r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#,
        &root,
    ));
    assert_eq!(c.read().expect("answer").status, 404);
    // The whole catalog is still served at /mcp.
    let all = client(&gw.url(), "tour", &[]);
    assert!(
        all["tools"].as_array().is_some_and(|a| a.len() > 3),
        "{all}"
    );
}

/// A POST to `path` (not `/mcp`) with a session header.
fn post_at(path: &str, body: &str, sid: &str) -> Vec<u8> {
    let r = post(body, &[&format!("Mcp-Session-Id: {sid}")]);
    String::from_utf8_lossy(&r)
        .replacen("POST /mcp ", &format!("POST {path} "), 1)
        .into_bytes()
}

/// `initialize` at `path`; returns the session id.
fn initialize_at(gw: &Gateway, path: &str) -> String {
    let mut c = Raw::connect(gw.addr);
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    let req = String::from_utf8_lossy(&post(body, &[]))
        .replacen("POST /mcp ", &format!("POST {path} "), 1)
        .into_bytes();
    c.send(&req);
    let r = c.read().expect("initialize");
    assert_eq!(r.status, 200, "{r:?}");
    r.header("mcp-session-id").expect("session id").to_string()
}

/// list_changed goes to the clients whose view changed: removing an upstream outside a
/// virtual server's bundle tells `/mcp` clients, not the server's.
#[test]
fn list_changed_reaches_only_clients_whose_view_changed() {
    let alpha = HttpFixture::start("alpha");
    let team = "[[server]]\nname = \"team\"\ntools = [\"alpha__echo\"]\n";
    let with_beta = format!(
        "{}{}{team}",
        http_upstream_toml("alpha", &alpha.url(), ""),
        stdio_fixture_toml("beta", "")
    );
    let gw = Gateway::start("refresh_interval_ms = 600000", &with_beta, "auto");
    let cfg = gw.config.clone().expect("config");
    let text = std::fs::read_to_string(&cfg).expect("config");
    let without_beta = text.replace(&stdio_fixture_toml("beta", ""), "");
    assert_ne!(text, without_beta);
    let root = gw.url();
    let server = format!("http://{}/servers/team/mcp", gw.addr);
    let (r, s) = std::thread::scope(|sc| {
        // Generous margins: on a loaded machine the SDK clients take a while to connect.
        let r = sc.spawn(|| client_script(&root, json!([["notifications", 8.0]])));
        let s = sc.spawn(|| client_script(&server, json!([["notifications", 8.0]])));
        std::thread::sleep(std::time::Duration::from_millis(4000));
        crate::support::rewrite_config(&cfg, &without_beta);
        gw.signal("HUP");
        (r.join().expect("root"), s.join().expect("server"))
    });
    let got = |v: &serde_json::Value| {
        v["notifications"].as_array().is_some_and(|a| {
            a.iter()
                .any(|n| n["method"] == "notifications/tools/list_changed")
        })
    };
    assert!(got(&r[0]), "/mcp client: {}\n{}", r[0], gw.log_text());
    assert!(!got(&s[0]), "server client's view did not change: {}", s[0]);
}
