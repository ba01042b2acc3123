//! Two polling lcores on one `net_af_packet` port (`qpairs=2`: the PMD's packet sockets share the
//! interface's frames through a fanout group): many `iggy` SDK clients are served, and both
//! lcores' counters show connections and packets (scenario in `dpdk_lab::lcores`).
//!
//! One #[test] per binary: DPDK's EAL can be initialised once per process.

#![cfg(feature = "dpdk")]

mod dpdk_lab;

use dpdk_lab::{prerequisites_met, VethLab};

#[test]
fn dpdk_two_lcores_serve_sdk_clients_over_af_packet() {
    if !prerequisites_met("dpdk_two_lcores_serve_sdk_clients_over_af_packet") {
        return;
    }
    let lab = VethLab::with_queues("lp", 45, 2);
    dpdk_lab::lcores::serve_sdk_clients_on_two_lcores(&lab, "net_af_packet");
}
