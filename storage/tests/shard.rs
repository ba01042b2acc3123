//! The Shard API end to end on real files and the real io_uring.

mod common;

use std::path::Path;

use common::*;
use riptide_storage::*;

/// Appends 40 durable batches of 3 messages (~9 KiB each, so several 256 KiB segments) and
/// checks offsets, counters and a poll served from memory. Returns the batches sent.
fn write_forty(dir: &Path) -> Vec<Vec<u8>> {
    let mut shard = shard(small_config());
    let info = shard
        .create_partition(KEY, dir, PartitionSettings::default())
        .unwrap();
    assert_eq!(info.current_offset, None);
    let mut originals = Vec::new();
    for i in 0..40u64 {
        let b = batch(i, 3, 3000);
        originals.push(b.clone());
        let appended = append_durable(&mut shard, KEY, b, i).unwrap();
        assert_eq!(
            appended,
            Appended {
                base_offset: i * 3,
                last_offset: i * 3 + 2
            }
        );
    }
    let info = shard.partition_info(KEY).unwrap();
    assert_eq!((info.current_offset, info.messages_count), (Some(119), 120));
    assert!(info.segments_count >= 2, "{info:?}");
    let got = read(&mut shard, KEY, ReadStart::Offset(5), 4).unwrap();
    assert_eq!((got.messages_count, got.current_offset), (4, Some(119)));
    let payloads = reply_payloads(&got.to_vec());
    assert_eq!(payloads.len(), 4);
    assert!(
        payloads[0].starts_with(b"1:2:"),
        "offset 5 is message 2 of batch 1"
    );
    originals
}

#[test]
fn durable_appends_are_read_back_from_memory_and_after_reopen_from_disk() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let originals = write_forty(&dir);
    let mut shard = shard(small_config());
    let info = shard
        .open_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    assert_eq!((info.current_offset, info.messages_count), (Some(119), 120));
    // Every record comes back from disk byte-identical apart from the stamped fields.
    let mut next = 0usize;
    while next < originals.len() {
        let got = read(&mut shard, KEY, ReadStart::Offset(next as u64 * 3), 1_000).unwrap();
        assert!(got.messages_count > 0);
        for r in records(&got.to_vec()) {
            let batch = riptide_protocol::batch::Batch::new_checked(&r).unwrap();
            assert_eq!(batch.header().base_offset(), next as u64 * 3);
            assert_eq!(unstamped(&r), unstamped(&originals[next]));
            next += 1;
        }
    }
    // A poll that starts inside a record on disk gets a slice with a rewritten header.
    let sliced = read(&mut shard, KEY, ReadStart::Offset(4), 2).unwrap();
    let payloads = reply_payloads(&sliced.to_vec());
    assert!(payloads[0].starts_with(b"1:1:") && payloads[1].starts_with(b"1:2:"));
    // Last returns the newest messages; a start past the end returns nothing.
    let last = read(&mut shard, KEY, ReadStart::Last, 2).unwrap();
    assert_eq!(reply_payloads(&last.to_vec()).len(), 2);
    assert!(reply_payloads(&last.to_vec())[1].starts_with(b"39:2:"));
    assert_eq!(
        read(&mut shard, KEY, ReadStart::Offset(500), 10)
            .unwrap()
            .messages_count,
        0
    );
    // Appends continue after the recovered end.
    assert_eq!(
        append_durable(&mut shard, KEY, batch(99, 1, 10), 1)
            .unwrap()
            .base_offset,
        120
    );
}

#[test]
fn group_commit_puts_concurrent_appends_into_few_writes() {
    let (_root, mut shard) = shard_with_new_partition(small_config());
    for token in 0..50u64 {
        shard
            .append(KEY, batch(token, 1, 100), AckMode::Durable, token, now_us())
            .unwrap();
    }
    let mut parked = Vec::new();
    for token in 0..50u64 {
        assert!(matches!(
            wait_for(&mut shard, token, &mut parked).result,
            CompletionResult::Append(Ok(_))
        ));
    }
    let writes = shard.stats().fsync_latency.count;
    assert!(
        writes < 50,
        "50 appends issued together took {writes} durable writes"
    );
    assert_eq!(shard.stats().append_latency.count, 50);
    // Written records left memory (the test cache holds none): their buffers come back.
    let mut recycled = Vec::new();
    shard.take_recycled(&mut recycled);
    assert_eq!(recycled.len(), 50);
    assert!(
        recycled.iter().all(|b| !b.is_empty()),
        "buffers keep their length"
    );
}

#[test]
fn a_wakeup_eventfd_ends_wait_early() {
    // SAFETY: eventfd takes plain integers and returns a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    // A long flush interval, so only the wakeup can end the wait early.
    let mut config = small_config();
    config.memory_flush.interval_us = 60_000_000;
    let mut shard = Shard::new(config, Some(fd)).unwrap();
    if shard.backend() != riptide_storage::io::Backend::IoUring {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but io_uring is unavailable"
        );
        eprintln!("skipped: the wakeup fd needs io_uring");
        return;
    }
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        // SAFETY: writes 8 bytes from a local u64 to the eventfd, which outlives the thread.
        unsafe { libc::write(fd, (&1u64 as *const u64).cast(), 8) };
    });
    let started = std::time::Instant::now();
    shard.wait(std::time::Duration::from_secs(10));
    let waited = started.elapsed();
    writer.join().unwrap();
    assert!(
        waited < std::time::Duration::from_secs(5),
        "wait ignored the wakeup ({waited:?})"
    );
    drop(shard);
    // SAFETY: closes the descriptor created above, no longer used.
    unsafe { libc::close(fd) };
}

#[test]
fn sequential_and_random_polls_agree_with_what_was_written() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let originals = write_forty(&dir);
    let mut shard = shard(small_config());
    shard
        .open_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    let check = |shard: &mut Shard, batch_index: usize, count: u32| {
        let got = read(shard, KEY, ReadStart::Offset(batch_index as u64 * 3), count).unwrap();
        let stored = records(&got.to_vec());
        assert_eq!(
            unstamped(&stored[0]),
            unstamped(&originals[batch_index]),
            "batch {batch_index}"
        );
        got.messages_count
    };
    // Sequential polls (served by the readahead after the first), interrupted by random ones
    // that abandon it, across segment boundaries.
    let mut rng = riptide_storage::testkit::XorShift::new(42);
    let mut next = 0usize;
    while next < originals.len() {
        assert_eq!(check(&mut shard, next, 3), 3);
        next += 1;
        if rng.between(0, 4) == 0 {
            check(&mut shard, rng.between(0, 39) as usize, 3);
        }
    }
    let hits = shard.stats().readahead_hits;
    assert!(
        hits >= 10,
        "sequential polls should mostly hit the readahead ({hits})"
    );
    // Polls of several records at once, sequentially.
    let mut offset = 0u64;
    let mut payloads = Vec::new();
    while offset < 120 {
        let got = read(&mut shard, KEY, ReadStart::Offset(offset), 7).unwrap();
        assert!(got.messages_count > 0 && got.messages_count <= 7);
        offset += got.messages_count as u64;
        payloads.extend(reply_payloads(&got.to_vec()));
    }
    assert_eq!(payloads.len(), 120);
    for (i, payload) in payloads.iter().enumerate() {
        assert!(
            payload.starts_with(format!("{}:{}:", i / 3, i % 3).as_bytes()),
            "message {i}"
        );
    }
    // Retention while a readahead may be pending leaves polls correct.
    shard.delete_segments(KEY, 1).unwrap();
    let first = read(&mut shard, KEY, ReadStart::First, 3).unwrap();
    assert_eq!(first.messages_count, 3);
}

#[test]
fn a_sequential_consumer_reads_every_message_once_through_the_readahead_window() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    write_forty(&dir);
    for count in [2u32, 50] {
        // Enough buffers for a full window (half the pool) of 64 KiB chunks (~7 records each).
        let mut shard = shard(StorageConfig {
            read_buffers_count: 8,
            ..small_config()
        });
        shard
            .open_partition(KEY, &dir, PartitionSettings::default())
            .unwrap();
        let (mut offset, mut polls, mut payloads) = (0u64, 0u64, Vec::new());
        while offset < 120 {
            let got = read(&mut shard, KEY, ReadStart::Offset(offset), count).unwrap();
            assert!(got.messages_count > 0 && got.messages_count <= count);
            offset += got.messages_count as u64;
            polls += 1;
            payloads.extend(reply_payloads(&got.to_vec()));
        }
        assert_eq!(payloads.len(), 120, "polls of {count}");
        for (i, payload) in payloads.iter().enumerate() {
            assert!(
                payload.starts_with(format!("{}:{}:", i / 3, i % 3).as_bytes()),
                "polls of {count}: message {i}"
            );
        }
        // Every poll after the first starts where the previous one ended, also across
        // segments and inside records, so the window serves it.
        assert_eq!(shard.stats().readahead_hits, polls - 1, "polls of {count}");
    }
}

#[test]
fn readahead_windows_of_a_shard_share_a_bounded_number_of_disk_reads() {
    let root = tempfile::tempdir().unwrap();
    let written = partition_dir(root.path());
    write_forty(&written);
    let mut shard = shard(StorageConfig {
        read_buffers_count: 32,
        ..small_config()
    });
    // Three copies of the partition under other streams (the stamped partition id stays).
    let keys: Vec<PartitionKey> = (1..=3)
        .map(|stream_id| PartitionKey { stream_id, ..KEY })
        .collect();
    for key in &keys {
        let dir = root.path().join(format!("copy-{}", key.stream_id));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&written).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            }
        }
        shard
            .open_partition(*key, &dir, PartitionSettings::default())
            .unwrap();
    }
    // Three sequential consumers poll in turns, so three windows are open at once.
    let mut offsets = [0u64; 3];
    let mut payloads = vec![Vec::new(); 3];
    while offsets.iter().any(|offset| *offset < 120) {
        for (i, key) in keys.iter().enumerate() {
            if offsets[i] < 120 {
                let got = read(&mut shard, *key, ReadStart::Offset(offsets[i]), 2).unwrap();
                offsets[i] += got.messages_count as u64;
                payloads[i].extend(reply_payloads(&got.to_vec()));
            }
        }
    }
    for consumer in &payloads {
        assert_eq!(consumer.len(), 120);
        for (i, payload) in consumer.iter().enumerate() {
            assert!(payload.starts_with(format!("{}:{}:", i / 3, i % 3).as_bytes()));
        }
    }
    let stats = shard.stats();
    assert!(stats.readahead_hits > 100, "hits {}", stats.readahead_hits);
    let peak = stats.readahead_reads_in_flight_peak;
    assert!(
        (2..=StorageConfig::default().readahead_reads_in_flight_max as u64).contains(&peak),
        "readahead reads in flight at once: {peak}"
    );
}

#[test]
fn the_read_cache_keeps_the_newest_records_of_all_partitions_within_the_shard_budget() {
    let root = tempfile::tempdir().unwrap();
    let record_memory = batch(0, 3, 1000).capacity();
    let budget = 12 * record_memory;
    let mut shard = shard(StorageConfig {
        cache_size_bytes: budget,
        ..small_config()
    });
    let older = KEY;
    let newer = PartitionKey {
        partition_id: 1,
        ..KEY
    };
    for key in [older, newer] {
        let dir = root.path().join(format!("p{}", key.partition_id));
        shard
            .create_partition(key, &dir, PartitionSettings::default())
            .unwrap();
    }
    // Ten batches into each partition, the older one first: twenty do not fit the budget, so the
    // shard drops the older partition's oldest ones, never the newer partition's.
    for (i, key) in [older, newer].iter().flat_map(|k| [*k; 10]).enumerate() {
        append_durable(&mut shard, key, batch(i as u64 % 10, 3, 1000), i as u64 + 1).unwrap();
    }
    let stats = shard.stats();
    assert!(
        stats.cached_bytes <= budget as u64,
        "{} cached over a budget of {budget}",
        stats.cached_bytes
    );
    let from_memory = |shard: &mut Shard, key, offset| {
        matches!(
            shard.read(key, ReadStart::Offset(offset), 3, 77),
            Ok(ReadOutcome::Ready(_))
        )
    };
    assert!(
        from_memory(&mut shard, newer, 0),
        "the newer partition's first batch was evicted"
    );
    assert!(
        from_memory(&mut shard, older, 27),
        "the newest batch was evicted"
    );
    assert!(
        !from_memory(&mut shard, older, 0),
        "the oldest batch is still cached"
    );
    let mut parked = Vec::new();
    match wait_for(&mut shard, 77, &mut parked).result {
        CompletionResult::Read(Ok(result)) => {
            assert!(reply_payloads(&result.to_vec())[0].starts_with(b"0:0:"));
        }
        other => panic!("unexpected completion {other:?}"),
    }
    assert_eq!(shard.stats().reads_from_memory, 2);
    // Closing a partition gives its share of the budget back.
    let before_close = shard.stats().cached_bytes;
    shard.close_partition(newer).unwrap();
    assert_eq!(
        shard.stats().cached_bytes,
        before_close - 10 * record_memory as u64
    );
}

#[test]
fn an_evicted_record_hands_its_buffer_back_unless_a_poll_reply_still_shares_it() {
    let (_root, mut shard) = shard_with_new_partition(small_config());
    let pointer_of = |bytes: &[u8]| bytes.as_ptr() as usize;
    // No read cache: a written record leaves memory at once, and its buffer is handed back
    // as it was (same allocation and capacity, no copy), also when it is larger than the batch
    // (a pooled buffer reused for a smaller batch).
    let exact = batch(1, 3, 10_000);
    let mut roomy = Vec::with_capacity(exact.len() + 5000);
    roomy.extend_from_slice(&exact);
    let mut recycled = Vec::new();
    for (token, buffer) in [(1, exact), (2, roomy)] {
        let (pointer, capacity) = (pointer_of(&buffer), buffer.capacity());
        append_durable(&mut shard, KEY, buffer, token).unwrap();
        shard.take_recycled(&mut recycled);
        assert!(recycled
            .iter()
            .any(|b| pointer_of(b) == pointer && b.capacity() == capacity));
    }
    // A memory-acknowledged record is polled from memory before it is written: the reply
    // shares its buffer, so the eviction after the write must not hand it out for reuse.
    let polled = batch(2, 3, 10_000);
    let polled_pointer = pointer_of(&polled);
    shard
        .append(KEY, polled, AckMode::Memory, 3, now_us())
        .unwrap();
    let reply = read(&mut shard, KEY, ReadStart::Offset(6), 3).unwrap();
    assert!(reply.chunks.iter().any(|c| pointer_of(c) == polled_pointer));
    shard.flush(KEY, true, 4).unwrap();
    let mut parked = Vec::new();
    wait_for(&mut shard, 4, &mut parked);
    recycled.clear();
    shard.take_recycled(&mut recycled);
    assert!(recycled.iter().all(|b| pointer_of(b) != polled_pointer));
    let payloads = reply_payloads(&reply.to_vec());
    assert_eq!(payloads.len(), 3);
    assert!(payloads[2].starts_with(b"2:2:"));
}
