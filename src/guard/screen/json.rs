//! The JSON underneath screening: a walk that yields every string's token without building
//! a document, the decoding of a token's escapes, and the map from decoded offsets back to
//! raw ones (masking rewrites a string's raw bytes).
//!
//! The walk is the gateway's one JSON walker (`jsonrpc::validate::walk`), not strict about
//! strings: it checks the grammar (structure, literals, numbers, escapes) so that garbage is
//! refused rather than half-scanned, but not UTF-8, raw control characters or unpaired
//! surrogates inside strings, which pass through unchanged (a client's message was validated
//! strictly before; an upstream's result is passed on as it came). Nesting depth is bounded
//! only by memory (the walk's stack of open containers is one bit per level).

pub(super) use crate::jsonrpc::validate::{Invalid as Bad, Token};

/// Walks the JSON text `b` and calls `on_string` for every string, object keys included
/// (a key before its value, with `key: None`: a secret can be a key too), in input order.
/// Fails on anything that is not exactly one JSON value (whitespace around it allowed).
pub(super) fn walk(b: &[u8], on_string: impl FnMut(Token)) -> Result<(), Bad> {
    crate::jsonrpc::validate::walk::<false>(b, usize::MAX, on_string)
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..4)? {
        v = v * 16 + char::from(c).to_digit(16)?;
    }
    Some(v)
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// What an escape decodes to.
enum Unescaped {
    Byte(u8),
    Char(char),
}

impl Unescaped {
    /// Its length in the decoded text, bytes.
    fn len(&self) -> usize {
        match self {
            Unescaped::Byte(_) => 1,
            Unescaped::Char(c) => c.len_utf8(),
        }
    }
}

/// The escape starting at `raw[i]` (a backslash): the raw bytes it takes and what it
/// decodes to. A lone surrogate decodes to U+FFFD; a malformed escape is its backslash.
fn unescape(raw: &[u8], i: usize) -> (usize, Unescaped) {
    let simple = match raw.get(i + 1) {
        Some(b'"') => Some(b'"'),
        Some(b'\\') => Some(b'\\'),
        Some(b'/') => Some(b'/'),
        Some(b'b') => Some(0x08),
        Some(b'f') => Some(0x0c),
        Some(b'n') => Some(b'\n'),
        Some(b'r') => Some(b'\r'),
        Some(b't') => Some(b'\t'),
        _ => None,
    };
    if let Some(c) = simple {
        return (2, Unescaped::Byte(c));
    }
    let Some(hi) = raw.get(i + 2..).and_then(hex4) else {
        return (1, Unescaped::Byte(b'\\'));
    };
    let j = i + 6;
    if (0xD800..0xDC00).contains(&hi) && raw.get(j..j + 2) == Some(b"\\u") {
        if let Some(lo) = raw.get(j + 2..).and_then(hex4) {
            if (0xDC00..0xE000).contains(&lo) {
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                let c = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                return (12, Unescaped::Char(c));
            }
        }
    }
    let c = char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER);
    (6, Unescaped::Char(c))
}

/// Decodes the inside of a string token (quotes excluded) into `out`, which is cleared
/// first. A lone surrogate escape decodes to U+FFFD. Assumes the escapes were checked by
/// [`walk`]; a malformed one is copied through as is.
pub(super) fn decode(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let Some(off) = memchr::memchr(b'\\', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            return;
        };
        out.extend_from_slice(&raw[i..i + off]);
        i += off;
        let (n, u) = unescape(raw, i);
        match u {
            Unescaped::Byte(b) => out.push(b),
            Unescaped::Char(c) => push_char(out, c),
        }
        i += n;
    }
}

/// Maps offsets in the decoded text of a string token to offsets in its raw inside,
/// moving forward only: so a masked string is rewritten in place of its raw bytes, with
/// no decode and re-encode of the whole string.
pub(super) struct Cursor<'a> {
    raw: &'a [u8],
    /// Raw offset reached.
    r: usize,
    /// Decoded offset at `r`.
    d: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(raw: &'a [u8]) -> Self {
        Cursor { raw, r: 0, d: 0 }
    }

    /// Moves to decoded offset `target` and returns the raw offset there (the raw end when
    /// the text is shorter; where it is, when `target` is behind). An escape that `target`
    /// falls inside is stepped over when `past` (ends of a range), else stopped before
    /// (starts): a masked range only ever grows to whole escapes.
    pub(super) fn seek(&mut self, target: usize, past: bool) -> usize {
        while self.d < target && self.r < self.raw.len() {
            let rest = &self.raw[self.r..];
            let plain = memchr::memchr(b'\\', rest).unwrap_or(rest.len());
            if plain > 0 {
                let step = plain.min(target - self.d);
                self.r += step;
                self.d += step;
                continue;
            }
            let (n, u) = unescape(self.raw, self.r);
            if !past && self.d + u.len() > target {
                break;
            }
            self.r += n;
            self.d += u.len();
        }
        self.r
    }
}
