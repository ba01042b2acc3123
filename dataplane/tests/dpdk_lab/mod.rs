//! The veth lab of the DPDK tests: a network namespace holding one end of a veth pair (the
//! "client side", using the kernel's TCP stack), the other end left in the test's namespace for
//! the DPDK port. Everything is created with unique names and removed on drop.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use riptide_config::Config;
use riptide_dataplane::app::server::Servers;
use riptide_dataplane::net::dpdk::eal::{Eal, EalConfig, LcoreJoin};
use riptide_dataplane::net::dpdk::lcore::echo::EchoService;
use riptide_dataplane::net::dpdk::lcore::{Lcore, LcoreConfig, LcoreStats};
use riptide_dataplane::net::dpdk::port::Port;
use riptide_dataplane::session::WorkerContext;

pub mod lcores;

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the test can run here. In CI (`CI=true`) a missing prerequisite fails the test;
/// elsewhere the test prints why it skips and passes.
pub fn prerequisites_met(test: &str) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces, veth, AF_PACKET)");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        missing.push("iproute2's `ip`");
    }
    if core_affinity::get_core_ids().map_or(0, |cores| cores.len()) < 2 {
        missing.push("two CPUs (main lcore + polling lcore)");
    }
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join(", ");
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{test}: CI=true but this machine lacks: {reason}");
    }
    eprintln!("SKIPPED {test}: needs {reason}");
    false
}

/// Runs a command, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {program} {args:?}: {error}");
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub struct VethLab {
    pub namespace: String,
    /// The end the DPDK port attaches to (in the test's namespace, no address).
    pub dataplane_iface: String,
    /// The end inside the namespace, with `client_ip`.
    pub client_iface: String,
    pub client_ip: Ipv4Addr,
    pub appliance_ip: Ipv4Addr,
    pub prefix_len: u8,
}

impl VethLab {
    /// `tag` keeps the names of different test binaries apart (interface names have 15 bytes).
    pub fn create(tag: &str, subnet: u8) -> VethLab {
        VethLab::with_queues(tag, subnet, 1)
    }

    /// A lab whose veth ends have `queues` rx and tx queues each (one per polling lcore): the
    /// client's kernel spreads its flows over the transmit queues, and a veth delivers a frame
    /// sent on queue i to receive queue i of the peer.
    pub fn with_queues(tag: &str, subnet: u8, queues: usize) -> VethLab {
        let pid = std::process::id() % 100_000;
        let lab = VethLab {
            namespace: format!("riptide-{tag}-{pid}"),
            dataplane_iface: format!("rt{tag}{pid}d"),
            client_iface: format!("rt{tag}{pid}c"),
            client_ip: Ipv4Addr::new(10, 213, subnet, 1),
            appliance_ip: Ipv4Addr::new(10, 213, subnet, 2),
            prefix_len: 24,
        };
        assert!(lab.dataplane_iface.len() <= 15, "interface name too long");
        // Leftovers of a crashed earlier run with the same pid would make `add` fail.
        lab.remove();
        let ns = lab.namespace.as_str();
        run("ip", &["netns", "add", ns]);
        let (dataplane, client) = (lab.dataplane_iface.as_str(), lab.client_iface.as_str());
        let queues = queues.to_string();
        let queues = queues.as_str();
        let per_end = ["numtxqueues", queues, "numrxqueues", queues];
        let mut add = vec!["link", "add", dataplane];
        add.extend(per_end);
        add.extend(["type", "veth", "peer", "name", client]);
        add.extend(per_end);
        run("ip", &add);
        run("ip", &["link", "set", client, "netns", ns]);
        run("ip", &["link", "set", dataplane, "up"]);
        let client_cidr = format!("{}/{}", lab.client_ip, lab.prefix_len);
        run(
            "ip",
            &["-n", ns, "addr", "add", &client_cidr, "dev", client],
        );
        run("ip", &["-n", ns, "link", "set", client, "up"]);
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        // The kernel leaves TCP checksums to the "hardware" on veth (CHECKSUM_PARTIAL); a
        // userspace stack reading the frames off the peer would see them unfinished. A real
        // NIC fills them in; here the client computes them in software.
        run(
            "ip",
            &["netns", "exec", ns, "ethtool", "-K", client, "tx", "off"],
        );
        lab
    }

    /// Gives the dataplane end the host's own address `<subnet>.<last_octet>` (the kernel's,
    /// beside the appliance's), as a host shares its NIC with an af_xdp appliance.
    pub fn add_host_address(&self, last_octet: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.appliance_ip.octets();
        let host_ip = Ipv4Addr::new(a, b, c, last_octet);
        let host_cidr = format!("{host_ip}/{}", self.prefix_len);
        run(
            "ip",
            &["addr", "add", &host_cidr, "dev", &self.dataplane_iface],
        );
        host_ip
    }

    /// Sets both veth ends to `mtu` (jumbo frames need both: a veth drops a frame larger than
    /// the receiving end's MTU).
    pub fn set_mtu(&self, mtu: u16) {
        let mtu = mtu.to_string();
        run(
            "ip",
            &["link", "set", "dev", &self.dataplane_iface, "mtu", &mtu],
        );
        let ns = self.namespace.as_str();
        run(
            "ip",
            &[
                "-n",
                ns,
                "link",
                "set",
                "dev",
                &self.client_iface,
                "mtu",
                &mtu,
            ],
        );
    }

    fn remove(&self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.dataplane_iface])
            .output();
    }

    /// Runs `work` on a thread that has entered the lab's namespace (setns is per thread).
    pub fn in_namespace<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.namespace);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = File::open(&path).expect("open the namespace");
                    // SAFETY: setns on a valid namespace fd; it only changes this thread.
                    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(result, 0, "setns: {}", std::io::Error::last_os_error());
                    work()
                })
                .join()
                .expect("namespace thread panicked")
        })
    }

    /// Runs a command inside the namespace and returns (success, stdout + stderr).
    pub fn exec(&self, program: &str, args: &[&str]) -> (bool, String) {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.namespace, program])
            .args(args)
            .output()
            .expect("run ip netns exec");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }
}

impl Drop for VethLab {
    fn drop(&mut self) {
        self.remove();
    }
}

/// EAL configuration for a lab test: `--no-huge`, two lcores of this machine, unique prefix.
pub fn lab_eal_config(vdev: String) -> EalConfig {
    let cores = core_affinity::get_core_ids().expect("CPU list");
    let lcores = cores.iter().take(2).map(|core| core.id as u32).collect();
    let prefix = format!("riptide-test-{}", std::process::id());
    let mut config = EalConfig::no_huge(lcores, 256, &prefix);
    config.vdevs.push(vdev);
    config
}

/// An lcore running the echo service on queue 0 of a port.
pub struct EchoLcore {
    stop: Arc<AtomicBool>,
    join: Option<LcoreJoin>,
    pub stats: Arc<LcoreStats>,
    workers: mpsc::Receiver<EchoService>,
}

impl EchoLcore {
    pub fn launch(eal: &Eal, lcore_id: u32, port: &Port, config: LcoreConfig) -> EchoLcore {
        let stop = Arc::new(AtomicBool::new(false));
        let (stats_sender, stats_receiver) = mpsc::channel::<Arc<LcoreStats>>();
        let (worker_sender, workers) = mpsc::channel::<EchoService>();
        let queue = port.queue(0).expect("queue 0");
        let lcore_stop = Arc::clone(&stop);
        let join = eal
            .launch(lcore_id, move || {
                let mut lcore = Lcore::new(queue, config, EchoService::default()).expect("lcore");
                stats_sender.send(lcore.stats()).expect("send stats");
                lcore.run(&lcore_stop);
                worker_sender
                    .send(std::mem::take(lcore.service()))
                    .expect("send worker");
            })
            .expect("launch lcore");
        let stats = stats_receiver
            .recv_timeout(IO_TIMEOUT)
            .expect("lcore started");
        EchoLcore {
            stop,
            join: Some(join),
            stats,
            workers,
        }
    }

    /// Stops the loop and returns its worker (with the echo counters).
    pub fn stop(mut self) -> EchoService {
        self.stop.store(true, Ordering::Relaxed);
        let join = self.join.take().expect("joined once");
        assert!(join.join(), "lcore loop panicked");
        self.workers.recv_timeout(IO_TIMEOUT).expect("worker back")
    }
}

/// Opens `connections` connections one after the other (so the listener pool must be
/// replenished when they outnumber the backlog), keeps them all open, then echoes a distinct
/// pattern of `bytes_per_connection` on every one from its own thread. Returns the bytes echoed.
pub fn echo_clients(
    lab: &VethLab,
    port: u16,
    connections: usize,
    bytes_per_connection: usize,
) -> usize {
    let address = SocketAddr::from((lab.appliance_ip, port));
    lab.in_namespace(|| {
        let streams: Vec<TcpStream> = (0..connections)
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
                .map(|(index, stream)| {
                    scope.spawn(move || echo_round_trip(index, stream, bytes_per_connection))
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("client thread"))
                .sum()
        })
    })
}

fn echo_round_trip(index: usize, mut stream: TcpStream, bytes: usize) -> usize {
    let pattern: Vec<u8> = (0..bytes)
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

/// The lcore retires connections after the FIN exchange; wait until `expected` are gone.
pub fn wait_for_closes(stats: &LcoreStats, expected: u64) {
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

/// The neighbour entry the namespace learnt for the appliance address must be the port's MAC:
/// smoltcp answered the ARP request.
pub fn assert_arp_answered(lab: &VethLab, mac: [u8; 6]) {
    let target = lab.appliance_ip.to_string();
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

/// ssh-like traffic: a kernel listener on the host's own address of the shared interface is
/// reached from the namespace while the XDP program is attached.
pub fn check_kernel_still_serves_the_host(lab: &VethLab, host_ip: Ipv4Addr, host_port: u16) {
    let listener = TcpListener::bind((host_ip, host_port)).expect("kernel listener");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("kernel accept");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut greeting = [0; 5];
        stream.read_exact(&mut greeting).expect("kernel read");
        stream.write_all(b"kernel").expect("kernel write");
        greeting
    });
    let reply = lab.in_namespace(|| {
        let address = SocketAddr::from((host_ip, host_port));
        let mut stream = TcpStream::connect_timeout(&address, IO_TIMEOUT).expect("reach the host");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.write_all(b"hello").expect("write to the host");
        let mut reply = [0; 6];
        stream.read_exact(&mut reply).expect("read from the host");
        reply
    });
    assert_eq!(&reply, b"kernel");
    assert_eq!(&server.join().expect("kernel side"), b"hello");
}

/// The servers of a fresh appliance (metadata service and one storage shard, as the dataplane
/// binary starts them) on `data_dir`, and the worker contexts of `workers` polling lcores to
/// start a backend with. Stop the servers after the backend.
pub fn start_servers(data_dir: &std::path::Path, workers: usize) -> (Servers, Vec<WorkerContext>) {
    let mut config = Config::load(None).expect("default config");
    config.system.path = data_dir.to_path_buf();
    config.dataplane.storage_shards = 1;
    let (servers, links) = Servers::start(&config, workers).expect("servers");
    let contexts = links
        .into_iter()
        .enumerate()
        .map(|(index, links)| {
            let anchor = (Instant::now(), riptide_dataplane::clock::now_us());
            WorkerContext::new(index, Arc::clone(&servers.shared), links, anchor)
        })
        .collect();
    (servers, contexts)
}
