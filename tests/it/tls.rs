//! TLS: the official SDK client over https to the gateway, raw TLS clients against the
//! listener (wrong CA, plain HTTP on the TLS port, mTLS required with and without a client
//! certificate, certificate identities as principals) and an https upstream behind the
//! gateway (pinned private CA; a wrong CA keeps it out). Certificates are made per test with
//! rcgen.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::Command,
    sync::Arc,
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

use crate::support::{
    free_port, http_upstream_toml, post, py, python, stdio_fixture_toml, Gateway, HttpFixture,
    Resp, TempDir,
};

const DEMO: &str = "[[upstream]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = \"@self\"\nargs = [\"demo-server\"]\n";
const TOKEN: &str = "tls-admin";

/// A CA, a server certificate for localhost and 127.0.0.1, a client certificate (CN
/// `agent-7`), and a second CA that signed nothing the gateway trusts: PEM files.
struct Pki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let dir = TempDir::new("pki");
        let ca = new_ca("mcpgw test CA");
        let write = |f: &str, text: String| std::fs::write(dir.0.join(f), text).unwrap();
        write("ca.pem", ca.pem());
        let (c, k) = leaf(&ca, &["localhost", "127.0.0.1"], "gateway");
        write("server.pem", c);
        write("server.key", k);
        let (c, k) = leaf(&ca, &[], "agent-7");
        write("client.pem", c);
        write("client.key", k);
        let other = new_ca("another CA");
        write("other-ca.pem", other.pem());
        let (c, k) = leaf(&other, &[], "agent-7");
        write("stranger.pem", c);
        write("stranger.key", k);
        Pki { dir, ca }
    }

    /// Writes a new server certificate and key (same CA, same names) over the old files.
    fn reissue_server(&self) {
        let (c, k) = leaf(&self.ca, &["localhost", "127.0.0.1"], "gateway, reissued");
        std::fs::write(self.path("server.pem"), c).unwrap();
        std::fs::write(self.path("server.key"), k).unwrap();
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.0.join(f)
    }

    fn s(&self, f: &str) -> String {
        self.path(f).display().to_string()
    }

    /// `[gateway.tls]` lines (to go last in the `[gateway]` settings), and an in-memory
    /// registry store (the default one is shared by everything run as this user).
    fn gateway_tls(&self, extra: &str) -> String {
        format!(
            "[gateway.tls]\ncert = {:?}\nkey = {:?}\n{extra}\n[admin]\ndata_dir = \":memory:\"\n",
            self.s("server.pem"),
            self.s("server.key")
        )
    }
}

fn new_ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, sans: &[&str], cn: &str) -> (String, String) {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

// === raw TLS client ===

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting `ca`, presenting `cert` (file stem: `client`, `stranger`).
fn client_config(pki: &Pki, ca: &str, cert: Option<&str>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path(ca)).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some(stem) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(pki.path(&format!("{stem}.pem"))).unwrap()],
                PrivateKeyDer::from_pem_file(pki.path(&format!("{stem}.key"))).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the handshake; Err carries the failure.
fn tls_connect(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn =
        rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// Sends `req` and reads one Content-Length framed response; Err when the server refused
/// or closed.
fn exchange(s: &mut Tls, req: &[u8]) -> std::io::Result<Resp> {
    s.write_all(req)?;
    s.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let mut lines = head.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                return Ok(Resp {
                    status,
                    headers,
                    body,
                });
            }
        }
        match s.read(&mut chunk)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw-tls","version":"1"}}}"#;

fn metric(admin_addr: SocketAddr, sample: &str) -> f64 {
    crate::support::scrape(admin_addr, TOKEN, sample)
}

/// Runs client.py over https with `--cafile` (and a client certificate).
fn sdk(url: &str, pki: &Pki, cert: Option<&str>, scenario: &str, args: &[&str]) -> Value {
    let (ca, pem, key) = (
        pki.s("ca.pem"),
        cert.map(|c| pki.s(&format!("{c}.pem"))),
        cert.map(|c| pki.s(&format!("{c}.key"))),
    );
    let mut opts = vec!["--cafile", ca.as_str()];
    if let (Some(pem), Some(key)) = (&pem, &key) {
        opts.extend(["--certfile", pem.as_str(), "--keyfile", key.as_str()]);
    }
    crate::support::client_opts(&opts, url, scenario, args)
}

fn https_url(gw: &Gateway) -> String {
    format!("https://localhost:{}/mcp", gw.addr.port())
}

// === tests ===

/// The official SDK (httpx) over https: handshake, keep-alive, SSE answers, sessions.
#[test]
fn sdk_client_over_https() {
    let pki = Pki::new();
    let gw = Gateway::start(
        &pki.gateway_tls(""),
        &stdio_fixture_toml("beta", ""),
        "uring",
    );
    let url = https_url(&gw);
    let tour = sdk(&url, &pki, None, "tour", &[]);
    assert_eq!(tour["server_info"]["name"], "mcpgw", "{tour}");
    let call = sdk(
        &url,
        &pki,
        None,
        "call",
        &["beta__echo", r#"{"text":"over tls"}"#],
    );
    assert_eq!(call["is_error"], false, "{call}");
    assert!(call.to_string().contains("beta:over tls"), "{call}");
    // Progress notifications, then the answer, on one SSE stream.
    let progress = sdk(
        &url,
        &pki,
        None,
        "call_progress",
        &["beta__slow_progress", r#"{"seconds":0.5}"#],
    );
    assert!(
        progress["progress"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{progress}"
    );
    let many = sdk(&url, &pki, None, "many", &["20", "beta__echo"]);
    assert_eq!(many["ok"], 20, "{many}");
}

/// Raw TLS clients: the right CA works (several requests on one connection), a wrong CA
/// fails, plain HTTP on the TLS port is closed, failures are counted in /metrics.
#[test]
fn raw_tls_checks_on_the_listener() {
    let pki = Pki::new();
    let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(
        &format!(
            "{}\nlisten = \"{admin_addr}\"\ntoken = \"{TOKEN}\"\n",
            pki.gateway_tls("")
        ),
        DEMO,
        "epoll",
    );
    let failures = "mcpgw_tls_handshake_failures_total";
    let mut s = tls_connect(gw.addr, client_config(&pki, "ca.pem", None)).expect("handshake");
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = exchange(&mut s, &post(INIT, &[])).expect("initialize");
    assert_eq!(r.status, 200, "{r:?}");
    let sid = r.header("mcp-session-id").expect("session").to_string();
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    for _ in 0..3 {
        let r = exchange(&mut s, &post(ping, &[&format!("Mcp-Session-Id: {sid}")]))
            .expect("keep-alive request");
        assert_eq!(r.status, 200, "{r:?}");
    }
    drop(s);

    let before = metric(admin_addr, failures);
    let e = tls_connect(gw.addr, client_config(&pki, "other-ca.pem", None))
        .expect_err("a server certificate from an unknown CA is refused");
    assert!(e.to_string().contains("certificate"), "{e}");

    // Plain HTTP to the TLS port: no HTTP answer, the connection is closed.
    let mut plain = TcpStream::connect(gw.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(&post(INIT, &[])).unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.len() < 64, "at most a TLS alert: {got:?}");

    assert!(
        crate::support::wait_for(10, || metric(admin_addr, failures) >= before + 2.0),
        "handshake failures counted: {} -> {}",
        before,
        metric(admin_addr, failures)
    );
    // The listener still serves after the failures.
    let mut s = tls_connect(gw.addr, client_config(&pki, "ca.pem", None)).expect("handshake");
    assert_eq!(exchange(&mut s, &post(INIT, &[])).unwrap().status, 200);
    assert!(
        gw.log_text().contains("TLS handshake failed"),
        "failures logged at debug"
    );
}

/// `client_auth = "required"`: no certificate, or one from another CA, fails the handshake;
/// the CA's certificate is accepted and its CN is the principal `[[auth.cert]]` names.
#[test]
fn mtls_required_and_certificate_principals() {
    let pki = Pki::new();
    let gateway = format!(
        "{}\n[[role]]\nname = \"echoer\"\ntools = [\"demo__echo\"]\n[[auth.cert]]\nsubject = \"agent-7\"\nname = \"build-agent\"\nroles = [\"echoer\"]\n",
        pki.gateway_tls(&format!(
            "client_ca = {:?}\nclient_auth = \"required\"",
            pki.s("ca.pem")
        ))
    );
    let gw = Gateway::start(&gateway, DEMO, "auto");

    // Without a certificate: refused (TLS 1.3 reports it on the first read).
    let refused =
        |cert: Option<&str>| match tls_connect(gw.addr, client_config(&pki, "ca.pem", cert)) {
            Err(_) => true,
            Ok(mut s) => exchange(&mut s, &post(INIT, &[])).is_err(),
        };
    assert!(refused(None), "no client certificate");
    assert!(refused(Some("stranger")), "certificate of another CA");

    // With one: served, as the mapped principal (only demo__echo granted).
    let mut s = tls_connect(gw.addr, client_config(&pki, "ca.pem", Some("client"))).expect("mTLS");
    let r = exchange(&mut s, &post(INIT, &[])).expect("initialize");
    assert_eq!(r.status, 200, "{r:?}");

    let url = https_url(&gw);
    let tools = sdk(&url, &pki, Some("client"), "list_tools", &[]);
    assert_eq!(tools["tools"], json!(["demo__echo"]), "{tools}");
    let call = sdk(
        &url,
        &pki,
        Some("client"),
        "call",
        &["demo__echo", r#"{"text":"hi"}"#],
    );
    assert_eq!(call["is_error"], false, "{call}");
    let denied = sdk(
        &url,
        &pki,
        Some("client"),
        "call",
        &["demo__reverse", r#"{"text":"hi"}"#],
    );
    assert!(
        denied.get("error").is_some() || denied["is_error"] == true,
        "{denied}"
    );
}

/// `client_auth = "optional"`: a client without a certificate is served (here as anonymous
/// with its own roles); an unmapped certificate counts as no credentials.
#[test]
fn mtls_optional_serves_clients_without_certificates() {
    let pki = Pki::new();
    let gateway = format!(
        "{}\n[auth]\nanonymous_roles = []\n[[auth.cert]]\nsubject = \"agent-7\"\nroles = [\"all\"]\n[[role]]\nname = \"all\"\ntools = [\"*\"]\n",
        pki.gateway_tls(&format!(
            "client_ca = {:?}\nclient_auth = \"optional\"",
            pki.s("ca.pem")
        ))
    );
    let gw = Gateway::start(&gateway, DEMO, "auto");
    let url = https_url(&gw);
    let anon = sdk(&url, &pki, None, "list_tools", &[]);
    assert_eq!(anon["tools"], json!([]), "anonymous sees nothing: {anon}");
    let agent = sdk(&url, &pki, Some("client"), "list_tools", &[]);
    assert!(
        agent["tools"].as_array().is_some_and(|t| t.len() >= 3),
        "{agent}"
    );
}

/// An https upstream (uvicorn with a certificate from a private CA) through the gateway:
/// `tls_ca` pins the CA; with the wrong CA the upstream stays out of the catalog.
#[test]
fn https_upstream_through_the_gateway() {
    let pki = Pki::new();
    let up = HttpFixture::spawn(
        Command::new(python())
            .arg(py("upstream.py"))
            .args(["--name", "alpha", "--transport", "http", "--port", "0"])
            .args([
                "--certfile",
                &pki.s("server.pem"),
                "--keyfile",
                &pki.s("server.key"),
            ]),
    );
    let good = format!("https://localhost:{}/mcp", up.port);
    let bad = format!("https://127.0.0.1:{}/mcp", up.port);
    let upstreams = format!(
        "{}{}",
        http_upstream_toml("alpha", &good, &format!("tls_ca = {:?}", pki.s("ca.pem"))),
        http_upstream_toml(
            "beta",
            &bad,
            &format!("tls_ca = {:?}", pki.s("other-ca.pem"))
        ),
    );
    let gw = Gateway::start("[admin]\ndata_dir = \":memory:\"", &upstreams, "auto");
    let tools = crate::support::client(&gw.url(), "list_tools", &[]);
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.contains(&"alpha__echo"), "{tools}");
    assert!(
        !names.iter().any(|n| n.starts_with("beta__")),
        "an upstream with an unverifiable certificate is not listed: {tools}"
    );
    // Many calls over the pooled TLS connections.
    let many = crate::support::client(&gw.url(), "many", &["30", "alpha__echo"]);
    assert_eq!(many["ok"], 30, "{many}");
    let call = crate::support::client(&gw.url(), "call", &["alpha__echo", r#"{"text":"tls up"}"#]);
    assert!(call.to_string().contains("alpha:tls up"), "{call}");
    assert!(
        gw.log_text()
            .contains("TLS handshake with the upstream failed"),
        "the bad CA is logged"
    );
}

/// SIGHUP swaps the listener's certificate and key: new handshakes get the new one.
#[test]
fn sighup_reloads_the_listener_certificate() {
    let pki = Pki::new();
    let gw = Gateway::start(&pki.gateway_tls(""), DEMO, "auto");
    let served = || {
        let s = tls_connect(gw.addr, client_config(&pki, "ca.pem", None)).expect("handshake");
        s.conn.peer_certificates().expect("certificate")[0].to_vec()
    };
    let on_disk = || {
        CertificateDer::from_pem_file(pki.path("server.pem"))
            .unwrap()
            .to_vec()
    };
    assert_eq!(served(), on_disk());
    pki.reissue_server();
    gw.signal("HUP");
    assert!(
        crate::support::wait_for(10, || served() == on_disk()),
        "the reissued certificate is served after SIGHUP:\n{}",
        gw.log_text()
    );
    assert!(gw.log_text().contains("TLS certificate reloaded"));
}
