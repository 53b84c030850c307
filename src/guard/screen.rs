//! Screening of tool-call arguments and results for secrets, PII and prompt injection
//! (issue 10, item 4).
//!
//! For tools with a guard policy the gateway hands [`Screener::scan`] the raw bytes of a
//! `tools/call`'s `params.arguments` or of a response's `result`, and gets [`Hit`]s back;
//! [`Screener::mask`] then rewrites the string tokens that hold hits of the masked classes
//! to `[REDACTED:<label>]` and copies every other byte unchanged. What to do with a hit
//! (log, mask, refuse) is policy, decided by the caller; this module never blocks.
//!
//! # How it runs
//!
//! The JSON is walked without building a document (`json::walk`): each string *value*
//! (object keys are not scanned) is scanned once as decoded text, in place when it has no
//! backslash, else after decoding its escapes into a scratch buffer. Per string, and only
//! for the classes asked:
//!
//! - secrets: one case-sensitive Aho-Corasick pass over the literal anchors (`AKIA`,
//!   `ghp_`, `BEGIN ` (dashes checked after), `eyJ`, `sk-`, `xoxb-`, `AIza`, ...), each match confirmed by a
//!   small hand-written check; then a skip-ahead scan for token runs of 32+ bytes that
//!   reads 8 bytes at a time and jumps past the last space (or other separator) of each
//!   32-byte window, so prose costs about one word read per 25 bytes;
//! - PII: `memchr` for `@` (emails) and an 8-bytes-at-a-time digit search, then a parse from each
//!   digit run (cards, phones, IBANs);
//! - injection: one Aho-Corasick pass over the phrases, on an ASCII-lowercased copy
//!   of the string (so the automaton keeps its SIMD prefilter), and a
//!   `memchr3` for the UTF-8 lead bytes of hidden characters (it finds nothing in ASCII).
//!
//! # Detectors and what they deliberately miss
//!
//! Every token detector needs a boundary: the byte before (and, where the format has a
//! fixed length, after) must not continue the token.
//!
//! - [`Kind::AwsAccessKey`]: `AKIA`/`ASIA` + exactly 16 of `[A-Z0-9]`. Secret access keys
//!   (40 base64 chars) are left to the high-entropy check.
//! - [`Kind::PrivateKey`]: `-----BEGIN <LABEL>PRIVATE KEY-----` (`RSA `, `EC `,
//!   `OPENSSH `, `ENCRYPTED `, none) through the next `-----END ...-----`, or to the end
//!   of the string if the END line is missing. Public keys and certificates are not hits.
//! - [`Kind::Jwt`]: three non-empty base64url parts joined by `.`, the first starting
//!   `eyJ` and decoding to a JSON object naming `"alg"`. Unsigned tokens with an empty
//!   third part are missed.
//! - [`Kind::GithubToken`]: `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + exactly 36 alphanumerics;
//!   `github_pat_` + 22 or more of `[A-Za-z0-9_]`. Legacy 40-hex OAuth tokens are missed.
//! - [`Kind::SlackToken`]: `xoxa-`/`xoxb-`/`xoxp-`/`xoxr-`/`xoxs-` + 10 or more of
//!   `[A-Za-z0-9-]` with a digit. Webhook URLs are missed.
//! - [`Kind::StripeKey`]: `sk_live_`/`rk_live_`/`sk_test_` + 16 or more alphanumerics.
//!   Publishable `pk_` keys are not secrets.
//! - [`Kind::AnthropicKey`]: `sk-ant-` + 32 or more base64url chars.
//! - [`Kind::OpenAiKey`]: `sk-` (also `sk-proj-`, `sk-svcacct-`, `sk-admin-`, which are
//!   base64url too) + 20 or more base64url chars holding an upper, a lower and a digit,
//!   so `sk-learn-estimator-module` is not one.
//! - [`Kind::GoogleApiKey`]: `AIza` + exactly 35 base64url chars.
//! - [`Kind::HighEntropy`]: a run of 32..=512 of `[A-Za-z0-9+/_-]` (`=` splits runs, so
//!   `KEY=value` reports the value and padding is left out) with an upper, a lower and a
//!   digit, with class changes (upper/lower/digit) at 40%+ of adjacent alphanumeric
//!   pairs, at most a third of it in runs of 3+ lowercase letters (identifiers, words),
//!   fewer than one `/` per 12 bytes, not starting with `/`, and a
//!   Shannon entropy at least that of ~99.9% of random base64 strings of its length (4.0
//!   bits/byte under 40 bytes, 4.25 under 64, 4.7 under 128, 5.1 above). **Hex is never
//!   a hit** (git SHAs, sha256 digests, UUIDs are everywhere in tool results), so hex
//!   secrets are missed; so are runs over 512 bytes (blobs), runs right after `base64,`
//!   (data URIs inside text; a string that *is* a data URI is scanned only up to its
//!   `;base64,`, for every class), strings holding a `-----BEGIN ` line (PEM certificates and public keys are
//!   base64 by design) and the whole string value of a `"data"` or `"blob"` key when it is all
//!   base64 (MCP image, audio and resource contents). A run already reported as a named
//!   secret is not reported again.
//! - [`Kind::Email`]: `local@domain` with a local part of 1..=64 of `[A-Za-z0-9._%+-]`,
//!   dot-separated labels and an alphabetic top-level label of 2+ letters. Not hits:
//!   `user:pass@host` in URLs, `git@host:org/repo` remotes, `icon@2x.png` assets.
//!   Quoted local parts and IP-literal domains are missed.
//! - [`Kind::Card`]: 13..=19 digits, bare or in groups (first of 4, others of 3..=6) all
//!   separated by single spaces or all by single dashes, from a known issuer range (Visa,
//!   Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro) with its length, and
//!   Luhn-valid. A Luhn-failing number is never a hit.
//! - [`Kind::Phone`]: `+` and 10..=15 digits (E.164, separators allowed); or 10..=11
//!   digits in 3+ groups of 2..=5 separated by spaces or dashes, or with the area code in
//!   parentheses, or dotted exactly 3.3.4. Bare national runs (`5551234567`) are missed:
//!   they are indistinguishable from ids and Unix timestamps. Dates, versions, IP
//!   addresses and digits glued to letters, `.`, `_`, `/`, `:` or longer digit runs are
//!   not hits; short E.164 numbers (under 10 digits) are missed.
//! - [`Kind::Iban`]: two uppercase letters, two check digits and an uppercase/digit
//!   BBAN, bare or in printed groups of 4, of the country's length (about 35 countries
//!   known, 15..=34 otherwise), with mod-97 == 1. A bad checksum is never a hit;
//!   lowercase IBANs are missed.
//! - [`Kind::Injection`]: the phrases of `inject::PHRASES` ("ignore previous
//!   instructions", "disregard the above", "you are now a ", "system prompt", "do not
//!   tell the user", `<IMPORTANT>`, `<|im_start|>`, ...), ASCII-case-insensitive, with
//!   single spaces: a phrase split by newlines or double spaces, or paraphrased, is missed.
//! - [`Kind::HiddenText`]: a run of zero-width characters, bidi controls or Unicode tag
//!   characters (a leading BOM included).

mod inject;
mod json;
mod kind;
mod pii;
mod secret;

#[cfg(test)]
mod tests;

use aho_corasick::{AhoCorasick, MatchKind};

pub use kind::{Class, Kind};

/// Which classes to look for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Classes {
    /// [`Class::Secret`].
    pub secrets: bool,
    /// [`Class::Pii`].
    pub pii: bool,
    /// [`Class::Injection`].
    pub injection: bool,
}

impl Classes {
    /// All three classes.
    pub const ALL: Classes = Classes {
        secrets: true,
        pii: true,
        injection: true,
    };

    /// True if at least one class is on.
    pub fn any(self) -> bool {
        self.secrets || self.pii || self.injection
    }

    /// True if `c` is on.
    pub fn has(self, c: Class) -> bool {
        match c {
            Class::Secret => self.secrets,
            Class::Pii => self.pii,
            Class::Injection => self.injection,
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// What was found.
    pub kind: Kind,
    /// Byte range in the input of the JSON string token it is in (quotes included).
    pub token: (usize, usize),
    /// Byte range of the match within that string's decoded (unescaped) text.
    pub range: (usize, usize),
}

/// The input was not a JSON value (the gateway already validated it, so this is a bug
/// guard).
#[derive(Debug, thiserror::Error)]
#[error("screen: not a JSON value (byte {0})")]
pub struct Invalid(usize);

impl Invalid {
    /// Byte offset in the input where the JSON stopped making sense.
    pub fn offset(&self) -> usize {
        self.0
    }
}

/// A finding inside one string, before it gets its token.
type Local = (Kind, usize, usize);

/// Keys whose all-base64 string values are binary content (MCP image/audio `data`,
/// resource `blob`): not scanned.
const BLOB_KEYS: [&[u8]; 2] = [b"data", b"blob"];

/// Shortest string value skipped as a blob.
const MIN_BLOB: usize = 64;

/// Bytes of a generic token run: base64 (standard and url-safe) without the `=` padding,
/// so `key=value` splits.
static TOKEN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'-');
        i += 1;
    }
    t
};

/// Compiled detectors; build once, share (Send + Sync).
#[derive(Debug, Clone)]
pub struct Screener {
    anchors: AhoCorasick,
    phrases: AhoCorasick,
}

// === impl Screener ===

impl Default for Screener {
    fn default() -> Self {
        Self::new()
    }
}

impl Screener {
    /// Compiles the automata.
    pub fn new() -> Self {
        let anchors = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(secret::ANCHORS)
            .expect("secret anchors build an automaton");
        // Case-sensitive over lowercased text: ASCII case-insensitive automata get no
        // SIMD prefilter and ran 4x slower.
        let phrases = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(inject::PHRASES)
            .expect("injection phrases build an automaton");
        Screener { anchors, phrases }
    }

    /// Appends every finding of `classes` in the strings of JSON text `json` (values and
    /// object keys) to `out`, in input order (by token, then by start in
    /// the decoded text). Asking for no class returns `Ok` at once, without checking
    /// `json`.
    pub fn scan(&self, json: &[u8], classes: Classes, out: &mut Vec<Hit>) -> Result<(), Invalid> {
        if !classes.any() {
            return Ok(());
        }
        let mut scratch = Vec::new();
        let mut lower = Vec::new();
        let mut local: Vec<Local> = Vec::new();
        let mark = out.len();
        let walked = json::walk(json, |tok| {
            let raw = &json[tok.start + 1..tok.end - 1];
            let text = if tok.escaped {
                json::decode(raw, &mut scratch);
                &scratch[..]
            } else {
                raw
            };
            let blob_key = tok
                .key
                .is_some_and(|(s, e)| BLOB_KEYS.contains(&&json[s..e]));
            if blob_key
                && text.len() >= MIN_BLOB
                && text.iter().all(|&c| TOKEN_BYTE[usize::from(c)])
            {
                return;
            }
            local.clear();
            self.scan_text(text, classes, &mut lower, &mut local);
            local.sort_unstable_by_key(|&(_, s, e)| (s, e));
            out.extend(local.iter().map(|&(kind, s, e)| Hit {
                kind,
                token: (tok.start, tok.end),
                range: (s, e),
            }));
        });
        walked.map_err(|bad| {
            out.truncate(mark);
            Invalid(bad.at)
        })
    }

    /// Scans one decoded string; `lower` is scratch space.
    fn scan_text(&self, text: &[u8], classes: Classes, lower: &mut Vec<u8>, out: &mut Vec<Local>) {
        // A data URI: only its header is text.
        let t = if text.starts_with(b"data:") {
            let head = &text[..text.len().min(128)];
            match memchr::memmem::find(head, b";base64,") {
                Some(i) => &text[..i],
                None => text,
            }
        } else {
            text
        };
        if classes.secrets {
            self.secrets(t, out);
        }
        if classes.pii {
            for at in memchr::memchr_iter(b'@', t) {
                if let Some((s, e)) = pii::email(t, at) {
                    out.push((Kind::Email, s, e));
                }
            }
            pii::numbers(t, out);
        }
        if classes.injection {
            lower.clear();
            lower.extend(
                t.iter()
                    .map(|&c| c | (u8::from(c.is_ascii_uppercase()) << 5)),
            );
            out.extend(
                self.phrases
                    .find_iter(&lower[..])
                    .map(|m| (Kind::Injection, m.start(), m.end())),
            );
            let mut spans = Vec::new();
            inject::hidden(t, &mut spans);
            out.extend(spans.into_iter().map(|(s, e)| (Kind::HiddenText, s, e)));
        }
    }

    fn secrets(&self, t: &[u8], out: &mut Vec<Local>) {
        let first = out.len();
        let mut covered = 0;
        let mut pem = false;
        for m in self.anchors.find_iter(t) {
            if m.start() < covered {
                continue;
            }
            let kind = secret::ANCHOR_KINDS[m.pattern().as_usize()];
            pem |= kind == Kind::PrivateKey;
            if let Some((kind, start, end)) = secret::confirm(t, m.start(), m.len(), kind) {
                out.push((kind, start, end));
                covered = end;
            }
        }
        // PEM blocks (certificates, public keys) are base64 by design.
        if pem {
            return;
        }
        // Generic runs. The last separator (see `separators`) of a 32-byte window, found
        // 8 bytes at a time, rules out every run starting in the window up to it; only a
        // window without one is scanned byte by byte, probing its last byte first.
        let n = t.len();
        let mut i = 0;
        while i + secret::MIN_RUN <= n {
            if let Some(p) = last_separator(&t[i..i + secret::MIN_RUN]) {
                i += p + 1;
                continue;
            }
            let probe = i + secret::MIN_RUN - 1;
            if !TOKEN_BYTE[usize::from(t[probe])] {
                i = probe + 1;
                continue;
            }
            let mut s = probe;
            while s > i && TOKEN_BYTE[usize::from(t[s - 1])] {
                s -= 1;
            }
            let mut e = probe + 1;
            while e < n && TOKEN_BYTE[usize::from(t[e])] {
                e += 1;
            }
            let len = e - s;
            if (secret::MIN_RUN..=secret::MAX_RUN).contains(&len)
                && !t[..s].ends_with(b"base64,")
                && !out[first..].iter().any(|&(_, hs, he)| hs < e && s < he)
                && secret::high_entropy(&t[s..e])
            {
                out.push((Kind::HighEntropy, s, e));
            }
            i = e + 1;
        }
    }

    /// `json` with every hit whose class is in `mask` replaced by `[REDACTED:<label>]`.
    /// Only the matched stretches change: the replacement goes where the match lies in the
    /// string's raw bytes (a match that starts or ends inside an escape's text takes the
    /// whole escape), and every other byte, escapes included, is copied unchanged.
    /// Overlapping hits merge into one replacement labelled by the first. Hits whose token is not a string token of
    /// `json` (hits of another document) are ignored; ranges are clamped to the text.
    pub fn mask(&self, json: &[u8], hits: &[Hit], mask: Classes) -> Vec<u8> {
        let valid = |h: &&Hit| {
            let (s, e) = h.token;
            mask.has(h.kind.class())
                && s + 2 <= e
                && e <= json.len()
                && json[s] == b'"'
                && json[e - 1] == b'"'
        };
        let mut sel: Vec<&Hit> = hits.iter().filter(valid).collect();
        if sel.is_empty() {
            return json.to_vec();
        }
        sel.sort_by_key(|h| (h.token.0, h.range.0, h.range.1));
        let mut out = Vec::with_capacity(json.len() + 32 * sel.len());
        let mut copied = 0;
        let mut rest = &sel[..];
        while let Some(first) = rest.first() {
            let token = first.token;
            let n = rest.iter().take_while(|h| h.token == token).count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            if token.0 < copied {
                continue;
            }
            // The string's raw bytes are kept; each merged range is replaced where it
            // lies in them (the replacement needs no escaping).
            out.extend_from_slice(&json[copied..=token.0]);
            let raw = &json[token.0 + 1..token.1 - 1];
            let mut at = json::Cursor::new(raw);
            let mut pos = 0;
            let mut cur: Option<(usize, usize, Kind)> = None;
            for h in group {
                let (s, e) = (h.range.0, h.range.1.max(h.range.0));
                cur = match cur {
                    Some((cs, ce, k)) if s < ce => Some((cs, ce.max(e), k)),
                    Some(done) => {
                        redact(raw, done, &mut at, &mut pos, &mut out);
                        Some((s, e, h.kind))
                    }
                    None => Some((s, e, h.kind)),
                };
            }
            if let Some(done) = cur {
                redact(raw, done, &mut at, &mut pos, &mut out);
            }
            out.extend_from_slice(&raw[pos..]);
            out.push(b'"');
            copied = token.1;
        }
        out.extend_from_slice(&json[copied..]);
        out
    }
}

/// Bytes of `w` below 0x2B (space, controls, `"`, `'`, `(`, `)`, `*`, `!`, `#`, `$`, `%`,
/// `&`): never part of a token. Returns a mask with the high bit of each such byte set.
/// Exact per byte: the addition cannot carry across bytes.
fn separators(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const TO_HIGH: u64 = 0x5555_5555_5555_5555; // 0x80 - 0x2B
    const HIGH: u64 = 0x8080_8080_8080_8080;
    !(((w & LOW7) + TO_HIGH) | w) & HIGH
}

/// Offset of the last separator byte in the 32-byte `window`, if any.
fn last_separator(window: &[u8]) -> Option<usize> {
    for k in (0..4).rev() {
        let word = window
            .get(8 * k..8 * k + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .unwrap_or_default();
        let m = separators(u64::from_le_bytes(word));
        if m != 0 {
            return Some(8 * k + (63 - m.leading_zeros() as usize) / 8);
        }
    }
    None
}

/// Copies `raw[*pos..]` up to decoded offset `s`, then the replacement for `(s, e, kind)`;
/// `pos` moves past decoded offset `e`. A range past the text's end is cut at it.
fn redact(
    raw: &[u8],
    (s, e, kind): (usize, usize, Kind),
    at: &mut json::Cursor<'_>,
    pos: &mut usize,
    out: &mut Vec<u8>,
) {
    let rs = at.seek(s, false).max(*pos);
    if rs >= raw.len() && s > 0 {
        return;
    }
    out.extend_from_slice(&raw[*pos..rs]);
    out.extend_from_slice(b"[REDACTED:");
    out.extend_from_slice(kind.label().as_bytes());
    out.push(b']');
    *pos = at.seek(e, true).max(rs);
}
