//! Injection detectors: the phrase list (matched by the screener's case-insensitive
//! automaton) and hidden characters found from their UTF-8 lead bytes.

use memchr::memchr3_iter;

/// Prompt-injection phrases, lowercase, matched against ASCII-lowercased text with single
/// spaces.
pub(super) const PHRASES: [&str; 41] = [
    "ignore previous instructions",
    "ignore all previous instructions",
    "ignore prior instructions",
    "ignore all prior instructions",
    "ignore the previous instructions",
    "ignore the above instructions",
    "ignore above instructions",
    "ignore your instructions",
    "ignore all instructions",
    "disregard previous instructions",
    "disregard all previous",
    "disregard prior instructions",
    "disregard all prior",
    "disregard the above",
    "disregard your instructions",
    "disregard all instructions",
    "forget previous instructions",
    "forget all previous",
    "forget your instructions",
    "forget all instructions",
    "override your instructions",
    "new instructions:",
    "you are now a ",
    "you are now an ",
    "you are now in developer mode",
    "from now on you are",
    "system prompt",
    "do not tell the user",
    "don't tell the user",
    "do not inform the user",
    "do not mention this to the user",
    "without telling the user",
    "without informing the user",
    "hide this from the user",
    "<important>",
    "<system>",
    "</system>",
    "[system]",
    "<|im_start|>",
    "<|system|>",
    "[inst]",
];

/// Byte length of a hidden character starting at `t[i]`, if it is one: zero-width
/// (U+200B..U+200D, U+2060, U+FEFF), bidi controls (U+200E, U+200F, U+202A..U+202E,
/// U+2066..U+2069) or a Unicode tag (U+E0000..U+E007F).
fn hidden_at(t: &[u8], i: usize) -> Option<usize> {
    let s = t.get(i..)?;
    match s {
        [0xE2, 0x80, 0x8B..=0x8F | 0xAA..=0xAE, ..]
        | [0xE2, 0x81, 0xA0 | 0xA6..=0xA9, ..]
        | [0xEF, 0xBB, 0xBF, ..] => Some(3),
        [0xF3, 0xA0, 0x80 | 0x81, 0x80..=0xBF, ..] => Some(4),
        _ => None,
    }
}

/// Pushes one range per run of adjacent hidden characters in `t`.
pub(super) fn hidden(t: &[u8], out: &mut Vec<(usize, usize)>) {
    let mut resume = 0;
    for i in memchr3_iter(0xE2, 0xEF, 0xF3, t) {
        if i < resume {
            continue;
        }
        let Some(n) = hidden_at(t, i) else {
            continue;
        };
        let mut end = i + n;
        while let Some(m) = hidden_at(t, end) {
            end += m;
        }
        out.push((i, end));
        resume = end;
    }
}
