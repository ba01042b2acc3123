//! Start-up failures of the DPDK backend give errors that name the fix: a missing interface or
//! XDP object is caught before DPDK runs, an EAL that refuses its arguments reports DPDK's
//! reason, and a second EAL start in the same process is refused.
//!
//! Its own binary: a failed `rte_eal_init` leaves the process unable to start the EAL again.

#![cfg(feature = "dpdk")]

mod dpdk_lab;

use dpdk_lab::prerequisites_met;
use riptide_dataplane::net::dpdk::eal::{Eal, EalConfig, EalError};

fn config(vdev: Option<&str>) -> EalConfig {
    let prefix = format!("riptide-test-errors-{}", std::process::id());
    let mut config = EalConfig::no_huge(vec![0], 64, &prefix);
    config.vdevs.extend(vdev.map(str::to_string));
    config
}

#[test]
fn dpdk_eal_start_up_errors_name_the_fix() {
    if !prerequisites_met("dpdk_eal_start_up_errors_name_the_fix") {
        return;
    }
    let error = Eal::init(&config(Some("net_af_packet0,iface=rt-absent0"))).unwrap_err();
    assert!(
        matches!(error, EalError::InterfaceMissing { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("scripts/netns-lab.sh"),
        "{error}"
    );

    let error = Eal::init(&config(Some(
        "net_af_xdp0,iface=lo,xdp_prog=/absent/steer.o",
    )))
    .unwrap_err();
    assert!(
        matches!(error, EalError::XdpObjectMissing { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("riptide-ebpf"), "{error}");

    // An lcore this machine does not have: the EAL itself refuses.
    let mut no_such_lcore = config(None);
    no_such_lcore.lcores = vec![126];
    let error = Eal::init(&no_such_lcore).unwrap_err();
    let EalError::InitFailed { errno, ref message } = error else {
        panic!("expected InitFailed, got {error}");
    };
    assert!(errno != 0 && !message.is_empty(), "{error}");
    assert!(
        error.to_string().contains("scripts/hugepages.sh"),
        "{error}"
    );

    let error = Eal::init(&config(None)).unwrap_err();
    assert!(matches!(error, EalError::AlreadyInitialised), "{error}");
}
