//! mcpgw: an MCP gateway. One Streamable HTTP endpoint in front of many MCP servers.
//!
//! # Request flow
//!
//! ```text
//!  client ──TCP──> worker N (monoio runtime, own SO_REUSEPORT listener)
//!     net                 the byte stream: TcpStream, or net::tls::TlsStream ([gateway.tls])
//!     transport::server   HTTP/1.1: head (httparse), body, keep-alive, pipelining, limits
//!     front               /mcp: Origin, method, version header, media types, session
//!     jsonrpc::frame      simd-json validates; spans of id / method / name / uri
//!     registry::Snapshot  (arc-swap load, no lock) lists answered from pre-serialized pages;
//!                         exposed name -> (upstream, original name)
//!     upstream::Caller    fresh gateway id spliced in, name spliced back
//!        ├─ http          per-worker keep-alive pool (plain or TLS), JSON or SSE answers,
//!        │                session re-init on 404; configured headers and credential
//!        │                (secret::Secret, or the OAuth token loaded from an arc-swap)
//!        └─ stdio         channel to the control plane's supervisor of the child process
//!     answer: upstream id replaced by the client's id; result bytes untouched
//!
//!  control plane thread: config, stdio children (restart with backoff), catalog fetch,
//!  snapshot build and publish, idle-session expiry, quota counters saved to the store.
//!  mcpgw-jwks thread: fetches a `jwks_url` and swaps its keys into the live `Auth`.
//!  mcpgw-oauth thread (one per OAuth upstream): fetches and refreshes its access token.
//! ```
//!
//! Workers share only the session table, the rate-limit and quota cells (`DashMap`s of
//! atomics), the snapshot and auth pointers and the upstreams' OAuth token pointers;
//! everything else is per worker. What the workers and the control plane share is
//! `state::Shared`; the control plane (`control`, with the admin API in `control::admin`)
//! is started by `main.rs`, the only module that imports it.
//!
//! # Import rules
//!
//! The lowest layers import nothing above them: `text` (hex, `*` globs) imports nothing of
//! ours; `mcp` (protocol revisions, the 2026-07-28 envelope, `Hello`) imports only `text`,
//! `jsonrpc` and external crates. Protocol rules live in `mcp`, so `upstream`, `registry`
//! and `session` need not reach up into `front` for them. `state` imports neither `control`
//! nor `front`; only `main.rs` imports `control`.

pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod error;
pub mod guard;
pub mod jsonrpc;
pub mod limits;
pub mod mcp;
pub mod net;
pub mod observe;
pub mod pipeline;
pub mod ratelimit;
pub mod registry;
pub mod resilience;
pub mod runtime;
pub mod secret;
pub mod session;
pub mod state;
pub mod store;
pub mod text;
pub mod transport;
pub mod upstream;
