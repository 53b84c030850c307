//! Secret detectors: confirmation of a literal anchor found by the screener's automaton,
//! and the generic high-entropy token check. Each confirmer takes the decoded text and the
//! anchor's offset and returns the end of the secret, or `None`.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::kind::Kind;

/// The literal anchors, in the order of [`ANCHOR_KINDS`]. Few and short on purpose: each
/// one costs the SIMD prefilter false candidates; the confirmers check the rest
/// (`xox[abprs]-`, `sk_live_`/`sk_test_`, the dashes before `BEGIN `).
pub(super) const ANCHORS: [&str; 15] = [
    "AKIA",
    "ASIA",
    "BEGIN ",
    "eyJ",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "sk_",
    "rk_live_",
    "sk-",
    "AIza",
];

/// What each anchor of [`ANCHORS`] announces. `sk-` is split between Anthropic and
/// OpenAI by its confirmer.
pub(super) const ANCHOR_KINDS: [Kind; 15] = [
    Kind::AwsAccessKey,
    Kind::AwsAccessKey,
    Kind::PrivateKey,
    Kind::Jwt,
    Kind::GithubToken,
    Kind::GithubToken,
    Kind::GithubToken,
    Kind::GithubToken,
    Kind::GithubToken,
    Kind::GithubToken,
    Kind::SlackToken,
    Kind::StripeKey,
    Kind::StripeKey,
    Kind::OpenAiKey,
    Kind::GoogleApiKey,
];

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// Length of the run of bytes matching `f` from `i`, at most `max`.
fn run(t: &[u8], i: usize, max: usize, f: impl Fn(u8) -> bool) -> usize {
    t.get(i..)
        .unwrap_or_default()
        .iter()
        .take(max)
        .take_while(|&&c| f(c))
        .count()
}

/// True if `t[at - 1]` (if any) does not continue a token of `f` characters.
fn left_edge(t: &[u8], at: usize, f: impl Fn(u8) -> bool) -> bool {
    at == 0 || !f(t[at - 1])
}

/// True if the byte at `at` (if any) does not continue a token of `f` characters.
fn right_edge(t: &[u8], at: usize, f: impl Fn(u8) -> bool) -> bool {
    t.get(at).is_none_or(|&c| !f(c))
}

/// Confirms the anchor `kind` found at `at` (anchor length `len`). Returns the kind (the
/// `sk-` anchor may turn out Anthropic), the start of the secret (the PEM anchor starts
/// after the dashes) and its end.
pub(super) fn confirm(t: &[u8], at: usize, len: usize, kind: Kind) -> Option<(Kind, usize, usize)> {
    let mut body = at + len;
    match (kind, t.get(body..).unwrap_or_default()) {
        (Kind::SlackToken, [b'a' | b'b' | b'p' | b'r' | b's', b'-', ..]) => body += 2,
        (Kind::StripeKey, rest) if len == 3 => {
            if !(rest.starts_with(b"live_") || rest.starts_with(b"test_")) {
                return None;
            }
            body += 5;
        }
        (Kind::SlackToken, _) => return None,
        _ => {}
    }
    let end = match kind {
        Kind::AwsAccessKey => {
            let n = run(t, body, 17, |c| {
                c.is_ascii_uppercase() || c.is_ascii_digit()
            });
            (left_edge(t, at, is_alnum) && n == 16 && right_edge(t, body + n, is_alnum))
                .then_some(body + n)?
        }
        // The anchor is `BEGIN `: `-----` first would make every Markdown rule and
        // table separator a candidate.
        Kind::PrivateKey => {
            let start = at.checked_sub(5).filter(|&s| &t[s..at] == b"-----")?;
            return private_key(t, body).map(|e| (kind, start, e));
        }
        Kind::Jwt => return jwt(t, at).map(|e| (kind, at, e)),
        Kind::GithubToken => {
            if len == "github_pat_".len() {
                let n = run(t, body, 255, |c| is_alnum(c) || c == b'_');
                (left_edge(t, at, is_alnum) && n >= 22).then_some(body + n)?
            } else {
                let n = run(t, body, 37, is_alnum);
                (left_edge(t, at, is_alnum) && n == 36).then_some(body + n)?
            }
        }
        Kind::SlackToken => {
            let n = run(t, body, 255, |c| is_alnum(c) || c == b'-');
            let digits = t[body..body + n].iter().any(u8::is_ascii_digit);
            (left_edge(t, at, is_alnum) && n >= 10 && digits).then_some(body + n)?
        }
        Kind::StripeKey => {
            let n = run(t, body, 255, is_alnum);
            (left_edge(t, at, is_alnum) && n >= 16 && right_edge(t, body + n, is_b64url))
                .then_some(body + n)?
        }
        Kind::OpenAiKey => return sk_dash(t, at, body).map(|(k, e)| (k, at, e)),
        Kind::GoogleApiKey => {
            let n = run(t, body, 36, is_b64url);
            (left_edge(t, at, is_b64url) && n == 35).then_some(body + n)?
        }
        _ => return None,
    };
    Some((kind, at, end))
}

/// `sk-ant-` (Anthropic, 32+ url-safe chars) or `sk-`, `sk-proj-`, `sk-svcacct-`,
/// `sk-admin-` (OpenAI, 20+ url-safe chars with upper, lower and digit).
fn sk_dash(t: &[u8], at: usize, body: usize) -> Option<(Kind, usize)> {
    if !left_edge(t, at, is_b64url) {
        return None;
    }
    let rest = &t[body..];
    if let Some(tail) = rest.strip_prefix(b"ant-") {
        let n = run(tail, 0, 512, is_b64url);
        return (n >= 32).then_some((Kind::AnthropicKey, body + 4 + n));
    }
    let n = run(t, body, 512, is_b64url);
    let key = &t[body..body + n];
    let has = |f: fn(&u8) -> bool| key.iter().any(f);
    (n >= 20
        && has(u8::is_ascii_digit)
        && has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase))
    .then_some((Kind::OpenAiKey, body + n))
}

/// `-----BEGIN <WORDS >PRIVATE KEY-----` through the matching `-----END ...-----` line;
/// to the end of the text if the END line is missing (a truncated key is still a key).
fn private_key(t: &[u8], body: usize) -> Option<usize> {
    let label = run(t, body, 48, |c| c.is_ascii_uppercase() || c == b' ');
    let head_end = body + label;
    // The label run swallows "PRIVATE KEY"; the dashes end it.
    let label_text = &t[body..head_end];
    if !(label_text.ends_with(b"PRIVATE KEY") && t[head_end..].starts_with(b"-----")) {
        return None;
    }
    let from = head_end + 5;
    let end = memchr::memmem::find(&t[from..], b"-----END ")
        .map(|off| {
            let e = from + off + 9;
            let n = run(t, e, 48, |c| c.is_ascii_uppercase() || c == b' ');
            if t[e + n..].starts_with(b"-----") {
                e + n + 5
            } else {
                e + n
            }
        })
        .unwrap_or(t.len());
    Some(end)
}

const B64_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Three base64url parts joined by dots, each non-empty, the first (starting `eyJ`, i.e.
/// `{"`) decoding to a JSON object that names `"alg"`.
fn jwt(t: &[u8], at: usize) -> Option<usize> {
    if !left_edge(t, at, |c| is_b64url(c) || c == b'.') {
        return None;
    }
    let h = run(t, at, 4096, is_b64url);
    let p_at = at + h + 1;
    if t.get(at + h) != Some(&b'.') {
        return None;
    }
    let p = run(t, p_at, 16384, is_b64url);
    let s_at = p_at + p + 1;
    if p == 0 || t.get(p_at + p) != Some(&b'.') {
        return None;
    }
    let s = run(t, s_at, 4096, is_b64url);
    if s == 0 {
        return None;
    }
    let header = B64_URL.decode(&t[at..at + h]).ok()?;
    let header = header.trim_ascii();
    let alg = memchr::memmem::find(header, b"\"alg\"").is_some();
    (header.first() == Some(&b'{') && header.last() == Some(&b'}') && alg).then_some(s_at + s)
}

// === high entropy ===

/// Shortest run checked by the generic detector.
pub(super) const MIN_RUN: usize = 32;
/// Longest run checked; longer ones are blobs (images, archives), not credentials.
pub(super) const MAX_RUN: usize = 512;

/// Shannon entropy (bits per byte) a run of `n` bytes must reach: about the 0.1th
/// percentile of random base64 strings of that length.
fn entropy_floor(n: usize) -> f64 {
    match n {
        0..40 => 4.0,
        40..64 => 4.25,
        64..128 => 4.7,
        _ => 5.1,
    }
}

/// Bytes of `r` in runs of 3+ lowercase letters: most of an identifier or a word, about
/// an eighth of a random token.
fn wordy(r: &[u8]) -> usize {
    r.split(|c| !c.is_ascii_lowercase())
        .filter(|w| w.len() >= 3)
        .map(<[u8]>::len)
        .sum()
}

/// Whether the run `r` (length `MIN_RUN..=MAX_RUN`, all token bytes) reads as a random
/// credential: upper, lower and digit all present, not hex, not a path, frequent
/// character-class changes, few lowercase words, and entropy above [`entropy_floor`].
pub(super) fn high_entropy(r: &[u8]) -> bool {
    // Hex digests and UUIDs (the common long runs) have no uppercase, or no lowercase.
    if r.first() == Some(&b'/')
        || !r.iter().any(u8::is_ascii_uppercase)
        || !r.iter().any(u8::is_ascii_lowercase)
    {
        return false;
    }
    let (mut up, mut low, mut dig, mut slash) = (false, false, false, 0usize);
    let mut hexish = true;
    // Class changes between adjacent alphanumerics, and the number of such pairs.
    let (mut changes, mut pairs) = (0usize, 0usize);
    let mut prev = 0u8;
    let mut counts = [0u16; 128];
    for &c in r {
        let class = if c.is_ascii_uppercase() {
            up = true;
            1
        } else if c.is_ascii_lowercase() {
            low = true;
            2
        } else if c.is_ascii_digit() {
            dig = true;
            3
        } else {
            slash += usize::from(c == b'/');
            0
        };
        hexish &= c.is_ascii_hexdigit() || c == b'-';
        if class != 0 && prev != 0 {
            pairs += 1;
            changes += usize::from(class != prev);
        }
        prev = class;
        counts[usize::from(c & 0x7f)] += 1;
    }
    if hexish || !(up && low && dig) || slash * 12 > r.len() || wordy(r) * 3 > r.len() {
        return false;
    }
    // Random base64 changes class at ~55% of adjacent pairs; identifiers and words at
    // well under 30%.
    if changes * 5 < pairs * 2 {
        return false;
    }
    let n = r.len() as f64;
    let h: f64 = counts
        .iter()
        .filter(|&&k| k > 0)
        .map(|&k| {
            let p = f64::from(k) / n;
            -p * p.log2()
        })
        .sum();
    h >= entropy_floor(r.len())
}
