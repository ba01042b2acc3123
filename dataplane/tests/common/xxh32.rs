//! XXH32 (seed 0): the hash the Iggy protocol uses to map a messages key to a partition
//! (`XxHash32(key) % partitions_count`). Cross-checked against `twox-hash`.

const PRIME32_1: u32 = 0x9E37_79B1;
const PRIME32_2: u32 = 0x85EB_CA77;
const PRIME32_3: u32 = 0xC2B2_AE3D;
const PRIME32_4: u32 = 0x27D4_EB2F;
const PRIME32_5: u32 = 0x1656_67B1;

fn lane(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn round(acc: u32, input: u32) -> u32 {
    acc.wrapping_add(input.wrapping_mul(PRIME32_2))
        .rotate_left(13)
        .wrapping_mul(PRIME32_1)
}

pub fn xxh32(input: &[u8]) -> u32 {
    let len = input.len();
    let mut at = 0;
    let mut hash = if len >= 16 {
        let mut acc = [
            PRIME32_1.wrapping_add(PRIME32_2),
            PRIME32_2,
            0,
            0u32.wrapping_sub(PRIME32_1),
        ];
        while at + 16 <= len {
            for (i, value) in acc.iter_mut().enumerate() {
                *value = round(*value, lane(input, at + 4 * i));
            }
            at += 16;
        }
        acc[0]
            .rotate_left(1)
            .wrapping_add(acc[1].rotate_left(7))
            .wrapping_add(acc[2].rotate_left(12))
            .wrapping_add(acc[3].rotate_left(18))
    } else {
        PRIME32_5
    };
    hash = hash.wrapping_add(len as u32);
    while at + 4 <= len {
        hash = hash
            .wrapping_add(lane(input, at).wrapping_mul(PRIME32_3))
            .rotate_left(17)
            .wrapping_mul(PRIME32_4);
        at += 4;
    }
    while at < len {
        hash = hash
            .wrapping_add(u32::from(input[at]).wrapping_mul(PRIME32_5))
            .rotate_left(11)
            .wrapping_mul(PRIME32_1);
        at += 1;
    }
    hash ^= hash >> 15;
    hash = hash.wrapping_mul(PRIME32_2);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(PRIME32_3);
    hash ^ (hash >> 16)
}
