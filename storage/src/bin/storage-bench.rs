//! Storage benchmark: appends 1000-byte messages in batches of 1000 in `durable` and `memory`
//! modes and prints MB/s next to a raw O_DIRECT sequential write of the same bytes to the same
//! filesystem (the ceiling, measured in the same run), then a cold sequential read of the log
//! next to a raw O_DIRECT sequential read, with a reference row of raw reads at the engine's
//! read size and readahead depth.
//!
//! Usage: storage-bench [--size-bytes 2GiB] [--dir PATH]

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use riptide_storage::constants::READAHEAD_CHUNKS_MAX;
use riptide_storage::io::{preallocate, AlignedBuf, Io, IoBuffer, Request};
use riptide_storage::testkit::build_batch;
use riptide_storage::{
    AckMode, CompletionResult, MemoryFlush, PartitionKey, PartitionSettings, ReadOutcome,
    ReadStart, Shard, StorageConfig,
};

const MESSAGE_PAYLOAD_BYTES: usize = 1000;
const MESSAGES_PER_BATCH: usize = 1000;
const RAW_CHUNK_BYTES: usize = 1024 * 1024;
/// Batches queued beyond the one being written: enough to keep the disk busy.
const APPENDS_IN_FLIGHT_MAX: usize = 64;
const KEY: PartitionKey = PartitionKey {
    stream_id: 0,
    topic_id: 0,
    partition_id: 0,
};

struct Args {
    size_bytes: u64,
    dir: PathBuf,
}

fn parse_size(text: &str) -> anyhow::Result<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().with_context(|| format!("bad size {text}"))?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        other => bail!("unknown size unit {other}"),
    };
    Ok(number * scale)
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        size_bytes: 2 << 30,
        dir: std::env::temp_dir().join("riptide-storage-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size-bytes" => args.size_bytes = parse_size(&value)?,
            "--dir" => args.dir = PathBuf::from(value),
            other => {
                bail!("unknown flag {other}; usage: storage-bench [--size-bytes 2GiB] [--dir PATH]")
            }
        }
    }
    Ok(args)
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

fn drop_caches() {
    // Root only; O_DIRECT reads are cold regardless, and the log is read with O_DIRECT too.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// Raw O_DIRECT sequential writes of `chunk_bytes` (the engine's write size), fdatasync at the
/// end: the ceiling for appends.
fn raw_write(path: &Path, size_bytes: u64, chunk_bytes: usize) -> anyhow::Result<Duration> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    preallocate(&file, size_bytes)?;
    let mut buf = AlignedBuf::new(chunk_bytes, 4096);
    buf.full_mut().fill(0xA5);
    buf.set_len(chunk_bytes);
    let started = Instant::now();
    let mut position = 0;
    while position < size_bytes {
        let len = (size_bytes - position).min(chunk_bytes as u64) as usize;
        file.write_all_at(&buf.as_slice()[..len], position)?;
        position += len as u64;
    }
    file.sync_data()?;
    Ok(started.elapsed())
}

/// Raw O_DIRECT writes of `chunk_bytes` each with RWF_DSYNC (what durability alone costs on
/// this device, for reference): pwritev2 through the library's buffered-syscall path would
/// hide nothing, so this uses an O_DSYNC descriptor.
fn raw_dsync_write(path: &Path, size_bytes: u64, chunk_bytes: usize) -> anyhow::Result<Duration> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)?;
    preallocate(&file, size_bytes)?;
    let mut buf = AlignedBuf::new(chunk_bytes, 4096);
    buf.full_mut().fill(0xA5);
    buf.set_len(chunk_bytes);
    let started = Instant::now();
    let mut position = 0;
    while position < size_bytes {
        let len = (size_bytes - position).min(chunk_bytes as u64) as usize;
        file.write_all_at(&buf.as_slice()[..len], position)?;
        position += len as u64;
    }
    Ok(started.elapsed())
}

fn raw_read(path: &Path, size_bytes: u64) -> anyhow::Result<Duration> {
    drop_caches();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let mut buf = AlignedBuf::new(RAW_CHUNK_BYTES, 4096);
    let started = Instant::now();
    let mut position = 0;
    while position < size_bytes {
        file.read_exact_at(buf.full_mut(), position)?;
        position += RAW_CHUNK_BYTES as u64;
    }
    Ok(started.elapsed())
}

/// Raw O_DIRECT sequential reads of `chunk_bytes` with `depth` of them in flight on an io_uring
/// (the engine's read size and readahead depth): what the device gives the engine's pattern.
fn raw_read_queued(
    path: &Path,
    size_bytes: u64,
    chunk_bytes: usize,
    depth: usize,
) -> anyhow::Result<Duration> {
    drop_caches();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut io = Io::new(depth, None, false);
    let mut free: Vec<(usize, AlignedBuf)> = (0..depth)
        .map(|slot| (slot, AlignedBuf::new(chunk_bytes, 4096)))
        .collect();
    let mut done = Vec::new();
    let (mut position, mut in_flight) = (0u64, 0usize);
    let started = Instant::now();
    while position < size_bytes || in_flight > 0 {
        while let (true, Some((slot, buf))) = (position < size_bytes, free.pop()) {
            let len = (size_bytes - position).min(chunk_bytes as u64) as usize;
            let request = Request::Read {
                fd,
                offset: position,
                len,
            };
            if io.push(slot, request, IoBuffer::Aligned(buf)).is_err() {
                bail!("raw read refused by the I/O layer");
            }
            position += len as u64;
            in_flight += 1;
        }
        io.submit();
        io.wait(Duration::from_millis(100));
        io.reap(&mut done);
        for (completion, buffer) in done.drain(..) {
            if completion.result < 0 {
                bail!("raw read failed: errno {}", -completion.result);
            }
            let IoBuffer::Aligned(buf) = buffer else {
                bail!("raw read lost its buffer");
            };
            free.push((completion.user_data as usize, buf));
            in_flight -= 1;
        }
    }
    Ok(started.elapsed())
}

/// Throughput settings: 16 MiB group-commit writes (memory mode flushes once a write's worth
/// has accumulated), 8 MiB readahead, 64 MiB of unwritten appends before backpressure.
/// Reads one readahead window keeps in flight when it is alone on its shard.
fn readahead_depth(config: &StorageConfig) -> usize {
    READAHEAD_CHUNKS_MAX.min(config.readahead_reads_in_flight_max)
}

fn engine_config() -> StorageConfig {
    let defaults = StorageConfig::default();
    StorageConfig {
        write_buffer_size_bytes: 16 << 20,
        pending_size_max_bytes: 64 << 20,
        read_buffer_size_bytes: 8 << 20,
        cache_size_bytes: 4 << 20,
        memory_flush: MemoryFlush {
            size_bytes: 16 << 20,
            ..defaults.memory_flush
        },
        ..defaults
    }
}

/// Appends `batches` copies of `batch`; returns the elapsed time until the last is durable
/// (memory mode: until the final flush with fdatasync completes).
fn append_all(dir: &Path, batch: &[u8], batches: u64, ack: AckMode) -> anyhow::Result<Duration> {
    let mut shard = Shard::new(engine_config(), None)?;
    shard.create_partition(
        KEY,
        dir,
        PartitionSettings {
            ack_mode: ack,
            ..Default::default()
        },
    )?;
    let mut done = Vec::new();
    let mut recycled: Vec<Vec<u8>> = Vec::new();
    let (mut sent, mut acked, mut in_flight) = (0u64, 0u64, 0usize);
    let (mut flush_sent, mut finished) = (false, false);
    let started = Instant::now();
    while !finished {
        while sent < batches && in_flight < APPENDS_IN_FLIGHT_MAX {
            // Reuse buffers the shard is done with, as the dataplane would for network reads.
            let mut bytes = recycled.pop().unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(batch);
            match shard.append(KEY, bytes, ack, sent, 0) {
                Ok(_) => sent += 1,
                Err(riptide_storage::AppendError::Backpressure) => break,
                Err(error) => bail!("append failed: {error}"),
            }
            in_flight += usize::from(ack == AckMode::Durable);
        }
        if ack == AckMode::Memory && sent == batches && !flush_sent {
            shard.flush(KEY, true, batches)?;
            flush_sent = true;
        }
        shard.wait(Duration::from_millis(100));
        shard.take_completions(&mut done);
        shard.take_recycled(&mut recycled);
        for completion in done.drain(..) {
            match completion.result {
                CompletionResult::Append(Ok(_)) if ack == AckMode::Durable => {
                    acked += 1;
                    in_flight -= 1;
                    finished = acked == batches;
                }
                CompletionResult::Append(Ok(_)) => {}
                CompletionResult::Flushed(Ok(())) => finished = true,
                other => bail!("unexpected completion {other:?}"),
            }
        }
    }
    let elapsed = started.elapsed();
    shard.shutdown();
    Ok(elapsed)
}

/// Reads the whole log back, polling 1000 messages at a time from a freshly opened shard.
fn read_all(dir: &Path, messages: u64) -> anyhow::Result<(Duration, u64)> {
    drop_caches();
    let mut shard = Shard::new(engine_config(), None)?;
    shard.open_partition(KEY, dir, PartitionSettings::default())?;
    let mut done = Vec::new();
    let (mut offset, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    while offset < messages {
        let result = match shard.read(
            KEY,
            ReadStart::Offset(offset),
            MESSAGES_PER_BATCH as u32,
            offset,
        )? {
            ReadOutcome::Ready(result) => result,
            ReadOutcome::Pending => loop {
                shard.wait(Duration::from_millis(100));
                shard.take_completions(&mut done);
                if let Some(c) = done.pop() {
                    match c.result {
                        CompletionResult::Read(result) => break result?,
                        other => bail!("unexpected completion {other:?}"),
                    }
                }
            },
        };
        if result.messages_count == 0 {
            bail!("read stalled at offset {offset}");
        }
        offset += result.messages_count as u64;
        bytes += result.len_bytes() as u64;
    }
    Ok((started.elapsed(), bytes))
}

/// One table row: the engine's figure next to the ceiling measured just before it.
fn row(name: &str, bytes: u64, elapsed: Duration, ceiling_bytes: u64, ceiling: Duration) {
    let mbs = mb_per_s(bytes, elapsed);
    let ceiling_mbs = mb_per_s(ceiling_bytes, ceiling);
    println!(
        "{name:<40} {mbs:>9.1} {ceiling_mbs:>14.1} {:>6.1}%",
        100.0 * mbs / ceiling_mbs
    );
}

fn print_header(
    args: &Args,
    config: &StorageConfig,
    batches: u64,
    batch_bytes: usize,
    total_bytes: u64,
) {
    println!(
        "storage-bench: {batches} batches x {} B = {total_bytes} B in {} (write buffer {} B, read buffer {} B, segment {} B)",
        batch_bytes,
        args.dir.display(),
        config.write_buffer_size_bytes,
        config.read_buffer_size_bytes,
        config.segment_size_bytes,
    );
    println!("ceilings, measured right before each case on the same filesystem: raw O_DIRECT sequential pwrite of the");
    println!("same bytes in write-buffer-size chunks (fdatasync at end); raw O_DIRECT sequential 1 MiB pread (the poll size)");
    println!("reference rows: the same raw writes with O_DSYNC on every write (the device's price of durability);");
    println!(
        "raw O_DIRECT reads in read-buffer-size chunks, {} in flight (the engine's readahead pattern)",
        readahead_depth(config)
    );
    println!(
        "{:<40} {:>9} {:>14} {:>7}",
        "case", "MB/s", "ceiling MB/s", "ratio"
    );
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    let payload = vec![0x5Au8; MESSAGE_PAYLOAD_BYTES];
    let payloads: Vec<&[u8]> = (0..MESSAGES_PER_BATCH)
        .map(|_| payload.as_slice())
        .collect();
    let batch = build_batch(&payloads, 1);
    let batches = args.size_bytes.div_ceil(batch.len() as u64);
    let total_bytes = batches * batch.len() as u64;
    let raw_bytes = total_bytes.div_ceil(RAW_CHUNK_BYTES as u64) * RAW_CHUNK_BYTES as u64;
    let config = engine_config();
    print_header(&args, &config, batches, batch.len(), total_bytes);
    let raw_path = args.dir.join("raw.bin");
    let durable = args.dir.join("durable");
    let memory = args.dir.join("memory");
    let _ = std::fs::remove_dir_all(&durable);
    let _ = std::fs::remove_dir_all(&memory);
    let ceiling = raw_write(&raw_path, raw_bytes, config.write_buffer_size_bytes)?;
    let elapsed = append_all(&durable, &batch, batches, AckMode::Durable)?;
    row(
        "append durable (fdatasync, group commit)",
        total_bytes,
        elapsed,
        raw_bytes,
        ceiling,
    );
    let reference = raw_dsync_write(
        &args.dir.join("raw-dsync.bin"),
        raw_bytes,
        config.write_buffer_size_bytes,
    )?;
    std::fs::remove_file(args.dir.join("raw-dsync.bin"))?;
    row(
        "(reference) raw O_DIRECT+O_DSYNC writes",
        raw_bytes,
        reference,
        raw_bytes,
        ceiling,
    );
    let ceiling = raw_read(&raw_path, raw_bytes)?;
    let (elapsed, bytes) = read_all(&durable, batches * MESSAGES_PER_BATCH as u64)?;
    row(
        "cold sequential read (poll 1000 msgs)",
        bytes,
        elapsed,
        raw_bytes,
        ceiling,
    );
    let queued = raw_read_queued(
        &raw_path,
        raw_bytes,
        config.read_buffer_size_bytes,
        readahead_depth(&config),
    )?;
    row(
        "(reference) raw reads, engine's depth",
        raw_bytes,
        queued,
        raw_bytes,
        ceiling,
    );
    std::fs::remove_dir_all(&durable)?;
    let ceiling = raw_write(&raw_path, raw_bytes, config.write_buffer_size_bytes)?;
    let elapsed = append_all(&memory, &batch, batches, AckMode::Memory)?;
    row(
        "append memory (flush by size, fsync end)",
        total_bytes,
        elapsed,
        raw_bytes,
        ceiling,
    );
    std::fs::remove_dir_all(&memory)?;
    std::fs::remove_file(&raw_path)?;
    Ok(())
}
