//! A SendMessages frame whose batch is received into a buffer of exactly the batch's size, which
//! becomes the shard's append without a copy.

use crate::mesh::batch_buffers::BatchBufferPool;
use riptide_protocol::codes::CommandCode;
use riptide_protocol::constants::HEADER_SIZE_BYTES;
use riptide_protocol::header::RequestHeader;

/// Smallest SendMessages batch received into a buffer of its own; smaller ones are cheaper to
/// copy out of the input buffer than to receive separately.
pub const DIRECT_BATCH_MIN_BYTES: usize = 64 * 1024;
/// Longest SendMessages metadata section: two identifiers and a partitioning key of at most 255
/// bytes each, their kind and length bytes and the message count fit well below this.
const SEND_METADATA_MAX_BYTES: usize = 1024;

/// A SendMessages frame whose batch is being received into its own buffer. The header and
/// metadata section (`head_len` bytes) wait at the start of the unconsumed input.
pub struct BatchReceipt {
    pub head_len: usize,
    pub batch: Vec<u8>,
    pub filled_bytes: usize,
}

impl BatchReceipt {
    /// Starts receiving the batch of the frame at the start of `available` (its first
    /// `frame_len` bytes are the whole frame, not all here yet) when it is a SendMessages frame
    /// with a valid header and a large batch; the batch bytes already received move over.
    pub fn begin(
        available: &[u8],
        frame_len: usize,
        frame_size_max_bytes: usize,
        buffers: &BatchBufferPool,
    ) -> Option<Self> {
        let header = RequestHeader::new_checked(available).ok()?;
        if header.validate(frame_size_max_bytes).is_err()
            || header.resolved_command() != Some(CommandCode::SendMessages)
        {
            return None;
        }
        let metadata_len_bytes = available.get(HEADER_SIZE_BYTES..HEADER_SIZE_BYTES + 4)?;
        let metadata_len = u32::from_le_bytes(metadata_len_bytes.try_into().ok()?) as usize;
        if metadata_len > SEND_METADATA_MAX_BYTES {
            return None;
        }
        let head_len = HEADER_SIZE_BYTES + 4 + metadata_len;
        let early = available.get(head_len..)?;
        let batch_len = frame_len.checked_sub(head_len)?;
        if batch_len < DIRECT_BATCH_MIN_BYTES || early.len() >= batch_len {
            return None;
        }
        let mut batch = buffers.take(batch_len);
        batch[..early.len()].copy_from_slice(early);
        Some(BatchReceipt {
            head_len,
            batch,
            filled_bytes: early.len(),
        })
    }

    /// Copies the start of `bytes` into the batch; returns how many bytes it took.
    pub fn fill_from(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.len().min(self.batch.len() - self.filled_bytes);
        self.batch[self.filled_bytes..self.filled_bytes + taken].copy_from_slice(&bytes[..taken]);
        self.filled_bytes += taken;
        taken
    }

    pub fn is_complete(&self) -> bool {
        self.filled_bytes == self.batch.len()
    }
}
