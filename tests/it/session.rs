//! MCP session semantics through the gateway: progress, upstream requests to the client
//! (sampling, elicitation, roots), logging, subscriptions, list_changed, cancellation and
//! resumption, with the official Python SDK as client and as upstream.

use serde_json::json;

use crate::support::{
    client_script, http_upstream_toml, initialize, post, stdio_fixture_toml, Gateway, HttpFixture,
    Raw,
};

/// Lines `data: ...` of an SSE body, parsed.
fn sse_messages(raw: &[u8]) -> Vec<(Option<String>, serde_json::Value)> {
    let text = String::from_utf8_lossy(raw);
    let mut out = Vec::new();
    let mut id = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.trim().to_string());
        } else if let Some(d) = line.strip_prefix("data: ") {
            if let Ok(v) = serde_json::from_str(d) {
                out.push((id.take(), v));
            }
        }
    }
    out
}

/// A POST stream cut mid-call resumes on a GET with `Last-Event-ID`: the events the client
/// missed, then the response.
#[test]
fn cut_stream_resumes_with_last_event_id() {
    let alpha = HttpFixture::start("alpha");
    let gw = Gateway::start("", &http_upstream_toml("alpha", &alpha.url(), ""), "auto");
    let sid = initialize(gw.addr, "2025-11-25");
    let s = format!("Mcp-Session-Id: {sid}");

    let mut c = Raw::connect(gw.addr);
    c.send(&post(
        r#"{"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"alpha__progress","arguments":{"steps":5,"delay":0.3},"_meta":{"progressToken":"tok"}}}"#,
        &[&s],
    ));
    let first = c.read_until(b"\n\n\r\n");
    let msgs = sse_messages(&first);
    assert!(
        !msgs.is_empty(),
        "no first event: {}",
        String::from_utf8_lossy(&first)
    );
    let (id, msg) = &msgs[0];
    assert_eq!(msg["method"], "notifications/progress", "{msg}");
    assert_eq!(
        msg["params"]["progressToken"], "tok",
        "the client's own token: {msg}"
    );
    let id = id.clone().expect("events carry ids");
    drop(c); // the connection breaks mid-call

    let mut g = Raw::connect(gw.addr);
    g.send(format!("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{s}\r\nLast-Event-ID: {id}\r\n\r\n").as_bytes());
    let rest = g.read_until(b"0\r\n\r\n");
    let msgs = sse_messages(&rest);
    let progress: Vec<_> = msgs
        .iter()
        .filter(|(_, m)| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(
        progress.len(),
        4,
        "the 4 missed progress events: {}",
        String::from_utf8_lossy(&rest)
    );
    let last = msgs.last().map(|(_, m)| m.clone()).unwrap_or_default();
    assert_eq!(last["id"], "call-1", "{last}");
    assert_eq!(last["result"]["content"][0]["text"], "done 5", "{last}");
}

/// Everything a call may bring back before its response, through the gateway, from an HTTP
/// upstream (per-client session) and a stdio upstream (shared child, one call in flight):
/// progress with the client's own token, sampling, elicitation and roots answered by the
/// client's callbacks, log messages at the level the client set.
fn calls_bring_back_everything(up: &str, gw: &Gateway) {
    let steps = client_script(
        &gw.url(),
        json!([
            ["call_progress", format!("{up}__progress"), {"steps": 3}],
            ["call", format!("{up}__ask_llm"), {"prompt": "hi there"}],
            ["call", format!("{up}__ask_user"), {"question": "answer?"}],
            ["call", format!("{up}__list_roots"), {}],
            ["set_level", "info"],
            ["call", format!("{up}__log"), {"message": "hello", "level": "info"}],
            ["call", format!("{up}__log"), {"message": "too chatty", "level": "debug"}],
            ["notifications", 0.5],
        ]),
    );
    assert_eq!(steps[0]["text"][0], "done 3", "{}", steps[0]);
    assert_eq!(
        steps[0]["progress"],
        json!([[1, 3, "step 1"], [2, 3, "step 2"], [3, 3, "step 3"]]),
        "{}",
        steps[0]
    );
    assert_eq!(
        steps[1]["text"][0], "llm said: sampled:hi there",
        "{}",
        steps[1]
    );
    assert_eq!(steps[2]["text"][0], "user said: 42", "{}", steps[2]);
    assert_eq!(
        steps[3]["text"][0], "file:///tmp/root-a,file:///tmp/root-b",
        "{}",
        steps[3]
    );
    assert_eq!(steps[4]["ok"], true, "{}", steps[4]);
    let logs: Vec<&str> = steps[7]["logs"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["data"].as_str()).collect())
        .unwrap_or_default();
    assert!(logs.contains(&"hello"), "{}", steps[7]);
    if up == "alpha" {
        // The level reached the client's own upstream session: debug is filtered there.
        assert!(!logs.contains(&"too chatty"), "{}", steps[7]);
    }
}

#[test]
fn progress_sampling_elicitation_roots_logging() {
    let alpha = HttpFixture::start("alpha");
    let upstreams = format!(
        "{}{}",
        http_upstream_toml("alpha", &alpha.url(), ""),
        stdio_fixture_toml("beta", "")
    );
    let gw = Gateway::start("", &upstreams, "auto");
    calls_bring_back_everything("alpha", &gw);
    calls_bring_back_everything("beta", &gw);
    // Every session ended with its id maps empty.
    let log = gw.log_text();
    let ended: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session ended by client"))
        .collect();
    assert!(ended.len() >= 2, "{log}");
    for l in ended {
        assert!(
            l.contains("in_flight=0") && l.contains("server_requests=0"),
            "leftover entries: {l}"
        );
    }
}

/// Subscriptions and list_changed: updates reach the subscribed client (with the gateway's
/// URI), not another client; a tool added upstream shows up after list_changed.
#[test]
fn subscriptions_and_list_changed() {
    let alpha = HttpFixture::start("alpha");
    let gw = Gateway::start("", &http_upstream_toml("alpha", &alpha.url(), ""), "auto");
    let uri = "mcpgw://alpha/fixture://alpha/counter";
    let steps = client_script(
        &gw.url(),
        json!([
            ["subscribe", uri],
            ["call", "alpha__bump", {}],
            ["notifications", 1.0],
            ["unsubscribe", uri],
            ["call", "alpha__bump", {}],
            ["notifications", 0.5],
            ["call", "alpha__add_tool", {"name": "extra"}],
            ["notifications", 1.5],
            ["list_tools"],
            ["call", "alpha__extra", {}],
        ]),
    );
    assert_eq!(steps[0]["ok"], true, "{}", steps[0]);
    let updated = |v: &serde_json::Value| {
        v["notifications"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|n| n["method"] == "notifications/resources/updated")
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let first = updated(&steps[2]);
    assert_eq!(first.len(), 1, "{}", steps[2]);
    assert_eq!(first[0]["params"]["uri"], uri, "{}", steps[2]);
    assert!(updated(&steps[5]).is_empty(), "unsubscribed: {}", steps[5]);
    let changed = steps[7]["notifications"].as_array().is_some_and(|a| {
        a.iter()
            .any(|n| n["method"] == "notifications/tools/list_changed")
    });
    assert!(changed, "{}\n{}", steps[7], gw.log_text());
    let tools: Vec<&str> = steps[8]["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    assert!(tools.contains(&"alpha__extra"), "{tools:?}");
    assert_eq!(steps[9]["text"][0], "dynamic extra", "{}", steps[9]);

    // Another client, not subscribed, sees no update for a bump.
    let other = client_script(
        &gw.url(),
        json!([["call", "alpha__bump", {}], ["notifications", 0.5]]),
    );
    assert!(updated(&other[1]).is_empty(), "{}", other[1]);
}

/// A cancelled call ends at once for the client and at the upstream; the session goes on.
/// Progress keeps a long call alive past the call timeout; silence does not.
#[test]
fn cancellation_and_progress_timeouts() {
    let alpha = HttpFixture::start("alpha");
    let upstreams = format!(
        "{}{}",
        http_upstream_toml("alpha", &alpha.url(), "call_timeout_ms = 1000"),
        stdio_fixture_toml("beta", "call_timeout_ms = 1000")
    );
    let gw = Gateway::start("", &upstreams, "auto");
    let steps = client_script(
        &gw.url(),
        json!([
            ["cancel", "alpha__slow", {"seconds": 5}, "0.5"],
            ["call", "alpha__echo", {"text": "after cancel"}],
            ["cancel", "beta__slow", {"seconds": 5}, "0.5"],
            ["call", "beta__echo", {"text": "after cancel"}],
            ["call_progress", "alpha__slow_progress", {"seconds": 2.5}],
            ["call_progress", "beta__slow_progress", {"seconds": 2.5}],
            ["call", "alpha__slow", {"seconds": 2.5}],
            ["call", "alpha__cancel_count", {}],
            ["call", "beta__cancel_count", {}],
        ]),
    );
    assert_eq!(steps[0]["cancelled"], true, "{}", steps[0]);
    assert_eq!(steps[1]["text"][0], "alpha:after cancel", "{}", steps[1]);
    assert_eq!(steps[2]["cancelled"], true, "{}", steps[2]);
    assert_eq!(steps[3]["text"][0], "beta:after cancel", "{}", steps[3]);
    assert_eq!(
        steps[4]["text"][0], "finished",
        "progress restarts the timeout: {}",
        steps[4]
    );
    assert_eq!(
        steps[5]["text"][0], "finished",
        "progress restarts the timeout: {}",
        steps[5]
    );
    assert_eq!(
        steps[6]["error"]["code"], -32004,
        "no progress, timed out: {}",
        steps[6]
    );
    let log = gw.log_text();
    assert!(
        log.lines().any(|l| l.contains("session ended by client")
            && l.contains("in_flight=0")
            && l.contains("server_requests=0")),
        "{log}"
    );
}

/// Resource updates reach every subscribed client and only them, whether the upstream
/// session is per-client (HTTP), gateway-wide (HTTP `session = "shared"`) or a shared stdio
/// child. Three clients at once: two subscribe, the third bumps the counter.
#[test]
fn updates_reach_every_subscriber_and_only_them() {
    let alpha = HttpFixture::start("alpha");
    let upstreams = format!(
        "{}{}{}",
        http_upstream_toml("alpha", &alpha.url(), ""),
        http_upstream_toml("shared", &alpha.url(), "session = \"shared\""),
        stdio_fixture_toml("beta", "")
    );
    let gw = Gateway::start("", &upstreams, "auto");
    let url = gw.url();
    for (up, server) in [("alpha", "alpha"), ("shared", "alpha"), ("beta", "beta")] {
        let uri = format!("mcpgw://{up}/fixture://{server}/counter");
        let updates = |v: &serde_json::Value| {
            v["notifications"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|n| n["method"] == "notifications/resources/updated")
                        .map(|n| n["params"]["uri"].as_str().unwrap_or("").to_string())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let (a, b, c) = std::thread::scope(|s| {
            let sub = || client_script(&url, json!([["subscribe", &uri], ["notifications", 4.0]]));
            let a = s.spawn(sub);
            let b = s.spawn(sub);
            let c = s.spawn(|| {
                client_script(
                    &url,
                    json!([
                        ["notifications", 2.0],
                        ["call", format!("{up}__bump"), {}],
                        ["notifications", 1.0]
                    ]),
                )
            });
            (
                a.join().expect("a"),
                b.join().expect("b"),
                c.join().expect("c"),
            )
        });
        assert_eq!(a[0]["ok"], true, "{up}: {}", a[0]);
        assert_eq!(
            updates(&a[1]),
            vec![uri.clone()],
            "{up}: subscriber a: {}",
            a[1]
        );
        assert_eq!(
            updates(&b[1]),
            vec![uri.clone()],
            "{up}: subscriber b: {}",
            b[1]
        );
        assert!(
            updates(&c[2]).is_empty() && updates(&c[0]).is_empty(),
            "{up}: not subscribed: {c:?}"
        );
    }
}

/// The official SDK client resumes a call whose stream the gateway ends early
/// (`sse_poll_ms`): it reconnects with `Last-Event-ID` and gets every progress
/// notification and the response.
#[test]
fn sdk_client_resumes_with_last_event_id() {
    let alpha = HttpFixture::start("alpha");
    let gw = Gateway::start(
        "sse_poll_ms = 300",
        &http_upstream_toml("alpha", &alpha.url(), ""),
        "auto",
    );
    let steps = client_script(
        &gw.url(),
        json!([["call_progress", "alpha__progress", {"steps": 6, "delay": 0.25}]]),
    );
    assert_eq!(
        steps[0]["text"][0],
        "done 6",
        "{}\n{}",
        steps[0],
        gw.log_text()
    );
    let progress: Vec<u64> = steps[0]["progress"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p[0].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(progress, vec![1, 2, 3, 4, 5, 6], "{}", steps[0]);
    let log = gw.log_text();
    assert!(
        log.contains("call stream ended early"),
        "the stream was not cut: {log}"
    );
}
