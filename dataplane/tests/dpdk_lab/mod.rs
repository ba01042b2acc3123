//! The veth lab of the DPDK tests: a network namespace holding one end of a veth pair (the
//! "client side", using the kernel's TCP stack), the other end left in the test's namespace for
//! the DPDK port. Everything is created with unique names and removed on drop.

#![allow(dead_code)]

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

use riptide_dataplane::dpdk::eal::EalConfig;

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
        run(
            "ip",
            &[
                "link", "add", dataplane, "type", "veth", "peer", "name", client,
            ],
        );
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
