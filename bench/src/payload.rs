//! Deterministic payloads and their verification.
//!
//! Every payload starts with a 24-byte header and is filled with a pattern derived from
//! (producer, sequence), so a consumer can check each message on its own — corruption, a message
//! delivered for another, a duplicate — without knowing what the server chose for partition and
//! offset (balanced partitioning). The send time in the header gives end-to-end latency.
//!
//! ```text
//! 0       4           8               16              24
//! | magic | producer  | sequence u64  | send time µs  | filler: u64 words of mix(p, s) + k*K ...
//! ```

use crate::constants::{ACTORS_MAX, VERIFY_ERRORS_LISTED_MAX};
use serde::Serialize;
use std::collections::HashMap;

pub const PAYLOAD_HEADER_BYTES: usize = 24;
const MAGIC: u32 = u32::from_le_bytes(*b"RIPT");
/// Odd constant (2^64 / golden ratio) stepping the filler words.
const FILLER_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// Seed of one message's filler: a splitmix64 finaliser so nearby sequences differ in every byte.
fn filler_seed(producer: u32, sequence: u64) -> u64 {
    let mut z = (u64::from(producer) << 40) ^ sequence.wrapping_mul(FILLER_STEP);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes the payload of message `sequence` of `producer` into `out` (its whole length).
/// `out` must hold at least [`PAYLOAD_HEADER_BYTES`] (the configuration guarantees it).
pub fn fill(out: &mut [u8], producer: u32, sequence: u64, send_time_us: u64) {
    debug_assert!(out.len() >= PAYLOAD_HEADER_BYTES);
    let Some((header, filler)) = out.split_at_mut_checked(PAYLOAD_HEADER_BYTES) else {
        return;
    };
    header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&producer.to_le_bytes());
    header[8..16].copy_from_slice(&sequence.to_le_bytes());
    header[16..24].copy_from_slice(&send_time_us.to_le_bytes());
    write_filler(filler, filler_seed(producer, sequence));
}

fn write_filler(filler: &mut [u8], seed: u64) {
    let mut word = seed;
    let mut chunks = filler.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&word.to_le_bytes());
        word = word.wrapping_add(FILLER_STEP);
    }
    let rest = chunks.into_remainder();
    let n = rest.len();
    rest.copy_from_slice(&word.to_le_bytes()[..n]);
}

fn filler_matches(filler: &[u8], seed: u64) -> bool {
    // Branch-free over the words (no early exit), so the compiler can vectorise it: the check
    // runs on every byte a verifying consumer receives.
    let mut word = seed;
    let mut difference = 0u64;
    let mut chunks = filler.chunks_exact(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        difference |= u64::from_le_bytes(bytes) ^ word;
        word = word.wrapping_add(FILLER_STEP);
    }
    let rest = chunks.remainder();
    difference == 0 && rest == &word.to_le_bytes()[..rest.len()]
}

/// The header fields of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    pub producer: u32,
    pub sequence: u64,
    pub send_time_us: u64,
}

/// Reads a payload's header without checking the filler (enough for end-to-end latency).
pub fn read_header(payload: &[u8]) -> Option<PayloadHeader> {
    let h = payload.get(..PAYLOAD_HEADER_BYTES)?;
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(b)
    };
    (u32_at(0) == MAGIC).then(|| PayloadHeader {
        producer: u32_at(4),
        sequence: u64_at(8),
        send_time_us: u64_at(16),
    })
}

/// Why one message failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Mismatch {
    Checksum,
    PayloadHeader,
    PayloadPattern,
    PayloadSize { expected: u32, actual: u32 },
    OffsetGap { expected: u64, actual: u64 },
    Duplicate { producer: u32, sequence: u64 },
    UnknownSequence { producer: u32, sequence: u64 },
}

/// One message as the consumer parsed it from a poll reply.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub stream_id: u32,
    pub partition_id: u32,
    pub offset: u64,
    pub checksum_ok: bool,
    pub payload: &'a [u8],
}

/// Verification state of one consumer (or one consumer group, shared by its members).
#[derive(Debug)]
pub struct Verifier {
    message_size_bytes: u32,
    messages_per_producer: u64,
    /// (stream, partition, offset) of the last message of the reply being checked.
    reply_last: Option<(u32, u32, u64)>,
    /// Per (stream, partition): messages received and the highest offset.
    partitions: HashMap<(u32, u32), (u64, u64)>,
    /// The same for the partition of the latest messages, not yet added to `partitions` (a
    /// reply's messages all come from one partition: one map update per run, not per message).
    current: Option<((u32, u32), (u64, u64))>,
    /// Per producer id: one bit per sequence received.
    seen: Vec<Vec<u64>>,
    report: VerifyReport,
}

/// Outcome of a verification, serialised into the results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub messages_checked: u64,
    pub messages_unique: u64,
    pub messages_expected: u64,
    pub mismatches: u64,
    /// The first few mismatches, for the report.
    pub examples: Vec<String>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.mismatches == 0 && self.messages_unique == self.messages_expected
    }

    pub fn merge(&mut self, other: &VerifyReport) {
        self.messages_checked += other.messages_checked;
        self.messages_unique += other.messages_unique;
        self.messages_expected += other.messages_expected;
        self.mismatches += other.mismatches;
        for e in &other.examples {
            if self.examples.len() < VERIFY_ERRORS_LISTED_MAX {
                self.examples.push(e.clone());
            }
        }
    }
}

impl Verifier {
    /// `messages_expected` is what this consumer (or group) must receive in total; every producer
    /// sends `messages_per_producer` sequences numbered from 0.
    pub fn new(
        message_size_bytes: u32,
        messages_per_producer: u64,
        messages_expected: u64,
    ) -> Verifier {
        Verifier {
            message_size_bytes,
            messages_per_producer,
            reply_last: None,
            partitions: HashMap::new(),
            current: None,
            seen: Vec::new(),
            report: VerifyReport {
                messages_expected,
                ..VerifyReport::default()
            },
        }
    }

    /// Checks one message; returns its header when the payload is well-formed.
    pub fn check(&mut self, m: Received<'_>) -> Option<PayloadHeader> {
        self.report.messages_checked += 1;
        // Within one poll reply a partition's offsets follow each other. Across replies they may
        // arrive interleaved (group members hand a partition over during a rebalance); there the
        // report checks that each partition's offsets end up dense from 0, with no duplicates.
        if let Some((stream_id, partition_id, last)) = self.reply_last {
            if (stream_id, partition_id) == (m.stream_id, m.partition_id) && m.offset != last + 1 {
                self.fail(
                    &m,
                    Mismatch::OffsetGap {
                        expected: last + 1,
                        actual: m.offset,
                    },
                );
            }
        }
        self.reply_last = Some((m.stream_id, m.partition_id, m.offset));
        self.count_received(&m);
        if !m.checksum_ok {
            self.fail(&m, Mismatch::Checksum);
        }
        let actual = u32::try_from(m.payload.len()).unwrap_or(u32::MAX);
        if actual != self.message_size_bytes {
            self.fail(
                &m,
                Mismatch::PayloadSize {
                    expected: self.message_size_bytes,
                    actual,
                },
            );
            return None;
        }
        let Some(header) = read_header(m.payload) else {
            self.fail(&m, Mismatch::PayloadHeader);
            return None;
        };
        if !filler_matches(
            &m.payload[PAYLOAD_HEADER_BYTES..],
            filler_seed(header.producer, header.sequence),
        ) {
            self.fail(&m, Mismatch::PayloadPattern);
            return None;
        }
        self.mark_seen(&m, header);
        Some(header)
    }

    fn count_received(&mut self, m: &Received<'_>) {
        let key = (m.stream_id, m.partition_id);
        match &mut self.current {
            Some((current_key, (received, highest))) if *current_key == key => {
                *received += 1;
                *highest = (*highest).max(m.offset);
            }
            current => {
                if let Some((previous, tally)) = current.replace((key, (1, m.offset))) {
                    Self::add_tally(&mut self.partitions, previous, tally);
                }
            }
        }
    }

    fn add_tally(
        partitions: &mut HashMap<(u32, u32), (u64, u64)>,
        key: (u32, u32),
        (received, highest): (u64, u64),
    ) {
        let entry = partitions.entry(key).or_insert((0, 0));
        entry.0 += received;
        entry.1 = entry.1.max(highest);
    }

    fn mark_seen(&mut self, m: &Received<'_>, h: PayloadHeader) {
        if h.sequence >= self.messages_per_producer || h.producer >= ACTORS_MAX {
            self.fail(
                m,
                Mismatch::UnknownSequence {
                    producer: h.producer,
                    sequence: h.sequence,
                },
            );
            return;
        }
        let words = self.messages_per_producer.div_ceil(64) as usize;
        let producer = h.producer as usize;
        if self.seen.len() <= producer {
            self.seen.resize_with(producer + 1, Vec::new);
        }
        let bits = &mut self.seen[producer];
        if bits.is_empty() {
            bits.resize(words, 0);
        }
        let (word, bit) = ((h.sequence / 64) as usize, h.sequence % 64);
        if bits[word] & (1 << bit) != 0 {
            self.fail(
                m,
                Mismatch::Duplicate {
                    producer: h.producer,
                    sequence: h.sequence,
                },
            );
        } else {
            bits[word] |= 1 << bit;
            self.report.messages_unique += 1;
        }
    }

    fn fail(&mut self, m: &Received<'_>, what: Mismatch) {
        self.report.mismatches += 1;
        if self.report.examples.len() < VERIFY_ERRORS_LISTED_MAX {
            self.report.examples.push(format!(
                "stream {} partition {} offset {}: {what:?}",
                m.stream_id, m.partition_id, m.offset
            ));
        }
    }

    /// A new poll reply starts: offsets restart their within-reply sequence.
    pub fn begin_reply(&mut self) {
        self.reply_last = None;
    }

    /// The outcome so far, including a mismatch for every partition whose received offsets are
    /// not exactly 0..=highest (a hole: something in between was never delivered).
    pub fn report(&self) -> VerifyReport {
        let mut report = self.report.clone();
        let mut partitions = self.partitions.clone();
        if let Some((key, tally)) = self.current {
            Self::add_tally(&mut partitions, key, tally);
        }
        for (&(stream_id, partition_id), &(received, highest)) in &partitions {
            if received != highest + 1 {
                report.mismatches += 1;
                if report.examples.len() < VERIFY_ERRORS_LISTED_MAX {
                    report.examples.push(format!(
                        "stream {stream_id} partition {partition_id}: {received} messages received up to offset {highest}"
                    ));
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(producer: u32, sequence: u64, size: usize) -> Vec<u8> {
        let mut p = vec![0u8; size];
        fill(&mut p, producer, sequence, 1234);
        p
    }

    fn received(payload: &[u8], offset: u64) -> Received<'_> {
        Received {
            stream_id: 0,
            partition_id: 0,
            offset,
            checksum_ok: true,
            payload,
        }
    }

    #[test]
    fn payload_roundtrip_and_determinism() {
        for size in [24usize, 25, 31, 32, 1000] {
            let a = message(3, 77, size);
            assert_eq!(a, message(3, 77, size), "deterministic");
            if size > PAYLOAD_HEADER_BYTES {
                assert_ne!(
                    a[PAYLOAD_HEADER_BYTES..],
                    message(3, 78, size)[PAYLOAD_HEADER_BYTES..]
                );
            }
            let h = read_header(&a).unwrap();
            assert_eq!(
                h,
                PayloadHeader {
                    producer: 3,
                    sequence: 77,
                    send_time_us: 1234
                }
            );
            assert!(filler_matches(
                &a[PAYLOAD_HEADER_BYTES..],
                filler_seed(3, 77)
            ));
        }
        assert!(read_header(&[0u8; 10]).is_none());
    }

    #[test]
    fn clean_stream_passes() {
        let mut v = Verifier::new(100, 10, 10);
        for seq in 0..10 {
            let p = message(1, seq, 100);
            assert!(v.check(received(&p, seq)).is_some());
        }
        assert!(v.report().passed(), "{:?}", v.report());
    }

    #[test]
    fn every_fault_is_detected() {
        let mut v = Verifier::new(100, 10, 4);
        let good = message(1, 0, 100);
        v.check(received(&good, 0));
        let mut flipped = message(1, 1, 100);
        flipped[50] ^= 1;
        v.check(received(&flipped, 1)); // pattern
        v.check(received(&message(1, 2, 100), 5)); // offset gap 2 -> 5
        v.check(received(&good, 6)); // duplicate sequence 0
        v.check(Received {
            checksum_ok: false,
            ..received(&message(1, 3, 100), 7)
        });
        v.check(received(&message(1, 99, 100), 8)); // sequence beyond what was sent
        v.check(received(&message(1, 4, 99), 9)); // wrong size
        let r = v.report();
        // Six faulty messages, plus the hole they leave (offsets 2..=4 never delivered).
        assert_eq!(r.mismatches, 7, "{:?}", r.examples);
        assert!(!r.passed());
        assert!(r.examples.iter().any(|e| e.contains("OffsetGap")));
        assert!(r.examples.iter().any(|e| e.contains("up to offset 9")));
        assert!(r.examples.iter().any(|e| e.contains("Duplicate")));
        assert!(r.examples.iter().any(|e| e.contains("PayloadPattern")));
        assert!(r.examples.iter().any(|e| e.contains("Checksum")));
    }

    #[test]
    fn replies_of_group_members_may_interleave_but_holes_fail() {
        let payloads: Vec<Vec<u8>> = (0..6).map(|sequence| message(1, sequence, 100)).collect();
        let mut v = Verifier::new(100, 6, 6);
        // Member B's reply (offsets 3..=5) is recorded before member A's (0..=2).
        for offsets in [3..6, 0..3] {
            v.begin_reply();
            for offset in offsets {
                v.check(received(&payloads[offset as usize], offset));
            }
        }
        assert!(v.report().passed(), "{:?}", v.report());

        let mut holes = Verifier::new(100, 6, 5);
        holes.begin_reply();
        for offset in [0u64, 1, 2] {
            holes.check(received(&payloads[offset as usize], offset));
        }
        holes.begin_reply();
        for offset in [4u64, 5] {
            holes.check(received(&payloads[offset as usize], offset));
        }
        assert!(!holes.report().passed(), "offset 3 was never delivered");
    }

    #[test]
    fn partitions_are_tallied_apart_and_foreign_producers_fail() {
        let mut v = Verifier::new(100, 4, 9);
        // Two partitions alternate reply by reply; each must end up dense from offset 0.
        for (partition_id, sequence) in [(0, 0), (1, 1), (0, 2), (1, 3)] {
            v.begin_reply();
            let p = message(1, sequence, 100);
            let offset = sequence / 2;
            v.check(Received {
                partition_id,
                ..received(&p, offset)
            });
        }
        for sequence in 0..4 {
            v.begin_reply();
            v.check(Received {
                partition_id: 2,
                ..received(&message(2, sequence, 100), sequence)
            });
        }
        assert_eq!(v.report().mismatches, 0, "{:?}", v.report().examples);
        v.begin_reply();
        v.check(Received {
            partition_id: 3,
            ..received(&message(ACTORS_MAX, 0, 100), 0)
        });
        let report = v.report();
        assert_eq!(report.mismatches, 1);
        assert!(report.examples[0].contains("UnknownSequence"));
    }

    #[test]
    fn loss_is_a_failure() {
        let mut v = Verifier::new(100, 10, 10);
        for seq in 0..9 {
            v.check(received(&message(0, seq, 100), seq));
        }
        assert_eq!(v.report().mismatches, 0);
        assert!(!v.report().passed(), "9 of 10 messages received");
    }
}
