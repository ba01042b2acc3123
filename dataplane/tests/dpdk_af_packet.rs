//! The DPDK backend end to end over a veth pair through `net_af_packet`: an lcore running the
//! echo service answers ARP, ping and many concurrent TCP connections from the kernel's stack in
//! another namespace, and the port and lcore counters agree with what was sent.
//!
//! One #[test] per binary: DPDK's EAL can be initialised once per process.

#![cfg(feature = "dpdk")]

mod dpdk_lab;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use dpdk_lab::{lab_eal_config, prerequisites_met, VethLab};
use riptide_dataplane::dpdk::eal::Eal;
use riptide_dataplane::dpdk::lcore::echo::EchoWorker;
use riptide_dataplane::dpdk::lcore::{IdleBackoff, Lcore, LcoreConfig, LcoreStats};
use riptide_dataplane::dpdk::port::{Port, PortConfig, PortError};

const APPLIANCE_PORT: u16 = 8090;
const CONNECTIONS: usize = 24;
const LISTEN_BACKLOG: usize = 4;
const ECHO_BYTES_PER_CONNECTION: usize = 48 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

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
    let stop = Arc::new(AtomicBool::new(false));
    let (stats_sender, stats_receiver) = mpsc::channel::<Arc<LcoreStats>>();
    let (worker_sender, worker_receiver) = mpsc::channel::<EchoWorker>();
    let queue = port.queue(0).expect("queue 0");
    let lcore_stop = Arc::clone(&stop);
    let worker_lcore = eal_config.lcores[1];
    let join = eal
        .launch(worker_lcore, move || {
            let mut lcore = Lcore::new(queue, lcore_config, EchoWorker::default()).expect("lcore");
            stats_sender.send(lcore.stats()).expect("send stats");
            lcore.run(&lcore_stop);
            worker_sender
                .send(std::mem::take(lcore.worker()))
                .expect("send worker");
        })
        .expect("launch lcore");
    let stats = stats_receiver
        .recv_timeout(IO_TIMEOUT)
        .expect("lcore started");

    check_ping_and_arp(&lab, mac);
    let echoed_bytes = check_concurrent_echo(&lab);
    wait_for_closes(&stats, CONNECTIONS as u64);

    stop.store(true, Ordering::Relaxed);
    assert!(join.join(), "lcore loop panicked");
    let worker = worker_receiver
        .recv_timeout(IO_TIMEOUT)
        .expect("worker back");
    assert_eq!(worker.bytes_echoed, echoed_bytes as u64);
    assert_eq!(worker.connections_opened, CONNECTIONS as u64);
    assert_eq!(worker.connections_closed, CONNECTIONS as u64);
    check_stats(&port, &stats, echoed_bytes);
    drop(port);
    drop(eal);
}

/// ping from the namespace: smoltcp must answer ARP (the neighbour entry carries the port's MAC)
/// and ICMP echo for the appliance address.
fn check_ping_and_arp(lab: &VethLab, mac: [u8; 6]) {
    let target = lab.appliance_ip.to_string();
    let (ok, output) = lab.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", &target]);
    assert!(ok, "ping {target} through the DPDK port failed:\n{output}");
    assert!(
        output.contains("3 received"),
        "ping lost replies:\n{output}"
    );
    let (_, neighbours) = lab.exec("ip", &["neigh", "show", &target]);
    let mac_text = mac
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        neighbours.contains(&mac_text),
        "ARP entry for {target} is not the port MAC {mac_text}: {neighbours}"
    );
}

/// Opens CONNECTIONS connections one after the other (more than the listen backlog, so the
/// listener pool must be replenished), keeps them all open, then echoes a distinct pattern on
/// every one from its own thread. Returns the bytes echoed in total.
fn check_concurrent_echo(lab: &VethLab) -> usize {
    let address = SocketAddr::from((lab.appliance_ip, APPLIANCE_PORT));
    lab.in_namespace(|| {
        let streams: Vec<TcpStream> = (0..CONNECTIONS)
            .map(|index| {
                let stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)
                    .unwrap_or_else(|error| panic!("connection {index} to {address}: {error}"));
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                stream
            })
            .collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = streams
                .into_iter()
                .enumerate()
                .map(|(index, stream)| scope.spawn(move || echo_round_trip(index, stream)))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("client thread"))
                .sum()
        })
    })
}

fn echo_round_trip(index: usize, mut stream: TcpStream) -> usize {
    let pattern: Vec<u8> = (0..ECHO_BYTES_PER_CONNECTION)
        .map(|offset| (offset * 31 + index * 7) as u8)
        .collect();
    let mut writer = stream.try_clone().expect("clone stream");
    let sender = std::thread::spawn({
        let pattern = pattern.clone();
        move || writer.write_all(&pattern).expect("write")
    });
    let mut echoed = vec![0; pattern.len()];
    stream
        .read_exact(&mut echoed)
        .unwrap_or_else(|error| panic!("connection {index} read: {error}"));
    sender.join().expect("writer thread");
    assert!(echoed == pattern, "connection {index}: echoed bytes differ");
    stream.shutdown(std::net::Shutdown::Both).expect("shutdown");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "connection {index}: unexpected bytes after the echo"
    );
    pattern.len()
}

/// The lcore retires connections after the FIN exchange; wait until all are gone.
fn wait_for_closes(stats: &LcoreStats, expected: u64) {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let snapshot = stats.snapshot();
        if snapshot.connections_closed == expected && snapshot.connections_active == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connections not retired: {snapshot:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    assert_eq!(lcore.connections_accepted, CONNECTIONS as u64);
    assert_eq!(port_stats.queues.len(), 1);
    assert_eq!(port_stats.queues[0].rx_packets, port_stats.rx_packets);
    assert_eq!(port_stats.queues[0].tx_packets, port_stats.tx_packets);
    assert!(lcore.turns > 0);
}
