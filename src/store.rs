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

/// Ordered schema migrations; the database's `user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_servers_tools.sql"),
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
}

/// The effective configuration: the config file with the store applied. Config-file entries
/// the store removed, or that an admin entry of the same name replaces, are left out; admin
/// entries are appended; disabled tools are recorded. The file alone is validated first, so
/// its errors keep their line numbers.
pub fn compose(
    file_text: &str,
    source: &str,
    store: &dyn Store,
    ov: &crate::config::Overrides,
) -> anyhow::Result<crate::config::Config> {
    let file = crate::config::Config::parse(file_text, source, ov)?;
    let mut changed = false;
    let mut doc: toml::Table = toml::from_str(file_text).with_context(|| source.to_string())?;
    for kind in [Kind::Upstream, Kind::Server] {
        let entries = store.entries(kind)?;
        let removed = store.removed(kind)?;
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
        for (name, spec) in &entries {
            let table: toml::Table =
                toml::from_str(spec).with_context(|| format!("stored {} {name:?}", kind.key()))?;
            list.push(toml::Value::Table(table));
        }
        doc.insert(kind.key().into(), toml::Value::Array(list));
    }
    let mut config = if changed {
        let text = toml::to_string(&doc).context("composing the configuration")?;
        crate::config::Config::parse(&text, &format!("{source} + store"), ov)?
    } else {
        file
    };
    config.disabled_tools = store.disabled_tools()?.into_iter().collect();
    Ok(config)
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
}
