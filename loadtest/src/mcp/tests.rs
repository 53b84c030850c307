use super::*;

#[test]
fn mix_parses_and_interleaves_by_weight() {
    let mix: Mix = "call=90,list=5,read=5".parse().expect("valid mix");
    assert_eq!(mix.period(), 20);
    let mut counts = [0usize; 3];
    for i in 0..200 {
        counts[mix.pick(i).index()] += 1;
    }
    assert_eq!(counts, [180, 10, 10]);
    // Smooth: the rare operations are not bunched together.
    let first: Vec<Op> = (0..20).map(|i| mix.pick(i)).collect();
    let list_at = first
        .iter()
        .position(|&o| o == Op::List)
        .expect("list in period");
    let read_at = first
        .iter()
        .position(|&o| o == Op::Read)
        .expect("read in period");
    assert!(list_at.abs_diff(read_at) >= 5, "{first:?}");
    assert_eq!(mix.to_string(), "call=90,list=5,read=5");
}

#[test]
fn mix_single_op_and_errors() {
    let mix: Mix = "list=3".parse().expect("valid mix");
    assert_eq!(mix.period(), 1);
    assert_eq!(mix.pick(41), Op::List);
    assert!("call=0".parse::<Mix>().is_err());
    assert!("write=1".parse::<Mix>().is_err());
    assert!("call".parse::<Mix>().is_err());
    assert!("call=-1".parse::<Mix>().is_err());
}

#[test]
fn bodies_are_valid_json_with_the_id() {
    let bodies = Bodies::new(&Payload {
        tool: "up__echo".into(),
        sample: None,
        payload_bytes: 16,
        result_bytes: Some(2048),
        resource: "fixture://static/1".into(),
        stateless: false,
    });
    for op in Op::ALL {
        for id in [0u64, 7, 10, 123_456_789, u64::MAX] {
            let mut out = b"junk".to_vec();
            out.clear();
            bodies.write(op, id, &mut out);
            assert_eq!(out.len(), bodies.len(op, id));
            let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
            assert_eq!(v["id"].as_u64(), Some(id));
            assert_eq!(v["jsonrpc"], "2.0");
        }
    }
    let mut out = Vec::new();
    bodies.write(Op::Call, 1, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["method"], "tools/call");
    assert_eq!(v["params"]["name"], "up__echo");
    assert_eq!(
        v["params"]["arguments"]["text"].as_str().map(str::len),
        Some(16)
    );
    assert_eq!(v["params"]["arguments"]["result_bytes"], 2048);
    out.clear();
    bodies.write(Op::Read, 1, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["params"]["uri"], "fixture://static/1");
}

#[test]
fn json_verdicts() {
    let ok = br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"x"}]}}"#;
    assert_eq!(check_json(ok, 5, Op::Call), Ok(Verdict::Ok));
    assert_eq!(check_json(ok, 6, Op::Call), Err(BadAnswer::WrongId));
    let tool_err = br#"{"jsonrpc":"2.0","id":5,"result":{"content":[],"isError":true}}"#;
    assert_eq!(check_json(tool_err, 5, Op::Call), Ok(Verdict::ToolError));
    assert_eq!(check_json(tool_err, 5, Op::List), Ok(Verdict::Ok));
    let rpc_err = br#"{"jsonrpc":"2.0","id":"5","error":{"code":-32602,"message":"Unknown tool"}}"#;
    assert_eq!(
        check_json(rpc_err, 5, Op::Call),
        Ok(Verdict::RpcError(-32602))
    );
    assert_eq!(
        check_json(b"not json", 5, Op::Call),
        Err(BadAnswer::NotJsonRpc)
    );
    assert_eq!(
        check_json(br#"{"jsonrpc":"2.0","id":5}"#, 5, Op::List),
        Err(BadAnswer::NotJsonRpc)
    );
}

#[test]
fn sse_verdict_finds_the_matching_event() {
    let body = concat!(
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",",
        "\"params\":{\"progress\":1}}\r\n\r\n",
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\r\n\r\n",
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"tools\":[]}}\r\n\r\n",
    );
    assert_eq!(check_sse(body.as_bytes(), 9, Op::List), Ok(Verdict::Ok));
    assert_eq!(
        check_sse(body.as_bytes(), 10, Op::List),
        Err(BadAnswer::NoAnswerInStream)
    );
    assert_eq!(
        check_sse(b"", 1, Op::List),
        Err(BadAnswer::NoAnswerInStream)
    );
}

#[test]
fn push_u64_matches_to_string() {
    for n in [0u64, 1, 9, 10, 99, 100, 4_294_967_296, u64::MAX] {
        let mut out = Vec::new();
        push_u64(&mut out, n);
        assert_eq!(out, n.to_string().into_bytes());
        assert_eq!(digits(n), out.len());
    }
}

#[test]
fn stateless_bodies_carry_meta_and_routing_headers() {
    let bodies = Bodies::new(&Payload {
        tool: "up__echo".into(),
        sample: None,
        payload_bytes: 16,
        result_bytes: None,
        resource: "fixture://static/1".into(),
        stateless: true,
    });
    for (op, method, name) in [
        (Op::Call, "tools/call", Some("up__echo")),
        (Op::List, "tools/list", None),
        (Op::Read, "resources/read", Some("fixture://static/1")),
    ] {
        let mut out = Vec::new();
        bodies.write(op, 9, &mut out);
        assert_eq!(out.len(), bodies.len(op, 9));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["method"], method);
        let meta = &v["params"]["_meta"];
        assert_eq!(
            meta["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
        assert!(meta["io.modelcontextprotocol/clientCapabilities"].is_object());
        let headers = String::from_utf8_lossy(bodies.headers(op)).to_string();
        assert!(
            headers.contains(&format!("Mcp-Method: {method}\r\n")),
            "{headers}"
        );
        assert_eq!(headers.contains("Mcp-Name: "), name.is_some(), "{headers}");
        if let Some(n) = name {
            assert!(headers.contains(&format!("Mcp-Name: {n}\r\n")), "{headers}");
        }
    }
}

#[test]
fn text_from_a_sample_is_cut_at_a_character_boundary() {
    assert_eq!(super::text_of("ab", 5), "ababa");
    assert_eq!(super::text_of("abcdef", 3), "abc");
    // "é" is two bytes: 3 bytes of "éé" end inside the second one.
    assert_eq!(super::text_of("éé", 3), "é");
    let bodies = Bodies::new(&Payload {
        tool: "up__echo".into(),
        sample: Some("Ann wrote. ".into()),
        payload_bytes: 20,
        result_bytes: None,
        resource: "fixture://static/1".into(),
        stateless: false,
    });
    let mut out = Vec::new();
    bodies.write(Op::Call, 1, &mut out);
    let body = String::from_utf8(out).expect("utf-8");
    assert!(body.contains(r#""text":"Ann wrote. Ann wrote"}"#), "{body}");
}
