//! Hand-built Ethernet frames and an AF_PACKET sender, so a test sends exactly the frames it counts
//! (a kernel TCP socket would retransmit SYNs on its own schedule).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const SOURCE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

fn ethernet(destination: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&SOURCE_MAC);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP SYN from `source:source_port` to `destination:port`; `sequence` tags the frame.
pub fn tcp_syn(
    destination_mac: [u8; 6],
    source: Ipv4Addr,
    destination: Ipv4Addr,
    source_port: u16,
    port: u16,
    sequence: u32,
) -> Vec<u8> {
    let mut frame = ethernet(destination_mac, ETH_P_IP);
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&source.octets());
    ip.extend_from_slice(&destination.octets());
    let checksum = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&source_port.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&sequence.to_be_bytes());
    frame.extend_from_slice(&0u32.to_be_bytes()); // ack
    frame.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]); // data offset 5, SYN, window
    frame
}

/// A broadcast ARP request: who has `target`? tell `sender`.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = ethernet(BROADCAST_MAC, ETH_P_ARP);
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&SOURCE_MAC);
    frame.extend_from_slice(&sender.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame
}

/// Sends raw frames out of one interface (of the calling thread's network namespace).
pub struct PacketSender {
    fd: OwnedFd,
    if_index: i32,
}

impl PacketSender {
    pub fn new(interface: &str) -> io::Result<PacketSender> {
        let name = std::ffi::CString::new(interface).map_err(io::Error::other)?;
        // SAFETY: valid NUL-terminated name.
        let if_index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if if_index == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain socket(2); checked, then owned. Protocol 0: send only, receive nothing.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is fresh and owned from here on.
        Ok(PacketSender {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            if_index: if_index as i32,
        })
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = self.if_index;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame and address are valid for the stated sizes.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
