use super::*;

fn resp(s: &str) -> ResponseHead {
    parse_response_head(s.as_bytes())
        .expect("valid head")
        .expect("complete head")
}

#[test]
fn response_head_content_length_json_session() {
    let raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n\
               mcp-session-id: abc123\r\nContent-Length: 12\r\n\r\n{\"result\":1}";
    let h = resp(raw);
    assert_eq!(h.status, 200);
    assert_eq!(h.body, BodyLen::Length(12));
    assert_eq!(h.content_type, ContentType::Json);
    assert_eq!(
        &raw[h.session_id.clone().expect("session header")],
        "abc123"
    );
    assert_eq!(&raw[h.len..], "{\"result\":1}");
    assert!(!h.close);
}

#[test]
fn response_head_chunked_sse_and_close() {
    let h = resp(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\
         Content-Length: 99\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(h.body, BodyLen::Chunked, "chunked wins over Content-Length");
    assert_eq!(h.content_type, ContentType::EventStream);
    assert!(h.close);
    let h = resp("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    assert_eq!(h.body, BodyLen::UntilClose);
    assert_eq!(h.content_type, ContentType::Other);
    assert!(h.close, "HTTP/1.0 closes by default");
}

#[test]
fn response_head_bodiless_statuses() {
    assert_eq!(
        resp("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").body,
        BodyLen::Length(0)
    );
    // RFC 9112 6.3: no framing header on a status that may have a body = until close.
    assert_eq!(
        resp("HTTP/1.1 202 Accepted\r\n\r\n").body,
        BodyLen::UntilClose
    );
    assert_eq!(
        resp("HTTP/1.1 100 Continue\r\n\r\n").body,
        BodyLen::Length(0)
    );
    assert_eq!(
        resp("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n").body,
        BodyLen::Length(0)
    );
}

#[test]
fn response_head_partial_and_malformed() {
    assert_eq!(
        parse_response_head(b"HTTP/1.1 200 OK\r\nContent-"),
        Ok(None)
    );
    assert_eq!(parse_response_head(b""), Ok(None));
    assert!(parse_response_head(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
    assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    assert!(parse_response_head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    )
    .is_err());
    assert_eq!(
        parse_response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Err(HttpError::Unsupported("transfer-encoding"))
    );
    let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
    assert_eq!(
        parse_response_head(huge.as_bytes()),
        Err(HttpError::HeadTooLarge)
    );
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        parse_response_head(many.as_bytes()),
        Err(HttpError::HeadTooLarge)
    );
}

#[test]
fn request_head_fields() {
    let raw = "POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\
               Content-Length: 3\r\n\r\nabc";
    let h = parse_request_head(raw.as_bytes())
        .expect("valid")
        .expect("complete");
    assert_eq!(h.method, Method::Post);
    assert_eq!(&raw[h.path.clone()], "/mcp?x=1");
    assert_eq!(h.body, BodyLen::Length(3));
    assert!(!h.accepts_json);
    assert!(!h.close);
    let h = parse_request_head(b"GET / HTTP/1.1\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        .expect("valid")
        .expect("complete");
    assert_eq!(
        (h.method, h.body, h.close, h.accepts_json),
        (Method::Get, BodyLen::Length(0), true, true)
    );
    let h = parse_request_head(
        b"POST /mcp HTTP/1.1\r\nAccept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .expect("valid")
    .expect("complete");
    assert_eq!(h.body, BodyLen::Chunked);
    assert!(h.accepts_json);
}

/// Feeds `input` split at every position pair into a decoder and checks the result each time.
fn decode_split(input: &[u8], want: &[u8]) {
    for cut in 0..=input.len() {
        let mut dec = Chunked::default();
        let mut out = Vec::new();
        let mut buf = input[..cut].to_vec();
        let n = dec.feed(&buf, Some(&mut out)).expect("valid chunked");
        buf.drain(..n);
        buf.extend_from_slice(&input[cut..]);
        let n = dec.feed(&buf, Some(&mut out)).expect("valid chunked");
        assert!(dec.is_done(), "cut at {cut}");
        assert_eq!(n, buf.len(), "cut at {cut}: all consumed");
        assert_eq!(out, want, "cut at {cut}");
    }
}

#[test]
fn chunked_whole_split_and_byte_by_byte() {
    let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    decode_split(body, b"hello, world");
    let mut dec = Chunked::default();
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for &b in body.iter() {
        pending.push(b);
        let n = dec.feed(&pending, Some(&mut out)).expect("valid");
        pending.drain(..n);
    }
    assert!(dec.is_done());
    assert!(pending.is_empty());
    assert_eq!(out, b"hello, world");
}

#[test]
fn chunked_trailers_and_following_bytes() {
    let body = b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\nHTTP/1.1 200 OK";
    let mut dec = Chunked::default();
    let mut out = Vec::new();
    let n = dec.feed(body, Some(&mut out)).expect("valid");
    assert!(dec.is_done());
    assert_eq!(
        &body[n..],
        b"HTTP/1.1 200 OK",
        "never consumes past the body"
    );
    assert_eq!(out, b"abc");
    decode_split(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n", b"abc");
}

#[test]
fn chunked_large_hex_and_check_only() {
    let data = vec![b'z'; 0x1234];
    let mut body = b"1234\r\n".to_vec();
    body.extend_from_slice(&data);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    decode_split(&body, &data);
    let mut dec = Chunked::default();
    assert_eq!(dec.feed(&body, None), Ok(body.len()));
    assert!(dec.is_done());
}

#[test]
fn chunked_malformed() {
    for bad in [&b"zz\r\n"[..], b"3\r\nabcX\r\n", b"3\r\nabc\r\r"] {
        let mut dec = Chunked::default();
        assert_eq!(dec.feed(bad, None), Err(HttpError::BadChunk), "{bad:?}");
    }
    let mut dec = Chunked::default();
    let long = vec![b'1'; MAX_LINE + 10];
    assert!(dec.feed(&long, None).is_err());
}

#[test]
fn framed_len_of_both_framings() {
    let msg = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcNEXT";
    let h = parse_response_head(msg).expect("valid").expect("complete");
    let (mut c, mut s) = (Chunked::default(), 0);
    assert_eq!(
        framed_len(&msg[..h.len + 2], h.len, h.body, &mut c, &mut s),
        Ok(None)
    );
    assert_eq!(
        framed_len(msg, h.len, h.body, &mut c, &mut s),
        Ok(Some(h.len + 3))
    );

    let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT";
    let h = parse_response_head(msg).expect("valid").expect("complete");
    let (mut c, mut s) = (Chunked::default(), 0);
    // Grow the visible data a few bytes at a time, as reads would.
    let mut got = None;
    for end in (h.len..=msg.len()).step_by(3) {
        got = framed_len(&msg[..end], h.len, h.body, &mut c, &mut s).expect("valid");
        if got.is_some() {
            break;
        }
    }
    let got = got.or_else(|| framed_len(msg, h.len, h.body, &mut c, &mut s).expect("valid"));
    assert_eq!(got, Some(msg.len() - 4));
}

#[test]
fn read_buf_consume_and_clear() {
    let mut rb = ReadBuf::with_capacity(8);
    assert!(rb.data().is_empty());
    rb.buf.extend_from_slice(b"abcdef");
    rb.consume(2);
    assert_eq!(rb.data(), b"cdef");
    rb.consume(100);
    assert!(rb.data().is_empty());
    assert_eq!(rb.start, 0);
    rb.buf.extend_from_slice(b"xy");
    rb.clear();
    assert!(rb.data().is_empty());
}
