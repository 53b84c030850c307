//! Sans-IO Server-Sent Events (`text/event-stream`) codec, following the
//! WHATWG HTML "Server-sent events" parsing and interpretation rules.
//!
//! The gateway uses [`SseDecoder`] to read event streams coming from upstream
//! MCP servers (fed with the decoded HTTP body bytes, in whatever pieces they
//! arrive) and [`write_event`] / [`write_comment`] to produce the event
//! streams it sends to its own clients. This module sits above the HTTP body
//! framing (chunked or until-close) and below the MCP/JSON-RPC layer: it
//! knows nothing about JSON or sessions.
//!
//! It never performs I/O, never buffers more than about twice the configured
//! per-event maximum (plus the caller's current chunk), never panics on any
//! input, and never writes a line break the caller did not intend as a line
//! break (ids and event names with CR/LF are refused; CR/LF in data and
//! comments always start a new `data:` / comment line).

use bytes::{Buf, Bytes, BytesMut};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Extra room allowed for the field name and colon on top of
/// `max_event_bytes` when limiting the length of a single line, so that a
/// `data:` line carrying exactly the maximum still fits.
const LINE_SLACK: usize = 64;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event` field's value, `None` when absent or empty (the event type
    /// is then `message`). The last `event` field of the block wins.
    pub event: Option<String>,
    /// The values of all `data` fields of the block, joined with `\n` (no
    /// trailing newline). Always valid UTF-8 (invalid sequences were replaced
    /// by U+FFFD) and at most `max_event_bytes` long.
    pub data: Bytes,
    /// The value of the last valid `id` field in this event's own block, or
    /// `None` if the block had none. Note this differs from the browser's
    /// `lastEventId`, which carries forward from earlier events; that value is
    /// [`SseDecoder::last_event_id`]. `Some("")` means the id was reset.
    pub id: Option<String>,
    /// The value of the last valid `retry` field (milliseconds) in this
    /// event's block, if any.
    pub retry: Option<u64>,
}

/// Why an event stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One event's data, or a single line, exceeded the decoder's maximum.
    #[error("event too large")]
    TooLarge,
}

/// Incremental `text/event-stream` parser.
///
/// Invariants: the internal buffers hold at most one incomplete line
/// (at most `max_event_bytes + 64` bytes) and the data of one event (at most
/// `max_event_bytes` bytes) between calls.
#[derive(Debug, Clone)]
pub struct SseDecoder {
    /// Maximum data bytes of one event.
    max_event_bytes: usize,
    /// Unprocessed input: at most one incomplete line between calls.
    buf: BytesMut,
    /// Bytes at the front of `buf` already searched for a line end.
    scanned: usize,
    /// Whether the start of the stream has been checked for a BOM.
    bom_checked: bool,
    /// The previous line ended with CR; an LF right after it is part of it.
    skip_lf: bool,
    /// Data buffer of the current block, each line followed by `\n`.
    data: BytesMut,
    /// Event type buffer of the current block (empty = `message`).
    event_type: String,
    /// Last valid `id` field of the current block.
    block_id: Option<String>,
    /// Last valid `retry` field of the current block.
    block_retry: Option<u64>,
    /// The stream's last event id string (empty = none).
    last_event_id: String,
    /// Most recent valid `retry` value of the stream.
    retry: Option<u64>,
    /// A previous call failed; every later call fails.
    failed: bool,
}

impl SseDecoder {
    /// A decoder for one event stream whose events may carry at most
    /// `max_event_bytes` bytes of data each.
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            max_event_bytes,
            buf: BytesMut::new(),
            scanned: 0,
            bom_checked: false,
            skip_lf: false,
            data: BytesMut::new(),
            event_type: String::new(),
            block_id: None,
            block_retry: None,
            last_event_id: String::new(),
            retry: None,
            failed: false,
        }
    }

    /// Feeds the next bytes of the stream (split anywhere, including inside a
    /// CRLF pair or a UTF-8 sequence) and returns every event completed by
    /// them, in order.
    ///
    /// Lines end in CRLF, LF or CR; a UTF-8 BOM at the start of the stream is
    /// skipped; lines starting with `:` are comments; a line without a colon
    /// is a field with an empty value; one space after the colon is removed;
    /// unknown fields, `id` values containing NUL and non-numeric `retry`
    /// values are ignored; a block without `data` lines is not dispatched
    /// (its `id` still becomes [`SseDecoder::last_event_id`]). An incomplete
    /// event at the end of the stream is never returned.
    ///
    /// Fails with [`SseError::TooLarge`] when one event's data would exceed
    /// `max_event_bytes` or a single line exceeds `max_event_bytes + 64`
    /// bytes. Events completed earlier in the same call are then lost, and
    /// every later call fails the same way: drop the stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        if self.failed {
            return Err(SseError::TooLarge);
        }
        let result = self.feed_inner(chunk);
        if result.is_err() {
            self.failed = true;
            self.buf.clear();
            self.data.clear();
        }
        result
    }

    fn feed_inner(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut events = Vec::new();
        self.buf.extend_from_slice(chunk);
        if !self.bom_checked {
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                return Ok(events);
            }
            if self.buf.starts_with(BOM) {
                self.buf.advance(BOM.len());
            }
            self.bom_checked = true;
        }
        let max_line = self.max_event_bytes.saturating_add(LINE_SLACK);
        loop {
            if self.skip_lf {
                match self.buf.first() {
                    None => break,
                    Some(b'\n') => self.buf.advance(1),
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            if self.scanned > self.buf.len() {
                self.scanned = 0;
            }
            let tail = self.buf.get(self.scanned..).unwrap_or_default();
            let Some(i) = memchr::memchr2(b'\r', b'\n', tail) else {
                self.scanned = self.buf.len();
                break;
            };
            let end = self.scanned.saturating_add(i);
            self.scanned = 0;
            let line = self.buf.split_to(end);
            if self.buf.first() == Some(&b'\r') {
                self.skip_lf = true;
            }
            self.buf.advance(1);
            if line.len() > max_line {
                return Err(SseError::TooLarge);
            }
            if let Some(event) = self.process_line(&line)? {
                events.push(event);
            }
        }
        if self.buf.len() > max_line {
            return Err(SseError::TooLarge);
        }
        Ok(events)
    }

    fn process_line(&mut self, line: &[u8]) -> Result<Option<Event>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.first() == Some(&b':') {
            return Ok(None);
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let name = line.get(..i).unwrap_or_default();
                let value = line.get(i.saturating_add(1)..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                let value = String::from_utf8_lossy(value);
                if self.data.len().saturating_add(value.len()) > self.max_event_bytes {
                    return Err(SseError::TooLarge);
                }
                self.data.extend_from_slice(value.as_bytes());
                self.data.extend_from_slice(b"\n");
            }
            b"id" if !value.contains(&0) => {
                self.block_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let parsed = value.iter().try_fold(0u64, |acc, &d| {
                    acc.checked_mul(10)?
                        .checked_add(u64::from(char::from(d).to_digit(10)?))
                });
                if let Some(ms) = parsed {
                    self.retry = Some(ms);
                    self.block_retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// Handles a blank line: updates the last event id and returns the event
    /// if the block had data.
    fn dispatch(&mut self) -> Option<Event> {
        let id = self.block_id.take();
        if let Some(id) = &id {
            self.last_event_id.clone_from(id);
        }
        let retry = self.block_retry.take();
        let event_type = std::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            return None;
        }
        // Drop the newline that follows the last data line.
        self.data.truncate(self.data.len().saturating_sub(1));
        Some(Event {
            event: (!event_type.is_empty()).then_some(event_type),
            data: self.data.split().freeze(),
            id,
            retry,
        })
    }

    /// The stream's last event id (what a reconnecting client sends as
    /// `Last-Event-ID`): the value of the most recent `id` field of a block
    /// that was ended by a blank line, whether or not that block had data.
    /// `None` if no id was seen yet or the last one was empty.
    pub fn last_event_id(&self) -> Option<&str> {
        (!self.last_event_id.is_empty()).then_some(self.last_event_id.as_str())
    }

    /// The most recent valid `retry` value (reconnection time in
    /// milliseconds) seen anywhere in the stream, if any. Unlike ids, it
    /// takes effect as soon as the line is parsed.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }
}

/// Calls `f` with each line of `text`, where CRLF, LF and CR all end a line.
/// Text without line breaks (including empty text) is one line.
fn for_each_line(text: &[u8], mut f: impl FnMut(&[u8])) {
    let mut rest = text;
    loop {
        match memchr::memchr2(b'\r', b'\n', rest) {
            None => {
                f(rest);
                return;
            }
            Some(i) => {
                f(rest.get(..i).unwrap_or_default());
                let skip = if rest.get(i..i.saturating_add(2)) == Some(b"\r\n") {
                    2
                } else {
                    1
                };
                rest = rest.get(i.saturating_add(skip)..).unwrap_or_default();
            }
        }
    }
}

/// Appends one event: `id: ..\n` (when `id` is `Some`), `event: ..\n` (when
/// `event` is `Some`), one `data: ` line per line of `data`, and a blank line.
///
/// `data` is split into lines at CRLF, LF and CR alike (as the decoder
/// does), so a decoder receives `data` with every CRLF and CR turned into
/// LF; data without line breaks, including empty data, is one `data:` line.
/// Returns `false` and writes nothing when `id` contains CR, LF or NUL (a
/// decoder would ignore or split it) or `event` contains CR or LF.
pub fn write_event(out: &mut BytesMut, id: Option<&str>, event: Option<&str>, data: &[u8]) -> bool {
    let bad_id = id.is_some_and(|s| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
    let bad_event = event.is_some_and(|s| s.bytes().any(|b| b == b'\r' || b == b'\n'));
    if bad_id || bad_event {
        return false;
    }
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\n");
    }
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.extend_from_slice(b"\n");
    }
    for_each_line(data, |line| {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    });
    out.extend_from_slice(b"\n");
    true
}

/// Appends a comment block, `: text\n\n`, typically as a keep-alive. A
/// `text` containing line breaks (CRLF, LF or CR) is written as one comment
/// line per line, so it can never inject fields.
pub fn write_comment(out: &mut BytesMut, text: &str) {
    for_each_line(text.as_bytes(), |line| {
        out.extend_from_slice(b": ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    });
    out.extend_from_slice(b"\n");
}

/// Appends a block that only sets the client's reconnection time:
/// `retry: ms\n\n`. It dispatches no event.
pub fn write_retry(out: &mut BytesMut, ms: u64) {
    out.extend_from_slice(b"retry: ");
    out.extend_from_slice(ms.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str, id: Option<&str>, retry: Option<u64>) -> Event {
        Event {
            event: event.map(str::to_owned),
            data: Bytes::copy_from_slice(data.as_bytes()),
            id: id.map(str::to_owned),
            retry,
        }
    }

    fn feed_all(dec: &mut SseDecoder, input: &[u8]) -> Vec<Event> {
        match dec.feed(input) {
            Ok(v) => v,
            Err(e) => panic!("feed failed: {e:?}"),
        }
    }

    fn feed_pieces(input: &[u8], cuts: &[usize]) -> (Vec<Event>, Option<String>) {
        let mut dec = SseDecoder::new(1024);
        let mut events = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let piece = input.get(start..cut).unwrap_or_default();
            events.extend(feed_all(&mut dec, piece));
            start = cut;
        }
        (events, dec.last_event_id().map(str::to_owned))
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: hello\r\nid: 1\r\nevent: message\r\ndata: {\"a\":\"\xC3\xA9\xE2\x82\xAC\"}\r\n\r\ndata:first\rdata:  second\r\rid: 7\nretry: 2500\n\nid\ndata\n\n: tail\n";

    fn expected_stream() -> Vec<Event> {
        vec![
            ev(
                Some("message"),
                "{\"a\":\"\u{e9}\u{20ac}\"}",
                Some("1"),
                None,
            ),
            ev(None, "first\n second", None, None),
            ev(None, "", Some(""), None),
        ]
    }

    #[test]
    fn whole_stream() {
        let (events, last) = feed_pieces(STREAM, &[]);
        assert_eq!(events, expected_stream());
        // The last block reset the id to empty.
        assert_eq!(last, None);
    }

    #[test]
    fn every_split_point_and_byte_by_byte() {
        let expected = expected_stream();
        for cut in 0..=STREAM.len() {
            let (events, _) = feed_pieces(STREAM, &[cut]);
            assert_eq!(events, expected, "split at {cut}");
        }
        for a in 0..=STREAM.len() {
            for b in a..=STREAM.len() {
                let (events, _) = feed_pieces(STREAM, &[a, b]);
                assert_eq!(events, expected, "split at {a}, {b}");
            }
        }
        let all: Vec<usize> = (1..STREAM.len()).collect();
        let (events, _) = feed_pieces(STREAM, &all);
        assert_eq!(events, expected);
    }

    #[test]
    fn crlf_split_across_feeds() {
        let mut dec = SseDecoder::new(1024);
        assert!(feed_all(&mut dec, b"data: a\r").is_empty());
        // The LF completes the CRLF; it must not count as a blank line.
        assert!(feed_all(&mut dec, b"\n").is_empty());
        assert!(feed_all(&mut dec, b"data: b\r").is_empty());
        let events = feed_all(&mut dec, b"\n\r\n");
        assert_eq!(events, vec![ev(None, "a\nb", None, None)]);
        // A lone CR followed by CR is two line ends: a dispatch.
        assert!(feed_all(&mut dec, b"data: c\r").is_empty());
        assert_eq!(feed_all(&mut dec, b"\r"), vec![ev(None, "c", None, None)]);
    }

    #[test]
    fn bom_only_at_start() {
        let mut dec = SseDecoder::new(1024);
        assert!(feed_all(&mut dec, b"\xEF").is_empty());
        assert!(feed_all(&mut dec, b"\xBB").is_empty());
        assert_eq!(
            feed_all(&mut dec, b"\xBFdata: x\n\n"),
            vec![ev(None, "x", None, None)]
        );
        // A second BOM is not skipped: it makes the field name unknown.
        assert!(feed_all(&mut dec, b"\xEF\xBB\xBFdata: y\n\n").is_empty());
        // A stream whose first bytes only look like the start of a BOM.
        let mut dec = SseDecoder::new(1024);
        assert!(feed_all(&mut dec, b"\xEF").is_empty());
        assert!(feed_all(&mut dec, b"\n").is_empty());
        assert_eq!(
            feed_all(&mut dec, b"data: z\n\n"),
            vec![ev(None, "z", None, None)]
        );
    }

    #[test]
    fn comments_and_unknown_fields() {
        let mut dec = SseDecoder::new(1024);
        let events = feed_all(
            &mut dec,
            b":keepalive\n\n: x\ndata: a\n:comment between\nfoo: bar\nDATA: no\ndata\n\n",
        );
        assert_eq!(events, vec![ev(None, "a\n", None, None)]);
    }

    #[test]
    fn multi_line_data_and_space_stripping() {
        let mut dec = SseDecoder::new(1024);
        let events = feed_all(
            &mut dec,
            b"data:no space\ndata: one space\ndata:  two spaces\ndata:\n\n",
        );
        assert_eq!(
            events,
            vec![ev(None, "no space\none space\n two spaces\n", None, None)]
        );
        let events = feed_all(&mut dec, b"event:\ndata: x\n\n");
        assert_eq!(events, vec![ev(None, "x", None, None)]);
        let events = feed_all(&mut dec, b"event: a\nevent: b\ndata: x\n\n");
        assert_eq!(events, vec![ev(Some("b"), "x", None, None)]);
    }

    #[test]
    fn id_without_data_updates_last_event_id() {
        let mut dec = SseDecoder::new(1024);
        assert_eq!(dec.last_event_id(), None);
        assert!(feed_all(&mut dec, b"id: 42\n\n").is_empty());
        assert_eq!(dec.last_event_id(), Some("42"));
        // Id persists across events without an id.
        assert_eq!(
            feed_all(&mut dec, b"data: x\n\n"),
            vec![ev(None, "x", None, None)]
        );
        assert_eq!(dec.last_event_id(), Some("42"));
        // Ids with NUL are ignored.
        assert_eq!(
            feed_all(&mut dec, b"id: a\x00b\ndata: y\n\n"),
            vec![ev(None, "y", None, None)]
        );
        assert_eq!(dec.last_event_id(), Some("42"));
        // Only applied once the block ends.
        assert!(feed_all(&mut dec, b"id: 43\n").is_empty());
        assert_eq!(dec.last_event_id(), Some("42"));
        assert!(feed_all(&mut dec, b"\n").is_empty());
        assert_eq!(dec.last_event_id(), Some("43"));
        // Empty id resets.
        assert!(feed_all(&mut dec, b"id\n\n").is_empty());
        assert_eq!(dec.last_event_id(), None);
    }

    #[test]
    fn retry_field() {
        let mut dec = SseDecoder::new(1024);
        assert_eq!(dec.retry(), None);
        let events = feed_all(&mut dec, b"retry: 3000\ndata: x\n\nretry: 12a\ndata: y\n\nretry: 99999999999999999999999\nretry: -1\nretry:\n\n");
        assert_eq!(
            events,
            vec![ev(None, "x", None, Some(3000)), ev(None, "y", None, None)]
        );
        assert_eq!(dec.retry(), Some(3000));
        assert!(feed_all(&mut dec, b"retry: 10\n\n").is_empty());
        assert_eq!(dec.retry(), Some(10));
    }

    #[test]
    fn too_large() {
        let mut dec = SseDecoder::new(10);
        assert_eq!(
            feed_all(&mut dec, b"data: 0123456789\n\n"),
            vec![ev(None, "0123456789", None, None)]
        );
        assert_eq!(
            dec.feed(b"data: 01234\ndata: 56789\n\n"),
            Err(SseError::TooLarge)
        );
        // The failure sticks.
        assert_eq!(dec.feed(b"data: x\n\n"), Err(SseError::TooLarge));

        // An endless line without a terminator is caught while buffering.
        let mut dec = SseDecoder::new(10);
        let mut result = Ok(Vec::new());
        for _ in 0..100 {
            result = dec.feed(b"aaaaaaaaaa");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::TooLarge));
        // So is a huge complete comment line.
        let mut dec = SseDecoder::new(10);
        let mut line = b":".to_vec();
        line.extend(std::iter::repeat_n(b'x', 200));
        line.extend_from_slice(b"\n\n");
        assert_eq!(dec.feed(&line), Err(SseError::TooLarge));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut dec = SseDecoder::new(1024);
        let events = feed_all(&mut dec, b"event: a\xFFb\ndata: x\xC3\n\n");
        assert_eq!(
            events,
            vec![ev(Some("a\u{fffd}b"), "x\u{fffd}", None, None)]
        );
    }

    #[test]
    fn encoder_round_trip() {
        let mut out = BytesMut::new();
        assert!(write_event(
            &mut out,
            Some("ev-1"),
            Some("message"),
            b"line one\nline two\n\nlast"
        ));
        assert!(write_event(&mut out, None, None, b""));
        assert!(write_event(&mut out, Some("2"), None, b" leading space"));
        write_comment(&mut out, "keep-alive");
        write_retry(&mut out, 5000);
        assert!(write_event(&mut out, None, Some("x"), b"cr\rcrlf\r\nlf\n"));
        assert!(out.starts_with(
            b"id: ev-1\nevent: message\ndata: line one\ndata: line two\ndata: \ndata: last\n\n"
        ));
        let mut dec = SseDecoder::new(1024);
        let events = feed_all(&mut dec, &out);
        assert_eq!(
            events,
            vec![
                ev(
                    Some("message"),
                    "line one\nline two\n\nlast",
                    Some("ev-1"),
                    None
                ),
                ev(None, "", None, None),
                ev(None, " leading space", Some("2"), None),
                ev(Some("x"), "cr\ncrlf\nlf\n", None, None),
            ]
        );
        assert_eq!(dec.last_event_id(), Some("2"));
        assert_eq!(dec.retry(), Some(5000));
    }

    #[test]
    fn encoder_rejects_injection() {
        let mut out = BytesMut::new();
        assert!(!write_event(&mut out, Some("1\ndata: evil"), None, b"x"));
        assert!(!write_event(&mut out, Some("1\r"), None, b"x"));
        assert!(!write_event(&mut out, Some("1\0"), None, b"x"));
        assert!(!write_event(&mut out, None, Some("a\r\nb"), b"x"));
        assert!(out.is_empty());
        write_comment(&mut out, "hi\ndata: evil\r\nretry: 1");
        assert_eq!(&out[..], b": hi\n: data: evil\n: retry: 1\n\n");
        let mut dec = SseDecoder::new(1024);
        assert!(feed_all(&mut dec, &out).is_empty());
        assert_eq!(dec.retry(), None);
        let mut out = BytesMut::new();
        write_comment(&mut out, "");
        assert_eq!(&out[..], b": \n\n");
    }

    fn xorshift(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    #[test]
    fn random_input_never_panics() {
        const ALPHABET: &[u8] = b"data: event: id: retry: 123 :\r\n\n\r\xEF\xBB\xBF\x00\xC3x";
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for i in 0..2000 {
            let len = (xorshift(&mut seed) % 400) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                let r = xorshift(&mut seed);
                bytes.push(if i % 2 == 0 {
                    r as u8
                } else {
                    ALPHABET
                        .get((r as usize) % ALPHABET.len())
                        .copied()
                        .unwrap_or(b'x')
                });
            }
            let mut dec = SseDecoder::new(64);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = 1 + (xorshift(&mut seed) % 13) as usize;
                let (a, b) = rest.split_at(n.min(rest.len()));
                rest = b;
                match dec.feed(a) {
                    Ok(events) => {
                        for e in events {
                            assert!(e.data.len() <= 64);
                            assert!(std::str::from_utf8(&e.data).is_ok());
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
