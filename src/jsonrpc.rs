//! JSON-RPC 2.0 messages as they cross the gateway.
//!
//! A message is parsed once: simd-json validates the bytes (on a scratch copy, since it
//! unescapes in place), then a structural scan over the original bytes records where the
//! envelope fields sit. Nothing else is decoded: `params.arguments` and `result` stay the bytes
//! that came in, and the gateway rewrites a message only by splicing new bytes over the spans
//! of the id, the tool/prompt name or the resource URI.
//!
//! This module never does IO and never allocates per field: spans are offsets into one
//! reference-counted buffer.

pub mod codes;
pub mod frame;
mod scan;

pub use codes::{error_body, error_raw_body, result_body, Code, Pieces};
pub use frame::{null_id_error, parse, splice, Frame, FrameError, Kind, Message, Parser, Span};
