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
        b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
    );
    let r = c.read().expect("answer");
    assert_eq!((r.status, r.code()), (415, -32008));
    c.send(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: text/html\r\nContent-Length: 2\r\n\r\n{}");
    let r = c.read().expect("answer");
    assert_eq!((r.status, r.code()), (406, -32008));
    // Other paths and methods.
    c.send(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read().expect("answer").status, 404);
    c.send(b"PUT /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
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
    c.send(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n");
    let r = c.read().expect("413");
    assert_eq!((r.status, r.code()), (413, -32008));
    assert!(c.closed());

    // Oversized chunked body: 413 once past the limit.
    let mut c = Raw::connect(gw.addr);
    c.send(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
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
    c.send(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{\"jsonrpc\":\"2.0\"");
    c.s.shutdown(Shutdown::Write).expect("half close");
    let r = c.read().expect("400");
    assert_eq!((r.status, r.code()), (400, -32008));

    // Malformed request line / headers.
    let mut c = Raw::connect(gw.addr);
    c.send(b"POST /mcp HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n");
    let r = c.read().expect("400");
    assert_eq!(r.status, 400);
    let mut c = Raw::connect(gw.addr);
    c.send(
        b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(c.read().expect("400").status, 400);

    // Header block too large: 431.
    let mut c = Raw::connect(gw.addr);
    let big = format!(
        "GET /mcp HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20000)
    );
    let _ = c.s.write_all(big.as_bytes());
    assert_eq!(c.read().expect("431").status, 431);

    // Slow headers: a head dribbled past header_timeout_ms gets 408 and a close.
    let mut c = Raw::connect(gw.addr);
    c.send(b"POST /mcp HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(300));
    let _ = c.s.write_all(b"Host: x\r\n");
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
    c.send(format!("POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json\r\n{s}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    let r = c.read().expect("100");
    assert_eq!(r.status, 100);
    c.send(body.as_bytes());
    assert_eq!(c.read().expect("answer").json()["id"], 5);

    // Chunked request body.
    let body = r#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#;
    let (a, b) = body.split_at(10);
    c.send(format!("POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{s}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()).as_bytes());
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
    c.send(format!("POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n{s}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
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
        format!("GET /mcp HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{s}\r\n\r\n")
            .as_bytes(),
    );
    let head = g.read_until(b"\r\n\r\n");
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("text/event-stream"),
        "{head}"
    );
    let mut d = Raw::connect(gw.addr);
    d.send(format!("DELETE /mcp HTTP/1.1\r\nHost: x\r\n{s}\r\n\r\n").as_bytes());
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
