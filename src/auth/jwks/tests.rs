//! A JWKS served from a loopback socket by a test thread, switched while the fetcher runs.

// Test threads may sleep while they wait for the fetch thread.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;

use super::Remote;
use crate::net::policy::{AddressPolicy, Listener};

/// A policy that refuses only the always-refused set.
fn open() -> Arc<AddressPolicy> {
    Arc::new(AddressPolicy::new(Vec::new()))
}

const JWKS: &str = include_str!("../testdata/jwks.json");

/// The JWKS test document with only the key `kid`.
fn only(kid: &str) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] == kid);
    doc.to_string()
}

/// Answers every request with the current (status, body); counts requests.
struct Server {
    url: String,
    answer: Arc<ArcSwap<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn start(status: u16, body: String) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", l.local_addr().unwrap());
        let answer = Arc::new(ArcSwap::from_pointee((status, body)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let ans = a.load();
                let _ = write!(
                    c,
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    ans.0,
                    ans.1.len(),
                    ans.1
                );
            }
        });
        Server { url, answer, hits }
    }

    fn set(&self, status: u16, body: String) {
        self.answer.store(Arc::new((status, body)));
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn fetches_at_start_and_early_on_an_unknown_kid_at_most_once_per_interval() {
    let srv = Server::start(200, only("ec1"));
    let updates = Arc::new(AtomicUsize::new(0));
    let u = updates.clone();
    let r = Remote::start(
        &srv.url,
        Duration::from_secs(3600),
        Duration::from_secs(2),
        open(),
        move || {
            u.fetch_add(1, Ordering::SeqCst);
        },
    )
    .unwrap();
    wait_until("the first fetch", || r.fetched().generation == 1);
    assert!(r.fetched().keys.has_kid("ec1"));
    assert_eq!(updates.load(Ordering::SeqCst), 1);

    // Rotation: the provider now has rsa1. Within min_refetch of the last fetch a worker's
    // request is ignored; after it, one request refetches, and a second is not needed.
    srv.set(200, only("rsa1"));
    assert!(!r.want_refetch(), "within min_refetch of the first fetch");
    wait_until("min_refetch to pass", || r.want_refetch());
    assert!(!r.want_refetch(), "a refetch is already pending");
    wait_until("the refetch", || r.fetched().generation == 2);
    let f = r.fetched();
    assert!(f.keys.has_kid("rsa1") && !f.keys.has_kid("ec1"));
    assert_eq!(updates.load(Ordering::SeqCst), 2);
    assert!(!r.want_refetch(), "the refetch just happened");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn failures_keep_the_last_good_keys_and_are_retried() {
    let srv = Server::start(503, "down".into());
    let r = Remote::start(
        &srv.url,
        Duration::from_millis(1_000),
        Duration::from_secs(30),
        open(),
        || {},
    )
    .unwrap();
    // The first fetch fails: no keys, and the thread tries again (after 1 s).
    wait_until("a retry", || srv.hits.load(Ordering::SeqCst) >= 2);
    assert_eq!(r.fetched().generation, 0);
    assert!(r.fetched().keys.is_empty());
    srv.set(200, only("ec1"));
    wait_until("keys", || r.fetched().generation == 1);
    // Broken answers (error status, not a JWKS) leave the keys as they were.
    for (status, body) in [(500, "oops".to_string()), (200, "{\"keys\":[]}".into())] {
        let before = srv.hits.load(Ordering::SeqCst);
        srv.set(status, body);
        wait_until("another fetch", || srv.hits.load(Ordering::SeqCst) > before);
        let f = r.fetched();
        assert_eq!(f.generation, 1);
        assert!(f.keys.has_kid("ec1"));
    }
    // An unchanged document is not published again.
    srv.set(200, only("ec1"));
    let before = srv.hits.load(Ordering::SeqCst);
    wait_until("another fetch", || {
        srv.hits.load(Ordering::SeqCst) > before + 1
    });
    assert_eq!(r.fetched().generation, 1);
}

#[test]
fn a_url_the_policy_refuses_is_never_fetched() {
    let srv = Server::start(200, only("ec1"));
    let addr: std::net::SocketAddr = srv.url["http://".len()..]
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap();
    let own = Arc::new(AddressPolicy::new(vec![(addr, Listener::Mcp)]));
    let url = format!("http://localhost:{}/jwks.json", addr.port());
    let r = Remote::start(
        &url,
        Duration::from_secs(3600),
        Duration::from_secs(30),
        own,
        || {},
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.fetched().generation, 0);
    assert_eq!(srv.hits.load(Ordering::SeqCst), 0);
}
