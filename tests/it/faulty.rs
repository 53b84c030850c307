//! A misbehaving MCP upstream for fault tests: Streamable HTTP (JSON answers, no session),
//! whose `tools/call` answers as the test sets: normally, slowly, with HTTP 500, by closing
//! the connection, or never. It can stop listening (connections refused) and start again
//! on the same port. It counts the calls it received per tool.
//!
//! Started with [`Faulty::stateful`], it issues an `Mcp-Session-Id` on `initialize` and counts
//! calls per session id; [`Faulty::kill`] also closes the connections it has open.
//!
//! Tools: `get_thing` (annotated `readOnlyHint`: safe to retry), `do_thing` (not annotated),
//! `list_things` (named in the gateway's `idempotent_tools` by the tests).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
use serde_json::{json, Value};

/// How `tools/call` is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A result at once.
    Ok,
    /// A result after this many milliseconds.
    Slow(u64),
    /// HTTP 500.
    Error500,
    /// The connection is closed after the request is read.
    Drop,
    /// No answer, ever (the connection is held).
    Hang,
    /// A result at once, then the connection is closed (without `Connection: close`).
    CloseAfter,
    /// A result at once, then the fixture shuts its sending side and goes on reading (as a
    /// lingering close does): a request that comes is counted, never answered.
    Linger,
}

struct State {
    mode: Mutex<Mode>,
    /// The next this-many calls get HTTP 500, then `mode` applies.
    fail_next: AtomicU32,
    calls: Mutex<HashMap<String, u32>>,
    listening: AtomicBool,
    /// `params._meta` of the last `tools/call`.
    last_meta: Mutex<Value>,
    /// Its `traceparent` HTTP header.
    last_traceparent: Mutex<Option<String>>,
    /// Issue session ids (`s<port>-<n>`).
    sessions: AtomicBool,
    /// `initialize` requests received.
    inits: AtomicU32,
    /// `tools/call`s received per `Mcp-Session-Id`.
    by_session: Mutex<HashMap<String, u32>>,
    /// Open connections (clones), for `kill`.
    open: Mutex<Vec<TcpStream>>,
    /// Connections ended (shut down) so far.
    ended: AtomicU32,
}

/// The running fixture.
pub struct Faulty {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    /// The accept loop (it owns the listener).
    acceptor: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Faulty {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Ok),
            fail_next: AtomicU32::new(0),
            calls: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(true),
            last_meta: Mutex::new(Value::Null),
            last_traceparent: Mutex::new(None),
            sessions: AtomicBool::new(false),
            inits: AtomicU32::new(0),
            by_session: Mutex::new(HashMap::new()),
            open: Mutex::new(Vec::new()),
            ended: AtomicU32::new(0),
        });
        let f = Faulty {
            addr,
            state,
            stop: Arc::new(AtomicBool::new(false)),
            acceptor: Mutex::new(None),
        };
        f.serve(listener);
        f
    }

    fn serve(&self, listener: TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let (state, stop) = (self.state.clone(), self.stop.clone());
        *self.acceptor.lock() = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && state.listening.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        // Kept for `kill`; shut down when the connection ends, since this
                        // clone would otherwise keep it open.
                        let kept = c.try_clone().ok();
                        if let Some(k) = kept.as_ref().and_then(|k| k.try_clone().ok()) {
                            state.open.lock().push(k);
                        }
                        let state = state.clone();
                        std::thread::spawn(move || {
                            connection(c, &state);
                            if let Some(k) = kept {
                                let _ = k.shutdown(std::net::Shutdown::Both);
                            }
                            state.ended.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    /// A fixture that issues session ids.
    pub fn stateful() -> Self {
        let f = Self::start();
        f.state.sessions.store(true, Ordering::SeqCst);
        f
    }

    /// `initialize` requests received so far.
    pub fn inits(&self) -> u32 {
        self.state.inits.load(Ordering::SeqCst)
    }

    /// `tools/call`s received so far, per `Mcp-Session-Id` ("" without one).
    pub fn session_calls(&self) -> HashMap<String, u32> {
        self.state.by_session.lock().clone()
    }

    /// Goes down hard: stops listening and closes every open connection, then waits a
    /// moment for the closes to reach the gateway (a loaded machine may deliver them late;
    /// a request written into a connection closing under it may have been read, so the
    /// gateway rightly does not send it again unless it is idempotent).
    pub fn kill(&self) {
        self.go_down();
        for c in self.state.open.lock().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock() = mode;
    }

    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Connections ended so far (by the fixture or by their client).
    pub fn ended(&self) -> u32 {
        self.state.ended.load(Ordering::SeqCst)
    }

    /// Calls of `tool` received so far.
    pub fn calls(&self, tool: &str) -> u32 {
        self.state.calls.lock().get(tool).copied().unwrap_or(0)
    }

    /// `params._meta` of the last `tools/call` received.
    pub fn last_meta(&self) -> Value {
        self.state.last_meta.lock().clone()
    }

    /// The `traceparent` header of the last `tools/call` received.
    pub fn last_traceparent(&self) -> Option<String> {
        self.state.last_traceparent.lock().clone()
    }

    /// Stops listening: new connections are refused.
    pub fn go_down(&self) {
        self.state.listening.store(false, Ordering::SeqCst);
        // Returns once the accept loop has ended and dropped the listener, however loaded
        // the machine is.
        if let Some(t) = self.acceptor.lock().take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same port.
    pub fn come_back(&self) {
        self.state.listening.store(true, Ordering::SeqCst);
        let listener = TcpListener::bind(self.addr).expect("rebind");
        self.serve(listener);
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connection(c: TcpStream, state: &State) {
    let _ = c.set_nodelay(true);
    let mut r = BufReader::new(match c.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut w = c;
    loop {
        let mut len = 0usize;
        let mut traceparent = None;
        let mut session = String::new();
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("traceparent") {
                    traceparent = Some(v.trim().to_string());
                }
                if k.eq_ignore_ascii_case("mcp-session-id") {
                    session = v.trim().to_string();
                }
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if !line.starts_with("POST") {
            let _ = w.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
            continue;
        }
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let method = msg["method"].as_str().unwrap_or("");
        let id = msg.get("id").cloned();
        let mut issued = String::new();
        let mut after = Mode::Ok;
        let result = match method {
            "initialize" => {
                let n = state.inits.fetch_add(1, Ordering::SeqCst);
                if state.sessions.load(Ordering::SeqCst) {
                    let port = w.local_addr().map(|a| a.port()).unwrap_or(0);
                    issued = format!("Mcp-Session-Id: s{port}-{n}\r\n");
                }
                json!({
                "protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "faulty", "version": "1"},
                })
            }
            "tools/list" => json!({"tools": [
                {"name": "get_thing", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                {"name": "do_thing", "inputSchema": {"type": "object"}},
                {"name": "list_things", "inputSchema": {"type": "object"}},
            ]}),
            "tools/call" => {
                let tool = msg["params"]["name"].as_str().unwrap_or("").to_string();
                *state.last_meta.lock() = msg["params"]["_meta"].clone();
                *state.last_traceparent.lock() = traceparent.clone();
                *state.calls.lock().entry(tool.clone()).or_default() += 1;
                *state.by_session.lock().entry(session.clone()).or_default() += 1;
                let fail = state
                    .fail_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let mode = if fail {
                    Mode::Error500
                } else {
                    *state.mode.lock()
                };
                match mode {
                    Mode::Ok => {}
                    Mode::Slow(ms) => std::thread::sleep(Duration::from_millis(ms)),
                    Mode::Error500 => {
                        let _ = w.write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                        );
                        continue;
                    }
                    Mode::Drop => return,
                    Mode::Hang => {
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    Mode::CloseAfter | Mode::Linger => after = mode,
                }
                json!({"content": [{"type": "text", "text": format!("{tool} done")}]})
            }
            _ if id.is_none() => {
                let _ = w.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            _ => json!({}),
        };
        let out = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{issued}Content-Length: {}\r\n\r\n",
            out.len()
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(out.as_bytes()).is_err() {
            return;
        }
        match after {
            Mode::CloseAfter => return,
            Mode::Linger => {
                let _ = w.shutdown(std::net::Shutdown::Write);
            }
            _ => {}
        }
    }
}

// === calls through the gateway ===

/// Calls `<upstream>__<tool>` (no arguments) in session `sid` over a fresh connection; the
/// JSON-RPC answer (HTTP 200 asserted).
pub fn call(gw: &crate::support::Gateway, sid: &str, upstream: &str, tool: &str) -> Value {
    let mut c = crate::support::Raw::connect(gw.addr);
    c.send(&crate::support::post(
        &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{upstream}__{tool}","arguments":{{}}}}}}"#),
        &[&format!("Mcp-Session-Id: {sid}"), "Accept: application/json"],
    ));
    let r = c.read().expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// The JSON-RPC error code of an answer, 0 for a result.
pub fn code(v: &Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or(0)
}

/// Whether an answer is a result with text.
pub fn ok(v: &Value) -> bool {
    v["result"]["content"][0]["text"].is_string()
}
