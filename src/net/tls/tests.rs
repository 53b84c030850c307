use std::{path::PathBuf, time::Duration};

use bytes::{Bytes, BytesMut};
use monoio::net::{TcpListener, TcpStream};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};

use super::*;

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate (CN
/// `agent-7`), as PEM files in a fresh directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Self {
        // Unique per instance: the uring and legacy variants of a test run at once.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mcpgw-tls-unit-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca = new_ca("unit CA");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
        let (cert, key) = leaf(&ca, &["localhost", "127.0.0.1"], Some("gateway"));
        std::fs::write(dir.join("server.pem"), cert).expect("write");
        std::fs::write(dir.join("server.key"), key).expect("write");
        let (cert, key) = leaf(&ca, &[], Some("agent-7"));
        std::fs::write(dir.join("client.pem"), cert).expect("write");
        std::fs::write(dir.join("client.key"), key).expect("write");
        let other = new_ca("other CA");
        std::fs::write(dir.join("other-ca.pem"), other.pem()).expect("write");
        Self { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn new_ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
}

/// (certificate PEM, key PEM) signed by `ca`.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    sans: &[&str],
    cn: Option<&str>,
) -> (String, String) {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(sans).expect("params");
    p.distinguished_name = DistinguishedName::new();
    if let Some(cn) = cn {
        p.distinguished_name
            .push(DnType::OrganizationName, "mcpgw tests");
        p.distinguished_name.push(DnType::CommonName, cn);
    }
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, ca).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .as_ref()
        .to_vec()
}

#[test]
fn identity_is_cn_else_first_san() {
    let ca = new_ca("x");
    let (c, _) = leaf(&ca, &["svc.example"], Some("alice"));
    assert_eq!(x509::identity(&der_of(&c)).as_deref(), Some("alice"));
    let (c, _) = leaf(&ca, &["svc.example", "10.0.0.1"], None);
    assert_eq!(x509::identity(&der_of(&c)).as_deref(), Some("svc.example"));
    let (c, _) = leaf(&ca, &["10.0.0.1"], None);
    assert_eq!(x509::identity(&der_of(&c)).as_deref(), Some("10.0.0.1"));
    let (c, _) = leaf(&ca, &[], None);
    assert_eq!(x509::identity(&der_of(&c)), None);
    assert_eq!(x509::identity(b"\x30\x03\x02\x01"), None, "truncated DER");
    assert_eq!(x509::identity(b""), None);
}

#[test]
fn bad_files_are_named() {
    let pki = Pki::new("files");
    let e = ServerTls::load(
        &pki.path("missing.pem"),
        &pki.path("server.key"),
        None,
        ClientAuth::Off,
    )
    .expect_err("missing file");
    assert!(e.contains("missing.pem"), "{e}");
    let e = ServerTls::load(
        &pki.path("server.pem"),
        &pki.path("server.pem"),
        None,
        ClientAuth::Off,
    )
    .expect_err("a certificate is no key");
    assert!(e.contains("no private key"), "{e}");
    let e = ServerTls::load(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        None,
        ClientAuth::Required,
    )
    .expect_err("mTLS without a CA");
    assert!(e.contains("client_ca"), "{e}");
    assert!(ClientTls::new("not a name!", None).is_err());
    assert!(ClientTls::new("127.0.0.1", None).is_ok());
}

/// A client-side rustls config trusting `ca`, with a client certificate when given.
fn client_config(pki: &Pki, ca: &str, with_cert: bool) -> Arc<ClientConfig> {
    let roots = read_roots(&pki.path(ca)).expect("roots");
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = if with_cert {
        b.with_client_auth_cert(
            read_certs(&pki.path("client.pem")).expect("cert"),
            PrivateKeyDer::from_pem_file(pki.path("client.key")).expect("key"),
        )
        .expect("client cert")
    } else {
        b.with_no_client_auth()
    };
    Arc::new(cfg)
}

async fn connect(port: u16, cfg: Arc<ClientConfig>) -> io::Result<TlsStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let c = ClientTls {
        config: cfg,
        name: ServerName::try_from("localhost").expect("name"),
        ca: None,
    };
    c.connect(tcp).await
}

/// Reads until `want` bytes arrived (or EOF).
async fn read_n<S: Stream>(s: &mut S, want: usize) -> io::Result<BytesMut> {
    let mut buf = BytesMut::new();
    while buf.len() < want {
        if s.read_more(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf)
}

#[monoio::test_all(timer_enabled = true)]
async fn round_trip_large_both_ways_with_client_identity() {
    let pki = Pki::new("rt");
    let server = ServerTls::load(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        Some(&pki.path("ca.pem")),
        ClientAuth::Optional,
    )
    .expect("server")
    .for_worker();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let payload: Bytes = (0..(1 << 20) + 77)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let expect = payload.clone();
    let srv = monoio::spawn(async move {
        let mut ids = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut s = server.accept(tcp).await.expect("handshake");
            ids.push(s.peer_identity().map(str::to_string));
            s.readable().await.expect("readable");
            let got = read_n(&mut s, expect.len()).await.expect("read");
            assert_eq!(got.len(), expect.len());
            assert!(got[..] == expect[..], "bytes arrive unchanged");
            s.write_all(got.freeze()).await.expect("echo");
            s.close().await;
        }
        ids
    });
    for with_cert in [true, false] {
        let mut c = connect(port, client_config(&pki, "ca.pem", with_cert))
            .await
            .expect("client handshake");
        c.write_all(payload.clone()).await.expect("send");
        let back = read_n(&mut c, payload.len()).await.expect("read back");
        assert!(back[..] == payload[..]);
        let mut tail = BytesMut::new();
        assert_eq!(c.read_more(&mut tail).await.expect("close_notify"), 0);
    }
    let ids = srv.await;
    assert_eq!(ids, [Some("agent-7".to_string()), None]);
}

#[monoio::test_all(timer_enabled = true)]
async fn handshake_fails_on_wrong_ca_and_missing_required_cert() {
    let pki = Pki::new("fail");
    let server = ServerTls::load(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        Some(&pki.path("ca.pem")),
        ClientAuth::Required,
    )
    .expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let srv = monoio::spawn(async move {
        let mut results = Vec::new();
        for _ in 0..3 {
            let (tcp, _) = listener.accept().await.expect("accept");
            let r = monoio::time::timeout(Duration::from_secs(5), server.accept(tcp)).await;
            results.push(matches!(r, Ok(Ok(_))));
        }
        results
    });
    // The client does not trust the server's CA.
    assert!(connect(port, client_config(&pki, "other-ca.pem", true))
        .await
        .is_err());
    // No client certificate: the server refuses (TLS 1.3 reports it on the first read).
    let r = match connect(port, client_config(&pki, "ca.pem", false)).await {
        Err(_) => true,
        Ok(mut c) => {
            let mut b = BytesMut::new();
            c.read_more(&mut b).await.is_err()
        }
    };
    assert!(r, "a client without a certificate is refused");
    // With one it works (the client stays open until the server is done).
    let ok = connect(port, client_config(&pki, "ca.pem", true)).await;
    assert!(ok.is_ok());
    assert_eq!(srv.await, [false, false, true]);
    drop(ok);
}
