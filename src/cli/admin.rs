//! The admin API client behind `mcpgw upstreams|servers|tools|keys|guard`.
//!
//! A small blocking HTTP/1.1 client (one request per connection) that talks to the admin
//! listener and prints human tables, or the API's JSON with `--json`. Errors from the API
//! (its `error` field and status) become the command's error and a non-zero exit.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::transport::http as codec;

/// Where the admin API is and how to talk to it.
pub struct Admin {
    /// `host:port`.
    pub addr: String,
    /// Bearer token.
    pub token: Option<String>,
    /// Print the API's JSON instead of tables.
    pub json: bool,
}

impl Admin {
    /// From a URL like `http://127.0.0.1:8081`.
    pub fn new(url: &str, token: Option<String>, json: bool) -> anyhow::Result<Self> {
        let addr = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("--admin {url:?}: only http:// URLs"))?
            .trim_end_matches('/')
            .to_string();
        Ok(Self { addr, token, json })
    }

    /// One request; returns the JSON answer of a 2xx, else the API's error.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut conn = TcpStream::connect(&self.addr)
            .with_context(|| format!("connecting to the admin API at {}", self.addr))?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = self
            .token
            .as_deref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw)?;
        let head = codec::parse_response_head(&raw, method, &codec::Limits::default())
            .map_err(|e| anyhow!("bad answer from the admin API: {e:?}"))?
            .ok_or_else(|| anyhow!("truncated answer from the admin API"))?;
        let text = raw.get(head.head_len..).unwrap_or_default();
        let v: Value = serde_json::from_slice(text).unwrap_or(Value::Null);
        if !(200..300).contains(&head.status) {
            let msg = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            bail!("admin API: HTTP {}: {msg}", head.status);
        }
        Ok(v)
    }

    fn print(&self, v: &Value, key: &str, columns: &[&str]) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            return;
        }
        let rows: Vec<Vec<String>> = v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        columns
                            .iter()
                            .map(|c| match &r[*c] {
                                Value::String(s) => s.clone(),
                                Value::Null => "-".into(),
                                Value::Array(a) => a
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(","),
                                other => other.to_string(),
                            })
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([c.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        println!(
            "{}",
            line(columns.iter().map(|c| c.to_uppercase()).collect())
        );
        for r in rows {
            println!("{}", line(r));
        }
    }

    fn done(&self, v: &Value, what: &str) {
        if self.json {
            println!("{v}");
        } else {
            println!("{what}");
        }
    }
}

/// `mcpgw upstreams ...`.
pub enum UpstreamCmd {
    /// List them.
    List,
    /// Add one: the fields of an `[[upstream]]` table.
    Add(Value),
    /// Remove one.
    Remove(String),
}

/// `mcpgw servers ...`.
pub enum ServerCmd {
    /// List them.
    List,
    /// Add one: the fields of a `[[server]]` table.
    Add(Value),
    /// Remove one.
    Remove(String),
}

/// `mcpgw tools ...`.
pub enum ToolCmd {
    /// List them.
    List,
    /// Switch one on or off.
    Enable(String, bool),
}

/// `mcpgw keys ...`.
pub enum KeyCmd {
    /// List them.
    List,
    /// Issue one: `{"name", "roles", "team"?}`.
    Create(Value),
    /// Revoke one by id.
    Revoke(String),
}

/// Runs a keys command. `create` prints the key alone on stdout (the only time it is
/// shown) and what it is on stderr; with `--json`, the API's answer.
pub fn keys(a: &Admin, cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::List => {
            let v = a.call("GET", "/admin/keys", None)?;
            a.print(
                &v,
                "keys",
                &["id", "name", "roles", "team", "source", "active"],
            );
        }
        KeyCmd::Create(spec) => {
            let v = a.call("POST", "/admin/keys", Some(&spec))?;
            if a.json {
                println!("{v}");
            } else {
                let key = v["key"]
                    .as_str()
                    .ok_or_else(|| anyhow!("the admin API answered no key"))?;
                eprintln!(
                    "API key {} for {} (shown once; keep it secret):",
                    v["id"].as_str().unwrap_or("?"),
                    v["name"].as_str().unwrap_or("?")
                );
                println!("{key}");
            }
        }
        KeyCmd::Revoke(id) => {
            let v = a.call("DELETE", &format!("/admin/keys/{id}"), None)?;
            a.done(&v, &format!("revoked API key {id}"));
        }
    }
    Ok(())
}

/// `mcpgw guard ...`.
pub enum GuardCmd {
    /// The catalog guard's findings, hidden items and blocked upstreams.
    Findings,
    /// Pinned tool definitions; pending changes with their diff.
    Pins,
    /// Approve a pending definition: upstream, tool, hash, who.
    Approve(String, String, String, Option<String>),
}

/// Runs a guard command.
pub fn guard(a: &Admin, cmd: GuardCmd) -> anyhow::Result<()> {
    match cmd {
        GuardCmd::Findings => {
            let v = a.call("GET", "/admin/guard", None)?;
            a.print(
                &v,
                "findings",
                &[
                    "upstream", "kind", "name", "rule", "severity", "field", "action",
                ],
            );
            if !a.json {
                for h in v["hidden"].as_array().into_iter().flatten() {
                    println!(
                        "hidden: {}/{} ({}): {}",
                        h["upstream"].as_str().unwrap_or("?"),
                        h["name"].as_str().unwrap_or("?"),
                        h["kind"].as_str().unwrap_or("?"),
                        h["reason"].as_str().unwrap_or("")
                    );
                }
                for b in v["blocked"].as_array().into_iter().flatten() {
                    println!(
                        "blocked upstream: {}: {}",
                        b["upstream"].as_str().unwrap_or("?"),
                        b["rules"].as_str().unwrap_or("")
                    );
                }
            }
        }
        GuardCmd::Pins => {
            let mut v = a.call("GET", "/admin/guard/pins", None)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return Ok(());
            }
            let pins = v["pins"]
                .as_array_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut rows = Vec::new();
            for mut p in pins {
                if let Some(h) = p["pending"]["hash"].as_str() {
                    p["pending_hash"] = Value::String(h.to_string());
                }
                rows.push(p);
            }
            let table = serde_json::json!({ "pins": rows });
            a.print(
                &table,
                "pins",
                &["upstream", "tool", "hash", "approved_by", "pending_hash"],
            );
            for p in rows.iter().filter(|p| p["pending"].is_object()) {
                println!(
                    "\n{}/{} changed (approve with: mcpgw guard approve {} {} {}):",
                    p["upstream"].as_str().unwrap_or("?"),
                    p["tool"].as_str().unwrap_or("?"),
                    p["upstream"].as_str().unwrap_or("?"),
                    p["tool"].as_str().unwrap_or("?"),
                    p["pending"]["hash"].as_str().unwrap_or("?"),
                );
                for d in p["pending"]["diff"].as_array().into_iter().flatten() {
                    let path = d["path"].as_str().unwrap_or("/");
                    if let Some(b) = d.get("before") {
                        println!("  - {path}: {b}");
                    }
                    if let Some(after) = d.get("after") {
                        println!("  + {path}: {after}");
                    }
                }
            }
        }
        GuardCmd::Approve(upstream, tool, hash, by) => {
            let mut body = serde_json::json!({ "upstream": upstream, "tool": tool, "hash": hash });
            if let Some(by) = by {
                body["by"] = Value::String(by);
            }
            let v = a.call("POST", "/admin/guard/pins/approve", Some(&body))?;
            a.done(&v, &format!("approved {upstream}/{tool} at {hash}"));
        }
    }
    Ok(())
}

/// Runs an upstreams command.
pub fn upstreams(a: &Admin, cmd: UpstreamCmd) -> anyhow::Result<()> {
    match cmd {
        UpstreamCmd::List => {
            let v = a.call("GET", "/admin/upstreams", None)?;
            a.print(
                &v,
                "upstreams",
                &["name", "transport", "health", "tools", "session", "source"],
            );
        }
        UpstreamCmd::Add(spec) => {
            let v = a.call("POST", "/admin/upstreams", Some(&spec))?;
            a.done(
                &v,
                &format!("added upstream {}", spec["name"].as_str().unwrap_or("")),
            );
        }
        UpstreamCmd::Remove(name) => {
            let v = a.call("DELETE", &format!("/admin/upstreams/{name}"), None)?;
            a.done(&v, &format!("removed upstream {name}"));
        }
    }
    Ok(())
}

/// Runs a servers command.
pub fn servers(a: &Admin, cmd: ServerCmd) -> anyhow::Result<()> {
    match cmd {
        ServerCmd::List => {
            let v = a.call("GET", "/admin/servers", None)?;
            a.print(&v, "servers", &["name", "path", "tools", "source"]);
        }
        ServerCmd::Add(spec) => {
            let v = a.call("POST", "/admin/servers", Some(&spec))?;
            a.done(
                &v,
                &format!("added server {}", spec["name"].as_str().unwrap_or("")),
            );
        }
        ServerCmd::Remove(name) => {
            let v = a.call("DELETE", &format!("/admin/servers/{name}"), None)?;
            a.done(&v, &format!("removed server {name}"));
        }
    }
    Ok(())
}

/// Runs a tools command.
pub fn tools(a: &Admin, cmd: ToolCmd) -> anyhow::Result<()> {
    match cmd {
        ToolCmd::List => {
            let v = a.call("GET", "/admin/tools", None)?;
            a.print(&v, "tools", &["name", "upstream", "health", "enabled"]);
        }
        ToolCmd::Enable(name, on) => {
            let v = a.call(
                "PUT",
                &format!("/admin/tools/{name}"),
                Some(&json!({ "enabled": on })),
            )?;
            a.done(
                &v,
                &format!("{name} {}", if on { "enabled" } else { "disabled" }),
            );
        }
    }
    Ok(())
}
