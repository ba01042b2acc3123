//! What connects the threads: bounded SPSC rings with their wakeup eventfds, and the pool of
//! batch buffers that travel from the network side to the shards and back.

pub mod batch_buffers;
pub mod ring;
