//! The catalog: every upstream's tools, resources and prompts, merged and namespaced, held in
//! an immutable [`Snapshot`].
//!
//! The control plane fetches each upstream's lists ([`UpstreamCatalog`]) and builds a new
//! snapshot whenever one changes; workers load the current snapshot per request (`arc-swap`,
//! no lock) and answer list requests with its pre-serialized pages. Routing maps an exposed
//! name back to (upstream, original name). A snapshot is never modified after it is built.

pub mod names;

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::{
    text::glob_match,
    upstream::{Upstream, UpstreamRef},
};

/// Exposed names (tools, prompts) -> their targets. Looked up on every call by a name the
/// client sent: foldhash, seeded per process, as the session map (SipHash cost ~150
/// instructions per lookup of a short name).
pub type Names = HashMap<String, Target, foldhash::fast::RandomState>;

/// Where an exposed tool or prompt goes.
#[derive(Clone, Debug)]
pub struct Target {
    /// The owning upstream.
    pub upstream: UpstreamRef,
    /// The name clients call it by, shared with each call's record (no copy per call).
    pub exposed: Arc<str>,
    /// The original name as a JSON string token (quotes included), ready to splice.
    pub name_json: Bytes,
    /// Whether a call may be sent twice (a prompt; a tool annotated `readOnlyHint` or
    /// `idempotentHint`, or listed in the upstream's `idempotent_tools`).
    pub retry_safe: bool,
    /// How its calls are screened (`[[guard.screen]]`); `None`: passed through untouched.
    pub screen: Option<Arc<crate::guard::policy::Screen>>,
    /// The `Mcp-Param-*` headers its input schema declares (`x-mcp-header`), checked on
    /// 2026-07-28 clients' calls; empty for most tools.
    pub param_headers: crate::mcp::era::ParamHeaders,
}

pub use crate::mcp::UpstreamCatalog;

/// Pre-serialized pages of one list: each is the whole `result` object.
#[derive(Clone, Debug, Default)]
pub struct Pages(pub Vec<Bytes>);

/// The immutable view every worker serves from: the catalog and the policy requests are
/// served under, loaded once per request so that no request sees two that disagree.
#[derive(Clone)]
pub struct Snapshot {
    /// Increases with every new snapshot.
    pub generation: u64,
    /// Upstreams, indexed by [`UpstreamRef`].
    pub upstreams: Vec<Arc<Upstream>>,
    /// Upstream index by name.
    pub by_name: HashMap<Arc<str>, UpstreamRef>,
    /// Exposed tool name -> target.
    pub tools: Names,
    /// Exposed prompt name -> target.
    pub prompts: Names,
    /// Original resource URI -> upstream, for URIs listed by exactly one upstream (clients
    /// that read a URI they saw in a tool result rather than in our list).
    pub plain_uris: HashMap<String, UpstreamRef>,
    /// The one upstream whose names are not prefixed, if exactly one is: plain URIs that no
    /// upstream lists (e.g. expanded templates) go there.
    pub unprefixed: Option<UpstreamRef>,
    /// `tools/list` pages.
    pub tools_pages: Pages,
    /// `prompts/list` pages.
    pub prompts_pages: Pages,
    /// `resources/list` pages.
    pub resources_pages: Pages,
    /// `resources/templates/list` pages.
    pub templates_pages: Pages,
    /// The union of upstream capabilities the gateway can serve, as a JSON object.
    pub capabilities: Bytes,
    /// Separator used for names.
    pub separator: String,
    /// Virtual servers, by name.
    pub servers: HashMap<String, ServerView>,
    /// The guard policy this snapshot was built with (screening of names no list has).
    pub guard: Arc<crate::guard::policy::Policy>,
    /// What the catalog guard found and decided for this snapshot.
    pub guard_report: Arc<crate::guard::catalog::Report>,
    /// Per upstream (by [`UpstreamRef`]): blocked by the catalog guard (calls refused).
    pub blocked: Vec<bool>,
    /// Authentication, roles, rate limits and quotas.
    pub auth: Arc<crate::auth::Auth>,
}

/// A virtual server's part of the catalog: only what its bundle holds, renamed.
#[derive(Clone)]
pub struct ServerView {
    /// Shown tool name -> target.
    pub tools: Names,
    /// Shown prompt name -> target.
    pub prompts: Names,
    /// `tools/list` pages.
    pub tools_pages: Pages,
    /// `prompts/list` pages.
    pub prompts_pages: Pages,
    /// `resources/list` pages.
    pub resources_pages: Pages,
    /// `resources/templates/list` pages.
    pub templates_pages: Pages,
    /// URI globs a client of this server may read.
    pub uri_allow: Vec<String>,
}

/// What one endpoint serves: the whole catalog (`/mcp`) or a virtual server's bundle.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// Tool name -> target.
    pub tools: &'a Names,
    /// Prompt name -> target.
    pub prompts: &'a Names,
    /// `tools/list` pages.
    pub tools_pages: &'a Pages,
    /// `prompts/list` pages.
    pub prompts_pages: &'a Pages,
    /// `resources/list` pages.
    pub resources_pages: &'a Pages,
    /// `resources/templates/list` pages.
    pub templates_pages: &'a Pages,
    /// Where unknown names go (only on `/mcp`).
    pub unprefixed: Option<UpstreamRef>,
    /// Plain URIs' owners (only on `/mcp`).
    pub plain_uris: Option<&'a HashMap<String, UpstreamRef>>,
    /// URI globs allowed (virtual servers); `None`: all.
    pub uri_allow: Option<&'a [String]>,
}

impl View<'_> {
    /// Whether a client of this view may read `uri` (the gateway's form).
    pub fn uri_allowed(&self, uri: &str) -> bool {
        self.uri_allow
            .is_none_or(|globs| globs.iter().any(|g| glob_match(g, uri)))
    }
}

impl Snapshot {
    /// The view served at `/mcp` (`None`) or at `/servers/<name>/mcp`.
    pub fn view(&self, server: Option<&str>) -> Option<View<'_>> {
        match server {
            None => Some(View {
                tools: &self.tools,
                prompts: &self.prompts,
                tools_pages: &self.tools_pages,
                prompts_pages: &self.prompts_pages,
                resources_pages: &self.resources_pages,
                templates_pages: &self.templates_pages,
                unprefixed: self.unprefixed,
                plain_uris: Some(&self.plain_uris),
                uri_allow: None,
            }),
            Some(name) => self.servers.get(name).map(|s| View {
                tools: &s.tools,
                prompts: &s.prompts,
                tools_pages: &s.tools_pages,
                prompts_pages: &s.prompts_pages,
                resources_pages: &s.resources_pages,
                templates_pages: &s.templates_pages,
                unprefixed: None,
                plain_uris: None,
                uri_allow: Some(&s.uri_allow),
            }),
        }
    }

    /// The upstream behind `r`.
    pub fn upstream(&self, r: UpstreamRef) -> Option<&Arc<Upstream>> {
        self.upstreams.get(usize::from(r.0))
    }

    /// Whether the catalog guard blocked upstream `r`.
    pub fn is_blocked(&self, r: UpstreamRef) -> bool {
        self.blocked.get(usize::from(r.0)).copied().unwrap_or(false)
    }

    /// An empty snapshot (before the first build).
    pub fn empty(separator: &str, auth: Arc<crate::auth::Auth>) -> Self {
        let layout = Layout {
            servers: &[],
            disabled: &Default::default(),
            separator,
            page_size: 1000,
            auth,
        };
        build(0, vec![], &[], &layout, Guarded::default())
    }

    /// The same catalog under another policy (a reload's, published at once).
    pub fn with_auth(&self, auth: Arc<crate::auth::Auth>) -> Self {
        let mut next = self.clone();
        next.auth = auth;
        next
    }
}

/// The catalog guard's part of a snapshot.
#[derive(Default)]
pub struct Guarded {
    /// The policy (screening).
    pub policy: Arc<crate::guard::policy::Policy>,
    /// What the guard decided for the catalogs given to [`build`] (already applied to them).
    pub report: Arc<crate::guard::catalog::Report>,
}

/// How a snapshot is laid out, and the policy it serves under.
pub struct Layout<'a> {
    /// Virtual servers.
    pub servers: &'a [crate::config::VirtualServer],
    /// Tools switched off.
    pub disabled: &'a std::collections::HashSet<String>,
    /// Between an upstream's name and its tool's.
    pub separator: &'a str,
    /// Items per list page.
    pub page_size: usize,
    /// Authentication, roles, rate limits and quotas.
    pub auth: Arc<crate::auth::Auth>,
}

/// Builds a snapshot from the upstreams (config order) and their catalogs (`None` = down or
/// blocked, left out of the lists).
pub fn build(
    generation: u64,
    upstreams: Vec<Arc<Upstream>>,
    catalogs: &[Option<UpstreamCatalog>],
    layout: &Layout<'_>,
    guard: Guarded,
) -> Snapshot {
    let (servers, disabled, sep, page_size) = (
        layout.servers,
        layout.disabled,
        layout.separator,
        layout.page_size,
    );
    let unprefixed = unprefixed(&upstreams);
    let cx = MergeCx {
        sep,
        disabled,
        policy: &guard.policy,
    };
    let mut by_name = HashMap::new();
    let mut merged = Merged::default();
    for (i, up) in upstreams.iter().enumerate() {
        let Ok(idx) = u16::try_from(i) else { break };
        let r = UpstreamRef(idx);
        by_name.insert(up.name.clone(), r);
        if let Some(cat) = catalogs.get(i).and_then(Option::as_ref) {
            merged.add_upstream(&cx, up, r, cat);
        }
    }
    let capabilities = merged.caps.to_json(upstreams.is_empty());
    let views = ViewCx {
        policy: &guard.policy,
        upstreams: &upstreams,
        merged: &merged,
        page_size,
    };
    let servers = servers
        .iter()
        .map(|sv| (sv.name.clone(), views.server_view(sv)))
        .collect();
    let blocked = upstreams
        .iter()
        .map(|u| guard.report.blocked.iter().any(|(b, _)| **b == *u.name))
        .collect();
    let Merged {
        tools_out,
        prompts_out,
        resources_out,
        templates_out,
        tools,
        prompts,
        uri_owner,
        caps: _,
    } = merged;
    Snapshot {
        servers,
        generation,
        by_name,
        tools,
        prompts,
        unprefixed,
        plain_uris: uri_owner
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect(),
        tools_pages: paginate("tools", tools_out, page_size),
        prompts_pages: paginate("prompts", prompts_out, page_size),
        resources_pages: paginate("resources", resources_out, page_size),
        templates_pages: paginate("resourceTemplates", templates_out, page_size),
        capabilities,
        separator: sep.to_string(),
        blocked,
        upstreams,
        guard: guard.policy,
        guard_report: guard.report,
        auth: layout.auth.clone(),
    }
}

// === build steps ===

/// The one upstream whose names are not prefixed, if exactly one is.
fn unprefixed(upstreams: &[Arc<Upstream>]) -> Option<UpstreamRef> {
    let unprefixed: Vec<UpstreamRef> = upstreams
        .iter()
        .enumerate()
        .filter(|(_, u)| !u.prefix)
        .filter_map(|(i, _)| Some(UpstreamRef(u16::try_from(i).ok()?)))
        .collect();
    (unprefixed.len() == 1).then(|| unprefixed[0])
}

/// What merging every upstream's lists needs besides the lists.
struct MergeCx<'a> {
    sep: &'a str,
    /// Tools switched off by an operator (exposed names).
    disabled: &'a std::collections::HashSet<String>,
    policy: &'a crate::guard::policy::Policy,
}

/// Every upstream's lists merged under exposed names, in config order, not yet paginated.
#[derive(Default)]
struct Merged {
    tools_out: Vec<Value>,
    prompts_out: Vec<Value>,
    resources_out: Vec<Value>,
    templates_out: Vec<Value>,
    tools: Names,
    prompts: Names,
    /// Original resource URI -> its upstream; `None` when more than one lists it.
    uri_owner: HashMap<String, Option<UpstreamRef>>,
    caps: Caps,
}

/// Which capabilities some upstream has.
#[derive(Default)]
struct Caps {
    tools: bool,
    prompts: bool,
    resources: bool,
    completions: bool,
    subscribe: bool,
    logging: bool,
}

// === impl Caps ===

impl Caps {
    fn note(&mut self, c: &Map<String, Value>) {
        self.tools |= c.contains_key("tools");
        self.prompts |= c.contains_key("prompts");
        self.resources |= c.contains_key("resources");
        self.completions |= c.contains_key("completions");
        self.logging |= c.contains_key("logging");
        self.subscribe |= c
            .get("resources")
            .and_then(|r| r.get("subscribe"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }

    /// The capabilities the gateway announces. It sends list_changed itself whenever a new
    /// snapshot changes a list; with no upstream at all it still announces tools.
    fn to_json(&self, no_upstreams: bool) -> Bytes {
        let mut caps = Map::new();
        if self.tools || no_upstreams {
            caps.insert("tools".into(), json!({"listChanged": true}));
        }
        if self.prompts {
            caps.insert("prompts".into(), json!({"listChanged": true}));
        }
        if self.resources {
            caps.insert(
                "resources".into(),
                json!({"listChanged": true, "subscribe": self.subscribe}),
            );
        }
        if self.completions {
            caps.insert("completions".into(), json!({}));
        }
        if self.logging {
            caps.insert("logging".into(), json!({}));
        }
        Bytes::from(serde_json::to_vec(&Value::Object(caps)).unwrap_or_else(|_| b"{}".to_vec()))
    }
}

// === impl Merged ===

impl Merged {
    /// Adds one upstream's catalog: tools, prompts, resources, templates, in that order.
    fn add_upstream(
        &mut self,
        cx: &MergeCx<'_>,
        up: &Upstream,
        r: UpstreamRef,
        cat: &UpstreamCatalog,
    ) {
        self.caps.note(&cat.capabilities);
        self.add_named(cx, up, r, &cat.tools, true);
        self.add_named(cx, up, r, &cat.prompts, false);
        self.add_uris(up, r, &cat.resources, "uri");
        self.add_uris(up, r, &cat.templates, "uriTemplate");
    }

    /// Adds tools (`are_tools`) or prompts under their exposed names, with their targets.
    fn add_named(
        &mut self,
        cx: &MergeCx<'_>,
        up: &Upstream,
        r: UpstreamRef,
        items: &[Value],
        are_tools: bool,
    ) {
        let (out, map) = if are_tools {
            (&mut self.tools_out, &mut self.tools)
        } else {
            (&mut self.prompts_out, &mut self.prompts)
        };
        for item in items {
            let Some(orig) = item.get("name").and_then(Value::as_str) else {
                tracing::warn!(upstream = %up.name, "list item without a name skipped");
                continue;
            };
            let Some(exposed) = exposed_name(up, cx.sep, orig, map) else {
                continue;
            };
            if are_tools && cx.disabled.contains(&exposed) {
                // Switched off by an operator: in no list, not callable.
                continue;
            }
            let mut v = item.clone();
            v["name"] = Value::String(exposed.clone());
            out.push(v);
            let t = target(cx, up, r, item, orig, are_tools, &exposed);
            map.insert(exposed, t);
        }
    }

    /// Adds resources (`key` `uri`) or templates (`uriTemplate`), prefixed when `up` is.
    fn add_uris(&mut self, up: &Upstream, r: UpstreamRef, items: &[Value], key: &str) {
        let out = if key == "uri" {
            &mut self.resources_out
        } else {
            &mut self.templates_out
        };
        for item in items {
            let Some(orig) = item.get(key).and_then(Value::as_str) else {
                continue;
            };
            if key == "uri" {
                self.uri_owner
                    .entry(orig.to_string())
                    .and_modify(|o| *o = None)
                    .or_insert(Some(r));
            }
            let mut v = item.clone();
            if up.prefix {
                v[key] = Value::String(names::expose_uri(&up.name, orig));
            }
            out.push(v);
        }
    }
}

/// The exposed name of `orig`: prefixed (salted until free) when `up` is, else `orig`
/// itself; `None` (warned) when an unprefixed name is already taken.
fn exposed_name(up: &Upstream, sep: &str, orig: &str, map: &Names) -> Option<String> {
    if up.prefix {
        let mut salt = 0;
        loop {
            let n = names::expose(&up.name, sep, orig, salt);
            if !map.contains_key(&n) {
                return Some(n);
            }
            salt += 1;
        }
    } else if map.contains_key(orig) {
        tracing::warn!(upstream = %up.name, name = orig, "name already taken by another upstream; left out");
        None
    } else {
        Some(orig.to_string())
    }
}

/// Where calls of the tool or prompt `item` (originally `orig`) go.
fn target(
    cx: &MergeCx<'_>,
    up: &Upstream,
    r: UpstreamRef,
    item: &Value,
    orig: &str,
    are_tools: bool,
    exposed: &str,
) -> Target {
    Target {
        upstream: r,
        exposed: exposed.into(),
        name_json: Bytes::from(serde_json::to_vec(orig).unwrap_or_default()),
        retry_safe: !are_tools
            || ["readOnlyHint", "idempotentHint"].iter().any(|h| {
                item.get("annotations").and_then(|a| a.get(h)) == Some(&Value::Bool(true))
            })
            || up
                .retry
                .idempotent_tools
                .iter()
                .any(|g| glob_match(g, orig)),
        screen: if are_tools {
            cx.policy.screen(&up.name, orig, None)
        } else {
            None
        },
        param_headers: if are_tools {
            crate::mcp::era::param_headers(item)
        } else {
            Vec::new()
        },
    }
}

/// What building the virtual servers' views needs.
struct ViewCx<'a> {
    policy: &'a crate::guard::policy::Policy,
    upstreams: &'a [Arc<Upstream>],
    merged: &'a Merged,
    page_size: usize,
}

// === impl ViewCx ===

impl ViewCx<'_> {
    /// A virtual server's tools may be screened differently (`servers` selector).
    fn rescreen(&self, t: &Target, server: &str) -> Option<Arc<crate::guard::policy::Screen>> {
        if !self.policy.screens_calls() {
            return None;
        }
        let up = self.upstreams.get(usize::from(t.upstream.0))?;
        let orig: String = serde_json::from_slice(&t.name_json).ok()?;
        self.policy.screen(&up.name, &orig, Some(server))
    }

    /// Builds one virtual server's view from the merged (exposed) lists.
    fn server_view(&self, sv: &crate::config::VirtualServer) -> ServerView {
        let m = self.merged;
        let page_size = self.page_size;
        let pick = |items: &[Value], globs: &[String], map: &Names, tools: bool| {
            let mut out = Vec::new();
            let mut targets = Names::default();
            for item in items {
                let Some(name) = item.get("name").and_then(Value::as_str) else {
                    continue;
                };
                if !globs.iter().any(|g| glob_match(g, name)) {
                    continue;
                }
                let Some(t) = map.get(name) else { continue };
                let shown = sv
                    .rename
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| name.to_string());
                if targets.contains_key(&shown) {
                    tracing::warn!(server = %sv.name, name = %shown, "name shown twice in a virtual server; left out");
                    continue;
                }
                let mut v = item.clone();
                v["name"] = Value::String(shown.clone());
                if let Some(d) = sv.descriptions.get(&shown) {
                    v["description"] = Value::String(d.clone());
                }
                out.push(v);
                let mut t = t.clone();
                if tools {
                    t.screen = self.rescreen(&t, &sv.name);
                }
                targets.insert(shown, t);
            }
            (out, targets)
        };
        let (t_items, t_map) = pick(&m.tools_out, &sv.tools, &m.tools, true);
        let (p_items, p_map) = pick(&m.prompts_out, &sv.prompts, &m.prompts, false);
        let by_uri = |items: &[Value], key: &str| -> Vec<Value> {
            items
                .iter()
                .filter(|i| {
                    i.get(key)
                        .and_then(Value::as_str)
                        .is_some_and(|u| sv.resources.iter().any(|g| glob_match(g, u)))
                })
                .cloned()
                .collect()
        };
        ServerView {
            tools: t_map,
            prompts: p_map,
            tools_pages: paginate("tools", t_items, page_size),
            prompts_pages: paginate("prompts", p_items, page_size),
            resources_pages: paginate("resources", by_uri(&m.resources_out, "uri"), page_size),
            templates_pages: paginate(
                "resourceTemplates",
                by_uri(&m.templates_out, "uriTemplate"),
                page_size,
            ),
            uri_allow: sv.resources.clone(),
        }
    }
}

/// Cursor for page `i` (opaque to clients).
pub fn cursor(i: usize) -> String {
    format!("p{i}")
}

/// Page index of a client's cursor.
pub fn page_of(cursor: &str) -> Option<usize> {
    cursor.strip_prefix('p')?.parse().ok()
}

/// The items of `pages` (lists under `key`) that `keep` accepts, paginated again.
pub fn filter_pages(
    pages: &Pages,
    key: &str,
    page_size: usize,
    keep: impl Fn(&Value) -> bool,
) -> Pages {
    let items = pages
        .0
        .iter()
        .filter_map(|p| serde_json::from_slice::<Value>(p).ok())
        .filter_map(|mut p| match p.get_mut(key).map(Value::take) {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        })
        .flatten()
        .filter(|v| keep(v))
        .collect();
    paginate(key, items, page_size)
}

fn paginate(key: &str, items: Vec<Value>, page_size: usize) -> Pages {
    let chunks: Vec<Vec<Value>> = if items.is_empty() {
        vec![vec![]]
    } else {
        items
            .chunks(page_size.max(1))
            .map(<[Value]>::to_vec)
            .collect()
    };
    let n = chunks.len();
    Pages(
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut obj = Map::new();
                obj.insert(key.into(), Value::Array(chunk));
                if i + 1 < n {
                    obj.insert("nextCursor".into(), Value::String(cursor(i + 1)));
                }
                Bytes::from(serde_json::to_vec(&Value::Object(obj)).unwrap_or_default())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(tools: &[&str]) -> UpstreamCatalog {
        let mut caps = Map::new();
        caps.insert("tools".into(), json!({}));
        UpstreamCatalog {
            capabilities: caps,
            tools: tools
                .iter()
                .map(|t| json!({"name": t, "inputSchema": {"type":"object"}}))
                .collect(),
            resources: vec![json!({"uri": "file:///a", "name": "a"})],
            ..Default::default()
        }
    }

    fn up(name: &str) -> Arc<Upstream> {
        Arc::new(Upstream::new(
            name.into(),
            true,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(1),
            crate::upstream::SessionMode::PerClient,
            crate::upstream::Link::Http(crate::upstream::http::HttpUpstream::new(
                name.into(),
                "127.0.0.1:1".into(),
                "127.0.0.1:1".into(),
                "/mcp".into(),
                vec![],
                std::time::Duration::from_secs(1),
                None,
            )),
        ))
    }

    /// A layout with `servers` and `page_size`, no tool switched off, `__`, no auth.
    fn layout(servers: &[crate::config::VirtualServer], page_size: usize) -> Layout<'_> {
        static NONE: std::sync::OnceLock<std::collections::HashSet<String>> =
            std::sync::OnceLock::new();
        Layout {
            servers,
            disabled: NONE.get_or_init(Default::default),
            separator: "__",
            page_size,
            auth: crate::config::Config::parse("", "test", &Default::default())
                .expect("an empty config parses")
                .auth
                .clone(),
        }
    }

    #[test]
    fn merges_namespaces_and_routes() {
        let long = "t".repeat(70);
        let s = build(
            1,
            vec![up("a"), up("b"), up("down")],
            &[Some(cat(&["echo", &long])), Some(cat(&["echo"])), None],
            &layout(&[], 2),
            Guarded::default(),
        );
        assert_eq!(s.tools.len(), 3);
        let t = &s.tools["a__echo"];
        assert_eq!(t.upstream, UpstreamRef(0));
        assert_eq!(&t.name_json[..], b"\"echo\"");
        assert_eq!(s.tools["b__echo"].upstream, UpstreamRef(1));
        let short = s
            .tools
            .keys()
            .find(|k| k.len() == names::MAX_NAME)
            .expect("shortened");
        assert_eq!(
            &s.tools[short].name_json[..],
            format!("\"{long}\"").as_bytes()
        );
        // Three tools, page size 2: two pages, the first with a cursor to the second.
        assert_eq!(s.tools_pages.0.len(), 2);
        let first: Value = serde_json::from_slice(&s.tools_pages.0[0]).expect("json");
        assert_eq!(first["nextCursor"], "p1");
        assert_eq!(first["tools"][0]["name"], "a__echo");
        // The same URI from two upstreams is not routable without its prefix.
        assert!(s.plain_uris.is_empty());
        let res: Value = serde_json::from_slice(&s.resources_pages.0[0]).expect("json");
        assert_eq!(res["resources"][0]["uri"], "mcpgw://a/file:///a");
        assert_eq!(page_of("p1"), Some(1));
        assert_eq!(page_of("zz"), None);
    }

    #[test]
    fn virtual_server_holds_only_its_bundle() {
        let sv = crate::config::VirtualServer {
            name: "team".into(),
            tools: vec!["a__*".into()],
            prompts: vec![],
            resources: vec!["mcpgw://b/*".into()],
            rename: [("a__echo".to_string(), "echo".to_string())].into(),
            descriptions: [("echo".to_string(), "Team echo".to_string())].into(),
        };
        let s = build(
            1,
            vec![up("a"), up("b")],
            &[Some(cat(&["echo", "add"])), Some(cat(&["echo"]))],
            &layout(&[sv], 100),
            Guarded::default(),
        );
        let v = s.view(Some("team")).expect("view");
        let mut names: Vec<_> = v.tools.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["a__add", "echo"]);
        assert_eq!(&v.tools["echo"].name_json[..], b"\"echo\"");
        let page: Value = serde_json::from_slice(&v.tools_pages.0[0]).expect("json");
        assert!(page["tools"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t["description"] == "Team echo")));
        assert!(v.uri_allowed("mcpgw://b/file:///a") && !v.uri_allowed("mcpgw://a/file:///a"));
        let res: Value = serde_json::from_slice(&v.resources_pages.0[0]).expect("json");
        assert_eq!(res["resources"].as_array().map(Vec::len), Some(1));
        assert!(s.view(Some("nope")).is_none());
    }
}
