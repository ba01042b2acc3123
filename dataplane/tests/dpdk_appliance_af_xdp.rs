//! The appliance binary with `backend = "dpdk"` over `net_af_xdp` and riptide's XDP program: the
//! official `iggy` SDK in the lab's namespace runs the conformance suite's core scenarios over the
//! kernel's TCP stack, `riptide-bench --verify` loses nothing, ssh-like TCP to the host's own
//! address on the same interface still reaches the kernel, stats.json counts the port's traffic,
//! and restarts (SIGTERM, then SIGKILL) keep every confirmed message.
//!
//! One appliance per test binary (and one #[test]): its phases run in turn.

#![cfg(feature = "dpdk")]

mod common;
mod dpdk_appliance;
mod dpdk_lab;

use dpdk_appliance::{Attachment, DpdkAppliance};
use dpdk_lab::{check_kernel_still_serves_the_host, prerequisites_met, VethLab};
use riptide_ebpf::XdpMaps;

/// The ssh-like kernel listener on the host's own address.
const HOST_PORT: u16 = 8022;

#[test]
fn dpdk_appliance_over_af_xdp_serves_the_sdk_and_the_bench_and_keeps_data_across_restarts() {
    if !prerequisites_met("dpdk_appliance_over_af_xdp") {
        return;
    }
    let lab = VethLab::create("xa", 44);
    let host_ip = lab.add_host_address(3);
    let mut appliance = DpdkAppliance::start(&lab, Attachment::AfXdp);
    appliance.run_core_scenarios();
    appliance.run_bench_verified();
    check_kernel_still_serves_the_host(&lab, host_ip, HOST_PORT);
    check_xdp_counters(&lab);
    appliance.check_port_stats();
    appliance.survives_a_lossy_wire();
    appliance.restarts_keep_everything();
    // The program attached again after the restarts steers and passes as before.
    check_kernel_still_serves_the_host(&lab, host_ip, HOST_PORT);
    check_xdp_counters(&lab);
    appliance.finish();
}

/// riptide's program is the one attached: it steered the appliance's TCP and ARP to the AF_XDP
/// socket, passed the host's traffic to the kernel, and dropped nothing.
fn check_xdp_counters(lab: &VethLab) {
    let maps = XdpMaps::open_attached(&lab.dataplane_iface).expect("riptide's XDP program");
    let counters = maps.counters().expect("XDP counters");
    println!("xdp: {counters}");
    assert!(
        counters.steered_tcp > 0 && counters.steered_arp > 0,
        "{counters}"
    );
    assert!(counters.passed > 0, "{counters}");
    assert_eq!(
        counters.dropped_no_socket + counters.dropped_redirect_failed,
        0,
        "{counters}"
    );
}
