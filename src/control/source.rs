//! Where the configuration comes from: the config file (or the embedded default) and the
//! overrides, read again on every reload with the store's changes applied.

use crate::config::Config;

/// Where the configuration comes from, for reloads.
pub struct Source {
    /// The config file (`None`: the embedded default).
    pub path: Option<std::path::PathBuf>,
    /// Command-line and environment overrides, applied again on reload.
    pub overrides: crate::config::Overrides,
}

impl Source {
    /// The config file with the store's changes applied.
    pub fn load(&self, store: &dyn crate::store::Store) -> anyhow::Result<Config> {
        let (text, name) = self.text()?;
        crate::store::compose(&text, &name, store, &self.overrides)
    }

    /// As [`Source::load`], with `extra` as if the store held it already: what a reload
    /// would load once the admin API stores it.
    pub fn load_with(
        &self,
        store: &dyn crate::store::Store,
        extra: crate::store::Candidate<'_>,
    ) -> anyhow::Result<Config> {
        let (text, name) = self.text()?;
        crate::store::compose_with(&text, &name, store, &self.overrides, Some(extra))
    }

    /// The config file's text and its name for messages.
    fn text(&self) -> anyhow::Result<(String, String)> {
        Ok(match &self.path {
            Some(p) => (
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", p.display()))?,
                p.display().to_string(),
            ),
            None => (
                crate::config::EMBEDDED_DEFAULT.to_string(),
                "<embedded default>".to_string(),
            ),
        })
    }
}
