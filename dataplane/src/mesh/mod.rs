//! What connects the threads: bounded SPSC rings with their wakeup eventfds, the messages they
//! carry, the loops of the threads at their far ends (storage shards, the metadata service), the
//! stop sequence, and the pool of batch buffers that travel from the network side to the shards
//! and back.

pub mod batch_buffers;
pub mod lifecycle;
pub mod messages;
pub mod metadata_thread;
pub mod ring;
pub mod shard_thread;
