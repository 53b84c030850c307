use super::*;

fn one(s: &str) -> Result<Frame, FrameError> {
    Parser::default().parse_one(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn request_fields() {
    let f = one(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a__echo","arguments":{"text":"hi \"x\""}}}"#)
        .expect("valid");
    assert_eq!(f.kind(), Kind::Request);
    assert_eq!(f.id_raw().as_deref(), Some(&b"7"[..]));
    assert_eq!(f.method().as_deref(), Some("tools/call"));
    let name = f.param("name").expect("name");
    assert_eq!(f.str_at(name).as_deref(), Some("a__echo"));
    let args = f.param("arguments").expect("arguments");
    assert_eq!(f.raw_at(args), Some(&br#"{"text":"hi \"x\""}"#[..]));
}

#[test]
fn splice_changes_only_spans() {
    let src = r#"{"jsonrpc":"2.0", "id" : "abc","method":"tools/call","params":{"name":"a__echo","arguments":{"name":"a__echo"}}}"#;
    let f = one(src).expect("valid");
    let id = f.id_span().expect("id");
    let name = f.param("name").expect("name");
    let out = f.splice(&mut [(name, &b"\"echo\""[..]), (id, &b"41"[..])]);
    assert_eq!(
        std::str::from_utf8(&out).expect("utf8"),
        r#"{"jsonrpc":"2.0", "id" : 41,"method":"tools/call","params":{"name":"echo","arguments":{"name":"a__echo"}}}"#
    );
}

#[test]
fn a_large_answer_keeps_its_bytes_after_the_id() {
    let text = "x".repeat(PIECES_MIN);
    let big = format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"text":"{text}"}}}}"#);
    let f = one(&big).expect("valid");
    let span = f.id_span().expect("id");
    let p = f.splice_front(&mut [(span, &b"\"client-1\""[..])]);
    assert!(!p.is_whole());
    // The bytes after the id are the message's own, not a copy.
    assert_eq!(p.body.as_ptr(), f.bytes()[span.end as usize..].as_ptr());
    assert_eq!(p.join(), f.splice(&mut [(span, &b"\"client-1\""[..])]));
    // Small, or with the id past the first KiB: one buffer, the same bytes.
    let small = one(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#).expect("valid");
    let s = small.splice_front(&mut [(small.id_span().expect("id"), &b"8"[..])]);
    assert!(s.is_whole());
    assert_eq!(
        s.into_bytes(),
        &br#"{"jsonrpc":"2.0","id":8,"result":{}}"#[..]
    );
    let late = format!(r#"{{"jsonrpc":"2.0","result":{{"text":"{text}"}},"id":7}}"#);
    let f = one(&late).expect("valid");
    let span = f.id_span().expect("id");
    let p = f.splice_front(&mut [(span, &b"8"[..])]);
    assert!(p.is_whole());
    assert!(p.into_bytes().ends_with(br#","id":8}"#));
}

#[test]
fn a_large_request_keeps_its_arguments() {
    let text = "y".repeat(PIECES_MIN);
    // Members in either order: the arguments are shared whether the name comes first or
    // after them (clients that sort keys).
    for req in [
        format!(
            r#"{{"jsonrpc":"2.0","id":"c-9","method":"tools/call","params":{{"name":"fx__echo","arguments":{{"text":"{text}"}}}}}}"#
        ),
        format!(
            r#"{{"id":"c-9","jsonrpc":"2.0","method":"tools/call","params":{{"arguments":{{"text":"{text}"}},"name":"fx__echo"}}}}"#
        ),
    ] {
        let f = one(&req).expect("valid");
        let (id, name) = (f.id_span().expect("id"), f.param("name").expect("name"));
        let args = f.param("arguments").expect("arguments");
        let edits = [(id, &b"12"[..]), (name, &b"\"echo\""[..])];
        let parts = f.splice_parts(&mut edits.clone());
        assert_eq!(
            parts.iter().count(),
            if name.start < args.start { 2 } else { 3 }
        );
        assert_eq!(parts.concat(), f.splice(&mut edits.clone()));
        // One part is the message's own bytes around the arguments.
        let own = f.bytes().as_ptr() as usize;
        let (a, z) = (own + args.start as usize, own + args.end as usize);
        let shared = parts
            .iter()
            .any(|p| p.as_ptr() as usize <= a && p.as_ptr() as usize + p.len() >= z);
        assert!(shared, "the arguments were copied");
    }
    // A small request: one spliced buffer.
    let f = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}"#)
        .expect("valid");
    let parts = f.splice_parts(&mut [(f.id_span().expect("id"), &b"2"[..])]);
    assert_eq!(parts.iter().count(), 1);
    assert_eq!(
        parts.into_bytes(),
        &br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a"}}"#[..]
    );
}

#[test]
fn notification_and_response() {
    let n = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).expect("valid");
    assert_eq!(n.kind(), Kind::Notification);
    let r = one(r#"{"jsonrpc":"2.0","id":"x","result":{"tools":[]}}"#).expect("valid");
    assert_eq!(r.kind(), Kind::Response);
    assert_eq!(r.result_raw(), Some(&br#"{"tools":[]}"#[..]));
    let e = one(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}}"#).expect("valid");
    assert!(e.is_error());
}

#[test]
fn rejects_bad_envelopes() {
    assert!(matches!(one("{"), Err(FrameError::Parse(_))));
    assert!(matches!(one("not json"), Err(FrameError::Parse(_))));
    let bad = [
        r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
        r#"{"id":1,"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","method":"y"}"#,
        r#"{"jsonrpc":"2.0","id":1,"meth\u006fd":"x"}"#,
        r#"{"jsonrpc":"2.0","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
        r#"[1,2]"#,
        r#""str""#,
    ];
    for b in bad {
        assert!(
            matches!(one(b), Err(FrameError::Invalid { .. })),
            "accepted {b}"
        );
    }
    // The id is kept for the error answer when it is usable.
    match one(r#"{"jsonrpc":"1.0","id":"q","method":"x"}"#) {
        Err(FrameError::Invalid { id, .. }) => assert_eq!(id.as_deref(), Some(&b"\"q\""[..])),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn batches() {
    let m = Parser::default()
        .parse(Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"n"}, 3]"#,
        ))
        .expect("valid");
    match m {
        Message::Batch(v) => {
            assert_eq!(v.len(), 3);
            assert_eq!(v[0].as_ref().map(|f| f.kind()), Ok(Kind::Request));
            assert_eq!(v[1].as_ref().map(|f| f.kind()), Ok(Kind::Notification));
            assert!(v[2].is_err());
        }
        Message::Single(_) => panic!("expected a batch"),
    }
    assert!(Parser::default().parse(Bytes::from_static(b"[]")).is_err());
}

#[test]
fn escaped_strings_decode() {
    let f = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"a\u005f_x"}}"#)
        .expect("valid");
    assert_eq!(f.method().as_deref(), Some("tools/call"));
    let n = f.param("name").expect("name");
    assert_eq!(f.str_at(n).as_deref(), Some("a__x"));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let alphabet = br#"{}[]":,\ 0123456789abcjsonrpcidmethod.-etrufl"#;
    let mut p = Parser::default();
    for _ in 0..5000 {
        let mut v = Vec::new();
        let n = (x % 48) as usize;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        let _ = p.parse(Bytes::from(v));
    }
}

#[test]
fn removals_leave_valid_json_whatever_members_go() {
    let drop_io = |k: &[u8]| k.starts_with(b"io.");
    for (meta, want) in [
        (r#"{"io.a":1,"p":2,"io.b":{"x":[1]}}"#, r#"{"p":2}"#),
        (r#"{"p":2, "io.a":1 , "io.b":3}"#, r#"{"p":2}"#),
        (
            r#"{ "io.a":1, "io.b":3, "p":2, "q":"io.z"}"#,
            r#"{ "p":2, "q":"io.z"}"#,
        ),
        (r#"{"io.a":1,"io.b":3}"#, r#"{}"#),
        (r#"{"p":1,"q":2}"#, r#"{"p":1,"q":2}"#),
        (r#"{}"#, r#"{}"#),
    ] {
        let f = one(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{{"_meta":{meta}}}}}"#
        ))
        .expect("frame");
        let span = f.param("_meta").expect("_meta");
        let (spans, emptied) = f.removals(span, drop_io);
        assert_eq!(emptied, w_empty(want), "{meta}");
        let mut edits: Vec<(Span, &[u8])> = spans.into_iter().map(|s| (s, &b""[..])).collect();
        let out = f.splice(&mut edits);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
        let w: serde_json::Value = serde_json::from_str(want).expect("want");
        assert_eq!(v["params"]["_meta"], w, "{meta}");
    }
}

fn w_empty(want: &str) -> bool {
    want == "{}"
}

#[test]
fn params_are_found_with_and_without_the_index() {
    // Few members: indexed in the parse; many: scanned on each lookup. Same answers.
    for n in [3usize, 5, 6, 20] {
        let members: Vec<String> = (0..n)
            .map(|i| format!(r#""k{i}":{{"v":[{i},"x"]}}"#))
            .collect();
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{{{}}}}}"#,
            members.join(",")
        );
        let f = one(&body).expect("valid");
        for i in 0..n {
            let s = f.param(&format!("k{i}")).expect("member");
            assert_eq!(
                f.raw_at(s),
                Some(format!(r#"{{"v":[{i},"x"]}}"#).as_bytes()),
                "{n} members, k{i}"
            );
        }
        assert_eq!(f.param("absent"), None, "{n} members");
        assert_eq!(f.param("k"), None, "{n} members: a prefix is not a key");
    }
    // No params, or params that are not an object.
    assert_eq!(
        one(r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#)
            .expect("valid")
            .param("a"),
        None
    );
    assert_eq!(
        one(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[1]}"#)
            .expect("valid")
            .param("a"),
        None
    );
}

#[test]
fn members_are_found_in_one_walk() {
    let f = one(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"b":2,"a":{"x":1}}}}"#)
        .expect("valid");
    let meta = f.param("_meta").expect("_meta");
    let [a, b, c] = f.members(meta, ["a", "b", "c"]);
    assert_eq!(a.and_then(|s| f.raw_at(s)), Some(&br#"{"x":1}"#[..]));
    assert_eq!(b.and_then(|s| f.raw_at(s)), Some(&b"2"[..]));
    assert_eq!(b, f.member(meta, "b"));
    assert_eq!(c, None);
}

#[test]
fn meta_is_read_alike_with_and_without_its_index() {
    // Up to 8 members, `_meta` is indexed in the parse; more, it is walked on each lookup.
    // An object elsewhere that looks the same (in `arguments`, or `ref`) is always walked.
    for n in [0usize, 1, 8, 9, 20] {
        let members: Vec<String> = (0..n)
            .map(|i| format!(r#""io.k{i}":[{i},{{"x":"}}"}}]"#))
            .collect();
        let meta = format!("{{{}}}", members.join(", "));
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{{"arguments":{{"_meta":{meta}}},"_meta":{meta},"ref":{meta}}}}}"#
        );
        let f = one(&body).expect("valid");
        let m = f.param("_meta").expect("_meta");
        let r = f.param("ref").expect("ref");
        assert_eq!(f.indexed(m).is_some(), n <= 8, "{n} members");
        assert!(f.indexed(r).is_none());
        for i in 0..n {
            let key = format!("io.k{i}");
            let want = format!(r#"[{i},{{"x":"}}"}}]"#);
            for obj in [m, r] {
                let s = f.member(obj, &key).expect("member");
                assert_eq!(f.raw_at(s), Some(want.as_bytes()), "{n} members, {key}");
                assert_eq!(f.members(obj, ["x", key.as_str()])[1], Some(s));
            }
        }
        assert_eq!(f.member(m, "io.k"), None, "a prefix is not a key");
        // Removals agree: every member goes, or every other one.
        for keep_odd in [false, true] {
            let drop = |k: &[u8]| !keep_odd || k.last().is_some_and(|c| c % 2 == 0);
            let (a, ea) = f.removals(m, drop);
            let (b, eb) = f.removals(r, drop);
            assert_eq!(ea, eb);
            let shift = |s: Span| (s.start - m.start, s.end - m.start);
            let shift_r = |s: Span| (s.start - r.start, s.end - r.start);
            assert_eq!(
                a.iter().copied().map(shift).collect::<Vec<_>>(),
                b.iter().copied().map(shift_r).collect::<Vec<_>>(),
                "{n} members"
            );
        }
    }
    // `_meta` that is not an object has no index and no members.
    let f = one(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":[1]}}"#).expect("valid");
    let m = f.param("_meta").expect("_meta");
    assert!(f.indexed(m).is_none());
    assert_eq!(f.member(m, "a"), None);
}

fn refusal(s: &str) -> String {
    match one(s) {
        Err(FrameError::Invalid { reason, .. }) => reason.into_owned(),
        other => panic!("not refused: {s}: {other:?}"),
    }
}

#[test]
fn duplicate_members_the_gateway_reads_are_refused() {
    // The gateway would read the first, the upstream's parser the last.
    let r = refusal(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{},"name":"b"}}"#,
    );
    assert_eq!(r, r#"duplicate member "name" in params"#);
    let r = refusal(
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a://x","uri":"b://y"}}"#,
    );
    assert!(r.contains(r#""uri""#), "{r}");
    let r = refusal(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":1,"progressToken":2}}}"#,
    );
    assert!(r.contains("progressToken"), "{r}");
    let r = refusal(
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","name":"b"}}}"#,
    );
    assert!(r.contains(r#""name""#), "{r}");
    // In a notification too, and deeper down.
    refusal(
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"x":[{"a":1,"a":2}]}}"#,
    );
}

#[test]
fn escaped_keys_that_spell_ascii_are_refused() {
    let r = refusal(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#,
    );
    assert_eq!(r, "escaped member name in params");
    // Alone, too: the gateway reads `name` as written, the upstream decodes.
    refusal(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"b"}}"#);
    refusal(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"io\/x":1}}}"#);
    // A non-ASCII key some encoders escape (Python's ensure_ascii) is no key the gateway
    // reads; duplicates are still found after decoding.
    one(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"caf\u00e9":1}}}"#)
        .expect("escaped non-ASCII key");
    // Go's encoder escapes <, > and & in keys too: no key the gateway reads holds them.
    one(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"data":{"a\u003cb":1,"k\"q":2}}}"#)
        .expect("escaped <, and a quote");
    let r =
        refusal(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"m":{"caf\u00e9":1,"café":2}}}"#);
    assert!(r.contains("café"), "{r}");
}

#[test]
fn arguments_and_results_are_not_read_for_keys() {
    // A call's arguments pass through untouched: their keys are the tool's business.
    one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"k":1,"k":2,"\u0041":3}}}"#)
        .expect("arguments are not read");
    one(r#"{"jsonrpc":"2.0","id":1,"result":{"k":1,"k":2}}"#).expect("results are not read");
    // Only params' own `arguments` is skipped.
    refusal(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"m":{"arguments":{"k":1,"k":2}}}}"#);
}

#[test]
fn many_keys_are_checked_by_sorting() {
    let mut keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
    let ok = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"_meta":{{{}}}}}}}"#,
        keys.join(",")
    );
    one(&ok).expect("40 distinct keys");
    keys.push("\"k3\":0".into());
    let dup = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"_meta":{{{}}}}}}}"#,
        keys.join(",")
    );
    assert!(refusal(&dup).contains("k3"));
}

#[test]
fn depth_is_limited_per_parser_call() {
    let nest = |n: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"a","arguments":{}1{}}}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let mut p = Parser::default();
    // The message's object, params, then n arrays: n + 2 levels.
    let body = |n| Bytes::from(nest(n));
    assert!(p.parse_within(body(62), 64).is_ok());
    match p.parse_within(body(63), 64) {
        Err(FrameError::Invalid { reason, .. }) => assert_eq!(reason, "nested too deeply"),
        other => panic!("{other:?}"),
    }
    assert!(p.parse(body(63)).is_ok(), "the default parser allows more");
    // Outside arguments too, in a batch element, and in results.
    let deep_meta = format!(
        r#"[{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"_meta":{}1{}}}}}]"#,
        "[".repeat(10),
        "]".repeat(10)
    );
    match p.parse_within(Bytes::from(deep_meta), 8) {
        Ok(Message::Batch(items)) => assert!(items[0].is_err()),
        other => panic!("{other:?}"),
    }
    let deep_result = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{}1{}}}"#,
        "[".repeat(10),
        "]".repeat(10)
    );
    assert!(p.parse_within(Bytes::from(deep_result), 8).is_err());
}

#[test]
fn null_id_errors_are_told_apart() {
    let b = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#;
    assert!(matches!(
        Parser::default().parse_one(Bytes::from_static(b)),
        Err(FrameError::Invalid { .. })
    ));
    assert_eq!(
        null_id_error(b),
        Some(&br#"{"code":-32700,"message":"Parse error"}"#[..])
    );
    for not in [
        &br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#[..],
        br#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
        br#"{"jsonrpc":"2.0","id":null,"error":"x"}"#,
        br#"{"jsonrpc":"2.0","id":null,"id":null,"error":{}}"#,
        br#"{"jsonrpc":"1.0","id":null,"error":{}}"#,
        br#"{"jsonrpc":"2.0","id":null,"method":"x","error":{}}"#,
        br#"[]"#,
    ] {
        assert_eq!(null_id_error(not), None, "{}", String::from_utf8_lossy(not));
    }
}

#[test]
fn deepest_params_fit_a_thread_stack() {
    // The key walk recurses through params (not arguments): at the parser's own limit it
    // must fit a default 2 MiB thread stack, debug build included.
    let n = MAX_DEPTH - 3;
    let body = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":{}1{}}}}}"#,
        "[{\"a\":".repeat(n / 2),
        "}]".repeat(n / 2)
    );
    let r = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || Parser::default().parse(Bytes::from(body)).is_ok())
        .expect("thread")
        .join();
    assert_eq!(r.ok(), Some(true), "parsed without a stack overflow");
}

fn upstream(s: &str) -> Result<Frame, FrameError> {
    Parser::default().parse_upstream(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn an_upstream_answer_is_scanned_for_its_envelope_only() {
    // Inside the result, not JSON: passed through as the upstream's bytes.
    let f = upstream(r#"{"jsonrpc":"2.0","id":3,"result":{"a":tru,"b":[1}]}"#).expect("scanned");
    assert_eq!(f.kind(), Kind::Response);
    assert_eq!(f.id_raw().as_deref(), Some(&b"3"[..]));
    assert_eq!(f.result_raw(), Some(&br#"{"a":tru,"b":[1}]"#[..]));
    // Strings are followed exactly: braces and quotes inside them are text.
    let f =
        upstream(r#"{"jsonrpc":"2.0","id":"a\"}","result":{"t":"},\"id\":9"}}"#).expect("scanned");
    assert_eq!(f.id_raw().as_deref(), Some(&br#""a\"}""#[..]));
    assert_eq!(f.result_raw(), Some(&br#"{"t":"},\"id\":9"}"#[..]));
}

#[test]
fn an_upstream_envelope_is_held_to_the_grammar() {
    for bad in [
        // A second id after the result: a client's parser could take either.
        r#"{"jsonrpc":"2.0","id":1,"result":{},"id":2}"#,
        // An escaped key that could spell one.
        r#"{"jsonrpc":"2.0","id":1,"result":{},"\u0069d":2}"#,
        // Separators.
        r#"{"jsonrpc":"2.0" "id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0",,"id":1,"result":{}}"#,
        r#"{,"jsonrpc":"2.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},}"#,
        r#"{"jsonrpc":"2.0","id" 1,"result":{}}"#,
        // Cut short, or something after the object.
        r#"{"jsonrpc":"2.0","id":1,"result":{"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{}} {"#,
        r#"{"jsonrpc":"2.0","id":1,"result":"x}"#,
        // Not one object.
        r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#,
        r#""x""#,
        "",
        // The envelope's own rules, as for a client's message.
        r#"{"jsonrpc":"1.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1,"a":2}}"#,
    ] {
        assert!(upstream(bad).is_err(), "accepted {bad}");
    }
    let ok = " {\"jsonrpc\" : \"2.0\" ,\n \"id\":1 , \"result\" : { } } \r\n";
    assert_eq!(upstream(ok).expect("whitespace").kind(), Kind::Response);
}

/// The one walk that validates a single message and finds its envelope ([`Fused`]) answers
/// as the two passes it replaced: the same frame (spans, indexes) or the same refusal, at
/// every depth bound.
#[test]
fn one_walk_finds_what_two_passes_find() {
    let long = "y".repeat(300);
    let esc = format!("{}\\\"{}", "e".repeat(200), "f".repeat(200));
    let many: String = (0..12)
        .map(|i| format!("\"k{i}\":\"{}\"", "z".repeat(260 + i)))
        .collect::<Vec<_>>()
        .join(",");
    let keys17: String = (0..17)
        .map(|i| format!("\"k{i}\":{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut messages = vec![
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"arguments":{{"text":"{long}","n":[1,"{long}"]}},"name":"a__b"}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":"{long}","method":"{long}","params":{{"name":"{long}","_meta":{{"{long}":"{esc}","progressToken":"{long}"}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"arguments":{{{many}}},"name":"x","{long}":1,"{long}":2}}}}"#
        ),
        format!(r#"{{"jsonrpc":"2.0","id":3,"method":"m","params":{{{many},"k3":0}}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":4,"method":"m","params":["{long}",{{"a":"{esc}"}}]}}"#),
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"m","params":{{"{esc}":1,"{long}":{{"{esc}":2}}}}}}"#
        ),
        format!(r#"{{"jsonrpc":"2.0","id":6,"method":"m","params":{{{keys17}}}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":6,"method":"m","params":{{"o":{{{keys17},"k3":1}}}}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":6,"method":"m","params":{{"o":{{{keys17},"k16":1}}}}}}"#),
    ];
    for m in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2},"_meta":{"progressToken":"p","io.modelcontextprotocol/clientCapabilities":{"roots":{"listChanged":true}},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"a":1,"a":2}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"a":{"b":1,"b":2}}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":[{"a":1,"a":2}]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":[1],"arguments":[{"a":1,"a":2}]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[{"a":1},{"a":1,"a":1}]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"n\u0061me":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"\u00e9":1,"\u00e9":2}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"\u00e9":1,"\u00c9":2}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1,"\u0061":2}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"arguments":1,"arguments":2}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{},"_meta":{}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,
        r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"m"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#,
        r#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#,
        r#"{"jsonrpc":"2.0","i\u0064":1,"method":"m"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":1}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"a":1,"a":2}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
        r#"{"jsonrpc":"2.0","result":{}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/x","params":{"a":[[[[{"b":[]}]]]]}}"#,
        r#"{"jsonrpc":"2.0","params":{"a":{"a":1,"a":2}},"id":"late"}"#,
        r#"{"params":{"_meta":{"a":{"b":[{"c":{}}]}}},"jsonrpc":"2.0","method":"x","id":-1.5e3}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":{},"y":[],"_meta":{"e":{},"f":[]}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{},"params":{"a":1,"a":1}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","p\"":1}"#,
        r#"{}"#,
        r#""x""#,
        r#"1"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m"} x"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":"\x"}}"#,
        " \t\r\n {\"jsonrpc\" : \"2.0\" , \"id\" : 1 , \"method\" : \"m\" , \"params\" : { \"_meta\" : { \"k\" : [ ] } } } \n",
    ] {
        messages.push(m.to_string());
    }
    for n in [6, 7, 8, 9] {
        messages.push(format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"m","params":{{"_meta":{}1{},"arguments":{}2{}}}}}"#,
            "[".repeat(n),
            "]".repeat(n),
            "{\"a\":".repeat(n),
            "}".repeat(n)
        ));
    }
    // Checked objects nested deeper than the walk follows one by one.
    for n in [6, 7, 8, 9, 12] {
        for inner in [
            r#"{"x":1,"y":2}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"x":1,"d":[[[[{"e":1,"e":1}]]]]}"#,
            r#"{"x":1,"x":1,"d":[[[[[[[[[[1]]]]]]]]]]}"#,
            r#"{"x":[[[[[[[[[[1]]]]]]]]]],"x":1}"#,
        ] {
            messages.push(format!(
                r#"{{"jsonrpc":"2.0","id":10,"method":"m","params":{{"_meta":{}{inner}{},"k":{{"a":1,"a":1}}}}}}"#,
                "{\"a\":".repeat(n),
                "}".repeat(n)
            ));
        }
    }
    for m in &messages {
        for depth in [1, 2, 3, 4, 5, 8, 10, 12, 14, 16, 20, 64, MAX_DEPTH] {
            let bytes = Bytes::from(m.clone());
            let one = Parser::default().parse_within(bytes.clone(), depth);
            let two = Parser::default()
                .parse_two_pass(bytes, depth)
                .map(Message::Single);
            assert_eq!(
                format!("{one:?}"),
                format!("{two:?}"),
                "{m} at depth {depth}"
            );
        }
    }
}

/// The parse notes a result's own `resultType` member, in a client's message and in an
/// upstream's alike, and nothing else that spells the word.
#[test]
fn a_result_type_member_is_noted() {
    for (result, has) in [
        (r#"{"resultType":"complete","content":[]}"#, true),
        (r#"{"content":[],"resultType" : 1}"#, true),
        (r#"{"content":[{"resultType":"x"}]}"#, false),
        (r#"{"content":"resultType","x":{"resultType":1}}"#, false),
        (r#"{"result\u0054ype":1}"#, false),
        (r#"["resultType"]"#, false),
        (r#""resultType""#, false),
        (r#"{}"#, false),
    ] {
        let m = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#);
        let client = one(&m).expect("parses");
        let up = upstream(&m).expect("parses");
        assert_eq!(client.result_has_type(), has, "{m}");
        assert_eq!(up.result_has_type(), has, "{m}");
    }
}
