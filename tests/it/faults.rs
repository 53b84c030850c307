//! Upstream failures: killed mid-call, too slow, restarted; no zombies after shutdown.

use serde_json::json;

use crate::support::{
    children, client_script, fd_count, free_port, http_upstream_toml, proc_state,
    stdio_fixture_toml, wait_for, Gateway, HttpFixture,
};

#[test]
fn stdio_upstream_killed_mid_call_is_an_error_then_restarted() {
    let mut gw = Gateway::start(
        "",
        &stdio_fixture_toml("beta", "call_timeout_ms = 20000"),
        "auto",
    );
    let first: Vec<u32> = children(gw.proc.pid());
    assert_eq!(first.len(), 1, "one child expected: {first:?}");
    let fds_before = fd_count(gw.proc.pid());

    let steps = client_script(&gw.url(), json!([["call", "beta__crash", {}]]));
    assert_eq!(steps[0]["error"]["code"], -32003, "crash: {}", steps[0]);

    // The crashed child is reaped (no zombie) and a new one serves calls.
    assert!(
        wait_for(10, || proc_state(first[0]).is_none()),
        "old child {} still exists in state {:?}",
        first[0],
        proc_state(first[0])
    );
    assert!(
        wait_for(20, || children(gw.proc.pid())
            .iter()
            .any(|p| *p != first[0])),
        "child not restarted:\n{}",
        gw.log_text()
    );
    let mut ok = false;
    for _ in 0..40 {
        let steps = client_script(&gw.url(), json!([["call", "beta__whoami", {}]]));
        if steps[0]["text"][0] == "beta" {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(ok, "restarted child never answered:\n{}", gw.log_text());
    // The old child's pipes are closed: no descriptors leak across restarts.
    assert!(
        wait_for(5, || fd_count(gw.proc.pid()) <= fds_before),
        "fds before {fds_before}, after {}",
        fd_count(gw.proc.pid())
    );

    // Shutdown kills and reaps every child.
    let kids = children(gw.proc.pid());
    assert!(gw.stop().success(), "{}", gw.log_text());
    for k in kids {
        assert!(
            wait_for(5, || proc_state(k).is_none()),
            "child {k} left behind in state {:?}",
            proc_state(k)
        );
    }
}

#[test]
fn http_upstream_killed_mid_call_and_slow_calls() {
    let alpha = HttpFixture::start("alpha");
    let gw = Gateway::start(
        "",
        &format!(
            "{}{}",
            http_upstream_toml("alpha", &alpha.url(), "call_timeout_ms = 1500"),
            stdio_fixture_toml("beta", "call_timeout_ms = 1500")
        ),
        "epoll",
    );
    let steps = client_script(
        &gw.url(),
        json!([
            ["call", "alpha__slow", {"seconds": 10}],
            ["call", "beta__slow", {"seconds": 10}],
            ["call", "beta__echo", {"text": "still here"}],
            ["call", "alpha__echo", {"text": "still here"}],
            ["call", "alpha__crash", {}],
            ["call", "alpha__echo", {"text": "gone"}],
            ["call", "beta__echo", {"text": "unaffected"}],
        ]),
    );
    assert_eq!(steps[0]["error"]["code"], -32004, "timeout: {}", steps[0]);
    assert_eq!(steps[1]["error"]["code"], -32004, "timeout: {}", steps[1]);
    assert_eq!(steps[2]["text"][0], "beta:still here", "{}", steps[2]);
    assert_eq!(steps[3]["text"][0], "alpha:still here", "{}", steps[3]);
    assert_eq!(steps[4]["error"]["code"], -32003, "killed: {}", steps[4]);
    assert_eq!(steps[5]["error"]["code"], -32003, "down: {}", steps[5]);
    assert_eq!(steps[6]["text"][0], "beta:unaffected", "{}", steps[6]);
    drop(alpha);
}

/// A tool with its own timeout (`tool_timeouts_ms`) may run longer than the upstream's.
#[test]
fn per_tool_timeouts() {
    let gw = Gateway::start(
        "",
        &stdio_fixture_toml(
            "beta",
            "call_timeout_ms = 800\ntool_timeouts_ms = { slow = 5000 }",
        ),
        "auto",
    );
    let steps = client_script(
        &gw.url(),
        json!([["call", "beta__slow", {"seconds": 1.5}], ["call", "beta__slow_progress", {"seconds": 0.1}]]),
    );
    assert_eq!(steps[0]["text"][0], "done", "its own timeout: {}", steps[0]);
    assert_eq!(steps[1]["text"][0], "finished", "{}", steps[1]);
}

/// An upstream that is down at start is left out of the lists, not fatal.
#[test]
fn upstream_down_at_start_is_left_out() {
    let port = crate::support::free_port();
    let gw = Gateway::start(
        "",
        &format!(
            "{}{}",
            http_upstream_toml(
                "gone",
                &format!("http://127.0.0.1:{port}/mcp"),
                "connect_timeout_ms = 500"
            ),
            stdio_fixture_toml("beta", "")
        ),
        "epoll",
    );
    let tour = crate::support::client(&gw.url(), "tour", &[]);
    let tools = tour["tools"].as_array().cloned().unwrap_or_default();
    assert!(!tools.is_empty(), "{tour}");
    assert!(
        tools
            .iter()
            .all(|t| t.as_str().is_some_and(|t| t.starts_with("beta__"))),
        "{tour}"
    );
    assert!(
        gw.log_text().contains("left out of the catalog"),
        "{}",
        gw.log_text()
    );
}

/// An HTTP upstream restarted behind the gateway forgets the sessions the gateway holds
/// with it and answers 404: the gateway initializes again once and the call succeeds, both
/// for a client's own upstream session and for the shared one.
#[test]
fn http_upstream_restart_reinitializes_the_session() {
    use crate::support::{initialize, post, Raw};

    let alpha = HttpFixture::start("alpha");
    let port = alpha.port;
    // Sessions are the legacy era's (a 2026-07-28 upstream has none to renew).
    let upstreams = format!(
        "{}{}",
        http_upstream_toml("alpha", &alpha.url(), "era = \"legacy\""),
        http_upstream_toml(
            "shared",
            &alpha.url(),
            "session = \"shared\"\nera = \"legacy\""
        )
    );
    let gw = Gateway::start("", &upstreams, "auto");
    let sid = initialize(gw.addr, "2025-11-25");
    let call = |c: &mut Raw, tool: &str, text: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"{text}"}}}}}}"#
        );
        c.send(&post(
            &body,
            &[
                &format!("Mcp-Session-Id: {sid}"),
                "Accept: application/json",
            ],
        ));
        let r = c.read().expect("answer");
        r.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mut c = Raw::connect(gw.addr);
    assert_eq!(call(&mut c, "alpha__echo", "one"), "alpha:one");
    assert_eq!(call(&mut c, "shared__echo", "one"), "alpha:one");

    drop(alpha);
    let _alpha2 = HttpFixture::start_on("alpha", port);
    let mut c = Raw::connect(gw.addr);
    assert_eq!(
        call(&mut c, "alpha__echo", "two"),
        "alpha:two",
        "{}",
        gw.log_text()
    );
    assert_eq!(
        call(&mut c, "shared__echo", "two"),
        "alpha:two",
        "{}",
        gw.log_text()
    );
    let expired = gw
        .log_text()
        .matches("upstream session expired; initializing again")
        .count();
    assert!(expired >= 2, "{}", gw.log_text());
}

/// A gateway in front of a gateway: the inner one pages its lists (page_size = 2), the outer
/// one follows every cursor and serves all of them, namespaced twice.
#[test]
fn upstream_pagination_is_followed() {
    let inner = Gateway::start("page_size = 2", &stdio_fixture_toml("beta", ""), "epoll");
    let outer = Gateway::start("", &http_upstream_toml("inner", &inner.url(), ""), "epoll");
    let tour = crate::support::client(&outer.url(), "tour", &[]);
    let tools: Vec<&str> = tour["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    // Every tool the inner gateway lists (over many pages) is there.
    let inner_tour = crate::support::client(&inner.url(), "tour", &[]);
    let inner_n = inner_tour["tools"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        inner_n > 4 && inner_tour["tool_pages"].as_u64() > Some(2),
        "{inner_tour}"
    );
    assert_eq!(tools.len(), inner_n, "{tour}");
    assert!(tools.contains(&"inner__beta__echo"), "{tools:?}");
    let steps = client_script(
        &outer.url(),
        json!([["call", "inner__beta__echo", {"text": "deep"}]]),
    );
    assert_eq!(steps[0]["text"][0], "beta:deep", "{}", steps[0]);
}

/// Reload under load: a client keeps calling while the config is reloaded (SIGHUP) 20 times,
/// adding and removing an upstream and a virtual server; no call fails. A bad config is
/// rejected whole and the running one kept. A removed upstream's tools answer "Unknown tool"
/// and its child is gone.
#[test]
fn reload_under_load_loses_no_call() {
    let alpha = HttpFixture::start("alpha");
    let base = http_upstream_toml("alpha", &alpha.url(), "");
    let extra = "[[upstream]]\nname = \"extra\"\ntransport = \"stdio\"\ncommand = \"@self\"\nargs = [\"demo-server\"]\n[[server]]\nname = \"x\"\ntools = [\"extra__*\"]\n";
    let gw = Gateway::start("refresh_interval_ms = 600000", &base, "auto");
    let cfg = gw.config.clone().expect("config path");
    let head = std::fs::read_to_string(&cfg).expect("config");
    let url = gw.url();
    let calls = 1500;
    let result = std::thread::scope(|s| {
        let load =
            s.spawn(|| crate::support::client(&url, "many", &[&calls.to_string(), "alpha__echo"]));
        for i in 0..20 {
            let text = if i % 2 == 0 {
                format!("{head}{extra}")
            } else {
                head.clone()
            };
            crate::support::rewrite_config(&cfg, &text);
            gw.signal("HUP");
            std::thread::sleep(std::time::Duration::from_millis(150));
        }
        // The last good config (no "extra") applied: a reload reads the file when it runs,
        // so on a loaded machine the bad one below could otherwise be read in its place.
        let applied = wait_for(60, || {
            let log = gw.log_text();
            log.match_indices("SIGHUP: reloading")
                .nth(19)
                .is_some_and(|(i, _)| log[i..].contains("config reloaded upstreams=1"))
        });
        assert!(applied, "{}", gw.log_text());
        // A bad config is refused whole; the gateway keeps serving the last good one.
        crate::support::rewrite_config(&cfg, &format!("{head}{extra}[gateway]\nbogus = 1\n"));
        gw.signal("HUP");
        load.join().expect("load thread")
    });
    assert_eq!(result["ok"], calls, "{result}\n{}", gw.log_text());
    assert_eq!(result["failed"], 0, "{result}");
    let log = gw.log_text();
    assert!(
        wait_for(10, || gw.log_text().contains("config rejected")),
        "{log}"
    );
    // Every SIGHUP is seen; HUPs that arrive while the control plane is busy (a reload
    // waits for a new stdio child) are applied once, from the file as it is then.
    let log = gw.log_text();
    assert_eq!(log.matches("SIGHUP: reloading").count(), 21, "{log}");
    assert!(log.matches("config reloaded").count() >= 3, "{log}");

    // The last good config had no "extra" (20 reloads, the last one without it).
    let steps = client_script(
        &gw.url(),
        json!([["call", "extra__echo", {"text": "x"}], ["call", "alpha__echo", {"text": "still"}]]),
    );
    assert_eq!(
        steps[0]["error"]["code"], -32602,
        "removed upstream: {}",
        steps[0]
    );
    assert_eq!(steps[1]["text"][0], "alpha:still", "{}", steps[1]);
    assert!(
        wait_for(10, || children(gw.proc.pid()).is_empty()),
        "extra's child still running: {:?}",
        children(gw.proc.pid())
    );

    // Add it back: the client sees it at once.
    crate::support::rewrite_config(&cfg, &format!("{head}{extra}"));
    gw.signal("HUP");
    let mut ok = false;
    for _ in 0..40 {
        let steps = client_script(
            &gw.url(),
            json!([["call", "extra__echo", {"text": "back"}]]),
        );
        if steps[0]["text"][0] == "back" {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(ok, "{}", gw.log_text());
    let x = client_script(
        &format!("http://{}/servers/x/mcp", gw.addr),
        json!([["list_tools"]]),
    );
    assert!(
        x[0]["tools"].as_array().is_some_and(|a| a
            .iter()
            .all(|t| t.as_str().unwrap_or("").starts_with("extra__"))),
        "{}",
        x[0]
    );
}

/// Health checks: an upstream that stops answering leaves the lists (clients get
/// list_changed) and comes back when it answers again.
#[test]
fn down_upstream_leaves_the_lists_and_returns() {
    let alpha = HttpFixture::start("alpha");
    let port = alpha.port;
    let admin_port = free_port();
    let upstreams = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"tk\"\ndata_dir = \":memory:\"\n\n{}{}",
        http_upstream_toml("alpha", &alpha.url(), ""),
        stdio_fixture_toml("beta", "")
    );
    let adm: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let gw = Gateway::start(
        "health_interval_ms = 300\nrefresh_interval_ms = 600000",
        &upstreams,
        "auto",
    );
    let url = gw.url();
    let has_alpha = |url: &str| {
        let v = client_script(url, json!([["list_tools"]]));
        v[0]["tools"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t == "alpha__echo"))
    };
    assert!(has_alpha(&url));
    let watched = std::thread::scope(|s| {
        let w = s.spawn(|| client_script(&url, json!([["notifications", 8.0], ["list_tools"]])));
        // The watcher must be listening (its GET stream open) before the upstream goes:
        // a loaded machine can take seconds to start a Python client.
        assert!(
            wait_for(30, || crate::support::scrape(
                adm,
                "tk",
                "mcpgw_get_streams"
            ) >= 1.0),
            "the watcher never opened its GET stream"
        );
        drop(alpha);
        w.join().expect("watcher")
    });
    let changed = watched[0]["notifications"].as_array().is_some_and(|a| {
        a.iter()
            .any(|n| n["method"] == "notifications/tools/list_changed")
    });
    assert!(changed, "{}\n{}", watched[0], gw.log_text());
    let tools = watched[1]["tools"].as_array().cloned().unwrap_or_default();
    assert!(
        !tools
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.starts_with("alpha__"))),
        "{tools:?}"
    );
    assert!(tools.iter().any(|t| t == "beta__echo"), "{tools:?}");
    assert!(
        gw.log_text().contains("to=\"down\"") || gw.log_text().contains("to=down"),
        "{}",
        gw.log_text()
    );

    let _alpha2 = HttpFixture::start_on("alpha", port);
    assert!(
        wait_for(20, || has_alpha(&url)),
        "alpha never came back:\n{}",
        gw.log_text()
    );
}

/// `watch_config = true`: editing the config file is enough.
#[test]
fn watched_config_file_reloads_on_change() {
    let gw = Gateway::start(
        "watch_config = true",
        &stdio_fixture_toml("beta", ""),
        "epoll",
    );
    let cfg = gw.config.clone().expect("config path");
    let text = std::fs::read_to_string(&cfg).expect("config");
    crate::support::rewrite_config(&cfg, &format!("{text}\n[[upstream]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = \"@self\"\nargs = [\"demo-server\"]\n"));
    let has_demo = || {
        let v = client_script(&gw.url(), json!([["list_tools"]]));
        v[0]["tools"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t == "demo__echo"))
    };
    assert!(wait_for(15, has_demo), "{}", gw.log_text());
    assert!(
        gw.log_text().contains("config file changed"),
        "{}",
        gw.log_text()
    );
}

/// SIGTERM drains under load: 32 calls in flight (HTTP and stdio upstreams) all finish and
/// are answered, `/ready` answers 503 at once, new connections are refused, an open GET
/// stream gets a last event (a comment and a reconnection time) and ends, and the gateway
/// exits 0.
#[test]
fn shutdown_drains_calls_in_flight() {
    use crate::support::{admin, initialize, post, Raw};

    let alpha = HttpFixture::start("alpha");
    let admin_port = free_port();
    let upstreams = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"tk\"\ndata_dir = \":memory:\"\n\n{}{}",
        http_upstream_toml("alpha", &alpha.url(), ""),
        stdio_fixture_toml("beta", "")
    );
    let adm: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let mut gw = Gateway::start("drain_timeout_ms = 10000", &upstreams, "auto");
    let sid = initialize(gw.addr, "2025-11-25");
    let mut stream = Raw::connect(gw.addr);
    stream.send(format!("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nMcp-Session-Id: {sid}\r\n\r\n").as_bytes());
    let head = stream.read_until(b"\r\n\r\n");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut conns: Vec<(String, Raw)> = (0..32)
        .map(|i| {
            let tool = if i % 2 == 0 { "alpha__slow" } else { "beta__slow" };
            let mut c = Raw::connect(gw.addr);
            c.send(&post(
                &format!(r#"{{"jsonrpc":"2.0","id":"c{i}","method":"tools/call","params":{{"name":"{tool}","arguments":{{"seconds":1.5}}}}}}"#),
                &[&format!("Mcp-Session-Id: {sid}"), "Accept: application/json"],
            ));
            (format!("c{i}"), c)
        })
        .collect();
    assert!(
        wait_for(10, || crate::support::scrape(
            adm,
            "tk",
            "mcpgw_calls_in_flight"
        ) >= 32.0),
        "calls in flight: {}",
        crate::support::scrape(adm, "tk", "mcpgw_calls_in_flight")
    );
    gw.signal("TERM");
    assert!(
        wait_for(5, || admin(adm, "GET", "/ready", None, None).status == 503),
        "/ready must answer 503 once draining starts"
    );
    assert!(
        wait_for(5, || std::net::TcpStream::connect(gw.addr).is_err()),
        "still accepting after SIGTERM"
    );
    let tail = stream.read_until(b"retry: 1000");
    let tail = String::from_utf8_lossy(&tail);
    assert!(
        tail.contains(": shutting down") && tail.contains("retry: 1000"),
        "{tail}"
    );
    assert!(stream.closed(), "the GET stream ends");
    for (id, c) in conns.iter_mut() {
        let r = c.read().expect("the call in flight is answered");
        assert_eq!(r.json()["id"], id.as_str());
        assert_eq!(
            r.json()["result"]["content"][0]["text"],
            "done",
            "{:?}",
            r.json()
        );
    }
    let status = gw.stop();
    assert!(status.success(), "{status}\n{}", gw.log_text());
}
