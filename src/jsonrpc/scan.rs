//! Structural scan over JSON that simd-json has already validated.
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

/// `i` is at the first byte of a value; returns the index just past it.
pub(crate) fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
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
            (j > i).then_some(j)
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
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a [u8], usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
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
        let vs = skip_ws(b, colon + 1);
        let ve = value_end(b, vs)?;
        self.pos = ve;
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
