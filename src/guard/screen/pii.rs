//! PII detectors: emails from each `@`, and cards, phones and IBANs from each digit run.
//! Every function takes the decoded text and returns match ranges in it.

use super::kind::Kind;

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')
}

/// The email around the `@` at `at`, if any: `local@label(.label)+` with a local part of
/// 1..=64 of `[A-Za-z0-9._%+-]` not starting with a dot, labels of `[A-Za-z0-9-]` not
/// starting or ending with `-`, and an alphabetic top-level label of 2+ letters.
pub(super) fn email(t: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut ls = at;
    while ls > 0 && at - ls < 64 && is_local(t[ls - 1]) {
        ls -= 1;
    }
    while ls < at && t[ls] == b'.' {
        ls += 1;
    }
    if ls == at || t[at - 1] == b'.' {
        return None;
    }
    // `scheme://user:pass@host` and `path/name@...` are not addresses; `mailto:` is.
    if ls > 0 && matches!(t[ls - 1], b'/' | b':') && !t[..ls].ends_with(b"mailto:") {
        return None;
    }
    let mut de = at + 1;
    while de < t.len() && de - at <= 253 && is_domain(t[de]) {
        de += 1;
    }
    while de > at + 1 && matches!(t[de - 1], b'.' | b'-') {
        de -= 1;
    }
    let domain = &t[at + 1..de];
    let mut labels = domain.split(|&c| c == b'.');
    let first = labels.next()?;
    let mut count = 1;
    let mut last = first;
    for l in labels {
        count += 1;
        last = l;
        if l.is_empty() || l.starts_with(b"-") || l.ends_with(b"-") {
            return None;
        }
    }
    if count < 2 || first.is_empty() || first.starts_with(b"-") || first.ends_with(b"-") {
        return None;
    }
    if last.len() < 2 || !last.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    // `icon@2x.png`: the retina-asset naming convention.
    if first.len() >= 2
        && first.ends_with(b"x")
        && first[..first.len() - 1].iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    // `git@github.com:org/repo` (scp-style remote), but `a@b.com:8080` stays.
    if t.get(de) == Some(&b':') && t.get(de + 1).is_some_and(|c| !c.is_ascii_digit()) {
        return None;
    }
    Some((ls, de))
}

/// A run of digits and separators read from one digit-run start.
struct Number {
    end: usize,
    digits: [u8; 20],
    n_digits: usize,
    groups: [u8; 10],
    n_groups: usize,
    /// Separators used, as a bit set: 1 space, 2 dash, 4 dot, 8 parens.
    seps: u8,
    plus: bool,
    too_long: bool,
}

impl Number {
    fn digits(&self) -> &[u8] {
        &self.digits[..self.n_digits]
    }
    fn groups(&self) -> &[u8] {
        &self.groups[..self.n_groups]
    }
}

/// Reads digits and single separators (space, dash, dot; parentheses around one group)
/// from the digit at `j`.
fn read_number(t: &[u8], j: usize, plus: bool, open_paren: bool) -> Number {
    let mut num = Number {
        end: j,
        digits: [0; 20],
        n_digits: 0,
        groups: [0; 10],
        n_groups: 0,
        seps: if open_paren { 8 } else { 0 },
        plus,
        too_long: false,
    };
    let mut paren_open = open_paren;
    let mut paren_used = open_paren;
    let mut k = j;
    loop {
        let gs = k;
        while let Some(&c) = t.get(k).filter(|c| c.is_ascii_digit()) {
            if num.n_digits < num.digits.len() {
                num.digits[num.n_digits] = c - b'0';
            }
            num.n_digits += 1;
            k += 1;
        }
        if num.n_groups == num.groups.len() || num.n_digits > 19 {
            num.too_long = true;
            // Swallow the rest of the run so no digit of it starts another candidate.
            while t
                .get(k)
                .is_some_and(|c| c.is_ascii_digit() || matches!(c, b' ' | b'-' | b'.'))
            {
                k += 1;
            }
            num.end = k;
            return num;
        }
        num.groups[num.n_groups] = (k - gs) as u8;
        num.n_groups += 1;
        num.end = k;
        // A separator: one of ` `, `-`, `.`, or `)`/`(` next to at most one of them.
        let mut s = k;
        let mut bits = 0u8;
        if paren_open && t.get(s) == Some(&b')') {
            paren_open = false;
            bits |= 8;
            s += 1;
        }
        if let Some(&c @ (b' ' | b'-' | b'.')) = t.get(s) {
            bits |= match c {
                b' ' => 1,
                b'-' => 2,
                _ => 4,
            };
            s += 1;
        }
        if !paren_used && bits & 8 == 0 && t.get(s) == Some(&b'(') {
            paren_open = true;
            paren_used = true;
            bits |= 8;
            s += 1;
        }
        if bits == 0 || !t.get(s).is_some_and(u8::is_ascii_digit) || paren_open && bits & 8 == 0 {
            return num;
        }
        num.seps |= bits;
        k = s;
    }
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn prefix(d: &[u8], n: usize) -> u32 {
    d.iter().take(n).fold(0, |a, &x| a * 10 + u32::from(x))
}

/// Known issuer ranges (Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro)
/// with their lengths.
fn known_iin(d: &[u8]) -> bool {
    let len = d.len();
    let p1 = prefix(d, 1);
    let p2 = prefix(d, 2);
    let p3 = prefix(d, 3);
    let p4 = prefix(d, 4);
    match p1 {
        4 => matches!(len, 13 | 16 | 19),
        5 => (51..=55).contains(&p2) && len == 16 || matches!(p2, 50 | 56..=59) && len >= 12,
        2 => (2221..=2720).contains(&p4) && len == 16,
        3 => {
            matches!(p2, 34 | 37) && len == 15
                || ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39))
                    && (14..=19).contains(&len)
                || (3528..=3589).contains(&p4) && (16..=19).contains(&len)
        }
        6 => {
            (p4 == 6011
                || (644..=649).contains(&p3)
                || p2 == 65
                || p2 == 62
                || matches!(p2, 60..=69))
                && (16..=19).contains(&len)
        }
        _ => false,
    }
}

fn card(num: &Number) -> bool {
    let d = num.digits();
    if !(13..=19).contains(&d.len()) || num.plus {
        return false;
    }
    // No separators, or all spaces or all dashes between groups of a printed card.
    let grouped = match num.seps {
        0 => true,
        1 | 2 => {
            let g = num.groups();
            g[0] == 4 && g[1..].iter().all(|&x| (3..=6).contains(&x))
        }
        _ => false,
    };
    grouped && known_iin(d) && luhn(d)
}

fn phone(num: &Number) -> bool {
    let n = num.n_digits;
    let g = num.groups();
    if num.plus {
        // E.164: + country code and subscriber number, 10..=15 digits in all.
        return (10..=15).contains(&n) && (num.seps & 4 == 0 || num.seps == 4);
    }
    if !(10..=11).contains(&n) {
        return false;
    }
    match num.seps {
        // Dots only in the 3.3.4 layout (IP addresses and versions have others).
        4 => g == [3, 3, 4],
        0 => false,
        s if s & 4 != 0 => false,
        s => g.len() >= 3 && g.iter().all(|&x| (2..=5).contains(&x)) || s & 8 != 0 && g.len() >= 2,
    }
}

/// Known IBAN lengths by country; others must be 15..=34.
fn iban_len(cc: &[u8]) -> Option<usize> {
    Some(match cc {
        b"AT" | b"LU" | b"EE" | b"LT" => 20,
        b"BE" => 16,
        b"CH" | b"LI" | b"LV" => 21,
        b"DE" | b"GB" | b"IE" | b"BG" => 22,
        b"DK" | b"FI" | b"NL" | b"FO" | b"GL" => 18,
        b"ES" | b"SE" | b"CZ" | b"SK" | b"TN" | b"RO" => 24,
        b"FR" | b"IT" | b"MC" | b"SM" => 27,
        b"NO" => 15,
        b"PL" | b"HU" | b"CY" => 28,
        b"PT" => 25,
        b"GR" => 27,
        b"HR" => 21,
        b"SI" => 19,
        _ => return None,
    })
}

fn mod97(s: &[u8]) -> bool {
    let rotated = s[4..].iter().chain(&s[..4]);
    let mut r: u32 = 0;
    for &c in rotated {
        r = if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    r == 1
}

/// An IBAN starting at `p` (two uppercase letters, two digits, uppercase/digit BBAN;
/// single spaces allowed between groups of four), with a valid length and mod-97 check.
fn iban(t: &[u8], p: usize) -> Option<usize> {
    let mut buf = [0u8; 34];
    let mut n = 0;
    let mut k = p;
    let mut since_space = 0;
    loop {
        match t.get(k) {
            Some(&c) if c.is_ascii_uppercase() || c.is_ascii_digit() => {
                if n == buf.len() {
                    return None;
                }
                buf[n] = c;
                n += 1;
                since_space += 1;
                k += 1;
            }
            Some(b' ')
                if since_space == 4
                    && t.get(k + 1)
                        .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
            {
                since_space = 0;
                k += 1;
            }
            _ => break,
        }
        if iban_len(&buf[..2]).is_some_and(|l| l == n) {
            break;
        }
    }
    if t.get(k).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    let ok_len = iban_len(&buf[..2]).map_or((15..=34).contains(&n), |l| l == n);
    (ok_len && buf[2..4].iter().all(u8::is_ascii_digit) && mod97(&buf[..n])).then_some(k)
}

/// Mask with the high bit set in each byte of `w` that is an ASCII digit. Exact per
/// byte: the additions cannot carry across bytes.
pub(super) fn digits(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = w & LOW7;
    let at_least_0 = low + 0x5050_5050_5050_5050; // 0x80 - b'0'
    let above_9 = low + 0x4646_4646_4646_4646; // 0x80 - (b'9' + 1)
    at_least_0 & !above_9 & !w & HIGH
}

/// Finds cards, phones and IBANs in `t`, pushing `(kind, start, end)`. Digits are found
/// 8 bytes at a time; each digit run is then read once.
pub(super) fn numbers(t: &[u8], out: &mut Vec<(Kind, usize, usize)>) {
    let mut i = 0;
    while i < t.len() {
        let (word, n) = match t.get(i..i + 8) {
            Some(w) => (<[u8; 8]>::try_from(w).unwrap_or_default(), 8),
            None => {
                let mut word = [0u8; 8];
                word[..t.len() - i].copy_from_slice(&t[i..]);
                (word, t.len() - i)
            }
        };
        let m = digits(u64::from_le_bytes(word));
        if m == 0 {
            i += n;
            continue;
        }
        i = at_digit(t, i + m.trailing_zeros() as usize / 8, out);
    }
}

/// Handles the digit at `j` (the first of its run); returns where to resume.
fn at_digit(t: &[u8], j: usize, out: &mut Vec<(Kind, usize, usize)>) -> usize {
    let run_end = j + t[j..].iter().take_while(|c| c.is_ascii_digit()).count();
    let prev = if j > 0 { t[j - 1] } else { b' ' };
    if prev.is_ascii_uppercase()
        && j >= 2
        && t[j - 2].is_ascii_uppercase()
        && (j == 2 || !t[j - 3].is_ascii_alphanumeric())
    {
        if let Some(e) = iban(t, j - 2) {
            out.push((Kind::Iban, j - 2, e));
            return e;
        }
    }
    let before = if j > 1 { t[j - 2] } else { b' ' };
    let plus = prev == b'+' && !before.is_ascii_alphanumeric();
    let paren = prev == b'(' && !before.is_ascii_alphanumeric();
    // After a key (`card:`, `cc=`, `beta:`) only a card is looked for: Luhn, issuer and
    // length make it one; a phone number there would be guesswork (`port:8080`, `t=1700..`).
    let keyed = matches!(prev, b':' | b'=');
    // Digits glued to a word, a decimal point, a path or a key are not numbers of ours.
    if !plus
        && !paren
        && !keyed
        && (prev.is_ascii_alphanumeric()
            || matches!(
                prev,
                b'.' | b'_' | b'/' | b':' | b',' | b'-' | b'#' | b'=' | b'$'
            ))
    {
        let mut k = run_end;
        // Skip the separator-joined rest too, so `1.2.3` is one unit.
        while t.get(k).is_some_and(|&c| matches!(c, b'.' | b'-'))
            && t.get(k + 1).is_some_and(u8::is_ascii_digit)
        {
            k += 1;
            k += t[k..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
        return k;
    }
    // Under 10 digits and no separator after: too short for any number of ours.
    if run_end - j < 10 && !matches!(t.get(run_end), Some(b' ' | b'-' | b'.' | b')')) {
        return run_end;
    }
    let num = read_number(t, j, plus, paren);
    if num.too_long {
        return num.end;
    }
    let next = t.get(num.end).copied().unwrap_or(b' ');
    let next2 = t.get(num.end + 1).copied().unwrap_or(b' ');
    let glued = next.is_ascii_alphanumeric()
        || matches!(next, b'.' | b',' | b':' | b'/' | b'-') && next2.is_ascii_digit()
        || next == b'_';
    if !glued {
        let start = if plus || paren { j - 1 } else { j };
        if card(&num) {
            out.push((Kind::Card, start, num.end));
        } else if !keyed && phone(&num) {
            out.push((Kind::Phone, start, num.end));
        }
    }
    num.end.max(run_end)
}
