//! Phase: route. A JSON-RPC request to where it is served: answered by the gateway (ping,
//! the lists, `logging/setLevel`, subscriptions it keeps) or sent to the upstream that owns
//! the tool, prompt or resource it names (a namespaced name or URI of the session's view,
//! else the one unprefixed upstream). Each routed request passes `authorize` first.
//!
//! Never writes bytes for the client itself (refusals go to `reject::rescue`) and never
//! talks to an upstream (that is `call`).

use std::{borrow::Cow, rc::Rc};

use bytes::Bytes;

use super::{
    answer::{self, List},
    authorize::{self, Guarding},
    call,
    context::{Call, Ctx},
    reject::{invalid, rescue, NotFound, Reject},
    relay::Outcome,
    rewrite::Routed,
};
use crate::{
    jsonrpc::{codes::result_body, Code},
    registry::{names, Snapshot, View},
    upstream::UpstreamRef,
};

/// Answers one request, or routes it and relays the upstream's answer.
pub async fn request(ctx: &Rc<Ctx>, call: &Call<'_>) -> Outcome {
    match dispatch(ctx, call).await {
        Ok(out) => out,
        Err(r) => Outcome::Done(rescue(Some(call.id), r)),
    }
}

async fn dispatch(ctx: &Rc<Ctx>, call: &Call<'_>) -> Result<Outcome, Reject> {
    let Some(method) = call.f.method() else {
        return Err(invalid(Code::InvalidRequest, "Invalid Request"));
    };
    // A virtual server removed by a reload leaves its sessions with nothing to serve.
    let Some(view) = call.snap.view(call.sess.server.as_deref()) else {
        return Err(Reject::NotFound(NotFound::Session));
    };
    let done = |b| Ok(Outcome::Done(b));
    let pieces = |p| Ok(Outcome::Pieces(p));
    match &*method {
        "ping" => done(answer::ping(call)),
        "tools/list" => pieces(answer::list(ctx, call, view, List::Tools)?),
        "prompts/list" => pieces(answer::list(ctx, call, view, List::Prompts)?),
        "resources/list" => pieces(answer::list(ctx, call, view, List::Resources)?),
        "resources/templates/list" => pieces(answer::list(ctx, call, view, List::Templates)?),
        "tools/call" => by_name(ctx, call, view, view.tools, "tool").await,
        "prompts/get" => by_name(ctx, call, view, view.prompts, "prompt").await,
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            resource(ctx, call, view, &method).await
        }
        "completion/complete" => complete(ctx, call, view).await,
        "logging/setLevel" => done(answer::set_level(ctx, call).await?),
        _ => Err(Reject::NotFound(NotFound::Method)),
    }
}

/// `tools/call` and `prompts/get`: the name's upstream in `map`, else the unprefixed one.
async fn by_name(
    ctx: &Rc<Ctx>,
    call: &Call<'_>,
    view: View<'_>,
    map: &crate::registry::Names,
    what: &'static str,
) -> Result<Outcome, Reject> {
    let f = call.f;
    let Some(span) = f.param("name") else {
        return Err(invalid(
            Code::InvalidParams,
            "Invalid params: name is required",
        ));
    };
    // A name that is not a string names nothing: invalid params, whatever the roles.
    let Some(name) = f.str_at(span) else {
        return Err(invalid(
            Code::InvalidParams,
            "Invalid params: name must be a string",
        ));
    };
    authorize::named(ctx, call, what, &name)?;
    let target = map.get(&*name);
    if what == "tool" && (target.is_some() || view.unprefixed.is_some()) {
        authorize::quota(ctx, call, &name)?;
    }
    let (up, rename, retry_safe, screen) = match (target, view.unprefixed) {
        (Some(t), _) => (
            t.upstream,
            Some((span, t.name_json.clone())),
            t.retry_safe,
            t.screen.clone(),
        ),
        // A name no upstream lists goes, unchanged, to the one unprefixed upstream when
        // there is one: it answers in its own way, as it would without the gateway.
        (None, Some(up)) => (
            up,
            None,
            false,
            authorize::unlisted_screen(call, what, up, Some(&name)),
        ),
        (None, None) if what == "tool" => return Err(Reject::NotFound(NotFound::Tool)),
        (None, None) => return Err(Reject::NotFound(NotFound::Prompt)),
    };
    let guarding = authorize::arguments(ctx, call, screen.as_ref(), up, Some(&name))?;
    let routed = Routed {
        up,
        rename,
        exposed: target.map(|t| t.exposed.clone()),
        retry_safe,
        guarding,
    };
    call::forward(ctx, call, routed).await
}

/// `resources/read`, `resources/subscribe`, `resources/unsubscribe`: the URI's upstream.
async fn resource(
    ctx: &Rc<Ctx>,
    call: &Call<'_>,
    view: View<'_>,
    method: &str,
) -> Result<Outcome, Reject> {
    let f = call.f;
    let Some(span) = f.param("uri") else {
        return Err(invalid(
            Code::InvalidParams,
            "Invalid params: uri is required",
        ));
    };
    let uri = f.str_at(span);
    if let Some(u) = uri.as_deref() {
        authorize::resource(ctx, call.sess, u)?;
    }
    let Some((up, orig)) = uri.as_deref().and_then(|u| route_uri(call.snap, view, u)) else {
        // 2026-07-28: invalid params, naming the URI.
        return Err(Reject::NotFound(if call.sess.stateless {
            NotFound::ResourceNamed(uri.map(Cow::into_owned))
        } else {
            NotFound::Resource
        }));
    };
    if method != "resources/read" {
        if let Some(answer) = answer::subscription(ctx, method, call, up, &orig) {
            return Ok(Outcome::Done(result_body(call.id, answer)));
        }
    }
    let routed = Routed {
        up,
        rename: Some((span, Bytes::from(orig))),
        exposed: None,
        retry_safe: method == "resources/read",
        guarding: Guarding::default(),
    };
    call::forward(ctx, call, routed).await
}

/// `completion/complete`: the upstream of the prompt or resource its `ref` names.
async fn complete(ctx: &Rc<Ctx>, call: &Call<'_>, view: View<'_>) -> Result<Outcome, Reject> {
    let f = call.f;
    let Some(r) = f.param("ref") else {
        return Err(invalid(
            Code::InvalidParams,
            "Invalid params: ref is required",
        ));
    };
    let kind = f
        .member(r, "type")
        .and_then(|s| f.str_at(s).map(Cow::into_owned));
    let (up, span, orig) = match kind.as_deref() {
        Some("ref/prompt") => {
            let Some(span) = f.member(r, "name") else {
                return Err(invalid(
                    Code::InvalidParams,
                    "Invalid params: ref.name is required",
                ));
            };
            let name = f.str_at(span);
            if let Some(n) = name.as_deref() {
                authorize::named(ctx, call, "prompt", n)?;
            }
            match name.and_then(|n| view.prompts.get(&*n)) {
                Some(t) => (t.upstream, span, t.name_json.clone()),
                None => return Err(Reject::NotFound(NotFound::Prompt)),
            }
        }
        Some("ref/resource") => {
            let Some(span) = f.member(r, "uri") else {
                return Err(invalid(
                    Code::InvalidParams,
                    "Invalid params: ref.uri is required",
                ));
            };
            let uri = f.str_at(span);
            if let Some(u) = uri.as_deref() {
                authorize::resource(ctx, call.sess, u)?;
            }
            match uri.and_then(|u| route_uri(call.snap, view, &u)) {
                Some((up, orig)) => (up, span, Bytes::from(orig)),
                None => return Err(Reject::NotFound(NotFound::Resource)),
            }
        }
        _ => {
            return Err(invalid(
                Code::InvalidParams,
                "Invalid params: unknown ref type",
            ))
        }
    };
    let routed = Routed {
        up,
        rename: Some((span, orig)),
        exposed: None,
        retry_safe: true,
        guarding: Guarding::default(),
    };
    call::forward(ctx, call, routed).await
}

/// (upstream, original URI as a JSON string token) for an exposed or plain URI.
/// A URI outside a virtual server's bundle is not found there.
pub fn route_uri(snap: &Snapshot, view: View<'_>, uri: &str) -> Option<(UpstreamRef, Vec<u8>)> {
    if !view.uri_allowed(uri) {
        return None;
    }
    let (up, orig) = match names::split_uri(uri) {
        Some((name, orig)) if snap.by_name.contains_key(name) => (*snap.by_name.get(name)?, orig),
        _ => (
            *view.plain_uris?.get(uri).or(view.unprefixed.as_ref())?,
            uri,
        ),
    };
    Some((up, serde_json::to_vec(orig).ok()?))
}
