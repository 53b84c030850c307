//! Phase: batch. JSON-RPC batches (MCP 2025-03-26 only): bounded before they are parsed,
//! answered as a stream, and counted message by message.
//!
//! A body that is a JSON array of more than `max_batch_items` elements is refused whole
//! ([`too_many`]) before it is validated or parsed: parsing builds a frame per element, so
//! two bytes of `0,` would otherwise cost a few hundred bytes each. A batch within the limit
//! runs one element at a time ([`Batch::next`]) while its answers are written out (chunked),
//! so the memory it holds is its parsed frames plus one element's answer, never the whole
//! array of answers. Each request after the first takes its own token of the request-level
//! rate limits (the POST took one for the first); one over a limit is answered in place
//! with -32014, and the rest of the batch goes on.
//!
//! Never answers twice: each element yields at most one answer, in order; never routes an
//! element itself (each goes through `route`).

use std::{rc::Rc, sync::Arc};

use bytes::Bytes;

use super::{
    answer, call,
    context::{Answer, Call, Ctx},
    reject::{self, invalid, rescue, RateLimited, Reject},
    relay::Outcome,
    route,
};
use crate::{
    auth::{policy::Principal, RateStage},
    jsonrpc::{Code, Frame, FrameError, Kind},
    limits::Limit,
    observe::trace::TraceParent,
    registry::Snapshot,
    session::Session,
    transport::reply::{Reply, Whole},
};

/// Whether `body` is a JSON array of more than `max` elements. Looks at the top level only,
/// stops counting past `max`, allocates nothing. The body is not validated yet: for input
/// that is not JSON the count is a guess, and the parser refuses such input anyway.
pub(crate) fn over_limit(body: &[u8], max: usize) -> bool {
    let start = body
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    let Some(start) = start.filter(|&i| body.get(i) == Some(&b'[')) else {
        return false;
    };
    let mut depth = 0usize;
    let mut items = 0usize;
    // Whether the current top-level element has been counted.
    let mut counted = false;
    let mut i = start + 1;
    while let Some(&c) = body.get(i) {
        let top = depth == 0;
        match c {
            b'"' => {
                if top && !counted {
                    items += 1;
                    counted = true;
                }
                i = string_end(body, i);
                continue;
            }
            b'{' | b'[' => {
                if top && !counted {
                    items += 1;
                    counted = true;
                }
                depth += 1;
            }
            b'}' | b']' => {
                if top {
                    break;
                }
                depth -= 1;
            }
            b',' if top => counted = false,
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                if top && !counted {
                    items += 1;
                    counted = true;
                }
            }
        }
        if items > max {
            return true;
        }
        i += 1;
    }
    false
}

/// `i` is at an opening quote: the index just past the closing one (or the end of `b`).
fn string_end(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while let Some(rest) = b.get(j..) {
        match memchr::memchr2(b'"', b'\\', rest) {
            Some(k) if rest.get(k) == Some(&b'"') => return j + k + 1,
            Some(k) => j += k + 2,
            None => break,
        }
    }
    b.len()
}

/// The answer to a batch over `max_batch_items`: HTTP 400 with one error object (not an
/// array: JSON-RPC 2.0 answers a batch that cannot be taken apart with a single error).
pub fn too_many(limits: &crate::limits::Limits, max: usize) -> Whole {
    limits.hit(Limit::BatchItems);
    tracing::info!(max, "batch over max_batch_items refused");
    let data = format!(r#"{{"maxBatchItems":{max}}}"#);
    let refused = Reject::Invalid(
        Code::InvalidRequest,
        "Invalid Request: too many messages in the batch (max_batch_items)".into(),
        Some(data),
    );
    Reply::json(400, rescue(None, refused))
}

/// A batch being answered: its elements not run yet and what they need.
pub struct Batch {
    ctx: Rc<Ctx>,
    snap: Arc<Snapshot>,
    sess: Arc<Session>,
    principal: Arc<Principal>,
    trace: Option<TraceParent>,
    items: std::vec::IntoIter<Result<Frame, FrameError>>,
    /// Requests run so far (the first rode on the POST's own rate-limit token).
    requests: usize,
}

impl Batch {
    /// A batch of `items` on session `sess`, sent by `principal`.
    pub fn new(
        ctx: Rc<Ctx>,
        snap: Arc<Snapshot>,
        sess: Arc<Session>,
        principal: Arc<Principal>,
        trace: Option<TraceParent>,
        items: Vec<Result<Frame, FrameError>>,
    ) -> Self {
        Batch {
            ctx,
            snap,
            sess,
            principal,
            trace,
            items: items.into_iter(),
            requests: 0,
        }
    }

    /// Runs elements until one has an answer and returns it; `None` when none is left.
    /// Notifications and answers to the gateway's requests are handled on the way.
    pub async fn next(&mut self) -> Option<Bytes> {
        let ctx = self.ctx.clone();
        while let Some(item) = self.items.next() {
            let f = match item {
                Ok(f) => f,
                Err(e) => return Some(reject::malformed(&e)),
            };
            match f.kind() {
                Kind::Response => answer::client_answer(&ctx, &f, &self.sess).await,
                Kind::Notification => answer::notification(&f, &self.sess).await,
                Kind::Request => return Some(self.request(&ctx, &f).await),
            }
        }
        None
    }

    async fn request(&mut self, ctx: &Rc<Ctx>, f: &Frame) -> Bytes {
        self.requests += 1;
        let id = f.id_raw().unwrap_or_else(|| Bytes::from_static(b"null"));
        if f.method().as_deref() == Some("initialize") {
            let refused = invalid(Code::InvalidRequest, "initialize cannot be batched");
            return rescue(f.id_bytes(), refused);
        }
        if self.requests > 1 {
            if let Err(refused) = self.rate(ctx) {
                return rescue(f.id_bytes(), refused);
            }
        }
        // Batched calls answer as JSON: messages before a response go to the GET stream,
        // if there is one.
        let sess = &self.sess;
        let call = Call {
            f,
            id: &id,
            snap: &self.snap,
            sess,
            answer: Answer::Json,
            trace: self.trace,
        };
        match route::request(ctx, &call).await {
            Outcome::Done(b) => b,
            Outcome::Pieces(p) => p.join(),
            Outcome::Streaming(mut relay, first) => {
                call::push(ctx, sess, first);
                call::finish_pushing(ctx, sess, &mut relay).await
            }
        }
    }

    /// The request-level rate limits have a token for this request (-32014 when not).
    fn rate(&self, ctx: &Ctx) -> Result<(), Reject> {
        let shared = &ctx.shared;
        let auth = &self.snap.auth;
        if auth.rates.is_empty() {
            return Ok(());
        }
        let now = shared.now_ns();
        let principal = &self.principal;
        let Err(wait) = auth.rate_check(&shared.rates, RateStage::Request, principal, "", now)
        else {
            return Ok(());
        };
        shared.limits.hit(Limit::RateLimit);
        tracing::debug!(principal = %principal.name, "batched request rate limited");
        Err(Reject::RateLimited(RateLimited {
            name: None,
            retry_after: wait,
        }))
    }
}

impl crate::transport::reply::Widen<Box<Batch>> for Box<Batch> {
    fn widen(self) -> Box<Batch> {
        self
    }
}

impl crate::transport::reply::ArraySource for Box<Batch> {
    async fn next(&mut self) -> Option<Bytes> {
        Batch::next(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::over_limit;

    #[test]
    fn counts_top_level_elements_only() {
        let count = |b: &str| (0..20).find(|&m| !over_limit(b.as_bytes(), m));
        assert_eq!(count(r#"{"a":[1,2,3]}"#), Some(0), "not a batch");
        assert_eq!(count("[]"), Some(0));
        assert_eq!(count(" \n[0]"), Some(1));
        assert_eq!(count("[0,0,0]"), Some(3));
        assert_eq!(
            count(r#"[ {"a":[1,2,{"b":"],,[{"}]} , "x,y", [1,[2]] ,3 ]"#),
            Some(4)
        );
        assert_eq!(count(r#"["a\"],[", "\\", 1]"#), Some(3));
        assert_eq!(count("[1,,2]"), Some(2));
        // Not JSON: a guess, never a panic.
        for b in ["[", "[\"", "[\"\\", "[{", "[1,", "]", "[}}}]", "[\"\\\""] {
            let _ = over_limit(b.as_bytes(), 0);
        }
        // Stops at the limit: a huge batch is cut early.
        let mut big = String::from("[");
        big.push_str(&"0,".repeat(2_000_000));
        big.push('0');
        assert!(over_limit(big.as_bytes(), 100));
        big.push(']');
        assert!(!over_limit(big.as_bytes(), 2_000_001));
    }
}
