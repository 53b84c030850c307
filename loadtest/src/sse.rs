//! Server-sent events: splits a complete `text/event-stream` body into the data of its
//! events.
//!
//! Used by the load generator to find the JSON-RPC answer among the events of a Streamable
//! HTTP response. It only parses what the body already holds; it never reads from a socket
//! and ignores `event:`, `id:` and `retry:` fields, which MCP answers do not depend on.

use std::borrow::Cow;

/// Iterator over the data of each event in an event-stream body.
///
/// A data value spread over several `data:` lines is joined with `\n` (and then owned); a
/// single line is borrowed. Events without data (comments, keep-alives) are skipped. A last
/// event not followed by a blank line is still yielded: the body is complete, so it ended.
pub struct Events<'a> {
    rest: &'a [u8],
}

/// The events of `body`.
pub fn events(body: &[u8]) -> Events<'_> {
    Events { rest: body }
}

impl<'a> Iterator for Events<'a> {
    type Item = Cow<'a, [u8]>;

    fn next(&mut self) -> Option<Cow<'a, [u8]>> {
        let mut data: Option<Cow<'a, [u8]>> = None;
        while !self.rest.is_empty() {
            let (line, rest) = split_line(self.rest);
            self.rest = rest;
            if line.is_empty() {
                if data.is_some() {
                    return data;
                }
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(0) => continue, // comment
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            if field == b"data" {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(prev) => {
                        let mut joined = prev.into_owned();
                        joined.push(b'\n');
                        joined.extend_from_slice(value);
                        Cow::Owned(joined)
                    }
                });
            }
        }
        data
    }
}

/// Splits off one line ending in `\r\n`, `\n` or `\r`; the ending is dropped.
fn split_line(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b'\n' || b == b'\r') {
        None => (s, &[]),
        Some(i) => {
            let skip = if s[i] == b'\r' && s.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            (&s[..i], &s[i + skip..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(body: &str) -> Vec<String> {
        events(body.as_bytes())
            .map(|d| String::from_utf8(d.into_owned()).expect("utf-8 in test"))
            .collect()
    }

    #[test]
    fn one_event_crlf_like_the_python_sdk() {
        let body = "event: message\r\ndata: {\"id\":1}\r\n\r\n";
        assert_eq!(all(body), vec!["{\"id\":1}"]);
    }

    #[test]
    fn several_events_comments_and_ids() {
        let body = ": keep-alive\n\nid: 7\nevent: message\ndata:{\"a\":1}\n\ndata: {\"b\":2}\n\n";
        assert_eq!(all(body), vec!["{\"a\":1}", "{\"b\":2}"]);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let body = "data: {\"x\":\ndata: 1}\n\n";
        assert_eq!(all(body), vec!["{\"x\":\n1}"]);
    }

    #[test]
    fn last_event_without_blank_line_is_kept() {
        assert_eq!(all("data: tail"), vec!["tail"]);
        assert_eq!(all("data: a\r\rdata: b\r"), vec!["a", "b"]);
    }

    #[test]
    fn empty_and_data_less_bodies_yield_nothing() {
        assert!(all("").is_empty());
        assert!(all(": ping\n\nevent: x\n\n").is_empty());
    }
}
