//! End-to-end on loopback: the client and the loops against an in-process fixture (and the
//! floor in front of it), on both drivers.

use std::net::SocketAddr;

use clap::Parser;
use serde_json::Value;

use super::*;
use crate::{fixture, floor, mcp::Op, stats::ErrorKind};

const T: Duration = Duration::from_secs(5);

fn start_fixture(flags: &[&str]) -> SocketAddr {
    let mut argv = vec!["mcpgw-fixture", "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(flags);
    let args = fixture::Args::try_parse_from(argv).expect("fixture flags");
    // The server threads stay up for the rest of the test process.
    fixture::start(&args).expect("fixture starts").addr
}

fn start_floor(upstream: SocketAddr) -> SocketAddr {
    let up = upstream.to_string();
    let args =
        floor::Args::try_parse_from(["mcpgw-floor", "--listen", "127.0.0.1:0", "--upstream", &up])
            .expect("floor flags");
    floor::start(&args).expect("floor starts").addr
}

fn target(addr: SocketAddr, path: &str) -> Arc<Target> {
    Arc::new(Target::parse(&format!("http://{addr}{path}")).expect("url"))
}

fn bodies(tool: &str, result_bytes: Option<usize>) -> Bodies {
    Bodies::new(&Payload {
        tool: tool.into(),
        sample: None,
        payload_bytes: 100,
        result_bytes,
        resource: "fixture://static/1".into(),
        stateless: false,
    })
}

fn roundtrips(driver: Driver, addr: SocketAddr, stateful: bool) {
    let target = target(addr, "/mcp");
    let ok = bodies("echo", Some(70_000));
    let wrong = bodies("nope", None);
    let mut rt = Runtime::new(driver).expect("runtime");
    rt.block_on(async {
        let mut c = Client::new(target);
        c.setup(T).await.expect("session set up");
        assert_eq!(c.session().is_some(), stateful);
        for op in Op::ALL {
            for _ in 0..3 {
                let out = c.request(op, &ok, T).await;
                assert_eq!(out.result, Ok(()), "{op}");
                assert!(out.received > 0 && out.sent > 0);
            }
        }
        let out = c.request(Op::Call, &ok, T).await;
        assert!(out.received > 70_000, "result_bytes honoured: {out:?}");
        let out = c.request(Op::Call, &wrong, T).await;
        assert_eq!(out.result, Err(ErrorKind::Rpc(-32602)));
        // The connection is still in step after an error answer.
        assert_eq!(c.request(Op::List, &ok, T).await.result, Ok(()));
    });
}

#[test]
fn client_json_on_both_drivers() {
    let addr = start_fixture(&[]);
    roundtrips(Driver::Uring, addr, true);
    roundtrips(Driver::Epoll, addr, true);
}

#[test]
fn client_sse_and_stateless() {
    roundtrips(Driver::Uring, start_fixture(&["--sse"]), true);
    roundtrips(
        Driver::Epoll,
        start_fixture(&["--sse", "--stateless"]),
        false,
    );
}

#[test]
fn client_through_the_floor_json_and_sse() {
    roundtrips(Driver::Uring, start_floor(start_fixture(&[])), true);
    roundtrips(Driver::Uring, start_floor(start_fixture(&["--sse"])), true);
}

#[test]
fn client_setup_errors_and_timeouts() {
    let addr = start_fixture(&["--delay-ms", "300"]);
    let mut rt = Runtime::new(Driver::Uring).expect("runtime");
    rt.block_on(async {
        let mut c = Client::new(target(addr, "/other"));
        assert_eq!(c.setup(T).await, Err(ErrorKind::Http(404)));

        let mut c = Client::new(target(addr, "/mcp"));
        c.setup(T).await.expect("session set up");
        let short = Duration::from_millis(50);
        let out = c.request(Op::Call, &bodies("echo", None), short).await;
        assert_eq!(out.result, Err(ErrorKind::Timeout));
        // No delay on lists: the reopened connection works.
        let out = c.request(Op::List, &bodies("echo", None), T).await;
        assert_eq!(out.result, Ok(()));
    });
}

fn load(flags: &[String]) -> (u8, Value) {
    let dir = std::env::temp_dir().join(format!("mcpgw-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join(format!(
        "{}.json",
        flags.join("_").replace(['/', ':', '.'], "")
    ));
    let mut argv: Vec<String> = ["mcpgw-load", "--quiet", "--self-cpu", "--json"]
        .into_iter()
        .map(String::from)
        .collect();
    argv.push(json.display().to_string());
    argv.extend_from_slice(flags);
    let code = run(Args::try_parse_from(argv).expect("load flags")).expect("load runs");
    let text = std::fs::read_to_string(&json).expect("json written");
    let _ = std::fs::remove_file(&json);
    (code, serde_json::from_str(&text).expect("valid json"))
}

fn flags(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn closed_loop_counts_exactly() {
    let addr = start_fixture(&[]);
    let (code, v) = load(&flags(&format!(
        "--url http://{addr}/mcp -c 3 -t 2 -n 300 -w 0 --mix call=8,list=1,read=1"
    )));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], 300);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["sessions"], 3);
    assert!(v["latency_us"]["p50"].as_u64().is_some_and(|p| p > 0));
    // Each connection follows the 8:1:1 pattern; how many requests each one got varies.
    let calls = v["by_op"]["call"]["count"].as_u64().unwrap_or(0);
    assert!(calls.abs_diff(240) <= 3, "{v}");
    let counts: u64 = ["call", "list", "read"]
        .iter()
        .filter_map(|op| v["by_op"][op]["count"].as_u64())
        .sum();
    assert_eq!(counts, 300);
    assert!(v["percentiles"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(v["calls_per_s"].as_f64().is_some_and(|r| r > 0.0));

    // Accept: text/event-stream alone makes the fixture answer as SSE.
    let (code, v) = load(&flags(&format!(
        "--url http://{addr}/mcp -c 2 -n 50 -w 0 --sse --driver epoll"
    )));
    assert_eq!(
        (code, &v["ok"], &v["sse_only"]),
        (0, &Value::from(50), &Value::from(true))
    );
}

#[test]
fn errors_are_counted_and_fail_the_run() {
    let addr = start_fixture(&[]);
    let (code, v) = load(&flags(&format!(
        "--url http://{addr}/mcp -c 2 -n 20 -w 0 --tool nope"
    )));
    assert_eq!(code, EXIT_ERRORS);
    assert_eq!(v["ok"], 0);
    assert_eq!(v["errors"], 20);
    assert_eq!(v["errors_by_kind"]["json-rpc error -32602"], 20);

    // Warm-up errors count too, though nothing else of the warm-up does.
    let (code, v) = load(&flags(&format!(
        "--url http://{addr}/mcp -c 1 -d 0.2 -w 0.2 --mix call=1,read=1 --resource fixture://x"
    )));
    assert_eq!(code, EXIT_ERRORS);
    let warm = v["errors_by_kind"]["warm-up: json-rpc error -32002"].as_u64();
    let measured = v["errors_by_kind"]["json-rpc error -32002"].as_u64();
    assert!(
        warm.is_some_and(|n| n > 0) && measured.is_some_and(|n| n > 0),
        "{v}"
    );
    // call and read alternate: as many ok calls as failed reads, give or take one.
    let ok = v["ok"].as_u64().unwrap_or(0);
    assert!(measured.is_some_and(|n| n.abs_diff(ok) <= 1), "{v}");

    // Nothing listens on the port of a listener we just closed.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (code, v) = load(&flags(&format!("--url http://{free}/mcp -c 2 -n 5 -w 0")));
    assert_eq!(code, EXIT_ERRORS);
    assert_eq!(v["sessions"], 0);
    assert_eq!(v["errors_by_kind"]["session setup: connect failed"], 2);
}

#[test]
fn open_loop_sends_the_schedule() {
    let addr = start_fixture(&["--sse"]);
    let (code, v) = load(&flags(&format!(
        "--url http://{addr}/mcp -c 4 -t 2 --rate 2000 -d 0.5 -w 0.2"
    )));
    assert_eq!(code, 0, "{v}");
    // Requests due in [0.2 s, 0.7 s) at 2000/s.
    assert_eq!(v["ok"], 1000);
    assert_eq!(v["mode"], "open");
    assert!(v["window_s"].as_f64().is_some_and(|w| w > 0.45), "{v}");
}
