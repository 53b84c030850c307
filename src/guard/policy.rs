//! What `[guard]` compiles to: the catalog scanner with the operator's rules, what catalog
//! findings and definition changes do per upstream, and which `tools/call`s are screened.
//!
//! Built once per configuration (start and reload) off the request path. The control plane
//! asks [`Policy::catalog_rule`] for each upstream when it applies the catalog guard; the
//! snapshot asks [`Policy::screen`] once per exposed tool, so a worker finds a call's
//! [`Screen`] in the tool's route entry and pays nothing for a tool without one.

use std::{path::Path, sync::Arc};

use crate::{
    config::raw::{GuardCatalogConfig, GuardConfig, GuardScreenConfig},
    guard::{
        screen::{Class, Classes, Hit, Screener},
        Scanner, Severity,
    },
    text::glob_match,
};

/// What a catalog finding does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Logged, counted and listed by the admin API; the item stays served.
    Log,
    /// The tool, prompt or resource leaves the catalog (not listed, not callable).
    Hide,
    /// The whole upstream leaves the catalog and its calls are refused.
    Block,
}

impl Action {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Hide => "hide",
            Action::Block => "block",
        }
    }
}

/// What a changed tool definition does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinMode {
    /// No pinning.
    Off,
    /// Counted, audited and listed for approval; the new definition is served.
    Report,
    /// The changed tool is hidden until an operator approves the new definition.
    Hide,
}

/// The catalog policy of some upstreams.
#[derive(Clone, Debug)]
pub struct CatalogRule {
    upstreams: Option<Vec<String>>,
    /// By severity: low, medium, high, critical.
    by_severity: [Action; 4],
    /// Pinning.
    pub pin: PinMode,
}

impl Default for CatalogRule {
    fn default() -> Self {
        Self {
            upstreams: None,
            by_severity: [Action::Log, Action::Log, Action::Log, Action::Hide],
            pin: PinMode::Report,
        }
    }
}

impl CatalogRule {
    /// What a finding of `severity` does.
    pub fn action(&self, severity: Severity) -> Action {
        self.by_severity[match severity {
            Severity::Low => 0,
            Severity::Medium => 1,
            Severity::High => 2,
            Severity::Critical => 3,
        }]
    }
}

/// What happens to what a screen finds, per class of finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not looked for.
    Allow,
    /// Logged, counted and audited; the message passes unchanged.
    Flag,
    /// Replaced by `[REDACTED:<kind>]`.
    Mask,
    /// The call is refused (arguments) or its result replaced by an error (-32016).
    Block,
}

impl Verdict {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Flag => "flag",
            Verdict::Mask => "mask",
            Verdict::Block => "block",
        }
    }
}

/// How one tool's calls are screened (one `[[guard.screen]]` entry).
#[derive(Debug, PartialEq, Eq)]
pub struct Screen {
    /// Index of its `[[guard.screen]]` entry (for logs).
    pub entry: usize,
    /// Secrets.
    pub secrets: Verdict,
    /// Personal data.
    pub pii: Verdict,
    /// Prompt injection and hidden text (results only).
    pub injection: Verdict,
    /// Screen arguments.
    pub arguments: bool,
    /// Screen results.
    pub results: bool,
}

/// What screening decided for one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Screened {
    /// Nothing found (or only allowed or flagged findings): the bytes pass unchanged.
    Pass,
    /// Masked: the new JSON of the screened value.
    Replace(Vec<u8>),
    /// Refused: the kinds found that a policy blocks (labels, deduplicated).
    Block(Vec<&'static str>),
}

/// Which side of a call is screened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The call's `arguments`.
    Arguments,
    /// The answer's `result`.
    Result,
}

impl Direction {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Arguments => "arguments",
            Direction::Result => "result",
        }
    }
}

impl Screen {
    /// What this screen does with findings of `class`.
    pub fn verdict(&self, class: Class) -> Verdict {
        match class {
            Class::Secret => self.secrets,
            Class::Pii => self.pii,
            Class::Injection => self.injection,
        }
    }

    /// Whether `direction` is screened at all.
    pub fn covers(&self, direction: Direction) -> bool {
        match direction {
            Direction::Arguments => self.arguments,
            Direction::Result => self.results,
        }
    }

    fn classes(&self, direction: Direction, pick: impl Fn(Verdict) -> bool) -> Classes {
        Classes {
            secrets: pick(self.secrets),
            pii: pick(self.pii),
            // Injection is about what the model reads: results only.
            injection: direction == Direction::Result && pick(self.injection),
        }
    }

    /// Scans `json` (the raw `arguments` or `result`) and decides; `hits` gets every
    /// finding (for reporting). Invalid JSON (never produced by the gateway's parser) is
    /// blocked rather than passed unscreened.
    pub fn apply(
        &self,
        screener: &Screener,
        json: &[u8],
        direction: Direction,
        hits: &mut Vec<Hit>,
    ) -> Screened {
        let look = self.classes(direction, |v| v != Verdict::Allow);
        if screener.scan(json, look, hits).is_err() {
            return Screened::Block(vec!["invalid_json"]);
        }
        if hits.is_empty() {
            return Screened::Pass;
        }
        let mut blocked: Vec<&'static str> = hits
            .iter()
            .filter(|h| self.verdict(h.kind.class()) == Verdict::Block)
            .map(|h| h.kind.label())
            .collect();
        if !blocked.is_empty() {
            blocked.sort_unstable();
            blocked.dedup();
            return Screened::Block(blocked);
        }
        let mask = self.classes(direction, |v| v == Verdict::Mask);
        if hits.iter().any(|h| mask.has(h.kind.class())) {
            return Screened::Replace(screener.mask(json, hits, mask));
        }
        Screened::Pass
    }
}

/// `json` with every secret masked (whatever any screen says), e.g. arguments about to be
/// written to the audit log; `None` if it is not JSON.
pub fn mask_secrets(screener: &Screener, json: &[u8]) -> Option<Vec<u8>> {
    let secrets = Classes {
        secrets: true,
        ..Default::default()
    };
    let mut hits = Vec::new();
    screener.scan(json, secrets, &mut hits).ok()?;
    Some(if hits.is_empty() {
        json.to_vec()
    } else {
        screener.mask(json, &hits, secrets)
    })
}

/// The kind labels of `hits`, deduplicated, for messages and audit lines.
pub fn kinds(hits: &[Hit]) -> Vec<&'static str> {
    let mut k: Vec<&'static str> = hits.iter().map(|h| h.kind.label()).collect();
    k.sort_unstable();
    k.dedup();
    k
}

/// The message of a call refused for `kinds` found in `direction`: names the kinds, never a
/// value.
pub fn blocked_message(direction: Direction, kinds: &[&str]) -> String {
    format!(
        "Blocked by guardrail: the {} contain{} {}",
        match direction {
            Direction::Arguments => "arguments",
            Direction::Result => "tool result",
        },
        if direction == Direction::Arguments {
            ""
        } else {
            "s"
        },
        kinds.join(", ")
    )
}

struct ScreenRule {
    upstreams: Option<Vec<String>>,
    tools: Option<Vec<String>>,
    servers: Option<Vec<String>>,
    screen: Arc<Screen>,
}

/// The compiled `[guard]`.
#[derive(Default)]
pub struct Policy {
    /// The catalog scanner (built-in rules plus `rules_files`).
    pub scanner: Scanner,
    /// The call screener (secrets, personal data, injection).
    pub screener: Screener,
    catalog: Vec<CatalogRule>,
    default_catalog: CatalogRule,
    screens: Vec<ScreenRule>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.scanner.rules().len())
            .field("catalog", &self.catalog)
            .field("screens", &self.screens.len())
            .finish()
    }
}

fn matches(globs: &Option<Vec<String>>, name: &str) -> bool {
    globs
        .as_ref()
        .is_none_or(|g| g.iter().any(|g| glob_match(g, name)))
}

impl Policy {
    /// Compiles `[guard]`; rule files are read relative to `base_dir`. Errors name the
    /// field.
    pub fn compile(raw: &GuardConfig, base_dir: &Path) -> Result<Policy, String> {
        let mut texts = Vec::new();
        for (i, f) in raw.rules_files.iter().enumerate() {
            let path = base_dir.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("guard.rules_files[{i}]: {}: {e}", path.display()))?;
            texts.push(text);
        }
        let mut sources = vec![super::BUILTIN_RULES];
        sources.extend(texts.iter().map(String::as_str));
        let scanner =
            Scanner::from_sources(&sources).map_err(|e| format!("guard.rules_files: {e}"))?;
        let catalog = raw
            .catalog
            .iter()
            .enumerate()
            .map(|(i, c)| catalog_rule(i, c))
            .collect::<Result<_, _>>()?;
        let screens = raw
            .screen
            .iter()
            .enumerate()
            .map(|(i, s)| screen_rule(i, s))
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            scanner,
            screener: Screener::new(),
            catalog,
            default_catalog: CatalogRule::default(),
            screens,
        })
    }

    /// The catalog policy of upstream `name`.
    pub fn catalog_rule(&self, name: &str) -> &CatalogRule {
        self.catalog
            .iter()
            .find(|r| matches(&r.upstreams, name))
            .unwrap_or(&self.default_catalog)
    }

    /// Whether any call is screened.
    pub fn screens_calls(&self) -> bool {
        !self.screens.is_empty()
    }

    /// How calls of tool `tool` (the upstream's own name) of `upstream` through `server`
    /// (`None`: `/mcp`) are screened, if at all.
    pub fn screen(&self, upstream: &str, tool: &str, server: Option<&str>) -> Option<Arc<Screen>> {
        let server = server.unwrap_or("/mcp");
        self.screens
            .iter()
            .find(|r| {
                matches(&r.upstreams, upstream)
                    && matches(&r.tools, tool)
                    && r.servers
                        .as_ref()
                        .is_none_or(|s| s.iter().any(|g| glob_match(g, server)))
            })
            .map(|r| r.screen.clone())
            .filter(|s| {
                (s.arguments || s.results)
                    && [s.secrets, s.pii, s.injection]
                        .iter()
                        .any(|v| *v != Verdict::Allow)
            })
    }
}

fn catalog_rule(i: usize, c: &GuardCatalogConfig) -> Result<CatalogRule, String> {
    let d = CatalogRule::default();
    let action = |field: &str, v: &Option<String>, default: Action| match v.as_deref() {
        None => Ok(default),
        Some("log") => Ok(Action::Log),
        Some("hide") => Ok(Action::Hide),
        Some("block") => Ok(Action::Block),
        Some(other) => Err(format!(
            "guard.catalog[{i}].{field}: {other:?}: expected log, hide or block"
        )),
    };
    let pin = match c.pin.as_deref() {
        None => d.pin,
        Some("off") => PinMode::Off,
        Some("report") => PinMode::Report,
        Some("hide") => PinMode::Hide,
        Some(other) => {
            return Err(format!(
                "guard.catalog[{i}].pin: {other:?}: expected off, report or hide"
            ))
        }
    };
    Ok(CatalogRule {
        upstreams: c.upstreams.clone(),
        by_severity: [
            action("low", &c.low, d.by_severity[0])?,
            action("medium", &c.medium, d.by_severity[1])?,
            action("high", &c.high, d.by_severity[2])?,
            action("critical", &c.critical, d.by_severity[3])?,
        ],
        pin,
    })
}

fn screen_rule(i: usize, s: &GuardScreenConfig) -> Result<ScreenRule, String> {
    let verdict = |field: &str, v: &Option<String>, default: Verdict, flag: bool| match v.as_deref()
    {
        None => Ok(default),
        Some("allow") => Ok(Verdict::Allow),
        Some("mask") if !flag => Ok(Verdict::Mask),
        Some("flag") if flag => Ok(Verdict::Flag),
        Some("block") => Ok(Verdict::Block),
        Some(other) => Err(format!(
            "guard.screen[{i}].{field}: {other:?}: expected {}",
            if flag {
                "allow, flag or block"
            } else {
                "allow, mask or block"
            }
        )),
    };
    for (field, globs) in [
        ("upstreams", &s.upstreams),
        ("tools", &s.tools),
        ("servers", &s.servers),
    ] {
        if globs.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!(
                "guard.screen[{i}].{field}: empty list (leave it out to mean all)"
            ));
        }
    }
    Ok(ScreenRule {
        upstreams: s.upstreams.clone(),
        tools: s.tools.clone(),
        servers: s.servers.clone(),
        screen: Arc::new(Screen {
            entry: i,
            secrets: verdict("secrets", &s.secrets, Verdict::Mask, false)?,
            pii: verdict("pii", &s.pii, Verdict::Allow, false)?,
            injection: verdict("injection", &s.injection, Verdict::Flag, true)?,
            arguments: s.arguments.unwrap_or(true),
            results: s.results.unwrap_or(true),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(toml_text: &str) -> Result<Policy, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            guard: GuardConfig,
        }
        let d: Doc = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Policy::compile(&d.guard, Path::new("."))
    }

    #[test]
    fn defaults_and_first_match() {
        let p = compile(
            r#"
            [guard]
            [[guard.catalog]]
            upstreams = ["trusted-*"]
            critical = "log"
            pin = "off"
            [[guard.catalog]]
            high = "hide"
            medium = "block"
            pin = "hide"
            [[guard.screen]]
            upstreams = ["files"]
            tools = ["read_*"]
            pii = "mask"
            [[guard.screen]]
            servers = ["/mcp"]
            injection = "block"
            secrets = "allow"
            "#,
        )
        .expect("test");
        let t = p.catalog_rule("trusted-a");
        assert_eq!(t.action(Severity::Critical), Action::Log);
        assert_eq!(t.pin, PinMode::Off);
        let o = p.catalog_rule("other");
        assert_eq!(o.action(Severity::High), Action::Hide);
        assert_eq!(o.action(Severity::Medium), Action::Block);
        assert_eq!(o.action(Severity::Low), Action::Log);
        assert_eq!(o.pin, PinMode::Hide);

        let s = p
            .screen("files", "read_file", Some("bundle"))
            .expect("test");
        assert_eq!(
            (s.secrets, s.pii, s.injection),
            (Verdict::Mask, Verdict::Mask, Verdict::Flag)
        );
        // Second entry only on /mcp.
        assert!(p.screen("files", "write_file", Some("bundle")).is_none());
        let s = p.screen("files", "write_file", None).expect("test");
        assert_eq!((s.secrets, s.injection), (Verdict::Allow, Verdict::Block));

        let none = compile("[guard]").expect("test");
        assert!(!none.screens_calls());
        assert!(none.screen("a", "b", None).is_none());
        let d = none.catalog_rule("x");
        assert_eq!(d.action(Severity::Critical), Action::Hide);
        assert_eq!(d.action(Severity::High), Action::Log);
        assert_eq!(d.pin, PinMode::Report);
    }

    #[test]
    fn an_entry_that_allows_everything_screens_nothing() {
        let p = compile(
            r#"
            [[guard.screen]]
            secrets = "allow"
            injection = "allow"
            "#,
        )
        .expect("test");
        assert!(p.screen("a", "b", None).is_none());
    }

    #[test]
    fn errors_name_the_field() {
        for (text, want) in [
            (
                "[[guard.catalog]]\nhigh = \"drop\"",
                "guard.catalog[0].high",
            ),
            ("[[guard.catalog]]\npin = \"yes\"", "guard.catalog[0].pin"),
            (
                "[[guard.screen]]\nsecrets = \"flag\"",
                "guard.screen[0].secrets",
            ),
            (
                "[[guard.screen]]\ninjection = \"mask\"",
                "guard.screen[0].injection",
            ),
            ("[[guard.screen]]\ntools = []", "guard.screen[0].tools"),
            (
                "[guard]\nrules_files = [\"/nonexistent/r.toml\"]",
                "guard.rules_files[0]",
            ),
        ] {
            let e = compile(text).err().unwrap_or_default();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
