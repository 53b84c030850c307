//! Tool-poisoning scan of upstream catalogs (issue 10, first part).
//!
//! The control plane hands each tool of a fetched catalog to [`Scanner::scan_tool`],
//! with the names of every tool in the gateway, and gets [`Finding`]s back: hidden
//! instructions, references to secrets, exfiltration URLs, cross-tool manipulation and
//! name shadowing. [`pin_hash`] fingerprints a tool for rug-pull detection.
//!
//! Every string is normalized first ([`normalize`]): NFKC, hidden characters out (their
//! presence is a finding), Unicode tag characters decoded so the text they hide is
//! scanned too. Base64 runs of 40+ characters that decode to text are scanned again
//! under the field `<path>#base64`. Text rules come from a versioned TOML file
//! ([`BUILTIN_RULES`], embedded), matched in one Aho-Corasick pass (keywords) and one
//! `RegexSet` pass (patterns), case-insensitive; checks that need the catalog (cross-tool
//! references, shadowing) and the Unicode checks are code, with severities from the file.
//!
//! The scanner only reports. It never blocks, rewrites or drops a tool, and it is not on
//! the request path: what to do with a finding is policy, decided elsewhere.

pub mod catalog;
pub mod normalize;
pub mod policy;
pub mod screen;

#[cfg(test)]
mod tests;

use std::collections::HashSet;

use aho_corasick::AhoCorasick;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use normalize::{normalize, Hidden};

/// The rules shipped with the gateway (`src/guard/rules.toml`).
pub const BUILTIN_RULES: &str = include_str!("guard/rules.toml");

/// The rules-file `version` this build reads.
pub const RULES_VERSION: u32 = 1;

/// The lowest severity at which a tool counts as poisoned.
pub const POISONED_AT: Severity = Severity::Medium;

/// How bad a finding is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; common in honest descriptions too.
    Low,
    /// Suspicious on its own.
    Medium,
    /// An attack pattern.
    High,
    /// An attack pattern with no honest use.
    Critical,
}

/// One rule hit in one field of one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule id, e.g. `secrets.ssh`.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// JSON path of the string: `name`, `description`,
    /// `inputSchema.properties.path.description`, `...enum[2]`; `#base64` is appended for
    /// text decoded from a base64 run in that string.
    pub field: String,
    /// Byte range in the normalized text of the field (empty for removed characters).
    pub span: (usize, usize),
    /// At most 80 chars of normalized text from just before the span; for shadowing,
    /// `name ~ server/other_name`.
    pub excerpt: String,
}

/// A rule as loaded; the patterns live in the [`Scanner`]'s automata.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id, `family.name`.
    pub id: String,
    /// Severity of its findings.
    pub severity: Severity,
    /// What it catches, for operators.
    pub description: String,
}

/// A rules file that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not TOML, or not the rules schema.
    #[error("rules file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A rule that is inconsistent (duplicate id, no pattern, unknown builtin).
    #[error("rule {id}: {why}")]
    Rule {
        /// The rule id.
        id: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A pattern that does not compile.
    #[error("rules regex: {0}")]
    Regex(#[from] regex::Error),
    /// A `version` this build does not read.
    #[error("rules file version {0} is not supported (this build reads {RULES_VERSION})")]
    Version(u32),
    /// Keywords that do not build an automaton.
    #[error("rules keywords: {0}")]
    Keywords(#[from] aho_corasick::BuildError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    version: u32,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    id: String,
    severity: Severity,
    description: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    regex: Vec<String>,
    #[serde(default)]
    builtin: bool,
}

/// Ids of the checks written in code. Each must appear in the rules, `builtin = true`.
const BUILTINS: [&str; 10] = [
    "unicode.zero-width",
    "unicode.bidi",
    "unicode.tag",
    "encoding.base64",
    "cross.other-server-tool",
    "cross.other-server-hijack",
    "shadow.confusable",
    "shadow.near-name",
    "shadow.duplicate-name",
    "name.non-ascii",
];

// Indexes into `BUILTINS` (and so into `Scanner::builtin`).
const B_ZERO_WIDTH: usize = 0;
const B_BIDI: usize = 1;
const B_TAG: usize = 2;
const B_BASE64: usize = 3;
const B_CROSS: usize = 4;
const B_HIJACK: usize = 5;
const B_CONFUSABLE: usize = 6;
const B_NEAR: usize = 7;
const B_DUPLICATE: usize = 8;
const B_NON_ASCII: usize = 9;

/// Schema keys whose string values are structure, not prose: not scanned.
const SKIP_KEYS: [&str; 7] = [
    "type", "format", "$schema", "$ref", "$id", "pattern", "required",
];

/// Base64 decoding that takes padded and unpadded runs alike.
const B64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const B64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
const B64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

/// Byte-length gap past which two names are not compared for shadowing.
const MAX_SHADOW_LEN_GAP: usize = 8;

/// How deep base64 inside base64 is followed.
const MAX_DEPTH: u8 = 2;

/// Scans tool definitions against compiled rules. Build once; `scan_tool` takes `&self`.
#[derive(Debug)]
pub struct Scanner {
    rules: Vec<Rule>,
    keywords: AhoCorasick,
    keyword_rule: Vec<usize>,
    set: RegexSet,
    regexes: Vec<Regex>,
    regex_rule: Vec<usize>,
    builtin: [usize; BUILTINS.len()],
    base64_run: Regex,
    order_word: Regex,
}

// === impl Scanner ===

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// The scanner for [`BUILTIN_RULES`].
    pub fn new() -> Self {
        Self::from_sources(&[BUILTIN_RULES]).expect("the embedded rules compile")
    }

    /// A scanner for the rules of several files, e.g. the builtin one then an operator's.
    /// Ids must be unique across files.
    pub fn from_sources(sources: &[&str]) -> Result<Self, RulesError> {
        let mut rules = Vec::new();
        let mut keywords = Vec::new();
        let mut keyword_rule = Vec::new();
        let mut patterns = Vec::new();
        let mut regex_rule = Vec::new();
        let mut builtin = [usize::MAX; BUILTINS.len()];
        let mut ids = HashSet::new();
        for source in sources {
            let file: RulesFile = toml::from_str(source)?;
            if file.version != RULES_VERSION {
                return Err(RulesError::Version(file.version));
            }
            for rc in file.rules {
                let bad = |why| RulesError::Rule {
                    id: rc.id.clone(),
                    why,
                };
                if !ids.insert(rc.id.clone()) {
                    return Err(bad("duplicate id"));
                }
                let idx = rules.len();
                if rc.builtin {
                    if !rc.keywords.is_empty() || !rc.regex.is_empty() {
                        return Err(bad("a builtin rule has no patterns"));
                    }
                    let Some(b) = BUILTINS.iter().position(|b| *b == rc.id) else {
                        return Err(bad("unknown builtin"));
                    };
                    builtin[b] = idx;
                } else if rc.keywords.is_empty() && rc.regex.is_empty() {
                    return Err(bad("no keywords and no regex"));
                }
                for k in rc.keywords {
                    keywords.push(k);
                    keyword_rule.push(idx);
                }
                for r in rc.regex {
                    patterns.push(r);
                    regex_rule.push(idx);
                }
                rules.push(Rule {
                    id: rc.id,
                    severity: rc.severity,
                    description: rc.description,
                });
            }
        }
        if let Some(b) = builtin.iter().position(|i| *i == usize::MAX) {
            return Err(RulesError::Rule {
                id: BUILTINS[b].to_owned(),
                why: "builtin check missing from the rules",
            });
        }
        let keywords = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&keywords)?;
        let set = RegexSetBuilder::new(&patterns)
            .case_insensitive(true)
            .build()?;
        let regexes = patterns
            .iter()
            .map(|p| RegexBuilder::new(p).case_insensitive(true).build())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scanner {
            rules,
            keywords,
            keyword_rule,
            set,
            regexes,
            regex_rule,
            builtin,
            base64_run: Regex::new(r"[A-Za-z0-9+/_-]{40,}={0,2}")?,
            order_word: RegexBuilder::new(
                r"\b(instead|overrid\w*|replac\w*|redirect\w*|always|never|must|whenever|bcc|cc|chang\w*|modif\w*|ignor\w*|do\s+not|don'?t|prefer\w*|first|before|after|also|only)\b",
            )
            .case_insensitive(true)
            .build()?,
        })
    }

    /// The loaded rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Scans one tool definition (`{name, description, inputSchema, ...}`) of `server`.
    ///
    /// `all_tools` is every `(server, name)` of the gateway's catalog (this tool may be in
    /// it); names of other servers feed the cross-tool and shadowing checks. Scanned:
    /// `name`, `title`, `description`, and every string under `inputSchema` and
    /// `annotations` except structural keys (`type`, `format`, `pattern`, `required`,
    /// `$ref`...). Each rule reports at most once per field.
    pub fn scan_tool(
        &self,
        server: &str,
        tool: &Value,
        all_tools: &[(String, String)],
    ) -> Vec<Finding> {
        self.scan_tool_among(tool, &Others::of(server, all_tools))
    }

    /// [`Scanner::scan_tool`] with the rest of the catalog prepared once ([`Others::of`]):
    /// for scanning many tools of one server.
    pub fn scan_tool_among(&self, tool: &Value, others: &Others<'_>) -> Vec<Finding> {
        let mut out = Vec::new();
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
        self.scan_name(name, others, &mut out);
        let idents = &others.idents;
        let mut fields = Vec::new();
        for key in ["name", "title", "description"] {
            if let Some(s) = tool.get(key).and_then(Value::as_str) {
                fields.push((key.to_owned(), s));
            }
        }
        for key in ["inputSchema", "annotations"] {
            if let Some(v) = tool.get(key) {
                collect_strings(v, key.to_owned(), &mut fields);
            }
        }
        for (field, raw) in &fields {
            self.scan_text(field, raw, idents, 0, &mut out);
        }
        out
    }

    fn finding(
        &self,
        builtin_or_rule: RuleRef,
        field: &str,
        text: &str,
        span: (usize, usize),
    ) -> Finding {
        let rule = match builtin_or_rule {
            RuleRef::Builtin(b) => &self.rules[self.builtin[b]],
            RuleRef::Index(i) => &self.rules[i],
        };
        Finding {
            rule: rule.id.clone(),
            severity: rule.severity,
            field: field.to_owned(),
            span,
            excerpt: excerpt(text, span),
        }
    }

    /// Text rules, hidden characters, cross-tool references and base64 of one string.
    fn scan_text(
        &self,
        field: &str,
        raw: &str,
        idents: &Idents,
        depth: u8,
        out: &mut Vec<Finding>,
    ) {
        let norm = normalize(raw);
        let text = norm.text.as_str();
        for (h, span) in &norm.hidden {
            let b = match h {
                Hidden::ZeroWidth => B_ZERO_WIDTH,
                Hidden::Bidi => B_BIDI,
                Hidden::Tag => B_TAG,
            };
            out.push(self.finding(RuleRef::Builtin(b), field, text, *span));
        }
        let mut seen = HashSet::new();
        for m in self.keywords.find_overlapping_iter(text) {
            let r = self.keyword_rule[m.pattern().as_usize()];
            if seen.insert(r) {
                out.push(self.finding(RuleRef::Index(r), field, text, (m.start(), m.end())));
            }
        }
        for i in self.set.matches(text).iter() {
            let r = self.regex_rule[i];
            if seen.contains(&r) {
                continue;
            }
            if let Some(m) = self.regexes[i].find(text) {
                seen.insert(r);
                out.push(self.finding(RuleRef::Index(r), field, text, (m.start(), m.end())));
            }
        }
        self.scan_references(field, text, idents, out);
        if depth >= MAX_DEPTH {
            return;
        }
        let mut reported = false;
        for m in self.base64_run.find_iter(text) {
            let Some(decoded) = decode_text(m.as_str()) else {
                continue;
            };
            if !reported {
                reported = true;
                out.push(self.finding(
                    RuleRef::Builtin(B_BASE64),
                    field,
                    text,
                    (m.start(), m.end()),
                ));
            }
            self.scan_text(&format!("{field}#base64"), &decoded, idents, depth + 1, out);
        }
    }

    /// Names of other servers' tools in the text; with an order in the same sentence,
    /// a hijack.
    fn scan_references(&self, field: &str, text: &str, idents: &Idents, out: &mut Vec<Finding>) {
        // ASCII lowercasing keeps byte offsets; tool names are ASCII (else `name.non-ascii`).
        let lower = text.to_ascii_lowercase();
        let mut hits = Vec::new();
        if !idents.words.is_empty() {
            // One pass over the words of the text, each looked up.
            let bytes = lower.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if !is_ident_byte(bytes[i]) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < bytes.len() && is_ident_byte(bytes[i]) {
                    i += 1;
                }
                if idents.words.contains(&lower[start..i]) {
                    hits.push((start, i));
                }
            }
        }
        for name in &idents.dotted {
            if let Some(start) = find_word(&lower, name) {
                hits.push((start, start + name.len()));
            }
        }
        let (mut mention, mut hijack) = (false, false);
        for span in hits {
            if mention && hijack {
                break;
            }
            let sentence = sentence_around(text, span);
            if !hijack && self.order_word.is_match(sentence) {
                hijack = true;
                out.push(self.finding(RuleRef::Builtin(B_HIJACK), field, text, span));
            } else if !mention && !hijack {
                mention = true;
                out.push(self.finding(RuleRef::Builtin(B_CROSS), field, text, span));
            }
        }
    }

    /// Shadowing: the tool's name against other servers' names.
    fn scan_name(&self, name: &str, others: &Others<'_>, out: &mut Vec<Finding>) {
        let norm = normalize(name).text;
        let span = (0, norm.len());
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            out.push(self.finding(RuleRef::Builtin(B_NON_ASCII), "name", &norm, span));
        }
        let skel = skeleton(name);
        let mut hit = [false; 3];
        for ((server, other), other_skel) in others.names.iter().zip(&others.skeletons) {
            let kind = if other == name {
                B_DUPLICATE
            } else if other.len().abs_diff(name.len()) > MAX_SHADOW_LEN_GAP {
                // Too far apart in bytes to fold into one edit (a Cyrillic letter is 2
                // bytes, `rn` for `m` one more): skip the skeleton.
                continue;
            } else {
                if *other_skel == skel {
                    B_CONFUSABLE
                } else if skel.len() >= 5 && one_edit(&skel, other_skel) {
                    B_NEAR
                } else {
                    continue;
                }
            };
            let slot = kind - B_CONFUSABLE;
            if !hit[slot] {
                hit[slot] = true;
                let mut f = self.finding(RuleRef::Builtin(kind), "name", &norm, span);
                f.excerpt = truncate(&format!("{norm} ~ {server}/{other}"), 80);
                out.push(f);
            }
        }
    }
}

/// The tools of every other server, prepared once for scanning one server's tools: names,
/// their confusable skeletons, and the identifier-like ones lowercased.
pub struct Others<'a> {
    names: Vec<&'a (String, String)>,
    skeletons: Vec<String>,
    idents: Idents,
}

impl<'a> Others<'a> {
    /// The tools in `all_tools` (`(server, name)`) that are not `server`'s.
    pub fn of(server: &str, all_tools: &'a [(String, String)]) -> Self {
        let names: Vec<&(String, String)> = all_tools.iter().filter(|(s, _)| s != server).collect();
        let skeletons = names.iter().map(|(_, n)| skeleton(n)).collect();
        // Looked for in every field: lowercased once.
        let mut idents = Idents::default();
        for (_, n) in names.iter().filter(|(_, n)| looks_like_identifier(n)) {
            let n = n.to_ascii_lowercase();
            if n.bytes().all(is_ident_byte) {
                idents.words.insert(n);
            } else {
                idents.dotted.push(n);
            }
        }
        Others {
            names,
            skeletons,
            idents,
        }
    }
}

/// Other servers' identifier-like tool names, lowercase, for `scan_references`.
#[derive(Default)]
struct Idents {
    /// Names of `[a-z0-9_]` only: each word of the text is looked up.
    words: HashSet<String>,
    /// Names with `-` or `.`: searched for one by one.
    dotted: Vec<String>,
}

/// Which rule a finding is for: a builtin check, or a rule by index.
#[derive(Clone, Copy)]
enum RuleRef {
    Builtin(usize),
    Index(usize),
}

/// Collects the prose strings of `v` with their JSON paths.
fn collect_strings<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((path, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_strings(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                if !SKIP_KEYS.contains(&k.as_str()) {
                    collect_strings(item, format!("{path}.{k}"), out);
                }
            }
        }
        _ => {}
    }
}

/// Decodes a base64 run if it is text: valid UTF-8, at least 90% printable.
fn decode_text(run: &str) -> Option<String> {
    let run = run.trim_end_matches('=');
    let engine = if run.contains(['-', '_']) {
        &B64_URL_SAFE
    } else {
        &B64_STANDARD
    };
    let text = String::from_utf8(engine.decode(run).ok()?).ok()?;
    let total = text.chars().count();
    let printable = text
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .count();
    (printable * 10 >= total * 9 && !text.trim().is_empty()).then_some(text)
}

/// Whether a tool name reads as an identifier (`send_email`, `getUser`), not as a word
/// (`query`, `find`): only such names are looked for in other servers' text, since a
/// plain word there is prose far more often than a reference.
fn looks_like_identifier(name: &str) -> bool {
    name.len() >= 4
        && (name.contains(['_', '-', '.']) || name.chars().skip(1).any(|c| c.is_ascii_uppercase()))
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// First occurrence of `needle` in `hay` not inside a longer identifier.
fn find_word(hay: &str, needle: &str) -> Option<usize> {
    let ident = is_ident_byte;
    let bytes = hay.as_bytes();
    hay.match_indices(needle).map(|(i, _)| i).find(|&i| {
        let end = i + needle.len();
        (i == 0 || !ident(bytes[i - 1])) && (end == bytes.len() || !ident(bytes[end]))
    })
}

/// The sentence (split on `.`, `;`, `!`, `?` and newlines) holding `span`.
fn sentence_around(text: &str, span: (usize, usize)) -> &str {
    let stop = |c: char| matches!(c, '.' | ';' | '!' | '?' | '\n');
    let start = text[..span.0].rfind(stop).map_or(0, |i| i + 1);
    // A dot inside a name (`server.tool`) does not end the sentence: search past the span.
    let end = text[span.1..].find(stop).map_or(text.len(), |i| span.1 + i);
    &text[start..end]
}

/// The name as it looks: NFKC, lowercase, confusables folded to one Latin letter,
/// separators to `_`.
fn skeleton(name: &str) -> String {
    // ASCII is NFKC already and has no hidden characters.
    let norm = if name.is_ascii() {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(normalize(name).text)
    };
    let folded: String = norm
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'а' | 'α' => 'a',
            'в' | 'β' => 'b',
            'с' | 'ϲ' => 'c',
            'ԁ' => 'd',
            'е' | 'ε' | '3' => 'e',
            'һ' | 'н' => 'h',
            'і' | 'ι' | 'ӏ' | 'i' | '1' | '|' => 'l',
            'ј' => 'j',
            'к' | 'κ' => 'k',
            'м' => 'm',
            'η' => 'n',
            'о' | 'ο' | '0' => 'o',
            'р' | 'ρ' => 'p',
            'ԛ' => 'q',
            'ѕ' | '5' => 's',
            'т' | 'τ' => 't',
            'υ' => 'u',
            'ν' => 'v',
            'ԝ' => 'w',
            'х' | 'χ' => 'x',
            'у' => 'y',
            '-' | '.' | ' ' => '_',
            c => c,
        })
        .collect();
    if folded.contains("rn") || folded.contains("vv") {
        folded.replace("rn", "m").replace("vv", "w")
    } else {
        folded
    }
}

/// Whether `a` and `b` are exactly one insertion, deletion or substitution apart.
fn one_edit(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return one_edit_in(a.as_bytes(), b.as_bytes());
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    one_edit_in(&a, &b)
}

fn one_edit_in<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        prefix < short.len() && short[prefix + 1..] == long[prefix + 1..]
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

/// Up to 80 chars from a little before `span`, control characters as spaces.
fn excerpt(text: &str, span: (usize, usize)) -> String {
    let mut start = span.0.min(text.len()).saturating_sub(16);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    truncate(&text[start..], 80)
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// === pin_hash ===

/// SHA-256 of the canonical JSON of the tool's `{annotations, description, inputSchema,
/// name, outputSchema}` (absent keys left out, object keys sorted bytewise, no
/// whitespace, strings escaped as serde_json does). Key order in the input does not
/// matter; any change to those five does. Numbers hash as written (`1` differs from
/// `1.0`); other keys (`title`, `_meta`) are ignored.
pub fn pin_hash(tool: &Value) -> [u8; 32] {
    let mut canon = String::new();
    canon.push('{');
    // Already in sorted order.
    let keys = [
        "annotations",
        "description",
        "inputSchema",
        "name",
        "outputSchema",
    ];
    let mut first = true;
    for key in keys {
        if let Some(v) = tool.get(key) {
            if !first {
                canon.push(',');
            }
            first = false;
            write_canonical(&Value::String(key.to_owned()), &mut canon);
            canon.push(':');
            write_canonical(v, &mut canon);
        }
    }
    canon.push('}');
    Sha256::digest(canon.as_bytes()).into()
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        // Scalars print compactly and escaped through `Display`.
        scalar => out.push_str(&scalar.to_string()),
    }
}
