//! What a worker needs to call upstreams ([`Caller`]: its connection pool, request ids and
//! parser) and the requests the gateway writes on its own behalf.

use std::cell::Cell;

use bytes::Bytes;

use super::pool::Pool;
use crate::{
    jsonrpc::Parser,
    mcp::{version::UPSTREAM_PROTOCOL_VERSION, Hello},
};

/// What a worker needs to call upstreams: its HTTP pool, ids and a parser.
pub struct Caller {
    /// Per-worker HTTP keep-alive pool.
    pub pool: Pool,
    /// Request ids.
    pub ids: IdGen,
    /// Reused parse buffers.
    pub parser: std::cell::RefCell<Parser>,
    /// The last balanced request abandoned before its answer began: its session's address
    /// and its replica (see [`Caller::timed_out`]).
    pub(super) abandoned: Cell<Option<(usize, usize)>>,
}

impl Caller {
    /// A caller for worker `index`.
    pub fn new(index: u16) -> Self {
        Self {
            pool: Pool::default(),
            ids: IdGen::new(index),
            parser: std::cell::RefCell::new(Parser::default()),
            abandoned: Cell::new(None),
        }
    }
}

/// Gateway-owned request ids: a 13-bit slot (the worker index) above a 40-bit counter, so
/// ids are unique across workers without a shared counter, and every id stays below 2^53:
/// JavaScript peers read ids as doubles and would round anything larger.
pub struct IdGen {
    base: u64,
    next: Cell<u64>,
}

/// Bits of the per-slot counter.
const ID_COUNTER_BITS: u32 = 40;

/// Largest slot; [`CONTROL_SLOT`] and [`WATCH_SLOT`] are the control plane's.
pub const MAX_SLOT: u16 = (1 << 13) - 1;
/// Slot of the control plane's catalog fetches.
pub const CONTROL_SLOT: u16 = MAX_SLOT;
/// Slot of the control plane's list_changed watchers.
pub const WATCH_SLOT: u16 = MAX_SLOT - 1;

impl IdGen {
    /// Ids for `slot` (a worker index; values above [`MAX_SLOT`] are clamped).
    pub fn new(slot: u16) -> Self {
        Self {
            base: u64::from(slot.min(MAX_SLOT)) << ID_COUNTER_BITS,
            next: Cell::new(1),
        }
    }

    /// A fresh id (never 0, never above 2^53 - 1).
    pub fn next(&self) -> u64 {
        let n = self.next.get();
        let wrapped = (n + 1) & ((1 << ID_COUNTER_BITS) - 1);
        self.next.set(wrapped.max(1));
        self.base | n
    }
}

/// A JSON-RPC request with a numeric id, for requests the gateway makes on its own behalf.
pub fn request_body(id: u64, method: &str, params: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#
    ))
}

/// The `initialize` request the gateway sends upstream.
pub fn initialize_body(id: u64, hello: &Hello) -> Bytes {
    request_body(
        id,
        "initialize",
        &format!(
            r#"{{"protocolVersion":"{UPSTREAM_PROTOCOL_VERSION}","capabilities":{},"clientInfo":{}}}"#,
            String::from_utf8_lossy(&hello.capabilities),
            String::from_utf8_lossy(&hello.client_info),
        ),
    )
}

/// The `notifications/initialized` notification.
pub const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_javascript_safe_and_distinct_per_slot() {
        let top = IdGen::new(u16::MAX);
        let id = top.next();
        assert!(id < (1 << 53), "{id}");
        let (a, b) = (IdGen::new(0), IdGen::new(1));
        assert_ne!(a.next(), b.next());
        assert_ne!(a.next(), 0);
        let g = IdGen::new(3);
        g.next.set((1 << ID_COUNTER_BITS) - 1);
        let last = g.next();
        assert_eq!(last >> ID_COUNTER_BITS, 3);
        assert_eq!(
            g.next() & ((1 << ID_COUNTER_BITS) - 1),
            1,
            "wraps to 1, not 0"
        );
    }
}
