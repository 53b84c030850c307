//! The admin API: registry changes while clients are connected, persisted in the store.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::support::{
    admin, client_script, free_port, stdio_fixture_toml, Gateway, HttpFixture, Raw, TempDir,
};

fn tools(url: &str) -> Vec<String> {
    let v = client_script(url, json!([["list_tools"]]));
    v[0]["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn admin_api_changes_the_registry_live_and_persistently() {
    let alpha = HttpFixture::start("alpha");
    let keep = TempDir::new("admin");
    let admin_port = free_port();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let cfg = keep.0.join("mcpgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nlisten = \"{addr}\"\nworkers = 2\n\n[admin]\nlisten = \"{admin_addr}\"\ntoken = \"s3cret\"\ndata_dir = {dir:?}\n\n{beta}",
            dir = keep.0.join("data").display().to_string(),
            beta = stdio_fixture_toml("beta", "")
        ),
    )
    .expect("config");
    let mut gw = Gateway::start_with(&cfg, &[], addr, TempDir::new("admin-gw1"));

    // Probes answer anyone; the rest needs the token.
    assert_eq!(admin(admin_addr, "GET", "/healthz", None, None).status, 200);
    assert_eq!(admin(admin_addr, "GET", "/ready", None, None).status, 200);
    assert_eq!(
        admin(admin_addr, "GET", "/admin/upstreams", None, None).status,
        401
    );
    assert_eq!(
        admin(admin_addr, "GET", "/admin/upstreams", Some("wrong"), None).status,
        401
    );
    let doc = admin(
        admin_addr,
        "GET",
        "/admin/openapi.json",
        Some("s3cret"),
        None,
    )
    .json();
    assert!(
        doc["paths"]["/admin/upstreams"]["post"].is_object(),
        "{doc}"
    );

    // Validation errors name the field.
    let bad = admin(
        admin_addr,
        "POST",
        "/admin/upstreams",
        Some("s3cret"),
        Some(&json!({"name": "bad", "transport": "http", "url": "ftp://x"})),
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("upstream[0].url"),
        "{:?}",
        bad.json()
    );

    // A client holding a session sees the new upstream's tools (list_changed) and calls them.
    let url = gw.url();
    let added = std::thread::scope(|s| {
        let watcher = s.spawn(|| client_script(&url, json!([["notifications", 6.0], ["list_tools"], ["call", "alpha__echo", {"text": "new"}]])));
        // Wait until the watcher's session exists (its GET stream opens right after).
        let has_session = || {
            admin(admin_addr, "GET", "/admin/sessions", Some("s3cret"), None).json()["sessions"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        };
        assert!(
            crate::support::wait_for(20, has_session),
            "the watcher never connected"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        let r = admin(
            admin_addr,
            "POST",
            "/admin/upstreams",
            Some("s3cret"),
            Some(&json!({"name": "alpha", "transport": "http", "url": alpha.url()})),
        );
        assert_eq!(r.status, 201, "{:?}", r.json());
        watcher.join().expect("watcher")
    });
    let changed = added[0]["notifications"].as_array().is_some_and(|a| {
        a.iter()
            .any(|n| n["method"] == "notifications/tools/list_changed")
    });
    assert!(changed, "{}\n{}", added[0], gw.log_text());
    assert!(
        added[1]["tools"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t == "alpha__echo")),
        "{}",
        added[1]
    );
    assert_eq!(added[2]["text"][0], "alpha:new", "{}", added[2]);
    assert_eq!(
        admin(
            admin_addr,
            "POST",
            "/admin/upstreams",
            Some("s3cret"),
            Some(&json!({"name": "alpha", "transport": "http", "url": alpha.url()}))
        )
        .status,
        409
    );

    let ups = admin(admin_addr, "GET", "/admin/upstreams", Some("s3cret"), None).json();
    let sources: Vec<(String, String)> = ups["upstreams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| {
                    (
                        u["name"].as_str().unwrap_or("").to_string(),
                        u["source"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        sources.contains(&("alpha".into(), "admin".into()))
            && sources.contains(&("beta".into(), "config".into())),
        "{ups}"
    );
    let t = admin(admin_addr, "GET", "/admin/tools", Some("s3cret"), None).json();
    assert!(
        t["tools"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["name"] == "alpha__echo" && x["upstream"] == "alpha")),
        "{t}"
    );

    // A virtual server added through the API serves its bundle at once.
    let r = admin(
        admin_addr,
        "POST",
        "/admin/servers",
        Some("s3cret"),
        Some(&json!({"name": "team", "tools": ["alpha__echo"]})),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let team = format!("http://{addr}/servers/team/mcp");
    let listed = || {
        admin(admin_addr, "GET", "/admin/servers", Some("s3cret"), None).json()["servers"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    };
    assert!(crate::support::wait_for(10, listed), "{}", gw.log_text());
    assert_eq!(tools(&team), ["alpha__echo"]);
    let servers = admin(admin_addr, "GET", "/admin/servers", Some("s3cret"), None).json();
    assert_eq!(servers["servers"][0]["source"], "admin", "{servers}");

    // A tool switched off leaves the lists and cannot be called; switched on, it is back.
    let off = admin(
        admin_addr,
        "PUT",
        "/admin/tools/alpha__echo",
        Some("s3cret"),
        Some(&json!({"enabled": false})),
    );
    assert_eq!(off.status, 200, "{:?}", off.json());
    assert!(
        crate::support::wait_for(10, || !tools(&url).iter().any(|t| t == "alpha__echo")),
        "{}",
        gw.log_text()
    );
    let denied = client_script(&url, json!([["call", "alpha__echo", {"text": "x"}]]));
    assert_eq!(denied[0]["error"]["code"], -32602, "{}", denied[0]);
    let listed = admin(admin_addr, "GET", "/admin/tools", Some("s3cret"), None).json();
    assert!(
        listed["tools"].as_array().is_some_and(|a| a
            .iter()
            .any(|t| t["name"] == "alpha__echo" && t["enabled"] == false)),
        "{listed}"
    );
    assert_eq!(
        admin(
            admin_addr,
            "PUT",
            "/admin/tools/alpha__echo",
            Some("s3cret"),
            Some(&json!({"enabled": true}))
        )
        .status,
        200
    );
    assert!(
        crate::support::wait_for(10, || tools(&url).iter().any(|t| t == "alpha__echo")),
        "{}",
        gw.log_text()
    );

    // Remove the config-file upstream: its calls get a clear error.
    assert_eq!(
        admin(
            admin_addr,
            "DELETE",
            "/admin/upstreams/beta",
            Some("s3cret"),
            None
        )
        .status,
        200
    );
    assert!(
        crate::support::wait_for(10, || !tools(&url).iter().any(|t| t.starts_with("beta__"))),
        "{}",
        gw.log_text()
    );
    let gone = client_script(&url, json!([["call", "beta__echo", {"text": "x"}]]));
    assert_eq!(gone[0]["error"]["code"], -32602, "{}", gone[0]);
    assert_eq!(
        admin(
            admin_addr,
            "DELETE",
            "/admin/upstreams/beta",
            Some("s3cret"),
            None
        )
        .status,
        404
    );

    // Sessions can be listed and ended.
    let sid = crate::support::initialize(addr, "2025-11-25");
    let list = admin(admin_addr, "GET", "/admin/sessions", Some("s3cret"), None).json();
    assert!(
        list["sessions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["id"] == sid.as_str())),
        "{list}"
    );
    assert_eq!(
        admin(
            admin_addr,
            "DELETE",
            &format!("/admin/sessions/{sid}"),
            Some("s3cret"),
            None
        )
        .status,
        200
    );
    let mut c = Raw::connect(addr);
    c.send(&crate::support::post(
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        &[&format!("Mcp-Session-Id: {sid}")],
    ));
    assert_eq!(c.read().expect("answer").status, 404);

    // Restart: the admin changes are still there (SQLite store).
    assert!(gw.stop().success());
    drop(gw);
    let gw = Gateway::start_with(&cfg, &[], addr, TempDir::new("admin-gw2"));
    let after = tools(&gw.url());
    assert!(
        after.iter().any(|t| t == "alpha__echo"),
        "{after:?}\n{}",
        gw.log_text()
    );
    assert!(!after.iter().any(|t| t.starts_with("beta__")), "{after:?}");
}

/// The command line drives the admin API: tables, `--json`, errors as a non-zero exit.
#[test]
fn cli_manages_upstreams_servers_and_tools() {
    let admin_port = free_port();
    let gw = Gateway::start(
        "",
        &format!("[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"tk\"\ndata_dir = \":memory:\"\nstdio_commands = [\"@self\"]\n\n{}", stdio_fixture_toml("beta", "")),
        "auto",
    );
    let url = format!("http://127.0.0.1:{admin_port}");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mcpgw"))
            .args(args)
            .args(["--admin", &url, "--token", "tk"])
            .env_remove("MCPGW_ADMIN_TOKEN")
            .output()
            .expect("run mcpgw")
    };
    let out = run(&[
        "upstreams",
        "add",
        "demo",
        "--command",
        "@self",
        "--arg",
        "demo-server",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        crate::support::wait_for(15, || tools(&gw.url()).iter().any(|t| t == "demo__echo")),
        "{}",
        gw.log_text()
    );

    let out = run(&["upstreams", "list"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.starts_with("NAME") && table.contains("demo") && table.contains("beta"),
        "{table}"
    );
    let out = run(&["tools", "list", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        v["tools"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t["name"] == "demo__echo")),
        "{v}"
    );

    let out = run(&["servers", "add", "small", "--tool", "demo__*"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["tools", "disable", "demo__reverse"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["upstreams", "remove", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .args(["tools", "list", "--admin", &url, "--token", "wrong"])
        .output()
        .expect("run");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("401"));
    let out = run(&["upstreams", "remove", "demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/metrics` after known traffic: per-tool counts by outcome and latency histograms, in a
/// form a Prometheus parser reads.
#[test]
fn metrics_count_known_traffic() {
    let alpha = HttpFixture::start("alpha");
    let admin_port = free_port();
    let gw = Gateway::start(
        "",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"st\"\ndata_dir = \":memory:\"\n\n{}",
            crate::support::http_upstream_toml("alpha", &alpha.url(), "call_timeout_ms = 1000")
        ),
        "auto",
    );
    let steps = client_script(
        &gw.url(),
        json!([
            ["call", "alpha__echo", {"text": "1"}],
            ["call", "alpha__echo", {"text": "2"}],
            ["call", "alpha__echo", {"text": "3"}],
            ["call", "alpha__slow", {"seconds": 3}],
            ["call", "alpha__nope", {}],
            ["read", "mcpgw://alpha/fixture://alpha/info"],
        ]),
    );
    assert_eq!(steps[3]["error"]["code"], -32004, "{}", steps[3]);
    let addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let r = admin(addr, "GET", "/metrics", None, None);
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).to_string();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text parses");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .and_then(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    };
    let echo = [("target", "alpha__echo"), ("upstream", "alpha")];
    assert_eq!(
        value("mcpgw_calls_total", &[echo[0], echo[1], ("outcome", "ok")]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            "mcpgw_calls_total",
            &[("target", "alpha__slow"), ("outcome", "timeout")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            "mcpgw_calls_total",
            &[("target", "resources/read"), ("outcome", "ok")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        value("mcpgw_calls_total", &[("target", "alpha__nope")]).is_none(),
        "unknown tools are not routed: {text}"
    );
    // The histogram: 3 observations, cumulative buckets ending at 3.
    let hist = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "mcpgw_call_duration_seconds"
                && s.labels.get("target") == Some("alpha__echo")
        })
        .expect("histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
            assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
            assert_eq!(counts.last().copied(), Some(3.0), "{counts:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    // Each call's time split in two: waiting on the upstream, and the gateway's own.
    let hist_of = |name: &str, target: &str| -> (f64, f64) {
        let h = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("target") == Some(target))
            .unwrap_or_else(|| panic!("{name} {target}: {text}"));
        match &h.value {
            prometheus_parse::Value::Histogram(b) => {
                let count = b.last().map_or(0.0, |b| b.count);
                let sum = scrape
                    .samples
                    .iter()
                    .find(|s| {
                        s.metric == format!("{name}_sum") && s.labels.get("target") == Some(target)
                    })
                    .and_then(|s| match s.value {
                        prometheus_parse::Value::Untyped(v) => Some(v),
                        _ => None,
                    })
                    .unwrap_or(f64::NAN);
                (count, sum)
            }
            other => panic!("{name}: not a histogram: {other:?}"),
        }
    };
    for name in ["mcpgw_call_upstream_seconds", "mcpgw_call_gateway_seconds"] {
        assert_eq!(hist_of(name, "alpha__echo").0, 3.0, "{name}\n{text}");
    }
    // The slow call waited on its upstream until the timeout: that time is the upstream's.
    let (_, up) = hist_of("mcpgw_call_upstream_seconds", "alpha__slow");
    let (_, gw_own) = hist_of("mcpgw_call_gateway_seconds", "alpha__slow");
    assert!(up > gw_own, "upstream {up} s, gateway {gw_own} s\n{text}");
    // Per principal (no auth configured: everyone is `anonymous`).
    assert!(
        value(
            "mcpgw_principal_calls_total",
            &[("principal", "anonymous"), ("outcome", "ok")]
        )
        .is_some_and(|n| n >= 4.0),
        "{text}"
    );
    assert_eq!(
        value("mcpgw_upstream_up", &[("upstream", "alpha")]),
        Some(1.0),
        "{text}"
    );
    // Bytes both ways, and the same figures as JSON for the admin page.
    for dir in ["in", "out"] {
        let b = value("mcpgw_call_bytes_total", &[echo[0], ("direction", dir)]);
        assert!(b.is_some_and(|b| b > 100.0), "{dir}: {b:?}\n{text}");
    }
    let stats = admin(addr, "GET", "/admin/stats", Some("st"), None).json();
    let row = stats["calls"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["target"] == "alpha__echo"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["outcomes"]["ok"], 3, "{stats}");
    assert_eq!(row["calls"], 3, "{stats}");
    assert!(
        row["latency_ms"]["p50"].as_f64().is_some_and(|p| p > 0.0),
        "{stats}"
    );
    assert!(row["bytes_out"].as_u64().is_some_and(|b| b > 0), "{stats}");
    assert!(row["upstream_ms"]["p50"].as_f64().is_some(), "{stats}");
    assert!(row["gateway_ms"]["p50"].as_f64().is_some(), "{stats}");
    assert_eq!(stats["principals"][0]["principal"], "anonymous", "{stats}");
}

/// The audit log: a line per call and per admin change, never arguments; the chain verifies,
/// and an edited line makes `mcpgw audit verify` fail naming where.
#[test]
fn audit_log_is_chained_and_verifiable() {
    let keep = TempDir::new("audit");
    let log = keep.0.join("audit.jsonl");
    let admin_port = free_port();
    let gw = Gateway::start(
        "",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"tk\"\ndata_dir = \":memory:\"\n\n[audit]\npath = {:?}\n\n{}",
            log.display().to_string(),
            stdio_fixture_toml("beta", "")
        ),
        "auto",
    );
    client_script(
        &gw.url(),
        json!([["call", "beta__echo", {"text": "secret-argument"}], ["call", "beta__fail", {}]]),
    );
    let addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    assert_eq!(
        admin(
            addr,
            "PUT",
            "/admin/tools/beta__add",
            Some("tk"),
            Some(&json!({"enabled": false}))
        )
        .status,
        200
    );
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(
        crate::support::wait_for(10, || lines() >= 3),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains("secret-argument"),
        "arguments must not be logged: {text}"
    );
    assert!(
        text.contains("\"target\":\"beta__echo\"") && text.contains("\"event\":\"admin_change\""),
        "{text}"
    );
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mcpgw"))
            .args(["audit", "verify"])
            .arg(&log)
            .output()
            .expect("run")
    };
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("chain intact"));
    let edited = text.replacen("beta__echo", "beta__ech0", 1);
    std::fs::write(&log, edited).expect("tamper");
    let bad = verify();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("audit.jsonl:2:"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

// === issue 18: what the admin token may do ===

/// The `[admin]` table of these tests: token from the environment, store in `dir`.
fn admin_toml(admin_addr: SocketAddr, dir: &TempDir, extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"{admin_addr}\"\ndata_dir = {:?}\n{extra}\n",
        dir.0.join("data").display().to_string()
    )
}

/// A gateway on `cfg_text` (listen and workers added) with `env`; (gateway, admin address).
fn admin_gateway(
    dir: &TempDir,
    body: impl Fn(SocketAddr) -> String,
    env: &[(&str, &str)],
) -> (Gateway, SocketAddr) {
    let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let cfg = dir.0.join("mcpgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nlisten = \"{addr}\"\nworkers = 1\n\n{}",
            body(admin_addr)
        ),
    )
    .expect("config");
    let gw = Gateway::try_start_with_env(&cfg, &[], addr, TempDir::new("admin-sec-gw"), env)
        .unwrap_or_else(|log| panic!("mcpgw did not start:\n{log}"));
    (gw, admin_addr)
}

/// The gateway's child processes whose command line holds `--name <name>`.
fn fixture_children(gw: &Gateway, name: &str) -> Vec<u32> {
    crate::support::children(gw.proc.pid())
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                c.windows(name.len() + 7)
                    .any(|w| w == format!("--name\0{name}").as_bytes())
            })
        })
        .collect()
}

fn error_of(r: &crate::support::Resp) -> String {
    r.json()["error"].as_str().unwrap_or("").to_string()
}

/// The admin token is not a shell: stdio commands come from `[admin] stdio_commands` only,
/// loader variables and `cwd` are refused, an admin-added child does not see the gateway's
/// environment, a DELETE reaps the child before it answers, and entries an older store
/// holds that break these rules are not started.
#[test]
fn admin_token_cannot_run_commands() {
    let dir = TempDir::new("admin-shell");
    let marker = dir.0.join("ran");
    let py = crate::support::python().display().to_string();
    let script = crate::support::py("upstream.py").display().to_string();
    let key = crate::secrets::new_key();
    let env = [
        ("MCPGW_SECRET_KEY", key.as_str()),
        ("MCPGW_ADMIN_TOKEN", "tk"),
        ("MCPGW_TEST_GATEWAY_ONLY", "gateway-env-4411"),
    ];
    let allow = format!("stdio_commands = [{py:?}]");
    let (mut gw, admin_addr) = admin_gateway(&dir, |a| admin_toml(a, &dir, &allow), &env);
    let post = |body: Value| {
        admin(
            admin_addr,
            "POST",
            "/admin/upstreams",
            Some("tk"),
            Some(&body),
        )
    };

    // A command the config file did not allow: refused, and never run.
    let sh = json!({"name": "sh", "transport": "stdio", "command": "/bin/sh",
        "args": ["-c", format!("touch {}", marker.display())]});
    let r = post(sh.clone());
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        error_of(&r).contains("upstream[0].command") && error_of(&r).contains("stdio_commands"),
        "{r:?}"
    );
    // An allowed program, but with a loader variable or a working directory: refused.
    let fixture = |name: &str| {
        json!({"name": name, "transport": "stdio", "command": py,
            "args": [script, "--name", name, "--transport", "stdio"]})
    };
    let mut preload = fixture("pre");
    preload["env"] = json!({"LD_PRELOAD": "/tmp/evil.so"});
    let r = post(preload);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(error_of(&r).contains("upstream[0].env.LD_PRELOAD"), "{r:?}");
    let mut cwd = fixture("cwd");
    cwd["cwd"] = json!("/");
    let r = post(cwd);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(error_of(&r).contains("upstream[0].cwd"), "{r:?}");

    // Allowed: it runs, without the gateway's environment.
    let r = post(fixture("kid"));
    assert_eq!(r.status, 201, "{r:?}");
    let url = gw.url();
    assert!(
        crate::support::wait_for(20, || tools(&url).iter().any(|t| t == "kid__echo")),
        "{}",
        gw.log_text()
    );
    let kids = fixture_children(&gw, "kid");
    assert_eq!(kids.len(), 1, "{kids:?}");
    let environ = std::fs::read(format!("/proc/{}/environ", kids[0])).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    for secret in ["MCPGW_SECRET_KEY", "MCPGW_ADMIN_TOKEN", "gateway-env-4411"] {
        assert!(
            !environ.contains(secret),
            "{secret} in the child's environment"
        );
    }

    // DELETE answers once the child is gone (reaped), and it does not come back.
    let r = admin(
        admin_addr,
        "DELETE",
        "/admin/upstreams/kid",
        Some("tk"),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        crate::support::proc_state(kids[0]),
        None,
        "child still there after DELETE"
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(fixture_children(&gw, "kid").is_empty(), "{}", gw.log_text());
    assert!(!marker.exists(), "the refused command ran");
    assert!(gw.stop().success());
    drop(gw);

    // An older store holding entries the policy refuses: the gateway starts without them.
    let vault = HttpFixture::start("vault");
    let db = rusqlite::Connection::open(dir.0.join("data/mcpgw.db")).expect("store");
    let old_sh = format!(
        "name = \"oldsh\"\ntransport = \"stdio\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"touch {}\"]\n",
        marker.display()
    );
    let old_env = format!(
        "name = \"oldenv\"\ntransport = \"http\"\nurl = \"{}\"\n[headers]\nX-Leak = \"env:MCPGW_SECRET_KEY\"\n",
        vault.url()
    );
    for (name, spec) in [("oldsh", &old_sh), ("oldenv", &old_env)] {
        db.execute(
            "INSERT INTO upstreams (name, spec, updated_ms) VALUES (?1, ?2, 0)",
            rusqlite::params![name, spec],
        )
        .expect("insert");
    }
    drop(db);
    let (gw, admin_addr) = admin_gateway(&dir, |a| admin_toml(a, &dir, &allow), &env);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert!(!marker.exists(), "a stored command the policy refuses ran");
    let listed = admin(admin_addr, "GET", "/admin/upstreams", Some("tk"), None).json();
    assert_eq!(listed["upstreams"], json!([]), "{listed}");
    let log = gw.log_text();
    assert!(
        log.contains("oldsh") && log.contains("oldenv") && log.contains("upstream[0].command"),
        "{log}"
    );
}

/// Secrets given to the admin API are literal: `env:` references and `enc:v1:` values
/// (e.g. a config-file secret's ciphertext) are refused, as is a CA file path.
#[test]
fn admin_api_takes_literal_secrets_only() {
    let dir = TempDir::new("admin-secrets");
    let vault = HttpFixture::start("vault");
    let key = crate::secrets::new_key();
    let sealed = crate::secrets::encrypt(&key, "config-only-secret-5150");
    let env = [
        ("MCPGW_SECRET_KEY", key.as_str()),
        ("MCPGW_ADMIN_TOKEN", "tk"),
    ];
    let file = crate::support::http_upstream_toml(
        "cfg",
        &vault.url(),
        &format!("[upstream.headers]\nX-Token = {sealed:?}"),
    );
    let (_gw, admin_addr) = admin_gateway(
        &dir,
        |a| format!("{}\n{file}", admin_toml(a, &dir, "")),
        &env,
    );
    let post = |body: Value| {
        admin(
            admin_addr,
            "POST",
            "/admin/upstreams",
            Some("tk"),
            Some(&body),
        )
    };
    let base = json!({"name": "leak", "transport": "http", "url": vault.url()});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (
            with("headers", json!({"X-Leak": "env:MCPGW_SECRET_KEY"})),
            "upstream[0].headers.X-Leak",
        ),
        (
            with("auth", json!({"bearer": "env:HOME"})),
            "upstream[0].auth.bearer",
        ),
        (
            with("headers", json!({"X-Leak": sealed})),
            "upstream[0].headers.X-Leak",
        ),
        (
            with("auth", json!({"header": "X-K", "value": "enc:v2:abc"})),
            "upstream[0].auth.value",
        ),
    ] {
        let r = post(body);
        assert_eq!(r.status, 400, "{field}: {r:?}");
        assert!(error_of(&r).contains(field), "{field}: {r:?}");
    }
    let mut ca = base.clone();
    ca["url"] = json!("https://127.0.0.1:1/mcp");
    ca["tls_ca"] = json!("/etc/passwd");
    let r = post(ca);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(error_of(&r).contains("upstream[0].tls_ca"), "{r:?}");
    let listed = admin(admin_addr, "GET", "/admin/upstreams", Some("tk"), None).json();
    assert!(
        listed["upstreams"].as_array().is_some_and(|a| a.len() == 1),
        "{listed}"
    );
}

/// `POST /admin/servers` takes `allowed_roles` the config file's `[[role]]` defines, and
/// refuses others naming the field.
#[test]
fn admin_servers_take_defined_roles() {
    let dir = TempDir::new("admin-roles");
    let env = [("MCPGW_ADMIN_TOKEN", "tk")];
    let (_gw, admin_addr) = admin_gateway(
        &dir,
        |a| {
            format!(
                "{}\n[auth]\nanonymous_roles = [\"ops\"]\n\n[[role]]\nname = \"ops\"\ntools = [\"*\"]\n\n{}",
                admin_toml(a, &dir, ""),
                stdio_fixture_toml("beta", "")
            )
        },
        &env,
    );
    let post = |body: Value| {
        admin(
            admin_addr,
            "POST",
            "/admin/servers",
            Some("tk"),
            Some(&body),
        )
    };
    let r = post(json!({"name": "opsonly", "tools": ["beta__*"], "allowed_roles": ["ops"]}));
    assert_eq!(r.status, 201, "{r:?}");
    let r = post(json!({"name": "ghost", "tools": ["beta__*"], "allowed_roles": ["nobody"]}));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(error_of(&r).contains("allowed_roles"), "{r:?}");
}

/// A stdio upstream that keeps failing to start does not hold back later admin changes:
/// once a write is answered, it is live.
#[test]
fn failing_stdio_child_does_not_hold_back_admin_changes() {
    let dir = TempDir::new("admin-stall");
    let alpha = HttpFixture::start("alpha");
    let env = [("MCPGW_ADMIN_TOKEN", "tk")];
    let (gw, admin_addr) = admin_gateway(
        &dir,
        |a| admin_toml(a, &dir, "stdio_commands = [\"/bin/false\"]"),
        &env,
    );
    let r = admin(
        admin_addr,
        "POST",
        "/admin/upstreams",
        Some("tk"),
        Some(&json!({"name": "broken", "transport": "stdio", "command": "/bin/false"})),
    );
    assert!(r.status == 201, "{r:?}");
    let r = admin(
        admin_addr,
        "POST",
        "/admin/upstreams",
        Some("tk"),
        Some(&json!({"name": "alpha", "transport": "http", "url": alpha.url()})),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let answered = std::time::Instant::now();
    let url = gw.url();
    assert!(
        crate::support::wait_for(3, || tools(&url).iter().any(|t| t == "alpha__echo")),
        "not live {:?} after its 201\n{}",
        answered.elapsed(),
        gw.log_text()
    );
}
