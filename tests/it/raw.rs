//! Bad input over raw sockets: each gets the status and JSON-RPC error README.md lists, and the
//! connection (or, after a framing error, the server) stays usable.

use std::{io::Write, net::Shutdown, time::Duration};

use crate::support::{initialize, post, Gateway, Raw};

const DEMO: &str = "[[upstream]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = \"@self\"\nargs = [\"demo-server\"]\n";

fn gateway() -> Gateway {
    Gateway::start(
        "header_timeout_ms = 600\nmax_body_bytes = 65536",
        DEMO,
        "auto",
    )
}

fn ping(c: &mut Raw, sid: &str) {
    c.send(&post(
        r#"{"jsonrpc":"2.0","id":99,"method":"ping"}"#,
        &[&format!("Mcp-Session-Id: {sid}")],
    ));
    let r = c.read().expect("ping answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["id"], 99);
    assert!(r.json()["result"].is_object());
}

#[test]
fn jsonrpc_level_errors_keep_the_connection() {
    let gw = gateway();
    let sid = initialize(gw.addr, "2025-11-25");
    let s = format!("Mcp-Session-Id: {sid}");
    let mut c = Raw::connect(gw.addr);
    let cases: &[(&str, &[&str], u16, i64)] = &[
        // malformed JSON
        (r#"{"jsonrpc":"2.0","id":1,"method":"#, &[&s], 400, -32700),
        // wrong jsonrpc version
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            &[&s],
            400,
            -32600,
        ),
        // missing session
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            &[],
            400,
            -32007,
        ),
        // unknown session
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            &["Mcp-Session-Id: 0123456789abcdef0123456789abcdef"],
            404,
            -32006,
        ),
        // a session id of the wrong shape is unknown too
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            &["Mcp-Session-Id: ../../etc"],
            404,
            -32006,
        ),
        // unsupported protocol version header
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            &[&s, "MCP-Protocol-Version: 1999-01-01"],
            400,
            -32022,
        ),
        // foreign Origin (DNS rebinding)
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            &[&s, "Origin: http://evil.example"],
            403,
            -32008,
        ),
        // batch where the negotiated version forbids it
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            &[&s],
            400,
            -32600,
        ),
        // unknown method: a JSON-RPC error inside a 200
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"no/such"}"#,
            &[&s],
            200,
            -32601,
        ),
        // unknown tool
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"demo__nope"}}"#,
            &[&s],
            200,
            -32602,
        ),
        // bad cursor
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"zz"}}"#,
            &[&s],
            200,
            -32602,
        ),
    ];
    for (body, headers, status, code) in cases {
        c.send(&post(body, headers));
        let r = c.read().unwrap_or_else(|| panic!("no answer to {body}"));
        assert_eq!(r.status, *status, "{body}: {r:?}");
        assert_eq!(
            r.code(),
            *code,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        ping(&mut c, &sid);
    }
    // Loopback origins are the local user's own pages: allowed.
    c.send(&post(
        r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
        &[&s, "Origin: http://localhost:6274"],
    ));
    assert_eq!(c.read().expect("answer").status, 200);
    // Wrong media types.
    c.send(
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
    );
    let r = c.read().expect("answer");
    assert_eq!((r.status, r.code()), (415, -32008));
    // A longer subtype is another media type, whatever it starts with.
    c.send(
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json-seq\r\nContent-Length: 2\r\n\r\n{}",
    );
    let r = c.read().expect("answer");
    assert_eq!((r.status, r.code()), (415, -32008));
    c.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: text/html\r\nContent-Length: 2\r\n\r\n{}");
    let r = c.read().expect("answer");
    assert_eq!((r.status, r.code()), (406, -32008));
    // Other paths and methods.
    c.send(b"GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(c.read().expect("answer").status, 404);
    c.send(b"PUT /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
    let r = c.read().expect("answer");
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("POST")));
    ping(&mut c, &sid);
}

#[test]
fn framing_errors_close_the_connection_not_the_server() {
    let gw = gateway();
    let sid = initialize(gw.addr, "2025-11-25");

    // Oversized body (declared): 413 before reading it.
    let mut c = Raw::connect(gw.addr);
    c.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n");
    let r = c.read().expect("413");
    assert_eq!((r.status, r.code()), (413, -32008));
    assert!(c.closed());

    // Oversized chunked body: 413 once past the limit.
    let mut c = Raw::connect(gw.addr);
    c.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = vec![b' '; 40000];
    for _ in 0..2 {
        let _ = c.s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = c.s.write_all(&chunk);
        let _ = c.s.write_all(b"\r\n");
    }
    let r = c.read().expect("413");
    assert_eq!(r.status, 413);

    // Truncated chunked body: the client stops sending mid-chunk.
    let mut c = Raw::connect(gw.addr);
    c.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{\"jsonrpc\":\"2.0\"");
    c.s.shutdown(Shutdown::Write).expect("half close");
    let r = c.read().expect("400");
    assert_eq!((r.status, r.code()), (400, -32008));

    // Malformed request line / headers.
    let mut c = Raw::connect(gw.addr);
    c.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n");
    let r = c.read().expect("400");
    assert_eq!(r.status, 400);
    let mut c = Raw::connect(gw.addr);
    c.send(
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(c.read().expect("400").status, 400);

    // Header block too large: 431.
    let mut c = Raw::connect(gw.addr);
    let big = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20000)
    );
    let _ = c.s.write_all(big.as_bytes());
    assert_eq!(c.read().expect("431").status, 431);

    // Slow headers: a head dribbled past header_timeout_ms gets 408 and a close.
    let mut c = Raw::connect(gw.addr);
    c.send(b"POST /mcp HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(300));
    let _ = c.s.write_all(b"Host: 127.0.0.1\r\n");
    let r = c.read().expect("408");
    assert_eq!((r.status, r.code()), (408, -32008));
    assert!(c.closed());

    // After all that, the server serves a well-behaved client.
    let mut c = Raw::connect(gw.addr);
    ping(&mut c, &sid);
}

#[test]
fn http_semantics() {
    let gw = gateway();
    let sid = initialize(gw.addr, "2025-03-26");
    let s = format!("Mcp-Session-Id: {sid}");

    // Pipelined requests are answered in order.
    let mut c = Raw::connect(gw.addr);
    let mut both = post(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#, &[&s]);
    both.extend(post(
        r#"{"jsonrpc":"2.0","id":"b","method":"tools/list"}"#,
        &[&s],
    ));
    both.extend(post(r#"{"jsonrpc":"2.0","id":"c","method":"ping"}"#, &[&s]));
    c.send(&both);
    for id in ["a", "b", "c"] {
        let r = c.read().expect("pipelined answer");
        assert_eq!(r.json()["id"], id);
    }

    // Expect: 100-continue gets an interim 100, then the answer.
    let body = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
    c.send(format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json\r\n{s}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    let r = c.read().expect("100");
    assert_eq!(r.status, 100);
    c.send(body.as_bytes());
    assert_eq!(c.read().expect("answer").json()["id"], 5);

    // Chunked request body.
    let body = r#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#;
    let (a, b) = body.split_at(10);
    c.send(format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{s}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()).as_bytes());
    assert_eq!(c.read().expect("answer").json()["id"], 6);

    // 2025-03-26 allows batches: answers in order, notifications unanswered.
    c.send(&post(
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__echo","arguments":{"text":"b"}}}]"#,
        &[&s],
    ));
    let r = c.read().expect("batch answer");
    let v = r.json();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v[1]["result"]["content"][0]["text"], "b");

    // Notifications get 202.
    c.send(&post(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &[&s],
    ));
    assert_eq!(c.read().expect("202").status, 202);

    // Accept: text/event-stream only: the answer comes as one SSE event.
    c.send(format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n{s}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let r = c.read().expect("sse answer");
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(
        String::from_utf8_lossy(&r.body).contains("data: {\"jsonrpc\":\"2.0\",\"id\":6"),
        "{r:?}"
    );

    // Connection: close is honoured.
    c.send(&post(
        r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#,
        &[&s, "Connection: close"],
    ));
    let r = c.read().expect("answer");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());

    // GET opens the server-to-client stream; DELETE ends the session and the stream.
    let mut g = Raw::connect(gw.addr);
    g.send(
        format!("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{s}\r\n\r\n")
            .as_bytes(),
    );
    let head = g.read_until(b"\r\n\r\n");
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("text/event-stream"),
        "{head}"
    );
    let mut d = Raw::connect(gw.addr);
    d.send(format!("DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{s}\r\n\r\n").as_bytes());
    assert_eq!(d.read().expect("delete").status, 200);
    let rest = g.read_until(b"0\r\n\r\n");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "stream did not end: {:?}",
        String::from_utf8_lossy(&rest)
    );
    // The ended session is gone.
    d.send(&post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &[&s]));
    assert_eq!(d.read().expect("404").status, 404);
}

/// One request on a fresh connection: the answer, or `None` when the gateway closed first.
fn once(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<crate::support::Resp> {
    let mut c = Raw::connect(addr);
    c.send(bytes);
    c.read()
}

/// Issue 18 point 6: `Host` is checked against loopback names on a loopback listener
/// (DNS rebinding without an `Origin`), headers the gateway decides on may not be repeated
/// ("first wins" let `Origin: localhost` then `Origin: evil` through), HTTP/1.1 needs a
/// `Host`, and bare-LF line endings are refused.
#[test]
fn host_and_header_hygiene() {
    let gw = gateway();
    let sid = initialize(gw.addr, "2025-11-25");
    let s = format!("Mcp-Session-Id: {sid}");
    let ping_with = |head: &str| {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        format!("POST /mcp HTTP/1.1\r\n{head}Content-Type: application/json\r\nAccept: application/json\r\n{s}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    // Loopback names, any port: served.
    for host in [
        "127.0.0.1",
        "localhost:8080",
        "LOCALHOST",
        "[::1]:9",
        "127.0.0.1:1",
    ] {
        let r = once(gw.addr, &ping_with(&format!("Host: {host}\r\n"))).expect("answer");
        assert_eq!(r.status, 200, "Host {host}: {r:?}");
    }
    // Another name on a loopback listener: refused whatever Origin says (none here).
    for host in [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1.evil.example",
        "localhost.evil",
    ] {
        let r = once(gw.addr, &ping_with(&format!("Host: {host}\r\n"))).expect("answer");
        assert_eq!((r.status, r.code()), (403, -32008), "Host {host}: {r:?}");
    }
    // An absolute-form target names the host (RFC 9112 3.2.2: it overrides Host).
    for (target, status) in [
        ("http://evil.example/mcp", 403),
        ("http://127.0.0.1.evil.example:80/mcp", 403),
        ("http://localhost:9/mcp", 200),
    ] {
        let req = String::from_utf8(ping_with("Host: 127.0.0.1\r\n"))
            .expect("text")
            .replacen("POST /mcp ", &format!("POST {target} "), 1);
        let r = once(gw.addr, req.as_bytes()).expect("answer");
        assert_eq!(r.status, status, "{target}: {r:?}");
    }
    // Repeated headers the gateway decides on: 400, never "first wins".
    for twice in [
        "Origin: http://localhost\r\nOrigin: http://evil.example\r\n",
        "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
        "X-API-Key: a\r\nX-API-Key: b\r\n",
        "Host: 127.0.0.1\r\n",
        "Mcp-Session-Id: 0123456789abcdef0123456789abcdef\r\n",
        "Last-Event-ID: 0-1\r\nLast-Event-ID: 0-2\r\n",
        "Content-Type: application/json\r\n",
        "MCP-Protocol-Version: 2025-11-25\r\nMCP-Protocol-Version: 2026-07-28\r\n",
    ] {
        let r = once(gw.addr, &ping_with(&format!("Host: 127.0.0.1\r\n{twice}"))).expect("answer");
        assert_eq!(r.status, 400, "{twice:?}: {r:?}");
        assert!(
            matches!(r.code(), -32008 | -32020),
            "{twice:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // HTTP/1.1 without Host: 400 (RFC 9112 §3.2); HTTP/1.0 without Host is fine.
    let r = once(gw.addr, &ping_with("")).expect("answer");
    assert_eq!((r.status, r.code()), (400, -32008), "{r:?}");
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#;
    let r = once(gw.addr, format!("POST /mcp HTTP/1.0\r\nContent-Type: application/json\r\nAccept: application/json\r\n{s}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
    // Bare LF line endings, anywhere in the head: 400.
    for raw in [
        format!("POST /mcp HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nAccept: application/json\n{s}\nContent-Length: {}\n\n{body}", body.len()),
        format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\nContent-Type: application/json\r\nAccept: application/json\r\n{s}\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
        format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json\r\n{s}\r\nContent-Length: {}\r\n\n{body}", body.len()),
    ] {
        let r = once(gw.addr, raw.as_bytes()).expect("answer");
        assert_eq!((r.status, r.code()), (400, -32008), "{raw:?}: {r:?}");
    }
    // The server is fine afterwards.
    let mut c = Raw::connect(gw.addr);
    ping(&mut c, &sid);
}

/// `allowed_hosts` adds names to the loopback ones; the admin listener follows the same rules.
#[test]
fn allowed_hosts_and_the_admin_listener() {
    let admin_port = crate::support::free_port();
    let gw = Gateway::start(
        "allowed_hosts = [\"mcp.example\"]",
        &format!("{DEMO}\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"tk\"\ndata_dir = \":memory:\"\n"),
        "auto",
    );
    let sid = initialize(gw.addr, "2025-11-25");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let req = |host: &str| {
        format!("POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json\r\nMcp-Session-Id: {sid}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    for (host, status) in [
        ("mcp.example", 200),
        ("MCP.example:8443", 200),
        ("localhost:1", 200),
        ("evil.example", 403),
        ("sub.mcp.example", 403),
    ] {
        let r = once(gw.addr, &req(host)).expect("answer");
        assert_eq!(r.status, status, "Host {host}: {r:?}");
    }
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    for (head, status) in [
        ("Host: 127.0.0.1\r\n", 200),
        ("Host: mcp.example\r\n", 200),
        ("Host: evil.example\r\n", 403),
        ("", 400),
        ("Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n", 400),
    ] {
        let r = once(
            admin,
            format!("GET /healthz HTTP/1.1\r\n{head}\r\n").as_bytes(),
        )
        .expect("admin answer");
        assert_eq!(r.status, status, "{head:?}: {r:?}");
    }
    let r = once(
        admin,
        b"GET /admin/tools HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tk\r\nAuthorization: Bearer x\r\n\r\n",
    )
    .expect("admin answer");
    assert_eq!(r.status, 400, "{r:?}");
}

/// Issue 18 point 2: a batch over `max_batch_items` is refused whole before any element
/// runs; each request of a batch takes its own token of a request-level rate limit (and
/// each call its own quota unit), and the ones over it get the error in place.
#[test]
fn batches_are_capped_and_rate_limited_per_message() {
    let gw = Gateway::start(
        "max_batch_items = 20",
        &format!("{DEMO}\n[[rate_limit]]\nscope = \"principal\"\nrate = \"10/min\"\n"),
        "auto",
    );
    let sid = initialize(gw.addr, "2025-03-26");
    let s = format!("Mcp-Session-Id: {sid}");
    let pings = |n: usize, from: usize| {
        let items: Vec<String> = (from..from + n)
            .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#))
            .collect();
        format!("[{}]", items.join(","))
    };
    let mut c = Raw::connect(gw.addr);
    // 21 items: one -32600 error object for the whole batch, nothing run (the POST itself
    // took one token, as any POST does).
    c.send(&post(&pings(21, 1), &[&s]));
    let r = c.read().expect("answer");
    assert_eq!(r.status, 400, "{r:?}");
    let v = r.json();
    assert!(v.is_object(), "one error object, not an array: {v}");
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert!(v["id"].is_null(), "{v}");
    assert_eq!(v["error"]["data"]["maxBatchItems"], 20, "{v}");
    // 20 pings under `10/min`: the initialize and the refused batch took one token each,
    // this POST one (its first ping), and every further ping one: 8 answered (9 if a token
    // came back meanwhile), the rest refused in place with -32014, in order.
    c.send(&post(&pings(20, 100), &[&s]));
    let r = c.read().expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    let items = v.as_array().expect("array");
    assert_eq!(items.len(), 20, "{v}");
    let ok = items.iter().filter(|a| a["result"].is_object()).count();
    assert!((8..=9).contains(&ok), "{ok} answered: {v}");
    for (i, a) in items.iter().enumerate() {
        assert_eq!(a["id"], 100 + i, "{v}");
        if i >= ok {
            assert_eq!(a["error"]["code"], -32014, "{v}");
        }
    }
}

/// Each `tools/call` of a batch takes its own quota unit; the ones past it are refused in place.
#[test]
fn batched_calls_take_a_quota_unit_each() {
    let gw = Gateway::start(
        "",
        &format!("{DEMO}\n[[quota]]\nscope = \"principal\"\nwindow = \"day\"\nlimit = 4\n"),
        "auto",
    );
    let sid = initialize(gw.addr, "2025-03-26");
    let items: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"demo__echo","arguments":{{"text":"q"}}}}}}"#))
        .collect();
    let mut c = Raw::connect(gw.addr);
    c.send(&post(
        &format!("[{}]", items.join(",")),
        &[&format!("Mcp-Session-Id: {sid}")],
    ));
    let r = c.read().expect("answer");
    let v = r.json();
    let items = v.as_array().expect("array");
    assert_eq!(items.len(), 6, "{v}");
    let ok = items.iter().filter(|a| a["result"].is_object()).count();
    assert_eq!(ok, 4, "{v}");
    assert_eq!(items[5]["error"]["code"], -32014, "{v}");
}

/// Large requests and answers (whose bytes after the id and name the gateway writes without
/// copying them) arrive whole and exact: alone and in a batch, to and from a stdio and an
/// HTTP upstream, under number and string ids, with escapes and non-ASCII text (the echo
/// gives back what the upstream got); the connection serves the next request.
#[test]
fn large_answers_arrive_exact() {
    let py = crate::support::HttpFixture::start("py");
    let gw = Gateway::start(
        "",
        &format!(
            "{DEMO}\n{}",
            crate::support::http_upstream_toml("py", &py.url(), "")
        ),
        "auto",
    );
    let sid = initialize(gw.addr, "2025-03-26");
    let s = format!("Mcp-Session-Id: {sid}");
    // 48 KiB of text with quotes, backslashes, newlines and two-byte characters.
    let text: String = "a \"quoted\" \\ back\nslash é ".repeat(2000);
    let arg = serde_json::to_string(&text).expect("json");
    let mut c = Raw::connect(gw.addr);
    let tool_text = |v: &serde_json::Value| -> String {
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    for tool in ["demo__echo", "py__echo"] {
        for id in ["7", "\"s-1\""] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":{arg}}}}}}}"#
            );
            c.send(&post(&body, &[&s]));
            let r = c.read().expect("answer");
            assert_eq!(r.status, 200, "{tool}");
            let v = r.json();
            let want: serde_json::Value = serde_json::from_str(id).expect("id");
            assert_eq!(v["id"], want, "{tool}");
            assert!(tool_text(&v).ends_with(&text), "{tool}: text changed");
        }
        // Here the arguments come before the name (as from clients that sort keys).
        let one = |i: u32| {
            format!(
                r#"{{"id":{i},"jsonrpc":"2.0","method":"tools/call","params":{{"arguments":{{"text":{arg}}},"name":"{tool}"}}}}"#
            )
        };
        c.send(&post(&format!("[{},{}]", one(1), one(2)), &[&s]));
        let r = c.read().expect("batch answer");
        let v = r.json();
        let items = v.as_array().expect("array");
        assert_eq!(items.len(), 2, "{tool}");
        for a in items {
            assert!(a["id"] == 1 || a["id"] == 2, "{tool}: {}", a["id"]);
            assert!(
                tool_text(a).ends_with(&text),
                "{tool}: text changed in a batch"
            );
        }
    }
    ping(&mut c, &sid);
}
