//! XDP steering on a real veth pair: appliance frames (TCP to its address and port, ARP about its
//! address) arrive on an AF_XDP socket; a TCP connection to the host's own address and a ping are
//! answered by the kernel at the same time; the counters agree with what was sent.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use common::frames::{self, PacketSender};
use common::xsk::XskReceiver;
use common::VethLab;
use riptide_ebpf::netlink::{query_xdp, XdpAttachMode};
use riptide_ebpf::{XdpConfig, XdpMaps, XdpModePreference, XdpSteering};

const APPLIANCE_PORT: u16 = 8090;
const OTHER_PORT: u16 = 9999;
const SYNS_BEFORE_SOCKET: u32 = 3;
const SYNS: u32 = 5;
const ARPS: u32 = 2;
const SYNS_OTHER_PORT: u32 = 2;
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

struct Addresses {
    host: Ipv4Addr,
    peer: Ipv4Addr,
    appliance: Ipv4Addr,
}

fn lab() -> (VethLab, Addresses) {
    let [a, b, c] = common::unique_subnet();
    let addresses = Addresses {
        host: Ipv4Addr::new(a, b, c, 1),
        peer: Ipv4Addr::new(a, b, c, 2),
        appliance: Ipv4Addr::new(a, b, c, 100),
    };
    let lab = VethLab::new(
        &format!("{}/24", addresses.host),
        &format!("{}/24", addresses.peer),
    );
    (lab, addresses)
}

/// Sends `count` SYNs to the appliance `port` from the namespace, tagged with sequence numbers
/// starting at `first_sequence`.
fn send_syns(lab: &VethLab, addresses: &Addresses, port: u16, first_sequence: u32, count: u32) {
    let peer_if = lab.peer_if.clone();
    let host_mac = common::mac_address(&lab.host_if);
    let (peer, appliance) = (addresses.peer, addresses.appliance);
    lab.run_in_namespace(move || {
        let sender = PacketSender::new(&peer_if).expect("AF_PACKET socket in the namespace");
        for i in 0..count {
            let frame = frames::tcp_syn(
                host_mac,
                peer,
                appliance,
                40000 + i as u16,
                port,
                first_sequence + i,
            );
            sender.send(&frame).expect("send SYN");
        }
    });
}

fn send_arps(lab: &VethLab, addresses: &Addresses, count: u32) {
    let peer_if = lab.peer_if.clone();
    let (peer, appliance) = (addresses.peer, addresses.appliance);
    lab.run_in_namespace(move || {
        let sender = PacketSender::new(&peer_if).expect("AF_PACKET socket in the namespace");
        for _ in 0..count {
            sender
                .send(&frames::arp_request(peer, appliance))
                .expect("send ARP");
        }
    });
}

/// From the namespace: a TCP exchange with the host's own address, answered by the host kernel.
fn kernel_tcp_round_trip(lab: &VethLab, host: Ipv4Addr) {
    let listener = TcpListener::bind(SocketAddrV4::new(host, 0)).expect("host listener");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buffer = [0u8; 4];
        stream.read_exact(&mut buffer).expect("read");
        stream.write_all(&buffer).expect("echo");
    });
    let reply = lab.run_in_namespace(move || {
        let mut stream = TcpStream::connect_timeout(
            &SocketAddrV4::new(host, port).into(),
            Duration::from_secs(5),
        )
        .expect("TCP to the host's own address must reach the kernel");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.write_all(b"ping").expect("write");
        let mut buffer = [0u8; 4];
        stream
            .read_exact(&mut buffer)
            .expect("echo from the host kernel");
        buffer
    });
    server.join().expect("server thread");
    assert_eq!(&reply, b"ping");
}

fn assert_appliance_frames(frames: &[Vec<u8>], addresses: &Addresses) {
    let mut sequences = Vec::new();
    let mut arps = 0;
    for frame in frames {
        match u16::from_be_bytes([frame[12], frame[13]]) {
            frames::ETH_P_IP => {
                assert_eq!(
                    &frame[30..34],
                    &addresses.appliance.octets(),
                    "TCP to another address was steered"
                );
                assert_eq!(
                    u16::from_be_bytes([frame[36], frame[37]]),
                    APPLIANCE_PORT,
                    "another port was steered"
                );
                sequences.push(u32::from_be_bytes([
                    frame[38], frame[39], frame[40], frame[41],
                ]));
            }
            frames::ETH_P_ARP => {
                assert_eq!(
                    &frame[38..42],
                    &addresses.appliance.octets(),
                    "ARP about another address was steered"
                );
                arps += 1;
            }
            other => panic!("unexpected ethertype {other:#06x} on the AF_XDP socket"),
        }
    }
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (1000..1000 + SYNS).collect::<Vec<_>>(),
        "SYNs on the AF_XDP socket"
    );
    assert_eq!(arps, ARPS, "ARPs on the AF_XDP socket");
}

/// Attaches to the host end of the veth pair; veth has native XDP, so no fallback may happen.
fn attach_natively(lab: &VethLab, config: &XdpConfig) -> XdpSteering {
    let steering = XdpSteering::attach(&lab.host_if, config, XdpModePreference::NativeThenGeneric)
        .expect("attach XDP");
    println!(
        "attached to {} in {} mode (fallback: {:?})",
        lab.host_if,
        steering.mode(),
        steering.fallback_reason()
    );
    // veth has native XDP, so no fallback here.
    assert_eq!(steering.mode(), XdpAttachMode::Native);
    assert_eq!(steering.fallback_reason(), None);
    let if_index = common::if_index(&lab.host_if);
    let attached = query_xdp(if_index)
        .expect("query")
        .expect("program attached");
    assert_eq!(attached.program_id, steering.program_id());

    steering
}

#[test]
fn xdp_steers_appliance_frames_to_af_xdp_and_passes_the_rest() {
    if !common::kernel_features_available(
        "xdp_steers_appliance_frames_to_af_xdp_and_passes_the_rest",
    ) {
        return;
    }
    let (lab, addresses) = lab();
    let config = XdpConfig {
        ip: addresses.appliance,
        ports: vec![APPLIANCE_PORT],
    };
    let if_index = common::if_index(&lab.host_if);
    let mut steering = attach_natively(&lab, &config);
    // No socket on queue 0 yet: appliance frames are dropped and counted as such.
    send_syns(&lab, &addresses, APPLIANCE_PORT, 0, SYNS_BEFORE_SOCKET);
    let receiver = XskReceiver::bind(if_index, 0).expect("AF_XDP socket on queue 0");
    steering
        .register_socket(0, receiver.fd())
        .expect("register socket");

    send_syns(&lab, &addresses, APPLIANCE_PORT, 1000, SYNS);
    send_arps(&lab, &addresses, ARPS);
    send_syns(&lab, &addresses, OTHER_PORT, 2000, SYNS_OTHER_PORT);
    kernel_tcp_round_trip(&lab, addresses.host);
    lab.in_namespace("ping", &["-c", "2", "-W", "5", &addresses.host.to_string()]);

    let received = receiver.receive((SYNS + ARPS) as usize, RECEIVE_TIMEOUT);
    assert_appliance_frames(&received, &addresses);
    // Nothing more trickles in: the other-port SYNs, the TCP exchange and the ping went to the kernel.
    assert!(
        receiver.receive(1, Duration::from_millis(200)).is_empty(),
        "extra frames on the AF_XDP socket"
    );

    let counters = steering.counters().expect("counters");
    println!("counters: {counters}");
    assert_eq!(counters.steered_tcp, u64::from(SYNS));
    assert_eq!(counters.steered_arp, u64::from(ARPS));
    assert_eq!(counters.dropped_no_socket, u64::from(SYNS_BEFORE_SOCKET));
    assert_eq!(counters.dropped_redirect_failed, 0);
    // Other-port SYNs, 2 echo requests, and at least 4 TCP segments of the exchange.
    assert!(
        counters.passed >= u64::from(SYNS_OTHER_PORT) + 2 + 4,
        "passed {}",
        counters.passed
    );

    // The same maps are reachable through the interface, as the dataplane does after DPDK's PMD
    // loaded the object itself.
    let maps = XdpMaps::open_attached(&lab.host_if).expect("open attached maps");
    assert_eq!(maps.config().expect("config"), Some(config));
    assert_eq!(
        maps.counters().expect("counters").steered_tcp,
        u64::from(SYNS)
    );

    steering.detach().expect("detach");
    assert_eq!(
        query_xdp(if_index).expect("query"),
        None,
        "program still attached after detach"
    );
}
