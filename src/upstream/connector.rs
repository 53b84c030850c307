//! The upstream's kind behind one seam: what the request path asks of an upstream (its
//! era, its credential, its sessions and their streams), answered here per transport, so
//! nothing outside `upstream` matches on [`Link`].

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{
    http::{Credential, HttpCall},
    Caller, Link, Upstream, UpstreamSession,
};
use crate::{
    error::{Error, ErrorKind, Result},
    mcp::{era::ParamHeaders, Hello},
};

/// Which upstream session a request needs ([`Upstream::open_session`]).
pub enum Want<'a> {
    /// The session in MCP 2026-07-28 of a dual-era upstream.
    Modern,
    /// A per-client session for a set of declared capabilities (a stateless client's
    /// request to a legacy upstream), replacing `expired` if given.
    ForCapabilities(&'a Bytes, Option<&'a Arc<UpstreamSession>>),
    /// The gateway-wide session; initialized again when `renew`.
    Shared {
        /// The upstream no longer knows the current one.
        renew: bool,
    },
    /// A new session of its own for a client that said `hello`.
    New(&'a Hello),
}

/// What the admin API shows of an upstream's transport ([`Upstream::shown`]).
pub struct Shown {
    /// `http` or `stdio`.
    pub transport: &'static str,
    /// Whether it is up.
    pub up: bool,
    /// Configured header names, values `***` (`null` for stdio).
    pub headers: Value,
    /// The credential's kind and public parts, secrets `***` (`null` when none).
    pub auth: Value,
}

impl Upstream {
    /// Whether the upstream keeps sessions the gateway opens (HTTP); a stdio child is one.
    pub fn has_sessions(&self) -> bool {
        matches!(self.link, Link::Http(_))
    }

    /// Whether it speaks MCP 2026-07-28 only.
    pub fn is_stateless(&self) -> bool {
        matches!(&self.link, Link::Http(h) if h.is_stateless())
    }

    /// Whether it speaks both eras.
    pub fn is_dual(&self) -> bool {
        matches!(&self.link, Link::Http(h) if h.is_dual())
    }

    /// Fails when nothing can be sent now: an OAuth upstream without a valid token.
    pub fn check_credential(&self) -> Result<()> {
        match &self.link {
            Link::Http(h) => h.check_credential(),
            Link::Stdio(_) => Ok(()),
        }
    }

    /// The `Mcp-Param-*` headers its tool `tool` declares (2026-07-28).
    pub fn param_headers_of(&self, tool: &str) -> Option<ParamHeaders> {
        match &self.link {
            Link::Http(h) => h.param_headers_of(tool),
            Link::Stdio(_) => None,
        }
    }

    /// Whether a call dropped early is cancelled by the transport itself (a stdio child
    /// is told when its call is dropped); an HTTP upstream must be sent a cancellation.
    pub fn cancels_on_drop(&self) -> bool {
        matches!(self.link, Link::Stdio(_))
    }

    /// The session `want` names when it is open already: found without IO, so a caller can
    /// keep the opening (rare, and a large future) out of its common path.
    pub fn ready_session(&self, want: &Want<'_>) -> Option<Arc<UpstreamSession>> {
        let Link::Http(h) = &self.link else {
            return None;
        };
        match want {
            Want::Shared { renew: false } => h.ready_shared(),
            Want::ForCapabilities(caps, None) => h.ready_for_capabilities(caps),
            _ => None,
        }
    }

    /// Opens (or finds) the upstream session `want` names. Only for upstreams that
    /// [`has_sessions`](Self::has_sessions).
    pub async fn open_session(
        &self,
        caller: &Caller,
        want: Want<'_>,
    ) -> Result<Arc<UpstreamSession>> {
        let Link::Http(h) = &self.link else {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("{}: a stdio upstream has no sessions", self.name),
            ));
        };
        match want {
            Want::Modern => h.ensure_modern(caller).await,
            Want::ForCapabilities(caps, expired) => h.for_capabilities(caller, caps, expired).await,
            Want::Shared { renew: true } => h.reinit_shared(caller).await,
            Want::Shared { renew: false } => h.ensure_shared(caller).await,
            Want::New(hello) => h.initialize(caller, hello).await,
        }
    }

    /// Opens upstream session `us`'s own stream (notifications outside calls), if it has
    /// one; `uris`: the resources a 2026-07-28 listen stream subscribes.
    pub async fn listen_session(
        &self,
        caller: &Caller,
        us: &UpstreamSession,
        uris: &[String],
    ) -> Result<Option<Box<HttpCall>>> {
        match &self.link {
            Link::Http(h) => h.listen(caller, us, uris).await,
            Link::Stdio(_) => Ok(None),
        }
    }

    /// Stops its child process (a stdio upstream removed), waiting up to `within`; whether
    /// it stopped. An HTTP upstream has nothing to stop.
    pub async fn stop_child(&self, within: std::time::Duration) -> bool {
        match &self.link {
            Link::Stdio(h) => h.stop(within).await,
            Link::Http(_) => true,
        }
    }

    /// What the admin API shows of how it is reached: its transport, whether it is up (an
    /// HTTP upstream with a gateway-wide session, a running child), its configured headers
    /// and credential with every value `***`.
    pub fn shown(&self) -> Shown {
        match &self.link {
            Link::Http(h) => {
                let headers: serde_json::Map<String, Value> = h
                    .header_names()
                    .map(|n| (n.to_string(), json!("***")))
                    .collect();
                let auth = match h.credential() {
                    None => Value::Null,
                    Some(Credential::Header { name, .. }) => {
                        json!({ "type": "header", "header": name, "value": "***" })
                    }
                    Some(Credential::OAuth(src)) => {
                        let c = src.client();
                        json!({
                            "type": "oauth", "token_url": c.token_url, "client_id": c.client_id,
                            "client_secret": "***", "scope": c.scope, "token_valid": src.valid(),
                        })
                    }
                };
                Shown {
                    transport: "http",
                    up: h.shared_session().is_some(),
                    headers: Value::Object(headers),
                    auth,
                }
            }
            Link::Stdio(h) => Shown {
                transport: "stdio",
                up: h.is_up(),
                headers: Value::Null,
                auth: Value::Null,
            },
        }
    }

    /// Ends upstream session `us` (HTTP DELETE); nothing for a stdio child.
    pub async fn end_session(&self, caller: &Caller, us: &UpstreamSession) {
        if let Link::Http(h) = &self.link {
            h.delete(caller, us).await;
        }
    }
}
