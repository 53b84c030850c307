//! JSON validation in one pass over the bytes as they came in: no copy, no write, no tape.
//!
//! The gateway passes `params.arguments` through untouched, so it needs to know that a message
//! is JSON (RFC 8259: UTF-8, the grammar, escapes, no raw control characters in strings, at
//! most [`MAX_DEPTH`] levels), never what its values decode to. A general parser does more:
//! simd-json, which this replaced, unescapes strings in place and so worked on a copy of every
//! message, and built a tape of every value; at 256 KiB those two were a third of the
//! gateway's CPU per call. Here a string is found with `memchr2` (the quote or the backslash
//! that ends its plain run) and each plain run is checked with one min/max reduction (raw
//! control characters) and, only where it holds a byte >= 0x80, UTF-8 validation. Outside
//! strings every byte must belong to the grammar, so no byte >= 0x80 passes there.
//!
//! What is refused is what simd-json refused, except numbers out of `f64`'s range (`1e400`),
//! which the grammar allows and which the gateway never decodes; the `frame` fuzz target
//! holds the two to that.
//!
//! The same walk, not strict about strings and handing each string to a callback, is what
//! guard screening reads arguments and results with ([`walk`]): the gateway has one JSON
//! grammar.

use memchr::memchr2;

use super::frame::MAX_DEPTH;

/// Why bytes are not JSON: what was found, and at which byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// What is wrong.
    pub(crate) what: What,
    /// Offset of the byte where it was found.
    pub(crate) at: usize,
}

/// The kinds of [`Invalid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum What {
    /// The input ends inside a value, or holds no value.
    Eof,
    /// A byte the grammar does not allow here.
    Unexpected,
    /// Something after the one top-level value.
    Trailing,
    /// A number not of the grammar (`01`, `1.`, `-`, `1e`).
    Number,
    /// A raw control character (below 0x20) in a string.
    Control,
    /// A backslash not followed by one of `"\/bfnrtu`, or `\u` not followed by four hex digits.
    Escape,
    /// A `\u` escape of a surrogate that is not half of a pair.
    Surrogate,
    /// A string that is not UTF-8.
    Utf8,
    /// More than [`MAX_DEPTH`] levels of arrays and objects.
    TooDeep,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.what {
            What::Eof => "unexpected end of input",
            What::Unexpected => "unexpected character",
            What::Trailing => "trailing characters after the value",
            What::Number => "invalid number",
            What::Control => "control character in a string",
            What::Escape => "invalid escape",
            What::Surrogate => "unpaired surrogate escape",
            What::Utf8 => "invalid UTF-8 in a string",
            What::TooDeep => "nested too deeply",
        };
        write!(f, "{what} at byte {}", self.at)
    }
}

fn err<T>(what: What, at: usize) -> Result<T, Invalid> {
    Err(Invalid { what, at })
}

/// Open containers, one bit per level (set: object): the first 1,024 levels inline, the
/// rest on the heap (only a walk given a deeper bound gets there).
struct Stack {
    inline: [u64; MAX_DEPTH.div_ceil(64)],
    deeper: Vec<u64>,
    depth: usize,
    max: usize,
}

impl Stack {
    #[inline]
    fn push(&mut self, object: bool, at: usize) -> Result<(), Invalid> {
        if self.depth >= self.max {
            return err(What::TooDeep, at);
        }
        let (word, bit) = (self.depth / 64, self.depth % 64);
        let w = match self.inline.get_mut(word) {
            Some(w) => w,
            None => self.deeper_word(word - MAX_DEPTH.div_ceil(64)),
        };
        *w = (*w & !(1 << bit)) | (u64::from(object) << bit);
        self.depth += 1;
        Ok(())
    }

    /// Word `k` of the levels past the inline ones, made when first reached.
    #[inline(never)]
    fn deeper_word(&mut self, k: usize) -> &mut u64 {
        if k >= self.deeper.len() {
            self.deeper.resize(k + 1, 0);
        }
        &mut self.deeper[k]
    }

    /// Whether the innermost open container is an object (`None` at the top level).
    #[inline]
    fn top_is_object(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        let word = match self.inline.get(d / 64) {
            Some(w) => *w,
            None => *self.deeper.get(d / 64 - MAX_DEPTH.div_ceil(64))?,
        };
        Some(word >> (d % 64) & 1 == 1)
    }
}

/// Index of the first byte at or after `i` that is not JSON whitespace.
#[inline]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// One string met by [`walk`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    /// Byte offset of the opening quote.
    pub start: usize,
    /// Byte offset one past the closing quote.
    pub end: usize,
    /// The string holds at least one backslash escape.
    pub escaped: bool,
    /// The raw text (quotes excluded, escapes not decoded) of the object key this string is
    /// the value of, if it is one (a key itself has none).
    pub key: Option<(usize, usize)>,
}

/// Checks that `b` is one JSON value (with whitespace around it), strictly: every string
/// UTF-8, without raw control characters or unpaired surrogate escapes; at most
/// [`MAX_DEPTH`] levels.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn validate(b: &[u8]) -> Result<(), Invalid> {
    walk::<true>(b, MAX_DEPTH, |_: Token| {})
}

/// What a [`walk`] reports, in input order. A closure over [`Token`]s is one: it sees every
/// string, keys included, and nothing else.
pub(crate) trait Visit {
    /// A string that is a value.
    fn string(&mut self, t: Token);

    /// A member's key (`key: None`); its value comes next.
    #[inline]
    fn key(&mut self, t: Token) {
        self.string(t);
    }

    /// A number, `true`, `false` or `null` at `start..end`.
    #[inline]
    fn scalar(&mut self, _start: usize, _end: usize) {}

    /// An array or an object opens at `at`.
    #[inline]
    fn open(&mut self, _at: usize) {}

    /// The innermost open array or object closes; `end` is one past its bracket.
    #[inline]
    fn close(&mut self, _end: usize) {}
}

impl<F: FnMut(Token)> Visit for F {
    #[inline]
    fn string(&mut self, t: Token) {
        self(t);
    }
}

/// Walks the JSON value `b` (with whitespace around it) and reports what it meets to `v`:
/// every string, object keys included (a key before its value), every other scalar, and
/// where arrays and objects open and close, in input order. The grammar (structure,
/// literals, numbers, escapes) is always checked, and at most `max_depth` levels of arrays
/// and objects are allowed. With `STRICT`, each string is also held to UTF-8, no raw control
/// character and no unpaired surrogate escape (a client's message); without, its bytes are
/// not looked at (guard screening walks upstreams' results that pass through as they are).
/// What was reported before an error stands; nothing is reported after it.
pub(crate) fn walk<const STRICT: bool>(
    b: &[u8],
    max_depth: usize,
    mut v: impl Visit,
) -> Result<(), Invalid> {
    let mut stack = Stack {
        inline: [0; MAX_DEPTH.div_ceil(64)],
        deeper: Vec::new(),
        depth: 0,
        max: max_depth,
    };
    // The key whose value comes next.
    let mut key: Option<(usize, usize)> = None;
    let mut i = ws(b, 0);
    'value: loop {
        // A value starts at `i`.
        let Some(&c) = b.get(i) else {
            return err(What::Eof, i);
        };
        let this_key = key.take();
        i = match c {
            b'"' => {
                let (end, escaped) = string_end::<STRICT>(b, i)?;
                v.string(Token {
                    start: i,
                    end,
                    escaped,
                    key: this_key,
                });
                end
            }
            b'{' => {
                stack.push(true, i)?;
                v.open(i);
                i = ws(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    stack.depth -= 1;
                    v.close(i + 1);
                    i + 1
                } else {
                    (i, key) = member_key::<STRICT>(b, i, &mut v)?;
                    continue 'value;
                }
            }
            b'[' => {
                stack.push(false, i)?;
                v.open(i);
                i = ws(b, i + 1);
                if b.get(i) == Some(&b']') {
                    stack.depth -= 1;
                    v.close(i + 1);
                    i + 1
                } else {
                    continue 'value;
                }
            }
            _ => {
                let end = match c {
                    b't' => literal(b, i, b"true")?,
                    b'f' => literal(b, i, b"false")?,
                    b'n' => literal(b, i, b"null")?,
                    b'-' | b'0'..=b'9' => number_end(b, i)?,
                    _ => return err(What::Unexpected, i),
                };
                v.scalar(i, end);
                end
            }
        };
        // After a value: a separator, the end of its container, or the end of the input.
        loop {
            i = ws(b, i);
            let Some(object) = stack.top_is_object() else {
                return if i == b.len() {
                    Ok(())
                } else {
                    err(What::Trailing, i)
                };
            };
            match (b.get(i), object) {
                (Some(b','), true) => {
                    (i, key) = member_key::<STRICT>(b, ws(b, i + 1), &mut v)?;
                    continue 'value;
                }
                (Some(b','), false) => {
                    i = ws(b, i + 1);
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    stack.depth -= 1;
                    i += 1;
                    v.close(i);
                }
                (None, _) => return err(What::Eof, i),
                _ => return err(What::Unexpected, i),
            }
        }
    }
}

/// A member's key and colon at `i`, the key handed to `v`; returns where its value starts
/// and the key's raw text.
#[inline]
fn member_key<const STRICT: bool>(
    b: &[u8],
    i: usize,
    v: &mut impl Visit,
) -> Result<(usize, Option<(usize, usize)>), Invalid> {
    match b.get(i) {
        Some(b'"') => {}
        Some(_) => return err(What::Unexpected, i),
        None => return err(What::Eof, i),
    }
    let (end, escaped) = string_end::<STRICT>(b, i)?;
    v.key(Token {
        start: i,
        end,
        escaped,
        key: None,
    });
    let colon = ws(b, end);
    match b.get(colon) {
        Some(b':') => Ok((ws(b, colon + 1), Some((i + 1, end - 1)))),
        Some(_) => err(What::Unexpected, colon),
        None => err(What::Eof, colon),
    }
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, Invalid> {
    let end = i + word.len();
    match b.get(i..end) {
        Some(w) if w == word => Ok(end),
        _ => {
            // The first byte that differs (or the end of the input).
            let bad = (i..end)
                .find(|&k| b.get(k) != word.get(k - i))
                .unwrap_or(end);
            err(
                if bad >= b.len() {
                    What::Eof
                } else {
                    What::Unexpected
                },
                bad,
            )
        }
    }
}

/// A number at `i` (`-` or a digit); returns the index just past it. What follows is the
/// caller's to check (a separator, a closing bracket, whitespace or the end).
#[inline]
fn number_end(b: &[u8], i: usize) -> Result<usize, Invalid> {
    let digits = |mut j: usize| {
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let mut j = i + usize::from(b.get(i) == Some(&b'-'));
    match b.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(j + 1),
        _ => return err(What::Number, j),
    }
    if b.get(j) == Some(&b'.') {
        let k = digits(j + 1);
        if k == j + 1 {
            return err(What::Number, k);
        }
        j = k;
    }
    if let Some(b'e' | b'E') = b.get(j) {
        j += 1;
        if let Some(b'+' | b'-') = b.get(j) {
            j += 1;
        }
        let k = digits(j);
        if k == j {
            return err(What::Number, k);
        }
        j = k;
    }
    Ok(j)
}

/// Bytes of a string looked at eight at a time before the vector search.
pub(crate) const SHORT: usize = 64;

use crate::text::{bytes_equal, HIGH, ONES};

/// The bytes of `x` (eight string bytes, little-endian) that end a plain ASCII run: a quote,
/// a backslash, a control character or a byte >= 0x80, each flagged by its high bit. A flag
/// can be wrong only above a right one (a borrow carries upward), so the lowest is exact.
#[inline]
fn stops(x: u64) -> u64 {
    quotes(x) | ((x.wrapping_sub(ONES * 0x20) & !x) | x) & HIGH
}

/// The quotes and backslashes of `x`, flagged as by [`stops`] (for the structural scan,
/// whose strings are valid already or are not its to check).
#[inline]
pub(crate) fn quotes(x: u64) -> u64 {
    bytes_equal(x, b'"') | bytes_equal(x, b'\\')
}

/// The string whose opening quote is at `i`; returns the index just past its closing quote,
/// and whether it holds an escape. `STRICT`: see [`walk`].
#[inline]
fn string_end<const STRICT: bool>(b: &[u8], i: usize) -> Result<(usize, bool), Invalid> {
    let mut j = i + 1;
    let mut escaped = false;
    // Most strings of an envelope are short (keys, a method, a name, `_meta`'s long keys):
    // eight bytes at a time costs less than setting up a vector search. The word read may
    // run past the string (not past the message); only its lowest stop counts.
    while j - i <= SHORT {
        let Some(word) = b.get(j..j + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) else {
            break;
        };
        let m = stops(u64::from_le_bytes(word));
        if m == 0 {
            j += 8;
            continue;
        }
        j += (m.trailing_zeros() / 8) as usize;
        match b.get(j) {
            Some(b'"') => return Ok((j + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                j = escape_end::<STRICT>(b, j)?;
            }
            // A control character (the loop below names it) or a byte >= 0x80 (UTF-8 is
            // checked there, by run).
            _ => break,
        }
    }
    loop {
        let rest = b.get(j..).unwrap_or_default();
        let Some(k) = memchr2(b'"', b'\\', rest) else {
            if STRICT {
                plain(rest, j)?;
            }
            return err(What::Eof, b.len());
        };
        if STRICT {
            plain(&rest[..k], j)?;
        }
        let at = j + k;
        if b[at] == b'"' {
            return Ok((at + 1, escaped));
        }
        escaped = true;
        j = escape_end::<STRICT>(b, at)?;
    }
}

/// A run of a string between its quotes and escapes, starting at byte `at`: no raw control
/// character, UTF-8.
#[inline]
fn plain(run: &[u8], at: usize) -> Result<(), Invalid> {
    // One pass that the compiler turns into vector min/max; the exact place of a fault is
    // looked for only once there is one.
    let (lo, hi) = run
        .iter()
        .fold((u8::MAX, 0u8), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    if lo < 0x20 {
        let k = run.iter().position(|&c| c < 0x20).unwrap_or_default();
        return err(What::Control, at + k);
    }
    if hi >= 0x80 {
        if let Err(e) = simdutf8::compat::from_utf8(run) {
            return err(What::Utf8, at + e.valid_up_to());
        }
    }
    Ok(())
}

/// The escape whose backslash is at `at`; returns the index just past it. `STRICT`: a
/// surrogate escape must be half of a pair.
fn escape_end<const STRICT: bool>(b: &[u8], at: usize) -> Result<usize, Invalid> {
    match b.get(at + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
        Some(b'u') => {
            let cp = hex4(b, at + 2)?;
            if !STRICT {
                return Ok(at + 6);
            }
            match cp {
                0xD800..=0xDBFF => {
                    // A high surrogate: the low half must follow as its own escape.
                    if b.get(at + 6..at + 8) != Some(&b"\\u"[..]) {
                        return err(What::Surrogate, at);
                    }
                    match hex4(b, at + 8)? {
                        0xDC00..=0xDFFF => Ok(at + 12),
                        _ => err(What::Surrogate, at + 6),
                    }
                }
                0xDC00..=0xDFFF => err(What::Surrogate, at),
                _ => Ok(at + 6),
            }
        }
        Some(_) => err(What::Escape, at),
        None => err(What::Eof, at + 1),
    }
}

/// Four hex digits at `i`, as a number.
fn hex4(b: &[u8], i: usize) -> Result<u32, Invalid> {
    let mut v = 0u32;
    for k in i..i + 4 {
        let n = match b.get(k) {
            Some(&d @ b'0'..=b'9') => d - b'0',
            Some(&d @ b'a'..=b'f') => d - b'a' + 10,
            Some(&d @ b'A'..=b'F') => d - b'A' + 10,
            Some(_) => return err(What::Escape, k),
            None => return err(What::Eof, k),
        };
        v = v << 4 | u32::from(n);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &[u8]) {
        assert_eq!(validate(s), Ok(()), "{:?}", String::from_utf8_lossy(s));
    }

    fn bad(s: &[u8], what: What) {
        match validate(s) {
            Err(e) => assert_eq!(e.what, what, "{:?}: {e}", String::from_utf8_lossy(s)),
            Ok(()) => panic!("accepted {:?}", String::from_utf8_lossy(s)),
        }
    }

    #[test]
    fn values_of_the_grammar_pass() {
        for s in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{}}}"#[..],
            b" [ 1 , -0.5e+3, 0, -0, 1E9, 2.25 ,true,false,null, \"\" ,{}, [] ] \r\n",
            b"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"",
            "{\"caf\u{e9}\":\"\u{1F600} \u{4e2d}\"}".as_bytes(),
            b"1e400",
            b"{\"a\":{\"b\":[[[{}]]]}}",
        ] {
            ok(s);
        }
    }

    #[test]
    fn what_the_grammar_refuses() {
        bad(b"", What::Eof);
        bad(b"   ", What::Eof);
        bad(b"{", What::Eof);
        bad(b"{\"a\":1", What::Eof);
        bad(b"{\"a\" 1}", What::Unexpected);
        bad(b"{\"a\":1,}", What::Unexpected);
        bad(b"[1,]", What::Unexpected);
        bad(b"[1 2]", What::Unexpected);
        bad(b"{1:2}", What::Unexpected);
        bad(b"{\"a\":1]", What::Unexpected);
        bad(b"[1}", What::Unexpected);
        bad(b"{} {}", What::Trailing);
        bad(b"1x", What::Trailing);
        bad(b"01", What::Trailing);
        bad(b"[01]", What::Unexpected);
        bad(b"-", What::Number);
        bad(b"1.", What::Number);
        bad(b"1.e5", What::Number);
        bad(b"1e", What::Number);
        bad(b"1e+", What::Number);
        bad(b"+1", What::Unexpected);
        bad(b".5", What::Unexpected);
        bad(b"tru", What::Eof);
        bad(b"trve", What::Unexpected);
        bad(b"nul", What::Eof);
        bad(b"NaN", What::Unexpected);
        bad(b"\"abc", What::Eof);
        bad(b"\"a\x01b\"", What::Control);
        bad(b"\"a\tb\"", What::Control);
        bad(b"\"\\x\"", What::Escape);
        bad(b"\"\\u12G4\"", What::Escape);
        bad(b"\"\\u12\"", What::Escape);
        bad(b"\"\\uD800\"", What::Surrogate);
        bad(b"\"\\uD800\\u0041\"", What::Surrogate);
        bad(b"\"\\uDC00\"", What::Surrogate);
        bad(b"\"\xff\"", What::Utf8);
        bad(b"\"\xc3\"", What::Utf8);
        bad(b"\"\xed\xa0\x80\"", What::Utf8);
        bad(b"\xef\xbb\xbf{}", What::Unexpected);
        bad(b"{\"a\":\xc3\xa9}", What::Unexpected);
    }

    #[test]
    fn depth_is_bounded() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        ok(nest(MAX_DEPTH).as_bytes());
        bad(nest(MAX_DEPTH + 1).as_bytes(), What::TooDeep);
        let objects = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        ok(objects.as_bytes());
    }

    #[test]
    fn stops_within_and_past_a_word() {
        // Every position of a stop in the first 80 bytes of a string, each kind of stop.
        for at in 0..80 {
            for (stop, what) in [
                (&b"\""[..], None),
                (b"\\n\"", None),
                (b"\x01\"", Some(What::Control)),
                (b"\xc3\xa9\"", None),
                (b"\xc3\"", Some(What::Utf8)),
                (b"\x7f\"", None),
            ] {
                let mut s = vec![b'"'];
                s.extend(std::iter::repeat_n(b'a', at));
                s.extend_from_slice(stop);
                match (validate(&s), what) {
                    (Ok(()), None) => {}
                    (Err(e), Some(w)) => assert_eq!((e.what, e.at), (w, at + 1), "{s:?}"),
                    (r, _) => panic!("{s:?}: {r:?}"),
                }
                // The same string inside a longer message: words read past its end.
                s.extend_from_slice(b" ");
                let mut m = b"[".to_vec();
                m.extend_from_slice(&s);
                m.extend_from_slice(b", \"tail tail tail\"]");
                assert_eq!(validate(&m).is_ok(), what.is_none(), "{m:?}");
            }
        }
    }

    #[test]
    fn errors_name_the_byte() {
        let e = validate(b"{\"a\":[1,2,x]}").expect_err("refused");
        assert_eq!(e.at, 10);
        assert_eq!(e.to_string(), "unexpected character at byte 10");
        let e = validate(b"\"ab\x02\"").expect_err("refused");
        assert_eq!((e.what, e.at), (What::Control, 3));
    }
}
