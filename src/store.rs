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
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_init.sql")];

/// Where admin changes to the registry are kept.
pub trait Store {
    /// Upstreams added through the admin API: (name, its `[[upstream]]` table as TOML).
    fn upstreams(&self) -> anyhow::Result<Vec<(String, String)>>;
    /// Adds or replaces an upstream.
    fn put_upstream(&self, name: &str, spec: &str) -> anyhow::Result<()>;
    /// Removes an upstream: its admin entry if any, and records that a config-file entry of
    /// that name stays removed.
    fn remove_upstream(&self, name: &str) -> anyhow::Result<()>;
    /// Config-file upstreams removed through the admin API.
    fn removed(&self) -> anyhow::Result<Vec<String>>;
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
    fn upstreams(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT name, spec FROM upstreams ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_upstream(&self, name: &str, spec: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO upstreams (name, spec, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated_ms = excluded.updated_ms",
            rusqlite::params![name, spec, now_ms()],
        )?;
        Ok(())
    }

    fn remove_upstream(&self, name: &str) -> anyhow::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM upstreams WHERE name = ?1", [name])?;
        tx.execute(
            "INSERT INTO removed (name, updated_ms) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            rusqlite::params![name, now_ms()],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn removed(&self) -> anyhow::Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT name FROM removed ORDER BY name")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The effective configuration text: the config file with the store applied. Config-file
/// upstreams the store removed, or that an admin entry of the same name replaces, are left
/// out; admin entries are appended. The file alone is validated first, so its errors keep
/// their line numbers.
pub fn compose(
    file_text: &str,
    source: &str,
    store: &dyn Store,
    ov: &crate::config::Overrides,
) -> anyhow::Result<crate::config::Config> {
    let entries = store.upstreams()?;
    let removed = store.removed()?;
    let file = crate::config::Config::parse(file_text, source, ov)?;
    if entries.is_empty() && removed.is_empty() {
        return Ok(file);
    }
    let mut doc: toml::Table = toml::from_str(file_text).with_context(|| source.to_string())?;
    let drop: std::collections::HashSet<&str> = removed
        .iter()
        .map(String::as_str)
        .chain(entries.iter().map(|(n, _)| n.as_str()))
        .collect();
    let mut list: Vec<toml::Value> = match doc.remove("upstream") {
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
            toml::from_str(spec).with_context(|| format!("stored upstream {name:?}"))?;
        list.push(toml::Value::Table(table));
    }
    doc.insert("upstream".into(), toml::Value::Array(list));
    let text = toml::to_string(&doc).context("composing the configuration")?;
    crate::config::Config::parse(&text, &format!("{source} + store"), ov)
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
            s.put_upstream(
                "b",
                "name = \"b\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:8/mcp\"\n",
            )
            .expect("put");
        }
        let s = Sqlite::open(&path).expect("reopen");
        assert_eq!(s.upstreams().expect("list").len(), 1);
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
        s.put_upstream(
            "b",
            "name = \"b\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:8/mcp\"\n",
        )
        .expect("put");
        let c = compose(FILE, "f", &s, &ov).expect("with b");
        let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        s.remove_upstream("a").expect("remove");
        let c = compose(FILE, "f", &s, &ov).expect("without a");
        let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(c.gateway.listen.port(), 1, "the file's [gateway] is kept");
    }
}
