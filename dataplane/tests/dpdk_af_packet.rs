//! The DPDK backend end to end over a veth pair through `net_af_packet`: an lcore running the
//! echo service answers ARP, ping and many concurrent TCP connections from the kernel's stack in
//! another namespace, and the port and lcore counters agree with what was sent.
//!
//! One #[test] per binary: DPDK's EAL can be initialised once per process.

#![cfg(feature = "dpdk")]

mod dpdk_lab;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use dpdk_lab::{
    assert_arp_answered, echo_clients, lab_eal_config, prerequisites_met, wait_for_closes,
    EchoLcore, VethLab,
};
use riptide_dataplane::net::dpdk::eal::Eal;
use riptide_dataplane::net::dpdk::lcore::{IdleBackoff, LcoreConfig, LcoreStats};
use riptide_dataplane::net::dpdk::port::{Port, PortConfig, PortError};

const APPLIANCE_PORT: u16 = 8090;
const CONNECTIONS: usize = 24;
const LISTEN_BACKLOG: usize = 4;
const ECHO_BYTES_PER_CONNECTION: usize = 48 * 1024;

#[test]
fn dpdk_af_packet_lcore_serves_arp_ping_and_tcp() {
    if !prerequisites_met("dpdk_af_packet_lcore_serves_arp_ping_and_tcp") {
        return;
    }
    let lab = VethLab::create("ap", 41);
    let eal_config = lab_eal_config(format!("net_af_packet0,iface={}", lab.dataplane_iface));
    let eal = Eal::init(&eal_config).expect("EAL init");

    let missing = Port::open(&eal, "net_af_packet9", &PortConfig::default()).unwrap_err();
    assert!(matches!(missing, PortError::NotFound(_)), "{missing}");

    let port_config = PortConfig {
        mbufs_per_queue: 2047,
        ..PortConfig::default()
    };
    let port = Port::open(&eal, "net_af_packet0", &port_config).expect("open port");
    let link = port
        .wait_link_up(Duration::from_secs(3))
        .expect("link status");
    assert!(link.up, "veth link down: {link:?}");
    let mac = port.mac().expect("MAC");

    let mut lcore_config = LcoreConfig::new(lab.appliance_ip, lab.prefix_len, APPLIANCE_PORT);
    lcore_config.connections_max = CONNECTIONS + 8;
    lcore_config.listen_backlog = LISTEN_BACKLOG;
    lcore_config.idle = IdleBackoff {
        idle_turns_before_sleep: 16,
        sleep_us: 200,
    };
    let lcore = EchoLcore::launch(&eal, eal_config.lcores[1], &port, lcore_config);

    check_ping(&lab);
    assert_arp_answered(&lab, mac);
    let echoed_bytes = echo_clients(&lab, APPLIANCE_PORT, CONNECTIONS, ECHO_BYTES_PER_CONNECTION);
    wait_for_closes(&lcore.stats, CONNECTIONS as u64);

    // A connection still open when the lcore stops is reset and its handler handed back.
    let address = std::net::SocketAddr::from((lab.appliance_ip, APPLIANCE_PORT));
    let mut lingering = lab.in_namespace(|| TcpStream::connect(address).expect("connect"));
    lingering
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    wait_for_active(&lcore.stats, 1);
    let stats = std::sync::Arc::clone(&lcore.stats);
    let worker = lcore.stop();
    let mut byte = [0; 1];
    let reset = lingering
        .read(&mut byte)
        .expect_err("the stopped lcore resets connections");
    assert_eq!(reset.kind(), std::io::ErrorKind::ConnectionReset, "{reset}");
    assert_eq!(worker.bytes_echoed, echoed_bytes as u64);
    assert_eq!(worker.connections_opened, CONNECTIONS as u64 + 1);
    assert_eq!(worker.connections_closed, CONNECTIONS as u64 + 1);
    check_stats(&port, &stats, echoed_bytes);
    drop(port);
    drop(eal);
}

fn wait_for_active(stats: &LcoreStats, expected: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stats.snapshot().connections_active != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            stats.snapshot()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// ping from the namespace: smoltcp answers ICMP echo for the appliance address.
fn check_ping(lab: &VethLab) {
    let target = lab.appliance_ip.to_string();
    let (ok, output) = lab.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", &target]);
    assert!(ok, "ping {target} through the DPDK port failed:\n{output}");
    assert!(
        output.contains("3 received"),
        "ping lost replies:\n{output}"
    );
}
fn check_stats(port: &Port, stats: &LcoreStats, echoed_bytes: usize) {
    let port_stats = port.stats().expect("port stats");
    let lcore = stats.snapshot();
    println!("port stats: {port_stats:?}\nlcore stats: {lcore:?}");
    // Every frame the driver delivered went through the lcore, and everything it sent was counted.
    assert_eq!(lcore.rx_packets, port_stats.rx_packets);
    assert_eq!(lcore.rx_bytes, port_stats.rx_bytes);
    assert!(port_stats.tx_packets > 0 && port_stats.tx_packets <= lcore.tx_packets);
    assert_eq!(port_stats.tx_errors, 0);
    // Echo traffic both ways: at least the payload crossed the wire in each direction.
    assert!(lcore.rx_bytes > echoed_bytes as u64, "{lcore:?}");
    assert!(lcore.tx_bytes > echoed_bytes as u64, "{lcore:?}");
    assert_eq!(lcore.tx_dropped, 0);
    assert_eq!(lcore.connections_accepted, CONNECTIONS as u64 + 1);
    assert_eq!(port_stats.queues.len(), 1);
    assert_eq!(port_stats.queues[0].rx_packets, port_stats.rx_packets);
    assert_eq!(port_stats.queues[0].tx_packets, port_stats.tx_packets);
    assert!(lcore.turns > 0);
}
