//! mcpgw: an MCP gateway. One Streamable HTTP endpoint in front of many MCP servers.
//!
//! # Request flow
//!
//! ```text
//!  client ──TCP──> worker N (monoio runtime, own SO_REUSEPORT listener)
//!     net                 the byte stream: TcpStream, or net::tls::TlsStream ([gateway.tls])
//!     transport::server   HTTP/1.1: head (httparse), body, keep-alive, pipelining, limits;
//!                         calls a transport::reply::Handler, writes its Reply
//!     pipeline            the phases, one file each (see `pipeline` and ARCHITECTURE.md):
//!                         admit -> route -> authorize -> rewrite -> call -> relay -> record
//!     jsonrpc::frame      validated in place (one pass); spans of id / method / name / uri
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
//! # Import rules (ARCHITECTURE.md)
//!
//! - `text`, `arena`, `mcp`, `jsonrpc`, `error`, `net`, `limits`, `ratelimit`, `resilience`,
//!   `secret` import nothing above themselves (`text` and `arena` import nothing of ours).
//! - `session`, `registry`, `upstream`, `auth`, `guard`, `observe` never import `pipeline`,
//!   `state`, `control` or `transport::server`; `state` never imports `pipeline` or
//!   `control`.
//! - `transport` never imports `pipeline`, `session` or `upstream`; only `main.rs` imports
//!   `control`.
//! - Phase files (`pipeline/*.rs`) import `pipeline/context.rs` and lower modules, never
//!   `pipeline.rs`. No import circle among `src/` files.

pub mod arena;
pub mod auth;
#[cfg(any(test, feature = "bench"))]
pub mod bench;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
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
