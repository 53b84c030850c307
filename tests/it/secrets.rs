//! Upstream credentials: secrets encrypted at rest (`enc:v1:` in the file, admin-added
//! upstreams stored encrypted), injected on every upstream request, a client's own
//! `Authorization` never forwarded, no secret in the log; OAuth client credentials with
//! token refresh.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::{json, Value};

use crate::support::{
    admin, client_script, client_with, free_port, http_upstream_toml, wait_for, Gateway,
    HttpFixture, TempDir,
};

/// `mcpgw secret new-key`.
pub(crate) fn new_key() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .args(["secret", "new-key"])
        .output()
        .expect("run mcpgw secret new-key");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `mcpgw auth new-key NAME --role admin`: (client API key, its `[[auth.api_key]]` entry).
fn client_key(name: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .args(["auth", "new-key", name, "--role", "admin"])
        .output()
        .expect("run mcpgw auth new-key");
    assert!(out.status.success());
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let entry = err[err.find("[[auth.api_key]]").expect("entry")..].to_string();
    (key, entry)
}

/// Client authentication on (one admin role for everything), so that clients can send an
/// `Authorization` of their own.
fn client_auth(entry: &str) -> String {
    format!(
        "\n[auth]\n{entry}\n\n[[role]]\nname = \"admin\"\ntools = [\"*\"]\nprompts = [\"*\"]\nresources = [\"*\"]\n"
    )
}

/// `echo PLAIN | MCPGW_SECRET_KEY=key mcpgw secret encrypt`.
pub(crate) fn encrypt(key: &str, plain: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .args(["secret", "encrypt"])
        .env("MCPGW_SECRET_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mcpgw secret encrypt");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{plain}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(sealed.starts_with("enc:v1:") && !sealed.contains(plain));
    sealed
}

/// Calls `tool` in a fresh client session (sending `headers`); its text, or the error.
fn call(gw_url: &str, headers: &[&str], tool: &str, args: Value) -> Value {
    client_with(headers, gw_url, "call", &[tool, &args.to_string()])
}

fn text(v: &Value) -> String {
    v["text"][0].as_str().unwrap_or("?").to_string()
}

/// `[method, Authorization]` of every request the fixture behind `prefix` received.
fn requests_seen(gw_url: &str, auth: &str, prefix: &str) -> Vec<(String, String)> {
    let v = call(
        gw_url,
        &[auth],
        &format!("{prefix}__requests_seen"),
        json!({}),
    );
    serde_json::from_str::<Vec<(String, String)>>(&text(&v)).expect("requests_seen JSON")
}

#[test]
fn encrypted_credentials_reach_the_upstream_and_client_credentials_do_not() {
    let key = new_key();
    let bearer = encrypt(&key, "upstream-bearer-7f3a");
    let api_key = encrypt(&key, "api-key-91c2");
    let sealed = HttpFixture::start("sealed");
    let modern = HttpFixture::only_2026("modern");
    let keyed = HttpFixture::start("keyed");
    let (client, entry) = client_key("carol");
    let gw = Gateway::start_env(
        "",
        &format!(
            "{}\n{}\n{}\n{}",
            // The legacy era: a session, a GET stream and a DELETE.
            http_upstream_toml(
                "sealed",
                &sealed.url(),
                &format!("auth = {{ bearer = \"{bearer}\" }}\nera = \"legacy\"")
            ),
            // 2026-07-28 (found by the default `auto`): server/discover, the listen stream.
            http_upstream_toml(
                "modern",
                &modern.url(),
                &format!("auth = {{ bearer = \"{bearer}\" }}")
            ),
            http_upstream_toml(
                "keyed",
                &keyed.url(),
                &format!(
                    "auth = {{ header = \"X-Api-Key\", value = \"{api_key}\" }}\nheaders = {{ X-Tenant = \"env:MCPGW_TEST_TENANT\" }}"
                )
            ),
            client_auth(&entry),
        ),
        "auto",
        &[("MCPGW_SECRET_KEY", &key), ("MCPGW_TEST_TENANT", "acme-tenant")],
    );
    let url = gw.url();
    let own = format!("Authorization: Bearer {client}");
    let own = own.as_str();
    assert_eq!(
        text(&call(&url, &[own], "sealed__auth_header", json!({}))),
        "Bearer upstream-bearer-7f3a",
        "the decrypted bearer, not the client's"
    );
    assert_eq!(
        text(&call(&url, &[own], "keyed__auth_header", json!({}))),
        "",
        "the client's Authorization is not forwarded"
    );
    assert_eq!(
        text(&call(
            &url,
            &[own],
            "keyed__header",
            json!({"name": "x-api-key"})
        )),
        "api-key-91c2"
    );
    assert_eq!(
        text(&call(
            &url,
            &[own],
            "keyed__header",
            json!({"name": "x-tenant"})
        )),
        "acme-tenant"
    );

    // Every request the upstream got carried the credential: initialize, calls, the
    // gateway's GET stream, and the DELETE that ends a client's upstream session.
    let mut seen = Vec::new();
    let complete = wait_for(20, || {
        seen = requests_seen(&url, own, "sealed");
        ["POST", "GET", "DELETE"]
            .iter()
            .all(|m| seen.iter().any(|(method, _)| method == m))
    });
    assert!(complete, "not every method seen: {seen:?}");
    assert!(
        seen.iter()
            .all(|(_, auth)| auth == "Bearer upstream-bearer-7f3a"),
        "{seen:?}"
    );
    // The same for a 2026-07-28 upstream: its discover probe, listen stream and calls.
    assert_eq!(
        text(&call(&url, &[own], "modern__auth_header", json!({}))),
        "Bearer upstream-bearer-7f3a"
    );
    let seen = requests_seen(&url, own, "modern");
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(method, auth)| method == "POST" && auth == "Bearer upstream-bearer-7f3a"),
        "{seen:?}"
    );
    assert!(
        gw.log_text().contains("upstream=modern era=\"2026-07-28\""),
        "{}",
        gw.log_text()
    );

    // No secret, ciphertext or key in the log (which runs at debug level).
    let log = gw.log_text();
    for s in [
        "upstream-bearer-7f3a",
        "api-key-91c2",
        "acme-tenant",
        &client,
        &key,
        &bearer,
    ] {
        assert!(!log.contains(s), "{s:?} in the log:\n{log}");
    }

    // The same file with another key does not load: the error names upstream and field.
    let cfg = gw.config.clone().expect("config file");
    let check = |k: &str| {
        Command::new(env!("CARGO_BIN_EXE_mcpgw"))
            .arg("check")
            .arg("--config")
            .arg(&cfg)
            .env("MCPGW_SECRET_KEY", k)
            .env("MCPGW_TEST_TENANT", "acme-tenant")
            .output()
            .expect("mcpgw check")
    };
    assert!(check(&key).status.success());
    let out = check(&new_key());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("upstream[0].auth.bearer")
            && err.contains("\"sealed\"")
            && err.contains("cannot be decrypted"),
        "{err}"
    );
    assert!(
        !err.contains(&bearer) && !err.contains("upstream-bearer"),
        "{err}"
    );
}

/// A gateway with the admin API and a store under `dir`.
fn admin_gateway(dir: &TempDir, key: &str) -> Result<(Gateway, SocketAddr), String> {
    let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let cfg = dir.0.join("mcpgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nlisten = \"{addr}\"\nworkers = 2\n\n[admin]\nlisten = \"{admin_addr}\"\ntoken = \"t0k\"\ndata_dir = {:?}\n",
            dir.0.join("data").display().to_string()
        ),
    )
    .expect("config");
    Gateway::try_start_with_env(
        &cfg,
        &[],
        addr,
        TempDir::new("secrets-gw"),
        &[("MCPGW_SECRET_KEY", key)],
    )
    .map(|gw| (gw, admin_addr))
}

#[test]
fn admin_added_upstream_secrets_are_stored_encrypted() {
    let vault = HttpFixture::start("vault");
    let key = new_key();
    let dir = TempDir::new("secrets-admin");
    let (mut gw, admin_addr) = admin_gateway(&dir, &key).expect("start");
    let spec = json!({
        "name": "vault", "transport": "http", "url": vault.url(),
        "headers": { "X-Tenant": "tenant-plain-5521", "X-Region": "env:MCPGW_TEST_UNSET_OK" },
        "auth": { "bearer": "bearer-plain-8812" },
    });
    // An env: reference is refused (400, naming the field): the admin API takes literal
    // values only, so it cannot read the gateway's environment.
    let r = admin(
        admin_addr,
        "POST",
        "/admin/upstreams",
        Some("t0k"),
        Some(&spec),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("upstream[0].headers.X-Region") && e.contains("env:")),
        "{r:?}"
    );
    let mut spec = spec;
    spec["headers"]
        .as_object_mut()
        .expect("headers")
        .remove("X-Region");
    let r = admin(
        admin_addr,
        "POST",
        "/admin/upstreams",
        Some("t0k"),
        Some(&spec),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let url = gw.url();
    let ok = wait_for(20, || {
        client_script(&url, json!([["list_tools"]]))[0]["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "vault__auth_header"))
    });
    assert!(ok, "the added upstream's tools never appeared");
    assert_eq!(
        text(&call(&url, &[], "vault__auth_header", json!({}))),
        "Bearer bearer-plain-8812"
    );
    assert_eq!(
        text(&call(
            &url,
            &[],
            "vault__header",
            json!({"name": "x-tenant"})
        )),
        "tenant-plain-5521"
    );

    // The API shows that credentials are set, never their values.
    let listed = admin(admin_addr, "GET", "/admin/upstreams", Some("t0k"), None);
    let body = String::from_utf8_lossy(&listed.body).to_string();
    assert!(
        !body.contains("plain-8812") && !body.contains("plain-5521") && !body.contains("enc:v1:"),
        "{body}"
    );
    let v = listed.json();
    let entry = v["upstreams"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == "vault"))
        .expect("vault listed");
    assert_eq!(entry["headers"], json!({ "X-Tenant": "***" }), "{entry}");
    assert_eq!(
        entry["auth"],
        json!({ "type": "header", "header": "Authorization", "value": "***" }),
        "{entry}"
    );

    // The stored row holds ciphertext only; so does the database file.
    let db = dir.0.join("data/mcpgw.db");
    let spec_row: String = rusqlite::Connection::open(&db)
        .expect("open the store")
        .query_row("SELECT spec FROM upstreams WHERE name = 'vault'", [], |r| {
            r.get(0)
        })
        .expect("stored row");
    assert!(spec_row.matches("enc:v1:").count() >= 2, "{spec_row}");
    let raw = std::fs::read(&db).expect("db file");
    for plain in ["bearer-plain-8812", "tenant-plain-5521"] {
        assert!(!spec_row.contains(plain), "{spec_row}");
        assert!(
            !raw.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{plain} in the database file"
        );
        assert!(!gw.log_text().contains(plain), "{plain} in the log");
    }
    assert!(gw.stop().success());

    // A restart with the key decrypts the stored values again.
    let (mut gw, _) = admin_gateway(&dir, &key).expect("restart");
    assert_eq!(
        text(&call(&gw.url(), &[], "vault__auth_header", json!({}))),
        "Bearer bearer-plain-8812"
    );
    assert!(gw.stop().success());

    // With another key the stored upstream does not load, and the error says which.
    let log = match admin_gateway(&dir, &new_key()) {
        Ok(_) => panic!("started with the wrong key"),
        Err(log) => log,
    };
    assert!(
        log.contains("upstream[0].")
            && log.contains("(upstream \"vault\")")
            && log.contains("cannot be decrypted"),
        "{log}"
    );
    assert!(!log.contains("plain-8812"), "{log}");

    // Without a key, a plain secret is refused (400) rather than stored in plain text.
    let bare = TempDir::new("secrets-nokey");
    let (_gw, admin_addr) = admin_gateway(&bare, "").expect("start without a key");
    let r = admin(
        admin_addr,
        "POST",
        "/admin/upstreams",
        Some("t0k"),
        Some(&spec),
    );
    assert_eq!(r.status, 400, "{r:?}");
    let e = r.json()["error"].as_str().unwrap_or("").to_string();
    assert!(
        e.contains("MCPGW_SECRET_KEY") && e.contains("upstream[0]."),
        "{e}"
    );
    assert!(!e.contains("plain-"), "{e}");
}

/// A client-credentials token endpoint on loopback: `tok-<n>` valid for `expires_in`
/// seconds; answers 503 while `failing` is set. Records each request's head and body.
struct TokenEndpoint {
    url: String,
    failing: Arc<AtomicBool>,
    issued: Arc<AtomicUsize>,
    requests: Arc<parking_lot::Mutex<Vec<String>>>,
}

fn token_endpoint(expires_in: u64) -> TokenEndpoint {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/oauth/token", l.local_addr().expect("addr"));
    let failing = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (f, n, reqs) = (failing.clone(), issued.clone(), requests.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let req = loop {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
                let t = String::from_utf8_lossy(&buf).to_string();
                let Some(end) = t.find("\r\n\r\n") else {
                    continue;
                };
                let len = t[..end]
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(t);
                }
            };
            let Some(req) = req else { continue };
            reqs.lock().push(req);
            let (status, body) = if f.load(Ordering::SeqCst) {
                (503, r#"{"error":"temporarily_unavailable"}"#.to_string())
            } else {
                let i = n.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    200,
                    format!(
                        r#"{{"access_token":"tok-{i}","token_type":"Bearer","expires_in":{expires_in}}}"#
                    ),
                )
            };
            let _ = write!(
                c,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    TokenEndpoint {
        url,
        failing,
        issued,
        requests,
    }
}

#[test]
fn oauth_client_credentials_tokens_are_refreshed_and_their_loss_fails_calls() {
    let key = new_key();
    let client_secret = encrypt(&key, "client-secret-4d1e");
    let ep = token_endpoint(2);
    let up = HttpFixture::start("oauthed");
    let (client, entry) = client_key("dave");
    // No catalog refresh or health check in the test's window: the upstream stays listed
    // while it has no token, so a call reaches it and fails there.
    let gw = Gateway::start_env(
        "refresh_interval_ms = 600000\nhealth_interval_ms = 0",
        &(http_upstream_toml(
            "oauthed",
            &up.url(),
            &format!(
                "auth = {{ oauth_token_url = \"{}\", client_id = \"mcpgw-test\", client_secret = \"{client_secret}\", scope = \"mcp:tools\" }}\nbreaker_failures = 2",
                ep.url
            ),
        ) + &client_auth(&entry)),
        "auto",
        &[("MCPGW_SECRET_KEY", &key)],
    );
    let url = gw.url();
    let own = format!("Authorization: Bearer {client}");
    let own = own.as_str();
    let first = text(&call(&url, &[own], "oauthed__auth_header", json!({})));
    assert!(first.starts_with("Bearer tok-"), "{first}");
    std::thread::sleep(Duration::from_secs(3));
    let second = text(&call(&url, &[own], "oauthed__auth_header", json!({})));
    assert!(second.starts_with("Bearer tok-"), "{second}");
    assert_ne!(first, second, "a token of 2 s is refreshed within 3 s");

    // Form POST, client_secret_basic, the decrypted secret.
    {
        let reqs = ep.requests.lock();
        let r = &reqs[0];
        use base64::Engine as _;
        let basic =
            base64::engine::general_purpose::STANDARD.encode("mcpgw-test:client-secret-4d1e");
        assert!(r.starts_with("POST /oauth/token "), "{r}");
        assert!(r.contains(&format!("Basic {basic}")), "{r}");
        assert!(r.contains("grant_type=client_credentials"), "{r}");
        assert!(r.contains("scope=mcp%3Atools"), "{r}");
    }

    // The token endpoint fails: the last token serves until it expires, then calls fail
    // with -32003 and a warning.
    ep.failing.store(true, Ordering::SeqCst);
    let issued = ep.issued.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    // Not the upstream's failure: the breaker (2 failures here) does not open on it.
    for _ in 0..3 {
        let failed = call(&url, &[own], "oauthed__whoami", json!({}));
        assert_eq!(failed["error"]["code"], -32003, "{failed}");
    }
    assert_eq!(ep.issued.load(Ordering::SeqCst), issued);
    let log = gw.log_text();
    assert!(log.contains("no valid OAuth token"), "{log}");
    assert!(log.contains("OAuth token fetch failed"), "{log}");
    for s in [
        "client-secret-4d1e",
        "tok-1",
        "client-own-token",
        &client_secret,
    ] {
        assert!(!log.contains(s), "{s:?} in the log");
    }

    // It recovers once the endpoint does.
    ep.failing.store(false, Ordering::SeqCst);
    let back = wait_for(15, || {
        text(&call(&url, &[own], "oauthed__auth_header", json!({}))).starts_with("Bearer tok-")
    });
    assert!(back, "no token after the endpoint recovered");
}
