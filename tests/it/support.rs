//! Test support: start the real `mcpgw` binary and real MCP peers, talk to them over sockets.
//!
//! Everything listens on 127.0.0.1. Every child process is killed when its guard drops, so a
//! failing test leaves nothing behind.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, OnceLock},
    time::{Duration, Instant},
};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter of the test venv (with the pinned official `mcp` SDK).
///
/// `MCPGW_TEST_PYTHON` names one explicitly. Otherwise `.venv/` in the repository is used,
/// created (and refreshed when `tests/requirements.txt` changes) on first use, so that
/// `cargo test` works on a fresh machine that has `python3` and can reach PyPI.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        if let Ok(p) = std::env::var("MCPGW_TEST_PYTHON") {
            return PathBuf::from(p);
        }
        let venv = root().join(".venv");
        let py = venv.join("bin/python");
        let req = root().join("tests/requirements.txt");
        let want = std::fs::read_to_string(&req).expect("tests/requirements.txt");
        let marker = venv.join(".mcpgw-requirements");
        if py.exists() && std::fs::read_to_string(&marker).ok().as_deref() == Some(want.as_str()) {
            return py;
        }
        let run = |cmd: &mut Command| {
            let st = cmd.status().expect("run python3 (is it installed?)");
            assert!(st.success(), "{cmd:?} failed: {st}");
        };
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&req));
        std::fs::write(&marker, want).expect("write venv marker");
        py
    })
    .clone()
}

/// A path to a fixture script.
pub fn py(script: &str) -> PathBuf {
    root().join("tests/it/py").join(script)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let mut b = [0u8; 8];
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&(n as u64).to_le_bytes());
        let p = std::env::temp_dir().join(format!(
            "mcpgw-it-{tag}-{}-{:x}",
            std::process::id(),
            u64::from_le_bytes(b)
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fixture MCP server (official Python SDK) over Streamable HTTP.
pub struct HttpFixture {
    _proc: Proc,
    pub port: u16,
}

impl HttpFixture {
    pub fn start(name: &str) -> Self {
        Self::start_on(name, 0)
    }

    /// Starts on `port` (0: any free port).
    pub fn start_on(name: &str, port: u16) -> Self {
        Self::spawn(Command::new(python()).arg(py("upstream.py")).args([
            "--name",
            name,
            "--transport",
            "http",
            "--port",
            &port.to_string(),
        ]))
    }

    /// `upstream.py` as a server of MCP 2026-07-28 alone (`--only-2026`: `initialize`, GET
    /// and DELETE refused).
    pub fn only_2026(name: &str) -> Self {
        Self::start_args(name, &["--only-2026"])
    }

    /// `upstream.py` on any free port, with `extra` flags (see its docstring).
    pub fn start_args(name: &str, extra: &[&str]) -> Self {
        Self::spawn(
            Command::new(python())
                .arg(py("upstream.py"))
                .args(["--name", name, "--transport", "http", "--port", "0"])
                .args(extra),
        )
    }

    /// The conformance fixture (`tests/conformance/fixture.py`).
    pub fn conformance() -> Self {
        Self::spawn(
            Command::new(python())
                .arg(root().join("tests/conformance/fixture.py"))
                .args(["--port", "0"]),
        )
    }

    /// Starts a server that prints `LISTENING <port>` on stderr when ready.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a fixture upstream");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(p) = line.strip_prefix("LISTENING ") {
                        let _ = tx.send(p.trim().parse::<u16>().ok());
                        sent = true;
                    }
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .expect("fixture upstream did not print LISTENING <port> in 30 s");
        HttpFixture {
            _proc: Proc { child },
            port,
        }
    }

    /// Wraps a server started elsewhere on a known port; waits until it accepts connections.
    pub fn adopt(child: Child, port: u16) -> Self {
        let ok = wait_for(30, || TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(ok, "server on port {port} did not listen in 30 s");
        HttpFixture {
            _proc: Proc { child },
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// The strings of a JSON array (names in a tour, say); empty for anything else.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces a running gateway's config file the way operators should: a finished file
/// renamed into place, so a reload never reads one half-written.
pub fn rewrite_config(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).expect("write the new config");
    std::fs::rename(&tmp, path).expect("rename the new config into place");
}

/// `mcpgw check --config <config>`, run to completion.
pub fn mcpgw_check(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .expect("run mcpgw check")
}

/// TOML for a stdio upstream running the Python fixture.
pub fn stdio_fixture_toml(name: &str, extra: &str) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\ntransport = \"stdio\"\ncommand = {py:?}\nargs = [{script:?}, \"--name\", \"{name}\", \"--transport\", \"stdio\"]\n{extra}\n",
        py = python().display().to_string(),
        script = py("upstream.py").display().to_string(),
    )
}

/// TOML for an HTTP upstream.
pub fn http_upstream_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[[upstream]]\nname = \"{name}\"\ntransport = \"http\"\nurl = \"{url}\"\n{extra}\n")
}

/// The gateway under test.
pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// The config file it runs on (when the test wrote one).
    pub config: Option<PathBuf>,
    _dir: TempDir,
}

impl Drop for Gateway {
    /// A test failing with a gateway still up shows whether the gateway was alive and the
    /// end of its log (assertions that print the log themselves make this a repeat).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let state = match self.proc.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            Ok(None) => "still running".to_string(),
            Err(e) => format!("unknown: {e}"),
        };
        let log = self.log_text();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!(
            "--- gateway on {} ({state}), last {} log lines:",
            self.addr,
            tail.len()
        );
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
    }
}

impl Gateway {
    /// Starts `mcpgw run` with `[gateway]` settings `gateway_toml` (listen is added) and
    /// `upstreams_toml`, on `driver`; returns once it accepts connections.
    pub fn start(gateway_toml: &str, upstreams_toml: &str, driver: &str) -> Self {
        Self::start_env(gateway_toml, upstreams_toml, driver, &[])
    }

    /// As [`Gateway::start`], with `env` added to the gateway's environment (e.g.
    /// `MCPGW_SECRET_KEY`).
    pub fn start_env(
        gateway_toml: &str,
        upstreams_toml: &str,
        driver: &str,
        env: &[(&str, &str)],
    ) -> Self {
        // A port found free can be taken by another test before the gateway binds it: try
        // another one then (and only then).
        let mut last = String::new();
        for _ in 0..3 {
            let dir = TempDir::new("gw");
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let cfg = dir.0.join("mcpgw.toml");
            std::fs::write(
                &cfg,
                format!("[gateway]\nlisten = \"{addr}\"\nworkers = 2\n{gateway_toml}\n\n{upstreams_toml}"),
            )
            .expect("write config");
            match Self::try_start_with_env(&cfg, &["--driver", driver], addr, dir, env) {
                Ok(mut gw) => {
                    gw.config = Some(cfg);
                    return gw;
                }
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("mcpgw did not start:\n{log}"),
            }
        }
        panic!("mcpgw did not start (ports taken):\n{last}");
    }

    /// Starts the binary with `mcpgw run --config cfg ARGS`.
    pub fn start_with(cfg: &Path, args: &[&str], addr: SocketAddr, dir: TempDir) -> Self {
        Self::try_start_with(cfg, args, addr, dir)
            .unwrap_or_else(|log| panic!("mcpgw did not start:\n{log}"))
    }

    /// As [`Gateway::start_with`]; `Err` holds the log when it exited during start-up.
    pub fn try_start_with(
        cfg: &Path,
        args: &[&str],
        addr: SocketAddr,
        dir: TempDir,
    ) -> Result<Self, String> {
        Self::try_start_with_env(cfg, args, addr, dir, &[])
    }

    /// As [`Gateway::try_start_with`], with `env` added to the gateway's environment.
    pub fn try_start_with_env(
        cfg: &Path,
        args: &[&str],
        addr: SocketAddr,
        dir: TempDir,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let log = dir.0.join("gateway.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_mcpgw"))
            .arg("run")
            .arg("--config")
            .arg(cfg)
            .args(args)
            .env("MCPGW_LOG", "info,mcpgw=debug")
            // The default registry store lives under XDG_DATA_HOME: keep it in the test's
            // own directory, never in the user's home.
            .env("XDG_DATA_HOME", dir.0.join("data"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start mcpgw");
        let mut gw = Gateway {
            proc: Proc { child },
            addr,
            log,
            config: None,
            _dir: dir,
        };
        gw.wait_listening()?;
        Ok(gw)
    }

    /// Wraps an already spawned gateway process; waits until it accepts connections.
    pub fn adopt(child: Child, addr: SocketAddr, dir: TempDir) -> Self {
        let log = dir.0.join("gateway.log");
        let mut gw = Gateway {
            proc: Proc { child },
            addr,
            log,
            config: None,
            _dir: dir,
        };
        if let Err(log) = gw.wait_listening() {
            panic!("mcpgw did not start:\n{log}");
        }
        gw
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            // Listening, and (when its log is captured) done starting: the log line comes
            // after every worker is up.
            if TcpStream::connect(self.addr).is_ok()
                && (!self.log.exists() || self.log_text().contains("mcpgw listening"))
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                return Err(format!(
                    "exited with {status} during start-up:\n{}",
                    self.log_text()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "mcpgw did not listen in time:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`kill -<sig>`).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.proc.pid().to_string())
            .status();
        assert!(st.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    /// SIGTERM, then wait (at most 20 s) for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.proc.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = self.proc.child.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "mcpgw did not stop on SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs the SDK client scenario; returns its JSON output.
pub fn client(url: &str, scenario: &str, args: &[&str]) -> serde_json::Value {
    client_with(&[], url, scenario, args)
}

/// [`client`] sending extra request headers (`"Name: value"`), e.g. credentials.
pub fn client_with(
    headers: &[&str],
    url: &str,
    scenario: &str,
    args: &[&str],
) -> serde_json::Value {
    let opts: Vec<&str> = headers.iter().flat_map(|h| ["--header", h]).collect();
    client_opts(&opts, url, scenario, args)
}

/// [`client`] with extra client.py options (`--header`, `--cafile`, ...).
pub fn client_opts(opts: &[&str], url: &str, scenario: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(py("client.py"))
        .args(["--timeout", "60"])
        .args(opts)
        .args([url, scenario])
        .args(args)
        .output()
        .expect("run client.py");
    assert!(
        out.status.success(),
        "client.py {scenario} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs several client steps in one SDK session; returns each step's result.
pub fn client_script(url: &str, steps: serde_json::Value) -> Vec<serde_json::Value> {
    let v = client(url, "script", &[&steps.to_string()]);
    v["steps"].as_array().cloned().expect("steps")
}

// === raw HTTP ===

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The JSON-RPC error code in the body.
    pub fn code(&self) -> i64 {
        self.json()["error"]["code"].as_i64().unwrap_or(0)
    }
}

/// A raw client connection that reads responses with Content-Length framing.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Raw { s, buf: Vec::new() }
    }

    /// Wraps a connection made elsewhere (its read timeout is left as set).
    pub fn from_stream(s: TcpStream) -> Self {
        Raw { s, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    /// Reads one response (Content-Length, chunked or no body). `None` when the server
    /// closed.
    pub fn read(&mut self) -> Option<Resp> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let mut lines = head.split("\r\n");
                let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let is = |name: &str, value: &str| {
                    headers
                        .iter()
                        .any(|(k, v)| k.eq_ignore_ascii_case(name) && v.starts_with(value))
                };
                // A chunked JSON answer (a streamed batch) is read whole; an event stream
                // is left to `read_until`, as before.
                if is("transfer-encoding", "chunked") && !is("content-type", "text/event-stream") {
                    self.buf.drain(..end + 4);
                    let body = self.read_chunks()?;
                    return Some(Resp {
                        status,
                        headers,
                        body,
                    });
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    if !self.fill() {
                        return None;
                    }
                }
                let body = self.buf[end + 4..end + 4 + len].to_vec();
                self.buf.drain(..end + 4 + len);
                return Some(Resp {
                    status,
                    headers,
                    body,
                });
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// A chunked body (the head already consumed), decoded; its trailers are dropped.
    fn read_chunks(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if !self.fill() {
                    return None;
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        self.buf.drain(..i + 2);
                        if i == 0 {
                            return Some(body);
                        }
                        continue;
                    }
                    if !self.fill() {
                        return None;
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill() {
                    return None;
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// Reads raw bytes until `pat` appears (for streams); returns everything read so far.
    pub fn read_until(&mut self, pat: &[u8]) -> Vec<u8> {
        // Bounded overall too: a stream with keep-alives never hits the read timeout.
        let deadline = Instant::now() + Duration::from_secs(30);
        while find(&self.buf, pat).is_none() && Instant::now() < deadline {
            if !self.fill() {
                break;
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// True when the server has closed the connection (EOF within the read timeout).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }

    fn fill(&mut self) -> bool {
        let mut b = [0u8; 65536];
        match self.s.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// The value of one sample (exact name with labels) in an admin listener's `/metrics`, 0
/// when absent.
pub fn scrape(admin_addr: SocketAddr, token: &str, sample: &str) -> f64 {
    let r = admin(admin_addr, "GET", "/metrics", Some(token), None);
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// One request to the admin API (or any plain HTTP endpoint) on a fresh connection.
pub fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Resp {
    let mut c = Raw::connect(addr);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    c.read().expect("admin answer")
}

/// A POST /mcp request with the usual MCP headers plus `extra` header lines.
pub fn post(body: &str, extra: &[&str]) -> Vec<u8> {
    let mut r = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

/// `initialize` with `version` on a fresh connection; returns the session id.
pub fn initialize(addr: SocketAddr, version: &str) -> String {
    let mut c = Raw::connect(addr);
    c.send(&post(
        &format!(r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"raw","version":"1"}}}}}}"#),
        &[],
    ));
    let r = c.read().expect("initialize answer");
    assert_eq!(r.status, 200, "{r:?}");
    r.header("mcp-session-id").expect("session id").to_string()
}

/// Process ids of the direct children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// The state letter of a process (`Z` = zombie), `None` when it no longer exists.
pub fn proc_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Polls `f` every 50 ms until it returns true or `secs` pass.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Number of open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// === Node tooling (conformance suite, server-everything, Inspector) ===

/// `tests/conformance/`, with the pinned Node tooling installed (once per test run).
pub fn node_dir() -> PathBuf {
    static DONE: OnceLock<()> = OnceLock::new();
    let dir = root().join("tests/conformance");
    DONE.get_or_init(|| {
        let st = Command::new(dir.join("run.sh"))
            .arg("--install")
            .status()
            .expect("run.sh --install");
        assert!(st.success(), "installing the Node tooling failed: {st}");
    });
    dir
}

/// A command for a tool from `tests/conformance/node_modules/.bin`, with Node 22 first on PATH.
pub fn node_tool(bin: &str) -> Command {
    let dir = node_dir();
    let path = format!(
        "{}:{}:{}",
        dir.join("node_modules/node/bin").display(),
        dir.join("node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new(dir.join("node_modules/.bin").join(bin));
    c.env("PATH", path);
    c
}

/// One scenario's line of the conformance summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub ok: bool,
    pub passed: u32,
    pub failed: u32,
}

/// Runs the conformance suite (0.1.16, its active 2025-11-25 scenarios) against `url`;
/// returns its summary lines, and writes its whole output to
/// `<target>/tmp/conformance/<label>.txt` (CI prints it).
pub fn conformance(url: &str, label: &str) -> Vec<Scenario> {
    conformance_run(url, label, false)
}

/// As [`conformance`], with the 0.2.0-alpha.12 suite and the scenarios MCP 2026-07-28
/// requires (`--requirements 2026-07-28`).
pub fn conformance_2026(url: &str, label: &str) -> Vec<Scenario> {
    conformance_run(url, label, true)
}

fn conformance_run(url: &str, label: &str, modern: bool) -> Vec<Scenario> {
    let mut cmd = Command::new(node_dir().join("run.sh"));
    cmd.arg(url);
    if modern {
        cmd.env("CONFORMANCE_SUITE", "2026")
            .args(["--requirements", "2026-07-28"]);
    }
    let out = cmd.output().expect("run the conformance suite");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance");
    let _ = std::fs::create_dir_all(&dir);
    let summary: Vec<Scenario> = text
        .lines()
        .skip_while(|l| !l.contains("=== SUMMARY ==="))
        .filter_map(parse_summary_line)
        .collect();
    let lines: Vec<String> = summary
        .iter()
        .map(|s| {
            format!(
                "{} {}: {} passed, {} failed",
                if s.ok { "PASS" } else { "FAIL" },
                s.name,
                s.passed,
                s.failed
            )
        })
        .collect();
    let _ = std::fs::write(
        dir.join(format!("{label}.txt")),
        format!("{label} ({url})\n{}\n", lines.join("\n")),
    );
    let _ = std::fs::write(dir.join(format!("{label}.full.txt")), &text);
    assert!(
        !summary.is_empty(),
        "no conformance summary for {label}:\n{text}"
    );
    summary
}

fn parse_summary_line(l: &str) -> Option<Scenario> {
    let l = l.trim();
    let (ok, rest) = if let Some(r) = l.strip_prefix('✓') {
        (true, r)
    } else if let Some(r) = l.strip_prefix('✗') {
        (false, r)
    } else {
        return None;
    };
    let (name, counts) = rest.trim().split_once(':')?;
    let mut nums = counts
        .split(',')
        .filter_map(|p| p.split_whitespace().next()?.parse::<u32>().ok());
    Some(Scenario {
        name: name.trim().to_string(),
        ok,
        passed: nums.next()?,
        failed: nums.next()?,
    })
}
