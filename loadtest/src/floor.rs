//! `mcpgw-floor`: the minimal pass-through HTTP/1.1 proxy that the gateway is measured
//! against, on the same runtime and io_uring setup flags.
//!
//! Per thread: its own runtime, `SO_REUSEPORT` listener and keep-alive pool of upstream
//! connections. Per request: parse the head, forward head and Content-Length body unchanged,
//! read the response just far enough to find its end (Content-Length or chunked), write its
//! bytes back unchanged. It has no MCP logic, rewrites nothing and buffers one whole message
//! at a time: the least a proxy can do.

use std::{cell::RefCell, net::SocketAddr, rc::Rc};

use monoio::{io::AsyncWriteRentExt, net::TcpStream};

use crate::{
    http::{self, BodyLen, Chunked, ReadBuf},
    rt::{self, Driver},
};

/// The minimal pass-through HTTP/1.1 proxy: the performance floor for mcpgw.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "mcpgw-floor", version)]
pub struct Args {
    /// Address to listen on; port 0 picks one (printed on stderr as `LISTENING <port>`).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The upstream every request goes to.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub upstream: SocketAddr,
    /// Proxy threads, each with its own runtime, listener and upstream pool.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// IO driver: io_uring (COOP_TASKRUN + SINGLE_ISSUER + DEFER_TASKRUN) or epoll.
    #[arg(long, value_enum, default_value_t = Driver::Uring)]
    pub driver: Driver,
}

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const NOT_IMPLEMENTED: &[u8] =
    b"HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Runs the proxy until the process is killed.
pub fn run(args: Args) -> anyhow::Result<()> {
    let servers = start(&args)?;
    eprintln!("LISTENING {}", servers.addr.port());
    servers.join();
    Ok(())
}

/// Starts the proxy threads; returns once all are bound.
pub fn start(args: &Args) -> anyhow::Result<rt::Servers> {
    let upstream = args.upstream;
    rt::serve_threads(
        "mcpgw-floor",
        args.listen,
        args.threads,
        args.driver,
        move |_| Floor {
            upstream,
            idle: RefCell::new(Vec::new()),
        },
    )
}

/// One thread's proxy: the upstream address and its idle keep-alive connections.
pub struct Floor {
    upstream: SocketAddr,
    idle: RefCell<Vec<Upstream>>,
}

struct Upstream {
    conn: TcpStream,
    rb: ReadBuf,
}

impl rt::Handler for Floor {
    async fn serve(self: Rc<Self>, mut client: TcpStream) {
        let mut rb = ReadBuf::with_capacity(16 * 1024);
        loop {
            let head = loop {
                match http::parse_request_head(rb.data()) {
                    Ok(Some(h)) => break h,
                    Ok(None) if matches!(rb.fill(&mut client).await, Ok(1..)) => {}
                    Ok(None) => return,
                    Err(_) => {
                        let _ = client.write_all(BAD_REQUEST).await;
                        return;
                    }
                }
            };
            let BodyLen::Length(body) = head.body else {
                let _ = client.write_all(NOT_IMPLEMENTED).await;
                return;
            };
            let total = head.len + body;
            if rb.fill_to(&mut client, total).await.is_err() {
                return;
            }
            let Some((mut up, len, keep)) = self.forward(&mut rb, total).await else {
                let _ = client.write_all(BAD_GATEWAY).await;
                return;
            };
            rb.consume(total);
            let written = up.rb.write_front(&mut client, len).await;
            up.rb.consume(len);
            if keep {
                self.idle.borrow_mut().push(up);
            }
            if written.is_err() || head.close {
                return;
            }
        }
    }
}

impl Floor {
    /// Sends the first `total` bytes of `rb` upstream and reads the whole response; returns
    /// the connection, the response length in its buffer and whether it stays alive. A pooled
    /// connection that died before answering is replaced once.
    async fn forward(&self, rb: &mut ReadBuf, total: usize) -> Option<(Upstream, usize, bool)> {
        for _ in 0..2 {
            let pooled = self.idle.borrow_mut().pop();
            let reused = pooled.is_some();
            let mut up = match pooled {
                Some(up) => up,
                None => {
                    let conn = TcpStream::connect_addr(self.upstream).await.ok()?;
                    let _ = conn.set_nodelay(true);
                    Upstream {
                        conn,
                        rb: ReadBuf::with_capacity(16 * 1024),
                    }
                }
            };
            match up.exchange(rb, total).await {
                Ok((len, keep)) => return Some((up, len, keep)),
                Err(answered) if reused && !answered => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

impl Upstream {
    /// `Err(true)` if the upstream failed after starting to answer (not safe to retry).
    async fn exchange(&mut self, req: &mut ReadBuf, total: usize) -> Result<(usize, bool), bool> {
        req.write_front(&mut self.conn, total)
            .await
            .map_err(|_| false)?;
        let head = loop {
            match http::parse_response_head(self.rb.data()) {
                Ok(Some(h)) => break h,
                Ok(None) if matches!(self.rb.fill(&mut self.conn).await, Ok(1..)) => {}
                Ok(None) => return Err(!self.rb.data().is_empty()),
                Err(_) => return Err(true),
            }
        };
        let (mut chunked, mut scanned) = (Chunked::default(), 0);
        loop {
            match http::framed_len(
                self.rb.data(),
                head.len,
                head.body,
                &mut chunked,
                &mut scanned,
            ) {
                Ok(Some(len)) => return Ok((len, !head.close)),
                Ok(None) => {}
                Err(_) => return Err(true),
            }
            match self.rb.fill(&mut self.conn).await {
                Ok(0) if head.body == BodyLen::UntilClose => {
                    return Ok((self.rb.data().len(), false))
                }
                Ok(1..) => {}
                _ => return Err(true),
            }
        }
    }
}
