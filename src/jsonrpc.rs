//! JSON-RPC 2.0 messages as they cross the gateway.
//!
//! A client's message is validated once, in one pass over the bytes as they came in
//! (`validate`: no copy, nothing written, nothing decoded), then a structural scan over the
//! same bytes records where the envelope fields sit; an upstream's message gets the scan
//! only. Nothing else is decoded: `params.arguments` and `result` stay the bytes that came
//! in, and the gateway rewrites a message only by splicing new bytes over the spans of the
//! id, the tool/prompt name or the resource URI.
//!
//! This module never does IO and never allocates per field: spans are offsets into one
//! reference-counted buffer.

pub mod codes;
pub mod frame;
pub(crate) mod scan;
pub(crate) mod validate;

pub use codes::{error_body, error_raw_body, result_body, Code, Pieces};
pub use frame::{null_id_error, parse, splice, Frame, FrameError, Kind, Message, Parser, Span};
