//! The outbound address policy: what the gateway refuses to connect to.
//!
//! Nothing here sends a packet off loopback: refusals of link-local, metadata and public
//! addresses are checked at validation time (the admin API answers 400, `mcpgw check`
//! fails), where nothing is contacted; the connect-time check is shown with names that
//! resolve to loopback addresses the policy refuses (the gateway's own listeners, or
//! loopback outside `upstream_networks`).

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::support::{
    admin, free_port, http_upstream_toml, initialize, mcpgw_check, post, wait_for, Gateway,
    HttpFixture, Raw, TempDir,
};

const TOKEN: &str = "s3cret";

/// Addresses for a gateway and its admin listener, and the config text that uses them.
fn listeners() -> (SocketAddr, SocketAddr) {
    let gw: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let adm: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    (gw, adm)
}

fn start(gw: SocketAddr, adm: SocketAddr, gateway_extra: &str, rest: &str) -> Gateway {
    let dir = TempDir::new("outbound");
    let cfg = dir.0.join("mcpgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nlisten = \"{gw}\"\nworkers = 2\nhealth_interval_ms = 0\n{gateway_extra}\n\n[admin]\nlisten = \"{adm}\"\ntoken = \"{TOKEN}\"\ndata_dir = \":memory:\"\n\n{rest}"
        ),
    )
    .expect("config");
    // A secret key, so that admin-added literal secrets (OAuth client secrets) are stored.
    let key = crate::secrets::new_key();
    let mut g =
        Gateway::try_start_with_env(&cfg, &[], gw, dir, &[("MCPGW_SECRET_KEY", key.as_str())])
            .unwrap_or_else(|log| panic!("mcpgw did not start:\n{log}"));
    g.config = Some(cfg);
    g
}

fn add(adm: SocketAddr, body: &Value) -> (u16, String) {
    let r = admin(adm, "POST", "/admin/upstreams", Some(TOKEN), Some(body));
    let msg = r.json()["error"].as_str().unwrap_or("").to_string();
    (r.status, msg)
}

/// `resources/read` of `uri` on a fresh session: the JSON-RPC answer.
fn read_resource(gw: SocketAddr, uri: &str) -> Value {
    let sid = initialize(gw, "2025-06-18");
    let mut c = Raw::connect(gw);
    c.send(&post(
        &format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{{"uri":"{uri}"}}}}"#
        ),
        &[
            &format!("Mcp-Session-Id: {sid}"),
            "MCP-Protocol-Version: 2025-06-18",
        ],
    ));
    let r = c.read().expect("answer");
    let text = String::from_utf8_lossy(&r.body).to_string();
    // A JSON answer, or an SSE stream whose data line holds it.
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(&text)
        .trim()
        .to_string();
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn admin_api_refuses_addresses_outside_the_policy() {
    let (gw, adm) = listeners();
    let g = start(gw, adm, "", "");
    let up = |url: &str| json!({"name": "x", "transport": "http", "url": url});
    // The gateway's own listeners first: before the policy existed, these were accepted
    // (and contacted, on loopback).
    let refused: Vec<(Value, &str, &str)> = vec![
        (
            up(&format!("http://{gw}/mcp")),
            "upstream[0].url",
            "MCP listener",
        ),
        (
            up(&format!("http://{adm}/admin")),
            "upstream[0].url",
            "admin listener",
        ),
        (
            up(&format!("http://[::ffff:127.0.0.1]:{}/mcp", gw.port())),
            "upstream[0].url",
            "MCP listener",
        ),
        (up("http://127.0.0.1:99999/mcp"), "upstream[0].url", "port"),
        (up("http://127.0.0.1:0/mcp"), "upstream[0].url", "port"),
        (
            up("http://169.254.169.254/latest/meta-data/"),
            "upstream[0].url",
            "link-local",
        ),
        (
            up("http://[::ffff:169.254.169.254]/"),
            "upstream[0].url",
            "link-local",
        ),
        (
            up("http://[::ffff:a9fe:a9fe]:80/"),
            "upstream[0].url",
            "link-local",
        ),
        (
            up("http://[fe80::1]:9000/mcp"),
            "upstream[0].url",
            "link-local",
        ),
        (up("http://[fd00:ec2::254]/"), "upstream[0].url", "metadata"),
        (up("http://100.100.100.200/"), "upstream[0].url", "metadata"),
        (
            up("http://0.0.0.0:9000/mcp"),
            "upstream[0].url",
            "unspecified",
        ),
        (up("http://[::]:9000/mcp"), "upstream[0].url", "unspecified"),
        (
            up("http://255.255.255.255:9000/mcp"),
            "upstream[0].url",
            "broadcast",
        ),
        (
            up("http://224.0.0.1:9000/mcp"),
            "upstream[0].url",
            "multicast",
        ),
        (
            up("http://[ff02::1]:9000/mcp"),
            "upstream[0].url",
            "multicast",
        ),
        // Outside the default `upstream_networks` (loopback, RFC 1918, ULA).
        (
            up("http://8.8.8.8/mcp"),
            "upstream[0].url",
            "upstream_networks",
        ),
        (
            up("https://1.1.1.1/mcp"),
            "upstream[0].url",
            "upstream_networks",
        ),
        (
            json!({"name": "x", "transport": "http", "urls": ["http://127.0.0.1:9/mcp", "http://169.254.169.254/mcp"]}),
            "upstream[0].urls[1]",
            "link-local",
        ),
        (
            json!({"name": "x", "transport": "http", "url": "http://127.0.0.1:9/mcp",
                "auth": {"oauth_token_url": "http://169.254.169.254/token", "client_id": "c", "client_secret": "literal-secret"}}),
            "upstream[0].auth.oauth_token_url",
            "link-local",
        ),
        (
            json!({"name": "x", "transport": "http", "url": "http://127.0.0.1:9/mcp",
                "auth": {"oauth_token_url": "https://8.8.8.8/token", "client_id": "c", "client_secret": "literal-secret"}}),
            "upstream[0].auth.oauth_token_url",
            "upstream_networks",
        ),
    ];
    for (body, field, why) in &refused {
        let (status, msg) = add(adm, body);
        assert_eq!(status, 400, "{body}: {msg}\n{}", g.log_text());
        assert!(msg.contains(field) && msg.contains(why), "{body}: {msg}");
    }
    // Nothing of it reached the registry.
    let ups = admin(adm, "GET", "/admin/upstreams", Some(TOKEN), None).json();
    assert_eq!(ups["upstreams"].as_array().map(Vec::len), Some(0), "{ups}");
}

#[test]
fn config_file_refuses_link_local_own_listeners_and_bad_ports() {
    let dir = TempDir::new("outbound-check");
    let cfg = dir.0.join("mcpgw.toml");
    let check = |text: &str, want: &[&str]| {
        std::fs::write(&cfg, text).expect("write");
        let out = mcpgw_check(&cfg);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "accepted:\n{text}");
        for w in want {
            assert!(err.contains(w), "{w:?} not in: {err}\n{text}");
        }
    };
    let gw = "[gateway]\nlisten = \"127.0.0.1:18080\"\n[admin]\nlisten = \"0.0.0.0:18081\"\n";
    check(
        &format!(
            "{gw}{}",
            http_upstream_toml("a", "http://127.0.0.1:18080/mcp", "")
        ),
        &["upstream[0].url", "MCP listener", ":8"],
    );
    // A wildcard admin listener takes its port on every local address.
    check(
        &format!(
            "{gw}{}",
            http_upstream_toml("a", "http://127.0.0.1:18081/mcp", "")
        ),
        &["upstream[0].url", "admin listener"],
    );
    check(
        &format!(
            "{gw}{}",
            http_upstream_toml("a", "http://127.0.0.1:99999/mcp", "")
        ),
        &["upstream[0].url", "port"],
    );
    check(
        &format!(
            "{gw}{}",
            http_upstream_toml("a", "http://169.254.169.254/mcp", "")
        ),
        &["upstream[0].url", "link-local"],
    );
    check(
        &format!(
            "{gw}{}",
            http_upstream_toml(
                "a",
                "http://127.0.0.1:9/mcp",
                "auth = { oauth_token_url = \"http://[fd00:ec2::254]/token\", client_id = \"c\", client_secret = \"s\" }"
            )
        ),
        &["upstream[0].auth.oauth_token_url", "metadata"],
    );
    check(
        &format!("{gw}[auth.jwt]\njwks_url = \"http://169.254.169.254/jwks\"\n"),
        &["auth.jwt.jwks_url", "link-local"],
    );
    check(
        "[gateway]\nlisten = \"127.0.0.1:18080\"\nupstream_networks = [\"10.0.0.0/33\"]\n",
        &["gateway.upstream_networks", "10.0.0.0/33"],
    );
    // The config file is trusted beyond `upstream_networks`: a public address is its call.
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:18080\"\nupstream_networks = [\"10.0.0.0/8\"]\n{}",
            http_upstream_toml("a", "https://8.8.8.8/mcp", "")
        ),
    )
    .expect("write");
    let out = mcpgw_check(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn names_that_resolve_to_the_gateways_own_listeners_fail_at_connect_time() {
    let (gw, adm) = listeners();
    let ups = format!(
        "{}{}",
        http_upstream_toml(
            "selfmcp",
            &format!("http://localhost:{}/mcp", gw.port()),
            ""
        ),
        http_upstream_toml(
            "selfadmin",
            &format!("http://localhost:{}/admin", adm.port()),
            ""
        )
    );
    let g = start(gw, adm, "", &ups);
    for name in ["selfmcp", "selfadmin"] {
        let logged = wait_for(20, || {
            g.log_text().lines().any(|l| {
                l.contains("outbound address policy") && l.contains(name) && l.contains("listener")
            })
        });
        assert!(logged, "no policy log line for {name}:\n{}", g.log_text());
    }
    // A client's request to it gets the usual upstream-unavailable error.
    let v = read_resource(gw, "mcpgw://selfmcp/file:///x");
    assert_eq!(v["error"]["code"], -32003, "{v}");
}

#[test]
fn admin_added_upstreams_stay_inside_upstream_networks_at_connect_time() {
    let alpha = HttpFixture::start("alpha");
    let (gw, adm) = listeners();
    // Loopback is outside the admin API's networks here; the config file may still use it.
    let g = start(
        gw,
        adm,
        "upstream_networks = [\"10.0.0.0/8\"]",
        &http_upstream_toml("file", &alpha.url(), ""),
    );
    let (status, msg) = add(
        adm,
        &json!({"name": "lit", "transport": "http", "url": alpha.url()}),
    );
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("upstream[0].url") && msg.contains("upstream_networks"),
        "{msg}"
    );
    // A name passes validation (nothing is resolved then) and is refused when connecting.
    let (status, msg) = add(
        adm,
        &json!({"name": "named", "transport": "http", "url": format!("http://localhost:{}/mcp", alpha.port)}),
    );
    assert_eq!(status, 201, "{msg}");
    let logged = wait_for(20, || {
        g.log_text().lines().any(|l| {
            l.contains("outbound address policy")
                && l.contains("named")
                && l.contains("upstream_networks")
        })
    });
    assert!(logged, "{}", g.log_text());
    // Once the reload that adds it is published, a client's request gets the usual
    // upstream-unavailable error.
    let listed = wait_for(20, || {
        admin(adm, "GET", "/admin/upstreams", Some(TOKEN), None).json()["upstreams"]
            .as_array()
            .is_some_and(|a| a.iter().any(|u| u["name"] == "named"))
    });
    assert!(listed, "{}", g.log_text());
    let v = read_resource(gw, "mcpgw://named/file:///x");
    assert_eq!(v["error"]["code"], -32003, "{v}");
    // The config file's upstream on the same server works.
    let ups = admin(adm, "GET", "/admin/upstreams", Some(TOKEN), None).json();
    let tools = |n: &str| {
        ups["upstreams"]
            .as_array()
            .and_then(|a| a.iter().find(|u| u["name"] == n))
            .map(|u| u["tools"].as_u64().unwrap_or(0))
    };
    assert!(tools("file").is_some_and(|t| t > 0), "{ups}");
    assert_eq!(tools("named"), Some(0), "{ups}");
}
