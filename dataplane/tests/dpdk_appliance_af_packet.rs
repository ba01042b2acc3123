//! The appliance binary with `backend = "dpdk"` over `net_af_packet`: the official `iggy` SDK in
//! the lab's namespace runs the conformance suite's core scenarios over the kernel's TCP stack,
//! `riptide-bench --verify` loses nothing, stats.json counts the port's traffic, and restarts
//! (SIGTERM, then SIGKILL) keep every confirmed message.
//!
//! One appliance per test binary (and one #[test]): its phases run in turn.

#![cfg(feature = "dpdk")]

mod common;
mod dpdk_appliance;
mod dpdk_lab;

use dpdk_appliance::{Attachment, DpdkAppliance};
use dpdk_lab::{prerequisites_met, VethLab};

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
}
