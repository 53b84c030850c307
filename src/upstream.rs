//! Upstream MCP servers: how the gateway reaches them and calls them.
//!
//! An [`Upstream`] is immutable and lives in the catalog snapshot. Calls happen on the worker
//! that received the client's request: HTTP upstreams over that worker's own keep-alive pool
//! (`http`), stdio upstreams through the supervisor that owns the child process (`stdio`).
//! Every call carries a gateway-owned request id from an [`IdGen`] and ends, at the latest,
//! at the upstream's call timeout.

pub mod http;
pub mod stdio;

use std::{cell::Cell, sync::Arc, time::Duration};

use bytes::Bytes;

use crate::{
    config,
    error::{Error, ErrorKind, Result},
    jsonrpc::{Frame, Kind, Parser},
};

/// Index of an upstream in the snapshot it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamRef(pub u16);

/// One upstream MCP server.
pub struct Upstream {
    /// Its configured name (the namespace of its tools).
    pub name: String,
    /// Deadline for one call.
    pub call_timeout: Duration,
    /// How it is reached.
    pub link: Link,
}

/// The transport to an upstream.
pub enum Link {
    /// Streamable HTTP.
    Http(http::HttpUpstream),
    /// A supervised child process.
    Stdio(stdio::StdioHandle),
}

/// Client identity the gateway presents to upstreams in `initialize`.
pub const CLIENT_INFO: &str = concat!(
    r#"{"name":"mcpgw","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
);

/// The protocol version the gateway asks upstreams for.
pub const UPSTREAM_PROTOCOL_VERSION: &str = "2025-11-25";

/// Gateway-owned request ids: the worker index in the top 16 bits, a counter below, so ids
/// are unique across workers without a shared counter.
pub struct IdGen {
    base: u64,
    next: Cell<u64>,
}

impl IdGen {
    /// Ids for worker `index` (the control plane uses `u16::MAX`).
    pub fn new(index: u16) -> Self {
        Self {
            base: u64::from(index) << 48,
            next: Cell::new(1),
        }
    }

    /// A fresh id.
    pub fn next(&self) -> u64 {
        let n = self.next.get();
        self.next.set((n + 1) & ((1 << 48) - 1));
        self.base | n
    }
}

/// What a worker needs to call upstreams: its HTTP pool, ids and a parser.
pub struct Caller {
    /// Per-worker HTTP keep-alive pool.
    pub pool: http::Pool,
    /// Request ids.
    pub ids: IdGen,
    /// Reused parse buffers.
    pub parser: std::cell::RefCell<Parser>,
}

impl Caller {
    /// A caller for worker `index`.
    pub fn new(index: u16) -> Self {
        Self {
            pool: http::Pool::default(),
            ids: IdGen::new(index),
            parser: std::cell::RefCell::new(Parser::default()),
        }
    }

    /// Sends a request (whose id is already `id`) and returns the upstream's response, within
    /// the upstream's call timeout.
    pub async fn request(&self, up: &Upstream, id: u64, body: Bytes) -> Result<Frame> {
        let fut = async {
            match &up.link {
                Link::Http(h) => h.request(self, id, body).await,
                Link::Stdio(s) => s.request(id, body).await,
            }
        };
        let raw = match monoio::time::timeout(up.call_timeout, fut).await {
            Ok(r) => r?,
            Err(_) => {
                if let Link::Stdio(s) = &up.link {
                    s.cancel(id);
                }
                return Err(Error::new(
                    ErrorKind::UpstreamTimeout,
                    format!("{}: no answer within {:?}", up.name, up.call_timeout),
                ));
            }
        };
        self.parse_response(&up.name, id, raw)
    }

    /// Sends a notification; waits only for the upstream to accept it.
    pub async fn notify(&self, up: &Upstream, body: Bytes) -> Result<()> {
        let fut = async {
            match &up.link {
                Link::Http(h) => h.notify(self, body).await,
                Link::Stdio(s) => s.notify(body),
            }
        };
        match monoio::time::timeout(up.call_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::UpstreamTimeout,
                format!("{}: notification", up.name),
            )),
        }
    }

    fn parse_response(&self, name: &str, id: u64, raw: Bytes) -> Result<Frame> {
        let frame = self.parser.borrow_mut().parse_one(raw).map_err(|e| {
            Error::new(ErrorKind::UpstreamProtocol, format!("{name}: bad response")).with_source(e)
        })?;
        let want = id.to_string();
        if frame.kind() != Kind::Response || frame.id_raw().as_deref() != Some(want.as_bytes()) {
            return Err(Error::new(
                ErrorKind::UpstreamProtocol,
                format!("{name}: answer is not the response to request {id}"),
            ));
        }
        Ok(frame)
    }
}

/// Builds the runtime upstream for a validated config entry. Stdio children are started by
/// `supervisor` (the control plane) and reached through the handle it returns.
pub fn build(cfg: &config::Upstream, supervisor: &stdio::Supervisor) -> Arc<Upstream> {
    let link = match &cfg.transport {
        config::Transport::Http {
            addr,
            host,
            path,
            headers,
            connect_timeout,
        } => Link::Http(http::HttpUpstream::new(
            cfg.name.clone(),
            addr.clone(),
            host.clone(),
            path.clone(),
            headers.clone(),
            *connect_timeout,
        )),
        config::Transport::Stdio { .. } => Link::Stdio(supervisor.spawn(cfg)),
    };
    Arc::new(Upstream {
        name: cfg.name.clone(),
        call_timeout: cfg.call_timeout,
        link,
    })
}

/// A JSON-RPC request with a numeric id, for requests the gateway makes on its own behalf.
pub fn request_body(id: u64, method: &str, params: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#
    ))
}

/// The `initialize` request the gateway sends upstream.
pub fn initialize_body(id: u64) -> Bytes {
    request_body(
        id,
        "initialize",
        &format!(
            r#"{{"protocolVersion":"{UPSTREAM_PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{CLIENT_INFO}}}"#
        ),
    )
}

/// The `notifications/initialized` notification.
pub const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
