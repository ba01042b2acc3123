//! Deterministic batches for the crash helper, the benchmark and the tests: a batch is a pure
//! function of its tag, so a checker can regenerate exactly what a writer sent.

use riptide_protocol::batch::BatchBuilder;

/// A tiny xorshift generator: reproducible sizes without a dependency.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// A batch of 1..=`messages_max` messages of 0..=`payload_max_bytes` bytes, all derived from
/// `tag`; payloads start with the tag so a mix-up is visible.
pub fn tagged_batch(tag: u64, messages_max: u64, payload_max_bytes: u64) -> Vec<u8> {
    let mut rng = XorShift::new(tag);
    let count = rng.between(1, messages_max.max(1));
    let payloads: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let len = rng.between(0, payload_max_bytes) as usize;
            let mut payload = format!("{tag}/{i}/").into_bytes();
            let fill = (tag as u8) ^ (i as u8);
            payload.resize(len.max(payload.len()), fill);
            payload
        })
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    build_batch(&refs, tag)
}

/// A valid unstamped batch of `payloads` (message ids 1, 2, ...), each message stamped by its
/// producer at `origin_timestamp_us`: the protocol's builder, as a client encodes it.
///
/// # Panics
/// When a payload is empty or larger than the protocol allows (a server would refuse it).
pub fn build_batch(payloads: &[&[u8]], origin_timestamp_us: u64) -> Vec<u8> {
    let bytes: usize = payloads.iter().map(|p| p.len()).sum();
    let mut builder = BatchBuilder::with_capacity(payloads.len(), bytes);
    for (index, payload) in payloads.iter().enumerate() {
        builder
            .push(index as u128 + 1, payload, &[], origin_timestamp_us)
            .expect("a payload a server accepts");
    }
    builder.finish().expect("a batch a server accepts").to_vec()
}

/// A record with the server-stamped fields (partition, base offset, base timestamp, batch
/// checksum) zeroed: what must equal the batch the client sent.
pub fn unstamped(record: &[u8]) -> Vec<u8> {
    let mut out = record.to_vec();
    if out.len() >= 48 {
        out[0..24].fill(0);
        out[40..48].fill(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_batches_are_reproducible_and_valid() {
        assert_eq!(tagged_batch(5, 10, 100), tagged_batch(5, 10, 100));
        assert_ne!(tagged_batch(5, 10, 100), tagged_batch(6, 10, 100));
        for tag in 0..50 {
            riptide_protocol::batch::Batch::new_checked(&tagged_batch(tag, 20, 3000)).unwrap();
        }
    }
}
