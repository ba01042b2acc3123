//! Helpers shared by the integration tests: a shard driver that waits for completions.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use riptide_protocol::batch::{verify_polled, Frames};
use riptide_storage::constants::{BATCH_HEADER_SIZE_BYTES, RECORD_SIZE_MAX_BYTES};
use riptide_storage::io::Backend;
pub use riptide_storage::segment::record_header;
pub use riptide_storage::testkit::build_batch;
use riptide_storage::*;

pub const KEY: PartitionKey = PartitionKey {
    stream_id: 0,
    topic_id: 0,
    partition_id: 0,
};

pub fn small_config() -> StorageConfig {
    StorageConfig {
        segment_size_bytes: 256 * 1024,
        write_buffer_size_bytes: 64 * 1024,
        read_buffer_size_bytes: 64 * 1024,
        read_buffers_count: 4,
        index_interval_bytes: 4096,
        cache_size_bytes: 0,
        pending_size_max_bytes: 64 * 1024 * 1024,
        ..StorageConfig::default()
    }
}

/// A shard; in CI the real io_uring is required, elsewhere its absence is reported.
pub fn shard(config: StorageConfig) -> Shard {
    let shard = Shard::new(config.clone(), None).expect("shard");
    if !config.force_buffered_syscalls && shard.backend() != Backend::IoUring {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but io_uring is unavailable"
        );
        eprintln!("note: io_uring unavailable here; the tests run on the buffered fallback");
    }
    shard
}

/// A batch of `count` messages whose payloads encode `tag` and their index.
pub fn batch(tag: u64, count: usize, payload_bytes: usize) -> Vec<u8> {
    let payloads: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut p = format!("{tag}:{i}:").into_bytes();
            p.resize(
                payload_bytes.max(p.len()),
                (tag as u8).wrapping_add(i as u8),
            );
            p
        })
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    build_batch(&refs, 1_000)
}

/// Waits until a completion with `token` arrives; returns it (other completions are kept).
pub fn wait_for(shard: &mut Shard, token: u64, parked: &mut Vec<Completion>) -> Completion {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = parked.iter().position(|c| c.token == token) {
            return parked.remove(i);
        }
        assert!(Instant::now() < deadline, "no completion for token {token}");
        shard.wait(Duration::from_millis(50));
        shard.take_completions(parked);
    }
}

pub fn append_durable(
    shard: &mut Shard,
    key: PartitionKey,
    batch: Vec<u8>,
    token: u64,
) -> Result<Appended, AppendError> {
    let mut parked = Vec::new();
    shard.append(key, batch, AckMode::Durable, token, now_us())?;
    match wait_for(shard, token, &mut parked).result {
        CompletionResult::Append(result) => result,
        other => panic!("unexpected completion {other:?}"),
    }
}

pub fn read(
    shard: &mut Shard,
    key: PartitionKey,
    start: ReadStart,
    count_max: u32,
) -> Result<ReadResult, ReadError> {
    let token = 0xEAD0_0000 + count_max as u64;
    match shard.read(key, start, count_max, token)? {
        ReadOutcome::Ready(result) => Ok(result),
        ReadOutcome::Pending => {
            let mut parked = Vec::new();
            match wait_for(shard, token, &mut parked).result {
                CompletionResult::Read(result) => result,
                other => panic!("unexpected completion {other:?}"),
            }
        }
    }
}

/// Splits reply bytes into records.
pub fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let header = record_header(rest).expect("reply holds records");
        out.push(rest[..header.batch_length_bytes].to_vec());
        rest = &rest[header.batch_length_bytes..];
    }
    out
}

/// Every payload of the reply, in order.
pub fn reply_payloads(bytes: &[u8]) -> Vec<Vec<u8>> {
    records(bytes)
        .iter()
        .flat_map(|r| {
            verify_polled(r, RECORD_SIZE_MAX_BYTES).expect("reply records verify");
            Frames::over(&r[BATCH_HEADER_SIZE_BYTES..])
                .map(|frame| frame.payload().to_vec())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn partition_dir(root: &Path) -> std::path::PathBuf {
    root.join("streams/0/topics/0/partitions/0")
}

/// A shard with one new, empty partition (`KEY`) in a temporary directory, which lives as long
/// as the returned guard.
pub fn shard_with_new_partition(config: StorageConfig) -> (tempfile::TempDir, Shard) {
    let root = tempfile::tempdir().unwrap();
    let mut shard = shard(config);
    shard
        .create_partition(
            KEY,
            &partition_dir(root.path()),
            PartitionSettings::default(),
        )
        .unwrap();
    (root, shard)
}

#[allow(unused_imports)]
pub use riptide_storage::testkit::unstamped;
