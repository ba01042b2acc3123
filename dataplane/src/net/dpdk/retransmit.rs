//! Counts the TCP segments an lcore's smoltcp sends again. smoltcp keeps no such counter, so the
//! device watches its outgoing frames: per flow it remembers the highest sequence number sent, and
//! a segment that carries data (or SYN/FIN) starting below it is a retransmission.
//!
//! The flows live in a direct-mapped table: a flow that hashes onto another's slot takes it over.
//! Forgetting a flow can only make the count miss a retransmission of it (the next segment looks
//! like a first one), never count one that did not happen.

use super::constants::RETRANSMIT_FLOWS;
use super::wire::ipv4_tcp;

/// One connection as seen from the appliance: its local port and the peer's address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flow {
    local_port: u16,
    remote_ip: [u8; 4],
    remote_port: u16,
}

#[derive(Debug, Clone, Copy)]
struct FlowState {
    flow: Flow,
    /// One past the highest sequence number sent (SYN and FIN count one each).
    sent_end: u32,
}

/// The outgoing side of a TCP segment, as far as retransmission goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    flow: Flow,
    seq: u32,
    /// Sequence space the segment occupies: payload bytes plus one for SYN and one for FIN.
    len: u32,
    reset: bool,
}

pub struct RetransmitCounter {
    flows: Box<[Option<FlowState>]>,
    retransmits: u64,
}

impl Default for RetransmitCounter {
    fn default() -> Self {
        RetransmitCounter {
            flows: vec![None; RETRANSMIT_FLOWS].into_boxed_slice(),
            retransmits: 0,
        }
    }
}

impl RetransmitCounter {
    /// Segments sent again so far.
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }

    /// Looks at one outgoing Ethernet frame; anything but an IPv4 TCP segment is ignored.
    pub fn observe(&mut self, frame: &[u8]) {
        let Some(segment) = parse_segment(frame) else {
            return;
        };
        let slot = &mut self.flows[slot_of(&segment.flow)];
        if segment.reset {
            // The connection is over; a later one on the same ports starts afresh.
            if slot.is_some_and(|state| state.flow == segment.flow) {
                *slot = None;
            }
            return;
        }
        if segment.len == 0 {
            return; // A pure ACK or window update: never retransmitted as such.
        }
        let end = segment.seq.wrapping_add(segment.len);
        match slot {
            Some(state) if state.flow == segment.flow => {
                if sequence_before(segment.seq, state.sent_end) {
                    self.retransmits += 1;
                }
                if sequence_before(state.sent_end, end) {
                    state.sent_end = end;
                }
            }
            _ => {
                *slot = Some(FlowState {
                    flow: segment.flow,
                    sent_end: end,
                })
            }
        }
    }
}

/// `a` comes before `b` in TCP's wrapping sequence space (RFC 1982 style comparison).
fn sequence_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn slot_of(flow: &Flow) -> usize {
    let ip = u32::from_be_bytes(flow.remote_ip);
    let ports = (u32::from(flow.remote_port) << 16) | u32::from(flow.local_port);
    let mixed = (u64::from(ip) << 32 | u64::from(ports)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) as usize % RETRANSMIT_FLOWS
}

/// The outgoing IPv4 TCP segment of `frame`, if it is one.
fn parse_segment(frame: &[u8]) -> Option<Segment> {
    let found = ipv4_tcp(frame)?;
    let tcp = &found.tcp;
    Some(Segment {
        flow: Flow {
            local_port: tcp.src_port(),
            remote_ip: found.ip.dst_addr.octets(),
            remote_port: tcp.dst_port(),
        },
        seq: tcp.seq_number().0 as u32,
        // Payload bytes plus one for SYN and one for FIN.
        len: tcp.segment_len() as u32,
        reset: tcp.rst(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::wire::test_frames::{tcp, Segment};
    use super::*;
    use smoltcp::wire::{Ipv4Address, TcpControl};

    const REMOTE: [u8; 4] = [10, 0, 0, 2];

    /// An Ethernet + IPv4 + TCP frame from the appliance's port 8090 to REMOTE:`remote_port`.
    fn frame(remote_port: u16, seq: u32, control: TcpControl, payload_bytes: usize) -> Vec<u8> {
        tcp(&Segment {
            src: (Ipv4Address::new(10, 0, 0, 1), 8090),
            dst: (Ipv4Address::from(REMOTE), remote_port),
            seq,
            control,
            payload: &vec![0x5a; payload_bytes],
        })
    }

    fn count(frames: &[Vec<u8>]) -> u64 {
        let mut counter = RetransmitCounter::default();
        frames.iter().for_each(|frame| counter.observe(frame));
        counter.retransmits()
    }

    #[test]
    fn new_data_is_not_a_retransmission_and_resent_data_is() {
        let first = frame(40000, 1000, TcpControl::None, 1448);
        let second = frame(40000, 2448, TcpControl::None, 1448);
        assert_eq!(count(&[first.clone(), second.clone()]), 0);
        assert_eq!(count(&[first.clone(), second, first]), 1);
    }

    #[test]
    fn a_resent_syn_or_fin_counts_and_pure_acks_never_do() {
        let syn_ack = frame(40001, 77, TcpControl::Syn, 0);
        assert_eq!(count(&[syn_ack.clone(), syn_ack]), 1);
        let fin = frame(40001, 500, TcpControl::Fin, 0);
        assert_eq!(count(&[fin.clone(), fin]), 1);
        let ack = frame(40001, 500, TcpControl::None, 0);
        assert_eq!(count(&[ack.clone(), ack.clone(), ack]), 0);
    }

    #[test]
    fn flows_are_apart_and_sequence_numbers_wrap() {
        let near_end = frame(40002, u32::MAX - 99, TcpControl::None, 100);
        let wrapped = frame(40002, 0, TcpControl::None, 100);
        let other_flow_low_seq = frame(40003, 5, TcpControl::None, 100);
        assert_eq!(count(&[near_end, wrapped, other_flow_low_seq]), 0);
    }

    #[test]
    fn a_reset_forgets_the_flow_so_a_new_connection_on_its_ports_starts_afresh() {
        let data = frame(40004, 9000, TcpControl::None, 100);
        let reset = frame(40004, 9100, TcpControl::Rst, 0);
        let new_connection = frame(40004, 10, TcpControl::Syn, 0);
        assert_eq!(count(&[data, reset, new_connection]), 0);
    }

    #[test]
    fn anything_but_ipv4_tcp_and_truncated_frames_are_ignored() {
        let mut arp = frame(40005, 1, TcpControl::None, 10);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let whole = frame(40005, 1, TcpControl::None, 10);
        let truncated = whole[..30].to_vec();
        assert_eq!(count(&[arp.clone(), arp, truncated.clone(), truncated]), 0);
        assert_eq!(count(&[Vec::new()]), 0);
    }
}
