//! Admission cost of a batch against its ceiling, measured in the same run.
//!
//! Validating a SendMessages batch must hash every byte once (message checksums) — nothing can
//! do less — so its ceiling is one XxHash3-64 pass over the same bytes. `stamp` and
//! `slice_record` must at least hop from frame header to frame header; their ceiling is a bare
//! loop doing only that hop.
//! Run: `cargo bench -p riptide-protocol --bench batch` (release). Prints GB/s and the ratio.

use riptide_protocol::batch::{slice_record, stamp, Batch, BatchBuilder};
use std::hint::black_box;
use std::time::{Duration, Instant};
use twox_hash::XxHash3_64;

/// iggy-bench defaults: 1000 messages of 1000 bytes per batch.
const MESSAGES_PER_BATCH: usize = 1000;
const MESSAGE_SIZE_BYTES: usize = 1000;
const MEASURE_FOR: Duration = Duration::from_millis(700);

fn batch() -> Vec<u8> {
    let mut builder = BatchBuilder::with_capacity(MESSAGES_PER_BATCH, 1 << 20);
    let payload = vec![0xa5u8; MESSAGE_SIZE_BYTES];
    for index in 0..MESSAGES_PER_BATCH {
        builder
            .push(index as u128, &payload, b"", 1_000 + index as u64)
            .unwrap();
    }
    builder.finish().unwrap().to_vec()
}

/// Bytes per second of `work`, run repeatedly for `MEASURE_FOR`.
fn throughput(bytes: usize, mut work: impl FnMut()) -> f64 {
    work();
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < MEASURE_FOR {
        work();
        rounds += 1;
    }
    (bytes as f64 * rounds as f64) / start.elapsed().as_secs_f64()
}

/// The least a frame walk can do: read two lengths per frame and jump.
fn walk_frames(record: &[u8]) -> usize {
    let mut position = 256;
    let mut frames = 0;
    while let Some(header) = record.get(position..position + 48) {
        let headers = u32::from_le_bytes(header[32..36].try_into().unwrap()) as usize;
        let payload = u32::from_le_bytes(header[36..40].try_into().unwrap()) as usize;
        position += 48 + headers + payload;
        frames += 1;
    }
    frames
}

fn report(name: &str, figure: f64, ceiling: f64) {
    println!(
        "{name:<34} {:>7.2} GB/s   ceiling {:>7.2} GB/s   ratio {:.2}",
        figure / 1e9,
        ceiling / 1e9,
        figure / ceiling
    );
}

fn main() {
    let mut record = batch();
    let len = record.len();
    let ceiling = throughput(len, || {
        black_box(XxHash3_64::oneshot(black_box(&record)));
    });
    let validate = throughput(len, || {
        black_box(Batch::new_checked(black_box(&record)).unwrap());
    });
    report("Batch::new_checked (1000 x 1000 B)", validate, ceiling);
    let walk = throughput(len, || {
        black_box(walk_frames(black_box(&record)));
    });
    let mut base_offset = 0u64;
    let stamping = throughput(len, || {
        base_offset += 1;
        stamp(black_box(&mut record), 0, base_offset, 7).unwrap();
    });
    report("stamp", stamping, walk);
    let slicing = throughput(len, || {
        black_box(slice_record(black_box(&record), base_offset + 500, 1000));
    });
    report("slice_record (second half)", slicing, walk);
}
