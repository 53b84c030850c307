//! The performance harness of mcpgw: three binaries sharing one small library.
//!
//! ```text
//! mcpgw-load ──HTTP/1.1 keep-alive──> mcpgw (or mcpgw-floor) ──> mcpgw-fixture
//!   load.rs (threads, loops)            floor.rs (pass-through)     fixture.rs (MCP server)
//!   load/client.rs (one session)
//!   mcp.rs sse.rs (bodies, verdicts)
//!   stats.rs report.rs plot.rs cpu.rs
//!            └──────── http.rs (framing) · rt.rs (runtimes, servers) · sys.rs ────────┘
//! ```
//!
//! Everything runs on monoio, one runtime per thread, like the gateway, so that the floor and
//! the fixture cost what the gateway's runtime costs and the comparison isolates the gateway's
//! own work. Nothing here is used by the gateway, and nothing here runs from `cargo test`
//! against a real gateway: the perf scripts drive the release binaries.

pub mod cpu;
pub mod fixture;
pub mod floor;
pub mod http;
pub mod load;
pub mod mcp;
pub mod plot;
pub mod report;
pub mod rt;
pub mod schedule;
pub mod sse;
pub mod stats;
pub mod sys;
