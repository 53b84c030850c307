//! TLS over TCP with rustls: the client listener's acceptor ([`ServerTls`], `[gateway.tls]`,
//! optionally verifying client certificates) and the connector to `https://` upstreams
//! ([`ClientTls`]).
//!
//! [`TlsStream`] drives a `rustls::Connection` over a monoio `TcpStream` with owned buffers:
//! ciphertext moves into the socket read and write calls, plaintext is copied out of rustls
//! into the caller's `BytesMut`. It holds no read buffer while it waits for a quiet client
//! ([`Stream::readable`]), like plain TCP. Only safe code: no pointer into a caller's buffer
//! outlives a call.
//!
//! Costs, against plain TCP: a full handshake per new connection (one ECDHE and one
//! signature on the server; the client certificate's chain check with mTLS), then per
//! record an AEAD pass over the bytes and one extra copy each way (rustls' plaintext buffer
//! into the caller's, the caller's bytes into a record). Resumed sessions skip the
//! signature. Keep-alive on both sides keeps handshakes rare.

mod x509;

use std::{
    fmt,
    io::{self, BufRead, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::{Bytes, BytesMut};
use monoio::{
    io::{AsyncReadRent, AsyncWriteRentExt},
    net::TcpStream,
};
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

use super::Stream;

/// Ciphertext read from the socket at once: one full TLS record with its overhead.
const TLS_READ: usize = 16 * 1024 + 512;
/// Longest wait for `close_notify` to leave.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Resumable sessions a worker's acceptor remembers.
const SESSION_CACHE: usize = 1024;

/// The crypto provider: *ring*, chosen explicitly so no process-wide default is needed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether clients must present a certificate (`[gateway.tls] client_auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    Off,
    /// A certificate is asked for; a client without one is still served (as anonymous, or
    /// by its HTTP credentials). One that sends a certificate the CA did not sign is refused.
    Optional,
    /// The handshake fails without a certificate signed by `client_ca`.
    Required,
}

/// The client listener's TLS settings, compiled from `[gateway.tls]`.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    /// The certificate and key served, shared by every worker's copy and replaceable
    /// ([`ServerTls::reload_from`]).
    cert: Arc<CertSlot>,
    /// How client certificates are treated.
    pub client_auth: ClientAuth,
}

/// The server certificate in use: one arc-swap load per handshake, no lock.
#[derive(Debug)]
struct CertSlot(arc_swap::ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the certificate chain and key (PEM files) and, for mTLS, the CA that signs
    /// client certificates. TLS 1.2 and 1.3, ALPN `http/1.1`. Errors name the file.
    pub fn load(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        client_auth: ClientAuth,
    ) -> Result<Self, String> {
        let chain = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("{}: no private key: {e}", key.display()))?;
        let certified = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        let slot = Arc::new(CertSlot(arc_swap::ArcSwap::from_pointee(certified)));
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match (client_ca, client_auth) {
            (_, ClientAuth::Off) => builder.with_no_client_auth(),
            (None, _) => return Err("client_auth needs client_ca".into()),
            (Some(ca), auth) => {
                let roots = Arc::new(read_roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let verifier = if auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| format!("{}: {e}", ca.display()))?,
                )
            }
        };
        let mut config = builder.with_cert_resolver(slot.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            cert: slot,
            client_auth,
        })
    }

    /// Serves `newer`'s certificate and key from now on (new handshakes; connections open
    /// keep theirs). The rest of the settings (client CA, client_auth) stay as they were
    /// loaded at start.
    pub fn reload_from(&self, newer: &ServerTls) {
        self.cert.0.store(newer.cert.0.load_full());
    }

    /// A copy for one worker, with its own session cache: resumption state is never shared
    /// across cores (a client resumes when it lands on the same worker again).
    pub fn for_worker(&self) -> Self {
        let mut config = (*self.config).clone();
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        Self {
            config: Arc::new(config),
            cert: self.cert.clone(),
            client_auth: self.client_auth,
        }
    }

    /// Runs the server handshake on `io`. The caller bounds it in time.
    pub async fn accept(&self, io: TcpStream) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(self.config.clone()).map_err(io::Error::other)?;
        let mut s = TlsStream::new(io, Connection::Server(conn));
        s.handshake().await?;
        s.identity = s
            .tls
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| x509::identity(c.as_ref()))
            .map(String::into_boxed_str);
        Ok(s)
    }
}

/// How the gateway verifies one `https://` upstream: the URL host as SNI and name to check,
/// against the Mozilla roots (webpki-roots) or a pinned private CA (`tls_ca`).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    ca: Option<PathBuf>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("name", &self.name)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// Equal when they check the same name against the same CA file (a reload keeps the
/// upstream, and its pooled connections, when neither changed).
impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.ca == other.ca
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    /// Settings for a server named `host` (a DNS name or an IP address, no port).
    pub fn new(host: &str, ca: Option<&Path>) -> Result<Self, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("{host:?} is not a DNS name or IP address"))?;
        let roots = match ca {
            Some(ca) => read_roots(ca)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            name,
            ca: ca.map(Path::to_path_buf),
        })
    }

    /// Runs the client handshake on `io`. The caller bounds it in time.
    pub async fn connect(&self, io: TcpStream) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(io::Error::other)?;
        let mut s = TlsStream::new(io, Connection::Client(conn));
        s.handshake().await?;
        Ok(s)
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

// === impl TlsStream ===

/// A TLS connection over TCP, client or server side, after its handshake.
pub struct TlsStream {
    io: TcpStream,
    tls: Connection,
    /// Ciphertext read from the socket and not yet given to rustls: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Ciphertext on its way out (kept between writes, dropped while idle).
    wbuf: Vec<u8>,
    identity: Option<Box<str>>,
}

impl TlsStream {
    fn new(io: TcpStream, tls: Connection) -> Self {
        Self {
            io,
            tls,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            identity: None,
        }
    }

    /// The TCP connection under the TLS layer.
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            if self.tls.wants_write() {
                self.flush_tls().await?;
            } else if !self.fill_tls().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                ));
            }
        }
        // The last flight (TLS 1.3 server: session tickets; client: Finished).
        self.flush_tls().await
    }

    /// Gives rustls more ciphertext: what is left of the last socket read, else a new
    /// read. Records are processed at once; alerts and handshake answers they cause are
    /// sent. `Ok(false)`: the socket reached its end.
    async fn fill_tls(&mut self) -> io::Result<bool> {
        let mut open = true;
        if self.rpos >= self.rbuf.len() {
            let mut buf = std::mem::take(&mut self.rbuf);
            self.rpos = 0;
            buf.clear();
            buf.reserve(TLS_READ);
            let (res, buf) = self.io.read(buf).await;
            self.rbuf = buf;
            if res? == 0 {
                // Tells rustls the stream ended (an empty read).
                self.tls.read_tls(&mut io::empty())?;
                open = false;
            }
        }
        if self.rpos < self.rbuf.len() {
            let mut rest = &self.rbuf[self.rpos..];
            let n = self.tls.read_tls(&mut rest)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS record buffer full",
                ));
            }
            self.rpos += n;
        }
        if let Err(e) = self.tls.process_new_packets() {
            // rustls queued an alert telling the peer why; send it, then give up.
            let _ = self.flush_tls().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        if self.tls.wants_write() {
            self.flush_tls().await?;
        }
        Ok(open)
    }

    /// Sends whatever ciphertext rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            let mut out = std::mem::take(&mut self.wbuf);
            out.clear();
            while self.tls.wants_write() {
                self.tls.write_tls(&mut out)?;
            }
            let (res, out) = AsyncWriteRentExt::write_all(&mut self.io, out).await;
            self.wbuf = out;
            res?;
        }
        Ok(())
    }
}

impl Stream for TlsStream {
    async fn read_more(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.tls.reader().fill_buf() {
                Ok(chunk) => {
                    // Empty: the peer ended the session with close_notify.
                    let n = chunk.len();
                    buf.extend_from_slice(chunk);
                    self.tls.reader().consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.fill_tls().await? {
                // Socket EOF: rustls now answers with what is left, Ok(0) or UnexpectedEof.
                return match self.tls.reader().fill_buf() {
                    Ok(chunk) => {
                        let n = chunk.len();
                        buf.extend_from_slice(chunk);
                        self.tls.reader().consume(n);
                        Ok(n)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    Err(e) => Err(e),
                };
            }
        }
    }

    async fn readable(&mut self) -> io::Result<()> {
        if self.rpos < self.rbuf.len() {
            return Ok(());
        }
        match self.tls.reader().fill_buf() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            _ => return Ok(()),
        }
        // Nothing pending: wait without buffers of our own.
        self.rbuf = Vec::new();
        self.rpos = 0;
        self.wbuf = Vec::new();
        self.io.readable(true).await
    }

    async fn write_all(&mut self, buf: Bytes) -> io::Result<()> {
        let mut off = 0;
        while off < buf.len() {
            // rustls takes what fits under its send buffer limit, sealed into records.
            let n = self.tls.writer().write(&buf[off..])?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            off += n;
            self.flush_tls().await?;
        }
        Ok(())
    }

    async fn write_segments(&mut self, parts: super::Segments) -> io::Result<()> {
        // One record for all of it: rustls copies into its buffer anyway.
        self.write_all(parts.concat()).await
    }

    async fn close(&mut self) {
        self.tls.send_close_notify();
        // A peer that reads nothing more does not hold the task past CLOSE_WAIT.
        let _ = monoio::time::timeout(CLOSE_WAIT, self.flush_tls()).await;
    }

    fn peer_identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }
}

#[cfg(test)]
mod tests;
