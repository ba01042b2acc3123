//! /steering's XDP view against riptide's real XDP program attached to a real veth interface,
//! as DPDK's af_xdp PMD attaches it in the dataplane process.

mod common;

use riptide_control::steering::read_xdp;
use riptide_ebpf::xdp::{XdpConfig, XdpModePreference, XdpSteering};
use std::net::Ipv4Addr;
use std::process::Command;

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deletes the veth pair even when the test fails.
struct Veth(String);

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", "dev", &self.0])
            .output();
    }
}

#[test]
fn counters_of_an_attached_program_are_read_from_another_process_view() {
    if !common::require(common::is_root(), "attaching XDP programs needs root") {
        return;
    }
    let tag = std::process::id() % 100_000;
    let (host, peer) = (format!("rtcx{tag}"), format!("rtcy{tag}"));
    ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
    let _cleanup = Veth(host.clone());
    ip(&["link", "set", "dev", &host, "up"]);
    ip(&["link", "set", "dev", &peer, "up"]);
    ip(&["addr", "add", "10.79.0.1/24", "dev", &peer]);

    let before = read_xdp(&host);
    assert!(
        before.counters.is_none() && before.problem.is_some(),
        "nothing attached yet: {before:?}"
    );

    let config = XdpConfig {
        ip: Ipv4Addr::new(10, 79, 0, 2),
        ports: vec![8090],
    };
    let steering = match XdpSteering::attach(&host, &config, XdpModePreference::GenericOnly) {
        Ok(steering) => steering,
        Err(e) => {
            common::require(false, &format!("cannot attach the XDP program here: {e}"));
            return;
        }
    };
    let attached = read_xdp(&host);
    let counters = attached
        .counters
        .unwrap_or_else(|| panic!("counters readable: {attached:?}"));
    assert_eq!(attached.steers.as_deref(), Some("10.79.0.2 ports [8090]"));

    // Frames from the peer cross the program: an ARP request for the appliance address.
    let _ = Command::new("ping")
        .args(["-c", "2", "-W", "1", "-I", &peer, "10.79.0.2"])
        .output();
    let later = read_xdp(&host).counters.expect("still attached");
    let total = |c: &riptide_control::steering::XdpCountersView| {
        c.steered_tcp + c.steered_arp + c.passed + c.dropped_no_socket + c.dropped_redirect_failed
    };
    assert!(
        total(&later) > total(&counters),
        "frames were counted: {counters:?} -> {later:?}"
    );
    drop(steering);
    assert!(read_xdp(&host).counters.is_none(), "detached");
}
