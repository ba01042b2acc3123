//! riptide-protocol: a sans-I/O codec of Apache Iggy's current binary protocol (iggy 0.11:
//! 256-byte VSR headers, Register login, result sections, batches of 48-byte-header frames).
//!
//! No sockets, threads, clocks or `unsafe`; no input can make it panic. Hot-path pieces
//! (headers, batches, the SendMessages view) are zero-copy views owned here; command bodies are
//! decoded with `iggy_binary_protocol` 0.11.0, the codec Iggy's own SDK uses, re-exported as
//! [`wire`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
pub mod codes;
pub mod constants;
pub mod header;
pub mod login;
pub mod reply;
pub mod request;
pub mod snapshot;

/// `iggy_binary_protocol` 0.11.0: request/response types and wire primitives.
pub use iggy_binary_protocol as wire;
