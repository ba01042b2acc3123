//! What /steering shows: the policy and state from the configuration and the stats snapshot, and,
//! for the DPDK backend's `net_af_xdp` devices, the live counters of riptide's XDP steering program
//! read from the kernel through its maps (the program is attached by DPDK's PMD in the dataplane
//! process; the maps are reachable from here by program id).

use riptide_dataplane::config::{Backend, Config};
use serde::Serialize;

/// The XDP program's state on one interface.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct XdpView {
    pub interface: String,
    /// Present when riptide's program is attached and its maps could be read.
    pub counters: Option<XdpCountersView>,
    /// The appliance address and ports the program steers (None until configured).
    pub steers: Option<String>,
    /// Why there are no counters.
    pub problem: Option<String>,
}

/// [`riptide_ebpf::xdp::XdpCounters`] as JSON.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct XdpCountersView {
    pub steered_tcp: u64,
    pub steered_arp: u64,
    pub passed: u64,
    pub dropped_no_socket: u64,
    pub dropped_redirect_failed: u64,
}

/// Interfaces that carry riptide's XDP program: the `iface=` of each `net_af_xdp` device of the
/// DPDK backend.
pub fn xdp_interfaces(config: &Config) -> Vec<String> {
    if config.dataplane.backend != Backend::Dpdk {
        return Vec::new();
    }
    config
        .dpdk
        .vdevs
        .iter()
        .filter(|vdev| vdev.starts_with("net_af_xdp"))
        .filter_map(|vdev| {
            vdev.split(',')
                .skip(1)
                .find_map(|arg| arg.strip_prefix("iface="))
                .map(str::to_string)
        })
        .collect()
}

/// Reads the XDP program's configuration and counters on `interface`.
pub fn read_xdp(interface: &str) -> XdpView {
    let mut view = XdpView {
        interface: interface.to_string(),
        counters: None,
        steers: None,
        problem: None,
    };
    let maps = match riptide_ebpf::xdp::XdpMaps::open_attached(interface) {
        Ok(maps) => maps,
        Err(e) => {
            view.problem = Some(e.to_string());
            return view;
        }
    };
    match maps.config() {
        Ok(config) => {
            view.steers = config.map(|c| format!("{} ports {:?}", c.ip, c.ports));
        }
        Err(e) => view.problem = Some(e.to_string()),
    }
    match maps.counters() {
        Ok(c) => {
            view.counters = Some(XdpCountersView {
                steered_tcp: c.steered_tcp,
                steered_arp: c.steered_arp,
                passed: c.passed,
                dropped_no_socket: c.dropped_no_socket,
                dropped_redirect_failed: c.dropped_redirect_failed,
            });
        }
        Err(e) => view.problem = Some(e.to_string()),
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn only_af_xdp_devices_of_the_dpdk_backend_carry_the_program() {
        let file = "[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nlcores = [0]\nvdevs = [\
                    \"net_af_xdp0,iface=veth-dp,xdp_prog=/x.o\", \"net_af_packet0,iface=eth9\", \"net_af_xdp1,iface=eth3\"]\n";
        let config = Config::load_from(Some((Path::new("t.toml"), file)), &[]).unwrap();
        assert_eq!(xdp_interfaces(&config), vec!["veth-dp", "eth3"]);
        let kernel = Config::load_from(None, &[]).unwrap();
        assert!(xdp_interfaces(&kernel).is_empty());
    }

    #[test]
    fn an_interface_without_the_program_reports_why() {
        let view = read_xdp("lo");
        assert!(view.counters.is_none());
        assert!(view.problem.is_some(), "{view:?}");
    }
}
