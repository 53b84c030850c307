//! The catalog guard: scans fetched catalogs, pins tool definitions, and decides what is
//! served.
//!
//! The control plane calls [`apply`] on every upstream's freshly fetched lists before it
//! builds a snapshot. Each tool, prompt, resource and template is scanned
//! ([`Scanner::scan_tool`]); per the upstream's [`CatalogRule`], a finding is only reported
//! (`log`), removes the item (`hide`), or removes the whole upstream (`block`). Each tool's
//! definition is fingerprinted ([`pin_hash`]) and compared with its [`Pin`]: the first
//! definition seen is pinned; a different one is a pending change (a rug pull until an
//! operator says otherwise) that is reported and, with `pin = "hide"`, keeps the tool out of
//! the catalog until approved through the admin API. A tool that returns to its pinned
//! definition is served again and its pending change dropped.
//!
//! Nothing here is on a request path; the result is an immutable [`Report`] for the admin
//! API and metrics, and the pins to write to the store.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use serde::Serialize;
use serde_json::{json, Value};

use super::{
    pin_hash,
    policy::{Action, PinMode, Policy},
    Finding, Scanner,
};
use crate::{mcp::UpstreamCatalog, text::hex};

/// A tool's approved definition and, if it changed since, the change awaiting approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// Upstream name.
    pub upstream: String,
    /// The upstream's own tool name.
    pub tool: String,
    /// Hex SHA-256 of the approved definition ([`pin_hash`]).
    pub hash: String,
    /// The approved definition, JSON.
    pub definition: String,
    /// When it was approved, Unix ms.
    pub approved_at: i64,
    /// Who approved it: `first-seen`, or the admin principal.
    pub approved_by: String,
    /// A different definition served since, awaiting approval: (hash, JSON, first seen
    /// Unix ms).
    pub pending: Option<(String, String, i64)>,
}

/// One finding on one catalog item.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ItemFinding {
    /// Upstream name.
    pub upstream: String,
    /// `tool`, `prompt`, `resource` or `template`.
    pub kind: &'static str,
    /// The item's name (URI for resources) as the upstream gives it.
    pub name: String,
    /// Rule id.
    pub rule: String,
    /// Severity, lowercase.
    pub severity: &'static str,
    /// Where: JSON path of the string.
    pub field: String,
    /// Byte range in the normalized field.
    pub span: (usize, usize),
    /// Text around the match.
    pub excerpt: String,
    /// What the policy did: `log`, `hide` or `block`.
    pub action: &'static str,
}

/// An item left out of the catalog.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Hash)]
pub struct Hidden {
    /// Upstream name.
    pub upstream: String,
    /// `tool`, `prompt`, `resource` or `template`.
    pub kind: &'static str,
    /// Its name (URI for resources).
    pub name: String,
    /// Why: the rule ids, or `definition changed`.
    pub reason: String,
}

/// What the last [`apply`] found and decided.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Items scanned.
    pub scanned: usize,
    /// Every finding.
    pub findings: Vec<ItemFinding>,
    /// Items left out.
    pub hidden: Vec<Hidden>,
    /// Upstreams left out, with the rule ids that blocked them.
    pub blocked: Vec<(String, String)>,
    /// Tools whose definition differs from the pinned one: (upstream, tool).
    pub changed: Vec<(String, String)>,
}

impl Report {
    /// Findings by severity: low, medium, high, critical.
    pub fn by_severity(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for f in &self.findings {
            let i = ["low", "medium", "high", "critical"]
                .iter()
                .position(|s| *s == f.severity)
                .unwrap_or(0);
            n[i] += 1;
        }
        n
    }
}

/// What [`apply`] returns besides the filtered catalogs.
pub struct Applied {
    /// The report.
    pub report: Report,
    /// Pins to write (new, newly pending, or back to their approved definition).
    pub writes: Vec<Pin>,
    /// Tools whose definition changed since the last apply: (upstream, tool, old hash, new
    /// hash).
    pub new_changes: Vec<(String, String, String, String)>,
}

fn severity_str(s: super::Severity) -> &'static str {
    match s {
        super::Severity::Low => "low",
        super::Severity::Medium => "medium",
        super::Severity::High => "high",
        super::Severity::Critical => "critical",
    }
}

/// A prompt, resource or template shaped like a tool for the scanner: its name, title and
/// description, and its arguments' descriptions as input schema properties.
fn as_tool(kind: &str, item: &Value) -> Value {
    if kind == "tool" {
        return item.clone();
    }
    // A prompt's name is an identifier like a tool's; a resource's is a display name
    // ("Dynamic Text Resource"): scanned as text, not held to the tool-name checks.
    let (name, title) = if kind == "prompt" {
        (
            item.get("name").cloned().unwrap_or(Value::Null),
            item.get("title").cloned().unwrap_or(Value::Null),
        )
    } else {
        let display = [item.get("title"), item.get("name")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        (Value::String(String::new()), Value::String(display))
    };
    let mut props = serde_json::Map::new();
    if let Some(Value::Array(args)) = item.get("arguments") {
        for a in args {
            if let Some(n) = a.get("name").and_then(Value::as_str) {
                props.insert(
                    n.to_string(),
                    json!({ "description": a.get("description").cloned().unwrap_or(Value::Null) }),
                );
            }
        }
    }
    json!({
        "name": name,
        "title": title,
        "description": item.get("description").cloned().unwrap_or(Value::Null),
        "inputSchema": { "type": "object", "properties": props },
    })
}

fn item_name(item: &Value) -> String {
    ["name", "uri", "uriTemplate"]
        .iter()
        .find_map(|k| item.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_string()
}

/// Scans `catalogs` (indexed like `upstreams`), removes what the policy hides and blocks
/// (a blocked upstream's catalog becomes `None`), and checks tool definitions against
/// `pins` (keyed by (upstream, tool)). `now_ms` is Unix ms.
pub fn apply(
    policy: &Policy,
    upstreams: &[&str],
    catalogs: &mut [Option<UpstreamCatalog>],
    pins: &HashMap<(String, String), Pin>,
    now_ms: i64,
) -> Applied {
    let scanner: &Scanner = &policy.scanner;
    let all_tools: Vec<(String, String)> = upstreams
        .iter()
        .zip(catalogs.iter())
        .filter_map(|(u, c)| Some((u, c.as_ref()?)))
        .flat_map(|(u, c)| {
            c.tools
                .iter()
                .filter_map(|t| Some((u.to_string(), t.get("name")?.as_str()?.to_string())))
        })
        .collect();
    let mut out = Applied {
        report: Report::default(),
        writes: Vec::new(),
        new_changes: Vec::new(),
    };
    for (up, slot) in upstreams.iter().zip(catalogs.iter_mut()) {
        let Some(cat) = slot.as_mut() else { continue };
        let rule = policy.catalog_rule(up);
        let others = super::Others::of(up, &all_tools);
        let mut blocked_by: Vec<String> = Vec::new();
        for (kind, items) in [
            ("tool", &mut cat.tools),
            ("prompt", &mut cat.prompts),
            ("resource", &mut cat.resources),
            ("template", &mut cat.templates),
        ] {
            items.retain(|item| {
                out.report.scanned += 1;
                let name = item_name(item);
                let findings: Vec<Finding> = scanner.scan_tool_among(&as_tool(kind, item), &others);
                let mut worst = Action::Log;
                let mut hide_rules = Vec::new();
                for f in findings {
                    let action = rule.action(f.severity);
                    worst = worst.max(action);
                    if action == Action::Block {
                        blocked_by.push(f.rule.clone());
                    } else if action == Action::Hide {
                        hide_rules.push(f.rule.clone());
                    }
                    out.report.findings.push(ItemFinding {
                        upstream: up.to_string(),
                        kind,
                        name: name.clone(),
                        rule: f.rule,
                        severity: severity_str(f.severity),
                        field: f.field,
                        span: f.span,
                        excerpt: f.excerpt,
                        action: action.as_str(),
                    });
                }
                let mut keep = worst == Action::Log;
                if !keep {
                    hide_rules.sort();
                    hide_rules.dedup();
                    out.report.hidden.push(Hidden {
                        upstream: up.to_string(),
                        kind,
                        name: name.clone(),
                        reason: hide_rules.join(", "),
                    });
                }
                if kind == "tool" && rule.pin != PinMode::Off {
                    let served = check_pin(up, &name, item, pins, now_ms, &mut out);
                    if !served && rule.pin == PinMode::Hide && keep {
                        out.report.hidden.push(Hidden {
                            upstream: up.to_string(),
                            kind,
                            name: name.clone(),
                            reason: "definition changed".into(),
                        });
                        keep = false;
                    }
                }
                keep
            });
        }
        if !blocked_by.is_empty() {
            blocked_by.sort();
            blocked_by.dedup();
            out.report
                .blocked
                .push((up.to_string(), blocked_by.join(", ")));
            // Nothing of it is served: its hidden items are moot.
            out.report.hidden.retain(|h| h.upstream != *up);
            *slot = None;
        }
    }
    out
}

/// Compares a tool with its pin; records what to write. Returns whether the definition is
/// the approved one.
fn check_pin(
    up: &str,
    name: &str,
    item: &Value,
    pins: &HashMap<(String, String), Pin>,
    now_ms: i64,
    out: &mut Applied,
) -> bool {
    let hash = hex(&pin_hash(item));
    let definition = || item.to_string();
    match pins.get(&(up.to_string(), name.to_string())) {
        None => {
            out.writes.push(Pin {
                upstream: up.into(),
                tool: name.into(),
                hash,
                definition: definition(),
                approved_at: now_ms,
                approved_by: "first-seen".into(),
                pending: None,
            });
            true
        }
        Some(p) if p.hash == hash => {
            if p.pending.is_some() {
                // Back to the approved definition: nothing to approve any more.
                out.writes.push(Pin {
                    pending: None,
                    ..p.clone()
                });
            }
            true
        }
        Some(p) => {
            out.report.changed.push((up.into(), name.into()));
            if p.pending.as_ref().map(|(h, _, _)| h) != Some(&hash) {
                out.new_changes
                    .push((up.into(), name.into(), p.hash.clone(), hash.clone()));
                out.writes.push(Pin {
                    pending: Some((hash, definition(), now_ms)),
                    ..p.clone()
                });
            }
            false
        }
    }
}

/// The differences between two JSON values, as `{path, before, after}` (a missing side is
/// absent). Paths are JSON Pointers (`/inputSchema/properties/path/description`).
pub fn diff(before: &Value, after: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    diff_at(String::new(), Some(before), Some(after), &mut out);
    out
}

fn diff_at(path: String, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Value>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                diff_at(p, x.get(k), y.get(k), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_at(format!("{path}/{i}"), Some(u), Some(v), out);
            }
        }
        (a, b) if a != b => {
            let mut d = serde_json::Map::new();
            d.insert(
                "path".into(),
                Value::String(if path.is_empty() { "/".into() } else { path }),
            );
            if let Some(a) = a {
                d.insert("before".into(), a.clone());
            }
            if let Some(b) = b {
                d.insert("after".into(), b.clone());
            }
            out.push(Value::Object(d));
        }
        _ => {}
    }
}

/// Counters of what the guards did since start, for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Tool definition changes seen (each new pending definition once).
    pub pin_changes: AtomicU64,
    /// Screening, by (kind label, direction, verdict): hits.
    pub screen_hits: dashmap::DashMap<(&'static str, &'static str, &'static str), AtomicU64>,
}

impl Counters {
    /// Counts one screening hit.
    pub fn screen_hit(&self, kind: &'static str, direction: &'static str, verdict: &'static str) {
        if let Some(c) = self.screen_hits.get(&(kind, direction, verdict)) {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.screen_hits
            .entry((kind, direction, verdict))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text of the counters and of `report`'s gauges.
    pub fn prometheus(&self, report: &Report, pending: usize, out: &mut String) {
        let s = report.by_severity();
        let _ = writeln!(out, "# HELP mcpgw_guard_findings Catalog scan findings in the served catalogs' last scan.\n# TYPE mcpgw_guard_findings gauge");
        for (i, sev) in ["low", "medium", "high", "critical"].iter().enumerate() {
            let _ = writeln!(out, "mcpgw_guard_findings{{severity=\"{sev}\"}} {}", s[i]);
        }
        let _ = writeln!(out, "# HELP mcpgw_guard_hidden Catalog items hidden by the guard.\n# TYPE mcpgw_guard_hidden gauge\nmcpgw_guard_hidden {}", report.hidden.len());
        let _ = writeln!(out, "# HELP mcpgw_guard_blocked_upstreams Upstreams blocked by the guard.\n# TYPE mcpgw_guard_blocked_upstreams gauge\nmcpgw_guard_blocked_upstreams {}", report.blocked.len());
        let _ = writeln!(out, "# HELP mcpgw_guard_pins_pending Tool definition changes awaiting approval.\n# TYPE mcpgw_guard_pins_pending gauge\nmcpgw_guard_pins_pending {pending}");
        let _ = writeln!(out, "# HELP mcpgw_guard_pin_changes_total Tool definition changes detected (rug pulls until approved).\n# TYPE mcpgw_guard_pin_changes_total counter\nmcpgw_guard_pin_changes_total {}", self.pin_changes.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP mcpgw_guard_screen_hits_total Secrets, personal data and injection found in tool calls.\n# TYPE mcpgw_guard_screen_hits_total counter");
        let mut rows: Vec<_> = self
            .screen_hits
            .iter()
            .map(|e| (*e.key(), e.value().load(Ordering::Relaxed)))
            .collect();
        rows.sort();
        for ((kind, dir, verdict), n) in rows {
            let _ = writeln!(
                out,
                "mcpgw_guard_screen_hits_total{{kind=\"{kind}\",direction=\"{dir}\",action=\"{verdict}\"}} {n}"
            );
        }
    }
}

/// Pins by key, as [`apply`] takes them.
pub fn index(pins: Vec<Pin>) -> HashMap<(String, String), Pin> {
    pins.into_iter()
        .map(|p| ((p.upstream.clone(), p.tool.clone()), p))
        .collect()
}

/// Findings in `next` that `prev` did not have (so each is logged once).
pub fn new_findings<'a>(prev: &Report, next: &'a Report) -> Vec<&'a ItemFinding> {
    let seen: HashSet<(&str, &str, &str, &str)> = prev
        .findings
        .iter()
        .map(|f| (&*f.upstream, &*f.name, &*f.rule, &*f.field))
        .collect();
    next.findings
        .iter()
        .filter(|f| !seen.contains(&(&*f.upstream, &*f.name, &*f.rule, &*f.field)))
        .collect()
}

#[cfg(test)]
mod tests;
