//! The XDP program's frame classification, run in the kernel with BPF_PROG_TEST_RUN on hand-made
//! frames: what is the appliance's (decided as "steer", which without a socket on the queue means a
//! counted drop) and what passes to the kernel, including malformed and truncated frames.

mod common;

use std::net::Ipv4Addr;

use riptide_ebpf::{XdpAction, XdpConfig, XdpCounters, XdpProgram};

const APPLIANCE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const OTHER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PORTS: [u16; 2] = [8090, 3000];
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// IPv4 (with `option_words` 4-byte option words and the given fragment field) carrying a 20-byte
/// transport header whose first four bytes are the ports.
fn ipv4(
    protocol: u8,
    destination: Ipv4Addr,
    port: u16,
    option_words: u8,
    fragment: u16,
) -> Vec<u8> {
    let mut frame = ethernet(0x0800);
    let header_bytes = 20 + 4 * usize::from(option_words);
    let total = (header_bytes + 20) as u16;
    frame.push(0x40 | (5 + option_words));
    frame.push(0);
    frame.extend_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&[0, 1]);
    frame.extend_from_slice(&fragment.to_be_bytes());
    frame.extend_from_slice(&[64, protocol, 0, 0]);
    frame.extend_from_slice(&PEER.octets());
    frame.extend_from_slice(&destination.octets());
    frame.extend(std::iter::repeat_n(1u8, 4 * usize::from(option_words))); // NOP options
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&[0; 8]);
    frame.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    frame
}

fn tcp(destination: Ipv4Addr, port: u16) -> Vec<u8> {
    ipv4(IPPROTO_TCP, destination, port, 0, 0)
}

fn arp(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = ethernet(0x0806);
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 1]);
    frame.extend_from_slice(&sender.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame
}

fn vlan_tagged(mut frame: Vec<u8>) -> Vec<u8> {
    frame.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
    frame
}

/// (what, frame, is the appliance's)
fn cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut truncated_tcp = tcp(APPLIANCE, PORTS[0]);
    truncated_tcp.truncate(14 + 20 + 10);
    let mut truncated_arp = arp(PEER, APPLIANCE);
    truncated_arp.truncate(14 + 20);
    let mut short_ihl = tcp(APPLIANCE, PORTS[0]);
    short_ihl[14] = 0x44; // IHL 4: shorter than an IPv4 header
    vec![
        (
            "TCP to the appliance's first port",
            tcp(APPLIANCE, PORTS[0]),
            true,
        ),
        (
            "TCP to the appliance's second port",
            tcp(APPLIANCE, PORTS[1]),
            true,
        ),
        (
            "TCP to another port of the appliance",
            tcp(APPLIANCE, 22),
            false,
        ),
        ("TCP to another address", tcp(OTHER, PORTS[0]), false),
        (
            "UDP to the appliance's port",
            ipv4(IPPROTO_UDP, APPLIANCE, PORTS[0], 0, 0),
            false,
        ),
        (
            "TCP with IPv4 options",
            ipv4(IPPROTO_TCP, APPLIANCE, PORTS[0], 3, 0),
            true,
        ),
        (
            "TCP, non-first fragment",
            ipv4(IPPROTO_TCP, APPLIANCE, 0, 0, 0x0005),
            true,
        ),
        (
            "TCP, first fragment (MF) to another port",
            ipv4(IPPROTO_TCP, APPLIANCE, 22, 0, 0x2000),
            false,
        ),
        ("TCP header cut short", truncated_tcp, false),
        ("IPv4 header length below 20", short_ihl, false),
        ("Ethernet header only", ethernet(0x0800), false),
        ("ARP request for the appliance", arp(PEER, APPLIANCE), true),
        (
            "ARP announcement from the appliance",
            arp(APPLIANCE, PEER),
            true,
        ),
        ("ARP about another address", arp(PEER, OTHER), false),
        ("ARP cut short", truncated_arp, false),
        (
            "VLAN-tagged TCP to the appliance",
            vlan_tagged(tcp(APPLIANCE, PORTS[0])),
            false,
        ),
        (
            "IPv6",
            ethernet(0x86dd).into_iter().chain([0x60; 40]).collect(),
            false,
        ),
    ]
}

#[test]
fn program_steers_exactly_the_appliance_frames() {
    if !common::kernel_features_available("program_steers_exactly_the_appliance_frames") {
        return;
    }
    let config = XdpConfig {
        ip: APPLIANCE,
        ports: PORTS.to_vec(),
    };
    let mut program = XdpProgram::load(&config).expect("load");
    let mut expected = XdpCounters::default();
    for (what, frame, ours) in cases() {
        let run = program
            .run(&frame, 1)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // No AF_XDP socket is registered, so a frame the program claims is dropped and counted.
        let action = if ours {
            XdpAction::Drop
        } else {
            XdpAction::Pass
        };
        assert_eq!(run.action, action, "{what}");
        if ours {
            expected.dropped_no_socket += 1;
        } else {
            expected.passed += 1;
        }
        assert_eq!(
            program.maps().counters().expect("counters"),
            expected,
            "after: {what}"
        );
    }
}

#[test]
fn reconfigured_program_lets_the_old_address_pass() {
    if !common::kernel_features_available("reconfigured_program_lets_the_old_address_pass") {
        return;
    }
    let config = XdpConfig {
        ip: APPLIANCE,
        ports: PORTS.to_vec(),
    };
    let mut program = XdpProgram::load(&config).expect("load");
    // Reconfiguring to another address live makes the old address's frames pass.
    let moved = Ipv4Addr::new(198, 51, 100, 7);
    program
        .maps()
        .configure(&XdpConfig {
            ip: moved,
            ports: vec![1],
        })
        .expect("reconfigure");
    for (what, frame, _) in cases() {
        assert_eq!(
            program.run(&frame, 1).expect(what).action,
            XdpAction::Pass,
            "{what}"
        );
    }
    assert_eq!(
        program.run(&tcp(moved, 1), 1).expect("run").action,
        XdpAction::Drop
    );
    assert!(
        program.run(&[0u8; 4], 1).is_err(),
        "a frame shorter than Ethernet is the kernel's error"
    );
}
