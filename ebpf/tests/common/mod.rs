//! Helpers shared by the integration tests: the root/CI skip rule and network namespaces.
#![allow(dead_code)] // each test binary uses a different subset

pub mod frames;
pub mod xsk;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// True when the test may run. Without root (or the kernel feature) a developer's laptop skips
/// with a printed reason; with CI=true a skip is a failure, because CI has every feature.
pub fn kernel_features_available(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    let reason = format!("{test}: needs root (CAP_BPF, CAP_NET_ADMIN) to load eBPF programs");
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{reason}; CI=true, so this skip is a failure");
    }
    eprintln!("SKIPPED {reason}");
    false
}

/// Runs a command and panics with its output when it fails.
pub fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A name unique to this process and call, short enough for an interface name (15 chars).
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}{n}", std::process::id() % 0xffff)
}

/// A network namespace with one end of a veth pair in it; the other end stays in the test's
/// namespace. Removed (with both veth ends) on drop.
pub struct VethLab {
    pub namespace: String,
    pub host_if: String,
    pub peer_if: String,
}

impl VethLab {
    /// `host_cidr` on the host end, `peer_cidr` on the namespace end, both up.
    pub fn new(host_cidr: &str, peer_cidr: &str) -> VethLab {
        let tag = unique_name("");
        let lab = VethLab {
            namespace: format!("rt-ebpf-{tag}"),
            host_if: format!("rth{tag}"),
            peer_if: format!("rtp{tag}"),
        };
        run("ip", &["netns", "add", &lab.namespace]);
        run(
            "ip",
            &[
                "link",
                "add",
                &lab.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &lab.peer_if,
            ],
        );
        run(
            "ip",
            &["link", "set", &lab.peer_if, "netns", &lab.namespace],
        );
        run("ip", &["addr", "add", host_cidr, "dev", &lab.host_if]);
        run("ip", &["link", "set", &lab.host_if, "up"]);
        lab.in_namespace("ip", &["addr", "add", peer_cidr, "dev", &lab.peer_if]);
        lab.in_namespace("ip", &["link", "set", &lab.peer_if, "up"]);
        lab.in_namespace("ip", &["link", "set", "lo", "up"]);
        lab
    }

    /// Runs a command inside the namespace.
    pub fn in_namespace(&self, program: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.namespace, program];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Runs `f` on a thread that has entered the namespace (setns affects only that thread), so
    /// sockets created in `f` live in the namespace.
    pub fn run_in_namespace<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.namespace);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns with a valid namespace fd; it changes only this thread's namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }
}

impl Drop for VethLab {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end, which destroys the pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
    }
}

/// Three octets of a /24 no other running test uses: 10.(pid-derived).(per-call counter).
pub fn unique_subnet() -> [u8; 3] {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    [
        10,
        100 + (std::process::id() % 150) as u8,
        (n % 250) as u8 + 1,
    ]
}

/// The MAC address of an interface in the test's own namespace.
pub fn mac_address(interface: &str) -> [u8; 6] {
    let text =
        std::fs::read_to_string(format!("/sys/class/net/{interface}/address")).expect("read MAC");
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    mac
}

/// The kernel index of an interface in the test's own namespace.
pub fn if_index(interface: &str) -> u32 {
    let name = std::ffi::CString::new(interface).expect("name");
    // SAFETY: valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index > 0, "no interface {interface}");
    index
}
