//! TCP checksums of IPv4 frames, computed on transmit and verified on receive by the device
//! ([`super::net`]) instead of smoltcp. Nothing is skipped: every TCP segment sent gets its
//! checksum and every one received is checked (a bad one is dropped before smoltcp sees it).
//! smoltcp's own routine adds 16-bit words one at a time, 5-9% of a busy lcore's samples with
//! 9000-byte frames; this one adds 32-bit words in native byte order into a 64-bit sum, which
//! the compiler vectorises (RFC 1071: the one's complement sum does not depend on byte order or
//! word width, only the final fold does). x86-64's baseline vectors (SSE2) add 16 bytes a step;
//! on a CPU with AVX2, found at run time, the same loop adds 32: a 9000-byte frame takes a third
//! to half of the time (6.5% of an lcore's samples in a consumer run at MTU 9000, then 3-4%).

use smoltcp::wire::{IpProtocol, TcpPacket};

use super::wire::ipv4_tcp;

/// The TCP segment of an IPv4 frame (its range in the frame) and the sum of its pseudo-header;
/// `None` for any other frame (see `wire::ipv4_tcp`: smoltcp judges those itself).
fn tcp_segment(frame: &[u8]) -> Option<(std::ops::Range<usize>, u64)> {
    let found = ipv4_tcp(frame)?;
    let mut pseudo_header = [0u8; 12];
    pseudo_header[..4].copy_from_slice(&found.ip.src_addr.octets());
    pseudo_header[4..8].copy_from_slice(&found.ip.dst_addr.octets());
    pseudo_header[9] = IpProtocol::Tcp.into();
    // `payload_len` fits a u16: it is an IPv4 total length minus the header.
    pseudo_header[10..].copy_from_slice(&(found.ip.payload_len as u16).to_be_bytes());
    Some((found.range, sum(&pseudo_header)))
}

/// Fills in the TCP checksum of an IPv4 TCP frame; other frames are left as they are.
pub fn fill_tcp_checksum(frame: &mut [u8]) {
    let Some((segment, pseudo_header_sum)) = tcp_segment(frame) else {
        return;
    };
    // `tcp_segment` checked the segment with smoltcp's `new_checked`.
    let mut tcp = TcpPacket::new_unchecked(&mut frame[segment]);
    tcp.set_checksum(0);
    let total = pseudo_header_sum + sum(tcp.as_ref());
    // The folded native-order sum, in native byte order, is the checksum's byte sequence;
    // `set_checksum` writes network order.
    tcp.set_checksum(u16::from_be_bytes((!fold(total)).to_ne_bytes()));
}

/// Whether a frame's TCP checksum is right; true for frames that are not IPv4 TCP.
pub fn tcp_checksum_valid(frame: &[u8]) -> bool {
    let Some((segment, pseudo_header_sum)) = tcp_segment(frame) else {
        return true;
    };
    fold(pseudo_header_sum + sum(&frame[segment])) == 0xffff
}

/// The one's complement sum of `data` (zero-padded to whole 32-bit words), unfolded.
fn sum(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (the detection is cached: one relaxed load).
        return unsafe { sum_avx2(data) };
    }
    sum_words(data)
}

/// [`sum_words`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(data: &[u8]) -> u64 {
    sum_words(data)
}

/// Inlined into each caller, so it is vectorised for the caller's target features.
#[inline(always)]
fn sum_words(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    let mut total: u64 = words
        .by_ref()
        .map(|word| u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]])))
        .sum();
    let rest = words.remainder();
    let mut last = [0u8; 4];
    last[..rest.len()].copy_from_slice(rest);
    total += u64::from(u32::from_ne_bytes(last));
    total
}

/// Folds a sum to 16 bits with end-around carries.
fn fold(mut total: u64) -> u16 {
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u16
}

#[cfg(test)]
mod tests {
    use super::super::wire::test_frames::{tcp, Segment};
    use super::*;
    use smoltcp::wire::{Ipv4Address, TcpControl};

    /// An Ethernet frame with an IPv4 TCP segment carrying `payload`, checksums by smoltcp.
    fn smoltcp_frame(payload: &[u8]) -> Vec<u8> {
        tcp(&Segment {
            src: (Ipv4Address::new(10, 1, 2, 3), 40_000),
            dst: (Ipv4Address::new(10, 1, 2, 4), 8090),
            seq: 0x1234_5678,
            control: TcpControl::Psh,
            payload,
        })
    }

    #[test]
    fn matches_smoltcps_checksum_for_every_length_parity() {
        for payload_len in [0, 1, 2, 3, 5, 1460, 8959, 8960] {
            let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 + 13) as u8).collect();
            let expected = smoltcp_frame(&payload);
            let mut frame = expected.clone();
            frame[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&[0xde, 0xad]);
            assert!(!tcp_checksum_valid(&frame), "payload {payload_len}");
            fill_tcp_checksum(&mut frame);
            assert_eq!(frame, expected, "payload {payload_len}");
            assert!(tcp_checksum_valid(&frame), "payload {payload_len}");
        }
    }

    #[test]
    fn the_vectorised_sum_matches_the_baseline_one_at_every_length_and_alignment() {
        let bytes: Vec<u8> = (0..9100u32).map(|i| (i * 131 + 7) as u8).collect();
        for start in 0..4 {
            for len in (0..64).chain([1459, 1460, 8959, 8960, 9000]) {
                let data = &bytes[start..start + len];
                assert_eq!(sum(data), sum_words(data), "start {start} len {len}");
            }
        }
        // Large sums carry into the upper bits of the accumulator: the fold still gives 0xffff
        // for all-ones data, the checksum of a segment whose words sum to zero.
        assert_eq!(fold(sum(&[0xff; 9000])), 0xffff);
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_segment_is_caught() {
        let frame = smoltcp_frame(b"a request that must arrive intact");
        // The TCP header's length (byte 12 of the segment): a flip there gives a length
        // smoltcp refuses (16 bytes), so smoltcp drops the frame itself.
        let header_length_byte = 14 + 20 + 12;
        for index in 14 + 20..frame.len() {
            let mut damaged = frame.clone();
            damaged[index] ^= 0x10;
            if index == header_length_byte {
                assert!(super::super::wire::ipv4_tcp(&damaged).is_none());
                continue;
            }
            assert!(!tcp_checksum_valid(&damaged), "byte {index}");
        }
    }

    #[test]
    fn other_frames_are_left_to_smoltcp() {
        let mut frame = smoltcp_frame(b"x");
        frame[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
        let before = frame.clone();
        fill_tcp_checksum(&mut frame);
        assert_eq!(frame, before);
        assert!(tcp_checksum_valid(&frame));
        let mut fragment = smoltcp_frame(b"x");
        fragment[14 + 6] = 0x20; // More Fragments
        fragment[14 + 16 + 4] ^= 0xff; // and a wrong checksum: not ours to judge
        assert!(tcp_checksum_valid(&fragment));
        assert!(tcp_checksum_valid(&[0u8; 10]));
    }
}
