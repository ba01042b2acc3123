//! What /steering shows besides the stats snapshot: which interfaces carry riptide's XDP
//! steering program. Its counters come from the snapshot the dataplane publishes (the dataplane
//! reads the program's maps itself), so the control process needs no eBPF loader.

use riptide_config::{Backend, Config};

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
}
