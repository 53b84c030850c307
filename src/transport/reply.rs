//! What the HTTP server asks of whatever answers its requests, and what it gets back.
//!
//! The server (`transport::server`) reads requests and writes [`Reply`]s; a [`Handler`]
//! turns one into the other. A reply whose body comes over time is written as it comes: an
//! SSE stream from an [`EventSource`], or a JSON array from an [`ArraySource`], each owned
//! by the handler's side (sessions, relays and batches live there). The transport knows
//! nothing of sessions, relays or upstreams.

use std::{cell::Cell, future::Future, net::IpAddr, rc::Rc};

use bytes::{Bytes, BytesMut};

use super::http::{write_chunk, RequestHead};
use crate::jsonrpc::{error_body, Code, Pieces};

/// What to send back for one HTTP request; `E` and `A` are the handler's streamed bodies.
pub struct Reply<E, A> {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, Bytes)>,
    /// The body.
    pub body: Body<E, A>,
}

/// A reply body.
pub enum Body<E, A> {
    /// No body.
    Empty,
    /// A whole body of this content type.
    Full(&'static str, Bytes),
    /// A whole JSON body in pieces, written in order and never joined.
    JsonPieces(Pieces),
    /// An SSE stream, written chunked as its source gives events.
    Events(E),
    /// A JSON array written chunked as its source gives elements: `first`, then the rest.
    Array(A, Bytes),
}

impl<E, A> Reply<E, A> {
    /// A whole JSON body.
    pub fn json(status: u16, body: Bytes) -> Self {
        Reply {
            status,
            headers: vec![],
            body: Body::Full("application/json", body),
        }
    }

    /// An HTTP-level error with a JSON-RPC error body (`id` null).
    pub fn error(status: u16, code: Code, message: &str) -> Self {
        Reply::json(status, error_body(None, code, message))
    }

    /// No body.
    pub fn empty(status: u16) -> Self {
        Reply {
            status,
            headers: vec![],
            body: Body::Empty,
        }
    }

    /// A streamed SSE body from `source`.
    pub fn events(source: E) -> Self {
        Reply {
            status: 200,
            headers: vec![],
            body: Body::Events(source),
        }
    }
}

impl<E, A> Reply<E, A> {
    /// The same reply as one of a handler with more kinds of streamed bodies.
    pub fn widen<E2, A2>(self) -> Reply<E2, A2>
    where
        E: Widen<E2>,
        A: Widen<A2>,
    {
        Reply {
            status: self.status,
            headers: self.headers,
            body: match self.body {
                Body::Empty => Body::Empty,
                Body::Full(ct, b) => Body::Full(ct, b),
                Body::JsonPieces(p) => Body::JsonPieces(p),
                Body::Events(e) => Body::Events(e.widen()),
                Body::Array(a, first) => Body::Array(a.widen(), first),
            },
        }
    }
}

/// A streamed body type that is also one of a wider handler's: see [`Reply::widen`].
pub trait Widen<T> {
    /// As the wider type.
    fn widen(self) -> T;
}

impl<T> Widen<T> for Never {
    fn widen(self) -> T {
        match self {}
    }
}

/// A reply with a whole body (or none).
pub type Whole = Reply<Never, Never>;

/// SSE events being gathered for one write, each framed as an HTTP chunk.
pub struct SseOut<'a>(pub(super) &'a mut BytesMut);

impl SseOut<'_> {
    /// A `message` event carrying `data`, with `id` when the stream is resumable.
    pub fn event(&mut self, id: Option<&str>, data: &[u8]) {
        let mut ev = BytesMut::with_capacity(data.len() + 32);
        super::sse::write_event(&mut ev, id, Some("message"), data);
        write_chunk(self.0, &ev);
    }

    /// A comment line (keep-alive, or why the stream ends).
    pub fn comment(&mut self, text: &str) {
        let mut ev = BytesMut::new();
        super::sse::write_comment(&mut ev, text);
        write_chunk(self.0, &ev);
    }

    /// A `retry` field: when the client should reconnect, in milliseconds.
    pub fn retry(&mut self, ms: u64) {
        let mut ev = BytesMut::new();
        super::sse::write_retry(&mut ev, ms);
        write_chunk(self.0, &ev);
    }

    /// A comment then a retry, in one event block.
    pub fn comment_and_retry(&mut self, text: &str, ms: u64) {
        let mut ev = BytesMut::new();
        super::sse::write_comment(&mut ev, text);
        super::sse::write_retry(&mut ev, ms);
        write_chunk(self.0, &ev);
    }

    /// Whether nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The events of a streamed SSE reply.
pub trait EventSource {
    /// Whether the connection may serve another request once the stream ends.
    fn keep_alive(&self) -> bool;

    /// Whether events are ready now: the response head then waits to go with them.
    /// Otherwise it goes at once, so the client sees the stream open.
    fn ready(&self) -> bool {
        false
    }

    /// Waits for the next events and writes them to `out`; `false` when the stream ends
    /// after them. The server writes what was gathered (nothing, if nothing was).
    fn next(&mut self, out: &mut SseOut<'_>) -> impl Future<Output = bool>;

    /// The client is gone (a write failed or timed out): the source decides what becomes
    /// of what it was relaying.
    fn broken(self);
}

/// The elements of a streamed JSON array reply.
pub trait ArraySource {
    /// The next element, `None` after the last.
    fn next(&mut self) -> impl Future<Output = Option<Bytes>>;
}

/// A body type for handlers that stream nothing of one kind.
pub enum Never {}

impl EventSource for Never {
    fn keep_alive(&self) -> bool {
        match *self {}
    }
    async fn next(&mut self, _: &mut SseOut<'_>) -> bool {
        match *self {}
    }
    fn broken(self) {}
}

impl ArraySource for Never {
    async fn next(&mut self) -> Option<Bytes> {
        match *self {}
    }
}

/// How the server reads and writes: from the gateway's configuration.
#[derive(Clone, Copy, Debug)]
pub struct ServerConf {
    /// Longest request head, bytes.
    pub max_header_bytes: usize,
    /// Longest request body, bytes.
    pub max_body_bytes: usize,
    /// A request head must arrive within this of its first byte.
    pub header_timeout: std::time::Duration,
    /// An idle keep-alive connection is closed after this.
    pub idle_timeout: std::time::Duration,
    /// A client must take each write within this.
    pub write_timeout: std::time::Duration,
}

/// Answers the requests of one worker's connections. `&self`, no `Send`: one per worker.
pub trait Handler {
    /// Its SSE bodies.
    type Events: EventSource;
    /// Its JSON array bodies.
    type Array: ArraySource;

    /// Answers one request whose body has been read; `peer` is the TCP peer's address,
    /// `cert` the identity its verified TLS client certificate names (mTLS).
    fn handle(
        &self,
        req: &RequestHead,
        body: Bytes,
        peer: IpAddr,
        cert: Option<&str>,
    ) -> impl Future<Output = Reply<Self::Events, Self::Array>>;

    /// How to read and write.
    fn conf(&self) -> ServerConf;

    /// Counters of connections and requests refused for a limit.
    fn limits(&self) -> &crate::limits::Limits;

    /// Whether the gateway is draining: no new requests on kept-alive connections.
    fn stopping(&self) -> bool;

    /// Marks a request in progress until the guard drops (a drain waits for these).
    fn busy(&self) -> Busy;
}

/// Requests in progress on one worker.
#[derive(Clone, Default)]
pub struct InProgress(Rc<Cell<usize>>);

impl InProgress {
    /// Counts one more until the guard drops.
    pub fn enter(&self) -> Busy {
        self.0.set(self.0.get() + 1);
        Busy(self.0.clone())
    }

    /// How many now.
    pub fn get(&self) -> usize {
        self.0.get()
    }
}

/// Marks a request in progress on a worker until dropped.
pub struct Busy(Rc<Cell<usize>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
