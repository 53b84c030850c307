//! A validated JSON-RPC message and the spans of its envelope fields.

use std::borrow::Cow;

use bytes::Bytes;

use super::{
    codes::Pieces,
    scan::{self, KeyFault, Level, Members},
    validate::{self, Token, Visit},
};

/// Levels of arrays and objects a message may have when its parser sets no limit (the
/// structural scan recurses this deep at most).
pub const MAX_DEPTH: usize = 1000;

/// A byte range in a message's buffer. Offsets are `u32`: bodies are capped far below 4 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Option<Self> {
        Some(Self {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// What a message is, by the members it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `method` and `id`: expects an answer.
    Request,
    /// `method` without `id`.
    Notification,
    /// `result` or `error` with `id`.
    Response,
}

/// Why bytes are not a JSON-RPC message. Maps to -32700 (`Parse`) or -32600 (`Invalid`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON at all.
    #[error("parse error: {0}")]
    Parse(String),
    /// JSON, but not a valid JSON-RPC 2.0 message; carries the id when one could be read.
    #[error("invalid request: {reason}")]
    Invalid {
        /// What is wrong, for the log and the client.
        reason: Cow<'static, str>,
        /// Raw JSON of the id, when the message had a usable one.
        id: Option<Bytes>,
    },
}

/// One JSON-RPC message: the bytes it came in, and where its envelope fields are.
#[derive(Clone, Debug)]
pub struct Frame {
    bytes: Bytes,
    kind: Kind,
    id: Option<Span>,
    method: Option<Span>,
    params: Option<Span>,
    result: Option<Span>,
    /// `result` is an object with a member named `resultType` (as written), noted by the
    /// parse: a legacy upstream's answer to a 2026-07-28 client gets one unless it has it,
    /// and is not searched for it.
    result_type: bool,
    /// `method` is one of [`METHODS`] written without escapes: its index + 1 (0: another
    /// name, or none), so that reading it decodes nothing.
    known_method: u8,
    error: Option<Span>,
    /// Where `params`' members are, found in the parse (empty without params, or when they
    /// are an array): lookups then skip no values (a request's `_meta` is looked up several
    /// times, often after 1 KiB of `arguments`).
    index: Index<PARAMS_CAP>,
    /// Where `params._meta` is (when an object) and its members, found in the parse: the
    /// phases read and edit `_meta` several times (a 2026-07-28 request's carries its
    /// version, capabilities and client info, a few hundred bytes walked each time).
    meta: Option<(Span, Index<META_CAP>)>,
}

/// Method names [`Frame::method`] gives without decoding them: those of MCP, the most
/// frequent first.
const METHODS: [&str; 25] = [
    "tools/call",
    "initialize",
    "ping",
    "tools/list",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/tools/list_changed",
    "notifications/resources/updated",
];

/// Where the method whose raw JSON is `raw` (quotes included) is in [`METHODS`], plus one;
/// 0 when it is not there.
fn known_method(raw: &[u8]) -> u8 {
    let Some(name) = raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) else {
        return 0;
    };
    // Few names share a length: one or two comparisons.
    let mut i = 0;
    while i < METHODS.len() {
        if METHODS[i].len() == name.len() && METHODS[i].as_bytes() == name {
            return u8::try_from(i + 1).unwrap_or(0);
        }
        i += 1;
    }
    0
}

/// The member of a result that [`Frame::result_has_type`] tells of.
const RESULT_TYPE: &[u8] = b"resultType";

/// Members of `params` kept in its index.
const PARAMS_CAP: usize = 5;
/// Members of `params._meta` kept in its index.
const META_CAP: usize = 8;

/// Up to `CAP` members of an object: raw key and value spans, in order.
#[derive(Clone, Copy, Debug)]
struct Index<const CAP: usize> {
    /// Members kept; a larger object (`full`) is scanned on each lookup instead.
    n: u8,
    full: bool,
    keys: [Span; CAP],
    values: [Span; CAP],
}

impl<const CAP: usize> Index<CAP> {
    const EMPTY: Self = Self {
        n: 0,
        full: false,
        keys: [Span { start: 0, end: 0 }; CAP],
        values: [Span { start: 0, end: 0 }; CAP],
    };

    /// Adds a member: raw key (a subslice of `b`) and value bounds.
    fn push(&mut self, b: &[u8], key: &[u8], vs: usize, ve: usize) {
        // The key's bytes are a subslice of `b`: its offset is recovered from pointers.
        let ks = key.as_ptr() as usize - b.as_ptr() as usize;
        let i = usize::from(self.n);
        match (
            i < CAP && !self.full,
            Span::new(ks, ks + key.len()),
            Span::new(vs, ve),
        ) {
            (true, Some(k), Some(v)) => {
                self.keys[i] = k;
                self.values[i] = v;
                self.n += 1;
            }
            _ => self.full = true,
        }
    }

    /// The members kept, as (raw key span, value span).
    fn entries(&self) -> impl Iterator<Item = (Span, Span)> + '_ {
        let n = usize::from(self.n);
        self.keys[..n]
            .iter()
            .copied()
            .zip(self.values[..n].iter().copied())
    }

    /// The value of member `key` (raw, as written); `None` when absent. Only for an index
    /// that is not `full`.
    fn find(&self, b: &[u8], key: &[u8]) -> Option<Span> {
        self.entries()
            .find(|(k, _)| b.get(k.range()) == Some(key))
            .map(|(_, v)| v)
    }
}

/// A parsed body: one message or a batch (a JSON array of messages).
// A single message is not boxed: it is the usual case, matched as soon as it is returned.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Message {
    /// A single message.
    Single(Frame),
    /// A batch; each element parsed on its own, in order. An element that is invalid is
    /// reported in place so the caller can answer it with an error and go on.
    Batch(Vec<Result<Frame, FrameError>>),
}

/// The per-worker parser. It holds nothing between messages now that validation is one pass
/// over the bytes as they came in ([`super::validate`]); it stays a value so callers keep one
/// place to parse through.
#[derive(Default)]
pub struct Parser {}

impl Parser {
    /// Parses `bytes` as one message or a batch.
    pub fn parse(&mut self, bytes: Bytes) -> Result<Message, FrameError> {
        self.parse_within(bytes, MAX_DEPTH)
    }

    /// As [`Parser::parse`], refusing more than `max_depth` levels (capped at
    /// [`MAX_DEPTH`]): a client's message, under the gateway's `max_json_depth`.
    ///
    /// A single message is validated and its envelope found in one walk ([`Fused`]); a
    /// batch is validated whole, then each element's envelope is scanned.
    pub fn parse_within(&mut self, bytes: Bytes, max_depth: usize) -> Result<Message, FrameError> {
        let max_depth = max_depth.clamp(1, MAX_DEPTH);
        let start = scan::skip_ws(&bytes, 0);
        if bytes.get(start) != Some(&b'[') {
            return Frame::fused(bytes, start, max_depth).map(Message::Single);
        }
        validate::walk::<true>(&bytes, MAX_DEPTH, |_: Token| {})
            .map_err(|e| FrameError::Parse(e.to_string()))?;
        let elems = scan::elements(&bytes, start)
            .ok_or_else(|| FrameError::Parse("unbalanced array".into()))?;
        if elems.is_empty() {
            return Err(invalid("empty batch", None));
        }
        Ok(Message::Batch(
            elems
                .into_iter()
                .map(|(s, e)| Frame::from_validated(bytes.slice(s..e), max_depth))
                .collect(),
        ))
    }

    /// The two-pass parse a single message had before [`Fused`]: the whole message
    /// validated, then its envelope scanned. The `frame` fuzz target holds the one walk to
    /// it.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn parse_two_pass(
        &mut self,
        bytes: Bytes,
        max_depth: usize,
    ) -> Result<Frame, FrameError> {
        let max_depth = max_depth.clamp(1, MAX_DEPTH);
        validate::walk::<true>(&bytes, MAX_DEPTH, |_: Token| {})
            .map_err(|e| FrameError::Parse(e.to_string()))?;
        Frame::from_validated(bytes, max_depth)
    }

    /// Parses one message an upstream sent (its answer, a notification, or a request of
    /// its own), scanning the envelope only: the top-level object strictly (separators,
    /// nothing after it, no member twice or escaped), `params` for its keys as for a
    /// client's message, and each other value only for where it ends (strings and nesting
    /// followed exactly, so the client's parser finds the envelope the gateway found). What
    /// is inside `result` or `error` is not validated: it passes through as the upstream's
    /// bytes, and a client's parser refuses it if it is not JSON.
    pub fn parse_upstream(&mut self, bytes: Bytes) -> Result<Frame, FrameError> {
        let start = scan::skip_ws(&bytes, 0);
        match bytes.get(start) {
            Some(b'{') => Frame::from_validated(bytes, MAX_DEPTH),
            Some(b'[') => Err(invalid("batch not allowed here", None)),
            _ => Err(FrameError::Parse("not a JSON object".into())),
        }
    }

    /// Parses `bytes` as exactly one message (batches are an error).
    pub fn parse_one(&mut self, bytes: Bytes) -> Result<Frame, FrameError> {
        match self.parse(bytes)? {
            Message::Single(f) => Ok(f),
            Message::Batch(_) => Err(invalid("batch not allowed here", None)),
        }
    }
}

/// Parses one message or a batch with a fresh [`Parser`] (tests and the control plane).
pub fn parse(bytes: Bytes) -> Result<Message, FrameError> {
    Parser::default().parse(bytes)
}

fn invalid(reason: impl Into<Cow<'static, str>>, id: Option<Bytes>) -> FrameError {
    FrameError::Invalid {
        reason: reason.into(),
        id,
    }
}

/// The refusal for a fault in the keys of `params`.
fn key_fault(fault: KeyFault, id: Option<Bytes>) -> FrameError {
    match fault {
        KeyFault::Duplicate(key) => {
            // The key is the client's: quoted as JSON, and cut short when long.
            let mut shown: String = key.chars().take(64).collect();
            if shown.len() < key.len() {
                shown.push_str("...");
            }
            let quoted = serde_json::to_string(&shown).unwrap_or_default();
            invalid(format!("duplicate member {quoted} in params"), id)
        }
        KeyFault::Escaped => invalid("escaped member name in params", id),
        KeyFault::TooDeep => invalid("nested too deeply", id),
        KeyFault::Malformed => invalid("malformed params", id),
    }
}

/// The refusal for a message whose top level is not one well-formed JSON object.
fn malformed() -> FrameError {
    FrameError::Parse("malformed JSON object".into())
}

/// The id a refusal for a fault in `params` carries, when the message has one usable (the
/// walk may have stopped short of it): looked up again without limits.
fn fault_id(bytes: &Bytes, start: usize) -> Option<Bytes> {
    let b: &[u8] = bytes;
    let mut ids = Members::new(b, start)
        .into_iter()
        .flatten()
        .filter(|(k, _, _)| *k == b"id");
    match (ids.next(), ids.next()) {
        (Some((_, s, e)), None) => b
            .get(s..e)
            .filter(|raw| matches!(raw.first(), Some(b'"' | b'-' | b'0'..=b'9')))
            .map(|_| bytes.slice(s..e)),
        _ => None,
    }
}

/// The members of a message's top-level object, by what the gateway does with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Top {
    Jsonrpc,
    Id,
    Method,
    Params,
    Result,
    Error,
    /// Any other name, passed over.
    Other,
    /// A name written with escapes: it could spell one of the above, so it is refused.
    Escaped,
}

impl Top {
    fn of(key: &[u8], escaped: bool) -> Self {
        match key {
            b"jsonrpc" => Top::Jsonrpc,
            b"id" => Top::Id,
            b"method" => Top::Method,
            b"params" => Top::Params,
            b"result" => Top::Result,
            b"error" => Top::Error,
            _ if escaped => Top::Escaped,
            _ => Top::Other,
        }
    }
}

/// What the top-level members said so far: `jsonrpc` seen and right.
#[derive(Default)]
struct TopMembers {
    seen_jsonrpc: bool,
    version_ok: bool,
}

impl TopMembers {
    /// The top-level member `top` has its value at `vs..ve`: kept in its slot of `f`;
    /// refused when seen before, or escaped.
    fn member(
        &mut self,
        f: &mut Frame,
        b: &[u8],
        top: Top,
        vs: usize,
        ve: usize,
    ) -> Result<(), FrameError> {
        let span = Span::new(vs, ve).ok_or_else(|| invalid("message too large", None))?;
        match top {
            Top::Jsonrpc => {
                if self.seen_jsonrpc {
                    return Err(invalid("duplicate member", None));
                }
                self.seen_jsonrpc = true;
                self.version_ok = b.get(vs..ve) == Some(&b"\"2.0\""[..]);
            }
            Top::Escaped => return Err(invalid("escaped member name", None)),
            _ => {
                if let Some(slot) = f.slot(top) {
                    if slot.replace(span).is_some() {
                        return Err(invalid("duplicate member", None));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why [`Fused`] refuses a message it walked: the first fault found.
enum Stop {
    /// In the keys of `params` or in depth: refused with the id (see [`key_fault`]).
    Keys(KeyFault),
    /// In the top-level members.
    Frame(FrameError),
}

/// An object within `params` (outside `arguments`) whose keys are being checked: no key
/// twice (compared as written for the first [`scan::INLINE_KEYS`], decoded and sorted at
/// its end past that or when one has escapes), none escaped into a name the gateway could
/// read.
#[derive(Clone, Copy, Default)]
struct Checked {
    depth: u32,
    start: u32,
    /// Where its keys start in [`Fused::keys`].
    first: u32,
    slow: bool,
}

/// Keys of the checked objects open that [`Fused`] keeps; past them, an object is checked
/// by sorting at its end.
const FUSED_KEYS: usize = 16;
/// Checked objects open, one within the other, that [`Fused`] follows; an object deeper
/// than that is checked whole, at its end, by [`scan::check_keys_with`].
const FUSED_LEVELS: usize = 4;

/// The envelope of a client's message, found by the validating walk as it goes: the
/// top-level members' spans, the checks and indexes [`Frame::from_validated`] makes of
/// `params` and its `_meta`, and the depth bound, so that the message is read once.
///
/// Levels: the top-level object is at depth 1, its members' values open at 2 (`params`),
/// `params`' members' values at 3 (`arguments`, `_meta`), `_meta`'s at 4.
struct Fused<'b> {
    b: &'b [u8],
    max_depth: usize,
    /// Arrays and objects open.
    depth: usize,
    /// Where the open containers of depths 1 to 4 began.
    starts: [u32; 5],
    /// The top-level member whose value is being walked.
    top: Top,
    /// `params`' member whose value is being walked: what it is, and its key (raw, without
    /// quotes).
    param: Param,
    param_key: (u32, u32),
    /// The key of `_meta`'s member whose value is being walked.
    meta_key: (u32, u32),
    /// `params` is open and is an object.
    params_object: bool,
    /// `params._meta` is open and is an object.
    meta_object: bool,
    /// The depth of the `arguments` value being walked (no key in it is checked), or 0.
    skip: usize,
    /// The depth of an object checked whole at its end (deeper than [`FUSED_LEVELS`]
    /// checked objects), or 0; and where it starts.
    whole: usize,
    whole_start: usize,
    /// Keys of the checked objects open, outermost first.
    keys: [(u32, u32); FUSED_KEYS],
    nkeys: usize,
    checked: [Checked; FUSED_LEVELS],
    nchecked: usize,
    frame: Frame,
    top_members: TopMembers,
    meta: Option<Span>,
    meta_index: Index<META_CAP>,
    stop: Option<Stop>,
}

/// A member of `params`, by what the walk does with it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Param {
    Arguments,
    Meta,
    Other,
}

/// `i` as a `u32` (every offset of a message whose spans fit: see [`Span::new`]).
fn at32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl<'b> Fused<'b> {
    fn new(b: &'b [u8], max_depth: usize) -> Self {
        Self {
            b,
            max_depth,
            depth: 0,
            starts: [0; 5],
            top: Top::Other,
            param: Param::Other,
            param_key: (0, 0),
            meta_key: (0, 0),
            params_object: false,
            meta_object: false,
            skip: 0,
            whole: 0,
            whole_start: 0,
            keys: [(0, 0); FUSED_KEYS],
            nkeys: 0,
            checked: [Checked::default(); FUSED_LEVELS],
            nchecked: 0,
            frame: Frame::BLANK,
            top_members: TopMembers::default(),
            meta: None,
            meta_index: Index::EMPTY,
            stop: None,
        }
    }

    fn fault(&mut self, fault: KeyFault) {
        if self.stop.is_none() {
            self.stop = Some(Stop::Keys(fault));
        }
    }

    /// The innermost checked object, when it is the container at `depth`.
    fn checked_at(&mut self, depth: usize) -> Option<&mut Checked> {
        let o = self.checked.get_mut(self.nchecked.checked_sub(1)?)?;
        (o.depth as usize == depth).then_some(o)
    }

    /// The key at `t`, of the checked object `o` (the innermost).
    fn check_key(&mut self, t: Token, o: usize) -> Result<(), KeyFault> {
        let b = self.b;
        let Some(obj) = self.checked.get_mut(o) else {
            return Ok(());
        };
        if t.escaped {
            scan::check_escaped(b.get(t.start..t.end).ok_or(KeyFault::Malformed)?)?;
            obj.slow = true;
            return Ok(());
        }
        if obj.slow {
            return Ok(());
        }
        let (ks, ke) = (t.start + 1, t.end - 1);
        let key = b.get(ks..ke).ok_or(KeyFault::Malformed)?;
        let mine = self
            .keys
            .get(obj.first as usize..self.nkeys)
            .unwrap_or_default();
        for &(s, e) in mine {
            if (e - s) as usize == key.len() && b.get(s as usize..e as usize) == Some(key) {
                return Err(scan::duplicate(key));
            }
        }
        let room = mine.len() < scan::INLINE_KEYS;
        match self.keys.get_mut(self.nkeys) {
            Some(slot) if room => {
                *slot = (at32(ks), at32(ke));
                self.nkeys += 1;
            }
            _ => obj.slow = true,
        }
        Ok(())
    }

    /// A checked object opens at `at`, at `depth`.
    fn push_checked(&mut self, at: usize, depth: usize) {
        match self.checked.get_mut(self.nchecked) {
            Some(slot) => {
                *slot = Checked {
                    depth: at32(depth),
                    start: at32(at),
                    first: at32(self.nkeys),
                    slow: false,
                };
                self.nchecked += 1;
            }
            None => {
                self.whole = depth;
                self.whole_start = at;
            }
        }
    }

    /// The container at `depth` closed: the checks of its keys that wait for its end.
    fn closed_checked(&mut self, depth: usize) -> Result<(), KeyFault> {
        if self.whole == depth {
            self.whole = 0;
            // The levels it may have: the message's, less those it is within.
            let budget = self.max_depth + 1 - depth;
            let ignore = &mut |_, _: &[u8], _, _| {};
            scan::check_keys_with(self.b, self.whole_start, budget, (None, None), ignore)?;
            return Ok(());
        }
        if let Some(o) = self.checked_at(depth).copied() {
            self.nchecked -= 1;
            self.nkeys = o.first as usize;
            if o.slow {
                scan::check_sorted(self.b, o.start as usize)?;
            }
        }
        Ok(())
    }

    /// A value of the container at `self.depth` ended: `start..end`.
    #[inline]
    fn value(&mut self, start: usize, end: usize) {
        let b = self.b;
        match self.depth {
            1 => {
                if let Err(e) = self
                    .top_members
                    .member(&mut self.frame, b, self.top, start, end)
                {
                    self.stop = Some(Stop::Frame(e));
                }
            }
            2 if self.params_object => {
                let (ks, ke) = self.param_key;
                let key = b.get(ks as usize..ke as usize).unwrap_or_default();
                if self.param == Param::Meta && b.get(start) == Some(&b'{') {
                    self.meta = Span::new(start, end);
                }
                self.frame.index.push(b, key, start, end);
            }
            3 if self.meta_object => {
                let (ks, ke) = self.meta_key;
                let key = b.get(ks as usize..ke as usize).unwrap_or_default();
                self.meta_index.push(b, key, start, end);
            }
            _ => {}
        }
    }
}

impl Visit for &mut Fused<'_> {
    #[inline]
    fn string(&mut self, t: Token) {
        if self.stop.is_none() {
            self.value(t.start, t.end);
        }
    }

    #[inline]
    fn key(&mut self, t: Token) {
        if self.stop.is_some() {
            return;
        }
        let d = self.depth;
        match d {
            1 => {
                let key = self.b.get(t.start + 1..t.end - 1).unwrap_or_default();
                self.top = Top::of(key, t.escaped);
                return;
            }
            2 if self.params_object => {
                self.param_key = (at32(t.start + 1), at32(t.end - 1));
                self.param = match self.b.get(t.start + 1..t.end - 1) {
                    Some(b"arguments") => Param::Arguments,
                    Some(b"_meta") => Param::Meta,
                    _ => Param::Other,
                };
            }
            2 if self.top == Top::Result
                && self.b.get(t.start + 1..t.end - 1) == Some(RESULT_TYPE) =>
            {
                self.frame.result_type = true;
            }
            3 if self.meta_object => self.meta_key = (at32(t.start + 1), at32(t.end - 1)),
            _ => {}
        }
        if self.checked_at(d).is_some() {
            if let Err(fault) = self.check_key(t, self.nchecked - 1) {
                self.fault(fault);
            }
        }
    }

    #[inline]
    fn scalar(&mut self, start: usize, end: usize) {
        if self.stop.is_none() {
            self.value(start, end);
        }
    }

    #[inline]
    fn open(&mut self, at: usize) {
        self.depth += 1;
        let d = self.depth;
        if self.stop.is_some() || self.whole != 0 {
            // Within an object checked whole, depth too is checked at its end.
            return;
        }
        if d > self.max_depth {
            self.fault(KeyFault::TooDeep);
            return;
        }
        if let Some(s) = self.starts.get_mut(d) {
            *s = at32(at);
        }
        let object = self.b.get(at) == Some(&b'{');
        if d == 2 && self.top == Top::Params {
            self.params_object = object;
        }
        if d == 3 && self.params_object && self.skip == 0 {
            match self.param {
                Param::Arguments => self.skip = 3,
                Param::Meta if object => self.meta_object = true,
                _ => {}
            }
        }
        // Below the top level, the container at depth 2 is the value of the top-level
        // member being walked.
        if d >= 2 && self.top == Top::Params && self.skip == 0 && object {
            self.push_checked(at, d);
        }
    }

    #[inline]
    fn close(&mut self, end: usize) {
        let d = self.depth;
        self.depth -= 1;
        if self.stop.is_some() || (self.whole != 0 && self.whole != d) {
            return;
        }
        if let Err(fault) = self.closed_checked(d) {
            self.fault(fault);
            return;
        }
        match d {
            3 => {
                if self.skip == 3 {
                    self.skip = 0;
                }
                self.meta_object = false;
            }
            2 => self.params_object = false,
            _ => {}
        }
        // Deeper than 4, the value is none the envelope reads.
        let start = self.starts.get(d).map_or(0, |&s| s as usize);
        self.value(start, end);
    }
}

/// The members of a message's top-level object, walked strictly: a key, a colon and a
/// value, then a comma and the next member or the closing brace, then nothing but
/// whitespace. (Inner objects are skipped by the structural scan; the top level is what the
/// gateway decides on, so it is held to the grammar here even where nothing validated it.)
struct Envelope<'a> {
    b: &'a [u8],
    pos: usize,
    first: bool,
}

impl<'a> Envelope<'a> {
    /// `start` is the index of `{`; `None` when it is not an object.
    fn new(b: &'a [u8], start: usize) -> Option<Self> {
        (*b.get(start)? == b'{').then_some(Self {
            b,
            pos: start + 1,
            first: true,
        })
    }

    /// The next member's raw key and where its value starts; `None` past the closing brace
    /// (with nothing after it); `Err` where the grammar is broken.
    fn next_key(&mut self) -> Result<Option<(&'a [u8], usize)>, ()> {
        let b = self.b;
        let mut i = scan::skip_ws(b, self.pos);
        match (b.get(i), self.first) {
            (Some(b'}'), _) => {
                return if scan::skip_ws(b, i + 1) == b.len() {
                    Ok(None)
                } else {
                    Err(())
                };
            }
            (Some(b','), false) => i = scan::skip_ws(b, i + 1),
            (Some(b'"'), true) => {}
            _ => return Err(()),
        }
        self.first = false;
        if b.get(i) != Some(&b'"') {
            return Err(());
        }
        let key_end = scan::string_end(b, i).ok_or(())?;
        let key = b.get(i + 1..key_end - 1).ok_or(())?;
        let colon = scan::skip_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return Err(());
        }
        Ok(Some((key, scan::skip_ws(b, colon + 1))))
    }

    /// The value of the member [`Envelope::next_key`] gave ends at `ve`.
    fn past(&mut self, ve: usize) {
        self.pos = ve;
    }
}

// === impl Frame ===

impl Frame {
    /// A frame with no member found yet.
    const BLANK: Frame = Frame {
        bytes: Bytes::new(),
        kind: Kind::Notification,
        id: None,
        method: None,
        params: None,
        result: None,
        result_type: false,
        known_method: 0,
        error: None,
        index: Index::EMPTY,
        meta: None,
    };

    /// The slot of top-level member `top` (`None` for `jsonrpc` and members not kept).
    fn slot(&mut self, top: Top) -> Option<&mut Option<Span>> {
        Some(match top {
            Top::Id => &mut self.id,
            Top::Method => &mut self.method,
            Top::Params => &mut self.params,
            Top::Result => &mut self.result,
            Top::Error => &mut self.error,
            Top::Jsonrpc | Top::Other | Top::Escaped => return None,
        })
    }

    /// Builds a frame from bytes already validated as JSON (a batch's element), or from an
    /// upstream's message (see [`Parser::parse_upstream`]), refusing more than `max_depth`
    /// levels and, in `params` (outside a call's `arguments`), a key twice in one object or
    /// a key escaped into a name the gateway could read: the gateway decides on the members
    /// it reads there, and the upstream must act on the same ones (parsers differ on which
    /// duplicate wins).
    fn from_validated(bytes: Bytes, max_depth: usize) -> Result<Self, FrameError> {
        let b: &[u8] = &bytes;
        let start = scan::skip_ws(b, 0);
        let depth = max_depth.saturating_sub(1);
        let mut members =
            Envelope::new(b, start).ok_or_else(|| invalid("message is not an object", None))?;
        let mut f = Frame::BLANK;
        let mut index = Index::EMPTY;
        let mut meta = (None, Index::EMPTY);
        let mut seen = TopMembers::default();
        while let Some((key, vs)) = members.next_key().map_err(|()| malformed())? {
            // `params` is walked once: its end, its depth, its keys, and the indexes of it
            // and of its `_meta`.
            let end = if key == b"params" {
                let walk = (Some(&b"arguments"[..]), Some(&b"_meta"[..]));
                let on_member = &mut |level, k: &[u8], s, e| match level {
                    Level::Own => {
                        if k == b"_meta" && b.get(s) == Some(&b'{') {
                            meta.0 = Span::new(s, e);
                        }
                        index.push(b, k, s, e);
                    }
                    Level::Inner => meta.1.push(b, k, s, e),
                };
                scan::check_keys_with(b, vs, depth, walk, on_member)
            } else if key == b"result" {
                scan::value_end_noting::<true>(b, vs, depth, RESULT_TYPE, &mut f.result_type)
                    .map_err(KeyFault::from)
            } else {
                scan::value_end_within(b, vs, depth).map_err(KeyFault::from)
            };
            let ve = match end {
                Ok(ve) => ve,
                Err(fault) => return Err(key_fault(fault, fault_id(&bytes, start))),
            };
            members.past(ve);
            seen.member(&mut f, b, Top::of(key, key.contains(&b'\\')), vs, ve)?;
        }
        f.index = index;
        f.meta = meta.0.map(|span| (span, meta.1));
        f.finish(bytes, seen.version_ok)?;
        Ok(f)
    }

    /// Validates a client's single message (`bytes[start]` is not `[`) and finds its
    /// envelope in the same walk; what it accepts and refuses, and why, is what
    /// [`Frame::from_validated`] after a validating pass accepts and refuses.
    fn fused(bytes: Bytes, start: usize, max_depth: usize) -> Result<Self, FrameError> {
        let mut v = Fused::new(&bytes, max_depth);
        validate::walk::<true>(&bytes, MAX_DEPTH, &mut v)
            .map_err(|e| FrameError::Parse(e.to_string()))?;
        if bytes.get(start) != Some(&b'{') {
            return Err(invalid("message is not an object", None));
        }
        match v.stop {
            Some(Stop::Keys(fault)) => return Err(key_fault(fault, fault_id(&bytes, start))),
            Some(Stop::Frame(e)) => return Err(e),
            None => {}
        }
        let mut f = v.frame;
        f.meta = v.meta.map(|span| (span, v.meta_index));
        let version_ok = v.top_members.version_ok;
        f.finish(bytes, version_ok)?;
        Ok(f)
    }

    /// The checks that need the whole envelope, then the kind and the bytes; `self` holds
    /// the members' spans in `bytes`. (By reference: a frame is 320 bytes, and each move of
    /// it is a copy.)
    fn finish(&mut self, bytes: Bytes, version_ok: bool) -> Result<(), FrameError> {
        let b: &[u8] = &bytes;
        let id_bytes = self.id.and_then(|s| {
            let raw = b.get(s.range())?;
            matches!(raw.first(), Some(b'"' | b'-' | b'0'..=b'9')).then(|| bytes.slice(s.range()))
        });
        if self.id.is_some() && id_bytes.is_none() {
            // null, bool, object or array ids are not allowed in MCP.
            return Err(invalid("id must be a string or a number", None));
        }
        if !version_ok {
            return Err(invalid("jsonrpc must be \"2.0\"", id_bytes));
        }
        // Wherever it appears (a response has no use for it, but a string there is still
        // not JSON-RPC), params is structured.
        if let Some(p) = self.params {
            if !matches!(b.get(p.start as usize), Some(b'{' | b'[')) {
                return Err(invalid("params must be an object or an array", id_bytes));
            }
        }
        if let Some(m) = self.method {
            self.known_method = b.get(m.range()).map_or(0, known_method);
        }
        self.kind = match (
            self.method,
            self.id,
            self.result.is_some() || self.error.is_some(),
        ) {
            (Some(m), id, false) => {
                if b.get(m.start as usize) != Some(&b'"') {
                    return Err(invalid("method must be a string", id_bytes));
                }
                if id.is_some() {
                    Kind::Request
                } else {
                    Kind::Notification
                }
            }
            (None, Some(_), true) => {
                if self.result.is_some() && self.error.is_some() {
                    return Err(invalid("response has both result and error", id_bytes));
                }
                Kind::Response
            }
            (None, None, true) => return Err(invalid("response without id", None)),
            _ => return Err(invalid("not a request, notification or response", id_bytes)),
        };
        self.bytes = bytes;
        Ok(())
    }

    /// The message bytes, exactly as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Request, notification or response.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Raw JSON of the id (`"abc"` with quotes, or `7`), if any.
    pub fn id_raw(&self) -> Option<Bytes> {
        self.id.map(|s| self.bytes.slice(s.range()))
    }

    /// The id's raw bytes, borrowed: for comparing it (no reference count taken).
    pub fn id_bytes(&self) -> Option<&[u8]> {
        self.id.and_then(|s| self.bytes.get(s.range()))
    }

    /// Span of the id value.
    pub fn id_span(&self) -> Option<Span> {
        self.id
    }

    /// The method name (decoded when it holds escapes).
    pub fn method(&self) -> Option<Cow<'_, str>> {
        match METHODS.get(usize::from(self.known_method).wrapping_sub(1)) {
            Some(&m) => Some(Cow::Borrowed(m)),
            None => self.method.and_then(|s| self.str_at(s)),
        }
    }

    /// Whether this is an error response.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// Where `result` is.
    pub fn result_span(&self) -> Option<Span> {
        self.result
    }

    /// Whether `result` is an object with a member named `resultType` (as written).
    pub fn result_has_type(&self) -> bool {
        self.result_type
    }

    /// Raw JSON of `result`.
    pub fn result_raw(&self) -> Option<&[u8]> {
        self.result.and_then(|s| self.bytes.get(s.range()))
    }

    /// Raw JSON of `error`.
    pub fn error_raw(&self) -> Option<&[u8]> {
        self.error.and_then(|s| self.bytes.get(s.range()))
    }

    /// Span of `params`.
    pub fn param_span(&self) -> Option<Span> {
        self.params
    }

    /// Raw JSON of `params`.
    pub fn params_raw(&self) -> Option<&[u8]> {
        self.params.and_then(|s| self.bytes.get(s.range()))
    }

    /// Span of member `key` of `params` (when `params` is an object).
    pub fn param(&self, key: &str) -> Option<Span> {
        let params = self.params?;
        if self.index.full {
            return self.member(params, key);
        }
        self.index.find(&self.bytes, key.as_bytes())
    }

    /// The index of the object at `obj` when the parse made one (it is `params._meta`) and
    /// it holds every member.
    fn indexed(&self, obj: Span) -> Option<&Index<META_CAP>> {
        self.meta
            .as_ref()
            .filter(|(at, ix)| *at == obj && !ix.full)
            .map(|(_, ix)| ix)
    }

    /// Spans of members `keys` of the object at `obj`, in one walk of its members.
    pub fn members<const N: usize>(&self, obj: Span, keys: [&str; N]) -> [Option<Span>; N] {
        let mut out = [None; N];
        if let Some(ix) = self.indexed(obj) {
            for (i, key) in keys.iter().enumerate() {
                out[i] = ix.find(&self.bytes, key.as_bytes());
            }
            return out;
        }
        let Some(members) = Members::new(&self.bytes, obj.start as usize) else {
            return out;
        };
        for (k, s, e) in members {
            if let Some(i) = keys.iter().position(|key| k == key.as_bytes()) {
                if out[i].is_none() {
                    out[i] = Span::new(s, e);
                }
            }
        }
        out
    }

    /// Span of member `key` of the object at `obj`.
    pub fn member(&self, obj: Span, key: &str) -> Option<Span> {
        if let Some(ix) = self.indexed(obj) {
            return ix.find(&self.bytes, key.as_bytes());
        }
        Members::new(&self.bytes, obj.start as usize)?
            .find(|(k, _, _)| *k == key.as_bytes())
            .and_then(|(_, s, e)| Span::new(s, e))
    }

    /// The spans that remove the members of the object at `obj` whose key `drop` picks (with
    /// their commas), leaving valid JSON: splice each with nothing. Keys are compared raw
    /// (as written, escapes undecoded). The flag says whether the object is left empty.
    pub fn removals(
        &self,
        obj: Span,
        drop: impl Fn(&[u8]) -> bool,
    ) -> (smallvec::SmallVec<[Span; 4]>, bool) {
        let b: &[u8] = &self.bytes;
        // (key's opening quote, value end, dropped) of each member, in order.
        let mut all: smallvec::SmallVec<[(usize, usize, bool); META_CAP]> =
            smallvec::SmallVec::new();
        if let Some(ix) = self.indexed(obj) {
            all.extend(ix.entries().map(|(k, v)| {
                let key = b.get(k.range()).unwrap_or_default();
                (
                    (k.start as usize).saturating_sub(1),
                    v.end as usize,
                    drop(key),
                )
            }));
        } else if let Some(members) = Members::new(b, obj.start as usize) {
            all.extend(members.map(|(k, _, ve)| {
                let quote = (k.as_ptr() as usize).saturating_sub(b.as_ptr() as usize + 1);
                (quote, ve, drop(k))
            }));
        } else {
            return (smallvec::SmallVec::new(), false);
        }
        let mut out = smallvec::SmallVec::new();
        let mut i = 0;
        while i < all.len() {
            if !all[i].2 {
                i += 1;
                continue;
            }
            let mut j = i;
            while j + 1 < all.len() && all[j + 1].2 {
                j += 1;
            }
            // A run of dropped members: up to the next kept member's key (taking the commas
            // after them), or, at the end, from the last kept member's value (taking the
            // comma before them), or all of them.
            let span = if j + 1 < all.len() {
                Span::new(all[i].0, all[j + 1].0)
            } else if i > 0 {
                Span::new(all[i - 1].1, all[j].1)
            } else {
                Span::new(all[i].0, all[j].1)
            };
            out.extend(span);
            i = j + 1;
        }
        let emptied = all.iter().all(|m| m.2);
        (out, emptied)
    }

    /// The string at `span` (a JSON string token), decoded; `None` when it is not a string.
    pub fn str_at(&self, span: Span) -> Option<Cow<'_, str>> {
        json_str(self.bytes.get(span.range())?)
    }

    /// Raw bytes at `span`.
    pub fn raw_at(&self, span: Span) -> Option<&[u8]> {
        self.bytes.get(span.range())
    }

    /// This message with the bytes at each span replaced. See [`splice`].
    pub fn splice(&self, edits: &mut [(Span, &[u8])]) -> Bytes {
        splice(&self.bytes, edits)
    }

    /// This message with the bytes at each span replaced (see [`splice`]) as parts written
    /// one after another: in a message of [`PIECES_MIN`] bytes or more, each stretch of
    /// [`PIECES_GAP`] bytes or more between edits (a request's arguments, whatever the order
    /// of its members) is this message's own bytes, shared; the edits and the short
    /// stretches around them are copied. A smaller message is one spliced buffer.
    pub fn splice_parts(&self, edits: &mut [(Span, &[u8])]) -> crate::net::Segments {
        self.splice_parts_with(edits, PIECES_MIN, PIECES_GAP)
    }

    /// [`Frame::splice_parts`] with its two sizes given (the fuzz targets use small ones).
    pub(crate) fn splice_parts_with(
        &self,
        edits: &mut [(Span, &[u8])],
        min: usize,
        gap: usize,
    ) -> crate::net::Segments {
        let b = &self.bytes;
        edits.sort_by_key(|(s, _)| (s.start, s.end));
        let ordered = edits.windows(2).all(|w| w[0].0.end <= w[1].0.start)
            && edits
                .iter()
                .all(|(s, _)| s.start <= s.end && s.end as usize <= b.len());
        if b.len() < min || !ordered {
            return splice(b, edits).into();
        }
        let mut out = crate::net::Segments::default();
        // The copied run being gathered: from byte `from`, with the edits from `first`.
        let (mut from, mut first) = (0usize, 0usize);
        for i in 0..=edits.len() {
            let gap_start = match i.checked_sub(1).and_then(|j| edits.get(j)) {
                Some((s, _)) => s.end as usize,
                None => 0,
            };
            let gap_end = edits.get(i).map_or(b.len(), |(s, _)| s.start as usize);
            if gap_end - gap_start < gap {
                continue;
            }
            out.push(copy_run(b, from, gap_start, &edits[first..i]));
            out.push(b.slice(gap_start..gap_end));
            (from, first) = (gap_end, i);
        }
        out.push(copy_run(b, from, b.len(), &edits[first..]));
        out
    }

    /// This message with the bytes at each span replaced (see [`splice`]), the rest not
    /// copied when it is worth it: in a message of [`PIECES_MIN`] bytes or more whose
    /// edits all end within its first [`PIECES_HEAD_MAX`] bytes (an answer's id, a
    /// request's id and name, where peers write them), the bytes up to the last edit are
    /// spliced into a copy and the rest is this message's own (shared). Other messages are
    /// spliced into one buffer.
    pub fn splice_front(&self, edits: &mut [(Span, &[u8])]) -> Pieces {
        self.splice_front_with(edits, PIECES_MIN, PIECES_HEAD_MAX)
    }

    /// [`Frame::splice_front`] with its two sizes given (the fuzz targets use small ones).
    pub(crate) fn splice_front_with(
        &self,
        edits: &mut [(Span, &[u8])],
        min: usize,
        head_max: usize,
    ) -> Pieces {
        let b = &self.bytes;
        let front = edits.iter().map(|(s, _)| s.end as usize).max().unwrap_or(0);
        if b.len() < min || front > head_max || front > b.len() {
            return Pieces::whole(splice(b, edits));
        }
        let grow: usize = edits.iter().map(|(_, w)| w.len()).sum();
        let head = crate::arena::build(front + grow, |out| {
            edits.sort_by_key(|(s, _)| (s.start, s.end));
            splice_range(out, b, 0, front, edits)
        });
        Pieces {
            head,
            body: b.slice(front..),
            tail: b"",
        }
    }
}

/// The `error` member (raw JSON) of an error response whose id is `null`: what a peer
/// answers when it could not read the request's id (a parse error, too deep a nesting).
/// Such a message is no [`Frame`] (ids are strings or numbers); on a channel that carries
/// exactly one call it is that call's answer. `b` must be valid JSON (a message the frame
/// parser refused as invalid, not as unparsable).
pub fn null_id_error(b: &[u8]) -> Option<&[u8]> {
    let members = Members::new(b, scan::skip_ws(b, 0))?;
    let (mut id, mut error, mut version) = (None, None, None);
    for (key, vs, ve) in members {
        let slot = match key {
            b"id" => &mut id,
            b"error" => &mut error,
            b"jsonrpc" => &mut version,
            b"method" | b"result" | b"params" => return None,
            _ => continue,
        };
        if slot.replace(b.get(vs..ve)?).is_some() {
            return None;
        }
    }
    let error = error.filter(|e| e.first() == Some(&b'{'))?;
    (id == Some(&b"null"[..]) && version == Some(&b"\"2.0\""[..])).then_some(error)
}

/// A JSON string token decoded: borrowed when it has no escapes; `None` when `raw` is not
/// one.
pub fn json_str(raw: &[u8]) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(raw).ok().map(Cow::Owned)
    } else {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }
}

/// Unedited stretches at least this long are not copied by [`Frame::splice_parts`].
pub const PIECES_GAP: usize = 4 << 10;

/// Messages shorter than this are spliced into one buffer (a copy costs less than the
/// pieces do); see [`Frame::splice_front`].
pub const PIECES_MIN: usize = 8 << 10;
/// How far into a message its edits may reach for the bytes up to them to be copied and
/// the rest shared; see [`Frame::splice_front`].
pub const PIECES_HEAD_MAX: usize = 1 << 10;

/// Copies `src` with the bytes at each span replaced; spans must not overlap. Everything
/// outside the spans is copied byte for byte.
pub fn splice(src: &Bytes, edits: &mut [(Span, &[u8])]) -> Bytes {
    let grow: usize = edits.iter().map(|(_, b)| b.len()).sum();
    crate::arena::build(src.len() + grow, |out| splice_into(out, src, edits))
}

/// `b[from..to]` with `edits` (in order, within it) applied, copied.
fn copy_run(b: &[u8], from: usize, to: usize, edits: &[(Span, &[u8])]) -> Bytes {
    let grow: usize = edits.iter().map(|(_, w)| w.len()).sum();
    crate::arena::build(to - from + grow, |out| {
        splice_range(out, b, from, to, edits)
    })
}

/// Appends `src` with the bytes at each span replaced (edits past its end are skipped).
fn splice_into(out: &mut bytes::BytesMut, src: &[u8], edits: &mut [(Span, &[u8])]) {
    // By start, and an insertion (empty span) before a replacement starting there.
    edits.sort_by_key(|(s, _)| (s.start, s.end));
    splice_range(out, src, 0, src.len(), edits);
}

/// Appends `src[from..to]` with the bytes at each span (offsets into `src`, sorted by
/// start) replaced. An edit overlapping the one before it or outside `from..to` is skipped:
/// callers never produce these.
fn splice_range(
    out: &mut bytes::BytesMut,
    src: &[u8],
    from: usize,
    to: usize,
    edits: &[(Span, &[u8])],
) {
    let to = to.min(src.len());
    let mut at = from;
    for (span, with) in edits {
        let (s, e) = (span.start as usize, span.end as usize);
        if s < at || e < s || e > to {
            continue;
        }
        out.extend_from_slice(&src[at..s]);
        out.extend_from_slice(with);
        at = e;
    }
    out.extend_from_slice(src.get(at..to).unwrap_or_default());
}

#[cfg(test)]
mod tests;
