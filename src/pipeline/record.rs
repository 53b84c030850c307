//! Phase: record. How one routed call ended, told once to the metrics (per-tool counters
//! and latency histograms), the trace exporter (the call's span) and the audit log, for a
//! call that failed before its relay began and for one its relay ended alike.
//!
//! Never changes what the client gets: it runs after the answer is decided.

use std::{sync::Arc, time::Duration};

use super::context::Ctx;
use crate::{
    observe::{
        audit::{CallRecord, SessionTag},
        metrics::{Outcome, Sample},
        trace::{self, CallTrace},
    },
    session::Session,
};

/// One routed call's end.
pub struct Ended<'a> {
    /// Tool or prompt name, else the method (moved into the audit record).
    pub target: Arc<str>,
    /// Upstream name.
    pub upstream: &'a Arc<str>,
    /// The client's session.
    pub sess: &'a Session,
    /// How it ended.
    pub outcome: Outcome,
    /// From routing to the answer.
    pub total: Duration,
    /// Of that, waiting on the upstream.
    pub upstream_wait: Duration,
    /// Request and answer sizes, bytes.
    pub bytes: (usize, usize),
    /// The call's span, when traced.
    pub trace: Option<&'a CallTrace>,
    /// The arguments sent upstream, when the audit log records them.
    pub arguments: Option<Box<serde_json::value::RawValue>>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Records how a call ended.
pub fn ended(ctx: &Ctx, e: Ended<'_>) {
    let principal = e.sess.principal.load();
    let total_us = micros(e.total);
    if let (Some(t), Some(tracing)) = (e.trace, &ctx.shared.tracing) {
        tracing.finish(
            t,
            &trace::CallEnd {
                name: &e.target,
                upstream: e.upstream,
                outcome: e.outcome.label(),
                session: e.sess.id.as_str().get(..8).unwrap_or(""),
                principal: &principal.name,
                bytes: e.bytes,
            },
        );
    }
    ctx.metrics.record(&Sample {
        target: &e.target,
        upstream: e.upstream,
        principal: &principal.name,
        outcome: e.outcome,
        total_us,
        upstream_us: micros(e.upstream_wait),
        bytes: e.bytes,
    });
    if let Some(a) = &ctx.shared.audit {
        a.record_call(CallRecord {
            session: SessionTag::of(e.sess.id.as_str()),
            principal: principal.name.clone(),
            arguments: e.arguments,
            target: e.target,
            upstream: e.upstream.clone(),
            outcome: e.outcome.label(),
            latency_us: total_us,
            request_bytes: e.bytes.0,
            response_bytes: e.bytes.1,
        });
    }
}
