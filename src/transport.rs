//! Bytes on the wire <-> MCP messages.
//!
//! `http` and `sse` are sans-IO codecs (no sockets, no clocks); `server` is the HTTP/1.1
//! connection loop of a worker, which reads requests with those codecs, hands each to the
//! `reply::Handler` (the pipeline) and writes the reply, in order, with keep-alive and pipelining.

pub mod http;
pub mod reply;
pub mod server;
pub mod sse;
