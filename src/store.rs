//! The registry store: what operators changed through the admin API, kept across restarts.
//!
//! The config file seeds the registry; admin writes are stored here and applied over it
//! (see [`compose`]). [`Store`] is the one seam: SQLite (embedded, the default) is the first
//! implementation; a shared PostgreSQL store would be a second. Schema migrations live in
//! `migrations/`, numbered; the database records its version (`PRAGMA user_version`).
//!
//! Only the control plane touches the store; it may block.

use std::path::Path;

use anyhow::Context;

pub use crate::guard::catalog::Pin;

/// Ordered schema migrations; the database's `user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_servers_tools.sql"),
    include_str!("../migrations/0003_api_keys.sql"),
    include_str!("../migrations/0004_quota_counters.sql"),
    include_str!("../migrations/0005_tool_pins.sql"),
];

/// What kind of registry entry a store row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `[[upstream]]` entries.
    Upstream,
    /// `[[server]]` entries (virtual servers).
    Server,
}

impl Kind {
    fn tables(self) -> (&'static str, &'static str) {
        match self {
            Kind::Upstream => ("upstreams", "removed"),
            Kind::Server => ("servers", "removed_servers"),
        }
    }

    /// The config file's table name.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Upstream => "upstream",
            Kind::Server => "server",
        }
    }
}

/// An API key issued through the admin API. Only its salted hash is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// 8 hex digits (the part after `mcpgw_`).
    pub id: String,
    /// The principal's name.
    pub name: String,
    /// `sha256:<salt>:<digest>`.
    pub hash: String,
    /// Roles granted.
    pub roles: Vec<String>,
    /// Team, if any.
    pub team: Option<String>,
    /// When it was issued, unix ms.
    pub created_ms: i64,
}

/// One `[[quota]]` counter as saved: (quota key, subject) -> used in window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaCount {
    /// The quota's key (`<scope>/<window>/<match,...>`).
    pub rule: String,
    /// Principal key or team.
    pub subject: String,
    /// Window id (see `ratelimit::Window::id`).
    pub window_id: u64,
    /// Calls counted in it.
    pub used: u64,
}

/// Where admin changes to the registry are kept.
pub trait Store {
    /// Entries added through the admin API: (name, its table as TOML).
    fn entries(&self, kind: Kind) -> anyhow::Result<Vec<(String, String)>>;
    /// Adds or replaces an entry.
    fn put(&self, kind: Kind, name: &str, spec: &str) -> anyhow::Result<()>;
    /// Removes an entry: its admin entry if any, and records that a config-file entry of
    /// that name stays removed.
    fn remove(&self, kind: Kind, name: &str) -> anyhow::Result<()>;
    /// Config-file entries removed through the admin API.
    fn removed(&self, kind: Kind) -> anyhow::Result<Vec<String>>;
    /// Tools switched off (gateway names): they leave every list and cannot be called.
    fn disabled_tools(&self) -> anyhow::Result<Vec<String>>;
    /// Switches a tool on or off.
    fn set_tool_enabled(&self, name: &str, enabled: bool) -> anyhow::Result<()>;
    /// API keys issued through the admin API, oldest first.
    fn api_keys(&self) -> anyhow::Result<Vec<StoredKey>>;
    /// Stores a new API key (its id must be new).
    fn put_api_key(&self, key: &StoredKey) -> anyhow::Result<()>;
    /// Deletes an API key; whether it existed.
    fn remove_api_key(&self, id: &str) -> anyhow::Result<bool>;
    /// Every saved quota counter.
    fn quota_counts(&self) -> anyhow::Result<Vec<QuotaCount>>;
    /// Writes `put` (insert or replace) and deletes the `(rule, subject)` counters in
    /// `delete`, in one transaction.
    fn save_quota_counts(
        &self,
        put: &[QuotaCount],
        delete: &[(String, String)],
    ) -> anyhow::Result<()>;
    /// Every pinned tool definition.
    fn pins(&self) -> anyhow::Result<Vec<Pin>>;
    /// Writes pins (insert or replace), in one transaction.
    fn save_pins(&self, pins: &[Pin]) -> anyhow::Result<()>;
    /// Approves the pending definition of `(upstream, tool)` whose hash is `hash`.
    fn approve_pin(
        &self,
        upstream: &str,
        tool: &str,
        hash: &str,
        by: &str,
    ) -> anyhow::Result<Approval>;
}

/// What [`Store::approve_pin`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    /// The pending definition is now the pinned one.
    Approved,
    /// No such pin.
    NotFound,
    /// Nothing is pending for that tool.
    NothingPending,
    /// The pending definition has another hash (it changed again since it was reviewed).
    HashMismatch(String),
}

/// The embedded SQLite store.
pub struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    /// Opens (creating when missing) the database at `path` and runs pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = rusqlite::Connection::open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Self::migrate(conn)
    }

    /// An in-memory store (tests; `data_dir = ":memory:"`).
    pub fn memory() -> anyhow::Result<Self> {
        Self::migrate(rusqlite::Connection::open_in_memory()?)
    }

    fn migrate(conn: rusqlite::Connection) -> anyhow::Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "the store is at schema version {version}, newer than this mcpgw knows ({})",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
            tracing::info!(version = i + 1, "store migrated");
        }
        Ok(Self { conn })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Store for Sqlite {
    fn entries(&self, kind: Kind) -> anyhow::Result<Vec<(String, String)>> {
        let (t, _) = kind.tables();
        let mut st = self
            .conn
            .prepare(&format!("SELECT name, spec FROM {t} ORDER BY name"))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put(&self, kind: Kind, name: &str, spec: &str) -> anyhow::Result<()> {
        let (t, _) = kind.tables();
        self.conn.execute(
            &format!(
                "INSERT INTO {t} (name, spec, updated_ms) VALUES (?1, ?2, ?3) ON CONFLICT(name) \
                 DO UPDATE SET spec = excluded.spec, updated_ms = excluded.updated_ms"
            ),
            rusqlite::params![name, spec, now_ms()],
        )?;
        Ok(())
    }

    fn remove(&self, kind: Kind, name: &str) -> anyhow::Result<()> {
        let (t, r) = kind.tables();
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(&format!("DELETE FROM {t} WHERE name = ?1"), [name])?;
        tx.execute(
            &format!(
                "INSERT INTO {r} (name, updated_ms) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING"
            ),
            rusqlite::params![name, now_ms()],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn removed(&self, kind: Kind) -> anyhow::Result<Vec<String>> {
        let (_, r) = kind.tables();
        let mut st = self
            .conn
            .prepare(&format!("SELECT name FROM {r} ORDER BY name"))?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn disabled_tools(&self) -> anyhow::Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT name FROM disabled_tools ORDER BY name")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_tool_enabled(&self, name: &str, enabled: bool) -> anyhow::Result<()> {
        if enabled {
            self.conn
                .execute("DELETE FROM disabled_tools WHERE name = ?1", [name])?;
        } else {
            self.conn.execute(
                "INSERT INTO disabled_tools (name, updated_ms) VALUES (?1, ?2) \
                 ON CONFLICT(name) DO NOTHING",
                rusqlite::params![name, now_ms()],
            )?;
        }
        Ok(())
    }

    fn api_keys(&self) -> anyhow::Result<Vec<StoredKey>> {
        let mut st = self.conn.prepare(
            "SELECT id, name, hash, roles, team, created_ms FROM api_keys ORDER BY created_ms, id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let (id, name, hash, roles, team, created_ms) = row?;
            let roles = serde_json::from_str(&roles)
                .with_context(|| format!("stored API key {id:?}: roles"))?;
            keys.push(StoredKey {
                id,
                name,
                hash,
                roles,
                team,
                created_ms,
            });
        }
        Ok(keys)
    }

    fn put_api_key(&self, k: &StoredKey) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO api_keys (id, name, hash, roles, team, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                k.id,
                k.name,
                k.hash,
                serde_json::to_string(&k.roles)?,
                k.team,
                k.created_ms
            ],
        )?;
        Ok(())
    }

    fn remove_api_key(&self, id: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM api_keys WHERE id = ?1", [id])?
            > 0)
    }

    fn quota_counts(&self) -> anyhow::Result<Vec<QuotaCount>> {
        let mut st = self
            .conn
            .prepare("SELECT rule, subject, window_id, used FROM quota_counters")?;
        let rows = st.query_map([], |r| {
            Ok(QuotaCount {
                rule: r.get(0)?,
                subject: r.get(1)?,
                window_id: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                used: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn save_quota_counts(
        &self,
        put: &[QuotaCount],
        delete: &[(String, String)],
    ) -> anyhow::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut up = tx.prepare(
                "INSERT INTO quota_counters (rule, subject, window_id, used, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(rule, subject) DO UPDATE SET \
                 window_id = excluded.window_id, used = excluded.used, \
                 updated_ms = excluded.updated_ms",
            )?;
            let now = now_ms();
            for c in put {
                // Window ids fit 24 bits and counts 40 (ratelimit::Quota).
                let (w, u) = (
                    i64::try_from(c.window_id).unwrap_or(i64::MAX),
                    i64::try_from(c.used).unwrap_or(i64::MAX),
                );
                up.execute(rusqlite::params![c.rule, c.subject, w, u, now])?;
            }
            let mut del =
                tx.prepare("DELETE FROM quota_counters WHERE rule = ?1 AND subject = ?2")?;
            for (rule, subject) in delete {
                del.execute([rule, subject])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn pins(&self) -> anyhow::Result<Vec<Pin>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {PIN_COLUMNS} FROM tool_pins ORDER BY upstream, tool"
        ))?;
        let rows = st.query_map([], pin_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn save_pins(&self, pins: &[Pin]) -> anyhow::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut up = tx.prepare(&format!(
                "INSERT OR REPLACE INTO tool_pins ({PIN_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?;
            for p in pins {
                let (ph, pd, pm) = match &p.pending {
                    Some((h, d, at)) => (Some(h), Some(d), Some(*at)),
                    None => (None, None, None),
                };
                up.execute(rusqlite::params![
                    p.upstream,
                    p.tool,
                    p.hash,
                    p.definition,
                    p.approved_at,
                    p.approved_by,
                    ph,
                    pd,
                    pm
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn approve_pin(
        &self,
        upstream: &str,
        tool: &str,
        hash: &str,
        by: &str,
    ) -> anyhow::Result<Approval> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {PIN_COLUMNS} FROM tool_pins WHERE upstream = ?1 AND tool = ?2"
        ))?;
        let mut rows = st.query_map([upstream, tool], pin_of)?;
        let Some(pin) = rows.next().transpose()? else {
            return Ok(Approval::NotFound);
        };
        let Some((h, d, _)) = pin.pending else {
            return Ok(Approval::NothingPending);
        };
        if h != hash {
            return Ok(Approval::HashMismatch(h));
        }
        self.conn.execute(
            "UPDATE tool_pins SET hash = ?3, definition = ?4, approved_ms = ?5, \
             approved_by = ?6, pending_hash = NULL, pending_definition = NULL, \
             pending_ms = NULL WHERE upstream = ?1 AND tool = ?2",
            rusqlite::params![upstream, tool, h, d, now_ms(), by],
        )?;
        Ok(Approval::Approved)
    }
}

/// The `tool_pins` columns [`pin_of`] reads, in its order.
const PIN_COLUMNS: &str = "upstream, tool, hash, definition, approved_ms, approved_by, \
     pending_hash, pending_definition, pending_ms";

fn pin_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pin> {
    let pending = match (
        r.get::<_, Option<String>>(6)?,
        r.get::<_, Option<String>>(7)?,
        r.get::<_, Option<i64>>(8)?,
    ) {
        (Some(h), Some(d), Some(at)) => Some((h, d, at)),
        _ => None,
    };
    Ok(Pin {
        upstream: r.get(0)?,
        tool: r.get(1)?,
        hash: r.get(2)?,
        definition: r.get(3)?,
        approved_at: r.get(4)?,
        approved_by: r.get(5)?,
        pending,
    })
}

/// The effective configuration: the config file with the store applied. Config-file entries
/// the store removed, or that an admin entry of the same name replaces, are left out; admin
/// entries are appended; disabled tools are recorded. The file alone is validated first, so
/// its errors keep their line numbers.
///
/// Admin upstreams are held to the admin API's address policy: one whose literal address the
/// policy refuses (stored before the policy, or before `upstream_networks` narrowed) is left
/// out and logged, so that it cannot stop the gateway from starting (other validation errors
/// fail the composed configuration, as they always did); the rest connect under that
/// policy ([`crate::config::Config::limit_admin_upstreams`]).
pub fn compose(
    file_text: &str,
    source: &str,
    store: &dyn Store,
    ov: &crate::config::Overrides,
) -> anyhow::Result<crate::config::Config> {
    compose_with(file_text, source, store, ov, None)
}

/// An entry the admin API is about to store: kind, name, TOML spec.
pub type Candidate<'a> = (Kind, &'a str, &'a str);

/// As [`compose`], with `extra` as if it were stored already (placed first among its kind's
/// entries, so that errors name it `upstream[0]`/`server[0]`): the admin API validates a new
/// entry against the configuration it will join. A stored upstream entry that breaks the
/// admin rules ([`crate::config::admin_entry`]) is left out with a logged error; `extra`
/// breaking them is an error.
pub fn compose_with(
    file_text: &str,
    source: &str,
    store: &dyn Store,
    ov: &crate::config::Overrides,
    extra: Option<Candidate<'_>>,
) -> anyhow::Result<crate::config::Config> {
    use crate::config::admin_entry::{self, Origin};
    let file = crate::config::Config::parse(file_text, source, ov)?;
    let mut changed = false;
    let mut doc: toml::Table = toml::from_str(file_text).with_context(|| source.to_string())?;
    let file_ciphertexts = admin_entry::file_ciphertexts(&doc);
    let mut from_admin = std::collections::HashSet::new();
    for kind in [Kind::Upstream, Kind::Server] {
        let mut entries = store.entries(kind)?;
        let removed = store.removed(kind)?;
        if let Some((_, name, spec)) = extra.filter(|(k, ..)| *k == kind) {
            entries.retain(|(n, _)| n != name);
            entries.insert(0, (name.to_string(), spec.to_string()));
        }
        if entries.is_empty() && removed.is_empty() {
            continue;
        }
        changed = true;
        let drop: std::collections::HashSet<&str> = removed
            .iter()
            .map(String::as_str)
            .chain(entries.iter().map(|(n, _)| n.as_str()))
            .collect();
        let mut list: Vec<toml::Value> = match doc.remove(kind.key()) {
            Some(toml::Value::Array(a)) => a,
            _ => Vec::new(),
        };
        list.retain(|u| {
            u.get("name")
                .and_then(toml::Value::as_str)
                .is_none_or(|n| !drop.contains(n))
        });
        let mut stored = Vec::with_capacity(entries.len());
        for (name, spec) in &entries {
            let table: toml::Table =
                toml::from_str(spec).with_context(|| format!("stored {} {name:?}", kind.key()))?;
            let candidate = extra.is_some_and(|(k, n, _)| k == kind && n == name);
            if kind == Kind::Upstream {
                let origin = Origin::Store {
                    file_ciphertexts: &file_ciphertexts,
                };
                if let Err(e) =
                    admin_entry::check_upstream(&table, &file.admin.stdio_commands, origin)
                {
                    if candidate {
                        anyhow::bail!("{e}");
                    }
                    // Stored by an older version, or the file's rules changed since: never
                    // started, and the rest of the configuration still loads.
                    tracing::error!(upstream = %name, refused = %e, "stored admin upstream breaks the admin rules: left out (remove it with DELETE /admin/upstreams/{name}, or move it to the config file)");
                    continue;
                }
                // The admin API's outbound address policy (`upstream_networks`).
                let mut alone = toml::Table::new();
                alone.insert(
                    kind.key().into(),
                    toml::Value::Array(vec![toml::Value::Table(table.clone())]),
                );
                let doc = toml::to_string(&alone).context("composing the configuration")?;
                match file.check_admin_upstreams(&doc, &format!("stored upstream {name:?}")) {
                    Ok(()) => {}
                    Err(e) if candidate => return Err(e),
                    Err(e) if e.downcast_ref::<crate::config::OutboundRefused>().is_some() => {
                        tracing::error!(upstream = %name, error = %format!("{e:#}"),
                            "stored upstream left out: the outbound address policy refuses it (DELETE /admin/upstreams/<name> removes it)");
                        continue;
                    }
                    // Invalid for another reason: the composed configuration fails as before.
                    Err(_) => {}
                }
                from_admin.insert(name.clone());
            }
            stored.push(toml::Value::Table(table));
        }
        // The candidate goes first, so that errors name it `<kind>[0]`.
        if extra.is_some_and(|(k, ..)| k == kind) {
            stored.append(&mut list);
            list = stored;
        } else {
            list.append(&mut stored);
        }
        doc.insert(kind.key().into(), toml::Value::Array(list));
    }
    changed |= add_api_keys(&mut doc, store.api_keys()?);
    let mut config = if changed {
        let text = toml::to_string(&doc).context("composing the configuration")?;
        crate::config::Config::parse(&text, &format!("{source} + store"), ov)?
    } else {
        file
    };
    for u in &mut config.upstreams {
        u.from_admin = from_admin.contains(&u.name);
    }
    config.disabled_tools = store.disabled_tools()?.into_iter().collect();
    config.limit_admin_upstreams(from_admin.iter().map(String::as_str));
    Ok(config)
}

/// Appends stored API keys to the document's `[[auth.api_key]]`; whether any was added.
/// A stored key is left out (logged) when the file defines the same id (the file wins) or
/// when it names a role the file no longer defines, so that one stale key cannot make the
/// whole configuration fail to load.
fn add_api_keys(doc: &mut toml::Table, keys: Vec<StoredKey>) -> bool {
    if keys.is_empty() {
        return false;
    }
    let names = |v: Option<&toml::Value>| -> std::collections::HashSet<String> {
        v.and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.get("name")?.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let roles = names(doc.get("role"));
    let auth = match doc
        .entry("auth")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        toml::Value::Table(t) => t,
        // Not a table: the file did not validate, and compose is never reached.
        _ => return false,
    };
    let list = match auth
        .entry("api_key")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
    {
        toml::Value::Array(a) => a,
        _ => return false,
    };
    let file_ids: std::collections::HashSet<String> = list
        .iter()
        .filter_map(|t| t.get("id")?.as_str().map(String::from))
        .collect();
    let mut added = false;
    for k in keys {
        if file_ids.contains(&k.id) {
            tracing::warn!(id = %k.id, name = %k.name, "stored API key left out: the config file defines the same id");
            continue;
        }
        if let Some(r) = k.roles.iter().find(|r| !roles.contains(*r)) {
            tracing::warn!(id = %k.id, name = %k.name, role = %r, "stored API key left out: its role is no longer defined");
            continue;
        }
        let mut t = toml::Table::new();
        t.insert("name".into(), k.name.into());
        t.insert("id".into(), k.id.into());
        t.insert("hash".into(), k.hash.into());
        t.insert(
            "roles".into(),
            toml::Value::Array(k.roles.into_iter().map(toml::Value::from).collect()),
        );
        if let Some(team) = k.team {
            t.insert("team".into(), team.into());
        }
        list.push(toml::Value::Table(t));
        added = true;
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[gateway]\nlisten = \"127.0.0.1:1\"\n\n[[upstream]]\nname = \"a\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:9/mcp\"\n";

    #[test]
    fn migrations_run_once_and_entries_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("mcpgw-store-{}", std::process::id()));
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        {
            let s = Sqlite::open(&path).expect("open");
            s.put(
                Kind::Upstream,
                "b",
                "name = \"b\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:8/mcp\"\n",
            )
            .expect("put");
        }
        let s = Sqlite::open(&path).expect("reopen");
        assert_eq!(s.entries(Kind::Upstream).expect("list").len(), 1);
        let v: usize = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, MIGRATIONS.len());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn compose_holds_admin_upstreams_to_the_admin_policy() {
        let s = Sqlite::memory().expect("store");
        let ov = crate::config::Overrides::default();
        let file = FILE;
        let put = |name: &str, url: &str| {
            s.put(
                Kind::Upstream,
                name,
                &format!("name = \"{name}\"\ntransport = \"http\"\nurl = \"{url}\"\n"),
            )
            .expect("put");
        };
        put("ok", "http://127.0.0.1:8/mcp");
        put("named", "http://localhost:8/mcp");
        // Stored before the policy existed: left out, and the gateway still starts.
        put("meta", "http://169.254.169.254/latest");
        put("public", "http://8.8.8.8/mcp");
        put("own", "http://127.0.0.1:1/mcp");
        let c = compose(file, "f", &s, &ov).expect("compose");
        let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "named", "ok"]);
        let limited: Vec<_> = c.upstreams.iter().map(|u| u.outbound.limited()).collect();
        assert_eq!(limited, [false, true, true]);
        // Another validation error still fails the whole configuration.
        put("bad", "ftp://127.0.0.1:8/mcp");
        assert!(compose(file, "f", &s, &ov).is_err());
    }

    #[test]
    fn compose_applies_adds_and_removals() {
        let s = Sqlite::memory().expect("store");
        let ov = crate::config::Overrides::default();
        assert_eq!(
            compose(FILE, "f", &s, &ov)
                .expect("file only")
                .upstreams
                .len(),
            1
        );
        s.put(
            Kind::Upstream,
            "b",
            "name = \"b\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:8/mcp\"\n",
        )
        .expect("put");
        let c = compose(FILE, "f", &s, &ov).expect("with b");
        let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        s.remove(Kind::Upstream, "a").expect("remove");
        let c = compose(FILE, "f", &s, &ov).expect("without a");
        let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(c.gateway.listen.port(), 1, "the file's [gateway] is kept");
        s.put(Kind::Server, "x", "name = \"x\"\ntools = [\"b__*\"]\n")
            .expect("server");
        s.set_tool_enabled("b__t", false).expect("disable");
        let c = compose(FILE, "f", &s, &ov).expect("with x");
        assert_eq!(c.servers.len(), 1);
        assert!(c.disabled_tools.contains("b__t"));
        s.set_tool_enabled("b__t", true).expect("enable");
        assert!(compose(FILE, "f", &s, &ov)
            .expect("again")
            .disabled_tools
            .is_empty());
    }

    #[test]
    fn pins_are_saved_and_approved_by_hash() {
        let s = Sqlite::memory().expect("store");
        let pin = Pin {
            upstream: "u".into(),
            tool: "t".into(),
            hash: "h1".into(),
            definition: "{}".into(),
            approved_at: 1,
            approved_by: "first-seen".into(),
            pending: None,
        };
        s.save_pins(std::slice::from_ref(&pin)).expect("store");
        assert_eq!(s.pins().expect("store"), std::slice::from_ref(&pin));
        assert_eq!(
            s.approve_pin("u", "t", "h2", "admin").expect("store"),
            Approval::NothingPending
        );
        assert_eq!(
            s.approve_pin("u", "x", "h2", "admin").expect("store"),
            Approval::NotFound
        );
        let changed = Pin {
            pending: Some(("h2".into(), "{\"d\":1}".into(), 5)),
            ..pin
        };
        s.save_pins(std::slice::from_ref(&changed)).expect("store");
        assert_eq!(
            s.approve_pin("u", "t", "h3", "admin").expect("store"),
            Approval::HashMismatch("h2".into())
        );
        assert_eq!(
            s.approve_pin("u", "t", "h2", "admin").expect("store"),
            Approval::Approved
        );
        let now = s.pins().expect("store");
        assert_eq!(now[0].hash, "h2");
        assert_eq!(now[0].definition, "{\"d\":1}");
        assert_eq!(now[0].approved_by, "admin");
        assert!(now[0].pending.is_none());
    }

    #[test]
    fn quota_counts_are_upserted_and_deleted() {
        let s = Sqlite::memory().expect("store");
        let c = |subject: &str, used| QuotaCount {
            rule: "principal/day/".into(),
            subject: subject.into(),
            window_id: 20_000,
            used,
        };
        s.save_quota_counts(&[c("a", 1), c("b", 2)], &[])
            .expect("save");
        s.save_quota_counts(&[c("a", 5)], &[("principal/day/".into(), "b".into())])
            .expect("save");
        assert_eq!(s.quota_counts().expect("read"), [c("a", 5)]);
    }

    #[test]
    fn stored_api_keys_join_the_file_keys_and_the_file_wins() {
        let file_key = crate::auth::credentials::new_key().expect("key");
        let file = format!(
            "{FILE}\n[[role]]\nname = \"reader\"\ntools = [\"*\"]\n\n[auth]\n[[auth.api_key]]\nname = \"file\"\nid = \"{}\"\nhash = \"{}\"\nroles = [\"reader\"]\n",
            file_key.id, file_key.hash
        );
        let s = Sqlite::memory().expect("store");
        let ov = crate::config::Overrides::default();
        let stored = |name: &str, id: &str, roles: &[&str]| {
            let k = crate::auth::credentials::new_key().expect("key");
            StoredKey {
                id: id.to_string(),
                name: name.into(),
                hash: k.hash.to_string(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                team: Some("t".into()),
                created_ms: 1,
            }
        };
        let ids = |text: &str| -> Vec<String> {
            let c = compose(text, "f", &s, &ov).expect("compose");
            let mut v: Vec<String> = c.auth.api_keys().map(|(id, ..)| id.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(ids(&file), vec![file_key.id.clone()]);
        s.put_api_key(&stored("ci", "0000000a", &["reader"]))
            .expect("put");
        s.put_api_key(&stored("clash", &file_key.id, &[]))
            .expect("put");
        s.put_api_key(&stored("stale", "0000000c", &["gone"]))
            .expect("put");
        assert!(s.put_api_key(&stored("dup", "0000000a", &[])).is_err());
        let mut want = vec!["0000000a".to_string(), file_key.id.clone()];
        want.sort();
        assert_eq!(
            ids(&file),
            want,
            "the clash keeps the file's, the stale one is left out"
        );
        let c = compose(&file, "f", &s, &ov).expect("compose");
        let (_, hash, p) = c
            .auth
            .api_keys()
            .find(|(id, ..)| *id == file_key.id)
            .expect("file key");
        assert_eq!(hash, &file_key.hash);
        assert_eq!(&*p.name, "file");
        // A file without [auth] or roles still takes stored keys (without roles).
        s.remove_api_key("0000000a").expect("rm");
        s.remove_api_key("0000000c").expect("rm");
        assert!(!s.remove_api_key("0000000c").expect("rm again"));
        s.put_api_key(&stored("plain", "0000000d", &[]))
            .expect("put");
        let mut want = vec!["0000000d".to_string(), file_key.id.clone()];
        want.sort();
        assert_eq!(ids(FILE), want);
        assert_eq!(s.api_keys().expect("list").len(), 2);
    }
}
