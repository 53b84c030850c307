//! Client authentication and authorization: API keys (from the file and issued through the
//! admin API), Basic, JWT (JWKS file and URL), OAuth protected resource metadata, sessions
//! bound to their principal, role-filtered lists and calls, client address rules, rate
//! limits and quotas, and no token passthrough to upstreams.

use std::{net::SocketAddr, process::Command};

use serde_json::{json, Value};

use crate::support::{
    admin, client_with, free_port, http_upstream_toml, post, root, wait_for, Gateway, HttpFixture,
    Raw, Resp, TempDir,
};

const DEMO: &str = "[[upstream]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = \"@self\"\nargs = [\"demo-server\"]\n";

/// `mcpgw auth new-key NAME --role R...`: (key, config entry).
pub(crate) fn new_key(name: &str, roles: &[&str]) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcpgw"));
    cmd.args(["auth", "new-key", name]);
    for r in roles {
        cmd.args(["--role", r]);
    }
    let out = cmd.output().expect("run mcpgw auth new-key");
    assert!(out.status.success());
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let entry = err[err.find("[[auth.api_key]]").expect("entry")..].to_string();
    (key, entry)
}

fn hash_password(pw: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .args(["auth", "hash-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run mcpgw auth hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{pw}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One MCP request on a fresh connection with `headers`.
fn call(addr: SocketAddr, body: &str, headers: &[&str]) -> Resp {
    let mut c = Raw::connect(addr);
    c.send(&post(body, headers));
    c.read().expect("answer")
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn init(addr: SocketAddr, auth: &str) -> String {
    let r = call(addr, INIT, &[auth]);
    assert_eq!(r.status, 200, "{r:?}");
    r.header("mcp-session-id").expect("session").to_string()
}

const ROLES: &str = r#"
[[role]]
name = "reader"
tools = ["demo__echo", "demo__word_count"]
prompts = []
resources = ["mcpgw://demo/demo://readme"]

[[role]]
name = "admin"
tools = ["*"]
prompts = ["*"]
resources = ["*"]
"#;

#[test]
fn api_keys_roles_and_sessions_bound_to_their_principal() {
    let (alice, alice_entry) = new_key("alice", &["reader"]);
    let (bob, bob_entry) = new_key("bob", &["admin"]);
    let gw = Gateway::start(
        "",
        &format!("{DEMO}\n[auth]\n{alice_entry}\n{bob_entry}\n{ROLES}"),
        "auto",
    );
    let a = format!("Authorization: Bearer {alice}");
    let b = format!("X-API-Key: {bob}");

    // No credentials, a wrong key, a malformed one: 401 with a challenge.
    for h in [
        "X-Nothing: 1",
        "Authorization: Bearer mcpgw_00000000_0000000000000000000000000000000000000000000000000000000000000000",
        "Authorization: Digest abc",
    ] {
        let r = call(gw.addr, INIT, &[h]);
        assert_eq!(r.status, 401, "{h}: {r:?}");
        assert_eq!(r.code(), -32012);
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"mcpgw\""));
    }
    let mut wrong = alice.clone();
    wrong.pop();
    wrong.push(if alice.ends_with('0') { '1' } else { '0' });
    assert_eq!(
        call(gw.addr, INIT, &[&format!("Authorization: Bearer {wrong}")]).status,
        401,
        "right id, wrong secret"
    );

    // The official SDK client with Alice's key sees only what her role grants.
    let tools = client_with(&[&a], &gw.url(), "list_tools", &[]);
    assert_eq!(
        tools["tools"],
        json!(["demo__echo", "demo__word_count"]),
        "{tools}"
    );
    let ok = client_with(
        &[&a],
        &gw.url(),
        "call",
        &["demo__echo", r#"{"text":"hi"}"#],
    );
    assert_eq!(ok["text"][0], "hi", "{ok}");
    let denied = client_with(&[&a], &gw.url(), "call", &["demo__add", r#"{"a":1,"b":2}"#]);
    assert_eq!(denied["error"]["code"], -32013, "{denied}");
    let prompt = client_with(
        &[&a],
        &gw.url(),
        "prompt",
        &["demo__summarize", r#"{"text":"x"}"#],
    );
    assert_eq!(prompt["error"]["code"], -32013, "{prompt}");
    let all = client_with(&[&b], &gw.url(), "list_tools", &[]);
    assert!(
        all["tools"].as_array().map_or(0, Vec::len) >= 5,
        "admin sees every tool: {all}"
    );

    // A session is Alice's alone: Bob's key with her session id finds nothing.
    let sid = init(gw.addr, &a);
    let s = format!("Mcp-Session-Id: {sid}");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    assert_eq!(call(gw.addr, list, &[&a, &s]).status, 200);
    let r = call(gw.addr, list, &[&b, &s]);
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.code(), -32006);
    let r = call(gw.addr, list, &[&s]);
    assert_eq!(r.status, 401, "no credentials at all");
    // Resources by role: the readme is hers, the greeting template is not.
    let read = |uri: &str| {
        call(
            gw.addr,
            &format!(
                r#"{{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{{"uri":"{uri}"}}}}"#
            ),
            &[&a, &s],
        )
    };
    let listed = call(
        gw.addr,
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/list"}"#,
        &[&a, &s],
    )
    .json();
    let uris: Vec<&str> = listed["result"]["resources"]
        .as_array()
        .map(|v| v.iter().filter_map(|r| r["uri"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !uris.is_empty() && uris.iter().all(|u| *u == "mcpgw://demo/demo://readme"),
        "{listed}"
    );
    assert!(read(uris[0]).json()["result"].is_object());
    assert_eq!(read("mcpgw://demo/demo://greeting/x").code(), -32013);
}

#[test]
fn basic_users_and_address_rules() {
    let hash = hash_password("s3cret pass");
    let gw = Gateway::start(
        "ip_allow = [\"127.0.0.1\", \"127.0.0.3\"]\ntrusted_proxies = [\"127.0.0.3\"]",
        &format!("{DEMO}\n[auth]\n[[auth.user]]\nname = \"carol\"\npassword_hash = \"{}\"\nroles = [\"reader\"]\n{ROLES}", hash),
        "auto",
    );
    use base64::Engine as _;
    let basic = |u: &str, p: &str| {
        format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let good = basic("carol", "s3cret pass");
    let sid = init(gw.addr, &good);
    assert_eq!(sid.len(), 32);
    // Again (remembered: no second argon2 run needed, same answer).
    init(gw.addr, &good);
    for bad in [basic("carol", "wrong"), basic("dave", "s3cret pass")] {
        let r = call(gw.addr, INIT, &[&bad]);
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"mcpgw\""));
    }
    let tools = client_with(&[&good], &gw.url(), "list_tools", &[]);
    assert_eq!(tools["tools"], json!(["demo__echo", "demo__word_count"]));

    // Address rules: 127.0.0.2 is not allowed; a trusted proxy (127.0.0.3) speaks for the
    // address in X-Forwarded-For.
    let from = |src: &str, extra: &[&str]| -> Resp {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let local: SocketAddr = format!("{src}:0").parse().expect("src");
        s.bind(&local.into()).expect("bind");
        s.connect(&gw.addr.into()).expect("connect");
        let mut c = Raw::from_stream(s.into());
        let mut h = vec![good.as_str()];
        h.extend_from_slice(extra);
        c.send(&post(INIT, &h));
        c.read().expect("answer")
    };
    let r = from("127.0.0.2", &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.code(), -32013);
    assert_eq!(from("127.0.0.3", &[]).status, 200, "the proxy itself");
    assert_eq!(
        from("127.0.0.3", &["X-Forwarded-For: 10.1.1.1, 127.0.0.1"]).status,
        200,
        "last hop before the proxy is allowed"
    );
    assert_eq!(
        from("127.0.0.3", &["X-Forwarded-For: 127.0.0.1, 10.9.9.9"]).status,
        403,
        "the client the proxy saw is not allowed"
    );
    assert_eq!(
        from("127.0.0.2", &["X-Forwarded-For: 127.0.0.1"]).status,
        403,
        "X-Forwarded-For from an untrusted peer is ignored"
    );
}

fn token(claims: Value) -> String {
    let pem = std::fs::read(root().join("src/auth/testdata/ec_private.pem")).expect("key");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("ec key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ec1".into());
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn jwt_bearer_tokens_and_protected_resource_metadata() {
    let jwks = root().join("src/auth/testdata/jwks.json");
    // The resource URL names the gateway's own address, so it is known only once started:
    // any address works for the audience check as long as tokens name the same one.
    let resource = "http://mcp.test/mcp";
    let gw = Gateway::start(
        "",
        &format!(
            "{DEMO}\n[auth.jwt]\nissuer = \"https://issuer.test\"\njwks_file = {jwks:?}\nroles_claim = \"realm.roles\"\n\n[auth.oauth]\nresource = \"{resource}\"\nauthorization_servers = [\"https://issuer.test\"]\nscopes_supported = [\"mcp\"]\n{ROLES}"
        ),
        "auto",
    );
    // RFC 9728 metadata, at the well-known path and with the resource's path appended.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let r = admin(gw.addr, "GET", path, None, None);
        assert_eq!(r.status, 200, "{path}");
        let doc = r.json();
        assert_eq!(doc["resource"], resource);
        assert_eq!(doc["authorization_servers"], json!(["https://issuer.test"]));
    }
    let r = call(gw.addr, INIT, &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer resource_metadata=\"http://mcp.test/.well-known/oauth-protected-resource/mcp\""
        )
    );

    let claims = |sub: &str, aud: &str, exp: u64| json!({"iss": "https://issuer.test", "sub": sub, "aud": aud, "exp": exp, "realm": {"roles": ["reader"]}});
    let bearer = |t: String| format!("Authorization: Bearer {t}");
    let erin = bearer(token(claims("erin", resource, now() + 600)));
    let tools = client_with(&[&erin], &gw.url(), "list_tools", &[]);
    assert_eq!(
        tools["tools"],
        json!(["demo__echo", "demo__word_count"]),
        "{tools}"
    );

    for (why, t) in [
        ("expired", token(claims("erin", resource, now() - 3600))),
        (
            "another audience",
            token(claims("erin", "http://other.test/mcp", now() + 600)),
        ),
        (
            "another issuer",
            token(
                json!({"iss": "https://evil.test", "sub": "erin", "aud": resource, "exp": now() + 600}),
            ),
        ),
        ("not a JWT", "abc.def.ghi".to_string()),
        ("bad signature", {
            // A valid token whose signature part is altered (the claims are untouched).
            let t = token(claims("erin", resource, now() + 600));
            let (head, sig) = t.rsplit_once('.').expect("three parts");
            let mut sig: Vec<char> = sig.chars().collect();
            sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
            format!("{head}.{}", sig.into_iter().collect::<String>())
        }),
        ("signed by another key", {
            // RS256 with a key the gateway does not trust for this kid (the JWKS holds the
            // RSA public key as rsa1, pinned to RS256; naming ec1 selects the EC key).
            let pem = std::fs::read(root().join("src/auth/testdata/rsa_private.pem")).expect("key");
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("rsa key");
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            header.kid = Some("ec1".into());
            jsonwebtoken::encode(&header, &claims("erin", resource, now() + 600), &key)
                .expect("sign")
        }),
    ] {
        let r = call(gw.addr, INIT, &[&bearer(t)]);
        assert_eq!(r.status, 401, "{why}: {r:?}");
        assert_eq!(r.code(), -32012, "{why}");
    }
    // A session belongs to its token's subject: a fresh token of the same subject may use
    // it, another subject's may not.
    let sid = init(gw.addr, &erin);
    let s = format!("Mcp-Session-Id: {sid}");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let again = bearer(token(claims("erin", resource, now() + 900)));
    assert_eq!(call(gw.addr, list, &[&again, &s]).status, 200);
    let frank = bearer(token(claims("frank", resource, now() + 600)));
    assert_eq!(call(gw.addr, list, &[&frank, &s]).status, 404);
}

#[test]
fn client_credentials_never_reach_upstreams() {
    let plain = HttpFixture::start("plain");
    let injected = HttpFixture::start("injected");
    let (key, entry) = new_key("gina", &["admin"]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}\n{}\n[auth]\n{entry}\n{ROLES}",
            http_upstream_toml("plain", &plain.url(), ""),
            http_upstream_toml(
                "injected",
                &injected.url(),
                "headers = { Authorization = \"Bearer upstream-own-secret\" }"
            ),
        ),
        "auto",
    );
    let a = format!("Authorization: Bearer {key}");
    let seen = |tool: &str| {
        client_with(&[&a], &gw.url(), "call", &[tool, "{}"])["text"][0]
            .as_str()
            .unwrap_or("?")
            .to_string()
    };
    assert_eq!(
        seen("plain__auth_header"),
        "",
        "the client's key is not forwarded"
    );
    assert_eq!(
        seen("injected__auth_header"),
        "Bearer upstream-own-secret",
        "the upstream gets its own configured credential"
    );
}

#[test]
fn rate_limits_per_principal_and_per_tool() {
    let (alice, alice_entry) = new_key("alice", &["admin"]);
    let (bob, bob_entry) = new_key("bob", &["admin"]);
    let gw = Gateway::start(
        "",
        &format!(
            "{DEMO}\n[auth]\n{alice_entry}\n{bob_entry}\n{ROLES}\n\
             [[rate_limit]]\nscope = \"principal_tool\"\nmatch = [\"demo__echo\"]\nrate = \"3/h burst 3\"\n\n\
             [[rate_limit]]\nscope = \"principal\"\nrate = \"20/h burst 20\"\n"
        ),
        "auto",
    );
    let a = format!("Authorization: Bearer {alice}");
    let b = format!("Authorization: Bearer {bob}");
    let sa = format!("Mcp-Session-Id: {}", init(gw.addr, &a));
    let sb = format!("Mcp-Session-Id: {}", init(gw.addr, &b));
    let echo = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"demo__echo","arguments":{"text":"x"}}}"#;
    let count = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"demo__word_count","arguments":{"text":"a b"}}}"#;
    for _ in 0..3 {
        assert!(call(gw.addr, echo, &[&a, &sa]).json()["result"].is_object());
    }
    // The fourth echo of Alice's is refused as a JSON-RPC error for that call...
    let r = call(gw.addr, echo, &[&a, &sa]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.code(), -32014);
    assert_eq!(r.json()["id"], 5);
    // ... while her other tools and Bob's echo go on.
    assert!(call(gw.addr, count, &[&a, &sa]).json()["result"].is_object());
    assert!(call(gw.addr, echo, &[&b, &sb]).json()["result"].is_object());
    // Alice has made 6 requests (initialize included); the 21st is refused at HTTP level.
    for i in 7..=20 {
        let r = call(gw.addr, count, &[&a, &sa]);
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    let r = call(gw.addr, count, &[&a, &sa]);
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.code(), -32014);
    let wait: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=180).contains(&wait), "one token per 3 minutes: {wait}");
    assert!(call(gw.addr, count, &[&b, &sb]).json()["result"].is_object());
}

/// A JWKS provider on a loopback socket (a test thread): answers every GET with the current
/// (status, body) and counts requests.
struct JwksServer {
    url: String,
    answer: std::sync::Arc<arc_swap::ArcSwap<(u16, String)>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    fn start(status: u16, body: String) -> JwksServer {
        use std::io::{Read as _, Write as _};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            l.local_addr().expect("addr")
        );
        let answer = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee((status, body)));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let ans = a.load();
                let _ = write!(
                    c,
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    ans.0,
                    ans.1.len(),
                    ans.1
                );
            }
        });
        JwksServer { url, answer, hits }
    }

    fn set(&self, status: u16, body: String) {
        self.answer.store(std::sync::Arc::new((status, body)));
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The test JWKS (src/auth/testdata) with only the key `kid`.
fn jwks_with(kid: &str) -> String {
    let text = std::fs::read_to_string(root().join("src/auth/testdata/jwks.json")).expect("jwks");
    let mut doc: Value = serde_json::from_str(&text).expect("json");
    doc["keys"]
        .as_array_mut()
        .expect("keys")
        .retain(|k| k["kid"] == kid);
    doc.to_string()
}

/// A token signed by the test key `kid` (`ec1`: ES256, `rsa1`: RS256).
fn signed(kid: &str, claims: &Value) -> String {
    let (file, alg) = match kid {
        "ec1" => ("ec_private.pem", jsonwebtoken::Algorithm::ES256),
        _ => ("rsa_private.pem", jsonwebtoken::Algorithm::RS256),
    };
    let pem = std::fs::read(root().join("src/auth/testdata").join(file)).expect("key");
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
    }
    .expect("private key");
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

#[test]
fn jwks_url_is_fetched_refreshed_and_rotated() {
    // The provider is down when the gateway starts: the gateway starts anyway.
    let jwks = JwksServer::start(503, "unavailable".into());
    let gw = Gateway::start(
        "",
        &format!(
            "{DEMO}\n[auth.jwt]\nissuer = \"https://issuer.test\"\njwks_url = \"{}\"\njwks_refresh_ms = 1000\n{ROLES}",
            jwks.url
        ),
        "auto",
    );
    let claims = json!({"iss": "https://issuer.test", "sub": "ivy", "exp": now() + 600, "roles": ["reader"]});
    let ec = format!("Authorization: Bearer {}", signed("ec1", &claims));
    let rsa = format!("Authorization: Bearer {}", signed("rsa1", &claims));
    let status = |h: &str| call(gw.addr, INIT, &[h]).status;
    assert!(wait_for(10, || jwks.hits() >= 1), "no fetch at start");
    assert_eq!(status(&ec), 401, "no keys yet");
    assert!(
        wait_for(10, || gw.log_text().contains("JWKS fetch failed")),
        "the failed first fetch is logged:\n{}",
        gw.log_text()
    );

    // Keys arrive with a retry; the official SDK client works with the token.
    jwks.set(200, jwks_with("ec1"));
    assert!(wait_for(15, || status(&ec) == 200), "keys did not arrive");
    let tools = client_with(&[&ec], &gw.url(), "list_tools", &[]);
    assert_eq!(
        tools["tools"],
        json!(["demo__echo", "demo__word_count"]),
        "{tools}"
    );
    assert_eq!(status(&rsa), 401, "rsa1 is not published yet");

    // Rotation: the provider replaces ec1 by rsa1; the next refetch brings it.
    jwks.set(200, jwks_with("rsa1"));
    assert!(
        wait_for(15, || status(&rsa) == 200),
        "rotated key not picked up"
    );
    assert_eq!(status(&ec), 401, "the retired key is gone");

    // A failing provider changes nothing: the last good keys stay.
    jwks.set(500, "oops".into());
    let before = jwks.hits();
    assert!(wait_for(15, || jwks.hits() >= before + 2), "no refetch");
    assert_eq!(status(&rsa), 200);
    assert!(gw.log_text().contains("keeping the last good keys"));
}

/// A gateway with the admin API (token `tk`) and its store in `data`; `body` is the rest of
/// the config. Returns it and the admin address.
fn gateway_with_store(data: &std::path::Path, body: &str) -> (Gateway, SocketAddr) {
    let dir = TempDir::new("authx");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let cfg = dir.0.join("mcpgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nlisten = \"{addr}\"\nworkers = 2\n\n[admin]\nlisten = \"{admin_addr}\"\ntoken = \"tk\"\ndata_dir = {:?}\n\n{body}",
            data.display().to_string()
        ),
    )
    .expect("config");
    (Gateway::start_with(&cfg, &[], addr, dir), admin_addr)
}

/// `mcpgw keys ARGS` against the admin API at `at`: (success, stdout, stderr).
fn keys_cli(at: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .arg("keys")
        .args(args)
        .args(["--admin", &format!("http://{at}"), "--token", "tk"])
        .output()
        .expect("run mcpgw keys");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn api_keys_issued_and_revoked_through_the_admin_api() {
    let data = TempDir::new("keys-data");
    let (file_key, file_entry) = new_key("from-file", &["admin"]);
    let body = format!("{DEMO}\n[auth]\n{file_entry}\n{ROLES}");
    let (mut gw, at) = gateway_with_store(&data.0, &body);
    let status = |gw: &Gateway, key: &str| {
        call(gw.addr, INIT, &[&format!("Authorization: Bearer {key}")]).status
    };
    assert_eq!(status(&gw, &file_key), 200);

    // Validation names the field; unknown roles are refused.
    for (bad, field) in [
        (json!({"roles": ["reader"]}), "name"),
        (json!({"name": "x", "roles": ["nope"]}), "roles"),
        (json!({"name": "x", "role": ["reader"]}), "role"),
    ] {
        let r = admin(at, "POST", "/admin/keys", Some("tk"), Some(&bad));
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert!(
            r.json()["error"].as_str().unwrap_or("").contains(field),
            "{r:?}"
        );
    }

    // Issue: the key is in this answer and nowhere else.
    let r = admin(
        at,
        "POST",
        "/admin/keys",
        Some("tk"),
        Some(&json!({"name": "ci", "roles": ["reader"], "team": "platform"})),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let issued = r.json();
    let key = issued["key"].as_str().expect("key").to_string();
    let id = issued["id"].as_str().expect("id").to_string();
    assert!(key.starts_with(&format!("mcpgw_{id}_")), "{issued}");
    assert!(
        wait_for(30, || status(&gw, &key) == 200),
        "the new key works"
    );
    let list = admin(at, "GET", "/admin/keys", Some("tk"), None);
    let text = String::from_utf8_lossy(&list.body).to_string();
    assert!(
        !text.contains("sha256:") && !text.contains(&key[15..]),
        "{text}"
    );
    let keys = list.json()["keys"].as_array().cloned().expect("keys");
    let ci = keys
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("listed");
    assert_eq!(ci["name"], "ci");
    assert_eq!(ci["roles"], json!(["reader"]));
    assert_eq!(ci["team"], "platform");
    assert_eq!(ci["source"], "admin");
    assert_eq!(ci["active"], true);
    assert!(ci["created_ms"]
        .as_u64()
        .is_some_and(|t| t > 1_700_000_000_000));
    assert!(
        keys.iter()
            .any(|k| k["name"] == "from-file" && k["source"] == "config"),
        "{keys:?}"
    );

    // The official SDK client with the new key sees what its role grants.
    let a = format!("Authorization: Bearer {key}");
    let tools = client_with(&[&a], &gw.url(), "list_tools", &[]);
    assert_eq!(
        tools["tools"],
        json!(["demo__echo", "demo__word_count"]),
        "{tools}"
    );

    // Revoked: 401 from then on, without a restart.
    let r = admin(at, "DELETE", &format!("/admin/keys/{id}"), Some("tk"), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        wait_for(30, || status(&gw, &key) == 401),
        "revoked key still works"
    );
    let r = call(gw.addr, INIT, &[&a]);
    assert_eq!(r.code(), -32012);
    assert_eq!(
        admin(at, "DELETE", &format!("/admin/keys/{id}"), Some("tk"), None).status,
        404
    );
    let file_id = &file_key[6..14];
    assert_eq!(
        admin(
            at,
            "DELETE",
            &format!("/admin/keys/{file_id}"),
            Some("tk"),
            None
        )
        .status,
        409,
        "config-file keys are removed in the file"
    );

    // The CLI: issue a key, which survives a restart, then revoke it.
    let (ok, cli_key, err) = keys_cli(at, &["create", "bot", "--role", "admin", "--team", "t1"]);
    assert!(ok && cli_key.starts_with("mcpgw_"), "{err}");
    assert!(err.contains("shown once"), "{err}");
    assert!(wait_for(30, || status(&gw, &cli_key) == 200));
    let (ok, table, err) = keys_cli(at, &["list"]);
    assert!(ok, "{err}");
    assert!(
        table.starts_with("ID") && table.contains("bot") && table.contains("admin"),
        "{table}"
    );
    assert!(gw.stop().success());
    let (gw, at) = gateway_with_store(&data.0, &body);
    assert_eq!(status(&gw, &cli_key), 200, "stored keys load at start");
    assert_eq!(status(&gw, &key), 401);
    let (ok, _, err) = keys_cli(at, &["revoke", &cli_key[6..14]]);
    assert!(ok, "{err}");
    assert!(wait_for(30, || status(&gw, &cli_key) == 401));
}

#[test]
fn quotas_count_calls_refuse_with_the_reset_time_and_survive_a_restart() {
    let data = TempDir::new("quota-data");
    let (alice, alice_entry) = new_key("alice", &["reader"]);
    let (bob, bob_entry) = new_key("bob", &["admin"]);
    let body = format!(
        "{DEMO}\n[auth]\n{alice_entry}\nteam = \"blue\"\n{bob_entry}\nteam = \"blue\"\n{ROLES}\n\
         [[quota]]\nscope = \"principal\"\nwindow = \"day\"\nlimit = 2\nmatch = [\"demo__echo\"]\n\n\
         [[quota]]\nscope = \"team\"\nwindow = \"month\"\nlimit = 4\n"
    );
    let (mut gw, at) = gateway_with_store(&data.0, &body);
    let a = format!("Authorization: Bearer {alice}");
    let b = format!("Authorization: Bearer {bob}");
    let sa = format!("Mcp-Session-Id: {}", init(gw.addr, &a));
    let sb = format!("Mcp-Session-Id: {}", init(gw.addr, &b));
    let tool = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{name}","arguments":{{"text":"x y","a":1,"b":2}}}}}}"#
        )
    };
    let ok = |r: Resp| r.json()["result"].is_object();

    // Calls her roles refuse do not count.
    for _ in 0..3 {
        assert_eq!(call(gw.addr, &tool("demo__add"), &[&a, &sa]).code(), -32013);
    }
    // Two echoes a day; the third is refused for that call, saying when the day resets.
    assert!(ok(call(gw.addr, &tool("demo__echo"), &[&a, &sa])));
    assert!(ok(call(gw.addr, &tool("demo__echo"), &[&a, &sa])));
    let r = call(gw.addr, &tool("demo__echo"), &[&a, &sa]);
    assert_eq!(r.status, 200);
    let err = r.json();
    assert_eq!(err["id"], 7);
    assert_eq!(err["error"]["code"], -32014, "{err}");
    let msg = err["error"]["message"].as_str().unwrap_or("").to_string();
    assert!(
        msg.contains("2 tool calls per day for this principal")
            && msg.contains("resets at ")
            && msg.contains("T00:00:00Z"),
        "{msg}"
    );
    // Other tools are outside that quota, but the team's month counts everything: 3 of 4.
    assert!(ok(call(gw.addr, &tool("demo__word_count"), &[&a, &sa])));
    // Bob's first echo is the team's fourth call; his next call is over the team's quota.
    assert!(ok(call(gw.addr, &tool("demo__echo"), &[&b, &sb])));
    let r = call(gw.addr, &tool("demo__word_count"), &[&b, &sb]).json();
    assert_eq!(r["error"]["code"], -32014, "{r}");
    let msg = r["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("4 tool calls per month for this team"),
        "{msg}"
    );
    let metrics =
        String::from_utf8_lossy(&admin(at, "GET", "/metrics", None, None).body).to_string();
    assert!(
        metrics.contains("mcpgw_limit_hits_total{limit=\"quota\"} 2"),
        "{metrics}"
    );

    // A restart on the same store keeps the counts (saved at shutdown, restored at start).
    assert!(gw.stop().success());
    let (gw, _) = gateway_with_store(&data.0, &body);
    assert!(
        gw.log_text().contains("quota counters restored"),
        "{}",
        gw.log_text()
    );
    let sa = format!("Mcp-Session-Id: {}", init(gw.addr, &a));
    let r = call(gw.addr, &tool("demo__echo"), &[&a, &sa]).json();
    assert_eq!(
        r["error"]["code"], -32014,
        "still over after a restart: {r}"
    );
    let r = call(gw.addr, &tool("demo__word_count"), &[&a, &sa]).json();
    assert_eq!(r["error"]["code"], -32014, "the team too: {r}");
}

#[test]
fn virtual_servers_admit_their_own_roles_and_anonymous_clients() {
    let (alice, alice_entry) = new_key("alice", &["reader"]);
    let (bob, bob_entry) = new_key("bob", &["admin"]);
    let gw = Gateway::start(
        "",
        &format!(
            "{DEMO}\n[auth]\n{alice_entry}\n{bob_entry}\n{ROLES}\n\
             [[server]]\nname = \"ops\"\ntools = [\"demo__*\"]\nallowed_roles = [\"admin\"]\n\n\
             [[server]]\nname = \"public\"\ntools = [\"demo__echo\", \"demo__add\"]\nanonymous_roles = [\"reader\"]\n"
        ),
        "auto",
    );
    let on = |path: &str, body: &str, headers: &[&str]| -> Resp {
        let mut c = Raw::connect(gw.addr);
        let req = String::from_utf8(post(body, headers)).expect("utf8");
        c.send(
            req.replacen("POST /mcp ", &format!("POST {path} "), 1)
                .as_bytes(),
        );
        c.read().expect("answer")
    };
    let a = format!("Authorization: Bearer {alice}");
    let b = format!("Authorization: Bearer {bob}");
    // ops admits admins only.
    let r = on("/servers/ops/mcp", INIT, &[&a]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.code(), -32013);
    assert_eq!(on("/servers/ops/mcp", INIT, &[&b]).status, 200);
    // public lets clients without credentials in, with the reader role there only.
    let r = on("/servers/public/mcp", INIT, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let sid = format!(
        "Mcp-Session-Id: {}",
        r.header("mcp-session-id").expect("sid")
    );
    let list = on(
        "/servers/public/mcp",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &[&sid],
    )
    .json();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .map(|v| v.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["demo__echo"], "{list}");
    assert_eq!(
        call(gw.addr, INIT, &[]).status,
        401,
        "/mcp still needs credentials"
    );
}

#[test]
fn team_roles_reach_their_members() {
    let (carol, entry) = new_key("carol", &[]);
    let gw = Gateway::start(
        "",
        &format!(
            "{DEMO}\n[auth]\n\n[[auth.team]]\nname = \"platform\"\nroles = [\"reader\"]\n\n{entry}\nteam = \"platform\"\n{ROLES}"
        ),
        "auto",
    );
    let c = format!("Authorization: Bearer {carol}");
    let tools = client_with(&[&c], &gw.url(), "list_tools", &[]);
    assert_eq!(
        tools["tools"],
        json!(["demo__echo", "demo__word_count"]),
        "the team's role, though the key has none: {tools}"
    );
}

/// A session belongs to the credential that opened it, not to its name: a second key
/// issued under the same name (or a token of another subject with the same user claim)
/// cannot use it (it could: sessions were bound to `<method>:<name>`).
#[test]
fn sessions_are_bound_to_the_credential_not_the_name() {
    let (first, first_entry) = new_key("shared-name", &["reader"]);
    let (second, second_entry) = new_key("shared-name", &["reader"]);
    let gw = Gateway::start(
        "",
        &format!("{DEMO}\n[auth]\n{first_entry}\n{second_entry}\n{ROLES}"),
        "auto",
    );
    let a = format!("Authorization: Bearer {first}");
    let b = format!("Authorization: Bearer {second}");
    let sid = init(gw.addr, &a);
    let s = format!("Mcp-Session-Id: {sid}");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let r = call(gw.addr, list, &[&a, &s]);
    assert_eq!(r.status, 200, "the key that opened it: {r:?}");
    let r = call(gw.addr, list, &[&b, &s]);
    assert_eq!(r.status, 404, "another key of the same name: {r:?}");
    // Each key has its own session.
    let sid2 = init(gw.addr, &b);
    assert_ne!(sid, sid2);
    let r = call(gw.addr, list, &[&b, &format!("Mcp-Session-Id: {sid2}")]);
    assert_eq!(r.status, 200, "{r:?}");
}

/// A reload that changes what a role allows, and nothing in the catalog, changes that role's
/// lists and calls at once on every worker: the policy travels in the snapshot with the
/// lists, and a worker's cache of role-filtered lists is keyed by both.
#[test]
fn a_reload_that_changes_a_role_changes_its_lists_at_once() {
    let (carl, carl_entry) = new_key("carl", &["reader"]);
    let gw = Gateway::start(
        "watch_config = true",
        &format!("{DEMO}\n[auth]\n{carl_entry}\n{ROLES}"),
        "auto",
    );
    let auth = format!("Authorization: Bearer {carl}");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let names = |sid: &str| -> Vec<String> {
        let r = call(gw.addr, list, &[&auth, &format!("Mcp-Session-Id: {sid}")]);
        assert_eq!(r.status, 200, "{r:?}");
        let v: Value = r.json();
        let mut n: Vec<String> = v["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect();
        n.sort();
        n
    };
    let sid = init(gw.addr, &auth);
    // Fresh connections spread over the workers: each caches the reader's lists.
    for _ in 0..8 {
        assert_eq!(names(&sid), ["demo__echo", "demo__word_count"]);
    }
    let cfg = gw.config.clone().expect("config path");
    let text = std::fs::read_to_string(&cfg).expect("config");
    let narrowed = text.replacen(
        r#"tools = ["demo__echo", "demo__word_count"]"#,
        r#"tools = ["demo__echo"]"#,
        1,
    );
    assert_ne!(narrowed, text);
    crate::support::rewrite_config(&cfg, &narrowed);
    let word_count = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__word_count","arguments":{"text":"a b"}}}"#;
    let denied = || {
        call(
            gw.addr,
            word_count,
            &[&auth, &format!("Mcp-Session-Id: {sid}")],
        )
        .code()
            == -32013
    };
    assert!(wait_for(15, denied), "{}", gw.log_text());
    for _ in 0..8 {
        assert_eq!(names(&sid), ["demo__echo"], "{}", gw.log_text());
    }
}
