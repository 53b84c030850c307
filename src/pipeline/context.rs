//! Phase context (no phase of its own): what every phase reads. [`Ctx`] is one worker's (its upstream caller and
//! parser, its metrics, its cache of role-filtered lists); [`Call`] is one request's (the
//! frame, the snapshot it was routed on, the session, how the client wants the answer),
//! carried through the phases instead of positional arguments.
//!
//! Never decides anything: no checks, no routing, no bytes for the client.

use std::{cell::RefCell, collections::HashMap, future::Future, rc::Rc, sync::Arc};

use bytes::Bytes;

use crate::{
    jsonrpc::Frame,
    observe::{metrics::WorkerMetrics, trace::TraceParent},
    registry::{Pages, Snapshot},
    session::Session,
    state::Shared,
    transport::reply::InProgress,
    upstream::Caller,
};

/// One worker's pipeline context.
pub struct Ctx {
    /// What workers and the control plane share.
    pub shared: Arc<Shared>,
    /// This worker's upstream caller (pools, ids, parser).
    pub caller: Caller,
    /// This worker's metrics.
    pub metrics: Arc<WorkerMetrics>,
    /// Requests being handled or answered on this worker.
    pub busy: InProgress,
    /// Lists filtered by role set, for the snapshot (generation, policy) they were built
    /// from.
    pub granted: RefCell<((u64, usize), GrantedLists)>,
    /// Sessions of 2026-07-28 requests, reused request after request.
    pub spares: crate::session::Spares,
}

/// Filtered lists by (view, role set).
pub type GrantedLists = HashMap<(Option<String>, Vec<String>), Rc<[Pages; 4]>>;

impl Ctx {
    /// The context of worker `index`.
    pub fn new(shared: Arc<Shared>, index: u16) -> Rc<Self> {
        let g = &shared.config.gateway;
        let metrics =
            shared
                .metrics
                .worker_with(g.metrics_max_labels, g.metrics_max_principals, g.metrics);
        Rc::new(Self {
            shared,
            caller: Caller::new(index),
            metrics,
            busy: Default::default(),
            granted: Default::default(),
            spares: Default::default(),
        })
    }

    /// Requests in progress on this worker.
    pub fn in_progress(&self) -> usize {
        self.busy.get()
    }
}

/// How the client wants the answer to a POST.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answer {
    /// JSON, and SSE when messages must come before the response.
    Either,
    /// JSON only.
    Json,
    /// SSE only.
    Sse,
}

/// One JSON-RPC request on its way through the phases.
pub struct Call<'a> {
    /// The request.
    pub f: &'a Frame,
    /// Its id as the client wrote it (`null` when it had none).
    pub id: &'a [u8],
    /// The snapshot it is routed on (one load per request).
    pub snap: &'a Snapshot,
    /// Its session (a stateless request's is built for it alone).
    pub sess: &'a Arc<Session>,
    /// How the client wants the answer.
    pub answer: Answer,
    /// The client's W3C trace context, when spans are exported.
    pub trace: Option<TraceParent>,
}

impl Call<'_> {
    /// The request's bytes.
    pub fn bytes(&self) -> &Bytes {
        self.f.bytes()
    }
}

/// Waits for whichever of two futures finishes first; `None` when it is the second.
pub async fn select_first<A: Future, B: Future>(a: A, b: B) -> Option<A::Output> {
    match futures_util::future::select(Box::pin(a), Box::pin(b)).await {
        futures_util::future::Either::Left((x, _)) => Some(x),
        futures_util::future::Either::Right(_) => None,
    }
}
