//! Text normalization before any rule runs: hidden characters out, NFKC in.
//!
//! Zero-width characters and bidi controls are removed; Unicode tag characters
//! (U+E0020..U+E007E) are decoded to the ASCII they shadow, so text hidden in them is
//! scanned like any other; the rest of the tag block (U+E0000..U+E007F) is removed.
//! Every class met is reported with its first offset in the output, since its presence
//! is itself a finding. Never fails, never allocates more than twice the input.

use unicode_normalization::UnicodeNormalization;

/// A class of hidden characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    /// U+200B..U+200D, U+2060, U+FEFF.
    ZeroWidth,
    /// U+202A..U+202E, U+2066..U+2069, U+200E, U+200F.
    Bidi,
    /// U+E0000..U+E007F.
    Tag,
}

/// Text after normalization, and the hidden characters taken out of it.
#[derive(Debug, Default)]
pub struct Normalized {
    /// NFKC text without hidden characters, tag characters decoded to ASCII.
    pub text: String,
    /// Each hidden class met, once, with the byte span in `text` where it was met. For
    /// tag characters the span covers the decoded run; for the others it is empty.
    pub hidden: Vec<(Hidden, (usize, usize))>,
}

/// Classifies one char: `None` if it stays as is.
fn class(c: char) -> Option<Hidden> {
    match c {
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => Some(Hidden::ZeroWidth),
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' => {
            Some(Hidden::Bidi)
        }
        '\u{E0000}'..='\u{E007F}' => Some(Hidden::Tag),
        _ => None,
    }
}

/// NFKC-normalizes `s` and strips (or, for tags, decodes) hidden characters.
pub fn normalize(s: &str) -> Normalized {
    let mut out = Normalized {
        text: String::with_capacity(s.len()),
        hidden: Vec::new(),
    };
    let mut tag_run: Option<usize> = None;
    // NFKC leaves these format characters as they are (none has a decomposition), so
    // stripping after it keeps offsets in the final text.
    for c in s.nfkc() {
        let Some(h) = class(c) else {
            if let Some(start) = tag_run.take() {
                out.close_tag_run(start);
            }
            out.text.push(c);
            continue;
        };
        match h {
            Hidden::Tag => {
                tag_run.get_or_insert(out.text.len());
                let ascii = c as u32 - 0xE0000;
                if (0x20..0x7F).contains(&ascii) {
                    out.text.push(char::from(ascii as u8));
                }
            }
            _ => out.note(h, (out.text.len(), out.text.len())),
        }
    }
    if let Some(start) = tag_run {
        out.close_tag_run(start);
    }
    out
}

impl Normalized {
    fn note(&mut self, h: Hidden, span: (usize, usize)) {
        if !self.hidden.iter().any(|(k, _)| *k == h) {
            self.hidden.push((h, span));
        }
    }

    fn close_tag_run(&mut self, start: usize) {
        let span = (start, self.text.len());
        self.note(Hidden::Tag, span);
    }
}
