//! Phase: authorize. Every check a routed request must pass, each returning
//! `Result<_, Reject>`: the principal's roles for the tool, prompt or resource, rate limits
//! (per tool and per upstream) and quotas, the guard's verdict on the upstream's catalog
//! and on the call's arguments (screened, maybe masked), the session's calls in flight.
//! Findings are counted, logged and audited here, where the reason is known.
//!
//! Never routes, never rewrites the request, never talks to an upstream.

use std::{rc::Rc, sync::Arc};

use super::{
    context::{Call, Ctx},
    reject::{Blocked, Denied, RateLimited, Reject},
};
use crate::{
    auth::{
        policy::{Grant, Principal},
        Auth, RateStage,
    },
    guard::policy::{Direction, Policy as GuardPolicy, Screen, Screened},
    jsonrpc::Span,
    limits::Limit,
    registry::{self, Snapshot},
    session::Session,
    upstream::{Upstream, UpstreamRef},
};

/// How a call is screened on its way: its screen (for the result too) and the masked
/// `arguments` to send instead of the client's.
#[derive(Default)]
pub struct Guarding {
    /// The screen of the call's tool, if the guard screens it.
    pub screen: Option<Arc<Screen>>,
    /// The masked arguments and where they go.
    pub arguments: Option<(Span, Vec<u8>)>,
}

/// Whose content is screened: for the counters, logs and audit records of findings.
pub struct Scope<'a> {
    /// The client's session.
    pub sess: &'a Session,
    /// The tool name.
    pub target: &'a str,
    /// The upstream's name.
    pub upstream: &'a str,
}

/// A request for something outside the principal's roles: logged and audited.
pub fn denied(ctx: &Ctx, sess: &Session, what: &'static str, name: &str) -> Reject {
    let principal = sess.principal.load();
    tracing::info!(principal = %principal.name, what, name, "denied by role");
    if let Some(a) = &ctx.shared.audit {
        a.record(serde_json::json!({
            "event": "denied",
            "reason": "role",
            "principal": &*principal.name,
            "method": principal.method.label(),
            "session": sess.id.as_str().get(..8),
            "kind": what,
            "target": name,
        }));
    }
    Reject::Denied(Denied { what })
}

/// A tool or prompt by name: allowed by the principal's roles, and a tool within its rate.
pub fn named(ctx: &Ctx, call: &Call<'_>, what: &'static str, name: &str) -> Result<(), Reject> {
    let sess = call.sess;
    let principal = sess.principal.load();
    let allowed = if what == "tool" {
        principal.grant.tool(name)
    } else {
        principal.grant.prompt(name)
    };
    if !allowed {
        return Err(denied(ctx, sess, what, name));
    }
    if what == "tool" {
        rate(ctx, &call.snap.auth, RateStage::Tool, &principal, name)?;
    }
    Ok(())
}

/// A resource by URI: allowed by the principal's roles.
pub fn resource(ctx: &Ctx, sess: &Session, uri: &str) -> Result<(), Reject> {
    if sess.principal.load().grant.resource(uri) {
        Ok(())
    } else {
        Err(denied(ctx, sess, "resource", uri))
    }
}

/// A `[[rate_limit]]` of `stage` (in `auth`) lets this call through now.
pub fn rate(
    ctx: &Ctx,
    auth: &Auth,
    stage: RateStage,
    principal: &Principal,
    name: &str,
) -> Result<(), Reject> {
    if auth.rates.is_empty() {
        return Ok(());
    }
    let now = ctx.shared.now_ns();
    let Err(wait) = auth.rate_check(&ctx.shared.rates, stage, principal, name, now) else {
        return Ok(());
    };
    ctx.shared.limits.hit(Limit::RateLimit);
    tracing::debug!(principal = %principal.name, name, "call rate limited");
    Err(Reject::RateLimited(RateLimited {
        name: Some(name.to_string()),
        retry_after: wait,
    }))
}

/// A `[[quota]]` has a call left for this one (counted when it has).
pub fn quota(ctx: &Ctx, call: &Call<'_>, tool: &str) -> Result<(), Reject> {
    let auth = &call.snap.auth;
    if auth.quotas.is_empty() {
        return Ok(());
    }
    let principal = call.sess.principal.load();
    let now = ctx.shared.unix_secs();
    let Err(over) = auth.quota_check(&ctx.shared.quotas, &principal, tool, now) else {
        return Ok(());
    };
    ctx.shared.limits.hit(Limit::Quota);
    tracing::debug!(principal = %principal.name, tool, "call over quota");
    Err(Reject::OverQuota(over, now))
}

/// The upstream a routed call goes to may take it: its catalog passed the guard, the
/// principal is within its per-upstream rate, the session within its calls in flight.
pub fn upstream(ctx: &Ctx, call: &Call<'_>, up: UpstreamRef) -> Result<Arc<Upstream>, Reject> {
    let Some(upstream) = call.snap.upstream(up).cloned() else {
        return Err(Reject::Internal);
    };
    if call.snap.is_blocked(up) {
        return Err(Reject::Blocked(Blocked::Catalog));
    }
    rate(
        ctx,
        &call.snap.auth,
        RateStage::Upstream,
        &call.sess.principal.load(),
        &upstream.name,
    )?;
    if call.sess.in_flight.len() >= ctx.shared.config.gateway.max_in_flight_per_session {
        ctx.shared.limits.hit(Limit::InFlight);
        return Err(Reject::LimitReached(
            "Too many calls in flight for this session (max_in_flight_per_session)",
        ));
    }
    Ok(upstream)
}

/// Screens a `tools/call`'s `arguments` under `screen` (if any): the [`Guarding`] to
/// forward with (masked arguments, the screen for the result), or the refusal when a
/// policy blocks what was found.
pub fn arguments(
    ctx: &Ctx,
    call: &Call<'_>,
    screen: Option<&Arc<Screen>>,
    up: UpstreamRef,
    name: Option<&str>,
) -> Result<Guarding, Reject> {
    let Some(sc) = screen else {
        return Ok(Guarding::default());
    };
    let mut g = Guarding {
        screen: Some(sc.clone()),
        arguments: None,
    };
    let f = call.f;
    let Some(span) = f
        .param("arguments")
        .filter(|_| sc.covers(Direction::Arguments))
    else {
        return Ok(g);
    };
    let raw = f.raw_at(span).unwrap_or_default();
    let scope = Scope {
        sess: call.sess,
        target: name.unwrap_or(""),
        upstream: call.snap.upstream(up).map_or("", |u| &*u.name),
    };
    match screen_json(ctx, sc, &call.snap.guard, raw, Direction::Arguments, &scope) {
        Screened::Pass => Ok(g),
        Screened::Replace(masked) => {
            g.arguments = Some((span, masked));
            Ok(g)
        }
        Screened::Block(kinds) => Err(Reject::Blocked(Blocked::Screen(
            Direction::Arguments,
            kinds,
        ))),
    }
}

/// The screen of a name no upstream lists, sent to the one unprefixed upstream: as a
/// listed tool of that upstream would be screened.
pub fn unlisted_screen(
    call: &Call<'_>,
    what: &str,
    up: UpstreamRef,
    name: Option<&str>,
) -> Option<Arc<Screen>> {
    if what != "tool" || !call.snap.guard.screens_calls() {
        return None;
    }
    let u = call.snap.upstream(up)?;
    call.snap
        .guard
        .screen(&u.name, name?, call.sess.server.as_deref())
}

/// Screens `json` (a call's `arguments` or `result`) under `sc`; counts every finding
/// (`mcpgw_guard_screen_hits_total`), logs and audits them (kinds only, never values).
pub fn screen_json(
    ctx: &Ctx,
    sc: &Screen,
    policy: &GuardPolicy,
    json: &[u8],
    dir: Direction,
    scope: &Scope<'_>,
) -> Screened {
    let mut hits = Vec::new();
    let out = sc.apply(&policy.screener, json, dir, &mut hits);
    if hits.is_empty() {
        return out;
    }
    for h in &hits {
        ctx.shared.guard.screen_hit(
            h.kind.label(),
            dir.as_str(),
            sc.verdict(h.kind.class()).as_str(),
        );
    }
    let kinds = crate::guard::policy::kinds(&hits);
    let action = match &out {
        Screened::Pass => "flag",
        Screened::Replace(_) => "mask",
        Screened::Block(_) => "block",
    };
    let principal = scope.sess.principal.load();
    let (target, upstream) = (scope.target, scope.upstream);
    // Masking is the policy doing its work, maybe on every call: counted and audited,
    // logged at debug. A refusal, or a finding only flagged, is worth a warning.
    if matches!(out, Screened::Replace(_)) {
        tracing::debug!(target, upstream, principal = %principal.name, direction = dir.as_str(), ?kinds, action, "guard: screening masked sensitive content");
    } else {
        tracing::warn!(target, upstream, principal = %principal.name, direction = dir.as_str(), ?kinds, action, "guard: screening found sensitive content");
    }
    if let Some(a) = &ctx.shared.audit {
        a.record(serde_json::json!({
            "event": "guard_screen",
            "direction": dir.as_str(),
            "target": target,
            "upstream": upstream,
            "session": scope.sess.id.as_str().get(..8),
            "principal": &*principal.name,
            "kinds": kinds,
            "action": action,
        }));
    }
    out
}

/// The four lists (tools, prompts, resources, templates) of view `server` with only what
/// `grant` allows, built from the snapshot's pages once per worker, snapshot and role set.
pub fn granted_lists(
    ctx: &Ctx,
    snap: &Snapshot,
    server: Option<&str>,
    grant: &Grant,
) -> Rc<[registry::Pages; 4]> {
    let key = (server.map(str::to_string), grant.roles.clone());
    let mut cache = ctx.granted.borrow_mut();
    // Roles mean what this snapshot's policy says: a reload may change them with the lists.
    let stamp = (snap.generation, Arc::as_ptr(&snap.auth) as usize);
    if cache.0 != stamp {
        *cache = (stamp, Default::default());
    }
    if let Some(p) = cache.1.get(&key) {
        return p.clone();
    }
    let Some(view) = snap.view(server) else {
        return Rc::new(Default::default());
    };
    let size = ctx.shared.config.gateway.page_size;
    // An item is kept when the string at `key` is one `allows` grants.
    let keep = |key: &'static str, allows: fn(&Grant, &str) -> bool| {
        move |v: &serde_json::Value| {
            v.get(key)
                .and_then(serde_json::Value::as_str)
                .is_some_and(|s| allows(grant, s))
        }
    };
    let filtered = Rc::new([
        registry::filter_pages(view.tools_pages, "tools", size, keep("name", Grant::tool)),
        registry::filter_pages(
            view.prompts_pages,
            "prompts",
            size,
            keep("name", Grant::prompt),
        ),
        registry::filter_pages(
            view.resources_pages,
            "resources",
            size,
            keep("uri", Grant::resource),
        ),
        registry::filter_pages(
            view.templates_pages,
            "resourceTemplates",
            size,
            keep("uriTemplate", Grant::resource),
        ),
    ]);
    cache.1.insert(key, filtered.clone());
    filtered
}
