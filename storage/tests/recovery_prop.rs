//! Property: append random batches, damage the active segment at a random point (cut it, flip
//! a byte, or zero the rest), reopen — the partition holds exactly the acknowledged batches
//! that lie wholly before the damage, a prefix, byte for byte.

mod common;

use std::os::unix::fs::FileExt;

use common::*;
use proptest::prelude::*;
use riptide_storage::testkit::{tagged_batch, unstamped};
use riptide_storage::*;

#[derive(Debug, Clone, Copy)]
enum Damage {
    Cut,
    Flip,
    ZeroFrom,
}

fn config() -> StorageConfig {
    // One index entry per segment: recovery walks (and verifies) the whole active segment.
    StorageConfig {
        segment_size_bytes: 128 * 1024,
        index_interval_bytes: 128 * 1024,
        ..small_config()
    }
}

fn damage(dir: &std::path::Path, damage: Damage, at_fraction: f64, data_len: u64) -> u64 {
    let base = *riptide_storage::segment::list_segments(dir)
        .unwrap()
        .last()
        .unwrap();
    let path = riptide_storage::segment::log_path(dir, base);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let point = ((data_len as f64) * at_fraction) as u64;
    match damage {
        Damage::Cut => file.set_len(point).unwrap(),
        Damage::Flip => {
            let mut byte = [0u8; 1];
            std::fs::File::open(&path)
                .unwrap()
                .read_exact_at(&mut byte, point)
                .unwrap();
            file.write_all_at(&[byte[0] ^ 0x5A], point).unwrap();
        }
        Damage::ZeroFrom => file
            .write_all_at(&vec![0u8; (data_len - point) as usize], point)
            .unwrap(),
    }
    point
}

fn run_case(tags: Vec<u64>, kind: Damage, at_fraction: f64) {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut acked = Vec::new();
    {
        let mut shard = common::shard(config());
        shard
            .create_partition(KEY, &dir, PartitionSettings::default())
            .unwrap();
        for tag in &tags {
            let b = tagged_batch(*tag, 8, 2000);
            let appended = append_durable(&mut shard, KEY, b.clone(), *tag).unwrap();
            acked.push((appended, b));
        }
    }
    // Where each acknowledged record sits in the active segment, by the rotation rule.
    let active_base = *riptide_storage::segment::list_segments(&dir)
        .unwrap()
        .last()
        .unwrap();
    let mut position = 0u64;
    let mut ends = Vec::new();
    for (appended, b) in &acked {
        if appended.base_offset >= active_base {
            position += b.len() as u64;
        }
        ends.push(position);
    }
    let point = damage(&dir, kind, at_fraction, position.max(1));
    let survivors = acked
        .iter()
        .zip(&ends)
        .take_while(|((a, _), end)| a.base_offset < active_base || **end <= point)
        .count();
    let mut shard = common::shard(config());
    let info = shard
        .open_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    let expected_messages: u64 = acked[..survivors]
        .iter()
        .map(|(a, _)| a.last_offset - a.base_offset + 1)
        .sum();
    assert_eq!(
        info.messages_count, expected_messages,
        "{kind:?} at {point}: wrong prefix"
    );
    let mut offset = 0;
    for (appended, b) in &acked[..survivors] {
        assert_eq!(appended.base_offset, offset);
        let got = read(&mut shard, KEY, ReadStart::Offset(offset), u32::MAX).unwrap();
        assert_eq!(unstamped(&records(&got.to_vec())[0]), unstamped(b));
        offset = appended.last_offset + 1;
    }
    // The log continues right after the surviving prefix.
    assert_eq!(
        append_durable(&mut shard, KEY, tagged_batch(1, 1, 1), 1)
            .unwrap()
            .base_offset,
        offset
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn recovery_keeps_exactly_the_undamaged_prefix(
        tags in proptest::collection::vec(0u64..1_000_000, 1..60),
        kind in prop_oneof![Just(Damage::Cut), Just(Damage::Flip), Just(Damage::ZeroFrom)],
        at_fraction in 0.0f64..1.0,
    ) {
        run_case(tags, kind, at_fraction);
    }
}
