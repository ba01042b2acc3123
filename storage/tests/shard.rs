//! The Shard API end to end on real files and the real io_uring.

mod common;

use common::*;
use riptide_storage::*;

#[test]
fn durable_appends_are_read_back_from_memory_and_after_reopen_from_disk() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut originals = Vec::new();
    {
        let mut shard = shard(small_config());
        let info = shard
            .create_partition(KEY, &dir, PartitionSettings::default())
            .unwrap();
        assert_eq!(info.current_offset, None);
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
        assert_eq!(info.current_offset, Some(119));
        assert_eq!(info.messages_count, 120);
        assert!(
            info.segments_count >= 2,
            "40 x 1 KiB records in 256 KiB segments... {info:?}"
        );
        let got = read(&mut shard, KEY, ReadStart::Offset(5), 4).unwrap();
        assert_eq!(got.messages_count, 4);
        assert_eq!(got.current_offset, Some(119));
        let payloads = reply_payloads(&got.bytes);
        assert_eq!(payloads.len(), 4);
        assert!(payloads[0].starts_with(b"1:2:"));
    }
    let mut shard = shard(small_config());
    let info = shard
        .open_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    assert_eq!(info.current_offset, Some(119));
    assert_eq!(info.messages_count, 120);
    // Every record comes back byte-identical apart from the stamped fields.
    let all = read(&mut shard, KEY, ReadStart::First, 1_000).unwrap();
    let stored = records(&all.bytes);
    assert!(!stored.is_empty());
    let mut next = 0u64;
    let mut offset = 0;
    while offset < 120 {
        let got = read(&mut shard, KEY, ReadStart::Offset(offset), 1_000).unwrap();
        for r in records(&got.bytes) {
            let header = riptide_storage::record::verify(&r).unwrap();
            assert_eq!(header.base_offset, next * 3);
            assert_eq!(unstamped(&r), unstamped(&originals[next as usize]));
            next += 1;
        }
        offset = next * 3;
        assert!(got.messages_count > 0);
    }
    assert_eq!(next, 40);
    // Last returns the newest messages; a start past the end returns nothing.
    let last = read(&mut shard, KEY, ReadStart::Last, 2).unwrap();
    assert_eq!(reply_payloads(&last.bytes).len(), 2);
    assert!(reply_payloads(&last.bytes)[1].starts_with(b"39:2:"));
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
