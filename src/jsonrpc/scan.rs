//! Structural scan over JSON: a client's message already validated (`validate`), or an
//! upstream's, whose envelope the scan holds to the grammar itself.
//!
//! The scan finds where values start and end; it does not validate and never decodes. Every
//! function returns `None` rather than panicking when the input is not what it expects, so a
//! logic error here becomes a protocol error, never a crash.

use memchr::memchr2;

/// Index of the first non-whitespace byte at or after `i`.
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(c) = b.get(i) {
        if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// `i` is at an opening quote; returns the index just past the closing quote.
pub(crate) fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i.checked_add(1)?;
    // Short strings, eight bytes at a time (see `validate::string_end`).
    while j - i <= super::validate::SHORT {
        let Some(word) = b.get(j..j + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) else {
            break;
        };
        let m = super::validate::quotes(u64::from_le_bytes(word));
        if m == 0 {
            j += 8;
            continue;
        }
        j += (m.trailing_zeros() / 8) as usize;
        if *b.get(j)? == b'"' {
            return Some(j + 1);
        }
        // A backslash escapes exactly the next byte.
        j += 2;
    }
    loop {
        let rest = b.get(j..)?;
        let k = memchr2(b'"', b'\\', rest)?;
        let at = j + k;
        if *b.get(at)? == b'"' {
            return Some(at + 1);
        }
        // A backslash escapes exactly the next byte (`\uXXXX` has no quote in it).
        j = at + 2;
    }
}

/// Why a value's end could not be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Not the JSON the scan expects (cut short, unbalanced).
    Malformed,
    /// Nested deeper than allowed.
    TooDeep,
}

/// `i` is at the first byte of a value; returns the index just past it.
pub(crate) fn value_end(b: &[u8], i: usize) -> Option<usize> {
    value_end_within(b, i, usize::MAX).ok()
}

/// As [`value_end`], refusing a value with more than `max_depth` levels of arrays and
/// objects (a scalar has none, `[1]` one).
pub(crate) fn value_end_within(b: &[u8], i: usize, max_depth: usize) -> Result<usize, Fault> {
    let mut unused = false;
    value_end_noting::<false>(b, i, max_depth, &[], &mut unused)
}

/// As [`value_end_within`]; with `NOTE`, sets `seen` when the value is an object with a
/// member named `key` (as written). Without, it looks for nothing (no test per string).
pub(crate) fn value_end_noting<const NOTE: bool>(
    b: &[u8],
    i: usize,
    max_depth: usize,
    key: &[u8],
    seen: &mut bool,
) -> Result<usize, Fault> {
    match *b.get(i).ok_or(Fault::Malformed)? {
        b'"' => string_end(b, i).ok_or(Fault::Malformed),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j).ok_or(Fault::Malformed)? {
                    b'"' => {
                        let end = string_end(b, j).ok_or(Fault::Malformed)?;
                        // A string of the outer object followed by a colon is a key.
                        if NOTE
                            && depth == 1
                            && b.get(j + 1..end - 1) == Some(key)
                            && b.get(i) == Some(&b'{')
                            && b.get(skip_ws(b, end)) == Some(&b':')
                        {
                            *seen = true;
                        }
                        j = end;
                        continue;
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > max_depth {
                            return Err(Fault::TooDeep);
                        }
                    }
                    b'}' | b']' => {
                        depth = depth.checked_sub(1).ok_or(Fault::Malformed)?;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j).ok_or(Fault::Malformed)
        }
    }
}

/// Members of the object at `b[start..]`: yields `(raw key without quotes, value start, value end)`.
pub(crate) struct Members<'a> {
    b: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Members<'a> {
    /// `start` is the index of `{`; `None` when it is not an object.
    pub(crate) fn new(b: &'a [u8], start: usize) -> Option<Self> {
        (*b.get(start)? == b'{').then_some(Self {
            b,
            pos: start + 1,
            done: false,
        })
    }

    /// The next member's raw key and where its value starts; the caller finds the value's
    /// end and hands it to [`Members::past`] before asking for the next.
    pub(crate) fn next_key(&mut self) -> Option<(&'a [u8], usize)> {
        if self.done {
            return None;
        }
        let b = self.b;
        let mut i = skip_ws(b, self.pos);
        if *b.get(i)? == b',' {
            i = skip_ws(b, i + 1);
        }
        if *b.get(i)? != b'"' {
            self.done = true;
            return None;
        }
        let key_end = string_end(b, i)?;
        let key = b.get(i + 1..key_end - 1)?;
        let colon = skip_ws(b, key_end);
        if *b.get(colon)? != b':' {
            self.done = true;
            return None;
        }
        Some((key, skip_ws(b, colon + 1)))
    }

    /// The value of the member [`Members::next_key`] gave ends at `ve`.
    pub(crate) fn past(&mut self, ve: usize) {
        self.pos = ve;
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a [u8], usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, vs) = self.next_key()?;
        let Some(ve) = value_end(self.b, vs) else {
            self.done = true;
            return None;
        };
        self.past(ve);
        Some((key, vs, ve))
    }
}

/// Elements of the array at `b[start..]`: yields `(value start, value end)`.
pub(crate) fn elements(b: &[u8], start: usize) -> Option<Vec<(usize, usize)>> {
    if *b.get(start)? != b'[' {
        return None;
    }
    let mut out = Vec::new();
    let mut i = skip_ws(b, start + 1);
    loop {
        match *b.get(i)? {
            b']' => return Some(out),
            b',' => i = skip_ws(b, i + 1),
            _ => {
                let e = value_end(b, i)?;
                out.push((i, e));
                i = skip_ws(b, e);
            }
        }
    }
}

/// Why the keys of an object the gateway reads are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyFault {
    /// One key twice in one object, compared after unescaping (the key, decoded).
    Duplicate(String),
    /// A key spelled with escapes that decodes to a name of the shape every key the gateway
    /// reads has (ASCII letters, digits, `_`, `.`, `/`, `-`): the gateway compares keys as
    /// written, so an escaped spelling could hide such a member from it.
    Escaped,
    /// More levels than allowed.
    TooDeep,
    /// Not the JSON the scan expects.
    Malformed,
}

impl From<Fault> for KeyFault {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Malformed => KeyFault::Malformed,
            Fault::TooDeep => KeyFault::TooDeep,
        }
    }
}

/// Keys of one object kept on the stack for the duplicate check; a larger object is checked
/// by sorting.
pub(crate) const INLINE_KEYS: usize = 16;

/// The callback of a walk that indexes nothing.
fn ignore(_: Level, _: &[u8], _: usize, _: usize) {}

/// What [`check_keys_with`] hands each member it reports to: its level, raw key, value
/// start and value end.
pub(crate) type Visit<'a> = dyn FnMut(Level, &[u8], usize, usize) + 'a;

/// Which members [`check_keys_with`] hands to its callback: those of the value's own
/// object ([`Level::Own`]) and those of its member named `inner` ([`Level::Inner`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// A member of the value's own object.
    Own,
    /// A member of the object that is the value of its member named `inner`.
    Inner,
}

/// Checks every object within the value at `b[i..]` (already validated JSON): no key twice,
/// no key escaped into a name the gateway could read (see [`KeyFault::Escaped`]), at most
/// `max_depth` levels. The value of the top-level member named `skip` (a call's
/// `arguments`, which passes through untouched and is not read) is only checked for depth.
/// Returns the index just past the value.
///
/// Each member of the value's own object (when it is one) is handed to `member` as
/// `(Level::Own, raw key, value start, value end)`, and each member of its member named
/// `inner` (when that is an object) as `Level::Inner`: the one walk also indexes them (a
/// request's `params` and its `_meta`).
pub(crate) fn check_keys_with(
    b: &[u8],
    i: usize,
    max_depth: usize,
    (skip, inner): (Option<&[u8]>, Option<&[u8]>),
    member: &mut Visit<'_>,
) -> Result<usize, KeyFault> {
    match b.get(i) {
        Some(b'{') => check_object(b, i, max_depth, (skip, inner), member),
        Some(b'[') => {
            if max_depth == 0 {
                return Err(KeyFault::TooDeep);
            }
            let mut j = skip_ws(b, i + 1);
            loop {
                match *b.get(j).ok_or(KeyFault::Malformed)? {
                    b']' => return Ok(j + 1),
                    b',' => j = skip_ws(b, j + 1),
                    _ => {
                        j = skip_ws(
                            b,
                            check_keys_with(b, j, max_depth - 1, (None, None), &mut ignore)?,
                        )
                    }
                }
            }
        }
        _ => Ok(value_end_within(b, i, max_depth)?),
    }
}

fn check_object(
    b: &[u8],
    start: usize,
    max_depth: usize,
    (skip, inner): (Option<&[u8]>, Option<&[u8]>),
    member: &mut Visit<'_>,
) -> Result<usize, KeyFault> {
    if max_depth == 0 {
        return Err(KeyFault::TooDeep);
    }
    let mut keys: [&[u8]; INLINE_KEYS] = [&[]; INLINE_KEYS];
    let mut n = 0usize;
    let mut slow = false;
    let mut j = skip_ws(b, start + 1);
    loop {
        match *b.get(j).ok_or(KeyFault::Malformed)? {
            b'}' => break,
            b',' => {
                j = skip_ws(b, j + 1);
                continue;
            }
            b'"' => {}
            _ => return Err(KeyFault::Malformed),
        }
        let key_end = string_end(b, j).ok_or(KeyFault::Malformed)?;
        let key = b.get(j + 1..key_end - 1).ok_or(KeyFault::Malformed)?;
        if key.contains(&b'\\') {
            check_escaped(b.get(j..key_end).ok_or(KeyFault::Malformed)?)?;
            slow = true;
        } else if !slow {
            if keys[..n].contains(&key) {
                return Err(duplicate(key));
            }
            match keys.get_mut(n) {
                Some(slot) => {
                    *slot = key;
                    n += 1;
                }
                None => slow = true,
            }
        }
        let colon = skip_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return Err(KeyFault::Malformed);
        }
        let vs = skip_ws(b, colon + 1);
        let ve = if skip.is_some_and(|s| s == key) {
            value_end_within(b, vs, max_depth - 1)?
        } else if inner.is_some_and(|s| s == key) {
            check_inner(b, vs, max_depth - 1, member)?
        } else {
            check_keys_with(b, vs, max_depth - 1, (None, None), &mut ignore)?
        };
        member(Level::Own, key, vs, ve);
        j = skip_ws(b, ve);
    }
    if slow {
        check_sorted(b, start)?;
    }
    Ok(j + 1)
}

/// The duplicate check of an object with many keys, or keys with escapes: all compared,
/// decoded. Out of line, as the other rare paths: the recursion through deep values keeps
/// small frames.
#[inline(never)]
pub(crate) fn check_sorted(b: &[u8], start: usize) -> Result<(), KeyFault> {
    let mut all = Vec::new();
    for (k, _, _) in Members::new(b, start).ok_or(KeyFault::Malformed)? {
        all.push(if k.contains(&b'\\') {
            // The quotes around a key are the bytes either side of it.
            let ks = k.as_ptr() as usize - b.as_ptr() as usize;
            decode_key(b.get(ks - 1..ks + k.len() + 1).ok_or(KeyFault::Malformed)?)?
        } else {
            String::from_utf8_lossy(k).into_owned()
        });
    }
    all.sort_unstable();
    match all.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(KeyFault::Duplicate(w[0].clone())),
        None => Ok(()),
    }
}

/// A key written with escapes: refused when it decodes to a name the gateway could read.
#[inline(never)]
pub(crate) fn check_escaped(quoted: &[u8]) -> Result<(), KeyFault> {
    if decode_key(quoted)?.bytes().all(plain) {
        return Err(KeyFault::Escaped);
    }
    Ok(())
}

/// A key seen twice in one object.
#[inline(never)]
pub(crate) fn duplicate(key: &[u8]) -> KeyFault {
    KeyFault::Duplicate(String::from_utf8_lossy(key).into_owned())
}

/// The walk of the member named `inner`, its own members handed on as [`Level::Inner`].
/// Out of line: the closure stays off the stack of the recursion through deep values.
#[inline(never)]
fn check_inner(
    b: &[u8],
    i: usize,
    max_depth: usize,
    member: &mut Visit<'_>,
) -> Result<usize, KeyFault> {
    let own = &mut |_: Level, k: &[u8], s, e| member(Level::Inner, k, s, e);
    check_keys_with(b, i, max_depth, (None, None), own)
}

/// A byte of a name the gateway may read: the members it reads (`name`, `progressToken`,
/// `io.modelcontextprotocol/protocolVersion`, ...) are made of these. Keys escaped for
/// other reasons (non-ASCII under `ensure_ascii`, `<>&` by Go's encoder, a quote) pass.
fn plain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-')
}

/// A quoted key with escapes, decoded.
fn decode_key(quoted: &[u8]) -> Result<String, KeyFault> {
    serde_json::from_slice::<String>(quoted).map_err(|_| KeyFault::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_nesting() {
        let b = br#" {"a" : 1, "b":{"x":[1,{"y":"}"}]}, "c\"d":"e\\"} "#;
        let m: Vec<_> = Members::new(b, 1)
            .expect("object")
            .map(|(k, s, e)| (k.to_vec(), b[s..e].to_vec()))
            .collect();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], (b"a".to_vec(), b"1".to_vec()));
        assert_eq!(m[1].1, br#"{"x":[1,{"y":"}"}]}"#.to_vec());
        assert_eq!(m[2], (br#"c\"d"#.to_vec(), br#""e\\""#.to_vec()));
    }

    #[test]
    fn elements_of_array() {
        let b = br#"[ {"a":[1,2]} , 3,"x" ]"#;
        let e = elements(b, 0).expect("array");
        assert_eq!(e.len(), 3);
        assert_eq!(&b[e[0].0..e[0].1], br#"{"a":[1,2]}"#);
        assert_eq!(&b[e[2].0..e[2].1], br#""x""#);
        assert_eq!(elements(b"[]", 0), Some(vec![]));
    }

    #[test]
    fn truncated_input_gives_none() {
        assert_eq!(string_end(br#""abc"#, 0), None);
        assert_eq!(value_end(br#"{"a":[1"#, 0), None);
        assert_eq!(string_end(br#""ab\"#, 0), None);
    }
}
