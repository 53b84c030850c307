// A test token endpoint waits with real sleeps.
#![allow(clippy::disallowed_methods)]

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::atomic::AtomicUsize,
};

use super::*;
use crate::net::policy::{AddressPolicy, Listener};

/// A token endpoint on loopback: answers each request with `answer(n, request)` (n counts
/// from 1) and records every request.
struct Endpoint {
    url: String,
    requests: Arc<parking_lot::Mutex<Vec<String>>>,
}

fn endpoint(answer: impl Fn(usize) -> (u16, String) + Send + 'static) -> Endpoint {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/token", l.local_addr().expect("addr"));
    let requests = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = requests.clone();
    let n = AtomicUsize::new(0);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Head, then as much body as Content-Length says.
            let req = loop {
                let Ok(k) = c.read(&mut chunk) else {
                    break None;
                };
                if k == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..k]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(text);
                    }
                }
            };
            let Some(req) = req else { continue };
            seen.lock().push(req);
            let (status, body) = answer(n.fetch_add(1, Ordering::SeqCst) + 1);
            let _ = write!(
                c,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Endpoint { url, requests }
}

fn client(url: &str) -> OAuthClient {
    OAuthClient {
        token_url: url.into(),
        client_id: "gw client".into(),
        client_secret: Secret::new("s3:cret"),
        scope: Some("mcp read".into()),
        outbound: Arc::new(AddressPolicy::new(Vec::new())),
    }
}

fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn header(src: &TokenSource) -> Option<String> {
    src.current().map(|t| t.header.expose().to_string())
}

#[test]
fn fetches_with_basic_auth_and_refreshes_early_on_401_at_most_once_per_interval() {
    let ep = endpoint(|n| {
        (
            200,
            format!(r#"{{"access_token":"tok-{n}","token_type":"bearer","expires_in":3600}}"#),
        )
    });
    let src = TokenSource::start_with("up", &client(&ep.url), Duration::from_millis(300));
    assert!(wait_until(|| !src.pending()));
    assert_eq!(header(&src).as_deref(), Some("Bearer tok-1"));
    {
        let reqs = ep.requests.lock();
        let r = &reqs[0];
        assert!(r.starts_with("POST /token "), "{r}");
        // gw%20client -> "gw+client", s3:cret -> "s3%3Acret" (form encoding, RFC 6749 2.3.1).
        let basic = base64::engine::general_purpose::STANDARD.encode("gw+client:s3%3Acret");
        assert!(r.contains(&format!("Basic {basic}")), "{r}");
        assert!(r.contains("grant_type=client_credentials"), "{r}");
        assert!(
            r.contains("scope=mcp+read") || r.contains("scope=mcp%20read"),
            "{r}"
        );
        assert!(r
            .to_ascii_lowercase()
            .contains("application/x-www-form-urlencoded"));
    }
    // Too soon after the first fetch: not honoured.
    assert!(!src.rejected());
    std::thread::sleep(Duration::from_millis(350));
    assert!(src.rejected());
    assert!(!src.rejected(), "one early refresh at a time");
    assert!(wait_until(
        || header(&src).as_deref() == Some("Bearer tok-2")
    ));
    assert_eq!(ep.requests.lock().len(), 2);
}

#[test]
fn short_lived_tokens_are_refreshed_before_they_expire() {
    let ep = endpoint(|n| (200, format!(r#"{{"access_token":"t{n}","expires_in":1}}"#)));
    let src = TokenSource::start("up", &client(&ep.url));
    assert!(wait_until(|| header(&src).is_some()));
    let first = header(&src);
    // Refreshed at 80% of the second: a new token, never a gap.
    let mut gaps = 0;
    let changed = wait_until(|| {
        let h = header(&src);
        gaps += usize::from(h.is_none());
        h.is_some() && h != first
    });
    assert!(changed, "no refresh");
    assert_eq!(gaps, 0);
}

#[test]
fn failures_keep_the_last_token_until_it_expires() {
    let ep = endpoint(|n| match n {
        1 => (200, r#"{"access_token":"only","expires_in":1}"#.into()),
        _ => (
            401,
            r#"{"error":"invalid_client","error_description":"s3:cret"}"#.into(),
        ),
    });
    let src = TokenSource::start("up", &client(&ep.url));
    assert!(wait_until(|| header(&src).is_some()));
    assert_eq!(header(&src).as_deref(), Some("Bearer only"));
    // The refresh at 0.8 s fails; the token stays until 1 s, then there is none.
    assert!(wait_until(|| header(&src).is_none()));
    assert!(ep.requests.lock().len() >= 2);
}

#[test]
fn answers_are_checked_and_errors_show_no_secrets() {
    let ok = parse_answer(
        200,
        br#"{"access_token":"abc","token_type":"Bearer","expires_in":"60"}"#,
    )
    .expect("ok");
    assert_eq!(ok.0.expose(), "Bearer abc");
    assert_eq!(ok.1, Some(Duration::from_secs(60)));
    assert_eq!(
        parse_answer(200, br#"{"access_token":"abc"}"#)
            .expect("ok")
            .1,
        None
    );
    for bad in [
        &br#"{"token_type":"bearer"}"#[..],
        br#"{"access_token":"a b"}"#,
        br#"{"access_token":"abc","token_type":"mac"}"#,
        b"not json secret-xyz",
    ] {
        let e = parse_answer(200, bad).expect_err("bad");
        assert!(!e.contains("secret-xyz") && !e.contains("abc"), "{e}");
    }
    let e = parse_answer(
        400,
        br#"{"error":"invalid_scope","error_description":"tok-9"}"#,
    )
    .expect_err("400");
    assert_eq!(e, "token endpoint answered HTTP 400 (invalid_scope)");
    let e = parse_answer(500, b"<html>tok-9</html>").expect_err("500");
    assert!(!e.contains("tok-9"), "{e}");
    assert_eq!(form_encode("a b/c~").as_str(), "a+b%2Fc%7E");
}

#[test]
fn a_token_endpoint_the_policy_refuses_is_never_asked() {
    let ep = endpoint(|_| (200, r#"{"access_token":"t","expires_in":60}"#.into()));
    // The endpoint's address is named as the gateway's own listener, reached by name.
    let addr: std::net::SocketAddr = ep.url["http://".len()..]
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("addr");
    let mut c = client(&format!("http://localhost:{}/token", addr.port()));
    c.outbound = Arc::new(AddressPolicy::new(vec![(addr, Listener::Admin)]));
    let src = TokenSource::start("up", &c);
    assert!(wait_until(|| !src.pending()));
    assert!(header(&src).is_none());
    assert!(ep.requests.lock().is_empty());
}
