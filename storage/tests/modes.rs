//! Memory acknowledgements, flushes, consumer offsets, retention, purge and the fallbacks.

mod common;

use std::time::Duration;

use common::*;
use riptide_storage::*;

#[test]
fn memory_appends_complete_at_once_and_reach_disk_on_flush() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let settings = PartitionSettings {
        ack_mode: AckMode::Memory,
        ..Default::default()
    };
    {
        let mut shard = common::shard(small_config());
        shard.create_partition(KEY, &dir, settings).unwrap();
        for i in 0..10u64 {
            shard
                .append(KEY, batch(i, 2, 100), AckMode::Memory, i, now_us())
                .unwrap();
        }
        let mut done = Vec::new();
        shard.take_completions(&mut done);
        assert_eq!(done.len(), 10, "memory acks complete without waiting");
        assert_eq!(
            read(&mut shard, KEY, ReadStart::First, 100)
                .unwrap()
                .messages_count,
            20
        );
        shard.flush(KEY, true, 77).unwrap();
        let mut parked = Vec::new();
        assert_eq!(
            wait_for(&mut shard, 77, &mut parked).result,
            CompletionResult::Flushed(Ok(()))
        );
    }
    let mut shard = common::shard(small_config());
    assert_eq!(
        shard
            .open_partition(KEY, &dir, settings)
            .unwrap()
            .messages_count,
        20
    );
}

#[test]
fn memory_appends_are_flushed_by_interval() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut config = small_config();
    config.memory_flush = MemoryFlush {
        size_bytes: 1 << 30,
        messages_count: u64::MAX,
        interval_us: 20_000,
    };
    let mut shard = common::shard(config.clone());
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    shard
        .append(KEY, batch(1, 1, 10), AckMode::Memory, 1, now_us())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while shard.stats().bytes_written == 0 && std::time::Instant::now() < deadline {
        shard.wait(Duration::from_millis(10));
    }
    assert!(
        shard.stats().bytes_written > 0,
        "the interval flush wrote the record"
    );
}

#[test]
fn consumer_offsets_are_durable_and_group_committed() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let consumer = ConsumerRef {
        kind: ConsumerKind::Consumer,
        id: 7,
    };
    let group = ConsumerRef {
        kind: ConsumerKind::Group,
        id: 7,
    };
    {
        let mut shard = common::shard(small_config());
        shard
            .create_partition(KEY, &dir, PartitionSettings::default())
            .unwrap();
        // Offsets name stored messages: recovery clamps one past the end of the partition.
        append_durable(&mut shard, KEY, batch(1, 50, 10), 1).unwrap();
        for offset in 0..50u64 {
            shard
                .store_offset(KEY, consumer, offset, 1000 + offset)
                .unwrap();
        }
        shard.store_offset(KEY, group, 3, 2000).unwrap();
        let mut parked = Vec::new();
        for token in (1000..1050).chain([2000]) {
            assert_eq!(
                wait_for(&mut shard, token, &mut parked).result,
                CompletionResult::OffsetStored(Ok(()))
            );
        }
        assert_eq!(shard.get_offset(KEY, consumer).unwrap(), Some(49));
    }
    let mut shard = common::shard(small_config());
    shard
        .open_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    assert_eq!(shard.get_offset(KEY, consumer).unwrap(), Some(49));
    assert_eq!(shard.get_offset(KEY, group).unwrap(), Some(3));
    shard.delete_offset(KEY, consumer).unwrap();
    assert_eq!(
        shard.delete_offset(KEY, consumer),
        Err(OffsetError::NotFound)
    );
    drop(shard);
    let mut shard = common::shard(small_config());
    shard
        .open_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    assert_eq!(shard.get_offset(KEY, consumer).unwrap(), None);
    assert_eq!(shard.get_offset(KEY, group).unwrap(), Some(3));
}

/// The newest slot of an offset file as `(offset, sequence)`: the value on disk and how many
/// writes it took (each write advances the sequence by one). `None` before the first write.
fn offset_on_disk(dir: &std::path::Path, consumer: ConsumerRef) -> Option<(u64, u64)> {
    let kind = match consumer.kind {
        ConsumerKind::Consumer => "consumers",
        ConsumerKind::Group => "groups",
    };
    let bytes = std::fs::read(dir.join("offsets").join(kind).join(consumer.id.to_string())).ok()?;
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let slot = |at: usize| Some((word(at)?, word(at + 8)?)).filter(|&(_, sequence)| sequence > 0);
    [slot(0), slot(4096)]
        .into_iter()
        .flatten()
        .max_by_key(|&(_, sequence)| sequence)
}

const GROUP_9: ConsumerRef = ConsumerRef {
    kind: ConsumerKind::Group,
    id: 9,
};

#[test]
fn deferred_offsets_are_written_once_per_delay_not_once_per_store() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut config = small_config();
    config.deferred_offset_write_delay = Duration::from_millis(50);
    let mut shard = common::shard(config);
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    for offset in 0..200u64 {
        shard.store_offset_deferred(KEY, GROUP_9, offset).unwrap();
    }
    assert_eq!(
        shard.get_offset(KEY, GROUP_9).unwrap(),
        Some(199),
        "visible at once"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while offset_on_disk(&dir, GROUP_9).map(|(offset, _)| offset) != Some(199) {
        assert!(
            std::time::Instant::now() < deadline,
            "not written: {:?}",
            offset_on_disk(&dir, GROUP_9)
        );
        shard.wait(Duration::from_millis(10));
    }
    let (_, writes) = offset_on_disk(&dir, GROUP_9).unwrap();
    assert!(writes <= 3, "200 deferred stores took {writes} writes");
}

#[test]
fn deferred_offsets_are_written_by_an_explicit_store_and_by_shutdown() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut config = small_config();
    config.deferred_offset_write_delay =
        Duration::from_millis(constants::DEFERRED_OFFSET_WRITE_DELAY_MAX_MS);
    let mut shard = common::shard(config);
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    shard.store_offset_deferred(KEY, GROUP_9, 41).unwrap();
    for _ in 0..5 {
        shard.wait(Duration::from_millis(10));
    }
    assert_eq!(offset_on_disk(&dir, GROUP_9), None, "not before the delay");
    shard.shutdown();
    assert_eq!(
        offset_on_disk(&dir, GROUP_9),
        Some((41, 1)),
        "written by shutdown"
    );

    shard.store_offset_deferred(KEY, GROUP_9, 42).unwrap();
    shard.store_offset(KEY, GROUP_9, 43, 5).unwrap();
    let mut parked = Vec::new();
    assert_eq!(
        wait_for(&mut shard, 5, &mut parked).result,
        CompletionResult::OffsetStored(Ok(()))
    );
    assert_eq!(
        offset_on_disk(&dir, GROUP_9),
        Some((43, 2)),
        "one write for both"
    );

    shard.store_offset_deferred(KEY, GROUP_9, 44).unwrap();
    shard.close_partition(KEY).unwrap();
    assert_eq!(
        offset_on_disk(&dir, GROUP_9),
        Some((44, 3)),
        "written before closing"
    );
}

#[test]
fn a_zero_delay_writes_every_deferred_store_at_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut config = small_config();
    config.deferred_offset_write_delay = Duration::ZERO;
    let mut shard = common::shard(config);
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    shard.store_offset_deferred(KEY, GROUP_9, 8).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while offset_on_disk(&dir, GROUP_9) != Some((8, 1)) {
        assert!(std::time::Instant::now() < deadline, "not written");
        shard.wait(Duration::from_millis(10));
    }
}

fn fill_segments(shard: &mut Shard, batches: u64) {
    for i in 0..batches {
        append_durable(shard, KEY, batch(i, 4, 2000), i).unwrap();
    }
}

#[test]
fn retention_by_size_and_expiry_keeps_the_active_segment() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut shard = common::shard(small_config());
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    fill_segments(&mut shard, 100);
    let before = shard.partition_info(KEY).unwrap();
    assert!(before.segments_count >= 3, "{before:?}");
    let limited = PartitionSettings {
        max_size_bytes: Some(300 * 1024),
        ..Default::default()
    };
    shard.set_settings(KEY, limited).unwrap();
    assert!(shard.apply_retention(now_us()).unwrap() >= 1);
    let after = shard.partition_info(KEY).unwrap();
    assert!(
        after.size_bytes <= 300 * 1024 && after.segments_count >= 1,
        "{after:?}"
    );
    assert_eq!(after.current_offset, before.current_offset);
    let first = read(&mut shard, KEY, ReadStart::First, 1).unwrap();
    assert!(records(&first.to_vec())[0][8] > 0 || after.segments_count == before.segments_count);
    let expiring = PartitionSettings {
        message_expiry_us: Some(1),
        ..Default::default()
    };
    shard.set_settings(KEY, expiring).unwrap();
    shard.apply_retention(now_us() + 1_000_000).unwrap();
    let expired = shard.partition_info(KEY).unwrap();
    assert_eq!(
        expired.segments_count, 1,
        "only the active segment survives"
    );
    assert_eq!(expired.current_offset, before.current_offset);
    assert_eq!(segment_files(&dir), 1);
    drop(shard);
    let mut shard = common::shard(small_config());
    assert_eq!(
        shard
            .open_partition(KEY, &dir, PartitionSettings::default())
            .unwrap()
            .current_offset,
        before.current_offset
    );
}

fn segment_files(dir: &std::path::Path) -> usize {
    riptide_storage::segment::list_segments(dir).unwrap().len()
}

#[test]
fn delete_segments_purge_and_delete_partition() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut shard = common::shard(small_config());
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    fill_segments(&mut shard, 100);
    let segments = shard.partition_info(KEY).unwrap().segments_count as usize;
    assert_eq!(shard.delete_segments(KEY, 1).unwrap(), 1);
    assert_eq!(segment_files(&dir), segments - 1);
    assert_eq!(shard.delete_segments(KEY, 1000).unwrap(), segments - 2);
    shard
        .store_offset(
            KEY,
            ConsumerRef {
                kind: ConsumerKind::Consumer,
                id: 1,
            },
            5,
            1,
        )
        .unwrap();
    let info = shard.purge(KEY).unwrap();
    assert_eq!((info.current_offset, info.messages_count), (None, 0));
    assert_eq!(
        shard
            .get_offset(
                KEY,
                ConsumerRef {
                    kind: ConsumerKind::Consumer,
                    id: 1
                }
            )
            .unwrap(),
        None
    );
    assert_eq!(
        append_durable(&mut shard, KEY, batch(1, 1, 1), 9)
            .unwrap()
            .base_offset,
        0
    );
    shard.delete_partition(KEY).unwrap();
    assert!(!dir.exists());
    assert_eq!(
        shard.append(KEY, batch(1, 1, 1), AckMode::Durable, 1, 0),
        Err(AppendError::UnknownPartition(KEY))
    );
}

#[test]
fn buffered_syscall_fallback_keeps_durability_and_format() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let config = StorageConfig {
        force_buffered_syscalls: true,
        ..small_config()
    };
    {
        let mut shard = common::shard(config.clone());
        assert_eq!(
            shard.backend(),
            riptide_storage::io::Backend::BufferedSyscalls
        );
        shard
            .create_partition(KEY, &dir, PartitionSettings::default())
            .unwrap();
        fill_segments(&mut shard, 30);
    }
    let mut shard = common::shard(small_config());
    assert_eq!(
        shard
            .open_partition(KEY, &dir, PartitionSettings::default())
            .unwrap()
            .messages_count,
        120
    );
    assert_eq!(
        read(&mut shard, KEY, ReadStart::Offset(117), 10)
            .unwrap()
            .messages_count,
        3
    );
}

#[test]
fn tmpfs_without_o_direct_falls_back_to_buffered_writes() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs /dev/shm (tmpfs)"
        );
        eprintln!("skipped: no /dev/shm tmpfs here");
        return;
    }
    let root = tempfile::tempdir_in(shm).unwrap();
    let dir = partition_dir(root.path());
    {
        let mut shard = common::shard(small_config());
        shard
            .create_partition(KEY, &dir, PartitionSettings::default())
            .unwrap();
        fill_segments(&mut shard, 10);
    }
    let mut shard = common::shard(small_config());
    assert_eq!(
        shard
            .open_partition(KEY, &dir, PartitionSettings::default())
            .unwrap()
            .messages_count,
        40
    );
    assert_eq!(
        reply_payloads(
            &read(&mut shard, KEY, ReadStart::Offset(0), 4)
                .unwrap()
                .to_vec()
        )
        .len(),
        4
    );
}

#[test]
fn timestamp_polls_find_the_first_record_at_or_after_the_time() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut shard = common::shard(small_config());
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    let mut parked = Vec::new();
    for i in 0..60u64 {
        shard
            .append(
                KEY,
                batch(i, 2, 3000),
                AckMode::Durable,
                i,
                1_000_000 + i * 10,
            )
            .unwrap();
        wait_for(&mut shard, i, &mut parked);
    }
    let got = read(&mut shard, KEY, ReadStart::Timestamp(1_000_000 + 105), 2).unwrap();
    let first = riptide_storage::segment::record_header(&got.to_vec()).unwrap();
    assert_eq!(first.base_offset, 22);
    assert_eq!(got.messages_count, 2);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut shard = common::shard(small_config());
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    assert_eq!(
        shard.append(KEY, vec![0u8; 10], AckMode::Durable, 1, 0),
        Err(AppendError::InvalidBatch)
    );
    let mut torn = batch(1, 2, 10);
    torn.pop();
    assert_eq!(
        shard.append(KEY, torn, AckMode::Durable, 1, 0),
        Err(AppendError::InvalidBatch)
    );
    assert!(matches!(
        shard.create_partition(KEY, &dir, PartitionSettings::default()),
        Err(StorageError::PartitionExists(_))
    ));
    assert!(Shard::new(
        StorageConfig {
            segment_size_bytes: 1,
            ..small_config()
        },
        None
    )
    .is_err());
}

#[test]
fn has_room_predicts_backpressure() {
    let config = StorageConfig {
        pending_size_max_bytes: 64 * 1024 * 1024,
        ..small_config()
    };
    let (_root, mut shard) = shard_with_new_partition(config);
    let big = batch(1, 16, 1024 * 1024);
    let mut appended = 0;
    while shard.has_room(KEY, big.len()) {
        shard
            .append(KEY, big.clone(), AckMode::Memory, appended, now_us())
            .unwrap();
        appended += 1;
        assert!(appended < 1000, "has_room never said no");
    }
    assert_eq!(
        shard.append(KEY, big.clone(), AckMode::Memory, 0, now_us()),
        Err(AppendError::Backpressure)
    );
    shard.flush(KEY, false, 5).unwrap();
    let mut parked = Vec::new();
    wait_for(&mut shard, 5, &mut parked);
    assert!(shard.has_room(KEY, big.len()), "room again once written");
}

#[test]
fn a_partition_segment_size_overrides_the_shard_default() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut shard = common::shard(small_config());
    let settings = PartitionSettings {
        segment_size_bytes: Some(64 * 1024),
        ..Default::default()
    };
    shard.create_partition(KEY, &dir, settings).unwrap();
    // 40 batches of ~8 KiB: about 5 segments of 64 KiB, where the shard default (256 KiB) makes 2.
    fill_segments(&mut shard, 40);
    let info = shard.partition_info(KEY).unwrap();
    assert!(info.segments_count >= 4, "{info:?}");
    let too_small = PartitionSettings {
        segment_size_bytes: Some(1),
        ..Default::default()
    };
    assert!(shard
        .create_partition(
            PartitionKey {
                partition_id: 9,
                ..KEY
            },
            &root.path().join("x"),
            too_small
        )
        .is_err());
}
