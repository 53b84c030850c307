//! Resilience against a misbehaving upstream (tests/it/faulty.rs): retries only where safe
//! and within their budget, timeouts, circuit breakers that open, answer at once and
//! recover through a probe.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;

use crate::{
    faulty::{self, code, ok, Faulty, Mode},
    support::{admin, free_port, initialize, wait_for, Gateway},
};

const TOKEN: &str = "resilience";

fn start(faulty: &Faulty, upstream_extra: &str) -> (Gateway, SocketAddr) {
    let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let gw = Gateway::start(
        "health_interval_ms = 0",
        &format!(
            "[[upstream]]\nname = \"f\"\ntransport = \"http\"\nurl = \"{}\"\ncall_timeout_ms = 800\n{upstream_extra}\n\n[admin]\nlisten = \"{admin_addr}\"\ntoken = \"{TOKEN}\"\ndata_dir = \":memory:\"\n",
            faulty.url()
        ),
        "auto",
    );
    (gw, admin_addr)
}

/// Calls `tool` of upstream `f` in session `sid`; the JSON-RPC answer.
fn call(gw: &Gateway, sid: &str, tool: &str) -> Value {
    faulty::call(gw, sid, "f", tool)
}

fn metric(admin_addr: SocketAddr, sample: &str) -> f64 {
    crate::support::scrape(admin_addr, TOKEN, sample)
}

#[test]
fn retries_only_where_safe() {
    let f = Faulty::start();
    let (gw, admin_addr) = start(
        &f,
        "retries = 2\nretry_backoff_ms = 5\nretry_budget_percent = 100\nbreaker_failures = 0\nidempotent_tools = [\"list_*\"]",
    );
    let sid = initialize(gw.addr, "2025-11-25");
    let retries = || metric(admin_addr, "mcpgw_upstream_retries_total{upstream=\"f\"}");

    // One HTTP 500, then success: a read-only tool is sent again and succeeds...
    f.fail_next(1);
    assert!(ok(&call(&gw, &sid, "get_thing")));
    assert_eq!(f.calls("get_thing"), 2);
    // ... so is a tool the config calls idempotent ...
    f.fail_next(1);
    assert!(ok(&call(&gw, &sid, "list_things")));
    assert_eq!(f.calls("list_things"), 2);
    // ... but a tool with side effects is not: the upstream may have acted on it.
    f.fail_next(1);
    assert_eq!(code(&call(&gw, &sid, "do_thing")), -32003);
    assert_eq!(f.calls("do_thing"), 1);
    assert_eq!(retries(), 2.0);

    // A connection dropped after the request: the read-only tool gets its 2 retries.
    f.set(Mode::Drop);
    assert_eq!(code(&call(&gw, &sid, "get_thing")), -32003);
    assert_eq!(f.calls("get_thing"), 2 + 3);
    assert_eq!(code(&call(&gw, &sid, "do_thing")), -32003);
    assert_eq!(f.calls("do_thing"), 2, "not retried");

    // A hang ends at the call timeout and is not retried.
    f.set(Mode::Hang);
    assert_eq!(code(&call(&gw, &sid, "get_thing")), -32004);
    assert_eq!(f.calls("get_thing"), 6);

    // Connections refused: nothing reached the upstream, so even do_thing is retried.
    f.set(Mode::Ok);
    let before = retries();
    f.kill(); // also closes the kept-alive connections: nothing can reach it
    assert_eq!(code(&call(&gw, &sid, "do_thing")), -32003);
    assert_eq!(retries() - before, 2.0);
    assert_eq!(f.calls("do_thing"), 2, "nothing arrived while down");
    f.come_back();
    assert!(ok(&call(&gw, &sid, "do_thing")));

    // Slow answers within the timeout are just slow.
    f.set(Mode::Slow(300));
    assert!(ok(&call(&gw, &sid, "get_thing")));
    println!(
        "resilience: retries made {} (upstream saw get_thing {}x, do_thing {}x)",
        retries(),
        f.calls("get_thing"),
        f.calls("do_thing")
    );
}

#[test]
fn retry_budget_caps_retries() {
    let f = Faulty::start();
    let (gw, admin_addr) = start(
        &f,
        "retries = 2\nretry_backoff_ms = 1\nretry_budget_percent = 0\nbreaker_failures = 0",
    );
    let sid = initialize(gw.addr, "2025-11-25");
    f.kill();
    for _ in 0..4 {
        assert_eq!(code(&call(&gw, &sid, "do_thing")), -32003);
    }
    // A budget of 0% leaves only the three retries it starts with.
    assert_eq!(
        metric(admin_addr, "mcpgw_upstream_retries_total{upstream=\"f\"}"),
        3.0
    );
}

#[test]
fn breaker_opens_answers_at_once_and_recovers() {
    let f = Faulty::start();
    let (gw, admin_addr) = start(
        &f,
        "retries = 0\nbreaker_failures = 3\nbreaker_open_ms = 800",
    );
    let sid = initialize(gw.addr, "2025-11-25");
    let state = || metric(admin_addr, "mcpgw_upstream_breaker_state{upstream=\"f\"}");
    let listed = || {
        admin(admin_addr, "GET", "/admin/upstreams", Some(TOKEN), None).json()["upstreams"][0]
            ["breaker"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    f.set(Mode::Error500);
    for _ in 0..3 {
        assert_eq!(code(&call(&gw, &sid, "do_thing")), -32003);
    }
    assert_eq!(f.calls("do_thing"), 3);
    // Open: refused at once, the upstream is spared.
    let v = call(&gw, &sid, "do_thing");
    assert_eq!(code(&v), -32015, "{v}");
    assert_eq!(f.calls("do_thing"), 3);
    assert_eq!(state(), 2.0);
    assert_eq!(listed(), "open");
    assert_eq!(
        metric(
            admin_addr,
            "mcpgw_calls_total{target=\"f__do_thing\",upstream=\"f\",outcome=\"circuit_open\"}"
        ),
        1.0
    );

    // After breaker_open_ms one probe goes through; it fails: open again at once.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(code(&call(&gw, &sid, "do_thing")), -32003);
    assert_eq!(f.calls("do_thing"), 4);
    assert_eq!(code(&call(&gw, &sid, "do_thing")), -32015);

    // The upstream recovers: the next probe succeeds and closes the breaker.
    f.set(Mode::Ok);
    std::thread::sleep(Duration::from_millis(900));
    assert!(ok(&call(&gw, &sid, "do_thing")));
    assert!(wait_for(2, || state() == 0.0));
    assert_eq!(listed(), "closed");
    for _ in 0..3 {
        assert!(ok(&call(&gw, &sid, "do_thing")));
    }
    assert_eq!(
        metric(
            admin_addr,
            "mcpgw_upstream_breaker_opened_total{upstream=\"f\"}"
        ),
        2.0
    );
}

/// An upstream that closes a kept-alive connection without saying so: the gateway reuses it
/// at once (it looks at a pooled connection only after 100 ms idle), writes the request into
/// it, and asks the kernel what became of it. A socket the upstream had closed refused all
/// of it, so nothing read it: it goes again on a new connection and the call succeeds, seen
/// once upstream. An upstream that shut only its sending side and still reads (a lingering
/// close) took the request, so it is not sent again, even for a tool with no side effects
/// the retry rules would not repeat.
#[test]
fn a_reused_connection_is_replaced_only_when_the_request_never_arrived() {
    let f = Faulty::start();
    let gw = Gateway::start_env(
        "health_interval_ms = 0",
        &format!(
            "[[upstream]]\nname = \"f\"\ntransport = \"http\"\nurl = \"{}\"\ncall_timeout_ms = 2000\nretries = 0\nbreaker_failures = 0\n",
            f.url()
        ),
        "auto",
        &[("MCPGW_LOG", "info,mcpgw::upstream=debug")],
    );
    let sid = initialize(gw.addr, "2025-11-25");
    // One client connection: its requests are served by one worker, whose pool holds the
    // connection the last call used.
    let mut client = crate::support::Raw::connect(gw.addr);
    let mut call_on = |tool: &str| -> Value {
        client.send(&crate::support::post(
            &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"f__{tool}","arguments":{{}}}}}}"#),
            &[&format!("Mcp-Session-Id: {sid}"), "Accept: application/json"],
        ));
        let r = client.read().expect("answer");
        assert_eq!(r.status, 200, "{r:?}");
        serde_json::from_slice(&r.body).expect("JSON answer")
    };
    f.set(Mode::CloseAfter);
    for n in 1..=8 {
        let ended = f.ended();
        let v = call_on("do_thing");
        assert!(ok(&v), "{v}");
        assert_eq!(f.calls("do_thing"), n, "each call arrives once");
        // The next request is written once the upstream has closed the connection (as an
        // idle close would have); written before, it would reach an open socket, which
        // may read it, and rightly not be sent again.
        assert!(wait_for(5, || f.ended() > ended), "the fixture closed it");
    }
    let replaced = || gw.log_text().contains("the request never reached it");
    assert!(
        wait_for(5, replaced),
        "no closed connection was written to:\n{}",
        gw.log_text()
    );

    f.set(Mode::Linger);
    assert!(ok(&call_on("do_thing")));
    let before = f.calls("do_thing");
    let v = call_on("do_thing");
    assert_eq!(code(&v), -32003, "{v}");
    assert_eq!(f.calls("do_thing"), before + 1, "read once, not sent again");
}
