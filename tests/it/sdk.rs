//! The official Python SDK client through the gateway to two SDK upstreams at once: one over
//! Streamable HTTP, one over stdio. Run on both IO drivers.

use serde_json::json;

use crate::support::{
    client, client_script, http_upstream_toml, stdio_fixture_toml, strings as names, Gateway,
    HttpFixture,
};

fn tour_and_route(driver: &str) {
    let alpha = HttpFixture::start("alpha");
    let upstreams = format!(
        "{}{}",
        http_upstream_toml("alpha", &alpha.url(), ""),
        stdio_fixture_toml("beta", "")
    );
    let gw = Gateway::start("", &upstreams, driver);
    assert!(
        gw.log_text().contains(if driver == "uring" {
            "io_uring"
        } else {
            "epoll"
        }),
        "driver not in the log:\n{}",
        gw.log_text()
    );

    let tour = client(&gw.url(), "tour", &["alpha__echo"]);
    assert_eq!(tour["server_info"]["name"], "mcpgw", "{tour}");
    assert_eq!(tour["protocol_version"], "2025-11-25");
    let tools = names(&tour["tools"]);
    for t in ["echo", "add", "whoami", "slow", "crash", "fail"] {
        assert!(
            tools.contains(&format!("alpha__{t}")),
            "alpha__{t} missing: {tools:?}"
        );
        assert!(
            tools.contains(&format!("beta__{t}")),
            "beta__{t} missing: {tools:?}"
        );
    }
    let fixture_tools = tools.iter().filter(|t| t.starts_with("beta__")).count();
    assert_eq!(
        tools.len(),
        2 * fixture_tools,
        "same tools from both: {tools:?}"
    );
    assert_eq!(
        tour["input_schema"]["properties"]["text"]["type"], "string",
        "{tour}"
    );
    let resources = names(&tour["resources"]);
    assert!(
        resources.contains(&"mcpgw://alpha/fixture://alpha/info".to_string()),
        "{resources:?}"
    );
    assert!(
        resources.contains(&"mcpgw://beta/fixture://beta/info".to_string()),
        "{resources:?}"
    );
    let templates = names(&tour["resource_templates"]);
    assert!(
        templates.contains(&"mcpgw://beta/fixture://beta/item/{item_id}".to_string()),
        "{templates:?}"
    );
    let prompts = names(&tour["prompts"]);
    assert!(
        prompts.contains(&"alpha__greet".to_string())
            && prompts.contains(&"beta__greet".to_string())
    );
    for cap in ["tools", "resources", "prompts"] {
        assert!(
            tour["capabilities"].get(cap).is_some(),
            "{cap} missing: {tour}"
        );
    }

    let steps = client_script(
        &gw.url(),
        json!([
            ["call", "alpha__echo", {"text": "hi"}],
            ["call", "beta__echo", {"text": "hi"}],
            ["call", "beta__whoami", {}],
            ["call", "alpha__add", {"a": 2, "b": 40}],
            ["call", "beta__fail", {}],
            ["call", "gamma__echo", {"text": "x"}],
            ["read", "mcpgw://alpha/fixture://alpha/info"],
            ["read", "mcpgw://beta/fixture://beta/item/42"],
            ["read", "mcpgw://nosuch/fixture://x"],
            ["prompt", "beta__greet", {"who": "ann"}],
            ["prompt", "alpha__nope", {}],
            ["complete_prompt", "alpha__greet", "who", "al"],
            ["many", "25", "beta__echo"],
        ]),
    );
    assert_eq!(steps[0]["text"][0], "alpha:hi", "{}", steps[0]);
    assert_eq!(steps[1]["text"][0], "beta:hi", "{}", steps[1]);
    assert_eq!(steps[2]["text"][0], "beta");
    assert_eq!(steps[3]["structured"]["result"], 42, "{}", steps[3]);
    assert_eq!(steps[4]["is_error"], true, "{}", steps[4]);
    assert!(
        steps[4]["text"][0].as_str().unwrap_or("").contains("beta"),
        "{}",
        steps[4]
    );
    assert_eq!(
        steps[5]["error"]["code"], -32602,
        "unknown tool: {}",
        steps[5]
    );
    assert_eq!(
        steps[6]["contents"][0]["text"], "info from alpha",
        "{}",
        steps[6]
    );
    assert_eq!(
        steps[7]["contents"][0]["text"], "item 42 from beta",
        "{}",
        steps[7]
    );
    assert_eq!(
        steps[8]["error"]["code"], -32002,
        "unknown upstream in uri: {}",
        steps[8]
    );
    assert_eq!(
        steps[9]["messages"][0]["text"], "Hello ann from beta",
        "{}",
        steps[9]
    );
    assert_eq!(steps[10]["error"]["code"], -32602, "{}", steps[10]);
    assert_eq!(
        steps[11]["values"],
        json!(["alice", "albert", "alpha"]),
        "{}",
        steps[11]
    );
    assert_eq!(steps[12]["ok"], 25, "{}", steps[12]);
}

#[test]
fn sdk_client_two_upstreams_uring() {
    tour_and_route("uring");
}

#[test]
fn sdk_client_two_upstreams_epoll() {
    tour_and_route("epoll");
}

/// Pagination on both sides: the gateway pages its merged list, the SDK client follows.
#[test]
fn sdk_client_follows_gateway_pages() {
    let gw = Gateway::start("page_size = 4", &stdio_fixture_toml("beta", ""), "epoll");
    let tour = client(&gw.url(), "tour", &[]);
    let n = names(&tour["tools"]).len();
    assert!(n > 4, "{tour}");
    assert_eq!(tour["tool_pages"], n.div_ceil(4), "{tour}");
}

/// Bodies that take many reads both ways: a 1 MiB argument sent in pieces, echoed back by an
/// HTTP upstream (as a long SSE answer) and by a stdio upstream.
#[test]
fn large_payloads_pass_through_both_transports() {
    use crate::support::{initialize, post, Raw};

    let alpha = HttpFixture::start("alpha");
    let upstreams = format!(
        "{}{}",
        http_upstream_toml("alpha", &alpha.url(), ""),
        stdio_fixture_toml("beta", "")
    );
    let gw = Gateway::start("", &upstreams, "auto");
    let sid = initialize(gw.addr, "2025-11-25");
    let text: String = (0..(1 << 20))
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for up in ["alpha", "beta"] {
        let body = json!({
            "jsonrpc": "2.0", "id": "big", "method": "tools/call",
            "params": {"name": format!("{up}__echo"), "arguments": {"text": text}}
        })
        .to_string();
        let req = post(&body, &[&format!("Mcp-Session-Id: {sid}")]);
        let mut c = Raw::connect(gw.addr);
        for piece in req.chunks(300_000) {
            c.send(piece);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let r = c.read().expect("answer");
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["id"], "big");
        let got = v["result"]["content"][0]["text"].as_str().unwrap_or("");
        assert_eq!(
            got.len(),
            text.len() + up.len() + 1,
            "{up}: {}",
            &got[..got.len().min(200)]
        );
        assert!(got.starts_with(&format!("{up}:abc")) && got.ends_with(&text[text.len() - 50..]));
    }
}
