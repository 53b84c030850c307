//! Integration tests: the real `mcpgw` binary, real MCP peers (the official Python SDK as
//! client and as upstream servers), real sockets on 127.0.0.1.

// Test threads may sleep and unwrap; the gateway's rules are for the gateway.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod admin;
mod auth;
mod cli;
mod conformance;
mod faults;
mod faulty;
mod guard;
mod hostile;
mod otel;
mod outbound;
mod raw;
mod replicas;
mod resilience;
mod sdk;
mod secrets;
mod servers;
mod session;
mod smuggle;
mod stateless;
mod support;
mod tls;
