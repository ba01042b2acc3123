//! Layout sizes of the batch format, from the protocol crate (one source of truth).
pub use riptide_protocol::constants::{BATCH_HEADER_SIZE_BYTES, MESSAGE_HEADER_SIZE_BYTES};
