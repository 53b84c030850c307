//! The JSON underneath screening: a walk that yields every string value's token without
//! building a document, the decoding of a token's escapes, and the map from decoded
//! offsets back to raw ones (masking rewrites a string's raw bytes).
//!
//! The walk checks the grammar (structure, literals, numbers, escapes) so that garbage is
//! refused rather than half-scanned. It does not check UTF-8 or reject raw control
//! characters inside strings: the gateway validated the body before, and both pass
//! through unchanged. Nesting depth is bounded only by memory (an explicit stack, no
//! recursion).

use memchr::memchr2;

/// One string value met by [`walk`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Token {
    /// Byte offset of the opening quote.
    pub start: usize,
    /// Byte offset one past the closing quote.
    pub end: usize,
    /// The token holds at least one backslash escape.
    pub escaped: bool,
    /// The raw text (quotes excluded, escapes not decoded) of the object key this value
    /// belongs to directly, if any.
    pub key: Option<(usize, usize)>,
}

/// Where the walk stopped making sense of the input.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bad {
    /// Byte offset of the failure.
    pub at: usize,
}

#[derive(Clone, Copy)]
enum Frame {
    Object,
    Array,
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(c) = b.get(i) {
        if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// Reads the string token whose opening quote is at `i`. Returns one past the closing
/// quote and whether it holds escapes.
fn string_end(b: &[u8], i: usize) -> Result<(usize, bool), Bad> {
    let mut k = i + 1;
    let mut escaped = false;
    loop {
        let rest = b.get(k..).ok_or(Bad { at: k })?;
        let off = memchr2(b'"', b'\\', rest).ok_or(Bad { at: b.len() })?;
        k += off;
        if b[k] == b'"' {
            return Ok((k + 1, escaped));
        }
        escaped = true;
        match b.get(k + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => k += 2,
            Some(b'u') => {
                let hex = b.get(k + 2..k + 6).ok_or(Bad { at: k })?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(Bad { at: k });
                }
                k += 6;
            }
            _ => return Err(Bad { at: k }),
        }
    }
}

fn number_end(b: &[u8], mut i: usize) -> Result<usize, Bad> {
    let digits = |b: &[u8], mut i: usize| {
        let s = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i, i - s)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i).0,
        _ => return Err(Bad { at: i }),
    }
    if b.get(i) == Some(&b'.') {
        let (j, n) = digits(b, i + 1);
        if n == 0 {
            return Err(Bad { at: i });
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let (j, n) = digits(b, i);
        if n == 0 {
            return Err(Bad { at: i });
        }
        i = j;
    }
    Ok(i)
}

/// Reads `"key"` and the `:` after it, from `i` (whitespace skipped). Returns the key's
/// token (its `key` is `None`), its raw text range and the offset past the colon.
fn member_key(b: &[u8], i: usize) -> Result<(Token, (usize, usize), usize), Bad> {
    let i = skip_ws(b, i);
    if b.get(i) != Some(&b'"') {
        return Err(Bad { at: i });
    }
    let (end, escaped) = string_end(b, i)?;
    let j = skip_ws(b, end);
    if b.get(j) != Some(&b':') {
        return Err(Bad { at: j });
    }
    let token = Token {
        start: i,
        end,
        escaped,
        key: None,
    };
    Ok((token, (i + 1, end - 1), j + 1))
}

/// Walks the JSON text `b` and calls `on_string` for every string, object keys included
/// (a key before its value, with `key: None`: a secret can be a key too), in input order. Fails on anything that is not exactly one JSON value (whitespace around
/// it allowed).
pub(super) fn walk(b: &[u8], mut on_string: impl FnMut(Token)) -> Result<(), Bad> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let mut key: Option<(usize, usize)> = None;
    'value: loop {
        i = skip_ws(b, i);
        let c = *b.get(i).ok_or(Bad { at: i })?;
        let this_key = key.take();
        match c {
            b'{' => {
                let j = skip_ws(b, i + 1);
                if b.get(j) == Some(&b'}') {
                    i = j + 1;
                } else {
                    stack.push(Frame::Object);
                    let (token, k, next) = member_key(b, j)?;
                    on_string(token);
                    key = Some(k);
                    i = next;
                    continue 'value;
                }
            }
            b'[' => {
                let j = skip_ws(b, i + 1);
                if b.get(j) == Some(&b']') {
                    i = j + 1;
                } else {
                    stack.push(Frame::Array);
                    i = j;
                    continue 'value;
                }
            }
            b'"' => {
                let (end, escaped) = string_end(b, i)?;
                on_string(Token {
                    start: i,
                    end,
                    escaped,
                    key: this_key,
                });
                i = end;
            }
            b't' | b'f' | b'n' => {
                let lit: &[u8] = match c {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                if !b[i..].starts_with(lit) {
                    return Err(Bad { at: i });
                }
                i += lit.len();
            }
            b'-' | b'0'..=b'9' => i = number_end(b, i)?,
            _ => return Err(Bad { at: i }),
        }
        // After a value: close containers or move to the next member or element.
        loop {
            i = skip_ws(b, i);
            let Some(frame) = stack.last() else {
                return if i == b.len() {
                    Ok(())
                } else {
                    Err(Bad { at: i })
                };
            };
            match (frame, b.get(i)) {
                (Frame::Object, Some(b',')) => {
                    let (token, k, next) = member_key(b, i + 1)?;
                    on_string(token);
                    key = Some(k);
                    i = next;
                    continue 'value;
                }
                (Frame::Array, Some(b',')) => {
                    i += 1;
                    continue 'value;
                }
                (Frame::Object, Some(b'}')) | (Frame::Array, Some(b']')) => {
                    stack.pop();
                    i += 1;
                }
                _ => return Err(Bad { at: i }),
            }
        }
    }
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
