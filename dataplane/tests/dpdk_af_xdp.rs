//! The DPDK backend over a veth pair through `net_af_xdp` with riptide's own XDP steering
//! program (riptide-ebpf's `xdp_steer.o`): the appliance's TCP port and its ARP go to the AF_XDP
//! socket and are answered by the lcore's smoltcp, while TCP to the host's own address on the same
//! interface still reaches the kernel.
//!
//! One #[test] per binary: DPDK's EAL can be initialised once per process.

#![cfg(feature = "dpdk")]

mod dpdk_lab;

use dpdk_lab::{
    assert_arp_answered, check_kernel_still_serves_the_host, echo_clients, lab_eal_config,
    prerequisites_met, wait_for_closes, EchoLcore, VethLab,
};
use riptide_dataplane::net::dpdk::eal::{Eal, EalConfig};
use riptide_dataplane::net::dpdk::lcore::{IdleBackoff, LcoreConfig, LcoreStats};
use riptide_dataplane::net::dpdk::port::{Port, PortConfig};
use riptide_ebpf::{write_xdp_object, XdpConfig, XdpMaps};

const APPLIANCE_PORT: u16 = 8090;
const HOST_PORT: u16 = 8022;
const CONNECTIONS: usize = 8;
const ECHO_BYTES_PER_CONNECTION: usize = 32 * 1024;

#[test]
fn dpdk_af_xdp_steers_appliance_traffic_and_leaves_the_rest_to_the_kernel() {
    if !prerequisites_met("dpdk_af_xdp_steers_appliance_traffic_and_leaves_the_rest_to_the_kernel")
    {
        return;
    }
    let lab = VethLab::create("ax", 42);
    // The host's own address on the shared interface (the appliance's is another one).
    let host_ip = lab.add_host_address(3);
    let object_dir = tempfile::tempdir().expect("temp dir");
    let (eal_config, eal, port, maps) = start_af_xdp(&lab, object_dir.path());
    let mac = port.mac().expect("MAC");

    let mut lcore_config = LcoreConfig::new(lab.appliance_ip, lab.prefix_len, APPLIANCE_PORT);
    lcore_config.connections_max = CONNECTIONS + 4;
    lcore_config.listen_backlog = 4;
    lcore_config.idle = IdleBackoff {
        idle_turns_before_sleep: 16,
        sleep_us: 200,
    };
    let lcore = EchoLcore::launch(&eal, eal_config.lcores[1], &port, lcore_config);

    let echoed_bytes = echo_clients(&lab, APPLIANCE_PORT, CONNECTIONS, ECHO_BYTES_PER_CONNECTION);
    assert_arp_answered(&lab, mac);
    check_kernel_still_serves_the_host(&lab, host_ip, HOST_PORT);
    wait_for_closes(&lcore.stats, CONNECTIONS as u64);

    let stats = std::sync::Arc::clone(&lcore.stats);
    let worker = lcore.stop();
    assert_eq!(worker.bytes_echoed, echoed_bytes as u64);
    check_counters(&maps, &port, &stats);
    drop(maps);
    drop(port);
    drop(eal);
}

/// EAL and port over net_af_xdp with riptide's XDP object, configured to steer the appliance.
fn start_af_xdp(lab: &VethLab, object_dir: &std::path::Path) -> (EalConfig, Eal, Port, XdpMaps) {
    let object = write_xdp_object(object_dir).expect("write the XDP object");
    let vdev = format!(
        "net_af_xdp0,iface={},start_queue=0,queue_count=1,xdp_prog={}",
        lab.dataplane_iface,
        object.display()
    );
    let eal_config = lab_eal_config(vdev);
    let eal = Eal::init(&eal_config).expect("EAL init");
    let port_config = PortConfig {
        mbufs_per_queue: 4095,
        ..PortConfig::default()
    };
    let port = Port::open(&eal, "net_af_xdp0", &port_config).expect("open port");
    // The PMD loaded the program and bound its socket in xsks_map; tell the program what to steer.
    let mut maps = XdpMaps::open_attached(&lab.dataplane_iface).expect("riptide's XDP maps");
    let steer = XdpConfig {
        ip: lab.appliance_ip,
        ports: vec![APPLIANCE_PORT],
    };
    maps.configure(&steer).expect("configure steering");
    (eal_config, eal, port, maps)
}

/// Everything the program steered reached the lcore, nothing else did, and nothing was dropped.
fn check_counters(maps: &XdpMaps, port: &Port, stats: &LcoreStats) {
    let counters = maps.counters().expect("XDP counters");
    let port_stats = port.stats().expect("port stats");
    let lcore_stats = stats.snapshot();
    println!("xdp: {counters}\nport: {port_stats:?}\nlcore: {lcore_stats:?}");
    assert!(
        counters.steered_tcp > 0 && counters.steered_arp > 0,
        "{counters}"
    );
    assert!(
        counters.passed > 0,
        "kernel traffic was not passed: {counters}"
    );
    assert_eq!(
        counters.dropped_no_socket + counters.dropped_redirect_failed,
        0,
        "{counters}"
    );
    assert_eq!(
        lcore_stats.rx_packets,
        counters.steered_tcp + counters.steered_arp
    );
    assert_eq!(lcore_stats.rx_packets, port_stats.rx_packets);
    assert!(port_stats.tx_packets > 0 && port_stats.tx_packets <= lcore_stats.tx_packets);
}
