//! Phase: rewrite. The request as the upstream gets it, by splice edits into the client's
//! bytes: the gateway's id, the upstream's own name (or URI), the progress token, masked
//! arguments, and the `_meta` members the eras differ on (a legacy upstream must not see a
//! 2026-07-28 client's envelope; a 2026-07-28 upstream gets one built from a legacy
//! client's `initialize`), the gateway's `traceparent`, and a 2026-07-28 upstream's routing
//! headers.
//!
//! Pure: never checks, never sends, never records; the arguments stay the client's bytes
//! unless a guard masked them.

use std::borrow::Cow;

use bytes::Bytes;

use super::{authorize::Guarding, context::Call};
use crate::{
    jsonrpc::Span,
    mcp::era::{self, Routing},
    net::Segments,
    upstream::Upstream,
    upstream::UpstreamRef,
};

/// Where a routed request goes and what changes on its way.
pub struct Routed {
    /// The upstream that serves it.
    pub up: UpstreamRef,
    /// The name or URI to put back (its span, and the upstream's own as a JSON string).
    pub rename: Option<(Span, Bytes)>,
    /// The tool's or prompt's name as clients call it, from the snapshot (for the record).
    pub exposed: Option<std::sync::Arc<str>>,
    /// Whether it may be sent again after a failure that may have reached the upstream.
    pub retry_safe: bool,
    /// How it is screened.
    pub guarding: Guarding,
}

/// In which era the upstream is spoken to, for this client.
#[derive(Clone, Copy)]
pub struct Eras {
    /// A stateless client's request to a dual-era upstream: sent in that era.
    pub modern: bool,
    /// The upstream is spoken to in MCP 2026-07-28.
    pub upstream_stateless: bool,
}

impl Eras {
    /// The eras of `call`'s request to `upstream`.
    pub fn of(call: &Call<'_>, upstream: &Upstream) -> Self {
        let modern = call.sess.stateless && upstream.is_dual();
        Eras {
            modern,
            upstream_stateless: modern || upstream.is_stateless(),
        }
    }
}

/// The request as sent upstream.
pub struct Rewritten {
    /// Its bytes: in a large request, the long stretches between the edits (its arguments)
    /// are the client's own, not copied.
    pub body: Segments,
    /// The routing headers of a 2026-07-28 upstream, when known without reading the body.
    pub routing: Option<Routing>,
    /// Kept to ask again with a legacy client's input, should a 2026-07-28 upstream need
    /// some (a reference count, only then).
    pub sent: Option<Bytes>,
}

/// Rewrites `call`'s request for `upstream` under gateway id `gid` (as text), with the
/// gateway's `traceparent` `tp` when the call is traced.
pub fn request(
    call: &Call<'_>,
    upstream: &Upstream,
    routed: &Routed,
    eras: Eras,
    gid: &str,
    tp: Option<&str>,
) -> Rewritten {
    let f = call.f;
    // A stateless client's `_meta` says what a legacy upstream must not see (its version,
    // capabilities, client info): those members go. A 2026-07-28 upstream gets them as
    // they are (and a legacy client's requests get the envelope on their way out, in
    // `upstream::http`). A dual-era upstream is spoken to in the client's era.
    let (strip, emptied) = match f
        .param("_meta")
        .filter(|_| call.sess.stateless && !eras.upstream_stateless)
    {
        Some(meta) => f.removals(meta, era::is_envelope_key),
        None => (smallvec::SmallVec::new(), false),
    };
    let meta = meta_edits(call, eras, tp, emptied);
    // On the stack for the usual few (id, name, progress token, a masked value).
    let mut edits: smallvec::SmallVec<[(Span, &[u8]); 6]> = smallvec::SmallVec::new();
    if let Some(span) = f.id_span() {
        edits.push((span, gid.as_bytes()));
    }
    if let Some((span, with)) = &routed.rename {
        edits.push((*span, with));
    }
    if let Some(t) = f.param("_meta").and_then(|m| f.member(m, "progressToken")) {
        edits.push((t, gid.as_bytes()));
    }
    if let Some((span, masked)) = &routed.guarding.arguments {
        edits.push((*span, masked));
    }
    edits.extend(strip.into_iter().map(|s| (s, &b""[..])));
    for (span, with) in &meta {
        edits.push((*span, with));
    }
    let body = f.splice_parts(&mut edits);
    Rewritten {
        routing: routing(call, upstream, routed, eras),
        sent: (eras.upstream_stateless && !call.sess.stateless).then(|| body.concat()),
        body,
    }
}

/// `_meta` gains the gateway's traceparent (replacing the client's own) and, for a legacy
/// client's request to a 2026-07-28 upstream, the envelope built from what the client said
/// in `initialize`.
fn meta_edits(
    call: &Call<'_>,
    eras: Eras,
    tp: Option<&str>,
    emptied: bool,
) -> Vec<(Span, Vec<u8>)> {
    let (f, sess) = (call.f, call.sess);
    let mut out = Vec::new();
    let mut added = String::new();
    if let Some(tp) = tp {
        match f.param("_meta").and_then(|m| f.member(m, "traceparent")) {
            Some(old) => out.push((old, format!("\"{tp}\"").into_bytes())),
            None => added = format!("\"traceparent\":\"{tp}\""),
        }
    }
    if eras.upstream_stateless && !sess.stateless {
        if !added.is_empty() {
            added.push(',');
        }
        added.push_str(&era::envelope(&sess.hello));
        // The level a legacy client set (`logging/setLevel`) is, in this era, each
        // request's own.
        if let Some(level) = sess.log_level.load_full() {
            added.push_str(&format!(r#","{}":"{level}""#, era::META_LOG_LEVEL));
        }
    }
    if !added.is_empty() {
        out.extend(era::meta_insert(f, &added, emptied));
    }
    out
}

/// The routing headers of a 2026-07-28 upstream, from what was parsed already (when the
/// arguments were masked, the upstream's copy is read from the body instead).
fn routing(call: &Call<'_>, upstream: &Upstream, routed: &Routed, eras: Eras) -> Option<Routing> {
    if !eras.upstream_stateless || routed.guarding.arguments.is_some() || !upstream.has_sessions() {
        return None;
    }
    let f = call.f;
    let method = f.method()?;
    // Only the methods that name something in `Mcp-Name` (completion/complete names a
    // prompt or resource in `ref`, which gets no header).
    let name: Option<Cow<'_, str>> = match (era::named_param(&method), &routed.rename) {
        (None, _) => None,
        (Some(_), Some((_, json))) => crate::jsonrpc::frame::json_str(json),
        (Some(p), None) => f.param(p).and_then(|s| f.str_at(s)),
    };
    Some(era::routing_of(f, &method, name.as_deref(), |t| {
        upstream.param_headers_of(t)
    }))
}
