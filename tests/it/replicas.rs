//! Upstream replicas (`urls`): calls spread over them, sessions stick to one, a replica that
//! fails is ejected (calls go on at the others) and comes back; validation names the field.
//! The replicas are tests/it/faulty.rs fixtures, each counting what it received.

use std::{net::SocketAddr, process::Command};

use serde_json::{json, Value};

use crate::{
    faulty::{self, ok, Faulty, Mode},
    support::{admin, free_port, initialize, scrape, wait_for, Gateway, TempDir},
};

const TOKEN: &str = "replicas";

/// A gateway in front of `replicas` as upstream `r`, with `extra` lines in its table.
fn start(replicas: &[&Faulty], extra: &str) -> (Gateway, SocketAddr) {
    start_with(replicas, 2000, extra)
}

/// [`start`] with a call timeout, ms.
fn start_with(replicas: &[&Faulty], timeout_ms: u64, extra: &str) -> (Gateway, SocketAddr) {
    let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let urls: Vec<String> = replicas
        .iter()
        .map(|f| format!("\"{}\"", f.url()))
        .collect();
    let gw = Gateway::start(
        "health_interval_ms = 0",
        &format!(
            "[[upstream]]\nname = \"r\"\ntransport = \"http\"\nurls = [{}]\ncall_timeout_ms = {timeout_ms}\n{extra}\n\n[admin]\nlisten = \"{admin_addr}\"\ntoken = \"{TOKEN}\"\ndata_dir = \":memory:\"\n",
            urls.join(", ")
        ),
        "auto",
    );
    (gw, admin_addr)
}

/// Calls `tool` of upstream `r` in session `sid`; the JSON-RPC answer.
fn call(gw: &Gateway, sid: &str, tool: &str) -> Value {
    faulty::call(gw, sid, "r", tool)
}

/// Calls of every tool a fixture received.
fn total(f: &Faulty) -> u32 {
    f.calls("get_thing") + f.calls("do_thing") + f.calls("list_things")
}

/// The replicas of upstream `r` as `/admin/upstreams` shows them.
fn replicas(admin_addr: SocketAddr) -> Vec<Value> {
    let v = admin(admin_addr, "GET", "/admin/upstreams", Some(TOKEN), None).json();
    v["upstreams"][0]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ejected(admin_addr: SocketAddr, url: &str) -> bool {
    replicas(admin_addr)
        .iter()
        .any(|r| r["url"] == url && r["ejected"] == true)
}

/// Which fixture (index) served one call of a new session `sid`; the session is pinned there.
fn pin(gw: &Gateway, fixtures: &[&Faulty], sid: &str) -> usize {
    let before: Vec<u32> = fixtures.iter().map(|f| total(f)).collect();
    assert!(ok(&call(gw, sid, "do_thing")));
    let after: Vec<u32> = fixtures.iter().map(|f| total(f)).collect();
    let moved: Vec<usize> = (0..fixtures.len())
        .filter(|i| after[*i] != before[*i])
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "one call reached one replica: {before:?} -> {after:?}"
    );
    moved[0]
}

#[test]
fn concurrent_calls_spread_over_replicas() {
    let fs = [Faulty::start(), Faulty::start(), Faulty::start()];
    for f in &fs {
        f.set(Mode::Slow(15));
    }
    // Shared session: every call is balanced on its own.
    let (gw, admin_addr) = start(&[&fs[0], &fs[1], &fs[2]], "session = \"shared\"");
    let (threads, each) = (6, 20);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let sid = initialize(gw.addr, "2025-11-25");
                for _ in 0..each {
                    assert!(ok(&call(&gw, &sid, "get_thing")));
                }
            });
        }
    });
    let counts: Vec<u32> = fs.iter().map(|f| f.calls("get_thing")).collect();
    println!(
        "replicas: {} concurrent calls landed {counts:?}",
        threads * each
    );
    assert_eq!(counts.iter().sum::<u32>(), threads * each);
    // A fair share is 40 each; p2c keeps every replica well above a half of that.
    assert!(counts.iter().all(|c| *c >= 20), "{counts:?}");
    for f in &fs {
        let sample = format!(
            "mcpgw_upstream_replica_calls_total{{upstream=\"r\",replica=\"{}\"}}",
            f.url()
        );
        // Calls plus the shared session's own requests (initialize, catalog).
        assert!(
            scrape(admin_addr, TOKEN, &sample) >= f64::from(f.calls("get_thing")),
            "{sample}"
        );
    }
    let listed = replicas(admin_addr);
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .all(|r| r["outstanding"] == 0 && r["ejected"] == false));
}

#[test]
fn sessions_stick_to_one_replica() {
    let fs = [Faulty::stateful(), Faulty::stateful()];
    let (gw, _admin) = start(&[&fs[0], &fs[1]], "");
    let refs = [&fs[0], &fs[1]];
    let mut per_replica = [0u32; 2];
    for _ in 0..16 {
        let sid = initialize(gw.addr, "2025-11-25");
        let home = pin(&gw, &refs, &sid);
        for _ in 0..4 {
            assert_eq!(
                pin(&gw, &refs, &sid),
                home,
                "a session stays on its replica"
            );
        }
        per_replica[home] += 1;
    }
    println!("replicas: 16 sessions placed {per_replica:?}");
    assert!(per_replica.iter().all(|n| *n > 0), "{per_replica:?}");
    // Each upstream session id the fixtures issued got its calls at one fixture only.
    let (a, b) = (fs[0].session_calls(), fs[1].session_calls());
    assert!(a.keys().all(|k| !b.contains_key(k)), "{a:?} {b:?}");
    assert_eq!(a.values().chain(b.values()).sum::<u32>(), 16 * 5);
}

#[test]
fn a_killed_replica_is_ejected_and_its_sessions_move() {
    let (a, b) = (Faulty::stateful(), Faulty::stateful());
    let (gw, admin_addr) = start(
        &[&a, &b],
        "[upstream.outlier]\nconsecutive_failures = 2\nbase_ejection_ms = 1500",
    );
    let refs = [&a, &b];
    // Sessions on both replicas.
    let mut on_b = Vec::new();
    let mut on_a = Vec::new();
    for _ in 0..40 {
        let sid = initialize(gw.addr, "2025-11-25");
        match pin(&gw, &refs, &sid) {
            0 => on_a.push(sid),
            _ => on_b.push(sid),
        }
        if on_a.len() >= 2 && on_b.len() >= 2 {
            break;
        }
    }
    assert!(on_a.len() >= 2 && on_b.len() >= 2);

    b.kill();
    let (b_calls, a_inits) = (total(&b), a.inits());
    // Nothing can reach B, so nothing was sent: every call succeeds at A, even do_thing
    // (not idempotent), and B's sessions are initialized again at A.
    for sid in on_b.iter().chain(on_a.iter()) {
        let v = call(&gw, sid, "do_thing");
        assert!(ok(&v), "{v}");
    }
    assert_eq!(total(&b), b_calls);
    assert!(
        a.inits() >= a_inits + on_b.len() as u32,
        "B's sessions moved to A"
    );
    // After the second failure B is out; new sessions keep working meanwhile.
    assert!(wait_for(5, || {
        let sid = initialize(gw.addr, "2025-11-25");
        assert!(ok(&call(&gw, &sid, "get_thing")));
        ejected(admin_addr, &b.url())
    }));
    let sample = format!(
        "mcpgw_upstream_replica_ejected{{upstream=\"r\",replica=\"{}\"}}",
        b.url()
    );
    assert_eq!(scrape(admin_addr, TOKEN, &sample), 1.0);
    assert_eq!(total(&b), b_calls, "nothing reached the killed replica");
    let listed = replicas(admin_addr);
    let rb = listed
        .iter()
        .find(|r| r["url"] == b.url())
        .expect("B listed");
    assert_eq!(rb["ejections"], 1, "{listed:?}");
    assert!(rb["ejected_for_ms"].as_u64().unwrap_or(0) <= 1500);

    // B comes back; after the ejection period new sessions reach it again.
    b.come_back();
    assert!(wait_for(5, || !ejected(admin_addr, &b.url())));
    assert_eq!(scrape(admin_addr, TOKEN, &sample), 0.0);
    assert!(wait_for(5, || {
        let sid = initialize(gw.addr, "2025-11-25");
        assert!(ok(&call(&gw, &sid, "get_thing")));
        total(&b) > b_calls
    }));
}

#[test]
fn a_replica_answering_500_is_ejected_and_reads_survive() {
    let (a, b) = (Faulty::stateful(), Faulty::stateful());
    let (gw, admin_addr) = start(
        &[&a, &b],
        "retries = 2\nretry_backoff_ms = 5\nretry_budget_percent = 100\n[upstream.outlier]\nconsecutive_failures = 2\nbase_ejection_ms = 60000",
    );
    let refs = [&a, &b];
    let mut on_b = Vec::new();
    for _ in 0..40 {
        let sid = initialize(gw.addr, "2025-11-25");
        if pin(&gw, &refs, &sid) == 1 {
            on_b.push(sid);
        }
        if on_b.len() >= 2 {
            break;
        }
    }
    assert!(on_b.len() >= 2);
    b.set(Mode::Error500);
    let b_reads = b.calls("get_thing");
    // A read pinned to B: 500, retried on B: 500 (B ejected), retried once more: the session
    // moves to A and the call succeeds there. The client sees only the success.
    for sid in &on_b {
        let v = call(&gw, sid, "get_thing");
        assert!(ok(&v), "{v}");
    }
    assert_eq!(
        b.calls("get_thing"),
        b_reads + 2,
        "B saw two calls, then was out"
    );
    assert!(ejected(admin_addr, &b.url()));
    // A session moved off B stays at A, for any call.
    let a_before = total(&a);
    for sid in &on_b {
        assert!(ok(&call(&gw, sid, "do_thing")));
    }
    assert_eq!(total(&a), a_before + on_b.len() as u32);
    // The breaker stayed closed: only B failed.
    let v = admin(admin_addr, "GET", "/admin/upstreams", Some(TOKEN), None).json();
    assert_eq!(v["upstreams"][0]["breaker"], "closed");
}

#[test]
fn replica_config_errors_name_the_field() {
    let dir = TempDir::new("replicas-check");
    let f = dir.0.join("bad.toml");
    let check = |upstream: &str| {
        std::fs::write(
            &f,
            format!("[gateway]\nlisten = \"127.0.0.1:1\"\n\n[[upstream]]\nname = \"a\"\ntransport = \"http\"\n{upstream}"),
        )
        .expect("write");
        let out = crate::support::mcpgw_check(&f);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (good, err) = check("url = \"http://h:1/mcp\"\nurls = [\"http://h:2/mcp\"]\n");
    assert!(
        !good
            && err.contains("bad.toml:8")
            && err.contains("upstream[0].urls")
            && err.contains("not both"),
        "{err}"
    );
    let (good, err) = check("urls = []\n");
    assert!(!good && err.contains("upstream[0].urls: empty"), "{err}");
    let (good, err) = check("urls = [\"http://h:1/mcp\", \"http//h:2/mcp\"]\n");
    assert!(!good && err.contains("upstream[0].urls[1]"), "{err}");
    let (good, err) = check(
        "urls = [\"http://h:1/mcp\", \"http://h:2/mcp\"]\n[upstream.outlier]\nconsecutive_failures = 3\nbase_ejection_ms = 1000\nmax_ejection_ms = 9000\nmax_ejection_percent = 34\n",
    );
    assert!(good, "{err}");

    // The admin API validates the same way.
    let up = Faulty::start();
    let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let _gw = Gateway::start(
        "health_interval_ms = 0",
        &format!(
            "[[upstream]]\nname = \"f\"\ntransport = \"http\"\nurl = \"{}\"\n\n[admin]\nlisten = \"{admin_addr}\"\ntoken = \"{TOKEN}\"\ndata_dir = \":memory:\"\n",
            up.url()
        ),
        "auto",
    );
    let add = |body: Value| {
        admin(
            admin_addr,
            "POST",
            "/admin/upstreams",
            Some(TOKEN),
            Some(&body),
        )
    };
    let r = add(json!({"name": "x", "transport": "http", "url": up.url(), "urls": [up.url()]}));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("urls"), "{r:?}");
    let r = add(json!({"name": "x", "transport": "http", "urls": []}));
    assert_eq!(r.status, 400, "{r:?}");
    let second = Faulty::start();
    let r = add(json!({
        "name": "x", "transport": "http", "urls": [up.url(), second.url()],
        "outlier": {"consecutive_failures": 1},
    }));
    assert!(r.status < 300, "{r:?}");
    assert!(wait_for(5, || {
        let v = admin(admin_addr, "GET", "/admin/upstreams", Some(TOKEN), None).json();
        v["upstreams"].as_array().is_some_and(|l| {
            l.iter()
                .any(|u| u["name"] == "x" && u["replicas"].as_array().is_some_and(|r| r.len() == 2))
        })
    }));
    // The CLI: --url repeated gives `urls`.
    let out = Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .args([
            "upstreams",
            "add",
            "y",
            "--url",
            &up.url(),
            "--url",
            &second.url(),
        ])
        .args(["--admin", &format!("http://{admin_addr}"), "--token", TOKEN])
        .env_remove("MCPGW_ADMIN_TOKEN")
        .output()
        .expect("run mcpgw");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_for(5, || {
        let v = admin(admin_addr, "GET", "/admin/upstreams", Some(TOKEN), None).json();
        v["upstreams"].as_array().is_some_and(|l| {
            l.iter()
                .any(|u| u["name"] == "y" && u["replicas"][1]["url"] == second.url().as_str())
        })
    }));
}

#[test]
fn a_replica_that_times_out_is_ejected() {
    let (a, b) = (Faulty::stateful(), Faulty::stateful());
    let (gw, admin_addr) = start_with(
        &[&a, &b],
        1000,
        "[upstream.outlier]\nconsecutive_failures = 1\nbase_ejection_ms = 60000",
    );
    let refs = [&a, &b];
    let mut on_b = None;
    for _ in 0..40 {
        let sid = initialize(gw.addr, "2025-11-25");
        if pin(&gw, &refs, &sid) == 1 {
            on_b = Some(sid);
            break;
        }
    }
    let sid = on_b.expect("a session on B");
    b.set(Mode::Hang);
    // The call may have reached B: it times out at the client (-32004), and B is out.
    let v = call(&gw, &sid, "do_thing");
    assert_eq!(v["error"]["code"], -32004, "{v}");
    assert!(ejected(admin_addr, &b.url()));
    // The session's next call goes to A.
    let before = total(&a);
    assert!(ok(&call(&gw, &sid, "do_thing")));
    assert_eq!(total(&a), before + 1);
}

#[test]
fn shared_sessions_survive_a_killed_replica() {
    let (a, b) = (Faulty::stateful(), Faulty::stateful());
    let (gw, admin_addr) = start(
        &[&a, &b],
        "session = \"shared\"\n[upstream.outlier]\nconsecutive_failures = 2\nbase_ejection_ms = 60000",
    );
    let sid = initialize(gw.addr, "2025-11-25");
    assert!(wait_for(5, || {
        assert!(ok(&call(&gw, &sid, "do_thing")));
        total(&a) > 0 && total(&b) > 0
    }));
    b.kill();
    let (a_before, b_before) = (total(&a), total(&b));
    // Every call reaches A: one that found B unreachable was never sent, so it moved.
    for _ in 0..20 {
        let v = call(&gw, &sid, "do_thing");
        assert!(ok(&v), "{v}");
    }
    assert_eq!(total(&a), a_before + 20);
    assert_eq!(total(&b), b_before);
    // B, which failed once, is passed over for a second; tried again, it fails again and is
    // ejected. Calls succeed throughout.
    assert!(wait_for(5, || {
        let v = call(&gw, &sid, "do_thing");
        assert!(ok(&v), "{v}");
        ejected(admin_addr, &b.url())
    }));
    assert_eq!(total(&b), b_before);
}

#[test]
fn calls_of_a_server_without_sessions_are_balanced_one_by_one() {
    // The fixtures issue no session id: each call of one client session picks a replica.
    let (a, b) = (Faulty::start(), Faulty::start());
    let (gw, admin_addr) = start_with(
        &[&a, &b],
        1000,
        "[upstream.outlier]\nconsecutive_failures = 1\nbase_ejection_ms = 60000",
    );
    let sid = initialize(gw.addr, "2025-11-25");
    for _ in 0..40 {
        assert!(ok(&call(&gw, &sid, "get_thing")));
    }
    let (na, nb) = (a.calls("get_thing"), b.calls("get_thing"));
    println!("replicas: 40 calls of one stateless session landed [{na}, {nb}]");
    assert!(na >= 5 && nb >= 5, "{na} {nb}");

    // B hangs: the first call that goes there times out (-32004) and B is out; A is not.
    b.set(Mode::Hang);
    let mut timed_out = false;
    for _ in 0..20 {
        let v = call(&gw, &sid, "get_thing");
        if v["error"]["code"] == -32004 {
            timed_out = true;
            break;
        }
        assert!(ok(&v), "{v}");
    }
    assert!(timed_out, "a call reached B");
    assert!(ejected(admin_addr, &b.url()));
    assert!(!ejected(admin_addr, &a.url()));
    let before = a.calls("do_thing");
    for _ in 0..10 {
        assert!(ok(&call(&gw, &sid, "do_thing")));
    }
    assert_eq!(a.calls("do_thing"), before + 10);
}

#[test]
fn calls_of_a_server_without_sessions_avoid_a_killed_replica() {
    let (a, b) = (Faulty::start(), Faulty::start());
    let (gw, admin_addr) = start(&[&a, &b], "");
    let sid = initialize(gw.addr, "2025-11-25");
    assert!(wait_for(5, || {
        assert!(ok(&call(&gw, &sid, "do_thing")));
        total(&a) > 0 && total(&b) > 0
    }));
    b.kill();
    let before = total(&a);
    // Never sent to B, so sent to A: even do_thing succeeds every time.
    for _ in 0..20 {
        let v = call(&gw, &sid, "do_thing");
        assert!(ok(&v), "{v}");
    }
    assert_eq!(total(&a), before + 20);
    let listed = replicas(admin_addr);
    let rb = listed
        .iter()
        .find(|r| r["url"] == b.url())
        .expect("B listed");
    assert!(
        rb["failures"].as_u64().unwrap_or(0) >= 1 || rb["ejected"] == true,
        "{listed:?}"
    );
}
