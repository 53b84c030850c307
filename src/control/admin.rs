//! The admin API: JSON over HTTP on its own listener, served by the control plane.
//!
//! `GET /healthz` and `GET /ready` answer anyone (probes); everything under `/admin/` needs
//! `Authorization: Bearer <admin token>`, and without a configured token it is refused. Writes
//! go to the registry store and take effect through a reload (a new snapshot), which the
//! answer waits for; the workers see them on their next request, with no lock and no failed
//! call. The token manages the registry; it runs no command and reads no environment
//! variable or file that the config file did not name ([`crate::config::admin_entry`]). The routes are listed
//! once in [`ROUTES`], which both the router and the OpenAPI document are checked against.
//!
//! Never on a client's request path; it may block briefly on the store.

use std::{rc::Rc, sync::Arc};

use bytes::{Bytes, BytesMut};
use monoio::{
    io::AsyncWriteRentExt,
    net::{TcpListener, TcpStream},
};
use serde_json::{json, Value};

use std::time::Duration;

use super::source::Source;
use crate::{
    registry::Snapshot,
    state::{ControlMsg, Shared},
    store::{Kind, Store},
    transport::http::{self as codec, BodyKind, Limits, RequestHead},
};

/// Every admin route: method and path (`{name}` and `{id}` are path parameters).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/admin/openapi.json"),
    ("GET", "/admin/upstreams"),
    ("POST", "/admin/upstreams"),
    ("DELETE", "/admin/upstreams/{name}"),
    ("GET", "/admin/servers"),
    ("POST", "/admin/servers"),
    ("DELETE", "/admin/servers/{name}"),
    ("GET", "/admin/tools"),
    ("PUT", "/admin/tools/{name}"),
    ("GET", "/admin/sessions"),
    ("GET", "/admin/stats"),
    ("DELETE", "/admin/sessions/{id}"),
    ("POST", "/admin/reload"),
    ("GET", "/admin/keys"),
    ("POST", "/admin/keys"),
    ("DELETE", "/admin/keys/{id}"),
    ("GET", "/admin/guard"),
    ("GET", "/admin/guard/pins"),
    ("POST", "/admin/guard/pins/approve"),
];

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("admin/openapi.json");

/// Largest admin request body, bytes.
const MAX_BODY: usize = 1 << 20;

/// How long a write waits for the control plane to apply it before answering 202.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// How long `DELETE /admin/upstreams/{name}` waits for a stdio child to be killed and reaped.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What the admin API works with; all of it the control plane's.
pub struct Context {
    /// State shared with the workers.
    pub shared: Arc<Shared>,
    /// The registry store.
    pub store: Rc<dyn Store>,
    /// The control plane's inbox.
    pub control: flume::Sender<ControlMsg>,
    /// Where the configuration comes from: a new entry is validated against what the
    /// reload after it will load.
    pub source: Rc<Source>,
}

/// Serves the admin listener until the control plane stops, i.e. through a drain too:
/// `/ready` answers 503 from the moment shutdown starts.
pub async fn serve(listener: TcpListener, ctx: Context) {
    let ctx = Rc::new(ctx);
    loop {
        match monoio::time::timeout(std::time::Duration::from_millis(500), listener.accept()).await
        {
            Ok(Ok((conn, _))) => {
                monoio::spawn(connection(conn, ctx.clone()));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "admin accept failed");
                monoio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(_) => {}
        }
    }
}

struct Answer {
    status: u16,
    body: Value,
    /// A plain-text body instead of JSON (Prometheus).
    text: Option<String>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        text: None,
    }
}

fn error(status: u16, message: impl Into<String>) -> Answer {
    answer(status, json!({ "error": message.into() }))
}

async fn connection(mut conn: TcpStream, ctx: Rc<Context>) {
    let limits = Limits {
        max_header_bytes: 16 << 10,
        max_body_bytes: MAX_BODY,
    };
    let mut buf = BytesMut::with_capacity(8 << 10);
    loop {
        let head = loop {
            match codec::parse_request_head(&buf, &limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    let _ = write(&mut conn, error(e.status(), format!("{e:?}")), false).await;
                    return;
                }
            }
            match monoio::time::timeout(
                std::time::Duration::from_secs(30),
                crate::net::Stream::read_more(&mut conn, &mut buf),
            )
            .await
            {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        };
        // The MCP endpoint's Host rule (DNS rebinding), judged by this listener's address.
        let loopback = ctx
            .shared
            .config
            .admin
            .listen
            .is_none_or(|a| a.ip().is_loopback());
        let hosts = &ctx.shared.config.gateway.allowed_hosts;
        if !codec::host_allowed(codec::request_host(&head), loopback, hosts) {
            let _ = write(&mut conn, error(403, "Forbidden: Host not allowed"), false).await;
            return;
        }
        let _ = buf.split_to(head.head_len);
        let n = match head.body {
            BodyKind::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
            BodyKind::Empty => 0,
            _ => {
                let _ = write(
                    &mut conn,
                    error(411, "a Content-Length body is required"),
                    false,
                )
                .await;
                return;
            }
        };
        while buf.len() < n {
            match monoio::time::timeout(
                std::time::Duration::from_secs(30),
                crate::net::Stream::read_more(&mut conn, &mut buf),
            )
            .await
            {
                Ok(Ok(k)) if k > 0 => {}
                _ => return,
            }
        }
        let body = buf.split_to(n).freeze();
        let a = route(&head, &body, &ctx).await;
        if write(&mut conn, a, head.keep_alive).await.is_err() || !head.keep_alive {
            return;
        }
    }
}

async fn write(conn: &mut TcpStream, a: Answer, keep_alive: bool) -> std::io::Result<()> {
    let (ct, body): (&[u8], Vec<u8>) = match a.text {
        Some(t) => (b"text/plain; version=0.0.4", t.into_bytes()),
        None => (
            b"application/json",
            serde_json::to_vec_pretty(&a.body).unwrap_or_default(),
        ),
    };
    let mut out = BytesMut::with_capacity(body.len() + 128);
    codec::write_response_head(
        &mut out,
        a.status,
        &[("Content-Type", ct)],
        Some(body.len()),
        keep_alive,
    );
    out.extend_from_slice(&body);
    let (r, _) = conn.write_all(out.freeze()).await;
    r.map(|_| ())
}

fn authorized(head: &RequestHead, shared: &Shared) -> Result<(), Answer> {
    let Some(token) = shared.config.admin.token.as_deref() else {
        return Err(error(
            401,
            "the admin API needs a token: set admin.token or MCPGW_ADMIN_TOKEN",
        ));
    };
    let given = head
        .header_str("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant-time comparison: the token is a secret.
    let ok = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        Err(error(401, "missing or wrong admin token"))
    }
}

/// Answers one request: the open probes first, then, with the admin token, `/admin/*`.
async fn route(head: &RequestHead, body: &Bytes, ctx: &Context) -> Answer {
    let (shared, store, control) = (&*ctx.shared, &*ctx.store, &ctx.control);
    let path = head.path();
    let method = head.method();
    if let Some(a) = probe(method, path, shared) {
        return a;
    }
    if !path.starts_with("/admin/") {
        return error(404, "not found");
    }
    if let Err(a) = authorized(head, shared) {
        return a;
    }
    let snap = shared.snapshot.load_full();
    match (method, path) {
        ("GET", "/admin/openapi.json") => {
            answer(200, serde_json::from_str(OPENAPI).unwrap_or(Value::Null))
        }
        ("GET", "/admin/stats") => answer(200, shared.metrics.stats_json()),
        ("GET", "/admin/upstreams") => list_upstreams(&snap, store),
        ("POST", "/admin/upstreams") => add(Kind::Upstream, body, ctx).await,
        ("POST", "/admin/servers") => add(Kind::Server, body, ctx).await,
        ("GET", "/admin/servers") => list_servers(&snap, store),
        ("GET", "/admin/tools") => list_tools(&snap, store),
        ("PUT", p) if p.starts_with("/admin/tools/") => {
            switch_tool(&p["/admin/tools/".len()..], body, &snap, ctx).await
        }
        ("GET", "/admin/guard") => guard_report(&snap),
        ("GET", "/admin/guard/pins") => list_pins(store),
        ("POST", "/admin/guard/pins/approve") => approve_pin(body, shared, store, control),
        ("GET", "/admin/sessions") => list_sessions(shared),
        ("GET", "/admin/keys") => list_keys(shared, store),
        ("POST", "/admin/keys") => create_key(body, shared, store, control),
        ("DELETE", p) if p.starts_with("/admin/keys/") => {
            revoke_key(&p["/admin/keys/".len()..], shared, store, control).await
        }
        ("POST", "/admin/reload") => {
            let _ = control.send(ControlMsg::Reload(Vec::new()));
            answer(202, json!({ "reload": "requested" }))
        }
        ("DELETE", p) if p.starts_with("/admin/upstreams/") => {
            remove_upstream(&p["/admin/upstreams/".len()..], &snap, ctx).await
        }
        ("DELETE", p) if p.starts_with("/admin/servers/") => {
            remove_server(&p["/admin/servers/".len()..], &snap, ctx).await
        }
        ("DELETE", p) if p.starts_with("/admin/sessions/") => {
            end_session(&p["/admin/sessions/".len()..], shared)
        }
        _ => error(404, "not found"),
    }
}

// === probes and metrics ===

/// The routes open to anyone (`/healthz`, `/ready`, `/metrics`); `None` for any other.
fn probe(method: &str, path: &str, shared: &Shared) -> Option<Answer> {
    match (method, path) {
        ("GET", "/healthz") => Some(answer(200, json!({ "status": "ok" }))),
        ("GET", "/metrics") => Some(Answer {
            status: 200,
            body: Value::Null,
            text: Some(shared.metrics.prometheus(&gauges(shared))),
        }),
        ("GET", "/ready") => {
            let ready = shared.snapshot.load().generation > 0 && !shared.stopping();
            Some(answer(
                if ready { 200 } else { 503 },
                json!({ "ready": ready }),
            ))
        }
        _ => None,
    }
}

// === upstreams ===

/// Names of the entries of `kind` the store holds (added through this API); none if it
/// cannot be read.
fn stored_names(store: &dyn Store, kind: Kind) -> std::collections::HashSet<String> {
    store
        .entries(kind)
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// `GET /admin/upstreams`.
fn list_upstreams(snap: &Snapshot, store: &dyn Store) -> Answer {
    let stored = stored_names(store, Kind::Upstream);
    let list: Vec<Value> = snap
        .upstreams
        .iter()
        .map(|u| {
            let tools = snap.tools.values().filter(|t| snap.upstream(t.upstream).is_some_and(|x| Arc::ptr_eq(x, u))).count();
            let shown = u.shown();
            let (transport, up) = (shown.transport, shown.up);
            let (health, since) = u.health.state();
            let (headers, auth) = (shown.headers, shown.auth);
            json!({
                "name": u.name,
                "transport": transport,
                "up": up,
                "health": health.as_str(),
                "health_since_ms": since,
                "breaker": u.breaker.state().as_str(),
                "retries": u.retries_total.load(std::sync::atomic::Ordering::Relaxed),
                "tools": tools,
                "session": if u.mode == crate::upstream::SessionMode::Shared { "shared" } else { "per-client" },
                "source": if stored.contains(&*u.name) { "admin" } else { "config" },
                "headers": headers,
                "auth": auth,
                "replicas": u.replicas_json(),
            })
        })
        .collect();
    answer(200, json!({ "upstreams": list }))
}

/// `DELETE /admin/upstreams/{name}`: a stdio child is stopped before the answer.
async fn remove_upstream(name: &str, snap: &Snapshot, ctx: &Context) -> Answer {
    let (shared, store) = (&*ctx.shared, &*ctx.store);
    // A stored entry left out of the running set (the admin rules or the address
    // policy refused it) can be removed too.
    let stored = || {
        store
            .entries(Kind::Upstream)
            .is_ok_and(|e| e.iter().any(|(n, _)| n == name))
    };
    let up = snap.by_name.get(name).and_then(|r| snap.upstream(*r));
    if up.is_none() && !stored() {
        return error(404, format!("no upstream {name:?}"));
    };
    if let Err(e) = store.remove(Kind::Upstream, name) {
        return error(500, format!("store: {e:#}"));
    }
    tracing::info!(upstream = name, "upstream removed through the admin API");
    audit_change(shared, "remove", "upstream", name);
    // A child is killed and reaped before the answer: nothing of it runs after a 2xx.
    if let Some(u) = up {
        if !u.stop_child(STOP_WAIT).await {
            return error(
                500,
                format!("upstream {name:?} is removed, but its child process did not stop within {} s; it is killed once its supervisor's pending write to it fails", STOP_WAIT.as_secs()),
            );
        }
    }
    applied(&ctx.control, 200, json!({ "removed": name })).await
}

// === virtual servers ===

/// `GET /admin/servers`, sorted by name.
fn list_servers(snap: &Snapshot, store: &dyn Store) -> Answer {
    let stored = stored_names(store, Kind::Server);
    let mut list: Vec<Value> = snap
        .servers
        .iter()
        .map(|(name, v)| {
            let mut tools: Vec<&String> = v.tools.keys().collect();
            tools.sort();
            json!({
                "name": name,
                "path": format!("/servers/{name}/mcp"),
                "tools": tools,
                "source": if stored.contains(name) { "admin" } else { "config" },
            })
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    answer(200, json!({ "servers": list }))
}

/// `DELETE /admin/servers/{name}`.
async fn remove_server(name: &str, snap: &Snapshot, ctx: &Context) -> Answer {
    if !snap.servers.contains_key(name) {
        return error(404, format!("no server {name:?}"));
    }
    match ctx.store.remove(Kind::Server, name) {
        Ok(()) => {
            tracing::info!(
                server = name,
                "virtual server removed through the admin API"
            );
            audit_change(&ctx.shared, "remove", "server", name);
            applied(&ctx.control, 200, json!({ "removed": name })).await
        }
        Err(e) => error(500, format!("store: {e:#}")),
    }
}

// === tools ===

/// `GET /admin/tools`: the published tools, then the disabled ones, sorted by name.
fn list_tools(snap: &Snapshot, store: &dyn Store) -> Answer {
    let mut list: Vec<Value> = snap
        .tools
        .iter()
        .map(|(name, t)| {
            let up = snap.upstream(t.upstream);
            json!({
                "name": name,
                "upstream": up.map(|u| &*u.name),
                "health": up.map(|u| u.health.state().0.as_str()),
                "enabled": true,
            })
        })
        .collect();
    for name in store.disabled_tools().unwrap_or_default() {
        list.push(json!({ "name": name, "upstream": null, "health": null, "enabled": false }));
    }
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    answer(200, json!({ "tools": list }))
}

/// `PUT /admin/tools/{name}` with `{"enabled": bool}`; a no-op answers 200 without a reload.
async fn switch_tool(name: &str, body: &Bytes, snap: &Snapshot, ctx: &Context) -> Answer {
    let enabled = match serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("enabled")?.as_bool())
    {
        Some(e) => e,
        None => return error(400, "body: {\"enabled\": true|false} is required"),
    };
    if enabled == snap.tools.contains_key(name) {
        return answer(200, json!({ "name": name, "enabled": enabled }));
    }
    if !enabled && !snap.tools.contains_key(name) {
        return error(404, format!("no tool {name:?}"));
    }
    match ctx.store.set_tool_enabled(name, enabled) {
        Ok(()) => {
            tracing::info!(tool = name, enabled, "tool switched through the admin API");
            audit_change(
                &ctx.shared,
                if enabled { "enable" } else { "disable" },
                "tool",
                name,
            );
            applied(
                &ctx.control,
                200,
                json!({ "name": name, "enabled": enabled }),
            )
            .await
        }
        Err(e) => error(500, format!("store: {e:#}")),
    }
}

// === guard ===

/// `GET /admin/guard`: the rules and the last catalog scan.
fn guard_report(snap: &Snapshot) -> Answer {
    let r = &snap.guard_report;
    answer(
        200,
        json!({
            "rules_version": crate::guard::RULES_VERSION,
            "rules": snap.guard.scanner.rules().len(),
            "scanned": r.scanned,
            "findings": r.findings,
            "hidden": r.hidden,
            "blocked": r.blocked.iter().map(|(u, why)| json!({"upstream": u, "rules": why})).collect::<Vec<_>>(),
            "changed": r.changed.iter().map(|(u, t)| json!({"upstream": u, "tool": t})).collect::<Vec<_>>(),
        }),
    )
}

/// `GET /admin/guard/pins`.
fn list_pins(store: &dyn Store) -> Answer {
    match store.pins() {
        Ok(pins) => answer(
            200,
            json!({ "pins": pins.iter().map(pin_json).collect::<Vec<_>>() }),
        ),
        Err(e) => error(500, format!("store: {e:#}")),
    }
}

// === sessions ===

/// `GET /admin/sessions`.
fn list_sessions(shared: &Shared) -> Answer {
    let list: Vec<Value> = shared
        .sessions
        .all()
        .iter()
        .map(|s| json!({ "id": s.id.as_str(), "version": s.version, "server": s.server, "upstream_sessions": s.upstreams.len(), "in_flight": s.in_flight.len(), "server_requests": s.server_requests.len() }))
        .collect();
    answer(200, json!({ "sessions": list }))
}

/// `DELETE /admin/sessions/{id}`.
fn end_session(id: &str, shared: &Shared) -> Answer {
    match crate::session::SessionId::parse(id.as_bytes()).and_then(|id| shared.sessions.remove(&id))
    {
        Some(_) => answer(200, json!({ "ended": id })),
        None => error(404, "no such session"),
    }
}

// === writes ===

/// Has the control plane apply what the store now holds, and answers `status` with `body`
/// (plus `"applied": true`) once the new snapshot is live. A control plane still busy after
/// [`APPLY_WAIT`] gets 202 (`"applied": false`: stored, live once its current step ends); a
/// configuration it rejects, 500 with why (the change stays stored).
async fn applied(control: &flume::Sender<ControlMsg>, status: u16, mut body: Value) -> Answer {
    let (tx, rx) = flume::bounded(1);
    if control.send(ControlMsg::Reload(vec![tx])).is_err() {
        return error(503, "the control plane is stopping");
    }
    match monoio::time::timeout(APPLY_WAIT, rx.recv_async()).await {
        Ok(Ok(Ok(()))) => {
            body["applied"] = json!(true);
            answer(status, body)
        }
        Ok(Ok(Err(why))) => error(
            500,
            format!("stored, but the configuration with it does not load (the running one is kept): {why}"),
        ),
        Ok(Err(_)) => error(503, "the control plane is stopping"),
        Err(_) => {
            body["applied"] = json!(false);
            body["note"] = json!(format!(
                "stored; the control plane is busy and applies it when its current step ends (not within {} s)",
                APPLY_WAIT.as_secs()
            ));
            answer(202, body)
        }
    }
}

/// Records an admin change in the audit log.
fn audit_change(shared: &Shared, action: &str, kind: &str, name: &str) {
    if let Some(a) = &shared.audit {
        a.record(json!({ "event": "admin_change", "action": action, "kind": kind, "name": name }));
    }
}

/// A pin as the admin API shows it: never the definitions themselves unless pending (then
/// as a diff against the approved one).
fn pin_json(p: &crate::store::Pin) -> Value {
    let pending = p.pending.as_ref().map(|(hash, def, at)| {
        let before: Value = serde_json::from_str(&p.definition).unwrap_or(Value::Null);
        let after: Value = serde_json::from_str(def).unwrap_or(Value::Null);
        json!({
            "hash": hash,
            "seen_at_ms": at,
            "diff": crate::guard::catalog::diff(&before, &after),
        })
    });
    json!({
        "upstream": p.upstream,
        "tool": p.tool,
        "hash": p.hash,
        "approved_at_ms": p.approved_at,
        "approved_by": p.approved_by,
        "pending": pending,
    })
}

/// `POST /admin/guard/pins/approve` `{"upstream", "tool", "hash", "by"?}`.
fn approve_pin(
    body: &[u8],
    shared: &Shared,
    store: &dyn Store,
    control: &flume::Sender<ControlMsg>,
) -> Answer {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    let (Some(upstream), Some(tool), Some(hash)) =
        (field("upstream"), field("tool"), field("hash"))
    else {
        return error(
            400,
            "body: {\"upstream\", \"tool\", \"hash\"} are required (strings; see GET /admin/guard/pins)",
        );
    };
    let by = field("by").unwrap_or("admin");
    match store.approve_pin(upstream, tool, hash, by) {
        Ok(crate::store::Approval::Approved) => {
            tracing::info!(upstream, tool, hash, by, "tool definition approved");
            if let Some(a) = &shared.audit {
                a.record(json!({ "event": "admin_change", "action": "approve", "kind": "tool_pin", "name": format!("{upstream}/{tool}"), "hash": hash, "by": by }));
            }
            let _ = control.send(ControlMsg::Refresh);
            answer(200, json!({ "upstream": upstream, "tool": tool, "hash": hash, "approved": true }))
        }
        Ok(crate::store::Approval::NotFound) => error(404, format!("no pin for tool {tool:?} of upstream {upstream:?}")),
        Ok(crate::store::Approval::NothingPending) => error(404, format!("{upstream}/{tool}: no change is pending")),
        Ok(crate::store::Approval::HashMismatch(now)) => error(
            409,
            format!("{upstream}/{tool}: the pending definition is {now}, not {hash}: it changed again; review it and approve that hash"),
        ),
        Err(e) => error(500, format!("store: {e:#}")),
    }
}

/// Gauges read at scrape time: sessions, upstream health, catalog generation.
fn gauges(shared: &Shared) -> String {
    use std::fmt::Write as _;
    let snap = shared.snapshot.load();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP mcpgw_sessions Client sessions open.\n# TYPE mcpgw_sessions gauge\nmcpgw_sessions {}", shared.sessions.len());
    let _ = writeln!(out, "# HELP mcpgw_upstream_up 1 unless the upstream's health checks say down.\n# TYPE mcpgw_upstream_up gauge");
    for u in &snap.upstreams {
        let up = u.health.state().0 != crate::upstream::HealthState::Down;
        let _ = writeln!(
            out,
            "mcpgw_upstream_up{{upstream=\"{}\"}} {}",
            u.name,
            u8::from(up)
        );
    }
    let _ = writeln!(out, "# HELP mcpgw_upstream_breaker_state Circuit breaker: 0 closed, 1 half-open, 2 open.\n# TYPE mcpgw_upstream_breaker_state gauge");
    for u in &snap.upstreams {
        let _ = writeln!(
            out,
            "mcpgw_upstream_breaker_state{{upstream=\"{}\"}} {}",
            u.name,
            u.breaker.state().gauge()
        );
    }
    let _ = writeln!(out, "# HELP mcpgw_upstream_breaker_opened_total Times the circuit breaker opened.\n# TYPE mcpgw_upstream_breaker_opened_total counter");
    for u in &snap.upstreams {
        let _ = writeln!(
            out,
            "mcpgw_upstream_breaker_opened_total{{upstream=\"{}\"}} {}",
            u.name,
            u.breaker.opened_total()
        );
    }
    let _ = writeln!(out, "# HELP mcpgw_upstream_retries_total Calls sent again after a failure.\n# TYPE mcpgw_upstream_retries_total counter");
    for u in &snap.upstreams {
        let _ = writeln!(
            out,
            "mcpgw_upstream_retries_total{{upstream=\"{}\"}} {}",
            u.name,
            u.retries_total.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    crate::upstream::write_replica_metrics(&mut out, &snap.upstreams);
    if let Some(a) = &shared.audit {
        let _ = writeln!(out, "# HELP mcpgw_audit_dropped_total Audit events dropped because the writer fell behind.\n# TYPE mcpgw_audit_dropped_total counter\nmcpgw_audit_dropped_total {}", a.dropped());
    }
    let (mut in_flight, mut pending, mut streams) = (0, 0, 0);
    for sess in shared.sessions.all() {
        in_flight += sess.in_flight.len();
        pending += sess.server_requests.len();
        streams += usize::from(
            sess.outbox
                .load()
                .as_ref()
                .is_some_and(|o| !o.alive.is_disconnected()),
        );
    }
    let _ = writeln!(out, "# HELP mcpgw_calls_in_flight Client calls waiting on upstreams.\n# TYPE mcpgw_calls_in_flight gauge\nmcpgw_calls_in_flight {in_flight}");
    let _ = writeln!(out, "# HELP mcpgw_server_requests_pending Upstream requests waiting for a client's answer.\n# TYPE mcpgw_server_requests_pending gauge\nmcpgw_server_requests_pending {pending}");
    let _ = writeln!(out, "# HELP mcpgw_get_streams Sessions with a GET stream open.\n# TYPE mcpgw_get_streams gauge\nmcpgw_get_streams {streams}");
    let _ = writeln!(out, "# HELP mcpgw_listen_streams Open subscriptions/listen streams (MCP 2026-07-28 clients).\n# TYPE mcpgw_listen_streams gauge\nmcpgw_listen_streams {}", shared.listeners.len());
    shared.limits.prometheus(&mut out);
    shared.guard.prometheus(
        &snap.guard_report,
        snap.guard_report.changed.len(),
        &mut out,
    );
    let _ = writeln!(out, "# HELP mcpgw_catalog_generation Generation of the published catalog.\n# TYPE mcpgw_catalog_generation gauge\nmcpgw_catalog_generation {}", snap.generation);
    out
}

/// `POST /admin/upstreams` and `POST /admin/servers`: the body is one entry, with the fields
/// of a config file's `[[upstream]]` or `[[server]]` table. An upstream is first held to the
/// admin rules ([`crate::config::admin_entry`]: stdio commands the file allows, no loader
/// variables, no host paths, literal secrets), its secrets are encrypted, and the entry is
/// validated as part of the configuration the reload after it will load (the file, the
/// store and it; errors name the field). Stored, then answered once live.
async fn add(kind: Kind, body: &Bytes, ctx: &Context) -> Answer {
    let (shared, store) = (&*ctx.shared, &*ctx.store);
    let key = kind.key();
    let v: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error(400, "the body must be a JSON object"),
        Err(e) => return error(400, format!("invalid JSON: {e}")),
    };
    let Some(name) = v.get("name").and_then(Value::as_str).map(str::to_string) else {
        return error(400, format!("{key}[0].name: required"));
    };
    let snap = shared.snapshot.load();
    let exists = match kind {
        Kind::Upstream => snap.by_name.contains_key(name.as_str()),
        Kind::Server => snap.servers.contains_key(&name),
    };
    if exists {
        return error(409, format!("{key}[0].name: {name:?} exists"));
    }
    let as_table = |v: &Value| {
        toml::Table::try_from(v)
            .map_err(|e| error(400, format!("cannot express it as configuration: {e}")))
    };
    let mut v = v;
    if kind == Kind::Upstream {
        let table = match as_table(&v) {
            Ok(t) => t,
            Err(a) => return a,
        };
        let rules = crate::config::admin_entry::check_upstream(
            &table,
            &shared.config.admin.stdio_commands,
            crate::config::admin_entry::Origin::Request,
        );
        if let Err(refused) = rules {
            tracing::warn!(%name, %refused, "admin API: upstream refused");
            return error(refused.status, refused.to_string());
        }
        if let Err(a) = seal_secrets(&mut v, shared.config.secret_key.as_deref()) {
            return a;
        }
    }
    let table = match as_table(&v) {
        Ok(t) => t,
        Err(a) => return a,
    };
    let spec = match toml::to_string(&table) {
        Ok(s) => s,
        Err(e) => return error(400, format!("cannot express it as configuration: {e}")),
    };
    if let Err(e) = ctx.source.load_with(store, (kind, &name, &spec)) {
        return error(400, format!("{e:#}"));
    }
    if let Err(e) = store.put(kind, &name, &spec) {
        return error(500, format!("store: {e:#}"));
    }
    tracing::info!(kind = key, %name, "added through the admin API");
    audit_change(shared, "add", key, &name);
    applied(&ctx.control, 201, json!({ "added": name })).await
}

// === upstream secrets ===

/// Encrypts, in place, the secret values of an upstream added through the API (`headers`
/// values, `auth.bearer`, `auth.value`, `auth.client_secret`), so that the store never holds
/// them in plain text. They are literal: `env:` and `enc:` values were refused before (see
/// [`crate::config::admin_entry`]). A value without `MCPGW_SECRET_KEY` is refused.
fn seal_secrets(v: &mut Value, key: Option<&crate::secret::SecretKey>) -> Result<(), Answer> {
    let seal = |field: String, s: &mut String| -> Result<(), Answer> {
        let Some(key) = key else {
            return Err(error(
                400,
                format!(
                    "upstream[0].{field}: secret values are stored encrypted, and this gateway has no {k}: start it with {k} set (`mcpgw secret new-key` makes one), or set this upstream in the config file",
                    k = crate::secret::KEY_ENV
                ),
            ));
        };
        match key.encrypt(s) {
            Ok(sealed) => {
                *s = sealed;
                Ok(())
            }
            Err(e) => Err(error(500, format!("upstream[0].{field}: {e}"))),
        }
    };
    if let Some(Value::Object(h)) = v.get_mut("headers") {
        for (k, val) in h.iter_mut() {
            if let Value::String(s) = val {
                seal(format!("headers.{k}"), s)?;
            }
        }
    }
    if let Some(Value::Object(a)) = v.get_mut("auth") {
        for f in ["bearer", "value", "client_secret"] {
            if let Some(Value::String(s)) = a.get_mut(f) {
                seal(format!("auth.{f}"), s)?;
            }
        }
    }
    Ok(())
}

// === API keys ===

/// `GET /admin/keys`: keys issued here (`source: admin`, from the store) and those of the
/// config file (`source: config`); `active` says whether the running configuration accepts
/// it (a stored key is inactive until the reload after its creation, or when its role is
/// gone). Never a hash or a key. A stored key whose id the file also defines is not listed:
/// the file's is the one in force.
fn list_keys(shared: &Shared, store: &dyn Store) -> Answer {
    let stored = match store.api_keys() {
        Ok(k) => k,
        Err(e) => return error(500, format!("store: {e:#}")),
    };
    let snap = shared.snapshot.load();
    let auth = &snap.auth;
    let in_force = |id: &str| auth.api_keys().find(|(k, ..)| *k == id);
    let mut listed = std::collections::HashSet::new();
    let mut list = Vec::new();
    for k in &stored {
        let active = match in_force(&k.id) {
            Some((_, h, _)) if h.to_string() != k.hash => continue,
            found => found.is_some(),
        };
        listed.insert(k.id.as_str());
        list.push(json!({
            "id": k.id, "name": k.name, "roles": k.roles, "team": k.team,
            "created_ms": k.created_ms, "source": "admin", "active": active,
        }));
    }
    for (id, _, p) in auth.api_keys().filter(|(id, ..)| !listed.contains(id)) {
        list.push(json!({
            "id": id, "name": &*p.name, "roles": p.grant.roles, "team": p.team.as_deref(),
            "created_ms": null, "source": "config", "active": true,
        }));
    }
    list.sort_by(|a, b| {
        (a["name"].as_str(), a["id"].as_str()).cmp(&(b["name"].as_str(), b["id"].as_str()))
    });
    answer(200, json!({ "keys": list }))
}

/// `POST /admin/keys` `{"name", "roles": [], "team"?}`: issues a key, stores only its
/// salted hash, and answers the key itself: the one time it is ever shown.
fn create_key(
    body: &Bytes,
    shared: &Shared,
    store: &dyn Store,
    control: &flume::Sender<ControlMsg>,
) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewKey {
        name: String,
        #[serde(default)]
        roles: Vec<String>,
        team: Option<String>,
    }
    let req: NewKey = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(400, format!("body: {e}")),
    };
    let fine = |s: &str| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control);
    if !fine(&req.name) {
        return error(400, "name: 1 to 128 characters, no control characters");
    }
    if req.team.as_deref().is_some_and(|t| !fine(t)) {
        return error(400, "team: 1 to 128 characters, no control characters");
    }
    let snap = shared.snapshot.load();
    let auth = &snap.auth;
    if let Some(r) = req.roles.iter().find(|r| !auth.roles.contains(r)) {
        return error(
            400,
            format!("roles: unknown role {r:?} (define it in [[role]])"),
        );
    }
    let taken = |id: &str| {
        auth.api_keys().any(|(k, ..)| k == id)
            || store
                .api_keys()
                .is_ok_and(|ks| ks.iter().any(|k| k.id == id))
    };
    let issued = (0..8).find_map(|_| {
        crate::auth::credentials::new_key()
            .ok()
            .filter(|k| !taken(&k.id))
    });
    let Some(key) = issued else {
        return error(500, "could not issue a key");
    };
    let created_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let stored = crate::store::StoredKey {
        id: key.id.clone(),
        name: req.name,
        hash: key.hash.to_string(),
        roles: req.roles,
        team: req.team,
        created_ms,
    };
    if let Err(e) = store.put_api_key(&stored) {
        return error(500, format!("store: {e:#}"));
    }
    // Not waited for: the answer carries the key, shown this once whatever the reload does.
    let _ = control.send(ControlMsg::Reload(Vec::new()));
    tracing::info!(id = %stored.id, name = %stored.name, "API key issued through the admin API");
    audit_change(shared, "add", "api_key", &stored.id);
    answer(
        201,
        json!({
            "id": stored.id, "name": stored.name, "roles": stored.roles, "team": stored.team,
            "created_ms": created_ms, "key": key.key,
        }),
    )
}

/// `DELETE /admin/keys/{id}`: revokes a key issued here; it stops working once the reload
/// it triggers is applied, which the answer waits for. Config-file keys are removed there.
async fn revoke_key(
    id: &str,
    shared: &Shared,
    store: &dyn Store,
    control: &flume::Sender<ControlMsg>,
) -> Answer {
    match store.remove_api_key(id) {
        Err(e) => error(500, format!("store: {e:#}")),
        Ok(true) => {
            tracing::info!(id, "API key revoked through the admin API");
            audit_change(shared, "revoke", "api_key", id);
            applied(control, 200, json!({ "revoked": id })).await
        }
        Ok(false)
            if shared
                .snapshot
                .load()
                .auth
                .api_keys()
                .any(|(k, ..)| k == id) =>
        {
            error(
                409,
                format!("API key {id:?} is defined in the config file: remove it there"),
            )
        }
        Ok(false) => error(404, format!("no API key {id:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document lists exactly the routes the router serves.
    #[test]
    fn openapi_matches_routes() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true)
        );
    }
}
