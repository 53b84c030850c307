//! JSON-RPC batches (MCP 2025-03-26 only): bounded before they are parsed, answered as a
//! stream, and counted message by message.
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
//! Never answers twice: each element yields at most one answer, in order.

use std::{rc::Rc, sync::Arc};

use bytes::Bytes;

use super::{frame_error_body, Answer, Front, Outcome};
use crate::{
    auth::{policy::Principal, RateStage},
    jsonrpc::{codes::error_body_data, error_body, Code, Frame, FrameError, Kind},
    limits::Limit,
    observe::trace::TraceParent,
    registry::Snapshot,
    session::Session,
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
pub(crate) fn too_many(limits: &crate::limits::Limits, max: usize) -> super::Reply {
    limits.hit(Limit::BatchItems);
    tracing::info!(max, "batch over max_batch_items refused");
    let data = format!(r#"{{"maxBatchItems":{max}}}"#);
    super::Reply::json(
        400,
        error_body_data(
            None,
            Code::InvalidRequest,
            "Invalid Request: too many messages in the batch (max_batch_items)",
            data.as_bytes(),
        ),
    )
}

/// A batch being answered: its elements not run yet and what they need.
pub struct Batch {
    front: Rc<Front>,
    snap: Arc<Snapshot>,
    sess: Arc<Session>,
    principal: Arc<Principal>,
    trace: Option<TraceParent>,
    items: std::vec::IntoIter<Result<Frame, FrameError>>,
    /// Requests run so far (the first rode on the POST's own rate-limit token).
    requests: usize,
}

impl Batch {
    pub(super) fn new(
        front: Rc<Front>,
        snap: Arc<Snapshot>,
        sess: Arc<Session>,
        principal: Arc<Principal>,
        trace: Option<TraceParent>,
        items: Vec<Result<Frame, FrameError>>,
    ) -> Self {
        Batch {
            front,
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
        let front = self.front.clone();
        while let Some(item) = self.items.next() {
            let f = match item {
                Ok(f) => f,
                Err(e) => return Some(frame_error_body(&e)),
            };
            match f.kind() {
                Kind::Response => front.client_answer(&f, &self.sess).await,
                Kind::Notification => front.notification(&f, &self.sess).await,
                Kind::Request => return Some(self.request(&front, &f).await),
            }
        }
        None
    }

    async fn request(&mut self, front: &Rc<Front>, f: &Frame) -> Bytes {
        self.requests += 1;
        if f.method().as_deref() == Some("initialize") {
            return error_body(
                f.id_raw().as_deref(),
                Code::InvalidRequest,
                "initialize cannot be batched",
            );
        }
        if self.requests > 1 {
            if let Some(refused) = self.rate_limited(front, f) {
                return refused;
            }
        }
        // Batched calls answer as JSON: messages before a response go to the GET stream,
        // if there is one.
        let sess = &self.sess;
        match front
            .request(f, &self.snap, sess, Answer::Json, self.trace)
            .await
        {
            Outcome::Done(b) => b,
            Outcome::Streaming(mut relay, first) => {
                front.push(sess, first);
                front.finish_pushing(sess, &mut relay).await
            }
        }
    }

    /// The -32014 answer when the request-level rate limits have no token for this request.
    fn rate_limited(&self, front: &Front, f: &Frame) -> Option<Bytes> {
        let shared = front.shared();
        let auth = shared.auth.load();
        if auth.rates.is_empty() {
            return None;
        }
        let now = shared.now_ns();
        let wait = auth
            .rate_check(&shared.rates, RateStage::Request, &self.principal, "", now)
            .err()?;
        shared.limits.hit(Limit::RateLimit);
        tracing::debug!(principal = %self.principal.name, "batched request rate limited");
        Some(error_body(
            f.id_raw().as_deref(),
            Code::RateLimited,
            &format!(
                "Too Many Requests: rate limit exceeded: retry after {} ms",
                wait.as_millis().max(1)
            ),
        ))
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
