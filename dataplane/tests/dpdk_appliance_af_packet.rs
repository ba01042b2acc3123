//! The appliance binary with `backend = "dpdk"` over `net_af_packet`: the official `iggy` SDK in
//! the lab's namespace runs the conformance suite's core scenarios over the kernel's TCP stack,
//! `riptide-bench --verify` loses nothing, stats.json counts the port's traffic, and restarts
//! (SIGTERM, then SIGKILL) keep every confirmed message. Then the same wire with jumbo frames:
//! an MTU above the interface's is refused, and at a 9000-byte MTU on both ends the SDK and the
//! bench run over 9000-byte frames.
//!
//! One appliance per test binary (and one #[test]): its phases run in turn.

#![cfg(feature = "dpdk")]

mod common;
mod dpdk_appliance;
mod dpdk_lab;

use dpdk_appliance::{refuses_an_mtu_above_its_interfaces, Attachment, DpdkAppliance};
use dpdk_lab::{prerequisites_met, VethLab};

/// Jumbo frames, as DPDK appliances on dedicated NICs run.
const JUMBO_MTU: u16 = 9000;

#[test]
fn dpdk_appliance_over_af_packet_serves_the_sdk_and_the_bench_and_keeps_data_across_restarts() {
    if !prerequisites_met("dpdk_appliance_over_af_packet") {
        return;
    }
    let lab = VethLab::create("pa", 45);
    let mut appliance = DpdkAppliance::start(&lab, Attachment::AfPacket);
    appliance.run_core_scenarios();
    appliance.run_bench_verified();
    appliance.check_port_stats();
    appliance.survives_a_lossy_wire();
    appliance.restarts_keep_everything();
    appliance.finish();

    refuses_an_mtu_above_its_interfaces(&lab, Attachment::AfPacket, JUMBO_MTU);
    lab.set_mtu(JUMBO_MTU);
    let jumbo = DpdkAppliance::start_with_mtu(&lab, Attachment::AfPacket, JUMBO_MTU);
    jumbo.negotiates_the_mss_of(JUMBO_MTU);
    jumbo.run_core_scenarios();
    jumbo.run_bench_verified();
    jumbo.finish();
}
