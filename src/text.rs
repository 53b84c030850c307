//! Tiny text helpers: lowercase hex and `*` globs.
//!
//! The lowest layer of the crate: used by auth, registry, guard, session, observe and relay
//! alike. It imports nothing of ours, holds no state and never does IO.

/// Lowercase hex of `d` (digests, salts, key ids): the one encoder the gateway uses.
pub fn hex(d: &[u8]) -> String {
    let mut s = String::with_capacity(d.len() * 2);
    push_hex(&mut s, d);
    s
}

/// Appends the lowercase hex of `d` to `s`.
pub fn push_hex(s: &mut String, d: &[u8]) {
    for b in d {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Eight bytes to search at once: `ONES * b` has `b` in each byte.
pub const ONES: u64 = u64::from_le_bytes([0x01; 8]);
/// The high bit of each byte.
pub const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// The bytes of `word` (eight bytes read little-endian) that equal `b`, each flagged by its
/// high bit. A byte just above one that equals `b` may be flagged too (a borrow carries
/// upward), so whether any is, and which is the lowest, is exact; a caller that looks at
/// every flag checks the byte.
#[inline]
pub fn bytes_equal(word: u64, b: u8) -> u64 {
    let x = word ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Lowercases the ASCII letters of `s` in place, eight bytes at a time (what
/// `make_ascii_lowercase` does, byte by byte): for the field names of every HTTP head.
pub fn ascii_lowercase(s: &mut [u8]) {
    #[inline]
    fn word(w: u64) -> u64 {
        let low7 = w & !HIGH;
        // The high bit of each byte: its low seven bits are >= 'A', and > 'Z' (no carry
        // crosses a byte: each sum stays under 0x100).
        let from_a = low7 + ONES * u64::from(0x80 - b'A');
        let past_z = low7 + ONES * u64::from(0x7f - b'Z');
        let upper = from_a & !past_z & !w & HIGH;
        w | (upper >> 2)
    }
    let n = s.len();
    if n < 8 {
        s.make_ascii_lowercase();
        return;
    }
    let mut at = 0;
    loop {
        // The last word may overlap the one before: lowercasing twice changes nothing.
        let i = at.min(n - 8);
        if let Some(chunk) = s.get_mut(i..i + 8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            chunk.copy_from_slice(&word(u64::from_le_bytes(b)).to_le_bytes());
        }
        if i + 8 >= n {
            return;
        }
        at += 8;
    }
}

/// Writes the lowercase hex of `d` into the first `2 * d.len()` bytes of `out`.
pub fn hex_into(d: &[u8], out: &mut [u8]) {
    for (b, o) in d.iter().zip(out.chunks_exact_mut(2)) {
        o[0] = HEX[usize::from(b >> 4)];
        o[1] = HEX[usize::from(b & 15)];
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (nothing else
/// is special). Small on purpose: names and URIs, patterns written by an operator.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A `u64` as decimal text, without allocating (a gateway id spliced into a message, or
/// compared with one).
#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    buf: [u8; 20],
    start: u8,
}

impl Decimal {
    /// `n`'s digits (written by `itoa`, two digits at a time).
    pub fn new(n: u64) -> Self {
        let mut digits = itoa::Buffer::new();
        let text = digits.format(n).as_bytes();
        let mut buf = [b'0'; 20];
        let start = buf.len() - text.len();
        if let Some(tail) = buf.get_mut(start..) {
            tail.copy_from_slice(text);
        }
        Decimal {
            buf,
            start: start as u8,
        }
    }

    /// The digits.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(usize::from(self.start)..).unwrap_or(b"0")
    }

    /// The digits, as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_writes_every_u64_as_to_string_does() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            12345,
            u64::from(u32::MAX),
            (1 << 53) - 1,
            u64::MAX,
        ] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        let mut s = String::from("x");
        push_hex(&mut s, &[0xff]);
        assert_eq!(s, "xff");
        let mut out = [0u8; 4];
        hex_into(&[0x0a, 0xb0], &mut out);
        assert_eq!(&out, b"0ab0");
    }

    #[test]
    fn globs() {
        assert!(glob_match("a__*", "a__echo"));
        assert!(glob_match("*", ""));
        assert!(glob_match("mcpgw://a/*/x", "mcpgw://a/b/c/x"));
        assert!(!glob_match("a__*", "b__echo"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
        assert!(
            !glob_match("ab*ba", "aba"),
            "prefix and suffix may not overlap"
        );
    }

    #[test]
    fn ascii_lowercase_by_words_is_bytewise_lowercase() {
        // Every byte value at every position of every length up to 40, among letters,
        // the bytes around them and ones with the high bit set.
        let filler = b"Ab-Zz@[`{\x7f\xc1";
        for len in 0..40usize {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut s: Vec<u8> = (0..len).map(|i| filler[i % filler.len()]).collect();
                    s[pos] = b;
                    let mut want = s.clone();
                    want.make_ascii_lowercase();
                    ascii_lowercase(&mut s);
                    assert_eq!(s, want, "len {len}, byte {b:#x} at {pos}");
                }
            }
        }
    }
}
