//! MCP protocol rules shared by the pipeline and the upstreams.
//!
//! `version` holds the revisions and their rules, `era` the 2026-07-28 envelope; this file
//! holds what a client says about itself ([`Hello`]) and an upstream's lists
//! ([`UpstreamCatalog`]). A low layer: it may import `text`,
//! `jsonrpc` and external crates, nothing else of ours (never sessions, the pipeline, upstreams
//! or the transport), and it does no IO.

pub mod era;
pub mod version;

use bytes::Bytes;

/// What the gateway says about itself in an upstream `initialize`.
#[derive(Clone, Debug)]
pub struct Hello {
    /// Raw JSON of `capabilities`.
    pub capabilities: Bytes,
    /// Raw JSON of `clientInfo`.
    pub client_info: Bytes,
}

impl Hello {
    /// The gateway speaking for itself (catalog fetches, shared sessions).
    pub fn gateway() -> Self {
        Self {
            capabilities: Bytes::from_static(b"{}"),
            client_info: Bytes::from_static(CLIENT_INFO.as_bytes()),
        }
    }
}

/// Client identity the gateway presents to upstreams in `initialize`.
pub const CLIENT_INFO: &str = concat!(
    r#"{"name":"mcpgw","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
);

/// One upstream's lists as last fetched (JSON values as the upstream sent them).
#[derive(Clone, Debug, Default)]
pub struct UpstreamCatalog {
    /// `capabilities` from its `initialize` answer.
    pub capabilities: serde_json::Map<String, serde_json::Value>,
    /// `tools/list` items.
    pub tools: Vec<serde_json::Value>,
    /// `prompts/list` items.
    pub prompts: Vec<serde_json::Value>,
    /// `resources/list` items.
    pub resources: Vec<serde_json::Value>,
    /// `resources/templates/list` items.
    pub templates: Vec<serde_json::Value>,
}
