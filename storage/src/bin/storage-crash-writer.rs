//! Crash-test helper: opens (recovering) a partition and appends deterministic batches with
//! durable acknowledgements, several in flight, printing `ack <base_offset> <tag>` for each
//! acknowledged one. The crash test SIGKILLs it at random moments and checks that every
//! printed batch survives byte for byte.
//!
//! Usage: storage-crash-writer <partition-dir> <first-tag>

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use riptide_storage::testkit::tagged_batch;
use riptide_storage::{
    AckMode, CompletionResult, PartitionKey, PartitionSettings, Shard, StorageConfig,
};

/// Small segments so crashes also land around rotations.
const SEGMENT_SIZE_BYTES: u64 = 256 * 1024;
const APPENDS_IN_FLIGHT_MAX: usize = 8;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: storage-crash-writer <dir> <first-tag>")?,
    );
    let mut tag: u64 = args.next().context("missing first tag")?.parse()?;
    let config = StorageConfig {
        segment_size_bytes: SEGMENT_SIZE_BYTES,
        write_buffer_size_bytes: 64 * 1024,
        ..StorageConfig::default()
    };
    let mut shard = Shard::new(config, None)?;
    let key = PartitionKey {
        stream_id: 0,
        topic_id: 0,
        partition_id: 0,
    };
    shard.open_partition(key, &dir, PartitionSettings::default())?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    let mut in_flight = 0usize;
    let mut done = Vec::new();
    loop {
        while in_flight < APPENDS_IN_FLIGHT_MAX {
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros() as u64;
            shard.append(
                key,
                tagged_batch(tag, 20, 3000),
                AckMode::Durable,
                tag,
                now_us,
            )?;
            tag += 1;
            in_flight += 1;
        }
        shard.wait(Duration::from_millis(100));
        shard.take_completions(&mut done);
        for completion in done.drain(..) {
            if let CompletionResult::Append(result) = completion.result {
                let appended = result.map_err(|e| anyhow::anyhow!("append failed: {e}"))?;
                in_flight -= 1;
                writeln!(stdout, "ack {} {}", appended.base_offset, completion.token)?;
            }
        }
        stdout.flush()?;
    }
}
