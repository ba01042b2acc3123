//! Layout constants used before the protocol crate is wired in.
pub const BATCH_HEADER_SIZE_BYTES: usize = 256;
pub const MESSAGE_HEADER_SIZE_BYTES: usize = 48;
